/*-------------------------------------------------------------------------
 *
 * slots.c
 *	  chancy's shared memory: a slot per database served (and its
 *	  supervisor) and per executor, the state each slot is in, and the
 *	  signals and latches by which processes reach each other.
 *
 * This file is the only writer of the slots.  A slot's state changes only
 * through the functions below, each of which asserts the state it leaves
 * (src/README.md draws the two state machines, and says which event wakes
 * whom).  chancy_shared->lock protects the assignment and state of every
 * slot; an executor's per-job fields are under its own spinlock, since they
 * change with every job and only that executor and the backends cancelling
 * its job touch them.
 *
 * A slot is given out with a generation number that the started worker
 * checks when it attaches, so a start requested by a process that has since
 * gone, or for a slot given out again meanwhile, is void.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

StaticAssertDecl(sizeof(ChancyWorkerParams) <= BGW_EXTRALEN,
				 "ChancyWorkerParams must fit in bgw_extra");

static ChancyShared *chancy_shared = NULL;

#ifdef CHANCY_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* the slot of this process, once attached */
static ChancyDatabase *my_db = NULL;
static ChancyExecutor *my_executor = NULL;
/* in an executor: the slot of its database's supervisor */
static ChancyDatabase *executor_db = NULL;

#define LOCK_EXCLUSIVE() LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE)
#define LOCK_SHARED() LWLockAcquire(chancy_shared->lock, LW_SHARED)
#define UNLOCK() LWLockRelease(chancy_shared->lock)

/* Does an executor in this state have (or is about to have) a process? */
#define EXECUTOR_ALIVE(s) \
	((s) == SLOT_STARTING || (s) == SLOT_RUNNING || (s) == SLOT_STOPPING || \
	 (s) == SLOT_LEAVING)

/* Size of chancy's shared memory, but for the ledger's */
static Size
slots_shmem_size(void)
{
	return add_size(offsetof(ChancyShared, executors),
					mul_size(sizeof(ChancyExecutor), chancy_max_executors));
}

/* Ask for chancy's shared memory and its lock. */
static void
slots_shmem_request(void)
{
#ifdef CHANCY_HAS_SHMEM_REQUEST_HOOK
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(add_size(add_size(add_size(slots_shmem_size(),
													  ledger_shmem_size()),
											 flow_shmem_size()),
									stats_shmem_size()));
	/* the slots', flow control's (flow.c) and the statistics' (stats.c) */
	RequestNamedLWLockTranche("chancy", 3);
}

/*
 * slots_shmem_startup
 *		Create (or, at a restart after a crash, create again) chancy's shared
 *		memory, and read what the ledger kept of the crash.
 */
static void
slots_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	chancy_shared = ShmemInitStruct("chancy", slots_shmem_size(), &found);
	if (!found)
	{
		memset(chancy_shared, 0, slots_shmem_size());
		chancy_shared->lock = &(GetNamedLWLockTranche("chancy"))->lock;
		/* claim tokens never repeat, not even across restarts */
		pg_atomic_init_u64(&chancy_shared->claims,
						   (uint64) GetCurrentTimestamp() << 8);
		for (int i = 0; i < CHANCY_WAIT_CVS; i++)
			ConditionVariableInit(&chancy_shared->job_done[i]);
		for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
			pg_atomic_init_u32(&chancy_shared->dbs[i].wake_on_finish, 0);
		chancy_shared->nexecutors = chancy_max_executors;
		for (int i = 0; i < chancy_max_executors; i++)
			SpinLockInit(&chancy_shared->executors[i].mutex);
	}
	ledger_startup();
	flow_shmem_init(&(GetNamedLWLockTranche("chancy"))[1].lock);
	stats_shmem_init(&(GetNamedLWLockTranche("chancy"))[2].lock);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * slots_init
 *		Install the shared memory hooks (from _PG_init).
 */
void
slots_init(void)
{
#ifdef CHANCY_HAS_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = slots_shmem_request;
#else
	slots_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = slots_shmem_startup;
}

/* The name of a slot state, as chancy_workers shows it. */
const char *
slot_state_name(SlotState state)
{
	switch (state)
	{
		case SLOT_FREE:
			return "free";
		case SLOT_IDLE:
			return "waiting";
		case SLOT_NO_EXTENSION:
			return "no extension";
		case SLOT_BLOCKED:
			return "blocked";
		case SLOT_STARTING:
			return "starting";
		case SLOT_RUNNING:
			return "running";
		case SLOT_STOPPING:
			return "stopping";
		case SLOT_LEAVING:
			return "leaving";
		case SLOT_EXITED:
			return "exited";
	}
	return "unknown";
}

/*
 * slots_start_worker
 *		Register a dynamic worker (supervisor or executor) for slot; its start
 *		and stop are notified to this process; *handle is in
 *		TopMemoryContext.  False if no worker slot of the postmaster is free.
 */
