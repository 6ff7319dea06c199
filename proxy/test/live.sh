#!/usr/bin/env bash
# End-to-end tests of live endpoints (issue 18), in `make test` as suite
# proxy-live: one PostgreSQL (proxy/test/fixture.sql and live_fixture.sql)
# and three proxies without Redis:
#   A  two loops, heartbeat 1 s, retry hint 1500 ms (most checks)
#   C  live_max_streams 3, live_max_streams_tenant 2, live_min_interval_ms
#      1000, heartbeat 0.5 s (caps and coalescing)
#   D  ratelimit_read tenant=1/2 (opening a stream counts against the limit)
# The checks themselves are in proxy/test/live.py (see its docstring).
# Prints TAP lines; PULSE_PROXY_BIN, PULSE_TEST_PORT, PULSE_TEST_TMP as e2e.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. proxy/test/lib.sh

proxy_test_setup live 26200
SECRET=live-$$
declare -A PIDS=()
proxy_test_exit_traps
proxy_test_db pulse_live
psql_su -d pulse_live -f proxy/test/live_fixture.sql >/dev/null || proxy_test_abort "cannot load the live fixture"

start_proxy() { # start_proxy NAME PORT THREADS [extra config lines]
	proxy_test_start "$1" "$2" "$3" pulse_live "invalidation_reconnect_ms: 500
${4:-}"
	PIDS[$1]=$STARTED_PID
}
PORT_A=$HTTP_PORT
PORT_C=$(free_port $((PORT_A + 1)))
PORT_D=$(free_port $((PORT_C + 1)))
start_proxy a "$PORT_A" 2 "live_heartbeat_ms: 1000
live_retry_ms: 1500"
start_proxy c "$PORT_C" 1 "live_max_streams: 3
live_max_streams_tenant: 2
live_min_interval_ms: 1000
live_heartbeat_ms: 500"
start_proxy d "$PORT_D" 1 "ratelimit_read: tenant=1/2"

/usr/bin/python3 proxy/test/live.py "host=127.0.0.1 port=$PGPORT dbname=pulse_live user=postgres" "$SECRET" \
	"http://127.0.0.1:$PORT_A" "http://127.0.0.1:$PORT_C" "http://127.0.0.1:$PORT_D" "${PIDS[a]}" "${PIDS[d]}"
rc=$?
if grep -q -E "AddressSanitizer|runtime error|LeakSanitizer" "$TMP"/a.err "$TMP"/c.err "$TMP"/d.err 2>/dev/null; then
	echo "not ok - a sanitizer report in the proxies' stderr"
	grep -h -A20 -E "AddressSanitizer|runtime error|LeakSanitizer" "$TMP"/*.err | head -40 | sed 's/^/# /'
	rc=1
fi
exit $rc
