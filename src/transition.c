/*
 * transition.c
 *     The one place a run's status changes. Whichever caller asks (claim,
 *     complete, fail, release, recheck, heartbeat, reap, cancel, the bulk
 *     roll-up), a change writes, in the caller's transaction and through
 *     the paths below only: the run's row, its one audit row, the
 *     initiator's notification when a top-level run ends, the NOTIFYs
 *     (rungate_blocked, rungate_cancelled, rungate_queued), the counters,
 *     and the bulk parent's roll-up (docs/guarantees.md#transitions,
 *     #audit, #notifications, #atomic, #bulk).
 *
 *     rg_move          the SQL path: one kept UPDATE, guarded by the
 *                      status (and lease) the caller expects;
 *                      rg_transition_discard moves one of many in a call
 *                      (reap, a bulk cancel, a claim's blocks) and frees
 *                      what the move left at once
 *     rg_start_runs    claim's executor path: allowed runs become running
 *     rg_start_parent  a bulk parent starts and fans out into items
 *     rg_complete_leased  complete's executor path
 *     rg_created       what follows a new run's insert (dispatch.c)
 *
 *     It also reads runs (one loader, from an SPI row or a table slot) and
 *     owns the audit and notification writers.
 *
 * Must never change a status without its audit row, write an audit row
 * twice for one change, or write runs with the internal-write gate closed.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/typcache.h"
#include "utils/tuplestore.h"

#include "run.h"

/* ------------------------------------------------------------------------
 * Reading runs
 * ------------------------------------------------------------------------ */

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

/* Where a run is read from: a slot of rungate.runs, or a runs composite. */
typedef struct RunSource
{
	TupleTableSlot *slot;
	HeapTupleData tuple;
	TupleDesc	desc;
} RunSource;

static inline Datum
source_attr(RunSource *s, int col, bool *isnull)
{
	AttrNumber	att = runs_read_table.att[col];

	if (s->slot)
		return slot_getattr(s->slot, att, isnull);
	if (s->tuple.t_data == NULL)
		elog(ERROR, "rungate: no run to read");
	return heap_getattr(&s->tuple, att, s->desc, isnull);
}

/* a varlena copied into the current context, fetched if stored out of line */
static Datum
copy_varlena(Datum d)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

	if (VARATT_IS_EXTERNAL(v))
		return PointerGetDatum(detoast_external_attr(v));
	return datumCopy(d, false, -1);
}

/* The one loader: every run the C code reads comes through here. */
static void
run_load(RunSource *s, RunRow *r)
{
	bool		isnull;
	Datum		d;
	text	   *status;

	rg_table_lookup(&runs_read_table);
	memset(r, 0, sizeof(*r));
	r->id = DatumGetInt64(source_attr(s, RR_ID, &isnull));
	r->workspace_id = DatumGetInt64(source_attr(s, RR_WORKSPACE, &isnull));
	r->tenant_id = DatumGetInt64(source_attr(s, RR_TENANT, &isnull));
	r->has_tenant = !isnull;
	r->operation = TextDatumGetCString(source_attr(s, RR_OPERATION, &isnull));
	r->initiator_id = DatumGetInt64(source_attr(s, RR_INITIATOR, &isnull));
	r->has_initiator = !isnull;
	r->parent_id = DatumGetInt64(source_attr(s, RR_PARENT, &isnull));
	r->has_parent = !isnull;
	status = DatumGetTextPP(source_attr(s, RR_STATUS, &isnull));
	r->status = rg_status_parse(VARDATA_ANY(status), VARSIZE_ANY_EXHDR(status));
	if (r->status == RG_NO_STATUS)
		elog(ERROR, "rungate: run " INT64_FORMAT " has an unknown status", r->id);
	r->attempt = DatumGetInt32(source_attr(s, RR_ATTEMPT, &isnull));
	r->max_attempts = DatumGetInt32(source_attr(s, RR_MAX_ATTEMPTS, &isnull));
	d = source_attr(s, RR_TOKEN, &isnull);
	r->has_lease = !isnull;
	if (!isnull)
		memcpy(&r->lease_token, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	d = source_attr(s, RR_WORKER, &isnull);
	r->worker = isnull ? NULL : TextDatumGetCString(d);
	r->priority = DatumGetInt32(source_attr(s, RR_PRIORITY, &isnull));
	/* a slot's buffer goes away; a composite's values stay until SPI_finish */
	d = source_attr(s, RR_ITEM_TENANTS, &isnull);
	r->item_tenants = isnull ? (Datum) 0 : s->slot ? copy_varlena(d) : d;
	d = source_attr(s, RR_PAYLOAD, &isnull);
	r->payload = isnull ? (Datum) 0 : s->slot ? copy_varlena(d) : d;
	d = source_attr(s, RR_EXPIRES, &isnull);
	r->lease_expires_at = isnull ? 0 : DatumGetTimestampTz(d);
}

void
rg_run_from_slot(TupleTableSlot *slot, RunRow *r)
{
	RunSource	s = {.slot = slot};

	run_load(&s, r);
	r->tid = slot->tts_tid;
}

void
rg_run_load(int i, RunRow *r)
{
	RunSource	s = {0};
	bool		isnull;
	Datum		row = rg_get_datum(i, 1, &isnull);
	HeapTupleHeader th;

	if (isnull)
		elog(ERROR, "rungate: a query for runs returned a null row");
	th = DatumGetHeapTupleHeader(row);
	s.tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&s.tuple.t_self);
	s.tuple.t_tableOid = InvalidOid;
	s.tuple.t_data = th;
	s.desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th),
									HeapTupleHeaderGetTypMod(th));
	run_load(&s, r);
	ReleaseTupleDesc(s.desc);
	r->row = PointerGetDatum(th);
}

