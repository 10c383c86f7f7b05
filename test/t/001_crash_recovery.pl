# 001_crash_recovery.pl: docs/guarantees.md#atomic and #no-run-lost (with
# #no-double-start and #audit) across a server crash.
#
# Concurrent enqueuers, workers (claim, complete, fail, recheck, heartbeat),
# a canceller, a reaper and a revoker (memberships, tenant status,
# prerequisites) drive a fresh node through psql sessions; in the middle of
# the workload the server is stopped in immediate mode (every backend killed,
# no shutdown checkpoint: crash recovery at the next start), then restarted.
# Each client logs what the server acknowledged (a result line is printed
# only after its statement committed). After recovery:
#   * each run's status agrees with its last audit event, and each run has
#     exactly one creation row
#   * no running run lacks a lease or a `started` row for its attempt (a
#     running bulk parent, which holds no lease, has a live item instead)
#   * no (run, attempt) was started twice
#   * notifications match the terminal actor-bound runs one to one
#   * nothing acknowledged is missing: every enqueued run, claim, completion,
#     failure, cancellation and blocking recheck the clients saw is there
#   * every queued run is still claimable: claiming them all decides each
#     (started or blocked) and leaves none queued; driving every run on
#     leaves none queued or running (none was lost); the invariants hold
#     after each step
# Two forged audit rows (rolled back) show that the checks can fail.
#
# Run by test/scripts/tap_tests.sh (make test). By hand, as a non-root user:
#   PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl \
#   PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
#   PATH=/usr/lib/postgresql/15/bin:$PATH prove -v test/t/*.pl
# Environment: RUNGATE_SEED (default ../fixtures/seed.sql next to this
# file), RUNGATE_CRASH_AFTER (seconds of workload before the crash, default 6).

use strict;
use warnings;

use FindBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $seed_file = $ENV{RUNGATE_SEED} // "$FindBin::Bin/../fixtures/seed.sql";
my $crash_after = $ENV{RUNGATE_CRASH_AFTER} // 6;
srand(20261128);

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', <<'CONF');
max_connections = 40
log_statement = none
log_min_messages = warning
synchronous_commit = on
CONF
$node->start;

sub sql
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

sql('CREATE EXTENSION rungate');
sql(slurp_file($seed_file));
# reports.export: a two-second lease, so the reaper finds expired leases
sql("UPDATE rungate.operation_types SET lease = '2 seconds' WHERE name = 'reports.export'");
# flow control: inventory.sync runs at most 3 at once per tenant, workspace 1
# at most 6 (a limit exceeded after the restart is an invariant broken)
sql("UPDATE rungate.operation_types SET max_running = 3, limit_scope = 'tenant' WHERE name = 'inventory.sync'");
sql("UPDATE rungate.workspaces SET max_running = 6 WHERE id = 1");
isnt(sql("SELECT extversion FROM pg_extension WHERE extname = 'rungate'"), '',
	'rungate installed on a fresh node');

# ---------------------------------------------------------------------------
# The workload: one psql per session, fed random statements as it goes
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

sub enqueue_stmt
{
	my $call = pick(
		[ 30, "rungate.enqueue('inventory.sync', 1, 10, 100)" ],
		[ 15, "rungate.enqueue('inventory.sync', 1, 10, 101)" ],
		[ 10, "rungate.enqueue('inventory.sync', 1, 11, NULL)" ],
		[ 5,  "rungate.enqueue('inventory.sync', 1, 10, 102)" ],
		[ 10, "rungate.enqueue('provider.connection.verify', 1, 11, 100)" ],
		[ 10, "rungate.enqueue('reports.export', 1, NULL, NULL)" ],
		[ 10, "rungate.enqueue('restore.execute', 1, 11, 100)" ],
		[ 5,  "rungate.enqueue('restore.execute', 1, 10, 100)" ],
		[ 5,  "rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11,12}', 100)" ]);
	return "SELECT 'E|' || r.id || '|' || r.status FROM $call r;\n";
}

