/*
 * scheduler.c
 *     The scheduler's background workers, when rungate is in
 *     shared_preload_libraries (README "Scheduler"): a launcher that finds
 *     the databases where rungate is installed, and one worker per such
 *     database that, every rungate.scheduler_naptime, reaps expired leases,
 *     enqueues due schedules, sends the wake-ups of runs that became due,
 *     and purges what rungate.retention no longer keeps.
 *
 * The launcher (a static worker, restarted by the postmaster) connects to no
 * database: it reads pg_database, a shared catalog, every naptime, and
 * starts a dynamic worker for each database it has not ruled out. A worker
 * that finds no rungate in its database says so and exits; the launcher
 * tries that database again when a backend reports that it created the
 * extension there (a commit hook, below), and otherwise only every
 * ABSENT_RECHECK. A database is served by one worker at a time: workers
 * register in shared memory by database and a second one exits at once.
 *
 * A worker's pass is a few short transactions, each calling rungate's SQL
 * functions as any caller would: reap_expired(), the wake-ups
 * (scheduler_wakeups(), the one place the per-pass NOTIFYs come from),
 * run_schedules(), purge_batch() per batch. An error aborts that transaction only; it
 * is logged at LOG and the next pass waits longer (doubling, up to a
 * minute). It locks nothing a claim waits on beyond one of those
 * transactions (reap and purge skip what others hold; claims never lock
 * schedules).
 *
 * Must never: keep a database from being dropped, renamed or copied (the
 * worker leaves when one of those waits for it), serve a database that
 * subscribes to rungate.runs (a logical replica: its publisher's scheduler
 * does the work), or run on a server where rungate was not preloaded.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "portability/instr_time.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "rungate.h"

/* the bgworker entry points (looked up by name by the postmaster) */
PGDLLEXPORT void rg_scheduler_launcher_main(Datum arg);
PGDLLEXPORT void rg_scheduler_worker_main(Datum arg);

/* ---- settings ---- */
static bool scheduler_enabled = true;
static int	scheduler_naptime = 1000;	/* ms */
static int	retention = 0;		/* s; 0: off */

/* a database without rungate is looked at again this often (ms) */
#define ABSENT_RECHECK		INT64CONST(600000)
/* the longest wait after failures (ms) */
#define MAX_BACKOFF			INT64CONST(60000)
/* how often a waiting worker checks whether its database is wanted (ms) */
#define DB_CHECK_INTERVAL	250
/* retention: runs per purge_batch call, and calls per pass */
#define PURGE_BATCH_RUNS	1000
#define PURGE_BATCHES		20
/* the wake-ups of a worker's first pass look this far back (ms) */
#define FIRST_WINDOW		INT64CONST(60000)
/* how long a worker's statements wait for a lock */
#define WORKER_LOCK_TIMEOUT "5s"
/* rungate.created requests kept until the launcher reads them */
#define MAX_REQUESTS		32

/* ------------------------------------------------------------------------
 * Shared state
 * ------------------------------------------------------------------------ */

/* One per running (or just exited) worker. */
typedef struct SchedSlot
{
	Oid			dboid;			/* InvalidOid: free */
	pid_t		pid;			/* 0: the worker has exited, verdict below */
	bool		absent;			/* it found no rungate there */
	bool		served;			/* it completed a pass */
	bool		stopped;		/* it left on purpose (setting off, database wanted) */
} SchedSlot;

typedef struct SchedShared
{
	slock_t		mutex;
	pid_t		launcher_pid;	/* 0: no launcher */
	Latch	   *launcher_latch;
	int			nrequests;		/* databases where rungate was created */
	bool		overflow;		/* more than MAX_REQUESTS: look everywhere */
	Oid			requests[MAX_REQUESTS];
	pg_atomic_uint64 schedule_writes;	/* commits that wrote rungate.schedules */
	int			nslots;
	SchedSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} SchedShared;

static SchedShared *shared = NULL;

static int
sched_nslots(void)
{
	return max_worker_processes + 1;
}

Size
rg_scheduler_shmem_size(void)
{
	return add_size(offsetof(SchedShared, slots),
					mul_size(sizeof(SchedSlot), sched_nslots()));
}

void
rg_scheduler_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("rungate scheduler", rg_scheduler_shmem_size(), &found);
	if (!found)
	{
		memset(shared, 0, rg_scheduler_shmem_size());
		SpinLockInit(&shared->mutex);
		pg_atomic_init_u64(&shared->schedule_writes, 0);
		shared->nslots = sched_nslots();
	}
}

/* ------------------------------------------------------------------------
 * CREATE EXTENSION rungate, seen by any backend: tell the launcher at commit
 * ------------------------------------------------------------------------ */

