#!/usr/bin/env bash
# The monitoring tier: raygate's alerting rules and Grafana dashboard, checked by Prometheus'
# own promtool (from Debian's prometheus package, installed when missing):
#   - promtool check rules on deploy/monitoring/raygate.rules.yaml and the PrometheusRule's groups;
#   - promtool test rules on tests/monitoring/raygate.rules.test.yaml (each alert, firing and not);
#   - every query of deploy/monitoring/raygate-dashboard.json parsed by promtool (as recording
#     rules). tests/webhook.rs checks that every raygate_* name they use is exported.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null; then
  echo "[monitoring] installing promtool (Debian package prometheus)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
  # The package starts a server where an init system runs; the tier needs only promtool.
  pkill -x prometheus 2>/dev/null || true
fi
promtool --version | head -1
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, sys, yaml
work = sys.argv[1]
rule = yaml.safe_load(open("deploy/components/monitoring/prometheusrule.yaml"))
yaml.safe_dump(rule["spec"], open(f"{work}/prometheusrule.rules.yaml", "w"))
dash = json.load(open("deploy/monitoring/raygate-dashboard.json"))
rules = []
for panel in dash["panels"]:
    for target in panel["targets"]:
        rules.append({"record": f"raygate_dashboard:panel{panel['id']}_{target['refId']}".lower(),
                      "expr": target["expr"]})
if not rules:
    sys.exit("the dashboard has no queries")
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(f"{work}/dashboard.rules.yaml", "w"))
print(f"[monitoring] {len(rules)} dashboard queries", file=sys.stderr)
PY
promtool check rules deploy/monitoring/raygate.rules.yaml "$work/prometheusrule.rules.yaml" "$work/dashboard.rules.yaml"
promtool test rules tests/monitoring/raygate.rules.test.yaml
