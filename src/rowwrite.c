/*
 * rowwrite.c
 *     Single-row writes without a plan, for the hot paths: a claim starting
 *     its run, and audit rows. They go through the executor's single-row
 *     routines, the ones logical replication's apply uses, so constraints
 *     are checked, indexes maintained and every row trigger of the table
 *     fires (rungate's guards and any the user added), without the plan
 *     cache, portal and plan tree that an SPI statement sets up each time
 *     (docs/guarantees.md#atomic: the same rows an SQL statement would write).
 *
 * Owns the RgTable lookups (relation and column numbers by name, looked up
 * again after any change to the table), the executor state its writers
 * keep (CHECK constraints, indexes' IndexInfo, triggers' WHEN conditions,
 * built again after any change to the table or one of its indexes) and
 * RgWriter. Callers hold the write
 * gate; every value they write is theirs to get right, as in the SQL these
 * replace (defaults are not applied; identity "id" columns are).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/index.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "tcop/utility.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "rungate.h"

static RgTable *tables = NULL;	/* every RgTable looked up so far */

static void
tables_inval(Datum arg, Oid relid)
{
	RgTable    *t;
	int			i;

	for (t = tables; t != NULL; t = t->next)
	{
		if (!OidIsValid(relid) || t->relid == relid)
		{
			t->valid = false;
			t->ivalid = false;
		}
		for (i = 0; t->ivalid && i < t->nindexes; i++)
			if (t->index_oids[i] == relid)
				t->ivalid = false;
	}
}

/* t's relation and column numbers, current */
void
rg_table_lookup(RgTable *t)
{
	static bool callback_registered = false;
	AttrNumber	id;
	Relation	rel;
	int			i;

	if (t->valid)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(tables_inval, (Datum) 0);
		callback_registered = true;
	}
	if (!t->registered)
	{
		t->next = tables;
		tables = t;
		t->registered = true;
	}
	t->relid = rg_relid(t->name, false);
	for (i = 0; t->cols[i] != NULL; i++)
		t->att[i] = rg_attnum(t->relid, t->cols[i], false);
	t->ncols = i;
	t->idseq = InvalidOid;
	id = rg_attnum(t->relid, "id", true);
	rel = table_open(t->relid, AccessShareLock);
	if (id != InvalidAttrNumber &&
		TupleDescAttr(RelationGetDescr(rel), id - 1)->attidentity != '\0')
	{
		t->idseq = rg_identity_sequence(rel, id);
		t->idatt = id;
	}

	/*
	 * A row a writer inserts has nulls in the columns it does not set; an
	 * INSERT would give them their defaults, identities or generated values
	 * (or fail their NOT NULL).
	 */
	t->unlisted_filled = false;
	for (i = 0; i < RelationGetDescr(rel)->natts && !t->unlisted_filled; i++)
	{
		Form_pg_attribute a = TupleDescAttr(RelationGetDescr(rel), i);
		bool		listed = OidIsValid(t->idseq) && a->attnum == t->idatt;
		int			j;

		for (j = 0; !listed && j < t->ncols; j++)
			listed = t->att[j] == a->attnum;
		if (!listed && !a->attisdropped &&
			(a->attnotnull || a->atthasdef || a->attidentity != '\0' ||
			 a->attgenerated != '\0'))
			t->unlisted_filled = true;
	}

	table_close(rel, AccessShareLock);
	t->valid = true;
}

#define WHEN_MAX 16				/* trigger WHEN conditions kept per table */

/*
 * The executor state t keeps for its writers (rel: t, open), valid: dropped
 * (its memory going when this transaction ends, since a writer open now may
 * point into it) after an invalidation of the table or one of its indexes.
 * The CHECK constraints are prepared here; the indexes and the triggers'
 * WHEN conditions as writers meet them.
 */
