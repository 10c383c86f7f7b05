/*
 * wakeup.c
 *     The rungate_queued wake-up: a hint that runs became due, sent at
 *     commit, coalesced per operation when rungate is preloaded and the
 *     scheduler serves this database (docs/reference.md, "Notifications and
 *     channels").
 *
 * Every transaction that issues a NOTIFY takes one cluster-wide lock at its
 * commit, so a NOTIFY per enqueue serializes every committing enqueue. So:
 *
 *   - During a transaction, the operations that got a due queued run are
 *     only noted (once each, however many runs).
 *   - Just before the commit (PRE_COMMIT, which runs before the queue of
 *     notifications is written), an operation whose last wake-up in this
 *     database is older than rungate.wakeup_window is notified now (the
 *     leading hint); the others are deferred.
 *   - After the commit is visible, each deferred operation is marked pending
 *     in shared memory and the database's scheduler worker is woken; when
 *     the window has passed it sends one trailing hint for it.
 *
 * No wake-up is lost: a hint is sent after every commit that made a run due,
 * either by the committer (leading: the notification is delivered after its
 * own commit) or by the scheduler (trailing: marked pending only once the
 * commit is visible, sent after that). Coalescing happens only while a
 * scheduler worker of this database is attached to take the trailing hints;
 * otherwise (not preloaded, the scheduler off or not yet started, the window
 * 0, the slot table full) every committing transaction notifies once per
 * operation, as before.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "lib/stringinfo.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "rungate.h"

#define WAKE_SLOTS		512		/* (database, operation) pairs */
#define WAKE_WORKERS	64		/* databases with a scheduler attached */
#define WAKE_OPLEN		64		/* operation names longer share by prefix */
#define WAKE_LOCAL		16		/* operations noted per transaction */

typedef struct WakeSlot
{
	Oid			dbid;			/* InvalidOid: free */
	bool		pending;		/* a trailing hint is owed */
	TimestampTz last_sent;
	char		operation[WAKE_OPLEN];
} WakeSlot;

typedef struct WakeShared
{
	slock_t		mutex;
	Oid			worker_db[WAKE_WORKERS];
	Latch	   *worker_latch[WAKE_WORKERS];
	WakeSlot	slot[WAKE_SLOTS];
} WakeShared;

static WakeShared *wake = NULL;

/* rungate.wakeup_window, in milliseconds (0: no coalescing) */
static int	wakeup_window = 5;

/* this transaction's operations with due runs */
typedef struct Noted
{
	char		operation[WAKE_OPLEN];
	int64		run_id;			/* the first, for the leading hint's payload */
	bool		deferred;
} Noted;

static Noted noted[WAKE_LOCAL];
static int	nnoted = 0;

Size
rg_wakeup_shmem_size(void)
{
	return MAXALIGN(sizeof(WakeShared));
}

void
rg_wakeup_shmem_init(void)
{
	bool		found;

	wake = ShmemInitStruct("rungate wake-ups", sizeof(WakeShared), &found);
	if (!found)
	{
		memset(wake, 0, sizeof(WakeShared));
		SpinLockInit(&wake->mutex);
	}
}

/* The latch of this database's scheduler worker, or NULL; under the mutex. */
static Latch *
worker_latch(void)
{
	int			i;

	for (i = 0; i < WAKE_WORKERS; i++)
		if (wake->worker_db[i] == MyDatabaseId && wake->worker_latch[i] != NULL)
			return wake->worker_latch[i];
	return NULL;
}

/*
 * The slot of operation in this database, under the mutex; taken if need
 * be (a free one, or one idle for a minute: a dropped database's). NULL
 * when the table is full.
 */
static WakeSlot *
slot_for(const char *operation, TimestampTz now)
{
	WakeSlot   *take = NULL;
	int			i;

	for (i = 0; i < WAKE_SLOTS; i++)
	{
		WakeSlot   *s = &wake->slot[i];

		if (s->dbid == MyDatabaseId && strncmp(s->operation, operation, WAKE_OPLEN) == 0)
			return s;
		if (take == NULL &&
			(s->dbid == InvalidOid ||
			 (!s->pending && TimestampDifferenceExceeds(s->last_sent, now, 60 * 1000))))
			take = s;
	}
	if (take != NULL)
	{
		take->dbid = MyDatabaseId;
		take->pending = false;
		take->last_sent = 0;
		strlcpy(take->operation, operation, WAKE_OPLEN);
	}
	return take;
}

static void
notify_leading(const Noted *n)
{
	char		payload[64];

	snprintf(payload, sizeof(payload), "{\"run_id\": " INT64_FORMAT "}", n->run_id);
	Async_Notify("rungate_queued", payload);
}

/*
 * A due queued run of operation was written in this transaction (enqueue,
 * a retry, a release, an expired lease, a bulk fan-out): its wake-up is
 * sent when the transaction commits.
 */
void
rg_wakeup_queued(const char *operation, int64 run_id)
{
	int			i;

	for (i = 0; i < nnoted; i++)
		if (strncmp(noted[i].operation, operation, WAKE_OPLEN) == 0)
			return;
	if (nnoted == WAKE_LOCAL)
	{
		/* many operations in one transaction: each gets its own hint now */
		char		payload[64];

		snprintf(payload, sizeof(payload), "{\"run_id\": " INT64_FORMAT "}", run_id);
		Async_Notify("rungate_queued", payload);
		return;
	}
	strlcpy(noted[nnoted].operation, operation, WAKE_OPLEN);
	noted[nnoted].run_id = run_id;
	noted[nnoted].deferred = false;
	nnoted++;
}

