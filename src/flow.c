/*-------------------------------------------------------------------------
 *
 * flow.c
 *	  Flow control: limits on named keys that jobs hold (chancy_limits), as
 *	  exact counters in shared memory.
 *
 * A job with limit_keys starts only when every one of its keys has a free
 * concurrency slot and a token (all or nothing).  The executor that claims
 * it takes both, under one lock, in the claim's transaction (flow_take);
 * it gives the slots back once the job's outcome has committed, or the job
 * went back, or the executor left, however it left (flow_give).  Rates
 * follow GCRA: a key remembers the theoretical arrival time of its next
 * start (tat), and a start is allowed while tat is at most (burst - 1)
 * intervals ahead of now; no process refills anything.
 *
 * A claimed job whose key is saturated is parked: claim 0 and parked_on
 * set, which puts it outside the ready index, so that the jobs behind it
 * are claimed as if it were not there (the claim's plan does not change).
 * The database's supervisor releases parked jobs, oldest in dequeue order
 * first, when a slot of their key frees (the executor that frees it sets
 * the supervisor's latch) or its next token is due (the supervisor's sleep
 * ends then).  While a key has parked jobs, a newer job of that key parks
 * behind them even if a slot is free: the released ones go first.
 *
 * Shared memory holds at most chancy.max_limit_keys keys; a key that is idle
 * (nothing running or parked, its bucket full) is evicted when room is
 * needed, and read again from chancy_limits when a job holds it again.  A
 * change to chancy_limits, once committed, makes every key read its
 * settings again (the generation).  After a crash the server's shared
 * memory is made anew: no job runs then, so every count starts at zero,
 * and the supervisor finds the parked jobs in the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "chancy_internal.h"

PG_FUNCTION_INFO_V1(chancy_limits_changed);
PG_FUNCTION_INFO_V1(chancy_limit_state);
PG_FUNCTION_INFO_V1(chancy_limit_acquire);

/* at most this many parked jobs of a key are released at once */
#define UNPARK_MAX 1000
/* the key of a queue's own limits is this and its name */
#define QUEUE_KEY_PREFIX "queue:"
/* suspended_until of a key that is not suspended (any time is a real one) */
#define NOT_SUSPENDED DT_NOBEGIN

/* A key of a database: what the hash table is keyed by. */
typedef struct FlowTag
{
	Oid			dboid;
	char		key[NAMEDATALEN];
} FlowTag;

/* A key in shared memory: its settings (as last read) and its counters. */
typedef struct FlowKey
{
	FlowTag		tag;			/* hash key: first */
	uint32		generation;		/* of the settings; see FlowShared */
	bool		limited;		/* a row of chancy_limits applies */
	int32		concurrency;	/* -1: no such limit */
	int32		rate;			/* rate starts per per_ms; 0: no rate */
	int64		per_ms;
	int64		interval_us;	/* so one token per interval */
	int32		burst;
	TimestampTz suspended_until;	/* NOT_SUSPENDED: none */
	int32		running;		/* jobs holding a slot of it */
	TimestampTz tat;			/* GCRA: theoretical arrival time */
	uint64		stamp;			/* of the claim using it: not evicted then */
	int32		released;		/* parked jobs released, not yet claimed */
	TimestampTz released_at;	/* when (an estimate: forgotten after 1 s) */
	bool		parked;			/* jobs may be parked on it */
	int32		park_priority;	/* the first of them, in dequeue order */
	int64		park_id;
	uint64		parks;			/* parkings committed: see flow_unparked */
	uint64		throttled;		/* jobs parked on it since it was loaded */
} FlowKey;

typedef struct FlowShared
{
	LWLock	   *lock;			/* the hash table and every key in it */
	pg_atomic_uint32 generation;	/* changes of chancy_limits committed */
	uint64		stamp;			/* claims that entered keys, counted */
	TimestampTz warned_at;		/* last warning that room ran short */
	uint64		lost_parked;	/* keys with parked jobs evicted, counted */
} FlowShared;

static FlowShared *flow_shared = NULL;
static HTAB *flow_keys = NULL;
/* this process evicted a key with parked jobs: wake the supervisors */
static bool evicted_parked = false;

/* A key's settings, as read from chancy_limits. */
typedef struct Settings
{
	char	   *key;
	bool		limited;
	int32		concurrency;
	int32		rate;
	int64		per_ms;
	int64		interval_us;
	int32		burst;
	TimestampTz suspended_until;
} Settings;

/* A key the supervisor releases parked jobs of (see flow_unpark). */
typedef struct Release
{
	char		key[NAMEDATALEN];
	int			want;			/* how many may go */
	uint64		parks;			/* its parkings when it looked */
	bool		rest;			/* parked jobs are left */
} Release;

/* Size of the keys' shared memory. */
Size
flow_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(FlowShared)),
					hash_estimate_size(chancy_max_limit_keys, sizeof(FlowKey)));
}

/*
 * flow_shmem_init
 *		Create (or attach to) the keys' shared memory; lock guards it.  Called
 *		by slots.c, which owns chancy's shared memory, under
 *		AddinShmemInitLock.
 */
