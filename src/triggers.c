/*
 * triggers.c
 *     rungate's row guards, and the DDL helpers that install one of them on
 *     application tables (anchors in docs/guarantees.md); the operation-type
 *     check is optypes.c:
 *
 *     rungate.guard_runs()               runs change only through rungate's
 *                                        functions (#transitions)
 *     rungate.guard_audit()              the audit log is append-only (#audit)
 *     rungate.fence()                    writes tied to a run need it to be
 *                                        running (#fence)
 *     rungate.guard_writes(), rungate.unguard_writes()
 *                                        install and remove rungate.fence()
 *     rungate.guard_tenant_delete()      tenants named by a queued bulk run
 *                                        stay (#bulk)
 *     rungate.note_authority_change()    marks the transaction for the
 *                                        authority cache (authcache.c)
 *
 * The run and audit guards read only the trigger tuples and the backend-local
 * write gate of rungate.c: they fire on every claim and must stay cheap, so
 * they never run a query. The other triggers query through kept plans whose
 * SQL names every table and operator with its schema.
 *
 * On a subscriber, rows and changes that a subscription's apply or table-sync
 * worker applies were made by rungate's functions on the publisher, which
 * checked them: every trigger here lets them through as they are
 * (rg_is_apply_worker(), replication.c, tells such a worker by what the
 * backend is; no setting a session can change says so).
 *
 * Must never: open the write gate (only rungate's functions hold it), let a
 * run or audit row change because a trigger could not tell what it was
 * looking at (every doubt is an error), or build DDL from anything but
 * catalog-derived identifiers, quoted.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "access/sysattr.h"
#include "nodes/bitmapset.h"

#include "rungate.h"
#include "runstatus.h"
#include "triggers.h"

PG_FUNCTION_INFO_V1(rg_guard_runs);
PG_FUNCTION_INFO_V1(rg_guard_audit);
PG_FUNCTION_INFO_V1(rg_fence);
PG_FUNCTION_INFO_V1(rg_guard_writes);
PG_FUNCTION_INFO_V1(rg_unguard_writes);
PG_FUNCTION_INFO_V1(rg_guard_tenant_delete);
PG_FUNCTION_INFO_V1(rg_note_authority_change);

/* The name of the trigger guard_writes installs. */
#define FENCE_TRIGGER "rungate_fence"

/* ----------------------------------------------------------------
 * Helpers shared with the other trigger of rungate's tables (optypes.c)
 * ----------------------------------------------------------------
 */

/*
 * The trigger data of a call, after checking that the trigger manager made
 * it and that a row-level event was fired for each row.
 */
TriggerData *
RgTriggerData(FunctionCallInfo fcinfo, const char *funcname)
{
	TriggerData *trigdata;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function %s was not called by the trigger manager",
						funcname)));
	trigdata = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) &&
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function %s must be fired FOR EACH ROW", funcname)));
	return trigdata;
}

/*
 * A trigger's "go on unchanged": the new row of an UPDATE, the row of an
 * INSERT or DELETE, nothing for TRUNCATE.
 */
Datum
RgUnchanged(TriggerData *trigdata)
{
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}

/* Attribute number of a column of the trigger's table; it must exist. */
int
RgAttnum(TupleDesc tupdesc, const char *column)
{
	int			attnum = SPI_fnumber(tupdesc, column);

	if (attnum <= 0)
		elog(ERROR, "rungate: trigger table has no column \"%s\"", column);
	return attnum;
}

