/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Where chancy is installed in a database, which role owns it, and how
 *	  chancy runs its own SQL: one bracket (catalog_sql_begin/end) that every
 *	  statement chancy runs goes through.
 *
 * The bracket gives chancy's statements fixed settings, whatever the
 * database's or the role's defaults (ALTER DATABASE/ROLE ... SET, which a
 * database owner may change):
 *	- search_path is pg_catalog, pg_temp: chancy's statements name its
 *	  tables with their schema, and every function and operator they use
 *	  must be the built-in one, never a same-named one that another role
 *	  created (the statements often run as the owner of chancy's tables);
 *	- sequential and bitmap scans and sorts are disabled, which leaves the
 *	  indexes whatever the statistics say (a stale "empty table" estimate
 *	  would otherwise turn the claim into a scan of millions of finished
 *	  jobs); chancy's plans are generic, kept, and replanned under these
 *	  settings only;
 *	- no JIT compilation (the statements are small and run often).
 * and, for writes, the identity of the owner of chancy's tables (which
 * users may not write), as a security-restricted operation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "parser/parse_func.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "chancy_internal.h"

static ChancyCatalog catalog;
static bool catalog_stale = true;
static bool callback_registered = false;
static uint64 catalog_generation = 0;

/* the queues of chancy_queues, cached per backend for the push's check */
static HTAB *declared_queues = NULL;
static bool queues_stale = true;

/*
 * relcache_changed
 *		An invalidation of chancy's tables (DDL, or a change to a table whose
 *		trigger asks for it): rebuild what was cached at the next use.
 *		Callbacks may fire in the middle of a lookup, so they only mark.
 */
static void
relcache_changed(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == catalog.jobs_relid ||
		relid == catalog.defs_relid || relid == catalog.queues_relid)
		catalog_stale = true;
	if (relid == InvalidOid || relid == catalog.queues_relid)
		queues_stale = true;
	if (relid == InvalidOid || relid == catalog.defs_relid)
		catalog.defs_generation++;
}

/* A schema changed (its name, maybe): look at chancy's again. */
static void
namespace_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	catalog_stale = true;
}

/*
 * chancy_extension
 *		Is chancy installed in this database, and at the SQL version this
 *		library works with?  Its schema in *nsp; its version (palloc'd) in
 *		*version if wanted.  Outside a transaction it runs one.
 */
ExtensionState
chancy_extension(Oid *nsp, char **version)
{
	bool		own = !IsTransactionState();
	ExtensionState state = EXTENSION_MISSING;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	MemoryContext cxt = CurrentMemoryContext;

	*nsp = InvalidOid;
	if (own)
		StartTransactionCommand();
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("chancy"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);
		char	   *v = isnull ? "" : TextDatumGetCString(d);

		*nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
		state = strcmp(v, CHANCY_SQL_VERSION) == 0 ? EXTENSION_READY : EXTENSION_OLD;
		if (version)
			*version = MemoryContextStrdup(cxt, v);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (own)
		CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return state;
}

/*
 * catalog_recover_error
 *		In a worker's PG_CATCH block, interrupts held, after an error outside
 *		any job: abort, and report the error unless chancy was dropped (or
 *		replaced by another version) meanwhile, when the error is only its
 *		tables missing.  Returns what chancy_extension() says now.
 */
ExtensionState
catalog_recover_error(Oid *nsp)
{
	ExtensionState state;

	MemoryContextSwitchTo(TopMemoryContext);
	AbortOutOfAnyTransaction();
	state = chancy_extension(nsp, NULL);
	if (state == EXTENSION_READY)
		EmitErrorReport();
	FlushErrorState();
	return state;
}

/* The OID of relation name in schema nsp, or an error saying chancy is broken. */
static Oid
catalog_relid(const char *name, Oid nsp)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation \"%s\" of extension chancy is missing", name),
				 errhint("Recreate the extension with DROP EXTENSION chancy; CREATE EXTENSION chancy.")));
	return relid;
}

/*
 * chancy_catalog
 *		Where the extension living in schema nsp keeps its objects.
 *
 * The result is rebuilt after DDL on chancy's tables or when the extension
 * was re-created; callers use its fields right away.  Its generation
 * changes whenever an OID in it does, so that plans built on them (queue.c)
 * are made again after DROP EXTENSION chancy; CREATE EXTENSION chancy.
 */