void
flow_shmem_init(LWLock *lock)
{
	HASHCTL		info;
	bool		found;

	flow_shared = ShmemInitStruct("chancy flow", sizeof(FlowShared), &found);
	if (!found)
	{
		flow_shared->lock = lock;
		pg_atomic_init_u32(&flow_shared->generation, 1);
		flow_shared->stamp = 0;
		flow_shared->warned_at = 0;
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(FlowTag);
	info.entrysize = sizeof(FlowKey);
	flow_keys = ShmemInitHash("chancy limit keys", chancy_max_limit_keys,
							  chancy_max_limit_keys, &info,
							  HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
}

/* The tag of key in this database. */
static void
make_tag(FlowTag *tag, const char *key)
{
	memset(tag, 0, sizeof(FlowTag));
	tag->dboid = MyDatabaseId;
	strlcpy(tag->key, key, NAMEDATALEN);
}

/*
 * evict
 *		With the lock held exclusively, the table full: make room.  First
 *		the keys nothing holds whose bucket is full (a fresh key is the
 *		same); failing that, of the keys nothing holds, those whose bucket
 *		fills soonest, an eighth of the way from the soonest to the latest
 *		(they forget tokens they owe: a rate may let a few more starts
 *		through, said in the log).  Never a key a job holds (running), nor
 *		one the claim at work uses (stamp).  A key with parked jobs that is
 *		evicted is marked again by the supervisors, woken for it.
 */
static void
evict(TimestampTz now, uint64 stamp, const char *why)
{
	HASH_SEQ_STATUS seq;
	FlowKey    *k;
	int			removed = 0;
	TimestampTz soonest = 0;
	TimestampTz latest = 0;
	bool		any = false;

	hash_seq_init(&seq, flow_keys);
	while ((k = hash_seq_search(&seq)) != NULL)
	{
		if (k->running > 0 || k->stamp == stamp)
			continue;
		if (k->tat <= now && !k->parked)
		{
			(void) hash_search(flow_keys, &k->tag, HASH_REMOVE, NULL);
			removed++;
			continue;
		}
		if (!any || k->tat < soonest)
			soonest = k->tat;
		if (!any || k->tat > latest)
			latest = k->tat;
		any = true;
	}
	if (removed > 0 || !any)
		return;
	hash_seq_init(&seq, flow_keys);
	while ((k = hash_seq_search(&seq)) != NULL)
		if (k->running == 0 && k->stamp != stamp &&
			k->tat <= soonest + (latest - soonest) / 8)
		{
			/* its supervisor finds its parked jobs again at once */
			if (k->parked)
			{
				flow_shared->lost_parked++;
				evicted_parked = true;
			}
			(void) hash_search(flow_keys, &k->tag, HASH_REMOVE, NULL);
		}
	if (TimestampDifferenceExceeds(flow_shared->warned_at, now, 60 * 1000))
	{
		flow_shared->warned_at = now;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("limit keys were evicted from shared memory before their bucket refilled"),
				 errdetail("All %d keys of chancy.max_limit_keys were in use when key \"%s\" needed room: the rates of those evicted may let a few more starts through.",
						   chancy_max_limit_keys, why),
				 errhint("Raise chancy.max_limit_keys and restart the server.")));
	}
}

/*
 * enter_key
 *		The key in shared memory, entered with settings s if it is not there
 *		(evicting others if the table is full), with the claim's stamp; NULL
 *		if there is no room (every key is held by a running job).  Called
 *		with the lock held exclusively.
 */
static FlowKey *
enter_key(const Settings *s, uint32 generation, TimestampTz now, uint64 stamp)
{
	FlowTag		tag;
	FlowKey    *k;
	bool		found;

	make_tag(&tag, s->key);
	k = hash_search(flow_keys, &tag, HASH_ENTER_NULL, &found);
	if (k == NULL)
	{
		evict(now, stamp, s->key);
		k = hash_search(flow_keys, &tag, HASH_ENTER_NULL, &found);
		if (k == NULL)
			return NULL;
	}
	if (!found)
	{
		memset(((char *) k) + sizeof(FlowTag), 0, sizeof(FlowKey) - sizeof(FlowTag));
		k->concurrency = -1;
	}
	k->stamp = stamp;
	k->generation = generation;
	k->limited = s->limited;
	k->concurrency = s->concurrency;
	k->rate = s->rate;
	k->per_ms = s->per_ms;
	k->interval_us = s->interval_us;
	k->burst = s->burst;
	k->suspended_until = s->suspended_until;
	return k;
}

/* The key in shared memory, or NULL; with the lock held. */
static FlowKey *
find_key(const char *key)
{
	FlowTag		tag;

	make_tag(&tag, key);
	return hash_search(flow_keys, &tag, HASH_FIND, NULL);
}

/*
 * read_settings
 *		The settings of keys from chancy_limits: each its own row's limits,
 *		else those of the longest pattern that begins it and sets a limit,
 *		else none; a row that sets no limit (chancy_suspend_key made it)
 *		only suspends, and the latest suspension of the key and of every
 *		pattern that begins it applies.  Read with a fresh snapshot: the caller reads the
 *		generation first.  Allocated in the current memory context.
 */
