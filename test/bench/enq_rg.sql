\set a random(1, 2000)
SELECT id FROM rungate.enqueue('inventory.sync', 1, (:a - 1) / 10 + 1, :a);
