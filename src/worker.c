/*
 * worker.c
 *     What a worker calls: rungate.claim, heartbeat, recheck, complete,
 *     fail and release, and the rungate.claim_block_limit setting. Claim
 *     takes due runs in fair order (queue.c), decides each on facts read
 *     after its lock (decision.c), holds back what flow control says must
 *     wait (flow.c) and moves the rest through transition.c
 *     (docs/guarantees.md#claim-reauthorization, #revocation-seen,
 *     #no-double-start, #leases, #bounded-claims, #recheck, #retries).
 *
 * Must never start a run the decision denied, or act for a worker whose
 * lease is gone.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "run.h"

PG_FUNCTION_INFO_V1(rg_claim);
PG_FUNCTION_INFO_V1(rg_heartbeat);
PG_FUNCTION_INFO_V1(rg_recheck);
PG_FUNCTION_INFO_V1(rg_complete);
PG_FUNCTION_INFO_V1(rg_fail);
PG_FUNCTION_INFO_V1(rg_release);

/* beyond this many runs a claim request is malformed */
#define MAX_CLAIM_RUNS		1000

/* rungate.claim_block_limit: the runs one claim may block before it returns */
static int	claim_block_limit = 1000;

void
rg_worker_init(void)
{
	DefineCustomIntVariable("rungate.claim_block_limit",
							"The most runs one rungate.claim call blocks before it returns.",
							"A claim that has blocked this many runs stops, returns what it "
							"started and notifies rungate_queued, so that workers call again: "
							"no single call does unbounded work behind a revoked backlog.",
							&claim_block_limit,
							1000, 1, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
}

/*
 * Lock a running run for its lease holder. A missing run is RG404; a run
 * that is not running or whose lease is another's is RG409
 * (docs/guarantees.md#leases).
 */
static void
lock_leased_run(int64 run_id, pg_uuid_t *token, const char *action, RunRow *r)
{
	if (!rg_run_read(run_id, true, r))
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("run " INT64_FORMAT " not found", run_id)));
	if (r->status != RG_RUNNING)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot %s run " INT64_FORMAT ": it is %s, not running",
						action, run_id, rg_status_name(r->status))));
	if (!r->has_lease || memcmp(&r->lease_token, token, sizeof(pg_uuid_t)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot %s run " INT64_FORMAT ": the lease token does not match its current lease",
						action, run_id),
				 errdetail("The lease expired, was re-claimed or was voided; this worker no longer holds the run.")));
	if (r->lease_expires_at < GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot %s run " INT64_FORMAT ": its lease expired",
						action, run_id),
				 errdetail("The lease expired at %s. An expired lease is no longer held, even before reap_expired requeues the run.",
						   timestamptz_to_str(r->lease_expires_at)),
				 errhint("Heartbeat more often than the operation type's lease.")));
}

/* The (run_id, lease_token) a lease holder's call starts with. */
static void
leased_args(FunctionCallInfo fcinfo, int64 *run_id, pg_uuid_t **token)
{
	rg_require_arg(fcinfo, 0, "run_id");
	rg_require_arg(fcinfo, 1, "lease_token");
	*run_id = PG_GETARG_INT64(0);
	*token = PG_GETARG_UUID_P(1);
}

/*
 * The decision reads on the latest snapshot at any isolation level, but
 * claim and recheck read and lock runs with ordinary queries: under
 * REPEATABLE READ or SERIALIZABLE those see the transaction's snapshot, and
 * a run changed since ends the call in a serialization failure. Workers
 * claim in READ COMMITTED; the other levels are refused up front.
 */
static void
require_read_committed(const char *function)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s must run in a READ COMMITTED transaction", function),
				 errdetail("Under REPEATABLE READ or SERIALIZABLE the decision would see authority as of the transaction's start, not as committed now."),
				 errhint("Call it in its own transaction, or with SET TRANSACTION ISOLATION LEVEL READ COMMITTED.")));
}

/* ------------------------------------------------------------------------
 * claim
 * ------------------------------------------------------------------------ */

/*
 * Due runs in claim order, locked (queue.c). Each is then decided from
 * facts read on a snapshot taken after the lock, so every revocation
 * committed before the claim began is seen. The claimed row carries the
 * locked version's ctid, which starting it updates (no second descent of
 * the primary key): a row we hold locked keeps its place until we update it.
 */
typedef struct ClaimBatch
{
	RunRow	   *rows;
	int			n;
} ClaimBatch;

static void
take_run(TupleTableSlot *slot, void *arg)
{
	ClaimBatch *b = (ClaimBatch *) arg;

	rg_run_from_slot(slot, &b->rows[b->n++]);
}

