/*
 * monitoring.c
 *     The canonical operations surfaces (docs/guarantees.md#monitoring,
 *     #blocked-not-failed): rungate.operations(),
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
 * query takes a fresh snapshot, like every other rungate read), and since
 * 1.7 the list's page is read by index scans of its own, on a snapshot of
 * its own (below, "The page in C"): what a page costs follows what the
 * viewer may see, not the size of the workspace. Statuses and reasons are
 * returned as stored; a blocked run is never presented as failed, and
 * nothing is synthesized.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/binaryheap.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "rungate.h"
#include "runstatus.h"

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
#define SUMMARY_AUTHORITY 4		/* 0-based: computed from initiator_id */
#define SUMMARY_INITIATOR 5
#define DETAIL_NATTS 20			/* before 1.6 */
#define DETAIL_NATTS_WAITING 21 /* 1.6: ... waiting */

/* ----------------------------------------------------------------------
 * rungate.operations
 * ---------------------------------------------------------------------- */

/*
 * The viewer's scope in a workspace (and in the filtered tenant), in one
 * row; no row when the actor does not exist. The last two columns are what
 * the page in C reads: the tenants the viewer may see, and whether it may
 * see every run of the workspace.
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
	"                  AND rc.capability" EQ VIEW_CAP "),"
	/* the tenants whose runs the viewer may see, wherever they are now */
	"       ARRAY(SELECT tm3.tenant_id FROM rungate.tenant_members tm3"
	"               JOIN rungate.role_capabilities rc ON rc.role" EQ "tm3.role"
	"              WHERE tm3.actor_id" EQ "a.id AND rc.capability" EQ VIEW_CAP
	"              ORDER BY 1),"
	/* the workspace membership grants the view and so does every tenant's */
	"       CASE WHEN EXISTS (SELECT 1 FROM rungate.role_capabilities rc"
	"                          WHERE rc.role" EQ "wm.role AND rc.capability" EQ VIEW_CAP ")"
	"            THEN (SELECT pg_catalog.count(*) FROM rungate.tenants t3"
	"                   WHERE t3.workspace_id" EQ "$2)"
	"               " EQ "(SELECT pg_catalog.count(*) FROM rungate.tenant_members tm4"
	"                      JOIN rungate.tenants t4 ON t4.id" EQ "tm4.tenant_id"
	"                      JOIN rungate.role_capabilities rc ON rc.role" EQ "tm4.role"
	"                     WHERE tm4.actor_id" EQ "a.id AND t4.workspace_id" EQ "$2"
	"                       AND rc.capability" EQ VIEW_CAP ")"
	"            ELSE false END"
	"  FROM rungate.actors a"
	"  LEFT JOIN rungate.workspace_members wm"
	"         ON wm.workspace_id" EQ "$2 AND wm.actor_id" EQ "a.id"
	"  LEFT JOIN rungate.tenants t ON t.id" EQ "$3"
	"  LEFT JOIN rungate.tenant_members tm"
	"         ON tm.tenant_id" EQ "$3 AND tm.actor_id" EQ "a.id"
	" WHERE a.id" EQ "$1",
	3, {INT8OID, INT8OID, INT8OID}, NULL, false
};

enum
{
	S_ACTIVE = 1, S_WS_MEMBER, S_WS_VIEW, S_TENANT_MEMBER, S_TENANT_VIEW,
	S_ANY_TENANT_VIEW, S_VIEW_TENANTS, S_SEES_ALL
};

/*
 * The page itself, on schemas before 1.7 (without runs_tenant_status_idx;
 * since 1.7 it is read in C, below). The four filter combinations each get
 * their own kept plan, so that each generic plan can use its index: (workspace_id, id),
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
#define LIST_ARGS 7, {INT8OID, INT8OID, INT8OID, BOOLOID, INT8OID, TEXTOID, INT8OID}, NULL, false

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

static bool
valid_status(const char *status)
{
	return rg_status_of(status) != RG_NO_STATUS;
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

/* ----------------------------------------------------------------------
 * The page in C (1.7): one index scan per source, merged newest first
 * ---------------------------------------------------------------------- */

