/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  The statements chancy runs on chancy_jobs: the one push path, the
 *	  claim, each outcome, giving jobs back, cancel, retry, prune.
 *
 * Every change of a job's state is one statement below (src/README.md
 * labels each edge of the job state drawing with its PLAN_*).  Each is
 * prepared once per backend as a generic plan under the settings of
 * catalog_sql_begin(), and runs as the owner of chancy_jobs: users may not
 * write the table, so that the role a job runs as and the function it runs
 * can be trusted.  Statements that change a claimed job check its claim
 * token, so that a late write from an executor presumed dead changes
 * nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

/* how often a push retries a unique key whose live job vanished under it */
#define MAX_UNIQUE_RETRIES 10

/* a batch claim stops adding jobs once their kwargs reach this many bytes */
#define CLAIM_MAX_BYTES (1024 * 1024)

/* finished jobs deleted per statement, and statements per queue and round */
#define PRUNE_BATCH 5000
#define PRUNE_MAX_BATCHES 20
/* finished workflows deleted per statement */
#define WF_PRUNE_BATCH 100

/* The statements, by what they do.  See src/README.md for the drawing. */
typedef enum PlanId
{
	PLAN_INSERT,				/* push jobs */
	PLAN_INSERT_ONE,			/* push a job */
	PLAN_INSERT_UNIQUE_ONE,		/* push a job with a unique key */
	PLAN_INSERT_UNIQUE,			/* push jobs, some with a unique key */
	PLAN_EXISTING,				/* the pusher's live jobs holding keys */
	PLAN_CLAIM,					/* an executor takes ready jobs */
	PLAN_IDLE,					/* nothing claimed: why, and until when */
	PLAN_SUCCEEDED,				/* a group of claimed jobs succeeded */
	PLAN_FAILED,				/* a claimed job failed: retrying or failed */
	PLAN_CANCELLED,				/* a claimed job was cancelled */
	PLAN_RELEASE,				/* claimed jobs go back (or are charged) */
	PLAN_CLAIMS,				/* the claims held in the table */
	PLAN_SWEEP,					/* cancels asked of claimed jobs */
	PLAN_CANCEL,				/* chancy_cancel() */
	PLAN_PRUNE_QUEUES,			/* queues with finished jobs */
	PLAN_PRUNE,					/* finished jobs past their time */
	PLAN_PRUNE_NEXT,			/* when the next finished job is due */
	PLAN_PUSH_CHECKED,			/* push jobs as chancy_push_many() does */
	PLAN_PUSH_REFUSED,			/* a failed job: a push that was refused */
	PLAN_RUN_OTHER,				/* of pushed jobs, those not running a function */
	PLAN_PARK,					/* claimed jobs wait for their limit keys */
	PLAN_UNPARK,				/* parked jobs of a key go back to be claimed */
	PLAN_PARKED_KEYS,			/* the keys jobs are parked on */
	PLAN_INSERT_STEPS,			/* push a workflow's steps */
	PLAN_WF_INSERT,				/* a workflow's row */
	PLAN_WF_EDGES,				/* its dependencies */
	PLAN_WF_OF_JOB,				/* the workflow of a step to cancel */
	PLAN_WF_LOCK,				/* lock workflows whose steps ended */
	PLAN_WF_CANCEL_STEPS,		/* cancel the unheld live steps of workflows */
	PLAN_WF_CASCADE,			/* cancel the steps a failed one cancels */
	PLAN_WF_RELEASE,			/* count met dependencies, release steps */
	PLAN_WF_COUNT,				/* the workflows' counters and state */
	PLAN_WF_PRUNE,				/* finished workflows past their time */
	PLAN_WF_PRUNE_NEXT,			/* when the next one is */
	PLAN_WF_HELD,				/* the steps of a workflow executors hold */
	PLAN_WF_STEPS,				/* the steps of a step's workflow */
	PLAN_WF_RESULTS,			/* the results of a step's dependencies */
	PLAN_WF_GROW,				/* a running step adds steps */
	PLAN_WF_MARK_CANCELLED,		/* a workflow is being cancelled */
	PLAN_WF_RETRY,				/* failed steps and what follows them again */
	PLAN_WF_REWAIT,				/* steps count their dependencies again */
	PLAN_WF_RECOUNT,			/* a workflow's counters, counted */
	PLAN_RETRY,					/* chancy_retry(): a job again */
	PLAN_RETRY_FAILED,			/* chancy_retry_jobs(): failed jobs again */
	NPLANS
} PlanId;

/* JOBARRAY stands for chancy_job[], whose OID depends on the installation */
#define JOBARRAY InvalidOid

#define LIVE "state IN ('pending', 'retrying', 'running')"
/* finished jobs of this database (not a publisher's, see chancy_mark_replicated) */
#define FINAL "state IN ('succeeded', 'failed', 'cancelled') AND NOT replicated"
/* a claimed job whose run the claim counted (see PLAN_CLAIM) */
#define STARTED "(state = 'running')"
/* a job to charge a crash: listed in $3, or, with no list, any started one */
#define GUILTY "(id = ANY ($3) OR ($3::int8[] IS NULL AND " STARTED "))"

/*
 * A run's cost adds to the job's: times, WAL and blocks add up over its
 * runs, the memory peak is the largest.  Its seven figures (run_us,
 * cpu_user_us, cpu_sys_us, mem_peak_bytes, wal_bytes, blks_hit, blks_read;
 * NULL when not measured) are a1z to a7z: the elements $n[1] to $n[7] of
 * the int8[7] of stats_cost_array(), or columns r.c1 to r.c7.
 */
#define COST_SUM(col, a, i, z) \
	" " col " = CASE WHEN " a i z " IS NULL THEN " col " ELSE coalesce(" col ", 0) + " a i z " END,"
#define ADD_COST(a, z) \
	COST_SUM("run_us", a, "1", z) COST_SUM("cpu_user_us", a, "2", z) \
	COST_SUM("cpu_sys_us", a, "3", z) \
	" mem_peak_bytes = greatest(mem_peak_bytes, " a "4" z ")," \
	COST_SUM("wal_bytes", a, "5", z) COST_SUM("blks_hit", a, "6", z) \
	COST_SUM("blks_read", a, "7", z)

/*
 * The push's INSERT; INSERT_JOBS_WITH adds columns (cols), their values
 * (vals), where the rows come from (from: JOBS_FROM_ARRAYS, with more
 * arrays srfs) and the names of what they add (names).
 */
#define INSERT_JOBS_WITH(cols, vals, from, names) \
	"INSERT INTO %1$s.chancy_jobs (name, function, function_oid, queue, kwargs," \
	" priority, max_attempts, scheduled_at, unique_key, time_limit, memory_limit," \
	" meta, pushed_by, function_owner, function_catalog, function_digest, limit_keys" \
	cols ") SELECT j.name, j.function, j.function_oid, j.queue, j.kwargs, j.priority," \
	" j.max_attempts, coalesce(j.scheduled_at, now()), j.unique_key, j.time_limit," \
	" j.memory_limit, j.meta, $2, j.function_owner," \
	" CASE WHEN j.function_oid IS NOT NULL THEN $5 END, j.function_digest, j.limit_keys" \
	vals from \
	" AS j(name, function, queue, kwargs, priority, max_attempts, scheduled_at," \
	" unique_key, time_limit, memory_limit, meta, limit_keys, function_oid," \
	" function_owner, function_digest" names ") "
#define JOBS_FROM_ARRAYS(srfs) \
	" FROM ROWS FROM (unnest($1), unnest($3), unnest($4), unnest($6)" srfs ")"
#define INSERT_JOBS INSERT_JOBS_WITH("", "", JOBS_FROM_ARRAYS(""), "")

/* a job whose unique key a live job of its pusher holds is not inserted */
#define ON_KEY_CONFLICT \
	"ON CONFLICT (pushed_by, unique_key) WHERE unique_key IS NOT NULL" \
	" AND " LIVE " DO NOTHING RETURNING id, unique_key"

/*
 * One job (arrays of one): its values projected, not unnested -- the
 * function scans of ROWS FROM cost a single push more than the rest of its
 * plan (pgbench, 32 clients).
 */
#define INSERT_JOB INSERT_JOBS_WITH("", "", " FROM (SELECT ($1[1]).*, $3[1], $4[1], $6[1])", "")

/* j, a workflow step, is cancelled without running: why, and the keys and
 * values of more (or nothing) in its errors entry */
#define WF_STEP_CANCELLED(why, more) \
	" state = 'cancelled', completed_at = clock_timestamp(), claim = NULL," \
	" parked_on = NULL, errors = j.errors || jsonb_build_object('attempt', j.attempts," \
	" 'message', " why ", 'sqlstate', '57014'" more ", 'at', clock_timestamp())"
/* c, a step, waits for its dependencies */
#define WF_WAITING "c.state = 'pending' AND c.deps_left > 0"

/* the id of another live job holding the unique key of job j (NULL: none) */
#define KEY_HOLDER(j) \
	"(SELECT h.id FROM %1$s.chancy_jobs h WHERE h.pushed_by = " j ".pushed_by" \
	" AND h.unique_key = " j ".unique_key AND h.unique_key IS NOT NULL AND h." LIVE \
	" AND h.id <> " j ".id LIMIT 1)"

/*
 * A retry: of the jobs that the statements s choose (a CTE s of id, key,
 * holder and taken: its key is held, by holder if known), those whose key
 * is free and that are failed or cancelled, neither a publisher's nor a
 * workflow step, are locked in id order and run again from their first
 * attempt, as if just pushed; their errors and costs are kept.  Returns
 * what moved the gauges (pushed_by, queue, name, old state, count, and
 * NULLs), then one row of how many s skipped for their key (NULL
 * pushed_by), with the holder and the key of one (chancy_retry's).
 */
#define RETRY_JOBS(s) \
	"WITH " s "," \
	" o AS (SELECT id, state FROM %1$s.chancy_jobs" \
	"  WHERE id = ANY (ARRAY(SELECT id FROM s WHERE NOT taken))" \
	"  AND state IN ('failed', 'cancelled') AND NOT replicated AND workflow_id IS NULL" \
	"  ORDER BY id FOR UPDATE)," \
	" u AS (UPDATE %1$s.chancy_jobs j SET state = 'pending', attempts = 0, crashes = 0," \
	"  scheduled_at = now(), started_at = NULL, completed_at = NULL, result = NULL," \
	"  claim = NULL, parked_on = NULL, cancelled_by = NULL" \
	"  FROM o WHERE j.id = o.id RETURNING j.pushed_by, j.queue, j.name, o.state)" \
	" SELECT pushed_by, queue, name, state::text, count(*), NULL::int8, NULL::text" \
	"  FROM u GROUP BY 1, 2, 3, 4" \
	" UNION ALL SELECT NULL, NULL, NULL, NULL, count(*), min(holder), min(key)" \
	"  FROM s WHERE taken"

