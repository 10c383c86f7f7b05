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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
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
	1, {TEXTOID}, NULL, false
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
	/* the scheduler's next pass runs the schedules, this minute or not */
	rg_scheduler_note_schedule_write();

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
	1, {TIMESTAMPTZOID}, NULL, RG_PER_CALL
};

/*
 * Did this backend's last run_schedules() lock every schedule it found due?
 * One another transaction held was skipped (SKIP LOCKED): its tick is
 * enqueued by that transaction, or, if it ends without doing so, by a later
 * call, which the scheduler must then not skip (rg_run_schedules_complete).
 */
static bool all_taken = true;

bool
rg_run_schedules_complete(void)
{
	return all_taken;
}

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
 * The due schedules, locked, read again, with what decides whether each
 * target is still a request enqueue accepts (authority data may have
 * changed since the row was written). One statement for all of them: a
 * statement per tick cost more than the tick's enqueue.
 */
static RgPlan lock_due_plan = {
	"SELECT s.name, s.cron, COALESCE(s.last_tick, s.created_at), s.operation,"
	"       s.workspace_id, s.tenant_id, s.initiator_id, s.payload, s.priority,"
	"       ot.name IS NOT NULL, ot.item_operation IS NOT NULL,"
	"       ot.scope" EQ "'tenant', tn.workspace_id"
	"  FROM rungate.schedules s"
	"  LEFT JOIN rungate.operation_types ot ON ot.name" EQ "s.operation"
	"  LEFT JOIN rungate.tenants tn ON tn.id" EQ "s.tenant_id"
	" WHERE s.name" EQ "ANY ($1) AND s.enabled"
	"   FOR NO KEY UPDATE OF s SKIP LOCKED",
	1, {TEXTARRAYOID}, NULL, false
};

enum
{
	L_NAME = 1, L_CRON, L_FROM, L_OPERATION, L_WORKSPACE, L_TENANT, L_INITIATOR,
	L_PAYLOAD, L_PRIORITY, L_OP_EXISTS, L_OP_BULK, L_OP_TENANT_SCOPE, L_TENANT_WS
};

/*
 * Of the ticks' keys, the positions (1-based) that name a live run already
 * (the application moved last_tick back).
 */
static RgPlan live_ticks_plan = {
	"SELECT u.n FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2))"
	"       WITH ORDINALITY AS u(w, k, n)"
	" WHERE EXISTS (SELECT 1 FROM rungate.runs r"
	"                WHERE r.workspace_id" EQ "u.w AND r.idempotency_key" EQ "u.k"
	"                  AND r.status IN ('queued', 'running'))",
	2, {INT8ARRAYOID, TEXTARRAYOID}, NULL, RG_PER_CALL
};

/* One enqueue per tick, in the arrays' order (the order of the results). */
static RgPlan enqueue_ticks_plan = {
	"SELECT rungate.enqueue(u.o, u.w, u.t, u.i, u.p, u.r, u.y, u.k)"
	"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
	"                  pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6),"
	"                  pg_catalog.unnest($7), pg_catalog.unnest($8)) AS u(o, w, t, i, p, r, y, k)",
	8, {TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, JSONBARRAYOID,
	TIMESTAMPTZARRAYOID, INT4ARRAYOID, TEXTARRAYOID},
	NULL, false
};

static RgPlan advance_ticks_plan = {
	"UPDATE rungate.schedules s SET last_tick = u.t"
	"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(n, t)"
	" WHERE s.name" EQ "u.n",
	2, {TEXTARRAYOID, TIMESTAMPTZARRAYOID}, NULL, false
};

/* A due schedule's tick, read under its lock. */
typedef struct Tick
{
	char	   *name;
	TimestampTz tick;
	bool		enqueue;		/* a run to create: a valid target, none live */
	char	   *operation;
	int64		workspace_id;
	Datum		tenant_id;
	bool		no_tenant;
	Datum		initiator_id;
	bool		no_initiator;
	Datum		payload;
	int32		priority;
	char	   *key;
} Tick;

/*
 * Why row `row` of the lock_due_plan result is no longer a target enqueue
 * accepts, or NULL.
 */
