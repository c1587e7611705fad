/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  Queue operations on chancy_jobs: pushing checked job values.
 *
 * Every push, single or many, goes through queue_push(): one INSERT ...
 * SELECT FROM unnest($1::chancy_job[]) statement, prepared once per backend,
 * run as the owner of chancy_jobs (users may not write the table directly,
 * so that the pushed_by role and the function of a job can be trusted).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "datatype/timestamp.h"

#include "chancy_internal.h"

/* how often a push retries a unique key whose live job vanished under it */
#define MAX_UNIQUE_RETRIES 10

/* The statements chancy runs on its queue, by what they do. */
typedef enum PlanId
{
	PLAN_INSERT,				/* push jobs */
	PLAN_INSERT_UNIQUE,			/* push jobs, some with a unique key */
	PLAN_EXISTING,				/* live jobs holding unique keys */
	PLAN_CLAIM,					/* an executor takes the next ready job */
	PLAN_SUCCEEDED,
	PLAN_FAILED,
	PLAN_NEXT_DUE,				/* when the next scheduled job is due */
	PLAN_REQUEUE,				/* an interrupted job goes back, no attempt used */
	PLAN_RECOVER,				/* jobs whose executor died */
	PLAN_CANCEL,
	PLAN_PRUNE,					/* finished jobs past their time */
	NPLANS
} PlanId;

/* JOBARRAY stands for chancy_job[], whose OID depends on the installation */
#define JOBARRAY InvalidOid

/* the partial indexes' predicates, repeated by the statements */
#define LIVE_UNIQUE_KEY \
	"unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running')"
#define READY "state IN ('pending', 'retrying')"

#define INSERT_JOBS \
	"INSERT INTO %1$s.chancy_jobs (name, function, queue, kwargs, priority," \
	" max_attempts, scheduled_at, unique_key, time_limit, memory_limit, meta," \
	" pushed_by)" \
	" SELECT j.name, j.function, j.queue, j.kwargs, j.priority, j.max_attempts," \
	" coalesce(j.scheduled_at, now()), j.unique_key, j.time_limit," \
	" j.memory_limit, j.meta, $2 FROM unnest($1) AS j "

