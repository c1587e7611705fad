/*-------------------------------------------------------------------------
 *
 * supervisor.c
 *	  The supervisor: one dynamic background worker per database served.
 *	  It declares the queues of chancy.queues, and keeps as many executors
 *	  running for each queue of chancy_queues as its concurrency says,
 *	  telling them when their queue is paused.
 *
 * It wakes when an executor starts or stops, when a change to chancy_queues
 * or DROP EXTENSION chancy commits in its database, and on SIGHUP.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include <signal.h>

#include "chancy_internal.h"

/* sleep at most this long without a wake-up */
#define FALLBACK_SLEEP_MS 10000

/* pruning: how often, and how many jobs a transaction deletes, at most */
#define PRUNE_EVERY_MS 10000
#define PRUNE_BATCH 5000
#define PRUNE_MAX_BATCHES 20

/* A row of chancy_queues. */
typedef struct QueueConfig
{
	char		name[NAMEDATALEN];
	int			concurrency;
	int			running;		/* executors counted so far */
	TimestampTz paused_until;	/* 0: not paused */
	double		backoff_base;
	double		backoff_factor;
	double		backoff_max;
	int64		time_limit_ms;	/* 0: none */
	bool		isolated;
} QueueConfig;

static ChancyDatabase *db = NULL;
static BackgroundWorkerHandle **handles = NULL; /* per executor slot */
static uint64 *handle_generations = NULL;	/* the slot generation of each */
static bool reported_no_slots = false;	/* said once until a start works */

/*
 * stop_executors
 *		Ask every executor of this database to exit: now (SIGTERM), or after
 *		their current job.
 */
static void
stop_executors(bool now)
{
	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid != MyDatabaseId)
			continue;
		ex->stop = true;
		if (ex->pid != 0 && now)
			kill(ex->pid, SIGTERM);
		else if (ex->latch)
			SetLatch(ex->latch);
	}
	LWLockRelease(chancy_shared->lock);
}

/*
 * supervisor_detach
 *		On exit: stop our executors, and tell the launcher.
 */
static void
supervisor_detach(int code, Datum arg)
{
	/* leaving normally, executors finish their job; otherwise they go now */
	stop_executors(code != 0);
	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	db->pid = 0;
	db->latch = NULL;
	if (chancy_shared->launcher_latch)
		SetLatch(chancy_shared->launcher_latch);
	LWLockRelease(chancy_shared->lock);
}

/*
 * leave
 *		chancy is not (or no longer) installed here: say so once, and exit.
 *		The launcher starts a supervisor again after CREATE EXTENSION.
 */
static void
leave(void)
{
	char	   *dbname;

	StartTransactionCommand();
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	CommitTransactionCommand();
	if (!db->no_extension)
		ereport(LOG,
				(errmsg("chancy: database \"%s\" does not have the chancy extension; its queues do not run",
						dbname),
				 errhint("Run CREATE EXTENSION chancy in it, or remove it from chancy.database.")));
	db->no_extension = true;
	proc_exit(0);
}

/*
 * declare_configured_queues
 *		Declare the queues of chancy.queues (creating or updating their
 *		concurrency), at start and on reload.
 */
