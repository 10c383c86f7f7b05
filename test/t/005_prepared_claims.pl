# 005_prepared_claims.pl: a claim in a prepared transaction (src/queue.c,
# the hints of the fair groups; docs/reference.md "How claim finds the next
# run").
#
# A claim leaves, for the group of a run it locks, a hint of where that
# group's next run is, and a claim that rolls back forgets its hints so that
# the run it gives back keeps its place in age order. A prepared transaction
# may be rolled back later, by another session, without the claiming
# backend's callbacks: its hints are forgotten when it is prepared. On a
# preloaded node with max_prepared_transactions > 0 (the regress cluster has
# none), for both endings of a prepared claim:
#   * ROLLBACK PREPARED from another session gives the run back, and the next
#     claim takes it before the other operation's younger run;
#   * COMMIT PREPARED from another session starts it for good, and the next
#     claim takes the next run in age order.
# Run by test/scripts/tap_tests.sh (make test).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('prepared');
$node->init;
$node->append_conf('postgresql.conf', <<'CONF');
shared_preload_libraries = 'rungate'
max_prepared_transactions = 4
CONF
$node->start;

$node->safe_psql('postgres', <<'SQL');
CREATE EXTENSION rungate;
INSERT INTO rungate.workspaces (id, name) VALUES (1, 'w');
INSERT INTO rungate.tenants (id, workspace_id, name) VALUES (10, 1, 't');
INSERT INTO rungate.actors (id, name) VALUES (100, 'a');
INSERT INTO rungate.role_capabilities VALUES ('owner', 'sync');
INSERT INTO rungate.workspace_members VALUES (1, 100, 'owner');
INSERT INTO rungate.tenant_members VALUES (10, 100, 'owner');
INSERT INTO rungate.operation_types (name, capability) VALUES ('a', 'sync'), ('b', 'sync');
SQL

# Runs a, b, a, b, a, b: their ids, in order.
sub enqueue_alternating
{
	my $ids = $node->safe_psql('postgres', q{
		SELECT string_agg((rungate.enqueue(CASE WHEN g % 2 = 1 THEN 'a' ELSE 'b' END,
		                                   1, 10, 100)).id::text, ',' ORDER BY g)
		  FROM generate_series(1, 6) g});
	return split /,/, $ids;
}

sub claim
{
	return $node->safe_psql('postgres',
		q{SELECT run_id || ' ' || operation FROM rungate.claim('t')});
}

# One backend claims run a1 in a transaction it prepares; it stays
# connected (its callbacks have run, its session goes on). The claim is for
# operation a only: it walks a's group alone and leaves the hint at a's next
# run, a3, after b1 (without the forgetting, b1 would be claimed first).
sub prepare_claim
{
	my ($session, $gid) = @_;
	my $got = $session->query_safe(qq{
		BEGIN;
		SELECT run_id FROM rungate.claim('p', '{a}');
		PREPARE TRANSACTION '$gid';});
	return $got;
}

my $session = $node->background_psql('postgres');

# Six new runs; run a1 claimed in a transaction prepared as $gid, which
# another session then ends with $finish, leaving a1 in $status.
sub prepared_round
{
	my ($gid, $finish, $status) = @_;
	my @ids = enqueue_alternating();

	is(prepare_claim($session, $gid), $ids[0], "$gid: the prepared claim took the oldest run");
	$node->safe_psql('postgres', "$finish PREPARED '$gid'");
	is($node->safe_psql('postgres', "SELECT status FROM rungate.runs WHERE id = $ids[0]"),
		$status, "$gid: $finish PREPARED left it $status");
	return @ids;
}

# ROLLBACK PREPARED elsewhere: the run comes back and is next
my @ids = prepared_round('p1', 'ROLLBACK', 'queued');
is(claim(), "$ids[0] a", 'the run given back is claimed first, before the younger run of b');
is(claim(), "$ids[1] b", 'then the next run in age order');
$node->safe_psql('postgres', q{
	SELECT count(*) FROM rungate.claim('t', NULL, 100)});

# COMMIT PREPARED elsewhere: the run has started, the claims go on in order
@ids = prepared_round('p2', 'COMMIT', 'running');
is(claim(), "$ids[1] b", 'the next claim takes the next run in age order');
is(claim(), "$ids[2] a", 'and the one after it');

$session->quit;
$node->stop;
done_testing();
