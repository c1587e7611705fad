/*-------------------------------------------------------------------------
 *
 * isolated.c
 *	  The isolated executor: a C job of a queue declared with executor =>
 *	  'isolated' runs in a plain fork() of its executor, not in the executor.
 *
 * The child is not a child of the postmaster: when it segfaults, aborts,
 * runs past its time limit (the executor kills it with SIGKILL) or is killed
 * by the kernel, only this job fails, and the cluster goes on.  The child
 * gets hard limits (RLIMIT_DATA for memory, RLIMIT_CPU for CPU time, no core
 * file), calls the function, and writes its result or error to a pipe; it
 * never touches shared memory on exit.  It has no database access: a job
 * that uses SPI or reads tables must run in a 'process' queue.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

/* Write all of a buffer to a pipe (in the child). */
static void
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(3);
		buf += n;
		len -= n;
	}
}

/*
 * child_main
 *		In the forked child: set hard limits, run the job, report through the
 *		pipe, and leave without running any of the executor's exit callbacks.
 *		The report is 'R' and the result as JSON text, 'N' for no result, or
 *		'E', the SQLSTATE and the error message.
 */
static void
child_main(int fd, FmgrInfo *flinfo, Datum kwargs, Oid rettype,
		   int64 time_limit_ms, int64 memory_limit)
{
	struct rlimit rl;

	/* nothing of the executor's shared state may be touched from here */
	on_exit_reset();
	MyProcPid = getpid();
	pqsignal(SIGTERM, SIG_DFL);
	pqsignal(SIGINT, SIG_DFL);
	pqsignal(SIGQUIT, SIG_DFL);

	rl.rlim_cur = rl.rlim_max = 0;
	(void) setrlimit(RLIMIT_CORE, &rl);
	if (memory_limit > 0)
	{
		rl.rlim_cur = rl.rlim_max = (rlim_t) (limits_data_size() + memory_limit);
		(void) setrlimit(RLIMIT_DATA, &rl);
	}
	if (time_limit_ms > 0)
	{
		/* CPU time cannot exceed wall time; the parent enforces the latter */
		rl.rlim_cur = (rlim_t) (time_limit_ms / 1000 + 1);
		rl.rlim_max = rl.rlim_cur + 1;
		(void) setrlimit(RLIMIT_CPU, &rl);
	}

	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 1);
		Datum		result;
		char	   *text = NULL;

		InitFunctionCallInfoData(*fcinfo, flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = kwargs;
		fcinfo->args[0].isnull = false;
		result = FunctionCallInvoke(fcinfo);

		if (!fcinfo->isnull && rettype != VOIDOID &&
			(OidIsValid(rettype) || result != (Datum) 0))
		{
			if (!OidIsValid(rettype) || rettype == JSONBOID)
				text = JsonbToCString(NULL, &DatumGetJsonbP(result)->root, -1);
			else
			{
				Oid			typoutput;
				bool		varlena;
				JsonbValue	jv;

				getTypeOutputInfo(rettype, &typoutput, &varlena);
				jv.type = jbvString;
				jv.val.string.val = OidOutputFunctionCall(typoutput, result);
				jv.val.string.len = strlen(jv.val.string.val);
				text = JsonbToCString(NULL, &JsonbValueToJsonb(&jv)->root, -1);
			}
		}
		write_all(fd, text ? "R" : "N", 1);
		if (text)
			write_all(fd, text, strlen(text));
		_exit(0);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();

		write_all(fd, "E", 1);
		write_all(fd, unpack_sql_state(edata->sqlerrcode), 5);
		write_all(fd, edata->message ? edata->message : "unknown error",
				  strlen(edata->message ? edata->message : "unknown error"));
		_exit(1);
	}
	PG_END_TRY();
	_exit(2);
}

/*
 * kill_child
 *		Stop the child for good and reap it.
 */
static void
kill_child(pid_t pid)
{
	int			status;

	(void) kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}

/*
 * isolated_call
 *		Run a C job function in a forked child and return its result as
 *		jsonb (*isnull for none).  Raises the job's error, or one saying the
 *		child crashed with a signal or ran past its time limit.
 */
Datum
isolated_call(FmgrInfo *flinfo, Datum kwargs, Oid rettype, bool *isnull,
			  int64 time_limit_ms, int64 memory_limit)
{
	int			fds[2];
	pid_t		pid;
	StringInfoData report;
	TimestampTz deadline = 0;
	int			status;

	if (pipe(fds) < 0)
		ereport(ERROR, (errmsg("could not create a pipe for an isolated job: %m")));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
	{
		close(fds[0]);
		close(fds[1]);
		ereport(ERROR, (errmsg("could not fork an isolated job: %m")));
	}
	if (pid == 0)
	{
		close(fds[0]);
		child_main(fds[1], flinfo, kwargs, rettype, time_limit_ms, memory_limit);
	}
	close(fds[1]);

	if (time_limit_ms > 0)
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), time_limit_ms);
	initStringInfo(&report);
	for (;;)
	{
		char		buf[8192];
		ssize_t		n;
		long		timeout = -1;
		int			rc;

		if (deadline != 0)
		{
			long		secs;
			int			usecs;

			TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
			timeout = secs * 1000 + usecs / 1000;
			if (GetCurrentTimestamp() >= deadline)
			{
				kill_child(pid);
				close(fds[0]);
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("job exceeded its time limit of %.3f s", time_limit_ms / 1000.0),
						 errdetail("The isolated job was killed.")));
			}
		}
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_SOCKET_READABLE | WL_EXIT_ON_PM_DEATH |
							   (timeout >= 0 ? WL_TIMEOUT : 0),
							   fds[0], timeout, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			if (InterruptPending)
			{
				/* cancelled, or the executor must stop: the child goes first */
				kill_child(pid);
				close(fds[0]);
				CHECK_FOR_INTERRUPTS();
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("isolated job interrupted")));
			}
		}
		if (!(rc & WL_SOCKET_READABLE))
			continue;
		n = read(fds[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		appendBinaryStringInfo(&report, buf, n);
	}
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0)
	{
		if (errno != EINTR)
			ereport(ERROR, (errmsg("could not wait for an isolated job: %m")));
	}

	if (WIFSIGNALED(status))
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("job crashed with signal %d: %s", WTERMSIG(status),
						pg_strsignal(WTERMSIG(status))),
				 WTERMSIG(status) == SIGXCPU || WTERMSIG(status) == SIGKILL ?
				 errdetail("It used up its CPU time or was killed by the kernel.") :
				 errdetail("It ran in an isolated child; the server was not affected."),
				 memory_limit > 0 ?
				 errhint("Under a memory limit of " INT64_FORMAT " bytes, a job that does not check what malloc returns crashes when it reaches it.",
						 memory_limit) : 0));
	if (report.len >= 6 && report.data[0] == 'E')
	{
		char		sqlstate[6];

		memcpy(sqlstate, report.data + 1, 5);
		sqlstate[5] = '\0';
		ereport(ERROR,
				(errcode(MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
									   sqlstate[3], sqlstate[4])),
				 errmsg("%s", report.data + 6)));
	}
	if (report.len >= 1 && report.data[0] == 'N')
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (report.len >= 1 && report.data[0] == 'R')
	{
		*isnull = false;
		return DirectFunctionCall1(jsonb_in, CStringGetDatum(report.data + 1));
	}
	ereport(ERROR,
			(errcode(ERRCODE_SYSTEM_ERROR),
			 errmsg("isolated job exited with code %d without a result",
					WIFEXITED(status) ? WEXITSTATUS(status) : -1)));
	pg_unreachable();
}
