#!/usr/bin/env bash
# test/scale-out.sh: rungate scaled out behind PL/Proxy (docs/scale-out.md),
# checked through the front with 1, 2 and 4 shards (`make test-scaleout`;
# test/scripts/scale_out.sh runs it with 2 shards inside `make test`).
#
# Starts a front and max(SCALEOUT_SHARDS) shard clusters on this machine
# (test/scale-out-lib.bash); for each N in SCALEOUT_SHARDS ("1 2 4") a
# database so_nN on the front (plproxy, rungate_proxy, the cluster
# rungate_shards over shards 0 .. N-1) and on each of those shards (rungate,
# rungate_shard), configured by rungate_proxy.configure_shards(). Then, all
# through the front, with two workspaces per shard:
#   layout     check_shards: partition i is shard i of N, its runs, holds,
#              audit and notification ids count by N from i + 1, the global
#              authority is the same on every shard; with two partitions
#              swapped in the server's options, check_shards says so (RG409)
#              and claim_on(0) is refused by the shard it reaches (RG400)
#   authority  global rows (actors, role capabilities, operation types) on
#              every shard; workspaces, tenants, memberships, prerequisites
#              only on the workspace's shard; a tenant membership naming
#              another workspace: RG400; a tenant moving to another shard: RG409
#   enqueue    each run on its workspace's shard and nowhere else, its id
#              naming that shard ((id - 1) mod N)
#   claim      claim_on(i) returns exactly shard i's due runs; claim() in a
#              session with rungate_proxy.shard = i the same; without the
#              setting, or for a shard outside the layout: RG400
#   worker     heartbeat, recheck, complete, fail (retry), release by run id
#   revoke     a role capability dropped through the front (every shard):
#              the next claim on every shard blocks the runs it made
#              illegitimate (capability_missing); a tenant membership dropped
#              (one shard): that workspace's run blocked, the others start
#   blocked    a disabled initiator: enqueue returns the run blocked at dispatch
#   monitoring operations and operation: RG404 outside scope or for a run no
#              shard has (one id per shard), RG403 in scope without
#              operations.view, rows otherwise
#   cancel     a queued run and a running one (its worker's complete: RG409),
#              a terminal one (RG409), an unknown one (RG404); rerun on the
#              same shard
#   holds      a workspace hold stops its runs only, a tenant hold finds its
#              shard, a hold without a workspace is one twin per shard and
#              resume of it resumes them all
#   bulk, reap, purge, decide through the front
#   sequences  the id layout survives a restart of a shard; a dump restored
#              into a fresh database comes back counting by 1 (pg_dump keeps
#              the sequence's value, not its increment), identity() says so,
#              configure() mends it
#   workers    examples/proxy/worker.py with the N shards' connection strings
#              drains runs of every shard (LISTEN per shard: polling 60 s)
#   privileges a front role with EXECUTE on the viewer functions only, mapped
#              to a shard role with rungate's viewer grants: operations works,
#              enqueue is refused (42501)
# Exits non-zero at the first mismatch. SCALEOUT_SHARDS="2" for one size; a
# count that is not a power of two (3) runs with PL/Proxy's modular_mapping.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/scale-out-lib.bash"
cd "$RG_ROOT"

SIZES=${SCALEOUT_SHARDS:-1 2 4}
PY=/usr/bin/python3

if [ "${SCALEOUT_BUILD:-1}" = 1 ]; then
  rg_install_deps
  rg_build_install
fi
if ! [ -x "$PY" ] || ! "$PY" -c 'import psycopg' 2>/dev/null; then
  rg_log "installing python3-psycopg"
  rg_install_deps python3 python3-psycopg
fi
so_prepare

max=0
for n in $SIZES; do [ "$n" -le "$max" ] || max=$n; done
so_start "$max"

