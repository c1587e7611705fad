/*-------------------------------------------------------------------------
 *
 * job.c
 *	  Job values and job definitions: the checks every attribute of a job
 *	  passes, the defaults a push by name starts from, and who may push what.
 *
 * A job value is the chancy_job composite, handled here as a JobValue (its
 * attributes, plus what a push adds: the OID of its function).
 *
 * Definitions (the seed's @job(...) defaults) belong to the role that made
 * them: each role has its own namespace of job names, as pg_cron's job
 * names are per user.  A push by name as role P uses, of the definitions of
 * that name, the first that P trusts:
 *	1. P's own;
 *	2. the extension owner's (who can rewrite any job anyway);
 *	3. that of another role D that can already act as P (D is a superuser,
 *	   or a member of P): such a D gains nothing by choosing P's code.
 *	   Two of those are ambiguous, and an error.
 * With none, the name is a function name(jsonb) resolved through P's
 * search_path.  A definition by any other role is never used for P: no role
 * can make another run code it chose.  The function a definition names is
 * kept as an OID, so a function dropped and created again by another role
 * is not run in its place.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "chancy_internal.h"

/* names longer than this are looked up, never cached */
#define CACHE_KEYLEN 128

/* longest job name: it must fit in the definitions' primary key */
#define CHANCY_MAX_NAME 1024

/* One role's definition of a job name. */
typedef struct Definition
{
	Oid			definer;
	Oid			function_oid;	/* InvalidOid for a 'library:symbol'; in this
								 * cluster (see function_here()) */
	Oid			function_owner;
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];
} Definition;

/* The definitions of one job name, by every role. */
typedef struct DefEntry
{
	char		name[CACHE_KEYLEN];
	int			n;
	Definition *defs;
} DefEntry;

static MemoryContext defs_cxt = NULL;	/* holds defs_cache and its datums */
static HTAB *defs_cache = NULL;
static bool defs_stale = true;
static uint64 defs_generation = 0;	/* of the catalog, when filled */

static const char *const attr_names[JOB_NATTS] = {
	"name", "function", "queue", "kwargs", "priority", "max_attempts",
	"scheduled_at", "unique_key", "time_limit", "memory_limit", "meta",
	"limit_keys"
};

/* Copy an attribute value into the current memory context. */
static Datum
attr_copy(JobAttr attr, Datum value)
{
	switch (attr)
	{
		case JA_PRIORITY:
		case JA_MAX_ATTEMPTS:
			return value;
		case JA_SCHEDULED_AT:
		case JA_MEMORY_LIMIT:
			return datumCopy(value, FLOAT8PASSBYVAL, 8);
		case JA_TIME_LIMIT:
			return datumCopy(value, false, sizeof(Interval));
		default:
			return datumCopy(value, false, -1);
	}
}

/* The definitions table changed: forget every cached definition. */
void
job_forget_definitions(void)
{
	defs_stale = true;
}

/*
 * interval_ms
 *		The length of an interval in milliseconds, as extract(epoch) counts
 *		it (a year is 365.25 days, a month 30), or -1 if it has a negative
 *		part or is too long to count.  The one rule for chancy's intervals:
 *		chancy_interval_ms() gives it to the CHECK constraints of the tables.
 *		Fractions of a millisecond are dropped: 0.5 ms is 0, below any limit.
 */
int64
interval_ms(const Interval *iv)
{
	double		secs;

	if (iv->month < 0 || iv->day < 0 || iv->time < 0)
		return -1;
	secs = (double) iv->time / USECS_PER_SEC +
		(double) (iv->month / MONTHS_PER_YEAR) * DAYS_PER_YEAR * SECS_PER_DAY +
		(double) (iv->month % MONTHS_PER_YEAR) * DAYS_PER_MONTH * SECS_PER_DAY +
		(double) iv->day * SECS_PER_DAY;
	if (secs * 1000.0 >= (double) PG_INT64_MAX)
		return -1;
	return (int64) floor(secs * 1000.0);
}

/*
 * error_bad_attr
 *		Report a job attribute that is NULL or empty where a value is needed.
 */
static void
error_bad_attr(JobAttr attr, bool isnull)
{
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job %s must not be NULL", attr_names[attr]),
				 errhint("Build job values with chancy_job(name) and the chancy_with_* functions.")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("job %s must not be empty", attr_names[attr]),
			 attr == JA_UNIQUE_KEY ?
			 errhint("Use NULL for a job without a unique key.") :
			 errhint("Build job values with chancy_job(name) and the chancy_with_* functions.")));
}

