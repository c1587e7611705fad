/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  Recurring jobs: chancy_schedule() and chancy_unschedule(), and the
 *	  supervisor's firing of the schedules that are due.
 *
 * A schedule is a row of chancy_schedules: a cron expression (cron.c) read
 * in a time zone, a job value, and the next time it fires.  The database's
 * supervisor fires the due schedules (up to FIRE_BATCH) in one transaction:
 * it plans each one's fire times, pushes the jobs of each owner's schedules
 * in one chancy_push_many() as that owner, checked exactly like a push by
 * that role, with meta {"schedule": name, "fire_at": time}, and moves every
 * next_fire_at on in one UPDATE.  So each fire time makes one job, whatever
 * crashes: the pushes and the moves commit together or not at all.
 *
 * The supervisor fires a schedule FIRE_LEAD_MS before its fire time, its
 * job's scheduled_at the fire time, so that the executors start the job on
 * time, and sleeps until the next schedule is that close.  (So a change to
 * a schedule in the last FIRE_LEAD_MS before a fire time acts after it.)
 * A fire time more than FIRE_GRACE_MS past when the supervisor gets to it
 * was missed (the server was down, or the supervisor stopped): it is
 * skipped and counted, unless it lies within the schedule's catch_up
 * window, where each one is pushed, oldest first.  With overlap off, a fire
 * is skipped while the schedule's previous job is live.  A push that fails
 * (the owner may no longer execute the function, or was dropped) leaves a
 * failed job with the error, so that a fire never vanishes unseen.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

/* a fire time later than this when due counts as missed */
#define FIRE_GRACE_MS 10000

/*
 * A schedule is fired this long before its fire time, its job pushed to
 * run at the fire time: the executors then start it on time, instead of
 * after the push of a thousand jobs.  Not one whose fire depends on its
 * last job (overlap off, or a unique key the last job may hold until just
 * before the fire time): that one fires at its time.
 */
#define FIRE_LEAD_MS 40
/* ... which ones are fired ahead, in SQL on chancy_schedules */
#define FIRED_AHEAD_SQL "(overlap AND (job).unique_key IS NULL)"

/* at most this many missed fire times of a schedule are caught up */
#define CATCH_UP_MAX 1000

/* at most this many schedules are fired per transaction */
#define FIRE_BATCH 1000

/*
 * How long a push may wait for another transaction's lock (an open
 * transaction holding the job's unique key, say): an owner's jobs at once,
 * then each on its own after that failed.  Short, so that no role holds up
 * the fires of others for long.
 */
#define PUSH_LOCK_TIMEOUT "100ms"
#define PUSH_ONE_LOCK_TIMEOUT "10ms"

/* at most this many fires are pushed per transaction */
#define FIRES_PER_BATCH 10000

/* the longest catch_up window: 366 days, in ms */
#define CATCH_UP_WINDOW_MAX_MS INT64CONST(31622400000)

/* missed fire times are counted one by one up to this many */
#define SKIP_COUNT_MAX 100000

/* api.c: the one rule for chancy's intervals */
extern Datum chancy_interval_ms(PG_FUNCTION_ARGS);

PG_FUNCTION_INFO_V1(chancy_schedule);
PG_FUNCTION_INFO_V1(chancy_unschedule);
PG_FUNCTION_INFO_V1(chancy_schedules_changed);

/* A due schedule, as the supervisor reads it, and what firing it does */
typedef struct DueSchedule
{
	char	   *name;
	char	   *cron;
	char	   *time_zone;
	Datum		job;
	int64		catch_up_ms;	/* -1: none */
	bool		overlap;
	bool		ahead;			/* fired ahead: see FIRE_LEAD_MS */
	TimestampTz next_fire_at;
	Oid			owner;
	bool		last_live;		/* its last job is pending, running or retrying */
	Oid			function;		/* the function its jobs must run (see expect_function) */

	/* set by plan_fires() */
	bool		broken;			/* its firing raised an error: disable it */
	int			nfires;
	TimestampTz *fire_at;		/* the fire times to push, oldest first */
	TimestampTz next;			/* its next fire time after now */
	int64		skips;			/* missed, or skipped for overlap */
	int64		missed;			/* neither on time nor in the window */
	TimestampTz first_missed;
	bool		jumped;			/* missed ones not all counted */

	bool		deferred;		/* left for the next batch (FIRES_PER_BATCH) */

	/* set as it is pushed */
	int64		last_job;
	bool		pushed;			/* a fire's push went through: the function is */
	/* the expected one, kept with its owner and digest as they are now */
} DueSchedule;

