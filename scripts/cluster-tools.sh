#!/usr/bin/env bash
# Builds and installs what the real-node cluster (tests/cluster/cluster.sh) runs:
#   - Debian packages: containerd, runc, the CNI plugins, iptables and friends
#     (installed only when missing; needs root, as the cluster itself does);
#   - kube-apiserver, etcd and kubectl from scripts/e2e-tools.sh;
#   - kubelet, kube-controller-manager, kube-scheduler and kube-proxy from the
#     same k8s.io/kubernetes pin (tests/e2e/tools/go.mod), with the same flags;
#   - kube-network-policies (tests/cluster/tools/kube-network-policies/), built from
#     a copy of its source with tests/cluster/tools/kube-network-policies-nfqueue.patch;
#   - CoreDNS with only the plugins an answer-only cluster DNS needs
#     (tests/cluster/tools/coredns/);
#   - OCI archives of the last two, which run as Pods.
#
# Output (git-ignored):
#   .cache/cluster/bin/        the binaries
#   .cache/cluster/component-images/*.tar   images cluster.sh imports on every node
#   .cache/cluster/go/         GOPATH, module cache and build cache (pruned under CI)
#
# Everything is stamped: a warm run rebuilds nothing and takes about a second.
# FORCE=1 rebuilds everything; GO_TOOLS_PRUNE is described in scripts/lib/go-tools.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_TOOLS="$ROOT/tests/e2e/tools"
TOOLS="$ROOT/tests/cluster/tools"
CACHE="${CLUSTER_CACHE:-$ROOT/.cache/cluster}"
BIN="$CACHE/bin"
IMAGES="$CACHE/component-images"
SRC="$CACHE/src"

# shellcheck source=lib/go-tools.sh
source "$ROOT/scripts/lib/go-tools.sh"
go_tools_init cluster-tools "$CACHE"
mkdir -p "$BIN" "$IMAGES" "$SRC"

# --- Debian packages -----------------------------------------------------------------
# conntrack: kube-proxy flushes stale UDP entries with it; patch: applies the
# kube-network-policies patch; socat: kubectl port-forward through the kubelet.
# (scripts/cluster-images.sh installs what the images need.)
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack nftables socat patch)
missing=()
for p in "${PACKAGES[@]}"; do
	[[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
	((EUID == 0)) || { log "missing Debian packages (${missing[*]}); run as root to install them"; exit 1; }
	log "installing ${missing[*]}"
	# A fresh machine may have no package lists yet; update only when the install needs it.
	apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
		{ apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
else
	log "packages: installed"
fi

# --- the e2e tier's control plane (kube-apiserver, etcd, kubectl) ----------------------
"$ROOT/scripts/e2e-tools.sh"

# --- Go builds -------------------------------------------------------------------------
declare -A READY=()
prepare() {
	local dir="$1"
	[[ -n "${READY[$dir]:-}" ]] && return
	local start=$SECONDS
	(cd "$dir" && "$GO" mod download)
	log "modules for ${dir#"$ROOT"/}: ready in $((SECONDS - start))s"
	READY[$dir]=1
}

# The version the e2e tier stamps into kube-apiserver (scripts/e2e-tools.sh), so
# that every component reports v1.34.x rather than v0.0.0-master.
k8s_ldflags() {
	local version minor pkg flags=""
	version="$(cd "$K8S_TOOLS" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)"
	minor="${version#v1.}"
	minor="${minor%%.*}"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	echo "$flags"
}

k8s_stamp="$(stamp "$K8S_TOOLS" go.mod go.sum)"
K8S_LDFLAGS=""
for name in kubelet kube-controller-manager kube-scheduler kube-proxy; do
	if ! stale "$BIN/$name" "$k8s_stamp"; then
		log "$name: up to date"
		continue
	fi
	prepare "$K8S_TOOLS"
	[[ -n "$K8S_LDFLAGS" ]] || K8S_LDFLAGS="$(k8s_ldflags)"
	go_build "$K8S_TOOLS" "$BIN/$name" "$k8s_stamp" "$K8S_LDFLAGS" "k8s.io/kubernetes/cmd/$name"
done

# kube-network-policies: the wrapper module pins and checksums the source; the build
# runs in a patched copy of it, with upstream's own go.mod and go.sum (the wrapper's
# go.sum holds the same dependency versions, so `prepare` downloads them).
knp_dir="$TOOLS/kube-network-policies"
knp_patch="$TOOLS/kube-network-policies-nfqueue.patch"
knp_stamp="$(stamp "$TOOLS" kube-network-policies/go.mod kube-network-policies/go.sum kube-network-policies-nfqueue.patch)"
if stale "$BIN/kube-network-policies" "$knp_stamp"; then
	prepare "$knp_dir"
	module="$(cd "$knp_dir" && "$GO" list -m -f '{{.Dir}}' sigs.k8s.io/kube-network-policies)"
	patched="$SRC/kube-network-policies"
	rm -rf "$patched"
	cp -r "$module" "$patched"
	chmod -R u+w "$patched"
	patch -s -p1 -d "$patched" <"$knp_patch"
	go_build "$patched" "$BIN/kube-network-policies" "$knp_stamp" "" ./cmd
	rm -rf "$patched"
else
	log "kube-network-policies: up to date"
fi

coredns_stamp="$(stamp "$TOOLS/coredns" go.mod go.sum main.go)"
if stale "$BIN/coredns" "$coredns_stamp"; then
	prepare "$TOOLS/coredns"
	go_build "$TOOLS/coredns" "$BIN/coredns" "$coredns_stamp" "" .
else
	log "coredns: up to date"
fi

# --- images ----------------------------------------------------------------------------
# CoreDNS and kube-network-policies run as Pods, like in any cluster, so they need
# images: one static binary each, written by scripts/lib/mkoci.py (the project's OCI
# archive writer, shared with scripts/cluster-images.sh, which makes all other images).
MKOCI="$ROOT/scripts/lib/mkoci.py"

# pinned MODULE_DIR MODULE: the version go.mod requires (no module cache needed).
pinned() { awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"; }

# image REF TAR STAMP BINARY PATH_IN_IMAGE
image() {
	local ref="$1" tar="$2" want="$3" binary="$4" path="$5"
	want="$want $(sha256sum "$MKOCI" | cut -d' ' -f1)"
	if ! stale "$tar" "$want"; then
		log "image $ref: up to date"
		return
	fi
	local rootfs="$SRC/rootfs-${tar##*/}"
	rm -rf "$rootfs"
	install -D -m 0755 "$binary" "$rootfs$path"
	mkdir -m 1777 "$rootfs/tmp"
	python3 "$MKOCI" --ref "$ref" --entrypoint "[\"$path\"]" "$rootfs" "$tar" >&2
	rm -rf "$rootfs"
	echo "$want" >"$tar.stamp"
	log "image $ref: written to ${tar#"$ROOT"/}"
}

# The names tests/cluster/cluster.sh's manifests use.
image "raygate.local/cluster/coredns:$(pinned "$TOOLS/coredns" github.com/coredns/coredns)" \
	"$IMAGES/coredns.tar" "$coredns_stamp" "$BIN/coredns" /coredns
image "raygate.local/cluster/kube-network-policies:$(pinned "$knp_dir" sigs.k8s.io/kube-network-policies)-nfqueue" \
	"$IMAGES/kube-network-policies.tar" "$knp_stamp" "$BIN/kube-network-policies" /bin/kube-network-policies

go_tools_done
