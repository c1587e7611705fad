--
-- unique: at most one live job per unique key (the seed's "Unique Jobs")
--
SELECT chancy_push('greet', '{"name": "Alice"}', unique_key => 'greet_alice') AS first \gset
-- a duplicate returns the live job's id and changes nothing about it
SELECT chancy_push('greet', '{"name": "Mallory"}', unique_key => 'greet_alice',
                   priority => 99) = :first AS same_id;
SELECT kwargs, priority, state FROM chancy_jobs WHERE id = :first;
SELECT count(*) FROM chancy_jobs WHERE unique_key = 'greet_alice';

-- every live state holds the key; finished states free it
UPDATE chancy_jobs SET state = 'running' WHERE id = :first;
SELECT chancy_push('greet', unique_key => 'greet_alice') = :first AS running_holds;
UPDATE chancy_jobs SET state = 'retrying' WHERE id = :first;
SELECT chancy_push('greet', unique_key => 'greet_alice') = :first AS retrying_holds;
UPDATE chancy_jobs SET state = 'succeeded' WHERE id = :first;
SELECT chancy_push('greet', unique_key => 'greet_alice') AS second \gset
SELECT :second <> :first AS succeeded_frees;
UPDATE chancy_jobs SET state = 'failed' WHERE id = :second;
SELECT chancy_push('greet', unique_key => 'greet_alice') AS third \gset
UPDATE chancy_jobs SET state = 'cancelled' WHERE id = :third;
SELECT chancy_push('greet', unique_key => 'greet_alice') AS fourth \gset
SELECT state, count(*) FROM chancy_jobs WHERE unique_key = 'greet_alice'
 GROUP BY state ORDER BY state;

-- inside one push_many: duplicates within the batch and against the table
SELECT chancy_push_many(ARRAY[
         chancy_with_unique_key(chancy_job('greet'), 'batch_a'),
         chancy_with_unique_key(chancy_job('greet'), 'greet_alice'),
         chancy_job('greet'),
         chancy_with_unique_key(chancy_job('greet'), 'batch_a'),
         chancy_with_unique_key(chancy_job('greet'), 'batch_b')]) AS ids \gset
SELECT ids[1] = ids[4] AS in_batch_dup, ids[2] = :fourth AS table_dup,
       ids[1] <> ids[3] AND ids[3] <> ids[5] AND ids[1] <> ids[5] AS distinct_others
  FROM (SELECT :'ids'::bigint[] AS ids) s;
SELECT unique_key, count(*) FROM chancy_jobs
 WHERE unique_key IN ('batch_a', 'batch_b', 'greet_alice')
   AND state IN ('pending', 'retrying', 'running')
 GROUP BY unique_key ORDER BY unique_key;

-- a big batch of duplicates collapses to one job per key
SELECT count(DISTINCT id) FROM unnest(chancy_push_many(
  (SELECT array_agg(chancy_with_unique_key(chancy_job('plain_job'), 'many_' || (i % 10)))
     FROM generate_series(1, 500) i))) AS id;

-- the unique index is partial on the live states
SELECT indexdef FROM pg_indexes WHERE indexname = 'chancy_jobs_unique_key';

-- unique keys belong to the role that pushes: another role can neither
-- block, take over, nor learn of a key
CREATE ROLE regress_chancy_owner;
CREATE ROLE regress_chancy_squatter;
SET ROLE regress_chancy_squatter;
SELECT chancy_push('greet', unique_key => 'daily-report',
                   scheduled_at => '9999-01-01') AS squat \gset
RESET ROLE;
SET ROLE regress_chancy_owner;
SELECT chancy_push('greet', unique_key => 'daily-report') AS own \gset
SELECT :own <> :squat AS not_blocked, pushed_by, scheduled_at < '9999-01-01' AS due
  FROM chancy_jobs WHERE id = :own;
SELECT chancy_push('greet', unique_key => 'daily-report') = :own AS own_duplicate;
RESET ROLE;
SET ROLE regress_chancy_squatter;
SELECT chancy_push('greet', unique_key => 'daily-report') = :squat AS sees_only_own;
RESET ROLE;
DELETE FROM chancy_jobs WHERE pushed_by IN ('regress_chancy_owner'::regrole,
                                            'regress_chancy_squatter'::regrole);
DROP ROLE regress_chancy_owner;
DROP ROLE regress_chancy_squatter;