/*
 * lock_schedule
 *		Lock schedule name, if there is one, and check that role may change
 *		or remove it: its owner, a member of it, or a superuser may.
 *		Returns its owner, or InvalidOid if there is none.  Runs inside
 *		catalog_sql_begin().
 */
static Oid
lock_schedule(ChancyCatalog *cat, const char *name, Oid role, bool replacing)
{
	Datum		arg = CStringGetTextDatum(name);
	Oid			argtype = TEXTOID;
	bool		isnull;
	Oid			owner;

	if (SPI_execute_with_args(psprintf("SELECT owner::oid FROM %s.chancy_schedules"
									   " WHERE name = $1 FOR UPDATE", cat->nspname),
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read chancy_schedules");
	if (SPI_processed == 0)
		return InvalidOid;
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	if (!has_privs_of_role(role, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for schedule \"%s\"", name),
				 errdetail("Only its owner, a member of that role, or a superuser may change or remove it."),
				 replacing ? errhint("Choose another name for a schedule of your own.") : 0));
	return owner;
}

/*
 * fire_until
 *		The latest fire time that is fired at now: FIRE_LEAD_MS ahead for a
 *		schedule fired ahead, else now.
 */
static TimestampTz
fire_until(bool ahead, TimestampTz now)
{
	return ahead ? TimestampTzPlusMilliseconds(now, FIRE_LEAD_MS) : now;
}

/*
 * chancy_schedule(name, cron, job, time_zone, catch_up, overlap, enabled)
 *		SQL: create or replace a schedule; returns its row.  The job is
 *		checked as a push of the current role would be, and the role
 *		becomes the schedule's owner, whose the pushed jobs are.
 */
Datum
chancy_schedule(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	char	   *name;
	char	   *cron;
	char	   *time_zone;
	JobValue	job;
	int64		catch_up_ms = -1;
	bool		overlap;
	bool		enabled;
	TimestampTz next;
	CatalogSql	sql;
	Oid			caller = GetUserId();
	Datum		args[14];
	Oid			argtypes[14] = {TEXTOID, TEXTOID, TEXTOID, cat->job_typid,
		BOOLOID, INTERVALOID, BOOLOID, TIMESTAMPTZOID, OIDOID, OIDOID,
	OIDOID, OIDOID, INT8OID, INT8OID};
	char		nulls[14] = "              ";
	int			tries = 0;
	Datum		result;

	for (int i = 0; i < 7; i++)
		if (PG_ARGISNULL(i) && i != 4)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("only catch_up of chancy_schedule() may be NULL"),
					 errhint("Omit an argument to take its default.")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot change schedules on a standby")));

	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (name[0] == '\0' || strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid schedule name \"%s\"", name),
				 errdetail("A schedule's name is 1 to %d bytes long.", NAMEDATALEN - 1)));
	cron = text_to_cstring(PG_GETARG_TEXT_PP(1));
	time_zone = pstrdup(chancy_zone_name(text_to_cstring(PG_GETARG_TEXT_PP(3))));
	if (!PG_ARGISNULL(4))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(4);

		catch_up_ms = DatumGetInt64(DirectFunctionCall1(chancy_interval_ms,
														IntervalPGetDatum(iv)));
		if (catch_up_ms < 0 || catch_up_ms > CATCH_UP_WINDOW_MAX_MS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("catch_up must be between 0 and 366 days"),
					 errhint("Give the window in which missed fire times are still pushed, such as '1 day', or NULL to skip them.")));
	}
	overlap = PG_GETARG_BOOL(5);
	enabled = PG_GETARG_BOOL(6);

	job_deform(cat, PG_GETARG_HEAPTUPLEHEADER(2), &job);
	if (!job.nulls[JA_SCHEDULED_AT])
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the job of a schedule must not have a scheduled_at"),
				 errdetail("Each fire pushes the job to run at its fire time."),
				 errhint("Use chancy_with_scheduled_at(job, NULL).")));
	job_check(&job);
	/* a template of its limit keys must fill from its kwargs (a copy: the
	 * template stays, filled at each fire) */
	{
		JobValue	filled = job;

		job_fill_limit_keys(&filled);
	}
	job_authorize(cat, &job);

	/*
	 * Its first fire time after now, as the supervisor sees it (not the
	 * transaction's start: it may have fired since, FIRE_LEAD_MS ahead).
	 */
	next = chancy_cron_next_time(cron,
								 fire_until(overlap && job.nulls[JA_UNIQUE_KEY],
											GetCurrentTimestamp()),
								 time_zone);

	catalog_sql_begin(cat, true, &sql);
	args[0] = CStringGetTextDatum(name);
	args[1] = CStringGetTextDatum(cron);
	args[2] = CStringGetTextDatum(time_zone);
	args[3] = job_form(cat, &job);
	args[4] = BoolGetDatum(enabled);
	args[5] = PG_GETARG_DATUM(4);
	nulls[5] = PG_ARGISNULL(4) ? 'n' : ' ';
	args[6] = BoolGetDatum(overlap);
	args[7] = TimestampTzGetDatum(next);
	args[8] = ObjectIdGetDatum(caller);
	args[10] = ObjectIdGetDatum(job.function_oid);
	nulls[10] = OidIsValid(job.function_oid) ? ' ' : 'n';
	args[11] = ObjectIdGetDatum(job.function_owner);
	nulls[11] = OidIsValid(job.function_owner) ? ' ' : 'n';
	args[12] = Int64GetDatum((int64) catalog_identity());
	args[13] = Int64GetDatum(job.function_digest);
	nulls[13] = job.function_digest != 0 ? ' ' : 'n';

	/*
	 * The row is changed only if its owner is still the one checked: a
	 * schedule that another transaction made or replaced meanwhile is
	 * looked at again.  A schedule whose expression, zone and enabling are
	 * unchanged keeps its next fire time (replacing its job neither skips
	 * nor repeats a fire); else it fires next after now, and never again at
	 * a time it fired.
	 */
	for (;;)
	{
		Oid			owner = lock_schedule(cat, name, caller, true);

		args[9] = ObjectIdGetDatum(owner);
		if (SPI_execute_with_args(psprintf(
										   "INSERT INTO %1$s.chancy_schedules AS s"
										   " (name, cron, time_zone, job, enabled, catch_up, overlap,"
										   "  next_fire_at, owner, function_oid, function_owner,"
										   "  function_catalog, function_digest)"
										   " VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $5 THEN $8 END,"
										   "  $9::pg_catalog.regrole, $11, $12::pg_catalog.regrole, $13, $14)"
										   " ON CONFLICT (name) DO UPDATE SET"
										   "  next_fire_at = CASE WHEN NOT $5 THEN NULL"
										   "   WHEN s.enabled AND s.cron = $2 AND s.time_zone = $3"
										   "    AND s.next_fire_at IS NOT NULL THEN s.next_fire_at"
										   "   WHEN s.last_fire_at IS NULL THEN $8"
										   "   ELSE greatest($8, %1$s.chancy_cron_next($2, s.last_fire_at, $3)) END,"
										   "  cron = $2, time_zone = $3, job = $4, enabled = $5,"
										   "  catch_up = $6, overlap = $7, owner = EXCLUDED.owner,"
										   "  function_oid = $11, function_owner = EXCLUDED.function_owner,"
										   "  function_catalog = $13, function_digest = $14, replicated = false"
										   " WHERE s.owner OPERATOR(pg_catalog.=) $10::pg_catalog.regrole"
										   " RETURNING *", cat->nspname),
								  14, argtypes, args, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "could not write chancy_schedules");
		if (SPI_processed == 1)
			break;
		if (++tries == 3)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("schedule \"%s\" was changed by another transaction meanwhile", name),
					 errhint("Try again.")));
	}
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	catalog_sql_end(&sql);
	PG_RETURN_DATUM(result);
}

