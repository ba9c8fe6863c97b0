#!/usr/bin/env bash
# A real single-node Kubernetes, all of it inside one network namespace ($NETNS) with no
# uplink (lo and a veth pair only), so nothing it serves is reachable from, or sends anything
# to, outside the machine: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd + runc (Debian), a CNI bridge (Debian's plugins), the kubelet (cgroup v1,
# cgroupfs) and kube-proxy (iptables, in the namespace's own tables). `nsenter --net` rather
# than `ip netns exec`, which would also give each daemon its own mount namespace: the
# kubelet and containerd must share mounts. Stop it with down.sh.
# Idempotent: a component whose PID file names a live process is not restarted.
source "$(dirname "$0")/lib.sh"
P="$C/pids"; L="$C/logs"; PKI="$C/pki"
POD_CIDR="10.244.0.0/24"; SVC_CIDR="10.96.0.0/24"; SVC_IP="10.96.0.1"
mkdir -p "$P" "$L" "$PKI" "$WORK/created"
[[ -f "$CP_BIN/.complete" && -f "$NODE_BIN/.complete" ]] || die "no Kubernetes binaries: run .ci/cluster/prepare.sh"
[[ -s "$CACHE/images/pause.tar" ]] || die "no pause image: run .ci/cluster/prepare.sh"
T0=$SECONDS

# put FILE < content: write only on change (kube-proxy exits when its --config file is
# written: "content of the proxy server's configuration file was updated")
put() { local t; t="$(mktemp "$C/.put.XXXXXX")"; cat >"$t"; if cmp -s "$t" "$1"; then rm -f "$t"; else mv -f "$t" "$1"; fi; }
alive() { [[ -f "$P/$1.pid" ]] && kill -0 "$(cat "$P/$1.pid")" 2>/dev/null; }
start() {  # start NAME CMD...: in the netns, own session, log in $L/NAME.log
  local name="$1"; shift
  alive "$name" && return
  setsid nsenter --net="/run/netns/$NETNS" -- "$@" >>"$L/$name.log" 2>&1 </dev/null &
  echo $! >"$P/$name.pid"
}
wait_for() {  # wait_for NAME SECONDS CMD...
  local name="$1" secs="$2" i; shift 2
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return
    alive "$name" || { tail -30 "$L/$name.log" >&2; die "$name exited"; }
    sleep 0.25
  done
  tail -30 "$L/$name.log" >&2; die "$name not ready in ${secs}s"
}

# host paths this run may create: down.sh removes only those that did not exist before
mountpoint -q /run/netns || touch "$WORK/created/run-netns-mount"
[[ -e /run/containerd ]] || touch "$WORK/created/run-containerd"
[[ -e /var/lib/cni ]] || touch "$WORK/created/var-lib-cni"

# ---- network namespace: the node's "NIC" is a veth pair with both ends inside (this kernel
# has no dummy driver: "Error: Unknown device type."); the default route points at it so
# components find the node IP, and nothing routed there can leave
[[ -e "/run/netns/$NETNS" ]] || ip netns add "$NETNS"
in_ns ip link set lo up
in_ns ip link show wp0 >/dev/null 2>&1 || in_ns ip link add wp0 type veth peer name wp1
in_ns ip addr replace "$NODE_IP/32" dev wp0
in_ns ip link set wp1 up
in_ns ip link set wp0 up
in_ns ip route replace default dev wp0
in_ns sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1

# ---- PKI: one CA, a client certificate per component, serving certs with the right SANs
cert() {  # cert NAME CN [O] [SAN]
  local n="$1" subj="/CN=$2" san="${4:-}"
  [[ -f "$PKI/$n.crt" ]] && return
  [[ -n "${3:-}" ]] && subj="/O=$3/CN=$2"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$n.key" -subj "$subj" -out "$PKI/$n.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$PKI/$n.ext"
  [[ -z "$san" ]] || printf 'subjectAltName=%s\n' "$san" >>"$PKI/$n.ext"
  openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -extfile "$PKI/$n.ext" -out "$PKI/$n.crt" 2>/dev/null
}
if [[ ! -f "$PKI/ca.crt" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=workerpool-cluster-ca" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:$NODE_IP,IP:$SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin workerpool-admin system:masters
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
cert kcm system:kube-controller-manager
cert scheduler system:kube-scheduler
cert proxy system:kube-proxy
cert kubelet "system:node:$NODE" system:nodes
cert kubelet-serving "$NODE" "" "IP:$NODE_IP,DNS:$NODE"
for pair in admin:admin kcm:kcm scheduler:scheduler proxy:proxy kubelet:kubelet; do
  name="${pair%%:*}"; crt="${pair##*:}"
  put "$C/$name.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: wp, cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$PKI/ca.crt"}}]