static const struct
{
	const char *sql;			/* %1$s is the schema */
	int			nargs;
	Oid			argtypes[8];
}			plan_defs[NPLANS] =
{
	[PLAN_INSERT] = {
		INSERT_JOBS "RETURNING id, unique_key", 2, {JOBARRAY, REGROLEOID}
	},
	[PLAN_INSERT_UNIQUE] = {
		INSERT_JOBS "ON CONFLICT (unique_key) WHERE " LIVE_UNIQUE_KEY
		" DO NOTHING RETURNING id, unique_key", 2, {JOBARRAY, REGROLEOID}
	},
	[PLAN_EXISTING] = {
		"SELECT unique_key, id FROM %1$s.chancy_jobs"
		" WHERE unique_key = ANY ($1) AND " LIVE_UNIQUE_KEY, 1, {TEXTARRAYOID}
	},
	[PLAN_CLAIM] = {
		"UPDATE %1$s.chancy_jobs SET state = 'running',"
		" started_at = clock_timestamp(), attempts = attempts + 1, claim = $2"
		" WHERE id = ANY (ARRAY(SELECT id FROM %1$s.chancy_jobs"
		"  WHERE queue = $1 AND " READY " AND scheduled_at <= now()"
		"  ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED))"
		" RETURNING id, name, function, queue, kwargs, attempts, max_attempts,"
		" pushed_by, (extract(epoch FROM time_limit) * 1000)::int8, memory_limit,"
		" priority",
		3, {TEXTOID, INT8OID, INT4OID}
	},
	[PLAN_SUCCEEDED] = {
		"UPDATE %1$s.chancy_jobs j SET state = 'succeeded',"
		" completed_at = r.completed_at, result = r.result, claim = NULL"
		" FROM unnest($1::int8[], $3::jsonb[], $4::timestamptz[])"
		"  AS r(id, result, completed_at)"
		" WHERE j.id = r.id AND j.claim = $2",
		4, {INT8ARRAYOID, INT8OID, JSONBARRAYOID, TIMESTAMPTZARRAYOID}
	},
	[PLAN_FAILED] = {
		"UPDATE %1$s.chancy_jobs SET"
		" state = CASE WHEN attempts >= max_attempts THEN 'failed'"
		"  ELSE 'retrying' END::%1$s.chancy_state,"
		" completed_at = CASE WHEN attempts >= max_attempts THEN clock_timestamp() END,"
		" scheduled_at = CASE WHEN attempts >= max_attempts THEN scheduled_at"
		"  ELSE clock_timestamp() + make_interval(secs => $3) END,"
		" errors = errors || jsonb_build_object('attempt', attempts,"
		"  'message', $4, 'sqlstate', $5, 'detail', $6, 'hint', $7,"
		"  'context', $8, 'at', clock_timestamp()),"
		" claim = NULL"
		" WHERE id = $1 AND claim = $2 RETURNING state",
		8, {INT8OID, INT8OID, FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
	},
	[PLAN_NEXT_DUE] = {
		"SELECT min(scheduled_at) FROM %1$s.chancy_jobs"
		" WHERE queue = $1 AND " READY " AND scheduled_at > created_at",
		1, {TEXTOID}
	},
	[PLAN_REQUEUE] = {
		"UPDATE %1$s.chancy_jobs SET"
		" state = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END::%1$s.chancy_state,"
		" attempts = attempts - 1, scheduled_at = clock_timestamp(), claim = NULL,"
		" errors = errors || jsonb_build_object('attempt', attempts, 'message', $3::text,"
		"  'at', clock_timestamp())"
		" WHERE id = $1 AND claim = $2", 3, {INT8OID, INT8OID, TEXTOID}
	},
	[PLAN_RECOVER] = {
		"UPDATE %1$s.chancy_jobs SET crashes = crashes + 1,"
		" state = CASE WHEN crashes + 1 >= $1 THEN 'failed'"
		"  WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END::%1$s.chancy_state,"
		" completed_at = CASE WHEN crashes + 1 >= $1 THEN clock_timestamp() END,"
		" attempts = CASE WHEN crashes + 1 >= $1 THEN attempts ELSE attempts - 1 END,"
		" scheduled_at = clock_timestamp(), claim = NULL,"
		" errors = errors || jsonb_build_object('attempt', attempts,"
		"  'message', format('the executor running the job died (crash %%s of at most %%s)',"
		"   crashes + 1, $1), 'sqlstate', 'XX000', 'at', clock_timestamp())"
		" WHERE state = 'running' AND NOT claim = ANY ($2) RETURNING id",
		2, {INT4OID, INT8ARRAYOID}
	},
	[PLAN_PRUNE] = {
		"DELETE FROM %1$s.chancy_jobs WHERE id = ANY (ARRAY("
		" SELECT j.id FROM %1$s.chancy_jobs j"
		"  LEFT JOIN %1$s.chancy_queues q ON q.name = j.queue"
		" WHERE j.state IN ('succeeded', 'failed', 'cancelled')"
		"  AND j.completed_at < now() - least($1, (SELECT min(prune_after) FROM %1$s.chancy_queues))"
		"  AND j.completed_at < now() - coalesce(q.prune_after, $1)"
		" ORDER BY j.completed_at LIMIT $2))",
		2, {INTERVALOID, INT4OID}
	},
	[PLAN_CANCEL] = {
		"WITH old AS (SELECT id, state FROM %1$s.chancy_jobs WHERE id = $1 FOR UPDATE)"
		" UPDATE %1$s.chancy_jobs j SET state = 'cancelled',"
		" completed_at = clock_timestamp(), claim = NULL,"
		" errors = j.errors || jsonb_build_object('attempt', j.attempts,"
		"  'message', 'cancelled by ' || $2::regrole::text, 'sqlstate', '57014',"
		"  'at', clock_timestamp())"
		" FROM old WHERE j.id = old.id AND old.state IN ('pending', 'retrying', 'running')"
		" RETURNING old.state::text", 2, {INT8OID, REGROLEOID}
	},
};

/* plans, prepared for the installation in schema plans_nsp */
#define FINISHED "state IN ('succeeded', 'failed', 'cancelled')"
static Oid	plans_nsp = InvalidOid;
static SPIPlanPtr plans[NPLANS];

/* A unique key that conflicted, and where it is in the batch. */
typedef struct KeyRef
{
	const char *key;
	int			index;
} KeyRef;

/*
 * get_plan
 *		The prepared plan of a statement, for the current installation.
 *		Prepared on first use and kept for the life of the backend.
 */
static SPIPlanPtr
get_plan(ChancyCatalog *cat, PlanId id)
{
	Oid			argtypes[8];
	SPIPlanPtr	plan;

	if (plans_nsp != cat->nsp)
	{
		for (int i = 0; i < NPLANS; i++)
			if (plans[i])
				SPI_freeplan(plans[i]);
		memset(plans, 0, sizeof(plans));
		plans_nsp = cat->nsp;
	}
	if (plans[id])
		return plans[id];

	for (int i = 0; i < plan_defs[id].nargs; i++)
		argtypes[i] = plan_defs[id].argtypes[i] == JOBARRAY ?
			get_array_type(cat->job_typid) : plan_defs[id].argtypes[i];
	/* generic plans: planned once, whatever the parameters */
	plan = SPI_prepare_cursor(psprintf(plan_defs[id].sql, cat->nspname),
							  plan_defs[id].nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", plan_defs[id].sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	plans[id] = plan;
	return plan;
}

/*
 * execute
 *		Run one of chancy's statements with its prepared plan, under
 *		statement_settings; the SPI result code.
 */
static int
execute(ChancyCatalog *cat, PlanId id, Datum *args, const char *nulls,
		bool read_only)
{
	int			nestlevel = statement_settings();
	int			rc = SPI_execute_plan(get_plan(cat, id), args, nulls, read_only, 0);

	AtEOXact_GUC(true, nestlevel);
	return rc;
}

/* qsort/bsearch comparator of KeyRefs by key */
static int
keyref_cmp(const void *a, const void *b)
{
	return strcmp(((const KeyRef *) a)->key, ((const KeyRef *) b)->key);
}

/*
 * find_live_jobs
 *		For each conflicting key, the id of the live job holding it.  Keys
 *		whose job finished meanwhile are left in *todo to be pushed again.
 */
static void
find_live_jobs(ChancyCatalog *cat, KeyRef *conflicts, int nconflicts, int64 *ids,
			   int *todo, int *ntodo)
{
	Datum	   *keys = palloc(sizeof(Datum) * nconflicts);
	KeyRef	   *live;
	uint64		nlive;
	Datum		arg;

	for (int i = 0; i < nconflicts; i++)
		keys[i] = CStringGetTextDatum(conflicts[i].key);
	arg = PointerGetDatum(construct_array(keys, nconflicts, TEXTOID, -1, false,
										  TYPALIGN_INT));
	if (execute(cat, PLAN_EXISTING, &arg, NULL, false)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not look up jobs by unique key");

	/* the live jobs found, sorted by key; index holds the row */
	nlive = SPI_processed;
	live = palloc(sizeof(KeyRef) * (nlive + 1));
	for (uint64 r = 0; r < nlive; r++)
	{
		live[r].key = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		live[r].index = (int) r;
	}
	qsort(live, nlive, sizeof(KeyRef), keyref_cmp);

	*ntodo = 0;
	for (int i = 0; i < nconflicts; i++)
	{
		KeyRef	   *hit = bsearch(&conflicts[i], live, nlive, sizeof(KeyRef),
								  keyref_cmp);
		bool		isnull;

		if (hit == NULL)
			todo[(*ntodo)++] = conflicts[i].index;
		else
			ids[conflicts[i].index] =
				DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[hit->index],
											SPI_tuptable->tupdesc, 2, &isnull));
	}
}

/*
 * insert_batch
 *		Insert the jobs of array (elements todo[0..ntodo) of the whole batch)
 *		and set their ids.  Jobs whose unique key is live are collected in
 *		conflicts instead.  RETURNING yields inserted rows in input order,
 *		which is what pairs them with the batch; that is checked.
 */
static int
insert_batch(ChancyCatalog *cat, ArrayType *array, char **keys, int *todo, int ntodo,
			 Oid pushed_by, int64 *ids, KeyRef *conflicts)
{
	Datum		args[2];
	uint64		row = 0;
	int			nconflicts = 0;

	args[0] = PointerGetDatum(array);
	args[1] = ObjectIdGetDatum(pushed_by);
	if (execute(cat, keys ? PLAN_INSERT_UNIQUE : PLAN_INSERT, args, NULL, false)
		!= SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert jobs");

	for (int k = 0; k < ntodo; k++)
	{
		int			i = todo[k];
		char	   *key = keys ? keys[i] : NULL;
		char	   *rowkey = NULL;
		bool		isnull;

		if (row < SPI_processed)
			rowkey = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2);
		if (key != NULL && (rowkey == NULL || strcmp(key, rowkey) != 0))
		{
			conflicts[nconflicts].key = key;
			conflicts[nconflicts++].index = i;
			continue;
		}
		if (row >= SPI_processed || (key == NULL) != (rowkey == NULL))
			elog(ERROR, "inserted jobs do not match the batch pushed");
		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[row],
											 SPI_tuptable->tupdesc, 1, &isnull));
		row++;
	}
	if (row != SPI_processed)
		elog(ERROR, "inserted jobs do not match the batch pushed");
	return nconflicts;
}

