/*-------------------------------------------------------------------------
 *
 * limits.c
 *	  Time and memory limits of a job run in the executor's own process.
 *
 * Nothing here sends a signal that kills: a process of the postmaster that
 * dies by a signal restarts the whole cluster.  A job over a limit is
 * interrupted the way statement_timeout interrupts a query: a timeout sets
 * QueryCancelPending, and the job's next CHECK_FOR_INTERRUPTS raises an
 * error, which rolls the job back like any other.
 *
 * - time: a one-shot timeout at the job's deadline;
 * - memory: RLIMIT_DATA is lowered to what the process uses now plus the
 *	 limit, so that malloc (and so palloc) fails cleanly with "out of memory"
 *	 instead of the OOM killer sending SIGKILL; a watchdog timeout also looks
 *	 at the process's data size every 100 ms.  Both are undone after the job.
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

static TimeoutId time_timeout;
static TimeoutId watchdog_timeout;
static volatile sig_atomic_t limit_hit = LIMIT_NONE;
static volatile int64 data_limit = 0;	/* bytes of data the job may reach */
static struct rlimit saved_rlimit;
static bool rlimit_lowered = false;

/*
 * limits_data_size
 *		The process's data size (heap, anonymous mappings, stack) in bytes,
 *		from /proc/self/statm.  Safe in a signal handler; 0 if unknown.
 */
int64
limits_data_size(void)
{
	char		buf[128];
	int			fd = open("/proc/self/statm", O_RDONLY);
	ssize_t		n;
	int			field = 0;
	int64		pages = 0;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
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

/* Interrupt the running job because of a limit (signal handler context). */
static void
interrupt_job(int reason)
{
	limit_hit = reason;
	InterruptPending = true;
	QueryCancelPending = true;
	SetLatch(MyLatch);
}

static void
time_limit_reached(void)
{
	interrupt_job(LIMIT_TIME);
}

static void
watchdog(void)
{
	if (data_limit > 0 && limits_data_size() > data_limit)
		interrupt_job(LIMIT_MEMORY);
}

/*
 * limits_init
 *		Register the timeouts (once per executor).
 */
void
limits_init(void)
{
	time_timeout = RegisterTimeout(USER_TIMEOUT, time_limit_reached);
	watchdog_timeout = RegisterTimeout(USER_TIMEOUT, watchdog);
}

/*
 * limits_arm
 *		Before a job: arm its time limit (ms, 0 for none) and memory limit
 *		(bytes, 0 for none).
 */
void
limits_arm(int64 time_limit_ms, int64 memory_limit)
{
	limit_hit = LIMIT_NONE;
	if (time_limit_ms > 0)
		enable_timeout_after(time_timeout, (int) Min(time_limit_ms, INT_MAX));
	if (memory_limit > 0)
	{
		struct rlimit lowered;

		data_limit = limits_data_size() + memory_limit;
		if (getrlimit(RLIMIT_DATA, &saved_rlimit) == 0)
		{
			lowered = saved_rlimit;
			if (lowered.rlim_max == RLIM_INFINITY ||
				(rlim_t) data_limit < lowered.rlim_max)
				lowered.rlim_cur = (rlim_t) data_limit;
			rlimit_lowered = setrlimit(RLIMIT_DATA, &lowered) == 0;
		}
		enable_timeout_every(watchdog_timeout,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 WATCHDOG_MS),
							 WATCHDOG_MS);
	}
}

/*
 * limits_disarm
 *		After a job, whatever its outcome: no limit applies any more.  Returns
 *		the limit that interrupted it, if any.
 */
int
limits_disarm(void)
{
	int			hit = limit_hit;

	disable_timeout(time_timeout, false);
	disable_timeout(watchdog_timeout, false);
	if (rlimit_lowered)
		(void) setrlimit(RLIMIT_DATA, &saved_rlimit);
	rlimit_lowered = false;
	data_limit = 0;
	limit_hit = LIMIT_NONE;
	return hit;
}

/*
 * limits_explain
 *		Make the error of a job stopped by a limit say so: "time limit" or
 *		"memory limit", and the limit.  An out-of-memory error under a memory
 *		limit is the limit's doing too.
 */
void
limits_explain(ErrorData *edata, int hit, int64 time_limit_ms, int64 memory_limit)
{
	const char *original = edata->message;

	if (hit == LIMIT_NONE && memory_limit > 0 &&
		edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
		hit = LIMIT_MEMORY;
	if (hit == LIMIT_TIME)
	{
		edata->sqlerrcode = ERRCODE_QUERY_CANCELED;
		edata->message = psprintf("job exceeded its time limit of %.3f s",
								  time_limit_ms / 1000.0);
	}
	else if (hit == LIMIT_MEMORY)
	{
		edata->sqlerrcode = ERRCODE_OUT_OF_MEMORY;
		edata->message = psprintf("job exceeded its memory limit of " INT64_FORMAT " bytes",
								  memory_limit);
	}
	else
		return;
	edata->detail = original ? pstrdup(original) : NULL;
	edata->hint = pstrdup("Raise the job's limit (chancy_with_limits), or make the job lighter.");
}