/* Before the commit: the leading hints now, the others deferred. */
static void
wakeup_pre_commit(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		coalesce = false;
	int			i;

	if (wake != NULL && wakeup_window > 0)
	{
		SpinLockAcquire(&wake->mutex);
		coalesce = worker_latch() != NULL;
		for (i = 0; coalesce && i < nnoted; i++)
		{
			WakeSlot   *s = slot_for(noted[i].operation, now);

			if (s != NULL && !TimestampDifferenceExceeds(s->last_sent, now, wakeup_window))
				noted[i].deferred = true;
			else if (s != NULL)
				s->last_sent = now;
		}
		SpinLockRelease(&wake->mutex);
	}
	for (i = 0; i < nnoted; i++)
		if (!noted[i].deferred)
			notify_leading(&noted[i]);
}

/* After the commit is visible: the deferred ones are owed a trailing hint. */
static void
wakeup_committed(void)
{
	TimestampTz now = GetCurrentTimestamp();
	Latch	   *latch = NULL;
	bool		any = false;
	bool		news = false;
	int			i;

	for (i = 0; i < nnoted; i++)
		any |= noted[i].deferred;
	if (!any || wake == NULL)
		return;
	SpinLockAcquire(&wake->mutex);
	for (i = 0; i < nnoted; i++)
	{
		WakeSlot   *s;

		if (!noted[i].deferred)
			continue;
		s = slot_for(noted[i].operation, now);
		/*
		 * Only a hint newly owed wakes the worker: one already pending is
		 * sent after this commit, since the worker clears it under this
		 * mutex before it notifies. So a window of commits wakes it once.
		 */
		if (s != NULL && !s->pending)
		{
			s->pending = true;
			news = true;
		}
	}
	if (news)
		latch = worker_latch();
	SpinLockRelease(&wake->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

static void
wakeup_xact(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (nnoted > 0)
				wakeup_pre_commit();
			break;
		case XACT_EVENT_COMMIT:
			if (nnoted > 0)
				wakeup_committed();
			nnoted = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* a prepared transaction cannot NOTIFY: its runs are found by polling */
			nnoted = 0;
			break;
		default:
			break;
	}
}

void
rg_wakeup_init(void)
{
	DefineCustomIntVariable("rungate.wakeup_window",
							"Coalesces rungate_queued wake-ups of one operation within this many milliseconds.",
							"The first due run of an operation in a window is notified at its commit; "
							"later ones in the window get one trailing notification from the scheduler "
							"when the window has passed. 0 notifies at every commit.",
							&wakeup_window,
							5, 0, 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	RegisterXactCallback(wakeup_xact, NULL);
}

/* ---- the scheduler's side ---- */

static void
wakeup_detach(int code, Datum arg)
{
	int			i;

	SpinLockAcquire(&wake->mutex);
	for (i = 0; i < WAKE_WORKERS; i++)
		if (wake->worker_db[i] == MyDatabaseId && wake->worker_latch[i] == MyLatch)
		{
			wake->worker_db[i] = InvalidOid;
			wake->worker_latch[i] = NULL;
		}
	SpinLockRelease(&wake->mutex);
}

/*
 * The scheduler worker of this database takes the trailing hints from now
 * on (until it exits). False when there is no room: enqueuers then never
 * defer.
 */
bool
rg_wakeup_attach(void)
{
	int			i;
	bool		done = false;

	if (wake == NULL)
		return false;
	SpinLockAcquire(&wake->mutex);
	for (i = 0; i < WAKE_WORKERS && !done; i++)
		if (wake->worker_db[i] == InvalidOid || wake->worker_db[i] == MyDatabaseId)
		{
			wake->worker_db[i] = MyDatabaseId;
			wake->worker_latch[i] = MyLatch;
			done = true;
		}
	SpinLockRelease(&wake->mutex);
	if (done)
		on_shmem_exit(wakeup_detach, (Datum) 0);
	return done;
}

/*
 * Send the trailing hints of this database that are due (in a transaction
 * of their own). Returns the milliseconds until the next owed one is due,
 * or -1 when none is owed.
 */
long
rg_wakeup_flush(void)
{
	TimestampTz now = GetCurrentTimestamp();
	char		(*send)[WAKE_OPLEN] = NULL;
	int			nsend = 0;
	long		next = -1;
	int			i;

	if (wake == NULL)
		return -1;
	SpinLockAcquire(&wake->mutex);
	for (i = 0; i < WAKE_SLOTS; i++)
	{
		WakeSlot   *s = &wake->slot[i];

		if (s->dbid != MyDatabaseId || !s->pending)
			continue;
		if (TimestampDifferenceExceeds(s->last_sent, now, wakeup_window))
		{
			if (send == NULL)
				send = MemoryContextAlloc(TopMemoryContext, sizeof(*send) * WAKE_SLOTS);
			memcpy(send[nsend++], s->operation, WAKE_OPLEN);
			s->pending = false;
			s->last_sent = now;
		}
		else
		{
			long		left = wakeup_window -
				(long) ((now - s->last_sent) / 1000);

			if (next < 0 || left < next)
				next = Max(left, 1);
		}
	}
	SpinLockRelease(&wake->mutex);

	if (nsend > 0)
	{
		StartTransactionCommand();
		for (i = 0; i < nsend; i++)
		{
			StringInfoData payload;

			initStringInfo(&payload);
			appendStringInfoString(&payload, "{\"operation\": ");
			escape_json(&payload, send[i]);
			appendStringInfoString(&payload, ", \"coalesced\": true}");
			Async_Notify("rungate_queued", payload.data);
		}
		CommitTransactionCommand();
	}
	if (send != NULL)
		pfree(send);
	return next;
}
