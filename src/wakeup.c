/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  What a transaction asks of chancy's processes once it commits: wake
 *	  idle executors of the queues it pushed to, tell the executor holding a
 *	  job it cancelled, wake the waiters of jobs it finished, wake the
 *	  supervisor and executors after a change to the queues, wake the
 *	  launcher after CREATE EXTENSION, make the limit keys read their
 *	  settings again after a change to chancy_limits, count what it did to
 *	  jobs (stats.c); and, in an executor, note that the running job
 *	  cancelled itself.
 *
 * Nothing happens before commit, and nothing for work that was rolled back:
 * each request remembers the subtransaction that made it, and is forgotten
 * when that subtransaction aborts.  A transaction that is prepared (PREPARE
 * TRANSACTION) forgets its requests too: COMMIT PREPARED, in whatever
 * session, asks the database's supervisor to look again instead (ddl.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "chancy_internal.h"

typedef enum RequestKind
{
	REQ_PUSH,					/* njobs jobs pushed to queue */
	REQ_CANCEL,					/* a claimed job cancelled */
	REQ_DONE,					/* a job finished */
	REQ_QUEUES,					/* chancy_queues changed */
	REQ_SUPERVISOR,				/* the supervisor must look again */
	REQ_LIMITS,					/* chancy_limits changed */
	REQ_LAUNCHER,				/* the launcher must look again */
	REQ_SELF_CANCEL,			/* the running job cancelled itself */
	REQ_STATS,					/* counters and gauges change */
	REQ_RECOUNT					/* the gauges are to be counted again */
} RequestKind;

typedef struct Request
{
	RequestKind kind;
	int			level;			/* the subtransaction that asked */
	char		queue[NAMEDATALEN];
	int			njobs;
	int64		job_id;
	int64		claim;
	Oid			role;
	StatsChange *stats;			/* REQ_STATS */
} Request;

static List *requests = NIL;	/* in TopMemoryContext */
static bool callbacks_registered = false;

/* Free a request. */
static void
forget(Request *r)
{
	if (r->stats)
		pfree(r->stats);
	pfree(r);
}

/*
 * forget_all
 *		Forget the requests of the transaction that ended.  A self-cancel
 *		that commits stays, outside any transaction (level 0), for the
 *		executor to take when the job returns: a command job (command.c)
 *		commits before it returns, maybe more than once.
 */
static void
forget_all(bool committed)
{
	ListCell   *lc;

	foreach(lc, requests)
	{
		Request    *r = lfirst(lc);

		if (r->level == 0)
			continue;			/* committed before */
		if (committed && r->kind == REQ_SELF_CANCEL)
		{
			r->level = 0;
			continue;
		}
		requests = foreach_delete_current(requests, lc);
		forget(r);
	}
}

/* Carry out the requests of a transaction that committed. */
static void
carry_out(void)
{
	ListCell   *lc;
	bool		supervisor = false;
	bool		launcher = false;

	foreach(lc, requests)
	{
		Request    *r = lfirst(lc);

		switch (r->kind)
		{
			case REQ_PUSH:
				slots_wake_executors(r->queue, r->njobs);
				break;
			case REQ_CANCEL:
				slots_cancel_job(r->claim, r->job_id);
				break;
			case REQ_DONE:
				slots_job_done(r->job_id);
				break;
			case REQ_QUEUES:
				slots_nudge_executors(NULL);
				supervisor = true;
				break;
			case REQ_SUPERVISOR:
				supervisor = true;
				break;
			case REQ_LIMITS:
				flow_changed();	/* wakes the supervisor */
				break;
			case REQ_LAUNCHER:
				launcher = true;
				break;
			case REQ_SELF_CANCEL:
				break;			/* the executor took it when the job returned */
			case REQ_STATS:
				stats_apply(r->stats, GetTopTransactionIdIfAny());
				break;
			case REQ_RECOUNT:
				stats_invalidate_gauges(MyDatabaseId);
				break;
		}
	}
	if (supervisor)
		slots_wake_supervisor();
	if (launcher)
		slots_wake_launcher(true);
}

/*
 * xact_callback
 *		At commit, carry out what the transaction asked; at abort or prepare,
 *		forget it.
 */
static void
xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/* a count of the gauges must wait for these changes (stats.c) */
			foreach(lc, requests)
				if (((Request *) lfirst(lc))->kind == REQ_STATS)
				{
					stats_committing(GetTopTransactionIdIfAny());
					break;
				}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* nothing here can fail: latches, signals, shared memory */
			carry_out();
			forget_all(true);
			stats_committed();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			forget_all(false);
			stats_committed();
			break;
		default:
			break;
	}
}

/*
 * subxact_callback
 *		A subtransaction that aborts takes its requests with it; one that
 *		commits hands them to its parent.
 */
static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, requests)
		{
			Request    *r = lfirst(lc);

			if (r->level >= level)
			{
				requests = foreach_delete_current(requests, lc);
				forget(r);
			}
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, requests)
		{
			Request    *r = lfirst(lc);

			if (r->level >= level)
				r->level = level - 1;
		}
	}
}

