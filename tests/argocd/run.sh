#!/usr/bin/env bash
# The Argo CD tier: builds the pinned tools (cached), starts a loopback control plane
# with the KubeRay operator, runs real Argo CD (application controller, repo server and
# raygate's Config Management Plugin under argocd-cmp-server) against it with raygate as
# the admission webhook, drives the scenarios of tests/argocd/driver.py, and always
# tears everything down. ARGOCD_TIER_ONLY=1,3 runs only those scenarios; ARGOCD_TIER_KEEP=1
# keeps the logs of a run that passed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"

log() { printf '[argocd-tier] %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

started=$(date +%s)
scripts/e2e-tools.sh
scripts/argocd-tools.sh

# redis-server (Argo CD's cache) from Debian; PyYAML for the driver.
if ! command -v redis-server >/dev/null; then
	[[ $(id -u) == 0 ]] || die "redis-server is missing: apt-get install redis-server"
	log "installing redis-server"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
	[[ $(id -u) == 0 ]] || die "PyYAML is missing: apt-get install python3-yaml"
	log "installing python3-yaml"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml >/dev/null
fi
for tool in git curl openssl redis-server python3; do
	command -v "$tool" >/dev/null || die "$tool is required"
done

cargo build --locked --bin raygate
dir=$(mktemp -d -t raygate-argocd.XXXXXX)
# A private copy: a concurrent cargo build must not relink the binary mid-run.
mkdir -p "$dir/bin"
cp target/debug/raygate "$dir/bin/raygate"

teardown() {
	status=$?
	trap - EXIT INT TERM
	# Processes the driver started (it records each PID); only signal our own.
	for pidfile in "$dir"/pids/*.pid; do
		[[ -f "$pidfile" ]] || continue
		pid=$(cat "$pidfile")
		name=$(basename "$pidfile" .pid)
		if kill -0 "$pid" 2>/dev/null && grep -qa -e argocd -e raygate -e redis "/proc/$pid/cmdline" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.2
			done
			kill -KILL "$pid" 2>/dev/null || true
			log "$name stopped (pid $pid)"
		fi
		rm -f "$pidfile"
	done
	tests/e2e/cluster.sh down "$dir/cluster" || true
	if [[ "$status" -ne 0 ]]; then
		log "FAILED (exit $status); logs kept in $dir/logs and $dir/cluster/logs"
	elif [[ -n "${ARGOCD_TIER_KEEP:-}" ]]; then
		log "passed in $(($(date +%s) - started))s; logs kept in $dir/logs and $dir/cluster/logs"
	else
		rm -rf "$dir"
		log "passed in $(($(date +%s) - started))s"
	fi
	exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tests/e2e/cluster.sh up "$dir/cluster"
eval "$(tests/e2e/cluster.sh env "$dir/cluster")"
tests/e2e/cluster.sh nodes "$dir/cluster"
log "control plane up in $(($(date +%s) - started))s"

ARGOCD_TIER_DIR="$dir" \
	ARGOCD_BIN="${ARGOCD_CACHE:-$ROOT/.cache/argocd}/bin" \
	ARGOCD_CRDS="${ARGOCD_CACHE:-$ROOT/.cache/argocd}/crds" \
	E2E_CRDS="${E2E_CRDS:-$ROOT/.cache/e2e/crds}" \
	RAYGATE_BIN="$dir/bin/raygate" \
	python3 -u tests/argocd/driver.py
