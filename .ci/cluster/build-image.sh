#!/usr/bin/env bash
# Build an image with Debian's buildah, exactly as `docker build -t REF CONTEXT` would, and save
# it as a docker-archive for `ctr images import` (what `kind load` does):
#   build-image.sh REF [CONTEXT]        CONTEXT defaults to the checkout (its Dockerfile)
# FROM python:3.11-slim resolves to base-image.sh's stand-in (--pull=never); `FROM workerpool:X`
# to an image built here before. RUN steps reach the Debian mirror and PyPI on the host network.
# Idempotent: --layers caches every step; the tarball is rewritten only when the image changed.
source "$(dirname "$0")/lib.sh"
REF="${1:?usage: build-image.sh REF [CONTEXT]}"
CONTEXT="${2:-$REPO}"
[[ -f "$CONTEXT/Dockerfile" ]] || die "no Dockerfile in $CONTEXT"
podman image exists "$BASE_REF" || die "no $BASE_REF: run .ci/cluster/prepare.sh first"
# This sandbox reaches PyPI through a TLS-inspecting proxy whose CA is only in the host's
# bundle ("CERTIFICATE_VERIFY_FAILED ... self-signed certificate in certificate chain" from
# pip): lend the host bundle to the RUN steps; it is not baked into the image.
CA=()
HOST_CA="${WORKERPOOL_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -f "$HOST_CA" ]] && CA=(-v "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro")
t0=$SECONDS
buildah bud "${CA[@]}" --pull=never --layers --force-rm --isolation oci --network host \
  "${ULIMITS[@]}" --runtime runc --quiet -t "$REF" "$CONTEXT" >/dev/null
id="$(podman image inspect -f '{{.Id}}' "$REF")"
mkdir -p "$CACHE/images"
tar="$CACHE/images/$(tr '/:' '__' <<<"$REF").tar"
if [[ "$(cat "$tar.id" 2>/dev/null)" != "$id" ]]; then
  rm -f "$tar"
  podman save --quiet --format docker-archive -o "$tar.tmp" "$REF" && mv -f "$tar.tmp" "$tar"
  echo "$id" >"$tar.id"
fi
log "built $REF in $((SECONDS - t0))s: $(podman image inspect -f '{{.Size}}' "$REF" | numfmt --to=si)B"
echo "$tar"
