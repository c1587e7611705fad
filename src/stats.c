/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Observability: what each job cost, and counters, histograms and gauges
 *	  in shared memory per database, role, queue and job name, with the SQL
 *	  functions that show them (chancy_stats, chancy_queue_counts,
 *	  chancy_metrics, chancy_metrics_prometheus) and the per-minute history
 *	  the supervisor writes.
 *
 * Cost.  Around each job function the executor reads its own CPU time
 * (getrusage), its memory, and PostgreSQL's WAL and buffer usage counters.
 * Memory is the data size (the memory limit's reading, limits.c), sampled
 * by the watchdog during the job; as the job returns, what malloc holds
 * from the system (mallinfo2, a tenth of the cost of reading /proc) tells
 * how it moved since the last reading.  The figures go into the statement
 * that records the job's outcome: no write of their own.  To keep it cheap
 * the reading after one job is the reading before the next one of its
 * group.  An isolated child's CPU time and peak resident size come from
 * wait4().
 *
 * Counters.  An entry per (database, role, queue, job name) counts pushes,
 * starts and outcomes, with log-scale histograms of wait (due to start) and
 * run time, and gauges: how many of its jobs the table holds in each
 * state.  Everything but the executor's own outcomes is counted when the
 * transaction that did it commits (wakeup.c); the executor counts its
 * group's jobs after the group commits.  Entries are pg_atomic counters: an
 * executor adds without a lock, through a cache of entry pointers.
 *
 * Gauges are exact only while every change to chancy_jobs goes through
 * chancy.  So a database's gauges are valid only once its supervisor has
 * counted the table into them, and are made invalid by what changes the
 * table behind chancy's back as far as chancy can tell: CREATE/ALTER/DROP
 * EXTENSION, TRUNCATE or COPY FROM of chancy_jobs, COMMIT PREPARED,
 * chancy_adopt_jobs(), chancy_delete_queue(purge_jobs), chancy_stats_rebuild(),
 * a full table.  While they are invalid, chancy_queue_counts() counts the
 * table instead.
 *
 * The count takes no lock on chancy_jobs, so it neither waits for a long job
 * nor holds pushes up.  Under the statistics' lock it takes a snapshot,
 * publishes it, and zeroes the gauges; it counts under that snapshot; then
 * it adds the count.  Meanwhile every transaction that commits a change
 * skips its gauges' part if the published snapshot sees it (the count has
 * it) and applies it otherwise: what the snapshot missed is added exactly
 * once.  A transaction's changes reach the gauges in its commit callback,
 * under the same lock (shared); every change to chancy_jobs assigns an XID.
 * A commit becomes visible before its callbacks run: so a transaction with
 * changes publishes its XID before it commits (stats_committing), and a
 * count does not end while a commit its snapshot sees is yet to apply its
 * changes (they must find the count in progress and be skipped).  An
 * invalidation during a count leaves the gauges invalid.
 *
 * Counters live as long as shared memory (a restart starts them at zero),
 * like PostgreSQL's own statistics; chancy_stats_reset() zeroes them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "executor/instrument.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/autovacuum.h"
#include "replication/walsender.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

PG_FUNCTION_INFO_V1(chancy_stats);
PG_FUNCTION_INFO_V1(chancy_stats_reset);
PG_FUNCTION_INFO_V1(chancy_stats_rebuild);
PG_FUNCTION_INFO_V1(chancy_queue_counts);
PG_FUNCTION_INFO_V1(chancy_metrics);
PG_FUNCTION_INFO_V1(chancy_metrics_prometheus);
PG_FUNCTION_INFO_V1(chancy_library_version);

/*
 * Histogram bucket bounds in microseconds: ten a decade (a bucket spans at
 * most a third of its lower bound), from 10 us to 5000 s; Prometheus is
 * shown those of 1, 2 and 5 (exported()).
 */
static const int steps[10] = {10, 12, 15, 20, 25, 30, 40, 50, 60, 80};
#define NBOUNDS 88
#define NBUCKETS (NBOUNDS + 1)	/* the last is +Inf */
static int64 bounds_us[NBOUNDS];

/* a memory reading this much above the one before a job: its memory goes
 * when its subtransaction ends, so the next job reads afresh */
#define COST_BASE_DRIFT (1024 * 1024)

/* the entry of a database itself (its gauges' validity): no role */
#define DATABASE_ENTRY_ROLE InvalidOid

static const char *const counter_names[STATS_NCOUNTERS] = {
	"pushed", "started", "succeeded", "failed", "retried", "cancelled", "crashed"
};
static const char *const state_names[JS_NSTATES] = {
	"pending", "running", "retrying", "succeeded", "failed", "cancelled"
};

/* What the hash table is keyed by. */
typedef struct StatsTag
{
	Oid			dboid;
	Oid			role;
	char		queue[NAMEDATALEN];
	char		name[STATS_NAME_LEN];
} StatsTag;

typedef struct Histogram
{
	pg_atomic_uint64 bucket[NBUCKETS];	/* not cumulative */
	pg_atomic_uint64 sum_us;
} Histogram;

/* An entry in shared memory. */
typedef struct StatsEntry
{
	StatsTag	tag;			/* hash key: first */
	pg_atomic_uint64 counts[STATS_NCOUNTERS];
	pg_atomic_uint64 states[JS_NSTATES];	/* gauges, signed */
	pg_atomic_uint64 cpu_us;
	Histogram	wait;
	Histogram	run;
	pg_atomic_uint32 gauges_valid;	/* the database's entry only: counted */
	pg_atomic_uint32 count_wanted;	/* ... and to be counted */
	pg_atomic_uint32 invalidations; /* ... and how often it was invalid */
	TimestampTz since;			/* made or reset */
} StatsEntry;

typedef struct StatsShared
{
	LWLock	   *lock;			/* the hash table's, and the count's */
	pg_atomic_uint64 generation;	/* bumped when entries go */
	TimestampTz warned_at;		/* the last "full" warning */
	StatsEntry	overflow;		/* what found no room */
	/* the count in progress, if any: its database, process, snapshot's XIDs */
	Oid			counting_db;	/* InvalidOid: none */
	pid_t		counting_pid;
	TransactionId xmin;
	TransactionId xmax;
	int			xcnt;
	int			xip_room;		/* MAX_XIP */
	TransactionId xip[FLEXIBLE_ARRAY_MEMBER];
	/* then, per PGPROC, the XID of a commit whose gauge changes are to come */
} StatsShared;

/*
 * Room for a snapshot's running XIDs (GetMaxSnapshotXidCount()'s), known
 * when shared memory is sized (before 15, in _PG_init, from the settings).
 */
#define MAX_XIP (MaxBackends > 0 ? MaxBackends + max_prepared_xacts : \
				 MaxConnections + autovacuum_max_workers + 1 + max_worker_processes + \
				 max_wal_senders + max_prepared_xacts)
/* PGPROCs (ProcGlobal->allProcCount) */
#define NPROCS (MAX_XIP + NUM_AUXILIARY_PROCS)
/* the committing XIDs, after the xip array */
#define COMMITTING(s) \
	((pg_atomic_uint32 *) MAXALIGN((char *) (s)->xip + sizeof(TransactionId) * (s)->xip_room))
#define STATS_SHARED_SIZE \
	add_size(MAXALIGN(add_size(offsetof(StatsShared, xip), \
							   mul_size(sizeof(TransactionId), MAX_XIP))), \
			 mul_size(sizeof(pg_atomic_uint32), NPROCS))

static StatsShared *stats_shared = NULL;
static HTAB *stats_entries = NULL;

static void invalidate(Oid dboid, bool recount);

/* this process's cache of entry pointers, valid for one generation */
typedef struct CachedEntry
{
	StatsTag	tag;
	StatsEntry *entry;
} CachedEntry;
static HTAB *cache = NULL;
static uint64 cache_generation = 0;

/* the cost readings (executors) */
static bool measuring = false;	/* between stats_cost_begin and _end */
static bool base_valid = false;
static struct rusage base_ru;
static int64 base_size;			/* data size */
static int64 base_malloc;		/* malloc_footprint() */
static TimestampTz cost_started;
static WalUsage base_wal;
static BufferUsage base_buf;
static bool child_valid = false;
static struct rusage child_ru;

/*
 * stats_shmem_size, stats_shmem_init
 *		chancy's shared memory (slots.c) asks for and creates ours.
 */
Size
stats_shmem_size(void)
{
	return add_size(MAXALIGN(STATS_SHARED_SIZE),
					hash_estimate_size(chancy_max_stats_entries, sizeof(StatsEntry)));
}

/* Zero a counter: a new one is initialized, one in use written. */
static inline void
zero(pg_atomic_uint64 *counter, bool init)
{
	if (init)
		pg_atomic_init_u64(counter, 0);
	else
		pg_atomic_write_u64(counter, 0);
}

