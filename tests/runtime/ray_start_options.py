"""The `ray start` options of the installed Ray, with their value types and defaults, read from
its own click command (`ray.scripts.scripts.start`); Ray is not started.

    .cache/ray/venv-<v>/bin/python tests/runtime/ray_start_options.py [--out FILE]

Prints (or writes) JSON: {"version", "python", "options": {name: {"type", "default"}},
"workerPorts": {"from", "to"}, "serveHttpPort", "serveGrpcPort", "kuberayAutoscalerOptions"}
(the long options of `ray kuberay-autoscaler`, which KubeRay's autoscaler container runs). A type is one of "int",
"float", "bool" (a value click reads as a boolean), "text", "json", "flag", "count", or
{"choice": [values]}; raygate's table `RAY_START_OPTIONS` uses the same words.
"""
import argparse
import importlib.metadata
import json
import sys

import click
import ray
from ray.scripts.scripts import cli, start

# Options whose text value Ray itself parses as JSON (click sees a string).
JSON_OPTIONS = {"system-config"}


def value_type(param, name):
    if getattr(param, "count", False):
        return "count"
    if getattr(param, "is_flag", False):
        return "flag"
    t = param.type
    if name in JSON_OPTIONS:
        return "json"
    if isinstance(t, click.Choice):
        return {"choice": [str(c) for c in t.choices]}
    if isinstance(t, click.types.BoolParamType):
        return "bool"
    if isinstance(t, click.types.IntParamType):  # IntRange too
        return "int"
    if isinstance(t, click.types.FloatParamType):  # FloatRange too
        return "float"
    if isinstance(t, click.types.StringParamType):
        return "text"
    raise SystemExit(f"--{name}: click type {t!r} has no mapping; extend value_type()")


def default(param):
    d = param.default
    if callable(d):
        d = None
    # click >= 8.2 marks "no default" with a sentinel object.
    if d is not None and not isinstance(d, (bool, int, float, str, list, tuple)):
        return None
    if isinstance(d, tuple):
        d = list(d)
    return d


def serve_ports():
    """Serve's default HTTP and gRPC ports (Serve is not started)."""
    http = grpc = None
    try:
        from ray.serve.config import HTTPOptions
        http = HTTPOptions().port
    except Exception:
        pass
    try:
        from ray.serve.config import gRPCOptions
        grpc = gRPCOptions().port
    except Exception:
        pass
    try:
        from ray.serve._private import constants
        http = http if http is not None else getattr(constants, "DEFAULT_HTTP_PORT", None)
        grpc = grpc if grpc is not None else getattr(constants, "DEFAULT_GRPC_PORT", None)
    except Exception:
        pass
    return http, grpc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the JSON here instead of stdout")
    args = ap.parse_args()
    opts = {}
    for p in start.params:
        for name in p.opts + getattr(p, "secondary_opts", []):
            if name.startswith("--"):
                key = name[2:]
                opts[key] = {"type": value_type(p, key), "default": default(p)}
    http, grpc = serve_ports()
    autoscaler = cli.commands.get("kuberay-autoscaler")
    autoscaler_options = sorted(o for p in (autoscaler.params if autoscaler else [])
                                for o in p.opts if o.startswith("--"))
    out = {
        "version": ray.__version__,
        "python": sys.version.split()[0],
        "click": importlib.metadata.version("click"),
        "options": dict(sorted(opts.items())),
        "workerPorts": {"from": opts["min-worker-port"]["default"],
                        "to": opts["max-worker-port"]["default"]},
        "serveHttpPort": http,
        "serveGrpcPort": grpc,
        "kuberayAutoscalerOptions": autoscaler_options,
    }
    text = json.dumps(out, indent=2) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
