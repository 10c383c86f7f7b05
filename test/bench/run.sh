#!/usr/bin/env bash
# test/bench/run.sh (make bench): rungate side by side with a bare SKIP LOCKED
# queue on the same cluster, in the same run, alternating, so the machine's
# noise cancels. Not part of make test; it asserts nothing, it reports (and
# exits non-zero only when the benchmark itself breaks).
#
#   claim   rungate.claim(worker)            vs  the bare one-statement claim
#   cycle   claim + rungate.complete         vs  bare claim + bare completion
#   batch   rungate.claim(worker, NULL, 10)  vs  the bare single claim (runs/s)
#   and two references without rungate, against the bare single claim:
#   audit    the bare claim that also writes an audit row (bare_claim_audit.sql)
#   ceiling  the bare batch of 10 (bare_batch.sql)
#
# each with synchronous_commit off (the CPU cost) and on (ALTER SYSTEM and a
# reload between the two sets). Rates are runs started per second, counted in
# the tables (started_at set) over pgbench's measured time; a round whose queue
# ran dry is VOID. Environment:
#   BENCH_ROUNDS (5), BENCH_SECONDS (5), BENCH_CLIENTS (4), BENCH_THREADS (2)
#   BENCH_SCALE=1   the flat-cost check instead: claim rate with 1,000,000
#                   queued runs, 10,000 tenants, 100,000 actors, 1,000,000
#                   memberships, against the default model with 10,000 queued
#                   runs; BENCH_SCALE_CLAIMS (2000) claims per client a round,
#                   BENCH_ROUNDS defaults to 9 there
#   BENCH_KINDS, BENCH_SYNC  a subset, for development (default: all kinds,
#                   "off on"); a documented run uses the defaults
#   RG_KEEP=1       leave the throwaway cluster running afterwards
#   BENCH_MODE      another mode instead: pileup, sustained, memory (modes.sh);
#                   noisy, heldback, heartbeat, blocklimit (control.sh);
#                   monitoring (monitoring.sh); scheduler (scheduler.sh);
#                   enqueue (enqueue.sh)
# Output: results/bench/bench.md (or scale.md), pgbench logs next to it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# BENCH_MODE=<mode> make bench: the other modes (README.md there)
case ${BENCH_MODE:-} in
  '') ;;
  pileup | sustained | memory) exec bash "$here/modes.sh" ;;
  noisy | heldback | heartbeat | blocklimit) exec bash "$here/control.sh" ;;
  monitoring) exec bash "$here/monitoring.sh" ;;
  scheduler) exec bash "$here/scheduler.sh" ;;
  enqueue) exec bash "$here/enqueue.sh" ;;
  *) echo "error: unknown BENCH_MODE '$BENCH_MODE' (pileup, sustained, memory, noisy, heldback, heartbeat, blocklimit, monitoring, scheduler, enqueue)" >&2
     exit 1 ;;
esac
source "$here/../lib.sh"
SCALE=${BENCH_SCALE:-0}
# scale rounds are short (a fixed number of claims), so there are more of them
ROUNDS=${BENCH_ROUNDS:-$([ "$SCALE" = 1 ] && echo 9 || echo 5)} SECS=${BENCH_SECONDS:-5}
CLIENTS=${BENCH_CLIENTS:-4} THREADS=${BENCH_THREADS:-2}
source "$here/common.sh"
bench_prepare

mkdb() { psql -X -q -d postgres -c "CREATE DATABASE $1"; }

environment() {
  echo "== environment"
  q -d postgres -c "SELECT version()"
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GB"
  if [ "$SCALE" = 1 ]; then
    echo "pgbench: -M prepared -c $CLIENTS -j $THREADS; $ROUNDS rounds x ${BENCH_SCALE_CLAIMS:-2000} claims per client"
  else
    echo "pgbench: -M prepared -c $CLIENTS -j $THREADS; $ROUNDS rounds x ${SECS}s per side and measure"
  fi
  q -d postgres -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
      FROM unnest('{shared_buffers,effective_cache_size,work_mem,wal_buffers,max_wal_size,
                    checkpoint_timeout,fsync,full_page_writes,wal_level,autovacuum}'::text[]) name"
}

set_sync() {   # ALTER SYSTEM + reload; new pgbench sessions see it
  q -d postgres -c "ALTER SYSTEM SET synchronous_commit = $1"
  q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.3
  local now
  now=$(q -d postgres -c "SHOW synchronous_commit")
  [ "$now" = "$1" ] || rg_die "synchronous_commit is $now after reload, not $1"
}

