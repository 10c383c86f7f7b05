\set a random(1, 2000)
INSERT INTO bench.bare_enq (workspace_id, tenant_id, operation, initiator_id)
  VALUES (1, (:a - 1) / 10 + 1, 'inventory.sync', :a) RETURNING id;
