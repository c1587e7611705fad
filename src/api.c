/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL-callable functions of chancy's pushing side: job definitions,
 *	  immutable job values and their chancy_with_* builders, and the pushes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/procarray.h"
#include "utils/timestamp.h"
#include "utils/builtins.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "chancy_internal.h"

PG_FUNCTION_INFO_V1(chancy_definitions_changed);
PG_FUNCTION_INFO_V1(chancy_define_job);
PG_FUNCTION_INFO_V1(chancy_undefine_job);
PG_FUNCTION_INFO_V1(chancy_job);
PG_FUNCTION_INFO_V1(chancy_with_attr);
PG_FUNCTION_INFO_V1(chancy_with_kwargs);
PG_FUNCTION_INFO_V1(chancy_with_limits);
PG_FUNCTION_INFO_V1(chancy_push_job);
PG_FUNCTION_INFO_V1(chancy_push_named);
PG_FUNCTION_INFO_V1(chancy_push_many);
PG_FUNCTION_INFO_V1(chancy_queues_changed);
PG_FUNCTION_INFO_V1(chancy_wait);
PG_FUNCTION_INFO_V1(chancy_worker_info);
PG_FUNCTION_INFO_V1(chancy_current_job);
PG_FUNCTION_INFO_V1(chancy_cancel);
PG_FUNCTION_INFO_V1(chancy_explain_claim);

/*
 * arg_text
 *		A required text argument as a C string; NULL is an error naming it.
 */
static char *
arg_text(FunctionCallInfo fcinfo, int argno, JobAttr attr)
{
	Datum		value = PG_GETARG_DATUM(argno);

	job_check_attr(attr, value, PG_ARGISNULL(argno));
	return TextDatumGetCString(value);
}

/*
 * arg_job_id
 *		The job id first argument of chancy_wait and chancy_cancel.
 */
static int64
arg_job_id(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job id must not be NULL"),
				 errhint("Pass the id chancy_push() returned.")));
	return PG_GETARG_INT64(0);
}

/*
 * arg_job
 *		The chancy_job argument of a builder or push, split into attributes.
 */
static void
arg_job(FunctionCallInfo fcinfo, ChancyCatalog *cat, Datum *values, bool *nulls)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job must not be NULL"),
				 errhint("Build job values with chancy_job(name).")));
	job_deform(cat, PG_GETARG_HEAPTUPLEHEADER(0), values, nulls);
}

/* Concatenate two jsonb objects, the right one winning. */
static Datum
merge_jsonb(Datum left, Datum right)
{
	return DirectFunctionCall2(jsonb_concat, left, right);
}

/*
 * set_attr
 *		Set one attribute of a job value, checking it.
 */
static void
set_attr(Datum *values, bool *nulls, JobAttr attr, Datum value, bool isnull)
{
	job_check_attr(attr, value, isnull);
	values[attr] = value;
	nulls[attr] = isnull;
}

/*
 * unique_keys
 *		The unique keys of a job for queue_push(), or NULL if it has none.
 */
static char **
unique_keys(Datum *values, bool *nulls)
{
	char	  **keys;

	if (nulls[JA_UNIQUE_KEY])
		return NULL;
	keys = palloc(sizeof(char *));
	keys[0] = TextDatumGetCString(values[JA_UNIQUE_KEY]);
	return keys;
}

/*
 * push_one
 *		Authorize and push a single checked job value; its id.
 */
static int64
push_one(ChancyCatalog *cat, Datum *values, bool *nulls)
{
	Datum		job;

	job_authorize(values, nulls);
	job = job_form(cat, values, nulls);
	wakeup_queue_at_commit(TextDatumGetCString(values[JA_QUEUE]), 1);
	return queue_push(cat, construct_array(&job, 1, cat->job_typid, -1, false,
										   TYPALIGN_DOUBLE),
					  unique_keys(values, nulls))[0];
}

/*
 * chancy_definitions_changed
 *		Statement trigger on chancy_job_definitions: make every backend
 *		forget its cached definitions when the change commits.
 */
Datum
chancy_definitions_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("chancy_definitions_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	job_forget_definitions();
	return PointerGetDatum(NULL);
}

