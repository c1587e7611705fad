/*-------------------------------------------------------------------------
 *
 * chancy_internal.h
 *	  Declarations shared by the files of the chancy extension.
 *
 * src/README.md draws the processes and the job state machine.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHANCY_INTERNAL_H
#define CHANCY_INTERNAL_H

#include "fmgr.h"
#include "utils/elog.h"
#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "nodes/pg_list.h"
#include "access/htup.h"
#include "utils/array.h"

/*
 * Attributes of the chancy_job composite type, in the order chancy--1.0.sql
 * declares them (0-based).
 */
typedef enum JobAttr
{
	JA_NAME,
	JA_FUNCTION,
	JA_QUEUE,
	JA_KWARGS,
	JA_PRIORITY,
	JA_MAX_ATTEMPTS,
	JA_SCHEDULED_AT,
	JA_UNIQUE_KEY,
	JA_TIME_LIMIT,
	JA_MEMORY_LIMIT,
	JA_META,
	JOB_NATTS
} JobAttr;

/* PostgreSQL 16 folded the per-object ACL checks into object_aclcheck() */
#if PG_VERSION_NUM >= 160000
#define chancy_proc_aclcheck(proc, role, mode) \
	object_aclcheck(ProcedureRelationId, (proc), (role), (mode))
#else
#define chancy_proc_aclcheck(proc, role, mode) \
	pg_proc_aclcheck((proc), (role), (mode))
#endif

/*
 * Shared memory: the launcher, one supervisor per database, the executors.
 *
 * chancy_shared->lock protects the slots.  A database slot belongs to the
 * launcher (it sets dboid); an executor slot to its database's supervisor
 * (it sets dboid and queue, and frees it when the executor has stopped).  A
 * process fills in its own pid and latch when it starts and clears them when
 * it exits.
 */
#define CHANCY_MAX_DATABASES 32
#define CHANCY_WAIT_CVS 64		/* chancy_wait sleeps on cv[job id % this] */

typedef struct ChancyDatabase
{
	Oid			dboid;			/* InvalidOid: free */
	pid_t		pid;			/* its supervisor, or 0 */
	Latch	   *latch;
	uint64		generation;		/* bumped each time a supervisor is started */
	bool		no_extension;	/* the supervisor found no chancy there */
	bool		blocked;		/* DROP DATABASE in progress: keep out */
} ChancyDatabase;

typedef struct ChancyExecutor
{
	Oid			dboid;			/* InvalidOid: free */
	char		queue[NAMEDATALEN];
	uint64		generation;		/* bumped each time the slot is assigned */
	pid_t		pid;			/* 0 until the executor has started */
	Latch	   *latch;
	bool		idle;			/* looking for work or sleeping */
	bool		stop;			/* asked to exit after its current job */
	TimestampTz paused_until;	/* queue paused until then (0: not) */
	double		backoff_base;	/* retry backoff of its queue, in seconds */
	double		backoff_factor;
	double		backoff_max;
	int64		time_limit_ms;	/* its queue's default time limit, or 0 */
	bool		isolated;		/* its queue runs C jobs in a forked child */
	int64		cancel_job;		/* chancy_cancel() asked to stop this job */
	int64		claim;			/* token of its current batch of jobs */
	int64		job_id;			/* the job it runs, or 0 */
	int64		jobs_done;
	TimestampTz started_at;
} ChancyExecutor;

typedef struct ChancyShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	bool		recheck;		/* an extension appeared: retry databases */
	bool		standby;		/* the server is a standby: nothing runs */
	pg_atomic_uint64 claims;	/* claim tokens */
	ConditionVariable job_done[CHANCY_WAIT_CVS];
	ChancyDatabase dbs[CHANCY_MAX_DATABASES];
	int			nexecutors;
	ChancyExecutor executors[FLEXIBLE_ARRAY_MEMBER];
} ChancyShared;

extern ChancyShared *chancy_shared;

/* chancy.c: configuration */
extern char *chancy_databases;
extern char *chancy_queues;
extern int	chancy_max_executors;
extern int	chancy_memory_limit;
extern int	chancy_max_crashes;
extern int	chancy_executor_max_growth;
extern int	chancy_batch_size;
extern int	chancy_prune_after;
extern bool parse_queues(const char *value, List **names, List **concurrencies,
						 const char **why);

/* job.c: where the extension lives, job values, definitions, functions */
typedef struct ChancyCatalog
{
	Oid			nsp;			/* the extension's schema */
	char	   *nspname;		/* ... quoted, for building queries */
	Oid			jobs_relid;		/* chancy_jobs */
	Oid			defs_relid;		/* chancy_job_definitions */
	Oid			job_typid;		/* the chancy_job composite */
	Oid			owner;			/* owner of chancy_jobs: writes run as it */
} ChancyCatalog;

