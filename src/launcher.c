/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: a static background worker, one per cluster, that keeps
 *	  one supervisor running in each database of chancy.database that has
 *	  the extension.
 *
 * It is connected to no database (it reads only pg_database).  It wakes when
 * a supervisor starts or stops, on SIGHUP, when CREATE EXTENSION chancy
 * commits anywhere, after a DROP DATABASE, and once a minute.
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

#include <signal.h>

#include "chancy_internal.h"

/* how often databases without the extension are looked at again */
#define RECHECK_MS 60000
/* a supervisor that stopped is not restarted sooner than this */
#define RESTART_DELAY_MS 1000

/* What the launcher knows of each database slot, besides shared memory. */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle; /* of the supervisor it started */
	TimestampTz started;
	bool		retry;			/* look again even if it had no extension */
} LauncherSlot;

static LauncherSlot slots[CHANCY_MAX_DATABASES];
static MemoryContext reported_cxt = NULL;	/* reset on reload */
static List *reported_missing = NIL;	/* names logged as not existing */

/*
 * chancy_start_worker
 *		Register a dynamic worker (supervisor or executor) for a slot; its
 *		start is notified to this process.  False if no worker slot is free.
 */
bool
chancy_start_worker(const char *function, const char *name, int slot,
					uint64 generation, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "chancy", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, strcmp(function, "chancy_executor_main") == 0 ?
			"chancy executor" : "chancy supervisor", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slot);
	memcpy(worker.bgw_extra, &generation, sizeof(generation));
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/*
 * chancy_register_launcher
 *		Register the launcher (from _PG_init).  It is restarted if it dies.
 */
void
chancy_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "chancy", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "chancy_launcher_main", BGW_MAXLEN);
	/* on a hot standby too, to say why nothing runs there */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	strlcpy(worker.bgw_name, "chancy launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "chancy launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
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
			continue;
		}
		if (list_member(reported_missing, makeString(name)))
			continue;
		ereport(LOG,
				(errmsg("chancy: database \"%s\" listed in chancy.database does not exist",
						name),
				 errhint("Create the database and run CREATE EXTENSION chancy in it, or remove it from chancy.database.")));
		{
			MemoryContext old = MemoryContextSwitchTo(reported_cxt);

			reported_missing = lappend(reported_missing, makeString(pstrdup(name)));
			MemoryContextSwitchTo(old);
		}
	}
	CommitTransactionCommand();
	return oids;
}

/*
 * supervisor_running
 *		Is a supervisor running in (or starting for) database slot i?
 */
static bool
supervisor_running(int i)
{
	pid_t		pid;

	if (chancy_shared->dbs[i].pid != 0)
		return true;
	if (slots[i].handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(slots[i].handle, &pid) != BGWH_STOPPED)
		return true;
	pfree(slots[i].handle);
	slots[i].handle = NULL;
	return false;
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
		ChancyDatabase *db = &chancy_shared->dbs[i];

		if (!OidIsValid(db->dboid) || list_member_oid(wanted, db->dboid))
			continue;
		if (supervisor_running(i))
		{
			if (db->pid != 0)
				kill(db->pid, SIGTERM);
			sleep_ms = Min(sleep_ms, RESTART_DELAY_MS);
			continue;
		}
		LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
		db->dboid = InvalidOid;
		db->no_extension = false;
		LWLockRelease(chancy_shared->lock);
	}

	foreach(lc, wanted)
	{
		Oid			dboid = lfirst_oid(lc);
		int			free_slot = -1;
		int			i;
		ChancyDatabase *db;

		for (i = 0; i < CHANCY_MAX_DATABASES; i++)
		{
			if (chancy_shared->dbs[i].dboid == dboid)
				break;
			if (free_slot < 0 && !OidIsValid(chancy_shared->dbs[i].dboid) &&
				!supervisor_running(i))
				free_slot = i;
		}
		if (i == CHANCY_MAX_DATABASES)
		{
			if (free_slot < 0)
			{
				ereport(WARNING,
						(errmsg("chancy serves at most %d databases; database %u is skipped",
								CHANCY_MAX_DATABASES, dboid)));
				continue;
			}
			i = free_slot;
			LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
			chancy_shared->dbs[i].dboid = dboid;
			chancy_shared->dbs[i].no_extension = false;
			chancy_shared->dbs[i].blocked = false;
			LWLockRelease(chancy_shared->lock);
		}
		db = &chancy_shared->dbs[i];

		if (recheck)
			slots[i].retry = true;
		if (supervisor_running(i) || db->blocked ||
			(db->no_extension && !slots[i].retry))
			continue;
		/* a supervisor that left because chancy was missing did not fail */
		if (slots[i].started != 0 && !db->no_extension &&
			!TimestampDifferenceExceeds(slots[i].started, now, RESTART_DELAY_MS))
		{
			sleep_ms = Min(sleep_ms, RESTART_DELAY_MS);
			continue;
		}

		LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
		db->generation++;
		LWLockRelease(chancy_shared->lock);
		slots[i].started = now;
		slots[i].retry = false;
		if (!chancy_start_worker("chancy_supervisor_main", "chancy supervisor", i,
								 db->generation, &slots[i].handle))
		{
			ereport(LOG,
					(errmsg("chancy: could not start a supervisor for database %u", dboid),
					 errhint("Raise max_worker_processes.")));
			slots[i].handle = NULL;
			sleep_ms = Min(sleep_ms, RESTART_DELAY_MS * 10);
		}
	}
	return sleep_ms;
}

/*
 * wait_for_promotion
 *		On a standby no job may run (nothing can be written): say so, and
 *		wait until the server is promoted.  There is no wake-up for the end
 *		of recovery, so this looks once a second.
 */
static void
wait_for_promotion(void)
{
	if (!RecoveryInProgress())
		return;
	chancy_shared->standby = true;
	ereport(LOG,
			(errmsg("chancy: this server is a standby; jobs will run after it is promoted")));
	while (RecoveryInProgress())
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
	chancy_shared->standby = false;
	ereport(LOG, (errmsg("chancy: the server was promoted; jobs run now")));
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

	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	chancy_shared->launcher_pid = MyProcPid;
	chancy_shared->launcher_latch = MyLatch;
	LWLockRelease(chancy_shared->lock);

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
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			MemoryContextReset(reported_cxt);
			reported_missing = NIL;
		}
		ResetLatch(MyLatch);

		recheck = chancy_shared->recheck ||
			TimestampDifferenceExceeds(last_recheck, GetCurrentTimestamp(), RECHECK_MS);
		if (recheck)
		{
			chancy_shared->recheck = false;
			last_recheck = GetCurrentTimestamp();
		}
		MemoryContextSwitchTo(loop_cxt);
		sleep_ms = reconcile(recheck);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
	}
}
