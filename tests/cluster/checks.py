"""The real-cluster tier's checks of raygate (tests/cluster/run.sh runs them in order):

    checks.py installed   raygate as `helm install` left it
    checks.py sample      a KubeRay sample through raygate, the operator and kube-scheduler
    checks.py failures    admission while raygate's Pods are deleted, upgraded, drained, gone
    checks.py no-leaks    the FORWARD guard never dropped a packet

Needs the environment of `tests/cluster/cluster.sh env`. Exits non-zero with the reason.
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
KUBECTL = os.environ["CLUSTER_KUBECTL"]
NS = os.environ["CLUSTER_RAYGATE_NAMESPACE"]
RAY_IMAGE = os.environ["CLUSTER_RAY_IMAGE"]
WORKERS = os.environ["CLUSTER_WORKER_NODES"].split()
GPU_NODE = os.environ["CLUSTER_GPU_NODE"]
HELM = str(ROOT / ".cache/helm/bin/helm")
SAMPLE_NS = "ray-sample"
CHART_HOSTS = f"raygate.{NS}.svc,raygate.{NS}.svc.cluster.local"


def log(*words):
    print("[checks]", *words, file=sys.stderr, flush=True)


def fail(why):
    log("FAIL", why)
    sys.exit(1)


def k(*args, check=True, stdin=None):
    proc = subprocess.run([KUBECTL, *args], capture_output=True, text=True, input=stdin)
    if check and proc.returncode != 0:
        fail(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def get(*args):
    return json.loads(k("get", "-o", "json", *args).stdout)


def until(what, seconds, probe):
    deadline = time.monotonic() + seconds
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            fail(f"timed out after {seconds}s waiting for {what}")
        time.sleep(1)


def raygate_pods():
    return get("pods", "-n", NS, "-l", "app.kubernetes.io/name=raygate,app.kubernetes.io/component!=certgen")["items"]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def serving_pods():
    return [p for p in raygate_pods() if ready(p) and not p["metadata"].get("deletionTimestamp")]


# --- installed ---------------------------------------------------------------------------------

def container_processes():
    """raygate serve processes on this machine, found through their cgroups (the cluster's)."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cgroup = (proc / "cgroup").read_text()
        except OSError:
            continue
        if argv[:2] == [b"/raygate", b"serve"] and "rgc-" in cgroup:
            found.append(proc)
    return found


def installed():
    deployment = get("deployment/raygate", "-n", NS)
    if deployment["status"].get("readyReplicas") != 2:
        fail(f"raygate has {deployment['status'].get('readyReplicas')} ready replicas, not 2")
    pods = raygate_pods()
    for pod in pods:
        node = pod["spec"].get("nodeName")
        statuses = pod["status"].get("containerStatuses", [])
        if node not in WORKERS:
            fail(f"{pod['metadata']['name']} runs on {node}, not a worker")
        if not ready(pod) or any(s["restartCount"] for s in statuses):
            fail(f"{pod['metadata']['name']} is not Ready or restarted: {statuses}")
        container = pod["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                fail(f"{pod['metadata']['name']} has no {probe}")
    nodes = sorted(p["spec"]["nodeName"] for p in pods)
    if len(set(nodes)) != 2:
        fail(f"both raygate Pods run on {nodes[0]}: one node's failure stops all Ray admission")
    log(f"2 raygate Pods Ready on {nodes}, no restarts")

    # Probes are answered: the kubelet marked them Ready, and the Service's endpoints are them.
    slices = get("endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=raygate")["items"]
    addresses = {a for s in slices for e in s.get("endpoints", [])
                 if e.get("conditions", {}).get("ready") for a in e["addresses"]}
    if addresses != {p["status"]["podIP"] for p in pods}:
        fail(f"the Service's ready endpoints {addresses} are not the raygate Pods")
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        for webhook in get(f"{kind}/raygate")["webhooks"]:
            config = webhook["clientConfig"]
            if "url" in config or config.get("service", {}).get("name") != "raygate":
                fail(f"{kind} {webhook['name']} does not call the Service: {config}")
            if not config.get("caBundle"):
                fail(f"{kind} {webhook['name']} has no caBundle")
    log("the webhooks call the Service, with the hook's caBundle; its endpoints are the 2 Pods")

    secret = get("secret/raygate-tls", "-n", NS)
    annotations = secret["metadata"].get("annotations", {})
    if annotations.get("raygate.dev/hosts") != CHART_HOSTS or "raygate.dev/not-after" not in annotations:
        fail(f"Secret raygate-tls was not written by the certgen hook: {annotations}")
    log("the certgen hook Job ran `raygate certs --publish`: Secret raygate-tls for", CHART_HOSTS)

    # What runs, read from the kernel rather than from the spec.
    procs = container_processes()
    if len(procs) != 2:
        fail(f"{len(procs)} raygate serve processes in the cluster's cgroups, not 2")
    for proc in procs:
        uids = next(l for l in (proc / "status").read_text().splitlines() if l.startswith("Uid:"))
        if set(uids.split()[1:]) != {"65532"}:
            fail(f"raygate (pid {proc.name}) runs as {uids}")
        root = next(l.split() for l in (proc / "mountinfo").read_text().splitlines()
                    if l.split()[4] == "/")
        if "ro" not in root[5].split(","):
            fail(f"raygate (pid {proc.name}) has a writable root filesystem: {root[5]}")
    log("both raygate processes run as uid 65532 on a read-only root filesystem")

    pdb = get("pdb/raygate", "-n", NS)
    if pdb["spec"].get("minAvailable") != 1 or pdb["status"].get("disruptionsAllowed") != 1:
        fail(f"PodDisruptionBudget: {pdb['spec']} {pdb['status']}")
    log("PodDisruptionBudget raygate: minAvailable 1, 1 disruption allowed")


# --- sample ------------------------------------------------------------------------------------

def network_policy(cluster):
    """Ray's plan between the cluster's Pods, DNS and the API server (the autoscaler)."""
    pods = {"podSelector": {"matchLabels": {"ray.io/cluster": cluster}}}
    plan = [{"port": p} for p in (6380, 10002, 8266, 8001, 8081, 8601, 52365, 44217, 44227)]
    plan += [{"port": 8301, "endPort": 8600}, {"port": 10003, "endPort": 19999}]
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": cluster, "namespace": SAMPLE_NS},
        "spec": {**pods, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [pods], "ports": plan}]},
    }


