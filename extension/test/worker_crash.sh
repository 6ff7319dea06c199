#!/usr/bin/env bash
# End-to-end test of the materialized-aggregate workers under failure.
#
# Starts its own cluster (scripts/cluster.sh) on PULSE_TEST_PORT in
# PULSE_TEST_TMP and destroys it at exit.  An incremental aggregate is made
# slow deterministically: its query calls slow_id(v), which for v < 0 sleeps
# for as long as the file pulse_test_slow exists in the data directory.  With
# a refresh stuck there, the test kills the worker (pg_terminate_backend,
# then kill -9 and the postmaster's crash restart) and restarts the server
# with -m immediate, and checks each time that readers were not blocked, that
# the aggregate still has its old, consistent content, that no pending
# change was lost, and that the launcher and the worker come back.  Then it
# lets the refresh finish and checks the result, and also checks that a
# failing aggregate does not kill the worker, that SIGHUP changes which
# databases have a worker, and that DROP DATABASE works with a worker
# connected.
#
# Prints "ok N - ..." / "not ok N - ..." lines, then "N passed, M failed";
# exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. scripts/ext_test.sh

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SLOW="$PG/data/pulse_test_slow"

ext_test_cluster
export PGDATABASE=pulse

as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "${PULSE_PG_OS_USER:-postgres}" -- "$@"
	else
		"$@"
	fi
}

n=0
passed=0
failed=0
check() {
	local desc=$1
	shift
	n=$((n + 1))
	if "$@"; then
		passed=$((passed + 1))
		echo "ok $n - $desc"
	else
		failed=$((failed + 1))
		echo "not ok $n - $desc"
	fi
}

# q SQL: the output of the last statement, or nothing on error
q() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1" 2>/dev/null; }
is() { [ "$(q "$1")" = "$2" ]; }

worker_pid() {
	q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pulse worker' AND datname = '${1:-pulse}'"
}
launcher_pid() { q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pulse launcher'"; }
has_worker() { [ -n "$(worker_pid "${1:-pulse}")" ]; }
no_worker() { [ -z "$(worker_pid "${1:-pulse}")" ]; }
has_launcher() { [ -n "$(launcher_pid)" ]; }
worker_is_not() { [ "$(worker_pid)" != "$1" ]; }
# the worker is sleeping inside slow_id, i.e. in the middle of a refresh
refresh_stuck() {
	[ -n "$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pulse worker'
	           AND datname = 'pulse' AND wait_event = 'PgSleep'")" ]
}
server_up() { q "SELECT 1" | grep -q 1; }
# rows in which ev_sum and table $1 differ
differs_from() {
	q "SELECT count(*) FROM ((TABLE ev_sum EXCEPT ALL TABLE $1)
	                         UNION ALL (TABLE $1 EXCEPT ALL TABLE ev_sum)) d"
}
same_as() { [ "$(differs_from "$1")" = "0" ]; }
pending() { q "SELECT pending_changes FROM pulse.aggregates WHERE name = 'ev_sum'"; }
has_pending() { [ "$(pending)" -gt 0 ] 2>/dev/null; }
fresh_and_done() {
	[ "$(pending)" = "0" ] &&
		[ "$(q "SELECT count(*) FROM ((TABLE ev_sum EXCEPT ALL TABLE expected)
		        UNION ALL (TABLE expected EXCEPT ALL TABLE ev_sum)) d")" = "0" ]
}

