UPDATE bench.bare SET status = 'running', attempt = attempt + 1, worker = 'bench',
       lease_token = gen_random_uuid(), lease_expires_at = now() + interval '5 minutes',
       started_at = COALESCE(started_at, now())
 WHERE id IN (SELECT id FROM bench.bare WHERE status = 'queued' AND run_at <= now()
               ORDER BY priority DESC, id LIMIT 10 FOR UPDATE SKIP LOCKED)
RETURNING id, lease_token, attempt, operation, workspace_id, tenant_id, initiator_id, payload, lease_expires_at;
