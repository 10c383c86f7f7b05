#!/usr/bin/env bash
# test/bench/versus.sh (make bench-versus): this tree's make bench ratios
# against another commit's (BASE, default 1.5's last commit aafad6a), side by
# side in one run on one machine (issue 15: no speed lost). Not part of make
# test; it reports, never asserts: the exit status is non-zero only when the
# comparison itself breaks (a build fails, a run fails or reports nothing).
#
# Each side gets a PostgreSQL install of its own (an install holds one version
# of an extension): a copy of $PG_CONFIG's, which finds its share and lib
# directories relative to itself, with its rungate removed. BASE is checked out
# as a temporary git worktree, this tree (uncommitted changes included) is
# copied as it is when the run starts; both live in a directory under /tmp,
# removed at the end. Both sides run the benchmark scripts of this tree
# (test/bench and test/lib.sh are copied over BASE's), so the two are measured
# the same way; they must use only what BASE's rungate has.
#
# For every cell (a kind, and for claim, cycle and batch a synchronous_commit
# setting) and every round, the bench driver (run.sh, or modes.sh through it)
# runs once for BASE and once for this tree, one after the other, the order
# swapped every round; each run builds its own throwaway cluster and prints
# its own figure (the rungate against bare ratio for claim, cycle and batch),
# read from its output. The report: per figure the median over the rounds of
# each side, head against base, and a verdict.
#
#   claim, cycle, batch   run.sh, BENCH_KINDS=<kind> BENCH_SYNC=<off|on>:
#                         rungate against the bare queue, median of its rounds
#   scale                 run.sh, BENCH_SCALE=1: claims/s at 1,000,000 queued
#                         against 10,000
#   pileup                modes.sh: pile blocked/s against plain claims/s
#   sustained             modes.sh: last minute's throughput against the first
#   memory                modes.sh: growth after warm-up of the memory
#                         contexts and of RssAnon, in MB (lower is better)
#
# Environment (defaults in parentheses):
#   BENCH_VERSUS_BASE (aafad6a)    the commit to compare against (make: BASE=)
#   BENCH_VERSUS_ROUNDS (3)        runs per side and cell
#   BENCH_VERSUS_KINDS (claim cycle batch scale pileup sustained memory)
#   BENCH_VERSUS_SYNC ("off on")   synchronous_commit of claim, cycle, batch
#   BENCH_VERSUS_MEMORY_SLACK_MB (0.25)  memory: head at most this much above
#                                  base is the same (contexts grow by blocks)
#   BENCH_VERSUS_TMP (/tmp)        where the work directory is made
#   BENCH_MINUTES (2 here)         sustained's minutes; every other BENCH_*
#                                  variable (BENCH_ROUNDS, BENCH_SECONDS,
#                                  BENCH_MEMORY_CLAIMS, ...) goes to the driver
#   PG_CONFIG                      the PostgreSQL install that is copied
# Output: results/bench/versus.md; each run's output in results/bench/versus/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
source "$here/common.sh"

BASE=${BENCH_VERSUS_BASE:-aafad6a}
ROUNDS=${BENCH_VERSUS_ROUNDS:-3}
KINDS=${BENCH_VERSUS_KINDS:-claim cycle batch scale pileup sustained memory}
SYNCS=${BENCH_VERSUS_SYNC:-off on}
SLACK=${BENCH_VERSUS_MEMORY_SLACK_MB:-0.25}
export BENCH_MINUTES=${BENCH_MINUTES:-2}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || rg_die "BENCH_VERSUS_ROUNDS must be a positive number (got '$ROUNDS')"
for k in $KINDS; do
  case $k in
    claim | cycle | batch | scale | pileup | sustained | memory) ;;
    *) rg_die "unknown kind '$k' in BENCH_VERSUS_KINDS (claim cycle batch scale pileup sustained memory)" ;;
  esac
done
for s in $SYNCS; do
  case $s in on | off) ;; *) rg_die "BENCH_VERSUS_SYNC: on or off (got '$s')" ;; esac
done

# the cells, in the order they run each round
CELLS=()
for k in $KINDS; do
  case $k in
    claim | cycle | batch) for s in $SYNCS; do CELLS+=("$k-$s"); done ;;
    *) CELLS+=("$k") ;;
  esac
