"""Keeps admission busy while raygate's Pods are deleted, upgraded or drained, and counts every
request whose answer was not raygate's own verdict.

Each round sends, with `kubectl create --dry-run=server` (webhooks with sideEffects None are
called for dry runs, nothing is stored):
  - a RayCluster raygate fills in and admits;
  - a RayCluster raygate denies (default ports), whose error must name raygate's rule;
  - a Ray Pod of a covered cluster, which raygate admits.
Anything else (the API server's "failed calling webhook", a timeout, a refused connection) is a
failed admission. Runs until the file STOP exists; writes a JSON summary to stdout.

    python3 admission_load.py KUBECTL NAMESPACE MANIFEST_DIR STOP [WORKERS]
"""
import json
import os
import subprocess
import sys
import threading
import time

kubectl, namespace, manifests, stop = sys.argv[1:5]
workers = int(sys.argv[5]) if len(sys.argv) > 5 else 2

CASES = [
    ("admitted-cluster", "raycluster-fillable.yaml", True, None),
    ("denied-cluster", "raycluster-default-ports.yaml", False, "ports/"),
    ("admitted-pod", "ray-pod.yaml", True, None),
]

lock = threading.Lock()
counts = {name: {"ok": 0, "failed": 0} for name, *_ in CASES}
failures = []


def one(name, path, admitted, denial):
    t0 = time.monotonic()
    proc = subprocess.run(
        [kubectl, "create", "--dry-run=server", "-n", namespace, "-o", "name", "-f", path],
        capture_output=True, text=True, timeout=60,
    )
    took = time.monotonic() - t0
    if admitted:
        ok = proc.returncode == 0
    else:
        # raygate's denial: the API server relays its message, which names the rule.
        ok = proc.returncode != 0 and "denied the request" in proc.stderr and denial in proc.stderr
    with lock:
        counts[name]["ok" if ok else "failed"] += 1
        if not ok:
            failures.append({"case": name, "at": time.time(), "seconds": round(took, 2),
                             "rc": proc.returncode, "stderr": proc.stderr.strip()[-400:]})


def loop():
    while not os.path.exists(stop):
        for name, file, admitted, denial in CASES:
            one(name, os.path.join(manifests, file), admitted, denial)


threads = [threading.Thread(target=loop) for _ in range(workers)]
started = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
total = sum(c["ok"] + c["failed"] for c in counts.values())
print(json.dumps({
    "seconds": round(time.monotonic() - started, 1),
    "requests": total,
    "failed": sum(c["failed"] for c in counts.values()),
    "by_case": counts,
    "failures": failures[:20],
}))
