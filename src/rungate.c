/*
 * rungate.c
 *     Module entry and the plumbing every other file uses: the internal-write
 *     gate, kept SPI plans, small SPI result readers, and the shared-memory
 *     hooks (the authority generation, the queue floor, turns, wake-ups,
 *     the metrics counters, the count of rows applied by subscriptions, the
 *     scheduler's registry) when preloaded.
 *
 * The gate is what makes runs and audit rows change only through rungate's
 * functions (docs/guarantees.md#transitions, #audit).
 *
 * Owns no SQL-callable function. Must never hold the gate open across a
 * (sub)transaction abort: the callbacks below close it.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "rungate.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Depth of nested gated writes in this backend; 0 when closed. */
static int	gate_depth = 0;

/* rungate.restore_mode */
static bool restore_mode = false;

bool
rg_restore_mode(void)
{
	return restore_mode;
}

void
rg_gate_open(void)
{
	gate_depth++;
}

void
rg_gate_close(void)
{
	if (gate_depth > 0)
		gate_depth--;
}

bool
rg_gate_is_open(void)
{
	return gate_depth > 0;
}

static void
rg_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		gate_depth = 0;
}

static void
rg_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	/*
	 * A gated write that errors out inside a subtransaction (a worker's
	 * EXCEPTION block) must not leave the gate open for the code that
	 * catches it.
	 */
	if (event == SUBXACT_EVENT_ABORT_SUB)
		gate_depth = 0;
}

static rg_shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Shared memory, when preloaded: the authority generation, the queue floor,
 * turns, wake-ups, the metrics counters, the rows applied by
 * subscriptions, the scheduler's registry of workers.
 */
static void
rg_shmem_request(void)
{
	Size		size;

	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	size = rg_authcache_shmem_size();
	size = add_size(size, rg_queue_shmem_size());
	size = add_size(size, rg_flow_shmem_size());
	size = add_size(size, rg_wakeup_shmem_size());
	size = add_size(size, rg_metrics_shmem_size());
	size = add_size(size, rg_replication_shmem_size());
	size = add_size(size, rg_scheduler_shmem_size());
	RequestAddinShmemSpace(size);
	rg_flow_shmem_request();
}

static void
rg_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rg_authcache_shmem_init();
	rg_queue_shmem_init();
	rg_flow_shmem_init();
	rg_wakeup_shmem_init();
	rg_metrics_shmem_init();
	rg_replication_shmem_init();
	rg_scheduler_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	DefineCustomBoolVariable("rungate.restore_mode",
							 "Lets a restore load dumped runs and audit rows.",
							 "While on, the guards of rungate.runs and rungate.audit_log "
							 "accept INSERTs; updates, deletes and truncation stay refused. "
							 "Set it only for pg_restore or psql loading a dump.",
							 &restore_mode,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	RegisterXactCallback(rg_xact_callback, NULL);
	RegisterSubXactCallback(rg_subxact_callback, NULL);
	rg_authcache_init();
	rg_queue_init();
	rg_worker_init();
	rg_wakeup_init();
	rg_metrics_init();
	rg_scheduler_init();
	if (process_shared_preload_libraries_in_progress)
	{
		rg_request_shmem(rg_shmem_request, &prev_shmem_request_hook);
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = rg_shmem_startup;
	}
	MarkGUCPrefixReserved("rungate");
}

/*
 * Prepare a plan once per backend and keep it. Every caller runs under a
 * pinned search_path (SECURITY DEFINER ... SET search_path), and the plan
 * cache re-parses with the path it was first prepared under.
 */
SPIPlanPtr
rg_plan(RgPlan *p)
{
	Assert(!p->per_call);
	if (p->plan == NULL)
	{
		/*
		 * Always the generic plan: every query here is written for one plan
		 * (keys and indexes, not parameter values), and a custom plan would
		 * be planned anew on every call (LIMIT $1 makes it look cheaper).
		 */
		SPIPlanPtr	plan = SPI_prepare_cursor(p->sql, p->nargs, p->argtypes,
											  CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "rungate: SPI_prepare failed (%s) for: %s",
				 SPI_result_code_string(SPI_result), p->sql);
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "rungate: SPI_keepplan failed");
		p->plan = plan;
	}
	return p->plan;
}

