/*-------------------------------------------------------------------------
 *
 * workflow.c
 *	  chancy_push_workflow(): a graph of steps, checked whole, pushed as
 *	  jobs in one statement.
 *
 * A step whose dependencies are not all met is pushed waiting (claim 0,
 * outside the ready index, deps_left > 0); the transaction that ends a
 * step releases the steps it was the last dependency of
 * (queue_steps_ended() in queue.c), so a child starts as soon as its
 * parent commits, with no resolver polling.  chancy_wait_workflow(),
 * chancy_cancel_workflow() and chancy_retry_workflow() are in control.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "chancy_internal.h"

PG_FUNCTION_INFO_V1(chancy_push_workflow);
PG_FUNCTION_INFO_V1(chancy_add_steps);
PG_FUNCTION_INFO_V1(chancy_parent_results);
PG_FUNCTION_INFO_V1(chancy_step_result);

/* longest step name (bytes) */
#define MAX_STEP_NAME 200
/* dependencies a push may add: this many per step of chancy.max_workflow_steps */
#define MAX_DEPS_PER_STEP 100

/* A step as given. */
typedef struct Step
{
	char	   *name;
	Datum		job;			/* chancy_job */
	Datum	   *dep_names;		/* its depends_on, as given (text) */
	int		   *deps;			/* indexes of the steps it depends on */
	int			ndeps;
	char	   *policy;			/* on_dep_failure */
	int			waiting_for;	/* Kahn's count, while ordering */
} Step;

/* The steps a workflow has already (chancy_add_steps()). */
typedef struct Existing
{
	int			n;
	char	  **names;
	int64	   *ids;
	char	  **states;
	int64		nedges;			/* its dependencies */
} Existing;

/* A step name in the look-up table. */
typedef struct StepName
{
	char		name[MAX_STEP_NAME + 1];
	int			index;
} StepName;

static void bad_workflow(const char *msg, const char *detail, const char *hint)
			pg_attribute_noreturn();

