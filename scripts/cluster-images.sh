#!/usr/bin/env bash
# The images the test cluster (tests/cluster) runs besides raygate's own
# (scripts/image.sh), as OCI archives its nodes load with
# `ctr -n k8s.io images import`. The nodes have no registry and this machine
# reaches only Debian, PyPI and the Go module proxy, so each image is put
# together from those, under the name the manifests use:
#
#   pause.tar             registry.k8s.io/pause:3.10        tests/cluster/images/pause (Go)
#   kuberay-operator.tar  quay.io/kuberay/operator:<KubeRay pin>
#                         the e2e tier's operator build as /manager, distroless-like
#   ray.tar               rayproject/ray:$RAY_VERSION
#                         Debian bookworm + ray[default,serve] in /opt/ray, user ray (1000)
#   busybox.tar           raygate.local/busybox:1           a shell for smoke tests
#
#   scripts/cluster-images.sh [--check] [NAME...]   (NAME: pause
#       kuberay-operator ray busybox; default all) prints the archives' paths
#
# Each archive is rebuilt only when the stamp next to it (a hash of the recipe,
# package versions, pins and binaries) changed. --check runs a command from
# each image in a chroot, as the image's user (no containerd needed). Needs
# root. docs/IMAGE.md has the names containerd gives the images.
#
# Env: FORCE=1 rebuilds; IMAGE_GZIP=1 gzips the layers; RAY_VERSION (2.60.0);
# CLUSTER_CACHE (.cache/cluster) holds images/, debs/ and wheels/ (downloads,
# kept) and go/ (the pause build's Go caches); E2E_CACHE as scripts/e2e-tools.sh.
set -euo pipefail

IMG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/image-root.sh
source "$IMG_ROOT/scripts/lib/image-root.sh"
img_init cluster-images
trap 'ray_unmount; img_cleanup' EXIT

E2E_BIN="${E2E_CACHE:-$IMG_ROOT/.cache/e2e}/bin"
RAY_VERSION="${RAY_VERSION:-2.60.0}"
# serve: RayService Pods run `serve` and the Serve controller.
RAY_EXTRAS=default,serve
# Uncompressed by default: the archives never leave the machine, and each node
# would gunzip them again. Ray's 589 MB took 3 s to write and 8 s to import;
# gzipped, 214 MB took 51 s and 14 s (2 cores).
GZIP_LAYERS="${IMAGE_GZIP:-0}"

check=0
names=()
for arg in "$@"; do
	case "$arg" in
	--check) check=1 ;;
	pause | kuberay-operator | ray | busybox) names+=("$arg") ;;
	*)
		echo "usage: $0 [--check] [pause|kuberay-operator|ray|busybox ...]" >&2
		exit 2
		;;
	esac
