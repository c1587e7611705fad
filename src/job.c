/*-------------------------------------------------------------------------
 *
 * job.c
 *	  Job values: where chancy is installed, job definitions, the functions
 *	  jobs run, and the checks every job value passes before it is pushed.
 *
 * A job value is the chancy_job composite, handled here as an array of
 * JOB_NATTS datums.  Definitions and resolved functions are cached per
 * backend; a trigger on chancy_job_definitions and the pg_proc syscache
 * tell us when to forget them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "chancy_internal.h"

/* names and specs longer than this are looked up, never cached */
#define CACHE_KEYLEN 128

typedef struct DefEntry
{
	char		name[CACHE_KEYLEN];
	bool		exists;
	Datum		values[JOB_NATTS];
	bool		nulls[JOB_NATTS];
} DefEntry;

typedef struct FuncEntry
{
	char		spec[CACHE_KEYLEN]; /* canonical: schema.name(jsonb) */
	Oid			oid;
} FuncEntry;

static ChancyCatalog catalog;
static bool catalog_stale = true;
static bool callbacks_registered = false;

static MemoryContext defs_cxt = NULL;	/* holds defs_cache and its datums */
static HTAB *defs_cache = NULL;
static bool defs_stale = false;
static HTAB *func_cache = NULL;
static bool funcs_stale = false;
static uint64 funcs_generation = 0;	/* counts pg_proc changes */

static const char *const attr_names[JOB_NATTS] = {
	"name", "function", "queue", "kwargs", "priority", "max_attempts",
	"scheduled_at", "unique_key", "time_limit", "memory_limit", "meta"
};

/* Storage of each attribute's type: text, jsonb, int4, timestamptz, ... */
static const int16 attr_len[JOB_NATTS] = {-1, -1, -1, -1, 4, 4, 8, -1, 16, 8, -1};

/* Copy an attribute value into the current memory context. */
static Datum
job_datum_copy(JobAttr attr, Datum value)
{
	int16		len = attr_len[attr];

	return datumCopy(value, len == 4 || (len == 8 && FLOAT8PASSBYVAL), len);
}

/*
 * Invalidation callbacks only mark caches stale: they may fire in the middle
 * of a lookup, so the caches are rebuilt at the next lookup instead.
 */
static void
relcache_changed(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == catalog.jobs_relid ||
		relid == catalog.defs_relid)
	{
		catalog_stale = true;
		defs_stale = true;
	}
}

/* Any change to pg_proc may make a cached function resolution wrong. */
static void
proc_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	funcs_stale = true;
	funcs_generation++;
}

/*
 * job_functions_generation
 *		Changes whenever a cached function resolution may have become wrong,
 *		for callers that cache what they built on resolutions.
 */
uint64
job_functions_generation(void)
{
	return funcs_generation;
}

/*
 * chancy_catalog
 *		Where the extension living in schema nsp keeps its objects.
 *
 * The result is rebuilt after DDL on chancy's tables or when the extension
 * was re-created elsewhere; callers use its fields right away.
 */
ChancyCatalog *
chancy_catalog(Oid nsp)
{
	HeapTuple	tp;

	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(relcache_changed, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, proc_changed, (Datum) 0);
		callbacks_registered = true;
	}
	if (!catalog_stale && catalog.nsp == nsp)
		return &catalog;

	if (catalog.nspname)
		pfree(catalog.nspname);
	memset(&catalog, 0, sizeof(catalog));
	catalog.nsp = nsp;
	catalog.nspname = MemoryContextStrdup(TopMemoryContext,
										  quote_identifier(get_namespace_name(nsp)));
	catalog.jobs_relid = get_relname_relid("chancy_jobs", nsp);
	catalog.defs_relid = get_relname_relid("chancy_job_definitions", nsp);
	catalog.job_typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										CStringGetDatum("chancy_job"),
										ObjectIdGetDatum(nsp));
	if (!OidIsValid(catalog.jobs_relid) || !OidIsValid(catalog.defs_relid) ||
		!OidIsValid(catalog.job_typid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("chancy's objects are missing from schema %s",
						catalog.nspname),
				 errhint("Recreate the extension with DROP EXTENSION chancy; CREATE EXTENSION chancy.")));

	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(catalog.jobs_relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", catalog.jobs_relid);
	catalog.owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);

	/* a different installation has different definitions */
	defs_stale = true;
	catalog_stale = false;
	return &catalog;
}

