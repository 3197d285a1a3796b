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
# GO_TOOLS_PRUNE (scripts/lib/go-tools.sh) deletes the Go caches afterwards and keeps
# bin/ and crds/; the toolchain is then fetched again only for a rebuild.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tests/argocd/tools"
CACHE="${ARGOCD_CACHE:-$ROOT/.cache/argocd}"
BIN="$CACHE/bin"
CRDS="$CACHE/crds"

# shellcheck source=lib/go-tools.sh
source "$ROOT/scripts/lib/go-tools.sh"
# The toolchain Argo CD's go.mod asks for (go 1.27.0), pinned to one release.
go_tools_init argocd-tools "$CACHE" "${ARGOCD_GOTOOLCHAIN:-go1.27.3}"
mkdir -p "$BIN" "$CRDS"

pin="$(awk '$1 == "github.com/argoproj/argo-cd/v3" { print $2; exit }' "$TOOLS/go.mod")"
log "go: $(cd "$TOOLS" && go_version) (GOTOOLCHAIN=$GOTOOLCHAIN); argo-cd $pin"

want="$(stamp "$TOOLS" go.mod go.sum argocd/main.go)"

out="$BIN/argocd"
if stale "$out" "$want"; then
	start=$SECONDS
	(cd "$TOOLS" && "$GO" mod download)
	log "modules: ready in $((SECONDS - start))s"
	go_build "$TOOLS" "$out" "$want" "-X github.com/argoproj/argo-cd/v3/common.version=${pin#v}" ./argocd
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

go_tools_done
