/*
 * optypes.c
 *     rungate.validate_operation_type(), the trigger that keeps
 *     rungate.operation_types complete and consistent: a capability, a
 *     scope, a bulk type's item type, attempts, leases and flow-control
 *     limits that make sense together, and no change of scope or item type
 *     under live runs (docs/guarantees.md#operation-types, #flow-control).
 *
 * Must never let a type change under a live run of it in a way that makes
 * that run undecidable, or accept a half-valid limit.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "rungate.h"
#include "triggers.h"

PG_FUNCTION_INFO_V1(rg_validate_operation_type);

/* ----------------------------------------------------------------
 * rungate.validate_operation_type(): docs/guarantees.md#operation-types
 * ----------------------------------------------------------------
 */

/*
 * The item type of a bulk type. FOR KEY SHARE (which the foreign key would
 * take anyway, only later) makes a concurrent change of the item type's scope
 * or item_operation, which locks it FOR UPDATE below, wait for this
 * transaction or be seen by it.
 */
static RgPlan item_type_plan = {
	"SELECT ot.scope, ot.item_operation IS NOT NULL"
	"  FROM rungate.operation_types ot"
	" WHERE ot.name" EQ "$1"
	"   FOR KEY SHARE",
	1, {TEXTOID}, NULL, false
};

/*
 * Before the scope or item_operation of a type changes: take the row FOR
 * UPDATE, which waits for transactions that insert runs of it or bulk types
 * naming it (both hold FOR KEY SHARE on it) so that the checks below see
 * what they committed.
 */
static RgPlan lock_type_plan = {
	"SELECT 1 FROM rungate.operation_types ot"
	" WHERE ot.name" EQ "$1"
	"   FOR UPDATE",
	1, {TEXTOID}, NULL, false
};

/* A queued or running run of a type. */
static RgPlan live_run_plan = {
	"SELECT r.id, r.status FROM rungate.runs r"
	" WHERE r.operation" EQ "$1"
	"   AND (r.status" EQ "'queued' OR r.status" EQ "'running')"
	" LIMIT 1",
	1, {TEXTOID}, NULL, false
};

/* Another type that uses this one as its item type. */
static RgPlan bulk_user_plan = {
	"SELECT ot.name FROM rungate.operation_types ot"
	" WHERE ot.item_operation" EQ "$1 AND ot.name" NE "$1"
	" LIMIT 1",
	1, {TEXTOID}, NULL, false
};

/* A column of the new row, which must not be null (hint: or NULL). */
static Datum
OpTypeRequired(HeapTuple tuple, TupleDesc tupdesc, const char *column,
			   const char *name, const char *hint)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, RgAttnum(tupdesc, column), tupdesc,
								 &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s of operation type \"%s\" must not be null",
						column, name),
				 hint ? errhint("%s", hint) : 0));
	return d;
}

/* A boolean column of the new row, which must not be null. */
static bool
OpTypeBool(HeapTuple tuple, TupleDesc tupdesc, const char *column,
		   const char *name)
{
	return DatumGetBool(OpTypeRequired(tuple, tupdesc, column, name, NULL));
}

