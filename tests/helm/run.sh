#!/usr/bin/env bash
# The Helm chart tier (deploy/helm/raygate):
#   1. builds Helm (scripts/helm-tools.sh) and the e2e tools (kubectl), both cached;
#   2. files/raygate.rules.yaml is deploy/monitoring/raygate.rules.yaml, byte for byte;
#   3. `helm lint --strict` and `helm template` over the values matrix in tests/helm/values/,
#      each with its assertions (checks.py case), and values the schema must refuse;
#   4. kustomize and Helm render equivalent objects (checks.py equivalent): overlays/self-signed
#      vs. the defaults, overlays/audit vs. mode=audit, overlays/cert-manager vs. certManager,
#      components/generate-network-policies on self-signed vs. generateNetworkPolicies.enabled;
#   5. e2e: `helm install` into the loopback control plane of tests/e2e/cluster.sh (no kubelet:
#      the chart's Deployment never runs). The chart's webhook configurations point at a
#      `raygate serve` on 127.0.0.1 (webhook.url, existing-Secret TLS with its caBundle), which
#      runs as the chart's ServiceAccount; a KubeRay sample on default ports is denied and the
#      fillable RayCluster is stored filled in. The self-signed hook's script then runs as the
#      hook's ServiceAccount: it writes the Secret, puts old + new CA into caBundle, and raygate
#      restarted on the new certificate still answers; a second run keeps the Secret.
#
#   tests/helm/run.sh            everything
#   HELM_E2E=0 tests/helm/run.sh  steps 1-4 only (no control plane)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
started=$SECONDS

log() { printf '[helm-tier] %s\n' "$*" >&2; }
die() {
	printf '[helm-tier] FAILED: %s\n' "$*" >&2
	exit 1
}
trap 'rc=$?; [[ $rc == 0 ]] || printf "\n[helm-tier] FAILED (exit %s) at line %s: %s\n" "$rc" "${BASH_LINENO[0]}" "$BASH_COMMAND" >&2' EXIT

if ! python3 -c 'import yaml' 2>/dev/null; then
	[[ $(id -u) == 0 ]] || die "PyYAML is missing: apt-get install python3-yaml"
	log "installing python3-yaml"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml >/dev/null
fi
for tool in python3 openssl curl jq; do
	command -v "$tool" >/dev/null || die "$tool is required"
done

# --- 1. tools ---------------------------------------------------------------------------------
scripts/helm-tools.sh
scripts/e2e-tools.sh
HELM="$ROOT/.cache/helm/bin/helm"
KUBECTL="$ROOT/.cache/e2e/bin/kubectl"
log "building raygate (debug)"
cargo build --quiet --locked --bin raygate
RAYGATE="$ROOT/target/debug/raygate"
CHART=deploy/helm/raygate
NS=raygate-system
WORK=$(mktemp -d -t raygate-helm.XXXXXX)
# Helm keeps its own state out of $HOME.
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"

# --- 2. the alerting rules copy -----------------------------------------------------------------
cmp "$CHART/files/raygate.rules.yaml" deploy/monitoring/raygate.rules.yaml ||
	die "$CHART/files/raygate.rules.yaml differs from deploy/monitoring/raygate.rules.yaml: cp deploy/monitoring/raygate.rules.yaml $CHART/files/"
log "rules: the chart's copy equals deploy/monitoring/raygate.rules.yaml"

