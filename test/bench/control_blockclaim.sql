SELECT 1 AS more WHERE bench.timed_claim('w') > 0 \gset
