/*-------------------------------------------------------------------------
 *
 * chancy.c
 *	  Module load: configuration (GUCs) of the chancy extension.
 *
 * chancy must be loaded through shared_preload_libraries: its workers are
 * started by the postmaster.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "chancy_internal.h"

PG_MODULE_MAGIC;

char	   *chancy_databases = NULL;
char	   *chancy_queues = NULL;
int			chancy_max_executors = 4;
int			chancy_memory_limit = 0;
int			chancy_max_crashes = 2;
int			chancy_executor_max_growth = 256 * 1024;
int			chancy_batch_size = 64;
int			chancy_prune_after = 86400;

ChancyShared *chancy_shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

void		_PG_init(void);

/* Size of chancy's shared memory */
static Size
chancy_shmem_size(void)
{
	return add_size(offsetof(ChancyShared, executors),
					mul_size(sizeof(ChancyExecutor), chancy_max_executors));
}

/* Ask for chancy's shared memory and its lock. */
static void
chancy_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(chancy_shmem_size());
	RequestNamedLWLockTranche("chancy", 1);
}

/*
 * chancy_shmem_startup
 *		Create or attach to chancy's shared memory.
 */
static void
chancy_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	chancy_shared = ShmemInitStruct("chancy", chancy_shmem_size(), &found);
	if (!found)
	{
		memset(chancy_shared, 0, chancy_shmem_size());
		chancy_shared->lock = &(GetNamedLWLockTranche("chancy"))->lock;
		/* claim tokens never repeat, not even across restarts */
		pg_atomic_init_u64(&chancy_shared->claims,
						   (uint64) GetCurrentTimestamp() << 8);
		for (int i = 0; i < CHANCY_WAIT_CVS; i++)
			ConditionVariableInit(&chancy_shared->job_done[i]);
		chancy_shared->nexecutors = chancy_max_executors;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * parse_queues
 *		Parse a chancy.queues value, 'name:concurrency, ...'.  On success the
 *		queues and their concurrencies are returned (if wanted); on failure
 *		false, with *why set.
 */
bool
parse_queues(const char *value, List **names, List **concurrencies,
			 const char **why)
{
	char	   *copy = pstrdup(value);
	List	   *items;
	ListCell   *lc;

	if (!SplitIdentifierString(copy, ',', &items))
	{
		*why = "The value is not a comma-separated list.";
		return false;
	}
	foreach(lc, items)
	{
		char	   *item = lfirst(lc);
		char	   *colon = strrchr(item, ':');
		char	   *end;
		long		concurrency = 1;

		if (colon)
		{
			*colon = '\0';
			errno = 0;
			concurrency = strtol(colon + 1, &end, 10);
			if (errno != 0 || end == colon + 1 || *end != '\0' ||
				concurrency < 0 || concurrency > 1000)
			{
				*why = psprintf("Queue \"%s\" has concurrency \"%s\"; it must be an integer from 0 to 1000.",
								item, colon + 1);
				return false;
			}
		}
		if (*item == '\0')
		{
			*why = "A queue name is empty.";
			return false;
		}
		if (names)
			*names = lappend(*names, pstrdup(item));
		if (concurrencies)
			*concurrencies = lappend_int(*concurrencies, (int) concurrency);
	}
	return true;
}

/* GUC check hook of chancy.queues */
static bool
check_queues(char **newval, void **extra, GucSource source)
{
	const char *why;

	if (parse_queues(*newval, NULL, NULL, &why))
		return true;
	GUC_check_errdetail("%s", why);
	GUC_check_errhint("Write queues as 'name:concurrency', for example 'default:4, emails:2'.");
	return false;
}

/* GUC check hook of chancy.database */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names;

	if (SplitIdentifierString(copy, ',', &names))
		return true;
	GUC_check_errdetail("chancy.database must be a comma-separated list of database names.");
	return false;
}

/*
 * _PG_init
 *		Refuse to load except at server start; define the configuration.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chancy must be loaded via shared_preload_libraries"),
				 errhint("Add chancy to shared_preload_libraries in postgresql.conf and restart the server.")));

	DefineCustomStringVariable("chancy.database",
							   "Databases whose queues chancy's workers run.",
							   "A comma-separated list; each needs CREATE EXTENSION chancy.",
							   &chancy_databases,
							   "postgres",
							   PGC_SIGHUP, 0,
							   check_databases, NULL, NULL);
	DefineCustomStringVariable("chancy.queues",
							   "Queues declared at start, with their concurrency.",
							   "For example 'default:4, emails:2'.",
							   &chancy_queues,
							   "default:2",
							   PGC_SIGHUP, 0,
							   check_queues, NULL, NULL);
	DefineCustomIntVariable("chancy.max_executors",
							"Maximum number of chancy executor processes in the cluster.",
							"Executors are background workers: this must fit in max_worker_processes.",
							&chancy_max_executors,
							4, 0, MAX_BACKENDS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.memory_limit",
							"Memory limit of jobs that set none.",
							"0 means no limit.",
							&chancy_memory_limit,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.max_crashes",
							"How often a job may crash its executor before it fails.",
							"A job that was running when its executor or the server died is retried until then.",
							&chancy_max_crashes,
							2, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.batch_size",
							"How many ready jobs an executor claims at once.",
							"Claimed jobs run one after the other, each in its own subtransaction; short ones commit in groups.",
							&chancy_batch_size,
							64, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.prune_after",
							"Age after which finished jobs are deleted.",
							"Succeeded, failed and cancelled jobs older than this are deleted in batches by the supervisor; -1 keeps them.  chancy_queues.prune_after overrides it per queue.",
							&chancy_prune_after,
							86400, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.executor_max_growth",
							"Memory an executor may gain over its life before it is replaced.",
							"Jobs may leak memory or fill caches; an executor that grew by more is recycled after its job.",
							&chancy_executor_max_growth,
							256 * 1024, 1024, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("chancy");
#else
	EmitWarningsOnPlaceholders("chancy");
#endif

	/* the launcher, and one supervisor per database, are workers too */
	if (chancy_max_executors + 2 > max_worker_processes)
		ereport(WARNING,
				(errmsg("chancy.max_executors (%d) does not fit in max_worker_processes (%d)",
						chancy_max_executors, max_worker_processes),
				 errdetail("chancy needs a background worker for its launcher, one per database in chancy.database, and one per executor, besides those of other extensions and parallel queries."),
				 errhint("Raise max_worker_processes to at least %d, or lower chancy.max_executors.",
						 chancy_max_executors + 2 + 8)));

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = chancy_shmem_request;
#else
	chancy_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = chancy_shmem_startup;

	chancy_wakeup_init();
	chancy_register_launcher();
}
