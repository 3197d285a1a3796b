#!/usr/bin/env python3
"""The Argo CD tier: real Argo CD (application controller, repo server, Config Management
Plugin server) syncing Ray manifests from a file:// git repository into the loopback e2e
control plane, with raygate registered as its admission webhook.

Run by tests/argocd/run.sh, which builds the tools, starts the control plane and tears
everything down. Every process started here records its PID in $ARGOCD_TIER_DIR/pids so
that run.sh can stop it even if this driver dies.
"""

import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIR = os.environ["ARGOCD_TIER_DIR"]
ARGO_BIN = os.environ["ARGOCD_BIN"]
ARGO_CRDS = os.environ["ARGOCD_CRDS"]
RAYGATE = os.environ["RAYGATE_BIN"]
KUBECTL = os.environ["E2E_KUBECTL"]
KUBECONFIG = os.environ["KUBECONFIG"]
RAYGATE_KUBECONFIG = os.environ["E2E_RAYGATE_KUBECONFIG"]
E2E_CRDS = os.environ["E2E_CRDS"]
ONLY = set(filter(None, os.environ.get("ARGOCD_TIER_ONLY", "").split(",")))

ARGO_NS = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"
REPO = os.path.join(DIR, "repo")
REPO_URL = "file://" + REPO

for sub in ("pids", "logs", "tmp", "home"):
    os.makedirs(os.path.join(DIR, sub), exist_ok=True)


# ---------------------------------------------------------------- small helpers


def log(msg):
    print(f"[argocd-tier] {msg}", flush=True)


def show(title, text):
    """Prints what Argo CD or raygate showed, verbatim, for the run's record."""
    print(f"----- {title}", flush=True)
    print(text.rstrip(), flush=True)
    print("-----", flush=True)


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    log(f"  ok: {what}")


def kubectl(*args, input=None, ok=True):
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", KUBECONFIG, *args],
        input=input,
        capture_output=True,
        text=True,
    )
    if ok and out.returncode != 0:
        raise Failure(f"kubectl {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out


def apply(doc, *extra):
    text = doc if isinstance(doc, str) else json.dumps(doc)
    return kubectl("apply", *extra, "-f", "-", input=text)


def get(kind, name, ns=None):
    args = ["get", kind, name, "-o", "json"]
    if ns:
        args += ["-n", ns]
    out = kubectl(*args, ok=False)
    if out.returncode != 0:
        if "NotFound" in out.stderr or "not found" in out.stderr:
            return None
        raise Failure(f"kubectl get {kind} {name}: {out.stderr}")
    return json.loads(out.stdout)


def free_port():
    for _ in range(500):
        p = 20000 + random.randrange(12768)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) != 0:
                return p
    raise Failure("no free port")


def wait(what, timeout, probe, interval=0.5):
    """Polls probe() until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout}s: {what}")
        time.sleep(interval)


def docs(path):
    with open(os.path.join(ROOT, path)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def to_yaml(*objs):
    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objs)


def wave(obj, n):
    obj.setdefault("metadata", {}).setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = str(n)
    return obj


# ---------------------------------------------------------------- processes


PROCS = {}


def start(name, argv, env=None, cwd=None):
    logf = open(os.path.join(DIR, "logs", f"{name}.log"), "w")
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.Popen(
        argv,
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )
    with open(os.path.join(DIR, "pids", f"{name}.pid"), "w") as f:
        f.write(str(p.pid))
    PROCS[name] = p
    log(f"{name} started (pid {p.pid}, log {DIR}/logs/{name}.log)")
    return p


def stop(name):
    p = PROCS.pop(name, None)
    if p is None:
        return
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    try:
        os.remove(os.path.join(DIR, "pids", f"{name}.pid"))
    except FileNotFoundError:
        pass


def stop_all():
    for name in list(PROCS)[::-1]:
        stop(name)


def alive(name):
    p = PROCS[name]
    if p.poll() is not None:
        tail = open(os.path.join(DIR, "logs", f"{name}.log")).read()[-3000:]
        raise Failure(f"{name} exited with {p.returncode}:\n{tail}")
    return True


def logtext(name):
    with open(os.path.join(DIR, "logs", f"{name}.log")) as f:
        return f.read()


# ---------------------------------------------------------------- raygate


class Raygate:
    """raygate serve with a certificate for 127.0.0.1, as tests/e2e.rs starts it."""

    def __init__(self, name="raygate", policy=None):
        self.name = name
        certs = os.path.join(DIR, f"{name}-certs")
        shutil.rmtree(certs, ignore_errors=True)
        made = subprocess.run(
            [RAYGATE, "certs", "--host", "127.0.0.1", "--host", "localhost", "--out-dir", certs],
            capture_output=True,
            text=True,
            check=True,
        )
        self.ca_bundle = made.stdout.strip()
        argv = [RAYGATE, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                "--log-format", "json", "--shutdown-delay", "0", "--mode", "enforce",
                "--tls-cert", f"{certs}/tls.crt", "--tls-key", f"{certs}/tls.key",
                "--kubeconfig", RAYGATE_KUBECONFIG]
        if policy:
            argv += ["--policy", policy]
        start(name, argv, env={"POD_NAMESPACE": "raygate-system"})

        def serving():
            alive(name)
            for line in logtext(name).splitlines():
                if "raygate is serving" in line:
                    return json.loads(line)
            return None

        started = wait("raygate is serving", 60, serving)
        port = lambda field: int(started[field].rstrip(")").rsplit(":", 1)[1])  # noqa: E731
        self.port = port("addr")
        self.metrics_port = port("metrics")
        wait("raygate's caches sync", 60, lambda: self.get("/readyz") == 200)

    def get(self, path):
        out = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                              f"https://127.0.0.1:{self.port}{path}"], capture_output=True, text=True)
        return int(out.stdout or 0)

    def metrics(self):
        out = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{self.metrics_port}/metrics"],
                             capture_output=True, text=True)
        return out.stdout

    def log(self):
        return [json.loads(line) for line in logtext(self.name).splitlines() if line.startswith("{")]

    def stop(self):
        stop(self.name)


def render_deploy_base():
    return [d for d in yaml.safe_load_all(kubectl("kustomize", os.path.join(ROOT, "deploy/base")).stdout) if d]


def apply_rbac():
    """deploy/base's namespace, ServiceAccount and RBAC, which raygate's identity runs under."""
    for d in render_deploy_base():
        if d["kind"] in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            apply(d)


def register(raygate):
    """deploy/base's webhook configurations, pointed at raygate by URL."""
    for d in render_deploy_base():
        if d["kind"] not in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            continue
        d["metadata"]["name"] = "raygate-argocd-tier"
        for hook in d["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{raygate.port}{path}", "caBundle": raygate.ca_bundle}
        apply(d)
    probe_ns = "raygate-probe"
    kubectl("create", "namespace", probe_ns, ok=False)
    sample = open(os.path.join(ROOT, "tests/fixtures/kuberay/samples/ray-cluster.sample.yaml")).read()
    wait("the API server calls raygate", 30,
         lambda: "violation(s) of the Ray platform plan" in kubectl("apply", "-n", probe_ns, "--dry-run=server", "-f", "-",
                                      input=sample, ok=False).stderr)


