"""Differential test of raygate's reading of the `ray start` a Ray container runs.

For every case of ray_cli_cases.py, `raygate ray-start` says which command the Ray container
runs (as KubeRay v1.5.0 builds it) and which `ray start` words and option values Ray gets, or
refuses the group. The oracle checks that against the real programs:

1. KubeRay: an independent model of KubeRay v1.5.0's BuildPod (ray-operator/controllers/ray/
   common/pod.go: setMissingRayStartParams, generateRayStartCommand, convertParamMap, the
   "ray start" substring test and ray.io/overwrite-container-cmd, the env it appends) must give
   raygate's argv, script and KUBERAY_GEN_RAY_START_CMD. The model was checked against
   KubeRay v1.5.0's own Go code (common.DefaultHead/WorkerPodTemplate + BuildPod, with the
   cluster's name, namespace, head group and enableInTreeAutoscaling) on the whole corpus: same
   argv and env on every case. raygate is given the cluster around the group (its name,
   namespace, head group, autoscaling) and must build a worker's --address itself.
2. bash: the container's command (after kubelet's $(VAR) expansion, with the env the model
   gives: the container's own, then KubeRay's) runs for real, under the real /bin/bash or
   /bin/sh, in an empty directory, with fake `ray`, `python`, `python3` and `sleep` first on PATH
   that record their argv (a login shell reads /etc/profile; a $HOME/.bash_profile puts the fakes
   back first, as the image's profile keeps Ray on PATH; `ulimit -n 65536` is let through, as in
   a container, where the hard limit allows it). It runs twice: once with the fake `ray` exiting
   0 and once exiting 1 (a Ray that fails to start), and each run must record exactly one `ray`
   invocation (and no python running Ray), `start` first, whose words equal raygate's `start`.
3. click: those words parsed by Ray's own `ray start` command
   (`ray.scripts.scripts.start.make_context`) must parse, and every option must have raygate's
   value (an option raygate does not list must be at click's default). Ports come first.

A refused case is run too and only reported: whether Ray would have started, and on the plan's
ports. Exit status 1 on any disagreement.

    python ray_cli_oracle.py [--raygate target/debug/raygate] [--report FILE] [--only PREFIX]

Runs under the Ray venv's python (it imports ray and click); reads nothing outside the repo
except the venv, its own temporary directory and the shells it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ray_cli_cases  # noqa: E402

ROOT = ray_cli_cases.ROOT
OVERWRITE = ray_cli_cases.OVERWRITE
KUBERAY_VERSION = "v1.5.0"
TIMEOUT_S = 10
SHELLS = {"/bin/bash", "bash", "/bin/sh", "sh", "/usr/bin/bash", "/usr/bin/sh"}

# --- Kubernetes quantities (k8s.io/apimachinery resource.Quantity) -----------------------------

_QTY = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$", re.ASCII)
_SUFFIX = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}


def quantity(text) -> Fraction | None:
    """resource.ParseQuantity, exactly; None when it does not parse."""
    m = _QTY.match(str(text).strip())
    if not m or (not m.group(2) and not m.group(3)):
        return None
    sign, whole, frac, suffix = m.group(1), m.group(2) or "0", m.group(3) or "", m.group(4) or ""
    value = Fraction(int(whole + frac or "0"), 10 ** len(frac))
    if suffix in _SUFFIX:
        value *= _SUFFIX[suffix]
    else:
        value *= Fraction(10) ** int(suffix[1:])
    return -value if sign == "-" else value


def q_value(q: Fraction) -> int:
    """Quantity.Value(): rounded up, away from zero."""
    return math.ceil(q) if q >= 0 else -math.ceil(-q)


_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"": 0, "n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_POW10 = [float(f"1e{i}") for i in range(32)]
_POW10_POS32 = [float(f"1e{32 * i}") for i in range(10)]
_POW10_NEG32 = [float(f"1e-{32 * i}") for i in range(11)]


def go_pow10(n: int) -> float:
    """Go's math.Pow10, table for table."""
    if 0 <= n <= 308:
        return _POW10_POS32[n // 32] * _POW10[n % 32]
    if -323 <= n < 0:
        return _POW10_NEG32[-n // 32] / _POW10[-n % 32]
    return math.inf if n > 0 else 0.0


def approximate_float(text) -> float:
    """Quantity.AsApproximateFloat64() of resource.ParseQuantity(text): an int64Amount's value
    times Pow10(scale) when ParseQuantity keeps one (at most 18 digits, scale >= nano, no
    binary fraction), else the exact value rounded up to nanos (BinarySI capped at MaxInt64)."""
    text = str(text).strip()
    q = quantity(text)
    if q is None:
        raise ValueError(text)
    m = _QTY.match(text)
    whole, frac, suffix = m.group(2) or "", m.group(3) or "", m.group(4) or ""
    num = whole.lstrip("0") or "0"
    if suffix in _BINARY:
        exp, scale, mantissa = _BINARY[suffix], 0, 2 ** _BINARY[suffix]
        precision = 15 - len(num) - exp * 3 // 10 - 1 if not frac else -1
    else:
        exp = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:])
        scale, mantissa, precision = exp, 1, 18 - len(num) - len(frac)
    if precision >= 0 and scale - len(frac) >= -9:
        value = int(num + frac) * mantissa
        if value < 2**63:
            value = -value if m.group(1) == "-" else value
            scale -= len(frac)
            return float(value) if scale == 0 else float(value) * go_pow10(scale)
    if q == 0:
        return 0.0
    nanos = math.ceil(abs(q) * 10**9)
    if suffix in _BINARY and abs(q) > 2**63 - 1:
        return math.copysign(float(2**63 - 1), q)
    return math.copysign(float(nanos) * go_pow10(-9), q)


