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
# the cache; GO_TOOLS_PRUNE (scripts/lib/go-tools.sh) deletes the Go caches
# afterwards and keeps bin/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tests/helm/tools"
CACHE="${HELM_CACHE:-$ROOT/.cache/helm}"
BIN="$CACHE/bin"

# shellcheck source=lib/go-tools.sh
source "$ROOT/scripts/lib/go-tools.sh"
# Helm 4.3 needs go 1.26, which is installed.
go_tools_init helm-tools "$CACHE"
mkdir -p "$BIN"

pin="$(awk '$1 == "helm.sh/helm/v4" { print $2; exit }' "$TOOLS/go.mod")"
[[ -n "$pin" ]] || { log "no helm.sh/helm/v4 pin in $TOOLS/go.mod"; exit 1; }
log "go: $(go_version); helm $pin"

want="$(stamp "$TOOLS" go.mod go.sum)"

out="$BIN/helm"
if stale "$out" "$want"; then
	start=$SECONDS
	(cd "$TOOLS" && "$GO" mod download)
	log "modules: ready in $((SECONDS - start))s"
	# The same version stamp as upstream's release builds (`helm version`).
	go_build "$TOOLS" "$out" "$want" \
		"-X helm.sh/helm/v4/internal/version.version=$pin -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
		helm.sh/helm/v4/cmd/helm
else
	log "helm: up to date"
fi

go_tools_done
