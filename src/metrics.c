/*
 * metrics.c
 *     rungate's counters and the two metrics surfaces, rungate.metrics()
 *     and rungate.metrics_text() (docs/monitoring.md).
 *
 * Owns:
 *
 *   - the counters, in shared memory when rungate is preloaded: audit
 *     events by (database, event, operation), blocks by (database,
 *     reason code), and a histogram of claim durations per database. One
 *     table of fixed size (rungate.metrics_max_series entries, sized at
 *     server start) keyed by those labels. Inserting a key takes the
 *     table's spinlock once, for a few compares; looking a key up takes no
 *     lock (a key's slot and entry are published after they are written,
 *     and never change or go away until the server stops), and every bump
 *     is an atomic add. A key that finds the table full (or a label longer
 *     than its slot) is counted in one overflow counter instead.
 *   - the backend's pending counts. The transition module (transition.c) reports
 *     each audit row it writes, each block and each claim's duration as it
 *     happens; they are kept here, per subtransaction level, and reach
 *     shared memory at XACT_EVENT_COMMIT only. A rolled-back transaction,
 *     or a rolled-back savepoint within one, counts nothing; a prepared
 *     transaction (two-phase commit) is not counted either.
 *   - the gauges (runs queued and running, queue lag, expired leases, per
 *     operation type), read on demand through the partial indexes of
 *     queued and running runs, never touching a terminal run.
 *
 * Without preload there is no shared memory: nothing is counted and the
 * surfaces show the gauges alone. Must never take a lock that a concurrent
 * claim waits on, and never raise an error at commit.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/shortest_dec.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "portability/instr_time.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "rungate.h"
#include "runstatus.h"

PG_FUNCTION_INFO_V1(rg_metrics);
PG_FUNCTION_INFO_V1(rg_metrics_text);

/* ------------------------------------------------------------------------
 * Vocabulary (the events and statuses are runstatus.h's)
 * ------------------------------------------------------------------------ */

/* The reason codes of a block: each gets a row, zeros included. */
static const char *const known_reasons[] = {
	"system_authority_not_allowed", "actor_disabled", "actor_not_in_workspace",
	"tenant_not_in_workspace", "actor_not_in_tenant", "capability_missing",
	"workspace_not_operable", "tenant_not_operable", "prerequisite_unmet",
	"all_items_blocked"
};

/* Claim duration buckets: upper bounds in microseconds, and as labels. */
#define MX_NBUCKETS 14			/* the last one is +Inf */
static const uint64 bucket_us[MX_NBUCKETS - 1] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000
};
static const char *const bucket_le[MX_NBUCKETS] = {
	"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
	"0.25", "0.5", "1", "2.5", "5", "+Inf"
};

/* ------------------------------------------------------------------------
 * The shared table
 * ------------------------------------------------------------------------ */

#define MX_LABEL_A 32			/* event or reason code, NUL included */
#define MX_LABEL_B 64			/* operation, NUL included */

typedef enum MxKind
{
	MX_TRANSITION = 1,			/* a: event, b: operation */
	MX_BLOCKED,					/* a: reason code */
	MX_CLAIM_BUCKET,			/* bucket: index into bucket_us (not cumulative) */
	MX_CLAIM_SUM,				/* microseconds */
	MX_OVERFLOW					/* pending only: goes to the overflow counter */
} MxKind;

/* Zero-filled before use, so that keys compare and hash as bytes. */
typedef struct MxKey
{
	Oid			dbid;
	int32		kind;
	int32		bucket;
	char		a[MX_LABEL_A];
	char		b[MX_LABEL_B];
} MxKey;

typedef struct MxEntry
{
	MxKey		key;			/* written once, before it is published */
	pg_atomic_uint64 value;
} MxEntry;

typedef struct MxShared
{
	slock_t		mutex;			/* serializes inserts; lookups take none */
	uint32		nslots;			/* a power of two, at least 2 * maxentries */
	uint32		maxentries;
	pg_atomic_uint32 nentries;	/* entries[0 .. nentries - 1] are published */
	pg_atomic_uint64 overflow;	/* increments that found no room */
} MxShared;

static MxShared *mx = NULL;
static pg_atomic_uint32 *mx_slots = NULL;	/* entry number + 1; 0: empty */
static MxEntry *mx_entries = NULL;

/* rungate.metrics, rungate.metrics_max_series */
static bool metrics_enabled = true;
static int	metrics_max_series = 4096;