static Settings *
read_settings(ChancyCatalog *cat, char **keys, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	Settings   *s = palloc0(sizeof(Settings) * n);
	Oid			argtype = TEXTARRAYOID;
	Datum		arg;
	CatalogSql	sql;

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(keys[i]);
	arg = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	catalog_sql_begin(cat, true, &sql);
	/* what committed before the caller read the generation, at least */
	PushActiveSnapshot(GetLatestSnapshot());
	if (SPI_execute_with_args(psprintf("WITH s AS (SELECT k.n, o.key IS NOT NULL OR (p.c).key IS NOT NULL"
									   "  OR u.until IS NOT NULL AS limited,"
									   "  CASE WHEN o.concurrency IS NOT NULL"
									   "  OR o.rate IS NOT NULL THEN o ELSE p.c END AS l,"
									   "  greatest(o.suspended_until, u.until) AS until"
									   " FROM unnest($1) WITH ORDINALITY AS k(key, n)"
									   " LEFT JOIN %1$s.chancy_limits o ON o.key = k.key"
									   " LEFT JOIN LATERAL (SELECT c FROM %1$s.chancy_limits c"
									   "  WHERE c.key = ANY (ARRAY(SELECT left(k.key, i) || '*'"
									   "   FROM generate_series(0, length(k.key)) i))"
									   "  AND (c.concurrency IS NOT NULL OR c.rate IS NOT NULL)"
									   "  ORDER BY length(c.key) DESC LIMIT 1) p ON true"
									   " LEFT JOIN LATERAL (SELECT max(c.suspended_until) AS until"
									   "  FROM %1$s.chancy_limits c"
									   "  WHERE c.key = ANY (ARRAY(SELECT left(k.key, i) || '*'"
									   "   FROM generate_series(0, length(k.key)) i))) u ON true)"
									   " SELECT limited, (l).concurrency, (l).rate,"
									   "  %1$s.chancy_interval_ms((l).per), (l).burst, until"
									   " FROM s ORDER BY n",
									   cat->nspname),
							  1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT ||
		SPI_processed != (uint64) n)
		elog(ERROR, "could not read chancy_limits");
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		s[i].key = MemoryContextStrdup(sql.caller, keys[i]);
		s[i].limited = DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		s[i].concurrency = isnull ? -1 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		if (!isnull)
		{
			int32		rate = DatumGetInt32(d);
			int64		per_ms = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));

			s[i].rate = rate;
			s[i].per_ms = per_ms;
			/* rounded up: never faster than the limit */
			s[i].interval_us = Max((per_ms * 1000 + rate - 1) / rate, 1);
			s[i].burst = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		}
		d = SPI_getbinval(tup, desc, 6, &isnull);
		s[i].suspended_until = isnull ? NOT_SUSPENDED : DatumGetTimestampTz(d);
	}
	PopActiveSnapshot();
	catalog_sql_end(&sql);
	return s;
}

/*
 * job_keys
 *		The keys a job holds, as C strings: its limit_keys, and its queue's
 *		key (qkey) if that has limits (NULL if not).  *n is how many.
 */
static char **
job_keys(ClaimedJob *job, const char *qkey, int *n)
{
	Datum	   *elems = NULL;
	char	  **keys;

	bool	   *nulls = NULL;
	int			nelems = 0;

	if (job->limit_keys != (Datum) 0)
		deconstruct_array(DatumGetArrayTypeP(job->limit_keys), TEXTOID, -1, false,
						  TYPALIGN_INT, &elems, &nulls, &nelems);
	keys = palloc(sizeof(char *) * (CHANCY_MAX_LIMIT_KEYS + 1));
	*n = 0;
	/* as pushed, checked; a row written otherwise cannot break the claim */
	for (int i = 0; i < nelems && *n < CHANCY_MAX_LIMIT_KEYS; i++)
		if (!nulls[i])
		{
			keys[*n] = TextDatumGetCString(elems[i]);
			keys[*n][strnlen(keys[*n], NAMEDATALEN - 1)] = '\0';
			(*n)++;
		}
	for (int i = 0; i < *n && qkey != NULL; i++)
		if (strcmp(keys[i], qkey) == 0)
			qkey = NULL;		/* it holds its queue's key anyway */
	if (qkey != NULL)
		keys[(*n)++] = (char *) qkey;
	return keys;
}

/*
 * queue_key
 *		The key of queue's own limits ("queue:<name>", see
 *		chancy_declare_queue), if it has any; else NULL.  Whether it has is
 *		read again only when chancy_limits changed, so that the claims of a
 *		queue without limits cost nothing more than a look at a counter.
 */
static const char *
queue_key(ChancyCatalog *cat, const char *queue, uint32 generation)
{
	static uint32 known_generation = 0;
	static char known_queue[NAMEDATALEN];
	static char key[NAMEDATALEN];
	static bool limited = false;

	if (known_generation != generation || strcmp(known_queue, queue) != 0)
	{
		char	   *k;
		Settings   *s;

		if (strlen(queue) + strlen(QUEUE_KEY_PREFIX) >= NAMEDATALEN)
			limited = false;	/* too long a name to have one (see the SQL) */
		else
		{
			k = psprintf(QUEUE_KEY_PREFIX "%s", queue);
			s = read_settings(cat, &k, 1);
			limited = s->limited;
			strlcpy(key, k, NAMEDATALEN);
			if (limited)
			{
				LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
				(void) enter_key(s, generation, GetCurrentTimestamp(), ++flow_shared->stamp);
				LWLockRelease(flow_shared->lock);
			}
		}
		strlcpy(known_queue, queue, NAMEDATALEN);
		known_generation = generation;
	}
	return limited ? key : NULL;
}