/*
 * check_time_limit
 *		A time limit is from 1 ms to a year, with no negative part.
 */
static void
check_time_limit(Datum value)
{
	Interval   *iv = DatumGetIntervalP(value);
	int64		ms = interval_ms(iv);
	char	   *text = DatumGetCString(DirectFunctionCall1(interval_out,
														   IntervalPGetDatum(iv)));

	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job time_limit must not have negative parts, not %s", text),
				 errhint("Use a positive interval, or NULL for no time limit.")));
	if (ms < 1 || ms > CHANCY_MAX_TIME_LIMIT_MS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job time_limit must be from 1 ms to 366 days, not %s", text),
				 errhint("Use NULL for no time limit.")));
}

/*
 * check_key_template
 *		A limit key as a job value gives it: "{name}" in it is filled from the
 *		job's kwargs at push (job_fill_limit_keys), so "{" must open such a
 *		placeholder and "}" only close one.
 */
static void
check_key_template(const char *key)
{
	for (const char *p = key; *p; p++)
	{
		const char *name;

		if (*p == '{')
		{
			name = ++p;
			while (isalnum((unsigned char) *p) || *p == '_')
				p++;
			if (p > name && *p == '}')
				continue;
		}
		else if (*p != '}')
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid limit key template \"%s\"", key),
				 errhint("\"{name}\" in a limit key is the kwarg name of the job, for example customer:{customer_id}; a name is letters, digits and _.")));
	}
}

/*
 * check_limit_keys
 *		The limit keys of a job (see flow.c): 1 to CHANCY_MAX_LIMIT_KEYS
 *		distinct keys, each 1 to NAMEDATALEN - 1 bytes, without "*" (which
 *		only patterns of chancy_limits use).  With templates, "{name}"
 *		placeholders are checked too (the keys as given, before the push
 *		fills them); without, the keys are filled ones.
 */
static void
check_limit_keys(ArrayType *keys, bool templates)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (ARR_NDIM(keys) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("job limit_keys must be a one-dimensional array")));
	deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0 || n > CHANCY_MAX_LIMIT_KEYS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job limit_keys must list 1 to %d keys, not %d",
						CHANCY_MAX_LIMIT_KEYS, n),
				 n == 0 ? errhint("Use NULL for a job that holds no limit key.") : 0));
	for (int i = 0; i < n; i++)
	{
		char	   *key;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("job limit_keys must not contain NULL")));
		key = TextDatumGetCString(elems[i]);
		if (key[0] == '\0' || strlen(key) >= NAMEDATALEN || strchr(key, '*') != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid limit key \"%.*s%s\"", NAMEDATALEN, key,
							strlen(key) > NAMEDATALEN ? "..." : ""),
					 errhint("A limit key is 1 to %d bytes, without \"*\" (which only patterns of chancy_limits use).",
							 NAMEDATALEN - 1)));
		if (templates)
			check_key_template(key);
		for (int j = 0; j < i; j++)
			if (!nulls[j] && strcmp(key, TextDatumGetCString(elems[j])) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("limit key \"%s\" is listed twice", key),
						 errhint("A job holds each of its keys once.")));
	}
}

/*
 * job_fill_limit_keys
 *		At push: "{name}" in the job's limit keys becomes the value of kwarg
 *		name (a string as it is, a number or boolean as JSON writes it); a
 *		kwarg the job does not have, or that is not a scalar, is an error.
 *		The filled keys are checked again.
 */
