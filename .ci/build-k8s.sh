#!/usr/bin/env bash
# Build kube-apiserver, kubectl and etcd from the Kubernetes Go modules into a
# cache outside the repo, for the tests in tests/k8s.  Idempotent: a second run
# finds the binaries and returns in well under a second.
#
#   bash .ci/build-k8s.sh        kube-apiserver, kubectl, etcd   -> .../bin
#   bash .ci/build-k8s.sh node   kubelet, kube-controller-manager, kube-scheduler,
#                                kube-proxy (for tests/cluster)  -> .../node-bin
#                                (same flags: shared packages come from the Go build cache)
#
#   WORKERPOOL_K8S_VERSION  Kubernetes version (default below; etcd follows the
#                           version pinned by that Kubernetes release's go.mod)
#   WORKERPOOL_K8S_CACHE    cache root (default ~/.cache/workerpool-k8s)
#
# Binaries end up in $WORKERPOOL_K8S_CACHE/$WORKERPOOL_K8S_VERSION/bin.
# See tests/k8s/HARNESS.md for why it is done this way.
set -euo pipefail

K8S_VERSION="${WORKERPOOL_K8S_VERSION:-v1.36.3}"
CACHE_ROOT="${WORKERPOOL_K8S_CACHE:-$HOME/.cache/workerpool-k8s}"
OUT="$CACHE_ROOT/$K8S_VERSION"
if [[ "${1:-}" == node ]]; then
  BIN="$OUT/node-bin"
  SRC="$OUT/node-src"
  BINARIES=(kubelet kube-controller-manager kube-scheduler kube-proxy)
  PACKAGES=(k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager
            k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy)
else
  BIN="$OUT/bin"
  SRC="$OUT/src"
  BINARIES=(kube-apiserver kubectl etcd)
  # the etcd main package is the module root, so go names its binary "server"
  PACKAGES=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3)
fi
STAMP="$BIN/.complete"
START=$SECONDS

log() { echo "build-k8s: $*" >&2; }
elapsed() { log "$1 in $((SECONDS - START))s (binaries: $BIN)"; }

have_all() {
  [[ -f "$STAMP" ]] || return 1
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}

# go.mod of a build-only module: requires k8s.io/kubernetes and pins every
# staging repo (k8s.io/api, k8s.io/apiserver, ...) to the matching v0.x.y tag,
# replacing the ./staging/src/... replaces k8s.io/kubernetes uses in its repo.
write_module() {
  local k8s_mod staging_version
  k8s_mod="$(cd / && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$k8s_mod" ]] || { log "cannot fetch k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  staging_version="v0.${K8S_VERSION#v1.}"
  mkdir -p "$SRC"
  {
    printf 'module workerpool.local/k8sbuild\n\n'
    grep -E '^(go|godebug) ' "$k8s_mod"
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    sed -n '/^replace (/,/^)/p' "$k8s_mod" | awk -v v="$staging_version" \
      '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }'
    printf ')\n'
  } >"$SRC/go.mod"
  {
    printf '//go:build tools\n\n// Package tools only pins the commands built by .ci/build-k8s.sh.\n'
    printf 'package tools\n\nimport (\n'
    printf '\t_ "%s"\n' "${PACKAGES[@]}"
    printf ')\n'
  } >"$SRC/tools.go"
}

# Version variables that Kubernetes' own build (hack/lib/version.sh) stamps in,
# so /version and `kubectl version` report the real release, not v0.0.0-master.
ldflags() {
  local minor="${K8S_VERSION#v1.}" flags="-s -w" pkg
  minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1"
    flags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

build() {
  local tmp="$BIN.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp" "$BIN"
  (
    cd "$SRC"
    go mod tidy
    # One invocation so the commands share one action graph; -p 2 for the
    # 2-core machines.
    go build -p 2 -trimpath -buildvcs=false -ldflags="$(ldflags)" -o "$tmp/" "${PACKAGES[@]}"
  )
}

main() {
  if have_all; then elapsed "cached"; return 0; fi
  # the machine image ships Go in /usr/local/go; a login shell may not have it on PATH
  command -v go >/dev/null || [[ ! -x /usr/local/go/bin/go ]] || PATH="/usr/local/go/bin:$PATH"
  command -v go >/dev/null || { log "go is not installed (needed to build kube-apiserver)"; exit 1; }
  log "building Kubernetes $K8S_VERSION (~6 min on 2 cores with empty Go caches)"
  write_module
  build
  rm -f "$STAMP"
  [[ ! -f "$BIN.tmp/server" ]] || mv -f "$BIN.tmp/server" "$BIN.tmp/etcd"
  mv -f "$BIN.tmp"/* "$BIN/"
  rmdir "$BIN.tmp"
  { [[ ! -x "$BIN/etcd" ]] || "$BIN/etcd" --version; "$BIN/${BINARIES[0]}" --version; } >"$STAMP.tmp"
  mv -f "$STAMP.tmp" "$STAMP"
  grep -E '^(etcd Version|Kubernetes)' "$STAMP" >&2
  elapsed "built"
}

main "$@"
