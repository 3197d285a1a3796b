#!/usr/bin/env python3
"""Inputs and verdict comparison for the Kyverno tier (tests/kyverno/run.sh).

  verdicts.py inputs OUT_DIR BENCH_INPUTS_DIR SAMPLE_FILE...
      Writes every object as its own OUT_DIR/NNNN.json, named k-NNNN (Kyverno's report
      names objects only by kind, namespace and name, and the samples repeat names), and
      OUT_DIR/../index.tsv: NNNN, where it came from. The inputs: the benchmark objects,
      every document of the KubeRay samples, and objects that break one rule at a time.

  verdicts.py vpol CLUSTER_POLICY
      Prints the ClusterPolicy's rules as two Kyverno ValidatingPolicies (policies.kyverno.io):
      the same variables and expressions, compiled once per policy instead of once per rule
      and request; `raygate` denies (its Enforce rules), `raygate-warn` warns (its Audit rule).

  verdicts.py compare INDEX RAYGATE_JSON KYVERNO_REPORT POLICY APPROXIMATIONS
      Compares `raygate check -o json` with `kyverno apply --policy-report` of POLICY; exits 1
      on any disagreement not listed in APPROXIMATIONS. Kyverno denies when a rule whose
      failureAction is Enforce fails or errs (the CLI's report says `fail` for Audit rules
      too; admission lets them pass). A ValidatingPolicy reports only its first failing
      validation: its rule ids (from the messages) must be among raygate's, and name one
      whenever raygate denies.
"""

import copy
import json
import os
import sys

import yaml

# Rules the Kyverno policy leaves out (benches/policies/kyverno/raygate.yaml), as the Rego
# and CEL peers do.
LEFT_OUT = ("network-policy/", "ports/serve-config", "ports/start-command", "ports/unplanned-port",
            "ports/host-", "ports/node-port-service", "ports/probe-port", "ports/autoscaler-gcs-port",
            "ports/unmeasured-ray")
# Rules raygate only warns about (Audit in the Kyverno policy).
WARN_RULES = {"ports/serve-port-name"}

