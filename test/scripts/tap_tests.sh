#!/usr/bin/env bash
# test/scripts/tap_tests.sh: run the TAP tests in test/t/*.pl with prove and
# PostgreSQL::Test::Cluster (PGXS's copy of the server PG_CONFIG names, or
# RG_PG's as in test/lib.sh), the way PGXS's
# prove_installcheck would: each test inits and starts its own node with the
# installed PostgreSQL and the installed rungate, so `make install` (make test
# does it) must have run first. Exits non-zero when a test fails.
#
# initdb refuses root: as root, the tests run as the postgres OS user, from a
# temporary copy of test/t and test/fixtures (TESTDIR: logs and nodes under
# its tmp_check/). Installs libipc-run-perl when missing. Bounded by
# RG_TAP_TIMEOUT seconds (default 600). Keep the logs with RG_TAP_KEEP=1.
# RG_TAP_ONLY=002_scheduler runs one test (a glob of test/t/*.pl names).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
case ${RG_PG:-} in
  ''|15) PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} ;;
  *) PG_CONFIG=${PG_CONFIG:-${RG_PG_CACHE:-/work/.cache/pg}/$RG_PG/bin/pg_config} ;;
esac
BINDIR=$("$PG_CONFIG" --bindir)
PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/..   # .../lib/pgxs/src
PERL_LIB=$PGXS_DIR/test/perl
PG_REGRESS=$PGXS_DIR/test/regress/pg_regress

shopt -s nullglob
tests=("$ROOT"/test/t/${RG_TAP_ONLY:-*}.pl)
[ ${#tests[@]} -gt 0 ] || { echo "no test/t/*.pl"; exit 1; }

# ---- dependencies: IPC::Run (libipc-run-perl); prove is in perl itself
deps=(libipc-run-perl)
missing=()
for pkg in "${deps[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = 'install ok installed' ] \
    || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "missing packages (need root): ${missing[*]}"; exit 1; }
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi
command -v prove >/dev/null || { echo "prove not found (perl)"; exit 1; }
[ -f "$PERL_LIB/PostgreSQL/Test/Cluster.pm" ] \
  || { echo "PostgreSQL::Test::Cluster not found in $PERL_LIB (postgresql-server-dev-15, or test/pg-build.sh)"; exit 1; }
[ -x "$PG_REGRESS" ] || { echo "pg_regress not found at $PG_REGRESS"; exit 1; }

# ---- a private working copy, owned by whoever runs the servers
WORK=$(mktemp -d /tmp/rungate-tap.XXXXXX)
cleanup() {
  local pid_file
  # a test cut short by the timeout may leave its node running: stop it
  while IFS= read -r pid_file; do
    as_runner "$BINDIR/pg_ctl" stop -m immediate -D "$(dirname "$pid_file")" >/dev/null 2>&1 || true
  done < <(find "$WORK" -name postmaster.pid 2>/dev/null)
  if [ "${RG_TAP_KEEP:-0}" = 1 ]; then
    echo "RG_TAP_KEEP=1: logs kept in $WORK/tmp_check/log"
  else
    rm -rf "$WORK"
  fi
}
as_runner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
trap cleanup EXIT
mkdir -p "$WORK/t" "$WORK/fixtures"
cp "${tests[@]}" "$WORK/t/"
cp "$ROOT"/test/fixtures/*.sql "$WORK/fixtures/"
[ "$(id -u)" -ne 0 ] || chown -R postgres: "$WORK"
chmod 755 "$WORK"

# ---- prove, with only the environment the tests need (no PG* of make test)
rc=0
(cd "$WORK" && as_runner env -i \
    HOME="$WORK" LANG=C.UTF-8 \
    PATH="$BINDIR:/usr/local/bin:/usr/bin:/bin" \
    PERL5LIB="$PERL_LIB" PG_REGRESS="$PG_REGRESS" TESTDIR="$WORK" \
    RUNGATE_SEED="$WORK/fixtures/seed.sql" \
    ${RUNGATE_CRASH_AFTER:+RUNGATE_CRASH_AFTER="$RUNGATE_CRASH_AFTER"} \
    timeout "${RG_TAP_TIMEOUT:-600}" prove -v t/*.pl) </dev/null || rc=$?

if [ "$rc" -ne 0 ]; then
  echo "---- TAP logs ($WORK/tmp_check/log) ----"
  for f in "$WORK"/tmp_check/log/*; do
    echo "== ${f##*/} (last 80 lines)"
    tail -n 80 "$f"
  done
  exit "$rc"
fi
echo "TAP tests: ok"