def sample():
    # A sample that declares no port (one on default ports is denied, not changed). Its
    # gang-scheduling label means nothing without a batch scheduler in the operator.
    path = ROOT / "tests/fixtures/kuberay/samples/ray-cluster.scheduler-plugins.yaml"
    cluster = yaml.safe_load(path.read_text())
    # The nodes hold one Ray image and pull nothing; two cores carry one worker beside the head.
    cluster["spec"]["rayVersion"] = RAY_IMAGE.rsplit(":", 1)[1]
    for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
        for container in group["template"]["spec"]["containers"]:
            container["image"] = RAY_IMAGE
    for group in cluster["spec"]["workerGroupSpecs"]:
        group["replicas"] = group["minReplicas"] = 1
    name = cluster["metadata"]["name"]
    k("create", "namespace", SAMPLE_NS)
    k("apply", "-f", "-", stdin=json.dumps(network_policy(name)))
    k("apply", "-n", SAMPLE_NS, "-f", "-", stdin=json.dumps(cluster))
    stored = get("raycluster", name, "-n", SAMPLE_NS)["spec"]
    head = stored["headGroupSpec"]
    params, pod = head["rayStartParams"], head["template"]["spec"]
    if params.get("port") != "6380" or pod.get("nodeSelector", {}).get("node-role") != "worker":
        fail(f"raygate did not fill in the sample: rayStartParams {params}, nodeSelector {pod.get('nodeSelector')}")
    log(f"RayCluster {name} stored filled in by raygate: port {params['port']}, "
        f"min/max-worker-port {params.get('min-worker-port')}/{params.get('max-worker-port')}, "
        f"nodeSelector {pod['nodeSelector']}")

    def placed():
        pods = get("pods", "-n", SAMPLE_NS, "-l", f"ray.io/cluster={name}")["items"]
        kinds = {p["metadata"]["labels"].get("ray.io/node-type") for p in pods}
        if {"head", "worker"} <= kinds and all(p["spec"].get("nodeName") for p in pods):
            return pods
        return None

    pods = until("the operator's Pods to be scheduled", 180, placed)
    for pod in pods:
        node = pod["spec"]["nodeName"]
        if node not in WORKERS or node == GPU_NODE:
            fail(f"{pod['metadata']['name']} was placed on {node}")
    log("kube-scheduler placed", ", ".join(f"{p['metadata']['name']} on {p['spec']['nodeName']}" for p in pods))

    def running():
        pods = get("pods", "-n", SAMPLE_NS, "-l", f"ray.io/cluster={name}")["items"]
        return all(p["status"].get("phase") == "Running" for p in pods) and pods

    until("the Ray Pods to run", 240, running)
    log("every Ray Pod runs")
    k("delete", "raycluster", name, "-n", SAMPLE_NS, "--wait=true", "--timeout=120s")
    until("the Ray Pods to go", 120,
          lambda: not get("pods", "-n", SAMPLE_NS, "-l", f"ray.io/cluster={name}")["items"])
    k("delete", "namespace", SAMPLE_NS, "--wait=false")
    log("deleting the RayCluster removed its Pods")


