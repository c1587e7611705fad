/*-------------------------------------------------------------------------
 *
 * control.c
 *	  The SQL-callable functions that follow and steer pushed jobs:
 *	  chancy_wait, chancy_cancel, chancy_retry, chancy_retry_jobs,
 *	  chancy_current_job, chancy_worker_info, chancy_explain_claim, and
 *	  those of workflows: chancy_wait_workflow, chancy_cancel_workflow,
 *	  chancy_retry_workflow.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "pgstat.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

PG_FUNCTION_INFO_V1(chancy_wait);
PG_FUNCTION_INFO_V1(chancy_cancel);
PG_FUNCTION_INFO_V1(chancy_retry);
PG_FUNCTION_INFO_V1(chancy_retry_jobs);
PG_FUNCTION_INFO_V1(chancy_current_job);
PG_FUNCTION_INFO_V1(chancy_worker_info);
PG_FUNCTION_INFO_V1(chancy_explain_claim);
PG_FUNCTION_INFO_V1(chancy_wait_workflow);
PG_FUNCTION_INFO_V1(chancy_cancel_workflow);
PG_FUNCTION_INFO_V1(chancy_retry_workflow);

/* blocking chains longer than this are not followed */
#define MAX_BLOCKERS 64

/* the most jobs one chancy_retry_jobs() runs again */
#define MAX_RETRY_JOBS 1000000

/* A job's row (or a workflow's), as a role may see it. */
typedef struct JobRow
{
	Datum		row;			/* the chancy_jobs row */
	char	   *state;
	Oid			pushed_by;
	int64		claim;			/* 0: none */
	TransactionId xmin;
	int64		workflow_id;	/* of a step; 0: none (and for a workflow) */
	bool		replicated;		/* a publisher's job */
} JobRow;

/*
 * arg_id
 *		The id first argument of chancy_wait and chancy_cancel (a job's), or
 *		of the workflow functions.
 */
static int64
arg_id(FunctionCallInfo fcinfo, bool workflow)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s id must not be NULL", workflow ? "workflow" : "job"),
				 errhint("Pass the id %s returned.",
						 workflow ? "chancy_push_workflow()" : "chancy_push()")));
	return PG_GETARG_INT64(0);
}

static void not_found(bool workflow, int64 id) pg_attribute_noreturn();

/* The error for a job (or a workflow) the caller cannot see: pruned, or not
 * its. */
static void
not_found(bool workflow, int64 id)
{
	const char *what = workflow ? "workflow" : "job";

	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("%s " INT64_FORMAT " does not exist", what, id),
			 errhint("It might have been pruned, or pushed by a role whose %ss you cannot see.",
					 what)));
}

/*
 * read_row
 *		Read job id (or with workflow, workflow id): as the caller (row level
 *		security shows a role its own), or as_owner.  The row is copied out
 *		of SPI into the caller's memory context.  One the reader cannot see,
 *		or that is gone (pruned or purged, meanwhile too), is an error.
 */
static void
read_row(ChancyCatalog *cat, int64 id, bool as_owner, bool workflow, JobRow *job)
{
	Oid			argtype = INT8OID;
	Datum		arg = Int64GetDatum(id);
	CatalogSql	sql;
	MemoryContext cxt = CurrentMemoryContext;
	bool		found;

	memset(job, 0, sizeof(JobRow));
	catalog_sql_begin(cat, as_owner, &sql);
	if (SPI_execute_with_args(psprintf(workflow ?
									   "SELECT j, j.state, j.pushed_by, NULL::int8, j.xmin,"
									   " NULL::int8, false"
									   " FROM %s.chancy_workflows j WHERE j.id = $1" :
									   "SELECT j, j.state::text, j.pushed_by, j.claim, j.xmin,"
									   " j.workflow_id, j.replicated"
									   " FROM %s.chancy_jobs j WHERE j.id = $1",
									   cat->nspname),
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s " INT64_FORMAT, workflow ? "workflow" : "job", id);
	found = SPI_processed == 1;
	if (found)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		claim;
		Datum		workflow_id;

		job->row = SPI_datumTransfer(SPI_getbinval(tup, desc, 1, &isnull), false, -1);
		job->state = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 2));
		job->pushed_by = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		claim = SPI_getbinval(tup, desc, 4, &isnull);
		job->claim = isnull ? 0 : DatumGetInt64(claim);
		job->xmin = DatumGetTransactionId(SPI_getbinval(tup, desc, 5, &isnull));
		workflow_id = SPI_getbinval(tup, desc, 6, &isnull);
		job->workflow_id = isnull ? 0 : DatumGetInt64(workflow_id);
		job->replicated = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
	}
	catalog_sql_end(&sql);
	if (!found)
		not_found(workflow, id);
}