# The compliant RayCluster of tests/bench_equivalence.rs and the changes that each break
# one rule one way (a JSON pointer under the head group, and its new value).
COMPLIANT = {
    "apiVersion": "ray.io/v1", "kind": "RayCluster",
    "metadata": {"name": "ok", "namespace": "kuberay"},
    "spec": {
        "headGroupSpec": {
            "rayStartParams": {
                "port": "6380", "ray-client-server-port": "10002", "dashboard-port": "8266",
                "metrics-export-port": "8081", "object-manager-port": "8301",
                "node-manager-port": "8401", "runtime-env-agent-port": "8501",
                "dashboard-agent-grpc-port": "8601", "dashboard-agent-listen-port": "52365",
                "min-worker-port": "10003", "max-worker-port": "19999"},
            "template": {"spec": {"nodeSelector": {"node-role": "worker"}, "containers": [{
                "name": "ray-head", "image": "rayproject/ray:2.52.0",
                "ports": [{"name": "gcs-server", "containerPort": 6380}, {"name": "client", "containerPort": 10002},
                          {"name": "dashboard", "containerPort": 8266}, {"name": "serve", "containerPort": 8001},
                          {"name": "metrics", "containerPort": 8081}],
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
            }]}},
        },
        "workerGroupSpecs": [],
    },
}
CASES = [
    ("/rayStartParams/port", 6379),
    ("/rayStartParams/node-manager-port", "9000"),
    ("/rayStartParams/min-worker-port", "8000"),
    ("/rayStartParams/max-worker-port", "8350"),
    ("/rayStartParams/max-worker-port", "20000"),
    ("/rayStartParams/min-worker-port", "10002"),
    ("/rayStartParams/min-worker-port", "12000"),
    ("/rayStartParams/min-worker-port", "any"),
    ("/rayStartParams/worker-port-list", "10005,10006"),
    ("/rayStartParams/worker-port-list", "10005,8080"),
    ("/rayStartParams/dashboard-agent-grpc-port", "0"),
    ("/template/spec/containers/0/ports/3/name", "ray-serve"),
    ("/template/spec/containers/0/ports/4/containerPort", 8080),
    ("/template/spec/containers/0/ports/0/name", "gcs"),
    ("/template/spec/nodeName", "gpu-node"),
    ("/template/spec/nodeName", "worker-1"),
    ("/template/spec/nodeSelector", {"kubernetes.io/hostname": "gpu-node"}),
    ("/template/spec/nodeSelector", {}),
    ("/template/spec/tolerations", [{"operator": "Exists"}]),
    ("/template/spec/affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}]}}}),
    ("/template/spec/affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["gpu-node"]}]}]}}}),
    ("/template/spec/containers/0/resources/limits/memory", "1Gi"),
    ("/template/spec/containers/0/resources/limits/cpu", "lots"),
    ("/template/spec/containers/0/resources/requests", {"cpu": "500m", "nvidia.com/gpu": 1}),
    ("/template/spec/initContainers", [{"name": "init", "ports": [{"containerPort": 1, "hostPort": 8265}]}]),
]


def targeted():
    yield "targeted: compliant", COMPLIANT
    for pointer, value in CASES:
        obj = copy.deepcopy(COMPLIANT)
        parent, key = pointer.rsplit("/", 1)
        target = obj["spec"]["headGroupSpec"]
        for part in parent.strip("/").split("/"):
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(key)] = value
        else:
            target[key] = value
        yield f"targeted: {pointer} = {json.dumps(value)}", obj
    # Out of scope: an exempt namespace, a Pod without the Ray label.
    exempt = copy.deepcopy(COMPLIANT)
    exempt["metadata"]["namespace"] = "kube-system"
    exempt["spec"]["headGroupSpec"]["template"]["spec"]["nodeName"] = "gpu-node"
    yield "targeted: exempt namespace kube-system", exempt
    yield "targeted: a Pod that is not Ray's", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}]}]}}


def inputs(out, bench_dir, samples):
    os.makedirs(out, exist_ok=True)
    rows = []

    def emit(source, obj):
        key = f"{len(rows):04d}"
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})
        if not isinstance(obj["metadata"], dict):
            obj["metadata"] = {}
        obj["metadata"]["name"] = f"k-{key}"
        with open(os.path.join(out, key + ".yaml"), "w") as f:
            json.dump(obj, f, default=str)
        rows.append((key, source))

    for name in sorted(os.listdir(bench_dir)):
        if name.endswith(".json") and not name.endswith(".review.json"):
            with open(os.path.join(bench_dir, name)) as f:
                emit(f"bench: {name[:-5]}", json.load(f))
    skipped = 0
    for path in samples:
        try:
            with open(path) as f:
                docs = list(yaml.safe_load_all(f))
        except yaml.YAMLError:
            skipped += 1
            continue
        for i, doc in enumerate(docs):
            if isinstance(doc, dict) and "kind" in doc:
                emit(f"{path}#{i}", doc)
    for source, obj in targeted():
        emit(source, obj)
    with open(os.path.join(os.path.dirname(os.path.abspath(out)), "index.tsv"), "w") as f:
        for key, source in rows:
            f.write(f"{key}\t{source}\n")
    print(f"{len(rows)} objects written to {out} ({skipped} sample file(s) not YAML)", file=sys.stderr)


def raygate_verdicts(path):
    with open(path) as f:
        report = json.load(f)
    out = {}
    for result in report["results"]:
        key = os.path.basename(result["source"].rsplit(":", 1)[0]).removesuffix(".yaml")
        kept = [v for v in result.get("violations", []) if not v["rule"].startswith(LEFT_OUT)]
        out[key] = {
            "denied": any(v["action"] == "deny" for v in kept),
            "rules": {v["rule"] for v in kept if v["action"] in ("deny", "warn")},
        }
    return out


