SELECT * FROM rungate.claim('bench');
