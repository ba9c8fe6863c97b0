#!/usr/bin/env bash
# Everything the cluster needs that is cached between runs, from a bare Debian 12 machine
# (root; the Debian mirror, PyPI and the Go module proxy reachable): Debian packages, the
# base image, the node's Kubernetes binaries, the pause image. A warm run takes a second.
source "$(dirname "$0")/lib.sh"
D="$(dirname "$0")"
step() { local s=$SECONDS; "$@"; log "$(basename "$2") $3 took $((SECONDS - s))s"; }
step bash "$D/install-debs.sh" ""
step bash "$D/base-image.sh" ""
step bash "$REPO/.ci/build-k8s.sh" ""
step bash "$REPO/.ci/build-k8s.sh" node
step bash "$D/pause-image.sh" ""