# ---------------------------------------------------------------- Argo CD


def argocd_setup():
    kubectl("create", "namespace", ARGO_NS)
    kubectl("apply", "--server-side", "-f", ARGO_CRDS)
    for crd in ("applications.argoproj.io", "appprojects.argoproj.io"):
        wait(f"CRD {crd} Established", 60, lambda: kubectl(
            "get", "crd", crd, "-o", 'jsonpath={.status.conditions[?(@.type=="Established")].status}',
            ok=False).stdout == "True")
    part_of = {"app.kubernetes.io/part-of": "argocd"}
    apply({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "argocd-cm", "namespace": ARGO_NS, "labels": part_of},
           "data": {}})
    apply({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "argocd-secret", "namespace": ARGO_NS, "labels": part_of},
           "data": {"server.secretkey": base64.b64encode(os.urandom(32)).decode()}})
    # Normally created by argocd-server, which this tier does not run.
    apply({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
           "metadata": {"name": "default", "namespace": ARGO_NS},
           "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                    "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}})

    redis_port = free_port()
    start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                    "--appendonly", "no", "--protected-mode", "yes"])
    wait("redis", 30, lambda: alive("redis") and socket.socket().connect_ex(("127.0.0.1", redis_port)) == 0)
    redis = f"127.0.0.1:{redis_port}"

    # The Config Management Plugin: argocd-cmp-server with deploy/argocd/cmp as its
    # config directory, on a socket directory shared with the repo server, as the
    # sidecar and repo server share /home/argocd/cmp-server/plugins in a Pod.
    sockets = os.path.join(DIR, "cmp", "plugins")
    config = os.path.join(DIR, "cmp", "config")
    os.makedirs(sockets, exist_ok=True)
    shutil.rmtree(config, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "deploy/argocd/cmp"), config)
    # plugin.yaml names /home/argocd/cmp-server/config/raygate-gate.sh, the path in the
    # sidecar; here the config directory lives under the tier's DIR.
    plugin = open(os.path.join(config, "plugin.yaml")).read()
    with open(os.path.join(config, "plugin.yaml"), "w") as f:
        f.write(plugin.replace("/home/argocd/cmp-server/config", config))
    common_env = {
        "HOME": os.path.join(DIR, "home"),
        "TMPDIR": os.path.join(DIR, "tmp"),
        "ARGOCD_PLUGINSOCKFILEPATH": sockets,
        "ARGOCD_GPG_ENABLED": "false",
        "PATH": f"{ARGO_BIN}:{os.path.dirname(RAYGATE)}:{os.environ['PATH']}",
    }
    start("argocd-cmp-server", [os.path.join(ARGO_BIN, "argocd-cmp-server"), "--config-dir-path", config,
                                "--logformat", "text"],
          env={**common_env, "ARGOCD_CMP_WORKDIR": os.path.join(DIR, "cmp", "work"), "RAYGATE": RAYGATE})
    wait("the raygate plugin's socket", 60,
         lambda: alive("argocd-cmp-server") and os.path.exists(os.path.join(sockets, "raygate.sock")))

    repo_port, repo_metrics = free_port(), free_port()
    start("argocd-repo-server", [os.path.join(ARGO_BIN, "argocd-repo-server"), "--address", "127.0.0.1",
                                 "--port", str(repo_port), "--metrics-address", "127.0.0.1",
                                 "--metrics-port", str(repo_metrics), "--disable-tls", "--client-ca-path=", "--redis", redis,
                                 "--logformat", "text"],
          env={**common_env, "ARGOCD_ASK_PASS_SOCK": os.path.join(DIR, "tmp", "reposerver-ask-pass.sock")})
    wait("argocd-repo-server", 60,
         lambda: alive("argocd-repo-server") and socket.socket().connect_ex(("127.0.0.1", repo_port)) == 0)

    ctrl_metrics = free_port()
    start("argocd-application-controller",
          [os.path.join(ARGO_BIN, "argocd-application-controller"), "--namespace", ARGO_NS,
           "--kubeconfig", KUBECONFIG, "--repo-server", f"127.0.0.1:{repo_port}", "--repo-server-plaintext",
           "--redis", redis, "--metrics-port", str(ctrl_metrics), "--logformat", "text",
           # Polls every 20 s as well as on every change of an Application. Self-heal keeps
           # Argo CD's default backoff (none before the first self-heal, then 2 s, ×3).
           "--app-resync", "20"],
          # https://kubernetes.default.svc is the cluster of KUBECONFIG (the e2e API server).
          env={**common_env, "ARGOCD_FAKE_IN_CLUSTER": "true", "KUBECONFIG": KUBECONFIG})
    wait("argocd-application-controller metrics", 90,
         lambda: alive("argocd-application-controller")
         and socket.socket().connect_ex(("127.0.0.1", ctrl_metrics)) == 0)


