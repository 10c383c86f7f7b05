/*
 * lifecycle.c
 *     Runs and their status transitions (CONTRACT §3-§5, §7): enqueue,
 *     enqueue_bulk, claim, heartbeat, recheck, complete, fail, reap_expired,
 *     cancel, purge, and the bulk roll-up. Every status change goes through
 *     transition(), which writes the run, its audit row, the initiator's
 *     notification and the LISTEN signal in the caller's transaction.
 *
 * Must never change a run's status without its audit row, start a run the
 * decision denied, or write runs with the internal-write gate closed.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "rungate.h"

PG_FUNCTION_INFO_V1(rg_enqueue);
PG_FUNCTION_INFO_V1(rg_enqueue_bulk);
PG_FUNCTION_INFO_V1(rg_claim);
PG_FUNCTION_INFO_V1(rg_heartbeat);
PG_FUNCTION_INFO_V1(rg_recheck);
PG_FUNCTION_INFO_V1(rg_complete);
PG_FUNCTION_INFO_V1(rg_fail);
PG_FUNCTION_INFO_V1(rg_reap_expired);
PG_FUNCTION_INFO_V1(rg_cancel);
PG_FUNCTION_INFO_V1(rg_purge);
PG_FUNCTION_INFO_V1(rg_purge_batch);
PG_FUNCTION_INFO_V1(rg_purge_in_batches);
PG_FUNCTION_INFO_V1(rg_release);
PG_FUNCTION_INFO_V1(rg_rerun);

/* rungate.claim_block_limit: the runs one claim may block before it returns */
static int	claim_block_limit = 1000;

