"""The case corpus for ray_cli_oracle.py: Ray groups whose container command raygate reads.

Each case is what `raygate ray-start` reads on one stdin line (`id`, `role`, `group`,
`annotations`, and the cluster around the group: the RayCluster's name `cluster`, its
`namespace`, the `head` group spec for a worker, `autoscaling`) plus `ctx`, which only the
oracle uses (never sent to raygate): the CR kind and what the oracle's KubeRay model derives on
its own from the cluster (the head Service's name and the head's port, which KubeRay puts in a
worker's generated `--address` and `RAY_PORT`; whether the autoscaler is on).

Four sources, all deterministic:
- every head and worker group of every KubeRay sample (tests/fixtures/kuberay/samples, also
  extra/; RayCluster spec, RayJob spec.rayClusterSpec, RayService spec.rayClusterConfig, RayCronJob
  spec.jobTemplate.rayClusterSpec), as written and with the plan's rayStartParams added;
- adversarial rayStartParams keys and values;
- users' own commands (container command/args), with and without
  `ray.io/overwrite-container-cmd: "true"`;
- seeded random combinations of the above building blocks.

    python ray_cli_cases.py                 # counts per source
    python ray_cli_cases.py --dump FILE     # every case, one JSON line each ('-' for stdout)
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "fixtures" / "kuberay" / "samples"
OVERWRITE = "ray.io/overwrite-container-cmd"
SEED = 20260817
RANDOM_CASES = 300

# raygate's plan (policies/ray-platform.yaml) as rayStartParams.
PLAN_HEAD_ONLY = {"port": "6380", "ray-client-server-port": "10002", "dashboard-port": "8266"}
PLAN_EVERY_NODE = {
    "metrics-export-port": "8081",
    "object-manager-port": "8301",
    "node-manager-port": "8401",
    "runtime-env-agent-port": "8501",
    "dashboard-agent-grpc-port": "8601",
    "dashboard-agent-listen-port": "52365",
    "min-worker-port": "10003",
    "max-worker-port": "19999",
}


def plan_params(role: str) -> dict[str, str]:
    return {**(PLAN_HEAD_ONLY if role == "head" else {}), **PLAN_EVERY_NODE}


def plan_flags(role: str) -> str:
    """The plan as `ray start` flags, for hand-written commands."""
    return " ".join(f"--{k}={v}" for k, v in plan_params(role).items())


# --- KubeRay samples ------------------------------------------------------------------------------


def _cluster_specs(doc: dict) -> list[tuple[str, dict]]:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "RayCluster":
        found = spec
    elif kind == "RayJob":
        found = spec.get("rayClusterSpec")
    elif kind == "RayService":
        found = spec.get("rayClusterConfig")
    elif kind == "RayCronJob":
        found = (spec.get("jobTemplate") or {}).get("rayClusterSpec")
    else:
        return []
    return [(kind, found)] if isinstance(found, dict) and found.get("headGroupSpec") else []


def _ctx(kind: str, doc: dict, spec: dict, head_port: str) -> dict:
    name = (doc.get("metadata") or {}).get("name") or "raycluster"
    # A RayJob/RayService names its RayCluster itself (`<name>-<5 random>`; here `<name>-rc`);
    # KubeRay then uses the RayCluster naming rule for the head Service's FQDN
    # (utils.GenerateFQDNServiceName, which passes RayClusterCRD whatever the creator): the
    # headGroupSpec.headService's name when set, for every kind, since the RayJob/RayService
    # copies its rayClusterSpec into the RayCluster.
    cluster = name if kind == "RayCluster" else f"{name}-rc"
    svc = f"{cluster}-head-svc"
    head_service = (spec.get("headGroupSpec") or {}).get("headService") or {}
    if (head_service.get("metadata") or {}).get("name"):
        svc = head_service["metadata"]["name"]
    return {
        "crd": "RayJob" if kind == "RayCronJob" else kind,
        "cluster": cluster,
        "namespace": (doc.get("metadata") or {}).get("namespace") or "default",
        "head_svc": svc,
        "head_port": head_port,
        "autoscaling": spec.get("enableInTreeAutoscaling") is True,
    }


def sample_cases() -> list[dict]:
    cases = []
    for path in sorted(SAMPLES.rglob("*.yaml")):
        rel = path.relative_to(SAMPLES).as_posix()
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # the benchmark files are clusterloader2 templates ({{ }}), not YAML
        for di, doc in enumerate(docs):
            if not isinstance(doc, dict):
                continue
            for kind, spec in _cluster_specs(doc):
                annotations = (doc.get("metadata") or {}).get("annotations") or {}
                groups = [("head", "head", spec["headGroupSpec"])]
                for wi, w in enumerate(spec.get("workerGroupSpecs") or []):
                    groups.append(("worker", f"worker:{w.get('groupName') or wi}", w))
                head_params = spec["headGroupSpec"].get("rayStartParams") or {}
                for variant in ("as-written", "plan"):
                    head_port = head_params.get("port", "6379")
                    if variant == "plan":
                        head_port = "6380"
                    ctx = _ctx(kind, doc, spec, str(head_port))
                    variant_groups = []
                    for role, label, g in groups:
                        group = copy.deepcopy(g)
                        if variant == "plan":
                            group["rayStartParams"] = {
                                **(group.get("rayStartParams") or {}),
                                **plan_params(role),
                            }
                        variant_groups.append((role, label, group))
                    head_group = variant_groups[0][2]
                    for role, label, group in variant_groups:
                        cases.append(
                            {
                                "id": f"sample/{rel}#{di}/{label}/{variant}",
                                "role": role,
                                "group": group,
                                "annotations": copy.deepcopy(annotations),
                                "cluster": ctx["cluster"],
                                "namespace": ctx["namespace"],
                                "autoscaling": ctx["autoscaling"],
                                **({"head": copy.deepcopy(head_group)} if role == "worker" else {}),
                                "ctx": {**ctx, "source": "sample"},
                            }
                        )
    return cases


# --- building blocks --------------------------------------------------------------------------


def base_group(role: str, params: dict | None = None, *, command=None, args=None, env=None,
               template_annotations=None, resources=True) -> dict:
    container: dict = {"name": f"ray-{role}", "image": "rayproject/ray:2.60.0"}
    if resources:
        container["resources"] = {
            "limits": {"cpu": "1", "memory": "2Gi"},
            "requests": {"cpu": "500m", "memory": "1Gi"},
        }
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    if env:
        container["env"] = env
    template: dict = {"spec": {"containers": [container]}}
    if template_annotations:
        template["metadata"] = {"annotations": template_annotations}
    group: dict = {
        "rayStartParams": plan_params(role) if params is None else params,
        "template": template,
    }
    if role == "worker":
        group.update({"groupName": "workers", "replicas": 1, "minReplicas": 1, "maxReplicas": 2})
    return group


def synthetic_ctx(source: str, head_svc="oracle-head-svc", head_port="6380", namespace="default",
                  autoscaling=False) -> dict:
    return {
        "crd": "RayCluster",
        "cluster": "oracle",
        "namespace": namespace,
        "head_svc": head_svc,
        "head_port": head_port,
        "autoscaling": autoscaling,
        "source": source,
    }


def case(cid: str, role: str, group: dict, annotations: dict | None = None, source="", *,
         head: dict | None = None, namespace="default", autoscaling=False) -> dict:
    """A synthetic case in RayCluster `oracle`, whose head (by default the plan's head group,
    port 6380) a worker's generated --address names."""
    if head is None:
        head = base_group("head")
    head_params = head.get("rayStartParams") or {}
    svc = ((head.get("headService") or {}).get("metadata") or {}).get("name") or "oracle-head-svc"
    ctx = synthetic_ctx(source or cid.split("/")[0], head_svc=svc,
                        head_port=str(head_params.get("port", "6379")), namespace=namespace,
                        autoscaling=autoscaling)
    out = {
        "id": cid,
        "role": role,
        "group": group,
        "annotations": annotations or {},
        "cluster": ctx["cluster"],
        "namespace": namespace,
        "autoscaling": autoscaling,
        "ctx": ctx,
    }
    if role == "worker":
        out["head"] = head
    return out