# --- failures ----------------------------------------------------------------------------------

LOAD_NS = "ray-load"


def load_manifests(directory):
    fillable = next(d for d in yaml.safe_load_all((ROOT / "tests/fixtures/manifests/fillable-cluster.yaml").read_text())
                    if d and d["kind"] == "RayCluster")
    default_ports = next(d for d in yaml.safe_load_all(
        (ROOT / "tests/fixtures/kuberay/samples/ray-cluster.sample.yaml").read_text()) if d and d["kind"] == "RayCluster")
    name = fillable["metadata"]["name"]
    ray_pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-worker-load", "labels": {
            "ray.io/cluster": name, "ray.io/node-type": "worker", "ray.io/group": "cpu"}},
        "spec": {"nodeSelector": {"node-role": "worker"}, "containers": [{
            "name": "ray-worker", "image": RAY_IMAGE,
            "ports": [{"name": "metrics", "containerPort": 8081}],
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                          "limits": {"cpu": "1", "memory": "1Gi"}}}]},
    }
    for doc in (fillable, default_ports):
        doc["metadata"].pop("namespace", None)
    files = {"raycluster-fillable.yaml": fillable, "raycluster-default-ports.yaml": default_ports,
             "ray-pod.yaml": ray_pod}
    for file, doc in files.items():
        (directory / file).write_text(json.dumps(doc))
    policy = network_policy(name)
    policy["metadata"]["namespace"] = LOAD_NS
    return policy


class Load:
    """tests/cluster/admission_load.py in the background."""

    def __init__(self, directory):
        self.stop = directory / "stop"
        self.stop.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/cluster/admission_load.py"), KUBECTL, LOAD_NS,
             str(directory), str(self.stop)],
            stdout=subprocess.PIPE, text=True)
        time.sleep(3)

    def finish(self, what):
        self.stop.touch()
        summary = json.loads(self.proc.communicate(timeout=120)[0])
        log(f"{what}: {summary['requests']} admissions in {summary['seconds']}s, "
            f"{summary['failed']} failed {summary['by_case']}")
        if summary["failed"] or summary["requests"] < 10:
            fail(f"{what}: {json.dumps(summary['failures'], indent=1)}")
        return summary


def both_serving():
    return len(serving_pods()) == 2


def helm(*args):
    env = dict(os.environ)
    for var in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{var}_HOME"] = os.path.join(os.environ["CLUSTER_DIR"], "helm", var.lower())
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        fail(f"helm {' '.join(args)}: {proc.stderr.strip()}")