static object_access_hook_type prev_object_access_hook = NULL;
static bool extension_created = false;	/* some extension, this transaction */
static bool tell_launcher = false;		/* rungate is there: at commit */
static bool wrote_schedules = false;	/* this transaction: count it at commit */

/*
 * A schedule was inserted or updated (rungate.validate_schedule): once the
 * commit is visible, the workers' next pass runs the schedules even within
 * the minute of their last run (worker_pass).
 */
void
rg_scheduler_note_schedule_write(void)
{
	wrote_schedules = true;
}

static void
sched_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access == OAT_POST_CREATE && classId == ExtensionRelationId)
		extension_created = true;
}

static void
sched_request(Oid dboid)
{
	Latch	   *latch = NULL;
	int			i;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	if (shared->launcher_pid != 0)
	{
		for (i = 0; i < shared->nrequests; i++)
			if (shared->requests[i] == dboid)
				break;
		if (i == shared->nrequests)
		{
			if (shared->nrequests < MAX_REQUESTS)
				shared->requests[shared->nrequests++] = dboid;
			else
				shared->overflow = true;
		}
		latch = shared->launcher_latch;
	}
	SpinLockRelease(&shared->mutex);
	if (latch)
		SetLatch(latch);
}

static void
sched_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/* a CREATE EXTENSION (rungate, or one that needs it) commits */
			if (extension_created && OidIsValid(get_extension_oid("rungate", true)))
				tell_launcher = true;
			extension_created = false;
			break;
		case XACT_EVENT_COMMIT:
			if (tell_launcher)
				sched_request(MyDatabaseId);
			/* after the commit is visible: a pass that reads the count sees it */
			if (wrote_schedules && shared != NULL)
				pg_atomic_fetch_add_u64(&shared->schedule_writes, 1);
			tell_launcher = false;
			wrote_schedules = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			extension_created = false;
			tell_launcher = false;
			wrote_schedules = false;
			break;
		default:
			break;
	}
}

/* ------------------------------------------------------------------------
 * Settings and registration (_PG_init)
 * ------------------------------------------------------------------------ */

void
rg_scheduler_init(void)
{
	BackgroundWorker w;

	DefineCustomBoolVariable("rungate.scheduler",
							 "Runs rungate's scheduler in every database where rungate is installed.",
							 "Needs rungate in shared_preload_libraries. Off: no pass runs; the "
							 "application calls reap_expired, run_schedules and purge itself.",
							 &scheduler_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("rungate.scheduler_naptime",
							"Time between two passes of rungate's scheduler in a database.",
							"Also how soon a database where rungate was installed is served.",
							&scheduler_naptime,
							1000, 100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("rungate.retention",
							"How long rungate's scheduler keeps terminal runs (0: for ever).",
							"Terminal runs that finished longer ago than this are purged, with "
							"their audit rows and notifications, in batches.",
							&retention,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	/* preloaded only; never while pg_upgrade restores a cluster */
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;

	prev_object_access_hook = object_access_hook;
	object_access_hook = sched_object_access;
	RegisterXactCallback(sched_xact_callback, NULL);

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 5;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "rungate");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "rg_scheduler_launcher_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "rungate launcher");
	snprintf(w.bgw_type, BGW_MAXLEN, "rungate launcher");
	RegisterBackgroundWorker(&w);
}

/* ------------------------------------------------------------------------
 * The launcher
 * ------------------------------------------------------------------------ */

typedef enum
{
	DB_WAITING,					/* start a worker at next_start */
	DB_RUNNING,					/* a worker serves it (or is starting) */
	DB_ABSENT					/* no rungate there: next_start is a recheck */
} DbState;

typedef struct LauncherDb
{
	Oid			dboid;			/* hash key */
	DbState		state;
	bool		listed;			/* in the last read of pg_database */
	BackgroundWorkerHandle *handle; /* NULL: started by an earlier launcher */
	TimestampTz next_start;
	int			failures;		/* workers in a row that ended before a pass */
	bool		requested;		/* rungate was created there while a worker ran */
	char		name[NAMEDATALEN];
} LauncherDb;

static HTAB *launcher_dbs = NULL;
static MemoryContext launcher_cxt = NULL;
static TimestampTz last_no_slot_log = 0;

static TimestampTz
after_ms(TimestampTz t, int64 ms)
{
	return t + ms * 1000;
}

static int
backoff_ms(int failures)
{
	int64		ms = Max(scheduler_naptime, 1000);
	int			i;

	for (i = 0; i < failures && ms < MAX_BACKOFF; i++)
		ms *= 2;
	return (int) Min(ms, MAX_BACKOFF);
}

static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&shared->mutex);
	if (shared->launcher_pid == MyProcPid)
	{
		shared->launcher_pid = 0;
		shared->launcher_latch = NULL;
	}
	SpinLockRelease(&shared->mutex);
}

