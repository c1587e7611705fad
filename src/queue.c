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
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "chancy_internal.h"

/* the partial unique index's predicate, repeated by ON CONFLICT */
#define LIVE_UNIQUE_KEY \
	"unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running')"

/* how often a push retries a unique key whose live job vanished under it */
#define MAX_UNIQUE_RETRIES 10

/* plans, prepared for the installation in schema plans_nsp */
static Oid	plans_nsp = InvalidOid;
static SPIPlanPtr insert_plan[2];	/* [with ON CONFLICT for unique keys] */
static SPIPlanPtr existing_plan;

/* A unique key that conflicted, and where it is in the batch. */
typedef struct KeyRef
{
	const char *key;
	int			index;
} KeyRef;

/*
 * prepare_plan
 *		Prepare and keep a plan for the current installation.
 */
static SPIPlanPtr
prepare_plan(const char *query, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(query, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", query,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * queue_plans
 *		Make sure the push plans exist for the current installation.
 */
static void
queue_plans(ChancyCatalog *cat)
{
	Oid			argtypes[2];

	if (plans_nsp == cat->nsp && insert_plan[0] != NULL)
		return;
	for (int i = 0; i < 2; i++)
		if (insert_plan[i])
			SPI_freeplan(insert_plan[i]);
	if (existing_plan)
		SPI_freeplan(existing_plan);
	insert_plan[0] = insert_plan[1] = existing_plan = NULL;
	plans_nsp = InvalidOid;

	argtypes[0] = get_array_type(cat->job_typid);
	argtypes[1] = REGROLEOID;
	for (int unique = 0; unique < 2; unique++)
		insert_plan[unique] = prepare_plan(
			psprintf("INSERT INTO %s.chancy_jobs (name, function, queue, kwargs,"
					 " priority, max_attempts, scheduled_at, unique_key,"
					 " time_limit, memory_limit, meta, pushed_by)"
					 " SELECT j.name, j.function, j.queue, j.kwargs, j.priority,"
					 " j.max_attempts, coalesce(j.scheduled_at, now()), j.unique_key,"
					 " j.time_limit, j.memory_limit, j.meta, $2"
					 " FROM unnest($1) AS j %s RETURNING id, unique_key",
					 cat->nspname,
					 unique ? "ON CONFLICT (unique_key) WHERE " LIVE_UNIQUE_KEY
					 " DO NOTHING" : ""),
			2, argtypes);

	argtypes[0] = TEXTARRAYOID;
	existing_plan = prepare_plan(
		psprintf("SELECT unique_key, id FROM %s.chancy_jobs"
				 " WHERE unique_key = ANY ($1) AND " LIVE_UNIQUE_KEY,
				 cat->nspname),
		1, argtypes);
	plans_nsp = cat->nsp;
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
find_live_jobs(KeyRef *conflicts, int nconflicts, int64 *ids,
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
	if (SPI_execute_plan(existing_plan, &arg, NULL, false, 0) != SPI_OK_SELECT)
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
insert_batch(ArrayType *array, char **keys, int *todo, int ntodo,
			 Oid pushed_by, int64 *ids, KeyRef *conflicts)
{
	Datum		args[2];
	uint64		row = 0;
	int			nconflicts = 0;

	args[0] = PointerGetDatum(array);
	args[1] = ObjectIdGetDatum(pushed_by);
	if (SPI_execute_plan(insert_plan[keys != NULL], args, NULL, false, 0)
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
	queue_plans(cat);
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
		nconflicts = insert_batch(jobs, keys, todo, ntodo, pushed_by, ids,
								  conflicts);
		ntodo = 0;
		if (nconflicts > 0)
			find_live_jobs(conflicts, nconflicts, ids, todo, &ntodo);
	}

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
	return ids;
}
