/*
 * flow.c
 *     Flow control (docs/reference.md, "Flow control"): not whether a run may
 *     start (decision.c) but when. Owns fair turns between workspaces, the
 *     concurrency and rate limits, holds (rungate.hold, rungate.resume), the
 *     waiting state of a queued run, and the validation of limits.
 *
 * Guarantees (docs/guarantees.md):
 *   - A run flow control holds back stays queued: no audit row, no attempt
 *     spent, and it never stops a claim from taking other runs.
 *   - Two claims never together pass a limit. Admission for a limit key
 *     happens under a transaction-level lock of that key (an advisory lock
 *     of rungate's own class), taken without waiting: a claim that finds the
 *     key locked by another claim passes over its runs, as it passes over
 *     locked rows. The count is read after the lock, on a new snapshot, so it
 *     sees every start committed by the key's previous holder.
 *   - Rate limits are a sliding window over the starts recorded in
 *     rungate.flow_starts: start times are the clock at admission, taken
 *     under the key's lock, so they increase per key, and a start is
 *     admitted only while fewer than rate_limit starts lie in the window
 *     that ends now. So no window of that length holds more.
 *   - Turns: a workspace's turn is used when claim starts or blocks one of
 *     its runs. The turn of each workspace is kept in shared memory (per
 *     database) when preloaded; without preload each backend keeps its own,
 *     which is exact for one claiming session and fair per session otherwise.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "rungate.h"

PG_FUNCTION_INFO_V1(rg_hold);
PG_FUNCTION_INFO_V1(rg_resume);
PG_FUNCTION_INFO_V1(rg_validate_workspace);

/* ------------------------------------------------------------------------
 * Turns
 * ------------------------------------------------------------------------ */

#define TURN_SLOTS 8192			/* workspaces remembered, all databases */

typedef struct TurnSlot
{
	Oid			dbid;			/* InvalidOid: free */
	Oid			runs;			/* rungate.runs then: a new extension starts afresh */
	int64		workspace_id;
	uint64		turn;			/* larger: more recent */
} TurnSlot;

typedef struct TurnShared
{
	LWLock	   *lock;
	uint64		clock;			/* the last turn given, under lock */
	TurnSlot	slot[TURN_SLOTS];
} TurnShared;

static TurnShared *turns = NULL;

/* without preload: this backend's turns */
static HTAB *local_turns = NULL;
static uint64 local_clock = 0;

typedef struct LocalTurn
{
	int64		workspace_id;
	uint64		turn;
} LocalTurn;

static Oid	local_runs = InvalidOid;	/* the rungate.runs of local_turns */

Size
rg_flow_shmem_size(void)
{
	return MAXALIGN(sizeof(TurnShared));
}

void
rg_flow_shmem_request(void)
{
	RequestNamedLWLockTranche("rungate flow", 1);
}

void
rg_flow_shmem_init(void)
{
	bool		found;

	turns = ShmemInitStruct("rungate turns", sizeof(TurnShared), &found);
	if (!found)
	{
		memset(turns, 0, sizeof(TurnShared));
		turns->lock = &(GetNamedLWLockTranche("rungate flow"))->lock;
	}
}

static inline uint32
turn_hash(int64 ws)
{
	return hash_bytes_uint32((uint32) (ws ^ (ws >> 32)) ^ MyDatabaseId) % TURN_SLOTS;
}

static inline bool
turn_is(const TurnSlot *s, Oid runs, int64 ws)
{
	return s->dbid == MyDatabaseId && s->runs == runs && s->workspace_id == ws;
}

/* The slot of ws in this database, or NULL; under the lock. */
static TurnSlot *
turn_find(Oid runs, int64 ws)
{
	uint32		h = turn_hash(ws);
	int			i;

	for (i = 0; i < TURN_SLOTS; i++)
	{
		TurnSlot   *s = &turns->slot[(h + i) % TURN_SLOTS];

		if (s->dbid == InvalidOid)
			return NULL;
		if (turn_is(s, runs, ws))
			return s;
	}
	return NULL;
}

static HTAB *
local_turn_table(Oid runs)
{
	if (local_turns != NULL && local_runs != runs)
	{
		hash_destroy(local_turns);
		local_turns = NULL;
	}
	local_runs = runs;
	if (local_turns == NULL)
		local_turns = rg_blob_hash("rungate turns", 256, sizeof(int64),
								   sizeof(LocalTurn), TopMemoryContext);
	return local_turns;
}

/*
 * When ws last had a turn (0: not since the server started, or since
 * rungate.runs, whose relation id is runs, was created).
 */
