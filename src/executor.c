/*-------------------------------------------------------------------------
 *
 * executor.c
 *	  The executor: a long-lived background worker that claims the ready
 *	  jobs of one queue and runs them, one at a time, as the roles that
 *	  pushed them.
 *
 * A claim (one transaction) takes the next ready job, which starts at once,
 * and, while the functions of the next ones are known to be short, a batch
 * behind it (queue.c, PLAN_CLAIM).  The jobs then run one after the other,
 * each in its own subtransaction, in groups that commit together: a group
 * commits once its first job has waited GROUP_COMMIT_US or its
 * subtransactions hold GROUP_MAX_SUBXIDS XIDs, and a job that ran
 * longer than that commits alone and hands the rest of the batch back, so
 * that no executor idles while another holds ready jobs.  A job that
 * succeeds commits its effects and "succeeded" together; one that fails has
 * its effects rolled back and its error recorded in the same transaction.
 *
 * Before each job the executor looks whether its queue changed, a job of its
 * batch was cancelled, or it was asked to stop: if so, it hands the rest of
 * the batch back (PLAN_RELEASE, which also records the cancels asked) and
 * claims again, so a pause or a cancel acts on jobs claimed but not
 * started.  A job being run is stopped by limits.c (time and memory limits,
 * a cancel, a shutdown), for good.
 *
 * However the executor leaves (an error, FATAL, exit() in a job), its exit
 * callback gives back the jobs it holds; only the job it was executing is
 * charged, and only if the exit was that job's doing.  A crash is charged
 * through the ledger (ledger.c) by the supervisor.
 *
 * When no job is ready, it sleeps on its latch until a push to its queue
 * commits (wakeup.c), its queue changes, or its next scheduled job is due.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#endif

#include "chancy_internal.h"

/* sleep at most this long without a wake-up: a safety net, not the mechanism */
#define FALLBACK_SLEEP_MS 30000

/* a finished job waits at most this long for its group to commit */
#define GROUP_COMMIT_US 5000

/*
 * A group ends once its jobs' subtransactions hold this many XIDs: past
 * PGPROC_MAX_CACHED_SUBXIDS of them the process's cache overflows, and every
 * snapshot in the cluster (standbys too) must then look in pg_subtrans.  The
 * margin is for the next job's own (a PL/pgSQL exception block that writes
 * takes one more).
 */
#define GROUP_MAX_SUBXIDS (PGPROC_MAX_CACHED_SUBXIDS - 16)

/* a job that leaves the process this much larger leaked: recycle it */
#define LEAK_LIMIT ((int64) 64 * 1024 * 1024)

/* How a job run ended. */
typedef enum Outcome
{
	OUTCOME_SUCCEEDED,			/* to be recorded with its group */
	OUTCOME_RECORDED,			/* failed or cancelled: recorded already */
	OUTCOME_PUT_BACK			/* interrupted by a shutdown: goes back */
} Outcome;

/* How long the last run of a job function took, by its spec. */
typedef struct Duration
{
	char		spec[NAMEDATALEN * 3];
	int64		last_us;
} Duration;

static ChancyExecutor *me = NULL;
static int	my_slot = -1;
static Oid	chancy_nsp = InvalidOid;
static ConstraintsSetStmt all_immediate = {T_ConstraintsSetStmt, NIL, false};
static volatile sig_atomic_t shutdown_requested = false;

/* the claimed batch; its memory is reset before each claim */
static MemoryContext batch_cxt = NULL;
static ClaimedJob **batch = NULL;
static int	batch_size = 0;		/* its length */
static int	batch_n = 0;			/* jobs in it */
static int	batch_next = 0;		/* the first not yet handled */
static int64 batch_claim = 0;
static QueueSettings queue;		/* its queue's settings, as claimed */

/* the job being executed, published to chancy.h and chancy_current_job() */
static ClaimedJob *current_job = NULL;
static ChancyJobInfo running;
static void **running_var = NULL;

static HTAB *durations = NULL;
static ArrayType *short_functions = NULL;	/* rebuilt when NULL */
static int64 start_size = 0;	/* data size when the executor started */
static int64 last_size = 0;		/* data size at the last look for leaks */
static bool replace_me = false; /* grew too much: leave after the batch */
static int64 jobs_run = 0;

/*
 * executor_sigterm
 *		SIGTERM (server shutdown, DROP DATABASE, the supervisor): leave, and
 *		stop the running job; it goes back without using an attempt.
 */
static void
executor_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	shutdown_requested = true;
	limits_stop(STOP_SHUTDOWN);
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * executor_cancel_signal
 *		SIGUSR2: a chancy_cancel() of a job this executor holds committed.
 *		It stops the job only if it is the one being executed.
 */
