SELECT run_id, lease_token FROM rungate.claim('bench') \gset
SELECT status FROM rungate.complete(:run_id, :lease_token);