/*
 * chancy_extension_schema
 *		The schema chancy is installed in, in this database, or InvalidOid.
 *		For the workers; outside a transaction it runs one.
 */
Oid
chancy_extension_schema(void)
{
	bool		own = !IsTransactionState();
	Oid			nsp = InvalidOid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (own)
		StartTransactionCommand();
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("chancy"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (own)
		CommitTransactionCommand();
	return nsp;
}

/*
 * chancy_catalog_for
 *		The catalog of the installation a SQL-callable function belongs to:
 *		every chancy function lives in the extension's schema.
 */
ChancyCatalog *
chancy_catalog_for(FunctionCallInfo fcinfo)
{
	return chancy_catalog(get_func_namespace(fcinfo->flinfo->fn_oid));
}

/* Forget all cached definitions (the definitions table changed). */
void
job_forget_definitions(void)
{
	defs_stale = true;
}

/*
 * error_bad_attr
 *		Report a job attribute that is NULL or empty where a value is needed.
 */
static void
error_bad_attr(JobAttr attr, bool isnull)
{
	ereport(ERROR,
			(errcode(isnull ? ERRCODE_NULL_VALUE_NOT_ALLOWED :
					 ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("job %s must not be %s", attr_names[attr],
					isnull ? "NULL" : "empty"),
			 attr == JA_UNIQUE_KEY ?
			 errhint("Use NULL for a job without a unique key.") :
			 errhint("Build job values with chancy_job(name) and the chancy_with_* functions.")));
}

/*
 * job_check_attr
 *		Reject a value that a job attribute cannot take.
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
			{
				Interval   *iv = DatumGetIntervalP(value);
				Interval	zero = {0};

				if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
													  IntervalPGetDatum(iv),
													  IntervalPGetDatum(&zero))) <= 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("job time_limit must be positive, not %s",
									DatumGetCString(DirectFunctionCall1(interval_out,
																		IntervalPGetDatum(iv)))),
							 errhint("Use NULL for no time limit.")));
			}
			break;
		case JA_MEMORY_LIMIT:
			if (!isnull && DatumGetInt64(value) <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("job memory_limit must be a positive number of bytes, not " INT64_FORMAT,
								DatumGetInt64(value)),
						 errhint("Use NULL for no memory limit.")));
			break;
		case JOB_NATTS:
			elog(ERROR, "invalid job attribute");
	}
}

/* Check every attribute of a job value. */
void
job_check(Datum *values, bool *nulls)
{
	for (int i = 0; i < JOB_NATTS; i++)
		job_check_attr((JobAttr) i, values[i], nulls[i]);
}

/*
 * job_function_is_symbol
 *		Does a function spec name a raw C symbol ('library:symbol') rather
 *		than a SQL function ('schema.name(jsonb)' or 'name')?
 */
bool
job_function_is_symbol(const char *spec)
{
	return strchr(spec, '(') == NULL && strchr(spec, ':') != NULL;
}

/*
 * check_job_signature
 *		A job function takes exactly one jsonb and returns one value.
 */
static void
check_job_signature(Oid fn, const char *spec)
{
	HeapTuple	tp;
	Form_pg_proc proc;
	bool		ok;

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tp);
	ok = proc->pronargs == 1 && proc->proargtypes.values[0] == JSONBOID &&
		proc->prokind == PROKIND_FUNCTION && !proc->proretset;
	ReleaseSysCache(tp);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s cannot run as a job", format_procedure(fn)),
				 errdetail("Job function \"%s\" must be a plain function taking exactly one jsonb argument and returning a single value.",
						   spec),
				 errhint("Declare it as %s(kwargs jsonb) RETURNS void (or jsonb).",
						 get_func_name(fn))));
}