# ---------------------------------------------------------------- git


def git(*args):
    out = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                         env={**os.environ, "GIT_AUTHOR_NAME": "argocd-tier", "GIT_AUTHOR_EMAIL": "tier@raygate.local",
                              "GIT_COMMITTER_NAME": "argocd-tier", "GIT_COMMITTER_EMAIL": "tier@raygate.local"})
    if out.returncode != 0:
        raise Failure(f"git {' '.join(args)}: {out.stderr}")
    return out.stdout.strip()


def git_init():
    os.makedirs(REPO, exist_ok=True)
    git("init", "-q", "-b", "main")
    with open(os.path.join(REPO, "README"), "w") as f:
        f.write("Ray manifests synced by the Argo CD tier\n")
    git("add", "-A")
    git("commit", "-q", "-m", "init")


def commit(path, files, message):
    """Replaces directory `path` of the repository with `files` and commits; returns the SHA."""
    d = os.path.join(REPO, path)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, content in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(content if isinstance(content, str) else to_yaml(*content))
    git("add", "-A")
    git("commit", "-q", "-m", message)
    return git("rev-parse", "HEAD")


# ---------------------------------------------------------------- Applications


def application(name, ns, path, revision, compare=None, automated=True, sync_options=None, plugin=False,
                ignore=None, plugin_env=None):
    kubectl("create", "namespace", ns, ok=False)
    source = {"repoURL": REPO_URL, "targetRevision": revision, "path": path}
    if plugin:
        source["plugin"] = {"name": "raygate"}
        if plugin_env:
            source["plugin"]["env"] = [{"name": k, "value": v} for k, v in plugin_env.items()]
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
           "metadata": {"name": name, "namespace": ARGO_NS},
           "spec": {"project": "default", "source": source,
                    "destination": {"server": IN_CLUSTER, "namespace": ns},
                    "syncPolicy": {"syncOptions": sync_options or []}}}
    if compare:
        app["metadata"]["annotations"] = {"argocd.argoproj.io/compare-options": compare}
    if automated:
        app["spec"]["syncPolicy"]["automated"] = {"prune": True, "selfHeal": True}
        # Argo CD 3.6 retries an automated sync 5 times by default (5 s doubling, about
        # 2.5 minutes before it ends Failed). A denial is not transient: retry once, fast.
        app["spec"]["syncPolicy"]["retry"] = {"limit": 1, "backoff": {"duration": "1s", "factor": 1,
                                                                        "maxDuration": "1s"}}
    if ignore:
        app["spec"]["ignoreDifferences"] = ignore
    apply(app)
    return name


def app_get(name):
    return get("application", name, ARGO_NS)


def set_revision(name, revision):
    kubectl("patch", "application", name, "-n", ARGO_NS, "--type", "merge",
            "-p", json.dumps({"spec": {"source": {"targetRevision": revision}}}))


def sync(name, revision):
    """A manual sync, as `argocd app sync` requests it: the Application's operation field,
    with the Application's sync options."""
    options = ((app_get(name)["spec"].get("syncPolicy") or {}).get("syncOptions")) or []
    kubectl("patch", "application", name, "-n", ARGO_NS, "--type", "merge", "-p", json.dumps(
        {"operation": {"initiatedBy": {"username": "argocd-tier"},
                       "sync": {"revision": revision, "prune": True, "syncOptions": options}}}))


