SELECT bench.enqueue_second('inventory.sync', 1);