/*
 * chancy_define_job(name, function, queue, priority, max_attempts, kwargs,
 *					 time_limit, memory_limit) RETURNS chancy_job
 *		Define (or redefine) a job's defaults: the seed's @job(...).
 */
Datum
chancy_define_job(PG_FUNCTION_ARGS)
{
	static const JobAttr args[] = {
		JA_NAME, JA_FUNCTION, JA_QUEUE, JA_PRIORITY, JA_MAX_ATTEMPTS,
		JA_KWARGS, JA_TIME_LIMIT, JA_MEMORY_LIMIT
	};
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];
	char	   *name = arg_text(fcinfo, 0, JA_NAME);
	char	   *spec;

	memset(nulls, true, sizeof(nulls));
	for (int i = 2; i < lengthof(args); i++)
		set_attr(values, nulls, args[i], PG_GETARG_DATUM(i), PG_ARGISNULL(i));
	values[JA_NAME] = PG_GETARG_DATUM(0);
	nulls[JA_NAME] = false;

	spec = job_resolve_function(name, PG_ARGISNULL(1) ? NULL :
								TextDatumGetCString(PG_GETARG_DATUM(1)));
	values[JA_FUNCTION] = CStringGetTextDatum(spec);
	nulls[JA_FUNCTION] = false;
	if (!job_function_is_symbol(spec))
		job_authorize(values, nulls);

	job_define(cat, values, nulls);
	values[JA_META] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	nulls[JA_META] = false;
	PG_RETURN_DATUM(job_form(cat, values, nulls));
}

/*
 * chancy_undefine_job(name)
 *		Remove a job definition.
 */
Datum
chancy_undefine_job(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);

	job_undefine(cat, arg_text(fcinfo, 0, JA_NAME));
	PG_RETURN_VOID();
}

/*
 * chancy_job(name) RETURNS chancy_job
 *		The job value a push of "name" starts from.
 */
Datum
chancy_job(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];

	job_defaults(arg_text(fcinfo, 0, JA_NAME), values, nulls);
	PG_RETURN_DATUM(job_form(cat, values, nulls));
}

/*
 * chancy_with_attr(job, value) RETURNS chancy_job
 *		A copy of job with one attribute changed.  Serves every
 *		chancy_with_<attribute> function: the attribute is named by the SQL
 *		function's own name, and must have the type of its second argument.
 */
Datum
chancy_with_attr(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];
	int			attr;

	if (fcinfo->flinfo->fn_extra == NULL)
	{
		char	   *fname = get_func_name(fcinfo->flinfo->fn_oid);
		TupleDesc	desc = lookup_rowtype_tupdesc(cat->job_typid, -1);

		attr = strncmp(fname, "chancy_with_", 12) == 0 ?
			job_attr_by_name(fname + 12) : -1;
		if (attr < 0 || PG_NARGS() != 2 ||
			get_fn_expr_argtype(fcinfo->flinfo, 1) != TupleDescAttr(desc, attr)->atttypid)
			elog(ERROR, "chancy_with_attr() cannot implement function %s", fname);
		ReleaseTupleDesc(desc);
		fcinfo->flinfo->fn_extra = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt,
													  sizeof(int));
		*(int *) fcinfo->flinfo->fn_extra = attr;
	}
	attr = *(int *) fcinfo->flinfo->fn_extra;

	arg_job(fcinfo, cat, values, nulls);
	set_attr(values, nulls, attr, PG_GETARG_DATUM(1), PG_ARGISNULL(1));
	PG_RETURN_DATUM(job_form(cat, values, nulls));
}

/*
 * chancy_with_kwargs(job, kwargs, replace) RETURNS chancy_job
 *		A copy of job with kwargs merged over its own (or replacing them).
 */
Datum
chancy_with_kwargs(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];
	Datum		kwargs = PG_GETARG_DATUM(1);

	arg_job(fcinfo, cat, values, nulls);
	job_check_attr(JA_KWARGS, kwargs, PG_ARGISNULL(1));
	if (PG_ARGISNULL(2) || !PG_GETARG_BOOL(2))
	{
		job_check_attr(JA_KWARGS, values[JA_KWARGS], nulls[JA_KWARGS]);
		kwargs = merge_jsonb(values[JA_KWARGS], kwargs);
	}
	values[JA_KWARGS] = kwargs;
	PG_RETURN_DATUM(job_form(cat, values, nulls));
}