ChancyCatalog *
chancy_catalog(Oid nsp)
{
	ChancyCatalog fresh;
	HeapTuple	tp;
	Oid			found_nsp;
	char	   *version = NULL;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(relcache_changed, (Datum) 0);
		/* the schema's name is in every statement (ddl.c keeps it) */
		CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_changed, (Datum) 0);
		callback_registered = true;
	}
	if (!catalog_stale && catalog.nsp == nsp)
		return &catalog;

	if (chancy_extension(&found_nsp, &version) == EXTENSION_OLD)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension chancy must be updated"),
				 errdetail("Its version is %s; the installed library needs version %s.",
						   version, CHANCY_SQL_VERSION),
				 errhint("Run ALTER EXTENSION chancy UPDATE.")));

	memset(&fresh, 0, sizeof(fresh));
	fresh.nsp = nsp;
	fresh.jobs_relid = catalog_relid("chancy_jobs", nsp);
	fresh.defs_relid = catalog_relid("chancy_job_definitions", nsp);
	fresh.queues_relid = catalog_relid("chancy_queues", nsp);
	fresh.job_typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
									  CStringGetDatum("chancy_job"),
									  ObjectIdGetDatum(nsp));
	if (!OidIsValid(fresh.job_typid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("type \"chancy_job\" of extension chancy is missing"),
				 errhint("Recreate the extension with DROP EXTENSION chancy; CREATE EXTENSION chancy.")));
	{
		Oid			jsonb = JSONBOID;

		/* missing only while the script of ALTER EXTENSION runs */
		fresh.command_fn = LookupFuncName(list_make2(makeString(get_namespace_name(nsp)),
													 makeString("chancy_run_command")),
										  1, &jsonb, true);
	}
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(fresh.jobs_relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", fresh.jobs_relid);
	fresh.owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);

	fresh.nspname = MemoryContextStrdup(TopMemoryContext,
										quote_identifier(get_namespace_name(nsp)));
	if (fresh.nsp != catalog.nsp || fresh.jobs_relid != catalog.jobs_relid ||
		fresh.defs_relid != catalog.defs_relid ||
		fresh.queues_relid != catalog.queues_relid ||
		fresh.job_typid != catalog.job_typid || fresh.owner != catalog.owner ||
		fresh.command_fn != catalog.command_fn ||
		catalog.nspname == NULL || strcmp(fresh.nspname, catalog.nspname) != 0)
	{
		catalog_generation++;
		fresh.defs_generation = catalog.defs_generation + 1;
		queues_stale = true;
	}
	else
		fresh.defs_generation = catalog.defs_generation;
	if (catalog.nspname)
		pfree(catalog.nspname);
	fresh.generation = catalog_generation;
	catalog = fresh;
	catalog_stale = !OidIsValid(fresh.command_fn);
	return &catalog;
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

/*
 * catalog_warn_unlisted
 *		Warn if the current database is not one of chancy.database: jobs
 *		pushed here are kept, but no supervisor serves it, so none runs.
 *		The launcher reads the same setting.
 */
void
catalog_warn_unlisted(void)
{
	char	   *copy = pstrdup(chancy_databases);
	char	   *here = get_database_name(MyDatabaseId);
	List	   *names;
	ListCell   *lc;

	if (here == NULL || !SplitIdentifierString(copy, ',', &names))
		return;					/* the GUC check hook prevents the latter */
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), here) == 0)
			return;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("database \"%s\" is not listed in chancy.database", here),
			 errdetail("Jobs pushed here are kept, but none runs until it is listed."),
			 errhint("Add it to chancy.database in postgresql.conf and reload the configuration.")));
}

/*
 * Set while chancy itself writes jobs or definitions: such rows are this
 * database's own even when an apply worker of logical replication writes
 * them (a push or a cancel from a trigger on a replicated table), which the
 * triggers chancy_mark_replicated and chancy_replace_made_row tell by it.
 * See catalog_own_write().
 */
bool		catalog_writing = false;

/*
 * catalog_own_write
 *		Run one of chancy's own writes (plan with args, as SPI_execute_plan
 *		would), with catalog_writing set; returns SPI's result.
 */
