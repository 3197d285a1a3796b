#!/usr/bin/env bash
# The Kyverno tier: Kyverno's own CLI, with raygate's rules as a Kyverno ClusterPolicy
# (benches/policies/kyverno/raygate.yaml), reaches the same verdicts as raygate.
#   1. builds Kyverno v1.19.1's CLI (scripts/kyverno-tools.sh, cached) and raygate (debug);
#   2. writes the inputs, one object per file (JSON, in a .yaml file: `kyverno apply` reads only .yaml and .yml from a folder) (tests/kyverno/verdicts.py inputs): the
#      benchmark objects (examples/bench_inputs.rs), every document of every KubeRay sample
#      that is YAML (the clusterloader2 templates are not until rendered), and objects that
#      break one rule at a time;
#   3. `raygate check -o json` and `kyverno apply --policy-report` over the same folder, once
#      with the ClusterPolicy and once with the same rules as ValidatingPolicies
#      (benches/policies/kyverno/raygate.vpol.yaml, which must be what `verdicts.py vpol`
#      generates from the ClusterPolicy);
#   4. per object: the same allow/deny verdict and the same broken rules (raygate's rule ids,
#      Kyverno's rule names; a ValidatingPolicy names only its first failure, which must be
#      one of raygate's), network-policy/* and ports/serve-config left out as the policy
#      documents. Any difference not listed in tests/kyverno/approximations.txt fails the
#      tier, and so does a listed one that no longer differs.
#
#   tests/kyverno/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
started=$SECONDS

log() { printf '[kyverno-tier] %s\n' "$*" >&2; }
die() {
	printf '[kyverno-tier] FAILED: %s\n' "$*" >&2
	exit 1
}
trap 'rc=$?; [[ $rc == 0 ]] || printf "\n[kyverno-tier] FAILED (exit %s) at line %s: %s\n" "$rc" "${BASH_LINENO[0]}" "$BASH_COMMAND" >&2' EXIT

python3 -c 'import yaml' 2>/dev/null || die "PyYAML is missing: apt-get install python3-yaml"

# --- 1. tools ---------------------------------------------------------------------------------
KYVERNO_BINARIES=kubectl-kyverno scripts/kyverno-tools.sh
KYVERNO="$ROOT/.cache/kyverno/bin/kubectl-kyverno"
log "$("$KYVERNO" version 2>/dev/null | head -1)"
log "building raygate and the benchmark inputs (debug)"
cargo build --quiet --locked --bin raygate --example bench_inputs
RAYGATE="$ROOT/target/debug/raygate"
POLICY=benches/policies/kyverno/raygate.yaml
VPOL=benches/policies/kyverno/raygate.vpol.yaml
python3 tests/kyverno/verdicts.py vpol "$POLICY" | cmp -s - "$VPOL" ||
	die "$VPOL is not generated from $POLICY: python3 tests/kyverno/verdicts.py vpol $POLICY >$VPOL"

WORK=$(mktemp -d -t raygate-kyverno.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap 'rc=$?; cleanup; [[ $rc == 0 ]] || printf "\n[kyverno-tier] FAILED (exit %s) at line %s: %s\n" "$rc" "${BASH_LINENO[0]}" "$BASH_COMMAND" >&2' EXIT

# --- 2. inputs --------------------------------------------------------------------------------
target/debug/examples/bench_inputs "$WORK/bench" 2>/dev/null
mapfile -t samples < <(grep -rL '{{' tests/fixtures/kuberay/samples --include='*.yaml' --include='*.yml' --include='*.json' | sort)
python3 tests/kyverno/verdicts.py inputs "$WORK/objects" "$WORK/bench" "${samples[@]}"

# --- 3. both engines --------------------------------------------------------------------------
set +e
# The synthetic 1 MiB cluster has more worker groups than the built-in limit, which denies
# it unjudged; both tools judge it here.
sed 's/maxWorkerGroups: 64/maxWorkerGroups: 10000/' policies/ray-platform.yaml >"$WORK/policy.yaml"
"$RAYGATE" check --policy "$WORK/policy.yaml" -f "$WORK/objects" -o json >"$WORK/raygate.json" 2>"$WORK/raygate.err"
code=$?
set -e
((code <= 1)) || { cat "$WORK/raygate.err" >&2; die "raygate check exited $code"; }
log "raygate check: exit $code"

for kind in ClusterPolicy ValidatingPolicy; do
	policy=$POLICY
	[[ $kind == ValidatingPolicy ]] && policy=$VPOL
	start=$SECONDS
	set +e
	"$KYVERNO" apply "$policy" --resource "$WORK/objects" --policy-report \
		--remove-color >"$WORK/kyverno.yaml" 2>"$WORK/kyverno.err"
	code=$?
	set -e
	# Exit 1 means a rule failed; anything else, or no report, is a broken run.
	if ((code > 1)) || ! grep -qE '^kind: (Cluster)?(Policy)?Report$' "$WORK/kyverno.yaml"; then
		tail -n 40 "$WORK/kyverno.err" "$WORK/kyverno.yaml" >&2
		die "kyverno apply ($kind) exited $code without a policy report"
	fi
	log "kyverno apply ($kind): exit $code in $((SECONDS - start))s"

	# --- 4. compare ---------------------------------------------------------------------------
	python3 tests/kyverno/verdicts.py compare "$WORK/index.tsv" "$WORK/raygate.json" "$WORK/kyverno.yaml" "$policy" \
		tests/kyverno/approximations.txt || die "Kyverno ($kind) and raygate disagree (above)"
done
log "passed in $((SECONDS - started))s"