/*
 * Since 1.7 the page is read here, not by the plans above, so that its cost
 * follows what the viewer may see and not the size of the workspace. A
 * source is a range of one btree of rungate.runs whose entries come in id
 * order, walked backward from before_id:
 *
 *   runs_tenant_status_idx (tenant_id, status, workspace_id, id):
 *       (tenant, status, workspace), and (NULL, status, workspace) for the
 *       workspace's runs without a tenant (btree keeps NULLs; IS NULL is a
 *       key like =);
 *   runs_workspace_status_idx (workspace_id, status, id): (workspace,
 *       status).
 *
 * There is a source per status: the seven, or the one of the status
 * filter. The viewer's page merges
 *
 *   - with a tenant filter: that tenant's sources;
 *   - when the viewer may see every run of the workspace (its workspace
 *     membership and the membership on each of the workspace's tenants
 *     grant operations.view): the workspace's sources ("the walk");
 *   - else: the sources of each tenant whose membership grants the view,
 *     wherever the tenant is now (a tenant moved to another workspace
 *     leaves its runs where they were, and LIST_VISIBLE shows them), and
 *     the tenantless sources when the workspace membership grants it.
 *
 * Each row is fetched once it is the newest head of all sources, checked
 * against the visibility rule (the walk meets the runs of tenants the
 * viewer is no member of only when a tenant moved away; the other cases
 * never), and emitted until max_rows. The cost is one descent per source
 * plus the rows of the page and the dead or invisible entries among them:
 * the runs of tenants the viewer may not see are never read.
 *
 * A source reads its entries (id and heap TID, from the index tuple) in
 * batches, doubling, so that thousands of sources cost a little memory
 * each and a scan descriptor per index in all. Rows are fetched with an
 * MVCC snapshot taken for the page, as the plans' statement would: a TID
 * read before is safe, since VACUUM frees none whose row the snapshot may
 * still see. Two entries of one run (an update that made a new version)
 * are fetched both; the snapshot sees at most one of them.
 */
#define PAGE_INDEX "runs_tenant_status_idx"
#define WALK_INDEX "runs_workspace_status_idx"
#define PAGE_BATCH_MAX 4096

static RgTable page_table = {
	.name = "runs",
	.cols = {"id", "workspace_id", "tenant_id", "operation", "initiator_id",
		"status", "reason_code", "reason_category", "reason_message", "error",
	"attempt", "parent_id", "created_at", "started_at", "finished_at"},
	.nkeys = 1
};

enum
{
	PT_ID, PT_WORKSPACE, PT_TENANT, PT_OPERATION, PT_INITIATOR, PT_STATUS,
	PT_REASON_CODE, PT_REASON_CATEGORY, PT_REASON_MESSAGE, PT_ERROR,
	PT_ATTEMPT, PT_PARENT, PT_CREATED, PT_STARTED, PT_FINISHED
};

/* run_summary's columns from page_table's (-1: authority, computed) */
static const int summary_from[SUMMARY_NATTS] = {
	PT_ID, PT_WORKSPACE, PT_TENANT, PT_OPERATION, -1, PT_INITIATOR, PT_STATUS,
	PT_REASON_CODE, PT_REASON_CATEGORY, PT_REASON_MESSAGE, PT_ERROR,
	PT_ATTEMPT, PT_PARENT, PT_CREATED, PT_STARTED, PT_FINISHED
};

typedef struct PageEntry
{
	int64		id;
	ItemPointerData tid;
} PageEntry;

typedef struct PageSource
{
	bool		walk;			/* runs_workspace_status_idx, else the tenant index */
	bool		tenantless;		/* tenant index: tenant_id IS NULL */
	int64		tenant_id;		/* tenant index, !tenantless */
	int			status;			/* RgStatus, or -1: every status */
	int64		below;			/* the next batch: ids below this */
	bool		done;			/* no entries past the batch */
	int			want;			/* entries of the next batch */
	int			n;				/* entries of the batch */
	int			pos;			/* the head: buf[pos] */
	int			cap;
	PageEntry  *buf;
} PageSource;

