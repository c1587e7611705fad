/*-------------------------------------------------------------------------
 *
 * supervisor.c
 *	  The supervisor: one dynamic background worker per database served.
 *	  It declares the queues of chancy.queues, keeps as many executors per
 *	  queue as its concurrency says, gives back the jobs of executors that
 *	  went, passes cancels on, fires the schedules that are due
 *	  (schedule.c), and prunes finished jobs.
 *
 * It wakes when an executor starts or stops, when a change to chancy_queues,
 * ALTER or DROP EXTENSION chancy, or COMMIT PREPARED commits in its
 * database, when a change to chancy_schedules commits, when another
 * database frees an executor slot, on SIGHUP, and when the next schedule
 * or prune is due.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

/* sleep at most this long without a wake-up */
#define FALLBACK_SLEEP_MS 60000

/* pruning: not more often than this while jobs finish */
#define PRUNE_EVERY_MS 10000

/* claims no live executor holds are looked for this often (an idle
 * supervisor wakes as often anyway) */
#define STRAY_CLAIMS_EVERY_MS FALLBACK_SLEEP_MS

/* an executor that could not start is tried again this soon: nothing wakes
 * the supervisor when a slot frees in another database */
#define START_RETRY_MS 1000

/* batches of due schedules fired before the rest of the loop has its turn */
#define FIRE_BATCHES_PER_TURN 10

/* while another database's gauges are counted, ours wait this long */
#define STATS_RETRY_MS 1000

/* A row of chancy_queues, as the supervisor needs it. */
typedef struct QueueRow
{
	char		name[NAMEDATALEN];
	int			concurrency;
} QueueRow;

static Oid	chancy_nsp = InvalidOid;
static char *my_dbname = NULL;	/* for messages */
static BackgroundWorkerHandle **handles = NULL; /* per executor slot */
static uint64 *handle_generations = NULL;	/* the slot generation of each */
static bool reported_no_slots = false;	/* said once until a start works */
static int	reported_budget = -1;	/* the shortfall last logged */
static bool no_extension = false;	/* leaving: chancy is not installed */
static int64 pruned_at_jobs = -1;	/* jobs done at the last prune */
static TimestampTz pruned_at = 0;
static TimestampTz prune_due = 0;	/* when the oldest finished job is due */
static TimestampTz recovered_at = 0;	/* when stray claims were looked for */
static MemoryContext loop_cxt = NULL;	/* reset at every turn of the loop */

/*
 * begin
 *		Begin one of the supervisor's transactions, the extension locked
 *		against DROP and ALTER; chancy's catalog.  What
 *		it allocates, results included, lives in loop_cxt: the results of a
 *		transaction are often used after its commit (waiters woken).
 */
static ChancyCatalog *
begin(void)
{
	Oid			extension;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(loop_cxt);

	/*
	 * DROP and ALTER EXTENSION lock the extension before any of its tables
	 * (and their indexes and partitions), which they then take in their own
	 * order: holding it first, a transaction that reads several of them
	 * never deadlocks with those commands.
	 */
	extension = get_extension_oid("chancy", true);
	if (OidIsValid(extension))
		LockDatabaseObject(ExtensionRelationId, extension, 0, AccessShareLock);
	PushActiveSnapshot(GetTransactionSnapshot());
	return chancy_catalog(chancy_nsp);
}

/* End it. */
static void
end(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(loop_cxt);
	pgstat_report_stat(false);
}

/*
 * supervisor_detach
 *		On exit: stop this database's executors (after their job when
 *		leaving normally, at once otherwise), and free the slot.
 */
static void
supervisor_detach(int code, Datum arg)
{
	slots_executors_stop_all(code != 0);
	slots_db_detach(no_extension);
}

/*
 * leave
 *		chancy is not installed here: say so, and exit.  The executors of
 *		this database leave too; with chancy gone they hold no job, so their
 *		slots are freed without recovery (else no supervisor would free
 *		them).  The launcher starts a supervisor again after CREATE
 *		EXTENSION.
 */
static void
leave(void)
{
	slots_executors_stop_all(false);
	for (int tries = 0; tries < 300 && slots_executors_alive(); tries++)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	slots_executors_free_exited();
	if (slots_db_say_missing(true))
		ereport(LOG,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("database \"%s\" does not have extension chancy",
						my_dbname),
				 errdetail("Its queues do not run."),
				 errhint("Run CREATE EXTENSION chancy in it, or remove it from chancy.database.")));
	no_extension = true;
	proc_exit(0);
}

