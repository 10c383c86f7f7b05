#!/usr/bin/env bash
# test/scripts/demo_smoke_check.sh: plays test/demo.sql (what `make demo`
# shows) in a fresh database of the test cluster, so the demo's own checks
# run on every `make test`: any step that stops showing what it says fails.
set -euo pipefail
db=rg_demo_check
trap 'dropdb --if-exists "$db" 2>/dev/null || true' EXIT
dropdb --if-exists "$db" 2>/dev/null || true
createdb "$db"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
psql -X -v ON_ERROR_STOP=1 -P pager=off -d "$db" -f demo.sql >/dev/null
echo "demo: every step showed what it said"