uint64
rg_turn_of(Oid runs, int64 workspace_id)
{
	uint64		t = 0;

	if (turns != NULL)
	{
		TurnSlot   *s;

		LWLockAcquire(turns->lock, LW_SHARED);
		s = turn_find(runs, workspace_id);
		if (s != NULL)
			t = s->turn;
		LWLockRelease(turns->lock);
	}
	else
	{
		LocalTurn  *lt = hash_search(local_turn_table(runs), &workspace_id,
									 HASH_FIND, NULL);

		if (lt != NULL)
			t = lt->turn;
	}
	return t;
}

/*
 * ws has a turn now. When the table is full, the workspace whose turn is
 * the oldest is forgotten: it becomes "no turn", which still sorts first.
 */
void
rg_turn_use(Oid runs, int64 workspace_id)
{
	if (turns != NULL)
	{
		uint32		h = turn_hash(workspace_id);
		TurnSlot   *s = NULL;
		int			i;

		LWLockAcquire(turns->lock, LW_EXCLUSIVE);
		for (i = 0; i < TURN_SLOTS; i++)
		{
			TurnSlot   *c = &turns->slot[(h + i) % TURN_SLOTS];

			if (c->dbid == InvalidOid || turn_is(c, runs, workspace_id))
			{
				s = c;
				break;
			}
		}
		if (s == NULL)
		{
			/* full: forget the oldest turn of this database, or of any */
			TurnSlot   *oldest = &turns->slot[0];

			for (i = 1; i < TURN_SLOTS; i++)
				if (turns->slot[i].turn < oldest->turn)
					oldest = &turns->slot[i];
			s = oldest;
		}
		s->dbid = MyDatabaseId;
		s->runs = runs;
		s->workspace_id = workspace_id;
		s->turn = ++turns->clock;
		LWLockRelease(turns->lock);
	}
	else
	{
		bool		found;
		LocalTurn  *lt = hash_search(local_turn_table(runs), &workspace_id,
									 HASH_ENTER, &found);

		lt->turn = ++local_clock;
	}
}

/* ------------------------------------------------------------------------
 * Holds: the active ones, cached with the authority facts
 * ------------------------------------------------------------------------ */

typedef struct Hold
{
	bool		has_ws;
	int64		ws;
	bool		has_tenant;
	int64		tenant;
	char	   *operation;		/* NULL: every operation */
} Hold;

static Hold *holds = NULL;		/* in the claim's memory */
static int	nholds = 0;
static bool holds_watched = false;	/* note_authority_change fires ALWAYS on holds */
static bool holds_checked = false;
static Oid	holds_relid = InvalidOid;

#define FACT_HOLDS 0x1000		/* the authority cache's key of the hold list */

static RgPlan holds_plan = {
	"SELECT h.workspace_id, h.tenant_id, h.operation FROM rungate.holds h"
	" WHERE h.released_at IS NULL",
	0, {InvalidOid}, NULL, false
};

static void
holds_inval(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == holds_relid)
		holds_checked = false;
}

/* Is the hold table there (1.6), and does a change of it move the generation? */
static bool
holds_exist(void)
{
	static bool registered = false;

	if (!registered)
	{
		CacheRegisterRelcacheCallback(holds_inval, (Datum) 0);
		registered = true;
	}
	if (holds_checked)
		return OidIsValid(holds_relid);
	holds_relid = rg_relid("holds", true);
	holds_watched = false;
	if (OidIsValid(holds_relid))
	{
		Relation	rel = table_open(holds_relid, AccessShareLock);
		const int16 rows = TRIGGER_TYPE_ROW | TRIGGER_TYPE_INSERT |
			TRIGGER_TYPE_UPDATE | TRIGGER_TYPE_DELETE;

		holds_watched = rg_fires_always(rel, "note_authority_change", rows, rows);
		table_close(rel, AccessShareLock);
	}
	holds_checked = true;
	return OidIsValid(holds_relid);
}

/*
 * Load the active holds (in the current memory context) for this claim.
 * Needs SPI. From the authority cache while no authority change (holds
 * included) has committed since they were read.
 */
