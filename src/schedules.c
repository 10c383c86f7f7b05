/*
 * schedules.c
 *     Recurring runs: the validation of rungate.schedules rows, and
 *     rungate.run_schedules(at), which enqueues each schedule's latest due
 *     tick (README "Scheduler", docs/scheduling.md). Also
 *     rungate.cron_latest_tick(), the parser's SQL face for administrators
 *     and tests.
 *
 * Guarantees:
 *   - a schedule row is never written with a cron expression the parser
 *     refuses, or with a target that rungate.enqueue would refuse as
 *     malformed (RG400, naming the field);
 *   - each tick is enqueued at most once: the schedule's row is locked
 *     (SKIP LOCKED: a concurrent caller does it) and its last_tick read again
 *     under the lock; the run and the new last_tick commit together;
 *   - missed ticks are coalesced into the latest one; last_tick only moves
 *     forward;
 *   - every tick is decided at dispatch by rungate.enqueue itself, so a denied
 *     tick is recorded blocked and the schedule goes on.
 * Must never hold a schedule's lock beyond the caller's transaction, nor
 * lock a run.
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "rungate.h"

PG_FUNCTION_INFO_V1(rg_validate_schedule);
PG_FUNCTION_INFO_V1(rg_run_schedules);
PG_FUNCTION_INFO_V1(rg_cron_latest_tick);

/* ------------------------------------------------------------------------
 * Validation: the trigger rungate.validate_schedule() (BEFORE INSERT OR
 * UPDATE, ENABLE ALWAYS)
 * ------------------------------------------------------------------------ */

static RgPlan sched_optype_plan = {
	"SELECT ot.scope, ot.item_operation IS NOT NULL, ot.allow_system"
	"  FROM rungate.operation_types ot WHERE ot.name" EQ "$1",
	1, {TEXTOID}, NULL
};

/* the columns the trigger reads, by name */
enum
{
	S_NAME, S_CRON, S_OPERATION, S_WORKSPACE, S_TENANT, S_INITIATOR,
	S_PAYLOAD, S_PRIORITY, S_ENABLED, S_LAST_TICK, S_CREATED_AT, S_NCOLS
};

static const char *const sched_cols[S_NCOLS] = {
	"name", "cron", "operation", "workspace_id", "tenant_id", "initiator_id",
	"payload", "priority", "enabled", "last_tick", "created_at"
};

/* the columns that must not be null */
static const bool sched_required[S_NCOLS] = {
	true, true, true, true, false, false, true, true, true, false, true
};

typedef struct SchedRow
{
	Datum		v[S_NCOLS];
	bool		n[S_NCOLS];
} SchedRow;

static void
sched_row(HeapTuple tuple, TupleDesc tupdesc, SchedRow *r)
{
	int			i;

	for (i = 0; i < S_NCOLS; i++)
	{
		int			att = SPI_fnumber(tupdesc, sched_cols[i]);

		if (att <= 0)
			elog(ERROR, "rungate: rungate.schedules has no column \"%s\"", sched_cols[i]);
		r->v[i] = heap_getattr(tuple, att, tupdesc, &r->n[i]);
	}
}

/* Whether column i differs between the old and the new row. */
static bool
sched_changed(SchedRow *o, SchedRow *n, int i, TupleDesc tupdesc)
{
	Form_pg_attribute att = TupleDescAttr(tupdesc, SPI_fnumber(tupdesc, sched_cols[i]) - 1);

	if (o->n[i] || n->n[i])
		return o->n[i] != n->n[i];
	return !datumIsEqual(o->v[i], n->v[i], att->attbyval, att->attlen);
}

static void
sched_finite(SchedRow *r, int i, const char *name)
{
	if (!r->n[i] && TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(r->v[i])))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s of schedule \"%s\" must be a finite time", sched_cols[i], name)));
}

/* The cron expression of schedule `name`, parsed; RG400 naming the field. */
static void
sched_parse_cron(const char *name, const char *cron, RgCron *c)
{
	char		err[256];

	if (!rg_cron_parse(cron, c, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("cron of schedule \"%s\" is invalid: %s", name, err),
				 errhint("Five fields, minute hour day-of-month month day-of-week (UTC), "
						 "or @hourly, @daily, @weekly, @monthly.")));
}

/*
 * What each tick would enqueue must be a request rungate.enqueue accepts:
 * a known operation that is not a bulk orchestrator, a known workspace, a
 * tenant exactly when the type is tenant-scoped and then one of that
 * workspace, a known initiator, or none when the type allows system
 * authority.
 */
