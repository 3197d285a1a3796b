#!/usr/bin/env bash
# Loopback Kubernetes control plane for the e2e tier: etcd, kube-apiserver,
# kube-controller-manager running only the garbage collector, and the KubeRay
# operator, all bound to 127.0.0.1. There is no kubelet or scheduler: Pods stay
# Pending, which is all an admission-webhook test needs.
#
#   cluster.sh up    [DIR]  start everything, wait until ready
#   cluster.sh down  [DIR]  stop everything started by `up` in DIR
#   cluster.sh env   [DIR]  print `export KUBECONFIG=...` and friends
#   cluster.sh nodes [DIR]  create the placement-scenario Node objects
#
# DIR (default .cache/e2e/cluster) holds certificates, kubeconfig, data, logs,
# PIDs and the audit log. Binaries come from scripts/e2e-tools.sh, which is run
# automatically when one is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${E2E_BIN:-$ROOT/.cache/e2e/bin}"
CRDS="${E2E_CRDS:-$ROOT/.cache/e2e/crds}"
HOST=127.0.0.1
# Only an address range for Service IPs; nothing is routed or bound there.
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1
# Readiness timeouts, generous because the machine may be busy compiling.
TIMEOUT="${E2E_TIMEOUT:-180}"

CMD="${1:-}"
DIR="${2:-$ROOT/.cache/e2e/cluster}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
KUBECONFIG_FILE="$DIR/kubeconfig"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# free_port VAR: a port in 20000-32767, below Linux's ephemeral range so that
# outgoing connections cannot grab it between picking and binding.
PICKED=" "
free_port() {
	local p
	for _ in $(seq 500); do
		p=$((20000 + RANDOM % 12768))
		[[ "$PICKED" == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then
			PICKED+="$p "
			printf -v "$1" '%s' "$p"
			return
		fi
	done
	die "no free port found on $HOST"
}

is_running() { [[ -f "$DIR/pids/$1.pid" ]] && kill -0 "$(cat "$DIR/pids/$1.pid")" 2>/dev/null; }

# start NAME ARGS...: detached (own session) so the caller's Ctrl-C or exit
# does not take the control plane down with it.
start() {
	local name="$1"
	shift
	setsid "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$DIR/pids/$name.pid"
	log "$name started (pid $!, log ${DIR}/logs/$name.log)"
}

# wait_for NAME DESCRIPTION CMD...: poll CMD until it succeeds; fail early if
# NAME's process died.
wait_for() {
	local name="$1" what="$2"
	shift 2
	local deadline=$((SECONDS + TIMEOUT)) t0=$SECONDS
	until "$@" >/dev/null 2>&1; do
		if ! is_running "$name"; then
			tail -n 30 "$DIR/logs/$name.log" >&2 || true
			die "$name exited while waiting for $what"
		fi
		((SECONDS < deadline)) || {
			tail -n 30 "$DIR/logs/$name.log" >&2 || true
			die "timed out after ${TIMEOUT}s waiting for $what"
		}
		sleep 0.5
	done
	log "$what: ok after $((SECONDS - t0))s"
}

apiserver_ready() { [[ "$(kubectl get --raw=/readyz 2>/dev/null)" == ok ]]; }

# Plain HTTP probe without curl: bash's /dev/tcp is always there.
operator_ready() {
	exec 3<>"/dev/tcp/$HOST/$PROBE_PORT" || return 1
	printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$HOST" >&3
	local status
	read -r _ status _ <&3 || true
	exec 3<&-
	[[ "$status" == 200 ]]
}

gen_pki() {
	local pki="$DIR/pki"
	mkdir -p "$pki"
	(
		cd "$pki"
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=raygate-e2e-ca" \
			-keyout ca.key -out ca.crt 2>/dev/null
		# leaf NAME SUBJECT EXTENSIONS
		leaf() {
			openssl req -new -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
			openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
				-out "$1.crt" -extfile <(printf '%s\n' "$3") 2>/dev/null
			rm -f "$1.csr"
		}
		leaf apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
			'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
			"subjectAltName=IP:$HOST,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")"
		# system:masters bypasses RBAC, so tests can set up any RBAC they need.
		leaf admin "/O=system:masters/CN=admin" "$(printf '%s\n' \
			'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=clientAuth')"
		# raygate's own identity: the username and groups of its ServiceAccount, so that
		# deploy/'s RBAC is what the e2e raygate runs under.
		leaf raygate "/O=system:serviceaccounts/O=system:serviceaccounts:raygate-system/CN=system:serviceaccount:raygate-system:raygate" "$(printf '%s\n' \
			'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=clientAuth')"
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		chmod 600 ./*.key
	)
}

write_kubeconfig() {
	write_kubeconfig_for admin "$KUBECONFIG_FILE"
	write_kubeconfig_for raygate "$DIR/raygate.kubeconfig"
}

# write_kubeconfig_for USER FILE
write_kubeconfig_for() {
	local pki="$DIR/pki" user="$1"
	cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$HOST:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$user.crt")
    client-key-data: $(base64 -w0 <"$pki/$user.key")
contexts:
- name: e2e
  context: {cluster: e2e, user: $user}
current-context: e2e
EOF
	chmod 600 "$2"
}

write_audit_policy() {
	cat >"$DIR/audit-policy.yaml" <<'EOF'
# Admission decisions and webhook patches are recorded as audit annotations,
# so writes are logged with their request body; secrets only at Metadata.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: [/healthz*, /livez*, /readyz*, /version, /openapi*]
- level: None
  verbs: [watch]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: Metadata
  resources: [{group: "", resources: [secrets, configmaps]}, {group: authentication.k8s.io, resources: [tokenreviews]}]
- level: Request
  verbs: [create, update, patch, delete, deletecollection]
- level: Metadata
EOF
}

up() {
	for b in etcd kube-apiserver kubectl kube-controller-manager kuberay-operator; do
		[[ -x "$BIN/$b" ]] || {
			log "$BIN/$b missing; building tools"
			"$ROOT/scripts/e2e-tools.sh"
			break
		}
	done
	compgen -G "$CRDS/ray.io_*.yaml" >/dev/null || die "no KubeRay CRDs in $CRDS (run scripts/e2e-tools.sh)"
	command -v openssl >/dev/null || die "openssl is required"
	for n in etcd kube-apiserver kube-controller-manager kuberay-operator; do
		is_running "$n" && die "$n already running from $DIR; run '$0 down $DIR' first"
	done

	# Fresh state on every `up`: no leftovers from a previous run can leak into tests.
	rm -rf "${DIR:?}"/{pki,etcd-data,logs,pids,audit.log,kubeconfig,cluster.env}
	mkdir -p "$DIR/logs" "$DIR/pids"
	# If anything below fails, stop what was started but keep the logs.
	trap 'log "up failed; stopping"; down' EXIT

	free_port ETCD_PORT
	free_port ETCD_PEER_PORT
	free_port APISERVER_PORT
	free_port METRICS_PORT
	free_port PROBE_PORT
	cat >"$DIR/cluster.env" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
METRICS_PORT=$METRICS_PORT
PROBE_PORT=$PROBE_PORT
EOF

	gen_pki
	write_kubeconfig
	write_audit_policy

	start etcd "$BIN/etcd" --name e2e --data-dir "$DIR/etcd-data" \
		--listen-client-urls "http://$HOST:$ETCD_PORT" --listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
		--unsafe-no-fsync
	wait_for etcd "etcd on :$ETCD_PORT" bash -c "exec 3<>/dev/tcp/$HOST/$ETCD_PORT"

	local pki="$DIR/pki"
	# ServiceAccount admission is disabled: without kube-controller-manager no
	# namespace gets a "default" ServiceAccount, so every Pod create would fail.
	start kube-apiserver "$BIN/kube-apiserver" \
		--bind-address="$HOST" --advertise-address="$HOST" --secure-port="$APISERVER_PORT" \
		--etcd-servers="http://$HOST:$ETCD_PORT" \
		--tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
		--client-ca-file="$pki/ca.crt" \
		--service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
		--service-account-issuer="https://kubernetes.default.svc.cluster.local" \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--authorization-mode=RBAC \
		--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
		--disable-admission-plugins=ServiceAccount \
		--audit-policy-file="$DIR/audit-policy.yaml" --audit-log-path="$DIR/audit.log" \
		--allow-privileged=true --profiling=false
	wait_for kube-apiserver "kube-apiserver /readyz on :$APISERVER_PORT" apiserver_ready

	# Server-side apply: the RayCluster CRD is too large for the last-applied annotation.
	kubectl apply --server-side --force-conflicts -f "$CRDS" >&2
	local crds=() f
	for f in "$CRDS"/ray.io_*.yaml; do
		f="${f##*/ray.io_}"
		crds+=("crd/${f%.yaml}.ray.io")
	done
	# `kubectl wait` fails at once ("status.conditions accessor error") on a CRD whose
	# status is not written yet, so poll until every CRD reports Established.
	crds_established() {
		local crd
		for crd in "${crds[@]}"; do
			[[ "$(kubectl get "$crd" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" == True ]] || return 1
		done
	}
	wait_for kube-apiserver "the KubeRay CRDs to be Established" crds_established

	# Only the garbage collector: objects owned by a deleted one are deleted, as in a real
	# cluster (raygate's generated NetworkPolicies go with their Ray object). No serving
	# port; it runs as admin, like the tests.
	start kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig="$KUBECONFIG_FILE" --controllers=garbagecollector \
		--leader-elect=false --secure-port=0 --bind-address="$HOST"
	wait_for kube-controller-manager "the garbage collector's informers" \
		grep -q 'all resource monitors have synced' "$DIR/logs/kube-controller-manager.log"

	# The operator defaults to :8080/:8082 on all interfaces and leader
	# election; pin it to loopback and a single replica without a lease.
	start kuberay-operator env KUBECONFIG="$KUBECONFIG_FILE" "$BIN/kuberay-operator" \
		--metrics-addr="$HOST:$METRICS_PORT" --health-probe-bind-address="$HOST:$PROBE_PORT" \
		--enable-leader-election=false --log-stdout-encoder=console
	wait_for kuberay-operator "kuberay-operator /readyz on :$PROBE_PORT" operator_ready
	# /readyz answers before informers sync; reconcilers start after.
	wait_for kuberay-operator "kuberay-operator RayCluster controller" \
		grep -q 'controllers.RayCluster.*Starting workers' "$DIR/logs/kuberay-operator.log"

	trap - EXIT
	log "control plane up: https://$HOST:$APISERVER_PORT (run: eval \"\$($0 env $DIR)\")"
}

down() {
	local name pid
	# Reverse start order so the operator and apiserver do not log storms about lost backends.
	for name in kuberay-operator kube-controller-manager kube-apiserver etcd; do
		[[ -f "$DIR/pids/$name.pid" ]] || continue
		pid="$(cat "$DIR/pids/$name.pid")"
		# Guard against a recycled PID: only signal our own binary.
		if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$name"; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
			log "$name stopped (pid $pid)"
		fi
		rm -f "$DIR/pids/$name.pid"
	done
}

print_env() {
	[[ -f "$DIR/cluster.env" ]] || die "no cluster in $DIR (run '$0 up $DIR')"
	# shellcheck disable=SC1091
	source "$DIR/cluster.env"
	cat <<EOF
export KUBECONFIG='$KUBECONFIG_FILE'
export E2E_CLUSTER_DIR='$DIR'
export E2E_APISERVER='https://$HOST:$APISERVER_PORT'
export E2E_CA_CERT='$DIR/pki/ca.crt'
export E2E_CA_KEY='$DIR/pki/ca.key'
export E2E_AUDIT_LOG='$DIR/audit.log'
export E2E_KUBECTL='$BIN/kubectl'
export E2E_RAYGATE_KUBECONFIG='$DIR/raygate.kubeconfig'
EOF
}

# Nodes for the placement scenario. Nothing runs on them (no kubelet); they
# exist so that admission can reason about labels, taints and capacity.
nodes() {
	[[ -f "$KUBECONFIG_FILE" ]] || die "no cluster in $DIR (run '$0 up $DIR')"
	{
		cat <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: gpu-node
  labels:
    kubernetes.io/hostname: gpu-node
    kubernetes.io/os: linux
    node-role.kubernetes.io/control-plane: ""
spec:
  taints:
  - key: node-role.kubernetes.io/control-plane
    effect: NoSchedule
status:
  capacity: {cpu: "16", memory: 64Gi, pods: "110", nvidia.com/gpu: "4"}
  allocatable: {cpu: "16", memory: 64Gi, pods: "110", nvidia.com/gpu: "4"}
EOF
		for i in 1 2 3 4; do
			cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: worker-$i
  labels:
    kubernetes.io/hostname: worker-$i
    kubernetes.io/os: linux
    node-role: worker
status:
  capacity: {cpu: "8", memory: 32Gi, pods: "110"}
  allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
EOF
		done
	# Client-side apply: a create through the main endpoint keeps Node status
	# (capacity), while server-side apply would reset it.
	} | kubectl apply -f - >&2
	kubectl get nodes -L node-role >&2
}

case "$CMD" in
up) up ;;
down) down ;;
env) print_env ;;
nodes) nodes ;;
*)
	echo "usage: $0 up|down|env|nodes [DIR]" >&2
	exit 2
	;;
esac
