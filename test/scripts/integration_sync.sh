#!/usr/bin/env bash
# test/scripts/integration_sync.sh: docs/examples/sync.sql and the recipes of
# docs/integration.md.
#
# Applies the trigger-based sync, then, as the application's own database
# role (which holds no privilege on rungate's authority tables), writes app
# users, workspaces, teams and memberships and checks that rungate's tables
# followed; revokes authority in the app and checks that a claim blocks the
# queued runs it made illegitimate (one per category: scope, capability,
# prerequisite) while an untouched run starts; deletes, suspends, renames;
# dispatches from the app's transaction (rolled back: no run; committed: a
# run); reads and marks notifications; repairs drift with app.rungate_resync().
# The app role's grants, the dispatch recipe and the notification queries are
# taken verbatim from docs/integration.md, so the guide cannot drift from what
# is tested.
# Run by test/run-tests.sh with the cluster's PG* environment (superuser). ~2 s.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
DB=integration_sync
APP=integration_sync_app         # the application's role
WORKER=integration_sync_worker   # a worker: EXECUTE on claim/complete only

cleanup() {
  dropdb --if-exists "$DB" 2>/dev/null || true
  psql -X -q -d postgres -c "DROP ROLE IF EXISTS $APP" -c "DROP ROLE IF EXISTS $WORKER" \
    >/dev/null 2>&1 || true
}
trap cleanup EXIT

q()   { psql -X -q -v ON_ERROR_STOP=1 -tA -d "$DB" -c "$1"; }
app() { PGUSER=$APP psql -X -q -v ON_ERROR_STOP=1 -tA -d "$DB" -c "$1"; }
# check WHAT SQL WANT: SQL (as the superuser) must print exactly WANT
check() {
  local got
  got=$(q "$2")
  if [ "$got" != "$3" ]; then
    printf 'FAIL: %s\n  want: %s\n  got:  %s\n' "$1" "$3" "$got"
    exit 1
  fi
  echo "ok: $1"
}
# refused WHAT ROLE SQL PATTERN: SQL run as ROLE must fail with PATTERN
refused() {
  local out
  if out=$(PGUSER=$2 psql -X -q -v ON_ERROR_STOP=1 -tA -d "$DB" -c "$3" 2>&1); then
    echo "FAIL: $1: allowed"; exit 1
  fi
  case "$out" in *$4*) echo "ok: $1" ;; *) echo "FAIL: $1: $out"; exit 1 ;; esac
}

cleanup
createdb "$DB"
q 'CREATE EXTENSION rungate' >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f docs/examples/sync.sql >/dev/null

# ---- set-up by an administrator: job families, the app's and a worker's roles
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<SQL
INSERT INTO rungate.operation_types (name, capability, prerequisites) VALUES
    ('inventory.sync', 'inventory.sync', '{provider_connection}');
INSERT INTO rungate.operation_types (name, capability, prerequisites, writes, max_attempts) VALUES
    ('restore.execute', 'restore.execute', '{provider_connection,admin_consent}', true, 1);

-- the app's tables of this test (the dispatch recipe)
CREATE TABLE app.inventory_requests (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id       bigint NOT NULL REFERENCES app.teams,
    requested_by  bigint NOT NULL REFERENCES app.users,
    run_id        bigint
);

CREATE ROLE $APP LOGIN;
GRANT USAGE ON SCHEMA app TO $APP;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA app TO $APP;

CREATE ROLE $WORKER LOGIN;
GRANT USAGE ON SCHEMA rungate TO $WORKER;
GRANT EXECUTE ON FUNCTION rungate.claim(text, text[], integer),
                          rungate.complete(bigint, uuid, jsonb) TO $WORKER;
SQL

# what the application's role needs from rungate: section 7 of docs/integration.md, verbatim
grants=$(awk '/^## 7\./ {f = 1} f && /^```sql/ {g = 1; next} g && /^```/ {exit} g' docs/integration.md)
case "$grants" in *"GRANT EXECUTE ON FUNCTION"*) ;; *) echo "FAIL: no grants in docs/integration.md section 7"; exit 1 ;; esac
printf '%s\n' "$grants" | sed "s/ TO app;/ TO $APP;/" | psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null

