/* chancy--1.1.sql: chancy's catalog and SQL API, version 1.1 */

\echo Use "CREATE EXTENSION chancy" to load this file. \quit

-- Sections: types; rules; tables; indexes; security; triggers; functions
-- (definitions, job values, pushes, queues and who may call them,
-- control, cron expressions); recurring jobs; views; data.  The job state
-- machine is drawn in src/README.md.
-- Columns that version 1.1 added come last in their table, where ALTER
-- EXTENSION chancy UPDATE puts them.

--------------------------------------------------------------------------
-- Types
--------------------------------------------------------------------------

CREATE TYPE chancy_state AS ENUM
	('pending', 'running', 'retrying', 'succeeded', 'failed', 'cancelled');
COMMENT ON TYPE chancy_state IS
	'State of a job: pending, running and retrying are live; succeeded, failed and cancelled are final (see src/README.md)';

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
	meta jsonb,
	limit_keys text[]
);
COMMENT ON TYPE chancy_job IS
	'An immutable job value: what chancy_job() returns, the chancy_with_* builders copy and change, and chancy_push() takes';

--------------------------------------------------------------------------
-- Rules shared by the tables' constraints
--------------------------------------------------------------------------

CREATE FUNCTION chancy_interval_ms(interval)
	RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION chancy_interval_ms(interval) IS
	'Length of an interval in milliseconds (a year is 365.25 days, a month 30), or -1 if it has a negative part: the one rule for chancy''s intervals';

--------------------------------------------------------------------------
-- Tables
--------------------------------------------------------------------------

CREATE TABLE chancy_queues (
	name text PRIMARY KEY
		CONSTRAINT chancy_queues_name_check CHECK (name <> '' AND octet_length(name) < 64),
	concurrency int NOT NULL DEFAULT 1
		CONSTRAINT chancy_queues_concurrency_check CHECK (concurrency BETWEEN 0 AND 1000),
	paused_until timestamptz,
	backoff_base interval NOT NULL DEFAULT '1 second'
		CONSTRAINT chancy_queues_backoff_base_check
		CHECK (chancy_interval_ms(backoff_base) BETWEEN 1 AND 31622400000),
	backoff_factor float8 NOT NULL DEFAULT 2
		CONSTRAINT chancy_queues_backoff_factor_check CHECK (backoff_factor >= 1),
	backoff_max interval NOT NULL DEFAULT '1 hour',
	time_limit interval
		CONSTRAINT chancy_queues_time_limit_check
		CHECK (chancy_interval_ms(time_limit) BETWEEN 1 AND 31622400000),
	executor text NOT NULL DEFAULT 'process'
		CONSTRAINT chancy_queues_executor_check CHECK (executor IN ('process', 'isolated')),
	prune_after interval
		CONSTRAINT chancy_queues_prune_after_check CHECK (chancy_interval_ms(prune_after) >= 0),
	updated_at timestamptz NOT NULL DEFAULT now(),
	memory_limit bigint
		CONSTRAINT chancy_queues_memory_limit_check CHECK (memory_limit > 0),
	from_config boolean NOT NULL DEFAULT false,
	CONSTRAINT chancy_queues_backoff_max_check
		CHECK (chancy_interval_ms(backoff_max) BETWEEN chancy_interval_ms(backoff_base)
			   AND 31622400000)
);
COMMENT ON TABLE chancy_queues IS
	'Queues: how many executors each has, whether it is paused, the defaults of its jobs.  Changed with chancy_declare_queue(), chancy_pause_queue(), chancy_resume_queue() and chancy_delete_queue()';
COMMENT ON COLUMN chancy_queues.concurrency IS
	'Executors that run the queue''s jobs, each one job at a time';
COMMENT ON COLUMN chancy_queues.paused_until IS
	'No job of the queue starts before this time (infinity: until resumed)';
COMMENT ON COLUMN chancy_queues.backoff_base IS
	'A failed job with attempts left retries after min(backoff_max, backoff_base * backoff_factor ^ (attempt - 1)), half of it random';
COMMENT ON COLUMN chancy_queues.time_limit IS
	'Time limit of the queue''s jobs that set none (else chancy.time_limit)';
COMMENT ON COLUMN chancy_queues.memory_limit IS
	'Memory limit in bytes of the queue''s jobs that set none (else chancy.memory_limit)';
COMMENT ON COLUMN chancy_queues.executor IS
	'process: jobs run in the executor; isolated: C jobs run in a forked child without database access';
COMMENT ON COLUMN chancy_queues.prune_after IS
	'Finished jobs of the queue older than this are deleted (else chancy.prune_after)';
COMMENT ON COLUMN chancy_queues.from_config IS
	'The queue''s concurrency follows chancy.queues, until chancy_declare_queue() changes it';

CREATE TABLE chancy_job_definitions (
	name text NOT NULL
		CONSTRAINT chancy_job_definitions_name_check CHECK (name <> ''),
	function text NOT NULL,
	queue text NOT NULL DEFAULT 'default'
		CONSTRAINT chancy_job_definitions_queue_check CHECK (queue <> ''),
	priority int NOT NULL DEFAULT 0,
	max_attempts int NOT NULL DEFAULT 1
		CONSTRAINT chancy_job_definitions_max_attempts_check CHECK (max_attempts >= 1),
	kwargs jsonb NOT NULL DEFAULT '{}'
		CONSTRAINT chancy_job_definitions_kwargs_check CHECK (jsonb_typeof(kwargs) = 'object'),
	time_limit interval
		CONSTRAINT chancy_job_definitions_time_limit_check
		CHECK (chancy_interval_ms(time_limit) BETWEEN 1 AND 31622400000),
	memory_limit bigint
		CONSTRAINT chancy_job_definitions_memory_limit_check CHECK (memory_limit > 0),
	defined_by regrole NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	function_oid oid,
	from_extension boolean NOT NULL DEFAULT false,
	function_owner regrole,
	function_catalog bigint,
	function_digest bigint,
	limit_keys text[],
	CONSTRAINT chancy_job_definitions_pkey PRIMARY KEY (name, defined_by)
);
COMMENT ON TABLE chancy_job_definitions IS
	'Job definitions, the seed''s @job(...) defaults, one namespace per role.  Written only through chancy_define_job() and chancy_undefine_job()';
COMMENT ON COLUMN chancy_job_definitions.function IS
	'The job''s function: a schema-qualified signature, or a C symbol ''library:symbol'' (defined by a superuser)';
COMMENT ON COLUMN chancy_job_definitions.limit_keys IS
	'The limit keys of the job''s pushes: {name} in one is the value of kwarg name, filled at push (customer:{customer_id})';
COMMENT ON COLUMN chancy_job_definitions.function_oid IS
	'The function as it was defined: one dropped and created again is not run in its place';
COMMENT ON COLUMN chancy_job_definitions.function_owner IS
	'The owner of the function as it was defined: in another cluster (a restored dump, pg_upgrade), where OIDs differ, the function of that signature is used only if it has this owner';
COMMENT ON COLUMN chancy_job_definitions.function_catalog IS
	'Which catalog (cluster and database) function_oid belongs to; NULL: recorded by version 1.0, where the signature and owner identify the function';
COMMENT ON COLUMN chancy_job_definitions.function_digest IS
	'A digest of what the function does when called (language, source or body, library, settings, security, return type): in another catalog, the function of that signature and owner must have it too (NULL: not checked)';
COMMENT ON COLUMN chancy_job_definitions.defined_by IS
	'The role whose definition it is; a push by name uses only definitions of the pushing role, of the extension''s owner, or of a role that can act as the pushing role';

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
	claim bigint,
	crashes int NOT NULL DEFAULT 0,
	function_oid oid,
	cancelled_by regrole,
	replicated boolean NOT NULL DEFAULT false,
	function_owner regrole,
	function_catalog bigint,
	function_digest bigint,
	limit_keys text[],
	parked_on text,
	run_us bigint,
	cpu_user_us bigint,
	cpu_sys_us bigint,
	mem_peak_bytes bigint,
	wal_bytes bigint,
	blks_hit bigint,
	blks_read bigint
);
COMMENT ON TABLE chancy_jobs IS
	'The jobs.  Written only by chancy''s functions and workers, which check every value (CHECK constraints would cost every write)';
COMMENT ON COLUMN chancy_jobs.attempts IS
	'Runs of the job that counted: a run its executor did not finish through no fault of the job does not';
COMMENT ON COLUMN chancy_jobs.errors IS
	'One entry per failed or interrupted run: attempt (from 1), message, sqlstate, detail, hint, context, at';
COMMENT ON COLUMN chancy_jobs.pushed_by IS
	'The role the job runs as';
COMMENT ON COLUMN chancy_jobs.claim IS
	'Token of the executor claim that holds the job (claimed or running); a write of an executor presumed dead is refused.  0: parked by flow control (see parked_on)';
COMMENT ON COLUMN chancy_jobs.limit_keys IS
	'Keys of chancy_limits the job holds while it runs: it starts only when each has a free slot and a token';
COMMENT ON COLUMN chancy_jobs.parked_on IS
	'The limit key that was saturated when an executor took the job: it waits, outside the ready jobs, until the supervisor releases it (claim 0)';
COMMENT ON COLUMN chancy_jobs.run_us IS
	'What the job''s runs cost, added up over its runs (NULL until one ends; chancy.track_costs): microseconds in its function';
COMMENT ON COLUMN chancy_jobs.cpu_user_us IS
	'CPU time in user mode of its runs, microseconds (an isolated job''s child''s too)';
COMMENT ON COLUMN chancy_jobs.cpu_sys_us IS
	'CPU time in the kernel of its runs, microseconds';
COMMENT ON COLUMN chancy_jobs.mem_peak_bytes IS
	'The most memory a run of it added to its executor (data size), bytes; an isolated job''s child''s peak resident size';
COMMENT ON COLUMN chancy_jobs.wal_bytes IS
	'WAL its runs wrote, bytes';
COMMENT ON COLUMN chancy_jobs.blks_hit IS
	'Buffer hits of its runs (shared and local blocks)';
COMMENT ON COLUMN chancy_jobs.blks_read IS
	'Blocks its runs read into buffers (shared and local)';
COMMENT ON COLUMN chancy_jobs.crashes IS
	'How often the job was executing when its executor died of it; at chancy.max_crashes it fails';
COMMENT ON COLUMN chancy_jobs.function_oid IS
	'The job''s function as it was pushed: one dropped and created again is not run in its place';
COMMENT ON COLUMN chancy_jobs.function_owner IS
	'The owner of the function as it was pushed: in another cluster (a restored dump, pg_upgrade, logical replication), where OIDs differ, the function of that signature runs only if it has this owner';