/*
 * queue_push
 *		Insert checked job values and return their ids in array order.
 *
 * keys[i] is the unique key of element i (NULL for none), or keys is NULL
 * when no job has one.  A job whose unique key is held by a live job is not
 * inserted; its id is that job's.  Concurrent pushes of one key wait for each
 * other on the unique index, so exactly one job results.
 */
int64 *
queue_push(ChancyCatalog *cat, ArrayType *jobs, char **keys)
{
	int			n = ArrayGetNItems(ARR_NDIM(jobs), ARR_DIMS(jobs));
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	int		   *todo = palloc(sizeof(int) * Max(n, 1));
	KeyRef	   *conflicts = palloc(sizeof(KeyRef) * Max(n, 1));
	Datum	   *elems = NULL;
	int			ntodo = n;
	Oid			pushed_by = GetUserId();
	Oid			save_userid;
	int			save_sec_context;

	if (n == 0)
		return ids;
	for (int i = 0; i < n; i++)
		todo[i] = i;

	SPI_connect();
	chancy_become_owner(cat, &save_userid, &save_sec_context);

	for (int attempt = 0; ntodo > 0; attempt++)
	{
		int			nconflicts;

		if (attempt > 0)
		{
			/* push again the jobs whose key holder finished meanwhile */
			Datum	   *sub = palloc(sizeof(Datum) * ntodo);

			if (attempt > MAX_UNIQUE_RETRIES)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not push job with unique key \"%s\"",
								keys[todo[0]]),
						 errdetail("The live job holding the key kept finishing while the push looked for it."),
						 errhint("Retry the transaction.")));
			if (elems == NULL)
				deconstruct_array(jobs, cat->job_typid, -1, false, TYPALIGN_DOUBLE,
								  &elems, NULL, &n);
			for (int k = 0; k < ntodo; k++)
				sub[k] = elems[todo[k]];
			jobs = construct_array(sub, ntodo, cat->job_typid, -1, false,
								   TYPALIGN_DOUBLE);
		}
		nconflicts = insert_batch(cat, jobs, keys, todo, ntodo, pushed_by, ids,
								  conflicts);
		ntodo = 0;
		if (nconflicts > 0)
			find_live_jobs(cat, conflicts, nconflicts, ids, todo, &ntodo);
	}

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
	return ids;
}

