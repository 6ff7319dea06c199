#!/usr/bin/env bash
# The differential oracle of the materialized aggregates (issue 17): random
# aggregates over every supported type and random batches of writes, each
# refresh compared with the defining query (EXCEPT ALL both ways and the
# exact text of every row); then concurrent writers while the background
# worker refreshes, with a reader checking invariants every committed state
# keeps.  The generator and the checks are in aggregate_oracle.py (its
# docstring says what each phase does).
#
# Starts its own cluster on PULSE_TEST_PORT in PULSE_TEST_TMP (destroyed at
# exit), with pulse.worker_naptime = 20ms.  Knobs:
#   FUZZ_SECONDS=N       run time (default 15: 70% random cases, 30% concurrent)
#   AGG_ORACLE_SEED=N    replay a run (the seed is printed at the start)
#   AGG_ORACLE_CASE=N    replay one case of a run (printed on failure)
# A failing case is shrunk and written to $PULSE_TEST_TMP/aggregate_oracle_case.sql
# (a psql script), and printed.  Prints "ok N - ..." lines, then "N passed, M
# failed"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. scripts/ext_test.sh
# Debian's python3 has psycopg2 (python3-psycopg2, scripts/deps.sh)
PY=${PULSE_PYTHON:-/usr/bin/python3}

ext_test_cluster PULSE_SYNC_COMMIT=off
psql -X -q -d postgres -v ON_ERROR_STOP=1 \
	-c "ALTER SYSTEM SET pulse.worker_naptime = '20ms'" -c "SELECT pg_reload_conf()" \
	-c "CREATE DATABASE pulse" >/dev/null &&
	psql -X -q -d pulse -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pulse" >/dev/null ||
	{ echo "not ok 1 - set up the database"; echo "0 passed, 1 failed"; exit 1; }

"$PY" extension/test/aggregate_oracle.py --host "$PG" --port "$PORT" --dbname pulse \
	--seconds "${FUZZ_SECONDS:-15}" --out "$TMP/aggregate_oracle_case.sql" \
	${AGG_ORACLE_SEED:+--seed "$AGG_ORACLE_SEED"} ${AGG_ORACLE_CASE:+--case "$AGG_ORACLE_CASE"}
rc=$?
if [ $rc -ne 0 ]; then
	echo "# last lines of the server log:"
	tail -n 20 "$PG/server.log" | sed 's/^/# /'
fi
exit $rc