typedef struct PageRead
{
	Relation	rel;
	Relation	tidx;			/* runs_tenant_status_idx */
	Relation	widx;			/* runs_workspace_status_idx */
	IndexScanDesc tscan;
	IndexScanDesc wscan;
	Snapshot	snap;
	int64		workspace_id;
	Datum		status_text[RG_NSTATUSES];
	PageSource *src;
	int			nsrc;
} PageRead;

/*
 * The btree of rungate.runs named name (InvalidOid when there is none),
 * checked to be on the columns cols (page_table's PT_*), ascending, over
 * every row, and valid: the merge relies on that order.
 */
static Oid
page_index(Relation rel, const char *name, const int *cols, int ncols)
{
	Oid			oid = get_relname_relid(name, RelationGetNamespace(rel));
	Relation	idx;
	Form_pg_index ix;
	bool		ok;
	int			i;

	if (!OidIsValid(oid))
		return InvalidOid;
	idx = index_open(oid, AccessShareLock);
	ix = idx->rd_index;
	ok = ix->indrelid == RelationGetRelid(rel) && ix->indnkeyatts == ncols &&
		idx->rd_rel->relam == BTREE_AM_OID && ix->indisvalid &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL);
	for (i = 0; ok && i < ncols; i++)
		ok = ix->indkey.values[i] == page_table.att[cols[i]] &&
			(idx->rd_indoption[i] & INDOPTION_DESC) == 0;
	index_close(idx, AccessShareLock);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index rungate.%s is not the operations order", name),
				 errdetail("rungate.operations needs a valid btree on rungate.runs over all rows, ascending."),
				 errhint("Recreate the extension's index.")));
	return oid;
}

/* Read src's next batch; false when there is none. */
static bool
page_fill(PageRead *pr, PageSource *src)
{
	IndexScanDesc scan = src->walk ? pr->wscan : pr->tscan;
	Relation	idx = src->walk ? pr->widx : pr->tidx;
	ScanKeyData keys[4];
	int			nkeys = 0;
	int			status_col = 2;	/* in both indexes */
	int			id_col = src->walk ? 3 : 4;
	ItemPointer tid;

	if (src->done)
		return false;
	if (src->walk)
		ScanKeyInit(&keys[nkeys++], 1, BTEqualStrategyNumber, F_INT8EQ,
					Int64GetDatum(pr->workspace_id));
	else if (src->tenantless)
		ScanKeyEntryInitialize(&keys[nkeys++], SK_ISNULL | SK_SEARCHNULL, 1,
							   InvalidStrategy, InvalidOid, InvalidOid,
							   InvalidOid, (Datum) 0);
	else
		ScanKeyInit(&keys[nkeys++], 1, BTEqualStrategyNumber, F_INT8EQ,
					Int64GetDatum(src->tenant_id));
	ScanKeyEntryInitialize(&keys[nkeys++], 0, status_col, BTEqualStrategyNumber,
						   InvalidOid, idx->rd_indcollation[status_col - 1],
						   F_TEXTEQ, pr->status_text[src->status]);
	if (!src->walk)
		ScanKeyInit(&keys[nkeys++], 3, BTEqualStrategyNumber, F_INT8EQ,
					Int64GetDatum(pr->workspace_id));
	ScanKeyInit(&keys[nkeys++], id_col, BTLessStrategyNumber, F_INT8LT,
				Int64GetDatum(src->below));
	index_rescan(scan, keys, nkeys, NULL, 0);

	/*
	 * want entries, and past them the others of the last id (two versions
	 * of a run): the next batch starts below it. The entry that ends the
	 * batch is read again by the next one.
	 */
	src->n = 0;
	src->pos = 0;
	src->done = true;
	while ((tid = index_getnext_tid(scan, BackwardScanDirection)) != NULL)
	{
		bool		isnull;
		int64		id = DatumGetInt64(index_getattr(scan->xs_itup, id_col,
													 scan->xs_itupdesc, &isnull));

		CHECK_FOR_INTERRUPTS();
		if (src->n >= src->want && id != src->buf[src->n - 1].id)
		{
			src->done = false;
			break;
		}
		if (src->n == src->cap)
		{
			src->cap *= 2;
			src->buf = repalloc(src->buf, sizeof(PageEntry) * src->cap);
		}
		src->buf[src->n].id = id;
		src->buf[src->n].tid = *tid;
		src->n++;
	}
	if (src->n == 0)
	{
		src->done = true;
		return false;
	}
	src->below = src->buf[src->n - 1].id;
	if (src->want < PAGE_BATCH_MAX)
		src->want *= 2;
	return true;
}

