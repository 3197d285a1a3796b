"""The Ray runtime tier: Ray from PyPI, started with the KubeRay operator's own commands in one
network namespace per Pod, behind the namespace's NetworkPolicies rendered as nftables rules.

Run by tests/runtime/run.sh (which builds the tools, the venv and raygate, and starts the control
plane); see docs/RAY-RUNTIME.md. Writes results.json, report.md and logs to --out.
"""
from __future__ import annotations

import argparse
import base64
import copy
import ipaddress
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import traceback

import yaml

import kubelet
import netns
import netpol_nft
from netpol_nft import Endpoint

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MANIFESTS = os.path.join(HERE, "manifests")
T0 = time.time()

NS = "kuberay"  # the infrastructure document's namespace
CLIENT_NS = "ray-clients"
CLIENT_NS_LABELS = {"kubernetes.io/metadata.name": CLIENT_NS}
LEGACY_NS = "kuberay-legacy"
CLUSTER = "raycluster-runtime"
LEGACY = "raycluster-legacy"
# Cluster DNS as in a real cluster (CoreDNS's Pods are kube-system's k8s-app=kube-dns), so that
# a NetworkPolicy's DNS egress rule decides whether Pods find the head Service.
DNS_NS = "kube-system"
DNS_LABELS = {"k8s-app": "kube-dns"}
DNS_IP = f"{netns.SUBNET}.53"

# The platform plan, read from `raygate policy` (the effective policy): [(name, first, last)].
PLAN = []
# What every group's rayStartParams must hold besides the head ports (from the same policy),
# for the Ray under test: {"head": {...}, "worker": {...}}.
NODE_PARAMS = {"head": {}, "worker": {}}
# Every nodePorts key of the policy, whichever Ray.
ALL_NODE_PARAMS = set()
# Planned ports that only Prometheus scrapes (the plan's headPorts): listened on, but not
# needed between the cluster's pods.
SCRAPE_ONLY = set()


def _vkey(text):
    return tuple(int(x) for x in text.split("."))


def ray_facts(version: str) -> tuple[dict, list[dict]]:
    """The facts raygate judges `version` by (policies/ray-versions.json), and every version's."""
    with open(os.path.join(ROOT, "policies", "ray-versions.json")) as f:
        versions = sorted(json.load(f)["versions"], key=lambda v: _vkey(v["version"]))
    want = _vkey(version)
    same = [v for v in versions if _vkey(v["version"])[:2] == want[:2]]
    older = [v for v in versions if _vkey(v["version"]) < want]
    facts = same[-1] if same else (older[-1] if older else versions[0])
    return facts, versions


def pin_applies(param: str, head: bool, version: str) -> bool:
    """Whether raygate pins `--param` on a head (or worker) of `version` (as ray_version.rs's
    VersionFacts::pin: the Ray takes the option and opens the listener on that node)."""
    facts, versions = ray_facts(version)
    if param not in facts["startOptions"]:
        return False
    mine = next((l for l in facts["randomListeners"] if l["rayStartParam"] == param), None)
    if mine:
        return mine["node"] != "head" or head
    return not any(l["rayStartParam"] == param for v in versions for l in v["randomListeners"])


def load_plan(policy: dict, version: str):
    ports = policy["spec"]["ports"]
    PLAN.clear()
    PLAN.extend((p["name"], p["port"], p["port"]) for p in ports["planned"])
    PLAN.extend((p["name"], p["port"], p["port"]) for p in ports.get("nodePorts", [])
                if pin_applies(p["rayStartParam"], True, version))
    PLAN.extend((p["name"], p["port"], p["port"]) for p in ports.get("headPorts", []))
    SCRAPE_ONLY.clear()
    SCRAPE_ONLY.update(p["name"] for p in ports.get("headPorts", []))
    PLAN.extend((r["rayStartParam"], r["from"], r["to"]) for r in ports["nodeRanges"])
    ALL_NODE_PARAMS.clear()
    ALL_NODE_PARAMS.update(p["rayStartParam"] for p in ports.get("nodePorts", []))
    for role in ("head", "worker"):
        NODE_PARAMS[role] = {p["rayStartParam"]: str(p["port"]) for p in ports.get("nodePorts", [])
                             if pin_applies(p["rayStartParam"], role == "head", version)}
    if "workerPorts" in ports:
        w = ports["workerPorts"]
        PLAN.append(("worker-ports", w["from"], w["to"]))
        for role in ("head", "worker"):
            NODE_PARAMS[role].update({"min-worker-port": str(w["from"]),
                                      "max-worker-port": str(w["to"])})


# The ports a client in another namespace uses (Ray client, job submission, Serve, metrics).
CLIENT_PORTS = [10002, 8266, 8001, 8081]
STEP_TIMEOUT = 25


def log(msg):
    print(f"[runtime +{time.time() - T0:6.1f}s] {msg}", flush=True)


# Non-loopback listeners outside the plan that the tier accepts, each with the reason: none of
# them is used from another pod (scenario 1 fails on any connection the policy refuses, so a
# use would show). Anything else listening outside the plan fails scenario 1.
# (process prefix, first port, last port, reason)
KNOWN_UNPLANNED = [
    # Ray >= 2.50: every Serve replica opens an "inter-deployment gRPC server" on [::]:0. No
    # setting pins it; Serve only uses it with RAY_SERVE_USE_GRPC_BY_DEFAULT=1.
    ("ray::ServeRepli", 32768, 60999,
     "Serve replica's inter-deployment gRPC server ([::]:0), used only with "
     "RAY_SERVE_USE_GRPC_BY_DEFAULT=1"),
    # Ray 2.41: the client proxy starts one server per Ray Client session in 23000-24000 on all
    # interfaces and talks to it over loopback (2.60 binds it to loopback).
    ("python3[ray.util.client.server specific-server]", 23000, 24000,
     "Ray Client per-session server, reached by the client proxy over loopback"),
]
# Ports Ray binds on every interface at fixed numbers that the plan may not name; never accepted.
RAY_FIXED = {44217: "autoscaler metrics (monitor.py, AUTOSCALER_METRIC_PORT)",
             44227: "dashboard metrics (DASHBOARD_METRIC_PORT)"}


def known_unplanned(process, port):
    if port in RAY_FIXED:
        return None
    for name, lo, hi, why in KNOWN_UNPLANNED:
        if process.startswith(name) and lo <= port <= hi:
            return why
    return None


