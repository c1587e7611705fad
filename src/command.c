/*-------------------------------------------------------------------------
 *
 * command.c
 *	  Jobs that run a SQL command: pg_cron's form of a schedule.  The job
 *	  function is chancy's own chancy_run_command(kwargs jsonb), and kwargs
 *	  are {"command": "VACUUM big", "search_path": "app, public"}: a push
 *	  records its own search_path unless one is given, and the command
 *	  runs with it, so that its names are looked up along the path the
 *	  pusher had (a path that never was recorded: pg_catalog, pg_temp).
 *
 * A command runs the way a client's simple query runs (psql -c): at top
 * level, in transactions of its own, so that VACUUM, CREATE INDEX
 * CONCURRENTLY or CALL of a procedure that commits work as they do there.
 * Several statements run in one transaction (an implicit block), so a
 * statement that refuses to run in a block must be alone.
 *
 * The executor (executor.c) runs a command job alone, between its groups,
 * as the job's pusher, in a security-restricted operation like every job:
 * no SET ROLE, no SET SESSION AUTHORIZATION, no temporary tables, PREPARE,
 * LISTEN or cursors WITH HOLD.  Its effects commit before the executor
 * records the outcome, in a transaction of its own: a command is done at
 * least once, not exactly once (one stopped by a crash or by the executor's
 * shutdown after it committed some of its work may run again, if it has
 * attempts left).  The settings a command made (SET) are reset before its
 * outcome is recorded, and the executor makes way for a fresh one after it.
 *
 * A push checks the command: it must parse (the objects it names need not
 * exist yet), and transaction control and COPY to or from the client, which
 * have no meaning here, are refused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "tcop/dest.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "catalog/namespace.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "chancy_internal.h"

PG_FUNCTION_INFO_V1(chancy_run_command);

/* The keys of a jsonb object, for an error message. */
static char *
kwargs_keys(Jsonb *jb)
{
	StringInfoData buf;
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	initStringInfo(&buf);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_KEY)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
							 quote_literal_cstr(pnstrdup(v.val.string.val, v.val.string.len)));
	return buf.len > 0 ? buf.data : "(none)";
}

/*
 * kwargs_string
 *		The string kwargs holds under key, NULL if it has none; an error if
 *		it holds anything else.
 */
static char *
kwargs_string(Jsonb *jb, const char *key)
{
	JsonbValue *value = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL);

	if (value == NULL)
		return NULL;
	if (value->type == jbvNull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the %s of a command job must not be null", key)));
	if (value->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the %s of a command job must be a string", key),
				 errhint("Write kwargs such as {\"command\": \"VACUUM big\", \"search_path\": \"app, public\"}.")));
	return pnstrdup(value->val.string.val, value->val.string.len);
}

/*
 * command_kwargs
 *		The command of a command job's kwargs and the search_path it runs
 *		with (NULL: none recorded): an object with key "command", a string,
 *		and maybe "search_path", a string, and nothing else.
 */
static char *
command_kwargs(Datum kwargs, char **search_path)
{
	Jsonb	   *jb = DatumGetJsonbP(kwargs);
	char	   *command = NULL;
	int			nkeys = 0;

	*search_path = NULL;
	if (JB_ROOT_IS_OBJECT(jb))
	{
		command = kwargs_string(jb, "command");
		*search_path = kwargs_string(jb, "search_path");
		nkeys = (command != NULL) + (*search_path != NULL);
	}
	if (command == NULL || nkeys != JB_ROOT_COUNT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid kwargs of a command job"),
				 errdetail("The kwargs of chancy_run_command are {\"command\": \"...\"}, a SQL command, and maybe the \"search_path\" it runs with; they have the keys %s.",
						   JB_ROOT_IS_OBJECT(jb) ? kwargs_keys(jb) : "(none)"),
				 errhint("Write chancy_with_kwargs(chancy_job('chancy_run_command'), jsonb_build_object('command', 'VACUUM big')), or use chancy_schedule(name, cron, command).")));
	return command;
}

/*
 * parse_error_context
 *		A syntax error in a command points into the command, not into the
 *		statement that pushed it.
 */
