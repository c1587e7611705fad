/*-------------------------------------------------------------------------
 *
 * isolated.c
 *	  The isolated executor: a C job of a queue declared with executor =>
 *	  'isolated' runs in a plain fork() of its executor, not in the executor.
 *
 * The child is not a child of the postmaster: when it segfaults, aborts,
 * runs past its time limit (the executor kills it with SIGKILL) or is killed
 * by the kernel, only this job fails, and the cluster goes on.
 *
 * What the child may do is the contract of an isolated job: compute from
 * its kwargs, allocate (palloc or malloc, under RLIMIT_DATA), log, raise
 * errors, read and write files as the server's operating system user.  It
 * runs as the role that pushed the job (GetUserId(), superuser()).  It has
 * no database: before the job runs, the child unmaps every shared memory
 * segment it inherited (the server's shared memory, dynamic segments, the
 * ledger), so SPI, catalog lookups, locks and buffers cannot work, and
 * cannot leave anything behind in the server.  A job that tries fails with
 * "isolated job cannot use the database"; a real crash stays a crash.
 *
 * The parent waits on its latch for the child's report, handling the
 * interrupts that are not for the job (barriers of DROP DATABASE, requests
 * to log memory contexts) itself; only the job's time limit, a cancel or a
 * shutdown kill the child.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "chancy_internal.h"

/* the shared mappings the child gave up, to recognize a fault in one */
#define MAX_UNMAPPED 256
static uintptr_t unmapped_from[MAX_UNMAPPED];
static uintptr_t unmapped_to[MAX_UNMAPPED];
static int	nunmapped = 0;
static int	report_fd = -1;

/* Write all of a buffer to the report pipe (in the child). */
static void
write_all(const char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(report_fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(3);
		buf += n;
		len -= n;
	}
}

/*
 * child_refuse
 *		In the child: the job cannot be run isolated; report why as its
 *		error, and leave.
 */
static void
child_refuse(const char *why)
{
	write_all("E58000", 6);
	write_all(why, strlen(why));
	_exit(5);
}

/*
 * child_fault
 *		SIGSEGV or SIGBUS in the child: a fault in a shared mapping it gave
 *		up is the job reaching for the database; anything else is a crash.
 */
static void
child_fault(int signo, siginfo_t *info, void *context)
{
	uintptr_t	addr = (uintptr_t) info->si_addr;
	static const char report[] = "D";

	for (int i = 0; i < nunmapped; i++)
		if (addr >= unmapped_from[i] && addr < unmapped_to[i])
		{
			write_all(report, 1);
			_exit(4);
		}
	signal(signo, SIG_DFL);
	raise(signo);
}

/*
 * unmap_shared
 *		In the child: give up every shared mapping inherited from the
 *		executor (as listed by /proc/self/maps), remembering where they were.
 */
static void
unmap_shared(void)
{
	FILE	   *maps = fopen("/proc/self/maps", "r");
	char		line[1024];
	int			n = 0;

	if (maps == NULL)
		child_refuse("could not read /proc/self/maps to isolate the job");
	while (fgets(line, sizeof(line), maps) != NULL)
	{
		unsigned long from,
					to;
		char		perms[8];

		if (sscanf(line, "%lx-%lx %7s", &from, &to, perms) == 3 && perms[3] == 's')
		{
			if (n == MAX_UNMAPPED)
				child_refuse("too many shared memory mappings to isolate the job");
			unmapped_from[n] = from;
			unmapped_to[n++] = to;
		}
	}
	fclose(maps);
	for (int i = 0; i < n; i++)
		if (munmap((void *) unmapped_from[i], unmapped_to[i] - unmapped_from[i]) != 0)
			child_refuse("could not unmap shared memory to isolate the job");
	nunmapped = n;
}

/*
 * child_main
 *		In the forked child: leave the server's shared state behind, set hard
 *		limits, run the job, report through the pipe, and leave without
 *		running any of the executor's exit callbacks.  The report is 'R' and
 *		the result's bytes, 'N' for no result, 'E', the SQLSTATE and the
 *		error message, or 'D' for a job that tried to use the database.
 */
