#!/usr/bin/env bash
# test/bench/scheduler.sh (BENCH_MODE=scheduler make bench): what the
# built-in scheduler costs and how soon it wakes a worker (issue 18), in a
# throwaway cluster with run.sh's settings and rungate preloaded (part 3: two), one
# database loaded by setup.sql and sched_setup.sql: 1,000,000 runs (a day of
# work: terminal, queued, delayed, running) and 10,000 hourly schedules.
#
#   1. wake-up latency: a listening worker (sched_listen.py, LISTEN
#      rungate_queued) and BENCH_SCHED_DELAYED (100) runs enqueued with
#      run_at in the future, BENCH_SCHED_SPACING (0.637) s apart (not a
#      multiple of the naptime: their run_at fall at every phase of the
#      passes); per run, the time from its run_at to the first notification
#      that names it (payload {"run_id": first, "due": n}: the n delayed runs
#      of bench.delayed from that id on, in id order, which is run_at order).
#      Median and max. Target: max <= naptime + 0.5 s.
#   2. the pass: the worker logs each pass's time, step by step, at DEBUG2
#      (src/scheduler.c); log_min_messages is debug2 while parts 1 and 3 run,
#      and the passes are read from the server log: median and max, passes
#      with ticks apart. rungate.retention is set (BENCH_SCHED_RETENTION,
#      1d: the loaded terminal runs age out a few a second). Target: a
#      pass under 10 % of the naptime.
#   3. claim throughput, scheduler on against off, side by side: a second
#      cluster (B) with the same settings and load; in each of BENCH_ROUNDS
#      (10) rounds both are claimed from at the same time, BENCH_CLIENTS (2)
#      pgbench clients of rungate.claim(w) each for BENCH_SECONDS (5) s, the
#      scheduler on in one (switched by reload; the worker has made a pass
#      before pgbench starts) and off in the other, the roles swapping every
#      round; queues topped up, vacuumed and checkpointed before each round,
#      autovacuum off meanwhile. Per round the ratio on/off of claims/s; per
#      pair of rounds the geometric mean of the two (a difference between the
#      clusters cancels in it), and the median of the pairs. Target: >= 0.95.
#
# Environment: BENCH_SCHED_NAPTIME (1s), BENCH_SCHED_RUNS (1000000),
# BENCH_SCHED_SCHEDULES (10000), BENCH_SYNC (off: the CPU cost),
# BENCH_SCHED_PARTS ("1 3": part 2 comes with them), RG_KEEP=1.
# Output: results/bench/scheduler.md. Reports, never asserts: exits non-zero
# only when the benchmark itself breaks.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
ROUNDS=${BENCH_ROUNDS:-10} SECS=${BENCH_SECONDS:-5}
CLIENTS=${BENCH_CLIENTS:-2}
NAPTIME=${BENCH_SCHED_NAPTIME:-1s} SYNC=${BENCH_SYNC:-off}
NRUNS=${BENCH_SCHED_RUNS:-1000000} NSCHED=${BENCH_SCHED_SCHEDULES:-10000}
RETENTION=${BENCH_SCHED_RETENTION:-1d}
DELAYED=${BENCH_SCHED_DELAYED:-100} SPACING=${BENCH_SCHED_SPACING:-0.637}
PARTS=${BENCH_SCHED_PARTS:-"1 3"}
PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! "$PY" -c 'import psycopg' 2>/dev/null; then
  export RG_EXTRA_DEPS="${RG_EXTRA_DEPS:-} python3 python3-psycopg"
fi
source "$here/common.sh"
BENCH_CONF+=("rungate.scheduler = off" "rungate.scheduler_naptime = '$NAPTIME'")
bench_prepare
DB=rungate_sched
MD="$OUT/scheduler.md"
LOG="$RG_TMP/server.log"