static LauncherDb *
launcher_db(Oid dboid, TimestampTz now)
{
	bool		found;
	LauncherDb *db = hash_search(launcher_dbs, &dboid, HASH_ENTER, &found);

	if (!found)
	{
		db->state = DB_WAITING;
		db->listed = false;
		db->handle = NULL;
		db->next_start = now;
		db->failures = 0;
		db->requested = false;
		snprintf(db->name, NAMEDATALEN, "%u", dboid);
	}
	return db;
}

/* Databases where rungate was just created: serve them now. */
static void
launcher_take_requests(TimestampTz now)
{
	Oid			req[MAX_REQUESTS];
	int			n,
				i;
	bool		overflow;

	SpinLockAcquire(&shared->mutex);
	n = shared->nrequests;
	memcpy(req, shared->requests, sizeof(Oid) * n);
	overflow = shared->overflow;
	shared->nrequests = 0;
	shared->overflow = false;
	SpinLockRelease(&shared->mutex);

	for (i = 0; i < n; i++)
	{
		LauncherDb *db = launcher_db(req[i], now);

		if (db->state != DB_RUNNING)
		{
			db->state = DB_WAITING;
			db->next_start = now;
			db->failures = 0;
		}
		else
		{
			/*
			 * A worker runs there, or has just ended: it may have looked
			 * before the CREATE EXTENSION committed. If it says "absent",
			 * start another at once instead of in ten minutes.
			 */
			db->requested = true;
		}
	}
	if (overflow)
	{
		HASH_SEQ_STATUS seq;
		LauncherDb *db;

		hash_seq_init(&seq, launcher_dbs);
		while ((db = hash_seq_search(&seq)) != NULL)
			if (db->state == DB_ABSENT)
			{
				db->state = DB_WAITING;
				db->next_start = now;
			}
	}
}

/* Free the slots of ended workers whose database the launcher forgot. */
static void
launcher_free_orphan_slots(void)
{
	int			i;

	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < shared->nslots; i++)
	{
		SchedSlot  *s = &shared->slots[i];

		if (s->dboid != InvalidOid && s->pid == 0 &&
			hash_search(launcher_dbs, &s->dboid, HASH_FIND, NULL) == NULL)
			s->dboid = InvalidOid;
	}
	SpinLockRelease(&shared->mutex);
}

/* Read pg_database: every database that accepts connections is a candidate. */
static void
launcher_read_databases(TimestampTz now)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	HASH_SEQ_STATUS seq;
	LauncherDb *db;

	hash_seq_init(&seq, launcher_dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
		db->listed = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database d = (Form_pg_database) GETSTRUCT(tup);

		if (!d->datallowconn || d->datistemplate)
			continue;
#ifdef DATCONNLIMIT_INVALID_DB
		if (d->datconnlimit == DATCONNLIMIT_INVALID_DB)
			continue;			/* a DROP DATABASE that did not finish */
#endif
		db = launcher_db(d->oid, now);
		db->listed = true;
		strlcpy(db->name, NameStr(d->datname), NAMEDATALEN);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	/* forget dropped databases (their worker, if any, is on its way out) */
	hash_seq_init(&seq, launcher_dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
		if (!db->listed && db->state != DB_RUNNING)
			(void) hash_search(launcher_dbs, &db->dboid, HASH_REMOVE, NULL);
	launcher_free_orphan_slots();
}

/*
 * Whether a worker serves db (one we started, or one an earlier launcher
 * did), and if one has ended, what it said; its slot is freed.
 */
static void
launcher_check_worker(LauncherDb *db, TimestampTz now)
{
	bool		alive = false;
	bool		ended = false;
	SchedSlot	verdict;
	int			i;

	memset(&verdict, 0, sizeof(verdict));
	if (db->handle)
	{
		pid_t		pid;

		alive = GetBackgroundWorkerPid(db->handle, &pid) != BGWH_STOPPED;
	}
	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < shared->nslots && !alive; i++)
		if (shared->slots[i].dboid == db->dboid && shared->slots[i].pid != 0)
			alive = true;

	/*
	 * A verdict is taken only once its worker is gone: a worker leaves its
	 * slot before the postmaster has reaped it, and a verdict read (and its
	 * slot freed) while the handle still said running would be lost, its
	 * end then counted as a failure.
	 */
	for (i = 0; i < shared->nslots && !alive && !ended; i++)
	{
		SchedSlot  *s = &shared->slots[i];

		if (s->dboid == db->dboid)
		{
			verdict = *s;
			ended = true;
			s->dboid = InvalidOid;
		}
	}
	SpinLockRelease(&shared->mutex);

	if (alive)
	{
		db->state = DB_RUNNING;
		return;
	}
	if (db->handle)
	{
		pfree(db->handle);
		db->handle = NULL;
	}
	if (ended && verdict.absent && db->requested)
	{
		/* it looked before rungate was created there: look again now */
		db->state = DB_WAITING;
		db->next_start = now;
		db->failures = 0;
	}
	else if (ended && verdict.absent)
	{
		elog(DEBUG1, "rungate launcher: no rungate in database \"%s\"", db->name);
		db->state = DB_ABSENT;
		db->next_start = after_ms(now, ABSENT_RECHECK);
		db->failures = 0;
	}
	else if (ended && (verdict.served || verdict.stopped))
	{
		db->state = DB_WAITING;
		db->next_start = after_ms(now, scheduler_naptime);
		db->failures = 0;
	}
	else if (ended || db->state == DB_RUNNING)
	{
		/* ended before a pass: the database went away, or an error */
		db->failures++;
		db->state = DB_WAITING;
		db->next_start = after_ms(now, backoff_ms(db->failures));
	}
}

