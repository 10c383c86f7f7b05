/*
 * pg_compat.h
 *     The one place where rungate's C code meets the differences between
 *     PostgreSQL major versions. Every PG_VERSION_NUM test of the source is
 *     here; the .c files call the rg_* shims below (or the newest name of an
 *     API, which this header provides on older servers) and never test the
 *     version themselves.
 *
 * Supported: PostgreSQL 14 to 19. Compiled and tested (make test-matrix):
 * 15, 17, 18, 19. 14 and 16 go through the same shims, written from the
 * upstream API history: no server of theirs is at hand, so neither is
 * compiled nor run here. Each shim says in which version the API changed,
 * so that it can go when the oldest supported version passes that one.
 *
 * The shims are static inline: the call compiles to what the code would
 * have been with an #if at the call site.
 */
#ifndef RUNGATE_PG_COMPAT_H
#define RUNGATE_PG_COMPAT_H

#include "postgres.h"

#include "access/genam.h"
#include "access/tupdesc.h"
#include "catalog/dependency.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "rewrite/prs2lock.h"
#include "rewrite/rewriteHandler.h"
#include "rewrite/rewriteManip.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/tuplestore.h"
#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"	/* addRTEPermissionInfo */
#endif
#if PG_VERSION_NUM >= 190000
#include "access/tableam.h"		/* ScanOptions */
#endif

#if PG_VERSION_NUM < 140000
#error "rungate needs PostgreSQL 14 or later"
#endif

/* ---- extension start-up ---- */

/*
 * Shared memory is requested in shmem_request_hook from 15 on, and straight
 * from _PG_init before. rg_request_shmem installs request as that hook
 * (keeping the previous one in *prev, for request to call first) or, on 14,
 * calls it now (*prev stays NULL).
 */
#if PG_VERSION_NUM >= 150000
typedef shmem_request_hook_type rg_shmem_request_hook_type;
#else
typedef void (*rg_shmem_request_hook_type) (void);
#endif

static inline void
rg_request_shmem(rg_shmem_request_hook_type request, rg_shmem_request_hook_type *prev)
{
#if PG_VERSION_NUM >= 150000
	*prev = shmem_request_hook;
	shmem_request_hook = request;
#else
	*prev = NULL;
	request();
#endif
}

/* MarkGUCPrefixReserved: 15 (EmitWarningsOnPlaceholders before) */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* ---- functions returning sets ---- */

/*
 * A materialized SRF's tuplestore and descriptor in rsinfo:
 * InitMaterializedSRF from 15, the same contract spelled out for 14.
 */
static inline void
rg_materialize_srf(FunctionCallInfo fcinfo)
{
#if PG_VERSION_NUM >= 150000
	InitMaterializedSRF(fcinfo, 0);
#else
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;
	TupleDesc	tupdesc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->setDesc = CreateTupleDescCopy(tupdesc);
	MemoryContextSwitchTo(old);
#endif
}

/* the name the callers use */
#define RG_MATERIALIZE_SRF(fcinfo) rg_materialize_srf(fcinfo)

/* ---- SPI ---- */

/*
 * After SPI_commit/SPI_rollback in a procedure: 14 needs a new transaction
 * started explicitly; from 15 SPI_commit starts it (SPI_start_transaction
 * is a no-op kept for old callers).
 */
static inline void
rg_spi_start_transaction(void)
{
#if PG_VERSION_NUM < 150000
	SPI_start_transaction();
#endif
}

/* ---- relations and indexes ---- */

/*
 * The OID of rel's primary key index (InvalidOid without one). 18 added
 * deferrable_ok; false keeps what earlier versions return: no deferrable
 * primary key (rungate's are never deferrable).
 */
static inline Oid
rg_primary_key_index(Relation rel)
{
#if PG_VERSION_NUM >= 180000
	return RelationGetPrimaryKeyIndex(rel, false);
#else
	return RelationGetPrimaryKeyIndex(rel);
#endif
}

/*
 * The sequence of rel's identity column attnum (an error without one). 17
 * takes the Relation, earlier versions its OID.
 */
static inline Oid
rg_identity_sequence(Relation rel, AttrNumber attnum)
{
#if PG_VERSION_NUM >= 170000
	return getIdentitySequence(rel, attnum, false);
#else
	return getIdentitySequence(RelationGetRelid(rel), attnum, false);
#endif
}

