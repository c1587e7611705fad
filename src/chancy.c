/*-------------------------------------------------------------------------
 *
 * chancy.c
 *	  Module load: the chancy.* settings, and the hooks the rest installs.
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
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "chancy_internal.h"

PG_MODULE_MAGIC;

char	   *chancy_databases = NULL;
char	   *chancy_queue_list = NULL;
int			chancy_max_executors = 4;
int			chancy_time_limit = 0;
int			chancy_memory_limit = 0;
int			chancy_max_limit_keys = 100000;
bool		chancy_track_costs = true;
int			chancy_max_stats_entries = 5000;
int			chancy_max_workflow_steps = 10000;
int			chancy_stats_retention = 7 * 24 * 60;
int			chancy_max_crashes = 2;
int			chancy_executor_max_growth = 256 * 1024;
int			chancy_batch_size = 64;
int			chancy_prune_after = 86400;
static bool dump_finished_jobs = true;

/* the queue names of chancy.queues, parsed once per value */
static char *parsed_value = NULL;
static List *parsed_names = NIL;

void		_PG_init(void);

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

/*
 * chancy_queue_configured
 *		Is queue listed in chancy.queues (which every served database's
 *		supervisor declares)?
 */
bool
chancy_queue_configured(const char *queue)
{
	ListCell   *lc;
	const char *why;

	if (parsed_value == NULL || strcmp(parsed_value, chancy_queue_list) != 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		list_free_deep(parsed_names);
		parsed_names = NIL;
		if (parsed_value)
			pfree(parsed_value);
		parsed_value = pstrdup(chancy_queue_list);
		(void) parse_queues(parsed_value, &parsed_names, NULL, &why);
		MemoryContextSwitchTo(old);
	}
	foreach(lc, parsed_names)
		if (strcmp((char *) lfirst(lc), queue) == 0)
			return true;
	return false;
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
 *		Refuse to load except at server start; define the settings; install
 *		the hooks of shared memory and utility commands; register the
 *		launcher.
 */
void
_PG_init(void)
{
	/* pg_upgrade loads libraries to check them: nothing is to run then */
	if (IsBinaryUpgrade)
		return;
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
	DefineCustomIntVariable("chancy.max_executors",
							"Maximum number of chancy executor processes in the cluster.",
							"Executors are background workers: this must fit in max_worker_processes.",
							&chancy_max_executors,
							4, 0, MAX_BACKENDS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("chancy.queues",
							   "Queues declared in every served database, with their concurrency.",
							   "For example 'default:4, emails:2'.  A queue follows this setting until chancy_declare_queue() changes it.",
							   &chancy_queue_list,
							   "default:2",
							   PGC_SIGHUP, 0,
							   check_queues, NULL, NULL);
	DefineCustomIntVariable("chancy.time_limit",
							"Time limit of jobs whose job and queue set none.",
							"0 means no limit.",
							&chancy_time_limit,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.memory_limit",
							"Memory limit of jobs whose job and queue set none.",
							"0 means no limit.",
							&chancy_memory_limit,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.max_crashes",
							"How often a job may crash its executor before it fails.",
							"A job executing when its executor died of it is retried until then.",
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
	DefineCustomIntVariable("chancy.max_limit_keys",
							"Maximum number of limit keys held in shared memory.",
							"Keys of chancy_limits and those jobs hold; idle ones are evicted when room is needed, and read again when seen.",
							&chancy_max_limit_keys,
							100000, 100, 10000000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("chancy.track_costs",
							 "Whether executors measure what each job run cost.",
							 "Run time, CPU time, memory peak, WAL and buffer use, in the columns of chancy_jobs of those names.",
							 &chancy_track_costs,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.max_stats_entries",
							"Maximum number of entries (database, role, queue and job name) of chancy's statistics.",
							"What finds no room is counted as \"(other)\", and chancy_queue_stats counts the table instead of its gauges.",
							&chancy_max_stats_entries,
							5000, 100, 1000000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.stats_retention",
							"How long the supervisor keeps the rows of chancy_stats_history.",
							"A day's rows go together, once all of them are older than this; at most 7 days.",
							&chancy_stats_retention,
							7 * 24 * 60, 60, 7 * 24 * 60,
							PGC_SIGHUP, GUC_UNIT_MIN,
							NULL, NULL, NULL);
	DefineCustomIntVariable("chancy.max_workflow_steps",
							"Maximum number of steps of a workflow that chancy_push_workflow() accepts.",
							NULL,
							&chancy_max_workflow_steps,
							10000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	/* read only by the filter pg_dump applies to chancy_jobs */
	DefineCustomBoolVariable("chancy.dump_finished_jobs",
							 "Whether pg_dump dumps finished jobs too.",
							 "Pending, running and retrying jobs are always dumped; a superuser sets it off for pg_dump's session (PGOPTIONS) to leave out succeeded, failed and cancelled ones.",
							 &dump_finished_jobs,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("chancy");

	/* the launcher, and one supervisor per database, are workers too */
	if (chancy_max_executors + 2 > max_worker_processes)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chancy.max_executors (%d) does not fit in max_worker_processes (%d)",
						chancy_max_executors, max_worker_processes),
				 errdetail("chancy needs a background worker for its launcher, one per database in chancy.database, and one per executor, besides those of other extensions and parallel queries."),
				 errhint("Raise max_worker_processes to at least %d (chancy.max_executors, a launcher, a supervisor, and the default 8 for parallel queries and others), or lower chancy.max_executors.",
						 chancy_max_executors + 2 + 8)));

	slots_init();
	chancy_ddl_init();
	chancy_register_launcher();
}
