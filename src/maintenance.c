/*
 * maintenance.c
 *     Upkeep nobody's request triggers: rungate.reap_expired (a run whose
 *     lease expired is queued again, or failed with no attempts left,
 *     through transition.c) and retention, rungate.purge, purge_batch and
 *     purge_in_batches (docs/guarantees.md#leases, #no-run-lost,
 *     #retention). The scheduler's workers call them (scheduler.c).
 *
 * Must never remove a live run, or a bulk item without its parent.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "run.h"

PG_FUNCTION_INFO_V1(rg_reap_expired);
PG_FUNCTION_INFO_V1(rg_purge);
PG_FUNCTION_INFO_V1(rg_purge_batch);
PG_FUNCTION_INFO_V1(rg_purge_in_batches);

static RgPlan expired_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r"
	" WHERE r.status" EQ "'running' AND r.lease_expires_at" LT "pg_catalog.now()"
	" ORDER BY r.lease_expires_at LIMIT 1000"
	" FOR NO KEY UPDATE SKIP LOCKED",
	0, {InvalidOid}, NULL, RG_PER_CALL
};

/*
 * rungate.reap_expired() RETURNS integer
 *
 * A thousand runs at a time, each batch in an SPI connection of its own and
 * each run moved by rg_transition_discard: memory stays flat however many
 * leases expired (a fleet that died holding a hundred thousand).
 */
Datum
rg_reap_expired(PG_FUNCTION_ARGS)
{
	int			reaped = 0;

	for (;;)
	{
		int			nrows,
					i;
		RunRow	   *batch;

		CHECK_FOR_INTERRUPTS();
		SPI_connect();
		rg_exec(&expired_plan, NULL, NULL, false, 0);
		nrows = (int) SPI_processed;
		if (nrows == 0)
		{
			SPI_finish();
			break;
		}
		batch = palloc(sizeof(RunRow) * nrows);
		for (i = 0; i < nrows; i++)
			rg_run_load(i, &batch[i]);

		for (i = 0; i < nrows; i++)
		{
			RunRow	   *r = &batch[i];
			Change		c;

			if (r->attempt < r->max_attempts)
			{
				rg_change_init(&c, RG_QUEUED, RG_EV_LEASE_EXPIRED);
				c.error = psprintf("lease of attempt %d expired", r->attempt);
			}
			else
			{
				rg_change_init(&c, RG_FAILED, RG_EV_FAILED);
				c.error = psprintf("lease of attempt %d expired and no attempts are left",
								   r->attempt);
			}
			rg_transition_discard(r, &c);
			reaped++;
		}
		SPI_finish();
	}
	PG_RETURN_INT32(reaped);
}

/*
 * Retention removes whole top-level runs (a bulk parent with its items, all
 * terminal once the parent is), their audit rows and notifications, a batch
 * at a time. Workers never lock terminal runs, so it does not block claims.
 */
#define PURGE_BATCH	500

static RgPlan purge_pick_plan = {
	"SELECT pg_catalog.array_agg(v.id) FROM ("
	"  SELECT r.id FROM rungate.runs r"
	"   WHERE r.parent_id IS NULL AND r.finished_at" LT "$1"
	"     AND r.status NOT IN ('queued', 'running')"
	"   ORDER BY r.finished_at LIMIT $2"
	"   FOR UPDATE SKIP LOCKED) v",
	2, {TIMESTAMPTZOID, INT4OID}, NULL, RG_PER_CALL
};

static RgPlan purge_delete_plan = {
	"WITH ids AS ("
	"  SELECT x.id FROM pg_catalog.unnest($1) AS x(id)"
	"  UNION ALL"
	"  SELECT r.id FROM rungate.runs r WHERE r.parent_id" EQ "ANY ($1)),"
	" a AS (DELETE FROM rungate.audit_log l WHERE l.run_id IN (SELECT id FROM ids)),"
	" n AS (DELETE FROM rungate.notifications o WHERE o.run_id IN (SELECT id FROM ids))"
	" DELETE FROM rungate.runs r WHERE r.parent_id" EQ "ANY ($1)",
	1, {INT8ARRAYOID}, NULL, RG_PER_CALL
};

static RgPlan purge_parents_plan = {
	"DELETE FROM rungate.runs r WHERE r.id" EQ "ANY ($1)",
	1, {INT8ARRAYOID}, NULL, RG_PER_CALL
};

