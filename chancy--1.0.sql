/* chancy--1.0.sql: the job queue's tables and SQL API */

\echo Use "CREATE EXTENSION chancy" to load this file. \quit

-- The life of a job:  pending -> running -> succeeded
--                                        -> retrying -> running ...
--                                        -> failed
--                     pending/retrying/running -> cancelled
CREATE TYPE chancy_state AS ENUM
	('pending', 'running', 'retrying', 'succeeded', 'failed', 'cancelled');

-- Job definitions: the seed's @job(...) decorator.  Every push of a job by
-- this name starts from these defaults.  Written only through
-- chancy_define_job() and chancy_undefine_job().
CREATE TABLE chancy_job_definitions (
	name text PRIMARY KEY CHECK (name <> ''),
	function text NOT NULL,
	queue text NOT NULL DEFAULT 'default' CHECK (queue <> ''),
	priority int NOT NULL DEFAULT 0,
	max_attempts int NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
	kwargs jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(kwargs) = 'object'),
	time_limit interval CHECK (time_limit > '0'),
	memory_limit bigint CHECK (memory_limit > 0),
	defined_by regrole NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- The jobs themselves.  Written only by chancy's functions and workers,
-- which check every value (CHECK constraints would cost every write).
CREATE TABLE chancy_jobs (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name text NOT NULL,
	function text NOT NULL,
	queue text NOT NULL,
	state chancy_state NOT NULL DEFAULT 'pending',
	priority int NOT NULL,
	attempts int NOT NULL DEFAULT 0,
	max_attempts int NOT NULL,
	scheduled_at timestamptz NOT NULL DEFAULT now(),
	created_at timestamptz NOT NULL DEFAULT now(),
	started_at timestamptz,
	completed_at timestamptz,
	unique_key text,
	time_limit interval,
	memory_limit bigint,
	kwargs jsonb NOT NULL DEFAULT '{}',
	meta jsonb NOT NULL DEFAULT '{}',
	errors jsonb NOT NULL DEFAULT '[]',
	result jsonb,
	pushed_by regrole NOT NULL,
	claim bigint,				/* token of the claim that holds it running */
	crashes int NOT NULL DEFAULT 0
);

-- The dequeue order, exactly: within a queue, higher priority first, then
-- older first.  Only jobs that may become ready are in it.
CREATE INDEX chancy_jobs_ready ON chancy_jobs (queue, priority DESC, id)
	WHERE state IN ('pending', 'retrying');

-- Jobs waiting for their time (pushed for later, or retrying after a
-- backoff): an idle executor sleeps until the earliest of them is due.
CREATE INDEX chancy_jobs_scheduled ON chancy_jobs (queue, scheduled_at)
	WHERE state IN ('pending', 'retrying') AND scheduled_at > created_at;

-- Finished jobs by age: what the supervisor prunes.
CREATE INDEX chancy_jobs_finished ON chancy_jobs (completed_at)
	WHERE state IN ('succeeded', 'failed', 'cancelled');

-- A queue table churns: vacuum it early and often.
ALTER TABLE chancy_jobs SET (
	autovacuum_vacuum_scale_factor = 0.02,
	autovacuum_vacuum_threshold = 1000,
	autovacuum_vacuum_insert_scale_factor = 0.02,
	autovacuum_analyze_scale_factor = 0.05,
	autovacuum_vacuum_cost_delay = 0);

-- Jobs being run: what is recovered after a crash.
CREATE INDEX chancy_jobs_running ON chancy_jobs (id) WHERE state = 'running';

-- At most one live job per unique key.  The predicate is repeated verbatim
-- by the ON CONFLICT clause of the push.
CREATE UNIQUE INDEX chancy_jobs_unique_key ON chancy_jobs (unique_key)
	WHERE unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running');

