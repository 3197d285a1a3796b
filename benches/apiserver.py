#!/usr/bin/env python3
"""Admission as users see it: RayCluster creates through the API server, and the Pods the
KubeRay operator then creates, with each admission setup in the path, read from the API
server's own metrics. Driven by scripts/bench-apiserver (which brings up the control plane
and raygate); see docs/BENCHMARKS.md.

    apiserver.py --cluster-dir DIR --raygate BIN --out FILE [--clusters N] [--runs R]
                 [--rate PER_SECOND] [--concurrency C] [--setups none,raygate,raygate-audit]

Per setup and run: a fresh namespace whose label selects that setup's webhooks, a
NetworkPolicy covering the namespace's Ray Pods (so raygate admits them), then N RayClusters
created at a fixed rate (open loop) or as fast as C connections can (closed loop), and a wait
until the operator has created every head and worker Pod. Before and after: the API server's
/metrics (admission webhook and request duration histograms) and its CPU time from /proc.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABEL = "raygate-bench/setup"


def log(msg):
    print(f"[bench-apiserver] {msg}", file=sys.stderr, flush=True)


class Api:
    """Keep-alive HTTPS to the API server as admin (the cluster's client certificate)."""

    def __init__(self, cluster_dir):
        with open(os.path.join(cluster_dir, "kubeconfig")) as f:
            server = yaml.safe_load(f)["clusters"][0]["cluster"]["server"]
        self.host, self.port = re.match(r"https://([^:/]+):(\d+)", server).groups()
        pki = os.path.join(cluster_dir, "pki")
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPSConnection(self.host, int(self.port), context=self.ctx, timeout=30)
            self.local.conn = c
        return c

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        for attempt in range(2):
            c = self.conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


# --- the API server's metrics --------------------------------------------------------------------

METRIC = re.compile(r'^([a-zA-Z_:]+)\{([^}]*)\} ([0-9.eE+-]+|\+Inf|NaN)$')


def parse_metrics(text, prefixes):
    series = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        if not name.startswith(prefixes):
            continue
        lab = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', labels))
        series[(name, tuple(sorted(lab.items())))] = float(value)
    return series


def scrape(api):
    status, body = api.request("GET", "/metrics")
    assert status == 200, status
    return parse_metrics(body.decode(), ("apiserver_admission_webhook_admission_duration_seconds",
                                         "apiserver_request_duration_seconds"))


def scrape_raygate(url):
    """raygate's own admission_duration_seconds: its handler's time, in finer buckets (25 µs
    and up) than the API server's webhook histogram (5 ms and up)."""
    if not url:
        return {}
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse_metrics(response.read().decode(), ("raygate_admission_duration_seconds",))


def histogram(before, after, name, match):
    """The delta of histogram `name` over the series whose labels include `match`: sorted
    [(le, count)] summed over the matching series, and the total count."""
    buckets = {}
    for (n, labels), value in after.items():
        if n != name + "_bucket":
            continue
        lab = dict(labels)
        if any(lab.get(k) != v for k, v in match.items()):
            continue
        le = float("inf") if lab["le"] == "+Inf" else float(lab["le"])
        buckets[le] = buckets.get(le, 0) + value - before.get((n, labels), 0)
    return sorted(buckets.items())


def quantile(buckets, q):
    """Prometheus' histogram_quantile: linear within the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            span = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / span if span else 0)
        prev_le, prev_count = le, count
    return prev_le


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- setups ---------------------------------------------------------------------------------------

def kubectl(cluster_dir, *args, input=None, attempts=1):
    """kubectl against the bench's control plane; its stderr in the error when it fails."""
    for attempt in range(attempts):
        done = subprocess.run([os.path.join(ROOT, ".cache/e2e/bin/kubectl"), "--kubeconfig",
                               os.path.join(cluster_dir, "kubeconfig"), *args], input=input,
                              text=True, capture_output=True)
        if done.returncode == 0:
            return done.stdout
        log(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        if attempt + 1 < attempts:
            time.sleep(2)
    raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)


class Served:
    """A process the bench started and stops."""

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def make_certs(raygate, certs):
    """A serving certificate for 127.0.0.1 under `certs`; returns the CA bundle."""
    made = subprocess.run([raygate, "certs", "--host", "127.0.0.1", "--out-dir", certs],
                          text=True, capture_output=True, check=True)
    return made.stdout.strip()


class Raygate(Served):
    """`raygate serve` on loopback with the cluster's view, registered for one setup's label."""

    def __init__(self, binary, mode, workdir, cluster_dir, name=None):
        """Without `cluster_dir`, raygate has no cluster view (its reviews run inline)."""
        name = name or mode
        certs = os.path.join(workdir, f"certs-{name}")
        self.ca_bundle = make_certs(binary, certs)
        self.log = open(os.path.join(workdir, f"raygate-{name}.log"), "w")
        view = ["--kubeconfig", os.path.join(cluster_dir, "kubeconfig")] if cluster_dir else []
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
             "--log-format", "json", "--shutdown-delay", "0", "--mode", mode, *view,
             "--tls-cert", f"{certs}/tls.crt", "--tls-key", f"{certs}/tls.key"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline and self.port is None:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"raygate serve --mode {mode} exited: {self.proc.wait()}")
            self.log.write(line)
            if "raygate is serving" in line:
                serving = json.loads(line)
                self.port = int(serving["addr"].rsplit(":", 1)[1])
                self.metrics_url = f"http://{serving['metrics']}/metrics"
        threading.Thread(target=lambda: [self.log.write(l) for l in self.proc.stdout],
                         daemon=True).start()

    def register(self, cluster_dir, setup):
        return register(cluster_dir, setup, self.port, self.ca_bundle)