/*
 * ahead_allowed
 *		How far ahead of now a key's GCRA time may be for cost more tokens
 *		to be taken: (burst - cost) intervals, saturated rather than
 *		overflowing (a burst of a million over a year's interval).
 */
static int64
ahead_allowed(FlowKey *k, int32 cost)
{
	int64		allowed;

	if (pg_mul_s64_overflow((int64) (k->burst - cost), k->interval_us, &allowed))
		return PG_INT64_MAX / 2;
	return allowed;
}

/* Take cost tokens of k's rate now: its GCRA time moves on (saturated). */
static void
take_tokens(FlowKey *k, int32 cost, TimestampTz now)
{
	int64		step;
	int64		tat;

	if (pg_mul_s64_overflow((int64) cost, k->interval_us, &step) ||
		pg_add_s64_overflow(Max(k->tat, now), step, &tat))
		tat = PG_INT64_MAX / 2;
	k->tat = tat;
}

/*
 * tokens_now
 *		How many tokens k's rate gives now (its burst when the bucket is
 *		full); with none, *due is when the next one does.
 */
static int64
tokens_now(FlowKey *k, TimestampTz now, TimestampTz *due)
{
	int64		ahead = k->tat - now;
	int64		room = ahead_allowed(k, 1) - ahead;

	if (ahead <= 0)
		return k->burst;
	if (room >= 0)
		return room / k->interval_us + 1;
	*due = k->tat - ahead_allowed(k, 1);
	return 0;
}

/* Whether job comes after the first job parked on k, in dequeue order. */
static bool
behind_parked(FlowKey *k, ClaimedJob *job)
{
	if (!k->parked)
		return false;
	if (job->priority != k->park_priority)
		return job->priority < k->park_priority;
	return job->id > k->park_id;
}

/*
 * refuses
 *		Whether k keeps job from starting now: suspended, behind parked jobs,
 *		no free slot, or no token.
 */
static bool
refuses(FlowKey *k, ClaimedJob *job, TimestampTz now)
{
	if (k == NULL)
		return true;			/* no room to count it */
	if (!k->limited)
		return false;
	if (k->suspended_until > now || behind_parked(k, job))
		return true;
	if (k->concurrency >= 0 && k->running >= k->concurrency)
		return true;
	return k->interval_us > 0 && k->tat - now > ahead_allowed(k, 1);
}

/* An entry of an executor's cache of keys without limits */
typedef struct Unlimited
{
	char		key[NAMEDATALEN];
	uint32		generation;
} Unlimited;

static HTAB *unlimited = NULL;
#define UNLIMITED_MAX 10000

/*
 * known_unlimited
 *		Whether this process read, at the current generation, that key has
 *		no limit.  Such keys are not kept in shared memory (nothing to count;
 *		a role pushing jobs with many distinct keys fills no room there).
 */
static bool
known_unlimited(const char *key, uint32 generation)
{
	char		k[NAMEDATALEN];
	Unlimited  *u;

	if (unlimited == NULL)
		return false;
	memset(k, 0, sizeof(k));
	strlcpy(k, key, NAMEDATALEN);
	u = hash_search(unlimited, k, HASH_FIND, NULL);
	return u != NULL && u->generation == generation;
}

/* Remember that key has no limit at this generation (flow_take keeps the
 * cache under UNLIMITED_MAX). */
static void
remember_unlimited(const char *key, uint32 generation)
{
	char		k[NAMEDATALEN];
	Unlimited  *u;

	if (unlimited == NULL)
	{
		HASHCTL		info;

		memset(&info, 0, sizeof(info));
		info.keysize = NAMEDATALEN;
		info.entrysize = sizeof(Unlimited);
		unlimited = hash_create("chancy unlimited keys", 1024, &info,
								HASH_ELEM | HASH_BLOBS);
	}
	memset(k, 0, sizeof(k));
	strlcpy(k, key, NAMEDATALEN);
	u = hash_search(unlimited, k, HASH_ENTER, NULL);
	u->generation = generation;
}

/*
 * flow_take
 *		In the claim's transaction: each claimed job (in dequeue order) that
 *		holds limit keys takes a slot and a token of every key, or none.
 *		Those that cannot are listed in *parked (their ids) and *park_keys
 *		(the key that refused each), and removed from jobs.  Returns how many
 *		jobs are left.  Inside a catalog_sql bracket (settings are read from
 *		chancy_limits when a key is new or they changed).
 */
