#!/usr/bin/env bash
# The pod sandbox ("pause") image cannot be pulled from registry.k8s.io here: compile the
# pause.c that ships in the k8s.io/kubernetes module (build/pause/linux/pause.c) statically
# into a FROM-scratch image, saved as a docker-archive for `ctr images import`.
# Idempotent: skipped when the tarball exists.
source "$(dirname "$0")/lib.sh"
TAR="$CACHE/images/pause.tar"
[[ -s "$TAR" ]] && exit 0
mkdir -p "$CACHE/images" "$CACHE/pause"
src="$(cd / && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -f "$src/build/pause/linux/pause.c" ]] || die "no build/pause/linux/pause.c in k8s.io/kubernetes@$K8S_VERSION"
gcc -Os -Wall -Werror -static -DVERSION="${PAUSE_REF##*:}-workerpool" -o "$CACHE/pause/pause" \
  "$src/build/pause/linux/pause.c"
strip "$CACHE/pause/pause"
box="$(buildah from scratch)"
buildah copy --quiet "$box" "$CACHE/pause/pause" /pause >/dev/null
buildah config --entrypoint '["/pause"]' --user 65535:65535 "$box"
buildah commit --quiet --rm "$box" "$PAUSE_REF" >/dev/null
podman save --quiet --format docker-archive -o "$TAR.tmp" "$PAUSE_REF" && mv -f "$TAR.tmp" "$TAR"
log "built $PAUSE_REF"