static uint32
mx_nslots(void)
{
	uint32		n = 64;

	while (n < (uint32) metrics_max_series * 2)
		n <<= 1;
	return n;
}

Size
rg_metrics_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(MxShared));

	size = add_size(size, MAXALIGN(mul_size(mx_nslots(), sizeof(pg_atomic_uint32))));
	size = add_size(size, mul_size(metrics_max_series, sizeof(MxEntry)));
	return size;
}

void
rg_metrics_shmem_init(void)
{
	bool		found;
	char	   *base;
	uint32		i;

	base = ShmemInitStruct("rungate metrics", rg_metrics_shmem_size(), &found);
	mx = (MxShared *) base;
	mx_slots = (pg_atomic_uint32 *) (base + MAXALIGN(sizeof(MxShared)));
	mx_entries = (MxEntry *) (base + MAXALIGN(sizeof(MxShared)) +
							  MAXALIGN(mx_nslots() * sizeof(pg_atomic_uint32)));
	if (found)
		return;
	SpinLockInit(&mx->mutex);
	mx->nslots = mx_nslots();
	mx->maxentries = (uint32) metrics_max_series;
	pg_atomic_init_u32(&mx->nentries, 0);
	pg_atomic_init_u64(&mx->overflow, 0);
	for (i = 0; i < mx->nslots; i++)
		pg_atomic_init_u32(&mx_slots[i], 0);
	for (i = 0; i < mx->maxentries; i++)
	{
		memset(&mx_entries[i].key, 0, sizeof(MxKey));
		pg_atomic_init_u64(&mx_entries[i].value, 0);
	}
}

/*
 * The entry of key k, inserted when missing; NULL when the table is full.
 * Entries are never removed and a slot, once set, never changes, so a
 * probe that meets an empty slot without a match knows the key is absent.
 */
static MxEntry *
mx_entry(const MxKey *k)
{
	uint32		mask = mx->nslots - 1;
	uint32		i = hash_bytes((const unsigned char *) k, sizeof(MxKey)) & mask;
	uint32		e,
				n;
	MxEntry    *found = NULL;

	for (;; i = (i + 1) & mask)
	{
		e = pg_atomic_read_u32(&mx_slots[i]);
		if (e == 0)
			break;
		pg_read_barrier();
		if (memcmp(&mx_entries[e - 1].key, k, sizeof(MxKey)) == 0)
			return &mx_entries[e - 1];
	}

	/* absent: insert it, unless another backend did since */
	SpinLockAcquire(&mx->mutex);
	for (;; i = (i + 1) & mask)
	{
		e = pg_atomic_read_u32(&mx_slots[i]);
		if (e == 0)
			break;
		if (memcmp(&mx_entries[e - 1].key, k, sizeof(MxKey)) == 0)
		{
			found = &mx_entries[e - 1];
			break;
		}
	}
	n = pg_atomic_read_u32(&mx->nentries);
	if (found == NULL && n < mx->maxentries)
	{
		found = &mx_entries[n];
		memcpy(&found->key, k, sizeof(MxKey));
		pg_write_barrier();
		pg_atomic_write_u32(&mx->nentries, n + 1);
		pg_atomic_write_u32(&mx_slots[i], n + 1);
	}
	SpinLockRelease(&mx->mutex);
	return found;
}

/* ------------------------------------------------------------------------
 * Pending counts of this backend's transaction
 * ------------------------------------------------------------------------ */

typedef struct MxPending
{
	int			level;			/* subtransaction nesting level */
	MxKey		key;			/* dbid left 0: filled at commit */
	uint64		n;
} MxPending;

/*
 * Levels never decrease along the array: entries are appended at the
 * current level, and a subtransaction's entries leave (abort) or move to
 * its parent's level (commit) when it ends.
 */
static MxPending *pending = NULL;
static int	npending = 0;
static int	maxpending = 0;

static bool
mx_active(void)
{
	return mx != NULL && metrics_enabled;
}