/* Zero an entry's counters and histograms (not its gauges), since now. */
static void
zero_counters(StatsEntry *e, bool init)
{
	for (int i = 0; i < STATS_NCOUNTERS; i++)
		zero(&e->counts[i], init);
	zero(&e->cpu_us, init);
	for (int i = 0; i < NBUCKETS; i++)
	{
		zero(&e->wait.bucket[i], init);
		zero(&e->run.bucket[i], init);
	}
	zero(&e->wait.sum_us, init);
	zero(&e->run.sum_us, init);
	e->since = GetCurrentTimestamp();
}

/* A new entry: all zero, its gauges (if it is a database's) invalid. */
static void
init_entry(StatsEntry *e)
{
	zero_counters(e, true);
	for (int i = 0; i < JS_NSTATES; i++)
		zero(&e->states[i], true);
	pg_atomic_init_u32(&e->gauges_valid, 0);
	pg_atomic_init_u32(&e->count_wanted, 1);
	pg_atomic_init_u32(&e->invalidations, 0);
}

void
stats_shmem_init(LWLock *lock)
{
	HASHCTL		info;
	bool		found;

	stats_shared = ShmemInitStruct("chancy stats", STATS_SHARED_SIZE, &found);
	if (!found)
	{
		memset(stats_shared, 0, offsetof(StatsShared, xip));
		stats_shared->xip_room = MAX_XIP;
		for (int i = 0; i < NPROCS; i++)
			pg_atomic_init_u32(&COMMITTING(stats_shared)[i], InvalidTransactionId);
		stats_shared->lock = lock;
		pg_atomic_init_u64(&stats_shared->generation, 1);
		init_entry(&stats_shared->overflow);
		strlcpy(stats_shared->overflow.tag.name, "(other)", STATS_NAME_LEN);
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(StatsTag);
	info.entrysize = sizeof(StatsEntry);
	stats_entries = ShmemInitHash("chancy stats entries", chancy_max_stats_entries,
								  chancy_max_stats_entries, &info,
								  HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
}

/*
 * tag_name
 *		The name a tag holds (dst, STATS_NAME_LEN bytes): the whole, or for a
 *		longer one its first characters and a hash of the whole, so that two
 *		such names stay apart.  As it is, for a name tag_name() made.
 */
static void
tag_name(char *dst, const char *name)
{
	int			len = strlen(name);

	if (len < STATS_NAME_LEN)
		memcpy(dst, name, len + 1);
	else
		snprintf(dst, STATS_NAME_LEN, "%.*s~%08x",
				 pg_mbcliplen(name, len, STATS_NAME_LEN - 10), name,
				 hash_bytes((const unsigned char *) name, len));
}

/* The tag of (database, role, queue, name). */
static void
make_tag(StatsTag *tag, Oid dboid, Oid role, const char *queue, const char *name)
{
	memset(tag, 0, sizeof(StatsTag));
	tag->dboid = dboid;
	tag->role = role;
	strlcpy(tag->queue, queue, NAMEDATALEN);
	tag_name(tag->name, name);
}

/*
 * find_entry
 *		The entry of tag, made if need be; the overflow entry if the table is
 *		full (then the database's gauges are no longer right: invalid).
 *		Allocates nothing, fails on nothing: commit callbacks use it.
 */
static StatsEntry *
find_entry(const StatsTag *tag)
{
	StatsEntry *e;
	bool		found;

	LWLockAcquire(stats_shared->lock, LW_SHARED);
	e = hash_search(stats_entries, tag, HASH_FIND, NULL);
	LWLockRelease(stats_shared->lock);
	if (e != NULL)
		return e;

	LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
	e = hash_search(stats_entries, tag, HASH_ENTER_NULL, &found);
	if (e != NULL && !found)
		init_entry(e);
	LWLockRelease(stats_shared->lock);
	if (e != NULL)
		return e;

	/* not counted again: the table would not hold the count either */
	invalidate(tag->dboid, false);
	if (GetCurrentTimestamp() - stats_shared->warned_at > USECS_PER_MINUTE)
	{
		stats_shared->warned_at = GetCurrentTimestamp();
		ereport(WARNING,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("chancy's statistics are full: jobs of queue \"%s\" named \"%s\" are counted as \"(other)\"",
						tag->queue, tag->name),
				 errdetail("chancy.max_stats_entries (%d) entries of database, role, queue and job name are in use; chancy_queue_stats counts the table meanwhile.",
						   chancy_max_stats_entries),
				 errhint("Raise chancy.max_stats_entries, or call chancy_stats_reset() to drop the entries of jobs no longer in the table.")));
	}
	return &stats_shared->overflow;
}

/* A hash table of this process keyed by StatsTag, entries of entrysize. */
static HTAB *
tag_hash_create(const char *name, Size entrysize)
{
	HASHCTL		info;

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(StatsTag);
	info.entrysize = entrysize;
	info.hcxt = TopMemoryContext;
	return hash_create(name, 64, &info, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * cached_entry
 *		find_entry() through this process's cache (not in a commit callback:
 *		the cache allocates), with the generation it is good for.  Entries
 *		go only when their database is dropped or chancy_stats_reset() drops
 *		idle ones, which bumps the generation: the cache then starts over.
 */
static StatsEntry *
cached_entry(Oid role, const char *queue, const char *name, uint64 *generation)
{
	StatsTag	tag;
	CachedEntry *c;
	bool		found;

	*generation = pg_atomic_read_u64(&stats_shared->generation);
	if (cache == NULL || *generation != cache_generation)
	{
		if (cache != NULL)
			hash_destroy(cache);
		cache = tag_hash_create("chancy stats cache", sizeof(CachedEntry));
		cache_generation = *generation;
	}
	make_tag(&tag, MyDatabaseId, role, queue, name);
	c = hash_search(cache, &tag, HASH_ENTER, &found);
	if (!found)
		c->entry = NULL;
	if (c->entry == NULL)
		c->entry = find_entry(&tag);
	/* the overflow is not kept: room may come back */
	if (c->entry == &stats_shared->overflow)
	{
		(void) hash_search(cache, &tag, HASH_REMOVE, NULL);
		return &stats_shared->overflow;
	}
	return c->entry;
}

/*
 * lock_entry
 *		The entry of tag, with the lock held shared so that it cannot go:
 *		e if it is still good (taken at generation), else found again.
 */
static StatsEntry *
lock_entry(const StatsTag *tag, StatsEntry *e, uint64 generation)
{
	for (;;)
	{
		if (e == NULL)
		{
			generation = pg_atomic_read_u64(&stats_shared->generation);
			e = find_entry(tag);
		}
		LWLockAcquire(stats_shared->lock, LW_SHARED);
		if (pg_atomic_read_u64(&stats_shared->generation) == generation)
			return e;
		LWLockRelease(stats_shared->lock);
		e = NULL;
	}
}

/* Add delta (signed) to a counter. */
static inline void
add(pg_atomic_uint64 *counter, int64 delta)
{
	if (delta != 0)
		(void) pg_atomic_fetch_add_u64(counter, (uint64) delta);
}

/* Fill bounds_us (once per process). */
static void
make_bounds(void)
{
	int64		decade = 1;

	if (bounds_us[0] != 0)
		return;
	for (int i = 0; i < NBOUNDS; i++)
	{
		bounds_us[i] = steps[i % 10] * decade;
		if (i % 10 == 9)
			decade *= 10;
	}
}

/* Is bound b one Prometheus is shown (1, 2 or 5 times a power of ten)? */
static bool
exported(int b)
{
	return steps[b % 10] == 10 || steps[b % 10] == 20 || steps[b % 10] == 50;
}

/* Observe a duration of us microseconds in h. */
static void
observe(Histogram *h, int64 us)
{
	int			lo = 0;
	int			hi = NBOUNDS;

	make_bounds();
	us = Max(us, 0);
	/* the first bound at or above us (NBOUNDS: +Inf) */
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (us > bounds_us[mid])
			lo = mid + 1;
		else
			hi = mid;
	}
	add(&h->bucket[lo], 1);
	add(&h->sum_us, us);
}

/* The index of a chancy_state by its name; -1 if none. */
JobState
stats_state(const char *state)
{
	for (int i = 0; i < JS_NSTATES; i++)
		if (strcmp(state, state_names[i]) == 0)
			return (JobState) i;
	return JS_NONE;
}

/* The state a waiting job is in: retrying once a run of it counted. */
JobState
stats_waiting_state(int32 attempts)
{
	return attempts > 0 ? JS_RETRYING : JS_PENDING;
}

/*
 * counted
 *		Does the count in progress see (committed) transaction xid?  With the
 *		lock held.
 */
static bool
counted(TransactionId xid)
{
	if (!TransactionIdIsValid(xid))
		return false;
	if (TransactionIdPrecedes(xid, stats_shared->xmin))
		return true;
	if (!TransactionIdPrecedes(xid, stats_shared->xmax))
		return false;
	for (int i = 0; i < stats_shared->xcnt; i++)
		if (TransactionIdEquals(stats_shared->xip[i], xid))
			return false;
	return true;
}

/*
 * stats_apply
 *		Apply the change of transaction xid, which just committed (wakeup.c
 *		calls it in the commit callback: it allocates nothing and fails on
 *		nothing).  Its gauges' part is skipped if the count in progress saw
 *		the transaction, and never goes to the overflow entry.
 */
void
stats_apply(const StatsChange *c, TransactionId xid)
{
	StatsTag	tag;
	StatsEntry *e;
	bool		lost = false;

	if (stats_shared == NULL)
		return;
	make_tag(&tag, MyDatabaseId, c->role, c->queue, c->name);
	e = lock_entry(&tag, c->entry, c->generation);
	for (int i = 0; i < STATS_NCOUNTERS; i++)
		add(&e->counts[i], c->counts[i]);
	if (!(stats_shared->counting_db == MyDatabaseId && counted(xid)))
	{
		for (int i = 0; i < JS_NSTATES; i++)
		{
			if (c->states[i] == 0)
				continue;
			if (e == &stats_shared->overflow)
				lost = true;	/* the gauges miss it */
			else
				add(&e->states[i], c->states[i]);
		}
	}
	LWLockRelease(stats_shared->lock);
	if (lost)
		invalidate(MyDatabaseId, false);
}

/*
 * stats_committing, stats_committed
 *		A transaction with changes for the gauges is about to commit (xid),
 *		or has applied them (or aborted).  Until then a count that sees it
 *		does not end: its changes must find the count in progress, to be
 *		skipped, not added after it (wakeup.c; a commit becomes visible
 *		before its callbacks run).
 */
void
stats_committing(TransactionId xid)
{
	if (stats_shared != NULL && MyProc != NULL)
		pg_atomic_write_u32(&COMMITTING(stats_shared)[MyProc->pgprocno], xid);
}

void
stats_committed(void)
{
	if (stats_shared != NULL && MyProc != NULL)
		pg_atomic_write_u32(&COMMITTING(stats_shared)[MyProc->pgprocno],
							InvalidTransactionId);
}

/* Is a commit the count in progress sees still to apply its changes? */
static bool
seen_commit_pending(void)
{
	bool		pending = false;

	LWLockAcquire(stats_shared->lock, LW_SHARED);
	for (int i = 0; i < NPROCS && !pending; i++)
	{
		TransactionId xid = pg_atomic_read_u32(&COMMITTING(stats_shared)[i]);

		pending = TransactionIdIsValid(xid) && counted(xid);
	}
	LWLockRelease(stats_shared->lock);
	return pending;
}

/*
 * stats_at_commit
 *		n jobs of (role, queue, name) were counted as counter (or
 *		STATS_NONE) and moved from state from to state to (either JS_NONE):
 *		count it when the current transaction commits.
 */
void
stats_at_commit(Oid role, const char *queue, const char *name, StatsCounter counter,
				JobState from, JobState to, int64 n)
{
	StatsChange c;

	if (n == 0 || (counter == STATS_NONE && from == to))
		return;
	memset(&c, 0, sizeof(c));
	c.role = role;
	strlcpy(c.queue, queue, NAMEDATALEN);
	tag_name(c.name, name);
	/* the entry is found now, where finding may allocate */
	c.entry = cached_entry(role, queue, name, &c.generation);
	if (counter != STATS_NONE)
		c.counts[counter] = n;
	if (from != JS_NONE)
		c.states[from] -= n;
	if (to != JS_NONE)
		c.states[to] += n;
	wakeup_stats_at_commit(&c);
}

/*
 * stats_job_moved
 *		In the executor, in the transaction that records how job's run ended
 *		(job->ended): its move from the state it had to the one it ends in,
 *		for the gauges at commit.  (At commit, not after: the supervisor's
 *		count of the table must never see a change whose move is still to
 *		come.)
 */
void
stats_job_moved(ClaimedJob *job)
{
	JobState	to;

	switch (job->ended)
	{
		case STATS_NONE:
			return;
		case STATS_SUCCEEDED:
			to = JS_SUCCEEDED;
			break;
		case STATS_FAILED:
			to = JS_FAILED;
			break;
		case STATS_RETRIED:
			to = JS_RETRYING;
			break;
		default:
			to = JS_CANCELLED;
			break;
	}
	stats_at_commit(job->pushed_by, job->queue, job->name, STATS_NONE,
					job->started ? JS_RUNNING : stats_waiting_state(job->attempt - 1),
					to, 1);
}

/*
 * stats_job_done
 *		In the executor, after the group of job committed: count its start
 *		and outcome (job->ended), its wait and run time, and its CPU time.
 */
void
stats_job_done(ClaimedJob *job)
{
	StatsEntry *e;
	StatsTag	tag;
	uint64		generation;

	if (stats_shared == NULL || job->ended == STATS_NONE)
		return;
	e = cached_entry(job->pushed_by, job->queue, job->name, &generation);
	make_tag(&tag, MyDatabaseId, job->pushed_by, job->queue, job->name);
	e = lock_entry(&tag, e, generation);
	add(&e->counts[STATS_STARTED], 1);
	add(&e->counts[job->ended], 1);
	observe(&e->wait, job->started_at - job->due);
	observe(&e->run, job->cost.valid ? job->cost.run_us :
			job->ended_at - job->started_at);
	if (job->cost.valid)
		add(&e->cpu_us, job->cost.cpu_user_us + job->cost.cpu_sys_us);
	LWLockRelease(stats_shared->lock);
}

/* ----------------------------------------------------------------------
 * What a job cost
 * ----------------------------------------------------------------------
 */

static int64
tv_us(const struct timeval *tv)
{
	return (int64) tv->tv_sec * 1000000 + tv->tv_usec;
}

/*
 * malloc_footprint
 *		The bytes malloc holds from the system (its heap and its own
 *		mappings): how the data size moves, unless a job maps memory itself
 *		(the watchdog's samples see that).  -1 where glibc cannot tell.
 */
static int64
malloc_footprint(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	struct mallinfo2 m = mallinfo2();

	return (int64) (m.arena + m.hblkhd);
#else
	return -1;
#endif
}

/*
 * stats_cost_begin
 *		Just before a job function is called: take the readings its cost is
 *		measured from (reusing those taken after the job before it).
 */
void
stats_cost_begin(void)
{
	if (!base_valid)
	{
		(void) getrusage(RUSAGE_SELF, &base_ru);
		base_size = limits_data_size();
		base_malloc = malloc_footprint();
		base_valid = true;
	}
	base_wal = pgWalUsage;
	base_buf = pgBufferUsage;
	child_valid = false;
	cost_started = GetCurrentTimestamp();
	measuring = true;
}

/*
 * stats_cost_child
 *		An isolated job's child was reaped with this usage: it is the job's.
 */
void
stats_cost_child(const struct rusage *ru)
{
	child_ru = *ru;
	child_valid = true;
}

/*
 * stats_cost_end
 *		Just after a job function returned or raised (before its
 *		subtransaction ends): what it cost since stats_cost_begin().  Safe
 *		after any error: it allocates nothing (mallinfo2 takes malloc's lock,
 *		which no job holds as it returns).  Nothing is measured, and cost
 *		stays as it was, if stats_cost_begin() was not reached.
 */
void
stats_cost_end(JobCost *cost)
{
	struct rusage ru;
	int64		size;
	int64		footprint;

	if (!measuring)
		return;
	measuring = false;
	footprint = malloc_footprint();

	cost->valid = true;
	cost->run_us = Max(GetCurrentTimestamp() - cost_started, 0);
	(void) getrusage(RUSAGE_SELF, &ru);
	size = footprint < 0 || base_malloc < 0 ? limits_data_size() :
		base_size + (footprint - base_malloc);
	cost->cpu_user_us = Max(tv_us(&ru.ru_utime) - tv_us(&base_ru.ru_utime), 0);
	cost->cpu_sys_us = Max(tv_us(&ru.ru_stime) - tv_us(&base_ru.ru_stime), 0);
	cost->mem_peak_bytes = Max(Max(size, limits_peak_data_size()) - base_size, 0);
	cost->wal_bytes = (int64) (pgWalUsage.wal_bytes - base_wal.wal_bytes);
	cost->blks_hit = (pgBufferUsage.shared_blks_hit - base_buf.shared_blks_hit) +
		(pgBufferUsage.local_blks_hit - base_buf.local_blks_hit);
	cost->blks_read = (pgBufferUsage.shared_blks_read - base_buf.shared_blks_read) +
		(pgBufferUsage.local_blks_read - base_buf.local_blks_read);
	if (child_valid)
	{
		cost->cpu_user_us += tv_us(&child_ru.ru_utime);
		cost->cpu_sys_us += tv_us(&child_ru.ru_stime);
		cost->mem_peak_bytes = Max(cost->mem_peak_bytes, (int64) child_ru.ru_maxrss * 1024);
		child_valid = false;
	}
	base_ru = ru;
	if (size - base_size > COST_BASE_DRIFT)
		base_valid = false;
	else
	{
		base_size = size;
		base_malloc = footprint;
	}
}

/*
 * stats_cost_forget
 *		The executor did other work (a commit, a claim) since the last job:
 *		the next one reads afresh.
 */
void
stats_cost_forget(void)
{
	base_valid = false;
}

/*
 * stats_cost_figures
 *		A job's cost as the figures the outcome statements take, in their
 *		order: run_us, cpu_user_us, cpu_sys_us, mem_peak_bytes, wal_bytes,
 *		blks_hit, blks_read.
 */
void
stats_cost_figures(const JobCost *cost, int64 figures[JOB_COST_FIGURES])
{
	figures[0] = cost->run_us;
	figures[1] = cost->cpu_user_us;
	figures[2] = cost->cpu_sys_us;
	figures[3] = cost->mem_peak_bytes;
	figures[4] = cost->wal_bytes;
	figures[5] = cost->blks_hit;
	figures[6] = cost->blks_read;
}

/*
 * stats_cost_array
 *		A job's cost as the int8[7] of its figures (stats_cost_figures),
 *		or NULL when it was not measured.
 */
Datum
stats_cost_array(const JobCost *cost, bool *isnull)
{
	int64		figures[JOB_COST_FIGURES];
	Datum		d[JOB_COST_FIGURES];

	*isnull = !cost->valid;
	if (!cost->valid)
		return (Datum) 0;
	stats_cost_figures(cost, figures);
	for (int k = 0; k < JOB_COST_FIGURES; k++)
		d[k] = Int64GetDatum(figures[k]);
	return PointerGetDatum(construct_array(d, JOB_COST_FIGURES, INT8OID, 8,
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* ----------------------------------------------------------------------
 * Gauges: valid, invalid, counted again
 * ----------------------------------------------------------------------
 */

/* The entry of database dboid itself; NULL if the table is full. */
static StatsEntry *
database_entry(Oid dboid)
{
	StatsTag	tag;
	StatsEntry *e;

	make_tag(&tag, dboid, DATABASE_ENTRY_ROLE, "", "");
	e = find_entry(&tag);
	return e == &stats_shared->overflow ? NULL : e;
}

/*
 * invalidate
 *		The gauges of database dboid no longer match its table.  With
 *		recount, its supervisor counts them again (woken for it if dboid is
 *		ours); without (the statistics are full), not until asked.
 *		Allocates nothing.
 */
static void
invalidate(Oid dboid, bool recount)
{
	StatsTag	tag;
	StatsEntry *e;

	make_tag(&tag, dboid, DATABASE_ENTRY_ROLE, "", "");
	LWLockAcquire(stats_shared->lock, LW_SHARED);
	e = hash_search(stats_entries, &tag, HASH_FIND, NULL);
	if (e != NULL)
	{
		/* a count in progress does not make them valid (stats_count_gauges) */
		pg_atomic_fetch_add_u32(&e->invalidations, 1);
		pg_atomic_write_u32(&e->gauges_valid, 0);
		if (recount)
			pg_atomic_write_u32(&e->count_wanted, 1);
	}
	LWLockRelease(stats_shared->lock);
	if (recount && dboid == MyDatabaseId)
		slots_wake_supervisor();
}

/*
 * stats_invalidate_gauges
 *		Jobs of database dboid changed behind chancy's back (ddl.c): its
 *		supervisor counts its gauges again.
 */
void
stats_invalidate_gauges(Oid dboid)
{
	if (stats_shared != NULL)
		invalidate(dboid, true);
}

/* Are this database's gauges valid? */
bool
stats_gauges_valid(void)
{
	StatsTag	tag;
	StatsEntry *e;
	bool		valid = false;

	make_tag(&tag, MyDatabaseId, DATABASE_ENTRY_ROLE, "", "");
	LWLockAcquire(stats_shared->lock, LW_SHARED);
	e = hash_search(stats_entries, &tag, HASH_FIND, NULL);
	if (e != NULL)
		valid = pg_atomic_read_u32(&e->gauges_valid) != 0;
	LWLockRelease(stats_shared->lock);
	return valid;
}

/* A row of the count: what it adds to which entry. */
typedef struct CountRow
{
	StatsEntry *entry;
	JobState	state;
	int64		n;
} CountRow;

/*
 * count_for_gauges
 *		The jobs of this database per role, queue, name and state, under
 *		snapshot snap, with their entries, found since *generation.  NIL
 *		with *full if an entry found no room.
 */
static List *
count_for_gauges(ChancyCatalog *cat, Snapshot snap, uint64 *generation, bool *full)
{
	CatalogSql	sql;
	List	   *rows = NIL;
	uint64		ignored;
	char	   *query = psprintf("SELECT pushed_by, queue, name, state::text, count(*)"
								 " FROM %s.chancy_jobs WHERE NOT replicated"
								 " GROUP BY 1, 2, 3, 4", cat->nspname);

	*full = false;
	*generation = pg_atomic_read_u64(&stats_shared->generation);
	catalog_sql_begin(cat, true, &sql);
	PushActiveSnapshot(snap);
	if (SPI_execute(query, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not count chancy_jobs");
	PopActiveSnapshot();
	for (uint64 r = 0; r < SPI_processed && !*full; r++)
	{
		HeapTuple	row = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(sql.caller);
		CountRow   *c = palloc(sizeof(CountRow));

		c->entry = cached_entry(DatumGetObjectId(SPI_getbinval(row, desc, 1, &isnull)),
								SPI_getvalue(row, desc, 2), SPI_getvalue(row, desc, 3),
								&ignored);
		c->state = stats_state(SPI_getvalue(row, desc, 4));
		c->n = DatumGetInt64(SPI_getbinval(row, desc, 5, &isnull));
		*full = c->entry == &stats_shared->overflow;
		rows = lappend(rows, c);
		MemoryContextSwitchTo(old);
	}
	catalog_sql_end(&sql);
	return *full ? NIL : rows;
}

/* The count in progress ends (with the lock held exclusively). */
static void
end_count(StatsEntry *db, bool valid)
{
	stats_shared->counting_db = InvalidOid;
	pg_atomic_write_u32(&db->gauges_valid, valid ? 1 : 0);
}

/*
 * end_count_at_exit
 *		A supervisor leaving (FATAL skips its PG_CATCH) ends the count it
 *		had in progress: its database's gauges are counted again by the
 *		next one.
 */
static void
end_count_at_exit(int code, Datum arg)
{
	bool		held;

	if (stats_shared == NULL)
		return;
	held = LWLockHeldByMe(stats_shared->lock);
	if (!held)
		LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
	if (OidIsValid(stats_shared->counting_db) && stats_shared->counting_pid == MyProcPid)
		stats_shared->counting_db = InvalidOid;
	if (!held)
		LWLockRelease(stats_shared->lock);
}

/*
 * stats_count_gauges
 *		The supervisor: if this database's gauges are to be counted, count
 *		the table into them (see the top of this file), without a lock on
 *		chancy_jobs.  False if another database's count is in progress, to
 *		try again soon.  The caller's transaction is open.
 */
bool
stats_count_gauges(ChancyCatalog *cat)
{
	StatsEntry *db = database_entry(MyDatabaseId);
	HASH_SEQ_STATUS seq;
	StatsEntry *e;
	Snapshot	snap;
	List	   *rows = NIL;
	uint64		generation;
	uint32		invalidations;
	bool		full = false;
	ListCell   *lc;
	static bool exit_registered = false;

	if (db == NULL || pg_atomic_exchange_u32(&db->count_wanted, 0) == 0)
		return true;			/* nothing asked, or full: counted from the table */
	if (!exit_registered)
	{
		/* a count this process leaves (FATAL) ends with it */
		before_shmem_exit(end_count_at_exit, (Datum) 0);
		exit_registered = true;
	}

	/* publish the snapshot and zero the gauges, no change applying meanwhile */
	LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
	/* another's (one whose supervisor left ended at its exit) */
	if (OidIsValid(stats_shared->counting_db))
	{
		LWLockRelease(stats_shared->lock);
		pg_atomic_write_u32(&db->count_wanted, 1);
		return false;
	}
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (snap->xcnt > stats_shared->xip_room)
	{
		/* cannot be (room for every PGPROC's): counted from the table */
		LWLockRelease(stats_shared->lock);
		UnregisterSnapshot(snap);
		return true;
	}
	stats_shared->counting_db = MyDatabaseId;
	stats_shared->counting_pid = MyProcPid;
	stats_shared->xmin = snap->xmin;
	stats_shared->xmax = snap->xmax;
	stats_shared->xcnt = snap->xcnt;
	memcpy(stats_shared->xip, snap->xip, sizeof(TransactionId) * stats_shared->xcnt);
	pg_atomic_write_u32(&db->gauges_valid, 0);
	invalidations = pg_atomic_read_u32(&db->invalidations);
	hash_seq_init(&seq, stats_entries);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->tag.dboid == MyDatabaseId)
			for (int i = 0; i < JS_NSTATES; i++)
				pg_atomic_write_u64(&e->states[i], 0);
	LWLockRelease(stats_shared->lock);

	PG_TRY();
	{
		rows = count_for_gauges(cat, snap, &generation, &full);
	}
	PG_CATCH();
	{
		LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
		end_count(db, false);
		LWLockRelease(stats_shared->lock);
		pg_atomic_write_u32(&db->count_wanted, 1);
		PG_RE_THROW();
	}
	PG_END_TRY();
	UnregisterSnapshot(snap);

	/*
	 * Commits the snapshot saw whose changes are still to come come first:
	 * a matter of microseconds (between a commit's becoming visible and its
	 * callbacks).  A second is more than enough; past it the count is given
	 * up and tried again later, so that the supervisor never hangs on it.
	 */
	for (int waited = 0; seen_commit_pending(); waited++)
	{
		if (waited >= 1000)
		{
			LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
			end_count(db, false);
			LWLockRelease(stats_shared->lock);
			pg_atomic_write_u32(&db->count_wanted, 1);
			return false;
		}
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}

	/* add the count; entries dropped meanwhile (a reset): count again */
	LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
	if (!full && pg_atomic_read_u64(&stats_shared->generation) != generation)
	{
		end_count(db, false);
		LWLockRelease(stats_shared->lock);
		pg_atomic_write_u32(&db->count_wanted, 1);
		return false;
	}
	foreach(lc, rows)
	{
		CountRow   *c = lfirst(lc);

		if (c->state != JS_NONE)
			add(&c->entry->states[c->state], c->n);
	}
	/*
	 * Full: invalid until asked again (chancy_stats_reset, _rebuild); so is
	 * a count that an invalidation came during (a change the gauges missed).
	 */
	end_count(db, !full && pg_atomic_read_u32(&db->invalidations) == invalidations);
	LWLockRelease(stats_shared->lock);
	return true;
}

/*
 * stats_forget_database
 *		DROP DATABASE: its entries go (none of its processes is left).
 */
void
stats_forget_database(Oid dboid)
{
	HASH_SEQ_STATUS seq;
	StatsEntry *e;

	if (stats_shared == NULL)
		return;
	LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, stats_entries);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->tag.dboid == dboid)
			(void) hash_search(stats_entries, &e->tag, HASH_REMOVE, NULL);
	pg_atomic_fetch_add_u64(&stats_shared->generation, 1);
	LWLockRelease(stats_shared->lock);
}

/* ----------------------------------------------------------------------
 * What a role may see, and copies of the entries
 * ----------------------------------------------------------------------
 */

/* Does the caller see every role's figures (pg_read_all_stats, as
 * PostgreSQL's statistics views)? */
static bool
sees_all(void)
{
	return has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
}

/* A copy of an entry, its atomics read. */
typedef struct EntryCopy
{
	StatsTag	tag;
	int64		counts[STATS_NCOUNTERS];
	int64		states[JS_NSTATES];
	int64		cpu_us;
	int64		wait[NBUCKETS];
	int64		wait_sum_us;
	int64		run[NBUCKETS];
	int64		run_sum_us;
	TimestampTz since;
} EntryCopy;

static void
copy_entry(StatsEntry *e, EntryCopy *c)
{
	c->tag = e->tag;
	for (int i = 0; i < STATS_NCOUNTERS; i++)
		c->counts[i] = (int64) pg_atomic_read_u64(&e->counts[i]);
	for (int i = 0; i < JS_NSTATES; i++)
		c->states[i] = (int64) pg_atomic_read_u64(&e->states[i]);
	c->cpu_us = (int64) pg_atomic_read_u64(&e->cpu_us);
	for (int i = 0; i < NBUCKETS; i++)
	{
		c->wait[i] = (int64) pg_atomic_read_u64(&e->wait.bucket[i]);
		c->run[i] = (int64) pg_atomic_read_u64(&e->run.bucket[i]);
	}
	c->wait_sum_us = (int64) pg_atomic_read_u64(&e->wait.sum_us);
	c->run_sum_us = (int64) pg_atomic_read_u64(&e->run.sum_us);
	c->since = e->since;
}

/*
 * copy_entries
 *		Copies of the job entries (not databases' own) of database dboid,
 *		InvalidOid for every database.
 */
static List *
copy_entries(Oid dboid)
{
	HASH_SEQ_STATUS seq;
	StatsEntry *e;
	List	   *copies = NIL;

	LWLockAcquire(stats_shared->lock, LW_SHARED);
	hash_seq_init(&seq, stats_entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		EntryCopy  *c;

		if (e->tag.role == DATABASE_ENTRY_ROLE ||
			(OidIsValid(dboid) && e->tag.dboid != dboid))
			continue;
		c = palloc(sizeof(EntryCopy));
		copy_entry(e, c);
		copies = lappend(copies, c);
	}
	LWLockRelease(stats_shared->lock);
	return copies;
}

/*
 * visible_entries
 *		Copies of the job entries the caller may see: of database dboid
 *		(InvalidOid: all databases, for those who see all), of its own roles
 *		unless it sees all.  With the overflow entry to those who see all.
 */
static List *
visible_entries(Oid dboid)
{
	bool		all = sees_all();
	Oid			me = GetUserId();
	List	   *copies;
	List	   *roles = NIL;
	ListCell   *lc;

	if (!all)
		dboid = MyDatabaseId;
	copies = copy_entries(dboid);
	if (all && !OidIsValid(dboid))
	{
		EntryCopy  *c = palloc(sizeof(EntryCopy));

		copy_entry(&stats_shared->overflow, c);
		if (c->counts[STATS_PUSHED] != 0 || c->counts[STATS_STARTED] != 0)
			copies = lappend(copies, c);
	}
	if (all)
		return copies;

	/* membership is looked up outside the lock */
	foreach(lc, copies)
	{
		EntryCopy  *c = lfirst(lc);

		if (!list_member_oid(roles, c->tag.role))
		{
			if (!is_member_of_role(me, c->tag.role))
			{
				copies = foreach_delete_current(copies, lc);
				continue;
			}
			roles = lappend_oid(roles, c->tag.role);
		}
	}
	return copies;
}

/*
 * percentile_ms
 *		The q-quantile of a histogram, in milliseconds, interpolated within
 *		its bucket (as Prometheus' histogram_quantile does); NULL if empty.
 */
static Datum
percentile_ms(const int64 *buckets, double q, bool *isnull)
{
	int64		total = 0;
	double		rank;
	int64		seen = 0;

	make_bounds();
	for (int i = 0; i < NBUCKETS; i++)
		total += buckets[i];
	*isnull = total == 0;
	if (total == 0)
		return (Datum) 0;
	rank = q * total;
	for (int i = 0; i < NBUCKETS; i++)
	{
		double		lo = i == 0 ? 0 : bounds_us[i - 1];
		double		hi;

		if (buckets[i] == 0 || seen + buckets[i] < rank)
		{
			seen += buckets[i];
			continue;
		}
		if (i == NBOUNDS)
			return Float8GetDatum(bounds_us[NBOUNDS - 1] / 1000.0);
		hi = bounds_us[i];
		return Float8GetDatum((lo + (hi - lo) * (rank - seen) / buckets[i]) / 1000.0);
	}
	return Float8GetDatum(bounds_us[NBOUNDS - 1] / 1000.0);
}

/* A database's name, or its OID if it is gone; "" for none. */
static char *
database_name(Oid dboid)
{
	char	   *name;

	if (!OidIsValid(dboid))
		return pstrdup("");
	name = get_database_name(dboid);
	return name ? name : psprintf("%u", dboid);
}

/*
 * chancy_stats() RETURNS SETOF record
 *		One row per database, role, queue and job name the caller may see:
 *		the counters, percentiles of wait and run time, totals.
 */
Datum
chancy_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, visible_entries(InvalidOid))
	{
		EntryCopy  *c = lfirst(lc);
		Datum		values[20];
		bool		nulls[20];
		int			col = 0;
		bool		counted = false;

		for (int i = 0; i < STATS_NCOUNTERS; i++)
			counted |= c->counts[i] != 0;
		if (!counted)
			continue;			/* kept for its gauges only */

		memset(nulls, 0, sizeof(nulls));
		values[col++] = CStringGetTextDatum(database_name(c->tag.dboid));
		values[col] = ObjectIdGetDatum(c->tag.role);
		nulls[col++] = !OidIsValid(c->tag.role);
		values[col++] = CStringGetTextDatum(c->tag.queue);
		values[col++] = CStringGetTextDatum(c->tag.name);
		for (int i = 0; i < STATS_NCOUNTERS; i++)
			values[col++] = Int64GetDatum(c->counts[i]);
		values[col] = percentile_ms(c->wait, 0.50, &nulls[col]);
		col++;
		values[col] = percentile_ms(c->wait, 0.95, &nulls[col]);
		col++;
		values[col] = percentile_ms(c->wait, 0.99, &nulls[col]);
		col++;
		values[col] = percentile_ms(c->run, 0.50, &nulls[col]);
		col++;
		values[col] = percentile_ms(c->run, 0.95, &nulls[col]);
		col++;
		values[col] = percentile_ms(c->run, 0.99, &nulls[col]);
		col++;
		values[col++] = Float8GetDatum(c->run_sum_us / 1000.0);
		values[col++] = Float8GetDatum(c->cpu_us / 1000.0);
		values[col++] = TimestampTzGetDatum(c->since);
		Assert(col == 20);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * chancy_stats_reset() RETURNS void
 *		Zero the counters and histograms of this database, and drop the
 *		entries of jobs the table no longer holds (the gauges, which follow
 *		the table, stay).  Revoked from PUBLIC.
 */
Datum
chancy_stats_reset(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS seq;
	StatsEntry *e;

	LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, stats_entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		bool		live = false;

		if (e->tag.dboid != MyDatabaseId || e->tag.role == DATABASE_ENTRY_ROLE)
			continue;
		for (int i = 0; i < JS_NSTATES; i++)
			live |= pg_atomic_read_u64(&e->states[i]) != 0;
		if (!live)
		{
			(void) hash_search(stats_entries, &e->tag, HASH_REMOVE, NULL);
			continue;
		}
		zero_counters(e, false);
	}
	pg_atomic_fetch_add_u64(&stats_shared->generation, 1);
	LWLockRelease(stats_shared->lock);
	/* room was made: gauges that did not fit are counted again */
	if (!stats_gauges_valid())
		invalidate(MyDatabaseId, true);
	PG_RETURN_VOID();
}

/*
 * chancy_stats_rebuild() RETURNS void
 *		Have the supervisor count this database's gauges from the table again
 *		(after a restore, or a change to chancy_jobs made by hand), once the
 *		calling transaction commits: a count before would miss what it did
 *		(chancy_delete_queue(purge_jobs), chancy_adopt_jobs() call it).
 *		Revoked from PUBLIC.
 */
Datum
chancy_stats_rebuild(PG_FUNCTION_ARGS)
{
	wakeup_recount_at_commit();
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------------
 * Jobs per queue and state: from the gauges, else from the table
 * ----------------------------------------------------------------------
 */

/* A queue's counts, by state. */
typedef struct QueueCounts
{
	char		queue[NAMEDATALEN];
	int64		states[JS_NSTATES];
} QueueCounts;

/* The QueueCounts of queue in list *all, added if new. */
static QueueCounts *
queue_counts_of(List **all, const char *queue)
{
	ListCell   *lc;
	QueueCounts *q;

	foreach(lc, *all)
	{
		q = lfirst(lc);
		if (strcmp(q->queue, queue) == 0)
			return q;
	}
	q = palloc0(sizeof(QueueCounts));
	strlcpy(q->queue, queue, NAMEDATALEN);
	*all = lappend(*all, q);
	return q;
}

/*
 * count_table
 *		The caller's visible jobs per queue and state, counted in the table
 *		(while the gauges are not valid).
 */
static List *
count_table(ChancyCatalog *cat, bool all)
{
	CatalogSql	sql;
	List	   *counts = NIL;
	Datum		args[2];
	Oid			types[2] = {BOOLOID, OIDOID};
	char	   *query;

	query = psprintf("SELECT queue, state::text, count(*) FROM %s.chancy_jobs"
					 " WHERE NOT replicated AND ($1 OR pg_catalog.pg_has_role($2, pushed_by, 'MEMBER'))"
					 " GROUP BY 1, 2", cat->nspname);
	args[0] = BoolGetDatum(all);
	args[1] = ObjectIdGetDatum(GetUserId());
	catalog_sql_begin(cat, true, &sql);
	if (SPI_execute_with_args(query, 2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not count chancy_jobs");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	row = SPI_tuptable->vals[r];
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(sql.caller);
		QueueCounts *q = queue_counts_of(&counts, SPI_getvalue(row, SPI_tuptable->tupdesc, 1));
		JobState	state = stats_state(SPI_getvalue(row, SPI_tuptable->tupdesc, 2));

		MemoryContextSwitchTo(old);
		if (state != JS_NONE)
			q->states[state] += DatumGetInt64(SPI_getbinval(row, SPI_tuptable->tupdesc, 3,
															&isnull));
	}
	catalog_sql_end(&sql);
	return counts;
}

/*
 * queue_counts
 *		The caller's visible jobs of this database per queue and state: from
 *		the gauges while they are valid (whatever the table's size), else
 *		counted in the table.
 */
static List *
queue_counts(ChancyCatalog *cat)
{
	List	   *counts = NIL;
	ListCell   *lc;

	if (!stats_gauges_valid())
		return count_table(cat, sees_all());
	foreach(lc, visible_entries(MyDatabaseId))
	{
		EntryCopy  *c = lfirst(lc);
		QueueCounts *q = queue_counts_of(&counts, c->tag.queue);

		for (int i = 0; i < JS_NSTATES; i++)
			q->states[i] += c->states[i];
	}
	return counts;
}

/*
 * The jobs of a queue ($1) the caller may see ($2: all, else those of
 * roles $3 is a member of) that wait for their time, and the due time of
 * the oldest due one: through the scheduled index, and the ready index a
 * priority at a time (the first job of each in dequeue order is its
 * oldest), so that neither grows with finished jobs.
 */
#define VISIBLE(j) "($2 OR pg_catalog.pg_has_role($3, " j ".pushed_by, 'MEMBER'))"
#define WAITING(j) \
	j ".queue = $1 AND " j ".state IN ('pending', 'retrying') AND NOT " j ".replicated"
#define READY(j) WAITING(j) " AND " j ".claim IS NULL"
static const char *const waiting_sql =
"WITH RECURSIVE p(priority) AS ("
" (SELECT j.priority FROM %1$s.chancy_jobs j WHERE " READY("j")
"  ORDER BY j.priority DESC LIMIT 1)"
" UNION ALL SELECT (SELECT j.priority FROM %1$s.chancy_jobs j WHERE " READY("j")
"  AND j.priority < p.priority ORDER BY j.priority DESC LIMIT 1)"
" FROM p WHERE p.priority IS NOT NULL)"
"SELECT (SELECT count(*) FROM %1$s.chancy_jobs j WHERE " WAITING("j")
"  AND j.scheduled_at > j.created_at AND j.scheduled_at > now() AND " VISIBLE("j") "),"
" least((SELECT min(f.due) FROM p, LATERAL (SELECT j.scheduled_at AS due"
"   FROM %1$s.chancy_jobs j WHERE " READY("j") " AND j.priority = p.priority"
"   AND j.scheduled_at <= now() AND " VISIBLE("j")
"   ORDER BY j.priority DESC, j.id LIMIT 1) f WHERE p.priority IS NOT NULL),"
"  (SELECT j.scheduled_at FROM %1$s.chancy_jobs j WHERE " WAITING("j")
"   AND j.scheduled_at > j.created_at AND j.scheduled_at <= now() AND " VISIBLE("j")
"   AND coalesce(j.deps_left, 0) = 0"	/* not a step waiting for others */
"   ORDER BY j.scheduled_at LIMIT 1))";

/*
 * chancy_queue_counts() RETURNS SETOF record
 *		(queue, pending, running, retrying, succeeded, failed, cancelled,
 *		scheduled, oldest_due, from_gauges): what chancy_queue_stats shows.
 */
Datum
chancy_queue_counts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	bool		valid = stats_gauges_valid();
	bool		all = sees_all();
	char	   *query = psprintf(waiting_sql, cat->nspname);
	Oid			types[3] = {TEXTOID, BOOLOID, OIDOID};
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, queue_counts(cat))
	{
		QueueCounts *q = lfirst(lc);
		Datum		values[JS_NSTATES + 4];
		bool		nulls[JS_NSTATES + 4];
		bool		any = false;
		int			col = JS_NSTATES + 1;

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(q->queue);
		for (int i = 0; i < JS_NSTATES; i++)
		{
			values[i + 1] = Int64GetDatum(Max(q->states[i], 0));
			any |= q->states[i] != 0;
		}
		if (!any)
			continue;
		values[col] = Int64GetDatum(0);
		nulls[col + 1] = true;
		if (q->states[JS_PENDING] > 0 || q->states[JS_RETRYING] > 0)
		{
			CatalogSql	sql;
			Datum		args[3];

			args[0] = values[0];
			args[1] = BoolGetDatum(all);
			args[2] = ObjectIdGetDatum(GetUserId());
			catalog_sql_begin(cat, true, &sql);
			if (SPI_execute_with_args(query, 3, types, args, NULL, true, 1) != SPI_OK_SELECT ||
				SPI_processed != 1)
				elog(ERROR, "could not look at the waiting jobs of queue \"%s\"", q->queue);
			values[col] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										&nulls[col]);
			values[col + 1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
											&nulls[col + 1]);
			catalog_sql_end(&sql);
		}
		values[col + 2] = BoolGetDatum(valid);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * chancy_library_version() RETURNS text
 *		The version of the SQL objects this library was built for
 *		(chancy_health() compares it with the installed one).
 */
Datum
chancy_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CHANCY_SQL_VERSION));
}