/* Read job id: see read_row(). */
static void
read_job(ChancyCatalog *cat, int64 id, bool as_owner, JobRow *job)
{
	read_row(cat, id, as_owner, false, job);
}

/* Is a job state final? */
static bool
state_is_final(const char *state)
{
	return strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
		strcmp(state, "cancelled") == 0;
}

/*
 * blocked_by_me
 *		Is process pid (an executor) waiting, directly or through others, for
 *		a lock this backend holds?
 */
static bool
blocked_by_me(pid_t pid)
{
	int			todo[MAX_BLOCKERS];
	int			n = 0;

	todo[n++] = pid;
	for (int i = 0; i < n; i++)
	{
		ArrayType  *blockers = DatumGetArrayTypeP(DirectFunctionCall1(pg_blocking_pids,
																	  Int32GetDatum(todo[i])));
		Datum	   *elems;
		int			nelems;

		deconstruct_array(blockers, INT4OID, 4, true, TYPALIGN_INT, &elems, NULL, &nelems);
		for (int k = 0; k < nelems; k++)
		{
			int			blocker = DatumGetInt32(elems[k]);
			bool		seen = false;

			if (blocker == MyProcPid)
				return true;
			for (int s = 0; s < n; s++)
				seen |= todo[s] == blocker;
			if (!seen && n < MAX_BLOCKERS)
				todo[n++] = blocker;
		}
	}
	return false;
}

/*
 * wait_deadline
 *		The deadline of a wait (function fn, for a what) whose second
 *		argument is its timeout (0: none); and the wait must see commits as
 *		they happen.
 */
static TimestampTz
wait_deadline(FunctionCallInfo fcinfo, const char *fn, const char *what)
{
	TimestampTz deadline = 0;

	if (!PG_ARGISNULL(1))
	{
		TimestampTz now = GetCurrentTimestamp();

		deadline = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														   TimestampTzGetDatum(now),
														   PG_GETARG_DATUM(1)));
		if (deadline < now)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must not be negative"),
					 errhint("Use NULL to wait without a time limit.")));
	}
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s cannot run in a REPEATABLE READ or SERIALIZABLE transaction", fn),
				 errdetail("Its snapshot would never show the %s finishing.", what),
				 errhint("Wait in a READ COMMITTED transaction.")));
	return deadline;
}

/*
 * wait_until_done
 *		Wait until a job is succeeded, failed or cancelled (with workflow: a
 *		workflow has finished), and return its row.  Sleeps on the condition
 *		variable that is broadcast when a job of its group finishes (for a
 *		workflow, that of its negated id); NULL timeout waits as long as it
 *		takes.  Every deadlock_timeout it checks that a claimed job is not
 *		waiting for a lock this session holds, which would make both wait for
 *		ever.
 */
