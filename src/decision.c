/*
 * decision.c
 *     The legitimacy decision (CONTRACT §2): rungate.decide() and the
 *     rg_decide_internal() that enqueue, claim and recheck share.
 *
 * One kept plan gathers every fact the nine checks need in a single index
 * driven query; the checks themselves are evaluated here, in the contract's
 * order. Never writes anything: deciding has no side effects.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "rungate.h"

PG_FUNCTION_INFO_V1(rg_decide);

/* The facts of one decision, gathered in one query. */
static RgPlan facts_plan = {
	RG_FACTS_SQL("$1", "$2", "$3", "$4"),
	4, {TEXTOID, INT8OID, INT8OID, INT8OID}, NULL
};

/* Columns of RG_FACTS_SQL, 1-based from its first column. */
enum
{
	F_CAPABILITY = 1, F_TENANT_SCOPE, F_REQ_OPERABLE, F_ALLOW_SYSTEM, F_WRITES,
	F_ITEM_OP, F_MAX_ATTEMPTS, F_LEASE,
	F_WS_EXISTS, F_WS_STATUS,
	F_ACTOR_EXISTS, F_ACTOR_STATUS,
	F_WS_ROLE,
	F_TENANT_EXISTS, F_TENANT_WS, F_TENANT_STATUS,
	F_TENANT_ROLE,
	F_HAS_CAP,
	F_UNMET
};

typedef struct CheckList
{
	const char *codes[9];
	bool		passed[9];
	int			n;
	RgDecision *d;
} CheckList;

/*
 * Record one evaluated check. Returns true when it is the first failure:
 * the caller then words the reason (messages are built only for that one).
 */
static bool
check(CheckList *cl, bool passed, const char *code, const char *category)
{
	cl->codes[cl->n] = code;
	cl->passed[cl->n] = passed;
	cl->n++;
	if (!passed && cl->d->allowed)
	{
		cl->d->allowed = false;
		cl->d->reason_code = code;
		cl->d->reason_category = category;
		return true;
	}
	return false;
}

static Datum
checks_to_jsonb(CheckList *cl)
{
	StringInfoData json;
	int			i;

	initStringInfo(&json);
	appendStringInfoChar(&json, '[');
	for (i = 0; i < cl->n; i++)
		appendStringInfo(&json, "%s{\"code\": \"%s\", \"passed\": %s}",
						 i ? ", " : "", cl->codes[i],
						 cl->passed[i] ? "true" : "false");
	appendStringInfoChar(&json, ']');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
}

/*
 * The checks of an allowed decision depend only on which checks were
 * evaluated (actor or system, tenant or workspace scope): build each of the
 * four once per backend instead of once per claim.
 */
static Datum
allowed_checks(CheckList *cl, bool has_actor, bool tenant_scope)
{
	static Datum cache[2][2];
	Datum	   *slot = &cache[has_actor ? 1 : 0][tenant_scope ? 1 : 0];

	if (*slot == (Datum) 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		*slot = checks_to_jsonb(cl);
		MemoryContextSwitchTo(old);
	}
	return *slot;
}

void
rg_decide_internal(const char *operation, int64 workspace_id,
				   bool has_tenant, int64 tenant_id,
				   bool has_actor, int64 actor_id,
				   bool for_run, RgDecision *d)
{
	Datum		args[4];
	char		nulls[4] = {' ', ' ', has_tenant ? ' ' : 'n', has_actor ? ' ' : 'n'};

	args[0] = CStringGetTextDatum(operation);
	args[1] = Int64GetDatum(workspace_id);
	args[2] = Int64GetDatum(tenant_id);
	args[3] = Int64GetDatum(actor_id);
	rg_exec(&facts_plan, args, nulls, false, 1);
	rg_decide_from_facts(SPI_processed == 0 ? -1 : 0, 1, operation,
						 workspace_id, has_tenant, tenant_id,
						 has_actor, actor_id, for_run, d);
}

/* Column c of RG_FACTS_SQL in the current SPI result. */
#define FACT(c) (first + (c) - 1)

