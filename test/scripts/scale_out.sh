#!/usr/bin/env bash
# test/scripts/scale_out.sh: the scale-out checks of test/scale-out.sh
# (PL/Proxy front, rungate_proxy, rungate_shard, examples/proxy/worker.py)
# with 2 shards, inside `make test` (about 30 s). `make test-scaleout` runs
# them with 1, 2 and 4 shards. Starts clusters of its own (the suite's PG*
# environment is not used) with the rungate that test/run-tests.sh installed;
# installs postgresql-15-plproxy when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# PL/Proxy comes from Debian's postgresql-15-plproxy: other majors skip (77)
major=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
if [ "$major" != 15 ]; then
  echo "skip: PL/Proxy is packaged here for PostgreSQL 15 only, not $major"
  exit 77
fi
SCALEOUT_SHARDS=${SCALEOUT_SHARDS:-2} SCALEOUT_BUILD=0 exec bash test/scale-out.sh