static void
launcher_start_worker(LauncherDb *db, TimestampTz now)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	bool		ok;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(w.bgw_library_name, BGW_MAXLEN, "rungate");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "rg_scheduler_worker_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "rungate scheduler for database %s", db->name);
	snprintf(w.bgw_type, BGW_MAXLEN, "rungate scheduler");
	w.bgw_main_arg = ObjectIdGetDatum(db->dboid);
	w.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(launcher_cxt);
	ok = RegisterDynamicBackgroundWorker(&w, &handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		if (now - last_no_slot_log >= 60 * USECS_PER_SEC)
		{
			ereport(LOG,
					(errmsg("rungate launcher: no background worker slot for the scheduler of database \"%s\"",
							db->name),
					 errhint("Raise max_worker_processes: rungate needs one for its launcher and one per database where it is installed.")));
			last_no_slot_log = now;
		}
		db->state = DB_WAITING;
		db->next_start = after_ms(now, backoff_ms(1));
		return;
	}
	elog(DEBUG1, "rungate launcher: starting the scheduler of database \"%s\"", db->name);
	db->handle = handle;
	db->state = DB_RUNNING;
	db->requested = false;		/* this one starts after the request's commit */
}

void
rg_scheduler_launcher_main(Datum arg)
{
	TimestampTz next_read = 0;
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	SetConfigOption("application_name", "rungate launcher", PGC_USERSET, PGC_S_SESSION);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (shared == NULL)
		elog(ERROR, "rungate launcher: shared memory is not set up");
	SpinLockAcquire(&shared->mutex);
	shared->launcher_pid = MyProcPid;
	shared->launcher_latch = MyLatch;
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(launcher_detach, (Datum) 0);

	launcher_cxt = AllocSetContextCreate(TopMemoryContext, "rungate launcher",
										 (Size) 0, (Size) 8192, (Size) 65536);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "rungate launcher loop",
									 (Size) 0, (Size) 8192, (Size) 65536);
	launcher_dbs = rg_blob_hash("rungate launcher databases", 64, sizeof(Oid),
								sizeof(LauncherDb), launcher_cxt);
	elog(DEBUG1, "rungate launcher: started");

	for (;;)
	{
		TimestampTz now;
		TimestampTz wake;
		HASH_SEQ_STATUS seq;
		LauncherDb *db;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		now = GetCurrentTimestamp();
		launcher_take_requests(now);
		if (now >= next_read)
		{
			launcher_read_databases(now);
			next_read = after_ms(now, scheduler_naptime);
			MemoryContextSwitchTo(loop_cxt);
		}

		wake = next_read;
		hash_seq_init(&seq, launcher_dbs);
		while ((db = hash_seq_search(&seq)) != NULL)
		{
			launcher_check_worker(db, now);
			if (db->state != DB_RUNNING && !db->listed)
				continue;		/* dropped: forgotten at the next read */
			if (db->state != DB_RUNNING && scheduler_enabled)
			{
				if (db->next_start <= now)
					launcher_start_worker(db, now);
				if (db->state != DB_RUNNING && db->next_start < wake)
					wake = db->next_start;
			}
		}

		timeout = (long) ((wake - GetCurrentTimestamp()) / 1000);
		timeout = Max(timeout, 10);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ------------------------------------------------------------------------
 * A database's worker
 * ------------------------------------------------------------------------ */

static int	my_slot = -1;
static char *my_dbname = NULL;
static Oid	my_extension = InvalidOid;
static MemoryContext pass_cxt = NULL;

static void
worker_release_slot(int code, Datum arg)
{
	if (my_slot < 0)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->slots[my_slot].pid = 0;
	SpinLockRelease(&shared->mutex);
	my_slot = -1;
}

/* Register as the worker of dboid; false when another one serves it. */
static bool
worker_claim_slot(Oid dboid)
{
	int			i,
				free_slot = -1,
				ended_slot = -1;
	bool		taken = false;

	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < shared->nslots; i++)
	{
		SchedSlot  *s = &shared->slots[i];

		if (s->dboid == dboid && s->pid != 0)
			taken = true;
		else if (s->dboid == InvalidOid && free_slot < 0)
			free_slot = i;
		else if (s->pid == 0 && (ended_slot < 0 || s->dboid == dboid))
			ended_slot = i;		/* an unread verdict: ours first */
	}
	if (!taken)
	{
		my_slot = free_slot >= 0 ? free_slot : ended_slot;
		if (my_slot >= 0)
		{
			SchedSlot  *s = &shared->slots[my_slot];

			memset(s, 0, sizeof(*s));
			s->dboid = dboid;
			s->pid = MyProcPid;
		}
	}
	SpinLockRelease(&shared->mutex);
	if (taken || my_slot < 0)
		return false;
	before_shmem_exit(worker_release_slot, (Datum) 0);
	return true;
}