/*
 * lookup_function
 *		Resolve a SQL function spec ('name(argtypes)' or a bare, possibly
 *		qualified, name taking jsonb) to a job function's OID.
 */
static Oid
lookup_function(const char *spec)
{
	Oid			fn;

	if (strchr(spec, '(') != NULL)
	{
		LOCAL_FCINFO(fc, 1);

		InitFunctionCallInfoData(*fc, NULL, 1, InvalidOid, NULL, NULL);
		fc->args[0].value = CStringGetTextDatum(spec);
		fc->args[0].isnull = false;
		fn = DatumGetObjectId(to_regprocedure(fc));
		if (fc->isnull)
			fn = InvalidOid;
	}
	else
	{
		Oid			argtype = JSONBOID;

		fn = LookupFuncName(stringToQualifiedNameList(spec), 1, &argtype, true);
	}
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("job function %s%s does not exist", spec,
						strchr(spec, '(') ? "" : "(jsonb)"),
				 errhint("Create it as a function taking one jsonb argument, or check the schema and search_path.")));
	check_job_signature(fn, spec);
	return fn;
}

/*
 * function_oid
 *		lookup_function with a per-backend cache of canonical specs.
 *
 * Only canonical (schema-qualified) specs are cached, since others depend
 * on search_path.  *canonical is set to the canonical spec when the one given
 * was not, so that a job never stores a search_path-dependent name.
 */
static Oid
function_oid(const char *spec, char **canonical)
{
	FuncEntry  *entry = NULL;
	bool		found;
	Oid			fn;
	char	   *canon;

	*canonical = NULL;
	if (func_cache == NULL || funcs_stale)
	{
		HASHCTL		ctl;

		if (func_cache)
			hash_destroy(func_cache);
		ctl.keysize = CACHE_KEYLEN;
		ctl.entrysize = sizeof(FuncEntry);
		func_cache = hash_create("chancy functions", 64, &ctl,
								 HASH_ELEM | HASH_STRINGS);
		funcs_stale = false;
	}
	if (strlen(spec) < CACHE_KEYLEN)
	{
		entry = hash_search(func_cache, spec, HASH_FIND, NULL);
		if (entry)
			return entry->oid;
	}

	fn = lookup_function(spec);
	canon = format_procedure_qualified(fn);
	if (strcmp(canon, spec) != 0)
		*canonical = canon;
	else if (strlen(spec) < CACHE_KEYLEN && !funcs_stale)
	{
		entry = hash_search(func_cache, spec, HASH_ENTER, &found);
		entry->oid = fn;
	}
	return fn;
}

/*
 * job_function_oid
 *		The OID of the SQL function a job's (canonical) function spec names;
 *		an error if it no longer exists or cannot run as a job.
 */
Oid
job_function_oid(const char *spec)
{
	char	   *canonical;

	return function_oid(spec, &canonical);
}

/*
 * check_symbol
 *		Check that a 'library:symbol' spec names a loadable V1 C function.
 *		Superuser only, like LOAD.
 */
static void
check_symbol(const char *spec)
{
	const char *colon = strrchr(spec, ':');
	char	   *library = pnstrdup(spec, colon - spec);
	const char *symbol = colon + 1;
	void	   *handle = NULL;
	PGFunction	fn = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to run C symbol \"%s\" as a job", spec),
				 errdetail("Loading an arbitrary library:symbol is reserved to superusers, like LOAD."),
				 errhint("Create a SQL function for the symbol (CREATE FUNCTION ... LANGUAGE C), grant EXECUTE on it and use that, or ask a superuser to define the job.")));
	if (*library == '\0' || *symbol == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid job function \"%s\"", spec),
				 errhint("A C job function is written 'library:symbol', for example '$libdir/my_jobs:greet'.")));

	PG_TRY();
	{
		fn = load_external_function(library, symbol, false, &handle);
		if (fn != NULL)
			(void) fetch_finfo_record(handle, symbol);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("cannot load job function \"%s\"", spec),
				 errdetail("%s", edata->message),
				 errhint("The library must be in the server's library path and export the symbol with PG_FUNCTION_INFO_V1.")));
	}
	PG_END_TRY();
	if (fn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("job function \"%s\" does not exist", spec),
				 errdetail("Library \"%s\" has no symbol \"%s\".", library, symbol),
				 errhint("Export the symbol with PG_FUNCTION_INFO_V1(%s).", symbol)));
}