# pgbench DB SCRIPT LOG [pgbench args...]: PB_N transactions processed in
# PB_SECS seconds (the measured time, without connecting: processed / tps);
# PB_DRY=1 when a script's \gset found the queue empty (pgbench aborts then)
run_pgbench() {
  local db=$1 script=$2 log=$3; shift 3
  PB_DRY=0
  if ! pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" "$@" \
       -f "$here/$script" "$db" >"$log" 2>&1; then
    if grep -q 'expected one row, got 0' "$log"; then
      PB_DRY=1
    else
      cat "$log" >&2
      rg_die "pgbench $script failed (log: $log)"
    fi
  fi
  read -r PB_N PB_SECS < <(awk '/actually processed:/ {n = $NF; sub(/\/.*/, "", n)}
       /^tps = / {t = $3}
       END { if (t > 0) printf "%d %.4f\n", n, n / t; else print "0 0" }' "$log")
}

median() {    # median [printf format] < numbers
  sort -g | awk -v f="${1:-%.3f}" '{a[NR] = $1}
    END { if (NR == 0) print "n/a"
          else printf f "\n", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}

# ---------------------------------------------------------------------------
# the default run: rungate against the bare queue
# ---------------------------------------------------------------------------
DB=rungate_bench
declare -A TABLE=([rungate]=rungate.runs [bare]=bench.bare)
declare -A MAX_RATE=()   # [queue/script] -> highest runs/s seen so far

started() { q -d "$DB" -c "SELECT count(*) FROM ${TABLE[$1]} WHERE started_at IS NOT NULL"; }
queued() { q -d "$DB" -c "SELECT count(*) FROM ${TABLE[$1]} WHERE status = 'queued'"; }


# Before each measurement, both queues are put in the same state: enough due
# runs for twice the highest rate this script has reached (before its first
# round 15,000/s, 40,000/s for a batch), vacuumed, and a checkpoint so no
# round pays for the previous round's dirty pages.
first_rate() { case $1 in *batch*) echo 40000 ;; *) echo 15000 ;; esac; }
prepare_queue() {
  local queue=$1 script=$2 want have
  want=$(( ${MAX_RATE[$queue/$script]:-$(first_rate "$script")} * SECS * 2 + 10000 ))
  have=$(queued "$queue")
  [ "$have" -ge "$want" ] || fill "$queue" $((want - have))
  q -d "$DB" -c "VACUUM ANALYZE ${TABLE[$queue]}"
  q -d "$DB" -c "CHECKPOINT"
}


# measure QUEUE SCRIPT: RATE = runs started per second (integer), or VOID;
# OTHER = others' CPU during the round, percent (globals: a $(...) subshell
# would lose MAX_RATE)
measure() {
  local queue=$1 script=$2 before after left rate c0
  prepare_queue "$queue" "$script"
  before=$(started "$queue")
  cpu_snapshot; c0=$SNAP
  run_pgbench "$DB" "$script" "$OUT/${script%.sql}.log" -T "$SECS"
  cpu_snapshot; OTHER=$(other_cpu "$c0" "$SNAP")
  after=$(started "$queue")
  left=$(queued "$queue")
  rate=$(awk -v d="$((after - before))" -v s="$PB_SECS" 'BEGIN { printf "%d", (s > 0 ? d / s : 0) }')
  [ "$rate" -le "${MAX_RATE[$queue/$script]:-0}" ] || MAX_RATE[$queue/$script]=$rate
  if [ "$PB_DRY" = 1 ] || [ "$left" -eq 0 ] || [ "$PB_N" -eq 0 ]; then
    RATE=VOID
    # a round that ran dry may have run faster than anything seen: next time
    # fill for twice that
    MAX_RATE[$queue/$script]=$(( ${MAX_RATE[$queue/$script]:-$(first_rate "$script")} * 2 ))
  else
    RATE=$rate
  fi
}