static void
worker_verdict(bool absent, bool served, bool stopped)
{
	SpinLockAcquire(&shared->mutex);
	if (absent)
		shared->slots[my_slot].absent = true;
	if (served)
		shared->slots[my_slot].served = true;
	if (stopped)
		shared->slots[my_slot].stopped = true;
	SpinLockRelease(&shared->mutex);
}

/*
 * Whether a DROP DATABASE, ALTER DATABASE RENAME or SET TABLESPACE, or a
 * CREATE DATABASE copying this one, waits for this database: they hold a
 * lock on the database that conflicts with a connecting backend's, then
 * wait a few seconds for every other session to leave.
 */
static bool
worker_database_wanted(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, RowExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, RowExclusiveLock, true);
	return false;
}

/* ---- one pass ---- */

typedef struct PassState
{
	bool		absent;			/* no rungate here */
	bool		replaced;		/* rungate was dropped and created again */
	bool		replica;		/* this database subscribes to rungate.runs */
	bool		has_reap;
	bool		has_schedules;
	bool		has_purge;
	TimestampTz since;			/* the wake-ups' window: (since, until] */
	TimestampTz until;
	int64		count;			/* what the last step did */
	double		step_ms;		/* how long the last step took */
} PassState;

typedef void (*PassStep) (PassState *ps);

/* the last run of the schedules that succeeded: its minute, the writes before it */
static bool sched_ran = false;
static uint64 sched_ran_writes = 0;
static int64 sched_ran_minute = 0;

/*
 * Run one step in a transaction of its own. An error aborts it, is logged,
 * and returns false.
 */
static bool
worker_step(const char *what, PassStep step, PassState *ps)
{
	volatile bool ok = true;
	instr_time	start,
				took;

	INSTR_TIME_SET_CURRENT(start);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, what);
		step(ps);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(pass_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("rungate scheduler: %s failed in database \"%s\": %s",
						what, my_dbname, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 errhint("The next pass comes later than rungate.scheduler_naptime, the longer the more passes fail.")));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(pass_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	INSTR_TIME_SET_CURRENT(took);
	INSTR_TIME_SUBTRACT(took, start);
	ps->step_ms = INSTR_TIME_GET_MILLISEC(took);
	return ok;
}

static RgPlan inventory_plan = {
	"SELECT pg_catalog.to_regprocedure('rungate.reap_expired()') IS NOT NULL,"
	"       pg_catalog.to_regprocedure('rungate.run_schedules(timestamp with time zone)') IS NOT NULL,"
	"       pg_catalog.to_regprocedure('rungate.purge_batch(timestamp with time zone, integer)') IS NOT NULL,"
	"       EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel sr"
	"                WHERE sr.srrelid" EQ "pg_catalog.to_regclass('rungate.runs')),"
	"       pg_catalog.to_regclass('rungate.flow_starts') IS NOT NULL",
	0, {InvalidOid}, NULL, false
};

/* rungate.flow_starts exists (1.6): rate windows can free places */
static bool has_rate_windows = false;

/* Is rungate here, the same one as before, and what does it have? */
static void
step_inventory(PassState *ps)
{
	Oid			ext = get_extension_oid("rungate", true);

	if (!OidIsValid(ext))
	{
		ps->absent = true;
		return;
	}
	if (OidIsValid(my_extension) && ext != my_extension)
	{
		ps->replaced = true;
		return;
	}
	my_extension = ext;
	rg_exec(&inventory_plan, NULL, NULL, false, 1);
	ps->has_reap = rg_get_bool(0, 1, NULL);
	ps->has_schedules = rg_get_bool(0, 2, NULL);
	ps->has_purge = rg_get_bool(0, 3, NULL);
	ps->replica = rg_get_bool(0, 4, NULL);
	has_rate_windows = rg_get_bool(0, 5, NULL);
}

