/*-------------------------------------------------------------------------
 *
 * function.c
 *	  The functions jobs run: a function spec resolved to a checked identity
 *	  (an OID, kept by the job from push time), that identity made callable
 *	  (one cache of FmgrInfo per process), and a function's result turned
 *	  into the jsonb stored in chancy_jobs.result.
 *
 * A job function is a SQL function taking one jsonb ('schema.name(jsonb)',
 * or a name resolved through the search_path when the job is defined or
 * pushed, never later), or a raw C symbol 'library:symbol' (superuser only,
 * like LOAD).  A job keeps the OID its function had when it was pushed: if
 * the function is dropped and another one created under the same name, the
 * job fails instead of running the newcomer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "chancy_internal.h"

/* specs longer than this are resolved every time, never cached */
#define SPEC_KEYLEN (NAMEDATALEN * 3)

/* A canonical spec resolved at push time. */
typedef struct SpecEntry
{
	char		spec[SPEC_KEYLEN];
	Oid			oid;
} SpecEntry;

/* A function's digest, as pushes record it. */
typedef struct DigestEntry
{
	Oid			oid;
	int64		digest;
} DigestEntry;

/* A callable job function, in an executor. */
typedef struct CallEntry
{
	char		key[SPEC_KEYLEN];	/* "oid <n>", or the 'library:symbol' */
	char		spec[SPEC_KEYLEN];	/* the spec checked against the OID */
	JobFunction fn;
} CallEntry;

static bool callback_registered = false;
static bool procs_changed = true;	/* pg_proc changed: caches are stale */
static HTAB *specs = NULL;
static HTAB *digests = NULL;	/* function OID -> function_digest() */
static HTAB *calls = NULL;
static MemoryContext calls_cxt = NULL;

/* Any change to pg_proc or pg_namespace may make what was resolved wrong. */
static void
proc_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	procs_changed = true;
}

/*
 * reset_caches
 *		Make the caches empty if pg_proc or pg_namespace changed since they
 *		were filled.
 */
static void
reset_caches(void)
{
	HASHCTL		ctl;

	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, proc_changed, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, proc_changed, (Datum) 0);
		callback_registered = true;
	}
	if (!procs_changed && specs != NULL)
		return;
	procs_changed = false;

	if (specs)
		hash_destroy(specs);
	ctl.keysize = SPEC_KEYLEN;
	ctl.entrysize = sizeof(SpecEntry);
	specs = hash_create("chancy job function specs", 64, &ctl,
						HASH_ELEM | HASH_STRINGS);
	if (digests)
		hash_destroy(digests);
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(DigestEntry);
	digests = hash_create("chancy job function digests", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS);

	if (calls_cxt)
		MemoryContextDelete(calls_cxt);
	calls_cxt = AllocSetContextCreate(TopMemoryContext, "chancy job functions",
									  ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = SPEC_KEYLEN;
	ctl.entrysize = sizeof(CallEntry);
	ctl.hcxt = calls_cxt;
	calls = hash_create("chancy job functions", 32, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * function_is_symbol
 *		Does a function spec name a raw C symbol ('library:symbol') rather
 *		than a SQL function ('schema.name(jsonb)' or 'name')?
 */
bool
function_is_symbol(const char *spec)
{
	return strchr(spec, '(') == NULL && strchr(spec, ':') != NULL;
}

/*
 * check_signature
 *		A job function takes exactly one jsonb and returns one value, and
 *		is not temporary.
 */
static void
check_signature(Oid fn)
{
	HeapTuple	tp;
	Form_pg_proc proc;
	bool		ok;
	bool		temporary;

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tp);
	ok = proc->pronargs == 1 && proc->proargtypes.values[0] == JSONBOID &&
		proc->prokind == PROKIND_FUNCTION && !proc->proretset;
	temporary = isAnyTempNamespace(proc->pronamespace);
	ReleaseSysCache(tp);
	if (temporary)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("temporary function %s cannot run as a job", get_func_name(fn)),
				 errdetail("It exists only in the session that created it, and a dump of its jobs could not be restored."),
				 errhint("Create the function in a permanent schema.")));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s cannot run as a job", format_procedure(fn)),
				 errdetail("A job function is a plain function taking exactly one jsonb argument and returning a single value."),
				 errhint("Declare it as %s(kwargs jsonb) RETURNS void (or jsonb).",
						 get_func_name(fn))));
}