void
rg_decide_from_facts(int row, int first, const char *operation,
					 int64 workspace_id, bool has_tenant, int64 tenant_id,
					 bool has_actor, int64 actor_id, bool for_run,
					 RgDecision *d)
{
	bool		isnull;
	CheckList	cl;
	char	   *ws_status,
			   *actor_status,
			   *ws_role,
			   *tenant_status,
			   *tenant_role,
			   *unmet;
	int64		tenant_ws;
	bool		has_cap;
	RgOpType   *op = &d->op;

	memset(d, 0, sizeof(*d));
	d->allowed = true;
	d->system = !has_actor;

	if (row < 0 || (rg_get_datum(row, FACT(F_CAPABILITY), &isnull), isnull))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("unknown operation \"%s\"", operation),
				 errhint("Operation types are rows of rungate.operation_types.")));

	op->name = pstrdup(operation);
	op->capability = rg_get_text(row, FACT(F_CAPABILITY));
	op->tenant_scope = rg_get_bool(row, FACT(F_TENANT_SCOPE), NULL);
	op->requires_operable_tenant = rg_get_bool(row, FACT(F_REQ_OPERABLE), NULL);
	op->allow_system = rg_get_bool(row, FACT(F_ALLOW_SYSTEM), NULL);
	op->writes = rg_get_bool(row, FACT(F_WRITES), NULL);
	op->item_operation = rg_get_text(row, FACT(F_ITEM_OP));
	op->max_attempts = rg_get_int32(row, FACT(F_MAX_ATTEMPTS), NULL);
	op->lease = *DatumGetIntervalP(rg_get_datum(row, FACT(F_LEASE), &isnull));

	d->workspace_exists = rg_get_bool(row, FACT(F_WS_EXISTS), NULL);
	ws_status = rg_get_text(row, FACT(F_WS_STATUS));
	d->actor_exists = rg_get_bool(row, FACT(F_ACTOR_EXISTS), NULL);
	actor_status = rg_get_text(row, FACT(F_ACTOR_STATUS));
	ws_role = rg_get_text(row, FACT(F_WS_ROLE));
	d->tenant_exists = rg_get_bool(row, FACT(F_TENANT_EXISTS), NULL);
	tenant_ws = rg_get_int64(row, FACT(F_TENANT_WS), NULL);
	tenant_status = rg_get_text(row, FACT(F_TENANT_STATUS));
	tenant_role = rg_get_text(row, FACT(F_TENANT_ROLE));
	has_cap = rg_get_bool(row, FACT(F_HAS_CAP), NULL);
	unmet = rg_get_text(row, FACT(F_UNMET));
	d->tenant_in_workspace = d->tenant_exists && tenant_ws == workspace_id;

	/* Malformed requests are errors, not denials. */
	if (!d->workspace_exists)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("unknown workspace " INT64_FORMAT, workspace_id)));
	if (has_actor && !d->actor_exists)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("unknown actor " INT64_FORMAT, actor_id)));
	/*
	 * A request whose tenant does not fit the type's scope is malformed. A
	 * run already recorded (for_run) may meet a type whose scope changed
	 * since dispatch, despite the definition trigger, in a race: it is
	 * decided, never an error that would stop every later claim. Without a
	 * tenant it fails check 4; a tenant it no longer needs is ignored.
	 */
	if (op->tenant_scope && !has_tenant && !for_run)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation \"%s\" is tenant-scoped and needs a tenant",
						operation)));
	if (!op->tenant_scope && has_tenant)
	{
		if (!for_run)
			ereport(ERROR,
					(errcode(ERRCODE_RG_BAD_REQUEST),
					 errmsg("operation \"%s\" is workspace-scoped and takes no tenant",
							operation)));
		has_tenant = false;
	}
	if (has_tenant && !d->tenant_exists)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("unknown tenant " INT64_FORMAT, tenant_id)));

	cl.n = 0;
	cl.d = d;

	/* 1. system authority */
	if (check(&cl, has_actor || op->allow_system,
			  "system_authority_not_allowed", "scope"))
		d->reason_message = psprintf("operation %s needs an initiating actor; system authority is not allowed",
							operation);

	/* 2. actor status */
	if (has_actor &&
		check(&cl, strcmp(actor_status, "active") == 0,
			  "actor_disabled", "scope"))
		d->reason_message = psprintf("actor " INT64_FORMAT " is %s", actor_id, actor_status);

	/* 3. workspace membership */
	if (has_actor &&
		check(&cl, ws_role != NULL,
			  "actor_not_in_workspace", "scope"))
		d->reason_message = psprintf("actor " INT64_FORMAT " is not a member of workspace " INT64_FORMAT,
							actor_id, workspace_id);

	/* 4. the tenant still belongs to the run's workspace */
	if (op->tenant_scope &&
		check(&cl, d->tenant_in_workspace,
			  "tenant_not_in_workspace", "scope"))
		d->reason_message = has_tenant ?
			psprintf("tenant " INT64_FORMAT " belongs to workspace " INT64_FORMAT
					 ", not workspace " INT64_FORMAT,
					 tenant_id, tenant_ws, workspace_id) :
			psprintf("operation %s is tenant-scoped and the run has no tenant",
					 operation);

	/* 5. tenant membership */
	if (has_actor && op->tenant_scope &&
		check(&cl, tenant_role != NULL,
			  "actor_not_in_tenant", "scope"))
		d->reason_message = psprintf("actor " INT64_FORMAT " is not a member of tenant " INT64_FORMAT,
							actor_id, tenant_id);

	/* 6. capability of the membership's role */
	if (has_actor)
	{
		const char *role = op->tenant_scope ? tenant_role : ws_role;

		if (check(&cl, has_cap,
				  "capability_missing", "capability"))
			d->reason_message = role ?
							psprintf("role %s of actor " INT64_FORMAT " does not grant capability %s",
							role, actor_id, op->capability) :
							psprintf("actor " INT64_FORMAT " holds no role granting capability %s",
							actor_id, op->capability);
	}

	/* 7. workspace operability */
	if (check(&cl, strcmp(ws_status, "active") == 0,
			  "workspace_not_operable", "operability"))
		d->reason_message = psprintf("workspace " INT64_FORMAT " is %s", workspace_id, ws_status);

	/* 8. tenant operability */
	if (op->tenant_scope &&
		check(&cl, !op->requires_operable_tenant ||
				  (tenant_status && strcmp(tenant_status, "active") == 0),
			  "tenant_not_operable", "operability"))
		d->reason_message = psprintf("tenant " INT64_FORMAT " is %s", tenant_id,
							tenant_status ? tenant_status : "missing");

	/* 9. prerequisites */
	if (op->tenant_scope &&
		check(&cl, unmet == NULL,
			  "prerequisite_unmet", "prerequisite"))
		d->reason_message = psprintf("prerequisite %s is not satisfied for tenant " INT64_FORMAT,
							unmet ? unmet : "", tenant_id);

	d->checks = d->allowed ?
		allowed_checks(&cl, has_actor, op->tenant_scope) : checks_to_jsonb(&cl);
}

