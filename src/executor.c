/*-------------------------------------------------------------------------
 *
 * executor.c
 *	  The executor: a long-lived background worker that claims the ready
 *	  jobs of one queue and runs them, one at a time.
 *
 * Each job costs two transactions.  The claim commits the job as running
 * (with a claim token, so that it can be recovered if this process dies).
 * Then the job runs in a subtransaction of a second transaction, as the role
 * that pushed it, and its outcome is recorded in that same transaction: a
 * job that succeeds commits its effects and "succeeded" together; one that
 * fails has its effects rolled back and its error recorded.
 *
 * When no job is ready, the executor sleeps on its latch until a push to its
 * queue commits (wakeup.c), the next scheduled job of its queue is due, or
 * its queue is resumed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "access/htup_details.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#endif

#include "chancy.h"
#include "chancy_internal.h"

/* sleep at most this long without a wake-up: a safety net, not the mechanism */
#define FALLBACK_SLEEP_MS 5000

/* a job that leaves the process this much larger leaked: recycle it */
#define LEAK_LIMIT ((int64) 64 * 1024 * 1024)

/* A job function, resolved once per executor. */
typedef struct JobFunction
{
	char		spec[NAMEDATALEN * 3];	/* chancy_jobs.function */
	Oid			oid;			/* InvalidOid for a library:symbol */
	Oid			rettype;		/* InvalidOid for a library:symbol */
	bool		isolable;		/* C code: may run in an isolated child */
	FmgrInfo	flinfo;
} JobFunction;

static ChancyExecutor *me = NULL;
static uint64 my_generation = 0;
static Oid	chancy_nsp = InvalidOid;
static MemoryContext job_cxt = NULL;	/* reset before each job */
static MemoryContext functions_cxt = NULL;
static HTAB *functions = NULL;
static uint64 functions_generation = 0;

static ClaimedJob *current_job = NULL;
static volatile sig_atomic_t shutdown_requested = false;
static ChancyJobInfo current_info;
static void **current_info_var = NULL;	/* rendezvous with chancy.h */

/* The job this process is running, if it is an executor running one. */
ClaimedJob *
executor_current_job(void)
{
	return current_job;
}

/*
 * executor_sigterm
 *		SIGTERM (server shutdown, DROP DATABASE, the supervisor): leave after
 *		the current job, interrupting it the way a cancel does; it is then
 *		put back to run again, without using an attempt.
 */
static void
executor_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	shutdown_requested = true;
	if (current_job != NULL)
	{
		InterruptPending = true;
		QueryCancelPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * executor_detach
 *		On exit: free our slot; our supervisor starts another executor if
 *		the queue still needs one.
 */
static void
executor_detach(int code, Datum arg)
{
	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	if (me->generation == my_generation)
	{
		me->pid = 0;
		me->latch = NULL;
		me->idle = false;
		me->job_id = 0;
		me->dboid = InvalidOid;
	}
	LWLockRelease(chancy_shared->lock);
}

/* The language of a function. */
static Oid
function_language(Oid fn)
{
	HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Oid			lang;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fn);
	lang = ((Form_pg_proc) GETSTRUCT(tp))->prolang;
	ReleaseSysCache(tp);
	return lang;
}

/*
 * job_function
 *		The FmgrInfo to call a job's function with, resolved and cached.
 *		Raises the errors a job fails with: a function that was dropped, a
 *		library or symbol that cannot be loaded, a role that may no longer
 *		execute the function.
 */