/* A text column of a tuple as a C string, NULL when null. */
char *
RgTupleText(HeapTuple tuple, TupleDesc tupdesc, int attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, tupdesc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

bool
RgTextEqual(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* ----------------------------------------------------------------
 * rungate.guard_runs(): docs/guarantees.md#transitions
 * ----------------------------------------------------------------
 */

/* A status change that runstatus.h lists (no null, no unknown name). */
static bool
RunTransitionAllowed(const char *from, const char *to)
{
	if (from == NULL || to == NULL)
		return false;
	return rg_transition_legal(rg_status_of(from), rg_status_of(to));
}

/*
 * A run id for messages; a hand-written row may carry a null one, which the
 * NOT NULL constraint would only catch after this trigger.
 */
static char *
RunLabel(HeapTuple tuple, TupleDesc tupdesc, int attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, tupdesc, &isnull);

	if (isnull)
		return pstrdup("run (null id)");
	return psprintf("run " INT64_FORMAT, DatumGetInt64(d));
}

/* Columns of rungate.runs that only rungate's own functions write. */
static const char *const RunLifecycleColumns[] = {
	"status", "workspace_id", "tenant_id", "operation", "initiator_id",
	"parent_id", "attempt", "started_at", "finished_at", "lease_token",
	"worker", "reason_code", "reason_category", "reason_message",
	"created_at", "item_tenants", "rerun_of"
};

/* RG409 when a hand-written UPDATE names one of those columns. */
static void
RgRefuseLifecycleColumns(TriggerData *trigdata, TupleDesc tupdesc, int64 run_id)
{
	int			i;

	for (i = 0; i < (int) lengthof(RunLifecycleColumns); i++)
	{
		/* a column a schema before it lacks (rerun_of, 1.6) is skipped */
		int			attnum = SPI_fnumber(tupdesc, RunLifecycleColumns[i]);

		if (attnum <= 0)
			continue;

		if (bms_is_member(attnum - FirstLowInvalidHeapAttributeNumber,
						  trigdata->tg_updatedcols))
			ereport(ERROR,
					(errcode(ERRCODE_RG_CONFLICT),
					 errmsg("run " INT64_FORMAT ": column %s is changed only by rungate's functions",
							run_id, RunLifecycleColumns[i]),
					 errdetail("By hand, the owner may change priority, run_at, lease_expires_at, payload and the other scheduling columns of a queued or running run.")));
	}
}

Datum
rg_guard_runs(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = RgTriggerData(fcinfo, "rungate.guard_runs()");
	TupleDesc	tupdesc = RelationGetDescr(trigdata->tg_relation);
	TriggerEvent event = trigdata->tg_event;
	bool		gate_open = rg_gate_is_open();
	int			id_att,
				status_att;

	/* a subscription applies what the publisher's rungate wrote */
	if (rg_is_apply_worker())
		return RgUnchanged(trigdata);

	if (TRIGGER_FIRED_BY_TRUNCATE(event))
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("rungate.runs cannot be truncated"),
				 errhint("Use rungate.purge() to remove finished runs with their audit rows.")));

	id_att = RgAttnum(tupdesc, "id");
	status_att = RgAttnum(tupdesc, "status");

	if (TRIGGER_FIRED_BY_INSERT(event))
	{
		HeapTuple	newtup = trigdata->tg_trigtuple;
		char	   *status;

		/* pg_restore loads dumped runs as they were, whatever their status,
		 * but never naming rows that are not there */
		if (rg_restore_mode())
		{
			rg_check_run_references(trigdata->tg_relation, newtup);
			return PointerGetDatum(newtup);
		}
		status = RgTupleText(newtup, tupdesc, status_att);
		if (!gate_open)
			ereport(ERROR,
					(errcode(ERRCODE_RG_CONFLICT),
					 errmsg("%s cannot be inserted by hand",
							RunLabel(newtup, tupdesc, id_att)),
					 errdetail("Runs are created only by rungate.enqueue and rungate.enqueue_bulk (whose items are created when the bulk run starts).")));
		if (status == NULL ||
			(rg_status_of(status) != RG_QUEUED && rg_status_of(status) != RG_BLOCKED))
			ereport(ERROR,
					(errcode(ERRCODE_RG_CONFLICT),
					 errmsg("%s cannot be created with status %s",
							RunLabel(newtup, tupdesc, id_att),
							status ? status : "null"),
					 errdetail("A run is created queued, or blocked when it is denied at dispatch.")));
		rg_check_run_references(trigdata->tg_relation, newtup);
		return PointerGetDatum(newtup);
	}

	if (TRIGGER_FIRED_BY_UPDATE(event))
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;
		HeapTuple	newtup = trigdata->tg_newtuple;
		char	   *old_status = RgTupleText(oldtup, tupdesc, status_att);
		char	   *new_status = RgTupleText(newtup, tupdesc, status_att);
		bool		old_null,
					new_null;
		int64		run_id = DatumGetInt64(heap_getattr(oldtup, id_att, tupdesc,
														&old_null));
		Datum		new_id = heap_getattr(newtup, id_att, tupdesc, &new_null);

		/* A stored run has an id and a status: both columns are NOT NULL. */
		if (old_null || old_status == NULL)
			elog(ERROR, "rungate: a stored run has a null id or status");

		if (rg_status_terminal(rg_status_of(old_status)))
			ereport(ERROR,
					(errcode(ERRCODE_RG_CONFLICT),
					 errmsg("run " INT64_FORMAT " is %s, a terminal status, and cannot change",
							run_id, old_status),
					 errdetail("A run that is succeeded, partially_succeeded, failed, blocked or cancelled is final; rungate.purge() removes it once it is old enough.")));

		if (new_null || DatumGetInt64(new_id) != run_id)
			ereport(ERROR,
					(errcode(ERRCODE_RG_CONFLICT),
					 errmsg("run " INT64_FORMAT " cannot change its id", run_id),
					 errdetail("Audit rows, notifications and bulk items refer to a run by its id.")));

		if (!RgTextEqual(old_status, new_status))
		{
			if (!gate_open)
				ereport(ERROR,
						(errcode(ERRCODE_RG_CONFLICT),
						 errmsg("run " INT64_FORMAT ": transition %s -> %s is not allowed outside rungate's functions",
								run_id, old_status,
								new_status ? new_status : "null"),
						 errdetail("A run changes status only through rungate.claim, rungate.cancel, rungate.heartbeat, rungate.recheck, rungate.complete, rungate.fail, rungate.release and rungate.reap_expired, which write its audit row in the same transaction.")));
			if (!RunTransitionAllowed(old_status, new_status))
				ereport(ERROR,
						(errcode(ERRCODE_RG_CONFLICT),
						 errmsg("run " INT64_FORMAT ": transition %s -> %s is not allowed",
								run_id, old_status,
								new_status ? new_status : "null"),
						 errdetail("A queued run may become running, blocked or cancelled; a running run may become succeeded, failed, partially_succeeded, blocked, cancelled or queued.")));
		}

		/*
		 * By hand, the owner may change what schedules a non-terminal run
		 * (priority, run_at, lease_expires_at, payload, max_attempts...),
		 * never what says who asked for it, where, or what happened to it:
		 * not even to the same value ("whatever the pair").
		 */
		if (!gate_open)
			RgRefuseLifecycleColumns(trigdata, tupdesc, run_id);
		return PointerGetDatum(newtup);
	}

	if (TRIGGER_FIRED_BY_DELETE(event))
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;
		char	   *status = RgTupleText(oldtup, tupdesc, status_att);

		if (!gate_open)
			ereport(ERROR,
					(errcode(ERRCODE_RG_CONFLICT),
					 errmsg("%s cannot be deleted by hand",
							RunLabel(oldtup, tupdesc, id_att)),
					 errhint("Use rungate.purge() to remove finished runs with their audit rows.")));
		if (status == NULL || !rg_status_terminal(rg_status_of(status)))
			ereport(ERROR,
					(errcode(ERRCODE_RG_CONFLICT),
					 errmsg("%s is %s and cannot be deleted",
							RunLabel(oldtup, tupdesc, id_att),
							status ? status : "null"),
					 errdetail("Only runs in a terminal status can be purged.")));
		return PointerGetDatum(oldtup);
	}

	elog(ERROR, "rungate.guard_runs(): unexpected trigger event %u", event);
	return PointerGetDatum(NULL);	/* keep the compiler quiet */
}

