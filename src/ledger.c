/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  Which job each executor is executing, kept where a crash does not
 *	  erase it, so that after a crash only the guilty job is charged.
 *
 * When a server process dies by a signal, the postmaster kills every other
 * process and creates shared memory anew: what an executor was doing is
 * lost with it.  The ledger is a small file in the data directory, mapped
 * into memory by the postmaster (every executor inherits the mapping), with
 * a record per executor slot: the job it executes, if any.  Writing a
 * record is a memory write, not a system call; the kernel keeps what was
 * written when the process dies, whatever kills it.
 *
 * An executor marks its record when it dies in a way it can see:
 *	- a fatal signal of its own (a segfault, abort()) marks it CRASHED before
 *	  the process dies of that signal;
 *	- SIGQUIT, which the postmaster sends to every process when another one
 *	  crashed (and on an immediate shutdown), marks it QUIT: not its fault.
 * A process killed by SIGKILL (the OOM killer, kill -9) cannot mark
 * anything: its record still says EXECUTING.
 *
 * When the postmaster recreates shared memory after a crash, it reads the
 * records: a job EXECUTING or CRASHED was executing when its own executor
 * died, and is charged a crash; a job whose executor merely QUIT is not.
 * On a fresh start (a shutdown, or the whole machine went down) nobody is
 * charged.  Supervisors take the charged jobs of their database from
 * shared memory when they recover its jobs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "chancy_internal.h"

#define LEDGER_FILE "chancy.ledger"

typedef enum LedgerState
{
	LEDGER_IDLE = 0,
	LEDGER_EXECUTING,
	LEDGER_CRASHED,				/* died of a fatal signal of its own */
	LEDGER_QUIT					/* killed by the postmaster: innocent */
} LedgerState;

/* One executor slot's record in the file. */
typedef struct LedgerRecord
{
	volatile sig_atomic_t state;
	Oid			dboid;
	int64		claim;
	int64		job_id;
} LedgerRecord;

/* A job charged with the last crash, until its supervisor takes it. */
typedef struct CrashedJob
{
	Oid			dboid;
	int64		job_id;
} CrashedJob;

typedef struct LedgerShared
{
	slock_t		mutex;
	bool		blind;			/* restarted after a crash, without a ledger */
	int			ncrashed;
	CrashedJob	crashed[FLEXIBLE_ARRAY_MEMBER];
} LedgerShared;

static LedgerShared *ledger_shared = NULL;
static LedgerRecord *records = NULL;	/* the mapped file, or NULL */
static bool started_once = false;	/* in the postmaster: not the first start */
static LedgerRecord *mine = NULL;	/* this executor's record */

/* Size of the ledger's shared memory (the crashed jobs). */
Size
ledger_shmem_size(void)
{
	return add_size(offsetof(LedgerShared, crashed),
					mul_size(sizeof(CrashedJob), chancy_max_executors));
}

/*
 * map_file
 *		Map the ledger file (created if need be) into the postmaster's
 *		memory.  Without it, crashes cannot be attributed: say so.
 */
static void
map_file(void)
{
	Size		size = sizeof(LedgerRecord) * Max(chancy_max_executors, 1);
	int			fd;
	void	   *p;

	fd = open(LEDGER_FILE, O_RDWR | O_CREAT | PG_BINARY, pg_file_create_mode);
	if (fd < 0 || ftruncate(fd, size) != 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", LEDGER_FILE),
				 errdetail("After a crash, every job that was running is charged a crash.")));
		if (fd >= 0)
			close(fd);
		return;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not map file \"%s\": %m", LEDGER_FILE),
				 errdetail("After a crash, every job that was running is charged a crash.")));
		return;
	}
	records = (LedgerRecord *) p;
}

/*
 * ledger_startup
 *		With shared memory (created or recreated): in the postmaster, map the
 *		file the first time; after a crash, charge the jobs whose executor
 *		died of its own doing; then start from clean records.
 */