/* ----------------------------------------------------------------------
 * Metrics: rows, and Prometheus' text format
 * ----------------------------------------------------------------------
 */

typedef struct Metric
{
	const char *name;			/* with its _bucket, _sum, _count suffix */
	const char *family;			/* the name its HELP and TYPE are under */
	const char *type;			/* counter, gauge, histogram */
	const char *help;
	List	   *labels;			/* label name, value, name, value... */
	double		value;
} Metric;

static void
add_metric(List **metrics, const char *name, const char *family, const char *type,
		   const char *help, List *labels, double value)
{
	Metric	   *m = palloc(sizeof(Metric));

	m->name = name;
	m->family = family;
	m->type = type;
	m->help = help;
	m->labels = labels;
	m->value = value;
	*metrics = lappend(*metrics, m);
}

/* A histogram's series, cumulative as Prometheus wants. */
static void
add_histogram(List **metrics, const char *family, const char *help, List *labels,
			  const int64 *buckets, int64 sum_us)
{
	int64		cumulative = 0;

	make_bounds();
	for (int i = 0; i < NBUCKETS; i++)
	{
		cumulative += buckets[i];
		if (i < NBOUNDS && !exported(i))
			continue;
		add_metric(metrics, psprintf("%s_bucket", family), family, "histogram", help,
				   lappend(lappend(list_copy(labels), "le"),
						   i < NBOUNDS ? psprintf("%g", bounds_us[i] / 1e6) : "+Inf"),
				   (double) cumulative);
	}
	add_metric(metrics, psprintf("%s_sum", family), family, "histogram", help, labels,
			   sum_us / 1e6);
	add_metric(metrics, psprintf("%s_count", family), family, "histogram", help, labels,
			   (double) cumulative);
}