static void
holds_load(void)
{
	RgFactKey	key;
	RgFact	   *f;
	bool		use_cache;
	int			i;

	holds = NULL;
	nholds = 0;
	if (!holds_exist())
		return;
	memset(&key, 0, sizeof(key));
	key.which = FACT_HOLDS;
	use_cache = holds_watched && rg_authcache_begin();
	if (use_cache && (f = rg_authcache_get(&key)) != NULL)
	{
		nholds = f->ncols / 3;
		holds = palloc0(sizeof(Hold) * Max(nholds, 1));
		for (i = 0; i < nholds; i++)
		{
			Hold	   *h = &holds[i];
			Size		j = (Size) i * 3;

			h->has_ws = !f->nulls[j];
			h->ws = DatumGetInt64(f->vals[j]);
			h->has_tenant = !f->nulls[j + 1];
			h->tenant = DatumGetInt64(f->vals[j + 1]);
			/* copied: the cache may be emptied while this claim runs */
			h->operation = f->nulls[j + 2] ? NULL :
				pstrdup(DatumGetCString(f->vals[j + 2]));
		}
		return;
	}

	rg_exec(&holds_plan, NULL, NULL, false, 0);
	nholds = (int) SPI_processed;
	holds = palloc0(sizeof(Hold) * Max(nholds, 1));
	for (i = 0; i < nholds; i++)
	{
		Hold	   *h = &holds[i];
		bool		isnull;

		h->ws = rg_get_int64(i, 1, &isnull);
		h->has_ws = !isnull;
		h->tenant = rg_get_int64(i, 2, &isnull);
		h->has_tenant = !isnull;
		h->operation = rg_get_text(i, 3);
	}
	if (use_cache && (f = rg_authcache_put(&key, true, nholds * 3)) != NULL)
	{
		for (i = 0; i < nholds; i++)
		{
			Size		j = (Size) i * 3;

			f->vals[j] = Int64GetDatum(holds[i].ws);
			f->nulls[j] = !holds[i].has_ws;
			f->vals[j + 1] = Int64GetDatum(holds[i].tenant);
			f->nulls[j + 1] = !holds[i].has_tenant;
			f->vals[j + 2] = holds[i].operation ?
				CStringGetDatum(rg_authcache_strdup(holds[i].operation)) : (Datum) 0;
			f->nulls[j + 2] = holds[i].operation == NULL;
		}
	}
}

static bool
hold_matches(const Hold *h, int64 ws, bool has_tenant, int64 tenant,
			 const char *operation)
{
	return (!h->has_ws || h->ws == ws) &&
		(!h->has_tenant || (has_tenant && h->tenant == tenant)) &&
		(h->operation == NULL || strcmp(h->operation, operation) == 0);
}

/* ------------------------------------------------------------------------
 * Limits: this claim's keys
 * ------------------------------------------------------------------------ */

typedef enum KeyKind
{
	KEY_WORKSPACE,				/* workspaces.max_running */
	KEY_CONCURRENCY,			/* operation_types.max_running */
	KEY_RATE					/* operation_types.rate_limit */
} KeyKind;

typedef struct FlowKey
{
	KeyKind		kind;
	char		scope;			/* RG_LIMIT_*; KEY_WORKSPACE: workspace */
	const char *operation;		/* NULL for KEY_WORKSPACE */
	int64		id;				/* workspace, tenant, or 0 (global) */
	int32		limit;
	int32		count;			/* running, or starts in the window */
	bool		busy;			/* another claim holds the key */
	TimestampTz window_start;	/* KEY_RATE */
} FlowKey;

typedef struct ClaimFlow
{
	FlowKey    *keys;
	int			nkeys;
	int			size;
} ClaimFlow;

static ClaimFlow cf = {NULL, 0, 0};

/*
 * A claim begins: its holds are loaded and its keys start empty (both in
 * the claim's memory context, which outlives the claim's SPI calls).
 */
void
rg_flow_claim_begin(void)
{
	cf.keys = NULL;
	cf.nkeys = 0;
	cf.size = 0;
	holds_load();
}

void
rg_flow_claim_end(void)
{
	cf.keys = NULL;
	cf.nkeys = 0;
	holds = NULL;
	nholds = 0;
}

static bool
key_covers(const FlowKey *k, int64 ws, bool has_tenant, int64 tenant,
		   const char *operation)
{
	if (k->kind == KEY_WORKSPACE)
		return k->id == ws;
	if (strcmp(k->operation, operation) != 0)
		return false;
	switch (k->scope)
	{
		case RG_LIMIT_GLOBAL:
			return true;
		case RG_LIMIT_TENANT:
			return has_tenant && k->id == tenant;
		default:
			return k->id == ws;
	}
}

static bool
key_closed(const FlowKey *k)
{
	return k->busy || k->count >= k->limit;
}

/*
 * Is ws, as a whole, held for this claim? (Its limit does not close it as a
 * whole: its bulk parents are never limited.)
 */
bool
rg_flow_skip_workspace(int64 ws)
{
	int			i;

	for (i = 0; i < nholds; i++)
		if ((!holds[i].has_ws || holds[i].ws == ws) && !holds[i].has_tenant &&
			holds[i].operation == NULL)
			return true;
	return false;
}

