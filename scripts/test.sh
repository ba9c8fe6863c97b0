#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what the tests need, then runs pytest.
# Usage: bash scripts/test.sh [pytest args...]     (e.g. -m "not cluster": the fast suites only)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null; then
  echo "== installing redis-server (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
fi

# --- issue 12: metrics and `workerpool top` tests -------------------------------------------
# prometheus + promtool (a real Prometheus scrapes a master; rules and metrics are linted) and
# tmux (`workerpool top` is driven in a real terminal)
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v tmux >/dev/null; then
  echo "== installing prometheus and tmux (Debian packages)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq prometheus tmux >/dev/null
fi
# --- end of issue 12 ------------------------------------------------------------------------

echo "== installing workerpool with its test dependencies"
python3 -m pip install -q --disable-pip-version-check -e ".[test]"

if [ -f .ci/build-k8s.sh ]; then
  echo "== kube-apiserver, etcd, kubectl for the operator tests (cached after the first build)"
  bash .ci/build-k8s.sh
fi

if [ -f .ci/cluster/prepare.sh ] && [ "$(id -u)" = 0 ]; then
  echo "== the single-node Kubernetes for tests/cluster: Debian packages, base image, kubelet & co."
  echo "   (built from source, ~3 min on 2 cores after the step above; cached in ~/.cache)"
  bash .ci/cluster/prepare.sh
fi

echo "== pytest"
exec python3 -m pytest "$@"
