/*
 * rungate.h
 *     Declarations shared by rungate's C files: SQLSTATEs, the internal-write
 *     gate that the run and audit guards honour, the kept-plan helper, the
 *     decision and the status-transition helpers.
 *
 * Version differences between PostgreSQL majors are bridged in pg_compat.h,
 * and only there.
 */
#ifndef RUNGATE_H
#define RUNGATE_H

#include "postgres.h"

#include "executor/spi.h"
#include "access/tupdesc.h"
#include "nodes/execnodes.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

/* rungate's SQLSTATEs (docs/guarantees.md#errors) */
#define ERRCODE_RG_BAD_REQUEST	MAKE_SQLSTATE('R','G','4','0','0')
#define ERRCODE_RG_FORBIDDEN	MAKE_SQLSTATE('R','G','4','0','3')
#define ERRCODE_RG_NOT_FOUND	MAKE_SQLSTATE('R','G','4','0','4')
#define ERRCODE_RG_CONFLICT		MAKE_SQLSTATE('R','G','4','0','9')

/* Operators in our SQL are always pg_catalog's, whatever the search_path. */
#define EQ " OPERATOR(pg_catalog.=) "
#define NE " OPERATOR(pg_catalog.<>) "
#define LT " OPERATOR(pg_catalog.<) "
#define LE " OPERATOR(pg_catalog.<=) "
#define GE " OPERATOR(pg_catalog.>=) "
#define GT " OPERATOR(pg_catalog.>) "
#define PLUS " OPERATOR(pg_catalog.+) "

/* ---- version shims: RG_MATERIALIZE_SRF, rg_* (pg_compat.h) ---- */
#include "pg_compat.h"

/*
 * A logical replication worker of core (apply, table-sync, and from 16 on
 * parallel apply): a background worker whose MyLogicalRepWorker is set,
 * which no session can become. IsLogicalWorker() exists from 12 to 18.
 */
#include "miscadmin.h"
#include "replication/logicalworker.h"
#define RG_IS_LOGICAL_REPLICATION_WORKER() \
	(MyBackendType == B_BG_WORKER && IsLogicalWorker())

/* ---- the internal-write gate (rungate.c) ----
 * Runs and audit rows may only be written while a rungate function holds the
 * gate. It is backend-local C state: SQL cannot set it. It is cleared when a
 * (sub)transaction aborts, so an error inside a gated write never leaks it. */
extern void rg_gate_open(void);
extern void rg_gate_close(void);
extern bool rg_gate_is_open(void);

/*
 * rungate.restore_mode (superuser only): while on, the guards accept
 * INSERTs into rungate.runs and rungate.audit_log, so that pg_restore can
 * load a dump. Nothing else is relaxed.
 */
extern bool rg_restore_mode(void);

/* ---- references of runs (references.c) ----
 * A run inserted into rel (rungate.runs) names a workspace and an operation
 * type that exist, and a tenant and an initiator whose rows it locks FOR KEY
 * SHARE (23503 otherwise): the checks the foreign keys' insert triggers
 * made before 1.8 and 1.9. Also in restore mode. */
extern void rg_check_run_references(Relation rel, HeapTuple tuple);

/* ---- logical replication (replication.c) ----
 * True only in a subscription's apply or table-sync worker: what it writes
 * was made by rungate's functions on the publisher and is accepted as it
 * is. A session, whatever its role or session_replication_role, is not. */
extern bool rg_is_apply_worker(void);

/* RG409 naming rungate.sync_sequences() while a sequence of rungate's
 * tables lags behind copied rows: _require_ before writes that take ids
 * (cheap once passed), _check_ now (enqueue's insert took no row) */
extern void rg_require_synced_sequences(void);
extern void rg_check_sequences(void);
extern Size rg_replication_shmem_size(void);
extern void rg_replication_shmem_init(void);	/* under AddinShmemInitLock */

/* In a PG_CATCH around a write: a key taken by copied rows becomes RG409
 * naming rungate.sync_sequences(); any other error is re-thrown as is. */
extern void rg_rethrow_write_error(MemoryContext cxt);	/* never returns */

/* ---- kept SPI plans (rungate.c) ---- */
typedef struct RgPlan
{
	const char *sql;
	int			nargs;
	Oid			argtypes[16];
	SPIPlanPtr	plan;			/* kept by rg_plan(); never for per_call */
	bool		per_call;		/* planned at each call (RG_PER_CALL) */
} RgPlan;