def planned(port):
    for name, lo, hi in PLAN:
        if lo <= port <= hi:
            return name
    return None


class Failure(Exception):
    pass


# --- the control plane and raygate -------------------------------------------------------------


class Kube:
    def __init__(self, kubectl, kubeconfig):
        self.kubectl, self.kubeconfig = kubectl, kubeconfig

    def run(self, *args, input=None, check=True):
        out = subprocess.run([self.kubectl, "--kubeconfig", self.kubeconfig, *args],
                             input=input, text=True, capture_output=True)
        if check and out.returncode != 0:
            raise Failure(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out

    def get(self, *args):
        return json.loads(self.run("get", "-o", "json", *args).stdout)

    def apply(self, docs, ns=None, check=True):
        text = yaml.safe_dump_all(docs) if isinstance(docs, list) else docs
        return self.run("apply", *(["-n", ns] if ns else []), "-f", "-", input=text, check=check)

    def lookup(self, kind, ns, name):
        obj = self.get(kind, "-n", ns, name)
        data = obj.get("data") or {}
        if kind == "secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        return data


class Raygate:
    """`raygate serve` on loopback, registered with the API server for namespaces labelled
    raygate-runtime/mode=<mode>."""

    def __init__(self, binary, mode, workdir, kube, kubeconfig=None, policy=None):
        self.mode, self.kube = mode, kube
        certs = os.path.join(workdir, f"certs-{mode}")
        made = subprocess.run([binary, "certs", "--host", "127.0.0.1", "--out-dir", certs],
                              text=True, capture_output=True, check=True)
        self.ca_bundle = made.stdout.strip()
        argv = [binary, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                "--log-format", "json", "--shutdown-delay", "0", "--mode", mode,
                "--tls-cert", f"{certs}/tls.crt", "--tls-key", f"{certs}/tls.key"]
        if kubeconfig:
            argv += ["--kubeconfig", kubeconfig]
        if policy:
            argv += ["--policy", policy]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        logfile = open(os.path.join(workdir, f"raygate-{mode}.log"), "w")
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise Failure(f"raygate serve --mode {mode} exited: {self.proc.wait()}")
            logfile.write(line)
            if "raygate is serving" in line:
                self.port = int(json.loads(line)["addr"].rsplit(":", 1)[1])
                break
        if self.port is None:
            raise Failure("raygate serve did not start")
        threading.Thread(target=lambda: [logfile.write(l) or logfile.flush()
                                         for l in self.proc.stdout], daemon=True).start()

    def register(self):
        rendered = self.kube.run("kustomize", os.path.join(ROOT, "deploy/base")).stdout
        name = f"raygate-runtime-{self.mode}"
        for doc in yaml.safe_load_all(rendered):
            if doc["kind"] not in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
                continue
            doc["metadata"]["name"] = name
            for hook in doc["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{self.port}{path}",
                                        "caBundle": self.ca_bundle}
                hook["namespaceSelector"].setdefault("matchExpressions", []).append(
                    {"key": "raygate-runtime/mode", "operator": "In", "values": [self.mode]})
            self.kube.apply([doc])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def apply_raygate_rbac(kube):
    rendered = kube.run("kustomize", os.path.join(ROOT, "deploy/base")).stdout
    kube.apply([d for d in yaml.safe_load_all(rendered) if d["kind"] in
                ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")])


# --- Ray pods in namespaces --------------------------------------------------------------------


def group_of(pod):
    return pod["metadata"]["labels"]["ray.io/group"]


def head_fqdn(svc, ns):
    return f"{svc}.{ns}.svc.cluster.local"


def resolv(ns):
    return netns.cluster_resolv(DNS_IP, ns)


class Rig:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        self.kube = Kube(args.kubectl, args.kubeconfig)
        self.net = None
        self.raygates = []
        self.results = {"ray_version": args.ray_version, "scenarios": []}
        self.failures = []
        self.venv_bin = os.path.join(args.venv, "bin")
        self.allocatable = {"cpu": str(os.cpu_count()),
                            "memory": str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))}

    # raygate on the command line
    def raygate(self, *argv, input=None):
        cmd = [self.args.raygate, *argv]
        if self.args.policy:
            cmd[2:2] = ["--policy", self.args.policy]
        return subprocess.run(cmd, input=input, text=True, capture_output=True)

    def manifest(self, name):
        with open(os.path.join(MANIFESTS, name)) as f:
            return f.read().replace("2.60.0", self.args.ray_version)

    def base_env(self, hostname):
        return {"PATH": f"{self.venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": "/root", "LANG": "C.UTF-8", "HOSTNAME": hostname}

    def wait_pods(self, ns, cluster, want, timeout=90):
        """The Pods of a RayCluster (`cluster` is its name, or a label selector)."""
        selector = cluster if "=" in cluster else f"ray.io/cluster={cluster}"
        deadline = time.time() + timeout
        while True:
            pods = self.kube.get("pods", "-n", ns, "-l", selector)["items"]
            if len(pods) >= want or time.time() > deadline:
                break
            time.sleep(1)
        if len(pods) < want:
            events = self.kube.run("get", "events", "-n", ns, check=False).stdout
            raise Failure(f"{len(pods)} of {want} pods of {cluster} created; events:\n{events[-3000:]}")
        return sorted(pods, key=lambda p: (p["metadata"]["labels"]["ray.io/node-type"] != "head",
                                           group_of(p), p["metadata"]["name"]))

    def pod_keys(self, pods):
        keys, count = {}, {}
        for p in pods:
            g = "head" if p["metadata"]["labels"]["ray.io/node-type"] == "head" else group_of(p)
            count[g] = count.get(g, -1) + 1
            keys[p["metadata"]["name"]] = "head" if g == "head" else f"{g}-{count[g]}"
        return keys

    def endpoints(self, pods, ip_of, client=None):
        ns_labels = {}
        eps = []
        for p in pods:
            ns = p["metadata"]["namespace"]
            if ns not in ns_labels:
                ns_labels[ns] = self.kube.get("namespace", ns)["metadata"].get("labels", {})
            ports = [(cp.get("name"), cp["containerPort"], cp.get("protocol", "TCP"))
                     for c in p["spec"]["containers"] for cp in c.get("ports") or []]
            eps.append(Endpoint(p["metadata"]["name"], ns, ip_of[p["metadata"]["name"]],
                                p["metadata"].get("labels", {}), ns_labels[ns], ports))
        if client:
            labels = self.kube.get("namespace", CLIENT_NS)["metadata"].get("labels", {})
            eps.append(Endpoint("ray-client", CLIENT_NS, client.ip, {"app": "ray-client"}, labels))
        return eps

    def start_dns(self, svc, ns, head_ip):
        """The cluster DNS Pod, answering the head Service's name with the head Pod's address
        (KubeRay's head Service is headless). Returns its pod and Endpoint."""
        zone = os.path.join(self.out, f"dns-zone-{self.scenario}.json")
        with open(zone, "w") as f:
            json.dump({head_fqdn(svc, ns): head_ip}, f)
        pod = self.net.add_pod("kube-dns", "coredns", {}, [], DNS_IP)
        logpath = os.path.join(self.out, "logs", f"{self.scenario}-kube-dns.log")
        with open(logpath, "w") as logf:
            proc = subprocess.Popen(
                pod.enter() + [os.path.join(self.venv_bin, "python"), os.path.join(HERE, "dns.py"),
                               "--listen", DNS_IP, "--zone", zone],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/")
        self.wait_listen({"pod": pod, "proc": proc, "log": logpath}, 53, 20)
        labels = self.kube.get("namespace", DNS_NS)["metadata"].get("labels", {})
        ep = Endpoint("kube-dns", DNS_NS, DNS_IP, dict(DNS_LABELS), labels,
                      [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")])
        return pod, ep

    def start_pods(self, pods, policies, with_client=True):
        """Namespaces, nftables and the operator's commands for `pods`; the head first."""
        keys = self.pod_keys(pods)
        head = pods[0]
        ns = head["metadata"]["namespace"]
        svc = f"{head['metadata']['labels']['ray.io/cluster']}-head-svc"
        specs = {}
        ips = {p["metadata"]["name"]: f"{netns.SUBNET}.{10 + i}" for i, p in enumerate(pods)}
        dns_pod, dns_ep = self.start_dns(svc, ns, ips[head["metadata"]["name"]])
        # As kubelet writes it: the pod's own name only; Services resolve through DNS.
        hosts = {}
        for p in pods:
            name = p["metadata"]["name"]
            c = p["spec"]["containers"][0]
            env, notes = kubelet.container_env(p, c, ips[name], "worker-1", self.allocatable,
                                               self.kube.lookup)
            full_env = {**self.base_env(name), **env}
            argv = kubelet.command_line(c, full_env)
            pod = self.net.add_pod(keys[name], name, hosts, kubelet.tmpfs_mounts(p, c), ips[name],
                                   resolv(ns))
            specs[name] = {"pod": pod, "env": full_env, "argv": argv, "notes": notes,
                           "group": "head" if p is head else group_of(p), "namespace": ns,
                           "container": c["name"], "image": c.get("image", "")}
        client = None
        if with_client:
            client = self.net.add_pod("client", "ray-client", hosts, [], f"{netns.SUBNET}.100",
                                      resolv(CLIENT_NS))
        eps = self.endpoints(pods, ips, client) + [dns_ep]
        self.cur = {"hosts": hosts, "policies": policies, "eps": eps,
                    "netns": {**{ep.name: specs[ep.name]["pod"] if ep.name in specs else client
                                 for ep in eps[:-1]}, dns_ep.name: dns_pod}}
        self.render_rules()
        for i, p in enumerate(pods):
            name = p["metadata"]["name"]
            s = specs[name]
            s["log"] = os.path.join(self.out, "logs", f"{self.scenario}-{s['pod'].key}.log")
            with open(s["log"], "w") as logf:
                logf.write("$ " + json.dumps(s["argv"]) + "\n")
                logf.flush()
                s["proc"] = subprocess.Popen(s["pod"].enter() + s["argv"], env=s["env"], cwd="/",
                                             stdout=logf, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
            log(f"started {s['group']} {name} at {s['pod'].ip}: {s['argv'][-1].strip()[:160]}")
            if i == 0:
                port = int(s["env"].get("RAY_PORT", "6379"))
                self.wait_listen(s, port, 90)
        return specs, client, eps

    def render_rules(self):
        for ep in self.cur["eps"]:
            self.net.nft(self.cur["netns"][ep.name],
                         netpol_nft.ruleset(ep, self.cur["policies"], self.cur["eps"]))

    def add_standin(self, key, name, ns, labels, ip, ports=()):
        """A pod of another kind (the RayJob's submitter, the operator) in a namespace of its own;
        every pod's rules are rendered again so that policies can name it."""
        pod = self.net.add_pod(key, name, self.cur["hosts"], [], ip, resolv(ns))
        ns_labels = self.kube.get("namespace", ns)["metadata"].get("labels", {})
        self.cur["eps"].append(Endpoint(name, ns, ip, labels, ns_labels, list(ports)))
        self.cur["netns"][name] = pod
        self.render_rules()
        return pod

    def play_kubelet(self, specs):
        """Report the Pods Running and Ready with their addresses, as kubelet would once the
        containers run (the operator waits for that before it submits a RayJob)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for name, s in specs.items():
            status = {"phase": "Running", "podIP": s["pod"].ip, "podIPs": [{"ip": s["pod"].ip}],
                      "hostIP": s["pod"].ip, "startTime": now,
                      "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                     for t in ("PodScheduled", "Initialized", "ContainersReady",
                                               "Ready")],
                      "containerStatuses": [{"name": s["container"], "ready": True, "started": True,
                                             "restartCount": 0, "image": s["image"], "imageID": "",
                                             "state": {"running": {"startedAt": now}}}]}
            self.kube.run("patch", "pod", "-n", s["namespace"], name, "--subresource=status",
                          "--type=merge", "-p", json.dumps({"status": status}))

    def wait_listen(self, spec, port, timeout):
        deadline = time.time() + timeout
        t0 = time.time()
        while time.time() < deadline:
            if any(p == port for _, p, _ in self.net.listeners(spec["pod"])):
                log(f"{spec['pod'].key} listens on {port} after {time.time() - t0:.1f}s")
                return time.time() - t0
            if spec["proc"].poll() is not None:
                raise Failure(f"{spec['pod'].key} exited {spec['proc'].returncode} before "
                              f"listening on {port}:\n{tail(spec['log'])}")
            time.sleep(0.3)
        raise Failure(f"{spec['pod'].key} does not listen on {port} after {timeout}s")

    def session(self, pod, env):
        return Session(self, pod, env)

    def connections(self, pods_by_ip):
        """New TCP connections seen and refused since the last call, per pod namespace."""
        seen, dropped = set(), set()
        for pod in list(self.net.pods.values()):
            seen |= set(self.net.nft_set(pod, "seen", flush=True))
            dropped |= set(self.net.nft_set(pod, "dropped", flush=True))
        name = lambda ip: pods_by_ip.get(ip, ip)  # noqa: E731
        fmt = lambda c: f"{name(c[0])}->{name(c[1])}:{c[2]}"  # noqa: E731
        return sorted(seen), sorted(dropped), [fmt(c) for c in sorted(seen)], [fmt(c) for c in sorted(dropped)]

    def collect_ray_logs(self, specs):
        for s in specs.values():
            dest = os.path.join(self.out, "logs", f"{self.scenario}-{s['pod'].key}-ray")
            os.makedirs(dest, exist_ok=True)
            tar = subprocess.run(s["pod"].enter() + ["tar", "-C", "/tmp/ray", "-chf", "-",
                                                     "session_latest/logs"],
                                 capture_output=True)
            subprocess.run(["tar", "-C", dest, "-xf", "-"], input=tar.stdout, capture_output=True)

    def stop_all_pods(self):
        self.net.remove_all_pods()

    # --- scenarios -------------------------------------------------------------------------------

    def run(self):
        os.makedirs(os.path.join(self.out, "logs"), exist_ok=True)
        self.net = netns.Net(self.args.prefix, self.args.state)
        try:
            self.setup_control_plane()
            for name in self.args.scenarios.split(","):
                self.scenario = name
                fn = getattr(self, f"scenario_{name}")
                result = {"name": name, "ok": False, "checks": [], "steps": [], "notes": []}
                self.results["scenarios"].append(result)
                self.current = result
                t0 = time.time()
                log(f"=== scenario {name}: {fn.__doc__.strip().splitlines()[0]}")
                try:
                    fn(result)
                    result["ok"] = not any(not c["ok"] for c in result["checks"])
                except Exception as e:  # noqa: BLE001
                    result["error"] = f"{type(e).__name__}: {e}"
                    traceback.print_exc()
                finally:
                    result["seconds"] = round(time.time() - t0, 1)
                    try:
                        self.stop_all_pods()
                    except Exception as e:  # noqa: BLE001
                        log(f"cleanup: {e}")
                failed = [c["what"] for c in result["checks"] if not c["ok"]]
                if not result["ok"]:
                    self.failures.append(f"{name}: {result.get('error') or '; '.join(failed)}")
                log(f"=== scenario {name}: {'PASS' if result['ok'] else 'FAIL'} "
                    f"in {result['seconds']}s" + (f" ({'; '.join(failed)})" if failed else ""))
        finally:
            for r in self.raygates:
                r.stop()
            self.net.teardown()
            with open(os.path.join(self.out, "results.json"), "w") as f:
                json.dump(self.results, f, indent=2)
            write_report(self.results, os.path.join(self.out, "report.md"))
        return not self.failures

    def check(self, what, ok, detail=""):
        self.current["checks"].append({"what": what, "ok": bool(ok), "detail": detail})
        log(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""))

    def setup_control_plane(self):
        t0 = time.time()
        policy = self.raygate("policy")
        if policy.returncode != 0:
            raise Failure(f"raygate policy: {policy.stderr}")
        effective = yaml.safe_load(policy.stdout)
        load_plan(effective, self.args.ray_version)
        # The client namespace reaches the cluster as a platform would declare it, so that the
        # NetworkPolicies `raygate fix` writes admit it.
        netpol = effective["spec"]["networkPolicy"]
        access = netpol.get("externalAccess") or []
        if not any(a.get("namespaceLabels") == CLIENT_NS_LABELS for a in access):
            access.append({"namespaceLabels": CLIENT_NS_LABELS,
                           "ports": ["client", "dashboard", "serve", "metrics"]})
        netpol["externalAccess"] = access
        self.args.policy = os.path.join(self.out, "policy.yaml")
        with open(self.args.policy, "w") as f:
            yaml.safe_dump(effective, f, sort_keys=False)
        self.results["plan"] = [list(p) for p in PLAN]
        log("plan: " + ", ".join(f"{n} {lo}" + (f"-{hi}" if hi != lo else "") for n, lo, hi in PLAN))
        apply_raygate_rbac(self.kube)
        enforce = Raygate(self.args.raygate, "enforce", self.out, self.kube,
                          self.args.raygate_kubeconfig, self.args.policy)
        self.raygates.append(enforce)
        audit = Raygate(self.args.raygate, "audit", self.out, self.kube, None, self.args.policy)
        self.raygates.append(audit)
        enforce.register()
        audit.register()
        for ns, mode in ((NS, "enforce"), (LEGACY_NS, "audit"), (CLIENT_NS, None)):
            doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            if mode:
                doc["metadata"]["labels"] = {"raygate-runtime/mode": mode}
            self.kube.apply([doc])
        # A cluster on KubeRay's default ports is denied once the API server calls raygate.
        probe = yaml.safe_load(self.manifest("cluster.yaml"))
        probe["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"] = [
            {"name": "gcs-server", "containerPort": 6379}]
        deadline = time.time() + 30
        while True:
            out = self.kube.apply([probe], NS, check=False)
            if "raygate" in out.stderr and out.returncode != 0:
                break
            if time.time() > deadline:
                raise Failure(f"the API server does not call raygate: {out.stderr or out.stdout}")
            time.sleep(0.5)
        self.kube.run("delete", "raycluster", "-n", NS, CLUSTER, "--ignore-not-found", "--wait=false")
        log(f"raygate registered (enforce on :{enforce.port} with cluster state, audit on "
            f":{audit.port}) in {time.time() - t0:.1f}s")

    def fixed_cluster(self, result):
        """The fixed RayCluster and the NetworkPolicy `raygate fix` added before it."""
        doc, policy = self.fix_with_policy(result, "cluster.yaml", self.manifest("cluster.yaml"))
        groups = ([("head", doc["spec"]["headGroupSpec"])]
                  + [("worker", g) for g in doc["spec"]["workerGroupSpecs"]])
        missing = sorted({f"{role} {k}" for role, g in groups for k, v in NODE_PARAMS[role].items()
                          if g.get("rayStartParams", {}).get(k) != v})
        # Nothing beyond them: a key the Ray under test lacks or does not open would be pinned.
        extra = sorted({f"{role} {k}" for role, g in groups for k in g.get("rayStartParams", {})
                        if k in ALL_NODE_PARAMS and k not in NODE_PARAMS[role]})
        missing += [f"{e} (not for Ray {self.args.ray_version})" for e in extra]
        if "min-worker-port" not in NODE_PARAMS["head"]:
            missing.append("the plan has no workerPorts")
        self.check("raygate fix pins the worker-process range and the agent ports in every group",
                   not missing, ", ".join(missing))
        return doc, policy

    def fix_with_policy(self, result, name, text):
        """`raygate fix` of one Ray object: (the object, the one NetworkPolicy fix added before
        it, so that kubectl applies it first). `raygate check` of fix's output must find nothing
        about network policy."""
        fixed = self.raygate("fix", "-f", "-", input=text)
        if fixed.returncode != 0:
            raise Failure(f"raygate fix {name}: {fixed.stderr}")
        docs = [d for d in yaml.safe_load_all(fixed.stdout) if d]
        added = [d for d in docs[:-1] if d.get("kind") == "NetworkPolicy"]
        self.check(f"raygate fix adds exactly one NetworkPolicy before the {docs[-1]['kind']}",
                   len(docs) == 2 and len(added) == 1,
                   f"documents: {[d.get('kind') for d in docs]}; {fixed.stderr.strip()}")
        if not added:
            raise Failure(f"raygate fix {name} added no NetworkPolicy")
        path = os.path.join(self.out, f"scenario-{self.scenario}-fixed-{name}")
        with open(path, "w") as f:
            f.write(fixed.stdout)
        check = self.raygate("check", "-f", path)
        result.setdefault("raygate_check", "")
        result["raygate_check"] += check.stdout
        self.check(f"raygate check admits the fixed {docs[-1]['kind']} with the NetworkPolicy fix "
                   "wrote, with no network-policy finding",
                   check.returncode == 0 and "network-policy/" not in check.stdout,
                   check.stdout[-2000:])
        return docs[-1], added[0]

    def scenario_1(self, result):
        """raygate fix output, with the NetworkPolicy fix writes: everything runs"""
        cluster, policy = self.fixed_cluster(result)
        out = self.kube.apply([policy], NS)
        out = self.kube.apply([cluster], NS)
        result["apply"] = (out.stdout + out.stderr).strip()
        pods = self.wait_pods(NS, CLUSTER, 4)
        self.pods_1 = pods
        policies = self.kube.get("networkpolicy", "-n", NS)["items"]
        self.run_cluster(result, pods, policies, full=True)

    def scenario_2(self, result):
        """Control: the infrastructure document's NetworkPolicy; cross-node work must fail"""
        policy = yaml.safe_load(self.manifest("infra-networkpolicy.yaml"))
        cluster, generated = self.fixed_cluster(result)
        path = os.path.join(self.out, "scenario-2-cluster.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all([cluster, policy], f)
        check = self.raygate("check", "-f", path)
        result["raygate_check"] = check.stdout
        self.check("raygate check denies the cluster under the infrastructure NetworkPolicy",
                   check.returncode == 1 and "network-policy/" in check.stdout, check.stdout[-2000:])
        # The same admitted cluster (its Pods from scenario 1), now under the control policy.
        pods = getattr(self, "pods_1", None)
        if pods is None:  # run on its own: admit the cluster as scenario 1 does
            self.kube.apply([generated], NS)
            self.kube.apply([cluster], NS)
            pods = self.wait_pods(NS, CLUSTER, 4)
        # DNS stays open, as a separate policy: what fails is Ray's traffic on the ports the
        # document leaves out, not the workers' lookup of the head.
        dns = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "raycluster-runtime-dns"},
               "spec": {"podSelector": policy["spec"]["podSelector"], "policyTypes": ["Egress"],
                        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {
                            "kubernetes.io/metadata.name": "kube-system"}},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                            "ports": [{"protocol": "UDP", "port": 53},
                                      {"protocol": "TCP", "port": 53}]}]}}
        out = self.kube.apply([policy, dns], NS)
        out = self.kube.run("delete", "networkpolicy", "-n", NS, generated["metadata"]["name"],
                            "--ignore-not-found")
        result["apply"] = (out.stdout + out.stderr).strip()
        policies = self.kube.get("networkpolicy", "-n", NS)["items"]
        self.run_cluster(result, pods, policies, full=False)

    def scenario_3(self, result):
        """Control: the plan's pins without a worker-process range; Ray refuses to start the head"""
        text = self.manifest("cluster-before-worker-range.yaml")
        check = self.raygate("check", "-f", "-", input=text)
        fix = self.raygate("fix", "-f", "-", input=text)
        result["raygate_check"] = check.stdout
        denied = check.returncode == 1 and re.search(r"^\s*DENY\s+ports/worker-port", check.stdout, re.M)
        # fix also writes the cluster's NetworkPolicy before it; only the cluster matters here.
        fixed = ([d for d in yaml.safe_load_all(fix.stdout) if d and d.get("kind") == "RayCluster"]
                 or [None])[0] if fix.returncode == 0 else None
        groups = ([fixed["spec"]["headGroupSpec"]] + fixed["spec"]["workerGroupSpecs"]) if fixed else []
        fills = bool(groups) and all(
            (g.get("rayStartParams") or {}).get(k) == NODE_PARAMS["head"].get(k)
            for g in groups for k in ("min-worker-port", "max-worker-port"))
        result["raygate_denies"], result["raygate_fills"] = bool(denied), fills
        self.check("raygate denies the cluster or fills the worker-process range", denied or fills,
                   f"check exit {check.returncode}; fix adds min/max-worker-port: {fills}")
        # Through raygate in audit mode (as with no raygate at all), the operator's own commands.
        out = self.kube.apply(text, LEGACY_NS)
        result["apply"] = (out.stdout + out.stderr).strip()
        pods = self.wait_pods(LEGACY_NS, LEGACY, 2)
        head = pods[:1]
        specs, _, _ = self.start_pods_no_wait(head)
        s = next(iter(specs.values()))
        try:
            code = s["proc"].wait(60)
        except subprocess.TimeoutExpired:
            code = None
        with open(s["log"]) as f:
            output = f.read()
        result["head_command"] = s["argv"]
        match = re.findall(r"^.*(?:ValueError|Error):.*$", output, re.M)
        result["ray_error"] = match[-1].strip() if match else output[-1500:]
        self.check("Ray refuses to start the head", code not in (None, 0),
                   f"exit {code}: {result['ray_error']}")
        self.check("Ray names the clash with the worker-process range",
                   "worker_ports" in output and "10002" in output, result["ray_error"])

    def scenario_4(self, result):
        """A RayJob and a RayService through the same path (webhook, operator, nftables)"""
        for kind, fn in (("rayjob", self.rayjob), ("rayservice", self.rayservice)):
            text = self.manifest(f"{kind}.yaml").replace("RUNTIME_DIR", HERE)
            obj, policy = self.fix_with_policy(result, f"{kind}.yaml", text)
            self.kube.apply([policy], NS)
            out = self.kube.apply([obj], NS)
            result.setdefault("apply", "")
            result["apply"] += (out.stdout + out.stderr)
            pods = self.wait_pods(NS, f"raygate.dev/ray-cr-name={obj['metadata']['name']}", 2)
            policies = self.kube.get("networkpolicy", "-n", NS)["items"]
            specs, client, eps = self.start_pods(pods, policies)
            for s in specs.values():
                self.wait_listen(s, 8401, 90)
            self.play_kubelet(specs)
            try:
                fn(result, obj, specs, client)
            finally:
                self.collect_ray_logs(specs)
                self.stop_all_pods()
        refused = sorted({c for st in result["steps"] for c in st.get("refused", [])})
        self.check("no connection was refused", not refused, "; ".join(refused))

    def by_ip(self):
        return {p.ip: p.key for p in self.net.pods.values()}

    def rayjob(self, result, obj, specs, client):
        name = obj["metadata"]["name"]
        deadline = time.time() + 60
        job = None
        while time.time() < deadline and job is None:
            jobs = self.kube.get("jobs", "-n", NS)["items"]
            job = next((j for j in jobs if j["metadata"]["name"] == name), None)
            time.sleep(0.5)
        self.check("the operator creates the RayJob's submitter Job once the Pods are Ready",
                   job is not None)
        if job is None:
            return
        tmpl = copy.deepcopy(job["spec"]["template"])
        pod = {"metadata": {**tmpl.get("metadata", {}), "name": f"{name}-submitter",
                            "namespace": NS, "uid": job["metadata"]["uid"]},
               "spec": tmpl["spec"]}
        c = pod["spec"]["containers"][0]
        labels = pod["metadata"].get("labels", {})
        sub = self.add_standin("submitter", pod["metadata"]["name"], NS, labels,
                               f"{netns.SUBNET}.101")
        env, _ = kubelet.container_env(pod, c, sub.ip, "worker-1", self.allocatable,
                                       self.kube.lookup)
        env = {**self.base_env(pod["metadata"]["name"]), **env}
        argv = kubelet.command_line(c, env)
        self.connections(self.by_ip())
        t0 = time.time()
        try:
            out = subprocess.run(sub.enter() + argv, env=env, cwd="/", capture_output=True,
                                 text=True, timeout=120)
            code, text = out.returncode, out.stdout + out.stderr
        except subprocess.TimeoutExpired as e:
            code, text = None, f"timed out: {e.stdout or ''}{e.stderr or ''}"
        _, _, seen, dropped = self.connections(self.by_ip())
        ok = code == 0 and "rayjob tasks ran on" in text
        lines = [l for l in text.splitlines() if "rayjob tasks ran on" in l or "Error" in l]
        result["steps"].append({"step": "RayJob submitter Job (ray job submit + logs --follow)",
                                "fn": "submitter", "ok": ok, "seconds": round(time.time() - t0, 2),
                                "detail": (lines or text.splitlines()[-3:] or [""])[-1][:300],
                                "connections": seen, "refused": dropped})
        result["submitter_command"] = argv
        log(f"{'ok  ' if ok else 'FAIL'} RayJob submitter ({time.time() - t0:.1f}s): "
            f"{(lines or text.splitlines()[-3:] or [''])[-1][:200]}")
        self.check("the submitter Job's own command runs the RayJob's entrypoint", ok,
                   text[-1500:])
        status = self.kube.get("rayjob", "-n", NS, name).get("status", {})
        result["notes"].append(
            f"RayJob status as the operator sees it: jobStatus={status.get('jobStatus')!r}, "
            f"jobDeploymentStatus={status.get('jobDeploymentStatus')!r} (the operator polls the "
            "dashboard from the host, which has no route to the pod network)")

    def rayservice(self, result, obj, specs, client):
        # Where the platform runs the operator, with the label of its own manifests (the
        # policy's networkPolicy.operator).
        op_ns = NS
        op = self.add_standin("operator", "kuberay-operator", op_ns,
                              {"app.kubernetes.io/component": "kuberay-operator"},
                              f"{netns.SUBNET}.102")
        head = next(s for s in specs.values() if s["group"] == "head")
        svc = head_fqdn(f"{head['pod'].hostname.rsplit('-head-', 1)[0]}-head-svc", NS)
        config = yaml.safe_load(obj["spec"]["serveConfigV2"])
        operator = self.session(op, self.base_env("kuberay-operator"))
        by_ip = self.by_ip()
        try:
            self.step(result, operator, by_ip,
                      "Serve config PUT to the dashboard :8266 (the operator's call)", "http",
                      {"url": f"http://{svc}:8266/api/serve/applications/", "method": "PUT",
                       "body": config}, 30)
        finally:
            operator.close()
        cl = self.session(client, self.base_env("ray-client"))
        try:
            self.step(result, cl, by_ip, "RayService answers on head:8001 from ray-clients", "http",
                      {"url": f"http://{svc}:8001/", "contains": "rayservice", "until": True}, 90)
        finally:
            cl.close()
        self.check("the RayService's Serve application answers",
                   all(s["ok"] for s in result["steps"] if "Serve" in s["step"]
                       or "RayService" in s["step"]))
        result["notes"].append("the operator cannot reach the dashboard from the host (no route "
                               "to the pod network); the rig made its PUT from a stand-in pod in "
                               f"namespace {op_ns}")

    def start_pods_no_wait(self, pods):
        keys = self.pod_keys(pods)
        specs = {}
        head = pods[0]
        svc = f"{head['metadata']['labels']['ray.io/cluster']}-head-svc"
        ns = head["metadata"]["namespace"]
        self.start_dns(svc, ns, f"{netns.SUBNET}.10")
        for i, p in enumerate(pods):
            name = p["metadata"]["name"]
            ip = f"{netns.SUBNET}.{10 + i}"
            c = p["spec"]["containers"][0]
            env, notes = kubelet.container_env(p, c, ip, "worker-1", self.allocatable, self.kube.lookup)
            env = {**self.base_env(name), **env}
            argv = kubelet.command_line(c, env)
            pod = self.net.add_pod(keys[name], name, {}, kubelet.tmpfs_mounts(p, c), ip, resolv(ns))
            logpath = os.path.join(self.out, "logs", f"{self.scenario}-{pod.key}.log")
            with open(logpath, "w") as logf:
                logf.write("$ " + json.dumps(argv) + "\n")
                logf.flush()
                proc = subprocess.Popen(pod.enter() + argv, env=env, cwd="/", stdout=logf,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log(f"started {name} at {ip}: {argv[-1].strip()[:160]}")
            specs[name] = {"pod": pod, "env": env, "argv": argv, "proc": proc, "log": logpath}
        return specs, None, None

    def run_cluster(self, result, pods, policies, full):
        t0 = time.time()
        specs, client, eps = self.start_pods(pods, policies)
        by_ip = {s["pod"].ip: s["pod"].key for s in specs.values()}
        by_ip[client.ip] = "client"
        by_ip[DNS_IP] = "kube-dns"
        result["commands"] = {s["pod"].key: {"argv": s["argv"], "env_notes": s["notes"]}
                              for s in specs.values()}
        result["policies"] = [p["metadata"]["name"] for p in policies]
        head = next(s for s in specs.values() if s["group"] == "head")
        ips = {s["pod"].key: s["pod"].ip for s in specs.values()}
        svc_host = head_fqdn(f"{pods[0]['metadata']['labels']['ray.io/cluster']}-head-svc", NS)
        self.connections(by_ip)
        driver = self.session(head["pod"], head["env"])
        try:
            step = lambda *a, **k: self.step(result, driver, by_ip, *a, **k)  # noqa: E731
            step("driver connects (ray.init on the head)", "init", {}, 40)
            step(f"{len(pods)} nodes alive", "nodes", {"want": len(pods)}, 90 if full else 60)
            result["startup_seconds"] = round(time.time() - t0, 1)
            b = next(k for k in ips if k.startswith("cpu-b"))
            cross = [
                (f"task pinned on {b}", "task", {"ip": ips[b]}),
                ("actor pinned on cpu-a-0, 2 calls", "actor", {"ip": ips["cpu-a-0"]}),
                ("20 MB object cpu-a-1 -> head", "object_from", {"ip": ips["cpu-a-1"]}),
                (f"20 MB object head -> {b}", "object_to", {"ip": ips[b]}),
            ]
            if full:
                for name, fn, args in cross:
                    step(name, fn, args, STEP_TIMEOUT)
            else:
                # All four at once, while the GCS still counts the workers alive.
                both = step("task, actor and both objects at once", "concurrently",
                            {"steps": [list(c) for c in cross]}, 20)
                parts = json.loads(both["detail"]) if both["ok"] else {}
                for name, fn, _ in cross:
                    r = parts.get(name, {"ok": False, "error": both.get("error", "?")})
                    result["steps"].append({"step": name, "fn": fn, **r})
                    log(f"{'PASSED, should fail:' if r['ok'] else 'fails, as it should:'} {name} ({r.get('seconds')}s): "
                        f"{r.get('detail') or r.get('error', '')[:200]}")
            if full:
                step(f"list_logs of {b}", "list_logs", {"ip": ips[b]}, STEP_TIMEOUT)
                step("Serve deployment on the planned port 8001", "serve", {"port": 8001}, 90)
            else:
                step(f"{len(pods)} nodes still alive after the steps", "nodes",
                     {"want": len(pods)}, 3)
        finally:
            driver.close()
        if full:
            cl = self.session(client, self.base_env("ray-client"))
            try:
                step = lambda *a, **k: self.step(result, cl, by_ip, *a, **k)  # noqa: E731
                step("Ray Client from ray-clients (ray://head:10002)", "ray_client",
                     {"url": f"ray://{svc_host}:10002"}, 40)
                step("job submission via dashboard :8266 (RayJob's path)", "job",
                     {"url": f"http://{svc_host}:8266"}, 60)
                step("Serve answers on head:8001", "http",
                     {"url": f"http://{svc_host}:8001/", "contains": "hello"}, STEP_TIMEOUT)
                for s in specs.values():
                    step(f"metrics scrape {s['pod'].key}:8081", "http",
                         {"url": f"http://{s['pod'].ip}:8081/metrics", "contains": "ray_"},
                         STEP_TIMEOUT)
            finally:
                cl.close()
            ok = all(s["ok"] for s in result["steps"])
            self.check("every workload step passes", ok,
                       ", ".join(s["step"] for s in result["steps"] if not s["ok"]))
            self.inventory(result, specs, eps, policies)
        else:
            cross = [s for s in result["steps"] if s["fn"] in ("task", "actor", "object_from", "object_to")]
            self.check("cross-node task, actor and objects all fail", all(not s["ok"] for s in cross),
                       ", ".join(s["step"] for s in cross if s["ok"]))
            refused = sorted({c for s in result["steps"] for c in s.get("refused", [])})
            self.check("the rig refused connections", bool(refused), "")
            result["refused"] = refused
        for s in specs.values():
            alive = s["proc"].poll() is None
            result.setdefault("ray_start_alive_at_end", {})[s["pod"].key] = alive
        self.collect_ray_logs(specs)

    def step(self, result, session, by_ip, name, fn, args, timeout):
        self.connections(by_ip)
        answer = session.ask(name, fn, args, timeout)
        _, _, seen, dropped = self.connections(by_ip)
        answer.update(fn=fn, connections=seen, refused=dropped)
        result["steps"].append(answer)
        log(f"{'ok  ' if answer['ok'] else 'FAIL'} {name} ({answer['seconds']}s): "
            f"{(answer.get('detail') or answer.get('error', ''))[:300]}")
        return answer

    def inventory(self, result, specs, eps, policies):
        rows, loopback, unplanned = [], [], []
        for s in specs.values():
            for addr, port, proc in sorted(self.net.listeners(s["pod"]), key=lambda r: r[1]):
                ip = ipaddress.ip_address(addr) if addr not in ("*", "0.0.0.0", "::") else None
                ip = getattr(ip, "ipv4_mapped", None) or ip
                row = {"pod": s["pod"].key, "group": s["group"], "addr": addr, "port": port,
                       "process": proc, "planned": planned(port)}
                if ip is not None and ip.is_loopback:
                    loopback.append(row)
                    continue
                rows.append(row)
                known = known_unplanned(proc, port)
                if known:
                    row["planned"] = f"not planned, accepted: {known}"
                elif not row["planned"]:
                    row["ray_fixed"] = RAY_FIXED.get(port)
                    unplanned.append(f"{s['pod'].key} {addr}:{port} ({proc})")
        result["listeners"], result["loopback_listeners"] = rows, loopback
        self.check("every non-loopback listener is a planned port", not unplanned,
                   "; ".join(unplanned))
        # Ports the workloads used; none of their connections may have been refused.
        blocked = []
        used = {}
        for st in result["steps"]:
            for c in st.get("connections", []):
                used.setdefault(st["step"], set()).add(c.split("->", 1)[1])
            if st.get("refused"):
                blocked += st["refused"]
        result["ports_used"] = {k: sorted(v) for k, v in used.items()}
        self.check("no connection was refused during the workloads", not blocked, "; ".join(blocked))
        # Every planned port between the cluster's pods, and the client ports, are admitted.
        ray_eps = [e for e in eps if e.namespace == NS]
        client = next(e for e in eps if e.namespace == CLIENT_NS)
        missing = []
        for src in ray_eps:
            for dst in ray_eps:
                if src is dst:
                    continue
                for name, lo, hi in PLAN:
                    if name in SCRAPE_ONLY:
                        continue
                    for port in {lo, hi}:
                        if not netpol_nft.allowed(src, dst, port, "TCP", policies, eps):
                            missing.append(f"{src.name}->{dst.name}:{port} ({name})")
        head_ep = ray_eps[0]
        for port in CLIENT_PORTS:
            if not netpol_nft.allowed(client, head_ep, port, "TCP", policies, eps):
                missing.append(f"client->head:{port}")
        dns = next(e for e in eps if e.namespace == DNS_NS)
        for src in ray_eps:
            for proto in ("UDP", "TCP"):
                if not netpol_nft.allowed(src, dns, 53, proto, policies, eps):
                    missing.append(f"{src.name}->kube-dns:53/{proto}")
        self.check("the approved NetworkPolicy admits every planned port the workloads need, "
                   "and DNS",
                   not missing, "; ".join(missing[:20]))


class Session:
    """workloads.py inside a pod, answering one step at a time."""

    def __init__(self, rig, pod, env):
        self.rig = rig
        path = os.path.join(rig.out, "logs", f"{rig.scenario}-workloads-{pod.key}.log")
        self.stderr = open(path, "a")
        self.proc = subprocess.Popen(
            pod.enter() + [os.path.join(rig.venv_bin, "python"), os.path.join(HERE, "workloads.py")],
            env={**env, "PYTHONPATH": HERE, "PYTHONUNBUFFERED": "1"}, cwd="/",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def ask(self, name, fn, args, timeout):
        t0 = time.time()
        self.proc.stdin.write(json.dumps({"step": name, "fn": fn, "args": args,
                                          "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        deadline = time.time() + timeout + 15
        while time.time() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.1, deadline - time.time()))
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("@@result "):
                return json.loads(line[len("@@result "):])
        return {"step": name, "ok": False, "seconds": round(time.time() - t0, 2),
                "error": "the workload process did not answer"}

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(15)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def tail(path, n=30):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def write_report(results, path):
    lines = [f"# Ray {results['ray_version']}", ""]
    for sc in results["scenarios"]:
        lines.append(f"## Scenario {sc['name']}: {'PASS' if sc['ok'] else 'FAIL'} ({sc.get('seconds')} s)")
        if sc.get("error"):
            lines.append(f"\nerror: `{sc['error'][:500]}`")
        for note in sc.get("notes", []):
            lines.append(f"\nnote: {note}")
        if sc.get("startup_seconds"):
            lines.append(f"\nRay nodes up {sc['startup_seconds']} s after the first `ray start`.")
        if sc.get("ray_error"):
            lines.append(f"\nRay: `{sc['ray_error']}`")
        lines += ["", "| check | result |", "|---|---|"]
        lines += [f"| {c['what']} | {'ok' if c['ok'] else 'FAIL: ' + c['detail'][:200].replace('|', '/')} |"
                  for c in sc["checks"]]
        if sc["steps"]:
            lines += ["", "| step | result | s | new TCP connections (source->destination:port) | refused |", "|---|---|---|---|---|"]
            for st in sc["steps"]:
                conns = sorted(set(st.get("connections", [])))
                lines.append(
                    f"| {st['step']} | {'ok' if st['ok'] else 'FAIL'} | {st['seconds']} | "
                    f"{', '.join(conns)} | {', '.join(st.get('refused', []))} |")
        if sc.get("listeners"):
            lines += ["", "| pod | address | port | process | planned as |", "|---|---|---|---|---|"]
            for r in sc["listeners"]:
                lines.append(f"| {r['pod']} | {r['addr']} | {r['port']} | {r['process']} | "
                             f"{r['planned'] or '**not planned**' + (' (' + r['ray_fixed'] + ')' if r.get('ray_fixed') else '')} |")
            lines += ["", "Loopback only:", "", "| pod | address | port | process |", "|---|---|---|---|"]
            for r in sc["loopback_listeners"]:
                lines.append(f"| {r['pod']} | {r['addr']} | {r['port']} | {r['process']} |")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--kubectl", required=True)
    r.add_argument("--kubeconfig", required=True)
    r.add_argument("--raygate-kubeconfig", required=True)
    r.add_argument("--raygate", required=True)
    r.add_argument("--policy", default=os.environ.get("RAYGATE_POLICY") or None)
    r.add_argument("--venv", required=True)
    r.add_argument("--ray-version", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--state", required=True)
    r.add_argument("--prefix", required=True)
    r.add_argument("--scenarios", default="1,2,3,4")
    c = sub.add_parser("cleanup")
    c.add_argument("--state", required=True)
    args = p.parse_args()
    if args.cmd == "cleanup":
        netns.cleanup(args.state)
        return 0
    # run.sh forwards INT and TERM as TERM (a background job ignores SIGINT): stop like Ctrl-C.
    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    rig = Rig(args)
    ok = rig.run()
    log(f"report: {os.path.join(args.out, 'report.md')}")
    for f in rig.failures:
        log(f"FAILED {f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