void
job_fill_limit_keys(JobValue *job)
{
	Datum	   *elems;
	int			n;
	bool		any = false;
	Jsonb	   *kwargs = DatumGetJsonbP(job->values[JA_KWARGS]);

	if (job->nulls[JA_LIMIT_KEYS])
		return;
	deconstruct_array(DatumGetArrayTypeP(job->values[JA_LIMIT_KEYS]), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, NULL, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *key = TextDatumGetCString(elems[i]);
		StringInfoData filled;

		if (strchr(key, '{') == NULL)
			continue;
		any = true;
		initStringInfo(&filled);
		for (const char *p = key; *p; p++)
		{
			const char *name;
			JsonbValue	k;
			JsonbValue *v;

			if (*p != '{')
			{
				appendStringInfoChar(&filled, *p);
				continue;
			}
			name = ++p;
			while (*p != '}' && *p != '\0')
				p++;
			if (*p == '\0')
				break;			/* not a template (a row written by hand) */
			k.type = jbvString;
			k.val.string.val = (char *) name;
			k.val.string.len = p - name;
			v = findJsonbValueFromContainer(&kwargs->root, JB_FOBJECT, &k);
			if (v == NULL || v->type == jbvNull || v->type == jbvBinary)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("limit key \"%s\" of job \"%s\" needs kwarg \"%.*s\"", key,
								TextDatumGetCString(job->values[JA_NAME]),
								(int) (p - name), name),
						 v == NULL ?
						 errdetail("The job's kwargs do not have it.") :
						 errdetail("The kwarg is %s; a key is filled from a string, number or boolean.",
								   v->type == jbvNull ? "null" : "an object or array"),
						 errhint("Pass the kwarg, or give the job its keys with chancy_with_limit_keys().")));
			if (v->type == jbvString)
				appendBinaryStringInfo(&filled, v->val.string.val, v->val.string.len);
			else if (v->type == jbvNumeric)
				appendStringInfoString(&filled,
									   DatumGetCString(DirectFunctionCall1(numeric_out,
																		   NumericGetDatum(v->val.numeric))));
			else
				appendStringInfoString(&filled, v->val.boolean ? "true" : "false");
		}
		elems[i] = CStringGetTextDatum(filled.data);
	}
	if (!any)
		return;
	job->values[JA_LIMIT_KEYS] =
		PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	check_limit_keys(DatumGetArrayTypeP(job->values[JA_LIMIT_KEYS]), false);
}

/*
 * job_check_attr
 *		Check one attribute of a job value: an error naming it and the value
 *		if it is not one a job may have.
 */
void
job_check_attr(JobAttr attr, Datum value, bool isnull)
{
	switch (attr)
	{
		case JA_NAME:
		case JA_FUNCTION:
		case JA_QUEUE:
		case JA_UNIQUE_KEY:
			if (isnull && attr == JA_UNIQUE_KEY)
				break;
			if (isnull || VARSIZE_ANY_EXHDR(DatumGetPointer(value)) == 0)
				error_bad_attr(attr, isnull);
			if (attr == JA_QUEUE &&
				VARSIZE_ANY_EXHDR(DatumGetPointer(value)) >= NAMEDATALEN)
				ereport(ERROR,
						(errcode(ERRCODE_NAME_TOO_LONG),
						 errmsg("job queue name \"%s\" is too long",
								TextDatumGetCString(value)),
						 errhint("Queue names are at most %d bytes.", NAMEDATALEN - 1)));
			if (attr == JA_UNIQUE_KEY &&
				VARSIZE_ANY_EXHDR(DatumGetPointer(value)) > CHANCY_MAX_UNIQUE_KEY)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("job unique_key is too long"),
						 errdetail("The key is %d bytes; at most %d are allowed.",
								   (int) VARSIZE_ANY_EXHDR(DatumGetPointer(value)),
								   CHANCY_MAX_UNIQUE_KEY),
						 errhint("Use a shorter key, for example a hash of this one.")));
			if (attr == JA_NAME &&
				VARSIZE_ANY_EXHDR(DatumGetPointer(value)) > CHANCY_MAX_NAME)
				ereport(ERROR,
						(errcode(ERRCODE_NAME_TOO_LONG),
						 errmsg("job name is too long"),
						 errdetail("The name is %d bytes; at most %d are allowed.",
								   (int) VARSIZE_ANY_EXHDR(DatumGetPointer(value)),
								   CHANCY_MAX_NAME)));
			break;
		case JA_KWARGS:
		case JA_META:
			if (isnull)
				error_bad_attr(attr, true);
			if (!JB_ROOT_IS_OBJECT(DatumGetJsonbP(value)))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("job %s must be a JSON object, not %s",
								attr_names[attr],
								JsonbToCString(NULL, &DatumGetJsonbP(value)->root,
											   VARSIZE(DatumGetPointer(value)))),
						 attr == JA_KWARGS ?
						 errhint("Pass keyword arguments as an object, for example '{\"name\": \"Alice\"}'.") :
						 errhint("Pass metadata as an object, for example '{\"trace\": \"abc\"}'.")));
			break;
		case JA_PRIORITY:
			if (isnull)
				error_bad_attr(attr, true);
			break;
		case JA_MAX_ATTEMPTS:
			if (isnull)
				error_bad_attr(attr, true);
			if (DatumGetInt32(value) < 1)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("job max_attempts must be at least 1, not %d",
								DatumGetInt32(value)),
						 errhint("max_attempts counts every run of the job; 1 means no retries.")));
			break;
		case JA_SCHEDULED_AT:
			if (!isnull && TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(value)))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("job scheduled_at must be a finite time, not %s",
								timestamptz_to_str(DatumGetTimestampTz(value))),
						 errhint("Use NULL to run the job as soon as possible.")));
			break;
		case JA_TIME_LIMIT:
			if (!isnull)
				check_time_limit(value);
			break;
		case JA_MEMORY_LIMIT:
			if (!isnull && DatumGetInt64(value) <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("job memory_limit must be a positive number of bytes, not " INT64_FORMAT,
								DatumGetInt64(value)),
						 errhint("Use NULL for no memory limit.")));
			break;
		case JA_LIMIT_KEYS:
			if (!isnull)
				check_limit_keys(DatumGetArrayTypeP(value), true);
			break;
		case JOB_NATTS:
			elog(ERROR, "invalid job attribute");
	}
}

