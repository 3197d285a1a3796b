#!/usr/bin/env bash
# Builds the Helm CLI the Helm chart tier (tests/helm) runs, from the Go module
# pinned in tests/helm/tools/ (helm.sh/helm/v4, a `tool` of the wrapper module).
# Only Go is needed: the Go module proxy is reachable, release downloads are not.
#
# Output (git-ignored, safe to cache between CI runs as a whole):
#   .cache/helm/bin/helm
#   .cache/helm/go/   GOPATH, module cache and build cache
#
# The binary is rebuilt only when it is missing or its pins (go.mod, go.sum, Go
# version) changed since it was built. FORCE=1 rebuilds. HELM_CACHE=/dir moves
# the cache; HELM_PRUNE=1 deletes the Go caches afterwards and keeps bin/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tests/helm/tools"
CACHE="${HELM_CACHE:-$ROOT/.cache/helm}"
BIN="$CACHE/bin"

GO="$(command -v go || true)"
[[ -z "$GO" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
[[ -n "$GO" ]] || { echo "helm-tools: Go toolchain not found (need go >= 1.26 on PATH)" >&2; exit 1; }

export GOPATH="$CACHE/go"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOCACHE="$GOPATH/cache"
# -modcacherw lets `rm -rf .cache` work; the host's GOFLAGS are deliberately replaced.
export GOFLAGS="-trimpath -modcacherw"
# Never fetch another toolchain: Helm 4.3 needs go 1.26, which is installed.
export GOTOOLCHAIN=local
export CGO_ENABLED=0

mkdir -p "$BIN"
log() { printf '[helm-tools] %s\n' "$*" >&2; }

NICE=()
command -v nice >/dev/null && NICE=(nice -n 10)

total_start=$SECONDS
pin="$(awk '$1 == "helm.sh/helm/v4" { print $2; exit }' "$TOOLS/go.mod")"
[[ -n "$pin" ]] || { log "no helm.sh/helm/v4 pin in $TOOLS/go.mod"; exit 1; }
goversion="$("$GO" env GOVERSION)"
log "go: $goversion; helm $pin"

want="$( (cd "$TOOLS" && cat go.mod go.sum && echo "$goversion") | sha256sum | cut -d' ' -f1)"
stale() { [[ "${FORCE:-0}" == 1 || ! -e "$1" || "$(cat "$1.stamp" 2>/dev/null)" != "$2" ]]; }

out="$BIN/helm"
if stale "$out" "$want"; then
	start=$SECONDS
	(cd "$TOOLS" && "$GO" mod download)
	log "modules: ready in $((SECONDS - start))s"
	start=$SECONDS
	log "helm: building helm.sh/helm/v4/cmd/helm ..."
	# The same version stamp as upstream's release builds (`helm version`).
	(cd "$TOOLS" && "${NICE[@]}" "$GO" build \
		-ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$pin -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
		-o "$out.tmp" helm.sh/helm/v4/cmd/helm)
	mv -f "$out.tmp" "$out"
	echo "$want" >"$out.stamp"
	log "helm: built in $((SECONDS - start))s ($(du -h "$out" | cut -f1))"
else
	log "helm: up to date"
fi

if [[ "${HELM_PRUNE:-0}" == 1 ]]; then
	"$GO" clean -cache -modcache
	log "pruned Go caches"
fi

log "done in $((SECONDS - total_start))s; cache uses $(du -sh "$CACHE" | cut -f1)"
