# 002_metrics.pl: what rungate's counters do across server starts and
# settings (docs/monitoring.md), on a node of its own:
#   * without rungate in shared_preload_libraries there are no counters:
#     rungate.metrics() and metrics_text() show the gauges alone, right
#   * preloaded, the counters start at zero at server start (what happened
#     before is not counted), count per database, and start again at zero
#     after a restart
#   * a prepared transaction (two-phase commit) is not counted, even once
#     committed; rungate.metrics = off leaves a session's transactions out
#   * with rungate.metrics_max_series at its minimum, keys beyond the table
#     count in rungate_metrics_overflow_total, and those that fit stay right
# Run by test/scripts/tap_tests.sh (make test). Environment: RUNGATE_SEED.

use strict;
use warnings;

use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed_file = $ENV{RUNGATE_SEED} // "$FindBin::Bin/../fixtures/seed.sql";

my $node = PostgreSQL::Test::Cluster->new('metrics');
$node->init;
$node->append_conf('postgresql.conf', <<'CONF');
max_prepared_transactions = 5
log_min_messages = warning
CONF
$node->start;

sub sql
{
	my ($sql, $db) = @_;
	return $node->safe_psql($db // 'postgres', $sql);
}

# the metric names and TYPE lines there are now
sub families
{
	my ($db) = @_;
	return sql("SELECT string_agg(DISTINCT metric, ',' ORDER BY metric) FROM rungate.metrics()", $db);
}

sub types
{
	my ($db) = @_;
	my $text = sql("SELECT rungate.metrics_text()", $db);
	return join(',', map { (split / /)[2] } grep { /^# TYPE / } split /\n/, $text);
}

# a counter's value (0 when absent)
sub counter
{
	my ($metric, $labels, $db) = @_;
	return sql(
		"SELECT coalesce(sum(value), 0) FROM rungate.metrics()
		  WHERE metric = '$metric' AND labels @> '$labels'", $db);
}

sub setup_db
{
	my ($db) = @_;
	sql("CREATE DATABASE $db") if $db ne 'postgres';
	sql("CREATE EXTENSION rungate", $db);
	$node->safe_psql($db, "\\i $seed_file");
}

# ---------------------------------------------------------------- no preload
setup_db('postgres');
sql(q{
	SELECT count(rungate.enqueue('inventory.sync', 1, 10, 100)) FROM generate_series(1, 3);
	SELECT count(*) FROM rungate.claim('w', NULL, 1);
	SELECT rungate.enqueue('inventory.sync', 1, 10, 102);
});
is(families(),
	'rungate_expired_leases,rungate_queue_lag_seconds,rungate_runs',
	'not preloaded: metrics() has the gauges only');
is(types(),
	'rungate_runs,rungate_queue_lag_seconds,rungate_expired_leases',
	'not preloaded: metrics_text() has the gauges only');
is(sql(q{SELECT value FROM rungate.metrics()
          WHERE metric = 'rungate_runs' AND labels = '{"status": "queued", "operation": "inventory.sync"}'}),
	'2', 'not preloaded: the gauges are right');
is(sql("SELECT count(*) FROM rungate.metrics() WHERE metric = 'rungate_runs'"),
	'10', 'not preloaded: a gauge row per operation type and status');

# ---------------------------------------------------------------- preloaded
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'rungate'\n");
$node->restart;
is(families(),
	'rungate_blocked_total,rungate_claim_duration_seconds_bucket,rungate_claim_duration_seconds_count,'
	  . 'rungate_claim_duration_seconds_sum,rungate_expired_leases,rungate_metrics_overflow_total,'
	  . 'rungate_queue_lag_seconds,rungate_runs,rungate_transitions_total',
	'preloaded: the counters are there');
is(counter('rungate_transitions_total', '{"event": "dispatched"}'), '0',
	'preloaded: what happened before the server started is not counted');
is(counter('rungate_blocked_total', '{}'), '0', 'preloaded: no block counted yet');

sql(q{
	SELECT count(*) FROM rungate.claim('w', NULL, 1);
	SELECT rungate.enqueue('inventory.sync', 1, 10, 102);
});
is(counter('rungate_transitions_total', '{"event": "started", "operation": "inventory.sync"}'), '1',
	'a claim is counted');
is(counter('rungate_claim_duration_seconds_count', '{}'), '1', 'its duration is counted');
is(counter('rungate_blocked_total', '{"reason_code": "capability_missing"}'), '1',
	'a block is counted');

# per database: another database's activity is its own
setup_db('other');
sql(q{SELECT count(rungate.enqueue('inventory.sync', 1, 10, 100)) FROM generate_series(1, 5)}, 'other');
is(counter('rungate_transitions_total', '{"event": "dispatched"}', 'other'), '5',
	'the other database counts its own');
is(counter('rungate_transitions_total', '{"event": "dispatched"}'), '0',
	'and this one, where none was dispatched since the start, does not see them');

# two-phase commit: not counted, even once committed
sql(q{
	BEGIN;
	SELECT count(*) FROM rungate.claim('w2pc', NULL, 1);
	PREPARE TRANSACTION 'metrics_2pc';
});
sql("COMMIT PREPARED 'metrics_2pc'");
is(sql("SELECT count(*) FROM rungate.runs WHERE worker = 'w2pc'"), '1', 'the prepared claim committed');
is(counter('rungate_transitions_total', '{"event": "started", "operation": "inventory.sync"}'), '1',
	'a prepared transaction is not counted');

# rungate.metrics = off: this session's transactions are left out
sql(q{
	SET rungate.metrics = off;
	SELECT rungate.enqueue('inventory.sync', 1, 10, 102);
});
is(counter('rungate_blocked_total', '{"reason_code": "capability_missing"}'), '1',
	'rungate.metrics = off: not counted');

# a restart starts again from zero
$node->restart;
is(counter('rungate_blocked_total', '{}'), '0', 'after a restart the counters are zero');
is(counter('rungate_transitions_total', '{}', 'other'), '0', 'in every database');
is(sql(q{SELECT value FROM rungate.metrics()
          WHERE metric = 'rungate_runs' AND labels = '{"status": "running", "operation": "inventory.sync"}'}),
	'3', 'the gauges do not depend on the counters');

# ---------------------------------------------------------------- overflow
$node->append_conf('postgresql.conf', "rungate.metrics_max_series = 64\n");
$node->restart;
is(sql("SHOW rungate.metrics_max_series"), '64', 'the table holds 64 entries');
# 80 operation types, one run each: 80 keys (dispatched, type) that cannot
# all fit; the first ones that do stay exact
sql(q{
	INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant, allow_system)
	SELECT 'many.' || lpad(g::text, 2, '0'), 'reports.run', 'workspace', false, true
	  FROM generate_series(1, 80) g;
});
sql("SELECT rungate.enqueue('many.' || lpad(g::text, 2, '0'), 1) FROM generate_series(1, 80) g");
my $overflow = counter('rungate_metrics_overflow_total', '{}');
ok($overflow > 0, "beyond the table: counted as overflow ($overflow)");
my $kept = sql(q{SELECT sum(value) FROM rungate.metrics()
                  WHERE metric = 'rungate_transitions_total' AND labels->>'operation' LIKE 'many.%'});
is($kept + $overflow, 80, 'every increment is counted once: in its entry or as overflow');
is(sql(q{SELECT count(*) FROM rungate.metrics()
          WHERE metric = 'rungate_transitions_total' AND labels->>'operation' LIKE 'many.%'
            AND labels->>'event' = 'dispatched' AND value NOT IN (0, 1)}),
	'0', 'the entries that fit are exact');

$node->stop;
done_testing();
