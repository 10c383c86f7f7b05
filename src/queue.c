/*
 * queue.c
 *     The queue scans of rungate.claim, and the floors in shared memory that
 *     let them start past the runs already claimed: since 1.6 the fair scan
 *     of runs_fair_idx with a floor per group (below, "the fair scan");
 *     before, the scan of runs_queue_idx with one floor per database
 *     (docs/guarantees.md#no-double-start, #flow-control).
 *
 * Before 1.6, claim takes due queued runs in the order of rungate.runs_queue_idx
 * (priority DESC, id WHERE status = 'queued'), skipping runs another
 * transaction holds. Claimed runs leave their entries in that index until
 * VACUUM removes them (a scan only marks them dead), so a scan from the
 * index's start walks the entries of every run claimed since the last
 * VACUUM: a cost that grows with throughput and with autovacuum's delay.
 *
 * The floor is a position in that order before which every entry is dead to
 * every transaction (all_dead: no snapshot can see its row). It lives in
 * shared memory, one slot per database, so it needs rungate in
 * shared_preload_libraries; without that every claim scans from the start.
 *
 *   - A claim scans from the floor and raises it to the first entry that is
 *     not all_dead. A live run that is not yet due (run_at > now()) does not
 *     stop it: it is "held", and the first claim whose now() reaches the
 *     earliest held run_at lowers the floor to the earliest held position.
 *   - Rows enter the index only by an INSERT or UPDATE that leaves a queued
 *     row, and those fire rungate.note_queued() (AFTER ROW, ENABLE ALWAYS),
 *     when the index entry exists and before the writer commits. It lowers
 *     the floor to the row if the row is before it.
 *   - A claim only raises the floor if no write has come between its read of
 *     the floor and its raise: while any claim scans, every queued write
 *     bumps the slot's generation, and a raise needs the generation the
 *     scan began with. So a raise never passes a row written while it
 *     scanned, and a row written before is in the index where the scan
 *     looked.
 *   - Any invalidation of rungate.runs or its queue index (DDL, a trigger
 *     disabled or enabled, VACUUM's statistics) forgets the floor, and
 *     while note_queued is missing or not ENABLE ALWAYS the floor is not
 *     used at all: rows written then would not have lowered it.
 *
 * Raising the floor needs the entries' all_dead verdicts, which only an
 * index scan of our own sees; that is also why the scan is here and not an
 * SPI statement (whose plan, portal and LockRows cost about as much again).
 * A run is locked as FOR NO KEY UPDATE SKIP LOCKED would lock it; one that
 * changed since the scan's snapshot is skipped, like a locked one.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/itup.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "common/hashfn.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "rungate.h"
#include "runstatus.h"

PG_FUNCTION_INFO_V1(rg_note_queued);
PG_FUNCTION_INFO_V1(rg_queue_floor);

/* A place in claim order: higher priority first, then lower id. */
typedef struct QPos
{
	int32		prio;
	int64		id;
} QPos;

static inline bool
before(QPos a, QPos b)
{
	return a.prio > b.prio || (a.prio == b.prio && a.id < b.id);
}

#define QF_SLOTS 32				/* databases with a floor at once */
#define GF_OPLEN 64				/* longer operation names get no floor */
#define QW_RING 64				/* queued writes remembered per database */

/* The group a queued write went to (note_queued), for kept group lists. */
typedef struct QWrite
{
	bool		known;			/* false: its operation name is too long */
	int32		prio;
	int64		ws;
	char		op[GF_OPLEN];	/* NUL-terminated */
} QWrite;

typedef struct QFloor
{
	Oid			dbid;			/* InvalidOid: a free slot */
	Oid			relid;			/* rungate.runs of that database */
	uint64		gen;			/* bumped by lowering and by writes while scanned */
	uint64		qgen;			/* bumped by every queued write (note_queued) */
	int			scanners;		/* claims between reading and raising */
	bool		valid;			/* else: scan from the start */
	QPos		floor;
	bool		held;			/* live runs not yet due, passed by the floor */
	QPos		hold;			/* the earliest of them */
	TimestampTz hold_due;		/* the earliest run_at among them */
	QWrite		ring[QW_RING];	/* queued write n is ring[n % QW_RING] */
} QFloor;

/*
 * The floor of one group of the fair order: the runs of one (priority,
 * workspace, operation) in runs_fair_idx. Its entries with an id below
 * floor are dead to every transaction or not yet due (held: the least
 * such id and the earliest run_at); GF_EMPTY: every entry is.
 */
#define GF_SLOTS 4096			/* groups with a floor at once, all databases */
#define GF_PROBE 8				/* slots a group may take, from its hash on */
#define GF_EMPTY PG_INT64_MAX

typedef struct GFloor
{
	Oid			dbid;			/* InvalidOid: a free slot */
	Oid			relid;
	int32		prio;
	int64		ws;
	char		op[GF_OPLEN];	/* NUL-terminated */
	uint32		incarnation;	/* bumped when the slot is given to a group */
	uint32		epoch;			/* bumped by forget: raises begun before are void */
	int			scanners;		/* walks between reading and raising */
	bool		valid;			/* else: walk the group from its start */
	int64		floor;
	int64		wmin;			/* least id queued while scanners > 0 */
	bool		held;			/* live runs not yet due, passed by the floor */
	int64		hold;			/* the least id among them */
	TimestampTz hold_due;		/* the earliest run_at among them */
	uint64		used;			/* clock of the last walk, for eviction */
	bool		next_valid;		/* next is a hint (gf_hint, gf_peek) */
	int64		next;			/* where the group's next run likely is */
	uint32		notes;			/* bumped by every gf_note */
} GFloor;

typedef struct QShared
{
	slock_t		mutex;
	QFloor		slot[QF_SLOTS];
	uint64		gf_clock;
	GFloor		group[GF_SLOTS];
} QShared;

static QShared *qshared = NULL;
static int	my_slot = -1;

/* rungate.queue_floor */
static bool floor_enabled = true;


/* The columns the scan reads; the relation id, looked up again on change. */
static RgTable queue_table = {
	.name = "runs",
	.cols = {"id", "priority", "status", "run_at", "operation", "workspace_id",
	"tenant_id", "item_tenants"},
	.nkeys = 1
};

enum
{
	QT_ID, QT_PRIO, QT_STATUS, QT_RUN_AT, QT_OPERATION, QT_WORKSPACE,
	QT_TENANT, QT_ITEM_TENANTS
};

/* This backend's view of the queue index and the floor trigger. */
static bool q_valid = false;
static Oid	q_relid = InvalidOid;
static Oid	q_index = InvalidOid;
static bool q_watched = false;	/* note_queued fires ALWAYS on runs */
static Oid	q_fair = InvalidOid;	/* runs_fair_idx (1.6), or none */

/* ---- shared memory (the hooks are rungate.c's) ---- */

Size
rg_queue_shmem_size(void)
{
	return MAXALIGN(sizeof(QShared));
}

void
rg_queue_shmem_init(void)
{
	bool		found;

	qshared = ShmemInitStruct("rungate queue floor", sizeof(QShared), &found);
	if (!found)
	{
		memset(qshared, 0, sizeof(QShared));
		SpinLockInit(&qshared->mutex);
	}
}

/*
 * The slot of relid in this database, under the mutex; with create, a free
 * one is taken (or this database's slot of a dropped runs table reused).
 * NULL when there is none (every slot taken by other databases).
 */
static QFloor *
slot_of(Oid relid, bool create)
{
	int			i,
				take = -1;
	QFloor	   *s;

	if (my_slot >= 0)
	{
		s = &qshared->slot[my_slot];
		if (s->dbid == MyDatabaseId && s->relid == relid)
			return s;
	}
	for (i = 0; i < QF_SLOTS; i++)
	{
		s = &qshared->slot[i];
		if (s->dbid == MyDatabaseId)
		{
			if (s->relid == relid)
			{
				my_slot = i;
				return s;
			}
			take = i;
		}
		else if (s->dbid == InvalidOid && take < 0)
			take = i;
	}
	if (!create || take < 0)
		return NULL;
	s = &qshared->slot[take];
	s->dbid = MyDatabaseId;
	s->relid = relid;
	s->gen++;
	s->scanners = 0;
	s->valid = false;
	s->held = false;
	my_slot = take;
	return s;
}

