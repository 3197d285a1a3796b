# Shared by scripts/image.sh and scripts/cluster-images.sh, which build OCI
# image archives for the test cluster without Docker or a registry: the roots
# are put together from Debian packages (apt-get download + dpkg-deb -x) and
# written by scripts/lib/mkoci.py. Sourced, never run.
#
# Building needs root: dpkg-deb -x only keeps the packages' owners for root,
# and the layer records owners as they are on disk.

# img_init NAME: the cache layout and the checks every image build needs.
img_init() {
	IMG_NAME="$1"
	IMG_CACHE="${CLUSTER_CACHE:-$IMG_ROOT/.cache/cluster}"
	IMG_OUT="$IMG_CACHE/images"
	IMG_DEBS="$IMG_CACHE/debs"
	MKOCI="$IMG_ROOT/scripts/lib/mkoci.py"
	mkdir -p "$IMG_OUT" "$IMG_DEBS" "$IMG_CACHE/tmp"
	((EUID == 0)) || { img_log "needs root (package owners, chroot)"; exit 1; }
	for tool in apt-get apt-cache dpkg-deb python3 sha256sum; do
		command -v "$tool" >/dev/null || { img_log "$tool not found (a Debian host is expected)"; exit 1; }
	done
	IMG_TMP="$(mktemp -d "$IMG_CACHE/tmp/$IMG_NAME.XXXXXX")"
	# Image builds are long and I/O-bound; yield to interactive work on shared machines.
	NICE=()
	if command -v nice >/dev/null; then NICE=(nice -n 10); fi
}

img_log() { printf '[%s] %s\n' "${IMG_NAME:-images}" "$*" >&2; }

# img_tmpdir: a new scratch directory. They all live in one directory per run,
# next to the outputs (same filesystem, so nothing large lands in a small
# /tmp), which img_cleanup removes. (Called as $(img_tmpdir), in a subshell,
# so the run's directory is made by img_init.)
img_tmpdir() { mktemp -d "$IMG_TMP/XXXXXX"; }
img_cleanup() { [[ -z "${IMG_TMP:-}" ]] || rm -rf "$IMG_TMP"; }