void
rg_lifecycle_init(void)
{
	DefineCustomIntVariable("rungate.claim_block_limit",
							"The most runs one rungate.claim call blocks before it returns.",
							"A claim that has blocked this many runs stops, returns what it "
							"started and notifies rungate_queued, so that workers call again: "
							"no single call does unbounded work behind a revoked backlog.",
							&claim_block_limit,
							1000, 1, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
}

/* Upper bounds on request sizes; beyond them a request is malformed. */
#define MAX_CLAIM_RUNS		1000
#define MAX_BULK_TENANTS	100000

/*
 * Every query that reads a run returns these columns, in this order, so one
 * loader serves them all. The last one is the whole row, returned as is by
 * the functions that return rungate.runs.
 */
#define RUN_FIELDS \
	"r.id, r.workspace_id, r.tenant_id, r.operation, r.initiator_id," \
	" r.parent_id, r.status, r.attempt, r.max_attempts, r.lease_token," \
	" r.worker, r.priority, r.item_tenants, r.payload, r.lease_expires_at"
#define RUN_COLS RUN_FIELDS ", r"

enum
{
	C_ID = 1, C_WORKSPACE, C_TENANT, C_OPERATION, C_INITIATOR, C_PARENT,
	C_STATUS, C_ATTEMPT, C_MAX_ATTEMPTS, C_LEASE_TOKEN, C_WORKER, C_PRIORITY,
	C_ITEM_TENANTS, C_PAYLOAD, C_LEASE_EXPIRES, C_ROW
};

typedef struct RunRow
{
	int64		id;
	int64		workspace_id;
	int64		tenant_id;
	int64		initiator_id;
	int64		parent_id;
	bool		has_tenant;
	bool		has_initiator;
	bool		has_parent;
	char	   *operation;
	char	   *status;
	int32		attempt;
	int32		max_attempts;
	int32		priority;
	bool		has_lease;
	pg_uuid_t	lease_token;
	TimestampTz lease_expires_at;	/* when has_lease */
	char	   *worker;
	Datum		item_tenants;	/* bigint[], or 0 */
	Datum		payload;
	Datum		row;			/* the rungate.runs composite */
	ItemPointerData tid;		/* claim: where the locked version is */
} RunRow;

static void
load_run(int i, RunRow *r)
{
	bool		isnull;
	Datum		d;

	r->id = rg_get_int64(i, C_ID, NULL);
	r->workspace_id = rg_get_int64(i, C_WORKSPACE, NULL);
	r->tenant_id = rg_get_int64(i, C_TENANT, &isnull);
	r->has_tenant = !isnull;
	r->operation = rg_get_text(i, C_OPERATION);
	r->initiator_id = rg_get_int64(i, C_INITIATOR, &isnull);
	r->has_initiator = !isnull;
	r->parent_id = rg_get_int64(i, C_PARENT, &isnull);
	r->has_parent = !isnull;
	r->status = rg_get_text(i, C_STATUS);
	r->attempt = rg_get_int32(i, C_ATTEMPT, NULL);
	r->max_attempts = rg_get_int32(i, C_MAX_ATTEMPTS, NULL);
	d = rg_get_datum(i, C_LEASE_TOKEN, &isnull);
	r->has_lease = !isnull;
	if (!isnull)
		memcpy(&r->lease_token, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	r->worker = rg_get_text(i, C_WORKER);
	r->priority = rg_get_int32(i, C_PRIORITY, NULL);
	d = rg_get_datum(i, C_ITEM_TENANTS, &isnull);
	r->item_tenants = isnull ? (Datum) 0 : d;
	r->payload = rg_get_datum(i, C_PAYLOAD, &isnull);
	d = rg_get_datum(i, C_LEASE_EXPIRES, &isnull);
	r->lease_expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	r->row = rg_get_datum(i, C_ROW, &isnull);
}

/* ------------------------------------------------------------------------
 * Audit rows, notifications, LISTEN signals
 * ------------------------------------------------------------------------ */

/* the columns of an audit row rungate writes, in audit_values' order */
#define AUDIT_NCOLS 14
static RgTable audit_table = {
	.name = "audit_log",
	.cols = {"at", "run_id", "workspace_id", "tenant_id", "attempt", "event",
		"authority", "actor_id", "decision", "reason_code", "reason_category",
	"checks", "worker", "txid"}
};

/* for SPI: n is ' ' or 'n' */
static Datum
text_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* for a writer: isnull is a bool */
static Datum
text_datum(const char *s, bool *isnull)
{
	*isnull = s == NULL;
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* The values of one audit row (see audit_table) */
static void
audit_values(Datum *v, bool *n, int64 run_id, int64 workspace_id,
			 bool has_tenant, int64 tenant_id, int32 attempt, const char *event,
			 bool has_actor, int64 actor_id, const char *decision,
			 const char *reason_code, const char *reason_category,
			 Datum checks, bool has_checks, Datum worker, bool has_worker)
{
	memset(n, 0, sizeof(bool) * AUDIT_NCOLS);
	v[0] = TimestampTzGetDatum(GetCurrentTimestamp());	/* clock_timestamp() */
	v[1] = Int64GetDatum(run_id);
	v[2] = Int64GetDatum(workspace_id);
	v[3] = Int64GetDatum(tenant_id);
	n[3] = !has_tenant;
	v[4] = Int32GetDatum(attempt);
	v[5] = CStringGetTextDatum(event);
	v[6] = CStringGetTextDatum(has_actor ? "actor" : "system");
	v[7] = Int64GetDatum(actor_id);
	n[7] = !has_actor;
	v[8] = text_datum(decision, &n[8]);
	v[9] = text_datum(reason_code, &n[9]);
	v[10] = text_datum(reason_category, &n[10]);
	v[11] = checks;
	n[11] = !has_checks;
	v[12] = worker;
	n[12] = !has_worker;
	/* txid_current() */
	v[13] = Int64GetDatum((int64) U64FromFullTransactionId(GetTopFullTransactionId()));
}

void
rg_audit(int64 run_id, int64 workspace_id, bool has_tenant, int64 tenant_id,
		 int32 attempt, const char *event, bool has_actor, int64 actor_id,
		 const char *decision, const char *reason_code,
		 const char *reason_category, Datum checks, bool has_checks,
		 const char *worker)
{
	RgWriter	w;
	Datum		v[AUDIT_NCOLS];
	bool		n[AUDIT_NCOLS];

	audit_values(v, n, run_id, workspace_id, has_tenant, tenant_id, attempt,
				 event, has_actor, actor_id, decision, reason_code,
				 reason_category, checks, has_checks,
				 worker ? CStringGetTextDatum(worker) : (Datum) 0, worker != NULL);
	rg_gate_open();
	rg_writer_open(&w, &audit_table, false);
	rg_writer_insert(&w, v, n);
	rg_writer_close(&w);
	rg_gate_close();
}

static RgPlan notify_plan = {
	"INSERT INTO rungate.notifications (actor_id, run_id, kind)"
	" VALUES ($1, $2, 'run_' OPERATOR(pg_catalog.||) $3)",
	3, {INT8OID, INT8OID, TEXTOID}, NULL
};


/* rungate_cancelled: the lease holder of a cancelled running run must stop */
static void
signal_cancelled(RunRow *r)
{
	char	   *payload;

	if (r->has_tenant)
		payload = psprintf("{\"run_id\": " INT64_FORMAT ", \"workspace_id\": " INT64_FORMAT
						   ", \"tenant_id\": " INT64_FORMAT "}",
						   r->id, r->workspace_id, r->tenant_id);
	else
		payload = psprintf("{\"run_id\": " INT64_FORMAT ", \"workspace_id\": " INT64_FORMAT
						   ", \"tenant_id\": null}", r->id, r->workspace_id);
	Async_Notify("rungate_cancelled", payload);
}

static void
signal_blocked(RunRow *r, const char *reason_code)
{
	char	   *payload;

	if (r->has_tenant)
		payload = psprintf("{\"run_id\": " INT64_FORMAT ", \"workspace_id\": " INT64_FORMAT
						   ", \"tenant_id\": " INT64_FORMAT ", \"reason_code\": \"%s\"}",
						   r->id, r->workspace_id, r->tenant_id, reason_code);
	else
		payload = psprintf("{\"run_id\": " INT64_FORMAT ", \"workspace_id\": " INT64_FORMAT
						   ", \"tenant_id\": null, \"reason_code\": \"%s\"}",
						   r->id, r->workspace_id, reason_code);
	Async_Notify("rungate_blocked", payload);
}

/* ------------------------------------------------------------------------
 * Transitions
 * ------------------------------------------------------------------------ */

/* What a status change writes besides the status itself. */
typedef struct Change
{
	const char *to;				/* new status */
	const char *event;			/* audit event */
	RgDecision *decision;		/* the decision behind it, or NULL */
	const char *reason_code;	/* for blocked without a decision (bulk) */
	const char *reason_category;
	const char *reason_message;
	const char *error;
	Datum		result;			/* jsonb, or 0 */
	bool		has_actor;		/* audit actor, when not the initiator */
	int64		actor_id;
	bool		actor_override;
	Interval   *retry_in;		/* back to queued: delay, or NULL */
	bool		has_run_at;		/* back to queued: due at run_at (release) */
	TimestampTz run_at;
	int32		extra_attempts; /* added to max_attempts (release: 1) */
	const char *worker;			/* audit worker, when not the run's (claim) */
	bool		from_running;	/* cancel: the run was running (a lease voided) */
	bool		no_rollup;		/* cancel of a parent's items: it ends cancelled */
} Change;

/* Is a run moved back to queued by c due now? */
static bool
change_is_due(const Change *c)
{
	if (c->has_run_at)
		return c->run_at <= GetCurrentTransactionStartTimestamp();
	return c->retry_in == NULL ||
		(c->retry_in->time == 0 && c->retry_in->day == 0 && c->retry_in->month == 0);
}

/*
 * A status change: the run is updated by one statement, then its audit row
 * and the initiator's notification are written (writers, rowwrite.c), all
 * in the caller's transaction. The run must still be in status $9 (and,
 * with $10, hold that lease): callers that did not lock it first learn from
 * "no row" that it moved on.
 */
static RgPlan move_plan = {
	"UPDATE rungate.runs r SET"
	"  status = $2,"
	"  reason_code = $3, reason_category = $4, reason_message = $5,"
	"  error = CASE WHEN $2 IN ('failed', 'queued')"
	"          THEN COALESCE($6, r.error) END,"
	"  result = COALESCE($7, r.result),"
	"  run_at = CASE WHEN $2" EQ "'queued'"
	"           THEN COALESCE($11, pg_catalog.now()" PLUS "COALESCE($8, '0'::pg_catalog.interval))"
	"           ELSE r.run_at END,"
	"  max_attempts = r.max_attempts" PLUS "$12,"
	"  finished_at = CASE WHEN $2 IN ('queued', 'running') THEN NULL ELSE pg_catalog.now() END,"
	"  lease_token = NULL, lease_expires_at = NULL"
	" WHERE r.id" EQ "$1 AND r.status" EQ "$9"
	"   AND ($10::pg_catalog.uuid IS NULL OR (r.lease_token" EQ "$10"
	"        AND r.lease_expires_at" GE "pg_catalog.now()))"
	" RETURNING " RUN_COLS,
	12, {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INTERVALOID,
	TEXTOID, UUIDOID, TIMESTAMPTZOID, INT4OID}, NULL
};

/* the columns of a notification rungate writes */
static RgTable notification_table = {
	.name = "notifications",
	.cols = {"actor_id", "run_id", "kind", "created_at"}
};

static void rollup_parent(int64 parent_id);

/*
 * What follows a run's status change c (r is the run as changed): its audit
 * row, the initiator's notification, the signal, the bulk roll-up.
 */
static void
after_move(RunRow *r, const Change *c, bool from_running,
		   const char *reason_code, const char *reason_category)
{
	RgDecision *d = c->decision;

	/*
	 * The audit row: the actor is the caller's when it overrides (cancel),
	 * else the initiator; the worker is the caller's, else the run's (a
	 * cancellation names none but its caller's).
	 */
	{
		bool		has_actor = c->actor_override ? c->has_actor : r->has_initiator;
		int64		actor_id = c->actor_override ? c->actor_id : r->initiator_id;
		const char *worker = c->worker;

		if (worker == NULL && strcmp(c->event, "cancelled") != 0)
			worker = r->worker;
		rg_audit(r->id, r->workspace_id, r->has_tenant, r->tenant_id,
				 r->attempt, c->event, has_actor, actor_id,
				 d ? (d->allowed ? "allow" : "deny") : NULL,
				 reason_code, reason_category,
				 d ? d->checks : (Datum) 0, d != NULL, worker);
		rg_metrics_event(c->event, r->operation, 1);
		if (strcmp(c->to, "blocked") == 0)
			rg_metrics_blocked(reason_code);
	}

	/* the initiator hears of a top-level run's ending */
	if (r->has_initiator && !r->has_parent && rg_status_is_terminal(c->to))
	{
		RgWriter	w;
		Datum		nv[4];
		bool		nn[4] = {false, false, false, false};

		nv[0] = Int64GetDatum(r->initiator_id);
		nv[1] = Int64GetDatum(r->id);
		nv[2] = CStringGetTextDatum(psprintf("run_%s", c->to));
		nv[3] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		rg_writer_open(&w, &notification_table, false);
		rg_writer_insert(&w, nv, nn);
		rg_writer_close(&w);
	}

	if (strcmp(c->to, "blocked") == 0)
		signal_blocked(r, reason_code);
	else if (strcmp(c->to, "cancelled") == 0 && c->from_running)
		signal_cancelled(r);
	else if (strcmp(c->to, "queued") == 0 && change_is_due(c))
		rg_wakeup_queued(r->operation, r->id);	/* due now; a delayed one is found by polling */

	/* a place of a concurrency limit freed: waiting runs may start now */
	if (from_running)
		rg_flow_place_freed(r->operation, r->workspace_id);

	if (r->has_parent && rg_status_is_terminal(c->to) && !c->no_rollup)
		rollup_parent(r->parent_id);
}

/*
 * Move run `run_id` from status `from` (holding `token`, unless NULL) as `c`
 * says, with its audit row, notification and signal. Returns false, having
 * changed nothing, when the run is no longer in that state. On success `r`
 * is loaded from the updated row.
 */
static bool
move_run(int64 run_id, const char *from, pg_uuid_t *token, const Change *c,
		 RunRow *r)
{
	Datum		v[12];
	char		n[12];
	const char *reason_code = c->reason_code;
	const char *reason_category = c->reason_category;
	const char *reason_message = c->reason_message;
	RgDecision *d = c->decision;

	if (d && !d->allowed)
	{
		reason_code = d->reason_code;
		reason_category = d->reason_category;
		reason_message = d->reason_message;
	}

	memset(n, ' ', sizeof(n));
	v[0] = Int64GetDatum(run_id);
	v[1] = CStringGetTextDatum(c->to);
	v[2] = text_or_null(reason_code, &n[2]);
	v[3] = text_or_null(reason_category, &n[3]);
	v[4] = text_or_null(reason_message, &n[4]);
	v[5] = text_or_null(c->error, &n[5]);
	v[6] = c->result;
	n[6] = c->result ? ' ' : 'n';
	v[7] = c->retry_in ? IntervalPGetDatum(c->retry_in) : (Datum) 0;
	n[7] = c->retry_in ? ' ' : 'n';
	v[8] = CStringGetTextDatum(from);
	v[9] = token ? UUIDPGetDatum(token) : (Datum) 0;
	n[9] = token ? ' ' : 'n';
	v[10] = TimestampTzGetDatum(c->run_at);
	n[10] = c->has_run_at ? ' ' : 'n';
	v[11] = Int32GetDatum(c->extra_attempts);
	rg_exec(&move_plan, v, n, true, 0);
	if (SPI_processed != 1)
		return false;
	load_run(0, r);
	after_move(r, c, strcmp(from, "running") == 0, reason_code, reason_category);
	return true;
}

/* Move a run its caller has locked and loaded: it cannot have moved on. */
static void
transition(RunRow *r, const Change *c)
{
	if (!move_run(r->id, r->status, NULL, c, r))
		elog(ERROR, "rungate: run " INT64_FORMAT " changed under its lock", r->id);
}

/* ------------------------------------------------------------------------
 * Bulk roll-up (§5)
 * ------------------------------------------------------------------------ */

static RgPlan lock_run_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r WHERE r.id" EQ "$1 FOR NO KEY UPDATE",
	1, {INT8OID}, NULL
};

static RgPlan pending_items_plan = {
	"SELECT 1 FROM rungate.runs r"
	" WHERE r.parent_id" EQ "$1 AND r.status IN ('queued', 'running') LIMIT 1",
	1, {INT8OID}, NULL
};

static RgPlan item_counts_plan = {
	"SELECT pg_catalog.count(*),"
	"       pg_catalog.count(*) FILTER (WHERE r.status" EQ "'succeeded'),"
	"       pg_catalog.count(*) FILTER (WHERE r.status" EQ "'blocked'),"
	"       pg_catalog.count(*) FILTER (WHERE r.status" EQ "'failed'),"
	"       pg_catalog.count(*) FILTER (WHERE r.status" EQ "'cancelled')"
	"  FROM rungate.runs r WHERE r.parent_id" EQ "$1",
	1, {INT8OID}, NULL
};

/*
 * When the last item of a running parent ends, the parent ends too. The
 * parent's row lock serializes concurrent item endings, and the count runs
 * on a snapshot taken after the lock, so exactly one of them rolls up.
 */
static void
rollup_parent(int64 parent_id)
{
	Datum		v[1];
	RunRow		parent;
	int64		total,
				succeeded,
				blocked,
				failed,
				cancelled;
	Change		c;

	v[0] = Int64GetDatum(parent_id);
	rg_exec(&lock_run_plan, v, NULL, false, 1);
	if (SPI_processed != 1)
		return;
	load_run(0, &parent);
	if (strcmp(parent.status, "running") != 0)
		return;
	rg_exec(&pending_items_plan, v, NULL, false, 1);
	if (SPI_processed > 0)
		return;
	rg_exec(&item_counts_plan, v, NULL, false, 1);
	total = rg_get_int64(0, 1, NULL);
	succeeded = rg_get_int64(0, 2, NULL);
	blocked = rg_get_int64(0, 3, NULL);
	failed = rg_get_int64(0, 4, NULL);
	cancelled = rg_get_int64(0, 5, NULL);

	memset(&c, 0, sizeof(c));
	if (succeeded == total)
		c.to = c.event = "succeeded";
	else if (succeeded > 0)
		c.to = c.event = "partially_succeeded";
	else if (blocked == total)
	{
		c.to = "blocked";
		c.event = "execution_blocked";
		c.reason_code = "all_items_blocked";
		c.reason_category = "bulk";
		c.reason_message = psprintf("all " INT64_FORMAT " items of bulk run " INT64_FORMAT
									" were blocked", total, parent_id);
	}
	else
	{
		c.to = c.event = "failed";
		c.error = psprintf("no item of bulk run " INT64_FORMAT " succeeded: "
						   INT64_FORMAT " failed, " INT64_FORMAT " blocked, "
						   INT64_FORMAT " cancelled",
						   parent_id, failed, blocked, cancelled);
	}
	transition(&parent, &c);
}

/* ------------------------------------------------------------------------
 * Argument checks and run lookups shared by the SQL entry points
 * ------------------------------------------------------------------------ */

static void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s must not be null", name)));
}

/* The rungate.runs row datum, copied out of SPI memory. */
static Datum
return_row(RunRow *r)
{
	return SPI_datumTransfer(r->row, false, -1);
}

static void
decide_for_run(RunRow *r, RgDecision *d)
{
	rg_decide_internal(r->operation, r->workspace_id,
					   r->has_tenant, r->tenant_id,
					   r->has_initiator, r->initiator_id, true, d);
}

/*
 * Lock a running run for its lease holder. A missing run is RG404; a run
 * that is not running or whose lease is another's is RG409 (§4, §10.4).
 */
static void
lock_leased_run(int64 run_id, pg_uuid_t *token, const char *action, RunRow *r)
{
	Datum		v[1];

	v[0] = Int64GetDatum(run_id);
	rg_exec(&lock_run_plan, v, NULL, false, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("run " INT64_FORMAT " not found", run_id)));
	load_run(0, r);
	if (strcmp(r->status, "running") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot %s run " INT64_FORMAT ": it is %s, not running",
						action, run_id, r->status)));
	if (!r->has_lease || memcmp(&r->lease_token, token, sizeof(pg_uuid_t)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot %s run " INT64_FORMAT ": the lease token does not match its current lease",
						action, run_id),
				 errdetail("The lease expired, was re-claimed or was voided; this worker no longer holds the run.")));
	if (r->lease_expires_at < GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot %s run " INT64_FORMAT ": its lease expired",
						action, run_id),
				 errdetail("The lease expired at %s. An expired lease is no longer held, even before reap_expired requeues the run.",
						   timestamptz_to_str(r->lease_expires_at)),
				 errhint("Heartbeat more often than the operation type's lease.")));
}

