/*
 * decision.c
 *     The legitimacy decision: rungate.decide() and rg_decide_internal(),
 *     which enqueue, claim, heartbeat and recheck share. Facts in (facts.c),
 *     decision out: the nine checks are evaluated here, in the documented
 *     order, on facts read before (docs/guarantees.md#decision,
 *     #claim-reauthorization, #errors).
 *
 * Never reads or writes anything itself: deciding has no side effects.
 */
#include "postgres.h"

#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "rungate.h"
#include "facts.h"

PG_FUNCTION_INFO_V1(rg_decide);

#define RG_NCHECKS 9			/* the decision's checks, in order */

typedef struct CheckList
{
	const char *codes[RG_NCHECKS];
	bool		passed[RG_NCHECKS];
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

/*
 * The checks as jsonb. A backend meets few distinct lists (which checks ran,
 * which passed: an allowed decision's depend only on actor or system and
 * the scope), so the first CHECKS_KEPT are kept, keyed by the codes (string
 * literals, compared as pointers) and results: a claim parses each list
 * once, however many runs it starts or blocks with it.
 */
#define CHECKS_KEPT 64

typedef struct KeptChecks
{
	const char *codes[RG_NCHECKS];
	Datum		value;
	int			n;
	bool		passed[RG_NCHECKS];
} KeptChecks;

static Datum
checks_to_jsonb(const CheckList *cl)
{
	static KeptChecks kept[CHECKS_KEPT];
	static int	nkept = 0;
	StringInfoData json;
	MemoryContext old;
	Datum		value;
	int			i;

	for (i = 0; i < nkept; i++)
		if (kept[i].n == cl->n &&
			memcmp(kept[i].codes, cl->codes, sizeof(char *) * cl->n) == 0 &&
			memcmp(kept[i].passed, cl->passed, sizeof(bool) * cl->n) == 0)
			return kept[i].value;

	initStringInfo(&json);
	appendStringInfoChar(&json, '[');
	for (i = 0; i < cl->n; i++)
		appendStringInfo(&json, "%s{\"code\": \"%s\", \"passed\": %s}",
						 i ? ", " : "", cl->codes[i],
						 cl->passed[i] ? "true" : "false");
	appendStringInfoChar(&json, ']');
	if (nkept == CHECKS_KEPT)
		return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
	old = MemoryContextSwitchTo(TopMemoryContext);
	value = DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
	MemoryContextSwitchTo(old);
	pfree(json.data);
	kept[nkept].n = cl->n;
	memcpy(kept[nkept].codes, cl->codes, sizeof(char *) * cl->n);
	memcpy(kept[nkept].passed, cl->passed, sizeof(bool) * cl->n);
	kept[nkept++].value = value;
	return value;
}

static void decide(const RgFacts *f, const char *operation, int64 workspace_id,
				   bool has_tenant, int64 tenant_id, bool has_actor,
				   int64 actor_id, bool for_run, RgDecision *d);

void
rg_decide_internal(const char *operation, int64 workspace_id,
				   bool has_tenant, int64 tenant_id,
				   bool has_actor, int64 actor_id,
				   bool for_run, RgDecision *d)
{
	RgFacts		f;

	rg_gather_facts(operation, workspace_id, has_tenant, tenant_id,
					has_actor, actor_id, &f);
	decide(&f, operation, workspace_id, has_tenant, tenant_id, has_actor,
		   actor_id, for_run, d);
}

/*
 * The decision on facts f: pure, no reads. Malformed requests raise RG400;
 * the checks run in the documented order (docs/guarantees.md#decision).
 */
static void
decide(const RgFacts *fp, const char *operation, int64 workspace_id,
	   bool has_tenant, int64 tenant_id, bool has_actor, int64 actor_id,
	   bool for_run, RgDecision *d)
{
	RgFacts		f = *fp;
	CheckList	cl;
	RgOpType   *op = &d->op;

	memset(d, 0, sizeof(*d));
	d->allowed = true;
	d->system = !has_actor;

	if (!f.op_exists)
		ereport(ERROR,
				(errcode(ERRCODE_RG_BAD_REQUEST),
				 errmsg("unknown operation \"%s\"", operation),
				 errhint("Operation types are rows of rungate.operation_types.")));

	op->name = pstrdup(operation);
	op->capability = f.capability;
	op->tenant_scope = f.tenant_scope;
	op->requires_operable_tenant = f.requires_operable_tenant;
	op->allow_system = f.allow_system;
	op->writes = f.writes;
	op->item_operation = f.item_operation;
	op->max_attempts = f.max_attempts;
	op->lease = f.lease;
	op->max_running = f.op_max_running;
	op->limit_scope = f.limit_scope;
	op->rate_limit = f.rate_limit;
	op->rate_period = f.rate_period;
	d->ws_max_running = f.ws_max_running;

	d->workspace_exists = f.ws_exists;
	d->actor_exists = f.actor_exists;
	d->tenant_exists = f.tenant_exists;
	d->tenant_in_workspace = f.tenant_exists && f.tenant_ws == workspace_id;

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
		check(&cl, strcmp(f.actor_status, "active") == 0,
			  "actor_disabled", "scope"))
		d->reason_message = psprintf("actor " INT64_FORMAT " is %s", actor_id, f.actor_status);

	/* 3. workspace membership */
	if (has_actor &&
		check(&cl, f.ws_role != NULL,
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
					 tenant_id, f.tenant_ws, workspace_id) :
			psprintf("operation %s is tenant-scoped and the run has no tenant",
					 operation);

	/* 5. tenant membership */
	if (has_actor && op->tenant_scope &&
		check(&cl, f.tenant_role != NULL,
			  "actor_not_in_tenant", "scope"))
		d->reason_message = psprintf("actor " INT64_FORMAT " is not a member of tenant " INT64_FORMAT,
							actor_id, tenant_id);

	/* 6. capability of the membership's role */
	if (has_actor)
	{
		const char *role = op->tenant_scope ? f.tenant_role : f.ws_role;

		if (check(&cl, f.has_cap,
				  "capability_missing", "capability"))
			d->reason_message = role ?
							psprintf("role %s of actor " INT64_FORMAT " does not grant capability %s",
							role, actor_id, op->capability) :
							psprintf("actor " INT64_FORMAT " holds no role granting capability %s",
							actor_id, op->capability);
	}

	/* 7. workspace operability */
	if (check(&cl, strcmp(f.ws_status, "active") == 0,
			  "workspace_not_operable", "operability"))
		d->reason_message = psprintf("workspace " INT64_FORMAT " is %s", workspace_id, f.ws_status);

	/* 8. tenant operability */
	if (op->tenant_scope &&
		check(&cl, !op->requires_operable_tenant ||
				  (f.tenant_status && strcmp(f.tenant_status, "active") == 0),
			  "tenant_not_operable", "operability"))
		d->reason_message = psprintf("tenant " INT64_FORMAT " is %s", tenant_id,
							f.tenant_status ? f.tenant_status : "missing");

	/* 9. prerequisites */
	if (op->tenant_scope &&
		check(&cl, f.unmet == NULL,
			  "prerequisite_unmet", "prerequisite"))
		d->reason_message = psprintf("prerequisite %s is not satisfied for tenant " INT64_FORMAT,
							f.unmet ? f.unmet : "", tenant_id);

	d->checks = checks_to_jsonb(&cl);
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

	rg_require_arg(fcinfo, 0, "operation");
	rg_require_arg(fcinfo, 1, "workspace_id");
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
