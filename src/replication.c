/*
 * replication.c
 *     rungate's tables under logical replication (docs/upgrading.md): which
 *     backend may write what a subscription applies, and the sequences of a
 *     subscriber that becomes the primary.
 *
 *     rg_is_apply_worker()       the one test the triggers (triggers.c) use
 *                                to let a subscription's changes through
 *     rungate.sync_sequences()   moves every sequence of rungate's tables
 *                                past the largest value present
 *     rg_require_synced_sequences()
 *                                before rungate writes rows that take ids:
 *                                RG409 naming the fix while a sequence lags
 *     rg_check_sequences()       the same check, run now (enqueue calls it
 *                                when its insert took no row)
 *     rg_rethrow_write_error()   a key taken by copied rows, met by one of
 *                                rungate's writes, becomes that RG409 too
 *
 * Logical replication copies rows, ids included, but not sequence values:
 * on a subscriber the identity sequences of rungate.runs, audit_log and
 * notifications (and of the application's authority tables) stay where they
 * were, usually at 1. rungate writes every id it creates from those
 * sequences, so until sync_sequences() has run its writes would take ids
 * that copied rows hold, or, where retention emptied the oldest ids, ids
 * older than every run there: new runs would be claimed and listed as the
 * oldest.
 *
 * The check costs a few queries, so it runs once per database and server
 * start and again only after a subscription applied rows to rungate's
 * tables (a count in shared memory, bumped when such a transaction
 * commits); between those, a write pays one atomic read. A lagging
 * sequence is one fed by a GENERATED ALWAYS identity whose next value is
 * already present: only rungate writes those columns (an application may
 * insert its own workspace ids, so BY DEFAULT identities are not checked;
 * sync_sequences() moves them too). Without rungate in
 * shared_preload_libraries there is no count: only enqueue's failed insert
 * and the write errors below are checked.
 *
 * Must never: tell an apply worker by anything a session can set (a GUC,
 * session_replication_role, a role attribute); add a query to the hot path
 * of enqueue or claim; move a sequence backwards; build SQL from anything
 * but catalog names, quoted.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/lsyscache.h"

#include "rungate.h"

PG_FUNCTION_INFO_V1(rg_sync_sequences);

#define SYNC_HINT \
	"If this database has become the primary, run rungate.sync_sequences() once, before work is enqueued or claimed here."

/* ----------------------------------------------------------------
 * Applied rows, and the databases whose sequences passed the check
 * ----------------------------------------------------------------
 */

#define REP_SLOTS 32			/* databases tracked at once */

typedef struct RepSlot
{
	Oid			dbid;			/* InvalidOid: a free slot; never freed */
	pg_atomic_uint64 applied;	/* commits that applied rows to rungate's tables */
	bool		has_verified;	/* under mutex: */
	uint64		verified;		/* applied when the sequences last passed */
} RepSlot;

typedef struct RepShared
{
	slock_t		mutex;
	RepSlot		slot[REP_SLOTS];
} RepShared;

static RepShared *rshared = NULL;
static int	my_slot = -1;

/* this backend saw the sequences pass at applied == local_applied */
static bool local_verified = false;
static uint64 local_applied = 0;

/* an apply worker: this transaction applied rows to rungate's tables */
static bool xact_applied = false;

Size
rg_replication_shmem_size(void)
{
	return MAXALIGN(sizeof(RepShared));
}

void
rg_replication_shmem_init(void)
{
	bool		found;
	int			i;

	rshared = ShmemInitStruct("rungate replication", sizeof(RepShared), &found);
	if (!found)
	{
		SpinLockInit(&rshared->mutex);
		for (i = 0; i < REP_SLOTS; i++)
		{
			rshared->slot[i].dbid = InvalidOid;
			pg_atomic_init_u64(&rshared->slot[i].applied, 0);
			rshared->slot[i].has_verified = false;
			rshared->slot[i].verified = 0;
		}
	}
}

/* The slot of this database, taken if need be; NULL when all are taken. */
static RepSlot *
my_rep_slot(void)
{
	int			i,
				take = -1;

	if (rshared == NULL || !OidIsValid(MyDatabaseId))
		return NULL;
	if (my_slot >= 0)
		return &rshared->slot[my_slot];
	SpinLockAcquire(&rshared->mutex);
	for (i = 0; i < REP_SLOTS; i++)
	{
		if (rshared->slot[i].dbid == MyDatabaseId)
		{
			take = i;
			break;
		}
		if (take < 0 && rshared->slot[i].dbid == InvalidOid)
			take = i;
	}
	if (take >= 0 && rshared->slot[take].dbid == InvalidOid)
		rshared->slot[take].dbid = MyDatabaseId;
	SpinLockRelease(&rshared->mutex);
	my_slot = take;
	return take >= 0 ? &rshared->slot[take] : NULL;
}

