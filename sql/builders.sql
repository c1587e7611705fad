--
-- builders: immutable job values and the chancy_with_* functions
--
SELECT chancy_job('greet');

-- each builder returns a changed copy and leaves its input as it was
CREATE TEMP TABLE base AS SELECT chancy_job('greet') AS j;
SELECT chancy_with_kwargs(j, '{"name": "Alice", "x": 1}') FROM base;
SELECT chancy_with_kwargs(j, '{"x": 1}', replace => true) FROM base;
SELECT chancy_with_priority(j, 10) FROM base;
SELECT chancy_with_priority(j, -10) FROM base;
SELECT chancy_with_max_attempts(j, 3) FROM base;
SELECT chancy_with_scheduled_at(j, '2030-01-01 12:00:00+00') FROM base;
SELECT chancy_with_unique_key(j, 'greet_alice') FROM base;
SELECT chancy_with_queue(j, 'emails') FROM base;
SELECT chancy_with_limits(j, '60 seconds', 1073741824) FROM base;
SELECT chancy_with_meta(j, '{"trace": "abc"}') FROM base;
SELECT j = chancy_job('greet') AS base_unchanged FROM base;

-- chains, as in greet.job.with_unique_key(...).with_kwargs(...)
SELECT (chancy_with_kwargs(chancy_with_unique_key(chancy_job('greet'), 'greet_alice'),
                           '{"name": "Alice"}')).*;

-- NULL clears optional attributes
SELECT (chancy_with_unique_key(chancy_with_unique_key(j, 'k'), NULL)).unique_key IS NULL,
       (chancy_with_limits(chancy_with_limits(j, '1s', 1), NULL, NULL)).time_limit IS NULL,
       (chancy_with_scheduled_at(chancy_with_scheduled_at(j, now()), NULL)).scheduled_at IS NULL
  FROM base;

-- the seed's priorities: higher runs sooner, so it sorts first
SELECT chancy_push_many(ARRAY[chancy_with_priority(chancy_job('plain_job'), -10),
                              chancy_with_priority(chancy_job('plain_job'), 10)]) AS ids \gset
SELECT name, priority FROM chancy_jobs WHERE id = ANY (:'ids')
 ORDER BY priority DESC, id;

-- bad values are refused by the builders
SELECT chancy_with_max_attempts(j, 0) FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_max_attempts(j, NULL) FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_priority(j, NULL) FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_queue(j, '') FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_queue(j, NULL) FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_unique_key(j, '') FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_kwargs(j, NULL) FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_kwargs(j, '[]') FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_meta(j, '3') FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limits(j, '-1 second', NULL) FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limits(j, NULL, -1) FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_scheduled_at(j, '-infinity') FROM base;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_priority(NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_job('no_such_job');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_job(NULL);
\echo :LAST_ERROR_SQLSTATE