/* An invalid workflow: nothing is pushed. */
static void
bad_workflow(const char *msg, const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s", msg),
			 detail ? errdetail("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

/*
 * read_steps
 *		Deform the chancy_step[] array into steps, checking each step's own
 *		fields; *n is set to their number.
 */
static Step *
read_steps(ArrayType *array, int *n)
{
	Oid			elemtype = ARR_ELEMTYPE(array);
	Datum	   *elems;
	bool	   *nulls;
	Step	   *steps;
	TupleDesc	desc;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (ARR_NDIM(array) > 1)
		bad_workflow("steps must be a one-dimensional array", NULL, NULL);
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(array, elemtype, typlen, typbyval, typalign, &elems, &nulls, n);
	if (*n == 0)
		bad_workflow("a workflow needs at least one step", NULL,
					 "Pass steps made with chancy_step().");

	desc = lookup_rowtype_tupdesc(elemtype, -1);
	if (desc->natts != 4)
		elog(ERROR, "chancy_step has %d attributes, not 4", desc->natts);
	steps = palloc0(sizeof(Step) * *n);
	for (int i = 0; i < *n; i++)
	{
		HeapTupleHeader th;
		HeapTupleData tuple;
		Datum		values[4];
		bool		isnull[4];

		if (nulls[i])
			bad_workflow(psprintf("step %d is NULL", i + 1), NULL,
						 "Remove NULL elements, for example with array_remove(steps, NULL).");
		th = DatumGetHeapTupleHeader(elems[i]);
		tuple.t_len = HeapTupleHeaderGetDatumLength(th);
		ItemPointerSetInvalid(&tuple.t_self);
		tuple.t_tableOid = InvalidOid;
		tuple.t_data = th;
		heap_deform_tuple(&tuple, desc, values, isnull);

		if (isnull[0] || VARSIZE_ANY_EXHDR(DatumGetPointer(values[0])) == 0)
			bad_workflow(psprintf("step %d has no name", i + 1), NULL,
						 "Name every step, for example chancy_step('fetch', chancy_job('fetch')).");
		steps[i].name = TextDatumGetCString(values[0]);
		if (strlen(steps[i].name) > MAX_STEP_NAME)
			bad_workflow(psprintf("step name \"%.40s...\" is too long", steps[i].name),
						 psprintf("A step name has at most %d bytes.", MAX_STEP_NAME), NULL);
		if (isnull[1])
			bad_workflow(psprintf("step \"%s\" has no job", steps[i].name), NULL,
						 "Give it one, for example chancy_job('fetch').");
		steps[i].job = values[1];
		steps[i].policy = isnull[3] ? "cancel" : TextDatumGetCString(values[3]);
		if (strcmp(steps[i].policy, "cancel") != 0 && strcmp(steps[i].policy, "run") != 0 &&
			strcmp(steps[i].policy, "wait") != 0)
			bad_workflow(psprintf("step \"%s\" has an invalid on_dep_failure: \"%s\"",
								  steps[i].name, steps[i].policy), NULL,
						 "on_dep_failure is cancel, run or wait.");
		/* depends_on: names, resolved by link_steps() */
		if (!isnull[2])
		{
			ArrayType  *deps = DatumGetArrayTypeP(values[2]);
			Datum	   *names;
			bool	   *dnulls;

			if (ARR_NDIM(deps) > 1)
				bad_workflow(psprintf("depends_on of step \"%s\" must be a one-dimensional array",
									  steps[i].name), NULL, NULL);
			deconstruct_array(deps, TEXTOID, -1, false, TYPALIGN_INT, &names, &dnulls,
							  &steps[i].ndeps);
			for (int k = 0; k < steps[i].ndeps; k++)
				if (dnulls[k])
					bad_workflow(psprintf("depends_on of step \"%s\" holds a NULL",
										  steps[i].name), NULL, NULL);
			steps[i].dep_names = names;
		}
	}
	ReleaseTupleDesc(desc);
	return steps;
}

/*
 * link_steps
 *		Resolve every step's depends_on names to step indexes (n + j for
 *		step j of ex, the steps the workflow has already): duplicate step
 *		names, unknown dependencies and self-dependencies are errors.
 *		Returns the number of edges.
 */
static int64
link_steps(Step *steps, int n, const Existing *ex)
{
	HASHCTL		ctl;
	HTAB	   *names;
	int64		nedges = 0;

	ctl.keysize = MAX_STEP_NAME + 1;
	ctl.entrysize = sizeof(StepName);
	ctl.hcxt = CurrentMemoryContext;
	names = hash_create("chancy workflow steps", n, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (int i = 0; i < n; i++)
	{
		bool		found;
		StepName   *e = hash_search(names, steps[i].name, HASH_ENTER, &found);

		if (found)
			bad_workflow(psprintf("workflow has two steps named \"%s\"", steps[i].name),
						 psprintf("Steps %d and %d.", e->index + 1, i + 1),
						 "Step names must be unique in a workflow.");
		e->index = i;
	}
	for (int j = 0; j < ex->n; j++)
	{
		bool		found;
		StepName   *e = hash_search(names, ex->names[j], HASH_ENTER, &found);

		if (found)
			bad_workflow(psprintf("the workflow already has a step named \"%s\"",
								  ex->names[j]), NULL,
						 "Step names must be unique in a workflow.");
		e->index = n + j;
	}
	for (int i = 0; i < n; i++)
	{
		Datum	   *given = steps[i].dep_names;
		int		   *deps = palloc(sizeof(int) * Max(steps[i].ndeps, 1));
		int			ndeps = 0;

		for (int k = 0; k < steps[i].ndeps; k++)
		{
			char	   *dep = TextDatumGetCString(given[k]);
			StepName   *e = strlen(dep) > MAX_STEP_NAME ? NULL :
				hash_search(names, dep, HASH_FIND, NULL);
			bool		again = false;

			if (e == NULL)
				bad_workflow(psprintf("step \"%s\" depends on unknown step \"%s\"",
									  steps[i].name, dep), NULL,
							 "depends_on names steps of the same workflow.");
			if (e->index == i)
				bad_workflow(psprintf("step \"%s\" depends on itself", dep), NULL,
							 "Remove it from its own depends_on.");
			for (int m = 0; m < ndeps; m++)
				again |= deps[m] == e->index;
			if (!again)
				deps[ndeps++] = e->index;	/* a name given twice counts once */
		}
		steps[i].deps = deps;
		steps[i].ndeps = ndeps;
		nedges += ndeps;
	}
	hash_destroy(names);
	return nedges;
}

/*
 * check_acyclic
 *		Kahn's algorithm: a step is ordered once all its dependencies are.
 *		Steps left unordered lie on or after a cycle; walking dependencies
 *		among them from one of them must come back to a step already
 *		walked: that cycle is named in the error.  Dependencies on steps
 *		the workflow had (indexes from n) cannot be part of a cycle.
 */
static void
check_acyclic(Step *steps, int n)
{
	int		   *nchildren = palloc0(sizeof(int) * n);
	int		  **children = palloc(sizeof(int *) * n);
	int		   *ready = palloc(sizeof(int) * n);
	int			nready = 0;
	int			ordered = 0;

	for (int i = 0; i < n; i++)
		for (int k = 0; k < steps[i].ndeps; k++)
			if (steps[i].deps[k] < n)
				nchildren[steps[i].deps[k]]++;
	for (int i = 0; i < n; i++)
	{
		children[i] = palloc(sizeof(int) * Max(nchildren[i], 1));
		nchildren[i] = 0;
	}
	for (int i = 0; i < n; i++)
	{
		steps[i].waiting_for = 0;
		for (int k = 0; k < steps[i].ndeps; k++)
		{
			int			p = steps[i].deps[k];

			if (p >= n)
				continue;
			children[p][nchildren[p]++] = i;
			steps[i].waiting_for++;
		}
		if (steps[i].waiting_for == 0)
			ready[nready++] = i;
	}
	while (nready > 0)
	{
		int			p = ready[--nready];

		ordered++;
		for (int c = 0; c < nchildren[p]; c++)
			if (--steps[children[p][c]].waiting_for == 0)
				ready[nready++] = children[p][c];
	}
	if (ordered < n)
	{
		int		   *seen_at = palloc(sizeof(int) * n);
		int		   *path = palloc(sizeof(int) * (n + 1));
		int			len = 0;
		int			v = -1;
		StringInfoData buf;

		for (int i = 0; i < n; i++)
		{
			seen_at[i] = -1;
			if (v < 0 && steps[i].waiting_for > 0)
				v = i;
		}
		/* an unordered step has an unordered dependency: follow them */
		while (seen_at[v] < 0)
		{
			int			next = -1;

			seen_at[v] = len;
			path[len++] = v;
			for (int k = 0; k < steps[v].ndeps && next < 0; k++)
				if (steps[v].deps[k] < n && steps[steps[v].deps[k]].waiting_for > 0)
					next = steps[v].deps[k];
			v = next;
		}
		initStringInfo(&buf);
		for (int i = seen_at[v]; i < len; i++)
			appendStringInfo(&buf, "\"%s\" -> ", steps[path[i]].name);
		appendStringInfo(&buf, "\"%s\"", steps[v].name);
		bad_workflow(psprintf("workflow steps depend on each other in a cycle: %s", buf.data),
					 "Each step in the cycle depends on the next; none could ever start.",
					 "Remove one of the dependencies of the cycle.");
	}
}

/*
 * push_steps
 *		Check the array of steps (against ex, the steps the workflow has
 *		already), then push each as a job in one statement, those with
 *		dependencies not met waiting; workflow is the workflow's id, or 0
 *		for a new workflow of that name.  Returns the workflow's id, and
 *		sets *job_ids to the steps' job ids.
 */
static int64
push_steps(ChancyCatalog *cat, const char *name, int64 workflow, ArrayType *array,
		   const Existing *ex, int64 **job_ids, int *njobs)
{
	Step	   *steps;
	int			n;
	int64		nedges;
	int			waiting = 0;
	Datum	   *jobdatums;
	bool	   *jobnulls;
	JobValue   *jobs;
	char	  **keys;
	Datum	   *names;
	Datum	   *deps_left;
	Datum	   *policies;
	Datum	   *parents;
	Datum	   *children;
	int			e = 0;
	int64	   *ids;
	StepColumns cols;

	steps = read_steps(array, &n);
	if (ex->n + n > chancy_max_workflow_steps)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("workflow would have %d steps, more than chancy.max_workflow_steps (%d)",
						ex->n + n, chancy_max_workflow_steps),
				 errhint("Split it, or have a superuser raise chancy.max_workflow_steps.")));
	nedges = link_steps(steps, n, ex);
	if (ex->nedges + nedges > (int64) MAX_DEPS_PER_STEP * chancy_max_workflow_steps)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("workflow would have " INT64_FORMAT " dependencies, more than " INT64_FORMAT,
						ex->nedges + nedges,
						(int64) MAX_DEPS_PER_STEP * chancy_max_workflow_steps),
				 errdetail("A workflow has at most %d dependencies for each step chancy.max_workflow_steps (%d) allows.",
						   MAX_DEPS_PER_STEP, chancy_max_workflow_steps),
				 errhint("Have fewer steps depend on many: a step that depends on a group can stand for it.")));
	check_acyclic(steps, n);

	jobdatums = palloc(sizeof(Datum) * n);
	jobnulls = palloc0(sizeof(bool) * n);
	names = palloc(sizeof(Datum) * n);
	deps_left = palloc(sizeof(Datum) * n);
	policies = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		int			unmet = 0;

		for (int k = 0; k < steps[i].ndeps; k++)
		{
			int			d = steps[i].deps[k];
			const char *state = d < n ? "new" : ex->states[d - n];

			/* one that failed already: met for a step that runs anyway */
			if (strcmp(state, "failed") == 0 || strcmp(state, "cancelled") == 0)
			{
				if (strcmp(steps[i].policy, "cancel") == 0)
					bad_workflow(psprintf("step \"%s\" depends on step \"%s\", which is %s",
										  steps[i].name, ex->names[d - n], state),
								 "It would be cancelled at once.",
								 "Make it run anyway (on_dep_failure run), or wait for a retry of the workflow (wait).");
				unmet += strcmp(steps[i].policy, "wait") == 0;
			}
			else
				unmet += strcmp(state, "succeeded") != 0;
		}
		jobdatums[i] = steps[i].job;
		names[i] = CStringGetTextDatum(steps[i].name);
		deps_left[i] = Int32GetDatum(unmet);
		policies[i] = CStringGetTextDatum(steps[i].policy);
		waiting += unmet > 0;
	}
	jobs = api_prepare_jobs(cat, jobdatums, jobnulls, n, &keys, "steps");
	if (keys != NULL)
		for (int i = 0; i < n; i++)
			if (keys[i] != NULL)
				bad_workflow(psprintf("step \"%s\" has a unique key", steps[i].name),
							 "A step is a job of its workflow alone: it cannot be merged with a live job.",
							 "Remove the unique key from the step's job.");

	cols.n = n;
	cols.workflow_id = workflow != 0 ?
		queue_workflow_grow(cat, workflow, n, waiting) :
		queue_workflow_push(cat, name, n, waiting);
	cols.names = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
	cols.deps_left = PointerGetDatum(construct_array(deps_left, n, INT4OID, sizeof(int32),
													 true, TYPALIGN_INT));
	cols.policies = PointerGetDatum(construct_array(policies, n, TEXTOID, -1, false,
													TYPALIGN_INT));
	ids = queue_push_steps(cat, jobs, n, NULL, &cols);

	parents = palloc(sizeof(Datum) * Max(nedges, 1));
	children = palloc(sizeof(Datum) * Max(nedges, 1));
	for (int i = 0; i < n; i++)
		for (int k = 0; k < steps[i].ndeps; k++)
		{
			int			d = steps[i].deps[k];

			parents[e] = Int64GetDatum(d < n ? ids[d] : ex->ids[d - n]);
			children[e++] = Int64GetDatum(ids[i]);
		}
	queue_workflow_edges(cat, cols.workflow_id, parents, children, nedges);
	*job_ids = ids;
	*njobs = n;
	return cols.workflow_id;
}