done
[ ${#CELLS[@]} -gt 0 ] || rg_die "nothing to measure (BENCH_VERSUS_KINDS, BENCH_VERSUS_SYNC)"

rg_install_deps
rg_pg_paths
BASE_SHA=$(git -C "$RG_ROOT" rev-parse --verify -q "$BASE^{commit}") \
  || rg_die "BASE $BASE is not a commit of $RG_ROOT"
ctlver() { sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p"; }
BASE_LABEL="$(git -C "$RG_ROOT" rev-parse --short "$BASE_SHA") (rungate $(git -C "$RG_ROOT" show "$BASE_SHA:rungate.control" | ctlver))"
HEAD_LABEL="$(git -C "$RG_ROOT" rev-parse --short HEAD) (rungate $(ctlver <"$RG_ROOT/rungate.control"))"
git -C "$RG_ROOT" status --porcelain | grep -q . && HEAD_LABEL+=" with uncommitted changes"

# ---------------------------------------------------------------------------
# the two sides: sources, PostgreSQL installs, builds
# ---------------------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_VERSUS_TMP:-/tmp}/rungate-versus.XXXXXX")
case $WORK/ in "$RG_ROOT"/*) rmdir "$WORK"; rg_die "BENCH_VERSUS_TMP must be outside the repository" ;; esac
chmod 755 "$WORK"
versus_at_exit() {
  if [ -d "$WORK/base/src" ]; then
    git -C "$RG_ROOT" worktree remove --force "$WORK/base/src" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  git -C "$RG_ROOT" worktree prune >/dev/null 2>&1 || true
}
rg_on_exit versus_at_exit
LOGS=$OUT/versus
rm -rf "$LOGS"
mkdir -p "$LOGS"

declare -A SRC PGC
rg_log "work directory $WORK; base $BASE_LABEL, head $HEAD_LABEL ($(elapsed))"
# head: this tree as it is now (tracked and untracked files, not the ignored
# ones), so edits made while the comparison runs do not reach it
SRC[head]=$WORK/head/src
mkdir -p "${SRC[head]}"
(cd "$RG_ROOT" && git ls-files -z -co --exclude-standard |
   tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -x -C "${SRC[head]}" \
  || rg_die "copying this tree failed"
# base: a worktree of BASE, with this tree's benchmark scripts
SRC[base]=$WORK/base/src
mkdir -p "$WORK/base"
git -C "$RG_ROOT" worktree add -q --detach "${SRC[base]}" "$BASE_SHA" \
  || rg_die "git worktree add $BASE failed"
rm -rf "${SRC[base]}/test/bench"
cp -a "${SRC[head]}/test/bench" "${SRC[base]}/test/bench"
cp -a "${SRC[head]}/test/lib.sh" "${SRC[base]}/test/lib.sh"

for side in base head; do
  rg_log "$side: a copy of $("$PG_CONFIG" --version) ($PG_CONFIG), build, install ($(elapsed))"
  PGC[$side]=$(pg_copy "$WORK/$side/pg")
  if ! { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "${SRC[$side]}" -s -j2 PG_CONFIG="${PGC[$side]}" &&
         env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "${SRC[$side]}" install PG_CONFIG="${PGC[$side]}"; } \
       >"$LOGS/build.$side.log" 2>&1; then
    tail -40 "$LOGS/build.$side.log" >&2
    rg_die "building $side failed (log: $LOGS/build.$side.log)"
  fi
  chmod -R go+rX "$WORK/$side"   # the servers run as postgres
  # what CREATE EXTENSION will install there: this side's version, nothing else
  v=$(ctlver <"$("${PGC[$side]}" --sharedir)/extension/rungate.control")
  [ "$v" = "$(ctlver <"${SRC[$side]}/rungate.control")" ] \
    || rg_die "$side: the copy's rungate.control says $v, the source $(ctlver <"${SRC[$side]}/rungate.control")"
  rg_log "$side: rungate $v installed in $("${PGC[$side]}" --sharedir | sed 's|/share/.*||')"
done
chmod 755 "$WORK/base" "$WORK/head"

# ---------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------
# figures of a cell: "name|direction|how to read it from the run's output";
# direction hi: higher is better (head against base is head / base), lo:
# lower is better (base / head)
figures() {
  case $1 in
    claim-* | cycle-* | batch-*) echo "rungate / bare runs/s|hi|ratio" ;;
    scale) echo "claims/s at 1,000,000 queued / at 10,000|hi|scale" ;;
    pileup) echo "pile blocked/s / plain claims/s|hi|pileup" ;;
    sustained) echo "throughput last minute / first|hi|sustained" ;;
    memory) echo "memory contexts growth after warm-up, MB|lo|memctx"
            echo "RssAnon growth after warm-up, MB|lo|memanon" ;;
  esac
}
# read_figure HOW LOG: the figure, or n/a
read_figure() {
  local v
  case $1 in
    ratio) v=$(sed -nE 's/^  median: rungate .* ratio ([^ ]+) \(target.*/\1/p' "$2") ;;
    scale) v=$(sed -nE 's/^  median: .* at 1,000,000; ratio ([^ ]+) \(target.*/\1/p' "$2") ;;
    pileup) v=$(sed -nE 's|^  pile blocked/s / plain claims/s +([^ ]+) +\(target.*|\1|p' "$2") ;;
    sustained) v=$(sed -nE 's|^  throughput minute [0-9]+ / minute 1 +([^ ]+) +\(target.*|\1|p' "$2") ;;
    memctx) v=$(sed -nE 's/^  memory contexts growth, warm to end \(MB\) +([^ ]+) +\(target.*/\1/p' "$2") ;;
    memanon) v=$(sed -nE 's/^  RssAnon growth, warm to end \(MB\) +([^ ]+) +\(target.*/\1/p' "$2") ;;
  esac
  v=$(tail -1 <<<"$v")
  [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && echo "$v" || echo n/a
}
cell_title() {
  case $1 in
    *-off | *-on) echo "${1%-*}, synchronous_commit ${1##*-}" ;;
    *) echo "$1" ;;
  esac
}

