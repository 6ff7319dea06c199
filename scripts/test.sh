#!/usr/bin/env bash
# `make test`: every suite against real servers on loopback.
#   1. pg_regress (sql/ <-> expected/) on a throwaway PostgreSQL 15 cluster
#   2. unit tests of the pure C pieces, under ASan/UBSan
#   3. a bounded libFuzzer run of the cursor decoder
#   4. scripted end-to-end tests (extension/test/*.sh), each with its own cluster
#   5. pulse-proxy: unit tests under ASan/UBSan, then proxy/test/e2e.sh twice,
#      against build/pulse-proxy and against build/asan/pulse-proxy (each run
#      starts its own PostgreSQL and redis-server)
#   6. the load-test harness: bench/smoke.sh runs every scenario of
#      bench/run.sh against the proxy, Express and Flask on a tiny dataset
# Prints one line per suite and ends with "N passed, M failed"; exits non-zero
# if any suite failed.  The extension must already be built (`make test`
# does that first); it is installed into a private copy of the PostgreSQL
# tree under the test directory (scripts/pgroot.sh), never system-wide.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TMP=$(mktemp -d /tmp/pulse-test.XXXXXX)
chmod 755 "$TMP"
PORT=$(free_port "${PULSE_TEST_PORT_BASE:-25400}")
PG="$TMP/pg"
cleanup() {
	scripts/cluster.sh destroy "$PG" >/dev/null 2>&1
	if [ -n "${KEEP_TMP:-}" ]; then echo "test: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

passed=0
failed=0
failures=()
suite() {
	local name=$1
	shift
	local t0=$SECONDS
	echo "=== $name"
	if "$@"; then
		passed=$((passed + 1))
		echo "--- $name: ok ($((SECONDS - t0)) s)"
	else
		failed=$((failed + 1))
		failures+=("$name")
		echo "--- $name: FAILED ($((SECONDS - t0)) s)"
	fi
}

PGBIN=$(BUILD_LOG=build/build.log scripts/pgroot.sh "$TMP/pgroot") || exit 1
export PGBIN
PULSE_FSYNC=off PULSE_SYNC_COMMIT=off PULSE_CRON_DB=pulse_regress \
	scripts/cluster.sh start "$PG" "$PORT" || exit 1

regress() {
	make --no-print-directory installcheck \
		PGHOST="$PG" PGPORT="$PORT" PGUSER=postgres \
		EXTRA_REGRESS_OPTS="--outputdir=$TMP/regress" ${REGRESS:+REGRESS="$REGRESS"}
	local rc=$?
	if [ $rc -ne 0 ] && [ -f "$TMP/regress/regression.diffs" ]; then
		head -n 300 "$TMP/regress/regression.diffs"
	fi
	return $rc
}
suite "pg_regress" regress
scripts/cluster.sh stop "$PG" >/dev/null

suite "unit (ASan/UBSan)" make --no-print-directory unit
fuzz() {
	if make --no-print-directory fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-15}" >"$TMP/fuzz.log" 2>&1; then
		grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$TMP/fuzz.log"
	else
		tail -n 80 "$TMP/fuzz.log"
		return 1
	fi
}
suite "fuzz cursor decoder (${FUZZ_SECONDS:-15} s)" fuzz

for t in extension/test/*.sh; do
	[ -e "$t" ] || continue
	mkdir -p "$TMP/$(basename "$t" .sh)"
	suite "$(basename "$t")" env PULSE_TEST_PORT="$(free_port $((PORT + 1)))" \
		PULSE_TEST_TMP="$TMP/$(basename "$t" .sh)" bash "$t"
done

suite "proxy unit (ASan/UBSan)" make --no-print-directory proxy-unit
prom_rules() { promtool check rules proxy/prometheus/pulse-rules.yml && (cd proxy/prometheus && promtool test rules pulse-rules.test.yml); }
suite "prometheus rules (promtool check + test)" prom_rules
proxy_e2e() { # proxy_e2e MAKE_TARGET BINARY
	make --no-print-directory "$1" >/dev/null || return 1
	mkdir -p "$TMP/proxy-e2e-$1"
	PULSE_PROXY_BIN=$2 PULSE_TEST_PORT="$(free_port $((PORT + 1)))" \
		PULSE_TEST_TMP="$TMP/proxy-e2e-$1" bash proxy/test/e2e.sh
}
suite "proxy e2e (build/pulse-proxy)" proxy_e2e proxy build/pulse-proxy
suite "proxy e2e (build/asan/pulse-proxy)" proxy_e2e proxy-asan build/asan/pulse-proxy
suite "load-test harness (bench/smoke.sh: every scenario, 3 servers, tiny dataset)" \
	bash bench/smoke.sh "$TMP/bench-smoke" "$(free_port $((PORT + 300)))"

echo
[ $failed -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
