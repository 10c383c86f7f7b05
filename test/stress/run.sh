#!/usr/bin/env bash
# test/stress/run.sh (make stress): the long suites, run before each release
# (test/stress/README.md). The same set-up as make test (test/lib.sh's
# rg_prepare: deps, build, install, a throwaway cluster removed at exit),
# with track_commit_timestamp on and the SQLSTATE in the server log, then:
#
#   chaos           test/stress/chaos.py: 8 workers over 20,000 runs while a
#                   revoker changes authority every few milliseconds; the
#                   invariants from the audit log (docs/guarantees.md)
#   chaos-selftest  the same harness with a revoker that lies in its log: it
#                   must report violations of (a) and (c), proving the
#                   checks can fail
#   sqlsmith-user   sqlsmith as rungate_smith (USAGE on the schema, EXECUTE
#                   on rungate's functions), STRESS_SQLSMITH_QUERIES queries
#   sqlsmith-owner  sqlsmith as the owner (superuser), as many queries
#                   (database: smith_setup.sql, then smith_catalog.sql, which
#                   aims sqlsmith's grammar at rungate)
#
# Each suite counts 1; a suite also fails when the server log shows a
# backend crash during it. The last line is "N passed, M failed"; the exit
# status is non-zero on any failure. Environment:
#   STRESS_ONLY=chaos|chaos-selftest|sqlsmith   run one suite (sqlsmith: both roles)
#   STRESS_RUNS (20000), STRESS_WORKERS (8), STRESS_SEED (random; printed)
#   STRESS_CHAOS_SECONDS (600)   the chaos suite fails when it takes longer
#   STRESS_SELFTEST_RUNS (2000)
#   STRESS_SQLSMITH_QUERIES (5000) per role, STRESS_SQLSMITH_SEED (random; printed)
#   STRESS_SQLSMITH_TIMEOUT (900) seconds per sqlsmith run
#   RG_KEEP=1                    leave the cluster running afterwards
# Logs: results/stress/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"

[ "${RG_DEV:-0}" != 1 ] \
  || rg_die "make stress needs a cluster of its own (sqlsmith may crash it): unset RG_DEV"
case "${STRESS_ONLY:-}" in
  ''|chaos|chaos-selftest|sqlsmith) ;;
  *) rg_die "STRESS_ONLY must be one of chaos, chaos-selftest, sqlsmith" ;;
esac

PASSED=0 FAILED=0 FINISHED=0
OUT="$RG_ROOT/results/stress"
PY=/usr/bin/python3            # Debian's: python3-psycopg installs for it
SMITH_QUERIES=${STRESS_SQLSMITH_QUERIES:-5000}
SMITH_SEED=${STRESS_SQLSMITH_SEED:-$((RANDOM * 32768 + RANDOM))}
SMITH_TIMEOUT=${STRESS_SQLSMITH_TIMEOUT:-900}
T0=$SECONDS

summary() {
  if [ "$FINISHED" != 1 ]; then
    echo "aborted: set-up or a suite runner failed (exit status $RG_EXIT_STATUS)"
    FAILED=$((FAILED + 1))
  elif [ $((PASSED + FAILED)) -eq 0 ]; then
    echo "no suite ran"
    FAILED=1
  fi
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] || [ "$RG_EXIT_STATUS" -ne 0 ] || RG_EXIT_STATUS=1
}
rg_on_exit summary   # registered first, so it runs last: after the cluster is gone

wanted() { [ -z "${STRESS_ONLY:-}" ] || [ "$STRESS_ONLY" = "$1" ]; }
elapsed() { echo "$((SECONDS - T0)) s"; }

# verdict SUITE OK(0|1) WHY
verdict() {
  if [ "$2" = 1 ]; then
    PASSED=$((PASSED + 1)); echo "ok: $1 ($3; $(elapsed) so far)"
  else
    FAILED=$((FAILED + 1)); echo "not ok: $1 ($3)"
  fi
}

mkdb() {   # mkdb NAME SETUP.sql: a fresh database, set up as the superuser
  dropdb --if-exists "$1" 2>/dev/null || true
  createdb "$1"
  (cd "$RG_ROOT" && psql -X -q -v ON_ERROR_STOP=1 -d "$1" -f "$2") </dev/null >/dev/null \
    || rg_die "setting up database $1 with $2 failed"
}

