--
-- cron: the parser, and chancy_cron_next() against known answers in UTC and
-- across DST in America/New_York, Europe/Berlin and Australia/Lord_Howe
--
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
-- the next n fire times after a given one, in UTC and on the zone's clock
CREATE FUNCTION cron_chain(expr text, after timestamptz, n int, tz text DEFAULT 'UTC')
RETURNS TABLE (utc timestamptz, wall timestamp)
LANGUAGE sql AS $$
	WITH RECURSIVE c(i, t) AS (
		SELECT 1, chancy_cron_next(expr, after, tz)
		UNION ALL
		SELECT i + 1, chancy_cron_next(expr, t, tz) FROM c WHERE i < n)
	SELECT t, t AT TIME ZONE tz FROM c ORDER BY i
$$;
-- the error a call raises, in one line
CREATE FUNCTION cron_error(expr text, tz text DEFAULT 'UTC')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	state text;
	message text;
	detail text;
BEGIN
	PERFORM chancy_cron_next(expr, '2026-01-01', tz);
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL;
	RETURN state || ': ' || message || coalesce(' / ' || nullif(detail, ''), '');
END
$$;

-- fields, lists, ranges, steps
SELECT expr, after, chancy_cron_next(expr, after) AS next
  FROM (VALUES ('* * * * *', timestamptz '2026-01-01 00:00:00'),
			   ('* * * * *', '2026-01-01 00:00:30.5'),
			   ('* * * * *', '2025-12-31 23:59:59.999999'),
			   ('*/15 * * * *', '2026-01-01 00:14:59'),
			   ('*/15 * * * *', '2026-01-01 00:15:00'),
			   ('10-50/5 * * * *', '2026-01-01 00:50:00'),
			   ('5/20 * * * *', '2026-01-01 00:45:00'),
			   ('1,2,30-31 * * * *', '2026-01-01 00:02:00'),
			   ('0 3 * * *', '2026-01-01 03:00:00'),
			   ('0 3 * * *', '2026-01-01 02:59:59'),
			   ('0 0 1 1 *', '2026-01-01 00:00:00'),
			   ('0 12 * jan,JUL *', '2026-01-31 12:00:00'),
			   ('0 0 1 mar-may *', '2026-05-01 00:00:00'),
			   ('59 23 31 12 *', '2026-06-01'),
			   ('*/10 * * * * *', '2026-01-01 00:00:00'),
			   ('30 0 0 * * *', '2026-01-01 00:00:30'),
			   ('0-10/5 */20 * * * *', '2026-01-01 00:00:10'),
			   ('0 0 0 29 2 *', '2026-01-01')) AS v(expr, after);
-- weekdays by number and name, Sunday as 0 or 7 (2026-01-01 is a Thursday)
SELECT expr, next, to_char(next, 'Dy') AS day
  FROM (SELECT expr, chancy_cron_next(expr, '2026-01-02 09:00') AS next
		  FROM (VALUES ('0 9 * * mon-fri'), ('0 9 * * 1-5'), ('0 0 * * 0'),
					   ('0 0 * * 7'), ('0 0 * * sun'), ('0 0 * * Sat,sun'),
					   ('0 0 * * 5-7'), ('0 0 * * */3')) AS v(expr)) s;
-- Vixie's rule: both day fields restricted, either matches; one of them
-- beginning with "*", both must
SELECT * FROM cron_chain('0 0 13 * 5', '2026-01-01', 4);
SELECT * FROM cron_chain('0 0 13 * *', '2026-01-01', 2);
SELECT * FROM cron_chain('0 0 */2 * 5', '2026-01-01', 3);
SELECT * FROM cron_chain('0 0 * * 5', '2026-01-01', 2);
-- L, the last day of the month, and Feb 29 (2100 is not a leap year)
SELECT * FROM cron_chain('0 0 L * *', '2026-01-31', 3);
SELECT * FROM cron_chain('0 0 L 2 *', '2027-03-01', 2);
SELECT * FROM cron_chain('0 0 15,L * *', '2026-04-15', 3);
SELECT * FROM cron_chain('0 0 L * 1', '2026-01-25', 3);
SELECT * FROM cron_chain('0 0 29 2 *', '2026-03-01', 2);
SELECT * FROM cron_chain('0 0 29 2 *', '2096-03-01', 1);
SELECT * FROM cron_chain('0 0 31 * *', '2026-01-31', 3);
-- macros, in any case
SELECT expr, chancy_cron_next(expr, '2026-01-01 00:30') AS next
  FROM (VALUES ('@yearly'), ('@annually'), ('@monthly'), ('@weekly'),
			   ('@daily'), ('@midnight'), ('@hourly'), ('@DAILY'),
			   ('  @hourly  ')) AS v(expr);
-- fixed periods count from the Unix epoch and ignore time zones
SELECT * FROM cron_chain('@every 90 seconds', '2026-01-01 00:00:00', 3);
SELECT * FROM cron_chain('@every 1 day', '2026-03-07 12:00', 3, 'America/New_York');
SELECT * FROM cron_chain('@every 1 hour', '2026-03-08 05:30', 3, 'America/New_York');
SELECT * FROM cron_chain('@every 1h 30m', '2026-01-01', 2);
SELECT * FROM cron_chain('30 seconds', '2026-01-01 00:00:10', 3);
SELECT * FROM cron_chain('1 second', '2026-01-01 00:00:00.5', 2);
SELECT * FROM cron_chain('5 Seconds', '1969-12-31 23:59:58', 2);

