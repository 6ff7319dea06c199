#!/usr/bin/env bash
# Hostile HTTP against pulse-proxy: the corpus of proxy/test/hostile.corpus
# (paths, duplicate and conflicting headers, request smuggling, header counts
# and sizes, JWT variants, methods) over raw HTTP/1 sockets, the items that
# apply to HTTP/2 over h2c (curl --http2-prior-knowledge, nghttp, and the
# Upgrade: h2c path), the ETag of each representation, then a seeded fuzz
# loop of mutated requests (FUZZ_SECONDS, default 10; FUZZ_SEED to replay).
# Checks are made by proxy/test/hostile.py; see its header for the oracle.
#
#   PULSE_PROXY_BIN  proxy binary (default build/pulse-proxy; scripts/test.sh
#                    runs it against build/asan/pulse-proxy too)
#   PULSE_TEST_PORT  PostgreSQL port (default: a free one from 25700)
#   PULSE_TEST_TMP   scratch directory (default: a fresh one, removed at exit)
#   HOSTILE_ONLY     a regular expression: only the corpus cases it matches
#                    (and the h2c and ETag checks if it matches "h2c", "ETag")
#
# Starts its own cluster, redis-server and proxy (like e2e.sh), prints
# "ok N - ..." / "not ok N - ..." and ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. proxy/test/lib.sh

proxy_test_setup hostile 25700
SECRET=hostile-secret-$$
PROXY_PID=
REDIS_PID=

proxy_test_exit_traps
proxy_test_db pulse_hostile
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
wait_for 10 redis-cli -p "$REDIS_PORT" ping || proxy_test_abort "cannot start redis-server on port $REDIS_PORT"

cat >"$TMP/proxy.yaml" <<CONF
# pulse-proxy configuration of the hostile-request test
listen: 127.0.0.1:$HTTP_PORT
pg_url: host=127.0.0.1 port=$PGPORT dbname=pulse_hostile user=pulse_proxy connect_timeout=2
threads: 2
pool_size: 2
body_limit: 65536
max_header_bytes: 8192
request_timeout_ms: 3000
access_log: $TMP/access.log
redis_url: redis://127.0.0.1:$REDIS_PORT
CONF
PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/proxy.yaml" 2>"$TMP/proxy.err" &
PROXY_PID=$!
wait_for 20 curl -sf "http://127.0.0.1:$HTTP_PORT/ready" || proxy_test_abort "the proxy did not become ready: $(tail -n 5 "$TMP/proxy.err")"

python3 proxy/test/hostile.py --port "$HTTP_PORT" --secret "$SECRET" --corpus proxy/test/hostile.corpus \
	--fuzz-seconds "${FUZZ_SECONDS:-10}" ${FUZZ_SEED:+--seed "$FUZZ_SEED"} ${HOSTILE_ONLY:+--only "$HOSTILE_ONLY"} \
	--tmp "$TMP" --pid "$PROXY_PID"
rc=$?

# the proxy stops cleanly, and said nothing but JSON log lines (no sanitizer report, no h2o message)
kill -TERM "$PROXY_PID"
wait "$PROXY_PID"
stop_rc=$?
PROXY_PID=
read -r TAP_N TAP_PASSED TAP_FAILED <"$TMP/hostile.counts" 2>/dev/null || { TAP_N=1 TAP_PASSED=0 TAP_FAILED=1; echo "not ok 1 - hostile.py did not finish"; }
tap_check "SIGTERM: the proxy exits 0 (it was alive through everything above)" [ "$stop_rc" = 0 ]
tap_check "the proxy's stderr has only JSON log lines (no sanitizer report)" \
	eval '! grep -a -v "^{" "$TMP/proxy.err" | grep -q . || { grep -a -v "^{" "$TMP/proxy.err" | head -n 20; false; }'
tap_done && [ "$rc" = 0 ]
