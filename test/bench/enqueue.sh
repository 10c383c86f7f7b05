#!/usr/bin/env bash
# test/bench/enqueue.sh (BENCH_MODE=enqueue make bench): rungate.enqueue
# against a bare INSERT, and the wake-up a due enqueue sends (issue 24), in a
# throwaway cluster with run.sh's settings, rungate and pg_stat_statements
# preloaded, the scheduler on (it sends the trailing wake-ups).
#
#   1. throughput: pgbench, for each client count of BENCH_ENQ_CLIENTS
#      ("4 16"), BENCH_ROUNDS (5) rounds of BENCH_SECONDS (5) s each of
#      enq_rg.sql (rungate.enqueue of a due inventory.sync run, initiator and
#      tenant at random in setup.sql's model) and enq_bare.sql (an INSERT of
#      the same row into bench.bare_enq: primary key and one partial queue
#      index, enq_setup.sql), the order alternating. Ratios of medians:
#      rungate / bare per client count, and rungate at 16 / rungate at 4.
#   2. where the time goes, 16 clients (the last client count): the wait
#      events of the pgbench sessions sampled every 10 ms (pg_stat_activity)
#      during one more run of each, and pg_stat_statements (track = all, on
#      for that run only) of rungate's: the statements inside enqueue.
#   3. wake-up latency: enq_wakeup.py, BENCH_ENQ_WAKEUPS (1000) enqueues one
#      at a time, each timed from its commit to the next notification a
#      LISTEN session receives; median, 90th percentile, max, lost.
#
# Targets: enqueue >= 0.5 x bare at 4 clients, >= 0.4 x at 16; rungate at 16
# >= 0.9 x rungate at 4; wake-up median <= 20 ms, max <= 200 ms.
# Environment: BENCH_SYNC (off), RG_KEEP=1. Output: results/bench/enqueue.md.
# Reports, never asserts: exits non-zero only when the benchmark breaks.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
ROUNDS=${BENCH_ROUNDS:-5} SECS=${BENCH_SECONDS:-5} SYNC=${BENCH_SYNC:-off}
CLIENT_SETS=${BENCH_ENQ_CLIENTS:-"4 16"} WAKEUPS=${BENCH_ENQ_WAKEUPS:-1000}
PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! "$PY" -c 'import psycopg' 2>/dev/null; then
  export RG_EXTRA_DEPS="${RG_EXTRA_DEPS:-} python3 python3-psycopg"
fi
source "$here/common.sh"
BENCH_CONF+=("shared_preload_libraries = 'rungate,pg_stat_statements'"
  "pg_stat_statements.track = none" "synchronous_commit = $SYNC"
  "rungate.scheduler = on")
