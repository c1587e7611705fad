/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  The utility commands that concern chancy's workers, seen through a
 *	  ProcessUtility hook.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME TO and ... SET TABLESPACE, and
 * CREATE DATABASE ... TEMPLATE refuse to run while other sessions use the
 * database, and chancy's workers are sessions there.  For such a command
 * that may go ahead (the caller may run it, and nobody else uses the
 * database), the workers leave first, and may come back once it is over.
 * The database is locked before that is checked, as the command itself will
 * lock it, so that nobody can connect in between: the workers are not
 * moved for a command that then fails because of another session.
 *
 * The schema chancy lives in cannot be renamed: chancy's statements and
 * the bodies of its SQL functions name it, and a schema of the old name
 * created after the rename (by its owner, in PostgreSQL 15 the database
 * owner for public) would receive what they run as the extension's owner.
 *
 * CREATE EXTENSION and ALTER EXTENSION ... UPDATE of chancy wake the
 * launcher at commit; DROP EXTENSION wakes the supervisor, which leaves;
 * COMMIT PREPARED makes the supervisor and executors look again, since the
 * prepared transaction's own wake-ups were dropped at PREPARE (wakeup.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "chancy_internal.h"

static ProcessUtility_hook_type prev_utility_hook = NULL;

/* May the current role create databases? */
static bool
may_create_databases(void)
{
	HeapTuple	tp;
	bool		ok;

	if (superuser())
		return true;
	tp = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (!HeapTupleIsValid(tp))
		return false;
	ok = ((Form_pg_authid) GETSTRUCT(tp))->rolcreatedb;
	ReleaseSysCache(tp);
	return ok;
}

/* Is database dboid marked as a template? */
static bool
is_template(Oid dboid)
{
	HeapTuple	tp = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	bool		template;

	if (!HeapTupleIsValid(tp))
		return false;
	template = ((Form_pg_database) GETSTRUCT(tp))->datistemplate;
	ReleaseSysCache(tp);
	return template;
}

/* Does anyone but chancy's workers use database dboid? */
static bool
used_by_others(Oid dboid)
{
	Oid			argtype = OIDOID;
	Datum		arg = ObjectIdGetDatum(dboid);
	bool		used;
	bool		isnull;
	int			nestlevel;

	if (CountDBConnections(dboid) > 0)
		return true;
	/* a prepared transaction in it blocks the command too */
	SPI_connect();
	nestlevel = catalog_settings();
	if (SPI_execute_with_args("SELECT EXISTS (SELECT FROM pg_prepared_xacts x"
							  " JOIN pg_database d ON d.datname = x.database"
							  " WHERE d.oid = $1)",
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count prepared transactions");
	used = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull));
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();
	return used;
}

/*
 * refuse_renaming_chancy_schema
 *		ALTER SCHEMA name RENAME TO ...: an error if chancy lives in it.
 */
static void
refuse_renaming_chancy_schema(const char *name)
{
	Oid			nsp;

	if (!IsTransactionState() ||
		chancy_extension(&nsp, NULL) == EXTENSION_MISSING ||
		get_namespace_oid(name, true) != nsp)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot rename schema \"%s\"", name),
			 errdetail("Extension chancy is installed in it, and its functions and workers refer to it by name."),
			 errhint("Leave the schema its name, or drop extension chancy first.")));
}

/*
 * exclusive_target
 *		The database a utility command needs alone, if it is one chancy
 *		serves and the command may go ahead; else InvalidOid.  *lockmode is
 *		how the command locks it; *force that it terminates other sessions.
 */
static Oid
exclusive_target(Node *stmt, LOCKMODE *lockmode, bool *force)
{
	const char *dbname = NULL;
	bool		must_own = true;
	ListCell   *lc;
	Oid			dboid;

	*lockmode = AccessExclusiveLock;
	*force = false;
	if (IsA(stmt, DropdbStmt))
	{
		dbname = ((DropdbStmt *) stmt)->dbname;
		foreach(lc, ((DropdbStmt *) stmt)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "force") == 0)
				*force = true;
	}
	else if (IsA(stmt, RenameStmt) &&
			 ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
	{
		dbname = ((RenameStmt *) stmt)->subname;
		if (!may_create_databases())
			return InvalidOid;
	}
	else if (IsA(stmt, AlterDatabaseStmt))
	{
		foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				dbname = ((AlterDatabaseStmt *) stmt)->dbname;
	}
	else if (IsA(stmt, CreatedbStmt))
	{
		foreach(lc, ((CreatedbStmt *) stmt)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "template") == 0)
				dbname = defGetString((DefElem *) lfirst(lc));
		*lockmode = ShareLock;
		must_own = false;
		if (dbname && !may_create_databases())
			return InvalidOid;
	}
	if (dbname == NULL)
		return InvalidOid;

	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid) || dboid == MyDatabaseId ||
		slots_db_find(dboid) < 0)
		return InvalidOid;
	if ((must_own || !is_template(dboid)) &&
		!chancy_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;
	return dboid;
}

