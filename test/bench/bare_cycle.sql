UPDATE bench.bare SET status = 'running', attempt = attempt + 1, worker = 'bench',
       lease_token = gen_random_uuid(), lease_expires_at = now() + interval '5 minutes',
       started_at = COALESCE(started_at, now())
 WHERE id = (SELECT id FROM bench.bare WHERE status = 'queued' AND run_at <= now()
              ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id AS run_id, lease_token \gset
UPDATE bench.bare SET status = 'succeeded', finished_at = now(), lease_token = NULL,
       lease_expires_at = NULL
 WHERE id = :run_id AND lease_token = :lease_token AND status = 'running'
 RETURNING status;