static RgPlan read_run_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r WHERE r.id" EQ "$1",
	1, {INT8OID}, NULL, false
};

static RgPlan lock_run_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r WHERE r.id" EQ "$1 FOR NO KEY UPDATE",
	1, {INT8OID}, NULL, false
};

bool
rg_run_read(int64 run_id, bool lock, RunRow *r)
{
	Datum		v = Int64GetDatum(run_id);

	rg_exec(lock ? &lock_run_plan : &read_run_plan, &v, NULL, false, 1);
	if (SPI_processed != 1)
		return false;
	rg_run_load(0, r);
	return true;
}

/* ------------------------------------------------------------------------
 * Helpers of the SQL entry points
 * ------------------------------------------------------------------------ */

Datum
rg_text_or_null(const char *s, char *n)
{
	*n = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

Datum
rg_finish_with_run(RunRow *r)
{
	Datum		res = SPI_datumTransfer(r->row, false, -1);

	SPI_finish();
	return res;
}

void
rg_decide_run(RunRow *r, RgDecision *d)
{
	rg_decide_internal(r->operation, r->workspace_id,
					   r->has_tenant, r->tenant_id,
					   r->has_initiator, r->initiator_id, true, d);
}

/* ------------------------------------------------------------------------
 * The audit writer, the initiator's notification, the NOTIFYs
 * ------------------------------------------------------------------------ */

/* the columns of an audit row rungate writes, in audit_add's order */
#define AUDIT_NCOLS 14
static RgTable audit_table = {
	.name = "audit_log",
	.cols = {"at", "run_id", "workspace_id", "tenant_id", "attempt", "event",
		"authority", "actor_id", "decision", "reason_code", "reason_category",
	"checks", "worker", "txid"}
};

/* One audit row: the run's, at `attempt`, as `event`. */
typedef struct AuditRow
{
	const RunRow *run;
	int32		attempt;
	RgEvent		event;
	bool		has_actor;		/* authority: actor (actor_id) or system */
	int64		actor_id;
	const RgDecision *decision; /* NULL: none behind it */
	const char *reason_code;
	const char *reason_category;
	Datum		worker;			/* text, or 0 */
} AuditRow;

static AuditRow
audit_of(const RunRow *r, int32 attempt, RgEvent event)
{
	AuditRow	a = {0};

	a.run = r;
	a.attempt = attempt;
	a.event = event;
	a.has_actor = r->has_initiator;
	a.actor_id = r->initiator_id;
	return a;
}

static Datum
text_datum(const char *s, bool *isnull)
{
	*isnull = s == NULL;
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* Add a to the audit writer w, and count it. */
static void
audit_add(RgWriter *w, const AuditRow *a)
{
	const RunRow *r = a->run;
	const RgDecision *d = a->decision;
	Datum		v[AUDIT_NCOLS];
	bool		n[AUDIT_NCOLS] = {false};

	v[0] = TimestampTzGetDatum(GetCurrentTimestamp());	/* clock_timestamp() */
	v[1] = Int64GetDatum(r->id);
	v[2] = Int64GetDatum(r->workspace_id);
	v[3] = Int64GetDatum(r->tenant_id);
	n[3] = !r->has_tenant;
	v[4] = Int32GetDatum(a->attempt);
	v[5] = CStringGetTextDatum(rg_event_names[a->event]);
	v[6] = CStringGetTextDatum(a->has_actor ? "actor" : "system");
	v[7] = Int64GetDatum(a->actor_id);
	n[7] = !a->has_actor;
	v[8] = text_datum(d ? (d->allowed ? "allow" : "deny") : NULL, &n[8]);
	v[9] = text_datum(a->reason_code, &n[9]);
	v[10] = text_datum(a->reason_category, &n[10]);
	v[11] = d ? d->checks : (Datum) 0;
	n[11] = d == NULL;
	v[12] = a->worker;
	n[12] = a->worker == (Datum) 0;
	/* txid_current() */
	v[13] = Int64GetDatum((int64) U64FromFullTransactionId(GetTopFullTransactionId()));
	rg_writer_insert(w, v, n);

	rg_metrics_event(rg_event_names[a->event], r->operation, 1);
	if (a->event == RG_EV_DISPATCH_BLOCKED || a->event == RG_EV_EXECUTION_BLOCKED ||
		a->event == RG_EV_RECHECK_BLOCKED)
		rg_metrics_blocked(a->reason_code);
}

static void
audit_write(const AuditRow *a)
{
	RgWriter	w;

	rg_gate_open();
	rg_writer_open(&w, &audit_table, false);
	audit_add(&w, a);
	rg_writer_close(&w);
	rg_gate_close();
}

/* the columns of a notification rungate writes */
static RgTable notification_table = {
	.name = "notifications",
	.cols = {"actor_id", "run_id", "kind", "created_at"}
};

/* The initiator of run r hears that it became `status`. */
static void
notify_initiator(const RunRow *r, RgStatus status)
{
	RgWriter	w;
	Datum		v[4];
	bool		n[4] = {false, false, false, false};

	v[0] = Int64GetDatum(r->initiator_id);
	v[1] = Int64GetDatum(r->id);
	v[2] = CStringGetTextDatum(psprintf("run_%s", rg_status_name(status)));
	v[3] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	rg_writer_open(&w, &notification_table, false);
	rg_writer_insert(&w, v, n);
	rg_writer_close(&w);
}

/* A NOTIFY naming run r: {"run_id", "workspace_id", "tenant_id"[, extra]} */
static void
notify_run(const char *channel, const RunRow *r, const char *reason_code)
{
	StringInfoData p;

	initStringInfo(&p);
	appendStringInfo(&p, "{\"run_id\": " INT64_FORMAT ", \"workspace_id\": " INT64_FORMAT,
					 r->id, r->workspace_id);
	if (r->has_tenant)
		appendStringInfo(&p, ", \"tenant_id\": " INT64_FORMAT, r->tenant_id);
	else
		appendStringInfoString(&p, ", \"tenant_id\": null");
	if (reason_code)
		appendStringInfo(&p, ", \"reason_code\": \"%s\"", reason_code);
	appendStringInfoChar(&p, '}');
	Async_Notify(channel, p.data);
}

/* ------------------------------------------------------------------------
 * The SQL path: rg_move
 * ------------------------------------------------------------------------ */

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
 * The run is updated by one statement. It must still be in status $9 (and,
 * with $10, hold that live lease): callers that did not lock it first learn
 * from "no row" that it moved on.
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
	TEXTOID, UUIDOID, TIMESTAMPTZOID, INT4OID}, NULL, false
};

