# test/scale-out-lib.bash: a front and shard clusters on this machine, for
# test/scale-out.sh (the checks) and test/bench/scaleout.sh (the figures).
# Source it after test/lib.sh, from a bash script with `set -euo pipefail`.
#
#   so_prepare            deps (postgresql-15-plproxy), plproxy in PG_CONFIG's
#                         tree, contrib/rungate_proxy installed
#   so_start N [CPUS...]  a front and N shard clusters, removed at exit
#                         (RG_KEEP=1 keeps them); shard i pinned to CPUS[i]
#                         (or to CPUS[0] when only one is given) with taskset
#   so_layout NAME N      database NAME on the front and on shards 0 .. N-1:
#                         rungate and rungate_shard on the shards, plproxy and
#                         rungate_proxy on the front with the cluster
#                         rungate_shards over those N databases (modular_mapping
#                         when N is not a power of two), configured
#   so_front NAME         psql on the front's database NAME (args follow)
#   so_shard I NAME       psql on shard I's database NAME (args follow)
#   so_dsn I NAME         the libpq connection string of shard I's NAME
#   so_pin NODE CPUS      re-pin a running server (front or shard index)
#
# Clusters: unix sockets only, each in a directory of its own, ports
# SO_PORT (front) and SO_PORT + 1 + i (shard i).

SO_PORT=${SO_PORT:-54360}
SO_TMP=
[ -n "${SO_CONF+x}" ] || SO_CONF=()

