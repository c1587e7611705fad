/*-------------------------------------------------------------------------
 *
 * chancy_examples.c
 *	  Example C jobs for chancy: the seed's greet.
 *
 * A job is an ordinary V1 function taking one jsonb (the keyword arguments):
 * chancy's executors call it, and so can anyone with SELECT greet('{...}').
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "chancy.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(greet);
PG_FUNCTION_INFO_V1(noop);

/*
 * greet(kwargs jsonb) RETURNS jsonb
 *		The seed's greet(*, name): log "Hello, <name>!" and return
 *		{"greeting": "Hello, <name>!"}.
 */
Datum
greet(PG_FUNCTION_ARGS)
{
	Jsonb	   *kwargs = PG_GETARG_JSONB_P(0);
	const ChancyJobInfo *job = chancy_current_job();
	char	   *greeting;

	greeting = psprintf("Hello, %s!", chancy_kwarg_text(kwargs, "name", "World"));
	if (job)
		elog(LOG, "%s (job %lld, attempt %d)", greeting, (long long) job->id,
			 job->attempt);
	else
		elog(LOG, "%s", greeting);
	PG_RETURN_JSONB_P(chancy_result_text("greeting", greeting));
}

/*
 * noop(kwargs jsonb) RETURNS void
 *		Do nothing: what the benchmark runs to measure chancy itself.
 */
Datum
noop(PG_FUNCTION_ARGS)
{
	PG_RETURN_VOID();
}