int
flow_take(ChancyCatalog *cat, const char *queue, ClaimedJob **jobs, int n, List **parked,
		  List **park_keys)
{
	char	  **stale = NULL;
	int			nstale = 0;
	int			kept = 0;
	uint32		generation = pg_atomic_read_u32(&flow_shared->generation);
	const char *qkey = queue_key(cat, queue, generation);
	char	 ***keysof;
	int		   *nkeysof;
	Settings   *settings = NULL;
	TimestampTz now;
	uint64		stamp;

	*parked = *park_keys = NIL;
	for (int i = 0; i < n && qkey == NULL; i++)
		if (jobs[i]->limit_keys != (Datum) 0)
			break;
		else if (i == n - 1)
			return n;			/* no job holds a key: nothing to do */

	/* each job's keys, as C strings */
	keysof = palloc(sizeof(char **) * n);
	nkeysof = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
		keysof[i] = job_keys(jobs[i], qkey, &nkeysof[i]);

	/* the keys whose settings must be read (new, or changed since) */
	LWLockAcquire(flow_shared->lock, LW_SHARED);
	for (int i = 0; i < n; i++)
	{
		int			nkeys = nkeysof[i];
		char	  **keys = keysof[i];

		for (int j = 0; j < nkeys; j++)
		{
			FlowKey    *k;
			bool		listed = false;

			if (known_unlimited(keys[j], generation))
				continue;
			k = find_key(keys[j]);
			if (k != NULL && k->generation == generation)
				continue;
			for (int s = 0; s < nstale && !listed; s++)
				listed = strcmp(stale[s], keys[j]) == 0;
			if (listed)
				continue;
			if (stale == NULL)
				stale = palloc(sizeof(char *) * n * (CHANCY_MAX_LIMIT_KEYS + 1));
			stale[nstale++] = keys[j];
		}
	}
	LWLockRelease(flow_shared->lock);
	if (nstale > 0)
		settings = read_settings(cat, stale, nstale);

	/* a cache that would fill up in this claim starts over first, so
	 * that it keeps what this claim learns */
	if (unlimited != NULL && hash_get_num_entries(unlimited) + nstale > UNLIMITED_MAX)
	{
		hash_destroy(unlimited);
		unlimited = NULL;
	}

	/*
	 * Under the lock: the keys that have no limit are remembered here (they
	 * take no room in shared memory); then every limited key of the claim
	 * is stamped, so that no room made for another evicts it, and entered
	 * if it is not there (one evicted since it was looked at is refused as
	 * if there were no room: the job parks, and the supervisor sees to it);
	 * then each job takes its slots, or is parked.
	 */
	LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
	now = GetCurrentTimestamp();
	stamp = ++flow_shared->stamp;
	for (int s = 0; s < nstale; s++)
	{
		if (!settings[s].limited)
		{
			FlowKey    *k = find_key(settings[s].key);

			remember_unlimited(settings[s].key, generation);
			if (k != NULL)		/* its running jobs still give slots back */
				(void) enter_key(&settings[s], generation, now, stamp);
		}
	}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < nkeysof[i]; j++)
		{
			FlowKey    *k = find_key(keysof[i][j]);

			if (k != NULL)
				k->stamp = stamp;
		}
	for (int s = 0; s < nstale; s++)
		if (settings[s].limited)
			(void) enter_key(&settings[s], generation, now, stamp);

	for (int i = 0; i < n; i++)
	{
		ClaimedJob *job = jobs[i];
		int			nkeys = nkeysof[i];
		char	  **keys = keysof[i];
		FlowKey    *k[CHANCY_MAX_LIMIT_KEYS + 1];
		int			refused = -1;

		for (int j = 0; j < nkeys; j++)
		{
			if (known_unlimited(keys[j], generation))
			{
				k[j] = NULL;	/* nothing to count */
				continue;
			}
			k[j] = find_key(keys[j]);
			if (refused < 0 && (k[j] == NULL || refuses(k[j], job, now)))
				refused = j;	/* (NULL: no room to count it) */
		}
		if (refused >= 0)
		{
			FlowKey    *r = k[refused];

			/* if it was a released job, it came, and goes again */
			for (int j = 0; j < nkeys; j++)
				if (k[j] != NULL && k[j]->released > 0)
					k[j]->released--;
			if (r != NULL)
			{
				r->throttled++;
				if (!r->parked || !behind_parked(r, job))
				{
					r->parked = true;
					r->park_priority = job->priority;
					r->park_id = job->id;
				}
			}
			*parked = lappend(*parked, job);
			*park_keys = lappend(*park_keys, keys[refused]);
			continue;
		}
		for (int j = 0; j < nkeys; j++)
		{
			if (k[j] == NULL || !k[j]->limited)
				continue;		/* not counted: nothing to give back */
			k[j]->running++;
			if (k[j]->released > 0)
				k[j]->released--;
			if (k[j]->interval_us > 0)
				take_tokens(k[j], 1, now);
			job->flow_keys = lappend(job->flow_keys, keys[j]);
		}
		jobs[kept++] = job;
	}
	LWLockRelease(flow_shared->lock);
	if (evicted_parked)
	{
		evicted_parked = false;
		slots_wake_all_supervisors();
	}
	return kept;
}

