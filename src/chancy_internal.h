/*-------------------------------------------------------------------------
 *
 * chancy_internal.h
 *	  Declarations shared by the files of the chancy extension, one section
 *	  per file.
 *
 * src/README.md draws the processes, the slot states, who wakes whom, and
 * the job states.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHANCY_INTERNAL_H
#define CHANCY_INTERNAL_H

#include "fmgr.h"
#include "access/htup.h"
#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/elog.h"

/*
 * The SDK for C jobs.  Its chancy_current_job() and chancy_parent_results()
 * are called chancy_sdk_*() here: they are also the C symbols of the SQL
 * functions of those names (control.c, workflow.c).
 */
#define chancy_current_job chancy_sdk_current_job
#define chancy_parent_results chancy_sdk_parent_results
#include "chancy.h"
#undef chancy_current_job
#undef chancy_parent_results

/* The SQL objects this library works with: chancy--1.1.sql. */
#define CHANCY_SQL_VERSION "1.1"

#include "compat.h"

/* ----------------------------------------------------------------------
 * chancy.c: the settings
 * ----------------------------------------------------------------------
 */
extern char *chancy_databases;
extern char *chancy_queue_list;
extern int	chancy_max_executors;
extern int	chancy_time_limit;		/* ms, 0: none */
extern int	chancy_memory_limit;	/* kB, 0: none */
extern int	chancy_max_crashes;
extern int	chancy_executor_max_growth; /* kB */
extern int	chancy_batch_size;
extern int	chancy_prune_after;		/* s, -1: never */
extern int	chancy_max_limit_keys;
extern bool chancy_track_costs;
extern int	chancy_max_stats_entries;
extern int	chancy_stats_retention;	/* minutes */
extern bool parse_queues(const char *value, List **names, List **concurrencies,
						 const char **why);
extern bool chancy_queue_configured(const char *queue);

/* ----------------------------------------------------------------------
 * slots.c: shared memory, the worker slots and their states, signalling
 * ----------------------------------------------------------------------
 */
#define CHANCY_MAX_DATABASES 32
#define CHANCY_WAIT_CVS 64		/* chancy_wait sleeps on cv[job id % this] */

/*
 * The state of a worker slot.  See the drawing in src/README.md; every
 * transition is a function of slots.c that asserts the state it leaves.
 * Executor slots use FREE, STARTING, RUNNING, STOPPING, LEAVING, EXITED;
 * database slots (one supervisor each) use FREE, IDLE, NO_EXTENSION,
 * BLOCKED, STARTING, RUNNING, STOPPING, LEAVING.
 */
typedef enum SlotState
{
	SLOT_FREE,					/* unused */
	SLOT_IDLE,					/* database: served, no supervisor (yet) */
	SLOT_NO_EXTENSION,			/* database: no chancy there, no supervisor */
	SLOT_BLOCKED,				/* database: DDL needs it alone, no worker */
	SLOT_STARTING,				/* worker registered, not attached yet */
	SLOT_RUNNING,				/* worker attached and working */
	SLOT_STOPPING,				/* worker asked to leave after its job */
	SLOT_LEAVING,				/* executor: on its way out, for good;
								 * database: supervisor leaving for DDL */
	SLOT_EXITED					/* executor: gone; its jobs not yet checked */
} SlotState;

/* What a worker is; chooses its entry point and its name. */
typedef enum ChancyWorkerKind
{
	WORKER_SUPERVISOR,
	WORKER_EXECUTOR
} ChancyWorkerKind;

/* What a started worker is given, in bgw_extra: which start it is. */
typedef struct ChancyWorkerParams
{
	uint64		generation;		/* must still be its slot's generation */
} ChancyWorkerParams;

/* A database slot: one database served, and its supervisor. */
typedef struct ChancyDatabase
{
	SlotState	state;
	Oid			dboid;
	uint64		generation;		/* bumped at each supervisor start */
	pid_t		pid;			/* its supervisor, while attached */
	Latch	   *latch;
	int			declared;		/* total concurrency of its queues */
	bool		said_missing;	/* "no extension" was logged */
	uint64		extensions_seen;	/* ChancyShared.extensions when its
									 * supervisor attached */
	pg_atomic_uint32 wake_on_finish;	/* the idle supervisor asks to be woken
										 * by the next jobs that finish (no lock) */
} ChancyDatabase;