/* Add n to the pending count of key (kind, bucket, a, b). */
static void
mx_add(MxKind kind, int bucket, const char *a, const char *b, uint64 n)
{
	MxKey		k;
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	memset(&k, 0, sizeof(k));
	k.kind = kind;
	k.bucket = bucket;
	if ((a && strlcpy(k.a, a, MX_LABEL_A) >= MX_LABEL_A) ||
		(b && strlcpy(k.b, b, MX_LABEL_B) >= MX_LABEL_B))
	{
		/* a label longer than its slot: counted as overflow */
		memset(&k, 0, sizeof(k));
		k.kind = MX_OVERFLOW;
	}

	for (i = npending - 1; i >= 0 && pending[i].level == level; i--)
	{
		if (memcmp(&pending[i].key, &k, sizeof(k)) == 0)
		{
			pending[i].n += n;
			return;
		}
	}
	if (npending == maxpending)
	{
		int			grow = Max(16, maxpending * 2);

		if (pending == NULL)
			pending = MemoryContextAlloc(TopMemoryContext, sizeof(MxPending) * grow);
		else
			pending = repalloc(pending, sizeof(MxPending) * grow);
		maxpending = grow;
	}
	pending[npending].level = level;
	pending[npending].key = k;
	pending[npending].n = n;
	npending++;
}

void
rg_metrics_event(const char *event, const char *operation, int64 n)
{
	if (!mx_active() || n <= 0)
		return;
	mx_add(MX_TRANSITION, 0, event, operation, (uint64) n);
}

void
rg_metrics_blocked(const char *reason_code)
{
	if (!mx_active())
		return;
	mx_add(MX_BLOCKED, 0, reason_code ? reason_code : "", NULL, 1);
}

uint64
rg_metrics_now(void)
{
	instr_time	t;

	if (!mx_active())
		return 0;
	INSTR_TIME_SET_CURRENT(t);
	return (uint64) INSTR_TIME_GET_MICROSEC(t);
}

void
rg_metrics_claim(uint64 started_us)
{
	uint64		us;
	int			b;

	if (!mx_active() || started_us == 0)
		return;
	us = rg_metrics_now();
	us = us > started_us ? us - started_us : 0;
	for (b = 0; b < MX_NBUCKETS - 1 && us > bucket_us[b]; b++)
		;
	mx_add(MX_CLAIM_BUCKET, b, NULL, NULL, 1);
	mx_add(MX_CLAIM_SUM, 0, NULL, NULL, us);
}

/* The committed transaction's counts reach shared memory. */
static void
mx_flush(void)
{
	int			i;

	for (i = 0; i < npending; i++)
	{
		MxPending  *p = &pending[i];
		MxEntry    *e = NULL;

		if (p->n == 0)
			continue;
		if (p->key.kind != MX_OVERFLOW)
		{
			p->key.dbid = MyDatabaseId;
			e = mx_entry(&p->key);
		}
		if (e)
			pg_atomic_fetch_add_u64(&e->value, p->n);
		else
			pg_atomic_fetch_add_u64(&mx->overflow, p->n);
	}
}

static void
mx_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (npending > 0 && mx != NULL)
				mx_flush();
			npending = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			npending = 0;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that ends takes its counts with it (abort) or hands
 * them to its parent (commit), merged with the parent's of the same key.
 */
static void
mx_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	int			level,
				start,
				parent_start,
				w,
				i,
				j;

	if (npending == 0 ||
		(event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB))
		return;
	level = GetCurrentTransactionNestLevel();
	for (start = npending; start > 0 && pending[start - 1].level >= level; start--)
		;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		npending = start;
		return;
	}
	for (parent_start = start;
		 parent_start > 0 && pending[parent_start - 1].level >= level - 1;
		 parent_start--)
		;
	w = start;
	for (i = start; i < npending; i++)
	{
		for (j = parent_start; j < w; j++)
		{
			if (memcmp(&pending[j].key, &pending[i].key, sizeof(MxKey)) == 0)
			{
				pending[j].n += pending[i].n;
				break;
			}
		}
		if (j == w)
		{
			pending[w] = pending[i];
			pending[w].level = level - 1;
			w++;
		}
	}
	npending = w;
}