static void
writer_cache_begin(RgTable *t, Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	MemoryContext old;
	int			i;

	if (t->ivalid && t->icxt != NULL)
		return;
	if (t->icxt != NULL)
		MemoryContextSetParent(t->icxt, TopTransactionContext);
	t->icxt = AllocSetContextCreate(CacheMemoryContext, "rungate writer state",
									(Size) 0, (Size) 1024, (Size) 8192);
	old = MemoryContextSwitchTo(t->icxt);
	t->nchecks = 0;
	t->checks = NULL;
	if (constr != NULL && constr->num_check > 0)
	{
		t->nchecks = constr->num_check;
		t->checks = palloc0(sizeof(ExprState *) * t->nchecks);

		/*
		 * Every enforced constraint, NOT VALID ones too: NOT VALID spares
		 * only the rows that existed when it was added, and the executor
		 * checks new row versions against it as against any other; it skips
		 * those declared NOT ENFORCED (18).
		 */
		for (i = 0; i < t->nchecks; i++)
			if (rg_check_enforced(&constr->check[i]))
				t->checks[i] = ExecInitExpr(expression_planner((Expr *) stringToNode(constr->check[i].ccbin)),
											NULL);
	}
	MemoryContextSwitchTo(old);
	t->nindexes = -1;			/* not listed yet */
	t->index_oids = NULL;
	t->index_info = NULL;
	t->nwhens = 0;
	t->when_oids = MemoryContextAlloc(t->icxt, sizeof(Oid) * WHEN_MAX);
	t->when_texts = MemoryContextAlloc(t->icxt, sizeof(char *) * WHEN_MAX);
	t->whens = MemoryContextAlloc(t->icxt, sizeof(ExprState *) * WHEN_MAX);
	t->ivalid = true;
}

/* Start t's list of index infos for rel's indexes oids, unless it is that. */
static void
index_infos_begin(RgTable *t, Relation rel, List *oids)
{
	ListCell   *lc;
	int			i = 0;

	if (t->nindexes >= 0)
	{
		if (t->nindexes == list_length(oids))
		{
			foreach(lc, oids)
				if (t->index_oids[i++] != lfirst_oid(lc))
					break;
			if (lc == NULL)
				return;
		}
		/* changed without an invalidation seen: start the whole cache over */
		t->ivalid = false;
		writer_cache_begin(t, rel);
	}
	t->nindexes = list_length(oids);
	t->index_oids = MemoryContextAlloc(t->icxt, sizeof(Oid) * t->nindexes);
	t->index_info = MemoryContextAllocZero(t->icxt, sizeof(IndexInfo *) * t->nindexes);
	i = 0;
	foreach(lc, oids)
		t->index_oids[i++] = lfirst_oid(lc);
}

/*
 * The IndexInfo of index idx, the i-th of t: a copy of the one kept, with
 * what the executor sets per statement cleared; built for this writer
 * alone when none can be kept. Kept: a B-tree index without expressions,
 * its partial-index predicate planned and prepared once. ExecOpenIndices
 * copies and plans every predicate again for every statement: a sixth of
 * a claim's work with rungate.runs' eight partial indexes. Expressions and
 * other access methods keep state of a statement in their IndexInfo
 * (ii_ExpressionsState, ii_AmCache), so they are not kept.
 */
static IndexInfo *
index_info(RgTable *t, int i, Relation idx)
{
	IndexInfo  *ii;

	if (t->ivalid && t->index_info[i] == NULL &&
		idx->rd_rel->relam == BTREE_AM_OID &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL))
	{
		MemoryContext old = MemoryContextSwitchTo(t->icxt);

		ii = BuildIndexInfo(idx);
		if (ii->ii_Predicate != NIL)
			ii->ii_PredicateState =
				ExecInitQual((List *) expression_planner((Expr *) ii->ii_Predicate), NULL);
		MemoryContextSwitchTo(old);
		t->index_info[i] = ii;
	}
	if (!t->ivalid || t->index_info[i] == NULL)
		return BuildIndexInfo(idx);
	ii = palloc(sizeof(IndexInfo));
	memcpy(ii, t->index_info[i], sizeof(IndexInfo));
	ii->ii_CheckedUnchanged = false;
	ii->ii_IndexUnchanged = false;
	ii->ii_AmCache = NULL;
	ii->ii_Context = CurrentMemoryContext;
	return ii;
}

