/*
 * dispatch.c
 *     New runs: rungate.enqueue, rungate.enqueue_bulk and rungate.rerun.
 *     Each decides at dispatch and records the run queued or blocked, with
 *     its audit row (transition.c, rg_created) in the same transaction
 *     (docs/guarantees.md#dispatch, #idempotency, #bulk, #run-control).
 *
 * Must never record a run the decision has not seen, or hand back a run
 * for an idempotency key other than the live one holding it.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "run.h"

PG_FUNCTION_INFO_V1(rg_enqueue);
PG_FUNCTION_INFO_V1(rg_enqueue_bulk);
PG_FUNCTION_INFO_V1(rg_rerun);

/* beyond this many tenants a bulk request is malformed */
#define MAX_BULK_TENANTS	100000

/*
 * A new run; a rerun also names its original (rerun_of, 1.6: the plain
 * insert does not, so the module still serves older schemas). The second
 * column says whether it is due now.
 */
#define INSERT_RUN_SQL(col, val) \
	"INSERT INTO rungate.runs AS r (workspace_id, tenant_id, operation, initiator_id," \
	"  status, reason_code, reason_category, reason_message, max_attempts," \
	"  priority, run_at, payload, idempotency_key, item_tenants, finished_at" col ")" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10," \
	"  COALESCE($11, pg_catalog.now()), $12, $13, $14," \
	"  CASE WHEN $5" EQ "'blocked' THEN pg_catalog.now() END" val ")" \
	" ON CONFLICT DO NOTHING" \
	" RETURNING " RUN_COLS ", r.run_at" LE "pg_catalog.now()"
#define INSERT_RUN_TYPES \
	INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, \
	INT4OID, INT4OID, TIMESTAMPTZOID, JSONBOID, TEXTOID, INT8ARRAYOID

static RgPlan insert_run_plan = {
	INSERT_RUN_SQL("", ""), 14, {INSERT_RUN_TYPES}, NULL, false
};

static RgPlan insert_rerun_plan = {
	INSERT_RUN_SQL(", rerun_of", ", $15"), 15, {INSERT_RUN_TYPES, INT8OID}, NULL, false
};

static RgPlan idempotent_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r"
	" WHERE r.workspace_id" EQ "$1 AND r.idempotency_key" EQ "$2"
	"   AND r.status IN ('queued', 'running')",
	2, {INT8OID, TEXTOID}, NULL, false
};

/*
 * A new run without an idempotency key or an original, written through the
 * executor's single-row insert (rowwrite.c) instead of INSERT_RUN_SQL: the
 * same row, the same triggers and constraints, without a plan to check and
 * a statement to start for every enqueue. Every column INSERT_RUN_SQL sets,
 * and the defaults it relies on (attempt, created_at).
 */
static RgTable runs_new_table = {
	.name = "runs",
	.cols = {"workspace_id", "tenant_id", "operation", "initiator_id", "status",
		"reason_code", "reason_category", "reason_message", "max_attempts",
		"priority", "run_at", "payload", "item_tenants", "finished_at",
	"attempt", "created_at"}
};

typedef struct EnqueueRequest
{
	const char *operation;
	int64		workspace_id;
	int64		tenant_id;
	int64		initiator_id;
	Datum		payload;
	TimestampTz run_at;
	const char *idempotency_key;
	Datum		item_tenants;	/* bulk parents only */
	int64		rerun_of;		/* rerun: the original run */
	int32		priority;
	bool		has_tenant;
	bool		has_initiator;
	bool		has_run_at;
	bool		has_rerun_of;
} EnqueueRequest;

/*
 * Insert the run q as d decided through a writer, into r; *due says whether
 * it is due now. False, having written nothing, when the table has columns
 * a writer would leave without their defaults.
 */
