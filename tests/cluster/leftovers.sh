#!/usr/bin/env bash
# Fails (and lists what it found) when anything of a tests/cluster/cluster.sh cluster is
# still on this machine: processes, cgroups, mounts, links, addresses, iptables chains,
# nftables tables, host settings that differ from before `up`, or kubelet's global paths.
#
#   tests/cluster/leftovers.sh [DIR]     (DIR as given to cluster.sh; default .cache/cluster/run)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${1:-$ROOT/.cache/cluster/run}"
[[ -d "$DIR" ]] && DIR="$(cd "$DIR" && pwd)"
found=0
report() {
	found=$((found + 1))
	printf '[leftovers] %s\n' "$*" >&2
}

[[ -e "$DIR/active" ]] && report "$DIR/active: the cluster was not torn down"

# Processes: the cluster's binaries running from or for DIR, and anything in its cgroups.
for pid in $(pgrep -f -- "$DIR/" 2>/dev/null); do
	exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || continue
	case "${exe##*/}" in
	etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy | kubelet | containerd | containerd-shim-runc-v2)
		report "process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-160)"
		;;
	esac
done
for cg in /sys/fs/cgroup/*/rgc-*; do
	[[ -d "$cg" ]] || continue
	report "cgroup $cg"
	while read -r pid; do
		report "  process $pid in it: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
	done < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
done

# Mounts and links.
while read -r m; do report "mount $m"; done < <(findmnt -rn -o TARGET | grep -F "$DIR/")
while read -r l; do report "link $l"; done < <(ip -o link show | awk -F': ' '{ print $2 }' | grep '^rgc-')
while read -r l; do report "veth on a cluster bridge: $l"; done < <(ip -o link show type veth 2>/dev/null |
	grep -E 'master rgc-' | awk -F': ' '{ print $2 }')
while read -r a; do report "address $a on lo"; done < <(ip -4 -o addr show dev lo | awk '{ print $4 }' | grep '^198\.18\.200\.')
while read -r r; do report "route $r"; done < <(ip -4 route show | grep -E '^(unreachable )?198\.18\.(0\.0/15|2(0[89]|1[0-9]|2[0-3])\.)')

# Packet filtering.
for cmd in iptables ip6tables; do
	command -v "$cmd" >/dev/null || continue
	for table in filter nat mangle raw; do
		while read -r chain; do report "$cmd -t $table chain $chain"; done < <("$cmd" -t "$table" -S 2>/dev/null |
			awk '$1 == "-N" && ($2 ~ /^KUBE-/ || $2 ~ /^RGC-/ || $2 ~ /^CNI-/) { print $2 }')
		while read -r rule; do report "$cmd -t $table rule: $rule"; done < <("$cmd" -t "$table" -S 2>/dev/null |
			grep -E 'rgc-br|198\.19\.200\.|198\.18\.200\.' || true)
	done
done
if command -v nft >/dev/null; then
	while read -r t; do report "nftables table $t"; done < <(nft list tables 2>/dev/null |
		grep -E 'kube-network-policies|kube-proxy' || true)
fi

# Host settings and kubelet's global paths, against the baseline `up` recorded.
if [[ -f "$DIR/baseline" ]]; then
	while read -r kind key value; do
		case "$kind" in
		sysctl)
			[[ "$value" == - ]] && continue
			now="$(sysctl -n "$key" 2>/dev/null)"
			[[ "$now" == "$value" ]] || report "sysctl $key = $now (was $value)"
			;;
		path)
			[[ "$value" == absent && -e "$key" ]] || continue
			# Another containerd on the machine (not the cluster's) may use this one.
			[[ "$key" == /run/containerd ]] && pgrep -x containerd >/dev/null && continue
			report "path $key (absent before up)"
			;;
		esac
	done <"$DIR/baseline"
fi
for l in /var/log/containers/*; do
	[[ -L "$l" && "$(readlink "$l")" == "$DIR/"* ]] && report "symlink $l"
done
compgen -G "/var/lib/cni/results/rgc-*" >/dev/null && report "CNI results cache /var/lib/cni/results/rgc-*"

if ((found)); then
	printf '[leftovers] %d left over from the cluster in %s\n' "$found" "$DIR" >&2
	exit 1
fi
printf '[leftovers] nothing left over from the cluster in %s\n' "$DIR" >&2
