/*
 * references.c
 *     The references of a new run that PostgreSQL's foreign keys no longer
 *     check on insert: its workspace and operation type (since 1.8), its
 *     tenant and initiator (since 1.9). rungate checks them itself when it
 *     inserts a run, instead of the foreign keys' insert triggers
 *     (docs/guarantees.md#authority-data):
 *
 *     rg_check_run_references   guard_runs, on every run rungate inserts
 *                               (and every run a restore loads):
 *                               the tenant's and the initiator's rows locked
 *                               FOR KEY SHARE as the foreign key's check
 *                               locked them (facts.c); the workspace and the
 *                               type read as a decision reads facts, once
 *                               the insert holds its lock on rungate.runs
 *     rungate.guard_run_references()
 *                               BEFORE DELETE OR UPDATE OF the key, on
 *                               workspaces and operation_types: waits for
 *                               the runs being inserted and holds back new
 *                               ones until this transaction ends
 *
 * Why: a foreign key's insert check is a SELECT ... FOR KEY SHARE through
 * SPI, with an executor, for every run. Every enqueue names one of a few
 * workspaces and operation types, so concurrent enqueues kept locking the
 * same two rows, each lock a new multixact and a write of that row's page:
 * those two are checked without a lock. A tenant or an actor is named by
 * few runs at once; its row is locked the same way, by one index probe.
 * The foreign keys stay declared and their delete side is PostgreSQL's own;
 * only their insert triggers are disabled (rungate--1.7--1.8.sql,
 * rungate--1.8--1.9.sql).
 *
 * Must never let a run name a row that a committed transaction deleted.
 * The tenant and the initiator: the row lock, exactly as the foreign key
 * took it (a delete waits for the run's transaction, then restricts; an
 * insert behind a delete waits for it, then finds the row gone). The
 * workspace and the type meet on the lock of rungate.runs: a deleter takes
 * SHARE, which waits for every transaction that inserted runs (ROW
 * EXCLUSIVE) and holds new inserts back until it ends; the foreign key's
 * delete check then sees every run committed before, and an insert let
 * through afterwards reads the rows on a snapshot (or authority cache
 * generation) that shows the delete.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"

#include "rungate.h"
#include "facts.h"
#include "triggers.h"

PG_FUNCTION_INFO_V1(rg_guard_run_references);

/*
 * The foreign-key violation PostgreSQL's own check reports, with the
 * constraint's fields (schema, table, constraint). Never returns.
 */
static void
report_missing(Relation rel, const char *constraint, const char *column,
			   const char *value, const char *table)
{
	ereport(ERROR,
			(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
			 errmsg("insert or update on table \"%s\" violates foreign key constraint \"%s\"",
					RelationGetRelationName(rel), constraint),
			 errdetail("Key (%s)=(%s) is not present in table \"%s\".",
					   column, value, table),
			 errtableconstraint(rel, constraint)));
}

/*
 * The tenant and initiator a new run names (a null names none), locked. It
 * runs before the row is stored (guard_runs is a BEFORE trigger): a row an
 * INSERT ... ON CONFLICT DO NOTHING then skips has taken the locks too,
 * which hold back a delete of that tenant or actor until this transaction
 * ends.
 */
static void
lock_references(Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		no_tenant,
				no_actor;
	int64		tenant = DatumGetInt64(heap_getattr(tuple, RgAttnum(desc, "tenant_id"),
													desc, &no_tenant));
	int64		actor = DatumGetInt64(heap_getattr(tuple, RgAttnum(desc, "initiator_id"),
												   desc, &no_actor));
	const char *missing = rg_lock_run_references(!no_tenant, tenant, !no_actor, actor);

	if (missing == NULL)
		return;
	if (strcmp(missing, "tenants") == 0)
		report_missing(rel, "runs_tenant_id_fkey", "tenant_id",
					   psprintf(INT64_FORMAT, tenant), missing);
	report_missing(rel, "runs_initiator_id_fkey", "initiator_id",
				   psprintf(INT64_FORMAT, actor), missing);
}

/* A run being inserted into rel (rungate.runs) names rows that exist. */
void
rg_check_run_references(Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			ws_att = RgAttnum(desc, "workspace_id");
	int			op_att = RgAttnum(desc, "operation");
	bool		ws_null,
				op_null;
	Datum		ws = heap_getattr(tuple, ws_att, desc, &ws_null);
	Datum		op = heap_getattr(tuple, op_att, desc, &op_null);
	const char *missing;
	char	   *operation;

	lock_references(rel, tuple);
	/* NOT NULL says so, after this trigger */
	if (ws_null || op_null)
		return;
	operation = TextDatumGetCString(op);
	missing = rg_missing_run_reference(operation, DatumGetInt64(ws));
	if (missing == NULL)
		return;
	if (strcmp(missing, "workspaces") == 0)
		report_missing(rel, "runs_workspace_id_fkey", "workspace_id",
					   psprintf(INT64_FORMAT, DatumGetInt64(ws)), "workspaces");
	report_missing(rel, "runs_operation_fkey", "operation", operation,
				   "operation_types");
}

/*
 * rungate.guard_run_references(key column): BEFORE DELETE OR UPDATE OF the
 * key column, FOR EACH ROW. A key that stays the same changes nothing.
 */
Datum
rg_guard_run_references(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = RgTriggerData(fcinfo, "rungate.guard_run_references()");
	TriggerEvent event = trigdata->tg_event;

	if (!TRIGGER_FIRED_BEFORE(event) ||
		!(TRIGGER_FIRED_BY_DELETE(event) || TRIGGER_FIRED_BY_UPDATE(event)) ||
		trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "rungate.guard_run_references(key) must fire BEFORE DELETE OR UPDATE");

	if (TRIGGER_FIRED_BY_UPDATE(event))
	{
		TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
		int			att = RgAttnum(desc, trigdata->tg_trigger->tgargs[0]);
		Form_pg_attribute a = TupleDescAttr(desc, att - 1);
		bool		old_null,
					new_null;
		Datum		old = heap_getattr(trigdata->tg_trigtuple, att, desc, &old_null);
		Datum		new = heap_getattr(trigdata->tg_newtuple, att, desc, &new_null);

		if (old_null == new_null &&
			(old_null || datumIsEqual(old, new, a->attbyval, a->attlen)))
			return PointerGetDatum(trigdata->tg_newtuple);
	}
	LockRelationOid(rg_relid("runs", false), ShareLock);
	return RgUnchanged(trigdata);
}
