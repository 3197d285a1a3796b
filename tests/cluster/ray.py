"""Ray on the real cluster, through raygate (tests/cluster/run.sh runs these in order):

    ray.py seed        the infrastructure document's RayCluster, denied with its own
                       NetworkPolicy, admitted with the one raygate's hints ask for; placed by
                       kube-scheduler, then Ray's workloads under kube-network-policies and
                       CoreDNS, the autoscaler up and down, and deletion
    ray.py lifecycle   a RayJob to SUCCEEDED and a RayService to Ready, driven by the operator
    ray.py controls    what raygate guards against happens for real: the document's
                       NetworkPolicy breaks Ray, an unpinned head lands on gpu-node, a
                       container over its memory limit is OOM-killed

Each writes its steps to .cache/cluster/ray-report/<scenario>.json and exits non-zero if a
check failed. Needs the environment of `tests/cluster/cluster.sh env` and root (it reads
kube-network-policies' metrics on the host).
"""
import json
import os
import pathlib
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/cluster"))
import checks  # noqa: E402  (kubectl helpers)

from checks import KUBECTL, RAY_IMAGE, WORKERS, GPU_NODE, get, k, log  # noqa: E402

MANIFESTS = ROOT / "tests/cluster/manifests"
FIXTURES = ROOT / "tests/fixtures/manifests"
WORKLOADS = (ROOT / "tests/runtime/workloads.py").read_text()
RESULT_PREFIX = "@@result "
REPORT_DIR = ROOT / ".cache/cluster/ray-report"
RAYGATE = ROOT / "target/release/raygate"
ENGINE_METRICS = f"http://{os.environ['CLUSTER_APISERVER'].split('//')[-1].split(':')[0]}:9080/metrics"
RAY_NS = "kuberay"
CLIENT_NS = "ray-clients"
CONTROL_NS = "ray-controls"
SEED = "raycluster-autoscaler"


class CheckFailed(Exception):
    pass


class Report:
    def __init__(self, scenario):
        self.scenario = scenario
        self.steps = []
        self.notes = []
        self.failed = 0
        self.started = time.monotonic()

    def check(self, what, ok, detail=""):
        self.steps.append({"check": what, "ok": bool(ok), "detail": str(detail)[:600],
                           "at": round(time.monotonic() - self.started, 1)})
        log("ok  " if ok else "FAIL", what, f"({str(detail)[:300]})" if detail else "")
        if not ok:
            self.failed += 1
            raise CheckFailed(what)

    def note(self, text):
        self.notes.append(text)
        log("note", text)

    def write(self):
        REPORT_DIR.mkdir(parents=True, exist_ok=True)
        out = {"scenario": self.scenario, "seconds": round(time.monotonic() - self.started, 1),
               "failed": self.failed, "steps": self.steps, "notes": self.notes}
        (REPORT_DIR / f"{self.scenario}.json").write_text(json.dumps(out, indent=2) + "\n")


# --- kubectl -------------------------------------------------------------------------------------

def apply(docs, ns=None, check=True):
    """kubectl apply of documents (dicts) or YAML text; returns the process (stderr has the
    API server's warnings and denials)."""
    text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs)
    args = ["apply", "-f", "-"] + (["-n", ns] if ns else [])
    return k(*args, check=check, stdin=text)


def load(path, **replace):
    text = pathlib.Path(path).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    docs = [d for d in yaml.safe_load_all(text) if d]
    return docs