/* Check every attribute of a job value. */
void
job_check(JobValue *job)
{
	for (int i = 0; i < JOB_NATTS; i++)
		job_check_attr((JobAttr) i, job->values[i], job->nulls[i]);
}

/*
 * load_definitions
 *		Read every role's definition of job name (in the current memory
 *		context), as the owner of chancy's tables.
 */
static int
load_definitions(ChancyCatalog *cat, const char *name, Definition **defs)
{
	static const JobAttr cols[] = {
		JA_FUNCTION, JA_QUEUE, JA_KWARGS, JA_PRIORITY, JA_MAX_ATTEMPTS,
		JA_TIME_LIMIT, JA_MEMORY_LIMIT, JA_LIMIT_KEYS
	};
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtype = TEXTOID;
	Datum		arg = CStringGetTextDatum(name);
	CatalogSql	sql;
	int			n;

	catalog_sql_begin(cat, true, &sql);
	if (SPI_execute_with_args(psprintf("SELECT defined_by, function_oid, function, queue,"
									   " kwargs, priority, max_attempts, time_limit,"
									   " memory_limit, limit_keys, function_owner,"
									   " function_catalog, function_digest"
									   " FROM %s.chancy_job_definitions"
									   " WHERE name = $1",
									   cat->nspname),
							  1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the definitions of job \"%s\"", name);
	n = (int) SPI_processed;
	*defs = MemoryContextAllocZero(cxt, sizeof(Definition) * Max(n, 1));
	for (int r = 0; r < n; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Definition *def = &(*defs)[r];
		bool		isnull;
		MemoryContext old;

		memset(def->nulls, true, sizeof(def->nulls));
		def->definer = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		def->function_oid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		if (isnull)
			def->function_oid = InvalidOid;
		old = MemoryContextSwitchTo(cxt);
		for (int i = 0; i < lengthof(cols); i++)
		{
			Datum		d = SPI_getbinval(tup, desc, i + 3, &def->nulls[cols[i]]);

			if (!def->nulls[cols[i]])
				def->values[cols[i]] = attr_copy(cols[i], d);
		}
		MemoryContextSwitchTo(old);
		def->function_owner = DatumGetObjectId(SPI_getbinval(tup, desc, 11, &isnull));
		if (OidIsValid(def->function_oid))
		{
			uint64		catalog = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 12, &isnull));
			int64		digest = DatumGetInt64(SPI_getbinval(tup, desc, 13, &isnull));

			def->function_oid =
				function_here(TextDatumGetCString(def->values[JA_FUNCTION]),
							  def->function_oid, def->function_owner, catalog,
							  isnull ? 0 : digest);
		}
	}
	catalog_sql_end(&sql);
	return n;
}

/*
 * definitions
 *		Every role's definition of job name, through the per-backend cache;
 *		the count.  The Definitions belong to the cache: copy what is kept.
 */