/* Forget the floor of relid: scans start from the index's start again. */
static void
forget(Oid relid)
{
	QFloor	   *s;

	SpinLockAcquire(&qshared->mutex);
	s = slot_of(relid, false);
	if (s != NULL)
	{
		s->valid = false;
		s->held = false;
		s->gen++;
	}
	SpinLockRelease(&qshared->mutex);
}

/* ---- group floors (the fair scan's) ---- */

/*
 * This backend's list of the fair index's groups, level by level, as found
 * when the database's qgen was gl_qgen. A group only appears by a queued
 * write, and note_queued counts it in qgen and puts its group in the ring
 * after the entry exists: while every write since gl_qgen is still in the
 * ring and went to a listed group (or to a level not listed yet), the list
 * is whole, and a claim walks it without finding the groups again. Groups
 * emptied since are still listed, and cost their floor's look-up.
 */
typedef struct GlGroup
{
	int64		ws;
	char	   *op;
} GlGroup;

typedef struct GlLevel
{
	int32		prio;
	int			ngroups;
	GlGroup    *groups;
} GlLevel;

#define GL_MAX_GROUPS 100000	/* beyond: found again by every claim */

static bool gl_valid = false;
static uint64 gl_qgen;
static Oid	gl_relid = InvalidOid;
static int	gl_nlevels;
static int	gl_size;
static GlLevel *gl_levels;
static bool gl_levels_end;		/* every level is listed */
static int	gl_ngroups;
static MemoryContext gl_cxt = NULL;
static HTAB *gl_index = NULL;	/* the listed groups, by GlKey (in gl_cxt) */

typedef struct GlKey
{
	int64		ws;
	int32		prio;
	char		op[GF_OPLEN];	/* NUL-padded */
} GlKey;

/* The walk between gf_begin and gf_end, if one is open (at most one). */
static struct
{
	bool		open;
	int			slot;
	uint32		incarnation;
	uint32		epoch;
	uint32		notes;			/* the group's gf_note count when it began */
}			gf_walk;

static uint32
gf_hash(Oid relid, int32 prio, int64 ws, const char *op, size_t oplen)
{
	uint32		h = hash_bytes_uint32(MyDatabaseId);

	h = hash_combine(h, hash_bytes_uint32(relid));
	h = hash_combine(h, hash_bytes_uint32((uint32) prio));
	h = hash_combine(h, hash_bytes_uint32((uint32) ws));
	h = hash_combine(h, hash_bytes_uint32((uint32) (ws >> 32)));
	return hash_combine(h, hash_bytes((const unsigned char *) op, (int) oplen));
}

/*
 * The slot of group (prio, ws, op) of relid in this database, under the
 * mutex, or -1. With create, a group without one takes a free slot of its
 * probe window, or the least recently walked one that no walk holds.
 */
static int
gf_slot(Oid relid, int32 prio, int64 ws, const char *op, size_t oplen,
		bool create)
{
	uint32		h = gf_hash(relid, prio, ws, op, oplen);
	int			take = -1;
	int			i;
	GFloor	   *g;

	for (i = 0; i < GF_PROBE; i++)
	{
		int			k = (int) ((h + (uint32) i) % GF_SLOTS);

		g = &qshared->group[k];
		if (g->dbid == MyDatabaseId && g->relid == relid && g->prio == prio &&
			g->ws == ws && strncmp(g->op, op, oplen) == 0 && g->op[oplen] == '\0')
			return k;
		if (!create || (g->dbid != InvalidOid && g->scanners > 0))
			continue;
		if (take < 0 || (qshared->group[take].dbid != InvalidOid &&
						 (g->dbid == InvalidOid || g->used < qshared->group[take].used)))
			take = k;
	}
	if (take < 0)
		return -1;
	g = &qshared->group[take];
	g->dbid = MyDatabaseId;
	g->relid = relid;
	g->prio = prio;
	g->ws = ws;
	memcpy(g->op, op, oplen);
	g->op[oplen] = '\0';
	g->incarnation++;
	g->scanners = 0;
	g->valid = false;
	g->held = false;
	g->next_valid = false;
	g->wmin = GF_EMPTY;
	return take;
}

/* May walks keep and use group floors (for an operation name of oplen)? */
static inline bool
gf_usable(size_t oplen)
{
	return qshared != NULL && q_watched && floor_enabled && oplen < GF_OPLEN;
}

/*
 * A walk of group (prio, ws, op) begins at `now`: its floor in *floor
 * (false: none known, walk from the group's start). Once a run the floor
 * passed as not yet due may be due, the floor goes back to it first (and
 * the walks open then raise nothing). Every gf_begin is followed by gf_end
 * or, on error, gf_abort.
 */
static bool
gf_begin(Oid relid, int32 prio, int64 ws, const char *op, TimestampTz now,
		 int64 *floor)
{
	size_t		oplen = strlen(op);
	bool		known = false;
	int			k;

	Assert(!gf_walk.open);
	if (!gf_usable(oplen))
		return false;
	SpinLockAcquire(&qshared->mutex);
	k = gf_slot(relid, prio, ws, op, oplen, true);
	if (k >= 0)
	{
		GFloor	   *g = &qshared->group[k];

		if (g->valid && g->held && g->hold_due <= now)
		{
			g->floor = Min(g->floor, g->hold);
			g->held = false;
			g->epoch++;
		}
		g->scanners++;
		g->used = ++qshared->gf_clock;
		known = g->valid;
		*floor = g->floor;
		gf_walk.open = true;
		gf_walk.slot = k;
		gf_walk.incarnation = g->incarnation;
		gf_walk.epoch = g->epoch;
		gf_walk.notes = g->notes;
	}
	SpinLockRelease(&qshared->mutex);
	return known;
}

/*
 * A lower bound on the id of the first run of group (prio, ws, op) that a
 * walk beginning at `now` could find, without walking: its floor (lowered
 * to a held run that is due by now, as gf_begin would), PG_INT64_MIN when
 * the group has no known floor. False: the group has no run live and due.
 * Any run our snapshot sees was noted (note_queued) before its writer
 * committed, so before this read; a floor only rises past entries dead to
 * every transaction and runs not yet due, which it comes back to (the
 * hold) once they are: the bound holds for the whole fetch.
 *
 * Above the floor, the group's hint (gf_hint) raises the bound: claims
 * locked the runs before it (or passed them, claimed or held by others),
 * whose entries stay until no snapshot can see them, and without the hint
 * every claim would walk every group to pass them. It is a guess, not a
 * bound: it only orders the walks. A rolled-back claim forgets its hints
 * and a queued write lowers the hint to its run; a run whose enqueue
 * commits after a claim passed it invisible may wait behind runs of other
 * groups written about as early, until its group is walked again.
 */
static bool
gf_peek(Oid relid, int32 prio, int64 ws, const char *op, TimestampTz now,
		int64 *bound)
{
	size_t		oplen = strlen(op);
	bool		any = true;
	int			k;

	*bound = PG_INT64_MIN;
	if (!gf_usable(oplen))
		return true;
	SpinLockAcquire(&qshared->mutex);
	k = gf_slot(relid, prio, ws, op, oplen, false);
	if (k >= 0 && qshared->group[k].valid)
	{
		GFloor	   *g = &qshared->group[k];

		g->used = ++qshared->gf_clock;	/* in use, if not walked */
		/* the floor, raised to the hint, lowered to a held run now due */
		any = g->floor != GF_EMPTY || (g->held && g->hold_due <= now);
		*bound = g->floor;
		if (g->floor != GF_EMPTY && g->next_valid)
			*bound = Max(*bound, g->next);
		if (g->held && g->hold_due <= now)
			*bound = Min(*bound, g->hold);
	}
	SpinLockRelease(&qshared->mutex);
	return any;
}

/* The runs not yet due that a walk passed: GF_EMPTY id when none. */
typedef struct GfHeld
{
	int64		id;				/* the least */
	TimestampTz due;			/* the earliest run_at */
} GfHeld;

/*
 * The walk ends; to: the id of the first entry it found live (not dead to
 * every transaction) and due, or GF_EMPTY when it reached the group's end
 * without one; held: what it passed that is not due yet. The floor rises
 * to `to`, but never past a run queued meanwhile.
 */