static void
executor_cancel_signal(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (slots_cancel_is_mine())
		limits_stop(STOP_CANCEL);
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Remember how long a run of this function took. */
static void
note_duration(const char *spec, int64 us)
{
	Duration   *d;
	bool		found;

	if (strlen(spec) >= sizeof(d->spec))
		return;
	if (durations == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(d->spec);
		ctl.entrysize = sizeof(Duration);
		durations = hash_create("chancy job durations", 32, &ctl,
								HASH_ELEM | HASH_STRINGS);
	}
	d = hash_search(durations, spec, HASH_ENTER, &found);
	if (!found || (d->last_us < GROUP_COMMIT_US) != (us < GROUP_COMMIT_US))
		short_functions = NULL;
	d->last_us = us;
}

/*
 * known_short
 *		The functions whose last run was shorter than a group may wait: the
 *		only ones a claim takes as a batch.
 */
static ArrayType *
known_short(void)
{
	HASH_SEQ_STATUS status;
	Duration   *d;
	Datum	   *elems;
	int			n = 0;
	MemoryContext old;

	if (short_functions != NULL)
		return short_functions;
	old = MemoryContextSwitchTo(TopMemoryContext);
	elems = palloc(sizeof(Datum) * (durations ? hash_get_num_entries(durations) + 1 : 1));
	if (durations)
	{
		hash_seq_init(&status, durations);
		while ((d = hash_seq_search(&status)) != NULL)
			if (d->last_us < GROUP_COMMIT_US)
				elems[n++] = CStringGetTextDatum(d->spec);
	}
	short_functions = construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT);
	MemoryContextSwitchTo(old);
	return short_functions;
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
	double		delay = queue.backoff_base * pow(queue.backoff_factor, attempt - 1);
	double		r;

	if (isnan(delay) || delay > queue.backoff_max)
		delay = queue.backoff_max;
#if PG_VERSION_NUM >= 150000
	r = pg_prng_double(&pg_global_prng_state);
#else
	r = (double) random() / ((double) MAX_RANDOM_VALUE + 1);
#endif
	return delay / 2 + r * delay / 2;
}

/*
 * job_function
 *		The function a claimed job runs, with the errors it fails with: its
 *		role or function is gone, or the role may no longer execute it.
 */
static JobFunction *
job_function(ClaimedJob *job)
{
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(job->pushed_by)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role %u that pushed job " INT64_FORMAT " no longer exists",
						job->pushed_by, job->id)));
	return function_for_job(job->function, job->function_oid, job->function_owner,
							job->function_catalog, job->function_digest,
							job->pushed_by);
}

/*
 * become_pusher
 *		Run as the role that pushed the job, in a security-restricted
 *		operation: the job can neither change its role (SET ROLE, SET SESSION
 *		AUTHORIZATION: the executor's session is a superuser's) nor make
 *		temporary tables, prepared statements or held cursors.  The caller
 *		restores sec_context (and its GUC nest level, or for a command, see
 *		run_command(), resets the settings).
 */
