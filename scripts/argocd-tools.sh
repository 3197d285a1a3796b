#!/usr/bin/env bash
# Builds the Argo CD components the Argo CD tier (tests/argocd) runs, from the Go
# module pinned in tests/argocd/tools/ (github.com/argoproj/argo-cd/v3), and copies
# Argo CD's CRDs (Application, AppProject) from the same module.
#
# Output (git-ignored, safe to cache between CI runs as a whole):
#   .cache/argocd/bin/argocd   multi-call binary (tests/argocd/tools/argocd/main.go)
#   .cache/argocd/bin/{argocd-application-controller,argocd-repo-server,argocd-cmp-server,argocd-git-ask-pass}
#                              symlinks to it: the component is chosen by the name it runs as
#   .cache/argocd/bin/git-verify-wrapper.sh  from the same module (Argo CD's image has it on PATH)
#   .cache/argocd/crds/{application,appproject}-crd.yaml
#   .cache/argocd/go/          GOPATH, module cache (with the Go toolchain) and build cache
#
# Argo CD 3.6 needs Go 1.27. The go command fetches that toolchain from the module
# proxy as the module golang.org/toolchain (GOTOOLCHAIN below) into the module cache
# here; ARGOCD_GOTOOLCHAIN=local uses the installed Go instead.
#
# The binary is rebuilt only when it is missing or its pins (go.mod, go.sum, main.go,
# Go version) changed. FORCE=1 rebuilds. ARGOCD_CACHE=/dir moves the cache;
# ARGOCD_PRUNE=1 deletes the Go caches afterwards and keeps bin/ and crds/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tests/argocd/tools"
CACHE="${ARGOCD_CACHE:-$ROOT/.cache/argocd}"
BIN="$CACHE/bin"
CRDS="$CACHE/crds"

GO="$(command -v go || true)"
[[ -z "$GO" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
[[ -n "$GO" ]] || { echo "argocd-tools: Go toolchain not found (need go >= 1.21 on PATH)" >&2; exit 1; }

export GOPATH="$CACHE/go"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOCACHE="$GOPATH/cache"
# -modcacherw lets `rm -rf .cache` work; the host's GOFLAGS are deliberately replaced.
export GOFLAGS="-trimpath -modcacherw"
# The toolchain Argo CD's go.mod asks for (go 1.27.0), pinned to one release.
export GOTOOLCHAIN="${ARGOCD_GOTOOLCHAIN:-go1.27.3}"
export CGO_ENABLED=0

mkdir -p "$BIN" "$CRDS"
log() { printf '[argocd-tools] %s\n' "$*" >&2; }

NICE=()
command -v nice >/dev/null && NICE=(nice -n 10)

total_start=$SECONDS
# A pinned GOTOOLCHAIN names the Go version itself, so a warm run never starts the go
# command (which would fetch the toolchain again after ARGOCD_PRUNE=1).
if [[ "$GOTOOLCHAIN" == go1.* ]]; then goversion="$GOTOOLCHAIN"; else goversion="$(cd "$TOOLS" && "$GO" env GOVERSION)"; fi
pin="$(awk '$1 == "github.com/argoproj/argo-cd/v3" { print $2; exit }' "$TOOLS/go.mod")"
log "go: $goversion (GOTOOLCHAIN=$GOTOOLCHAIN); argo-cd $pin"

want="$( (cd "$TOOLS" && cat go.mod go.sum argocd/main.go && echo "$goversion") | sha256sum | cut -d' ' -f1)"
stale() { [[ "${FORCE:-0}" == 1 || ! -e "$1" || "$(cat "$1.stamp" 2>/dev/null)" != "$2" ]]; }

out="$BIN/argocd"
if stale "$out" "$want"; then
	start=$SECONDS
	(cd "$TOOLS" && "$GO" mod download)
	log "modules: ready in $((SECONDS - start))s"
	start=$SECONDS
	log "argocd: building ./argocd (application controller, repo server, cmp server) ..."
	(cd "$TOOLS" && "${NICE[@]}" "$GO" build \
		-ldflags="-s -w -X github.com/argoproj/argo-cd/v3/common.version=${pin#v}" \
		-o "$out.tmp" ./argocd)
	mv -f "$out.tmp" "$out"
	echo "$want" >"$out.stamp"
	log "argocd: built in $((SECONDS - start))s ($(du -h "$out" | cut -f1))"
else
	log "argocd: up to date"
fi
for name in argocd-application-controller argocd-repo-server argocd-cmp-server argocd-git-ask-pass; do
	ln -sfn argocd "$BIN/$name"
done

if stale "$CRDS/application-crd.yaml" "$want" || [[ ! -x "$BIN/git-verify-wrapper.sh" ]]; then
	dir="$(cd "$TOOLS" && "$GO" list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)"
	for crd in application-crd.yaml appproject-crd.yaml; do
		install -m 0644 "$dir/manifests/crds/$crd" "$CRDS/$crd"
	done
	# The repo server runs this script (on PATH in Argo CD's image) for every git revision.
	install -m 0755 "$dir/hack/git-verify-wrapper.sh" "$BIN/git-verify-wrapper.sh"
	echo "$want" >"$CRDS/application-crd.yaml.stamp"
	log "crds: Application and AppProject copied from $pin, with hack/git-verify-wrapper.sh"
else
	log "crds: up to date"
fi

if [[ "${ARGOCD_PRUNE:-0}" == 1 ]]; then
	"$GO" clean -cache -modcache
	log "pruned Go caches (the Go $GOTOOLCHAIN toolchain is fetched again on the next build)"
fi

log "done in $((SECONDS - total_start))s; cache uses $(du -sh "$CACHE" | cut -f1)"