# --- 3. lint and template, values matrix -------------------------------------------------------
for values in tests/helm/values/*.yaml; do
	name=$(basename "$values" .yaml)
	"$HELM" lint --strict --quiet -n "$NS" -f "$values" "$CHART" >"$WORK/lint-$name.txt" 2>&1 ||
		{ cat "$WORK/lint-$name.txt" >&2; die "helm lint ($name)"; }
	"$HELM" template raygate "$CHART" -n "$NS" -f "$values" >"$WORK/$name.yaml" ||
		die "helm template ($name)"
	python3 tests/helm/checks.py case "$name" "$WORK/$name.yaml"
done
# The inline policy case's ConfigMap holds a policy raygate accepts.
python3 -c 'import sys, yaml; [print(d["data"]["ray-platform.yaml"]) for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap"]' \
	"$WORK/inline-policy.yaml" >"$WORK/inline-policy.ray-platform.yaml"
"$RAYGATE" policy --policy "$WORK/inline-policy.ray-platform.yaml" >/dev/null ||
	die "the inline policy case's ConfigMap holds a policy raygate refuses"
# Values the chart must refuse, and the message it must give.
refuse() {
	local what="$1" want="$2"
	shift 2
	if "$HELM" template raygate "$CHART" -n "$NS" "$@" >"$WORK/refused.yaml" 2>"$WORK/refused.txt"; then
		die "helm template accepted $what ($*)"
	fi
	grep -q -- "$want" "$WORK/refused.txt" || { cat "$WORK/refused.txt" >&2; die "$what: no '$want' in the error"; }
	log "refused: $what"
}
refuse "an unknown mode" "mode" --set mode=dryrun
refuse "an unknown failurePolicy" "failurePolicy" --set webhook.failurePolicy.ray=Deny
refuse "existingSecret without a caBundle" "caBundle" --set certificates.mode=existingSecret
refuse "an unknown values key" "additional properties" --set replicas=3
refuse "a webhook URL that is not https" "url" --set webhook.url=http://127.0.0.1:8443
refuse "an inline policy that is not YAML" "policy.inline" --set-string 'policy.inline=a: [b'
refuse "both an inline policy and an existing ConfigMap" "not both" --set-string "policy.inline=kind: RayPlatformPolicy" --set policy.existingConfigMap=x

# --- 4. kustomize and Helm render the same objects ---------------------------------------------
cp -r deploy "$WORK/deploy"
"$RAYGATE" certs --host "raygate.$NS.svc" --out-dir "$WORK/deploy/overlays/self-signed/certs" >/dev/null
"$KUBECTL" kustomize "$WORK/deploy/overlays/self-signed" >"$WORK/kustomize-self-signed.yaml"
"$KUBECTL" kustomize deploy/overlays/audit >"$WORK/kustomize-audit.yaml"
"$KUBECTL" kustomize deploy/overlays/cert-manager >"$WORK/kustomize-cert-manager.yaml"
# The NetworkPolicy controller's component, stacked on self-signed as its comment says.
mkdir "$WORK/deploy/overlays/generate-network-policies"
printf 'resources: [../self-signed]\ncomponents: [../../components/generate-network-policies]\n' \
	>"$WORK/deploy/overlays/generate-network-policies/kustomization.yaml"
"$KUBECTL" kustomize "$WORK/deploy/overlays/generate-network-policies" >"$WORK/kustomize-generate-network-policies.yaml"
for pair in self-signed:defaults audit:audit cert-manager:cert-manager generate-network-policies:generate-network-policies; do
	log "equivalence: deploy/overlays/${pair%%:*} vs. helm template -f tests/helm/values/${pair##*:}.yaml"
	python3 tests/helm/checks.py equivalent "$WORK/kustomize-${pair%%:*}.yaml" "$WORK/${pair##*:}.yaml"
done
log "render checks done in $((SECONDS - started))s"

if [[ "${HELM_E2E:-1}" == 0 ]]; then
	rm -rf "$WORK"
	log "HELM_E2E=0: no control plane; 0 failed"
	exit 0
fi

# --- 5. e2e -------------------------------------------------------------------------------------
CLUSTER="$WORK/cluster"
RAYGATE_PID=""
stop_raygate() {
	if [[ -n "$RAYGATE_PID" ]] && kill -0 "$RAYGATE_PID" 2>/dev/null; then
		kill -TERM "$RAYGATE_PID" 2>/dev/null || true
		wait "$RAYGATE_PID" 2>/dev/null || true
	fi
	RAYGATE_PID=""
}
teardown() {
	local rc=$?
	stop_raygate
	tests/e2e/cluster.sh down "$CLUSTER" >/dev/null 2>&1 || true
	if [[ $rc != 0 ]]; then
		printf '[helm-tier] FAILED (exit %s); logs kept in %s (raygate-*.log, cluster/logs)\n' "$rc" "$WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap teardown EXIT

tests/e2e/cluster.sh up "$CLUSTER"
eval "$(tests/e2e/cluster.sh env "$CLUSTER")"
k() { "$KUBECTL" "$@"; }

# start_raygate CERT_DIR [PORT]: raygate serve on 127.0.0.1 with cluster access as the
# chart's ServiceAccount (system:serviceaccount:raygate-system:raygate); sets PORT.
start_raygate() {
	local certs="$1" listen="127.0.0.1:${2:-0}" logfile
	logfile="$WORK/raygate-$(date +%s%N).log"
	POD_NAMESPACE="$NS" "$RAYGATE" serve --listen "$listen" --metrics-listen 127.0.0.1:0 \
		--log-format json --shutdown-delay 0 --tls-cert "$certs/tls.crt" --tls-key "$certs/tls.key" \
		--kubeconfig "$E2E_RAYGATE_KUBECONFIG" >"$logfile" 2>&1 &
	RAYGATE_PID=$!
	local deadline=$((SECONDS + 30)) line=""
	until line=$(grep -m1 'raygate is serving' "$logfile" 2>/dev/null); do
		kill -0 "$RAYGATE_PID" 2>/dev/null || { cat "$logfile" >&2; die "raygate exited"; }
		((SECONDS < deadline)) || die "raygate did not start"
		sleep 0.2
	done
	PORT=$(jq -r .addr <<<"$line" | sed 's/.*://')
	log "raygate serving on 127.0.0.1:$PORT (log $logfile)"
}

wait_ready() {
	local deadline=$((SECONDS + 60))
	until [[ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/readyz")" == 200 ]]; do
		((SECONDS < deadline)) || die "raygate's /readyz did not turn 200 (RBAC of the chart's ServiceAccount?)"
		sleep 0.5
	done
	log "raygate ready: $(curl -sk "https://127.0.0.1:$PORT/readyz")"
}

# raygate's certificate for 127.0.0.1, and its CA as the chart's caBundle.
mkdir -p "$WORK/certs-1"
CA1=$("$RAYGATE" certs --host 127.0.0.1 --out-dir "$WORK/certs-1" | tail -n1 | sed 's/.*caBundle: *//')
[[ "$CA1" == "$(base64 -w0 <"$WORK/certs-1/ca.crt")" ]] || CA1=$(base64 -w0 <"$WORK/certs-1/ca.crt")
start_raygate "$WORK/certs-1"

