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

-- The jobs themselves.  Written only by chancy's functions and workers.
CREATE TABLE chancy_jobs (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name text NOT NULL,
	function text NOT NULL,
	queue text NOT NULL,
	state chancy_state NOT NULL DEFAULT 'pending',
	priority int NOT NULL,
	attempts int NOT NULL DEFAULT 0,
	max_attempts int NOT NULL CHECK (max_attempts >= 1),
	scheduled_at timestamptz NOT NULL DEFAULT now(),
	created_at timestamptz NOT NULL DEFAULT now(),
	started_at timestamptz,
	completed_at timestamptz,
	unique_key text CHECK (unique_key <> ''),
	time_limit interval CHECK (time_limit > '0'),
	memory_limit bigint CHECK (memory_limit > 0),
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