/*
 * chancy_with_limits(job, time_limit, memory_limit) RETURNS chancy_job
 *		A copy of job with both limits set; NULL removes a limit.
 */
Datum
chancy_with_limits(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];

	arg_job(fcinfo, cat, values, nulls);
	set_attr(values, nulls, JA_TIME_LIMIT, PG_GETARG_DATUM(1), PG_ARGISNULL(1));
	set_attr(values, nulls, JA_MEMORY_LIMIT, PG_GETARG_DATUM(2), PG_ARGISNULL(2));
	PG_RETURN_DATUM(job_form(cat, values, nulls));
}

/*
 * chancy_push(job chancy_job) RETURNS bigint
 *		Push a job value; its id (or the live job's, for a held unique key).
 */
Datum
chancy_push_job(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];

	arg_job(fcinfo, cat, values, nulls);
	job_check(values, nulls);
	PG_RETURN_INT64(push_one(cat, values, nulls));
}

/*
 * chancy_push(name, kwargs, queue, priority, max_attempts, scheduled_at,
 *			   unique_key, time_limit, memory_limit, meta) RETURNS bigint
 *		Push job "name" with its defaults; non-NULL arguments override them,
 *		kwargs being merged over the default kwargs.
 */
Datum
chancy_push_named(PG_FUNCTION_ARGS)
{
	static const JobAttr args[] = {
		JA_NAME, JA_KWARGS, JA_QUEUE, JA_PRIORITY, JA_MAX_ATTEMPTS,
		JA_SCHEDULED_AT, JA_UNIQUE_KEY, JA_TIME_LIMIT, JA_MEMORY_LIMIT, JA_META
	};
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];

	job_defaults(arg_text(fcinfo, 0, JA_NAME), values, nulls);
	for (int i = 1; i < lengthof(args); i++)
	{
		Datum		value = PG_GETARG_DATUM(i);

		if (PG_ARGISNULL(i))
			continue;
		if (args[i] == JA_KWARGS)
		{
			job_check_attr(JA_KWARGS, value, false);
			value = merge_jsonb(values[JA_KWARGS], value);
		}
		set_attr(values, nulls, args[i], value, false);
	}
	PG_RETURN_INT64(push_one(cat, values, nulls));
}

/* Are two text datums equal, byte for byte? */
static bool
text_equal(Datum a, Datum b)
{
	return VARSIZE_ANY_EXHDR(DatumGetPointer(a)) == VARSIZE_ANY_EXHDR(DatumGetPointer(b)) &&
		memcmp(VARDATA_ANY(DatumGetPointer(a)), VARDATA_ANY(DatumGetPointer(b)),
			   VARSIZE_ANY_EXHDR(DatumGetPointer(a))) == 0;
}

/*
 * chancy_push_many(jobs chancy_job[]) RETURNS bigint[]
 *		Push many job values in one statement; their ids in input order.
 *
 * Every element is checked and authorized before anything is inserted, so
 * a bad element leaves nothing behind.  Consecutive jobs of the same name and
 * function (the usual batch) are authorized once.
 */