DB=
fq() { PGOPTIONS="-c client_min_messages=warning" so_front "$DB" -tA -c "$1"; }
sq() { so_shard "$1" "$DB" -tA -c "$2"; }
check() {
  local got
  got=$(fq "$2") || { echo "FAIL: $1 (query failed)"; exit 1; }
  if [ "$got" != "$3" ]; then
    printf 'FAIL: %s (N=%s)\n--- want\n%s\n--- got\n%s\n' "$1" "$N" "$3" "$got"
    exit 1
  fi
  echo "ok: N=$N $1"
}
# check_shards WHAT SQL-ON-EACH-SHARD SQL-ON-FRONT-WITH-%s(shard index)
check_each() {
  local i got want
  for ((i = 0; i < N; i++)); do
    got=$(sq "$i" "$2")
    # shellcheck disable=SC2059 # the front's SQL is a template for the shard's index
    want=$(fq "$(printf "$3" "$i")")
    if [ "$got" != "$want" ]; then
      printf 'FAIL: %s on shard %s (N=%s)\n--- want\n%s\n--- got\n%s\n' "$1" "$i" "$N" "$want" "$got"
      exit 1
    fi
  done
  echo "ok: N=$N $1 (each shard)"
}

for N in $SIZES; do
  DB=so_n$N
  rg_log "N=$N: layout so_n$N"
  so_layout "$DB" "$N"

  fq "CREATE SCHEMA t" >/dev/null
  so_front "$DB" >/dev/null <<'SQL'