/* ----------------------------------------------------------------
 * rungate.guard_audit(): docs/guarantees.md#audit
 * ----------------------------------------------------------------
 */

static const char *const audit_authorities[] = {"actor", "system", NULL};
static const char *const audit_decisions[] = {"allow", "deny", NULL};

/*
 * A text column of an audit row, when not null, must be one of `allowed`
 * (nulls are the table's NOT NULL constraints' business). These were CHECK
 * constraints up to 1.1; here they cost a few string compares instead of
 * re-reading and preparing each constraint's expression in every statement
 * that writes the log.
 */
static void
check_audit_value(Relation rel, HeapTuple tuple, const char *column,
				  const char *const *allowed)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	int			attnum = SPI_fnumber(tupdesc, column);
	bool		isnull;
	Datum		d;
	char	   *value;
	int			i;

	if (attnum <= 0)
		elog(ERROR, "rungate: rungate.audit_log has no column %s", column);
	d = heap_getattr(tuple, attnum, tupdesc, &isnull);
	if (isnull)
		return;
	value = TextDatumGetCString(d);
	if (allowed == NULL)
	{
		/* the event: runstatus.h's list */
		if (rg_event_of(value) != RG_NO_EVENT)
			return;
	}
	else
		for (i = 0; allowed[i]; i++)
			if (strcmp(value, allowed[i]) == 0)
				return;
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("%s is not a valid %s of an audit row",
					quote_literal_cstr(value), column)));
}