static bool
insert_run_direct(EnqueueRequest *q, RgDecision *d, RunRow *r, bool *due)
{
	RgWriter	w;
	Datum		v[16];
	bool		n[16];
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz run_at = q->has_run_at ? q->run_at : now;

	/* as the INSERT it replaces says it */
	PreventCommandIfReadOnly("INSERT");
	rg_writer_open(&w, &runs_new_table, false);
	/* a column of the administrator's with a default: INSERT_RUN_SQL sets it */
	if (runs_new_table.unlisted_filled)
	{
		rg_writer_close(&w);
		return false;
	}
	memset(n, false, sizeof(n));
	v[0] = Int64GetDatum(q->workspace_id);
	v[1] = Int64GetDatum(q->tenant_id);
	n[1] = !q->has_tenant;
	v[2] = CStringGetTextDatum(q->operation);
	v[3] = Int64GetDatum(q->initiator_id);
	n[3] = !q->has_initiator;
	v[4] = CStringGetTextDatum(rg_status_name(d->allowed ? RG_QUEUED : RG_BLOCKED));
	v[5] = d->reason_code ? CStringGetTextDatum(d->reason_code) : (Datum) 0;
	n[5] = d->reason_code == NULL;
	v[6] = d->reason_category ? CStringGetTextDatum(d->reason_category) : (Datum) 0;
	n[6] = d->reason_category == NULL;
	v[7] = !d->allowed && d->reason_message ? CStringGetTextDatum(d->reason_message) : (Datum) 0;
	n[7] = d->allowed || d->reason_message == NULL;
	v[8] = Int32GetDatum(d->op.max_attempts);
	v[9] = Int32GetDatum(q->priority);
	v[10] = TimestampTzGetDatum(run_at);
	v[11] = q->payload;
	v[12] = q->item_tenants;
	n[12] = q->item_tenants == (Datum) 0;
	v[13] = TimestampTzGetDatum(now);
	n[13] = d->allowed;
	v[14] = Int32GetDatum(0);
	v[15] = TimestampTzGetDatum(now);
	rg_gate_open();
	(void) rg_writer_insert(&w, v, n);
	rg_gate_close();
	rg_run_from_slot(w.slot, r);
	r->row = ExecFetchSlotHeapTupleDatum(w.slot);
	rg_writer_close(&w);
	*due = run_at <= now;
	return true;
}

/*
 * Record the run q as d decided, queued or blocked; SPI_finish, and the
 * run's row as the result.
 */
static Datum
dispatch(EnqueueRequest *q, RgDecision *d)
{
	Datum		v[15];
	char		n[15];
	RunRow		r;
	int			tries;
	bool		due;

	if (q->idempotency_key == NULL && !q->has_rerun_of &&
		insert_run_direct(q, d, &r, &due))
	{
		rg_created(&r, d, due);
		return rg_finish_with_run(&r);
	}

	/* The idempotency key names a live run: hand it back as it is. */
	for (tries = 0; tries < 3; tries++)
	{
		if (q->idempotency_key)
		{
			v[0] = Int64GetDatum(q->workspace_id);
			v[1] = CStringGetTextDatum(q->idempotency_key);
			rg_exec(&idempotent_plan, v, NULL, false, 1);
			if (SPI_processed == 1)
			{
				rg_run_load(0, &r);
				return rg_finish_with_run(&r);
			}
		}

		memset(n, ' ', sizeof(n));
		v[0] = Int64GetDatum(q->workspace_id);
		v[1] = Int64GetDatum(q->tenant_id);
		n[1] = q->has_tenant ? ' ' : 'n';
		v[2] = CStringGetTextDatum(q->operation);
		v[3] = Int64GetDatum(q->initiator_id);
		n[3] = q->has_initiator ? ' ' : 'n';
		v[4] = CStringGetTextDatum(rg_status_name(d->allowed ? RG_QUEUED : RG_BLOCKED));
		v[5] = rg_text_or_null(d->reason_code, &n[5]);
		v[6] = rg_text_or_null(d->reason_category, &n[6]);
		v[7] = rg_text_or_null(d->allowed ? NULL : d->reason_message, &n[7]);
		v[8] = Int32GetDatum(d->op.max_attempts);
		v[9] = Int32GetDatum(q->priority);
		v[10] = TimestampTzGetDatum(q->run_at);
		n[10] = q->has_run_at ? ' ' : 'n';
		v[11] = q->payload;
		v[12] = rg_text_or_null(q->idempotency_key, &n[12]);
		v[13] = q->item_tenants;
		n[13] = q->item_tenants ? ' ' : 'n';
		v[14] = Int64GetDatum(q->rerun_of);
		rg_exec(q->has_rerun_of ? &insert_rerun_plan : &insert_run_plan, v, n, true, 0);
		if (SPI_processed == 1)
			break;
		/* a subscriber's lagging sequence (RG409), or lost a race on the key */
		rg_check_sequences();
	}
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("could not enqueue run with idempotency key \"%s\"",
						q->idempotency_key),
				 errdetail("Concurrent dispatches keep taking and releasing the key.")));

	rg_run_load(0, &r);
	rg_created(&r, d, rg_get_bool(0, 2, NULL));
	return rg_finish_with_run(&r);
}

