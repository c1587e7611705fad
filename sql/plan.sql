--
-- plan: the claim walks the ready index whatever the statistics say, and
-- the supervisor prunes finished jobs
--
-- statistics that say the table is empty (as they do, stale, after a burst)
ANALYZE chancy_jobs;
UPDATE pg_class SET reltuples = 1, relpages = 1 WHERE oid = 'chancy_jobs'::regclass;
SELECT * FROM chancy_explain_claim('default');
-- and fresh ones over many finished jobs
INSERT INTO chancy_jobs (name, function, queue, state, priority, max_attempts,
                         completed_at, pushed_by)
SELECT 'plain_job', 'public.plain_job(pg_catalog.jsonb)', 'default', 'succeeded', 0, 1,
       now() - interval '2 days', current_user::regrole
  FROM generate_series(1, 20000);
ANALYZE chancy_jobs;
SELECT count(*) > 0 AS walks_ready_index
  FROM chancy_explain_claim('default') AS line
 WHERE line LIKE '%Index Scan using chancy_jobs_ready%';
SELECT count(*) AS seq_scans FROM chancy_explain_claim('default') AS line
 WHERE line LIKE '%Seq Scan%';
-- no statistics at all, and a planner that thinks index pages cost a
-- fortune (a stand-in for statistics gone wrong): left to itself it reads and
-- sorts the whole queue; the claim still walks the ready index in order
DELETE FROM pg_statistic WHERE starelid = 'chancy_jobs'::regclass;
UPDATE pg_class SET reltuples = 1, relpages = 1 WHERE oid = 'chancy_jobs'::regclass;
SET random_page_cost = 1000000;
EXPLAIN (COSTS OFF)
SELECT id FROM chancy_jobs
 WHERE queue = 'default' AND state IN ('pending', 'retrying') AND scheduled_at <= now()
 ORDER BY priority DESC, id LIMIT 64 FOR UPDATE SKIP LOCKED;
SELECT * FROM chancy_explain_claim('default');
RESET random_page_cost;
\set SHOW_CONTEXT never
-- bad input
SELECT chancy_explain_claim(NULL);
\echo :LAST_ERROR_SQLSTATE
-- pruning: per-queue override validated
SELECT chancy_declare_queue('emails', 1, prune_after => '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT name, prune_after FROM chancy_declare_queue('emails', 1, prune_after => '1 hour');