static void
check_audit_row(Relation rel, HeapTuple tuple)
{
	check_audit_value(rel, tuple, "event", NULL);
	check_audit_value(rel, tuple, "authority", audit_authorities);
	check_audit_value(rel, tuple, "decision", audit_decisions);
}

/*
 * rungate's functions insert audit rows and rungate.purge() deletes them,
 * both with the gate open. Nothing ever updates or truncates the log, so
 * those are refused even with the gate open.
 */
Datum
rg_guard_audit(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = RgTriggerData(fcinfo, "rungate.guard_audit()");
	TriggerEvent event = trigdata->tg_event;
	bool		gate_open = rg_gate_is_open();

	/* the publisher's audit rows (and its purges) arrive as they are */
	if (rg_is_apply_worker())
		return RgUnchanged(trigdata);

	if (TRIGGER_FIRED_BY_TRUNCATE(event))
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("rungate.audit_log is append-only: TRUNCATE is not allowed"),
				 errhint("Use rungate.purge() to remove finished runs with their audit rows.")));

	if (TRIGGER_FIRED_BY_UPDATE(event))
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("rungate.audit_log is append-only: UPDATE is not allowed")));

	if (TRIGGER_FIRED_BY_INSERT(event))
	{
		if (!gate_open && !rg_restore_mode())
			ereport(ERROR,
					(errcode(ERRCODE_RG_CONFLICT),
					 errmsg("audit rows are written only by rungate's functions"),
					 errdetail("rungate.audit_log records each run's creation and status changes in the transaction that makes them.")));
		check_audit_row(trigdata->tg_relation, trigdata->tg_trigtuple);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}

	if (TRIGGER_FIRED_BY_DELETE(event))
	{
		if (!gate_open)
			ereport(ERROR,
					(errcode(ERRCODE_RG_CONFLICT),
					 errmsg("rungate.audit_log is append-only: DELETE is not allowed"),
					 errhint("Use rungate.purge() to remove finished runs with their audit rows.")));
		return PointerGetDatum(trigdata->tg_trigtuple);
	}

	elog(ERROR, "rungate.guard_audit(): unexpected trigger event %u", event);
	return PointerGetDatum(NULL);	/* keep the compiler quiet */
}

/* ----------------------------------------------------------------
 * rungate.fence(): docs/guarantees.md#fence
 * ----------------------------------------------------------------
 */

/*
 * FOR SHARE conflicts with the FOR NO KEY UPDATE lock that every status
 * change takes, so the status read is the latest committed one and cannot
 * change until this transaction ends.
 */
static RgPlan fence_plan = {
	"SELECT r.status FROM rungate.runs r"
	" WHERE r.id" EQ "$1"
	"   FOR SHARE",
	1, {INT8OID}, NULL, false
};

/* The run id in a column of a guarded row; false when null. */
static bool
FenceRunId(HeapTuple tuple, TupleDesc tupdesc, int attnum, int64 *run_id)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, tupdesc, &isnull);

	if (isnull)
		return false;
	switch (TupleDescAttr(tupdesc, attnum - 1)->atttypid)
	{
		case INT2OID:
			*run_id = DatumGetInt16(d);
			break;
		case INT4OID:
			*run_id = DatumGetInt32(d);
			break;
		case INT8OID:
			*run_id = DatumGetInt64(d);
			break;
		default:
			elog(ERROR, "rungate: unexpected type of a fenced column");
	}
	return true;
}