/* ------------------------------------------------------------------------
 * Dispatch: enqueue, enqueue_bulk
 * ------------------------------------------------------------------------ */

/*
 * A new run; a rerun also names its original (rerun_of, 1.6: the plain
 * insert does not, so the module still serves older schemas).
 */
#define INSERT_RUN_SQL(col, val) \
	"INSERT INTO rungate.runs AS r (workspace_id, tenant_id, operation, initiator_id," \
	"  status, reason_code, reason_category, reason_message, max_attempts," \
	"  priority, run_at, payload, idempotency_key, item_tenants, finished_at" col ")" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10," \
	"  COALESCE($11, pg_catalog.now()), $12, $13, $14," \
	"  CASE WHEN $5" EQ "'blocked' THEN pg_catalog.now() END" val ")" \
	" ON CONFLICT DO NOTHING" \
	" RETURNING " RUN_COLS ", r.run_at" LE "pg_catalog.now()"
#define INSERT_RUN_TYPES \
	INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, \
	INT4OID, INT4OID, TIMESTAMPTZOID, JSONBOID, TEXTOID, INT8ARRAYOID

static RgPlan insert_run_plan = {
	INSERT_RUN_SQL("", ""), 14, {INSERT_RUN_TYPES}, NULL
};

static RgPlan insert_rerun_plan = {
	INSERT_RUN_SQL(", rerun_of", ", $15"), 15, {INSERT_RUN_TYPES, INT8OID}, NULL
};

static RgPlan idempotent_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r"
	" WHERE r.workspace_id" EQ "$1 AND r.idempotency_key" EQ "$2"
	"   AND r.status IN ('queued', 'running')",
	2, {INT8OID, TEXTOID}, NULL
};

typedef struct EnqueueRequest
{
	const char *operation;
	int64		workspace_id;
	int64		tenant_id;
	int64		initiator_id;
	Datum		payload;
	TimestampTz run_at;
	const char *idempotency_key;
	Datum		item_tenants;	/* bulk parents only */
	int64		rerun_of;		/* rerun: the original run */
	int32		priority;
	bool		has_tenant;
	bool		has_initiator;
	bool		has_run_at;
	bool		has_rerun_of;
} EnqueueRequest;

/*
 * Decide at dispatch and record the run, queued or blocked. Returns the row
 * datum in the caller's memory context.
 */
static Datum
dispatch(EnqueueRequest *q, RgDecision *d, MemoryContext caller)
{
	Datum		v[15];
	char		n[15];
	RunRow		r;
	int			tries;

	/* The idempotency key names a live run: hand it back as it is. */
	for (tries = 0; tries < 3; tries++)
	{
		if (q->idempotency_key)
		{
			v[0] = Int64GetDatum(q->workspace_id);
			v[1] = CStringGetTextDatum(q->idempotency_key);
			rg_exec(&idempotent_plan, v, NULL, false, 1);
			if (SPI_processed == 1)
			{
				MemoryContext spi;
				Datum		res;

				load_run(0, &r);
				spi = MemoryContextSwitchTo(caller);
				res = return_row(&r);
				MemoryContextSwitchTo(spi);
				return res;
			}
		}

		memset(n, ' ', sizeof(n));
		v[0] = Int64GetDatum(q->workspace_id);
		v[1] = Int64GetDatum(q->tenant_id);
		n[1] = q->has_tenant ? ' ' : 'n';
		v[2] = CStringGetTextDatum(q->operation);
		v[3] = Int64GetDatum(q->initiator_id);
		n[3] = q->has_initiator ? ' ' : 'n';
		v[4] = CStringGetTextDatum(d->allowed ? "queued" : "blocked");
		v[5] = text_or_null(d->reason_code, &n[5]);
		v[6] = text_or_null(d->reason_category, &n[6]);
		v[7] = text_or_null(d->allowed ? NULL : d->reason_message, &n[7]);
		v[8] = Int32GetDatum(d->op.max_attempts);
		v[9] = Int32GetDatum(q->priority);
		v[10] = TimestampTzGetDatum(q->run_at);
		n[10] = q->has_run_at ? ' ' : 'n';
		v[11] = q->payload;
		v[12] = text_or_null(q->idempotency_key, &n[12]);
		v[13] = q->item_tenants;
		n[13] = q->item_tenants ? ' ' : 'n';
		v[14] = Int64GetDatum(q->rerun_of);
		rg_exec(q->has_rerun_of ? &insert_rerun_plan : &insert_run_plan, v, n, true, 0);
		if (SPI_processed == 1)
			break;
		/* a subscriber's lagging sequence (RG409), or lost a race on the key */
		rg_check_sequences();
	}
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("could not enqueue run with idempotency key \"%s\"",
						q->idempotency_key),
				 errdetail("Concurrent dispatches keep taking and releasing the key.")));

	{
		bool		due = rg_get_bool(0, C_ROW + 1, NULL);

		load_run(0, &r);
		rg_audit(r.id, r.workspace_id, r.has_tenant, r.tenant_id, 0,
				 d->allowed ? "dispatched" : "dispatch_blocked",
				 r.has_initiator, r.initiator_id,
				 d->allowed ? "allow" : "deny",
				 d->reason_code, d->reason_category, d->checks, true, NULL);
		rg_metrics_event(d->allowed ? "dispatched" : "dispatch_blocked", r.operation, 1);
		if (!d->allowed)
		{
			rg_metrics_blocked(d->reason_code);
			if (r.has_initiator)
			{
				Datum		nv[3];

				nv[0] = Int64GetDatum(r.initiator_id);
				nv[1] = Int64GetDatum(r.id);
				nv[2] = CStringGetTextDatum("blocked");
				rg_exec(&notify_plan, nv, NULL, true, 0);
			}
			signal_blocked(&r, d->reason_code);
		}
		else if (due)
			rg_wakeup_queued(r.operation, r.id);
	}

	{
		MemoryContext spi = MemoryContextSwitchTo(caller);
		Datum		res = return_row(&r);

		MemoryContextSwitchTo(spi);
		return res;
	}
}