/*
 * A claim's working memory (its batches, decisions and queue scans) lives
 * in a context kept across claims and reset when the next one starts: in
 * SPI's context, freed at SPI_finish, every claim grew the heap and gave it
 * back (two system calls and fresh pages per call). Only the outermost
 * claim of a backend uses it; a claim inside one (a trigger's) uses SPI's.
 */
#define CLAIM_CXT_SIZE ((Size) 256 * 1024)
static MemoryContext claim_cxt = NULL;
static bool claim_cxt_busy = false;

static int	claim_runs(ReturnSetInfo *rsinfo, const char *worker, ArrayType *ops,
					   int32 max_runs, bool *at_limit);

/* rungate.claim(worker, operations, max_runs) RETURNS SETOF rungate.claimed */
Datum
rg_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	uint64		claim_started = rg_metrics_now();
	char	   *worker;
	ArrayType  *ops = NULL;
	int32		max_runs;
	bool		at_limit = false;
	bool		own_cxt = !claim_cxt_busy;
	MemoryContext spi;

	rg_require_arg(fcinfo, 0, "worker");
	worker = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (worker[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("worker must not be empty")));
	if (!PG_ARGISNULL(1))
	{
		ops = PG_GETARG_ARRAYTYPE_P(1);
		if (ArrayGetNItems(ARR_NDIM(ops), ARR_DIMS(ops)) == 0 ||
			array_contains_nulls(ops))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("operations must be null (any) or a non-empty array without nulls")));
	}
	rg_require_arg(fcinfo, 2, "max_runs");
	max_runs = PG_GETARG_INT32(2);
	if (max_runs < 1 || max_runs > MAX_CLAIM_RUNS)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("max_runs must be between 1 and %d, not %d",
						MAX_CLAIM_RUNS, max_runs)));

	require_read_committed("rungate.claim");
	RG_MATERIALIZE_SRF(fcinfo);
	SPI_connect();
	if (own_cxt)
	{
		if (claim_cxt == NULL)
			claim_cxt = AllocSetContextCreate(TopMemoryContext, "rungate claim",
											  CLAIM_CXT_SIZE, CLAIM_CXT_SIZE,
											  4 * CLAIM_CXT_SIZE);
		else
			MemoryContextReset(claim_cxt);
		claim_cxt_busy = true;
	}
	spi = MemoryContextSwitchTo(own_cxt ? claim_cxt : CurrentMemoryContext);
	PG_TRY();
	{
		rg_flow_claim_begin();
		(void) claim_runs(rsinfo, worker, ops, max_runs, &at_limit);
		rg_flow_claim_end();
	}
	PG_FINALLY();
	{
		if (own_cxt)
			claim_cxt_busy = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(spi);
	if (at_limit)
		Async_Notify("rungate_queued", "{\"claim_block_limit\": true}");
	SPI_finish();
	rg_metrics_claim(claim_started);
	return (Datum) 0;
}

/*
 * Claim's loop: fetch a batch in fair order, decide it, block the denied,
 * start the allowed that flow control admits. Returns the runs started.
 */