static void rollup_parent(int64 parent_id);

/*
 * What follows run r's change c from status `from` (r as changed): its
 * audit row, the initiator's notification, the NOTIFY, the roll-up.
 */
static void
after_move(RunRow *r, const Change *c, RgStatus from,
		   const char *reason_code, const char *reason_category)
{
	AuditRow	a = audit_of(r, r->attempt, c->event);
	bool		ends = rg_status_terminal(c->to);

	/*
	 * The actor is the caller's when it overrides (cancel), else the
	 * initiator; the worker is the caller's, else the run's (a cancellation
	 * names none but its caller's).
	 */
	if (c->actor_override)
	{
		a.has_actor = c->has_actor;
		a.actor_id = c->actor_id;
	}
	a.decision = c->decision;
	a.reason_code = reason_code;
	a.reason_category = reason_category;
	if (c->worker)
		a.worker = CStringGetTextDatum(c->worker);
	else if (c->event != RG_EV_CANCELLED && r->worker)
		a.worker = CStringGetTextDatum(r->worker);
	audit_write(&a);

	if (r->has_initiator && !r->has_parent && ends)
		notify_initiator(r, c->to);

	if (c->to == RG_BLOCKED)
		notify_run("rungate_blocked", r, reason_code);
	else if (c->to == RG_CANCELLED && from == RG_RUNNING)
		notify_run("rungate_cancelled", r, NULL);	/* its lease holder must stop */
	else if (c->to == RG_QUEUED && change_is_due(c))
		rg_wakeup_queued(r->operation, r->id);	/* a delayed one is found by polling */

	/* a place of a concurrency limit freed: waiting runs may start now */
	if (from == RG_RUNNING)
		rg_flow_place_freed(r->operation, r->workspace_id);

	if (r->has_parent && ends && !c->no_rollup)
		rollup_parent(r->parent_id);
}