/*
 * rungate.enqueue(operation, workspace_id, tenant_id, initiator_id, payload,
 *                 run_at, priority, idempotency_key)
 */
Datum
rg_enqueue(PG_FUNCTION_ARGS)
{
	EnqueueRequest q;
	RgDecision	d;
	MemoryContext caller = CurrentMemoryContext;
	Datum		res;

	require_arg(fcinfo, 0, "operation");
	require_arg(fcinfo, 1, "workspace_id");

	memset(&q, 0, sizeof(q));
	q.operation = text_to_cstring(PG_GETARG_TEXT_PP(0));
	q.workspace_id = PG_GETARG_INT64(1);
	q.has_tenant = !PG_ARGISNULL(2);
	q.tenant_id = q.has_tenant ? PG_GETARG_INT64(2) : 0;
	q.has_initiator = !PG_ARGISNULL(3);
	q.initiator_id = q.has_initiator ? PG_GETARG_INT64(3) : 0;
	/* NULL payload, run_at or priority mean their defaults */
	q.payload = PG_ARGISNULL(4) ?
		DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")) : PG_GETARG_DATUM(4);
	q.has_run_at = !PG_ARGISNULL(5);
	q.run_at = q.has_run_at ? PG_GETARG_TIMESTAMPTZ(5) : 0;
	if (q.has_run_at && TIMESTAMP_NOT_FINITE(q.run_at))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("run_at must be a finite time")));
	q.priority = PG_ARGISNULL(6) ? 0 : PG_GETARG_INT32(6);
	q.idempotency_key = PG_ARGISNULL(7) ? NULL :
		text_to_cstring(PG_GETARG_TEXT_PP(7));

	SPI_connect();
	rg_decide_internal(q.operation, q.workspace_id, q.has_tenant, q.tenant_id,
					   q.has_initiator, q.initiator_id, false, &d);
	if (d.op.item_operation)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation \"%s\" is a bulk orchestrator", q.operation),
				 errhint("Use rungate.enqueue_bulk().")));
	if (q.has_tenant && !d.tenant_in_workspace)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant " INT64_FORMAT " does not belong to workspace " INT64_FORMAT,
						q.tenant_id, q.workspace_id)));
	res = dispatch(&q, &d, caller);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

static RgPlan bulk_tenants_plan = {
	"SELECT (SELECT pg_catalog.array_agg(DISTINCT x.t ORDER BY x.t)"
	"          FROM pg_catalog.unnest($1) AS x(t)),"
	"       (SELECT x.t FROM pg_catalog.unnest($1) WITH ORDINALITY AS x(t, o)"
	"         WHERE NOT EXISTS (SELECT 1 FROM rungate.tenants tn"
	"                            WHERE tn.id" EQ "x.t AND tn.workspace_id" EQ "$2)"
	"         ORDER BY x.o LIMIT 1)",
	2, {INT8ARRAYOID, INT8OID}, NULL
};

/*
 * rungate.enqueue_bulk(operation, workspace_id, tenant_ids, initiator_id,
 *                      payload)
 */
Datum
rg_enqueue_bulk(PG_FUNCTION_ARGS)
{
	EnqueueRequest q;
	RgDecision	d;
	MemoryContext caller = CurrentMemoryContext;
	ArrayType  *tenants;
	int			ntenants;
	Datum		v[2];
	bool		isnull;
	Datum		res;

	require_arg(fcinfo, 0, "operation");
	require_arg(fcinfo, 1, "workspace_id");
	require_arg(fcinfo, 2, "tenant_ids");
	tenants = PG_GETARG_ARRAYTYPE_P(2);
	ntenants = ArrayGetNItems(ARR_NDIM(tenants), ARR_DIMS(tenants));
	if (ntenants == 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant_ids must not be empty")));
	if (ntenants > MAX_BULK_TENANTS)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant_ids has %d elements; the limit is %d",
						ntenants, MAX_BULK_TENANTS)));
	if (ARR_NDIM(tenants) != 1 || array_contains_nulls(tenants))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant_ids must be a one-dimensional array without nulls")));

	memset(&q, 0, sizeof(q));
	q.operation = text_to_cstring(PG_GETARG_TEXT_PP(0));
	q.workspace_id = PG_GETARG_INT64(1);
	q.has_initiator = !PG_ARGISNULL(3);
	q.initiator_id = q.has_initiator ? PG_GETARG_INT64(3) : 0;
	q.payload = PG_ARGISNULL(4) ?
		DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")) : PG_GETARG_DATUM(4);

	SPI_connect();
	/* lenient about scope: a tenant type is refused below as "not bulk" */
	rg_decide_internal(q.operation, q.workspace_id, false, 0,
					   q.has_initiator, q.initiator_id, true, &d);
	if (d.op.item_operation == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation \"%s\" is not a bulk orchestrator", q.operation),
				 errhint("Bulk types name their item_operation; use rungate.enqueue() for this one.")));

	v[0] = PointerGetDatum(tenants);
	v[1] = Int64GetDatum(q.workspace_id);
	rg_exec(&bulk_tenants_plan, v, NULL, false, 1);
	(void) rg_get_datum(0, 2, &isnull);
	if (!isnull)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("tenant " INT64_FORMAT " does not belong to workspace " INT64_FORMAT,
						rg_get_int64(0, 2, NULL), q.workspace_id)));
	q.item_tenants = SPI_datumTransfer(rg_get_datum(0, 1, &isnull), false, -1);

	res = dispatch(&q, &d, caller);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

/* ------------------------------------------------------------------------
 * Execution: claim
 * ------------------------------------------------------------------------ */

/*
 * A run's fields from a slot of rungate.runs (a locked version, or one just
 * written), copied out of the buffer: strings and varlenas in the current
 * memory context, an out-of-line value fetched. row stays 0 (no composite).
 */
static RgTable runs_read_table = {
	.name = "runs",
	.cols = {"id", "workspace_id", "tenant_id", "operation", "initiator_id",
		"parent_id", "status", "attempt", "max_attempts", "lease_token",
	"worker", "priority", "item_tenants", "payload", "lease_expires_at"},
	.nkeys = 1
};

enum
{
	RR_ID, RR_WORKSPACE, RR_TENANT, RR_OPERATION, RR_INITIATOR, RR_PARENT,
	RR_STATUS, RR_ATTEMPT, RR_MAX_ATTEMPTS, RR_TOKEN, RR_WORKER, RR_PRIORITY,
	RR_ITEM_TENANTS, RR_PAYLOAD, RR_EXPIRES
};

static Datum
copy_varlena(Datum d)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

	if (VARATT_IS_EXTERNAL(v))
		return PointerGetDatum(detoast_external_attr(v));
	return datumCopy(d, false, -1);
}