/*
 * chancy_unschedule(name text) RETURNS boolean
 *		SQL: remove a schedule; its jobs already pushed stay.
 */
Datum
chancy_unschedule(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	char	   *name;
	CatalogSql	sql;
	Datum		arg;
	Oid			argtype = TEXTOID;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name must not be NULL"),
				 errhint("See chancy_schedule_status for the schedules you may manage.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	arg = CStringGetTextDatum(name);
	catalog_sql_begin(cat, true, &sql);
	if (!OidIsValid(lock_schedule(cat, name, sql.save_userid, false)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("schedule \"%s\" does not exist", name),
				 errhint("See chancy_schedule_status for the schedules you may manage.")));
	if (SPI_execute_with_args(psprintf("DELETE FROM %s.chancy_schedules WHERE name = $1",
									   cat->nspname),
							  1, &argtype, &arg, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not write chancy_schedules");
	catalog_sql_end(&sql);
	PG_RETURN_BOOL(true);
}

/*
 * chancy_schedules_changed
 *		Statement trigger on chancy_schedules: the supervisor looks again
 *		when the change commits.
 */
Datum
chancy_schedules_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function chancy_schedules_changed() must be called as a trigger")));
	wakeup_supervisor_at_commit();
	return PointerGetDatum(NULL);
}

/*
 * fire_job
 *		The job schedule s pushes for fire time at: its job, with
 *		{"schedule": name, "fire_at": at} merged into its meta (the time in
 *		ISO 8601, UTC, whatever the server's DateStyle), to run at "at" if
 *		that is still to come (FIRE_LEAD_MS).
 */
static Datum
fire_job(ChancyCatalog *cat, DueSchedule *s, TimestampTz at)
{
	int			utc = 0;
	StringInfoData buf;
	JobValue	job;
	Datum		meta;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"schedule\": ");
	escape_json(&buf, s->name);
	appendStringInfoString(&buf, ", \"fire_at\": ");
	escape_json(&buf, JsonEncodeDateTime(NULL, TimestampTzGetDatum(at), TIMESTAMPTZOID, &utc));
	appendStringInfoChar(&buf, '}');
	meta = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));

	job_deform(cat, DatumGetHeapTupleHeader(s->job), &job);
	if (!job.nulls[JA_META])
		meta = DirectFunctionCall2(jsonb_concat, job.values[JA_META], meta);
	job.values[JA_META] = meta;
	job.nulls[JA_META] = false;
	if (at > GetCurrentTransactionStartTimestamp())
	{
		job.values[JA_SCHEDULED_AT] = TimestampTzGetDatum(at);
		job.nulls[JA_SCHEDULED_AT] = false;
	}
	return job_form(cat, &job);
}