static void
gf_end(bool raise, int64 to, const GfHeld *held)
{
	GFloor	   *g;

	if (!gf_walk.open)
		return;
	gf_walk.open = false;
	SpinLockAcquire(&qshared->mutex);
	g = &qshared->group[gf_walk.slot];
	if (g->incarnation == gf_walk.incarnation)
	{
		if (raise && g->epoch == gf_walk.epoch)
		{
			if (g->wmin < to)
				to = g->wmin;
			if (!g->valid || to > g->floor)
				g->floor = to;
			g->valid = true;
			if (held != NULL && held->id != GF_EMPTY)
			{
				g->hold = g->held ? Min(g->hold, held->id) : held->id;
				g->hold_due = g->held ? Min(g->hold_due, held->due) : held->due;
				g->held = true;
			}
		}
		if (g->scanners > 0 && --g->scanners == 0)
			g->wmin = GF_EMPTY;
	}
	SpinLockRelease(&qshared->mutex);
}

static void
gf_abort(void)
{
	gf_end(false, 0, NULL);
}

/*
 * A run of group (prio, ws, op) is queued at id, before its writer commits
 * (note_queued), or stays queued though a claim locked it (rg_queue_kept).
 */
static void
gf_note(Oid relid, int32 prio, int64 ws, const char *op, size_t oplen, int64 id)
{
	char		buf[GF_OPLEN];
	int			k;

	if (qshared == NULL || oplen >= GF_OPLEN)
		return;
	memcpy(buf, op, oplen);
	buf[oplen] = '\0';
	SpinLockAcquire(&qshared->mutex);
	k = gf_slot(relid, prio, ws, buf, oplen, false);
	if (k >= 0)
	{
		GFloor	   *g = &qshared->group[k];

		if (g->valid && id < g->floor)
			g->floor = id;
		if (g->next_valid && id < g->next)
			g->next = id;
		g->notes++;
		if (g->scanners > 0 && id < g->wmin)
			g->wmin = id;
	}
	SpinLockRelease(&qshared->mutex);
}

/*
 * A run claim locked stays queued (flow control held it back when it was
 * to start, or it was fetched beyond what the claim wanted): the hint its
 * lock left comes back to it, as for a run queued there.
 */
void
rg_queue_kept(int32 prio, int64 ws, const char *op, int64 id)
{
	if (OidIsValid(q_relid))
		gf_note(q_relid, prio, ws, op, strlen(op), id);
}

/*
 * The groups whose hint this transaction moved (gf_hint): if it rolls back,
 * the runs it locked are queued again before those hints, which are then
 * forgotten (hint_forget). More than HINT_MAX: every hint of the database.
 */
#define HINT_MAX 16
static int	hint_n = 0;
static bool hint_overflow = false;
static int	hint_slot[HINT_MAX];
static uint32 hint_incarnation[HINT_MAX];

/* The group walk a candidate came from, as gf_begin opened it. */
typedef struct GfMark
{
	bool		valid;
	int			slot;
	uint32		incarnation;
	uint32		notes;
} GfMark;

/*
 * A claim locked run id of group (prio, ws, op), having passed in this walk
 * (mark) only entries dead, claimed or held by other claims: the group's
 * next run that may start is likely after it. With next_known, the walk
 * read the group's entry after id (next; PG_INT64_MAX at the group's end),
 * and when nothing was queued to the group since the walk began, the hint
 * goes there: an entry between them would have been read, or written after
 * the walk began, and every write to the group is noted (after its index
 * entry, note_queued). The hint only orders the walks (see gf_peek); a
 * walk still starts from the floor.
 */
static void
gf_hint(Oid relid, int32 prio, int64 ws, const char *op, int64 id,
		bool next_known, int64 next, const GfMark *mark)
{
	size_t		oplen = strlen(op);
	int			k;

	if (!gf_usable(oplen))
		return;
	SpinLockAcquire(&qshared->mutex);
	k = gf_slot(relid, prio, ws, op, oplen, false);
	if (k >= 0)
	{
		GFloor	   *g = &qshared->group[k];
		int64		to = id + 1;
		int			i;

		if (next_known && mark->valid && mark->slot == k &&
			mark->incarnation == g->incarnation && mark->notes == g->notes)
			to = next;
		if (!g->next_valid || to > g->next)
			g->next = to;
		g->next_valid = true;
		for (i = 0; i < hint_n; i++)
			if (hint_slot[i] == k && hint_incarnation[i] == g->incarnation)
				break;
		if (i == hint_n)
		{
			if (hint_n < HINT_MAX)
			{
				hint_slot[hint_n] = k;
				hint_incarnation[hint_n++] = g->incarnation;
			}
			else
				hint_overflow = true;
		}
	}
	SpinLockRelease(&qshared->mutex);
}

/* The transaction that moved hints ends: forget them if it rolled back. */
static void
hint_forget(bool rolled_back)
{
	int			i;

	if (rolled_back && (hint_n > 0 || hint_overflow) && qshared != NULL)
	{
		SpinLockAcquire(&qshared->mutex);
		if (hint_overflow)
		{
			for (i = 0; i < GF_SLOTS; i++)
				if (qshared->group[i].dbid == MyDatabaseId)
					qshared->group[i].next_valid = false;
		}
		else
			for (i = 0; i < hint_n; i++)
				if (qshared->group[hint_slot[i]].incarnation == hint_incarnation[i])
					qshared->group[hint_slot[i]].next_valid = false;
		SpinLockRelease(&qshared->mutex);
	}
	hint_n = 0;
	hint_overflow = false;
}

/*
 * A prepared transaction may still be rolled back, by another session:
 * its hints are forgotten as if it were. A subtransaction that rolls back
 * forgets every hint of the transaction (a hint forgotten costs a walk).
 */
static void
hint_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		hint_forget(true);
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		hint_forget(false);
}

static void
hint_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		hint_forget(true);
}

/* Forget every group floor of relid, voiding the raises of open walks. */
static void
gf_forget(Oid relid)
{
	int			i;

	SpinLockAcquire(&qshared->mutex);
	for (i = 0; i < GF_SLOTS; i++)
	{
		GFloor	   *g = &qshared->group[i];

		if (g->dbid == MyDatabaseId && g->relid == relid)
		{
			g->valid = false;
			g->held = false;
			g->next_valid = false;
			g->epoch++;
		}
	}
	SpinLockRelease(&qshared->mutex);
}

static void
queue_inval(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == q_relid || relid == q_index ||
		relid == q_fair)
	{
		if (qshared != NULL && OidIsValid(q_relid))
		{
			forget(q_relid);
			gf_forget(q_relid);
		}
		gl_valid = false;
		q_valid = false;
	}
}

void
rg_queue_init(void)
{
	DefineCustomBoolVariable("rungate.queue_floor",
							 "Lets claims scan the queue from the shared queue floor.",
							 "Needs rungate in shared_preload_libraries. Off, this session's "
							 "claims scan the queue index from its start; they take the same "
							 "runs either way.",
							 &floor_enabled,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(queue_inval, (Datum) 0);
	RegisterXactCallback(hint_xact_callback, NULL);
	RegisterSubXactCallback(hint_subxact_callback, NULL);
}

/* ---- the index and the trigger ---- */

/* Does rel fire rungate.note_queued after every insert and update, always? */
static bool
floor_watched(Relation rel)
{
	const int16 after_rows = TRIGGER_TYPE_ROW | TRIGGER_TYPE_INSERT | TRIGGER_TYPE_UPDATE;

	return rg_fires_always(rel, "note_queued",
						   after_rows | TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_INSTEAD,
						   after_rows);
}

/* rel is rungate.runs, locked: find its queue index, and the trigger. */
static void
queue_lookup(Relation rel)
{
	Relation	idx;
	Form_pg_index ix;
	bool		ok;

	if (q_valid && q_relid == RelationGetRelid(rel))
		return;
	q_relid = RelationGetRelid(rel);
	q_index = rg_relid("runs_queue_idx", true);
	if (!OidIsValid(q_index))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("index rungate.runs_queue_idx is missing"),
				 errhint("rungate.claim scans it; recreate the extension's index.")));
	idx = index_open(q_index, AccessShareLock);
	ix = idx->rd_index;
	ok = ix->indrelid == q_relid && ix->indnkeyatts == 2 &&
		ix->indkey.values[0] == queue_table.att[QT_PRIO] &&
		ix->indkey.values[1] == queue_table.att[QT_ID] &&
		(idx->rd_indoption[0] & INDOPTION_DESC) != 0 &&
		(idx->rd_indoption[1] & INDOPTION_DESC) == 0 &&
		idx->rd_rel->relam == BTREE_AM_OID && ix->indisvalid;
	index_close(idx, AccessShareLock);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index rungate.runs_queue_idx is not the claim order"),
				 errdetail("rungate.claim needs a valid btree on rungate.runs (priority DESC, id)."),
				 errhint("Recreate the extension's index.")));
	q_watched = floor_watched(rel);

	/* the fair order (1.6): priority DESC, workspace_id, operation, id */
	q_fair = rg_relid("runs_fair_idx", true);
	if (OidIsValid(q_fair))
	{
		idx = index_open(q_fair, AccessShareLock);
		ix = idx->rd_index;
		ok = ix->indrelid == q_relid && ix->indnkeyatts == 4 &&
			ix->indkey.values[0] == queue_table.att[QT_PRIO] &&
			ix->indkey.values[1] == queue_table.att[QT_WORKSPACE] &&
			ix->indkey.values[2] == queue_table.att[QT_OPERATION] &&
			ix->indkey.values[3] == queue_table.att[QT_ID] &&
			(idx->rd_indoption[0] & INDOPTION_DESC) != 0 &&
			(idx->rd_indoption[1] & INDOPTION_DESC) == 0 &&
			(idx->rd_indoption[2] & INDOPTION_DESC) == 0 &&
			(idx->rd_indoption[3] & INDOPTION_DESC) == 0 &&
			idx->rd_rel->relam == BTREE_AM_OID && ix->indisvalid;
		index_close(idx, AccessShareLock);
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("index rungate.runs_fair_idx is not the fair claim order"),
					 errdetail("rungate.claim needs a valid btree on rungate.runs (priority DESC, workspace_id, operation, id)."),
					 errhint("Recreate the extension's index.")));
	}
	q_valid = true;
}