main_bench() {
  rg_log "loading the authority model and the bare queue ($(elapsed))"
  mkdb "$DB"
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$here/setup.sql" >/dev/null
  q -d "$DB" -c "SELECT 'tenants ' || (SELECT count(*) FROM rungate.tenants) ||
      ', actors ' || (SELECT count(*) FROM rungate.actors) ||
      ', tenant memberships ' || (SELECT count(*) FROM rungate.tenant_members) ||
      ', workspace memberships ' || (SELECT count(*) FROM rungate.workspace_members) ||
      ', prerequisites ' || (SELECT count(*) FROM rungate.tenant_prerequisites) ||
      ', operation types ' || (SELECT count(*) FROM rungate.operation_types)"

  # one batch claim first: a model that denies or a claim that starts nothing
  # must fail loudly here, not show up as a low rate
  q -d "$DB" -c "SELECT bench.fill_rungate(100)" >/dev/null
  local got
  got=$(q -d "$DB" -c "SELECT count(*) FROM rungate.claim('bench', NULL, 10)")
  [ "$got" = 10 ] || rg_die "rungate.claim(..., 10) started $got runs of 100 queued, not 10"

  local md="$OUT/bench.md" sync kind rq rs bs target i r b x
  {
    echo "| measure | synchronous_commit | rungate runs/s | bare runs/s | ratio (median) | target | others' CPU (max) |"
    echo "|---|---|---|---|---|---|---|"
  } >"$md.rows"

  for sync in ${BENCH_SYNC:-off on}; do
    set_sync "$sync"
    for kind in ${BENCH_KINDS:-claim audit cycle batch ceiling}; do
      # two references without rungate, against the bare single claim:
      # audit, the bare claim that also writes an audit row like rungate's
      # (what that row alone costs: the rest of claim's gap is the decision
      # and the function call); ceiling, the bare batch of 10 (how far
      # batching alone can go on this table: every started run still pays
      # its own update of the row and its indexes)
      rq=rungate ref=
      case $kind in
        claim) rs=rg_claim.sql bs=bare_claim.sql target=0.85 ;;
        audit) rq=bare rs=bare_claim_audit.sql bs=bare_claim.sql
               ref="reference: bare claim + an audit row (no rungate)" ;;
        cycle) rs=rg_cycle.sql bs=bare_cycle.sql target=0.75 ;;
        batch) rs=rg_batch.sql bs=bare_claim.sql target=3 ;;
        ceiling) rq=bare rs=bare_batch.sql bs=bare_claim.sql
                 ref="batch ceiling: bare batch of 10 (no rungate)" ;;
      esac
      echo "== $kind, synchronous_commit=$sync ($(elapsed))"
      local ratios=() rgs=() bares=() others=() o
      for ((i = 1; i <= ROUNDS; i++)); do
        # alternate which side goes first, so drift over time cancels too
        if ((i % 2)); then measure "$rq" "$rs"; r=$RATE o=$OTHER; measure bare "$bs"; b=$RATE
        else measure bare "$bs"; b=$RATE o=$OTHER; measure "$rq" "$rs"; r=$RATE; fi
        o=$(( OTHER > o ? OTHER : o ))
        if [ "$r" = VOID ] || [ "$b" = VOID ]; then
          echo "  round $i: rungate $r, bare $b: VOID (a queue ran dry)"
          continue
        fi
        x=$(ratio "$r" "$b")
        printf '  round %d: rungate %6d runs/s   bare %6d runs/s   ratio %s   (others used %d%% CPU)\n' \
          "$i" "$r" "$b" "$x" "$o"
        ratios+=("$x") rgs+=("$r") bares+=("$b") others+=("$o")
      done
      local m mr mb v mo
      m=$(printf '%s\n' "${ratios[@]:-}" | grep . | median || true)
      mo=$(printf '%s\n' "${others[@]:-}" | grep . | sort -g | tail -1 || true)
      mr=$(printf '%s\n' "${rgs[@]:-}" | grep . | median %.0f || true)
      mb=$(printf '%s\n' "${bares[@]:-}" | grep . | median %.0f || true)
      if [ -n "$ref" ]; then
        echo "  median: ${ref%% (*} $mr, bare claim $mb runs/s; ratio $m (reference)"
        echo "| $ref | $sync | ($mr) | $mb | $m | reference | ${mo:-n/a}% |" >>"$md.rows"
        continue
      fi
      v=$(verdict "$m" "$target")
      echo "  median: rungate $mr, bare $mb runs/s; ratio $m (target >= $target): $v"
      echo "| $kind | $sync | $mr | $mb | $m | ≥ $target $v | ${mo:-n/a}% |" >>"$md.rows"
    done
  done

  {
    echo "# rungate vs a bare SKIP LOCKED queue"
    echo
    echo "\`make bench\` ($(date -u +%Y-%m-%d)): $CLIENTS clients, $THREADS threads," \
         "$ROUNDS alternating rounds of ${SECS} s per cell, medians; runs started per second."
    echo "claim: \`rungate.claim(w)\` vs one bare \`UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)\`;"
    echo "cycle: claim then \`rungate.complete\` vs bare claim then bare completion;"
    echo "batch: \`rungate.claim(w, NULL, 10)\` vs the bare single claim;"
    echo "reference: the bare claim that also inserts an audit row like rungate's \`started\` one (bench.bare_audit, the audit log's shape)"
    echo "vs the bare claim, no rungate involved: what the audit row alone costs;"
    echo "batch ceiling: the bare queue's own batch of 10 (\`UPDATE ... WHERE id IN (SELECT ... LIMIT 10 FOR UPDATE SKIP LOCKED)\`)"
    echo "vs the bare single claim, no rungate involved: what batching alone gains on this table."
    echo "Targets from issue 5; informational (make bench does not fail on them)."
    echo "Others' CPU: the most that processes outside the benchmark used in any round of"
    echo "the cell, in % of all cores; above a few % the cell was measured on a shared machine."
    echo
    cat "$md.rows"
    echo
    echo '```'
    environment
    echo '```'
  } >"$md"
  rm -f "$md.rows"
  echo
  echo "== summary ($md, $(elapsed))"
  cat "$md"
}

