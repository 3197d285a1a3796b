"""Which TCP ports a bare `ray start` listens on: a head with no port options, and one worker
node joined to it, each in a network namespace of its own (tests/runtime/netns.py; addresses
in 198.18.1.0/24, no default route, nothing leaves the machine). Run twice; a listener whose
port differs between the runs, or lies in the kernel's ephemeral range, is random.

    python3 tests/runtime/ray_bare_listeners.py --venv .cache/ray/venv-2.60.0 --out FILE

Needs root (network namespaces, tmpfs mounts). Ray runs with RAY_USAGE_STATS_ENABLED=0; the
head with `ray start --head --temp-dir=/tmp/ray/bare`, the worker with
`ray start --address=<head>:6379` (a tmpfs /tmp/ray per node). Ray is never stopped with
`ray stop` (it kills Ray processes machine-wide); every process in the two namespaces is
killed and the namespaces removed, on failure too.

Each listener is labelled with the `ray start` option that sets its port, found from the
command lines Ray gives its own processes (raylet, agents, dashboard) and from the process
that holds the socket.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402

HEAD_IP, WORKER_IP = "198.18.1.10", "198.18.1.11"
TEMP_DIR = "/tmp/ray/bare"

# Fixed ports no `ray start` option moves (Ray reads environment variables for them).
FIXED_UNPINNED = {
    44217: "autoscaler metrics",
    44227: "dashboard metrics",
}


def ephemeral_range():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = f.read().split()
    return int(lo), int(hi)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return [a for a in f.read().split("\0") if a]
    except OSError:
        return []


def flag_values(argv):
    """{flag: value} of `--flag=value` and `--flag value` words (underscores as dashes)."""
    out = {}
    for i, a in enumerate(argv):
        if not a.startswith("--"):
            continue
        if "=" in a:
            k, v = a[2:].split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            k, v = a[2:], argv[i + 1]
        else:
            continue
        out[k.replace("_", "-")] = v
    return out


def snapshot(pod):
    """Every listening TCP socket in the pod: address, port, pids, process names."""
    out = netns.sh("ip", "netns", "exec", pod.netns, "ss", "-ltnpH")
    found = []
    for line in out.splitlines():
        cols = line.split()
        addr, port = cols[3].rsplit(":", 1)
        pids = sorted({int(p) for p in re.findall(r"pid=(\d+)", line)})
        found.append({
            "address": addr.strip("[]"),
            "port": int(port),
            "process": ",".join(sorted({netns.describe(p) for p in pids})) or "?",
            "comm": sorted(set(re.findall(r'\("([^"]+)"', line))),
            "cmdline": " ".join(cmdline(pids[0]))[:300] if pids else "",
            "pids": pids,
        })
    return sorted(found, key=lambda x: (x["port"], x["address"]))


def netns_cmdlines(pod):
    pids = netns.sh("ip", "netns", "pids", pod.netns, check=False).split()
    return {int(p): cmdline(int(p)) for p in pids}


# ray.nodes() fields -> the `ray start` option that sets that port, and what listens there.
NODE_PORTS = {
    "NodeManagerPort": ("node-manager-port", "node manager (raylet gRPC)"),
    "ObjectManagerPort": ("object-manager-port", "object manager"),
    "MetricsExportPort": ("metrics-export-port", "the dashboard agent's metrics export"),
    "MetricsAgentPort": ("dashboard-agent-grpc-port", "the dashboard agent's gRPC server"),
    "DashboardAgentListenPort": ("dashboard-agent-listen-port", "the dashboard agent's HTTP server"),
    "RuntimeEnvAgentPort": ("runtime-env-agent-port", "runtime-env agent"),
}

NODES_CODE = """
import json, ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
print("NODES=" + json.dumps(ray.nodes(), default=str))
"""


def node_ports(pod, venv, env):
    """{node address: {ray.nodes() port field: port}} as Ray's GCS reports them."""
    out = subprocess.run(pod.enter() + [os.path.join(venv, "bin", "python"), "-c", NODES_CODE],
                         env=env, text=True, capture_output=True, timeout=120)
    line = next((l for l in out.stdout.splitlines() if l.startswith("NODES=")), None)
    if line is None:
        raise RuntimeError(f"ray.nodes() failed: {out.stderr[-1500:]}")
    return {n["NodeManagerAddress"]: {k: v for k, v in n.items() if k.endswith("Port")}
            for n in json.loads(line[6:]) if n.get("Alive")}