psql -X -q -d postgres -c "CREATE DATABASE pulse" || exit 1
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || { echo "not ok 1 - set up"; echo "0 passed, 1 failed"; exit 1; }
CREATE EXTENSION pulse;
CREATE TABLE ev (id bigserial PRIMARY KEY, g int NOT NULL, v int NOT NULL);
CREATE INDEX ON ev (g);
INSERT INTO ev (g, v) SELECT i % 50, i FROM generate_series(1, 50000) i;
-- Declared immutable so that the aggregate is incremental; for v < 0 it
-- waits while the file pulse_test_slow exists (not snapshot-bound).
CREATE FUNCTION slow_id(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF x < 0 THEN
        WHILE (pg_stat_file('pulse_test_slow', true)).size IS NOT NULL LOOP
            PERFORM pg_sleep(0.1);
        END LOOP;
    END IF;
    RETURN x;
END
$$;
SELECT pulse.create_aggregate('ev_sum',
    'SELECT g, count(*) AS n, sum(slow_id(v)) AS s FROM ev GROUP BY g',
    '200 milliseconds');
CREATE TABLE old_state AS TABLE ev_sum;
SQL

check "the launcher starts a worker for the database" wait_for 20 has_worker
check "the aggregate is incremental" is "SELECT mode FROM pulse.aggregates WHERE name = 'ev_sum'" incremental

# --- a refresh stuck in the middle -------------------------------------------
touch "$SLOW"
q "BEGIN;
   INSERT INTO ev (g, v) VALUES (7, -1), (1000, 5);
   UPDATE ev SET v = v + 1 WHERE g = 3;
   DELETE FROM ev WHERE g = 5 AND id % 2 = 0;
   COMMIT" >/dev/null
check "the worker starts the refresh and is held in the middle of it" wait_for 20 refresh_stuck
check "readers are not blocked during the refresh (lock_timeout 1s)" \
	is "SET lock_timeout = '1s'; SELECT count(*) > 0 FROM ev_sum" t
check "readers see the old content during the refresh" same_as old_state
check "writers are not blocked during the refresh (lock_timeout 1s)" \
	is "SET lock_timeout = '1s'; WITH i AS (INSERT INTO ev (g, v) VALUES (9, 100), (2000, 1) RETURNING 1) SELECT count(*) FROM i" 2

# --- pg_terminate_backend ----------------------------------------------------
pid=$(worker_pid)
check "pg_terminate_backend ends the worker" is "SELECT pg_terminate_backend($pid)" t
wait_for 10 worker_is_not "$pid"
check "after pg_terminate_backend: old, consistent content" same_as old_state
check "after pg_terminate_backend: pending changes kept" has_pending
check "the launcher starts a new worker, which resumes the refresh" \
	wait_for 20 refresh_stuck
check "the new worker is another process" test "$(worker_pid)" != "$pid"

# --- kill -9: the postmaster's crash restart ---------------------------------
pid=$(worker_pid)
lpid=$(launcher_pid)
kill -9 "$pid"
sleep 1
check "kill -9 of the worker: the server recovers" wait_for 60 server_up
check "after kill -9: old, consistent content" same_as old_state
check "after kill -9: pending changes kept" has_pending
check "after kill -9: the launcher is back" wait_for 30 has_launcher
check "after kill -9: the launcher is another process" test "$(launcher_pid)" != "$lpid"
check "after kill -9: a worker resumes the refresh" wait_for 30 refresh_stuck

# --- pg_ctl restart -m immediate ---------------------------------------------
as_owner "$PGBIN/pg_ctl" -D "$PG/data" -l "$PG/server.log" -m immediate -w -t 60 restart >/dev/null 2>&1
check "pg_ctl restart -m immediate during the refresh: the server is back" wait_for 60 server_up
check "after the immediate restart: old, consistent content" same_as old_state
check "after the immediate restart: pending changes kept" has_pending
check "after the immediate restart: launcher and worker are back, refresh resumed" \
	wait_for 30 refresh_stuck

# --- let it finish -------------------------------------------------------------
rm -f "$SLOW"
q "CREATE TABLE expected AS SELECT g, count(*) AS n, sum(v) AS s FROM ev GROUP BY g" >/dev/null
check "all changes, including those made during the refresh, are applied" \
	wait_for 30 fresh_and_done
check "the failed attempts left no error behind" \
	is "SELECT last_error IS NULL FROM pulse.aggregates WHERE name = 'ev_sum'" t

# --- a failing aggregate does not stop the worker ----------------------------
pid=$(worker_pid)
q "SELECT pulse.create_aggregate('ev_inv', 'SELECT g, sum(100 / v) AS inv FROM ev GROUP BY g', '200 milliseconds')" >/dev/null
q "INSERT INTO ev (g, v) VALUES (11, 0), (4000, 7)" >/dev/null
check "a failing refresh is recorded with its error" wait_for 20 \
	is "SELECT count(*) > 0 FROM pulse.aggregate_runs WHERE aggregate = 'ev_inv' AND error = 'division by zero'" t
q "INSERT INTO ev (g, v) VALUES (3000, 3)" >/dev/null
q "DROP TABLE expected; CREATE TABLE expected AS SELECT g, count(*) AS n, sum(v) AS s FROM ev GROUP BY g" >/dev/null
check "the worker survives it and keeps refreshing other aggregates" wait_for 20 fresh_and_done
check "it is still the same worker process" test "$(worker_pid)" = "$pid"
check "the failed aggregate keeps its previous contents" \
	is "SELECT count(*) FROM ev_inv WHERE g = 4000" 0

# --- SIGHUP: pulse.database_names ---------------------------------------------
q "ALTER SYSTEM SET pulse.database_names = 'postgres'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
check "after SIGHUP, a database no longer named loses its worker" wait_for 20 no_worker
q "ALTER SYSTEM RESET pulse.database_names" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
check "after SIGHUP, a database named again gets its worker back" wait_for 20 has_worker

# --- a database without the extension; DROP DATABASE with a worker -----------
check "a database without pulse has no worker" no_worker postgres
psql -X -q -d postgres -c "CREATE DATABASE dropme" >/dev/null
psql -X -q -d dropme -c "CREATE EXTENSION pulse" \
	-c "CREATE TABLE t (k int, v int)" \
	-c "SELECT pulse.create_aggregate('t_sum', 'SELECT k, sum(v) FROM t GROUP BY k')" >/dev/null
check "create_aggregate wakes the launcher: the new database gets a worker" \
	wait_for 20 has_worker dropme
check "DROP DATABASE succeeds although a worker was connected" \
	psql -X -q -d postgres -v ON_ERROR_STOP=1 -c "DROP DATABASE dropme"

if [ "$failed" -gt 0 ]; then
	echo "# last lines of the server log:"
	tail -n 60 "$PG/server.log" | sed 's/^/# /'
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
