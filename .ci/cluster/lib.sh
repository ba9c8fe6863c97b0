# Sourced by the .ci/cluster scripts: versions, paths and helpers of the single-node cluster.
# shellcheck shell=bash
set -euo pipefail

K8S_VERSION="${WORKERPOOL_K8S_VERSION:-v1.36.3}"
# what survives between runs: base rootfs, node binaries, pause image, image tarballs
CACHE="${WORKERPOOL_CLUSTER_CACHE:-$HOME/.cache/workerpool-cluster}"
# the state of one cluster run (etcd, containerd, kubelet, logs); removed by down.sh
WORK="${WORKERPOOL_CLUSTER_WORK:-/tmp/workerpool-cluster}"
NETNS="${WORKERPOOL_CLUSTER_NETNS:-wpcluster}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# built by .ci/build-k8s.sh: kube-apiserver, kubectl, etcd; and (`node`) the kubelet & co.
CP_BIN="${WORKERPOOL_K8S_CACHE:-$HOME/.cache/workerpool-k8s}/$K8S_VERSION/bin"
NODE_BIN="${WORKERPOOL_K8S_CACHE:-$HOME/.cache/workerpool-k8s}/$K8S_VERSION/node-bin"
BASE_REF="docker.io/library/python:3.11-slim"   # the local stand-in the Dockerfile's FROM finds
PAUSE_REF="localhost/pause:3.10.2"              # kubeadm's pause version for v1.36
C="$WORK/cluster"                               # the running cluster's files
SOCK="$C/containerd/containerd.sock"
NODE="wp-node"
NODE_IP="10.250.0.1"                            # on a veth inside $NETNS only

command -v go >/dev/null || [[ ! -x /usr/local/go/bin/go ]] || PATH="/usr/local/go/bin:$PATH"
mkdir -p "$CACHE"

log() { printf '%s %s: %s\n' "$(date +%T)" "cluster/$(basename "$0" .sh)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
in_ns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }
kubectl_() { in_ns "$CP_BIN/kubectl" --kubeconfig="$C/admin.kubeconfig" "$@"; }

# podman/buildah as root raise RLIMIT_NOFILE/NPROC in every container; without
# CAP_SYS_RESOURCE runc then fails with "error setting rlimit type 6: operation not
# permitted": pin them to our own hard limit (nofile) and to podman's conmon's 32768 (nproc).
ULIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=32768:32768")
# crun 1.8 fails on a hybrid cgroup host ("cgroups in hybrid mode not supported"): use runc
export CONTAINERS_CONF="$CACHE/containers.conf"
if [[ ! -f "$CONTAINERS_CONF" ]]; then
  printf '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' \
    >"$CONTAINERS_CONF.tmp"
  mv -f "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
fi