static void
sched_check_target(const char *name, SchedRow *r)
{
	char	   *operation = TextDatumGetCString(r->v[S_OPERATION]);
	int64		workspace_id = DatumGetInt64(r->v[S_WORKSPACE]);
	Datum		arg;
	bool		tenant_scope,
				bulk,
				allow_system;
	char	   *scope;

	SPI_connect();

	arg = CStringGetTextDatum(operation);
	rg_exec(&sched_optype_plan, &arg, NULL, false, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation of schedule \"%s\" names an unknown operation type \"%s\"",
						name, operation),
				 errhint("Operation types are rows of rungate.operation_types.")));
	scope = rg_get_text(0, 1);
	tenant_scope = scope != NULL && strcmp(scope, "tenant") == 0;
	bulk = rg_get_bool(0, 2, NULL);
	allow_system = rg_get_bool(0, 3, NULL);
	if (bulk)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation of schedule \"%s\" is \"%s\", a bulk orchestrator",
						name, operation),
				 errdetail("A schedule enqueues one run per tick with rungate.enqueue(), which takes no bulk type.")));

	if (!rg_workspace_exists(workspace_id))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("workspace_id of schedule \"%s\" names an unknown workspace " INT64_FORMAT,
						name, workspace_id)));

	if (tenant_scope && r->n[S_TENANT])
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant_id of schedule \"%s\" must not be null: operation \"%s\" is tenant-scoped",
						name, operation)));
	if (!tenant_scope && !r->n[S_TENANT])
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant_id of schedule \"%s\" must be null: operation \"%s\" is workspace-scoped",
						name, operation)));
	if (!r->n[S_TENANT])
	{
		int64		tenant_id = DatumGetInt64(r->v[S_TENANT]);
		int64		tenant_ws;

		if (!rg_tenant_workspace(tenant_id, &tenant_ws))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("tenant_id of schedule \"%s\" names an unknown tenant " INT64_FORMAT,
							name, tenant_id)));
		if (tenant_ws != workspace_id)
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("tenant_id of schedule \"%s\" names tenant " INT64_FORMAT
							" of workspace " INT64_FORMAT ", not of workspace " INT64_FORMAT,
							name, tenant_id, tenant_ws, workspace_id)));
	}

	if (!r->n[S_INITIATOR])
	{
		int64		actor_id = DatumGetInt64(r->v[S_INITIATOR]);

		if (!rg_actor_exists(actor_id))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("initiator_id of schedule \"%s\" names an unknown actor " INT64_FORMAT,
							name, actor_id)));
	}
	else if (!allow_system)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("initiator_id of schedule \"%s\" must not be null: operation \"%s\" does not allow system authority",
						name, operation),
				 errdetail("Every tick would be blocked (system_authority_not_allowed): the run could never start."),
				 errhint("Name the actor on whose authority the runs start, or set allow_system on the operation type.")));

	SPI_finish();
}

/*
 * rungate.validate_schedule(): BEFORE INSERT OR UPDATE ON rungate.schedules.
 * An update checks what it changes: the cron expression when it changes,
 * the target when operation, workspace, tenant or initiator change or the
 * schedule is enabled again. So an application can always disable, rename
 * or re-prioritise a schedule, and rungate can move its last_tick, even
 * after authority data changed under it.
 */
Datum
rg_validate_schedule(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata;
	TupleDesc	tupdesc;
	HeapTuple	newtup;
	bool		is_update;
	SchedRow	n,
				o;
	char	   *name;
	int			i;
	bool		check_cron,
				check_target;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function rungate.validate_schedule() was not called by the trigger manager")));
	trigdata = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function rungate.validate_schedule() must be fired BEFORE INSERT OR UPDATE FOR EACH ROW")));
	is_update = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event);
	newtup = is_update ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	tupdesc = RelationGetDescr(trigdata->tg_relation);

	sched_row(newtup, tupdesc, &n);
	if (n.n[S_NAME])
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("name of a schedule must not be null")));
	name = TextDatumGetCString(n.v[S_NAME]);
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("name of a schedule must not be empty")));
	for (i = 0; i < S_NCOLS; i++)
		if (sched_required[i] && n.n[i])
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("%s of schedule \"%s\" must not be null", sched_cols[i], name)));
	sched_finite(&n, S_LAST_TICK, name);
	sched_finite(&n, S_CREATED_AT, name);

	if (is_update)
	{
		sched_row(trigdata->tg_trigtuple, tupdesc, &o);
		check_cron = sched_changed(&o, &n, S_CRON, tupdesc);
		check_target = sched_changed(&o, &n, S_OPERATION, tupdesc) ||
			sched_changed(&o, &n, S_WORKSPACE, tupdesc) ||
			sched_changed(&o, &n, S_TENANT, tupdesc) ||
			sched_changed(&o, &n, S_INITIATOR, tupdesc) ||
			(!DatumGetBool(o.v[S_ENABLED]) && DatumGetBool(n.v[S_ENABLED]));
	}
	else
		check_cron = check_target = true;

	if (check_cron)
	{
		RgCron		c;

		sched_parse_cron(name, TextDatumGetCString(n.v[S_CRON]), &c);
	}
	if (check_target)
		sched_check_target(name, &n);

	return PointerGetDatum(newtup);
}

