/*
 * runstatus.h
 *     The vocabulary of a run's life: its statuses, the audit events, and
 *     the status changes that are legal. The only place these words are
 *     spelled; the C triggers, the transition module, monitoring and the
 *     metrics all read them from here (docs/reference.md, "Run states").
 *
 * The names are what rungate.runs.status and rungate.audit_log.event hold;
 * the enums index the name tables and are never stored.
 */
#ifndef RUNGATE_RUNSTATUS_H
#define RUNGATE_RUNSTATUS_H

/* status: X(enum suffix, stored name) */
#define RG_STATUS_LIST(X) \
	X(QUEUED, "queued") \
	X(RUNNING, "running") \
	X(SUCCEEDED, "succeeded") \
	X(PARTIALLY_SUCCEEDED, "partially_succeeded") \
	X(FAILED, "failed") \
	X(BLOCKED, "blocked") \
	X(CANCELLED, "cancelled")

/* audit event: X(enum suffix, stored name) */
#define RG_EVENT_LIST(X) \
	X(DISPATCHED, "dispatched") \
	X(DISPATCH_BLOCKED, "dispatch_blocked") \
	X(STARTED, "started") \
	X(EXECUTION_BLOCKED, "execution_blocked") \
	X(RECHECK_BLOCKED, "recheck_blocked") \
	X(SUCCEEDED, "succeeded") \
	X(PARTIALLY_SUCCEEDED, "partially_succeeded") \
	X(FAILED, "failed") \
	X(RETRY_SCHEDULED, "retry_scheduled") \
	X(LEASE_EXPIRED, "lease_expired") \
	X(CANCELLED, "cancelled") \
	X(RELEASED, "released")

/*
 * The legal status changes: X(from, to). Everything else is refused by
 * rungate.guard_runs, whoever writes; blocked, failed, succeeded,
 * partially_succeeded and cancelled are terminal.
 */
#define RG_TRANSITION_LIST(X) \
	X(QUEUED, RUNNING) \
	X(QUEUED, BLOCKED) \
	X(QUEUED, CANCELLED) \
	X(RUNNING, SUCCEEDED) \
	X(RUNNING, FAILED) \
	X(RUNNING, PARTIALLY_SUCCEEDED) \
	X(RUNNING, BLOCKED) \
	X(RUNNING, QUEUED) \
	X(RUNNING, CANCELLED)

#define RG_ENUM_STATUS(e, s) RG_##e,
typedef enum RgStatus
{
	RG_NO_STATUS = -1,			/* a name that is not a status */
	RG_STATUS_LIST(RG_ENUM_STATUS)
	RG_NSTATUSES
} RgStatus;
#undef RG_ENUM_STATUS

#define RG_ENUM_EVENT(e, s) RG_EV_##e,
typedef enum RgEvent
{
	RG_NO_EVENT = -1,
	RG_EVENT_LIST(RG_ENUM_EVENT)
	RG_NEVENTS
} RgEvent;
#undef RG_ENUM_EVENT

extern const char *const rg_status_names[RG_NSTATUSES];
extern const char *const rg_event_names[RG_NEVENTS];

/* The status or event a name spells (len bytes at s), or RG_NO_*. */
extern RgStatus rg_status_parse(const char *s, size_t len);
extern RgEvent rg_event_parse(const char *s, size_t len);

/* May a run go from `from` to `to`? */
extern bool rg_transition_legal(RgStatus from, RgStatus to);

static inline const char *
rg_status_name(RgStatus s)
{
	return rg_status_names[s];
}

static inline RgStatus
rg_status_of(const char *s)
{
	return rg_status_parse(s, strlen(s));
}

static inline RgEvent
rg_event_of(const char *s)
{
	return rg_event_parse(s, strlen(s));
}

/* Queued and running are the live statuses; every other one is terminal. */
static inline bool
rg_status_terminal(RgStatus s)
{
	return s != RG_QUEUED && s != RG_RUNNING;
}

#endif							/* RUNGATE_RUNSTATUS_H */
