#!/usr/bin/env bash
# kubectl for the cluster of up.sh (its API server is only reachable inside its network
# namespace):  .ci/cluster/kubectl.sh get pods -A
source "$(dirname "$0")/lib.sh"
exec nsenter --net="/run/netns/$NETNS" -- "$CP_BIN/kubectl" --kubeconfig="$C/admin.kubeconfig" "$@"
