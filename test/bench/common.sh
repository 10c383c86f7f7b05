# test/bench/common.sh: what run.sh and modes.sh share, sourced after
# test/lib.sh: the throwaway cluster's settings and small helpers.

OUT="$RG_ROOT/results/bench"
mkdir -p "$OUT"
T0=$SECONDS

# A 2-core box with a few GB: durable settings (fsync, full page writes), the
# buffers and WAL room for a few minutes of queue churn without a checkpoint
# in the middle of a round; autovacuum as shipped (rungate's own table options
# apply to both queues: the bare one copies them).
BENCH_CONF=("fsync = on" "full_page_writes = on" "synchronous_commit = on"
  "shared_buffers = 512MB" "effective_cache_size = 2GB" "work_mem = 16MB"
  "maintenance_work_mem = 256MB" "wal_buffers = 16MB" "max_wal_size = 8GB"
  "min_wal_size = 1GB" "checkpoint_timeout = 30min"
  "checkpoint_completion_target = 0.9" "max_connections = 50"
  "random_page_cost = 1.1" "max_worker_processes = 4"
  "max_parallel_workers_per_gather = 0" "log_min_messages = warning"
  "log_checkpoints = on" "shared_preload_libraries = 'rungate'")
bench_prepare() {
  rg_prepare "${BENCH_CONF[@]}"
}

q() { psql -X -q -tA -v ON_ERROR_STOP=1 "$@"; }      # q [-d DB] -c SQL
elapsed() { echo "$((SECONDS - T0))s"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
verdict() { awk -v m="$1" -v t="$2" 'BEGIN { print (m != "n/a" && m + 0 >= t + 0) ? "PASS" : "BELOW" }'; }

# CPU used by others while we measure, so a noisy round can be told from a
# slow one: the machine's busy time (/proc/stat, steal included) less ours
# (our postmaster with its children, live and reaped, and this shell's
# children: pgbench, psql), in percent of all cores over the wall time.
# BENCH_EXTRA_PM: the pid of a second postmaster of the benchmark's own (the
# heartbeat mode's baseline cluster), counted as ours too.
cpu_snapshot() {   # SNAP = "wall busy ours" in clock ticks (a global: times
  local pm ours shell hz tf   # must see this shell's children, not a subshell's)
  hz=$(getconf CLK_TCK)
  pm=$(head -1 "${RG_TMP:-/nonexistent}/data/postmaster.pid" 2>/dev/null || echo 0)
  # cat, not awk, opens the files: a process may exit between glob and open
  ours=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$pm" -v pm2="${BENCH_EXTRA_PM:-0}" '
           $1 == pm || ($1 == pm2 && pm2 > 0) { t += $14 + $15 + $16 + $17 }
           $4 == pm || ($4 == pm2 && pm2 > 0) { t += $14 + $15 }
           END { printf "%d", t }') || true   # cat fails on a vanished file
  tf="$OUT/.times.$$"
  times >"$tf"
  shell=$(awk -v hz="$hz" 'NR == 2 { for (i = 1; i <= 2; i++) {
            split($i, a, /[ms]/); t += (a[1] * 60 + a[2]) * hz } } END { printf "%d", t }' "$tf")
  rm -f "$tf"
  SNAP="$(awk -v hz="$hz" '{ printf "%d", $1 * hz }' /proc/uptime)"
  SNAP+=" $(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat) $((ours + shell))"
}
other_cpu() {      # SNAPSHOT_BEFORE SNAPSHOT_AFTER -> percent
  awk -v b="$1" -v a="$2" -v n="$(nproc)" 'BEGIN { split(b, x, " "); split(a, y, " ")
    w = (y[1] - x[1]) * n; o = (y[2] - x[2]) - (y[3] - x[3])
    printf "%d", (w > 0 && o > 0 ? 100 * o / w : 0) }'
}

# fill QUEUE N [DB]: N more queued runs of bench.fill_QUEUE (rungate or
# bare, test/bench/setup.sql), in two sessions (two cores), in
# transactions of at most 100,000 runs
fill() {
  local queue=$1 n=$2 db=${3:-$DB} half=$(($2 / 2))
  fill1() {
    local left=$1 k
    while [ "$left" -gt 0 ]; do
      k=$(( left > 100000 ? 100000 : left ))
      q -d "$db" -c "SELECT bench.fill_$queue($k)" >/dev/null || return 1
      left=$((left - k))
    done
  }
  fill1 "$half" &
  fill1 $((n - half))
  wait $! || rg_die "filling $queue failed"
}

# pg_copy DEST: a copy of $PG_CONFIG's install in DEST (its binaries, share
# and lib directories and server headers, under their longest common parent),
# without rungate; prints the copy's pg_config
pg_copy() {
  local dest=$1 bindir sharedir incdir pkglibdir prefix d rel=() pgc
  bindir=$("$PG_CONFIG" --bindir) sharedir=$("$PG_CONFIG" --sharedir)
  incdir=$("$PG_CONFIG" --includedir-server) pkglibdir=$("$PG_CONFIG" --pkglibdir)
  prefix=$(printf '%s\n' "$(dirname "$bindir")" "$(dirname "$pkglibdir")" "$sharedir" "$(dirname "$incdir")" |
    awk -F/ 'NR == 1 { n = NF; for (i = 1; i <= NF; i++) p[i] = $i; next }
             { for (i = 1; i <= n; i++) if (p[i] != $i) { n = i - 1; break } }
             END { s = ""; for (i = 2; i <= n; i++) s = s "/" p[i]; print s }')
  [ -n "$prefix" ] || rg_die "cannot find the common parent of $bindir, $sharedir, $incdir"
  for d in "$(dirname "$bindir")" "$(dirname "$pkglibdir")" "$sharedir" "$(dirname "$incdir")"; do
    rel+=("${d#"$prefix"/}")
  done
  mapfile -t rel < <(printf '%s\n' "${rel[@]}" | sort -u)
  mkdir -p "$dest"
  (cd "$prefix" && cp -a --parents "${rel[@]}" "$dest/") || rg_die "copying the PostgreSQL install failed"
  pgc=$dest/${bindir#"$prefix"/}/pg_config
  case $("$pgc" --sharedir) in
    "$dest"/*) ;;
    *) rg_die "the copied install is not relocatable (its sharedir is $("$pgc" --sharedir))" ;;
  esac
  rm -f "$("$pgc" --sharedir)"/extension/rungate[.-]* "$("$pgc" --pkglibdir)"/rungate.so
  rm -rf "$("$pgc" --pkglibdir)"/bitcode/rungate "$("$pgc" --pkglibdir)"/bitcode/rungate.index.bc
  echo "$pgc"
}