static int
definitions(ChancyCatalog *cat, const char *name, Definition **defs)
{
	DefEntry   *entry;
	char		key[CACHE_KEYLEN];
	Definition *fresh;
	int			n;
	MemoryContext old;

	if (defs_cache == NULL || defs_stale || defs_generation != cat->defs_generation)
	{
		HASHCTL		ctl;

		if (defs_cxt)
			MemoryContextDelete(defs_cxt);
		defs_cxt = AllocSetContextCreate(CacheMemoryContext, "chancy definitions",
										 ALLOCSET_SMALL_SIZES);
		ctl.keysize = CACHE_KEYLEN;
		ctl.entrysize = sizeof(DefEntry);
		ctl.hcxt = defs_cxt;
		defs_cache = hash_create("chancy definitions", 64, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		defs_stale = false;
		defs_generation = cat->defs_generation;
	}
	if (strlen(name) >= CACHE_KEYLEN)
		return load_definitions(cat, name, defs);

	strlcpy(key, name, CACHE_KEYLEN);
	entry = hash_search(defs_cache, key, HASH_FIND, NULL);
	if (entry)
	{
		*defs = entry->defs;
		return entry->n;
	}

	n = load_definitions(cat, name, &fresh);
	/* reading the table may have processed an invalidation: do not keep */
	if (defs_stale || defs_generation != cat->defs_generation)
	{
		*defs = fresh;
		return n;
	}
	old = MemoryContextSwitchTo(defs_cxt);
	entry = hash_search(defs_cache, key, HASH_ENTER, NULL);
	entry->n = n;
	entry->defs = palloc0(sizeof(Definition) * Max(n, 1));
	for (int d = 0; d < n; d++)
	{
		entry->defs[d] = fresh[d];
		for (int i = 0; i < JOB_NATTS; i++)
			if (!fresh[d].nulls[i])
				entry->defs[d].values[i] = attr_copy((JobAttr) i, fresh[d].values[i]);
	}
	MemoryContextSwitchTo(old);
	*defs = entry->defs;
	return n;
}

/*
 * trusted_definition
 *		The definition of job name that a push by role uses (see the file
 *		header), or NULL.  Two definitions equally trusted are an error.
 */
static Definition *
trusted_definition(ChancyCatalog *cat, const char *name, Oid role)
{
	Definition *defs;
	int			n = definitions(cat, name, &defs);
	Definition *other = NULL;

	for (int d = 0; d < n; d++)
		if (defs[d].definer == role)
			return &defs[d];
	for (int d = 0; d < n; d++)
		if (defs[d].definer == cat->owner)
			return &defs[d];
	for (int d = 0; d < n; d++)
	{
		if (!is_member_of_role(defs[d].definer, role))
			continue;
		if (other != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_AMBIGUOUS_FUNCTION),
					 errmsg("job \"%s\" is ambiguous", name),
					 errdetail("Roles \"%s\" and \"%s\" both defined it, and both can act as role \"%s\".",
							   GetUserNameFromId(other->definer, false),
							   GetUserNameFromId(defs[d].definer, false),
							   GetUserNameFromId(role, false)),
					 errhint("Define the job as role \"%s\" to choose, or push a job value naming its function.",
							 GetUserNameFromId(role, false))));
		other = &defs[d];
	}
	return other;
}

/*
 * job_defaults
 *		The job value a push of "name" by the current role starts from: the
 *		trusted definition's defaults, or for a function name(jsonb), the
 *		global ones (queue 'default', priority 0, one attempt).
 */
void
job_defaults(ChancyCatalog *cat, const char *name, JobValue *job)
{
	Definition *def;

	memset(job, 0, sizeof(JobValue));
	memset(job->nulls, true, sizeof(job->nulls));
	def = trusted_definition(cat, name, GetUserId());
	if (def)
	{
		/* its defaults (kwargs) are for those who may push it */
		if (OidIsValid(def->function_oid))
			function_check_execute(def->function_oid, GetUserId(), name);
		for (int i = 0; i < JOB_NATTS; i++)
		{
			job->nulls[i] = def->nulls[i];
			job->values[i] = def->values[i];
		}
		job->function_oid = def->function_oid;
	}
	else
	{
		char	   *canonical;
		Oid			argtype = JSONBOID;

		if (!OidIsValid(LookupFuncName(stringToQualifiedNameList(name), 1,
									   &argtype, true)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("job \"%s\" is not defined", name),
					 errdetail("No definition of \"%s\" that role \"%s\" may use exists, and there is no function %s(jsonb).",
							   name, GetUserNameFromId(GetUserId(), false), name),
					 errhint("Define it with chancy_define_job('%s', ...) or create a function %s(kwargs jsonb).",
							 name, name)));
		job->function_oid = function_resolve(name, NULL, &canonical);
		job->values[JA_FUNCTION] = CStringGetTextDatum(canonical);
		job->values[JA_QUEUE] = CStringGetTextDatum("default");
		job->values[JA_KWARGS] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
		job->values[JA_PRIORITY] = Int32GetDatum(0);
		job->values[JA_MAX_ATTEMPTS] = Int32GetDatum(1);
		job->nulls[JA_FUNCTION] = job->nulls[JA_QUEUE] = job->nulls[JA_KWARGS] = false;
		job->nulls[JA_PRIORITY] = job->nulls[JA_MAX_ATTEMPTS] = false;
	}
	job->values[JA_NAME] = CStringGetTextDatum(name);
	job->nulls[JA_NAME] = false;
	job->values[JA_META] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	job->nulls[JA_META] = false;
}