/*
 * The last initializer of a plan run once a pass, a scrape or an operator's
 * call (reap, purge, the scheduler's wake-ups and ticks, the metrics'
 * gauges, a bulk run's items under run control): parsed and planned at
 * each call, never kept, so a plan made while rungate.runs was empty (a
 * fresh install, the first pass) never outlives that, seq-scanning it as it
 * grows until the next ANALYZE. That costs well under 1 ms a call.
 */
#define RG_PER_CALL true

extern SPIPlanPtr rg_plan(RgPlan *p);

/* Run a kept plan; gated plans may write runs or audit rows. */
extern int	rg_exec(RgPlan *p, Datum *values, const char *nulls, bool gated,
					long count);

/* Helpers to read SPI result columns of the first tuple. */
extern bool rg_get_bool(int row, int col, bool *isnull);
extern int64 rg_get_int64(int row, int col, bool *isnull);
extern int32 rg_get_int32(int row, int col, bool *isnull);
extern char *rg_get_text(int row, int col);	/* NULL when null */
extern Datum rg_get_datum(int row, int col, bool *isnull);

/* RG400 "<name> must not be null" when argument argno is null */
extern void rg_require_arg(FunctionCallInfo fcinfo, int argno, const char *name);

/* authority rows by key, outside a decision (rungate.c; SPI connected) */
extern bool rg_workspace_exists(int64 id);
extern bool rg_actor_exists(int64 id);
extern bool rg_operation_exists(const char *name);
extern bool rg_tenant_workspace(int64 tenant_id, int64 *workspace_id);

/* ---- the decision (decision.c) ---- */
typedef struct RgOpType
{
	char	   *name;
	char	   *capability;
	bool		tenant_scope;
	bool		requires_operable_tenant;
	bool		allow_system;
	bool		writes;
	char	   *item_operation;	/* NULL unless a bulk orchestrator */
	int32		max_attempts;
	Interval	lease;
	/* flow control: 0 when unset */
	int32		max_running;
	char		limit_scope;	/* RG_LIMIT_* */
	int32		rate_limit;
	Interval	rate_period;	/* when rate_limit */
} RgOpType;

/* the limit key of an operation type (operation_types.limit_scope) */
#define RG_LIMIT_WORKSPACE	'w'
#define RG_LIMIT_TENANT		't'
#define RG_LIMIT_GLOBAL		'g'

typedef struct RgDecision
{
	bool		allowed;
	bool		system;			/* no actor: system authority */
	const char *reason_code;	/* NULL when allowed */
	const char *reason_category;
	char	   *reason_message;
	Datum		checks;			/* jsonb */
	RgOpType	op;
	int32		ws_max_running; /* the workspace's limit, 0 when unset */
	/* facts the caller may want to validate a request with */
	bool		workspace_exists;
	bool		tenant_exists;
	bool		actor_exists;
	bool		tenant_in_workspace;
} RgDecision;

/*
 * Decide whether the run could start now. Unknown operation, workspace,
 * tenant or actor raise RG400; so does a tenant missing for a tenant-scoped
 * type or given for a workspace-scoped one, unless for_run: a recorded run
 * whose type changed scope is decided, never an error (see decision.c).
 * The facts are read on the latest snapshot, taken when the decision
 * starts, so every revocation committed before it is seen.
 */
extern void rg_decide_internal(const char *operation, int64 workspace_id,
							   bool has_tenant, int64 tenant_id,
							   bool has_actor, int64 actor_id,
							   bool for_run, RgDecision *out);
extern Datum rg_decision_to_datum(RgDecision *d, TupleDesc tupdesc);
extern bool rg_flow_limits(const char *operation, int64 workspace_id,
						   RgOpType *op, int32 *ws_max_running);

/* ---- the rungate_queued wake-up (wakeup.c) ---- */
extern void rg_wakeup_init(void);	/* from _PG_init */
extern Size rg_wakeup_shmem_size(void);
extern void rg_wakeup_shmem_init(void); /* under AddinShmemInitLock */
extern void rg_wakeup_queued(const char *operation, int64 run_id);
extern bool rg_wakeup_attach(void); /* the scheduler worker of this database */
extern long rg_wakeup_flush(void);