/*
 * flow_give
 *		Jobs from..to-1 of a batch (up to a NULL) no longer run: the slots
 *		they hold go back, and the tokens of those that never started.  If a key they held has parked jobs, the
 *		supervisor is woken to release them.  Never fails (it runs on the
 *		way out too).
 */
void
flow_give(ClaimedJob **jobs, int from, int to)
{
	bool		wake = false;
	bool		any = false;

	for (int i = from; i < to && jobs[i] != NULL && !any; i++)
		any = jobs[i]->flow_keys != NIL;
	if (!any)
		return;
	LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
	for (int i = from; i < to && jobs[i] != NULL; i++)
	{
		ListCell   *lc;

		foreach(lc, jobs[i]->flow_keys)
		{
			FlowKey    *k = find_key(lfirst(lc));

			if (k == NULL || k->running == 0)
				continue;		/* cannot be: a key that runs is kept */
			k->running--;
			/* a job that goes back without having started gives its token
			 * back too (tokens are alike: the bucket is as if it had not
			 * taken one), or its next claim would wait for the next */
			if (!jobs[i]->ran && k->interval_us > 0)
				k->tat = Max(k->tat - k->interval_us, 0);
			wake |= k->parked;
		}
		jobs[i]->flow_keys = NIL;
	}
	LWLockRelease(flow_shared->lock);
	if (wake)
		slots_wake_supervisor();
}

/*
 * mark_parked
 *		With the lock held: jobs are parked on key.  A key not in shared
 *		memory (evicted, or never there) is entered unread: generation 0 is
 *		never current, so its settings are read before it is used.  Until
 *		the supervisor has looked at its parked jobs, which it does next,
 *		every job of the key waits behind them.  False if there is no room
 *		(flow_find_parked finds the key later).
 */
static bool
mark_parked(const char *key)
{
	FlowKey    *k = find_key(key);

	if (k == NULL)
	{
		Settings	none;

		memset(&none, 0, sizeof(none));
		none.key = (char *) key;
		none.concurrency = -1;
		none.suspended_until = NOT_SUSPENDED;
		k = enter_key(&none, 0, GetCurrentTimestamp(), ++flow_shared->stamp);
		if (k == NULL)
			return false;
	}
	if (!k->parked)
	{
		k->parked = true;
		k->park_priority = PG_INT32_MAX;
		k->park_id = 0;
	}
	k->parks++;
	return true;
}

/*
 * flow_parked
 *		The parking of jobs on keys (a list of key names) committed: the
 *		supervisor releases them when the keys allow.
 */
void
flow_parked(List *keys)
{
	ListCell   *lc;

	if (keys == NIL)
		return;
	LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
	foreach(lc, keys)
		(void) mark_parked(lfirst(lc));
	LWLockRelease(flow_shared->lock);
	slots_wake_supervisor();
}

/*
 * available
 *		How many parked jobs of k may be released now (at most UNPARK_MAX);
 *		if none for want of time, *due is when one may.
 */
static int
available(FlowKey *k, TimestampTz now, TimestampTz *due)
{
	int64		n = UNPARK_MAX;

	if (!k->limited)
		return UNPARK_MAX;
	if (k->suspended_until > now)
	{
		*due = k->suspended_until;
		return 0;
	}
	if (k->concurrency >= 0)
		n = Min(n, k->concurrency - k->running);
	if (n <= 0)
		return 0;				/* a slot that frees wakes the supervisor */
	/* jobs released a moment ago take slots and tokens when claimed */
	if (k->released > 0 && !TimestampDifferenceExceeds(k->released_at, now, 1000))
	{
		n -= k->released;
		if (n <= 0)
		{
			/* unless they never come (cancelled, their queue paused) */
			*due = TimestampTzPlusMilliseconds(k->released_at, 1000);
			return 0;
		}
	}
	if (k->interval_us > 0)
		n = Min(n, tokens_now(k, now, due));
	return (int) n;
}

/*
 * flow_unpark
 *		The supervisor, in a transaction of its own: release parked jobs of
 *		this database's keys as far as their slots and tokens allow, oldest
 *		first, waking their queues' executors at commit.  Returns what
 *		flow_unparked must be told after the commit; *wait_ms is when to
 *		look again (-1: when woken).
 */