/* ---- the scan ---- */

/* Is a status datum 'queued'? */
static inline bool
is_queued(Datum status)
{
	text	   *t = DatumGetTextPP(status);

	return rg_status_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)) == RG_QUEUED;
}

/* op (len bytes) among the texts ops[0..nops-1] (operation names) */
static bool
op_listed(const char *op, size_t len, Datum *ops, int nops)
{
	int			i;

	for (i = 0; i < nops; i++)
		if (rg_text_is(DatumGetTextPP(ops[i]), op, len))
			return true;
	return false;
}

static inline bool
op_matches(Datum e, Datum *ops, int nops)
{
	text	   *t = DatumGetTextPP(e);

	return op_listed(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), ops, nops);
}

typedef struct FloorScan
{
	bool		live_seen;		/* an entry that is not all_dead came */
	QPos		live;			/* the first such */
	bool		dead_seen;		/* before it: all_dead entries */
	QPos		last_dead;		/* the last of them */
	bool		held;			/* before it: live runs not due */
	QPos		hold;
	TimestampTz hold_due;
} FloorScan;

static void
saw_live(FloorScan *st, QPos p)
{
	if (!st->live_seen)
	{
		st->live_seen = true;
		st->live = p;
	}
}

/*
 * One pass of the index with nkeys keys: lock due queued runs for take()
 * until n reaches max. Returns the new n.
 */
static int
scan_pass(Relation rel, Relation idx, Snapshot snap, ScanKey keys, int nkeys,
		  int n, int max, Datum *ops, int nops, FloorScan *st,
		  TupleTableSlot *heap, TupleTableSlot *locked,
		  RgQueueTake take, void *arg)
{
	IndexScanDesc scan;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	CommandId	cid = GetCurrentCommandId(true);

	scan = rg_index_beginscan(rel, idx, snap, nkeys, 0);
	scan->xs_want_itup = true;	/* the key of every entry, live or not */
	index_rescan(scan, keys, nkeys, NULL, 0);
	while (n < max && index_getnext_tid(scan, ForwardScanDirection) != NULL)
	{
		QPos		p;
		bool		isnull;
		Datum		d;
		TM_FailureData tmfd;

		CHECK_FOR_INTERRUPTS();
		p.prio = DatumGetInt32(index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &isnull));
		p.id = DatumGetInt64(index_getattr(scan->xs_itup, 2, scan->xs_itupdesc, &isnull));
		if (!index_fetch_heap(scan, heap))
		{
			/* invisible: all_dead (kill_prior_tuple), or not yet/still live */
			if (st->live_seen)
				continue;
			if (scan->kill_prior_tuple)
			{
				st->dead_seen = true;
				st->last_dead = p;
			}
			else
				saw_live(st, p);
			continue;
		}
		d = slot_getattr(heap, queue_table.att[QT_STATUS], &isnull);
		if (isnull || !is_queued(d))
		{
			saw_live(st, p);
			continue;
		}
		d = slot_getattr(heap, queue_table.att[QT_RUN_AT], &isnull);
		if (!isnull && DatumGetTimestampTz(d) > now)
		{
			/* not due: the floor may pass it, remembering it */
			if (!st->live_seen)
			{
				if (!st->held || before(p, st->hold))
					st->hold = p;
				if (!st->held || DatumGetTimestampTz(d) < st->hold_due)
					st->hold_due = DatumGetTimestampTz(d);
				st->held = true;
			}
			continue;
		}
		saw_live(st, p);
		if (ops != NULL &&
			!op_matches(slot_getattr(heap, queue_table.att[QT_OPERATION], &isnull),
						ops, nops))
			continue;
		if (table_tuple_lock(rel, &heap->tts_tid, snap, locked, cid,
							 LockTupleNoKeyExclusive, LockWaitSkip, 0,
							 &tmfd) != TM_Ok)
			continue;			/* held by another, or changed since */
		slot_getallattrs(locked);
		take(locked, arg);
		n++;
	}
	index_endscan(scan);
	return n;
}

/* The passes of one fetch: from the floor if there is one, else all. */
static int
scan_queue(Relation rel, Relation idx, Snapshot snap, bool from_floor, QPos f0,
		   int max, Datum *ops, int nops, FloorScan *st,
		   TupleTableSlot *heap, TupleTableSlot *locked,
		   RgQueueTake take, void *arg)
{
	ScanKeyData keys[2];
	int			n;

	if (!from_floor)
		return scan_pass(rel, idx, snap, NULL, 0, 0, max, ops, nops, st,
						 heap, locked, take, arg);

	/* the floor's priority from its id on, then the lower priorities */
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(f0.prio));
	ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
				Int64GetDatum(f0.id));
	n = scan_pass(rel, idx, snap, keys, 2, 0, max, ops, nops, st,
				  heap, locked, take, arg);
	if (n < max)
	{
		ScanKeyInit(&keys[0], 1, BTLessStrategyNumber, F_INT4LT,
					Int32GetDatum(f0.prio));
		n = scan_pass(rel, idx, snap, keys, 1, n, max, ops, nops, st,
					  heap, locked, take, arg);
	}
	return n;
}

/*
 * Lock up to max due queued runs of rungate.runs (rel, opened by the
 * caller) in claim order, optionally only of the operations in ops, and
 * hand each to take() as a slot of the locked version (valid only during
 * the call). Rows written earlier in this transaction are seen. Returns
 * how many were taken.
 */