class Floor(Raygate):
    """examples/floor.rs with --echo-uid: raygate's TLS and HTTP stack answering "allowed" at
    once, registered like raygate: what the API server's webhook call costs with no rules."""

    def __init__(self, binary, raygate, workdir):
        certs = os.path.join(workdir, "certs-floor")
        self.ca_bundle = make_certs(raygate, certs)
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.log = open(os.path.join(workdir, "floor.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{self.port}", "--tls-cert", f"{certs}/tls.crt",
             "--tls-key", f"{certs}/tls.key", "--echo-uid"], stdout=self.log, stderr=self.log)
        time.sleep(1)
        if self.proc.poll() is not None:
            raise SystemExit(f"the floor exited: {self.proc.returncode}")


class Kyverno(Served):
    """Kyverno v1.19.1's admission controller out of cluster, as scripts/bench-kyverno runs it
    (its own certificate, its own webhook registration; admission reports and policy events
    off), with raygate's rules as a ClusterPolicy or as ValidatingPolicies
    (benches/policies/kyverno/). Its webhooks see every namespace, so its runs come after the
    others'."""

    POLICIES = {"kyverno-cpol": "benches/policies/kyverno/raygate.yaml",
                "kyverno-vpol": "benches/policies/kyverno/raygate.vpol.yaml"}

    def __init__(self, binary, workdir, cluster_dir):
        self.cluster_dir = cluster_dir
        k = lambda *a, **kw: kubectl(cluster_dir, *a, **kw)
        k("apply", "--server-side", "--force-conflicts", "-f", os.path.join(ROOT, ".cache/kyverno/crds"))
        k("wait", "--for", "condition=established", "--timeout=120s",
          "crd/clusterpolicies.kyverno.io", "crd/policies.kyverno.io", attempts=5)
        k("create", "namespace", "kyverno")
        # KubeRay v1.5.0 has no RayCronJob, which the policies match (see scripts/bench-kyverno).
        k("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "raycronjobs.ray.io"},
            "spec": {"group": "ray.io", "scope": "Namespaced",
                     "names": {"kind": "RayCronJob", "listKind": "RayCronJobList",
                               "plural": "raycronjobs", "singular": "raycronjob"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": True}}}]}}))
        k("wait", "--for", "condition=established", "--timeout=60s", "crd/raycronjobs.ray.io",
          attempts=5)
        import socket
        ports = []
        for _ in range(2):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                ports.append(sock.getsockname()[1])
        port, metrics = ports
        env = dict(os.environ, KYVERNO_NAMESPACE="kyverno", KYVERNO_POD_NAME="kyverno-bench",
                   KYVERNO_SERVICEACCOUNT_NAME="kyverno", KYVERNO_DEPLOYMENT="kyverno",
                   INIT_CONFIG="kyverno", METRICS_CONFIG="kyverno-metrics")
        self.log = open(os.path.join(workdir, "kyverno.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "--kubeconfig", os.path.join(cluster_dir, "kubeconfig"),
             "--serverIP", f"127.0.0.1:{port}", "--webhookServerHost", "127.0.0.1",
             "--webhookServerPort", str(port), "--tlsKeyAlgorithm", "ECDSA",
             "--caSecretName", "kyverno-svc.kyverno.svc.kyverno-tls-ca",
             "--tlsSecretName", "kyverno-svc.kyverno.svc.kyverno-tls-pair",
             "--admissionReports=false",
             "--omitEvents=PolicyViolation,PolicyApplied,PolicyError,PolicySkipped",
             "--metricsHost", "127.0.0.1", "--metricsPort", str(metrics),
             "--controllerRuntimeMetricsAddress", "0", "--autoMemLimitEnabled=false",
             "--loggingFormat", "json"], env=env, stdout=self.log, stderr=self.log)
        k("-n", "kyverno", "wait", "--for=create", "--timeout=180s",
          "secret/kyverno-svc.kyverno.svc.kyverno-tls-ca")

    def load(self, api, setup, ns):
        """Loads the setup's policy alone and waits until Kyverno denies a RayCluster on the
        master through the API server in `ns`."""
        k = lambda *a, **kw: kubectl(self.cluster_dir, *a, **kw)
        try:
            k("delete", "clusterpolicy,validatingpolicies.policies.kyverno.io", "--all")
        except subprocess.CalledProcessError:
            pass  # nothing to delete yet
        deadline = time.time() + 180
        # Kyverno's policy webhook refuses policies until its certificate is ready.
        k("apply", "-f", os.path.join(ROOT, self.POLICIES[setup]), attempts=90)
        probe = cluster_object("kyverno-probe")
        probe["spec"]["headGroupSpec"]["template"]["spec"]["nodeName"] = "gpu-node"
        while True:
            status, body = api.request("POST", f"/apis/ray.io/v1/namespaces/{ns}/rayclusters", probe)
            if status == 201:
                api.request("DELETE", f"/apis/ray.io/v1/namespaces/{ns}/rayclusters/kyverno-probe")
            elif status == 403 or b"admission webhook" in body:
                log(f"{setup}: Kyverno denies the probe ({status})")
                return
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"{setup}: Kyverno never denied the probe: {status} {body[:300]!r}")
            time.sleep(1)


def register(cluster_dir, setup, port, ca_bundle):
    """raygate's webhook configurations (deploy/base), pointed at 127.0.0.1:port and limited to
    the namespaces labelled for `setup`."""
    rendered = kubectl(cluster_dir, "kustomize", os.path.join(ROOT, "deploy/base"))
    docs = []
    for doc in yaml.safe_load_all(rendered):
        if doc["kind"] in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            doc["metadata"]["name"] = f"raygate-bench-{setup}"
            for hook in doc["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}",
                                        "caBundle": ca_bundle}
                hook["namespaceSelector"] = {"matchLabels": {LABEL: setup}}
            docs.append(doc)
        elif doc["kind"] in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
            docs.append(doc)
    kubectl(cluster_dir, "apply", "--server-side", "-f", "-",
            input=yaml.safe_dump_all(docs))
    return [f"raygate-bench-{setup}"]


# --- the load -------------------------------------------------------------------------------------

def cluster_object(name):
    """A RayCluster that raygate admits as it stands (the plan's ports, placement, resources):
    KubeRay creates a head and one worker Pod for it."""
    with open(os.path.join(ROOT, "benches/apiserver-raycluster.yaml")) as f:
        obj = yaml.safe_load(f)
    obj["metadata"]["name"] = name
    return obj


def create_all(api, ns, n, rate, concurrency):
    """Creates n RayClusters; at `rate` per second (open loop, one connection per in-flight
    create) or, with rate 0, as fast as `concurrency` connections can. Returns (seconds,
    statuses)."""
    template = cluster_object("x")
    statuses = {}
    lock = threading.Lock()
    next_index = [0]

    def one(i):
        obj = copy.deepcopy(template)
        obj["metadata"]["name"] = f"c{i:05d}"
        status, body = api.request("POST", f"/apis/ray.io/v1/namespaces/{ns}/rayclusters", obj)
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            if status != 201 and statuses[status] == 1:
                log(f"create answered {status}: {body[:300]!r}")

    t0 = time.time()
    if rate:
        threads = []
        for i in range(n):
            due = t0 + i / rate
            time.sleep(max(0, due - time.time()))
            t = threading.Thread(target=one, args=(i,))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
    else:
        def worker():
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= n:
                    return
                one(i)
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return time.time() - t0, statuses


def wait_pods(api, ns, want, timeout):
    deadline = time.time() + timeout
    count = 0
    while time.time() < deadline:
        status, body = api.request("GET", f"/api/v1/namespaces/{ns}/pods?limit=1")
        # The list's remainingItemCount counts the rest without listing them.
        meta = json.loads(body).get("metadata", {})
        items = json.loads(body).get("items", [])
        count = len(items) + int(meta.get("remainingItemCount") or 0)
        if count >= want:
            return count
        time.sleep(0.5)
    return count


def make_namespace(args, ns, setup):
    kubectl(args.cluster_dir, "apply", "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {LABEL: setup}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "ray", "namespace": ns},
         "spec": {"podSelector": {"matchExpressions": [
             {"key": "ray.io/cluster", "operator": "Exists"}]},
             "policyTypes": ["Ingress"],
             "ingress": [{"from": [{"podSelector": {}}]}]}}]))