static void
parse_error_context(void *arg)
{
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery((const char *) arg);
	}
}

/*
 * parse_command
 *		The statements of a command, parsed; an error for what a command
 *		cannot do.
 */
static List *
parse_command(const char *command)
{
	ErrorContextCallback errcallback;
	List	   *parsed;
	ListCell   *lc;

	errcallback.callback = parse_error_context;
	errcallback.arg = (void *) command;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	parsed = raw_parser(command, RAW_PARSE_DEFAULT);
	error_context_stack = errcallback.previous;

	if (parsed == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the command of a command job is empty"),
				 errhint("Give a SQL command, such as 'VACUUM big'.")));
	foreach(lc, parsed)
	{
		Node	   *stmt = lfirst_node(RawStmt, lc)->stmt;

		if (IsA(stmt, TransactionStmt))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("a command job cannot contain %s",
							GetCommandTagName(CreateCommandTag(stmt))),
					 errdetail("A command runs in a transaction of its own; several statements run in one."),
					 errhint("Leave transaction control out, or put the work in a procedure that commits and CALL it.")));
		if (IsA(stmt, CopyStmt) && ((CopyStmt *) stmt)->filename == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("a command job cannot COPY to or from the client"),
					 errdetail("A command job has no client."),
					 errhint("COPY to or from a file or program of the server, or use INSERT ... SELECT.")));
	}
	return parsed;
}

/*
 * command_check
 *		At push: kwargs of a command job hold a command that may run.
 *		Returns them with the pusher's search_path recorded, if they had
 *		none: names in the command are looked up at run time along the path
 *		the pusher had, not the executor's default one.  As another role
 *		(a SECURITY DEFINER function, a job), the path in force may be the
 *		caller's to choose: then the kwargs must give it.
 */
Datum
command_check(Datum kwargs)
{
	char	   *search_path;
	JsonbParseState *state = NULL;
	JsonbValue	key;
	JsonbValue	value;

	(void) parse_command(command_kwargs(kwargs, &search_path));
	if (search_path != NULL)
	{
		/* a path that cannot be set would fail every run: refuse it now */
		(void) set_config_option("search_path", search_path, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SET, false, ERROR, false);
		return kwargs;
	}
	if (GetUserId() != GetOuterUserId() || InLocalUserIdChange() ||
		InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a command job pushed as another role than the session's must give its search_path"),
				 errdetail("It runs as role \"%s\"; the search_path in force here (%s) may be its caller's to choose.",
						   GetUserNameFromId(GetUserId(), false), namespace_search_path),
				 errhint("Add \"search_path\" to the kwargs, as in jsonb_build_object('command', ..., 'search_path', 'pg_catalog, app'), or give the SECURITY DEFINER function a SET search_path and pass it on.")));
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	key.type = jbvString;
	key.val.string.val = "search_path";
	key.val.string.len = strlen(key.val.string.val);
	pushJsonbValue(&state, WJB_KEY, &key);
	value.type = jbvString;
	value.val.string.val = namespace_search_path;
	value.val.string.len = strlen(value.val.string.val);
	pushJsonbValue(&state, WJB_VALUE, &value);
	return DirectFunctionCall2(jsonb_concat, kwargs,
							   JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL))));
}

/*
 * log_command
 *		log_statement applies to a command as to a client's query: with
 *		'ddl', a command job's DDL is in the log like any other.
 */
static void
log_command(List *parsed, const char *command)
{
	ListCell   *lc;

	foreach(lc, parsed)
	{
		if (log_statement == LOGSTMT_ALL ||
			(log_statement != LOGSTMT_NONE &&
			 GetCommandLogLevel(lfirst_node(RawStmt, lc)->stmt) <= log_statement))
		{
			ereport(LOG,
					(errmsg("statement: %s", command),
					 errhidestmt(true)));
			return;
		}
	}
}

/*
 * run_statement
 *		Plan and run one parsed statement of command at top level, in the
 *		transaction open now; its completion tag ("INSERT 0 3").
 */
