#!/usr/bin/env bash
# Debian packages for the cluster: image build (buildah, podman, runc, mmdebstrap), node
# runtime (containerd, runc, CNI plugins, iptables, conntrack), PKI (openssl). Idempotent.
source "$(dirname "$0")/lib.sh"
PKGS=(buildah podman runc containerd containernetworking-plugins mmdebstrap iptables conntrack
      uidmap fuse-overlayfs openssl curl gcc libc6-dev)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