static const struct
{
	const char *sql;			/* %1$s is the schema */
	int			nargs;
	Oid			argtypes[12];
}			plan_defs[NPLANS] =
{
	[PLAN_INSERT] = {
		INSERT_JOBS "RETURNING id, unique_key", 6,
		{JOBARRAY, REGROLEOID, OIDARRAYOID, OIDARRAYOID, INT8OID, INT8ARRAYOID}
	},
	[PLAN_INSERT_UNIQUE] = {
		INSERT_JOBS ON_KEY_CONFLICT,
		6, {JOBARRAY, REGROLEOID, OIDARRAYOID, OIDARRAYOID, INT8OID, INT8ARRAYOID}
	},
	[PLAN_INSERT_ONE] = {
		INSERT_JOB "RETURNING id, unique_key", 6,
		{JOBARRAY, REGROLEOID, OIDARRAYOID, OIDARRAYOID, INT8OID, INT8ARRAYOID}
	},
	[PLAN_INSERT_UNIQUE_ONE] = {
		INSERT_JOB ON_KEY_CONFLICT,
		6, {JOBARRAY, REGROLEOID, OIDARRAYOID, OIDARRAYOID, INT8OID, INT8ARRAYOID}
	},
	[PLAN_EXISTING] = {
		"SELECT unique_key, id FROM %1$s.chancy_jobs"
		" WHERE pushed_by = $2 AND unique_key = ANY ($1) AND unique_key IS NOT NULL"
		" AND " LIVE, 2, {TEXTARRAYOID, REGROLEOID}
	},

	/*
	 * The claim walks the ready index in dequeue order and takes up to $3
	 * jobs: always the first, which starts at once (marked running, its run
	 * counted); then, as a batch, the following ones while their functions
	 * are known to be short ($4) and their kwargs add up to at most $5
	 * bytes, and, when it saw every ready job, no more than its share among
	 * the queue's executors (the two steps a workflow step released run at
	 * once in two executors, not one after the other in one).  A batch member stays pending (or retrying) with the claim
	 * token until it runs: it is not running, and its outcome counts its
	 * run.  The queue's settings come with every row.
	 */
	[PLAN_CLAIM] = {
		"WITH c AS (SELECT j.id, j.priority, j.function, pg_column_size(j.kwargs) AS size"
		"  FROM %1$s.chancy_jobs j"
		"  WHERE j.queue = $1 AND j.state IN ('pending', 'retrying') AND j.claim IS NULL"
		"  AND NOT j.replicated AND j.scheduled_at <= now()"
		"  AND NOT EXISTS (SELECT FROM %1$s.chancy_queues p"
		"   WHERE p.name = $1 AND p.paused_until > now())"
		"  ORDER BY j.priority DESC, j.id LIMIT $3 FOR UPDATE OF j SKIP LOCKED),"
		" o AS (SELECT id, row_number() OVER w AS n, sum(size) OVER w AS total,"
		"  count(*) FILTER (WHERE NOT function = ANY ($4)) OVER w AS unknown"
		"  FROM c WINDOW w AS (ORDER BY priority DESC, id ROWS UNBOUNDED PRECEDING)),"
		" k AS (SELECT id, n FROM o WHERE n = 1 OR (total <= $5 AND unknown = 0"
		"  AND n <= (SELECT CASE WHEN count(*) >= $3 THEN $3"
		"   ELSE ceil(count(*)::float8 / greatest(max(p.concurrency), 1)) END"
		"   FROM c, %1$s.chancy_queues p WHERE p.name = $1)))"
		" UPDATE %1$s.chancy_jobs j SET claim = $2,"
		"  state = CASE WHEN j.id = (SELECT id FROM k WHERE n = 1) THEN 'running'"
		"   ELSE j.state END::%1$s.chancy_state,"
		"  started_at = CASE WHEN j.id = (SELECT id FROM k WHERE n = 1)"
		"   THEN clock_timestamp() ELSE j.started_at END,"
		"  attempts = j.attempts + (j.id = (SELECT id FROM k WHERE n = 1))::int"
		" FROM %1$s.chancy_queues q"
		" WHERE j.id = ANY (ARRAY(SELECT id FROM k)) AND q.name = $1"
		" RETURNING j.id, j.name, j.function, j.function_oid, j.queue, j.kwargs,"
		"  j.attempts, j.max_attempts, j.pushed_by, j.time_limit, j.memory_limit,"
		"  j.state = 'running', (SELECT count(*) FROM c), q.time_limit, q.memory_limit,"
		"  extract(epoch FROM q.backoff_base)::float8, q.backoff_factor,"
		"  extract(epoch FROM q.backoff_max)::float8, q.executor = 'isolated', j.priority,"
		"  j.function_owner, j.function_catalog, j.function_digest, j.limit_keys,"
		"  j.scheduled_at, j.workflow_id",
		5, {TEXTOID, INT8OID, INT4OID, TEXTARRAYOID, INT8OID}
	},
	[PLAN_IDLE] = {
		"SELECT q.name IS NOT NULL, (SELECT min(j.scheduled_at) FROM %1$s.chancy_jobs j"
		"  WHERE j.queue = $1 AND j.state IN ('pending', 'retrying')"
		"  AND j.scheduled_at > j.created_at AND j.claim IS NULL AND NOT j.replicated),"
		" q.paused_until"
		" FROM (SELECT) x LEFT JOIN %1$s.chancy_queues q ON q.name = $1",
		1, {TEXTOID}
	},
	/* $6 to $12: the jobs' costs, a figure each (NULL: none measured) */
	[PLAN_SUCCEEDED] = {
		"UPDATE %1$s.chancy_jobs j SET state = 'succeeded', result = r.result,"
		" attempts = j.attempts + (j.state <> 'running')::int,"
		" started_at = CASE WHEN j.state = 'running' THEN j.started_at ELSE r.started_at END,"
		ADD_COST("r.c", "")
		" completed_at = r.completed_at, claim = NULL"
		" FROM unnest($1::int8[], $3::jsonb[], $4::timestamptz[], $5::timestamptz[],"
		"  $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],"
		"  $12::int8[])"
		"  AS r(id, result, started_at, completed_at, c1, c2, c3, c4, c5, c6, c7)"
		" WHERE j.id = r.id AND j.claim = $2",
		12, {INT8ARRAYOID, INT8OID, JSONBARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
		INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
		INT8ARRAYOID}
	},
	[PLAN_FAILED] = {
		"UPDATE %1$s.chancy_jobs SET"
		" attempts = attempts + (state <> 'running')::int,"
		" state = CASE WHEN cancelled_by IS NOT NULL THEN 'cancelled'"
		"  WHEN attempts + (state <> 'running')::int >= max_attempts THEN 'failed'"
		"  ELSE 'retrying' END::%1$s.chancy_state,"
		" started_at = CASE WHEN state = 'running' THEN started_at ELSE $9 END,"
		" completed_at = CASE WHEN cancelled_by IS NOT NULL"
		"  OR attempts + (state <> 'running')::int >= max_attempts THEN clock_timestamp() END,"
		" scheduled_at = CASE WHEN cancelled_by IS NOT NULL"
		"  OR attempts + (state <> 'running')::int >= max_attempts THEN scheduled_at"
		"  ELSE clock_timestamp() + make_interval(secs => $3) END,"
		" errors = errors || jsonb_build_object('attempt', attempts + (state <> 'running')::int,"
		"  'message', $4, 'sqlstate', $5, 'detail', $6, 'hint', $7, 'context', $8,"
		"  'at', clock_timestamp()),"
		ADD_COST("$10[", "]")
		" claim = NULL"
		" WHERE id = $1 AND claim = $2 RETURNING state::text",
		10, {INT8OID, INT8OID, FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TIMESTAMPTZOID, INT8ARRAYOID}
	},
	[PLAN_CANCELLED] = {
		"UPDATE %1$s.chancy_jobs SET state = 'cancelled', completed_at = clock_timestamp(),"
		" attempts = attempts + ($3 AND state <> 'running')::int,"
		" started_at = CASE WHEN $3 AND state <> 'running' THEN $5 ELSE started_at END,"
		" cancelled_by = coalesce(cancelled_by, $4),"
		" errors = errors || jsonb_build_object('attempt',"
		"  attempts + ($3 AND state <> 'running')::int,"
		"  'message', 'cancelled by ' || coalesce(cancelled_by, $4)::text,"
		"  'sqlstate', '57014', 'at', clock_timestamp()),"
		ADD_COST("$6[", "]")
		" claim = NULL"
		" WHERE id = $1 AND claim = $2",
		6, {INT8OID, INT8OID, BOOLOID, REGROLEOID, TIMESTAMPTZOID, INT8ARRAYOID}
	},

	/*
	 * Claimed jobs go back (their claims $1, all or only ids $2): the run
	 * the claim counted is not counted; a cancel asked meanwhile is done;
	 * a job that was executing when its executor died ($3) is charged a
	 * crash, and fails at chancy.max_crashes ($4).  $5 notes why a started
	 * job went back.  The state each had is returned too (for the gauges).
	 */
	[PLAN_RELEASE] = {
		"UPDATE %1$s.chancy_jobs SET"
		" crashes = crashes + " GUILTY "::int,"
		" state = CASE WHEN cancelled_by IS NOT NULL THEN 'cancelled'"
		"  WHEN " GUILTY " AND crashes + 1 >= $4 THEN 'failed'"
		"  WHEN attempts - " STARTED "::int > 0 THEN 'retrying'"
		"  ELSE 'pending' END::%1$s.chancy_state,"
		" attempts = attempts - " STARTED "::int,"
		" completed_at = CASE WHEN cancelled_by IS NOT NULL"
		"  OR (" GUILTY " AND crashes + 1 >= $4) THEN clock_timestamp() END,"
		" started_at = CASE WHEN attempts - " STARTED "::int = 0 AND cancelled_by IS NULL"
		"  AND NOT " GUILTY " THEN NULL ELSE started_at END,"
		" errors = errors || CASE"
		"  WHEN cancelled_by IS NOT NULL THEN jsonb_build_object('attempt', attempts,"
		"   'message', 'cancelled by ' || cancelled_by::text, 'sqlstate', '57014',"
		"   'at', clock_timestamp())"
		"  WHEN " GUILTY " THEN jsonb_build_object('attempt',"
		"   attempts + (NOT " STARTED ")::int,"
		"   'message', format('the executor running the job died (crash %%s of at most %%s)',"
		"   crashes + 1, $4), 'sqlstate', 'XX000', 'at', clock_timestamp())"
		"  WHEN " STARTED " AND $5::text IS NOT NULL THEN jsonb_build_object('attempt',"
		"   attempts, 'message', $5::text, 'at', clock_timestamp())"
		"  ELSE '[]'::jsonb END,"
		" claim = NULL"
		" FROM (SELECT id AS old_id, state AS old_state FROM %1$s.chancy_jobs"
		"  WHERE claim = ANY ($1) AND NOT replicated AND ($2::int8[] IS NULL OR id = ANY ($2))"
		"  ORDER BY id FOR UPDATE) o"
		" WHERE id = o.old_id"
		" RETURNING id, state::text, o.old_state::text,"
		"  (id = ANY ($3) OR ($3::int8[] IS NULL AND o.old_state = 'running')),"
		"  pushed_by, queue, name, workflow_id",
		5, {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT4OID, TEXTOID}
	},
	[PLAN_CLAIMS] = {
		"SELECT DISTINCT claim FROM %1$s.chancy_jobs WHERE claim <> 0 AND NOT replicated",
		0, {0}
	},
	[PLAN_SWEEP] = {
		"SELECT id, claim FROM %1$s.chancy_jobs"
		" WHERE claim IS NOT NULL AND NOT replicated AND cancelled_by IS NOT NULL", 0, {0}
	},

	/*
	 * chancy_cancel(): a job nobody holds (nor one parked by flow control,
	 * claim 0) is cancelled at once; a claimed one is only asked to be
	 * (cancelled_by), and its executor, told at commit, records the
	 * outcome: cancelled, unless it finished first.
	 */
	[PLAN_CANCEL] = {
		"WITH old AS (SELECT id, state, coalesce(claim, 0) AS claim FROM %1$s.chancy_jobs"
		"  WHERE id = $1 FOR UPDATE)"
		" UPDATE %1$s.chancy_jobs j SET cancelled_by = $2,"
		" state = CASE WHEN old.claim = 0 THEN 'cancelled' ELSE j.state END::%1$s.chancy_state,"
		" completed_at = CASE WHEN old.claim = 0 THEN clock_timestamp() END,"
		" errors = CASE WHEN old.claim = 0 THEN j.errors || jsonb_build_object("
		"  'attempt', j.attempts, 'message', 'cancelled by ' || $2::text,"
		"  'sqlstate', '57014', 'at', clock_timestamp()) ELSE j.errors END,"
		" claim = nullif(old.claim, 0),"
		" parked_on = CASE WHEN old.claim = 0 THEN NULL ELSE j.parked_on END"
		" FROM old WHERE j.id = old.id AND old." LIVE
		" RETURNING old.claim, old.state::text, j.pushed_by, j.queue, j.name, j.workflow_id,"
		"  old.claim = 0 AND coalesce(j.deps_left, 0) > 0",
		2, {INT8OID, REGROLEOID}
	},
	/* the workflow of job $1, if it is a step no executor holds */
	[PLAN_WF_OF_JOB] = {
		"SELECT workflow_id FROM %1$s.chancy_jobs WHERE id = $1"
		" AND workflow_id IS NOT NULL AND coalesce(claim, 0) = 0",
		1, {INT8OID}
	},
	[PLAN_PRUNE_QUEUES] = {
		"WITH RECURSIVE f(queue) AS ("
		" (SELECT queue FROM %1$s.chancy_jobs WHERE " FINAL " ORDER BY queue LIMIT 1)"
		" UNION ALL SELECT (SELECT j.queue FROM %1$s.chancy_jobs j WHERE j." FINAL
		"  AND j.queue > f.queue ORDER BY j.queue LIMIT 1) FROM f WHERE f.queue IS NOT NULL)"
		" SELECT f.queue, coalesce(q.prune_after, $1) FROM f"
		" LEFT JOIN %1$s.chancy_queues q ON q.name = f.queue WHERE f.queue IS NOT NULL",
		1, {INTERVALOID}
	},
	[PLAN_PRUNE] = {
		"WITH d AS (DELETE FROM %1$s.chancy_jobs WHERE id = ANY (ARRAY("
		" SELECT id FROM %1$s.chancy_jobs WHERE queue = $1 AND " FINAL
		" AND completed_at < now() - $2 AND workflow_id IS NULL"
		" ORDER BY completed_at LIMIT $3))"
		" RETURNING pushed_by, queue, name, state)"
		" SELECT pushed_by, queue, name, state::text, count(*) FROM d GROUP BY 1, 2, 3, 4",
		3, {TEXTOID, INTERVALOID, INT4OID}
	},
	[PLAN_PRUNE_NEXT] = {
		"SELECT min(completed_at) + $2 FROM %1$s.chancy_jobs"
		" WHERE queue = $1 AND " FINAL " AND workflow_id IS NULL", 2, {TEXTOID, INTERVALOID}
	},
	[PLAN_PUSH_CHECKED] = {
		"SELECT %1$s.chancy_push_many($1)", 1, {JOBARRAY}
	},
	[PLAN_PUSH_REFUSED] = {
		"INSERT INTO %1$s.chancy_jobs (name, function, queue, state, priority,"
		" max_attempts, kwargs, meta, errors, pushed_by, completed_at)"
		" SELECT coalesce(j.name, ''), coalesce(j.function, ''),"
		"  coalesce(j.queue, 'default'), 'failed', coalesce(j.priority, 0),"
		"  coalesce(j.max_attempts, 1), coalesce(j.kwargs, '{}'), coalesce(j.meta, '{}'),"
		"  jsonb_build_array(jsonb_strip_nulls(jsonb_build_object('attempt', 0,"
		"   'message', $2, 'sqlstate', $3, 'detail', $4, 'hint', $5, 'at', now()))),"
		"  $6, now()"
		" FROM unnest($1) AS j RETURNING id, queue, name",
		6, {JOBARRAY, TEXTOID, TEXTOID, TEXTOID, TEXTOID, REGROLEOID}
	},

	/*
	 * Flow control (flow.c).  Claimed jobs ($2) whose limit key ($3) was
	 * saturated are parked: no longer held by claim $1, out of the ready
	 * index (claim 0), with the run their claim counted taken back.
	 */
	[PLAN_PARK] = {
		"UPDATE %1$s.chancy_jobs j SET"
		" state = CASE WHEN j.attempts - " STARTED "::int > 0 THEN 'retrying'"
		"  ELSE 'pending' END::%1$s.chancy_state,"
		" attempts = j.attempts - " STARTED "::int,"
		" started_at = CASE WHEN j.attempts - " STARTED "::int = 0 THEN NULL"
		"  ELSE j.started_at END,"
		" claim = 0, parked_on = p.key"
		" FROM unnest($2::int8[], $3::text[]) AS p(id, key)"
		" WHERE j.id = p.id AND j.claim = $1",
		3, {INT8OID, INT8ARRAYOID, TEXTARRAYOID}
	},
	/* the first $2 parked jobs of key $1 go back, in dequeue order; with
	 * the first of those left */
	[PLAN_UNPARK] = {
		"WITH u AS (SELECT id FROM %1$s.chancy_jobs"
		"  WHERE parked_on = $1 AND claim = 0 AND NOT replicated"
		"  ORDER BY priority DESC, id LIMIT $2 FOR UPDATE SKIP LOCKED),"
		" r AS (UPDATE %1$s.chancy_jobs j SET claim = NULL, parked_on = NULL FROM u"
		"  WHERE j.id = u.id RETURNING j.id, j.queue)"
		" SELECT r.queue, count(*), NULL::int, NULL::int8 FROM r GROUP BY r.queue"
		" UNION ALL (SELECT NULL, NULL, f.priority, f.id FROM %1$s.chancy_jobs f"
		"  WHERE f.parked_on = $1 AND f.claim = 0 AND NOT f.replicated"
		"  AND f.id NOT IN (SELECT id FROM u) ORDER BY f.priority DESC, f.id LIMIT 1)",
		2, {TEXTOID, INT4OID}
	},
	[PLAN_PARKED_KEYS] = {
		"WITH RECURSIVE k(key) AS ("
		" (SELECT parked_on FROM %1$s.chancy_jobs WHERE claim = 0 AND NOT replicated"
		"  ORDER BY parked_on LIMIT 1)"
		" UNION ALL SELECT (SELECT j.parked_on FROM %1$s.chancy_jobs j WHERE j.claim = 0"
		"  AND NOT j.replicated AND j.parked_on > k.key ORDER BY j.parked_on LIMIT 1)"
		" FROM k WHERE k.key IS NOT NULL)"
		" SELECT key FROM k WHERE key IS NOT NULL",
		0, {0}
	},
	/*
	 * Workflows (workflow.c).  A step whose dependencies are not all met
	 * waits outside the ready index (claim 0, deps_left > 0); the
	 * transaction that ends a step counts it in its children, releases
	 * those with none left, and keeps the workflow's counters.  Locks are
	 * taken in one order: the ended steps' own rows, then their workflows
	 * by id, then waiting steps (which only a workflow's holder changes).
	 */
	[PLAN_INSERT_STEPS] = {
		INSERT_JOBS_WITH(", workflow_id, step, deps_left, on_dep_failure, claim",
						 ", $7, j.step, j.deps_left, j.on_dep_failure,"
						 " CASE WHEN j.deps_left > 0 THEN 0 END",
						 JOBS_FROM_ARRAYS(", unnest($8::text[]), unnest($9::int4[]), unnest($10::text[])"),
						 ", step, deps_left, on_dep_failure")
		"RETURNING id, unique_key", 10,
		{JOBARRAY, REGROLEOID, OIDARRAYOID, OIDARRAYOID, INT8OID, INT8ARRAYOID, INT8OID,
		TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID}
	},
	[PLAN_WF_INSERT] = {
		"INSERT INTO %1$s.chancy_workflows (name, pushed_by, steps_total, steps_waiting)"
		" VALUES ($1, $2, $3, $4) RETURNING id",
		4, {TEXTOID, REGROLEOID, INT4OID, INT4OID}
	},
	[PLAN_WF_EDGES] = {
		"INSERT INTO %1$s.chancy_workflow_deps (parent, child, workflow_id)"
		" SELECT e.parent, e.child, $3 FROM unnest($1::int8[], $2::int8[]) AS e(parent, child)",
		3, {INT8ARRAYOID, INT8ARRAYOID, INT8OID}
	},
	[PLAN_WF_LOCK] = {
		"SELECT w.id, w.cancelled_by IS NOT NULL, w.state FROM %1$s.chancy_workflows w"
		" WHERE w.id = ANY ($1) ORDER BY w.id FOR UPDATE",
		1, {INT8ARRAYOID}
	},
	/*
	 * The steps of workflows $1 that no executor holds end cancelled.  A row
	 * locked by another transaction is being claimed, recorded or cancelled
	 * by it: waiting for it, with the workflow locked, could deadlock; it is
	 * left to that transaction (a step claimed now runs, and its end finds
	 * the workflow cancelled).
	 */
	[PLAN_WF_CANCEL_STEPS] = {
		"UPDATE %1$s.chancy_jobs j SET"
		WF_STEP_CANCELLED("'workflow cancelled by ' || w.cancelled_by::text", "")
		" FROM (SELECT id AS old_id, state AS old_state FROM %1$s.chancy_jobs"
		"  WHERE workflow_id = ANY ($1) AND " LIVE " AND coalesce(claim, 0) = 0"
		"  AND NOT replicated FOR UPDATE SKIP LOCKED) o, %1$s.chancy_workflows w"
		" WHERE j.id = o.old_id AND w.id = j.workflow_id"
		" RETURNING j.id, j.workflow_id, j.pushed_by, j.queue, j.name, o.old_state::text,"
		"  coalesce(j.deps_left, 0) > 0",
		1, {INT8ARRAYOID}
	},
	/* the waiting steps that a failed or cancelled step of $1 cancels */
	[PLAN_WF_CASCADE] = {
		"WITH RECURSIVE x(id, cause) AS ("
		" SELECT d.child, e.id FROM %1$s.chancy_jobs e"
		"  JOIN %1$s.chancy_workflow_deps d ON d.parent = e.id"
		"  JOIN %1$s.chancy_jobs c ON c.id = d.child"
		"  WHERE e.id = ANY ($1) AND e.state IN ('failed', 'cancelled')"
		"  AND c.on_dep_failure = 'cancel' AND " WF_WAITING
		" UNION"
		" SELECT d.child, x.cause FROM x"
		"  JOIN %1$s.chancy_workflow_deps d ON d.parent = x.id"
		"  JOIN %1$s.chancy_jobs c ON c.id = d.child"
		"  WHERE c.on_dep_failure = 'cancel' AND " WF_WAITING "),"
		" y AS (SELECT DISTINCT ON (x.id) x.id, a.id AS cause_id, a.step AS cause_step,"
		"  a.state::text AS cause_state FROM x JOIN %1$s.chancy_jobs a ON a.id = x.cause"
		"  ORDER BY x.id, x.cause)"
		" UPDATE %1$s.chancy_jobs j SET"
		WF_STEP_CANCELLED("format('dependency \"%%s\" %%s', y.cause_step, y.cause_state)",
						  ", 'dependency_job', y.cause_id")
		" FROM y WHERE j.id = y.id"
		" RETURNING j.id, j.workflow_id, j.pushed_by, j.queue, j.name",
		1, {INT8ARRAYOID}
	},
	/* steps of $1 ended: their waiting children count the dependency met
	 * (a failed one only for a child that runs anyway) */
	[PLAN_WF_RELEASE] = {
		"WITH m AS (SELECT d.child, count(*)::int AS n FROM %1$s.chancy_jobs e"
		"  JOIN %1$s.chancy_workflow_deps d ON d.parent = e.id"
		"  JOIN %1$s.chancy_jobs c ON c.id = d.child"
		"  WHERE e.id = ANY ($1) AND " WF_WAITING
		"  AND (e.state = 'succeeded' OR c.on_dep_failure = 'run') GROUP BY d.child)"
		" UPDATE %1$s.chancy_jobs c SET deps_left = c.deps_left - m.n,"
		"  claim = CASE WHEN c.deps_left - m.n > 0 THEN 0 END"
		" FROM m WHERE c.id = m.child AND " WF_WAITING
		" RETURNING c.workflow_id, c.queue, c.deps_left = 0",
		1, {INT8ARRAYOID}
	},
	/* $1 workflows: $2 more steps done, $3 of them failed, $4 fewer
	 * waiting; a workflow with no step left to run has finished */
	[PLAN_WF_COUNT] = {
		"UPDATE %1$s.chancy_workflows w SET"
		" steps_done = w.steps_done + u.done, steps_failed = w.steps_failed + u.failed,"
		" steps_waiting = w.steps_waiting - u.unwaited,"
		" state = CASE WHEN w.steps_total > w.steps_done + u.done + w.steps_waiting - u.unwaited"
		"  THEN 'running' WHEN w.cancelled_by IS NOT NULL THEN 'cancelled'"
		"  WHEN w.steps_failed + u.failed > 0 OR w.steps_waiting - u.unwaited > 0 THEN 'failed'"
		"  ELSE 'succeeded' END,"
		" completed_at = CASE WHEN w.steps_total > w.steps_done + u.done + w.steps_waiting"
		"  - u.unwaited THEN NULL ELSE clock_timestamp() END"
		" FROM unnest($1::int8[], $2::int4[], $3::int4[], $4::int4[])"
		"  AS u(id, done, failed, unwaited)"
		" WHERE w.id = u.id"
		" RETURNING w.id, w.state <> 'running'",
		4, {INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT4ARRAYOID}
	},
	/* finished workflows older than $1, with their steps (at most $2); one
	 * being retried or cancelled (locked) is left for the next prune */
	/* (one the prune skipped, locked, is looked at again a second later;
	 * with no finished workflow, NULL: nothing is due) */
	[PLAN_WF_PRUNE_NEXT] = {
		"SELECT CASE WHEN min(completed_at) IS NOT NULL"
		"  THEN greatest(min(completed_at) + $1, now() + interval '1 second') END"
		" FROM %1$s.chancy_workflows WHERE completed_at IS NOT NULL",
		1, {INTERVALOID}
	},
	[PLAN_WF_PRUNE] = {
		"WITH w AS (DELETE FROM %1$s.chancy_workflows WHERE id = ANY (ARRAY("
		"  SELECT id FROM %1$s.chancy_workflows WHERE completed_at < now() - $1"
		"  ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
		"  AND completed_at < now() - $1 RETURNING id),"
		" e AS (DELETE FROM %1$s.chancy_workflow_deps d USING w WHERE d.workflow_id = w.id),"
		" d AS (DELETE FROM %1$s.chancy_jobs j USING w WHERE j.workflow_id = w.id"
		"  RETURNING j.pushed_by, j.queue, j.name, j.state)"
		" SELECT pushed_by, queue, name, state::text, count(*) FROM d GROUP BY 1, 2, 3, 4",
		2, {INTERVALOID, INT4OID}
	},
	[PLAN_WF_HELD] = {
		"SELECT id, claim FROM %1$s.chancy_jobs WHERE workflow_id = $1 AND " LIVE
		" AND claim > 0 AND NOT replicated ORDER BY id FOR UPDATE SKIP LOCKED",
		1, {INT8OID}
	},
	[PLAN_WF_STEPS] = {
		"SELECT s.workflow_id, s.step, s.id, s.state::text, w.pushed_by,"
		" (SELECT count(*) FROM %1$s.chancy_workflow_deps d WHERE d.workflow_id = w.id)"
		" FROM %1$s.chancy_jobs me JOIN %1$s.chancy_jobs s ON s.workflow_id = me.workflow_id"
		" JOIN %1$s.chancy_workflows w ON w.id = me.workflow_id"
		" WHERE me.id = $1",
		1, {INT8OID}
	},
	/* of step $1's dependencies: the results of those that succeeded, and
	 * whether one is named $2, with its result */
	[PLAN_WF_RESULTS] = {
		"SELECT coalesce(jsonb_object_agg(p.step, p.result)"
		"  FILTER (WHERE p.state = 'succeeded'), '{}'),"
		" count(*) FILTER (WHERE p.step = $2) > 0,"
		" (array_agg(p.result) FILTER (WHERE p.step = $2 AND p.state = 'succeeded'))[1]"
		" FROM %1$s.chancy_workflow_deps d JOIN %1$s.chancy_jobs p ON p.id = d.parent"
		" WHERE d.child = $1",
		2, {INT8OID, TEXTOID}
	},
	[PLAN_WF_GROW] = {
		"UPDATE %1$s.chancy_workflows SET steps_total = steps_total + $2,"
		" steps_waiting = steps_waiting + $3"
		" WHERE id = $1 AND state = 'running' AND cancelled_by IS NULL RETURNING id",
		3, {INT8OID, INT4OID, INT4OID}
	},
	[PLAN_WF_MARK_CANCELLED] = {
		"UPDATE %1$s.chancy_workflows SET cancelled_by = coalesce(cancelled_by, $2)"
		" WHERE id = $1 AND state = 'running' RETURNING id",
		2, {INT8OID, REGROLEOID}
	},
	/* steps of workflow $1 that failed, and those after them that ended */
	[PLAN_WF_RETRY] = {
		"WITH RECURSIVE r(id) AS ("
		" SELECT id FROM %1$s.chancy_jobs WHERE workflow_id = $1"
		"  AND state IN ('failed', 'cancelled')"
		" UNION SELECT d.child FROM r JOIN %1$s.chancy_workflow_deps d ON d.parent = r.id"
		"  JOIN %1$s.chancy_jobs c ON c.id = d.child WHERE c." FINAL "),"
		" o AS (SELECT j.id, j.state FROM %1$s.chancy_jobs j WHERE j.id IN (SELECT id FROM r)"
		"  FOR UPDATE)"
		" UPDATE %1$s.chancy_jobs j SET state = 'pending', attempts = 0, started_at = NULL,"
		"  completed_at = NULL, cancelled_by = NULL, result = NULL, scheduled_at = now(),"
		"  claim = 0, deps_left = 1"
		" FROM o WHERE j.id = o.id"
		" RETURNING j.id, j.pushed_by, j.queue, j.name, o.state::text",
		1, {INT8OID}
	},
	/* a dependency that is gone (purged with its queue) is not met */
	[PLAN_WF_REWAIT] = {
		"UPDATE %1$s.chancy_jobs c SET deps_left = m.n, claim = CASE WHEN m.n > 0 THEN 0 END"
		" FROM (SELECT s.id, count(d.parent) FILTER (WHERE p.state IS DISTINCT FROM"
		"  'succeeded')::int AS n"
		"  FROM %1$s.chancy_jobs s LEFT JOIN %1$s.chancy_workflow_deps d ON d.child = s.id"
		"  LEFT JOIN %1$s.chancy_jobs p ON p.id = d.parent"
		"  WHERE s.workflow_id = $1 AND s.state = 'pending' AND s.deps_left > 0"
		"  GROUP BY s.id) m"
		" WHERE c.id = m.id RETURNING c.queue, c.deps_left = 0",
		1, {INT8OID}
	},
	/* counted again; with no step able to run, it has finished again */
	[PLAN_WF_RECOUNT] = {
		"UPDATE %1$s.chancy_workflows w SET cancelled_by = NULL,"
		" steps_total = s.total, steps_done = s.done,"
		" steps_failed = s.failed, steps_waiting = s.waiting,"
		" state = CASE WHEN s.total > s.done + s.waiting THEN 'running'"
		"  WHEN s.failed > 0 OR s.waiting > 0 THEN 'failed' ELSE 'succeeded' END,"
		" completed_at = CASE WHEN s.total > s.done + s.waiting THEN NULL"
		"  ELSE clock_timestamp() END"
		" FROM (SELECT count(*)::int AS total,"
		"  count(*) FILTER (WHERE state IN ('succeeded', 'failed', 'cancelled'))::int AS done,"
		"  count(*) FILTER (WHERE state IN ('failed', 'cancelled'))::int AS failed,"
		"  count(*) FILTER (WHERE state = 'pending' AND deps_left > 0)::int AS waiting"
		"  FROM %1$s.chancy_jobs WHERE workflow_id = $1) s"
		" WHERE w.id = $1",
		1, {INT8OID}
	},
	/* job $1 */
	[PLAN_RETRY] = {
		RETRY_JOBS("s AS (SELECT id, key, holder, holder IS NOT NULL AS taken"
				   " FROM (SELECT j.id, j.unique_key AS key, " KEY_HOLDER("j") " AS holder"
				   "  FROM %1$s.chancy_jobs j WHERE j.id = $1) x)"),
		1, {INT8OID}
	},

	/*
	 * The failed jobs of queue $1 and name $2 (NULL: any) that failed from
	 * $3 until before $4 (NULL: no bound) and that role $7 may retry (all,
	 * with $6), oldest first, up to the $5th whose key is free: those
	 * whose key a live job holds are skipped, as are all but the oldest
	 * of those sharing a key.
	 */
	[PLAN_RETRY_FAILED] = {
		RETRY_JOBS("c AS (SELECT j.id, j.completed_at, j.pushed_by, j.unique_key,"
				   "  " KEY_HOLDER("j") " AS holder FROM %1$s.chancy_jobs j"
				   "  WHERE j.state = 'failed' AND NOT j.replicated AND j.workflow_id IS NULL"
				   "  AND ($1::text IS NULL OR j.queue = $1)"
				   "  AND ($2::text IS NULL OR j.name = $2)"
				   "  AND ($3::timestamptz IS NULL OR j.completed_at >= $3)"
				   "  AND ($4::timestamptz IS NULL OR j.completed_at < $4)"
				   "  AND ($6 OR pg_catalog.pg_has_role($7, j.pushed_by, 'USAGE'))),"
				   " w AS (SELECT c.*, c.holder IS NOT NULL OR (c.unique_key IS NOT NULL"
				   "  AND row_number() OVER (PARTITION BY c.pushed_by, c.unique_key"
				   "   ORDER BY c.completed_at, c.id) > 1) AS taken FROM c),"
				   " n AS (SELECT w.*, count(*) FILTER (WHERE NOT w.taken)"
				   "  OVER (ORDER BY w.completed_at, w.id ROWS UNBOUNDED PRECEDING) AS k FROM w),"
				   " s AS (SELECT id, unique_key AS key, holder, taken FROM n"
				   "  WHERE k < $5 OR (k = $5 AND NOT taken))"),
		7, {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, BOOLOID, OIDOID}
	},
	[PLAN_RUN_OTHER] = {
		"SELECT FROM ROWS FROM (unnest($1), unnest($2)) AS u(id, fn)"
		" JOIN %1$s.chancy_jobs j ON j.id = u.id"
		" WHERE coalesce(j.function_oid, 0) <> u.fn LIMIT 1",
		2, {INT8ARRAYOID, OIDARRAYOID}
	},
};

