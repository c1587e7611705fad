/*-------------------------------------------------------------------------
 *
 * limits.c
 *	  What stops a job that runs in the executor's own process: its time
 *	  limit, its memory limit, a cancel, a shutdown.  None of them can be
 *	  ignored.
 *
 * Nothing here sends a signal that kills: a process of the postmaster that
 * dies by a signal restarts the whole cluster.  A job is stopped the way
 * statement_timeout stops a query: QueryCancelPending is set, and the job's
 * next CHECK_FOR_INTERRUPTS raises an error, which rolls the job back.
 *
 * - time: a timeout at the job's deadline;
 * - memory: RLIMIT_DATA is lowered to what the process uses now plus the
 *	 limit, so that malloc (and so palloc) fails cleanly with "out of memory"
 *	 instead of the OOM killer sending SIGKILL; a watchdog also looks at the
 *	 process's data size;
 * - cancel and shutdown: the executor's signal handlers call limits_stop().
 *
 * A job may catch that error (EXCEPTION WHEN query_canceled) and go on.  So
 * the watchdog, which runs every WATCHDOG_MS while the executor works, ends
 * a job still running GRACE_MS after it was told to stop the way die()
 * ends a backend: ProcDiePending, an error no job can catch, and the
 * executor exits (its exit callback gives the job back, recording why).  A
 * job that caught the error and returned has still failed: limits_job_end()
 * says it was stopped.
 *
 * Code that never reaches CHECK_FOR_INTERRUPTS, or that does not check what
 * malloc returns, cannot be stopped this way: that is what the isolated
 * executor (isolated.c) is for.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

#define WATCHDOG_MS 100
#define GRACE_MS 1000

static TimeoutId time_timeout;
static TimeoutId watchdog_timeout;
static volatile sig_atomic_t in_job = false;
static volatile sig_atomic_t stop_reason = STOP_NONE;
static volatile TimestampTz stop_at = 0;	/* when it was told to stop */
static volatile TimestampTz shutdown_at = 0;	/* when the executor was */
static volatile int64 data_limit = 0;	/* bytes of data the job may reach */
static volatile int64 peak_size = 0;	/* the largest data size seen in the job */
static struct rlimit saved_rlimit;
static bool rlimit_lowered = false;

/* /proc/self/statm of the executor, kept open by limits_init() */
static int	statm_fd = -1;
static pid_t statm_pid = 0;		/* the process it is of */

/*
 * limits_data_size
 *		The process's data size (heap, anonymous mappings, stack) in bytes,
 *		from /proc/self/statm.  Safe in a signal handler; 0 if unknown.  The
 *		executor reads it around every job (stats.c), so it keeps the file
 *		open: one pread() instead of open, read and close.  A forked child
 *		(isolated.c) opens its own: the kept one is its parent's.
 */
int64
limits_data_size(void)
{
	char		buf[128];
	bool		kept = statm_fd >= 0 && statm_pid == getpid();
	int			fd = kept ? statm_fd : open("/proc/self/statm", O_RDONLY);
	ssize_t		n;
	int			field = 0;
	int64		pages = 0;

	if (fd < 0)
		return 0;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (!kept)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* size resident shared text lib data dt: the sixth field */
	for (char *p = buf; *p && field < 6; p++)
	{
		if (*p == ' ')
		{
			field++;
			continue;
		}
		if (field == 5 && *p >= '0' && *p <= '9')
			pages = pages * 10 + (*p - '0');
	}
	return pages * (int64) sysconf(_SC_PAGESIZE);
}

/* The largest data size the watchdog saw during the current (or last) job. */
int64
limits_peak_data_size(void)
{
	return peak_size;
}

/*
 * limits_stop
 *		Stop the running job, for why.  Safe in a signal handler; nothing
 *		happens between jobs.
 *
 * Only the first reason raises the cancel: a job that caught it may be
 * cleaning up in its exception block when a second reason comes (a
 * shutdown right after a DROP DATABASE, say), and a second cancel there
 * would only cut its cleanup short.  A job that goes on regardless is the
 * watchdog's.
 */
void
limits_stop(JobStop why)
{
	if (why == STOP_SHUTDOWN && shutdown_at == 0)
		shutdown_at = GetCurrentTimestamp();
	if (!in_job || stop_reason != STOP_NONE)
		return;
	stop_reason = why;
	stop_at = GetCurrentTimestamp();
	InterruptPending = true;
	QueryCancelPending = true;
	SetLatch(MyLatch);
}

/* Why the running job was told to stop, if it was. */
JobStop
limits_stopped(void)
{
	return (JobStop) stop_reason;
}

/* The time limit's timeout. */
static void
time_limit_reached(void)
{
	limits_stop(STOP_TIME_LIMIT);
}

/*
 * watchdog
 *		Every WATCHDOG_MS while the executor works: the job's data size is
 *		sampled (its peak, for what it cost), a job over its memory limit is
 *		stopped, and one that goes on GRACE_MS after it was told to
 *		stop is ended for good; so is an executor still busy GRACE_MS after
 *		a shutdown was asked (waiting for a lock, say).
 */