-- America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC);
-- a time in the gap fires once, at 03:00
SELECT * FROM cron_chain('30 2 * * *', '2026-03-07 12:00', 3, 'America/New_York');
SELECT * FROM cron_chain('0 2 * * *', '2026-03-07 12:00', 2, 'America/New_York');
SELECT * FROM cron_chain('*/30 * * * *', '2026-03-08 06:00', 4, 'America/New_York');
-- 2026-11-01: 02:00 EDT falls back to 01:00 EST (06:00 UTC); the repeated
-- hour fires once, in its first occurrence
SELECT * FROM cron_chain('30 1 * * *', '2026-10-31 12:00', 3, 'America/New_York');
SELECT * FROM cron_chain('*/30 * * * *', '2026-11-01 04:45', 5, 'America/New_York');
-- asked during the repeat, its first occurrence has passed
SELECT * FROM cron_chain('*/20 * * * *', '2026-11-01 06:10', 2, 'America/New_York');
-- Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 2026-10-25:
-- 03:00 CEST falls back to 02:00 CET
SELECT * FROM cron_chain('30 2 * * *', '2026-03-28 12:00', 2, 'Europe/Berlin');
SELECT * FROM cron_chain('30 2 * * *', '2026-10-24 12:00', 2, 'Europe/Berlin');
SELECT * FROM cron_chain('0 9 * * 1-5', '2026-03-27 12:00', 2, 'Europe/Berlin');
-- Australia/Lord_Howe moves by 30 minutes: 2026-04-05 02:00 (+11) falls
-- back to 01:30 (+10:30); 2026-10-04 02:00 (+10:30) jumps to 02:30 (+11)
SELECT * FROM cron_chain('45 1 * * *', '2026-04-04 00:00', 2, 'Australia/Lord_Howe');
SELECT * FROM cron_chain('15 2 * * *', '2026-10-03 00:00', 2, 'Australia/Lord_Howe');
SELECT * FROM cron_chain('*/15 * * * *', '2026-10-03 15:00', 4, 'Australia/Lord_Howe');
-- zone names are PostgreSQL's, in any case
SELECT chancy_cron_next('0 0 * * *', '2026-06-01 12:00', 'asia/kolkata');

-- preview: the next n after now, in order
SELECT count(*) AS n, count(DISTINCT t) AS distinct_n,
	   min(t) > now() AS after_now, bool_and(t <= now() + interval '10 minutes') AS within
  FROM chancy_cron_preview('* * * * *') AS t;
SELECT count(*) FROM chancy_cron_preview('@hourly', 1000);
SELECT t = chancy_cron_next('@daily', now(), 'Europe/Berlin') AS first_is_next
  FROM chancy_cron_preview('@daily', 1, 'Europe/Berlin') AS t;

-- bad expressions: 22023, the field and the value named
SELECT chancy_cron_next('61 * * * *', now());
SELECT expr, cron_error(expr)
  FROM (VALUES (''), ('   '), ('* * * *'), ('* * * * * * *'), ('60 * * * *'),
			   ('* 24 * * *'), ('* * 0 * *'), ('* * 32 * *'), ('* * * 0 *'),
			   ('* * * 13 *'), ('* * * * 8'), ('60 * * * * *'), ('5-1 * * * *'),
			   ('*/0 * * * *'), ('*/61 * * * *'), ('1/ * * * *'), ('*/x * * * *'),
			   ('a * * * *'), ('-1 * * * *'), ('1- * * * *'), ('1-2-3 * * * *'),
			   ('* * * foo *'), ('* * * * mon-'), ('* * * * sat-sun'),
			   ('* * * * monday'), ('1,,2 * * * *'), ('1, * * * *'),
			   ('L * * * *'), ('* * * L *'), ('* * L/2 * *'), ('* * 5L * *'),
			   ('99999999999 * * * *'), ('*/99999999999 * * * *'),
			   ('@often'), ('@every'), ('@every 1 month'), ('@every 0 seconds'),
			   ('@every -1 hour'), ('@every 1.5 seconds'), ('@every often'),
			   ('@every 367 days'), ('@every 2000000000 days'),
			   ('@every 9000000000 hours'), ('@every 366 days 1 second'),
			   ('60 seconds'), ('0 seconds'), ('5 minutes'),
			   ('0 0 30 2 *'), ('0 0 31 4,6,9,11 *'), ('0 0 30 feb *')) AS v(expr);
SELECT cron_error('* * * * *', 'Mars/Olympus');
SELECT chancy_cron_next('* * * * *', 'infinity');
SELECT chancy_cron_next('* * * * *', now(), NULL) IS NULL AS strict;
SELECT * FROM chancy_cron_preview('* * * * *', 0);
SELECT * FROM chancy_cron_preview('* * * * *', 1001);