int
rg_queue_fetch(Relation rel, int max, ArrayType *ops_array,
			   RgQueueTake take, void *arg)
{
	Relation	idx;
	Snapshot	snap;
	TupleTableSlot *heap,
			   *locked;
	Datum	   *ops = NULL;
	int			nops = 0;
	volatile int n = 0;
	FloorScan	st;
	QFloor	   *s;
	volatile bool use_floor;
	volatile bool from_floor = false;
	QPos		f0 = {0, 0};
	volatile uint64 gen0 = 0;

	/* it locks rows, as SELECT ... FOR NO KEY UPDATE would */
	PreventCommandIfReadOnly("rungate.claim()");
	PreventCommandIfParallelMode("rungate.claim()");
	rg_table_lookup(&queue_table);
	queue_lookup(rel);
	if (ops_array != NULL)
		deconstruct_array(ops_array, TEXTOID, -1, false, TYPALIGN_INT,
						  &ops, NULL, &nops);
	idx = index_open(q_index, AccessShareLock);
	heap = table_slot_create(rel, NULL);
	locked = table_slot_create(rel, NULL);
	memset(&st, 0, sizeof(st));

	/* as a statement would: our own earlier writes are seen */
	CommandCounterIncrement();
	snap = RegisterSnapshot(GetTransactionSnapshot());

	/* read the floor after the snapshot: a row it shows is not before it */
	use_floor = qshared != NULL && q_watched && floor_enabled;
	if (use_floor)
	{
		TimestampTz now = GetCurrentTransactionStartTimestamp();

		SpinLockAcquire(&qshared->mutex);
		s = slot_of(q_relid, true);
		if (s != NULL)
		{
			if (s->held && s->hold_due <= now)
			{
				if (s->valid && before(s->hold, s->floor))
					s->floor = s->hold;
				s->held = false;
				s->gen++;
			}
			s->scanners++;
			gen0 = s->gen;
			from_floor = s->valid;
			f0 = s->floor;
		}
		else
			use_floor = false;
		SpinLockRelease(&qshared->mutex);
	}

	PG_TRY();
	{
		n = scan_queue(rel, idx, snap, from_floor, f0, max, ops, nops, &st,
					   heap, locked, take, arg);
	}
	PG_CATCH();
	{
		if (use_floor)
		{
			SpinLockAcquire(&qshared->mutex);
			s = slot_of(q_relid, false);
			if (s != NULL && s->scanners > 0)
				s->scanners--;
			SpinLockRelease(&qshared->mutex);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (use_floor)
	{
		/* raise to the first live entry, or past the last dead one */
		bool		raise = st.live_seen;
		QPos		to = st.live;

		if (!raise && st.dead_seen && st.last_dead.id < PG_INT64_MAX)
		{
			raise = true;
			to.prio = st.last_dead.prio;
			to.id = st.last_dead.id + 1;
		}
		SpinLockAcquire(&qshared->mutex);
		s = slot_of(q_relid, false);
		if (s != NULL)
		{
			if (s->scanners > 0)
				s->scanners--;
			if (raise && s->gen == gen0)
			{
				if (!s->valid || before(s->floor, to))
					s->floor = to;
				s->valid = true;
				if (st.held)
				{
					if (!s->held || before(st.hold, s->hold))
						s->hold = st.hold;
					if (!s->held || st.hold_due < s->hold_due)
						s->hold_due = st.hold_due;
					s->held = true;
				}
			}
		}
		SpinLockRelease(&qshared->mutex);
	}

	UnregisterSnapshot(snap);
	ExecDropSingleTupleTableSlot(heap);
	ExecDropSingleTupleTableSlot(locked);
	index_close(idx, AccessShareLock);
	return n;
}

/* ---- the fair scan (1.6) ---- */

/*
 * Claim's fair order (docs/reference.md, "Fair turns"): at the highest
 * priority with a run that may start, the oldest such run of the workspace
 * whose last turn is the longest ago (no turn yet sorts first; ties go to
 * the oldest run). runs_fair_idx (priority DESC, workspace_id, operation,
 * id WHERE status = 'queued') keeps each workspace's runs of a priority
 * together, by operation: the scan finds the oldest run of a (workspace,
 * operation) group with one descent, and walks a group only while its
 * floor (a lower bound of its oldest run, read without a descent) comes
 * before the best run found in the groups walked so far. So a workspace
 * with 100,000 runs queued costs a neighbour at most one descent, and a
 * group that flow control closes as a whole (a hold on the workspace or
 * the operation, a limit of the workspace or of the type that is full)
 * costs none, not one step per held-back run.
 * Runs held back one by one (a tenant's hold or limit) are still passed
 * one at a time; runs not yet due are passed once (below).
 *
 * Claimed runs leave dead entries at the start of their group, so each
 * group has a floor like the database's floor above: an id before which
 * every entry of the group is dead to every transaction (GF_EMPTY: all
 * are), in a table of GF_SLOTS groups in shared memory (least recently
 * walked out first; a group without one is walked from its start).
 *   - A walk of a group starts at its floor and raises it to the first
 *     entry it finds that is neither all_dead nor a run not yet due, or to
 *     GF_EMPTY when it reaches the group's end without one. The runs not
 *     yet due that it passed are remembered (the least id, the earliest
 *     run_at): the first walk whose now() reaches that run_at puts the
 *     floor back to that id, voiding the raises of walks open then. So a
 *     group with 10,000 runs due tomorrow is walked once, not per claim.
 *   - note_queued lowers the floor of a run's group to the run, and while
 *     walks of the group are open it keeps the least id queued (wmin): a
 *     walk never raises the floor past a run queued while it walked.
 *   - An invalidation of rungate.runs or its indexes forgets every floor
 *     (the epoch voids the raises of walks open then).
 * The groups themselves are found with scans that return dead entries too
 * (ignore_killed_tuples off), so finding a group costs one descent however
 * many dead entries it starts with.
 */

typedef struct FairCand
{
	int64		ws;
	char	   *operation;
	uint64		turn;			/* its workspace's last turn, as this fetch sees it */
	bool		walked;			/* else id is only a bound (gf_peek), tid unset */
	bool		clean;			/* its walk passed no run that may start later */
	bool		first;			/* nor a row written by a transaction not seen
								 * committed, nor one it found locked */
	GfMark		mark;			/* that walk */
	int64		id;				/* the group's oldest run that may start */
	ItemPointerData tid;
} FairCand;

/*
 * The scans of the fair index a fetch may use, each begun when first used
 * (most claims walk one group from its floor: one scan).
 */
typedef enum FairScanKind
{
	FS_FIND1,					/* finding groups, by number of keys */
	FS_FIND2,
	FS_FIND3,
	FS_WALK3,					/* walking a group from its start */
	FS_WALK4,					/* walking a group from an id on */
	FS_KINDS
} FairScanKind;

typedef struct FairScan
{
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;			/* the one in use */
	IndexScanDesc scans[FS_KINDS];	/* NULL until used */
	Oid			opcoll;			/* the collation of the index's operation */
	Snapshot	snap;
	TupleTableSlot *heap;
	TimestampTz now;
	Datum	   *ops;
	int			nops;
	/* the entry the scan is on */
	int64		e_ws;
	int64		e_id;
	text	   *e_op;
	/* the walk stopped on candidate at_id and has not moved since */
	bool		at_valid;
	int64		at_id;
} FairScan;

/* How many keys a scan of that kind positions on */
static inline int
fair_nkeys(FairScanKind kind)
{
	return kind <= FS_FIND3 ? kind - FS_FIND1 + 1 : kind == FS_WALK3 ? 3 : 4;
}

/* The scan of that kind, begun when first used */
static IndexScanDesc
fair_scan(FairScan *fs, FairScanKind kind)
{
	if (fs->scans[kind] == NULL)
	{
		IndexScanDesc scan = rg_index_beginscan(fs->rel, fs->idx, fs->snap,
												fair_nkeys(kind), 0);

		scan->xs_want_itup = true;	/* the keys of every entry */
		/* finding groups, dead entries count too: a dead head costs nothing */
		scan->ignore_killed_tuples = kind >= FS_WALK3;
		fs->scans[kind] = scan;
	}
	return fs->scans[kind];
}

/*
 * Position the scan of that kind at priority p and, by its number of keys:
 * any workspace (1); a workspace after ws (2, !same_ws) or ws itself (2,
 * same_ws); an operation of ws after op (3, !same_op) or op itself (3,
 * same_op); the runs of (ws, op) from id on (4, from) or after it (4,
 * !from).
 */
static void
fair_seek(FairScan *fs, FairScanKind kind, int32 p, int64 ws,
		  bool same_ws, const char *op, bool same_op, int64 id, bool from)
{
	IndexScanDesc scan = fair_scan(fs, kind);
	int			nkeys = fair_nkeys(kind);
	ScanKeyData keys[4];

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(p));
	if (nkeys >= 2)
		ScanKeyInit(&keys[1], 2,
					same_ws || nkeys > 2 ? BTEqualStrategyNumber : BTGreaterStrategyNumber,
					same_ws || nkeys > 2 ? F_INT8EQ : F_INT8GT, Int64GetDatum(ws));
	if (nkeys >= 3)
		ScanKeyEntryInitialize(&keys[2], 0, 3,
							   same_op || nkeys > 3 ? BTEqualStrategyNumber : BTGreaterStrategyNumber,
							   InvalidOid, fs->opcoll,
							   same_op || nkeys > 3 ? F_TEXTEQ : F_TEXT_GT,
							   CStringGetTextDatum(op));
	if (nkeys == 4)
		ScanKeyInit(&keys[3], 4,
					from ? BTGreaterEqualStrategyNumber : BTGreaterStrategyNumber,
					from ? F_INT8GE : F_INT8GT, Int64GetDatum(id));
	fs->scan = scan;
	fs->at_valid = false;
	index_rescan(scan, keys, nkeys, NULL, 0);
}

/* The next entry, its keys in fs->e_*; false at the end. */
static bool
fair_next(FairScan *fs)
{
	bool		isnull;

	CHECK_FOR_INTERRUPTS();
	fs->at_valid = false;		/* the scan moves; a walk that stops says so */
	if (index_getnext_tid(fs->scan, ForwardScanDirection) == NULL)
		return false;
	fs->e_ws = DatumGetInt64(index_getattr(fs->scan->xs_itup, 2, fs->scan->xs_itupdesc, &isnull));
	fs->e_op = DatumGetTextPP(index_getattr(fs->scan->xs_itup, 3, fs->scan->xs_itupdesc, &isnull));
	fs->e_id = DatumGetInt64(index_getattr(fs->scan->xs_itup, 4, fs->scan->xs_itupdesc, &isnull));
	return true;
}

/*
 * The entry the scan is on may start now, as far as the scan can tell: its
 * row is visible and queued, due, and not held back by flow control (its
 * operation is wanted: fair_level lists no other group). *dead: its row is
 * dead to every transaction; *due: when a queued row is not due yet, its
 * run_at (else 0); *invisible: the row is neither dead nor visible to the
 * scan's snapshot.
 */
static bool
fair_eligible(FairScan *fs, bool *dead, TimestampTz *due, bool *held_back,
			  bool *invisible)
{
	TupleTableSlot *h = fs->heap;
	bool		isnull;
	Datum		d;
	bool		no_tenant;
	int64		tenant;

	*dead = false;
	*due = 0;
	*held_back = false;
	*invisible = false;
	if (!index_fetch_heap(fs->scan, h))
	{
		*dead = fs->scan->kill_prior_tuple;
		*invisible = !*dead;
		return false;
	}
	d = slot_getattr(h, queue_table.att[QT_STATUS], &isnull);
	if (isnull || !is_queued(d))
		return false;
	d = slot_getattr(h, queue_table.att[QT_RUN_AT], &isnull);
	if (!isnull && DatumGetTimestampTz(d) > fs->now)
	{
		*due = DatumGetTimestampTz(d);
		return false;
	}
	/* from here on, a run that may start later or for another claim */
	*held_back = true;
	d = slot_getattr(h, queue_table.att[QT_OPERATION], &isnull);
	tenant = DatumGetInt64(slot_getattr(h, queue_table.att[QT_TENANT], &no_tenant));
	(void) slot_getattr(h, queue_table.att[QT_ITEM_TENANTS], &isnull);
	if (!rg_flow_may_take(fs->e_ws, !no_tenant, tenant, TextDatumGetCString(d), !isnull))
		return false;
	*held_back = false;
	return true;
}

/*
 * The row of the entry the scan is on, invisible to the scan's snapshot and
 * not dead: was it written by a transaction the snapshot does not see as
 * committed (an enqueue, or a run put back to queued, that may yet commit)?
 * Else the snapshot saw it changed (a run claimed). Unsure: yes.
 */
static bool
fair_unseen_write(FairScan *fs)
{
	ItemPointer tid = &fs->scan->xs_heaptid;
	OffsetNumber off = ItemPointerGetOffsetNumber(tid);
	Buffer		buf = ReadBuffer(fs->scan->heapRelation, ItemPointerGetBlockNumber(tid));
	Page		page;
	bool		unseen = true;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (off >= FirstOffsetNumber && off <= PageGetMaxOffsetNumber(page))
	{
		ItemId		lp = PageGetItemId(page, off);

		if (ItemIdIsNormal(lp))
		{
			HeapTupleHeader h = (HeapTupleHeader) PageGetItem(page, lp);
			TransactionId xmin = HeapTupleHeaderGetXmin(h);

			/* frozen or bootstrap: seen; aborted: never seen, never queued */
			unseen = TransactionIdIsNormal(xmin) &&
				!TransactionIdIsCurrentTransactionId(xmin) &&
				XidInMVCCSnapshot(xmin, fs->snap);
		}
	}
	UnlockReleaseBuffer(buf);
	return unseen;
}

/*
 * Walk (ws, op) from where the scan is to its first run that may start.
 * *live: the id of the first entry that is neither dead to every
 * transaction nor, with held, a queued run not yet due (GF_EMPTY if none
 * came); held: the ones not yet due passed before it.
 */
static bool
fair_walk_group(FairScan *fs, int64 ws, const char *op, FairCand *c,
				int64 *live, GfHeld *held)
{
	size_t		oplen = strlen(op);

	*live = GF_EMPTY;
	do
	{
		bool		dead;
		TimestampTz due;
		bool		held_back;
		bool		invisible;

		if (fs->e_ws != ws || !rg_text_is(fs->e_op, op, oplen))
			return false;		/* the group ended */
		if (fair_eligible(fs, &dead, &due, &held_back, &invisible))
		{
			c->id = fs->e_id;
			c->tid = fs->heap->tts_tid;
			fs->at_valid = true;
			fs->at_id = c->id;
			if (*live == GF_EMPTY)
				*live = fs->e_id;
			return true;
		}
		if (held_back || due != 0)
			c->clean = false;
		else if (invisible && c->first && fair_unseen_write(fs))
			c->first = false;
		if (dead || *live != GF_EMPTY)
			continue;
		if (due != 0 && held != NULL)
		{
			if (held->id == GF_EMPTY)
			{
				held->id = fs->e_id;	/* walks go up: the least */
				held->due = due;
			}
			else
				held->due = Min(held->due, due);
		}
		else
			*live = fs->e_id;
	} while (fair_next(fs));
	return false;
}

/*
 * The next run of c's group at priority p after c->id that may start: where
 * the walk that found c stopped, if the scan has not moved since (a run
 * held by another claim costs no new descent), else from a new descent.
 */
static bool
fair_next_in(FairScan *fs, int32 p, FairCand *c)
{
	int64		live;

	if (!fs->at_valid || fs->at_id != c->id)
		fair_seek(fs, FS_WALK4, p, c->ws, true, c->operation, true, c->id, false);
	c->first = false;			/* it passes c->id, locked or changed */
	return fair_next(fs) && fair_walk_group(fs, c->ws, c->operation, c, &live, NULL);
}

/*
 * The oldest run of c's group (p, c->ws, c->operation) that may start, in
 * c->id and c->tid, walking from the group's floor (the entries before it
 * are dead), and raising the floor to the first entry found live.
 */
static bool
fair_first_in(FairScan *fs, int32 p, FairCand *c)
{
	int64		ws = c->ws;
	const char *op = c->operation;
	int64		floor = 0;
	int64		live = GF_EMPTY;
	GfHeld		held = {GF_EMPTY, 0};
	bool		found = false;

	c->clean = true;
	c->first = true;
	c->mark.valid = false;
	if (gf_begin(q_relid, p, ws, op, fs->now, &floor))
	{
		if (floor == GF_EMPTY)
		{
			gf_end(false, 0, NULL); /* no run of it is live or due */
			return false;
		}
		fair_seek(fs, FS_WALK4, p, ws, true, op, true, floor, true);
	}
	else
		fair_seek(fs, FS_WALK3, p, ws, true, op, true, 0, false);
	if (gf_walk.open)
	{
		c->mark.valid = true;
		c->mark.slot = gf_walk.slot;
		c->mark.incarnation = gf_walk.incarnation;
		c->mark.notes = gf_walk.notes;
	}
	if (fair_next(fs))
		found = fair_walk_group(fs, ws, op, c, &live, &held);
	gf_end(true, live, &held);
	return found;
}

static FairCand *
fair_add(FairCand **cands, int *n, int *size)
{
	if (*n == *size)
	{
		*size *= 2;
		*cands = repalloc(*cands, sizeof(FairCand) * *size);
	}
	return &(*cands)[(*n)++];
}

/* The key of group (prio, ws, op) in gl_index; false: op is too long. */
static bool
gl_key(GlKey *k, int32 prio, int64 ws, const char *op)
{
	memset(k, 0, sizeof(*k));
	k->ws = ws;
	k->prio = prio;
	return strlcpy(k->op, op, sizeof(k->op)) < sizeof(k->op);
}

/* Append group (ws, op) to level lv (in gl_cxt), and to gl_index if kept. */
static void
gl_add(GlLevel *lv, int *size, int64 ws, text *op)
{
	MemoryContext old = MemoryContextSwitchTo(gl_cxt);

	if (lv->ngroups == *size)
	{
		*size *= 2;
		lv->groups = repalloc(lv->groups, sizeof(GlGroup) * *size);
	}
	lv->groups[lv->ngroups].ws = ws;
	lv->groups[lv->ngroups].op = text_to_cstring(op);
	if (gl_index != NULL)
	{
		GlKey		k;

		if (gl_key(&k, lv->prio, ws, lv->groups[lv->ngroups].op))
			(void) hash_search(gl_index, &k, HASH_ENTER, NULL);
	}
	lv->ngroups++;
	gl_ngroups++;
	MemoryContextSwitchTo(old);
}

/*
 * List the (workspace, operation) groups of priority p in lv, in index
 * order: one descent per group, with the scans that return dead entries
 * too (a group's dead head costs nothing).
 */
static void
fair_list_level(FairScan *fs, int32 p, GlLevel *lv)
{
	int			size = 16;
	bool		has_ws = false;
	int64		ws = 0;

	lv->prio = p;
	lv->ngroups = 0;
	lv->groups = MemoryContextAlloc(gl_cxt, sizeof(GlGroup) * size);
	for (;;)
	{
		fair_seek(fs, has_ws ? FS_FIND2 : FS_FIND1, p, ws, false,
				  NULL, false, 0, false);
		if (!fair_next(fs))
			return;				/* the level is exhausted */
		ws = fs->e_ws;
		has_ws = true;
		/* the entry found is the first group's; then the others of ws */
		for (;;)
		{
			gl_add(lv, &size, ws, fs->e_op);
			fair_seek(fs, FS_FIND3, p, ws, true,
					  lv->groups[lv->ngroups - 1].op, false, 0, false);
			if (!fair_next(fs))
				break;
		}
	}
}

/*
 * Every group of level lv that may have a run that may start, not walked
 * yet: its id is the bound gf_peek gives. Returns how many (in *cands,
 * grown as needed). A workspace held as a whole, a group flow control
 * closes as a whole, and a group whose floor says it has no live run left
 * cost no descent.
 */
static int
fair_level(FairScan *fs, GlLevel *lv, FairCand **cands, int *size)
{
	int			n = 0;
	int			i;
	bool		has_ws = false;
	int64		ws = 0;
	bool		held = false;
	uint64		turn = 0;

	for (i = 0; i < lv->ngroups; i++)
	{
		GlGroup    *g = &lv->groups[i];
		FairCand   *nc;
		int64		bound;

		if (!has_ws || g->ws != ws)
		{
			has_ws = true;
			ws = g->ws;
			held = rg_flow_skip_workspace(ws);
			if (!held)
				turn = rg_turn_of(q_relid, ws);
		}
		/* a group of an operation not wanted is never walked */
		if (held ||
			(fs->ops != NULL && !op_listed(g->op, strlen(g->op), fs->ops, fs->nops)) ||
			rg_flow_skip_group(ws, g->op) ||
			!gf_peek(q_relid, lv->prio, ws, g->op, fs->now, &bound))
			continue;
		nc = fair_add(cands, &n, size);
		nc->ws = ws;
		nc->operation = g->op;
		nc->turn = turn;
		nc->walked = false;
		nc->id = bound;
	}
	return n;
}

/* The highest priority below `below` (any, if !has_below) with an entry. */
static bool
fair_next_priority(FairScan *fs, bool has_below, int32 below, int32 *p)
{
	ScanKeyData key;
	bool		isnull;

	if (has_below)
		ScanKeyInit(&key, 1, BTLessStrategyNumber, F_INT4LT, Int32GetDatum(below));
	else
		ScanKeyInit(&key, 1, BTLessEqualStrategyNumber, F_INT4LE,
					Int32GetDatum(PG_INT32_MAX));
	fs->scan = fair_scan(fs, FS_FIND1);
	fs->at_valid = false;
	index_rescan(fs->scan, &key, 1, NULL, 0);
	if (index_getnext_tid(fs->scan, ForwardScanDirection) == NULL)
		return false;
	*p = DatumGetInt32(index_getattr(fs->scan->xs_itup, 1, fs->scan->xs_itupdesc, &isnull));
	return true;
}

/* The i-th priority level with entries, listed if it was not yet. */
static GlLevel *
gl_level(FairScan *fs, int i)
{
	int32		p;

	if (i < gl_nlevels)
		return &gl_levels[i];
	if (gl_levels_end ||
		!fair_next_priority(fs, i > 0, i > 0 ? gl_levels[i - 1].prio : 0, &p))
	{
		gl_levels_end = true;
		return NULL;
	}
	if (gl_nlevels == gl_size)
	{
		gl_size *= 2;
		gl_levels = repalloc(gl_levels, sizeof(GlLevel) * gl_size);
	}
	fair_list_level(fs, p, &gl_levels[gl_nlevels]);
	return &gl_levels[gl_nlevels++];
}

/*
 * Does the kept list hold the group of every write in w[0..n)? A write to
 * a level not listed yet is found when that level is listed.
 */
static bool
gl_holds(const QWrite *w, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		GlKey		k;
		int			l;

		if (!w[i].known)
			return false;
		for (l = 0; l < gl_nlevels && gl_levels[l].prio != w[i].prio; l++)
			;
		if (l == gl_nlevels)
		{
			if (gl_levels_end ||
				(gl_nlevels > 0 && w[i].prio > gl_levels[gl_nlevels - 1].prio))
				return false;	/* a new level among the listed ones */
			continue;
		}
		if (!gl_key(&k, w[i].prio, w[i].ws, w[i].op) ||
			hash_search(gl_index, &k, HASH_FIND, NULL) == NULL)
			return false;
	}
	return true;
}