static RgPlan reap_plan = {
	"SELECT rungate.reap_expired()",
	0, {InvalidOid}, NULL, false
};

static void
step_reap(PassState *ps)
{
	rg_exec(&reap_plan, NULL, NULL, false, 1);
	ps->count = rg_get_int32(0, 1, NULL);
}

static RgPlan schedules_plan = {
	"SELECT pg_catalog.count(*) FROM rungate.run_schedules()",
	0, {InvalidOid}, NULL, false
};

static void
step_schedules(PassState *ps)
{
	rg_exec(&schedules_plan, NULL, NULL, false, 1);
	ps->count = rg_get_int64(0, 1, NULL);
}

/*
 * Runs that became due in (since, until]: queued runs whose run_at, later
 * than their creation (a delayed run, a delayed retry, a release to later),
 * was reached. The ones due at once were signalled when written. The
 * partial index rungate.runs_delayed_idx serves exactly this predicate.
 */
static RgPlan due_plan = {
	"SELECT r.operation, pg_catalog.min(r.id), pg_catalog.count(*)"
	"  FROM rungate.runs r"
	" WHERE r.status" EQ "'queued' AND r.created_at" LT "r.run_at"
	"   AND $1" LT "r.run_at AND r.run_at" LE "$2"
	" GROUP BY r.operation ORDER BY r.operation",
	2, {TIMESTAMPTZOID, TIMESTAMPTZOID}, NULL, RG_PER_CALL
};

/*
 * The wake-ups of one pass: NOTIFY rungate_queued for what became claimable
 * in (since, until] without anyone having signalled it. Today: runs whose
 * run_at was reached, one notification per operation ({"run_id": the
 * first such run, "operation": ..., "due": how many}). Returns how many
 * notifications it sent; they are delivered when the caller commits.
 *
 * This is the one place for wake-ups of the same kind (work that something
 * other than a write made claimable): runs whose run_at was reached, and
 * operations whose rate window lets a start in again. A hold's end and a
 * concurrency place that frees are notified by their own commits (resume,
 * the transition that frees the place).
 */
/*
 * Operations whose rate window let a start go in (since, until] (a start of
 * the window's key reached the window's length) while due runs of them are
 * queued: a claim may start one now. Each is notified once a pass.
 */
static RgPlan rate_freed_plan = {
	"SELECT DISTINCT s.operation FROM rungate.flow_starts s"
	"  JOIN rungate.operation_types ot ON ot.name" EQ "s.operation"
	" WHERE ot.rate_limit IS NOT NULL"
	"   AND s.started_at" PLUS "ot.rate_period" GT "$1"
	"   AND s.started_at" PLUS "ot.rate_period" LE "$2"
	"   AND EXISTS (SELECT 1 FROM rungate.runs r"
	"                WHERE r.status" EQ "'queued' AND r.operation" EQ "s.operation"
	"                  AND r.run_at" LE "$2)",
	2, {TIMESTAMPTZOID, TIMESTAMPTZOID}, NULL, RG_PER_CALL
};

static int
scheduler_wakeups(TimestampTz since, TimestampTz until)
{
	Datum		v[2];
	uint64		i;
	int			sent = 0;

	v[0] = TimestampTzGetDatum(since);
	v[1] = TimestampTzGetDatum(until);
	if (has_rate_windows)
	{
		rg_exec(&rate_freed_plan, v, NULL, false, 0);
		for (i = 0; i < SPI_processed; i++)
		{
			StringInfoData buf;

			initStringInfo(&buf);
			appendStringInfoString(&buf, "{\"operation\": ");
			escape_json(&buf, rg_get_text((int) i, 1));
			appendStringInfoString(&buf, ", \"rate_window\": true}");
			Async_Notify("rungate_queued", buf.data);
			sent++;
		}
	}

	rg_exec(&due_plan, v, NULL, false, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		StringInfoData buf;
		char	   *operation = rg_get_text((int) i, 1);

		initStringInfo(&buf);
		appendStringInfo(&buf, "{\"run_id\": " INT64_FORMAT ", \"operation\": ",
						 rg_get_int64((int) i, 2, NULL));
		escape_json(&buf, operation);
		appendStringInfo(&buf, ", \"due\": " INT64_FORMAT "}",
						 rg_get_int64((int) i, 3, NULL));
		Async_Notify("rungate_queued", buf.data);
		sent++;
	}
	return sent;
}

