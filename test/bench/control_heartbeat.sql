\set i random(1, :nruns)
SELECT rungate.heartbeat(h.run_id, h.lease_token) FROM bench.hb h WHERE h.i = :i;