static void
run_from_slot(TupleTableSlot *slot, RunRow *r)
{
	AttrNumber *att = runs_read_table.att;
	bool		isnull;
	Datum		d;

	rg_table_lookup(&runs_read_table);
	memset(r, 0, sizeof(*r));
	r->id = DatumGetInt64(slot_getattr(slot, att[RR_ID], &isnull));
	r->workspace_id = DatumGetInt64(slot_getattr(slot, att[RR_WORKSPACE], &isnull));
	r->tenant_id = DatumGetInt64(slot_getattr(slot, att[RR_TENANT], &isnull));
	r->has_tenant = !isnull;
	r->operation = TextDatumGetCString(slot_getattr(slot, att[RR_OPERATION], &isnull));
	r->initiator_id = DatumGetInt64(slot_getattr(slot, att[RR_INITIATOR], &isnull));
	r->has_initiator = !isnull;
	r->parent_id = DatumGetInt64(slot_getattr(slot, att[RR_PARENT], &isnull));
	r->has_parent = !isnull;
	r->status = TextDatumGetCString(slot_getattr(slot, att[RR_STATUS], &isnull));
	r->attempt = DatumGetInt32(slot_getattr(slot, att[RR_ATTEMPT], &isnull));
	r->max_attempts = DatumGetInt32(slot_getattr(slot, att[RR_MAX_ATTEMPTS], &isnull));
	d = slot_getattr(slot, att[RR_TOKEN], &isnull);
	r->has_lease = !isnull;
	if (!isnull)
		memcpy(&r->lease_token, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	d = slot_getattr(slot, att[RR_WORKER], &isnull);
	r->worker = isnull ? NULL : TextDatumGetCString(d);
	r->priority = DatumGetInt32(slot_getattr(slot, att[RR_PRIORITY], &isnull));
	d = slot_getattr(slot, att[RR_ITEM_TENANTS], &isnull);
	r->item_tenants = isnull ? (Datum) 0 : copy_varlena(d);
	d = slot_getattr(slot, att[RR_PAYLOAD], &isnull);
	r->payload = isnull ? (Datum) 0 : copy_varlena(d);
	d = slot_getattr(slot, att[RR_EXPIRES], &isnull);
	r->lease_expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	r->tid = slot->tts_tid;
}

/*
 * Due runs in claim order, locked (queue.c). Each is then decided from
 * facts read on a snapshot taken after the lock, so every revocation
 * committed before the claim began is seen. The claimed row carries the
 * locked version's ctid, which starting it updates (no second descent of
 * the primary key): a row we hold locked keeps its place until we update it.
 */
typedef struct ClaimBatch
{
	RunRow	   *rows;
	int			n;
} ClaimBatch;

static void
take_run(TupleTableSlot *slot, void *arg)
{
	ClaimBatch *b = (ClaimBatch *) arg;

	run_from_slot(slot, &b->rows[b->n++]);
}

/*
 * Starting an allowed run: it becomes running under a new lease, as
 *   UPDATE rungate.runs SET status = 'running', attempt = attempt + 1,
 *     worker = w, lease_token = t, lease_expires_at = now() + lease,
 *     started_at = COALESCE(started_at, now()), error = NULL
 * would, and gets its 'started' audit row; both through writers (rowwrite.c):
 * the run is the locked row version at the ctid the claim read.
 */
static RgTable runs_start_table = {
	.name = "runs",
	.cols = {"id", "status", "attempt", "worker", "lease_token",
	"lease_expires_at", "started_at", "error"},
	.nkeys = 1
};

enum
{
	RS_ID, RS_STATUS, RS_ATTEMPT, RS_WORKER, RS_TOKEN, RS_EXPIRES, RS_STARTED,
	RS_ERROR, RS_NCOLS
};

static RgPlan start_parent_plan = {
	"UPDATE rungate.runs r SET status = 'running', attempt = r.attempt" PLUS "1,"
	"  started_at = COALESCE(r.started_at, pg_catalog.now())"
	" WHERE r.id" EQ "$1"
	" RETURNING r.attempt",
	1, {INT8OID}, NULL
};

/* All items of a parent, and their 'dispatched' rows, in one statement. */
static RgPlan create_items_plan = {
	"WITH items AS ("
	"  INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id,"
	"    parent_id, status, max_attempts, priority, payload)"
	"  SELECT $1, t.id, $2, $3, $4, 'queued',"
	"         (SELECT ot.max_attempts FROM rungate.operation_types ot"
	"           WHERE ot.name" EQ "$2),"
	"         $5, $6"
	"    FROM pg_catalog.unnest($7) AS t(id)"
	"  RETURNING id, tenant_id)"
	" INSERT INTO rungate.audit_log (at, run_id, workspace_id, tenant_id, attempt,"
	"   event, authority, actor_id, txid)"
	" SELECT pg_catalog.clock_timestamp(), i.id, $1, i.tenant_id, 0, 'dispatched',"
	"        CASE WHEN $3 IS NULL THEN 'system' ELSE 'actor' END, $3,"
	"        pg_catalog.txid_current()"
	"   FROM items i",
	7, {INT8OID, TEXTOID, INT8OID, INT8OID, INT4OID, JSONBOID, INT8ARRAYOID}, NULL
};

static void
new_lease_token(pg_uuid_t *u)
{
	if (!pg_strong_random(u->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a lease token")));
	u->data[6] = (u->data[6] & 0x0f) | 0x40;	/* version 4 */
	u->data[8] = (u->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
}

/* An allowed bulk parent starts and fans out into queued items. */
static void
start_parent(RunRow *r, RgDecision *d, const char *worker)
{
	Datum		v[7];
	char		n[7];
	int32		attempt;

	v[0] = Int64GetDatum(r->id);
	rg_exec(&start_parent_plan, v, NULL, true, 0);
	attempt = rg_get_int32(0, 1, NULL);
	rg_audit(r->id, r->workspace_id, false, 0, attempt, "started",
			 r->has_initiator, r->initiator_id, "allow", NULL, NULL,
			 d->checks, true, worker);
	rg_metrics_event("started", r->operation, 1);

	memset(n, ' ', sizeof(n));
	v[0] = Int64GetDatum(r->workspace_id);
	v[1] = CStringGetTextDatum(d->op.item_operation);
	v[2] = Int64GetDatum(r->initiator_id);
	n[2] = r->has_initiator ? ' ' : 'n';
	v[3] = Int64GetDatum(r->id);
	v[4] = Int32GetDatum(r->priority);
	v[5] = r->payload;
	v[6] = r->item_tenants;
	if (r->item_tenants == (Datum) 0)
		elog(ERROR, "rungate: bulk run " INT64_FORMAT " has no tenants", r->id);
	rg_exec(&create_items_plan, v, n, true, 0);
	rg_metrics_event("dispatched", d->op.item_operation, (int64) SPI_processed);
	rg_wakeup_queued(d->op.item_operation, r->id);
}

/*
 * The decision reads on the latest snapshot (§10.2) at any isolation level,
 * but claim and recheck read and lock runs with ordinary queries: under
 * REPEATABLE READ or SERIALIZABLE those see the transaction's snapshot, and
 * a run changed since ends the call in a serialization failure. Workers
 * claim in READ COMMITTED; the other levels are refused up front.
 */
static void
require_read_committed(const char *function)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s must run in a READ COMMITTED transaction", function),
				 errdetail("Under REPEATABLE READ or SERIALIZABLE the decision would see authority as of the transaction's start, not as committed now."),
				 errhint("Call it in its own transaction, or with SET TRANSACTION ISOLATION LEVEL READ COMMITTED.")));
}

/*
 * Start the allowed runs batch[starts[0..n-1]] (locked by us, in claim
 * order) and return them to the caller: the runs first, then their audit
 * rows, each table through one writer.
 */
static void
start_runs(ReturnSetInfo *rsinfo, const char *worker, RunRow *batch,
		   RgDecision *decisions, const int *starts, int n)
{
	pg_uuid_t  *tokens = palloc(sizeof(pg_uuid_t) * n);
	int32	   *attempts = palloc(sizeof(int32) * n);
	TimestampTz *expiries = palloc(sizeof(TimestampTz) * n);
	Datum		worker_text = CStringGetTextDatum(worker);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	static const bool change[RS_NCOLS] = {false, true, true, true, true, true, true, true};
	RgWriter	w;
	int			i;

	rg_gate_open();
	rg_writer_open(&w, &runs_start_table, true);
	for (i = 0; i < n; i++)
	{
		RunRow	   *r = &batch[starts[i]];
		RgDecision *d = &decisions[starts[i]];
		Datum		v[RS_NCOLS];
		bool		nulls[RS_NCOLS] = {false};
		bool		isnull;
		Datum		started;

		rg_writer_fetch(&w, &r->tid);
		if (DatumGetInt64(rg_writer_old(&w, RS_ID, &isnull)) != r->id)
			elog(ERROR, "rungate: run " INT64_FORMAT " moved from the row claim locked",
				 r->id);
		new_lease_token(&tokens[i]);
		attempts[i] = DatumGetInt32(rg_writer_old(&w, RS_ATTEMPT, &isnull)) + 1;
		expiries[i] = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															  TimestampTzGetDatum(now),
															  IntervalPGetDatum(&d->op.lease)));
		started = rg_writer_old(&w, RS_STARTED, &isnull);
		v[RS_STATUS] = CStringGetTextDatum("running");
		v[RS_ATTEMPT] = Int32GetDatum(attempts[i]);
		v[RS_WORKER] = worker_text;
		v[RS_TOKEN] = UUIDPGetDatum(&tokens[i]);
		v[RS_EXPIRES] = TimestampTzGetDatum(expiries[i]);
		v[RS_STARTED] = isnull ? TimestampTzGetDatum(now) : started;
		nulls[RS_ERROR] = true;
		v[RS_ERROR] = (Datum) 0;
		rg_writer_update(&w, change, v, nulls);
	}
	rg_writer_close(&w);

	rg_writer_open(&w, &audit_table, false);
	for (i = 0; i < n; i++)
	{
		RunRow	   *r = &batch[starts[i]];
		Datum		v[AUDIT_NCOLS];
		bool		nulls[AUDIT_NCOLS];

		audit_values(v, nulls, r->id, r->workspace_id, r->has_tenant, r->tenant_id,
					 attempts[i], "started", r->has_initiator, r->initiator_id,
					 "allow", NULL, NULL, decisions[starts[i]].checks, true,
					 worker_text, true);
		rg_writer_insert(&w, v, nulls);
		rg_metrics_event("started", r->operation, 1);
	}
	rg_writer_close(&w);
	rg_gate_close();

	for (i = 0; i < n; i++)
	{
		RunRow	   *r = &batch[starts[i]];
		Datum		out[9];
		bool		outnull[9];

		memset(outnull, 0, sizeof(outnull));
		out[0] = Int64GetDatum(r->id);
		out[1] = UUIDPGetDatum(&tokens[i]);
		out[2] = Int32GetDatum(attempts[i]);
		out[3] = CStringGetTextDatum(r->operation);
		out[4] = Int64GetDatum(r->workspace_id);
		out[5] = Int64GetDatum(r->tenant_id);
		outnull[5] = !r->has_tenant;
		out[6] = Int64GetDatum(r->initiator_id);
		outnull[6] = !r->has_initiator;
		out[7] = r->payload;
		out[8] = TimestampTzGetDatum(expiries[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, outnull);
	}
}

/*
 * rungate.claim(worker, operations, max_runs) RETURNS SETOF rungate.claimed
 */