# img_stamp WORDS... -- FILES...: hash of the inputs that determine an image.
# Functions are passed by their text (`declare -f`), so editing one image's
# recipe rebuilds that image only.
img_stamp() {
	{
		while (($#)) && [[ "$1" != -- ]]; do
			printf '%s\n' "$1"
			shift
		done
		if (($#)); then shift; fi
		if (($#)); then sha256sum "$@"; fi
	} | sha256sum | cut -d' ' -f1
}

# img_stale ARCHIVE STAMP: whether ARCHIVE is missing or was built from other inputs.
img_stale() { [[ "${FORCE:-0}" == 1 || ! -s "$1" || "$(cat "$1.stamp" 2>/dev/null)" != "$2" ]]; }

# img_done ARCHIVE STAMP START: records the stamp once the archive is complete.
img_done() {
	echo "$2" >"$1.stamp"
	img_log "$(basename "$1"): built in $((SECONDS - $3))s ($(du -h "$1" | cut -f1))"
}

# deb_resolve PACKAGES...: the versions apt would install, into DEB_VERSION.
# The host's package lists decide them (they are the pin), and are fetched only
# when they lack a package. One apt-cache run for all: each costs half a second.
declare -A DEB_VERSION=()
deb_resolve() {
	local pkg ver attempt missing=()
	deb_missing() {
		missing=()
		for pkg in "$@"; do [[ -n "${DEB_VERSION[$pkg]:-}" ]] || missing+=("$pkg"); done
		((${#missing[@]}))
	}
	for attempt in 1 2; do
		deb_missing "$@" || return 0
		while read -r pkg ver; do
			[[ "$ver" == "(none)" ]] || DEB_VERSION[$pkg]="$ver"
		done < <(apt-cache policy "${missing[@]}" 2>/dev/null |
			awk '/^[^ ]/ { p = $1; sub(/:$/, "", p) } $1 == "Candidate:" { print p, $2 }')
		deb_missing "$@" || return 0
		if ((attempt == 1)); then
			img_log "apt-get update (no candidate for ${missing[*]})"
			apt-get update -qq >&2
		fi
	done
	img_log "no Debian package ${missing[*]}"
	exit 1
}

# deb_versions PACKAGES...: "name=version" lines, for stamps.
deb_versions() {
	local p
	deb_resolve "$@"
	for p in "$@"; do echo "$p=${DEB_VERSION[$p]}"; done
}

# deb_fetch PACKAGE: the path of the package's .deb, downloaded once per
# version into .cache/cluster/debs/NAME_VERSION/.
deb_fetch() {
	local pkg="$1" ver dir f
	[[ -n "${DEB_VERSION[$pkg]:-}" ]] || deb_resolve "$pkg"
	ver="${DEB_VERSION[$pkg]}"
	dir="$IMG_DEBS/${pkg}_${ver//:/%3a}"
	f="$(find "$dir" -maxdepth 1 -name '*.deb' 2>/dev/null | head -1)"
	if [[ -z "$f" ]]; then
		mkdir -p "$dir.tmp"
		# _apt cannot write into root's cache directory; the download is verified by apt anyway.
		(cd "$dir.tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver" >&2)
		rm -rf "$dir"
		mv "$dir.tmp" "$dir"
		f="$(find "$dir" -maxdepth 1 -name '*.deb' | head -1)"
	fi
	echo "$f"
}

# deb_extract PACKAGE ROOT: unpacks the package into ROOT, and records it in
# /var/lib/dpkg/status.d/ as distroless does, so image scanners see what the
# image holds although it has no dpkg database.
deb_extract() {
	local deb
	deb="$(deb_fetch "$1")"
	dpkg-deb -x "$deb" "$2"
	mkdir -p "$2/var/lib/dpkg/status.d"
	{
		dpkg-deb -f "$deb"
		echo "Status: install ok installed"
	} >"$2/var/lib/dpkg/status.d/$1"
}

# The packages of gcr.io/distroless/cc-debian12 that a Rust or Go binary can
# need: its static layer (base-files, netbase, tzdata, the CA bundle) and glibc
# with libgcc. distroless adds libssl3, libstdc++6 and libgomp1, which neither
# raygate (rustls) nor the KubeRay operator (static) links; check_needed_libs
# fails the build if that changes.
DISTROLESS_PACKAGES=(base-files netbase tzdata libc6 libgcc-s1 gcc-12-base)

# distroless_root ROOT: a distroless-like root with no shell and no package
# manager: root, nobody and nonroot (65532) as distroless has them.
distroless_root() {
	local root="$1" pkg ca
	for pkg in "${DISTROLESS_PACKAGES[@]}"; do deb_extract "$pkg" "$root"; done

	# The CA bundle as update-ca-certificates would write it, without running
	# it (it is a shell script): the Mozilla certificates in name order.
	ca="$(img_tmpdir)"
	dpkg-deb -x "$(deb_fetch ca-certificates)" "$ca"
	mkdir -p "$root/etc/ssl/certs" "$root/usr/share/doc/ca-certificates"
	find "$ca/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z |
		xargs -0 -r awk 1 >"$root/etc/ssl/certs/ca-certificates.crt"
	cp "$ca/usr/share/doc/ca-certificates/copyright" "$root/usr/share/doc/ca-certificates/"
	chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"

	cat >"$root/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/sbin/nologin
		nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
		nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
	EOF
	cat >"$root/etc/group" <<-'EOF'
		root:x:0:
		nobody:x:65534:
		tty:x:5:
		staff:x:50:
		nonroot:x:65532:
	EOF
	# As distroless's: local files only, and DNS for host names (glibc's
	# defaults without the file differ between versions).
	cat >"$root/etc/nsswitch.conf" <<-'EOF'
		passwd:         files
		group:          files
		shadow:         files
		hosts:          files dns
		networks:       files
		protocols:      files
		services:       files
		ethers:         files
		rpc:            files
	EOF
	chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
	install -d -m 0700 "$root/root"
	install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
	install -d -m 1777 "$root/tmp"
}

# check_needed_libs ROOT BINARY: every shared library BINARY links (DT_NEEDED)
# is in ROOT, where the dynamic loader looks without an ld.so.cache.
check_needed_libs() {
	local root="$1" bin="$2" lib missing=()
	command -v readelf >/dev/null || { img_log "readelf not found (binutils)"; exit 1; }
	for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
		[[ -e "$root/lib/x86_64-linux-gnu/$lib" || -e "$root/usr/lib/x86_64-linux-gnu/$lib" ||
			-e "$root/lib64/$lib" ]] || missing+=("$lib")
	done
	if ((${#missing[@]})); then
		img_log "$(basename "$bin") needs ${missing[*]}, which the image lacks: add its package" \
			"(dpkg -S ${missing[0]}) to DISTROLESS_PACKAGES in scripts/lib/image-root.sh"
		exit 1
	fi
}

# busybox_root ROOT: Debian's busybox-static with every applet linked into
# /bin, a root and a nonroot user, and /tmp. Enough for `sh -c` scripts and
# smoke tests (busybox's wget crashes in containers: use nc).
busybox_root() {
	local root="$1" bb applet
	bb="$(img_tmpdir)"
	dpkg-deb -x "$(deb_fetch busybox-static)" "$bb"
	install -d "$root/bin" "$root/etc" "$root/root" "$root/home/nonroot"
	install -m 0755 "$bb/bin/busybox" "$root/bin/busybox"
	for applet in $("$bb/bin/busybox" --list); do
		[[ "$applet" == busybox ]] || ln -s busybox "$root/bin/$applet"
	done
	cat >"$root/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		nobody:x:65534:65534:nobody:/nonexistent:/bin/false
		nonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh
	EOF
	cat >"$root/etc/group" <<-'EOF'
		root:x:0:
		nobody:x:65534:
		nonroot:x:65532:
	EOF
	chmod 0644 "$root/etc/passwd" "$root/etc/group"
	chmod 0700 "$root/root"
	chown 65532:65532 "$root/home/nonroot"
	install -d -m 1777 "$root/tmp"
}

# oci_unpack ARCHIVE DIR: unpacks an archive mkoci.py wrote, as containerd
# would: checks every blob against its digest, then puts the image's root into
# DIR/rootfs and its config into DIR/config.json.
oci_unpack() {
	local archive="$1" dir="$2" digest media
	mkdir -p "$dir/rootfs"
	oci_blob "$archive" "$(tar -xOf "$archive" index.json | json_get 'd["manifests"][0]["digest"]')" >"$dir/manifest.json"
	oci_blob "$archive" "$(json_get 'd["config"]["digest"]' <"$dir/manifest.json")" >"$dir/config.json"
	while read -r digest media; do
		oci_blob "$archive" "$digest" >/dev/null
		# Read from a pipe, GNU tar cannot tell gzip from plain tar by itself.
		tar -xOf "$archive" "blobs/sha256/${digest#sha256:}" |
			if [[ "$media" == *+gzip ]]; then gzip -dc; else cat; fi |
			tar -x --numeric-owner -C "$dir/rootfs"
	done < <(json_get '"\n".join(l["digest"] + " " + l["mediaType"] for l in d["layers"])' <"$dir/manifest.json")
	# A container runtime gives every container a /dev; img_run's chroot needs the basic nodes.
	mkdir -p "$dir/rootfs/dev"
	local node
	for node in "null c 1 3" "zero c 1 5" "random c 1 8" "urandom c 1 9"; do
		# shellcheck disable=SC2086 # name, type, major, minor
		set -- $node
		[[ -e "$dir/rootfs/dev/$1" ]] || mknod -m 0666 "$dir/rootfs/dev/$1" "$2" "$3" "$4"
	done
}

# oci_blob ARCHIVE DIGEST: the blob, after checking that it matches its digest.
oci_blob() {
	local hex="${2#sha256:}"
	[[ "$(tar -xOf "$1" "blobs/sha256/$hex" | sha256sum | cut -d' ' -f1)" == "$hex" ]] ||
		{ img_log "$1: blob $2 does not match its digest"; return 1; }
	tar -xOf "$1" "blobs/sha256/$hex"
}

# json_get EXPR: EXPR (Python, over the document `d`) of the JSON on stdin.
json_get() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }

# img_run DIR [--user U:G] CMD...: CMD in the unpacked image as its user (or
# U:G), with the image's Env only, and PATH lookup done inside the image.
img_run() {
	local dir="$1" user env=()
	shift
	user="$(json_get 'd["config"].get("User") or "0:0"' <"$dir/config.json")"
	if [[ "$1" == --user ]]; then
		user="$2"
		shift 2
	fi
	[[ "$user" == *:* ]] || user="$user:$(awk -F: -v u="$user" '$3 == u { print $4 }' "$dir/rootfs/etc/passwd")"
	mapfile -t env < <(json_get '"\n".join(d["config"].get("Env", []))' <"$dir/config.json")
	local cmd="$1" p
	if [[ "$cmd" != /* ]]; then
		for p in $(printf '%s\n' "${env[@]}" | sed -n 's/^PATH=//p' | tr : ' '); do
			if [[ -x "$dir/rootfs$p/$cmd" || -L "$dir/rootfs$p/$cmd" ]]; then
				cmd="$p/$cmd"
				break
			fi
		done
	fi
	shift
	# The host's chroot by its path: the image's PATH need not lead to it.
	env -i "${env[@]}" "$(command -v chroot)" --userspec="$user" "$dir/rootfs" "$cmd" "$@"
}