static ArrayType *int8_array(Datum *values, int n);
static int	lock_workflows(ChancyCatalog *cat, ArrayType *ids, List **cancelled);
static int	prune_workflows(ChancyCatalog *cat, Interval *after, TimestampTz *next_due);

/* plans, prepared for the catalog of generation plans_generation */
static uint64 plans_generation = 0;
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
 *		Prepared on first use and kept until the installation changes.
 */
static SPIPlanPtr
get_plan(ChancyCatalog *cat, PlanId id)
{
	Oid			argtypes[lengthof(plan_defs[0].argtypes)];
	SPIPlanPtr	plan;

	if (plans_generation != cat->generation)
	{
		for (int i = 0; i < NPLANS; i++)
			if (plans[i])
				SPI_freeplan(plans[i]);
		memset(plans, 0, sizeof(plans));
		plans_generation = cat->generation;
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

/* Run one of chancy's statements (inside catalog_sql_begin/end). */
static int
execute(ChancyCatalog *cat, PlanId id, Datum *args, const char *nulls,
		bool read_only)
{
	if (!read_only)
		return catalog_own_write(get_plan(cat, id), args, nulls);
	return SPI_execute_plan(get_plan(cat, id), args, nulls, true, 0);
}

/* A boxed int64, palloc'd. */
static int64 *
box(int64 value)
{
	int64	   *p = palloc(sizeof(int64));

	*p = value;
	return p;
}

/* qsort/bsearch comparator of KeyRefs by key */
static int
keyref_cmp(const void *a, const void *b)
{
	return strcmp(((const KeyRef *) a)->key, ((const KeyRef *) b)->key);
}

/*
 * find_live_jobs
 *		For each conflicting key, the id of the pusher's live job holding it.
 *		Keys whose job finished meanwhile are left in *todo to push again.
 */
static void
find_live_jobs(ChancyCatalog *cat, KeyRef *conflicts, int nconflicts, Oid pusher,
			   int64 *ids, int *todo, int *ntodo)
{
	Datum	   *keys = palloc(sizeof(Datum) * nconflicts);
	KeyRef	   *live;
	uint64		nlive;
	Datum		args[2];

	for (int i = 0; i < nconflicts; i++)
		keys[i] = CStringGetTextDatum(conflicts[i].key);
	args[0] = PointerGetDatum(construct_array(keys, nconflicts, TEXTOID, -1, false,
											  TYPALIGN_INT));
	args[1] = ObjectIdGetDatum(pusher);
	if (execute(cat, PLAN_EXISTING, args, NULL, false) != SPI_OK_SELECT)
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
 * count_pushed
 *		Count the jobs todo[k] that were inserted (inserted[k]) as pushed, at
 *		commit: a run of jobs of one queue and name as one change.
 */
static void
count_pushed(JobValue *jobs, int *todo, bool *inserted, int ntodo, Oid pusher)
{
	int			k = 0;

	while (k < ntodo)
	{
		JobValue   *first = &jobs[todo[k]];
		int			n = 0;
		int			end = k;

		while (end < ntodo &&
			   datumIsEqual(jobs[todo[end]].values[JA_QUEUE], first->values[JA_QUEUE],
							false, -1) &&
			   datumIsEqual(jobs[todo[end]].values[JA_NAME], first->values[JA_NAME],
							false, -1))
			n += inserted[end++];
		stats_at_commit(pusher, TextDatumGetCString(first->values[JA_QUEUE]),
						TextDatumGetCString(first->values[JA_NAME]),
						STATS_PUSHED, JS_NONE, JS_PENDING, n);
		k = end;
	}
}

/*
 * insert_batch
 *		Insert the jobs todo[0..ntodo) of the batch and set their ids.  Jobs
 *		whose unique key is live are collected in conflicts instead.
 *		RETURNING yields inserted rows in input order, which is what pairs
 *		them with the batch; that is checked.
 */
static int
insert_batch(ChancyCatalog *cat, JobValue *jobs, char **keys, int *todo, int ntodo,
			 Oid pusher, int64 *ids, KeyRef *conflicts, const StepColumns *steps)
{
	Datum	   *elems = palloc(sizeof(Datum) * ntodo);
	Datum	   *oids = palloc(sizeof(Datum) * ntodo);
	Datum	   *owners = palloc(sizeof(Datum) * ntodo);
	Datum	   *digests = palloc(sizeof(Datum) * ntodo);
	bool	   *oidnulls = palloc(sizeof(bool) * ntodo);
	int			dims[1] = {ntodo};
	int			lbs[1] = {1};
	Datum		args[10];
	uint64		row = 0;
	int			nconflicts = 0;
	bool	   *inserted = palloc0(sizeof(bool) * ntodo);

	for (int k = 0; k < ntodo; k++)
	{
		JobValue   *job = &jobs[todo[k]];

		elems[k] = job_form(cat, job);
		oids[k] = ObjectIdGetDatum(job->function_oid);
		owners[k] = ObjectIdGetDatum(job->function_owner);
		digests[k] = Int64GetDatum(job->function_digest);
		oidnulls[k] = !OidIsValid(job->function_oid);
	}
	args[0] = PointerGetDatum(construct_array(elems, ntodo, cat->job_typid, -1, false,
											  TYPALIGN_DOUBLE));
	args[1] = ObjectIdGetDatum(pusher);
	args[2] = PointerGetDatum(construct_md_array(oids, oidnulls, 1, dims, lbs, OIDOID,
												 sizeof(Oid), true, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_md_array(owners, oidnulls, 1, dims, lbs, OIDOID,
												 sizeof(Oid), true, TYPALIGN_INT));
	/* the catalog the function OIDs belong to (see function_here()) */
	args[4] = Int64GetDatum((int64) catalog_identity());
	args[5] = PointerGetDatum(construct_md_array(digests, oidnulls, 1, dims, lbs, INT8OID,
												 sizeof(int64), FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	if (steps)
	{
		Assert(keys == NULL && ntodo == steps->n);
		args[6] = Int64GetDatum(steps->workflow_id);
		args[7] = steps->names;
		args[8] = steps->deps_left;
		args[9] = steps->policies;
	}
	if (execute(cat, steps ? PLAN_INSERT_STEPS :
				ntodo == 1 ? (keys ? PLAN_INSERT_UNIQUE_ONE : PLAN_INSERT_ONE) :
				keys ? PLAN_INSERT_UNIQUE : PLAN_INSERT,
				args, NULL, false) != SPI_OK_INSERT_RETURNING)
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
		inserted[k] = true;
	}
	if (row != SPI_processed)
		elog(ERROR, "inserted jobs do not match the batch pushed");
	count_pushed(jobs, todo, inserted, ntodo, pusher);
	return nconflicts;
}

/*
 * queue_push
 *		Insert n checked and authorized job values; their ids in order.
 *
 * keys[i] is the unique key of job i (NULL for none), or keys is NULL when
 * no job has one.  Unique keys belong to the role that pushes: a job whose
 * key is held by a live job of that role is not inserted, and its id is
 * that job's.  Concurrent pushes of one key wait for each other on the
 * unique index, so exactly one job results.
 */
int64 *
queue_push(ChancyCatalog *cat, JobValue *jobs, int n, char **keys)
{
	return queue_push_steps(cat, jobs, n, keys, NULL);
}

/*
 * queue_push_steps
 *		queue_push(), and with steps, the jobs are the steps of a workflow
 *		(which have no unique keys).
 */
int64 *
queue_push_steps(ChancyCatalog *cat, JobValue *jobs, int n, char **keys,
				 const StepColumns *steps)
{
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	int		   *todo = palloc(sizeof(int) * Max(n, 1));
	KeyRef	   *conflicts = palloc(sizeof(KeyRef) * Max(n, 1));
	int			ntodo = n;
	Oid			pusher = GetUserId();
	CatalogSql	sql;

	if (n == 0)
		return ids;
	for (int i = 0; i < n; i++)
		todo[i] = i;

	catalog_sql_begin(cat, true, &sql);
	for (int attempt = 0; ntodo > 0; attempt++)
	{
		int			nconflicts;

		if (attempt > MAX_UNIQUE_RETRIES)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not push job with unique key \"%s\"", keys[todo[0]]),
					 errdetail("The live job holding the key kept finishing while the push looked for it."),
					 errhint("Retry the transaction.")));
		nconflicts = insert_batch(cat, jobs, keys, todo, ntodo, pusher, ids, conflicts,
								  steps);
		ntodo = 0;
		if (nconflicts > 0)
			find_live_jobs(cat, conflicts, nconflicts, pusher, ids, todo, &ntodo);
	}
	catalog_sql_end(&sql);
	return ids;
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

/* A limit of a claimed job: its own, else its queue's, else the setting's. */
static int64
effective_limit(Datum own, bool own_null, Datum queue, bool queue_null,
				int64 setting, bool is_time)
{
	if (!own_null)
		return is_time ? interval_ms(DatumGetIntervalP(own)) : DatumGetInt64(own);
	if (!queue_null)
		return is_time ? interval_ms(DatumGetIntervalP(queue)) : DatumGetInt64(queue);
	return setting;
}

/*
 * trim_batch
 *		Claimed jobs in dequeue order, their kwargs as stored: keep the first
 *		and those after it while their kwargs, as they will be in memory
 *		(decompressed, out of TOAST), add up to CLAIM_MAX_BYTES; the claim's
 *		own bound is on the stored size, which compression makes smaller.
 *		The kept ones get their kwargs copied into cxt; *dropped lists the
 *		ids of the others (NULL if none).  Returns how many are kept.
 */
static int
trim_batch(ClaimedJob **jobs, int n, MemoryContext cxt, ArrayType **dropped)
{
	Size		total = 0;
	int			kept = 0;
	Datum	   *ids = NULL;
	int			ndropped = 0;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	*dropped = NULL;
	for (int i = 0; i < n; i++)
	{
		total += toast_raw_datum_size(jobs[i]->kwargs);
		if (i > 0 && total > CLAIM_MAX_BYTES)
		{
			if (ids == NULL)
				ids = palloc(sizeof(Datum) * n);
			ids[ndropped++] = Int64GetDatum(jobs[i]->id);
			continue;
		}
		/* the value itself, not a TOAST pointer: it outlives the claim */
		jobs[i]->kwargs = PointerGetDatum(PG_DETOAST_DATUM_COPY(jobs[i]->kwargs));
		jobs[kept++] = jobs[i];
	}
	if (ndropped > 0)
		*dropped = construct_array(ids, ndropped, INT8OID, 8, FLOAT8PASSBYVAL,
								   TYPALIGN_DOUBLE);
	MemoryContextSwitchTo(old);
	return kept;
}

/*
 * park
 *		Claimed jobs (under claim) wait for their limit keys (keys, one per
 *		job): see PLAN_PARK.
 */
static void
park(ChancyCatalog *cat, int64 claim, List *jobs, List *keys)
{
	int			n = list_length(jobs);
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *texts = palloc(sizeof(Datum) * n);
	Datum		args[3];
	ListCell   *lj;
	ListCell   *lk;
	int			i = 0;

	forboth(lj, jobs, lk, keys)
	{
		ClaimedJob *job = lfirst(lj);

		ids[i] = Int64GetDatum(job->id);
		texts[i++] = CStringGetTextDatum(lfirst(lk));
		if (job->started)
			stats_at_commit(job->pushed_by, job->queue, job->name, STATS_NONE,
							JS_RUNNING, stats_waiting_state(job->attempt - 1), 1);
	}
	args[0] = Int64GetDatum(claim);
	args[1] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL,
											  TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(texts, n, TEXTOID, -1, false, TYPALIGN_INT));
	if (execute(cat, PLAN_PARK, args, NULL, false) != SPI_OK_UPDATE ||
		SPI_processed != (uint64) n)
		elog(ERROR, "could not park %d claimed jobs", n);
}

/*
 * queue_claim
 *		Claim ready jobs of a queue under claim token claim (see PLAN_CLAIM):
 *		the first starts now, up to max_jobs - 1 more follow in the batch
 *		when short_functions lists their functions.  The jobs, in dequeue
 *		order, are allocated in the caller's memory context; with none, the
 *		result says whether the queue exists, until when it is paused, and
 *		when its next scheduled job is due.
 */
void
queue_claim(ChancyCatalog *cat, const char *queue, int64 claim, int max_jobs,
			ArrayType *short_functions, ClaimedJob **jobs, ClaimResult *result)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		args[5];
	CatalogSql	sql;
	int			n;
	bool		isnull;
	ArrayType  *dropped;

	memset(result, 0, sizeof(ClaimResult));
	args[0] = CStringGetTextDatum(queue);
	args[1] = Int64GetDatum(claim);
	args[2] = Int32GetDatum(max_jobs);
	args[3] = PointerGetDatum(short_functions);
	args[4] = Int64GetDatum(CLAIM_MAX_BYTES);
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_CLAIM, args, NULL, false) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim jobs");
	n = (int) SPI_processed;
	for (int r = 0; r < n; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		ClaimedJob *job = palloc0(sizeof(ClaimedJob));
		Datum		own_time,
					own_memory,
					q_time,
					q_memory;
		bool		own_time_null,
					own_memory_null,
					q_time_null,
					q_memory_null;

		job->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		job->name = SPI_getvalue(tup, desc, 2);
		job->function = SPI_getvalue(tup, desc, 3);
		job->function_oid = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		if (isnull)
			job->function_oid = InvalidOid;
		job->queue = SPI_getvalue(tup, desc, 5);
		/* as stored (maybe a TOAST pointer) until the batch is trimmed */
		job->kwargs = SPI_getbinval(tup, desc, 6, &isnull);
		job->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
		job->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
		job->pushed_by = DatumGetObjectId(SPI_getbinval(tup, desc, 9, &isnull));
		own_time = SPI_getbinval(tup, desc, 10, &own_time_null);
		own_memory = SPI_getbinval(tup, desc, 11, &own_memory_null);
		job->started = DatumGetBool(SPI_getbinval(tup, desc, 12, &isnull));
		job->priority = DatumGetInt32(SPI_getbinval(tup, desc, 20, &isnull));
		job->function_owner = DatumGetObjectId(SPI_getbinval(tup, desc, 21, &isnull));
		job->function_catalog = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 22, &isnull));
		if (isnull)
			job->function_catalog = 0;
		job->function_digest = DatumGetInt64(SPI_getbinval(tup, desc, 23, &isnull));
		if (isnull)
			job->function_digest = 0;
		job->limit_keys = SPI_getbinval(tup, desc, 24, &isnull);
		job->limit_keys = isnull ? (Datum) 0 :
			PointerGetDatum(DatumGetArrayTypePCopy(job->limit_keys));
		job->due = DatumGetTimestampTz(SPI_getbinval(tup, desc, 25, &isnull));
		job->workflow_id = DatumGetInt64(SPI_getbinval(tup, desc, 26, &isnull));
		if (isnull)
			job->workflow_id = 0;
		job->ended = STATS_NONE;
		if (!job->started)
			job->attempt++;		/* counted by its outcome */
		else
			stats_at_commit(job->pushed_by, job->queue, job->name, STATS_NONE,
							stats_waiting_state(job->attempt - 1), JS_RUNNING, 1);
		job->claim = claim;
		q_time = SPI_getbinval(tup, desc, 14, &q_time_null);
		q_memory = SPI_getbinval(tup, desc, 15, &q_memory_null);
		job->time_limit_ms = effective_limit(own_time, own_time_null, q_time,
											 q_time_null, chancy_time_limit, true);
		job->memory_limit = effective_limit(own_memory, own_memory_null, q_memory,
											q_memory_null,
											(int64) chancy_memory_limit * 1024, false);
		if (r == 0)
		{
			result->skipped = (int) DatumGetInt64(SPI_getbinval(tup, desc, 13, &isnull)) - n;
			result->queue.backoff_base = DatumGetFloat8(SPI_getbinval(tup, desc, 16, &isnull));
			result->queue.backoff_factor = DatumGetFloat8(SPI_getbinval(tup, desc, 17, &isnull));
			result->queue.backoff_max = DatumGetFloat8(SPI_getbinval(tup, desc, 18, &isnull));
			result->queue.isolated = DatumGetBool(SPI_getbinval(tup, desc, 19, &isnull));
		}
		MemoryContextSwitchTo(old);
		jobs[r] = job;
	}
	/* RETURNING has no order: the dequeue order, the started job first */
	qsort(jobs, n, sizeof(ClaimedJob *), claimed_cmp);
	n = trim_batch(jobs, n, cxt, &dropped);

	/* those whose limit keys are saturated wait, parked (flow.c) */
	if (n > 0)
	{
		List	   *parked;
		MemoryContext old = MemoryContextSwitchTo(cxt);

		n = flow_take(cat, queue, jobs, n, &parked, &result->parked_keys);
		MemoryContextSwitchTo(old);
		if (parked != NIL)
			park(cat, claim, parked, result->parked_keys);
		result->parked = list_length(parked);
	}

	if (n == 0 && result->parked == 0)
	{
		TimestampTz t;

		if (execute(cat, PLAN_IDLE, args, NULL, true) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "could not look at queue \"%s\"", queue);
		result->queue_exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1,
														  &isnull));
		t = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 2, &isnull));
		result->next_due = isnull ? 0 : t;
		t = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 3, &isnull));
		result->paused_until = isnull ? 0 : t;
	}
	result->njobs = n;
	catalog_sql_end(&sql);

	/* what the batch could not hold goes back at once, unstarted */
	if (dropped != NULL)
	{
		ReleaseResult released;
		Datum		claim_datum = Int64GetDatum(claim);

		queue_release(cat, construct_array(&claim_datum, 1, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE),
					  dropped, construct_empty_array(INT8OID), NULL, &released);
		result->skipped += released.released;
	}
}

