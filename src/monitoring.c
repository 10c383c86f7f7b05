/*
 * monitoring.c
 *     The canonical operations surfaces (CONTRACT §6): rungate.operations(),
 *     the list of runs a viewer may see in a workspace, and
 *     rungate.operation(), the detail of one run.
 *
 * Owns the access rules of both surfaces:
 *
 *   - in scope: the viewer is an active actor with a membership in the
 *     workspace and, for a tenant run (or a tenant filter), a membership on
 *     that tenant;
 *   - visible: the membership that puts the run in scope (the tenant
 *     membership for a tenant run, the workspace membership for a
 *     workspace run) has a role granting operations.view.
 *
 * Outside scope is RG404, in scope but not visible is RG403. The RG404
 * message is the one a nonexistent workspace, tenant or run would get and
 * never says why: an outsider cannot learn whether a run exists, nor which
 * fact (unknown actor, disabled, no membership...) kept it out. Nothing that
 * belongs to an invisible run (its audit trail, its items) is read at all.
 *
 * Must never write anything: both functions are STABLE and only run SELECT
 * kept plans, through rg_exec with the internal-write gate closed (each
 * query takes a fresh snapshot, like every other rungate read). Statuses and reasons are returned as stored; a
 * blocked run is never presented as failed, and nothing is synthesized.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "rungate.h"

PG_FUNCTION_INFO_V1(rg_operations);
PG_FUNCTION_INFO_V1(rg_operation);

/*
 * Upper bound of max_rows. The list is a page of a UI or an API, walked with
 * before_id; a page of 10000 rows is already more than any screen shows, and
 * the bound keeps one call from materializing a whole busy workspace.
 */
#define RG_MAX_ROWS_CAP 10000

#define CONCAT " OPERATOR(pg_catalog.||) "

/* The capability that makes a run visible. */
#define VIEW_CAP "'operations.view'"

/* The run_summary columns, in the type's order, from rungate.runs r. */
#define SUMMARY_COLS \
	"r.id, r.workspace_id, r.tenant_id, r.operation," \
	" CASE WHEN r.initiator_id IS NULL THEN 'system'::pg_catalog.text" \
	"      ELSE 'actor'::pg_catalog.text END AS authority," \
	" r.initiator_id, r.status, r.reason_code, r.reason_category," \
	" r.reason_message, r.error, r.attempt, r.parent_id, r.created_at," \
	" r.started_at, r.finished_at"

#define SUMMARY_NATTS 16
#define DETAIL_NATTS 20			/* before 1.6 */
#define DETAIL_NATTS_WAITING 21 /* 1.6: ... waiting */

/* ----------------------------------------------------------------------
 * rungate.operations
 * ---------------------------------------------------------------------- */

/*
 * The viewer's scope in a workspace (and in the filtered tenant), in one
 * row; no row when the actor does not exist.
 *   $1 viewer, $2 workspace, $3 tenant filter (null: none)
 */
static RgPlan list_scope_plan = {
	"SELECT a.status" EQ "'active',"
	"       wm.role IS NOT NULL,"
	"       EXISTS (SELECT 1 FROM rungate.role_capabilities rc"
	"                WHERE rc.role" EQ "wm.role AND rc.capability" EQ VIEW_CAP "),"
	"       t.workspace_id IS NOT NULL AND t.workspace_id" EQ "$2"
	"         AND tm.role IS NOT NULL,"
	"       EXISTS (SELECT 1 FROM rungate.role_capabilities rc"
	"                WHERE rc.role" EQ "tm.role AND rc.capability" EQ VIEW_CAP "),"
	"       EXISTS (SELECT 1 FROM rungate.tenant_members tm2"
	"                 JOIN rungate.tenants t2 ON t2.id" EQ "tm2.tenant_id"
	"                 JOIN rungate.role_capabilities rc ON rc.role" EQ "tm2.role"
	"                WHERE tm2.actor_id" EQ "a.id AND t2.workspace_id" EQ "$2"
	"                  AND rc.capability" EQ VIEW_CAP ")"
	"  FROM rungate.actors a"
	"  LEFT JOIN rungate.workspace_members wm"
	"         ON wm.workspace_id" EQ "$2 AND wm.actor_id" EQ "a.id"
	"  LEFT JOIN rungate.tenants t ON t.id" EQ "$3"
	"  LEFT JOIN rungate.tenant_members tm"
	"         ON tm.tenant_id" EQ "$3 AND tm.actor_id" EQ "a.id"
	" WHERE a.id" EQ "$1",
	3, {INT8OID, INT8OID, INT8OID}, NULL
};