static char *
target_problem(int row, const char *operation)
{
	bool		isnull;
	bool		has_tenant;
	int64		tenant_ws;

	if (!rg_get_bool(row, L_OP_EXISTS, NULL))
		return psprintf("operation type \"%s\" does not exist", operation);
	if (rg_get_bool(row, L_OP_BULK, NULL))
		return psprintf("operation \"%s\" is now a bulk orchestrator", operation);
	(void) rg_get_datum(row, L_TENANT, &isnull);
	has_tenant = !isnull;
	if (rg_get_bool(row, L_OP_TENANT_SCOPE, NULL) != has_tenant)
		return has_tenant ?
			psprintf("operation \"%s\" is now workspace-scoped and the schedule names a tenant", operation) :
			psprintf("operation \"%s\" is now tenant-scoped and the schedule names no tenant", operation);
	tenant_ws = rg_get_int64(row, L_TENANT_WS, &isnull);
	if (has_tenant && (isnull || tenant_ws != rg_get_int64(row, L_WORKSPACE, NULL)))
		return psprintf("tenant " INT64_FORMAT " no longer belongs to workspace " INT64_FORMAT,
						rg_get_int64(row, L_TENANT, NULL), rg_get_int64(row, L_WORKSPACE, NULL));
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

/* A one-dimensional array of n elements of type elmtype. */
static Datum
make_array(Datum *elems, bool *nulls, int n, Oid elmtype)
{
	int16		len;
	bool		byval;
	char		align;
	int			dims[1];
	int			lbs[1];

	get_typlenbyvalalign(elmtype, &len, &byval, &align);
	dims[0] = n;
	lbs[0] = 1;
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elmtype, len, byval, align));
}

/* Sorting the locked rows by name: indexes into a name array. */
static int
row_cmp(const void *a, const void *b, void *arg)
{
	char	  **names = (char **) arg;

	return name_cmp(&names[*(const int *) a], &names[*(const int *) b]);
}

/*
 * Lock the due schedules, read each again, and enqueue each one's latest
 * due tick (added to ts); move each one's last_tick to that tick. A
 * schedule another caller holds is skipped (it does it), and so is one
 * whose tick is no longer due under the lock (it did it).
 */
