SELECT * FROM rungate.claim('bench', NULL, 10);
