-- hand_edits: hand edits of runs (docs/guarantees.md#transitions): the
-- owner may reschedule a non-terminal
-- run (priority, run_at, lease_expires_at, payload...), never rewrite who
-- asked for it, where, or what happened to it, and never name its status,
-- even to the value it has ("whatever the pair, running included").
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
RESET client_min_messages;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
\i test/fixtures/try.sql

SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS queued_run \gset
SELECT (rungate.enqueue('inventory.sync', 1, 10, 100)).id AS running_run \gset
UPDATE rungate.runs SET priority = 5 WHERE id = :running_run;
SELECT run_id = :running_run AS claimed_the_prioritized_run FROM rungate.claim('w');

-- allowed: scheduling columns
SELECT c AS edit, pg_temp.try(format('UPDATE rungate.runs SET %s WHERE id = %s', c, :queued_run)) AS outcome
  FROM unnest(ARRAY['priority = 9', 'run_at = now() + interval ''1 hour''',
                    'payload = ''{"x": 1}''', 'max_attempts = 5']) c;
SELECT pg_temp.try(format('UPDATE rungate.runs SET lease_expires_at = now() WHERE id = %s', :running_run)) AS expire_lease;

-- refused: identity, authority and lifecycle columns, status even unchanged
SELECT c AS edit, pg_temp.try(format('UPDATE rungate.runs SET %s WHERE id = %s', c, :queued_run)) AS outcome
  FROM unnest(ARRAY['initiator_id = 100', 'tenant_id = 11', 'workspace_id = 2',
                    'operation = ''provider.connection.verify''', 'attempt = 2',
                    'started_at = now()', 'worker = ''w''', 'reason_code = ''x''',
                    'status = status', 'status = ''queued''']) c;
SELECT pg_temp.try(format('UPDATE rungate.runs SET status = %L WHERE id = %s', 'running', :running_run)) AS running_to_running;
SELECT pg_temp.try(format('UPDATE rungate.runs SET lease_token = gen_random_uuid() WHERE id = %s', :running_run)) AS steal_lease;

-- the refused edits changed nothing: oscar's run is still his, queued, attempt 0
SELECT initiator_id, tenant_id, status, attempt, priority, max_attempts
  FROM rungate.runs WHERE id = :queued_run;

-- a column of the owner's own on rungate.runs: a new run gets its default
-- (enqueue writes through the INSERT then, not its single-row writer), and
-- the run is otherwise the same as one written without the column
ALTER TABLE rungate.runs ADD COLUMN owner_note text NOT NULL DEFAULT 'from the default';
SELECT r.owner_note, r.status, r.attempt, r.priority, r.payload,
       r.created_at = now() AS created_now, r.run_at = now() AS due_now
  FROM rungate.enqueue('inventory.sync', 1, 10, 101) r;
ALTER TABLE rungate.runs DROP COLUMN owner_note;
SELECT r.status, r.attempt, r.priority, r.payload, r.created_at = now() AS created_now,
       r.run_at = now() AS due_now, r.finished_at IS NULL AS not_finished
  FROM rungate.enqueue('inventory.sync', 1, 10, 101) r;
-- blocked at dispatch (actor 103 holds no membership): finished at once
SELECT r.status, r.reason_code IS NOT NULL AS has_reason, r.finished_at = now() AS finished_now
  FROM rungate.enqueue('inventory.sync', 1, 10, 103) r;