static Datum
wait_until_done(FunctionCallInfo fcinfo, bool workflow)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	int64		id = arg_id(fcinfo, workflow);
	const char *what = workflow ? "workflow" : "job";
	TimestampTz deadline;
	TimestampTz next_deadlock_check;
	ConditionVariable *cv = slots_job_cv(workflow ? -id : id);
	MemoryContext caller_cxt = CurrentMemoryContext;
	MemoryContext loop_cxt;

	deadline = wait_deadline(fcinfo, workflow ? "chancy_wait_workflow()" : "chancy_wait()",
							 what);

	next_deadlock_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  DeadlockTimeout);
	loop_cxt = AllocSetContextCreate(CurrentMemoryContext, "chancy_wait",
									 ALLOCSET_SMALL_SIZES);
	for (;;)
	{
		JobRow		job;
		TimestampTz now;
		long		sleep_ms = 10000;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		ConditionVariablePrepareToSleep(cv);
		read_row(cat, id, false, workflow, &job);
		if (workflow ? strcmp(job.state, "running") != 0 : state_is_final(job.state))
		{
			Datum		row;

			ConditionVariableCancelSleep();
			MemoryContextSwitchTo(caller_cxt);
			row = datumCopy(job.row, false, -1);
			MemoryContextDelete(loop_cxt);
			PG_RETURN_DATUM(row);
		}
		if (TransactionIdIsCurrentTransactionId(job.xmin))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("%s " INT64_FORMAT " was pushed by the current transaction", what, id),
					 errdetail("No executor can see it before that transaction commits."),
					 errhint("Commit the transaction that pushed the %s, then wait for it.",
							 what)));

		now = GetCurrentTimestamp();
		if (deadline != 0)
		{
			if (now >= deadline)
				ereport(ERROR,
						(errcode(MAKE_SQLSTATE('C', 'H', '0', '0', '1')),
						 errmsg("timed out waiting for %s " INT64_FORMAT, what, id),
						 errdetail("The %s is %s.", what, job.state),
						 workflow ?
						 errhint("Wait longer, or look at its steps in chancy_workflow_steps.") :
						 errhint("Wait longer, or check chancy_workers for executors of its queue.")));
			sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, deadline) + 1);
		}
		if (job.claim != 0)
		{
			if (now >= next_deadlock_check)
			{
				pid_t		pid = slots_claim_pid(job.claim);

				if (pid != 0 && blocked_by_me(pid))
					ereport(ERROR,
							(errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
							 errmsg("deadlock detected"),
							 errdetail("Job " INT64_FORMAT " waits for a lock this session holds, and this session waits for the job.", id),
							 errhint("Commit or roll back before waiting for the job, or wait without holding locks it needs.")));
				next_deadlock_check = TimestampTzPlusMilliseconds(now, DeadlockTimeout);
			}
			sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, next_deadlock_check) + 1);
		}
		/* a safety net only: the end broadcasts the condition variable */
		(void) ConditionVariableTimedSleep(cv, Max(sleep_ms, 1), PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
}

/* chancy_wait(job_id, timeout) RETURNS chancy_jobs: see wait_until_done() */
Datum
chancy_wait(PG_FUNCTION_ARGS)
{
	return wait_until_done(fcinfo, false);
}

/*
 * cancel_at_commit
 *		Job id, live, was cancelled by role (queue_cancel()): wake its
 *		waiters if that was at once (claim 0), else have the executor that
 *		holds it (claim) stop it at commit, or the job itself if it is the
 *		one running here.
 */
static void
cancel_at_commit(int64 id, int64 claim, Oid role)
{
	const ChancyJobInfo *running = chancy_sdk_current_job();

	if (claim == 0)
		wakeup_done_at_commit(id);
	else if (running != NULL && running->id == id)
		wakeup_self_cancel(id, role);	/* a job cancelling itself */
	else
		wakeup_cancel_at_commit(id, claim);
}

/* May the current user steer every job (and workflow), not only its own? */
static bool
controls_all(ChancyCatalog *cat)
{
	return pg_class_aclcheck(cat->jobs_relid, GetUserId(), ACL_UPDATE) == ACLCHECK_OK;
}

/*
 * row_for_control
 *		Read job id (with workflow, workflow id) for the current user to do
 *		what to it (cancel, retry): for the role that pushed it (or a
 *		member), superusers and roles with UPDATE on chancy_jobs.  What a
 *		role cannot see it cannot learn about, not even its pusher: to
 *		another role it does not exist.  Returns whether the user may steer
 *		every job (then the row was read as chancy's owner).
 */