bool
slots_start_worker(ChancyWorkerKind kind, const char *name, int slot,
				   uint64 generation, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	ChancyWorkerParams params;
	MemoryContext old;
	bool		started;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "chancy", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, kind == WORKER_EXECUTOR ?
			"chancy_executor_main" : "chancy_supervisor_main", BGW_MAXLEN);
	strlcpy(worker.bgw_type, kind == WORKER_EXECUTOR ?
			"chancy executor" : "chancy supervisor", BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slot);
	params.generation = generation;
	memcpy(worker.bgw_extra, &params, sizeof(params));
	worker.bgw_notify_pid = MyProcPid;
	/* the handle is kept until the worker is seen to stop */
	old = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&worker, handle);
	MemoryContextSwitchTo(old);
	return started;
}

/* The generation a started worker was given. */
uint64
slots_worker_generation(void)
{
	ChancyWorkerParams params;

	memcpy(&params, MyBgworkerEntry->bgw_extra, sizeof(params));
	return params.generation;
}

/* ----------------------------------------------------------------------
 * The launcher, and the database slots it gives out
 * ----------------------------------------------------------------------
 */

/* The launcher has started: others may wake it. */
void
slots_launcher_attach(void)
{
	LOCK_EXCLUSIVE();
	chancy_shared->launcher_pid = MyProcPid;
	chancy_shared->launcher_latch = MyLatch;
	UNLOCK();
}

/* The server is (or no longer is) a standby, for chancy_workers. */
void
slots_set_standby(bool standby)
{
	LOCK_EXCLUSIVE();
	chancy_shared->standby = standby;
	UNLOCK();
}

/*
 * slots_wake_launcher
 *		Set the launcher's latch.  With extension_changed (CREATE or ALTER
 *		EXTENSION chancy committed somewhere), databases whose supervisor
 *		found no chancy are looked at again.  It is a count, not a flag: a
 *		supervisor that was starting when it changed may not have seen it,
 *		and the launcher can tell from the count the supervisor saw.
 */
void
slots_wake_launcher(bool extension_changed)
{
	LOCK_EXCLUSIVE();
	if (extension_changed)
		chancy_shared->extensions++;
	if (chancy_shared->launcher_latch)
		SetLatch(chancy_shared->launcher_latch);
	UNLOCK();
}

/*
 * slots_db_missed_extension
 *		Did the supervisor of database slot i find no chancy, and did chancy
 *		change after it looked?
 */
bool
slots_db_missed_extension(int i)
{
	ChancyDatabase *db = &chancy_shared->dbs[i];
	bool		missed;

	LOCK_SHARED();
	missed = db->state == SLOT_NO_EXTENSION &&
		db->extensions_seen != chancy_shared->extensions;
	UNLOCK();
	return missed;
}

/* The database slot serving dboid, or -1. */
int
slots_db_find(Oid dboid)
{
	int			found = -1;

	LOCK_SHARED();
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
		if (chancy_shared->dbs[i].state != SLOT_FREE &&
			chancy_shared->dbs[i].dboid == dboid)
			found = i;
	UNLOCK();
	return found;
}

/* FREE -> IDLE: serve a database.  Its slot, or -1 if none is free. */
int
slots_db_assign(Oid dboid)
{
	int			slot = -1;

	LOCK_EXCLUSIVE();
	for (int i = 0; i < CHANCY_MAX_DATABASES && slot < 0; i++)
	{
		ChancyDatabase *db = &chancy_shared->dbs[i];

		if (db->state != SLOT_FREE)
			continue;
		db->state = SLOT_IDLE;
		db->dboid = dboid;
		db->pid = 0;
		db->latch = NULL;
		db->declared = 0;
		db->said_missing = false;
		slot = i;
	}
	UNLOCK();
	return slot;
}

/*
 * free_executor
 *		EXITED (or STARTING, never attached) -> FREE, lock held.  A freed
 *		slot may let a starved queue of another database go: their
 *		supervisors are woken.
 */
static void
free_executor(ChancyExecutor *ex)
{
	Assert(ex->state == SLOT_EXITED || ex->state == SLOT_STARTING);
	ex->state = SLOT_FREE;
	ex->pid = 0;
	ex->latch = NULL;
	SpinLockAcquire(&ex->mutex);
	ex->claim = 0;
	ex->job_id = 0;
	SpinLockRelease(&ex->mutex);
	for (int d = 0; d < CHANCY_MAX_DATABASES; d++)
		if (chancy_shared->dbs[d].latch && chancy_shared->dbs[d].dboid != ex->dboid)
			SetLatch(chancy_shared->dbs[d].latch);
}

/* Does a database slot serve database dboid (lock held)? */
static bool
database_served(Oid dboid)
{
	for (int d = 0; d < CHANCY_MAX_DATABASES; d++)
		if (chancy_shared->dbs[d].state != SLOT_FREE && chancy_shared->dbs[d].dboid == dboid)
			return true;
	return false;
}

/* Free the EXITED executor slots of database dboid (lock held). */
static void
free_exited(Oid dboid)
{
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid == dboid && ex->state == SLOT_EXITED)
			free_executor(ex);
	}
}

/*
 * stop_executors
 *		RUNNING -> STOPPING for every executor of database dboid, lock held:
 *		after their job, or (now) at once, by SIGTERM, which interrupts their
 *		job and puts it back.  A start still pending is made void.
 */
