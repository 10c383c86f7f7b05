#!/usr/bin/env bash
# test/scripts/scale_out.sh: the scale-out checks of test/scale-out.sh
# (PL/Proxy front, rungate_proxy, rungate_shard, examples/proxy/worker.py)
# with 2 shards, inside `make test` (about 30 s). `make test-scaleout` runs
# them with 1, 2 and 4 shards. Starts clusters of its own (the suite's PG*
# environment is not used) with the rungate that test/run-tests.sh installed;
# installs postgresql-15-plproxy when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SCALEOUT_SHARDS=${SCALEOUT_SHARDS:-2} SCALEOUT_BUILD=0 exec bash test/scale-out.sh
