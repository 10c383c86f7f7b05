# test/lib.sh: shared helpers for rungate's test, demo and dev scripts.
#
# Source it from a bash script running with `set -euo pipefail`. It defines
# functions (rg_*), a composable EXIT trap (rg_on_exit) and a few variables:
#   RG_ROOT    the repository root
#   PG_CONFIG  the server's pg_config: RG_PG=<major> (make test PG=<major>)
#              picks 15's packages or test/pg-build.sh's tree of that major;
#              else PG_CONFIG from the environment, else PostgreSQL 15's
# Clusters are reached by unix socket only, in a directory of their own, so
# they never collide with another server. Commands that touch a data
# directory run as the `postgres` OS user when we are root (initdb refuses root).

RG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RG_PG_CACHE=${RG_PG_CACHE:-/work/.cache/pg}
case ${RG_PG:-} in
  '') PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} ;;
  15) PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config ;;
  *) PG_CONFIG=$RG_PG_CACHE/$RG_PG/bin/pg_config ;;
esac
if [ -n "${RG_PG:-}" ] && [ "$RG_PG" != 15 ]; then
  # the server, pgTAP and the TAP modules come from test/pg-build.sh
  RG_DEPS=(libtap-parser-sourcehandler-pgtap-perl libipc-run-perl make gcc)
else
  RG_DEPS=(postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
           libtap-parser-sourcehandler-pgtap-perl make gcc)
fi
RG_PORT=54329                 # throwaway clusters (socket in their own dir)
RG_DEV_DIR=/tmp/rungate-dev   # the persistent development cluster
RG_DEV_PORT=54400

rg_log() { printf '==> %s\n' "$*"; }
rg_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---- exit handlers: rg_on_exit CMD; run last-registered first, on any exit.
# A handler may change RG_EXIT_STATUS, the script's final exit status.
RG_EXIT_HANDLERS=()
rg_on_exit() { RG_EXIT_HANDLERS+=("$1"); }
rg__exit() {
  RG_EXIT_STATUS=$?
  trap '' INT TERM HUP   # a second signal must not cut the clean-up short
  local i
  for ((i = ${#RG_EXIT_HANDLERS[@]} - 1; i >= 0; i--)); do
    eval "${RG_EXIT_HANDLERS[i]}" || true
  done
  exit "$RG_EXIT_STATUS"
}
trap rg__exit EXIT
# on a signal, ignore the next ones (make forwards SIGTERM to its children) and exit
trap "trap '' INT TERM HUP; exit 130" INT
trap "trap '' INT TERM HUP; exit 143" TERM
trap "trap '' INT TERM HUP; exit 129" HUP

# Run a command as the postgres OS user (directly if we are not root).
rg_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# rg_install_deps [extra-package...]: apt-get install whatever is missing;
# with RG_PG set (not 15), that major's tree too (test/pg-build.sh).
rg_install_deps() {
  local pkg missing=()
  if [ -n "${RG_PG:-}" ] && [ "$RG_PG" != 15 ]; then
    bash "$RG_ROOT/test/pg-build.sh" "$RG_PG" >/dev/null \
      || rg_die "PostgreSQL $RG_PG could not be set up (test/pg-build.sh $RG_PG)"
  fi
  for pkg in "${RG_DEPS[@]}" "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = 'install ok installed' ] \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || rg_die "missing packages (need root to install): ${missing[*]}"
  rg_log "installing ${missing[*]}"
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]]; then
    # fresh server install: no auto-created 'main' cluster, ours are private
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/rungate-ci.conf
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null || rg_die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null \
    || rg_die "apt-get install ${missing[*]} failed"
}

# Locate the PostgreSQL install; put its bindir first on PATH.
rg_pg_paths() {
  [ -x "$PG_CONFIG" ] || rg_die "$PG_CONFIG not found (install postgresql-server-dev-15, or run test/pg-build.sh <major>)"
  RG_BINDIR=$("$PG_CONFIG" --bindir)
  RG_PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
  export PG_CONFIG RG_BINDIR RG_PKGLIBDIR RG_ROOT
  case ":$PATH:" in *":$RG_BINDIR:"*) ;; *) export PATH="$RG_BINDIR:$PATH" ;; esac
}

# Run make in the repository, free of any calling make's job server.
rg_make() {
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$RG_ROOT" --no-print-directory \
    PG_CONFIG="$PG_CONFIG" "$@"
}

rg_build_install() {
  rg_pg_paths
  rg_log "server: $("$PG_CONFIG" --version) ($PG_CONFIG)"
  rg_log "building rungate"
  rg_make -s -j2 || rg_die "build failed"
  rg_log "installing rungate"
  rg_make install >/dev/null || rg_die "make install failed"
}

