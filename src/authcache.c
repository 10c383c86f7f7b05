/*
 * authcache.c
 *     The authority cache: the facts the decision read (decision.c), kept by
 *     each backend for as long as no change to an authority table has
 *     committed since, and the shared generation that tells. Owns
 *     rungate.authority_cache() (this backend's view of it).
 *
 * Why it is exact (docs/guarantees.md#revocation-seen: a claim that begins after a revocation
 * has committed never starts a run the revocation makes illegitimate):
 *
 *   - Every change of an authority table fires rungate.note_authority_change()
 *     (triggers.c; ENABLE ALWAYS, so replication and restores fire it too),
 *     which marks this transaction.
 *   - A marked transaction adds one to the shared in-flight count and bumps
 *     the generation before its commit becomes visible (PRE_COMMIT), and
 *     takes the in-flight one back while bumping the generation again after
 *     it is visible (COMMIT, or ABORT), in one atomic add each time.
 *   - A decision uses cached facts only when, at its start, nothing is in
 *     flight and the generation is the one its facts were stored under.
 *     Facts are stored only under a generation read with nothing in flight,
 *     before the snapshot they were read on. So a commit visible before a
 *     decision starts has either finished (new generation: cache emptied) or
 *     is in flight (cache not used).
 *
 * A prepared transaction commits in whichever backend runs COMMIT PREPARED,
 * perhaps after a restart, without this transaction's callbacks: every
 * COMMIT PREPARED takes the same two marks around itself (a utility hook).
 *
 * The generation lives in shared memory, so the cache needs rungate in
 * shared_preload_libraries; without it, with rungate.authority_cache off,
 * while this transaction has itself changed authority, or on a standby
 * (replayed commits fire no trigger), every decision reads every fact
 * (decision.c's probes).
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "rungate.h"

PG_FUNCTION_INFO_V1(rg_authority_cache);

/*
 * state = generation << INFLIGHT_BITS | committing writers. One atomic add
 * moves both, so no reader ever sees a writer gone and the generation old.
 */
#define INFLIGHT_BITS	24
#define INFLIGHT_MASK	((UINT64CONST(1) << INFLIGHT_BITS) - 1)
#define GENERATION_STEP	(UINT64CONST(1) << INFLIGHT_BITS)

/*
 * Bounded memory: a full cache takes no more facts until the next authority
 * change empties it. Facts most decisions share (operation types, roles,
 * workspaces, tenants) are the first ones stored, so with more actors than
 * room they stay; starting over when full would drop them too.
 */
#define MAX_FACTS		16384

typedef struct RgAuthShared
{
	pg_atomic_uint64 state;
} RgAuthShared;

static RgAuthShared *shared = NULL;

/* rungate.authority_cache */
static bool cache_enabled = true;

/* this transaction changed an authority table / is between its commit marks */
static bool xact_changed = false;
static bool xact_committing = false;

/* the backend's facts, stored under cache_state */
static HTAB *facts = NULL;
static MemoryContext facts_cxt = NULL;

/*
 * What the facts hold (keys' strings, values, copies) is carved from blocks
 * of facts_cxt and freed only all at once, when the cache is emptied: a
 * chunk of its own per value cost a header and a power-of-two rounding each,
 * most of a fact's memory.
 */
#define ARENA_BLOCK		32768
static char *arena_next = NULL;
static Size arena_left = 0;
static uint64 cache_state = 0;
static int64 hits = 0;
static int64 misses = 0;

static ProcessUtility_hook_type prev_process_utility = NULL;

/* Around COMMIT PREPARED: in flight, then done (see the header). */
static void
authcache_process_utility(PlannedStmt *pstmt, const char *queryString,
						  bool readOnlyTree, ProcessUtilityContext context,
						  ParamListInfo params, QueryEnvironment *queryEnv,
						  DestReceiver *dest, QueryCompletion *qc)
{
	volatile bool mark = shared != NULL && IsA(pstmt->utilityStmt, TransactionStmt) &&
		((TransactionStmt *) pstmt->utilityStmt)->kind == TRANS_STMT_COMMIT_PREPARED;

	if (mark)
		pg_atomic_fetch_add_u64(&shared->state, GENERATION_STEP + 1);
	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (mark)
			pg_atomic_fetch_add_u64(&shared->state, GENERATION_STEP - 1);
	}
	PG_END_TRY();
}

