#!/usr/bin/env bash
# The real-cluster tier: raygate as users run it, on real nodes.
#   1. builds the cluster's binaries and images (scripts/cluster-tools.sh, scripts/image.sh,
#      scripts/cluster-images.sh, Helm), all cached in .cache/cluster;
#   2. `tests/cluster/cluster.sh up`: etcd, kube-apiserver, controller-manager, scheduler,
#      gpu-node + CLUSTER_WORKERS workers (real kubelets on containerd), kube-proxy, CoreDNS,
#      kube-network-policies; then the KubeRay operator from its own manifests and raygate
#      with `helm install` (tests/cluster/install.sh);
#   3. smoke.sh (scheduling, Services, DNS, NetworkPolicies) and the checks below: raygate's
#      Pods behind its Service, probes, non-root, read-only root, PDB, the certgen hook; a
#      KubeRay sample filled in by raygate, its Pods created by the operator and placed by
#      kube-scheduler on workers only; Ray itself (ray.py): the seed's RayCluster with its
#      workloads under the NetworkPolicy engine and the autoscaler, a RayJob and a RayService
#      through the operator, and controls that show each rule guards against something real;
#      admission under failure (a Pod deleted, a rolling upgrade, a drain, every Pod gone)
#      with 0 failed admissions;
#   4. `cluster.sh down`, then leftovers.sh: nothing may be left (processes, mounts, links,
#      addresses, iptables/nft, cgroups), and no packet may have left the machine.
# Needs root. Exits non-zero on any failed check.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
started=$SECONDS
# Unix socket paths under it must stay short.
DIR="${CLUSTER_RUN_DIR:-$ROOT/.cache/cluster/run}"
PASSED=0

log() { printf '[cluster-tier +%4ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
pass() {
	PASSED=$((PASSED + 1))
	log "ok   $*"
}
((EUID == 0)) || {
	log "needs root (kubelets, containerd, network)"
	exit 1
}

# --- 1. tools and images -------------------------------------------------------------------------
scripts/cluster-tools.sh
scripts/helm-tools.sh
scripts/image.sh >/dev/null
scripts/cluster-images.sh >/dev/null
log "tools and images ready"

teardown() {
	local rc=$?
	set +e
	tests/cluster/cluster.sh down "$DIR"
	if ! tests/cluster/leftovers.sh; then
		log "FAIL the cluster left something behind"
		rc=1
	fi
	# A failed check stops the tier (set -e), so rc says whether all passed.
	log "$PASSED checks passed, exit $rc, in $((SECONDS - started))s"
	exit "$rc"
}
trap teardown EXIT

# --- 2. up, with the operator and raygate installed ----------------------------------------------
# The platform's shape: a master and four workers.
CLUSTER_WORKERS="${CLUSTER_WORKERS:-4}" tests/cluster/cluster.sh up "$DIR"
eval "$(tests/cluster/cluster.sh env "$DIR")"
k() { "$CLUSTER_KUBECTL" "$@"; }
NS="$CLUSTER_RAYGATE_NAMESPACE"
log "cluster up with raygate and the KubeRay operator"

# --- 3a. the cluster itself -------------------------------------------------------------------------
tests/cluster/smoke.sh "$DIR"

# --- 3b. raygate as the chart installs it ----------------------------------------------------------
python3 tests/cluster/checks.py installed
pass "raygate: 2 replicas Ready behind its Service, probes, non-root, read-only root, PDB, certgen hook"

# --- 3c. a KubeRay sample through raygate, run by the operator and placed by the scheduler ---------
python3 tests/cluster/checks.py sample
pass "a KubeRay sample is filled in by raygate; the operator's Pods run on workers only"

# --- 3d. Ray through raygate: workloads, the operator's lifecycle, controls -------------------------
for scenario in seed lifecycle controls; do
	python3 tests/cluster/ray.py "$scenario"
	pass "Ray on the cluster: $scenario (.cache/cluster/ray-report/$scenario.json)"
done
python3 tests/cluster/ray.py report >&2

# --- 3e. admission under failure ----------------------------------------------------------------------
python3 tests/cluster/checks.py failures
pass "0 failed admissions through a deleted Pod, a rolling upgrade and a drain; refused while every Pod is gone"

# --- 3f. nothing left the machine -----------------------------------------------------------------
python3 tests/cluster/checks.py no-leaks
pass "no packet towards a non-local address"
