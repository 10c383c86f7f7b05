#!/usr/bin/env bash
# test/bench/scaleout.sh: what the PL/Proxy scale-out (docs/scale-out.md)
# costs and what it gives, on this machine. Not part of make test or make
# bench; it asserts nothing, it reports (non-zero only when the benchmark
# itself breaks).
#
#   routing  a claim + complete cycle through the front (rungate_proxy.claim_on
#            and rungate_proxy.complete, PL/Proxy to shard 0) against the same
#            cycle on the shard directly (rungate.claim, rungate.complete), one
#            shard, front and shard on the same cores; with BENCH_CLIENTS
#            clients (the cost: direct rate / front rate) and with one client
#            (the latency: front time / direct time). Target: <= 2.5.
#   scaling  total cycles/s of workers that claim on the shards directly (as
#            examples/proxy/worker.py does), BENCH_CLIENTS clients split over
#            the shards, with 1, 2 and 4 shards, every cluster and pgbench
#            pinned to the same cores (BENCH_CORES): the work must split
#            without loss. Target: N shards >= 0.9 x 1 shard.
#   cores    the same with one core per shard (shard i on core i), for the
#            sizes this machine has cores for: what N machines would give.
#
# Rounds alternate the sides (and the sizes) so that the machine's noise
# falls on all of them; the table gives medians of the per-round ratios.
# Before each measurement the shards are topped up with queued runs (twice
# what the best round so far took, split over the shards), vacuumed and
# checkpointed. Environment:
#   BENCH_ROUNDS (5), BENCH_SECONDS (5), BENCH_CLIENTS (8: two per shard at 4 shards; a
#   shard with one client idles between its round trips), BENCH_SHARDS ("1 2 4"),
#   BENCH_CORES (all: 0-<nproc - 1>), BENCH_SYNC (synchronous_commit, off),
#   BENCH_KINDS ("routing scaling cores"), BENCH_BUILD (1; 0: use the
#   installed rungate), RG_KEEP=1 (keep the clusters)
# Output: results/bench/scaleout.md, pgbench logs next to it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
source "$here/../scale-out-lib.bash"
cd "$RG_ROOT"

ROUNDS=${BENCH_ROUNDS:-5} SECS=${BENCH_SECONDS:-5} CLIENTS=${BENCH_CLIENTS:-8}
SIZES=${BENCH_SHARDS:-1 2 4}
NCPU=$(nproc)
CORES=${BENCH_CORES:-0-$((NCPU - 1))}
KINDS=${BENCH_KINDS:-routing scaling cores}
OUT=$RG_ROOT/results/bench
REPORT=$OUT/scaleout.md
LOGS=$OUT/scaleout
mkdir -p "$OUT" "$LOGS"
T0=$SECONDS
# shellcheck disable=SC2034 # read by so_start (test/scale-out-lib.bash)
SO_CONF=("fsync = on" "full_page_writes = on" "synchronous_commit = ${BENCH_SYNC:-off}"
         "shared_buffers = 128MB" "max_wal_size = 4GB" "min_wal_size = 512MB"
         "checkpoint_timeout = 30min" "random_page_cost = 1.1"
         "max_parallel_workers_per_gather = 0" "log_min_messages = warning")

if [ "${BENCH_BUILD:-1}" = 1 ]; then
  rg_install_deps
  rg_build_install
else
  rg_pg_paths
fi
so_prepare

max=0
for n in $SIZES; do [ "$n" -le "$max" ] || max=$n; done
[ "$max" -ge 1 ] || rg_die "BENCH_SHARDS is empty"
so_start "$max" "$CORES"
so_pin front "$CORES"

say() { echo "$*" | tee -a "$REPORT"; }
elapsed() { echo "$((SECONDS - T0))s"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.3f", a / b; else print "n/a" }'; }
verdict() {  # VALUE TARGET le|ge
  awk -v m="$1" -v t="$2" -v op="$3" 'BEGIN { if (m == "n/a") print "n/a";
    else print ((op == "le" ? m + 0 <= t + 0 : m + 0 >= t + 0) ? "met" : "NOT met") }'
}

