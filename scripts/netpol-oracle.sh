#!/usr/bin/env bash
# Builds the NetworkPolicy oracle (tests/netpol-oracle: kube-network-policies' own evaluation
# code, with the API server's defaulting and validation) into the git-ignored
# .cache/netpol-oracle and prints the binary's path. Rebuilt only when its pins (go.mod, go.sum,
# main.go) or the Go version change; GO_TOOLS_PRUNE is described in scripts/lib/go-tools.sh.
# tests/netpol_oracle.rs runs this.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tests/netpol-oracle"
CACHE="${NETPOL_ORACLE_CACHE:-$ROOT/.cache/netpol-oracle}"
OUT="$CACHE/bin/netpol-oracle"
KNP=sigs.k8s.io/kube-network-policies

# shellcheck source=lib/go-tools.sh
source "$ROOT/scripts/lib/go-tools.sh"
go_tools_init netpol-oracle "$CACHE"

want="$(stamp "$SRC" go.mod go.sum main.go)"
if [[ -x "$OUT" && "$(cat "$OUT.stamp" 2>/dev/null)" == "$want" ]]; then
	echo "$OUT"
	exit 0
fi
mkdir -p "$(dirname "$OUT")"

# main.go calls kube-network-policies' unexported (*Controller).evaluatePacket through
# go:linkname with a copy of its packet type: both must still be what the pinned module has.
check_linkname() {
	local dir
	dir="$(cd "$SRC" && "$GO" mod download "$KNP" && "$GO" list -m -f '{{.Dir}}' "$KNP")"
	[[ -n "$dir" ]] || { log "$KNP: module folder not found"; exit 1; }
	local theirs ours
	theirs="$(sed -n '/^type packet struct {/,/^}/p' "$dir/pkg/networkpolicy/packet.go")"
	ours="$(sed -n '/^type packet struct {/,/^}/p' "$SRC/main.go")"
	if [[ -z "$theirs" || "$theirs" != "$ours" ]]; then
		log "main.go's packet type is not $KNP's (pkg/networkpolicy/packet.go):"
		diff <(echo "$theirs") <(echo "$ours") >&2 || true
		exit 1
	fi
	if ! grep -qxF 'func (c *Controller) evaluatePacket(ctx context.Context, p packet) bool {' \
		"$dir/pkg/networkpolicy/controller.go"; then
		log "$KNP: (*Controller).evaluatePacket no longer has the signature main.go links to"
		exit 1
	fi
}

# Several test processes may build at once: one builds, the others wait for it.
exec 9>"$CACHE/.lock"
flock 9
if stale "$OUT" "$want"; then
	check_linkname
	go_build "$SRC" "$OUT" "$want" "" .
	go_tools_done
fi
echo "$OUT"
