/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL-callable functions of the pushing side: job definitions,
 *	  immutable job values and their chancy_with_* builders, the pushes, and
 *	  the triggers and helpers of chancy's tables.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "replication/origin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "chancy_internal.h"

PG_FUNCTION_INFO_V1(chancy_definitions_changed);
PG_FUNCTION_INFO_V1(chancy_queues_changed);
PG_FUNCTION_INFO_V1(chancy_replace_made_row);
PG_FUNCTION_INFO_V1(chancy_mark_replicated);
PG_FUNCTION_INFO_V1(chancy_interval_ms);
PG_FUNCTION_INFO_V1(chancy_executors_left);
PG_FUNCTION_INFO_V1(chancy_define_job);
PG_FUNCTION_INFO_V1(chancy_undefine_job);
PG_FUNCTION_INFO_V1(chancy_job);
PG_FUNCTION_INFO_V1(chancy_with_attr);
PG_FUNCTION_INFO_V1(chancy_with_kwargs);
PG_FUNCTION_INFO_V1(chancy_with_limits);
PG_FUNCTION_INFO_V1(chancy_push_job);
PG_FUNCTION_INFO_V1(chancy_push_named);
PG_FUNCTION_INFO_V1(chancy_push_many);

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
 * arg_job
 *		The chancy_job argument of a builder or push, split into attributes.
 */
static void
arg_job(FunctionCallInfo fcinfo, ChancyCatalog *cat, JobValue *job)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job must not be NULL"),
				 errhint("Build job values with chancy_job(name).")));
	job_deform(cat, PG_GETARG_HEAPTUPLEHEADER(0), job);
}

/* Concatenate two jsonb objects, the right one winning. */
static Datum
merge_jsonb(Datum left, Datum right)
{
	return DirectFunctionCall2(jsonb_concat, left, right);
}

/* Set one attribute of a job value, checking it. */
static void
set_attr(JobValue *job, JobAttr attr, Datum value, bool isnull)
{
	job_check_attr(attr, value, isnull);
	job->values[attr] = value;
	job->nulls[attr] = isnull;
}

/*
 * check_can_push
 *		Pushes write: not on a standby, where the INSERT would fail with an
 *		internal statement as its context.  A push into a database that
 *		chancy does not serve is warned about, once a session: its jobs wait
 *		for ever.
 */
static void
check_can_push(void)
{
	static bool warned = false;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot push jobs on a standby"),
				 errhint("Push jobs on the primary; they run there.")));
	if (!warned)
	{
		warned = true;
		catalog_warn_unlisted();
	}
}

/*
 * push_one
 *		Authorize and push a single checked job value; its id.
 */
static int64
push_one(ChancyCatalog *cat, JobValue *job)
{
	char	   *key = NULL;

	check_can_push();
	job_fill_limit_keys(job);
	job_authorize(cat, job);
	if (!job->nulls[JA_UNIQUE_KEY])
		key = TextDatumGetCString(job->values[JA_UNIQUE_KEY]);
	wakeup_queue_at_commit(TextDatumGetCString(job->values[JA_QUEUE]), 1);
	return queue_push(cat, job, 1, key ? &key : NULL)[0];
}

/*
 * chancy_definitions_changed
 *		Statement trigger on chancy_job_definitions: every backend forgets
 *		its cached definitions when the change commits.
 */
Datum
chancy_definitions_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function chancy_definitions_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	job_forget_definitions();
	return PointerGetDatum(NULL);
}

/*
 * chancy_executors_left() RETURNS int
 *		How many executors the queues of this database may have: those of
 *		chancy.max_executors that the queues of the other served databases
 *		do not ask for.  NULL if this database is not served (nothing runs
 *		here, whatever its queues ask).  chancy_declare_queue() refuses a
 *		change that would ask for more.
 */
Datum
chancy_executors_left(PG_FUNCTION_ARGS)
{
	if (!slots_db_served())
		PG_RETURN_NULL();
	PG_RETURN_INT32(Max(chancy_max_executors - slots_db_declared_elsewhere(), 0));
}