int
catalog_own_write(SPIPlanPtr plan, Datum *args, const char *nulls)
{
	bool		was = catalog_writing;
	int			rc;

	catalog_writing = true;
	PG_TRY();
	{
		rc = SPI_execute_plan(plan, args, nulls, false, 0);
	}
	PG_FINALLY();
	{
		catalog_writing = was;
	}
	PG_END_TRY();
	return rc;
}

/*
 * catalog_identity
 *		What identifies the catalog that function OIDs recorded now belong
 *		to: this cluster (its system identifier: a restore into another
 *		cluster, or pg_upgrade, changes it), this database (each has its own
 *		pg_proc), and this installation of chancy (its jobs table:
 *		pg_restore --clean drops and creates functions and chancy alike, and
 *		pg_upgrade keeps relation OIDs, not the system identifier).  A clone
 *		of the cluster keeps all three, and its function OIDs too.  Valid
 *		once chancy_catalog() has run.
 */
uint64
catalog_identity(void)
{
	Assert(OidIsValid(catalog.jobs_relid));
	return hash_combine64(hash_combine64(GetSystemIdentifier(), (uint64) MyDatabaseId),
						  (uint64) catalog.jobs_relid);
}

/* Set one of the settings of chancy's statements. */
static void
set_statement_option(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * catalog_settings
 *		Give what follows the settings of chancy's statements (see the file
 *		header); returns the GUC nest level to pass to AtEOXact_GUC.
 */
int
catalog_settings(void)
{
	int			nestlevel = NewGUCNestLevel();

	set_statement_option("search_path", "pg_catalog, pg_temp");
	set_statement_option("enable_seqscan", "off");
	set_statement_option("enable_bitmapscan", "off");
	set_statement_option("enable_sort", "off");
	set_statement_option("jit", "off");
	return nestlevel;
}

/*
 * catalog_sql_begin
 *		Start running chancy's own statements (SPI): with the settings the
 *		file header describes, and, if as_owner, as the owner of chancy's
 *		tables in a security-restricted operation.  catalog_sql_end() undoes
 *		it all; an error undoes it as the transaction aborts.
 */
void
catalog_sql_begin(ChancyCatalog *cat, bool as_owner, CatalogSql *sql)
{
	sql->caller = CurrentMemoryContext;
	SPI_connect();
	sql->as_owner = as_owner;
	if (as_owner)
	{
		GetUserIdAndSecContext(&sql->save_userid, &sql->save_sec_context);
		SetUserIdAndSecContext(cat->owner, sql->save_sec_context |
							   SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	}
	sql->nestlevel = catalog_settings();
}

/* End what catalog_sql_begin() started. */
void
catalog_sql_end(CatalogSql *sql)
{
	AtEOXact_GUC(true, sql->nestlevel);
	if (sql->as_owner)
		SetUserIdAndSecContext(sql->save_userid, sql->save_sec_context);
	SPI_finish();
}

/* chancy_queues changed: the cached queue names are stale. */
void
catalog_forget_queues(void)
{
	queues_stale = true;
}

/*
 * catalog_queue_declared
 *		Is queue declared: a row of chancy_queues, or listed in chancy.queues
 *		(which the supervisor declares when it starts)?  The names are cached
 *		per backend until chancy_queues changes.
 */
bool
catalog_queue_declared(ChancyCatalog *cat, const char *queue)
{
	CatalogSql	sql;
	char		key[NAMEDATALEN];

	if (strlen(queue) >= NAMEDATALEN)
		return false;
	if (chancy_queue_configured(queue))
		return true;
	if (declared_queues == NULL || queues_stale)
	{
		HASHCTL		ctl;

		if (declared_queues)
			hash_destroy(declared_queues);
		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = NAMEDATALEN;
		declared_queues = hash_create("chancy queues", 16, &ctl,
									  HASH_ELEM | HASH_STRINGS);
		queues_stale = false;
		catalog_sql_begin(cat, true, &sql);
		if (SPI_execute(psprintf("SELECT name FROM %s.chancy_queues", cat->nspname),
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read chancy_queues");
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			char	   *name = SPI_getvalue(SPI_tuptable->vals[r],
											SPI_tuptable->tupdesc, 1);

			if (strlen(name) < NAMEDATALEN)
				(void) hash_search(declared_queues, name, HASH_ENTER, NULL);
		}
		catalog_sql_end(&sql);
	}
	strlcpy(key, queue, NAMEDATALEN);
	return hash_search(declared_queues, key, HASH_FIND, NULL) != NULL;
}
