/*
 * facts.h
 *     The facts one decision needs, as facts.c gathers them from the
 *     authority tables (or the authority cache) and decision.c judges them.
 */
#ifndef RUNGATE_FACTS_H
#define RUNGATE_FACTS_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* Every fact of one decision (pointers are NULL when absent). */
typedef struct RgFacts
{
	Interval	lease;
	Interval	rate_period;
	int32		ws_max_running;	/* 0: no limit */
	int32		op_max_running;
	int32		rate_limit;
	char		limit_scope;	/* RG_LIMIT_* */
	int64		tenant_ws;
	char	   *capability;
	char	   *item_operation;
	char	   *ws_status;
	char	   *actor_status;
	char	   *ws_role;
	char	   *tenant_status;
	char	   *tenant_role;
	char	   *unmet;			/* first unsatisfied prerequisite, or NULL */
	int32		max_attempts;
	bool		op_exists;
	bool		tenant_scope;
	bool		requires_operable_tenant;
	bool		allow_system;
	bool		writes;
	bool		ws_exists;
	bool		actor_exists;
	bool		tenant_exists;
	bool		has_cap;
} RgFacts;

/*
 * Read every fact of a request on a snapshot taken now, or from the
 * authority cache when no authority change has committed since they were
 * read there (docs/guarantees.md#revocation-seen). SPI connected.
 */
extern void rg_gather_facts(const char *operation, int64 workspace_id,
							bool has_tenant, int64 tenant_id,
							bool has_actor, int64 actor_id, RgFacts *f);

/*
 * The table ("operation_types", "workspaces") that lacks the row a new run
 * names, read as a decision reads facts; NULL when both rows are there.
 */
extern const char *rg_missing_run_reference(const char *operation,
											int64 workspace_id);

/*
 * Lock the tenant's and the actor's rows FOR KEY SHARE, as a foreign key's
 * insert check would: the table ("tenants", "actors") that lacks the row,
 * or NULL when both are there (or not named). Since 1.9 for the tenant and
 * the initiator of every new run.
 */
extern const char *rg_lock_run_references(bool has_tenant, int64 tenant,
										  bool has_actor, int64 actor);

#endif							/* RUNGATE_FACTS_H */