/*
 * wait_for_update
 *		chancy's SQL objects here are of another version than this library:
 *		say what to run, once, and wait until ALTER EXTENSION chancy UPDATE
 *		(or DROP EXTENSION) commits.
 */
static void
wait_for_update(const char *version)
{
	ereport(LOG,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension chancy in database \"%s\" must be updated", my_dbname),
			 errdetail("Its version is %s; the installed library needs version %s.  Its queues do not run until it is updated.",
					   version, CHANCY_SQL_VERSION),
			 errhint("Run ALTER EXTENSION chancy UPDATE in that database.")));
	for (;;)
	{
		ExtensionState state;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 FALLBACK_SLEEP_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		state = chancy_extension(&chancy_nsp, NULL);
		if (state == EXTENSION_MISSING)
			leave();
		if (state == EXTENSION_READY)
			return;
	}
}

/*
 * declare_configured_queues
 *		Declare the queues of chancy.queues that do not exist yet, and keep
 *		the concurrency of those that follow the setting (from_config); a
 *		queue changed by chancy_declare_queue() no longer does.
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
	CatalogSql	sql;

	if (!parse_queues(chancy_queue_list, &names, &concurrencies, &why))
		return;					/* the GUC check hook prevents this */

	cat = begin();
	catalog_sql_begin(cat, true, &sql);
	forboth(ln, names, lc, concurrencies)
	{
		Oid			argtypes[2] = {TEXTOID, INT4OID};
		Datum		args[2];

		args[0] = CStringGetTextDatum(lfirst(ln));
		args[1] = Int32GetDatum(lfirst_int(lc));
		if (SPI_execute_with_args(psprintf("INSERT INTO %s.chancy_queues AS q"
										   " (name, concurrency, from_config)"
										   " VALUES ($1, $2, true) ON CONFLICT (name) DO UPDATE"
										   " SET concurrency = excluded.concurrency,"
										   " updated_at = now()"
										   " WHERE q.from_config AND q.concurrency <> excluded.concurrency",
										   cat->nspname),
								  2, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not declare queue \"%s\"", (char *) lfirst(ln));
	}
	catalog_sql_end(&sql);
	end();
}

/* The rows of chancy_queues: name and concurrency. */
static QueueRow *
read_queues(int *nqueues)
{
	MemoryContext cxt = CurrentMemoryContext;
	QueueRow   *queues;
	ChancyCatalog *cat;
	CatalogSql	sql;

	cat = begin();
	catalog_sql_begin(cat, true, &sql);
	if (SPI_execute(psprintf("SELECT name, concurrency FROM %s.chancy_queues ORDER BY name",
							 cat->nspname), true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read chancy_queues");
	*nqueues = (int) SPI_processed;
	queues = MemoryContextAllocZero(cxt, sizeof(QueueRow) * Max(SPI_processed, 1));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;

		strlcpy(queues[r].name, SPI_getvalue(SPI_tuptable->vals[r],
											 SPI_tuptable->tupdesc, 1), NAMEDATALEN);
		queues[r].concurrency = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
															SPI_tuptable->tupdesc, 2,
															&isnull));
	}
	catalog_sql_end(&sql);
	end();
	return queues;
}

/*
 * recover_jobs
 *		Give back the jobs whose executor is gone: every claim in the table
 *		that no live executor holds (read after the table).  The jobs that
 *		were executing when their executor died of their own doing (guilty:
 *		boxed ids, plus what the ledger kept of a crash) are charged a crash;
 *		the others go back uncharged.  Waiters are woken after commit.
 */