void
rg_metrics_init(void)
{
	DefineCustomBoolVariable("rungate.metrics",
							 "Counts audit events, blocks and claim durations in shared memory.",
							 "Needs rungate in shared_preload_libraries. Off, this session's "
							 "transactions add nothing to the counters of rungate.metrics().",
							 &metrics_enabled,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	/* a server-start setting can only be defined while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("rungate.metrics_max_series",
								"Entries of rungate's shared metrics table.",
								"One entry per database and (event, operation), reason code, "
								"or claim duration bucket. Increments that find the table "
								"full are counted in rungate_metrics_overflow_total.",
								&metrics_max_series,
								4096,
								64,
								1048576,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	RegisterXactCallback(mx_xact_callback, NULL);
	RegisterSubXactCallback(mx_subxact_callback, NULL);
}

/* ------------------------------------------------------------------------
 * The surfaces
 * ------------------------------------------------------------------------ */

/*
 * Per operation type: queued runs, running runs, the seconds since the
 * run_at of its oldest due queued run, and the running runs whose lease
 * has expired (not yet reaped), all as of $1, the clock time of the call
 * (not the transaction's start: a gauge says how things are now). Each
 * aggregate reads one partial index (runs_queue_idx: status = 'queued';
 * runs_lease_idx: status = 'running'), so terminal runs are never read.
 */
static RgPlan gauges_plan = {
	"WITH q AS ("
	"  SELECT r.operation, pg_catalog.count(*) AS n,"
	"         pg_catalog.min(r.run_at) FILTER (WHERE r.run_at" LE "$1) AS due"
	"    FROM rungate.runs r WHERE r.status" EQ "'queued' GROUP BY r.operation),"
	" w AS ("
	"  SELECT r.operation, pg_catalog.count(*) AS n,"
	"         pg_catalog.count(*) FILTER (WHERE r.lease_expires_at" LT "$1) AS expired"
	"    FROM rungate.runs r WHERE r.status" EQ "'running' GROUP BY r.operation)"
	" SELECT ot.name, COALESCE(q.n, 0), COALESCE(w.n, 0),"
	"        COALESCE(pg_catalog.date_part('epoch', $1 OPERATOR(pg_catalog.-) q.due), 0),"
	"        COALESCE(w.expired, 0)"
	"   FROM rungate.operation_types ot"
	"   LEFT JOIN q ON q.operation" EQ "ot.name"
	"   LEFT JOIN w ON w.operation" EQ "ot.name"
	"  ORDER BY ot.name",
	1, {TIMESTAMPTZOID}, NULL, RG_PER_CALL
};

typedef struct MxGauge
{
	char	   *operation;
	int64		queued;
	int64		running;
	double		lag;
	int64		expired;
} MxGauge;

/* One sample: a metric name, up to two labels, a value. */
typedef struct MxSample
{
	const char *metric;
	const char *lname[2];
	const char *lvalue[2];
	double		value;
} MxSample;

/* A metric family, and where its samples are in the list. */
typedef struct MxFamily
{
	const char *name;
	const char *type;
	const char *help;
	int			first;
	int			count;
} MxFamily;

typedef struct MxOut
{
	MxSample   *samples;
	int			nsamples;
	int			maxsamples;
	MxFamily	families[12];
	int			nfamilies;
} MxOut;

static void
family(MxOut *o, const char *name, const char *type, const char *help)
{
	MxFamily   *f = &o->families[o->nfamilies++];

	f->name = name;
	f->type = type;
	f->help = help;
	f->first = o->nsamples;
	f->count = 0;
}

static void
sample(MxOut *o, const char *metric, const char *l0, const char *v0,
	   const char *l1, const char *v1, double value)
{
	MxSample   *s;

	if (o->nsamples == o->maxsamples)
	{
		o->maxsamples = Max(64, o->maxsamples * 2);
		o->samples = o->samples ? repalloc(o->samples, sizeof(MxSample) * o->maxsamples)
			: palloc(sizeof(MxSample) * o->maxsamples);
	}
	s = &o->samples[o->nsamples++];
	s->metric = metric;
	s->lname[0] = l0;
	s->lvalue[0] = v0;
	s->lname[1] = l1;
	s->lvalue[1] = v1;
	s->value = value;
	o->families[o->nfamilies - 1].count++;
}

/* This database's published entries of one kind, copied out. */
typedef struct MxSnap
{
	MxKey		key;
	uint64		value;
	bool		shown;
} MxSnap;

static int
snap_cmp(const void *x, const void *y)
{
	const MxSnap *p = x;
	const MxSnap *q = y;
	int			c = strcmp(p->key.a, q->key.a);

	return c != 0 ? c : strcmp(p->key.b, q->key.b);
}

static MxSnap *
snap_kind(MxKind kind, int *count)
{
	uint32		n = pg_atomic_read_u32(&mx->nentries);
	uint32		i;
	MxSnap	   *s = palloc(sizeof(MxSnap) * Max(n, 1));
	int			k = 0;

	pg_read_barrier();
	for (i = 0; i < n; i++)
	{
		MxEntry    *e = &mx_entries[i];

		if (e->key.dbid != MyDatabaseId || e->key.kind != (int32) kind)
			continue;
		s[k].key = e->key;
		s[k].value = pg_atomic_read_u64(&e->value);
		s[k].shown = false;
		k++;
	}
	qsort(s, k, sizeof(MxSnap), snap_cmp);
	*count = k;
	return s;
}

static uint64
snap_take(MxSnap *s, int n, const char *a, const char *b)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		if (!s[i].shown && strcmp(s[i].key.a, a) == 0 &&
			strcmp(s[i].key.b, b ? b : "") == 0)
		{
			s[i].shown = true;
			return s[i].value;
		}
	}
	return 0;
}