COMMENT ON COLUMN chancy_jobs.function_catalog IS
	'Which catalog (cluster and database) function_oid belongs to; NULL: recorded by version 1.0, where the signature and owner identify the function';
COMMENT ON COLUMN chancy_jobs.function_digest IS
	'A digest of what the function does when called (language, source or body, library, settings, security, return type): in another catalog, the function of that signature and owner must have it too (NULL: not checked)';
COMMENT ON COLUMN chancy_jobs.cancelled_by IS
	'The role that asked to cancel the job while an executor held it';
COMMENT ON COLUMN chancy_jobs.replicated IS
	'Written here by logical replication: the job is the publisher''s, and no executor here runs it (see chancy_adopt_jobs())';
COMMENT ON COLUMN chancy_queues.name IS
	'The queue''s name, as jobs and definitions give it';
COMMENT ON COLUMN chancy_queues.backoff_factor IS
	'See backoff_base';
COMMENT ON COLUMN chancy_queues.backoff_max IS
	'See backoff_base';
COMMENT ON COLUMN chancy_queues.updated_at IS
	'When the queue was last declared or changed';
COMMENT ON COLUMN chancy_job_definitions.name IS
	'The name jobs are pushed by';
COMMENT ON COLUMN chancy_job_definitions.queue IS
	'Default queue of the jobs pushed by this name (a push may override it)';
COMMENT ON COLUMN chancy_job_definitions.priority IS
	'Default priority of the jobs pushed by this name (a push may override it)';
COMMENT ON COLUMN chancy_job_definitions.max_attempts IS
	'Default max_attempts of the jobs pushed by this name (a push may override it)';
COMMENT ON COLUMN chancy_job_definitions.kwargs IS
	'Default kwargs (a push''s are merged over them) of the jobs pushed by this name (a push may override it)';
COMMENT ON COLUMN chancy_job_definitions.time_limit IS
	'Default time limit of the jobs pushed by this name (a push may override it)';
COMMENT ON COLUMN chancy_job_definitions.memory_limit IS
	'Default memory limit in bytes of the jobs pushed by this name (a push may override it)';
COMMENT ON COLUMN chancy_job_definitions.updated_at IS
	'When the definition was last written';
COMMENT ON COLUMN chancy_jobs.name IS
	'The name the job was pushed by';
COMMENT ON COLUMN chancy_jobs.function IS
	'The job''s function, as a schema-qualified signature (or ''library:symbol'')';
COMMENT ON COLUMN chancy_jobs.state IS
	'pending, running, retrying, succeeded, failed or cancelled: see the drawing in src/README.md';
COMMENT ON COLUMN chancy_jobs.priority IS
	'Within its queue, a job of higher priority starts first; then the older one';
COMMENT ON COLUMN chancy_jobs.max_attempts IS
	'Runs the job may have before it fails (1: no retry)';
COMMENT ON COLUMN chancy_jobs.scheduled_at IS
	'The job does not start before this time (a retry''s backoff moves it)';
COMMENT ON COLUMN chancy_jobs.started_at IS
	'When its last run started (NULL while it waits, even in an executor''s batch)';
COMMENT ON COLUMN chancy_jobs.completed_at IS
	'When it reached a final state; pruning counts from here';
COMMENT ON COLUMN chancy_jobs.unique_key IS
	'At most one live job per pushing role holds a key; a push with a held key returns that job';
COMMENT ON COLUMN chancy_jobs.time_limit IS
	'The job''s own time limit (else its queue''s, else chancy.time_limit)';
COMMENT ON COLUMN chancy_jobs.memory_limit IS
	'The job''s own memory limit in bytes (else its queue''s, else chancy.memory_limit)';
COMMENT ON COLUMN chancy_jobs.kwargs IS
	'The keyword arguments its function is called with (a JSON object)';
COMMENT ON COLUMN chancy_jobs.meta IS
	'Free-form data of the pusher''s; chancy does not read it';
COMMENT ON COLUMN chancy_jobs.result IS
	'What the function returned, as jsonb, once the job succeeded';

-- A queue table churns: vacuum it early and often.
ALTER TABLE chancy_jobs SET (
	autovacuum_vacuum_scale_factor = 0.02,
	autovacuum_vacuum_threshold = 1000,
	autovacuum_vacuum_insert_scale_factor = 0.02,
	autovacuum_analyze_scale_factor = 0.05,
	autovacuum_vacuum_cost_delay = 0);

--------------------------------------------------------------------------
-- Indexes
--------------------------------------------------------------------------

-- The dequeue order, exactly: within a queue, higher priority first, then
-- older first; only jobs that no executor holds and that may be ready.
CREATE INDEX chancy_jobs_ready ON chancy_jobs (queue, priority DESC, id)
	WHERE state IN ('pending', 'retrying') AND claim IS NULL AND NOT replicated;
COMMENT ON INDEX chancy_jobs_ready IS 'The claim''s walk, in dequeue order';

-- Jobs waiting for their time (pushed for later, or retrying after a
-- backoff): an idle executor sleeps until the earliest of them is due.
CREATE INDEX chancy_jobs_scheduled ON chancy_jobs (queue, scheduled_at)
	WHERE state IN ('pending', 'retrying') AND scheduled_at > created_at AND NOT replicated;
COMMENT ON INDEX chancy_jobs_scheduled IS 'When the next scheduled job of a queue is due';

-- Finished jobs by queue and age: what the supervisor prunes, queue by queue.
CREATE INDEX chancy_jobs_finished ON chancy_jobs (queue, completed_at)
	WHERE state IN ('succeeded', 'failed', 'cancelled') AND NOT replicated;
COMMENT ON INDEX chancy_jobs_finished IS 'What pruning deletes, queue by queue';

-- Jobs executors hold: what is given back when an executor goes.
CREATE INDEX chancy_jobs_claimed ON chancy_jobs (claim) WHERE claim IS NOT NULL;
COMMENT ON INDEX chancy_jobs_claimed IS 'The jobs executors hold';

-- Jobs parked by flow control, per key in dequeue order: what the supervisor
-- releases when the key frees a slot or its next token is due.
CREATE INDEX chancy_jobs_parked ON chancy_jobs (parked_on, priority DESC, id) WHERE claim = 0;
COMMENT ON INDEX chancy_jobs_parked IS 'Jobs parked by flow control, in release order';

-- At most one live job per role and unique key.  The predicate is repeated
-- by the ON CONFLICT clause of the push.
CREATE UNIQUE INDEX chancy_jobs_unique_key ON chancy_jobs (pushed_by, unique_key)
	WHERE unique_key IS NOT NULL AND state IN ('pending', 'retrying', 'running');
COMMENT ON INDEX chancy_jobs_unique_key IS 'At most one live job per role and unique key';

--------------------------------------------------------------------------
-- Security: only chancy's functions write; a role sees what it may use
--------------------------------------------------------------------------

REVOKE ALL ON chancy_jobs, chancy_job_definitions, chancy_queues FROM PUBLIC;
GRANT SELECT ON chancy_jobs, chancy_job_definitions, chancy_queues TO PUBLIC;

-- A role sees its own jobs, and those of the roles it is a member of.
ALTER TABLE chancy_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY chancy_jobs_own ON chancy_jobs FOR SELECT
	USING (pg_has_role(pushed_by, 'MEMBER'));

-- A role sees the definitions it can act for, and those a push of its own
-- would use whose function it may execute (their kwargs reach its jobs).
ALTER TABLE chancy_job_definitions ENABLE ROW LEVEL SECURITY;
CREATE POLICY chancy_job_definitions_usable ON chancy_job_definitions FOR SELECT
	USING (pg_has_role(defined_by, 'MEMBER')
		   OR (pg_has_role(defined_by, current_user, 'MEMBER')
			   AND (function_oid IS NULL OR has_function_privilege(function_oid, 'EXECUTE'))));

--------------------------------------------------------------------------
-- Triggers
--------------------------------------------------------------------------

CREATE FUNCTION chancy_definitions_changed()
	RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;
COMMENT ON FUNCTION chancy_definitions_changed() IS
	'Trigger: backends forget the definitions they cached';
CREATE TRIGGER chancy_definitions_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON chancy_job_definitions
	FOR EACH STATEMENT EXECUTE FUNCTION chancy_definitions_changed();

CREATE FUNCTION chancy_queues_changed()
	RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;
COMMENT ON FUNCTION chancy_queues_changed() IS
	'Trigger: backends forget the queues they cached; at commit the database''s supervisor and executors look again (refused while the extension needs an update)';
CREATE TRIGGER chancy_queues_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON chancy_queues
	FOR EACH STATEMENT EXECUTE FUNCTION chancy_queues_changed();
COMMENT ON POLICY chancy_jobs_own ON chancy_jobs IS
	'A role sees its own jobs, and those of the roles it is a member of';
COMMENT ON POLICY chancy_job_definitions_usable ON chancy_job_definitions IS
	'A role sees the definitions it can act for, and those a push of its own would use whose function it may execute';
COMMENT ON TRIGGER chancy_definitions_changed ON chancy_job_definitions IS
	'Cached definitions are forgotten after any change';
COMMENT ON TRIGGER chancy_queues_changed ON chancy_queues IS
	'Cached queues are forgotten after any change, and the workers look again at commit';

--------------------------------------------------------------------------
-- Functions: definitions
--------------------------------------------------------------------------

CREATE FUNCTION chancy_define_job(
	name text,
	function text DEFAULT NULL,
	queue text DEFAULT NULL,
	priority int DEFAULT NULL,
	max_attempts int DEFAULT NULL,
	kwargs jsonb DEFAULT NULL,
	time_limit interval DEFAULT NULL,
	memory_limit bigint DEFAULT NULL,
	limit_keys text[] DEFAULT NULL)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_define_job(text, text, text, int, int, jsonb, interval, bigint, text[]) IS
	'Define (or change) the current role''s defaults of a job; NULL arguments keep what the definition has, a limit of 0 (or limit_keys ''{}'') removes it; {name} in a limit key is filled from the kwargs at push';

CREATE FUNCTION chancy_undefine_job(name text)
	RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_undefine_job(text) IS
	'Remove the current role''s definition of a job; jobs already pushed keep running';

--------------------------------------------------------------------------
-- Functions: job values
--------------------------------------------------------------------------

CREATE FUNCTION chancy_job(name text)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE;
COMMENT ON FUNCTION chancy_job(text) IS
	'The job value a push of name by the current role starts from';

CREATE FUNCTION chancy_with_kwargs(job chancy_job, kwargs jsonb,
								   replace boolean DEFAULT false)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_with_kwargs(chancy_job, jsonb, boolean) IS
	'A copy of job with kwargs merged over its own (or replacing them)';