static void
stop_executors(Oid dboid, bool now)
{
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid != dboid)
			continue;
		if (ex->state == SLOT_STARTING)
		{
			/* a start that never attached: void it */
			ex->generation++;
			ex->state = SLOT_FREE;
			continue;
		}
		if (ex->state == SLOT_RUNNING)
			ex->state = SLOT_STOPPING;
		if (ex->state == SLOT_STOPPING || ex->state == SLOT_LEAVING)
		{
			if (now)
				kill(ex->pid, SIGTERM);
			else
				SetLatch(ex->latch);
		}
	}
}

/*
 * slots_db_release
 *		IDLE or NO_EXTENSION -> FREE: the database is no longer served.  Its
 *		executors that went (EXITED) are freed too: no supervisor of it will
 *		look at their jobs, which stay claimed until it is served again.
 */
void
slots_db_release(int i)
{
	ChancyDatabase *db = &chancy_shared->dbs[i];

	LOCK_EXCLUSIVE();
	Assert(db->state == SLOT_IDLE || db->state == SLOT_NO_EXTENSION);
	free_exited(db->dboid);
	db->state = SLOT_FREE;
	db->dboid = InvalidOid;
	UNLOCK();
}

/*
 * slots_executors_free_exited
 *		A supervisor that has recovered the jobs of its database frees the
 *		slots of executors of it that went before it started: EXITED -> FREE.
 */
void
slots_executors_free_exited(void)
{
	LOCK_EXCLUSIVE();
	free_exited(MyDatabaseId);
	UNLOCK();
}

/* A database slot's state (and database). */
SlotState
slots_db_state(int i, Oid *dboid)
{
	SlotState	state;

	LOCK_SHARED();
	state = chancy_shared->dbs[i].state;
	if (dboid)
		*dboid = chancy_shared->dbs[i].dboid;
	UNLOCK();
	return state;
}

/*
 * slots_db_start
 *		IDLE or NO_EXTENSION -> STARTING: the launcher is about to register
 *		a supervisor; the generation it must be given.
 */
uint64
slots_db_start(int i)
{
	ChancyDatabase *db = &chancy_shared->dbs[i];
	uint64		generation;

	LOCK_EXCLUSIVE();
	Assert(db->state == SLOT_IDLE || db->state == SLOT_NO_EXTENSION);
	db->state = SLOT_STARTING;
	generation = ++db->generation;
	UNLOCK();
	return generation;
}

/*
 * slots_db_start_failed
 *		STARTING -> IDLE: the supervisor could not be registered, or stopped
 *		before attaching.  A slot meanwhile blocked or restarted is left so.
 */
void
slots_db_start_failed(int i, uint64 generation)
{
	ChancyDatabase *db = &chancy_shared->dbs[i];

	LOCK_EXCLUSIVE();
	if (db->state == SLOT_STARTING && db->generation == generation)
		db->state = SLOT_IDLE;
	UNLOCK();
}

/* RUNNING -> STOPPING: the database is no longer to be served. */
void
slots_db_stop(int i)
{
	ChancyDatabase *db = &chancy_shared->dbs[i];

	LOCK_EXCLUSIVE();
	if (db->state == SLOT_RUNNING)
	{
		db->state = SLOT_STOPPING;
		kill(db->pid, SIGTERM);
	}
	UNLOCK();
}

/* ----------------------------------------------------------------------
 * A supervisor
 * ----------------------------------------------------------------------
 */

/* The database a supervisor started by this generation serves, or none. */
Oid
slots_db_database(int i, uint64 generation)
{
	ChancyDatabase *db = &chancy_shared->dbs[i];
	Oid			dboid = InvalidOid;

	LOCK_SHARED();
	if (db->state == SLOT_STARTING && db->generation == generation)
		dboid = db->dboid;
	UNLOCK();
	return dboid;
}

/*
 * slots_db_attach
 *		STARTING -> RUNNING: the supervisor started by this generation takes
 *		its slot.  False if the start is void.
 */
bool
slots_db_attach(int i, uint64 generation)
{
	ChancyDatabase *db = &chancy_shared->dbs[i];
	bool		ok;

	LOCK_EXCLUSIVE();
	ok = db->state == SLOT_STARTING && db->generation == generation &&
		db->dboid == MyDatabaseId;
	if (ok)
	{
		db->state = SLOT_RUNNING;
		db->pid = MyProcPid;
		db->latch = MyLatch;
		/* before it looks for chancy, see slots_wake_launcher */
		db->extensions_seen = chancy_shared->extensions;
		my_db = db;
	}
	UNLOCK();
	return ok;
}

/*
 * slots_db_detach
 *		The supervisor leaves: RUNNING -> IDLE (or NO_EXTENSION, when there
 *		was no chancy to serve), STOPPING -> IDLE, LEAVING -> BLOCKED.  The
 *		launcher decides what next.
 */