users: [{name: $name, user: {client-certificate: "$PKI/$crt.crt", client-key: "$PKI/$crt.key"}}]
contexts: [{name: $name, context: {cluster: wp, user: $name}}]
current-context: $name
KC
done

# ---- etcd + kube-apiserver: 0.0.0.0 inside the uplink-less namespace is 127.0.0.1 and the
# node IP (where the `kubernetes` Service sends pods), nothing else
start etcd "$CP_BIN/etcd" --name wp --data-dir "$C/etcd" --unsafe-no-fsync \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster wp=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd 60 in_ns curl -sf http://127.0.0.1:2379/health
start kube-apiserver "$CP_BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port=6443 \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SVC_CIDR" --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction
wait_for kube-apiserver 120 in_ns curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" \
  --key "$PKI/admin.key" https://127.0.0.1:6443/readyz

# ---- controller-manager (it creates the `default` ServiceAccounts and kube-root-ca.crt) + scheduler
start kube-controller-manager "$NODE_BIN/kube-controller-manager" --kubeconfig="$C/kcm.kubeconfig" \
  --authentication-kubeconfig="$C/kcm.kubeconfig" --authorization-kubeconfig="$C/kcm.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --service-cluster-ip-range="$SVC_CIDR"
start kube-scheduler "$NODE_BIN/kube-scheduler" --kubeconfig="$C/scheduler.kubeconfig" \
  --authentication-kubeconfig="$C/scheduler.kubeconfig" --authorization-kubeconfig="$C/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false
wait_for kube-controller-manager 60 in_ns curl -skf https://127.0.0.1:10257/healthz
wait_for kube-scheduler 60 in_ns curl -skf https://127.0.0.1:10259/healthz

# ---- containerd + CNI
mkdir -p "$C/containerd" "$C/cni/net.d"
put "$C/cni/net.d/10-wp.conflist" <<EOF2
{"cniVersion": "1.0.0", "name": "wp", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$C/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF2
put "$C/containerd/config.toml" <<EOF2
version = 2
root = "$C/containerd/root"
state = "$C/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$SOCK.debug"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  # no CAP_SYS_RESOURCE here: runc cannot set the pause container's -998 oom_score_adj, so
  # every container's is clamped to containerd's own instead (raising it stays allowed)
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$C/cni/net.d"
EOF2
start containerd containerd --config "$C/containerd/config.toml"
wait_for containerd 60 ctr -a "$SOCK" version
ctr -a "$SOCK" -n k8s.io images import "$CACHE/images/pause.tar" >/dev/null

# ---- kubelet. It sets host-wide sysctls at start: remember them for down.sh
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
         kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
[[ -f "$WORK/sysctl.saved" ]] || sysctl -e "${SYSCTLS[@]}" | sed 's/ = /=/' >"$WORK/sysctl.saved"
put "$C/kubelet.yaml" <<EOF2
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false            # this host is cgroup v1 (hybrid); v1.35+ refuses it by default
cgroupDriver: cgroupfs         # containerd 1.6 has no RuntimeConfig RPC: the kubelet falls back to this
containerRuntimeEndpoint: unix://$SOCK
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $PKI/ca.crt}}
authorization: {mode: Webhook}
clusterDomain: cluster.local
failSwapOn: false
podLogsDirectory: $C/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
EOF2
start kubelet "$NODE_BIN/kubelet" --config="$C/kubelet.yaml" --kubeconfig="$C/kubelet.kubeconfig" \
  --root-dir="$C/kubelet" --cert-dir="$C/kubelet/pki" --hostname-override="$NODE" --node-ip="$NODE_IP"
wait_for kubelet 120 in_ns curl -sf http://127.0.0.1:10248/healthz

# ---- kube-proxy
put "$C/kube-proxy.yaml" <<EOF2
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $C/proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0}     # nf_conntrack_max is host-wide and read-only in a netns
EOF2
start kube-proxy "$NODE_BIN/kube-proxy" --config="$C/kube-proxy.yaml"
wait_for kube-proxy 60 in_ns curl -sf http://127.0.0.1:10256/healthz

wait_for kubelet 120 kubectl_ wait --for=condition=Ready "node/$NODE" --timeout=1s
log "node Ready in $((SECONDS - T0))s; kubectl: .ci/cluster/kubectl.sh"
