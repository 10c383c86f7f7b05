# 003_logical_replication.pl: rungate's tables under logical replication,
# and a blue/green switchover (README "Upgrading", docs/upgrading.md).
#
# Two nodes, both with rungate in shared_preload_libraries and nothing else
# set for it: a publisher (wal_level = logical) with the seed fixture and a
# fenced application table, and a subscriber with CREATE EXTENSION rungate
# and the same application table. CREATE PUBLICATION ... FOR ALL TABLES, then
# CREATE SUBSCRIPTION while a dispatcher enqueues (idempotency keys and bulk
# runs too), workers claim, complete (writing a fenced side effect), fail
# (retryable and not), recheck and heartbeat, a reaper requeues expired
# leases, a revoker changes authority and an administrator purges, all on the
# publisher. Before the subscription, operation_types is rewritten so that
# its initial copy meets the bulk type before its item type. After the lag
# drains:
#   * both nodes hold the same runs, audit rows, notifications, authority
#     rows and side effects (row by row: md5 of every row, ordered by key);
#   * the subscriber's log has no ERROR, and a listener there heard no
#     NOTIFY: applied changes write and signal nothing of their own;
#   * a superuser session on the subscriber with session_replication_role =
#     replica cannot insert, update or delete runs or audit rows (RG409);
#   * the subscriber's authority cache sees an applied revocation at once.
# Then the switchover: workers stopped, the subscription dropped; enqueue and
# claim on the subscriber raise RG409 with a hint naming
# rungate.sync_sequences(); after it, the new primary enqueues, claims,
# completes and fails with no id conflict; a lease held at the cut is still
# held there (same token), a completion written on the old primary after the
# cut is not, and reap_expired requeues that run once its lease expires.
#
# Run by test/scripts/tap_tests.sh (make test); see 001_crash_recovery.pl
# for running it by hand. RUNGATE_SUBSCRIBER_INSTALL, when set, is the
# installation directory of the subscriber's PostgreSQL (another major
# version, for an upgrade); by default both nodes use the same one.

use strict;
use warnings;

use FindBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $seed_file = $ENV{RUNGATE_SEED} // "$FindBin::Bin/../fixtures/seed.sql";
my $workload_seconds = 8;
srand(20261206);

# The test drives reap_expired itself and compares both nodes at chosen
# moments: the scheduler, which would keep reaping on the publisher between
# a catch-up and a comparison, is off (test/t/002_scheduler.pl covers it).
my $conf = <<'CONF';
shared_preload_libraries = 'rungate'
rungate.scheduler = off
max_connections = 40
log_min_messages = warning
synchronous_commit = on
CONF

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->append_conf('postgresql.conf', $conf);
$pub->start;

my $sub = PostgreSQL::Test::Cluster->new('subscriber',
	$ENV{RUNGATE_SUBSCRIBER_INSTALL}
	? (install_path => $ENV{RUNGATE_SUBSCRIBER_INSTALL})
	: ());
$sub->init;
$sub->append_conf('postgresql.conf', $conf);
$sub->start;

sub on
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# An application table whose rows record side effects of runs, fenced on
# both nodes (rungate.guard_writes installs an ENABLE ALWAYS trigger).
my $app_ddl = q{
	CREATE TABLE app_effects (run_id bigint, attempt int, note text,
	                          PRIMARY KEY (run_id, attempt));
	SELECT rungate.guard_writes('app_effects', 'run_id');
};

on($pub, 'CREATE EXTENSION rungate');
on($pub, slurp_file($seed_file));
on($pub, $app_ddl);
# a two-second lease, so that the reaper finds expired leases
on($pub, "UPDATE rungate.operation_types SET lease = '2 seconds' WHERE name = 'reports.export'");
# a new version of the item type, after the bulk type in the table's heap:
# the initial copy meets bulk.inventory.sync before inventory.sync
on($pub, "UPDATE rungate.operation_types SET lease = lease WHERE name = 'inventory.sync'");

on($sub, 'CREATE EXTENSION rungate');
on($sub, $app_ddl);
is(on($sub, 'SELECT available FROM rungate.authority_cache()'), 't',
	'the subscriber has rungate preloaded (authority cache available)');