static JobFunction *
job_function(const char *spec, Oid role)
{
	JobFunction *fn;
	bool		found;

	if (functions == NULL || functions_generation != job_functions_generation())
	{
		HASHCTL		ctl;

		if (functions_cxt)
			MemoryContextDelete(functions_cxt);
		functions_cxt = AllocSetContextCreate(TopMemoryContext, "chancy job functions",
											  ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(((JobFunction *) NULL)->spec);
		ctl.entrysize = sizeof(JobFunction);
		ctl.hcxt = functions_cxt;
		functions = hash_create("chancy job functions", 32, &ctl,
								HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		functions_generation = job_functions_generation();
	}

	if (strlen(spec) >= sizeof(fn->spec))
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("job function name \"%s\" is too long", spec)));
	fn = hash_search(functions, spec, HASH_FIND, NULL);
	if (fn == NULL)
	{
		JobFunction fresh;

		memset(&fresh, 0, sizeof(fresh));
		if (job_function_is_symbol(spec))
		{
			const char *colon = strrchr(spec, ':');

			fresh.flinfo.fn_addr = load_external_function(pnstrdup(spec, colon - spec),
														  colon + 1, true, NULL);
			fresh.flinfo.fn_oid = InvalidOid;
			fresh.flinfo.fn_nargs = 1;
			fresh.flinfo.fn_strict = false;
			fresh.flinfo.fn_retset = false;
			fresh.flinfo.fn_stats = TRACK_FUNC_OFF;
			fresh.flinfo.fn_mcxt = functions_cxt;
			fresh.isolable = true;
		}
		else
		{
			fresh.oid = job_function_oid(spec);
			fresh.rettype = get_func_rettype(fresh.oid);
			fmgr_info_cxt(fresh.oid, &fresh.flinfo, functions_cxt);
			fresh.isolable = function_language(fresh.oid) == ClanguageId;
		}
		fn = hash_search(functions, spec, HASH_ENTER, &found);
		memcpy(fn, &fresh, sizeof(fresh));
		strlcpy(fn->spec, spec, sizeof(fn->spec));
	}

	if (OidIsValid(fn->oid) &&
		chancy_proc_aclcheck(fn->oid, role, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may no longer execute job function %s",
						GetUserNameFromId(role, false), spec)));
	return fn;
}

/*
 * job_result
 *		A job function's return value as jsonb: void is no result, jsonb is
 *		kept, other types are stored as the JSON string of their text.
 */
static Datum
job_result(JobFunction *fn, Datum value, bool *isnull)
{
	Oid			typoutput;
	bool		varlena;
	JsonbValue	jv;

	if (*isnull || fn->rettype == VOIDOID)
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (!OidIsValid(fn->rettype))
	{
		/* a raw symbol: jsonb, or (Datum) 0 for PG_RETURN_VOID */
		*isnull = value == (Datum) 0;
		return value;
	}
	if (fn->rettype == JSONBOID)
		return value;
	getTypeOutputInfo(fn->rettype, &typoutput, &varlena);
	jv.type = jbvString;
	jv.val.string.val = OidOutputFunctionCall(typoutput, value);
	jv.val.string.len = strlen(jv.val.string.val);
	return JsonbPGetDatum(JsonbValueToJsonb(&jv));
}

/*
 * call_job
 *		Call a job's function with its kwargs, as the role that pushed it,
 *		within its limits.  Settings the job changes are undone when it
 *		returns.  In an isolated queue, a C function runs in a forked child.
 */
static Datum
call_job(ClaimedJob *job, bool *isnull)
{
	JobFunction *fn;
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	Datum		result;

	LOCAL_FCINFO(fcinfo, 1);

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(job->pushed_by)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the role that pushed job %lld no longer exists",
						(long long) job->id)));
	fn = job_function(job->function, job->pushed_by);

	if (me->isolated && fn->isolable)
	{
		return isolated_call(&fn->flinfo, job->kwargs, fn->rettype, isnull,
							 job->time_limit_ms, job->memory_limit);
	}

	save_nestlevel = NewGUCNestLevel();
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(job->pushed_by,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);

	InitFunctionCallInfoData(*fcinfo, &fn->flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = job->kwargs;
	fcinfo->args[0].isnull = false;
	limits_arm(job->time_limit_ms, job->memory_limit);
	result = FunctionCallInvoke(fcinfo);
	(void) limits_disarm();
	*isnull = fcinfo->isnull;

	SetUserIdAndSecContext(save_userid, save_sec_context);
	AtEOXact_GUC(true, save_nestlevel);
	return job_result(fn, result, isnull);
}

/*
 * retry_backoff
 *		Seconds before the next attempt: exponential in the attempt number,
 *		capped, with jitter (half fixed, half random) so that jobs that failed
 *		together do not retry together.
 */
static double
retry_backoff(int attempt)
{
	double		delay = me->backoff_base * pow(me->backoff_factor, attempt - 1);
	double		r;

	if (delay > me->backoff_max || isnan(delay))
		delay = me->backoff_max;
#if PG_VERSION_NUM >= 150000
	r = pg_prng_double(&pg_global_prng_state);
#else
	r = (double) random() / ((double) MAX_RANDOM_VALUE + 1);
#endif
	return delay / 2 + r * delay / 2;
}

/*
 * interruption
 *		Why the job just stopped with an error, if not by its own doing:
 *		cancelled by chancy_cancel(), or its executor asked to stop.
 */
