#!/usr/bin/env bash
# test/demo.sh: install deps, build and install rungate, start a throwaway
# cluster (or the dev cluster with RG_DEV=1; RG_KEEP=1 keeps the throwaway
# one), create the database rungate_demo and play test/demo.sql through psql:
# each step's heading, the SQL it runs and its result, then its checks.
# Exits non-zero if any step does not show what it says (a check raises,
# psql stops on the error).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rg_prepare
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'SET client_min_messages = warning' </dev/null \
  -c 'DROP DATABASE IF EXISTS rungate_demo' -c 'CREATE DATABASE rungate_demo'
rg_log "playing test/demo.sql in database rungate_demo"
echo
cd "$RG_ROOT/test"
psql -X -v ON_ERROR_STOP=1 -P pager=off -d rungate_demo -f demo.sql </dev/null