# A worker touches only its own running runs, locked SKIP LOCKED so that the
# reaper and this worker never race for the same run.
sub worker_stmt
{
	my ($w) = @_;
	my $own = "SELECT id, lease_token FROM rungate.runs"
	  . " WHERE status = 'running' AND worker = '$w'"
	  . " AND operation <> 'bulk.inventory.sync'"
	  . " AND lease_expires_at >= now()"    # an expired lease is not held
	  . " ORDER BY id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED";
	return pick(
		[ 30, "SELECT 'S|' || c.run_id || '|' || c.attempt FROM rungate.claim('$w', NULL, 1) c;\n" ],
		[ 30, "SELECT 'D|' || r.id || '|' || r.status FROM ($own) q,"
			  . " LATERAL rungate.complete(q.id, q.lease_token, '{\"ok\": true}') r;\n" ],
		[ 12, "SELECT 'F|' || r.id || '|' || r.status || '|' || r.attempt FROM ($own) q,"
			  . " LATERAL rungate.fail(q.id, q.lease_token, 'transient', true) r;\n" ],
		[ 5, "SELECT 'F|' || r.id || '|' || r.status || '|' || r.attempt FROM ($own) q,"
			  . " LATERAL rungate.fail(q.id, q.lease_token, 'fatal') r;\n" ],
		[ 10, "SELECT 'R|' || q.id || '|' || (rungate.recheck(q.id, q.lease_token)).allowed FROM ($own) q;\n" ],
		[ 8, "SELECT 'H|' || q.id || '|' || (rungate.heartbeat(q.id, q.lease_token) IS NOT NULL) FROM ($own) q;\n" ]);
}

sub cancel_stmt
{
	return "SELECT 'C|' || r.id || '|' || r.status FROM (SELECT id FROM rungate.runs"
	  . " WHERE status = 'queued' AND parent_id IS NULL ORDER BY id DESC LIMIT 1"
	  . " FOR NO KEY UPDATE SKIP LOCKED) q, LATERAL rungate.cancel(q.id, 100) r;\n"
	  . "SELECT pg_sleep(0.02);\n";
}

sub reaper_stmt
{
	return "SELECT 'X|' || rungate.reap_expired();\nSELECT pg_sleep(0.1);\n";
}

sub revoker_stmt
{
	return pick(
		[ 1, "DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;\n" ],
		[ 1, "INSERT INTO rungate.tenant_members VALUES (10, 101, 'operator') ON CONFLICT DO NOTHING;\n" ],
		[ 1, "UPDATE rungate.tenants SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END WHERE id = 11;\n" ],
		[ 1, "UPDATE rungate.tenant_prerequisites SET satisfied = NOT satisfied WHERE tenant_id = 11 AND name = 'admin_consent';\n" ])
	  . "SELECT pg_sleep(0.03);\n";
}

my @sessions;

sub start_session
{
	my ($name, $gen) = @_;
	my $s = { name => $name, gen => $gen, in => '', out => '', err => '' };
	$s->{h} = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=0',
			'-d', $node->connstr('postgres') ],
		'<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err});
	push @sessions, $s;
	return;
}

start_session("enqueuer$_", \&enqueue_stmt) for 1 .. 3;
for my $w (1 .. 4)
{
	start_session("w$w", sub { worker_stmt("w$w") });
}
start_session('canceller', \&cancel_stmt);
start_session('reaper',    \&reaper_stmt);
start_session('revoker',   \&revoker_stmt);

my $until = time() + $crash_after;
while (time() < $until)
{
	for my $s (@sessions)
	{
		$s->{in} .= $s->{gen}->() while length($s->{in}) < 4000;
		$s->{h}->pump_nb;
	}
	usleep(2_000);
}

# mid-workload: no statement failed so far
my @early_errors = map { my $s = $_; map { "$s->{name}: $_" } grep { /ERROR:/ } split /\n/, $s->{err} } @sessions;
is(join("\n", @early_errors), '', 'no client got an error before the crash');
my $before = sql("SELECT count(*) FROM rungate.runs");

# ---------------------------------------------------------------------------
# The crash: every backend killed in the middle of its work
# ---------------------------------------------------------------------------
$node->stop('immediate');
for my $s (@sessions)
{
	$s->{in} = '';
	eval { $s->{h}->finish; 1 } or eval { $s->{h}->kill_kill; 1 };
}
my $log_offset = -s $node->logfile;
$node->start;
like(substr(slurp_file($node->logfile), $log_offset),
	qr/was interrupted|not properly shut down|automatic recovery in progress/,
	'the restart went through crash recovery');

my @acks;
my @late_errors;
for my $s (@sessions)
{
	push @acks, grep { /^[A-Z]\|/ } split /\n/, $s->{out};
	push @late_errors, map { "$s->{name}: $_" } grep { /ERROR:/ } split /\n/, $s->{err};
}
is(join("\n", @late_errors), '', 'no client got an error (other than losing its connection)');