def enforced_rules(policy_path):
    """What denies in the policy file: ClusterPolicy rules whose failureAction is Enforce,
    ValidatingPolicies whose validationActions hold Deny, by name; and whether the file is
    ValidatingPolicies (which report one failure each)."""
    enforced, vpol = set(), False
    with open(policy_path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            if doc.get("kind") == "ValidatingPolicy":
                vpol = True
                if "Deny" in doc["spec"].get("validationActions", []):
                    enforced.add(doc["metadata"]["name"])
                continue
            if doc.get("kind") not in ("ClusterPolicy", "Policy"):
                continue
            default = doc["spec"].get("validationFailureAction", "Audit")
            for rule in doc["spec"]["rules"]:
                action = rule.get("validate", {}).get("failureAction", default)
                if action.lower() == "enforce":
                    enforced.add(rule["name"])
    return enforced, vpol


def to_vpol(policy_path):
    with open(policy_path) as f:
        (policy,) = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "ClusterPolicy"]
    rules = policy["spec"]["rules"]
    variables = rules[0]["validate"]["cel"]["variables"]
    assert all(r["validate"]["cel"]["variables"] == variables for r in rules), "rules differ in variables"

    def vpol(name, rules, actions):
        return {
            "apiVersion": "policies.kyverno.io/v1", "kind": "ValidatingPolicy",
            "metadata": {"name": name},
            "spec": {
                "validationActions": actions,
                "evaluation": {"background": {"enabled": False}},
                "matchConstraints": {"resourceRules": [
                    {"apiGroups": ["ray.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                     "resources": ["rayclusters", "rayjobs", "rayservices", "raycronjobs"]},
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]}]},
                # The ClusterPolicy's match (Ray objects, Pods with a ray.io/cluster label) and
                # exclude (raygate's exempt namespaces), as match conditions.
                "matchConditions": [
                    {"name": "ray-object-or-pod", "expression":
                        "object.apiVersion.startsWith('ray.io/') || "
                        "(has(object.metadata.labels) && 'ray.io/cluster' in object.metadata.labels)"},
                    {"name": "not-exempt", "expression":
                        "!((has(object.metadata.namespace) ? object.metadata.namespace : "
                        "(has(request.namespace) && request.namespace != '' ? request.namespace : 'default')) "
                        "in ['kube-system', 'kube-public', 'kube-node-lease'])"}],
                "variables": variables,
                "validations": [{"expression": r["validate"]["cel"]["expressions"][0]["expression"],
                                 "message": r["validate"]["cel"]["expressions"][0]["message"]} for r in rules],
            }}

    enforce = [r for r in rules if r["validate"]["failureAction"] == "Enforce"]
    audit = [r for r in rules if r["validate"]["failureAction"] != "Enforce"]

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, data):
        style = ">" if "\n" in data or len(data) > 100 else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, text)
    print(f"# Generated from {policy_path} by `tests/kyverno/verdicts.py vpol {policy_path}`;")
    print("# tests/kyverno/run.sh fails when it is not. The same rules as Kyverno ValidatingPolicies:")
    print("# variables and expressions compiled once per policy, not once per rule and request.")
    print("# A ValidatingPolicy reports its first failing validation only.")
    print(yaml.dump_all([vpol("raygate", enforce, ["Deny"]), vpol("raygate-warn", audit, ["Audit", "Warn"])],
                        Dumper=Dumper, sort_keys=False, width=120), end="")