void
ledger_startup(void)
{
	bool		found;

	ledger_shared = ShmemInitStruct("chancy ledger", ledger_shmem_size(), &found);
	if (!found)
	{
		SpinLockInit(&ledger_shared->mutex);
		ledger_shared->ncrashed = 0;
		ledger_shared->blind = false;
	}
	if (IsUnderPostmaster)
		return;

	if (records == NULL && !started_once)
		map_file();
	ledger_shared->blind = records == NULL && started_once;
	if (records != NULL)
	{
		for (int i = 0; i < chancy_max_executors; i++)
		{
			LedgerRecord *r = &records[i];

			if (started_once &&
				(r->state == LEDGER_EXECUTING || r->state == LEDGER_CRASHED))
			{
				CrashedJob *c = &ledger_shared->crashed[ledger_shared->ncrashed++];

				c->dboid = r->dboid;
				c->job_id = r->job_id;
			}
			memset(r, 0, sizeof(LedgerRecord));
		}
	}
	started_once = true;
}

/* In an executor: a fatal signal of its own; mark it, then die of it. */
static void
ledger_fatal_signal(SIGNAL_ARGS)
{
	if (mine && mine->state == LEDGER_EXECUTING)
		mine->state = LEDGER_CRASHED;
	pqsignal(postgres_signal_arg, SIG_DFL);
	raise(postgres_signal_arg);
}

/*
 * In an executor: SIGQUIT, from the postmaster (another process crashed, or
 * an immediate shutdown).  Not the job's fault.  As SignalHandlerForCrashExit,
 * leave at once without running any exit callback.
 */
static void
ledger_quit(SIGNAL_ARGS)
{
	if (mine && mine->state == LEDGER_EXECUTING)
		mine->state = LEDGER_QUIT;
	_exit(2);
}

/*
 * ledger_executor_init
 *		In an executor that took slot: use its record, and install the
 *		signal handlers that mark it.
 */
void
ledger_executor_init(int slot)
{
	static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

	if (records == NULL)
		return;
	mine = &records[slot];
	memset(mine, 0, sizeof(LedgerRecord));
	for (int i = 0; i < lengthof(fatal_signals); i++)
		pqsignal(fatal_signals[i], ledger_fatal_signal);
	pqsignal(SIGQUIT, ledger_quit);
}

/* The executor starts executing a job. */
void
ledger_executing(Oid dboid, int64 claim, int64 job_id)
{
	if (mine == NULL)
		return;
	mine->dboid = dboid;
	mine->claim = claim;
	mine->job_id = job_id;
	pg_write_barrier();
	mine->state = LEDGER_EXECUTING;
}

/* The executor no longer executes a job (it finished, or was handled). */
void
ledger_done(void)
{
	if (mine != NULL)
		mine->state = LEDGER_IDLE;
}

/*
 * ledger_slot_executing
 *		The job the executor of slot was executing when it went, if it went
 *		without handling it (its exit callback failed), or 0.  Clears it.
 *		Called by the supervisor before it frees the slot: its executor is
 *		gone and no other can have it yet, so nobody else writes the record.
 */
int64
ledger_slot_executing(int slot, Oid dboid)
{
	LedgerRecord *r;
	int64		job_id = 0;

	if (records == NULL)
		return 0;
	r = &records[slot];
	if (r->state != LEDGER_IDLE && r->dboid == dboid)
		job_id = r->job_id;
	r->state = LEDGER_IDLE;
	return job_id;
}

/*
 * ledger_take_crashed
 *		The jobs of database dboid charged with the last crash (boxed int64s,
 *		palloc'd); they are taken out of shared memory.  *known is false when
 *		the server restarted after a crash without a ledger: then nobody
 *		knows, and the caller charges every job that was marked running.
 */
List *
ledger_take_crashed(Oid dboid, bool *known)
{
	CrashedJob *copy = palloc(sizeof(CrashedJob) * Max(chancy_max_executors, 1));
	int			n = 0;
	List	   *ids = NIL;

	SpinLockAcquire(&ledger_shared->mutex);
	*known = !ledger_shared->blind;
	for (int i = 0; i < ledger_shared->ncrashed;)
	{
		if (ledger_shared->crashed[i].dboid == dboid)
		{
			copy[n++] = ledger_shared->crashed[i];
			ledger_shared->crashed[i] =
				ledger_shared->crashed[--ledger_shared->ncrashed];
		}
		else
			i++;
	}
	SpinLockRelease(&ledger_shared->mutex);

	for (int i = 0; i < n; i++)
	{
		int64	   *id = palloc(sizeof(int64));

		*id = copy[i].job_id;
		ids = lappend(ids, id);
	}
	pfree(copy);
	return ids;
}
