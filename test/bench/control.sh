#!/usr/bin/env bash
# test/bench/control.sh: the benchmark modes of flow control (issue 16), the
# heartbeat that decides again (issue 17) and bounded claims (issue 23); run
# by make bench when BENCH_MODE names one of them (run.sh hands over):
#
#   BENCH_MODE=noisy       workspace A with 100,000 due runs queued before one
#                          run of workspace B: B's run is started by one of the
#                          next two single-run claims; claim throughput with A's
#                          backlog and a trickle of B's runs >= 0.8 x with A's
#                          backlog alone
#   BENCH_MODE=heldback    100,000 queued runs held back (a hold, a full
#                          concurrency limit, a full rate limit) ahead of the
#                          eligible ones in claim order: claim throughput
#                          >= 0.8 x the same queue without them, per variant
#   BENCH_MODE=heartbeat   rungate.heartbeat throughput of this build >= 0.9 x
#                          rungate 1.5's (built from 54bb02b), side by side: two
#                          clusters, each on its own PostgreSQL install
#   BENCH_MODE=blocklimit  a pool of workers drains a 100,000-run backlog of a
#                          suspended workspace: per-call claim latency, median
#                          and max (max within 2 x the median), and no call
#                          blocks more than rungate.claim_block_limit
#
# Each mode builds, installs and starts a throwaway cluster with run.sh's
# postgresql.conf (test/bench/common.sh), loads setup.sql and
# control_setup.sql into a database of its own, prints PASS or BELOW per
# target, and writes results/bench/<mode>.md. It reports and never asserts:
# the exit status is non-zero only when the benchmark itself breaks (a
# pgbench error, a queue in a state other than the one described, a held-back
# run that started).
# Environment (defaults in parentheses):
#   BENCH_CLIENTS (4), BENCH_THREADS (2)   each measured pgbench
#   BENCH_ROUNDS (5), BENCH_SECONDS (3)    alternating rounds, seconds per measure
#   BENCH_SYNC                             synchronous_commit: off (the CPU cost)
#                                          for noisy, heldback, heartbeat; on for
#                                          blocklimit (the latency a worker sees)
#   noisy:      BENCH_NOISY_BACKLOG (100000) A's due runs, kept at that depth
#               before each measure; BENCH_NOISY_TRICKLE (20) B's runs enqueued
#               per second (pgbench -R) while the workers claim
#   heldback:   BENCH_HELD_RUNS (100000) held-back runs, BENCH_HELD_PRIORITY
#               (1; the eligible runs are at 0), BENCH_HELD_DEPTH (30000)
#               eligible runs queued before each measure (at least),
#               BENCH_HELD_VARIANTS (all: hold_workspace hold_operation
#               concurrency_workspace concurrency_operation rate)
#   heartbeat:  BENCH_HB_BASELINE (54bb02b) the commit of the baseline build,
#               BENCH_HB_RUNS (10000) running runs heartbeated at random
#   blocklimit: BENCH_BLOCK_RUNS (100000), BENCH_BLOCK_MAX_SECONDS (600)
#               before the drain is given up
#   RG_KEEP=1   leave the throwaway cluster(s) running afterwards
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
MODE=${BENCH_MODE:-}
case $MODE in
  noisy | heldback | heartbeat | blocklimit) ;;
  *) rg_die "BENCH_MODE must be noisy, heldback, heartbeat or blocklimit (got '${MODE}')" ;;
esac
CLIENTS=${BENCH_CLIENTS:-4} THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-5} SECS=${BENCH_SECONDS:-3}
if [ "$MODE" = blocklimit ]; then SYNC=${BENCH_SYNC:-on}; else SYNC=${BENCH_SYNC:-off}; fi
case $SYNC in on | off) ;; *) rg_die "BENCH_SYNC must be on or off (got '$SYNC')" ;; esac
source "$here/common.sh"
bench_prepare

# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------
median() {    # median [printf format] < numbers
  sort -g | awk -v f="${1:-%.3f}" '{a[NR] = $1}
    END { if (NR == 0) print "n/a"
          else printf f "\n", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
# medof FORMAT VALUE...: the median of the values (each argument may hold several)
medof() { local f=$1; shift; printf '%s\n' "$@" | tr ' ' '\n' | awk 'NF' | median "$f"; }
atmost() { awk -v m="$1" -v t="$2" 'BEGIN { print (m != "n/a" && m + 0 <= t + 0) ? "PASS" : "BELOW" }'; }

# newdb DB: a fresh database with the authority model and the mode helpers
# (on the cluster PGHOST/PGPORT name)
newdb() {
  psql -X -q -d postgres -c "CREATE DATABASE $1"
  psql -X -q -v ON_ERROR_STOP=1 -d "$1" -f "$here/setup.sql" >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 -d "$1" -f "$here/control_setup.sql" >/dev/null
}

set_sync() {   # ALTER SYSTEM + reload (on the cluster PGHOST/PGPORT name)
  q -d postgres -c "ALTER SYSTEM SET synchronous_commit = $1"
  q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.3
  local now
  now=$(q -d postgres -c "SHOW synchronous_commit")
  [ "$now" = "$1" ] || rg_die "synchronous_commit is $now after reload, not $1"
}

# pb LOG SCRIPT DB [pgbench args...]: PB_N transactions processed in PB_SECS
# seconds (pgbench's measured time, without connecting: processed / tps).
# Any failure of pgbench ends the benchmark.
pb() {
  local log=$1 script=$2 db=$3; shift 3
  pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" "$@" -f "$here/$script" "$db" >"$log" 2>&1 \
    || { cat "$log" >&2; rg_die "pgbench $script failed (log: $log)"; }
  read -r PB_N PB_SECS < <(awk '/actually processed:/ {n = $NF; sub(/\/.*/, "", n)}
       /^tps = / {t = $3}
       END { if (t > 0) printf "%d %.4f\n", n, n / t; else print "0 0" }' "$log")
  [ "$PB_N" -gt 0 ] || { cat "$log" >&2; rg_die "pgbench $script processed nothing (log: $log)"; }
}
per_sec() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }'; }

started() { q -d "$1" -c "SELECT count(*) FROM rungate.runs WHERE started_at IS NOT NULL"; }
queued_in() { q -d "$1" -c "SELECT count(*) FROM rungate.runs WHERE status = 'queued' AND workspace_id = $2"; }

# prepare_measure DB: vacuumed, checkpointed (no round pays for the last one's dirt)
prepare_measure() {
  q -d "$1" -c "VACUUM ANALYZE rungate.runs"
  q -d "$1" -c "CHECKPOINT"
}

environment() {
  q -d postgres -c "SELECT version()"
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GB"
  q -d postgres -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
      FROM unnest('{shared_buffers,work_mem,max_wal_size,checkpoint_timeout,fsync,
                    synchronous_commit,autovacuum,shared_preload_libraries}'::text[]) name"
  echo "rungate $(q -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'rungate'" 2>/dev/null || true)," \
       "commit $(git -C "$RG_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(
         git -C "$RG_ROOT" status --porcelain -- src '*.sql' 2>/dev/null | grep -v '^?? test/' |
           grep -q . && echo ' (src or sql with uncommitted changes)')"
  echo "pgbench: -M prepared -c $CLIENTS -j $THREADS; rounds: $ROUNDS x ${SECS} s per measure (where rounds apply)"
  [ -z "${BASE_VERSION:-}" ] || echo "baseline: $BASE_VERSION"
}

# results/bench/<mode>.md: lines collected in MD, written at the end
MD="$OUT/.control_$MODE.$$.md"
: >"$MD"
md() { printf '%s\n' "$@" >>"$MD"; }
rg_on_exit "rm -f '$MD'"
write_md() {
  local f="$OUT/$MODE.md"
  {
    echo "# make bench, BENCH_MODE=$MODE (test/bench/control.sh)"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(elapsed), synchronous_commit=$SYNC."
    echo
    cat "$MD"
    echo
    echo '```'
    environment
    echo '```'
  } >"$f"
  echo
  echo "== written: $f"
}

# target LABEL MEASURED VERDICT TARGET: a verdict line, printed and recorded
TARGETS=()
target() {
  printf '  %-60s %-16s (target %s): %s\n' "$1" "$2" "$4" "$3"
  TARGETS+=("| $1 | $2 | $4 | $3 |")
}
md_targets() {
  md "" "| what | measured | target | verdict |" "|---|---|---|---|" "${TARGETS[@]}"
}

# ---------------------------------------------------------------------------
# noisy (issue 16): a noisy workspace's backlog and a neighbour's trickle
# ---------------------------------------------------------------------------
noisy_bench() {
  local db=rungate_noisy backlog=${BENCH_NOISY_BACKLOG:-100000} trickle=${BENCH_NOISY_TRICKLE:-20}
  rg_log "noisy: loading the model, $backlog queued runs of workspace 1 (A) ($(elapsed))"
  newdb "$db"
  fill rungate "$backlog" "$db"
  [ "$(queued_in "$db" 1)" = "$backlog" ] || rg_die "workspace 1 does not have $backlog queued runs"
  prepare_measure "$db"

  # B's one run behind A's backlog; the next two single-run claims, each in
  # a transaction of its own, nothing else claiming
  noisy_check() {   # LABEL -> CHECK_<label>: "claim 1", "claim 2" or "not within two claims"
    local label=$1 have b c1 c2 at
    have=$(queued_in "$db" 1)
    [ "$have" -ge "$backlog" ] || fill rungate $((backlog - have)) "$db"
    [ "$(queued_in "$db" 2)" = 0 ] || rg_die "workspace 2 has queued runs before the check"
    have=$(queued_in "$db" 1)
    b=$(q -d "$db" -c "SELECT (rungate.enqueue('inventory.sync', 2, 1000001, 1000001)).id")
    c1=$(q -d "$db" -c "SELECT coalesce(string_agg(c.run_id || ' (workspace ' || c.workspace_id || ')', ','), 'nothing')
                          FROM rungate.claim('check') c")
    c2=$(q -d "$db" -c "SELECT coalesce(string_agg(c.run_id || ' (workspace ' || c.workspace_id || ')', ','), 'nothing')
                          FROM rungate.claim('check') c")
    if [ "${c1%% *}" = "$b" ]; then at="claim 1"
    elif [ "${c2%% *}" = "$b" ]; then at="claim 2"
    else at="not within two claims"; fi
    printf '  %s: B run %s enqueued behind %d queued runs of A; claim 1 started %s, claim 2 %s: %s\n' \
      "$label" "$b" "$have" "$c1" "$c2" "$at"
    printf -v "CHECK_$label" '%s' "$at"   # CHECK_cold, CHECK_warm
  }

  # measure KIND (alone | trickle): RATE runs started per second, OTHER
  noisy_measure() {
    local kind=$1 have before after c0 tpid=
    have=$(queued_in "$db" 1)
    [ "$have" -ge "$backlog" ] || fill rungate $((backlog - have)) "$db"
    # B's runs queued at the end of the last trickle round go first, so a
    # round of A alone has A's backlog alone (fair turns give them at once)
    while [ "$(queued_in "$db" 2)" -gt 0 ]; do
      q -d "$db" -c "SELECT count(*) FROM rungate.claim('prep', NULL, 10)" >/dev/null
    done
    prepare_measure "$db"
    before=$(started "$db")
    cpu_snapshot; c0=$SNAP
    if [ "$kind" = trickle ]; then
      PGAPPNAME=rg_trickle pgbench -n -M prepared -c 1 -j 1 -R "$trickle" -T "$SECS" \
        -f "$here/control_trickle.sql" "$db" >"$OUT/noisy_enqueuer.log" 2>&1 &
      tpid=$!
    fi
    pb "$OUT/noisy_$kind.log" rg_claim.sql "$db" -T "$SECS"
    if [ -n "$tpid" ]; then
      wait "$tpid" || { cat "$OUT/noisy_enqueuer.log" >&2; rg_die "the trickle's pgbench failed"; }
    fi
    cpu_snapshot; OTHER=$(other_cpu "$c0" "$SNAP")
    after=$(started "$db")
    [ "$(queued_in "$db" 1)" -gt 0 ] || rg_die "A's backlog ran dry during a round: raise BENCH_NOISY_BACKLOG"
    RATE=$(per_sec $((after - before)) "$PB_SECS")
  }

  local CHECK_cold='' CHECK_warm=''
  echo "== fair turns: B's run behind A's backlog"
  noisy_check cold
  rg_log "noisy: a warm-up round of A alone, then the check again ($(elapsed))"
  noisy_measure alone
  noisy_check warm

  echo "== claim throughput: A's backlog alone vs with B's trickle ($trickle runs/s), $ROUNDS rounds ($(elapsed))"
  local t0 i a b x o ratios=() alones=() trickles=() others=()
  t0=$(q -d "$db" -c "SELECT clock_timestamp()")
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then noisy_measure alone; a=$RATE o=$OTHER; noisy_measure trickle; b=$RATE
    else noisy_measure trickle; b=$RATE o=$OTHER; noisy_measure alone; a=$RATE; fi
    o=$(( OTHER > o ? OTHER : o ))
    x=$(ratio "$b" "$a")
    printf '  round %d: A alone %6d runs/s   A + B trickle %6d runs/s   ratio %s   (others used %d%% CPU)\n' \
      "$i" "$a" "$b" "$x" "$o"
    ratios+=("$x") alones+=("$a") trickles+=("$b") others+=("$o")
  done
  local m ma mt mo
  m=$(medof %.3f "${ratios[@]}")
  ma=$(medof %.0f "${alones[@]}")
  mt=$(medof %.0f "${trickles[@]}")
  mo=$(printf '%s\n' "${others[@]}" | sort -g | tail -1)

  # B's runs enqueued during the rounds: how long they waited, claimed by the
  # workers ('bench') within their round; those the round ended on were
  # started by the next round's preparation ('prep')
  local bw
  bw=$(q -d "$db" -F ' ' -c "
    SELECT count(*), count(*) FILTER (WHERE worker = 'bench'),
           count(*) FILTER (WHERE worker = 'prep'), count(*) FILTER (WHERE started_at IS NULL),
           coalesce((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at) * 1000)
                      FILTER (WHERE worker = 'bench'))::numeric(10,1)::text, '-'),
           coalesce((max(extract(epoch FROM started_at - created_at) * 1000)
                      FILTER (WHERE worker = 'bench'))::numeric(10,1)::text, '-')
      FROM rungate.runs WHERE workspace_id = 2 AND created_at >= '$t0'")
  local bn bbench bprep bnot bmed bmax
  read -r bn bbench bprep bnot bmed bmax <<<"$bw"
  echo "  median: A alone $ma, with B's trickle $mt runs/s; ratio $m"
  echo "  B's trickle: $bn runs enqueued during the rounds, $bbench started by the workers" \
       "(wait from enqueue to start: median ${bmed} ms, max ${bmax} ms), $bprep at the round's end" \
       "(started by the next preparation), $bnot not started"

  md "Workspace A (1) has $backlog due runs queued (the default mix), then one run of" \
     "workspace B (2) is enqueued, and two single-run claims follow (\`rungate.claim(w)\`," \
     "a transaction each, nothing else claiming): which one starts B's run. Checked with cold" \
     "turns (a fresh database: no workspace has had a turn) and warm (after a round of A's" \
     "claims). Then $ROUNDS alternating rounds of ${SECS} s, $CLIENTS clients of" \
     "\`rungate.claim(w)\`, A's backlog topped up to $backlog before each: A's backlog alone," \
     "against A's backlog while B gets $trickle runs a second enqueued (pgbench -R, one" \
     "client); runs started per second, counted in the table." \
     "" \
     "| figure | value |" "|---|---|" \
     "| B's run started by (cold turns) | $CHECK_cold |" \
     "| B's run started by (warm turns) | $CHECK_warm |" \
     "| claim rate, A's backlog alone (median) | $ma runs/s |" \
     "| claim rate, A's backlog + B's trickle (median) | $mt runs/s |" \
     "| ratios per round | ${ratios[*]} |" \
     "| others' CPU (max over rounds) | ${mo}% |" \
     "| B's trickle runs | $bn enqueued; $bbench started by the workers, waiting median ${bmed} ms, max ${bmax} ms; $bprep left at a round's end |"
  echo "== targets"
  local okc okw
  okc=$([ "$CHECK_cold" != "not within two claims" ] && echo PASS || echo BELOW)
  okw=$([ "$CHECK_warm" != "not within two claims" ] && echo PASS || echo BELOW)
  target "B's run started within two claims, cold turns" "$CHECK_cold" "$okc" "claim 1 or 2"
  target "B's run started within two claims, warm turns" "$CHECK_warm" "$okw" "claim 1 or 2"
  target "claims/s with B's trickle / A's backlog alone" "$m" "$(verdict "$m" 0.8)" "≥ 0.8"
  md_targets
}

# ---------------------------------------------------------------------------
# heldback (issue 16): held-back runs ahead of the eligible ones
# ---------------------------------------------------------------------------
heldback_bench() {
  local held=${BENCH_HELD_RUNS:-100000} prio=${BENCH_HELD_PRIORITY:-1}
  local depth=${BENCH_HELD_DEPTH:-30000}
  local variants=${BENCH_HELD_VARIANTS:-hold_workspace hold_operation concurrency_workspace concurrency_operation rate}
  local v
  for v in $variants; do
    case $v in
      hold_workspace | hold_operation | concurrency_workspace | concurrency_operation | rate) ;;
      *) rg_die "unknown BENCH_HELD_VARIANTS entry '$v'" ;;
    esac
  done
  [ "$prio" -ge 0 ] || rg_die "BENCH_HELD_PRIORITY must be >= 0 (the eligible runs are at 0)"

  # the model, then the same with the held-back runs: $held runs of
  # bench.throttled in workspace 2 at priority $prio, queued before every
  # eligible run (lower ids); each variant's database is a copy of it. Both
  # get $depth eligible runs before they are copied (base is a copy of the
  # model with them).
  rg_log "heldback: the model; $held runs of bench.throttled in workspace 2 at priority $prio," \
         "then $depth eligible runs ($(elapsed))"
  newdb rungate_held_model
  psql -X -q -d postgres -c "CREATE DATABASE rungate_held_runs TEMPLATE rungate_held_model STRATEGY FILE_COPY"
  local db=rungate_held_runs half=$((held / 2))
  q -d "$db" -c "SELECT bench.enqueue_second('bench.throttled', $half, $prio)" >/dev/null &
  q -d "$db" -c "SELECT bench.enqueue_second('bench.throttled', $((held - half)), $prio)" >/dev/null
  wait $! || rg_die "queueing the held-back runs failed"
  [ "$(queued_in "$db" 2)" = "$held" ] || rg_die "workspace 2 does not have $held queued runs"
  fill rungate "$depth" "$db"
  fill rungate "$depth" rungate_held_model
  for db in rungate_held_runs rungate_held_model; do
    q -d "$db" -c "VACUUM ANALYZE"
  done
  q -d postgres -c "CHECKPOINT"
  psql -X -q -d postgres -c "CREATE DATABASE rungate_held_base TEMPLATE rungate_held_model STRATEGY FILE_COPY"
  db=rungate_held_runs

  # each variant: its copy, its flow control; the pacer (a run of the
  # held-back kind at a higher priority) fills a concurrency or rate limit;
  # then a claim of the held-back kind only must start nothing
  local first waiting=() pacer got
  first=$(q -d "$db" -c "SELECT min(id) FROM rungate.runs WHERE workspace_id = 2")
  for v in $variants; do
    db=rungate_held_$v
    rg_log "heldback: $v ($(elapsed))"
    psql -X -q -d postgres -c "CREATE DATABASE $db TEMPLATE rungate_held_runs STRATEGY FILE_COPY"
    case $v in
      hold_workspace) q -d "$db" -c "SELECT id FROM rungate.hold(workspace_id => 2, reason => 'bench')" >/dev/null ;;
      hold_operation) q -d "$db" -c "SELECT id FROM rungate.hold(operation => 'bench.throttled', reason => 'bench')" >/dev/null ;;
      concurrency_workspace) q -d "$db" -c "UPDATE rungate.workspaces SET max_running = 1 WHERE id = 2" ;;
      concurrency_operation) q -d "$db" -c "UPDATE rungate.operation_types SET max_running = 1 WHERE name = 'bench.throttled'" ;;
      rate) q -d "$db" -c "UPDATE rungate.operation_types SET rate_limit = 1, rate_period = '1 day' WHERE name = 'bench.throttled'" ;;
    esac
    case $v in
      concurrency_* | rate)
        pacer=$(q -d "$db" -c "SELECT (rungate.enqueue('bench.throttled', 2, 1000001, 1000001, '{}', NULL, $((prio + 1)))).id")
        got=$(q -d "$db" -c "SELECT coalesce(string_agg(run_id::text, ','), 'nothing')
                               FROM rungate.claim('pacer', '{bench.throttled}')")
        [ "$got" = "$pacer" ] || rg_die "$v: the pacer claim started $got, not the pacer run $pacer"
        ;;
    esac
    got=$(q -d "$db" -c "SELECT count(*) FROM rungate.claim('probe', '{bench.throttled}', 10)")
    [ "$got" = 0 ] || rg_die "$v: a claim of bench.throttled only started $got runs"
    waiting+=("$v=$(q -d "$db" -c "SELECT coalesce((rungate.operation(1000001, $first)).waiting, 'null')")")
    q -d "$db" -c "VACUUM ANALYZE"
  done
  echo "  waiting of the first held-back run: ${waiting[*]}"

  # measure DB: RATE runs started per second (VOID when the eligible runs
  # ran out), OTHER; the held-back runs must all be queued afterwards
  declare -A HMAX=()
  held_measure() {
    local db=$1 want have before after c0 exp=0
    want=$(( ${HMAX[$db]:-0} * SECS * 2 + 10000 ))
    [ "$want" -ge "$depth" ] || want=$depth
    have=$(queued_in "$db" 1)
    [ "$have" -ge "$want" ] || fill rungate $((want - have)) "$db"
    prepare_measure "$db"
    before=$(started "$db")
    cpu_snapshot; c0=$SNAP
    pb "$OUT/heldback_${db#rungate_held_}.log" rg_claim.sql "$db" -T "$SECS"
    cpu_snapshot; OTHER=$(other_cpu "$c0" "$SNAP")
    after=$(started "$db")
    RATE=$(per_sec $((after - before)) "$PB_SECS")
    [ "$RATE" -le "${HMAX[$db]:-0}" ] || HMAX[$db]=$RATE
    [ "$db" = rungate_held_base ] || exp=$held
    [ "$(queued_in "$db" 2)" = "$exp" ] || rg_die "$db: held-back runs started (queued in workspace 2: $(queued_in "$db" 2), not $exp)"
    if [ "$(queued_in "$db" 1)" = 0 ]; then RATE=VOID; HMAX[$db]=$(( ${HMAX[$db]:-0} * 2 + 5000 )); fi
  }

  echo "== claim throughput, $ROUNDS rounds, the order rotated each round ($(elapsed))"
  local order i k n r base line o
  read -r -a order <<<"base $variants"
  n=${#order[@]}
  declare -A RATES=() OTH=()
  for ((i = 1; i <= ROUNDS; i++)); do
    declare -A got_r=()
    o=0
    for ((k = 0; k < n; k++)); do
      v=${order[$(((k + i - 1) % n))]}
      held_measure "rungate_held_$v"
      got_r[$v]=$RATE
      o=$(( OTHER > o ? OTHER : o ))
    done
    base=${got_r[base]}
    line="  round $i: base $base"
    for v in $variants; do
      r=${got_r[$v]}
      if [ "$r" = VOID ] || [ "$base" = VOID ]; then
        line+=", $v VOID"
      else
        line+=", $v $r ($(ratio "$r" "$base"))"
        RATES[$v]+="$(ratio "$r" "$base") "
        OTH[$v]+="$o "
      fi
    done
    [ "$base" = VOID ] || RATES[base]+="$base "
    for v in $variants; do [ "${got_r[$v]}" = VOID ] || RATES[abs_$v]+="${got_r[$v]} "; done
    echo "$line runs/s (others used ${o}% CPU)"
    unset got_r
  done

  md "$held queued runs of \`bench.throttled\` in workspace 2 at priority $prio are held back" \
     "ahead of the eligible runs (workspace 1, the default mix, priority 0, enqueued after" \
     "them): a hold on workspace 2 or on the operation, a concurrency limit of 1 (workspace 2's" \
     "\`max_running\`, or the type's) taken by a running run, or a rate limit of 1 a day" \
     "(\`rate_limit\`, \`rate_period\`) used by a start. Each variant is a database of its own," \
     "a copy of one with the held-back runs; base is the same model without them (and without" \
     "limits or holds). $ROUNDS rounds of ${SECS} s each, every database measured once a round," \
     "the order rotated; before each measure the eligible runs are topped up to at least" \
     "$depth, vacuumed, checkpointed. $CLIENTS clients of \`rungate.claim(w)\`; runs started per" \
     "second, counted in the table; after each measure every held-back run is still queued." \
     "Before measuring, a claim of \`bench.throttled\` only started nothing, and" \
     "\`rungate.operation(...).waiting\` of the first held-back run said: ${waiting[*]}." \
     "" \
     "Limits cost nothing when unset: the standard \`make bench\` claim and cycle cells" \
     "(results/bench/bench.md) measure exactly that, every run there has no limit and no hold." \
     "" \
     "| database | claims/s (median) | ratio to base (median) | ratios per round | others' CPU (max) |" \
     "|---|---|---|---|---|" \
     "| base | $(medof %.0f "${RATES[base]:-}") | | | |"
  echo "== targets"
  local m mr
  for v in $variants; do
    m=$(medof %.3f "${RATES[$v]:-}")
    mr=$(medof %.0f "${RATES[abs_$v]:-}")
    md "| $v | $mr | $m | $(xargs <<<"${RATES[$v]:-}") | $(tr ' ' '\n' <<<"${OTH[$v]:-0}" | sort -g | tail -1)% |"
    target "claims/s with $held held back ($v) / without" "$m" "$(verdict "$m" 0.8)" "≥ 0.8"
  done
  md_targets
}

# ---------------------------------------------------------------------------
# heartbeat (issue 17): this build against rungate 1.5, two installs
# ---------------------------------------------------------------------------
# The baseline needs a PostgreSQL install of its own (an extension has one
# version per install): a copy of $PG_CONFIG's install (its binaries find
# their share and lib directories relative to themselves, so the copy uses
# its own), without this build's rungate, with the baseline built into it,
# and a cluster of its own on it. Both clusters run at once; only one is
# measured at a time.
BASE_ROOT='' BASE_DIR='' BASE_BINDIR='' BASE_PORT=$((RG_PORT + 1))
base_stop() {
  if [ -n "$BASE_DIR" ] && [ -f "$BASE_DIR/data/postmaster.pid" ]; then
    rg_as_pg "$BASE_BINDIR/pg_ctl" stop -w -m immediate -D "$BASE_DIR/data" >/dev/null 2>&1 || true
  fi
  [ -z "$BASE_ROOT" ] || rm -rf "$BASE_ROOT"
}
base_at_exit() {
  if [ "${RG_KEEP:-0}" = 1 ] && [ -n "$BASE_DIR" ]; then
    echo "RG_KEEP=1: the baseline cluster is left running in $BASE_DIR (port $BASE_PORT);" \
         "stop it with: runuser -u postgres -- $BASE_BINDIR/pg_ctl stop -D $BASE_DIR/data && rm -rf $BASE_ROOT"
    return 0
  fi
  base_stop
}

base_install() {   # COMMIT: BASE_PG_CONFIG, BASE_VERSION
  local commit=$1 src
  git -C "$RG_ROOT" rev-parse --verify -q "$commit^{commit}" >/dev/null \
    || rg_die "baseline commit $commit not found in $RG_ROOT"
  BASE_ROOT=$(mktemp -d /tmp/rungate-bench-base.XXXXXX)
  chmod 755 "$BASE_ROOT"
  rg_on_exit base_at_exit
  rg_log "heartbeat: copying the PostgreSQL install to $BASE_ROOT/pg ($(elapsed))"
  BASE_PG_CONFIG=$(pg_copy "$BASE_ROOT/pg")
  chmod -R go+rX "$BASE_ROOT/pg"   # the parents cp made, under any umask: the server runs as postgres
  BASE_BINDIR=$("$BASE_PG_CONFIG" --bindir)
  src=$BASE_ROOT/src
  mkdir -p "$src"
  git -C "$RG_ROOT" archive "$commit" | tar -x -C "$src" || rg_die "git archive $commit failed"
  rg_log "heartbeat: building rungate at $commit into the copy ($(elapsed))"
  if ! { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$src" -s -j2 PG_CONFIG="$BASE_PG_CONFIG" &&
         env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$src" install PG_CONFIG="$BASE_PG_CONFIG"; } \
       >"$BASE_ROOT/build.log" 2>&1; then
    cat "$BASE_ROOT/build.log" >&2
    rg_die "building rungate at $commit failed"
  fi
  BASE_VERSION="rungate $(sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$src/rungate.control")"
  BASE_VERSION+=" built from $(git -C "$RG_ROOT" rev-parse --short "$commit"), installed in a copy of the PostgreSQL install"
}

base_cluster_start() {
  local keep=$RG_BINDIR
  BASE_DIR=$BASE_ROOT/cluster
  mkdir -p "$BASE_DIR"
  chmod 755 "$BASE_DIR"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$BASE_DIR"
  RG_BINDIR=$BASE_BINDIR
  rg__init "$BASE_DIR" "$BASE_PORT" "${BENCH_CONF[@]}"
  rg__start "$BASE_DIR"
  RG_BINDIR=$keep
  # counted as ours by cpu_snapshot (common.sh)
  # shellcheck disable=SC2034
  BENCH_EXTRA_PM=$(head -1 "$BASE_DIR/data/postmaster.pid")
}

# on SIDE CMD...: CMD against that side's cluster (cur: this build; base),
# in this shell (what CMD sets, such as pb's PB_N, stays)
on() {
  local side=$1 host=$PGHOST port=$PGPORT rc=0; shift
  [ "$side" != base ] || export PGHOST=$BASE_DIR PGPORT=$BASE_PORT
  "$@" || rc=$?
  export PGHOST=$host PGPORT=$port
  return "$rc"
}

heartbeat_bench() {
  local commit=${BENCH_HB_BASELINE:-54bb02b} nruns=${BENCH_HB_RUNS:-10000} db=rungate_heartbeat side
  base_install "$commit"
  rg_log "heartbeat: starting the baseline's cluster in $BASE_ROOT/cluster ($(elapsed))"
  base_cluster_start
  declare -A VER=()
  for side in cur base; do
    rg_log "heartbeat ($side): the model, $nruns running runs (lease 1 hour) ($(elapsed))"
    on "$side" set_sync "$SYNC"
    on "$side" newdb "$db"
    on "$side" q -d "$db" -c "UPDATE rungate.operation_types SET lease = '1 hour'"
    on "$side" fill rungate "$nruns" "$db" || rg_die "filling $side failed"
    [ "$(on "$side" q -d "$db" -c "SELECT bench.hb_claim($nruns)")" = "$nruns" ] \
      || rg_die "$side: fewer than $nruns runs claimed"
    VER[$side]=$(on "$side" q -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'rungate'")
    on "$side" q -d "$db" -c "VACUUM ANALYZE"
  done
  echo "  this build: rungate ${VER[cur]}; baseline: rungate ${VER[base]} ($commit)"
  [ "${VER[cur]}" != "${VER[base]}" ] || rg_die "both clusters run rungate ${VER[cur]}"

  hb_measure() {   # SIDE: RATE heartbeats per second, OTHER
    local side=$1 c0
    on "$side" prepare_measure "$db"
    cpu_snapshot; c0=$SNAP
    on "$side" pb "$OUT/heartbeat_$side.log" control_heartbeat.sql "$db" -T "$SECS" -D nruns="$nruns"
    cpu_snapshot; OTHER=$(other_cpu "$c0" "$SNAP")
    RATE=$(per_sec "$PB_N" "$PB_SECS")
  }
  echo "== heartbeat throughput, $ROUNDS alternating rounds of ${SECS} s ($(elapsed))"
  local i c b x o ratios=() curs=() bases=() others=()
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then hb_measure cur; c=$RATE o=$OTHER; hb_measure base; b=$RATE
    else hb_measure base; b=$RATE o=$OTHER; hb_measure cur; c=$RATE; fi
    o=$(( OTHER > o ? OTHER : o ))
    x=$(ratio "$c" "$b")
    printf '  round %d: %s %6d heartbeats/s   %s %6d heartbeats/s   ratio %s   (others used %d%% CPU)\n' \
      "$i" "${VER[cur]}" "$c" "${VER[base]}" "$b" "$x" "$o"
    ratios+=("$x") curs+=("$c") bases+=("$b") others+=("$o")
  done
  # nothing was blocked or lost its lease: every heartbeated run still running
  local still
  for side in cur base; do
    still=$(on "$side" q -d "$db" -c "SELECT count(*) FROM rungate.runs r JOIN bench.hb h ON h.run_id = r.id
                                       WHERE r.status = 'running' AND r.lease_token = h.lease_token")
    [ "$still" = "$nruns" ] || rg_die "$side: $still of $nruns heartbeated runs still running with their lease"
  done
  local m mc mb mo
  m=$(medof %.3f "${ratios[@]}")
  mc=$(medof %.0f "${curs[@]}")
  mb=$(medof %.0f "${bases[@]}")
  mo=$(printf '%s\n' "${others[@]}" | sort -g | tail -1)
  echo "  median: ${VER[cur]} $mc, ${VER[base]} $mb heartbeats/s; ratio $m"
  md "\`rungate.heartbeat(run_id, lease_token)\` of $nruns running runs (lease 1 hour), one chosen" \
     "at random per transaction, $CLIENTS clients, no authority change during the rounds; this" \
     "build (rungate ${VER[cur]}) against rungate ${VER[base]} built from $commit, each in a" \
     "cluster of its own on its own PostgreSQL install (the baseline's a copy of this one's)," \
     "the same settings, the same model; $ROUNDS alternating rounds of ${SECS} s, each side" \
     "vacuumed and checkpointed before it is measured. After the rounds every run is still" \
     "running with its lease on both sides." \
     "" \
     "| figure | value |" "|---|---|" \
     "| heartbeats/s, rungate ${VER[cur]} (median) | $mc |" \
     "| heartbeats/s, rungate ${VER[base]} (median) | $mb |" \
     "| ratios per round | ${ratios[*]} |" \
     "| others' CPU (max over rounds) | ${mo}% |"
  echo "== targets"
  target "heartbeats/s ${VER[cur]} / ${VER[base]}" "$m" "$(verdict "$m" 0.9)" "≥ 0.9"
  md_targets
}

# ---------------------------------------------------------------------------
# blocklimit (issue 23): draining a suspended workspace's backlog
# ---------------------------------------------------------------------------
blocklimit_bench() {
  local db=rungate_blocklimit backlog=${BENCH_BLOCK_RUNS:-100000} maxs=${BENCH_BLOCK_MAX_SECONDS:-600}
  local limit log t0 c0 o_run rc=0
  rg_log "blocklimit: loading the model, $backlog queued runs of workspace 1 ($(elapsed))"
  newdb "$db"
  fill rungate "$backlog" "$db"
  [ "$(queued_in "$db" 1)" = "$backlog" ] || rg_die "workspace 1 does not have $backlog queued runs"
  prepare_measure "$db"
  q -d "$db" -c "UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 1"
  limit=$(q -d "$db" -c "SHOW rungate.claim_block_limit")
  rg_log "blocklimit: workspace 1 suspended; $CLIENTS workers call rungate.claim(w) until nothing is" \
         "left (rungate.claim_block_limit = $limit) ($(elapsed))"

  # each worker calls until a call changes no run (the queue is drained, or
  # all that is left is locked by the other workers' calls); pgbench then
  # aborts that client (\gset of no row), which is how the drain ends
  log=$OUT/blocklimit.log
  rm -f "$OUT"/blocklimit_calls.*
  t0=$(q -d "$db" -c "SELECT clock_timestamp()")
  cpu_snapshot; c0=$SNAP
  pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$maxs" -l --log-prefix="$OUT/blocklimit_calls" \
    -f "$here/control_blockclaim.sql" "$db" >"$log" 2>&1 || rc=$?
  cpu_snapshot; o_run=$(other_cpu "$c0" "$SNAP")
  local aborts
  aborts=$(grep -c 'expected one row, got 0' "$log" || true)
  if grep -v 'expected one row, got 0\|Run was aborted' "$log" | grep -qi 'error\|abort'; then
    cat "$log" >&2; rg_die "the drain failed (log: $log)"
  fi
  [ "$rc" = 0 ] || [ "$aborts" -gt 0 ] || { cat "$log" >&2; rg_die "pgbench failed (log: $log)"; }
  [ "$(queued_in "$db" 1)" = 0 ] \
    || rg_die "the backlog was not drained ($(queued_in "$db" 1) queued; BENCH_BLOCK_MAX_SECONDS=$maxs; log: $log)"

  # per call, in the server: the calls' own rows, with their audit rows by txid
  local r
  r=$(q -d "$db" -F ' ' -c "
    WITH a AS (SELECT txid, count(*) FILTER (WHERE event = 'execution_blocked') AS blocked,
                      count(*) FILTER (WHERE event = 'started') AS started
                 FROM rungate.audit_log WHERE at >= '$t0' GROUP BY txid),
         c AS (SELECT c.*, coalesce(a.blocked, 0) AS blocked, coalesce(a.started, 0) AS audit_started,
                      extract(epoch FROM c.t1 - c.t0) * 1000 AS ms
                 FROM bench.claim_calls c LEFT JOIN a USING (txid))
    SELECT count(*), count(*) FILTER (WHERE changed > 0),
           (SELECT count(*) FROM a WHERE txid NOT IN (SELECT txid FROM bench.claim_calls)),
           sum(blocked), max(blocked), count(*) FILTER (WHERE blocked = $limit),
           count(*) FILTER (WHERE blocked <> changed OR audit_started <> 0 OR started <> 0),
           (percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE changed > 0))::numeric(10,1),
           (percentile_cont(0.9) WITHIN GROUP (ORDER BY ms) FILTER (WHERE changed > 0))::numeric(10,1),
           (max(ms) FILTER (WHERE changed > 0))::numeric(10,1),
           (percentile_cont(0.5) WITHIN GROUP (ORDER BY blocked) FILTER (WHERE changed > 0))::int,
           extract(epoch FROM (SELECT max(at) FROM rungate.audit_log WHERE at >= '$t0') - '$t0')::numeric(10,2)
      FROM c")
  local ncalls nchg nforeign nblocked maxblk nfull nodd smed sp90 smax bmed secs
  read -r ncalls nchg nforeign nblocked maxblk nfull nodd smed sp90 smax bmed secs <<<"$r"
  [ "$nforeign" = 0 ] || rg_die "$nforeign transactions wrote audit rows outside the workers' calls"
  [ "$nblocked" = "$backlog" ] || rg_die "$nblocked runs blocked, not $backlog"
  [ "$nodd" = 0 ] || rg_die "$nodd calls started runs, or changed runs they did not block"

  # per call, as the workers saw it: pgbench's per-transaction log (one
  # transaction = one call with its commit; the aborted last calls are not logged)
  local files c
  files=("$OUT"/blocklimit_calls.*)
  [ -e "${files[0]}" ] || rg_die "no pgbench per-transaction log"
  c=$(cat "${files[@]}" | awk '{ print $3 / 1000 }' | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) { print "0 n/a n/a n/a"; exit }
              printf "%d %.1f %.1f %.1f\n", NR, (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2),
                     a[int(NR * 0.9 + 0.999)], a[NR] }')
  local cn cmed cp90 cmax cx sx
  read -r cn cmed cp90 cmax <<<"$c"
  cx=$(ratio "$cmax" "$cmed") sx=$(ratio "$smax" "$smed")
  echo "  drained in ${secs}s (others used ${o_run}% CPU): $nblocked runs blocked by $nchg calls" \
       "($ncalls calls in all; blocked per call: median $bmed, max $maxblk, $nfull at the limit)"
  echo "  per call, the workers' side (pgbench, with the commit; $cn calls): median ${cmed} ms," \
       "p90 ${cp90} ms, max ${cmax} ms (max / median $cx)"
  echo "  per call, in the server (the claim alone; $nchg calls): median ${smed} ms, p90 ${sp90} ms," \
       "max ${smax} ms (max / median $sx)"
  md "Workspace 1 gets $backlog queued runs (the default mix, the workspace active), then is" \
     "suspended; $CLIENTS workers (pgbench) call \`rungate.claim(w)\` (through" \
     "\`bench.timed_claim\`, which times the call in the server and records its txid) until a" \
     "call changes no run, with \`rungate.claim_block_limit\` at its default ($limit). Blocked" \
     "runs per call: the \`execution_blocked\` audit rows of the call's transaction (txid)." \
     "The workers' latency is pgbench's per-transaction log (\`-l\`): the call and its commit." \
     "" \
     "| figure | value |" "|---|---|" \
     "| drain | ${secs} s, $nblocked runs blocked (others' CPU ${o_run}%) |" \
     "| calls | $ncalls ($nchg blocked runs; the rest found nothing they could take) |" \
     "| blocked per call | median $bmed, max $maxblk; $nfull calls at the limit |" \
     "| latency per call, workers' side ($cn calls) | median ${cmed} ms, p90 ${cp90} ms, max ${cmax} ms |" \
     "| latency per call, in the server ($nchg calls) | median ${smed} ms, p90 ${sp90} ms, max ${smax} ms |"
  echo "== targets"
  target "most runs one call blocked" "$maxblk" "$(atmost "$maxblk" "$limit")" "≤ $limit"
  target "call latency max / median (workers' side)" "$cx" "$(atmost "$cx" 2)" "≤ 2"
  target "call latency max / median (in the server)" "$sx" "$(atmost "$sx" 2)" "≤ 2"
  md_targets
}

set_sync "$SYNC"
echo "== environment"
environment
case $MODE in
  noisy) noisy_bench ;;
  heldback) heldback_bench ;;
  heartbeat) heartbeat_bench ;;
  blocklimit) blocklimit_bench ;;
esac
write_md
