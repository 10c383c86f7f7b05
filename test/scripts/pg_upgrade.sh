#!/usr/bin/env bash
# test/scripts/pg_upgrade.sh: a PostgreSQL 15 cluster in use with rungate
# moves to the server under test (17, 18, 19: `make test PG=18`) with
# pg_upgrade, and with pg_dump/pg_restore across the same two majors.
#
# The old cluster (15, rungate preloaded, its scheduler on) holds three
# databases: rg_live with runs in every state (queued, queued for later,
# held, running under a lease, blocked at dispatch and at claim, succeeded,
# failed, cancelled, a bulk parent with its items), their audit rows and
# notifications, an active hold and two schedules; rg_empty with the
# extension alone; rg_old with rungate 1.5 and a queued run. Then:
#   1. `pg_dump -Fc` of rg_live, by 15's pg_dump and by the new major's;
#   2. `pg_upgrade --check`, then `pg_upgrade` (copy mode) into a new
#      cluster. Debian's 15.20 marks every column it creates with an
#      option pg_attver that no other major accepts, so pg_upgrade fails
#      on any table (and the new major's dump of it does not restore):
#      when it fails on that and nothing else, the script says so, takes
#      the option off in every database of the 15 cluster (pg_attribute,
#      directly: RESET does not remove it there), dumps again and upgrades
#      into a new cluster made afresh;
#   3. new cluster, rungate preloaded, scheduler on: every table of schema
#      rungate and every sequence is what it was (row by row), the extension
#      versions are kept, the scheduler serves the databases, a lease taken
#      on 15 is renewed with its token, the held run stays queued and the
#      blocked ones blocked, queued runs start, ids continue, the guards
#      still refuse hand edits; rg_old updates to the default version and
#      keeps its run; each dump restores (rungate.restore_mode) into a new
#      database with the same rows; pgTAP test/pgtap/schema.sql passes in
#      the upgraded rg_live and rg_old, schema.sql and privileges.sql in
#      rg_empty;
#   4. restarted without shared_preload_libraries: rungate loads on first
#      use, the 15 lease completes with its token, a claim starts a run;
#   5. restarted with the suites' settings (test/lib.sh): the whole
#      pg_regress and isolation suites (sql/, test/specs/) pass on the
#      upgraded cluster. They create their own databases there (from the
#      upgraded template1) and create the extension afresh; the upgraded
#      databases themselves are covered by 3 and 4.
#
# The server under test is the new side (PG_CONFIG, as test/run-tests.sh
# exports it, with this checkout's rungate installed). The old side is a
# PostgreSQL 15: RG_UPGRADE_FROM names its pg_config (default bookworm's,
# /usr/lib/postgresql/15/bin/pg_config; installed with its -dev package
# when missing and we are root). That tree is never written to: it is
# copied into a temporary directory and this checkout's rungate is built
# for it and installed there.
#
# Exits 77 (skipped) when the server under test is 15 itself, or when no 15
# can be had; with RG_UPGRADE_REQUIRED=1 (.ci/run) a missing 15 fails
# instead. Everything lives in a temporary directory, removed at exit
# (RG_UPGRADE_KEEP=1 keeps it, the clusters stopped).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

skip() { echo "skip: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
log() { printf '==> %s\n' "$*"; }

major_of() { "$1" --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p'; }

# ---- the two servers ---------------------------------------------------------
case ${RG_PG:-} in
  ''|15) NEW_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} ;;
  *) NEW_CONFIG=${PG_CONFIG:-${RG_PG_CACHE:-/work/.cache/pg}/$RG_PG/bin/pg_config} ;;
esac
new_major=$(major_of "$NEW_CONFIG")
[ -n "$new_major" ] || fail "$NEW_CONFIG does not run"
[ "$new_major" -gt 15 ] \
  || skip "the server under test is PostgreSQL $new_major, the old side of the upgrade (run: make test PG=18)"

OLD_CONFIG_SRC=${RG_UPGRADE_FROM:-/usr/lib/postgresql/15/bin/pg_config}
if [ ! -x "$OLD_CONFIG_SRC" ] && [ -z "${RG_UPGRADE_FROM:-}" ] && [ "$(id -u)" -eq 0 ]; then
  log "installing postgresql-15 and postgresql-server-dev-15 (the old side)"
  # no auto-created 'main' cluster, as test/lib.sh
  mkdir -p /etc/postgresql-common/createcluster.d
  [ -e /etc/postgresql-common/createcluster.d/rungate-ci.conf ] \
    || echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/rungate-ci.conf
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-server-dev-15 </dev/null >/dev/null 2>&1 \
    || { apt-get update -qq </dev/null >/dev/null \
         && apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-server-dev-15 </dev/null >/dev/null; }; } \
    || echo "apt-get install postgresql-15 postgresql-server-dev-15 failed"