static void
FenceCheck(int64 run_id, Relation rel, const char *column, const char *what)
{
	Datum		arg = Int64GetDatum(run_id);
	char	   *status;
	char	   *relname;

	rg_exec(&fence_plan, &arg, NULL, false, 1);
	status = SPI_processed > 0 ? rg_get_text(0, 1) : NULL;
	if (status != NULL && rg_status_of(status) == RG_RUNNING)
		return;

	relname = rg_qualified_name(RelationGetRelid(rel));
	if (status == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("run " INT64_FORMAT " does not exist: %s %s is fenced",
						run_id, what, relname),
				 errdetail("Rows of %s whose column %s names a run can be written only while that run is running.",
						   relname, quote_identifier(column))));
	ereport(ERROR,
			(errcode(ERRCODE_RG_CONFLICT),
			 errmsg("run " INT64_FORMAT " is %s: %s %s is fenced%s",
					run_id, status, what, relname,
					rg_status_of(status) == RG_QUEUED ? " until it runs" : ""),
			 errdetail("Rows of %s whose column %s names a run can be written only while that run is running.",
					   relname, quote_identifier(column))));
}

Datum
rg_fence(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = RgTriggerData(fcinfo, "rungate.fence()");
	Relation	rel = trigdata->tg_relation;
	TupleDesc	tupdesc = RelationGetDescr(rel);
	TriggerEvent event = trigdata->tg_event;
	const char *column;
	int			attnum;
	Oid			atttype;
	HeapTuple	rettup;
	bool		has_new = false,
				has_old = false;
	int64		new_id = 0,
				old_id = 0;

	/* the publisher's fence passed it, against the run as it was there */
	if (rg_is_apply_worker())
		return RgUnchanged(trigdata);

	if (trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on %s must pass rungate.fence() one argument, the run column",
						trigdata->tg_trigger->tgname,
						rg_qualified_name(RelationGetRelid(rel))),
				 errhint("Install the fence with rungate.guard_writes().")));
	column = trigdata->tg_trigger->tgargs[0];

	/* A fence that cannot find its column refuses the write. */
	attnum = SPI_fnumber(tupdesc, column);
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column %s fenced by trigger \"%s\" does not exist in %s",
						quote_identifier(column), trigdata->tg_trigger->tgname,
						rg_qualified_name(RelationGetRelid(rel))),
				 errhint("Run rungate.guard_writes() again with the column's current name.")));
	atttype = TupleDescAttr(tupdesc, attnum - 1)->atttypid;
	if (atttype != INT2OID && atttype != INT4OID && atttype != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column %s fenced by trigger \"%s\" of %s is of type %s, not an integer type",
						quote_identifier(column), trigdata->tg_trigger->tgname,
						rg_qualified_name(RelationGetRelid(rel)),
						format_type_be(atttype))));

	if (TRIGGER_FIRED_BY_INSERT(event))
	{
		rettup = trigdata->tg_trigtuple;
		has_new = FenceRunId(rettup, tupdesc, attnum, &new_id);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(event))
	{
		rettup = trigdata->tg_newtuple;
		has_new = FenceRunId(rettup, tupdesc, attnum, &new_id);
		has_old = FenceRunId(trigdata->tg_trigtuple, tupdesc, attnum, &old_id);
		/* The same run twice is checked once. */
		if (has_old && has_new && old_id == new_id)
			has_old = false;
	}
	else if (TRIGGER_FIRED_BY_DELETE(event))
	{
		rettup = trigdata->tg_trigtuple;
		has_old = FenceRunId(rettup, tupdesc, attnum, &old_id);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function rungate.fence() must be fired for INSERT, UPDATE or DELETE")));

	/* Rows tied to no run are not fenced. */
	if (!has_new && !has_old)
		return PointerGetDatum(rettup);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "rungate: SPI_connect failed");
	if (has_new)
		FenceCheck(new_id, rel, column,
				   TRIGGER_FIRED_BY_INSERT(event) ? "INSERT into" : "UPDATE of");
	if (has_old)
		FenceCheck(old_id, rel, column,
				   TRIGGER_FIRED_BY_DELETE(event) ? "DELETE from" : "UPDATE of");
	SPI_finish();

	return PointerGetDatum(rettup);
}

/* ----------------------------------------------------------------
 * rungate.guard_writes(), rungate.unguard_writes()
 * ----------------------------------------------------------------
 */