static void
recover_jobs(List *guilty)
{
	List	   *in_use;
	List	   *live;
	List	   *dead = NIL;
	List	   *crashed;
	bool		known;
	ChancyCatalog *cat;
	ReleaseResult released;
	ListCell   *lc;
	ArrayType  *guilty_array;

	cat = begin();
	in_use = queue_claims_in_use(cat);
	live = slots_live_claims();
	foreach(lc, in_use)
	{
		int64		claim = *(int64 *) lfirst(lc);
		bool		held = false;
		ListCell   *ll;

		slots_claims_above(claim);

		foreach(ll, live)
			if (*(int64 *) lfirst(ll) == claim)
				held = true;
		if (!held)
			dead = lappend(dead, lfirst(lc));
	}
	if (dead == NIL)
	{
		end();
		return;
	}

	crashed = list_concat(ledger_take_crashed(MyDatabaseId, &known), guilty);
	{
		Datum	   *ids = palloc(sizeof(Datum) * Max(list_length(crashed), 1));
		Datum	   *claims = palloc(sizeof(Datum) * list_length(dead));
		int			n = 0;

		foreach(lc, crashed)
			ids[n++] = Int64GetDatum(*(int64 *) lfirst(lc));
		/* no ledger after a crash: charge every job that had started */
		guilty_array = known ? construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL,
											   TYPALIGN_DOUBLE) : NULL;
		n = 0;
		foreach(lc, dead)
			claims[n++] = Int64GetDatum(*(int64 *) lfirst(lc));
		queue_release(cat, construct_array(claims, n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE),
					  NULL, guilty_array,
					  "its executor stopped before the job finished; it runs again",
					  &released);
	}
	end();

	foreach(lc, released.finished)
		slots_job_done(*(int64 *) lfirst(lc));
	if (released.released > 0)
	{
		ereport(LOG,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg_plural("%d job whose executor had gone was given back",
							   "%d jobs whose executor had gone were given back",
							   released.released, released.released),
				 errdetail("They run again; a job that was running when its executor died of it is charged a crash, and fails after chancy.max_crashes (%d).",
						   chancy_max_crashes)));
		slots_nudge_executors(NULL);
	}
}

/*
 * reap
 *		Look at the executors of this database whose worker stopped: their
 *		jobs go back (recover_jobs), then their slots are freed.
 */
static void
reap(void)
{
	List	   *gone = NIL;
	List	   *guilty = NIL;
	ListCell   *lc;

	for (int i = 0; i < chancy_max_executors; i++)
	{
		pid_t		pid;

		if (handles[i] == NULL ||
			GetBackgroundWorkerPid(handles[i], &pid) != BGWH_STOPPED)
			continue;
		gone = lappend_int(gone, i);
	}
	if (gone == NIL)
		return;
	foreach(lc, gone)
	{
		int64		job = ledger_slot_executing(lfirst_int(lc), MyDatabaseId);

		if (job != 0)
		{
			int64	   *boxed = palloc(sizeof(int64));

			*boxed = job;
			guilty = lappend(guilty, boxed);
		}
	}
	recover_jobs(guilty);
	foreach(lc, gone)
	{
		int			i = lfirst_int(lc);

		(void) slots_executor_reap(i, handle_generations[i]);
		pfree(handles[i]);
		handles[i] = NULL;
	}
}

/*
 * start_executor
 *		Take a free executor slot for a queue and start its executor.
 */
static bool
start_executor(const char *queue)
{
	uint64		generation;
	int			slot = slots_executor_assign(queue, &generation);

	if (slot < 0)
	{
		/* an executor that just left (to be replaced) frees its slot once
		 * reaped, in a moment: that is no news */
		if (slots_executors_exited())
			return false;
		if (!reported_no_slots)
			ereport(LOG,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("no executor slot left for queue \"%s\"", queue),
					 errdetail("All %d executors allowed by chancy.max_executors are in use.",
							   chancy_max_executors),
					 errhint("Raise chancy.max_executors (and max_worker_processes), or lower the concurrency of queues.")));
		reported_no_slots = true;
		return false;
	}
	handle_generations[slot] = generation;
	if (!slots_start_worker(WORKER_EXECUTOR, psprintf("chancy executor %s", queue),
							slot, generation, &handles[slot]))
	{
		if (!reported_no_slots)
			ereport(LOG,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("could not start an executor for queue \"%s\"", queue),
					 errhint("No background worker slot is free: raise max_worker_processes.")));
		reported_no_slots = true;
		handles[slot] = NULL;
		slots_executor_start_failed(slot, generation);
		return false;
	}
	reported_no_slots = false;
	return true;
}

/*
 * reconcile
 *		Make the executors match chancy_queues: as many alive per queue as
 *		its concurrency, never more, counting those still finishing a job on
 *		their way out; keep an executor asked to stop rather than start one.
 *		False if an executor wanted could not be started.
 */
