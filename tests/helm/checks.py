#!/usr/bin/env python3
"""Checks of the Helm chart's rendered output, run by tests/helm/run.sh.

  checks.py equivalent KUSTOMIZE.yaml HELM.yaml    kustomize and Helm render the same objects
  checks.py case NAME HELM.yaml                    the assertions of one values-matrix case

Exits non-zero with every difference printed.
"""

import copy
import json
import sys

import yaml

# Labels Helm's chart adds to every object (chart idiom, not in deploy/base).
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}

# Every difference the equivalence check ignores, and why. Printed on each run.
IGNORED = [
    ("Namespace raygate-system (kustomize only)",
     "Helm installs into the release namespace (`-n raygate-system --create-namespace`) "
     "and does not own it; NOTES.txt says how to add the Pod Security label"),
    ("Secret raygate-tls (kustomize only)",
     "kustomize generates it from files at render time; the chart's hook Job writes it at "
     "install time (TLS Secret wiring differs by design)"),
    ("webhooks[*].clientConfig.caBundle",
     "kustomize copies it from the generated Secret; the chart's hook Job patches it in "
     "(caBundle differs by design)"),
    ("raygate-certgen ServiceAccount, Role, RoleBinding, ClusterRole, ClusterRoleBinding, Job (Helm only)",
     "the pre/post-install hook that writes the Secret and patches caBundle"),
    ("metadata.labels " + ", ".join(sorted(HELM_LABELS)) + " (Helm only)",
     "the standard labels a chart adds"),
    ("app.kubernetes.io/part-of on the Deployment's pod template (Helm only)",
     "the chart labels pods like every object; kustomize's `labels` leaves templates alone"),
    ("any other label only Helm sets (listed per object below)",
     "the chart labels every object alike; e.g. the cert-manager overlay's certificates.yaml "
     "has no labels at all. Labels kustomize sets must be in Helm's output with the same value"),
    ("app.kubernetes.io/instance in the selectors of the Deployment, Service, PDB and "
     "topologySpreadConstraints and pod anti-affinity (Helm only)",
     "Helm's selector labels tell releases apart"),
]