def go_float(f: float) -> str:
    """encoding/json's float64 text: shortest digits, plain in [1e-6, 1e21), else Go's exponent
    form (1e+21, 1.5e-7)."""
    if math.isinf(f) or math.isnan(f):
        raise ValueError("json: unsupported value")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        mantissa, exp = repr(f).split("e")
        e = int(exp)
        return f"{mantissa}e-{-e}" if -10 < e < 0 else f"{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"
    text = format(Decimal(repr(f)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def go_json_string(k: str) -> str:
    """encoding/json's string (json.Marshal escapes <, >, & and U+2028/U+2029 too)."""
    out = json.dumps(k, ensure_ascii=False)
    for c, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                   ("\u2029", "\\u2029")):
        out = out.replace(c, esc)
    return out


def go_json_map(m: dict[str, float]) -> str | None:
    """json.Marshal of a map[string]float64; None where Go returns an error (Inf, NaN)."""
    try:
        return "{" + ",".join(go_json_string(k) + ":" + go_float(v) for k, v in sorted(m.items())) + "}"
    except ValueError:
        return None


def go_float_map(text: str):
    """json.Unmarshal of text into a map[string]float64: ("ok", map), ("nil", None) for JSON
    null, ("error", None) for anything Go reports."""
    def reject(_):
        raise ValueError("not JSON")

    try:
        obj = json.loads(text, parse_constant=reject)
    except ValueError:
        return "error", None
    if obj is None:
        return "nil", None
    if not isinstance(obj, dict):
        return "error", None
    out = {}
    for k, v in obj.items():
        if v is None:
            v = 0.0  # null leaves the element zero
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "error", None
        try:
            v = float(v)
        except OverflowError:
            return "error", None
        if math.isinf(v):
            return "error", None
        out[k] = v
    return "ok", out


# --- KubeRay v1.5.0 -------------------------------------------------------------------------------


def is_gpu_key(key: str) -> bool:
    return key.endswith("gpu") or re.search(r"nvidia\.com/mig-\d+g\.\d+gb$", key) is not None


CUSTOM_ACCELERATORS = {"aws.amazon.com/neuroncore": "neuron_cores", "google.com/tpu": "TPU"}


class ModelError(Exception):
    """The object is one the API server or KubeRay would not turn into a Pod."""


def kuberay_pod(c: dict) -> dict:
    role, group, ctx = c["role"], c["group"], c["ctx"]
    params_in = group.get("rayStartParams") or {}
    if not isinstance(params_in, dict) or any(not isinstance(v, str) for v in params_in.values()):
        raise ModelError("rayStartParams is not a map of strings (the CRD schema rejects it)")
    params = dict(params_in)
    template = group.get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        raise ModelError("no containers")
    container = containers[0]
    fqdn = f"{ctx['head_svc']}.{ctx['namespace']}.svc.cluster.local"
    head_port = params.get("port", "6379") if role == "head" else ctx["head_port"]

    # updateRayStartParamsResources / updateRayStartParamsLabels (group-level fields)
    custom: dict[str, float] = {}
    for name, qty in (group.get("resources") or {}).items():
        if qty != str(qty).strip():
            continue  # ParseQuantity does not trim
        q = quantity(qty)
        if q is None:
            continue
        low = name.lower()
        if low == "cpu":
            params["num-cpus"] = str(q_value(q))
        elif low == "memory":
            params["memory"] = str(q_value(q))
        elif is_gpu_key(low):
            params["num-gpus"] = str(q_value(q))
        else:
            custom[name] = approximate_float(qty)
    if custom and go_json_map(custom) is not None:
        params["resources"] = f"'{go_json_map(custom)}'"
    if group.get("labels"):
        params["labels"] = ",".join(f"{k}={v}" for k, v in sorted(group["labels"].items()))

    # setMissingRayStartParams
    if role == "worker" and "address" not in params:
        params["address"] = f"{fqdn}:{head_port}"
    if role == "head" and "dashboard-host" not in params:
        params["dashboard-host"] = "0.0.0.0"
    params.setdefault("metrics-export-port", "8080")
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", "52365")
    # DefaultHeadPodTemplate: the autoscaler sidecar replaces Ray's monitor
    if role == "head" and ctx.get("autoscaling"):
        params["no-monitor"] = "true"

    # generateRayStartCommand
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}

    def nonzero(d, k):
        q = quantity(d[k]) if k in d else None
        return q if q else None

    if "num-cpus" not in params:
        q = nonzero(limits, "cpu") or nonzero(requests, "cpu")
        if q:
            params["num-cpus"] = str(q_value(q))
    if "memory" not in params:
        q = nonzero(limits, "memory")
        if q:
            params["memory"] = str(q_value(q))
    if limits:  # addWellKnownAcceleratorResources
        raw = params.get("resources")
        status, rmap = ("ok", {}) if raw is None else go_float_map(raw.strip("'\"` "))
        if status != "error":  # on an error KubeRay logs it and adds nothing
            added = rmap is not None and any(v in rmap for v in CUSTOM_ACCELERATORS.values())
            for key in sorted(limits):
                q = quantity(limits[key])
                if "num-gpus" not in params and is_gpu_key(key) and q:
                    params["num-gpus"] = str(q_value(q))
                if not added and key in CUSTOM_ACCELERATORS and q:
                    if rmap is None:
                        raise ModelError("rayStartParams.resources is JSON null: KubeRay panics adding an accelerator")
                    if CUSTOM_ACCELERATORS[key] not in rmap:
                        rmap[CUSTOM_ACCELERATORS[key]] = approximate_float(limits[key])
                        if go_json_map(rmap) is None:
                            break  # KubeRay returns the marshal error
                        params["resources"] = f"'{go_json_map(rmap)}'"
                    added = True

    flags = ""
    for key in sorted(params):
        arg = params[key]
        if arg.lower() in ("true", "false") and key not in ("log-color", "include-dashboard"):
            if arg.lower() == "true":
                flags += f" --{key} "
        else:
            flags += f" --{key}={arg} "
    ray_start = f"ray start --head {flags}" if role == "head" else f"ray start {flags}"

    # BuildPod
    def to_string(words):
        return "".join(f" {w} " for w in words)

    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    cmd = (to_string(command) if command else "") + (to_string(args) if args else "")
    annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    if str((c.get("annotations") or {}).get(OVERWRITE, "")).lower() == "true":
        annotations[OVERWRITE] = "true"
    overwrite = str(annotations.get(OVERWRITE, "")).lower() == "true"
    generated = False
    if not overwrite and "ray start" not in cmd:
        gen = f"ulimit -n 65536; {ray_start}"
        command = ["/bin/bash", "-c", "--"]
        args = [f"{cmd} && {gen}" if cmd != "" else gen]
        generated = True

    # setContainerEnvVars (the part a pod-level model can know)
    env: list[tuple[str, object]] = []
    for e in container.get("env") or []:
        env.append((e["name"], e["value"] if "value" in e else ("valueFrom", e.get("valueFrom"))))

    def exists(name):
        return any(n == name for n, _ in env)

    # configureGCSFaultTolerance, from the annotation (gcsFaultToleranceOptions is cluster-level)
    cluster_annotations = c.get("annotations") or {}
    if str(cluster_annotations.get("ray.io/ft-enabled", "")).lower() == "true":
        if role == "worker" and not exists("RAY_gcs_rpc_server_reconnect_timeout_s"):
            env.append(("RAY_gcs_rpc_server_reconnect_timeout_s", "600"))
        if role == "head":
            if not exists("RAY_external_storage_namespace"):
                env.append(("RAY_external_storage_namespace",
                            cluster_annotations.get("ray.io/external-storage-namespace", "")))
            if not exists("REDIS_PASSWORD") and "redis-password" in params:
                env.append(("REDIS_PASSWORD", params["redis-password"]))

    ip = "127.0.0.1"
    if role == "worker":
        ip = fqdn
        env += [("FQ_RAY_IP", fqdn), ("RAY_IP", fqdn.split(".")[0])]
    pod_name = f"{ctx['cluster']}-{'head' if role == 'head' else 'workers-worker'}-oracle"
    group_label = "headgroup" if role == "head" else group.get("groupName", "")
    env += [
        ("RAY_CLUSTER_NAME", ctx["cluster"]),
        ("RAY_CLOUD_INSTANCE_ID", pod_name),
        ("RAY_NODE_TYPE_NAME", group_label),
        ("KUBERAY_GEN_RAY_START_CMD", ray_start),
    ]
    if not exists("RAY_PORT"):
        env.append(("RAY_PORT", head_port))
    if ctx["crd"] == "RayService":
        for n, v in (("RAY_timeout_ms_task_wait_for_death_info", "0"),
                     ("RAY_gcs_server_request_timeout_seconds", "5"), ("RAY_SERVE_KV_TIMEOUT_S", "5")):
            if not exists(n):
                env.append((n, v))
    if not exists("RAY_ADDRESS"):
        env.append(("RAY_ADDRESS", f"{ip}:{head_port}"))
    if not exists("RAY_USAGE_STATS_KUBERAY_IN_USE"):
        env.append(("RAY_USAGE_STATS_KUBERAY_IN_USE", "1"))
    if role == "head":
        env.append(("RAY_USAGE_STATS_EXTRA_TAGS", f"kuberay_version={KUBERAY_VERSION};kuberay_crd={ctx['crd']}"))
    if not exists("RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"):
        env.append(("RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1"))
    return {
        "command": command,
        "args": args,
        "argv": command + args if command else args,
        "gen_cmd": ray_start,
        "generated": generated,
        "env": env,
        "pod_name": pod_name,
    }