/*
 * chancy_push_workflow(name text, steps chancy_step[]) RETURNS bigint
 *		Check the whole graph, then push every step as a job in one
 *		statement, those with dependencies waiting; returns the workflow's
 *		id.  Steps run as the pushing role, like its other pushes.
 */
Datum
chancy_push_workflow(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	Existing	none = {0};
	int64	   *ids;
	int			n;

	if (PG_ARGISNULL(0) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0)) == 0)
		bad_workflow("a workflow needs a name", NULL,
					 "Name it, for example chancy_push_workflow('nightly', ...).");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("steps must not be NULL"),
				 errhint("Pass an array of steps made with chancy_step().")));
	PG_RETURN_INT64(push_steps(cat, text_to_cstring(PG_GETARG_TEXT_PP(0)), 0,
							   PG_GETARG_ARRAYTYPE_P(1), &none, &ids, &n));
}

/*
 * chancy_add_steps(steps chancy_step[]) RETURNS bigint[]
 *		Called by a running workflow step: add steps to its workflow, in
 *		its transaction (dynamic fan-out).  They may depend on the steps the
 *		workflow has (one that succeeded is a dependency met; the running
 *		step itself is met when it succeeds; one that failed is met for a
 *		step that runs anyway, waits for a retry for one that waits, and
 *		refuses one that would be cancelled) and on each other.  Returns
 *		their job ids.
 */
