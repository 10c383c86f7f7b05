#!/usr/bin/env bash
# test/bench/modes.sh: three more benchmark modes of make bench (issue 5),
# each in a throwaway cluster of its own, with run.sh's postgresql.conf:
#
#   BENCH_MODE=pileup     a just-suspended tenant's pile of queued runs is
#                         blocked at >= 0.8 x the plain claim rate, and the
#                         healthy runs queued behind it start in the same drain
#   BENCH_MODE=sustained  BENCH_MINUTES (10) of enqueue + claim + complete
#                         with CALL rungate.purge_in_batches every 30 s: last minute's
#                         throughput >= 0.8 x the first's, sizes bounded,
#                         purge never fails nor blocks a worker
#   BENCH_MODE=memory     a million claims (each completed) in one backend
#                         grow its memory by < 10 MB
#
# Like run.sh it reports and never asserts: every target gets a PASS or BELOW
# line, the figures go to results/bench/modes.md (a section per run, appended),
# and the exit status is non-zero only when the benchmark itself breaks.
# Environment (defaults in parentheses):
#   BENCH_CLIENTS (4), BENCH_THREADS (2)      the worker pgbench of each mode
#   pileup:    BENCH_PILEUP_RUNS (100000) runs of the suspended tenant,
#              BENCH_PILEUP_HEALTHY (2000) runs of other tenants queued after
#              them, BENCH_PILEUP_TENANT (1), BENCH_PILEUP_CLAIMS (5000) claims
#              per client for the plain claim rate, BENCH_PILEUP_MAX_SECONDS
#              (900) before a drain is given up
#   sustained: BENCH_MINUTES (10), BENCH_SUSTAINED_DEPTH (5000) queued runs the
#              enqueuer keeps, BENCH_ENQUEUE_RATE (10) enqueuer transactions
#              per second (pgbench -R), BENCH_ENQUEUE_BATCH (1000) runs at most
#              per enqueuer transaction, BENCH_PURGE_SECONDS (30),
#              BENCH_PURGE_AGE ('1 minute')
#   memory:    BENCH_MEMORY_CLAIMS (1000000), BENCH_MEMORY_BATCH (100) claims
#              per COMMIT, BENCH_MEMORY_VACUUM_SECONDS (20) between VACUUMs of
#              rungate.runs from another session
#   RG_KEEP=1  leave the throwaway cluster running afterwards
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
MODE=${BENCH_MODE:-}
case $MODE in
  pileup | sustained | memory) ;;
  *) rg_die "BENCH_MODE must be pileup, sustained or memory (got '${MODE}')" ;;
esac
CLIENTS=${BENCH_CLIENTS:-4} THREADS=${BENCH_THREADS:-2}
source "$here/common.sh"
bench_prepare

atmost() { awk -v m="$1" -v t="$2" 'BEGIN { print (m != "n/a" && m + 0 <= t + 0) ? "PASS" : "BELOW" }'; }

# newdb DB: a fresh database with the authority model and the mode helpers
newdb() {
  psql -X -q -d postgres -c "CREATE DATABASE $1"
  psql -X -q -v ON_ERROR_STOP=1 -d "$1" -f "$here/setup.sql" >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 -d "$1" -f "$here/mode_setup.sql" >/dev/null
}

environment() {
  q -d postgres -c "SELECT version()"
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GB"
  q -d postgres -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
      FROM unnest('{shared_buffers,work_mem,max_wal_size,checkpoint_timeout,fsync,
                    synchronous_commit,autovacuum,autovacuum_naptime}'::text[]) name"
  # printed before the mode's database exists: the version CREATE EXTENSION installs
  echo "rungate $(q -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'rungate'" 2>/dev/null || true)," \
       "commit $(git -C "$RG_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(
         git -C "$RG_ROOT" status --porcelain -- src '*.sql' 2>/dev/null | grep -v '^?? test/' |
           grep -q . && echo ' (src or sql with uncommitted changes)')"
}



# the section of results/bench/modes.md: lines collected in MD, written at the end
MD="$OUT/.modes_$MODE.$$.md"
: >"$MD"
md() { printf '%s\n' "$@" >>"$MD"; }
rg_on_exit "rm -f '$MD'"
write_md() {
  local f="$OUT/modes.md"
  [ -s "$f" ] || printf '# make bench: pileup, sustained, memory (test/bench/modes.sh)\n\n' >"$f"
  {
    echo "## $MODE ($(date -u '+%Y-%m-%d %H:%M UTC'), $(elapsed))"
    echo
    cat "$MD"
    echo
    echo '```'
    environment
    echo '```'
    echo
  } >>"$f"
  echo
  echo "== appended to $f"
}

# target LABEL MEASURED VERDICT TARGET: a verdict line, printed and recorded
target() {
  printf '  %-58s %-14s (target %s): %s\n' "$1" "$2" "$4" "$3"
  md "| $1 | $2 | $4 | $3 |"
}