/* The function a 'name(argtypes)' spec names, or InvalidOid. */
static Oid
regprocedure_of(const char *spec)
{
	LOCAL_FCINFO(fc, 1);
	Oid			fn;

	InitFunctionCallInfoData(*fc, NULL, 1, InvalidOid, NULL, NULL);
	fc->args[0].value = CStringGetTextDatum(spec);
	fc->args[0].isnull = false;
	fn = DatumGetObjectId(to_regprocedure(fc));
	return fc->isnull ? InvalidOid : fn;
}

/*
 * lookup
 *		Resolve a SQL function spec ('name(argtypes)' or a bare, possibly
 *		qualified, name taking jsonb), through the search_path of the caller.
 */
static Oid
lookup(const char *spec)
{
	Oid			fn;

	if (strchr(spec, '(') != NULL)
	{
		fn = regprocedure_of(spec);
		if (!OidIsValid(fn))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("function %s does not exist", spec),
					 errhint("Create it as a function taking one jsonb argument, or check the schema and search_path.")));
	}
	else
	{
		Oid			argtype = JSONBOID;

		fn = LookupFuncName(stringToQualifiedNameList(spec), 1, &argtype, true);
		if (!OidIsValid(fn))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("function %s(jsonb) does not exist", spec),
					 errhint("Create it as a function taking one jsonb argument, or check the schema and search_path.")));
	}
	check_signature(fn);
	return fn;
}

/*
 * function_check_symbol
 *		Check that a 'library:symbol' spec names a loadable V1 C function.
 *		Superuser only, like LOAD.
 */
void
function_check_symbol(const char *spec)
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
 * function_resolve
 *		The function a job runs: spec (NULL: the function called like the
 *		job) resolved now, through the caller's search_path.  Returns its OID
 *		and sets *canonical to the schema-qualified signature; a C symbol is
 *		checked (superuser only) and gives InvalidOid and the spec itself.
 */
Oid
function_resolve(const char *name, const char *spec, char **canonical)
{
	SpecEntry  *entry;
	Oid			fn;

	if (spec == NULL)
		spec = name;
	if (*spec == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job function must not be empty"),
				 errhint("Name a function taking jsonb, for example 'greet(jsonb)', or a C symbol 'library:symbol'.")));
	if (function_is_symbol(spec))
	{
		function_check_symbol(spec);
		*canonical = pstrdup(spec);
		return InvalidOid;
	}

	/* a canonical spec names one function whatever the search_path */
	reset_caches();
	if (strlen(spec) < SPEC_KEYLEN)
	{
		entry = hash_search(specs, spec, HASH_FIND, NULL);
		if (entry)
		{
			*canonical = pstrdup(spec);
			return entry->oid;
		}
	}
	fn = lookup(spec);
	*canonical = format_procedure_qualified(fn);
	if (strcmp(*canonical, spec) == 0 && strlen(spec) < SPEC_KEYLEN && !procs_changed)
	{
		entry = hash_search(specs, spec, HASH_ENTER, NULL);
		entry->oid = fn;
	}
	return fn;
}

/* The owner of function fn. */
Oid
function_owner(Oid fn)
{
	HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fn);
	owner = ((Form_pg_proc) GETSTRUCT(tp))->proowner;
	ReleaseSysCache(tp);
	return owner;
}

/*
 * function_digest
 *		A digest of what function fn does when called: its language, source
 *		(or SQL-standard body, as deparsed), library, settings (SET
 *		clauses), whether it is SECURITY DEFINER, and its return type; the
 *		first 8 bytes of their SHA-256.  A dump, pg_upgrade and logical
 *		replication keep all these, so in another catalog it tells the
 *		function a job was pushed with from another of the same signature
 *		and owner that the owner of a schema renamed into its place.
 */