fi
if [ "$(major_of "$OLD_CONFIG_SRC")" != 15 ] \
   || [ ! -f "$("$OLD_CONFIG_SRC" --includedir-server 2>/dev/null)/postgres.h" ]; then
  msg="no PostgreSQL 15 with its server headers at $OLD_CONFIG_SRC (RG_UPGRADE_FROM)"
  [ "${RG_UPGRADE_REQUIRED:-0}" = 1 ] && fail "$msg"
  skip "$msg"
fi
command -v pg_prove >/dev/null || fail "pg_prove not found (libtap-parser-sourcehandler-pgtap-perl)"

NEW_BIN=$("$NEW_CONFIG" --bindir)
[ -f "$("$NEW_CONFIG" --sharedir)/extension/rungate.control" ] \
  || fail "rungate is not installed in $NEW_CONFIG's tree (make test installs it)"
[ -f "$("$NEW_CONFIG" --sharedir)/extension/pgtap.control" ] \
  || fail "pgTAP is not installed in $NEW_CONFIG's tree"

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd "$T" && runuser -u postgres -- "$@"); else (cd "$T" && "$@"); fi
}

T=$(mktemp -d /tmp/rungate-upgrade.XXXXXX)
chmod 755 "$T"
OLD_PORT=54351 NEW_PORT=54352
OLD_BIN=
cleanup() {
  if [ -n "$OLD_BIN" ] && [ -f "$T/old/data/postmaster.pid" ]; then
    as_pg "$OLD_BIN/pg_ctl" stop -w -m immediate -D "$T/old/data" >/dev/null 2>&1 || true
  fi
  if [ -f "$T/new/data/postmaster.pid" ]; then
    as_pg "$NEW_BIN/pg_ctl" stop -w -m immediate -D "$T/new/data" >/dev/null 2>&1 || true
  fi
  if [ "${RG_UPGRADE_KEEP:-0}" = 1 ]; then echo "RG_UPGRADE_KEEP=1: kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

# ---- a private copy of the 15 tree, with this checkout's rungate --------------
log "PostgreSQL 15: $("$OLD_CONFIG_SRC" --version), copied from $OLD_CONFIG_SRC"
mkdir -p "$T/tree"
old_top=$(dirname "$("$OLD_CONFIG_SRC" --bindir)")     # Debian: /usr/lib/postgresql/15; a prefix build: the prefix
for d in "$old_top" "$("$OLD_CONFIG_SRC" --sharedir)" "$(dirname "$("$OLD_CONFIG_SRC" --includedir-server)")"; do
  case $d/ in "$old_top"/?*) continue ;; esac           # inside the prefix: copied with it
  (cd / && cp -a --parents "${d#/}" "$T/tree/")
done
find "$T/tree" -type d -exec chmod 755 {} +
OLD_CONFIG=$T/tree$("$OLD_CONFIG_SRC" --bindir)/pg_config
OLD_BIN=$("$OLD_CONFIG" --bindir)
[ "$OLD_BIN" = "$T/tree$("$OLD_CONFIG_SRC" --bindir)" ] || fail "the copy of 15 is not relocatable ($OLD_BIN)"