/* ------------------------------------------------------------------------
 * rungate.run_schedules(at)
 * ------------------------------------------------------------------------ */

/*
 * Every enabled schedule that may have a tick before `at`: all of them, as
 * a rule, every pass. Unsorted: sorting every name by its collation cost
 * more than the rest of a quiet pass (10,000 schedules: ~10 ms of ~15), so
 * only the due ones are sorted, below.
 */
static RgPlan candidates_plan = {
	"SELECT s.name, s.cron, COALESCE(s.last_tick, s.created_at)"
	"  FROM rungate.schedules s"
	" WHERE s.enabled AND COALESCE(s.last_tick, s.created_at)" LT "$1",
	1, {TIMESTAMPTZOID}, NULL
};

/* Names in the order of ORDER BY name: the column's (default) collation. */
static int
name_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *) a;
	const char *y = *(const char *const *) b;

	return varstr_cmp(x, (int) strlen(x), y, (int) strlen(y), DEFAULT_COLLATION_OID);
}

/*
 * The parsed expressions of one call, by their text: schedules share a few
 * expressions, and a pass reads every schedule's.
 */
typedef struct CronEntry
{
	char		key[NAMEDATALEN * 2];	/* the expression; longer ones are not kept */
	bool		valid;
	RgCron		cron;
} CronEntry;

static bool
cron_cached(HTAB *cache, const char *expr, RgCron *c)
{
	char		err[256];
	CronEntry  *e;
	bool		found;

	if (strlen(expr) >= sizeof(e->key))
		return rg_cron_parse(expr, c, err, sizeof(err));
	e = hash_search(cache, expr, HASH_ENTER, &found);
	if (!found)
		e->valid = rg_cron_parse(expr, &e->cron, err, sizeof(err));
	if (e->valid)
		*c = e->cron;
	return e->valid;
}

/*
 * One schedule, locked, read again, with what decides whether its target is
 * still a request enqueue accepts (authority data may have changed since
 * the row was written).
 */
static RgPlan lock_schedule_plan = {
	"SELECT s.cron, COALESCE(s.last_tick, s.created_at), s.operation,"
	"       s.workspace_id, s.tenant_id, s.initiator_id, s.payload, s.priority,"
	"       ot.name IS NOT NULL, ot.item_operation IS NOT NULL,"
	"       ot.scope" EQ "'tenant', tn.workspace_id"
	"  FROM rungate.schedules s"
	"  LEFT JOIN rungate.operation_types ot ON ot.name" EQ "s.operation"
	"  LEFT JOIN rungate.tenants tn ON tn.id" EQ "s.tenant_id"
	" WHERE s.name" EQ "$1 AND s.enabled"
	"   FOR NO KEY UPDATE OF s SKIP LOCKED",
	1, {TEXTOID}, NULL
};

enum
{
	L_CRON = 1, L_FROM, L_OPERATION, L_WORKSPACE, L_TENANT, L_INITIATOR,
	L_PAYLOAD, L_PRIORITY, L_OP_EXISTS, L_OP_BULK, L_OP_TENANT_SCOPE, L_TENANT_WS
};

/* a live run of this tick already (the application moved last_tick back) */
static RgPlan live_tick_plan = {
	"SELECT r.id FROM rungate.runs r"
	" WHERE r.workspace_id" EQ "$1 AND r.idempotency_key" EQ "$2"
	"   AND r.status IN ('queued', 'running')",
	2, {INT8OID, TEXTOID}, NULL
};

