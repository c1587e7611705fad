--
-- commands: jobs that run a SQL command (pg_cron's form), as a push checks
-- them; the executor's running of them is t/035_commands.pl
--
CREATE ROLE regress_chancy_cmd;

-- a command parses at push: the objects it names need not exist yet
SELECT (job).name, (job).function, (job).kwargs, owner
  FROM chancy_schedule('vacuum_big', '0 4 * * *', 'VACUUM big');
SELECT chancy_push('chancy_run_command', '{"command": "VACUUM big; ANALYZE big"}') > 0 AS pushed;
SELECT array_length(chancy_push_many(ARRAY[
	chancy_with_kwargs(chancy_job('chancy_run_command'), '{"command": "SELECT 1"}'),
	chancy_with_kwargs(chancy_job('chancy_run_command'), '{"command": "CALL p()"}')]), 1) AS pushed;

-- a push records its search_path, unless the kwargs give one
SET search_path = pg_catalog, public;
SELECT chancy_push('chancy_run_command', '{"command": "VACUUM big"}') AS id \gset
SELECT kwargs FROM chancy_jobs WHERE id = :id;
SELECT chancy_push('chancy_run_command', '{"command": "VACUUM big", "search_path": "app"}') AS id \gset
SELECT kwargs FROM chancy_jobs WHERE id = :id;
RESET search_path;

-- a path that cannot be set is refused at push, not at every run
SELECT chancy_push('chancy_run_command',
	jsonb_build_object('command', 'SELECT 1', 'search_path', '"app'));
-- as another role (SECURITY DEFINER), the path in force may be the caller's:
-- the kwargs must give it
CREATE FUNCTION push_as_owner(path text) RETURNS bigint LANGUAGE sql SECURITY DEFINER
	AS $$SELECT public.chancy_push('chancy_run_command',
		CASE WHEN path IS NULL THEN '{"command": "VACUUM big"}'::jsonb
		ELSE jsonb_build_object('command', 'VACUUM big', 'search_path', path) END)$$;
GRANT EXECUTE ON FUNCTION push_as_owner(text) TO regress_chancy_cmd;
SET ROLE regress_chancy_cmd;
SET search_path = pg_temp, public;
SELECT push_as_owner(NULL);
SELECT push_as_owner('pg_catalog, public') > 0 AS pushed;
RESET search_path;
RESET ROLE;
DROP FUNCTION push_as_owner(text);

-- what a command cannot be
\set VERBOSITY default
SELECT chancy_push('chancy_run_command', '{"command": "VACUUM (big"}');
SELECT chancy_push('chancy_run_command', '{"command": "  -- nothing"}');
SELECT chancy_push('chancy_run_command', '{"command": "BEGIN; VACUUM big; COMMIT"}');
SELECT chancy_push('chancy_run_command', '{"command": "SAVEPOINT s"}');
SELECT chancy_push('chancy_run_command', '{"command": "COPY big FROM STDIN"}');
SELECT chancy_push('chancy_run_command', '{"command": "COPY big TO STDOUT"}');
SELECT chancy_push('chancy_run_command', '{"command": null}');
SELECT chancy_push('chancy_run_command', '{"command": 5}');
SELECT chancy_push('chancy_run_command', '{"commands": "VACUUM"}');
SELECT chancy_push('chancy_run_command', '{"command": "VACUUM", "extra": 1}');
SELECT chancy_push('chancy_run_command', '{"command": "VACUUM", "search_path": ["app"]}');
SELECT chancy_push('chancy_run_command', '["VACUUM"]');
SELECT chancy_push('chancy_run_command');
-- each job of a push_many is looked at, not the first only
SELECT chancy_push_many(ARRAY[
	chancy_with_kwargs(chancy_job('chancy_run_command'), '{"command": "SELECT 1"}'),
	chancy_with_kwargs(chancy_job('chancy_run_command'), '{"command": "ROLLBACK"}')]);
SELECT chancy_schedule('bad', '0 4 * * *', 'VACUUM (');
SELECT chancy_schedule('bad', '0 4 * * *', NULL::text);
SELECT chancy_schedule('bad', '0 4 * * *', 'COMMIT');
-- called in a statement, where nothing runs at top level
SELECT chancy_run_command('{"command": "SELECT 1"}');
\set VERBOSITY terse

-- another role's commands are its own, with chancy's schema off its path
SET ROLE regress_chancy_cmd;
SET search_path = pg_catalog;
SELECT (job).function, owner
  FROM public.chancy_schedule('cmd_own', '@daily', 'SELECT 1', catch_up => '1 hour');
RESET search_path;
SELECT name, owner FROM chancy_schedule_status ORDER BY name;
SELECT chancy_unschedule('cmd_own');
RESET ROLE;

SELECT chancy_unschedule('vacuum_big');
DELETE FROM chancy_jobs;
DROP ROLE regress_chancy_cmd;