def is_loopback(address):
    a = address.removeprefix("::ffff:")
    return a.startswith("127.") or a == "::1"


def label(listener, procs, options, ports):
    """The `ray start` option that sets this listener's port (or None), and what it is.
    `ports` is the node's entry of node_ports()."""
    port, pid = listener["port"], (listener["pids"] or [0])[0]
    text = " ".join(procs.get(pid) or cmdline(pid))
    name = listener["process"]

    def opt(o):
        return o if o in options else None

    for field, (option, what) in NODE_PORTS.items():
        if ports.get(field) == port and field != "NodeManagerPort" or \
                field == "NodeManagerPort" and ports.get(field) == port and "raylet" in name:
            return opt(option), what
    if "gcs_server" in name:
        return opt("port"), "GCS server"
    if "dashboard.py" in text:
        if port == 8265:
            return opt("dashboard-port"), "dashboard HTTP"
        if port in FIXED_UNPINNED:
            return None, FIXED_UNPINNED[port]
        return opt("dashboard-grpc-port"), "the dashboard head's gRPC server"
    if "monitor.py" in text:
        if port in FIXED_UNPINNED:
            return None, FIXED_UNPINNED[port]
        return None, "autoscaler monitor (unknown)"
    if "ray.util.client.server" in text:
        if "specific-server" in text:
            return None, "Ray Client per-session server"
        return opt("ray-client-server-port"), "Ray Client server"
    if "raylet" in name:
        return None, "raylet (unknown)"
    if "dashboard/agent.py" in text or "DashboardA" in name:
        # Older Rays report neither agent port to the GCS; their agent's own flags name them.
        own = flag_values(procs.get(pid) or cmdline(pid))
        if own.get("listen-port") == str(port) or port == 52365:
            return opt("dashboard-agent-listen-port"), "the dashboard agent's HTTP server"
        if str(port) in (own.get("dashboard-agent-port"), own.get("grpc-port")):
            return opt("dashboard-agent-grpc-port"), "the dashboard agent's gRPC server"
        return None, "dashboard agent (unknown)"
    if name.startswith("ray::IDLE") or "default_worker.py" in text:
        return "min-worker-port/max-worker-port", "worker process"
    return None, f"unknown ({name})"


def run_once(venv, prefix, settle, timeout, log):
    state = f"/tmp/{prefix}.state.json"
    net = netns.Net(prefix, state)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    ray = os.path.join(venv, "bin", "ray")
    hosts = {HEAD_IP: ["bare-head"], WORKER_IP: ["bare-worker"]}
    result = {}
    try:
        head = net.add_pod("head", "bare-head", hosts, [], ip=HEAD_IP)
        worker = net.add_pod("worker", "bare-worker", hosts, [], ip=WORKER_IP)
        t0 = time.time()
        started = {}
        for pod, argv in ((head, [ray, "start", "--head", f"--temp-dir={TEMP_DIR}"]),
                          (worker, [ray, "start", f"--address={HEAD_IP}:6379"])):
            out = subprocess.run(pod.enter() + argv, env=env, text=True, capture_output=True,
                                 timeout=180)
            started[pod.key] = {"argv": argv[1:], "rc": out.returncode,
                                "seconds": round(time.time() - t0, 1)}
            log(f"  {pod.key}: `ray {' '.join(argv[1:])}` exit {out.returncode} "
                f"after {time.time() - t0:.1f}s")
            if out.returncode != 0:
                raise RuntimeError(f"{pod.key}: ray start failed:\n{out.stdout[-2000:]}\n"
                                   f"{out.stderr[-2000:]}")
        # Until the dashboard (8265) and both agents (52365) listen, and nothing changed for
        # `settle` seconds; at least 20 s after the worker's `ray start` returned.
        joined = time.time()
        last, since = None, time.time()
        while True:
            snap = {p.key: [(x["address"], x["port"], x["process"]) for x in snapshot(p)]
                    for p in (head, worker)}
            if snap != last:
                last, since = snap, time.time()
            up = any(x[1] == 8265 for x in snap["head"]) and all(
                any(x[1] == 52365 for x in snap[k]) for k in snap)
            now = time.time()
            if up and now - since >= settle and now - joined >= 20:
                break
            if now - joined > timeout:
                log(f"  not settled after {timeout}s (dashboard/agents up: {up}); recording")
                break
            time.sleep(2)
        result["settledAfterSeconds"] = round(time.time() - t0, 1)
        result["start"] = started
        snaps = {pod.key: snapshot(pod) for pod in (head, worker)}
        procs_by = {pod.key: netns_cmdlines(pod) for pod in (head, worker)}
        # After the snapshot: the driver this starts opens listeners of its own.
        ports = node_ports(head, venv, env)
        result["nodePorts"] = {"head": ports.get(HEAD_IP), "worker": ports.get(WORKER_IP)}
        for pod in (head, worker):
            procs, ls = procs_by[pod.key], snaps[pod.key]
            for x in ls:
                x["rayStartParam"], x["what"] = label(x, procs, OPTIONS, ports.get(pod.ip, {}))
            result[pod.key] = ls
            # The command lines of the Ray processes that hold the sockets (for reading labels).
            result[f"{pod.key}Processes"] = sorted({x["process"] for x in ls})
    finally:
        net.teardown()
        left = [n for n in netns.sh("ip", "netns", "list", check=False).split()
                if n.startswith(prefix + "-")]
        if left:
            log(f"  ERROR: namespaces left behind: {left}")
    return result


