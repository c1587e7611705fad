/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: a static background worker, one per cluster, that keeps
 *	  one supervisor running in each database of chancy.database that has
 *	  the extension.
 *
 * It is connected to no database (it reads only pg_database).  It wakes when
 * a supervisor starts or stops, on SIGHUP, when CREATE or ALTER EXTENSION
 * chancy commits anywhere, after DROP DATABASE and the like, and once a
 * minute.  On a standby it waits for promotion.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "chancy_internal.h"

/* how often the launcher looks again without being woken */
#define RECHECK_MS 60000
/* a supervisor that stopped is not restarted sooner than this */
#define RESTART_DELAY_MS 1000
/* a standby is looked at this often for its promotion */
#define PROMOTION_CHECK_MS 1000

/* What the launcher knows of each database slot, besides shared memory. */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle; /* of the supervisor it started */
	uint64		generation;
	TimestampTz started;
} LauncherSlot;

static LauncherSlot slots[CHANCY_MAX_DATABASES];
static MemoryContext reported_cxt = NULL;	/* reset on reload */
static List *reported = NIL;	/* names logged since the last reload */

/*
 * chancy_register_launcher
 *		Register the launcher (from _PG_init).  It is restarted if it dies,
 *		and starts on a hot standby too, to say why nothing runs there.
 */
void
chancy_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "chancy", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "chancy_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "chancy launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "chancy launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* Log something about database name once (until the next reload). */
static bool
first_report(const char *what, const char *name)
{
	char	   *key = psprintf("%s %s", what, name);
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, reported)
		if (strcmp(strVal(lfirst(lc)), key) == 0)
			return false;
	old = MemoryContextSwitchTo(reported_cxt);
	reported = lappend(reported, makeString(pstrdup(key)));
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * database_oid
 *		The OID of a database by name, or InvalidOid.  The launcher has no
 *		database, so it cannot use pg_database's indexes: a heap scan.
 */
static Oid
database_oid(const char *name)
{
	Relation	rel = table_open(DatabaseRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, NULL);
	HeapTuple	tup;
	Oid			dboid = InvalidOid;

	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), name) == 0)
		{
			dboid = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return dboid;
}

/*
 * wanted_databases
 *		The OIDs of the databases of chancy.database that exist.  A listed
 *		database that does not exist is logged once (until the next reload).
 */
static List *
wanted_databases(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *copy = pstrdup(chancy_databases);
	List	   *names;
	List	   *oids = NIL;
	ListCell   *lc;

	if (!SplitIdentifierString(copy, ',', &names))
		return NIL;				/* the GUC check hook prevents this */

	StartTransactionCommand();
	foreach(lc, names)
	{
		char	   *name = lfirst(lc);
		Oid			dboid = database_oid(name);

		if (OidIsValid(dboid))
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			oids = list_append_unique_oid(oids, dboid);
			MemoryContextSwitchTo(old);
		}
		else if (first_report("missing", name))
			ereport(LOG,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("database \"%s\" listed in chancy.database does not exist",
							name),
					 errhint("Create the database and run CREATE EXTENSION chancy in it, or remove it from chancy.database.")));
	}
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return oids;
}

/*
 * worker_gone
 *		Has the supervisor this launcher started in slot i stopped (or was
 *		none started)?
 */
static bool
worker_gone(int i)
{
	pid_t		pid;

	if (slots[i].handle == NULL)
		return true;
	if (GetBackgroundWorkerPid(slots[i].handle, &pid) != BGWH_STOPPED)
		return false;
	pfree(slots[i].handle);
	slots[i].handle = NULL;
	return true;
}

/*
 * start_supervisor
 *		Start a supervisor in database slot i.  False if no background
 *		worker slot was free: the launcher tries again soon, as nothing
 *		wakes it when one frees.
 */
static bool
start_supervisor(int i, Oid dboid)
{
	slots[i].generation = slots_db_start(i);
	slots[i].started = GetCurrentTimestamp();
	if (!slots_start_worker(WORKER_SUPERVISOR, "chancy supervisor", i,
							slots[i].generation, &slots[i].handle))
	{
		ereport(LOG,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a supervisor for database %u", dboid),
				 errhint("Raise max_worker_processes.")));
		slots[i].handle = NULL;
		slots_db_start_failed(i, slots[i].generation);
		return false;
	}
	return true;
}