static int
claim_runs(ReturnSetInfo *rsinfo, const char *worker, ArrayType *ops,
		   int32 max_runs, bool *at_limit)
{
	int			started = 0;
	int			extra = 0;
	int			blocked = 0;
	Oid			runs = rg_relid("runs", false);


	while (started < max_runs && !*at_limit)
	{
		int			want,
					nrows,
					i,
					nblocked = 0;
		ClaimBatch	batch;
		Relation	rel;
		RgDecision *decisions;
		int		   *starts;
		bool	   *left;		/* it left the queue: blocked or started */
		int			nstart;

		CHECK_FOR_INTERRUPTS();

		/*
		 * Fetch what is still wanted, plus room for the denials this call
		 * has met: behind a pile of runs of a suspended tenant, batches grow
		 * so that blocking them costs one fetch per batch, not per run. Runs
		 * fetched beyond max_runs stay queued (locked only until commit).
		 */
		want = Min(max_runs - started + Min(extra, claim_block_limit - blocked),
				   MAX_CLAIM_RUNS);
		batch.rows = palloc(sizeof(RunRow) * want);
		batch.n = 0;
		rel = table_open(runs, RowExclusiveLock);
		nrows = rg_queue_fetch_fair(rel, want, ops, take_run, &batch);
		table_close(rel, NoLock);
		if (nrows == 0)
			break;

		/* decide the whole batch; the rows stay locked by us */
		decisions = palloc(sizeof(RgDecision) * nrows);
		starts = palloc(sizeof(int) * nrows);
		left = palloc0(sizeof(bool) * nrows);
		for (i = 0; i < nrows; i++)
			rg_decide_run(&batch.rows[i], &decisions[i]);

		/*
		 * Denials and bulk parents in claim order; the allowed runs are then
		 * started together (rg_start_runs).
		 */
		nstart = 0;
		for (i = 0; i < nrows && started + nstart < max_runs; i++)
		{
			RunRow	   *r = &batch.rows[i];
			RgDecision *d = &decisions[i];

			if (!d->allowed)
			{
				Change		c;

				blocked++;
				nblocked++;
				rg_change_init(&c, RG_BLOCKED, RG_EV_EXECUTION_BLOCKED);
				c.decision = d;
				c.worker = worker;
				rg_transition_discard(r, &c);
				rg_turn_use(runs, r->workspace_id);
				left[i] = true;
				if (blocked >= claim_block_limit)
				{
					/* bounded work: workers are told to call again */
					*at_limit = true;
					break;
				}
			}
			else if (d->op.item_operation)
			{
				rg_start_parent(r, d, worker);
				rg_turn_use(runs, r->workspace_id);
				left[i] = true;
			}
			else if (rg_flow_admit(r->workspace_id, r->has_tenant, r->tenant_id, d) == NULL)
			{
				starts[nstart++] = i;
				rg_turn_use(runs, r->workspace_id);
				left[i] = true;
			}
			/* else flow control holds it back: it stays queued */
		}
		for (i = 0; i < nrows; i++)
			if (!left[i])
				rg_queue_kept(batch.rows[i].priority, batch.rows[i].workspace_id,
							  batch.rows[i].operation, batch.rows[i].id);
		if (nstart > 0)
			rg_start_runs(rsinfo, worker, batch.rows, decisions, starts, nstart);
		started += nstart;
		extra = Min(extra * 2 + nblocked, MAX_CLAIM_RUNS);
	}
	return started;
}

/* ------------------------------------------------------------------------
 * heartbeat, recheck
 * ------------------------------------------------------------------------ */

static RgPlan heartbeat_plan = {
	"UPDATE rungate.runs r SET lease_expires_at = pg_catalog.now()" PLUS
	"  (SELECT ot.lease FROM rungate.operation_types ot WHERE ot.name" EQ "r.operation)"
	" WHERE r.id" EQ "$1 AND r.status" EQ "'running' AND r.lease_token" EQ "$2"
	"   AND r.lease_expires_at" GE "pg_catalog.now()"
	" RETURNING " RUN_COLS ", r.lease_expires_at",
	2, {INT8OID, UUIDOID}, NULL, false
};

/*
 * A running run that we hold (locked, or updated in this transaction) and
 * the decision d denied: blocked mid-run (recheck_blocked), its lease void.
 */
static void
block_mid_run(int64 run_id, RgDecision *d, RunRow *r)
{
	Change		c;

	rg_change_init(&c, RG_BLOCKED, RG_EV_RECHECK_BLOCKED);
	c.decision = d;
	if (!rg_move(run_id, RG_RUNNING, NULL, &c, r))
		elog(ERROR, "rungate: run " INT64_FORMAT " changed under its lock", run_id);
}

/*
 * rungate.heartbeat(run_id, lease_token) RETURNS timestamptz
 *
 * Extends the lease, then decides again (with the authority cache, an
 * unchanged world costs a lookup, not a decision). Denied, the run is
 * blocked (recheck_blocked) and null is returned instead of raising, so the
 * worker commits the block and stops.
 */
Datum
rg_heartbeat(PG_FUNCTION_ARGS)
{
	int64		run_id;
	pg_uuid_t  *token;
	Datum		v[2];
	TimestampTz expires;
	RunRow		r;
	RgDecision	d;

	leased_args(fcinfo, &run_id, &token);

	SPI_connect();
	v[0] = Int64GetDatum(run_id);
	v[1] = UUIDPGetDatum(token);
	rg_exec(&heartbeat_plan, v, NULL, false, 0);
	if (SPI_processed != 1)
	{
		/* says why: missing, not running or another's lease */
		lock_leased_run(run_id, token, "heartbeat", &r);
		elog(ERROR, "rungate: heartbeat of run " INT64_FORMAT " matched no lease", run_id);
	}
	rg_run_load(0, &r);
	expires = DatumGetTimestampTz(rg_get_datum(0, 2, NULL));
	rg_decide_run(&r, &d);
	if (!d.allowed)
	{
		block_mid_run(run_id, &d, &r);
		SPI_finish();
		PG_RETURN_NULL();
	}
	SPI_finish();
	PG_RETURN_TIMESTAMPTZ(expires);
}