/*
 * An executor slot.  Assignment and state (state, dboid, queue,
 * generation, pid, latch) change under chancy_shared->lock; what the
 * executor does (the fields after mutex) under its mutex, since they change
 * with every job.
 */
typedef struct ChancyExecutor
{
	SlotState	state;
	Oid			dboid;
	char		queue[NAMEDATALEN];
	uint64		generation;		/* bumped each time the slot is assigned */
	pid_t		pid;
	Latch	   *latch;
	TimestampTz started_at;

	slock_t		mutex;
	bool		idle;			/* looking for work or sleeping */
	bool		paused;			/* sleeping because its queue is paused */
	bool		nudged;			/* its queue changed: look again first */
	bool		woken;			/* its latch was set for work (a lock wait
								 * may reset the latch, not this) */
	int64		claim;			/* token of its current claim */
	int64		job_id;			/* the job it executes, or 0 */
	int64		cancel_job;		/* chancy_cancel() of the job it executes */
	int64		jobs_done;
	TimestampTz looked_at;		/* when it last looked for work */
} ChancyExecutor;

typedef struct ChancyShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	uint64		extensions;		/* CREATE or ALTER EXTENSION chancy commits */
	bool		standby;		/* the server is a standby: nothing runs */
	pg_atomic_uint64 claims;	/* claim tokens, never repeated */
	ConditionVariable job_done[CHANCY_WAIT_CVS];
	ChancyDatabase dbs[CHANCY_MAX_DATABASES];
	int			nexecutors;
	ChancyExecutor executors[FLEXIBLE_ARRAY_MEMBER];
} ChancyShared;

struct BackgroundWorkerHandle;

/* A copy of one slot, for chancy_worker_info() and the views. */
typedef struct SlotInfo
{
	const char *kind;
	Oid			dboid;
	char		queue[NAMEDATALEN];
	pid_t		pid;
	const char *state;
	int64		job_id;
	int64		jobs_done;
	TimestampTz started_at;
	TimestampTz looked_at;
} SlotInfo;

extern void slots_init(void);
extern const char *slot_state_name(SlotState state);
extern bool slots_start_worker(ChancyWorkerKind kind, const char *name, int slot,
							   uint64 generation,
							   struct BackgroundWorkerHandle **handle);
extern uint64 slots_worker_generation(void);

/* the launcher */
extern void slots_launcher_attach(void);
extern void slots_set_standby(bool standby);
extern void slots_wake_launcher(bool extension_changed);
extern bool slots_db_missed_extension(int i);
extern int	slots_db_find(Oid dboid);
extern int	slots_db_assign(Oid dboid);
extern void slots_db_release(int i);
extern SlotState slots_db_state(int i, Oid *dboid);
extern uint64 slots_db_start(int i);
extern void slots_db_start_failed(int i, uint64 generation);
extern void slots_db_stop(int i);

/* a supervisor */
extern Oid	slots_db_database(int i, uint64 generation);
extern bool slots_db_attach(int i, uint64 generation);
extern void slots_db_detach(bool no_extension);
extern void slots_db_declare(int concurrency);
extern bool slots_db_say_missing(bool missing);
extern int	slots_db_declared_elsewhere(void);
extern bool slots_db_served(void);
extern int	slots_executor_assign(const char *queue, uint64 *generation);
extern void slots_executor_start_failed(int i, uint64 generation);
extern void slots_executors_count(const char *queue, int *running, int *stopping,
								  int *leaving);
extern int64 slots_jobs_done(void);
extern bool slots_executor_stop_one(const char *queue);
extern bool slots_executor_unstop_one(const char *queue);
extern void slots_executors_stop_all(bool now);
extern void slots_executors_stop_except(List *queues);
extern bool slots_executors_alive(void);
extern void slots_executors_free_exited(void);
extern bool slots_executor_reap(int i, uint64 generation);
extern bool slots_executors_exited(void);
extern List *slots_live_claims(void);
extern void slots_claims_above(int64 claim);