VALUES=$WORK/values   # lines: cell|figure|side|round|value|others' CPU %
: >"$VALUES"
FAILED=0
# run_cell SIDE CELL ROUND: one run of the driver; its figures into VALUES
run_cell() {
  local side=$1 cell=$2 round=$3 log rc=0 o fig dir how v line=""
  local envs=(-u BENCH_MODE -u BENCH_SCALE -u BENCH_KINDS -u BENCH_SYNC -u RG_KEEP -u RG_DEV
              -u RG_PG -u MAKEFLAGS -u MFLAGS -u MAKELEVEL PG_CONFIG="${PGC[$side]}")
  case $cell in
    claim-* | cycle-* | batch-*) envs+=(BENCH_KINDS="${cell%-*}" BENCH_SYNC="${cell##*-}") ;;
    scale) envs+=(BENCH_SCALE=1) ;;
    *) envs+=(BENCH_MODE="$cell") ;;
  esac
  log=$LOGS/$cell.$side.$round.log
  env "${envs[@]}" bash "${SRC[$side]}/test/bench/run.sh" >"$log" 2>&1 </dev/null || rc=$?
  o=$(grep -oE 'others used [0-9]+% CPU' "$log" | grep -oE '[0-9]+' | sort -n | tail -1 || true)
  while IFS='|' read -r fig dir how; do
    v=$(read_figure "$how" "$log")
    [ "$rc" = 0 ] || v=n/a
    echo "$cell|$fig|$side|$round|$v|${o:-?}" >>"$VALUES"
    line+=" $v"
  done < <(figures "$cell")
  if [ "$rc" != 0 ] || [[ $line == *n/a* ]]; then
    FAILED=$((FAILED + 1))
    echo "  $side:$line: the run failed or reported no figure (exit $rc; log: $log); its last lines:" >&2
    tail -15 "$log" | sed 's/^/    /' >&2
  fi
  printf '  %-4s%s   (others used %s%% CPU; %s)\n' "$side" "$line" "${o:-?}" "$(elapsed)"
}

rg_log "${#CELLS[@]} cells x $ROUNDS rounds x 2 sides: ${CELLS[*]} ($(elapsed))"
for ((r = 1; r <= ROUNDS; r++)); do
  for cell in "${CELLS[@]}"; do
    echo "== round $r of $ROUNDS: $(cell_title "$cell") ($(elapsed))"
    if ((r % 2)); then order=(base head); else order=(head base); fi
    for side in "${order[@]}"; do run_cell "$side" "$cell" "$r"; done
  done
done

# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------
median() {   # median of the numbers on stdin (n/a for none)
  grep -E '^-?[0-9]' | sort -g | awk '{ a[NR] = $1 }
    END { if (NR == 0) print "n/a"
          else printf "%.3f\n", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
vals() {   # vals CELL FIGURE SIDE: the values in round order, space-separated
  awk -F'|' -v c="$1" -v f="$2" -v s="$3" '$1 == c && $2 == f && $3 == s { print $4, $5 }' "$VALUES" |
    sort -n | awk '{ printf "%s%s", (NR > 1 ? " " : ""), $2 }'
}
cpumax() {   # cpumax CELL SIDE
  awk -F'|' -v c="$1" -v s="$2" '$1 == c && $3 == s && $6 ~ /^[0-9]+$/ && $6 + 0 > m { m = $6 + 0 }
    END { print m + 0 }' "$VALUES"
}
MD=$OUT/versus.md
ROWS=$WORK/rows
: >"$ROWS"
BELOW=0
echo
echo "== head against base"
for cell in "${CELLS[@]}"; do
  while IFS='|' read -r fig dir how; do
    bv=$(vals "$cell" "$fig" base) hv=$(vals "$cell" "$fig" head)
    bm=$(tr ' ' '\n' <<<"$bv" | median) hm=$(tr ' ' '\n' <<<"$hv" | median)
    read -r x verdict < <(awk -v b="$bm" -v h="$hm" -v d="$dir" -v s="$SLACK" 'BEGIN {
      if (b == "n/a" || h == "n/a") { print "n/a n/a"; exit }
      if (d == "hi") { x = (b > 0 ? sprintf("%.3f", h / b) : "n/a") }
      else { x = (h > 0 ? sprintf("%.3f", b / h) : (b > 0 ? "inf" : "1.000")) }
      if (x != "n/a" && (x == "inf" || x + 0 >= 0.95)) v = "same"
      else if (d == "lo" && h - b <= s + 0) v = "same(slack)"
      else v = "BELOW"
      print x, v }')
    case $verdict in
      'same(slack)') verdict="same (within $SLACK MB)" ;;
      BELOW | n/a) BELOW=$((BELOW + 1)) ;;
    esac
    printf '  %-34s %-42s base %-7s head %-7s head against base %-6s %s\n' \
      "$(cell_title "$cell")" "$fig" "$bm" "$hm" "$x" "$verdict"
    echo "| $(cell_title "$cell") | $fig | $bm | $hm | $x | $verdict | $bv | $hv | $(cpumax "$cell" base)% / $(cpumax "$cell" head)% |" >>"$ROWS"
  done < <(figures "$cell")
done

conf() { echo "${!1:-$2}"; }   # conf NAME DEFAULT: the variable's value, else DEFAULT
{
  echo "# rungate against $BASE_LABEL: the make bench figures side by side"
  echo
  echo "\`make bench-versus\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $(elapsed)): base $BASE_LABEL," \
       "head $HEAD_LABEL. Each side on its own copy of the same PostgreSQL install, measured by"
  echo "this tree's test/bench scripts; per cell and round one run of the driver per side, one"
  echo "after the other (the order swapped every round), each run in a throwaway cluster of its"
  echo "own; $ROUNDS rounds, medians. Head against base is head / base, or base / head where lower"
  echo "is better (memory): 1 or more means head is as good. Verdict: same at 0.95 or more"
  echo "(memory: also when head is at most $SLACK MB above base), else BELOW. Others' CPU: the"
  echo "most that processes outside the benchmark used in any round of the cell (base / head)."
  echo
  echo "| cell | figure | base (median) | head (median) | head against base | verdict | base per round | head per round | others' CPU (max) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  cat "$ROWS"
  echo
  echo '```'
  echo "server: $("$PG_CONFIG" --version) (copies of $("$PG_CONFIG" --bindir))"
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); memory: $(free -g | awk '/^Mem:/ {print $2}') GB"
  echo "per run: BENCH_CLIENTS=$(conf BENCH_CLIENTS 4) BENCH_THREADS=$(conf BENCH_THREADS 2)" \
       "BENCH_ROUNDS=$(conf BENCH_ROUNDS 'default (5; scale 9)') BENCH_SECONDS=$(conf BENCH_SECONDS 5)" \
       "BENCH_MINUTES=$BENCH_MINUTES BENCH_MEMORY_CLAIMS=$(conf BENCH_MEMORY_CLAIMS 1000000)"
  env | grep -E '^BENCH_' | grep -vE '^BENCH_(CLIENTS|THREADS|ROUNDS|SECONDS|MINUTES|MEMORY_CLAIMS)=' | sort | sed 's/^/env: /' || true
  echo "each run's output: results/bench/versus/<cell>.<side>.<round>.log"
  echo '```'
} >"$MD"
echo
echo "== $MD ($(elapsed))"
cat "$MD"
[ "$FAILED" = 0 ] || rg_die "$FAILED runs failed or reported no figure (logs in $LOGS)"
[ "$BELOW" = 0 ] || echo "note: $BELOW figures BELOW (or n/a) base"