/*
 * try_subtransaction
 *		Run fn(arg) in a subtransaction.  NULL if it went well; else the
 *		subtransaction is rolled back and its error returned, so that one
 *		schedule, or one push, cannot stop the others (a cancel or a
 *		shutdown is raised again).
 */
static ErrorData *
try_subtransaction(void (*fn) (void *arg), void *arg)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *error = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
		/* a cancel or a shutdown is the supervisor's, not the schedule's */
		if (error->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			error->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(error);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	return error;
}


/* Pushes of one owner's jobs, for try_subtransaction() */
typedef struct Push
{
	ChancyCatalog *cat;
	Oid			owner;
	const char *schedule;		/* for messages */
	int			n;
	Datum	   *jobs;
	Oid		   *functions;		/* the function each job must run */
	const char *lock_timeout;
	int64	   *ids;			/* out: the jobs' ids */
} Push;

/*
 * push_as_owner
 *		Push the jobs as the schedules' owner: chancy_push_many() checks them
 *		as it would a push of that role.  Then, as chancy, check that each
 *		runs the function its schedule was made with: the push resolves its
 *		function anew, as every push does.
 */
static void
push_as_owner(void *arg)
{
	Push	   *push = (Push *) arg;
	Oid			save_userid;
	int			save_sec_context;
	int64	   *ids;
	int			nestlevel;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(push->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u, the owner of schedule \"%s\", does not exist",
						push->owner, push->schedule),
				 errhint("Create the schedule again as an existing role.")));

	/*
	 * A push may wait for another transaction: one that holds the job's
	 * unique key, say.  No role may hold the supervisor up that way.
	 */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("lock_timeout", push->lock_timeout, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(push->owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ids = queue_push_checked(push->cat, push->jobs, push->n);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	AtEOXact_GUC(true, nestlevel);
	memcpy(push->ids, ids, sizeof(int64) * push->n);

	if (queue_run_other(push->cat, push->ids, push->functions, push->n))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the function of schedule \"%s\" is not the one it was made with",
						push->schedule),
				 errdetail("Its function was dropped and made again, or its job's definition changed, after the schedule was made; another function is not run in its place."),
				 errhint("Make the schedule again with chancy_schedule() to use the function as it is now.")));
}

/*
 * push_fire
 *		Push the job of one fire time of schedule s on its own; the job's
 *		id.  A push that fails is recorded as a failed job.
 */
static int64
push_fire(ChancyCatalog *cat, DueSchedule *s, TimestampTz fire_at)
{
	Datum		job = fire_job(cat, s, fire_at);
	int64		id;
	Push		push = {cat, s->owner, s->name, 1, &job, &s->function,
	PUSH_ONE_LOCK_TIMEOUT, &id};
	ErrorData  *error = try_subtransaction(push_as_owner, &push);

	if (error == NULL)
	{
		s->pushed = true;
		return id;
	}
	ereport(LOG,
			(errcode(error->sqlerrcode),
			 errmsg("schedule \"%s\" could not push its job: %s",
					s->name, error->message),
			 error->detail ? errdetail_internal("%s", error->detail) : 0));
	/* pushed by the owner, or by chancy's when that role is gone */
	return queue_push_refused(cat, job,
							  SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(s->owner))
							  ? s->owner : cat->owner, error);
}