/*
 * collect_metrics
 *		Every metric the caller may see: counters and histograms summed over
 *		the roles it sees (per database, queue and job), and this database's
 *		jobs per queue and state.
 */
static List *
collect_metrics(ChancyCatalog *cat)
{
	List	   *metrics = NIL;
	List	   *merged = NIL;
	ListCell   *lc;
	char	   *dbname = database_name(MyDatabaseId);

	/* one series per database, queue and job: roles summed */
	foreach(lc, visible_entries(InvalidOid))
	{
		EntryCopy  *c = lfirst(lc);
		EntryCopy  *into = NULL;
		ListCell   *lm;

		foreach(lm, merged)
		{
			EntryCopy  *m = lfirst(lm);

			if (m->tag.dboid == c->tag.dboid && strcmp(m->tag.queue, c->tag.queue) == 0 &&
				strcmp(m->tag.name, c->tag.name) == 0)
			{
				into = m;
				break;
			}
		}
		if (into == NULL)
		{
			merged = lappend(merged, c);
			continue;
		}
		for (int i = 0; i < STATS_NCOUNTERS; i++)
			into->counts[i] += c->counts[i];
		for (int i = 0; i < NBUCKETS; i++)
		{
			into->wait[i] += c->wait[i];
			into->run[i] += c->run[i];
		}
		into->wait_sum_us += c->wait_sum_us;
		into->run_sum_us += c->run_sum_us;
		into->cpu_us += c->cpu_us;
	}

	foreach(lc, merged)
	{
		EntryCopy  *c = lfirst(lc);
		List	   *labels = list_make4("database", database_name(c->tag.dboid),
										"queue", pstrdup(c->tag.queue));

		labels = lappend(lappend(labels, "job"), pstrdup(c->tag.name));
		add_metric(&metrics, "chancy_jobs_pushed_total", "chancy_jobs_pushed_total",
				   "counter", "Jobs pushed.", labels, (double) c->counts[STATS_PUSHED]);
		add_metric(&metrics, "chancy_jobs_started_total", "chancy_jobs_started_total",
				   "counter", "Job runs started.", labels,
				   (double) c->counts[STATS_STARTED]);
		for (int i = STATS_SUCCEEDED; i < STATS_NCOUNTERS; i++)
			add_metric(&metrics, "chancy_jobs_total", "chancy_jobs_total", "counter",
					   "Job runs by how they ended: succeeded, failed (for good), retried, cancelled, crashed (their executor died).",
					   lappend(lappend(list_copy(labels), "outcome"),
							   (char *) counter_names[i]),
					   (double) c->counts[i]);
		add_metric(&metrics, "chancy_job_cpu_seconds_total", "chancy_job_cpu_seconds_total",
				   "counter", "CPU time (user and system) of job runs.", labels,
				   c->cpu_us / 1e6);
		add_histogram(&metrics, "chancy_job_wait_seconds",
					  "Time from when a job was due to when its run started.",
					  labels, c->wait, c->wait_sum_us);
		add_histogram(&metrics, "chancy_job_run_seconds",
					  "Time a job run spent in its function.",
					  labels, c->run, c->run_sum_us);
	}

	foreach(lc, queue_counts(cat))
	{
		QueueCounts *q = lfirst(lc);

		for (int i = 0; i < JS_NSTATES; i++)
			add_metric(&metrics, "chancy_queue_jobs", "chancy_queue_jobs", "gauge",
					   "Jobs in the table by queue and state.",
					   lappend(lappend(list_make4("database", dbname,
												  "queue", pstrdup(q->queue)),
									   "state"), (char *) state_names[i]),
					   (double) Max(q->states[i], 0));
	}
	return metrics;
}