/*
 * After the commit is visible (or the transaction prepared: a two-phase
 * subscription commits it later, and the count already moved): every
 * database's check must run again before rungate writes ids there.
 */
static void
rep_xact_callback(XactEvent event, void *arg)
{
	RepSlot    *s;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			if (xact_applied && (s = my_rep_slot()) != NULL)
				pg_atomic_fetch_add_u64(&s->applied, 1);
			xact_applied = false;
			break;
		case XACT_EVENT_ABORT:
			xact_applied = false;
			break;
		default:
			break;
	}
}

/*
 * Whether this backend is a subscription's apply or table-sync worker (or a
 * parallel apply worker). Core starts them as background workers and marks
 * them as logical replication workers in C; nothing a client sends can make
 * a session one. The version differences are rungate.h's.
 *
 * rungate's triggers ask it for every row written to its tables, so in
 * such a worker a true answer also marks the transaction: its commit
 * counts as rows applied, and this database's sequences are checked again
 * before rungate next writes ids here.
 */
bool
rg_is_apply_worker(void)
{
	static bool callback_registered = false;

	if (!RG_IS_LOGICAL_REPLICATION_WORKER())
		return false;
	if (!callback_registered)
	{
		RegisterXactCallback(rep_xact_callback, NULL);
		callback_registered = true;
	}
	xact_applied = true;
	return true;
}

/* ----------------------------------------------------------------
 * The sequences of rungate's tables
 * ----------------------------------------------------------------
 */

/*
 * Every sequence that feeds a column of a table of schema rungate: identity
 * and serial sequences (owned by the column), and sequences a column default
 * calls. Found in the catalog, so tables added later are covered too.
 */
static RgPlan sequences_plan = {
	"SELECT q.seq, q.tbl, a.attname::pg_catalog.text, ps.seqincrement,"
	"       a.attidentity" EQ "'a'"
	"  FROM (SELECT d.objid AS seq, d.refobjid AS tbl, d.refobjsubid AS col"
	"          FROM pg_catalog.pg_depend d"
	"         WHERE d.classid" EQ "'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid"
	"           AND d.refclassid" EQ "'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid"
	"           AND d.deptype IN ('a', 'i') AND d.refobjsubid" NE "0"
	"        UNION"
	"        SELECT d.refobjid, ad.adrelid, ad.adnum"
	"          FROM pg_catalog.pg_attrdef ad"
	"          JOIN pg_catalog.pg_depend d"
	"            ON d.classid" EQ "'pg_catalog.pg_attrdef'::pg_catalog.regclass::pg_catalog.oid"
	"           AND d.objid" EQ "ad.oid"
	"           AND d.refclassid" EQ "'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid) q"
	"  JOIN pg_catalog.pg_class s ON s.oid" EQ "q.seq AND s.relkind" EQ "'S'"
	"  JOIN pg_catalog.pg_sequence ps ON ps.seqrelid" EQ "q.seq"
	"  JOIN pg_catalog.pg_class c ON c.oid" EQ "q.tbl AND c.relkind IN ('r', 'p')"
	"  JOIN pg_catalog.pg_namespace n ON n.oid" EQ "c.relnamespace"
	"  JOIN pg_catalog.pg_attribute a ON a.attrelid" EQ "q.tbl AND a.attnum" EQ "q.col"
	" WHERE n.nspname" EQ "'rungate' AND NOT a.attisdropped"
	" ORDER BY q.tbl, q.col, q.seq",
	0, {InvalidOid}, NULL, false
};

static RgPlan setval_plan = {
	"SELECT pg_catalog.setval($1::pg_catalog.regclass, $2, true)",
	2, {OIDOID, INT8OID}, NULL, false
};

static RgPlan subscriptions_plan = {
	"SELECT s.subname::pg_catalog.text FROM pg_catalog.pg_subscription s"
	" WHERE s.subdbid" EQ "$1 AND s.subenabled"
	" ORDER BY s.subname",
	1, {OIDOID}, NULL, false
};

