"""Ray workloads, run inside a pod's namespaces with the pod's own environment.

The rig starts this script with the Ray venv's python (as a driver on the head pod, or as a
client in the client pod) and sends it one JSON request per line on stdin:
    {"step": "task", "args": {...}, "timeout": 25}
It answers each with one line on stdout starting with RESULT_PREFIX:
    {"step": "task", "ok": true, "seconds": 1.2, "detail": "..."} (or "error": "...")
A step that overruns its timeout is answered as failed and left behind in its thread, so that
blocked traffic fails fast instead of hanging the run.
"""
import json
import os
import socket
import sys
import threading
import time
import traceback
import urllib.request

RESULT_PREFIX = "@@result "
OBJECT_BYTES = 20 * 1024 * 1024

ray = None


def _ray():
    global ray
    if ray is None:
        import ray as _ray_module

        ray = _ray_module
    return ray


def _node_id(ip):
    for node in _ray().nodes():
        if node["Alive"] and node["NodeManagerAddress"] == ip:
            return node["NodeID"]
    raise RuntimeError(f"no live Ray node with address {ip}")


def _pinned(ip):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=_node_id(ip), soft=False)


def _where():
    return f"{socket.gethostname()} ({_ray().util.get_node_ip_address()})"


# --- driver steps (head pod) ------------------------------------------------------------------


def step_init(args, timeout):
    _ray().init(log_to_driver=False)
    return f"driver on {_where()}, Ray {ray.__version__}"


def step_nodes(args, timeout):
    """Waits until `want` nodes are alive; answers with their addresses."""
    deadline = time.time() + timeout - 1
    while True:
        alive = sorted(n["NodeManagerAddress"] for n in _ray().nodes() if n["Alive"])
        if len(alive) >= args["want"] or time.time() > deadline:
            break
        time.sleep(0.5)
    if len(alive) < args["want"]:
        raise RuntimeError(f"{len(alive)} of {args['want']} nodes alive: {alive}")
    return " ".join(alive)


def step_task(args, timeout):
    @_ray().remote(num_cpus=0, scheduling_strategy=_pinned(args["ip"]))
    def where():
        return _where()

    return "ran on " + ray.get(where.remote(), timeout=timeout)


def step_actor(args, timeout):
    @_ray().remote(num_cpus=0, scheduling_strategy=_pinned(args["ip"]))
    class Counter:
        def __init__(self):
            self.n = 0

        def add(self):
            self.n += 1
            return self.n, _where()

    counter = Counter.remote()
    n, where = ray.get(counter.add.remote(), timeout=timeout)
    n, where = ray.get(counter.add.remote(), timeout=timeout)
    ray.kill(counter)
    return f"2 calls, counter={n}, actor on {where}"


def step_object_from(args, timeout):
    """A 20 MB object created on another node and fetched by the driver."""

    @_ray().remote(num_cpus=0, scheduling_strategy=_pinned(args["ip"]))
    def make():
        return os.urandom(OBJECT_BYTES)

    data = ray.get(make.remote(), timeout=timeout)
    assert len(data) == OBJECT_BYTES
    return f"{len(data)} bytes from {args['ip']} to {_where()}"


def step_object_to(args, timeout):
    """A 20 MB object put by the driver and read by a task on another node."""
    ref = _ray().put(os.urandom(OBJECT_BYTES))

    @ray.remote(num_cpus=0, scheduling_strategy=_pinned(args["ip"]))
    def size(blob):
        return len(blob), _where()

    n, where = ray.get(size.remote(ref), timeout=timeout)
    assert n == OBJECT_BYTES
    return f"{n} bytes read on {where}"


def step_list_logs(args, timeout):
    from ray.util.state import list_logs

    # The dashboard learns a new node's agent from GCS a few seconds after the node is alive
    # (Ray 2.20 answers "not available ... a transient issue. Try again." meanwhile); a refused
    # connection would not clear up, and the tier's packet log would show it.
    deadline = time.time() + timeout
    while True:
        try:
            logs = list_logs(node_id=_node_id(args["ip"]), timeout=timeout)
            break
        except Exception as e:
            if "is not available" not in str(e) or time.time() > deadline - 2:
                raise
            time.sleep(1)
    files = sum(len(v) for v in logs.values())
    return f"{files} log files on {args['ip']} ({', '.join(sorted(logs)[:4])}, ...)"


def step_serve(args, timeout):
    from ray import serve

    _ray()
    serve.start(http_options={"host": "0.0.0.0", "port": args["port"]})

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Hello:
        def __call__(self, request):
            return f"hello from {_where()}"

    serve.run(Hello.bind(), name="runtime", route_prefix="/")
    return f"application 'runtime' running, HTTP on 0.0.0.0:{args['port']}"


