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

/* chancy.c: configuration */
extern char *chancy_databases;
extern char *chancy_queues;
extern int	chancy_max_executors;
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

/* queue.c: writing jobs */
extern int64 *queue_push(ChancyCatalog *cat, ArrayType *jobs, char **keys);

#endif							/* CHANCY_INTERNAL_H */