enum
{
	S_ACTIVE = 1, S_WS_MEMBER, S_WS_VIEW, S_TENANT_MEMBER, S_TENANT_VIEW,
	S_ANY_TENANT_VIEW
};

/*
 * The page itself. The four filter combinations each get their own kept
 * plan, so that each generic plan can use its index: (workspace_id, id),
 * (workspace_id, status, id) and (tenant_id, id). All four take the same
 * parameters (those a plan does not use are simply not referenced):
 *   $1 viewer, $2 workspace, $3 before_id (INT64_MAX when none),
 *   $4 the workspace membership grants operations.view, $5 max_rows,
 *   $6 status, $7 tenant
 *
 * A workspace run is visible when $4 holds; a tenant run when the viewer's
 * membership on its tenant has a role granting operations.view (an
 * uncorrelated "= ANY (subquery)", i.e. IN spelled with pg_catalog's
 * operator: a hashed subplan evaluated once per page).
 */
#define LIST_VISIBLE \
	" AND ((r.tenant_id IS NULL AND $4)" \
	"      OR r.tenant_id" EQ "ANY (SELECT tm.tenant_id" \
	"                           FROM rungate.tenant_members tm" \
	"                           JOIN rungate.role_capabilities rc" \
	"                             ON rc.role" EQ "tm.role" \
	"                          WHERE tm.actor_id" EQ "$1" \
	"                            AND rc.capability" EQ VIEW_CAP "))"
#define LIST_TAIL " ORDER BY r.id DESC LIMIT $5"
#define LIST_ARGS 7, {INT8OID, INT8OID, INT8OID, BOOLOID, INT8OID, TEXTOID, INT8OID}, NULL

static RgPlan list_plan = {
	"SELECT " SUMMARY_COLS " FROM rungate.runs r"
	" WHERE r.workspace_id" EQ "$2 AND r.id" LT "$3"
	LIST_VISIBLE LIST_TAIL,
	LIST_ARGS
};

static RgPlan list_status_plan = {
	"SELECT " SUMMARY_COLS " FROM rungate.runs r"
	" WHERE r.workspace_id" EQ "$2 AND r.status" EQ "$6 AND r.id" LT "$3"
	LIST_VISIBLE LIST_TAIL,
	LIST_ARGS
};

static RgPlan list_tenant_plan = {
	"SELECT " SUMMARY_COLS " FROM rungate.runs r"
	" WHERE r.tenant_id" EQ "$7 AND r.workspace_id" EQ "$2 AND r.id" LT "$3"
	LIST_VISIBLE LIST_TAIL,
	LIST_ARGS
};

static RgPlan list_tenant_status_plan = {
	"SELECT " SUMMARY_COLS " FROM rungate.runs r"
	" WHERE r.tenant_id" EQ "$7 AND r.workspace_id" EQ "$2"
	"   AND r.status" EQ "$6 AND r.id" LT "$3"
	LIST_VISIBLE LIST_TAIL,
	LIST_ARGS
};

static const char *const run_statuses[] = {
	"queued", "running", "succeeded", "partially_succeeded", "failed",
	"blocked", "cancelled"
};

static bool
valid_status(const char *status)
{
	size_t		i;

	for (i = 0; i < lengthof(run_statuses); i++)
		if (strcmp(status, run_statuses[i]) == 0)
			return true;
	return false;
}

/*
 * Detoast the varlena values of an SPI row, so what we hand back never
 * points into a table's TOAST data. Allocates in the current context.
 */