# rg__init DIR PORT [conf-line...]: initdb DIR/data for a socket-only server.
rg__init() {
  local dir=$1 port=$2; shift 2
  rg_as_pg "$RG_BINDIR/initdb" -D "$dir/data" -U postgres -A trust --no-sync \
    -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; rg_die "initdb failed"; }
  {
    echo "# rungate test settings"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$dir'"
    echo "port = $port"
    echo "max_connections = 50"
    echo "fsync = off"
    echo "synchronous_commit = off"
    echo "full_page_writes = off"
    echo "max_prepared_transactions = 10"
    # the authority cache needs it (a later conf line may replace it)
    echo "shared_preload_libraries = 'rungate'"
    # no scheduler in the suites' clusters: tests call reap_expired and
    # run_schedules themselves (test/t/002_scheduler.pl runs it)
    echo "rungate.scheduler = off"
    printf '%s\n' "$@"
  } >>"$dir/data/postgresql.conf"
}

# rg__start DIR: start the server of DIR/data, logging to DIR/server.log.
rg__start() {
  local dir=$1
  rg_as_pg "$RG_BINDIR/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/server.log" >/dev/null 2>&1 \
    || { echo "--- server log ($dir/server.log):" >&2; cat "$dir/server.log" >&2
         rg_die "server failed to start"; }
}

# rg__env DIR PORT DB: export the connection environment for that server.
rg__env() {
  export PGHOST=$1 PGPORT=$2 PGUSER=postgres PGDATABASE=$3
}

rg_print_env() {
  echo "export PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=$PGUSER PGDATABASE=$PGDATABASE"
  echo "export PATH=\"$RG_BINDIR:\$PATH\""
}

# rg_cluster_start [postgresql.conf line...]: a throwaway cluster, removed at
# exit (unless RG_KEEP=1), even on failure or interrupt.
rg_cluster_start() {
  rg_pg_paths
  RG_TMP=$(mktemp -d /tmp/rungate-test.XXXXXX)
  chmod 755 "$RG_TMP"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$RG_TMP"
  rg_on_exit rg__cluster_at_exit
  rg_log "starting a throwaway cluster in $RG_TMP"
  rg__init "$RG_TMP" "$RG_PORT" "$@"
  rg__start "$RG_TMP"
  rg__env "$RG_TMP" "$RG_PORT" postgres
}

rg__cluster_at_exit() {
  if [ "${RG_KEEP:-0}" = 1 ] && [ -n "${RG_TMP:-}" ]; then
    echo "RG_KEEP=1: cluster left running in $RG_TMP; use it with:"
    rg_print_env
    echo "stop it with: runuser -u postgres -- $RG_BINDIR/pg_ctl stop -D $RG_TMP/data && rm -rf $RG_TMP"
    return 0
  fi
  rg_cluster_stop
}

# Stop the throwaway cluster (immediate: nothing to keep) and remove it. Quiet.
rg_cluster_stop() {
  [ -n "${RG_TMP:-}" ] || return 0
  if [ -f "$RG_TMP/data/postmaster.pid" ]; then
    rg_as_pg "$RG_BINDIR/pg_ctl" stop -w -m immediate -D "$RG_TMP/data" >/dev/null 2>&1 || true
  fi
  rm -rf "$RG_TMP"
  RG_TMP=
}

# Use the running development cluster of test/dev.sh.
rg_dev_use() {
  rg_pg_paths
  rg__env "$RG_DEV_DIR" "$RG_DEV_PORT" postgres
  "$RG_BINDIR/pg_isready" -q \
    || rg_die "no dev cluster on $RG_DEV_DIR:$RG_DEV_PORT; run: bash test/dev.sh start"
  rg__restart "$RG_DEV_DIR"
  rg_log "using the dev cluster in $RG_DEV_DIR (RG_DEV=1)"
}

# rg__restart DIR: restart the server of DIR/data, so that it preloads the
# rungate just installed (shared_preload_libraries keeps the old one).
rg__restart() {
  rg_as_pg "$RG_BINDIR/pg_ctl" restart -w -t 60 -D "$1/data" -l "$1/server.log" >/dev/null 2>&1 \
    || { echo "--- server log ($1/server.log):" >&2; tail -20 "$1/server.log" >&2
         rg_die "server failed to restart"; }
}

# rg_prepare [postgresql.conf line...]: deps (plus RG_EXTRA_DEPS, a
# space-separated package list), build, install, then a throwaway cluster; or,
# when RG_DEV=1, the running dev cluster (no deps; conf lines are ignored).
rg_prepare() {
  if [ "${RG_DEV:-0}" = 1 ]; then
    rg_build_install
    rg_dev_use
  else
    # shellcheck disable=SC2086 # a list of package names
    rg_install_deps ${RG_EXTRA_DEPS:-}
    rg_build_install
    rg_cluster_start "$@"
  fi
}
