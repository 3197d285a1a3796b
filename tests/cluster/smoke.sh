#!/usr/bin/env bash
# Quick self-check of a cluster from `tests/cluster/cluster.sh up [DIR]`:
#   - every node Ready; gpu-node tainted, with nvidia.com/gpu allocatable;
#   - kube-scheduler honours nodeSelector, the control-plane taint and the GPU resource;
#   - a Pod on worker-1 reaches a Pod on worker-2 over TCP through a ClusterIP
#     Service name that CoreDNS resolves;
#   - kube-network-policies: a deny-all ingress policy blocks that, an allow policy
#     for the client's label opens it again;
#   - CoreDNS answers NXDOMAIN for an outside name, and nothing was forwarded.
#
#   tests/cluster/smoke.sh [DIR]
# Works in its own namespace (rgc-smoke), which it deletes at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${1:-$ROOT/.cache/cluster/run}"
eval "$("$ROOT/tests/cluster/cluster.sh" env "$DIR")"
NS=rgc-smoke
TIMEOUT="${CLUSTER_TIMEOUT:-120}"
PASSED=0
FAILED=0

k() { "$CLUSTER_KUBECTL" "$@"; }
log() { printf '[smoke] %s\n' "$*" >&2; }
pass() {
	PASSED=$((PASSED + 1))
	log "PASS $*"
}
fail() {
	FAILED=$((FAILED + 1))
	log "FAIL $*"
}
# check DESCRIPTION CMD...: one assertion.
check() {
	local what="$1"
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}
# eventually SECONDS CMD...: CMD succeeds within SECONDS.
eventually() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 1
	done
}

# pod NAME LABELS NODE_SELECTOR [TOLERATIONS] [RESOURCES] [COMMAND]: a busybox Pod.
DEFAULT_RESOURCES='{requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 64Mi}}'
pod() {
	local resources="${5:-$DEFAULT_RESOURCES}" command="${6:-[sleep, \"3600\"]}"
	cat <<EOF | k apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $NS, labels: $2}
spec:
  terminationGracePeriodSeconds: 0
  nodeSelector: $3
  tolerations: ${4:-[]}
  containers:
  - name: main
    image: $CLUSTER_BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: $command
    resources: $resources
EOF
}
node_of() { k -n "$NS" get pod "$1" -o jsonpath='{.spec.nodeName}'; }
ready() { k -n "$NS" wait --for=condition=Ready "pod/$1" --timeout="${TIMEOUT}s" >/dev/null; }

t0=$SECONDS
k delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
k create namespace "$NS" >/dev/null
# The namespace's default ServiceAccount comes from kube-controller-manager.
eventually 30 k -n "$NS" get serviceaccount default || true