# ---------------------------------------------------------------------------
# BENCH_SCALE=1: flat cost, claim rate with a big model and a deep queue
# ---------------------------------------------------------------------------
scale_bench() {
  local small=rungate_small big=rungate_big claims=${BENCH_SCALE_CLAIMS:-2000}
  local per=$claims total=$((claims * CLIENTS))
  set_sync off
  rg_log "small: the default model, 10,000 queued runs ($(elapsed))"
  mkdb "$small"
  psql -X -q -v ON_ERROR_STOP=1 -d "$small" -f "$here/setup.sql" >/dev/null
  fill rungate 10000 "$small"
  rg_log "big: 10,000 tenants, 100,000 actors, 1,000,000 memberships, 1,000,000 queued runs ($(elapsed))"
  mkdb "$big"
  psql -X -q -v ON_ERROR_STOP=1 -v tenants=10000 -v actors=100000 -v memberships=10 \
    -d "$big" -f "$here/setup.sql" >/dev/null
  fill rungate 1000000 "$big"
  q -d "$big" -c "SELECT 'tenants ' || (SELECT count(*) FROM rungate.tenants) ||
      ', actors ' || (SELECT count(*) FROM rungate.actors) ||
      ', tenant memberships ' || (SELECT count(*) FROM rungate.tenant_members) ||
      ', queued runs ' || (SELECT count(*) FROM rungate.runs WHERE status = 'queued')"
  rg_log "loaded ($(elapsed))"

  # each round: both queues back to their depth, vacuumed, then the same
  # number of claims ($total) through rungate.claim; the rate is pgbench's
  local md="$OUT/scale.md" i rs rb x ratios=() smalls=() bigs=()
  scale_round() {   # DB DEPTH: SRATE = claims/s
    local db=$1 depth=$2 have
    have=$(q -d "$db" -c "SELECT count(*) FROM rungate.runs WHERE status = 'queued'")
    [ "$have" -ge "$depth" ] || fill rungate $((depth - have)) "$db"
    q -d "$db" -c "VACUUM ANALYZE rungate.runs"
    q -d "$db" -c "CHECKPOINT"
    run_pgbench "$db" rg_claim.sql "$OUT/scale_$db.log" -t "$per"
    [ "$PB_DRY" = 0 ] && [ "$PB_N" -eq "$total" ] || rg_die "$db: $PB_N claims of $total"
    SRATE=$(awk -v n="$PB_N" -v s="$PB_SECS" 'BEGIN { printf "%d", n / s }')
  }
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then scale_round "$small" 10000; rs=$SRATE; scale_round "$big" 1000000; rb=$SRATE
    else scale_round "$big" 1000000; rb=$SRATE; scale_round "$small" 10000; rs=$SRATE; fi
    x=$(ratio "$rb" "$rs")
    printf '  round %d: 10,000 queued %6d claims/s   1,000,000 queued %6d claims/s   ratio %s\n' \
      "$i" "$rs" "$rb" "$x"
    ratios+=("$x") smalls+=("$rs") bigs+=("$rb")
  done
  local m ms mb v
  m=$(printf '%s\n' "${ratios[@]}" | median)
  ms=$(printf '%s\n' "${smalls[@]}" | median %.0f)
  mb=$(printf '%s\n' "${bigs[@]}" | median %.0f)
  v=$(verdict "$m" 0.8)
  echo "  median: $ms claims/s at 10,000 queued, $mb at 1,000,000; ratio $m (target >= 0.8): $v"
  {
    echo "# rungate flat cost (BENCH_SCALE=1)"
    echo
    echo "\`BENCH_SCALE=1 make bench\` ($(date -u +%Y-%m-%d)): $total claims per round" \
         "(\`rungate.claim(w)\`, $CLIENTS clients), $ROUNDS alternating rounds, medians," \
         "synchronous_commit=off."
    echo
    echo "| state | claims/s |"
    echo "|---|---|"
    echo "| 200 tenants, 2,000 actors, 10,000 queued runs | $ms |"
    echo "| 10,000 tenants, 100,000 actors, 1,000,000 memberships, 1,000,000 queued runs | $mb |"
    echo "| ratio (median of rounds) | $m (target ≥ 0.8 $v) |"
    echo
    echo '```'
    environment
    echo '```'
  } >"$md"
  echo
  echo "== summary ($md, $(elapsed))"
  cat "$md"
}

environment
if [ "$SCALE" = 1 ]; then scale_bench; else main_bench; fi