/*
 * check_queue
 *		A job may only go to a declared queue: a push to a queue that is not
 *		declared (a typo) would never run.
 */
static void
check_queue(ChancyCatalog *cat, Datum queue)
{
	char	   *name = TextDatumGetCString(queue);

	if (!catalog_queue_declared(cat, name))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", name),
				 errdetail("Jobs of a queue that is not declared would never run."),
				 errhint("Declare it with chancy_declare_queue('%s') or in chancy.queues.",
						 name)));
}

/*
 * job_authorize
 *		May the current role push this job, and what does it run?  The
 *		function of the job's trusted definition (as it was defined), else
 *		the function its spec names now (a C symbol: superuser only).  The
 *		role must be able to execute it, and the queue must exist; a command
 *		job's command must parse.  Sets job->function_oid, and makes the spec
 *		canonical.
 */
void
job_authorize(ChancyCatalog *cat, JobValue *job)
{
	char	   *name = TextDatumGetCString(job->values[JA_NAME]);
	char	   *spec = TextDatumGetCString(job->values[JA_FUNCTION]);
	Definition *def = trusted_definition(cat, name, GetUserId());
	char	   *canonical;

	job->function_owner = InvalidOid;
	job->function_digest = 0;
	check_queue(cat, job->values[JA_QUEUE]);
	if (def && strcmp(TextDatumGetCString(def->values[JA_FUNCTION]), spec) == 0)
	{
		job->function_oid = def->function_oid;
		if (function_is_symbol(spec))
		{
			/* a symbol is pushed by anyone only if a superuser chose it */
			if (!superuser_arg(def->definer))
				function_check_symbol(spec);
			return;
		}
		if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(def->function_oid)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("function %s of job \"%s\" no longer exists", spec, name),
					 errdetail("The function was dropped after role \"%s\" defined the job.",
							   GetUserNameFromId(def->definer, false)),
					 errhint("Define the job again with chancy_define_job('%s', ...).",
							 name)));
	}
	else
	{
		job->function_oid = function_resolve(name, spec, &canonical);
		if (strcmp(canonical, spec) != 0)
			job->values[JA_FUNCTION] = CStringGetTextDatum(canonical);
		if (!OidIsValid(job->function_oid))
			return;				/* a symbol, checked */
	}
	function_check_execute(job->function_oid, GetUserId(), name);
	job->function_owner = function_owner(job->function_oid);
	job->function_digest = function_digest(job->function_oid);
	job_check_command(cat, job);
}

/*
 * job_check_command
 *		For an authorized job that runs chancy_run_command: its command
 *		checked, and the pusher's search_path recorded (command.c).  Other
 *		jobs are left as they are.
 */
void
job_check_command(ChancyCatalog *cat, JobValue *job)
{
	if (OidIsValid(cat->command_fn) && job->function_oid == cat->command_fn)
		job->values[JA_KWARGS] = command_check(job->values[JA_KWARGS]);
}

/*
 * job_attr_by_name
 *		The job attribute called name, or -1.
 */
int
job_attr_by_name(const char *name)
{
	for (int i = 0; i < JOB_NATTS; i++)
		if (strcmp(attr_names[i], name) == 0)
			return i;
	return -1;
}

/*
 * job_deform
 *		Split a chancy_job value into its attributes.
 */