/* an executor */
extern Oid	slots_executor_database(int i, uint64 generation);
extern ChancyExecutor *slots_executor_attach(int i, uint64 generation);
extern void slots_executor_detach(void);
extern bool slots_executor_leaving(void);
extern int64 slots_new_claim(void);
extern void slots_idle(bool idle, bool paused);
extern bool slots_take_nudge(void);
extern bool slots_take_wakeup(void);
extern bool slots_job_begin(int64 job_id);
extern void slots_job_end(bool counted);
extern bool slots_cancel_is_mine(void);

/* any backend of a database */
extern void slots_wake_executors(const char *queue, int njobs);
extern void slots_nudge_executors(const char *queue);
extern void slots_wake_supervisor(void);
extern void slots_wake_all_supervisors(void);
extern void slots_db_wake_on_finish(void);
extern void slots_jobs_finished(void);
extern void slots_cancel_job(int64 claim, int64 job_id);
extern pid_t slots_claim_pid(int64 claim);
extern void slots_job_done(int64 job_id);
extern ConditionVariable *slots_job_cv(int64 job_id);
extern void slots_db_block(Oid dboid);
extern void slots_db_unblock(Oid dboid);
extern List *slots_snapshot(bool all_databases);

/* ----------------------------------------------------------------------
 * ledger.c: which job each executor was executing, kept across a crash
 * ----------------------------------------------------------------------
 */
extern Size ledger_shmem_size(void);
extern void ledger_startup(void);
extern void ledger_executor_init(int slot);
extern void ledger_executing(Oid dboid, int64 claim, int64 job_id);
extern void ledger_done(void);
extern int64 ledger_slot_executing(int slot, Oid dboid);
extern List *ledger_take_crashed(Oid dboid, bool *known);

/* ----------------------------------------------------------------------
 * catalog.c: where chancy is installed, and how it runs its own SQL
 * ----------------------------------------------------------------------
 */
typedef struct ChancyCatalog
{
	Oid			nsp;			/* the extension's schema */
	char	   *nspname;		/* ... quoted, for building statements */
	Oid			jobs_relid;		/* chancy_jobs */
	Oid			defs_relid;		/* chancy_job_definitions */
	Oid			queues_relid;	/* chancy_queues */
	Oid			job_typid;		/* the chancy_job composite */
	Oid			command_fn;		/* chancy_run_command(jsonb) */
	Oid			owner;			/* owner of chancy's tables */
	uint64		generation;		/* changes whenever the above change */
	uint64		defs_generation;	/* ... and whenever definitions may have */
} ChancyCatalog;

/* What chancy_extension() found in this database. */
typedef enum ExtensionState
{
	EXTENSION_MISSING,
	EXTENSION_OLD,				/* installed at another SQL version */
	EXTENSION_READY
} ExtensionState;

/* A bracket around chancy's own statements: see catalog_sql_begin(). */
typedef struct CatalogSql
{
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;
	bool		as_owner;
	MemoryContext caller;		/* where results outlive the bracket */
} CatalogSql;

extern ExtensionState chancy_extension(Oid *nsp, char **version);
extern ExtensionState catalog_recover_error(Oid *nsp);
extern ChancyCatalog *chancy_catalog(Oid nsp);
extern ChancyCatalog *chancy_catalog_for(FunctionCallInfo fcinfo);
extern int	catalog_settings(void);
extern void catalog_warn_unlisted(void);
extern void catalog_sql_begin(ChancyCatalog *cat, bool as_owner, CatalogSql *sql);
extern void catalog_sql_end(CatalogSql *sql);
struct _SPI_plan;
extern bool catalog_writing;
extern uint64 catalog_identity(void);
extern int	catalog_own_write(struct _SPI_plan *plan, Datum *args, const char *nulls);
extern void catalog_forget_queues(void);
extern bool catalog_queue_declared(ChancyCatalog *cat, const char *queue);

/* ----------------------------------------------------------------------
 * function.c: the functions jobs run
 * ----------------------------------------------------------------------
 */

/* A job function, resolved and ready to call. */
typedef struct JobFunction
{
	Oid			oid;			/* InvalidOid for a 'library:symbol' */
	Oid			rettype;		/* InvalidOid for a 'library:symbol' */
	int16		typlen;			/* of rettype */
	bool		typbyval;
	bool		is_c;			/* C code: may run in an isolated child */
	FmgrInfo	flinfo;
} JobFunction;