static void
watchdog(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (in_job)
	{
		int64		size = limits_data_size();

		if (size > peak_size)
			peak_size = size;
		if (data_limit > 0 && size > data_limit)
			limits_stop(STOP_MEMORY_LIMIT);
	}
	if ((in_job && stop_at != 0 && now - stop_at >= (TimestampTz) GRACE_MS * 1000) ||
		(shutdown_at != 0 && now - shutdown_at >= (TimestampTz) GRACE_MS * 1000))
	{
		InterruptPending = true;
		ProcDiePending = true;
		SetLatch(MyLatch);
	}
}

/*
 * limits_init
 *		Register the timeouts, open /proc/self/statm (once per executor).
 */
void
limits_init(void)
{
	time_timeout = RegisterTimeout(USER_TIMEOUT, time_limit_reached);
	watchdog_timeout = RegisterTimeout(USER_TIMEOUT, watchdog);
	statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	statm_pid = getpid();
}

/*
 * limits_watch
 *		Run the watchdog (while the executor works on a batch of jobs), or
 *		stop it (before it sleeps).
 */
void
limits_watch(bool on)
{
	if (on)
		enable_timeout_every(watchdog_timeout,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 WATCHDOG_MS),
							 WATCHDOG_MS);
	else
		disable_timeout(watchdog_timeout, false);
}

/*
 * limits_job_begin
 *		Before a job: arm its time limit (ms, 0 for none) and memory limit
 *		(bytes, 0 for none).
 */
void
limits_job_begin(int64 time_limit_ms, int64 memory_limit)
{
	stop_reason = STOP_NONE;
	stop_at = 0;
	peak_size = 0;
	in_job = true;
	if (time_limit_ms > 0)
		enable_timeout_at(time_timeout,
						  TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  time_limit_ms));
	if (memory_limit > 0)
	{
		int64		size = limits_data_size();

		/* a limit too large to count is no limit */
		data_limit = memory_limit > PG_INT64_MAX - size ? PG_INT64_MAX :
			size + memory_limit;
		if (getrlimit(RLIMIT_DATA, &saved_rlimit) == 0 &&
			(saved_rlimit.rlim_cur == RLIM_INFINITY ||
			 (rlim_t) data_limit < saved_rlimit.rlim_cur))
		{
			struct rlimit lowered = saved_rlimit;

			lowered.rlim_cur = (rlim_t) data_limit;
			rlimit_lowered = setrlimit(RLIMIT_DATA, &lowered) == 0;
		}
	}
}

/*
 * limits_job_end
 *		After a job, whatever its outcome: no limit applies any more.  Returns
 *		why it was told to stop, if it was.
 */
JobStop
limits_job_end(void)
{
	JobStop		why = (JobStop) stop_reason;

	in_job = false;
	disable_timeout(time_timeout, false);
	if (rlimit_lowered)
		(void) setrlimit(RLIMIT_DATA, &saved_rlimit);
	rlimit_lowered = false;
	data_limit = 0;
	stop_reason = STOP_NONE;
	stop_at = 0;
	return why;
}

/*
 * limits_time_error
 *		The error of a job past its time limit (the isolated child's too):
 *		limits_explain()'s, raised.
 */
void
limits_time_error(int64 time_limit_ms)
{
	ErrorData	edata;

	memset(&edata, 0, sizeof(edata));
	edata.elevel = ERROR;
	limits_explain(&edata, STOP_TIME_LIMIT, time_limit_ms, 0);
	ThrowErrorData(&edata);
	pg_unreachable();
}

/*
 * limits_explain
 *		Make the error of a job stopped by a limit say so: "time limit" or
 *		"memory limit", and the limit; what the job itself reported becomes
 *		the detail.  An out-of-memory error under a memory limit is the
 *		limit's doing too.
 */
void
limits_explain(ErrorData *edata, JobStop why, int64 time_limit_ms,
			   int64 memory_limit)
{
	const char *original = edata->message;

	if (why == STOP_NONE && memory_limit > 0 &&
		edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
		why = STOP_MEMORY_LIMIT;
	if (why == STOP_TIME_LIMIT)
	{
		edata->sqlerrcode = ERRCODE_QUERY_CANCELED;
		edata->message = psprintf("job exceeded its time limit of %.3f s",
								  time_limit_ms / 1000.0);
		edata->hint = pstrdup("Raise the job's time limit (chancy_with_limits), or make the job faster.");
	}
	else if (why == STOP_MEMORY_LIMIT)
	{
		edata->sqlerrcode = ERRCODE_OUT_OF_MEMORY;
		edata->message = psprintf("job exceeded its memory limit of " INT64_FORMAT " bytes",
								  memory_limit);
		edata->hint = pstrdup("Raise the job's memory limit (chancy_with_limits), or make the job lighter.");
	}
	else
		return;
	if (original && strcmp(original, edata->message) != 0)
		edata->detail = pstrdup(original);
}