/*
 * queue_unpark
 *		Up to n parked jobs of key go back to be claimed, in dequeue order;
 *		the executors of their queues are woken at commit.  *rest says
 *		whether parked jobs of key are left, and *priority and *id which is
 *		the first of them.  Returns how many went back.
 */
int
queue_unpark(ChancyCatalog *cat, const char *key, int n, bool *rest, int32 *priority,
			 int64 *id)
{
	Datum		args[2];
	CatalogSql	sql;
	int			got = 0;

	args[0] = CStringGetTextDatum(key);
	args[1] = Int32GetDatum(n);
	*rest = false;
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_UNPARK, args, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "could not release jobs parked on limit key \"%s\"", key);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *queue = SPI_getvalue(tup, desc, 1);

		if (queue != NULL)
		{
			int			count = (int) DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));

			wakeup_queue_at_commit(queue, count);
			got += count;
		}
		else
		{
			*rest = true;
			*priority = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
			*id = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		}
	}
	catalog_sql_end(&sql);
	return got;
}

/*
 * queue_parked_keys
 *		The keys jobs are parked on (C strings, in the caller's context).
 */
List *
queue_parked_keys(ChancyCatalog *cat)
{
	List	   *keys = NIL;
	CatalogSql	sql;

	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_PARKED_KEYS, NULL, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read the keys jobs are parked on");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *key = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		MemoryContext old = MemoryContextSwitchTo(sql.caller);

		keys = lappend(keys, pstrdup(key));
		MemoryContextSwitchTo(old);
	}
	catalog_sql_end(&sql);
	return keys;
}