extern bool function_is_symbol(const char *spec);
extern Oid	function_resolve(const char *name, const char *spec, char **canonical);
extern void function_check_symbol(const char *spec);
extern void function_check_execute(Oid fn, Oid role, const char *job);
extern Oid	function_owner(Oid fn);
extern int64 function_digest(Oid fn);
extern Oid	function_here(const char *spec, Oid oid, Oid owner, uint64 catalog,
						  int64 digest);
extern JobFunction *function_for_job(const char *spec, Oid oid, Oid owner,
									 uint64 catalog, int64 digest, Oid role);
extern Datum function_result_jsonb(JobFunction *fn, Datum value, bool *isnull);

/* ----------------------------------------------------------------------
 * job.c: job values and definitions
 * ----------------------------------------------------------------------
 */

/*
 * Attributes of the chancy_job composite type, in the order chancy--1.1.sql
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
	JA_LIMIT_KEYS,
	JOB_NATTS
} JobAttr;

/* A job value, split into its attributes, and what a push adds to it. */
typedef struct JobValue
{
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];
	Oid			function_oid;	/* set by job_authorize() */
	Oid			function_owner; /* likewise, its owner */
	int64		function_digest;	/* likewise, see function_digest() */
} JobValue;

/* limit keys of a job: at most this many, each shorter than NAMEDATALEN */
#define CHANCY_MAX_LIMIT_KEYS 8
/* longest unique key: it must fit in a btree index entry */
#define CHANCY_MAX_UNIQUE_KEY 2048
/* limits: interval in ms, from 1 ms to 366 days (the CHECKs of the SQL script) */
#define CHANCY_MAX_TIME_LIMIT_MS INT64CONST(31622400000)

extern int64 interval_ms(const Interval *iv);
extern void job_check_attr(JobAttr attr, Datum value, bool isnull);
extern void job_check(JobValue *job);
extern void job_defaults(ChancyCatalog *cat, const char *name, JobValue *job);
extern void job_authorize(ChancyCatalog *cat, JobValue *job);
extern void job_check_command(ChancyCatalog *cat, JobValue *job);
extern void job_fill_limit_keys(JobValue *job);
extern int	job_attr_by_name(const char *name);
extern void job_deform(ChancyCatalog *cat, HeapTupleHeader tuple, JobValue *job);
extern JobValue *api_prepare_jobs(ChancyCatalog *cat, Datum *elems, bool *elemnulls, int n,
								  char ***keys, const char *what);
extern int	chancy_max_workflow_steps;
extern Jsonb *workflow_parent_results(ChancyCatalog *cat);
extern Datum job_form(ChancyCatalog *cat, JobValue *job);
extern void job_define(ChancyCatalog *cat, FunctionCallInfo fcinfo, JobValue *result);
extern void job_undefine(ChancyCatalog *cat, const char *name);
extern void job_forget_definitions(void);

/* ----------------------------------------------------------------------
 * stats.c: what each job cost, counters, histograms and gauges
 * ----------------------------------------------------------------------
 */
#define STATS_NAME_LEN 128		/* of a job name in the counters' key */

/* What is counted per database, role, queue and job name. */
typedef enum StatsCounter
{
	STATS_NONE = -1,
	STATS_PUSHED,
	STATS_STARTED,
	STATS_SUCCEEDED,
	STATS_FAILED,				/* for good */
	STATS_RETRIED,				/* failed, to run again */
	STATS_CANCELLED,
	STATS_CRASHED,				/* its executor died running it */
	STATS_NCOUNTERS
} StatsCounter;

/* chancy_state, in its order */
typedef enum JobState
{
	JS_NONE = -1,
	JS_PENDING,
	JS_RUNNING,
	JS_RETRYING,
	JS_SUCCEEDED,
	JS_FAILED,
	JS_CANCELLED,
	JS_NSTATES
} JobState;

/* What a job run cost (the columns of chancy_jobs of the same names). */
#define JOB_COST_FIGURES 7
typedef struct JobCost
{
	bool		valid;			/* measured */
	int64		run_us;
	int64		cpu_user_us;
	int64		cpu_sys_us;
	int64		mem_peak_bytes;
	int64		wal_bytes;
	int64		blks_hit;
	int64		blks_read;
} JobCost;