# ---- layouts: database so_bN over shards 0 .. N-1, two workspaces per shard
for n in $SIZES; do
  so_layout "so_b$n" "$n"
  for ((i = 0; i < n; i++)); do
    ws=$(so_front "so_b$n" -tA -c "SELECT array_agg(w ORDER BY w) FROM (
           SELECT w FROM generate_series(1, 1000) w WHERE rungate_proxy.workspace_shard(w) = $i
            ORDER BY w LIMIT 2) x")
    so_shard "$i" "so_b$n" -v ws="$ws" -f test/bench/scaleout_setup.sql >/dev/null
  done
  so_front "so_b$n" -tA -c "SELECT count(*) FROM rungate_proxy.check_shards()" >/dev/null
done
rg_log "layouts ready ($(elapsed))"

# topup DB I NEED: shard I's queue holds at least NEED runs
topup() {
  local db=$1 i=$2 need=$3 have k
  have=$(so_shard "$i" "$db" -tA -c "SELECT count(*) FROM rungate.runs WHERE status = 'queued'")
  while [ "$have" -lt "$need" ]; do
    k=$((need - have)); [ "$k" -le 50000 ] || k=50000
    so_shard "$i" "$db" -tA -c "SELECT bench_so.fill($k)" >/dev/null
    have=$((have + k))
  done
  # what the top-up left behind is not the round's to pay for: vacuum (the
  # audit log too: autovacuum would take it up mid-round) and write it out
  so_shard "$i" "$db" -c "VACUUM ANALYZE rungate.runs" -c "VACUUM ANALYZE rungate.audit_log" \
    -c "CHECKPOINT" >/dev/null
}

# pgb LOG HOST PORT DB SCRIPT CLIENTS [PIN]: one pgbench run; prints its tps
# (without connection time), or VOID when a client aborted (queue empty)
pgb() {
  local log=$1 host=$2 port=$3 db=$4 script=$5 c=$6 pin=${7:-$CORES} rc=0 j
  j=$(( c < 2 ? c : 2 ))
  taskset -c "$pin" "$RG_BINDIR/pgbench" -n -M prepared -c "$c" -j "$j" -T "$SECS" \
    -h "$host" -p "$port" -U postgres -f "$script" "$db" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] || grep -q 'aborted' "$log"; then
    echo VOID
  else
    sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log"
  fi
}

NEED_MIN=16000
BEST=4000   # cycles/s, the best total seen so far (sizes the top-ups)
# queued runs per shard for a round of N shards: twice what the best round
# took, split over the shards (the same total whatever N: a size is not
# measured right after a larger top-up than another's)
need_for() {
  local n=$1 k=$(( 2 * BEST * SECS ))
  [ "$k" -ge "$NEED_MIN" ] || k=$NEED_MIN
  echo $(( k / n + 1000 ))
}
best() { awk -v a="$1" -v b="$BEST" 'BEGIN { printf "%d", (a + 0 > b ? a : b) }'; }

{
  echo "# rungate scale-out behind PL/Proxy: test/bench/scaleout.sh"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$RG_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'),"
  echo "$NCPU cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "$("$RG_BINDIR/postgres" --version); pgbench -M prepared, $ROUNDS rounds x ${SECS}s, $CLIENTS clients;"
  echo "clusters and pgbench pinned to cores $CORES unless said; synchronous_commit = ${BENCH_SYNC:-off}, fsync on"
  echo
} >"$REPORT"

# CPU that other processes took while we measured, in percent of all cores:
# the machine's busy time (/proc/stat) less ours (our servers with their
# children, live and reaped, and this shell's reaped children: pgbench).
cpu_snapshot() {
  local pms hz tf ours shell
  hz=$(getconf CLK_TCK)
  pms=$(for f in "$SO_TMP"/front/data/postmaster.pid "$SO_TMP"/s*/data/postmaster.pid; do head -n1 "$f"; done | tr '\n' ' ')
  ours=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v pms="$pms" '
           BEGIN { n = split(pms, p, " "); for (i = 1; i <= n; i++) pm[p[i]] = 1 }
           ($1 in pm) { t += $14 + $15 + $16 + $17 } ($4 in pm) { t += $14 + $15 }
           END { printf "%d", t }') || true
  tf=$LOGS/.times.$$
  times >"$tf"
  shell=$(awk -v hz="$hz" 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += (a[1] * 60 + a[2]) * hz } }
                           END { printf "%d", t }' "$tf")
  rm -f "$tf"
  SNAP="$(awk -v hz="$hz" '{ printf "%d", $1 * hz }' /proc/uptime) $(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat) $((ours + shell))"
}
other_cpu() {
  awk -v b="$1" -v a="$2" -v n="$NCPU" 'BEGIN { split(b, x, " "); split(a, y, " ")
    w = (y[1] - x[1]) * n; o = (y[2] - x[2]) - (y[3] - x[3])
    printf "%d", (w > 0 && o > 0 ? 100 * o / w : 0) }'
}