/* ExecOpenIndices(rri, false), with the index infos t keeps */
static void
open_indexes(RgTable *t, ResultRelInfo *rri)
{
	Relation	rel = rri->ri_RelationDesc;
	List	   *oids;
	ListCell   *lc;
	int			n;
	int			i = 0;

	rri->ri_NumIndices = 0;
	if (!rel->rd_rel->relhasindex)
		return;
	oids = RelationGetIndexList(rel);
	n = list_length(oids);
	if (n == 0)
		return;
	index_infos_begin(t, rel, oids);
	rri->ri_IndexRelationDescs = palloc(sizeof(Relation) * n);
	rri->ri_IndexRelationInfo = palloc(sizeof(IndexInfo *) * n);
	rri->ri_NumIndices = n;
	foreach(lc, oids)
	{
		/* opening it may bring an invalidation: t->ivalid says */
		Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);

		rri->ri_IndexRelationDescs[i] = idx;
		rri->ri_IndexRelationInfo[i] = index_info(t, i, idx);
		i++;
	}
	list_free(oids);
}

/*
 * The WHEN conditions of the table's triggers, prepared once: TriggerEnabled
 * parses, plans and prepares each again for every statement that fires it
 * (a claim fires three). A condition is kept by its trigger's oid and text,
 * so a trigger replaced with another condition gets its own; beyond
 * WHEN_MAX, TriggerEnabled prepares the rest as usual.
 */
static void
trigger_whens(RgTable *t, ResultRelInfo *rri)
{
	TriggerDesc *td = rri->ri_TrigDesc;
	int			i;

	/* an invalidation while the indexes opened: TriggerEnabled's way this once */
	if (td == NULL || !t->ivalid)
		return;
	for (i = 0; i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];
		int			k;

		if (tg->tgqual == NULL)
			continue;
		for (k = 0; k < t->nwhens; k++)
			if (t->when_oids[k] == tg->tgoid && strcmp(t->when_texts[k], tg->tgqual) == 0)
				break;
		if (k == t->nwhens)
		{
			MemoryContext old;

			if (t->nwhens == WHEN_MAX)
				continue;
			old = MemoryContextSwitchTo(t->icxt);
			t->whens[k] = ExecInitQual((List *) expression_planner((Expr *)
																  rg_trigger_when_qual(rri->ri_RelationDesc, tg->tgqual)),
									   NULL);
			t->when_oids[k] = tg->tgoid;
			t->when_texts[k] = pstrdup(tg->tgqual);
			t->nwhens++;
			MemoryContextSwitchTo(old);
		}
		rri->ri_TrigWhenExprs[i] = t->whens[k];
	}
}

/*
 * Open t for writing rows, in the current memory context: the executor
 * state of one table and one result relation, as an INSERT or UPDATE of it
 * would have, with AFTER triggers collected until rg_writer_close.
 */