/* A change to the counters of one entry, made at commit (wakeup.c). */
typedef struct StatsChange
{
	Oid			role;
	char		queue[NAMEDATALEN];
	char		name[STATS_NAME_LEN];
	int64		counts[STATS_NCOUNTERS];
	int64		states[JS_NSTATES];
	void	   *entry;			/* its entry, found when it was made... */
	uint64		generation;		/* ... good while the entries' generation is */
} StatsChange;

struct ClaimedJob;
struct rusage;
extern Size stats_shmem_size(void);
extern void stats_shmem_init(LWLock *lock);
extern JobState stats_state(const char *state);
extern JobState stats_waiting_state(int32 attempts);
extern void stats_apply(const StatsChange *c, TransactionId xid);
extern void stats_committing(TransactionId xid);
extern void stats_committed(void);
extern void stats_at_commit(Oid role, const char *queue, const char *name,
							StatsCounter counter, JobState from, JobState to, int64 n);
extern void stats_job_moved(struct ClaimedJob *job);
extern void stats_job_done(struct ClaimedJob *job);
extern void stats_cost_begin(void);
extern void stats_cost_end(JobCost *cost);
extern void stats_cost_child(const struct rusage *ru);
extern void stats_cost_forget(void);
extern void stats_cost_figures(const JobCost *cost, int64 figures[JOB_COST_FIGURES]);
extern Datum stats_cost_array(const JobCost *cost, bool *isnull);
extern void stats_invalidate_gauges(Oid dboid);
extern bool stats_gauges_valid(void);
extern bool stats_count_gauges(ChancyCatalog *cat);
extern void stats_forget_database(Oid dboid);
extern long stats_history_if_due(ChancyCatalog *cat);

/* ----------------------------------------------------------------------
 * queue.c: the statements chancy runs on chancy_jobs
 * ----------------------------------------------------------------------
 */

/* A job an executor claimed. */
typedef struct ClaimedJob
{
	int64		id;
	char	   *name;
	char	   *function;
	Oid			function_oid;	/* as recorded: see function_here() */
	Oid			function_owner;
	uint64		function_catalog;
	int64		function_digest;
	char	   *queue;
	Datum		kwargs;			/* jsonb */
	int32		attempt;		/* the number of this run, from 1 */
	int32		max_attempts;
	Oid			pushed_by;
	int64		claim;
	bool		started;		/* marked running by the claim */
	int64		time_limit_ms;	/* its own, else its queue's, else the
								 * setting's; 0: none */
	int64		memory_limit;	/* bytes, likewise */
	int32		priority;
	bool		command;		/* runs chancy_run_command: see command.c */
	Datum		limit_keys;		/* text[], or 0: none (see flow.c) */
	List	   *flow_keys;		/* the keys whose slots it holds */
	bool		ran;			/* its function was called */
	TimestampTz due;			/* its scheduled_at when claimed */
	TimestampTz started_at;		/* when its run started */
	TimestampTz ended_at;		/* ... and ended */
	JobCost		cost;			/* what its run cost (stats.c) */
	StatsCounter ended;			/* how its run ended, STATS_NONE: not yet */
	int64		workflow_id;	/* the workflow it is a step of, 0: none */
} ClaimedJob;

/* A queue's settings, as the claim reads them. */
typedef struct QueueSettings
{
	int64		time_limit_ms;	/* 0: none */
	int64		memory_limit;	/* 0: none */
	double		backoff_base;	/* seconds */
	double		backoff_factor;
	double		backoff_max;	/* seconds */
	bool		isolated;
} QueueSettings;

/* What a claim found. */
typedef struct ClaimResult
{
	int			njobs;
	int			skipped;		/* ready jobs it saw but left */
	QueueSettings queue;
	bool		queue_exists;	/* only when njobs == 0 */
	TimestampTz next_due;		/* likewise: next scheduled job, or 0 */
	TimestampTz paused_until;	/* likewise: 0 if not paused */
	int			parked;			/* claimed jobs parked by flow control */
	List	   *parked_keys;	/* the keys they are parked on */
} ClaimResult;

