#!/usr/bin/env bash
# test/bench/metrics.sh: what the metrics cost (issue 20). Not part of make
# test; it reports, and exits non-zero only when the benchmark itself breaks.
#
#   1. rungate.metrics() with 1,000,000 runs: 980,000 terminal, 10,000
#      queued (half of them due), 10,000 running, over the shared fixture's
#      five operation types; the plan of its gauges query (auto_explain of
#      the statement inside the function: it must read runs_queue_idx and
#      runs_lease_idx, never the terminal runs), then the median of
#      BENCH_CALLS (20) calls of metrics() and of metrics_text(), timed in
#      the server (clock_timestamp around each call).
#   2. The counters' cost on the worker path: claim and cycle (claim +
#      complete) with the counters on and off (the setting rungate.metrics),
#      same build, same cluster, both in each pgbench run (two scripts of
#      equal weight), BENCH_ROUNDS (7) rounds of BENCH_CLAIMS (5,000)
#      transactions per client, 4 clients, synchronous_commit off (the CPU
#      cost); per round the ratio of the worker statements' latencies, off
#      over on, and its median. BENCH_METRICS_PARTS="1" or "2": one part.
#
# Output: results/bench/metrics.md. Uses make bench's cluster settings
# (test/bench/common.sh), rungate preloaded.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
CALLS=${BENCH_CALLS:-20} ROUNDS=${BENCH_ROUNDS:-7} CLAIMS=${BENCH_CLAIMS:-5000}
CLIENTS=${BENCH_CLIENTS:-4} THREADS=${BENCH_THREADS:-2}
PARTS=${BENCH_METRICS_PARTS:-"1 2"}
source "$here/common.sh"
bench_prepare
MD="$OUT/metrics.md"
median() {
  sort -g | awk -v f="${1:-%.3f}" '{a[NR] = $1}
    END { if (NR == 0) print "n/a"
          else printf f "\n", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
{
  echo "# rungate metrics: cost"
  echo
  echo "\`bash test/bench/metrics.sh\` ($(date -u +%Y-%m-%d), $(q -d postgres -c 'SHOW server_version'), $(nproc) cores)."
  echo
} >"$MD"

# ---------------------------------------------------------------------------
# 1. metrics() with 1,000,000 runs
# ---------------------------------------------------------------------------
part1() {
  local db=rungate_metrics_1m
  rg_log "1,000,000 runs ($(elapsed))"
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<SQL
CREATE EXTENSION rungate;
\i $RG_ROOT/test/fixtures/seed.sql
-- the runs are loaded as a restore would load them (rungate.restore_mode);
-- the statuses and columns are those rungate's functions leave
SET rungate.restore_mode = on;
INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                          reason_code, reason_category, reason_message, error,
                          attempt, max_attempts, run_at, created_at, started_at, finished_at)
SELECT 1, 10, (ARRAY['provider.connection.verify', 'inventory.sync', 'restore.execute'])[g % 3 + 1],
       100, s.status,
       CASE WHEN s.status = 'blocked' THEN 'capability_missing' END,
       CASE WHEN s.status = 'blocked' THEN 'capability' END,
       CASE WHEN s.status = 'blocked' THEN 'no capability' END,
       CASE WHEN s.status = 'failed' THEN 'provider timeout' END,
       1, 3, t, t, t, t + interval '1 second'
  FROM generate_series(1, 980000) g,
       LATERAL (SELECT CASE g % 10 WHEN 0 THEN 'blocked' WHEN 1 THEN 'failed'
                                   ELSE 'succeeded' END AS status,
                       now() - interval '30 days' + g * interval '2 seconds' AS t) s;
INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                          attempt, max_attempts, run_at)
SELECT 1, 10, (ARRAY['provider.connection.verify', 'inventory.sync', 'restore.execute'])[g % 3 + 1],
       100, 'queued', 0, 3,
       CASE WHEN g % 2 = 0 THEN now() - g * interval '1 second' ELSE now() + interval '1 hour' END
  FROM generate_series(1, 10000) g;
INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                          attempt, max_attempts, run_at, started_at, worker,
                          lease_token, lease_expires_at)