# ---- routing overhead
if [[ " $KINDS " == *" routing "* ]]; then
  rg_log "routing: front vs shard 0 directly, $ROUNDS rounds"
  : >"$LOGS/routing.tsv"
  for ((r = 1; r <= ROUNDS; r++)); do
    declare -A got=()
    sides=(direct front); [ $((r % 2)) = 1 ] || sides=(front direct)
    # one top-up for the round's four measurements, which then run back to back
    topup so_b1 0 $(( 3 * $(need_for 1) ))
    cpu_snapshot; before=$SNAP
    for c in "$CLIENTS" 1; do
      for side in "${sides[@]}"; do
        if [ "$side" = direct ]; then
          got[$side$c]=$(pgb "$LOGS/routing-$r-$side-$c.log" "$SO_TMP/s0" $((SO_PORT + 1)) so_b1 test/bench/scaleout_direct.sql "$c")
        else
          got[$side$c]=$(pgb "$LOGS/routing-$r-$side-$c.log" "$SO_TMP/front" "$SO_PORT" so_b1 test/bench/scaleout_front.sql "$c")
        fi
        [ "${got[$side$c]}" = VOID ] || BEST=$(best "${got[$side$c]}")
      done
    done
    cpu_snapshot; others=$(other_cpu "$before" "$SNAP")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "${got[direct$CLIENTS]}" "${got[front$CLIENTS]}" "${got[direct1]}" "${got[front1]}" "$others" \
      | tee -a "$LOGS/routing.tsv"
    unset got
  done
  cost=$(awk -F'\t' '$2 != "VOID" && $3 != "VOID" && $3 > 0 { printf "%.3f\n", $2 / $3 }' "$LOGS/routing.tsv" | median)
  lat=$(awk -F'\t' '$4 != "VOID" && $5 != "VOID" && $5 > 0 { printf "%.3f\n", $4 / $5 }' "$LOGS/routing.tsv" | median)
  d4=$(cut -f2 "$LOGS/routing.tsv" | grep -v VOID | median); f4=$(cut -f3 "$LOGS/routing.tsv" | grep -v VOID | median)
  d1=$(cut -f4 "$LOGS/routing.tsv" | grep -v VOID | median); f1=$(cut -f5 "$LOGS/routing.tsv" | grep -v VOID | median)
  {
    echo "## Routing overhead: a claim + complete cycle through the front vs on the shard"
    echo
    echo "| clients | direct cycles/s | through the front cycles/s | cost (median of per-round direct/front) | target | |"
    echo "|---|---|---|---|---|---|"
    echo "| $CLIENTS | $d4 | $f4 | $cost | <= 2.5 | $(verdict "$cost" 2.5 le) |"
    echo "| 1 | $d1 | $f1 | $lat (latency) | <= 2.5 | $(verdict "$lat" 2.5 le) |"
    echo
    echo "others' CPU during the rounds: up to $(cut -f6 "$LOGS/routing.tsv" | sort -n | tail -1) % of the machine"
    echo
    echo "per round (round, direct $CLIENTS, front $CLIENTS, direct 1, front 1, others' CPU %): $(tr '\t\n' ' ;' <"$LOGS/routing.tsv")"
    echo
  } | tee -a "$REPORT"
fi