static bool
row_for_control(ChancyCatalog *cat, int64 id, bool workflow, const char *what, JobRow *row)
{
	const char *kind = workflow ? "workflow" : "job";
	bool		admin = controls_all(cat);

	read_row(cat, id, admin, workflow, row);
	if (!admin && !has_privs_of_role(GetUserId(), row->pushed_by))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s %s " INT64_FORMAT, what, kind, id),
				 errhint("Only the role that pushed a %s (or a member of it), superusers and roles with UPDATE on chancy_jobs may %s it.",
						 kind, what)));
	return admin;
}

/*
 * chancy_cancel(job_id) RETURNS chancy_jobs
 *		Cancel a job: one that is pending or retrying and that no executor
 *		holds is cancelled now; one an executor holds (claimed or running) is
 *		stopped by it once this transaction commits, and ends cancelled
 *		(unless it finished first).  A finished job is left as it is.  For the
 *		role that pushed the job (or a member), superusers, and roles with
 *		UPDATE on chancy_jobs.
 */
Datum
chancy_cancel(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	int64		id = arg_id(fcinfo, false);
	Oid			role = GetUserId();
	JobRow		job;
	int64		claim;
	bool		admin = row_for_control(cat, id, false, "cancel", &job);

	if (!queue_cancel(cat, id, role, &claim))
		ereport(NOTICE,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job " INT64_FORMAT " has already finished", id),
				 errdetail("Its state is %s; the cancel changes nothing.", job.state)));
	else
		cancel_at_commit(id, claim, role);

	/* the row as it is now */
	read_job(cat, id, admin, &job);
	PG_RETURN_DATUM(job.row);
}

/*
 * retry_refused
 *		Why job id (as it is now, job) was not run again: an error.
 */
static void
retry_refused(int64 id, const JobRow *job, int64 holder, const char *key)
{
	if (job->workflow_id != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job " INT64_FORMAT " is a step of workflow " INT64_FORMAT,
						id, job->workflow_id),
				 errdetail("A step runs again with the steps after it, once they have finished."),
				 errhint("Retry its workflow: chancy_retry_workflow(" INT64_FORMAT ").",
						 job->workflow_id)));
	if (job->replicated)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job " INT64_FORMAT " was written by logical replication", id),
				 errdetail("It is the publisher's job; no executor here runs it."),
				 errhint("Retry it on the publisher, or make it local with chancy_adopt_jobs() first.")));
	if (strcmp(job->state, "failed") != 0 && strcmp(job->state, "cancelled") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job " INT64_FORMAT " is %s", id, job->state),
				 errdetail("Only a failed or cancelled job runs again."),
				 state_is_final(job->state) ?
				 errhint("Push it again to run it once more.") :
				 errhint("Wait for it to finish (chancy_wait()), or cancel it first.")));
	if (key != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("unique key \"%s\" of job " INT64_FORMAT " is held by job " INT64_FORMAT,
						key, id, holder),
				 errdetail("At most one pending, retrying or running job of a role holds a unique key."),
				 errhint("Retry the job once job " INT64_FORMAT " has finished, or cancel that one first.",
						 holder)));
	elog(ERROR, "could not retry job " INT64_FORMAT, id);
}

/*
 * chancy_retry(job_id) RETURNS chancy_jobs
 *		Run a failed or cancelled job again: pending now, with its attempts
 *		and crashes back to 0, no result, its errors and costs kept; its
 *		queue's executors are woken at commit.  Not a workflow's step (its
 *		workflow is retried), nor a job whose unique key a live job holds.
 *		For whom chancy_cancel() is.  Returns the job as it is now.
 */