int64
function_digest(Oid fn)
{
	HeapTuple	tp;
	Form_pg_proc proc;
	StringInfoData buf;
	Datum		d;
	bool		isnull;
	bytea	   *sha;
	int64		digest = 0;
	DigestEntry *entry;
	bool		found;
	int			nestlevel;

	reset_caches();
	entry = hash_search(digests, &fn, HASH_FIND, &found);
	if (found)
		return entry->digest;
	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tp);

	/* names, not OIDs, and qualified the same way wherever it runs */
	nestlevel = catalog_settings();
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s\n%s\n%c\n", get_language_name(proc->prolang, false),
					 format_type_be_qualified(proc->prorettype),
					 proc->prosecdef ? 'd' : 'i');
	d = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosrc, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '\n');
	d = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_probin, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '\n');
	d = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_proconfig, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, OidOutputFunctionCall(F_ARRAY_OUT, d));
	appendStringInfoChar(&buf, '\n');
	(void) SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosqlbody, &isnull);
	ReleaseSysCache(tp);
	if (!isnull)
		appendStringInfoString(&buf,
							   TextDatumGetCString(DirectFunctionCall1(pg_get_function_sqlbody,
																	   ObjectIdGetDatum(fn))));
	AtEOXact_GUC(true, nestlevel);

	sha = DatumGetByteaPP(DirectFunctionCall1(sha256_bytea,
											  PointerGetDatum(cstring_to_text_with_len(buf.data,
																					  buf.len))));
	/* the same on every machine, whatever its byte order */
	for (int i = 0; i < (int) sizeof(digest); i++)
		digest = (int64) (((uint64) digest << 8) | (uint8) VARDATA_ANY(sha)[i]);
	entry = hash_search(digests, &fn, HASH_ENTER, NULL);
	entry->digest = digest;
	return digest;
}

/*
 * function_here
 *		The function, in this database, of a job or definition that recorded
 *		function oid (owned by owner) in the catalog catalog (see
 *		catalog_identity()).  Recorded here: oid, whatever became of it
 *		(the caller checks that it still exists as the spec names it).
 *		Recorded elsewhere (a restored dump, pg_upgrade, logical replication,
 *		or by version 1.0: catalog 0), where OIDs differ: the function of the
 *		spec's signature, if it has the same owner and digest (0: version
 *		1.0, not checked), else InvalidOid.  A function of that signature
 *		that another role made, or another function that the owner of its
 *		schema renamed into its place, is not trusted in its place.
 */
Oid
function_here(const char *spec, Oid oid, Oid owner, uint64 catalog, int64 digest)
{
	Oid			fn;

	if (!OidIsValid(oid) || catalog == catalog_identity())
		return oid;
	/* a recorded spec is schema-qualified: no search_path takes part */
	fn = regprocedure_of(spec);
	if (!OidIsValid(fn) || function_owner(fn) != owner ||
		(digest != 0 && function_digest(fn) != digest))
		return InvalidOid;
	return fn;
}

/*
 * function_check_execute
 *		May role execute job function fn?  The error names the job.
 */
void
function_check_execute(Oid fn, Oid role, const char *job)
{
	if (chancy_proc_aclcheck(fn, role, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(fn)),
				 errdetail("Role \"%s\" may not execute the function of job \"%s\".",
						   GetUserNameFromId(role, false), job),
				 errhint("GRANT EXECUTE ON FUNCTION %s TO the role that pushes the job.",
						 format_procedure(fn))));
}

/*
 * resolve_as_chancy
 *		The function a recorded spec names now, resolved under chancy's own
 *		settings (no search_path of the caller's); an error if there is none.
 */
static Oid
resolve_as_chancy(const char *spec)
{
	char	   *canonical;
	int			nestlevel = catalog_settings();
	Oid			fn = function_resolve(NULL, spec, &canonical);

	AtEOXact_GUC(true, nestlevel);
	return fn;
}

/*
 * check_still_named
 *		Is the function of OID oid still the one the job names?  A dump
 *		restored into another cluster maps a job's function to the function
 *		of that signature there; but the OID of a function dropped before the
 *		dump comes back as a bare number, which may be another function's.
 *		A job pushed by version 1.0 may name its function unqualified: it is
 *		looked up under chancy's search_path.
 */
static void
check_still_named(Oid oid, const char *spec)
{
	if (strcmp(format_procedure_qualified(oid), spec) == 0)
		return;
	if (resolve_as_chancy(spec) != oid)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s no longer exists", spec),
				 errdetail("The function the job was pushed with is now %s, which is not run in its place.",
						   format_procedure_qualified(oid)),
				 errhint("Push the job again to run the function that exists now.")));
}

/*
 * prepare
 *		Make a job function callable: load a C symbol, or look the SQL
 *		function up by the OID the job kept.
 */
