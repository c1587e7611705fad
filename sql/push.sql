--
-- push: chancy_push in both forms, the jobs table, the seed's "Queue a Job"
--
CREATE EXTENSION chancy;
CREATE EXTENSION chancy_examples;	-- greet(jsonb) in C, and its definition
-- CREATE EXTENSION declares the default queue; others are declared
SELECT name, concurrency, from_config FROM chancy_queues;
SELECT name, concurrency FROM chancy_declare_queue('emails');

-- the seed: greet with its defaults, and with a kwargs override
SELECT chancy_push('greet') AS greet_default \gset
SELECT chancy_push('greet', '{"name": "Alice"}') AS greet_alice \gset
SELECT name, function, queue, kwargs, state, priority, attempts, max_attempts,
       unique_key, time_limit, memory_limit, meta, errors, result,
       pushed_by = current_user::regrole AS pushed_by_me,
       scheduled_at = created_at AS due_now
  FROM chancy_jobs WHERE id IN (:greet_default, :greet_alice) ORDER BY id;

-- a job can still be called normally
SELECT greet('{"name": "Alice"}');

-- every override of the convenience form
SELECT chancy_push('greet', kwargs => '{"name": "Bob", "extra": 1}',
                   queue => 'emails', priority => 10, max_attempts => 5,
                   scheduled_at => '2030-01-01 00:00:00+00',
                   unique_key => 'greet-bob', time_limit => '30 seconds',
                   memory_limit => 1048576, meta => '{"source": "test"}') AS bob \gset
SELECT name, queue, kwargs, priority, max_attempts, scheduled_at, unique_key,
       time_limit, memory_limit, meta
  FROM chancy_jobs WHERE id = :bob;

-- a function that is not defined as a job runs with the global defaults
CREATE FUNCTION plain_job(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
SELECT chancy_push('plain_job', '{"x": 1}') AS plain \gset
SELECT name, function, queue, priority, max_attempts, kwargs
  FROM chancy_jobs WHERE id = :plain;

-- pushing a job value
SELECT chancy_push(chancy_with_priority(chancy_job('greet'), 7)) AS valued \gset
SELECT name, priority, kwargs FROM chancy_jobs WHERE id = :valued;

-- chancy_push_many: ids in input order, one statement
SELECT chancy_push_many(ARRAY[
         chancy_with_kwargs(chancy_job('greet'), '{"name": "one"}'),
         chancy_with_kwargs(chancy_job('plain_job'), '{"n": 2}'),
         chancy_with_kwargs(chancy_job('greet'), '{"name": "three"}')]) AS ids \gset
SELECT j.name, j.kwargs FROM unnest(:'ids'::bigint[]) WITH ORDINALITY AS u(id, ord)
  JOIN chancy_jobs j USING (id) ORDER BY u.ord;
SELECT chancy_push_many('{}');
SELECT count(*) FROM chancy_push_many(
  (SELECT array_agg(chancy_with_kwargs(chancy_job('plain_job'), jsonb_build_object('i', i)))
     FROM generate_series(1, 1000) i)) AS ids, unnest(ids) AS id
  WHERE id IS NOT NULL;

-- ids grow; ordering within a priority is by id
SELECT (SELECT max(id) FROM chancy_jobs) >= 1000 + :valued AS ids_grow;

-- the ready index matches the dequeue order
SELECT indexdef FROM pg_indexes WHERE indexname = 'chancy_jobs_ready';

-- bad input: each is an error with a SQLSTATE, and nothing is left behind
SELECT count(*) AS before FROM chancy_jobs \gset
SELECT chancy_push('no_such_job');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push(NULL::text);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', '"Alice"');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', max_attempts => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', queue => '');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', unique_key => '');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', time_limit => '0 seconds');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', time_limit => '-1 minute');
\echo :LAST_ERROR_SQLSTATE
-- limits a job would not really have: under 1 ms, negative parts, beyond a year
SELECT chancy_push('greet', time_limit => '0.0004 s');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', time_limit => '-1 year 360 days 1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', time_limit => '1000000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', time_limit => '367 days');
\echo :LAST_ERROR_SQLSTATE
-- the longest one there is: 366 days (a year is 365.25)
SELECT chancy_push('greet', time_limit => '1 year') AS yearly \gset
SELECT time_limit FROM chancy_jobs WHERE id = :yearly;
DELETE FROM chancy_jobs WHERE id = :yearly;
-- a queue that is not declared (or a typo) would never run
SELECT chancy_push('greet', queue => 'Default');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push_many(ARRAY[chancy_job('greet'), chancy_with_queue(chancy_job('greet'), 'nowhere')]);
\echo :LAST_ERROR_SQLSTATE
-- a unique key too long for the index, and a name too long for definitions
SELECT chancy_push('greet', unique_key => repeat('k', 2049));
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push(repeat('n', 1025));
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', memory_limit => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', memory_limit => -5);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', scheduled_at => 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('greet', meta => '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push(NULL::chancy_job);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push_many(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push_many(ARRAY[chancy_job('greet'), NULL, chancy_job('greet')]);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push_many(ARRAY[chancy_job('greet'),
                              chancy_with_kwargs(chancy_job('greet'), '{}'),
                              ROW('greet', 'public.greet(jsonb)', 'default', '{}',
                                  0, 0, NULL, NULL, NULL, NULL, '{}', NULL)::chancy_job]);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push_many(ARRAY[chancy_job('greet'),
                              ROW('x', 'no_such_function(jsonb)', 'default', '{}',
                                  0, 1, NULL, NULL, NULL, NULL, '{}', NULL)::chancy_job]);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push(ROW('x', NULL, 'default', '{}', 0, 1, NULL, NULL, NULL, NULL,
                       '{}', NULL)::chancy_job);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push(ROW('x', 'greet(jsonb)', NULL, '{}', 0, 1, NULL, NULL, NULL, NULL,
                       '{}', NULL)::chancy_job);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) = :before AS nothing_left_behind FROM chancy_jobs;