# The server log since byte OFFSET; crashes: a backend killed by a signal
# (the postmaster then restarts every process) or a PANIC.
log_since() { tail -c +$(($1 + 1)) "$RG_TMP/server.log"; }
log_size() { stat -c %s "$RG_TMP/server.log"; }
CRASH_RE='terminated by signal|server process .* was terminated|terminated by exception|all server processes terminated|PANIC'
crashes() {   # crashes OFFSET FILE: write the new log to FILE, print the crash count
  log_since "$1" >"$2"
  grep -cE "$CRASH_RE" "$2" || true
}
show_crashes() {
  echo "---- crash lines of the server log ($1) ----"
  grep -E -A3 "$CRASH_RE" "$1" | head -60
  echo "----"
}

# ---------------------------------------------------------------------------
suite_chaos() {   # suite_chaos NAME [chaos.py args...]
  local name=$1 db=rungate_$1 log="$OUT/$1.log" off rc=0 n
  shift
  db=${db//-/_}
  rg_log "$name: setting up $db ($(elapsed))"
  mkdb "$db" test/stress/chaos_setup.sql
  off=$(log_size)
  set +e
  (cd "$RG_ROOT" && "$PY" -u test/stress/chaos.py --dbname "$db" "$@") </dev/null 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  n=$(crashes "$off" "$OUT/$name.server.log")
  if [ "$n" -gt 0 ]; then
    show_crashes "$OUT/$name.server.log"
    verdict "$name" 0 "$n backend crash line(s) in the server log"
  elif [ "$name" = chaos ]; then
    if [ "$rc" -eq 0 ]; then
      verdict "$name" 1 "$(tail -n1 "$log")"
    else
      verdict "$name" 0 "exit $rc: $(tail -n1 "$log"); see $log"
    fi
  else
    # the sabotaged run must fail exactly where the sabotage is: a logged
    # revocation that never happened (a), an unlogged one (c); nothing else
    local caught=1
    grep -q '^  FAIL a. started after a revocation in force' "$log" || caught=0
    grep -q '^  FAIL c. blocked without a matching revocation' "$log" || caught=0
    if grep -E '^  FAIL (b\.|harness)' "$log"; then caught=0; fi
    if [ "$rc" -eq 1 ] && [ "$caught" = 1 ]; then
      verdict "$name" 1 "the checks caught the lying revoker"
    else
      verdict "$name" 0 "exit $rc: the checks did not catch the lying revoker as expected; see $log"
    fi
  fi
  [ "${RG_KEEP:-0}" = 1 ] || dropdb --if-exists "$db" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
SMITH_DB=rungate_smith
smith_setup() {
  rg_log "sqlsmith: setting up $SMITH_DB ($(elapsed))"
  mkdb "$SMITH_DB" test/stress/smith_setup.sql
  (cd "$RG_ROOT" && psql -X -q -v ON_ERROR_STOP=1 -d "$SMITH_DB" -f test/stress/smith_catalog.sql) \
    </dev/null >/dev/null || rg_die "test/stress/smith_catalog.sql failed"
  # bounded queries (sqlsmith sets 1 s too); no statement text in the log
  # (a crash still names the query: "Failed process was running")
  psql -X -q -d postgres -c "ALTER DATABASE $SMITH_DB SET statement_timeout = '1s'" \
    -c "ALTER DATABASE $SMITH_DB SET log_min_error_statement = panic"
  psql -X -q -d "$SMITH_DB" -c "SELECT pg_stat_reset()" >/dev/null
}

# suite_smith LABEL ROLE SEED
suite_smith() {
  local name=sqlsmith-$1 role=$2 seed=$3 log="$OUT/sqlsmith-$1.log" off rc=0 n up=1 tries=0
  local why internal
  off=$(log_size)
  while :; do
    tries=$((tries + 1)) rc=0
    rg_log "$name: $SMITH_QUERIES queries as $role, seed $seed ($(elapsed))"
    timeout "$SMITH_TIMEOUT" sqlsmith --verbose --exclude-catalog \
      --target="host=$PGHOST port=$PGPORT dbname=$SMITH_DB user=$role application_name=$name" \
      --max-queries="$SMITH_QUERIES" --seed="$seed" </dev/null >"$log" 2>&1 || rc=$?
    n=$(crashes "$off" "$OUT/$name.server.log")
    # a query may terminate sqlsmith's own session (pg_terminate_backend as
    # the owner): no crash, but the queries are cut short; try another seed
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$n" -eq 0 ] && [ "$tries" -lt 3 ] \
       && grep -q 'terminating connection due to administrator command' "$OUT/$name.server.log"; then
      echo "  $name: sqlsmith's session was terminated by a query (no crash); again with seed $((seed + 1))"
      seed=$((seed + 1))
      continue
    fi
    break
  done
  pg_isready -q || up=0
  { grep -E '^queries:' "$log" | tail -n1; grep -E '^error rate:' "$log" | tail -n1; } | sed 's/^/  /' || true
  # how far the queries reached into rungate: calls that returned
  # (track_functions = all; flushed when sqlsmith's sessions end) and the
  # errors rungate raised (RG4xx in the log)
  sleep 1
  [ "$up" = 0 ] || psql -X -q -tA -d "$SMITH_DB" -c "
    SELECT '  rungate calls that returned, since set-up: ' || coalesce(sum(calls), 0) || ' ('
           || coalesce(string_agg(funcname || ' ' || calls, ', ' ORDER BY funcname), 'none') || ')'
      FROM pg_stat_user_functions WHERE schemaname = 'rungate' AND calls > 0" || true
  echo "  errors raised by rungate: $(grep -cE '\] RG[0-9]{3} ' "$OUT/$name.server.log" || true)" \
       "($(grep -oE '\] RG[0-9]{3} ' "$OUT/$name.server.log" | grep -oE 'RG[0-9]+' | sort | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}'))"
  # internal errors (XX000) raised while a rungate function was running,
  # reported: the bad-input suite of make test owns that promise
  internal=$(grep -E ' XX000 ' "$OUT/$name.server.log" | grep -ci 'rungate' || true)
  [ "$internal" -eq 0 ] || {
    echo "  note: $internal internal error(s) (XX000) mentioning rungate:"
    grep -E ' XX000 ' "$OUT/$name.server.log" | grep -i rungate | sort | uniq -c | head -10
  }
  if [ "$n" -gt 0 ]; then
    show_crashes "$OUT/$name.server.log"
    why="$n backend crash line(s) in the server log"
  elif [ "$up" = 0 ]; then
    why="the server is not accepting connections"
  elif [ "$rc" -eq 124 ]; then
    why="sqlsmith did not finish within $SMITH_TIMEOUT s"
  elif [ "$rc" -ne 0 ]; then
    why="sqlsmith exited $rc (connection lost?); see $log"
  else
    why=""
  fi
  if [ -z "$why" ]; then
    verdict "$name" 1 "$SMITH_QUERIES queries as $role, seed $seed, no crash"
  else
    echo "  last lines of $log:"; tail -n 15 "$log" | sed 's/^/    /'
    verdict "$name" 0 "$why; seed $seed"
  fi
}

# ---------------------------------------------------------------------------
RG_EXTRA_DEPS="python3 python3-psycopg sqlsmith ${RG_EXTRA_DEPS:-}" \
rg_prepare "track_commit_timestamp = on" "log_line_prefix = '%m [%p] %e '" \
  "track_functions = all" "max_connections = 60"
rm -rf "$OUT"
mkdir -p "$OUT"
rg_log "server log: $RG_TMP/server.log; suite logs: $OUT"

if wanted chaos; then suite_chaos chaos; fi
if wanted chaos-selftest; then
  suite_chaos chaos-selftest --self-test --runs "${STRESS_SELFTEST_RUNS:-2000}"
fi
if wanted sqlsmith; then
  smith_setup
  suite_smith user rungate_smith "$SMITH_SEED"
  suite_smith owner postgres "$((SMITH_SEED + 1000))"
  [ "${RG_KEEP:-0}" = 1 ] || dropdb --if-exists "$SMITH_DB" 2>/dev/null || true
fi
rg_log "done in $(elapsed)"
FINISHED=1