# ---- the application writes its own tables; rungate's follow
app "INSERT INTO app.workspaces (id, name) VALUES (1, 'acme')"
app "INSERT INTO app.users (id, name, email) VALUES
       (100, 'olivia', 'olivia@example.test'), (101, 'oscar', 'oscar@example.test'),
       (102, 'rita', 'rita@example.test')"
app "INSERT INTO app.workspace_members VALUES (1, 100, 'owner'), (1, 101, 'operator'), (1, 102, 'operator')"
app "INSERT INTO app.teams (id, workspace_id, name, status, provider_connected, admin_consent_granted)
     VALUES (10, 1, 'acme-eu', 'active', true, true), (11, 1, 'acme-us', 'active', true, false)"
app "INSERT INTO app.team_members VALUES (10, 100, 'owner'), (10, 101, 'operator'),
                                         (11, 100, 'owner'), (11, 102, 'operator')"

check 'workspaces follow app.workspaces' \
  "SELECT string_agg(format('%s:%s:%s', id, name, status), ' ' ORDER BY id) FROM rungate.workspaces" \
  '1:acme:active'
check 'actors follow app.users' \
  "SELECT string_agg(format('%s:%s:%s', id, name, status), ' ' ORDER BY id) FROM rungate.actors" \
  '100:olivia:active 101:oscar:active 102:rita:active'
check 'workspace members follow app.workspace_members' \
  "SELECT string_agg(format('%s/%s:%s', workspace_id, actor_id, role), ' ' ORDER BY actor_id) FROM rungate.workspace_members" \
  '1/100:owner 1/101:operator 1/102:operator'
check 'tenants follow app.teams' \
  "SELECT string_agg(format('%s:%s:%s:%s', id, workspace_id, name, status), ' ' ORDER BY id) FROM rungate.tenants" \
  '10:1:acme-eu:active 11:1:acme-us:active'
check 'prerequisites follow the teams provider and consent flags' \
  "SELECT string_agg(format('%s:%s=%s', tenant_id, name, satisfied), ' ' ORDER BY tenant_id, name) FROM rungate.tenant_prerequisites" \
  '10:admin_consent=t 10:provider_connection=t 11:admin_consent=f 11:provider_connection=t'
check 'tenant members follow app.team_members' \
  "SELECT string_agg(format('%s/%s:%s', tenant_id, actor_id, role), ' ' ORDER BY tenant_id, actor_id) FROM rungate.tenant_members" \
  '10/100:owner 10/101:operator 11/100:owner 11/102:operator'
refused 'the app role cannot write rungate tables itself' "$APP" \
  "INSERT INTO rungate.tenant_members VALUES (10, 102, 'owner')" 'permission denied'

# ---- runs dispatched by the app, then authority revoked in the app
run_a=$(app "SELECT id FROM rungate.enqueue('inventory.sync', 1, 10, 101)")   # oscar on acme-eu
run_b=$(app "SELECT id FROM rungate.enqueue('inventory.sync', 1, 11, 102)")   # rita on acme-us
run_c=$(app "SELECT id FROM rungate.enqueue('inventory.sync', 1, 10, 100)")   # olivia on acme-eu
run_d=$(app "SELECT id FROM rungate.enqueue('inventory.sync', 1, 11, 100)")   # olivia on acme-us
check 'four runs queued at dispatch' \
  "SELECT string_agg(status, ' ' ORDER BY id) FROM rungate.runs" 'queued queued queued queued'

app "DELETE FROM app.team_members WHERE team_id = 10 AND user_id = 101"          # removed from the team
app "UPDATE app.team_members SET role = 'viewer' WHERE team_id = 11 AND user_id = 102"  # demoted
app "UPDATE app.teams SET provider_connected = false WHERE id = 10"              # provider disconnected

claimed=$(PGUSER=$WORKER psql -X -q -v ON_ERROR_STOP=1 -tA -d "$DB" \
  -c "SELECT string_agg(run_id::text, ',') FROM rungate.claim('sync-test-worker', NULL, 10)")
