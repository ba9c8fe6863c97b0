#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what the tests need, then runs pytest.
# Usage: bash scripts/test.sh [pytest args...]     (e.g. -m "not cluster": the fast suites only)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages the tests talk to: redis-server (and redis-sentinel for the Sentinel tests),
# prometheus + promtool (a real Prometheus scrapes a master; rules and metrics are linted), and
# tmux (`workerpool top` is driven in a real terminal)
missing=()
for program in redis-server redis-sentinel prometheus promtool tmux; do
  command -v "$program" >/dev/null || missing+=("$program")
done
if ((${#missing[@]})); then
  echo "== installing Debian packages for: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq \
    redis-server redis-sentinel prometheus tmux >/dev/null
fi

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