Datum
chancy_add_steps(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	const ChancyJobInfo *me = chancy_sdk_current_job();
	int64		workflow = 0;
	Existing	ex;
	int64	   *ids;
	int			n;
	Datum	   *d;
	Oid			owner = InvalidOid;

	if (me != NULL)
		workflow = queue_workflow_steps(cat, me->id, &ex.n, &ex.names, &ex.ids,
										&ex.states, &owner, &ex.nedges);
	if (workflow == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chancy_add_steps() must be called by a running workflow step"),
				 errhint("A step adds steps to its own workflow; chancy_push_workflow() pushes a new one.")));
	/* not code of another role that the step called */
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to add steps to workflow " INT64_FORMAT, workflow),
				 errdetail("It was pushed by role %s.", GetUserNameFromId(owner, false)),
				 errhint("Only the role that pushed a workflow (or a member of it) may add steps to it.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("steps must not be NULL"),
				 errhint("Pass an array of steps made with chancy_step().")));
	(void) push_steps(cat, NULL, workflow, PG_GETARG_ARRAYTYPE_P(0), &ex, &ids, &n);
	d = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(ids[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(d, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}

/*
 * workflow_parent_results
 *		For the running step: the results of its dependencies that
 *		succeeded, {step: result}; {} outside a step.  What SQL's
 *		chancy_parent_results() and the C SDK's return.
 */
Jsonb *
workflow_parent_results(ChancyCatalog *cat)
{
	const ChancyJobInfo *me = chancy_sdk_current_job();
	bool		isnull;
	Datum		result;

	if (me == NULL)
		return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	result = queue_step_results(cat, me->id, NULL, NULL, &isnull);
	return DatumGetJsonbP(result);
}

/*
 * chancy_parent_results() RETURNS jsonb
 *		See workflow_parent_results().
 */
Datum
chancy_parent_results(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(workflow_parent_results(chancy_catalog_for(fcinfo)));
}

/*
 * chancy_step_result(step text) RETURNS jsonb
 *		For the running step: the result of its dependency step (NULL if
 *		that did not succeed).
 */
Datum
chancy_step_result(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	const ChancyJobInfo *me = chancy_sdk_current_job();
	char	   *step;
	bool		is_dep;
	bool		isnull;
	Datum		result;

	if (me == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chancy_step_result() must be called by a running workflow step"),
				 errhint("It reads the result of a step the running step depends on.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("step must not be NULL")));
	step = text_to_cstring(PG_GETARG_TEXT_PP(0));
	result = queue_step_results(cat, me->id, step, &is_dep, &isnull);
	if (!is_dep)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step \"%s\" is not a dependency of the running step", step),
				 errhint("chancy_parent_results() returns the results of all its dependencies.")));
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
