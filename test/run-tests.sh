#!/usr/bin/env bash
# test/run-tests.sh: install deps, build and install rungate, start a
# throwaway cluster and run every suite against it:
#   regress    pg_regress, sql/*.sql vs expected/*.out     1 count per test
#   isolation  test/specs/*.spec vs test/expected/*.out    1 count per spec
#   pgtap      test/pgtap/*.sql, each in a fresh database  1 count per assertion
#   scripts    test/scripts/*.sh, cluster env exported     1 count per script (exit code;
#              77: skipped, a requirement missing on this server, counted apart)
# The last line is always "N passed, M failed"; the exit status is non-zero
# on any failure, set-up failure, or when no test was found.
# Environment: RG_ONLY=regress|isolation|pgtap|scripts runs one suite;
# RG_KEEP=1 leaves the cluster running; RG_DEV=1 uses `test/dev.sh start`'s cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
shopt -s nullglob

PASSED=0 FAILED=0 FINISHED=0 SKIPPED=()
OUT="$RG_ROOT/results"

summary() {
  if [ "$FINISHED" != 1 ]; then
    echo "aborted: set-up or test runner failed (exit status $RG_EXIT_STATUS)"
    FAILED=$((FAILED + 1))
  elif [ $((PASSED + FAILED)) -eq 0 ]; then
    echo "no tests found (sql/, test/specs/, test/pgtap/, test/scripts/)"
    FAILED=1
  fi
  [ ${#SKIPPED[@]} -eq 0 ] || echo "skipped: ${SKIPPED[*]}"
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] || [ "$RG_EXIT_STATUS" -ne 0 ] || RG_EXIT_STATUS=1
}
rg_on_exit summary   # registered first, so it runs last: after the cluster is gone

wanted() { [ -z "${RG_ONLY:-}" ] || [ "$RG_ONLY" = "$1" ]; }

# count SUITE PASSED FAILED
count() {
  PASSED=$((PASSED + $2)) FAILED=$((FAILED + $3))
  rg_log "$1: $2 passed, $3 failed"
}

# pg_regress or pg_isolation_regress through the Makefile.
# run_pg_regress SUITE MAKE-TARGET RESULT-DIR N-TESTS
run_pg_regress() {
  local suite=$1 target=$2 dir=$3 total=$4 rc=0 ok
  rg_log "$suite: $total test(s)"
  rm -rf "$dir"
  mkdir -p "$OUT"
  rg_make -s "$target" \
    EXTRA_REGRESS_OPTS="--host=$PGHOST --port=$PGPORT --user=$PGUSER" \
    2>&1 </dev/null | tee "$OUT/$suite.log" || rc=$?
  # "test x ... ok" up to 15; from 16 TAP lines: "ok 3 - x" ("not ok" fails)
  ok=$(grep -cE '\.\.\. ok( |$)|^ok [0-9]+ +- ' "$OUT/$suite.log" || true)
  local failed=$((total - ok))
  [ "$rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
  if [ "$failed" -gt 0 ] && [ -s "$dir/regression.diffs" ]; then
    echo "---- $suite diffs ($dir/regression.diffs) ----"
    cat "$dir/regression.diffs"
    echo "---- end of $suite diffs ----"
  fi
  count "$suite" "$ok" "$failed"
}

suite_regress() {
  local files=("$RG_ROOT"/sql/*.sql)
  [ ${#files[@]} -gt 0 ] || { rg_log "regress: no sql/*.sql"; return 0; }
  run_pg_regress regress installcheck-regress "$OUT/regress" ${#files[@]}
}

suite_isolation() {
  local files=("$RG_ROOT"/test/specs/*.spec)
  [ ${#files[@]} -gt 0 ] || { rg_log "isolation: no test/specs/*.spec"; return 0; }
  run_pg_regress isolation installcheck-isolation "$OUT/isolation" ${#files[@]}
}

# One fresh database per pgTAP file, with pgtap and rungate created.
suite_pgtap() {
  local files=("$RG_ROOT"/test/pgtap/*.sql) f log rc ok notok plan ran
  [ ${#files[@]} -gt 0 ] || { rg_log "pgtap: no test/pgtap/*.sql"; return 0; }
  rg_log "pgtap: ${#files[@]} file(s)"
  mkdir -p "$OUT/pgtap"
  for f in "${files[@]}"; do
    log="$OUT/pgtap/$(basename "$f" .sql).log"
    if ! psql -X -q -v ON_ERROR_STOP=1 -d postgres </dev/null >"$log" 2>&1 \
        -c 'DROP DATABASE IF EXISTS rungate_tap' -c 'CREATE DATABASE rungate_tap' \
      || ! psql -X -q -v ON_ERROR_STOP=1 -d rungate_tap </dev/null >>"$log" 2>&1 \
        -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION rungate'; then
      echo "not ok: ${f#"$RG_ROOT"/}: database set-up failed"
      cat "$log"
      count "pgtap ${f##*/}" 0 1
      continue
    fi
    rc=0
    (cd "$RG_ROOT" && pg_prove --verbose --psql-bin "$RG_BINDIR/psql" -d rungate_tap \
      "${f#"$RG_ROOT"/}") </dev/null >"$log" 2>&1 || rc=$?
    # TAP: "not ok ... # TODO" is an expected failure, i.e. a pass
    ok=$(grep -cE '^ok [0-9]+|^not ok [0-9]+.*# *TODO' "$log" || true)
    notok=$(grep -E '^not ok [0-9]+' "$log" | grep -cvE '# *TODO' || true)
    plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$log" | head -n1)
    ran=$((ok + notok))
    [ -z "$plan" ] || [ "$plan" -le "$ran" ] || notok=$((notok + plan - ran))
    [ "$rc" -eq 0 ] || [ "$notok" -gt 0 ] || notok=1
    if [ "$notok" -gt 0 ]; then cat "$log"; fi
    count "pgtap ${f##*/}" "$ok" "$notok"
  done
}

# Shell-driven tests: one count each, by exit status; output shown on failure.
suite_scripts() {
  local files=("$RG_ROOT"/test/scripts/*.sh) f log rc
  [ ${#files[@]} -gt 0 ] || { rg_log "scripts: no test/scripts/*.sh"; return 0; }
  mkdir -p "$OUT/scripts"
  for f in "${files[@]}"; do
    log="$OUT/scripts/$(basename "$f" .sh).log"
    rc=0
    (cd "$RG_ROOT" && bash "$f") </dev/null >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
      echo "ok: ${f#"$RG_ROOT"/}"
      count "scripts ${f##*/}" 1 0
    elif [ "$rc" -eq 77 ]; then
      echo "skip: ${f#"$RG_ROOT"/}: $(grep -m1 '^skip:' "$log" | sed 's/^skip: *//')"
      SKIPPED+=("${f##*/}")
    else
      echo "not ok: ${f#"$RG_ROOT"/} (exit $rc)"
      cat "$log"
      count "scripts ${f##*/}" 0 1
    fi
  done
}

case "${RG_ONLY:-}" in
  ''|regress|isolation|pgtap|scripts) ;;
  *) rg_die "RG_ONLY must be one of regress, isolation, pgtap, scripts" ;;
esac

rg_prepare
for suite in regress isolation pgtap scripts; do
  if wanted "$suite"; then "suite_$suite"; fi
done
FINISHED=1