/*
 * reconcile
 *		Start the supervisors that should run, stop those that should not.
 *		Returns how long to sleep at most.
 */
static long
reconcile(bool recheck)
{
	List	   *wanted = wanted_databases();
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = RECHECK_MS;
	ListCell   *lc;

	/* databases no longer wanted: stop their supervisors, free their slots */
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
	{
		Oid			dboid;
		SlotState	state = slots_db_state(i, &dboid);

		if (state == SLOT_FREE || list_member_oid(wanted, dboid))
			continue;
		if (state == SLOT_RUNNING)
			slots_db_stop(i);
		else if (state == SLOT_STARTING && worker_gone(i))
			slots_db_start_failed(i, slots[i].generation);
		else if (state == SLOT_IDLE || state == SLOT_NO_EXTENSION)
		{
			slots_db_release(i);
			continue;
		}
		sleep_ms = Min(sleep_ms, RESTART_DELAY_MS);
	}

	foreach(lc, wanted)
	{
		Oid			dboid = lfirst_oid(lc);
		int			i = slots_db_find(dboid);
		SlotState	state;
		bool		started = true;

		if (i < 0)
			i = slots_db_assign(dboid);
		if (i < 0)
		{
			if (first_report("too many", psprintf("%u", dboid)))
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("database %u is not served", dboid),
						 errdetail("chancy serves at most %d databases.",
								   CHANCY_MAX_DATABASES)));
			continue;
		}
		state = slots_db_state(i, NULL);
		if (state == SLOT_STARTING && worker_gone(i))
		{
			/* it stopped before attaching: try again later */
			slots_db_start_failed(i, slots[i].generation);
			state = SLOT_IDLE;
		}
		if (state == SLOT_NO_EXTENSION &&
			(recheck || slots_db_missed_extension(i)))
			started = start_supervisor(i, dboid);
		else if (state == SLOT_IDLE && worker_gone(i))
		{
			if (slots[i].started != 0 &&
				!TimestampDifferenceExceeds(slots[i].started, now, RESTART_DELAY_MS))
				started = false;
			else
				started = start_supervisor(i, dboid);
		}
		if (!started)
			sleep_ms = Min(sleep_ms, RESTART_DELAY_MS);
	}
	return sleep_ms;
}

/*
 * wait_for_promotion
 *		On a standby no job may run (nothing can be written): say so, and
 *		wait until the server is promoted.  There is no wake-up for the end
 *		of recovery, so this looks every PROMOTION_CHECK_MS.
 */
static void
wait_for_promotion(void)
{
	if (!RecoveryInProgress())
		return;
	slots_set_standby(true);
	ereport(LOG,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("chancy runs no job on this standby"),
			 errdetail("Jobs run after the server is promoted.")));
	while (RecoveryInProgress())
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 PROMOTION_CHECK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
	slots_set_standby(false);
	ereport(LOG,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("chancy runs jobs now that the server was promoted")));
}

/*
 * chancy_launcher_main
 *		Entry point of the launcher.
 */
void
chancy_launcher_main(Datum arg)
{
	TimestampTz last_recheck = GetCurrentTimestamp();
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("chancy launcher");
	slots_launcher_attach();

	wait_for_promotion();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "chancy launcher",
									 ALLOCSET_DEFAULT_SIZES);
	reported_cxt = AllocSetContextCreate(TopMemoryContext, "chancy launcher reports",
										 ALLOCSET_SMALL_SIZES);

	for (;;)
	{
		bool		recheck;
		long		sleep_ms;

		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_cxt);
		/* reset before looking: a wake-up from now on is not lost */
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			MemoryContextReset(reported_cxt);
			reported = NIL;
		}

		recheck = TimestampDifferenceExceeds(last_recheck, GetCurrentTimestamp(),
											 RECHECK_MS);
		if (recheck)
			last_recheck = GetCurrentTimestamp();
		MemoryContextSwitchTo(loop_cxt);
		sleep_ms = reconcile(recheck);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
	}
}
