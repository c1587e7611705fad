--
-- limits: flow control's keys (chancy_limits), the jobs that hold them,
-- parked jobs, who may manage limits
--
\set SHOW_CONTEXT never
SELECT key, concurrency, rate, per, burst FROM chancy_set_limit('stripe', concurrency => 5);
-- setting replaces: a rate alone drops the concurrency; per defaults to 1 s
SELECT key, concurrency, rate, per, burst FROM chancy_set_limit('stripe', rate => 100);
SELECT key, concurrency, rate, per, burst
  FROM chancy_set_limit('stripe', concurrency => 3, rate => 10, per => '2 seconds', burst => 20);
-- a pattern: the default of every customer:<id>
SELECT key, concurrency FROM chancy_set_limit('customer:*', concurrency => 1);
SELECT key, concurrency FROM chancy_set_limit('customer:42', concurrency => 4);
SELECT key, concurrency FROM chancy_set_limit('stop', concurrency => 0);
SELECT key, concurrency, rate, per, burst FROM chancy_limits ORDER BY key;

-- bad input
SELECT chancy_set_limit(NULL, concurrency => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('x');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('x', concurrency => 1, per => '1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('x', concurrency => 1, burst => 5);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('x', concurrency => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('x', rate => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('x', rate => -5);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('x', rate => 1, per => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('x', rate => 1, per => '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('x', rate => 1, burst => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('', concurrency => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit('a*b', concurrency => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_set_limit(repeat('k', 64), concurrency => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_drop_limit(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_drop_limit('nothing');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_drop_limit('stop');
SELECT count(*) FROM chancy_limits WHERE key = 'stop';

-- tokens for work that is not a job: chancy_limit_acquire
SELECT chancy_limit_acquire('unlimited');
SELECT key FROM chancy_set_limit('api', rate => 1, per => '1 hour', burst => 3);
SELECT chancy_limit_acquire('api', 2);
SELECT chancy_limit_acquire('api', timeout => '0');
SELECT chancy_limit_acquire('api', timeout => '10 ms');
SELECT key, tokens, next_token_at > now() + interval '59 min' AS in_an_hour
  FROM chancy_limit_stats WHERE key = 'api';
SELECT chancy_limit_acquire('api', 4);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_limit_acquire('api', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_limit_acquire('api', timeout => '-1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_limit_acquire(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_limit_acquire('api:*');
\echo :LAST_ERROR_SQLSTATE

-- suspending a key: nothing starts before then; its limits are kept
SELECT key, concurrency, suspended_until
  FROM chancy_suspend_key('customer:42', '2100-01-01 00:00:00+00');
SELECT chancy_limit_acquire('customer:42', timeout => '0');
SELECT key, concurrency, suspended_until FROM chancy_suspend_key('customer:42', NULL);
SELECT chancy_limit_acquire('customer:42', timeout => '0');
-- a key suspended without a row of its own keeps its pattern's limits
SELECT key FROM chancy_set_limit('tenant:*', rate => 1, per => '1 hour');
SELECT key, concurrency, rate FROM chancy_suspend_key('tenant:9', '2001-01-01 00:00:00+00');
SELECT chancy_limit_acquire('tenant:9', timeout => '0');
SELECT chancy_limit_acquire('tenant:9', timeout => '0');
SELECT key, rate, suspended_until IS NOT NULL AS suspended FROM chancy_limit_stats
 WHERE key = 'tenant:9';
-- a pattern suspends every key it begins
SELECT key FROM chancy_suspend_key('tenant:*', 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT key FROM chancy_suspend_key('tenant:*', '2100-01-01 00:00:00+00');
SELECT chancy_limit_acquire('tenant:10', timeout => '0');
-- a suspension of a longer pattern does not hide a shorter pattern's limits,
-- and a row left with neither goes
SELECT key FROM chancy_set_limit('cu*', rate => 1, per => '1 hour');
SELECT key FROM chancy_suspend_key('cust:*', '2001-01-01 00:00:00+00');
SELECT chancy_limit_acquire('cust:1', timeout => '0');
SELECT chancy_limit_acquire('cust:1', timeout => '0');
SELECT key FROM chancy_suspend_key('cust:*', NULL);
SELECT count(*) FROM chancy_limits WHERE key = 'cust:*';
SELECT chancy_drop_limit('cu*');
-- a full bucket spans at most 1000 years; a large one is exact
SELECT key FROM chancy_set_limit('huge', rate => 1, per => '366 days', burst => 1000000);
\echo :LAST_ERROR_SQLSTATE
SELECT key FROM chancy_set_limit('huge', rate => 1, per => '366 days', burst => 900);
SELECT chancy_limit_acquire('huge', 900, '0');
SELECT chancy_limit_acquire('huge', timeout => '0');
SELECT tokens FROM chancy_limit_stats WHERE key = 'huge';
SELECT chancy_drop_limit('huge');
SELECT chancy_suspend_key('bad*key', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_suspend_key(NULL, NULL);
\echo :LAST_ERROR_SQLSTATE

-- a queue's rate is the limit of key queue:<name>
SELECT name FROM chancy_declare_queue('metered', 0, rate => 100);
SELECT key, rate, per FROM chancy_limits WHERE key = 'queue:metered';
SELECT name FROM chancy_declare_queue('metered', rate => 5, per => '1 minute');
SELECT key, rate, per FROM chancy_limits WHERE key = 'queue:metered';
SELECT name FROM chancy_declare_queue('metered', per => '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM chancy_declare_queue('metered', rate => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM chancy_declare_queue('metered', rate => 1, per => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM chancy_declare_queue(repeat('q', 60), 0, rate => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM chancy_declare_queue('metered', rate => 0);
SELECT count(*) FROM chancy_limits WHERE key = 'queue:metered';
SELECT name FROM chancy_declare_queue('metered', rate => 7);
SELECT chancy_delete_queue('metered');
SELECT count(*) FROM chancy_limits WHERE key = 'queue:metered';

-- jobs hold keys: chancy_with_limit_keys, checked
CREATE FUNCTION limited(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
SELECT (chancy_with_limit_keys(chancy_job('limited'), '{stripe,customer:7}')).limit_keys;
SELECT (chancy_with_limit_keys(chancy_job('limited'), NULL)).limit_keys;
SELECT chancy_with_limit_keys(chancy_job('limited'), '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), '{a,NULL}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), '{a,b,a}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), '{customer:*}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), '{""}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), ARRAY[repeat('k', 64)]);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), '{1,2,3,4,5,6,7,8,9}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), '{{a},{b}}');
\echo :LAST_ERROR_SQLSTATE
-- a job value built by hand is checked at push
SELECT chancy_push(jsonb_populate_record(chancy_job('limited'), '{"limit_keys": ["a", "a"]}'));
\echo :LAST_ERROR_SQLSTATE

-- templates: {name} is filled from the job's kwargs at push
SELECT (chancy_with_limit_keys(chancy_job('limited'), ARRAY['customer:{id}x'])).limit_keys;
SELECT chancy_with_limit_keys(chancy_job('limited'), ARRAY['customer:{id']);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), ARRAY['customer:{}']);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), ARRAY['customer:}x']);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_with_limit_keys(chancy_job('limited'), ARRAY['customer:{a-b}']);
\echo :LAST_ERROR_SQLSTATE
SELECT (chancy_define_job('limited', limit_keys => ARRAY['stripe', 'customer:{customer_id}', '{region}:{tier}'])).limit_keys;
SELECT limit_keys FROM chancy_job_definitions WHERE name = 'limited';
SELECT chancy_push('limited', '{"customer_id": 42, "region": "eu", "tier": true}') AS templated \gset
SELECT limit_keys FROM chancy_jobs WHERE id = :templated;
SELECT chancy_push('limited', '{"customer_id": "c-7", "region": "us", "tier": 1.5}') AS templated \gset
SELECT limit_keys FROM chancy_jobs WHERE id = :templated;
SELECT chancy_push('limited', '{"region": "eu", "tier": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('limited', '{"customer_id": null, "region": "eu", "tier": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('limited', '{"customer_id": {"a": 1}, "region": "eu", "tier": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('limited', '{"customer_id": "*", "region": "eu", "tier": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('limited', jsonb_build_object('customer_id', repeat('x', 60), 'region', 'eu', 'tier', 1));
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('limited', '{"customer_id": "eu:1", "region": "eu", "tier": 1}',
                   limit_keys => '{a,a}');
\echo :LAST_ERROR_SQLSTATE
-- two templates that fill to the same key
SELECT chancy_push('limited', '{"region": "x", "tier": "x"}', limit_keys => ARRAY['{region}', '{tier}']);
\echo :LAST_ERROR_SQLSTATE
-- chancy_push(limit_keys => ...) replaces the definition's; push_many fills too
SELECT chancy_push('limited', '{}', limit_keys => '{only}') AS templated \gset
SELECT limit_keys FROM chancy_jobs WHERE id = :templated;
SELECT (chancy_push_many(ARRAY[chancy_with_kwargs(chancy_job('limited'),
        '{"customer_id": 9, "region": "ap", "tier": "gold"}')]))[1] AS templated \gset
SELECT limit_keys FROM chancy_jobs WHERE id = :templated;
-- a schedule's job whose template names a kwarg it does not have is refused
SELECT chancy_schedule('templated', '@daily', chancy_with_limit_keys(chancy_job('limited'),
                       ARRAY['customer:{customer_id}']));
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM chancy_schedule('templated', '@daily', chancy_with_kwargs(
       chancy_with_limit_keys(chancy_job('limited'), ARRAY['customer:{customer_id}']),
       '{"customer_id": 5}'));
SELECT (job).limit_keys FROM chancy_schedules WHERE name = 'templated';
SELECT chancy_unschedule('templated');
-- '{}' removes the definition's keys
SELECT (chancy_define_job('limited', limit_keys => '{}')).limit_keys;
SELECT limit_keys FROM chancy_job_definitions WHERE name = 'limited';
SELECT chancy_undefine_job('limited');

-- the push records them; jobs without keys have NULL
SELECT chancy_push(chancy_with_limit_keys(chancy_job('limited'), '{stripe,customer:7}')) AS limited_job \gset
SELECT chancy_push_many(ARRAY[chancy_with_limit_keys(chancy_job('limited'), '{stripe}'),
                              chancy_job('limited')]) AS many \gset
SELECT id = :limited_job AS first, limit_keys, parked_on, claim FROM chancy_jobs
 WHERE name = 'limited' AND id >= :limited_job ORDER BY id;

-- a parked job (claim 0) is outside the ready jobs; a cancel ends it at once
UPDATE chancy_jobs SET claim = 0, parked_on = 'stripe' WHERE id = :limited_job;
SELECT key, parked, oldest_parked_age IS NOT NULL AS aged FROM chancy_limit_stats
 WHERE key = 'stripe';
SELECT state, claim, parked_on, errors->0->>'message' AS why FROM chancy_cancel(:limited_job);
SELECT key, parked FROM chancy_limit_stats WHERE key = 'stripe';

-- who may manage limits: the extension's owner, and whom it grants
CREATE ROLE regress_limit_user;
SET ROLE regress_limit_user;
SELECT chancy_set_limit('mine', concurrency => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_drop_limit('stripe');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM chancy_limits;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM chancy_limit_stats;
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_limit_acquire('api');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_suspend_key('api', NULL);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION chancy_set_limit(text, int, int, interval, int) TO regress_limit_user;
SET ROLE regress_limit_user;
SELECT key, concurrency FROM chancy_set_limit('mine', concurrency => 1);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION chancy_set_limit(text, int, int, interval, int) FROM regress_limit_user;
DROP ROLE regress_limit_user;
DELETE FROM chancy_jobs WHERE name = 'limited';
DROP FUNCTION limited(jsonb);
SELECT chancy_drop_limit(key) FROM chancy_limits;