/* shared memory: one generation (the hooks are rungate.c's) */
Size
rg_authcache_shmem_size(void)
{
	return MAXALIGN(sizeof(RgAuthShared));
}

void
rg_authcache_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("rungate authority generation",
							 sizeof(RgAuthShared), &found);
	if (!found)
		pg_atomic_init_u64(&shared->state, 0);
}

static void
authcache_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (xact_changed && shared != NULL)
			{
				pg_atomic_fetch_add_u64(&shared->state, GENERATION_STEP + 1);
				xact_committing = true;
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			if (xact_committing)
				pg_atomic_fetch_add_u64(&shared->state, GENERATION_STEP - 1);
			xact_committing = false;
			xact_changed = false;
			break;
		default:
			break;
	}
}

void
rg_authcache_init(void)
{
	DefineCustomBoolVariable("rungate.authority_cache",
							 "Lets decisions reuse authority facts no commit has changed since.",
							 "Needs rungate in shared_preload_libraries. Off, every decision "
							 "reads every fact; the decisions are the same either way.",
							 &cache_enabled,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
	{
		prev_process_utility = ProcessUtility_hook;
		ProcessUtility_hook = authcache_process_utility;
	}
	RegisterXactCallback(authcache_xact_callback, NULL);
}

void
rg_authcache_note_change(void)
{
	xact_changed = true;
}

void
rg_authcache_flush(void)
{
	if (facts != NULL)
	{
		hash_destroy(facts);
		facts = NULL;
	}
	if (facts_cxt != NULL)
		MemoryContextReset(facts_cxt);
	arena_next = NULL;
	arena_left = 0;
}

/* size bytes of the cache, aligned as align (1 or MAXIMUM_ALIGNOF) asks */
static void *
arena_alloc(Size size, Size align)
{
	Size		pad = align > 1 ?
		(Size) (TYPEALIGN(align, (uintptr_t) arena_next) - (uintptr_t) arena_next) : 0;
	void	   *p;

	if (size > ARENA_BLOCK / 4)
		return MemoryContextAlloc(facts_cxt, size);
	if (arena_next == NULL || size + pad > arena_left)
	{
		/* blocks come maxaligned */
		arena_next = MemoryContextAlloc(facts_cxt, ARENA_BLOCK);
		arena_left = ARENA_BLOCK;
		pad = 0;
	}
	p = arena_next + pad;
	arena_next += pad + size;
	arena_left -= pad + size;
	return p;
}

/* Memory for a cached fact, maxaligned, freed when the cache is emptied. */
void *
rg_authcache_alloc(Size size)
{
	return arena_alloc(size, MAXIMUM_ALIGNOF);
}

char *
rg_authcache_strdup(const char *s)
{
	Size		len = strlen(s) + 1;

	return memcpy(arena_alloc(len, 1), s, len);
}

/*
 * A copy of a column's value for a cached fact, in the cache's memory. The
 * values come from heap tuples, never expanded objects, so the bytes are the
 * value (datumCopy's rule otherwise).
 */
Datum
rg_authcache_datum(Datum d, bool byval, int len)
{
	Size		size;

	if (byval)
		return d;
	size = datumGetSize(d, byval, len);
	return PointerGetDatum(memcpy(rg_authcache_alloc(size), DatumGetPointer(d), size));
}

static uint32
fact_hash(const void *key, Size keysize)
{
	const RgFactKey *k = key;
	uint32		h = hash_bytes((const unsigned char *) k->n, sizeof(k->n));
	int			i;

	h = hash_combine(h, (uint32) k->which);
	for (i = 0; i < 2; i++)
		if (k->s[i] != NULL)
			h = hash_combine(h, hash_bytes((const unsigned char *) k->s[i],
										   strlen(k->s[i])));
	return h;
}

static int
fact_match(const void *key1, const void *key2, Size keysize)
{
	const RgFactKey *a = key1;
	const RgFactKey *b = key2;
	int			i;

	if (a->which != b->which || a->n[0] != b->n[0] || a->n[1] != b->n[1] ||
		a->n[2] != b->n[2])
		return 1;
	for (i = 0; i < 2; i++)
	{
		if ((a->s[i] == NULL) != (b->s[i] == NULL))
			return 1;
		if (a->s[i] != NULL && strcmp(a->s[i], b->s[i]) != 0)
			return 1;
	}
	return 0;
}

/* A new entry owns copies of the key's strings. */
static void *
fact_keycopy(void *dest, const void *src, Size keysize)
{
	RgFactKey  *d = dest;
	const RgFactKey *s = src;
	int			i;

	*d = *s;
	for (i = 0; i < 2; i++)
		if (s->s[i] != NULL)
			d->s[i] = rg_authcache_strdup(s->s[i]);
	return dest;
}

static void
facts_create(void)
{
	HASHCTL		ctl;

	if (facts_cxt == NULL)
		facts_cxt = AllocSetContextCreate(TopMemoryContext,
										  "rungate authority cache",
										  (Size) 0, (Size) 8192, (Size) 65536);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(RgFactKey);
	ctl.entrysize = sizeof(RgFact);
	ctl.hash = fact_hash;
	ctl.match = fact_match;
	ctl.keycopy = fact_keycopy;
	ctl.hcxt = facts_cxt;
	facts = hash_create("rungate authority facts", 1024, &ctl,
						HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
						HASH_KEYCOPY | HASH_CONTEXT);
}

/*
 * May the decision that starts now use (and store) cached facts? Call it
 * before the decision reads anything; it empties a stale cache.
 */
bool
rg_authcache_begin(void)
{
	uint64		state;

	if (!cache_enabled || shared == NULL || xact_changed || RecoveryInProgress())
		return false;
	state = pg_atomic_read_u64(&shared->state);
	/* the facts read after this must be read after the state was */
	pg_read_barrier();
	if ((state & INFLIGHT_MASK) != 0)
		return false;
	/*
	 * Emptied only here, between decisions: a decision under way may hold
	 * pointers into the cache.
	 */
	if (state != cache_state)
	{
		rg_authcache_flush();
		cache_state = state;
	}
	if (facts == NULL)
		facts_create();
	return true;
}

/* The cached fact of key, or NULL (only after rg_authcache_begin said yes). */
RgFact *
rg_authcache_get(const RgFactKey *key)
{
	RgFact	   *f = hash_search(facts, key, HASH_FIND, NULL);

	if (f != NULL)
		hits++;
	else
		misses++;
	return f;
}

/*
 * A new entry for key with room for ncols values, which the caller fills
 * with copies made by rg_authcache_datum() and its kin; NULL when the cache
 * is full.
 */
RgFact *
rg_authcache_put(const RgFactKey *key, bool found, int ncols)
{
	RgFact	   *f;
	bool		existed;

	if (hash_get_num_entries(facts) >= MAX_FACTS)
		return NULL;

	f = hash_search(facts, key, HASH_ENTER, &existed);
	f->found = found;
	f->ncols = ncols;
	f->vals = NULL;
	f->nulls = NULL;
	if (ncols > 0)
	{
		/* one piece: the values, then their null flags */
		Size		size = (sizeof(Datum) + sizeof(bool)) * ncols;

		f->vals = memset(rg_authcache_alloc(size), 0, size);
		f->nulls = (bool *) (f->vals + ncols);
	}
	return f;
}

/*
 * rungate.authority_cache() RETURNS TABLE (available, enabled, facts, hits,
 * misses): whether this server can cache (rungate preloaded), whether this
 * session lets it, and this backend's counts.
 */
Datum
rg_authority_cache(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "rungate.authority_cache must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = BoolGetDatum(shared != NULL);
	values[1] = BoolGetDatum(cache_enabled);
	values[2] = Int32GetDatum(facts != NULL ? (int32) hash_get_num_entries(facts) : 0);
	values[3] = Int64GetDatum(hits);
	values[4] = Int64GetDatum(misses);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