/*
 * Start this fetch's group list: the kept one if every queued write since
 * it was made went to a group it holds, else an empty one (kept for later
 * fetches only when rungate is preloaded and note_queued watches the
 * table).
 */
static void
gl_begin(void)
{
	static QWrite since[QW_RING];	/* 5 kB: not on the stack */
	bool		keep = qshared != NULL && q_watched && floor_enabled;
	bool		kept = keep && gl_valid && gl_relid == q_relid;
	uint64		qgen = 0;
	int			n = -1;			/* the writes since gl_qgen; -1: too many */

	if (keep)
	{
		QFloor	   *s;

		SpinLockAcquire(&qshared->mutex);
		s = slot_of(q_relid, true);
		if (s != NULL)
		{
			qgen = s->qgen;
			if (kept && qgen - gl_qgen <= QW_RING)
			{
				uint64		g;

				n = 0;
				for (g = gl_qgen; g < qgen; g++)
					since[n++] = s->ring[g % QW_RING];
			}
		}
		else
			keep = false;
		SpinLockRelease(&qshared->mutex);
	}
	if (keep && kept && n >= 0 && gl_holds(since, n))
	{
		gl_qgen = qgen;
		return;
	}
	if (gl_cxt == NULL)
		gl_cxt = AllocSetContextCreate(TopMemoryContext, "rungate fair groups",
									   (Size) 0, (Size) 8192, (Size) 65536);
	MemoryContextReset(gl_cxt);
	gl_index = NULL;
	if (keep)
		gl_index = rg_blob_hash("rungate fair group index", 64, sizeof(GlKey),
								sizeof(GlKey), gl_cxt);
	gl_size = 4;
	gl_levels = MemoryContextAlloc(gl_cxt, sizeof(GlLevel) * gl_size);
	gl_nlevels = 0;
	gl_ngroups = 0;
	gl_levels_end = false;
	gl_relid = q_relid;
	gl_qgen = qgen;
	gl_valid = keep;
}