/* How the executor's exit or a supervisor gives jobs back: see queue.c */
typedef struct ReleaseResult
{
	List	   *finished;		/* ids of jobs that reached a final state */
	int			released;
} ReleaseResult;

extern int64 *queue_push(ChancyCatalog *cat, JobValue *jobs, int n, char **keys);

/* The workflow columns of the steps a push inserts (arrays of n). */
typedef struct StepColumns
{
	int			n;
	int64		workflow_id;
	Datum		names;			/* text[] */
	Datum		deps_left;		/* int4[] */
	Datum		policies;		/* text[]: on_dep_failure */
} StepColumns;

/* A workflow step that ended (succeeded, failed for good, or cancelled). */
typedef struct StepEnd
{
	int64		job_id;
	int64		workflow_id;
	bool		failed;			/* failed or cancelled */
	bool		was_waiting;	/* it was cancelled while it waited */
} StepEnd;

extern int64 *queue_push_steps(ChancyCatalog *cat, JobValue *jobs, int n, char **keys,
							   const StepColumns *steps);
extern void queue_steps_ended(ChancyCatalog *cat, const StepEnd *ends, int n);
extern int64 queue_workflow_push(ChancyCatalog *cat, const char *name, int total,
								 int waiting);
extern void queue_workflow_edges(ChancyCatalog *cat, int64 workflow_id, Datum *parents,
								 Datum *children, int n);
extern List *queue_workflow_held(ChancyCatalog *cat, int64 id);
extern bool queue_workflow_cancel(ChancyCatalog *cat, int64 id, Oid role);
extern int	queue_workflow_retry(ChancyCatalog *cat, int64 id);
extern int64 queue_workflow_steps(ChancyCatalog *cat, int64 job_id, int *n, char ***names,
								  int64 **ids, char ***states, Oid *pushed_by, int64 *nedges);
extern int64 queue_workflow_grow(ChancyCatalog *cat, int64 id, int n, int waiting);
extern Datum queue_step_results(ChancyCatalog *cat, int64 job_id, const char *step,
								bool *is_dep, bool *isnull);
extern void queue_claim(ChancyCatalog *cat, const char *queue, int64 claim,
						int max_jobs, ArrayType *short_functions,
						ClaimedJob **jobs, ClaimResult *result);
extern List *queue_claim_plan(ChancyCatalog *cat, const char *queue);
extern int	queue_succeeded(ChancyCatalog *cat, int64 claim, int n, Datum *ids,
							Datum *results, bool *result_nulls, Datum *started_at,
							Datum *completed_at, JobCost *costs);
extern const char *queue_failed(ChancyCatalog *cat, ClaimedJob *job,
								ErrorData *edata, double backoff,
								TimestampTz started_at);
extern bool queue_cancelled(ChancyCatalog *cat, ClaimedJob *job, bool ran,
							Oid by, TimestampTz started_at);
extern void queue_release(ChancyCatalog *cat, ArrayType *claims, ArrayType *ids,
						  ArrayType *guilty, const char *why, ReleaseResult *result);
extern List *queue_claims_in_use(ChancyCatalog *cat);
extern List *queue_cancel_requests(ChancyCatalog *cat);
extern bool queue_cancel(ChancyCatalog *cat, int64 id, Oid role, int64 *claim);
extern bool queue_retry(ChancyCatalog *cat, int64 id, int64 *holder, char **key);
extern int	queue_retry_failed(ChancyCatalog *cat, const Datum *filter, const bool *nulls,
							   int max_jobs, Oid role, bool all, int64 *skipped);
extern int	queue_prune(ChancyCatalog *cat, TimestampTz *next_due);
extern int64 *queue_push_checked(ChancyCatalog *cat, Datum *jobs, int n);
extern int64 queue_push_refused(ChancyCatalog *cat, Datum job, Oid pushed_by,
								ErrorData *edata);
extern bool queue_run_other(ChancyCatalog *cat, int64 *ids, Oid *functions, int n);
extern int	queue_unpark(ChancyCatalog *cat, const char *key, int n, bool *rest,
						 int32 *priority, int64 *id);
extern List *queue_parked_keys(ChancyCatalog *cat);