/*
 * job_resolve_function
 *		The canonical function spec for a job: a schema-qualified signature,
 *		or a checked 'library:symbol'.  A NULL spec means the function called
 *		like the job, taking jsonb.
 */
char *
job_resolve_function(const char *name, const char *spec)
{
	char	   *canonical;

	if (spec == NULL)
		spec = name;
	if (*spec == '\0')
		error_bad_attr(JA_FUNCTION, false);
	if (job_function_is_symbol(spec))
	{
		check_symbol(spec);
		return pstrdup(spec);
	}
	(void) function_oid(spec, &canonical);
	return canonical ? canonical : pstrdup(spec);
}

/*
 * load_definition
 *		Read the definition of a job from chancy_job_definitions into values
 *		(allocated in the caller's memory context).  False if there is none.
 */
static bool
load_definition(const char *name, Datum *values, bool *nulls)
{
	static const JobAttr cols[] = {
		JA_FUNCTION, JA_QUEUE, JA_KWARGS, JA_PRIORITY, JA_MAX_ATTEMPTS,
		JA_TIME_LIMIT, JA_MEMORY_LIMIT
	};
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtype = TEXTOID;
	Datum		arg = CStringGetTextDatum(name);
	bool		found;

	memset(nulls, true, sizeof(bool) * JOB_NATTS);
	SPI_connect();
	if (SPI_execute_with_args(psprintf("SELECT function, queue, kwargs, priority,"
									   " max_attempts, time_limit, memory_limit"
									   " FROM %s.chancy_job_definitions"
									   " WHERE name = $1",
									   catalog.nspname),
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read job definition \"%s\"", name);
	found = SPI_processed == 1;
	if (found)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		for (int i = 0; i < lengthof(cols); i++)
		{
			Datum		d = SPI_getbinval(tup, desc, i + 1, &nulls[cols[i]]);
			MemoryContext old = MemoryContextSwitchTo(cxt);

			values[cols[i]] = nulls[cols[i]] ? (Datum) 0 :
				job_datum_copy(cols[i], d);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	return found;
}

/*
 * job_definition
 *		The definition of job "name", through the per-backend cache.  Fills
 *		the attributes a definition has (into the current memory context);
 *		false if the job is not defined.
 */
bool
job_definition(const char *name, Datum *values, bool *nulls)
{
	DefEntry   *entry;
	DefEntry	fresh;
	bool		found;
	MemoryContext old;

	Assert(!catalog_stale);
	if (defs_cache == NULL || defs_stale)
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
	}

	if (strlen(name) >= CACHE_KEYLEN)
		return load_definition(name, values, nulls);

	entry = hash_search(defs_cache, name, HASH_FIND, NULL);
	if (entry == NULL)
	{
		memset(&fresh, 0, sizeof(fresh));
		fresh.exists = load_definition(name, fresh.values, fresh.nulls);
		/* reading the table may have processed an invalidation */
		if (defs_stale)
		{
			memcpy(values, fresh.values, sizeof(fresh.values));
			memcpy(nulls, fresh.nulls, sizeof(fresh.nulls));
			return fresh.exists;
		}
		entry = hash_search(defs_cache, name, HASH_ENTER, &found);
		entry->exists = fresh.exists;
		memcpy(entry->nulls, fresh.nulls, sizeof(fresh.nulls));
		old = MemoryContextSwitchTo(defs_cxt);
		for (int i = 0; i < JOB_NATTS; i++)
			if (!fresh.nulls[i])
				entry->values[i] = job_datum_copy((JobAttr) i, fresh.values[i]);
		MemoryContextSwitchTo(old);
	}
	if (!entry->exists)
		return false;
	for (int i = 0; i < JOB_NATTS; i++)
	{
		nulls[i] = entry->nulls[i];
		values[i] = entry->values[i];
	}
	return true;
}

/*
 * job_defaults
 *		The job value chancy_job(name) returns: the definition's defaults, or
 *		for an undefined name that resolves to a function name(jsonb), the
 *		global defaults.
 */
void
job_defaults(const char *name, Datum *values, bool *nulls)
{
	if (*name == '\0')
		error_bad_attr(JA_NAME, false);

	memset(nulls, true, sizeof(bool) * JOB_NATTS);
	if (!job_definition(name, values, nulls))
	{
		char	   *spec;
		char	   *canonical;
		Oid			argtype = JSONBOID;
		Oid			fn;

		fn = LookupFuncName(stringToQualifiedNameList(name), 1, &argtype, true);
		if (!OidIsValid(fn))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("job \"%s\" is not defined", name),
					 errdetail("There is no job definition named \"%s\" and no function %s(jsonb).",
							   name, name),
					 errhint("Define it with chancy_define_job('%s', ...) or create a function %s(kwargs jsonb).",
							 name, name)));
		spec = format_procedure_qualified(fn);
		(void) function_oid(spec, &canonical);	/* checks the signature */
		values[JA_FUNCTION] = CStringGetTextDatum(spec);
		values[JA_QUEUE] = CStringGetTextDatum("default");
		values[JA_KWARGS] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
		values[JA_PRIORITY] = Int32GetDatum(0);
		values[JA_MAX_ATTEMPTS] = Int32GetDatum(1);
		nulls[JA_FUNCTION] = nulls[JA_QUEUE] = nulls[JA_KWARGS] = false;
		nulls[JA_PRIORITY] = nulls[JA_MAX_ATTEMPTS] = false;
	}
	values[JA_NAME] = CStringGetTextDatum(name);
	nulls[JA_NAME] = false;
	values[JA_META] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	nulls[JA_META] = false;
}