/*
 * statement_settings
 *		Settings every statement chancy runs on its tables gets: a safe
 *		search_path, and a planner that uses the indexes whatever the
 *		statistics say.
 *
 * search_path is pg_catalog (then pg_temp): the statements name chancy's
 * tables with their schema, and the functions they call must be the
 * built-in ones, not a same-named function of the caller's (they often run
 * as the tables' owner).
 *
 * With statistics that say the table is empty (stale, after a burst), the
 * cheapest-looking plan for the claim is a sequential scan and a sort, and
 * for an update of a few jobs by id a sequential scan: at millions of
 * finished rows that is a disaster.  Sequential and bitmap scans and sorts
 * are disabled while chancy's statements are planned and run (their plans
 * are generic, kept, and replanned only under these settings), which leaves
 * the indexes: for the claim, the ready index, whose order is the dequeue
 * order.  Returns the GUC nest level to pass to AtEOXact_GUC.
 */
int
statement_settings(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* qsort comparator of claimed jobs: the dequeue order */
static int
claimed_cmp(const void *a, const void *b)
{
	const ClaimedJob *x = *(ClaimedJob *const *) a;
	const ClaimedJob *y = *(ClaimedJob *const *) b;

	if (x->priority != y->priority)
		return x->priority > y->priority ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id ? 1 : 0;
}

/*
 * queue_claim
 *		Take up to max ready jobs of a queue (priority DESC, then id) and mark
 *		them running under the given claim token.  They are returned in that
 *		order, allocated in the caller's memory context; the count.
 */
int
queue_claim(ChancyCatalog *cat, const char *queue, int64 claim, int max,
			ClaimedJob **jobs)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		args[3];
	int			n;

	args[0] = CStringGetTextDatum(queue);
	args[1] = Int64GetDatum(claim);
	args[2] = Int32GetDatum(max);
	SPI_connect();
	if (execute(cat, PLAN_CLAIM, args, NULL, false) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim jobs");
	n = (int) SPI_processed;
	for (int r = 0; r < n; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		ClaimedJob *job = palloc0(sizeof(ClaimedJob));
		bool		isnull;

		job->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		job->name = SPI_getvalue(tup, desc, 2);
		job->function = SPI_getvalue(tup, desc, 3);
		job->queue = SPI_getvalue(tup, desc, 4);
		/* the value itself, not a TOAST pointer: it outlives the claim */
		job->kwargs = PointerGetDatum(PG_DETOAST_DATUM_COPY(SPI_getbinval(tup, desc, 5,
																		  &isnull)));
		job->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		job->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
		job->pushed_by = DatumGetObjectId(SPI_getbinval(tup, desc, 8, &isnull));
		job->time_limit_ms = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
		if (isnull)
			job->time_limit_ms = 0;
		job->memory_limit = DatumGetInt64(SPI_getbinval(tup, desc, 10, &isnull));
		if (isnull)
			job->memory_limit = 0;
		job->priority = DatumGetInt32(SPI_getbinval(tup, desc, 11, &isnull));
		job->claim = claim;
		jobs[r] = job;
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	qsort(jobs, n, sizeof(ClaimedJob *), claimed_cmp);
	return n;
}

/*
 * queue_claim_plan
 *		The plan of the claim, as EXPLAIN (COSTS OFF) shows it under the
 *		claim's planner settings, with literal values for its parameters.
 */
List *
queue_claim_plan(ChancyCatalog *cat, const char *queue)
{
	char	   *sql = psprintf(plan_defs[PLAN_CLAIM].sql, cat->nspname);
	StringInfoData explain;
	List	   *lines = NIL;
	int			nestlevel;
	MemoryContext cxt = CurrentMemoryContext;

	/* $1 (queue), $2 (claim), $3 (batch) as literals */
	initStringInfo(&explain);
	appendStringInfoString(&explain, "EXPLAIN (COSTS OFF) ");
	for (const char *p = sql; *p; p++)
	{
		if (p[0] == '$' && p[1] >= '1' && p[1] <= '3')
		{
			appendStringInfoString(&explain, p[1] == '1' ? quote_literal_cstr(queue) :
								   p[1] == '2' ? "0" : "16");
			p++;
		}
		else
			appendStringInfoChar(&explain, *p);
	}
	SPI_connect();
	nestlevel = statement_settings();
	if (SPI_execute(explain.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not explain the claim");
	AtEOXact_GUC(true, nestlevel);
	for (uint64 r = 0; r < SPI_processed; r++)
		lines = lappend(lines, MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[r],
																	 SPI_tuptable->tupdesc, 1)));
	SPI_finish();
	return lines;
}

/*
 * queue_succeeded
 *		Record the success of n jobs of one claim, in one statement (in the
 *		transaction that ran them).  False if some row no longer carries the
 *		claim (a job was cancelled, or recovered, while it ran): the caller
 *		must then roll back.
 */
bool
queue_succeeded(ChancyCatalog *cat, int64 claim, int n, Datum *ids,
				Datum *results, bool *result_nulls, Datum *completed_at)
{
	Datum		args[4];
	int			dims[1] = {n};
	int			lbs[1] = {1};
	bool		held;

	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL,
											  TYPALIGN_DOUBLE));
	args[1] = Int64GetDatum(claim);
	args[2] = PointerGetDatum(construct_md_array(results, result_nulls, 1, dims, lbs,
												 JSONBOID, -1, false, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_array(completed_at, n, TIMESTAMPTZOID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	SPI_connect();
	if (execute(cat, PLAN_SUCCEEDED, args, NULL, false)
		!= SPI_OK_UPDATE)
		elog(ERROR, "could not record the success of jobs");
	held = SPI_processed == (uint64) n;
	SPI_finish();
	return held;
}

/* A text datum of an optional string, for SPI arguments */
static Datum
text_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * queue_failed
 *		Record a failed attempt: the job retries after backoff seconds while
 *		it has attempts left, else it has failed.  Returns the new state, or
 *		NULL if the row no longer carries our claim.
 */
const char *
queue_failed(ChancyCatalog *cat, ClaimedJob *job, ErrorData *edata, double backoff)
{
	Datum		args[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	const char *state;

	args[0] = Int64GetDatum(job->id);
	args[1] = Int64GetDatum(job->claim);
	args[2] = Float8GetDatum(backoff);
	args[3] = text_or_null(edata->message ? edata->message : "unknown error", &nulls[3]);
	args[4] = text_or_null(unpack_sql_state(edata->sqlerrcode), &nulls[4]);
	args[5] = text_or_null(edata->detail, &nulls[5]);
	args[6] = text_or_null(edata->hint, &nulls[6]);
	args[7] = text_or_null(edata->context, &nulls[7]);
	SPI_connect();
	if (execute(cat, PLAN_FAILED, args, nulls, false)
		!= SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not record the failure of job %lld", (long long) job->id);
	state = SPI_processed != 1 ? NULL :
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
			   "failed") == 0 ? "failed" : "retrying";
	SPI_finish();
	return state;
}

/*
 * queue_requeue
 *		Put back a job that was interrupted through no fault of its own (its
 *		executor was asked to stop): it runs again at once, and the attempt is
 *		not counted.  False if the row no longer carries our claim.
 */
bool
queue_requeue(ChancyCatalog *cat, ClaimedJob *job, const char *why)
{
	Datum		args[3];
	bool		held;

	args[0] = Int64GetDatum(job->id);
	args[1] = Int64GetDatum(job->claim);
	args[2] = CStringGetTextDatum(why);
	SPI_connect();
	if (execute(cat, PLAN_REQUEUE, args, NULL, false)
		!= SPI_OK_UPDATE)
		elog(ERROR, "could not put back job %lld", (long long) job->id);
	held = SPI_processed == 1;
	SPI_finish();
	return held;
}

/*
 * queue_recover
 *		After a crash: every job still running under a claim that no live
 *		executor holds has lost its executor.  Each goes back to be retried,
 *		its attempt not counted, or fails once it has crashed its executor
 *		max_crashes times.  Returns how many were recovered.
 */
int
queue_recover(ChancyCatalog *cat, int max_crashes, ArrayType *live_claims)
{
	Datum		args[2];
	int			n;

	args[0] = Int32GetDatum(max_crashes);
	args[1] = PointerGetDatum(live_claims);
	SPI_connect();
	if (execute(cat, PLAN_RECOVER, args, NULL, false)
		!= SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not recover running jobs");
	n = (int) SPI_processed;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;

		wakeup_job_done(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
													SPI_tuptable->tupdesc, 1, &isnull)));
	}
	SPI_finish();
	return n;
}

/*
 * queue_prune
 *		Delete up to batch finished jobs older than their queue's
 *		prune_after, or prune_after (NULL: never); how many.
 */
int
queue_prune(ChancyCatalog *cat, Interval *prune_after, int batch)
{
	Datum		args[2];
	char		nulls[2] = {prune_after ? ' ' : 'n', ' '};
	int			n;

	args[0] = IntervalPGetDatum(prune_after);
	args[1] = Int32GetDatum(batch);
	SPI_connect();
	if (execute(cat, PLAN_PRUNE, args, nulls, false) != SPI_OK_DELETE)
		elog(ERROR, "could not prune finished jobs");
	n = (int) SPI_processed;
	SPI_finish();
	return n;
}

/*
 * queue_cancel
 *		Cancel a job as role; the state it had ("running" means its executor
 *		must be told), or NULL if it had already finished.
 */
char *
queue_cancel(ChancyCatalog *cat, int64 id, Oid role)
{
	Datum		args[2];
	char	   *state = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	args[0] = Int64GetDatum(id);
	args[1] = ObjectIdGetDatum(role);
	SPI_connect();
	if (execute(cat, PLAN_CANCEL, args, NULL, false)
		!= SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not cancel job %lld", (long long) id);
	if (SPI_processed == 1)
		state = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1));
	SPI_finish();
	return state;
}

/*
 * queue_next_due
 *		When the next job of a queue that waits for its scheduled time is due
 *		(jobs pushed for later, and retries), or 0 if there is none.
 */
TimestampTz
queue_next_due(ChancyCatalog *cat, const char *queue)
{
	Datum		arg = CStringGetTextDatum(queue);
	TimestampTz due = 0;
	bool		isnull;

	SPI_connect();
	if (execute(cat, PLAN_NEXT_DUE, &arg, NULL, true)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not find the next due job");
	due = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		due = 0;
	SPI_finish();
	return due;
}