static void
step_wakeups(PassState *ps)
{
	ps->until = GetCurrentTransactionStartTimestamp();
	ps->count = scheduler_wakeups(ps->since, ps->until);
}

static RgPlan purge_plan = {
	"SELECT rungate.purge_batch(pg_catalog.now() OPERATOR(pg_catalog.-) $1, $2)",
	2, {INTERVALOID, INT4OID}, NULL, false
};

static void
step_purge(PassState *ps)
{
	Interval	keep;
	Datum		v[2];

	memset(&keep, 0, sizeof(keep));
	keep.time = (int64) retention * USECS_PER_SEC;
	v[0] = IntervalPGetDatum(&keep);
	v[1] = Int32GetDatum(PURGE_BATCH_RUNS);
	rg_exec(&purge_plan, v, NULL, false, 1);
	ps->count = rg_get_int64(0, 1, NULL);
}

typedef enum
{
	PASS_OK,
	PASS_FAILED,				/* a step failed: back off */
	PASS_ABSENT,				/* no rungate here: leave */
	PASS_REPLACED				/* a new rungate: leave, the launcher starts afresh */
} PassResult;

/* This process's CPU time in ms (user and system), or -1 where unknown. */
static double
cpu_ms(void)
{
#ifdef CLOCK_PROCESS_CPUTIME_ID
	struct timespec ts;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
		return ts.tv_sec * 1000.0 + ts.tv_nsec / 1000000.0;
#endif
	return -1;
}

static PassResult
worker_pass(TimestampTz *since)
{
	PassState	ps;
	bool		failed = false;
	int			batch;
	instr_time	start,
				took;
	double		ms[5] = {0, 0, 0, 0, 0};	/* reap, schedules, wake-ups, retention,
											 * looking */
	int64		did[4] = {0, 0, 0, 0};
	double		cpu0 = cpu_ms();

	INSTR_TIME_SET_CURRENT(start);
	MemoryContextReset(pass_cxt);
	MemoryContextSwitchTo(pass_cxt);
	memset(&ps, 0, sizeof(ps));
	ps.since = *since;

	if (!worker_step("looking for rungate", step_inventory, &ps))
		return PASS_FAILED;
	ms[4] = ps.step_ms;
	if (ps.absent || ps.replaced)
		sched_ran = false;
	if (ps.absent)
		return PASS_ABSENT;
	if (ps.replaced)
		return PASS_REPLACED;
	/* it serves this database: if it ends now, start another soon */
	worker_verdict(false, true, false);
	if (ps.replica)
	{
		elog(DEBUG1, "rungate scheduler: database \"%s\" subscribes to rungate.runs: nothing to do",
			 my_dbname);
		return PASS_OK;
	}

	if (ps.has_reap)
	{
		if (!worker_step("reap_expired", step_reap, &ps))
			failed = true;
		else if ((did[0] = ps.count) > 0)
			elog(DEBUG1, "rungate scheduler: database \"%s\": reaped " INT64_FORMAT " expired leases",
				 my_dbname, ps.count);
		ms[0] = ps.step_ms;
	}
	/*
	 * Wake-ups before the schedules: a tick that enqueues thousands of runs
	 * must not delay the notice that a delayed run is due.
	 */
	if (!worker_step("wake-ups", step_wakeups, &ps))
		failed = true;
	else
	{
		*since = ps.until;
		if ((did[2] = ps.count) > 0)
			elog(DEBUG1, "rungate scheduler: database \"%s\": notified rungate_queued for " INT64_FORMAT " operations with runs now due",
				 my_dbname, ps.count);
	}
	ms[2] = ps.step_ms;
	if (ps.has_schedules)
	{
		/*
		 * Ticks are whole minutes: within the minute of a run that took
		 * every due schedule, with no schedule written since, nothing new
		 * can be due. The count is read before the step's snapshot, and a
		 * writer adds to it only once its commit is visible, so a write the
		 * step does not see makes the next pass run; so does a due
		 * schedule the run found locked by another transaction.
		 */
		uint64		writes = pg_atomic_read_u64(&shared->schedule_writes);
		int64		minute = GetCurrentTimestamp() / USECS_PER_MINUTE;

		pg_memory_barrier();
		if (sched_ran && writes == sched_ran_writes && minute == sched_ran_minute)
			ms[1] = 0;
		else if (!worker_step("run_schedules", step_schedules, &ps))
		{
			failed = true;
			sched_ran = false;
			ms[1] = ps.step_ms;
		}
		else
		{
			sched_ran = rg_run_schedules_complete();
			sched_ran_writes = writes;
			sched_ran_minute = minute;
			if ((did[1] = ps.count) > 0)
				elog(DEBUG1, "rungate scheduler: database \"%s\": enqueued " INT64_FORMAT " scheduled runs",
					 my_dbname, ps.count);
			ms[1] = ps.step_ms;
		}
	}
	if (retention > 0 && ps.has_purge)
	{
		for (batch = 0; batch < PURGE_BATCHES; batch++)
		{
			CHECK_FOR_INTERRUPTS();
			if (!worker_step("retention", step_purge, &ps))
			{
				failed = true;
				break;
			}
			ms[3] += ps.step_ms;
			did[3] += ps.count;
			if (ps.count == 0)
				break;
			elog(DEBUG1, "rungate scheduler: database \"%s\": purged " INT64_FORMAT " runs finished more than %d s ago",
				 my_dbname, ps.count, retention);
		}
	}
	pgstat_report_stat(false);

	/* what the pass cost, step by step (test/bench/scheduler.sh reads it) */
	INSTR_TIME_SET_CURRENT(took);
	INSTR_TIME_SUBTRACT(took, start);
	elog(DEBUG2, "rungate scheduler: database \"%s\": pass took %.3f ms (CPU %.3f ms): "
		 "looking %.3f ms, reap %.3f ms (" INT64_FORMAT "), schedules %.3f ms (" INT64_FORMAT "), "
		 "wake-ups %.3f ms (" INT64_FORMAT "), retention %.3f ms (" INT64_FORMAT ")",
		 my_dbname, INSTR_TIME_GET_MILLISEC(took), cpu0 < 0 ? -1 : cpu_ms() - cpu0,
		 ms[4], ms[0], did[0], ms[1], did[1], ms[2], did[2], ms[3], did[3]);
	return failed ? PASS_FAILED : PASS_OK;
}