KUSTOMIZE_ONLY = {("Namespace", "raygate-system"), ("Secret", "raygate-tls")}
HELM_ONLY_HOOKS = {(k, "raygate-certgen") for k in
                   ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Job")}


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def key(doc):
    return (doc["kind"], doc["metadata"]["name"])


def index(docs):
    out = {}
    for d in docs:
        k = key(d)
        if k in out:
            sys.exit(f"duplicate object {k}")
        out[k] = d
    return out


def normalize(doc, helm):
    doc = copy.deepcopy(doc)
    meta = doc["metadata"]
    if helm:
        labels = {k: v for k, v in meta.get("labels", {}).items() if k not in HELM_LABELS}
        meta["labels"] = labels
    if not meta.get("labels"):
        meta.pop("labels", None)
    if not meta.get("annotations"):
        meta.pop("annotations", None)
    for w in doc.get("webhooks", []):
        w["clientConfig"].pop("caBundle", None)

    def strip_instance(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("matchLabels", "selector") and isinstance(v, dict) and helm:
                    v.pop("app.kubernetes.io/instance", None)
                strip_instance(v)
        elif isinstance(node, list):
            for v in node:
                strip_instance(v)

    if doc["kind"] in ("Deployment", "Service", "PodDisruptionBudget"):
        strip_instance(doc["spec"])
    if doc["kind"] == "Deployment" and helm:
        tl = doc["spec"]["template"]["metadata"]["labels"]
        for k in HELM_LABELS | {"app.kubernetes.io/part-of"}:
            tl.pop(k, None)
    return doc


def diff(a, b, path=""):
    """Paths where a and b differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{path}/{k}: only in Helm: {json.dumps(b[k])[:200]}")
            elif k not in b:
                out.append(f"{path}/{k}: only in kustomize: {json.dumps(a[k])[:200]}")
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}/{i}")]
    if a != b:
        return [f"{path}: kustomize {json.dumps(a)[:200]} != Helm {json.dumps(b)[:200]}"]
    return []


def equivalent(kustomize_path, helm_path):
    k = index(load(kustomize_path))
    h = index(load(helm_path))
    problems = []
    for name in sorted(set(k) - set(h) - KUSTOMIZE_ONLY):
        problems.append(f"{name}: rendered by kustomize, not by Helm")
    for name in sorted(set(h) - set(k) - HELM_ONLY_HOOKS):
        problems.append(f"{name}: rendered by Helm, not by kustomize")
    common = sorted(set(k) & set(h))
    extra = []
    for name in common:
        theirs, ours = normalize(k[name], False), normalize(h[name], True)
        want = theirs["metadata"].get("labels", {})
        have = ours["metadata"].get("labels", {})
        added = sorted(set(have) - set(want))
        if added:
            extra.append(f"{name[0]}/{name[1]}: {', '.join(added)}")
            ours["metadata"]["labels"] = {l: v for l, v in have.items() if l in want}
            if not ours["metadata"]["labels"]:
                ours["metadata"].pop("labels")
        for d in diff(theirs, ours):
            problems.append(f"{name[0]}/{name[1]}{d}")
    print(f"compared {len(common)} objects: " + ", ".join(f"{a}/{b}" for a, b in common))
    print("ignored differences (by design):")
    for what, why in IGNORED:
        print(f"  - {what}: {why}")
    for e in extra:
        print(f"      {e}")
    if problems:
        print(f"NOT EQUIVALENT ({len(problems)} difference(s)):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        sys.exit(1)
    print(f"{kustomize_path} and {helm_path}: equivalent")


# --- values matrix ---------------------------------------------------------------------------

def webhooks(docs):
    return [w for d in docs if d["kind"].endswith("WebhookConfiguration") for w in d["webhooks"]]


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def exempt(w):
    (expr,) = w["namespaceSelector"]["matchExpressions"]
    assert expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "NotIn", expr
    return expr["values"]


def check_common(docs, ns):
    for w in webhooks(docs):
        values = exempt(w)
        for must in ("kube-system", "kube-public", "kube-node-lease", ns):
            assert must in values, f"{w['name']}: {must} not exempt: {values}"
    assert one(docs, "Role", "raygate-audit-lease")["metadata"]["namespace"] == ns


def case(name, path):
    docs = load(path)
    ns = one(docs, "Deployment")["metadata"]["namespace"]
    check_common(docs, ns)
    args = container(docs)["args"]
    hooks = [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    generating = [d for d in docs if d["metadata"]["name"] in ("raygate-network-policies", "raygate-kubernetes-endpoints")]
    if not name.startswith("generate-network-policies"):
        assert not any(a.startswith("--generate-network-policies") for a in args), args
        assert not generating, [key(d) for d in generating]
    if name == "defaults":
        assert "--mode=audit" not in args and "--write-reports" not in args, args
        assert {w["name"]: w["failurePolicy"] for w in webhooks(docs)}["ray.validate.raygate.dev"] == "Fail"
        assert one(docs, "Job", "raygate-certgen")
        assert len(hooks) == 6, [key(h) for h in hooks]
    elif name == "audit":
        assert "--mode=audit" in args and "--write-reports" in args, args
        assert all(w["failurePolicy"] == "Ignore" for w in webhooks(docs)), "audit: every webhook Ignore"
    elif name == "cert-manager":
        assert not hooks, [key(h) for h in hooks]
        for d in docs:
            if d["kind"].endswith("WebhookConfiguration"):
                assert d["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{ns}/raygate-tls"
        tls = one(docs, "Certificate", "raygate-tls")
        assert tls["spec"]["secretName"] == "raygate-tls"
        assert f"raygate.{ns}.svc" in tls["spec"]["dnsNames"]
        one(docs, "Issuer", "raygate-ca")
        one(docs, "Issuer", "raygate-selfsigned")
        assert all("caBundle" not in w["clientConfig"] for w in webhooks(docs))
    elif name == "cert-manager-issuer":
        assert [d["kind"] for d in docs if d["kind"] in ("Issuer", "Certificate")] == ["Certificate"]
        assert one(docs, "Certificate")["spec"]["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "corp-ca"}
    elif name == "existing-secret":
        assert not hooks, [key(h) for h in hooks]
        assert all(w["clientConfig"]["caBundle"] == "Y2EtYnVuZGxl" for w in webhooks(docs))
        vol = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
        assert vol["secret"]["secretName"] == "my-raygate-tls", vol
    elif name == "inline-policy":
        cm = one(docs, "ConfigMap", "raygate-policy")
        policy = yaml.safe_load(cm["data"]["ray-platform.yaml"])
        assert policy["kind"] == "RayPlatformPolicy"
        assert "--policy=/etc/raygate/policy/ray-platform.yaml" in args, args
        for w in webhooks(docs):
            for ns_ in policy["spec"]["scope"]["exemptNamespaces"]:
                assert ns_ in exempt(w), f"{w['name']}: policy's {ns_} not mirrored: {exempt(w)}"
        assert "ray-sandbox" in exempt(webhooks(docs)[0])
        vols = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        assert {"name": "policy", "configMap": {"name": "raygate-policy"}} in vols, vols
    elif name == "existing-configmap":
        assert not [d for d in docs if d["kind"] == "ConfigMap"]
        assert "--policy=/etc/raygate/policy/platform.yaml" in args, args
        vols = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        assert {"name": "policy", "configMap": {"name": "team-policy"}} in vols, vols
        assert "legacy-ray" in exempt(webhooks(docs)[0])
    elif name == "monitoring":
        sm = one(docs, "ServiceMonitor")
        assert sm["spec"]["jobLabel"] == "app.kubernetes.io/name"
        assert sm["spec"]["endpoints"][0]["port"] == "metrics"
        rule = one(docs, "PrometheusRule")
        with open("deploy/monitoring/raygate.rules.yaml") as f:
            assert rule["spec"]["groups"] == yaml.safe_load(f)["groups"], "PrometheusRule groups differ"
    elif name == "scheduling":
        spec = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert one(docs, "Deployment")["spec"]["replicas"] == 3
        assert "priorityClassName" not in spec and not [d for d in docs if d["kind"] == "PriorityClass"]
        assert spec["affinity"]["nodeAffinity"]
        tsc = spec["topologySpreadConstraints"]
        assert len(tsc) == 1 and tsc[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == "raygate", tsc
        assert container(docs)["resources"]["limits"]["memory"] == "256Mi"
    elif name == "existing-priorityclass":
        spec = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert spec["priorityClassName"] == "system-cluster-critical"
        assert not [d for d in docs if d["kind"] == "PriorityClass"]
    elif name in ("generate-network-policies", "generate-network-policies-namespaces"):
        assert "--generate-network-policies" in args, args
        selector = [a for a in args if a.startswith("--generate-network-policies-namespaces")]
        if name == "generate-network-policies":
            assert not selector, args
        else:
            assert selector == ["--generate-network-policies-namespaces=raygate.dev/netpol=generate"], args
        writer = one(docs, "ClusterRole", "raygate-network-policies")
        assert writer["rules"] == [{"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                                    "verbs": ["get", "list", "watch", "create", "patch"]}], writer["rules"]
        binding = one(docs, "ClusterRoleBinding", "raygate-network-policies")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "raygate", "namespace": ns}], binding
        endpoints = one(docs, "Role", "raygate-kubernetes-endpoints")
        assert endpoints["metadata"]["namespace"] == "default"
        assert endpoints["rules"] == [{"apiGroups": [""], "resources": ["endpoints"], "resourceNames": ["kubernetes"],
                                       "verbs": ["get"]}], endpoints["rules"]
        assert one(docs, "RoleBinding", "raygate-kubernetes-endpoints")["metadata"]["namespace"] == "default"
        # No finalizer permission anywhere: the owner references never block deletion.
        for d in docs:
            for rule in d.get("rules", []):
                assert not any(r.endswith("/finalizers") for r in rule.get("resources", [])), rule
    else:
        sys.exit(f"unknown case {name}")
    print(f"case {name}: ok ({len(docs)} objects)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["equivalent"] and len(sys.argv) == 4:
        equivalent(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["case"] and len(sys.argv) == 4:
        try:
            case(sys.argv[2], sys.argv[3])
        except AssertionError as e:
            sys.exit(f"case {sys.argv[2]}: FAILED: {e}")
    else:
        sys.exit(__doc__)