# ---------------------------------------------------------------------------
# Some history before the subscription: its initial copy holds runs in every
# status, audit rows and notifications
# ---------------------------------------------------------------------------
on($pub, q{
	SELECT rungate.enqueue('inventory.sync', 1, 10, 100) FROM generate_series(1, 6);
	SELECT rungate.enqueue('restore.execute', 1, 11, 100);          -- blocked at dispatch
	SELECT rungate.enqueue('reports.export', 1, NULL, NULL, run_at => now() + interval '1 day');
	SELECT count(*) FROM rungate.claim('w0', '{inventory.sync}', 4);
	INSERT INTO app_effects SELECT id, attempt, 'before' FROM rungate.runs WHERE status = 'running';
	SELECT rungate.complete(id, lease_token) FROM rungate.runs WHERE status = 'running' AND id = (SELECT min(id) FROM rungate.runs WHERE status = 'running');
	SELECT rungate.fail(id, lease_token, 'fatal') FROM rungate.runs WHERE status = 'running' AND id = (SELECT min(id) FROM rungate.runs WHERE status = 'running');
	SELECT rungate.fail(id, lease_token, 'transient', true) FROM rungate.runs WHERE status = 'running' AND id = (SELECT min(id) FROM rungate.runs WHERE status = 'running');
	SELECT rungate.cancel((SELECT min(id) FROM rungate.runs WHERE status = 'queued'), 100);
});

# A listener on the subscriber: applied changes must not NOTIFY.
my $listener = $sub->background_psql('postgres');
$listener->query_safe('LISTEN rungate_queued; LISTEN rungate_blocked;');

on($pub, 'CREATE PUBLICATION p FOR ALL TABLES');
my $pub_connstr = $pub->connstr . ' dbname=postgres';
on($sub, "CREATE SUBSCRIPTION s CONNECTION '$pub_connstr' PUBLICATION p");

# ---------------------------------------------------------------------------
# The workload, on the publisher, while the initial copy runs
# ---------------------------------------------------------------------------
sub pick
{
	my (@weighted) = @_;    # [weight, text], ...
	my $total = 0;
	$total += $_->[0] for @weighted;
	my $x = rand($total);
	for my $w (@weighted)
	{
		return $w->[1] if ($x -= $w->[0]) < 0;
	}
	return $weighted[-1][1];
}

sub dispatcher_stmt
{
	my $key = int(rand(8));
	my $call = pick(
		[ 30, "rungate.enqueue('inventory.sync', 1, 10, 100)" ],
		[ 15, "rungate.enqueue('inventory.sync', 1, 10, 101)" ],
		[ 10, "rungate.enqueue('inventory.sync', 1, 11, NULL)" ],
		[ 10, "rungate.enqueue('inventory.sync', 1, 10, 100, idempotency_key => 'k$key')" ],
		[ 10, "rungate.enqueue('provider.connection.verify', 1, 11, 100)" ],
		[ 10, "rungate.enqueue('reports.export', 1, NULL, NULL)" ],
		[ 10, "rungate.enqueue('restore.execute', 1, 11, 100)" ],
		[ 5,  "rungate.enqueue('restore.execute', 1, 10, 100)" ],
		[ 4,  "rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11,12}', 100)" ]);
	return "SELECT 'E|' || r.id || '|' || r.status FROM $call r;\nSELECT pg_sleep(0.02);\n";
}