# Values for rayStartParams["port"] (and a few other ports) that a careless reader gets wrong.
PORT_VALUES = [
    " 6380", "6380 ", "+6380", "06380", "6_380", "６３８０", "6380;", "$(echo 6379)",
    "`echo 6379`", "'6379'", "\"6379\"", "true", "True", "false", "FALSE", "6380\n--port=6379",
    "6380\nray start --head --port=6379", "6380\t", "\t6380", "", "0x18EC", "-6380", "65536",
    "6380.0", "1e3", "6380 --port=6379", "6380 ; ray start --head --port=6379", "6380 && true",
    "6380 | cat", "6380 >/dev/null", "6380 &", "6380)", "6380'", "6380\\", "6380 #--port=6379",
    "${RAY_PORT}", "$RAY_PORT", "$(RAY_PORT)", "$$(RAY_PORT)", "$(OTHER_PORT)", "6380 $EXTRA",
    "6380\u00a0", "6380\r", "[6]380", "638?", "6380*", "{6380,6379}", "~", "6380\x0b",
]

# (key, value) pairs beside the plan.
PARAM_PAIRS = [
    ("temp-dir", "/tmp/ray --port=6379"),
    ("temp-dir", "/tmp/ray\t--port=6379"),
    ("temp-dir", "/tmp/ray\n--port=6379"),
    ("temp-dir", "/tmp/ray*"),
    ("temp-dir", "/tm?/ray"),
    ("temp-dir", "/tmp/[r]ay"),
    ("temp-dir", "'/tmp/ray --port=6379'"),
    ("temp-dir", "\"/tmp/ray --port=6379\""),
    ("temp-dir", "/tmp/ray\\ --port=6379"),
    ("port --x", "1"),
    ("port=6379 --y", "1"),
    ("port=6379", "true"),
    ("port 6379", "true"),
    ("port", "6380 --port=6379"),
    ("dashboard-grpc-port", "8600"),
    ("Port", "6379"),
    ("--port", "6379"),
    ("port ", "6379"),
    ("p", "6379"),
    ("resources", '"{\\"CPU\\": 2}"'),
    ("resources", '{"CPU": 2}'),
    ("resources", "'{\"CPU\": 2}'"),
    ("resources", "'{\"CPU\":2}'"),
    ("resources", '{"CPU":2}'),
    ("labels", "a=b,c=d"),
    ("labels", "a=b c=d"),
    ("labels", "a=*"),
    ("labels", "a=$(echo x)"),
    ("num-cpus", "1 --port=6379"),
    ("dashboard-host", "0.0.0.0 --dashboard-port=8265"),
    ("metrics-export-port", "8081 --metrics-export-port=8080"),
    ("head", "true"),
    ("head", "false"),
    ("block", "false"),
    ("block", "False"),
    ("include-dashboard", "false"),
    ("include-dashboard", "true"),
    ("include-log-monitor", "false"),
    ("log-color", "true"),
    ("verbose", "true"),
    ("v", "true"),
    ("address", "oracle-head-svc:6379"),
    ("worker-port-list", "10003,10004"),
    ("redis-shard-ports", "6379"),
    ("system-config", '{"object_spilling_threshold":0.9}'),
    ("node-ip-address", "$(hostname -i)"),
    ("object-manager-port", " 8301"),
    ("node-manager-port", "+8401"),
    ("min-worker-port", "010003"),
    ("dashboard-agent-listen-port", "52365 --dashboard-agent-listen-port=52366"),
    ("ray-client-server-port", "10002\\"),
    ("runtime-env-agent-port", "8501#"),
    ("no-monitor", "true"),
    ("disable-usage-stats", "TRUE"),
    ("object-store-memory", "1_000_000_000"),
]