Datum
rg_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	uint64		claim_started = rg_metrics_now();
	char	   *worker;
	ArrayType  *ops = NULL;
	int32		max_runs;
	int			started = 0;
	int			extra = 0;
	int			blocked = 0;
	bool		at_limit = false;

	require_arg(fcinfo, 0, "worker");
	worker = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (worker[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("worker must not be empty")));
	if (!PG_ARGISNULL(1))
	{
		ops = PG_GETARG_ARRAYTYPE_P(1);
		if (ArrayGetNItems(ARR_NDIM(ops), ARR_DIMS(ops)) == 0 ||
			array_contains_nulls(ops))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("operations must be null (any) or a non-empty array without nulls")));
	}
	require_arg(fcinfo, 2, "max_runs");
	max_runs = PG_GETARG_INT32(2);
	if (max_runs < 1 || max_runs > MAX_CLAIM_RUNS)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("max_runs must be between 1 and %d, not %d",
						MAX_CLAIM_RUNS, max_runs)));

	require_read_committed("rungate.claim");
	RG_MATERIALIZE_SRF(fcinfo);
	SPI_connect();
	rg_flow_claim_begin();

	while (started < max_runs && !at_limit)
	{
		int			want,
					nrows,
					i,
					nblocked = 0;
		ClaimBatch	batch;
		Relation	rel;
		RgDecision *decisions;
		int		   *starts;
		int			nstart;

		CHECK_FOR_INTERRUPTS();

		/*
		 * Fetch what is still wanted, plus room for the denials this call
		 * has met: behind a pile of runs of a suspended tenant, batches grow
		 * so that blocking them costs one fetch per batch, not per run. Runs
		 * fetched beyond max_runs stay queued (locked only until commit).
		 */
		want = Min(max_runs - started + Min(extra, claim_block_limit - blocked),
				   MAX_CLAIM_RUNS);
		batch.rows = palloc(sizeof(RunRow) * want);
		batch.n = 0;
		rg_table_lookup(&runs_read_table);
		rel = table_open(runs_read_table.relid, RowExclusiveLock);
		rg_table_lookup(&runs_read_table);
		nrows = rg_queue_fetch_fair(rel, want, ops, take_run, &batch);
		table_close(rel, NoLock);
		if (nrows == 0)
			break;

		/* decide the whole batch; the rows stay locked by us */
		decisions = palloc(sizeof(RgDecision) * nrows);
		starts = palloc(sizeof(int) * nrows);
		for (i = 0; i < nrows; i++)
		{
			RunRow	   *r = &batch.rows[i];

			rg_decide_internal(r->operation, r->workspace_id,
							   r->has_tenant, r->tenant_id,
							   r->has_initiator, r->initiator_id,
							   true, &decisions[i]);
		}

		/*
		 * Denials and bulk parents in claim order; the allowed runs are then
		 * started together (start_runs).
		 */
		nstart = 0;
		for (i = 0; i < nrows && started + nstart < max_runs; i++)
		{
			RunRow	   *r = &batch.rows[i];
			RgDecision *d = &decisions[i];

			if (!d->allowed)
			{
				Change		c;

				blocked++;
				nblocked++;
				memset(&c, 0, sizeof(c));
				c.to = "blocked";
				c.event = "execution_blocked";
				c.decision = d;
				c.worker = worker;
				transition(r, &c);
				rg_turn_use(runs_read_table.relid, r->workspace_id);
				if (blocked >= claim_block_limit)
				{
					/* bounded work: workers are told to call again */
					at_limit = true;
					break;
				}
			}
			else if (d->op.item_operation)
			{
				start_parent(r, d, worker);
				rg_turn_use(runs_read_table.relid, r->workspace_id);
			}
			else if (rg_flow_admit(r->workspace_id, r->has_tenant, r->tenant_id, d) == NULL)
			{
				starts[nstart++] = i;
				rg_turn_use(runs_read_table.relid, r->workspace_id);
			}
			/* else flow control holds it back: it stays queued */
		}
		if (nstart > 0)
			start_runs(rsinfo, worker, batch.rows, decisions, starts, nstart);
		started += nstart;
		extra = Min(extra * 2 + nblocked, MAX_CLAIM_RUNS);
	}
	if (at_limit)
		Async_Notify("rungate_queued", "{\"claim_block_limit\": true}");

	rg_flow_claim_end();
	SPI_finish();
	rg_metrics_claim(claim_started);
	return (Datum) 0;
}

/* ------------------------------------------------------------------------
 * Execution: heartbeat, recheck, complete, fail
 * ------------------------------------------------------------------------ */

static RgPlan heartbeat_plan = {
	"UPDATE rungate.runs r SET lease_expires_at = pg_catalog.now()" PLUS
	"  (SELECT ot.lease FROM rungate.operation_types ot WHERE ot.name" EQ "r.operation)"
	" WHERE r.id" EQ "$1 AND r.status" EQ "'running' AND r.lease_token" EQ "$2"
	"   AND r.lease_expires_at" GE "pg_catalog.now()"
	" RETURNING r.lease_expires_at, r.operation, r.workspace_id, r.tenant_id,"
	"  r.initiator_id",
	2, {INT8OID, UUIDOID}, NULL
};

/*
 * A running run that we hold (locked, or updated in this transaction) and
 * the decision d denied: blocked mid-run (recheck_blocked), its lease void.
 */
static void
block_mid_run(int64 run_id, RgDecision *d, RunRow *r)
{
	Change		c;

	memset(&c, 0, sizeof(c));
	c.to = "blocked";
	c.event = "recheck_blocked";
	c.decision = d;
	if (!move_run(run_id, "running", NULL, &c, r))
		elog(ERROR, "rungate: run " INT64_FORMAT " changed under its lock", run_id);
}

/*
 * rungate.heartbeat(run_id, lease_token) RETURNS timestamptz
 *
 * Extends the lease, then decides again (with the authority cache, an
 * unchanged world costs a lookup, not a decision). Denied, the run is
 * blocked (recheck_blocked) and null is returned instead of raising, so the
 * worker commits the block and stops.
 */
Datum
rg_heartbeat(PG_FUNCTION_ARGS)
{
	int64		run_id;
	pg_uuid_t  *token;
	Datum		v[2];
	TimestampTz expires;
	RunRow		r;
	RgDecision	d;
	bool		isnull;
	char	   *operation;
	int64		workspace_id,
				tenant_id,
				initiator_id;
	bool		has_tenant,
				has_initiator;

	require_arg(fcinfo, 0, "run_id");
	require_arg(fcinfo, 1, "lease_token");
	run_id = PG_GETARG_INT64(0);
	token = PG_GETARG_UUID_P(1);

	SPI_connect();
	v[0] = Int64GetDatum(run_id);
	v[1] = UUIDPGetDatum(token);
	rg_exec(&heartbeat_plan, v, NULL, false, 0);
	if (SPI_processed != 1)
	{
		/* says why: missing, not running or another's lease */
		lock_leased_run(run_id, token, "heartbeat", &r);
		elog(ERROR, "rungate: heartbeat of run " INT64_FORMAT " matched no lease", run_id);
	}
	expires = DatumGetTimestampTz(rg_get_datum(0, 1, NULL));
	operation = rg_get_text(0, 2);
	workspace_id = rg_get_int64(0, 3, NULL);
	tenant_id = rg_get_int64(0, 4, &isnull);
	has_tenant = !isnull;
	initiator_id = rg_get_int64(0, 5, &isnull);
	has_initiator = !isnull;

	rg_decide_internal(operation, workspace_id, has_tenant, tenant_id,
					   has_initiator, initiator_id, true, &d);
	if (!d.allowed)
	{
		block_mid_run(run_id, &d, &r);
		SPI_finish();
		PG_RETURN_NULL();
	}
	SPI_finish();
	PG_RETURN_TIMESTAMPTZ(expires);
}

/*
 * rungate.recheck(run_id, lease_token) RETURNS rungate.decision
 */