# A worker touches only its own running runs, locked SKIP LOCKED so that the
# reaper and this worker never race for the same run.
sub worker_stmt
{
	my ($w) = @_;
	# reports.export is the lazy worker's
	my $ops = '{inventory.sync,provider.connection.verify,restore.execute,bulk.inventory.sync}';
	my $own = "SELECT id, lease_token, attempt FROM rungate.runs"
	  . " WHERE status = 'running' AND worker = '$w'"
	  . " AND operation <> 'bulk.inventory.sync'"
	  . " AND lease_expires_at >= now()"
	  . " ORDER BY id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED";
	return pick(
		[ 30, "SELECT 'S|' || c.run_id FROM rungate.claim('$w', '$ops', 1) c;\n" ],
		[ 10, "INSERT INTO app_effects SELECT q.id, q.attempt, '$w' FROM ($own) q ON CONFLICT DO NOTHING;\n" ],
		[ 25, "SELECT 'D|' || r.id FROM ($own) q,"
			  . " LATERAL rungate.complete(q.id, q.lease_token, '{\"ok\": true}') r;\n" ],
		[ 12, "SELECT 'F|' || r.id FROM ($own) q,"
			  . " LATERAL rungate.fail(q.id, q.lease_token, 'transient', true) r;\n" ],
		[ 5, "SELECT 'F|' || r.id FROM ($own) q,"
			  . " LATERAL rungate.fail(q.id, q.lease_token, 'fatal') r;\n" ],
		[ 8, "SELECT 'R|' || q.id FROM ($own) q, LATERAL rungate.recheck(q.id, q.lease_token) d;\n" ],
		[ 5, "SELECT 'H|' || q.id FROM ($own) q, LATERAL rungate.heartbeat(q.id, q.lease_token) h;\n" ]);
}

sub admin_stmt
{
	return pick(
		[ 6, "SELECT 'X|' || rungate.reap_expired();\n" ],
		[ 2, "SELECT 'C|' || r.id FROM (SELECT id FROM rungate.runs WHERE status = 'queued'"
			  . " AND parent_id IS NULL ORDER BY id DESC LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED) q,"
			  . " LATERAL rungate.cancel(q.id, 100) r;\n" ],
		[ 2, "DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;\n" ],
		[ 2, "INSERT INTO rungate.tenant_members VALUES (10, 101, 'operator') ON CONFLICT DO NOTHING;\n" ],
		[ 2, "UPDATE rungate.tenants SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END WHERE id = 11;\n" ],
		[ 2, "UPDATE rungate.tenant_prerequisites SET satisfied = NOT satisfied WHERE tenant_id = 11 AND name = 'admin_consent';\n" ])
	  . "SELECT pg_sleep(0.05);\n";
}

my @sessions;

sub start_session
{
	my ($name, $gen) = @_;
	my $s = { name => $name, gen => $gen, in => '', out => '', err => '' };
	$s->{h} = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=0',
			'-d', $pub->connstr('postgres') ],
		'<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err});
	push @sessions, $s;
	return;
}

start_session("dispatcher$_", \&dispatcher_stmt) for 1 .. 2;
for my $w (1 .. 3)
{
	start_session("w$w", sub { worker_stmt("w$w") });
}
start_session('admin', \&admin_stmt);
# a worker that claims reports.export and never finishes (as if it died):
# its two-second leases expire, and the reaper requeues or fails its runs
start_session('lazy', sub { "SELECT 'L|' || c.run_id FROM rungate.claim('lazy', '{reports.export}', 1) c;\n"
	  . "SELECT pg_sleep(0.2);\n" });

my $start = time();
my $until = $start + $workload_seconds;
my $purged;
while (time() < $until)
{
	# halfway, retention removes what finished in the first seconds
	if (!defined $purged && time() > $start + $workload_seconds / 2)
	{
		$purged = on($pub, "SELECT rungate.purge(now() - interval '2 seconds')");
		diag("retention purged $purged runs halfway");
	}
	for my $s (@sessions)
	{
		$s->{in} .= $s->{gen}->() while length($s->{in}) < 2000;
		$s->{h}->pump_nb;
	}
	usleep(5_000);
}
# the workers stop (what they have sent but not run yet is dropped), and
# their backends end
for my $s (@sessions)
{
	$s->{in} = '';
	$s->{h}->pump_nb;
	eval { $s->{h}->kill_kill(grace => 5); 1 };
}
$pub->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity
	 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()})
  or die 'the workload sessions did not end';

