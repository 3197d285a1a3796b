"""Kubernetes NetworkPolicy (networking.k8s.io/v1) -> nftables, for one pod's network namespace.

Written from the NetworkPolicy API reference alone, so that it can check raygate's own reading
of the same objects. What it implements:

* A policy selects the pods of its own namespace that match `spec.podSelector` (matchLabels and
  matchExpressions: In, NotIn, Exists, DoesNotExist; `{}` selects every pod).
* `policyTypes` defaults to Ingress, plus Egress when the policy has egress rules.
* A pod that no Ingress (Egress) policy selects accepts every incoming (outgoing) connection.
  A selected pod accepts what the union of the selecting policies' rules admits, nothing else.
* A rule admits when one of its peers and one of its ports match; a missing or empty `from`/`to`
  admits every peer, a missing or empty `ports` every port.
* Peers: `podSelector` alone means pods of the policy's namespace; `namespaceSelector` alone every
  pod in the matching namespaces; both, the matching pods in the matching namespaces; `ipBlock`
  a CIDR minus its `except` CIDRs.
* Ports: protocol TCP (default), UDP or SCTP; a number, a number with `endPort` (a range), a
  name (resolved against the container ports of the pod that receives the connection: the
  selected pod for ingress, each destination pod for egress; a name no container declares matches
  nothing), or no port (every port of the protocol).
* Replies of admitted connections pass (conntrack established,related) and a pod's traffic to
  itself is never filtered (it arrives on the loopback interface).

The rig's cluster DNS is a Pod like any other (kube-system, k8s-app=kube-dns), so a policy's
DNS egress rule is enforced like the rest.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass
class Endpoint:
    """A pod (or a stand-in for one) with the labels the API server reports."""

    name: str
    namespace: str
    ip: str
    labels: dict = field(default_factory=dict)
    namespace_labels: dict = field(default_factory=dict)
    # (name, number, protocol) of every container port of the pod.
    ports: list = field(default_factory=list)


def selects(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector; `None` (an absent selector) is the caller's to interpret."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op)
        if not ok:  # an unknown operator matches nothing
            return False
    return True


def policy_types(policy: dict) -> set:
    spec = policy.get("spec") or {}
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if spec.get("egress") else set())


def _selecting(pod: Endpoint, policies: list, kind: str) -> list:
    return [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and kind in policy_types(p)
        and selects((p.get("spec") or {}).get("podSelector"), pod.labels)
    ]


def _peer_sets(peer: dict, policy_ns: str, endpoints: list) -> tuple[list, list]:
    """(endpoints, networks) a peer stands for."""
    if "ipBlock" in peer:
        block = ipaddress.ip_network(peer["ipBlock"]["cidr"], strict=False)
        nets = [block]
        for excluded in peer["ipBlock"].get("except") or []:
            excluded = ipaddress.ip_network(excluded, strict=False)
            nets = [
                part
                for net in nets
                for part in (
                    net.address_exclude(excluded) if excluded.subnet_of(net) else
                    ([] if net.subnet_of(excluded) else [net])
                )
            ]
        inside = [e for e in endpoints if any(ipaddress.ip_address(e.ip) in n for n in nets)]
        return inside, nets
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    chosen = [
        e
        for e in endpoints
        if (e.namespace == policy_ns if ns_sel is None else selects(ns_sel, e.namespace_labels))
        and (pod_sel is None or selects(pod_sel, e.labels))
    ]
    return chosen, [ipaddress.ip_network(e.ip) for e in chosen]


def _ports(ports: list | None, target: Endpoint | None) -> list | None:
    """[(protocol, low, high)] with (protocol, None, None) for every port; None for anything."""
    if not ports:
        return None
    out = []
    for p in ports:
        proto = p.get("protocol") or "TCP"
        port = p.get("port")
        if port is None:
            out.append((proto, None, None))
        elif isinstance(port, int) or str(port).isdigit():
            out.append((proto, int(port), int(p.get("endPort") or port)))
        elif target is not None:
            for name, number, cproto in target.ports:
                if name == port and (cproto or "TCP") == proto:
                    out.append((proto, number, number))
    return out


def clauses(pod: Endpoint, direction: str, policies: list, endpoints: list) -> list | None:
    """What `pod` admits in one direction ("Ingress" or "Egress"): None when no policy isolates
    it, else a list of (networks or None for any peer, ports as in _ports)."""
    selecting = _selecting(pod, policies, direction)
    if not selecting:
        return None
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    out = []
    for policy in selecting:
        ns = policy["metadata"]["namespace"]
        for rule in (policy.get("spec") or {}).get(key) or []:
            peers = rule.get(peers_key) or []
            raw_ports = rule.get("ports")
            if direction == "Ingress":
                ports = _ports(raw_ports, pod)
                if not peers:
                    out.append((None, ports))
                for peer in peers:
                    _, nets = _peer_sets(peer, ns, endpoints)
                    if nets:
                        out.append((nets, ports))
                continue
            # Egress: named ports resolve against each destination pod.
            is_named = lambda r: isinstance(r.get("port"), str) and not r["port"].isdigit()
            numeric = [r for r in raw_ports or [] if not is_named(r)]
            named = [r for r in raw_ports or [] if is_named(r)]
            groups = [(None, endpoints)] if not peers else [
                (nets, chosen) for chosen, nets in (_peer_sets(p, ns, endpoints) for p in peers)
                if nets
            ]
            for nets, chosen in groups:
                if not raw_ports:
                    out.append((nets, None))
                if numeric:
                    out.append((nets, _ports(numeric, None)))
                for target in chosen if named else []:
                    resolved = _ports(named, target)
                    if resolved:
                        out.append(([ipaddress.ip_network(target.ip)], resolved))
    return out


def admits(pod: Endpoint, direction: str, peer_ip: str, port: int, protocol: str,
           policies: list, endpoints: list) -> bool:
    """Whether `pod` admits a new connection from (Ingress) or to (Egress) peer_ip:port."""
    rules = clauses(pod, direction, policies, endpoints)
    if rules is None or peer_ip == pod.ip:
        return True
    addr = ipaddress.ip_address(peer_ip)
    for nets, ports in rules:
        if nets is not None and not any(addr in n for n in nets):
            continue
        if ports is None or any(
            proto == protocol and (lo is None or lo <= port <= hi) for proto, lo, hi in ports
        ):
            return True
    return False


def allowed(src: Endpoint, dst: Endpoint, port: int, protocol: str, policies: list,
            endpoints: list) -> bool:
    """A connection needs the sender's egress and the receiver's ingress."""
    return admits(src, "Egress", dst.ip, port, protocol, policies, endpoints) and admits(
        dst, "Ingress", src.ip, port, protocol, policies, endpoints
    )


def _render(nets, ports, addr_key: str) -> list:
    match = ""
    if nets is not None:
        v4 = [str(n) for n in nets if n.version == 4]
        if not v4:
            return []
        match = f"ip {addr_key} {{ {', '.join(v4)} }} "
    if ports is None:
        return [f"{match}accept"]
    lines = []
    for proto in PROTOCOLS:
        mine = [(lo, hi) for p, lo, hi in ports if p == proto]
        if not mine:
            continue
        if any(lo is None for lo, _ in mine):
            lines.append(f"{match}meta l4proto {proto.lower()} accept")
            continue
        items = ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in sorted(set(mine)))
        lines.append(f"{match}meta l4proto {proto.lower()} th dport {{ {items} }} accept")
    return lines


def ruleset(pod: Endpoint, policies: list, endpoints: list, table: str = "netpol") -> str:
    """An `nft -f` script for the pod's own network namespace. The sets `seen` and `dropped`
    record new TCP connections (source, destination, port) that arrived, and TCP connections and
    UDP datagrams that were refused."""
    chains = []
    for direction, hook, addr_key, iface in (
        ("Ingress", "input", "saddr", "iifname"),
        ("Egress", "output", "daddr", "oifname"),
    ):
        rules = clauses(pod, direction, policies, endpoints)
        body = ["ct state established,related accept", f'{iface} "lo" accept']
        if direction == "Ingress":
            body.append("ct state new meta l4proto tcp add @seen { ip saddr . ip daddr . tcp dport }")
        if rules is None:
            body.append("accept")
        else:
            for nets, ports in rules:
                body += _render(nets, ports, addr_key)
            # UDP too: a refused DNS query shows as refused, not as a name that does not resolve.
            body.append("meta l4proto { tcp, udp } add @dropped { ip saddr . ip daddr . th dport }")
            body.append("drop")
        chains.append(
            f"  chain {direction.lower()} {{\n    type filter hook {hook} priority filter; policy accept;\n"
            + "".join(f"    {line}\n" for line in body)
            + "  }\n"
        )
    sets = "".join(
        f"  set {name} {{ type ipv4_addr . ipv4_addr . inet_service; flags dynamic; size 65535; }}\n"
        for name in ("seen", "dropped")
    )
    return f"table inet {table} {{\n{sets}" + "".join(chains) + "}\n"