void
rg_writer_open(RgWriter *w, RgTable *t, bool for_update)
{
	RangeTblEntry *rte;
	TupleDesc	desc;
	Bitmapset  *updated = NULL;
	int			i;

	/* the checks ExecutorStart makes for the statements a writer replaces */
	PreventCommandIfReadOnly(psprintf("a write to rungate.%s", t->name));
	PreventCommandIfParallelMode(psprintf("a write to rungate.%s", t->name));
	rg_table_lookup(t);
	/* a subscriber's sequences lag until rungate.sync_sequences() */
	if (OidIsValid(t->idseq))
		rg_require_synced_sequences();
	memset(w, 0, sizeof(*w));
	w->t = t;
	w->rel = table_open(t->relid, RowExclusiveLock);
	/* the lock may have brought news of a change to the table */
	rg_table_lookup(t);
	if (RelationGetRelid(w->rel) != t->relid)
		elog(ERROR, "rungate: table rungate.%s was replaced while in use", t->name);
	desc = RelationGetDescr(w->rel);
	w->estate = CreateExecutorState();

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = t->relid;
	rte->relkind = w->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	for (i = t->nkeys; for_update && i < t->ncols; i++)
		updated = bms_add_member(updated,
								 t->att[i] - FirstLowInvalidHeapAttributeNumber);
	rg_init_range_table(w->estate, rte, updated);

	w->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(w->rri, w->rel, 1, NULL, 0);
	/* where ExecGetTriggerResultRel looks for it */
	w->estate->es_opened_result_relations =
		lappend(w->estate->es_opened_result_relations, w->rri);
	w->estate->es_output_cid = GetCurrentCommandId(true);
	w->estate->es_snapshot = GetActiveSnapshot();
	writer_cache_begin(t, w->rel);
	open_indexes(t, w->rri);
	trigger_whens(t, w->rri);
	/* the constraints' expression states kept (else the executor's own) */
	if (t->ivalid && t->nchecks > 0 && desc->constr != NULL &&
		desc->constr->num_check == t->nchecks)
	{
		RG_RRI_CHECK_EXPRS(w->rri) = palloc(sizeof(ExprState *) * t->nchecks);
		memcpy(RG_RRI_CHECK_EXPRS(w->rri), t->checks, sizeof(ExprState *) * t->nchecks);
	}
	rg_epq_init(&w->epq, w->estate);
	w->slot = ExecInitExtraTupleSlot(w->estate, desc, &TTSOpsVirtual);
	if (for_update)
		w->old = ExecInitExtraTupleSlot(w->estate, desc, table_slot_callbacks(w->rel));
	AfterTriggerBeginQuery();
}

/* Fire the AFTER triggers of the rows written and release everything. */
void
rg_writer_close(RgWriter *w)
{
	AfterTriggerEndQuery(w->estate);
	EvalPlanQualEnd(&w->epq);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	ExecCloseResultRelations(w->estate);
	FreeExecutorState(w->estate);
	table_close(w->rel, NoLock);
	/* what follows sees these rows, as after a statement */
	CommandCounterIncrement();
}

/*
 * The executor's insert of one row. On a subscriber whose sequences lag,
 * the id may be one a copied row holds: replication.c says so (RG409).
 */
static void
simple_insert(RgWriter *w, TupleTableSlot *slot)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		ExecSimpleRelationInsert(w->rri, w->estate, slot);
	}
	PG_CATCH();
	{
		rg_rethrow_write_error(cxt);
	}
	PG_END_TRY();
}

/*
 * Insert a row whose columns t->cols[i] are values[i] (nulls[i]); the rest
 * are null, but an identity "id", which takes its sequence's next value.
 * Returns that id (0 without one).
 */
int64
rg_writer_insert(RgWriter *w, const Datum *values, const bool *nulls)
{
	TupleTableSlot *slot = w->slot;
	RgTable    *t = w->t;
	int64		id = 0;
	int			i;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (i = 0; i < t->ncols; i++)
	{
		slot->tts_values[t->att[i] - 1] = values[i];
		slot->tts_isnull[t->att[i] - 1] = nulls[i];
	}
	if (OidIsValid(t->idseq))
	{
		id = nextval_internal(t->idseq, false);
		slot->tts_values[t->idatt - 1] = Int64GetDatum(id);
		slot->tts_isnull[t->idatt - 1] = false;
	}
	ExecStoreVirtualTuple(slot);
	simple_insert(w, slot);
	/* the table AM sets where the row went; a BEFORE trigger may skip it */
	if (!ItemPointerIsValid(&slot->tts_tid))
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("a row of rungate.%s was not written: a BEFORE trigger skipped it",
						t->name),
				 errdetail("rungate writes its audit rows and notifications with every status change; a trigger may change them, not skip them.")));
	return id;
}