bool
rg_move(int64 run_id, RgStatus from, pg_uuid_t *token, const Change *c,
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
	v[1] = CStringGetTextDatum(rg_status_name(c->to));
	v[2] = rg_text_or_null(reason_code, &n[2]);
	v[3] = rg_text_or_null(reason_category, &n[3]);
	v[4] = rg_text_or_null(reason_message, &n[4]);
	v[5] = rg_text_or_null(c->error, &n[5]);
	v[6] = c->result;
	n[6] = c->result ? ' ' : 'n';
	v[7] = c->retry_in ? IntervalPGetDatum(c->retry_in) : (Datum) 0;
	n[7] = c->retry_in ? ' ' : 'n';
	v[8] = CStringGetTextDatum(rg_status_name(from));
	v[9] = token ? UUIDPGetDatum(token) : (Datum) 0;
	n[9] = token ? ' ' : 'n';
	v[10] = TimestampTzGetDatum(c->run_at);
	n[10] = c->has_run_at ? ' ' : 'n';
	v[11] = Int32GetDatum(c->extra_attempts);
	rg_exec(&move_plan, v, n, true, 0);
	if (SPI_processed != 1)
		return false;
	rg_run_load(0, r);
	after_move(r, c, from, reason_code, reason_category);
	return true;
}

void
rg_transition(RunRow *r, const Change *c)
{
	if (!rg_move(r->id, r->status, NULL, c, r))
		elog(ERROR, "rungate: run " INT64_FORMAT " changed under its lock", r->id);
}

/*
 * rg_transition for a caller that moves many runs in one call (reap, the
 * items of a bulk cancel, the runs a claim blocks) and keeps nothing of the
 * moved row: what the move leaves (the row it returned, in a tuple table of
 * its own, and its notifications' text) is freed when it returns, not at
 * the caller's SPI_finish, so memory stays flat however many runs the call
 * moves. r's pointers (operation, worker, payload, row) are cleared.
 */
void
rg_transition_discard(RunRow *r, const Change *c)
{
	SPI_connect();
	rg_transition(r, c);
	SPI_finish();
	/* what pointed into the freed connection fails loudly if read */
	r->operation = NULL;
	r->worker = NULL;
	r->item_tenants = (Datum) 0;
	r->payload = (Datum) 0;
	r->row = (Datum) 0;
}

/* ------------------------------------------------------------------------
 * The bulk roll-up
 * ------------------------------------------------------------------------ */

static RgPlan pending_items_plan = {
	"SELECT 1 FROM rungate.runs r"
	" WHERE r.parent_id" EQ "$1 AND r.status IN ('queued', 'running') LIMIT 1",
	1, {INT8OID}, NULL, false
};

