\set off random(0, 100000000)
SELECT bench.mode_top_up(:depth, :max_batch, :off);