mkdir -p "$T/build"
cp -a Makefile rungate.control rungate--*.sql src "$T/build/"
rm -f "$T"/build/src/*.o "$T"/build/src/*.bc "$T"/build/src/.built-for "$T"/build/*.so
log "building rungate for 15"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u PG -u RG_PG make -C "$T/build" -s -j2 PG_CONFIG="$OLD_CONFIG" \
  >"$T/build.log" 2>&1 </dev/null || { cat "$T/build.log"; fail "building rungate for 15 failed"; }
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u PG -u RG_PG make -C "$T/build" -s install PG_CONFIG="$OLD_CONFIG" \
  >>"$T/build.log" 2>&1 </dev/null || { cat "$T/build.log"; fail "installing rungate into the copy of 15 failed"; }
mkdir -p "$T/old" "$T/new"
[ "$(id -u)" -ne 0 ] || chown -R postgres: "$T/old" "$T/new"
chmod 755 "$T/old" "$T/new"
[ "$(id -u)" -ne 0 ] || chown postgres: "$T"

# ---- clusters ---------------------------------------------------------------------
# init DIR BINDIR PORT: data checksums on both sides (18 turns them on by
# default; pg_upgrade wants the two alike)
init() {
  as_pg "$2/initdb" -D "$1/data" -U postgres -A trust --no-sync -k -E UTF8 --locale=C \
    >"$1/initdb.log" 2>&1 || { cat "$1/initdb.log"; fail "initdb ($2) failed"; }
  cat >>"$1/data/postgresql.conf" <<EOF
# rungate upgrade test
listen_addresses = ''
unix_socket_directories = '$T'
port = $3
max_connections = 50
fsync = off
full_page_writes = off
max_prepared_transactions = 10
shared_preload_libraries = 'rungate'
include_if_exists = 'rungate_test.conf'
EOF
}
# conf DIR LINE...: the settings of the next start (rungate_test.conf)
conf() { local d=$1; shift; printf '%s\n' "$@" >"$d/data/rungate_test.conf"; }
start() {
  as_pg "$2/pg_ctl" start -w -t 60 -D "$1/data" -l "$1/server.log" >/dev/null 2>&1 \
    || { tail -30 "$1/server.log"; fail "server of $1 failed to start"; }
}
stop() { as_pg "$2/pg_ctl" stop -w -t 60 -m fast -D "$1/data" >/dev/null; }

PSQL_BIN=$NEW_BIN   # the new psql talks to both servers
# q PORT DB SQL: one value (or rows), unaligned
q() { "$PSQL_BIN/psql" -X -q -v ON_ERROR_STOP=1 -tA -h "$T" -p "$1" -U postgres -d "$2" -c "$3"; }
# qf PORT DB < script
qf() { "$PSQL_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$T" -p "$1" -U postgres -d "$2" >/dev/null; }
# expect PORT DB SQL WANT WHAT
expect() {
  local got
  got=$(q "$1" "$2" "$3") || fail "$5: query failed: $3"
  [ "$got" = "$4" ] || fail "$5: got '$got', want '$4'"
  echo "ok: $5"
}
# refused PORT DB SQL: the statement fails with a rungate error
refused() {
  local out
  if out=$("$PSQL_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$T" -p "$1" -U postgres -d "$2" -c "$3" 2>&1); then
    fail "the upgraded database allowed: $3"
  fi
  case $out in *rungate*|*"run "*) echo "ok: refused: $3" ;; *) fail "unexpected error for $3: $out" ;; esac
}

# fingerprint PORT DB: one md5 per table of schema rungate (every row as
# jsonb, sorted) and each sequence's last value, one line each
fingerprint() {
  local sql
  sql=$(q "$1" "$2" "SELECT string_agg(format(
      'SELECT %L || '' '' || count(*) || '' '' || md5(coalesce(string_agg(to_jsonb(t)::text, ''|'' ORDER BY to_jsonb(t)::text), '''')) FROM rungate.%I t',
      relname, relname), ' UNION ALL ' ORDER BY relname)
    FROM pg_class WHERE relnamespace = 'rungate'::regnamespace AND relkind IN ('r', 'p')")
  q "$1" "$2" "$sql" | sort
  q "$1" "$2" "SELECT 'sequence ' || sequencename || ' ' || coalesce(last_value::text, 'null')
                 FROM pg_sequences WHERE schemaname = 'rungate' ORDER BY 1"
}

# ---- 15: a cluster in use --------------------------------------------------------
log "PostgreSQL 15 cluster (rungate preloaded, scheduler on)"
init "$T/old" "$OLD_BIN" "$OLD_PORT"
start "$T/old" "$OLD_BIN"
for db in rg_live rg_empty rg_old; do q "$OLD_PORT" postgres "CREATE DATABASE $db" >/dev/null; done
q "$OLD_PORT" rg_empty 'CREATE EXTENSION rungate' >/dev/null
qf "$OLD_PORT" rg_live <<'SQL'
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
-- leases that outlive the upgrade
UPDATE rungate.operation_types SET lease = '2 hours';
-- 1 blocked at dispatch (restore.execute: admin_consent unmet on tenant 11)
SELECT rungate.enqueue('restore.execute', 1, 11, 100);
-- 2 queued, blocked at claim (oscar loses tenant 10 below)
SELECT rungate.enqueue('inventory.sync', 1, 10, 101);
-- 3, 4, 5 queued: one succeeds, one fails, one stays running
SELECT rungate.enqueue('inventory.sync', 1, 10, 100) FROM generate_series(1, 3);
-- 6 a bulk parent: its items appear when a claim starts it
SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11,12}', 100);
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
SELECT count(*) FROM rungate.claim('w15', NULL, 10);
SELECT rungate.complete(id, lease_token, '{"done": 15}') FROM rungate.runs WHERE id = 3 AND status = 'running';
SELECT rungate.fail(id, lease_token, 'boom', false) FROM rungate.runs WHERE id = 4 AND status = 'running';
-- queued for tomorrow; one cancelled; one queued now
SELECT rungate.enqueue('inventory.sync', 1, 10, 100, run_at => now() + interval '1 day');
SELECT rungate.enqueue('inventory.sync', 1, 10, 100);
SELECT rungate.cancel((SELECT max(id) FROM rungate.runs), 100);
SELECT rungate.enqueue('provider.connection.verify', 1, 10, 100);
-- a hold on reports.export, with a run queued behind it
SELECT rungate.hold(operation => 'reports.export', reason => 'upgrade test', actor_id => 100);
SELECT rungate.enqueue('reports.export', 1, NULL, 100);
-- recurring runs (none due)
INSERT INTO rungate.schedules (name, cron, operation, workspace_id, tenant_id, last_tick)
VALUES ('nightly', '0 2 * * *', 'inventory.sync', 1, 10, '2030-01-01 02:00+00');
INSERT INTO rungate.schedules (name, cron, operation, workspace_id, initiator_id, enabled)
VALUES ('hourly-report', '@hourly', 'reports.export', 1, 100, false);
SQL
qf "$OLD_PORT" rg_old <<'SQL'
CREATE EXTENSION rungate VERSION '1.5';
\i test/fixtures/seed.sql
SELECT rungate.enqueue('inventory.sync', 1, 10, 100);
SQL

# what the databases hold must be worth checking
expect "$OLD_PORT" rg_live "SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM rungate.runs" \
  'blocked,cancelled,failed,queued,running,succeeded' 'runs in every state on 15'
expect "$OLD_PORT" rg_live "SELECT count(*) > 1 FROM rungate.runs WHERE status = 'running' AND lease_expires_at > now() + interval '1 hour'" \
  t 'runs under a lease on 15'
expect "$OLD_PORT" rg_live "SELECT count(*) >= 20 FROM rungate.audit_log" t 'audit rows on 15'
expect "$OLD_PORT" rg_live "SELECT count(*) FROM rungate.holds WHERE released_at IS NULL" 1 'an active hold on 15'
expect "$OLD_PORT" rg_live "SELECT count(*) FROM rungate.schedules" 2 'schedules on 15'
expect "$OLD_PORT" rg_live "SELECT extversion FROM pg_extension WHERE extname = 'rungate'" \
  "$(sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" rungate.control)" 'rg_live at the default version'
DEFAULT_VERSION=$(q "$OLD_PORT" rg_live "SELECT extversion FROM pg_extension WHERE extname = 'rungate'")
for i in $(seq 1 50); do   # the 15 scheduler serves every database with rungate
  [ "$(q "$OLD_PORT" postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rungate scheduler'")" = 3 ] && break
  [ "$i" -lt 50 ] || fail "the 15 scheduler does not serve the three databases"
  sleep 0.2
done
echo "ok: the 15 scheduler serves the three databases"
q "$OLD_PORT" rg_live "SELECT status, count(*) FROM rungate.runs GROUP BY 1 ORDER BY 1" | sed 's/^/    15 runs: /'
LEASES=$(q "$OLD_PORT" rg_live "SELECT id || ' ' || lease_token || ' ' || lease_expires_at FROM rungate.runs WHERE status = 'running' AND lease_token IS NOT NULL ORDER BY id")
read -r LEASE_ID LEASE_TOKEN _ <<<"$(head -n1 <<<"$LEASES")"
read -r LEASE2_ID LEASE2_TOKEN _ <<<"$(sed -n 2p <<<"$LEASES")"
[ -n "$LEASE2_ID" ] || fail "fewer than two running runs on 15"
HELD_ID=$(q "$OLD_PORT" rg_live "SELECT max(id) FROM rungate.runs WHERE operation = 'reports.export'")
BLOCKED=$(q "$OLD_PORT" rg_live "SELECT string_agg(id::text, ',' ORDER BY id) FROM rungate.runs WHERE status = 'blocked'")
MAX_ID=$(q "$OLD_PORT" rg_live 'SELECT max(id) FROM rungate.runs')
MAX_AUDIT=$(q "$OLD_PORT" rg_live 'SELECT max(id) FROM rungate.audit_log')

# 1. dumps of rg_live: by 15's pg_dump, and by the new major's (it reads
# older servers; upstream's advice for a move to a new major)
# dump BINDIR NAME
dump() {
  "$1/pg_dump" -Fc -h "$T" -p "$OLD_PORT" -U postgres -d rg_live -f "$T/$2.dump" 2>"$T/$2.log" \
    || { cat "$T/$2.log"; fail "pg_dump ($1) of rg_live"; }
}
dump "$OLD_BIN" dump15
dump "$NEW_BIN" "dump$new_major"
BEFORE=$(fingerprint "$OLD_PORT" rg_live)
BEFORE_OLD=$(fingerprint "$OLD_PORT" rg_old)
BEFORE_EMPTY=$(fingerprint "$OLD_PORT" rg_empty)
# Debian's 15.20 (bookworm-security) gives every column it creates an
# attribute option pg_attver=<n>, which no other major knows: the new
# major's pg_dump writes it out (ALTER TABLE ... ALTER COLUMN ... SET
# (pg_attver=...), in the statement that creates the table) and its server
# refuses it, for any table, rungate's or not: pg_upgrade stops, and a
# restore of that dump loses every table. Counted here, in schema rungate.
ATTVER=$(q "$OLD_PORT" rg_live "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace = 'rungate'::regnamespace AND a.attnum > 0 AND a.attoptions::text LIKE '%pg_attver=%'")
stop "$T/old" "$OLD_BIN"

# attver_reset: in every database of the 15 cluster, the pg_attver option
# off the columns of every relation outside the system schemas, other
# options kept. `ALTER TABLE ... ALTER COLUMN ... RESET (pg_attver)` leaves
# it in place on that 15, so pg_attribute is updated directly (a superuser
# may; the cluster is about to be retired). The cluster is started and
# stopped around it; the new major's dump is taken again.
ATTVER_WHERE="a.attnum > 0 AND a.attoptions::text LIKE '%pg_attver=%'
  AND a.attrelid IN (SELECT oid FROM pg_class WHERE relnamespace NOT IN
      ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace))"
attver_reset() {
  local db n
  start "$T/old" "$OLD_BIN"
  for db in $(q "$OLD_PORT" postgres "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1"); do
    n=$(q "$OLD_PORT" "$db" "SELECT count(*) FROM pg_attribute a WHERE $ATTVER_WHERE")
    [ "$n" -gt 0 ] || continue
    q "$OLD_PORT" "$db" "UPDATE pg_attribute a SET attoptions =
        NULLIF(ARRAY(SELECT o FROM unnest(a.attoptions) o WHERE o NOT LIKE 'pg_attver=%'), '{}')
      WHERE $ATTVER_WHERE" >/dev/null
    expect "$OLD_PORT" "$db" "SELECT count(*) FROM pg_attribute a WHERE $ATTVER_WHERE" 0 \
      "15: pg_attver taken off the $n columns of $db"
  done
  dump "$NEW_BIN" "dump$new_major"
  stop "$T/old" "$OLD_BIN"
}

# ---- 2. pg_upgrade -----------------------------------------------------------------
log "pg_upgrade 15 -> $new_major ($("$NEW_CONFIG" --version))"
init "$T/new" "$NEW_BIN" "$NEW_PORT"
# upgrade LOG [option]: copy mode, pg_upgrade's default; non-zero on failure
upgrade() {
  local log=$T/$1.log
  shift
  as_pg "$NEW_BIN/pg_upgrade" -b "$OLD_BIN" -B "$NEW_BIN" -d "$T/old/data" -D "$T/new/data" \
    -U postgres -s "$T" -p "$OLD_PORT" -P "$NEW_PORT" "$@" >"$log" 2>&1
}
upgrade_failed() {
  cat "$T/$1.log"
  find "$T/new/data" -name '*.log' -path '*pg_upgrade_output*' -exec grep -h -B2 -A2 'ERROR\|FATAL\|error:' {} + 2>/dev/null || true
  fail "$1 failed"
}
upgrade pg_upgrade-check --check || upgrade_failed pg_upgrade-check
grep -q 'Clusters are compatible' "$T/pg_upgrade-check.log" || upgrade_failed pg_upgrade-check
echo "ok: pg_upgrade --check: clusters are compatible"
if ! upgrade pg_upgrade; then
  # the failure pg_attver causes, and no other: the option is taken off
  # (attver_reset), and the upgrade made again into a new cluster
  grep -rqs 'unrecognized parameter "pg_attver"' "$T"/new/data/pg_upgrade_output.d/*/log/ || upgrade_failed pg_upgrade
  [ "$ATTVER" -gt 0 ] || upgrade_failed pg_upgrade
  echo "note: pg_upgrade failed on the pg_attver column option of $("$OLD_CONFIG" --version)" \
       "($ATTVER columns in schema rungate of rg_live carry it; $new_major: unrecognized parameter \"pg_attver\");" \
       "taken off in every database of the 15 cluster, a new $new_major cluster made, pg_upgrade again"
  attver_reset
  rm -rf "$T/new/data"
  init "$T/new" "$NEW_BIN" "$NEW_PORT"
  upgrade pg_upgrade || upgrade_failed pg_upgrade