static const char *
interruption(ClaimedJob *job)
{
	if (me->cancel_job == job->id)
		return "cancelled";
	if (shutdown_requested)
		return "the executor was stopped while the job ran; it runs again";
	return NULL;
}

/*
 * run_job
 *		Run a claimed job and record its outcome, in one transaction.
 *		Cancellation interrupts lead to no outcome here: the row is already
 *		cancelled, or it is put back without using an attempt.
 */
static void
run_job(ClaimedJob *job)
{
	MemoryContext oldcxt;
	ResourceOwner oldowner;
	ErrorData  *edata = NULL;
	Datum		result = (Datum) 0;
	bool		result_null = true;
	ChancyCatalog *cat;
	const char *interrupted = NULL;
	bool		held = true;
	const char *state = "succeeded";

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	cat = chancy_catalog(chancy_nsp);
	pgstat_report_activity(STATE_RUNNING,
						   psprintf("chancy job %lld: %s", (long long) job->id, job->name));

	current_job = job;
	current_info.id = job->id;
	current_info.name = job->name;
	current_info.queue = job->queue;
	current_info.attempt = job->attempt;
	current_info.max_attempts = job->max_attempts;
	*current_info_var = &current_info;

	oldcxt = CurrentMemoryContext;
	oldowner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		if (shutdown_requested)
			ereport(ERROR,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("the executor is stopping")));
		result = call_job(job, &result_null);
		if (!result_null)
		{
			MemoryContext cxt = MemoryContextSwitchTo(job_cxt);

			result = datumCopy(result, false, -1);
			MemoryContextSwitchTo(cxt);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		int			hit = limits_disarm();

		MemoryContextSwitchTo(job_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		limits_explain(edata, hit, job->time_limit_ms, job->memory_limit);
		if (hit == LIMIT_NONE)
			interrupted = interruption(job);
	}
	PG_END_TRY();
	current_job = NULL;
	*current_info_var = NULL;

	/* recording the outcome must not be cancelled by a late interrupt */
	HOLD_CANCEL_INTERRUPTS();
	if (edata == NULL)
		held = queue_succeeded(cat, job, result, result_null);
	else if (interrupted && strcmp(interrupted, "cancelled") == 0)
		held = false;			/* chancy_cancel() already recorded it */
	else if (interrupted)
	{
		held = queue_requeue(cat, job, interrupted);
		state = "put back";
	}
	else
	{
		state = queue_failed(cat, job, edata, retry_backoff(job->attempt));
		held = state != NULL;
	}
	PopActiveSnapshot();
	if (held)
		CommitTransactionCommand();
	else
	{
		/* cancelled or recovered meanwhile: its effects must not stay */
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("chancy job %lld (%s) was cancelled or recovered while it ran; its outcome is discarded",
						(long long) job->id, job->name)));
	}
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();

	if (held && edata != NULL && !interrupted)
		ereport(LOG,
				(errmsg("chancy job %lld (%s) attempt %d of %d failed: %s",
						(long long) job->id, job->name, job->attempt,
						job->max_attempts, edata->message),
				 errdetail("The job is now %s.", state)));
	wakeup_job_done(job->id);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * run_one
 *		Claim the next ready job of our queue and run it.  False if there was
 *		none; then *timeout_ms says how long to sleep.
 */
static bool
run_one(long *timeout_ms)
{
	ClaimedJob *job;
	MemoryContext old;
	ChancyCatalog *cat;
	TimestampTz due = 0;
	int64		before;

	MemoryContextReset(job_cxt);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	cat = chancy_catalog(chancy_nsp);
	old = MemoryContextSwitchTo(job_cxt);
	job = queue_claim(cat, me->queue,
					  (int64) pg_atomic_fetch_add_u64(&chancy_shared->claims, 1));
	MemoryContextSwitchTo(old);
	if (job == NULL)
		due = queue_next_due(cat, me->queue);
	PopActiveSnapshot();
	CommitTransactionCommand();

	if (job == NULL)
	{
		*timeout_ms = FALLBACK_SLEEP_MS;
		if (due != 0)
		{
			long		secs;
			int			usecs;

			TimestampDifference(GetCurrentTimestamp(), due, &secs, &usecs);
			*timeout_ms = Min(*timeout_ms, secs * 1000 + (usecs + 999) / 1000);
		}
		return false;
	}

	me->idle = false;
	me->job_id = job->id;
	if (job->time_limit_ms == 0)
		job->time_limit_ms = me->time_limit_ms;
	if (job->memory_limit == 0)
		job->memory_limit = (int64) chancy_memory_limit * 1024;
	before = limits_data_size();
	run_job(job);
	me->job_id = 0;
	me->jobs_done++;

	/* memory the job leaked (malloc without free) only a new process frees */
	if (limits_data_size() - before > LEAK_LIMIT)
	{
		ereport(LOG,
				(errmsg("chancy job %lld (%s) left its executor %lld MB larger; a fresh executor replaces it",
						(long long) job->id, job->name,
						(long long) ((limits_data_size() - before) / (1024 * 1024)))));
		me->stop = true;
	}
	return true;
}

