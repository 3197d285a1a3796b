#!/usr/bin/env bash
# The Ray version matrix: what each Ray version's `ray start` accepts and opens, and whether the
# runtime tier passes on it. See docs/RAY-RUNTIME.md, "Ray versions".
#
#   tests/runtime/matrix.sh                   the eight versions below
#   tests/runtime/matrix.sh 2.41.0 2.60.0     some versions (any from PyPI)
#   TIER_VERSIONS="2.9.3 2.60.0" tests/runtime/matrix.sh
#                                             the runtime tier only on these (default: every
#                                             version given; "none" skips it)
#   SCENARIOS=1,3                             the runtime tier's scenarios (the default here)
#   RAYGATE_BIN=path                          passed on to tests/runtime/run.sh
#
# Per version: its venv (.cache/ray/venv-<v>, tests/runtime/venv.sh, which the tier uses too),
# `ray start`'s options with types (ray_start_options.py), the listeners of a bare head and
# worker, twice (ray_bare_listeners.py), then `tests/runtime/run.sh`. The results go to
# tests/runtime/ray-versions/<v>.json; a failing version does not stop the others. At the end
# ray_versions_data.py writes policies/ray-versions.json and the table in docs/RAY-RUNTIME.md.
# Exits non-zero if any step of any version failed. Needs root (network namespaces).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
VERSIONS=("$@")
((${#VERSIONS[@]})) || VERSIONS=(2.9.3 2.20.0 2.30.0 2.35.0 2.41.0 2.46.0 2.52.1 2.60.0)
TIER_VERSIONS="${TIER_VERSIONS:-${VERSIONS[*]}}"
export SCENARIOS="${SCENARIOS:-1,3}"
data="$ROOT/tests/runtime/ray-versions"
logs="$ROOT/.cache/matrix"
mkdir -p "$data" "$logs"
pyver=$(python3 -c 'import sys; print(sys.version.split()[0])')

log() { printf '[matrix] %s\n' "$*" >&2; }
[[ "$(id -u)" == 0 ]] || {
	log "must run as root (network namespaces, tmpfs mounts)"
	exit 1
}
record() { python3 tests/runtime/ray_versions_data.py record --dir "$data" "$@"; }

declare -A summary
failed=0
fail_step() { if [[ "$status" == ok ]]; then status="$1 FAILED"; else status+=", $1 FAILED"; fi; }
for v in "${VERSIONS[@]}"; do
	t0=$(date +%s)
	status=ok
	log "=== Ray $v"
	record --version "$v" --python "$pyver" --started

	# --- venv, the one tests/runtime/run.sh uses -------------------------------------------------
	if ! venv=$(tests/runtime/venv.sh "$v" 2>"$logs/pip-$v.log"); then
		log "Ray $v does not install on Python $pyver (see $logs/pip-$v.log)"
		record --version "$v" --step venv --failed "pip install failed on Python $pyver: $(tail -n 3 "$logs/pip-$v.log" | tr '\n' ' ')"
		summary[$v]="venv FAILED"
		failed=1
		continue
	fi

	# --- ray start's options, Serve's ports ---------------------------------------------------
	if "$venv/bin/python" -W ignore tests/runtime/ray_start_options.py --out "$logs/options-$v.json" 2>"$logs/options-$v.log"; then
		record --version "$v" --options "$logs/options-$v.json"
	else
		record --version "$v" --step options --failed "$(tail -n 3 "$logs/options-$v.log" | tr '\n' ' ')"
		fail_step options
	fi

	# --- listeners of a bare head and worker --------------------------------------------------
	if python3 tests/runtime/ray_bare_listeners.py --venv "$venv" --out "$logs/bare-$v.json" 2> >(tee "$logs/bare-$v.log" >&2); then
		record --version "$v" --bare "$logs/bare-$v.json"
	else
		record --version "$v" --step bareListeners --failed "$(tail -n 3 "$logs/bare-$v.log" | tr '\n' ' ')"
		fail_step "bare listeners"
	fi

	# --- the runtime tier ---------------------------------------------------------------------
	if [[ " $TIER_VERSIONS " == *" $v "* ]]; then
		# One runtime tier at a time on a machine: wait for another to finish.
		while pgrep -f 'tests/runtime/rig.py' >/dev/null; do
			log "another runtime tier is running (rig.py); waiting"
			sleep 30
		done
		t1=$(date +%s)
		# Which raygate the tier ran: run.sh builds the working tree unless RAYGATE_BIN is set.
		if [[ -n "${RAYGATE_BIN:-}" ]]; then
			raygate_is="RAYGATE_BIN=$RAYGATE_BIN"
		else
			raygate_is="working tree at $(git rev-parse --short HEAD)"
			git diff --quiet HEAD -- src Cargo.toml Cargo.lock policies 2>/dev/null ||
				raygate_is+=" with uncommitted changes to src/, Cargo.* or policies/"
		fi
		log "RAY_VERSION=$v SCENARIOS=$SCENARIOS tests/runtime/run.sh (log: $logs/tier-$v.log)"
		RAY_VERSION="$v" tests/runtime/run.sh >"$logs/tier-$v.log" 2>&1
		rc=$?
		record --version "$v" --tier-rc "$rc" --tier-seconds "$(($(date +%s) - t1))" --tier-started "$t1" --tier-raygate "$raygate_is" \
			--tier-log "$logs/tier-$v.log" --tier-results "$ROOT/.cache/runtime/ray-$v/results.json"
		((rc == 0)) || fail_step "runtime tier"
	else
		record --version "$v" --tier-skipped
	fi
	record --version "$v" --seconds "$(($(date +%s) - t0))"
	summary[$v]="$status ($(($(date +%s) - t0))s)"
	[[ "$status" == ok ]] || failed=1
done

python3 tests/runtime/ray_versions_data.py build --dir "$data" \
	--policy policies/ray-versions.json --doc docs/RAY-RUNTIME.md || failed=1

log "=== summary"
for v in "${VERSIONS[@]}"; do
	log "  Ray $v: ${summary[$v]}"
done
exit "$failed"