static bool
reconcile(void)
{
	int			nqueues;
	QueueRow   *queues = read_queues(&nqueues);
	List	   *names = NIL;
	int			total = 0;
	int			elsewhere;

	for (int q = 0; q < nqueues; q++)
	{
		names = lappend(names, queues[q].name);
		total += queues[q].concurrency;
	}
	slots_db_declare(total);
	slots_executors_stop_except(names);

	elsewhere = slots_db_declared_elsewhere();
	if (total + elsewhere > chancy_max_executors)
	{
		int			short_by = total + elsewhere - chancy_max_executors;

		if (short_by != reported_budget)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too few executors for the queues of database \"%s\"",
							my_dbname),
					 errdetail_plural("Its queues need %d executor; %d are left to them of the %d of chancy.max_executors.",
									  "Its queues need %d executors; %d are left to them of the %d of chancy.max_executors.",
									  total, total, Max(chancy_max_executors - elsewhere, 0),
									  chancy_max_executors),
					 errhint("Raise chancy.max_executors (and max_worker_processes), or lower the concurrency of queues.")));
		reported_budget = short_by;
	}
	else
		reported_budget = -1;

	for (int q = 0; q < nqueues; q++)
	{
		int			running,
					stopping,
					leaving;
		int			want = queues[q].concurrency;

		slots_executors_count(queues[q].name, &running, &stopping, &leaving);
		for (; running > want; running--)
			if (!slots_executor_stop_one(queues[q].name))
				break;
		for (; running < want && stopping > 0; running++, stopping--)
			if (!slots_executor_unstop_one(queues[q].name))
				break;
	}

	/*
	 * Start the executors missing, one per queue and round: when the slots
	 * run out (queues of chancy.queues over the budget), every queue has
	 * had its turn rather than the first ones all they ask.
	 */
	for (int round = 1;; round++)
	{
		bool		wanting = false;

		for (int q = 0; q < nqueues; q++)
		{
			int			running,
						stopping,
						leaving;
			int			alive;

			slots_executors_count(queues[q].name, &running, &stopping, &leaving);
			alive = running + stopping + leaving;
			if (alive >= queues[q].concurrency)
				continue;
			wanting = true;
			if (alive < round && !start_executor(queues[q].name))
				return false;
		}
		if (!wanting)
			break;
	}
	return true;
}

/*
 * sweep_cancels
 *		Cancels asked of claimed jobs, committed in a way that did not tell
 *		their executor (COMMIT PREPARED): tell it now.
 */
static void
sweep_cancels(void)
{
	List	   *pairs;
	ListCell   *lc;

	(void) begin();
	pairs = queue_cancel_requests(chancy_catalog(chancy_nsp));
	end();
	for (lc = list_head(pairs); lc != NULL; lc = lnext(pairs, lnext(pairs, lc)))
		slots_cancel_job(*(int64 *) lfirst(lnext(pairs, lc)), *(int64 *) lfirst(lc));
}

/*
 * prune_if_due
 *		Delete finished jobs past their time, when jobs have finished since
 *		the last prune (at most every PRUNE_EVERY_MS) or the oldest one left
 *		is due.  Returns how long until it may be due next, in ms.
 */
static long
prune_if_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		done = slots_jobs_done();
	bool		worked = done != pruned_at_jobs;
	long		wait_ms;

	if ((worked && TimestampDifferenceExceeds(pruned_at, now, PRUNE_EVERY_MS)) ||
		(prune_due != 0 && now >= prune_due))
	{
		(void) queue_prune(begin(), &prune_due);
		end();
		pruned_at = now;
		pruned_at_jobs = done;
		worked = false;
	}
	if (!worked)
	{
		/* idle: the next jobs that finish wake us (and one that just did) */
		slots_db_wake_on_finish();
		worked = slots_jobs_done() != pruned_at_jobs;
	}
	/*
	 * Counted from the last prune, not from now: a wakeup meanwhile (a push,
	 * a finish) must not put the prune off again.
	 */
	if (worked)
		wait_ms = PRUNE_EVERY_MS - Min(PRUNE_EVERY_MS,
									   TimestampDifferenceMilliseconds(pruned_at, now));
	else
		wait_ms = FALLBACK_SLEEP_MS;
	if (prune_due != 0)
		wait_ms = Min(wait_ms, TimestampDifferenceMilliseconds(now, prune_due) + 1);
	return Max(wait_ms, 1);
}

/*
 * recover_if_due
 *		Every STRAY_CLAIMS_EVERY_MS, give back the jobs whose claim no live
 *		executor holds.  An executor that exits is reaped at once, and the
 *		claims a supervisor finds at its start are given back then; this
 *		finds those that came another way since, such as the jobs that were
 *		running when a dump restored into a served database was taken.
 *		Returns how long until it is due, in ms.
 */
static long
recover_if_due(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(recovered_at, now, STRAY_CLAIMS_EVERY_MS))
	{
		recover_jobs(NIL);
		/* and jobs parked on keys shared memory lost (a restart) */
		flow_find_parked(begin());
		end();
		recovered_at = now;
	}
	return Max(STRAY_CLAIMS_EVERY_MS - TimestampDifferenceMilliseconds(recovered_at, now), 1);
}