/* NULL payload means {} */
static Datum
payload_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ?
		DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")) : PG_GETARG_DATUM(argno);
}

/*
 * rungate.enqueue(operation, workspace_id, tenant_id, initiator_id, payload,
 *                 run_at, priority, idempotency_key)
 */
Datum
rg_enqueue(PG_FUNCTION_ARGS)
{
	EnqueueRequest q;
	RgDecision	d;

	rg_require_arg(fcinfo, 0, "operation");
	rg_require_arg(fcinfo, 1, "workspace_id");

	memset(&q, 0, sizeof(q));
	q.operation = text_to_cstring(PG_GETARG_TEXT_PP(0));
	q.workspace_id = PG_GETARG_INT64(1);
	q.has_tenant = !PG_ARGISNULL(2);
	q.tenant_id = q.has_tenant ? PG_GETARG_INT64(2) : 0;
	q.has_initiator = !PG_ARGISNULL(3);
	q.initiator_id = q.has_initiator ? PG_GETARG_INT64(3) : 0;
	/* NULL payload, run_at or priority mean their defaults */
	q.payload = payload_arg(fcinfo, 4);
	q.has_run_at = !PG_ARGISNULL(5);
	q.run_at = q.has_run_at ? PG_GETARG_TIMESTAMPTZ(5) : 0;
	if (q.has_run_at && TIMESTAMP_NOT_FINITE(q.run_at))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("run_at must be a finite time")));
	q.priority = PG_ARGISNULL(6) ? 0 : PG_GETARG_INT32(6);
	q.idempotency_key = PG_ARGISNULL(7) ? NULL :
		text_to_cstring(PG_GETARG_TEXT_PP(7));

	SPI_connect();
	rg_decide_internal(q.operation, q.workspace_id, q.has_tenant, q.tenant_id,
					   q.has_initiator, q.initiator_id, false, &d);
	if (d.op.item_operation)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation \"%s\" is a bulk orchestrator", q.operation),
				 errhint("Use rungate.enqueue_bulk().")));
	if (q.has_tenant && !d.tenant_in_workspace)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant " INT64_FORMAT " does not belong to workspace " INT64_FORMAT,
						q.tenant_id, q.workspace_id)));
	PG_RETURN_DATUM(dispatch(&q, &d));
}

/*
 * The bulk run's tenants are locked as a foreign key would lock them: a
 * concurrent delete of one waits for this transaction, whose queued run
 * guard_tenant_delete then finds; a delete that came first is seen by the
 * check below, a statement of its own (a new snapshot in READ COMMITTED).
 */
static RgPlan bulk_lock_plan = {
	"SELECT pg_catalog.count(*) FROM ("
	"  SELECT 1 FROM rungate.tenants tn"
	"   WHERE tn.id" EQ "ANY ($1) AND tn.workspace_id" EQ "$2"
	"   ORDER BY tn.id FOR KEY SHARE OF tn) s",
	2, {INT8ARRAYOID, INT8OID}, NULL, false
};

static RgPlan bulk_tenants_plan = {
	"SELECT (SELECT pg_catalog.array_agg(DISTINCT x.t ORDER BY x.t)"
	"          FROM pg_catalog.unnest($1) AS x(t)),"
	"       (SELECT x.t FROM pg_catalog.unnest($1) WITH ORDINALITY AS x(t, o)"
	"         WHERE NOT EXISTS (SELECT 1 FROM rungate.tenants tn"
	"                            WHERE tn.id" EQ "x.t AND tn.workspace_id" EQ "$2)"
	"         ORDER BY x.o LIMIT 1)",
	2, {INT8ARRAYOID, INT8OID}, NULL, false
};

/*
 * rungate.enqueue_bulk(operation, workspace_id, tenant_ids, initiator_id,
 *                      payload)
 */
