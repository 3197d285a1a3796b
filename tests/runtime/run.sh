#!/usr/bin/env bash
# The Ray runtime tier: Ray from PyPI, started with the KubeRay operator's own commands in one
# network namespace per Pod behind the namespace's NetworkPolicies (nftables). See
# docs/RAY-RUNTIME.md.
#
#   tests/runtime/run.sh                      Ray 2.60.0, scenarios 1,2,3,4
#   RAY_VERSION=2.41.0 tests/runtime/run.sh   another Ray from PyPI (its own cached venv)
#   SCENARIOS=1 tests/runtime/run.sh          a subset
#   RAYGATE_BIN=path  RAYGATE_POLICY=file     another raygate binary / policy file
#
# Needs root: CAP_NET_ADMIN (network namespaces, veth, bridge, nftables) and CAP_SYS_ADMIN
# (mount namespaces, tmpfs). Results and logs: .cache/runtime/ray-<version>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
RAY_VERSION="${RAY_VERSION:-2.60.0}"
SCENARIOS="${SCENARIOS:-1,2,3,4}"
started=$(date +%s)

log() { printf '[runtime] %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
elapsed() { echo "$(($(date +%s) - started))s"; }

# --- capabilities ---------------------------------------------------------------------------
[[ "$(id -u)" == 0 ]] || die "must run as root: the tier needs CAP_NET_ADMIN (network namespaces, veth, bridge, nftables) and CAP_SYS_ADMIN (mount namespaces, tmpfs)"
need_pkgs=()
command -v ip >/dev/null && command -v ss >/dev/null || need_pkgs+=(iproute2)
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v nsenter >/dev/null && command -v unshare >/dev/null || need_pkgs+=(util-linux)
command -v python3 >/dev/null || die "python3 is required"
if ((${#need_pkgs[@]})); then
	log "installing ${need_pkgs[*]}"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2
fi
probe="rgprobe$$"
ip netns add "$probe" 2>/dev/null || die "cannot create a network namespace (ip netns add): CAP_NET_ADMIN and CAP_SYS_ADMIN are required"
probe_ok=1
ip netns exec "$probe" ip link add rgprobe0 type veth peer name rgprobe1 2>/dev/null || probe_ok=0
ip netns exec "$probe" ip link add rgprobebr type bridge 2>/dev/null || probe_ok=0
ip netns exec "$probe" nft add table inet rgprobe 2>/dev/null || probe_ok=2
ip netns exec "$probe" unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /mnt' 2>/dev/null || probe_ok=3
ip netns del "$probe"
case "$probe_ok" in
0) die "cannot create veth pairs or bridges in a network namespace: CAP_NET_ADMIN is required" ;;
2) die "nftables does not work in a network namespace (nft add table): CAP_NET_ADMIN and the nf_tables kernel module are required" ;;
3) die "cannot mount tmpfs in a private mount namespace (unshare -m): CAP_SYS_ADMIN is required" ;;
esac

# --- tools, Ray venv, raygate -------------------------------------------------------------------
scripts/e2e-tools.sh

venv=$(tests/runtime/venv.sh "$RAY_VERSION")

if [[ -n "${RAYGATE_BIN:-}" ]]; then
	raygate="$RAYGATE_BIN"
else
	cargo build --locked --bin raygate >&2
	raygate="$ROOT/target/debug/raygate"
fi
# A private copy: another cargo command in this tree may relink target/debug/raygate mid-run.
raygate_copy=$(mktemp -t raygate-runtime-bin.XXXXXX)
install -m 0755 "$raygate" "$raygate_copy"
raygate="$raygate_copy"
trap 'rm -f "$raygate_copy"' EXIT
log "tools, venv and raygate ready after $(elapsed)"

(cd tests/runtime && "$venv/bin/python" -m pytest -q -p no:cacheprovider test_netpol_nft.py)
# The translator that enforces policies in the rig decides as kube-network-policies does.
netpol_corpus=$(mktemp -t raygate-netpol-corpus.XXXXXX)
RAYGATE_NETPOL_CORPUS="$netpol_corpus" cargo test --locked -q --test netpol_oracle >&2
(cd tests/runtime && "$venv/bin/python" netpol_nft_corpus.py "$netpol_corpus")
rm -f "$netpol_corpus"
"$venv/bin/python" tests/runtime/ray_cli_oracle.py --raygate "$raygate" -q

# --- control plane, rig, teardown -------------------------------------------------------------
out="$ROOT/.cache/runtime/ray-$RAY_VERSION"
rm -rf "$out"
mkdir -p "$out"
cluster_dir=$(mktemp -d -t raygate-runtime.XXXXXX)
state="$cluster_dir/netns.json"
teardown() {
	status=$?
	"$venv/bin/python" tests/runtime/rig.py cleanup --state "$state" || true
	tests/e2e/cluster.sh down "$cluster_dir" || true
	left=$(ip netns list | grep -c "^rgrt$$-" || true)
	if [[ "$left" != 0 ]]; then
		log "ERROR: $left network namespace(s) rgrt$$-* left behind"
		status=1
	fi
	if [[ "$status" -ne 0 ]]; then
		cp -r "$cluster_dir/logs" "$out/control-plane-logs" 2>/dev/null || true
		log "FAILED after $(elapsed); report and logs in $out"
	else
		log "passed in $(elapsed); report in $out/report.md"
	fi
	rm -rf "$cluster_dir" "$raygate_copy"
	exit "$status"
}
trap teardown EXIT

# One retry: `cluster.sh up` sometimes fails in `kubectl wait --for=condition=Established`
# when a CRD has no status yet (".status.conditions accessor error"); it stops what it started.
if ! tests/e2e/cluster.sh up "$cluster_dir"; then
	log "control plane failed to come up; retrying once"
	tests/e2e/cluster.sh up "$cluster_dir"
fi
eval "$(tests/e2e/cluster.sh env "$cluster_dir")"
tests/e2e/cluster.sh nodes "$cluster_dir" 2>/dev/null
log "control plane up after $(elapsed)"

# In the background, so that INT or TERM reach the rig at once (it then tears down what it
# started); the exit trap removes whatever is left.
PYTHONPATH="$ROOT/tests/runtime" "$venv/bin/python" tests/runtime/rig.py run \
	--kubectl "$E2E_KUBECTL" --kubeconfig "$KUBECONFIG" \
	--raygate-kubeconfig "$E2E_RAYGATE_KUBECONFIG" --raygate "$raygate" \
	--venv "$venv" --ray-version "$RAY_VERSION" --out "$out" \
	--state "$state" --prefix "rgrt$$" --scenarios "$SCENARIOS" &
rig=$!
trap 'log "interrupted"; kill -TERM "$rig" 2>/dev/null || true; wait "$rig" || true; exit 130' INT TERM
wait "$rig"