def refresh(name, hard=True):
    """Asks the controller to compare again and waits until it has."""
    before = (app_get(name).get("status") or {}).get("reconciledAt")
    kubectl("annotate", "application", name, "-n", ARGO_NS, "--overwrite",
            f"argocd.argoproj.io/refresh={'hard' if hard else 'normal'}")
    # reconciledAt has a one-second resolution; wait for the annotation to be consumed too.
    time.sleep(1.1)
    return wait(f"{name} refreshed", 90, lambda: (lambda a: a if (
        "argocd.argoproj.io/refresh" not in (a["metadata"].get("annotations") or {})
        and (a.get("status") or {}).get("reconciledAt") != before) else None)(app_get(name)))


def operation(app):
    return (app.get("status") or {}).get("operationState") or {}


def wait_operation(name, revision, phases=("Succeeded", "Failed", "Error"), timeout=120):
    def done():
        alive("argocd-application-controller")
        app = app_get(name)
        op = operation(app)
        if op.get("phase") in phases and (op.get("syncResult") or {}).get("revision") == revision:
            return app
        return None

    try:
        return wait(f"{name}: a sync of {revision[:8]} ends", timeout, done)
    except Failure:
        show(f"{name} status", json.dumps((app_get(name) or {}).get("status"), indent=1)[:6000])
        raise


def wait_synced(name, revision, timeout=120):
    def done():
        app = app_get(name)
        s = (app.get("status") or {}).get("sync") or {}
        return app if s.get("status") == "Synced" and s.get("revision") == revision else None

    try:
        return wait(f"{name} Synced at {revision[:8]}", timeout, done)
    except Failure:
        show(f"{name} status", json.dumps((app_get(name) or {}).get("status"), indent=1)[:6000])
        raise


def conditions(app):
    return (app.get("status") or {}).get("conditions") or []


def resource_result(app, kind, name):
    for r in (operation(app).get("syncResult") or {}).get("resources") or []:
        if r.get("kind") == kind and r.get("name") == name:
            return r
    return None


def resource_status(app, kind, name):
    for r in (app.get("status") or {}).get("resources") or []:
        if r.get("kind") == kind and r.get("name") == name:
            return r
    return None


# ---------------------------------------------------------------- manifests


def fillable(name):
    """tests/fixtures/manifests/fillable-cluster.yaml: a RayCluster raygate fills in, and its
    NetworkPolicy admitting all traffic between the cluster's pods."""
    cluster, policy = docs("tests/fixtures/manifests/fillable-cluster.yaml")
    for d in (cluster, policy):
        d["metadata"]["name"] = name
        d["metadata"].pop("namespace", None)
    policy["spec"]["podSelector"]["matchLabels"] = {"ray.io/cluster": name}
    policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] = {"ray.io/cluster": name}
    return cluster, policy


def default_ports(name="raycluster-kuberay"):
    """KubeRay's sample RayCluster, on KubeRay's default ports: raygate denies it."""
    (cluster,) = docs("tests/fixtures/kuberay/samples/ray-cluster.sample.yaml")
    cluster["metadata"]["name"] = name
    return cluster


def configmap(name, **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {"k": "v"}}


# ---------------------------------------------------------------- scenarios

RESULTS = {}


def scenario_1_denied_sync():
    """A denial happens during the real apply: earlier waves stay applied."""
    ns = "s1-denied"
    ok_cluster, ok_policy = fillable("ray-sibling")
    sha = commit("s1", {
        "00-settings.yaml": [wave(configmap("ray-settings", plan="v1"), -1)],
        "10-raycluster.yaml": [default_ports()],
        "11-sibling.yaml": [ok_cluster, ok_policy],
        "20-after.yaml": [wave(configmap("after-ray"), 1)],
    }, "s1: KubeRay's sample on default ports, a ConfigMap in wave -1, a sibling cluster, a ConfigMap in wave 1")
    application("s1", ns, "s1", sha)
    app = wait_operation("s1", sha)
    op = operation(app)
    show("s1 status.operationState.phase / message", f"{op.get('phase')}\n{op.get('message')}")
    res = resource_result(app, "RayCluster", "raycluster-kuberay")
    show("s1 syncResult of RayCluster raycluster-kuberay", json.dumps(res, indent=1))
    check(op.get("phase") == "Failed", "the sync ends Failed")
    check(op.get("message", "").startswith(("one or more objects failed to apply, reason: ",
                                             "one or more synchronization tasks completed unsuccessfully, reason: ")),
          "the operation message says an apply failed")
    check(op.get("retryCount") == 1, "the automated sync was retried once, as its retry policy says")
    for needle in ('admission webhook "ray.validate.raygate.dev" denied the request', "ports/head-port",
                   "set containerPort: 6380"):
        check(needle in op.get("message", ""), f"the operation message carries {needle!r}")
    check(res is not None and res.get("status") == "SyncFailed", "the RayCluster's syncResult is SyncFailed")
    check("ports/head-port" in res.get("message", ""), "its syncResult message carries raygate's rule ids")
    check(get("configmap", "ray-settings", ns) is not None, "the wave -1 ConfigMap stays applied")
    check(get("raycluster", "raycluster-kuberay", ns) is None, "the denied RayCluster does not exist")
    sib = resource_result(app, "RayCluster", "ray-sibling")
    check(get("raycluster", "ray-sibling", ns) is not None and sib and sib.get("status") == "Synced",
          "a sibling RayCluster in the same wave (applied in parallel) is applied")
    check(get("configmap", "after-ray", ns) is None, "the wave 1 ConfigMap is never applied")
    RESULTS["1"] = {"phase": op.get("phase"), "message": op.get("message"), "resource": res}


