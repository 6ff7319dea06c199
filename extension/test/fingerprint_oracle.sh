#!/usr/bin/env bash
# Fingerprint and normalize oracle: extension/test/fingerprint_oracle.py
# against a real server, over the statements of fingerprint_corpus.sql and
# seeded random mutations of them (literal, whitespace, comment and case
# changes and IN-list lengths keep the fingerprint; identifier and operator
# changes change it; normalize's output parses, keeps the fingerprint and is
# a fixpoint).
#
# Starts its own cluster on PULSE_TEST_PORT in PULSE_TEST_TMP (destroyed at
# exit).  FUZZ_SECONDS (default 10) bounds the random part, FUZZ_SEED
# replays a run (the seed is printed first).  On failure the shrunk case is
# printed and written to $PULSE_TEST_TMP/fingerprint_oracle_failure.txt.
# Prints "ok N - ..." lines, then "N passed, M failed"; exits non-zero if
# anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

PORT=${PULSE_TEST_PORT:?PULSE_TEST_PORT is not set}
TMP=${PULSE_TEST_TMP:?PULSE_TEST_TMP is not set}
PG="$TMP/pg"
mkdir -p "$TMP"
trap 'scripts/cluster.sh destroy "$PG" >/dev/null 2>&1' EXIT

PULSE_FSYNC=off PULSE_SYNC_COMMIT=off scripts/cluster.sh start "$PG" "$PORT" >/dev/null ||
	{ echo "not ok 1 - start the cluster"; echo "0 passed, 1 failed"; exit 1; }
eval "$(scripts/cluster.sh env "$PG")"
export PGDATABASE=pulse
psql -X -q -d postgres -c "CREATE DATABASE pulse" &&
	psql -X -q -c "CREATE EXTENSION pulse" ||
	{ echo "not ok 1 - set up the database"; echo "0 passed, 1 failed"; exit 1; }

# Debian's python3, which has python3-psycopg2 (scripts/deps.sh)
out=$(ORACLE_OUT="$TMP/fingerprint_oracle_failure.txt" FUZZ_SECONDS="${FUZZ_SECONDS:-10}" \
	/usr/bin/python3 extension/test/fingerprint_oracle.py)
rc=$?
echo "$out"
passed=$(grep -c '^ok ' <<<"$out")
failed=$(grep -c '^not ok ' <<<"$out")
[ $rc -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "$passed passed, $failed failed"
[ $rc -eq 0 ] && [ "$failed" -eq 0 ]
