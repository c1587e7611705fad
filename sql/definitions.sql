--
-- definitions: chancy_define_job (the seed's @job defaults), merging,
-- redefinition, undefinition, and bad function specs
--
CREATE FUNCTION send_email(kwargs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN kwargs; END $$;
SELECT count(*) FROM (SELECT chancy_declare_queue(q) FROM unnest(ARRAY['emails', 'mail2']) q) d;

-- @job(queue="emails", priority=1, max_attempts=3, kwargs={"to": "nobody"})
SELECT chancy_define_job('send_email', queue => 'emails', priority => 1,
                         max_attempts => 3, kwargs => '{"to": "nobody", "subject": "hi"}');
SELECT name, function, queue, priority, max_attempts, kwargs, time_limit,
       memory_limit, defined_by FROM chancy_job_definitions WHERE name = 'send_email';

-- push-time kwargs merge over the defaults
SELECT chancy_push('send_email', '{"to": "alice@example.com"}') AS id \gset
SELECT kwargs, queue, priority, max_attempts FROM chancy_jobs WHERE id = :id;

-- a definition can name its function explicitly, under another job name
SELECT chancy_define_job('welcome', 'send_email(jsonb)', kwargs => '{"subject": "welcome"}',
                         time_limit => '1 minute', memory_limit => 100000000);
SELECT chancy_push('welcome', '{"to": "bob"}') AS id \gset
SELECT name, function, kwargs, time_limit, memory_limit FROM chancy_jobs WHERE id = :id;

-- redefining changes the defaults given (max_attempts stays 3); already
-- pushed jobs keep theirs
SELECT chancy_define_job('send_email', queue => 'mail2', priority => 5,
                         kwargs => '{"to": "someone"}');
SELECT chancy_push('send_email') AS id \gset
SELECT queue, priority, max_attempts, kwargs FROM chancy_jobs WHERE id = :id;
SELECT count(*) FROM chancy_jobs WHERE name = 'send_email' AND queue = 'emails';

-- the cache follows changes made in other transactions and sessions
BEGIN;
SELECT name FROM chancy_declare_queue('in_txn');
SELECT chancy_define_job('send_email', queue => 'in_txn');
SELECT chancy_push('send_email') AS id \gset
SELECT queue FROM chancy_jobs WHERE id = :id;
ROLLBACK;
SELECT chancy_push('send_email') AS id \gset
SELECT queue FROM chancy_jobs WHERE id = :id;

-- undefining: the name falls back to the function of that name
SELECT chancy_undefine_job('send_email');
SELECT chancy_push('send_email') AS id \gset
SELECT queue, priority, max_attempts, kwargs FROM chancy_jobs WHERE id = :id;
SELECT chancy_undefine_job('send_email');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_undefine_job('welcome');

-- C symbols (superuser only): loaded and checked at definition time
SELECT chancy_define_job('c_greet', '$libdir/chancy_examples:greet',
                         kwargs => '{"name": "C"}');
SELECT chancy_push('c_greet') AS id \gset
SELECT function, kwargs FROM chancy_jobs WHERE id = :id;

-- bad definitions
SELECT chancy_define_job('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', 'no_such_function(jsonb)');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION wrong_args(a int) RETURNS void LANGUAGE sql AS '';
SELECT chancy_define_job('x', 'wrong_args(int)');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION many_rows(kwargs jsonb) RETURNS SETOF int LANGUAGE sql AS 'SELECT 1';
SELECT chancy_define_job('x', 'many_rows(jsonb)');
\echo :LAST_ERROR_SQLSTATE
CREATE PROCEDURE a_procedure(kwargs jsonb) LANGUAGE sql AS '';
SELECT chancy_define_job('x', 'a_procedure(jsonb)');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', 'no_such_library:greet');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', '$libdir/chancy_examples:no_such_symbol');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', ':greet');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', '');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('', 'greet(jsonb)');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job(NULL, 'greet(jsonb)');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', 'greet(jsonb)', queue => '');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', 'greet(jsonb)', queue => 'no_such_queue');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', 'greet(jsonb)', max_attempts => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', 'greet(jsonb)', kwargs => '1');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', 'greet(jsonb)', time_limit => '0.5 ms');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', 'greet(jsonb)', time_limit => '-1 year 360 days 1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('x', 'greet(jsonb)', memory_limit => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM chancy_job_definitions WHERE name IN ('x', 'nope', '');
-- the longest time limit there is: 366 days (a year is 365.25)
SELECT (chancy_define_job('yearly', 'greet(jsonb)', time_limit => '1 year')).time_limit;
SELECT chancy_undefine_job('yearly');

-- a redefinition changes only what it is given; a limit of 0 removes it
SELECT (chancy_define_job('limited', 'send_email(jsonb)', priority => 2,
                          time_limit => '5 s', memory_limit => 1000000)).name AS defined;
SELECT (chancy_define_job('limited', max_attempts => 4)).name AS redefined;
SELECT function, priority, max_attempts, time_limit, memory_limit
  FROM chancy_job_definitions WHERE name = 'limited';
SELECT (chancy_define_job('limited', time_limit => '0', memory_limit => 0)).name AS removed;
SELECT priority, max_attempts, time_limit, memory_limit
  FROM chancy_job_definitions WHERE name = 'limited';
SELECT chancy_undefine_job('limited');

-- a job whose function is dropped after definition cannot be pushed
CREATE FUNCTION short_lived(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
SELECT chancy_define_job('short_lived');
DROP FUNCTION short_lived(jsonb);
SELECT chancy_push('short_lived');
\echo :LAST_ERROR_SQLSTATE
-- ... nor does one created again under that name take its place
CREATE FUNCTION short_lived(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
SELECT chancy_push('short_lived');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push(chancy_job('short_lived'));
\echo :LAST_ERROR_SQLSTATE
-- redefining it binds the function that exists now
SELECT (chancy_define_job('short_lived', 'short_lived(jsonb)')).name AS redefined;
SELECT chancy_push('short_lived') IS NOT NULL AS pushed;
SELECT chancy_undefine_job('short_lived');
