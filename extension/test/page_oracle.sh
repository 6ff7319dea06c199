#!/usr/bin/env bash
# The page oracle: pulse.page against the plain ORDER BY of the same query,
# on random tables, query shapes, orders, arguments and page sizes, forward
# and backward; foreign, tampered and truncated cursors must be refused with
# SQLSTATE 22023.  The generator and the checks are in page_oracle.py (its
# docstring says what a case is).
#
# Starts its own cluster (scripts/cluster.sh) on PULSE_TEST_PORT in
# PULSE_TEST_TMP and destroys it at exit.  Knobs (environment):
#   FUZZ_SECONDS=N       generate cases for N seconds (default 15)
#   PAGE_ORACLE_SEED=S   the seed (default: random, printed at the start)
#   PAGE_ORACLE_CASE=N   run only case N of seed S
#   PAGE_ORACLE_OUT=DIR  where the minimal failing case is written
#                        (default build/; it is also printed)
# Prints TAP lines ("ok 1 - ..." or "not ok 1 - ..." with the seed and the
# minimal case) and exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

PORT=${PULSE_TEST_PORT:?PULSE_TEST_PORT is not set}
TMP=${PULSE_TEST_TMP:?PULSE_TEST_TMP is not set}
PG="$TMP/pg"
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

# Debian's python3 has psycopg2; a python3 earlier on the PATH may not.
PY=
for p in /usr/bin/python3 python3; do
	if "$p" -c 'import psycopg2' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
	echo "not ok 1 - python3 with psycopg2 (Debian: python3-psycopg2) is missing"
	echo "0 passed, 1 failed"
	exit 1
fi

mkdir -p "$TMP"
cleanup() { scripts/cluster.sh destroy "$PG" >/dev/null 2>&1; }
trap cleanup EXIT

PULSE_FSYNC=off PULSE_SYNC_COMMIT=off scripts/cluster.sh start "$PG" "$PORT" >/dev/null || {
	echo "not ok 1 - start the cluster"
	echo "0 passed, 1 failed"
	exit 1
}
"$PGBIN/psql" -X -q -h "$PG" -p "$PORT" -U postgres -d postgres \
	-c "CREATE DATABASE pulse_oracle" >/dev/null &&
	"$PGBIN/psql" -X -q -h "$PG" -p "$PORT" -U postgres -d pulse_oracle \
		-c "CREATE EXTENSION pulse" >/dev/null || {
	echo "not ok 1 - create the extension"
	echo "0 passed, 1 failed"
	exit 1
}

"$PY" extension/test/page_oracle.py --host "$PG" --port "$PORT" --dbname pulse_oracle \
	--seconds "${FUZZ_SECONDS:-15}" --out "${PAGE_ORACLE_OUT:-build}" \
	${PAGE_ORACLE_SEED:+--seed "$PAGE_ORACLE_SEED"} \
	${PAGE_ORACLE_CASE:+--case "$PAGE_ORACLE_CASE"}