CREATE FUNCTION chancy_with_priority(job chancy_job, priority int)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_with_priority(chancy_job, int) IS
	'A copy of job with another priority (higher runs sooner)';

CREATE FUNCTION chancy_with_max_attempts(job chancy_job, max_attempts int)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_with_max_attempts(chancy_job, int) IS
	'A copy of job with another number of attempts';

CREATE FUNCTION chancy_with_scheduled_at(job chancy_job, scheduled_at timestamptz)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_with_scheduled_at(chancy_job, timestamptz) IS
	'A copy of job that does not start before then (NULL: as soon as possible)';

CREATE FUNCTION chancy_with_unique_key(job chancy_job, unique_key text)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_with_unique_key(chancy_job, text) IS
	'A copy of job with a unique key (NULL: none)';

CREATE FUNCTION chancy_with_queue(job chancy_job, queue text)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_with_queue(chancy_job, text) IS
	'A copy of job for another queue';

CREATE FUNCTION chancy_with_meta(job chancy_job, meta jsonb)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_with_meta(chancy_job, jsonb) IS
	'A copy of job with other metadata';

CREATE FUNCTION chancy_with_limits(job chancy_job, time_limit interval,
								   memory_limit bigint)
	RETURNS chancy_job
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_with_limits(chancy_job, interval, bigint) IS
	'A copy of job with both limits set (NULL: none of its own)';

--------------------------------------------------------------------------
-- Functions: pushes
--------------------------------------------------------------------------

CREATE FUNCTION chancy_push(job chancy_job)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'chancy_push_job' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_push(chancy_job) IS
	'Push a job value; its id (or that of the pushing role''s live job holding its unique key)';

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
	meta jsonb DEFAULT NULL,
	limit_keys text[] DEFAULT NULL)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'chancy_push_named' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_push(text, jsonb, text, int, int, timestamptz, text, interval, bigint, jsonb, text[]) IS
	'Push job name with its defaults; non-NULL arguments override them, kwargs merged over the defaults';

CREATE FUNCTION chancy_push_many(jobs chancy_job[])
	RETURNS bigint[]
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_push_many(chancy_job[]) IS
	'Push many job values in one statement; their ids in input order; a bad element rejects all';

--------------------------------------------------------------------------
-- Functions: queues (for the extension's owner, who may grant them)
--------------------------------------------------------------------------

CREATE FUNCTION chancy_executors_left()
	RETURNS int
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_executors_left() IS
	'Executors the queues of this database may have (those of chancy.max_executors other databases do not ask for); NULL if it is not served';

CREATE FUNCTION chancy_declare_queue(
	name text,
	concurrency int DEFAULT NULL,
	backoff_base interval DEFAULT NULL,
	backoff_factor float8 DEFAULT NULL,
	backoff_max interval DEFAULT NULL,
	time_limit interval DEFAULT NULL,
	executor text DEFAULT NULL,
	prune_after interval DEFAULT NULL,
	memory_limit bigint DEFAULT NULL,
	rate int DEFAULT NULL,
	per interval DEFAULT NULL)
	RETURNS chancy_queues
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	q @extschema@.chancy_queues;
	broken text;
	asked_before bigint;
	asked bigint;
	budget int;
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'queue name must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT coalesce(sum(c.concurrency), 0) INTO asked_before FROM @extschema@.chancy_queues c;
	-- the table's defaults for a new queue, then only what is given (an
	-- existing row is changed in place, see chancy_replace_made_queue)
	IF NOT EXISTS (SELECT FROM @extschema@.chancy_queues c
				   WHERE c.name = chancy_declare_queue.name) THEN
		INSERT INTO @extschema@.chancy_queues AS c (name) VALUES (name)
			ON CONFLICT ON CONSTRAINT chancy_queues_pkey DO NOTHING;
	END IF;
	UPDATE @extschema@.chancy_queues c SET
		concurrency = coalesce(chancy_declare_queue.concurrency, c.concurrency),
		backoff_base = coalesce(chancy_declare_queue.backoff_base, c.backoff_base),
		backoff_factor = coalesce(chancy_declare_queue.backoff_factor, c.backoff_factor),
		backoff_max = coalesce(chancy_declare_queue.backoff_max, c.backoff_max),
		time_limit = CASE WHEN chancy_declare_queue.time_limit IS NULL THEN c.time_limit
			ELSE nullif(chancy_declare_queue.time_limit, '0') END,
		executor = coalesce(chancy_declare_queue.executor, c.executor),
		prune_after = coalesce(chancy_declare_queue.prune_after, c.prune_after),
		memory_limit = CASE WHEN chancy_declare_queue.memory_limit IS NULL THEN c.memory_limit
			ELSE nullif(chancy_declare_queue.memory_limit, 0) END,
		from_config = from_config AND chancy_declare_queue.concurrency IS NULL,
		updated_at = now()
	 WHERE c.name = chancy_declare_queue.name
	RETURNING * INTO q;
	-- a queue that cannot get an executor would never run: ask for no more
	-- than chancy.max_executors leaves this database (when it is served)
	SELECT coalesce(sum(c.concurrency), 0) INTO asked FROM @extschema@.chancy_queues c;
	budget := @extschema@.chancy_executors_left();
	IF asked > asked_before AND asked > budget THEN
		RAISE EXCEPTION 'too few executors for the queues of this database'
			USING ERRCODE = 'configuration_limit_exceeded',
				  DETAIL = format('Its queues would need %s; %s are left to them of the %s of chancy.max_executors.',
								  asked, budget, current_setting('chancy.max_executors')),
				  HINT = 'Lower the concurrency of a queue, or raise chancy.max_executors (and max_worker_processes) and restart the server.';
	END IF;
	-- a rate of the queue is the limit of key queue:<name> (see chancy_limits)
	IF rate IS NOT NULL OR per IS NOT NULL THEN
		IF rate IS NULL THEN
			RAISE EXCEPTION 'queue "%" has an interval but no rate', name
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'per shapes a rate: pass rate => n too (0 removes the rate).';
		END IF;
		IF octet_length(name) > 57 THEN
			RAISE EXCEPTION 'queue name "%" is too long for a rate', name
				USING ERRCODE = 'name_too_long',
					  HINT = 'The rate of a queue is the limit key queue:<name>, of at most 63 bytes.';
		END IF;
		IF rate = 0 THEN
			UPDATE @extschema@.chancy_limits l SET rate = NULL, per = NULL, burst = 1,
				   updated_at = now()
			 WHERE l.key = 'queue:' || chancy_declare_queue.name;
			DELETE FROM @extschema@.chancy_limits l
			 WHERE l.key = 'queue:' || chancy_declare_queue.name AND l.concurrency IS NULL
			   AND l.rate IS NULL AND l.suspended_until IS NULL;
		ELSE
			INSERT INTO @extschema@.chancy_limits AS l (key, rate, per)
			VALUES ('queue:' || name, rate, coalesce(per, '1 second'))
			ON CONFLICT ON CONSTRAINT chancy_limits_pkey DO UPDATE
			   SET rate = excluded.rate, per = coalesce(chancy_declare_queue.per, l.per, '1 second'),
				   updated_at = now();
		END IF;
	END IF;
	RETURN q;
EXCEPTION WHEN check_violation THEN
	-- each rule is stated once, in the table; here it gets its message
	GET STACKED DIAGNOSTICS broken = CONSTRAINT_NAME;
	CASE broken
	WHEN 'chancy_queues_name_check' THEN
		RAISE EXCEPTION 'invalid queue name "%"', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A queue name is 1 to 63 bytes.';
	WHEN 'chancy_queues_concurrency_check' THEN
		RAISE EXCEPTION 'invalid concurrency % for queue "%"', concurrency, name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Concurrency is the number of executors of the queue, from 0 to 1000.';
	WHEN 'chancy_queues_time_limit_check' THEN
		RAISE EXCEPTION 'invalid time limit % for queue "%"', time_limit, name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A time limit is from 1 ms to 366 days, without negative parts; 0 removes it.';
	WHEN 'chancy_queues_memory_limit_check' THEN
		RAISE EXCEPTION 'invalid memory limit % for queue "%"', memory_limit, name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A memory limit is a positive number of bytes; 0 removes it.';
	WHEN 'chancy_queues_executor_check' THEN
		RAISE EXCEPTION 'invalid executor "%" for queue "%"', executor, name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use "process" (jobs run in the executor) or "isolated" (C jobs run in a forked child).';
	WHEN 'chancy_limits_rate_check' THEN
		RAISE EXCEPTION 'invalid rate % for queue "%"', rate, name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A rate is how many jobs of the queue start per interval, from 1 to 1000000; 0 removes it.';
	WHEN 'chancy_limits_per_check' THEN
		RAISE EXCEPTION 'invalid interval % for the rate of queue "%"', per, name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The interval of a rate is from 1 ms to 366 days, without negative parts.';
	WHEN 'chancy_queues_prune_after_check' THEN
		RAISE EXCEPTION 'invalid prune_after % for queue "%"', prune_after, name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Finished jobs are deleted once older than prune_after; it must not be negative.';
	ELSE
		RAISE EXCEPTION 'invalid retry backoff for queue "%"', name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('backoff_base %s, backoff_factor %s, backoff_max %s',
								  coalesce(backoff_base::text, 'unchanged'),
								  coalesce(backoff_factor::text, 'unchanged'),
								  coalesce(backoff_max::text, 'unchanged')),
				  HINT = 'backoff_base is from 1 ms to 366 days, backoff_factor at least 1, backoff_max from backoff_base to 366 days.';
	END CASE;
END $$;
COMMENT ON FUNCTION chancy_declare_queue(text, int, interval, float8, interval, interval, text, interval, bigint, int, interval) IS
	'Declare a queue, or change the settings given (NULL keeps one; 0 removes a limit); rate per interval is the limit key queue:<name>';

CREATE FUNCTION chancy_pause_queue(name text, resume_at timestamptz DEFAULT NULL)
	RETURNS chancy_queues
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	q @extschema@.chancy_queues;
BEGIN
	UPDATE @extschema@.chancy_queues c
	   SET paused_until = CASE WHEN resume_at IS NULL THEN 'infinity'
							   WHEN resume_at > now() THEN resume_at END,
		   updated_at = now()
	 WHERE c.name = chancy_pause_queue.name
	RETURNING * INTO q;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue "%" does not exist', name
			USING ERRCODE = 'undefined_object',
				  HINT = 'Declare it with chancy_declare_queue() or in chancy.queues.';
	END IF;
	RETURN q;
END $$;
COMMENT ON FUNCTION chancy_pause_queue(text, timestamptz) IS
	'Pause a queue until resume_at (NULL: until resumed; a time past resumes it): no job of it starts, not even one already claimed';