/*
 * The fence trigger of a table, if it has one: whether it calls
 * rungate.fence(), and the table it was cloned from when the table is a
 * partition of a guarded partitioned table.
 */
static RgPlan fence_trigger_plan = {
	"SELECT t.tgfoid" EQ "'rungate.fence()'::pg_catalog.regprocedure,"
	"       p.tgrelid::pg_catalog.regclass::pg_catalog.text"
	"  FROM pg_catalog.pg_trigger t"
	"  LEFT JOIN pg_catalog.pg_trigger p ON p.oid" EQ "t.tgparentid"
	" WHERE t.tgrelid" EQ "$1"
	"   AND t.tgname" EQ "'" FENCE_TRIGGER "'",
	1, {OIDOID}, NULL, false
};

/*
 * Look up the fence trigger of a table (SPI connected). Returns false when
 * the table has none; refuses a foreign trigger of that name and a trigger
 * cloned from a partitioned parent, which only the parent can replace.
 */
static bool
FenceTriggerExists(Oid relid, const char *relname)
{
	Datum		arg = ObjectIdGetDatum(relid);
	char	   *parent;

	rg_exec(&fence_trigger_plan, &arg, NULL, false, 1);
	if (SPI_processed == 0)
		return false;
	if (!rg_get_bool(0, 1, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("trigger \"%s\" on %s is not rungate's fence",
						FENCE_TRIGGER, relname),
				 errdetail("rungate.guard_writes() and rungate.unguard_writes() manage only a trigger of that name that calls rungate.fence()."),
				 errhint("Rename or drop that trigger first.")));
	parent = rg_get_text(0, 2);
	if (parent != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s is fenced through its partitioned table %s",
						relname, parent),
				 errhint("Guard or unguard %s instead.", parent)));
	return true;
}

static void
RgExecDDL(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != SPI_OK_UTILITY)
		elog(ERROR, "rungate: SPI_execute failed (%s) for: %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * rungate.guard_writes(target regclass, run_column name)
 *
 * Runs with the caller's rights: PostgreSQL itself requires the caller to
 * own the table (and to be allowed to execute rungate.fence()).
 */
Datum
rg_guard_writes(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Name		run_column;
	char		relkind;
	Oid			rungate_nsp;
	char	   *relname;
	HeapTuple	atttup;
	Form_pg_attribute att;
	Oid			atttype;
	const char *colname;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s must not be null", PG_ARGISNULL(0) ? "target" : "run_column")));
	relid = PG_GETARG_OID(0);
	run_column = PG_GETARG_NAME(1);
	relkind = get_rel_relkind(relid);
	colname = NameStr(*run_column);

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("relation with OID %u does not exist", relid)));
	relname = rg_qualified_name(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s is not a table", relname),
				 errdetail("rungate.guard_writes() fences ordinary and partitioned tables.")));

	rungate_nsp = rg_namespace(true);
	if (OidIsValid(rungate_nsp) && get_rel_namespace(relid) == rungate_nsp)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s is one of rungate's own tables and cannot be fenced",
						relname),
				 errdetail("rungate.guard_writes() fences application tables that record the side effects of runs.")));

	atttup = SearchSysCacheAttName(relid, colname);
	if (!HeapTupleIsValid(atttup))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("column %s of %s does not exist",
						quote_identifier(colname), relname)));
	att = (Form_pg_attribute) GETSTRUCT(atttup);
	atttype = att->atttypid;
	if (att->attnum <= 0)
	{
		ReleaseSysCache(atttup);
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("column %s of %s is a system column and cannot name a run",
						quote_identifier(colname), relname)));
	}
	if (att->attgenerated != '\0')
	{
		/* BEFORE triggers see a generated column before it is computed. */
		ReleaseSysCache(atttup);
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("column %s of %s is a generated column and cannot name a run",
						quote_identifier(colname), relname),
				 errdetail("The fence fires before generated columns are computed.")));
	}
	ReleaseSysCache(atttup);
	if (atttype != INT2OID && atttype != INT4OID && atttype != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("column %s of %s is of type %s and cannot name a run",
						quote_identifier(colname), relname,
						format_type_be(atttype)),
				 errdetail("The run column must be of type smallint, integer or bigint.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "rungate: SPI_connect failed");
	if (FenceTriggerExists(relid, relname))
		RgExecDDL(psprintf("DROP TRIGGER %s ON %s",
						   FENCE_TRIGGER, relname));
	RgExecDDL(psprintf("CREATE TRIGGER %s BEFORE INSERT OR UPDATE OR DELETE ON %s"
					   " FOR EACH ROW EXECUTE FUNCTION rungate.fence(%s)",
					   FENCE_TRIGGER, relname, quote_literal_cstr(colname)));
	RgExecDDL(psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER %s",
					   relname, FENCE_TRIGGER));
	SPI_finish();

	PG_RETURN_VOID();
}

