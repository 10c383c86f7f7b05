-- Bad input: every public function called with NULLs, negative and huge
-- numbers, unknown ids, wrong scopes, empty and oversized arrays. Each call
-- must end in a documented SQLSTATE (RG4xx, 22xxx) and write nothing; never
-- an internal error (XX000) or a crash.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
RESET client_min_messages;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
\i test/fixtures/try.sql

-- a running run and its token, to aim worker calls at
SELECT (rungate.enqueue('inventory.sync', 1, 10, 100)).id AS run_id \gset
SELECT lease_token AS token FROM rungate.claim('w') \gset

CREATE TEMP TABLE calls (n serial, stmt text);
\set ECHO none
INSERT INTO calls (stmt) VALUES
  -- decide
  ($$SELECT rungate.decide(NULL, 1, 10, 100)$$),
  ($$SELECT rungate.decide('inventory.sync', NULL, 10, 100)$$),
  ($$SELECT rungate.decide('', 1, 10, 100)$$),
  ($$SELECT rungate.decide('inventory.sync', -1, 10, 100)$$),
  ($$SELECT rungate.decide('inventory.sync', 9223372036854775807, 10, 100)$$),
  ($$SELECT rungate.decide('inventory.sync', 1, -10, 100)$$),
  ($$SELECT rungate.decide('inventory.sync', 1, 10, 0)$$),
  ($$SELECT rungate.decide('inventory.sync', 1, NULL, 100)$$),
  ($$SELECT rungate.decide('reports.export', 1, 10, 100)$$),
  ($$SELECT rungate.decide(repeat('x', 100000), 1, 10, 100)$$),
  -- enqueue
  ($$SELECT rungate.enqueue(NULL, 1, 10, 100)$$),
  ($$SELECT rungate.enqueue('inventory.sync', NULL, 10, 100)$$),
  ($$SELECT rungate.enqueue('no.such.op', 1, 10, 100)$$),
  ($$SELECT rungate.enqueue('inventory.sync', 1, NULL, 100)$$),
  ($$SELECT rungate.enqueue('reports.export', 1, 10, 100)$$),
  ($$SELECT rungate.enqueue('inventory.sync', 1, 20, 100)$$),
  ($$SELECT rungate.enqueue('inventory.sync', 1, 10, 999999)$$),
  ($$SELECT rungate.enqueue('inventory.sync', 999999, 10, 100)$$),
  ($$SELECT rungate.enqueue('inventory.sync', 1, 999999, 100)$$),
  ($$SELECT rungate.enqueue('bulk.inventory.sync', 1, NULL, 100)$$),
  ($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100, run_at => 'infinity')$$),
  ($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100, run_at => '-infinity')$$),
  ($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100, priority => 2147483648)$$),
  -- enqueue_bulk
  ($$SELECT rungate.enqueue_bulk(NULL, 1, '{10}', 100)$$),
  ($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', NULL, '{10}', 100)$$),
  ($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, NULL, 100)$$),
  ($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{}', 100)$$),
  ($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,NULL}', 100)$$),
  ($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{{10},{11}}', 100)$$),
  ($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,20}', 100)$$),
  ($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,-5}', 100)$$),
  ($$SELECT rungate.enqueue_bulk('inventory.sync', 1, '{10}', 100)$$),
  ($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, array_fill(10::bigint, ARRAY[100001]), 100)$$),
  ($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10}', 999999)$$),
  -- cancel
  ($$SELECT rungate.cancel(NULL)$$),
  ($$SELECT rungate.cancel(-1)$$),
  ($$SELECT rungate.cancel(9223372036854775807)$$),
  ($$SELECT rungate.cancel(:run_id, 999999)$$),
  -- release, rerun
  ($$SELECT rungate.release(NULL, :'token')$$),
  ($$SELECT rungate.release(:run_id, NULL)$$),
  ($$SELECT rungate.release(-1, :'token')$$),
  ($$SELECT rungate.release(:run_id, gen_random_uuid())$$),
  ($$SELECT rungate.release(:run_id, :'token', 'infinity')$$),
  ($$SELECT rungate.rerun(NULL)$$),
  ($$SELECT rungate.rerun(-1, 100)$$),
  ($$SELECT rungate.rerun(:run_id, 100)$$),
  -- claim
  ($$SELECT rungate.claim(NULL)$$),
  ($$SELECT rungate.claim('')$$),
  ($$SELECT rungate.claim('w', '{}')$$),
  ($$SELECT rungate.claim('w', '{NULL}')$$),
  ($$SELECT rungate.claim('w', NULL, NULL)$$),
  ($$SELECT rungate.claim('w', NULL, 0)$$),
  ($$SELECT rungate.claim('w', NULL, -1)$$),
  ($$SELECT rungate.claim('w', NULL, 1001)$$),
  ($$SELECT rungate.claim('w', NULL, 2147483647)$$),
  -- heartbeat, recheck, complete, fail
  ($$SELECT rungate.heartbeat(NULL, :'token')$$),
  ($$SELECT rungate.heartbeat(:run_id, NULL)$$),
  ($$SELECT rungate.heartbeat(-1, :'token')$$),
  ($$SELECT rungate.heartbeat(:run_id, gen_random_uuid())$$),
  ($$SELECT rungate.heartbeat(:run_id, 'not-a-uuid')$$),
  ($$SELECT rungate.recheck(NULL, :'token')$$),
  ($$SELECT rungate.recheck(9223372036854775807, :'token')$$),
  ($$SELECT rungate.recheck(:run_id, gen_random_uuid())$$),
  ($$SELECT rungate.complete(NULL, :'token')$$),
  ($$SELECT rungate.complete(:run_id, NULL)$$),
  ($$SELECT rungate.complete(0, :'token')$$),
  ($$SELECT rungate.complete(:run_id, gen_random_uuid(), '{"x": 1}')$$),
  ($$SELECT rungate.fail(NULL, :'token', 'e')$$),
  ($$SELECT rungate.fail(:run_id, :'token', NULL)$$),
  ($$SELECT rungate.fail(:run_id, NULL, 'e')$$),
  ($$SELECT rungate.fail(:run_id, :'token', 'e', true, '-1 second')$$),
  ($$SELECT rungate.fail(-7, :'token', 'e')$$),
  ($$SELECT rungate.fail(:run_id, gen_random_uuid(), 'e')$$),
  -- purge
  ($$SELECT rungate.purge(NULL)$$),
  -- monitoring
  ($$SELECT rungate.operations(NULL, 1)$$),
  ($$SELECT rungate.operations(100, NULL)$$),
  ($$SELECT rungate.operations(100, 1, 'done')$$),
  ($$SELECT rungate.operations(100, 1, max_rows => 0)$$),
  ($$SELECT rungate.operations(100, 1, max_rows => 10001)$$),
  ($$SELECT rungate.operations(100, 1, max_rows => NULL)$$),
  ($$SELECT rungate.operations(100, 1, before_id => -1)$$),
  ($$SELECT rungate.operations(100, -1)$$),
  ($$SELECT rungate.operations(-100, 1)$$),
  ($$SELECT rungate.operation(NULL, 1)$$),
  ($$SELECT rungate.operation(100, NULL)$$),
  ($$SELECT rungate.operation(100, -1)$$),
  ($$SELECT rungate.operation(-100, :run_id)$$),
  -- the fence
  ($$SELECT rungate.guard_writes('rungate.runs', 'id')$$),
  ($$SELECT rungate.guard_writes('pg_class', 'oid')$$),
  ($$SELECT rungate.guard_writes(NULL, 'id')$$),
  ($$SELECT rungate.unguard_writes(NULL)$$);
\set ECHO all

-- Run every call once (each in its own subtransaction) and keep its outcome.
ALTER TABLE calls ADD COLUMN outcome text;
UPDATE calls SET outcome = pg_temp.try(
    replace(replace(stmt, ':run_id', :'run_id'), ':''token''', quote_literal(:'token')));
SELECT n, left(outcome, 110) AS outcome FROM calls ORDER BY n;

-- No call succeeded or raised an internal error: every outcome is a
-- documented error (RG4xx, a data exception, or no such signature).
SELECT count(*) AS undocumented FROM calls
 WHERE outcome !~ '^(RG40[0349]|22[0-9A-Z]{3}|42883): ';

-- Nothing was written: one run (running), its two audit rows, no notification.
SELECT status, attempt FROM rungate.runs ORDER BY id;
SELECT event FROM rungate.audit_log ORDER BY id;
SELECT count(*) AS notifications FROM rungate.notifications;

-- In a READ ONLY transaction (and on a standby, whose transactions all are)
-- every call that writes is refused with 25006, as the SQL statements
-- rungate's writes replace would be; nothing is written.
BEGIN READ ONLY;
SELECT pg_temp.try($$SELECT rungate.claim('w')$$) AS claim;
SELECT pg_temp.try(format('SELECT rungate.complete(%s, %L)', :run_id, :'token')) AS complete;
SELECT pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :run_id, :'token')) AS heartbeat;
SELECT pg_temp.try(format('SELECT rungate.fail(%s, %L, %L)', :run_id, :'token', 'x')) AS fail;
SELECT pg_temp.try($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100)$$) AS enqueue;
COMMIT;
SELECT status, attempt FROM rungate.runs ORDER BY id;
SELECT count(*) AS audit_rows FROM rungate.audit_log;
