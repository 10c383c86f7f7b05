#!/usr/bin/env bash
# test/scripts/worker_php.sh: examples/php/worker.php (PDO pgsql, Laravel-style
# handler classes) through the scenario of test/scripts/worker_scenario.bash:
# revocations before the claim and between claim and recheck, retries, a bulk
# run, heartbeats under a reaper, SIGTERM, LISTEN and polling, a run cancelled
# mid-flight, a heartbeat that blocks, a lease lost at a heartbeat, a release
# for "later", a 10,000-run backlog drained; outcomes checked in rungate.runs,
# the audit log, notifications and the worker's log.
# Run by test/run-tests.sh with the cluster's PG* environment (superuser).
# Installs Debian's php-cli and php-pgsql when missing. About 30-45 s.
set -euo pipefail
if ! command -v php >/dev/null || ! php -r 'exit(extension_loaded("pdo_pgsql") && function_exists("pcntl_signal") ? 0 : 1);'; then
  echo "==> installing php-cli php-pgsql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >/dev/null
  apt-get install -y -qq --no-install-recommends php-cli php-pgsql </dev/null >/dev/null
fi
LANG_NAME=php
WORKER_CMD=(php examples/php/worker.php)
source "$(dirname "${BASH_SOURCE[0]}")/worker_scenario.bash"
worker_scenario
