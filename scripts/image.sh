#!/usr/bin/env bash
# raygate's container image as an OCI archive, without Docker or a registry,
# for the test cluster (tests/cluster), whose nodes load every
# .cache/cluster/images/*.tar with `ctr -n k8s.io images import`.
#
#   scripts/image.sh           build (only when an input changed) and print the path
#   scripts/image.sh --check   the same, then check the archive (below)
#
# It holds what the Dockerfile's image holds: the release binary as /raygate on
# a root made of the Debian 12 packages gcr.io/distroless/cc-debian12 is made
# of, with the Dockerfile's user, ports, entrypoint and labels (read from the
# Dockerfile, so the two cannot drift). docs/IMAGE.md lists the differences.
#
# Output: .cache/cluster/images/raygate.tar, named raygate:<appVersion of
# deploy/helm/raygate/Chart.yaml>; containerd lists it as
# docker.io/library/raygate:<version>, the name the kubelet looks up for a Pod's
# `image: raygate:<version>`. FORCE=1 rebuilds; needs root.
set -euo pipefail

IMG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/image-root.sh
source "$IMG_ROOT/scripts/lib/image-root.sh"
img_init raygate-image
trap img_cleanup EXIT

check=0
case "${1:-}" in
"") ;;
--check) check=1 ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

version="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}.*/\1/p' "$IMG_ROOT/deploy/helm/raygate/Chart.yaml")"
[[ -n "$version" ]] || { img_log "no appVersion in deploy/helm/raygate/Chart.yaml"; exit 1; }
ref="raygate:$version"
out="$IMG_OUT/raygate.tar"

# The final stage of the Dockerfile, as mkoci.py options: one source for both builds.
mapfile -t dockerfile_opts < <(python3 - "$IMG_ROOT/Dockerfile" <<-'EOF'
	import json, shlex, sys
	text = open(sys.argv[1]).read().replace("\\\n", " ")
	stage = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
	stage = stage[max(i for i, l in enumerate(stage) if l.upper().startswith("FROM ")) + 1:]
	for line in stage:
	    word, _, rest = line.partition(" ")
	    word = word.upper()
	    if word == "LABEL":
	        for kv in shlex.split(rest):
	            print("--label"); print(kv)
	    elif word == "EXPOSE":
	        for port in rest.split():
	            print("--expose"); print(port)
	    elif word in ("USER", "ENTRYPOINT", "CMD"):
	        print("--" + word.lower()); print(rest.strip())
EOF
)
((${#dockerfile_opts[@]})) || { img_log "nothing read from the Dockerfile's final stage"; exit 1; }

# cargo decides whether the binary is current; a warm run costs about a second.
start=$SECONDS
(cd "$IMG_ROOT" && "${NICE[@]}" cargo build --release --locked --bin raygate)
bin="${CARGO_TARGET_DIR:-$IMG_ROOT/target}/release/raygate"
img_log "cargo build --release: $((SECONDS - start))s"

deb_resolve "${DISTROLESS_PACKAGES[@]}" ca-certificates
want="$(img_stamp "$ref" "${dockerfile_opts[@]}" "$(declare -f distroless_root deb_extract)" \
	"${DISTROLESS_PACKAGES[@]}" $(deb_versions "${DISTROLESS_PACKAGES[@]}" ca-certificates) \
	-- "$bin" "$MKOCI" "${BASH_SOURCE[0]}")"

if img_stale "$out" "$want"; then
	start=$SECONDS
	root="$(img_tmpdir)/root"
	mkdir -p "$root"
	distroless_root "$root"
	install -m 0755 "$bin" "$root/raygate"
	check_needed_libs "$root" "$root/raygate"
	# WorkingDir, PATH and SSL_CERT_FILE are what distroless/cc-debian12:nonroot
	# sets; the Dockerfile inherits them.
	"${NICE[@]}" python3 "$MKOCI" --ref "$ref" "${dockerfile_opts[@]}" \
		--workdir /home/nonroot --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
		"$root" "$out" >&2
	img_done "$out" "$want" "$start"
else
	img_log "$(basename "$out"): up to date"
fi

if ((check)); then
	start=$SECONDS
	dir="$(img_tmpdir)"
	oci_unpack "$out" "$dir"
	rootfs="$dir/rootfs"
	fail() {
		img_log "check failed: $*"
		exit 1
	}
	[[ "$(json_get 'd["config"]["User"]' <"$dir/config.json")" == 65532:65532 ]] || fail "User is not 65532:65532"
	[[ "$(json_get 'd["config"]["Entrypoint"]' <"$dir/config.json")" == "['/raygate', 'serve']" ]] ||
		fail "Entrypoint is not [/raygate, serve]"
	# distroless has no shell; the chart's hook Job relies on a separate kubectl image for that.
	shells="$(find "$rootfs" \( -name sh -o -name bash -o -name dash -o -name ash -o -name busybox \) -printf '/%P ')"
	[[ -z "$shells" ]] || fail "a shell in the image: $shells"
	# Run it as the image's user, with only the image's libraries and Env.
	got="$(img_run "$dir" /raygate --version)" || fail "/raygate --version did not run"
	[[ "$got" == "raygate $version" ]] || fail "/raygate --version printed '$got'"
	msg="$(img_run "$dir" /raygate certs --out-dir /tmp/check --host raygate.check.svc 2>&1)" ||
		fail "/raygate certs could not write into /tmp as 65532: $msg"
	[[ "$(stat -c %u:%g "$rootfs/tmp/check/tls.key")" == 65532:65532 ]] || fail "/raygate did not run as 65532:65532"
	img_log "check: $got runs as 65532:65532 from the image's root, no shell ($((SECONDS - start))s)"
fi
echo "$out"