/*
 * Does a come before b in fair order: the earlier turn, then the older run.
 * A group not walked yet sorts by its bound (none of its runs is older),
 * after a walked run of the same id: so a group is walked only while its
 * bound comes before every run found, and one whose bound comes after the
 * run taken is never walked.
 */
static inline bool
cand_before(const FairCand *a, const FairCand *b)
{
	if (a->turn != b->turn)
		return a->turn < b->turn;
	if (a->id != b->id)
		return a->id < b->id;
	return a->walked && !b->walked;
}

/* Take up to max runs in fair order (rg_queue_fetch_fair's loop). */
static int
fair_fetch(Relation rel, FairScan *fs, int max, RgQueueTake take, void *arg)
{
	TupleTableSlot *locked = table_slot_create(rel, NULL);
	CommandId	cid = GetCurrentCommandId(true);
	int			size = 16;
	FairCand   *cands = palloc(sizeof(FairCand) * size);
	int			n = 0;
	int			level;
	GlLevel    *lv;
	uint64		local_turn = PG_UINT64_MAX / 2;
	int			i;

	gl_begin();
	for (level = 0; n < max && (lv = gl_level(fs, level)) != NULL; level++)
	{
		int32		p = lv->prio;
		int			ncands = fair_level(fs, lv, &cands, &size);

		while (n < max && ncands > 0)
		{
			int			best = 0;
			FairCand   *c;
			TM_FailureData tmfd;

			for (i = 1; i < ncands; i++)
				if (cand_before(&cands[i], &cands[best]))
					best = i;
			c = &cands[best];
			if (!c->walked)
			{
				/* its bound comes first: walk it, then choose again */
				if (fair_first_in(fs, p, c))
					c->walked = true;
				else
					cands[best] = cands[--ncands];
				continue;
			}
			if (table_tuple_lock(rel, &c->tid, fs->snap, locked, cid,
								 LockTupleNoKeyExclusive, LockWaitSkip, 0,
								 &tmfd) == TM_Ok)
			{
				int64		ws = c->ws;

				slot_getallattrs(locked);
				if (c->clean)
				{
					/*
					 * The last run this fetch takes, with the scan still on
					 * it, and nothing before it that may yet come back
					 * queued unnoted (an enqueue not committed when the
					 * walk passed it, a run another transaction had locked):
					 * the entry after it, for the hint.
					 */
					bool		last = n + 1 == max && c->first &&
						fs->at_valid && fs->at_id == c->id;
					int64		next = PG_INT64_MAX;

					if (last && fair_next(fs) && fs->e_ws == c->ws &&
						rg_text_is(fs->e_op, c->operation, strlen(c->operation)))
						next = fs->e_id;
					gf_hint(q_relid, p, c->ws, c->operation, c->id, last, next,
							&c->mark);
				}
				take(locked, arg);
				n++;
				/* its workspace just had its turn, in every group of it */
				local_turn++;
				for (i = 0; i < ncands; i++)
					if (cands[i].ws == ws)
						cands[i].turn = local_turn;
			}
			/* held by another, or changed since: the group's next run, if any */
			if (n < max && !fair_next_in(fs, p, c))
				cands[best] = cands[--ncands];
		}
	}
	ExecDropSingleTupleTableSlot(locked);
	if (gl_ngroups > GL_MAX_GROUPS)
		gl_valid = false;
	return n;
}