/*
 * queue_claim_plan
 *		The plan of the claim, as EXPLAIN (COSTS OFF) shows it under the
 *		claim's settings, with literal values for its parameters.
 */
List *
queue_claim_plan(ChancyCatalog *cat, const char *queue)
{
	char	   *text = psprintf(plan_defs[PLAN_CLAIM].sql, cat->nspname);
	StringInfoData explain;
	List	   *lines = NIL;
	MemoryContext cxt = CurrentMemoryContext;
	CatalogSql	sql;

	/* $1 (queue), $2 (claim), $3 (batch), $4 (functions), $5 (bytes) */
	initStringInfo(&explain);
	appendStringInfoString(&explain, "EXPLAIN (COSTS OFF) ");
	for (const char *p = text; *p; p++)
	{
		if (p[0] == '$' && p[1] >= '1' && p[1] <= '5')
		{
			appendStringInfoString(&explain,
								   p[1] == '1' ? quote_literal_cstr(queue) :
								   p[1] == '2' ? "0" : p[1] == '3' ? "64" :
								   p[1] == '4' ? "'{}'::text[]" : "1048576");
			p++;
		}
		else
			appendStringInfoChar(&explain, *p);
	}
	catalog_sql_begin(cat, true, &sql);
	if (SPI_execute(explain.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not explain the claim");
	for (uint64 r = 0; r < SPI_processed; r++)
		lines = lappend(lines, MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[r],
																	 SPI_tuptable->tupdesc, 1)));
	catalog_sql_end(&sql);
	return lines;
}

