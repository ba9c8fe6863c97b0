#!/usr/bin/env bash
# Put an image tarball (docker-archive) into the node's containerd, as `kind load` or
# `minikube image load` would:  load-image.sh TAR
source "$(dirname "$0")/lib.sh"
ctr -a "$SOCK" -n k8s.io images import "${1:?usage: load-image.sh TAR}" >/dev/null