my %count;
$count{ substr($_, 0, 1) }++ for @acks;
diag(sprintf('%d runs before the crash; acknowledged: %s', $before,
	join(', ', map { "$_=$count{$_}" } sort keys %count)));
cmp_ok($count{E} // 0, '>', 50, 'enqueuers were acknowledged');
cmp_ok($count{S} // 0, '>', 20, 'workers claimed runs');
cmp_ok($count{D} // 0, '>', 10, 'workers completed runs');

# ---------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------
# The invariants: each query lists the offending runs (at most 20), or
# returns nothing.
my @invariants = (
	[
		"each run's status agrees with its last audit event",
		q{
		WITH last AS (
		  SELECT DISTINCT ON (run_id) run_id, event FROM rungate.audit_log
		   ORDER BY run_id, id DESC)
		SELECT string_agg(id || ':' || status || '/' || coalesce(event, 'none'), ', ')
		  FROM (SELECT r.id, r.status, l.event
		          FROM rungate.runs r LEFT JOIN last l ON l.run_id = r.id
		         WHERE NOT coalesce(CASE r.status
		                 WHEN 'queued' THEN l.event IN ('dispatched', 'retry_scheduled', 'lease_expired', 'released')
		                 WHEN 'running' THEN l.event = 'started'
		                 WHEN 'blocked' THEN l.event IN ('dispatch_blocked', 'execution_blocked', 'recheck_blocked')
		                 ELSE l.event = r.status END, false)
		         ORDER BY r.id LIMIT 20) bad}
	],
	[
		'each run has exactly one creation audit row',
		q{
		SELECT string_agg(id::text, ', ') FROM (
		  SELECT r.id FROM rungate.runs r
		   WHERE (SELECT count(*) FROM rungate.audit_log a WHERE a.run_id = r.id
		             AND a.event IN ('dispatched', 'dispatch_blocked')) <> 1
		   ORDER BY r.id LIMIT 20) bad}
	],
	[
		'no audit row without its run',
		q{
		SELECT string_agg(DISTINCT a.run_id::text, ', ') FROM rungate.audit_log a
		 WHERE NOT EXISTS (SELECT 1 FROM rungate.runs r WHERE r.id = a.run_id)}
	],
	[
		# A bulk parent is not handed to a worker and holds no lease (#bulk): it
		# moves on when its items do, so a running parent needs a live item.
		'no running run lacks a started row for its attempt and a lease (a bulk parent: a live item)',
		q{
		SELECT string_agg(id::text, ', ') FROM (
		  SELECT r.id FROM rungate.runs r
		   WHERE r.status = 'running'
		     AND (r.started_at IS NULL
		          OR NOT EXISTS (SELECT 1 FROM rungate.audit_log a
		                          WHERE a.run_id = r.id AND a.event = 'started'
		                            AND a.attempt = r.attempt)
		          OR CASE WHEN r.operation = 'bulk.inventory.sync'
		                  THEN NOT EXISTS (SELECT 1 FROM rungate.runs i WHERE i.parent_id = r.id
		                                      AND i.status IN ('queued', 'running'))
		                  ELSE r.lease_token IS NULL OR r.lease_expires_at IS NULL END)
		   ORDER BY r.id LIMIT 20) bad}
	],
	[
		'no concurrency limit in force is exceeded (inventory.sync per tenant, workspace 1)',
		q{
		SELECT string_agg(k, ', ') FROM (
		  SELECT 'tenant ' || r.tenant_id || ': ' || count(*) AS k
		    FROM rungate.runs r JOIN rungate.operation_types ot ON ot.name = r.operation
		   WHERE r.status = 'running' AND r.operation = 'inventory.sync'
		   GROUP BY r.tenant_id, ot.max_running HAVING count(*) > ot.max_running
		  UNION ALL
		  SELECT 'workspace ' || r.workspace_id || ': ' || count(*)
		    FROM rungate.runs r JOIN rungate.workspaces w ON w.id = r.workspace_id
		   WHERE r.status = 'running' AND r.item_tenants IS NULL
		   GROUP BY r.workspace_id, w.max_running HAVING count(*) > w.max_running) bad}
	],
	[
		'no (run, attempt) was started twice',
		q{
		SELECT string_agg(run_id || '#' || attempt, ', ') FROM (
		  SELECT run_id, attempt FROM rungate.audit_log WHERE event = 'started'
		   GROUP BY run_id, attempt HAVING count(*) > 1 ORDER BY 1, 2 LIMIT 20) bad}
	],
	[
		'one notification per terminal actor-bound run, none otherwise',
		q{
		SELECT string_agg(id::text, ', ') FROM (
		  SELECT r.id FROM rungate.runs r
		   WHERE (SELECT count(*) FROM rungate.notifications n WHERE n.run_id = r.id)
		      <> CASE WHEN r.status IN ('succeeded', 'partially_succeeded', 'failed', 'blocked', 'cancelled')
		               AND r.initiator_id IS NOT NULL AND r.parent_id IS NULL THEN 1 ELSE 0 END
		      OR EXISTS (SELECT 1 FROM rungate.notifications n WHERE n.run_id = r.id
		                    AND (n.kind <> 'run_' || r.status OR n.actor_id <> r.initiator_id))
		   ORDER BY r.id LIMIT 20) bad}
	],
	[
		'terminal runs are finished, others are not; a run never started has no started_at',
		q{
		SELECT string_agg(id::text, ', ') FROM (
		  SELECT r.id FROM rungate.runs r
		   WHERE (r.status IN ('succeeded', 'partially_succeeded', 'failed', 'blocked', 'cancelled'))
		         <> (r.finished_at IS NOT NULL)
		      OR (r.started_at IS NOT NULL
		          AND NOT EXISTS (SELECT 1 FROM rungate.audit_log a
		                           WHERE a.run_id = r.id AND a.event = 'started'))
		   ORDER BY r.id LIMIT 20) bad}
	]);

sub check_invariants
{
	my ($when) = @_;
	is(sql($_->[1]), '', "$when: $_->[0]") for @invariants;
	return;
}

check_invariants('after recovery');

# The checks can fail: forged audit rows (restore mode lets a superuser insert
# them), in transactions rolled back at once, are caught.
sub caught_by
{
	my ($name, $forge) = @_;
	my ($inv) = grep { $_->[0] eq $name } @invariants;
	return sql("BEGIN; SET LOCAL rungate.restore_mode = on; $forge; $inv->[1]; ROLLBACK;");
}
my $copy = 'INSERT INTO rungate.audit_log (at, run_id, workspace_id, tenant_id, attempt, event,'
  . ' authority, actor_id, decision, checks, worker, txid)'
  . ' SELECT at, run_id, workspace_id, tenant_id, attempt, %s, authority, actor_id, decision,'
  . ' checks, worker, txid FROM rungate.audit_log WHERE event = %s ORDER BY id LIMIT 1';
isnt(caught_by('no (run, attempt) was started twice', sprintf($copy, 'event', "'started'")),
	'', 'self-check: a second started row for an attempt is caught');
isnt(caught_by("each run's status agrees with its last audit event",
		sprintf($copy, "'failed'", "'succeeded'")),
	'', 'self-check: a succeeded run whose last audit row says failed is caught');

# ---------------------------------------------------------------------------
# Nothing acknowledged is missing
# ---------------------------------------------------------------------------
my (@values);
for my $a (@acks)
{
	my @f = split /\|/, $a;
	push @values, sprintf("('%s', %d, '%s', %s)", $f[0], $f[1], $f[2] // '',
		defined $f[3] ? $f[3] : 'NULL');
}
sql("CREATE TABLE acks (kind text, id bigint, what text, attempt int)");
while (my @chunk = splice(@values, 0, 2000))
{
	sql('INSERT INTO acks VALUES ' . join(',', @chunk));
}

is( sql(q{
	SELECT string_agg(kind || ':' || id || ':' || what, ', ') FROM (
	  SELECT k.* FROM acks k
	   WHERE NOT CASE k.kind
	     -- enqueued: the run exists, created with the status the client saw
	     WHEN 'E' THEN EXISTS (SELECT 1 FROM rungate.audit_log a WHERE a.run_id = k.id
	                             AND a.event = CASE k.what WHEN 'queued' THEN 'dispatched'
	                                                       ELSE 'dispatch_blocked' END)
	     -- claimed: the started row of that attempt
	     WHEN 'S' THEN EXISTS (SELECT 1 FROM rungate.audit_log a WHERE a.run_id = k.id
	                             AND a.event = 'started' AND a.attempt = k.what::int)
	     -- completed, cancelled: a terminal status never changes
	     WHEN 'D' THEN EXISTS (SELECT 1 FROM rungate.runs r WHERE r.id = k.id AND r.status = k.what)
	     WHEN 'C' THEN EXISTS (SELECT 1 FROM rungate.runs r WHERE r.id = k.id AND r.status = k.what)
	     -- failed: the failure or the retry of that attempt
	     WHEN 'F' THEN EXISTS (SELECT 1 FROM rungate.audit_log a WHERE a.run_id = k.id
	                             AND a.attempt = k.attempt
	                             AND a.event = CASE k.what WHEN 'queued' THEN 'retry_scheduled'
	                                                       ELSE 'failed' END)
	     -- a denied recheck blocked the run for good
	     WHEN 'R' THEN k.what = 'true' OR EXISTS (
	                     SELECT 1 FROM rungate.runs r JOIN rungate.audit_log a ON a.run_id = r.id
	                      WHERE r.id = k.id AND r.status = 'blocked' AND a.event = 'recheck_blocked')
	     ELSE true END
	   ORDER BY k.kind, k.id LIMIT 20) bad}),
	'', 'nothing the clients saw committed is missing after recovery');

# ---------------------------------------------------------------------------
# Every queued run is still claimable
# ---------------------------------------------------------------------------
# (the limits have done their part: the drain below claims without completing)
sql("UPDATE rungate.operation_types SET max_running = NULL WHERE name = 'inventory.sync'");
sql("UPDATE rungate.workspaces SET max_running = NULL WHERE id = 1");
sql("CREATE TABLE queued_after_crash AS SELECT id, operation FROM rungate.runs WHERE status = 'queued'");
my $queued = sql('SELECT count(*) FROM queued_after_crash');
diag("$queued runs queued after recovery; status counts: "
	  . sql("SELECT string_agg(status || '=' || n, ', ' ORDER BY status) FROM"
		  . " (SELECT status, count(*) n FROM rungate.runs GROUP BY status) s"));
my $mark = sql('SELECT max(id) FROM rungate.audit_log');
my $claimed = 0;
for my $round (1 .. 50)
{
	my $n = sql("SELECT count(*) FROM rungate.claim('final', NULL, 1000)");
	$claimed += $n;
	last if sql("SELECT count(*) FROM rungate.runs WHERE status = 'queued'") == 0;
}
is(sql("SELECT count(*) FROM rungate.runs WHERE status = 'queued'"), 0,
	'claiming drains the queue: no queued run is stuck');
is( sql(qq{
	SELECT string_agg(id::text, ', ') FROM (
	  SELECT qa.id FROM queued_after_crash qa
	   WHERE NOT EXISTS (SELECT 1 FROM rungate.audit_log a
	                      WHERE a.run_id = qa.id AND a.id > $mark
	                        AND a.event IN ('started', 'execution_blocked'))
	   ORDER BY qa.id LIMIT 20) bad}),
	'', 'every run queued after recovery was claimed and decided (started or blocked)');
diag("final claims started $claimed runs");
check_invariants('after draining the queue');

# ---------------------------------------------------------------------------
# No run is lost (#no-run-lost): driving every run on (complete what is running,
# claim what is queued) ends with every run terminal, bulk parents rolled up
# ---------------------------------------------------------------------------
for my $round (1 .. 50)
{
	# an expired lease is no longer held: the reaper requeues those runs
	sql(q{SELECT rungate.reap_expired()});
	sql(q{SELECT count(*) FROM (SELECT id, lease_token FROM rungate.runs
	       WHERE status = 'running' AND operation <> 'bulk.inventory.sync'
	         AND lease_expires_at >= now()) q,
	      LATERAL rungate.complete(q.id, q.lease_token) r});
	sql(q{SELECT count(*) FROM rungate.claim('final', NULL, 1000)});
	last if sql(q{SELECT count(*) FROM rungate.runs WHERE status IN ('queued', 'running')}) == 0;
}
is(sql(q{SELECT string_agg(status || '=' || n, ', ' ORDER BY status) FROM
         (SELECT status, count(*) n FROM rungate.runs
           WHERE status IN ('queued', 'running') GROUP BY status) s}),
	'', 'every run reaches a terminal status: none was lost');
check_invariants('at the end');

$node->stop;
done_testing();
