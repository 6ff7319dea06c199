#!/usr/bin/env bash
# pg_cron scheduling of aggregate refreshes, for real: an aggregate created
# with a cron schedule is registered as a pg_cron job, pg_cron's own worker
# runs the refresh at the next minute boundary, pulse's workers leave it
# alone in between, and drop_aggregate unschedules it.
#
# Starts its own cluster on PULSE_TEST_PORT in PULSE_TEST_TMP (destroyed at
# exit).  Waits at most 75 s for the minute boundary: pg_cron 1.4 (Debian 12)
# schedules by the minute.  Prints "ok N - ..." lines, then "N passed, M
# failed"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. scripts/ext_test.sh

ext_test_cluster PULSE_CRON_DB=pulse
export PGDATABASE=pulse PGOPTIONS="-c client_min_messages=warning"
q() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

psql -X -q -d postgres -c "CREATE DATABASE pulse" &&
	q "CREATE EXTENSION pulse; CREATE EXTENSION pg_cron" &&
	q "CREATE TABLE sales (id int PRIMARY KEY, region text NOT NULL, amount int NOT NULL);
	   INSERT INTO sales SELECT i, 'r' || (i % 5), i FROM generate_series(1, 100) i" ||
	{ echo "not ok 1 - set up the database"; echo "0 passed, 1 failed"; exit 1; }

AGG_QUERY="SELECT region, count(*) AS n, sum(amount) AS total FROM sales GROUP BY region"
# rows in which the aggregate and its query differ
stale_rows() {
	q "SELECT count(*) FROM ((TABLE region_totals EXCEPT $AGG_QUERY) UNION ALL ($AGG_QUERY EXCEPT TABLE region_totals)) d"
}
cron_runs() {
	q "SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	   WHERE j.jobname = 'pulse_aggregate:public.region_totals' AND d.status = '$1'"
}

tap_check "create_aggregate with a schedule" \
	test "$(q "SELECT pulse.create_aggregate('region_totals', '$AGG_QUERY', schedule => '* * * * *')")" != ""
tap_check "the refresh is a pg_cron job in this database" \
	test "$(q "SELECT count(*) FROM cron.job WHERE jobname = 'pulse_aggregate:public.region_totals'
	             AND schedule = '* * * * *' AND database = 'pulse'
	             AND command = 'SELECT pulse.refresh_aggregate(''public.region_totals'', true)'")" = 1

q "INSERT INTO sales SELECT i, 'r' || (i % 7), i FROM generate_series(101, 150) i"
tap_check "writes leave the aggregate stale until the schedule fires" test "$(stale_rows)" -gt 0

wait_ran() { [ "$(cron_runs succeeded)" -ge 1 ] || [ "$(cron_runs failed)" -ge 1 ]; }
wait_for 75 wait_ran
tap_check "pg_cron ran the refresh at the minute boundary" test "$(cron_runs succeeded)" -ge 1
tap_check "no pg_cron run failed" test "$(cron_runs failed)" = 0
tap_check "the aggregate equals its query after the scheduled refresh" test "$(stale_rows)" = 0
tap_check "the run is recorded as a full refresh" \
	test "$(q "SELECT count(*) FROM pulse.aggregate_runs
	             WHERE aggregate_id = (SELECT id FROM pulse.aggregate_defs WHERE relid = 'region_totals'::regclass)
	               AND mode = 'full' AND error IS NULL")" -ge 1

# The next run is about a minute away: pulse's workers (naptime 1 s) must not
# refresh a scheduled aggregate in the meantime.
q "INSERT INTO sales SELECT i, 'r' || (i % 3), i FROM generate_series(151, 160) i"
sleep 3
tap_check "pulse's workers leave a scheduled aggregate to pg_cron" test "$(stale_rows)" -gt 0

q "SELECT pulse.drop_aggregate('region_totals')" >/dev/null
tap_check "drop_aggregate unschedules the job" \
	test "$(q "SELECT count(*) FROM cron.job WHERE jobname = 'pulse_aggregate:public.region_totals'")" = 0

tap_done