Datum
rg_enqueue_bulk(PG_FUNCTION_ARGS)
{
	EnqueueRequest q;
	RgDecision	d;
	ArrayType  *tenants;
	int			ntenants;
	Datum		v[2];
	bool		isnull;

	rg_require_arg(fcinfo, 0, "operation");
	rg_require_arg(fcinfo, 1, "workspace_id");
	rg_require_arg(fcinfo, 2, "tenant_ids");
	tenants = PG_GETARG_ARRAYTYPE_P(2);
	ntenants = ArrayGetNItems(ARR_NDIM(tenants), ARR_DIMS(tenants));
	if (ntenants == 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant_ids must not be empty")));
	if (ntenants > MAX_BULK_TENANTS)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant_ids has %d elements; the limit is %d",
						ntenants, MAX_BULK_TENANTS)));
	if (ARR_NDIM(tenants) != 1 || array_contains_nulls(tenants))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant_ids must be a one-dimensional array without nulls")));

	memset(&q, 0, sizeof(q));
	q.operation = text_to_cstring(PG_GETARG_TEXT_PP(0));
	q.workspace_id = PG_GETARG_INT64(1);
	q.has_initiator = !PG_ARGISNULL(3);
	q.initiator_id = q.has_initiator ? PG_GETARG_INT64(3) : 0;
	q.payload = payload_arg(fcinfo, 4);

	SPI_connect();
	/* lenient about scope: a tenant type is refused below as "not bulk" */
	rg_decide_internal(q.operation, q.workspace_id, false, 0,
					   q.has_initiator, q.initiator_id, true, &d);
	if (d.op.item_operation == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation \"%s\" is not a bulk orchestrator", q.operation),
				 errhint("Bulk types name their item_operation; use rungate.enqueue() for this one.")));

	v[0] = PointerGetDatum(tenants);
	v[1] = Int64GetDatum(q.workspace_id);
	rg_exec(&bulk_lock_plan, v, NULL, false, 1);
	rg_exec(&bulk_tenants_plan, v, NULL, false, 1);
	(void) rg_get_datum(0, 2, &isnull);
	if (!isnull)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant " INT64_FORMAT " does not belong to workspace " INT64_FORMAT,
						rg_get_int64(0, 2, NULL), q.workspace_id)));
	q.item_tenants = SPI_datumTransfer(rg_get_datum(0, 1, &isnull), false, -1);
	PG_RETURN_DATUM(dispatch(&q, &d));
}

/*
 * rungate.rerun(run_id, actor_id) RETURNS rungate.runs: a new run with the
 * operation, workspace, tenant, payload and priority of a failed, blocked
 * or cancelled run, on the authority of actor_id (null: system), decided at
 * dispatch like enqueue. The original is not changed; the new run names it
 * in rerun_of, and a rerun of a bulk item is a run of its own.
 */
Datum
rg_rerun(PG_FUNCTION_ARGS)
{
	int64		run_id;
	RunRow		r;
	EnqueueRequest q;
	RgDecision	d;

	rg_require_arg(fcinfo, 0, "run_id");
	run_id = PG_GETARG_INT64(0);

	SPI_connect();
	if (!rg_run_read(run_id, false, &r))
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("run " INT64_FORMAT " not found", run_id)));
	if (r.item_tenants)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot rerun run " INT64_FORMAT ": it is a bulk run", run_id),
				 errhint("Enqueue a new bulk run with rungate.enqueue_bulk(), or rerun its items.")));
	if (r.status != RG_FAILED && r.status != RG_BLOCKED && r.status != RG_CANCELLED)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot rerun run " INT64_FORMAT ": it is %s", run_id,
						rg_status_name(r.status)),
				 errdetail("Only failed, blocked and cancelled runs can be run again.")));

	memset(&q, 0, sizeof(q));
	q.operation = r.operation;
	q.workspace_id = r.workspace_id;
	q.has_tenant = r.has_tenant;
	q.tenant_id = r.tenant_id;
	q.has_initiator = !PG_ARGISNULL(1);
	q.initiator_id = q.has_initiator ? PG_GETARG_INT64(1) : 0;
	q.payload = r.payload;
	q.priority = r.priority;
	q.has_rerun_of = true;
	q.rerun_of = r.id;

	/* malformed only if the actor is unknown or the type changed scope */
	rg_decide_internal(q.operation, q.workspace_id, q.has_tenant, q.tenant_id,
					   q.has_initiator, q.initiator_id, false, &d);
	if (d.op.item_operation)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot rerun run " INT64_FORMAT ": operation \"%s\" is now a bulk orchestrator",
						run_id, q.operation)));
	PG_RETURN_DATUM(dispatch(&q, &d));
}