/*
 * Load the row version at tid (one the caller holds locked) for an update:
 * rg_writer_old reads its columns, rg_writer_update replaces it.
 */
void
rg_writer_fetch(RgWriter *w, ItemPointer tid)
{
	if (!table_tuple_fetch_row_version(w->rel, tid, SnapshotAny, w->old))
		elog(ERROR, "rungate: no row version at (%u,%u) of rungate.%s",
			 ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid),
			 w->t->name);
	slot_getallattrs(w->old);
}

/* Column t->cols[col] of the row fetched. */
Datum
rg_writer_old(RgWriter *w, int col, bool *isnull)
{
	AttrNumber	att = w->t->att[col];

	*isnull = w->old->tts_isnull[att - 1];
	return w->old->tts_values[att - 1];
}

/*
 * Update the row fetched: columns t->cols[i] with change[i] set become
 * values[i] (nulls[i]), the others stay.
 */
void
rg_writer_update(RgWriter *w, const bool *change, const Datum *values,
				 const bool *nulls)
{
	TupleTableSlot *slot = w->slot;
	int			natts = slot->tts_tupleDescriptor->natts;
	RgTable    *t = w->t;
	int			i;

	ExecClearTuple(slot);
	memcpy(slot->tts_values, w->old->tts_values, sizeof(Datum) * natts);
	memcpy(slot->tts_isnull, w->old->tts_isnull, sizeof(bool) * natts);
	for (i = 0; i < t->ncols; i++)
		if (change[i])
		{
			slot->tts_values[t->att[i] - 1] = values[i];
			slot->tts_isnull[t->att[i] - 1] = nulls[i];
		}
	ExecStoreVirtualTuple(slot);
	ExecSimpleRelationUpdate(w->rri, w->estate, &w->epq, w->old, slot);
	if (!ItemPointerIsValid(&slot->tts_tid))
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("a row of rungate.%s was not updated: a BEFORE trigger skipped it",
						t->name)));
}

/*
 * Lock for an update the current version of the row whose bigint primary
 * key (t->cols[0]) is key, as SELECT ... FOR NO KEY UPDATE would in READ
 * COMMITTED: found on the latest snapshot, waiting for a lock holder and
 * following its update to the newest version. Loads it like
 * rg_writer_fetch. False when there is none, or it was deleted, or this
 * transaction already changed it (the caller's SQL says why).
 */
bool
rg_writer_lock(RgWriter *w, int64 key)
{
	Oid			pk = rg_primary_key_index(w->rel);
	ScanKeyData sk;
	SysScanDesc scan;
	HeapTuple	tup;
	ItemPointerData tid;
	Snapshot	snap;
	TM_FailureData tmfd;
	bool		found;

	if (!OidIsValid(pk))
		elog(ERROR, "rungate: table rungate.%s has no primary key", w->t->name);
	ScanKeyInit(&sk, w->t->att[0], BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(key));
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = systable_beginscan(w->rel, pk, true, snap, 1, &sk);
	tup = systable_getnext(scan);
	found = tup != NULL;
	if (found)
		tid = tup->t_self;
	systable_endscan(scan);
	if (found)
		found = table_tuple_lock(w->rel, &tid, snap, w->old,
								 w->estate->es_output_cid,
								 LockTupleNoKeyExclusive, LockWaitBlock,
								 TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
								 &tmfd) == TM_Ok;
	UnregisterSnapshot(snap);
	if (found)
		slot_getallattrs(w->old);
	return found;
}

/* Column t->cols[col] of the row as written by rg_writer_update. */
Datum
rg_writer_new(RgWriter *w, int col, bool *isnull)
{
	AttrNumber	att = w->t->att[col];

	*isnull = w->slot->tts_isnull[att - 1];
	return w->slot->tts_values[att - 1];
}