static void
declare_configured_queues(void)
{
	List	   *names = NIL;
	List	   *concurrencies = NIL;
	const char *why;
	ListCell   *ln;
	ListCell   *lc;
	ChancyCatalog *cat;

	if (!parse_queues(chancy_queues, &names, &concurrencies, &why))
		return;					/* the GUC check hook prevents this */

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	cat = chancy_catalog(chancy_extension_schema());
	SPI_connect();
	forboth(ln, names, lc, concurrencies)
	{
		Oid			argtypes[2] = {TEXTOID, INT4OID};
		Datum		args[2];

		args[0] = CStringGetTextDatum(lfirst(ln));
		args[1] = Int32GetDatum(lfirst_int(lc));
		if (SPI_execute_with_args(psprintf("INSERT INTO %s.chancy_queues (name, concurrency)"
										   " VALUES ($1, $2) ON CONFLICT (name) DO UPDATE"
										   " SET concurrency = excluded.concurrency,"
										   " updated_at = now()"
										   " WHERE chancy_queues.concurrency <> excluded.concurrency",
										   cat->nspname),
								  2, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not declare queue \"%s\"", (char *) lfirst(ln));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * read_queues
 *		The rows of chancy_queues.
 */
static QueueConfig *
read_queues(int *nqueues)
{
	MemoryContext cxt = CurrentMemoryContext;
	QueueConfig *queues;
	ChancyCatalog *cat;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	cat = chancy_catalog(chancy_extension_schema());
	SPI_connect();
	if (SPI_execute(psprintf("SELECT name, concurrency, paused_until,"
							 " extract(epoch FROM backoff_base)::float8,"
							 " backoff_factor,"
							 " extract(epoch FROM backoff_max)::float8,"
							 " (extract(epoch FROM time_limit) * 1000)::int8,"
							 " executor = 'isolated'"
							 " FROM %s.chancy_queues", cat->nspname),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read chancy_queues");
	*nqueues = (int) SPI_processed;
	queues = MemoryContextAllocZero(cxt, sizeof(QueueConfig) * Max(SPI_processed, 1));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		TimestampTz paused;

		strlcpy(queues[r].name, SPI_getvalue(tup, desc, 1), NAMEDATALEN);
		queues[r].concurrency = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		paused = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
		queues[r].paused_until = isnull ? 0 : paused;
		queues[r].backoff_base = DatumGetFloat8(SPI_getbinval(tup, desc, 4, &isnull));
		queues[r].backoff_factor = DatumGetFloat8(SPI_getbinval(tup, desc, 5, &isnull));
		queues[r].backoff_max = DatumGetFloat8(SPI_getbinval(tup, desc, 6, &isnull));
		queues[r].time_limit_ms = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		if (isnull)
			queues[r].time_limit_ms = 0;
		queues[r].isolated = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return queues;
}

/*
 * reap
 *		Forget our executors that have stopped.  One that exited freed its
 *		slot itself; one that never started (or died before attaching) is
 *		freed here, unless the slot was given out again meanwhile.
 */
static void
reap(void)
{
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		pid_t		pid;
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (handles[i] == NULL ||
			GetBackgroundWorkerPid(handles[i], &pid) != BGWH_STOPPED)
			continue;
		pfree(handles[i]);
		handles[i] = NULL;
		LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
		if (ex->generation == handle_generations[i])
		{
			ex->dboid = InvalidOid;
			ex->pid = 0;
			ex->latch = NULL;
		}
		LWLockRelease(chancy_shared->lock);
	}
}

/*
 * apply_config
 *		Pass a queue's settings on to one of its executors (lock held).
 */
static void
apply_config(ChancyExecutor *ex, QueueConfig *q)
{
	ex->paused_until = q->paused_until;
	ex->backoff_base = q->backoff_base;
	ex->backoff_factor = q->backoff_factor;
	ex->backoff_max = q->backoff_max;
	ex->time_limit_ms = q->time_limit_ms;
	ex->isolated = q->isolated;
}

/*
 * start_executor
 *		Take a free executor slot for queue q and start its executor.
 */
static bool
start_executor(QueueConfig *q)
{
	int			slot = -1;
	ChancyExecutor *ex;
	uint64		generation;

	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < chancy_shared->nexecutors; i++)
		if (!OidIsValid(chancy_shared->executors[i].dboid) && handles[i] == NULL)
		{
			slot = i;
			break;
		}
	if (slot < 0)
	{
		LWLockRelease(chancy_shared->lock);
		if (!reported_no_slots)
			ereport(LOG,
					(errmsg("chancy: no executor slot left for queue \"%s\"", q->name),
					 errdetail("All %d executors allowed by chancy.max_executors are in use.",
							   chancy_shared->nexecutors),
					 errhint("Raise chancy.max_executors (and max_worker_processes), or lower the concurrency of queues.")));
		reported_no_slots = true;
		return false;
	}
	ex = &chancy_shared->executors[slot];
	ex->dboid = MyDatabaseId;
	strlcpy(ex->queue, q->name, NAMEDATALEN);
	ex->stop = false;
	ex->pid = 0;
	ex->latch = NULL;
	apply_config(ex, q);
	ex->cancel_job = 0;
	ex->claim = 0;
	ex->job_id = 0;
	ex->jobs_done = 0;
	generation = ++ex->generation;
	handle_generations[slot] = generation;
	LWLockRelease(chancy_shared->lock);

	if (!chancy_start_worker("chancy_executor_main",
							 psprintf("chancy executor %s", q->name),
							 slot, generation, &handles[slot]))
	{
		if (!reported_no_slots)
			ereport(LOG,
					(errmsg("chancy: could not start an executor for queue \"%s\"", q->name),
					 errhint("No background worker slot is free: raise max_worker_processes.")));
		reported_no_slots = true;
		handles[slot] = NULL;
		LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
		ex->dboid = InvalidOid;
		LWLockRelease(chancy_shared->lock);
		return false;
	}
	reported_no_slots = false;
	return true;
}

/*
 * reconcile
 *		Make the executors match chancy_queues: as many per queue as its
 *		concurrency, each knowing whether its queue is paused.
 */
static void
reconcile(void)
{
	int			nqueues;
	QueueConfig *queues;

	queues = read_queues(&nqueues);
	reap();

	/* executors of queues no longer declared, or above concurrency, stop */
	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];
		QueueConfig *config = NULL;

		if (ex->dboid != MyDatabaseId || ex->stop)
			continue;
		for (int q = 0; q < nqueues; q++)
			if (strcmp(queues[q].name, ex->queue) == 0)
				config = &queues[q];
		if (config == NULL || config->running == config->concurrency)
		{
			ex->stop = true;
			if (ex->latch)
				SetLatch(ex->latch);
			continue;
		}
		config->running++;
		if (ex->paused_until != config->paused_until && ex->latch)
			SetLatch(ex->latch);
		apply_config(ex, config);
	}
	LWLockRelease(chancy_shared->lock);

	/* queues below their concurrency get more */
	for (int q = 0; q < nqueues; q++)
		for (int n = queues[q].running; n < queues[q].concurrency; n++)
			if (!start_executor(&queues[q]))
				break;
}

/*
 * recover_jobs
 *		At start, with no executor of this database left: the jobs still
 *		marked running lost their executor (a crash, a kill, a restart).
 */
static void
recover_jobs(void)
{
	int			n;
	Datum	   *claims = palloc(sizeof(Datum) * chancy_shared->nexecutors);
	int			nclaims = 0;
	ArrayType  *live;

	/* an executor that outlived its supervisor still holds its claim */
	LWLockAcquire(chancy_shared->lock, LW_SHARED);
	for (int i = 0; i < chancy_shared->nexecutors; i++)
		if (chancy_shared->executors[i].dboid == MyDatabaseId &&
			chancy_shared->executors[i].pid != 0)
			claims[nclaims++] = Int64GetDatum(chancy_shared->executors[i].claim);
	LWLockRelease(chancy_shared->lock);
	live = construct_array(claims, nclaims, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	n = queue_recover(chancy_catalog(chancy_extension_schema()), chancy_max_crashes, live);
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (n > 0)
		ereport(LOG,
				(errmsg("chancy recovered %d job%s whose executor had died", n,
						n == 1 ? "" : "s"),
				 errdetail("They run again, or have failed if they crashed their executor chancy.max_crashes (%d) times.",
						   chancy_max_crashes)));
}

/*
 * prune
 *		Delete finished jobs past their queue's prune_after (or
 *		chancy.prune_after), a bounded batch per transaction, a bounded
 *		number of batches per round so that queue changes are not kept
 *		waiting.
 */
static void
prune(void)
{
	Interval	prune_after;
	int			n;

	memset(&prune_after, 0, sizeof(prune_after));
	prune_after.time = (int64) chancy_prune_after * USECS_PER_SEC;
	for (int round = 0; round < PRUNE_MAX_BATCHES; round++)
	{
		CHECK_FOR_INTERRUPTS();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		n = queue_prune(chancy_catalog(chancy_extension_schema()),
						chancy_prune_after < 0 ? NULL : &prune_after, PRUNE_BATCH);
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (n < PRUNE_BATCH)
			break;
	}
}

/*
 * chancy_supervisor_main
 *		Entry point of a supervisor; arg is its database slot.
 */
void
chancy_supervisor_main(Datum arg)
{
	uint64		generation;
	MemoryContext loop_cxt;
	TimestampTz last_prune = 0;

	db = &chancy_shared->dbs[DatumGetInt32(arg)];
	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (db->generation != generation || db->pid != 0 || db->blocked)
		proc_exit(0);
	BackgroundWorkerInitializeConnectionByOid(db->dboid, InvalidOid, 0);

	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	if (db->generation != generation || db->pid != 0)
	{
		LWLockRelease(chancy_shared->lock);
		proc_exit(0);
	}
	db->pid = MyProcPid;
	db->latch = MyLatch;
	LWLockRelease(chancy_shared->lock);
	before_shmem_exit(supervisor_detach, (Datum) 0);
	pgstat_report_appname("chancy supervisor");
	handles = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(BackgroundWorkerHandle *) * chancy_shared->nexecutors);
	handle_generations = MemoryContextAllocZero(TopMemoryContext,
												sizeof(uint64) * chancy_shared->nexecutors);

	/* executors left by a previous supervisor of this database go */
	stop_executors(true);
	for (int tries = 0; tries < 1000; tries++)
	{
		bool		left = false;

		LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
		for (int i = 0; i < chancy_shared->nexecutors; i++)
			if (chancy_shared->executors[i].dboid == MyDatabaseId)
			{
				if (chancy_shared->executors[i].pid == 0)
				{
					/* void any start still pending for this slot */
					chancy_shared->executors[i].generation++;
					chancy_shared->executors[i].dboid = InvalidOid;
				}
				else
					left = true;
			}
		LWLockRelease(chancy_shared->lock);
		if (!left)
			break;
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}

	if (!OidIsValid(chancy_extension_schema()))
		leave();
	db->no_extension = false;
	recover_jobs();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "chancy supervisor",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(loop_cxt);
	declare_configured_queues();

	for (;;)
	{
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			declare_configured_queues();
		}
		ResetLatch(MyLatch);

		if (!OidIsValid(chancy_extension_schema()))
		{
			stop_executors(false);
			leave();
		}
		PG_TRY();
		{
			reconcile();
			if (TimestampDifferenceExceeds(last_prune, GetCurrentTimestamp(), PRUNE_EVERY_MS))
			{
				last_prune = GetCurrentTimestamp();
				prune();
			}
		}
		PG_CATCH();
		{
			/* report and go on: exiting would stop every executor here */
			HOLD_INTERRUPTS();
			MemoryContextSwitchTo(TopMemoryContext);
			EmitErrorReport();
			AbortOutOfAnyTransaction();
			FlushErrorState();
			RESUME_INTERRUPTS();
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000,
							 PG_WAIT_EXTENSION);
		}
		PG_END_TRY();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(FALLBACK_SLEEP_MS, PRUNE_EVERY_MS), PG_WAIT_EXTENSION);
	}
}