static void
become_pusher(ClaimedJob *job, int sec_context)
{
	SetUserIdAndSecContext(job->pushed_by,
						   sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/*
 * call_job
 *		Call a job's function with its kwargs, as the role that pushed it, in
 *		a security-restricted operation (no SET ROLE, no temporary objects
 *		that later jobs of other roles would see); settings the job changes
 *		are undone when it returns (an error undoes all of it with the
 *		subtransaction).  In an isolated queue, a C function runs in a forked
 *		child.  Returns the result as jsonb.
 */
static Datum
call_job(ClaimedJob *job, bool *isnull)
{
	JobFunction *fn = job_function(job);
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	Datum		result;

	save_nestlevel = NewGUCNestLevel();
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	become_pusher(job, save_sec_context);
	if (queue.isolated && fn->is_c)
		result = isolated_call(fn, job->kwargs, isnull, job->time_limit_ms,
							   job->memory_limit);
	else
	{
		LOCAL_FCINFO(fcinfo, 1);

		InitFunctionCallInfoData(*fcinfo, &fn->flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = job->kwargs;
		fcinfo->args[0].isnull = false;
		result = FunctionCallInvoke(fcinfo);
		*isnull = fcinfo->isnull;
		result = function_result_jsonb(fn, result, isnull);
	}
	SetUserIdAndSecContext(save_userid, save_sec_context);
	AtEOXact_GUC(false, save_nestlevel);
	return result;
}

/*
 * stopped_error
 *		The error of a job that returned although it was told to stop: a
 *		fired limit, a cancel or a shutdown is never a success.
 */
static void
stopped_error(JobStop why, ClaimedJob *job)
{
	if (why == STOP_TIME_LIMIT)
		limits_time_error(job->time_limit_ms);
	ereport(ERROR,
			(errcode(why == STOP_MEMORY_LIMIT ? ERRCODE_OUT_OF_MEMORY :
					 why == STOP_SHUTDOWN ? ERRCODE_ADMIN_SHUTDOWN :
					 ERRCODE_QUERY_CANCELED),
			 errmsg("job went on after it was told to stop")));
}

/*
 * leave_as_found
 *		After a job, whatever its outcome: what a job can leave in the
 *		session or its group's transaction, for a later job to find, goes.
 *		Its settings went with its GUC nest level, its role with the
 *		subtransaction; left are session advisory locks, sequence state
 *		(lastval), cursors (those a successful job left open pass to the
 *		group's transaction), SET CONSTRAINTS and temporary objects.
 *		(Large-object descriptors pass to the group too; a group holds the
 *		jobs of one role only, see run_group.)
 */
static void
leave_as_found(void)
{
	Oid			temp;
	Oid			temp_toast;

	LockReleaseSession(USER_LOCKMETHOD);
	ResetSequenceCaches();
	PortalHashTableDeleteAll();
	/* no deferred event is pending: a job, as a security-restricted
	 * operation, cannot queue one */
	AfterTriggerSetState(&all_immediate);

	/*
	 * Temporary objects (a security-restricted operation may still make a
	 * temporary function) go only with the session: this executor makes way
	 * for a fresh one after its group, which is this job's role's.
	 */
	GetTempNamespaceState(&temp, &temp_toast);
	if (OidIsValid(temp) && !replace_me)
	{
		ereport(LOG,
				(errmsg("executor of queue \"%s\" is replaced by a fresh one", me->queue),
				 errdetail("A job of role \"%s\" made temporary objects, which only the end of its session drops.",
						   GetUserNameFromId(current_job->pushed_by, true))));
		replace_me = true;
	}
}

/*
 * take_job_error
 *		In the PG_CATCH of a job: its limits end (unless they did, *why
 *		saying why it was stopped), and its error is taken, into the batch's
 *		memory.
 */
static ErrorData *
take_job_error(volatile JobStop *why)
{
	ErrorData  *edata;

	if (*why == STOP_NONE)
		*why = limits_job_end();
	MemoryContextSwitchTo(batch_cxt);
	edata = CopyErrorData();
	FlushErrorState();
	return edata;
}

/* How a run that failed ended, by the state queue_failed() returned. */
static StatsCounter
ended_as(const char *state)
{
	if (state == NULL)
		return STATS_NONE;		/* no longer ours */
	if (strcmp(state, "failed") == 0)
		return STATS_FAILED;
	return strcmp(state, "cancelled") == 0 ? STATS_CANCELLED : STATS_RETRIED;
}

/*
 * record_failure
 *		In the group's transaction: record how a job that raised edata
 *		ended.  Cancelled (by a cancel, or by itself as role self_cancel),
 *		or failed (retrying if it has attempts left); a job stopped by a
 *		shutdown is left to go back, but a command (which may have committed
 *		some of its work) has used its attempt.
 */
static Outcome
record_failure(ChancyCatalog *cat, ClaimedJob *job, ErrorData *edata, JobStop why,
			   Oid self_cancel, TimestampTz started_at)
{
	Outcome		outcome = OUTCOME_RECORDED;
	bool		held = true;

	/* recording the outcome must not be cancelled by a late interrupt */
	HOLD_CANCEL_INTERRUPTS();
	if (OidIsValid(self_cancel) || why == STOP_CANCEL)
	{
		held = queue_cancelled(cat, job, true, self_cancel, started_at);
		job->ended = held ? STATS_CANCELLED : STATS_NONE;
	}
	else if ((why == STOP_SHUTDOWN || shutdown_requested) && !job->command)
		outcome = OUTCOME_PUT_BACK;
	else
	{
		const char *state;

		if (why == STOP_SHUTDOWN || shutdown_requested)
		{
			edata->sqlerrcode = ERRCODE_ADMIN_SHUTDOWN;
			edata->detail = edata->message;
			edata->message = pstrdup("command was stopped by a shutdown of its executor");
			edata->hint = pstrdup("It may have committed some of its work: it runs again only if it has attempts left.");
		}
		limits_explain(edata, why, job->time_limit_ms, job->memory_limit);
		state = queue_failed(cat, job, edata, retry_backoff(job->attempt), started_at);
		held = state != NULL;
		job->ended = ended_as(state);
		if (held)
			ereport(LOG,
					(errcode(edata->sqlerrcode),
					 errmsg("job " INT64_FORMAT " (%s) failed on attempt %d of %d: %s",
							job->id, job->name, job->attempt, job->max_attempts,
							edata->message),
					 errdetail("The job is now %s.", state)));
	}
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
	if (!held)
		ereport(LOG,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outcome of job " INT64_FORMAT " (%s) discarded", job->id, job->name),
				 errdetail("The job no longer carries the claim of this executor.")));
	return outcome;
}

/*
 * run_job
 *		Run a claimed job in its own subtransaction of its group's
 *		transaction.  A success leaves its result in *result for the group to
 *		record; a failure or a cancel is recorded here, after the
 *		subtransaction is rolled back; a job stopped by a shutdown is left
 *		to go back.
 */
static Outcome
run_job(ChancyCatalog *cat, ClaimedJob *job, TimestampTz started_at,
		Datum *result, bool *result_null)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile JobStop why = STOP_NONE;
	volatile Oid self_cancel = InvalidOid;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		limits_job_begin(job->time_limit_ms, job->memory_limit);
		if (chancy_track_costs)
			stats_cost_begin();
		*result = call_job(job, result_null);
		if (chancy_track_costs)
			stats_cost_end(&job->cost);
		why = limits_job_end();
		if (why != STOP_NONE)
			stopped_error(why, job);
		self_cancel = wakeup_take_self_cancel(job->id);
		if (OidIsValid(self_cancel))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("job cancelled itself")));
		if (!*result_null)
		{
			MemoryContext cxt = MemoryContextSwitchTo(batch_cxt);

			*result = datumCopy(*result, false, -1);
			MemoryContextSwitchTo(cxt);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		if (chancy_track_costs && !job->cost.valid)
			stats_cost_end(&job->cost);
		edata = take_job_error(&why);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	leave_as_found();
	if (edata == NULL)
		return OUTCOME_SUCCEEDED;
	return record_failure(cat, job, edata, why, self_cancel, started_at);
}