void
job_deform(ChancyCatalog *cat, HeapTupleHeader tuple, JobValue *job)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(cat->job_typid, -1);
	HeapTupleData tup;

	memset(job, 0, sizeof(JobValue));
	tup.t_len = HeapTupleHeaderGetDatumLength(tuple);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = InvalidOid;
	tup.t_data = tuple;
	heap_deform_tuple(&tup, desc, job->values, job->nulls);
	ReleaseTupleDesc(desc);
}

/*
 * job_form
 *		Build a chancy_job value from its attributes.
 */
Datum
job_form(ChancyCatalog *cat, JobValue *job)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(cat->job_typid, -1);
	HeapTuple	tuple = heap_form_tuple(desc, job->values, job->nulls);

	ReleaseTupleDesc(desc);
	return HeapTupleGetDatum(tuple);
}

/*
 * given
 *		An argument of chancy_define_job: NULL leaves the attribute as the
 *		definition had it; a limit of zero removes the limit, and so does an
 *		empty array of limit keys.
 */
static void
given(FunctionCallInfo fcinfo, int argno, JobAttr attr, JobValue *job)
{
	Datum		value = PG_GETARG_DATUM(argno);

	if (PG_ARGISNULL(argno))
		return;
	if ((attr == JA_MEMORY_LIMIT && DatumGetInt64(value) == 0) ||
		(attr == JA_TIME_LIMIT && DatumGetIntervalP(value)->time == 0 &&
		 DatumGetIntervalP(value)->day == 0 && DatumGetIntervalP(value)->month == 0) ||
		(attr == JA_LIMIT_KEYS && ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(value)),
												 ARR_DIMS(DatumGetArrayTypeP(value))) == 0))
	{
		job->nulls[attr] = true;
		return;
	}
	job_check_attr(attr, value, false);
	job->values[attr] = value;
	job->nulls[attr] = false;
}

/*
 * job_define
 *		chancy_define_job(name, function, queue, priority, max_attempts,
 *		kwargs, time_limit, memory_limit): create or change the current
 *		role's definition of a job.  Arguments left NULL keep what the
 *		definition had (or take the defaults, for a new one).  The definition
 *		is returned as a job value in *result.
 */