/*
 * queue_succeeded
 *		Record the success of n jobs of one claim, in one statement (in the
 *		transaction that ran them); how many rows still carried the claim.
 */
int
queue_succeeded(ChancyCatalog *cat, int64 claim, int n, Datum *ids,
				Datum *results, bool *result_nulls, Datum *started_at,
				Datum *completed_at, JobCost *costs)
{
	Datum		args[12];
	char		nulls[12];
	int			dims[1] = {n};
	int			lbs[1] = {1};
	bool		measured = false;
	CatalogSql	sql;
	int			updated;

	/* the costs, a figure an array; none when nothing was measured */
	memset(nulls, ' ', sizeof(nulls));
	for (int i = 0; i < n; i++)
		measured |= costs[i].valid;
	for (int k = 0; k < JOB_COST_FIGURES; k++)
		nulls[5 + k] = measured ? ' ' : 'n';
	if (measured)
	{
		Datum	   *values[JOB_COST_FIGURES];
		bool	   *none = palloc(sizeof(bool) * n);

		for (int k = 0; k < JOB_COST_FIGURES; k++)
			values[k] = palloc(sizeof(Datum) * n);
		for (int i = 0; i < n; i++)
		{
			int64		figures[JOB_COST_FIGURES];

			stats_cost_figures(&costs[i], figures);
			for (int k = 0; k < JOB_COST_FIGURES; k++)
				values[k][i] = Int64GetDatum(figures[k]);
			none[i] = !costs[i].valid;
		}
		for (int k = 0; k < JOB_COST_FIGURES; k++)
			args[5 + k] = PointerGetDatum(construct_md_array(values[k], none, 1, dims, lbs,
															 INT8OID, 8, FLOAT8PASSBYVAL,
															 TYPALIGN_DOUBLE));
	}

	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL,
											  TYPALIGN_DOUBLE));
	args[1] = Int64GetDatum(claim);
	args[2] = PointerGetDatum(construct_md_array(results, result_nulls, 1, dims, lbs,
												 JSONBOID, -1, false, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_array(started_at, n, TIMESTAMPTZOID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(completed_at, n, TIMESTAMPTZOID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_SUCCEEDED, args, nulls, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the success of jobs");
	updated = (int) SPI_processed;
	catalog_sql_end(&sql);
	return updated;
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
 *		Record a failed run: the job retries after backoff seconds while it
 *		has attempts left (and no cancel was asked), else it has failed (or
 *		is cancelled).  Returns the new state, or NULL if the row no longer
 *		carries the claim.
 */
const char *
queue_failed(ChancyCatalog *cat, ClaimedJob *job, ErrorData *edata, double backoff,
			 TimestampTz started_at)
{
	Datum		args[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	const char *state = NULL;
	CatalogSql	sql;
	bool		isnull;

	args[0] = Int64GetDatum(job->id);
	args[1] = Int64GetDatum(job->claim);
	args[2] = Float8GetDatum(backoff);
	args[3] = text_or_null(edata->message ? edata->message : "unknown error", &nulls[3]);
	args[4] = text_or_null(unpack_sql_state(edata->sqlerrcode), &nulls[4]);
	args[5] = text_or_null(edata->detail, &nulls[5]);
	args[6] = text_or_null(edata->hint, &nulls[6]);
	args[7] = text_or_null(edata->context, &nulls[7]);
	args[8] = TimestampTzGetDatum(started_at);
	args[9] = stats_cost_array(&job->cost, &isnull);
	nulls[9] = isnull ? 'n' : ' ';
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_FAILED, args, nulls, false) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not record the failure of job " INT64_FORMAT, job->id);
	if (SPI_processed == 1)
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		state = strcmp(s, "failed") == 0 ? "failed" :
			strcmp(s, "cancelled") == 0 ? "cancelled" : "retrying";
	}
	catalog_sql_end(&sql);
	return state;
}

/*
 * queue_cancelled
 *		Record that a claimed job was cancelled: interrupted while it ran
 *		(ran), or before it started; by is the role that cancelled it when
 *		the row does not say (a job that cancelled itself).  False if the row
 *		no longer carries the claim.
 */
bool
queue_cancelled(ChancyCatalog *cat, ClaimedJob *job, bool ran, Oid by,
				TimestampTz started_at)
{
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	CatalogSql	sql;
	bool		held;
	bool		isnull;

	args[0] = Int64GetDatum(job->id);
	args[1] = Int64GetDatum(job->claim);
	args[2] = BoolGetDatum(ran);
	args[3] = ObjectIdGetDatum(by);
	nulls[3] = OidIsValid(by) ? ' ' : 'n';
	args[4] = TimestampTzGetDatum(started_at);
	args[5] = stats_cost_array(&job->cost, &isnull);
	nulls[5] = isnull ? 'n' : ' ';
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_CANCELLED, args, nulls, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the cancel of job " INT64_FORMAT, job->id);
	held = SPI_processed == 1;
	catalog_sql_end(&sql);
	return held;
}

/*
 * queue_release
 *		Give back the jobs of claims (only ids, if not NULL): see
 *		PLAN_RELEASE.  guilty lists jobs to charge a crash (may be empty;
 *		NULL charges every started job, when nobody knows which crashed);
 *		why notes why a started job went back (may be NULL).  The jobs that
 *		reached a final state are returned, for their waiters.
 */
void
queue_release(ChancyCatalog *cat, ArrayType *claims, ArrayType *ids,
			  ArrayType *guilty, const char *why, ReleaseResult *result)
{
	Datum		args[5];
	char		nulls[5] = {' ', ids ? ' ' : 'n', guilty ? ' ' : 'n', ' ', why ? ' ' : 'n'};
	CatalogSql	sql;
	StepEnd    *ends;
	int			nends = 0;

	result->finished = NIL;
	args[0] = PointerGetDatum(claims);
	args[1] = PointerGetDatum(ids);
	args[2] = PointerGetDatum(guilty);
	args[3] = Int32GetDatum(chancy_max_crashes);
	args[4] = why ? CStringGetTextDatum(why) : (Datum) 0;
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_RELEASE, args, nulls, false) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not give jobs back");
	result->released = (int) SPI_processed;
	ends = palloc(sizeof(StepEnd) * Max(SPI_processed, 1));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *state = SPI_getvalue(tup, desc, 2);
		bool		isnull;
		bool		charged = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		Oid			role = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		char	   *queue = SPI_getvalue(tup, desc, 6);
		char	   *name = SPI_getvalue(tup, desc, 7);
		JobState	from = stats_state(SPI_getvalue(tup, desc, 3));
		JobState	to = stats_state(state);

		/* a crash is a run that started and ended; a cancel ends one */
		if (charged)
			stats_at_commit(role, queue, name, STATS_STARTED, JS_NONE, JS_NONE, 1);
		stats_at_commit(role, queue, name,
						charged ? STATS_CRASHED :
						to == JS_CANCELLED ? STATS_CANCELLED : STATS_NONE,
						from, to, 1);

		if (strcmp(state, "cancelled") == 0 || strcmp(state, "failed") == 0)
		{
			MemoryContext old;
			Datum		wf = SPI_getbinval(tup, desc, 8, &isnull);

			if (!isnull)
			{
				ends[nends].job_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
				ends[nends].workflow_id = DatumGetInt64(wf);
				ends[nends].failed = true;
				ends[nends++].was_waiting = false;
			}
			old = MemoryContextSwitchTo(sql.caller);

			result->finished =
				lappend(result->finished,
						box(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
														SPI_tuptable->tupdesc, 1,
														&isnull))));
			MemoryContextSwitchTo(old);
		}
	}
	if (nends > 0)
		queue_steps_ended(cat, ends, nends);
	catalog_sql_end(&sql);
}

/* The claim tokens that rows of chancy_jobs carry (boxed int64s). */
List *
queue_claims_in_use(ChancyCatalog *cat)
{
	List	   *claims = NIL;
	CatalogSql	sql;
	bool		isnull;

	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_CLAIMS, NULL, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read the claims of jobs");
	MemoryContextSwitchTo(sql.caller);
	for (uint64 r = 0; r < SPI_processed; r++)
		claims = lappend(claims,
						 box(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
														 SPI_tuptable->tupdesc, 1,
														 &isnull))));
	catalog_sql_end(&sql);
	return claims;
}

/*
 * queue_cancel_requests
 *		Claimed jobs whose cancel was asked (committed): pairs of boxed
 *		int64s, job id then claim.
 */
List *
queue_cancel_requests(ChancyCatalog *cat)
{
	List	   *pairs = NIL;
	CatalogSql	sql;
	bool		isnull;

	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_SWEEP, NULL, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read the cancels of jobs");
	MemoryContextSwitchTo(sql.caller);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		pairs = lappend(pairs,
						box(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
														SPI_tuptable->tupdesc, 1,
														&isnull))));
		pairs = lappend(pairs,
						box(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
														SPI_tuptable->tupdesc, 2,
														&isnull))));
	}
	catalog_sql_end(&sql);
	return pairs;
}

/*
 * queue_cancel
 *		Cancel job id as role (see PLAN_CANCEL).  False if it had already
 *		finished; else *claim is the claim holding it (0: it was cancelled
 *		at once).
 */
bool
queue_cancel(ChancyCatalog *cat, int64 id, Oid role, int64 *claim)
{
	Datum		args[2];
	CatalogSql	sql;
	bool		live;
	bool		isnull;

	*claim = 0;
	args[0] = Int64GetDatum(id);
	args[1] = ObjectIdGetDatum(role);
	catalog_sql_begin(cat, true, &sql);
	/* a step no executor holds: its workflow first (the order of locks) */
	if (execute(cat, PLAN_WF_OF_JOB, args, NULL, true) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		Datum		wf = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									   &isnull);

		(void) lock_workflows(cat, int8_array(&wf, 1), NULL);
	}
	if (execute(cat, PLAN_CANCEL, args, NULL, false) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not cancel job " INT64_FORMAT, id);
	live = SPI_processed == 1;
	if (live)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		d = SPI_getbinval(tup, desc, 1, &isnull);

		*claim = isnull ? 0 : DatumGetInt64(d);
		if (*claim == 0)
		{
			StepEnd		end;

			stats_at_commit(DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull)),
							SPI_getvalue(tup, desc, 4), SPI_getvalue(tup, desc, 5),
							STATS_CANCELLED, stats_state(SPI_getvalue(tup, desc, 2)),
							JS_CANCELLED, 1);
			d = SPI_getbinval(tup, desc, 6, &isnull);
			if (!isnull)
			{
				end.job_id = id;
				end.workflow_id = DatumGetInt64(d);
				end.failed = true;
				end.was_waiting = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
				queue_steps_ended(cat, &end, 1);
			}
		}
	}
	catalog_sql_end(&sql);
	return live;
}

/*
 * jobs_moved
 *		The rows of PLAN_PRUNE or PLAN_WF_PRUNE (jobs deleted: to is
 *		JS_NONE), or of a retry (jobs pending again: JS_PENDING) -- pushed_by,
 *		queue, name, state, count of jobs -- move in the gauges at commit;
 *		the executors of the queues of pending ones are woken then.  Rows
 *		with no pushed_by are not such rows.  Returns the total.
 */