def param_cases() -> list[dict]:
    cases = []
    other_port_env = [{"name": "OTHER_PORT", "value": "6379"}, {"name": "EXTRA", "value": "--port=6379"}]
    for i, value in enumerate(PORT_VALUES):
        for role in ("head", "worker"):
            params = {**plan_params(role), "port": value}
            cases.append(case(f"param/port/{i:02d}/{role}", role, base_group(role, params, env=other_port_env)))
    for i, (key, value) in enumerate(PARAM_PAIRS):
        for role in ("head", "worker"):
            params = {**plan_params(role), key: value}
            cases.append(case(f"param/pair/{i:02d}/{role}", role, base_group(role, params)))
    # The plan alone, without the plan, and with a group-level resources/labels map.
    for role in ("head", "worker"):
        cases.append(case(f"param/plan-only/{role}", role, base_group(role)))
        cases.append(case(f"param/empty/{role}", role, base_group(role, {})))
        cases.append(case(f"param/no-resources/{role}", role, base_group(role, {}, resources=False)))
        g = base_group(role)
        g["resources"] = {"CPU": "2", "memory": "1Gi", "GPU": "1", "custom": "500m"}
        g["labels"] = {"zone": "a", "ray.io/market-type": "spot"}
        cases.append(case(f"param/group-resources-labels/{role}", role, g))
        g = base_group(role)
        g["template"]["spec"]["containers"][0]["resources"] = {
            "limits": {"cpu": "1500m", "memory": "1.5Gi", "nvidia.com/gpu": "2", "google.com/tpu": "4"}
        }
        cases.append(case(f"param/limits-accelerators/{role}", role, g))
        g = base_group(role, {**plan_params(role), "resources": "not json"})
        g["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
        cases.append(case(f"param/limits-bad-resources/{role}", role, g))
        # Quantities KubeRay rounds (Value() up) and approximates (AsApproximateFloat64, written
        # by encoding/json), a MIG slice, a Neuron core before a TPU, requests only.
        g = base_group(role)
        g["resources"] = {"CPU": "1500m", "Memory": "1.5Gi", "custom": "0.3", "tiny": "1.5e-5",
                          "huge": "1e21", "milli": "0.3m", "a<b&c": "2"}
        cases.append(case(f"param/group-resources-rounding/{role}", role, g))
        g = base_group(role)
        g["template"]["spec"]["containers"][0]["resources"] = {
            "limits": {"cpu": "2500m", "memory": "3Gi", "nvidia.com/mig-1g.5gb": "1",
                       "aws.amazon.com/neuroncore": "2", "google.com/tpu": "4"}
        }
        cases.append(case(f"param/limits-mig-neuron/{role}", role, g))
        g = base_group(role, {**plan_params(role), "resources": "'{\"CPU\": 2, \"x\": null}'"})
        g["template"]["spec"]["containers"][0]["resources"] = {
            "limits": {"google.com/tpu": "0.3"}, "requests": {"cpu": "250m", "memory": "4Gi"}
        }
        cases.append(case(f"param/requests-only-tpu/{role}", role, g))
        g = base_group(role, {**plan_params(role), "num-cpus": "8", "labels": "x=y", "block": "false"})
        g["resources"] = {"cpu": "2"}
        g["labels"] = {"b": "2", "a": "1"}
        cases.append(case(f"param/group-overrides/{role}", role, g))
    # The head's port and Service name in a worker's --address, another namespace; the
    # autoscaler's --no-monitor, forced even over "false".
    custom_head = base_group("head", {**plan_params("head"), "port": "6390"})
    custom_head["headService"] = {"metadata": {"name": "custom-head"}}
    cases.append(case("param/head-service/worker", "worker", base_group("worker"), head=custom_head,
                      namespace="team-a"))
    cases.append(case("param/head-default-port/worker", "worker", base_group("worker"),
                      head=base_group("head", {})))
    cases.append(case("param/autoscaling/head", "head",
                      base_group("head", {**plan_params("head"), "no-monitor": "false"}),
                      autoscaling=True))
    return cases


# --- users' own commands ------------------------------------------------------------------------

HP = plan_flags("head")
WP = plan_flags("worker")


def user_scripts(role: str) -> list[str]:
    head = "--head " if role == "head" else "--address=oracle-head-svc:6380 "
    p = HP if role == "head" else WP
    rs = f"ray start {head}{p}"
    return [
        f"{rs} --block",
        f"{rs} --port=6380 --port=6379 --block",
        f"ray  start {head}{p} --block",
        f"ray stop; {rs} --port=6379 --block",
        f"python -m ray.scripts.scripts start {head}{p} --port=6379 --block",
        f'RAY_CMD="{rs} --port=6379"; $RAY_CMD --block',
        f"# do not run $KUBERAY_GEN_RAY_START_CMD here\n{rs} --block",
        "ulimit -n 65536; echo head; $KUBERAY_GEN_RAY_START_CMD",
        "ulimit -n 65536; $KUBERAY_GEN_RAY_START_CMD",
        "$KUBERAY_GEN_RAY_START_CMD",
        f"exec {rs} --block",
        f"ray start {head}{p} --port 6379 --block",
        f"ray start {head}{p} --port=6380 -- --x",
        f"{rs} -vv --block",
        f"{rs} -v --verbose -v --block",
        f"ray start --head=true {p} --block",
        f"\"ray\" 'start' {head}\"--port=6380\" {p} --block",
        f"ray start {head}\\\n  {p} \\\n  --block",
        f"true && {rs} --block",
        f"false || {rs} --block",
        f"false && ray start --port=6379; {rs} --block",
        f"echo x | {rs} --block",
        f"{rs} --block &\nwait",
        f"({rs} --block)",
        f"{{ {rs} --block; }}",
        f"bash -c \"{rs} --block\"",
        f"bash -c '{rs} --port=6379 --block'",
        f"sh -c '{rs} --block'",
        f"eval \"{rs} --port=6379 --block\"",
        'eval "$KUBERAY_GEN_RAY_START_CMD"',
        "eval $KUBERAY_GEN_RAY_START_CMD",
        f"ray() {{ command ray start {head}--port=6379; }}; {rs} --block",
        f"ray() {{ echo not ray; }}; {rs} --block",
        f"alias ray='echo'; {rs} --block",
        f"shopt -s expand_aliases\nalias ray='ray start --port=6379 #'\n{rs} --block",
        f"{rs} --block > ray.log 2>&1",
        f"{rs} --block 2>/dev/null </dev/null",
        f"cat <<EOF\n--port=6379\nEOF\n{rs} --block",
        f"{rs} $(cat <<EOF\n--port=6379\nEOF\n) --block",
        f"cat <<'EOF' | bash\n{rs} --port=6379 --block\nEOF",
        "$KUBERAY_GEN_RAY_START_CMD --port=6379",
        "$KUBERAY_GEN_RAY_START_CMD --temp-dir=/tmp/x",
        '"$KUBERAY_GEN_RAY_START_CMD"',
        "${KUBERAY_GEN_RAY_START_CMD}",
        "${KUBERAY_GEN_RAY_START_CMD/6380/6379}",
        "${KUBERAY_GEN_RAY_START_CMD%--block}",
        'exec /bin/bash -c "$KUBERAY_GEN_RAY_START_CMD"',
        "set -e; $KUBERAY_GEN_RAY_START_CMD",
        "IFS=,; $KUBERAY_GEN_RAY_START_CMD",
        "set -f; $KUBERAY_GEN_RAY_START_CMD",
        "$KUBERAY_GEN_RAY_START_CMD || ray start --head --port=6379",
        "$KUBERAY_GEN_RAY_START_CMD; ray start --head --port=6379",
        "$KUBERAY_GEN_RAY_START_CMD && sleep infinity",
        f"{rs} --block || {rs} --port=6379 --block",
        f"{rs} --port=$RAY_PORT --block",
        f"{rs} --port=$(RAY_PORT) --block",
        f"{rs} --port=$$(RAY_PORT) --block",
        f"{rs} --port=${{P:-6379}} --block",
        f"{rs} $EXTRA --block",
        f"{rs} $(echo --port=6379) --block",
        f"{rs} --block --port",
        f"{rs} --block --no-such-option",
        f"{rs} --block --por=6379",
        f"{rs} --block extra-arg",
        f"{rs} --block --port=",
        f"{rs} --block --temp-dir='/tmp/ray --port=6379'",
        f"{rs} --block --port=\"6380\"",
        f"{rs} --block --port=6\"38\"0",
        f"{rs} --block --port=63\\80",
        f"{rs} --block --head",
        f"{rs} --block --help",
        f"{rs} --block -h",
        f"{rs} #--port=6379",
        f"{rs} --block; {rs} --port=6379 --block",
        f"if false; then ray start --port=6379; fi; {rs} --block",
        f"for i in 1; do {rs} --block; done",
        f"for i in 1 2; do {rs} --block; done",
        f"while false; do ray start --port=6379; done; {rs} --block",
        f"case x in x) {rs} --block;; esac",
        f"ray start\t{head}{p} --block",
        f"ray start {head}{p} --block\nray status",
        f"ray --logging-level=info start {head}{p} --block",
        f"/usr/bin/env ray start {head}{p} --block",
        f"command ray start {head}{p} --block",
        f"exec -a ray ray start {head}{p} --block",
        f"X=1 ray start {head}{p} --block",
        f"echo ray start --port=6379; {rs} --block",
        f"echo 'ray start --port=6379' > /dev/null; {rs} --block",
        f": ray start --port=6379; {rs} --block",
        f"export RAY_START_EXTRA=--port=6379; {rs} $RAY_START_EXTRA --block",
        f"source /dev/null; {rs} --block",
        f"trap 'ray start --port=6379' EXIT; {rs} --block",
        f"{rs} --block; exit 0; ray start --port=6379",
        f"set -- --port=6379; {rs} \"$@\" --block",
        f"ray start {head}{p} --block --dashboard-port=8266 --port=6380",
        f"ray start {head}{p} --block --system-config='{{\"a\": 1}}'",
        f"ray start {head}{p} --block --resources='{{\"CPU\": 2}}'",
        f"ray start {head}{p} --block --resources={{\"CPU\":2}}",
    ]


def command_cases() -> list[dict]:
    cases = []
    for role in ("head", "worker"):
        for i, script in enumerate(user_scripts(role)):
            for shell, mode in (
                (["/bin/bash", "-c", "--"], "plain"),
                (["/bin/bash", "-c", "--"], "overwrite"),
                (["/bin/bash", "-lc", "--"], "overwrite"),
                (["/bin/sh", "-c"], "overwrite"),
            ):
                if shell[0] != "/bin/bash" or shell[1] != "-c":
                    if i % 4:  # a quarter of the scripts under -lc and sh as well
                        continue
                annotations = {OVERWRITE: "true"} if mode == "overwrite" else {}
                env = [
                    {"name": "EXTRA", "value": "--port=6379"},
                    {"name": "P_FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ]
                g = base_group(role, command=shell, args=[script], env=env)
                tag = "bash" if shell[1] == "-c" and shell[0] == "/bin/bash" else shell[0].rsplit("/", 1)[1] + shell[1]
                cases.append(case(f"cmd/{role}/{i:03d}/{tag}/{mode}", role, g, annotations))
        # Shapes of command/args, and where the annotation sits.
        h = "--head" if role == "head" else "--address=oracle-head-svc:6380"
        p = plan_params(role)
        flags = [f"--{k}={v}" for k, v in p.items()]
        shapes = [
            ("direct-ray", ["ray", "start", h, *flags, "--block"], None, {}),
            ("direct-ray-args", ["ray"], ["start", h, *flags, "--block"], {}),
            ("direct-ray-split", ["ray", "start"], [h, *flags, "--block"], {}),
            ("args-only-words", None, ["ray", "start", h, *flags, "--block"], {}),
            ("args-only-script", None, [f"ray start {h} {' '.join(flags)} --block"], {}),
            ("bash-c-inline", ["/bin/bash", "-c", f"ray start {h} {' '.join(flags)} --block"], None, {}),
            ("bash-c-positional", ["/bin/bash", "-c", f"ray start {h} {' '.join(flags)} \"$@\"", "--", "--port=6379"], None, {}),
            ("bash-lc-inline", ["bash", "-lc", f"ray start {h} {' '.join(flags)} --block"], None, {}),
            ("sh-c-inline", ["sh", "-c", f"ray start {h} {' '.join(flags)} --block"], None, {}),
            ("bash-c-echo", ["/bin/bash", "-c", "--"], ["echo hi"], {}),
            ("bash-c-no-dashdash", ["/bin/bash", "-c"], ["echo hi"], {}),
            ("echo-command", ["echo 123"], ["456"], {}),
            ("sleep-command", ["sleep", "1"], None, {}),
            ("empty-args", None, [""], {}),
            ("python-command", ["python", "-c", "print(1)"], None, {}),
            ("overwrite-no-command", None, None, {OVERWRITE: "true"}),
            ("overwrite-TRUE", ["/bin/bash", "-c", "--"], ["$KUBERAY_GEN_RAY_START_CMD --port=6379"], {OVERWRITE: "TRUE"}),
            ("overwrite-yes", ["/bin/bash", "-c", "--"], ["$KUBERAY_GEN_RAY_START_CMD --port=6379"], {OVERWRITE: "yes"}),
            ("overwrite-false", ["/bin/bash", "-c", "--"], ["$KUBERAY_GEN_RAY_START_CMD --port=6379"], {OVERWRITE: "false"}),
            ("overwrite-template", ["/bin/bash", "-c", "--"], ["$KUBERAY_GEN_RAY_START_CMD --port=6379"], "template"),
            ("overwrite-template-echo", ["/bin/bash", "-c", "--"], ["echo hi"], "template"),
        ]
        for name, command, args, annotations in shapes:
            tmpl = None
            if annotations == "template":
                tmpl, annotations = {OVERWRITE: "true"}, {}
            g = base_group(role, command=command, args=args, template_annotations=tmpl)
            cases.append(case(f"shape/{role}/{name}", role, g, annotations))
    return cases


# --- seeded random combinations -----------------------------------------------------------------


def random_cases(n: int = RANDOM_CASES, seed: int = SEED) -> list[dict]:
    rnd = random.Random(seed)
    prefixes = [
        "", "ulimit -n 65536; ", "echo start; ", "set -e; ", "set -eu\n", "export X=1; ",
        "# $KUBERAY_GEN_RAY_START_CMD --port=6379\n", "cd .; ", "true && ", "false || ",
        "ray stop; ", "sleep 1; ", "umask 022; ", "[ -n \"$RAY_PORT\" ] && ",
    ]
    suffixes = [
        "", " && sleep infinity", "; sleep infinity", " # --port=6379", "\n", " > ray.log 2>&1",
        " || ray start --head --port=6379", "; ray status", " &\nwait", " | cat",
    ]
    wrappers = [
        "{}", "{}", "{}", "exec {}", "({})", "{{ {}; }}", "eval \"{}\"", "bash -c '{}'",
        "if true; then {}; fi",
    ]
    extra_flags = [
        "", "", "", "--port=6379", "--port 6379", "--port=6380", "-v", "-vv", "--block",
        "--dashboard-port=8265", "--metrics-export-port=8080", "--temp-dir=/tmp/ray",
        "--ray-client-server-port=10001", "--min-worker-port=10002", "--worker-port-list=10003",
        "--object-manager-port 8301", "--no-monitor", "--port=", "--head", "--port=06380",
        "\"--port=6380\"", "'--port'=6380", "--port=$RAY_PORT", "--port=$(RAY_PORT)",
        "$EXTRA", "--labels=a=b", "--resources='{\"CPU\":1}'", "-- --x", "--include-dashboard=false",
    ]
    param_values = PORT_VALUES + ["6380"] * 20
    cases = []
    for i in range(n):
        role = rnd.choice(["head", "worker"])
        params = plan_params(role)
        if rnd.random() < 0.5:
            key = rnd.choice(["port", "dashboard-port", "metrics-export-port", "object-manager-port",
                              "min-worker-port", "temp-dir", "num-cpus"])
            params[key] = rnd.choice(param_values)
        if rnd.random() < 0.2:
            k, v = rnd.choice(PARAM_PAIRS)
            params[k] = v
        if rnd.random() < 0.15:
            params.pop(rnd.choice(sorted(params)))
        form = rnd.random()
        head = "--head" if role == "head" else "--address=oracle-head-svc:6380"
        if form < 0.35:
            core = "$KUBERAY_GEN_RAY_START_CMD"
        elif form < 0.45:
            core = rnd.choice(['"$KUBERAY_GEN_RAY_START_CMD"', "${KUBERAY_GEN_RAY_START_CMD}",
                               "eval $KUBERAY_GEN_RAY_START_CMD"])
        else:
            spaced = rnd.choice(["ray start", "ray start", "ray start", "ray  start", "\"ray\" start",
                                 "ray 'start'", "command ray start"])
            core = f"{spaced} {head} {plan_flags(role)}"
        flags = " ".join(f for f in (rnd.choice(extra_flags) for _ in range(rnd.randint(0, 3))) if f)
        if flags:
            core = f"{core} {flags}"
        wrapper = rnd.choice(wrappers)
        if "'" in core and "bash -c '" in wrapper:
            wrapper = "{}"
        if '"' in core and wrapper.startswith("eval \""):
            wrapper = "{}"
        script = rnd.choice(prefixes) + wrapper.format(core) + rnd.choice(suffixes)
        shape = rnd.random()
        if shape < 0.7:
            command, args = ["/bin/bash", "-c", "--"], [script]
        elif shape < 0.8:
            command, args = ["/bin/bash", "-lc"], [script]
        elif shape < 0.9:
            command, args = ["/bin/sh", "-c"], [script]
        else:
            command, args = None, [script]
        annotations = {OVERWRITE: "true"} if rnd.random() < 0.5 else {}
        env = [{"name": "EXTRA", "value": "--port=6379"}] if rnd.random() < 0.5 else None
        g = base_group(role, params, command=command, args=args, env=env)
        cases.append(case(f"rand/{i:03d}", role, g, annotations))
    return cases


def all_cases() -> list[dict]:
    cases = sample_cases() + param_cases() + command_cases() + random_cases()
    seen = set()
    for c in cases:
        assert c["id"] not in seen, c["id"]
        seen.add(c["id"])
    return cases


def raygate_input(c: dict) -> dict:
    """The line raygate reads: the case without the oracle's context."""
    return {k: c[k] for k in ("id", "role", "group", "annotations", "cluster", "namespace", "head",
                              "autoscaling") if k in c}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", metavar="FILE", help="write every case as a JSON line ('-': stdout)")
    opts = ap.parse_args()
    cases = all_cases()
    if opts.dump:
        out = sys.stdout if opts.dump == "-" else open(opts.dump, "w", encoding="utf-8")
        for c in cases:
            out.write(json.dumps(c, ensure_ascii=False, sort_keys=True) + "\n")
        if out is not sys.stdout:
            out.close()
    counts: dict[str, int] = {}
    for c in cases:
        src = c["id"].split("/")[0]
        counts[src] = counts.get(src, 0) + 1
    print(f"{len(cases)} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