def kyverno_verdicts(path, enforced):
    out = {}
    with open(path) as f:
        text = f.read()
    # The CLI prints its warnings (ClusterPolicy is deprecated) before the report.
    start = text.find("apiVersion:")
    if start < 0:
        raise SystemExit(f"no policy report in {path}")
    docs = [d for d in yaml.safe_load_all(text[start:]) if d]
    for doc in docs:
        items = doc.get("items", [doc]) if doc.get("kind", "").endswith("List") else [doc]
        for item in items:
            for result in item.get("results") or []:
                for resource in result.get("resources") or []:
                    key = resource["name"].removeprefix("k-")
                    entry = out.setdefault(key, {"denied": False, "rules": set(), "errors": []})
                    name = result.get("rule") or result["policy"]
                    if result.get("rule"):
                        rule = result["rule"].replace("-", "/", 1)
                    else:
                        # A ValidatingPolicy's result names no rule: its message starts with it.
                        rule = (result.get("message") or "").split(":", 1)[0].strip()
                    outcome = result["result"]
                    if outcome in ("fail", "error"):
                        entry["denied"] |= name in enforced
                        entry["rules"].add(rule)
                        if outcome == "error":
                            entry["errors"].append(f"{rule}: {result.get('message', '')}")
                    elif outcome == "warn":
                        entry["rules"].add(rule)
    return out


def compare(index_path, raygate_path, kyverno_path, policy_path, approximations_path):
    with open(index_path) as f:
        index = dict(line.rstrip("\n").split("\t", 1) for line in f if line.strip())
    approximations = {}
    with open(approximations_path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                source, rule = line.rsplit(None, 1)
                approximations.setdefault(source, set()).add(rule)
    ours = raygate_verdicts(raygate_path)
    enforced, first_only = enforced_rules(policy_path)
    if not enforced:
        raise SystemExit(f"no Enforce rule in {policy_path}")
    theirs = kyverno_verdicts(kyverno_path, enforced)
    empty = {"denied": False, "rules": set(), "errors": []}
    problems, approximated, used = [], 0, set()
    denied = allowed = 0
    rules_seen = set()
    for key, source in sorted(index.items()):
        if key not in ours:
            problems.append(f"{source}: raygate reported nothing for {key}.yaml")
            continue
        r = ours[key]
        k = theirs.get(key, empty)
        rules_seen |= r["rules"]
        denied += r["denied"]
        allowed += not r["denied"]
        differ = r["rules"] ^ k["rules"]
        if first_only:
            # One failure per ValidatingPolicy: Kyverno's must be among raygate's, one of
            # them denying whenever raygate denies, the warning the same.
            missing_deny = bool(r["rules"] - WARN_RULES) and not (k["rules"] - WARN_RULES)
            differ = (k["rules"] - r["rules"]) | ((r["rules"] ^ k["rules"]) & WARN_RULES)
            if missing_deny:
                differ |= r["rules"] - WARN_RULES
        excused = approximations.get(source, set())
        if r["denied"] != k["denied"] or differ:
            if differ and differ <= excused:
                approximated += 1
                used |= {(source, rule) for rule in differ}
                continue
            problems.append(
                f"{source} ({key}.yaml): raygate {'denies' if r['denied'] else 'allows'}"
                f" {sorted(r['rules'])}, Kyverno {'denies' if k['denied'] else 'allows'} {sorted(k['rules'])}"
                + (f"; Kyverno errors: {k['errors']}" if k["errors"] else ""))
    stale = {(s, rule) for s, rules in approximations.items() for rule in rules} - used
    for source, rule in sorted(stale):
        problems.append(f"{source}: listed approximation {rule} no longer differs; remove it")
    total = len(index)
    print(f"{total} objects: raygate denies {denied}, allows {allowed}; Kyverno agrees on "
          f"{total - len(problems) - approximated}, {approximated} documented approximation(s); "
          f"{len(rules_seen)} rules broken: {' '.join(sorted(rules_seen))}")
    # Agreement must mean something: both verdicts and most rules occur.
    if total < 100:
        problems.append(f"only {total} objects compared")
    if denied == 0 or allowed == 0:
        problems.append(f"one-sided inputs: {denied} denied, {allowed} allowed")
    if len(rules_seen) < 12:
        problems.append(f"only {len(rules_seen)} rules exercised: {sorted(rules_seen)}")
    for p in problems:
        print(f"DISAGREEMENT: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "vpol":
        to_vpol(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "inputs":
        inputs(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 7 and sys.argv[1] == "compare":
        sys.exit(compare(*sys.argv[2:]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