bench_prepare
DB=rungate_enq
MD="$OUT/enqueue.md"
: >"$MD"
md() { printf '%s\n' "$@" >>"$MD"; }
median() { sort -g | awk '{a[NR] = $1} END { if (NR == 0) print 0;
  else printf "%d\n", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
atleast() { verdict "$1" "$2"; }

psql -X -q -d postgres -c "CREATE DATABASE $DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$here/setup.sql" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$here/enq_setup.sql" >/dev/null
q -d "$DB" -c "CREATE EXTENSION pg_stat_statements"
for ((i = 0; i < 100; i++)); do   # the scheduler serves the database
  [ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'rungate scheduler' AND datname = '$DB'")" = 1 ] && break
  sleep 0.1
done

# run SCRIPT CLIENTS [LABEL]: RATE, enqueues per second
run() {
  local script=$1 c=$2 log="$OUT/enqueue_${1%.sql}_$2.log"
  PGAPPNAME=${3:-bench_enq} pgbench -n -M prepared -c "$c" -j "$(( c < 2 ? c : 2 ))" -T "$SECS" \
    -f "$here/$script" "$DB" >"$log" 2>&1 || { cat "$log" >&2; rg_die "pgbench $script failed (log: $log)"; }
  RATE=$(awk '/^tps = / { printf "%d", $3 }' "$log")
  [ "${RATE:-0}" -gt 0 ] || { cat "$log" >&2; rg_die "pgbench $script processed nothing"; }
}

echo "== 1. enqueue against a bare insert, $ROUNDS rounds x $SECS s ($(elapsed))"
declare -A MED=()
md "# make bench, BENCH_MODE=enqueue (test/bench/enqueue.sh)" ""
md "$(date -u '+%Y-%m-%d %H:%M UTC'), synchronous_commit=$SYNC, rungate $(q -d "$DB" -c "SELECT extversion FROM pg_extension WHERE extname = 'rungate'")," \
   "commit $(git -C "$RG_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores." ""
md "## 1. Throughput" "" \
   "pgbench -M prepared, $SECS s a run, the two scripts alternating; enqueues per second." \
   "rungate: \`rungate.enqueue\` of a due run (decided, audited, notified); bare: an INSERT of the" \
   "same row into a table with the primary key and one partial queue index." "" \
   "| clients | round | rungate | bare | ratio |" "|---|---|---|---|---|"
for c in $CLIENT_SETS; do
  rgs=() bares=()
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then run enq_rg.sql "$c"; r=$RATE; run enq_bare.sql "$c"; b=$RATE
    else run enq_bare.sql "$c"; b=$RATE; run enq_rg.sql "$c"; r=$RATE; fi
    rgs+=("$r") bares+=("$b")
    echo "  $c clients, round $i: rungate $r, bare $b ($(ratio "$r" "$b"))"
    md "| $c | $i | $r | $b | $(ratio "$r" "$b") |"
  done
  MED[rg$c]=$(printf '%s\n' "${rgs[@]}" | median)
  MED[bare$c]=$(printf '%s\n' "${bares[@]}" | median)
  md "| $c | median | ${MED[rg$c]} | ${MED[bare$c]} | **$(ratio "${MED[rg$c]}" "${MED[bare$c]}")** |"
done
md ""

# ---- 2. wait events and statements at the last client count
set -- $CLIENT_SETS
hi=${!#}
echo "== 2. wait events and statements, $hi clients ($(elapsed))"
q -d "$DB" -c "TRUNCATE bench.waits"
for s in enq_rg enq_bare; do
  q -d "$DB" -c "CALL bench.sample_waits('$s', 'bench_$s', $SECS - 0.5)" &
  sampler=$!
  if [ "$s" = enq_rg ]; then
    q -d postgres -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'"
    q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
    sleep 0.2
    q -d "$DB" -c "SELECT pg_stat_statements_reset()" >/dev/null
  fi
  run "$s.sql" "$hi" "bench_$s"
  wait "$sampler" || rg_die "the wait-event sampler failed"
  if [ "$s" = enq_rg ]; then
    q -d postgres -c "ALTER SYSTEM SET pg_stat_statements.track = 'none'"
    q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
    STMTS=$(q -d "$DB" -F ' | ' -c "
      SELECT '| ' || left(regexp_replace(query, '\s+', ' ', 'g'), 90), calls,
             round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 3) || ' |'
        FROM pg_stat_statements
       WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND query NOT LIKE '%pg_stat_statements%'
       ORDER BY total_exec_time DESC LIMIT 12")
  fi
done
md "## 2. Where the time goes, $hi clients" "" \
   "Wait events of the pgbench sessions (pg_stat_activity, sampled every 10 ms while one more run" \
   "of each script ran; \"on CPU\": active with no wait event), share of the samples:" "" \
   "| wait event | rungate | bare |" "|---|---|---|"
q -d "$DB" -F ' | ' -c "
  WITH t AS (SELECT label, event, count(*) AS n, sum(count(*)) OVER (PARTITION BY label) AS total
               FROM bench.waits GROUP BY label, event)
  SELECT '| ' || e.event, coalesce(round(100.0 * r.n / r.total, 1) || ' %', '-'),
         coalesce(round(100.0 * b.n / b.total, 1) || ' %', '-') || ' |'
    FROM (SELECT DISTINCT event FROM t) e
    LEFT JOIN t r ON r.event = e.event AND r.label = 'enq_rg'
    LEFT JOIN t b ON b.event = e.event AND b.label = 'enq_bare'
   ORDER BY coalesce(r.n, 0) DESC, coalesce(b.n, 0) DESC LIMIT 12" >>"$MD"
md "" "The statements of the rungate run (pg_stat_statements, track = all for that run only: the" \
   "statements rungate's C code runs inside enqueue, and the foreign keys' checks):" "" \
   "| statement | calls | total ms | mean ms |" "|---|---|---|---|" "$STMTS" ""

# ---- 3. wake-up latency
echo "== 3. wake-up latency, $WAKEUPS enqueues ($(elapsed))"
lat="$OUT/enqueue_wakeups.txt"
"$PY" "$here/enq_wakeup.py" "host=$PGHOST port=$PGPORT dbname=$DB user=${PGUSER:-postgres}" "$WAKEUPS" "$lat" \
  || rg_die "enq_wakeup.py failed"
lost=$(grep -c '^lost$' "$lat" || true)
read -r heard wmed wp90 wmax < <(grep -v '^lost$' "$lat" | sort -g | awk '{a[NR] = $1 * 1000}
  END { if (NR == 0) { print "0 n/a n/a n/a"; exit }
        p = int(NR * 0.9); if (p < 1) p = 1
        printf "%d %.1f %.1f %.1f\n", NR, (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[p], a[NR] }')
echo "  $heard heard, $lost lost; median $wmed ms, 90th $wp90 ms, max $wmax ms"
md "## 3. Wake-up latency" "" \
   "[enq_wakeup.py](../../test/bench/enq_wakeup.py): $WAKEUPS due runs enqueued one at a time, 0 to 10 ms" \
   "apart after each wake-up (inside and outside the 5 ms coalescing window: leading and trailing" \
   "hints); per enqueue, its commit to the next notification a LISTEN session receives." "" \
   "| enqueues | heard | lost (none within 2 s) | median | 90th percentile | max |" "|---|---|---|---|---|---|" \
   "| $WAKEUPS | $heard | $lost | $wmed ms | $wp90 ms | $wmax ms |" ""

# ---- verdicts
lo=$1
r_lo=$(ratio "${MED[rg$lo]}" "${MED[bare$lo]}") r_hi=$(ratio "${MED[rg$hi]}" "${MED[bare$hi]}")
r_scale=$(ratio "${MED[rg$hi]}" "${MED[rg$lo]}")
wv=$(awk -v m="$wmed" -v x="$wmax" -v l="$lost" 'BEGIN { print (l == 0 && m + 0 <= 20 && x + 0 <= 200) ? "PASS" : "BELOW" }')
md "## Targets" "" "| what | measured | target | |" "|---|---|---|---|" \
   "| enqueue / bare, $lo clients | $r_lo | ≥ 0.5 | $(atleast "$r_lo" 0.5) |" \
   "| enqueue / bare, $hi clients | $r_hi | ≥ 0.4 | $(atleast "$r_hi" 0.4) |" \
   "| rungate at $hi clients / at $lo | $r_scale | ≥ 0.9 | $(atleast "$r_scale" 0.9) |" \
   "| wake-up latency, median and max | $wmed ms, $wmax ms ($lost lost) | ≤ 20 ms, ≤ 200 ms | $wv |"
echo
sed -n '/^## Targets/,$p' "$MD"
echo "== written: $MD ($(elapsed))"