fi
grep -q 'Upgrade Complete' "$T/pg_upgrade.log" || upgrade_failed pg_upgrade
echo "ok: pg_upgrade (copy mode)"

# ---- 3. the upgraded cluster, preloaded, scheduler on ---------------------------------
start "$T/new" "$NEW_BIN"
expect "$NEW_PORT" postgres "SELECT current_setting('server_version_num')::int / 10000" "$new_major" \
  "the upgraded cluster runs PostgreSQL $new_major"
[ "$(fingerprint "$NEW_PORT" rg_live)" = "$BEFORE" ] \
  || { diff <(echo "$BEFORE") <(fingerprint "$NEW_PORT" rg_live) || true; fail "rg_live differs after pg_upgrade"; }
echo "ok: rg_live: every row of every rungate table and every sequence as on 15:"
while IFS= read -r line; do echo "    $line"; done <<<"$BEFORE"
[ "$(fingerprint "$NEW_PORT" rg_old)" = "$BEFORE_OLD" ] || fail "rg_old differs after pg_upgrade"
[ "$(fingerprint "$NEW_PORT" rg_empty)" = "$BEFORE_EMPTY" ] || fail "rg_empty differs after pg_upgrade"
echo "ok: rg_old and rg_empty as on 15"
expect "$NEW_PORT" rg_live "SELECT extversion FROM pg_extension WHERE extname = 'rungate'" "$DEFAULT_VERSION" 'rg_live keeps its version'
expect "$NEW_PORT" rg_old "SELECT extversion FROM pg_extension WHERE extname = 'rungate'" 1.5 'rg_old keeps 1.5'
expect "$NEW_PORT" postgres "SELECT 'rungate' = ANY (string_to_array(current_setting('shared_preload_libraries'), ','))" t 'preloaded'
for i in $(seq 1 50); do
  [ "$(q "$NEW_PORT" postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rungate scheduler'")" = 3 ] && break
  [ "$i" -lt 50 ] || fail "the scheduler does not serve the three upgraded databases"
  sleep 0.2