/*
 * begin_group
 *		Open the transaction of a group of jobs, whose outcomes commit with
 *		their effects.
 */
static ChancyCatalog *
begin_group(void)
{
	ChancyCatalog *cat;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	cat = chancy_catalog(chancy_nsp);
	/* DROP EXTENSION waits for the jobs being run, whose outcome it needs */
	LockRelationOid(cat->jobs_relid, RowExclusiveLock);
	/* deferred constraints are checked as each statement of a job ends */
	AfterTriggerSetState(&all_immediate);
	return cat;
}

/*
 * run_command
 *		Run a command job (command.c) as its pusher, outside any
 *		transaction, then open its group's transaction (which it has alone)
 *		and record a failure there, as run_job() does; a success is left in
 *		*result for the group.  A command commits as it goes, so one that
 *		returned succeeded whatever stopped it after, and one a shutdown
 *		stopped has used its attempt (it may have committed some of its
 *		work).  The settings it made in the session are reset, and this
 *		executor makes way for a fresh one after the group.
 */
static Outcome
run_command(ClaimedJob *job, TimestampTz started_at, Datum *result, bool *result_null)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile JobStop why = STOP_NONE;
	Oid			save_userid;
	int			save_sec_context;
	Oid			self_cancel;
	ErrorData  *edata = NULL;
	ChancyCatalog *cat;

	replace_me = true;
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		(void) job_function(job);
		CommitTransactionCommand();
		MemoryContextSwitchTo(batch_cxt);
		limits_job_begin(job->time_limit_ms, job->memory_limit);
		if (chancy_track_costs)
			stats_cost_begin();
		become_pusher(job, save_sec_context);
		*result = command_run(job->kwargs);
		*result_null = false;
		if (chancy_track_costs)
			stats_cost_end(&job->cost);
		SetUserIdAndSecContext(save_userid, save_sec_context);
		(void) limits_job_end();
	}
	PG_CATCH();
	{
		debug_query_string = NULL;
		if (chancy_track_costs && !job->cost.valid)
			stats_cost_end(&job->cost);
		edata = take_job_error(&why);
		AbortOutOfAnyTransaction();
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_RUNNING, job->name);

	/* what the command set (default_transaction_read_only...) must not
	 * stop its outcome from being recorded */
	StartTransactionCommand();
	ResetAllOptions();
	CommitTransactionCommand();

	/* a cancel the command made of itself committed with it */
	self_cancel = wakeup_take_self_cancel(job->id);
	cat = begin_group();
	if (edata == NULL && !OidIsValid(self_cancel))
		return OUTCOME_SUCCEEDED;
	if (edata == NULL)
	{
		MemoryContextSwitchTo(batch_cxt);
		edata = palloc0(sizeof(ErrorData));
		edata->sqlerrcode = ERRCODE_QUERY_CANCELED;
		edata->message = pstrdup("job cancelled itself");
		MemoryContextSwitchTo(oldcxt);
	}
	return record_failure(cat, job, edata, why, self_cancel, started_at);
}

/*
 * execute
 *		Execute one claimed job: publish it (slot, ledger, pg_stat_activity,
 *		chancy_current_job()), run it, unpublish it.  False if, just as it
 *		was published, something asked the executor to look again first:
 *		then the job did not run.
 */