Datum
chancy_retry(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	int64		id = arg_id(fcinfo, false);
	JobRow		job;
	int64		holder;
	char	   *key;
	bool		admin = row_for_control(cat, id, false, "retry", &job);

	if (!queue_retry(cat, id, &holder, &key))
	{
		/* as it is now that the retry looked at it */
		read_job(cat, id, true, &job);
		retry_refused(id, &job, holder, key);
	}
	read_job(cat, id, admin, &job);
	PG_RETURN_DATUM(job.row);
}

/*
 * chancy_retry_jobs(queue, name, failed_after, failed_before, max_jobs)
 *		RETURNS bigint
 *		Run failed jobs again as chancy_retry() does, oldest first, at most
 *		max_jobs of them: those of the queue and the name given that failed
 *		from failed_after until before failed_before (NULL: any), and that
 *		the caller may retry (a role without UPDATE on chancy_jobs: those
 *		of the roles whose privileges it has).  Workflow steps are left, and
 *		so is a job whose unique key a live job holds, with a notice.
 *		Returns how many run again.
 */
Datum
chancy_retry_jobs(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	Datum		filter[4];
	bool		nulls[4];
	int64		skipped;
	int			n;

	if (PG_ARGISNULL(4) || PG_GETARG_INT32(4) < 1 || PG_GETARG_INT32(4) > MAX_RETRY_JOBS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_jobs must be between 1 and %d", MAX_RETRY_JOBS),
				 errhint("To retry more, call chancy_retry_jobs() again: the jobs it retried are no longer failed.")));
	for (int i = 0; i < 4; i++)
	{
		nulls[i] = PG_ARGISNULL(i);
		filter[i] = nulls[i] ? (Datum) 0 : PG_GETARG_DATUM(i);
	}
	n = queue_retry_failed(cat, filter, nulls, PG_GETARG_INT32(4), GetUserId(),
						   controls_all(cat), &skipped);
	if (skipped > 0)
		ereport(NOTICE,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg_plural("skipped " INT64_FORMAT " failed job whose unique key is held",
							   "skipped " INT64_FORMAT " failed jobs whose unique keys are held",
							   skipped, skipped),
				 errdetail("Another job with the same unique key is pending, retrying or running, or was retried now."),
				 errhint("Retry them once those jobs have finished.")));
	PG_RETURN_INT64(n);
}

/*
 * chancy_current_job() RETURNS record
 *		The job the calling executor is running (id, name, queue, attempt,
 *		max_attempts), or NULL outside a job.  For SQL and PL/pgSQL jobs; C
 *		jobs use chancy_current_job() of chancy.h.
 */
Datum
chancy_current_job(PG_FUNCTION_ARGS)
{
	const ChancyJobInfo *job = chancy_sdk_current_job();
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {0};

	if (job == NULL)
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(job->id);
	values[1] = CStringGetTextDatum(job->name);
	values[2] = CStringGetTextDatum(job->queue);
	values[3] = Int32GetDatum(job->attempt);
	values[4] = Int32GetDatum(job->max_attempts);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * chancy_worker_info() RETURNS SETOF record
 *		chancy's processes: the launcher, the supervisors, the executors.  A
 *		role that may read all statistics (pg_read_all_stats, pg_monitor)
 *		sees those of every database, with their pids and jobs; any other
 *		sees those of its own database, without.
 */
Datum
chancy_worker_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		details = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, slots_snapshot(details))
	{
		SlotInfo   *row = lfirst(lc);
		Datum		values[9];
		bool		nulls[9] = {0};
		char	   *dbname = OidIsValid(row->dboid) ? get_database_name(row->dboid) : NULL;

		values[0] = CStringGetTextDatum(row->kind);
		nulls[1] = dbname == NULL;
		values[1] = nulls[1] ? (Datum) 0 : CStringGetTextDatum(dbname);
		nulls[2] = row->queue[0] == '\0';
		values[2] = nulls[2] ? (Datum) 0 : CStringGetTextDatum(row->queue);
		nulls[3] = row->pid == 0 || !details;
		values[3] = Int32GetDatum(row->pid);
		values[4] = CStringGetTextDatum(row->state);
		nulls[5] = row->job_id == 0 || !details;
		values[5] = Int64GetDatum(row->job_id);
		nulls[6] = strcmp(row->kind, "executor") != 0;
		values[6] = Int64GetDatum(row->jobs_done);
		nulls[7] = row->started_at == 0;
		values[7] = TimestampTzGetDatum(row->started_at);
		nulls[8] = row->looked_at == 0;
		values[8] = TimestampTzGetDatum(row->looked_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * chancy_explain_claim(queue) RETURNS SETOF text
 *		The plan with which executors claim the jobs of a queue: it must walk
 *		the ready index (in the dequeue order) whatever the statistics say.
 *		Explained as the owner of chancy's tables, so any role may look.
 */
Datum
chancy_explain_claim(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;
	List	   *lines;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("queue name must not be NULL"),
				 errhint("Name the queue whose claim to explain, for example chancy_explain_claim('default').")));
	lines = queue_claim_plan(cat, TextDatumGetCString(PG_GETARG_DATUM(0)));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	foreach(lc, lines)
	{
		Datum		value = CStringGetTextDatum(lfirst(lc));
		bool		null = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &null);
	}
	return (Datum) 0;
}