/*
 * chancy_metrics() RETURNS TABLE (name text, type text, labels jsonb,
 * value float8)
 *		The metrics as rows.
 */
Datum
chancy_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, collect_metrics(cat))
	{
		Metric	   *m = lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		StringInfoData labels;

		initStringInfo(&labels);
		appendStringInfoChar(&labels, '{');
		for (int i = 0; i < list_length(m->labels); i += 2)
		{
			if (i > 0)
				appendStringInfoString(&labels, ", ");
			escape_json(&labels, list_nth(m->labels, i));
			appendStringInfoString(&labels, ": ");
			escape_json(&labels, list_nth(m->labels, i + 1));
		}
		appendStringInfoChar(&labels, '}');
		values[0] = CStringGetTextDatum(m->name);
		values[1] = CStringGetTextDatum(m->type);
		values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(labels.data));
		values[3] = Float8GetDatum(m->value);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* A label value as Prometheus' text format escapes it. */
static void
append_label_value(StringInfo out, const char *value)
{
	appendStringInfoChar(out, '"');
	for (const char *p = value; *p; p++)
	{
		if (*p == '\\' || *p == '"')
		{
			appendStringInfoChar(out, '\\');
			appendStringInfoChar(out, *p);
		}
		else if (*p == '\n')
			appendStringInfoString(out, "\\n");
		else
			appendStringInfoChar(out, *p);
	}
	appendStringInfoChar(out, '"');
}