/*
 * recover
 *		After an error outside a job (claiming, recording an outcome): report
 *		it, clean up, and go on, unless chancy itself is gone.
 */
static void
recover(void)
{
	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(TopMemoryContext);
	EmitErrorReport();
	AbortOutOfAnyTransaction();
	FlushErrorState();
	current_job = NULL;
	*current_info_var = NULL;
	me->job_id = 0;
	RESUME_INTERRUPTS();

	chancy_nsp = chancy_extension_schema();
	if (!OidIsValid(chancy_nsp))
	{
		ereport(LOG,
				(errmsg("chancy executor of queue \"%s\" is exiting: the extension was dropped",
						me->queue)));
		proc_exit(0);
	}
	/* do not spin on a persistent error */
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 1000, PG_WAIT_EXTENSION);
}

/*
 * chancy_executor_main
 *		Entry point of an executor; arg is its slot in shared memory.
 */
void
chancy_executor_main(Datum arg)
{
	uint64		generation;
	Oid			dboid;

	me = &chancy_shared->executors[DatumGetInt32(arg)];
	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));
	my_generation = generation;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, executor_sigterm);
	pqsignal(SIGINT, StatementCancelHandler);
	BackgroundWorkerUnblockSignals();

	/* a start requested by a supervisor that has gone is void */
	LWLockAcquire(chancy_shared->lock, LW_SHARED);
	dboid = me->generation == generation && me->pid == 0 ? me->dboid : InvalidOid;
	LWLockRelease(chancy_shared->lock);
	if (!OidIsValid(dboid))
		proc_exit(0);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	LWLockAcquire(chancy_shared->lock, LW_EXCLUSIVE);
	if (me->generation != generation || me->pid != 0)
	{
		LWLockRelease(chancy_shared->lock);
		proc_exit(0);
	}
	me->pid = MyProcPid;
	me->latch = MyLatch;
	me->idle = true;
	me->job_id = 0;
	me->jobs_done = 0;
	me->started_at = GetCurrentTimestamp();
	LWLockRelease(chancy_shared->lock);
	before_shmem_exit(executor_detach, (Datum) 0);

	pgstat_report_appname(psprintf("chancy executor: %s", me->queue));
	job_cxt = AllocSetContextCreate(TopMemoryContext, "chancy job",
									ALLOCSET_DEFAULT_SIZES);
	current_info_var = (void **) find_rendezvous_variable("chancy_current_job");
	limits_init();

	chancy_nsp = chancy_extension_schema();
	if (!OidIsValid(chancy_nsp))
		proc_exit(0);

	for (;;)
	{
		long		timeout_ms = FALLBACK_SLEEP_MS;
		bool		worked = false;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (me->stop || shutdown_requested)
			break;
		if (limits_grown())
		{
			ereport(LOG,
					(errmsg("chancy executor of queue \"%s\" has grown by more than chancy.executor_max_growth; a fresh one replaces it",
							me->queue)));
			break;
		}

		ResetLatch(MyLatch);
		me->idle = true;
		pg_memory_barrier();

		now = GetCurrentTimestamp();
		if (me->paused_until > now)
		{
			long		secs;
			int			usecs;

			TimestampDifference(now, me->paused_until, &secs, &usecs);
			timeout_ms = Min(timeout_ms, secs * 1000 + (usecs + 999) / 1000);
		}
		else
		{
			PG_TRY();
			{
				worked = run_one(&timeout_ms);
			}
			PG_CATCH();
			{
				recover();
			}
			PG_END_TRY();
		}
		if (worked)
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout_ms, 1), PG_WAIT_EXTENSION);
	}
	proc_exit(0);
}