/*
 * plan_fires
 *		Which fire times of a due schedule to push at now, how many it skips
 *		(missed, or live with overlap off), and its next fire time.  Only
 *		computes.  For try_subtransaction().
 */
static void
plan_fires(void *arg)
{
	DueSchedule *s = (DueSchedule *) arg;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz until = fire_until(s->ahead, now);
	TimestampTz at = s->next_fire_at;
	int64		run = 0;		/* missed since the last jump */
	int			caught_up = 0;
	int			room = 8;
	bool		live = s->last_live;

	s->nfires = 0;
	s->skips = 0;
	s->missed = 0;
	s->jumped = false;
	s->fire_at = palloc(sizeof(TimestampTz) * room);
	while (at <= until)
	{
		bool		on_time = now - at <= FIRE_GRACE_MS * INT64CONST(1000);
		bool		in_window = s->catch_up_ms >= 0 && caught_up < CATCH_UP_MAX &&
			now - at <= s->catch_up_ms * INT64CONST(1000);

		if (!on_time && !in_window)
		{
			if (s->missed++ == 0)
				s->first_missed = at;
			if (++run >= SKIP_COUNT_MAX)
			{
				/*
				 * A long outage of a frequent schedule: on to the start of
				 * what may still be pushed, without counting every one.
				 */
				int64		window_ms = FIRE_GRACE_MS;
				TimestampTz from;

				if (s->catch_up_ms >= 0 && caught_up < CATCH_UP_MAX)
					window_ms = Max(window_ms, s->catch_up_ms);
				from = now - window_ms * INT64CONST(1000);
				run = 0;
				if (at < from)
				{
					at = chancy_cron_next_time(s->cron, from, s->time_zone);
					s->jumped = true;
					continue;
				}
			}
		}
		else if (!s->overlap && live)
		{
			/* nothing more is pushed until now: count, then move on */
			if (++s->skips >= SKIP_COUNT_MAX)
			{
				at = chancy_cron_next_time(s->cron, now, s->time_zone);
				s->jumped = true;
				break;
			}
		}
		else
		{
			if (s->nfires == room)
			{
				room *= 2;
				s->fire_at = repalloc(s->fire_at, sizeof(TimestampTz) * room);
			}
			s->fire_at[s->nfires++] = at;
			live = true;
			if (!on_time)
				caught_up++;
		}
		at = chancy_cron_next_time(s->cron, at, s->time_zone);
	}
	s->next = at;
	s->skips += s->missed;
}

/*
 * disable_broken
 *		A schedule whose firing raised an error (its time zone left the
 *		time zone database, say): disable it, so that the others go on.
 */