-- An immutable job value: what chancy_job() returns, the chancy_with_*
-- builders copy and change, and chancy_push() takes.
CREATE TYPE chancy_job AS (
	name text,
	function text,
	queue text,
	kwargs jsonb,
	priority int,
	max_attempts int,
	scheduled_at timestamptz,
	unique_key text,
	time_limit interval,
	memory_limit bigint,
	meta jsonb
);

-- Roles see their own jobs (and those of roles they are members of);
-- superusers and the owner see all.
ALTER TABLE chancy_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY chancy_jobs_own ON chancy_jobs FOR SELECT
	USING (pg_has_role(pushed_by, 'MEMBER'));
REVOKE ALL ON chancy_jobs, chancy_job_definitions FROM PUBLIC;
GRANT SELECT ON chancy_jobs, chancy_job_definitions TO PUBLIC;

CREATE FUNCTION chancy_definitions_changed()
	RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;

-- Backends cache definitions; any change to the table resets the caches.
CREATE TRIGGER chancy_definitions_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON chancy_job_definitions
	FOR EACH STATEMENT EXECUTE FUNCTION chancy_definitions_changed();

CREATE FUNCTION chancy_define_job(
	name text,
	function text DEFAULT NULL,
	queue text DEFAULT 'default',
	priority int DEFAULT 0,
	max_attempts int DEFAULT 1,
	kwargs jsonb DEFAULT '{}',
	time_limit interval DEFAULT NULL,
	memory_limit bigint DEFAULT NULL)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;

CREATE FUNCTION chancy_undefine_job(name text)
	RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;

CREATE FUNCTION chancy_job(name text)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE;

CREATE FUNCTION chancy_with_kwargs(job chancy_job, kwargs jsonb,
								   replace boolean DEFAULT false)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION chancy_with_priority(job chancy_job, priority int)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION chancy_with_max_attempts(job chancy_job, max_attempts int)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION chancy_with_scheduled_at(job chancy_job, scheduled_at timestamptz)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION chancy_with_unique_key(job chancy_job, unique_key text)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION chancy_with_queue(job chancy_job, queue text)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION chancy_with_meta(job chancy_job, meta jsonb)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION chancy_with_limits(job chancy_job, time_limit interval,
								   memory_limit bigint)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION chancy_push(job chancy_job)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'chancy_push_job' LANGUAGE C VOLATILE;

CREATE FUNCTION chancy_push(
	name text,
	kwargs jsonb DEFAULT NULL,
	queue text DEFAULT NULL,
	priority int DEFAULT NULL,
	max_attempts int DEFAULT NULL,
	scheduled_at timestamptz DEFAULT NULL,
	unique_key text DEFAULT NULL,
	time_limit interval DEFAULT NULL,
	memory_limit bigint DEFAULT NULL,
	meta jsonb DEFAULT NULL)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'chancy_push_named' LANGUAGE C VOLATILE;

CREATE FUNCTION chancy_push_many(jobs chancy_job[])
	RETURNS bigint[]
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;