def failures():
    directory = pathlib.Path(tempfile.mkdtemp(prefix="raygate-load-"))
    k("create", "namespace", LOAD_NS)
    k("apply", "-f", "-", stdin=json.dumps(load_manifests(directory)))

    load = Load(directory)
    victim = serving_pods()[0]["metadata"]["name"]
    k("delete", "pod", victim, "-n", NS, "--wait=false")
    time.sleep(2)
    until("raygate back to 2 serving Pods", 180, both_serving)
    time.sleep(3)
    load.finish(f"raygate Pod {victim} deleted")

    load = Load(directory)
    helm("upgrade", "raygate", str(ROOT / "deploy/helm/raygate"), "-n", NS, "--reuse-values",
         "--set", f"podAnnotations.rollout=r{int(time.time())}", "--wait", "--timeout", "300s")
    until("the rolled-out Pods to serve", 180, both_serving)
    time.sleep(3)
    load.finish("rolling helm upgrade")

    node = serving_pods()[0]["spec"]["nodeName"]
    load = Load(directory)
    drain = subprocess.Popen([KUBECTL, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                              "--force", "--timeout=180s"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    fewest = 2
    while drain.poll() is None:
        fewest = min(fewest, len(serving_pods()))
        time.sleep(0.5)
    if drain.returncode != 0:
        fail(f"kubectl drain {node}: {drain.stderr.read().strip()}")
    if fewest < 1:
        fail(f"draining {node} left no raygate Pod serving")
    time.sleep(3)
    load.finish(f"drain of {node} (at least {fewest} raygate Pod serving throughout)")
    k("uncordon", node)
    until("raygate back to 2 serving Pods", 180, both_serving)

    # Every Pod gone: Ray objects are refused with the API server's webhook error; the rest works.
    k("scale", "deployment/raygate", "-n", NS, "--replicas=0")
    until("every raygate Pod to go", 120, lambda: not raygate_pods())
    refused = k("create", "--dry-run=server", "-n", LOAD_NS, "-f",
                str(directory / "raycluster-fillable.yaml"), check=False)
    if refused.returncode == 0 or "failed calling webhook" not in refused.stderr:
        fail(f"a RayCluster was not refused while raygate is down: {refused.stderr.strip()}")
    log("with raygate down, a RayCluster is refused:", refused.stderr.strip().splitlines()[-1][:200])
    k("create", "configmap", "unrelated", "-n", LOAD_NS, "--from-literal=a=b")
    k("create", "--dry-run=server", "-n", "kube-system", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "still-works"},
        "spec": {"containers": [{"name": "c", "image": os.environ["CLUSTER_BUSYBOX_IMAGE"]}]}}))
    log("with raygate down, a ConfigMap and a kube-system Pod are still admitted")
    k("scale", "deployment/raygate", "-n", NS, "--replicas=2")
    until("raygate back to 2 serving Pods", 180, both_serving)
    until("admission to resume", 60, lambda: k(
        "create", "--dry-run=server", "-n", LOAD_NS, "-f",
        str(directory / "raycluster-fillable.yaml"), check=False).returncode == 0)
    log("raygate back: Ray objects admitted again")
    k("delete", "namespace", LOAD_NS, "--wait=false")


# --- no-leaks ----------------------------------------------------------------------------------

def no_leaks():
    rules = subprocess.run(["iptables", "-t", "mangle", "-L", "RGC-GUARD", "-v", "-x", "-n"],
                           capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    dropped = [r for r in rules if r.split() and r.split()[2] == "DROP" and r.split()[0] != "0"]
    if dropped:
        fail("the guard dropped packets leaving the machine:\n" + "\n".join(dropped))
    log(f"the guard's {len(rules)} rules dropped nothing")


STEPS = {"installed": installed, "sample": sample, "failures": failures, "no-leaks": no_leaks}
if __name__ == "__main__":
    STEPS[sys.argv[1]]()