so_prepare() {
  rg_install_deps postgresql-15-plproxy
  rg_pg_paths
  local sharedir pkg f dst
  sharedir=$("$PG_CONFIG" --sharedir)
  # a relocated copy of the server (a developer's private PG_CONFIG) lacks
  # the package's files: copy them in from the system tree
  if [ ! -f "$RG_PKGLIBDIR/plproxy.so" ] || [ ! -f "$sharedir/extension/plproxy.control" ]; then
    pkg=$(dpkg -L postgresql-15-plproxy) || rg_die "postgresql-15-plproxy is not installed"
    while IFS= read -r f; do
      [ -f "$f" ] || continue
      case "$f" in
        /usr/lib/postgresql/15/lib/*) dst=$RG_PKGLIBDIR/${f#/usr/lib/postgresql/15/lib/} ;;
        /usr/share/postgresql/15/*)   dst=$sharedir/${f#/usr/share/postgresql/15/} ;;
        *) continue ;;
      esac
      mkdir -p "$(dirname "$dst")" && cp "$f" "$dst"
    done <<<"$pkg"
  fi
  [ -f "$RG_PKGLIBDIR/rungate.so" ] || rg_die "rungate is not installed (make install)"
  rg_make -C contrib/rungate_proxy install >/dev/null || rg_die "installing contrib/rungate_proxy failed"
}

# so__init DIR PORT [conf-line...]: DIR/data from the template, for PORT.
so__init() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir"
  cp -a "$SO_TMP/template/data" "$dir/data"
  {
    echo "# scale-out cluster"
    echo "unix_socket_directories = '$dir'"
    echo "port = $port"
    printf '%s\n' "$@"
  } >>"$dir/data/postgresql.conf"
  [ "$(id -u)" -ne 0 ] || chown -R postgres: "$dir"
}

# so__start DIR [CPU]: start DIR/data, pinned to CPU (a taskset list) if given.
so__start() {
  local dir=$1 cpu=${2:-} pin=()
  [ -z "$cpu" ] || pin=(taskset -c "$cpu")
  rg_as_pg "${pin[@]}" "$RG_BINDIR/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/server.log" >/dev/null 2>&1 \
    || { echo "--- server log ($dir/server.log):" >&2; cat "$dir/server.log" >&2
         rg_die "server in $dir failed to start"; }
}

so_start() {
  local n=$1 i cpu; shift
  local cpus=("$@")
  SO_TMP=$(mktemp -d /tmp/rungate-scaleout.XXXXXX)
  chmod 755 "$SO_TMP"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$SO_TMP"
  rg_on_exit so__at_exit
  rg_log "starting a front and $n shard cluster(s) in $SO_TMP"
  mkdir -p "$SO_TMP/template"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$SO_TMP/template"
  rg__init "$SO_TMP/template" "$SO_PORT" "max_connections = 100" "${SO_CONF[@]}"
  so__init "$SO_TMP/front" "$SO_PORT" "shared_preload_libraries = ''"
  so__start "$SO_TMP/front"
  for ((i = 0; i < n; i++)); do
    so__init "$SO_TMP/s$i" $((SO_PORT + 1 + i))
    cpu=
    if [ ${#cpus[@]} -gt 0 ]; then cpu=${cpus[i]:-${cpus[0]}}; fi
    so__start "$SO_TMP/s$i" "$cpu"
  done
}

# so_pin NODE CPU: move a server (NODE: front, or a shard's index) to CPU, a
# taskset list: its postmaster and every process it has now (backends forked
# later inherit the postmaster's affinity).
so_pin() {
  local dir=$SO_TMP/s$1 pm pid
  [ "$1" != front ] || dir=$SO_TMP/front
  pm=$(head -n1 "$dir/data/postmaster.pid")
  for pid in "$pm" $(ps -o pid= --ppid "$pm"); do
    taskset -a -p -c "$2" "$pid" >/dev/null 2>&1 || true
  done
}

so__at_exit() {
  [ -n "$SO_TMP" ] || return 0
  if [ "${RG_KEEP:-0}" = 1 ]; then
    echo "RG_KEEP=1: clusters left running in $SO_TMP (front: host=$SO_TMP/front port=$SO_PORT)"
    return 0
  fi
  local d
  for d in "$SO_TMP"/front "$SO_TMP"/s*; do
    [ -f "$d/data/postmaster.pid" ] || continue
    rg_as_pg "$RG_BINDIR/pg_ctl" stop -w -m immediate -D "$d/data" >/dev/null 2>&1 || true
  done
  rm -rf "$SO_TMP"
  SO_TMP=
}

so_dsn() { echo "host=$SO_TMP/s$1 port=$((SO_PORT + 1 + $1)) dbname=$2"; }

so_front() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -h "$SO_TMP/front" -p "$SO_PORT" -U postgres -d "$db" "$@"; }

so_shard() {
  local i=$1 db=$2; shift 2
  psql -X -q -v ON_ERROR_STOP=1 -h "$SO_TMP/s$i" -p $((SO_PORT + 1 + i)) -U postgres -d "$db" "$@"
}

so_layout() {
  local db=$1 n=$2 i opts=()
  for ((i = 0; i < n; i++)); do
    so_shard "$i" postgres -c "CREATE DATABASE $db" >/dev/null
    so_shard "$i" "$db" -c 'CREATE EXTENSION rungate' -c 'CREATE EXTENSION rungate_shard' >/dev/null
    opts+=("p$i '$(so_dsn "$i" "$db")'")
  done
  # PL/Proxy maps by hash & (N - 1), for a power of two; other counts by abs(hash % N)
  (( (n & (n - 1)) == 0 )) || opts+=("modular_mapping '1'")
  so_front postgres -c "CREATE DATABASE $db" >/dev/null
  local IFS=,
  so_front "$db" >/dev/null <<SQL
CREATE EXTENSION plproxy;
CREATE SERVER rungate_shards FOREIGN DATA WRAPPER plproxy OPTIONS (${opts[*]});
CREATE USER MAPPING FOR PUBLIC SERVER rungate_shards OPTIONS (user 'postgres');
CREATE EXTENSION rungate_proxy;
SELECT * FROM rungate_proxy.configure_shards();
SELECT * FROM rungate_proxy.check_shards();
SQL
}