def namespace(name):
    apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    checks.until(f"namespace {name}'s default ServiceAccount", 30,
                 lambda: k("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0)


def pods(ns, selector):
    return get("pods", "-n", ns, "-l", selector)["items"]


def running(pod):
    return checks.ready(pod) and not pod["metadata"].get("deletionTimestamp")


def wait_ray_pods(ns, cluster, want, seconds=300):
    def ready():
        found = [p for p in pods(ns, f"ray.io/cluster={cluster}") if running(p)]
        return found if len(found) >= want else None
    return checks.until(f"{want} Ready Pods of RayCluster {ns}/{cluster}", seconds, ready)


def wait_gone(ns, cluster, seconds=120):
    def gone():
        left = [p["metadata"]["name"] for p in pods(ns, f"ray.io/cluster={cluster}")]
        services = get("services", "-n", ns, "-l", f"ray.io/cluster={cluster}")["items"]
        return not left and not services
    checks.until(f"RayCluster {ns}/{cluster}'s Pods and Services gone", seconds, gone)


def node_labels():
    return {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in get("nodes")["items"]}


def check_placement(report, ray_pods, what):
    labels = node_labels()
    placed = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in ray_pods}
    off_plan = {name: node for name, node in placed.items()
                if node == GPU_NODE or labels.get(node, {}).get("node-role") != "worker"}
    report.check(f"{what}: kube-scheduler put every Pod on a node-role=worker node, none on "
                 f"{GPU_NODE}", not off_plan and placed, f"{placed}; off the plan: {off_plan}")
    return placed


# --- raygate, the engine, the API server ------------------------------------------------------

def raygate_fix(docs, *flags):
    """`raygate fix` on documents, as a user prepares a manifest offline."""
    text = yaml.safe_dump_all(docs)
    path = REPORT_DIR / "fix-input.yaml"
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    out = subprocess.run([str(RAYGATE), "fix", *flags, "-f", str(path)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise CheckFailed(f"raygate fix: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def fix_policy():
    """The platform's plan as its users write manifests against it: the built-in policy with
    namespace ray-clients reaching the client, dashboard, Serve and metrics ports, which the
    NetworkPolicies `raygate fix` writes then admit."""
    text = (ROOT / "policies/ray-platform.yaml").read_text()
    access = ("    externalAccess:\n    - {namespaceLabels: {kubernetes.io/metadata.name: "
              f"{CLIENT_NS}}}, ports: [client, dashboard, serve, metrics]}}\n")
    edited = text.replace("    externalAccess: []\n", access)
    if edited == text:
        raise CheckFailed("policies/ray-platform.yaml no longer has `externalAccess: []`")
    path = REPORT_DIR / "fix-policy.yaml"
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(edited)
    return path


def with_generated_policy(report, path, kind, name):
    """The manifest at `path` through `raygate fix`: filled in, and followed by the one
    NetworkPolicy raygate writes for it, which is all the network access the workload gets."""
    docs = raygate_fix(load(path), "--policy", str(fix_policy()))
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    want = f"raygate-{kind.lower()}-{name}"
    report.check(f"`raygate fix` writes the {kind}'s NetworkPolicy {want}, its only one",
                 [p["metadata"]["name"] for p in policies] == [want],
                 [p["metadata"]["name"] for p in policies])
    return docs


def raygate_metrics():
    """raygate's admission counters summed over its Pods, read through the API server's proxy:
    {(kind, operation, decision): count}, dry runs left out."""
    totals = {}
    for pod in checks.serving_pods():
        name = pod["metadata"]["name"]
        text = k("get", "--raw", f"/api/v1/namespaces/{checks.NS}/pods/{name}:9090/proxy/metrics").stdout
        for m in re.finditer(r'^raygate_admission_requests_total\{([^}]*)\} (\d+)', text, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if labels.get("dry_run") == "true":
                continue
            key = (labels.get("kind"), labels.get("operation"), labels.get("decision"))
            totals[key] = totals.get(key, 0) + int(m.group(2))
    return totals


def metric_delta(before, after, kind=None, operation=None, decision=None):
    def matches(key):
        return all(want is None or got == want for got, want in zip(key, (kind, operation, decision)))
    return sum(v for key, v in after.items() if matches(key)) - \
        sum(v for key, v in before.items() if matches(key))


def metric_changes(before, after):
    """The admission counters that moved: {"kind/operation/decision": delta}."""
    return {"/".join(map(str, key)): count - before.get(key, 0)
            for key, count in after.items() if count != before.get(key, 0)}


def engine_verdicts():
    """kube-network-policies' own packet counters: {verdict: packets}."""
    with urllib.request.urlopen(ENGINE_METRICS, timeout=10) as response:
        text = response.read().decode()
    counts = {}
    for m in re.finditer(r'^kube_network_policies_packet_count\{([^}]*)\} ([0-9.e+]+)', text, re.M):
        verdict = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))).get("verdict")
        counts[verdict] = counts.get(verdict, 0) + int(float(m.group(2)))
    return counts


def engine_drops(since, namespaces=None):
    """The packets kube-network-policies dropped since `since` (RFC 3339), from its log at
    -v=2: "Evaluating packet" names the Pods, the line after it the packet's [id] and tuple,
    and "Finished syncing packet" id=N the verdict. Only packets from or to `namespaces`."""
    name = get("pods", "-n", "kube-system", "-l", "app=kube-network-policies")["items"][0]["metadata"]["name"]
    text = k("logs", "-n", "kube-system", name, f"--since-time={since}").stdout
    seen, drops, pods_of = {}, [], None
    for line in text.splitlines():
        if '"Evaluating packet"' in line:
            src = re.search(r'srcPod="([^"]*)"', line)
            dst = re.search(r'dstPod="([^"]*)"', line)
            pods_of = (src.group(1) if src else "", dst.group(1) if dst else "")
        elif pods_of and (m := re.match(r"\s+\[(\d+)\] (\S+) (\S+) (\w+)", line)):
            seen[m.group(1)] = {"src": pods_of[0], "dst": pods_of[1],
                                "packet": f"{m.group(2)} -> {m.group(3)} {m.group(4)}"}
            pods_of = None
        elif '"Finished syncing packet"' in line and 'verdict="drop"' in line:
            m = re.search(r"id=(\d+)", line)
            packet = seen.get(m.group(1) if m else "", {"packet": line[-120:], "src": "", "dst": ""})
            if namespaces is None or any(
                    pod.split("/")[0] in namespaces for pod in (packet["src"], packet["dst"])):
                drops.append(packet)
    return drops


def autoscaler_patches(since):
    """The autoscaler's writes to its RayCluster since `since`, from the API server's audit
    log: [(verb, HTTP code)]. KubeRay gives the autoscaler the cluster's own ServiceAccount."""
    user = f"system:serviceaccount:{RAY_NS}:{SEED}"
    found = []
    with open(os.environ["CLUSTER_AUDIT_LOG"]) as log_file:
        for line in log_file:
            event = json.loads(line)
            if (event.get("stage") == "ResponseComplete" and event["user"].get("username") == user
                    and event.get("objectRef", {}).get("resource") == "rayclusters"
                    and event.get("verb") in ("patch", "update")
                    and event.get("requestReceivedTimestamp", "") >= since):
                found.append((event["verb"], event.get("responseStatus", {}).get("code")))
    return found


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- Ray workloads in a Pod ------------------------------------------------------------------------

class Session:
    """tests/runtime/workloads.py in a Pod through `kubectl exec -i`: one JSON request per line."""

    def __init__(self, ns, pod, container):
        self.where = f"{ns}/{pod}"
        self.proc = subprocess.Popen(
            [KUBECTL, "exec", "-i", "-n", ns, pod, "-c", container, "--",
             "python", "-u", "-c", WORKLOADS],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.answers = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(RESULT_PREFIX):
                self.answers.put(json.loads(line[len(RESULT_PREFIX):]))
        self.answers.put(None)

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr = (self.stderr + [line.rstrip()])[-40:]

    def ask(self, step, fn, args=None, timeout=60):
        self.proc.stdin.write(json.dumps({"step": step, "fn": fn, "args": args or {},
                                          "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        try:
            answer = self.answers.get(timeout=timeout + 30)
        except queue.Empty:
            answer = None
        if answer is None:
            return {"step": step, "ok": False, "error": "the session ended: " + " | ".join(self.stderr[-5:])}
        return answer

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def run_step(report, session, what, fn, args=None, timeout=60, expect=True):
    answer = session.ask(what, fn, args, timeout)
    detail = answer.get("detail") or answer.get("error", "")
    verdict = answer["ok"] if expect else not answer["ok"]
    report.check(f"{what} ({'passes' if expect else 'fails'}, {answer.get('seconds', '?')}s)",
                 verdict, detail)
    return answer


def client_pod(ns):
    """A Pod of the Ray image in `ns` that only sleeps: the place users' clients run from."""
    namespace(ns)
    apply([{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ray-client", "namespace": ns, "labels": {"app": "ray-client"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"node-role": "worker"},
            "containers": [{
                "name": "client", "image": RAY_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "infinity"],
                "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                              "limits": {"cpu": "1", "memory": "1Gi"}}}]}}])
    k("wait", "--for=condition=Ready", "pod/ray-client", "-n", ns, "--timeout=120s")
    return Session(ns, "ray-client", "client")


def head_service(ns, cluster):
    return f"{cluster}-head-svc.{ns}.svc.cluster.local"


# --- scenario: the seed ----------------------------------------------------------------------------

def seed(report):
    cluster_docs = load(MANIFESTS / "seed-cluster.yaml")
    document_policy = [d for d in load(FIXTURES / "document-network-policy.yaml")
                       if d["kind"] == "NetworkPolicy"]
    # A rerun starts clean.
    k("delete", "raycluster", SEED, "-n", RAY_NS, "--ignore-not-found", "--wait=true")
    wait_gone(RAY_NS, SEED)
    apply(document_policy)
    before = raygate_metrics()
    warned = apply(cluster_docs, check=False)
    hints = [line for line in warned.stderr.splitlines() if "network-policy/" in line]
    report.check("kubectl apply of the seed's RayCluster beside the document's NetworkPolicy: "
                 "admitted with raygate's warnings naming each cut and its fix (enforceOn: pods)",
                 warned.returncode == 0 and hints, "\n".join(hints)[:600])
    report.note(f"raygate warned of {len(hints)} network-policy findings on the RayCluster")

    def pods_denied():
        return metric_delta(before, raygate_metrics(), kind="Pod", operation="CREATE",
                            decision="denied")
    denied = checks.until("raygate denying the operator's Pods", 60, pods_denied)
    left = pods(RAY_NS, f"ray.io/cluster={SEED}")
    report.check(f"the operator's Pods are denied while the policy cuts Ray's ports ({denied} "
                 "denied), so none exists", not left, [p["metadata"]["name"] for p in left])

    apply(load(MANIFESTS / "seed-networkpolicy.yaml"))
    checked = subprocess.run([str(RAYGATE), "check", "-f", str(MANIFESTS / "seed-cluster.yaml"),
                              "-f", str(MANIFESTS / "seed-networkpolicy.yaml")],
                             capture_output=True, text=True)
    report.check("`raygate check` of the cluster with the NetworkPolicy written from the hints "
                 "finds nothing left but fill-ins", checked.returncode == 0,
                 (checked.stdout + checked.stderr).strip().splitlines()[-1:])
    stored = get("raycluster", SEED, "-n", RAY_NS)
    head = stored["spec"]["headGroupSpec"]
    worker = stored["spec"]["workerGroupSpecs"][0]
    filled = (head["rayStartParams"].get("port") == "6380"
              and head["rayStartParams"].get("dashboard-port") == "8266"
              and worker["rayStartParams"].get("node-manager-port") == "8401"
              and head["template"]["spec"].get("nodeSelector") == {"node-role": "worker"}
              and worker["template"]["spec"].get("nodeSelector") == {"node-role": "worker"}
              and "limits" in head["template"]["spec"]["containers"][0].get("resources", {}))
    report.check("the stored RayCluster is filled in by raygate (GCS 6380, dashboard 8266, node "
                 "ranges, node-role=worker, limits)", filled,
                 json.dumps(head["rayStartParams"], sort_keys=True))

    ray_pods = wait_ray_pods(RAY_NS, SEED, 2)
    placed = check_placement(report, ray_pods, "the seed's head and worker")
    report.check("the head and the worker run on different nodes (so tasks cross nodes)",
                 len(set(placed.values())) == 2, placed)
    head_pod = next(p for p in ray_pods if p["metadata"]["labels"].get("ray.io/node-type") == "head")
    worker_pod = next(p for p in ray_pods if p["metadata"]["labels"].get("ray.io/node-type") == "worker")
    worker_ip = worker_pod["status"]["podIP"]

    client = client_pod(CLIENT_NS)
    since, verdicts_before = now(), engine_verdicts()
    driver = Session(RAY_NS, head_pod["metadata"]["name"], "ray-head")
    try:
        run_step(report, driver, "ray.init() on the head", "init", timeout=60)
        run_step(report, driver, "both Ray nodes alive", "nodes", {"want": 2}, timeout=90)
        run_step(report, driver, "a task on the worker's node", "task", {"ip": worker_ip})
        run_step(report, driver, "an actor on the worker's node", "actor", {"ip": worker_ip})
        run_step(report, driver, "20 MB from the worker to the driver", "object_from", {"ip": worker_ip})
        run_step(report, driver, "20 MB from the driver to the worker", "object_to", {"ip": worker_ip})
        run_step(report, driver, "list_logs of the worker's node", "list_logs", {"ip": worker_ip})
        run_step(report, driver, "Serve started on the head (HTTP :8001)", "serve", {"port": 8001}, timeout=120)
        svc = head_service(RAY_NS, SEED)
        run_step(report, client, f"Ray Client from {CLIENT_NS} via ray://{svc}:10002", "ray_client",
                 {"url": f"ray://{svc}:10002"}, timeout=130)
        run_step(report, client, f"job submission from {CLIENT_NS} via http://{svc}:8266", "job",
                 {"url": f"http://{svc}:8266"}, timeout=120)
        run_step(report, client, f"Serve from {CLIENT_NS} through the head Service :8001", "http",
                 {"url": f"http://{svc}:8001/", "contains": "hello from", "until": True}, timeout=60)
        for pod in ray_pods:
            run_step(report, client, f"metrics scrape of {pod['metadata']['name']} :8081", "http",
                     {"url": f"http://{pod['status']['podIP']}:8081/metrics", "contains": "ray_"},
                     timeout=30)
        verdicts = engine_verdicts()
        accepted = verdicts.get("accept", 0) - verdicts_before.get("accept", 0)
        dropped = verdicts.get("drop", 0) - verdicts_before.get("drop", 0)
        drops = engine_drops(since, {RAY_NS, CLIENT_NS})
        report.check("kube-network-policies refused nothing while the workloads ran (its packet "
                     f"counters: {accepted} accepted, {dropped} dropped)",
                     dropped == 0 and accepted > 0 and not drops, drops[:5])

        autoscale(report, driver)
    finally:
        driver.close()
        client.close()

    k("delete", "raycluster", SEED, "-n", RAY_NS, "--wait=true", "--timeout=120s")
    wait_gone(RAY_NS, SEED)
    report.check("deleting the RayCluster removed its Pods and Services", True)


def autoscale(report, driver):
    """Pending tasks make the autoscaler add a worker; idle, it removes it again."""
    since, before = now(), raygate_metrics()
    denied_pods_before = metric_delta({}, before, kind="Pod", decision="denied")
    run_step(report, driver, "3 one-CPU tasks of 40 s (the cluster has 2 CPUs)", "cpu_load",
             {"tasks": 3, "seconds": 40})

    def scaled_up():
        rc = get("raycluster", SEED, "-n", RAY_NS)
        ready = [p for p in pods(RAY_NS, f"ray.io/cluster={SEED},ray.io/group=cpu") if running(p)]
        return (rc["spec"]["workerGroupSpecs"][0].get("replicas"), ready) \
            if len(ready) >= 2 else None
    replicas, ready = checks.until("the autoscaler's second worker Ready", 240, scaled_up)
    report.check(f"the autoscaler scaled group cpu to {replicas} replicas; the new worker Pod runs",
                 replicas >= 2, [p["metadata"]["name"] for p in ready])
    check_placement(report, ready, "the autoscaled workers")
    run_step(report, driver, "the load's tasks finish", "cpu_load_done", timeout=120)

    def scaled_down():
        rc = get("raycluster", SEED, "-n", RAY_NS)
        left = [p for p in pods(RAY_NS, f"ray.io/cluster={SEED},ray.io/group=cpu")]
        return rc["spec"]["workerGroupSpecs"][0].get("replicas") == 1 and len(left) == 1
    checks.until("the autoscaler scaling group cpu back to 1 once idle", 240, scaled_down)
    after = raygate_metrics()
    updates = metric_delta(before, after, kind="RayCluster", operation="UPDATE")
    denied_updates = metric_delta(before, after, kind="RayCluster", operation="UPDATE", decision="denied")
    denied_pods = metric_delta({}, after, kind="Pod", decision="denied") - denied_pods_before
    patches = autoscaler_patches(since)
    report.check(f"each of the autoscaler's {len(patches)} RayCluster writes (audit log: "
                 f"{patches}) went through raygate's mutating and validating UPDATE path "
                 f"({updates} UPDATE reviews, {denied_updates} denied); no Pod was denied ({denied_pods})",
                 len(patches) >= 2 and all(code == 200 for _, code in patches)
                 and updates == 2 * len(patches) and denied_updates == 0 and denied_pods == 0,
                 metric_changes(before, after))


# --- scenario: the operator's lifecycle --------------------------------------------------------------

def cluster_of(ns, owner_kind, owner):
    """The RayCluster the operator created for a RayJob or RayService."""
    def found():
        for rc in get("rayclusters", "-n", ns)["items"]:
            if any(ref["kind"] == owner_kind and ref["name"] == owner
                   for ref in rc["metadata"].get("ownerReferences", [])):
                return rc["metadata"]["name"]
        return None
    return checks.until(f"the RayCluster of {owner_kind} {owner}", 60, found)


def lifecycle(report):
    namespace(CLIENT_NS)
    # A rerun starts clean.
    for kind, name in (("rayjob", "rayjob-lifecycle"), ("rayservice", "rayservice-lifecycle")):
        k("delete", kind, name, "-n", RAY_NS, "--ignore-not-found", "--wait=true", "--timeout=120s")
    before = raygate_metrics()

    # RayJob: the operator runs it to SUCCEEDED and tears its cluster down.
    docs = with_generated_policy(report, MANIFESTS / "rayjob.yaml", "RayJob", "rayjob-lifecycle")
    applied = apply(docs, check=False)
    report.check("kubectl apply of a RayJob and the NetworkPolicy raygate wrote: admitted",
                 applied.returncode == 0,
                 applied.stderr.strip()[:300])
    cluster = cluster_of(RAY_NS, "RayJob", "rayjob-lifecycle")
    ray_pods = wait_ray_pods(RAY_NS, cluster, 2)
    check_placement(report, ray_pods, f"RayJob's cluster {cluster}")

    def finished():
        status = get("rayjob", "rayjob-lifecycle", "-n", RAY_NS).get("status", {})
        return status if status.get("jobDeploymentStatus") in ("Complete", "Failed") else None
    status = checks.until("the RayJob to finish", 300, finished)
    submitter = pods(RAY_NS, "batch.kubernetes.io/job-name=rayjob-lifecycle")
    output = k("logs", "-n", RAY_NS, "job/rayjob-lifecycle", check=False).stdout
    ran = [line for line in output.splitlines() if line.startswith("rayjob tasks ran on")]
    report.check(f"the RayJob reached {status.get('jobStatus')} as the operator sees it "
                 f"(jobDeploymentStatus {status.get('jobDeploymentStatus')}); its submitter's log "
                 "shows the entrypoint's tasks",
                 status.get("jobStatus") == "SUCCEEDED" and ran, (ran or output.splitlines()[-3:]))
    check_placement(report, submitter, "the RayJob's submitter Pod")
    checks.until("the RayJob's cluster deleted by the operator after the job (shutdownAfterJobFinishes)",
                 180, lambda: not any(rc["metadata"]["name"] == cluster
                                      for rc in get("rayclusters", "-n", RAY_NS)["items"]))
    wait_gone(RAY_NS, cluster)
    k("delete", "rayjob", "rayjob-lifecycle", "-n", RAY_NS, "--wait=true", "--timeout=60s")
    left = pods(RAY_NS, "batch.kubernetes.io/job-name=rayjob-lifecycle")
    report.check("the operator deleted the RayJob's cluster after the job; deleting the RayJob "
                 "removed its submitter", not left, [p["metadata"]["name"] for p in left])

    # RayService: the operator deploys serveConfigV2 itself and the Service answers.
    docs = with_generated_policy(report, MANIFESTS / "rayservice.yaml", "RayService",
                                 "rayservice-lifecycle")
    applied = apply(docs, check=False)
    report.check("kubectl apply of a RayService and the NetworkPolicy raygate wrote: admitted",
                 applied.returncode == 0, applied.stderr.strip()[:300])

    def ready():
        rs = get("rayservice", "rayservice-lifecycle", "-n", RAY_NS)
        conditions = {c["type"]: c["status"] for c in rs.get("status", {}).get("conditions", [])}
        return rs if conditions.get("Ready") == "True" else None
    rs = checks.until("the RayService Ready (the operator deployed its Serve config)", 420, ready)
    apps = rs["status"].get("activeServiceStatus", {}).get("applicationStatuses", {})
    report.check("the RayService is Ready: the operator put serveConfigV2 on the head's dashboard "
                 "and sees the application RUNNING",
                 apps.get("hello", {}).get("status") == "RUNNING", json.dumps(apps)[:400])
    cluster = rs["status"]["activeServiceStatus"]["rayClusterName"]
    check_placement(report, pods(RAY_NS, f"ray.io/cluster={cluster}"), f"RayService's cluster {cluster}")
    client = client_pod(CLIENT_NS)
    try:
        run_step(report, client, f"the RayService answers through rayservice-lifecycle-serve-svc "
                 f"from {CLIENT_NS}", "http",
                 {"url": f"http://rayservice-lifecycle-serve-svc.{RAY_NS}.svc.cluster.local:8001/",
                  "contains": "hello from the rayservice", "until": True}, timeout=90)
    finally:
        client.close()
    k("delete", "rayservice", "rayservice-lifecycle", "-n", RAY_NS, "--wait=true", "--timeout=120s")
    wait_gone(RAY_NS, cluster)
    services = [s["metadata"]["name"] for s in get("services", "-n", RAY_NS)["items"]
                if s["metadata"]["name"].startswith("rayservice-lifecycle")]
    report.check("deleting the RayService removed its cluster, Pods and Services", not services, services)

    after = raygate_metrics()
    denied = metric_delta(before, after, decision="denied")
    report.check(f"raygate denied nothing the operator created for them ({denied} denials; "
                 f"{metric_delta(before, after, kind='Pod', operation='CREATE')} Pod CREATE reviews)",
                 denied == 0, metric_changes(before, after))
    k("delete", "networkpolicy", "-n", RAY_NS, "rayjob-lifecycle", "rayservice-lifecycle",
      "--ignore-not-found")
    k("delete", "configmap", "-n", RAY_NS, "serve-app", "--ignore-not-found")


# --- scenario: controls ------------------------------------------------------------------------------

def audited(applied, rule_prefix):
    """The warnings raygate's audit mode gave on `kubectl apply` for rules starting so."""
    return [line for line in applied.stderr.splitlines() if f"Warning: {rule_prefix}" in line]


def controls(report):
    namespace(CONTROL_NS)
    for name in ("control-net", "control-placement"):
        k("delete", "raycluster", name, "-n", CONTROL_NS, "--ignore-not-found", "--wait=true")
    k("delete", "pod", "oom", "-n", CONTROL_NS, "--ignore-not-found", "--wait=true")
    control_network(report)
    control_placement(report)
    control_memory(report)


def control_network(report):
    """The document's five-port NetworkPolicy around a cluster that follows the plan: Ray's
    own traffic between nodes is refused, and the engine says so."""
    docs = load(MANIFESTS / "control-network.yaml")
    cluster = [d for d in docs if d["kind"] == "RayCluster"]
    others = [d for d in docs if d["kind"] != "RayCluster"]
    apply(others)
    # The audit namespace is never filled in: the cluster is given the plan as `raygate fix`
    # writes it, so that only the NetworkPolicy is off.
    applied = apply(raygate_fix(cluster, "--no-network-policies"), check=False)
    warnings = audited(applied, "network-policy/")
    report.check("raygate (audit namespace) admits the cluster under the document's NetworkPolicy "
                 f"with {len(warnings)} network-policy warnings", applied.returncode == 0 and warnings,
                 "\n".join(warnings)[:500])
    ray_pods = wait_ray_pods(CONTROL_NS, "control-net", 2)
    head_pod = next(p for p in ray_pods if p["metadata"]["labels"].get("ray.io/node-type") == "head")
    worker_pod = next(p for p in ray_pods if p["metadata"]["labels"].get("ray.io/node-type") == "worker")
    worker_ip = worker_pod["status"]["podIP"]
    since = now()
    driver = Session(CONTROL_NS, head_pod["metadata"]["name"], "ray-head")
    try:
        run_step(report, driver, "ray.init() on the head", "init", timeout=60)
        for what, fn in (("a task on the worker's node", "task"),
                         ("an actor on the worker's node", "actor"),
                         ("20 MB from the worker to the driver", "object_from"),
                         ("20 MB from the driver to the worker", "object_to")):
            run_step(report, driver, f"{what}, under the document's policy", fn, {"ip": worker_ip},
                     timeout=20, expect=False)
    finally:
        driver.close()
    drops = engine_drops(since, {CONTROL_NS})
    ports = sorted({int(d["packet"].split(" -> ")[1].split()[0].rsplit(":", 1)[1]) for d in drops
                    if " -> " in d["packet"]})
    report.check(f"kube-network-policies dropped {len(drops)} packets of the cluster, to ports "
                 "outside the document's five", drops and not set(ports) & {6380, 10002, 8266, 8001, 8081},
                 ports[:20])
    report.note(f"ports the engine refused under the document's policy: {ports[:30]}")
    k("delete", "raycluster", "control-net", "-n", CONTROL_NS, "--wait=true", "--timeout=120s")
    wait_gone(CONTROL_NS, "control-net")
    k("delete", "networkpolicy", "document-policy", "-n", CONTROL_NS)


def control_placement(report):
    """An unpinned head that tolerates the master's taint lands on gpu-node once the workers
    are cordoned: the placement rule guards against something the scheduler really does."""
    workers = [n for n, labels in node_labels().items() if labels.get("node-role") == "worker"]
    # A NetworkPolicy that admits everything of the cluster, so that only placement is judged.
    apply([{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "control-placement", "namespace": CONTROL_NS},
            "spec": {"podSelector": {"matchLabels": {"ray.io/cluster": "control-placement"}},
                     "ingress": [{}], "policyTypes": ["Ingress"]}}])
    try:
        for node in workers:
            k("cordon", node)
        applied = apply(load(MANIFESTS / "control-placement.yaml"), check=False)
        warnings = audited(applied, "placement/")
        report.check("raygate (audit namespace) admits the unpinned, tolerating head with its "
                     "placement warnings", applied.returncode == 0 and warnings, "\n".join(warnings)[:500])

        def bound():
            found = [p for p in pods(CONTROL_NS, "ray.io/cluster=control-placement")
                     if p["spec"].get("nodeName")]
            return found[0]["spec"]["nodeName"] if found else None
        node = checks.until("kube-scheduler binding the head", 60, bound)
        report.check(f"with the workers cordoned, kube-scheduler bound the head to {node}",
                     node == GPU_NODE, node)
    finally:
        for node in workers:
            k("uncordon", node, check=False)
    k("delete", "raycluster", "control-placement", "-n", CONTROL_NS, "--wait=true", "--timeout=120s")
    k("delete", "networkpolicy", "control-placement", "-n", CONTROL_NS)
    wait_gone(CONTROL_NS, "control-placement")


def control_memory(report):
    """A container that writes more memory than its limit is OOM-killed: limits are enforced."""
    apply([{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "oom", "namespace": CONTROL_NS},
        "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"node-role": "worker"},
            "containers": [{
                "name": "hog", "image": RAY_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-c",
                            "import time; b = b'x' * (768 << 20); print('survived'); time.sleep(5)"],
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                              "limits": {"cpu": "1", "memory": "256Mi"}}}]}}])

    def terminated():
        statuses = get("pod", "oom", "-n", CONTROL_NS)["status"].get("containerStatuses", [])
        state = statuses[0].get("state", {}) if statuses else {}
        return state.get("terminated")
    state = checks.until("the memory hog to end", 120, terminated)
    report.check(f"a container writing 768 MiB under a 256 MiB limit is {state.get('reason')} "
                 f"(exit {state.get('exitCode')})", state.get("reason") == "OOMKilled", state)
    k("delete", "pod", "oom", "-n", CONTROL_NS, "--wait=false")


def report_markdown():
    """The scenarios' JSON reports as one Markdown table: REPORT_DIR/REPORT.md."""
    lines = ["# Ray on the real cluster", ""]
    for name in ("seed", "lifecycle", "controls"):
        path = REPORT_DIR / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        lines += [f"## {name}: {sum(s['ok'] for s in data['steps'])} passed, {data['failed']} failed, "
                  f"{data['seconds']:.0f} s", "", "| at (s) | check | result | detail |", "|---|---|---|---|"]
        for step in data["steps"]:
            detail = step["detail"].replace("|", "\\|").replace("\n", " ")[:160]
            lines.append(f"| {step['at']} | {step['check']} | {'ok' if step['ok'] else 'FAIL'} | {detail} |")
        lines += [""] + [f"- {note}" for note in data["notes"]] + [""]
    (REPORT_DIR / "REPORT.md").write_text("\n".join(lines))
    print(REPORT_DIR / "REPORT.md")


SCENARIOS = {"seed": seed, "lifecycle": lifecycle, "controls": controls}


def main():
    if sys.argv[1:] == ["report"]:
        report_markdown()
        return
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(SCENARIOS)}|report")
    name = sys.argv[1]
    report = Report(name)
    try:
        SCENARIOS[name](report)
    except CheckFailed:
        pass
    except Exception as e:  # noqa: BLE001: every failure is reported
        report.failed += 1
        report.steps.append({"check": "the scenario ran to its end", "ok": False, "detail": repr(e)[:600]})
        log("FAIL", repr(e))
    finally:
        report.write()
    passed = sum(s["ok"] for s in report.steps)
    log(f"{name}: {passed} checks passed, {report.failed} failed, "
        f"in {time.monotonic() - report.started:.0f}s")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
