# 004_wakeups.pl: coalesced rungate_queued wake-ups (src/wakeup.c; README
# "The worker protocol").
#
# A preloaded node whose scheduler serves database app, with
# rungate.wakeup_window = 1s so that the windows are wide enough to hit from
# a test on a busy machine:
#   * the first due run of an operation in a window is notified at its
#     commit (the leading hint, {"run_id": ...});
#   * a second one committed inside the window is not notified by its own
#     commit: the scheduler sends one trailing hint ({"operation": ...,
#     "coalesced": true}) when the window has passed, so a listener that
#     missed the first notification (it began listening after it) still
#     hears of the second run: no wake-up is lost;
#   * a burst of commits in one window costs one leading and one trailing
#     notification, not one each;
#   * with the window 0, or with no scheduler to send the trailing hints,
#     every commit notifies.
# Run by test/scripts/tap_tests.sh (make test).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;

my $seed_file = $ENV{RUNGATE_SEED} // "$FindBin::Bin/../fixtures/seed.sql";

my $node = PostgreSQL::Test::Cluster->new('wakeups');
$node->init;
$node->append_conf('postgresql.conf', <<'CONF');
shared_preload_libraries = 'rungate'
rungate.scheduler_naptime = '200ms'
rungate.wakeup_window = '1s'
max_worker_processes = 16
CONF
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION rungate');
$node->safe_psql('app', slurp_file($seed_file));

# the scheduler serves app: its worker is there to take the trailing hints
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
		               WHERE backend_type = 'rungate scheduler' AND datname = 'app'}),
	'the scheduler serves database app');

# The notifications a listening session has received so far (payloads).
sub heard
{
	my ($session) = @_;
	my $out = $session->query('SELECT 1');
	return [ $out =~ /Asynchronous notification "rungate_queued" with payload "(.*?)" received from/g ];
}

# Everything a session hears within $secs seconds.
sub listen_for
{
	my ($session, $secs) = @_;
	my @all;
	my $until = time() + $secs;
	while (time() < $until)
	{
		push @all, @{ heard($session) };
		usleep(50_000);
	}
	return \@all;
}

my $first = $node->background_psql('app');
$first->query_safe('LISTEN rungate_queued');
my $app = $node->background_psql('app');

# ---------------------------------------------------------------------------
# Leading and trailing hints; a listener that missed the first one
# ---------------------------------------------------------------------------
# let any earlier window of inventory.sync pass
usleep(1_200_000);
my $a = $app->query_safe(q{SELECT id FROM rungate.enqueue('inventory.sync', 1, 10, 100)});
my $b = $app->query_safe(q{SELECT id FROM rungate.enqueue('inventory.sync', 1, 10, 100)});
# a listener that begins after the first notification was sent
my $late = $node->background_psql('app');
$late->query_safe('LISTEN rungate_queued');
my $late_heard = listen_for($late, 2.5);
my $first_heard = listen_for($first, 0.1);

is_deeply($first_heard, [ qq({"run_id": $a}), q({"operation": "inventory.sync", "coalesced": true}) ],
	'two commits in one window: the leading hint names the first run, one trailing hint follows');
is_deeply($late_heard, [ q({"operation": "inventory.sync", "coalesced": true}) ],
	'a listener that missed the leading hint hears the trailing one: no wake-up lost');

# ---------------------------------------------------------------------------
# A burst: ten commits in one window, two notifications
# ---------------------------------------------------------------------------
usleep(1_200_000);
my $t0 = time();
for (1 .. 10)
{
	$app->query_safe(q{SELECT rungate.enqueue('provider.connection.verify', 1, 10, 100)});
}
my $burst_secs = time() - $t0;
my $burst = listen_for($first, 2.5);
SKIP:
{
	skip sprintf('the burst took %.2f s, longer than the window', $burst_secs), 2
	  if $burst_secs > 0.9;
	is(scalar(grep { /"run_id"/ } @$burst), 1, 'a burst of ten commits: one leading hint');
	is(scalar(grep { /"coalesced": true/ } @$burst), 1, '... and one trailing hint');
}

# ---------------------------------------------------------------------------
# Window 0: every commit notifies
# ---------------------------------------------------------------------------
usleep(1_200_000);
$app->query_safe(q{SET rungate.wakeup_window = 0});
$app->query_safe(q{SELECT rungate.enqueue('reports.export', 1, NULL, 100)}) for 1 .. 3;
my $each = listen_for($first, 0.8);
is(scalar(grep { /"run_id"/ } @$each), 3, 'with rungate.wakeup_window = 0 each commit notifies');
is(scalar(grep { /coalesced/ } @$each), 0, '... and nothing is deferred');
$app->query_safe(q{RESET rungate.wakeup_window});

# ---------------------------------------------------------------------------
# No scheduler: nothing to send trailing hints, so nothing is deferred
# ---------------------------------------------------------------------------
$node->append_conf('postgresql.conf', "rungate.scheduler = off\n");
$node->reload;
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 0 FROM pg_stat_activity
		               WHERE backend_type = 'rungate scheduler' AND datname = 'app'}),
	'with rungate.scheduler off the worker leaves');
usleep(1_200_000);
$app->query_safe(q{SELECT rungate.enqueue('inventory.sync', 1, 10, 100)}) for 1 .. 3;
my $unserved = listen_for($first, 0.8);
is(scalar(grep { /"run_id"/ } @$unserved), 3,
	'without a scheduler every commit notifies: no hint waits for a sender that is not there');

$first->quit;
$late->quit;
$app->quit;
$node->stop;
done_testing();