/*
 * chancy_wait_workflow(workflow_id, timeout) RETURNS chancy_workflows
 *		Wait until a workflow has finished (succeeded, failed or cancelled)
 *		and return its row, as chancy_wait() does for a job.
 */
Datum
chancy_wait_workflow(PG_FUNCTION_ARGS)
{
	return wait_until_done(fcinfo, true);
}

/*
 * chancy_cancel_workflow(workflow_id) RETURNS chancy_workflows
 *		Cancel a running workflow: the steps executors hold are cancelled as
 *		chancy_cancel() cancels a job, the others at once.  A finished
 *		workflow is left as it is.
 */
Datum
chancy_cancel_workflow(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	int64		id = arg_id(fcinfo, true);
	Oid			role = GetUserId();
	const ChancyJobInfo *running = chancy_sdk_current_job();
	JobRow		wf;
	List	   *held;
	ListCell   *lc;

	(void) row_for_control(cat, id, true, "cancel", &wf);
	/* the held steps' rows first: the order of locks (queue.c) */
	held = queue_workflow_held(cat, id);
	foreach(lc, held)
	{
		int64		job_id = *(int64 *) lfirst(lc);
		int64		claim;

		lc = lnext(held, lc);
		/* a step cancelling its workflow finishes (a cancel would undo this) */
		if (running != NULL && running->id == job_id)
			continue;
		if (queue_cancel(cat, job_id, role, &claim))
			cancel_at_commit(job_id, claim, role);
	}
	if (!queue_workflow_cancel(cat, id, role))
	{
		read_row(cat, id, true, true, &wf);
		ereport(NOTICE,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("workflow " INT64_FORMAT " has already finished", id),
				 errdetail("Its state is %s; the cancel changes nothing.", wf.state)));
	}
	read_row(cat, id, true, true, &wf);
	PG_RETURN_DATUM(wf.row);
}

/*
 * chancy_retry_workflow(workflow_id) RETURNS chancy_workflows
 *		Run a finished workflow's failed and cancelled steps again, with the
 *		steps after them (queue_workflow_retry()).
 */
Datum
chancy_retry_workflow(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	int64		id = arg_id(fcinfo, true);
	JobRow		wf;
	int			n;

	(void) row_for_control(cat, id, true, "retry", &wf);
	n = queue_workflow_retry(cat, id);
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("workflow " INT64_FORMAT " is still running", id),
				 errhint("Retry it once it has finished (chancy_wait_workflow()), or cancel it first.")));
	if (n == 0)
		ereport(NOTICE,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("workflow " INT64_FORMAT " has no failed or cancelled step", id),
				 errdetail("Its state is %s; the retry changes nothing.", wf.state)));
	read_row(cat, id, true, true, &wf);
	PG_RETURN_DATUM(wf.row);
}