Datum
chancy_push_many(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	ArrayType  *array;
	Datum	   *elems;
	bool	   *elemnulls;
	int			n;
	char	  **keys = NULL;
	bool		changed = false;
	Datum		prev_name = (Datum) 0;
	Datum		prev_function = (Datum) 0;
	Datum		prev_canonical = (Datum) 0;
	Datum		prev_queue = (Datum) 0;
	int			queue_jobs = 0;
	TupleDesc	desc;
	Datum	   *ids;
	int64	   *pushed;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("jobs must not be NULL"),
				 errhint("Pass an array of chancy_job values, for example ARRAY[chancy_job('greet')].")));
	array = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(array, cat->job_typid, -1, false, TYPALIGN_DOUBLE,
					  &elems, &elemnulls, &n);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("jobs must be a one-dimensional array, not %d-dimensional",
						ARR_NDIM(array))));

	desc = lookup_rowtype_tupdesc(cat->job_typid, -1);
	for (int i = 0; i < n; i++)
	{
		Datum		values[JOB_NATTS];
		bool		nulls[JOB_NATTS];
		HeapTupleData tuple;

		if (elemnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("element %d of jobs is NULL", i + 1),
					 errhint("Remove NULL elements, for example with array_remove(jobs, NULL).")));
		tuple.t_data = DatumGetHeapTupleHeader(elems[i]);
		tuple.t_len = HeapTupleHeaderGetDatumLength(tuple.t_data);
		ItemPointerSetInvalid(&tuple.t_self);
		tuple.t_tableOid = InvalidOid;
		heap_deform_tuple(&tuple, desc, values, nulls);
		job_check(values, nulls);

		if (prev_name == (Datum) 0 ||
			!text_equal(prev_name, values[JA_NAME]) ||
			!text_equal(prev_function, values[JA_FUNCTION]))
		{
			prev_name = values[JA_NAME];
			prev_function = values[JA_FUNCTION];
			job_authorize(values, nulls);
			prev_canonical = values[JA_FUNCTION] != prev_function ?
				values[JA_FUNCTION] : (Datum) 0;
		}
		if (prev_canonical != (Datum) 0)
		{
			values[JA_FUNCTION] = prev_canonical;
			elems[i] = heap_copy_tuple_as_datum(heap_form_tuple(desc, values, nulls),
												desc);
			changed = true;
		}
		/* count the jobs of each run of one queue, to wake its executors */
		if (prev_queue != (Datum) 0 && !text_equal(prev_queue, values[JA_QUEUE]))
		{
			wakeup_queue_at_commit(TextDatumGetCString(prev_queue), queue_jobs);
			queue_jobs = 0;
		}
		prev_queue = values[JA_QUEUE];
		queue_jobs++;

		if (!nulls[JA_UNIQUE_KEY])
		{
			if (keys == NULL)
				keys = palloc0(sizeof(char *) * n);
			keys[i] = TextDatumGetCString(values[JA_UNIQUE_KEY]);
		}
	}
	ReleaseTupleDesc(desc);
	if (queue_jobs > 0)
		wakeup_queue_at_commit(TextDatumGetCString(prev_queue), queue_jobs);

	if (changed)
		array = construct_array(elems, n, cat->job_typid, -1, false,
								TYPALIGN_DOUBLE);
	pushed = queue_push(cat, array, keys);

	ids = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		ids[i] = Int64GetDatum(pushed[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}

/*
 * chancy_queues_changed
 *		Statement trigger on chancy_queues: the supervisor of this database
 *		applies the change when it commits.
 */
Datum
chancy_queues_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("chancy_queues_changed() must be called as a trigger")));
	wakeup_supervisor_at_commit();
	return PointerGetDatum(NULL);
}

/*
 * chancy_wait(job_id, timeout) RETURNS chancy_jobs
 *		Wait until a job is succeeded, failed or cancelled, and return its
 *		row.  Sleeps on the condition variable executors broadcast when a job
 *		of this group finishes; NULL timeout waits for as long as it takes.
 */
