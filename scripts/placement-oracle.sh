#!/usr/bin/env bash
# Builds the placement oracle (tests/placement-oracle: kube-scheduler's node Filter plugins and
# the kubelet's admission of a bound Pod, with the API server's defaulting and validation) into
# the git-ignored .cache/placement-oracle and prints the binary's path. Rebuilt only when its
# pins (go.mod, go.sum, main.go) or the Go version change; GO_TOOLS_PRUNE is described in
# scripts/lib/go-tools.sh. tests/placement_oracle.rs runs this.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tests/placement-oracle"
CACHE="${PLACEMENT_ORACLE_CACHE:-$ROOT/.cache/placement-oracle}"
OUT="$CACHE/bin/placement-oracle"

# shellcheck source=lib/go-tools.sh
source "$ROOT/scripts/lib/go-tools.sh"
go_tools_init placement-oracle "$CACHE"

want="$(stamp "$SRC" go.mod go.sum main.go)"
if [[ -x "$OUT" && "$(cat "$OUT.stamp" 2>/dev/null)" == "$want" ]]; then
	echo "$OUT"
	exit 0
fi
mkdir -p "$(dirname "$OUT")"

# Several test processes may build at once: one builds, the others wait for it.
exec 9>"$CACHE/.lock"
flock 9
if stale "$OUT" "$want"; then
	go_build "$SRC" "$OUT" "$want" "" .
	go_tools_done
fi
echo "$OUT"
