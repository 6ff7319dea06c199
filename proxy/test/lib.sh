# Shared setup of the proxy's end-to-end scripts (e2e.sh, http_hostile.sh).
# Source it after scripts/lib.sh, from the repository's top directory; it
# defines functions only.

# proxy_test_setup NAME DEFAULT_PGPORT: sets BIN (PULSE_PROXY_BIN, default
# build/pulse-proxy), exports LSAN_OPTIONS, sets TMP (PULSE_TEST_TMP, or a
# fresh /tmp/pulse-proxy-NAME.* with OWN_TMP=1 for the caller to remove),
# PGPORT (PULSE_TEST_PORT, or a free one from DEFAULT_PGPORT), HTTP_PORT,
# REDIS_PORT and PG (the cluster's directory).
proxy_test_setup() {
	BIN=${PULSE_PROXY_BIN:-build/pulse-proxy}
	# under ASan: h2o keeps per-thread caches of freed memory that LeakSanitizer
	# cannot see at exit; everything else must be freed
	export LSAN_OPTIONS="suppressions=$PWD/proxy/test/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
	OWN_TMP=
	if [ -z "${PULSE_TEST_TMP:-}" ]; then
		PULSE_TEST_TMP=$(mktemp -d "/tmp/pulse-proxy-$1.XXXXXX")
		OWN_TMP=1
	fi
	TMP=$PULSE_TEST_TMP
	mkdir -p "$TMP"
	chmod 755 "$TMP"
	PGPORT=${PULSE_TEST_PORT:-$(free_port "$2")}
	HTTP_PORT=$(free_port $((PGPORT + 1)))
	[ "$HTTP_PORT" != "$PGPORT" ] || HTTP_PORT=$(free_port $((PGPORT + 2)))
	REDIS_PORT=$(free_port $((HTTP_PORT + 1)))
	PG="$TMP/pg"
}

# proxy_test_kill PID: SIGTERM, and SIGKILL if it still runs after 5 s
proxy_test_kill() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
	kill -TERM "$1" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
}

# proxy_test_exit_traps: at exit, stop what the script started, as far as it set these: PROXY_PID and the
# values of the array PIDS (proxies: SIGTERM first), REDIS_PID and PAGE_PID (killed); destroy the cluster $PG;
# remove $TMP when the script made it. Also checks that the proxy binary exists.
proxy_test_exit_traps() {
	trap proxy_test_cleanup EXIT
	trap 'exit 130' INT TERM
	[ -x "$BIN" ] || proxy_test_abort "no proxy binary at $BIN (make proxy)"
}
proxy_test_cleanup() {
	local p
	proxy_test_kill "${PROXY_PID:-}"
	if declare -p PIDS >/dev/null 2>&1; then
		for p in "${PIDS[@]}"; do proxy_test_kill "$p"; done
	fi
	for p in ${REDIS_PID:-} ${PAGE_PID:-}; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	scripts/cluster.sh destroy "$PG" >/dev/null 2>&1
	[ -z "$OWN_TMP" ] || rm -rf "$TMP"
}

# proxy_test_abort REASON: the script's only TAP line, and exit 1
proxy_test_abort() {
	echo "not ok 1 - $1"
	echo "0 passed, 1 failed"
	exit 1
}

psql_su() { command psql -X -q -v ON_ERROR_STOP=1 -h "$PG" -p "$PGPORT" -U postgres "$@"; }

# proxy_test_db DBNAME: starts the cluster in $PG on $PGPORT and creates
# DBNAME with the pulse extension and proxy/test/fixture.sql (aborts the
# script on failure)
proxy_test_db() {
	PULSE_FSYNC=off PULSE_SYNC_COMMIT=off PULSE_CRON_DB=$1 scripts/cluster.sh start "$PG" "$PGPORT" >/dev/null ||
		proxy_test_abort "cannot start PostgreSQL"
	psql_su -d postgres -c "CREATE DATABASE $1" >/dev/null &&
		psql_su -d "$1" -c "CREATE EXTENSION pulse" >/dev/null &&
		psql_su -d "$1" -f proxy/test/fixture.sql >/dev/null ||
		proxy_test_abort "cannot install the extension and the fixture"
}

# proxy_test_start NAME PORT THREADS DBNAME [EXTRA]: writes $TMP/NAME.yaml (loopback, pool of 4, no access log, a
# 1 s invalidation delivery bound, then the EXTRA config lines), starts $BIN with PULSE_JWT_SECRET=$SECRET (stderr
# to $TMP/NAME.err), sets STARTED_PID and waits for /ready (aborts the script when it does not come)
proxy_test_start() {
	cat >"$TMP/$1.yaml" <<CONF
listen: 127.0.0.1:$2
pg_url: host=127.0.0.1 port=$PGPORT dbname=$4 user=pulse_proxy connect_timeout=2
threads: $3
pool_size: 4
access_log: "off"
invalidation_delivery_ms: 1000
${5:-}
CONF
	PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/$1.yaml" 2>>"$TMP/$1.err" &
	STARTED_PID=$!
	wait_for 20 curl -sf "http://127.0.0.1:$2/ready" || proxy_test_abort "proxy $1 did not become ready: $(tail -n 5 "$TMP/$1.err")"
}
