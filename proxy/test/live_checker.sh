#!/usr/bin/env bash
# Live streams against a history of commits (issue 18), in `make test` as
# suite proxy-live-checker: one PostgreSQL, one Redis, proxy A (two loops,
# with Redis: refreshes fill the cache, streams and refreshes cross loops)
# and proxy B (one loop, no Redis), and proxy/test/live_checker.py: writers
# change keyed rows for LIVE_SECONDS (15) while ~100 subscribers stream
# three endpoints over 60 keys; every pushed state must be one the database
# had, in commit order, and each subscriber's last state the final one (see
# the script's docstring).  LIVE_SEED replays a run's choices.
# Prints TAP lines; PULSE_PROXY_BIN, PULSE_TEST_PORT, PULSE_TEST_TMP as e2e.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. proxy/test/lib.sh

proxy_test_setup live-checker 26100
SECRET=live-checker-$$
PIDS=()
REDIS_PID=
proxy_test_exit_traps
proxy_test_db pulse_live
psql_su -d pulse_live -f proxy/test/live_fixture.sql >/dev/null || proxy_test_abort "cannot load the live fixture"

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
wait_for 10 redis-cli -p "$REDIS_PORT" ping || proxy_test_abort "cannot start redis-server on port $REDIS_PORT"

PORT_B=$(free_port $((REDIS_PORT + 1)))
start_proxy() { # start_proxy NAME PORT THREADS [extra config lines]
	proxy_test_start "$1" "$2" "$3" pulse_live "${4:-}"
	PIDS+=("$STARTED_PID")
}
start_proxy a "$HTTP_PORT" 2 "redis_url: redis://127.0.0.1:$REDIS_PORT"
start_proxy b "$PORT_B" 1 ""

/usr/bin/python3 proxy/test/live_checker.py "host=127.0.0.1 port=$PGPORT dbname=pulse_live user=postgres" "$SECRET" "$TMP" \
	"http://127.0.0.1:$HTTP_PORT" "http://127.0.0.1:$PORT_B"
rc=$?
for f in "$TMP"/live-checker-*.json; do [ -f "$f" ] && mkdir -p build && cp "$f" build/ && echo "# kept build/$(basename "$f")"; done
if grep -q -E "AddressSanitizer|runtime error" "$TMP"/a.err "$TMP"/b.err 2>/dev/null; then
	echo "not ok - a sanitizer report in the proxies' stderr"
	rc=1
fi
exit $rc