static bool
execute(ChancyCatalog *cat, ClaimedJob *job, Outcome *outcome, Datum *result,
		bool *result_null)
{
	TimestampTz started_at = GetCurrentTimestamp();

	/* a stray query cancel that came between jobs is for none of them */
	QueryCancelPending = false;
	if (slots_job_begin(job->id))
	{
		slots_job_end(false);
		return false;
	}
	ledger_executing(MyDatabaseId, job->claim, job->id);
	pgstat_report_activity(STATE_RUNNING, job->name);
	current_job = job;
	memset(&running, 0, sizeof(running));
	running.id = job->id;
	running.name = job->name;
	running.queue = job->queue;
	running.attempt = job->attempt;
	running.max_attempts = job->max_attempts;
	*running_var = &running;
	job->ran = true;			/* its limit tokens are spent (flow_give) */
	job->started_at = started_at;
	job->cost.valid = false;
	job->ended = STATS_NONE;

	if (job->command)
		*outcome = run_command(job, started_at, result, result_null);
	else
		*outcome = run_job(cat, job, started_at, result, result_null);

	job->ended_at = GetCurrentTimestamp();
	*running_var = NULL;
	current_job = NULL;
	ledger_done();
	slots_job_end(true);
	/* a command ends its executor: never batch one behind other jobs */
	if (!job->command)
		note_duration(job->function, GetCurrentTimestamp() - started_at);
	return true;
}

/*
 * check_leaks
 *		Memory a job leaked (malloc without free) only a new process frees:
 *		if this process grew by more than LEAK_LIMIT since the last look, or by
 *		more than chancy.executor_max_growth since it started (leaks, caches),
 *		it makes way for a fresh executor after its batch.  Looked at after
 *		failed jobs (a memory limit) and every 64 jobs: it reads /proc.
 */
static void
check_leaks(void)
{
	int64		size = limits_data_size();

	if (size - last_size > LEAK_LIMIT ||
		size - start_size > (int64) chancy_executor_max_growth * 1024)
	{
		ereport(LOG,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("executor of queue \"%s\" is replaced by a fresh one", me->queue),
				 errdetail("It grew by %lld MB while running jobs, %lld MB since it started.",
						   (long long) ((size - last_size) / (1024 * 1024)),
						   (long long) ((size - start_size) / (1024 * 1024)))));
		replace_me = true;
	}
	last_size = size;
}

