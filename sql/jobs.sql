--
-- Async jobs: pulse.submit_job, pulse.job, pulse.cancel_job, and their
-- execution by the per-database worker (pulse_jobs_run_due).
--
-- The end-to-end parts poll pulse.job() for at most 20 seconds; they need
-- the pulse worker running in this database.
--
\set VERBOSITY terse
CREATE FUNCTION wait_job(job bigint, until text[] DEFAULT '{done,dead}')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
    deadline timestamptz := clock_timestamp() + interval '20 seconds';
BEGIN
    LOOP
        state := pulse.job(job)->>'state';
        EXIT WHEN state = ANY (until) OR clock_timestamp() > deadline;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN state;
END
$$;
CREATE FUNCTION job_outcome(job bigint)
RETURNS TABLE (state text, attempts int, max_attempts int, error text,
               sqlstate text, result jsonb)
LANGUAGE sql AS $$
    SELECT j->>'state', (j->>'attempts')::int, (j->>'max_attempts')::int,
           j->>'error', j->>'sqlstate', j->'result'
      FROM pulse.job(job) AS j
$$;

CREATE TABLE report_data (id int PRIMARY KEY, region text, amount numeric);
INSERT INTO report_data
SELECT g, CASE WHEN g % 2 = 0 THEN 'east' ELSE 'west' END, g * 10
  FROM generate_series(1, 6) g;

-- a job with arguments: the rows come back as a JSON array, in order
SELECT pulse.submit_job(
    'SELECT region, sum(amount) AS total FROM report_data
      WHERE id <= $1 AND region <> $2 GROUP BY region ORDER BY region',
    '[5, "none"]') AS job \gset
SELECT wait_job(:job);
SELECT * FROM job_outcome(:job);
SELECT array_agg(k ORDER BY k) AS keys FROM jsonb_object_keys(pulse.job(:job)) k;
SELECT pulse.job(:job)->'args' AS args, pulse.job(:job)->>'submitted_by' AS submitted_by;

-- argument types come from the query; JSON null is SQL NULL; objects and
-- arrays are passed as their JSON text; extra arguments are ignored; a
-- trailing semicolon is fine
SELECT pulse.submit_job(
    'SELECT $1::int + 1 AS n, $2::text IS NULL AS null_arg, $3::jsonb -> ''a'' AS a,
            $4::int[] AS arr, $5::date + 1 AS d;',
    '[41, null, {"a": [1, 2]}, "{1,2}", "2024-02-28", "unused"]') AS job \gset
SELECT wait_job(:job);
SELECT state, result FROM job_outcome(:job);
SELECT pulse.submit_job('SELECT $1 + 1 AS n', '[1]') AS job \gset
SELECT wait_job(:job);
SELECT state, result FROM job_outcome(:job);
-- no rows: an empty array
SELECT pulse.submit_job('SELECT * FROM report_data WHERE false') AS job \gset
SELECT wait_job(:job);
SELECT state, result FROM job_outcome(:job);

-- a failing job is retried (after 2^attempts seconds) and then dead
SET pulse.job_max_attempts = 2;
SELECT pulse.submit_job('SELECT 1 / (id - id) FROM report_data') AS job \gset
SELECT pulse.job(:job)->>'max_attempts' AS max_attempts;
SELECT wait_job(:job);
SELECT * FROM job_outcome(:job);
-- an argument that does not fit the parameter's type fails the job too
SET pulse.job_max_attempts = 1;
SELECT pulse.submit_job('SELECT $1::int AS n', '["ten"]') AS job \gset
SELECT wait_job(:job);
SELECT * FROM job_outcome(:job);
SELECT pulse.submit_job('SELECT $2::int AS n', '[1]') AS job \gset
SELECT wait_job(:job);
SELECT * FROM job_outcome(:job);
-- a parameter that nothing types is text
SELECT pulse.submit_job('SELECT $1 AS untyped', '["a"]') AS job \gset
SELECT wait_job(:job);
SELECT * FROM job_outcome(:job);

-- the timeout is a statement timeout
SELECT pulse.submit_job('SELECT pg_sleep(30)', timeout => '200 milliseconds') AS job \gset
SELECT wait_job(:job);
SELECT * FROM job_outcome(:job);
RESET pulse.job_max_attempts;

-- idempotency: the same key gives the same job, per role and tenant
SELECT pulse.submit_job('SELECT 1 AS one', idempotency_key => 'report-1') AS job \gset
SELECT pulse.submit_job('SELECT 2 AS two', idempotency_key => 'report-1') = :job AS same_job;
SET pulse.tenant = 'acme';
SELECT pulse.submit_job('SELECT 1 AS one', idempotency_key => 'report-1') <> :job AS other_tenant_other_job;
RESET pulse.tenant;
SELECT wait_job(:job);
SELECT state, result FROM job_outcome(:job);