void
slots_db_detach(bool no_extension)
{
	if (my_db == NULL)
		return;
	LOCK_EXCLUSIVE();
	Assert(my_db->state == SLOT_RUNNING || my_db->state == SLOT_STOPPING ||
		   my_db->state == SLOT_LEAVING);
	my_db->state = my_db->state == SLOT_LEAVING ? SLOT_BLOCKED :
		no_extension ? SLOT_NO_EXTENSION : SLOT_IDLE;
	my_db->pid = 0;
	my_db->latch = NULL;
	my_db->declared = 0;
	if (chancy_shared->launcher_latch)
		SetLatch(chancy_shared->launcher_latch);
	UNLOCK();
	my_db = NULL;
}

/* Publish the total concurrency of this database's queues. */
void
slots_db_declare(int concurrency)
{
	LOCK_EXCLUSIVE();
	if (my_db)
		my_db->declared = concurrency;
	UNLOCK();
}

/*
 * slots_db_say_missing
 *		The supervisor found chancy missing (or present again): should it
 *		say so?  Once, until it is found again.
 */
bool
slots_db_say_missing(bool missing)
{
	bool		say = false;

	LOCK_EXCLUSIVE();
	if (my_db)
	{
		say = missing && !my_db->said_missing;
		my_db->said_missing = missing;
	}
	UNLOCK();
	return say;
}

/*
 * slots_db_declared_elsewhere
 *		Executors the other databases' queues ask for: what this database's
 *		queues cannot have.
 */
int
slots_db_declared_elsewhere(void)
{
	int			total = 0;

	LOCK_SHARED();
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
		if (chancy_shared->dbs[i].state != SLOT_FREE &&
			chancy_shared->dbs[i].dboid != MyDatabaseId)
			total += chancy_shared->dbs[i].declared;
	UNLOCK();
	return total;
}

/* Is this database served (listed in chancy.database and existing)? */
bool
slots_db_served(void)
{
	return slots_db_find(MyDatabaseId) >= 0;
}

/*
 * slots_executor_assign
 *		FREE -> STARTING: take an executor slot for a queue of this
 *		database; -1 if none is free.  The generation to start it with is
 *		returned in *generation.
 */
int
slots_executor_assign(const char *queue, uint64 *generation)
{
	int			slot = -1;

	LOCK_EXCLUSIVE();
	for (int i = 0; i < chancy_shared->nexecutors && slot < 0; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->state != SLOT_FREE)
			continue;
		ex->state = SLOT_STARTING;
		ex->dboid = MyDatabaseId;
		strlcpy(ex->queue, queue, NAMEDATALEN);
		ex->pid = 0;
		ex->latch = NULL;
		ex->started_at = 0;
		*generation = ++ex->generation;
		SpinLockAcquire(&ex->mutex);
		ex->idle = false;
		ex->paused = false;
		ex->nudged = false;
		ex->woken = false;
		ex->claim = 0;
		ex->job_id = 0;
		ex->cancel_job = 0;
		ex->jobs_done = 0;
		ex->looked_at = 0;
		SpinLockRelease(&ex->mutex);
		slot = i;
	}
	UNLOCK();
	return slot;
}

/* STARTING -> FREE: the executor could not be registered. */
void
slots_executor_start_failed(int i, uint64 generation)
{
	ChancyExecutor *ex = &chancy_shared->executors[i];

	LOCK_EXCLUSIVE();
	if (ex->state == SLOT_STARTING && ex->generation == generation)
		ex->state = SLOT_FREE;
	UNLOCK();
}

/*
 * slots_executors_count
 *		The executors of a queue of this database that are alive, by what
 *		they are doing: starting or running, asked to stop (they could be
 *		kept instead), on their way out.  All of them count against the
 *		queue's concurrency until they are gone.
 */
void
slots_executors_count(const char *queue, int *running, int *stopping, int *leaving)
{
	*running = *stopping = *leaving = 0;
	LOCK_SHARED();
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid != MyDatabaseId || !EXECUTOR_ALIVE(ex->state) ||
			strcmp(ex->queue, queue) != 0)
			continue;
		if (ex->state == SLOT_STOPPING)
			(*stopping)++;
		else if (ex->state == SLOT_LEAVING)
			(*leaving)++;
		else
			(*running)++;
	}
	UNLOCK();
}

/*
 * slots_executors_exited
 *		Does an executor of this database that exited still hold its slot
 *		(until the supervisor reaps it)?
 */
bool
slots_executors_exited(void)
{
	bool		found = false;

	LOCK_SHARED();
	for (int i = 0; i < chancy_shared->nexecutors && !found; i++)
		found = chancy_shared->executors[i].dboid == MyDatabaseId &&
			chancy_shared->executors[i].state == SLOT_EXITED;
	UNLOCK();
	return found;
}

/* Jobs run by this database's executors, alive or not yet reaped. */
int64
slots_jobs_done(void)
{
	int64		total = 0;

	LOCK_SHARED();
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid != MyDatabaseId || ex->state == SLOT_FREE)
			continue;
		SpinLockAcquire(&ex->mutex);
		total += ex->jobs_done;
		SpinLockRelease(&ex->mutex);
	}
	UNLOCK();
	return total;
}

