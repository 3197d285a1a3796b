#!/usr/bin/env bash
# Builds the Kyverno binaries the Kyverno tier (tests/kyverno) and scripts/bench-kyverno run,
# from the Go module pinned in tests/kyverno/tools/ (github.com/kyverno/kyverno, two `tool`s
# of the wrapper module), and copies Kyverno's CRDs from the same module.
# Only Go is needed: the Go module proxy is reachable, release downloads are not.
#
# Output (git-ignored, safe to cache between CI runs as a whole):
#   .cache/kyverno/bin/kyverno          the admission controller (cmd/kyverno)
#   .cache/kyverno/bin/kubectl-kyverno  the CLI (cmd/cli/kubectl-kyverno): `kyverno apply`
#   .cache/kyverno/crds/*.yaml          config/crds of the same module (kyverno.io,
#                                       policies.kyverno.io, reports, wgpolicyk8s.io)
#   .cache/kyverno/go/                  GOPATH, module cache and build cache
#
# Kyverno 1.19 asks for go 1.26.6; the installed Go serves (KYVERNO_GOTOOLCHAIN=go1.X.Y
# fetches another from the module proxy).
#
# KYVERNO_BINARIES lists what to build (default: both); the tier needs only kubectl-kyverno,
# and building one binary keeps a fresh machine's disk peak lower.
#
# The binaries are rebuilt only when missing or their pins (go.mod, go.sum, Go version)
# changed. FORCE=1 rebuilds. KYVERNO_CACHE=/dir moves the cache; GO_TOOLS_PRUNE
# (scripts/lib/go-tools.sh) deletes the Go caches afterwards and keeps bin/ and crds/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tests/kyverno/tools"
CACHE="${KYVERNO_CACHE:-$ROOT/.cache/kyverno}"
BIN="$CACHE/bin"
CRDS="$CACHE/crds"

# shellcheck source=lib/go-tools.sh
source "$ROOT/scripts/lib/go-tools.sh"
go_tools_init kyverno-tools "$CACHE" "${KYVERNO_GOTOOLCHAIN:-local}"
mkdir -p "$BIN" "$CRDS"

pin="$(awk '$1 == "github.com/kyverno/kyverno" { print $2; exit } $1 == "require" && $2 == "github.com/kyverno/kyverno" { print $3; exit }' "$TOOLS/go.mod")"
[[ -n "$pin" ]] || { log "no github.com/kyverno/kyverno pin in $TOOLS/go.mod"; exit 1; }
log "go: $(go_version) (GOTOOLCHAIN=$GOTOOLCHAIN); kyverno $pin"

want="$(stamp "$TOOLS" go.mod go.sum)"
# The same version stamp as upstream's release builds (`kyverno version`).
ldflags="-X github.com/kyverno/kyverno/pkg/version.BuildVersion=$pin"

downloaded=0
download() {
	if ((downloaded == 0)); then
		local start=$SECONDS
		(cd "$TOOLS" && "$GO" mod download)
		log "modules: ready in $((SECONDS - start))s"
		downloaded=1
	fi
}

# One build at a time: the machine may have two cores, and each link takes GiBs.
wanted=" ${KYVERNO_BINARIES:-kubectl-kyverno kyverno} "
for tool in kubectl-kyverno:cmd/cli/kubectl-kyverno kyverno:cmd/kyverno; do
	name="${tool%%:*}"
	[[ "$wanted" == *" $name "* ]] || continue
	out="$BIN/$name"
	if stale "$out" "$want"; then
		download
		go_build "$TOOLS" "$out" "$want" "$ldflags" "github.com/kyverno/kyverno/${tool#*:}"
	else
		log "$name: up to date"
	fi
done

if stale "$CRDS/kyverno.io_clusterpolicies.yaml" "$want"; then
	download
	dir="$(cd "$TOOLS" && "$GO" list -m -f '{{.Dir}}' github.com/kyverno/kyverno)"
	[[ -d "$dir/config/crds" ]] || { log "no config/crds in $dir"; exit 1; }
	rm -f "$CRDS"/*.yaml
	find "$dir/config/crds" -name '*.yaml' -exec install -m 0644 {} "$CRDS/" \;
	echo "$want" >"$CRDS/kyverno.io_clusterpolicies.yaml.stamp"
	log "crds: $(find "$CRDS" -name '*.yaml' | wc -l) copied from config/crds of $pin"
else
	log "crds: up to date"
fi

go_tools_done
