# scripts/ext_test.sh: the start that the scripted tests of the extension
# (extension/test/*.sh) share.  Source it from the repository root after
# scripts/lib.sh; it sets PORT and TMP (from PULSE_TEST_PORT and
# PULSE_TEST_TMP, see scripts/test.sh) and PG, the test's cluster directory,
# makes TMP and destroys the cluster at exit.

PORT=${PULSE_TEST_PORT:?PULSE_TEST_PORT is not set}
TMP=${PULSE_TEST_TMP:?PULSE_TEST_TMP is not set}
PG="$TMP/pg"
mkdir -p "$TMP"
trap 'scripts/cluster.sh destroy "$PG" >/dev/null 2>&1' EXIT

# ext_test_cluster [VAR=value...]: starts the cluster (fsync off, and the
# given scripts/cluster.sh settings) and exports PGHOST, PGPORT and PGUSER;
# on failure prints "not ok 1 - start the cluster" and exits
ext_test_cluster() {
	env PULSE_FSYNC=off "$@" scripts/cluster.sh start "$PG" "$PORT" >/dev/null || {
		echo "not ok 1 - start the cluster"
		echo "0 passed, 1 failed"
		exit 1
	}
	eval "$(scripts/cluster.sh env "$PG")"
}
