#!/usr/bin/env bash
# test/dev.sh: a persistent development cluster in /tmp/rungate-dev (port
# 54400, unix socket in that directory) that survives between commands.
#   start          install deps, build and install rungate, init (first time)
#                  and start the cluster, create database rungate_dev, print env
#   stop           stop it (data kept)
#   destroy        stop it and remove /tmp/rungate-dev
#   status         is it running?
#   psql [args]    psql into rungate_dev
#   env            exports to use it: eval "$(bash test/dev.sh env)"
# With it running, `RG_DEV=1 make test` (or bash test/run-tests.sh) reuses it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR=$RG_DEV_DIR
running() { [ -f "$DIR/data/postmaster.pid" ] && "$RG_BINDIR/pg_isready" -q; }

cmd=${1:-}
[ $# -eq 0 ] || shift
case "$cmd" in
  start)
    rg_install_deps
    rg_build_install
    rg__env "$DIR" "$RG_DEV_PORT" rungate_dev
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
      rm -rf "$DIR" && mkdir -p "$DIR" && chmod 755 "$DIR"
      [ "$(id -u)" -ne 0 ] || chown postgres: "$DIR"
      rg_log "initializing the dev cluster in $DIR"
      rg__init "$DIR" "$RG_DEV_PORT" "$@"
    fi
    if running; then
      rg__restart "$DIR"
      rg_log "dev cluster restarted in $DIR (it preloads the new build)"
    else
      rg__start "$DIR"
      rg_log "dev cluster started in $DIR (log: $DIR/server.log)"
    fi
    psql -X -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'rungate_dev'" \
      | grep -q 1 || psql -X -q -d postgres -c 'CREATE DATABASE rungate_dev'
    echo "# use it with: eval \"\$(bash test/dev.sh env)\""
    rg_print_env
    ;;
  stop|destroy)
    rg_pg_paths
    if [ -f "$DIR/data/postmaster.pid" ]; then
      rg_as_pg "$RG_BINDIR/pg_ctl" stop -w -m fast -D "$DIR/data" >/dev/null
      rg_log "dev cluster stopped"
    fi
    if [ "$cmd" = destroy ]; then rm -rf "$DIR"; rg_log "removed $DIR"; fi
    ;;
  status)
    rg_pg_paths
    rg__env "$DIR" "$RG_DEV_PORT" rungate_dev
    if running; then echo "running in $DIR, port $RG_DEV_PORT"; else echo "not running"; exit 1; fi
    ;;
  psql)
    rg_pg_paths
    rg__env "$DIR" "$RG_DEV_PORT" rungate_dev
    exec psql -X "$@"
    ;;
  env)
    rg_pg_paths >/dev/null
    rg__env "$DIR" "$RG_DEV_PORT" rungate_dev
    rg_print_env
    ;;
  *)
    sed -n '2,12s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