# --- kubelet ------------------------------------------------------------------------------------


def kubelet_expand(text: str, lookup) -> str:
    """k8s.io/kubernetes third_party/forked/golang/expansion.Expand."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close >= 0:
                    name = text[i + 2 : close]
                    val = lookup(name)
                    out.append(val if val is not None else f"$({name})")
                    i = close + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def kubelet_env(env: list[tuple[str, object]], pod_name: str) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for name, value in env:
        if isinstance(value, tuple):  # valueFrom
            src = value[1] or {}
            path = (src.get("fieldRef") or {}).get("fieldPath", "")
            value = {"status.podIP": "10.244.0.10", "metadata.name": pod_name,
                     "metadata.namespace": "default"}.get(path, f"valuefrom-{name.lower()}")
        elif value:
            value = kubelet_expand(str(value), resolved.get)
        resolved[name] = "" if value is None else str(value)
    return resolved


# --- the sandbox ----------------------------------------------------------------------------------

RECORD_SEP = b"\x1e\x00"


class Sandbox:
    """Fake `ray`/`python`/`python3`/`sleep` on PATH, recording argv; one set per ray exit code."""

    def __init__(self, root: Path):
        self.root = root
        self.cwd = root / "cwd"
        self.ray_rec = root / "ray.rec"
        self.py_rec = root / "python.rec"
        self.bashenv = root / "bashenv"
        # The machine's hard limit on open files may be below 65536 (a container's is not):
        # `ulimit -n 65536` must not fail where it would succeed in the Ray image.
        self.bashenv.write_text(
            'ulimit() { if [ "$#" -eq 2 ] && [ "$1" = -n ] && [ -n "$2" ] && [ -z "${2//[0-9]/}" ]; then\n'
            '  builtin ulimit -n "$2" 2>/dev/null; return 0; fi; builtin ulimit "$@"; }\n'
        )
        self.dirs = {}
        for code in (0, 1):
            bindir, home = root / f"bin{code}", root / f"home{code}"
            bindir.mkdir()
            home.mkdir()
            for name, rec in (("ray", self.ray_rec), ("python", self.py_rec), ("python3", self.py_rec)):
                self._script(bindir / name, f"printf '%s\\0' \"$@\" $'\\036' >> '{rec}'\nexit {code}\n")
            self._script(bindir / "sleep", "exit 0\n")
            # Login shells read /etc/profile, which resets PATH; the image's profile keeps Ray.
            profile = f'PATH="{bindir}:$PATH"; export PATH\n'
            (home / ".profile").write_text(profile)
            (home / ".bash_profile").write_text(profile + f'. "{self.bashenv}"\n')
            self.dirs[code] = (bindir, home)

    @staticmethod
    def _script(path: Path, body: str):
        path.write_text("#!/bin/bash -p\n" + body)
        path.chmod(0o755)

    @staticmethod
    def _records(path: Path) -> list[list[str]]:
        """Each record is its words, each ending in NUL, then RS NUL."""
        parts = path.read_bytes().split(RECORD_SEP) if path.exists() else [b""]
        parts.pop()  # what follows the last separator: nothing, unless a fake was killed mid-write
        return [[w.decode("utf-8", "surrogateescape") for w in p.split(b"\0")[:-1]] for p in parts]

    def run(self, argv: list[str], env: dict[str, str], ray_exit: int, hostname: str) -> dict:
        bindir, home = self.dirs[ray_exit]
        for p in (self.ray_rec, self.py_rec):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.cwd, ignore_errors=True)
        self.cwd.mkdir()
        base = {
            "PATH": f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "HOSTNAME": hostname,
            "BASH_ENV": str(self.bashenv),
        }
        full = {**base, **env}
        if "PATH" in env:
            full["PATH"] = f"{bindir}:{env['PATH']}"
        out = {"rc": None, "timeout": False, "exec_error": None, "stderr": ""}
        if not argv:
            out["exec_error"] = "empty command (the image's own entrypoint/cmd would run)"
        else:
            exe = argv[0]
            if exe in ("/bin/bash", "bash", "/usr/bin/bash"):
                exe = "/bin/bash"
            elif exe in ("/bin/sh", "sh", "/usr/bin/sh"):
                exe = "/bin/sh"
            try:
                proc = subprocess.Popen(
                    [exe, *argv[1:]], env=full, cwd=self.cwd,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as e:
                out["exec_error"] = f"{type(e).__name__}: {e.strerror}"
            else:
                try:
                    _, err = proc.communicate(timeout=TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    out["timeout"] = True
                    _kill_group(proc.pid)
                    _, err = proc.communicate()
                out["rc"] = proc.returncode
                out["stderr"] = err.decode("utf-8", "replace")[-2000:]
                # Background jobs (`&`) stay in the session's process group.
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:
                    try:
                        os.killpg(proc.pid, 0)
                    except (ProcessLookupError, PermissionError):
                        break
                    time.sleep(0.02)
                else:
                    _kill_group(proc.pid)
        out["ray"] = self._records(self.ray_rec)
        out["python"] = self._records(self.py_rec)
        return out


def _kill_group(pid: int):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --- click ------------------------------------------------------------------------------------------


def load_click():
    import click  # noqa: F401  (the venv's, with Ray's)
    from ray.scripts.scripts import start

    defaults = dict(start.make_context("start", []).params)
    return start, defaults


def click_parse(start, words: list[str]) -> tuple[dict | None, str | None]:
    import click

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ctx = start.make_context("start", list(words))
    except click.exceptions.Exit as e:  # --help: Ray prints help and exits, nothing starts
        return None, f"Exit({e.exit_code}): Ray prints help and does not start"
    except click.ClickException as e:
        return None, f"{type(e).__name__}: {e.format_message()}"
    except click.exceptions.Abort:
        return None, "Abort"
    return dict(ctx.params), None


def port_params(defaults: dict) -> list[str]:
    return sorted(k for k in defaults if k == "port" or k.endswith("_port") or k in ("worker_port_list", "redis_shard_ports"))


def compare_options(raygate: dict, params: dict, defaults: dict, ports: list[str]) -> list[str]:
    """Mismatches, port options first."""
    diffs: list[tuple[int, str]] = []
    for key, val in raygate.items():
        name = key.replace("-", "_")
        if name not in params:
            diffs.append((0 if "port" in key else 1, f"--{key}: raygate lists {val!r}; `ray start` has no such option"))
            continue
        ok, cv = _same(val, params[name])
        if not ok:
            diffs.append((0 if name in ports else 1, f"--{key}: raygate {val!r}, click {cv!r}"))
    for name, cv in params.items():
        key = name.replace("_", "-")
        if key in raygate:
            continue
        if cv != defaults.get(name):
            diffs.append((0 if name in ports else 1, f"--{key}: raygate does not list it, click {cv!r} (default {defaults.get(name)!r})"))
    return [d for _, d in sorted(diffs, key=lambda x: x[0])]


def _same(rg, cv) -> tuple[bool, object]:
    if rg is None:
        return cv is None, cv
    if isinstance(cv, bool):
        return str(rg).lower() == str(cv).lower() and str(rg).lower() in ("true", "false"), cv
    if isinstance(cv, int):
        return str(rg) == str(cv), cv
    if isinstance(cv, float):
        try:
            return float(rg) == cv, cv
        except (TypeError, ValueError):
            return False, cv
    if isinstance(cv, (dict, list)):
        try:
            return json.loads(rg) == cv, cv
        except (TypeError, ValueError):
            return False, cv
    return str(rg) == str(cv), cv


# --- the plan (informational) ---------------------------------------------------------------------


def plan_violations(role: str, p: dict) -> list[str]:
    v = []

    def eq(name, want):
        if p.get(name) != want:
            v.append(f"{name}={p.get(name)!r} (plan {want})")

    def within(name, lo, hi):
        x = p.get(name)
        if not (isinstance(x, int) and lo <= x <= hi):
            v.append(f"{name}={x!r} (plan {lo}-{hi})")

    if bool(p.get("head")) != (role == "head"):
        v.append(f"head={p.get('head')!r} on a {role} group")
    if role == "head":
        eq("port", 6380)
        eq("ray_client_server_port", 10002)
        eq("dashboard_port", 8266)
    eq("metrics_export_port", 8081)
    eq("dashboard_agent_grpc_port", 8601)
    eq("dashboard_agent_listen_port", 52365)
    within("object_manager_port", 8301, 8400)
    within("node_manager_port", 8401, 8500)
    within("runtime_env_agent_port", 8501, 8600)
    within("min_worker_port", 10003, 19999)
    within("max_worker_port", 10003, 19999)
    for name in ("worker_port_list", "redis_shard_ports"):
        if p.get(name) is not None:
            v.append(f"{name}={p.get(name)!r} (plan: unset)")
    return v


# --- one case -------------------------------------------------------------------------------------


def shell_script(argv: list[str]) -> str | None:
    """The string a `sh -c`/`bash -c` argv runs (None for anything else)."""
    if not argv or argv[0] not in SHELLS:
        return None
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        if "c" in argv[i][1:] and not argv[i].startswith("--"):
            rest = argv[i + 1 :]
            if rest and rest[0] == "--":
                rest = rest[1:]
            return rest[0] if rest else None
        i += 1
    return None


def ray_like_python(argv: list[str]) -> bool:
    text = " ".join(argv)
    return "ray.scripts" in text or re.search(r"(^| )-m ray( |$)", text) is not None or "ray start" in text


def check_case(c: dict, rg: dict, sandbox: Sandbox, start, defaults, ports) -> dict:
    res = {"id": c["id"], "role": c["role"], "refused": rg.get("refused"), "problems": [], "notes": [],
           "kind": None}
    problems = res["problems"]
    # 1. KubeRay
    try:
        pod = kuberay_pod(c)
    except ModelError as e:
        res["notes"].append(f"not modelled: {e}")
        res["kind"] = "skipped"
        return res
    res["kuberay_argv"] = pod["argv"]
    if not rg.get("refused"):
        script = shell_script(pod["argv"])
        if rg.get("script") is not None and rg.get("script") != script:
            problems.append(("kuberay", f"script: raygate {rg.get('script')!r} != the string bash -c runs {script!r}"))
        if rg.get("argv") != pod["argv"]:
            problems.append(("kuberay", f"argv: raygate {json.dumps(rg.get('argv'))} != KubeRay v1.5.0 {json.dumps(pod['argv'])}"))
        for name, val in (rg.get("env") or {}).items():
            want = [v for n, v in pod["env"] if n == name]
            if name == "KUBERAY_GEN_RAY_START_CMD" and val != pod["gen_cmd"]:
                problems.append(("kuberay", f"env {name}: raygate {val!r} != KubeRay {pod['gen_cmd']!r}"))
            elif want and name != "KUBERAY_GEN_RAY_START_CMD" and not isinstance(want[-1], tuple) and val != want[-1]:
                problems.append(("kuberay", f"env {name}: raygate {val!r} != KubeRay {want[-1]!r}"))
    # 2. bash (kubelet first)
    env = kubelet_env(pod["env"], pod["pod_name"])
    for name, val in (rg.get("env") or {}).items():  # what raygate adds that the model does not
        if name not in env and isinstance(val, str):
            env[name] = val
            res["notes"].append(f"env {name} from raygate only")
    argv = [kubelet_expand(w, env.get) for w in pod["argv"]]
    res["exec_argv"] = argv
    runs = {code: sandbox.run(argv, env, code, pod["pod_name"]) for code in (0, 1)}
    res["runs"] = {code: {k: r[k] for k in ("rc", "timeout", "exec_error", "ray", "python")} for code, r in runs.items()}
    res["stderr"] = runs[0]["stderr"]
    words = None
    run_ok = {}
    for code, r in runs.items():
        when = "" if code == 0 else " (when `ray` exits 1)"
        calls, py = r["ray"], [a for a in r["python"] if ray_like_python(a)]
        bad = None
        if len(calls) != 1 or py:
            bad = (f"bash ran {len(calls)} `ray` invocation(s){when}: "
                   + "; ".join("ray " + " ".join(a) for a in calls)
                   + ("; python " + "; python ".join(" ".join(a) for a in py) if py else "")
                   + (f" [exec error: {r['exec_error']}]" if r["exec_error"] else "")
                   + (" [timed out]" if r["timeout"] else ""))
        elif not calls[0] or calls[0][0] != "start":
            bad = f"bash's only `ray` invocation{when} is `ray {' '.join(calls[0])}`, not `ray start`"
        elif code == 0:
            words = calls[0][1:]
        elif words is not None and calls[0][1:] != words:
            bad = f"`ray start` words differ{when}: {calls[0][1:]} vs {words}"
        run_ok[code] = bad
    res["bash_words"] = words
    parsed, err = (click_parse(start, words) if words is not None else (None, None))
    res["click_params"], res["click_error"] = parsed, err
    ray_runs = words is not None and run_ok[0] is None and run_ok[1] is None and err is None
    res["would_start"] = ray_runs
    res["plan_violations"] = plan_violations(c["role"], parsed) if ray_runs else None
    if rg.get("refused"):
        res["kind"] = "refused"
        return res
    res["kind"] = "accepted"
    for code in (0, 1):
        if run_ok[code]:
            problems.append(("bash", run_ok[code]))
    if words is not None:
        if rg.get("start") != words:
            problems.append(("bash", f"words after `ray start`: raygate {json.dumps(rg.get('start'))} != bash {json.dumps(words)}"))
        if err:
            problems.append(("click", f"click refuses bash's words: {err}"))
        elif rg.get("options") is None:
            problems.append(("click", "raygate accepted but gives no options"))
        else:
            for d in compare_options(rg["options"], parsed, defaults, ports):
                problems.append(("click", d))
    return res


# --- raygate ----------------------------------------------------------------------------------------


def run_raygate(raygate: str, cases: list[dict]) -> dict[str, dict]:
    payload = "".join(json.dumps(ray_cli_cases.raygate_input(c), ensure_ascii=False) + "\n" for c in cases)
    # raygate reads the commands by the `ray start` of the Ray under test, as it judges a group
    # by the Ray its image runs.
    proc = subprocess.run([raygate, "ray-start", "--ray-version", _ray_version()], input=payload.encode(),
                          capture_output=True, timeout=600)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace")[-4000:])
        raise SystemExit(f"raygate ray-start exited {proc.returncode}")
    out: dict[str, dict] = {}
    lines = proc.stdout.decode().splitlines()
    if len(lines) != len(cases):
        raise SystemExit(f"raygate ray-start wrote {len(lines)} lines for {len(cases)} cases")
    for c, line in zip(cases, lines):
        obj = json.loads(line)
        if obj.get("id") != c["id"]:
            raise SystemExit(f"raygate ray-start answered {obj.get('id')!r} where {c['id']!r} was expected")
        out[c["id"]] = obj
    return out


# --- report -------------------------------------------------------------------------------------------


def _short(x, n=400) -> str:
    s = x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)
    return s if len(s) <= n else s[: n - 3] + "..."


def _port_view(params: dict | None, ports: list[str], opts_are_raygate=False) -> str:
    if params is None:
        return "null"
    if opts_are_raygate:
        return _short({k: v for k, v in params.items() if k.replace("-", "_") in ports} or {})
    return _short({k: v for k, v in params.items() if k in ports and v is not None})


def write_report(path: Path, cases, results, raygate_out, ports, elapsed, raygate_path) -> None:
    by_id = {c["id"]: c for c in cases}
    acc = [r for r in results if r["kind"] == "accepted"]
    ref = [r for r in results if r["kind"] == "refused"]
    skipped = [r for r in results if r["kind"] == "skipped"]
    bad = [r for r in results if r["problems"]]
    ref_start = [r for r in ref if r["would_start"]]
    ref_plan = [r for r in ref_start if not r["plan_violations"]]
    acc_plan_bad = [r for r in acc if r["would_start"] and r["plan_violations"]]
    L = [
        "# `ray start` oracle: raygate vs KubeRay v1.5.0, bash and Ray's click",
        "",
        f"raygate: `{raygate_path}`; Ray {_ray_version()}; {len(cases)} cases in {elapsed:.0f} s.",
        "",
        "| | count |", "|---|---|",
        f"| cases | {len(cases)} |",
        f"| accepted by raygate | {len(acc)} |",
        f"| refused by raygate | {len(ref)} |",
        f"| not modelled (invalid objects) | {len(skipped)} |",
        f"| **disagreements** | **{len(bad)}** |",
        f"| refused, bash+click would have started Ray | {len(ref_start)} |",
        f"| refused, bash+click would have run Ray on plan ports | {len(ref_plan)} |",
        f"| accepted, Ray starts, off the plan (for the ports rule, not a disagreement) | {len(acc_plan_bad)} |",
        "",
        "Sources: " + ", ".join(f"{k} {v}" for k, v in _sources(cases).items()) + ".",
        "",
    ]
    kinds = {"kuberay": "its KubeRay reading", "bash": "its bash reading", "click": "its click reading"}
    sym: dict[str, list[str]] = {}
    for r in bad:
        for k, msg in r["problems"]:
            ids = sym.setdefault(symptom(k, msg), [])
            if r["id"] not in ids:
                ids.append(r["id"])
    if sym:
        L += ["## Disagreements by symptom", "", "| symptom | cases | e.g. |", "|---|---|---|"]
        for key, ids in sorted(sym.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            L.append(f"| {key.replace('|', '/')} | {len(ids)} | `{ids[0]}` |")
        L.append("")
    L += ["## Disagreements", ""]
    if not bad:
        L += ["None.", ""]
    for r in bad:
        c, rg = by_id[r["id"]], raygate_out[r["id"]]
        side = sorted({kinds[k] for k, _ in r["problems"]})
        L += [f"### `{r['id']}` ({r['role']}): {', '.join(side)}", ""]
        L += _case_lines(c)
        for k, msg in r["problems"]:
            L.append(f"- **{k}**: {_short(msg, 700)}")
        L += [
            f"- raygate start: `{_short(rg.get('start'))}`",
            f"- raygate ports: `{_port_view(rg.get('options'), ports, True)}`",
            f"- bash words: `{_short(r.get('bash_words'))}`",
            f"- click: `{_short(r['click_error'] or _port_view(r['click_params'], ports))}`",
        ]
        if r.get("stderr", "").strip():
            L.append(f"- stderr: `{_short(r['stderr'].strip(), 300)}`")
        L.append("")
    L += ["## Refused, but bash+click would have run Ray on the plan's ports", "",
          "Not failures: raygate may refuse what it cannot read exactly. Listed so that refusals can be "
          "seen not to hide plan-compliant commands needlessly.", ""]
    for r in ref_plan:
        L.append(f"- `{r['id']}`: {_short(r['refused'], 300)}")
    L += ["", "## Refused, and Ray would have started off the plan", ""]
    for r in ref_start:
        if r["plan_violations"]:
            L.append(f"- `{r['id']}`: {_short('; '.join(r['plan_violations']), 200)}")
    L += ["", "## Notes", ""]
    for r in results:
        for n in r["notes"]:
            L.append(f"- `{r['id']}`: {n}")
    L += ["", "## Method", "", (__doc__ or "").strip().split("\n\n    python")[0], ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L) + "\n")


def symptom(kind: str, msg: str) -> str:
    if kind == "click":
        m = re.match(r"(--[\w-]+): raygate (does not list it|lists)", msg)
        if m:
            return f"click: {m.group(1)} {'missing from' if m.group(2) != 'lists' else 'unknown to'} raygate's options"
        m = re.match(r"(--[\w-]+): raygate ", msg)
        if m:
            return f"click: {m.group(1)} has another value in raygate's options"
        return "click: " + msg.split(":")[0]
    if kind == "kuberay":
        return "kuberay: " + msg.split(":")[0]
    if msg.startswith("bash ran"):
        return "bash: not exactly one `ray` invocation" + (" (when `ray` exits 1)" if "exits 1" in msg else "")
    return "bash: " + msg.split(":")[0]


def _case_lines(c) -> list[str]:
    g = c["group"]
    cont = ((g.get("template") or {}).get("spec") or {}).get("containers", [{}])[0]
    out = [f"- rayStartParams: `{_short(g.get('rayStartParams'), 300)}`"]
    if cont.get("command") is not None or cont.get("args") is not None:
        out.append(f"- command/args: `{_short(cont.get('command'))}` / `{_short(cont.get('args'))}`")
    if c.get("annotations", {}).get(OVERWRITE) is not None:
        out.append(f"- {OVERWRITE}: `{c['annotations'][OVERWRITE]}`")
    return out


def _sources(cases):
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["id"].split("/")[0]] = counts.get(c["id"].split("/")[0], 0) + 1
    return counts


def _ray_version():
    from importlib.metadata import version

    return version("ray")


# --- main -------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raygate", default=str(ROOT / "target" / "debug" / "raygate"))
    ap.add_argument("--report", default=str(ROOT / ".cache" / "runtime" / "ray-cli-oracle.md"))
    ap.add_argument("--only", action="append", help="only cases whose id starts with this (repeatable)")
    ap.add_argument("--json", help="also write every result as JSON lines here")
    ap.add_argument("-q", "--quiet", action="store_true", help="one line per disagreement, then the summary")
    opts = ap.parse_args()

    started = time.monotonic()
    cases = ray_cli_cases.all_cases()
    if opts.only:
        cases = [c for c in cases if any(c["id"].startswith(p) for p in opts.only)]
    start, defaults = load_click()
    ports = port_params(defaults)
    raygate_out = run_raygate(opts.raygate, cases)
    results = []
    with tempfile.TemporaryDirectory(prefix="ray-cli-oracle.") as tmp:
        sandbox = Sandbox(Path(tmp))
        for c in cases:
            results.append(check_case(c, raygate_out[c["id"]], sandbox, start, defaults, ports))
    elapsed = time.monotonic() - started
    report = Path(opts.report)
    write_report(report, cases, results, raygate_out, ports, elapsed, opts.raygate)
    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as f:
            for r in results:
                f.write(json.dumps({**r, "raygate": raygate_out[r["id"]]}, ensure_ascii=False, default=str) + "\n")

    acc = sum(r["kind"] == "accepted" for r in results)
    ref = [r for r in results if r["kind"] == "refused"]
    bad = [r for r in results if r["problems"]]
    ref_start = sum(bool(r["would_start"]) for r in ref)
    ref_plan = sum(bool(r["would_start"]) and not r["plan_violations"] for r in ref)
    if opts.quiet:
        for r in bad:
            k, msg = r["problems"][0]
            print(f"DISAGREE {r['id']}: {k}: {_short(msg, 300)}")
    else:
        for r in bad:
            rg = raygate_out[r["id"]]
            print(f"DISAGREE {r['id']} ({r['role']})")
            for k, msg in r["problems"]:
                print(f"  {k}: {_short(msg, 500)}")
            print(f"  raygate start: {_short(rg.get('start'))}")
            print(f"  raygate ports: {_port_view(rg.get('options'), ports, True)}")
            print(f"  bash words:    {_short(r.get('bash_words'))}")
            print(f"  click:         {_short(r['click_error'] or _port_view(r['click_params'], ports))}")
    print(
        f"ray-cli-oracle: {len(cases)} cases, {acc} accepted, {len(ref)} refused, "
        f"{len(bad)} disagreement(s); refused but bash+click would have started Ray: {ref_start}, "
        f"on plan ports: {ref_plan} (information); {elapsed:.0f} s; report {report}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