/* An int8[] of the ids of batch jobs from..to-1. */
static ArrayType *
batch_ids(int from, int to)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(to - from, 1));

	for (int i = from; i < to; i++)
		ids[i - from] = Int64GetDatum(batch[i]->id);
	return construct_array(ids, to - from, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/* An int8[] of one value, or of none. */
static ArrayType *
int8_one(int64 value, bool none)
{
	Datum		d = Int64GetDatum(value);

	return construct_array(&d, none ? 0 : 1, INT8OID, 8, FLOAT8PASSBYVAL,
						   TYPALIGN_DOUBLE);
}

/*
 * give_back
 *		Hand back the jobs of the batch from "from" on, in a transaction of
 *		its own: they go back to be claimed again (a cancel asked of one is
 *		done now).  guilty is a job to charge a crash, or 0; why notes why a
 *		started job went back.  Idle executors of the queue are woken.
 */
static void
give_back(int from, int64 guilty, const char *why)
{
	ReleaseResult released;
	ListCell   *lc;

	if (from >= batch_n)
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	/* the jobs that finished are for after the commit */
	MemoryContextSwitchTo(batch_cxt);
	queue_release(chancy_catalog(chancy_nsp), int8_one(batch_claim, false),
				  batch_ids(from, batch_n), int8_one(guilty, guilty == 0), why,
				  &released);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	flow_give(batch, from, batch_n);
	foreach(lc, released.finished)
		slots_job_done(*(int64 *) lfirst(lc));
	batch_n = from;
	if (released.released > 0)
		slots_wake_executors(me->queue, released.released);
}

/* chancy_parent_results() of chancy.h, for the running job */
static Jsonb *
sdk_parent_results(void)
{
	return current_job ? workflow_parent_results(chancy_catalog(chancy_nsp)) : NULL;
}

/*
 * steps_ended
 *		In the transaction that recorded them, go on with the workflows of
 *		the jobs[0..njobs) that are steps and ended (queue.c).
 */
static void
steps_ended(ChancyCatalog *cat, ClaimedJob **jobs, int njobs)
{
	StepEnd    *ends = palloc(sizeof(StepEnd) * Max(njobs, 1));
	int			n = 0;

	for (int i = 0; i < njobs; i++)
	{
		ClaimedJob *job = jobs[i];

		if (job->workflow_id == 0 ||
			(job->ended != STATS_SUCCEEDED && job->ended != STATS_FAILED &&
			 job->ended != STATS_CANCELLED))
			continue;
		ends[n].job_id = job->id;
		ends[n].workflow_id = job->workflow_id;
		ends[n].failed = job->ended != STATS_SUCCEEDED;
		ends[n++].was_waiting = false;
	}
	queue_steps_ended(cat, ends, n);
	pfree(ends);
}

/*
 * run_group
 *		Run jobs of the batch from batch_next on in one transaction, and
 *		commit their outcomes together.  Returns false if the executor must
 *		stop running the batch now (hand the rest back): its queue changed,
 *		it is asked to stop, or a job ran long.
 */
static bool
run_group(void)
{
	ChancyCatalog *cat;
	int			first = batch_next;
	int			nsucceeded = 0;
	TimestampTz first_done = 0;
	Datum	   *ids = MemoryContextAlloc(batch_cxt, sizeof(Datum) * batch_n);
	Datum	   *results = MemoryContextAlloc(batch_cxt, sizeof(Datum) * batch_n);
	bool	   *result_nulls = MemoryContextAlloc(batch_cxt, sizeof(bool) * batch_n);
	Datum	   *started = MemoryContextAlloc(batch_cxt, sizeof(Datum) * batch_n);
	Datum	   *done_at = MemoryContextAlloc(batch_cxt, sizeof(Datum) * batch_n);
	JobCost    *costs = MemoryContextAlloc(batch_cxt, sizeof(JobCost) * batch_n);
	bool		go_on = true;
	int			held;
	Oid			group_role;

	/* a command runs before its group's transaction, and alone in it */
	cat = batch[batch_next]->command ? NULL : begin_group();
	group_role = batch[batch_next]->pushed_by;

	while (batch_next < batch_n)
	{
		ClaimedJob *job = batch[batch_next];
		Outcome		outcome;
		TimestampTz start = GetCurrentTimestamp();
		TimestampTz end;

		/* a group's transaction is one role's: what a job leaves in it
		 * (large-object descriptors) is never another role's to find */
		if (job->pushed_by != group_role || (job->command && batch_next > first))
			break;
		if (shutdown_requested ||
			!execute(cat, job, &outcome, &results[nsucceeded], &result_nulls[nsucceeded]))
		{
			go_on = false;
			break;
		}
		if (outcome == OUTCOME_PUT_BACK)
		{
			go_on = false;		/* shutting down: it goes back with the rest */
			break;
		}
		batch_next++;
		end = GetCurrentTimestamp();
		if (outcome == OUTCOME_SUCCEEDED)
		{
			job->ended = STATS_SUCCEEDED;
			costs[nsucceeded] = job->cost;
			ids[nsucceeded] = Int64GetDatum(job->id);
			started[nsucceeded] = TimestampTzGetDatum(start);
			done_at[nsucceeded++] = TimestampTzGetDatum(end);
		}
		else
			check_leaks();
		if (end - start >= GROUP_COMMIT_US || job->command)
		{
			/* it ran long (or it was a command, after which this executor
			 * makes way): the rest of the batch should not wait for it */
			go_on = false;
			break;
		}
		if (first_done == 0)
			first_done = end;
		if (end - first_done >= GROUP_COMMIT_US ||
			MyProc->subxidStatus.count >= GROUP_MAX_SUBXIDS)
			break;
	}

	if (!IsTransactionState())
		(void) begin_group();	/* a command that did not run */
	cat = chancy_catalog(chancy_nsp);

	/* the group's successes, in one statement, commit with their effects */
	HOLD_CANCEL_INTERRUPTS();
	for (int i = first; i < batch_next; i++)
		stats_job_moved(batch[i]);
	held = nsucceeded == 0 ? 0 :
		queue_succeeded(cat, batch_claim, nsucceeded, ids, results, result_nulls,
						started, done_at, costs);
	if (held == nsucceeded)
		steps_ended(cat, &batch[first], batch_next - first);
	PopActiveSnapshot();
	if (held == nsucceeded)
		CommitTransactionCommand();
	else
	{
		/* a claim taken from under us (it should not be): run them again */
		AbortCurrentTransaction();
		ereport(LOG,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outcomes of a group of jobs of queue \"%s\" discarded", me->queue),
				 errdetail("Some of its jobs no longer carried the claim of this executor; the others run again.")));
		batch_next = first;
		go_on = false;
	}
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
	stats_cost_forget();
	flow_give(batch, first, batch_next);
	pgstat_report_stat(false);
	for (int i = first; i < batch_next; i++)
	{
		stats_job_done(batch[i]);
		slots_job_done(batch[i]->id);
	}
	if (batch_next > first)
		slots_jobs_finished();
	jobs_run += batch_next - first;
	if (jobs_run / 64 != (jobs_run - (batch_next - first)) / 64)
		check_leaks();
	return go_on;
}

/*
 * run_batch
 *		Claim ready jobs of our queue and run them.  False if none was ready;
 *		then *timeout_ms says how long to sleep, and *paused whether the
 *		queue is paused.
 */