/* rungate.recheck(run_id, lease_token) RETURNS rungate.decision */
Datum
rg_recheck(PG_FUNCTION_ARGS)
{
	int64		run_id;
	pg_uuid_t  *token;
	RunRow		r;
	RgDecision	d;
	TupleDesc	tupdesc;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	Datum		res;

	leased_args(fcinfo, &run_id, &token);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "rungate.recheck must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);

	SPI_connect();
	require_read_committed("rungate.recheck");
	lock_leased_run(run_id, token, "recheck", &r);
	rg_decide_run(&r, &d);
	if (!d.allowed)
		block_mid_run(r.id, &d, &r);
	spi = MemoryContextSwitchTo(caller);
	res = rg_decision_to_datum(&d, tupdesc);
	MemoryContextSwitchTo(spi);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

/* ------------------------------------------------------------------------
 * complete, fail, release
 * ------------------------------------------------------------------------ */

/* rungate.complete(run_id, lease_token, result) RETURNS rungate.runs */
Datum
rg_complete(PG_FUNCTION_ARGS)
{
	int64		run_id;
	pg_uuid_t  *token;
	RunRow		r;
	Change		c;

	leased_args(fcinfo, &run_id, &token);

	SPI_connect();
	rg_change_init(&c, RG_SUCCEEDED, RG_EV_SUCCEEDED);
	c.result = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	if (!rg_complete_leased(run_id, token, &c, &r) &&
		!rg_move(run_id, RG_RUNNING, token, &c, &r))
	{
		/* says why: missing, not running or another's lease */
		lock_leased_run(run_id, token, "complete", &r);
		elog(ERROR, "rungate: run " INT64_FORMAT " could not be completed", run_id);
	}
	PG_RETURN_DATUM(rg_finish_with_run(&r));
}

/*
 * rungate.fail(run_id, lease_token, error, retryable, retry_in)
 *     RETURNS rungate.runs
 */
Datum
rg_fail(PG_FUNCTION_ARGS)
{
	int64		run_id;
	pg_uuid_t  *token;
	RunRow		r;
	Change		c;
	bool		retryable;
	Interval   *retry_in = NULL;

	leased_args(fcinfo, &run_id, &token);
	rg_require_arg(fcinfo, 2, "error");
	retryable = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	if (!PG_ARGISNULL(4))
	{
		Interval	zero;

		retry_in = PG_GETARG_INTERVAL_P(4);
		memset(&zero, 0, sizeof(zero));
		if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
											  IntervalPGetDatum(retry_in),
											  IntervalPGetDatum(&zero))) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("retry_in must not be negative")));
	}

	SPI_connect();
	lock_leased_run(run_id, token, "fail", &r);
	if (retryable && r.attempt < r.max_attempts)
	{
		/* the next claim decides afresh: nothing of this attempt is kept */
		rg_change_init(&c, RG_QUEUED, RG_EV_RETRY_SCHEDULED);
		c.retry_in = retry_in;
	}
	else
		rg_change_init(&c, RG_FAILED, RG_EV_FAILED);
	c.error = text_to_cstring(PG_GETARG_TEXT_PP(2));
	rg_transition(&r, &c);
	PG_RETURN_DATUM(rg_finish_with_run(&r));
}

/*
 * rungate.release(run_id, lease_token, run_at) RETURNS rungate.runs: the
 * lease holder hands the run back without spending an attempt. It is queued
 * again, due at run_at (default now), attempt unchanged and max_attempts
 * one higher, so the next claim's start (attempt + 1) leaves as many
 * attempts as before. The next claim decides afresh.
 */
Datum
rg_release(PG_FUNCTION_ARGS)
{
	int64		run_id;
	pg_uuid_t  *token;
	RunRow		r;
	Change		c;

	leased_args(fcinfo, &run_id, &token);
	rg_change_init(&c, RG_QUEUED, RG_EV_RELEASED);
	c.extra_attempts = 1;
	if (!PG_ARGISNULL(2))
	{
		c.has_run_at = true;
		c.run_at = PG_GETARG_TIMESTAMPTZ(2);
		if (TIMESTAMP_NOT_FINITE(c.run_at))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("run_at must be a finite time")));
	}

	SPI_connect();
	lock_leased_run(run_id, token, "release", &r);
	if (r.max_attempts == PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot release run " INT64_FORMAT ": its max_attempts cannot grow",
						r.id)));
	rg_transition(&r, &c);
	PG_RETURN_DATUM(rg_finish_with_run(&r));
}