extern ChancyCatalog *chancy_catalog(Oid nsp);
extern ChancyCatalog *chancy_catalog_for(FunctionCallInfo fcinfo);
extern void job_defaults(const char *name, Datum *values, bool *nulls);
extern void job_check_attr(JobAttr attr, Datum value, bool isnull);
extern void job_check(Datum *values, bool *nulls);
extern void job_authorize(Datum *values, bool *nulls);
extern char *job_resolve_function(const char *name, const char *spec);
extern bool job_function_is_symbol(const char *spec);
extern Oid	job_function_oid(const char *spec);
extern uint64 job_functions_generation(void);
extern bool job_definition(const char *name, Datum *values, bool *nulls);
extern void job_forget_definitions(void);
extern int	job_attr_by_name(const char *name);
extern void job_deform(ChancyCatalog *cat, HeapTupleHeader job,
					   Datum *values, bool *nulls);
extern Datum job_form(ChancyCatalog *cat, Datum *values, bool *nulls);
extern void job_define(ChancyCatalog *cat, Datum *values, bool *nulls);
extern void job_undefine(ChancyCatalog *cat, const char *name);
extern void chancy_become_owner(ChancyCatalog *cat, Oid *save_userid,
								int *save_sec_context);

/* queue.c: queue operations */
extern int64 *queue_push(ChancyCatalog *cat, ArrayType *jobs, char **keys);

/* A job claimed by an executor. */
typedef struct ClaimedJob
{
	int64		id;
	char	   *name;
	char	   *function;
	char	   *queue;
	Datum		kwargs;			/* jsonb */
	int32		attempt;		/* this run's number, from 1 */
	int32		max_attempts;
	Oid			pushed_by;
	int64		claim;
	int64		time_limit_ms;	/* 0: none */
	int64		memory_limit;	/* bytes, 0: none */
	int32		priority;
} ClaimedJob;

extern int	statement_settings(void);
extern int	queue_claim(ChancyCatalog *cat, const char *queue, int64 claim, int max,
						ClaimedJob **jobs);
extern List *queue_claim_plan(ChancyCatalog *cat, const char *queue);
extern bool queue_succeeded(ChancyCatalog *cat, int64 claim, int n, Datum *ids,
							Datum *results, bool *result_nulls, Datum *completed_at);
extern const char *queue_failed(ChancyCatalog *cat, ClaimedJob *job,
								ErrorData *edata, double backoff);
extern bool queue_requeue(ChancyCatalog *cat, ClaimedJob *job, const char *why);
extern int	queue_recover(ChancyCatalog *cat, int max_crashes, ArrayType *live_claims);
extern char *queue_cancel(ChancyCatalog *cat, int64 id, Oid role);
extern int	queue_prune(ChancyCatalog *cat, Interval *prune_after, int batch);
extern TimestampTz queue_next_due(ChancyCatalog *cat, const char *queue);

/* limits.c: time and memory limits of a job run in process */
#define LIMIT_NONE 0
#define LIMIT_TIME 1
#define LIMIT_MEMORY 2
extern void limits_init(void);
extern void limits_arm(int64 time_limit_ms, int64 memory_limit);
extern int	limits_disarm(void);
extern void limits_explain(ErrorData *edata, int hit, int64 time_limit_ms,
						   int64 memory_limit);
extern int64 limits_data_size(void);

/* isolated.c: C jobs run in a forked child */
extern Datum isolated_call(FmgrInfo *flinfo, Datum kwargs, Oid rettype,
						   bool *isnull, int64 time_limit_ms, int64 memory_limit);

/* wakeup.c: waking workers at commit, and keeping them out of the way */
extern void chancy_wakeup_init(void);
extern void wakeup_queue_at_commit(const char *queue, int njobs);
extern void wakeup_supervisor_at_commit(void);
extern void wakeup_job_done(int64 job_id);
extern void wakeup_cancel_at_commit(int64 job_id);

/* launcher.c, supervisor.c, executor.c: the background workers */
struct BackgroundWorkerHandle;
extern bool chancy_start_worker(const char *function, const char *name,
								int slot, uint64 generation,
								struct BackgroundWorkerHandle **handle);
extern Oid	chancy_extension_schema(void);
extern void chancy_register_launcher(void);
extern PGDLLEXPORT void chancy_launcher_main(Datum arg);
extern PGDLLEXPORT void chancy_supervisor_main(Datum arg);
extern PGDLLEXPORT void chancy_executor_main(Datum arg);
extern ClaimedJob *executor_current_job(void);

#endif							/* CHANCY_INTERNAL_H */
