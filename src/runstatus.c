/*
 * runstatus.c
 *     The tables behind runstatus.h: status and event names, and the legal
 *     status changes. Nothing else.
 */
#include "postgres.h"

#include "runstatus.h"

#define RG_NAME(e, s) s,
const char *const rg_status_names[RG_NSTATUSES] = {RG_STATUS_LIST(RG_NAME)};
const char *const rg_event_names[RG_NEVENTS] = {RG_EVENT_LIST(RG_NAME)};
#undef RG_NAME

#define RG_EDGE(f, t) {RG_##f, RG_##t},
static const struct
{
	RgStatus	from;
	RgStatus	to;
}			transitions[] = {RG_TRANSITION_LIST(RG_EDGE)};
#undef RG_EDGE

static int
parse(const char *const *names, int n, const char *s, size_t len)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
			return i;
	return -1;
}

RgStatus
rg_status_parse(const char *s, size_t len)
{
	return (RgStatus) parse(rg_status_names, RG_NSTATUSES, s, len);
}

RgEvent
rg_event_parse(const char *s, size_t len)
{
	return (RgEvent) parse(rg_event_names, RG_NEVENTS, s, len);
}

bool
rg_transition_legal(RgStatus from, RgStatus to)
{
	size_t		i;

	for (i = 0; i < lengthof(transitions); i++)
		if (transitions[i].from == from && transitions[i].to == to)
			return true;
	return false;
}