/*
 * release_parked
 *		Release jobs parked by flow control that their keys let start now
 *		(flow.c), in a transaction of its own.  Returns when to look again
 *		(-1: when woken).
 */
static long
release_parked(void)
{
	List	   *released;
	long		wait_ms;

	released = flow_unpark(begin(), &wait_ms);
	end();
	flow_unparked(released);
	return wait_ms;
}

/*
 * keep_stats
 *		Count this database's gauges from the table if that is asked
 *		(stats.c), and write the history of the minute that ended.  Returns
 *		when to look again, in ms.
 */
static long
keep_stats(void)
{
	bool		counted = stats_count_gauges(begin());
	long		wait_ms;

	end();
	wait_ms = stats_history_if_due(begin());
	end();
	/* another database's count was in progress: soon again */
	return counted ? wait_ms : Min(wait_ms, STATS_RETRY_MS);
}

/*
 * chancy_supervisor_main
 *		Entry point of a supervisor; arg is its database slot.
 */
void
chancy_supervisor_main(Datum arg)
{
	uint64		generation = slots_worker_generation();
	int			slot = DatumGetInt32(arg);
	Oid			dboid;
	char	   *version = NULL;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	dboid = slots_db_database(slot, generation);
	if (!OidIsValid(dboid))
		proc_exit(0);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	if (!slots_db_attach(slot, generation))
		proc_exit(0);
	StartTransactionCommand();
	my_dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	CommitTransactionCommand();
	before_shmem_exit(supervisor_detach, (Datum) 0);
	pgstat_report_appname("chancy supervisor");
	handles = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(BackgroundWorkerHandle *) * chancy_max_executors);
	handle_generations = MemoryContextAllocZero(TopMemoryContext,
												sizeof(uint64) * chancy_max_executors);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "chancy supervisor",
									 ALLOCSET_DEFAULT_SIZES);

	/* executors left by a previous supervisor of this database go first */
	slots_executors_stop_all(true);
	for (int tries = 0; tries < 3000 && slots_executors_alive(); tries++)
	{
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}

	switch (chancy_extension(&chancy_nsp, &version))
	{
		case EXTENSION_MISSING:
			leave();
			break;
		case EXTENSION_OLD:
			wait_for_update(version);
			break;
		case EXTENSION_READY:
			break;
	}
	(void) slots_db_say_missing(false);
	MemoryContextSwitchTo(loop_cxt);
	/* no executor of this database runs: its keys start over (flow.c) */
	if (!slots_executors_alive())
		flow_forget_database(MyDatabaseId);
	recover_jobs(NIL);
	slots_executors_free_exited();
	declare_configured_queues();
	/* gauges a previous supervisor left uncounted (it died counting) */
	if (!stats_gauges_valid())
		stats_invalidate_gauges(MyDatabaseId);

	for (;;)
	{
		long		wait_ms = FALLBACK_SLEEP_MS;

		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		ResetLatch(MyLatch);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			declare_configured_queues();
		}
		if (chancy_extension(&chancy_nsp, &version) != EXTENSION_READY)
			leave();

		PG_TRY();
		{
			bool		all_started;
			long		fire_ms;
			long		flow_ms;

			reap();
			all_started = reconcile();
			sweep_cancels();
			/*
			 * Due schedules a batch at a time, each committed; after a few,
			 * the rest of the loop has its turn.
			 */
			for (int batches = 0; batches < FIRE_BATCHES_PER_TURN; batches++)
			{
				fire_ms = schedule_fire_due(begin());
				end();
				CHECK_FOR_INTERRUPTS();
				if (fire_ms != 0)
					break;
			}
			wait_ms = Min(recover_if_due(), prune_if_due());
			flow_ms = release_parked();
			if (flow_ms >= 0)
				wait_ms = Min(wait_ms, flow_ms);
			wait_ms = Min(wait_ms, keep_stats());
			if (fire_ms >= 0)
				wait_ms = Min(wait_ms, fire_ms);
			if (!all_started)
				wait_ms = Min(wait_ms, START_RETRY_MS);
		}
		PG_CATCH();
		{
			bool		gone;

			/*
			 * Report and go on: exiting would stop every executor here.
			 * Unless chancy was dropped meanwhile: then the error is only
			 * its tables missing, and the supervisor leaves.
			 */
			HOLD_INTERRUPTS();
			gone = catalog_recover_error(&chancy_nsp) != EXTENSION_READY;
			RESUME_INTERRUPTS();
			if (gone)
				leave();
			wait_ms = 1000;
		}
		PG_END_TRY();

		pgstat_report_stat(true);
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
	}
}
