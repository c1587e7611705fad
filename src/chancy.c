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
#include "postmaster/postmaster.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "chancy_internal.h"

PG_MODULE_MAGIC;

char	   *chancy_databases = NULL;
char	   *chancy_queues = NULL;
int			chancy_max_executors = 4;

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
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("chancy");
#else
	EmitWarningsOnPlaceholders("chancy");
#endif
}