/*
 * Lock up to max runs in fair order and hand each to take(), as
 * rg_queue_fetch does. Falls back to rg_queue_fetch's order on a schema
 * without runs_fair_idx (before 1.6).
 */
int
rg_queue_fetch_fair(Relation rel, int max, ArrayType *ops_array,
					RgQueueTake take, void *arg)
{
	FairScan	fs;
	int			n;
	int			i;

	PreventCommandIfReadOnly("rungate.claim()");
	PreventCommandIfParallelMode("rungate.claim()");
	rg_table_lookup(&queue_table);
	queue_lookup(rel);
	if (!OidIsValid(q_fair))
		return rg_queue_fetch(rel, max, ops_array, take, arg);

	memset(&fs, 0, sizeof(fs));
	if (ops_array != NULL)
		deconstruct_array(ops_array, TEXTOID, -1, false, TYPALIGN_INT,
						  &fs.ops, NULL, &fs.nops);
	fs.rel = rel;
	fs.idx = index_open(q_fair, AccessShareLock);
	fs.opcoll = fs.idx->rd_indcollation[2];
	fs.heap = table_slot_create(rel, NULL);
	fs.now = GetCurrentTransactionStartTimestamp();
	CommandCounterIncrement();
	fs.snap = RegisterSnapshot(GetTransactionSnapshot());

	PG_TRY();
	{
		n = fair_fetch(rel, &fs, max, take, arg);
	}
	PG_CATCH();
	{
		gf_abort();
		gl_valid = false;		/* a level may be half listed */
		PG_RE_THROW();
	}
	PG_END_TRY();

	for (i = 0; i < FS_KINDS; i++)
		if (fs.scans[i] != NULL)
			index_endscan(fs.scans[i]);
	UnregisterSnapshot(fs.snap);
	ExecDropSingleTupleTableSlot(fs.heap);
	index_close(fs.idx, AccessShareLock);
	return n;
}

/* ---- the trigger ---- */

/*
 * rungate.note_queued(): AFTER INSERT OR UPDATE ON rungate.runs FOR EACH ROW
 * WHEN (NEW.status = 'queued'). The row's index entries exist now and no
 * other transaction can see it before we commit: lower the floors (the
 * database's and its group's) to it if it is before them, and keep every
 * claim scanning now from raising them past it.
 */
Datum
rg_note_queued(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tup;
	TupleDesc	desc;
	QPos		p;
	bool		isnull;
	bool		op_null;
	Datum		ws;
	Datum		op;
	text	   *optext = NULL;
	size_t		oplen = 0;
	QFloor	   *s;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("rungate.note_queued() must fire AFTER INSERT OR UPDATE FOR EACH ROW")));
	tup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	if (qshared == NULL)
		return PointerGetDatum(tup);

	rg_table_lookup(&queue_table);
	if (RelationGetRelid(td->tg_relation) != queue_table.relid)
		return PointerGetDatum(tup);
	desc = RelationGetDescr(td->tg_relation);
	p.prio = DatumGetInt32(heap_getattr(tup, queue_table.att[QT_PRIO], desc, &isnull));
	if (isnull)
		return PointerGetDatum(tup);
	p.id = DatumGetInt64(heap_getattr(tup, queue_table.att[QT_ID], desc, &isnull));
	ws = heap_getattr(tup, queue_table.att[QT_WORKSPACE], desc, &isnull);
	op = heap_getattr(tup, queue_table.att[QT_OPERATION], desc, &op_null);
	if (!isnull && !op_null)
	{
		optext = DatumGetTextPP(op);
		oplen = VARSIZE_ANY_EXHDR(optext);
		gf_note(queue_table.relid, p.prio, DatumGetInt64(ws),
				VARDATA_ANY(optext), oplen, p.id);
	}

	SpinLockAcquire(&qshared->mutex);
	s = slot_of(queue_table.relid, false);
	if (s != NULL)
	{
		bool		lower = s->valid && before(p, s->floor);
		QWrite	   *w = &s->ring[s->qgen % QW_RING];

		w->known = optext != NULL && oplen < GF_OPLEN;
		if (w->known)
		{
			w->prio = p.prio;
			w->ws = DatumGetInt64(ws);
			memcpy(w->op, VARDATA_ANY(optext), oplen);
			w->op[oplen] = '\0';
		}
		s->qgen++;

		if (lower)
			s->floor = p;
		if (lower || s->scanners > 0)
			s->gen++;
	}
	SpinLockRelease(&qshared->mutex);
	return PointerGetDatum(tup);
}

/*
 * rungate.queue_floor() RETURNS (available, enabled, priority, run_id,
 * held_until): whether claims here can use the floor (rungate preloaded,
 * note_queued watching), whether this session's do (rungate.queue_floor),
 * where it is (NULL: claims scan from the start), and the earliest run_at
 * of the live runs not yet due that it has passed.
 */
Datum
rg_queue_floor(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		v[5] = {0};
	bool		nulls[5] = {false, false, true, true, true};
	Relation	rel;
	QFloor	   *s;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "rungate.queue_floor must return a composite type");
	rg_table_lookup(&queue_table);
	rel = table_open(queue_table.relid, AccessShareLock);
	queue_lookup(rel);
	table_close(rel, AccessShareLock);
	v[0] = BoolGetDatum(qshared != NULL && q_watched);
	v[1] = BoolGetDatum(floor_enabled);
	if (qshared != NULL && q_watched)
	{
		SpinLockAcquire(&qshared->mutex);
		s = slot_of(q_relid, false);
		if (s != NULL && s->valid)
		{
			v[2] = Int32GetDatum(s->floor.prio);
			v[3] = Int64GetDatum(s->floor.id);
			nulls[2] = nulls[3] = false;
		}
		if (s != NULL && s->held)
		{
			v[4] = TimestampTzGetDatum(s->hold_due);
			nulls[4] = false;
		}
		SpinLockRelease(&qshared->mutex);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), v, nulls)));
}