[ "$claimed" = "$run_d" ] || { echo "FAIL: claim started '$claimed', want only run $run_d"; exit 1; }
echo "ok: the claim started only the untouched run"
check 'each revocation in the app blocked its run at claim, with its reason' \
  "SELECT string_agg(format('%s:%s:%s:%s', id, status, reason_code, reason_category), ' ' ORDER BY id)
     FROM rungate.runs WHERE id IN ($run_a, $run_b, $run_c, $run_d)" \
  "$run_a:blocked:actor_not_in_tenant:scope $run_b:blocked:capability_missing:capability $run_c:blocked:prerequisite_unmet:prerequisite $run_d:running::"
check 'blocked at claim: execution_blocked audit rows, never started' \
  "SELECT string_agg(format('%s:%s', run_id, event), ' ' ORDER BY run_id, id) FROM rungate.audit_log
    WHERE run_id IN ($run_a, $run_b, $run_c) AND event <> 'dispatched'" \
  "$run_a:execution_blocked $run_b:execution_blocked $run_c:execution_blocked"

# ---- more of the mapping: rename, suspend, workspace billing, team status, deletes
app "UPDATE app.users SET name = 'Olivia P.' WHERE id = 100"
app "UPDATE app.users SET suspended_at = now() WHERE id = 101"
app "UPDATE app.teams SET status = 'suspended', provider_connected = true WHERE id = 10"
app "UPDATE app.workspaces SET billing_status = 'past_due' WHERE id = 1"
check 'rename and suspension reach rungate.actors' \
  "SELECT string_agg(format('%s:%s:%s', id, name, status), ' ' ORDER BY id) FROM rungate.actors" \
  '100:Olivia P.:active 101:oscar:disabled 102:rita:active'
check 'team status and flags reach rungate.tenants and prerequisites' \
  "SELECT format('%s %s', (SELECT status FROM rungate.tenants WHERE id = 10),
                 (SELECT satisfied FROM rungate.tenant_prerequisites WHERE tenant_id = 10 AND name = 'provider_connection'))" \
  'suspended t'
check 'billing past due suspends the workspace' \
  "SELECT status FROM rungate.workspaces WHERE id = 1" 'suspended'
check 'the decision sees it at once' \
  "SELECT reason_code FROM rungate.decide('inventory.sync', 1, 11, 100)" 'workspace_not_operable'
app "UPDATE app.workspaces SET billing_status = 'active' WHERE id = 1"
app "UPDATE app.teams SET status = 'active' WHERE id = 10"
check 'and again when it is lifted' \
  "SELECT allowed FROM rungate.decide('inventory.sync', 1, 10, 100)" 't'

app "DELETE FROM app.users WHERE id = 102"        # cascades to the app's memberships
check 'a deleted user is disabled, its memberships are gone' \
  "SELECT format('%s %s %s', (SELECT status FROM rungate.actors WHERE id = 102),
                 (SELECT count(*) FROM rungate.workspace_members WHERE actor_id = 102),
                 (SELECT count(*) FROM rungate.tenant_members WHERE actor_id = 102))" \
  'disabled 0 0'
app "UPDATE app.workspace_members SET role = 'manager' WHERE user_id = 101"
check 'a workspace role change is an update of the membership' \
  "SELECT role FROM rungate.workspace_members WHERE workspace_id = 1 AND actor_id = 101" 'manager'
refused 'TRUNCATE of a synced table is refused' "$APP" 'TRUNCATE app.team_members' 'synced to rungate'

# ---- dispatch from the application's own transaction (docs/integration.md)
# the recipe's body, verbatim from the doc; run once rolled back, once committed
dispatch_sql="INSERT INTO app.inventory_requests (team_id, requested_by) VALUES (10, 100)
RETURNING id AS request_id \\gset
SELECT id AS run_id FROM rungate.enqueue('inventory.sync', 1, 10, 100,
           payload => jsonb_build_object('request_id', :request_id),
           idempotency_key => 'inventory-request-' || :request_id) \\gset
