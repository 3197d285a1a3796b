#!/usr/bin/env bash
# Installs, into the cluster of tests/cluster/cluster.sh, what a user installs:
#   - raygate with `helm install` of deploy/helm/raygate, as the README says (the certgen hook
#     Job runs, 2 replicas, the webhooks through the Service);
#   - the KubeRay operator v1.5.0 from its own kustomize manifests (config/default), CRDs
#     included, running in the cluster in namespace kuberay (the platform's), through a
#     kustomization that only sets the namespace.
# Images come from the nodes' containerd (imported by cluster.sh up); nothing is pulled.
#
#   install.sh raygate|operator|all   (needs the environment of `cluster.sh env`)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${KUBECONFIG:?run eval \"\$(tests/cluster/cluster.sh env)\" first}"
: "${CLUSTER_KUBECTL:?}" "${CLUSTER_RAYGATE_NAMESPACE:?}"
HELM="${HELM:-$ROOT/.cache/helm/bin/helm}"
TIMEOUT="${CLUSTER_TIMEOUT:-300}"
OPERATOR_NS="${CLUSTER_OPERATOR_NAMESPACE:-kuberay}"
# The policy raygate runs with: the built-in one, with the namespace the tier's controls run
# in judged in audit mode (reported, never denied).
AUDIT_NS="${CLUSTER_AUDIT_NAMESPACE:-ray-controls}"

log() { printf '[install] %s\n' "$*" >&2; }
k() { "$CLUSTER_KUBECTL" "$@"; }

raygate() {
	[[ -x "$HELM" ]] || "$ROOT/scripts/helm-tools.sh"
	local t0=$SECONDS
	# Helm keeps its state beside the cluster, not in $HOME.
	export HELM_CACHE_HOME="$CLUSTER_DIR/helm/cache" HELM_CONFIG_HOME="$CLUSTER_DIR/helm/config" \
		HELM_DATA_HOME="$CLUSTER_DIR/helm/data"
	sed "s/^    auditNamespaces: \[\]$/    auditNamespaces: [$AUDIT_NS]/" "$ROOT/policies/ray-platform.yaml" \
		>"$CLUSTER_DIR/raygate-policy.yaml"
	grep -q "auditNamespaces: \[$AUDIT_NS\]" "$CLUSTER_DIR/raygate-policy.yaml"
	"$HELM" upgrade --install raygate "$ROOT/deploy/helm/raygate" \
		--namespace "$CLUSTER_RAYGATE_NAMESPACE" --create-namespace \
		--set-file policy.inline="$CLUSTER_DIR/raygate-policy.yaml" \
		--wait --timeout "${TIMEOUT}s" "$@" >&2
	k -n "$CLUSTER_RAYGATE_NAMESPACE" rollout status deployment/raygate --timeout "${TIMEOUT}s" >&2
	log "raygate installed with Helm in $((SECONDS - t0))s"
}

# The operator module's own manifests; the module is fetched into the cluster tier's Go cache
# (the e2e tier's may be pruned).
operator_manifests() {
	local go=/usr/local/go/bin/go
	command -v go >/dev/null && go=$(command -v go)
	GOMODCACHE="$ROOT/.cache/cluster/go/pkg/mod" GOFLAGS=-modcacherw \
		"$go" mod download -json github.com/ray-project/kuberay/ray-operator@v1.5.0 |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

operator() {
	local t0=$SECONDS dir
	dir=$(operator_manifests)
	mkdir -p "$CLUSTER_DIR/operator"
	# kustomize takes no absolute path.
	cat >"$CLUSTER_DIR/operator/kustomization.yaml" <<EOF
namespace: $OPERATOR_NS
resources: [$(realpath --relative-to="$CLUSTER_DIR/operator" "$dir/config/default")]
EOF
	k create namespace "$OPERATOR_NS" --dry-run=client -o yaml | k apply -f - >&2
	# The CRDs are larger than client-side apply's annotation allows.
	k apply --server-side --force-conflicts -k "$CLUSTER_DIR/operator" >&2
	k -n "$OPERATOR_NS" rollout status deployment/kuberay-operator --timeout "${TIMEOUT}s" >&2
	log "KubeRay operator running in $OPERATOR_NS after $((SECONDS - t0))s"
}

case "${1:-}" in
raygate)
	shift
	raygate "$@"
	;;
operator) operator ;;
all)
	operator
	raygate
	;;
*)
	echo "usage: $0 raygate [helm flags]|operator|all" >&2
	exit 2
	;;
esac