Datum
chancy_wait(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	int64		id;
	long		timeout_ms = -1;
	TimestampTz deadline = 0;
	ConditionVariable *cv;
	char	   *query;
	Oid			argtype = INT8OID;
	Datum		arg;

	id = arg_job_id(fcinfo);
	arg = Int64GetDatum(id);
	if (!PG_ARGISNULL(1))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(1);
		TimestampTz now = GetCurrentTimestamp();

		deadline = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														   TimestampTzGetDatum(now),
														   IntervalPGetDatum(iv)));
		if (deadline < now)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must not be negative"),
					 errhint("Use NULL to wait without a time limit.")));
	}
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("chancy_wait() cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("Its snapshot would never show the job finishing."),
				 errhint("Wait in a READ COMMITTED transaction.")));

	query = psprintf("SELECT j, j.state::text, xmin FROM %s.chancy_jobs j WHERE id = $1",
					 cat->nspname);
	cv = &chancy_shared->job_done[(uint64) id % CHANCY_WAIT_CVS];
	SPI_connect();
	for (;;)
	{
		HeapTuple	tup;
		TupleDesc	desc;
		char	   *state;
		bool		isnull;
		TransactionId xmin;

		ConditionVariablePrepareToSleep(cv);
		if (SPI_execute_with_args(query, 1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read job %lld", (long long) id);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("job %lld does not exist", (long long) id),
					 errhint("It may have been pruned, or pushed by a role whose jobs you cannot see.")));
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		state = SPI_getvalue(tup, desc, 2);
		xmin = DatumGetTransactionId(SPI_getbinval(tup, desc, 3, &isnull));
		if (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
			strcmp(state, "cancelled") == 0)
		{
			Datum		row = SPI_datumTransfer(SPI_getbinval(tup, desc, 1, &isnull),
												false, -1);

			ConditionVariableCancelSleep();
			SPI_finish();
			PG_RETURN_DATUM(row);
		}
		if (TransactionIdIsCurrentTransactionId(xmin))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("job %lld was pushed by the current transaction", (long long) id),
					 errdetail("No executor can see it before that transaction commits."),
					 errhint("Commit the transaction that pushed the job, then wait for it.")));
		if (deadline != 0)
		{
			long		secs;
			int			usecs;

			TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
			timeout_ms = secs * 1000 + usecs / 1000;
			if (GetCurrentTimestamp() >= deadline)
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("timed out waiting for job %lld", (long long) id),
						 errdetail("The job is %s.", state),
						 errhint("Wait longer, or check chancy_workers for executors of its queue.")));
		}
		/* a safety net only: executors broadcast when a job finishes */
		(void) ConditionVariableTimedSleep(cv, timeout_ms < 0 ? 10000 :
										   Min(Max(timeout_ms, 1), 10000),
										   PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * chancy_worker_info() RETURNS SETOF record
 *		chancy's processes: the launcher, the supervisors, the executors.
 */
Datum
chancy_worker_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	typedef struct
	{
		const char *kind;
		Oid			dboid;
		char		queue[NAMEDATALEN];
		pid_t		pid;
		const char *state;
		int64		job_id;
		int64		jobs_done;
		TimestampTz started_at;
	} Row;
	Row		   *rows;
	int			nrows = 0;

	InitMaterializedSRF(fcinfo, 0);
	rows = palloc0(sizeof(Row) * (chancy_shared->nexecutors + CHANCY_MAX_DATABASES + 1));

	LWLockAcquire(chancy_shared->lock, LW_SHARED);
	if (chancy_shared->launcher_pid != 0)
	{
		rows[nrows].kind = "launcher";
		rows[nrows].pid = chancy_shared->launcher_pid;
		rows[nrows++].state = chancy_shared->standby ?
			"standby: jobs run after promotion" : "running";
	}
	for (int i = 0; i < CHANCY_MAX_DATABASES; i++)
	{
		ChancyDatabase *db = &chancy_shared->dbs[i];

		if (!OidIsValid(db->dboid))
			continue;
		rows[nrows].kind = "supervisor";
		rows[nrows].dboid = db->dboid;
		rows[nrows].pid = db->pid;
		rows[nrows++].state = db->pid != 0 ? "running" :
			db->no_extension ? "no extension" : db->blocked ? "leaving" : "starting";
	}
	for (int i = 0; i < chancy_shared->nexecutors; i++)
	{
		ChancyExecutor *ex = &chancy_shared->executors[i];

		if (!OidIsValid(ex->dboid))
			continue;
		rows[nrows].kind = "executor";
		rows[nrows].dboid = ex->dboid;
		strlcpy(rows[nrows].queue, ex->queue, NAMEDATALEN);
		rows[nrows].pid = ex->pid;
		rows[nrows].job_id = ex->job_id;
		rows[nrows].jobs_done = ex->jobs_done;
		rows[nrows].started_at = ex->started_at;
		rows[nrows++].state = ex->pid == 0 ? "starting" : ex->stop ? "stopping" :
			ex->job_id != 0 ? "running" :
			ex->paused_until > GetCurrentTimestamp() ? "paused" : "idle";
	}
	LWLockRelease(chancy_shared->lock);

	for (int r = 0; r < nrows; r++)
	{
		Datum		values[8];
		bool		nulls[8] = {0};
		char	   *dbname = OidIsValid(rows[r].dboid) ?
			get_database_name(rows[r].dboid) : NULL;

		values[0] = CStringGetTextDatum(rows[r].kind);
		nulls[1] = dbname == NULL;
		values[1] = nulls[1] ? (Datum) 0 : CStringGetTextDatum(dbname);
		nulls[2] = rows[r].queue[0] == '\0';
		values[2] = nulls[2] ? (Datum) 0 : CStringGetTextDatum(rows[r].queue);
		nulls[3] = rows[r].pid == 0;
		values[3] = Int32GetDatum(rows[r].pid);
		values[4] = CStringGetTextDatum(rows[r].state);
		nulls[5] = rows[r].job_id == 0;
		values[5] = Int64GetDatum(rows[r].job_id);
		nulls[6] = strcmp(rows[r].kind, "executor") != 0;
		values[6] = Int64GetDatum(rows[r].jobs_done);
		nulls[7] = rows[r].started_at == 0;
		values[7] = TimestampTzGetDatum(rows[r].started_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
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
	ClaimedJob *job = executor_current_job();
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
 * job_row
 *		A job's chancy_jobs row, read as the owner (so an admin can see it),
 *		and whether it exists; *pushed_by is the role that pushed it.
 */
static Datum
job_row(ChancyCatalog *cat, int64 id, Oid *pushed_by, bool *found)
{
	Oid			argtype = INT8OID;
	Datum		arg = Int64GetDatum(id);
	Datum		row = (Datum) 0;
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;

	SPI_connect();
	chancy_become_owner(cat, &save_userid, &save_sec_context);
	nestlevel = statement_settings();
	if (SPI_execute_with_args(psprintf("SELECT j, pushed_by FROM %s.chancy_jobs j WHERE id = $1",
									   cat->nspname),
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read job %lld", (long long) id);
	*found = SPI_processed == 1;
	if (*found)
	{
		bool		isnull;

		row = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull),
								false, -1);
		*pushed_by = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 2, &isnull));
	}
	AtEOXact_GUC(true, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
	return row;
}

/*
 * chancy_cancel(job_id) RETURNS chancy_jobs
 *		Cancel a job: pending or retrying, it never starts; running, its
 *		executor is interrupted when this transaction commits, and the job
 *		ends cancelled (not retried).  A finished job is left as it is.
 */
Datum
chancy_cancel(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	int64		id;
	Oid			pushed_by = InvalidOid;
	bool		found;
	char	   *was;
	Oid			save_userid;
	int			save_sec_context;
	Oid			me = GetUserId();

	id = arg_job_id(fcinfo);

	(void) job_row(cat, id, &pushed_by, &found);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job %lld does not exist", (long long) id),
				 errhint("It may have been pruned.")));
	if (!has_privs_of_role(me, pushed_by) &&
		pg_class_aclcheck(cat->jobs_relid, me, ACL_UPDATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to cancel job %lld", (long long) id),
				 errdetail("The job was pushed by role \"%s\".",
						   GetUserNameFromId(pushed_by, false)),
				 errhint("Only the role that pushed a job (or a member of it), superusers and roles with UPDATE on chancy_jobs may cancel it.")));

	chancy_become_owner(cat, &save_userid, &save_sec_context);
	was = queue_cancel(cat, id, me);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	if (was == NULL)
		ereport(NOTICE,
				(errmsg("job %lld has already finished; it is not cancelled", (long long) id)));
	else
		wakeup_cancel_at_commit(id);
	PG_RETURN_DATUM(job_row(cat, id, &pushed_by, &found));
}

/*
 * chancy_explain_claim(queue) RETURNS SETOF text
 *		The plan with which executors claim the jobs of a queue: it must walk
 *		the ready index (in the dequeue order) whatever the statistics say.
 */
Datum
chancy_explain_claim(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;
	List	   *lines;

	lines = queue_claim_plan(cat, arg_text(fcinfo, 0, JA_QUEUE));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	foreach(lc, lines)
	{
		Datum		value = CStringGetTextDatum(lfirst(lc));
		bool		null = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &null);
	}
	return (Datum) 0;
}