static int
jobs_moved(JobState to)
{
	int			n = 0;

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		role = SPI_getbinval(tup, desc, 1, &isnull);
		int64		count;

		if (isnull)
			continue;
		count = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		stats_at_commit(DatumGetObjectId(role), SPI_getvalue(tup, desc, 2),
						SPI_getvalue(tup, desc, 3), STATS_NONE,
						stats_state(SPI_getvalue(tup, desc, 4)), to, count);
		if (to == JS_PENDING)
			wakeup_queue_at_commit(SPI_getvalue(tup, desc, 2), (int) count);
		n += (int) count;
	}
	return n;
}

/* *next_due becomes the time PLAN_PRUNE_NEXT or PLAN_WF_PRUNE_NEXT gave, if
 * earlier (or it was 0: none) */
static void
earliest_due(TimestampTz *next_due)
{
	bool		isnull;
	TimestampTz due;

	if (SPI_processed != 1)
		return;
	due = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											&isnull));
	if (!isnull && (*next_due == 0 || due < *next_due))
		*next_due = due;
}

/*
 * queue_prune
 *		Delete finished jobs older than their queue's prune_after (or
 *		chancy.prune_after), queue by queue through the finished index, so
 *		that the cost follows what is deleted.  Returns how many; *next_due
 *		is when the oldest finished job left becomes due (0: none).
 */
int
queue_prune(ChancyCatalog *cat, TimestampTz *next_due)
{
	Interval	dflt;
	Datum		arg;
	char		argnull;
	CatalogSql	sql;
	int			total = 0;
	List	   *queues = NIL;
	List	   *afters = NIL;
	ListCell   *lq;
	ListCell   *la;

	*next_due = 0;
	memset(&dflt, 0, sizeof(dflt));
	dflt.time = (int64) chancy_prune_after * USECS_PER_SEC;
	arg = IntervalPGetDatum(&dflt);
	argnull = chancy_prune_after < 0 ? 'n' : ' ';

	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_PRUNE_QUEUES, &arg, &argnull, true) != SPI_OK_SELECT)
		elog(ERROR, "could not find finished jobs");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		Datum		after = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2,
										  &isnull);

		if (isnull)
			continue;			/* kept for ever */
		queues = lappend(queues, SPI_getvalue(SPI_tuptable->vals[r],
											  SPI_tuptable->tupdesc, 1));
		afters = lappend(afters, DatumGetIntervalP(SPI_datumTransfer(after, false,
																	 sizeof(Interval))));
	}
	forboth(lq, queues, la, afters)
	{
		Datum		args[3];
		int			n = PRUNE_BATCH;

		args[0] = CStringGetTextDatum((char *) lfirst(lq));
		args[1] = IntervalPGetDatum((Interval *) lfirst(la));
		args[2] = Int32GetDatum(PRUNE_BATCH);
		for (int round = 0; round < PRUNE_MAX_BATCHES && n == PRUNE_BATCH; round++)
		{
			if (execute(cat, PLAN_PRUNE, args, NULL, false) != SPI_OK_SELECT)
				elog(ERROR, "could not prune finished jobs");
			n = jobs_moved(JS_NONE);
			total += n;
		}
		if (execute(cat, PLAN_PRUNE_NEXT, args, NULL, true) == SPI_OK_SELECT)
			earliest_due(next_due);
	}
	if (chancy_prune_after >= 0)
		total += prune_workflows(cat, &dflt, next_due);
	catalog_sql_end(&sql);
	return total;
}

/*
 * retried
 *		The rows of a retry (RETRY_JOBS): the jobs pending again move in the
 *		gauges and wake their queues' executors at commit (jobs_moved()).
 *		*skipped is how many were skipped for their unique key; for one,
 *		*holder is the live job holding it (0: not known) and *key the key,
 *		in memory context cxt.  Returns how many run again.
 */
static int
retried(int64 *skipped, int64 *holder, char **key, MemoryContext cxt)
{
	int			n = jobs_moved(JS_PENDING);

	*skipped = 0;
	*holder = 0;
	*key = NULL;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		(void) SPI_getbinval(tup, desc, 1, &isnull);
		if (!isnull)
			continue;			/* a move, not the skipped ones */
		*skipped = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		if (!isnull)
			*holder = DatumGetInt64(d);
		(void) SPI_getbinval(tup, desc, 7, &isnull);
		if (!isnull)
			*key = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 7));
	}
	return n;
}

/*
 * queue_retry
 *		Run job id again (see RETRY_JOBS): true if it was failed or
 *		cancelled, and is pending now.  If a live job holds its unique key,
 *		*holder is that job (0: none) and *key the key.
 */
bool
queue_retry(ChancyCatalog *cat, int64 id, int64 *holder, char **key)
{
	CatalogSql	sql;
	Datum		arg = Int64GetDatum(id);
	int64		skipped;
	int			n;

	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_RETRY, &arg, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "could not retry job " INT64_FORMAT, id);
	n = retried(&skipped, holder, key, sql.caller);
	catalog_sql_end(&sql);
	return n == 1;
}

/*
 * queue_retry_failed
 *		Run failed jobs again, oldest first, at most max_jobs of them (see
 *		PLAN_RETRY_FAILED): those that filter (queue, name, failed_after,
 *		failed_before; nulls: no condition) selects and role may retry (all
 *		of them if all).  Returns how many; *skipped is how many were
 *		skipped because their unique key is held.
 */
int
queue_retry_failed(ChancyCatalog *cat, const Datum *filter, const bool *nulls,
				   int max_jobs, Oid role, bool all, int64 *skipped)
{
	CatalogSql	sql;
	Datum		args[7];
	char		argnulls[7];
	int64		holder;
	char	   *key;
	int			n;

	for (int i = 0; i < 4; i++)
	{
		args[i] = filter[i];
		argnulls[i] = nulls[i] ? 'n' : ' ';
	}
	args[4] = Int32GetDatum(max_jobs);
	args[5] = BoolGetDatum(all);
	args[6] = ObjectIdGetDatum(role);
	memset(argnulls + 4, ' ', 3);
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_RETRY_FAILED, args, argnulls, false) != SPI_OK_SELECT)
		elog(ERROR, "could not retry failed jobs");
	n = retried(skipped, &holder, &key, sql.caller);
	catalog_sql_end(&sql);
	return n;
}

/*
 * queue_push_checked
 *		Push job values through chancy_push_many(), which checks each as a
 *		push of the current user (see schedule.c, which sets it); their ids,
 *		in order.
 */
int64 *
queue_push_checked(ChancyCatalog *cat, Datum *jobs, int n)
{
	Datum		arg = PointerGetDatum(construct_array(jobs, n, cat->job_typid, -1, false,
													  TYPALIGN_DOUBLE));
	bool		isnull;
	ArrayType  *ids;
	int64	   *result = palloc(sizeof(int64) * n);

	if (execute(cat, PLAN_PUSH_CHECKED, &arg, NULL, false) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not push jobs");
	ids = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										   1, &isnull));
	memcpy(result, ARR_DATA_PTR(ids), sizeof(int64) * n);
	return result;
}

/*
 * queue_push_refused
 *		Record a push that was refused (a schedule's fire whose owner may no
 *		longer push its job, say) as a failed job of pushed_by, with the
 *		error: the attempt to push it is not lost unseen.  Its id.
 */
int64
queue_push_refused(ChancyCatalog *cat, Datum job, Oid pushed_by, ErrorData *edata)
{
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	args[0] = PointerGetDatum(construct_array(&job, 1, cat->job_typid, -1, false,
											  TYPALIGN_DOUBLE));
	args[1] = text_or_null(edata->message ? edata->message : "unknown error", &nulls[1]);
	args[2] = text_or_null(unpack_sql_state(edata->sqlerrcode), &nulls[2]);
	args[3] = text_or_null(edata->detail, &nulls[3]);
	args[4] = text_or_null(edata->hint, &nulls[4]);
	args[5] = ObjectIdGetDatum(pushed_by);
	if (execute(cat, PLAN_PUSH_REFUSED, args, nulls, false) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not record a refused push");
	stats_at_commit(pushed_by, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2),
					SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3),
					STATS_NONE, JS_NONE, JS_FAILED, 1);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
}

/*
 * queue_run_other
 *		Does one of the jobs ids (just pushed) not run its function of
 *		functions (InvalidOid: a C symbol)?  A push resolves a job's function
 *		anew; a caller that pinned it checks here.  Not read-only, so that it
 *		sees the push.
 */
bool
queue_run_other(ChancyCatalog *cat, int64 *ids, Oid *functions, int n)
{
	Datum	   *idv = palloc(sizeof(Datum) * n);
	Datum	   *fnv = palloc(sizeof(Datum) * n);
	Datum		args[2];

	for (int i = 0; i < n; i++)
	{
		idv[i] = Int64GetDatum(ids[i]);
		fnv[i] = ObjectIdGetDatum(functions[i]);
	}
	args[0] = PointerGetDatum(construct_array(idv, n, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(fnv, n, OIDOID, sizeof(Oid), true,
											  TYPALIGN_INT));
	if (execute(cat, PLAN_RUN_OTHER, args, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "could not read chancy_jobs");
	return SPI_processed > 0;
}

/* An int8[] of n values. */
static ArrayType *
int8_array(Datum *values, int n)
{
	return construct_array(values, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
						   TYPALIGN_DOUBLE);
}

/* An int4[] of n values. */
static ArrayType *
int4_array(int32 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(values[i]);
	return construct_array(d, n, INT4OID, sizeof(int32), true, TYPALIGN_INT);
}

/*
 * lock_workflows
 *		Lock workflows ids (in id order, so that transactions ending steps
 *		of several never wait for each other in a circle).  Returns how
 *		many exist, whose rows (id, being cancelled, state) SPI_tuptable
 *		holds; with cancelled, the ids of those being cancelled (boxed).
 */
static int
lock_workflows(ChancyCatalog *cat, ArrayType *ids, List **cancelled)
{
	Datum		arg = PointerGetDatum(ids);

	if (execute(cat, PLAN_WF_LOCK, &arg, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "could not lock workflows");
	if (cancelled)
	{
		*cancelled = NIL;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;

			if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2,
										   &isnull)))
				*cancelled = lappend(*cancelled,
									 box(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
																	 SPI_tuptable->tupdesc,
																	 1, &isnull))));
		}
	}
	return (int) SPI_processed;
}

/* What the steps that ended in a transaction change in their workflows. */
typedef struct WfDeltas
{
	int			n;
	Datum	   *ids;			/* workflow ids */
	int32	   *done;			/* steps that ended */
	int32	   *failed;			/* ... failed or cancelled */
	int32	   *unwaited;		/* steps that no longer wait */
} WfDeltas;

static void
deltas_init(WfDeltas *d, int max)
{
	d->n = 0;
	d->ids = palloc(sizeof(Datum) * Max(max, 1));
	d->done = palloc0(sizeof(int32) * Max(max, 1));
	d->failed = palloc0(sizeof(int32) * Max(max, 1));
	d->unwaited = palloc0(sizeof(int32) * Max(max, 1));
}

/* The index of workflow id in d, added if new (d has room for it). */
static int
deltas_of(WfDeltas *d, int64 id)
{
	for (int i = 0; i < d->n; i++)
		if (DatumGetInt64(d->ids[i]) == id)
			return i;
	d->ids[d->n] = Int64GetDatum(id);
	return d->n++;
}

/* A step ended: count it (its workflow is among d's). */
static void
deltas_step_ended(WfDeltas *d, int64 workflow_id, bool failed, bool was_waiting)
{
	int			i = deltas_of(d, workflow_id);

	d->done[i]++;
	d->failed[i] += failed;
	d->unwaited[i] += was_waiting;
}

/*
 * cancelled_steps
 *		Account for the rows of PLAN_WF_CANCEL_STEPS or PLAN_WF_CASCADE (id,
 *		workflow_id, pushed_by, queue, name[, old state, was waiting]): steps
 *		cancelled without running; their ids are appended to ended.
 */
static void
cancelled_steps(WfDeltas *d, Datum *ended, int *nended, bool with_state)
{
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		bool		waited = !with_state ||
			DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));

		deltas_step_ended(d, DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull)), true,
						  waited);
		stats_at_commit(DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull)),
						SPI_getvalue(tup, desc, 4), SPI_getvalue(tup, desc, 5),
						STATS_CANCELLED,
						with_state ? stats_state(SPI_getvalue(tup, desc, 6)) : JS_PENDING,
						JS_CANCELLED, 1);
		wakeup_done_at_commit(id);
		ended[(*nended)++] = Int64GetDatum(id);
	}
}

/* Wake at commit the executors of the queues of released steps (rows of
 * PLAN_WF_RELEASE or PLAN_WF_REWAIT: ..., queue, released). */
static void
wake_released(WfDeltas *d)
{
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int			last = desc->natts;

		if (!DatumGetBool(SPI_getbinval(tup, desc, last, &isnull)))
			continue;
		if (d)
			d->unwaited[deltas_of(d, DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)))]++;
		wakeup_queue_at_commit(SPI_getvalue(tup, desc, last - 1), 1);
	}
}

/*
 * count_workflows
 *		Apply the deltas d to the workflows' counters; wake at commit the
 *		waiters of those that finished.
 */