def run_one(api, args, setup, run, apiserver_pid, metrics_url=None):
    ns = f"bench-{setup}-{run}"
    make_namespace(args, ns, setup)
    # raygate's cluster view must hold the namespace's NetworkPolicy before its Pods come.
    time.sleep(2)
    before, cpu0, own0 = scrape(api), cpu_seconds(apiserver_pid), scrape_raygate(metrics_url)
    seconds, statuses = create_all(api, ns, args.clusters, args.rate, args.concurrency)
    pods = wait_pods(api, ns, 2 * args.clusters, args.pod_timeout)
    after, cpu1, own1 = scrape(api), cpu_seconds(apiserver_pid), scrape_raygate(metrics_url)
    result = {"setup": setup, "run": run, "namespace": ns, "seconds": round(seconds, 3),
              "creates_per_second": round(args.clusters / seconds, 1), "statuses": statuses,
              "pods": pods, "apiserver_cpu_seconds": round(cpu1 - cpu0, 3)}
    for resource in ("rayclusters", "pods"):
        b = histogram(before, after, "apiserver_request_duration_seconds",
                      {"verb": "POST", "resource": resource})
        result[f"{resource}_count"] = int(b[-1][1]) if b else 0
        for q in (0.5, 0.99):
            v = quantile(b, q)
            result[f"{resource}_p{int(q * 100)}_ms"] = round(v * 1000, 2) if v is not None else None
    hooks = histogram(before, after, "apiserver_admission_webhook_admission_duration_seconds",
                      {"operation": "CREATE"})
    result["webhook_count"] = int(hooks[-1][1]) if hooks else 0
    for q in (0.5, 0.99):
        v = quantile(hooks, q)
        result[f"webhook_p{int(q * 100)}_ms"] = round(v * 1000, 2) if v is not None else None
    # Per webhook, the share of calls under each of the API server's first buckets.
    names = sorted({dict(l)["name"] for (n, l) in after
                    if n == "apiserver_admission_webhook_admission_duration_seconds_bucket"
                    and dict(l).get("operation") == "CREATE"})
    result["webhooks"] = {}
    for name in names:
        b = histogram(before, after, "apiserver_admission_webhook_admission_duration_seconds",
                      {"operation": "CREATE", "name": name})
        total = b[-1][1] if b else 0
        if total:
            result["webhooks"][name] = {"calls": int(total), **{
                f"under_{le * 1000:g}ms": round(count / total, 3)
                for le, count in b if le in (0.005, 0.025, 0.1)}}
    own = histogram(own0, own1, "raygate_admission_duration_seconds", {})
    for q in (0.5, 0.99):
        v = quantile(own, q)
        result[f"raygate_p{int(q * 100)}_us"] = round(v * 1e6, 1) if v is not None else None
    log(json.dumps(result))
    return result


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def report(results, args, machine):
    """Markdown: the median over runs per setup, and its ratio to the run with no webhook."""
    setups = list(dict.fromkeys(r["setup"] for r in results))
    cols = [("creates_per_second", "RayCluster creates/s"),
            ("rayclusters_p50_ms", "RayCluster POST p50 ms"),
            ("rayclusters_p99_ms", "RayCluster POST p99 ms"),
            ("pods_p50_ms", "Pod POST p50 ms"), ("pods_p99_ms", "Pod POST p99 ms"),
            ("webhook_p50_ms", "webhook p50 ms"), ("webhook_p99_ms", "webhook p99 ms"),
            ("raygate_p50_us", "in raygate p50 µs"), ("raygate_p99_us", "in raygate p99 µs"),
            ("cpu_ms_per_object", "API server CPU ms per object")]
    for r in results:
        r["cpu_ms_per_object"] = round(1000 * r["apiserver_cpu_seconds"] / (3 * args.clusters), 3)
    med = {s: {k: median(r.get(k) for r in results if r["setup"] == s) for k, _ in cols}
           for s in setups}
    mode = (f"open loop at {args.rate:g} creates/s" if args.rate
            else f"closed loop, {args.concurrency} connections")
    lines = [f"{args.clusters} RayClusters per run ({mode}), then the operator's {2 * args.clusters} "
             f"Pods; {args.runs} runs per setup, interleaved; medians. {machine}", "",
             "| setup | " + " | ".join(h for _, h in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for s in setups:
        cells = []
        for k, _ in cols:
            v, base = med[s][k], med.get("none", {}).get(k)
            cell = "n/a" if v is None else f"{v:g}"
            if s != "none" and v is not None and base:
                cell += f" ({v / base:.2f}×)"
            cells.append(cell)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    spread = {s: (min(r["rayclusters_p99_ms"] or 0 for r in results if r["setup"] == s),
                  max(r["rayclusters_p99_ms"] or 0 for r in results if r["setup"] == s))
              for s in setups}
    lines += ["", "RayCluster POST p99 from run to run (ms): " + "; ".join(
        f"{s} {lo:g}–{hi:g}" for s, (lo, hi) in spread.items())]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cluster-dir", required=True)
    ap.add_argument("--raygate", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=0, help="creates per second; 0: closed loop")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--pod-timeout", type=float, default=120)
    ap.add_argument("--setups", default="none,floor,raygate,raygate-audit")
    ap.add_argument("--report", help="also write a Markdown table here")
    ap.add_argument("--floor", help="examples/floor (for the setup `floor`)")
    ap.add_argument("--kyverno", help="Kyverno's admission controller (setups kyverno-cpol, kyverno-vpol)")
    ap.add_argument("--machine", default="", help="the conditions, for the report")
    args = ap.parse_args()
    api = Api(args.cluster_dir)
    with open(os.path.join(args.cluster_dir, "pids", "kube-apiserver.pid")) as f:
        apiserver_pid = int(f.read())
    raygates = {}
    results = []
    try:
        setups = [s for s in args.setups.split(",") if not s.startswith("kyverno-")]
        kyverno_setups = [s for s in args.setups.split(",") if s.startswith("kyverno-")]
        for setup in setups:
            if setup in ("raygate", "raygate-audit"):
                mode = "enforce" if setup == "raygate" else "audit"
                raygates[setup] = Raygate(args.raygate, mode, args.workdir, args.cluster_dir)
                raygates[setup].register(args.cluster_dir, setup)
            elif setup == "raygate-no-view":
                raygates[setup] = Raygate(args.raygate, "enforce", args.workdir, None, setup)
                raygates[setup].register(args.cluster_dir, setup)
            elif setup == "floor":
                raygates[setup] = Floor(args.floor, args.raygate, args.workdir)
                raygates[setup].register(args.cluster_dir, setup)
            elif setup != "none":
                raise SystemExit(f"unknown setup {setup}")
        for setup in kyverno_setups:
            if setup not in Kyverno.POLICIES:
                raise SystemExit(f"unknown setup {setup}")
        time.sleep(3)
        # A warm-up run per setup (connections, caches), not reported.
        own = {s: getattr(r, "metrics_url", None) for s, r in raygates.items()}
        for setup in setups:
            run_one(api, args, setup, "warmup", apiserver_pid, own.get(setup))
        # Runs interleave the setups, so that drift (etcd growing, caches warming) spreads
        # over all of them.
        for run in range(args.runs):
            for setup in setups:
                results.append(run_one(api, args, setup, run, apiserver_pid, own.get(setup)))
        if kyverno_setups:
            for r in raygates.values():
                r.stop()
            raygates.clear()
            raygates["kyverno"] = Kyverno(args.kyverno, args.workdir, args.cluster_dir)
            for setup in kyverno_setups:
                make_namespace(args, f"bench-{setup}-probe", setup)
                raygates["kyverno"].load(api, setup, f"bench-{setup}-probe")
                run_one(api, args, setup, "warmup", apiserver_pid)
                for run in range(args.runs):
                    results.append(run_one(api, args, setup, run, apiserver_pid))
    finally:
        for r in raygates.values():
            r.stop()
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "machine": args.machine, "results": results}, f, indent=2)
    if args.report:
        with open(args.report, "w") as f:
            f.write(report(results, args, args.machine))


if __name__ == "__main__":
    main()
