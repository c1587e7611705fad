/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  How chancy's processes learn that something happened, without polling:
 *	  latches set when a transaction commits (a push wakes idle executors of
 *	  its queue; a change to the queues wakes the supervisor; a new chancy
 *	  extension wakes the launcher), a condition variable per group of jobs
 *	  for chancy_wait, and a utility hook that moves chancy's workers out of
 *	  the way of DROP DATABASE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include <signal.h>

#include "chancy_internal.h"

/* how long DROP DATABASE waits for chancy's workers to leave */
#define LEAVE_DATABASE_TIMEOUT_MS 10000

/* A queue that received jobs in the current transaction. */
typedef struct PushedQueue
{
	char		queue[NAMEDATALEN];
	int			njobs;
} PushedQueue;

static List *pushed_queues = NIL;	/* in TopMemoryContext */
static List *cancelled_jobs = NIL;	/* running jobs cancelled, ditto */
static bool wake_supervisor = false;
static bool wake_launcher = false;
static bool callback_registered = false;
static ProcessUtility_hook_type prev_utility_hook = NULL;

/*
 * wake_executors
 *		Set the latches of up to njobs idle executors of a queue of this
 *		database.  An executor is idle from before it looks for work until it
 *		has found some, so a push that commits in between is never missed.
 */
static void
wake_executors(const char *queue, int njobs)
{
	LWLockAcquire(chancy_shared->lock, LW_SHARED);
	for (int i = 0; i < chancy_shared->nexecutors && njobs > 0; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid == MyDatabaseId && ex->latch != NULL && ex->idle &&
			strcmp(ex->queue, queue) == 0)
		{
			SetLatch(ex->latch);
			njobs--;
		}
	}
	LWLockRelease(chancy_shared->lock);
}

/*
 * wake_database_supervisor
 *		Set the latch of this database's supervisor.
 */
static void
wake_database_supervisor(void)
{
	LWLockAcquire(chancy_shared->lock, LW_SHARED);
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
		if (chancy_shared->dbs[i].dboid == MyDatabaseId &&
			chancy_shared->dbs[i].latch != NULL)
			SetLatch(chancy_shared->dbs[i].latch);
	LWLockRelease(chancy_shared->lock);
}

/*
 * interrupt_job
 *		Interrupt the executor of this database that runs a job (cancelled):
 *		it is told which job, then sent SIGINT like a query cancel.
 */
static void
interrupt_job(int64 job_id)
{
	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid == MyDatabaseId && ex->job_id == job_id && ex->pid != 0)
		{
			ex->cancel_job = job_id;
			kill(ex->pid, SIGINT);
		}
	}
	LWLockRelease(chancy_shared->lock);
}

/*
 * wakeup_xact_callback
 *		At commit, wake whom the transaction's work concerns; at abort,
 *		forget it.
 */
static void
wakeup_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT)
		return;

	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		foreach(lc, pushed_queues)
		{
			PushedQueue *pq = lfirst(lc);

			wake_executors(pq->queue, pq->njobs);
		}
		foreach(lc, cancelled_jobs)
		{
			interrupt_job(*(int64 *) lfirst(lc));
			wakeup_job_done(*(int64 *) lfirst(lc));
		}
		if (wake_supervisor)
			wake_database_supervisor();
		if (wake_launcher && chancy_shared->launcher_latch)
		{
			chancy_shared->recheck = true;
			SetLatch(chancy_shared->launcher_latch);
		}
	}
	list_free_deep(pushed_queues);
	pushed_queues = NIL;
	list_free_deep(cancelled_jobs);
	cancelled_jobs = NIL;
	wake_supervisor = wake_launcher = false;
}

/* Register the transaction callback, once per backend. */
static void
register_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wakeup_xact_callback, NULL);
		callback_registered = true;
	}
}

/*
 * wakeup_queue_at_commit
 *		The current transaction pushed njobs jobs to queue: wake that many
 *		idle executors of the queue when it commits.
 */