Datum
rg_recheck(PG_FUNCTION_ARGS)
{
	int64		run_id;
	pg_uuid_t  *token;
	RunRow		r;
	RgDecision	d;
	TupleDesc	tupdesc;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	Datum		res;

	require_arg(fcinfo, 0, "run_id");
	require_arg(fcinfo, 1, "lease_token");
	run_id = PG_GETARG_INT64(0);
	token = PG_GETARG_UUID_P(1);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "rungate.recheck must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);

	SPI_connect();
	require_read_committed("rungate.recheck");
	lock_leased_run(run_id, token, "recheck", &r);
	decide_for_run(&r, &d);
	if (!d.allowed)
		block_mid_run(r.id, &d, &r);
	spi = MemoryContextSwitchTo(caller);
	res = rg_decision_to_datum(&d, tupdesc);
	MemoryContextSwitchTo(spi);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

/*
 * complete's common case without SQL: the lease holder's run, locked by its
 * id as complete's UPDATE would find it, becomes succeeded through a writer
 * (rowwrite.c). False, having changed nothing, when the run is missing, not
 * running or not under this live lease: move_run's SQL then decides.
 */
static RgTable runs_complete_table = {
	.name = "runs",
	.cols = {"id", "status", "lease_token", "lease_expires_at", "reason_code",
		"reason_category", "reason_message", "error", "result", "run_at",
	"finished_at"},
	.nkeys = 1
};

enum
{
	RC_ID, RC_STATUS, RC_TOKEN, RC_EXPIRES, RC_REASON_CODE,
	RC_REASON_CATEGORY, RC_REASON_MESSAGE, RC_ERROR, RC_RESULT, RC_RUN_AT,
	RC_FINISHED, RC_NCOLS
};

static bool
complete_leased(int64 run_id, pg_uuid_t *token, const Change *c, RunRow *r)
{
	RgWriter	w;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	bool		change[RC_NCOLS] = {false};
	Datum		v[RC_NCOLS] = {0};
	bool		nulls[RC_NCOLS] = {false};
	bool		isnull;
	bool		live;
	Datum		d;
	int			i;

	rg_gate_open();
	rg_writer_open(&w, &runs_complete_table, true);
	live = rg_writer_lock(&w, run_id);
	if (live)
	{
		d = rg_writer_old(&w, RC_STATUS, &isnull);
		live = !isnull && strcmp(TextDatumGetCString(d), "running") == 0;
	}
	if (live)
	{
		d = rg_writer_old(&w, RC_TOKEN, &isnull);
		live = !isnull && memcmp(DatumGetUUIDP(d), token, UUID_LEN) == 0;
	}
	if (live)
	{
		d = rg_writer_old(&w, RC_EXPIRES, &isnull);
		live = !isnull && DatumGetTimestampTz(d) >= now;
	}
	if (!live)
	{
		rg_writer_close(&w);
		rg_gate_close();
		return false;
	}

	/* as move_plan sets them for a run that succeeds */
	for (i = RC_STATUS; i < RC_NCOLS; i++)
	{
		change[i] = true;
		nulls[i] = true;
	}
	v[RC_STATUS] = CStringGetTextDatum(c->to);
	nulls[RC_STATUS] = false;
	change[RC_RESULT] = c->result != (Datum) 0;
	v[RC_RESULT] = c->result;
	nulls[RC_RESULT] = false;
	change[RC_RUN_AT] = false;
	v[RC_FINISHED] = TimestampTzGetDatum(now);
	nulls[RC_FINISHED] = false;
	rg_writer_update(&w, change, v, nulls);

	/* the run as written, copied out before the writer lets its buffer go */
	run_from_slot(w.slot, r);
	r->row = ExecFetchSlotHeapTupleDatum(w.slot);
	rg_writer_close(&w);
	rg_gate_close();

	after_move(r, c, true, NULL, NULL);
	return true;
}

/*
 * rungate.complete(run_id, lease_token, result) RETURNS rungate.runs
 */
Datum
rg_complete(PG_FUNCTION_ARGS)
{
	RunRow		r;
	Change		c;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	Datum		res;

	require_arg(fcinfo, 0, "run_id");
	require_arg(fcinfo, 1, "lease_token");

	SPI_connect();
	memset(&c, 0, sizeof(c));
	c.to = c.event = "succeeded";
	c.result = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	if (!complete_leased(PG_GETARG_INT64(0), PG_GETARG_UUID_P(1), &c, &r) &&
		!move_run(PG_GETARG_INT64(0), "running", PG_GETARG_UUID_P(1), &c, &r))
	{
		/* says why: missing, not running or another's lease */
		lock_leased_run(PG_GETARG_INT64(0), PG_GETARG_UUID_P(1), "complete", &r);
		elog(ERROR, "rungate: run " INT64_FORMAT " could not be completed",
			 PG_GETARG_INT64(0));
	}
	spi = MemoryContextSwitchTo(caller);
	res = return_row(&r);
	MemoryContextSwitchTo(spi);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

/*
 * rungate.fail(run_id, lease_token, error, retryable, retry_in)
 *     RETURNS rungate.runs
 */
Datum
rg_fail(PG_FUNCTION_ARGS)
{
	RunRow		r;
	Change		c;
	bool		retryable;
	Interval   *retry_in = NULL;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	Datum		res;

	require_arg(fcinfo, 0, "run_id");
	require_arg(fcinfo, 1, "lease_token");
	require_arg(fcinfo, 2, "error");
	retryable = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	if (!PG_ARGISNULL(4))
	{
		Interval	zero;

		retry_in = PG_GETARG_INTERVAL_P(4);
		memset(&zero, 0, sizeof(zero));
		if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
											  IntervalPGetDatum(retry_in),
											  IntervalPGetDatum(&zero))) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("retry_in must not be negative")));
	}

	SPI_connect();
	lock_leased_run(PG_GETARG_INT64(0), PG_GETARG_UUID_P(1), "fail", &r);
	memset(&c, 0, sizeof(c));
	c.error = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (retryable && r.attempt < r.max_attempts)
	{
		/* the next claim decides afresh: nothing of this attempt is kept */
		c.to = "queued";
		c.event = "retry_scheduled";
		c.retry_in = retry_in;
	}
	else
		c.to = c.event = "failed";
	transition(&r, &c);
	spi = MemoryContextSwitchTo(caller);
	res = return_row(&r);
	MemoryContextSwitchTo(spi);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

/*
 * rungate.release(run_id, lease_token, run_at) RETURNS rungate.runs: the
 * lease holder hands the run back without spending an attempt. It is queued
 * again, due at run_at (default now), attempt unchanged and max_attempts
 * one higher, so the next claim's start (attempt + 1) leaves as many
 * attempts as before. The next claim decides afresh.
 */
Datum
rg_release(PG_FUNCTION_ARGS)
{
	RunRow		r;
	Change		c;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	Datum		res;

	require_arg(fcinfo, 0, "run_id");
	require_arg(fcinfo, 1, "lease_token");
	memset(&c, 0, sizeof(c));
	c.to = "queued";
	c.event = "released";
	c.extra_attempts = 1;
	if (!PG_ARGISNULL(2))
	{
		c.has_run_at = true;
		c.run_at = PG_GETARG_TIMESTAMPTZ(2);
		if (TIMESTAMP_NOT_FINITE(c.run_at))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("run_at must be a finite time")));
	}

	SPI_connect();
	lock_leased_run(PG_GETARG_INT64(0), PG_GETARG_UUID_P(1), "release", &r);
	if (r.max_attempts == PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot release run " INT64_FORMAT ": its max_attempts cannot grow",
						r.id)));
	transition(&r, &c);
	spi = MemoryContextSwitchTo(caller);
	res = return_row(&r);
	MemoryContextSwitchTo(spi);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

/* ------------------------------------------------------------------------
 * Maintenance: reap_expired, cancel, purge
 * ------------------------------------------------------------------------ */

static RgPlan expired_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r"
	" WHERE r.status" EQ "'running' AND r.lease_expires_at" LT "pg_catalog.now()"
	" ORDER BY r.lease_expires_at LIMIT 1000"
	" FOR NO KEY UPDATE SKIP LOCKED",
	0, {InvalidOid}, NULL
};

/*
 * rungate.reap_expired() RETURNS integer
 */
Datum
rg_reap_expired(PG_FUNCTION_ARGS)
{
	int			reaped = 0;

	SPI_connect();
	for (;;)
	{
		int			nrows,
					i;
		RunRow	   *batch;

		CHECK_FOR_INTERRUPTS();
		rg_exec(&expired_plan, NULL, NULL, false, 0);
		nrows = (int) SPI_processed;
		if (nrows == 0)
			break;
		batch = palloc(sizeof(RunRow) * nrows);
		for (i = 0; i < nrows; i++)
			load_run(i, &batch[i]);
		SPI_freetuptable(SPI_tuptable);

		for (i = 0; i < nrows; i++)
		{
			RunRow	   *r = &batch[i];
			Change		c;

			memset(&c, 0, sizeof(c));
			if (r->attempt < r->max_attempts)
			{
				c.to = "queued";
				c.event = "lease_expired";
				c.error = psprintf("lease of attempt %d expired", r->attempt);
			}
			else
			{
				c.to = c.event = "failed";
				c.error = psprintf("lease of attempt %d expired and no attempts are left",
								   r->attempt);
			}
			transition(r, &c);
			reaped++;
		}
		pfree(batch);
	}
	SPI_finish();
	PG_RETURN_INT32(reaped);
}

static RgPlan read_run_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r WHERE r.id" EQ "$1",
	1, {INT8OID}, NULL
};

/* A bulk parent's live items, locked in id order (as their workers lock them). */
static RgPlan live_items_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r"
	" WHERE r.parent_id" EQ "$1 AND r.status IN ('queued', 'running')"
	" ORDER BY r.id FOR NO KEY UPDATE",
	1, {INT8OID}, NULL
};

/* Cancel the live items of bulk parent parent_id, in id order, without roll-up. */
static void
cancel_items(int64 parent_id, Change *c)
{
	Datum		v[1];
	int			nrows,
				i;
	RunRow	   *items;

	v[0] = Int64GetDatum(parent_id);
	rg_exec(&live_items_plan, v, NULL, false, 0);
	nrows = (int) SPI_processed;
	items = palloc(sizeof(RunRow) * Max(nrows, 1));
	for (i = 0; i < nrows; i++)
		load_run(i, &items[i]);
	SPI_freetuptable(SPI_tuptable);
	c->no_rollup = true;
	for (i = 0; i < nrows; i++)
	{
		c->from_running = strcmp(items[i].status, "running") == 0;
		transition(&items[i], c);
	}
	c->no_rollup = false;
}

/*
 * rungate.cancel(run_id, actor_id) RETURNS rungate.runs
 *
 * A queued or running run becomes cancelled; a running one's lease is void
 * from the commit on (the move clears it) and rungate_cancelled tells its
 * worker. A running bulk parent's live items are cancelled first, in id
 * order, then the parent: the order in which a finishing item locks them,
 * so a cancel and an item's completion never deadlock.
 */