/* RUNNING -> STOPPING for one executor of a queue; false if none runs. */
bool
slots_executor_stop_one(const char *queue)
{
	bool		done = false;

	LOCK_EXCLUSIVE();
	for (int i = chancy_shared->nexecutors - 1; i >= 0 && !done; i--)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid != MyDatabaseId || strcmp(ex->queue, queue) != 0)
			continue;
		if (ex->state == SLOT_RUNNING)
		{
			ex->state = SLOT_STOPPING;
			SetLatch(ex->latch);
			done = true;
		}
	}
	UNLOCK();
	return done;
}

/* STOPPING -> RUNNING for one executor of a queue that is wanted again. */
bool
slots_executor_unstop_one(const char *queue)
{
	bool		done = false;

	LOCK_EXCLUSIVE();
	for (int i = 0; i < chancy_shared->nexecutors && !done; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid == MyDatabaseId && ex->state == SLOT_STOPPING &&
			strcmp(ex->queue, queue) == 0)
		{
			ex->state = SLOT_RUNNING;
			done = true;
		}
	}
	UNLOCK();
	return done;
}

/* stop_executors() for this database's executors (see there). */
void
slots_executors_stop_all(bool now)
{
	LOCK_EXCLUSIVE();
	stop_executors(MyDatabaseId, now);
	UNLOCK();
}

/*
 * slots_executors_stop_except
 *		RUNNING -> STOPPING for the executors of this database whose queue
 *		is not in the list (a queue that was deleted).
 */
void
slots_executors_stop_except(List *queues)
{
	LOCK_EXCLUSIVE();
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];
		ListCell   *lc;
		bool		wanted = false;

		if (ex->dboid != MyDatabaseId || ex->state != SLOT_RUNNING)
			continue;
		foreach(lc, queues)
			if (strcmp(ex->queue, (char *) lfirst(lc)) == 0)
				wanted = true;
		if (!wanted)
		{
			ex->state = SLOT_STOPPING;
			SetLatch(ex->latch);
		}
	}
	UNLOCK();
}

/* Is any executor of this database still alive? */
bool
slots_executors_alive(void)
{
	bool		alive = false;

	LOCK_SHARED();
	for (int i = 0; i < chancy_shared->nexecutors; i++)
		if (chancy_shared->executors[i].dboid == MyDatabaseId &&
			EXECUTOR_ALIVE(chancy_shared->executors[i].state))
			alive = true;
	UNLOCK();
	return alive;
}

/*
 * slots_executor_reap
 *		An executor of this database whose worker has stopped: EXITED (or a
 *		STARTING that never attached) -> FREE.  True if the slot was ours.
 *		Call it only once the executor's jobs have been recovered (its
 *		ledger record read).
 */
bool
slots_executor_reap(int i, uint64 generation)
{
	ChancyExecutor *ex = &chancy_shared->executors[i];
	bool		ours;

	LOCK_EXCLUSIVE();
	ours = ex->generation == generation && ex->dboid == MyDatabaseId &&
		ex->state != SLOT_FREE;
	/* EXITED, or STARTING and never attached (a worker that dies without
	 * detaching crashed, and the cluster restarted) */
	if (ours)
		free_executor(ex);
	UNLOCK();
	return ours;
}

/*
 * slots_live_claims
 *		The claims held by this database's executors that are alive.  A
 *		claim read from the table before that is not in the list belongs to
 *		an executor that has gone (or finished with it): an executor
 *		publishes its claim before the claim commits (slots_new_claim), and
 *		clears its rows before it takes another.
 */
List *
slots_live_claims(void)
{
	List	   *claims = NIL;

	LOCK_SHARED();
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];
		int64		claim;

		if (ex->dboid != MyDatabaseId || !EXECUTOR_ALIVE(ex->state))
			continue;
		SpinLockAcquire(&ex->mutex);
		claim = ex->claim;
		SpinLockRelease(&ex->mutex);
		if (claim != 0)
		{
			int64	   *boxed = palloc(sizeof(int64));

			*boxed = claim;
			claims = lappend(claims, boxed);
		}
	}
	UNLOCK();
	return claims;
}

/* ----------------------------------------------------------------------
 * An executor
 * ----------------------------------------------------------------------
 */

/* The database an executor started by this generation works in, or none. */
Oid
slots_executor_database(int i, uint64 generation)
{
	ChancyExecutor *ex = &chancy_shared->executors[i];
	Oid			dboid = InvalidOid;

	LOCK_SHARED();
	if (ex->state == SLOT_STARTING && ex->generation == generation)
		dboid = ex->dboid;
	UNLOCK();
	return dboid;
}

/*
 * slots_executor_attach
 *		STARTING -> RUNNING: the executor started by this generation takes
 *		its slot; NULL if the start is void.
 */
ChancyExecutor *
slots_executor_attach(int i, uint64 generation)
{
	ChancyExecutor *ex = &chancy_shared->executors[i];

	LOCK_EXCLUSIVE();
	if (ex->state == SLOT_STARTING && ex->generation == generation &&
		ex->dboid == MyDatabaseId)
	{
		ex->state = SLOT_RUNNING;
		ex->pid = MyProcPid;
		ex->latch = MyLatch;
		ex->started_at = GetCurrentTimestamp();
		my_executor = ex;
		for (int d = 0; d < CHANCY_MAX_DATABASES; d++)
			if (chancy_shared->dbs[d].dboid == MyDatabaseId &&
				chancy_shared->dbs[d].state != SLOT_FREE)
				executor_db = &chancy_shared->dbs[d];
	}
	UNLOCK();
	return my_executor;
}