# The chart as a user installs it, except: TLS from an existing Secret (the hook Job's Pod
# cannot run without a kubelet; its script runs below) and the webhooks call 127.0.0.1.
k create namespace "$NS"
k create secret generic raygate-tls -n "$NS" --type=kubernetes.io/tls \
	--from-file=tls.crt="$WORK/certs-1/tls.crt" --from-file=tls.key="$WORK/certs-1/tls.key" \
	--from-file=ca.crt="$WORK/certs-1/ca.crt" >/dev/null
t0=$SECONDS
# --wait=hookOnly is Helm 4's name for the old --wait=false: nothing waits for the Deployment.
"$HELM" install raygate "$CHART" -n "$NS" --wait=hookOnly \
	--set certificates.mode=existingSecret --set certificates.caBundle="$CA1" \
	--set webhook.url="https://127.0.0.1:$PORT" | tee "$WORK/install.txt" >&2
log "helm install: $((SECONDS - t0))s"
"$HELM" list -n "$NS" -o json | jq -e '.[] | select(.name == "raygate" and .status == "deployed")' >/dev/null ||
	die "release raygate is not deployed"
k get -n "$NS" deployment/raygate service/raygate pdb/raygate serviceaccount/raygate \
	role/raygate-audit-lease rolebinding/raygate-audit-lease >&2
k get clusterrole/raygate clusterrolebinding/raygate priorityclass/raygate-webhook \
	validatingwebhookconfiguration/raygate mutatingwebhookconfiguration/raygate >&2