median() {    # median [printf format] < numbers
  sort -g | awk -v f="${1:-%.3f}" '{a[NR] = $1}
    END { if (NR == 0) print "n/a"
          else printf f "\n", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
maxof() { sort -g | tail -1 | awk '{ print } END { if (NR == 0) print "n/a" }'; }
atmost() { awk -v m="$1" -v t="$2" 'BEGIN { print (m != "n/a" && m + 0 <= t + 0) ? "PASS" : "BELOW" }'; }
setting() {   # ALTER SYSTEM SET name = value, reload
  q -d postgres -c "ALTER SYSTEM SET $1 = '$2'"
  q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
}
NAP_MS=$(q -d postgres -c "SELECT setting FROM pg_settings WHERE name = 'rungate.scheduler_naptime'")
workers() { q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rungate scheduler' AND datname = '$DB'"; }
# scheduler on|off: the setting, then wait for the worker to be there and to
# have made a pass (or to be gone)
scheduler() {
  local want i
  setting rungate.scheduler "$1"
  want=$([ "$1" = on ] && echo 1 || echo 0)
  for ((i = 0; i < 200; i++)); do
    [ "$(workers)" = "$want" ] && break
    sleep 0.1
  done
  [ "$(workers)" = "$want" ] || rg_die "rungate.scheduler = $1: $(workers) workers in $DB after 20 s"
  [ "$1" = off ] || sleep "$(awk -v n="$NAP_MS" 'BEGIN { printf "%.3f", n / 1000 + 0.5 }')"
}

TARGETS=()
target() {   # LABEL MEASURED VERDICT TARGET
  printf '  %-62s %-22s (target %s): %s\n' "$1" "$2" "$4" "$3"
  TARGETS+=("| $1 | $2 | $4 | $3 |")
}
# the report's sections: $BODY.1, .2, .3, written by the parts, joined at the end
BODY="$OUT/.scheduler.$$.md"
PART=1
md() { printf '%s\n' "$@" >>"$BODY.$PART"; }
rg_on_exit "rm -f '$BODY'.*"
rm -f "$OUT"/sched_passes_*.txt

# ---------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------
load() {   # the database, in the cluster PGHOST/PGPORT name
  psql -X -q -d postgres -c "CREATE DATABASE $DB"
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$here/setup.sql" >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 -v runs="$NRUNS" -v schedules="$NSCHED" -v retention="$RETENTION" \
    -d "$DB" -f "$here/sched_setup.sql" >/dev/null
  q -d "$DB" -c "CHECKPOINT"
  setting rungate.retention "$RETENTION"
  setting synchronous_commit "$SYNC"
}
rg_log "loading the model, $NRUNS runs and $NSCHED schedules ($(elapsed))"
load
LOADED=$(q -d "$DB" -c "SELECT string_agg(status || ' ' || n, ', ' ORDER BY status)
                          FROM (SELECT status, count(*) n FROM rungate.runs GROUP BY 1) s")
LOADED+="; $(q -d "$DB" -c "SELECT count(*) FROM rungate.schedules") schedules"
rg_log "loaded: $LOADED ($(elapsed))"

# ---------------------------------------------------------------------------
# 2. passes: the worker's DEBUG2 line per pass, read from the server log
# ---------------------------------------------------------------------------
# pass lines of the server log from byte offset $1 on, as
# "total reap schedules ticks wakeups retention purged cpu looking" per pass
passes_since() {   # FROM [TO]
  tail -c +"$(($1 + 1))" "$LOG" | head -c "$(( ${2:-$(stat -c %s "$LOG")} - $1 ))" |
    perl -ne 'print "$1 $4 $6 $7 $8 $10 $11 $2 $3\n" if
      /database "'"$DB"'": pass took ([0-9.]+) ms \(CPU (-?[0-9.]+) ms\): looking ([0-9.]+) ms, reap ([0-9.]+) ms \(([0-9]+)\), schedules ([0-9.]+) ms \(([0-9]+)\), wake-ups ([0-9.]+) ms \(([0-9]+)\), retention ([0-9.]+) ms \(([0-9]+)\)/'
}
# pass_rows LABEL FILE: the pass table's rows for the passes in FILE
pass_rows() {
  local label=$1 f=$2 n sel
  for sel in "all passes" "quiet passes" "passes with ticks"; do
    case $sel in
      all*) awk '1' "$f" >"$f.sel" ;;
      quiet*) awk '$4 == 0' "$f" >"$f.sel" ;;
      *) awk '$4 > 0' "$f" >"$f.sel" ;;
    esac
    n=$(wc -l <"$f.sel")
    [ "$n" -gt 0 ] || continue
    col() { awk -v c="$1" '{ print $c }' "$f.sel"; }
    md "| $label, $sel | $n | $(col 1 | median) | $(col 1 | maxof) | $(col 8 | median) | $(col 8 | maxof) | $(col 9 | median) | $(col 2 | median) | $(col 3 | median) ($(col 4 | median %.0f) ticks) | $(col 5 | median) | $(col 6 | median) ($(col 7 | median %.0f) runs) |"
  done
  rm -f "$f.sel"
}

# ---------------------------------------------------------------------------
# 1. wake-up latency
# ---------------------------------------------------------------------------
part1() {
  PART=1
  local heard="$OUT/sched_heard.tsv" lpid start last n
  rg_log "1. wake-up latency: $DELAYED delayed runs, $SPACING s apart ($(elapsed))"
  scheduler on
  local off0
  off0=$(stat -c %s "$LOG")
  setting log_min_messages debug2
  "$PY" "$here/sched_listen.py" "host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB" "$heard" \
    >"$OUT/sched_listen.out" 2>&1 &
  lpid=$!
  for ((n = 0; n < 100; n++)); do
    grep -q ready "$OUT/sched_listen.out" 2>/dev/null && break
    kill -0 "$lpid" 2>/dev/null || { cat "$OUT/sched_listen.out" >&2; rg_die "the listener failed"; }
    sleep 0.1
  done
  grep -q ready "$OUT/sched_listen.out" || rg_die "the listener did not start"
  # in run_at order, one by one: ids grow with run_at
  start=$(q -d "$DB" -c "
    CREATE TABLE bench.delayed_runs (id bigint PRIMARY KEY, run_at timestamptz NOT NULL);
    DO \$\$
    DECLARE t0 timestamptz := clock_timestamp() + interval '3 seconds';
    BEGIN
      FOR i IN 0..$DELAYED - 1 LOOP
        INSERT INTO bench.delayed_runs
        SELECT e.id, e.run_at FROM rungate.enqueue('bench.delayed', 1, 1, NULL,
                 run_at => t0 + i * interval '$SPACING seconds') e;
      END LOOP;
    END \$\$;
    SELECT extract(epoch FROM max(run_at) - clock_timestamp()) FROM bench.delayed_runs")
  last=$(awk -v s="$start" -v n="$NAP_MS" 'BEGIN { printf "%.0f", s + n / 1000 + 3 }')
  rg_log "waiting ${last} s for the last run_at and a pass"
  sleep "$last"
  kill "$lpid" 2>/dev/null || true
  wait "$lpid" 2>/dev/null || true
  setting log_min_messages warning
  passes_since "$off0" >"$OUT/sched_passes_idle.txt"

  # per run: the first notification that names it
  local res
  res=$(q -d "$DB" <<SQL
CREATE TEMP TABLE heard (received float8, payload text);
\copy heard FROM '$heard'
WITH d AS (SELECT id, run_at, row_number() OVER (ORDER BY id) AS k FROM bench.delayed_runs),
     h AS (SELECT to_timestamp(received) AS received, (payload::jsonb ->> 'run_id')::bigint AS first,
                  (payload::jsonb ->> 'due')::int AS due
             FROM heard WHERE payload::jsonb ->> 'operation' = 'bench.delayed'),
     cover AS (SELECT d.id, d.run_at, min(h.received) AS received
                 FROM d LEFT JOIN (h JOIN d f ON f.id = h.first)
                   ON d.k BETWEEN f.k AND f.k + h.due - 1
                GROUP BY d.id, d.run_at),
     lat AS (SELECT extract(epoch FROM received - run_at) AS s FROM cover)
SELECT count(s) || ' ' || count(*) FILTER (WHERE s IS NULL) || ' '
       || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 3) || ' '
       || round(max(s)::numeric, 3) || ' ' || round(min(s)::numeric, 3) || ' '
       || round(percentile_cont(0.9) WITHIN GROUP (ORDER BY s)::numeric, 3) || ' '
       || (SELECT count(*) FROM h)
  FROM lat;
SQL
)
  local heard_n lost med max min p90 notes goal
  read -r heard_n lost med max min p90 notes <<<"$res"
  goal=$(awk -v n="$NAP_MS" 'BEGIN { printf "%.3f", n / 1000 + 0.5 }')
  echo "  $heard_n of $DELAYED delayed runs heard ($lost never), in $notes notifications;" \
       "latency from run_at: median $med s, 90th percentile $p90 s, max $max s, min $min s"
  target "wake-up latency, max over $DELAYED delayed runs (median $med s)" "$max s" \
    "$([ "$lost" = 0 ] && atmost "$max" "$goal" || echo "BELOW ($lost not heard)")" "≤ naptime + 0.5 s = $goal s"
  md "## 1. Wake-up latency" ""
  md "A session LISTENs on \`rungate_queued\` ([sched_listen.py](../../test/bench/sched_listen.py), timing each"
  md "notification as it arrives); $DELAYED runs are enqueued with \`run_at\` 3 s ahead and then every $SPACING s;"
  md "per run, the time from its \`run_at\` to the first notification that names it. The worker serves"
  md "the database of part 2 (1,000,000 runs, 10,000 schedules) with nothing else running."
  md "" "| runs | heard | never heard | notifications | median | 90th percentile | max | min |" "|---|---|---|---|---|---|---|---|"
  md "| $DELAYED | $heard_n | $lost | $notes | $med s | $p90 s | $max s | $min s |" ""
}

# ---------------------------------------------------------------------------
# 3. claim throughput, scheduler on against off
# ---------------------------------------------------------------------------
# A second cluster, B, for part 3: the same settings and the same load.
B_DIR='' B_PORT=$((RG_PORT + 1))
b_at_exit() {
  [ -n "$B_DIR" ] || return 0
  if [ "${RG_KEEP:-0}" = 1 ]; then
    echo "RG_KEEP=1: cluster B left running in $B_DIR (port $B_PORT); stop it with:" \
         "runuser -u postgres -- $RG_BINDIR/pg_ctl stop -D $B_DIR/data && rm -rf $B_DIR"
    return 0
  fi
  [ ! -f "$B_DIR/data/postmaster.pid" ] ||
    rg_as_pg "$RG_BINDIR/pg_ctl" stop -w -m immediate -D "$B_DIR/data" >/dev/null 2>&1 || true
  rm -rf "$B_DIR"
}
on() {   # on A|B COMMAND...: with PGHOST/PGPORT (and LOG) of that cluster
  local host=$PGHOST port=$PGPORT log=$LOG rc=0
  if [ "$1" = B ]; then export PGHOST=$B_DIR PGPORT=$B_PORT; LOG=$B_DIR/server.log; fi
  shift
  "$@" || rc=$?
  export PGHOST=$host PGPORT=$port; LOG=$log
  return "$rc"
}

# ---------------------------------------------------------------------------
# 3. claim throughput: two clusters side by side, the scheduler on in one
# ---------------------------------------------------------------------------
# Both clusters are claimed from at the same time, one with the scheduler
# serving its database and one without, and the roles swap every round:
# whatever else the machine does falls on both sides at once, and what
# differs between the clusters cancels over the rounds.
part3() {
  PART=3
  local i c son soff ratios=() ons=() offs=() x o others=() pa pb clients=$CLIENTS
  rg_log "3. claims/s, scheduler on against off: a second cluster with the same load ($(elapsed))"
  B_DIR=$(mktemp -d /tmp/rungate-bench-b.XXXXXX)
  chmod 755 "$B_DIR"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$B_DIR"
  rg_on_exit b_at_exit
  rg__init "$B_DIR" "$B_PORT" "${BENCH_CONF[@]}"
  rg__start "$B_DIR"
  # others' CPU: B's processes are ours too (common.sh)
  # shellcheck disable=SC2034
  BENCH_EXTRA_PM=$(head -1 "$B_DIR/data/postmaster.pid")
  on B load
  rg_log "3. $ROUNDS rounds x ${SECS} s, $clients clients on each cluster ($(elapsed))"
  : >"$OUT/sched_passes_load.txt"
  # The passes are logged at DEBUG2 while pgbench's own backends log at
  # WARNING (a DEBUG2 line per claim would be most of the work), and
  # autovacuum waits (each measure starts from a VACUUM instead): a
  # vacuum of a million runs landing on one side and not the other moves a
  # ratio by far more than the scheduler does.
  for c in A B; do
    on $c q -d postgres -c "CREATE ROLE rungate_bench_client LOGIN SUPERUSER"
    on $c q -d postgres -c "ALTER ROLE rungate_bench_client SET log_min_messages = 'warning'"
    on $c setting log_min_messages debug2
    on $c setting autovacuum off
  done
  local want=$((20000 * SECS))
  prepare() {   # the queue topped up, vacuumed, checkpointed
    local have
    have=$(q -d "$DB" -c "SELECT count(*) FROM rungate.runs WHERE status = 'queued' AND run_at <= now()")
    [ "$have" -ge "$want" ] || fill rungate $((want - have)) "$DB"
    q -d "$DB" -c "VACUUM ANALYZE rungate.runs, rungate.audit_log"
    q -d "$DB" -c "CHECKPOINT"
  }
  claims() {   # CLUSTER LOG: pgbench against that cluster's database
    local host=$RG_TMP port=$RG_PORT
    [ "$1" = A ] || host=$B_DIR port=$B_PORT
    pgbench -n -M prepared -h "$host" -p "$port" -U rungate_bench_client -c "$clients" -j 1 \
      -T "$SECS" -f "$here/rg_claim.sql" "$DB" >"$2" 2>&1
  }
  rate() { awk '/^tps = / { printf "%d", $3 }' "$1"; }
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then son=A soff=B; else son=B soff=A; fi
    on A prepare
    on B prepare
    on $soff scheduler off
    on $son scheduler on
    local b0 c0 lg=$LOG
    [ $son = A ] || lg=$B_DIR/server.log
    b0=$(stat -c %s "$lg")
    cpu_snapshot; c0=$SNAP
    claims A "$OUT/sched_claim_A.log" & pa=$!
    claims B "$OUT/sched_claim_B.log" & pb=$!
    wait "$pa" || { cat "$OUT/sched_claim_A.log" >&2; rg_die "pgbench on A failed"; }
    wait "$pb" || { cat "$OUT/sched_claim_B.log" >&2; rg_die "pgbench on B failed"; }
    cpu_snapshot; o=$(other_cpu "$c0" "$SNAP")
    # the passes of the worker that served during the round
    on $son passes_since "$b0" >>"$OUT/sched_passes_load.txt"
    for c in A B; do
      [ "$(on $c q -d "$DB" -c "SELECT count(*) FROM rungate.runs WHERE status = 'queued' AND run_at <= now()")" -gt 0 ] \
        || rg_die "the queue of $c ran dry: raise the top-up"
    done
    local ron roff
    ron=$(rate "$OUT/sched_claim_$son.log") roff=$(rate "$OUT/sched_claim_$soff.log")
    x=$(ratio "$ron" "$roff")
    printf '  round %d (scheduler on in %s): on %6d claims/s   off %6d claims/s   ratio %s   (others used %d%% CPU)\n' \
      "$i" "$son" "$ron" "$roff" "$x" "$o"
    ratios+=("$x") ons+=("$ron") offs+=("$roff") others+=("$o")
  done
  for c in A B; do
    on $c scheduler off
    on $c setting log_min_messages warning
    on $c setting autovacuum on
  done
  # Each pair of rounds (on in A, then on in B) gives the geometric mean of
  # its two ratios: a difference between the clusters (one claims faster
  # than the other whatever the scheduler does) cancels in it exactly.
  local m mo moff mx pairs=() pm
  m=$(printf '%s\n' "${ratios[@]}" | median)
  mo=$(printf '%s\n' "${ons[@]}" | median %.0f)
  moff=$(printf '%s\n' "${offs[@]}" | median %.0f)
  mx=$(printf '%s\n' "${others[@]}" | maxof)
  for ((i = 0; i + 1 < ${#ratios[@]}; i += 2)); do
    pairs+=("$(awk -v a="${ratios[i]}" -v b="${ratios[i + 1]}" 'BEGIN { printf "%.3f", sqrt(a * b) }')")
  done
  pm=$(printf '%s\n' "${pairs[@]}" | median)
  echo "  pairs of rounds (on in A, on in B), geometric means: ${pairs[*]}"
  echo "  median: on $mo, off $moff claims/s; ratio per round $m; per pair $pm"
  target "claims/s with the scheduler on against off, side by side (median of ${#pairs[@]} pairs of rounds)" "$pm" "$(verdict "$pm" 0.95)" "≥ 0.95"
  md "## 3. Claim throughput, scheduler on against off" ""
  md "Two clusters with the same settings and the same load (A, the cluster of parts 1 and 2, and B),"
  md "claimed from at the same time: $clients pgbench clients on each (\`rungate.claim(w)\`, -M prepared),"
  md "${SECS} s a round. In each round the scheduler serves one of them (\`rungate.scheduler\` on by reload;"
  md "the worker has made a pass before pgbench starts) and is off in the other; the roles swap every"
  md "round, so the machine's noise falls on both sides at once and what differs between the clusters"
  md "cancels. Before each round both queues are topped up, \`rungate.runs\` and the audit log"
  md "vacuumed and both clusters checkpointed; autovacuum is off meanwhile. synchronous_commit = $SYNC."
  md "" "| round | scheduler on in | on (claims/s) | off (claims/s) | ratio on/off | others' CPU |" "|---|---|---|---|---|---|"
  for ((i = 0; i < ${#ratios[@]}; i++)); do
    md "| $((i + 1)) | $( ((i % 2)) && echo B || echo A) | ${ons[i]} | ${offs[i]} | ${ratios[i]} | ${others[i]}% |"
  done
  md "| median | | $mo | $moff | $m | max ${mx}% |" ""
  md "Per pair of rounds (the scheduler on in A, then in B) the geometric mean of the two ratios, in"
  md "which a difference between the clusters cancels: ${pairs[*]}; median **$pm**." ""
}

for p in $PARTS; do "part$p"; done

# ---------------------------------------------------------------------------
# 2. the passes seen during parts 1 and 3
# ---------------------------------------------------------------------------
{
  echo "## 2. The scheduler's passes"
  echo
  echo "Each pass of the worker, as it logs it at DEBUG2 (src/scheduler.c): its wall-clock time, the CPU"
  echo "time the worker used in it, and the wall-clock time of each step's transaction, start to commit."
  echo "rungate.retention = $RETENTION (the loaded terminal runs age out a few a second: each pass purges"
  echo "those), naptime $NAPTIME. Quiet passes enqueue no tick; at each minute boundary a pass enqueues that"
  echo "minute's ~$((NSCHED / 60)) ticks. Times in ms, medians but the max columns."
  echo
  echo "| passes | n | wall | wall max | CPU | CPU max | looking for rungate | reap | schedules (ticks) | wake-ups | retention (runs purged) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} >"$BODY.2"
PART=2
for f in idle load; do
  [ -s "$OUT/sched_passes_$f.txt" ] || continue
  pass_rows "$([ $f = idle ] && echo 'part 1 (idle)' || echo 'part 3 (the serving cluster, while both are claimed from)')" \
    "$OUT/sched_passes_$f.txt"
done
goal=$(awk -v n="$NAP_MS" 'BEGIN { printf "%.1f", n / 10 }')
for f in idle load; do
  [ -s "$OUT/sched_passes_$f.txt" ] || continue
  what=$([ $f = idle ] && echo "part 1, idle" || echo "part 3, while claimed from")
  for sel in quiet ticks; do
    # shellcheck disable=SC2016 # awk's fields
    if [ $sel = quiet ]; then cond='$4 == 0'; else cond='$4 > 0'; fi
    n=$(awk "$cond" "$OUT/sched_passes_$f.txt" | wc -l)
    [ "$n" -gt 0 ] || continue
    med=$(awk "$cond { print \$1 }" "$OUT/sched_passes_$f.txt" | median)
    max=$(awk "$cond { print \$1 }" "$OUT/sched_passes_$f.txt" | maxof)
    cpu=$(awk "$cond { print \$8 }" "$OUT/sched_passes_$f.txt" | maxof)
    if [ $sel = quiet ]; then
      label="a pass ($what), the $n that enqueued no tick: max (median $med ms; CPU max $cpu ms)"
    else
      label="a pass ($what), the $n that enqueued ticks ($(awk "$cond { print \$4 }" "$OUT/sched_passes_$f.txt" | median %.0f) each): max (median $med ms; CPU max $cpu ms)"
    fi
    target "$label" "$max ms" "$(atmost "$max" "$goal")" "< 10 % of naptime = $goal ms"
  done
done

{
  echo "# make bench, BENCH_MODE=scheduler (test/bench/scheduler.sh)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(elapsed). Database: $LOADED."
  echo
  echo "| what | measured | target | verdict |"
  echo "|---|---|---|---|"
  printf '%s\n' "${TARGETS[@]}"
  echo
  cat "$BODY".[123] 2>/dev/null || true
  echo
  echo '```'
  q -d postgres -c "SELECT version()"
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
  q -d postgres -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
      FROM unnest('{shared_buffers,max_wal_size,checkpoint_timeout,fsync,synchronous_commit,autovacuum,
                    shared_preload_libraries,rungate.scheduler_naptime,rungate.retention}'::text[]) name"
  echo "rungate commit $(git -C "$RG_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(
         git -C "$RG_ROOT" status --porcelain -- src '*.sql' 2>/dev/null | grep -v '^?? test/' |
           grep -q . && echo ' (src or sql with uncommitted changes)')"
  echo '```'
} >"$MD"
echo
echo "== $MD ($(elapsed))"
cat "$MD"