typedef struct SeqState
{
	Oid			seq;
	Oid			tbl;
	char	   *column;
	int64		increment;
	bool		always;			/* feeds a GENERATED ALWAYS identity */
	char	   *seqname;		/* qualified and quoted */
	char	   *tblname;
	bool		has_max;		/* the table has a row with a value */
	int64		max;			/* the largest value present */
	int64		next;			/* what nextval would return */
} SeqState;

/* A one-row query of catalog-derived SQL (SPI connected). */
static void
exec_one_row(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "rungate: unexpected result (%s) of: %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * The sequences (SPI connected), in table order, with the largest value of
 * their column and their next value. For sync, all of them, each table
 * first locked against writes (SHARE), so that the largest value stays the
 * largest until the transaction ends; for a check, only those of GENERATED
 * ALWAYS identities, unlocked.
 */
static List *
read_sequences(bool for_sync)
{
	List	   *out = NIL;
	uint64		n,
				i;
	SPITupleTable *tab;
	ListCell   *lc;

	rg_exec(&sequences_plan, NULL, NULL, false, 0);
	n = SPI_processed;
	tab = SPI_tuptable;
	for (i = 0; i < n; i++)
	{
		SeqState   *s = palloc0(sizeof(SeqState));
		bool		isnull;

		s->seq = DatumGetObjectId(SPI_getbinval(tab->vals[i], tab->tupdesc, 1, &isnull));
		s->tbl = DatumGetObjectId(SPI_getbinval(tab->vals[i], tab->tupdesc, 2, &isnull));
		s->column = SPI_getvalue(tab->vals[i], tab->tupdesc, 3);
		s->increment = DatumGetInt64(SPI_getbinval(tab->vals[i], tab->tupdesc, 4, &isnull));
		s->always = DatumGetBool(SPI_getbinval(tab->vals[i], tab->tupdesc, 5, &isnull));
		if (!for_sync && !s->always)
			continue;
		s->seqname = rg_qualified_name(s->seq);
		s->tblname = rg_qualified_name(s->tbl);
		out = lappend(out, s);
	}

	foreach(lc, out)
	{
		SeqState   *s = lfirst(lc);
		bool		isnull;
		bool		is_called;
		Datum		d;

		if (for_sync &&
			SPI_execute(psprintf("LOCK TABLE %s IN SHARE MODE", s->tblname),
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "rungate: could not lock %s", s->tblname);
		exec_one_row(psprintf("SELECT pg_catalog.max(t.%s)::pg_catalog.int8 FROM %s t",
							  quote_identifier(s->column), s->tblname));
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		s->has_max = !isnull;
		s->max = isnull ? 0 : DatumGetInt64(d);

		exec_one_row(psprintf("SELECT s.last_value, s.is_called FROM %s s",
							  s->seqname));
		s->next = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
		is_called = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &isnull));
		if (is_called)
			s->next += s->increment;
	}
	return out;
}

/*
 * A sequence lags when the value it would give next is already present.
 * Only ascending sequences feed rungate's ids; a descending one is left
 * alone.
 */
static bool
lags(const SeqState *s)
{
	return s->has_max && s->increment > 0 && s->next <= s->max;
}

/*
 * rungate.sync_sequences() RETURNS void
 *
 * For the moment a subscriber becomes the primary: every sequence of
 * rungate's tables continues after the largest value present, so the next
 * run, audit row, notification (or workspace, tenant, actor) takes a fresh
 * id. Never moves a sequence backwards; running it again changes nothing.
 */
