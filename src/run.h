/*
 * run.h
 *     A run as the C code holds it, and the one way its status changes: the
 *     interface of the transition module (transition.c) to the files that
 *     take requests, dispatch.c (enqueue, bulk, rerun), worker.c (claim,
 *     heartbeat, recheck, complete, fail, release), control.c (cancel) and
 *     maintenance.c (reap, purge).
 *
 * Every status change goes through rg_move() or one of the executor paths
 * beside it in transition.c (rg_start_runs, rg_start_parent,
 * rg_complete_leased): each writes the run, its one audit row, the
 * initiator's notification, the NOTIFYs and the bulk roll-up together, in
 * the caller's transaction (docs/guarantees.md#transitions, #audit, #atomic).
 */
#ifndef RUNGATE_RUN_H
#define RUNGATE_RUN_H

#include "postgres.h"

#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "rungate.h"
#include "runstatus.h"

/*
 * Every query that reads runs for the C code returns the whole row as its
 * first column (the rungate.runs composite); rg_run_load reads it.
 */
#define RUN_COLS "r"

/* A run's fields; strings and varlenas are copies in the caller's context. */
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
	RgStatus	status;
	int32		attempt;
	int32		max_attempts;
	int32		priority;
	bool		has_lease;
	pg_uuid_t	lease_token;
	TimestampTz lease_expires_at;	/* when has_lease */
	char	   *worker;
	Datum		item_tenants;	/* bigint[], or 0 */
	Datum		payload;
	Datum		row;			/* the rungate.runs composite, or 0 */
	ItemPointerData tid;		/* read from a slot: the version read */
} RunRow;

/* What a status change writes besides the status itself. */
typedef struct Change
{
	RgStatus	to;				/* new status */
	RgEvent		event;			/* its audit event */
	RgDecision *decision;		/* the decision behind it, or NULL */
	const char *reason_code;	/* blocked without a decision (bulk) */
	const char *reason_category;
	const char *reason_message;
	const char *error;
	Datum		result;			/* jsonb, or 0 */
	bool		actor_override; /* audit actor: has_actor/actor_id, not the initiator */
	bool		has_actor;
	int64		actor_id;
	Interval   *retry_in;		/* back to queued: delay, or NULL */
	bool		has_run_at;		/* back to queued: due at run_at (release) */
	TimestampTz run_at;
	int32		extra_attempts; /* added to max_attempts (release: 1) */
	const char *worker;			/* audit worker, when not the run's (claim) */
	bool		no_rollup;		/* cancel of a parent's items: it ends cancelled */
} Change;

/* A change to status `to` with event `event`, nothing else set. */
static inline void
rg_change_init(Change *c, RgStatus to, RgEvent event)
{
	memset(c, 0, sizeof(*c));
	c->to = to;
	c->event = event;
}

/* ---- reading runs (transition.c) ---- */

/* the run in SPI result row i (column 1: the rungate.runs composite) */
extern void rg_run_load(int i, RunRow *r);

/* the run in a slot of rungate.runs (row stays 0) */
extern void rg_run_from_slot(TupleTableSlot *slot, RunRow *r);

/* run id, locked FOR NO KEY UPDATE when lock; false when it does not exist */
extern bool rg_run_read(int64 run_id, bool lock, RunRow *r);

/* ---- status changes (transition.c) ---- */

/*
 * Move run run_id from status `from` (holding lease `token`, unless NULL)
 * as c says. False, having changed nothing, when the run is no longer in
 * that state; else r is the run as changed.
 */
extern bool rg_move(int64 run_id, RgStatus from, pg_uuid_t *token,
					const Change *c, RunRow *r);

/* rg_move of a run its caller has locked and loaded */
extern void rg_transition(RunRow *r, const Change *c);
extern void rg_transition_discard(RunRow *r, const Change *c);

/*
 * What follows the insert of run r, decided by d at dispatch: its audit row
 * (dispatched or dispatch_blocked), and for a blocked one the initiator's
 * notification and rungate_blocked; due says a queued one is due now.
 */
extern void rg_created(RunRow *r, RgDecision *d, bool due);

/*
 * Claim's executor paths: start the allowed runs batch[starts[0..n-1]]
 * (locked by the caller, read from slots) and return them into rsinfo;
 * start an allowed bulk parent and fan it out into queued items.
 */
extern void rg_start_runs(ReturnSetInfo *rsinfo, const char *worker,
						  RunRow *batch, RgDecision *decisions,
						  const int *starts, int n);
extern void rg_start_parent(RunRow *r, RgDecision *d, const char *worker);

/*
 * complete's common case: the lease holder's running run succeeds. False,
 * having changed nothing, when it is missing, not running or not under
 * this live lease (rg_move then tells why).
 */
extern bool rg_complete_leased(int64 run_id, pg_uuid_t *token,
							   const Change *c, RunRow *r);

/* ---- small helpers of the SQL entry points (transition.c) ---- */

/* a text Datum for SPI, or null (n: ' ' or 'n') */
extern Datum rg_text_or_null(const char *s, char *n);

/* the run's rungate.runs row (r->row) copied out of SPI, then SPI_finish */
extern Datum rg_finish_with_run(RunRow *r);

/* the decision for a recorded run, now */
extern void rg_decide_run(RunRow *r, RgDecision *d);

#endif							/* RUNGATE_RUN_H */
