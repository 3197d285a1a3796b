#!/usr/bin/env bash
# A real multi-node Kubernetes cluster on this one machine: real kubelets that run
# real containers (containerd + runc), kube-scheduler and kube-controller-manager,
# kube-proxy for Services, CoreDNS for cluster DNS and kube-network-policies for
# NetworkPolicies. Unlike tests/e2e/cluster.sh, Pods here are scheduled and run.
#
#   cluster.sh up   [DIR]  start everything, wait until every node is Ready and DNS answers,
#                          then install the KubeRay operator and raygate (tests/cluster/install.sh;
#                          CLUSTER_INSTALL=0 skips that)
#   cluster.sh env  [DIR]  print `export KUBECONFIG=...` and friends
#   cluster.sh down [DIR]  stop and remove everything `up` made, even after a failed `up`
#
# DIR (default .cache/cluster/run) holds certificates, kubeconfigs, the nodes'
# state and logs/. Needs root. Binaries come from scripts/cluster-tools.sh (run
# automatically when one is missing); images from .cache/cluster/images/*.tar
# (scripts/cluster-images.sh, scripts/image.sh) and .cache/cluster/component-images/.
#
# Nodes: gpu-node (control-plane label and NoSchedule taint, nvidia.com/gpu: 1) and
# CLUSTER_WORKERS workers (default 2) worker-1.. labelled node-role=worker. All
# nodes share the host's network namespace; each has its own containerd, runc
# root, cgroup parent, kubelet root and Pod bridge.
#
# Addresses (nothing else is used; nothing leaves the machine):
#   198.18.200.1/32 on lo      etcd :2379/:2380, kube-apiserver :6443, controller-manager
#                              :10257, scheduler :10259, kube-proxy :10249/:10256,
#                              kube-network-policies :9080
#   198.18.200.11+N/32 on lo   node N's kubelet :10250 (healthz :10248), containerd streams
#   198.18.210+N.0/24          node N's Pods, on bridge rgc-brN
#   198.19.200.0/24            Services (kubernetes 198.19.200.1, kube-dns 198.19.200.10)
# The runtime tier (tests/runtime/) uses 198.18.0.0/24 inside its own namespaces.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${CLUSTER_CACHE:-$ROOT/.cache/cluster}"
BIN="$CACHE/bin"
E2E_BIN="${E2E_BIN:-$ROOT/.cache/e2e/bin}"
IMAGES="${CLUSTER_IMAGES:-$CACHE/images}"
COMPONENT_IMAGES="$CACHE/component-images"
# Readiness timeouts, generous because the machine may be busy compiling.
TIMEOUT="${CLUSTER_TIMEOUT:-240}"
WORKERS="${CLUSTER_WORKERS:-2}"