static RgPlan enqueue_tick_plan = {
	"SELECT e FROM rungate.enqueue($1, $2, $3, $4, $5, $6, $7, $8) e",
	8, {TEXTOID, INT8OID, INT8OID, INT8OID, JSONBOID, TIMESTAMPTZOID, INT4OID, TEXTOID},
	NULL
};

static RgPlan advance_plan = {
	"UPDATE rungate.schedules s SET last_tick = $2 WHERE s.name" EQ "$1",
	2, {TEXTOID, TIMESTAMPTZOID}, NULL
};

/*
 * Why the locked schedule's target is no longer one enqueue accepts, or
 * NULL. Needs the lock_schedule_plan result.
 */
static char *
target_problem(const char *name, const char *operation)
{
	bool		isnull;
	bool		has_tenant;
	int64		tenant_ws;

	if (!rg_get_bool(0, L_OP_EXISTS, NULL))
		return psprintf("operation type \"%s\" does not exist", operation);
	if (rg_get_bool(0, L_OP_BULK, NULL))
		return psprintf("operation \"%s\" is now a bulk orchestrator", operation);
	(void) rg_get_datum(0, L_TENANT, &isnull);
	has_tenant = !isnull;
	if (rg_get_bool(0, L_OP_TENANT_SCOPE, NULL) != has_tenant)
		return has_tenant ?
			psprintf("operation \"%s\" is now workspace-scoped and the schedule names a tenant", operation) :
			psprintf("operation \"%s\" is now tenant-scoped and the schedule names no tenant", operation);
	tenant_ws = rg_get_int64(0, L_TENANT_WS, &isnull);
	if (has_tenant && (isnull || tenant_ws != rg_get_int64(0, L_WORKSPACE, NULL)))
		return psprintf("tenant " INT64_FORMAT " no longer belongs to workspace " INT64_FORMAT,
						rg_get_int64(0, L_TENANT, NULL), rg_get_int64(0, L_WORKSPACE, NULL));
	return NULL;
}

/* Append a rungate.runs composite datum to the result. */
static void
put_run(Tuplestorestate *ts, Datum row)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(row);
	HeapTupleData tuple;

	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	tuplestore_puttuple(ts, &tuple);
}

/*
 * Enqueue the latest due tick of schedule `name`, if it has one once its
 * row is locked. Returns whether it created a run (added to ts).
 */
static bool
run_schedule(const char *name, TimestampTz at, Tuplestorestate *ts)
{
	Datum		v[8];
	char		nulls[8];
	bool		isnull;
	char	   *cron;
	char	   *operation;
	char	   *problem;
	TimestampTz from,
				tick;
	RgCron		c;
	char		err[256];
	char		when[40];
	char	   *key;
	int64		workspace_id;
	bool		created = false;

	v[0] = CStringGetTextDatum(name);
	rg_exec(&lock_schedule_plan, v, NULL, false, 1);
	if (SPI_processed != 1)
		return false;			/* another caller holds it, or it is gone */

	cron = rg_get_text(0, L_CRON);
	from = DatumGetTimestampTz(rg_get_datum(0, L_FROM, NULL));
	if (!rg_cron_parse(cron, &c, err, sizeof(err)))
	{
		/* the trigger refuses these; a row written with it disabled */
		ereport(WARNING,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("schedule \"%s\" skipped: its cron is invalid: %s", name, err)));
		return false;
	}
	if (!rg_cron_latest(&c, from, at, &tick))
		return false;			/* a concurrent caller enqueued it */

	operation = rg_get_text(0, L_OPERATION);
	workspace_id = rg_get_int64(0, L_WORKSPACE, NULL);
	rg_cron_format_utc(tick, when, sizeof(when));
	key = psprintf("schedule:%s:%s", name, when);

	problem = target_problem(name, operation);
	if (problem)
		ereport(WARNING,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("schedule \"%s\" skipped its tick at %s: %s", name, when, problem),
				 errdetail("rungate.enqueue would refuse the request as malformed; nothing was enqueued for this tick."),
				 errhint("Fix or disable the schedule; its next tick is tried again.")));
	else
	{
		Datum		live[2];

		memset(nulls, ' ', sizeof(nulls));
		v[0] = CStringGetTextDatum(operation);
		v[1] = Int64GetDatum(workspace_id);
		v[2] = rg_get_datum(0, L_TENANT, &isnull);
		nulls[2] = isnull ? 'n' : ' ';
		v[3] = rg_get_datum(0, L_INITIATOR, &isnull);
		nulls[3] = isnull ? 'n' : ' ';
		v[4] = SPI_datumTransfer(rg_get_datum(0, L_PAYLOAD, NULL), false, -1);
		v[5] = TimestampTzGetDatum(tick);
		v[6] = Int32GetDatum(rg_get_int32(0, L_PRIORITY, NULL));
		v[7] = CStringGetTextDatum(key);
		SPI_freetuptable(SPI_tuptable);

		live[0] = v[1];
		live[1] = v[7];
		rg_exec(&live_tick_plan, live, NULL, false, 1);
		if (SPI_processed == 0)
		{
			rg_exec(&enqueue_tick_plan, v, nulls, false, 1);
			if (SPI_processed != 1)
				elog(ERROR, "rungate: enqueue returned no run for schedule \"%s\"", name);
			put_run(ts, rg_get_datum(0, 1, NULL));
			created = true;
		}
	}

	v[0] = CStringGetTextDatum(name);
	v[1] = TimestampTzGetDatum(tick);
	rg_exec(&advance_plan, v, NULL, false, 0);
	if (SPI_processed != 1)
		elog(ERROR, "rungate: schedule \"%s\" vanished under its lock", name);
	return created;
}