Datum
rg_cancel(PG_FUNCTION_ARGS)
{
	int64		run_id;
	bool		has_actor = !PG_ARGISNULL(1);
	int64		actor_id = has_actor ? PG_GETARG_INT64(1) : 0;
	RunRow		r;
	Change		c;
	Datum		v[1];
	bool		items_done;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	Datum		res;

	require_arg(fcinfo, 0, "run_id");
	run_id = PG_GETARG_INT64(0);

	SPI_connect();
	if (has_actor)
	{
		if (!rg_actor_exists(actor_id))
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("unknown actor " INT64_FORMAT, actor_id)));
	}

	memset(&c, 0, sizeof(c));
	c.to = c.event = "cancelled";
	c.actor_override = true;
	c.has_actor = has_actor;
	c.actor_id = actor_id;

	v[0] = Int64GetDatum(run_id);
	rg_exec(&read_run_plan, v, NULL, false, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("run " INT64_FORMAT " not found", run_id)));
	load_run(0, &r);
	items_done = r.item_tenants && strcmp(r.status, "running") == 0;
	if (items_done)
		cancel_items(run_id, &c);

	rg_exec(&lock_run_plan, v, NULL, false, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("run " INT64_FORMAT " not found", run_id)));
	load_run(0, &r);
	if (rg_status_is_terminal(r.status))
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot cancel run " INT64_FORMAT ": it is %s", run_id, r.status),
				 errdetail("Only queued and running runs can be cancelled; %s is a terminal status.",
						   r.status)));

	/*
	 * A bulk parent read as queued that a claim started (and fanned out)
	 * while we waited for its lock: its items now, under the parent's lock.
	 * That order is the reverse of a finishing item's, so on this rare path
	 * a concurrent completion may end in a detected deadlock, never in a
	 * cancelled parent with live items.
	 */
	if (!items_done && r.item_tenants && strcmp(r.status, "running") == 0)
	{
		cancel_items(run_id, &c);
		rg_exec(&lock_run_plan, v, NULL, false, 1);
		load_run(0, &r);
	}
	c.from_running = strcmp(r.status, "running") == 0;
	transition(&r, &c);

	spi = MemoryContextSwitchTo(caller);
	res = return_row(&r);
	MemoryContextSwitchTo(spi);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

/*
 * rungate.rerun(run_id, actor_id) RETURNS rungate.runs: a new run with the
 * operation, workspace, tenant, payload and priority of a failed, blocked
 * or cancelled run, on the authority of actor_id (null: system), decided at
 * dispatch like enqueue. The original is not changed; the new run names it
 * in rerun_of, and a rerun of a bulk item is a run of its own.
 */
Datum
rg_rerun(PG_FUNCTION_ARGS)
{
	int64		run_id;
	RunRow		r;
	EnqueueRequest q;
	RgDecision	d;
	Datum		v[1];
	MemoryContext caller = CurrentMemoryContext;
	Datum		res;

	require_arg(fcinfo, 0, "run_id");
	run_id = PG_GETARG_INT64(0);

	SPI_connect();
	v[0] = Int64GetDatum(run_id);
	rg_exec(&read_run_plan, v, NULL, false, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_NOT_FOUND),
				 errmsg("run " INT64_FORMAT " not found", run_id)));
	load_run(0, &r);
	if (r.item_tenants)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot rerun run " INT64_FORMAT ": it is a bulk run", run_id),
				 errhint("Enqueue a new bulk run with rungate.enqueue_bulk(), or rerun its items.")));
	if (strcmp(r.status, "failed") != 0 && strcmp(r.status, "blocked") != 0 &&
		strcmp(r.status, "cancelled") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot rerun run " INT64_FORMAT ": it is %s", run_id, r.status),
				 errdetail("Only failed, blocked and cancelled runs can be run again.")));

	memset(&q, 0, sizeof(q));
	q.operation = r.operation;
	q.workspace_id = r.workspace_id;
	q.has_tenant = r.has_tenant;
	q.tenant_id = r.tenant_id;
	q.has_initiator = !PG_ARGISNULL(1);
	q.initiator_id = q.has_initiator ? PG_GETARG_INT64(1) : 0;
	q.payload = r.payload;
	q.priority = r.priority;
	q.has_rerun_of = true;
	q.rerun_of = r.id;

	/* malformed only if the actor is unknown or the type changed scope */
	rg_decide_internal(q.operation, q.workspace_id, q.has_tenant, q.tenant_id,
					   q.has_initiator, q.initiator_id, false, &d);
	if (d.op.item_operation)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot rerun run " INT64_FORMAT ": operation \"%s\" is now a bulk orchestrator",
						run_id, q.operation)));
	res = dispatch(&q, &d, caller);
	SPI_finish();
	PG_RETURN_DATUM(res);
}

/*
 * Retention removes whole top-level runs (a bulk parent with its items, all
 * terminal once the parent is), their audit rows and notifications, a batch
 * at a time. Workers never lock terminal runs, so it does not block claims.
 */
#define PURGE_BATCH	500

static RgPlan purge_pick_plan = {
	"SELECT pg_catalog.array_agg(v.id) FROM ("
	"  SELECT r.id FROM rungate.runs r"
	"   WHERE r.parent_id IS NULL AND r.finished_at" LT "$1"
	"     AND r.status NOT IN ('queued', 'running')"
	"   ORDER BY r.finished_at LIMIT $2"
	"   FOR UPDATE SKIP LOCKED) v",
	2, {TIMESTAMPTZOID, INT4OID}, NULL
};

static RgPlan purge_delete_plan = {
	"WITH ids AS ("
	"  SELECT x.id FROM pg_catalog.unnest($1) AS x(id)"
	"  UNION ALL"
	"  SELECT r.id FROM rungate.runs r WHERE r.parent_id" EQ "ANY ($1)),"
	" a AS (DELETE FROM rungate.audit_log l WHERE l.run_id IN (SELECT id FROM ids)),"
	" n AS (DELETE FROM rungate.notifications o WHERE o.run_id IN (SELECT id FROM ids))"
	" DELETE FROM rungate.runs r WHERE r.parent_id" EQ "ANY ($1)",
	1, {INT8ARRAYOID}, NULL
};

static RgPlan purge_parents_plan = {
	"DELETE FROM rungate.runs r WHERE r.id" EQ "ANY ($1)",
	1, {INT8ARRAYOID}, NULL
};

/*
 * Remove at most max_runs top-level runs (no limit when negative) finished
 * before `cutoff`, PURGE_BATCH at a time; returns runs removed, items
 * included.
 */
static int64
purge_runs(Datum cutoff, int64 max_runs)
{
	Datum		v[2];
	int64		picked = 0,
				removed = 0;

	SPI_connect();
	while (max_runs < 0 || picked < max_runs)
	{
		bool		isnull;
		Datum		ids;
		ArrayType  *arr;
		int32		limit = PURGE_BATCH;
		int			got;

		CHECK_FOR_INTERRUPTS();
		if (max_runs >= 0 && max_runs - picked < limit)
			limit = (int32) (max_runs - picked);
		v[0] = cutoff;
		v[1] = Int32GetDatum(limit);
		rg_exec(&purge_pick_plan, v, NULL, false, 1);
		ids = rg_get_datum(0, 1, &isnull);
		if (isnull)
			break;
		arr = DatumGetArrayTypeP(SPI_datumTransfer(ids, false, -1));
		ids = PointerGetDatum(arr);
		got = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
		picked += got;
		v[0] = ids;
		rg_exec(&purge_delete_plan, v, NULL, true, 0);
		removed += SPI_processed;
		rg_exec(&purge_parents_plan, v, NULL, true, 0);
		removed += SPI_processed;
		if (got < limit)
			break;				/* a short batch: nothing else is free now */
	}
	SPI_finish();
	return removed;
}

/*
 * rungate.purge(finished_before) RETURNS bigint
 */
Datum
rg_purge(PG_FUNCTION_ARGS)
{
	require_arg(fcinfo, 0, "finished_before");
	PG_RETURN_INT64(purge_runs(PG_GETARG_DATUM(0), -1));
}

/*
 * rungate.purge_batch(finished_before, max_runs) RETURNS bigint: purge's
 * bounded step, so retention can commit as it goes (purge_in_batches) and
 * no transaction of it holds back vacuum for long.
 */
Datum
rg_purge_batch(PG_FUNCTION_ARGS)
{
	int32		max_runs;

	require_arg(fcinfo, 0, "finished_before");
	require_arg(fcinfo, 1, "max_runs");
	max_runs = PG_GETARG_INT32(1);
	if (max_runs < 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("max_runs must be at least 1, not %d", max_runs)));
	PG_RETURN_INT64(purge_runs(PG_GETARG_DATUM(0), max_runs));
}

/*
 * CALL rungate.purge_in_batches(finished_before, batch_size, INOUT removed):
 * purge_batch until nothing is left, committing after each. A procedure
 * that commits must be SECURITY INVOKER without SET clauses, so it goes
 * through purge_batch (SECURITY DEFINER) and the caller needs EXECUTE on
 * it: what it may remove is what purge_batch does. Inside a transaction
 * block (an atomic CALL) the first COMMIT fails (2D000).
 */
static RgPlan purge_batch_plan = {
	"SELECT rungate.purge_batch($1, $2)",
	2, {TIMESTAMPTZOID, INT4OID}, NULL
};

Datum
rg_purge_in_batches(PG_FUNCTION_ARGS)
{
	bool		nonatomic;
	Datum		v[2];
	int64		removed = 0;
	TupleDesc	desc;
	Datum		out;
	bool		isnull = false;

	require_arg(fcinfo, 0, "finished_before");
	require_arg(fcinfo, 1, "batch_size");
	if (PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("batch_size must be at least 1, not %d", PG_GETARG_INT32(1))));
	nonatomic = fcinfo->context && IsA(fcinfo->context, CallContext) &&
		!castNode(CallContext, fcinfo->context)->atomic;

	v[0] = PG_GETARG_DATUM(0);
	v[1] = PG_GETARG_DATUM(1);
	SPI_connect_ext(nonatomic ? SPI_OPT_NONATOMIC : 0);
	for (;;)
	{
		int64		n;

		rg_exec(&purge_batch_plan, v, NULL, false, 1);
		n = rg_get_int64(0, 1, NULL);
		if (n == 0)
			break;
		removed += n;
		SPI_commit();
		rg_spi_start_transaction();
	}
	SPI_finish();

	/* a procedure's output arguments come back as one record */
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "rungate: purge_in_batches must have an output argument");
	desc = BlessTupleDesc(desc);
	out = Int64GetDatum(removed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, &out, &isnull)));
}