/*
 * chancy_queues_changed
 *		Statement trigger on chancy_queues: every backend forgets the queues
 *		it cached; the database's supervisor and executors look at the
 *		queues again when the change commits.  A queue may not be added or
 *		changed while the extension's objects are older than this library
 *		(chancy_catalog() says to update them).
 */
Datum
chancy_queues_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function chancy_queues_changed() must be called as a trigger")));
	if (!TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		(void) chancy_catalog(RelationGetNamespace(trigdata->tg_relation));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	catalog_forget_queues();
	wakeup_queues_changed_at_commit();
	return PointerGetDatum(NULL);
}

/*
 * chancy_replace_made_row
 *		BEFORE INSERT row trigger of chancy_queues and chancy_job_definitions.
 *		The row inserted replaces the row of its key that chancy made itself
 *		(a queue of chancy.queues, a definition an extension's script wrote):
 *		CREATE EXTENSION makes those again before pg_restore loads the
 *		dumped rows.  A row written by logical replication replaces any row
 *		of its key: a subscriber takes the publisher's.
 */
Datum
chancy_replace_made_row(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	bool		queues;
	bool		replicated = replorigin_session_origin != InvalidRepOriginId &&
		!catalog_writing;
	bool		isnull;
	Datum		args[2];
	Oid			argtypes[2] = {TEXTOID, REGROLEOID};

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function chancy_replace_made_row() must be called as a BEFORE INSERT row trigger")));
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	tuple = trigdata->tg_trigtuple;
	queues = strcmp(RelationGetRelationName(rel), "chancy_queues") == 0;

	/* a row chancy makes itself replaces nothing */
	if (!replicated &&
		DatumGetBool(heap_getattr(tuple,
								  SPI_fnumber(desc, queues ? "from_config" : "from_extension"),
								  desc, &isnull)))
		return PointerGetDatum(tuple);

	args[0] = heap_getattr(tuple, SPI_fnumber(desc, "name"), desc, &isnull);
	if (!queues)
		args[1] = heap_getattr(tuple, SPI_fnumber(desc, "defined_by"), desc, &isnull);
	SPI_connect();
	if (SPI_execute_with_args(psprintf("DELETE FROM %s.%s WHERE name = $1%s%s",
									   quote_identifier(get_namespace_name(RelationGetNamespace(rel))),
									   quote_identifier(RelationGetRelationName(rel)),
									   queues ? "" : " AND defined_by = $2",
									   replicated ? "" :
									   queues ? " AND from_config" : " AND from_extension"),
							  queues ? 1 : 2, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not replace a row of %s", RelationGetRelationName(rel));
	SPI_finish();
	return PointerGetDatum(tuple);
}

/*
 * chancy_mark_replicated
 *		BEFORE INSERT OR UPDATE row trigger of chancy_jobs and
 *		chancy_schedules, enabled for replica sessions only: a job or
 *		schedule that logical replication writes is the publisher's, marked
 *		replicated so that no executor here runs it and no supervisor here
 *		fires it.  A
 *		session that merely set session_replication_role is not replication,
 *		and a push that a trigger makes in an apply worker is this database's
 *		own (catalog_writing).
 */
Datum
chancy_mark_replicated(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	int			attnum;
	Datum		value = BoolGetDatum(true);
	bool		isnull = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function chancy_mark_replicated() must be called as a BEFORE row trigger")));
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	if (replorigin_session_origin == InvalidRepOriginId || catalog_writing)
		return PointerGetDatum(tuple);
	attnum = SPI_fnumber(RelationGetDescr(trigdata->tg_relation), "replicated");
	if (attnum <= 0)
		elog(ERROR, "table \"%s\" has no column \"replicated\"", RelationGetRelationName(trigdata->tg_relation));
	return PointerGetDatum(heap_modify_tuple_by_cols(tuple,
													 RelationGetDescr(trigdata->tg_relation),
													 1, &attnum, &value, &isnull));
}

/*
 * chancy_interval_ms(interval) RETURNS bigint
 *		An interval's length in milliseconds, or -1 if it has a negative part:
 *		the one rule for the intervals of chancy's tables (their CHECK
 *		constraints use it).
 */
Datum
chancy_interval_ms(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(interval_ms(PG_GETARG_INTERVAL_P(0)));
}

/*
 * chancy_define_job(name, function, queue, priority, max_attempts, kwargs,
 *					 time_limit, memory_limit) RETURNS chancy_job
 *		Define (or change) the current role's defaults of a job: the seed's
 *		@job(...).  Arguments left NULL keep what the definition had.
 */
Datum
chancy_define_job(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	JobValue	job;

	job_define(cat, fcinfo, &job);
	PG_RETURN_DATUM(job_form(cat, &job));
}

/*
 * chancy_undefine_job(name)
 *		Remove the current role's definition of a job.
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
 *		The job value a push of "name" by the current role starts from.
 */
Datum
chancy_job(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	JobValue	job;

	job_defaults(cat, arg_text(fcinfo, 0, JA_NAME), &job);
	PG_RETURN_DATUM(job_form(cat, &job));
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
	JobValue	job;
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

	arg_job(fcinfo, cat, &job);
	set_attr(&job, attr, PG_GETARG_DATUM(1), PG_ARGISNULL(1));
	PG_RETURN_DATUM(job_form(cat, &job));
}

/*
 * chancy_with_kwargs(job, kwargs, replace) RETURNS chancy_job
 *		A copy of job with kwargs merged over its own (or replacing them).
 */
Datum
chancy_with_kwargs(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	JobValue	job;
	Datum		kwargs = PG_GETARG_DATUM(1);

	arg_job(fcinfo, cat, &job);
	job_check_attr(JA_KWARGS, kwargs, PG_ARGISNULL(1));
	if (PG_ARGISNULL(2) || !PG_GETARG_BOOL(2))
	{
		job_check_attr(JA_KWARGS, job.values[JA_KWARGS], job.nulls[JA_KWARGS]);
		kwargs = merge_jsonb(job.values[JA_KWARGS], kwargs);
	}
	job.values[JA_KWARGS] = kwargs;
	PG_RETURN_DATUM(job_form(cat, &job));
}

/*
 * chancy_with_limits(job, time_limit, memory_limit) RETURNS chancy_job
 *		A copy of job with both limits set; NULL removes a limit.
 */
Datum
chancy_with_limits(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	JobValue	job;

	arg_job(fcinfo, cat, &job);
	set_attr(&job, JA_TIME_LIMIT, PG_GETARG_DATUM(1), PG_ARGISNULL(1));
	set_attr(&job, JA_MEMORY_LIMIT, PG_GETARG_DATUM(2), PG_ARGISNULL(2));
	PG_RETURN_DATUM(job_form(cat, &job));
}

/*
 * chancy_push(job chancy_job) RETURNS bigint
 *		Push a job value; its id (or the live job's, for a held unique key).
 */
Datum
chancy_push_job(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	JobValue	job;

	arg_job(fcinfo, cat, &job);
	job_check(&job);
	PG_RETURN_INT64(push_one(cat, &job));
}

/*
 * chancy_push(name, kwargs, queue, priority, max_attempts, scheduled_at,
 *			   unique_key, time_limit, memory_limit, meta, limit_keys) RETURNS bigint
 *		Push job "name" with its defaults; non-NULL arguments override them,
 *		kwargs being merged over the default kwargs.
 */
Datum
chancy_push_named(PG_FUNCTION_ARGS)
{
	static const JobAttr args[] = {
		JA_NAME, JA_KWARGS, JA_QUEUE, JA_PRIORITY, JA_MAX_ATTEMPTS,
		JA_SCHEDULED_AT, JA_UNIQUE_KEY, JA_TIME_LIMIT, JA_MEMORY_LIMIT, JA_META,
		JA_LIMIT_KEYS
	};
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	JobValue	job;

	job_defaults(cat, arg_text(fcinfo, 0, JA_NAME), &job);
	for (int i = 1; i < lengthof(args) && i < PG_NARGS(); i++)
	{
		Datum		value = PG_GETARG_DATUM(i);

		if (PG_ARGISNULL(i))
			continue;
		if (args[i] == JA_KWARGS)
		{
			job_check_attr(JA_KWARGS, value, false);
			value = merge_jsonb(job.values[JA_KWARGS], value);
		}
		set_attr(&job, args[i], value, false);
	}
	PG_RETURN_INT64(push_one(cat, &job));
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
 * api_prepare_jobs
 *		Check and authorize n job values (chancy_job datums) for a push by
 *		the current user, and have their queues' executors woken at commit.
 *		*keys is set to their unique keys (NULL: none has one).  what names
 *		the array in errors.
 *
 * Every element is checked and authorized before anything is inserted, so
 * a bad element leaves nothing behind.  Consecutive jobs of the same name,
 * function and queue (the usual batch) are authorized once.
 */
JobValue *
api_prepare_jobs(ChancyCatalog *cat, Datum *elems, bool *elemnulls, int n, char ***keys,
				 const char *what)
{
	JobValue   *jobs;
	JobValue   *prev = NULL;
	Datum		prev_spec = (Datum) 0;	/* prev's function, as given */
	int			queue_jobs = 0;

	check_can_push();
	*keys = NULL;
	jobs = palloc(sizeof(JobValue) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		JobValue   *job = &jobs[i];

		if (elemnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("element %d of %s is NULL", i + 1, what),
					 errhint("Remove NULL elements, for example with array_remove(jobs, NULL).")));
		job_deform(cat, DatumGetHeapTupleHeader(elems[i]), job);
		job_check(job);
		job_fill_limit_keys(job);

		if (prev != NULL &&
			text_equal(prev->values[JA_NAME], job->values[JA_NAME]) &&
			text_equal(prev_spec, job->values[JA_FUNCTION]) &&
			text_equal(prev->values[JA_QUEUE], job->values[JA_QUEUE]))
		{
			/* the same job as before: authorized the same way */
			job->values[JA_FUNCTION] = prev->values[JA_FUNCTION];
			job->function_oid = prev->function_oid;
			job->function_owner = prev->function_owner;
			job->function_digest = prev->function_digest;
			job_check_command(cat, job);
			queue_jobs++;
		}
		else
		{
			if (prev != NULL)
				wakeup_queue_at_commit(TextDatumGetCString(prev->values[JA_QUEUE]),
									   queue_jobs);
			prev_spec = job->values[JA_FUNCTION];
			job_authorize(cat, job);
			prev = job;
			queue_jobs = 1;
		}
		if (!job->nulls[JA_UNIQUE_KEY])
		{
			if (*keys == NULL)
				*keys = palloc0(sizeof(char *) * n);
			(*keys)[i] = TextDatumGetCString(job->values[JA_UNIQUE_KEY]);
		}
	}
	if (prev != NULL)
		wakeup_queue_at_commit(TextDatumGetCString(prev->values[JA_QUEUE]), queue_jobs);
	return jobs;
}

/*
 * chancy_push_many(jobs chancy_job[]) RETURNS bigint[]
 *		Push many job values in one statement; their ids in input order.
 */
Datum
chancy_push_many(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	ArrayType  *array;
	Datum	   *elems;
	bool	   *elemnulls;
	int			n;
	JobValue   *jobs;
	char	  **keys;
	Datum	   *ids;
	int64	   *pushed;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("jobs must not be NULL"),
				 errhint("Pass an array of chancy_job values, for example ARRAY[chancy_job('greet')].")));
	array = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("jobs must be a one-dimensional array, not %d-dimensional",
						ARR_NDIM(array))));
	deconstruct_array(array, cat->job_typid, -1, false, TYPALIGN_DOUBLE,
					  &elems, &elemnulls, &n);
	jobs = api_prepare_jobs(cat, elems, elemnulls, n, &keys, "jobs");
	pushed = queue_push(cat, jobs, n, keys);
	ids = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		ids[i] = Int64GetDatum(pushed[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}