/* A hash table in cxt whose keys are compared and hashed as bytes. */
static inline HTAB *
rg_blob_hash(const char *name, long nelem, Size keysize, Size entrysize,
			 MemoryContext cxt)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = cxt;
	return hash_create(name, nelem, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Are the text t and the len bytes at s the same, bytewise? */
static inline bool
rg_text_is(const text *t, const char *s, size_t len)
{
	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/* ---- running runs of a limit key (running.c) ---- */
extern int32 rg_running_count(bool by_tenant, int64 id, const char *operation);

/* ---- flow control (flow.c) ---- */
extern Size rg_flow_shmem_size(void);
extern void rg_flow_shmem_request(void);	/* from the shmem request hook */
extern void rg_flow_shmem_init(void);	/* under AddinShmemInitLock */
extern uint64 rg_turn_of(Oid runs, int64 workspace_id);
extern void rg_turn_use(Oid runs, int64 workspace_id);
extern void rg_flow_claim_begin(void);	/* with SPI connected */
extern void rg_flow_claim_end(void);
extern bool rg_flow_skip_workspace(int64 workspace_id);
extern bool rg_flow_skip_group(int64 workspace_id, const char *operation);
extern bool rg_flow_may_take(int64 workspace_id, bool has_tenant, int64 tenant_id,
							 const char *operation, bool bulk_parent);
extern const char *rg_flow_admit(int64 workspace_id, bool has_tenant,
								 int64 tenant_id, const RgDecision *d);
extern void rg_flow_place_freed(const char *operation, int64 workspace_id);
extern const char *rg_flow_waiting(int64 workspace_id, bool has_tenant,
								   int64 tenant_id, const char *operation,
								   TimestampTz run_at);
extern void rg_flow_validate_type(HeapTuple tup, TupleDesc desc, const char *name,
								  bool workspace_scope);

/* ---- the authority cache (authcache.c) ---- */
typedef struct RgFactKey
{
	int32		which;			/* the probe (decision.c's P_*) */
	int64		n[3];			/* bigint keys, 0 when unused */
	const char *s[2];			/* text keys, NULL when unused */
} RgFactKey;

typedef struct RgFact
{
	RgFactKey	key;
	bool		found;			/* the row exists */
	int			ncols;
	Datum	   *vals;			/* the cache's memory (rg_authcache_alloc) */
	bool	   *nulls;
} RgFact;

extern void rg_authcache_init(void);	/* from _PG_init */
extern Size rg_authcache_shmem_size(void);
extern void rg_authcache_shmem_init(void);	/* under AddinShmemInitLock */
extern void rg_authcache_note_change(void); /* an authority table changed */
extern void rg_authcache_flush(void);
extern bool rg_authcache_begin(void);
extern RgFact *rg_authcache_get(const RgFactKey *key);
extern RgFact *rg_authcache_put(const RgFactKey *key, bool found, int ncols);
extern void *rg_authcache_alloc(Size size);
extern char *rg_authcache_strdup(const char *s);
extern Datum rg_authcache_datum(Datum d, bool byval, int len);

/* ---- single-row writes without a plan (rowwrite.c) ---- */
#define RG_TABLE_MAX_COLS 24

/* A table of schema rungate and the columns a writer addresses by index. */
typedef struct RgTable
{
	const char *name;
	const char *cols[RG_TABLE_MAX_COLS];	/* NULL-terminated */
	int			nkeys;			/* the first nkeys cols are never updated */
	/* looked up on first use and after any change to the table */
	bool		valid;
	bool		registered;
	struct RgTable *next;
	Oid			relid;
	Oid			idseq;			/* identity sequence of "id", if any */
	AttrNumber	idatt;
	int			ncols;
	AttrNumber	att[RG_TABLE_MAX_COLS];
	/* a column beyond cols (and the identity id) that an INSERT would fill */
	bool		unlisted_filled;

	/*
	 * What the executor would build for every writer, built once
	 * (rowwrite.c): the CHECK constraints' expression states (NULL: not
	 * enforced), its indexes' IndexInfo, its triggers' WHEN conditions
	 */
	MemoryContext icxt;
	bool		ivalid;
	int			nchecks;
	ExprState **checks;
	int			nindexes;
	Oid		   *index_oids;
	IndexInfo **index_info;		/* NULL: built for every writer */
	int			nwhens;
	Oid		   *when_oids;		/* the oid of the trigger */
	char	  **when_texts;		/* and its tgqual, when kept */
	ExprState **whens;
} RgTable;

typedef struct RgWriter
{
	RgTable    *t;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epq;
	TupleTableSlot *slot;		/* the row written */
	TupleTableSlot *old;		/* the row updated */
} RgWriter;

/* looks t up again if the table changed since */
extern void rg_table_lookup(RgTable *t);

/* for_update: the writer updates t->cols (UPDATE OF triggers see them) */
extern void rg_writer_open(RgWriter *w, RgTable *t, bool for_update);
extern void rg_writer_close(RgWriter *w);
extern int64 rg_writer_insert(RgWriter *w, const Datum *values, const bool *nulls);
extern void rg_writer_fetch(RgWriter *w, ItemPointer tid);
extern bool rg_writer_lock(RgWriter *w, int64 key);
extern Datum rg_writer_new(RgWriter *w, int col, bool *isnull);
extern Datum rg_writer_old(RgWriter *w, int col, bool *isnull);
extern void rg_writer_update(RgWriter *w, const bool *change,
							 const Datum *values, const bool *nulls);

/* ---- the queue scan and its floor (queue.c) ---- */
typedef void (*RgQueueTake) (TupleTableSlot *slot, void *arg);

extern void rg_queue_init(void);	/* from _PG_init */
extern Size rg_queue_shmem_size(void);
extern void rg_queue_shmem_init(void);	/* under AddinShmemInitLock */
extern int	rg_queue_fetch(Relation rel, int max, ArrayType *ops,
						   RgQueueTake take, void *arg);
extern int	rg_queue_fetch_fair(Relation rel, int max, ArrayType *ops,
								RgQueueTake take, void *arg);
/* a run rg_queue_fetch_fair locked that the claim leaves queued */
extern void rg_queue_kept(int32 prio, int64 ws, const char *op, int64 id);

/* ---- counters (metrics.c) ----
 * transition.c reports what it writes as it writes it; the counts reach
 * shared memory when the transaction commits (none when it, or the
 * subtransaction that made them, rolls back). No-ops unless preloaded. */
extern void rg_metrics_init(void);	/* from _PG_init */
extern Size rg_metrics_shmem_size(void);
extern void rg_metrics_shmem_init(void);	/* under AddinShmemInitLock */
extern void rg_metrics_event(const char *event, const char *operation, int64 n);
extern void rg_metrics_blocked(const char *reason_code);
extern uint64 rg_metrics_now(void);	/* a claim's start, for rg_metrics_claim */
extern void rg_metrics_claim(uint64 started);

/* ---- the worker calls (worker.c) ---- */
extern void rg_worker_init(void);	/* from _PG_init: its settings */

/* ---- rungate's objects in the catalogs (catalog.c) ---- */
extern Oid	rg_namespace(bool missing_ok);
extern Oid	rg_relid(const char *name, bool missing_ok);	/* rungate.<name> */
extern AttrNumber rg_attnum(Oid relid, const char *column, bool missing_ok);
extern bool rg_fires_always(Relation rel, const char *fn, int16 mask, int16 value);
extern char *rg_qualified_name(Oid relid);	/* quoted, for messages and DDL */

/* ---- cron expressions (cron.c): pure, no SPI ---- */
typedef struct RgCron
{
	uint64		minutes;		/* bit n: minute n, 0-59 */
	uint32		hours;			/* bit n: hour n, 0-23 */
	uint32		days;			/* bit n: day of month n, 1-31 */
	uint32		months;			/* bit n: month n, 1-12 */
	uint32		weekdays;		/* bit n: day of week n, 0-6, Sunday 0 */
	bool		days_star;		/* the day-of-month field began with '*' */
	bool		weekdays_star;	/* the day-of-week field began with '*' */
} RgCron;

/* Parse expr; false with a message in err when it is malformed or never fires. */
extern bool rg_cron_parse(const char *expr, RgCron *cron, char *err, size_t errlen);

/* The latest tick t with after < t <= upto (UTC), if there is one. */
extern bool rg_cron_latest(const RgCron *cron, TimestampTz after, TimestampTz upto,
						   TimestampTz *tick);

/* did the last run_schedules() of this backend lock every due schedule? */
extern bool rg_run_schedules_complete(void);

/* t as YYYY-MM-DDTHH:MI:SSZ in UTC (the schedules' idempotency keys) */
extern void rg_cron_format_utc(TimestampTz t, char *buf, size_t buflen);

/* ---- the scheduler's background workers (scheduler.c) ---- */
extern void rg_scheduler_note_schedule_write(void);	/* validate_schedule */
extern void rg_scheduler_init(void);	/* from _PG_init: settings, the launcher */
extern Size rg_scheduler_shmem_size(void);
extern void rg_scheduler_shmem_init(void);	/* under AddinShmemInitLock */

#endif							/* RUNGATE_H */
