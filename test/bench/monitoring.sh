#!/usr/bin/env bash
# test/bench/monitoring.sh (BENCH_MODE=monitoring make bench): what a page of
# rungate.operations costs in a workspace of any size (issue 25), and what
# the indexes that make it so cost the writers.
#
#   1. Pages. The same viewer, scoped to two tenants of a workspace (10,000
#      runs of theirs), asks for the same page of 100 with no other run in
#      the workspace ("none") and with BENCH_MON_OTHERS (1,000,000) runs of
#      the other tenants and of the workspace itself, all newer than the
#      viewer's ("others", test/bench/monitoring_setup.sql): scoped
#      (operations(viewer, ws)), tenant-filtered (tenant 101) and
#      status-filtered (blocked). Each round times BENCH_MON_CALLS (15) calls
#      of each in the server (bench.page_us, the median), in both databases,
#      alternating which goes first; the ratio others / none per round, and
#      its median over BENCH_ROUNDS (7) rounds. Target: <= 1.5 each. Both
#      databases must answer the same page (checked). For reference, the
#      same calls once against the same others database created at 1.6 (the
#      plans of 1.6 read the page there).
#   2. Writers. The enqueue rate (runs/s, pgbench monitoring_enqueue.sql)
#      and the claim rate (rg_claim.sql) with 1.7's indexes against 1.6's,
#      two databases of make bench's model (test/bench/setup.sql, extversion
#      1.6 for one), BENCH_CLIENTS (4) clients, BENCH_SECONDS (5) per
#      measure, alternating, synchronous_commit off (the CPU cost), the same
#      BENCH_ROUNDS; ratio 1.7 / 1.6 per round and its median. Target: >= 0.95
#      (each index pays for itself: 1.7 has one index fewer on rungate.runs).
#
# Output: results/bench/monitoring.md. Uses make bench's cluster settings
# (test/bench/common.sh), rungate preloaded. It reports and never asserts.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
ROUNDS=${BENCH_ROUNDS:-7} SECS=${BENCH_SECONDS:-5} CALLS=${BENCH_MON_CALLS:-15}
CLIENTS=${BENCH_CLIENTS:-4} THREADS=${BENCH_THREADS:-2}
OTHERS=${BENCH_MON_OTHERS:-1000000}
PARTS=${BENCH_MON_PARTS:-"pages writers"}
source "$here/common.sh"
bench_prepare
MD="$OUT/monitoring.md"
median() {
  sort -g | awk -v f="${1:-%.3f}" '{a[NR] = $1}
    END { if (NR == 0) print "n/a"
          else printf f "\n", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
atmost() { awk -v m="$1" -v t="$2" 'BEGIN { print (m != "n/a" && m + 0 <= t + 0) ? "PASS" : "ABOVE" }'; }
mkdb() { psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
{
  echo "# rungate monitoring at scale (BENCH_MODE=monitoring)"
  echo
  echo "\`BENCH_MODE=monitoring make bench\` ($(date -u +%Y-%m-%d), $(q -d postgres -c 'SHOW server_version'), $(nproc) cores, commit $(git -C "$RG_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))."
  echo
} >"$MD"

# ---------------------------------------------------------------------------
# 1. pages
# ---------------------------------------------------------------------------
pages() {
  local none=rg_mon_none others=rg_mon_others old=rg_mon_others16
  rg_log "none: the viewer's 10,000 runs ($(elapsed))"
  mkdb $none
  psql -X -q -v ON_ERROR_STOP=1 -v others=0 -d $none -f "$here/monitoring_setup.sql" >/dev/null
  rg_log "others: the same and $OTHERS runs of other tenants ($(elapsed))"
  mkdb $others
  psql -X -q -v ON_ERROR_STOP=1 -v others="$OTHERS" -d $others -f "$here/monitoring_setup.sql" >/dev/null
  rg_log "others16: the same at 1.6 ($(elapsed))"
  mkdb $old
  psql -X -q -v ON_ERROR_STOP=1 -v others="$OTHERS" -v extversion=1.6 -d $old \
    -f "$here/monitoring_setup.sql" >/dev/null
  q -d $others -c "SELECT 'runs in the workspace: ' || count(*) || ', the viewer''s: ' ||
                          count(*) FILTER (WHERE tenant_id IN (101, 103)) FROM rungate.runs"
  rg_log "loaded ($(elapsed))"

  local -A ARGS=([scoped]="NULL, NULL" [tenant]="NULL, 101" [status]="'blocked', NULL")
  local kind db
  for kind in scoped tenant status; do
    local a=${ARGS[$kind]} m0 m1 m2
    m0=$(q -d $none -c "SELECT bench.page_md5($a)")
    m1=$(q -d $others -c "SELECT bench.page_md5($a)")
    m2=$(q -d $old -c "SELECT bench.page_md5($a)")
    [ "$m0" = "$m1" ] && [ "$m0" = "$m2" ] || rg_die "$kind: the databases answer different pages"
    q -d $none -c "SELECT count(*) FROM rungate.operations(1, 1, $a)" | grep -qx 100 \
      || rg_die "$kind: the page is not 100 runs"
  done

  echo "| call | none (µs) | $OTHERS others (µs) | ratio (median of rounds) | target | 1.6's plans with the others (µs, ratio) | others' CPU (max) |" >"$MD.rows"
  echo "|---|---|---|---|---|---|---|" >>"$MD.rows"
  for kind in scoped tenant status; do
    local a=${ARGS[$kind]} i t0 t1 x ratios=() nones=() otherss=() m mn mo v o16
    echo "== $kind: operations(1, 1, $a) ($(elapsed))"
    local c0 o others_max=0
    for ((i = 1; i <= ROUNDS; i++)); do
      cpu_snapshot; c0=$SNAP
      if ((i % 2)); then
        t0=$(q -d $none -c "SELECT round(bench.page_us($a, $CALLS))")
        t1=$(q -d $others -c "SELECT round(bench.page_us($a, $CALLS))")
      else
        t1=$(q -d $others -c "SELECT round(bench.page_us($a, $CALLS))")
        t0=$(q -d $none -c "SELECT round(bench.page_us($a, $CALLS))")
      fi
      cpu_snapshot; o=$(other_cpu "$c0" "$SNAP")
      others_max=$(( o > others_max ? o : others_max ))
      x=$(ratio "$t1" "$t0")
      printf '  round %d: none %6d µs   others %6d µs   ratio %s   (others used %d%% CPU)\n' "$i" "$t0" "$t1" "$x" "$o"
      ratios+=("$x") nones+=("$t0") otherss+=("$t1")
    done
    m=$(printf '%s\n' "${ratios[@]}" | median)
    mn=$(printf '%s\n' "${nones[@]}" | median %.0f)
    mo=$(printf '%s\n' "${otherss[@]}" | median %.0f)
    v=$(atmost "$m" 1.5)
    o16=$(q -d $old -c "SELECT round(bench.page_us($a, 3))")
    echo "  median: none $mn µs, others $mo µs; ratio $m (target <= 1.5): $v; 1.6's plans: $o16 µs"
    echo "| $kind | $mn | $mo | $m | ≤ 1.5 $v | $o16 ($(ratio "$o16" "$mn")) | $others_max% |" >>"$MD.rows"
  done
  {
    echo "## Pages: the same page with and without $OTHERS runs of others"
    echo
    echo "The viewer sees tenants 101 and 103 of workspace 1 (10,000 runs, the oldest);"
    echo "the others are $OTHERS newer runs of tenants 102, 104 to 110 and of the workspace."
    echo "A page is \`rungate.operations(viewer, workspace)\` (scoped), with \`tenant_id => 101\`"
    echo "(tenant), with \`status => 'blocked'\` (status): 100 runs, the same in every database."
    echo "Median of $CALLS calls timed in the server per database and round, $ROUNDS alternating rounds;"
    echo "the ratio is per round, its median shown. 1.6's plans: the same data in a database"
    echo "created at 1.6, 3 calls, once (its ratio against 1.7's page without others)."
    echo "Others' CPU: the most that processes outside the benchmark used in a round, in % of all cores."
    echo
    cat "$MD.rows"
    echo
  } >>"$MD"
  rm -f "$MD.rows"
}

# ---------------------------------------------------------------------------
# 2. writers: enqueue and claim with 1.7's indexes against 1.6's
# ---------------------------------------------------------------------------
# pgbench DB SCRIPT: RATE = transactions per second over pgbench's measured time
rate() {
  local log="$OUT/monitoring_$(basename "$2" .sql)_$1.log"
  pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$SECS" -f "$here/$2" "$1" >"$log" 2>&1 \
    || { cat "$log" >&2; rg_die "pgbench $2 on $1 failed"; }
  RATE=$(awk '/^tps = / {printf "%d", $3}' "$log")
}
queued_in() { q -d "$1" -c "SELECT count(*) FROM rungate.runs WHERE status = 'queued'"; }
writers() {
  local new=rg_mon_w17 old=rg_mon_w16 top= top_seen=
  q -d postgres -c "ALTER SYSTEM SET synchronous_commit = off" -c "SELECT pg_reload_conf()" >/dev/null
  rg_log "two databases of make bench's model, at 1.7 and at 1.6 ($(elapsed))"
  mkdb $new
  psql -X -q -v ON_ERROR_STOP=1 -d $new -f "$here/setup.sql" >/dev/null
  mkdb $old
  psql -X -q -v ON_ERROR_STOP=1 -v extversion=1.6 -d $old -f "$here/setup.sql" >/dev/null
  q -d $new -c "SELECT 'rungate.runs indexes at 1.7: ' || count(*) FROM pg_index WHERE indrelid = 'rungate.runs'::regclass"
  q -d $old -c "SELECT 'rungate.runs indexes at 1.6: ' || count(*) FROM pg_index WHERE indrelid = 'rungate.runs'::regclass"
  echo "| measure | 1.7 (per s) | 1.6 (per s) | ratio 1.7 / 1.6 (median of rounds) | target | others' CPU (max) |" >"$MD.rows"
  echo "|---|---|---|---|---|---|" >>"$MD.rows"
  local script label
  for script in monitoring_enqueue.sql rg_claim.sql; do
    label=enqueue; [ "$script" = rg_claim.sql ] && label=claim top= top_seen=
    local i r1 r0 x ratios=() news=() olds=() m mn mo v c0 o others_max=0
    echo "== $label: 1.7 against 1.6 ($(elapsed))"
    for ((i = 1; i <= ROUNDS; i++)); do
      if [ "$label" = claim ]; then
        # enough due runs for the round in both, the same number
        local d want=$(( ${top:-5000} * SECS * 2 )) have
        for d in $new $old; do
          have=$(q -d $d -c "SELECT count(*) FROM rungate.runs WHERE status = 'queued'")
          [ "$have" -ge "$want" ] || fill rungate $((want - have)) $d
        done
      fi
      q -d $new -c "VACUUM ANALYZE rungate.runs" && q -d $old -c "VACUUM ANALYZE rungate.runs"
      q -d postgres -c "CHECKPOINT"
      cpu_snapshot; c0=$SNAP
      if ((i % 2)); then rate $new $script; r1=$RATE; rate $old $script; r0=$RATE
      else rate $old $script; r0=$RATE; rate $new $script; r1=$RATE; fi
      cpu_snapshot; o=$(other_cpu "$c0" "$SNAP")
      x=$(ratio "$r1" "$r0")
      top=$(( r1 > r0 ? r1 : r0 ))
      top=$(( top > ${top_seen:-0} ? top : ${top_seen:-0} )) top_seen=$top
      if [ "$label" = claim ] && { [ "$(queued_in $new)" -eq 0 ] || [ "$(queued_in $old)" -eq 0 ]; }; then
        echo "  round $i: 1.7 $r1/s, 1.6 $r0/s: VOID (a queue ran dry)"
        continue
      fi
      printf '  round %d: 1.7 %6d/s   1.6 %6d/s   ratio %s   (others used %d%% CPU)\n' "$i" "$r1" "$r0" "$x" "$o"
      others_max=$(( o > others_max ? o : others_max ))
      ratios+=("$x") news+=("$r1") olds+=("$r0")
    done
    m=$(printf '%s\n' "${ratios[@]}" | median)
    mn=$(printf '%s\n' "${news[@]}" | median %.0f)
    mo=$(printf '%s\n' "${olds[@]}" | median %.0f)
    v=$(verdict "$m" 0.95)
    echo "  median: 1.7 $mn/s, 1.6 $mo/s; ratio $m (target >= 0.95): $v"
    echo "| $label | $mn | $mo | $m | ≥ 0.95 $v | $others_max% |" >>"$MD.rows"
  done
  {
    echo "## Writers: 1.7's indexes against 1.6's"
    echo
    echo "make bench's model (test/bench/setup.sql) in two databases, one created at 1.6."
    echo "enqueue: \`rungate.enqueue\` of one run per transaction (monitoring_enqueue.sql);"
    echo "claim: \`rungate.claim(w)\` (rg_claim.sql) of the runs the enqueue rounds queued;"
    echo "$CLIENTS clients, ${SECS} s per measure, $ROUNDS alternating rounds, synchronous_commit off."
    echo "1.7 replaces runs_tenant_idx and runs_workspace_idx by runs_tenant_status_idx."
    echo "Others' CPU: the most that processes outside the benchmark used in a round, in % of all cores."
    echo
    cat "$MD.rows"
    echo
  } >>"$MD"
  rm -f "$MD.rows"
}

for part in $PARTS; do
  case $part in
    pages) pages ;;
    writers) writers ;;
    *) rg_die "BENCH_MON_PARTS: pages and/or writers (got '$part')" ;;
  esac
done
echo
echo "== summary ($MD, $(elapsed))"
cat "$MD"