-- a job value whose function is not search_path-proof is stored canonically
CREATE SCHEMA other;
CREATE FUNCTION other.hidden(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
SET search_path = public, other;
SELECT chancy_push(ROW('hidden', 'hidden(jsonb)', 'default', '{}', 0, 1, NULL, NULL,
                       NULL, NULL, '{}', NULL)::chancy_job) AS hidden \gset
SELECT chancy_push_many(ARRAY[ROW('hidden', 'hidden(jsonb)', 'default', '{}', 0, 1,
                                  NULL, NULL, NULL, NULL, '{}', NULL)::chancy_job]) AS hidden2 \gset
RESET search_path;
SELECT name, function FROM chancy_jobs WHERE id IN (:hidden, (:'hidden2'::bigint[])[1]);
-- ... and keeps the function it was pushed with, by OID
SELECT function_oid = 'other.hidden(jsonb)'::regprocedure AS kept_by_oid
  FROM chancy_jobs WHERE id = :hidden;

-- sessions that pushed before DROP EXTENSION; CREATE EXTENSION push after it
SELECT chancy_push('plain_job') IS NOT NULL AS pushed;
DROP EXTENSION chancy_examples;
DROP EXTENSION chancy CASCADE;
CREATE EXTENSION chancy;
CREATE EXTENSION chancy_examples;
SELECT chancy_push('plain_job') IS NOT NULL AS pushed_after_reinstall;
SELECT chancy_push_many(ARRAY[chancy_job('greet')]) IS NOT NULL AS pushed_many_after_reinstall;
-- a temporary function cannot run as a job (no executor sees it, no dump restores it)
CREATE FUNCTION pg_temp.temp_job(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
SELECT chancy_push('pg_temp.temp_job');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('t', 'pg_temp.temp_job(jsonb)');
\echo :LAST_ERROR_SQLSTATE
