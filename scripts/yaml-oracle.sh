#!/usr/bin/env bash
# Builds the YAML oracle (tests/yaml-oracle: kubectl's own manifest reader) into the git-ignored
# .cache/yaml-oracle and prints the binary's path. Rebuilt only when its pins (go.mod, go.sum,
# main.go) or the Go version change. tests/yaml_oracle.rs runs this.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tests/yaml-oracle"
CACHE="${YAML_ORACLE_CACHE:-$ROOT/.cache/yaml-oracle}"
OUT="$CACHE/bin/yaml-oracle"

GO="$(command -v go || true)"
[[ -z "$GO" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
[[ -n "$GO" ]] || { echo "yaml-oracle: Go toolchain not found (need go >= 1.24 on PATH or /usr/local/go/bin/go)" >&2; exit 1; }

export GOPATH="$CACHE/go"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOCACHE="$GOPATH/cache"
export GOFLAGS="-trimpath -modcacherw"
export GOTOOLCHAIN=local
export CGO_ENABLED=0

want="$( (cd "$SRC" && cat go.mod go.sum main.go && "$GO" env GOVERSION) | sha256sum | cut -d' ' -f1)"
if [[ -x "$OUT" && "$(cat "$OUT.stamp" 2>/dev/null)" == "$want" ]]; then
	echo "$OUT"
	exit 0
fi
mkdir -p "$(dirname "$OUT")"
start=$SECONDS
# Several test processes may build at once: one builds, the others wait for it.
exec 9>"$CACHE/.lock"
flock 9
if [[ ! -x "$OUT" || "$(cat "$OUT.stamp" 2>/dev/null)" != "$want" ]]; then
	(cd "$SRC" && "$GO" build -ldflags="-s -w" -o "$OUT.tmp" .) >&2
	mv -f "$OUT.tmp" "$OUT"
	echo "$want" >"$OUT.stamp"
	echo "yaml-oracle: built in $((SECONDS - start))s" >&2
fi
echo "$OUT"