/*
 * job_authorize
 *		May the current role push this job?  It must be able to EXECUTE a SQL
 *		job function; a raw 'library:symbol' needs superuser unless it is the
 *		one a superuser put in the job's definition.  A search_path-dependent
 *		function spec is replaced by its canonical form in values.
 */
void
job_authorize(Datum *values, bool *nulls)
{
	char	   *name = TextDatumGetCString(values[JA_NAME]);
	char	   *spec = TextDatumGetCString(values[JA_FUNCTION]);
	char	   *canonical;
	Oid			fn;
	AclResult	acl;

	if (job_function_is_symbol(spec))
	{
		Datum		def[JOB_NATTS];
		bool		defnull[JOB_NATTS];

		if (job_definition(name, def, defnull) &&
			strcmp(TextDatumGetCString(def[JA_FUNCTION]), spec) == 0)
			return;
		check_symbol(spec);
		return;
	}

	fn = function_oid(spec, &canonical);
	if (canonical)
		values[JA_FUNCTION] = CStringGetTextDatum(canonical);
	acl = chancy_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE);
	if (acl != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to push job \"%s\"", name),
				 errdetail("Role \"%s\" may not execute job function %s.",
						   GetUserNameFromId(GetUserId(), false),
						   format_procedure(fn)),
				 errhint("GRANT EXECUTE ON FUNCTION %s TO the role that pushes the job.",
						 format_procedure(fn))));
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
job_deform(ChancyCatalog *cat, HeapTupleHeader job, Datum *values, bool *nulls)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(cat->job_typid, -1);
	HeapTupleData tuple;

	tuple.t_len = HeapTupleHeaderGetDatumLength(job);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = job;
	heap_deform_tuple(&tuple, desc, values, nulls);
	ReleaseTupleDesc(desc);
}

/*
 * job_form
 *		Build a chancy_job value from its attributes.
 */
Datum
job_form(ChancyCatalog *cat, Datum *values, bool *nulls)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(cat->job_typid, -1);
	HeapTuple	tuple = heap_form_tuple(desc, values, nulls);

	ReleaseTupleDesc(desc);
	return HeapTupleGetDatum(tuple);
}