-- the SQLSTATE a statement ends with ('ok' when it succeeds)
CREATE FUNCTION t.state(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN others THEN
    RETURN SQLSTATE;
END $$;
-- two workspaces per shard: the first ids the layout maps there
CREATE TABLE t.ws AS
  SELECT w, s FROM (
    SELECT w, rungate_proxy.workspace_shard(w) AS s,
           row_number() OVER (PARTITION BY rungate_proxy.workspace_shard(w) ORDER BY w) AS k
      FROM generate_series(1, 1000) w) x
   WHERE k <= 2;
-- the runs enqueued through the front, and the shard they should be on
CREATE TABLE t.runs (id bigint PRIMARY KEY, w bigint, what text);

-- global authority (test/fixtures/seed.sql's), through the front
SELECT count(*) FROM (
  SELECT rungate_proxy.put_actor(a, n, st)
    FROM (VALUES (100, 'olivia', 'active'), (101, 'oscar', 'active'), (102, 'rita', 'active'),
                 (103, 'gus', 'active'), (104, 'dora', 'disabled'), (105, 'ada', 'active')) v(a, n, st)) x;
SELECT count(*) FROM (
  SELECT rungate_proxy.put_role_capability(r, c)
    FROM (VALUES ('owner', 'provider.manage'), ('owner', 'inventory.sync'),
                 ('owner', 'restore.execute'), ('owner', 'reports.run'),
                 ('owner', 'bulk.sync'), ('owner', 'operations.view'),
                 ('operator', 'provider.manage'), ('operator', 'inventory.sync'),
                 ('operator', 'operations.view'), ('readonly', 'tenant.read'),
                 ('auditor', 'operations.view')) v(r, c)) x;
SELECT count(*) FROM (
  SELECT rungate_proxy.put_operation_type(d::jsonb)
    FROM unnest(ARRAY[
      '{"name": "provider.connection.verify", "capability": "provider.manage", "prerequisites": ["provider_connection"], "allow_system": true}',
      '{"name": "inventory.sync", "capability": "inventory.sync", "prerequisites": ["provider_connection"], "allow_system": true}',
      '{"name": "restore.execute", "capability": "restore.execute", "prerequisites": ["provider_connection", "admin_consent"], "writes": true, "max_attempts": 1, "lease": "10 minutes"}',
      '{"name": "reports.export", "capability": "reports.run", "scope": "workspace", "requires_operable_tenant": false, "allow_system": true, "max_attempts": 2}',
      '{"name": "bulk.inventory.sync", "capability": "bulk.sync", "scope": "workspace", "requires_operable_tenant": false, "item_operation": "inventory.sync", "max_attempts": 1}']) d) x;

-- per workspace w: tenant 10w active, 10w+1 active (admin_consent unmet),
-- 10w+2 onboarding; olivia owner of w and its tenants, oscar operator of w
-- and 10w, rita readonly of w and 10w (no operations.view), dora (disabled)
-- owner; gus is a member of nothing
SELECT count(rungate_proxy.put_workspace(w, 'ws-' || w)) FROM t.ws;
SELECT count(rungate_proxy.put_tenant(w * 10 + k, w, 'tenant-' || (w * 10 + k),
                                      CASE k WHEN 2 THEN 'onboarding' ELSE 'active' END))
  FROM t.ws, generate_series(0, 2) k;
SELECT count(rungate_proxy.put_workspace_member(w, a, r))
  FROM t.ws, (VALUES (100, 'owner'), (101, 'operator'), (102, 'readonly'), (104, 'owner')) m(a, r);
SELECT count(rungate_proxy.put_tenant_member(w, w * 10 + k, 100, 'owner')) FROM t.ws, generate_series(0, 2) k;
SELECT count(rungate_proxy.put_tenant_member(w, w * 10, a, r))
  FROM t.ws, (VALUES (101, 'operator'), (102, 'readonly'), (104, 'owner')) m(a, r);
SELECT count(rungate_proxy.put_tenant_prerequisite(w, w * 10 + k, p, NOT (k = 1 AND p = 'admin_consent')))
  FROM t.ws, generate_series(0, 2) k, unnest('{provider_connection,admin_consent}'::text[]) p;
SQL

  # ---- layout and authority
  check "layout: partition i is shard i of N, id sequences by N, one global authority" \
    "SELECT string_agg(shard || '/' || nshards || ':' || sequences_ok || ':' || detail, ' ' ORDER BY shard)
       FROM rungate_proxy.check_shards()" \
    "$(for ((i = 0; i < N; i++)); do printf '%s/%s:true:ok' "$i" "$N"; [ $i -eq $((N - 1)) ] || printf ' '; done)"
  if [ "$N" -gt 1 ]; then
    # partitions listed out of order: found, and no claim reaches the wrong shard
    fq "ALTER SERVER rungate_shards OPTIONS (SET p0 '$(so_dsn 1 "$DB")', SET p1 '$(so_dsn 0 "$DB")')" >/dev/null
    check "partitions out of order: check_shards RG409, claim_on RG400" \
      "SELECT t.state('SELECT rungate_proxy.check_shards()') || ' '
              || t.state('SELECT * FROM rungate_proxy.claim_on(0, ''w'')')" "RG409 RG400"
    fq "ALTER SERVER rungate_shards OPTIONS (SET p0 '$(so_dsn 0 "$DB")', SET p1 '$(so_dsn 1 "$DB")')" >/dev/null
  fi
  check "two workspaces on every shard" "SELECT count(DISTINCT s) || ' ' || count(*) FROM t.ws" "$N $((2 * N))"
  check_each "global authority on every shard" \
    "SELECT (SELECT count(*) FROM rungate.actors) || ' ' || (SELECT count(*) FROM rungate.role_capabilities)
            || ' ' || (SELECT count(*) FROM rungate.operation_types)" \
    "SELECT '6 11 5'"
  check_each "workspaces and tenants only on their shard" \
    "SELECT string_agg(w.id::text, ',' ORDER BY w.id) || ' ' || (SELECT count(*) FROM rungate.tenants)
            || ' ' || (SELECT count(*) FROM rungate.tenant_members) || ' ' || (SELECT count(*) FROM rungate.tenant_prerequisites)
       FROM rungate.workspaces w" \
    "SELECT string_agg(w::text, ',' ORDER BY w) || ' 6 12 12' FROM t.ws WHERE s = %s"
  check "a tenant membership names the tenant's workspace (RG400)" \
    "SELECT t.state(format('SELECT rungate_proxy.put_tenant_member(%s, %s, 101, ''owner'')', a.w, b.w * 10))
       FROM t.ws a, t.ws b WHERE a.w <> b.w AND a.s = b.s LIMIT 1" "RG400"
  if [ "$N" -gt 1 ]; then
    check "a tenant does not move to another shard (RG409); within one it may" \
      "SELECT t.state(format('SELECT rungate_proxy.put_tenant(%s, %s, ''moved'')', a.w * 10 + 2, b.w))
              || ' ' || t.state(format('SELECT rungate_proxy.put_tenant(%s, %s, ''tenant-%s'', ''onboarding'')',
                                       a.w * 10 + 2, c.w, a.w * 10 + 2))
              || ' ' || t.state(format('SELECT rungate_proxy.put_tenant(%s, %s, ''tenant-%s'', ''onboarding'')',
                                       a.w * 10 + 2, a.w, a.w * 10 + 2))
         FROM t.ws a, t.ws b, t.ws c
        WHERE a.s = 0 AND b.s = 1 AND c.s = 0 AND c.w <> a.w ORDER BY a.w, b.w, c.w LIMIT 1" \
      "RG409 ok ok"
  fi

  # ---- enqueue: each run on its workspace's shard, its id naming the shard
  fq "INSERT INTO t.runs SELECT r.id, w, 'olivia' FROM t.ws, rungate_proxy.enqueue('inventory.sync', w, w * 10, 100) r;
      INSERT INTO t.runs SELECT r.id, w, 'oscar' FROM t.ws, rungate_proxy.enqueue('inventory.sync', w, w * 10, 101) r;" >/dev/null
  check "every run's id names its workspace's shard" \
    "SELECT count(*) FILTER (WHERE rungate_proxy.run_shard(r.id) = ws.s) || '/' || count(*)
       FROM t.runs r JOIN t.ws USING (w)" "$((4 * N))/$((4 * N))"
  check_each "each shard has exactly its workspaces' runs" \
    "SELECT string_agg(id || ':' || workspace_id, ',' ORDER BY id) FROM rungate.runs" \
    "SELECT string_agg(r.id || ':' || r.w, ',' ORDER BY r.id) FROM t.runs r JOIN t.ws USING (w) WHERE s = %s"

  # ---- revoke: operator loses inventory.sync everywhere (RUN ON ALL), olivia
  # her membership of one tenant (its shard only); then claim every shard
  w0=$(fq "SELECT w FROM t.ws ORDER BY s, w LIMIT 1")
  check "revocations through the front: global on every shard, local on one" \
    "SELECT (SELECT count(*) FROM rungate_proxy.drop_role_capability('operator', 'inventory.sync'))
            || ' ' || rungate_proxy.drop_tenant_member($w0, $w0 * 10, 100)" "$N 0"
  check_each "the claim blocks what the revocations made illegitimate, starts the rest" \
    "SELECT string_agg(run_id || ':' || workspace_id, ',' ORDER BY run_id) FROM rungate.claim('probe', NULL, 100)" \
    "SELECT string_agg(r.id || ':' || r.w, ',' ORDER BY r.id) FROM t.runs r JOIN t.ws USING (w)
      WHERE s = %s AND what = 'olivia' AND w <> $w0"
  check_each "blocked with the right reason, on the right shard" \
    "SELECT string_agg(id || ':' || reason_code, ',' ORDER BY id) FROM rungate.runs WHERE status = 'blocked'" \
    "SELECT string_agg(r.id || ':' || CASE WHEN what = 'oscar' THEN 'capability_missing' ELSE 'actor_not_in_tenant' END,
                       ',' ORDER BY r.id)
       FROM t.runs r JOIN t.ws USING (w) WHERE s = %s AND (what = 'oscar' OR w = $w0)"
  fq "SELECT count(*) FROM rungate_proxy.put_role_capability('operator', 'inventory.sync');
      SELECT rungate_proxy.put_tenant_member($w0, $w0 * 10, 100, 'owner')" >/dev/null

  # ---- claim per shard, through the front
  fq "DELETE FROM t.runs;
      INSERT INTO t.runs SELECT r.id, w, 'claim' FROM t.ws, generate_series(1, 3) k,
                         rungate_proxy.enqueue('inventory.sync', w, w * 10, 100, jsonb_build_object('k', k)) r" >/dev/null
  check "claim without a shard, or outside the layout: RG400" \
    "SELECT t.state('SELECT * FROM rungate_proxy.claim(''w'')') || ' '
            || t.state('SELECT * FROM rungate_proxy.claim_on($N, ''w'')') || ' '
            || t.state('SELECT * FROM rungate_proxy.claim_on(-1, ''w'')')" "RG400 RG400 RG400"
  fq "CREATE TABLE t.claimed AS SELECT i AS s, c.* FROM generate_series(0, $N - 1) i,
        LATERAL rungate_proxy.claim_on(i, 'front-' || i, NULL, 4) c" >/dev/null
  check "claim_on(i) takes shard i's runs only (4 of its 6)" \
    "SELECT count(*) FILTER (WHERE rungate_proxy.run_shard(run_id) = s
                               AND rungate_proxy.workspace_shard(workspace_id) = s) || '/' || count(*)
       FROM t.claimed" "$((4 * N))/$((4 * N))"
  check "claim() serves the session's shard (SET rungate_proxy.shard)" \
    "SET rungate_proxy.shard = $((N - 1));
     SELECT string_agg(DISTINCT rungate_proxy.run_shard(run_id)::text, ',') || ' ' || count(*)
       FROM rungate_proxy.claim('session', NULL, 100)" "$((N - 1)) 2"

  # ---- the worker's calls by run id
  check "heartbeat, recheck, complete, fail (retry), release through the front" \
    "WITH c AS (SELECT *, row_number() OVER (PARTITION BY s ORDER BY run_id) AS k FROM t.claimed)
     SELECT string_agg(DISTINCT x, ',') FROM (
       SELECT (rungate_proxy.heartbeat(run_id, lease_token) > now())::text || '/'
              || (SELECT allowed FROM rungate_proxy.recheck(run_id, lease_token))::text || '/'
              || CASE k WHEN 1 THEN (SELECT status FROM rungate_proxy.complete(run_id, lease_token, '{\"ok\": 1}'))
                        WHEN 2 THEN (SELECT status || attempt FROM rungate_proxy.fail(run_id, lease_token, 'flaky', true))
                        WHEN 3 THEN (SELECT status || attempt || max_attempts FROM rungate_proxy.release(run_id, lease_token))
                        ELSE 'kept' END AS x
         FROM c ORDER BY s, k) y" \
    "true/true/kept,true/true/queued1,true/true/queued14,true/true/succeeded"
  for ((i = 0; i < N; i++)); do
    ids=$(fq "SELECT string_agg(run_id::text, ',') FROM t.claimed WHERE s = $i")
    got=$(sq "$i" "SELECT string_agg(status, ',' ORDER BY id) FROM rungate.runs WHERE id IN ($ids)")
    [ "$got" = "succeeded,queued,queued,running" ] \
      || { echo "FAIL: N=$N shard $i: the claimed runs are $got, not succeeded,queued,queued,running"; exit 1; }
  done
  echo "ok: N=$N their outcomes on the runs' own shards (each shard)"

  # ---- blocked at dispatch
  check "a disabled initiator: the run comes back blocked at dispatch" \
    "SELECT string_agg(DISTINCT r.status || ':' || r.reason_code || ':' || (rungate_proxy.run_shard(r.id) = s), ',')
       FROM t.ws, rungate_proxy.enqueue('inventory.sync', w, w * 10, 104) r" \
    "blocked:actor_disabled:true"

  # ---- monitoring
  check "operations: rows for olivia, RG404 for gus (no scope), RG403 for rita (no operations.view)" \
    "SELECT string_agg(DISTINCT (SELECT count(*) > 0 FROM rungate_proxy.operations(100, w))::text || ' '
             || t.state(format('SELECT * FROM rungate_proxy.operations(103, %s)', w)) || ' '
             || t.state(format('SELECT * FROM rungate_proxy.operations(102, %s)', w)) || ' '
             || t.state(format('SELECT * FROM rungate_proxy.operations(100, %s, tenant_id => %s)', w, w * 10 + 99)), ',')
       FROM t.ws" \
    "true RG404 RG403 RG404"
  check "operation: detail for olivia; RG404 for gus, RG403 for rita, on every shard" \
    "SELECT string_agg(DISTINCT (SELECT d.status || ':' || (d.audit IS NOT NULL)
                                  FROM rungate_proxy.operation(100, run_id) d) || ' '
             || t.state(format('SELECT rungate_proxy.operation(103, %s)', run_id)) || ' '
             || t.state(format('SELECT rungate_proxy.operation(102, %s)', run_id)), ',')
       FROM t.claimed WHERE (SELECT count(*) FROM t.claimed c2 WHERE c2.s = claimed.s AND c2.run_id < claimed.run_id) = 3" \
    "running:true RG404 RG403"
  check "a run no shard has: RG404 from each shard; a null run id: RG400" \
    "SELECT string_agg(t.state(format('SELECT rungate_proxy.operation(100, %s)', 1000000 * $N + i + 1)), ',' ORDER BY i)
            || ' ' || t.state('SELECT rungate_proxy.operation(100, NULL)')
       FROM generate_series(0, $N - 1) i" \
    "$(for ((i = 0; i < N; i++)); do printf 'RG404'; [ $i -eq $((N - 1)) ] || printf ','; done) RG400"

  # ---- cancel and rerun
  check "cancel: queued, running (its worker's complete then RG409), terminal (RG409), unknown (RG404)" \
    "WITH q AS (SELECT r.id FROM t.runs r
                 WHERE (SELECT status FROM rungate_proxy.operation(100, r.id)) = 'queued' ORDER BY r.id LIMIT 1),
          run AS (SELECT run_id, lease_token FROM t.claimed
                   WHERE (SELECT count(*) FROM t.claimed c2 WHERE c2.s = claimed.s AND c2.run_id < claimed.run_id) = 3
                   ORDER BY run_id LIMIT 1)
     SELECT (SELECT status FROM rungate_proxy.cancel((SELECT id FROM q), 100)) || ' '
            || (SELECT status FROM rungate_proxy.cancel((SELECT run_id FROM run), 100)) || ' '
            || t.state(format('SELECT rungate_proxy.complete(%s, %L)', (SELECT run_id FROM run), (SELECT lease_token FROM run))) || ' '
            || t.state(format('SELECT rungate_proxy.cancel(%s)', (SELECT id FROM q))) || ' '
            || t.state(format('SELECT rungate_proxy.cancel(%s)', 1000000 * $N + 1))" \
    "cancelled cancelled RG409 RG409 RG404"
  check "rerun: a new run on the original's shard, rerun_of set" \
    "SELECT string_agg(DISTINCT (rungate_proxy.run_shard(n.id) = rungate_proxy.run_shard(o.run_id))::text || ':'
                               || (n.rerun_of = o.run_id) || ':' || n.status, ',')
       FROM t.claimed o, rungate_proxy.rerun(o.run_id, 100) n
      WHERE (SELECT count(*) FROM t.claimed c2 WHERE c2.s = o.s AND c2.run_id < o.run_id) = 3
        AND o.run_id IN (SELECT run_id FROM rungate_proxy.operations(100, o.workspace_id, 'cancelled'))" \
    "true:true:queued"

  # ---- decide
  check "decide through the front" \
    "SELECT string_agg(DISTINCT (SELECT allowed || ':' || coalesce(reason_code, '-') FROM rungate_proxy.decide('inventory.sync', w, w * 10, 100))
             || ' ' || (SELECT allowed || ':' || reason_code FROM rungate_proxy.decide('inventory.sync', w, w * 10, 102))
             || ' ' || (SELECT allowed || ':' || reason_code FROM rungate_proxy.decide('restore.execute', w, w * 10 + 1, 100)), ',')
       FROM t.ws" \
    "true:- false:capability_missing false:prerequisite_unmet"

  # ---- holds
  fq "SELECT count(*) FROM generate_series(0, $N - 1) i, rungate_proxy.claim_on(i, 'drain', NULL, 1000)" >/dev/null
  wh=$(fq "SELECT w FROM t.ws ORDER BY s DESC, w LIMIT 1")
  fq "CREATE TABLE t.h AS SELECT * FROM rungate_proxy.hold($wh, reason => 'maintenance')" >/dev/null
  check "a workspace hold lands on its shard" \
    "SELECT rungate_proxy.run_shard(id) = rungate_proxy.workspace_shard($wh) FROM t.h" "t"
  fq "DELETE FROM t.runs;
      INSERT INTO t.runs SELECT r.id, w, 'held' FROM t.ws, rungate_proxy.enqueue('reports.export', w, NULL, 100) r" >/dev/null
  check "held: that workspace's run waits, the others start" \
    "SELECT string_agg(w::text, ',' ORDER BY w) FROM t.ws
      WHERE (SELECT waiting FROM rungate_proxy.operation(100, (SELECT id FROM t.runs WHERE runs.w = ws.w))) IS DISTINCT FROM 'held'" \
    "$(fq "SELECT string_agg(w::text, ',' ORDER BY w) FROM t.ws WHERE w <> $wh")"
  check "resume: the hold ends" \
    "SELECT released_at IS NOT NULL FROM rungate_proxy.resume((SELECT id FROM t.h), 100)" "t"
  check "and the held run starts with the others" \
    "SELECT count(*) FROM generate_series(0, $N - 1) i, rungate_proxy.claim_on(i, 'h', NULL, 100)" "$((2 * N))"
  tw=$(fq "SELECT w * 10 FROM t.ws ORDER BY s DESC, w LIMIT 1")
  check "a tenant hold without its workspace finds the tenant's shard" \
    "SELECT workspace_id || ':' || (rungate_proxy.run_shard(id) = rungate_proxy.workspace_shard(workspace_id))
            || ':' || ((rungate_proxy.resume(id)).released_at IS NOT NULL)
       FROM rungate_proxy.hold(tenant_id => $tw)" "$((tw / 10)):true:true"
  check "a hold on an unknown tenant: RG400" \
    "SELECT t.state('SELECT rungate_proxy.hold(tenant_id => 999999)')" "RG400"
  fq "DROP TABLE t.h; CREATE TABLE t.h AS SELECT * FROM rungate_proxy.hold(operation => 'reports.export', reason => 'incident')" >/dev/null
  check_each "a hold without a workspace: one twin in force on every shard" \
    "SELECT count(*) FROM rungate.holds WHERE workspace_id IS NULL AND released_at IS NULL AND operation = 'reports.export'" \
    "SELECT 1"
  fq "INSERT INTO t.runs SELECT r.id, w, 'global-hold' FROM t.ws, rungate_proxy.enqueue('reports.export', w, NULL, 100) r" >/dev/null
  check "held everywhere: no shard starts a reports.export" \
    "SELECT count(*) FROM generate_series(0, $N - 1) i, rungate_proxy.claim_on(i, 'g', NULL, 100)" "0"
  check "resume of the one returned resumes every twin; again: RG409" \
    "SELECT (SELECT released_by FROM rungate_proxy.resume((SELECT id FROM t.h), 105)) || ' '
            || t.state(format('SELECT rungate_proxy.resume(%s)', (SELECT id FROM t.h)))" "105 RG409"
  check "then every shard starts its reports.export" \
    "SELECT count(*) FROM generate_series(0, $N - 1) i, rungate_proxy.claim_on(i, 'g', NULL, 100)" "$((2 * N))"
  check_each "every twin resumed" \
    "SELECT count(*) FROM rungate.holds WHERE released_at IS NULL" "SELECT 0"

  # ---- bulk, reap, purge
  wb=$(fq "SELECT w FROM t.ws ORDER BY s DESC, w LIMIT 1")
  check "enqueue_bulk: parent and items on the workspace's shard" \
    "WITH p AS (SELECT * FROM rungate_proxy.enqueue_bulk('bulk.inventory.sync', $wb, ARRAY[$wb * 10, $wb * 10 + 1], 100))
     SELECT (rungate_proxy.run_shard(p.id) = rungate_proxy.workspace_shard($wb)) || ' '
            || (SELECT count(*) FROM rungate_proxy.claim_on(rungate_proxy.workspace_shard($wb), 'bulk', NULL, 10) c
                 WHERE rungate_proxy.run_shard(c.run_id) = rungate_proxy.workspace_shard($wb)) FROM p" \
    "true 2"
  check "reap_expired and purge add up over the shards" \
    "SELECT rungate_proxy.reap_expired() || ' ' || (rungate_proxy.purge(now() + interval '1 minute') > 0)
            || ' ' || rungate_proxy.purge_batch(now() - interval '1 day')" "0 true 0"

  # ---- the layout survives a restart; a restored dump must be configured again
  rg_as_pg "$RG_BINDIR/pg_ctl" restart -w -D "$SO_TMP/s0/data" -l "$SO_TMP/s0/server.log" >/dev/null
  check "after a shard restart: layout intact, new ids still name their shard" \
    "SELECT (SELECT bool_and(sequences_ok) FROM rungate_proxy.check_shards()) || ' '
            || bool_and(rungate_proxy.run_shard(r.id) = s)
       FROM t.ws, rungate_proxy.enqueue('inventory.sync', w, w * 10, 100) r" "true true"
  if [ "$N" = 2 ]; then
    dump=$SO_TMP/s0.dump
    rg_as_pg "$RG_BINDIR/pg_dump" -Fc -h "$SO_TMP/s0" -p $((SO_PORT + 1)) -U postgres -d "$DB" -f "$dump" 2>/dev/null
    so_shard 0 postgres -c "CREATE DATABASE so_restored" >/dev/null
    PGOPTIONS='-c rungate.restore_mode=on' rg_as_pg "$RG_BINDIR/pg_restore" -h "$SO_TMP/s0" -p $((SO_PORT + 1)) \
      -U postgres -d so_restored "$dump"
    got=$(so_shard 0 so_restored -tA -c "SELECT sequences_ok FROM rungate_shard.identity()")
    [ "$got" = f ] || { echo "FAIL: a restored shard's sequences should count by 1 (got sequences_ok=$got)"; exit 1; }
    got=$(so_shard 0 so_restored -tA -c "SELECT sequences_ok FROM rungate_shard.configure(0, 2)" \
            -c "SELECT (r.id - 1) % 2 FROM rungate.workspaces w, rungate.enqueue('inventory.sync', w.id, w.id * 10, 100) r
                 ORDER BY w.id LIMIT 1")
    [ "$got" = $'t\n0' ] || { echo "FAIL: configure() should mend a restored shard (got $got)"; exit 1; }
    echo "ok: N=$N a restored shard counts by 1 until configure() mends it"
  fi

  # ---- workers: one loop per shard, LISTEN on each (polling every 60 s)
  fq "DELETE FROM t.runs" >/dev/null
  wargs=()
  for ((i = 0; i < N; i++)); do wargs+=(--shard "$(so_dsn "$i" "$DB") user=postgres"); done
  wlog=$SO_TMP/worker-$N.log
  "$PY" -u examples/proxy/worker.py --worker so "${wargs[@]}" -- --poll 60 --exit-when-idle 8 --batch 5 \
    >"$wlog" 2>&1 &
  wpid=$!
  # every loop listening before the runs come (else only its 60 s poll
  # would find them); generous limits: CI machines can be slow to start
  for ((i = 0; ; i++)); do
    ready=$(grep -c 'listening on rungate_queued' "$wlog" 2>/dev/null) || true
    [ "${ready:-0}" -ge "$N" ] && break
    if [ "$i" -ge 300 ]; then
      echo "FAIL: N=$N the worker loops were not listening after 60 s"; cat "$wlog"; exit 1
    fi
    sleep 0.2
  done
  fq "INSERT INTO t.runs SELECT r.id, w, 'worker' FROM t.ws, generate_series(1, 5) k,
        rungate_proxy.enqueue('provider.connection.verify', w, w * 10, 100, jsonb_build_object('k', k)) r" >/dev/null
  deadline=$((SECONDS + 60))
  until [ "$(fq "SELECT count(*) FROM t.runs r, rungate_proxy.operation(100, r.id) d WHERE d.status = 'succeeded'")" = $((10 * N)) ]; do
    if [ $SECONDS -ge $deadline ]; then
      echo "FAIL: N=$N the workers did not finish the runs within 60 s (LISTEN per shard?)"; cat "$wlog"; exit 1
    fi
    sleep 0.3
  done
  rc=0; wait "$wpid" || rc=$?
  [ "$rc" = 0 ] || { echo "FAIL: N=$N worker exited $rc"; cat "$wlog"; exit 1; }
  check "workers: every run done by its own shard's worker" \
    "SELECT count(*) FROM t.runs r JOIN t.ws USING (w), rungate_proxy.operation(100, r.id) d
      WHERE d.audit -> -1 ->> 'worker' = 'so@shard' || s" "$((10 * N))"

  # ---- privileges: a viewer through the front, mapped to a shard viewer
  for ((i = 0; i < N; i++)); do
    so_shard "$i" "$DB" >/dev/null <<SQL
DO \$\$ BEGIN CREATE ROLE so_viewer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$;
GRANT USAGE ON SCHEMA rungate TO so_viewer;
GRANT EXECUTE ON FUNCTION rungate.operations(bigint, bigint, text, bigint, integer, bigint),
                          rungate.operation(bigint, bigint) TO so_viewer;
SQL
  done
  so_front "$DB" >/dev/null <<'SQL'
DO $$ BEGIN CREATE ROLE so_viewer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT USAGE ON SCHEMA rungate_proxy TO so_viewer;
GRANT USAGE ON FOREIGN SERVER rungate_shards TO so_viewer;
CREATE USER MAPPING FOR so_viewer SERVER rungate_shards OPTIONS (user 'so_viewer');
GRANT EXECUTE ON FUNCTION rungate_proxy.operations(bigint, bigint, text, bigint, integer, bigint),
                          rungate_proxy.operation(bigint, bigint) TO so_viewer;
GRANT USAGE ON SCHEMA t TO so_viewer;
GRANT EXECUTE ON FUNCTION t.state(text) TO so_viewer;
GRANT SELECT ON t.ws TO so_viewer;
SQL
  check "a front viewer: operations as the shard's viewer, enqueue refused (42501)" \
    "SET ROLE so_viewer;
     SELECT string_agg(DISTINCT (SELECT count(*) > 0 FROM rungate_proxy.operations(100, w))::text || ' '
            || t.state(format('SELECT rungate_proxy.enqueue(''inventory.sync'', %s, %s, 100)', w, w * 10)), ',')
       FROM t.ws" "true 42501"
done
echo "scale-out: all checks passed for N = $SIZES"