for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
	k get "$kind" raygate -o json | jq -e --arg url "https://127.0.0.1:$PORT" --arg ca "$CA1" \
		'[.webhooks[] | .clientConfig.url | startswith($url)] | all' >/dev/null || die "$kind: clientConfig.url"
	k get "$kind" raygate -o json | jq -e --arg ca "$CA1" '[.webhooks[] | .clientConfig.caBundle == $ca] | all' >/dev/null ||
		die "$kind: caBundle"
done
wait_ready

# KubeRay's sample on its default ports is denied, with raygate's rule ids.
ns="e2e-helm-$(date +%s)"
k create namespace "$ns" >/dev/null
deny_once() {
	if k apply -n "$ns" -f tests/fixtures/kuberay/samples/ray-cluster.sample.yaml >"$WORK/deny.out" 2>"$WORK/deny.err"; then
		die "KubeRay's default-ports sample was admitted through the chart's webhooks"
	fi
	grep -q 'admission webhook "ray.validate.raygate.dev" denied the request' "$WORK/deny.err" &&
		grep -q 'ports/head-port' "$WORK/deny.err"
}
deadline=$((SECONDS + 30))
until deny_once; do
	((SECONDS < deadline)) || { cat "$WORK/deny.err" >&2; die "no denial by raygate"; }
	sleep 0.5
done
log "denied through the chart's ValidatingWebhookConfiguration:"
grep -o 'admission webhook "ray.validate.raygate.dev" denied the request[^:]*' "$WORK/deny.err" | head -1 >&2
grep -oE '^- ports/[a-z-]+ at [^:]+' "$WORK/deny.err" | head -3 >&2 || true
[[ -z "$(k get rayclusters -n "$ns" -o name)" ]] || die "a denied RayCluster was stored"

# The fillable RayCluster is stored filled in by the chart's MutatingWebhookConfiguration.
fillable() {
	sed -e '/^---$/,$d' -e '/^  namespace: kuberay$/d' -e "s/raycluster-autoscaler/$1/" \
		tests/fixtures/manifests/fillable-cluster.yaml
}
fillable filled | k apply -n "$ns" -f - >&2 || die "the fillable RayCluster was refused"
port=$(k get raycluster filled -n "$ns" -o 'jsonpath={.spec.headGroupSpec.rayStartParams.port}')
[[ "$port" == 6380 ]] || die "rayStartParams.port is '$port', not 6380"
log "stored filled in: rayClusters/filled .spec.headGroupSpec.rayStartParams.port=\"$port\""
k get raycluster filled -n "$ns" -o json |
	jq -c '.spec.headGroupSpec | {rayStartParams, ports: [.template.spec.containers[0].ports[] | "\(.name)=\(.containerPort)"]}' >&2

# --- the self-signed hook's command, as the hook's ServiceAccount -----------------------------
# The hook's RBAC exactly as the chart renders it (without the Job, which cannot run here).
"$HELM" template raygate "$CHART" -n "$NS" --show-only templates/certgen.yaml |
	python3 -c 'import sys, yaml; [print("---\n" + yaml.safe_dump(d)) for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] != "Job"]' |
	k apply -f - >&2
# The Job's own command line, run here as its ServiceAccount (a kubeconfig that impersonates it).
mapfile -t HOOK_ARGS < <("$HELM" template raygate "$CHART" -n "$NS" --show-only templates/certgen.yaml | python3 -c '
import sys, yaml
job = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "Job"][0]
(container,) = job["spec"]["template"]["spec"]["containers"]
assert container["command"] == ["/raygate"], container["command"]
print("\n".join(container["args"]))
')
[[ "${HOOK_ARGS[0]} ${HOOK_ARGS[1]}" == "certs --publish" ]] || die "the hook Job does not run raygate certs --publish: ${HOOK_ARGS[*]}"
python3 -c '
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
for user in config["users"]:
    user["user"]["as"] = sys.argv[2]
