/*-------------------------------------------------------------------------
 *
 * chancy.h
 *	  What a C job needs from chancy: the job it is running, its keyword
 *	  arguments read as C values, and in a workflow step its parents'
 *	  results.  Header only: a job library needs no link
 *	  to chancy.so.
 *
 * A job is an ordinary V1 function taking one jsonb:
 *
 *		#include "postgres.h"
 *		#include "fmgr.h"
 *		#include "extension/chancy/chancy.h"
 *
 *		PG_MODULE_MAGIC;
 *		PG_FUNCTION_INFO_V1(greet);
 *
 *		Datum
 *		greet(PG_FUNCTION_ARGS)
 *		{
 *			Jsonb	   *kwargs = PG_GETARG_JSONB_P(0);
 *
 *			elog(LOG, "Hello, %s!", chancy_kwarg_text(kwargs, "name", "World"));
 *			PG_RETURN_VOID();
 *		}
 *
 * It returns void or jsonb (stored in chancy_jobs.result; other types are
 * stored as their text).  A job whose function is a 'library:symbol' rather
 * than a SQL function must return jsonb, or PG_RETURN_NULL()/PG_RETURN_VOID().
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHANCY_H
#define CHANCY_H

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

/* The job an executor is running. */
typedef struct ChancyJobInfo
{
	int64		id;				/* chancy_jobs.id */
	const char *name;			/* the job's name as pushed */
	const char *queue;
	int32		attempt;		/* 1 on the first run, 2 on the first retry... */
	int32		max_attempts;
} ChancyJobInfo;

/*
 * chancy_current_job
 *		The job being run, or NULL when the function was called directly
 *		(SELECT greet('{}')) rather than by an executor.
 */
static inline const ChancyJobInfo *
chancy_current_job(void)
{
	void	  **var = (void **) find_rendezvous_variable("chancy_current_job");

	return (const ChancyJobInfo *) *var;
}

/*
 * chancy_parent_results
 *		In a workflow step: {step: result} of the steps it depends on that
 *		succeeded ({} in a job that is not a step); NULL when the function
 *		was called directly rather than by an executor.
 */
typedef Jsonb *(*ChancyParentResultsFn) (void);

static inline Jsonb *
chancy_parent_results(void)
{
	void	  **var = (void **) find_rendezvous_variable("chancy_parent_results");

	return *var ? ((ChancyParentResultsFn) *var) () : NULL;
}

/*
 * chancy_kwarg
 *		The value of key in kwargs, or NULL if it is absent or JSON null.
 */
static inline JsonbValue *
chancy_kwarg(Jsonb *kwargs, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(kwargs))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&kwargs->root, JB_FOBJECT, &k);
	return (v == NULL || v->type == jbvNull) ? NULL : v;
}

/* A string keyword argument (palloc'd), or dflt if absent. */
static inline char *
chancy_kwarg_text(Jsonb *kwargs, const char *key, const char *dflt)
{
	JsonbValue *v = chancy_kwarg(kwargs, key);

	if (v == NULL)
		return dflt ? pstrdup(dflt) : NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keyword argument \"%s\" must be a string", key)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* An integer keyword argument, or dflt if absent. */
static inline int64
chancy_kwarg_int(Jsonb *kwargs, const char *key, int64 dflt)
{
	JsonbValue *v = chancy_kwarg(kwargs, key);

	if (v == NULL)
		return dflt;
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keyword argument \"%s\" must be a number", key)));
	return DatumGetInt64(DirectFunctionCall1(numeric_int8,
											 NumericGetDatum(v->val.numeric)));
}

/* A floating-point keyword argument, or dflt if absent. */
static inline double
chancy_kwarg_float(Jsonb *kwargs, const char *key, double dflt)
{
	JsonbValue *v = chancy_kwarg(kwargs, key);

	if (v == NULL)
		return dflt;
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keyword argument \"%s\" must be a number", key)));
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											  NumericGetDatum(v->val.numeric)));
}

/* A boolean keyword argument, or dflt if absent. */
static inline bool
chancy_kwarg_bool(Jsonb *kwargs, const char *key, bool dflt)
{
	JsonbValue *v = chancy_kwarg(kwargs, key);

	if (v == NULL)
		return dflt;
	if (v->type != jbvBool)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keyword argument \"%s\" must be a boolean", key)));
	return v->val.boolean;
}

/*
 * chancy_result_text
 *		A jsonb object {key: value} to return as a job's result.
 */
static inline Jsonb *
chancy_result_text(const char *key, const char *value)
{
	JsonbParseState *state = NULL;
	JsonbValue	k;
	JsonbValue	v;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(&state, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	pushJsonbValue(&state, WJB_VALUE, &v);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

#endif							/* CHANCY_H */