/*
 * read_only = false: in READ COMMITTED each query takes a new snapshot, so
 * the decision sees every revocation committed before it ran. A per-call
 * plan is a one-shot plan: PostgreSQL would keep the generic plan of a kept
 * query without parameters whatever its cursor options ask.
 */
static int
exec_plan(RgPlan *p, Datum *values, const char *nulls, long count)
{
	if (p->per_call)
		return SPI_execute_with_args(p->sql, p->nargs, p->argtypes, values,
									 nulls, false, count);
	return SPI_execute_plan(rg_plan(p), values, nulls, false, count);
}

int
rg_exec(RgPlan *p, Datum *values, const char *nulls, bool gated, long count)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int rc = 0;

	if (!gated)
		rc = exec_plan(p, values, nulls, count);
	else
	{
		rg_gate_open();
		/* a write may meet an id that a subscriber's copied row holds */
		PG_TRY();
		{
			rc = exec_plan(p, values, nulls, count);
		}
		PG_CATCH();
		{
			rg_rethrow_write_error(cxt);
		}
		PG_END_TRY();
		rg_gate_close();
	}
	if (rc < 0)
		elog(ERROR, "rungate: SPI execution failed (%s) for: %s",
			 SPI_result_code_string(rc), p->sql);
	return rc;
}

Datum
rg_get_datum(int row, int col, bool *isnull)
{
	bool		n;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &n);

	if (isnull)
		*isnull = n;
	return d;
}

bool
rg_get_bool(int row, int col, bool *isnull)
{
	bool		n;
	Datum		d = rg_get_datum(row, col, &n);

	if (isnull)
		*isnull = n;
	return n ? false : DatumGetBool(d);
}

int64
rg_get_int64(int row, int col, bool *isnull)
{
	bool		n;
	Datum		d = rg_get_datum(row, col, &n);

	if (isnull)
		*isnull = n;
	return n ? 0 : DatumGetInt64(d);
}

int32
rg_get_int32(int row, int col, bool *isnull)
{
	bool		n;
	Datum		d = rg_get_datum(row, col, &n);

	if (isnull)
		*isnull = n;
	return n ? 0 : DatumGetInt32(d);
}

/* Text column as a C string allocated in the current context, NULL if null. */
char *
rg_get_text(int row, int col)
{
	bool		n;
	Datum		d = rg_get_datum(row, col, &n);

	return n ? NULL : TextDatumGetCString(d);
}

/*
 * Does the authority row with this key exist (SPI connected)? For the
 * validation of requests that name workspaces, tenants, actors and
 * operation types outside a decision (hold, cancel, schedules).
 */
static RgPlan workspace_known_plan = {
	"SELECT 1 FROM rungate.workspaces w WHERE w.id" EQ "$1",
	1, {INT8OID}, NULL, false
};

static RgPlan actor_known_plan = {
	"SELECT 1 FROM rungate.actors a WHERE a.id" EQ "$1",
	1, {INT8OID}, NULL, false
};

static RgPlan operation_known_plan = {
	"SELECT 1 FROM rungate.operation_types ot WHERE ot.name" EQ "$1",
	1, {TEXTOID}, NULL, false
};

static RgPlan tenant_workspace_plan = {
	"SELECT t.workspace_id FROM rungate.tenants t WHERE t.id" EQ "$1",
	1, {INT8OID}, NULL, false
};

/* RG400 "<name> must not be null" */
void
rg_require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("%s must not be null", name)));
}

bool
rg_workspace_exists(int64 id)
{
	Datum		v = Int64GetDatum(id);

	rg_exec(&workspace_known_plan, &v, NULL, false, 1);
	return SPI_processed == 1;
}

bool
rg_actor_exists(int64 id)
{
	Datum		v = Int64GetDatum(id);

	rg_exec(&actor_known_plan, &v, NULL, false, 1);
	return SPI_processed == 1;
}

bool
rg_operation_exists(const char *name)
{
	Datum		v = CStringGetTextDatum(name);

	rg_exec(&operation_known_plan, &v, NULL, false, 1);
	return SPI_processed == 1;
}

/* The workspace of a tenant; false when there is no such tenant. */
bool
rg_tenant_workspace(int64 tenant_id, int64 *workspace_id)
{
	Datum		v = Int64GetDatum(tenant_id);

	rg_exec(&tenant_workspace_plan, &v, NULL, false, 1);
	if (SPI_processed != 1)
		return false;
	*workspace_id = rg_get_int64(0, 1, NULL);
	return true;
}

