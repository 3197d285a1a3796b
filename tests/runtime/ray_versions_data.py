"""The Ray version matrix's data: per-version measurements in tests/runtime/ray-versions/<v>.json,
and what is derived from them (policies/ray-versions.json, the table in docs/RAY-RUNTIME.md).

    ray_versions_data.py record --dir DIR --version V [--options F] [--bare F] [--tier-... ]
        merge one step's result into DIR/<V>.json (tests/runtime/matrix.sh calls this)
    ray_versions_data.py build --dir DIR --policy policies/ray-versions.json --doc docs/RAY-RUNTIME.md
        write the policy file raygate compiles in, and the docs table between
        <!-- ray-versions:begin --> and <!-- ray-versions:end -->

Standard library only.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import sys

REFERENCE = "2.60.0"  # the version the options column compares with
# Random listeners the plan pins in ranges of its own; not listed in randomListeners.
PINNED_IN_RANGES = {"object-manager-port", "node-manager-port", "runtime-env-agent-port",
                    "min-worker-port/max-worker-port"}
BEGIN, END = "<!-- ray-versions:begin -->", "<!-- ray-versions:end -->"


def vkey(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def load(path):
    with open(path) as f:
        return json.load(f)


def save(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# --- record -------------------------------------------------------------------------------------

def tier_reason(log_path):
    """Why run.sh stopped, from its log (one line)."""
    try:
        with open(log_path, errors="replace") as f:
            lines = [l.rstrip() for l in f if l.strip()]
    except OSError:
        return "no log"
    for pat in (r"\d[\d,]* disagreements?", r"\[runtime\] ERROR", r"FAIL", r"Error|error"):
        hits = [l for l in lines if re.search(pat, l)]
        if hits:
            return hits[-1][-300:]
    return (lines[-1] if lines else "empty log")[-300:]


def tier_disagreements(log_path):
    """The Ray CLI differential's disagreements in run.sh's log: {why: count}."""
    found = {}
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                m = re.match(r"DISAGREE (\S+): (.*)", line.strip())
                if m:
                    why = re.sub(r"\d+", "N", m.group(2))[:300] if "NoSuchOption" not in \
                        m.group(2) else m.group(2)[:300]
                    found[why] = found.get(why, 0) + 1
    except OSError:
        pass
    return found


def summarize_results(path):
    res = load(path)
    scen = []
    for s in res.get("scenarios", []):
        scen.append({
            "name": str(s.get("name")),
            "ok": bool(s.get("ok")),
            "seconds": s.get("seconds"),
            "error": s.get("error"),
            "failedChecks": [{"what": c.get("what"), "detail": (c.get("detail") or "")[:500]}
                             for c in s.get("checks", []) if not c.get("ok")],
            "failedSteps": [{"step": t.get("step"),
                             "detail": (t.get("error") or t.get("detail") or "")[-3000:]}
                            for t in s.get("steps", []) if not t.get("ok")],
            "listeners": [{k: l.get(k) for k in ("pod", "addr", "port", "process", "planned")}
                          for l in s.get("listeners", [])],
        })
    return scen


def trim_bare(bare):
    runs = []
    for r in bare.get("runs", []):
        runs.append({
            "settledAfterSeconds": r.get("settledAfterSeconds"),
            "start": r.get("start"),
            "nodePorts": r.get("nodePorts"),
            **{node: [{k: x[k] for k in ("address", "port", "process", "what", "rayStartParam")}
                      for x in r.get(node, [])] for node in ("head", "worker")},
        })
    return {k: bare[k] for k in ("measuredWith", "nodes", "ephemeralRange", "seconds", "listeners")
            if k in bare} | {"runs": runs}


def record(args):
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"{args.version}.json")
    data = load(path) if os.path.exists(path) else {"version": args.version}
    today = datetime.date.today().isoformat()
    if args.started:
        # A new measurement of this version: keep nothing from an earlier one.
        data = {"version": args.version,
                "measured": {"date": today, "python": args.python, "by": "tests/runtime/matrix.sh"},
                "failures": {}}
    data.setdefault("failures", {})
    if args.failed is not None:
        data["failures"][args.step] = args.failed
    if args.options:
        o = load(args.options)
        if o["version"] != args.version:
            sys.exit(f"{args.options} is Ray {o['version']}, not {args.version}")
        data["options"] = o["options"]
        data["click"] = o.get("click")
        data["workerPorts"] = o["workerPorts"]
        data["serveHttpPort"] = o["serveHttpPort"]
        data["serveGrpcPort"] = o["serveGrpcPort"]
        data["kuberayAutoscalerOptions"] = o["kuberayAutoscalerOptions"]
        data.setdefault("measured", {})["python"] = o.get("python")
        data["failures"].pop("options", None)
    if args.bare:
        data["bareListeners"] = trim_bare(load(args.bare))
        data["failures"].pop("bareListeners", None)
    if args.tier_skipped:
        data["runtimeTier"] = {"run": False}
    if args.tier_rc is not None:
        tier = {"run": True, "scenarios": os.environ.get("SCENARIOS", "1,3"),
                "exitCode": args.tier_rc, "passed": args.tier_rc == 0,
                "seconds": args.tier_seconds, "raygate": args.tier_raygate}
        fresh = args.tier_results and os.path.exists(args.tier_results) and (
            args.tier_started is None or os.path.getmtime(args.tier_results) >= args.tier_started)
        tier["results"] = summarize_results(args.tier_results) if fresh else None
        if args.tier_rc != 0:
            tier["reason"] = tier_reason(args.tier_log) if args.tier_log else None
            tier["disagreements"] = tier_disagreements(args.tier_log) if args.tier_log else {}
            data["failures"]["runtimeTier"] = tier["reason"]
        else:
            data["failures"].pop("runtimeTier", None)
        data["runtimeTier"] = tier
    if args.seconds is not None:
        data["seconds"] = args.seconds
    save(path, data)


# --- build --------------------------------------------------------------------------------------

def measured_versions(d):
    out = []
    for p in glob.glob(os.path.join(d, "*.json")):
        if re.fullmatch(r"\d+\.\d+\.\d+\.json", os.path.basename(p)):
            out.append(load(p))
    return sorted(out, key=lambda x: vkey(x["version"]))


def random_listeners(v):
    """Non-loopback listeners on random ports that a `ray start` option pins (except those
    the plan pins in ranges)."""
    found = {}
    for r in v["bareListeners"]["listeners"]:
        p = r["rayStartParam"]
        if r["kind"] != "random" or not p or p in PINNED_IN_RANGES:
            continue
        e = found.setdefault(p, {"rayStartParam": p, "nodes": set(), "what": r["what"]})
        e["nodes"].add(r["node"])
    return [{"rayStartParam": p, "node": "every" if "worker" in e["nodes"] else "head",
             "what": e["what"]} for p, e in sorted(found.items())]


def unpinned_random(v):
    return sorted({(r["node"], r["what"]) for r in v["bareListeners"]["listeners"]
                   if r["kind"] == "random" and not r["rayStartParam"]})


def head_only(v):
    out = {}
    for r in v["bareListeners"]["listeners"]:
        if r["kind"] == "fixed" and r["headOnly"] and not r["rayStartParam"]:
            for ports in r["ports"]:
                for port in ports:
                    out[port] = r["what"]
    return [{"port": p, "what": w} for p, w in sorted(out.items())]


def policy(versions):
    out = []
    for v in versions:
        missing = [k for k in ("options", "bareListeners", "kuberayAutoscalerOptions") if k not in v]
        if missing:
            sys.exit(f"Ray {v['version']}: no {', '.join(missing)} measured; rerun matrix.sh")
        m = v["measured"]
        out.append({
            "version": v["version"],
            "measured": f"{m['date']}, Python {m['python']}, {m['by']}",
            "startOptions": {k: o["type"] for k, o in sorted(v["options"].items())},
            "workerPorts": v["workerPorts"],
            "serveHttpPort": v["serveHttpPort"],
            "serveGrpcPort": v["serveGrpcPort"],
            "randomListeners": random_listeners(v),
            "headOnlyListeners": head_only(v),
            "kuberayAutoscalerOptions": v["kuberayAutoscalerOptions"],
        })
    return {
        "about": "What each Ray version's `ray start` accepts (option types) and opens on its own "
                 "(random and head-only listeners, worker and Serve ports), and which options its "
                 "`ray kuberay-autoscaler` takes, measured by "
                 "tests/runtime/matrix.sh; raygate compiles it in.",
        "versions": out,
    }


def short_error(text):
    """An error in short: the exception of its first line, and its last line if that is the
    exception itself (the rig cuts long tracebacks)."""
    lines = [l.strip() for l in re.sub(r"\x1b\[[0-9;]*m", "", text or "").splitlines() if l.strip()]
    if not lines:
        return ""
    first = lines[0] if len(lines) == 1 else lines[0].split(":", 1)[0]
    last = lines[-1] if len(lines) > 1 and re.match(r"[\w.]+(Error|Exception)\b", lines[-1]) else ""
    return "; ".join(x for x in (first[:160], last[:160]) if x)


def scenario_cell(v, name):
    t = v.get("runtimeTier") or {}
    if not t.get("run"):
        return "not run"
    if name not in t.get("scenarios", "").split(","):
        return "not run"
    for s in t.get("results") or []:
        if s["name"] == name:
            if s["ok"]:
                return f"passes ({s['seconds']} s)"
            why = s.get("error") or "; ".join(c["what"] for c in s["failedChecks"])
            steps = "; ".join(f"{t['step']}: {short_error(t['detail'])}" for t in s["failedSteps"])
            return (f"fails ({s['seconds']} s): {why}" + (f" ({steps})" if steps else "")
                    ).replace("|", "\\|")[:400]
    dis = t.get("disagreements") or {}
    if dis:
        whys = "; ".join(f"{n}x {re.sub(r'^click: ', '', w)}" for w, n in sorted(dis.items()))
        return (f"not reached: the Ray CLI differential stopped run.sh "
                f"({sum(dis.values())} disagreements: {whys})").replace("|", "\\|")
    reason = re.sub(r"^\[runtime\] ", "", t.get("reason") or "").replace("|", "\\|")
    return f"not reached: run.sh stopped before the scenarios ({reason[:160]})"


def table(versions):
    ref = next((v for v in versions if v["version"] == REFERENCE), versions[-1])
    ref_opts = set(ref["options"])
    rows = ["| Ray | `ray start` options | worker ports | agent gRPC port | head-only listeners "
            "| random listeners (pinned by) | Serve HTTP / gRPC | autoscaler `--gcs-address` "
            "| scenario 1 | scenario 3 |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for v in versions:
        opts = set(v["options"])
        added, gone = sorted(opts - ref_opts), sorted(ref_opts - opts)
        diff = "; ".join(x for x in (
            ("+" + ", +".join(f"`{a}`" for a in added)) if added else "",
            ("missing " + ", ".join(f"`{g}`" for g in gone)) if gone else "") if x)
        optcell = f"{len(opts)}" + (f" ({diff})" if diff and v is not ref else
                                    (" (reference)" if v is ref else " (as " + ref["version"] + ")"))
        agent = [r for r in v["bareListeners"]["listeners"]
                 if r["rayStartParam"] == "dashboard-agent-grpc-port"]
        agent_cell = ("random" if agent and all(r["kind"] == "random" for r in agent)
                      else "fixed" if agent else "not seen")
        ho = ", ".join(f"{h['port']} ({h['what']})" for h in head_only(v)) or "none"
        rl = ", ".join(f"{r['what'].replace('the ', '')} [{r['node']}] (`--{r['rayStartParam']}`)"
                       for r in random_listeners(v))
        un = unpinned_random(v)
        if un:
            rl += "; unpinnable: " + ", ".join(f"{w} [{n}]" for n, w in un)
        wp = v["workerPorts"]
        rows.append(" | ".join([
            f"| {v['version']}", optcell, f"{wp['from']}-{wp['to']}", agent_cell, ho, rl or "none",
            f"{v['serveHttpPort']} / {v['serveGrpcPort']}",
            "yes" if "--gcs-address" in v.get("kuberayAutoscalerOptions", []) else "no",
            scenario_cell(v, "1"), scenario_cell(v, "3")]) + " |")
    times = ", ".join(f"{v['version']} {v['seconds']} s" for v in versions if v.get("seconds"))
    dates = sorted({v["measured"]["date"] for v in versions})
    return "\n".join(rows) + (
        f"\n\nMeasured {', '.join(dates)} (Python {versions[-1]['measured']['python']}); "
        f"wall time per version (venv cached, bare listeners twice, runtime tier where run): "
        f"{times}.")


def build(args):
    versions = measured_versions(args.dir)
    if not versions:
        sys.exit(f"no measurements in {args.dir}")
    save(args.policy, policy(versions))
    if args.doc:
        with open(args.doc) as f:
            doc = f.read()
        if BEGIN not in doc or END not in doc:
            sys.exit(f"{args.doc}: no {BEGIN} ... {END} markers")
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        with open(args.doc, "w") as f:
            f.write(head + BEGIN + "\n" + table(versions) + "\n" + END + tail)
    print(f"wrote {args.policy} ({len(versions)} versions)" + (f" and {args.doc}" if args.doc else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--dir", required=True)
    r.add_argument("--version", required=True)
    r.add_argument("--python")
    r.add_argument("--started", action="store_true")
    r.add_argument("--options")
    r.add_argument("--bare")
    r.add_argument("--step")
    r.add_argument("--failed")
    r.add_argument("--tier-rc", type=int)
    r.add_argument("--tier-seconds", type=int)
    r.add_argument("--tier-started", type=float)
    r.add_argument("--tier-log")
    r.add_argument("--tier-raygate")
    r.add_argument("--tier-results")
    r.add_argument("--tier-skipped", action="store_true")
    r.add_argument("--seconds", type=int)
    b = sub.add_parser("build")
    b.add_argument("--dir", required=True)
    b.add_argument("--policy", required=True)
    b.add_argument("--doc")
    args = ap.parse_args()
    record(args) if args.cmd == "record" else build(args)


if __name__ == "__main__":
    main()