/* Every sample rungate.metrics() returns, in families, in o. */
static void
collect(MxOut *o)
{
	MemoryContext caller = CurrentMemoryContext;
	MxGauge    *g;
	Datum		now;
	int			ng,
				i,
				j;

	memset(o, 0, sizeof(*o));

	SPI_connect();
	now = TimestampTzGetDatum(GetCurrentTimestamp());
	rg_exec(&gauges_plan, &now, NULL, false, 0);
	ng = (int) SPI_processed;
	g = MemoryContextAlloc(caller, sizeof(MxGauge) * Max(ng, 1));
	for (i = 0; i < ng; i++)
	{
		char	   *name = rg_get_text(i, 1);

		g[i].operation = MemoryContextStrdup(caller, name);
		g[i].queued = rg_get_int64(i, 2, NULL);
		g[i].running = rg_get_int64(i, 3, NULL);
		g[i].lag = DatumGetFloat8(rg_get_datum(i, 4, NULL));
		g[i].expired = rg_get_int64(i, 5, NULL);
	}
	SPI_finish();

	family(o, "rungate_runs", "gauge", "Runs in that status now, by operation type.");
	for (i = 0; i < ng; i++)
	{
		sample(o, "rungate_runs", "status", rg_status_name(RG_QUEUED), "operation", g[i].operation,
			   (double) g[i].queued);
		sample(o, "rungate_runs", "status", rg_status_name(RG_RUNNING), "operation", g[i].operation,
			   (double) g[i].running);
	}
	family(o, "rungate_queue_lag_seconds", "gauge",
		   "Now minus the run_at of the oldest due queued run, by operation type (0 when none is due).");
	for (i = 0; i < ng; i++)
		sample(o, "rungate_queue_lag_seconds", "operation", g[i].operation, NULL, NULL,
			   g[i].lag);
	family(o, "rungate_expired_leases", "gauge",
		   "Running runs whose lease has expired and that no reaper has requeued or failed yet, by operation type.");
	for (i = 0; i < ng; i++)
		sample(o, "rungate_expired_leases", "operation", g[i].operation, NULL, NULL,
			   (double) g[i].expired);

	if (mx == NULL)
		return;					/* not preloaded: no counters */

	{
		int			ns;
		MxSnap	   *s = snap_kind(MX_TRANSITION, &ns);

		family(o, "rungate_transitions_total", "counter",
			   "Audit events written by committed transactions since the server started, by event and operation type.");
		for (i = 0; i < ng; i++)
			for (j = 0; j < RG_NEVENTS; j++)
				sample(o, "rungate_transitions_total", "event", rg_event_names[j],
					   "operation", g[i].operation,
					   (double) snap_take(s, ns, rg_event_names[j], g[i].operation));
		for (i = 0; i < ns; i++)
			if (!s[i].shown)
				sample(o, "rungate_transitions_total", "event", pstrdup(s[i].key.a),
					   "operation", pstrdup(s[i].key.b), (double) s[i].value);
	}
	{
		int			ns;
		MxSnap	   *s = snap_kind(MX_BLOCKED, &ns);

		family(o, "rungate_blocked_total", "counter",
			   "Runs blocked by committed transactions since the server started, by reason code.");
		for (j = 0; j < (int) lengthof(known_reasons); j++)
			sample(o, "rungate_blocked_total", "reason_code", known_reasons[j], NULL, NULL,
				   (double) snap_take(s, ns, known_reasons[j], NULL));
		for (i = 0; i < ns; i++)
			if (!s[i].shown)
				sample(o, "rungate_blocked_total", "reason_code", pstrdup(s[i].key.a),
					   NULL, NULL, (double) s[i].value);
	}
	{
		int			ns;
		MxSnap	   *s = snap_kind(MX_CLAIM_BUCKET, &ns);
		uint64		buckets[MX_NBUCKETS] = {0};
		uint64		cumulative = 0;
		uint64		sum_us = 0;

		for (i = 0; i < ns; i++)
			if (s[i].key.bucket >= 0 && s[i].key.bucket < MX_NBUCKETS)
				buckets[s[i].key.bucket] += s[i].value;
		s = snap_kind(MX_CLAIM_SUM, &ns);
		for (i = 0; i < ns; i++)
			sum_us += s[i].value;

		family(o, "rungate_claim_duration_seconds", "histogram",
			   "Time spent in rungate.claim calls of committed transactions.");
		for (j = 0; j < MX_NBUCKETS; j++)
		{
			cumulative += buckets[j];
			sample(o, "rungate_claim_duration_seconds_bucket", "le", bucket_le[j],
				   NULL, NULL, (double) cumulative);
		}
		sample(o, "rungate_claim_duration_seconds_sum", NULL, NULL, NULL, NULL,
			   (double) sum_us / 1000000.0);
		sample(o, "rungate_claim_duration_seconds_count", NULL, NULL, NULL, NULL,
			   (double) cumulative);
	}
	family(o, "rungate_metrics_overflow_total", "counter",
		   "Counter increments of all databases that found no room in rungate's shared metrics table (see rungate.metrics_max_series).");
	sample(o, "rungate_metrics_overflow_total", NULL, NULL, NULL, NULL,
		   (double) pg_atomic_read_u64(&mx->overflow));
}

