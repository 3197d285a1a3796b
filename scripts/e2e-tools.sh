#!/usr/bin/env bash
# Builds the binaries the e2e tier runs (kube-apiserver, kubectl, etcd,
# kube-controller-manager for garbage collection, and the KubeRay operator) from
# the Go modules pinned in tests/e2e/tools/, and copies
# KubeRay's CRDs next to them. Only Go (>= 1.24) is needed: this machine and
# CI reach the Go module proxy but cannot download release binaries.
#
# Output (git-ignored, safe to cache between CI runs as a whole):
#   .cache/e2e/bin/{kube-apiserver,kubectl,etcd,kube-controller-manager,kuberay-operator}
#   .cache/e2e/crds/ray.io_*.yaml
#   .cache/e2e/go/   GOPATH, module cache and build cache (pruned under CI)
#
# A binary is rebuilt only when it is missing or its pins (go.mod, go.sum,
# wrapper sources) changed since it was built. FORCE=1 rebuilds everything;
# GO_TOOLS_PRUNE is described in scripts/lib/go-tools.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tests/e2e/tools"
# E2E_CACHE may point outside the work tree (e.g. a persistent CI cache).
CACHE="${E2E_CACHE:-$ROOT/.cache/e2e}"
BIN="$CACHE/bin"
CRDS="$CACHE/crds"

# shellcheck source=lib/go-tools.sh
source "$ROOT/scripts/lib/go-tools.sh"
go_tools_init e2e-tools "$CACHE"
mkdir -p "$BIN" "$CRDS"

# pinned MODULE_DIR MODULE: version as written in go.mod (no module cache needed).
pinned() { awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"; }

log "go: $("$GO" version)"
log "pins: kubernetes $(pinned "$TOOLS" k8s.io/kubernetes), etcd $(pinned "$TOOLS" go.etcd.io/etcd/server/v3)," \
	"kuberay $(pinned "$TOOLS/kuberay" github.com/ray-project/kuberay/ray-operator)"

# Module downloads and version look-ups happen only when something must be
# built, so a warm run never touches the module cache (it may be pruned).
declare -A READY=()
prepare() {
	local dir="$1"
	[[ -n "${READY[$dir]:-}" ]] && return
	local start=$SECONDS
	(cd "$dir" && "$GO" mod download)
	log "modules for ${dir#"$ROOT"/}: ready in $((SECONDS - start))s"
	READY[$dir]=1
}

# build NAME MODULE_DIR PACKAGE STAMP [extra -ldflags]
build() {
	local name="$1" dir="$2" pkg="$3" want="$4" extra="${5:-}"
	if ! stale "$BIN/$name" "$want"; then
		log "$name: up to date"
		return
	fi
	prepare "$dir"
	go_build "$dir" "$BIN/$name" "$want" "$extra" "$pkg"
}

# Without these the binaries report v0.0.0-master, which kubectl flags as version skew.
k8s_ldflags() {
	local version minor pkg flags=""
	version="$(cd "$TOOLS" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)"
	minor="${version#v1.}"
	minor="${minor%%.*}"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	echo "$flags"
}

k8s_stamp="$(stamp "$TOOLS" go.mod go.sum)"
kuberay_stamp="$(stamp "$TOOLS/kuberay" go.mod go.sum)"
# The cluster tier (scripts/cluster-tools.sh) builds kube-controller-manager from the same
# pins with the same flags: a copy it built from the same stamp is the same binary.
cluster_kcm="${CLUSTER_CACHE:-$ROOT/.cache/cluster}/bin/kube-controller-manager"
if stale "$BIN/kube-controller-manager" "$k8s_stamp" && ! stale "$cluster_kcm" "$k8s_stamp"; then
	cp -f "$cluster_kcm" "$BIN/kube-controller-manager.tmp"
	mv -f "$BIN/kube-controller-manager.tmp" "$BIN/kube-controller-manager"
	echo "$k8s_stamp" >"$BIN/kube-controller-manager.stamp"
	log "kube-controller-manager: copied from ${cluster_kcm#"$ROOT"/} (same pins)"
fi
K8S_LDFLAGS=""
if stale "$BIN/kube-apiserver" "$k8s_stamp" || stale "$BIN/kubectl" "$k8s_stamp" ||
	stale "$BIN/kube-controller-manager" "$k8s_stamp"; then
	prepare "$TOOLS"
	K8S_LDFLAGS="$(k8s_ldflags)"
fi

build kube-apiserver "$TOOLS" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_stamp" "$K8S_LDFLAGS"
build kubectl "$TOOLS" k8s.io/kubernetes/cmd/kubectl "$k8s_stamp" "$K8S_LDFLAGS"
build kube-controller-manager "$TOOLS" k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_stamp" "$K8S_LDFLAGS"
build etcd "$TOOLS" ./etcd "$(stamp "$TOOLS" go.mod go.sum etcd/main.go)"
build kuberay-operator "$TOOLS/kuberay" github.com/ray-project/kuberay/ray-operator "$kuberay_stamp"

# The CRDs must match the operator build exactly, so take them from the same module.
if stale "$CRDS/ray.io_rayclusters.yaml" "$kuberay_stamp"; then
	prepare "$TOOLS/kuberay"
	kuberay_dir="$(cd "$TOOLS/kuberay" && "$GO" list -m -f '{{.Dir}}' github.com/ray-project/kuberay/ray-operator)"
	rm -f "$CRDS"/ray.io_*.yaml
	n=0
	for crd in "$kuberay_dir"/config/crd/bases/ray.io_*.yaml; do
		[[ -f "$crd" ]] || continue
		install -m 0644 "$crd" "$CRDS/"
		n=$((n + 1))
	done
	((n > 0)) || { log "no CRDs found under $kuberay_dir/config/crd/bases"; exit 1; }
	echo "$kuberay_stamp" >"$CRDS/ray.io_rayclusters.yaml.stamp"
	log "crds: $n copied to ${CRDS#"$ROOT"/} ($(cd "$CRDS" && echo ray.io_*.yaml))"
else
	log "crds: up to date"
fi

go_tools_done