/* binaryheap order: the source with the newest head first */
static int
page_newer(Datum a, Datum b, void *arg)
{
	PageRead   *pr = (PageRead *) arg;
	PageSource *x = &pr->src[DatumGetInt32(a)];
	PageSource *y = &pr->src[DatumGetInt32(b)];
	int64		ix = x->buf[x->pos].id;
	int64		iy = y->buf[y->pos].id;

	return ix > iy ? 1 : (ix < iy ? -1 : 0);
}

static void
page_add_sources(PageRead *pr, bool walk, bool tenantless, int64 tenant_id,
				 int status)
{
	int			s;

	for (s = 0; s < RG_NSTATUSES; s++)
	{
		PageSource *src;

		if (status >= 0 && s != status)
			continue;
		src = &pr->src[pr->nsrc++];
		src->walk = walk;
		src->tenantless = tenantless;
		src->tenant_id = tenant_id;
		src->status = s;
	}
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x > y ? 1 : (x < y ? -1 : 0);
}

/* The tenants of an int8[] (the scope's S_VIEW_TENANTS), ascending, once each. */
static int64 *
view_tenants(Datum array, int *ntenants)
{
	ArrayType  *arr = DatumGetArrayTypeP(array);
	Datum	   *elems;
	int64	   *tenants;
	int			n;
	int			i;
	int			k = 0;

	deconstruct_array(arr, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, NULL, &n);
	tenants = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
		tenants[i] = DatumGetInt64(elems[i]);
	qsort(tenants, n, sizeof(int64), cmp_int64);
	for (i = 0; i < n; i++)
		if (k == 0 || tenants[k - 1] != tenants[i])
			tenants[k++] = tenants[i];
	*ntenants = k;
	return tenants;
}

/* status's place in rg_status_names (a valid status) */
static int
status_index(const char *status)
{
	RgStatus	st = rg_status_of(status);

	if (st == RG_NO_STATUS)
		elog(ERROR, "rungate: unknown run status \"%s\"", status);
	return (int) st;
}

/*
 * What the viewer may see and asked for (LIST_VISIBLE and the filters):
 * pass the checks of rg_operations.
 */
typedef struct PageView
{
	int64		workspace_id;
	bool		ws_view;		/* the tenantless runs */
	int64	   *tenants;		/* visible tenants, ascending */
	int			ntenants;
	bool		sees_all;		/* every run of the workspace */
	bool		has_tenant;		/* the tenant filter */
	int64		tenant_id;
	int			status;			/* the status filter, -1: none */
	int64		before_id;
	int32		max_rows;
} PageView;

static bool
page_visible(const PageView *v, bool no_tenant, int64 tenant_id)
{
	if (no_tenant)
		return v->ws_view && !v->has_tenant;
	if (v->has_tenant && tenant_id != v->tenant_id)
		return false;
	return bsearch(&tenant_id, v->tenants, v->ntenants, sizeof(int64),
				   cmp_int64) != NULL;
}

/*
 * Put the page of v into rsinfo's tuplestore. tidx_oid is
 * runs_tenant_status_idx; rel is rungate.runs, locked.
 */
