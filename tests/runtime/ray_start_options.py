"""The `ray start` options of the installed Ray, from its own click command (Ray is not started)."""
import json, sys
import ray
from ray.scripts.scripts import start
opts = {}
for p in start.params:
    for name in p.opts:
        if name.startswith("--"):
            opts[name[2:]] = {"default": p.default if isinstance(p.default, (int, str, bool, type(None))) else repr(p.default),
                              "is_flag": getattr(p, "is_flag", False)}
print(json.dumps({"version": ray.__version__, "options": opts}, sort_keys=True))