# --- nodes ---
all_ready() {
	local n
	for n in $CLUSTER_NODES; do
		[[ "$(k get node "$n" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]] || return 1
	done
}
check "nodes Ready: $CLUSTER_NODES" all_ready
check "gpu-node has nvidia.com/gpu allocatable" \
	test "$(k get node gpu-node -o 'jsonpath={.status.allocatable.nvidia\.com/gpu}')" == 1
check "gpu-node has the control-plane NoSchedule taint" bash -c \
	"'$CLUSTER_KUBECTL' get node gpu-node -o jsonpath='{.spec.taints[*].key}' | grep -qw node-role.kubernetes.io/control-plane"

# --- scheduling ---
worker1="${CLUSTER_WORKER_NODES%% *}"
worker2="$(echo "$CLUSTER_WORKER_NODES" | awk '{ print $NF }')"
pod server "{app: echo}" "{kubernetes.io/hostname: $worker2}" "" "" '[nc, -ll, -p, "8080", -e, echo, hello]'
pod client "{role: client}" "{kubernetes.io/hostname: $worker1}"
pod anyworker "{app: anyworker}" "{node-role: worker}"
for i in 1 2 3; do pod "untolerated-$i" "{app: spread}" "{}"; done
gpu_tolerations='[{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]'
pod gpu "{app: gpu}" "{}" "$gpu_tolerations" '{requests: {cpu: 10m, memory: 16Mi, nvidia.com/gpu: "1"}, limits: {memory: 64Mi, nvidia.com/gpu: "1"}}'
pod gpu-second "{app: gpu}" "{}" "$gpu_tolerations" '{requests: {cpu: 10m, memory: 16Mi, nvidia.com/gpu: "1"}, limits: {memory: 64Mi, nvidia.com/gpu: "1"}}'

for p in server client anyworker untolerated-1 untolerated-2 untolerated-3 gpu; do
	ready "$p" || fail "pod $p Ready"
done
check "nodeSelector node-role=worker: placed on a worker ($(node_of anyworker))" \
	bash -c "[[ '$(node_of anyworker)' == worker-* ]]"
untolerated_nodes="$(for i in 1 2 3; do node_of "untolerated-$i"; echo; done | sort -u | xargs)"
check "Pods without the toleration stay off gpu-node ($untolerated_nodes)" \
	bash -c "[[ ' $untolerated_nodes ' != *' gpu-node '* ]]"
check "a Pod asking for nvidia.com/gpu lands on gpu-node" test "$(node_of gpu)" == gpu-node
gpu_second_unschedulable() {
	[[ "$(k -n "$NS" get pod gpu-second -o 'jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}')" == Unschedulable ]]
}
check "a second GPU Pod stays Pending (one GPU)" eventually 30 gpu_second_unschedulable

# --- Service, DNS, cross-node TCP ---
cat <<EOF | k apply -f - >/dev/null
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: $NS}
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
EOF
# connect: the client on worker-1 asks the Service by name; the server on worker-2 answers.
connect() { [[ "$(k -n "$NS" exec client -- nc -w 3 "echo.$NS.svc.cluster.local" 80 </dev/null 2>/dev/null)" == hello ]]; }
check "worker-1 -> echo.$NS.svc.cluster.local:80 -> worker-2 (TCP)" eventually 30 connect
svc_ip="$(k -n "$NS" get service echo -o jsonpath='{.spec.clusterIP}')"
resolved() { grep -q "Address: *$svc_ip" <<<"$(k -n "$NS" exec client -- nslookup "echo.$NS.svc.cluster.local" 2>/dev/null)"; }
check "CoreDNS resolves the Service to its ClusterIP ($svc_ip)" resolved

# --- NetworkPolicy ---
cat <<EOF | k apply -f - >/dev/null
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: $NS}
spec:
  podSelector: {matchLabels: {app: echo}}
  policyTypes: [Ingress]
EOF
blocked() { ! connect; }
check "deny-all ingress policy blocks the client" eventually 30 blocked
cat <<EOF | k apply -f - >/dev/null
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: $NS}
spec:
  podSelector: {matchLabels: {app: echo}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: 8080}]}]
EOF
check "allow-from-client policy opens it again" eventually 30 connect
# The allow rule names the client's label: another Pod stays blocked.
other_blocked() { [[ "$(k -n "$NS" exec anyworker -- nc -w 3 "echo.$NS.svc.cluster.local" 80 </dev/null 2>/dev/null)" != hello ]]; }
check "a Pod without the client label is still blocked" other_blocked

# --- outside names ---
# busybox's nslookup exits 1 on NXDOMAIN: look at what it printed.
nxdomain() {
	local out
	out="$(k -n "$NS" exec client -- nslookup example.com 2>&1 || true)"
	grep -q 'NXDOMAIN' <<<"$out"
}
check "CoreDNS answers NXDOMAIN for example.com" nxdomain
check "the CoreDNS build has no forward plugin" bash -c "! '$ROOT/.cache/cluster/bin/coredns' -plugins | grep -Eq '^\s*(dns\.)?forward\s*$'"
dns_pod="$(k -n kube-system get pods -l k8s-app=kube-dns -o jsonpath='{.items[0].metadata.name}')"
check "CoreDNS itself answered example.com (its query log)" \
	bash -c "'$CLUSTER_KUBECTL' -n kube-system logs '$dns_pod' | grep -q '\"A IN example.com. '"
guard_drops="$(iptables -t mangle -vnxL RGC-GUARD 2>/dev/null | awk '$3 == "DROP" { n += $1 } END { print n + 0 }')"
check "the FORWARD guard dropped nothing ($guard_drops packets)" test "$guard_drops" -eq 0

k delete namespace "$NS" --wait=false >/dev/null
log "done in $((SECONDS - t0))s"
echo "smoke: $PASSED passed, $FAILED failed"
((FAILED == 0))
