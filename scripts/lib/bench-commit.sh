# The commit a benchmark measured, with "+changes" when the code differs from it.
# shellcheck shell=bash
bench_commit() {
  printf '%s' "$(git rev-parse --short HEAD)"
  git diff --quiet HEAD -- src Cargo.toml Cargo.lock || printf '+changes'
}
