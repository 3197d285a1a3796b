#!/bin/sh
# Config Management Plugin `generate` for raygate, run by argocd-cmp-server in the
# Application's source directory. Renders the directory's manifests, checks them with
# `raygate check` as admission would, and:
#   - nothing denied: prints the manifests unchanged on stdout (the webhook still fills
#     in at apply time); warnings go to stderr, i.e. the cmp-server's log;
#   - something denied (exit 1) or unusable input (exit 2): prints raygate's findings on
#     stderr and fails, so Argo CD reports "Manifest generation error" with the findings
#     and applies nothing from this commit.
# Settings (sidecar env, or per Application as plugin env ARGOCD_ENV_RAYGATE_MODE):
#   RAYGATE            raygate binary (default: raygate on PATH)
#   RAYGATE_POLICY     policy file for --policy (default: raygate's built-in plan)
#   RAYGATE_MODE       enforce (default) or audit: audit reports findings but never fails
#   RAYGATE_FAIL_ON    passed to --fail-on, e.g. "fill": also fail (raygate exit 3) while a
#                      file in git still lacks fill-ins, so git always equals what runs
set -eu
# One path per line: paths may hold spaces.
IFS='
'

raygate="${RAYGATE:-raygate}"
mode="${ARGOCD_ENV_RAYGATE_MODE:-${RAYGATE_MODE:-enforce}}"
case "$mode" in enforce | audit) ;; *)
	echo "raygate gate: RAYGATE_MODE must be enforce or audit, not \"$mode\"" >&2
	exit 2
	;;
esac

# The manifests as Argo CD's plain-directory source would read them: every *.yaml,
# *.yml and *.json below the source path, outside hidden directories, in path order.
files=$(find . -path '*/.*' -prune -o -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) -print | LC_ALL=C sort)
if [ -z "$files" ]; then
	echo "raygate gate: no *.yaml, *.yml or *.json files in $(pwd)" >&2
	exit 2
fi

set -- check --mode "$mode"
[ -n "${RAYGATE_POLICY:-}" ] && set -- "$@" --policy "$RAYGATE_POLICY"
# Objects without a namespace land in the Application's destination namespace.
[ -n "${ARGOCD_APP_NAMESPACE:-}" ] && set -- "$@" --namespace "$ARGOCD_APP_NAMESPACE"
fail_on="${ARGOCD_ENV_RAYGATE_FAIL_ON:-${RAYGATE_FAIL_ON:-}}"
[ -n "$fail_on" ] && set -- "$@" --fail-on "$fail_on"
for f in $files; do set -- "$@" -f "$f"; done

status=0
findings=$("$raygate" "$@" 2>&1) || status=$?
if [ "$status" -ne 0 ]; then
	# Argo CD shows stderr as the Application's condition: lead with the verdict and keep
	# what must change. A finding is a line "  ACTION  rule  path" and its indented message;
	# fill-ins are left out (the webhook applies them at sync) unless they are the reason
	# (exit 3 with --fail-on fill); the rest is kept verbatim.
	case "$status" in
	1) verdict="raygate denied this commit" ;;
	3) verdict="raygate stopped this commit (--fail-on $fail_on)" ;;
	*) verdict="raygate could not check this commit" ;;
	esac
	printf '%s (raygate check exit %s):\n' "$verdict" "$status" >&2
	keep_fills=0
	[ "$status" -eq 3 ] && keep_fills=1
	printf '%s\n' "$findings" | awk -v keep="$keep_fills" '
		/^  [A-Za-z]+  / { skip = (!keep && $1 == "fill") }
		/^[^ ]/ { skip = 0 }
		!skip' >&2
	exit 1
fi
printf '%s\n' "$findings" >&2

for f in $files; do
	printf -- '---\n'
	cat "$f"
	printf '\n'
done