List *
flow_unpark(ChancyCatalog *cat, long *wait_ms)
{
	List	   *released = NIL;
	List	   *stale = NIL;
	TimestampTz next = 0;
	TimestampTz now;
	uint32		generation;
	HASH_SEQ_STATUS seq;
	FlowKey    *k;
	static uint64 lost_seen = 0;
	uint64		lost;
	ListCell   *lc;

	*wait_ms = -1;
	LWLockAcquire(flow_shared->lock, LW_SHARED);
	lost = flow_shared->lost_parked;
	LWLockRelease(flow_shared->lock);
	if (lost != lost_seen)
	{
		lost_seen = lost;
		flow_find_parked(cat);
	}
	for (int pass = 0; pass < 2; pass++)
	{
		generation = pg_atomic_read_u32(&flow_shared->generation);
		stale = released = NIL;
		next = 0;
		LWLockAcquire(flow_shared->lock, LW_SHARED);
		now = GetCurrentTimestamp();
		hash_seq_init(&seq, flow_keys);
		while ((k = hash_seq_search(&seq)) != NULL)
		{
			TimestampTz due = 0;
			int			n;

			if (k->tag.dboid != MyDatabaseId || !k->parked)
				continue;
			if (k->generation != generation)
			{
				stale = lappend(stale, pstrdup(k->tag.key));
				continue;
			}
			n = available(k, now, &due);
			if (n > 0)
			{
				Release    *r = palloc0(sizeof(Release));

				strlcpy(r->key, k->tag.key, NAMEDATALEN);
				r->want = n;
				r->parks = k->parks;
				released = lappend(released, r);
			}
			else if (due != 0 && (next == 0 || due < next))
				next = due;
		}
		LWLockRelease(flow_shared->lock);
		if (stale == NIL)
			break;
		/* settings changed: read them again, then look again */
		{
			int			nstale = list_length(stale);
			char	  **keys = palloc(sizeof(char *) * nstale);
			Settings   *s;
			ListCell   *lc;

			foreach(lc, stale)
				keys[foreach_current_index(lc)] = lfirst(lc);
			s = read_settings(cat, keys, nstale);
			LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
			for (int i = 0; i < nstale; i++)
			{
				k = find_key(s[i].key);
				if (k != NULL)
					(void) enter_key(&s[i], generation, now, ++flow_shared->stamp);
			}
			LWLockRelease(flow_shared->lock);
		}
	}

	foreach(lc, released)
	{
		Release    *r = lfirst(lc);
		int32		first_priority = 0;
		int64		first_id = 0;
		int			got;

		got = queue_unpark(cat, r->key, r->want, &r->rest, &first_priority, &first_id);
		/*
		 * Those released may be claimed as soon as this commits, before
		 * flow_unparked: from now on the jobs that wait are those behind the
		 * first left (or, with none left, none).
		 */
		LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
		k = find_key(r->key);
		if (k != NULL)
		{
			k->park_priority = r->rest ? first_priority : PG_INT32_MIN;
			k->park_id = r->rest ? first_id : PG_INT64_MAX;
			/* counted before their claims can come (each takes one off);
			 * if this rolls back, they are forgotten a second later */
			if (TimestampDifferenceExceeds(k->released_at, GetCurrentTimestamp(), 1000))
				k->released = 0;
			k->released += got;
			k->released_at = GetCurrentTimestamp();
		}
		LWLockRelease(flow_shared->lock);
		/* as many as may go at once went, and more are left: again at once */
		if (got == UNPARK_MAX && r->rest)
			next = now;
	}
	if (next != 0)
		*wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next) + 1;
	return released;
}

/*
 * flow_unparked
 *		After flow_unpark's commit: a key with no parked job left is no
 *		longer marked parked, unless a job was parked on it meanwhile.
 */
void
flow_unparked(List *released)
{
	ListCell   *lc;

	if (released == NIL)
		return;
	LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
	foreach(lc, released)
	{
		Release    *r = lfirst(lc);
		FlowKey    *k = find_key(r->key);

		/* (the first left was set before the commit: see flow_unpark) */
		if (k != NULL && !r->rest && k->parks == r->parks)
			k->parked = false;
	}
	LWLockRelease(flow_shared->lock);
}

/*
 * flow_find_parked
 *		The supervisor, when it starts and now and then: every key that jobs
 *		are parked on in the table is marked parked in shared memory (after
 *		a restart, or where there was no room for it), so that they are
 *		released.  Its settings are read when it is looked at.
 */
void
flow_find_parked(ChancyCatalog *cat)
{
	List	   *keys = queue_parked_keys(cat);
	ListCell   *lc;

	LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
	foreach(lc, keys)
		if (!mark_parked(lfirst(lc)))
			break;
	LWLockRelease(flow_shared->lock);
}

/*
 * flow_forget_database
 *		Remove the keys of a database from shared memory: its supervisor
 *		starts (no executor of it runs then; the parked jobs are found in
 *		the table again), or it was dropped.
 */
void
flow_forget_database(Oid dboid)
{
	HASH_SEQ_STATUS seq;
	FlowKey    *k;

	LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, flow_keys);
	while ((k = hash_seq_search(&seq)) != NULL)
		if (k->tag.dboid == dboid)
			(void) hash_search(flow_keys, &k->tag, HASH_REMOVE, NULL);
	LWLockRelease(flow_shared->lock);
}

/*
 * flow_changed
 *		A change to chancy_limits committed: every key reads its settings
 *		again, and the supervisor looks at the parked jobs.
 */
void
flow_changed(void)
{
	pg_atomic_fetch_add_u32(&flow_shared->generation, 1);
	slots_wake_supervisor();
}

/*
 * chancy_limits_changed
 *		Statement trigger on chancy_limits: flow_changed() at commit.
 */
Datum
chancy_limits_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function chancy_limits_changed() must be called as a trigger")));
	wakeup_limits_at_commit();
	return PointerGetDatum(NULL);
}

/*
 * chancy_limit_state() RETURNS SETOF record
 *		The limited keys of this database in shared memory: key, concurrency,
 *		running, rate, per, burst, tokens now, next token at, suspended
 *		until, throttled.  A rate is shown as one per its interval.
 */