static bool
run_batch(long *timeout_ms, bool *paused)
{
	ChancyCatalog *cat;
	ClaimResult claimed;
	MemoryContext old;

	MemoryContextReset(batch_cxt);
	batch = NULL;
	/* zeroed: until the claim commits, what holds limit slots ends at a NULL */
	batch_size = chancy_batch_size;
	batch = MemoryContextAllocZero(batch_cxt, sizeof(ClaimedJob *) * batch_size);
	batch_n = batch_next = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	cat = chancy_catalog(chancy_nsp);
	batch_claim = slots_new_claim();
	old = MemoryContextSwitchTo(batch_cxt);
	queue_claim(cat, me->queue, batch_claim, batch_size, known_short(),
				batch, &claimed);
	for (int i = 0; i < claimed.njobs; i++)
		batch[i]->command = OidIsValid(cat->command_fn) &&
			function_here(batch[i]->function, batch[i]->function_oid,
						  batch[i]->function_owner, batch[i]->function_catalog,
						  batch[i]->function_digest) == cat->command_fn;
	MemoryContextSwitchTo(old);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	/* jobs parked on saturated limit keys: the supervisor releases them */
	flow_parked(claimed.parked_keys);

	/*
	 * Ready jobs this claim saw (and kept others from seeing) but left, and a
	 * wake-up for a job pushed while it claimed, are for another executor:
	 * this one is busy now.
	 */
	if (claimed.njobs > 0)
		slots_idle(false, false);
	if (claimed.skipped > 0 || (claimed.njobs > 0 && slots_take_wakeup()))
		slots_wake_executors(me->queue, Max(claimed.skipped, 1));

	if (claimed.njobs == 0 && claimed.parked > 0)
		return true;			/* all parked: there may be more behind them */
	if (claimed.njobs == 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (!claimed.queue_exists)
		{
			ereport(LOG,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("executor of queue \"%s\" is leaving", me->queue),
					 errdetail("The queue no longer exists.")));
			proc_exit(0);
		}
		*timeout_ms = FALLBACK_SLEEP_MS;
		*paused = claimed.paused_until > now;
		if (*paused)
			*timeout_ms = Min(*timeout_ms,
							  TimestampDifferenceMilliseconds(now, claimed.paused_until) + 1);
		if (claimed.next_due != 0)
			*timeout_ms = Min(*timeout_ms,
							  TimestampDifferenceMilliseconds(now, claimed.next_due) + 1);
		return false;
	}

	queue = claimed.queue;
	batch_n = claimed.njobs;
	limits_watch(true);
	while (batch_next < batch_n && !replace_me)
	{
		if (slots_executor_leaving() || !run_group())
			break;
	}
	give_back(batch_next, 0, shutdown_requested ?
			  "the executor was stopped while the job ran; it runs again" : NULL);
	limits_watch(false);
	batch_n = 0;
	return true;
}

/*
 * recover
 *		After an error outside a job (claiming, recording outcomes): report
 *		it, clean up, hand the batch back, and go on; unless chancy is gone
 *		(DROP EXTENSION: the error is only its tables missing), then leave.
 */
static void
recover(void)
{
	bool		gone;

	HOLD_INTERRUPTS();
	gone = catalog_recover_error(&chancy_nsp) != EXTENSION_READY;
	current_job = NULL;
	*running_var = NULL;
	ledger_done();
	limits_watch(false);
	(void) limits_job_end();
	RESUME_INTERRUPTS();
	if (gone)
		batch_n = 0;			/* with the table, nothing to give back */

	/* the jobs not recorded go back (those recorded no longer match) */
	if (batch_n > 0)
	{
		PG_TRY();
		{
			give_back(0, 0, "the executor failed outside the job; it runs again");
		}
		PG_CATCH();
		{
			EmitErrorReport();
			AbortOutOfAnyTransaction();
			FlushErrorState();
		}
		PG_END_TRY();
		batch_n = 0;
	}
	/* limit slots taken by a claim that failed go back too */
	if (batch != NULL)
		flow_give(batch, 0, batch_size);

	if (gone)
	{
		ereport(LOG,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("executor of queue \"%s\" is leaving", me->queue),
				 errdetail("Extension chancy is no longer installed in this database.")));
		proc_exit(0);
	}
	/* do not spin on a persistent error */
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 1000, PG_WAIT_EXTENSION);
}

/*
 * executor_give_back
 *		On exit, however it happens (before_shmem_exit): the jobs this
 *		executor holds go back.  The job it was executing is charged only
 *		if it is the cause: it failed on its time or memory limit (it went on
 *		after it was told to stop), is cancelled (a cancel it ignored), goes
 *		back uncharged (a shutdown), or else ended its executor itself
 *		(FATAL, exit()) and is charged a crash.  The others of the batch,
 *		run in a group that did not commit or not run yet, go back uncharged.
 *		Waiters of the jobs that end here are woken after the commit.  An
 *		error here ends the callback; the supervisor then recovers them.
 */