my @errors = map { my $s = $_; map { "$s->{name}: $_" } grep { /ERROR:/ } split /\n/, $s->{err} } @sessions;
is(join("\n", @errors), '', 'no client of the publisher got an error');
my %count;
for my $s (@sessions)
{
	$count{ substr($_, 0, 1) }++ for grep { /^[A-Z]\|/ } split /\n/, $s->{out};
}
diag('acknowledged on the publisher: ' . join(', ', map { "$_=$count{$_}" } sort keys %count));
cmp_ok($count{E} // 0, '>', 50, 'the dispatcher enqueued');
cmp_ok($count{D} // 0, '>', 10, 'workers completed runs');
cmp_ok($count{F} // 0, '>', 5,  'workers failed runs');

# for the tests below: a run parked (queued, due tomorrow) and one finished
on($pub, q{
	SELECT rungate.enqueue('inventory.sync', 1, 10, 100, run_at => now() + interval '1 day');
	SELECT rungate.enqueue('provider.connection.verify', 1, 10, 100, priority => 100);
	SELECT rungate.complete(c.run_id, c.lease_token)
	  FROM rungate.claim('w0', '{provider.connection.verify}', 1) c;
});

# ---------------------------------------------------------------------------
# After the lag drains, both nodes hold the same rows
# ---------------------------------------------------------------------------
# The initial copy done and the apply caught up with the publisher; a
# subscriber that logs errors (a refused row is retried forever) gives up
# waiting at once.
sub drained
{
	my $lsn = on($pub, 'SELECT pg_current_wal_lsn()');
	my $deadline = time() + 60;
	while (time() < $deadline)
	{
		return 1
		  if on($sub, q{SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')}) eq 't'
		  && on($pub, "SELECT coalesce(bool_and(replay_lsn >= '$lsn'), false) FROM pg_stat_replication"
			  . " WHERE application_name = 's'") eq 't';
		return 0 if slurp_file($sub->logfile) =~ /ERROR/;
		usleep(100_000);
	}
	return 0;
}
ok(drained(), 'the subscription copied every table and caught up');

my %tables = (
	'rungate.runs'                 => 'id',
	'rungate.audit_log'            => 'id',
	'rungate.notifications'        => 'id',
	'rungate.workspaces'           => 'id',
	'rungate.tenants'              => 'id',
	'rungate.actors'               => 'id',
	'rungate.tenant_members'       => 'tenant_id, actor_id',
	'rungate.workspace_members'    => 'workspace_id, actor_id',
	'rungate.tenant_prerequisites' => 'tenant_id, name',
	'rungate.role_capabilities'    => 'role, capability',
	'rungate.operation_types'      => 'name',
	'app_effects'                  => 'run_id, attempt');

sub digest
{
	my ($node, $table) = @_;
	return on($node,
		"SET TimeZone = 'UTC'; SELECT count(*) || ' rows, md5 ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY $tables{$table}), ''))"
		  . " FROM $table t");
}

sub same_rows
{
	my ($when) = @_;
	for my $table (sort keys %tables)
	{
		is(digest($sub, $table), digest($pub, $table), "$when: $table is the same on both nodes");
	}
	return;
}

same_rows('after the lag drained');
diag('runs by status: '
	  . on($pub, "SELECT string_agg(status || '=' || n, ', ' ORDER BY status) FROM"
		  . " (SELECT status, count(*) n FROM rungate.runs GROUP BY status) s")
	  . '; audit rows: ' . on($pub, 'SELECT count(*) FROM rungate.audit_log')
	  . '; notifications: ' . on($pub, 'SELECT count(*) FROM rungate.notifications'));
cmp_ok(on($pub, q{SELECT count(DISTINCT status) FROM rungate.runs}), '>=', 5,
	'the replicated runs span the statuses');
cmp_ok(on($pub, q{SELECT count(*) FROM rungate.audit_log WHERE event = 'lease_expired'}), '>', 0,
	'expired leases were reaped on the publisher');
cmp_ok(on($pub, q{SELECT count(*) FROM rungate.runs WHERE parent_id IS NOT NULL}), '>', 0,
	'bulk runs fanned out on the publisher');

my $log = slurp_file($sub->logfile);
is(join("\n", grep { /ERROR|FATAL|PANIC/ } split /\n/, $log), '',
	"the subscriber's log has no error (initial copy and apply both went through)");
unlike($listener->query_safe('SELECT 1'), qr/Asynchronous notification/,
	'a listener on the subscriber heard no NOTIFY from applied changes');

# ---------------------------------------------------------------------------
# Sessions on the subscriber are refused, session_replication_role or not
# ---------------------------------------------------------------------------
sub sqlstate_of
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"SET session_replication_role = replica;\n$sql",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $1 if $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return "accepted (rc $rc)";
}

my $parked = on($sub, q{SELECT id FROM rungate.runs WHERE status = 'queued' AND run_at > now() ORDER BY id DESC LIMIT 1});
my $done = on($sub, q{SELECT max(id) FROM rungate.runs WHERE status = 'succeeded'});
my $audit_row = on($sub, q{SELECT min(id) FROM rungate.audit_log});
is(sqlstate_of($sub, 'SHOW session_replication_role'), 'accepted (rc 0)', 'a superuser may set the replica role');
is( sqlstate_of($sub, q{INSERT INTO rungate.runs (workspace_id, tenant_id, operation, status, max_attempts)
	                     VALUES (1, 10, 'inventory.sync', 'queued', 3)}),
	'RG409', 'replica role: INSERT into rungate.runs is refused');
is(sqlstate_of($sub, "UPDATE rungate.runs SET status = 'running' WHERE id = $parked"),
	'RG409', 'replica role: UPDATE of a run\'s status is refused');
is(sqlstate_of($sub, "UPDATE rungate.runs SET priority = 7 WHERE id = $done"),
	'RG409', 'replica role: UPDATE of a terminal run is refused');
is(sqlstate_of($sub, "DELETE FROM rungate.runs WHERE id = $done"),
	'RG409', 'replica role: DELETE from rungate.runs is refused');
is( sqlstate_of($sub, q{INSERT INTO rungate.audit_log (at, run_id, workspace_id, attempt, event, authority, txid)
	                     VALUES (now(), 1, 1, 0, 'dispatched', 'system', 1)}),
	'RG409', 'replica role: INSERT into rungate.audit_log is refused');
is(sqlstate_of($sub, "UPDATE rungate.audit_log SET worker = 'forged' WHERE id = $audit_row"),
	'RG409', 'replica role: UPDATE of rungate.audit_log is refused');
is(sqlstate_of($sub, "DELETE FROM rungate.audit_log WHERE id = $audit_row"),
	'RG409', 'replica role: DELETE from rungate.audit_log is refused');
is(sqlstate_of($sub, "INSERT INTO app_effects VALUES ($done, 1, 'forged')"),
	'RG409', 'replica role: a fenced write for a finished run is refused');

# ---------------------------------------------------------------------------
# The subscriber's authority cache sees an applied revocation at once
# ---------------------------------------------------------------------------
on($pub, q{
	UPDATE rungate.tenants SET status = 'active' WHERE id = 10;
	INSERT INTO rungate.tenant_members VALUES (10, 101, 'operator') ON CONFLICT DO NOTHING;
});
$pub->wait_for_catchup('s');
my $viewer = $sub->background_psql('postgres');
my $decide = q{SELECT d.allowed || '|' || coalesce(d.reason_code, '-')
                 FROM rungate.decide('inventory.sync', 1, 10, 101) d;};
is($viewer->query_safe($decide), 'true|-', 'subscriber: actor 101 may sync tenant 10');
$viewer->query_safe($decide);
cmp_ok($viewer->query_safe('SELECT hits FROM rungate.authority_cache()'), '>', 0,
	'subscriber: the decision was served from the authority cache');
on($pub, 'DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101');
$pub->wait_for_catchup('s');
is($viewer->query_safe($decide), 'false|actor_not_in_tenant',
	'subscriber: the applied revocation denies at once');
$viewer->quit;

same_rows('after the refused writes');

# ---------------------------------------------------------------------------
# Switchover: stop the workers, lag 0, drop the subscription, sync_sequences
# ---------------------------------------------------------------------------
# two runs running at the cut, with their leases: one the worker finishes on
# the new primary, the other it (wrongly) finishes on the old one
# (and one due run, queued). The second's lease is long enough for its
# completion on the old primary, however slowly the cut goes on a loaded
# machine; the new primary waits for it to expire before reaping it.
on($pub, "UPDATE rungate.operation_types SET lease = '10 seconds' WHERE name = 'reports.export'");
on($pub, q{
	SELECT rungate.enqueue('inventory.sync', 1, 10, 100, priority => 100);
	SELECT rungate.enqueue('reports.export', 1, NULL, NULL, priority => 100);
	SELECT rungate.enqueue('provider.connection.verify', 1, 10, 100);
});
my ($kept, $kept_token) = split /\|/, on($pub, q{
	SELECT c.run_id || '|' || c.lease_token FROM rungate.claim('cut', '{inventory.sync}', 1) c});
my ($lost, $lost_token) = split /\|/, on($pub, q{
	SELECT c.run_id || '|' || c.lease_token FROM rungate.claim('cut', '{reports.export}', 1) c});
ok($kept && $lost, "two runs are running at the cut ($kept, $lost)");
$pub->wait_for_catchup('s');
same_rows('at the cut');
my $runs_at_cut = digest($sub, 'rungate.runs') . digest($sub, 'rungate.audit_log');

on($sub, 'ALTER SUBSCRIPTION s DISABLE');
on($sub, 'DROP SUBSCRIPTION s');
is(on($pub, "SELECT status FROM rungate.complete($lost, '$lost_token')"), 'succeeded',
	'old primary: a completion after the cut succeeds there');

sub error_of
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $err;
}
# retention emptied the oldest ids: the subscriber's sequences, still at 1,
# give ids that no row holds, so the run insert itself would succeed
is(on($sub, 'SELECT min(id) > 1 FROM rungate.runs'), 't',
	'new primary: purged runs left the lowest ids free');
my $err = error_of($sub, q{SELECT rungate.enqueue('inventory.sync', 1, 10, 100)});
like($err, qr/ERROR:\s+RG409: sequence rungate\.\w+ of rungate\.\w+\.id is behind the rows present/,
	'new primary before sync_sequences: enqueue raises RG409 naming the lagging sequence');
like($err, qr/HINT:.*rungate\.sync_sequences\(\)/, '... with a hint naming rungate.sync_sequences()');
unlike($err, qr/23505|duplicate key|idempotency/, '... not a key conflict');
like(error_of($sub, q{SELECT rungate.claim('w1')}), qr/ERROR:\s+RG409:.*\n(.*\n)*HINT:.*sync_sequences/,
	'new primary before sync_sequences: claim raises RG409 with the hint too');
is(digest($sub, 'rungate.runs') . digest($sub, 'rungate.audit_log'), $runs_at_cut,
	'new primary: the refused enqueue and claim changed nothing');

my $max_before = on($sub, 'SELECT max(id) FROM rungate.runs');
my $audit_before = on($sub, 'SELECT max(id) FROM rungate.audit_log');
my $notification_before = on($sub, 'SELECT max(id) FROM rungate.notifications');
my $synced = q{
	SELECT string_agg(t, ', ' ORDER BY t) FROM (VALUES
	    ('runs', (SELECT max(id) FROM rungate.runs)),
	    ('audit_log', (SELECT max(id) FROM rungate.audit_log)),
	    ('notifications', (SELECT max(id) FROM rungate.notifications)),
	    ('workspaces', (SELECT max(id) FROM rungate.workspaces)),
	    ('tenants', (SELECT max(id) FROM rungate.tenants)),
	    ('actors', (SELECT max(id) FROM rungate.actors))) v(t, m)
	 WHERE coalesce(pg_sequence_last_value(pg_get_serial_sequence('rungate.' || t, 'id')), 0) < m};
isnt(on($sub, $synced), '', 'self-check: the subscriber\'s sequences lag behind its rows');
on($sub, 'SELECT rungate.sync_sequences()');
is(on($sub, $synced), '', 'sync_sequences moved every sequence past the largest id of its table');
on($sub, 'SELECT rungate.sync_sequences()');    # again: changes nothing
my $cut = on($sub, 'SELECT now()');

# the worker that held a lease at the cut finishes on the new primary
is(on($sub, "SELECT status FROM rungate.complete($kept, '$kept_token')"), 'succeeded',
	'new primary: a lease held at the cut is still held (same token)');
is(on($sub, "SELECT status FROM rungate.runs WHERE id = $lost"), 'running',
	'new primary: the completion written on the old primary after the cut is not there');

# work goes on at the new primary
on($sub, q{
	SELECT rungate.enqueue('inventory.sync', 1, 10, 100) FROM generate_series(1, 20);
	SELECT rungate.enqueue('restore.execute', 1, 11, 100);
	SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,12}', 100);
});
my $started = 0;
for my $round (1 .. 20)
{
	$started += on($sub, q{SELECT count(*) FROM rungate.claim('w-new', NULL, 200)});
	on($sub, q{
		SELECT count(*) FROM (SELECT id, lease_token FROM rungate.runs
		                       WHERE status = 'running' AND worker = 'w-new' AND id % 4 <> 0) q,
		       LATERAL rungate.complete(q.id, q.lease_token) r;
		SELECT count(*) FROM (SELECT id, lease_token FROM rungate.runs
		                       WHERE status = 'running' AND worker = 'w-new' AND id % 4 = 0) q,
		       LATERAL rungate.fail(q.id, q.lease_token, 'transient', true, '0 seconds') r;
	});
	last if on($sub, q{SELECT count(*) FROM rungate.runs WHERE status = 'queued' AND run_at <= now()}) == 0;
}
cmp_ok($started, '>=', 20, "new primary: workers claimed and finished runs ($started starts)");
like(on($sub, "SELECT count(*) FILTER (WHERE id <= $max_before) || '|' || (count(*) >= 24) FROM rungate.runs"
	  . " WHERE created_at >= '$cut'"), qr/^0\|true$/,
	'new primary: every new run (bulk items too) took an id past the replicated ones');
like(on($sub, "SELECT count(*) FILTER (WHERE id <= $audit_before) || '|' || count(*) FROM rungate.audit_log"
	  . " WHERE at >= '$cut'"), qr/^0\|[1-9]\d+$/,
	'new primary: every new audit row took an id past the replicated ones');
like(on($sub, "SELECT count(*) FILTER (WHERE id <= $notification_before) || '|' || count(*)"
	  . " FROM rungate.notifications WHERE created_at >= '$cut'"), qr/^0\|[1-9]\d*$/,
	'new primary: every new notification took an id past the replicated ones');

# the lost completion's lease expires; reap_expired requeues it here
for (1 .. 30)
{
	last if on($sub, "SELECT lease_expires_at < now() FROM rungate.runs WHERE id = $lost") eq 't';
	sleep(1);
}
cmp_ok(on($sub, 'SELECT rungate.reap_expired()'), '>=', 1, 'new primary: reap_expired requeues the expired lease');
is(on($sub, "SELECT status || '|' || (SELECT event FROM rungate.audit_log a WHERE a.run_id = r.id ORDER BY id DESC LIMIT 1)"
	  . " FROM rungate.runs r WHERE id = $lost"), 'queued|lease_expired',
	'new primary: the run whose completion was lost runs again');

like($listener->query_safe(q{SELECT 1}), qr/Asynchronous notification "rungate_queued"/,
	'self-check: the listener hears the new primary\'s own NOTIFYs');
$listener->quit;

# every run's status agrees with its last audit event, on the new primary
is( on($sub, q{
	WITH last AS (
	  SELECT DISTINCT ON (run_id) run_id, event FROM rungate.audit_log ORDER BY run_id, id DESC)
	SELECT string_agg(r.id || ':' || r.status || '/' || coalesce(l.event, 'none'), ', ')
	  FROM rungate.runs r LEFT JOIN last l ON l.run_id = r.id
	 WHERE NOT coalesce(CASE r.status
	         WHEN 'queued' THEN l.event IN ('dispatched', 'retry_scheduled', 'lease_expired')
	         WHEN 'running' THEN l.event = 'started'
	         WHEN 'blocked' THEN l.event IN ('dispatch_blocked', 'execution_blocked', 'recheck_blocked')
	         ELSE l.event = r.status END, false)}),
	'', "new primary: each run's status agrees with its last audit event");

$pub->stop;
$sub->stop;
done_testing();