void
wakeup_queue_at_commit(const char *queue, int njobs)
{
	ListCell   *lc;
	PushedQueue *pq;
	MemoryContext old;

	register_callback();
	foreach(lc, pushed_queues)
	{
		pq = lfirst(lc);
		if (strncmp(pq->queue, queue, NAMEDATALEN - 1) == 0)
		{
			pq->njobs = Min((int64) pq->njobs + njobs, INT_MAX);
			return;
		}
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	pq = palloc0(sizeof(PushedQueue));
	strlcpy(pq->queue, queue, NAMEDATALEN);
	pq->njobs = njobs;
	pushed_queues = lappend(pushed_queues, pq);
	MemoryContextSwitchTo(old);
}

/*
 * wakeup_supervisor_at_commit
 *		The current transaction changed what this database's supervisor
 *		acts on (queues, the extension itself): wake it at commit.
 */
void
wakeup_supervisor_at_commit(void)
{
	register_callback();
	wake_supervisor = true;
}

/*
 * wakeup_cancel_at_commit
 *		The current transaction cancelled a job: when it commits, interrupt
 *		the executor running it, if any, and wake its waiters.
 */
void
wakeup_cancel_at_commit(int64 job_id)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	int64	   *id = palloc(sizeof(int64));

	*id = job_id;
	cancelled_jobs = lappend(cancelled_jobs, id);
	MemoryContextSwitchTo(old);
	register_callback();
}

/*
 * wakeup_job_done
 *		A job reached a final state (committed): wake its waiters.
 */
void
wakeup_job_done(int64 job_id)
{
	ConditionVariableBroadcast(&chancy_shared->job_done[(uint64) job_id % CHANCY_WAIT_CVS]);
}

/*
 * leave_database
 *		Before DROP DATABASE: stop chancy's workers in that database, keep
 *		the launcher from restarting them, and wait until they are gone (the
 *		drop refuses to run while other sessions are connected).
 */
static ChancyDatabase *
leave_database(Oid dboid)
{
	ChancyDatabase *db = NULL;
	TimestampTz deadline;

	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
		if (chancy_shared->dbs[i].dboid == dboid)
		{
			db = &chancy_shared->dbs[i];
			db->blocked = true;
			if (db->pid != 0)
				kill(db->pid, SIGTERM);
		}
	for (int i = 0; i < chancy_shared->nexecutors; i++)
		if (chancy_shared->executors[i].dboid == dboid &&
			chancy_shared->executors[i].pid != 0)
			kill(chancy_shared->executors[i].pid, SIGTERM);
	LWLockRelease(chancy_shared->lock);
	if (db == NULL)
		return NULL;

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   LEAVE_DATABASE_TIMEOUT_MS);
	while (GetCurrentTimestamp() < deadline)
	{
		bool		gone = true;

		LWLockAcquire(chancy_shared->lock, LW_SHARED);
		gone = db->pid == 0;
		for (int i = 0; i < chancy_shared->nexecutors; i++)
			if (chancy_shared->executors[i].dboid == dboid &&
				chancy_shared->executors[i].pid != 0)
				gone = false;
		LWLockRelease(chancy_shared->lock);
		if (gone)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return db;
}

/*
 * chancy_utility_hook
 *		Watch the utility commands that concern chancy's workers: DROP
 *		DATABASE (the workers must leave first), CREATE EXTENSION chancy (the
 *		launcher may start a supervisor there) and DROP EXTENSION chancy (the
 *		supervisor stops its executors and leaves).
 */
static void
chancy_utility_hook(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	ChancyDatabase *left = NULL;

	if (IsA(parsetree, DropdbStmt))
	{
		Oid			dboid = get_database_oid(((DropdbStmt *) parsetree)->dbname, true);

		/* only for a drop that may go ahead: not for anyone to stop workers */
		if (OidIsValid(dboid) && pg_database_ownercheck(dboid, GetUserId()) &&
			!IsTransactionBlock())
			left = leave_database(dboid);
	}
	else if (IsA(parsetree, CreateExtensionStmt) &&
			 strcmp(((CreateExtensionStmt *) parsetree)->extname, "chancy") == 0)
	{
		register_callback();
		wake_launcher = true;
	}
	else if (IsA(parsetree, DropStmt) &&
			 ((DropStmt *) parsetree)->removeType == OBJECT_EXTENSION)
	{
		ListCell   *lc;

		foreach(lc, ((DropStmt *) parsetree)->objects)
			if (strcmp(strVal(lfirst(lc)), "chancy") == 0)
				wakeup_supervisor_at_commit();
	}

	PG_TRY();
	{
		if (prev_utility_hook)
			prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
							  queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		/* dropped or not, the launcher decides again */
		if (left)
		{
			left->blocked = false;
			if (chancy_shared->launcher_latch)
				SetLatch(chancy_shared->launcher_latch);
		}
	}
	PG_END_TRY();
}

/* Install the utility hook (from _PG_init). */
void
chancy_wakeup_init(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = chancy_utility_hook;
}