static char *
run_statement(RawStmt *raw, const char *command)
{
	bool		snapshot_set = false;
	List	   *queries;
	List	   *plans;
	Portal		portal;
	DestReceiver *receiver;
	QueryCompletion qc;

	if (analyze_requires_snapshot(raw))
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		snapshot_set = true;
	}
	queries = pg_analyze_and_rewrite_fixedparams(raw, command, NULL, 0, NULL);
	plans = pg_plan_queries(queries, command, CURSOR_OPT_PARALLEL_OK, NULL);
	if (snapshot_set)
		PopActiveSnapshot();

	portal = CreatePortal("", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, command, CreateCommandTag(raw->stmt), plans, NULL);
	PortalStart(portal, NULL, 0, InvalidSnapshot);
	receiver = CreateDestReceiver(DestNone);
	InitializeQueryCompletion(&qc);
	(void) PortalRun(portal, FETCH_ALL, true, true, receiver, receiver, &qc);
	receiver->rDestroy(receiver);
	PortalDrop(portal, false);
	/* as a client sees it */
	if (!command_tag_display_rowcount(qc.commandTag))
		return pstrdup(GetCommandTagName(qc.commandTag));
	return psprintf(qc.commandTag == CMDTAG_INSERT ? "%s 0 " UINT64_FORMAT : "%s " UINT64_FORMAT,
					GetCommandTagName(qc.commandTag), qc.nprocessed);
}

/*
 * command_run
 *		In the executor, with no transaction open: run the command of a
 *		command job's kwargs as the current role, as a client's simple query
 *		would run.  Returns a jsonb array of the statements' completion tags
 *		(["VACUUM"]), allocated in the caller's memory context.  On an error
 *		the caller aborts the transaction (AbortOutOfAnyTransaction).
 */
Datum
command_run(Datum kwargs)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "chancy command",
											  ALLOCSET_DEFAULT_SIZES);
	char	   *command;
	char	   *search_path;
	List	   *parsed;
	bool		implicit_block;
	JsonbParseState *state = NULL;
	ListCell   *lc;
	Datum		result;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	command = command_kwargs(kwargs, &search_path);
	parsed = parse_command(command);
	/* one recorded by no push (a row written by hand): chancy's own */
	(void) set_config_option("search_path", search_path ? search_path : "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SET, true, 0, false);
	implicit_block = list_length(parsed) > 1;
	if (implicit_block)
		BeginImplicitTransactionBlock();
	debug_query_string = command;
	pgstat_report_activity(STATE_RUNNING, command);
	log_command(parsed, command);

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, parsed)
	{
		/* a statement's plan goes when it has run, as in a client's query */
		MemoryContext stmt_cxt = AllocSetContextCreate(cxt, "chancy command statement",
													   ALLOCSET_DEFAULT_SIZES);
		JsonbValue	tag;

		MemoryContextSwitchTo(stmt_cxt);
		tag.val.string.val = run_statement(lfirst_node(RawStmt, lc), command);
		MemoryContextSwitchTo(cxt);
		tag.type = jbvString;
		tag.val.string.val = pstrdup(tag.val.string.val);
		tag.val.string.len = strlen(tag.val.string.val);
		MemoryContextDelete(stmt_cxt);
		pushJsonbValue(&state, WJB_ELEM, &tag);
		/* the next statement sees what this one did */
		if (lnext(parsed, lc) != NULL)
			CommandCounterIncrement();
	}
	if (implicit_block)
		EndImplicitTransactionBlock();
	CommitTransactionCommand();
	debug_query_string = NULL;

	MemoryContextSwitchTo(caller);
	result = JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_ARRAY,
															 NULL)));
	MemoryContextDelete(cxt);
	return result;
}

/*
 * chancy_run_command
 *		The job function of command jobs.  The executor runs those itself
 *		(command_run()); called in a statement, where a command cannot run at
 *		top level, it is an error.
 */
Datum
chancy_run_command(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("chancy_run_command() runs only as a job"),
			 errhint("Push it, e.g. chancy_push('chancy_run_command', '{\"command\": \"VACUUM big\"}'), or schedule it with chancy_schedule(name, cron, command).")));
	PG_RETURN_NULL();
}