static void
child_main(JobFunction *fn, Datum kwargs, int64 time_limit_ms, int64 memory_limit)
{
	struct rlimit rl;
	struct sigaction fault;
	static const int reset[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2,
	SIGALRM, SIGABRT, SIGILL, SIGFPE};

	/* nothing of the executor's shared state may be touched from here */
	on_exit_reset();
	/* nor its database: chancy_parent_results() of chancy.h returns NULL */
	*find_rendezvous_variable("chancy_parent_results") = NULL;
	MyProcPid = getpid();
	for (int i = 0; i < lengthof(reset); i++)
		pqsignal(reset[i], SIG_DFL);
	pqsignal(SIGALRM, SIG_IGN);
	InterruptPending = QueryCancelPending = ProcDiePending = false;
	SwitchBackToLocalLatch();
	MyProc = NULL;
	unmap_shared();
	memset(&fault, 0, sizeof(fault));
	fault.sa_sigaction = child_fault;
	fault.sa_flags = SA_SIGINFO;
	sigemptyset(&fault.sa_mask);
	sigaction(SIGSEGV, &fault, NULL);
	sigaction(SIGBUS, &fault, NULL);

	rl.rlim_cur = rl.rlim_max = 0;
	(void) setrlimit(RLIMIT_CORE, &rl);
	if (memory_limit > 0)
	{
		int64		size = limits_data_size();

		rl.rlim_cur = rl.rlim_max = memory_limit > PG_INT64_MAX - size ?
			RLIM_INFINITY : (rlim_t) (size + memory_limit);
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

		InitFunctionCallInfoData(*fcinfo, &fn->flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = kwargs;
		fcinfo->args[0].isnull = false;
		result = FunctionCallInvoke(fcinfo);

		if (fcinfo->isnull || fn->rettype == VOIDOID ||
			(!OidIsValid(fn->rettype) && result == (Datum) 0))
			write_all("N", 1);
		else if (!OidIsValid(fn->rettype) || fn->typlen == -1)
		{
			struct varlena *v = PG_DETOAST_DATUM(result);

			write_all("R", 1);
			write_all((char *) v, VARSIZE(v));
		}
		else if (fn->typbyval)
		{
			write_all("R", 1);
			write_all((char *) &result, sizeof(Datum));
		}
		else if (fn->typlen == -2)
		{
			write_all("R", 1);
			write_all(DatumGetCString(result), strlen(DatumGetCString(result)) + 1);
		}
		else
		{
			write_all("R", 1);
			write_all(DatumGetPointer(result), fn->typlen);
		}
		_exit(0);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		write_all("E", 1);
		write_all(unpack_sql_state(edata->sqlerrcode), 5);
		write_all(edata->message ? edata->message : "unknown error",
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
	struct rusage ru;

	(void) kill(pid, SIGKILL);
	while (wait4(pid, &status, 0, &ru) < 0)
		if (errno != EINTR)
			return;
	stats_cost_child(&ru);
}

/*
 * read_report
 *		Wait for the child's report, taking care of the executor's
 *		interrupts meanwhile: those for the job (its time limit, a cancel, a
 *		shutdown) kill the child and raise the job's error; the others are
 *		handled here.  Any error kills the child first.
 */
static void
read_report(pid_t pid, int fd, StringInfo report)
{
	PG_TRY();
	{
		for (;;)
		{
			char		buf[8192];
			ssize_t		n;
			int			rc;

			rc = WaitLatchOrSocket(MyLatch,
								   WL_LATCH_SET | WL_SOCKET_READABLE | WL_POSTMASTER_DEATH,
								   fd, -1, PG_WAIT_EXTENSION);
			if (rc & WL_POSTMASTER_DEATH)
			{
				kill_child(pid);
				proc_exit(1);
			}
			if (rc & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				/* a cancel or die raises the job's error; others pass */
				CHECK_FOR_INTERRUPTS();
			}
			if (!(rc & WL_SOCKET_READABLE))
				continue;
			n = read(fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			appendBinaryStringInfo(report, buf, n);
		}
	}
	PG_CATCH();
	{
		kill_child(pid);
		close(fd);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * isolated_call
 *		Run a C job function in a forked child, as the current user, and
 *		return its result as jsonb (*isnull for none).  Raises the job's
 *		error, or one saying the child crashed or used the database.
 */
Datum
isolated_call(JobFunction *fn, Datum kwargs, bool *isnull, int64 time_limit_ms,
			  int64 memory_limit)
{
	int			fds[2];
	pid_t		pid;
	StringInfoData report;
	int			status;
	struct rusage ru;
	Datum		value;

	if (pipe(fds) < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create a pipe for an isolated job: %m")));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
	{
		close(fds[0]);
		close(fds[1]);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not fork an isolated job: %m")));
	}
	if (pid == 0)
	{
		close(fds[0]);
		report_fd = fds[1];
		child_main(fn, kwargs, time_limit_ms, memory_limit);
	}
	close(fds[1]);

	initStringInfo(&report);
	read_report(pid, fds[0], &report);
	close(fds[0]);
	while (wait4(pid, &status, 0, &ru) < 0)
	{
		if (errno != EINTR)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not wait for an isolated job: %m")));
	}
	/* its CPU time and peak size are the job's (stats.c) */
	stats_cost_child(&ru);

	if (report.len >= 1 && report.data[0] == 'D')
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("isolated job cannot use the database"),
				 errdetail("A job of an isolated queue runs in a child process without the server's shared memory: no SPI, catalog lookups or locks."),
				 errhint("Run jobs that use the database in a queue with executor 'process'.")));
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
	if (report.len == 1 && report.data[0] == 'N')
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (report.len < 2 || report.data[0] != 'R')
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("isolated job exited with code %d without a result",
						WIFEXITED(status) ? WEXITSTATUS(status) : -1)));

	/* the result's bytes, made a Datum of its type again */
	if (OidIsValid(fn->rettype) && fn->typbyval)
	{
		if (report.len - 1 != sizeof(Datum))
			elog(ERROR, "isolated job returned %d bytes", report.len - 1);
		memcpy(&value, report.data + 1, sizeof(Datum));
	}
	else
	{
		char	   *copy = palloc(report.len - 1);

		memcpy(copy, report.data + 1, report.len - 1);
		if ((!OidIsValid(fn->rettype) || fn->typlen == -1) &&
			(report.len - 1 < VARHDRSZ || VARSIZE(copy) != report.len - 1))
			elog(ERROR, "isolated job returned a malformed value");
		value = PointerGetDatum(copy);
	}
	*isnull = false;
	return function_result_jsonb(fn, value, isnull);
}