void
rg_scheduler_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	TimestampTz next_pass = 0;
	TimestampTz since;
	int			failures = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (shared == NULL)
		elog(ERROR, "rungate scheduler: shared memory is not set up");
	if (!worker_claim_slot(dboid))
	{
		elog(DEBUG1, "rungate scheduler: database %u is served already", dboid);
		proc_exit(0);
	}
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("application_name", "rungate scheduler", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("lock_timeout", WORKER_LOCK_TIMEOUT, PGC_USERSET, PGC_S_SESSION);
	pgstat_report_activity(STATE_IDLE, NULL);

	StartTransactionCommand();
	{
		char	   *name = get_database_name(dboid);

		my_dbname = MemoryContextStrdup(TopMemoryContext, name ? name : "?");
	}
	CommitTransactionCommand();
	/* the trailing rungate_queued hints of this database are ours (wakeup.c) */
	(void) rg_wakeup_attach();
	pass_cxt = AllocSetContextCreate(TopMemoryContext, "rungate scheduler pass",
									 (Size) 0, (Size) 8192, (Size) 65536);
	since = after_ms(GetCurrentTimestamp(), -FIRST_WINDOW);
	elog(DEBUG1, "rungate scheduler: started in database \"%s\"", my_dbname);

	for (;;)
	{
		TimestampTz now;
		long		timeout;
		long		wake_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!scheduler_enabled)
		{
			elog(DEBUG1, "rungate scheduler: rungate.scheduler is off: leaving database \"%s\"", my_dbname);
			worker_verdict(false, false, true);
			proc_exit(0);
		}
		if (worker_database_wanted())
		{
			elog(DEBUG1, "rungate scheduler: database \"%s\" is being dropped, renamed or copied: leaving it",
				 my_dbname);
			worker_verdict(false, false, true);
			proc_exit(0);
		}

		now = GetCurrentTimestamp();
		if (now >= next_pass)
		{
			switch (worker_pass(&since))
			{
				case PASS_ABSENT:
					elog(DEBUG1, "rungate scheduler: rungate is not installed in database \"%s\": leaving it",
						 my_dbname);
					worker_verdict(true, false, false);
					proc_exit(0);
					break;
				case PASS_REPLACED:
					elog(DEBUG1, "rungate scheduler: rungate was created again in database \"%s\": restarting",
						 my_dbname);
					worker_verdict(false, false, true);
					proc_exit(0);
					break;
				case PASS_FAILED:
					failures++;
					break;
				case PASS_OK:
					failures = 0;
					break;
			}
			now = GetCurrentTimestamp();
			next_pass = after_ms(now, failures > 0 ? backoff_ms(failures) : scheduler_naptime);
		}

		/* owed trailing wake-ups are sent at the end of their window */
		wake_ms = rg_wakeup_flush();
		timeout = (long) ((next_pass - now) / 1000);
		timeout = Max(Min(timeout, DB_CHECK_INTERVAL), 1);
		if (wake_ms >= 0)
			timeout = Max(Min(timeout, wake_ms), 1);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