SELECT 1, 10, (ARRAY['provider.connection.verify', 'inventory.sync', 'restore.execute'])[g % 3 + 1],
       100, 'running', 1, 3, now(), now(), 'w', gen_random_uuid(), now() + interval '5 minutes'
  FROM generate_series(1, 10000) g;
RESET rungate.restore_mode;
VACUUM ANALYZE rungate.runs;
SQL
  local counts plan ms_metrics ms_text first
  counts=$(q -d "$db" -c "SELECT string_agg(status || ' ' || n, ', ' ORDER BY status)
                            FROM (SELECT status, count(*) n FROM rungate.runs GROUP BY 1) s")
  rg_log "runs: $counts ($(elapsed))"

  # the plan of the query inside metrics(), as it ran (auto_explain, nested)
  plan=$(psql -X -q -d "$db" 2>&1 >/dev/null <<'SQL'
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_timing = off;
SET client_min_messages = log;
SELECT count(*) FROM rungate.metrics();
SQL
)
  plan=$(printf '%s\n' "$plan" | awk '/WITH q AS/ { p = 1 } p && /^LOG:/ { exit } p { print }')
  printf '%s\n' "$plan"
  grep -q 'runs_queue_idx' <<<"$plan" || rg_die "the gauges did not read runs_queue_idx"
  grep -q 'runs_lease_idx' <<<"$plan" || rg_die "the gauges did not read runs_lease_idx"
  if grep -q 'Seq Scan on runs' <<<"$plan"; then rg_die "the gauges scanned rungate.runs"; fi

  # the first call of a session plans the gauges query; then BENCH_CALLS calls
  timed() {   # timed FUNCTION-CALL: milliseconds of each call, one per line
    q -d "$db" -c "
      CREATE TEMP TABLE t (ms float8);
      DO \$\$
      DECLARE t0 timestamptz;
      BEGIN
        FOR i IN 1..$CALLS LOOP
          t0 := clock_timestamp();
          PERFORM $1;
          INSERT INTO t VALUES (1000 * extract(epoch FROM clock_timestamp() - t0));
        END LOOP;
      END \$\$;
      SELECT round(ms::numeric, 3) FROM t;"
  }
  first=$(q -d "$db" -c "
      DO \$\$ DECLARE t0 timestamptz := clock_timestamp();
      BEGIN PERFORM count(*) FROM rungate.metrics();
            RAISE NOTICE '%', round(1000 * extract(epoch FROM clock_timestamp() - t0), 3); END \$\$" 2>&1 |
      sed -n 's/.*NOTICE: *//p')
  local c0 others
  cpu_snapshot; c0=$SNAP
  ms_metrics=$(timed "count(*) FROM rungate.metrics()" | median)
  ms_text=$(timed "length(rungate.metrics_text())" | median)
  cpu_snapshot; others=$(other_cpu "$c0" "$SNAP")
  local rows
  rows=$(q -d "$db" -c "SELECT count(*) FROM rungate.metrics()")
  echo "  metrics(): median ${ms_metrics} ms of $CALLS calls ($rows rows; first call of a session ${first} ms);" \
       "metrics_text(): median ${ms_text} ms; others used ${others}% of the CPU meanwhile"
  {
    echo "## rungate.metrics() with 1,000,000 runs"
    echo
    echo "Runs: $counts (five operation types, three of them used)."
    echo
    echo "| call | median of $CALLS calls | target |"
    echo "|---|---|---|"
    echo "| \`rungate.metrics()\` ($rows rows) | ${ms_metrics} ms | < 50 ms |"
    echo "| \`rungate.metrics_text()\` | ${ms_text} ms | |"
    echo "| the first \`metrics()\` of a session (plans the gauges query) | ${first} ms | |"
    echo
    echo "Processes outside the benchmark used ${others}% of the machine's CPU while the calls were timed."
    echo
    echo "The gauges query as it ran inside \`metrics()\` (auto_explain, nested statements):"
    echo
    echo '```'
    printf '%s\n' "$plan" | sed 's/^LOG:  //'
    echo '```'
    echo
  } >>"$MD"
  psql -X -q -d postgres -c "DROP DATABASE $db"
}