/*
 * rungate.metrics() RETURNS TABLE (metric text, labels jsonb,
 *                                  value double precision)
 */
Datum
rg_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MxOut		o;
	StringInfoData buf;
	int			i,
				l;

	RG_MATERIALIZE_SRF(fcinfo);
	collect(&o);
	initStringInfo(&buf);
	for (i = 0; i < o.nsamples; i++)
	{
		MxSample   *s = &o.samples[i];
		Datum		v[3];
		bool		n[3] = {false, false, false};

		resetStringInfo(&buf);
		appendStringInfoChar(&buf, '{');
		for (l = 0; l < 2 && s->lname[l]; l++)
		{
			if (l > 0)
				appendStringInfoString(&buf, ", ");
			escape_json(&buf, s->lname[l]);
			appendStringInfoString(&buf, ": ");
			escape_json(&buf, s->lvalue[l]);
		}
		appendStringInfoChar(&buf, '}');
		v[0] = CStringGetTextDatum(s->metric);
		v[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
		v[2] = Float8GetDatum(s->value);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

/* A label value or HELP text in the exposition format. */
static void
append_escaped(StringInfo buf, const char *s, bool quote)
{
	for (; *s; s++)
	{
		if (*s == '\\')
			appendStringInfoString(buf, "\\\\");
		else if (*s == '\n')
			appendStringInfoString(buf, "\\n");
		else if (*s == '"' && quote)
			appendStringInfoString(buf, "\\\"");
		else
			appendStringInfoChar(buf, *s);
	}
}

/*
 * rungate.metrics_text() RETURNS text: the same samples in the Prometheus
 * text exposition format (version 0.0.4), one # HELP and # TYPE per family.
 */
Datum
rg_metrics_text(PG_FUNCTION_ARGS)
{
	MxOut		o;
	StringInfoData buf;
	int			f,
				i,
				l;

	collect(&o);
	initStringInfo(&buf);
	for (f = 0; f < o.nfamilies; f++)
	{
		MxFamily   *fam = &o.families[f];

		appendStringInfo(&buf, "# HELP %s ", fam->name);
		append_escaped(&buf, fam->help, false);
		appendStringInfo(&buf, "\n# TYPE %s %s\n", fam->name, fam->type);
		for (i = fam->first; i < fam->first + fam->count; i++)
		{
			MxSample   *s = &o.samples[i];
			char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

			appendStringInfoString(&buf, s->metric);
			for (l = 0; l < 2 && s->lname[l]; l++)
			{
				appendStringInfo(&buf, "%s%s=\"", l == 0 ? "{" : ",", s->lname[l]);
				append_escaped(&buf, s->lvalue[l], true);
				appendStringInfoChar(&buf, '"');
			}
			if (l > 0)
				appendStringInfoChar(&buf, '}');
			if (isnan(s->value))
				strlcpy(num, "NaN", sizeof(num));
			else if (isinf(s->value))
				strlcpy(num, s->value > 0 ? "+Inf" : "-Inf", sizeof(num));
			else
				double_to_shortest_decimal_buf(s->value, num);
			appendStringInfo(&buf, " %s\n", num);
		}
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