-- cancel: a job canceled before it ran is dead at once
BEGIN;
SELECT pulse.submit_job('SELECT 1 AS one') AS job \gset
SELECT pulse.cancel_job(:job);
COMMIT;
SELECT * FROM job_outcome(:job);
SELECT pulse.cancel_job(:job);
-- a running job is marked; the worker drops its result when it returns
SELECT pulse.submit_job('SELECT pg_sleep(2) AS slept') AS job \gset
SELECT wait_job(:job, '{running,done,dead}');
SELECT pulse.cancel_job(:job);
SELECT pulse.job(:job)->'cancel_requested' AS cancel_requested;
SELECT wait_job(:job);
SELECT * FROM job_outcome(:job);
-- finished jobs cannot be canceled; unknown ids are NULL
SELECT pulse.submit_job('SELECT 1 AS one') AS job \gset
SELECT wait_job(:job);
SELECT pulse.cancel_job(:job);
SELECT pulse.job(-1) IS NULL AS unknown_job, pulse.cancel_job(-1) IS NULL AS unknown_cancel;
SELECT pulse.job(NULL) IS NULL AS null_job;

-- roles and tenants: a job runs as its submitter, with its tenant, and is
-- visible only to it (in that tenant) and to superusers
CREATE ROLE regress_pulse_alice;
CREATE ROLE regress_pulse_bob;
GRANT USAGE ON SCHEMA pulse TO regress_pulse_alice, regress_pulse_bob;
GRANT SELECT ON report_data TO regress_pulse_alice;
SET pulse.job_max_attempts = 1;
SET ROLE regress_pulse_alice;
SET pulse.tenant = 'acme';
SELECT pulse.submit_job(
    'SELECT current_user AS who, current_setting(''pulse.tenant'') AS tenant,
            count(*) AS n FROM report_data') AS alice_job \gset
SELECT pulse.submit_job('SELECT 1 AS one', idempotency_key => 'report-1') AS alice_keyed \gset
SELECT pulse.job(:alice_job)->>'state' IS NOT NULL AS alice_sees_her_job;
SET pulse.tenant = 'globex';
SELECT pulse.job(:alice_job) IS NULL AS hidden_in_other_tenant;
SELECT pulse.cancel_job(:alice_job) IS NULL AS not_cancelable_in_other_tenant;
SELECT * FROM pulse.jobs;
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_pulse_bob;
SET pulse.tenant = 'acme';
SELECT pulse.job(:alice_job) IS NULL AS hidden_from_bob;
SELECT pulse.cancel_job(:alice_job) IS NULL AS not_cancelable_by_bob;
SELECT pulse.submit_job('SELECT 1 AS one', idempotency_key => 'report-1') <> :alice_keyed AS bob_other_job;
SELECT pulse.submit_job('SELECT count(*) FROM report_data') AS bob_job \gset
RESET ROLE;
RESET pulse.tenant;
RESET pulse.job_max_attempts;
SELECT wait_job(:alice_job);
SELECT state, result FROM job_outcome(:alice_job);
SELECT wait_job(:bob_job);
SELECT state, error, sqlstate FROM job_outcome(:bob_job);
SELECT pulse.job(:bob_job)->>'submitted_by' AS superuser_sees_all;
-- a job cannot take back the worker's identity
SET pulse.job_max_attempts = 1;
SET ROLE regress_pulse_alice;
SELECT pulse.submit_job('SELECT set_config(''role'', ''none'', true)') AS job \gset
RESET ROLE;
RESET pulse.job_max_attempts;
SELECT wait_job(:job);
SELECT state, error, sqlstate FROM job_outcome(:job);

-- errors
SELECT pulse.submit_job('SELEC 1');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT 1; SELECT 2');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('DELETE FROM report_data');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('WITH d AS (DELETE FROM report_data RETURNING *) SELECT * FROM d');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT * FROM report_data FOR UPDATE');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT * INTO copy_of_data FROM report_data');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT 1', '{"a": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT 1', '1');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT 1', timeout => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT 1', timeout => '-5 minutes');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT 1', timeout => '30 days');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT 1', idempotency_key => '');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT 1', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.submit_job('SELECT 1', '[]', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SET pulse.job_max_attempts = 0;
\echo :LAST_ERROR_SQLSTATE

-- cleanup
DELETE FROM pulse.jobs;
DROP FUNCTION wait_job(bigint, text[]);
DROP FUNCTION job_outcome(bigint);
DROP TABLE report_data;
REVOKE USAGE ON SCHEMA pulse FROM regress_pulse_alice, regress_pulse_bob;
DROP ROLE regress_pulse_alice;
DROP ROLE regress_pulse_bob;