done
echo "ok: the scheduler serves the three upgraded databases"

# leases: the 15 token renews; a wrong one does not
renewed=$(q "$NEW_PORT" rg_live "SELECT rungate.heartbeat($LEASE_ID, '$LEASE_TOKEN') > now() + interval '1 hour'")
[ "$renewed" = t ] || fail "heartbeat with the 15 lease token of run $LEASE_ID: $renewed"
echo "ok: the lease of run $LEASE_ID (taken on 15) renews with its token"
refused "$NEW_PORT" rg_live "SELECT rungate.heartbeat($LEASE_ID, gen_random_uuid())"
# blocked runs stay blocked, the held run stays queued, the queued runs start
expect "$NEW_PORT" rg_live "SELECT string_agg(id::text, ',' ORDER BY id) FROM rungate.runs WHERE status = 'blocked'" \
  "$BLOCKED" 'the blocked runs stay blocked'
started=$(q "$NEW_PORT" rg_live "SELECT string_agg(run_id::text || ':' || operation, ',' ORDER BY run_id) FROM rungate.claim('w$new_major', NULL, 10)")
[ -n "$started" ] || fail "no queued run started on the upgraded cluster"
case ",$started," in *",$HELD_ID:"*) fail "the held run $HELD_ID started: $started" ;; esac
echo "ok: claim on the upgraded cluster started $started, not the held run $HELD_ID"
expect "$NEW_PORT" rg_live "SELECT status FROM rungate.runs WHERE id = $HELD_ID" queued 'the held run stays queued'
expect "$NEW_PORT" rg_live "SELECT count(*) FROM rungate.audit_log WHERE id > $MAX_AUDIT AND event = 'started'" \
  "$(tr ',' '\n' <<<"$started" | grep -c .)" 'each start wrote its audit row after the old ones'
