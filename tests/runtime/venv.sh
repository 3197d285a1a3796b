#!/usr/bin/env bash
# The Ray venv of the runtime tier and the version matrix: .cache/ray/venv-<version> with
# ray[default,serve] (Serve's HTTP proxy; the rayproject/ray images carry it) and pytest from
# PyPI. A stamp (what was asked, and Python's version) lets a warm run skip the install.
#
#   tests/runtime/venv.sh 2.60.0      prints the venv's path; pip's output goes to stderr
set -euo pipefail
cd "$(dirname "$0")/../.."
version="$1"
venv="$PWD/.cache/ray/venv-$version"
python=$(python3 -c 'import sys; print(sys.version.split()[0])')
pins=()
# Serve before Ray 2.60 reads protobuf's FieldDescriptor.label, which protobuf 7 removed, and
# Ray bounds protobuf only from below: pip now picks 7, and Serve fails to deploy (measured on
# 2.46.0 and 2.52.1). The images of those releases carry an older protobuf.
if [[ "$(printf '%s\n' "$version" 2.60.0 | sort -V | head -1)" != 2.60.0 ]]; then
	pins+=("protobuf<7")
fi
want="ray[default,serve]==$version ${pins[*]} pytest python $python"
if [[ ! -f "$venv/.runtime-stamp" || "$(cat "$venv/.runtime-stamp")" != "$want" ]]; then
	printf '[venv] installing ray[default,serve]==%s %s into %s\n' "$version" "${pins[*]}" "$venv" >&2
	mkdir -p "$(dirname "$venv")"
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check "ray[default,serve]==$version" "${pins[@]}" pytest >&2
	echo "$want" >"$venv/.runtime-stamp"
fi
"$venv/bin/python" -c "import ray; assert ray.__version__ == '$version', ray.__version__"
echo "$venv"