static void
flatten_values(TupleDesc tupdesc, Datum *values, const bool *nulls, int natts)
{
	int			i;

	for (i = 0; i < natts; i++)
	{
		if (!nulls[i] && TupleDescAttr(tupdesc, i)->attlen == -1)
			values[i] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(values[i]));
	}
}

/*
 * rungate.operations(viewer_id, workspace_id, status, tenant_id, max_rows,
 *                    before_id)
 */
Datum
rg_operations(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		viewer_id;
	int64		workspace_id;
	char	   *status = NULL;
	bool		has_tenant = !PG_ARGISNULL(3);
	int64		tenant_id = has_tenant ? PG_GETARG_INT64(3) : 0;
	int32		max_rows;
	int64		before_id = PG_INT64_MAX;
	Datum		args[7];
	char		nulls[7];
	bool		isnull;
	bool		ws_view;
	RgPlan	   *plan;
	TupleDesc	rowdesc;
	uint64		i;

	/* ---- arguments ---- */
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("viewer_id must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("workspace_id must not be null")));
	viewer_id = PG_GETARG_INT64(0);
	workspace_id = PG_GETARG_INT64(1);
	if (!PG_ARGISNULL(2))
	{
		status = text_to_cstring(PG_GETARG_TEXT_PP(2));
		if (!valid_status(status))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("invalid status \"%s\"", status),
					 errhint("A run status is one of queued, running, succeeded, "
							 "partially_succeeded, failed, blocked, cancelled.")));
	}
	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("max_rows must not be null")));
	max_rows = PG_GETARG_INT32(4);
	if (max_rows < 1 || max_rows > RG_MAX_ROWS_CAP)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("max_rows must be between 1 and %d, not %d",
						RG_MAX_ROWS_CAP, max_rows),
				 errhint("Page through longer lists with before_id.")));
	if (!PG_ARGISNULL(5))
	{
		before_id = PG_GETARG_INT64(5);
		if (before_id <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("before_id must be positive, not " INT64_FORMAT,
							before_id)));
	}

	/* The tuplestore lives in per-query memory; set it up outside SPI. */
	RG_MATERIALIZE_SRF(fcinfo);
	if (rsinfo->setDesc->natts != SUMMARY_NATTS)
		elog(ERROR, "rungate.run_summary has %d attributes, expected %d",
			 rsinfo->setDesc->natts, SUMMARY_NATTS);

	SPI_connect();

	/* ---- scope ---- */
	args[0] = Int64GetDatum(viewer_id);
	args[1] = Int64GetDatum(workspace_id);
	args[2] = Int64GetDatum(tenant_id);
	nulls[0] = ' ';
	nulls[1] = ' ';
	nulls[2] = has_tenant ? ' ' : 'n';
	rg_exec(&list_scope_plan, args, nulls, false, 1);

	/* Unknown actor, disabled, or no membership: the workspace "isn't". */
	if (SPI_processed == 0 ||
		!rg_get_bool(0, S_ACTIVE, &isnull) || isnull ||
		!rg_get_bool(0, S_WS_MEMBER, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("workspace " INT64_FORMAT " not found", workspace_id)));
	/* Unknown tenant, another workspace's, or no membership on it. */
	if (has_tenant && !rg_get_bool(0, S_TENANT_MEMBER, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("tenant " INT64_FORMAT " not found", tenant_id)));

	/* ---- visibility ---- */
	ws_view = rg_get_bool(0, S_WS_VIEW, NULL);
	if (has_tenant)
	{
		if (!rg_get_bool(0, S_TENANT_VIEW, NULL))
			ereport(ERROR,
					(errcode(ERRCODE_RG_FORBIDDEN),
					 errmsg("actor " INT64_FORMAT " may not view operations of tenant "
							INT64_FORMAT, viewer_id, tenant_id),
					 errdetail("The role of its tenant membership does not grant operations.view.")));
	}
	else if (!ws_view && !rg_get_bool(0, S_ANY_TENANT_VIEW, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_RG_FORBIDDEN),
				 errmsg("actor " INT64_FORMAT " may not view operations of workspace "
						INT64_FORMAT, viewer_id, workspace_id),
				 errdetail("No role of its memberships in the workspace grants operations.view.")));

	/* ---- the page ---- */
	if (status != NULL)
		plan = has_tenant ? &list_tenant_status_plan : &list_status_plan;
	else
		plan = has_tenant ? &list_tenant_plan : &list_plan;

	args[2] = Int64GetDatum(before_id);
	args[3] = BoolGetDatum(ws_view);
	args[4] = Int64GetDatum((int64) max_rows);
	args[5] = status != NULL ? CStringGetTextDatum(status) : (Datum) 0;
	args[6] = Int64GetDatum(tenant_id);
	nulls[2] = ' ';
	nulls[3] = ' ';
	nulls[4] = ' ';
	nulls[5] = status != NULL ? ' ' : 'n';
	nulls[6] = has_tenant ? ' ' : 'n';
	rg_exec(plan, args, nulls, false, 0);

	/*
	 * tuplestore_putvalues copies each row into the tuplestore's own
	 * (per-query) memory, so SPI's copy may go at SPI_finish.
	 */
	rowdesc = SPI_tuptable->tupdesc;
	for (i = 0; i < SPI_processed; i++)
	{
		Datum		values[SUMMARY_NATTS];
		bool		rnulls[SUMMARY_NATTS];

		heap_deform_tuple(SPI_tuptable->vals[i], rowdesc, values, rnulls);
		flatten_values(rowdesc, values, rnulls, SUMMARY_NATTS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, rnulls);
	}

	SPI_finish();
	return (Datum) 0;
}

