#!/usr/bin/env bash
# test/scripts/worker_python.sh: examples/python/worker.py (psycopg 3) through
# the scenario of test/scripts/worker_scenario.bash: revocations before the
# claim and between claim and recheck, retries, a bulk run, heartbeats under a
# reaper, SIGTERM, LISTEN and polling, a run cancelled mid-flight, a heartbeat
# that blocks, a lease lost at a heartbeat, a release for "later", a
# 10,000-run backlog drained; outcomes checked in rungate.runs, the audit log,
# notifications and the worker's log.
# Run by test/run-tests.sh with the cluster's PG* environment (superuser).
# Installs Debian's python3-psycopg when missing. About 30-45 s.
set -euo pipefail
PY=/usr/bin/python3   # Debian's interpreter: python3-psycopg installs for it
if ! [ -x "$PY" ] || ! "$PY" -c 'import psycopg' 2>/dev/null; then
  echo "==> installing python3-psycopg"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >/dev/null
  apt-get install -y -qq --no-install-recommends python3 python3-psycopg </dev/null >/dev/null
fi
LANG_NAME=python
WORKER_CMD=("$PY" -u examples/python/worker.py)
source "$(dirname "${BASH_SOURCE[0]}")/worker_scenario.bash"
worker_scenario
