WITH m AS (
  UPDATE bench.bare SET status = 'running', attempt = attempt + 1, worker = 'bench',
         lease_token = gen_random_uuid(), lease_expires_at = now() + interval '5 minutes',
         started_at = COALESCE(started_at, now())
   WHERE id = (SELECT id FROM bench.bare WHERE status = 'queued' AND run_at <= now()
                ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)
  RETURNING id, lease_token, attempt, operation, workspace_id, tenant_id, initiator_id, payload, lease_expires_at),
a AS (
  INSERT INTO bench.bare_audit (at, run_id, workspace_id, tenant_id, attempt, event,
                                authority, actor_id, decision, checks, worker, txid)
  SELECT clock_timestamp(), m.id, m.workspace_id, m.tenant_id, m.attempt, 'started',
         'actor', m.initiator_id, 'allow',
         '[{"code": "system_authority_not_allowed", "passed": true}, {"code": "actor_disabled", "passed": true}, {"code": "actor_not_in_workspace", "passed": true}, {"code": "tenant_not_in_workspace", "passed": true}, {"code": "actor_not_in_tenant", "passed": true}, {"code": "capability_missing", "passed": true}, {"code": "workspace_not_operable", "passed": true}, {"code": "tenant_not_operable", "passed": true}, {"code": "prerequisite_unmet", "passed": true}]',
         'bench', txid_current()
    FROM m)
SELECT id, lease_token, attempt, operation, workspace_id, tenant_id, initiator_id, payload, lease_expires_at FROM m;