static void
run_due(char **due, int ndue, TimestampTz at, Tuplestorestate *ts)
{
	Datum		arg;
	Datum	   *elems;
	int			nrows,
				nticks = 0,
				nrun = 0,
				i;
	int		   *order;
	char	  **names;
	Tick	   *ticks;

	elems = palloc(sizeof(Datum) * ndue);
	for (i = 0; i < ndue; i++)
		elems[i] = CStringGetTextDatum(due[i]);
	arg = make_array(elems, NULL, ndue, TEXTOID);
	rg_exec(&lock_due_plan, &arg, NULL, false, 0);
	nrows = (int) SPI_processed;
	if (nrows < ndue)
		all_taken = false;		/* another transaction holds some (or they are gone) */
	if (nrows == 0)
		return;

	/* in name order: the order the runs are created and returned in */
	names = palloc(sizeof(char *) * nrows);
	order = palloc(sizeof(int) * nrows);
	for (i = 0; i < nrows; i++)
	{
		names[i] = rg_get_text(i, L_NAME);
		order[i] = i;
	}
	qsort_arg(order, nrows, sizeof(int), row_cmp, names);

	ticks = palloc0(sizeof(Tick) * nrows);
	for (i = 0; i < nrows; i++)
	{
		int			row = order[i];
		Tick	   *t = &ticks[nticks];
		char	   *cron = rg_get_text(row, L_CRON);
		TimestampTz from = DatumGetTimestampTz(rg_get_datum(row, L_FROM, NULL));
		char	   *problem;
		RgCron		c;
		char		err[256];
		char		when[40];

		CHECK_FOR_INTERRUPTS();
		t->name = names[row];
		if (!rg_cron_parse(cron, &c, err, sizeof(err)))
		{
			/* the trigger refuses these; a row written with it disabled */
			ereport(WARNING,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("schedule \"%s\" skipped: its cron is invalid: %s", t->name, err)));
			continue;
		}
		if (!rg_cron_latest(&c, from, at, &t->tick))
			continue;			/* a concurrent caller enqueued it */
		nticks++;

		t->operation = rg_get_text(row, L_OPERATION);
		t->workspace_id = rg_get_int64(row, L_WORKSPACE, NULL);
		rg_cron_format_utc(t->tick, when, sizeof(when));
		t->key = psprintf("schedule:%s:%s", t->name, when);

		problem = target_problem(row, t->operation);
		if (problem)
		{
			ereport(WARNING,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("schedule \"%s\" skipped its tick at %s: %s", t->name, when, problem),
					 errdetail("rungate.enqueue would refuse the request as malformed; nothing was enqueued for this tick."),
					 errhint("Fix or disable the schedule; its next tick is tried again.")));
			continue;
		}
		t->enqueue = true;
		t->tenant_id = rg_get_datum(row, L_TENANT, &t->no_tenant);
		t->initiator_id = rg_get_datum(row, L_INITIATOR, &t->no_initiator);
		t->payload = datumCopy(rg_get_datum(row, L_PAYLOAD, NULL), false, -1);
		t->priority = rg_get_int32(row, L_PRIORITY, NULL);
	}
	SPI_freetuptable(SPI_tuptable);
	if (nticks == 0)
		return;

	/* ticks whose key names a live run already: nothing new for them */
	{
		Datum	   *ws = palloc(sizeof(Datum) * nticks);
		Datum	   *keys = palloc(sizeof(Datum) * nticks);
		Datum		v[2];
		int			n = 0;
		int		   *pos = palloc(sizeof(int) * nticks);

		for (i = 0; i < nticks; i++)
			if (ticks[i].enqueue)
			{
				ws[n] = Int64GetDatum(ticks[i].workspace_id);
				keys[n] = CStringGetTextDatum(ticks[i].key);
				pos[n++] = i;
			}
		if (n > 0)
		{
			v[0] = make_array(ws, NULL, n, INT8OID);
			v[1] = make_array(keys, NULL, n, TEXTOID);
			rg_exec(&live_ticks_plan, v, NULL, false, 0);
			for (i = 0; i < (int) SPI_processed; i++)
				ticks[pos[rg_get_int64(i, 1, NULL) - 1]].enqueue = false;
			SPI_freetuptable(SPI_tuptable);
		}
	}

	/* the runs, each decided at dispatch by rungate.enqueue */
	for (i = 0; i < nticks; i++)
		nrun += ticks[i].enqueue ? 1 : 0;
	if (nrun > 0)
	{
		Datum	   *col[8];
		bool	   *colnull[8];
		Datum		v[8];
		int			k,
					n = 0;
		static const Oid types[8] = {TEXTOID, INT8OID, INT8OID, INT8OID, JSONBOID,
		TIMESTAMPTZOID, INT4OID, TEXTOID};

		for (k = 0; k < 8; k++)
		{
			col[k] = palloc(sizeof(Datum) * nrun);
			colnull[k] = palloc0(sizeof(bool) * nrun);
		}
		for (i = 0; i < nticks; i++)
		{
			Tick	   *t = &ticks[i];

			if (!t->enqueue)
				continue;
			col[0][n] = CStringGetTextDatum(t->operation);
			col[1][n] = Int64GetDatum(t->workspace_id);
			col[2][n] = t->tenant_id;
			colnull[2][n] = t->no_tenant;
			col[3][n] = t->initiator_id;
			colnull[3][n] = t->no_initiator;
			col[4][n] = t->payload;
			col[5][n] = TimestampTzGetDatum(t->tick);
			col[6][n] = Int32GetDatum(t->priority);
			col[7][n] = CStringGetTextDatum(t->key);
			n++;
		}
		for (k = 0; k < 8; k++)
			v[k] = make_array(col[k], colnull[k], nrun, types[k]);
		rg_exec(&enqueue_ticks_plan, v, NULL, false, 0);
		if ((int) SPI_processed != nrun)
			elog(ERROR, "rungate: enqueue returned %d runs for %d ticks of schedules",
				 (int) SPI_processed, nrun);
		for (i = 0; i < nrun; i++)
			put_run(ts, rg_get_datum(i, 1, NULL));
		SPI_freetuptable(SPI_tuptable);
	}

	/* every tick read, enqueued or skipped, is done: last_tick moves to it */
	{
		Datum	   *n = palloc(sizeof(Datum) * nticks);
		Datum	   *t = palloc(sizeof(Datum) * nticks);
		Datum		v[2];

		for (i = 0; i < nticks; i++)
		{
			n[i] = CStringGetTextDatum(ticks[i].name);
			t[i] = TimestampTzGetDatum(ticks[i].tick);
		}
		v[0] = make_array(n, NULL, nticks, TEXTOID);
		v[1] = make_array(t, NULL, nticks, TIMESTAMPTZOID);
		rg_exec(&advance_ticks_plan, v, NULL, false, 0);
		if ((int) SPI_processed != nticks)
			elog(ERROR, "rungate: %d of %d schedules vanished under their lock",
				 nticks - (int) SPI_processed, nticks);
	}
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
	all_taken = true;

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
													   (Size) 0, (Size) 8192, (Size) 65536);
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

	/* Then the due ones, locked and read again. */
	if (ndue > 0)
		run_due(due, ndue, at, rsinfo->setResult);

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