static RgPlan item_counts_plan = {
	"SELECT pg_catalog.count(*),"
	"       pg_catalog.count(*) FILTER (WHERE r.status" EQ "'succeeded'),"
	"       pg_catalog.count(*) FILTER (WHERE r.status" EQ "'blocked'),"
	"       pg_catalog.count(*) FILTER (WHERE r.status" EQ "'failed'),"
	"       pg_catalog.count(*) FILTER (WHERE r.status" EQ "'cancelled')"
	"  FROM rungate.runs r WHERE r.parent_id" EQ "$1",
	1, {INT8OID}, NULL, false
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

	if (!rg_run_read(parent_id, true, &parent) || parent.status != RG_RUNNING)
		return;
	v[0] = Int64GetDatum(parent_id);
	rg_exec(&pending_items_plan, v, NULL, false, 1);
	if (SPI_processed > 0)
		return;
	rg_exec(&item_counts_plan, v, NULL, false, 1);
	total = rg_get_int64(0, 1, NULL);
	succeeded = rg_get_int64(0, 2, NULL);
	blocked = rg_get_int64(0, 3, NULL);
	failed = rg_get_int64(0, 4, NULL);
	cancelled = rg_get_int64(0, 5, NULL);

	if (succeeded == total)
		rg_change_init(&c, RG_SUCCEEDED, RG_EV_SUCCEEDED);
	else if (succeeded > 0)
		rg_change_init(&c, RG_PARTIALLY_SUCCEEDED, RG_EV_PARTIALLY_SUCCEEDED);
	else if (blocked == total)
	{
		rg_change_init(&c, RG_BLOCKED, RG_EV_EXECUTION_BLOCKED);
		c.reason_code = "all_items_blocked";
		c.reason_category = "bulk";
		c.reason_message = psprintf("all " INT64_FORMAT " items of bulk run " INT64_FORMAT
									" were blocked", total, parent_id);
	}
	else
	{
		rg_change_init(&c, RG_FAILED, RG_EV_FAILED);
		c.error = psprintf("no item of bulk run " INT64_FORMAT " succeeded: "
						   INT64_FORMAT " failed, " INT64_FORMAT " blocked, "
						   INT64_FORMAT " cancelled",
						   parent_id, failed, blocked, cancelled);
	}
	rg_transition(&parent, &c);
}

/* ------------------------------------------------------------------------
 * A new run (dispatch.c inserted it)
 * ------------------------------------------------------------------------ */

void
rg_created(RunRow *r, RgDecision *d, bool due)
{
	AuditRow	a = audit_of(r, 0, d->allowed ? RG_EV_DISPATCHED : RG_EV_DISPATCH_BLOCKED);

	a.decision = d;
	a.reason_code = d->reason_code;
	a.reason_category = d->reason_category;
	audit_write(&a);
	if (!d->allowed)
	{
		if (r->has_initiator)
			notify_initiator(r, RG_BLOCKED);
		notify_run("rungate_blocked", r, d->reason_code);
	}
	else if (due)
		rg_wakeup_queued(r->operation, r->id);
}

/* ------------------------------------------------------------------------
 * Claim's executor paths: starting runs
 * ------------------------------------------------------------------------ */

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

