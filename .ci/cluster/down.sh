#!/usr/bin/env bash
# Stop what up.sh started and undo what it changed on the host, then check that nothing is
# left: exits non-zero naming any process, mount, network namespace, cgroup or sysctl that
# survived. Order: every container through containerd (SIGKILL, delete), then the daemons in
# reverse order by PID (TERM, KILL after 10 s), then mounts (deepest first), the netns, the
# kubelet's cgroups, the sysctls the kubelet set, and the host paths up.sh created.
# WORKERPOOL_CLUSTER_KEEP_STATE=1 keeps $WORK/cluster (logs, certs) for a post-mortem.
source "$(dirname "$0")/lib.sh"
P="$C/pids"
stop() {
  local pid i
  [[ -f "$P/$1.pid" ]] || return 0
  pid="$(cat "$P/$1.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    ! kill -0 "$pid" 2>/dev/null || kill -KILL "$pid"
  fi
  rm -f "$P/$1.pid"
}
ours() { findmnt -rn -o TARGET | grep -E "^($WORK/|/run/containerd/|/run/netns/cni-)" || true; }

stop kube-proxy
stop kubelet
if [[ -S "$SOCK" ]]; then
  for ns in $(ctr -a "$SOCK" namespaces ls -q 2>/dev/null); do
    c=(ctr -a "$SOCK" -n "$ns")
    for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
    for t in $("${c[@]}" containers ls -q 2>/dev/null); do "${c[@]}" containers delete "$t" >/dev/null 2>&1 || true; done
  done
fi
stop containerd
stop kube-scheduler
stop kube-controller-manager
stop kube-apiserver
stop etcd
# shims outlive containerd by design: any process still naming our state directory is ours
for pid in $(pgrep -f -- "$C/" || true); do kill -KILL "$pid" 2>/dev/null || true; done
ours | sort -r | while read -r m; do umount -l "$m"; done
for f in /run/netns/cni-*; do [[ ! -e "$f" ]] || rm -f "$f"; done
[[ ! -e "/run/netns/$NETNS" ]] || ip netns del "$NETNS"
for d in /sys/fs/cgroup/*/kubepods; do
  [[ ! -d "$d" ]] || find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
done
[[ ! -f "$WORK/sysctl.saved" ]] || sysctl -q -w $(cat "$WORK/sysctl.saved")
M="$WORK/created"
if [[ -f "$M/run-netns-mount" ]] && mountpoint -q /run/netns && [[ -z "$(ls -A /run/netns)" ]]; then
  umount /run/netns && rmdir /run/netns
fi
[[ ! -f "$M/run-containerd" || ! -d /run/containerd ]] || find /run/containerd -depth -type d -empty -delete
[[ ! -f "$M/var-lib-cni" || ! -d /var/lib/cni ]] || rm -rf /var/lib/cni
rm -rf /var/lib/cni/results/wp-* 2>/dev/null || true

# ---- the check: name whatever survived
left=()
for pid in $(pgrep -f -- "$C/" || true); do left+=("process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"); done
while read -r m; do [[ -z "$m" ]] || left+=("mount $m"); done < <(ours)
[[ ! -e "/run/netns/$NETNS" ]] || left+=("network namespace $NETNS")
for d in /sys/fs/cgroup/*/kubepods; do [[ ! -d "$d" ]] || left+=("cgroup $d"); done
if [[ -f "$WORK/sysctl.saved" ]]; then
  while IFS='=' read -r key want; do
    now="$(sysctl -n "$key" 2>/dev/null || true)"
    [[ "$now" == "$want" ]] || left+=("sysctl $key=$now (was $want)")
  done <"$WORK/sysctl.saved"
fi
if ((${#left[@]})); then
  printf '  left behind: %s\n' "${left[@]}" >&2
  die "tear-down left ${#left[@]} thing(s) behind"
fi
rm -rf "$M" "$WORK/sysctl.saved"
[[ "${WORKERPOOL_CLUSTER_KEEP_STATE:-0}" == 1 ]] || rm -rf "$C"
log "down: no process, mount, netns, cgroup or sysctl left behind"
