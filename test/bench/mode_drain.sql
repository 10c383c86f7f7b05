SELECT count(*) FROM rungate.claim('w', NULL, 10);