void
rg_start_runs(ReturnSetInfo *rsinfo, const char *worker, RunRow *batch,
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
		v[RS_STATUS] = CStringGetTextDatum(rg_status_name(RG_RUNNING));
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
		AuditRow	a = audit_of(&batch[starts[i]], attempts[i], RG_EV_STARTED);

		a.decision = &decisions[starts[i]];
		a.worker = worker_text;
		audit_add(&w, &a);
	}
	rg_writer_close(&w);
	rg_gate_close();

	for (i = 0; i < n; i++)
	{
		RunRow	   *r = &batch[starts[i]];
		Datum		out[9];
		bool		outnull[9] = {false};

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

static RgPlan start_parent_plan = {
	"UPDATE rungate.runs r SET status = 'running', attempt = r.attempt" PLUS "1,"
	"  started_at = COALESCE(r.started_at, pg_catalog.now())"
	" WHERE r.id" EQ "$1"
	" RETURNING r.attempt",
	1, {INT8OID}, NULL, false
};

/* A bulk parent's items, queued; their 'dispatched' rows follow. */
static RgPlan create_items_plan = {
	"INSERT INTO rungate.runs AS r (workspace_id, tenant_id, operation, initiator_id,"
	"  parent_id, status, max_attempts, priority, payload)"
	" SELECT $1, t.id, $2, $3, $4, 'queued',"
	"        (SELECT ot.max_attempts FROM rungate.operation_types ot"
	"          WHERE ot.name" EQ "$2),"
	"        $5, $6"
	"   FROM pg_catalog.unnest($7) AS t(id)"
	" RETURNING r.id, r.tenant_id",
	7, {INT8OID, TEXTOID, INT8OID, INT8OID, INT4OID, JSONBOID, INT8ARRAYOID}, NULL, false
};

void
rg_start_parent(RunRow *r, RgDecision *d, const char *worker)
{
	Datum		v[7];
	char		n[7];
	AuditRow	a;
	RunRow		item;
	RgWriter	w;
	uint64		i;

	v[0] = Int64GetDatum(r->id);
	rg_exec(&start_parent_plan, v, NULL, true, 0);
	a = audit_of(r, rg_get_int32(0, 1, NULL), RG_EV_STARTED);
	a.decision = d;
	a.worker = CStringGetTextDatum(worker);
	audit_write(&a);

	if (r->item_tenants == (Datum) 0)
		elog(ERROR, "rungate: bulk run " INT64_FORMAT " has no tenants", r->id);
	memset(n, ' ', sizeof(n));
	v[0] = Int64GetDatum(r->workspace_id);
	v[1] = CStringGetTextDatum(d->op.item_operation);
	v[2] = Int64GetDatum(r->initiator_id);
	n[2] = r->has_initiator ? ' ' : 'n';
	v[3] = Int64GetDatum(r->id);
	v[4] = Int32GetDatum(r->priority);
	v[5] = r->payload;
	v[6] = r->item_tenants;
	rg_exec(&create_items_plan, v, n, true, 0);

	/* the items' rows: what rg_created writes for an allowed run, no decision */
	memset(&item, 0, sizeof(item));
	item.workspace_id = r->workspace_id;
	item.has_tenant = true;
	item.operation = d->op.item_operation;
	item.has_initiator = r->has_initiator;
	item.initiator_id = r->initiator_id;
	rg_gate_open();
	rg_writer_open(&w, &audit_table, false);
	for (i = 0; i < SPI_processed; i++)
	{
		item.id = rg_get_int64((int) i, 1, NULL);
		item.tenant_id = rg_get_int64((int) i, 2, NULL);
		a = audit_of(&item, 0, RG_EV_DISPATCHED);
		audit_add(&w, &a);
	}
	rg_writer_close(&w);
	rg_gate_close();
	rg_wakeup_queued(d->op.item_operation, r->id);
}

/* ------------------------------------------------------------------------
 * complete's executor path
 * ------------------------------------------------------------------------ */

/*
 * The lease holder's run, locked by its id as move_plan's UPDATE would find
 * it, becomes succeeded through a writer (rowwrite.c), as move_plan sets a
 * run that succeeds.
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

/* Is the run the writer w locked running under the live lease token? */
static bool
leased_by(RgWriter *w, pg_uuid_t *token)
{
	bool		isnull;
	Datum		d;
	text	   *status;

	d = rg_writer_old(w, RC_STATUS, &isnull);
	if (isnull)
		return false;
	status = DatumGetTextPP(d);
	if (rg_status_parse(VARDATA_ANY(status), VARSIZE_ANY_EXHDR(status)) != RG_RUNNING)
		return false;
	d = rg_writer_old(w, RC_TOKEN, &isnull);
	if (isnull || memcmp(DatumGetUUIDP(d), token, UUID_LEN) != 0)
		return false;
	d = rg_writer_old(w, RC_EXPIRES, &isnull);
	return !isnull && DatumGetTimestampTz(d) >= GetCurrentTransactionStartTimestamp();
}

bool
rg_complete_leased(int64 run_id, pg_uuid_t *token, const Change *c, RunRow *r)
{
	RgWriter	w;
	bool		change[RC_NCOLS] = {false};
	Datum		v[RC_NCOLS] = {0};
	bool		nulls[RC_NCOLS] = {false};
	int			i;

	rg_gate_open();
	rg_writer_open(&w, &runs_complete_table, true);
	if (!rg_writer_lock(&w, run_id) || !leased_by(&w, token))
	{
		rg_writer_close(&w);
		rg_gate_close();
		return false;
	}

	for (i = RC_STATUS; i < RC_NCOLS; i++)
	{
		change[i] = true;
		nulls[i] = true;
	}
	v[RC_STATUS] = CStringGetTextDatum(rg_status_name(c->to));
	nulls[RC_STATUS] = false;
	change[RC_RESULT] = c->result != (Datum) 0;
	v[RC_RESULT] = c->result;
	nulls[RC_RESULT] = false;
	change[RC_RUN_AT] = false;
	v[RC_FINISHED] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	nulls[RC_FINISHED] = false;
	rg_writer_update(&w, change, v, nulls);

	/* the run as written, copied out before the writer lets its buffer go */
	rg_run_from_slot(w.slot, r);
	r->row = ExecFetchSlotHeapTupleDatum(w.slot);
	rg_writer_close(&w);
	rg_gate_close();

	after_move(r, c, RG_RUNNING, NULL, NULL);
	return true;
}