/*
 * rungate.run_schedules(at timestamptz DEFAULT now()) RETURNS SETOF rungate.runs
 */
Datum
rg_run_schedules(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz at = PG_ARGISNULL(0) ? GetCurrentTransactionStartTimestamp() :
		PG_GETARG_TIMESTAMPTZ(0);
	MemoryContext caller = CurrentMemoryContext;
	char	  **due;
	int			ndue = 0,
				i;
	uint64		n;
	Datum		arg;

	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("at must be a finite time")));

	RG_MATERIALIZE_SRF(fcinfo);
	SPI_connect();

	/*
	 * First, unlocked: which schedules have a tick in (from, at]. Most have
	 * none, and their rows are never locked.
	 */
	arg = TimestampTzGetDatum(at);
	rg_exec(&candidates_plan, &arg, NULL, false, 0);
	n = SPI_processed;
	due = MemoryContextAlloc(caller, sizeof(char *) * Max(n, 1));
	{
		HASHCTL		ctl;
		HTAB	   *crons;
		MemoryContext scan_cxt = AllocSetContextCreate(CurrentMemoryContext,
													   "rungate run_schedules scan",
													   ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(scan_cxt);

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(((CronEntry *) NULL)->key);
		ctl.entrysize = sizeof(CronEntry);
		ctl.hcxt = scan_cxt;
		crons = hash_create("rungate cron expressions", 64, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		for (i = 0; i < (int) n; i++)
		{
			char	   *cron = rg_get_text(i, 2);
			TimestampTz from = DatumGetTimestampTz(rg_get_datum(i, 3, NULL));
			TimestampTz tick;
			RgCron		c;

			if (cron_cached(crons, cron, &c) && rg_cron_latest(&c, from, at, &tick))
				due[ndue++] = MemoryContextStrdup(caller, rg_get_text(i, 1));
			pfree(cron);
		}
		MemoryContextSwitchTo(old);
		MemoryContextDelete(scan_cxt);
	}
	SPI_freetuptable(SPI_tuptable);
	/* in name order, as before: the order the runs are created and returned in */
	if (ndue > 1)
		qsort(due, ndue, sizeof(char *), name_cmp);

	/* Then each due one, locked and read again. */
	for (i = 0; i < ndue; i++)
	{
		CHECK_FOR_INTERRUPTS();
		(void) run_schedule(due[i], at, rsinfo->setResult);
	}

	SPI_finish();
	return (Datum) 0;
}

/*
 * rungate.cron_latest_tick(cron text, after timestamptz, upto timestamptz)
 * RETURNS timestamptz: the latest tick t of the expression with
 * after < t <= upto, or NULL. What run_schedules computes, for checking an
 * expression before writing it.
 */
Datum
rg_cron_latest_tick(PG_FUNCTION_ARGS)
{
	char	   *cron = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TimestampTz after = PG_GETARG_TIMESTAMPTZ(1);
	TimestampTz upto = PG_GETARG_TIMESTAMPTZ(2);
	TimestampTz tick;
	RgCron		c;
	char		err[256];

	if (!rg_cron_parse(cron, &c, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("cron is invalid: %s", err)));
	if (TIMESTAMP_NOT_FINITE(after))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("after must be a finite time")));
	if (TIMESTAMP_NOT_FINITE(upto))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("upto must be a finite time")));
	if (!rg_cron_latest(&c, after, upto, &tick))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(tick);
}
