#!/usr/bin/env bash
# Run a command inside the cluster's network namespace, where Service and pod IPs answer:
#   .ci/cluster/in-ns.sh redis-cli -h 10.96.0.50 ping
source "$(dirname "$0")/lib.sh"
exec nsenter --net="/run/netns/$NETNS" -- "$@"
