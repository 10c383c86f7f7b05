#!/usr/bin/env bash
# test/matrix.sh (make test-matrix): `make test PG=<major>` for each tested
# PostgreSQL major, one after the other (each sets up its server with
# test/pg-build.sh when missing), then one line per major:
#
#   PostgreSQL 18 (18.6): 211 passed, 0 failed   results/matrix/18.log
#
# and a last line summing them, "N passed, M failed". The exit status is
# non-zero when any major failed. RG_MATRIX="17 18" runs only those; RG_ONLY
# (regress, isolation, pgtap, scripts) is passed on. 15 runs with PG_CONFIG
# when that names a 15 server (a private copy: `make install` goes there),
# else with bookworm's packages (PG=15). A full run takes about four times
# `make test` (15 about 4 to 6 min; 18 about 5.5 with the pg_upgrade test; 17 and 19 about as long).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
read -r -a MAJORS <<<"${RG_MATRIX:-15 17 18 19}"
OUT=$ROOT/results/matrix
mkdir -p "$OUT"

lines=() total_p=0 total_f=0 rc_all=0
for major in "${MAJORS[@]}"; do
  log=$OUT/$major.log
  echo "==> make test PG=$major (log: ${log#"$ROOT"/})"
  rc=0
  pick=(PG="$major")
  if [ "$major" = 15 ] && [ -n "${PG_CONFIG:-}" ] \
     && "$PG_CONFIG" --version 2>/dev/null | grep -q '^PostgreSQL 15\.'; then
    pick=(PG_CONFIG="$PG_CONFIG")
  fi
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u PG_CONFIG -u RG_PG \
    make -C "$ROOT" --no-print-directory test "${pick[@]}" </dev/null >"$log.tmp" 2>&1 || rc=$?
  mkdir -p "$OUT"
  mv "$log.tmp" "$log"
  grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 | sed 's/^/    /' || true
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
  p=0 f=1
  if [ -n "$last" ]; then
    p=${last%% passed*}
    f=${last#*passed, }; f=${f%% failed*}
  fi
  [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=1
  [ "$f" -eq 0 ] || rc_all=1
  total_p=$((total_p + p)) total_f=$((total_f + f))
  ver=$(sed -n 's/^==> server: PostgreSQL \([^ ]*\).*/\1/p' "$log" | head -n1)
  skipped=$(sed -n 's/^skipped: //p' "$log" | tail -n1)
  lines+=("$(printf 'PostgreSQL %-2s %-12s %s passed, %s failed%s   %s' "$major" "${ver:+($ver)}" "$p" "$f" \
             "${skipped:+ (skipped: $skipped)}" "${log#"$ROOT"/}")")
done

echo
printf '%s\n' "${lines[@]}"
echo "$total_p passed, $total_f failed"
exit "$rc_all"