void
job_define(ChancyCatalog *cat, FunctionCallInfo fcinfo, JobValue *result)
{
	static const JobAttr cols[] = {
		JA_NAME, JA_FUNCTION, JA_QUEUE, JA_PRIORITY, JA_MAX_ATTEMPTS,
		JA_KWARGS, JA_TIME_LIMIT, JA_MEMORY_LIMIT, JA_LIMIT_KEYS
	};
	Oid			argtypes[15] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID,
		JSONBOID, INTERVALOID, INT8OID, TEXTARRAYOID, OIDOID, REGROLEOID, BOOLOID, OIDOID,
	INT8OID, INT8OID};
	Datum		args[15];
	char		argnulls[15];
	Oid			role = GetUserId();
	Definition *defs;
	Definition *mine = NULL;
	JobValue   *job = result;
	char	   *name;
	CatalogSql	sql;
	char	   *sql_text;
	int			n;

	job_check_attr(JA_NAME, PG_GETARG_DATUM(0), PG_ARGISNULL(0));
	name = TextDatumGetCString(PG_GETARG_DATUM(0));
	n = definitions(cat, name, &defs);
	for (int d = 0; d < n; d++)
		if (defs[d].definer == role)
			mine = &defs[d];

	memset(job, 0, sizeof(JobValue));
	memset(job->nulls, true, sizeof(job->nulls));
	if (mine)
	{
		for (int i = 0; i < JOB_NATTS; i++)
		{
			job->nulls[i] = mine->nulls[i];
			job->values[i] = mine->nulls[i] ? (Datum) 0 :
				attr_copy((JobAttr) i, mine->values[i]);
		}
		job->function_oid = mine->function_oid;
	}
	else
	{
		job->values[JA_QUEUE] = CStringGetTextDatum("default");
		job->values[JA_PRIORITY] = Int32GetDatum(0);
		job->values[JA_MAX_ATTEMPTS] = Int32GetDatum(1);
		job->values[JA_KWARGS] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
		job->nulls[JA_QUEUE] = job->nulls[JA_PRIORITY] = false;
		job->nulls[JA_MAX_ATTEMPTS] = job->nulls[JA_KWARGS] = false;
	}
	job->values[JA_NAME] = PG_GETARG_DATUM(0);
	job->nulls[JA_NAME] = false;
	for (int i = 2; i < lengthof(cols) && i < PG_NARGS(); i++)
		given(fcinfo, i, cols[i], job);

	/* the function: given, or kept, or the function called like the job */
	if (!PG_ARGISNULL(1) || mine == NULL)
	{
		char	   *canonical;

		job->function_oid =
			function_resolve(name, PG_ARGISNULL(1) ? NULL :
							 TextDatumGetCString(PG_GETARG_DATUM(1)), &canonical);
		job->values[JA_FUNCTION] = CStringGetTextDatum(canonical);
		job->nulls[JA_FUNCTION] = false;
		if (OidIsValid(job->function_oid))
			function_check_execute(job->function_oid, role, name);
	}
	check_queue(cat, job->values[JA_QUEUE]);

	for (int i = 0; i < lengthof(cols); i++)
	{
		args[i] = job->values[cols[i]];
		argnulls[i] = job->nulls[cols[i]] ? 'n' : ' ';
	}
	args[9] = ObjectIdGetDatum(job->function_oid);
	argnulls[9] = OidIsValid(job->function_oid) ? ' ' : 'n';
	args[10] = ObjectIdGetDatum(role);
	argnulls[10] = ' ';
	/* one an extension's script writes is not dumped: the script writes it */
	args[11] = BoolGetDatum(creating_extension);
	argnulls[11] = ' ';
	/* elsewhere, the function is known by its signature and owner */
	args[12] = ObjectIdGetDatum(OidIsValid(job->function_oid) ?
								function_owner(job->function_oid) : InvalidOid);
	args[13] = Int64GetDatum((int64) catalog_identity());
	args[14] = Int64GetDatum(OidIsValid(job->function_oid) ?
							 function_digest(job->function_oid) : 0);
	argnulls[12] = argnulls[13] = argnulls[14] = argnulls[9];

	sql_text = psprintf("INSERT INTO %s.chancy_job_definitions AS d"
					  " (name, function, queue, priority, max_attempts,"
					  " kwargs, time_limit, memory_limit, limit_keys, function_oid,"
					  " defined_by, from_extension, function_owner,"
					  " function_catalog, function_digest)"
					  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
					  " $12, $13, $14, $15)"
					  " ON CONFLICT (name, defined_by) DO UPDATE SET"
					  " function = excluded.function,"
					  " function_oid = excluded.function_oid,"
					  " queue = excluded.queue,"
					  " priority = excluded.priority,"
					  " max_attempts = excluded.max_attempts,"
					  " kwargs = excluded.kwargs,"
					  " time_limit = excluded.time_limit,"
					  " memory_limit = excluded.memory_limit,"
					  " limit_keys = excluded.limit_keys,"
					  " from_extension = excluded.from_extension,"
					  " function_owner = excluded.function_owner,"
					  " function_catalog = excluded.function_catalog,"
					  " function_digest = excluded.function_digest,"
					  " updated_at = now()",
					  cat->nspname);
	catalog_sql_begin(cat, true, &sql);
	if (catalog_own_write(SPI_prepare(sql_text, 15, argtypes), args, argnulls)
		!= SPI_OK_INSERT)
		elog(ERROR, "could not write the definition of job \"%s\"", name);
	catalog_sql_end(&sql);

	job->values[JA_META] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	job->nulls[JA_META] = false;
}

/*
 * job_undefine
 *		Delete the current role's definition of a job; jobs already pushed
 *		keep running.
 */
void
job_undefine(ChancyCatalog *cat, const char *name)
{
	Oid			argtypes[2] = {TEXTOID, REGROLEOID};
	Datum		args[2];
	CatalogSql	sql;
	uint64		deleted;

	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(GetUserId());
	catalog_sql_begin(cat, true, &sql);
	if (SPI_execute_with_args(psprintf("DELETE FROM %s.chancy_job_definitions"
									   " WHERE name = $1 AND defined_by = $2",
									   cat->nspname),
							  2, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete the definition of job \"%s\"", name);
	deleted = SPI_processed;
	catalog_sql_end(&sql);
	if (deleted == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job \"%s\" is not defined by role \"%s\"", name,
						GetUserNameFromId(GetUserId(), false)),
				 errhint("A role removes only its own definitions; SELECT name, defined_by FROM chancy_job_definitions lists those you can see.")));
}