/*
 * slots_executor_detach
 *		The executor's process leaves (its jobs given back, or not): RUNNING,
 *		STOPPING or LEAVING -> EXITED.  Its supervisor frees the slot once it
 *		has looked at the jobs; if its database is no longer served (the
 *		launcher released it while the executor finished its job), there is
 *		none, and the slot is freed now.
 */
void
slots_executor_detach(void)
{
	if (my_executor == NULL)
		return;
	LOCK_EXCLUSIVE();
	Assert(my_executor->state == SLOT_RUNNING || my_executor->state == SLOT_STOPPING ||
		   my_executor->state == SLOT_LEAVING);
	my_executor->state = SLOT_EXITED;
	my_executor->pid = 0;
	my_executor->latch = NULL;
	SpinLockAcquire(&my_executor->mutex);
	my_executor->idle = false;
	my_executor->job_id = 0;
	SpinLockRelease(&my_executor->mutex);
	/* a database no longer served has no supervisor to free the slot */
	if (!database_served(MyDatabaseId))
		free_executor(my_executor);
	UNLOCK();
	my_executor = NULL;
}

/*
 * slots_executor_leaving
 *		Was this executor asked to stop?  If so, STOPPING -> LEAVING: it
 *		goes, and can no longer be kept.
 */
bool
slots_executor_leaving(void)
{
	bool		leaving;

	LOCK_EXCLUSIVE();
	if (my_executor->state == SLOT_STOPPING)
		my_executor->state = SLOT_LEAVING;
	leaving = my_executor->state == SLOT_LEAVING;
	UNLOCK();
	return leaving;
}

/*
 * slots_claims_above
 *		Claim tokens found in the table (of an earlier life of the server:
 *		before a crash, on the primary a promoted standby replaces) reach up
 *		to claim: new tokens start above it, so that none is ever taken twice.
 */
void
slots_claims_above(int64 claim)
{
	uint64		current = pg_atomic_read_u64(&chancy_shared->claims);

	while (current <= (uint64) claim &&
		   !pg_atomic_compare_exchange_u64(&chancy_shared->claims, &current,
										   (uint64) claim + 1))
		;
}

/*
 * slots_new_claim
 *		A new claim token for this executor's next claim, published before
 *		the claim commits, so that a supervisor that sees it in the table
 *		finds it among the live claims.
 */
int64
slots_new_claim(void)
{
	int64		claim;

	SpinLockAcquire(&my_executor->mutex);
	claim = (int64) pg_atomic_fetch_add_u64(&chancy_shared->claims, 1);
	my_executor->claim = claim;
	SpinLockRelease(&my_executor->mutex);
	return claim;
}

/*
 * slots_idle
 *		The executor looks for work (or sleeps, paused or not) from now on,
 *		or has found some.  It is idle from before it looks until it has claimed, so a push
 *		committed in between always finds its latch to set.
 */
void
slots_idle(bool idle, bool paused)
{
	SpinLockAcquire(&my_executor->mutex);
	my_executor->idle = idle;
	my_executor->paused = paused;
	if (idle)
		my_executor->looked_at = GetCurrentTimestamp();
	SpinLockRelease(&my_executor->mutex);
}

/*
 * slots_take_wakeup
 *		Was the executor woken for work (slots_wake_executors()), or nudged,
 *		since it last asked?  Its latch says the same, unless a wait inside
 *		its claim reset it: PostgreSQL's lock waits (ProcSleep) and
 *		condition variables reset the latch as they wake, and do not set it
 *		again.  So an executor asks this, not its latch, after a claim.  The
 *		wake-up is taken; a nudge stays for slots_take_nudge().
 */
bool
slots_take_wakeup(void)
{
	bool		woken;

	SpinLockAcquire(&my_executor->mutex);
	woken = my_executor->woken || my_executor->nudged;
	my_executor->woken = false;
	SpinLockRelease(&my_executor->mutex);
	return woken;
}

/* Did its queue change (or a job of its batch get cancelled) since? */
bool
slots_take_nudge(void)
{
	bool		nudged;

	SpinLockAcquire(&my_executor->mutex);
	nudged = my_executor->nudged;
	my_executor->nudged = false;
	SpinLockRelease(&my_executor->mutex);
	return nudged;
}

/*
 * slots_job_begin
 *		The executor is about to execute a job: publish it, so that a cancel
 *		committed from now on interrupts it.  True if something asked the
 *		executor to look again first (a cancel committed before, a queue
 *		change): then it must not run the job, and calls slots_job_end().
 */
bool
slots_job_begin(int64 job_id)
{
	bool		nudged;

	SpinLockAcquire(&my_executor->mutex);
	my_executor->job_id = job_id;
	nudged = my_executor->nudged;
	my_executor->nudged = false;
	SpinLockRelease(&my_executor->mutex);
	return nudged;
}