def step_concurrently(args, timeout):
    """Several steps at once, each with the same timeout; answers their results as JSON."""
    results = {}

    def one(name, fn, step_args):
        t0 = time.time()
        try:
            results[name] = {"ok": True, "detail": globals()[f"step_{fn}"](step_args, timeout)}
        except BaseException as e:  # noqa: BLE001
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}".strip()[:500]}
        results[name]["seconds"] = round(time.time() - t0, 2)

    threads = [threading.Thread(target=one, args=item, daemon=True) for item in args["steps"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 3)
    for name, _, _ in args["steps"]:
        results.setdefault(name, {"ok": False, "error": f"no answer within {timeout + 3}s",
                                  "seconds": timeout + 3})
    return json.dumps(results)


_load = []


def step_cpu_load(args, timeout):
    """Submits `tasks` tasks of one CPU each, sleeping `seconds`, and returns at once: more
    than the cluster has CPUs leaves some pending, which the autoscaler sees."""

    @_ray().remote(num_cpus=1)
    def busy(seconds):
        time.sleep(seconds)
        return _where()

    _load.extend(busy.remote(args["seconds"]) for _ in range(args["tasks"]))
    return f"{args['tasks']} tasks of 1 CPU for {args['seconds']}s submitted"


def step_cpu_load_done(args, timeout):
    """Waits for the tasks of cpu_load; answers the nodes they ran on."""
    ran_on = sorted(set(ray.get(_load, timeout=timeout)))
    _load.clear()
    return f"ran on {len(ran_on)} node(s): {', '.join(ran_on)}"


# --- client steps (a pod in another namespace) ------------------------------------------------


def step_ray_client(args, timeout):
    """A Ray Client session. The head's client proxy sometimes fails to start the per-client
    server on a loaded machine ("Initialization failure from server", in about a third of first
    sessions on two cores); two retries are allowed and reported."""
    first_error = None
    for attempt in (1, 2, 3):
        try:
            ctx = _ray().init(args["url"], log_to_driver=False)
        except ConnectionError as e:
            if attempt == 3 or "Initialization failure" not in str(e):
                raise
            first_error = str(e).splitlines()[0]
            continue
        try:
            @ray.remote(num_cpus=0)
            def where():
                return _where()

            got = ray.get(where.remote(), timeout=timeout)
            retried = f" (attempt {attempt}; first failure: {first_error})" if first_error else ""
            return f"Ray {ctx.ray_version} via {args['url']}: task ran on {got}{retried}"
        finally:
            ray.shutdown()


def step_job(args, timeout):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(args["url"])
    entry = ("python -c \"import ray, socket; ray.init(); "
             "print('job task on', ray.get(ray.remote(lambda: socket.gethostname()).remote()))\"")
    job = client.submit_job(entrypoint=entry)
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get_job_status(job)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        time.sleep(0.5)
    logs = client.get_job_logs(job).strip().splitlines()
    if status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"job {job}: {status}: {logs[-3:]}")
    return f"job {job} {status}: {logs[-1] if logs else ''}"


def step_http(args, timeout):
    """GET (or `method` with a JSON `body`); with `until`, retried until it answers."""
    deadline = time.time() + timeout
    while True:
        try:
            data = json.dumps(args["body"]).encode() if "body" in args else None
            request = urllib.request.Request(args["url"], data=data,
                                             method=args.get("method", "GET"),
                                             headers={"Content-Type": "application/json"})
            left = max(1, deadline - time.time())
            with urllib.request.urlopen(request, timeout=min(20, left)) as response:
                body = response.read().decode(errors="replace")
            want = args.get("contains")
            if want and want not in body:
                raise RuntimeError(f"{args['url']}: no {want!r} in {len(body)} bytes")
            break
        except Exception:  # noqa: BLE001
            if not args.get("until") or time.time() > deadline - 1:
                raise
            time.sleep(1)
    first = body.strip().splitlines()[0][:80] if body.strip() else ""
    return f"HTTP {response.status}, {len(body)} bytes: {first}"


def main():
    out = sys.stdout
    # Ray and the steps may print; only result lines go to the real stdout.
    sys.stdout = sys.stderr
    for line in sys.stdin:
        request = json.loads(line)
        name, args, timeout = request["step"], request.get("args", {}), request["timeout"]
        result = {}

        def run():
            try:
                result["detail"] = globals()[f"step_{request['fn']}"](args, timeout)
            except BaseException as e:  # noqa: BLE001: every failure is a result
                result["error"] = f"{type(e).__name__}: {e}".strip()[:2000]
                traceback.print_exc()

        started = time.time()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout + 5)
        seconds = round(time.time() - started, 2)
        if worker.is_alive():
            result = {"error": f"no answer within {timeout + 5}s"}
        answer = {"step": name, "ok": "error" not in result, "seconds": seconds, **result}
        out.write(RESULT_PREFIX + json.dumps(answer) + "\n")
        out.flush()
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