/*
 * index_beginscan without instrumentation: 18 added the
 * IndexScanInstrumentation argument (NULL: none), 19 the table scan
 * options (SO_NONE: a plain scan).
 */
static inline IndexScanDesc
rg_index_beginscan(Relation heap, Relation index, Snapshot snapshot,
				   int nkeys, int norderbys)
{
#if PG_VERSION_NUM >= 190000
	return index_beginscan(heap, index, snapshot, NULL, nkeys, norderbys, SO_NONE);
#elif PG_VERSION_NUM >= 180000
	return index_beginscan(heap, index, snapshot, NULL, nkeys, norderbys);
#else
	return index_beginscan(heap, index, snapshot, nkeys, norderbys);
#endif
}

/* table_index_fetch_begin: 19 added the table scan options (SO_NONE). */
static inline IndexFetchTableData *
rg_table_index_fetch_begin(Relation rel)
{
#if PG_VERSION_NUM >= 190000
	return table_index_fetch_begin(rel, SO_NONE);
#else
	return table_index_fetch_begin(rel);
#endif
}

/* ---- the executor's single-row writes (rowwrite.c) ---- */

/*
 * estate's range table: the one relation of rte, as range table index 1,
 * with updatedCols the columns an UPDATE sets (NULL for an INSERT). 16
 * moved the permission fields out of the RangeTblEntry into an
 * RTEPermissionInfo; 18 takes the set of unpruned relations (all: {1}).
 */
static inline void
rg_init_range_table(EState *estate, RangeTblEntry *rte, Bitmapset *updatedCols)
{
#if PG_VERSION_NUM >= 160000
	List	   *perminfos = NIL;

	addRTEPermissionInfo(&perminfos, rte)->updatedCols = updatedCols;
#if PG_VERSION_NUM >= 180000
	ExecInitRangeTable(estate, list_make1(rte), perminfos, bms_make_singleton(1));
#else
	ExecInitRangeTable(estate, list_make1(rte), perminfos);
#endif
#else
	rte->updatedCols = updatedCols;
	ExecInitRangeTable(estate, list_make1(rte));
#endif
}

/*
 * An EvalPlanQual state with no plan, for ExecSimpleRelationUpdate. 16
 * added the result relations argument (NIL: none to recheck).
 */
static inline void
rg_epq_init(EPQState *epq, EState *estate)
{
#if PG_VERSION_NUM >= 160000
	EvalPlanQualInit(epq, estate, NULL, NIL, -1, NIL);
#else
	EvalPlanQualInit(epq, estate, NULL, NIL, -1);
#endif
}

/*
 * The CHECK constraints' expression states of a result relation, one per
 * TupleConstr check[] entry (NULL: not evaluated): ri_ConstraintExprs,
 * renamed ri_CheckConstraintExprs in 18. An lvalue.
 */
#if PG_VERSION_NUM >= 180000
#define RG_RRI_CHECK_EXPRS(rri) ((rri)->ri_CheckConstraintExprs)
#else
#define RG_RRI_CHECK_EXPRS(rri) ((rri)->ri_ConstraintExprs)
#endif

/*
 * Whether the executor checks this CHECK constraint on the rows written:
 * every one before 18; from 18 those not declared NOT ENFORCED. (NOT VALID
 * ones are checked on new rows in every version.)
 */
static inline bool
rg_check_enforced(const ConstrCheck *check)
{
#if PG_VERSION_NUM >= 180000
	return check->ccenforced;
#else
	return true;
#endif
}

/*
 * A trigger's WHEN condition as TriggerEnabled prepares it for a result
 * relation: OLD and NEW as the inner and outer tuple, in implicit-AND form,
 * ready for ExecPrepareQual. 18 first expands virtual generated columns
 * (which 18 introduced) of both.
 */
static inline List *
rg_trigger_when_qual(Relation rel, const char *tgqual)
{
	Node	   *q = stringToNode(tgqual);

#if PG_VERSION_NUM >= 180000
	q = expand_generated_columns_in_expr(q, rel, PRS2_OLD_VARNO);
	q = expand_generated_columns_in_expr(q, rel, PRS2_NEW_VARNO);
#endif
	ChangeVarNodes(q, PRS2_OLD_VARNO, INNER_VAR, 0);
	ChangeVarNodes(q, PRS2_NEW_VARNO, OUTER_VAR, 0);
	return make_ands_implicit((Expr *) q);
}

#endif							/* RUNGATE_PG_COMPAT_H */