static FlowKey *key_get(KeyKind kind, char scope, const char *operation, int64 id,
						int32 limit, const Interval *period);
static int64 scope_id(char scope, int64 ws, int64 tenant);

/*
 * Is every run of operation op in workspace ws closed to this claim? A hold
 * on the workspace and the operation (or on either with the other open),
 * the workspace's max_running reached, or a limit of the type whose key is
 * the workspace or global reached. The limits are checked here, before any
 * run of the group is locked or decided (taking the key, as admission
 * would), so that a full key costs a claim one look, not one run; needs SPI.
 * A limit per tenant cannot close a group: its runs are admitted one by one.
 */
bool
rg_flow_skip_group(int64 ws, const char *op)
{
	RgOpType	t;
	int32		ws_max;
	int			i;

	for (i = 0; i < nholds; i++)
		if ((!holds[i].has_ws || holds[i].ws == ws) && !holds[i].has_tenant &&
			(holds[i].operation == NULL || strcmp(holds[i].operation, op) == 0))
			return true;
	if (!rg_flow_limits(op, ws, &t, &ws_max) || t.item_operation != NULL)
		return false;			/* bulk parents are never limited */
	t.name = (char *) op;
	if (ws_max > 0 &&
		key_closed(key_get(KEY_WORKSPACE, RG_LIMIT_WORKSPACE, NULL, ws, ws_max, NULL)))
		return true;
	if (t.limit_scope == RG_LIMIT_TENANT)
		return false;
	if (t.max_running > 0 &&
		key_closed(key_get(KEY_CONCURRENCY, t.limit_scope, op,
						   scope_id(t.limit_scope, ws, 0), t.max_running, NULL)))
		return true;
	if (t.rate_limit > 0 &&
		key_closed(key_get(KEY_RATE, t.limit_scope, op,
						   scope_id(t.limit_scope, ws, 0), t.rate_limit, &t.rate_period)))
		return true;
	return false;
}

/*
 * Before a queued run is locked: false when flow control holds it back as
 * far as this claim already knows (a hold, or a key this claim found closed).
 * A bulk parent is held by holds only.
 */
bool
rg_flow_may_take(int64 ws, bool has_tenant, int64 tenant, const char *operation,
				 bool bulk_parent)
{
	int			i;

	for (i = 0; i < nholds; i++)
		if (hold_matches(&holds[i], ws, has_tenant, tenant, operation))
			return false;
	if (bulk_parent)
		return true;
	for (i = 0; i < cf.nkeys; i++)
		if (key_closed(&cf.keys[i]) &&
			key_covers(&cf.keys[i], ws, has_tenant, tenant, operation))
			return false;
	return true;
}

/* running runs of a workspace (bulk parents are not counted) */
static RgPlan count_ws_plan = {
	"SELECT pg_catalog.count(*)::integer FROM rungate.runs r"
	" WHERE r.workspace_id" EQ "$1 AND r.status" EQ "'running'"
	"   AND r.item_tenants IS NULL",
	1, {INT8OID}, NULL, false
};

static RgPlan count_op_global_plan = {
	"SELECT pg_catalog.count(*)::integer FROM rungate.runs r"
	" WHERE r.status" EQ "'running' AND r.operation" EQ "$1",
	1, {TEXTOID}, NULL, false
};

static RgPlan count_op_ws_plan = {
	"SELECT pg_catalog.count(*)::integer FROM rungate.runs r"
	" WHERE r.workspace_id" EQ "$2 AND r.status" EQ "'running'"
	"   AND r.operation" EQ "$1",
	2, {TEXTOID, INT8OID}, NULL, false
};

static RgPlan count_op_tenant_plan = {
	"SELECT pg_catalog.count(*)::integer FROM rungate.runs r"
	" WHERE r.status" EQ "'running' AND r.tenant_id" EQ "$2"
	"   AND r.operation" EQ "$1",
	2, {TEXTOID, INT8OID}, NULL, false
};

static RgPlan rate_forget_plan = {
	"DELETE FROM rungate.flow_starts s"
	" WHERE s.operation" EQ "$1 AND s.limit_key" EQ "$2 AND s.started_at" LE "$3",
	3, {TEXTOID, INT8OID, TIMESTAMPTZOID}, NULL, false
};

static RgPlan rate_count_plan = {
	"SELECT pg_catalog.count(*)::integer FROM rungate.flow_starts s"
	" WHERE s.operation" EQ "$1 AND s.limit_key" EQ "$2 AND s.started_at" GT "$3",
	3, {TEXTOID, INT8OID, TIMESTAMPTZOID}, NULL, false
};

