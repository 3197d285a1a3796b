#!/usr/bin/env bash
# The end-to-end tier: builds the pinned tools (cached), starts a loopback control plane
# with the KubeRay operator, runs tests/e2e.rs against it, and always tears it down.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/e2e-tools.sh
cluster_dir=$(mktemp -d -t raygate-e2e.XXXXXX)
teardown() {
  status=$?
  tests/e2e/cluster.sh down "$cluster_dir" || true
  if [ "$status" -ne 0 ]; then
    echo "e2e failed; control plane logs kept in $cluster_dir/logs" >&2
  else
    rm -rf "$cluster_dir"
  fi
}
trap teardown EXIT

started=$(date +%s)
tests/e2e/cluster.sh up "$cluster_dir"
eval "$(tests/e2e/cluster.sh env "$cluster_dir")"
tests/e2e/cluster.sh nodes "$cluster_dir"
echo "control plane up in $(( $(date +%s) - started ))s"

cargo test --locked --test e2e -- --ignored --test-threads=1