/*
 * Remove at most max_runs top-level runs (no limit when negative) finished
 * before `cutoff`, PURGE_BATCH at a time; returns runs removed, items
 * included.
 */
static int64
purge_runs(Datum cutoff, int64 max_runs)
{
	Datum		v[2];
	int64		picked = 0,
				removed = 0;

	SPI_connect();
	while (max_runs < 0 || picked < max_runs)
	{
		bool		isnull;
		Datum		ids;
		ArrayType  *arr;
		int32		limit = PURGE_BATCH;
		int			got;

		CHECK_FOR_INTERRUPTS();
		if (max_runs >= 0 && max_runs - picked < limit)
			limit = (int32) (max_runs - picked);
		v[0] = cutoff;
		v[1] = Int32GetDatum(limit);
		rg_exec(&purge_pick_plan, v, NULL, false, 1);
		ids = rg_get_datum(0, 1, &isnull);
		if (isnull)
			break;
		arr = DatumGetArrayTypeP(SPI_datumTransfer(ids, false, -1));
		ids = PointerGetDatum(arr);
		got = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
		picked += got;
		v[0] = ids;
		rg_exec(&purge_delete_plan, v, NULL, true, 0);
		removed += SPI_processed;
		rg_exec(&purge_parents_plan, v, NULL, true, 0);
		removed += SPI_processed;
		if (got < limit)
			break;				/* a short batch: nothing else is free now */
	}
	SPI_finish();
	return removed;
}

/*
 * rungate.purge(finished_before) RETURNS bigint
 */
Datum
rg_purge(PG_FUNCTION_ARGS)
{
	rg_require_arg(fcinfo, 0, "finished_before");
	PG_RETURN_INT64(purge_runs(PG_GETARG_DATUM(0), -1));
}

/*
 * rungate.purge_batch(finished_before, max_runs) RETURNS bigint: purge's
 * bounded step, so retention can commit as it goes (purge_in_batches) and
 * no transaction of it holds back vacuum for long.
 */
Datum
rg_purge_batch(PG_FUNCTION_ARGS)
{
	int32		max_runs;

	rg_require_arg(fcinfo, 0, "finished_before");
	rg_require_arg(fcinfo, 1, "max_runs");
	max_runs = PG_GETARG_INT32(1);
	if (max_runs < 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("max_runs must be at least 1, not %d", max_runs)));
	PG_RETURN_INT64(purge_runs(PG_GETARG_DATUM(0), max_runs));
}

/*
 * CALL rungate.purge_in_batches(finished_before, batch_size, INOUT removed):
 * purge_batch until nothing is left, committing after each. A procedure
 * that commits must be SECURITY INVOKER without SET clauses, so it goes
 * through purge_batch (SECURITY DEFINER) and the caller needs EXECUTE on
 * it: what it may remove is what purge_batch does. Inside a transaction
 * block (an atomic CALL) the first COMMIT fails (2D000).
 */
static RgPlan purge_batch_plan = {
	"SELECT rungate.purge_batch($1, $2)",
	2, {TIMESTAMPTZOID, INT4OID}, NULL, false
};

Datum
rg_purge_in_batches(PG_FUNCTION_ARGS)
{
	bool		nonatomic;
	Datum		v[2];
	int64		removed = 0;
	TupleDesc	desc;
	Datum		out;
	bool		isnull = false;

	rg_require_arg(fcinfo, 0, "finished_before");
	rg_require_arg(fcinfo, 1, "batch_size");
	if (PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("batch_size must be at least 1, not %d", PG_GETARG_INT32(1))));
	nonatomic = fcinfo->context && IsA(fcinfo->context, CallContext) &&
		!castNode(CallContext, fcinfo->context)->atomic;

	v[0] = PG_GETARG_DATUM(0);
	v[1] = PG_GETARG_DATUM(1);
	SPI_connect_ext(nonatomic ? SPI_OPT_NONATOMIC : 0);
	for (;;)
	{
		int64		n;

		rg_exec(&purge_batch_plan, v, NULL, false, 1);
		n = rg_get_int64(0, 1, NULL);
		if (n == 0)
			break;
		removed += n;
		SPI_commit();
		rg_spi_start_transaction();
	}
	SPI_finish();

	/* a procedure's output arguments come back as one record */
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "rungate: purge_in_batches must have an output argument");
	desc = BlessTupleDesc(desc);
	out = Int64GetDatum(removed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, &out, &isnull)));
}