/* ----------------------------------------------------------------------
 * flow.c: flow control, limits on the keys jobs hold
 * ----------------------------------------------------------------------
 */
extern Size flow_shmem_size(void);
extern void flow_shmem_init(LWLock *lock);
extern int	flow_take(ChancyCatalog *cat, const char *queue, ClaimedJob **jobs, int n,
					  List **parked, List **park_keys);
extern void flow_give(ClaimedJob **jobs, int from, int to);
extern void flow_parked(List *keys);
extern List *flow_unpark(ChancyCatalog *cat, long *wait_ms);
extern void flow_unparked(List *released);
extern void flow_find_parked(ChancyCatalog *cat);
extern void flow_forget_database(Oid dboid);
extern void flow_changed(void);

/* ----------------------------------------------------------------------
 * wakeup.c: what a transaction asks for at commit
 * ----------------------------------------------------------------------
 */
extern void wakeup_queue_at_commit(const char *queue, int njobs);
extern void wakeup_queues_changed_at_commit(void);
extern void wakeup_supervisor_at_commit(void);
extern void wakeup_limits_at_commit(void);
extern void wakeup_launcher_at_commit(void);
extern void wakeup_cancel_at_commit(int64 job_id, int64 claim);
extern void wakeup_done_at_commit(int64 job_id);
extern void wakeup_self_cancel(int64 job_id, Oid role);
extern void wakeup_stats_at_commit(const StatsChange *change);
extern void wakeup_recount_at_commit(void);
extern Oid	wakeup_take_self_cancel(int64 job_id);

/* ----------------------------------------------------------------------
 * ddl.c: the utility commands that concern chancy's workers
 * ----------------------------------------------------------------------
 */
extern void chancy_ddl_init(void);

/* ----------------------------------------------------------------------
 * limits.c: what stops a job (limits, cancel, shutdown), non-negotiably
 * ----------------------------------------------------------------------
 */
typedef enum JobStop
{
	STOP_NONE,
	STOP_TIME_LIMIT,
	STOP_MEMORY_LIMIT,
	STOP_CANCEL,
	STOP_SHUTDOWN
} JobStop;

extern void limits_init(void);
extern void limits_watch(bool on);
extern void limits_job_begin(int64 time_limit_ms, int64 memory_limit);
extern JobStop limits_job_end(void);
extern void limits_stop(JobStop why);
extern JobStop limits_stopped(void);
extern void limits_explain(ErrorData *edata, JobStop why, int64 time_limit_ms,
						   int64 memory_limit);
extern void limits_time_error(int64 time_limit_ms) pg_attribute_noreturn();
extern int64 limits_data_size(void);
extern int64 limits_peak_data_size(void);

/* ----------------------------------------------------------------------
 * isolated.c: C jobs run in a forked child
 * ----------------------------------------------------------------------
 */
extern Datum isolated_call(JobFunction *fn, Datum kwargs, bool *isnull,
						   int64 time_limit_ms, int64 memory_limit);

/* ----------------------------------------------------------------------
 * cron.c: cron expressions and their next fire time in a time zone
 * ----------------------------------------------------------------------
 */
struct pg_tz;
extern struct pg_tz *chancy_lookup_time_zone(const char *name);
extern const char *chancy_zone_name(const char *name);
extern TimestampTz chancy_cron_next_time(const char *expr, TimestampTz after,
										 const char *tz_name);

/* ----------------------------------------------------------------------
 * schedule.c: recurring jobs
 * ----------------------------------------------------------------------
 */
extern long schedule_fire_due(ChancyCatalog *cat);

/* ----------------------------------------------------------------------
 * command.c: jobs that run a SQL command at top level
 * ----------------------------------------------------------------------
 */
extern Datum command_check(Datum kwargs);
extern Datum command_run(Datum kwargs);

/* ----------------------------------------------------------------------
 * launcher.c, supervisor.c, executor.c: the background workers
 * ----------------------------------------------------------------------
 */
extern void chancy_register_launcher(void);
extern PGDLLEXPORT void chancy_launcher_main(Datum arg);
extern PGDLLEXPORT void chancy_supervisor_main(Datum arg);
extern PGDLLEXPORT void chancy_executor_main(Datum arg);

#endif							/* CHANCY_INTERNAL_H */