/* ----------------------------------------------------------------------
 * rungate.operation
 * ---------------------------------------------------------------------- */

/*
 * The run, the viewer's scope and visibility, and (only when visible) its
 * items and audit trail, in one query and therefore one snapshot: the audit
 * array always agrees with the status shown. No row when the run does not
 * exist.
 *   $1 viewer, $2 run
 *
 * A run is a bulk parent when its type is a bulk orchestrator or it has
 * items; its items are counted by status, plus "total" (0 before the
 * parent has been claimed and has created its items).
 */
static RgPlan detail_plan = {
	"SELECT v.id, v.workspace_id, v.tenant_id, v.operation, v.authority,"
	"       v.initiator_id, v.status, v.reason_code, v.reason_category,"
	"       v.reason_message, v.error, v.attempt, v.parent_id, v.created_at,"
	"       v.started_at, v.finished_at, v.payload, v.result,"
	"       CASE WHEN v.in_scope AND v.may_view AND v.is_parent THEN"
	"         (SELECT COALESCE(pg_catalog.jsonb_object_agg(s.status, s.n),"
	"                          '{}'::pg_catalog.jsonb)"
	"                 " CONCAT " pg_catalog.jsonb_build_object('total',"
	"                        COALESCE(pg_catalog.sum(s.n), 0))"
	"            FROM (SELECT c.status, pg_catalog.count(*) AS n"
	"                    FROM rungate.runs c"
	"                   WHERE c.parent_id" EQ "v.id"
	"                   GROUP BY c.status) s)"
	"       END,"
	"       CASE WHEN v.in_scope AND v.may_view THEN"
	"         (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(a)"
	"                                               ORDER BY a.id),"
	"                          '[]'::pg_catalog.jsonb)"
	"            FROM rungate.audit_log a"
	"           WHERE a.run_id" EQ "v.id)"
	"       END,"
	"       v.in_scope, v.may_view, v.run_at"
	"  FROM (SELECT " SUMMARY_COLS ","
	"               r.payload, r.result, r.run_at,"
	"               COALESCE(va.status" EQ "'active', false)"
	"                 AND wm.role IS NOT NULL"
	"                 AND (r.tenant_id IS NULL OR tm.role IS NOT NULL) AS in_scope,"
	"               EXISTS (SELECT 1 FROM rungate.role_capabilities rc"
	"                        WHERE rc.role" EQ "(CASE WHEN r.tenant_id IS NULL"
	"                                             THEN wm.role ELSE tm.role END)"
	"                          AND rc.capability" EQ VIEW_CAP ") AS may_view,"
	"               ot.item_operation IS NOT NULL"
	"                 OR EXISTS (SELECT 1 FROM rungate.runs c"
	"                             WHERE c.parent_id" EQ "r.id) AS is_parent"
	"          FROM rungate.runs r"
	"          LEFT JOIN rungate.operation_types ot ON ot.name" EQ "r.operation"
	"          LEFT JOIN rungate.actors va ON va.id" EQ "$1"
	"          LEFT JOIN rungate.workspace_members wm"
	"                 ON wm.workspace_id" EQ "r.workspace_id AND wm.actor_id" EQ "$1"
	"          LEFT JOIN rungate.tenant_members tm"
	"                 ON tm.tenant_id" EQ "r.tenant_id AND tm.actor_id" EQ "$1"
	"         WHERE r.id" EQ "$2) v",
	2, {INT8OID, INT8OID}, NULL
};