static RgPlan rate_record_plan = {
	"INSERT INTO rungate.flow_starts (operation, limit_key, started_at)"
	" VALUES ($1, $2, $3)",
	3, {TEXTOID, INT8OID, TIMESTAMPTZOID}, NULL, false
};

/*
 * How many runs of key k run now (or started in its window); needs SPI. A
 * workspace's or a tenant's running runs by index (running.c); the global
 * scope, and a schema without the index, by SQL.
 */
static int32
key_count(const FlowKey *k, TimestampTz window_start)
{
	Datum		v[3];
	int32		n = -1;

	if (k->kind == KEY_WORKSPACE)
		n = rg_running_count(false, k->id, NULL);
	else if (k->kind == KEY_CONCURRENCY && k->scope != RG_LIMIT_GLOBAL)
		n = rg_running_count(k->scope == RG_LIMIT_TENANT, k->id, k->operation);
	if (n >= 0)
		return n;

	v[0] = k->operation ? CStringGetTextDatum(k->operation) : (Datum) 0;
	v[1] = Int64GetDatum(k->id);
	v[2] = TimestampTzGetDatum(window_start);
	if (k->kind == KEY_WORKSPACE)
	{
		v[0] = Int64GetDatum(k->id);
		rg_exec(&count_ws_plan, v, NULL, false, 1);
	}
	else if (k->kind == KEY_RATE)
		rg_exec(&rate_count_plan, v, NULL, false, 1);
	else if (k->scope == RG_LIMIT_GLOBAL)
		rg_exec(&count_op_global_plan, v, NULL, false, 1);
	else if (k->scope == RG_LIMIT_TENANT)
		rg_exec(&count_op_tenant_plan, v, NULL, false, 1);
	else
		rg_exec(&count_op_ws_plan, v, NULL, false, 1);
	return rg_get_int32(0, 1, NULL);
}

/*
 * Take key k's lock for this transaction without waiting: an advisory lock
 * of a class of rungate's own (field 4 = 3; SQL's advisory functions use 1
 * and 2), so the application's advisory locks never meet it. A hash
 * collision between two keys only serializes them.
 */
static bool
key_lock(const FlowKey *k)
{
	LOCKTAG		tag;
	uint32		h = hash_bytes_uint32((uint32) k->kind);

	h = hash_combine(h, hash_bytes_uint32((uint32) k->id));
	h = hash_combine(h, hash_bytes_uint32((uint32) (k->id >> 32)));
	if (k->operation)
		h = hash_combine(h, hash_bytes((const unsigned char *) k->operation,
									   strlen(k->operation)));
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0x52474643, h, 3);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* The key of (kind, scope, operation, id) in this claim, looked up first. */
static FlowKey *
key_get(KeyKind kind, char scope, const char *operation, int64 id, int32 limit,
		const Interval *period)
{
	FlowKey    *k;
	int			i;

	for (i = 0; i < cf.nkeys; i++)
	{
		k = &cf.keys[i];
		if (k->kind == kind && k->id == id &&
			(kind == KEY_WORKSPACE || strcmp(k->operation, operation) == 0))
		{
			k->limit = limit;
			return k;
		}
	}
	if (cf.nkeys == cf.size)
	{
		cf.size = Max(8, cf.size * 2);
		cf.keys = cf.keys ? repalloc(cf.keys, sizeof(FlowKey) * cf.size) :
			palloc(sizeof(FlowKey) * cf.size);
	}
	k = &cf.keys[cf.nkeys++];
	memset(k, 0, sizeof(*k));
	k->kind = kind;
	k->scope = scope;
	k->operation = operation ? pstrdup(operation) : NULL;
	k->id = id;
	k->limit = limit;
	if (!key_lock(k))
	{
		k->busy = true;
		return k;
	}
	if (kind == KEY_RATE)
	{
		TimestampTz now = GetCurrentTimestamp();
		Datum		v[3];

		k->window_start = DatumGetTimestampTz(
			DirectFunctionCall2(timestamptz_mi_interval, TimestampTzGetDatum(now),
								IntervalPGetDatum(period)));
		v[0] = CStringGetTextDatum(operation);
		v[1] = Int64GetDatum(id);
		v[2] = TimestampTzGetDatum(k->window_start);
		rg_exec(&rate_forget_plan, v, NULL, false, 0);
	}
	k->count = key_count(k, k->window_start);
	return k;
}

