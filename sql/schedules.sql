--
-- schedules: chancy_schedule() and chancy_unschedule(), what they check, who
-- may see and change a schedule (the supervisor's firing is t/034_schedules.pl)
--
SET datestyle = 'ISO, YMD';
CREATE ROLE regress_chancy_sched_alice;
CREATE ROLE regress_chancy_sched_bob;
CREATE ROLE regress_chancy_sched_alice_too IN ROLE regress_chancy_sched_alice;
CREATE FUNCTION nightly_job(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION private_job(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
REVOKE EXECUTE ON FUNCTION private_job(jsonb) FROM PUBLIC;

-- create: the row, its first fire time after now in its zone
SELECT name, cron, time_zone, (job).name AS job, (job).function, (job).kwargs,
       enabled, catch_up, overlap, fires, skips, owner,
       next_fire_at = chancy_cron_next('0 3 * * *', now(), 'Europe/Berlin') AS next_ok,
       last_fire_at, last_job_id
  FROM chancy_schedule('nightly', '0 3 * * *',
                       chancy_with_kwargs(chancy_job('nightly_job'), '{"days": 30}'),
                       'Europe/Berlin');
-- replacing the job keeps the next fire time; a new expression moves it
UPDATE chancy_schedules SET next_fire_at = '2030-01-01 02:00+00' WHERE name = 'nightly';
SELECT next_fire_at, (job).kwargs
  FROM chancy_schedule('nightly', '0 3 * * *',
                       chancy_with_kwargs(chancy_job('nightly_job'), '{"days": 7}'),
                       'Europe/Berlin');
SELECT next_fire_at = chancy_cron_next('0 4 * * *', now(), 'Europe/Berlin') AS moved
  FROM chancy_schedule('nightly', '0 4 * * *', chancy_job('nightly_job'), 'Europe/Berlin');
-- disabled: no next fire time; enabled again: the first one after now
SELECT enabled, next_fire_at
  FROM chancy_schedule('nightly', '0 4 * * *', chancy_job('nightly_job'), 'Europe/Berlin',
                       enabled => false);
SELECT enabled, next_fire_at = chancy_cron_next('0 4 * * *', now(), 'Europe/Berlin') AS next_ok
  FROM chancy_schedule('nightly', '0 4 * * *', chancy_job('nightly_job'), 'Europe/Berlin');
SELECT catch_up, overlap
  FROM chancy_schedule('often', '@every 10 minutes', chancy_job('nightly_job'),
                       catch_up => '1 day', overlap => false);
SELECT name, cron, time_zone, enabled, last_job_state, fires, skips, owner
  FROM chancy_schedule_status ORDER BY name;

-- bad schedules are refused, with the field, value or argument named
SELECT chancy_schedule('bad', '0 0 30 2 *', chancy_job('nightly_job'));
SELECT chancy_schedule('bad', '0 25 * * *', chancy_job('nightly_job'));
SELECT chancy_schedule('bad', '@daily', chancy_job('nightly_job'), 'Atlantis/Capital');
-- only the time zone database's zones (any case, kept as it spells them):
-- no POSIX specifications, whose every variant the supervisor would keep
SELECT time_zone FROM chancy_schedule('zoned', '@daily', chancy_job('nightly_job'), 'europe/BERLIN');
SELECT time_zone FROM chancy_schedule('zoned', '@daily', chancy_job('nightly_job'), 'EST5EDT');
SELECT chancy_unschedule('zoned');
SELECT chancy_schedule('bad', '@daily', chancy_job('nightly_job'), 'EST5EDT,M3.2.0,M11.1.0');
SELECT chancy_schedule('bad', '@daily', chancy_job('nightly_job'), '<+0330>-3:30');
SELECT chancy_schedule('bad', '@daily', chancy_job('nightly_job'), catch_up => '-1 hour');
SELECT chancy_schedule('bad', '@daily', chancy_job('nightly_job'), catch_up => '2 years');
SELECT chancy_schedule('bad', '@daily', NULL::chancy_job);
SELECT chancy_schedule('', '@daily', chancy_job('nightly_job'));
SELECT chancy_schedule(repeat('x', 64), '@daily', chancy_job('nightly_job'));
SELECT chancy_schedule('bad', '@daily',
                       chancy_with_scheduled_at(chancy_job('nightly_job'), now()));
SELECT chancy_schedule('bad', '@daily', chancy_with_queue(chancy_job('nightly_job'), 'nowhere'));
SELECT chancy_schedule('bad', '@daily', chancy_job('no_such_job'));
SELECT chancy_unschedule('bad');
SELECT chancy_unschedule(NULL);
SELECT count(*) AS none_made FROM chancy_schedules WHERE name = 'bad';

-- privileges: a role needs the right to push the job; it owns its
-- schedules, sees only those it may manage, and cannot change another's
SET ROLE regress_chancy_sched_alice;
SELECT chancy_schedule('alice_private', '@hourly', chancy_job('private_job'));
\echo :LAST_ERROR_SQLSTATE
SELECT name, owner FROM chancy_schedule('alice_hourly', '@hourly', chancy_job('nightly_job'));
SELECT name, owner FROM chancy_schedule_status ORDER BY name;
INSERT INTO chancy_schedules (name, cron, job, owner)
  VALUES ('forged', '@hourly', chancy_job('nightly_job'), 'postgres');
\echo :LAST_ERROR_SQLSTATE
UPDATE chancy_schedules SET owner = 'postgres';
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_schedule('nightly', '* * * * *', chancy_job('nightly_job'));
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_unschedule('nightly');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_chancy_sched_bob;
SELECT count(*) AS bob_sees FROM chancy_schedule_status;
SELECT chancy_unschedule('alice_hourly');
SELECT chancy_schedule('alice_hourly', '* * * * *', chancy_job('nightly_job'));
-- a member of alice may manage alice's schedules; replacing makes it the owner
SET ROLE regress_chancy_sched_alice_too;
SELECT name, owner FROM chancy_schedule_status ORDER BY name;
SELECT name, owner FROM chancy_schedule('alice_hourly', '@hourly', chancy_job('nightly_job'));
SET ROLE regress_chancy_sched_alice;
SELECT count(*) AS alice_sees_members FROM chancy_schedule_status;
RESET ROLE;
SELECT chancy_unschedule('alice_hourly');
SELECT chancy_unschedule('alice_hourly');
SELECT name FROM chancy_schedule_status ORDER BY name;

SELECT chancy_unschedule('nightly'), chancy_unschedule('often');
DROP FUNCTION nightly_job(jsonb), private_job(jsonb);
DROP ROLE regress_chancy_sched_alice_too;
DROP ROLE regress_chancy_sched_alice;
DROP ROLE regress_chancy_sched_bob;