/*
 * chancy_metrics_prometheus() RETURNS text
 *		The metrics in Prometheus' text exposition format (version 0.0.4):
 *		one HELP and TYPE per family, its series together.
 */
Datum
chancy_metrics_prometheus(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	List	   *metrics = collect_metrics(cat);
	List	   *families = NIL;
	StringInfoData out;
	ListCell   *lf;

	foreach(lf, metrics)
	{
		Metric	   *m = lfirst(lf);
		ListCell   *lc;
		bool		seen = false;

		foreach(lc, families)
			if (strcmp((char *) lfirst(lc), m->family) == 0)
				seen = true;
		if (!seen)
			families = lappend(families, (char *) m->family);
	}

	initStringInfo(&out);
	foreach(lf, families)
	{
		const char *family = lfirst(lf);
		bool		header = false;
		ListCell   *lc;

		foreach(lc, metrics)
		{
			Metric	   *m = lfirst(lc);

			if (strcmp(m->family, family) != 0)
				continue;
			if (!header)
			{
				appendStringInfo(&out, "# HELP %s %s\n# TYPE %s %s\n",
								 family, m->help, family, m->type);
				header = true;
			}
			appendStringInfoString(&out, m->name);
			if (m->labels != NIL)
			{
				appendStringInfoChar(&out, '{');
				for (int i = 0; i < list_length(m->labels); i += 2)
				{
					appendStringInfo(&out, "%s%s=", i > 0 ? "," : "",
									 (char *) list_nth(m->labels, i));
					append_label_value(&out, list_nth(m->labels, i + 1));
				}
				appendStringInfoChar(&out, '}');
			}
			appendStringInfo(&out, " %.17g\n", m->value);
		}
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/* ----------------------------------------------------------------------
 * History: one row per minute per role, queue and job name
 * ----------------------------------------------------------------------
 */

/* the last minute's copy of an entry, by tag (the supervisor's) */
static HTAB *last_minute = NULL;
static TimestampTz history_minute = 0;	/* the minute the copies are of */

/*
 * The day partitions of chancy_stats_history (chancy--1.1.sql): the seven
 * days the longest retention keeps, today, and tomorrow's, emptied ahead.
 */
#define HISTORY_DAYS 9

/*
 * history_rows
 *		The rows of the minute that ended: for each entry of this database
 *		whose counters moved since the last copy, the difference.  The
 *		copies are replaced.  An entry that was reset starts over.
 */
static List *
history_rows(void)
{
	List	   *rows = NIL;
	ListCell   *lc;

	foreach(lc, copy_entries(MyDatabaseId))
	{
		EntryCopy  *c = lfirst(lc);
		bool		found;
		EntryCopy  *last = hash_search(last_minute, &c->tag, HASH_ENTER, &found);
		EntryCopy  *d;
		bool		moved = false;

		if (!found || last->since != c->since)
		{
			/* new, or reset: counted from zero */
			memset(last, 0, sizeof(EntryCopy));
			last->tag = c->tag;
		}
		d = palloc(sizeof(EntryCopy));
		*d = *c;
		for (int i = 0; i < STATS_NCOUNTERS; i++)
		{
			d->counts[i] = Max(c->counts[i] - last->counts[i], 0);
			moved |= d->counts[i] != 0;
		}
		for (int i = 0; i < NBUCKETS; i++)
		{
			d->wait[i] = Max(c->wait[i] - last->wait[i], 0);
			d->run[i] = Max(c->run[i] - last->run[i], 0);
		}
		d->cpu_us = Max(c->cpu_us - last->cpu_us, 0);
		*last = *c;
		/* the first turn after a start only takes the copies */
		if (history_minute != 0 && moved)
			rows = lappend(rows, d);
	}
	return rows;
}

/* The partition of chancy_stats_history that holds day (days since 2000). */
static int
day_partition(int64 day)
{
	return (int) (((day % HISTORY_DAYS) + HISTORY_DAYS) % HISTORY_DAYS);
}

/*
 * empty_old_partitions
 *		Once a day: each day partition holds the latest day of its number
 *		(a partition is used again HISTORY_DAYS days later).  One whose day
 *		is wholly past chancy.stats_retention is emptied by TRUNCATE (no dead
 *		rows), tomorrow's among them; rows of an earlier cycle that a
 *		stopped supervisor left in a partition in use are deleted.  The
 *		TRUNCATE's lock is taken only if free (a reader of the history may
 *		hold it): false if one was not, to try again.
 */
static bool
empty_old_partitions(ChancyCatalog *cat, TimestampTz now)
{
	int64		today = now / USECS_PER_DAY;
	int64		oldest_kept = (now - (int64) chancy_stats_retention * USECS_PER_MINUTE) /
		USECS_PER_DAY;
	bool		done = true;

	for (int64 day = today - HISTORY_DAYS + 1; day <= today; day++)
	{
		char	   *name = psprintf("chancy_stats_history_%d", day_partition(day));
		char	   *part = psprintf("%s.%s", cat->nspname, name);
		Datum		arg = TimestampTzGetDatum(day * USECS_PER_DAY);
		Oid			type = TIMESTAMPTZOID;

		if (day < oldest_kept)
		{
			if (SPI_execute(psprintf("SELECT FROM %s LIMIT 1", part), true, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not read %s", part);
			if (SPI_processed == 0)
				continue;
			if (!ConditionalLockRelationOid(get_relname_relid(name, cat->nsp),
											AccessExclusiveLock))
			{
				done = false;
				continue;
			}
			if (SPI_execute(psprintf("TRUNCATE %s", part), false, 0) != SPI_OK_UTILITY)
				elog(ERROR, "could not empty %s", part);
		}
		else if (SPI_execute_with_args(psprintf("DELETE FROM %s WHERE minute < $1", part),
									   1, &type, &arg, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not prune %s", part);
	}
	return done;
}

/*
 * stats_history_if_due
 *		The supervisor, every turn: when a minute has passed, write the rows
 *		of the minute that ended into chancy_stats_history, and once a day
 *		empty what is past chancy.stats_retention.  Returns how long until
 *		the next minute, in ms.  The first minute after a start only takes
 *		copies (what came before is not known).
 */
long
stats_history_if_due(ChancyCatalog *cat)
{
	static int64 maintained_day = -1;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz minute = now - now % USECS_PER_MINUTE;
	long		next_ms = (long) ((minute + USECS_PER_MINUTE - now) / 1000) + 1;
	TimestampTz of;
	List	   *rows;
	ListCell   *lc;
	CatalogSql	sql;
	char	   *insert;
	Oid			types[19] = {TIMESTAMPTZOID, INT2OID, OIDOID, TEXTOID, TEXTOID,
		INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID};

	if (last_minute == NULL)
		last_minute = tag_hash_create("chancy stats history", sizeof(EntryCopy));
	if (minute == history_minute)
		return next_ms;

	/* the rows are of the minute that ended (the last one seen) */
	of = history_minute != 0 ? history_minute : minute - USECS_PER_MINUTE;
	rows = history_rows();
	insert = psprintf("INSERT INTO %s.chancy_stats_history (minute, day, role, queue, job,"
					  " pushed, started, succeeded, failed, retried, cancelled, crashed,"
					  " wait_p50_ms, wait_p95_ms, wait_p99_ms, run_p50_ms, run_p95_ms,"
					  " run_p99_ms, cpu_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
					  " $11, $12, $13, $14, $15, $16, $17, $18, $19)", cat->nspname);
	catalog_sql_begin(cat, true, &sql);
	if (minute / USECS_PER_DAY != maintained_day && empty_old_partitions(cat, now))
		maintained_day = minute / USECS_PER_DAY;
	foreach(lc, rows)
	{
		EntryCopy  *d = lfirst(lc);
		Datum		args[19];
		char		nulls[19];
		bool		isnull;
		static const double q[3] = {0.50, 0.95, 0.99};

		memset(nulls, ' ', sizeof(nulls));
		args[0] = TimestampTzGetDatum(of);
		args[1] = Int16GetDatum((int16) day_partition(of / USECS_PER_DAY));
		args[2] = ObjectIdGetDatum(d->tag.role);
		args[3] = CStringGetTextDatum(d->tag.queue);
		args[4] = CStringGetTextDatum(d->tag.name);
		for (int i = 0; i < STATS_NCOUNTERS; i++)
			args[5 + i] = Int64GetDatum(d->counts[i]);
		for (int i = 0; i < 3; i++)
		{
			args[12 + i] = percentile_ms(d->wait, q[i], &isnull);
			nulls[12 + i] = isnull ? 'n' : ' ';
			args[15 + i] = percentile_ms(d->run, q[i], &isnull);
			nulls[15 + i] = isnull ? 'n' : ' ';
		}
		args[18] = Float8GetDatum(d->cpu_us / 1000.0);
		if (SPI_execute_with_args(insert, 19, types, args, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not write chancy_stats_history");
	}
	catalog_sql_end(&sql);
	history_minute = minute;
	return next_ms;
}