static void
page_read(ReturnSetInfo *rsinfo, Relation rel, Oid tidx_oid, const PageView *v)
{
	static const int walk_cols[] = {PT_WORKSPACE, PT_STATUS, PT_ID};
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "rungate operations page",
											  (Size) 0, (Size) 8192, (Size) 8388608);
	MemoryContext rowcxt = AllocSetContextCreate(cxt, "rungate operations row",
												 (Size) 0, (Size) 1024, (Size) 8192);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TupleDesc	heapdesc = RelationGetDescr(rel);
	PageRead	pr;
	IndexFetchTableData *fetch;
	TupleTableSlot *slot;
	binaryheap *heap;
	Datum		actor_text = CStringGetTextDatum("actor");
	Datum		system_text = CStringGetTextDatum("system");
	int			per_status = v->status >= 0 ? 1 : RG_NSTATUSES;
	int			want;
	int			emitted = 0;
	int			i;

	/* run_summary is what rungate.runs' columns make */
	for (i = 0; i < SUMMARY_NATTS; i++)
	{
		Oid			type = summary_from[i] < 0 ? TEXTOID :
			TupleDescAttr(heapdesc, page_table.att[summary_from[i]] - 1)->atttypid;

		if (TupleDescAttr(rsinfo->setDesc, i)->atttypid != type)
			elog(ERROR, "rungate.run_summary column %d is not of rungate.runs' type", i + 1);
	}

	memset(&pr, 0, sizeof(pr));
	pr.rel = rel;
	pr.workspace_id = v->workspace_id;
	for (i = 0; i < RG_NSTATUSES; i++)
		pr.status_text[i] = CStringGetTextDatum(rg_status_names[i]);
	pr.tidx = index_open(tidx_oid, AccessShareLock);
	{
		Oid			widx_oid = page_index(rel, WALK_INDEX, walk_cols, lengthof(walk_cols));

		if (!OidIsValid(widx_oid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("index rungate." WALK_INDEX " is missing"),
					 errhint("rungate.operations reads it; recreate the extension's index.")));
		pr.widx = index_open(widx_oid, AccessShareLock);
	}

	/* the sources */
	pr.src = palloc0(sizeof(PageSource) * per_status * (v->ntenants + 2));
	if (v->has_tenant)
		page_add_sources(&pr, false, false, v->tenant_id, v->status);
	else if (v->sees_all)
		page_add_sources(&pr, true, false, 0, v->status);
	else
	{
		for (i = 0; i < v->ntenants; i++)
			page_add_sources(&pr, false, false, v->tenants[i], v->status);
		if (v->ws_view)
			page_add_sources(&pr, false, true, 0, v->status);
	}

	pr.snap = RegisterSnapshot(GetTransactionSnapshot());
	pr.tscan = rg_index_beginscan(rel, pr.tidx, pr.snap, 4, 0);
	pr.tscan->xs_want_itup = true;	/* ids from the entries */
	pr.wscan = rg_index_beginscan(rel, pr.widx, pr.snap, 3, 0);
	pr.wscan->xs_want_itup = true;
	fetch = rg_table_index_fetch_begin(rel);
	slot = table_slot_create(rel, NULL);

	/* the first batch: a share of the page each, at least a few entries */
	want = Max(4, Min(v->max_rows, v->max_rows / Max(pr.nsrc, 1) + 1));
	heap = binaryheap_allocate(Max(pr.nsrc, 1), page_newer, &pr);
	for (i = 0; i < pr.nsrc; i++)
	{
		PageSource *src = &pr.src[i];

		src->below = v->before_id;
		src->want = want;
		src->cap = want + 1;
		src->buf = palloc(sizeof(PageEntry) * src->cap);
		if (page_fill(&pr, src))
			binaryheap_add_unordered(heap, Int32GetDatum(i));
	}
	binaryheap_build(heap);

	while (emitted < v->max_rows && !binaryheap_empty(heap))
	{
		int			k = DatumGetInt32(binaryheap_first(heap));
		PageSource *src = &pr.src[k];
		PageEntry  *e = &src->buf[src->pos];
		bool		call_again = false;
		bool		all_dead = false;

		CHECK_FOR_INTERRUPTS();
		if (table_index_fetch_tuple(fetch, &e->tid, pr.snap, slot,
									&call_again, &all_dead))
		{
			bool		isnull;
			bool		no_tenant;
			int64		id = DatumGetInt64(slot_getattr(slot, page_table.att[PT_ID], &isnull));
			int64		ws = DatumGetInt64(slot_getattr(slot, page_table.att[PT_WORKSPACE], &isnull));
			Datum		tenant = slot_getattr(slot, page_table.att[PT_TENANT], &no_tenant);

			/* counted as an index scan's heap fetch (idx_tup_fetch) */
			pgstat_count_heap_fetch(src->walk ? pr.widx : pr.tidx);

			if (id == e->id && ws == v->workspace_id &&
				page_visible(v, no_tenant, no_tenant ? 0 : DatumGetInt64(tenant)))
			{
				Datum		values[SUMMARY_NATTS];
				bool		nulls[SUMMARY_NATTS];
				MemoryContext outer = MemoryContextSwitchTo(rowcxt);

				slot_getallattrs(slot);
				for (i = 0; i < SUMMARY_NATTS; i++)
				{
					int			att = summary_from[i] < 0 ? -1 :
						page_table.att[summary_from[i]] - 1;

					if (att < 0)
						continue;
					values[i] = slot->tts_values[att];
					nulls[i] = slot->tts_isnull[att];
				}
				nulls[SUMMARY_AUTHORITY] = false;
				values[SUMMARY_AUTHORITY] = nulls[SUMMARY_INITIATOR] ? system_text : actor_text;
				flatten_values(rsinfo->setDesc, values, nulls, SUMMARY_NATTS);
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
				MemoryContextSwitchTo(outer);
				MemoryContextReset(rowcxt);
				if (++emitted == v->max_rows)
					break;		/* without reading past the page */
			}
		}

		/* the source's next head */
		if (++src->pos < src->n || page_fill(&pr, src))
			binaryheap_replace_first(heap, Int32GetDatum(k));
		else
			(void) binaryheap_remove_first(heap);
	}

	ExecDropSingleTupleTableSlot(slot);
	table_index_fetch_end(fetch);
	index_endscan(pr.tscan);
	index_endscan(pr.wscan);
	UnregisterSnapshot(pr.snap);
	index_close(pr.tidx, AccessShareLock);
	index_close(pr.widx, AccessShareLock);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
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
	static const int tenant_cols[] = {PT_TENANT, PT_STATUS, PT_WORKSPACE, PT_ID};
	Relation	rel;
	Oid			tidx;

	/* ---- arguments ---- */
	rg_require_arg(fcinfo, 0, "viewer_id");
	rg_require_arg(fcinfo, 1, "workspace_id");
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
	rg_require_arg(fcinfo, 4, "max_rows");
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

	/* ---- the page: in C since 1.7 ---- */
	rg_table_lookup(&page_table);
	rel = table_open(page_table.relid, AccessShareLock);
	tidx = page_index(rel, PAGE_INDEX, tenant_cols, lengthof(tenant_cols));
	if (OidIsValid(tidx))
	{
		PageView	v;

		v.tenants = view_tenants(rg_get_datum(0, S_VIEW_TENANTS, NULL), &v.ntenants);
		v.workspace_id = workspace_id;
		v.ws_view = ws_view;
		v.sees_all = rg_get_bool(0, S_SEES_ALL, NULL);
		v.has_tenant = has_tenant;
		v.tenant_id = tenant_id;
		v.status = status != NULL ? status_index(status) : -1;
		v.before_id = before_id;
		v.max_rows = max_rows;
		page_read(rsinfo, rel, tidx, &v);
		table_close(rel, AccessShareLock);
		SPI_finish();
		return (Datum) 0;
	}
	table_close(rel, AccessShareLock);

	/* before 1.7: the plans */
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
	2, {INT8OID, INT8OID}, NULL, false
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

	rg_require_arg(fcinfo, 0, "viewer_id");
	rg_require_arg(fcinfo, 1, "run_id");
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

		if (rg_status_of(status) == RG_QUEUED)
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
