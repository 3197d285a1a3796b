"""Network namespaces that stand in for Pods.

Every pod gets a network namespace of its own (`ip netns`), wired by a veth pair to one bridge
that lives in a namespace of its own. Addresses come from 198.18.0.0/15 (the benchmarking range);
no namespace has a default route, so nothing can leave the machine. A long-lived "holder"
process per pod owns the pod's private mount and UTS namespaces (`unshare -m -u`): its hostname
is the pod name, `/etc/hosts` and `/etc/resolv.conf` are the pod's own (bind-mounted by
`ip netns exec` from `/etc/netns/<netns>/`, the way kubelet writes them), and `/tmp/ray` plus the
pod's emptyDir volumes are tmpfs mounts. Everything run "in" a pod enters the holder's mount, UTS
and network namespaces with `nsenter`.

All names carry a per-run prefix recorded in a state file, so `cleanup()` can remove them even
from another process after a crash.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

SUBNET = "198.18.0"  # /24 inside 198.18.0.0/15
# For pods that need no names beyond their hosts file: nothing listens there.
RESOLV = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"


def cluster_resolv(nameserver: str, namespace: str) -> str:
    """/etc/resolv.conf as kubelet writes it for dnsPolicy ClusterFirst."""
    return (f"nameserver {nameserver}\nsearch {namespace}.svc.cluster.local svc.cluster.local "
            "cluster.local\noptions ndots:5 timeout:1 attempts:2\n")


def sh(*argv, check=True, input=None):
    out = subprocess.run(argv, input=input, text=True, capture_output=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class Pod:
    key: str  # short name, unique in the run
    netns: str
    ip: str
    hostname: str
    holder: subprocess.Popen | None = None
    procs: list = field(default_factory=list)

    def enter(self) -> list:
        """argv prefix that runs a command inside this pod."""
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-u", "-n", "--"]


class Net:
    def __init__(self, prefix: str, state_file: str):
        self.prefix = prefix
        self.state_file = state_file
        self.bridge = f"{prefix}-br"
        self.pods: dict[str, Pod] = {}
        self.next_host = 10
        self._save()
        sh("ip", "netns", "add", self.bridge)
        self._save()
        sh("ip", "-n", self.bridge, "link", "set", "lo", "up")
        sh("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge, "link", "set", "br0", "up")

    def _save(self):
        names = [self.bridge] + [p.netns for p in self.pods.values()]
        with open(self.state_file, "w") as f:
            json.dump({"prefix": self.prefix, "netns": names}, f)

    def add_pod(self, key: str, hostname: str, hosts: dict, tmpfs: list,
                ip: str | None = None, resolv: str = RESOLV) -> Pod:
        """A pod namespace. `hosts` maps address -> names for its /etc/hosts; `tmpfs` lists
        (mountPath, size) mounts besides /tmp/ray; `resolv` is its /etc/resolv.conf."""
        if ip is None:
            ip = f"{SUBNET}.{self.next_host}"
            self.next_host += 1
        pod = Pod(key, f"{self.prefix}-{key}", ip, hostname)
        self.pods[key] = pod
        self._save()
        sh("ip", "netns", "add", pod.netns)
        etc = f"/etc/netns/{pod.netns}"
        os.makedirs(etc, exist_ok=True)
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{ip}\t{hostname}"]
        lines += [f"{addr}\t{' '.join(names)}" for addr, names in hosts.items()]
        with open(f"{etc}/hosts", "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(f"{etc}/resolv.conf", "w") as f:
            f.write(resolv)
        n = pod.netns
        veth = self._veth(key)
        # A namespace of the same key from an earlier scenario dies asynchronously (the
        # kernel frees it once its last process is reaped); its veth may still be here.
        sh("ip", "-n", self.bridge, "link", "del", veth, check=False)
        sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "-n", self.bridge, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
           "netns", n)
        sh("ip", "-n", self.bridge, "link", "set", veth, "master", "br0", "up")
        sh("ip", "-n", n, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", n, "link", "set", "eth0", "up")
        mounts = [("/tmp/ray", "4g")] + list(tmpfs)
        script = f"hostname {hostname} && " + " && ".join(
            f"mkdir -p {path} && mount -t tmpfs -o size={size} tmpfs {path}" for path, size in mounts
        ) + " && echo ready && exec sleep infinity"
        pod.holder = subprocess.Popen(
            ["ip", "netns", "exec", n, "unshare", "-m", "-u", "--propagation", "private",
             "/bin/sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = pod.holder.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"pod namespace {n} failed: {pod.holder.stderr.read()}")
        return pod

    def nft(self, pod: Pod, script: str):
        sh("ip", "netns", "exec", pod.netns, "nft", "flush", "ruleset")
        sh("ip", "netns", "exec", pod.netns, "nft", "-f", "-", input=script)

    def nft_set(self, pod: Pod, name: str, flush=False) -> list:
        """Elements (source, destination, port) of a set of the netpol table."""
        out = sh("ip", "netns", "exec", pod.netns, "nft", "-j", "list", "set", "inet", "netpol",
                 name, check=False)
        found = []
        for item in json.loads(out or "{}").get("nftables", []):
            for elem in (item.get("set") or {}).get("elem", []):
                elem = elem.get("elem", {}).get("val", elem) if isinstance(elem, dict) else elem
                parts = elem["concat"]
                found.append((parts[0], parts[1], int(parts[2])))
        if flush and out:
            sh("ip", "netns", "exec", pod.netns, "nft", "flush", "set", "inet", "netpol", name,
               check=False)
        return found

    def listeners(self, pod: Pod) -> list:
        """(address, port, process) of every listening TCP socket in the pod's namespace; a
        Python process is named by its script or module (`python3[dashboard.py]`)."""
        out = sh("ip", "netns", "exec", pod.netns, "ss", "-ltnpH")
        found = []
        for line in out.splitlines():
            cols = line.split()
            addr, port = cols[3].rsplit(":", 1)
            names = sorted({describe(int(pid)) for pid in re.findall(r"pid=(\d+)", line)})
            found.append((addr.strip("[]"), int(port), ",".join(names) or "?"))
        return found

    def stop_pod_processes(self, pod: Pod, keep_holder=True):
        kill_netns_processes(pod.netns, keep={pod.holder.pid} if keep_holder else set())

    def _veth(self, key: str) -> str:
        return f"v{self.prefix[-4:]}{key}"[:15]

    def remove_pod(self, key: str):
        pod = self.pods.pop(key)
        # Deleting the bridge's end removes the pair now, whenever the namespace goes.
        sh("ip", "-n", self.bridge, "link", "del", self._veth(key), check=False)
        remove_netns(pod.netns)
        self._save()

    def remove_all_pods(self):
        """Every pod at once: TERM to all their processes, KILL what is left after 3 s."""
        names = [p.netns for p in self.pods.values()]
        kill_netns_processes(names, grace=3.0)
        for key in list(self.pods):
            self.remove_pod(key)

    def teardown(self):
        self.remove_all_pods()
        remove_netns(self.bridge)
        try:
            os.unlink(self.state_file)
        except FileNotFoundError:
            pass


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        with open(f"/proc/{pid}/cmdline") as f:
            args = f.read().split("\0")
    except OSError:
        return "?"
    if not comm.startswith("python"):
        return comm
    what = next((os.path.basename(a) for a in args[1:] if a.endswith(".py")), None)
    if "-m" in args:
        what = args[args.index("-m") + 1]
    mode = next((a.split("=", 1)[1] for a in args if a.startswith("--mode=")), None)
    return f"{comm}[{what}{' ' + mode if mode else ''}]" if what else comm


def kill_netns_processes(netns, keep=frozenset(), grace=5.0):
    names = [netns] if isinstance(netns, str) else list(netns)

    def pids():
        out = " ".join(sh("ip", "netns", "pids", n, check=False) for n in names)
        return [int(p) for p in out.split() if int(p) not in keep]

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while pids() and time.time() < deadline:
            time.sleep(0.1)
        if not pids():
            return


def remove_netns(netns: str):
    if netns in sh("ip", "netns", "list", check=False).split():
        kill_netns_processes(netns)
        sh("ip", "netns", "del", netns, check=False)
    shutil.rmtree(f"/etc/netns/{netns}", ignore_errors=True)


def cleanup(state_file: str):
    """Remove whatever a run recorded in its state file (for the shell's exit trap)."""
    if not os.path.exists(state_file):
        return
    with open(state_file) as f:
        state = json.load(f)
    listed = sh("ip", "netns", "list", check=False).split()
    names = set(state["netns"]) | {n for n in listed if n.startswith(state["prefix"] + "-")}
    for name in sorted(names, key=lambda n: n.endswith("-br")):  # the bridge last
        remove_netns(name)
    os.unlink(state_file)
