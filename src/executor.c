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
#include "commands/trigger.h"
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

/* a finished job waits at most this long for its group to commit */
#define GROUP_COMMIT_US 5000

/* a job that leaves the process this much larger leaked: recycle it */
#define LEAK_LIMIT ((int64) 64 * 1024 * 1024)

/* A job function, resolved once per executor. */
typedef struct JobFunction
{
	char		spec[NAMEDATALEN * 3];	/* chancy_jobs.function */
	Oid			oid;			/* InvalidOid for a library:symbol */
	Oid			rettype;		/* InvalidOid for a library:symbol */
	bool		isolable;		/* C code: may run in an isolated child */
	int64		last_us;		/* how long its last run took */
	FmgrInfo	flinfo;
} JobFunction;

static ChancyExecutor *me = NULL;
static ConstraintsSetStmt all_immediate = {T_ConstraintsSetStmt, NIL, false};
static uint64 my_generation = 0;
static Oid	chancy_nsp = InvalidOid;
static MemoryContext job_cxt = NULL;	/* reset before each job */
static MemoryContext functions_cxt = NULL;
static HTAB *functions = NULL;
static uint64 functions_generation = 0;

static ClaimedJob **batch = NULL; /* the jobs claimed together */
static int	batch_n = 0;
static int64 recent_us = INT64_MAX;	/* how long the last job took */
static int64 start_size = 0;	/* data size when the executor started */
static int64 last_size = 0;		/* data size at the last look for leaks */
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

	/*
	 * The job runs as its role in a security-restricted operation (no SET
	 * ROLE, no temporary objects that later jobs of other roles would see),
	 * and whatever settings it changes are undone after it, SET or not.
	 */
	save_nestlevel = NewGUCNestLevel();
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(job->pushed_by,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	InitFunctionCallInfoData(*fcinfo, &fn->flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = job->kwargs;
	fcinfo->args[0].isnull = false;
	limits_arm(job->time_limit_ms, job->memory_limit);
	result = FunctionCallInvoke(fcinfo);
	(void) limits_disarm();
	*isnull = fcinfo->isnull;

	/* deferred constraints are checked now, as this job's failure if any */
	AfterTriggerSetState(&all_immediate);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	AtEOXact_GUC(false, save_nestlevel);
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
 *		Run a claimed job in its own subtransaction of its group's
 *		transaction.  True if it succeeded (its result is then in *result,
 *		and the group records it); a failure is recorded here, after the
 *		subtransaction is rolled back; an interrupted job is put back.
 */
static bool
run_job(ChancyCatalog *cat, ClaimedJob *job, Datum *result, bool *result_null)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *edata = NULL;
	const char *interrupted = NULL;
	bool		held = true;

	pgstat_report_activity(STATE_RUNNING, job->name);
	current_job = job;
	current_info.id = job->id;
	current_info.name = job->name;
	current_info.queue = job->queue;
	current_info.attempt = job->attempt;
	current_info.max_attempts = job->max_attempts;
	*current_info_var = &current_info;

	/* a cancel that came too late for the previous job is not for this one */
	if (me->cancel_job != job->id && !shutdown_requested)
		QueryCancelPending = false;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		if (shutdown_requested)
			ereport(ERROR,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("the executor is stopping")));
		*result = call_job(job, result_null);
		if (!*result_null)
		{
			MemoryContext cxt = MemoryContextSwitchTo(job_cxt);

			*result = datumCopy(*result, false, -1);
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
	if (edata == NULL)
		return true;

	/* recording the outcome must not be cancelled by a late interrupt */
	HOLD_CANCEL_INTERRUPTS();
	if (interrupted && strcmp(interrupted, "cancelled") == 0)
		held = false;			/* chancy_cancel() recorded it */
	else if (interrupted)
		held = queue_requeue(cat, job, interrupted);
	else
	{
		const char *state = queue_failed(cat, job, edata, retry_backoff(job->attempt));

		held = state != NULL;
		if (held)
			ereport(LOG,
					(errmsg("chancy job %lld (%s) attempt %d of %d failed: %s",
							(long long) job->id, job->name, job->attempt,
							job->max_attempts, edata->message),
					 errdetail("The job is now %s.", state)));
	}
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
	if (!held)
		ereport(LOG,
				(errmsg("chancy job %lld (%s) was cancelled or recovered while it ran; its outcome is discarded",
						(long long) job->id, job->name)));
	return false;
}

/*
 * predicted_long
 *		Did the last run of this function take longer than a group may wait?
 *		Such a job runs (and commits) alone.
 */
static bool
predicted_long(const char *spec)
{
	JobFunction *fn;

	if (functions == NULL || strlen(spec) >= sizeof(fn->spec))
		return false;
	fn = hash_search(functions, spec, HASH_FIND, NULL);
	return fn != NULL && fn->last_us >= GROUP_COMMIT_US;
}

/* Remember how long a run of this function took. */
static void
note_duration(const char *spec, int64 us)
{
	JobFunction *fn;

	if (functions == NULL || strlen(spec) >= sizeof(fn->spec))
		return;
	fn = hash_search(functions, spec, HASH_FIND, NULL);
	if (fn)
		fn->last_us = us;
}

/*
 * put_back_range
 *		Put back claimed jobs from..to-1 that still carry our claim (they did
 *		not run, or their outcome was undone), in a transaction of their own.
 */
static void
put_back_range(int from, int to, const char *why)
{
	ChancyCatalog *cat;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	cat = chancy_catalog(chancy_nsp);
	for (int i = from; i < to; i++)
		(void) queue_requeue(cat, batch[i], why);
	PopActiveSnapshot();
	CommitTransactionCommand();
	for (int i = from; i < to; i++)
		wakeup_job_done(batch[i]->id);
}

/*
 * check_leaks
 *		Memory a job leaked (malloc without free) only a new process frees:
 *		if this process grew by more than LEAK_LIMIT since the last look, or by
 *		more than chancy.executor_max_growth since it started (leaks, caches),
 *		it makes way for a fresh executor.  Looked at after failed jobs (a
 *		memory limit) and every 64 jobs, since it costs a read of /proc.
 */
static void
check_leaks(void)
{
	int64		size = limits_data_size();

	if (size - last_size > LEAK_LIMIT ||
		size - start_size > (int64) chancy_executor_max_growth * 1024)
	{
		ereport(LOG,
				(errmsg("chancy executor of queue \"%s\" grew by %lld MB while running jobs (%lld MB since it started); a fresh executor replaces it",
						me->queue, (long long) ((size - last_size) / (1024 * 1024)),
						(long long) ((size - start_size) / (1024 * 1024)))));
		me->stop = true;
	}
	last_size = size;
}

/*
 * run_batch
 *		Claim up to chancy.batch_size ready jobs of our queue in one statement
 *		(committed as running) and run them in order.  Jobs that finish
 *		quickly commit in groups: a group commits once its first job has
 *		waited GROUP_COMMIT_US, or before a job that ran long last time (which
 *		then commits alone).  False if no job was ready; then *timeout_ms says
 *		how long to sleep.
 */
static bool
run_batch(long *timeout_ms)
{
	MemoryContext old;
	ChancyCatalog *cat;
	TimestampTz due = 0;
	int			next = 0;

	MemoryContextReset(job_cxt);
	batch = MemoryContextAlloc(job_cxt, sizeof(ClaimedJob *) * chancy_batch_size);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	cat = chancy_catalog(chancy_nsp);

	old = MemoryContextSwitchTo(job_cxt);
	/* batches are for short jobs: long ones would wait for each other */
	me->claim = (int64) pg_atomic_fetch_add_u64(&chancy_shared->claims, 1);
	batch_n = queue_claim(cat, me->queue, me->claim,
						  recent_us < GROUP_COMMIT_US ? chancy_batch_size : 1, batch);
	MemoryContextSwitchTo(old);
	if (batch_n == 0)
		due = queue_next_due(cat, me->queue);
	PopActiveSnapshot();
	CommitTransactionCommand();

	if (batch_n == 0)
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

	while (next < batch_n && !me->stop && !shutdown_requested)
	{
		int			first = next;
		int			nsucceeded = 0;
		TimestampTz first_done = 0;
		Datum	   *ids = MemoryContextAlloc(job_cxt, sizeof(Datum) * batch_n);
		Datum	   *results = MemoryContextAlloc(job_cxt, sizeof(Datum) * batch_n);
		bool	   *result_nulls = MemoryContextAlloc(job_cxt, sizeof(bool) * batch_n);
		Datum	   *done_at = MemoryContextAlloc(job_cxt, sizeof(Datum) * batch_n);
		bool		held = true;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		cat = chancy_catalog(chancy_nsp);
		while (next < batch_n)
		{
			ClaimedJob *job = batch[next];
			TimestampTz start;
			TimestampTz end;

			if (next > first && predicted_long(job->function))
				break;
			if (job->time_limit_ms == 0)
				job->time_limit_ms = me->time_limit_ms;
			if (job->memory_limit == 0)
				job->memory_limit = (int64) chancy_memory_limit * 1024;
			me->job_id = job->id;
			start = GetCurrentTimestamp();
			if (run_job(cat, job, &results[nsucceeded], &result_nulls[nsucceeded]))
			{
				ids[nsucceeded] = Int64GetDatum(job->id);
				done_at[nsucceeded++] = TimestampTzGetDatum(GetCurrentTimestamp());
			}
			else
				check_leaks();
			end = GetCurrentTimestamp();
			recent_us = end - start;
			note_duration(job->function, recent_us);
			me->job_id = 0;
			next++;
			if (first_done == 0)
				first_done = end;
			if (me->stop || shutdown_requested ||
				end - first_done >= GROUP_COMMIT_US || recent_us >= GROUP_COMMIT_US)
				break;
		}

		/* the group's successes, in one statement, commit with their effects */
		HOLD_CANCEL_INTERRUPTS();
		if (nsucceeded > 0)
			held = queue_succeeded(cat, batch[first]->claim, nsucceeded, ids, results,
								   result_nulls, done_at);
		PopActiveSnapshot();
		if (held)
			CommitTransactionCommand();
		else
		{
			/* a job was cancelled or recovered meanwhile: undo the group */
			AbortCurrentTransaction();
			ereport(LOG,
					(errmsg("a job of a group run by chancy's executor of queue \"%s\" was cancelled or recovered while it ran",
							me->queue),
					 errdetail("The group's outcomes are discarded; its other jobs run again.")));
			put_back_range(first, next, "its group was rolled back; it runs again");
		}
		QueryCancelPending = false;
		RESUME_CANCEL_INTERRUPTS();
		for (int i = first; i < next; i++)
			wakeup_job_done(batch[i]->id);
		me->jobs_done += next - first;
		if (me->jobs_done % 64 == 0)
			check_leaks();
	}
	if (next < batch_n)
		put_back_range(next, batch_n,
					   "the executor stopped before running the job; it runs again");
	batch_n = 0;
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

	/* the claimed jobs not yet done go back (those done no longer match) */
	if (batch_n > 0)
	{
		PG_TRY();
		{
			put_back_range(0, batch_n, "the executor failed outside the job; it runs again");
		}
		PG_CATCH();
		{
			EmitErrorReport();
			AbortOutOfAnyTransaction();
			FlushErrorState();
			batch_n = 0;
		}
		PG_END_TRY();
	}

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
	start_size = last_size = limits_data_size();

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
		if (me->stop || shutdown_requested || me->generation != my_generation)
			break;

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
				worked = run_batch(&timeout_ms);
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