# ---------------------------------------------------------------------------
# 2. claim and cycle with the counters on and off
# ---------------------------------------------------------------------------
# One pgbench run per round holds both sides: two scripts of equal weight,
# each first setting rungate.metrics for its connection, then claiming (and
# completing); every client draws a script per transaction, so both sides
# share the same moments of the machine's noise. pgbench -r reports each
# statement's average latency per script: the ratio is the latency with the
# counters off over the latency with them on (runs/s on over off).
part2() {
  local db=rungate_metrics_onoff kind i x r lon loff
  rg_log "claim and cycle, counters on and off ($(elapsed))"
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$here/setup.sql" >/dev/null
  q -d postgres -c "ALTER SYSTEM SET synchronous_commit = off"
  q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
  local total=$((CLAIMS * CLIENTS))
  for kind in claim cycle; do
    for s in on off; do
      { echo "SET rungate.metrics = $s;"; cat "$here/rg_$kind.sql"; } >"$OUT/metrics_${kind}_$s.sql"
    done
  done
  # latency (ms) of the worker's statements (not the SET) of script N in LOG
  worker_ms() {
    awk -v n="$2" '/^SQL script / { s = $3 + 0 }
      s == n && /^ *[0-9.]+ +[0-9]+ +SELECT/ { t += $1 }
      END { printf "%.4f", t }' "$1"
  }
  {
    echo "## The counters on the worker path"
    echo
    echo "\`rungate.metrics\` on against off, same build, same cluster, in the same pgbench run:"
    echo "two scripts of equal weight, each setting rungate.metrics for its connection and then"
    echo "claiming (and completing); $ROUNDS rounds of $CLAIMS transactions per client, $CLIENTS clients,"
    echo "synchronous_commit off. Per round, the average latency of the worker's statements"
    echo "(pgbench -r, the SET left out) with the counters off over on, i.e. runs/s on over off;"
    echo "the median of the rounds."
    echo
    echo "| measure | latency on (ms, median) | latency off (ms, median) | ratio off/on (median) | rounds | target |"
    echo "|---|---|---|---|---|---|"
  } >>"$MD"
  for kind in claim cycle; do
    echo "== $kind"
    local ratios=() ons=() offs=() log="$OUT/metrics_$kind.log" have
    for ((i = 1; i <= ROUNDS; i++)); do
      have=$(q -d "$db" -c "SELECT count(*) FROM rungate.runs WHERE status = 'queued'")
      [ "$have" -ge $((total + 1000)) ] || fill rungate $((total + 1000 - have)) "$db"
      q -d "$db" -c "VACUUM ANALYZE rungate.runs"
      q -d "$db" -c "CHECKPOINT"
      pgbench -n -r -M prepared -c "$CLIENTS" -j "$THREADS" -t "$CLAIMS" \
        -f "$OUT/metrics_${kind}_on.sql@1" -f "$OUT/metrics_${kind}_off.sql@1" "$db" >"$log" 2>&1 \
        || { cat "$log" >&2; rg_die "pgbench $kind failed"; }
      lon=$(worker_ms "$log" 1) loff=$(worker_ms "$log" 2)
      x=$(ratio "$loff" "$lon")
      printf '  round %d: on %s ms   off %s ms   ratio off/on %s\n' "$i" "$lon" "$loff" "$x"
      ratios+=("$x") ons+=("$lon") offs+=("$loff")
    done
    r=$(printf '%s\n' "${ratios[@]}" | median)
    echo "  median ratio $r"
    echo "| $kind | $(printf '%s\n' "${ons[@]}" | median %.4f) | $(printf '%s\n' "${offs[@]}" | median %.4f) | $r | ${ratios[*]} | ≥ 0.97 $(verdict "$r" 0.97) |" >>"$MD"
  done
  echo >>"$MD"
  psql -X -q -d postgres -c "DROP DATABASE $db"
}

for p in $PARTS; do "part$p"; done
echo
echo "== $MD ($(elapsed))"
cat "$MD"