Datum
rg_validate_operation_type(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = RgTriggerData(fcinfo,
										  "rungate.validate_operation_type()");
	TupleDesc	tupdesc = RelationGetDescr(trigdata->tg_relation);
	bool		is_update = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event);
	HeapTuple	oldtup = is_update ? trigdata->tg_trigtuple : NULL;
	HeapTuple	newtup = is_update ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	char	   *name;
	char	   *capability;
	char	   *scope;
	char	   *item_operation;
	bool		workspace_scope;
	bool		requires_operable_tenant;
	Datum		d;
	ArrayType  *prerequisites;
	int			n_prerequisites;
	int32		max_attempts;
	Interval	zero;
	char	   *old_name = NULL;
	bool		scope_changed = false;
	bool		item_changed = false;

	/*
	 * The publisher accepted this type against its own rows; here a bulk
	 * type may be copied before its item type, or runs of the type may not
	 * have arrived or finished yet.
	 */
	if (rg_is_apply_worker())
		return RgUnchanged(trigdata);

	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && !is_update)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function rungate.validate_operation_type() must be fired for INSERT or UPDATE")));

	/* name and capability */
	name = RgTupleText(newtup, tupdesc, RgAttnum(tupdesc, "name"));
	if (name == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation type name must not be %s",
						name ? "empty" : "null")));
	capability = RgTupleText(newtup, tupdesc, RgAttnum(tupdesc, "capability"));
	if (capability == NULL || capability[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("capability of operation type \"%s\" must not be %s",
						name, capability ? "empty" : "null"),
				 errdetail("The initiator of a run must hold this capability in the run's scope.")));

	/* scope */
	scope = RgTupleText(newtup, tupdesc, RgAttnum(tupdesc, "scope"));
	if (scope == NULL ||
		(strcmp(scope, "tenant") != 0 && strcmp(scope, "workspace") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("scope of operation type \"%s\" must be tenant or workspace, not %s",
						name, scope ? quote_literal_cstr(scope) : "null")));
	workspace_scope = strcmp(scope, "workspace") == 0;

	/* booleans */
	requires_operable_tenant = OpTypeBool(newtup, tupdesc,
										  "requires_operable_tenant", name);
	(void) OpTypeBool(newtup, tupdesc, "allow_system", name);
	(void) OpTypeBool(newtup, tupdesc, "writes", name);

	/* prerequisites: a list of non-empty names */
	d = OpTypeRequired(newtup, tupdesc, "prerequisites", name,
					   "Use an empty array for a type without prerequisites.");
	prerequisites = DatumGetArrayTypeP(d);
	if (ARR_ELEMTYPE(prerequisites) != TEXTOID)
		elog(ERROR, "rungate: operation_types.prerequisites is not a text array");
	if (ARR_NDIM(prerequisites) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("prerequisites of operation type \"%s\" must be a one-dimensional array",
						name)));
	{
		Datum	   *elems;
		bool	   *elem_nulls;
		int			i;

		deconstruct_array(prerequisites, TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elem_nulls, &n_prerequisites);
		for (i = 0; i < n_prerequisites; i++)
		{
			if (elem_nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_RG_BAD_REQUEST),
						 errmsg("prerequisites of operation type \"%s\" must not contain nulls",
								name)));
			if (VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i])) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_RG_BAD_REQUEST),
						 errmsg("prerequisites of operation type \"%s\" must not contain empty names",
								name)));
		}
	}

	/* what a workspace-scoped type cannot have */
	if (workspace_scope && n_prerequisites > 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation type \"%s\" is workspace-scoped and cannot have prerequisites",
						name),
				 errdetail("Prerequisites are facts about a tenant, and a workspace-scoped run has no tenant.")));
	if (workspace_scope && requires_operable_tenant)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation type \"%s\" is workspace-scoped and cannot require an operable tenant",
						name),
				 errdetail("A workspace-scoped run has no tenant."),
				 errhint("Set requires_operable_tenant to false: the column defaults to true.")));

	/* item_operation, the local rules */
	item_operation = RgTupleText(newtup, tupdesc,
								 RgAttnum(tupdesc, "item_operation"));
	if (item_operation != NULL && !workspace_scope)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation type \"%s\" is a tenant-scoped bulk type", name),
				 errdetail("Only a workspace-scoped type may set item_operation: a bulk run spans the tenants of a workspace.")));
	if (item_operation != NULL && strcmp(item_operation, name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation type \"%s\" cannot be its own item_operation",
						name)));

	/* max_attempts and lease */
	max_attempts = DatumGetInt32(OpTypeRequired(newtup, tupdesc, "max_attempts",
												name, NULL));
	if (max_attempts < 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("max_attempts of operation type \"%s\" must be at least 1, not %d",
						name, max_attempts)));

	d = OpTypeRequired(newtup, tupdesc, "lease", name, NULL);
	memset(&zero, 0, sizeof(zero));
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, d,
										  IntervalPGetDatum(&zero))) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("lease of operation type \"%s\" must be positive, not %s",
						name,
						DatumGetCString(DirectFunctionCall1(interval_out, d))),
				 errdetail("A claim holds a run for the lease without a heartbeat.")));

	/* concurrency and rate limits (flow.c) */
	rg_flow_validate_type(newtup, tupdesc, name, workspace_scope);

	if (is_update)
	{
		char	   *old_scope;

		old_name = RgTupleText(oldtup, tupdesc, RgAttnum(tupdesc, "name"));
		old_scope = RgTupleText(oldtup, tupdesc, RgAttnum(tupdesc, "scope"));
		scope_changed = !RgTextEqual(old_scope, scope);
		item_changed =
			!RgTextEqual(RgTupleText(oldtup, tupdesc,
									 RgAttnum(tupdesc, "item_operation")),
						 item_operation);
		if (old_name == NULL)
			elog(ERROR, "rungate: operation type with a null name");
	}

	/* From here on the rules need other rows. */
	if (item_operation == NULL && !scope_changed && !item_changed)
		return PointerGetDatum(newtup);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "rungate: SPI_connect failed");

	if (scope_changed || item_changed)
	{
		Datum		arg = CStringGetTextDatum(old_name);

		rg_exec(&lock_type_plan, &arg, NULL, false, 1);

		/* Runs already decided under the old shape must not see it change. */
		rg_exec(&live_run_plan, &arg, NULL, false, 1);
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("%s of operation type \"%s\" cannot change while it has queued or running runs",
							scope_changed ? "scope" : "item_operation",
							old_name),
					 errdetail("Run " INT64_FORMAT " is %s.",
							   rg_get_int64(0, 1, NULL), rg_get_text(0, 2)),
					 errhint("Let its runs finish, or cancel the queued ones, first.")));

		/*
		 * An item type stays tenant-scoped, and so (bulk types being
		 * workspace-scoped) never becomes a bulk type either.
		 */
		if (scope_changed && workspace_scope)
		{
			rg_exec(&bulk_user_plan, &arg, NULL, false, 1);
			if (SPI_processed > 0)
				ereport(ERROR,
						(errcode(ERRCODE_RG_BAD_REQUEST),
						 errmsg("operation type \"%s\" cannot become workspace-scoped: bulk type \"%s\" uses it as its item_operation",
								old_name, rg_get_text(0, 1)),
						 errdetail("The items of a bulk run are tenant-scoped runs, one per tenant.")));
		}
	}

	if (item_operation != NULL)
	{
		Datum		arg = CStringGetTextDatum(item_operation);

		rg_exec(&item_type_plan, &arg, NULL, false, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("item_operation \"%s\" of operation type \"%s\" is not an operation type",
							item_operation, name),
					 errhint("Define the item type in rungate.operation_types first.")));
		if (rg_get_bool(0, 2, NULL))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("item_operation \"%s\" of operation type \"%s\" is itself a bulk type",
							item_operation, name),
					 errdetail("Bulk types cannot be nested.")));
		if (!RgTextEqual(rg_get_text(0, 1), "tenant"))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("item_operation \"%s\" of operation type \"%s\" is workspace-scoped",
							item_operation, name),
					 errdetail("A bulk run creates one item run per tenant, so the item type must be tenant-scoped.")));
	}

	SPI_finish();
	return PointerGetDatum(newtup);
}
