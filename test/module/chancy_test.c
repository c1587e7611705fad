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

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "chancy.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(sleep_checking);
PG_FUNCTION_INFO_V1(busy_loop);
PG_FUNCTION_INFO_V1(palloc_hog);
PG_FUNCTION_INFO_V1(malloc_hog);
PG_FUNCTION_INFO_V1(segfault);
PG_FUNCTION_INFO_V1(abort_job);

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