/*
 * rungate.unguard_writes(target regclass): idempotent.
 */
Datum
rg_unguard_writes(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *relname;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("target must not be null")));
	relid = PG_GETARG_OID(0);

	if (get_rel_relkind(relid) == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("relation with OID %u does not exist", relid)));
	relname = rg_qualified_name(relid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "rungate: SPI_connect failed");
	if (FenceTriggerExists(relid, relname))
		RgExecDDL(psprintf("DROP TRIGGER %s ON %s", FENCE_TRIGGER, relname));
	else
		ereport(NOTICE,
				(errmsg("%s is not guarded, skipping", relname)));
	SPI_finish();

	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * rungate.guard_tenant_delete(): docs/guarantees.md#bulk
 * ----------------------------------------------------------------
 */

/*
 * Tenants that runs reference are never deleted: foreign keys protect those
 * of recorded runs, and this trigger those a queued bulk run will fan out to
 * (kept in its item_tenants array, which no foreign key can cover). Fired
 * AFTER the row is deleted: enqueue_bulk locks its tenants FOR KEY SHARE,
 * so the delete has waited for any concurrent one to end, and the query,
 * on the latest snapshot (as a foreign key's check in REPEATABLE READ),
 * sees its run.
 */
static RgPlan bulk_holder_plan = {
	"SELECT r.id FROM rungate.runs r"
	" WHERE r.status" EQ "'queued' AND r.item_tenants IS NOT NULL"
	"   AND $1" EQ "ANY (r.item_tenants)"
	" LIMIT 1",
	1, {INT8OID}, NULL, false
};

Datum
rg_guard_tenant_delete(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = RgTriggerData(fcinfo, "rungate.guard_tenant_delete()");
	TupleDesc	tupdesc = RelationGetDescr(trigdata->tg_relation);
	HeapTuple	old = trigdata->tg_trigtuple;
	bool		isnull;
	int64		tenant_id;
	Datum		v[1];

	if (!TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		elog(ERROR, "rungate.guard_tenant_delete() must fire on DELETE");
	/* the publisher's runs allowed it; these may be behind */
	if (rg_is_apply_worker())
		return PointerGetDatum(old);
	tenant_id = DatumGetInt64(heap_getattr(old, RgAttnum(tupdesc, "id"),
										   tupdesc, &isnull));
	v[0] = Int64GetDatum(tenant_id);
	SPI_connect();
	if (SPI_execute_snapshot(rg_plan(&bulk_holder_plan), v, NULL,
							 GetLatestSnapshot(), InvalidSnapshot,
							 false, false, 1) < 0)
		elog(ERROR, "rungate: the queued bulk runs of tenant " INT64_FORMAT
			 " could not be read", tenant_id);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("tenant " INT64_FORMAT " cannot be deleted: queued bulk run "
						INT64_FORMAT " names it", tenant_id,
						rg_get_int64(0, 1, NULL)),
				 errhint("Tenants that runs reference are archived, not deleted; or cancel the bulk run first.")));
	SPI_finish();
	return PointerGetDatum(old);
}

/* ----------------------------------------------------------------
 * rungate.note_authority_change(): BEFORE INSERT OR UPDATE OR DELETE FOR
 * EACH ROW, and BEFORE TRUNCATE, on every authority table. It only marks
 * the transaction, so that its commit empties every backend's authority
 * cache; the row goes on unchanged.
 * ----------------------------------------------------------------
 */
Datum
rg_note_authority_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = RgTriggerData(fcinfo, "rungate.note_authority_change()");

	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		elog(ERROR, "rungate.note_authority_change() must fire BEFORE");
	rg_authcache_note_change();
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}
