/*-------------------------------------------------------------------------
 *
 * chancy_test.c
 *	  Jobs that misbehave, for chancy's tests of limits and faults.  Not
 *	  installed: the tests load it by its path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "chancy.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(sleep_checking);
PG_FUNCTION_INFO_V1(busy_loop);
PG_FUNCTION_INFO_V1(palloc_hog);
PG_FUNCTION_INFO_V1(palloc_mb);
PG_FUNCTION_INFO_V1(malloc_hog);
PG_FUNCTION_INFO_V1(segfault);
PG_FUNCTION_INFO_V1(abort_job);
PG_FUNCTION_INFO_V1(fatal_job);
PG_FUNCTION_INFO_V1(exit_job);
PG_FUNCTION_INFO_V1(whoami);
PG_FUNCTION_INFO_V1(spi_count);
PG_FUNCTION_INFO_V1(subxids);
PG_FUNCTION_INFO_V1(parent_results);

/* Sleep kwargs.seconds, checking for interrupts every 10 ms. */
Datum
sleep_checking(PG_FUNCTION_ARGS)
{
	double		seconds = chancy_kwarg_float(PG_GETARG_JSONB_P(0), "seconds", 1);
	TimestampTz end = GetCurrentTimestamp() + (TimestampTz) (seconds * 1000000);

	while (GetCurrentTimestamp() < end)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000);
	}
	PG_RETURN_VOID();
}

/* Spin for kwargs.seconds without ever checking for interrupts. */
Datum
busy_loop(PG_FUNCTION_ARGS)
{
	double		seconds = chancy_kwarg_float(PG_GETARG_JSONB_P(0), "seconds", 3600);
	TimestampTz end = GetCurrentTimestamp() + (TimestampTz) (seconds * 1000000);
	volatile uint64 n = 0;

	while (GetCurrentTimestamp() < end)
		n++;
	PG_RETURN_VOID();
}

/* palloc (and touch) 1 MB at a time, forever. */
Datum
palloc_hog(PG_FUNCTION_ARGS)
{
	for (;;)
	{
		char	   *p = MemoryContextAllocHuge(CurrentMemoryContext, 1024 * 1024);

		memset(p, 1, 1024 * 1024);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_VOID();
}

/* palloc (and touch) kwargs.mb megabytes, 1 MB at a time, and return:
 * the memory goes with the job's subtransaction. */
Datum
palloc_mb(PG_FUNCTION_ARGS)
{
	int			mb = (int) chancy_kwarg_float(PG_GETARG_JSONB_P(0), "mb", 1);

	for (int i = 0; i < mb; i++)
	{
		char	   *p = MemoryContextAllocHuge(CurrentMemoryContext, 1024 * 1024);

		memset(p, 1, 1024 * 1024);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_VOID();
}

/* malloc (and touch) 1 MB at a time, forever; NULL is an error. */
Datum
malloc_hog(PG_FUNCTION_ARGS)
{
	for (;;)
	{
		char	   *p = malloc(1024 * 1024);

		if (p == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		memset(p, 1, 1024 * 1024);
	}
	PG_RETURN_VOID();
}

/* Dereference NULL. */
Datum
segfault(PG_FUNCTION_ARGS)
{
	volatile int *p = NULL;

	*p = 1;
	PG_RETURN_VOID();
}

/* abort(). */
Datum
abort_job(PG_FUNCTION_ARGS)
{
	abort();
	PG_RETURN_VOID();
}

/* End the process with FATAL, as a library that gives up would. */
Datum
fatal_job(PG_FUNCTION_ARGS)
{
	elog(FATAL, "chancy_test: the library gave up");
	PG_RETURN_VOID();
}

/* Call exit(1), as a careless library would. */
Datum
exit_job(PG_FUNCTION_ARGS)
{
	exit(1);
	PG_RETURN_VOID();
}

/* Who the job runs as: {"user": name, "superuser": bool}. */
Datum
whoami(PG_FUNCTION_ARGS)
{
	char	   *text = psprintf("{\"user\": \"%s\", \"superuser\": %s}",
								GetUserNameFromId(GetUserId(), false),
								superuser() ? "true" : "false");

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

/* Count kwargs.relation's rows through SPI: a job that uses the database. */
Datum
spi_count(PG_FUNCTION_ARGS)
{
	char	   *relation = chancy_kwarg_text(PG_GETARG_JSONB_P(0), "relation", "pg_class");
	int64		n;
	bool		isnull;

	SPI_connect();
	if (SPI_execute(psprintf("SELECT count(*) FROM %s", relation), true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not count");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in,
										CStringGetDatum(psprintf("{\"count\": " INT64_FORMAT "}", n))));
}

/*
 * The subtransaction XIDs this process advertises, and whether their cache
 * overflowed (then every snapshot of the cluster looks in pg_subtrans).
 */
Datum
subxids(PG_FUNCTION_ARGS)
{
	char	   *text = psprintf("{\"count\": %d, \"overflowed\": %s}",
								(int) MyProc->subxidStatus.count,
								MyProc->subxidStatus.overflowed ? "true" : "false");

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

/* A workflow step of the C SDK: {"parents": chancy_parent_results()}. */
Datum
parent_results(PG_FUNCTION_ARGS)
{
	Jsonb	   *parents = chancy_parent_results();
	char	   *text = psprintf("{\"parents\": %s}",
								parents ? JsonbToCString(NULL, &parents->root,
														 VARSIZE(parents)) : "null");

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}
