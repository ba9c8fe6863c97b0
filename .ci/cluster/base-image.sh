#!/usr/bin/env bash
# A local stand-in for python:3.11-slim, which cannot be pulled here: Debian bookworm minbase
# + Debian's python3 (3.11) + pip, made by mmdebstrap from the Debian mirror and imported into
# podman's storage as docker.io/library/python:3.11-slim, so the Dockerfile builds unmodified
# with --pull=never. Two changes make it act like the real image: Debian's PEP 668 marker is
# removed (pip install as root works) and debian:slim's docker-clean apt config is added
# (without it the tini layer keeps 77 MB of /var/cache/apt/*.bin).
# Idempotent: the rootfs tarball is cached, keyed by this recipe's hash.
source "$(dirname "$0")/lib.sh"
MIRROR="${WORKERPOOL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${WORKERPOOL_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
KEY="$(sha256sum "$0" | cut -c1-12)"
TAR="$CACHE/base/bookworm-python3.11-$KEY.tar"
mkdir -p "$CACHE/base"
if [[ ! -s "$TAR" ]]; then
  log "mmdebstrap bookworm + python3 -> $TAR"
  t0=$SECONDS
  clean="$CACHE/base/docker-clean"
  cat >"$clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  mmdebstrap --variant=minbase --format=tar --quiet \
    --include=python3,python3-pip,python-is-python3,ca-certificates,netbase,tzdata \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook="upload $clean /etc/apt/apt.conf.d/docker-clean" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$TAR.tmp" "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY bookworm-security main"
  mv -f "$TAR.tmp" "$TAR"
  log "rootfs in $((SECONDS - t0))s ($(du -h "$TAR" | cut -f1))"
fi
if [[ "$(podman image inspect -f '{{index .Labels "workerpool.base"}}' "$BASE_REF" 2>/dev/null)" != "$KEY" ]]; then
  podman import --quiet --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' --change "LABEL workerpool.base=$KEY" "$TAR" "$BASE_REF" >/dev/null
  log "imported $BASE_REF"
fi