def filled(cluster):
    head = cluster["spec"]["headGroupSpec"]
    c = head["template"]["spec"]["containers"][0]
    return (head.get("rayStartParams", {}).get("port") == "6380"
            and head["rayStartParams"].get("min-worker-port") == "10003"
            and any(p.get("containerPort") == 6380 for p in c.get("ports", []))
            and "limits" in (c.get("resources") or {}))


def scenario_2_fillable_no_drift():
    """A fillable cluster syncs, is stored filled, and stays Synced under each diff strategy."""
    variants = [
        ("s2-default", None),
        ("s2-default-ignore", None),
        ("s2-ssd", "ServerSideDiff=true"),
        ("s2-ssd-mwh", "ServerSideDiff=true,IncludeMutationWebhook=true"),
    ]
    # The default diff's workaround for appended list elements: ignore the list.
    ports = {"group": "ray.io", "kind": "RayCluster", "jqPathExpressions": [
        ".spec.headGroupSpec.template.spec.containers[].ports",
        ".spec.workerGroupSpecs[].template.spec.containers[].ports"]}
    cluster, policy = fillable("ray-filled")
    # The same cluster with one planned head port written out: raygate appends the other
    # four planned ports to that list (fill-ins of missing fields vs. appended elements).
    appended, appended_policy = fillable("ray-appended")
    appended["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "gcs-server", "containerPort": 6380}]
    sha = commit("s2", {"raycluster.yaml": [cluster, policy], "appended.yaml": [appended, appended_policy]},
                 "s2: RayClusters raygate fills in, and their NetworkPolicies")
    for name, compare in variants:
        application(name, name, "s2", sha, compare=compare, ignore=[ports] if name.endswith("-ignore") else None)
    drift = {}
    for name, compare in variants:
        app = wait_operation(name, sha)
        check(operation(app).get("phase") == "Succeeded", f"{name}: the sync Succeeded")
        live = get("raycluster", "ray-filled", name)
        check(live is not None and filled(live), f"{name}: the RayCluster is stored filled in")
        live = get("raycluster", "ray-appended", name)
        ports = [p["name"] for p in live["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]]
        check(len(ports) == 5, f"{name}: raygate appended the planned head ports to the one in git: {ports}")
    # Argo CD 3.x self-heals with no delay before the first attempt, so a comparison made
    # just after the first sync, before the controller's watch cache holds the created
    # RayClusters, can start one partial sync of them (seen on a loaded machine; both
    # variants of the default diff too). That is Argo CD's race, not drift: record the
    # syncs once each Application has settled Synced, and require none after that.
    settled = {}
    for name in ("s2-ssd", "s2-ssd-mwh"):
        wait(f"{name} settles Synced", 60, lambda: (lambda a: (
            (a.get("status") or {}).get("sync", {}).get("status") == "Synced"
            and operation(a).get("phase") == "Succeeded"
            and "operation" not in a))(app_get(name)))
        settled[name] = syncs_started(name)
    # Compare again from scratch, twice (the second after another resync), and record.
    for name, compare in variants:
        for _ in range(2):
            app = refresh(name)
        op = operation(app)
        drift[name] = {"compare-options": compare or "(default)", "sync": app["status"]["sync"]["status"],
                       "ray-filled": (resource_status(app, "RayCluster", "ray-filled") or {}).get("status"),
                       "ray-appended": (resource_status(app, "RayCluster", "ray-appended") or {}).get("status"),
                       "conditions": conditions(app),
                       "last sync": f"{op.get('phase')} at {op.get('finishedAt')}",
                       # Syncs started: the first, then any self-heal.
                       "syncs": syncs_started(name)}
        if name in settled:
            drift[name]["syncs once settled"] = settled[name]
        show(f"{name} after two hard refreshes", json.dumps(drift[name], indent=1))
    RESULTS["2"] = drift
    for name, d in drift.items():
        check(d["ray-filled"] == "Synced", f"{name}: fill-ins of missing fields show no drift")
    d = drift["s2-default"]
    check(d["ray-appended"] == "OutOfSync" and d["sync"] == "OutOfSync",
          "s2-default: elements appended to a list from git show as drift under the default diff")
    check(d["syncs"] > 1, f"s2-default: selfHeal syncs the drift again and again ({d['syncs']} syncs so far)")
    for name in ("s2-default-ignore", "s2-ssd", "s2-ssd-mwh"):
        d = drift[name]
        check(d["ray-appended"] == "Synced" and d["sync"] == "Synced",
              f"{name}: no drift from appended elements either; the Application stays Synced")
    for name in ("s2-ssd", "s2-ssd-mwh"):
        d = drift[name]
        if d["syncs"] != 1:
            show(f"{name}: the controller's sync log", "\n".join(sync_log(name))[-12000:])
        check(d["syncs once settled"] <= 2,
              f"{name}: the first sync, at most one self-heal racing its cache ({d['syncs once settled']} syncs)")
        check(d["syncs"] == d["syncs once settled"], f"{name}: no sync once Synced, through two hard refreshes")


def syncs_started(app):
    return len(sync_log(app, ("Initialized new operation",)))


def sync_log(app, needles=("Initialized new operation", "Updated sync status", "auto-sync", "self-heal",
                           "Partial sync", "Sync operation")):
    """The application controller's log lines about this Application's syncs."""
    return [line for line in logtext("argocd-application-controller").splitlines()
            if f"application={app} " in line and any(n in line for n in needles)]


def scenario_3_ssd_denial_before_sync():
    """ServerSideDiff's dry-run apply goes through raygate, so a breaking commit shows up
    at diff time, before any sync."""
    ns = "s3-ssd"
    cluster, policy = fillable("ray-ssd")
    sha1 = commit("s3", {"raycluster.yaml": [cluster, policy]}, "s3: a valid cluster")
    application("s3", ns, "s3", sha1, compare="ServerSideDiff=true", automated=False)
    wait("s3 compared", 60, lambda: ((app_get("s3").get("status") or {}).get("sync") or {}).get("revision") == sha1)
    sync("s3", sha1)
    app = wait_operation("s3", sha1)
    check(operation(app).get("phase") == "Succeeded", "the first sync Succeeded")
    live1 = get("raycluster", "ray-ssd", ns)
    dry_before = dry_run_requests()
    # Break the plan on the existing cluster: the head's GCS on KubeRay's default 6379.
    broken = json.loads(json.dumps(cluster))
    broken["spec"]["headGroupSpec"]["rayStartParams"] = {"port": "6379"}
    sha2 = commit("s3", {"raycluster.yaml": [broken, policy]}, "s3: the head's GCS on 6379")
    set_revision("s3", sha2)

    def surfaced():
        a = app_get("s3")
        for c in conditions(a):
            if "ports/" in c.get("message", ""):
                return a
        return None

    app = wait("the denial surfaces at diff time", 120, surfaced)
    cond = [c for c in conditions(app) if "ports/" in c.get("message", "")]
    show("s3 status.conditions", json.dumps(cond, indent=1))
    show("s3 status.sync", json.dumps(app["status"].get("sync"), indent=1))
    check(cond[0]["type"] == "ComparisonError", "a ComparisonError condition names raygate's rule")
    live2 = get("raycluster", "ray-ssd", ns)
    check(live2["metadata"]["resourceVersion"] == live1["metadata"]["resourceVersion"], "the live RayCluster is unchanged")
    check((operation(app).get("syncResult") or {}).get("revision") == sha1, "no sync ran for the breaking commit")
    dry_after = dry_run_requests()
    show("raygate's dry-run request counters (before / after the breaking commit)", f"{dry_before}\n{dry_after}")
    check(dry_after > dry_before, "raygate answered dryRun requests at diff time")
    RESULTS["3"] = {"conditions": cond, "sync": app["status"].get("sync")}


def dry_run_requests():
    total = 0
    for line in RAYGATE_NOW.metrics().splitlines():
        if line.startswith("raygate_admission_requests_total{") and 'dry_run="true"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def pods_of(ns, cluster):
    out = kubectl("get", "pods", "-n", ns, "-l", f"ray.io/cluster={cluster}", "-o", "json")
    return json.loads(out.stdout)["items"]


def reviews(ns, kind=None, endpoint="validate"):
    """raygate's "reviewed" log lines for objects in namespace ns."""
    out = []
    for e in RAYGATE_NOW.log():
        span = e.get("span") or {}
        if e.get("message") == "reviewed" and span.get("namespace") == ns and span.get("endpoint") == endpoint \
                and (kind is None or span.get("kind") == kind):
            out.append({"kind": span.get("kind"), "operation": span.get("operation"),
                        "decision": span.get("decision"), "rules": e.get("rules")})
    return out


def order_case(name, title, np_wave, rc_wave, expect_sync="Succeeded"):
    cluster, policy = fillable("ray-order")
    sha = commit(name, {"policy.yaml": [wave(policy, np_wave)], "cluster.yaml": [wave(cluster, rc_wave)]},
                 f"{name}: {title}")
    application(name, name, name, sha)
    app = wait_operation(name, sha)
    op = operation(app)
    res = resource_result(app, "RayCluster", "ray-order")
    check(op.get("phase") == expect_sync, f"{name} ({title}): the sync ends {expect_sync}")
    if expect_sync == "Succeeded":
        wait(f"{name}: KubeRay's Pods are admitted", 120, lambda: pods_of(name, "ray-order"))
    # raygate logs a review only when it has findings: none means admitted clean.
    cluster_reviews = reviews(name, "RayCluster") or [{"decision": "allowed" if get("raycluster", "ray-order", name)
                                                       else "denied", "rules": ""}]
    pod_denials = [r for r in reviews(name, "Pod") if r["decision"] == "denied"]
    result = {"title": title, "phase": op.get("phase"), "RayCluster syncResult": res and res.get("message"),
              "RayCluster CREATE": cluster_reviews[:1], "Pod CREATEs denied": len(pod_denials),
              "NetworkPolicy applied": get("networkpolicy", "ray-order", name) is not None,
              "Pods": len(pods_of(name, "ray-order"))}
    show(f"{name}: {title}", json.dumps(result, indent=1))
    return result


def scenario_4_order():
    """NetworkPolicy and RayCluster ordering under Argo CD's waves."""
    results = {}
    # enforceOn: pods (the built-in plan)
    r = results["s4-waves"] = order_case("s4-waves", "NetworkPolicy in wave -1, RayCluster in wave 0", -1, 0)
    check(r["RayCluster CREATE"][0]["decision"] == "allowed" and "network-policy" not in (r["RayCluster CREATE"][0]["rules"] or ""),
          "s4-waves: the cluster is admitted covered, without a warning")
    check(r["Pod CREATEs denied"] == 0, "s4-waves: no Pod is denied")
    r = results["s4-onewave"] = order_case("s4-onewave", "both in one wave", 0, 0)
    check(r["RayCluster CREATE"][0]["decision"] == "allowed" and "network-policy" not in (r["RayCluster CREATE"][0]["rules"] or ""),
          "s4-onewave: Argo CD applies the NetworkPolicy kind before the RayCluster, so the cluster is covered")
    check(r["Pod CREATEs denied"] == 0, "s4-onewave: no Pod is denied")
    r = results["s4-reversed"] = order_case("s4-reversed", "RayCluster in wave -1, NetworkPolicy in wave 0", 0, -1)
    check(r["RayCluster CREATE"][0]["decision"] == "allowed" and "network-policy/missing" in r["RayCluster CREATE"][0]["rules"],
          "s4-reversed: enforceOn: pods admits the uncovered cluster with a warning")
    check(r["Pod CREATEs denied"] > 0, "s4-reversed: its Pods are denied until the policy exists")
    check(r["Pods"] > 0, "s4-reversed: the cluster comes up once the wave 0 policy is applied")

    # enforceOn: clusters: the same plan with the cluster object itself denied when uncovered.
    global RAYGATE_NOW
    plan = open(os.path.join(ROOT, "policies/ray-platform.yaml")).read()
    check("enforceOn: pods" in plan, "the built-in plan says enforceOn: pods")
    path = os.path.join(DIR, "enforce-on-clusters.yaml")
    with open(path, "w") as f:
        f.write(plan.replace("enforceOn: pods", "enforceOn: clusters"))
    RAYGATE_NOW.stop()
    RAYGATE_NOW = Raygate("raygate-enforce-on-clusters", policy=path)
    register(RAYGATE_NOW)
    r = results["s4c-onewave"] = order_case("s4c-onewave", "enforceOn: clusters, both in one wave", 0, 0)
    check(r["RayCluster CREATE"][0]["decision"] == "allowed", "s4c-onewave: the cluster is admitted (its policy came first)")
    r = results["s4c-reversed"] = order_case("s4c-reversed", "enforceOn: clusters, RayCluster in wave -1, NetworkPolicy in wave 0",
                                             0, -1, expect_sync="Failed")
    check("network-policy/missing" in (r["RayCluster syncResult"] or ""), "s4c-reversed: the cluster is denied for its missing policy")
    check(not r["NetworkPolicy applied"], "s4c-reversed: the wave 0 NetworkPolicy is never applied, so every retry fails alike")
    RESULTS["4"] = results


def scenario_5_cmp_gate():
    """The Config Management Plugin gate: a violating commit is never applied."""
    ns = "s5-gate"
    sha1 = commit("s5", {
        "00-settings.yaml": [wave(configmap("ray-settings", plan="v1"), -1)],
        "10-raycluster.yaml": [default_ports()],
    }, "s5: scenario 1's violating manifests, through the gate")
    application("s5", ns, "s5", sha1, plugin=True)

    def gated():
        a = app_get("s5")
        for c in conditions(a):
            if "raygate" in c.get("message", ""):
                return a
        return None

    app = wait("the gate's message on the Application", 120, gated)
    cond = [c for c in conditions(app) if "raygate" in c.get("message", "")]
    show("s5 status.conditions (violating first commit)", json.dumps(cond, indent=1))
    check(cond[0]["type"] == "ComparisonError", "manifest generation fails with a ComparisonError")
    for needle in ("ports/head-port", "set containerPort: 6380", "network-policy/missing"):
        check(needle in cond[0]["message"], f"the condition carries {needle!r}")
    time.sleep(5)
    check(get("configmap", "ray-settings", ns) is None, "nothing is applied, not even the wave -1 ConfigMap")
    check(get("raycluster", "raycluster-kuberay", ns) is None, "the violating RayCluster does not exist")
    check(not operation(app_get("s5")), "no sync operation ever started")

    cluster, policy = fillable("ray-gated")
    sha2 = commit("s5", {"00-settings.yaml": [wave(configmap("ray-settings", plan="v1"), -1)],
                         "10-raycluster.yaml": [cluster, policy]}, "s5: a valid cluster")
    set_revision("s5", sha2)
    app = wait_operation("s5", sha2)
    check(operation(app).get("phase") == "Succeeded", "a valid commit passes the gate and syncs")
    live1 = get("raycluster", "ray-gated", ns)
    check(filled(live1), "the webhook still fills in what the gate let through")

    broken = json.loads(json.dumps(cluster))
    broken["spec"]["headGroupSpec"]["rayStartParams"] = {"port": "6379"}
    sha3 = commit("s5", {"00-settings.yaml": [wave(configmap("ray-settings", plan="v2"), -1)],
                         "10-raycluster.yaml": [broken, policy]}, "s5: the head's GCS on 6379")
    set_revision("s5", sha3)

    def gated_again():
        a = app_get("s5")
        for c in conditions(a):
            if "raygate" in c.get("message", "") and "ports/" in c.get("message", ""):
                return a
        return None

    app = wait("the gate stops the breaking commit", 120, gated_again)
    cond = [c for c in conditions(app) if "raygate" in c.get("message", "")]
    show("s5 status.conditions (breaking commit on a synced Application)", json.dumps(cond, indent=1))
    time.sleep(5)
    app = app_get("s5")
    check((operation(app).get("syncResult") or {}).get("revision") == sha2, "no sync ran for the breaking commit")
    check(get("configmap", "ray-settings", ns)["data"]["plan"] == "v1", "the commit's ConfigMap change is not applied")
    live2 = get("raycluster", "ray-gated", ns)
    check(live2["metadata"]["resourceVersion"] == live1["metadata"]["resourceVersion"], "the live RayCluster is unchanged")

    # RAYGATE_FAIL_ON=fill (per Application, as plugin env): git must carry the fill-ins.
    application("s5-strict", "s5-strict", "s5", sha2, plugin=True, plugin_env={"RAYGATE_FAIL_ON": "fill"})
    app = wait("the strict gate's message", 120, lambda: (lambda a: a if any(
        "exit 3" in c.get("message", "") for c in conditions(a)) else None)(app_get("s5-strict")))
    strict = [c for c in conditions(app) if "exit 3" in c.get("message", "")]
    show("s5-strict status.conditions (valid, but git lacks the fill-ins)", json.dumps(strict, indent=1)[:3000])
    check("fill  " in strict[0]["message"] and "raygate fix" in strict[0]["message"],
          "with RAYGATE_FAIL_ON=fill the gate names the fill-ins git lacks")
    check(get("raycluster", "ray-gated", "s5-strict") is None, "and nothing is applied")
    RESULTS["5"] = {"conditions": cond, "strict": strict}


def scenario_6_crd_apply():
    """KubeRay's RayCluster CRD through Argo CD: client-side apply fails, ServerSideApply=true works."""
    crd_path = os.path.join(E2E_CRDS, "ray.io_rayclusters.yaml")
    sha = commit("s6", {"ray.io_rayclusters.yaml": open(crd_path).read()}, "s6: KubeRay's RayCluster CRD")
    # The CRD already exists exactly so (cluster.sh applied it), so Argo CD finds it
    # Synced and an automated sync would never apply it: sync by hand.
    application("s6-csa", "s6-crds", "s6", sha, automated=False)
    wait("s6-csa compared", 60, lambda: ((app_get("s6-csa").get("status") or {}).get("sync") or {}).get("revision") == sha)
    sync("s6-csa", sha)
    app = wait_operation("s6-csa", sha)
    op = operation(app)
    show("s6-csa (client-side apply) operationState.message", op.get("message", ""))
    check(op.get("phase") == "Failed" and "Too long" in op.get("message", ""),
          "client-side apply of the CRD fails on the last-applied annotation's size")
    kubectl("delete", "application", "s6-csa", "-n", ARGO_NS)
    application("s6-ssa", "s6-crds", "s6", sha, sync_options=["ServerSideApply=true"], automated=False)
    wait("s6-ssa compared", 60, lambda: ((app_get("s6-ssa").get("status") or {}).get("sync") or {}).get("revision") == sha)
    sync("s6-ssa", sha)
    app = wait_operation("s6-ssa", sha)
    op = operation(app)
    show("s6-ssa (ServerSideApply=true) operationState.message", op.get("message", ""))
    check(op.get("phase") == "Succeeded", "with ServerSideApply=true the CRD syncs")
    RESULTS["6"] = {"client-side": "Failed", "server-side": op.get("phase")}


SCENARIOS = [
    ("1", scenario_1_denied_sync),
    ("2", scenario_2_fillable_no_drift),
    ("3", scenario_3_ssd_denial_before_sync),
    ("4", scenario_4_order),
    ("5", scenario_5_cmp_gate),
    ("6", scenario_6_crd_apply),
]

RAYGATE_NOW = None


def main():
    global RAYGATE_NOW
    t0 = time.monotonic()
    failed = []
    try:
        git_init()
        apply_rbac()
        RAYGATE_NOW = Raygate()
        register(RAYGATE_NOW)
        argocd_setup()
        log(f"Argo CD and raygate up in {time.monotonic() - t0:.0f}s")
        for key, fn in SCENARIOS:
            if ONLY and key not in ONLY:
                continue
            log(f"scenario {key}: {fn.__doc__.strip().splitlines()[0]}")
            t = time.monotonic()
            try:
                fn()
                log(f"scenario {key}: passed in {time.monotonic() - t:.0f}s")
            except Exception as e:  # noqa: BLE001 - every scenario runs; all failures are reported
                traceback.print_exc()
                log(f"scenario {key}: FAILED: {e}")
                failed.append(key)
    finally:
        with open(os.path.join(DIR, "results.json"), "w") as f:
            json.dump(RESULTS, f, indent=1)
        stop_all()
    log(f"done in {time.monotonic() - t0:.0f}s")
    if failed:
        log(f"FAILED scenarios: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