/* Add a request of the current (sub)transaction. */
static Request *
add_request(RequestKind kind)
{
	MemoryContext old;
	Request    *r;

	if (!callbacks_registered)
	{
		RegisterXactCallback(xact_callback, NULL);
		RegisterSubXactCallback(subxact_callback, NULL);
		callbacks_registered = true;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	r = palloc0(sizeof(Request));
	r->kind = kind;
	r->level = GetCurrentTransactionNestLevel();
	requests = lappend(requests, r);
	MemoryContextSwitchTo(old);
	return r;
}

/*
 * wakeup_queue_at_commit
 *		The current transaction pushed njobs jobs to queue: wake that many
 *		idle executors of the queue when it commits.
 */
void
wakeup_queue_at_commit(const char *queue, int njobs)
{
	ListCell   *lc;
	Request    *r;
	int			level = GetCurrentTransactionNestLevel();

	foreach(lc, requests)
	{
		r = lfirst(lc);
		if (r->kind == REQ_PUSH && r->level == level &&
			strncmp(r->queue, queue, NAMEDATALEN - 1) == 0)
		{
			r->njobs = (int) Min((int64) r->njobs + njobs, INT_MAX);
			return;
		}
	}
	r = add_request(REQ_PUSH);
	strlcpy(r->queue, queue, NAMEDATALEN);
	r->njobs = njobs;
}

/*
 * wakeup_queues_changed_at_commit
 *		The current transaction changed chancy_queues (or committed a
 *		prepared transaction that may have): at commit, every executor of
 *		the database looks at its queue again, and the supervisor at all.
 */
void
wakeup_queues_changed_at_commit(void)
{
	(void) add_request(REQ_QUEUES);
}

/*
 * wakeup_supervisor_at_commit
 *		The current transaction changed what this database's supervisor acts
 *		on (the extension itself): wake it at commit.
 */
void
wakeup_supervisor_at_commit(void)
{
	(void) add_request(REQ_SUPERVISOR);
}

/* chancy_limits changed: at commit, the keys read their limits again. */
void
wakeup_limits_at_commit(void)
{
	(void) add_request(REQ_LIMITS);
}

/* CREATE EXTENSION chancy: the launcher looks for a supervisor to start. */
void
wakeup_launcher_at_commit(void)
{
	(void) add_request(REQ_LAUNCHER);
}

/*
 * wakeup_cancel_at_commit
 *		The current transaction asked to cancel a job that claim holds: when
 *		it commits, the executor holding it is told.
 */
void
wakeup_cancel_at_commit(int64 job_id, int64 claim)
{
	Request    *r = add_request(REQ_CANCEL);

	r->job_id = job_id;
	r->claim = claim;
}

/* The current transaction finished a job: wake its waiters at commit. */
void
wakeup_done_at_commit(int64 job_id)
{
	Request    *r = add_request(REQ_DONE);

	r->job_id = job_id;
}

/*
 * wakeup_self_cancel
 *		The job this executor runs cancelled itself, as role: unless the
 *		(sub)transaction that asked is rolled back, the job ends cancelled
 *		when it returns (wakeup_take_self_cancel()).
 */
void
wakeup_self_cancel(int64 job_id, Oid role)
{
	Request    *r = add_request(REQ_SELF_CANCEL);

	r->job_id = job_id;
	r->role = role;
}

/*
 * wakeup_take_self_cancel
 *		In the executor, when a job returns: the role it cancelled itself as
 *		(InvalidOid if it did not, or if that was rolled back).
 */
Oid
wakeup_take_self_cancel(int64 job_id)
{
	ListCell   *lc;
	Oid			role = InvalidOid;

	foreach(lc, requests)
	{
		Request    *r = lfirst(lc);

		if (r->kind == REQ_SELF_CANCEL && r->job_id == job_id)
		{
			role = r->role;
			requests = foreach_delete_current(requests, lc);
			pfree(r);
		}
	}
	return role;
}

/* Jobs changed behind chancy's back: their gauges are counted at commit. */
void
wakeup_recount_at_commit(void)
{
	(void) add_request(REQ_RECOUNT);
}

/*
 * wakeup_stats_at_commit
 *		Apply a change to the counters and gauges (stats.c) when the current
 *		transaction commits.  A change to the same entry as the request
 *		before it, at the same level, is added to that one.
 */
void
wakeup_stats_at_commit(const StatsChange *change)
{
	Request    *r = requests != NIL ? llast(requests) : NULL;

	if (r == NULL || r->kind != REQ_STATS || r->level != GetCurrentTransactionNestLevel() ||
		r->stats->role != change->role || strcmp(r->stats->queue, change->queue) != 0 ||
		strcmp(r->stats->name, change->name) != 0)
	{
		r = add_request(REQ_STATS);
		r->stats = MemoryContextAllocZero(TopMemoryContext, sizeof(StatsChange));
		*r->stats = *change;
		return;
	}
	for (int i = 0; i < STATS_NCOUNTERS; i++)
		r->stats->counts[i] += change->counts[i];
	for (int i = 0; i < JS_NSTATES; i++)
		r->stats->states[i] += change->states[i];
}