/*
 * chancy_become_owner
 *		Run what follows as the owner of chancy's tables, which only chancy's
 *		own code writes.  The caller restores the saved identity (an error
 *		restores it on abort).
 */
void
chancy_become_owner(ChancyCatalog *cat, Oid *save_userid, int *save_sec_context)
{
	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(cat->owner, *save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/*
 * job_define
 *		Insert or update the definition of job values[JA_NAME].  Only the
 *		role that first defined a job (or a member of it) may change it.
 */
void
job_define(ChancyCatalog *cat, Datum *values, bool *nulls)
{
	Oid			argtypes[9] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID,
	JSONBOID, INTERVALOID, INT8OID, REGROLEOID};
	Datum		args[9];
	char		argnulls[9];
	static const JobAttr cols[8] = {
		JA_NAME, JA_FUNCTION, JA_QUEUE, JA_PRIORITY, JA_MAX_ATTEMPTS,
		JA_KWARGS, JA_TIME_LIMIT, JA_MEMORY_LIMIT
	};
	Oid			definer = GetUserId();
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;

	for (int i = 0; i < 8; i++)
	{
		args[i] = values[cols[i]];
		argnulls[i] = nulls[cols[i]] ? 'n' : ' ';
	}
	args[8] = ObjectIdGetDatum(definer);
	argnulls[8] = ' ';

	SPI_connect();
	chancy_become_owner(cat, &save_userid, &save_sec_context);
	nestlevel = statement_settings();
	if (SPI_execute_with_args(psprintf("INSERT INTO %s.chancy_job_definitions AS d"
									   " (name, function, queue, priority, max_attempts,"
									   " kwargs, time_limit, memory_limit, defined_by)"
									   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
									   " ON CONFLICT (name) DO UPDATE SET"
									   " function = excluded.function, queue = excluded.queue,"
									   " priority = excluded.priority,"
									   " max_attempts = excluded.max_attempts,"
									   " kwargs = excluded.kwargs,"
									   " time_limit = excluded.time_limit,"
									   " memory_limit = excluded.memory_limit,"
									   " updated_at = now()"
									   " WHERE pg_has_role($9, d.defined_by, 'USAGE')",
									   cat->nspname),
							  9, argtypes, args, argnulls, false, 0)
		!= SPI_OK_INSERT)
		elog(ERROR, "could not write job definition");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to redefine job \"%s\"",
						TextDatumGetCString(values[JA_NAME])),
				 errdetail("The job was defined by another role."),
				 errhint("Only the role that defined a job, its members and superusers may change it.")));
	AtEOXact_GUC(true, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
}

/*
 * job_undefine
 *		Delete the definition of a job; jobs already pushed keep running.
 */
void
job_undefine(ChancyCatalog *cat, const char *name)
{
	Oid			argtypes[2] = {TEXTOID, REGROLEOID};
	Datum		args[2];
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;
	bool		isnull;

	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(GetUserId());
	SPI_connect();
	chancy_become_owner(cat, &save_userid, &save_sec_context);
	nestlevel = statement_settings();
	if (SPI_execute_with_args(psprintf("WITH d AS (SELECT name, pg_has_role($2, defined_by, 'USAGE') AS mine"
									   "   FROM %s.chancy_job_definitions WHERE name = $1 FOR UPDATE),"
									   " gone AS (DELETE FROM %s.chancy_job_definitions x USING d"
									   "   WHERE x.name = d.name AND d.mine RETURNING x.name)"
									   " SELECT d.mine FROM d",
									   cat->nspname, cat->nspname),
							  2, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not delete job definition");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job \"%s\" is not defined", name),
				 errhint("SELECT name FROM chancy_job_definitions lists the defined jobs.")));
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									&isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to undefine job \"%s\"", name),
				 errdetail("The job was defined by another role."),
				 errhint("Only the role that defined a job, its members and superusers may remove it.")));
	AtEOXact_GUC(true, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
}