def classify(runs, options):
    """One entry per (node, listener), comparing the runs."""
    lo, hi = ephemeral_range()
    rows = []
    for node in ("head", "worker"):
        keyed = []
        for r in runs:
            k = {}
            for x in r[node]:
                key = (x["what"], x["process"], x["rayStartParam"])
                k.setdefault(key, []).append(x)
            keyed.append(k)
        for key in sorted(set().union(*keyed), key=str):
            seen = [sorted({x["port"] for x in k.get(key, [])}) for k in keyed]
            addrs = sorted({x["address"] for k in keyed for x in k.get(key, [])})
            ports = sorted({p for s in seen for p in s})
            loopback = all(is_loopback(a) for a in addrs)
            # Random: the port differs between the runs (with one run: in the ephemeral range).
            if len(runs) > 1:
                random = len({tuple(s) for s in seen}) > 1
            else:
                random = any(lo <= p <= hi for p in ports)
            rows.append({
                "node": node, "what": key[0], "process": key[1], "rayStartParam": key[2],
                "ports": seen, "addresses": addrs, "loopbackOnly": loopback,
                "random": random,
                "kind": "loopback-only" if loopback else ("random" if random else "fixed"),
            })
    # head-only: a head listener whose `what` the worker does not have.
    worker_whats = {r["what"] for r in rows if r["node"] == "worker"}
    for r in rows:
        r["headOnly"] = r["node"] == "head" and r["what"] not in worker_whats
    return rows


OPTIONS: dict = {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--settle", type=float, default=8.0, help="seconds without change")
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args()
    venv = os.path.abspath(args.venv)

    def log(msg):
        print(f"[bare-listeners] {msg}", file=sys.stderr, flush=True)

    dump = subprocess.run([os.path.join(venv, "bin", "python"), "-W", "ignore",
                           os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "ray_start_options.py")],
                          check=True, text=True, capture_output=True).stdout
    info = json.loads(dump)
    OPTIONS.update(info["options"])
    runs = []
    t0 = time.time()
    for i in range(args.runs):
        prefix = f"rgbl{os.getpid() % 100000}{i}"
        log(f"Ray {info['version']}, run {i + 1}/{args.runs} (namespaces {prefix}-*)")
        runs.append(run_once(venv, prefix, args.settle, args.timeout, log))
    out = {
        "version": info["version"],
        "measuredWith": "tests/runtime/ray_bare_listeners.py",
        "nodes": {"head": f"ray start --head --temp-dir={TEMP_DIR}",
                  "worker": f"ray start --address={HEAD_IP}:6379 (its own network namespace)"},
        "ephemeralRange": list(ephemeral_range()),
        "seconds": round(time.time() - t0, 1),
        "listeners": classify(runs, OPTIONS),
        "runs": runs,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    for r in out["listeners"]:
        log(f"  {r['node']:6} {r['kind']:13} {str(r['ports']):24} {r['process'][:34]:34} "
            f"{r['what']} [{r['rayStartParam']}]{' head-only' if r['headOnly'] else ''}")


if __name__ == "__main__":
    main()