/*
 * rungate.operation(viewer_id, run_id)
 */
Datum
rg_operation(PG_FUNCTION_ARGS)
{
	int64		viewer_id;
	int64		run_id;
	TupleDesc	tupdesc;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	Datum		args[2];
	Datum		values[DETAIL_NATTS_WAITING];
	bool		nulls[DETAIL_NATTS_WAITING];
	int			natts;
	HeapTuple	tuple;
	bool		isnull;
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("viewer_id must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("run_id must not be null")));
	viewer_id = PG_GETARG_INT64(0);
	run_id = PG_GETARG_INT64(1);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "rungate.operation must return a composite type");
	natts = tupdesc->natts;
	if (natts != DETAIL_NATTS && natts != DETAIL_NATTS_WAITING)
		elog(ERROR, "rungate.run_detail has %d attributes, expected %d",
			 natts, DETAIL_NATTS_WAITING);
	tupdesc = BlessTupleDesc(tupdesc);

	SPI_connect();

	args[0] = Int64GetDatum(viewer_id);
	args[1] = Int64GetDatum(run_id);
	rg_exec(&detail_plan, args, NULL, false, 1);

	/* Missing and out of scope are the same answer. */
	if (SPI_processed == 0 || !rg_get_bool(0, DETAIL_NATTS + 1, &isnull) || isnull)
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("run " INT64_FORMAT " not found", run_id)));
	if (!rg_get_bool(0, DETAIL_NATTS + 2, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_RG_FORBIDDEN),
				 errmsg("actor " INT64_FORMAT " may not view run " INT64_FORMAT,
						viewer_id, run_id),
				 errdetail("The role of the membership that scopes the run does not grant operations.view.")));

	for (i = 0; i < DETAIL_NATTS; i++)
		values[i] = rg_get_datum(0, i + 1, &nulls[i]);
	if (natts == DETAIL_NATTS_WAITING)
	{
		/* why a queued run does not start now (flow.c); null otherwise */
		const char *waiting = NULL;
		char	   *status = rg_get_text(0, 7);

		if (strcmp(status, "queued") == 0)
		{
			bool		no_tenant;
			int64		tenant = rg_get_int64(0, 3, &no_tenant);
			TimestampTz run_at = DatumGetTimestampTz(rg_get_datum(0, DETAIL_NATTS + 3, NULL));
			SPITupleTable *detail = SPI_tuptable;

			waiting = rg_flow_waiting(rg_get_int64(0, 2, NULL), !no_tenant, tenant,
									  rg_get_text(0, 4), run_at);
			SPI_tuptable = detail;
		}
		nulls[DETAIL_NATTS] = waiting == NULL;
		values[DETAIL_NATTS] = waiting ? CStringGetTextDatum(waiting) : (Datum) 0;
	}

	/* SPI's memory is gone at SPI_finish: build the result in ours. */
	spi = MemoryContextSwitchTo(caller);
	flatten_values(SPI_tuptable->tupdesc, values, nulls, DETAIL_NATTS);
	tuple = heap_form_tuple(tupdesc, values, nulls);
	MemoryContextSwitchTo(spi);
	SPI_finish();

	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}