CREATE FUNCTION chancy_resume_queue(name text)
	RETURNS chancy_queues
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN @extschema@.chancy_pause_queue(name, '-infinity'::timestamptz);
COMMENT ON FUNCTION chancy_resume_queue(text) IS
	'Resume a paused queue';

CREATE FUNCTION chancy_delete_queue(name text, purge_jobs boolean DEFAULT false)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	live bigint;
BEGIN
	PERFORM FROM @extschema@.chancy_queues q WHERE q.name = chancy_delete_queue.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF purge_jobs THEN
		-- what an executor holds but has not started would go back to a
		-- queue that no longer exists: it is cancelled instead; so is a
		-- live workflow step, so that the steps after it do not wait for it
		PERFORM @extschema@.chancy_cancel(j.id) FROM @extschema@.chancy_jobs j
		 WHERE j.queue = chancy_delete_queue.name
		   AND ((j.claim IS NOT NULL AND j.state <> 'running')
				OR (j.workflow_id IS NOT NULL AND j.state IN ('pending', 'retrying')));
		DELETE FROM @extschema@.chancy_jobs j
		 WHERE j.queue = chancy_delete_queue.name AND j.claim IS NULL;
		-- the jobs per queue and state are counted again, without them
		PERFORM @extschema@.chancy_stats_rebuild();
	ELSE
		SELECT count(*) INTO live FROM @extschema@.chancy_jobs j
		 WHERE j.queue = chancy_delete_queue.name
		   AND j.state IN ('pending', 'retrying', 'running');
		IF live > 0 THEN
			RAISE EXCEPTION 'queue "%" has jobs that have not finished', name
				USING ERRCODE = 'object_in_use',
					  DETAIL = format('Jobs pending, retrying or running: %s.', live),
					  HINT = 'Wait for them, cancel them, or pass purge_jobs => true to delete them.';
		END IF;
	END IF;
	DELETE FROM @extschema@.chancy_queues q WHERE q.name = chancy_delete_queue.name;
	DELETE FROM @extschema@.chancy_limits l WHERE l.key = 'queue:' || chancy_delete_queue.name;
END $$;
COMMENT ON FUNCTION chancy_delete_queue(text, boolean) IS
	'Delete a queue; with purge_jobs, its jobs too: those an executor runs finish first, those it holds but has not started are cancelled';

REVOKE EXECUTE ON FUNCTION
	chancy_declare_queue(text, int, interval, float8, interval, interval, text, interval, bigint, int, interval),
	chancy_pause_queue(text, timestamptz), chancy_resume_queue(text),
	chancy_delete_queue(text, boolean)
	FROM PUBLIC;

--------------------------------------------------------------------------
-- Functions: control
--------------------------------------------------------------------------

CREATE FUNCTION chancy_cancel(job_id bigint)
	RETURNS chancy_jobs
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_cancel(bigint) IS
	'Cancel a job: one nobody holds at once, one an executor holds once this transaction commits (it ends cancelled unless it finished first)';

CREATE FUNCTION chancy_wait(job_id bigint, timeout interval DEFAULT NULL)
	RETURNS chancy_jobs
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_wait(bigint, interval) IS
	'Wait for a job to finish (succeeded, failed or cancelled) and return it; a time-out is SQLSTATE CH001';

CREATE FUNCTION chancy_current_job(OUT id bigint, OUT name text, OUT queue text,
								   OUT attempt int, OUT max_attempts int)
	RETURNS record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_current_job() IS
	'The job the calling executor runs (for SQL and PL/pgSQL jobs); NULL outside a job';

CREATE FUNCTION chancy_worker_info(OUT kind text, OUT database text, OUT queue text,
								   OUT pid int, OUT state text, OUT job_id bigint,
								   OUT jobs_done bigint, OUT started_at timestamptz,
								   OUT looked_at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_worker_info() IS
	'chancy''s processes: every database''s, with pids and jobs, for pg_read_all_stats members; else those of this database';

CREATE FUNCTION chancy_explain_claim(queue text)
	RETURNS SETOF text
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_explain_claim(text) IS
	'The plan executors claim a queue''s jobs with: a walk of chancy_jobs_ready, whatever the statistics say';

--------------------------------------------------------------------------
-- Functions: cron expressions
--------------------------------------------------------------------------

CREATE FUNCTION chancy_cron_next(cron text, after timestamptz, time_zone text DEFAULT 'UTC')
	RETURNS timestamptz
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION chancy_cron_next(text, timestamptz, text) IS
	'The first time after "after" that a cron expression fires in a time zone; an error if the expression is bad or never fires';

CREATE FUNCTION chancy_cron_preview(cron text, n int DEFAULT 10, time_zone text DEFAULT 'UTC')
	RETURNS SETOF timestamptz
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE STRICT PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION chancy_cron_preview(text, int, text) IS
	'The next n (at most 1000) times a cron expression fires in a time zone, after the transaction''s start';

--------------------------------------------------------------------------
-- Recurring jobs: schedules, fired by the database's supervisor
--------------------------------------------------------------------------

CREATE TABLE chancy_schedules (
	name text PRIMARY KEY
		CONSTRAINT chancy_schedules_name_check CHECK (name <> '' AND octet_length(name) < 64),
	cron text NOT NULL,
	time_zone text NOT NULL DEFAULT 'UTC',
	job chancy_job NOT NULL,
	enabled boolean NOT NULL DEFAULT true,
	catch_up interval
		CONSTRAINT chancy_schedules_catch_up_check
		CHECK (chancy_interval_ms(catch_up) BETWEEN 0 AND 31622400000),
	overlap boolean NOT NULL DEFAULT true,
	next_fire_at timestamptz,
	last_fire_at timestamptz,
	last_job_id bigint,
	fires bigint NOT NULL DEFAULT 0,
	skips bigint NOT NULL DEFAULT 0,
	owner regrole NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	function_oid oid,
	function_owner regrole,
	function_catalog bigint,
	function_digest bigint,
	replicated boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE chancy_schedules IS
	'Recurring jobs: each fire time of a schedule pushes its job once, as its owner.  Written only through chancy_schedule() and chancy_unschedule() (and by the supervisor as it fires)';
COMMENT ON COLUMN chancy_schedules.cron IS
	'When it fires: a cron expression of five fields (six with seconds), a macro such as @daily, @every <interval>, or "N seconds"; see chancy_cron_preview()';
COMMENT ON COLUMN chancy_schedules.time_zone IS
	'The time zone the cron expression reads wall-clock time in';
COMMENT ON COLUMN chancy_schedules.job IS
	'The job each fire pushes, with meta {"schedule": name, "fire_at": time} added';
COMMENT ON COLUMN chancy_schedules.catch_up IS
	'Fire times missed (chancy not running) within this window are pushed, oldest first, at most 1000; NULL: they are skipped';
COMMENT ON COLUMN chancy_schedules.overlap IS
	'false: a fire is skipped while the previous job of the schedule is pending, running or retrying';
COMMENT ON COLUMN chancy_schedules.next_fire_at IS
	'The next fire time (NULL while disabled)';
COMMENT ON COLUMN chancy_schedules.fires IS
	'Jobs pushed by the schedule (a push that failed counts: it leaves a failed job)';
COMMENT ON COLUMN chancy_schedules.skips IS
	'Fire times missed, or skipped because the previous job was live';
COMMENT ON COLUMN chancy_schedules.owner IS
	'The role that last created or replaced the schedule: its jobs are pushed as, and run as, this role';
COMMENT ON COLUMN chancy_schedules.function_oid IS
	'The job''s function when the schedule was made: a fire whose push would run another (one dropped and made again) fails';
COMMENT ON COLUMN chancy_schedules.function_owner IS
	'The owner of that function: in another cluster (a restored dump), the function of that signature is used only if it has this owner';
COMMENT ON COLUMN chancy_schedules.function_catalog IS
	'Which catalog function_oid belongs to (see chancy_jobs.function_catalog)';
COMMENT ON COLUMN chancy_schedules.function_digest IS
	'A digest of what the function does (see chancy_jobs.function_digest)';
COMMENT ON COLUMN chancy_schedules.replicated IS
	'Written here by logical replication: the schedule is the publisher''s, and fires here only after chancy_adopt_jobs()';

REVOKE ALL ON chancy_schedules FROM PUBLIC;
GRANT SELECT ON chancy_schedules TO PUBLIC;
ALTER TABLE chancy_schedules ENABLE ROW LEVEL SECURITY;
CREATE POLICY chancy_schedules_own ON chancy_schedules FOR SELECT
	USING (pg_has_role(owner, 'MEMBER'));
COMMENT ON POLICY chancy_schedules_own ON chancy_schedules IS
	'A role sees the schedules it may manage: its own, and those of the roles it is a member of';

CREATE FUNCTION chancy_schedules_changed()
	RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;
COMMENT ON FUNCTION chancy_schedules_changed() IS
	'Trigger: the database''s supervisor looks at the schedules again when the change commits';
CREATE TRIGGER chancy_schedules_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON chancy_schedules
	FOR EACH STATEMENT EXECUTE FUNCTION chancy_schedules_changed();
COMMENT ON TRIGGER chancy_schedules_changed ON chancy_schedules IS
	'The supervisor sleeps until the earliest next_fire_at: a change wakes it';

CREATE FUNCTION chancy_schedule(name text, cron text, job chancy_job,
								time_zone text DEFAULT 'UTC',
								catch_up interval DEFAULT NULL,
								overlap boolean DEFAULT true,
								enabled boolean DEFAULT true)
	RETURNS chancy_schedules
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_schedule(text, text, chancy_job, text, interval, boolean, boolean) IS
	'Create or replace a schedule: job is pushed at every fire time of cron in time_zone, as the calling role (checked now as its push would be)';

CREATE FUNCTION chancy_run_command(kwargs jsonb)
	RETURNS jsonb
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_run_command(jsonb) IS
	'Job function of command jobs, kwargs {"command": "VACUUM big", "search_path": ...} (a push records its search_path): the executor runs the command at top level as the job''s pusher, like a client''s query; an error when called in a statement';

CREATE FUNCTION chancy_schedule(name text, cron text, command text,
								time_zone text DEFAULT 'UTC',
								catch_up interval DEFAULT NULL,
								overlap boolean DEFAULT true,
								enabled boolean DEFAULT true)
	RETURNS chancy_schedules
	LANGUAGE sql VOLATILE
	-- no SET search_path: the job records the caller's (chancy_run_command)
	AS $$SELECT @extschema@.chancy_schedule(name, cron,
		ROW('chancy_run_command', '@extschema@.chancy_run_command(pg_catalog.jsonb)',
			'default', pg_catalog.jsonb_build_object('command', command), 0, 1,
			NULL, NULL, NULL, NULL, '{}', NULL)::@extschema@.chancy_job,
		time_zone, catch_up, overlap, enabled)$$;
COMMENT ON FUNCTION chancy_schedule(text, text, text, text, interval, boolean, boolean) IS
	'pg_cron''s form: schedule the SQL command, run at top level as the calling role with its current search_path (VACUUM works); the job is chancy_run_command''s, queue default';

CREATE FUNCTION chancy_unschedule(name text)
	RETURNS boolean
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_unschedule(text) IS
	'Remove a schedule (its owner, a member of it, or a superuser); the jobs it pushed stay';

CREATE VIEW chancy_schedule_status WITH (security_invoker = true) AS
SELECT s.name, s.cron, s.time_zone, s.enabled, s.next_fire_at, s.last_fire_at,
	   s.last_job_id, j.state AS last_job_state, s.fires, s.skips, s.owner
  FROM chancy_schedules s
  LEFT JOIN chancy_jobs j ON j.id = s.last_job_id;
COMMENT ON VIEW chancy_schedule_status IS
	'The schedules the current role may manage: when each fires next and last, its last job and that job''s state, how often it fired and skipped';
GRANT SELECT ON chancy_schedule_status TO PUBLIC;

--------------------------------------------------------------------------
-- Views
--------------------------------------------------------------------------

CREATE VIEW chancy_workers WITH (security_invoker = true) AS
	SELECT * FROM chancy_worker_info();
COMMENT ON VIEW chancy_workers IS
	'chancy''s processes: launcher, supervisors, executors';
GRANT SELECT ON chancy_workers TO PUBLIC;


--------------------------------------------------------------------------
-- pg_dump: the users' rows, not those chancy (or an extension's script)
-- makes again at CREATE EXTENSION; a restored row replaces such a one
--------------------------------------------------------------------------

COMMENT ON COLUMN chancy_job_definitions.from_extension IS
	'Written by the script of an extension (CREATE EXTENSION writes it again): pg_dump leaves it out';

CREATE FUNCTION chancy_replace_made_row()
	RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;
COMMENT ON FUNCTION chancy_replace_made_row() IS
	'Trigger: a queue or definition inserted (by pg_restore) replaces the one chancy.queues or an extension''s script made; one written by logical replication replaces any';
CREATE TRIGGER chancy_replace_made_queue
	BEFORE INSERT ON chancy_queues
	FOR EACH ROW EXECUTE FUNCTION chancy_replace_made_row();
COMMENT ON TRIGGER chancy_replace_made_queue ON chancy_queues IS
	'A restored queue replaces the row chancy.queues made (chancy_declare_queue() changes rows in place)';
CREATE TRIGGER chancy_replace_made_definition
	BEFORE INSERT ON chancy_job_definitions
	FOR EACH ROW EXECUTE FUNCTION chancy_replace_made_row();
COMMENT ON TRIGGER chancy_replace_made_definition ON chancy_job_definitions IS
	'A restored (or redefined) definition replaces the one an extension''s script made';

SELECT pg_catalog.pg_extension_config_dump('chancy_queues', 'WHERE NOT from_config');
-- rows of a role dropped since would come back as another role's (the
-- role is dumped as its bare OID): they are left out
SELECT pg_catalog.pg_extension_config_dump('chancy_job_definitions',
	$$WHERE NOT from_extension AND defined_by::oid IN (SELECT oid FROM pg_catalog.pg_roles)
	   AND (function_owner IS NULL OR function_owner::oid IN (SELECT oid FROM pg_catalog.pg_roles))$$);