Datum
chancy_limit_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS seq;
	FlowKey    *k;
	TimestampTz now = GetCurrentTimestamp();
	List	   *copies = NIL;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(flow_shared->lock, LW_SHARED);
	hash_seq_init(&seq, flow_keys);
	while ((k = hash_seq_search(&seq)) != NULL)
	{
		FlowKey    *copy;

		if (k->tag.dboid != MyDatabaseId || !k->limited)
			continue;
		copy = palloc(sizeof(FlowKey));
		memcpy(copy, k, sizeof(FlowKey));
		copies = lappend(copies, copy);
	}
	LWLockRelease(flow_shared->lock);

	foreach(lc, copies)
	{
		Datum		values[10];
		bool		nulls[10];
		TimestampTz due = now;

		k = lfirst(lc);
		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(k->tag.key);
		values[1] = Int32GetDatum(k->concurrency);
		nulls[1] = k->concurrency < 0;
		values[2] = Int32GetDatum(k->running);
		if (k->interval_us > 0)
		{
			Interval   *per = palloc0(sizeof(Interval));

			per->time = k->per_ms * 1000;
			values[3] = Int32GetDatum(k->rate);
			values[4] = IntervalPGetDatum(per);
			values[5] = Int32GetDatum(k->burst);
			values[6] = Int32GetDatum((int32) tokens_now(k, now, &due));
			values[7] = TimestampTzGetDatum(due);
		}
		else
			nulls[3] = nulls[4] = nulls[5] = nulls[6] = nulls[7] = true;
		values[8] = TimestampTzGetDatum(k->suspended_until);
		nulls[8] = k->suspended_until == NOT_SUSPENDED;
		values[9] = Int64GetDatum((int64) k->throttled);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * chancy_limit_acquire(key text, cost int, timeout interval) RETURNS boolean
 *		Take cost tokens of key's rate for work that is not a job (the same
 *		bucket its jobs take theirs from), waiting until they are due, up to
 *		timeout (NULL: no end); false if it ran out.  A key without a rate
 *		gives tokens at once, unless it is suspended.  Tokens are not given
 *		back when the transaction rolls back: what they paid for happened.
 */
Datum
chancy_limit_acquire(PG_FUNCTION_ARGS)
{
	ChancyCatalog *cat = chancy_catalog_for(fcinfo);
	char	   *key;
	int32		cost = PG_ARGISNULL(1) ? 1 : PG_GETARG_INT32(1);
	TimestampTz deadline = 0;
	Datum		keys;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("limit key must not be NULL")));
	key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	keys = PointerGetDatum(construct_array(&PG_GETARG_DATUM(0), 1, TEXTOID, -1, false,
										   TYPALIGN_INT));
	job_check_attr(JA_LIMIT_KEYS, keys, false);
	if (cost < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cost must be at least 1, not %d", cost)));
	if (!PG_ARGISNULL(2))
	{
		int64		ms = interval_ms(PG_GETARG_INTERVAL_P(2));

		if (ms < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must not be negative"),
					 errhint("NULL waits as long as needed; 0 does not wait.")));
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Min(ms, INT64CONST(31622400000)));
	}

	for (;;)
	{
		uint32		generation = pg_atomic_read_u32(&flow_shared->generation);
		Settings   *settings = NULL;
		FlowKey    *k;
		TimestampTz now;
		TimestampTz due = 0;
		bool		fresh;

		LWLockAcquire(flow_shared->lock, LW_SHARED);
		k = find_key(key);
		fresh = k != NULL && k->generation == generation;
		LWLockRelease(flow_shared->lock);
		if (!fresh)
			settings = read_settings(cat, &key, 1);

		LWLockAcquire(flow_shared->lock, LW_EXCLUSIVE);
		now = GetCurrentTimestamp();
		k = find_key(key);
		if (settings != NULL && !settings->limited && k == NULL)
		{
			LWLockRelease(flow_shared->lock);
			PG_RETURN_BOOL(true);	/* no limit: nothing to take */
		}
		if (settings != NULL && (k == NULL || k->generation != generation))
			k = enter_key(settings, generation, now, ++flow_shared->stamp);
		if (k == NULL)
			due = TimestampTzPlusMilliseconds(now, 1000);	/* no room: later */
		else if (k->limited && k->suspended_until > now)
			due = k->suspended_until;
		else if (k->limited && k->interval_us > 0)
		{
			if (cost > k->burst)
			{
				int32		burst = k->burst;

				LWLockRelease(flow_shared->lock);
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("cost %d is more than the burst of limit key \"%s\" (%d)",
								cost, key, burst),
						 errhint("The burst is how many tokens the key gives at once.")));
			}
			if (k->tat - now > ahead_allowed(k, cost))
				due = k->tat - ahead_allowed(k, cost);
			else
				take_tokens(k, cost, now);
		}
		LWLockRelease(flow_shared->lock);
		if (due == 0)
			PG_RETURN_BOOL(true);
		if (deadline != 0 && due > deadline)
			PG_RETURN_BOOL(false);
		/* sleep until due, looking again at least every second (a changed limit) */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(TimestampDifferenceMilliseconds(now, due) + 1, 1000),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