/* The executor no longer executes a job (counted: it ran). */
void
slots_job_end(bool counted)
{
	SpinLockAcquire(&my_executor->mutex);
	my_executor->job_id = 0;
	my_executor->cancel_job = 0;
	if (counted)
		my_executor->jobs_done++;
	SpinLockRelease(&my_executor->mutex);
}

/*
 * slots_cancel_is_mine
 *		In the executor's SIGUSR2 handler: is the cancel that was signalled
 *		for the job it executes now?  A late signal meant for a job that has
 *		finished is not.  Reads without the spinlock (a signal handler must
 *		not wait): both fields are written before the signal is sent.
 */
bool
slots_cancel_is_mine(void)
{
	return my_executor != NULL && my_executor->cancel_job != 0 &&
		my_executor->cancel_job == my_executor->job_id;
}

/* ----------------------------------------------------------------------
 * Any backend of a database: wake-ups and cancels at commit
 * ----------------------------------------------------------------------
 */

/*
 * slots_wake_executors
 *		Set the latches of up to njobs idle executors of a queue of this
 *		database (other than the caller).
 */
void
slots_wake_executors(const char *queue, int njobs)
{
	LOCK_SHARED();
	for (int i = 0; i < chancy_shared->nexecutors && njobs > 0; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];
		bool		idle;

		if (ex == my_executor || ex->dboid != MyDatabaseId ||
			ex->state != SLOT_RUNNING || strcmp(ex->queue, queue) != 0)
			continue;
		SpinLockAcquire(&ex->mutex);
		idle = ex->idle;
		if (idle)
			ex->woken = true;
		SpinLockRelease(&ex->mutex);
		if (idle)
		{
			SetLatch(ex->latch);
			njobs--;
		}
	}
	UNLOCK();
}

/*
 * slots_db_wake_on_finish
 *		The supervisor goes to sleep with nothing to prune: the next jobs
 *		that finish wake it (slots_jobs_finished()), so that pruning follows
 *		them without the supervisor polling.
 */
void
slots_db_wake_on_finish(void)
{
	pg_atomic_write_u32(&my_db->wake_on_finish, 1);
}

/*
 * slots_jobs_finished
 *		An executor committed the outcomes of jobs: wake its supervisor if
 *		it asked (once per asking).
 */
void
slots_jobs_finished(void)
{
	ChancyDatabase *db = executor_db;
	Latch	   *latch;

	if (db == NULL || pg_atomic_read_u32(&db->wake_on_finish) == 0 ||
		pg_atomic_exchange_u32(&db->wake_on_finish, 0) == 0)
		return;
	latch = db->latch;
	if (latch != NULL && db->dboid == MyDatabaseId)
		SetLatch(latch);
}

/*
 * slots_nudge_executors
 *		A queue of this database changed (NULL: any might have): its
 *		executors look at it again before their next job, and wake up.
 */
void
slots_nudge_executors(const char *queue)
{
	LOCK_SHARED();
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid != MyDatabaseId || !EXECUTOR_ALIVE(ex->state) ||
			ex->latch == NULL || (queue && strcmp(ex->queue, queue) != 0))
			continue;
		SpinLockAcquire(&ex->mutex);
		ex->nudged = true;
		SpinLockRelease(&ex->mutex);
		SetLatch(ex->latch);
	}
	UNLOCK();
}

/* Set the latch of this database's supervisor. */
void
slots_wake_supervisor(void)
{
	LOCK_SHARED();
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
		if (chancy_shared->dbs[i].dboid == MyDatabaseId &&
			chancy_shared->dbs[i].latch != NULL)
			SetLatch(chancy_shared->dbs[i].latch);
	UNLOCK();
}

/*
 * slots_wake_all_supervisors
 *		Set the latch of every database's supervisor (shared memory of
 *		flow control concerns them all: see flow.c).
 */
void
slots_wake_all_supervisors(void)
{
	LOCK_SHARED();
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
		if (chancy_shared->dbs[i].latch != NULL)
			SetLatch(chancy_shared->dbs[i].latch);
	UNLOCK();
}

/*
 * slots_cancel_job
 *		A cancel of a claimed job committed: the executor holding the claim
 *		interrupts the job if it executes it (SIGUSR2, checked against the
 *		job it executes when the signal arrives), else puts back the rest of
 *		its batch before its next job, which records the cancel.
 */
void
slots_cancel_job(int64 claim, int64 job_id)
{
	LOCK_SHARED();
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];
		bool		holds;
		bool		executes = false;

		if (ex->dboid != MyDatabaseId || !EXECUTOR_ALIVE(ex->state) ||
			ex->pid == 0)
			continue;
		SpinLockAcquire(&ex->mutex);
		holds = ex->claim == claim;
		if (holds)
		{
			executes = ex->job_id == job_id;
			if (executes)
				ex->cancel_job = job_id;
			else
				ex->nudged = true;
		}
		SpinLockRelease(&ex->mutex);
		if (!holds)
			continue;
		if (executes)
			kill(ex->pid, SIGUSR2);
		SetLatch(ex->latch);
		break;
	}
	UNLOCK();
}