Datum
rg_sync_sequences(PG_FUNCTION_ARGS)
{
	List	   *seqs;
	ListCell   *lc;
	Datum		arg[2];

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "rungate: SPI_connect failed");

	/* an enabled subscription may still bring rows with larger ids */
	arg[0] = ObjectIdGetDatum(MyDatabaseId);
	rg_exec(&subscriptions_plan, arg, NULL, false, 0);
	if (SPI_processed > 0)
		ereport(WARNING,
				(errmsg("subscription \"%s\" is still enabled in this database",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errdetail("Rows it applies from now on may hold ids that the sequences give again."),
				 errhint("Disable or drop the subscription once its lag is zero, then run rungate.sync_sequences() again.")));

	/*
	 * The switchover: this commit also empties every backend's authority
	 * cache here, whatever the subscription applied (a two-phase
	 * subscription's COMMIT PREPARED passes no hook of ours).
	 */
	rg_authcache_note_change();

	seqs = read_sequences(true);
	foreach(lc, seqs)
	{
		SeqState   *s = lfirst(lc);

		if (!lags(s))
			continue;
		arg[0] = ObjectIdGetDatum(s->seq);
		arg[1] = Int64GetDatum(s->max);
		rg_exec(&setval_plan, arg, NULL, false, 0);
		ereport(NOTICE,
				(errmsg("sequence %s of %s.%s now continues after " INT64_FORMAT,
						s->seqname, s->tblname, quote_identifier(s->column),
						s->max)));
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Raise RG409 naming the fix when a sequence of a GENERATED ALWAYS identity
 * of rungate's tables would give a value already present. Runs in its own
 * SPI connection, so the caller's SPI result is kept.
 *
 * enqueue calls it when its insert of a run took no row: either a
 * concurrent dispatch holds the idempotency key (then this returns and the
 * caller looks again), or the id the sequence gave is held by a copied row.
 */
void
rg_check_sequences(void)
{
	List	   *seqs;
	ListCell   *lc;
	SeqState   *first = NULL;
	int			lagging = 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "rungate: SPI_connect failed");
	seqs = read_sequences(false);
	foreach(lc, seqs)
	{
		SeqState   *s = lfirst(lc);

		if (!lags(s))
			continue;
		if (first == NULL)
			first = s;
		lagging++;
	}
	if (first != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_RG_CONFLICT),
				 errmsg("sequence %s of %s.%s is behind the rows present: it would give " INT64_FORMAT ", and values up to " INT64_FORMAT " exist",
						first->seqname, first->tblname,
						quote_identifier(first->column), first->next,
						first->max),
				 errdetail_plural("%d sequence of rungate's tables lags. Logical replication copies rows, not sequence values.",
								  "%d sequences of rungate's tables lag. Logical replication copies rows, not sequence values.",
								  lagging, lagging),
				 errhint(SYNC_HINT)));
	SPI_finish();
}

/*
 * Before rungate writes rows that take ids from their sequences: RG409 while
 * a sequence lags (see the header). One atomic read when this database
 * passed the check and no subscription applied rows here since.
 */
void
rg_require_synced_sequences(void)
{
	RepSlot    *s = my_rep_slot();
	uint64		applied;
	bool		passed;

	if (s == NULL)
		return;
	applied = pg_atomic_read_u64(&s->applied);
	if (local_verified && applied == local_applied)
		return;

	SpinLockAcquire(&rshared->mutex);
	passed = s->has_verified && s->verified == applied;
	SpinLockRelease(&rshared->mutex);

	/*
	 * applied was read before the check's snapshot is taken: rows committed
	 * after it count again, so a pass never covers rows it did not see.
	 */
	if (!passed)
	{
		rg_check_sequences();
		SpinLockAcquire(&rshared->mutex);
		if (!s->has_verified || s->verified < applied)
		{
			s->has_verified = true;
			s->verified = applied;
		}
		SpinLockRelease(&rshared->mutex);
	}
	local_verified = true;
	local_applied = applied;
}

/*
 * In a PG_CATCH block around one of rungate's writes, with cxt the memory
 * context of its caller. rungate gives every row it inserts an id from its
 * table's sequence and never names one itself, so a unique violation of the
 * primary key of a table of schema rungate (named <table>_pkey) means that
 * the sequence lags behind rows copied by logical replication: it becomes
 * RG409 with the fix. Any other error goes on as it was. Never returns.
 *
 * No query runs here: the failed write may still hold buffer locks until
 * the transaction aborts.
 */
void
rg_rethrow_write_error(MemoryContext cxt)
{
	ErrorData  *edata;
	char	   *pkey;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION ||
		edata->schema_name == NULL || strcmp(edata->schema_name, "rungate") != 0 ||
		edata->table_name == NULL || edata->constraint_name == NULL)
	{
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	pkey = psprintf("%s_pkey", edata->table_name);
	if (strcmp(edata->constraint_name, pkey) != 0)
	{
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	FlushErrorState();
	ereport(ERROR,
			(errcode(ERRCODE_RG_CONFLICT),
			 errmsg("the next id of rungate.%s is already taken: its sequence is behind the rows present",
					edata->table_name),
			 edata->detail ?
			 errdetail("%s Logical replication copies rows, not sequence values.",
					   edata->detail) :
			 errdetail("Logical replication copies rows, not sequence values."),
			 errhint(SYNC_HINT)));
	pg_unreachable();
}
