"""What kubelet would do with container 0 of a Pod the KubeRay operator created: the command line
(command + args with `$(VAR)` expanded), the environment (literal values, `valueFrom` and
`envFrom` resolved), and the emptyDir mounts. Nothing of the command is rewritten."""
from __future__ import annotations

import math
import re

SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(text: str) -> float:
    m = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", str(text).strip())
    if not m or m.group(2) not in SUFFIX:
        raise ValueError(f"not a quantity: {text!r}")
    return float(m.group(1)) * SUFFIX[m.group(2)]


def expand(text: str, env: dict) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, $$ is a literal $, anything else
    is left as written."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, text)


def field_ref(pod: dict, path: str, pod_ip: str, node_name: str) -> str:
    meta = pod["metadata"]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "spec.nodeName": node_name,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        # One network namespace per pod: there is no separate node address.
        "status.hostIP": pod_ip,
        "status.hostIPs": pod_ip,
    }
    if path not in simple:
        raise ValueError(f"fieldRef {path} is not supported")
    return simple[path]


def resource_ref(container: dict, ref: dict, allocatable: dict) -> str:
    kind, name = ref["resource"].split(".", 1)
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(name)
    if value is None:  # kubelet falls back to the node's allocatable
        value = allocatable[name]
    divisor = quantity(ref.get("divisor") or "1")
    return str(int(math.ceil(quantity(value) / divisor)))


def container_env(pod: dict, container: dict, pod_ip: str, node_name: str, allocatable: dict,
                  lookup) -> tuple[dict, list]:
    """The container's environment, in kubelet's order, and notes on stand-in values.
    `lookup(kind, namespace, name)` reads a ConfigMap or Secret's data."""
    env, notes = {}, []
    ns = pod["metadata"]["namespace"]
    for src in container.get("envFrom") or []:
        kind = "configmap" if "configMapRef" in src else "secret"
        ref = src.get("configMapRef") or src.get("secretRef")
        for k, v in lookup(kind, ns, ref["name"]).items():
            env[src.get("prefix", "") + k] = v
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e:
            env[name] = expand(e.get("value", ""), env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            path = vf["fieldRef"]["fieldPath"]
            env[name] = field_ref(pod, path, pod_ip, node_name)
            if path in ("spec.nodeName", "status.hostIP", "status.hostIPs"):
                notes.append(f"{name} from {path} is a stand-in: {env[name]}")
        elif "resourceFieldRef" in vf:
            env[name] = resource_ref(container, vf["resourceFieldRef"], allocatable)
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind = "configmap" if "configMapKeyRef" in vf else "secret"
            ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
            env[name] = lookup(kind, ns, ref["name"]).get(ref["key"], "")
        else:
            raise ValueError(f"env {name}: unsupported valueFrom {vf}")
    return env, notes


def command_line(container: dict, env: dict) -> list:
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    if not argv:
        raise ValueError("container has no command: the image's entrypoint cannot run here")
    return [expand(a, env) for a in argv]


def tmpfs_mounts(pod: dict, container: dict) -> list:
    """(mountPath, size) for the container's emptyDir volumes; any other volume is refused."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"], {})
        if "emptyDir" in vol:
            size = (vol["emptyDir"] or {}).get("sizeLimit") or "1Gi"
            mounts.append((vm["mountPath"], str(int(quantity(size)))))
        elif vm["mountPath"].startswith("/var/run/secrets/kubernetes.io/"):
            continue  # the service account token; nothing in a Ray container reads it here
        else:
            raise ValueError(f"volume {vm['name']} at {vm['mountPath']} is not an emptyDir")
    return mounts
