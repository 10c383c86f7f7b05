SELECT run_id, lease_token FROM rungate_proxy.claim_on(0, 'bench') \gset
SELECT status FROM rungate_proxy.complete(:run_id, :lease_token);
