#!/usr/bin/env bash
# test/scripts/worker_node.sh: examples/node/worker.js (pg) through the
# scenario of test/scripts/worker_scenario.bash: revocations before the claim
# and between claim and recheck, retries, a bulk run, heartbeats under a
# reaper, SIGTERM, LISTEN and polling, a run cancelled mid-flight, a heartbeat
# that blocks, a lease lost at a heartbeat, a release for "later", a
# 10,000-run backlog drained; outcomes checked in rungate.runs, the audit log,
# notifications and the worker's log.
# Run by test/run-tests.sh with the cluster's PG* environment (superuser).
# Installs Debian's nodejs and npm when missing, and runs `npm ci` in
# examples/node. About 30-45 s.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "==> installing nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >/dev/null
  apt-get install -y -qq --no-install-recommends nodejs npm </dev/null >/dev/null
fi
echo "==> npm ci in examples/node"
npmlog=$(mktemp)
if ! (cd "$ROOT/examples/node" && timeout 120 npm ci --no-audit --no-fund --loglevel=error) \
    </dev/null >"$npmlog" 2>&1; then
  cat "$npmlog"; rm -f "$npmlog"; echo "FAIL: npm ci"; exit 1
fi
rm -f "$npmlog"
LANG_NAME=node
WORKER_CMD=(node examples/node/worker.js)
source "$ROOT/test/scripts/worker_scenario.bash"
worker_scenario