# measure_sizes TAG PINNED SIZES: total cycles/s per size. Each round tops up
# every size's shards first, then measures the sizes back to back (the order
# turned round every other round), so that the sizes of a round see the same
# machine. PINNED=1: pgbench on CORES too; 0: unpinned.
measure_sizes() {
  local tag=$1 pinned=$2 sizes=$3 r n i c tot pids before others
  : >"$LOGS/$tag.tsv"
  for ((r = 1; r <= ROUNDS; r++)); do
    local order
    # shellcheck disable=SC2206,SC2207 # sizes are numbers, split on purpose
    if [ $((r % 2)) = 1 ]; then order=($sizes); else order=($(printf '%s\n' $sizes | sort -rn)); fi
    for n in "${order[@]}"; do
      for ((i = 0; i < n; i++)); do topup "so_b$n" "$i" "$(need_for "$n")" & done
      wait
    done
    for n in "${order[@]}"; do
      pids=()
      cpu_snapshot; before=$SNAP
      for ((i = 0; i < n; i++)); do
        c=$(( CLIENTS / n + (i < CLIENTS % n ? 1 : 0) )); [ "$c" -ge 1 ] || c=1
        ( pin=$CORES; [ "$pinned" = 1 ] || pin=0-$((NCPU - 1))
          pgb "$LOGS/$tag-$r-n$n-s$i.log" "$SO_TMP/s$i" $((SO_PORT + 1 + i)) "so_b$n" \
              test/bench/scaleout_direct.sql "$c" "$pin" >"$LOGS/$tag-$r-n$n-s$i.tps" ) &
        pids+=($!)
      done
      for i in "${pids[@]}"; do wait "$i"; done
      cpu_snapshot; others=$(other_cpu "$before" "$SNAP")
      tot=0
      for ((i = 0; i < n; i++)); do
        t=$(cat "$LOGS/$tag-$r-n$n-s$i.tps")
        if [ "$t" = VOID ] || [ -z "$t" ]; then tot=VOID; break; fi
        tot=$(awk -v a="$tot" -v b="$t" 'BEGIN { printf "%.1f", a + b }')
      done
      [ "$tot" = VOID ] || BEST=$(best "$tot")
      printf '%s\t%s\t%s\t%s\n' "$r" "$n" "$tot" "$others" | tee -a "$LOGS/$tag.tsv"
    done
  done
}

# report_sizes TAG TITLE TARGET-TEXT TARGET
report_sizes() {
  local tag=$1 title=$2 ttext=$3 target=$4 n med ratio
  {
    echo "## $title"
    echo
    echo "| shards | total cycles/s (median) | vs 1 shard (median of per-round ratios) | target | |"
    echo "|---|---|---|---|---|"
    for n in $(cut -f2 "$LOGS/$tag.tsv" | sort -un); do
      med=$(awk -F'\t' -v n="$n" '$2 == n && $3 != "VOID" { print $3 }' "$LOGS/$tag.tsv" | median)
      ratio=$(awk -F'\t' -v n="$n" '$3 != "VOID" { v[$1, $2] = $3 }
               END { for (k in v) { split(k, p, SUBSEP); if (p[2] == n && ((p[1], 1) in v) && v[p[1], 1] > 0) printf "%.3f\n", v[k] / v[p[1], 1] } }' \
               "$LOGS/$tag.tsv" | median)
      if [ "$n" = 1 ]; then
        echo "| 1 | $med | 1 | | |"
      else
        echo "| $n | $med | $ratio | $ttext | $(verdict "$ratio" "$target" ge) |"
      fi
    done
    echo
    echo "others' CPU during the measurements: up to $(cut -f4 "$LOGS/$tag.tsv" | sort -n | tail -1) % of the machine"
    echo
    echo "per round (round, shards, total, others' CPU %): $(tr '\t\n' ' ;' <"$LOGS/$tag.tsv")"
    echo
  } | tee -a "$REPORT"
}

# ---- scaling on the same cores
if [[ " $KINDS " == *" scaling "* ]]; then
  rg_log "scaling: $SIZES shard(s) on cores $CORES, $ROUNDS rounds ($(elapsed))"
  measure_sizes same 1 "$SIZES"
  report_sizes same "Scaling on the same cores ($CORES): claim + complete on the shards directly, $CLIENTS clients split over them" ">= 0.9" 0.9
fi

# ---- one core per shard, where the machine has the cores
if [[ " $KINDS " == *" cores "* ]]; then
  fit=""
  for n in $SIZES; do [ "$n" -gt "$NCPU" ] || fit+="$n "; done
  if [ "$(echo $fit | wc -w)" -ge 2 ]; then
    for ((i = 0; i < max && i < NCPU; i++)); do so_pin "$i" "$i"; done
    rg_log "cores: shard i on core i, sizes $fit($(elapsed))"
    measure_sizes cores 0 "$fit"
    report_sizes cores "One core per shard (shard i on core i; pgbench unpinned)" "(more is better)" 1
  else
    say "## One core per shard: skipped ($NCPU core(s): no two sizes fit)"
  fi
fi
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(elapsed)"
rg_log "report: $REPORT"