UPDATE app.inventory_requests SET run_id = :run_id WHERE id = :request_id;"
[[ "$(cat docs/integration.md)" == *"BEGIN;
$dispatch_sql
COMMIT;"* ]] || { echo "FAIL: docs/integration.md no longer shows the dispatch recipe"; exit 1; }
before=$(q 'SELECT count(*) FROM rungate.runs')
printf 'BEGIN;\n%s\nROLLBACK;\n' "$dispatch_sql" \
  | PGUSER=$APP psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null
check 'a rolled-back app transaction leaves no run and no audit row' \
  "SELECT format('%s %s', (SELECT count(*) FROM rungate.runs) - $before,
                 (SELECT count(*) FROM rungate.audit_log WHERE run_id > (SELECT max(id) FROM rungate.runs)))" \
  '0 0'
printf 'BEGIN;\n%s\nCOMMIT;\n' "$dispatch_sql" \
  | PGUSER=$APP psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null
check 'a committed app transaction has its request and its queued run together' \
  "SELECT format('%s %s %s', r.status, r.payload->>'request_id' = i.id::text, r.idempotency_key = 'inventory-request-' || i.id)
     FROM app.inventory_requests i JOIN rungate.runs r ON r.id = i.run_id" \
  'queued t t'

# ---- notifications (docs/integration.md): the initiators of the blocked runs
check 'one unread notification per blocked run, for its initiator' \
  "SELECT string_agg(format('%s:%s:%s', actor_id, run_id, kind), ' ' ORDER BY run_id) FROM rungate.notifications" \
  "101:$run_a:run_blocked 102:$run_b:run_blocked 100:$run_c:run_blocked"
# the bell-menu query and the mark-read statement of docs/integration.md, verbatim
bell_sql='SELECT n.id, n.kind, n.created_at, r.operation, r.status,
       r.reason_code, r.reason_message, r.error
  FROM rungate.notifications n
  JOIN rungate.runs r ON r.id = n.run_id
 WHERE n.actor_id = $1 AND n.read_at IS NULL
 ORDER BY n.id DESC
 LIMIT 20'
mark_sql='UPDATE rungate.notifications SET read_at = now()
 WHERE actor_id = $1 AND id = ANY ($2::bigint[]) AND read_at IS NULL'
docs=$(cat docs/integration.md)
for s in "$bell_sql" "$mark_sql"; do
  [[ "$docs" == *"$s"* ]] || { printf 'FAIL: docs/integration.md no longer shows:\n%s\n' "$s"; exit 1; }
done
got=$(PGUSER=$APP psql -X -q -v ON_ERROR_STOP=1 -tA -d "$DB" <<SQL
PREPARE bell(bigint) AS $bell_sql;
PREPARE mark(bigint, bigint[]) AS $mark_sql;
CREATE TEMP TABLE bell AS EXECUTE bell(100);
SELECT format('%s %s %s %s / %s / %s', kind, operation, status, reason_code, reason_message, error IS NULL) FROM bell;
SELECT array_agg(id) AS ids FROM bell \gset
EXECUTE mark(100, :'ids');
CREATE TEMP TABLE unread AS EXECUTE bell(100);
SELECT 'unread after marking: ' || count(*) FROM unread;
SQL
)
want="run_blocked inventory.sync blocked prerequisite_unmet / prerequisite provider_connection is not satisfied for tenant 10 / t
unread after marking: 0"
[ "$got" = "$want" ] || { printf 'FAIL: the notification recipes\n  want: %s\n  got:  %s\n' "$want" "$got"; exit 1; }
echo "ok: the app lists its user's unread notifications with the reason, and marks them read"
check 'marking read' \
  "SELECT string_agg(format('%s:%s', actor_id, read_at IS NOT NULL), ' ' ORDER BY actor_id) FROM rungate.notifications" \
  '100:t 101:f 102:f'
refused 'the app role may change nothing else of a notification' "$APP" \
  "UPDATE rungate.notifications SET kind = 'x'" 'permission denied'

# ---- drift repair: app.rungate_resync()
q "DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100" >/dev/null
q "INSERT INTO rungate.tenant_members VALUES (10, 101, 'owner')" >/dev/null
q "UPDATE rungate.actors SET name = 'stale' WHERE id = 100" >/dev/null
q "SELECT app.rungate_resync()" >/dev/null
check 'resync restores the app state' \
  "SELECT format('%s | %s', (SELECT string_agg(format('%s/%s:%s', tenant_id, actor_id, role), ' ' ORDER BY tenant_id, actor_id) FROM rungate.tenant_members),
                 (SELECT name FROM rungate.actors WHERE id = 100))" \
  '10/100:owner 11/100:owner | Olivia P.'
refused 'only the administrator may run the resync' "$APP" 'SELECT app.rungate_resync()' 'permission denied'

echo "integration sync: ok"