-- Queues: how many executors each has, whether it is paused, how its jobs
-- back off between retries.  chancy.queues declares queues at start; these
-- functions change them at any time (the supervisor applies a change when it
-- commits).
CREATE TABLE chancy_queues (
	name text PRIMARY KEY CHECK (name <> '' AND octet_length(name) < 64),
	concurrency int NOT NULL DEFAULT 1 CHECK (concurrency BETWEEN 0 AND 1000),
	paused_until timestamptz,
	backoff_base interval NOT NULL DEFAULT '1 second' CHECK (backoff_base > '0'),
	backoff_factor float8 NOT NULL DEFAULT 2 CHECK (backoff_factor >= 1),
	backoff_max interval NOT NULL DEFAULT '1 hour' CHECK (backoff_max >= backoff_base),
	time_limit interval CHECK (time_limit > '0'),
	executor text NOT NULL DEFAULT 'process' CHECK (executor IN ('process', 'isolated')),
	prune_after interval CHECK (prune_after >= '0'),
	updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON chancy_queues FROM PUBLIC;
GRANT SELECT ON chancy_queues TO PUBLIC;

CREATE FUNCTION chancy_queues_changed()
	RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;

CREATE TRIGGER chancy_queues_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON chancy_queues
	FOR EACH STATEMENT EXECUTE FUNCTION chancy_queues_changed();

-- Declare a queue, or change it: concurrency is the number of executors that
-- run its jobs; a failed job with attempts left retries after
-- min(backoff_max, backoff_base * backoff_factor ^ (attempt - 1)), half of it
-- random; time_limit applies to its jobs that set none; executor 'isolated'
-- runs its C jobs in a forked child without database access (see README).
CREATE FUNCTION chancy_declare_queue(
	name text,
	concurrency int DEFAULT 1,
	backoff_base interval DEFAULT '1 second',
	backoff_factor float8 DEFAULT 2,
	backoff_max interval DEFAULT '1 hour',
	time_limit interval DEFAULT NULL,
	executor text DEFAULT 'process',
	prune_after interval DEFAULT NULL)
	RETURNS chancy_queues
	LANGUAGE plpgsql AS $$
DECLARE
	q chancy_queues;
BEGIN
	IF name IS NULL OR name = '' OR octet_length(name) > 63 THEN
		RAISE EXCEPTION 'invalid queue name %', coalesce(quote_literal(name), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A queue name is 1 to 63 bytes.';
	END IF;
	IF concurrency IS NULL OR concurrency NOT BETWEEN 0 AND 1000 THEN
		RAISE EXCEPTION 'invalid concurrency % for queue "%"', coalesce(concurrency::text, 'NULL'), name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Concurrency is the number of executors of the queue, from 0 to 1000.';
	END IF;
	IF backoff_base IS NULL OR backoff_base <= '0' OR backoff_factor IS NULL
	   OR backoff_factor < 1 OR backoff_max IS NULL OR backoff_max < backoff_base THEN
		RAISE EXCEPTION 'invalid retry backoff for queue "%"', name
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('backoff_base %s, backoff_factor %s, backoff_max %s',
			                      backoff_base, backoff_factor, backoff_max),
			      HINT = 'backoff_base must be positive, backoff_factor at least 1, backoff_max at least backoff_base.';
	END IF;
	IF time_limit <= '0' THEN
		RAISE EXCEPTION 'invalid time limit % for queue "%"', time_limit, name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Use a positive interval, or NULL for no limit.';
	END IF;
	IF executor IS NULL OR executor NOT IN ('process', 'isolated') THEN
		RAISE EXCEPTION 'invalid executor % for queue "%"', coalesce(quote_literal(executor), 'NULL'), name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Use ''process'' (jobs run in the executor) or ''isolated'' (C jobs run in a forked child).';
	END IF;
	IF prune_after < '0' THEN
		RAISE EXCEPTION 'invalid prune_after % for queue "%"', prune_after, name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Finished jobs are deleted once older than prune_after; NULL means chancy.prune_after.';
	END IF;
	INSERT INTO chancy_queues AS c (name, concurrency, backoff_base, backoff_factor,
	                                backoff_max, time_limit, executor, prune_after)
	VALUES (name, concurrency, backoff_base, backoff_factor, backoff_max, time_limit,
	        executor, prune_after)
	ON CONFLICT ON CONSTRAINT chancy_queues_pkey DO UPDATE
	   SET concurrency = excluded.concurrency, backoff_base = excluded.backoff_base,
	       backoff_factor = excluded.backoff_factor, backoff_max = excluded.backoff_max,
	       time_limit = excluded.time_limit, executor = excluded.executor,
	       prune_after = excluded.prune_after, updated_at = now()
	RETURNING * INTO q;
	RETURN q;
END $$;

-- Pause a queue: its executors start no new job (running ones finish) until
-- resume_at, or until chancy_resume_queue() when resume_at is NULL.
CREATE FUNCTION chancy_pause_queue(name text, resume_at timestamptz DEFAULT NULL)
	RETURNS chancy_queues
	LANGUAGE plpgsql AS $$
DECLARE
	q chancy_queues;
BEGIN
	UPDATE chancy_queues c SET paused_until = coalesce(resume_at, 'infinity'), updated_at = now()
	 WHERE c.name = chancy_pause_queue.name RETURNING * INTO q;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue "%" does not exist', name
			USING ERRCODE = 'undefined_object',
			      HINT = 'Declare it with chancy_declare_queue() or in chancy.queues.';
	END IF;
	RETURN q;
END $$;

CREATE FUNCTION chancy_resume_queue(name text)
	RETURNS chancy_queues
	LANGUAGE plpgsql AS $$
DECLARE
	q chancy_queues;
BEGIN
	UPDATE chancy_queues c SET paused_until = NULL, updated_at = now()
	 WHERE c.name = chancy_resume_queue.name RETURNING * INTO q;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue "%" does not exist', name
			USING ERRCODE = 'undefined_object',
			      HINT = 'Declare it with chancy_declare_queue() or in chancy.queues.';
	END IF;
	RETURN q;
END $$;

-- Managing queues is for the extension's owner, who may grant it.
REVOKE EXECUTE ON FUNCTION chancy_declare_queue(text, int, interval, float8, interval, interval, text, interval),
	chancy_pause_queue(text, timestamptz), chancy_resume_queue(text) FROM PUBLIC;

-- Cancel a job: a pending or retrying job never starts; a running one is
-- interrupted and ends cancelled (not retried).  For the role that pushed it
-- (or a member), superusers, and roles with UPDATE on chancy_jobs.
CREATE FUNCTION chancy_cancel(job_id bigint)
	RETURNS chancy_jobs
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;

-- Wait for a job to finish (succeeded, failed or cancelled) and return it.
CREATE FUNCTION chancy_wait(job_id bigint, timeout interval DEFAULT NULL)
	RETURNS chancy_jobs
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;

-- The job the calling executor runs (for SQL and PL/pgSQL jobs); NULL
-- outside a job.
CREATE FUNCTION chancy_current_job(OUT id bigint, OUT name text, OUT queue text,
								   OUT attempt int, OUT max_attempts int)
	RETURNS record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;

CREATE FUNCTION chancy_worker_info(OUT kind text, OUT database text, OUT queue text,
								   OUT pid int, OUT state text, OUT job_id bigint,
								   OUT jobs_done bigint, OUT started_at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;

-- The plan executors claim a queue's jobs with (a diagnostic): it walks the
-- ready index whatever the statistics say.
CREATE FUNCTION chancy_explain_claim(queue text)
	RETURNS SETOF text
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;

-- chancy's processes in the whole cluster.
CREATE VIEW chancy_workers AS SELECT * FROM chancy_worker_info();

-- Jobs per queue and state (of the jobs the caller may see).
CREATE VIEW chancy_queue_stats AS
SELECT coalesce(q.name, s.queue) AS queue,
	   coalesce(s.pending, 0) AS pending, coalesce(s.running, 0) AS running,
	   coalesce(s.retrying, 0) AS retrying, coalesce(s.succeeded, 0) AS succeeded,
	   coalesce(s.failed, 0) AS failed, coalesce(s.cancelled, 0) AS cancelled,
	   q.concurrency, q.paused_until
  FROM (SELECT queue,
			   count(*) FILTER (WHERE state = 'pending') AS pending,
			   count(*) FILTER (WHERE state = 'running') AS running,
			   count(*) FILTER (WHERE state = 'retrying') AS retrying,
			   count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
			   count(*) FILTER (WHERE state = 'failed') AS failed,
			   count(*) FILTER (WHERE state = 'cancelled') AS cancelled
		  FROM chancy_jobs GROUP BY queue) s
  FULL JOIN chancy_queues q ON q.name = s.queue;
