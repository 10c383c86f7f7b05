/*
 * control.c
 *     What an operator does to a live run: rungate.cancel. A queued or
 *     running run becomes cancelled through transition.c; a running bulk
 *     parent's live items are cancelled with it (docs/guarantees.md#run-control).
 *     Holds and limits are flow control (flow.c); rerun is a dispatch
 *     (dispatch.c).
 *
 * Must never cancel a run that has ended, or leave a cancelled bulk parent
 * with live items.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"

#include "run.h"

PG_FUNCTION_INFO_V1(rg_cancel);

/* A bulk parent's live items, locked in id order (as their workers lock them). */
static RgPlan live_items_plan = {
	"SELECT " RUN_COLS " FROM rungate.runs r"
	" WHERE r.parent_id" EQ "$1 AND r.status IN ('queued', 'running')"
	" ORDER BY r.id FOR NO KEY UPDATE",
	1, {INT8OID}, NULL, RG_PER_CALL
};

/* Cancel the live items of bulk parent parent_id, in id order, without roll-up. */
static void
cancel_items(int64 parent_id, Change *c)
{
	Datum		v[1];
	int			nrows,
				i;
	RunRow	   *items;
	SPITupleTable *tab;

	v[0] = Int64GetDatum(parent_id);
	rg_exec(&live_items_plan, v, NULL, false, 0);
	nrows = (int) SPI_processed;
	tab = SPI_tuptable;
	items = palloc(sizeof(RunRow) * Max(nrows, 1));
	for (i = 0; i < nrows; i++)
		rg_run_load(i, &items[i]);
	c->no_rollup = true;
	for (i = 0; i < nrows; i++)
		rg_transition_discard(&items[i], c);
	c->no_rollup = false;
	SPI_freetuptable(tab);
	pfree(items);
}

static void
run_not_found(int64 run_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_RG_NOT_FOUND),
			 errmsg("run " INT64_FORMAT " not found", run_id)));
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
	bool		items_done;

	rg_require_arg(fcinfo, 0, "run_id");
	run_id = PG_GETARG_INT64(0);

	SPI_connect();
	if (has_actor && !rg_actor_exists(actor_id))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("unknown actor " INT64_FORMAT, actor_id)));

	rg_change_init(&c, RG_CANCELLED, RG_EV_CANCELLED);
	c.actor_override = true;
	c.has_actor = has_actor;
	c.actor_id = actor_id;

	if (!rg_run_read(run_id, false, &r))
		run_not_found(run_id);
	items_done = r.item_tenants && r.status == RG_RUNNING;
	if (items_done)
		cancel_items(run_id, &c);

	if (!rg_run_read(run_id, true, &r))
		run_not_found(run_id);
	if (rg_status_terminal(r.status))
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("cannot cancel run " INT64_FORMAT ": it is %s", run_id,
						rg_status_name(r.status)),
				 errdetail("Only queued and running runs can be cancelled; %s is a terminal status.",
						   rg_status_name(r.status))));

	/*
	 * A bulk parent read as queued that a claim started (and fanned out)
	 * while we waited for its lock: its items now, under the parent's lock.
	 * That order is the reverse of a finishing item's, so on this rare path
	 * a concurrent completion may end in a detected deadlock, never in a
	 * cancelled parent with live items.
	 */
	if (!items_done && r.item_tenants && r.status == RG_RUNNING)
	{
		cancel_items(run_id, &c);
		(void) rg_run_read(run_id, true, &r);
	}
	rg_transition(&r, &c);
	PG_RETURN_DATUM(rg_finish_with_run(&r));
}