SELECT pg_catalog.pg_extension_config_dump('chancy_jobs',
	$$WHERE (state IN ('pending', 'running', 'retrying')
		OR current_setting('chancy.dump_finished_jobs', true) IS DISTINCT FROM 'off')
	   AND pushed_by::oid IN (SELECT oid FROM pg_catalog.pg_roles)
	   AND (function_owner IS NULL OR function_owner::oid IN (SELECT oid FROM pg_catalog.pg_roles))$$);
SELECT pg_catalog.pg_extension_config_dump('chancy_jobs_id_seq', '');
-- (a schedule's too)
SELECT pg_catalog.pg_extension_config_dump('chancy_schedules',
	$$WHERE owner::oid IN (SELECT oid FROM pg_catalog.pg_roles)
	   AND (function_owner IS NULL OR function_owner::oid IN (SELECT oid FROM pg_catalog.pg_roles))$$);

--------------------------------------------------------------------------
-- Logical replication: a subscriber keeps the publisher's jobs, and runs
-- none of them
--------------------------------------------------------------------------

CREATE FUNCTION chancy_mark_replicated()
	RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;
COMMENT ON FUNCTION chancy_mark_replicated() IS
	'Trigger: a job written by logical replication is marked replicated';
CREATE TRIGGER chancy_mark_replicated
	BEFORE INSERT OR UPDATE ON chancy_jobs
	FOR EACH ROW EXECUTE FUNCTION chancy_mark_replicated();
COMMENT ON TRIGGER chancy_mark_replicated ON chancy_jobs IS
	'Jobs written by logical replication are the publisher''s: no executor here runs them';
-- it fires only where logical replication applies changes
ALTER TABLE chancy_jobs ENABLE REPLICA TRIGGER chancy_mark_replicated;
-- nor a schedule it receives (until chancy_adopt_jobs())
CREATE TRIGGER chancy_mark_replicated
	BEFORE INSERT OR UPDATE ON chancy_schedules
	FOR EACH ROW EXECUTE FUNCTION chancy_mark_replicated();
ALTER TABLE chancy_schedules ENABLE REPLICA TRIGGER chancy_mark_replicated;
COMMENT ON TRIGGER chancy_mark_replicated ON chancy_schedules IS
	'A schedule written by logical replication is marked replicated: it fires on the publisher';
-- the queues and definitions a subscriber receives are cached and acted on
-- like its own
ALTER TABLE chancy_queues ENABLE ALWAYS TRIGGER chancy_replace_made_queue;
ALTER TABLE chancy_queues ENABLE ALWAYS TRIGGER chancy_queues_changed;
ALTER TABLE chancy_job_definitions ENABLE ALWAYS TRIGGER chancy_replace_made_definition;
ALTER TABLE chancy_job_definitions ENABLE ALWAYS TRIGGER chancy_definitions_changed;

CREATE FUNCTION chancy_stats_rebuild()
	RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_stats_rebuild() IS
	'Have the supervisor count the jobs per queue and state from chancy_jobs again (after a restore or a change made by hand); chancy_queue_stats counts the table meanwhile';
REVOKE EXECUTE ON FUNCTION chancy_stats_rebuild() FROM PUBLIC;

CREATE FUNCTION chancy_adopt_jobs()
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	adopted bigint;
BEGIN
	-- the executors look at their queues when this commits (the queues'
	-- statement trigger wakes them)
	UPDATE @extschema@.chancy_queues SET name = name WHERE false;
	-- this database's pushes and workflows get ids above those it received
	PERFORM pg_catalog.setval(pg_catalog.pg_get_serial_sequence('@extschema@.chancy_jobs', 'id'),
							  greatest(max(id), (SELECT last_value FROM @extschema@.chancy_jobs_id_seq)))
	   FROM @extschema@.chancy_jobs;
	PERFORM pg_catalog.setval(pg_catalog.pg_get_serial_sequence('@extschema@.chancy_workflows', 'id'),
							  greatest(max(id), (SELECT last_value FROM @extschema@.chancy_workflows_id_seq)))
	   FROM @extschema@.chancy_workflows;
	-- and its schedules fire here from now on
	UPDATE @extschema@.chancy_schedules SET replicated = false WHERE replicated;
	-- the jobs per queue and state are counted again, with these
	PERFORM @extschema@.chancy_stats_rebuild();
	-- (a workflow step waiting for its dependencies goes on waiting)
	UPDATE @extschema@.chancy_jobs SET replicated = false, parked_on = NULL,
		claim = CASE WHEN state = 'pending' AND deps_left > 0 THEN 0 END,
		state = CASE WHEN state = 'running' THEN 'retrying' ELSE state END
	 WHERE replicated;
	GET DIAGNOSTICS adopted = ROW_COUNT;
	RETURN adopted;
END $$;
COMMENT ON FUNCTION chancy_adopt_jobs() IS
	'Make the jobs and schedules logical replication wrote here this database''s own, to run and fire them here (after a switch-over); a job that was running runs again, and new pushes get ids above them';
REVOKE EXECUTE ON FUNCTION chancy_adopt_jobs() FROM PUBLIC;

--------------------------------------------------------------------------
-- Data: the queue pushes use when they name none
--------------------------------------------------------------------------

INSERT INTO chancy_queues (name, concurrency, from_config) VALUES ('default', 2, true);

--------------------------------------------------------------------------
-- Flow control: limits on named keys that jobs hold (src/flow.c)
--------------------------------------------------------------------------

CREATE TABLE chancy_limits (
	key text PRIMARY KEY
		CONSTRAINT chancy_limits_key_check
		CHECK (key <> '' AND octet_length(key) < 64
			   AND strpos(pg_catalog.left(key, -1), '*') = 0),
	concurrency int
		CONSTRAINT chancy_limits_concurrency_check CHECK (concurrency BETWEEN 0 AND 1000000),
	rate int
		CONSTRAINT chancy_limits_rate_check CHECK (rate BETWEEN 1 AND 1000000),
	per interval
		CONSTRAINT chancy_limits_per_check
		CHECK (chancy_interval_ms(per) BETWEEN 1 AND 31622400000),
	burst int NOT NULL DEFAULT 1
		CONSTRAINT chancy_limits_burst_check CHECK (burst BETWEEN 1 AND 1000000),
	suspended_until timestamptz,
	updated_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT chancy_limits_rate_per_check CHECK ((rate IS NULL) = (per IS NULL)),
	-- what a full bucket spans, at most 1000 years (the arithmetic in
	-- shared memory is in microseconds)
	CONSTRAINT chancy_limits_window_check
		CHECK (chancy_interval_ms(per)::numeric * burst <= 31557600000000)
);
COMMENT ON TABLE chancy_limits IS
	'Limits of the keys jobs hold (chancy_jobs.limit_keys): a job starts only when each of its keys has a free concurrency slot and a token.  A key ending in * is the default of every key it begins; a row that sets neither concurrency nor rate (one chancy_suspend_key() made) only suspends, and the key keeps its pattern''s limits.  Written through chancy_set_limit(), chancy_drop_limit() and chancy_suspend_key()';
COMMENT ON COLUMN chancy_limits.key IS
	'A key (customer:42), or a pattern (customer:*) that keys beginning with its text follow unless they have a row of their own (the longest pattern wins)';
COMMENT ON COLUMN chancy_limits.concurrency IS
	'At most this many jobs holding the key run at once (NULL: no such limit; 0: none starts)';
COMMENT ON COLUMN chancy_limits.rate IS
	'At most rate jobs holding the key start per interval "per", evenly spaced (GCRA; NULL: no such limit)';
COMMENT ON COLUMN chancy_limits.burst IS
	'How many starts the rate lets through at once after a quiet spell';
COMMENT ON COLUMN chancy_limits.suspended_until IS
	'No job holding the key (or, for a pattern, a key it begins) starts before then (chancy_suspend_key())';

REVOKE ALL ON chancy_limits FROM PUBLIC;

CREATE FUNCTION chancy_limits_changed()
	RETURNS trigger
	AS 'MODULE_PATHNAME' LANGUAGE C;
COMMENT ON FUNCTION chancy_limits_changed() IS
	'Trigger: at commit, executors read the limits again and the supervisor releases the jobs a raised limit lets start';
CREATE TRIGGER chancy_limits_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON chancy_limits
	FOR EACH STATEMENT EXECUTE FUNCTION chancy_limits_changed();
COMMENT ON TRIGGER chancy_limits_changed ON chancy_limits IS
	'A change to the limits applies once it commits';
ALTER TABLE chancy_limits ENABLE ALWAYS TRIGGER chancy_limits_changed;

CREATE FUNCTION chancy_set_limit(
	key text,
	concurrency int DEFAULT NULL,
	rate int DEFAULT NULL,
	per interval DEFAULT NULL,
	burst int DEFAULT NULL)
	RETURNS chancy_limits
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l @extschema@.chancy_limits;
	broken text;
BEGIN
	IF key IS NULL THEN
		RAISE EXCEPTION 'limit key must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF concurrency IS NULL AND rate IS NULL THEN
		RAISE EXCEPTION 'limit of key "%" sets neither a concurrency nor a rate', key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass concurrency => n, rate => n (per => interval), or both; chancy_drop_limit() removes a limit.';
	END IF;
	IF rate IS NULL AND (per IS NOT NULL OR burst IS NOT NULL) THEN
		RAISE EXCEPTION 'limit of key "%" has % but no rate', key,
			CASE WHEN per IS NOT NULL THEN 'an interval' ELSE 'a burst' END
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'per and burst shape a rate: pass rate => n too.';
	END IF;
	INSERT INTO @extschema@.chancy_limits AS c (key, concurrency, rate, per, burst)
	VALUES (key, concurrency, rate,
			CASE WHEN rate IS NOT NULL THEN coalesce(per, '1 second') END,
			coalesce(burst, 1))
	ON CONFLICT ON CONSTRAINT chancy_limits_pkey DO UPDATE
	   SET concurrency = excluded.concurrency, rate = excluded.rate, per = excluded.per,
		   burst = excluded.burst, updated_at = now()
	RETURNING * INTO l;
	RETURN l;
EXCEPTION WHEN check_violation THEN
	GET STACKED DIAGNOSTICS broken = CONSTRAINT_NAME;
	CASE broken
	WHEN 'chancy_limits_key_check' THEN
		RAISE EXCEPTION 'invalid limit key "%"', key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A key is 1 to 63 bytes; a * may only end it (customer:* is the default of every customer:<id>).';
	WHEN 'chancy_limits_concurrency_check' THEN
		RAISE EXCEPTION 'invalid concurrency % for limit key "%"', concurrency, key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Concurrency is how many jobs holding the key run at once, from 0 to 1000000.';
	WHEN 'chancy_limits_rate_check' THEN
		RAISE EXCEPTION 'invalid rate % for limit key "%"', rate, key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A rate is how many jobs holding the key start per interval, from 1 to 1000000.';
	WHEN 'chancy_limits_per_check' THEN
		RAISE EXCEPTION 'invalid interval % for limit key "%"', per, key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The interval of a rate is from 1 ms to 366 days, without negative parts.';
	WHEN 'chancy_limits_window_check' THEN
		RAISE EXCEPTION 'burst % of limit key "%" spans more than 1000 years of its rate', burst, key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'burst times per is at most 1000 years.';
	ELSE
		RAISE EXCEPTION 'invalid burst % for limit key "%"', burst, key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A burst is how many starts a rate lets through at once, from 1 to 1000000.';
	END CASE;
END $$;
COMMENT ON FUNCTION chancy_set_limit(text, int, int, interval, int) IS
	'Set the limits of a key or pattern (customer:*), replacing what it had: concurrency (jobs at once), rate per interval (default 1 second) with a burst (default 1)';

CREATE FUNCTION chancy_drop_limit(key text)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF key IS NULL THEN
		RAISE EXCEPTION 'limit key must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	DELETE FROM @extschema@.chancy_limits l WHERE l.key = chancy_drop_limit.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'limit key "%" does not exist', key
			USING ERRCODE = 'undefined_object',
				  HINT = 'The keys with limits are listed in chancy_limits.';
	END IF;
END $$;
COMMENT ON FUNCTION chancy_drop_limit(text) IS
	'Remove the limits of a key or pattern: its jobs follow a pattern that matches it, or none';

REVOKE EXECUTE ON FUNCTION chancy_set_limit(text, int, int, interval, int),
	chancy_drop_limit(text) FROM PUBLIC;

CREATE FUNCTION chancy_suspend_key(key text, until timestamptz)
	RETURNS chancy_limits
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l @extschema@.chancy_limits;
BEGIN
	IF key IS NULL THEN
		RAISE EXCEPTION 'limit key must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT isfinite(until) THEN
		RAISE EXCEPTION 'a key cannot be suspended until %', until
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a finite time; NULL ends a suspension.';
	END IF;
	INSERT INTO @extschema@.chancy_limits AS c (key, suspended_until)
	VALUES (key, until)
	ON CONFLICT ON CONSTRAINT chancy_limits_pkey DO UPDATE
	   SET suspended_until = excluded.suspended_until, updated_at = now()
	RETURNING * INTO l;
	-- a row left with neither a limit nor a suspension goes
	DELETE FROM @extschema@.chancy_limits c
	 WHERE c.key = chancy_suspend_key.key AND c.concurrency IS NULL AND c.rate IS NULL
	   AND c.suspended_until IS NULL;
	RETURN l;
EXCEPTION WHEN check_violation THEN
	RAISE EXCEPTION 'invalid limit key "%"', key
		USING ERRCODE = 'invalid_parameter_value',
			  HINT = 'A key is 1 to 63 bytes; a * may only end it (customer:* is the default of every customer:<id>).';
END $$;
COMMENT ON FUNCTION chancy_suspend_key(text, timestamptz) IS
	'No job holding the key (or a key the pattern begins) starts before until (NULL: resume now); its limits are kept';

CREATE FUNCTION chancy_limit_acquire(key text, cost int DEFAULT 1, timeout interval DEFAULT NULL)
	RETURNS boolean
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_limit_acquire(text, int, interval) IS
	'Take cost tokens of the key''s rate for work that is not a job, waiting up to timeout (NULL: as long as needed); false if the time ran out.  Tokens are not given back if the transaction rolls back';

REVOKE EXECUTE ON FUNCTION chancy_suspend_key(text, timestamptz),
	chancy_limit_acquire(text, int, interval) FROM PUBLIC;

CREATE FUNCTION chancy_with_limit_keys(job chancy_job, limit_keys text[])
	RETURNS chancy_job
	AS 'MODULE_PATHNAME', 'chancy_with_attr' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_with_limit_keys(chancy_job, text[]) IS
	'A copy of job that holds these limit keys while it runs (NULL: none)';

CREATE FUNCTION chancy_limit_state(
	OUT key text, OUT concurrency int, OUT running int, OUT rate int, OUT per interval,
	OUT burst int, OUT tokens int, OUT next_token_at timestamptz,
	OUT suspended_until timestamptz, OUT throttled bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_limit_state() IS
	'The limited keys of this database that shared memory holds now, with their counters';
REVOKE EXECUTE ON FUNCTION chancy_limit_state() FROM PUBLIC;

CREATE VIEW chancy_limit_stats AS
SELECT coalesce(s.key, p.key) AS key, s.concurrency, coalesce(s.running, 0) AS running,
	   coalesce(p.parked, 0) AS parked, s.rate, s.per, s.burst, s.tokens, s.next_token_at,
	   s.suspended_until, coalesce(s.throttled, 0) AS throttled,
	   now() - p.oldest AS oldest_parked_age
  FROM chancy_limit_state() s
  FULL JOIN (SELECT j.parked_on AS key, count(*) AS parked, min(j.created_at) AS oldest
			   FROM chancy_jobs j WHERE j.claim = 0 AND j.parked_on IS NOT NULL
				AND NOT j.replicated
			  GROUP BY j.parked_on) p ON p.key = s.key;
COMMENT ON VIEW chancy_limit_stats IS
	'Per limited key: its limits, jobs running and parked, tokens now, when the next is due, jobs throttled since the key was loaded, and the age of the oldest parked job';
REVOKE ALL ON chancy_limit_stats FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('chancy_limits', '');

--------------------------------------------------------------------------
-- Observability: what each job cost, counters in shared memory, metrics,
-- health, and a per-minute history (src/stats.c)
--------------------------------------------------------------------------

CREATE FUNCTION chancy_stats(
	OUT database text, OUT role regrole, OUT queue text, OUT job text,
	OUT pushed bigint, OUT started bigint, OUT succeeded bigint, OUT failed bigint,
	OUT retried bigint, OUT cancelled bigint, OUT crashed bigint,
	OUT wait_p50_ms float8, OUT wait_p95_ms float8, OUT wait_p99_ms float8,
	OUT run_p50_ms float8, OUT run_p95_ms float8, OUT run_p99_ms float8,
	OUT run_time_ms float8, OUT cpu_time_ms float8, OUT stats_since timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_stats() IS
	'Counters and percentiles per database, role, queue and job name since the server started (or chancy_stats_reset()): the caller''s own roles, every role for members of pg_read_all_stats';

CREATE VIEW chancy_stats WITH (security_invoker = true) AS
	SELECT * FROM chancy_stats();
COMMENT ON VIEW chancy_stats IS
	'Jobs pushed, started, succeeded, failed (for good), retried, cancelled and crashed, with percentiles of wait (due to start) and run time in ms, per database, role, queue and job name; a role sees its own, members of pg_read_all_stats all';
GRANT SELECT ON chancy_stats TO PUBLIC;

CREATE FUNCTION chancy_stats_reset()
	RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_stats_reset() IS
	'Zero this database''s counters and histograms; the jobs per state, which follow the table, stay';
REVOKE EXECUTE ON FUNCTION chancy_stats_reset() FROM PUBLIC;

CREATE FUNCTION chancy_queue_counts(
	OUT queue text, OUT pending bigint, OUT running bigint, OUT retrying bigint,
	OUT succeeded bigint, OUT failed bigint, OUT cancelled bigint,
	OUT scheduled bigint, OUT oldest_due timestamptz, OUT from_gauges boolean)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_queue_counts() IS
	'The caller''s jobs per queue and state, from the gauges in shared memory (whatever the table''s size) while they are valid; with the scheduled ones and the due time of the oldest waiting one';

CREATE VIEW chancy_queue_stats WITH (security_invoker = true) AS
SELECT coalesce(q.name, s.queue) AS queue,
	   coalesce(s.pending, 0) AS pending, coalesce(s.running, 0) AS running,
	   coalesce(s.retrying, 0) AS retrying, coalesce(s.succeeded, 0) AS succeeded,
	   coalesce(s.failed, 0) AS failed, coalesce(s.cancelled, 0) AS cancelled,
	   q.concurrency,
	   CASE WHEN q.paused_until > now() THEN q.paused_until END AS paused_until,
	   coalesce(w.executors, 0) AS executors,
	   coalesce(s.scheduled, 0) AS scheduled,
	   CASE WHEN s.oldest_due IS NOT NULL THEN greatest(now() - s.oldest_due, interval '0')
	   END AS oldest_pending_age
  FROM chancy_queue_counts() s
  FULL JOIN chancy_queues q ON q.name = s.queue
  LEFT JOIN (SELECT i.queue, count(*) AS executors
			   FROM chancy_worker_info() i
			  WHERE i.kind = 'executor' AND i.database = current_database()
				AND i.state IN ('starting', 'idle', 'busy', 'running', 'paused')
			  GROUP BY i.queue) w ON w.queue = coalesce(q.name, s.queue);
COMMENT ON VIEW chancy_queue_stats IS
	'Jobs per queue and state (those the caller may see; pending and retrying include scheduled ones), with the queue''s concurrency, pause, executors running it, jobs scheduled for later and how long the oldest due job has waited';
GRANT SELECT ON chancy_queue_stats TO PUBLIC;

CREATE FUNCTION chancy_metrics(OUT name text, OUT type text, OUT labels jsonb,
							   OUT value float8)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_metrics() IS
	'chancy''s metrics as rows: what chancy_metrics_prometheus() prints';

CREATE FUNCTION chancy_metrics_prometheus()
	RETURNS text
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_metrics_prometheus() IS
	'chancy''s metrics in Prometheus'' text exposition format: chancy_jobs_total{outcome}, chancy_job_wait_seconds, chancy_job_run_seconds, chancy_queue_jobs{state}, ...';

CREATE FUNCTION chancy_health(pending_warn interval DEFAULT '5 minutes',
							  pending_fail interval DEFAULT '1 hour',
							  OUT "check" text, OUT status text, OUT message text)
	RETURNS SETOF record
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
	-- chancy's processes
	SELECT 'launcher',
		   CASE WHEN count(*) > 0 THEN 'ok' ELSE 'fail' END,
		   CASE WHEN count(*) > 0 THEN 'the launcher runs'
				ELSE 'no launcher: is chancy in shared_preload_libraries?' END
	  FROM @extschema@.chancy_worker_info() WHERE kind = 'launcher'
	UNION ALL
	SELECT 'supervisor',
		   CASE WHEN count(*) > 0 THEN 'ok' ELSE 'fail' END,
		   CASE WHEN count(*) > 0 THEN 'the supervisor of this database runs'
				ELSE 'no supervisor runs here: is this database in chancy.database?' END
	  FROM @extschema@.chancy_worker_info()
	 WHERE kind = 'supervisor' AND database = current_database()
	UNION ALL
	-- each queue: executors as configured, its oldest due job
	(SELECT 'queue ' || s.queue,
		   CASE WHEN s.oldest_pending_age >= pending_fail THEN 'fail'
				WHEN s.oldest_pending_age >= pending_warn THEN 'warn'
				WHEN s.paused_until IS NULL AND s.executors < s.concurrency THEN 'warn'
				ELSE 'ok' END,
		   concat_ws('; ',
					 CASE WHEN s.oldest_pending_age >= pending_warn THEN
						  format('its oldest due job has waited %s', date_trunc('second', s.oldest_pending_age)) END,
					 CASE WHEN s.paused_until IS NOT NULL THEN format('paused until %s', s.paused_until) END,
					 CASE WHEN s.paused_until IS NULL AND s.executors < s.concurrency THEN
						  format('%s of %s executors run', s.executors, s.concurrency) END,
					 format('%s pending, %s running', s.pending + s.retrying, s.running))
	  FROM @extschema@.chancy_queue_stats s
	 ORDER BY s.queue)
	UNION ALL
	-- jobs past their time limit (stopped within a second: more is a fault)
	SELECT 'time limits',
		   CASE WHEN count(*) = 0 THEN 'ok' ELSE 'warn' END,
		   CASE WHEN count(*) = 0 THEN 'no running job is past its time limit'
				ELSE format('%s running jobs are past their time limit (job %s first)', count(*), min(j.id)) END
	  FROM @extschema@.chancy_jobs j
	  LEFT JOIN @extschema@.chancy_queues q ON q.name = j.queue
	 WHERE j.claim IS NOT NULL AND j.claim <> 0 AND j.state = 'running'
	   AND j.started_at + coalesce(j.time_limit, q.time_limit,
								   (SELECT nullif(setting::int, 0) * interval '1 ms' FROM pg_settings
									 WHERE name = 'chancy.time_limit'))
		   + interval '5 seconds' < now()
	UNION ALL
	-- schedules that should have fired
	SELECT 'schedules',
		   CASE WHEN count(*) = 0 THEN 'ok' ELSE 'warn' END,
		   CASE WHEN count(*) = 0 THEN 'no schedule is overdue'
				ELSE format('%s schedules are overdue by more than a minute (%s first)', count(*), min(s.name)) END
	  FROM @extschema@.chancy_schedules s
	 WHERE s.enabled AND NOT s.replicated AND s.next_fire_at < now() - interval '1 minute'
	UNION ALL
	-- the library and the SQL objects
	SELECT 'version',
		   CASE WHEN e.extversion = @extschema@.chancy_library_version() THEN 'ok' ELSE 'fail' END,
		   format('library %s, SQL objects %s', @extschema@.chancy_library_version(), e.extversion)
	  FROM pg_extension e WHERE e.extname = 'chancy'
	UNION ALL
	SELECT 'statistics',
		   CASE WHEN bool_and(from_gauges) IS NOT FALSE THEN 'ok' ELSE 'warn' END,
		   CASE WHEN bool_and(from_gauges) IS NOT FALSE
				THEN 'jobs per queue and state come from shared memory'
				ELSE 'jobs per queue and state are counted from the table until the supervisor has counted them (chancy_stats_rebuild())' END
	  FROM @extschema@.chancy_queue_counts();
$$;
COMMENT ON FUNCTION chancy_health(interval, interval) IS
	'One row per check (launcher, supervisor, each queue, time limits, schedules, version, statistics) with status ok, warn or fail and a message; a queue warns once its oldest due job waited pending_warn, fails at pending_fail';

CREATE FUNCTION chancy_library_version()
	RETURNS text
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION chancy_library_version() IS
	'The version of chancy''s SQL objects the loaded library was built for';

-- One row per minute, role, queue and job name, written by the supervisor;
-- a partition per day (of 9, used in turn: the 7 days retention keeps at
-- most, today, and tomorrow's, emptied ahead), emptied whole by TRUNCATE
-- once past chancy.stats_retention: no dead rows.
CREATE TABLE chancy_stats_history (
	minute timestamptz NOT NULL,
	day smallint NOT NULL,
	role regrole NOT NULL,
	queue text NOT NULL,
	job text NOT NULL,
	pushed bigint NOT NULL,
	started bigint NOT NULL,
	succeeded bigint NOT NULL,
	failed bigint NOT NULL,
	retried bigint NOT NULL,
	cancelled bigint NOT NULL,
	crashed bigint NOT NULL,
	wait_p50_ms float8,
	wait_p95_ms float8,
	wait_p99_ms float8,
	run_p50_ms float8,
	run_p95_ms float8,
	run_p99_ms float8,
	cpu_ms float8 NOT NULL
) PARTITION BY LIST (day);
COMMENT ON TABLE chancy_stats_history IS
	'Per minute, role, queue and job name: jobs pushed, started and how they ended, percentiles of wait and run time (ms) and CPU time (ms); kept for chancy.stats_retention';
COMMENT ON COLUMN chancy_stats_history.day IS
	'Days since 2000-01-01 modulo 9: the partition';
DO $$
BEGIN
	FOR d IN 0..8 LOOP
		EXECUTE format('CREATE TABLE @extschema@.%I PARTITION OF @extschema@.chancy_stats_history'
					   ' FOR VALUES IN (%s)', 'chancy_stats_history_' || d, d);
		EXECUTE format('CREATE INDEX ON @extschema@.%I (minute)', 'chancy_stats_history_' || d);
	END LOOP;
END $$;
REVOKE ALL ON chancy_stats_history FROM PUBLIC;
GRANT SELECT ON chancy_stats_history TO PUBLIC;
ALTER TABLE chancy_stats_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY chancy_stats_history_own ON chancy_stats_history FOR SELECT
	USING (pg_has_role(role, 'MEMBER') OR pg_has_role('pg_read_all_stats', 'USAGE'));
COMMENT ON POLICY chancy_stats_history_own ON chancy_stats_history IS
	'A role sees the history of its own jobs (and those of the roles it is a member of); members of pg_read_all_stats see all';

--------------------------------------------------------------------------
-- Workflows: jobs that depend on jobs (src/workflow.c)
--------------------------------------------------------------------------

CREATE TYPE chancy_step AS (
	step text,
	job chancy_job,
	depends_on text[],
	on_dep_failure text
);
COMMENT ON TYPE chancy_step IS
	'A step of a workflow: its name, its job, the steps it depends on, and what it does when one of them fails (cancel, run or wait)';

CREATE FUNCTION chancy_step(step text, job chancy_job, depends_on text[] DEFAULT '{}',
							on_dep_failure text DEFAULT 'cancel')
	RETURNS chancy_step
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	RETURN ROW(step, job, depends_on, on_dep_failure)::@extschema@.chancy_step;
COMMENT ON FUNCTION chancy_step(text, chancy_job, text[], text) IS
	'A workflow step, for chancy_push_workflow(); on_dep_failure: cancel (the step is cancelled when a dependency fails), run (it runs anyway) or wait (it waits for a retry of the workflow)';

CREATE TABLE chancy_workflows (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name text NOT NULL,
	state text NOT NULL DEFAULT 'running',
	pushed_by regrole NOT NULL,
	steps_total int NOT NULL,
	steps_done int NOT NULL DEFAULT 0,
	steps_failed int NOT NULL DEFAULT 0,
	steps_waiting int NOT NULL DEFAULT 0,
	cancelled_by regrole,
	created_at timestamptz NOT NULL DEFAULT now(),
	completed_at timestamptz
);
COMMENT ON TABLE chancy_workflows IS
	'Workflows: their state and step counters, kept by the transactions that end their steps.  Written only by chancy''s functions and workers';
COMMENT ON COLUMN chancy_workflows.state IS
	'running; then succeeded (every step succeeded), failed (a step failed, or steps wait on a failed one) or cancelled (chancy_cancel_workflow)';
COMMENT ON COLUMN chancy_workflows.steps_done IS
	'Steps succeeded, failed or cancelled';
COMMENT ON COLUMN chancy_workflows.steps_failed IS
	'Steps failed or cancelled';
COMMENT ON COLUMN chancy_workflows.steps_waiting IS
	'Steps waiting for their dependencies: the workflow has finished when every step is done or waiting';
CREATE INDEX chancy_workflows_finished ON chancy_workflows (completed_at)
	WHERE completed_at IS NOT NULL;
COMMENT ON INDEX chancy_workflows_finished IS 'What pruning deletes, oldest first';

-- An edge: job child waits for job parent.
CREATE TABLE chancy_workflow_deps (
	parent bigint NOT NULL,
	child bigint NOT NULL,
	workflow_id bigint NOT NULL,
	PRIMARY KEY (parent, child)
);
COMMENT ON TABLE chancy_workflow_deps IS
	'The dependencies of workflow steps: job child starts when job parent has succeeded (or failed, for a child that runs anyway)';
CREATE INDEX chancy_workflow_deps_child ON chancy_workflow_deps (child);
COMMENT ON INDEX chancy_workflow_deps_child IS 'A step''s dependencies (its parents'' results)';

ALTER TABLE chancy_jobs
	ADD COLUMN workflow_id bigint,
	ADD COLUMN step text,
	ADD COLUMN deps_left int,
	ADD COLUMN on_dep_failure text;
COMMENT ON COLUMN chancy_jobs.workflow_id IS
	'The workflow the job is a step of (NULL: none)';
COMMENT ON COLUMN chancy_jobs.step IS
	'Its step name, unique in its workflow';
COMMENT ON COLUMN chancy_jobs.deps_left IS
	'Dependencies not yet met: while above 0 the step waits outside the ready jobs (claim 0)';
COMMENT ON COLUMN chancy_jobs.on_dep_failure IS
	'What the step does when a dependency fails: cancel, run or wait';
CREATE UNIQUE INDEX chancy_jobs_workflow_step ON chancy_jobs (workflow_id, step)
	WHERE workflow_id IS NOT NULL;
COMMENT ON INDEX chancy_jobs_workflow_step IS 'A workflow''s steps, by name';

-- pg_dump: the workflows of existing roles, and their dependencies
SELECT pg_catalog.pg_extension_config_dump('chancy_workflows',
	$$WHERE pushed_by::oid IN (SELECT oid FROM pg_catalog.pg_roles)$$);
SELECT pg_catalog.pg_extension_config_dump('chancy_workflows_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('chancy_workflow_deps', '');

REVOKE ALL ON chancy_workflows, chancy_workflow_deps FROM PUBLIC;
GRANT SELECT ON chancy_workflows, chancy_workflow_deps TO PUBLIC;
ALTER TABLE chancy_workflows ENABLE ROW LEVEL SECURITY;
CREATE POLICY chancy_workflows_own ON chancy_workflows FOR SELECT
	USING (pg_has_role(pushed_by, 'MEMBER'));
COMMENT ON POLICY chancy_workflows_own ON chancy_workflows IS
	'A role sees its own workflows, and those of the roles it is a member of';
ALTER TABLE chancy_workflow_deps ENABLE ROW LEVEL SECURITY;
CREATE POLICY chancy_workflow_deps_own ON chancy_workflow_deps FOR SELECT
	USING (EXISTS (SELECT FROM @extschema@.chancy_workflows w WHERE w.id = workflow_id));
COMMENT ON POLICY chancy_workflow_deps_own ON chancy_workflow_deps IS
	'A role sees the dependencies of the workflows it sees';

CREATE FUNCTION chancy_push_workflow(name text, steps chancy_step[])
	RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_push_workflow(text, chancy_step[]) IS
	'Push a workflow: every step becomes a job now, and starts when the steps it depends on have succeeded; returns the workflow id';

CREATE FUNCTION chancy_add_steps(steps chancy_step[])
	RETURNS bigint[]
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_add_steps(chancy_step[]) IS
	'Inside a running workflow step: add steps to its workflow in its transaction (they may depend on its steps, the running one included); their job ids';

CREATE FUNCTION chancy_push_sequence(name text, jobs chancy_job[])
	RETURNS bigint
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp
	RETURN @extschema@.chancy_push_workflow(name,
		(SELECT array_agg(@extschema@.chancy_step(i::text, jobs[i],
						  CASE WHEN i > 1 THEN ARRAY[(i - 1)::text] ELSE '{}' END)
						  ORDER BY i)
		   FROM generate_subscripts(jobs, 1) AS i));
COMMENT ON FUNCTION chancy_push_sequence(text, chancy_job[]) IS
	'Push jobs that run one after the other, each once the one before has succeeded: a workflow of steps named 1, 2, ...';

CREATE FUNCTION chancy_wait_workflow(workflow_id bigint, timeout interval DEFAULT NULL)
	RETURNS chancy_workflows
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_wait_workflow(bigint, interval) IS
	'Wait for a workflow to finish and return it; a time-out is SQLSTATE CH001';

CREATE FUNCTION chancy_cancel_workflow(workflow_id bigint)
	RETURNS chancy_workflows
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_cancel_workflow(bigint) IS
	'Cancel a workflow: its waiting and ready steps at once, its running ones by their executors once this transaction commits';

CREATE FUNCTION chancy_retry_workflow(workflow_id bigint)
	RETURNS chancy_workflows
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_retry_workflow(bigint) IS
	'Run a finished workflow''s failed and cancelled steps again, with the steps that depend on them; succeeded steps keep their results';

CREATE FUNCTION chancy_parent_results()
	RETURNS jsonb
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE;
COMMENT ON FUNCTION chancy_parent_results() IS
	'Inside a workflow step: {step: result} of the steps it depends on that succeeded ({} outside a step)';

CREATE FUNCTION chancy_step_result(step text)
	RETURNS jsonb
	AS 'MODULE_PATHNAME' LANGUAGE C STABLE;
COMMENT ON FUNCTION chancy_step_result(text) IS
	'Inside a workflow step: the result of the step of that name it depends on (NULL if that step did not succeed)';

CREATE VIEW chancy_workflow_steps WITH (security_invoker = true) AS
	SELECT j.workflow_id, j.step, j.id AS job_id, j.name, j.queue, j.state,
		   j.deps_left, j.on_dep_failure, j.attempts, j.max_attempts,
		   ARRAY(SELECT p.step FROM @extschema@.chancy_workflow_deps d
				   JOIN @extschema@.chancy_jobs p ON p.id = d.parent
				  WHERE d.child = j.id ORDER BY p.step) AS depends_on,
		   j.created_at, j.started_at, j.completed_at, j.result, j.errors
	  FROM @extschema@.chancy_jobs j
	 WHERE j.workflow_id IS NOT NULL;
COMMENT ON VIEW chancy_workflow_steps IS
	'The steps of the workflows the caller can see, with their dependencies';
GRANT SELECT ON chancy_workflow_steps TO PUBLIC;

CREATE FUNCTION chancy_workflow_dot(workflow_id bigint)
	RETURNS text
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	BEGIN ATOMIC
	SELECT (SELECT format('digraph "%s" {', replace(replace(w.name, '\', '\\'), '"', '\"'))
			  FROM @extschema@.chancy_workflows w WHERE w.id = chancy_workflow_dot.workflow_id)
		   || chr(10)
		   || coalesce((SELECT string_agg(format('  "%s" [label="%s\n%s" style=filled fillcolor=%s];',
				 replace(replace(s.step, '\', '\\'), '"', '\"'),
				 replace(replace(s.step, '\', '\\'), '"', '\"'), s.state,
				 CASE s.state WHEN 'succeeded' THEN 'palegreen' WHEN 'failed' THEN 'salmon'
				   WHEN 'cancelled' THEN 'lightgrey' WHEN 'running' THEN 'lightblue'
				   ELSE 'white' END), chr(10) ORDER BY s.job_id)
				 FROM @extschema@.chancy_workflow_steps s
				WHERE s.workflow_id = chancy_workflow_dot.workflow_id), '') || chr(10)
		   || coalesce((SELECT string_agg(format('  "%s" -> "%s";',
				 replace(replace(p.step, '\', '\\'), '"', '\"'),
				 replace(replace(c.step, '\', '\\'), '"', '\"')), chr(10) ORDER BY c.id, p.id)
				 FROM @extschema@.chancy_workflow_deps d
				 JOIN @extschema@.chancy_jobs p ON p.id = d.parent
				 JOIN @extschema@.chancy_jobs c ON c.id = d.child
				WHERE d.workflow_id = chancy_workflow_dot.workflow_id), '') || chr(10)
		   || '}';
	END;
COMMENT ON FUNCTION chancy_workflow_dot(bigint) IS
	'A workflow as Graphviz text (dot): a node per step, coloured by state, an edge per dependency';

--------------------------------------------------------------------------
-- Functions: retrying jobs
--------------------------------------------------------------------------

CREATE FUNCTION chancy_retry(job_id bigint)
	RETURNS chancy_jobs
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_retry(bigint) IS
	'Run a failed or cancelled job again: pending now, from its first attempt, its errors and costs kept (not a workflow step, nor one whose unique key a live job holds)';

CREATE FUNCTION chancy_retry_jobs(queue text DEFAULT NULL, name text DEFAULT NULL,
								  failed_after timestamptz DEFAULT NULL,
								  failed_before timestamptz DEFAULT NULL,
								  max_jobs int DEFAULT 1000)
	RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chancy_retry_jobs(text, text, timestamptz, timestamptz, int) IS
	'Run failed jobs again as chancy_retry does, oldest first, at most max_jobs: those the caller may retry of a queue and a name that failed from failed_after until before failed_before (NULL: any); one whose unique key a live job holds is skipped; how many';