API_IP=198.18.200.1
API_PORT=6443
NODE_NET=198.18.200        # node N is .(11+N)
POD_CIDR=198.18.208.0/20   # node N's Pods: 198.18.(210+N).0/24
SERVICE_CIDR=198.19.200.0/24
KUBERNETES_SVC_IP=198.19.200.1
DNS_IP=198.19.200.10
# Everything the Pods and Services use: the only route a Pod gets, and what the guard watches.
TEST_NET=198.18.0.0/15
BRIDGE_PREFIX=rgc-br
CGROUP_PREFIX=rgc-
GUARD=RGC-GUARD
PAUSE_IMAGE=registry.k8s.io/pause:3.10
# Named by scripts/cluster-tools.sh after the versions pinned in tests/cluster/tools/.
pinned() { awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"; }
COREDNS_IMAGE="raygate.local/cluster/coredns:$(pinned "$ROOT/tests/cluster/tools/coredns" github.com/coredns/coredns)"
KNP_IMAGE="raygate.local/cluster/kube-network-policies:$(pinned "$ROOT/tests/cluster/tools/kube-network-policies" sigs.k8s.io/kube-network-policies)-nfqueue"
BUSYBOX_IMAGE=raygate.local/busybox:1
RAY_IMAGE=rayproject/ray:2.60.0
RAYGATE_NAMESPACE=raygate-system
# Host settings that kubelet, kube-proxy or the bridge plugin change; `down` puts them back.
SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
	vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Paths kubelet, libcni and containerd use whatever root they are given.
GLOBAL_PATHS=(/var/lib/kubelet /var/log/containers /var/lib/cni /run/containerd /usr/libexec/kubernetes)

CMD="${1:-}"
DIR="${2:-$CACHE/run}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
KUBECONFIG_FILE="$DIR/kubeconfig"
PKI="$DIR/pki"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

kubectl() { "$E2E_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

node_names() {
	echo gpu-node
	local i
	for ((i = 1; i <= WORKERS; i++)); do echo "worker-$i"; done
}
node_ip() { echo "$NODE_NET.$((11 + $1))"; }
node_subnet() { echo "198.18.$((210 + $1)).0/24"; }

# --- processes -------------------------------------------------------------------------
is_running() { [[ -f "$DIR/pids/$1.pid" ]] && kill -0 "$(cat "$DIR/pids/$1.pid")" 2>/dev/null; }

# start NAME ARGS...: detached (own session), so that the caller's Ctrl-C or exit
# does not take the cluster down with it.
start() {
	local name="$1"
	shift
	setsid "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$DIR/pids/$name.pid"
	log "$name started (pid $!)"
}

fail_with_log() {
	local name="$1"
	shift
	if [[ -f "$DIR/logs/$name.log" ]]; then
		log "last lines of $DIR/logs/$name.log:"
		tail -n 40 "$DIR/logs/$name.log" >&2 || true
	fi
	# The add-ons run as Pods: what the cluster says about them.
	if [[ "$name" == addons ]]; then
		log "kube-system's Pods and the latest events:"
		kubectl get pods -A -o wide >&2 || true
		kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 20 >&2 || true
		local pod
		for pod in $(kubectl -n kube-system get pods -o name 2>/dev/null); do
			log "last lines of $pod:"
			kubectl -n kube-system logs "$pod" --all-containers --tail=15 >&2 || true
		done
	fi
	die "$*"
}

# wait_for NAME DESCRIPTION CMD...: poll CMD until it succeeds; fail early when
# NAME's process died, and show its log either way.
wait_for() {
	local name="$1" what="$2"
	shift 2
	local deadline=$((SECONDS + TIMEOUT)) t0=$SECONDS
	until "$@" >/dev/null 2>&1; do
		if [[ "$name" != addons ]] && ! is_running "$name"; then
			fail_with_log "$name" "$name exited while waiting for $what"
		fi
		((SECONDS < deadline)) || fail_with_log "$name" "timed out after ${TIMEOUT}s waiting for $what"
		sleep 0.5
	done
	log "$what: ok after $((SECONDS - t0))s"
}

# The binaries this cluster starts; only processes running one of them are ever signalled.
OUR_EXES=" etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet containerd containerd-shim-runc-v2 "
ours() {
	local exe
	exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
	exe="${exe% (deleted)}"
	[[ "$OUR_EXES" == *" ${exe##*/} "* ]]
}

# stop_pids PID...: TERM, then KILL what is still there after 10 s. All at once: each
# component takes a second or two to shut down, and nothing here needs an order
# beyond the groups `down` stops one after the other.
stop_pids() {
	local pid left
	kill -TERM "$@" 2>/dev/null
	for _ in $(seq 100); do
		left=()
		for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
		((${#left[@]})) || return 0
		sleep 0.1
	done
	kill -KILL "${left[@]}" 2>/dev/null || true
}

# stop NAME...: the processes `start` recorded, if they are still ours.
stop() {
	local name pid pids=() names=() t0=$SECONDS
	for name in "$@"; do
		[[ -f "$DIR/pids/$name.pid" ]] || continue
		pid="$(cat "$DIR/pids/$name.pid")"
		if kill -0 "$pid" 2>/dev/null && ours "$pid"; then
			pids+=("$pid")
			names+=("$name")
		fi
		rm -f "$DIR/pids/$name.pid"
	done
	((${#pids[@]})) || return 0
	stop_pids "${pids[@]}"
	log "stopped ${names[*]} ($((SECONDS - t0))s)"
}

# Every process left in a cgroup of this cluster (containers, and anything that escaped
# its shim), in any v1 hierarchy.
cgroup_pids() {
	local roots=()
	mapfile -t roots < <(compgen -G "/sys/fs/cgroup/*/$CGROUP_PREFIX*" || true)
	((${#roots[@]})) || return 0
	find "${roots[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

# --- host state ------------------------------------------------------------------------
# The baseline is what the host looked like before `up`: `down` restores it and
# leftovers.sh compares against it. It is written only when no cluster is active, so
# that a second `up` after a failed one cannot take the failed one's state as original.
write_baseline() {
	{
		local s p
		for s in "${SYSCTLS[@]}"; do echo "sysctl $s $(sysctl -n "$s" 2>/dev/null || echo -)"; done
		for p in "${GLOBAL_PATHS[@]}"; do
			if [[ -e "$p" ]]; then echo "path $p existed"; else echo "path $p absent"; fi
		done
	} >"$DIR/baseline"
}

restore_baseline() {
	[[ -f "$DIR/baseline" ]] || {
		log "no baseline in $DIR: host settings left as they are"
		return 0
	}
	local kind key value
	while read -r kind key value; do
		case "$kind" in
		sysctl)
			[[ "$value" == - ]] && continue
			[[ "$(sysctl -n "$key" 2>/dev/null)" == "$value" ]] || sysctl -qw "$key=$value" || log "could not restore $key=$value"
			;;
		path)
			remove_own_global_files "$key"
			# What is left there may be another program's (another containerd's shims
			# use /run/containerd too): only empty directories go.
			[[ "$value" == absent && -d "$key" ]] && find "$key" -depth -type d -empty -delete
			;;
		esac
	done <"$DIR/baseline"
}

# Inside global paths that existed before `up`, remove only what this cluster wrote there.
remove_own_global_files() {
	case "$1" in
	/var/log/containers)
		local l
		for l in /var/log/containers/*; do
			[[ -L "$l" && "$(readlink "$l")" == "$DIR/"* ]] && rm -f "$l"
		done
		;;
	/var/lib/cni)
		# libcni's result cache: NETWORK-SANDBOX-IF, for the Pod network and containerd's loopback.
		local f id
		for f in /var/lib/cni/results/rgc-*; do
			[[ -e "$f" ]] || continue
			id="${f%-eth0}"
			id="${id##*-}"
			rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
		done
		;;
	/var/lib/kubelet)
		# device-plugins/ holds only the socket of the kubelet that started last.
		rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
		;;
	/usr/libexec/kubernetes)
		# kubelet's default volume plugin directory (each node has its own; this stays empty).
		;;
	esac
}

# --- network ---------------------------------------------------------------------------
# The bridge plugin turns on ip_forward. Nothing a Pod sends may leave the machine and
# nothing from outside may reach a Pod: forwarding is allowed only between the cluster's
# own bridges. The chain hangs off mangle FORWARD, which runs before filter FORWARD,
# where kube-proxy's ACCEPT rules sit.
install_guard() {
	iptables -t mangle -N "$GUARD" 2>/dev/null || iptables -t mangle -F "$GUARD"
	iptables -t mangle -A "$GUARD" -i "$BRIDGE_PREFIX+" -o "$BRIDGE_PREFIX+" -j RETURN
	iptables -t mangle -A "$GUARD" -i "$BRIDGE_PREFIX+" -j DROP
	iptables -t mangle -A "$GUARD" -o "$BRIDGE_PREFIX+" -j DROP
	iptables -t mangle -A "$GUARD" -s "$TEST_NET" -j DROP
	iptables -t mangle -A "$GUARD" -d "$TEST_NET" -j DROP
	iptables -t mangle -C FORWARD -j "$GUARD" 2>/dev/null || iptables -t mangle -I FORWARD 1 -j "$GUARD"
	# A test address that no bridge or node holds (a Service IP before kube-proxy has
	# its rule, say) would otherwise follow the default route to the uplink: answer
	# "unreachable" here instead. The bridges' own routes are more specific.
	ip route replace unreachable "$TEST_NET"
}

remove_guard() {
	ip route del unreachable "$TEST_NET" 2>/dev/null || true
	while iptables -t mangle -D FORWARD -j "$GUARD" 2>/dev/null; do :; done
	iptables -t mangle -F "$GUARD" 2>/dev/null || true
	iptables -t mangle -X "$GUARD" 2>/dev/null || true
}

# Chains of kube-proxy (after its own --cleanup) and of the kubelets: every KUBE-* chain,
# with the rules that jump to it. Nothing else on these machines uses that prefix.
remove_kube_chains() {
	local cmd table chain rule
	for cmd in iptables ip6tables; do
		command -v "$cmd" >/dev/null || continue
		for table in filter nat mangle raw; do
			# Rules in built-in chains that jump to a KUBE- chain.
			"$cmd" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -Ev '^-A KUBE-' |
				while read -r rule; do
					eval "$cmd -t $table ${rule/-A/-D}" 2>/dev/null || true
				done
			for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
				"$cmd" -t "$table" -F "$chain" 2>/dev/null || true
			done
			for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
				"$cmd" -t "$table" -X "$chain" 2>/dev/null || true
			done
		done
	done
}

# --- certificates and kubeconfigs ------------------------------------------------------
gen_pki() {
	mkdir -p "$PKI"
	(
		cd "$PKI"
		# EC keys: about a hundred times faster to make than RSA ones.
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
			-subj "/CN=raygate-cluster-ca" -keyout ca.key -out ca.crt 2>/dev/null
		# leaf NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
		leaf() {
			openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$2" \
				-keyout "$1.key" -out "$1.csr" 2>/dev/null
			openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out "$1.crt" \
				-extfile <(printf '%s\n' basicConstraints=CA:FALSE keyUsage=digitalSignature,keyEncipherment \
					"extendedKeyUsage=$3" ${4:+"subjectAltName=$4"}) 2>/dev/null
			rm -f "$1.csr"
		}
		leaf apiserver /CN=kube-apiserver serverAuth \
			"IP:$API_IP,IP:$KUBERNETES_SVC_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
		# system:masters bypasses RBAC, so tests can set up any RBAC they need.
		leaf admin /O=system:masters/CN=admin clientAuth
		leaf apiserver-kubelet-client /O=system:masters/CN=kube-apiserver-kubelet-client clientAuth
		leaf controller-manager /CN=system:kube-controller-manager clientAuth
		leaf scheduler /CN=system:kube-scheduler clientAuth
		leaf kube-proxy /CN=system:kube-proxy clientAuth
		local node
		for node in $(node_names); do
			# The Node authorizer and NodeRestriction recognise a kubelet by this name.
			leaf "node-$node" "/O=system:nodes/CN=system:node:$node" clientAuth
		done
		openssl ecparam -name prime256v1 -genkey -noout -out sa.key 2>/dev/null
		openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
		chmod 600 ./*.key
	)
}

# write_kubeconfig CERT FILE
write_kubeconfig() {
	cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: raygate-cluster
  cluster:
    server: https://$API_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$1.crt")
    client-key-data: $(base64 -w0 <"$PKI/$1.key")
contexts:
- name: raygate-cluster
  context: {cluster: raygate-cluster, user: $1}
current-context: raygate-cluster
EOF
	chmod 600 "$2"
}

write_audit_policy() {
	cat >"$DIR/audit-policy.yaml" <<'EOF'
# As in tests/e2e/cluster.sh: admission decisions and webhook patches are recorded as
# audit annotations, so writes are logged with their request body.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: [/healthz*, /livez*, /readyz*, /version, /openapi*]
- level: None
  verbs: [watch, get, list]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}, {group: "", resources: [events]}]
- level: None
  users: [system:kube-controller-manager, system:kube-scheduler, system:kube-proxy]
- level: None
  userGroups: [system:nodes]
- level: Metadata
  resources: [{group: "", resources: [secrets, configmaps]}, {group: authentication.k8s.io, resources: [tokenreviews]}]
- level: Request
  verbs: [create, update, patch, delete, deletecollection]
- level: Metadata
EOF
}

# --- one node --------------------------------------------------------------------------
node_dir() { echo "$DIR/n/$1"; }
# containerd's root: after `down` it holds nothing but the images imported into it, so
# the next `up` imports only the archives that changed (importing the Ray image into
# three nodes takes most of a cold `up`). CLUSTER_KEEP_IMAGES=0 makes `down` delete it.
image_store() { echo "$DIR/images/$1"; }

write_node_config() {
	local name="$1" index="$2" d ip subnet
	d="$(node_dir "$name")"
	ip="$(node_ip "$index")"
	subnet="$(node_subnet "$index")"
	mkdir -p "$d"/{state,run,runc,opt,cni/net.d,cni/ipam,kubelet,volume-plugins} "$DIR/logs/pods/$name"
	local store
	store="$(image_store "$name")"
	# A store that `down` did not leave clean may hold an earlier run's containers.
	[[ -f "$store/.clean" ]] || rm -rf "$store"
	rm -f "$store/.clean"
	mkdir -p "$store"
	cat >"$d/containerd.toml" <<EOF
version = 2
root = "$store"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$d/run/containerd.sock"
[ttrpc]
  address = "$d/run/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The capability bounding set here lacks CAP_SYS_RESOURCE, so no process may lower
  # oom_score_adj: runc would fail every sandbox (pause asks for -998). Guaranteed Pods
  # lose their OOM-killer protection; memory limits still hold.
  restrict_oom_score_adj = true
  # Network namespaces under this node's state, not the global /run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "$ip"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$d/runc"
EOF
	# ipMasq false: Pods see each other's real addresses (as NetworkPolicies need), and
	# the only route is the test range, so a Pod cannot even address the outside.
	cat >"$d/cni/net.d/10-rgc.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "rgc-$name",
  "plugins": [{
    "type": "bridge",
    "bridge": "$BRIDGE_PREFIX$index",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": "$d/cni/ipam",
      "ranges": [[{"subnet": "$subnet"}]],
      "routes": [{"dst": "$TEST_NET"}]
    }
  }]
}
EOF
	local taints=""
	[[ "$name" == gpu-node ]] && taints="registerWithTaints: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]"
	cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: $ip
healthzPort: 10248
containerRuntimeEndpoint: unix://$d/run/containerd.sock
imageServiceEndpoint: unix://$d/run/containerd.sock
# containerd 1.6 does not report its cgroup driver over CRI.
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_PREFIX$name
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
failCgroupV1: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
# No host resolver inside Pods: ClusterFirst Pods ask CoreDNS, which never forwards.
resolvConf: ""
# Containers' logs stay after down, with the rest of logs/.
podLogsDir: $DIR/logs/pods/$name
volumePluginDir: $d/volume-plugins
# Images come from archives, not a registry: they must never be collected.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 50
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
$taints
EOF
}

start_containerd() {
	local name="$1" d
	d="$(node_dir "$name")"
	# Every cgroup parent must exist in every hierarchy before kubelet starts.
	local h
	for h in /sys/fs/cgroup/*/; do
		[[ -e "$h/cgroup.procs" ]] && mkdir -p "$h$CGROUP_PREFIX$name"
	done
	# An image missing from the archives must fail at once, not make containerd
	# resolve a registry's name through the host's resolver: every pull goes to a
	# proxy address where nothing listens.
	start "containerd-$name" env HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY= \
		https_proxy=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 no_proxy= \
		containerd --config "$d/containerd.toml"
}

ctr_node() {
	local sock
	sock="$(node_dir "$1")/run/containerd.sock"
	shift
	ctr --address "$sock" -n k8s.io "$@"
}

# Image archives: the project's (scripts/cluster-images.sh, scripts/image.sh), the
# cluster's own components, and CLUSTER_EXTRA_IMAGES (files or directories, space-separated).
image_archives() {
	local f
	for f in "$IMAGES"/*.tar "$COMPONENT_IMAGES"/*.tar; do [[ -f "$f" ]] && echo "$f"; done
	for f in ${CLUSTER_EXTRA_IMAGES:-}; do
		if [[ -d "$f" ]]; then
			ls "$f"/*.tar 2>/dev/null || true
		elif [[ -f "$f" ]]; then
			echo "$f"
		fi
	done
}

# import_with_retries NODE ARCHIVE: on a slow machine, concurrent unpacks now and then
# fail and then succeed when tried again (seen once in CI, on two of five nodes).
import_with_retries() {
	local name="$1" f="$2" attempt log_file="$DIR/logs/import-$1.log"
	for attempt in 1 2 3; do
		ctr_node "$name" images import "$f" >>"$log_file" 2>&1 && return 0
		log "import of $f into $name failed (attempt $attempt of 3): $(tail -n 1 "$log_file")"
		sleep $((attempt * 2))
	done
	tail -n 20 "$log_file" >&2
	return 1
}

# discard_unpacked_layers NODE: drops the layer blobs of every image whose snapshot
# chain is committed; CRI makes containers from the snapshots and never reads them again.
discard_unpacked_layers() {
	local name="$1" committed layers
	committed="$(ctr_node "$name" snapshots ls | awk '$NF == "Committed" { print $1 }')"
	# `content ls` rows: digest, size, age, labels. A config's labels name its unpacked
	# chain (gc.ref.snapshot.overlayfs); a manifest's name its config and layers.
	layers="$(ctr_node "$name" content ls | awk -v committed="$committed" '
		BEGIN { n = split(committed, c, "\n"); for (i = 1; i <= n; i++) done[c[i]] = 1 }
		NR > 1 {
			k = split($NF, labels, ",")
			for (i = 1; i <= k; i++) {
				split(labels[i], kv, "=")
				if (kv[1] == "containerd.io/gc.ref.snapshot.overlayfs" && kv[2] in done) unpacked[$1] = 1
				if (kv[1] == "containerd.io/gc.ref.content.config") config[$1] = kv[2]
				if (kv[1] ~ /^containerd\.io\/gc\.ref\.content\.l\./) layer[$1] = layer[$1] " " kv[2]
			}
		}
		END { for (m in layer) if (config[m] in unpacked) print layer[m] }')"
	# shellcheck disable=SC2086 # one digest per word
	[[ -z "${layers// /}" ]] || ctr_node "$name" content rm $layers >/dev/null
}

# share_layer_files NODE: hard-links the node's unpacked layer files to equal files in
# the other nodes' stores, so that nodes sharing one disk hold about one copy of each
# image. Only while no snapshot is active: committed layers are read-only lower
# directories (overlayfs copies a file up before writing it), and kubelets start later.
share_layer_files() {
	local name="$1" other
	for other in $(node_names); do
		if ctr_node "$other" snapshots ls | awk '$NF == "Active" { found = 1 } END { exit !found }'; then
			log "$other: active snapshots in its store; the layers of $name are not shared"
			return 0
		fi
	done
	hardlink -q -X -m "$DIR"/images/*/io.containerd.snapshotter.v1.overlayfs/snapshots
}

# import_images NODE: imports the archives not imported since they last changed. One
# node imports at a time (the unpacks compete for the same disk anyway): an archive's
# blobs exist on one node at a time, and one node's unpacked files until they are shared,
# once per node (each sharing reads every store).
import_images() {
	local name="$1" f key list lock n=0 t0=$SECONDS
	list="$(image_store "$name")/.imported"
	touch "$list"
	exec {lock}>"$DIR/images/.import-lock"
	flock "$lock"
	while read -r f; do
		key="$(stat -c '%s %Y' "$f") $f"
		grep -qxF "$key" "$list" && continue
		import_with_retries "$name" "$f" || return 1
		discard_unpacked_layers "$name" || return 1
		{ grep -vF " $f" "$list" || true; } >"$list.new"
		echo "$key" >>"$list.new"
		mv "$list.new" "$list"
		n=$((n + 1))
	done < <(image_archives)
	if ((n > 0)); then share_layer_files "$name" || return 1; fi
	flock -u "$lock"
	log "$name: $n image archives imported in $((SECONDS - t0))s"
}

# forget_containers NODE: leaves only images in the node's containerd (its processes
# are dead by now), and marks the store clean for the next `up`.
forget_containers() {
	local name="$1" id
	ctr_node "$name" version >/dev/null 2>&1 || return 0
	# containerd removes some exited tasks by itself meanwhile: "not found" is fine.
	for id in $(ctr_node "$name" tasks ls -q 2>/dev/null); do
		ctr_node "$name" tasks rm -f "$id" >>"$DIR/logs/forget-$name.log" 2>&1
	done
	for id in $(ctr_node "$name" containers ls -q 2>/dev/null); do
		ctr_node "$name" containers rm "$id" >>"$DIR/logs/forget-$name.log" 2>&1
	done
	if [[ -z "$(ctr_node "$name" containers ls -q 2>&1)" ]]; then
		touch "$(image_store "$name")/.clean-pending"
	else
		log "$name: could not remove every container; its image store will be rebuilt"
	fi
}

start_kubelet() {
	local name="$1" index="$2" d labels=""
	d="$(node_dir "$name")"
	# Labels under kubernetes.io (the control-plane role) are refused from a kubelet;
	# `up` sets that one itself.
	[[ "$name" == worker-* ]] && labels="--node-labels=node-role=worker"
	start "kubelet-$name" "$BIN/kubelet" --config="$d/kubelet.yaml" --kubeconfig="$DIR/node-$name.kubeconfig" \
		--root-dir="$d/kubelet" --cert-dir="$d/kubelet/pki" --hostname-override="$name" \
		--node-ip="$(node_ip "$index")" $labels --v=1
}

# --- cluster add-ons -------------------------------------------------------------------
addons() {
	cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
# Answers for cluster.local and the test range's reverse zones only. Every other name
# gets NXDOMAIN (and is logged): there is no forward plugin in this build at all.
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    cluster.local:53 18.198.in-addr.arpa:53 19.198.in-addr.arpa:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local 18.198.in-addr.arpa 19.198.in-addr.arpa {
            pods insecure
            ttl 30
        }
    }
    .:53 {
        errors
        log
        template ANY ANY {
            rcode NXDOMAIN
        }
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      # A Pod like in any cluster (so NetworkPolicies that admit DNS by the usual
      # kube-system/k8s-app=kube-dns selectors work), kept on the control-plane node.
      nodeSelector: {node-role.kubernetes.io/control-plane: ""}
      tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
      dnsPolicy: Default
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /health, port: 8080}, initialDelaySeconds: 10}
        resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {memory: 128Mi}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: kube-network-policies, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kube-network-policies}
rules:
- {apiGroups: [""], resources: [pods, namespaces, nodes], verbs: [list, watch]}
- {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [list, watch]}
- {apiGroups: ["", events.k8s.io], resources: [events], verbs: [create, patch, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kube-network-policies}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-network-policies}
subjects: [{kind: ServiceAccount, name: kube-network-policies, namespace: kube-system}]
---
# One instance for the whole cluster: every node is the same network namespace, and
# its nftables table has a fixed name. --hostname-override='*' (the patch) makes it
# filter every node's Pods; the nfqueue patch makes it work without CONFIG_NFT_QUEUE.
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-network-policies
  namespace: kube-system
  labels: {app: kube-network-policies}
spec:
  selector: {matchLabels: {app: kube-network-policies}}
  template:
    metadata: {labels: {app: kube-network-policies}}
    spec:
      serviceAccountName: kube-network-policies
      priorityClassName: system-node-critical
      hostNetwork: true
      nodeSelector: {kubernetes.io/hostname: gpu-node}
      tolerations: [{operator: Exists}]
      containers:
      - name: kube-network-policies
        image: $KNP_IMAGE
        imagePullPolicy: Never
        args: ["--hostname-override=*", --disable-nri, --nfqueue-id=100, "--metrics-bind-address=$API_IP:9080", --v=2]
        env:
        # Straight to the API server: its Service would depend on kube-proxy.
        - {name: KUBERNETES_SERVICE_HOST, value: "$API_IP"}
        - {name: KUBERNETES_SERVICE_PORT, value: "$API_PORT"}
        securityContext: {privileged: true}
        resources: {requests: {cpu: 50m, memory: 50Mi}, limits: {memory: 256Mi}}
EOF
}

# --- up / down -------------------------------------------------------------------------
up() {
	((EUID == 0)) || die "needs root (kubelet, containerd, iptables)"
	if ! [[ "$WORKERS" =~ ^[0-9]+$ ]] || ((WORKERS < 1 || WORKERS > 8)); then
		die "CLUSTER_WORKERS must be 1..8"
	fi
	local b
	for b in "$BIN"/{kubelet,kube-controller-manager,kube-scheduler,kube-proxy,kube-network-policies,coredns} \
		"$E2E_BIN"/{etcd,kube-apiserver,kubectl} "$COMPONENT_IMAGES"/{coredns,kube-network-policies}.tar; do
		[[ -e "$b" ]] || {
			log "$b missing; building tools"
			"$ROOT/scripts/cluster-tools.sh"
			break
		}
	done
	# The other images (pause, busybox, kubectl, KubeRay, Ray) are made by
	# scripts/cluster-images.sh; run it again to refresh them.
	if [[ ! -f "$IMAGES/pause.tar" && -x "$ROOT/scripts/cluster-images.sh" && -z "${CLUSTER_EXTRA_IMAGES:-}" ]]; then
		log "no pause image in $IMAGES; running scripts/cluster-images.sh"
		"$ROOT/scripts/cluster-images.sh" >/dev/null
	fi
	# Every node unpacks every image, but the nodes' stores share the unpacked files and
	# drop the blobs (import_images): about one copy of each archive, a second on the
	# node importing them, and a gigabyte for an archive's blobs, containers and logs.
	local free_mb archives_mb need_mb
	free_mb="$(df -P -BM "$ROOT/.cache" | awk 'NR == 2 { sub("M", "", $4); print $4 }')"
	archives_mb="$(image_archives | xargs -r du -cm | awk 'END { print $1 + 0 }')"
	need_mb=$((2 * archives_mb + 1024))
	log "free disk under $ROOT/.cache: ${free_mb} MB; the nodes' images need about ${need_mb} MB"
	((free_mb >= need_mb)) || die "needs about ${need_mb} MB free under $ROOT/.cache for the nodes' images; ${free_mb} MB free"
	local tool
	for tool in containerd ctr runc iptables nft openssl python3 hardlink flock; do
		command -v "$tool" >/dev/null || die "$tool not found (run scripts/cluster-tools.sh)"
	done
	# Unix sockets live under DIR (kubelet's pod-resources socket is the deepest), and
	# their paths may not be longer than 107 bytes.
	((${#DIR} <= 60)) || die "DIR is ${#DIR} characters long; give one of at most 60"
	[[ ! -f "$DIR/active" ]] || die "a cluster from $DIR was not torn down; run '$0 down $DIR' first"
	local addr addrs
	addrs="$(ip -4 -o addr show)"
	for addr in "$API_IP" $(for i in $(seq 0 "$WORKERS"); do node_ip "$i"; done); do
		! grep -q "inet $addr/" <<<"$addrs" || die "$addr is already in use on this machine"
	done

	local t_up=$SECONDS
	rm -rf "${DIR:?}"/{pki,etcd-data,logs,pids,n,audit.log,kubeconfig,*.kubeconfig,cluster.env}
	mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/n"
	write_baseline
	touch "$DIR/active"
	# If anything below fails, tear down what was started but keep the logs.
	trap 'log "up failed; tearing down (logs stay in $DIR/logs)"; down' EXIT

	install_guard
	ip addr add "$API_IP/32" dev lo
	local names=() name i=0
	mapfile -t names < <(node_names)
	for name in "${names[@]}"; do
		ip addr add "$(node_ip "$i")/32" dev lo
		i=$((i + 1))
	done

	gen_pki
	write_kubeconfig admin "$KUBECONFIG_FILE"
	for b in controller-manager scheduler kube-proxy; do write_kubeconfig "$b" "$DIR/$b.kubeconfig"; done
	for name in "${names[@]}"; do write_kubeconfig "node-$name" "$DIR/node-$name.kubeconfig"; done
	write_audit_policy

	# Nodes' containerd first: they start in a second, and importing images takes the longest.
	i=0
	for name in "${names[@]}"; do
		write_node_config "$name" "$i"
		start_containerd "$name"
		i=$((i + 1))
	done

	start etcd "$E2E_BIN/etcd" --name raygate-cluster --data-dir "$DIR/etcd-data" \
		--listen-client-urls "http://$API_IP:2379" --listen-peer-urls "http://$API_IP:2380" --unsafe-no-fsync
	start kube-apiserver "$E2E_BIN/kube-apiserver" \
		--bind-address="$API_IP" --advertise-address="$API_IP" --secure-port="$API_PORT" \
		--etcd-servers="http://$API_IP:2379" \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types=InternalIP \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--enable-aggregator-routing=true \
		--audit-policy-file="$DIR/audit-policy.yaml" --audit-log-path="$DIR/audit.log" \
		--allow-privileged=true --profiling=false

	local sock
	for name in "${names[@]}"; do
		sock="$(node_dir "$name")/run/containerd.sock"
		wait_for "containerd-$name" "containerd of $name" ctr --address "$sock" version
	done
	local pids=()
	for name in "${names[@]}"; do
		import_images "$name" &
		pids+=($!)
	done

	wait_for etcd "etcd on $API_IP:2379" bash -c "exec 3<>/dev/tcp/$API_IP/2379"
	wait_for kube-apiserver "kube-apiserver /readyz" bash -c "[[ \"\$('$E2E_BIN/kubectl' --kubeconfig '$KUBECONFIG_FILE' get --raw=/readyz 2>/dev/null)\" == ok ]]"

	start kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig="$DIR/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$DIR/controller-manager.kubeconfig" \
		--authorization-kubeconfig="$DIR/controller-manager.kubeconfig" \
		--bind-address="$API_IP" --leader-elect=false \
		--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
		--use-service-account-credentials=true \
		--allocate-node-cidrs=false --cluster-cidr="$POD_CIDR" --service-cluster-ip-range="$SERVICE_CIDR"
	start kube-scheduler "$BIN/kube-scheduler" \
		--kubeconfig="$DIR/scheduler.kubeconfig" \
		--authentication-kubeconfig="$DIR/scheduler.kubeconfig" \
		--authorization-kubeconfig="$DIR/scheduler.kubeconfig" \
		--bind-address="$API_IP" --leader-elect=false
	cat >"$DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $DIR/kube-proxy.kubeconfig}
mode: iptables
# One kube-proxy serves every node: they share this network namespace.
hostnameOverride: gpu-node
bindAddress: $API_IP
healthzBindAddress: $API_IP:10256
metricsBindAddress: $API_IP:10249
clusterCIDR: $POD_CIDR
nodePortAddresses: [$NODE_NET.0/24]
# Leave the host's sysctls alone: no route_localnet, no conntrack table resizing.
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
	start kube-proxy "$BIN/kube-proxy" --config="$DIR/kube-proxy.yaml" --v=1

	for pid in "${pids[@]}"; do wait "$pid" || die "image import failed (see $DIR/logs/import-*.log)"; done
	log "the nodes' image stores use $(du -sh "$DIR/images" | cut -f1) in all"
	grep -qx "$PAUSE_IMAGE" <<<"$(ctr_node gpu-node images ls -q)" ||
		die "no $PAUSE_IMAGE among the image archives; run scripts/cluster-images.sh (or set CLUSTER_EXTRA_IMAGES)"

	i=0
	for name in "${names[@]}"; do
		start_kubelet "$name" "$i"
		i=$((i + 1))
	done
	for name in "${names[@]}"; do
		wait_for "kubelet-$name" "node $name registered" kubectl get node "$name"
	done
	kubectl label node gpu-node node-role.kubernetes.io/control-plane= --overwrite >/dev/null
	# No device plugin can work here (kubelet's device-plugin socket path is global),
	# so the GPU is written into the Node's status, which kubelet then keeps.
	kubectl patch node gpu-node --subresource=status --type=merge \
		-p '{"status":{"capacity":{"nvidia.com/gpu":"1"},"allocatable":{"nvidia.com/gpu":"1"}}}' >/dev/null
	for name in "${names[@]}"; do
		wait_for "kubelet-$name" "node $name Ready" bash -c \
			"[[ \"\$('$E2E_BIN/kubectl' --kubeconfig '$KUBECONFIG_FILE' get node $name -o 'jsonpath={.status.conditions[?(@.type==\"Ready\")].status}')\" == True ]]"
	done

	wait_for kube-controller-manager "kube-system/default ServiceAccount" kubectl -n kube-system get serviceaccount default
	addons | kubectl apply -f - >"$DIR/logs/addons.log" 2>&1 || fail_with_log addons "applying the add-ons failed"
	wait_for addons "CoreDNS Ready" bash -c \
		"'$E2E_BIN/kubectl' --kubeconfig '$KUBECONFIG_FILE' -n kube-system get endpointslices -l kubernetes.io/service-name=kube-dns -o jsonpath='{.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}' | grep -q ."
	wait_for kube-proxy "kube-proxy rules for kube-dns" bash -c "iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q -- '-d $DNS_IP/32 .*dport 53'"
	wait_for addons "kube-network-policies running" bash -c \
		"[[ \"\$('$E2E_BIN/kubectl' --kubeconfig '$KUBECONFIG_FILE' -n kube-system get pods -l app=kube-network-policies -o 'jsonpath={.items[0].status.phase}')\" == Running ]]"
	wait_for addons "kube-network-policies' nftables table" nft list table inet kube-network-policies

	{
		echo "NODES='${names[*]}'"
		echo "WORKERS=$WORKERS"
	} >"$DIR/cluster.env"
	# What a user installs: the KubeRay operator from its own manifests, raygate with Helm.
	if [[ "${CLUSTER_INSTALL:-1}" != 0 ]]; then
		(eval "$(print_env)" && "$ROOT/tests/cluster/install.sh" all) ||
			fail_with_log addons "installing the KubeRay operator and raygate failed"
	fi
	trap - EXIT
	log "cluster up in $((SECONDS - t_up))s: ${names[*]} (run: eval \"\$($0 env $DIR)\")"
}

down() {
	((EUID == 0)) || die "needs root"
	# Best effort from here on: every step runs, whatever the one before found missing.
	set +e
	local t0=$SECONDS name pid pids d
	local nodes=()
	for d in "$DIR"/n/*/; do
		[[ -d "$d" ]] && nodes+=("$(basename "$d")")
	done
	# Kubelets first, so that nothing restarts what is being stopped.
	stop "${nodes[@]/#/kubelet-}"
	# Containers: every process in the cluster's cgroups (kube-network-policies too).
	for _ in $(seq 50); do
		pids=$(cgroup_pids)
		[[ -z "$pids" ]] && break
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		sleep 0.2
	done
	for name in "${nodes[@]}"; do forget_containers "$name"; done
	stop "${nodes[@]/#/containerd-}"
	stop kube-proxy kube-scheduler kube-controller-manager kube-apiserver
	stop etcd
	# Whatever is left of ours (a pid file lost to a crash, the shims): any of the
	# cluster's binaries whose command line names this directory.
	pids=()
	for pid in $(pgrep -f -- "$DIR/" || true); do
		[[ "$pid" != "$$" ]] && ours "$pid" && pids+=("$pid")
	done
	((${#pids[@]})) && stop_pids "${pids[@]}"

	log "down: processes stopped after $((SECONDS - t0))s"

	# Mounts under DIR (netns, shm, rootfs, kubelet volumes), deepest first.
	local m
	for _ in 1 2 3; do
		findmnt -rn -o TARGET | grep -F "$DIR/" | sort -r | while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
	done

	# Network: bridges (their veths went with the Pods' namespaces), addresses, rules.
	local link
	for link in $(ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | grep "^$BRIDGE_PREFIX" || true); do
		ip link del "$link" 2>/dev/null || true
	done
	for addr in $(ip -4 -o addr show dev lo | awk '{ print $4 }' | grep "^$NODE_NET\." || true); do
		ip addr del "$addr" dev lo 2>/dev/null || true
	done
	if [[ -x "$BIN/kube-proxy" ]]; then
		"$BIN/kube-proxy" --cleanup >"$DIR/logs/kube-proxy-cleanup.log" 2>&1 || true
	fi
	remove_kube_chains
	nft delete table inet kube-network-policies 2>/dev/null || true
	remove_guard
	restore_baseline

	log "down: mounts, links, addresses, rules and host settings cleared after $((SECONDS - t0))s"

	# cgroups, deepest first.
	local c
	for c in /sys/fs/cgroup/*/"$CGROUP_PREFIX"*; do
		if [[ -d "$c" ]]; then find "$c" -depth -type d -exec rmdir {} + 2>/dev/null; fi
	done

	# The nodes' state (kubelet's volumes, the containers' state): never reused.
	rm -rf "${DIR:?}/n" "$DIR/etcd-data" "$DIR/pids" "$DIR/cluster.env"
	local store
	for store in "$DIR"/images/*/; do
		[[ -d "$store" ]] || continue
		if [[ "${CLUSTER_KEEP_IMAGES:-1}" == 0 ]]; then
			rm -rf "$store"
		elif [[ -f "$store.clean-pending" ]]; then
			# The CRI plugin's files for the containers forgotten above.
			rm -rf "$store"io.containerd.grpc.v1.cri/{containers,sandboxes}
			mv "$store.clean-pending" "$store.clean"
		elif [[ ! -f "$store.clean" ]]; then
			rm -rf "$store" # an earlier run's containers may be in it
		fi
	done
	rm -f "$DIR/active"
	log "down in $((SECONDS - t0))s"
}

print_env() {
	[[ -f "$DIR/cluster.env" ]] || die "no cluster in $DIR (run '$0 up $DIR')"
	local NODES=""
	# shellcheck disable=SC1091
	source "$DIR/cluster.env"
	local workers="${NODES#gpu-node }"
	cat <<EOF
export KUBECONFIG='$KUBECONFIG_FILE'
export CLUSTER_DIR='$DIR'
export CLUSTER_KUBECTL='$E2E_BIN/kubectl'
export CLUSTER_RAY_IMAGE='$RAY_IMAGE'
export CLUSTER_RAYGATE_NAMESPACE='$RAYGATE_NAMESPACE'
export CLUSTER_NODES='$NODES'
export CLUSTER_GPU_NODE='gpu-node'
export CLUSTER_WORKER_NODES='$workers'
export CLUSTER_APISERVER='https://$API_IP:$API_PORT'
export CLUSTER_CA_CERT='$PKI/ca.crt'
export CLUSTER_CA_KEY='$PKI/ca.key'
export CLUSTER_AUDIT_LOG='$DIR/audit.log'
export CLUSTER_DNS_IP='$DNS_IP'
export CLUSTER_BUSYBOX_IMAGE='$BUSYBOX_IMAGE'
EOF
}

case "$CMD" in
up) up ;;
down) down ;;
env) print_env ;;
*)
	echo "usage: $0 up|env|down [DIR]" >&2
	exit 2
	;;
esac
