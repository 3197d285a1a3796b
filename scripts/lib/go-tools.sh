# Shared by the scripts that build test tools from Go modules (e2e-tools.sh, argocd-tools.sh,
# helm-tools.sh, yaml-oracle.sh). Sourced, never run.
#
# Each tool keeps its own GOPATH (module and build cache) under its cache folder, so the
# folder is self-contained. A binary is rebuilt only when its stamp (a hash of its pins and
# the Go version) changed; FORCE=1 rebuilds.
#
# GO_TOOLS_PRUNE=1 deletes the Go module and build caches once the binaries are built, and
# keeps only the binaries (a warm run never needs the caches). It is the default under CI
# (CI set and not "false") and when less than 20 GiB is free: the caches of all the tools
# together take about 9 GiB, more than a CI machine's disk may have free.

# go_tools_init NAME CACHE [GOTOOLCHAIN]
go_tools_init() {
	GO_TOOLS_NAME="$1"
	GO_TOOLS_CACHE="$2"
	GO="$(command -v go || true)"
	[[ -z "$GO" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
	[[ -n "$GO" ]] || { log "Go toolchain not found (need go >= 1.24 on PATH or /usr/local/go/bin/go)"; exit 1; }

	export GOPATH="$GO_TOOLS_CACHE/go"
	export GOMODCACHE="$GOPATH/pkg/mod"
	export GOCACHE="$GOPATH/cache"
	# -modcacherw lets `rm -rf .cache` work. The binaries are stripped (-s -w), so the DWARF
	# the compiler would write into every cached package is dead weight. The host's GOFLAGS
	# are deliberately replaced.
	export GOFLAGS="-trimpath -modcacherw -gcflags=all=-dwarf=false"
	# `local` never fetches another toolchain; a pinned goX.Y.Z comes from the module proxy.
	export GOTOOLCHAIN="${3:-local}"
	# Static binaries, as upstream ships them; no C toolchain needed.
	export CGO_ENABLED=0

	# Go builds are long and CPU-bound; yield to interactive work on shared machines.
	NICE=()
	if command -v nice >/dev/null; then NICE=(nice -n 10); fi
	GO_TOOLS_START=$SECONDS
}

log() { printf '[%s] %s\n' "${GO_TOOLS_NAME:-go-tools}" "$*" >&2; }

# go_version: the Go version builds use. A pinned GOTOOLCHAIN names it, so a warm run never
# starts the go command (which would fetch a pruned toolchain again).
go_version() {
	if [[ "$GOTOOLCHAIN" == go1.* ]]; then echo "$GOTOOLCHAIN"; else "$GO" env GOVERSION; fi
}

# stamp DIR FILES...: hash of the inputs that determine a binary (files in DIR, Go version).
stamp() {
	local dir="$1"
	shift
	(cd "$dir" && cat "$@" && go_version) | sha256sum | cut -d' ' -f1
}

# stale FILE STAMP: whether FILE is missing or was built from other inputs.
stale() { [[ "${FORCE:-0}" == 1 || ! -e "$1" || "$(cat "$1.stamp" 2>/dev/null)" != "$2" ]]; }

# go_build DIR OUT STAMP LDFLAGS PACKAGE: builds PACKAGE in module DIR into OUT and stamps it.
go_build() {
	local dir="$1" out="$2" want="$3" ldflags="$4" pkg="$5" start=$SECONDS
	log "$(basename "$out"): building $pkg ..."
	(cd "$dir" && "${NICE[@]}" "$GO" build -ldflags="-s -w $ldflags" -o "$out.tmp" "$pkg") >&2
	mv -f "$out.tmp" "$out"
	echo "$want" >"$out.stamp"
	log "$(basename "$out"): built in $((SECONDS - start))s ($(du -h "$out" | cut -f1))"
}

go_tools_prune_wanted() {
	local default=0 free_kib
	free_kib="$(df -k --output=avail "$GO_TOOLS_CACHE" 2>/dev/null | tail -1 | tr -d ' ')"
	if [[ -n "${CI:-}" && "${CI:-}" != false ]] || ((${free_kib:-0} < 20 * 1024 * 1024)); then
		default=1
	fi
	[[ "${GO_TOOLS_PRUNE:-$default}" == 1 ]]
}

# go_tools_done: prunes the Go caches when wanted and reports the cache's size.
go_tools_done() {
	if go_tools_prune_wanted && [[ -d "$GOPATH" ]]; then
		rm -rf "$GOPATH"
		log "pruned the Go caches (GO_TOOLS_PRUNE=1)"
	fi
	log "done in $((SECONDS - GO_TOOLS_START))s; cache uses $(du -sh "$GO_TOOLS_CACHE" | cut -f1)"
}