static void
prepare(JobFunction *fn, const char *spec, Oid oid)
{
	HeapTuple	tp;

	memset(fn, 0, sizeof(JobFunction));
	if (function_is_symbol(spec))
	{
		const char *colon = strrchr(spec, ':');

		fn->flinfo.fn_addr = load_external_function(pnstrdup(spec, colon - spec),
													colon + 1, true, NULL);
		fn->flinfo.fn_oid = InvalidOid;
		fn->flinfo.fn_nargs = 1;
		fn->flinfo.fn_strict = false;
		fn->flinfo.fn_retset = false;
		fn->flinfo.fn_stats = TRACK_FUNC_OFF;
		fn->flinfo.fn_mcxt = calls_cxt;
		fn->is_c = true;
		return;
	}

	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(oid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s no longer exists", spec),
				 errdetail("The function the job was pushed with was dropped; a function created since under the same name is not run in its place."),
				 errhint("Push the job again to run the function that exists now.")));
	check_signature(oid);
	check_still_named(oid, spec);
	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(oid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", oid);
	fn->oid = oid;
	fn->rettype = ((Form_pg_proc) GETSTRUCT(tp))->prorettype;
	fn->is_c = ((Form_pg_proc) GETSTRUCT(tp))->prolang == ClanguageId;
	ReleaseSysCache(tp);
	get_typlenbyval(fn->rettype, &fn->typlen, &fn->typbyval);
	fmgr_info_cxt(oid, &fn->flinfo, calls_cxt);
}

/*
 * function_for_job
 *		The callable function of a claimed job, cached per process.  Raises
 *		the errors a job fails with: its function was dropped, its library or
 *		symbol cannot be loaded, its role may no longer execute it.  A job
 *		pushed without an OID (version 1.0) resolves its spec now, under
 *		chancy's own search_path; one pushed in another cluster, see
 *		function_here().
 */
JobFunction *
function_for_job(const char *spec, Oid oid, Oid owner, uint64 catalog, int64 digest,
				 Oid role)
{
	CallEntry  *entry;
	char		key[SPEC_KEYLEN];

	reset_caches();
	if (OidIsValid(oid))
	{
		Oid			here = function_here(spec, oid, owner, catalog, digest);

		if (!OidIsValid(here))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("function %s no longer exists", spec),
					 errdetail("The job was pushed in another database or cluster (a restored dump, pg_upgrade or logical replication), and no function of that signature, owner and source exists here."),
					 errhint("Push the job again to run the function that exists now.")));
		oid = here;
	}
	if (!function_is_symbol(spec) && !OidIsValid(oid))
		oid = resolve_as_chancy(spec);
	if (OidIsValid(oid))
		snprintf(key, sizeof(key), "oid %u", oid);
	else if (strlen(spec) < SPEC_KEYLEN)
		strlcpy(key, spec, sizeof(key));
	else
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("job function name \"%s\" is too long", spec)));

	entry = hash_search(calls, key, HASH_FIND, NULL);
	if (entry == NULL)
	{
		JobFunction fresh;

		prepare(&fresh, spec, oid);
		entry = hash_search(calls, key, HASH_ENTER, NULL);
		entry->fn = fresh;
		strlcpy(entry->spec, spec, SPEC_KEYLEN);
	}
	else if (OidIsValid(oid) && strncmp(entry->spec, spec, SPEC_KEYLEN) != 0)
		check_still_named(oid, spec);	/* prepared for another name */
	if (OidIsValid(entry->fn.oid))
		function_check_execute(entry->fn.oid, role, spec);
	return &entry->fn;
}

/*
 * function_result_jsonb
 *		A job function's return value as the jsonb to store: void or NULL is
 *		no result, jsonb is kept, json is parsed, other types are stored as
 *		the JSON string of their text.  A C symbol returns jsonb, or (Datum) 0
 *		for PG_RETURN_VOID().
 */
Datum
function_result_jsonb(JobFunction *fn, Datum value, bool *isnull)
{
	Oid			typoutput;
	bool		varlena;
	JsonbValue	jv;

	if (*isnull || fn->rettype == VOIDOID)
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (!OidIsValid(fn->rettype))
	{
		*isnull = value == (Datum) 0;
		return value;
	}
	if (fn->rettype == JSONBOID)
		return value;
	getTypeOutputInfo(fn->rettype, &typoutput, &varlena);
	if (fn->rettype == JSONOID)
		return DirectFunctionCall1(jsonb_in,
								   CStringGetDatum(OidOutputFunctionCall(typoutput, value)));
	jv.type = jbvString;
	jv.val.string.val = OidOutputFunctionCall(typoutput, value);
	jv.val.string.len = strlen(jv.val.string.val);
	return JsonbPGetDatum(JsonbValueToJsonb(&jv));
}