static void
executor_give_back(int code, Datum arg)
{
	ChancyCatalog *cat;
	ClaimedJob *job = current_job;
	JobStop		why = limits_stopped();
	ReleaseResult released;
	List	   *finished = NIL;
	ListCell   *lc;

	/* limit slots first: they are in shared memory, which cannot fail */
	if (batch != NULL)
		flow_give(batch, 0, batch_size);
	if (batch_n == 0 || !OidIsValid(chancy_nsp))
		return;
	AbortOutOfAnyTransaction();
	current_job = NULL;
	if (running_var)
		*running_var = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* the jobs that finished are for after the commit */
	MemoryContextSwitchTo(batch_cxt);
	PushActiveSnapshot(GetTransactionSnapshot());
	cat = chancy_catalog(chancy_nsp);
	if (job != NULL && (why == STOP_TIME_LIMIT || why == STOP_MEMORY_LIMIT))
	{
		ErrorData	edata;

		memset(&edata, 0, sizeof(edata));
		edata.message = "the job went on after it was told to stop, and its executor was ended";
		limits_explain(&edata, why, job->time_limit_ms, job->memory_limit);
		job->ended = ended_as(queue_failed(cat, job, &edata, retry_backoff(job->attempt),
										   GetCurrentTimestamp()));
	}
	else if (job != NULL && why == STOP_CANCEL)
		job->ended = queue_cancelled(cat, job, true, InvalidOid, GetCurrentTimestamp()) ?
			STATS_CANCELLED : STATS_NONE;
	if (job != NULL)
	{
		stats_job_moved(job);
		steps_ended(cat, &job, 1);
	}
	if (job != NULL && why != STOP_NONE && why != STOP_SHUTDOWN)
		ereport(LOG,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("job " INT64_FORMAT " (%s) went on after it was told to stop", job->id,
						job->name),
				 errdetail("Its executor was ended, and a fresh one replaces it.")));
	else if (job != NULL && why != STOP_SHUTDOWN && !shutdown_requested)
	{
		ereport(LOG,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("job " INT64_FORMAT " (%s) ended its executor", job->id, job->name),
				 errdetail("It is charged a crash.")));
		queue_release(cat, int8_one(batch_claim, false), int8_one(job->id, false),
					  int8_one(job->id, false), NULL, &released);
		finished = released.finished;
	}
	/* the rest (and a job stopped by the shutdown), recorded or not */
	queue_release(cat, int8_one(batch_claim, false), batch_ids(0, batch_n),
				  int8_one(0, true),
				  "the executor was stopped while the job ran; it runs again",
				  &released);
	PopActiveSnapshot();
	CommitTransactionCommand();
	ledger_done();
	batch_n = 0;
	/* the job that ended its executor may have finished (failed, cancelled) */
	if (job != NULL)
	{
		stats_job_done(job);
		slots_job_done(job->id);
	}
	foreach(lc, list_concat(finished, released.finished))
		slots_job_done(*(int64 *) lfirst(lc));
	slots_wake_executors(me->queue, INT_MAX);
}

/* On exit, after the jobs: the slot is left for the supervisor to free. */
static void
executor_detach(int code, Datum arg)
{
	slots_executor_detach();
}

/*
 * chancy_executor_main
 *		Entry point of an executor; arg is its slot in shared memory.
 */
void
chancy_executor_main(Datum arg)
{
	uint64		generation = slots_worker_generation();
	Oid			dboid;

	my_slot = DatumGetInt32(arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, executor_sigterm);
	pqsignal(SIGUSR2, executor_cancel_signal);
	BackgroundWorkerUnblockSignals();

	/* a start requested by a supervisor that has gone is void */
	dboid = slots_executor_database(my_slot, generation);
	if (!OidIsValid(dboid))
		proc_exit(0);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	me = slots_executor_attach(my_slot, generation);
	if (me == NULL)
		proc_exit(0);
	before_shmem_exit(executor_detach, (Datum) 0);
	before_shmem_exit(executor_give_back, (Datum) 0);
	ledger_executor_init(my_slot);

	pgstat_report_appname(psprintf("chancy executor: %s", me->queue));
	batch_cxt = AllocSetContextCreate(TopMemoryContext, "chancy batch",
									  ALLOCSET_DEFAULT_SIZES);
	running_var = find_rendezvous_variable("chancy_current_job");
	*find_rendezvous_variable("chancy_parent_results") = sdk_parent_results;
	limits_init();
	start_size = last_size = limits_data_size();
	if (chancy_extension(&chancy_nsp, NULL) != EXTENSION_READY)
		proc_exit(0);

	for (;;)
	{
		long		timeout_ms = FALLBACK_SLEEP_MS;
		bool		paused = false;
		bool		worked = false;

		/* reset before looking: a wake-up from now on is not lost */
		ResetLatch(MyLatch);
		(void) slots_take_wakeup();
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (shutdown_requested || replace_me || slots_executor_leaving())
			break;

		slots_idle(true, false);
		/* nudged: the queues, or the extension itself, may have changed */
		if (slots_take_nudge() &&
			chancy_extension(&chancy_nsp, NULL) != EXTENSION_READY)
			break;
		PG_TRY();
		{
			worked = run_batch(&timeout_ms, &paused);
		}
		PG_CATCH();
		{
			recover();
		}
		PG_END_TRY();
		if (worked)
			continue;
		/* woken while it claimed: a lock wait in the claim may have reset the latch */
		if (slots_take_wakeup())
			continue;

		slots_idle(true, paused);
		pgstat_report_stat(true);
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout_ms, 1), PG_WAIT_EXTENSION);
	}
	proc_exit(0);
}
