SELECT coalesce(max(run_id), 0) AS run_id, max(lease_token::text) AS lease_token
  FROM rungate.claim('bench') \gset
\if :run_id > 0
SELECT status FROM rungate.complete(:run_id, :lease_token);
\endif
