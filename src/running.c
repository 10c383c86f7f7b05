/*
 * running.c
 *     Counting the running runs of one workspace or one tenant, for the
 *     concurrency limits of flow.c: a scan of (workspace_id, 'running') in
 *     rungate.runs_workspace_status_idx or of (tenant_id, 'running') in
 *     rungate.runs_tenant_status_idx (1.7), the operation and bulk parents
 *     told by the row.
 *
 * A kept SPI plan of the same count is planned once for every key, and with
 * few workspaces its generic plan scans every running run (runs_lease_idx):
 * a claim passing a full group would then cost as much as the database has
 * running runs. Here the key is always the index prefix.
 *
 * The count is taken on the latest snapshot, taken after the caller's lock
 * of the key, so it sees every start committed by the key's previous
 * holder, and this transaction's own starts (docs/guarantees.md#flow-control).
 * When an index is missing or not the expected btree (a 1.6 schema has no
 * runs_tenant_status_idx), rg_running_count returns -1 and flow.c counts
 * with SQL instead.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "rungate.h"
#include "runstatus.h"
#include "pg_compat.h"

typedef enum
{
	RC_STATUS,
	RC_OPERATION,
	RC_WORKSPACE,
	RC_TENANT,
	RC_ITEM_TENANTS,
	RC_NATTS
} RcAtt;

static const char *const rc_att_names[RC_NATTS] = {
	"status", "operation", "workspace_id", "tenant_id", "item_tenants"
};

static struct
{
	bool		valid;
	Oid			relid;
	Oid			ws_idx;			/* InvalidOid: not usable */
	Oid			tenant_idx;
	AttrNumber	att[RC_NATTS];
} rc;

static void
rc_inval(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == rc.relid || relid == rc.ws_idx ||
		relid == rc.tenant_idx)
		rc.valid = false;
}

/* name, if it is a valid btree whose first two keys are (lead, status) */
static Oid
usable_index(const char *name, AttrNumber lead)
{
	Oid			oid = rg_relid(name, true);
	Relation	idx;
	bool		ok;

	if (!OidIsValid(oid))
		return InvalidOid;
	idx = index_open(oid, AccessShareLock);
	ok = idx->rd_rel->relam == BTREE_AM_OID &&
		idx->rd_index->indisvalid &&
		idx->rd_index->indrelid == rc.relid &&
		IndexRelationGetNumberOfKeyAttributes(idx) >= 2 &&
		idx->rd_index->indkey.values[0] == lead &&
		idx->rd_index->indkey.values[1] == rc.att[RC_STATUS] &&
		RelationGetIndexPredicate(idx) == NIL;
	index_close(idx, AccessShareLock);
	return ok ? oid : InvalidOid;
}

static void
rc_lookup(void)
{
	static bool registered = false;
	int			i;

	if (!registered)
	{
		CacheRegisterRelcacheCallback(rc_inval, (Datum) 0);
		registered = true;
	}
	if (rc.valid)
		return;
	rc.relid = rg_relid("runs", false);
	for (i = 0; i < RC_NATTS; i++)
		rc.att[i] = rg_attnum(rc.relid, rc_att_names[i], false);
	rc.ws_idx = usable_index("runs_workspace_status_idx", rc.att[RC_WORKSPACE]);
	rc.tenant_idx = usable_index("runs_tenant_status_idx", rc.att[RC_TENANT]);
	rc.valid = true;
}

/*
 * The running runs of workspace (by_tenant false) or tenant id: of
 * operation, when not NULL; bulk parents never (their limits are their
 * items'). -1 when there is no usable index for it.
 */
int32
rg_running_count(bool by_tenant, int64 id, const char *operation)
{
	Relation	rel;
	Relation	idx;
	Oid			idxoid;
	Snapshot	snap;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData keys[2];
	size_t		oplen = operation ? strlen(operation) : 0;
	int32		n = 0;

	rc_lookup();
	idxoid = by_tenant ? rc.tenant_idx : rc.ws_idx;
	if (!OidIsValid(idxoid))
		return -1;

	rel = table_open(rc.relid, AccessShareLock);
	idx = index_open(idxoid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   idx->rd_indcollation[1], F_TEXTEQ,
						   CStringGetTextDatum(rg_status_name(RG_RUNNING)));
	scan = rg_index_beginscan(rel, idx, snap, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	slot = table_slot_create(rel, NULL);
	/*
	 * The visible version an entry leads to has the entry's keys (a HOT
	 * chain changes no indexed column): only the columns beyond them are
	 * read.
	 */
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;

		CHECK_FOR_INTERRUPTS();
		(void) slot_getattr(slot, rc.att[RC_ITEM_TENANTS], &isnull);
		if (!isnull)
			continue;			/* a bulk parent */
		if (operation != NULL)
		{
			d = slot_getattr(slot, rc.att[RC_OPERATION], &isnull);
			if (isnull || !rg_text_is(DatumGetTextPP(d), operation, oplen))
				continue;
		}
		n++;
	}
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	UnregisterSnapshot(snap);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return n;
}