yaml.safe_dump(config, open(sys.argv[3], "w"))
' "$KUBECONFIG" "system:serviceaccount:$NS:raygate-certgen" "$WORK/hook.kubeconfig"
# The API server calls this loopback raygate by URL at 127.0.0.1: the certificate must name it too.
HOOK_ARGS+=(--host=127.0.0.1)
hook() { "$RAYGATE" "${HOOK_ARGS[@]}" --kubeconfig "$WORK/hook.kubeconfig"; }
hook 2>&1 | tee "$WORK/hook-1.txt" >&2
grep -q "renewed" "$WORK/hook-1.txt" || die "the hook did not renew a Secret it had not written"
# The serving files of the renewed Secret, for raygate restarted on them below.
mkdir -p "$WORK/certs-2"
for file in ca.crt tls.crt tls.key; do
	k get secret raygate-tls -n "$NS" -o "jsonpath={.data.${file//./\\.}}" | base64 -d >"$WORK/certs-2/$file"
done
CA2=$(base64 -w0 <"$WORK/certs-2/ca.crt")
[[ "$(base64 -w0 <"$WORK/certs-1/ca.crt")" != "$CA2" ]] || die "the renewed Secret holds the old CA"
BOTH=$(cat "$WORK/certs-1/ca.crt" "$WORK/certs-2/ca.crt" | base64 -w0)
for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
	k get "$kind" raygate -o json | jq -e --arg ca "$BOTH" '[.webhooks[] | .clientConfig.caBundle == $ca] | all' >/dev/null ||
		die "$kind: caBundle is not old CA + new CA after renewal"
done
log "hook run 1: Secret renewed, caBundle = old CA + new CA on all 5 webhooks"
deny_once || die "raygate on the old certificate is no longer trusted during the CA rotation"
# raygate restarted on the Secret's new certificate, same port, is trusted too.
stop_raygate
start_raygate "$WORK/certs-2" "$PORT"
wait_ready
deadline=$((SECONDS + 30))
until deny_once; do
	((SECONDS < deadline)) || { cat "$WORK/deny.err" >&2; die "raygate on the new certificate is not trusted"; }
	sleep 0.5
done
log "raygate on the renewed certificate: still denies the default-ports sample"
hook 2>&1 | tee "$WORK/hook-2.txt" >&2
grep -q "kept" "$WORK/hook-2.txt" || die "the second hook run did not keep the Secret"
for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
	k get "$kind" raygate -o json | jq -e --arg ca "$CA2" '[.webhooks[] | .clientConfig.caBundle == $ca] | all' >/dev/null ||
		die "$kind: caBundle is not the new CA alone after the second run"
done
log "hook run 2: Secret kept, caBundle = new CA alone"
# The hook's identity can touch nothing else.
can() { k auth can-i "$@" --as="system:serviceaccount:$NS:raygate-certgen" 2>/dev/null || true; }
[[ "$(can get secret/other -n "$NS")" == no ]] || die "the hook may read other Secrets"
[[ "$(can patch validatingwebhookconfiguration/other)" == no ]] || die "the hook may patch other webhooks"
[[ "$(can get secret/raygate-tls -n kube-system)" == no ]] || die "the hook may read Secrets elsewhere"

# Switching the release to self-signed mode (hooks skipped: their Job cannot run here) keeps
# the caBundle the hook's script set: Helm does not own that field in self-signed mode.
"$HELM" upgrade raygate "$CHART" -n "$NS" --wait=hookOnly --no-hooks --reuse-values \
	--set certificates.mode=selfSigned --set certificates.caBundle= >/dev/null
for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
	k get "$kind" raygate -o json | jq -e --arg ca "$CA2" '[.webhooks[] | .clientConfig.caBundle == $ca] | all' >/dev/null ||
		die "$kind: helm upgrade to self-signed mode dropped the hook's caBundle"
done
deny_once || die "no denial after helm upgrade"
log "helm upgrade (self-signed mode): caBundle kept, still denied by raygate"
"$HELM" uninstall raygate -n "$NS" --wait=hookOnly >/dev/null
[[ -z "$(k get validatingwebhookconfiguration,mutatingwebhookconfiguration -o name | grep raygate || true)" ]] ||
	die "uninstall left webhook configurations"
log "helm uninstall: webhook configurations removed"

log "helm tier passed in $((SECONDS - started))s"
echo "helm: 1 passed, 0 failed"