done
((${#names[@]})) || names=(pause kuberay-operator ray busybox)

mkoci() {
	local opts=()
	((GZIP_LAYERS)) && opts+=(--gzip)
	"${NICE[@]}" python3 "$MKOCI" "${opts[@]}" "$@" >&2
}

# e2e_binary NAME: a binary scripts/e2e-tools.sh builds, built first if missing.
e2e_binary() {
	if [[ ! -x "$E2E_BIN/$1" ]]; then
		img_log "$1 missing in $E2E_BIN: running scripts/e2e-tools.sh"
		"$IMG_ROOT/scripts/e2e-tools.sh" >&2
	fi
	echo "$E2E_BIN/$1"
}

# The manifests' names for the images, from the pins they must match.
pause_ref=registry.k8s.io/pause:3.10
kuberay_pin="$(awk '$1 == "github.com/ray-project/kuberay/ray-operator" { print $2; exit }' \
	"$IMG_ROOT/tests/e2e/tools/kuberay/go.mod")"
operator_ref="quay.io/kuberay/operator:$kuberay_pin"
ray_ref="rayproject/ray:$RAY_VERSION"
busybox_ref=raygate.local/busybox:1
[[ -n "$kuberay_pin" ]] || { img_log "could not read the KubeRay pin (tests/e2e/tools/kuberay/go.mod)"; exit 1; }

# --- recipes: build_NAME ROOT OUT REF. A recipe's text is part of its stamp. ---

build_pause() {
	local root="$1" out="$2" ref="$3"
	(
		# shellcheck source=lib/go-tools.sh
		source "$IMG_ROOT/scripts/lib/go-tools.sh"
		go_tools_init cluster-images "$IMG_CACHE"
		cd "$IMG_ROOT/tests/cluster/images/pause"
		"${NICE[@]}" "$GO" build -ldflags="-s -w" -o "$root/pause" .
	)
	# As upstream: scratch, /pause, the nobody-like 65535.
	mkoci --ref "$ref" --entrypoint '["/pause"]' --user 65535:65535 "$root" "$out"
}

build_kuberay-operator() {
	local root="$1" out="$2" ref="$3"
	distroless_root "$root"
	install -m 0755 "$(e2e_binary kuberay-operator)" "$root/manager"
	check_needed_libs "$root" "$root/manager"
	# As upstream's Dockerfile (distroless base, WORKDIR /, USER 65532:65532, ENTRYPOINT
	# /manager), so KubeRay's manifests and Helm chart (command: /manager) work unchanged.
	mkoci --ref "$ref" --entrypoint '["/manager"]' --user 65532:65532 --workdir / \
		--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$root" "$out"
}

build_busybox() {
	local root="$1" out="$2" ref="$3"
	busybox_root "$root"
	mkoci --ref "$ref" --cmd '["sh"]' "$root" "$out"
}

# Ray: Debian bookworm (as the host: its python3 is the one the wheels are for)
# with the packages KubeRay's Pods call (wget in the probes, ps, ip), and
# ray[default,serve] (RayService needs Serve) in a venv at /opt/ray, installed offline from wheels the host's
# pip downloaded. The root is never given network access or a resolver.
RAY_PACKAGES=(python3 python3-venv ca-certificates procps iproute2 wget)
RAY_MOUNTS=()
ray_unmount() {
	local m i
	for ((i = ${#RAY_MOUNTS[@]} - 1; i >= 0; i--)); do
		m="${RAY_MOUNTS[i]}"
		mountpoint -q "$m" && umount "$m"
	done
	RAY_MOUNTS=()
}

# ray_wheels: the directory with ray[$RAY_EXTRAS]==$RAY_VERSION and its
# dependencies, downloaded once (PyPI is asked again only when it is missing).
ray_wheels() {
	local dir="$IMG_CACHE/wheels/ray-$RAY_VERSION-${RAY_EXTRAS//,/-}"
	if [[ ! -f "$dir/.complete" ]]; then
		local start=$SECONDS
		rm -rf "$dir.tmp"
		mkdir -p "$dir.tmp"
		# Wheels only: the image has no compiler, and the install must not build anything.
		"${NICE[@]}" "$(ray_host_python)" -m pip download --quiet --disable-pip-version-check \
			--only-binary=:all: --dest "$dir.tmp" "ray[$RAY_EXTRAS]==$RAY_VERSION" >&2
		touch "$dir.tmp/.complete"
		rm -rf "$dir"
		mv "$dir.tmp" "$dir"
		img_log "ray wheels: $(find "$dir" -name '*.whl' | wc -l) in $((SECONDS - start))s ($(du -sh "$dir" | cut -f1))"
	fi
	echo "$dir"
}

# ray_host_python: a host Python of bookworm's version (3.11) with pip, so pip
# picks the wheels bookworm's python3 can load (CPython tag, glibc 2.36).
ray_host_python() {
	local py
	for py in /usr/bin/python3 python3; do
		if "$py" -c 'import sys, pip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
			echo "$py"
			return
		fi
	done
	img_log "no Python 3.11 with pip on the host (bookworm's python3 is 3.11)"
	exit 1
}

build_ray() {
	local root="$1" out="$2" ref="$3" wheels start include
	local apt_opts=() cvu="" check_date=""
	wheels="$(ray_wheels)"
	start=$SECONDS
	command -v mmdebstrap >/dev/null || {
		img_log "installing mmdebstrap"
		apt-get install -y -qq --no-install-recommends mmdebstrap >&2
	}
	# The host's own apt settings for an archive snapshot whose Release files
	# have expired (this machine's mirror needs both).
	eval "$(apt-config shell cvu Acquire::Check-Valid-Until check_date Acquire::Check-Date)"
	[[ -n "$cvu" ]] && apt_opts+=(--aptopt="Acquire::Check-Valid-Until \"$cvu\"")
	[[ -n "$check_date" ]] && apt_opts+=(--aptopt="Acquire::Check-Date \"$check_date\"")
	rmdir "$root"
	# bookworm, bookworm-updates and bookworm-security from deb.debian.org
	# (mmdebstrap adds the last two for a stable suite).
	include="$(
		IFS=,
		echo "${RAY_PACKAGES[*]}"
	)"
	"${NICE[@]}" mmdebstrap --quiet --mode=root --variant=minbase --include="$include" \
		"${apt_opts[@]}" bookworm "$root" >&2
	img_log "ray: mmdebstrap in $((SECONDS - start))s ($(du -sh "$root" | cut -f1))"

	# Offline install in the image's own Python. SOURCE_DATE_EPOCH makes pip
	# write hash-checked .pyc files: the layer's mtimes are all 0, so
	# timestamp-checked ones would be stale and recompiled at every import.
	start=$SECONDS
	mkdir -p "$root/tmp/wheels"
	mount --bind -o ro "$wheels" "$root/tmp/wheels"
	RAY_MOUNTS+=("$root/tmp/wheels")
	mount -t proc proc "$root/proc"
	RAY_MOUNTS+=("$root/proc")
	"${NICE[@]}" chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		LANG=C.UTF-8 SOURCE_DATE_EPOCH=0 /bin/sh -ec "
		python3 -m venv /opt/ray
		/opt/ray/bin/pip install --quiet --disable-pip-version-check --no-index --no-cache-dir \
			--find-links /tmp/wheels 'ray[$RAY_EXTRAS]==$RAY_VERSION'
		# Debian's own .pyc files are timestamp-checked too: rewrite them.
		python3 -m compileall -q -f -j 0 --invalidation-mode checked-hash \
			/usr/lib/python3.11 /usr/lib/python3/dist-packages >/dev/null
		/opt/ray/bin/python -c 'import ray; assert ray.__version__ == \"$RAY_VERSION\", ray.__version__'
	" >&2
	ray_unmount
	rmdir "$root/tmp/wheels"
	img_log "ray: venv in $((SECONDS - start))s ($(du -sh "$root/opt/ray" | cut -f1))"

	# The user rayproject/ray images run as: ray, 1000, group users (100).
	echo 'ray:x:1000:100:ray:/home/ray:/bin/bash' >>"$root/etc/passwd"
	[[ -f "$root/etc/shadow" ]] && echo 'ray:*:0:0:99999:7:::' >>"$root/etc/shadow"
	install -d -m 0755 -o 1000 -g 100 "$root/home/ray"
	cp -a "$root/etc/skel/." "$root/home/ray/"
	chown -R 1000:100 "$root/home/ray"

	# The runtime mounts its own resolv.conf, hostname and hosts; mmdebstrap
	# copied the host's. Logs, caches and package lists only make the layer
	# differ from one build to the next.
	rm -f "$root/etc/resolv.conf"
	echo ray >"$root/etc/hostname"
	chmod 0644 "$root/etc/hostname"
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/ldconfig/aux-cache \
		"$root"/var/log/*.log "$root"/var/log/apt/* "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
		"$root/root/.cache"

	mkoci --ref "$ref" --exclude-contents dev --exclude-contents proc --exclude-contents sys \
		--env PATH=/opt/ray/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--env VIRTUAL_ENV=/opt/ray --env LANG=C.UTF-8 --env LC_ALL=C.UTF-8 --env HOME=/home/ray \
		--user 1000 --workdir /home/ray --cmd '["/bin/bash"]' "$root" "$out"
}

# --- checks: check_NAME UNPACKED_DIR, run by --check ---

check_pause() { img_run "$1" /pause -v; }
check_kuberay-operator() {
	# Go's flag package prints the usage and exits 0 on --help.
	local usage
	usage="$(img_run "$1" /manager --help 2>&1 || true)"
	grep -- -metrics-addr <<<"$usage"
}
check_busybox() { img_run "$1" sh -c 'id -u; echo ok'; }
check_ray() {
	img_run "$1" python -c 'import ray, ray.serve; print("ray", ray.__version__, "with serve")'
	img_run "$1" wget --help >/dev/null && echo "wget runs"
}

for name in "${names[@]}"; do
	# The stamp's inputs besides the recipe: words, Debian packages (by
	# version) and files (by content).
	words=() debs=() files=()
	case "$name" in
	pause)
		ref="$pause_ref"
		# The Go version decides the binary; asking costs 50 ms.
		words=("$("$(command -v go || echo /usr/local/go/bin/go)" env GOVERSION 2>/dev/null || echo no-go)")
		files=("$IMG_ROOT"/tests/cluster/images/pause/{go.mod,main.go})
		;;
	kuberay-operator)
		ref="$operator_ref" debs=("${DISTROLESS_PACKAGES[@]}" ca-certificates)
		files=("$(e2e_binary kuberay-operator)")
		;;
	busybox) ref="$busybox_ref" debs=(busybox-static) ;;
	ray)
		# The host's candidates stand for what mmdebstrap installs (the same mirror).
		ref="$ray_ref" debs=("${RAY_PACKAGES[@]}")
		words=("extras=$RAY_EXTRAS" "$(declare -f ray_wheels ray_host_python)")
		;;
	esac
	out="$IMG_OUT/$name.tar"
	deb_resolve "${debs[@]}"
	want="$(img_stamp "$ref" "gzip=$GZIP_LAYERS" "$(declare -f "build_$name")" "${words[@]}" \
		$(deb_versions "${debs[@]}") -- "$MKOCI" "$IMG_ROOT/scripts/lib/image-root.sh" "${files[@]}")"
	if img_stale "$out" "$want"; then
		start=$SECONDS
		work="$(img_tmpdir)"
		mkdir -p "$work/root"
		"build_$name" "$work/root" "$out" "$ref"
		img_done "$out" "$want" "$start"
		rm -rf "$work"
	else
		img_log "$name.tar: up to date ($ref)"
	fi
	if ((check)); then
		work="$(img_tmpdir)"
		oci_unpack "$out" "$work"
		"check_$name" "$work" >&2 || { img_log "check of $name.tar ($ref) failed"; exit 1; }
		img_log "$name.tar: check passed"
		rm -rf "$work"
	fi
	echo "$out"
done