/*
 * The decision as a rungate.decision tuple built in the current memory
 * context (the caller switches out of SPI's first); tupdesc must be blessed.
 */
Datum
rg_decision_to_datum(RgDecision *d, TupleDesc tupdesc)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	values[0] = BoolGetDatum(d->allowed);
	values[1] = CStringGetTextDatum(d->system ? "system" : "actor");
	if (d->allowed)
		nulls[2] = nulls[3] = nulls[4] = true;
	else
	{
		values[2] = CStringGetTextDatum(d->reason_code);
		values[3] = CStringGetTextDatum(d->reason_category);
		values[4] = CStringGetTextDatum(d->reason_message);
	}
	values[5] = PointerGetDatum(PG_DETOAST_DATUM_COPY(d->checks));
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * rungate.decide(operation, workspace_id, tenant_id, actor_id)
 */
Datum
rg_decide(PG_FUNCTION_ARGS)
{
	RgDecision	d;
	Datum		result;
	TupleDesc	tupdesc;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	char	   *operation;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("operation must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("workspace_id must not be null")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "rungate.decide must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);

	operation = text_to_cstring(PG_GETARG_TEXT_PP(0));

	SPI_connect();
	rg_decide_internal(operation, PG_GETARG_INT64(1),
					   !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2),
					   !PG_ARGISNULL(3), PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3),
					   false, &d);
	/* SPI's memory is gone at SPI_finish: build the result in ours. */
	spi = MemoryContextSwitchTo(caller);
	result = rg_decision_to_datum(&d, tupdesc);
	MemoryContextSwitchTo(spi);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