expect "$NEW_PORT" rg_live "SELECT (rungate.enqueue('inventory.sync', 1, 10, 100)).id > $MAX_ID" t "new run ids continue after 15's"
expect "$NEW_PORT" rg_live "SELECT count(*) FROM (SELECT rungate.resume(id, 100) FROM rungate.holds WHERE released_at IS NULL) r" 1 'the hold is released'
expect "$NEW_PORT" rg_live "SELECT string_agg(run_id::text, ',') FROM rungate.claim('w$new_major', '{reports.export}')" "$HELD_ID" 'the held run starts once resumed'
# the guards
expect "$NEW_PORT" rg_live "SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger
    WHERE tgrelid IN ('rungate.runs'::regclass, 'rungate.audit_log'::regclass) AND NOT tgisinternal" \
  "$(q "$NEW_PORT" rg_empty "SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger
    WHERE tgrelid IN ('rungate.runs'::regclass, 'rungate.audit_log'::regclass) AND NOT tgisinternal")" \
  'the guard triggers as CREATE EXTENSION makes them'
# the foreign keys' insert triggers that 1.8 and 1.9 disable come back enabled
# through pg_dump --binary-upgrade: docs/upgrading.md's statement, taken
# from it verbatim, disables them again
ri_ins="SELECT string_agg(tg.tgenabled::text, ',' ORDER BY tg.tgname) FROM pg_trigger tg
    JOIN pg_constraint c ON c.oid = tg.tgconstraint
   WHERE tg.tgrelid = 'rungate.runs'::regclass AND tg.tgfoid = '\"RI_FKey_check_ins\"'::regproc
     AND c.conname IN ('runs_workspace_id_fkey', 'runs_operation_fkey',
                       'runs_tenant_id_fkey', 'runs_initiator_id_fkey')"
echo "note: after pg_upgrade the four insert triggers are $(q "$NEW_PORT" rg_live "$ri_ins") (D: disabled)"
awk '/^  ```sql$/ { f = 1; next } f && /^  ```$/ { exit } f' docs/upgrading.md | sed 's/^  //' |
  qf "$NEW_PORT" rg_live || fail "docs/upgrading.md's statement for the insert triggers failed"
expect "$NEW_PORT" rg_live "$ri_ins" "D,D,D,D" "docs/upgrading.md's statement disables the four insert triggers again"
refused "$NEW_PORT" rg_live "UPDATE rungate.runs SET status = 'queued' WHERE status = 'succeeded'"
refused "$NEW_PORT" rg_live "UPDATE rungate.runs SET status = 'succeeded' WHERE id = $LEASE2_ID"
refused "$NEW_PORT" rg_live "DELETE FROM rungate.audit_log"
refused "$NEW_PORT" rg_live "INSERT INTO rungate.runs (workspace_id, operation, status, max_attempts) VALUES (1, 'reports.export', 'queued', 1)"
# rg_old: ALTER EXTENSION UPDATE after the upgrade
q "$NEW_PORT" rg_old 'ALTER EXTENSION rungate UPDATE' >/dev/null
expect "$NEW_PORT" rg_old "SELECT extversion FROM pg_extension WHERE extname = 'rungate'" "$DEFAULT_VERSION" "rg_old updates from 1.5 to $DEFAULT_VERSION"
expect "$NEW_PORT" rg_old "SELECT count(*) FROM rungate.claim('w', NULL, 5)" 1 "rg_old's queued run starts"
# 1 (continued). the dumps of 15's rg_live restore into the upgraded cluster
for d in dump15 "dump$new_major"; do
  q "$NEW_PORT" postgres 'CREATE DATABASE rg_restored' >/dev/null
  PGOPTIONS='-c rungate.restore_mode=on' "$NEW_BIN/pg_restore" -h "$T" -p "$NEW_PORT" -U postgres \
    -d rg_restored "$T/$d.dump" 2>"$T/$d-restore.log" \
    || { cat "$T/$d-restore.log"; fail "pg_restore of $d"; }
  [ "$(fingerprint "$NEW_PORT" rg_restored)" = "$BEFORE" ] \
    || { diff <(echo "$BEFORE") <(fingerprint "$NEW_PORT" rg_restored) || true; fail "$d restored on $new_major differs"; }
  refused "$NEW_PORT" rg_restored "DELETE FROM rungate.audit_log"
  echo "ok: rg_live dumped by pg_dump ${d#dump} from 15, restored on $new_major: every row and sequence as on 15"
  q "$NEW_PORT" postgres 'DROP DATABASE rg_restored' >/dev/null
done

# pgTAP in the upgraded databases: the contract's schema, the privileges
prove() {
  local db=$1 file=$2 log
  log=$T/pgtap-$1-$(basename "$2" .sql).log
  q "$NEW_PORT" "$db" 'SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pgtap' >/dev/null
  if ! PGHOST=$T PGPORT=$NEW_PORT PGUSER=postgres pg_prove --psql-bin "$NEW_BIN/psql" -d "$db" "$file" \
      </dev/null >"$log" 2>&1; then
    cat "$log"; fail "pgTAP $file in the upgraded $db"
  fi
  echo "ok: pgTAP $file in the upgraded $db: $(grep -m1 -o 'Tests=[0-9]*' "$log" || tail -n1 "$log")"
}
prove rg_live test/pgtap/schema.sql
prove rg_old test/pgtap/schema.sql
prove rg_empty test/pgtap/schema.sql
prove rg_empty test/pgtap/privileges.sql

# ---- 4. without shared_preload_libraries ------------------------------------------------
stop "$T/new" "$NEW_BIN"
conf "$T/new" "shared_preload_libraries = ''"
start "$T/new" "$NEW_BIN"
expect "$NEW_PORT" postgres "SELECT current_setting('shared_preload_libraries')" '' 'restarted without shared_preload_libraries'
expect "$NEW_PORT" postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'rungate%'" 0 'no scheduler without preload'
expect "$NEW_PORT" rg_live "SELECT (rungate.complete($LEASE2_ID, '$LEASE2_TOKEN', '{\"done\": $new_major}')).status" succeeded \
  "run $LEASE2_ID completes with its 15 lease token, rungate loaded on first use"
expect "$NEW_PORT" rg_live "SELECT event FROM rungate.audit_log WHERE run_id = $LEASE2_ID ORDER BY id DESC LIMIT 1" succeeded \
  'its audit row'
expect "$NEW_PORT" rg_live "SELECT count(*) FROM rungate.claim('w', NULL, 1)" 1 'a claim starts a run without preload'
expect "$NEW_PORT" rg_empty "LOAD 'rungate'; SELECT count(*) FROM rungate.claim('w')" 0 "LOAD 'rungate' in the upgraded rg_empty"
refused "$NEW_PORT" rg_live "DELETE FROM rungate.audit_log"

# ---- 5. the suites on the upgraded cluster -----------------------------------------------
stop "$T/new" "$NEW_BIN"
conf "$T/new" "shared_preload_libraries = 'rungate'" "rungate.scheduler = off" "synchronous_commit = off"
start "$T/new" "$NEW_BIN"
suite() {
  local target=$1 n=$2 out="$T/$1" ok
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$ROOT" --no-print-directory -s "$target" \
    PG_CONFIG="$NEW_CONFIG" REGRESS_OPTS="--inputdir=. --outputdir=$out" ISOLATION_OPTS="--inputdir=test --outputdir=$out" \
    EXTRA_REGRESS_OPTS="--host=$T --port=$NEW_PORT --user=postgres" </dev/null >"$T/$target.log" 2>&1 || true
  ok=$(grep -cE '\.\.\. ok( |$)|^ok [0-9]+ +- ' "$T/$target.log" || true)
  if [ "$ok" != "$n" ]; then
    cat "$T/$target.log"; cat "$out/regression.diffs" 2>/dev/null || true
    fail "$target on the upgraded cluster: $ok of $n passed"
  fi
  echo "ok: $target on the upgraded cluster: $ok of $n passed"
}
shopt -s nullglob
regress=(sql/*.sql) specs=(test/specs/*.spec)
suite installcheck-regress ${#regress[@]}
suite installcheck-isolation ${#specs[@]}
stop "$T/new" "$NEW_BIN"
echo "pg_upgrade 15 -> $new_major: ok"