# ---------------------------------------------------------------------------
# pileup
# ---------------------------------------------------------------------------
pileup_bench() {
  local db=rungate_pileup tenant=${BENCH_PILEUP_TENANT:-1}
  local pile=${BENCH_PILEUP_RUNS:-100000} healthy=${BENCH_PILEUP_HEALTHY:-2000}
  local per=${BENCH_PILEUP_CLAIMS:-5000} maxs=${BENCH_PILEUP_MAX_SECONDS:-900}
  local total=$((per * CLIENTS)) log before after left c0 o_rate o_drain claim_rate
  rg_log "pileup: loading the model ($(elapsed))"
  newdb "$db"

  # 1. the plain claim rate: $total healthy runs queued, $CLIENTS clients,
  # $per single claims each; runs started (in the table) over pgbench's time
  rg_log "pileup: plain claim rate, $CLIENTS clients x $per claims ($(elapsed))"
  fill rungate "$total" "$db"
  q -d "$db" -c "VACUUM ANALYZE rungate.runs"
  q -d "$db" -c "CHECKPOINT"
  before=$(q -d "$db" -c "SELECT count(*) FROM rungate.runs WHERE started_at IS NOT NULL")
  log="$OUT/pileup_claim.log"
  cpu_snapshot; c0=$SNAP
  pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -t "$per" -f "$here/rg_claim.sql" "$db" >"$log" 2>&1 \
    || { cat "$log" >&2; rg_die "pgbench rg_claim.sql failed (log: $log)"; }
  cpu_snapshot; o_rate=$(other_cpu "$c0" "$SNAP")
  after=$(q -d "$db" -c "SELECT count(*) FROM rungate.runs WHERE started_at IS NOT NULL")
  local pb_secs
  pb_secs=$(awk '/actually processed:/ {n = $NF; sub(/\/.*/, "", n)} /^tps = / {t = $3}
                 END { if (t > 0) printf "%.4f", n / t; else print 0 }' "$log")
  claim_rate=$(awk -v d="$((after - before))" -v s="$pb_secs" 'BEGIN { printf "%d", (s > 0 ? d / s : 0) }')
  printf '  %d runs started in %.2f s: %d claims/s (others used %d%% CPU)\n' \
    "$((after - before))" "$pb_secs" "$claim_rate" "$o_rate"
  [ "$claim_rate" -gt 0 ] || rg_die "no claim rate (log: $log)"
  # what SKIP LOCKED left behind goes now, so the drain sees only the pile
  # and the healthy runs behind it
  while [ "$(q -d "$db" -c "SELECT count(*) FROM rungate.runs WHERE status = 'queued'")" -gt 0 ]; do
    q -d "$db" -c "SELECT count(*) FROM rungate.claim('rest', NULL, 1000)" >/dev/null
  done

  # 2. the pile (one tenant, lower ids) and the healthy runs (higher ids, the
  # same priority), all queued while the tenant is active
  rg_log "pileup: queueing $pile runs of tenant $tenant, then $healthy of other tenants ($(elapsed))"
  local first last
  first=$(q -d "$db" -c "SELECT last_value + 1 FROM rungate.runs_id_seq")
  q -d "$db" -c "SELECT bench.mode_pile($tenant, $((pile / 2)))" >/dev/null &
  q -d "$db" -c "SELECT bench.mode_pile($tenant, $((pile - pile / 2)))" >/dev/null
  wait $! || rg_die "queueing the pile failed"
  last=$(q -d "$db" -c "SELECT max(id) FROM rungate.runs")
  q -d "$db" -c "SELECT bench.mode_healthy($tenant, $healthy)" >/dev/null
  local check
  check=$(q -d "$db" -c "SELECT
      (SELECT count(*) FROM rungate.runs WHERE id BETWEEN $first AND $last
          AND tenant_id = $tenant AND status = 'queued') || ' ' ||
      (SELECT count(*) FROM rungate.runs WHERE id > $last
          AND tenant_id <> $tenant AND status = 'queued') || ' ' ||
      (SELECT count(*) FROM rungate.runs WHERE status = 'queued')")
  [ "$check" = "$pile $healthy $((pile + healthy))" ] \
    || rg_die "queue is not pile $pile + healthy $healthy (pile, healthy, queued: $check)"
  q -d "$db" -c "VACUUM ANALYZE rungate.runs"
  q -d "$db" -c "CHECKPOINT"

  # 3. suspend the tenant, drain with $CLIENTS clients of claim(w, NULL, 10)
  # until nothing is queued (pgbench is stopped then); the drain lasts from
  # just before pgbench starts to the last transition it made (audit_log.at)
  q -d "$db" -c "UPDATE rungate.tenants SET status = 'suspended' WHERE id = $tenant"
  rg_log "pileup: tenant $tenant suspended; draining with $CLIENTS clients of rungate.claim('w', NULL, 10) ($(elapsed))"
  local t0 pb empty=f
  log="$OUT/pileup_drain.log"
  t0=$(q -d "$db" -c "SELECT clock_timestamp()")
  cpu_snapshot; c0=$SNAP
  PGAPPNAME=rg_drain pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$maxs" \
    -f "$here/mode_drain.sql" "$db" >"$log" 2>&1 &
  pb=$!
  while kill -0 "$pb" 2>/dev/null; do
    sleep 0.2
    empty=$(q -d "$db" -c "SELECT NOT EXISTS (SELECT 1 FROM rungate.runs WHERE status = 'queued')")
    [ "$empty" = t ] && break
  done
  cpu_snapshot; o_drain=$(other_cpu "$c0" "$SNAP")
  kill -TERM "$pb" 2>/dev/null || true   # (an & job of a script ignores SIGINT)
  wait "$pb" 2>/dev/null || true
  if grep -q 'ERROR\|aborted' "$log"; then
    cat "$log" >&2
    rg_die "the drain failed (log: $log)"
  fi
  [ "$empty" = t ] || rg_die "the queue was not drained within ${maxs}s (BENCH_PILEUP_MAX_SECONDS; log: $log)"

  # 4. what the drain did, from the tables
  local r
  r=$(q -d "$db" -F ' ' -c "
    WITH d AS (
      SELECT max(at) AS t1 FROM rungate.audit_log
       WHERE at >= '$t0' AND event IN ('execution_blocked', 'started'))
    SELECT extract(epoch FROM d.t1 - '$t0')::numeric(12,3),
      (SELECT count(*) FROM rungate.runs WHERE id BETWEEN $first AND $last
          AND status = 'blocked' AND reason_code = 'tenant_not_operable'),
      (SELECT count(*) FROM rungate.runs WHERE id BETWEEN $first AND $last
          AND NOT (status = 'blocked' AND reason_code = 'tenant_not_operable')),
      (SELECT count(*) FROM rungate.runs WHERE id > $last
          AND status IN ('running', 'succeeded')),
      (SELECT count(*) FROM rungate.runs WHERE id > $last AND status = 'blocked'),
      (SELECT coalesce(extract(epoch FROM max(a.at) - '$t0')::numeric(12,3)::text, '-')
         FROM rungate.audit_log a
        WHERE a.at >= '$t0' AND a.event = 'execution_blocked' AND a.run_id BETWEEN $first AND $last),
      (SELECT coalesce(extract(epoch FROM min(a.at) - '$t0')::numeric(12,3)::text, '-') || ' ' ||
              coalesce(extract(epoch FROM max(a.at) - '$t0')::numeric(12,3)::text, '-')
         FROM rungate.audit_log a
        WHERE a.at >= '$t0' AND a.event = 'started' AND a.run_id > $last)
      FROM d")
  local secs blocked pile_other started hblocked pile_done hfirst hlast
  read -r secs blocked pile_other started hblocked pile_done hfirst hlast <<<"$r"
  local txs
  txs=$(q -d "$db" -F ' ' -c "
    SELECT count(*), max(n), (percentile_cont(0.5) WITHIN GROUP (ORDER BY n))::int,
           (max(dur) * 1000)::numeric(12,1)
      FROM (SELECT txid, count(*) FILTER (WHERE event = 'execution_blocked') AS n,
                   extract(epoch FROM max(at) - min(at)) AS dur
              FROM rungate.audit_log
             WHERE at >= '$t0' AND event IN ('execution_blocked', 'started')
             GROUP BY txid) t")
  local ntx maxn mediann maxdur
  read -r ntx maxn mediann maxdur <<<"$txs"
  local brate x
  brate=$(awk -v b="$blocked" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? b / s : 0) }')
  x=$(ratio "$brate" "$claim_rate")
  echo "  drain: ${secs}s (others used ${o_drain}% CPU); the pile was blocked by ${pile_done}s;"
  echo "  healthy runs started between ${hfirst}s and ${hlast}s"
  echo "  $blocked of $pile pile runs blocked (tenant_not_operable), $pile_other otherwise;" \
       "$started of $healthy healthy runs started, $hblocked blocked"
  echo "  claim transactions that blocked or started runs: $ntx; blocked per transaction:" \
       "median $mediann, max $maxn; longest (first to last transition) ${maxdur} ms"
  echo "  $brate runs blocked/s against $claim_rate claims/s"

  md "\`BENCH_MODE=pileup\`: tenant $tenant with $pile queued runs, then $healthy runs of other" \
     "tenants queued behind them (higher ids, same priority); the tenant is suspended and" \
     "$CLIENTS clients call \`rungate.claim('w', NULL, 10)\` until nothing is queued." \
     "Claim rate: $CLIENTS clients x $per \`rungate.claim(w)\` on a queue of healthy runs." \
     "Counted in the tables; the drain lasts from pgbench's start to its last transition." \
     "" \
     "| figure | value |" "|---|---|" \
     "| plain claim rate | $claim_rate claims/s (others' CPU ${o_rate}%) |" \
     "| drain | ${secs} s (others' CPU ${o_drain}%); pile blocked by ${pile_done} s |" \
     "| pile runs blocked \`tenant_not_operable\` | $blocked of $pile ($pile_other otherwise) |" \
     "| blocked per second | $brate |" \
     "| healthy runs started | $started of $healthy ($hblocked blocked), between ${hfirst} s and ${hlast} s |" \
     "| claim transactions | $ntx; blocked per transaction median $mediann, max $maxn; longest ${maxdur} ms |" \
     "" \
     "| what | measured | target | verdict |" "|---|---|---|---|"
  echo "== targets"
  target "pile blocked/s / plain claims/s" "$x" "$(verdict "$x" 0.8)" "≥ 0.8"
  target "healthy runs started within the drain" "$started/$healthy" \
    "$([ "$started" = "$healthy" ] && echo PASS || echo BELOW)" "all"
}

# ---------------------------------------------------------------------------
# sustained
# ---------------------------------------------------------------------------
# every_loop DB FILE STOPFILE EVERY APPNAME SQL: SQL every EVERY seconds from
# a session of its own (a psql each time, as pg_cron would), until STOPFILE
# exists; a line per call in FILE: "<seconds> ok <result> <ms>" or
# "<seconds> error <message>"
every_loop() {
  local db=$1 f=$2 stop=$3 every=$4 app=$5 sql=$6 t0=$SECONDS next out rc res ms
  next=$((SECONDS + every))
  while :; do
    while [ "$SECONDS" -lt "$next" ]; do
      [ -e "$stop" ] && return 0
      sleep 0.5
    done
    rc=0
    out=$(PGAPPNAME=$app psql -X -q -tA -d "$db" -c '\timing on' -c "$sql" 2>&1) || rc=$?
    res=$(sed -n 1p <<<"$out")
    ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out")
    if [ "$rc" = 0 ]; then
      echo "$((SECONDS - t0)) ok ${res:--} ${ms:-0}" >>"$f"
    else
      echo "$((SECONDS - t0)) error $(tr '\n' ' ' <<<"$out")" >>"$f"
    fi
    next=$((next + every))
  done
}

sustained_bench() {
  local db=rungate_sustained minutes=${BENCH_MINUTES:-10}
  local depth=${BENCH_SUSTAINED_DEPTH:-5000} erate=${BENCH_ENQUEUE_RATE:-10}
  local ebatch=${BENCH_ENQUEUE_BATCH:-1000} pevery=${BENCH_PURGE_SECONDS:-30}
  local age=${BENCH_PURGE_AGE:-1 minute}
  local secs=$((minutes * 60)) c0 o_run
  [ "$minutes" -ge 1 ] || rg_die "BENCH_MINUTES must be at least 1"
  rg_log "sustained: loading the model, $depth queued runs ($(elapsed))"
  newdb "$db"
  fill rungate "$depth" "$db"
  q -d "$db" -c "VACUUM ANALYZE"
  q -d "$db" -c "CHECKPOINT"
  q -d "$db" -c "SELECT bench.mode_sample(0)" >/dev/null

  local plog="$OUT/sustained_purge.log" stop="$OUT/.sustained_stop.$$"
  local elog="$OUT/sustained_enqueuer.log" wlog="$OUT/sustained_workers.log"
  rm -f "$plog" "$stop" "$OUT"/sustained_workers.[0-9]*
  rg_on_exit "touch '$stop'"
  rg_log "sustained: ${minutes} min of 1 enqueuer (pgbench -R $erate, up to $depth queued)," \
         "$CLIENTS workers (claim + complete), CALL rungate.purge_in_batches(now() - '$age') every ${pevery}s ($(elapsed))"
  local watch_pid purge_pid enq_pid wk_pid start m
  PGAPPNAME=rg_watch q -d "$db" -c "CALL bench.mode_watch($secs + 3, 0.1)" &
  watch_pid=$!
  every_loop "$db" "$plog" "$stop" "$pevery" rg_purge \
    "CALL rungate.purge_in_batches(now() - interval '$age')" &
  purge_pid=$!
  PGAPPNAME=rg_enqueuer pgbench -n -M prepared -c 1 -j 1 -R "$erate" -T "$((secs + 3))" \
    -D depth="$depth" -D max_batch="$ebatch" -f "$here/mode_enqueue.sql" "$db" >"$elog" 2>&1 &
  enq_pid=$!
  PGAPPNAME=rg_worker pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$((secs + 2))" \
    -l --aggregate-interval=1 --log-prefix="$OUT/sustained_workers" \
    -f "$here/mode_cycle.sql" "$db" >"$wlog" 2>&1 &
  wk_pid=$!
  start=$SECONDS
  cpu_snapshot; c0=$SNAP
  printf '  %3s %9s %7s %9s %9s %10s %10s %9s %10s %9s %6s\n' min 'runs/s' queued 'runs' \
    'heap MB' 'queue kB' 'idx MB' 'audit' 'audit MB' 'dead' 'av'
  for ((m = 1; m <= minutes; m++)); do
    while [ "$SECONDS" -lt $((start + 60 * m)) ]; do
      kill -0 "$wk_pid" 2>/dev/null || { cat "$wlog" >&2; rg_die "the workers stopped early (log: $wlog)"; }
      sleep 1
    done
    q -d "$db" -c "SELECT bench.mode_sample($m)" >/dev/null
    q -d "$db" -F ' ' -c "
      SELECT s.minute,
             ((s.enqueued - s.queued - s.running - s.other) - (p.enqueued - p.queued - p.running - p.other))
               / extract(epoch FROM s.at - p.at),
             s.queued, s.runs_rows, s.runs_heap / 1048576.0, s.queue_idx / 1024, s.runs_idx / 1048576.0,
             s.audit_rows, (s.audit_heap + s.audit_idx) / 1048576.0, s.runs_dead,
             s.runs_autovacuums || '/' || s.audit_autovacuums
        FROM bench.mode_samples s JOIN bench.mode_samples p ON p.minute = s.minute - 1
       WHERE s.minute = $m" |
      awk '{ printf "  %3d %9.0f %7d %9d %9.1f %10d %10.1f %9d %10.1f %9d %6s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }'
  done
  cpu_snapshot; o_run=$(other_cpu "$c0" "$SNAP")
  wait "$wk_pid" || { cat "$wlog" >&2; rg_die "the workers' pgbench failed (log: $wlog)"; }
  wait "$enq_pid" || { cat "$elog" >&2; rg_die "the enqueuer's pgbench failed (log: $elog)"; }
  touch "$stop"
  wait "$purge_pid" || true
  wait "$watch_pid" || rg_die "the lock watcher failed"
  rm -f "$stop"

  # the figures
  local mid r
  mid=$(( (minutes + 1) / 2 ))
  r=$(q -d "$db" -F ' ' -c "
    WITH t AS (
      SELECT s.minute,
             ((s.enqueued - s.queued - s.running - s.other) - (p.enqueued - p.queued - p.running - p.other))
               / extract(epoch FROM s.at - p.at) AS rate
        FROM bench.mode_samples s JOIN bench.mode_samples p ON p.minute = s.minute - 1)
    SELECT (SELECT rate FROM t WHERE minute = 1)::int, (SELECT rate FROM t WHERE minute = $minutes)::int,
           (SELECT min(rate) FROM t)::int, (SELECT max(other) FROM bench.mode_samples)")
  local r1 rn rmin other
  read -r r1 rn rmin other <<<"$r"
  # sizes: minute 1 (first), the middle minute, the last
  sizes() {   # COLUMN-EXPRESSION -> "first mid last"
    q -d "$db" -F ' ' -c "SELECT
        (SELECT $1 FROM bench.mode_samples WHERE minute = 1),
        (SELECT $1 FROM bench.mode_samples WHERE minute = $mid),
        (SELECT $1 FROM bench.mode_samples WHERE minute = $minutes)"
  }
  local qi rh ri ar au
  qi=$(sizes queue_idx) rh=$(sizes runs_heap) ri=$(sizes runs_idx)
  ar=$(sizes audit_rows) au=$(sizes "audit_heap + audit_idx")
  local idx_first idx_last
  idx_first=$(q -d "$db" -c "SELECT idx_sizes FROM bench.mode_samples WHERE minute = 1")
  idx_last=$(q -d "$db" -c "SELECT idx_sizes FROM bench.mode_samples WHERE minute = $minutes")

  # purge: runs, errors, durations
  local npurge perr pmax psum
  npurge=$(grep -c . "$plog" 2>/dev/null || true)
  perr=$(grep -c ' error ' "$plog" 2>/dev/null || true)
  pmax=$(awk '$2 == "ok" && $4 > m { m = $4 } END { printf "%.1f", m + 0 }' "$plog" 2>/dev/null || echo 0)
  psum=$(awk '$2 == "ok" { s += $3 } END { printf "%d", s + 0 }' "$plog" 2>/dev/null || echo 0)
  # lock waits of the workers (sampled every 0.1 s)
  local w
  w=$(q -d "$db" -F ' ' -c "SELECT (SELECT samples FROM bench.mode_watch_runs),
        count(*), coalesce(max(waiting), 0), count(*) FILTER (WHERE on_purge > 0),
        count(*) FILTER (WHERE on_enqueuer > 0),
        coalesce(string_agg(DISTINCT events, ','), '-') FROM bench.mode_waits")
  local wsamples wwait wmax wpurge wenq wevents
  read -r wsamples wwait wmax wpurge wenq wevents <<<"$w"
  local blk
  blk=$(q -d "$db" -c "SELECT string_agg(b || ' (' || n || ' samples)', '; ' ORDER BY n DESC)
      FROM (SELECT blockers AS b, count(*) AS n FROM bench.mode_waits
             WHERE blockers IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 3) t")
  # worker latency per minute, all threads
  local lat
  # (1 s intervals of each thread, folded into minutes from the first)
  lat=$(cat "$OUT"/sustained_workers.[0-9]* 2>/dev/null | sort -n | awk '
          NR == 1 { t0 = $1 } { m = int(($1 - t0) / 60) + 1; if ($6 > mx[m]) mx[m] = $6; if (m > last) last = m }
          END { for (m = 1; m <= last; m++) printf "%s%.0f", (m > 1 ? ", " : ""), mx[m] / 1000 }')
  local latmax
  latmax=$(cat "$OUT"/sustained_workers.[0-9]* 2>/dev/null | awk '$6 > m { m = $6 } END { printf "%.1f", m / 1000 }')
  local ex lag
  ex=$(awk '/actually processed:/ {n = $NF; sub(/\/.*/, "", n)} END { print n + 0 }' "$elog")
  lag=$(sed -n 's/^rate limit schedule lag: //p' "$elog" | head -1)

  x=$(ratio "$rn" "$r1")
  local gq grh gri gau
  gq=$(ratio "${qi##* }" "${qi%% *}")
  grh=$(ratio "${rh##* }" "${rh%% *}")
  gri=$(ratio "${ri##* }" "${ri%% *}")
  gau=$(ratio "${au##* }" "${au%% *}")
  mb() { awk '{ for (i = 1; i <= NF; i++) printf "%s%.1f", (i > 1 ? " / " : ""), $i / 1048576 }' <<<"$1"; }
  kb() { awk '{ for (i = 1; i <= NF; i++) printf "%s%d", (i > 1 ? " / " : ""), $i / 1024 }' <<<"$1"; }
  echo
  echo "  (others used ${o_run}% CPU over the run)"
  echo "  throughput: minute 1 $r1, minute $minutes $rn runs/s (lowest minute $rmin)"
  echo "  sizes at minutes 1 / $mid / $minutes:"
  echo "    runs_queue_idx       $(kb "$qi") kB"
  echo "    rungate.runs heap    $(mb "$rh") MB"
  echo "    rungate.runs indexes $(mb "$ri") MB"
  echo "    audit_log rows       ${ar// / \/ }"
  echo "    audit_log heap+idx   $(mb "$au") MB"
  echo "    indexes at minute 1:       $idx_first"
  echo "    indexes at minute $minutes:$( [ "$minutes" -lt 10 ] && echo ' ')      $idx_last"
  echo "  purge: $npurge calls, $perr errors, $psum runs removed, longest ${pmax} ms"
  echo "  workers waiting on a lock: in $wwait of $wsamples samples (0.1 s), at most $wmax at once;" \
       "blocked by purge in $wpurge, by the enqueuer in $wenq (wait events: $wevents)"
  echo "  what blocked them most often: ${blk:--}"
  echo "  worker transaction (claim + complete) max latency per minute: ${lat:-n/a} ms; overall ${latmax} ms"
  echo "  enqueuer: $ex transactions, schedule lag ${lag:-n/a}; runs neither queued, running nor succeeded: at most $other"

  md "\`BENCH_MODE=sustained BENCH_MINUTES=$minutes\`: 1 enqueuer (pgbench -R $erate, each transaction" \
     "tops the queue up to $depth queued runs through \`rungate.enqueue\`, at most $ebatch)," \
     "$CLIENTS workers (\`rungate.claim\` then \`rungate.complete\`, two transactions)," \
     "\`CALL rungate.purge_in_batches(now() - interval '$age')\` every ${pevery} s from another session." \
     "Throughput: runs completed per second (runs enqueued, from the sequence, less those queued," \
     "running or otherwise) between the samples taken each minute. Others' CPU over the run: ${o_run}%." \
     "" \
     "| minute | runs/s | queued | runs rows | runs heap MB | runs_queue_idx kB | runs indexes MB | audit rows | audit MB | runs dead tuples | autovacuums runs/audit |" \
     "|---|---|---|---|---|---|---|---|---|---|---|"
  q -d "$db" -F ' ' -c "
    SELECT s.minute,
           coalesce((((s.enqueued - s.queued - s.running - s.other) - (p.enqueued - p.queued - p.running - p.other))
             / extract(epoch FROM s.at - p.at))::int::text, '-'),
           s.queued, s.runs_rows, (s.runs_heap / 1048576.0)::numeric(10,1), s.queue_idx / 1024,
           (s.runs_idx / 1048576.0)::numeric(10,1), s.audit_rows,
           ((s.audit_heap + s.audit_idx) / 1048576.0)::numeric(10,1), s.runs_dead,
           s.runs_autovacuums || '/' || s.audit_autovacuums
      FROM bench.mode_samples s LEFT JOIN bench.mode_samples p ON p.minute = s.minute - 1
     ORDER BY s.minute" | awk '{ printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s |", $i; print "" }' >>"$MD"
  md "" \
     "| figure | value |" "|---|---|" \
     "| indexes of rungate.runs, minute 1 | $idx_first |" \
     "| indexes of rungate.runs, minute $minutes | $idx_last |" \
     "| purge | $npurge calls, $perr errors, $psum runs removed, longest ${pmax} ms |" \
     "| workers waiting on a lock (0.1 s samples) | $wwait of $wsamples, at most $wmax at once; blocked by purge $wpurge, by the enqueuer $wenq ($wevents) |" \
     "| what blocked them most often | ${blk:--} |" \
     "| worker max latency per minute | ${lat:-n/a} ms (overall ${latmax} ms) |" \
     "| enqueuer | $ex transactions, schedule lag ${lag:-n/a} |" \
     "" \
     "| what | measured | target | verdict |" "|---|---|---|---|"
  echo "== targets"
  target "throughput minute $minutes / minute 1" "$x" "$(verdict "$x" 0.8)" "≥ 0.8"
  target "runs_queue_idx minute $minutes / minute 1" "$gq" "$(atmost "$gq" 3)" "≤ 3"
  target "rungate.runs heap minute $minutes / minute 1" "$grh" "$(atmost "$grh" 3)" "≤ 3"
  target "rungate.runs indexes minute $minutes / minute 1" "$gri" "$(atmost "$gri" 3)" "≤ 3"
  target "audit_log heap+indexes minute $minutes / minute 1" "$gau" "$(atmost "$gau" 3)" "≤ 3"
  target "purge calls that failed" "$perr of $npurge" \
    "$([ "$perr" = 0 ] && [ "$npurge" -gt 0 ] && echo PASS || echo BELOW)" "0"
  target "lock-wait samples of workers blocked by purge" "$wpurge" \
    "$([ "$wpurge" = 0 ] && echo PASS || echo BELOW)" "0"
  echo "  longest purge: ${pmax} ms (reported, no target)"
}

# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------
memory_bench() {
  local db=rungate_memory n=${BENCH_MEMORY_CLAIMS:-1000000} batch=${BENCH_MEMORY_BATCH:-100}
  local vevery=${BENCH_MEMORY_VACUUM_SECONDS:-20}
  local warm every t1 dur c0 o_run
  [ "$n" -ge 2 ] || rg_die "BENCH_MEMORY_CLAIMS must be at least 2"
  warm=$(( n >= 2000 ? 1000 : n / 2 ))
  every=$(( n >= 10 ? n / 10 : 1 ))
  rg_log "memory: loading the model, $((n + 1000)) queued runs ($(elapsed))"
  newdb "$db"
  fill rungate $((n + 1000)) "$db"
  q -d "$db" -c "VACUUM ANALYZE"
  q -d "$db" -c "CHECKPOINT"
  rg_log "memory: $n claims (each completed) in one backend, a COMMIT every $batch;" \
         "VACUUM rungate.runs every ${vevery}s from another session ($(elapsed))"
  # A backend inside one CALL reports no table statistics until the CALL
  # ends, so autovacuum never hears of the dead runs it leaves: without a
  # VACUUM, every claim walks all the dead entries at the head of
  # runs_queue_idx and the loop slows down quadratically. The VACUUMs stand
  # in for the autovacuum a worker that goes idle between claims would get.
  local vlog="$OUT/memory_vacuum.log" stop="$OUT/.memory_stop.$$" vac_pid
  rm -f "$vlog" "$stop"
  rg_on_exit "touch '$stop'"
  every_loop "$db" "$vlog" "$stop" "$vevery" rg_vacuum "VACUUM rungate.runs" &
  vac_pid=$!
  t1=$SECONDS
  cpu_snapshot; c0=$SNAP
  PGAPPNAME=rg_memory q -d "$db" -c "CALL bench.mode_memory($n, $batch, $warm, $every)" \
    || rg_die "the claim loop failed"
  cpu_snapshot; o_run=$(other_cpu "$c0" "$SNAP")
  dur=$((SECONDS - t1))
  touch "$stop"
  wait "$vac_pid" || true
  rm -f "$stop"
  local nvac vmax
  nvac=$(grep -c ' ok ' "$vlog" 2>/dev/null || true)
  vmax=$(awk '$2 == "ok" && $4 > m { m = $4 } END { printf "%.0f", m + 0 }' "$vlog" 2>/dev/null || echo 0)
  ! grep -q ' error ' "$vlog" 2>/dev/null || { cat "$vlog" >&2; rg_die "a VACUUM failed (log: $vlog)"; }

  echo "  $n claims + completes in ${dur}s ($(awk -v n="$n" -v d="$dur" 'BEGIN { printf "%d", (d > 0 ? n / d : 0) }')/s; others used ${o_run}% CPU);" \
       "$nvac VACUUMs of rungate.runs meanwhile, the longest ${vmax} ms"
  printf '  %-9s %9s %9s %14s %12s %12s %12s\n' stage claims seconds 'contexts kB' 'VmRSS kB' 'RssAnon kB' 'RssShmem kB'
  q -d "$db" -F ' ' -c "SELECT stage, claims, extract(epoch FROM at - min(at) OVER ())::numeric(10,1),
        contexts / 1024, vmrss_kb, rss_anon_kb, rss_shmem_kb FROM bench.mode_mem ORDER BY at" |
    awk '{ printf "  %-9s %9d %9.1f %14d %12d %12d %12d\n", $1, $2, $3, $4, $5, $6, $7 }'
  local r
  r=$(q -d "$db" -F ' ' -c "
    SELECT e.contexts - w.contexts, e.rss_anon_kb - w.rss_anon_kb, e.vmrss_kb - w.vmrss_kb,
           e.contexts - c.contexts, e.rss_anon_kb - c.rss_anon_kb, e.vmrss_kb - c.vmrss_kb,
           e.rss_shmem_kb - w.rss_shmem_kb
      FROM bench.mode_mem c, bench.mode_mem w, bench.mode_mem e
     WHERE c.stage = 'cold' AND w.stage = 'warm' AND e.stage = 'end'")
  local gctx ganon grss cctx canon crss gshm
  read -r gctx ganon grss cctx canon crss gshm <<<"$r"
  local top
  top=$(q -d "$db" -c "
    SELECT string_agg(name || ' ' || (d / 1024) || ' kB', ', ' ORDER BY d DESC)
      FROM (SELECT coalesce(e.name, w.name) AS name,
                   coalesce(e.total_bytes, 0) - coalesce(w.total_bytes, 0) AS d
              FROM (SELECT * FROM bench.mode_mem_ctx WHERE stage = 'end') e
              FULL JOIN (SELECT * FROM bench.mode_mem_ctx WHERE stage = 'warm') w USING (name)
             ORDER BY 2 DESC LIMIT 5) t WHERE d <> 0")
  local gctx_mb ganon_mb
  gctx_mb=$(awk -v b="$gctx" 'BEGIN { printf "%.2f", b / 1048576 }')
  ganon_mb=$(awk -v k="$ganon" 'BEGIN { printf "%.2f", k / 1024 }')
  echo "  growth after warm-up ($warm claims) to the end: memory contexts $((gctx / 1024)) kB," \
       "RssAnon $ganon kB, VmRSS $grss kB (of which shared memory touched: $gshm kB)"
  echo "  growth from the first claim: memory contexts $((cctx / 1024)) kB, RssAnon $canon kB, VmRSS $crss kB"
  echo "  contexts that grew most after warm-up: ${top:-none}"
  md "\`BENCH_MODE=memory BENCH_MEMORY_CLAIMS=$n\`: one backend runs a procedure that calls" \
     "\`rungate.claim('m')\` then \`rungate.complete\` $n times over a queue of $((n + 1000)) runs," \
     "with a COMMIT every $batch; the backend reads its own memory (\`pg_backend_memory_contexts\`," \
     "\`/proc/self/status\`) when cold, after $warm claims (warm), every $every claims and at the end." \
     "\`VACUUM rungate.runs\` every ${vevery} s from another session ($nvac, the longest ${vmax} ms): a backend" \
     "inside one CALL reports no statistics, so autovacuum would not run." \
     "Took ${dur} s (others' CPU ${o_run}%). VmRSS counts the shared buffers the backend has touched" \
     "(RssShmem); RssAnon is its private memory." \
     "" \
     "| stage | claims | s | contexts kB | VmRSS kB | RssAnon kB | RssShmem kB |" "|---|---|---|---|---|---|---|"
  q -d "$db" -F ' ' -c "SELECT stage, claims, extract(epoch FROM at - min(at) OVER ())::numeric(10,1),
        contexts / 1024, vmrss_kb, rss_anon_kb, rss_shmem_kb FROM bench.mode_mem ORDER BY at" |
    awk '{ printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s |", $i; print "" }' >>"$MD"
  md "" "Contexts that grew most after warm-up: ${top:-none}." "" \
     "| what | measured | target | verdict |" "|---|---|---|---|"
  echo "== targets"
  target "memory contexts growth, warm to end (MB)" "$gctx_mb" "$(atmost "$gctx_mb" 9.999)" "< 10"
  target "RssAnon growth, warm to end (MB)" "$ganon_mb" "$(atmost "$ganon_mb" 9.999)" "< 10"
}

echo "== environment"
environment
case $MODE in
  pileup) pileup_bench ;;
  sustained) sustained_bench ;;
  memory) memory_bench ;;
esac
write_md