/* The pid of the executor of this database holding a claim, or 0. */
pid_t
slots_claim_pid(int64 claim)
{
	pid_t		pid = 0;

	LOCK_SHARED();
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (ex->dboid == MyDatabaseId && EXECUTOR_ALIVE(ex->state) &&
			ex->claim == claim)
			pid = ex->pid;
	}
	UNLOCK();
	return pid;
}

/* The condition variable chancy_wait() sleeps on for a job. */
ConditionVariable *
slots_job_cv(int64 job_id)
{
	return &chancy_shared->job_done[(uint64) job_id % CHANCY_WAIT_CVS];
}

/* A job reached a final state (committed): wake its waiters. */
void
slots_job_done(int64 job_id)
{
	ConditionVariableBroadcast(slots_job_cv(job_id));
}

/*
 * slots_db_block
 *		A utility command needs database dboid alone (DROP, RENAME,
 *		SET TABLESPACE, CREATE DATABASE ... TEMPLATE): keep supervisors out
 *		(IDLE, NO_EXTENSION, STARTING -> BLOCKED; RUNNING, STOPPING ->
 *		LEAVING), make its workers leave (SIGTERM: running jobs are put back
 *		without using an attempt), and wait until they are gone.
 */
void
slots_db_block(Oid dboid)
{
	ChancyDatabase *db = NULL;
	TimestampTz deadline;

	LOCK_EXCLUSIVE();
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
	{
		ChancyDatabase *d = &chancy_shared->dbs[i];

		if (d->state == SLOT_FREE || d->dboid != dboid)
			continue;
		db = d;
		if (d->state == SLOT_RUNNING || d->state == SLOT_STOPPING)
		{
			d->state = SLOT_LEAVING;
			kill(d->pid, SIGTERM);
		}
		else if (d->state != SLOT_LEAVING)
			d->state = SLOT_BLOCKED;
	}
	stop_executors(dboid, true);
	UNLOCK();
	if (db == NULL)
		return;

	/* a job ignoring the interrupt is ended after a grace period */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10000);
	while (GetCurrentTimestamp() < deadline)
	{
		bool		gone;

		LOCK_SHARED();
		gone = db->state == SLOT_BLOCKED;
		for (int i = 0; i < chancy_shared->nexecutors; i++)
			if (chancy_shared->executors[i].dboid == dboid &&
				EXECUTOR_ALIVE(chancy_shared->executors[i].state))
				gone = false;
		UNLOCK();
		if (gone)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * slots_db_unblock
 *		The utility command is over (done or not): BLOCKED -> IDLE, LEAVING
 *		-> STOPPING; the launcher decides again.
 */
void
slots_db_unblock(Oid dboid)
{
	LOCK_EXCLUSIVE();
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
	{
		ChancyDatabase *d = &chancy_shared->dbs[i];

		if (d->state == SLOT_FREE || d->dboid != dboid)
			continue;
		if (d->state == SLOT_BLOCKED)
			d->state = SLOT_IDLE;
		else if (d->state == SLOT_LEAVING)
			d->state = SLOT_STOPPING;
	}
	if (chancy_shared->launcher_latch)
		SetLatch(chancy_shared->launcher_latch);
	UNLOCK();
}

/*
 * slots_snapshot
 *		A copy of the slots in use (palloc'd SlotInfos): the launcher, every
 *		database's supervisor and every executor, or only this database's.
 */
List *
slots_snapshot(bool all_databases)
{
	List	   *rows = NIL;
	SlotInfo   *row;

	LOCK_SHARED();
	if (chancy_shared->launcher_pid != 0)
	{
		row = palloc0(sizeof(SlotInfo));
		row->kind = "launcher";
		row->pid = chancy_shared->launcher_pid;
		row->state = chancy_shared->standby ?
			"standby: jobs run after promotion" : "running";
		rows = lappend(rows, row);
	}
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
	{
		ChancyDatabase *db = &chancy_shared->dbs[i];

		if (db->state == SLOT_FREE || (!all_databases && db->dboid != MyDatabaseId))
			continue;
		row = palloc0(sizeof(SlotInfo));
		row->kind = "supervisor";
		row->dboid = db->dboid;
		row->pid = db->pid;
		row->state = slot_state_name(db->state);
		rows = lappend(rows, row);
	}
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];
		bool		idle;
		bool		paused;

		if (ex->state == SLOT_FREE || (!all_databases && ex->dboid != MyDatabaseId))
			continue;
		row = palloc0(sizeof(SlotInfo));
		row->kind = "executor";
		row->dboid = ex->dboid;
		strlcpy(row->queue, ex->queue, NAMEDATALEN);
		row->pid = ex->pid;
		row->started_at = ex->started_at;
		SpinLockAcquire(&ex->mutex);
		row->job_id = ex->job_id;
		row->jobs_done = ex->jobs_done;
		row->looked_at = ex->looked_at;
		idle = ex->idle;
		paused = ex->paused;
		SpinLockRelease(&ex->mutex);
		if (ex->state != SLOT_RUNNING)
			row->state = slot_state_name(ex->state);
		else
			row->state = row->job_id != 0 ? "running" : paused ? "paused" :
				idle ? "idle" : "busy";
		rows = lappend(rows, row);
	}
	UNLOCK();
	return rows;
}