static void
count_workflows(ChancyCatalog *cat, WfDeltas *d)
{
	Datum		args[4];

	args[0] = PointerGetDatum(int8_array(d->ids, d->n));
	args[1] = PointerGetDatum(int4_array(d->done, d->n));
	args[2] = PointerGetDatum(int4_array(d->failed, d->n));
	args[3] = PointerGetDatum(int4_array(d->unwaited, d->n));
	if (execute(cat, PLAN_WF_COUNT, args, NULL, false) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not count workflow steps");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2,
									   &isnull)))
			wakeup_done_at_commit(-DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
															   SPI_tuptable->tupdesc, 1,
															   &isnull)));
	}
}

/*
 * queue_steps_ended
 *		In the transaction that ended them (succeeded, failed for good or
 *		cancelled), go on with the workflows of n steps: the steps that wait
 *		for them count them, those that wait for nothing more are released
 *		(their queue's executors woken at commit), those a failure cancels
 *		are cancelled, and the workflows' counters are kept; a workflow with
 *		no step left to run has finished, and its waiters are woken.  A
 *		workflow being cancelled has its waiting steps cancelled instead.
 *		The caller holds the rows of the steps; the workflows are locked
 *		here, in id order, before the steps that wait.
 */
void
queue_steps_ended(ChancyCatalog *cat, const StepEnd *ends, int n)
{
	CatalogSql	sql;
	WfDeltas	d;
	Datum	   *ended;
	int			nended = 0;
	bool		any_failed = false;
	List	   *cancelled;
	Datum		arg;

	if (n == 0)
		return;
	catalog_sql_begin(cat, true, &sql);
	deltas_init(&d, n);
	for (int i = 0; i < n; i++)
		deltas_step_ended(&d, ends[i].workflow_id, ends[i].failed, ends[i].was_waiting);
	if (lock_workflows(cat, int8_array(d.ids, d.n), &cancelled) > 0)
	{
		/* the steps that end here: these, and those they cancel */
		ended = palloc(sizeof(Datum) * n);
		for (int i = 0; i < n; i++)
		{
			ended[nended++] = Int64GetDatum(ends[i].job_id);
			any_failed |= ends[i].failed;
		}
		if (cancelled != NIL)
		{
			Datum	   *wfs = palloc(sizeof(Datum) * list_length(cancelled));
			int			nwfs = 0;
			ListCell   *lc;

			foreach(lc, cancelled)
				wfs[nwfs++] = Int64GetDatum(*(int64 *) lfirst(lc));
			arg = PointerGetDatum(int8_array(wfs, nwfs));
			if (execute(cat, PLAN_WF_CANCEL_STEPS, &arg, NULL, false) != SPI_OK_UPDATE_RETURNING)
				elog(ERROR, "could not cancel the steps of cancelled workflows");
			ended = repalloc(ended, sizeof(Datum) * (nended + SPI_processed));
			cancelled_steps(&d, ended, &nended, true);
		}
		if (any_failed)
		{
			arg = PointerGetDatum(int8_array(ended, nended));
			if (execute(cat, PLAN_WF_CASCADE, &arg, NULL, false) != SPI_OK_UPDATE_RETURNING)
				elog(ERROR, "could not cancel the steps after a failed step");
			ended = repalloc(ended, sizeof(Datum) * (nended + SPI_processed));
			cancelled_steps(&d, ended, &nended, false);
		}
		arg = PointerGetDatum(int8_array(ended, nended));
		if (execute(cat, PLAN_WF_RELEASE, &arg, NULL, false) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not release workflow steps");
		wake_released(&d);

		count_workflows(cat, &d);
	}
	catalog_sql_end(&sql);
}

/*
 * queue_workflow_push
 *		Insert workflow name's row (total steps, of which waiting wait for
 *		others); its id.
 */
int64
queue_workflow_push(ChancyCatalog *cat, const char *name, int total, int waiting)
{
	CatalogSql	sql;
	Datum		args[4];
	bool		isnull;
	int64		id;

	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(GetUserId());
	args[2] = Int32GetDatum(total);
	args[3] = Int32GetDatum(waiting);
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_WF_INSERT, args, NULL, false) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not insert workflow");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									 &isnull));
	catalog_sql_end(&sql);
	return id;
}

/* Record that job children[i] depends on job parents[i], n times. */
void
queue_workflow_edges(ChancyCatalog *cat, int64 workflow_id, Datum *parents,
					 Datum *children, int n)
{
	CatalogSql	sql;
	Datum		args[3];

	if (n == 0)
		return;
	args[0] = PointerGetDatum(int8_array(parents, n));
	args[1] = PointerGetDatum(int8_array(children, n));
	args[2] = Int64GetDatum(workflow_id);
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_WF_EDGES, args, NULL, false) != SPI_OK_INSERT)
		elog(ERROR, "could not insert workflow dependencies");
	catalog_sql_end(&sql);
}

/*
 * queue_workflow_held
 *		The steps of workflow id that executors hold, as pairs of boxed job
 *		id and claim, locked in id order.  One whose row its executor has
 *		locked is recording its outcome: it is left to finish.
 */
List *
queue_workflow_held(ChancyCatalog *cat, int64 id)
{
	CatalogSql	sql;
	Datum		arg = Int64GetDatum(id);
	List	   *pairs = NIL;

	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_WF_HELD, &arg, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "could not read the steps of workflow " INT64_FORMAT, id);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(sql.caller);

		pairs = lappend(pairs, box(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
															   SPI_tuptable->tupdesc, 1,
															   &isnull))));
		pairs = lappend(pairs, box(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
															   SPI_tuptable->tupdesc, 2,
															   &isnull))));
		MemoryContextSwitchTo(old);
	}
	catalog_sql_end(&sql);
	return pairs;
}

/*
 * queue_workflow_cancel
 *		Cancel workflow id as role: mark it (which locks it), and cancel the
 *		live steps no executor holds.  The held ones the caller asked to be
 *		cancelled before (their rows come before the workflow in the order
 *		of locks); a step that ends from now on has the waiting ones
 *		cancelled rather than released.  False if it had already finished.
 */
bool
queue_workflow_cancel(ChancyCatalog *cat, int64 id, Oid role)
{
	CatalogSql	sql;
	WfDeltas	d;
	Datum		args[4];
	Datum	   *ended;
	int			nended = 0;
	bool		running;

	catalog_sql_begin(cat, true, &sql);
	args[0] = Int64GetDatum(id);
	args[1] = ObjectIdGetDatum(role);
	if (execute(cat, PLAN_WF_MARK_CANCELLED, args, NULL, false) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not cancel workflow " INT64_FORMAT, id);
	running = SPI_processed == 1;
	if (running)
	{
		deltas_init(&d, 1);
		(void) deltas_of(&d, id);
		args[0] = PointerGetDatum(int8_array(d.ids, 1));
		if (execute(cat, PLAN_WF_CANCEL_STEPS, args, NULL, false) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not cancel the steps of workflow " INT64_FORMAT, id);
		ended = palloc(sizeof(Datum) * Max(SPI_processed, 1));
		cancelled_steps(&d, ended, &nended, true);
		count_workflows(cat, &d);
	}
	catalog_sql_end(&sql);
	return running;
}

/*
 * queue_workflow_retry
 *		Run the failed and cancelled steps of finished workflow id again,
 *		with the steps after them that ended: each waits for its
 *		dependencies anew, with its attempts back; succeeded steps before
 *		them keep their results.  Returns how many steps run again, or -1 if
 *		the workflow is still running (or does not exist).
 */
int
queue_workflow_retry(ChancyCatalog *cat, int64 id)
{
	CatalogSql	sql;
	Datum		arg = Int64GetDatum(id);
	int			n = -1;
	bool		isnull;

	catalog_sql_begin(cat, true, &sql);
	if (lock_workflows(cat, int8_array(&arg, 1), NULL) == 1 &&
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3), "running") != 0)
	{
		if (execute(cat, PLAN_WF_RETRY, &arg, NULL, false) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not retry workflow " INT64_FORMAT, id);
		n = (int) SPI_processed;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;

			stats_at_commit(DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull)),
							SPI_getvalue(tup, desc, 3), SPI_getvalue(tup, desc, 4),
							STATS_NONE, stats_state(SPI_getvalue(tup, desc, 5)),
							JS_PENDING, 1);
		}
		if (n > 0)
		{
			if (execute(cat, PLAN_WF_REWAIT, &arg, NULL, false) != SPI_OK_UPDATE_RETURNING)
				elog(ERROR, "could not retry workflow " INT64_FORMAT, id);
			wake_released(NULL);
			if (execute(cat, PLAN_WF_RECOUNT, &arg, NULL, false) != SPI_OK_UPDATE)
				elog(ERROR, "could not count the steps of workflow " INT64_FORMAT, id);
		}
	}
	catalog_sql_end(&sql);
	return n;
}

/*
 * prune_workflows
 *		In queue_prune(): delete the workflows that finished longer than
 *		chancy.prune_after ago, with their steps (which the queues' prune
 *		leaves).  Returns how many steps; *next_due as queue_prune's.
 */
static int
prune_workflows(ChancyCatalog *cat, Interval *after, TimestampTz *next_due)
{
	Datum		args[2];
	int			total = 0;
	int			n = PRUNE_BATCH;

	args[0] = IntervalPGetDatum(after);
	args[1] = Int32GetDatum(WF_PRUNE_BATCH);
	for (int round = 0; round < PRUNE_MAX_BATCHES && n > 0; round++)
	{
		if (execute(cat, PLAN_WF_PRUNE, args, NULL, false) != SPI_OK_SELECT)
			elog(ERROR, "could not prune finished workflows");
		n = jobs_moved(JS_NONE);
		total += n;
	}
	if (execute(cat, PLAN_WF_PRUNE_NEXT, args, NULL, true) == SPI_OK_SELECT)
		earliest_due(next_due);
	return total;
}

/*
 * queue_workflow_steps
 *		The workflow job job_id is a step of (0: none), the role that pushed
 *		it, its number of dependencies, and its steps: n names, job ids and
 *		states.
 */
int64
queue_workflow_steps(ChancyCatalog *cat, int64 job_id, int *n, char ***names, int64 **ids,
					 char ***states, Oid *pushed_by, int64 *nedges)
{
	CatalogSql	sql;
	Datum		arg = Int64GetDatum(job_id);
	int64		workflow = 0;
	MemoryContext old;

	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_WF_STEPS, &arg, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read the steps of the workflow of job " INT64_FORMAT, job_id);
	old = MemoryContextSwitchTo(sql.caller);
	*n = (int) SPI_processed;
	*names = palloc(sizeof(char *) * Max(*n, 1));
	*ids = palloc(sizeof(int64) * Max(*n, 1));
	*states = palloc(sizeof(char *) * Max(*n, 1));
	for (int r = 0; r < *n; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		workflow = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		(*names)[r] = SPI_getvalue(tup, desc, 2);
		(*ids)[r] = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		(*states)[r] = SPI_getvalue(tup, desc, 4);
		*pushed_by = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		*nedges = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
	}
	MemoryContextSwitchTo(old);
	catalog_sql_end(&sql);
	return workflow;
}

/*
 * queue_workflow_grow
 *		Count n more steps in running workflow id, waiting of them waiting
 *		(which locks it, after the running step's row: the order of locks).
 *		Returns id.
 */
int64
queue_workflow_grow(ChancyCatalog *cat, int64 id, int n, int waiting)
{
	CatalogSql	sql;
	Datum		args[3];

	args[0] = Int64GetDatum(id);
	args[1] = Int32GetDatum(n);
	args[2] = Int32GetDatum(waiting);
	catalog_sql_begin(cat, true, &sql);
	if (execute(cat, PLAN_WF_GROW, args, NULL, false) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not add steps to workflow " INT64_FORMAT, id);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("workflow " INT64_FORMAT " is being cancelled", id),
				 errdetail("Steps cannot be added to it.")));
	catalog_sql_end(&sql);
	return id;
}

/*
 * queue_step_results
 *		The results of the dependencies of step job_id that succeeded, as a
 *		jsonb object {step: result}; with step, instead the result of that
 *		one (NULL if it did not succeed, *is_dep false if step job_id does
 *		not depend on it).  Read as the current user: code of another role
 *		that the step calls (a SECURITY DEFINER function) sees nothing.
 */
Datum
queue_step_results(ChancyCatalog *cat, int64 job_id, const char *step, bool *is_dep,
				   bool *isnull)
{
	CatalogSql	sql;
	Datum		args[2];
	char		nulls[2] = {' ', step ? ' ' : 'n'};
	Datum		result;
	bool		dep_null;

	args[0] = Int64GetDatum(job_id);
	args[1] = step ? CStringGetTextDatum(step) : (Datum) 0;
	/* as the caller: it reads only what row level security shows it */
	catalog_sql_begin(cat, false, &sql);
	if (execute(cat, PLAN_WF_RESULTS, args, nulls, true) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the results of the dependencies of job " INT64_FORMAT,
			 job_id);
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, step ? 3 : 1, isnull);
	if (is_dep)
		*is_dep = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
											 &dep_null));
	if (!*isnull)
		result = SPI_datumTransfer(result, false, -1);
	catalog_sql_end(&sql);
	return result;
}