/*
 * writes_jobs
 *		Is chancy's chancy_jobs among tables (RangeVars a statement named and
 *		holds locked)?  By OID: another table of that name is not it.
 */
static bool
writes_jobs(List *tables)
{
	Oid			nsp;
	Oid			jobs;
	ListCell   *lc;

	if (tables == NIL || chancy_extension(&nsp, NULL) != EXTENSION_READY)
		return false;
	jobs = get_relname_relid("chancy_jobs", nsp);
	foreach(lc, tables)
		if (OidIsValid(jobs) && RangeVarGetRelid(lfirst(lc), NoLock, true) == jobs)
			return true;
	return false;
}

/*
 * chancy_utility_hook
 *		Move chancy's workers out of the way of the commands that need a
 *		database alone; tell chancy's processes about CREATE, ALTER and DROP
 *		EXTENSION chancy, TRUNCATE and COPY FROM of chancy_jobs, and COMMIT
 *		PREPARED; warn when chancy is
 *		created in a database that chancy.database does not list.
 */
static void
chancy_utility_hook(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	Oid			blocked = InvalidOid;
	LOCKMODE	lockmode;
	bool		force;
	bool		created = false;
	bool		recount = false;
	List	   *written = NIL;	/* tables emptied or filled wholesale */
	Oid			target = exclusive_target(stmt, &lockmode, &force);

	if (OidIsValid(target))
	{
		/* nobody may connect from now until the command ends */
		LockSharedObject(DatabaseRelationId, target, 0, lockmode);
		if (force || !used_by_others(target))
		{
			slots_db_block(target);
			blocked = target;
		}
	}
	else if (IsA(stmt, CreatedbStmt) ||
			 (IsA(stmt, RenameStmt) &&
			  ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE))
		wakeup_launcher_at_commit();	/* a name of chancy.database may appear */
	else if (IsA(stmt, RenameStmt) &&
			 ((RenameStmt *) stmt)->renameType == OBJECT_SCHEMA)
		refuse_renaming_chancy_schema(((RenameStmt *) stmt)->subname);
	else if (IsA(stmt, CreateExtensionStmt) &&
			 strcmp(((CreateExtensionStmt *) stmt)->extname, "chancy") == 0)
	{
		wakeup_launcher_at_commit();
		wakeup_limits_at_commit();	/* keys of an earlier install: read again */
		recount = true;
		created = true;
	}
	else if (IsA(stmt, AlterExtensionStmt) &&
			 strcmp(((AlterExtensionStmt *) stmt)->extname, "chancy") == 0)
	{
		Oid			extension = get_extension_oid("chancy", true);

		/*
		 * As DROP EXTENSION does (ALTER does not): the supervisor's
		 * transactions, which take the extension first, finish before the
		 * update script takes chancy's tables in its own order.
		 */
		if (OidIsValid(extension))
			LockDatabaseObject(ExtensionRelationId, extension, 0, AccessExclusiveLock);
		wakeup_launcher_at_commit();
		wakeup_queues_changed_at_commit();
		wakeup_limits_at_commit();
		recount = true;
	}
	else if (IsA(stmt, DropStmt) &&
			 ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION)
	{
		ListCell   *lc;

		foreach(lc, ((DropStmt *) stmt)->objects)
			if (strcmp(strVal(lfirst(lc)), "chancy") == 0)
			{
				wakeup_queues_changed_at_commit();
				wakeup_limits_at_commit();
				recount = true;
			}
	}
	else if (IsA(stmt, TruncateStmt))
		written = ((TruncateStmt *) stmt)->relations;
	else if (IsA(stmt, CopyStmt) && ((CopyStmt *) stmt)->is_from &&
			 ((CopyStmt *) stmt)->relation != NULL)
		written = list_make1(((CopyStmt *) stmt)->relation);	/* a restore */
	else if (IsA(stmt, TransactionStmt) &&
			 ((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED)
	{
		/* what the prepared transaction changed is not known here */
		wakeup_queues_changed_at_commit();
		wakeup_limits_at_commit();
		recount = true;
	}

	PG_TRY();
	{
		if (prev_utility_hook)
			prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
							  queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		/* done or not, the launcher decides again */
		if (OidIsValid(blocked))
			slots_db_unblock(blocked);
	}
	PG_END_TRY();
	if (created)
		catalog_warn_unlisted();

	/*
	 * Jobs written or removed behind chancy's back (TRUNCATE, COPY FROM: a
	 * restore), by a prepared transaction, or a new install: the gauges are
	 * counted again (stats.c), once this transaction commits and its
	 * changes can be seen.
	 */
	if (recount || writes_jobs(written))
		wakeup_recount_at_commit();
	/* DROP DATABASE (it cannot run in a transaction block): its keys go,
	 * whether it was served or not */
	if (OidIsValid(target) && IsA(stmt, DropdbStmt))
	{
		flow_forget_database(target);
		stats_forget_database(target);
	}
}

/* Install the utility hook (from _PG_init). */
void
chancy_ddl_init(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = chancy_utility_hook;
}