static int64
scope_id(char scope, int64 ws, int64 tenant)
{
	return scope == RG_LIMIT_GLOBAL ? 0 : scope == RG_LIMIT_TENANT ? tenant : ws;
}

/*
 * After the decision allowed a run: may it start now? On yes its places
 * are taken (and a rate-limited start recorded at this moment); on no it
 * stays queued, and why is returned ("concurrency" or "rate"). Needs SPI.
 */
const char *
rg_flow_admit(int64 ws, bool has_tenant, int64 tenant, const RgDecision *d)
{
	const RgOpType *op = &d->op;
	FlowKey    *need[3];
	int			n = 0,
				i;
	TimestampTz now;

	if (op->item_operation != NULL)
		return NULL;			/* bulk parents are never limited */
	if (d->ws_max_running > 0)
		need[n++] = key_get(KEY_WORKSPACE, RG_LIMIT_WORKSPACE, NULL, ws,
							d->ws_max_running, NULL);
	if (op->max_running > 0)
		need[n++] = key_get(KEY_CONCURRENCY, op->limit_scope, op->name,
							scope_id(op->limit_scope, ws, tenant),
							op->max_running, NULL);
	if (op->rate_limit > 0)
		need[n++] = key_get(KEY_RATE, op->limit_scope, op->name,
							scope_id(op->limit_scope, ws, tenant),
							op->rate_limit, &op->rate_period);
	for (i = 0; i < n; i++)
		if (key_closed(need[i]))
			return need[i]->kind == KEY_RATE ? "rate" : "concurrency";

	now = GetCurrentTimestamp();
	for (i = 0; i < n; i++)
	{
		need[i]->count++;
		if (need[i]->kind == KEY_RATE)
		{
			Datum		v[3];

			v[0] = CStringGetTextDatum(need[i]->operation);
			v[1] = Int64GetDatum(need[i]->id);
			v[2] = TimestampTzGetDatum(now);
			rg_exec(&rate_record_plan, v, NULL, true, 0);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * A place frees, and why a queued run waits
 * ------------------------------------------------------------------------ */

/*
 * A run of (operation, workspace) left running: when that frees a place
 * of a concurrency limit, wake the workers (rungate_queued).
 */
void
rg_flow_place_freed(const char *operation, int64 workspace_id)
{
	RgOpType	op;
	int32		ws_max;

	if (rg_flow_limits(operation, workspace_id, &op, &ws_max) &&
		(op.max_running > 0 || ws_max > 0) && op.item_operation == NULL)
		Async_Notify("rungate_queued", "{\"place_freed\": true}");
}

static RgPlan waiting_hold_plan = {
	"SELECT 1 FROM rungate.holds h"
	" WHERE h.released_at IS NULL"
	"   AND (h.workspace_id IS NULL OR h.workspace_id" EQ "$1)"
	"   AND (h.tenant_id IS NULL OR h.tenant_id" EQ "$2)"
	"   AND (h.operation IS NULL OR h.operation" EQ "$3)"
	" LIMIT 1",
	3, {INT8OID, INT8OID, TEXTOID}, NULL, false
};

/*
 * Why a queued run would not start at a claim now: "scheduled", "held",
 * "concurrency", "rate", or NULL. Reads only (no locks); needs SPI.
 */
const char *
rg_flow_waiting(int64 ws, bool has_tenant, int64 tenant, const char *operation,
				TimestampTz run_at)
{
	RgOpType	op;
	int32		ws_max;
	Datum		v[3];
	char		n[3] = {' ', ' ', ' '};
	FlowKey		k;

	if (run_at > GetCurrentTransactionStartTimestamp())
		return "scheduled";
	if (holds_exist())
	{
		v[0] = Int64GetDatum(ws);
		v[1] = Int64GetDatum(tenant);
		n[1] = has_tenant ? ' ' : 'n';
		v[2] = CStringGetTextDatum(operation);
		rg_exec(&waiting_hold_plan, v, n, false, 1);
		if (SPI_processed > 0)
			return "held";
	}
	if (!rg_flow_limits(operation, ws, &op, &ws_max) || op.item_operation != NULL)
		return NULL;
	memset(&k, 0, sizeof(k));
	if (ws_max > 0)
	{
		k.kind = KEY_WORKSPACE;
		k.id = ws;
		if (key_count(&k, 0) >= ws_max)
			return "concurrency";
	}
	k.operation = operation;
	k.scope = op.limit_scope;
	k.id = scope_id(op.limit_scope, ws, tenant);
	if (op.max_running > 0)
	{
		k.kind = KEY_CONCURRENCY;
		if (key_count(&k, 0) >= op.max_running)
			return "concurrency";
	}
	if (op.rate_limit > 0)
	{
		TimestampTz start = DatumGetTimestampTz(
			DirectFunctionCall2(timestamptz_mi_interval,
								TimestampTzGetDatum(GetCurrentTimestamp()),
								IntervalPGetDatum(&op.rate_period)));

		k.kind = KEY_RATE;
		if (key_count(&k, start) >= op.rate_limit)
			return "rate";
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * rungate.hold, rungate.resume
 * ------------------------------------------------------------------------ */

static RgPlan insert_hold_plan = {
	"INSERT INTO rungate.holds AS h (workspace_id, tenant_id, operation, reason, held_by)"
	" VALUES ($1, $2, $3, $4, $5) RETURNING h",
	5, {INT8OID, INT8OID, TEXTOID, TEXTOID, INT8OID}, NULL, false
};

static RgPlan lock_hold_plan = {
	"SELECT h.released_at IS NOT NULL FROM rungate.holds h"
	" WHERE h.id" EQ "$1 FOR UPDATE",
	1, {INT8OID}, NULL, false
};

static RgPlan resume_hold_plan = {
	"UPDATE rungate.holds h SET released_at = pg_catalog.now(), released_by = $2"
	" WHERE h.id" EQ "$1 RETURNING h",
	2, {INT8OID, INT8OID}, NULL, false
};

/* RG400 naming the argument, when the row it names is not there */
static void
require_known(bool known, const char *what, const char *shown)
{
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("unknown %s %s", what, shown)));
}

/* The first column of SPI's first row, copied into the caller's context. */
static Datum
returned_row(MemoryContext caller)
{
	MemoryContext spi = MemoryContextSwitchTo(caller);
	Datum		row = SPI_datumTransfer(rg_get_datum(0, 1, NULL), false, -1);

	MemoryContextSwitchTo(spi);
	return row;
}

/*
 * rungate.hold(workspace_id, tenant_id, operation, reason, actor_id)
 *     RETURNS rungate.holds
 */
Datum
rg_hold(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	bool		has_ws = !PG_ARGISNULL(0);
	int64		ws = has_ws ? PG_GETARG_INT64(0) : 0;
	bool		has_tenant = !PG_ARGISNULL(1);
	int64		tenant = has_tenant ? PG_GETARG_INT64(1) : 0;
	char	   *operation = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Datum		v[5];
	char		n[5] = {' ', ' ', ' ', ' ', ' '};
	Datum		res;

	SPI_connect();
	if (has_tenant)
	{
		int64		tenant_ws;

		require_known(rg_tenant_workspace(tenant, &tenant_ws), "tenant_id",
					  psprintf(INT64_FORMAT, tenant));
		if (has_ws && tenant_ws != ws)
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("tenant_id " INT64_FORMAT " does not belong to workspace_id " INT64_FORMAT,
							tenant, ws)));
		has_ws = true;
		ws = tenant_ws;
	}
	else if (has_ws)
		require_known(rg_workspace_exists(ws), "workspace_id", psprintf(INT64_FORMAT, ws));
	if (operation != NULL)
		require_known(rg_operation_exists(operation), "operation",
					  quote_literal_cstr(operation));
	if (!PG_ARGISNULL(4))
		require_known(rg_actor_exists(PG_GETARG_INT64(4)), "actor_id",
					  psprintf(INT64_FORMAT, PG_GETARG_INT64(4)));

	v[0] = Int64GetDatum(ws);
	n[0] = has_ws ? ' ' : 'n';
	v[1] = Int64GetDatum(tenant);
	n[1] = has_tenant ? ' ' : 'n';
	v[2] = operation ? CStringGetTextDatum(operation) : (Datum) 0;
	n[2] = operation ? ' ' : 'n';
	v[3] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	n[3] = PG_ARGISNULL(3) ? 'n' : ' ';
	v[4] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	n[4] = PG_ARGISNULL(4) ? 'n' : ' ';
	rg_exec(&insert_hold_plan, v, n, false, 1);
	res = returned_row(caller);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

/*
 * rungate.resume(hold_id, actor_id) RETURNS rungate.holds
 */
Datum
rg_resume(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	int64		hold_id;
	Datum		v[2];
	char		n[2] = {' ', ' '};
	Datum		res;

	rg_require_arg(fcinfo, 0, "hold_id");
	hold_id = PG_GETARG_INT64(0);

	SPI_connect();
	if (!PG_ARGISNULL(1))
		require_known(rg_actor_exists(PG_GETARG_INT64(1)), "actor_id",
					  psprintf(INT64_FORMAT, PG_GETARG_INT64(1)));
	v[0] = Int64GetDatum(hold_id);
	rg_exec(&lock_hold_plan, v, NULL, false, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("hold " INT64_FORMAT " not found", hold_id)));
	if (rg_get_bool(0, 1, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("hold " INT64_FORMAT " was already resumed", hold_id)));
	v[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	n[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	rg_exec(&resume_hold_plan, v, n, false, 1);
	res = returned_row(caller);
	SPI_finish();
	Async_Notify("rungate_queued", psprintf("{\"resumed_hold\": " INT64_FORMAT "}", hold_id));
	PG_RETURN_DATUM(res);
}

/* ------------------------------------------------------------------------
 * Validation of limits
 * ------------------------------------------------------------------------ */

/* An int4 column of tup (attnum 0: the column is absent), or -1 when null. */
static int64
int_column(HeapTuple tup, TupleDesc desc, const char *column, bool *isnull)
{
	AttrNumber	att = SPI_fnumber(desc, column);

	*isnull = true;
	if (att <= 0)
		return 0;
	return DatumGetInt32(heap_getattr(tup, att, desc, isnull));
}

static void
require_positive_limit(HeapTuple tup, TupleDesc desc, const char *column,
					   const char *what)
{
	bool		isnull;
	int64		v = int_column(tup, desc, column, &isnull);

	if (!isnull && v <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s of %s must be positive, not " INT64_FORMAT, column, what, v),
				 errhint("Set it to null for no limit.")));
}

/*
 * The limits of an operation type row (called by validate_operation_type):
 * positive limits, a known limit_scope (tenant only for tenant-scoped
 * types), rate_limit and rate_period both set or both null.
 */
void
rg_flow_validate_type(HeapTuple tup, TupleDesc desc, const char *name,
					  bool workspace_scope)
{
	AttrNumber	att;
	bool		isnull;
	bool		has_rate;
	bool		has_period;
	char	   *what = psprintf("operation type \"%s\"", name);

	if (SPI_fnumber(desc, "max_running") <= 0)
		return;					/* a schema before 1.6 */
	require_positive_limit(tup, desc, "max_running", what);
	require_positive_limit(tup, desc, "rate_limit", what);

	att = SPI_fnumber(desc, "limit_scope");
	{
		Datum		d = heap_getattr(tup, att, desc, &isnull);
		char	   *scope = isnull ? NULL : TextDatumGetCString(d);

		if (scope == NULL ||
			(strcmp(scope, "tenant") != 0 && strcmp(scope, "workspace") != 0 &&
			 strcmp(scope, "global") != 0))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("limit_scope of %s must be tenant, workspace or global, not %s",
							what, scope ? quote_literal_cstr(scope) : "null")));
		if (workspace_scope && strcmp(scope, "tenant") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("limit_scope of %s cannot be tenant: the type is workspace-scoped",
							what),
					 errdetail("Its runs have no tenant to count them by.")));
	}

	(void) int_column(tup, desc, "rate_limit", &isnull);
	has_rate = !isnull;
	att = SPI_fnumber(desc, "rate_period");
	{
		Datum		d = heap_getattr(tup, att, desc, &isnull);

		has_period = !isnull;
		if (has_period)
		{
			Interval	zero;

			memset(&zero, 0, sizeof(zero));
			if (DatumGetInt32(DirectFunctionCall2(interval_cmp, d,
												  IntervalPGetDatum(&zero))) <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_RG_BAD_REQUEST),
						 errmsg("rate_period of %s must be positive", what)));
		}
	}
	if (has_rate != has_period)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s of %s is set without %s", has_rate ? "rate_limit" : "rate_period",
						what, has_rate ? "rate_period" : "rate_limit"),
				 errhint("A rate limit is rate_limit runs per rate_period: set both, or neither.")));
}

/*
 * rungate.validate_workspace(): BEFORE INSERT OR UPDATE ON rungate.workspaces,
 * a positive max_running or none.
 */
Datum
rg_validate_workspace(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int64		v;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("rungate.validate_workspace() must fire BEFORE INSERT OR UPDATE FOR EACH ROW")));
	tup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);
	v = int_column(tup, desc, "max_running", &isnull);
	if (!isnull && v <= 0)
	{
		bool		idnull;
		Datum		id = heap_getattr(tup, SPI_fnumber(desc, "id"), desc, &idnull);

		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("max_running of workspace %s must be positive, not " INT64_FORMAT,
						idnull ? "(null)" : psprintf(INT64_FORMAT, DatumGetInt64(id)), v),
				 errhint("Set it to null for no limit.")));
	}
	return PointerGetDatum(tup);
}
