"""Unit cases for the NetworkPolicy translator (pytest tests/runtime/test_netpol_nft.py)."""
import os
import shutil
import subprocess

import pytest

from netpol_nft import Endpoint, admits, allowed, policy_types, ruleset, selects

NS = "ray"
HEAD = Endpoint("head", NS, "198.18.0.10", {"ray.io/cluster": "c", "ray.io/node-type": "head"},
                {"kubernetes.io/metadata.name": NS}, [("gcs-server", 6380, "TCP"), ("dash", 8266, "TCP")])
WORKER = Endpoint("w", NS, "198.18.0.11", {"ray.io/cluster": "c", "ray.io/node-type": "worker"},
                  {"kubernetes.io/metadata.name": NS}, [("metrics", 8081, "TCP")])
OTHER = Endpoint("other", NS, "198.18.0.12", {"app": "x"}, {"kubernetes.io/metadata.name": NS})
CLIENT = Endpoint("client", "clients", "198.18.0.100", {"app": "c"},
                  {"kubernetes.io/metadata.name": "clients", "team": "ml"})
ALL = [HEAD, WORKER, OTHER, CLIENT]


def policy(spec, ns=NS):
    return {"metadata": {"name": "p", "namespace": ns}, "spec": spec}


CLUSTER = {"matchLabels": {"ray.io/cluster": "c"}}


def test_selectors():
    assert selects({}, {"a": "1"})
    assert selects({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"})
    assert not selects({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"})
    assert selects({"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]}, {"a": "1"})
    assert not selects({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]},
                       {"a": "1"})


def test_policy_types_default():
    assert policy_types(policy({"podSelector": {}})) == {"Ingress"}
    assert policy_types(policy({"podSelector": {}, "egress": [{}]})) == {"Ingress", "Egress"}
    assert policy_types(policy({"podSelector": {}, "policyTypes": ["Egress"]})) == {"Egress"}


def test_unselected_pod_and_egress_default_allow():
    p = [policy({"podSelector": CLUSTER, "ingress": [{"from": [{"podSelector": CLUSTER}]}]})]
    assert allowed(HEAD, OTHER, 1234, "TCP", p, ALL)  # OTHER is not selected
    assert not allowed(OTHER, HEAD, 6380, "TCP", p, ALL)
    assert allowed(WORKER, HEAD, 6380, "TCP", p, ALL)
    assert admits(HEAD, "Egress", "203.0.113.9", 80, "TCP", p, ALL)  # no Egress type


def test_ports_ranges_named_and_protocols():
    p = [policy({"podSelector": CLUSTER, "ingress": [{"ports": [
        {"port": 8301, "endPort": 8400}, {"port": "gcs-server"}, {"port": 53, "protocol": "UDP"}]}]})]
    assert allowed(CLIENT, HEAD, 8350, "TCP", p, ALL)
    assert not allowed(CLIENT, HEAD, 8401, "TCP", p, ALL)
    assert allowed(CLIENT, HEAD, 6380, "TCP", p, ALL)
    assert not allowed(CLIENT, WORKER, 6380, "TCP", p, ALL)  # WORKER has no port named gcs-server
    assert allowed(CLIENT, HEAD, 53, "UDP", p, ALL) and not allowed(CLIENT, HEAD, 53, "TCP", p, ALL)


def test_namespace_selector_and_ip_block():
    p = [policy({"podSelector": CLUSTER, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}], "ports": [{"port": 10002}]},
        {"from": [{"ipBlock": {"cidr": "198.18.0.0/24", "except": ["198.18.0.12/32"]}}], "ports": [{"port": 9}]},
    ]})]
    assert allowed(CLIENT, HEAD, 10002, "TCP", p, ALL)
    assert not allowed(OTHER, HEAD, 10002, "TCP", p, ALL)  # OTHER's namespace lacks team=ml
    assert allowed(WORKER, HEAD, 9, "TCP", p, ALL) and not allowed(OTHER, HEAD, 9, "TCP", p, ALL)
    both = [policy({"podSelector": CLUSTER, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "c"}}}]}]})]
    assert allowed(CLIENT, HEAD, 1, "TCP", both, ALL) and not allowed(OTHER, HEAD, 1, "TCP", both, ALL)


def test_egress_isolation_and_named_egress_ports():
    p = [policy({"podSelector": CLUSTER, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{}], "egress": [{"to": [{"podSelector": CLUSTER}], "ports": [{"port": "metrics"}]}]})]
    assert allowed(HEAD, WORKER, 8081, "TCP", p, ALL)
    assert not allowed(HEAD, WORKER, 8266, "TCP", p, ALL)
    assert not allowed(WORKER, HEAD, 8081, "TCP", p, ALL)  # HEAD declares no port named metrics
    assert allowed(HEAD, HEAD, 4321, "TCP", p, ALL)  # to itself
    none = [policy({"podSelector": CLUSTER, "policyTypes": ["Ingress"]})]
    assert not allowed(CLIENT, HEAD, 6380, "TCP", none, ALL)


def test_egress_to_cluster_dns_pod():
    # The DNS rule `raygate fix` writes: kube-system's k8s-app=kube-dns Pods, UDP and TCP 53.
    dns = Endpoint("kube-dns", "kube-system", "198.18.0.53", {"k8s-app": "kube-dns"},
                   {"kubernetes.io/metadata.name": "kube-system"})
    other = Endpoint("x", "kube-system", "198.18.0.54", {"k8s-app": "other"},
                     {"kubernetes.io/metadata.name": "kube-system"})
    same_label = Endpoint("y", "clients", "198.18.0.55", {"k8s-app": "kube-dns"},
                          {"kubernetes.io/metadata.name": "clients"})
    eps = ALL + [dns, other, same_label]
    p = [policy({"podSelector": CLUSTER, "policyTypes": ["Egress"], "egress": [{"to": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]})]
    assert allowed(WORKER, dns, 53, "UDP", p, eps) and allowed(WORKER, dns, 53, "TCP", p, eps)
    assert not allowed(WORKER, dns, 54, "UDP", p, eps)
    assert not allowed(WORKER, other, 53, "UDP", p, eps)
    assert not allowed(WORKER, same_label, 53, "UDP", p, eps)
    script = ruleset(WORKER, p, eps)
    assert "ip daddr { 198.18.0.53/32 } meta l4proto udp th dport { 53 } accept" in script


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nft")
def test_ruleset_is_valid_nft():
    p = [policy({"podSelector": CLUSTER, "ingress": [{"from": [{"ipBlock": {
        "cidr": "198.18.0.0/15", "except": ["198.18.0.12/32"]}}], "ports": [
        {"port": 8301, "endPort": 8400}, {"protocol": "UDP"}, {"port": 5, "protocol": "SCTP"}]}],
        "egress": [{"to": [{"podSelector": CLUSTER}]}, {"ports": [{"port": 53, "protocol": "UDP"}]}]})]
    script = ruleset(HEAD, p, ALL)
    out = subprocess.run(["unshare", "-n", "nft", "-f", "-"], input=script, text=True,
                         capture_output=True)
    assert out.returncode == 0, out.stderr + script