static void
disable_broken(ChancyCatalog *cat, DueSchedule *s, ErrorData *error)
{
	Datum		arg = CStringGetTextDatum(s->name);
	Oid			argtype = TEXTOID;

	ereport(LOG,
			(errcode(error->sqlerrcode),
			 errmsg("schedule \"%s\" is disabled: %s", s->name, error->message),
			 errhint("Fix it with chancy_schedule(), which enables it again.")));
	if (SPI_execute_with_args(psprintf("UPDATE %s.chancy_schedules SET enabled = false,"
									   " next_fire_at = NULL WHERE name = $1",
									   cat->nspname),
							  1, &argtype, &arg, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write chancy_schedules");
}

/* The due schedules, for try_subtransaction() */
typedef struct DueSchedules
{
	DueSchedule *due;
	int			ndue;
} DueSchedules;

/* plan_fires() for every due schedule, for try_subtransaction() */
static void
plan_all_fires(void *arg)
{
	DueSchedules *all = (DueSchedules *) arg;

	for (int i = 0; i < all->ndue; i++)
		plan_fires(&all->due[i]);
}

/*
 * plan_due
 *		plan_fires() for every due schedule; a schedule whose planning fails
 *		(its time zone left the time zone database, say) is disabled, so
 *		that the others go on.  Schedules past FIRES_PER_BATCH fires are
 *		left for the next transaction.  Logs the fire times each missed.
 */
static void
plan_due(ChancyCatalog *cat, DueSchedule *due, int ndue)
{
	DueSchedules all = {due, ndue};

	/* one subtransaction for all, the usual case; one each to find a culprit */
	if (try_subtransaction(plan_all_fires, &all) != NULL)
		for (int i = 0; i < ndue; i++)
		{
			ErrorData  *error = try_subtransaction(plan_fires, &due[i]);

			if (error != NULL)
			{
				due[i].broken = true;
				disable_broken(cat, &due[i], error);
			}
		}

	/* a long catch-up of many schedules goes in several transactions */
	for (int i = 0, fires = 0; i < ndue; i++)
	{
		if (due[i].broken)
			continue;
		fires += due[i].nfires;
		due[i].deferred = fires > FIRES_PER_BATCH && fires > due[i].nfires;
	}

	for (int i = 0; i < ndue; i++)
	{
		DueSchedule *s = &due[i];

		if (s->broken || s->deferred || s->missed == 0)
			continue;
		ereport(LOG,
				(errmsg("schedule \"%s\" missed %s%lld fire time%s from %s on",
						s->name, s->jumped ? "at least " : "",
						(long long) s->missed, s->missed == 1 ? "" : "s",
						timestamptz_to_str(s->first_missed)),
				 errdetail("chancy was not running then, or not in this database; they are skipped and counted."),
				 errhint("A schedule's catch_up pushes the fire times missed within its window.")));
	}
}

/*
 * push_owner_fires
 *		Push the planned fires of the due schedules owned by due[first]'s
 *		owner, from first on, in one chancy_push_many() as that role; if it
 *		fails (one job its owner may no longer push, say), push them one by
 *		one, each failure a failed job.  Sets each schedule's last_job.
 */
static void
push_owner_fires(ChancyCatalog *cat, DueSchedule *due, int ndue, int first)
{
	Oid			owner = due[first].owner;
	int			n = 0;
	Push		push;
	ErrorData  *error;
	int			k = 0;

	for (int i = first; i < ndue; i++)
		if (due[i].owner == owner && !due[i].broken && !due[i].deferred)
			n += due[i].nfires;
	if (n == 0)
		return;
	push.cat = cat;
	push.owner = owner;
	push.schedule = due[first].name;
	push.n = n;
	push.lock_timeout = PUSH_LOCK_TIMEOUT;
	push.jobs = palloc(sizeof(Datum) * n);
	push.functions = palloc(sizeof(Oid) * n);
	push.ids = palloc(sizeof(int64) * n);
	for (int i = first; i < ndue; i++)
		if (due[i].owner == owner && !due[i].broken && !due[i].deferred)
			for (int f = 0; f < due[i].nfires; f++, k++)
			{
				push.jobs[k] = fire_job(cat, &due[i], due[i].fire_at[f]);
				push.functions[k] = due[i].function;
			}
	error = try_subtransaction(push_as_owner, &push);

	k = 0;
	for (int i = first; i < ndue; i++)
	{
		if (due[i].owner != owner || due[i].broken || due[i].deferred)
			continue;
		for (int f = 0; f < due[i].nfires; f++, k++)
		{
			if (error != NULL)
				due[i].last_job = push_fire(cat, &due[i], due[i].fire_at[f]);
			else
			{
				due[i].last_job = push.ids[k];
				due[i].pushed = true;
			}
		}
	}
}

/*
 * expect_function
 *		The function the jobs of schedule s must run: the one it was made
 *		with (here, or in the catalog it was made in, see function_here()),
 *		InvalidOid for a C symbol.  A fire whose push would run another, one
 *		dropped and made again or a definition changed since, fails instead.
 *		Returns InvalidOid too when that function is gone; the push then
 *		finds another function, or none, and fails either way.
 */
static Oid
expect_function(DueSchedule *s, Oid oid, Oid owner, uint64 catalog, int64 digest)
{
	bool		isnull;
	Datum		spec;

	if (!OidIsValid(oid))
		return InvalidOid;
	spec = GetAttributeByName(DatumGetHeapTupleHeader(s->job), "function", &isnull);
	if (isnull)
		return InvalidOid;
	return function_here(TextDatumGetCString(spec), oid, owner, catalog, digest);
}

/*
 * read_due
 *		The enabled schedules due at now (see fire_until()), locked, at most
 *		FIRE_BATCH of them, ordered by owner so that each owner's are pushed
 *		together.
 */
static DueSchedule *
read_due(ChancyCatalog *cat, TimestampTz now, int *ndue)
{
	Datum		args[2] = {TimestampTzGetDatum(fire_until(true, now)),
	TimestampTzGetDatum(fire_until(false, now))};
	Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	DueSchedule *due;
	bool		isnull;

	if (SPI_execute_with_args(psprintf(
									   "SELECT s.name, s.cron, s.time_zone, s.job,"
									   "  %1$s.chancy_interval_ms(s.catch_up), s.overlap,"
									   "  s.next_fire_at, s.owner::pg_catalog.oid,"
									   "  EXISTS (SELECT FROM %1$s.chancy_jobs j WHERE j.id = s.last_job_id"
									   "   AND j.state IN ('pending', 'running', 'retrying')),"
									   "  s.function_oid, s.function_owner::pg_catalog.oid,"
									   "  s.function_catalog, s.function_digest, s.ahead"
									   " FROM (SELECT *, " FIRED_AHEAD_SQL " AS ahead FROM %1$s.chancy_schedules"
									   "  WHERE enabled AND NOT replicated AND next_fire_at <= $1"
									   "   AND (" FIRED_AHEAD_SQL " OR next_fire_at <= $2)"
									   "  ORDER BY next_fire_at LIMIT %2$d"
									   "  FOR UPDATE SKIP LOCKED) s"
									   " ORDER BY s.owner::pg_catalog.oid, s.next_fire_at",
									   cat->nspname, FIRE_BATCH),
							  2, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read chancy_schedules");
	*ndue = SPI_processed;
	due = palloc0(sizeof(DueSchedule) * Max(*ndue, 1));
	for (int i = 0; i < *ndue; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		catch_up = SPI_getbinval(tup, desc, 5, &isnull);
		Datum		oid;
		Datum		owner;
		Datum		catalog;
		Datum		digest;
		bool		oid_null;
		bool		owner_null;
		bool		catalog_null;
		bool		digest_null;

		due[i].catch_up_ms = isnull ? -1 : DatumGetInt64(catch_up);
		due[i].name = SPI_getvalue(tup, desc, 1);
		due[i].cron = SPI_getvalue(tup, desc, 2);
		due[i].time_zone = SPI_getvalue(tup, desc, 3);
		due[i].job = SPI_datumTransfer(SPI_getbinval(tup, desc, 4, &isnull), false, -1);
		due[i].overlap = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
		due[i].next_fire_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull));
		due[i].owner = DatumGetObjectId(SPI_getbinval(tup, desc, 8, &isnull));
		due[i].last_live = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
		due[i].ahead = DatumGetBool(SPI_getbinval(tup, desc, 14, &isnull));
		oid = SPI_getbinval(tup, desc, 10, &oid_null);
		owner = SPI_getbinval(tup, desc, 11, &owner_null);
		catalog = SPI_getbinval(tup, desc, 12, &catalog_null);
		digest = SPI_getbinval(tup, desc, 13, &digest_null);
		due[i].function = expect_function(&due[i],
										  oid_null ? InvalidOid : DatumGetObjectId(oid),
										  owner_null ? InvalidOid : DatumGetObjectId(owner),
										  catalog_null ? 0 : (uint64) DatumGetInt64(catalog),
										  digest_null ? 0 : DatumGetInt64(digest));
	}
	return due;
}

/*
 * write_fired
 *		Move the fired schedules on, in one statement: next fire time, last
 *		fire and job, counts.  A schedule whose push went through keeps its
 *		function as it is now (its OID here, owner and digest): in another
 *		catalog it is then compared with the function as last fired, not as
 *		first scheduled.
 */
static void
write_fired(ChancyCatalog *cat, DueSchedule *due, int ndue)
{
#define FIRED_COLS 10
	static const Oid elemtypes[FIRED_COLS] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		INT8OID, INT8OID, INT8OID, OIDOID, OIDOID, INT8OID, INT8OID};
	Oid			argtypes[FIRED_COLS];
	Datum		args[FIRED_COLS];
	Datum	   *cols[FIRED_COLS];
	bool	   *nulls[FIRED_COLS];
	int			n = 0;
	int			dims[1];
	int			lbs[1] = {1};

	for (int c = 0; c < FIRED_COLS; c++)
	{
		argtypes[c] = get_array_type(elemtypes[c]);
		cols[c] = palloc(sizeof(Datum) * Max(ndue, 1));
		nulls[c] = palloc0(sizeof(bool) * Max(ndue, 1));
	}
	for (int i = 0; i < ndue; i++)
	{
		DueSchedule *s = &due[i];
		bool		keep = s->pushed && OidIsValid(s->function);

		if (s->broken || s->deferred)
			continue;
		cols[0][n] = CStringGetTextDatum(s->name);
		cols[1][n] = TimestampTzGetDatum(s->next);
		cols[2][n] = TimestampTzGetDatum(s->nfires > 0 ? s->fire_at[s->nfires - 1] : 0);
		nulls[2][n] = s->nfires == 0;
		cols[3][n] = Int64GetDatum(s->last_job);
		nulls[3][n] = s->nfires == 0;
		cols[4][n] = Int64GetDatum(s->nfires);
		cols[5][n] = Int64GetDatum(s->skips);
		cols[6][n] = ObjectIdGetDatum(s->function);
		cols[7][n] = ObjectIdGetDatum(keep ? function_owner(s->function) : InvalidOid);
		cols[8][n] = Int64GetDatum((int64) catalog_identity());
		cols[9][n] = Int64GetDatum(keep ? function_digest(s->function) : 0);
		for (int c = 6; c < FIRED_COLS; c++)
			nulls[c][n] = !keep;
		n++;
	}
	if (n == 0)
		return;
	dims[0] = n;
	for (int c = 0; c < FIRED_COLS; c++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(elemtypes[c], &typlen, &typbyval, &typalign);
		args[c] = PointerGetDatum(construct_md_array(cols[c], nulls[c], 1, dims, lbs,
													 elemtypes[c], typlen, typbyval,
													 typalign));
	}
	if (SPI_execute_with_args(psprintf(
									   "UPDATE %s.chancy_schedules s SET next_fire_at = u.next,"
									   " last_fire_at = coalesce(u.last_fire, s.last_fire_at),"
									   " last_job_id = coalesce(u.last_job, s.last_job_id),"
									   " fires = s.fires + u.fires, skips = s.skips + u.skips,"
									   " function_oid = coalesce(u.fn, s.function_oid),"
									   " function_owner = coalesce(u.fn_owner::pg_catalog.regrole, s.function_owner),"
									   " function_catalog = CASE WHEN u.fn IS NULL THEN s.function_catalog"
									   "  ELSE u.fn_catalog END,"
									   " function_digest = CASE WHEN u.fn IS NULL THEN s.function_digest"
									   "  ELSE u.fn_digest END"
									   " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
									   "  pg_catalog.unnest($3), pg_catalog.unnest($4),"
									   "  pg_catalog.unnest($5), pg_catalog.unnest($6),"
									   "  pg_catalog.unnest($7), pg_catalog.unnest($8),"
									   "  pg_catalog.unnest($9), pg_catalog.unnest($10))"
									   "  AS u(name, next, last_fire, last_job, fires, skips,"
									   "   fn, fn_owner, fn_catalog, fn_digest)"
									   " WHERE s.name = u.name", cat->nspname),
							  FIRED_COLS, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write chancy_schedules");
}

/*
 * schedule_fire_due
 *		The supervisor: fire the schedules that are due, in this
 *		transaction: plan each one's fires, push each owner's jobs in one
 *		statement as that owner, and move them all on.  Returns how long
 *		until the next one is fired (FIRE_LEAD_MS ahead of its fire time, or
 *		at it), in ms (-1: none is).
 */
long
schedule_fire_due(ChancyCatalog *cat)
{
	/* the jobs' created_at, which fire_until() and fire_job() go by */
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	CatalogSql	sql;
	DueSchedule *due;
	int			ndue;
	long		wait_ms = -1;
	bool		isnull;
	Datum		next;

	if (RecoveryInProgress())
		return -1;

	catalog_sql_begin(cat, true, &sql);
	due = read_due(cat, now, &ndue);
	plan_due(cat, due, ndue);
	for (int i = 0; i < ndue; i++)
		if (i == 0 || due[i].owner != due[i - 1].owner)
			push_owner_fires(cat, due, ndue, i);
	write_fired(cat, due, ndue);

	/* when the next one is fired */
	if (SPI_execute(psprintf("SELECT min(CASE WHEN " FIRED_AHEAD_SQL
							 " THEN next_fire_at - interval '%d ms' ELSE next_fire_at END)"
							 " FROM %s.chancy_schedules WHERE enabled AND NOT replicated",
							 FIRE_LEAD_MS, cat->nspname), true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read chancy_schedules");
	next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (ndue == FIRE_BATCH || (ndue > 0 && due[ndue - 1].deferred))
		wait_ms = 0;			/* more are due */
	else if (!isnull)
	{
		TimestampTz at = DatumGetTimestampTz(next);

		if (at <= now)
			wait_ms = 1000;		/* due when read, but locked by a change not
								 * yet committed */
		else
		{
			now = GetCurrentTimestamp();
			wait_ms = at <= now ? 0 : (long) Min((at - now + 999) / 1000, INT_MAX);
		}
	}
	catalog_sql_end(&sql);
	return wait_ms;
}
