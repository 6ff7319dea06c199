#!/usr/bin/env bash
# The response cache against a history of commits and reads (issue 17, "The cache serves the past", and issue 12,
# the invalidation exactness checker).
#
#   PULSE_PROXY_BIN  proxy binary (default build/pulse-proxy)
#   PULSE_TEST_PORT  PostgreSQL port (default: a free one from 25700)
#   PULSE_TEST_TMP   scratch directory (default: a fresh one, removed at exit)
#   FUZZ_SECONDS=N   run the fault phases again and again for N seconds (default: once, about 22 s)
#   HISTORY_SEED=N   the seed of the readers' and writers' choices (default: random; printed)
#   HISTORY_PHASES   the phases of cache_history.py --phases (e.g. "none:2 freeze:4.5"), to replay or debug one
#
# One PostgreSQL, one Redis, two proxies with two loops each: A, whose catalog (LISTEN) and heartbeat connections go
# through proxy/test/faultfwd.py, and B, direct.  proxy/test/cache_history.py reads and writes through both (and
# writes in SQL) while it kills, freezes and delays the LISTEN connections and kills Redis, then checks that no read
# started more than the proxies' staleness bound after a write's commit returned the state before it.  Then a
# third proxy without a heartbeat shows that a notification that arrives while the catalog connection waits for a
# query is acted on when the query returns.  Prints "ok N - ..." / "not ok N - ..." and "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

BIN=${PULSE_PROXY_BIN:-build/pulse-proxy}
export LSAN_OPTIONS="suppressions=$PWD/proxy/test/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
TMP=${PULSE_TEST_TMP:-} OWN_TMP=
[ -n "$TMP" ] || { TMP=$(mktemp -d /tmp/pulse-cache-history.XXXXXX) && OWN_TMP=1; }
mkdir -p "$TMP" && chmod 755 "$TMP" # PostgreSQL's user reads the fixture's directory
PGPORT=${PULSE_TEST_PORT:-$(free_port 25700)}
next_port() { free_port $(($1 + 1)); }
A_PORT=$(next_port "$PGPORT")
B_PORT=$(next_port "$A_PORT")
C_PORT=$(next_port "$B_PORT")
REDIS_PORT=$(next_port "$C_PORT")
FWD_PORT=$(next_port "$REDIS_PORT")
FWD_CTL=$(next_port "$FWD_PORT")
PG="$TMP/pg"
SECRET=history-secret-$$
HEARTBEAT_MS=50
DELIVERY_MS=100
BOUND_MS=$((HEARTBEAT_MS + DELIVERY_MS))
PIDS=()
REDIS_CMD="redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --pidfile $TMP/redis.pid --logfile $TMP/redis.log"

cleanup() {
	local p
	# backends the checker froze, should it have died before thawing them (a stopped backend holds up the shutdown)
	[ ! -s "$TMP/stopped" ] || kill -CONT $(cat "$TMP/stopped") 2>/dev/null
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	[ ! -s "$TMP/redis.pid" ] || kill -KILL "$(cat "$TMP/redis.pid")" 2>/dev/null
	scripts/cluster.sh destroy "$PG" >/dev/null 2>&1
	[ -z "$OWN_TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql_su() { command psql -X -q -v ON_ERROR_STOP=1 -h "$PG" -p "$PGPORT" -U postgres -d pulse_hist "$@"; }
fail_setup() { echo "not ok 1 - $1"; echo "0 passed, 1 failed"; exit 1; }

# --- setup ------------------------------------------------------------------------------------------------------------
[ -x "$BIN" ] || fail_setup "no proxy binary at $BIN (make proxy)"
PULSE_FSYNC=off PULSE_SYNC_COMMIT=off PULSE_CRON_DB=pulse_hist scripts/cluster.sh start "$PG" "$PGPORT" >/dev/null ||
	fail_setup "cannot start PostgreSQL"
command psql -X -q -h "$PG" -p "$PGPORT" -U postgres -d postgres -c "CREATE DATABASE pulse_hist" >/dev/null &&
	psql_su -c "CREATE EXTENSION pulse" >/dev/null && psql_su -f proxy/test/history.sql >/dev/null ||
	fail_setup "cannot install the extension and the fixture"
eval "$REDIS_CMD" && wait_for 10 redis-cli -p "$REDIS_PORT" ping || fail_setup "cannot start redis-server"
python3 -I proxy/test/faultfwd.py "$FWD_PORT" "$PGPORT" "$FWD_CTL" 2>>"$TMP/faultfwd.err" &
PIDS+=($!)
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$FWD_CTL" || fail_setup "cannot start the forwarder"

# proxy_conf NAME PORT [YAML lines]: the configuration of one proxy
proxy_conf() {
	cat >"$TMP/$1.yaml" <<CONF
listen: 127.0.0.1:$2
pg_url: host=127.0.0.1 port=$PGPORT dbname=pulse_hist user=pulse_proxy connect_timeout=2
threads: 2
pool_size: 3
redis_url: redis://127.0.0.1:$REDIS_PORT
redis_command_timeout_ms: 200
redis_backoff_max_ms: 300
queue_timeout_ms: 3000
queue_budget_read_ms: 3000
queue_budget_write_ms: 3000
access_log: off
invalidation_heartbeat_ms: $HEARTBEAT_MS
invalidation_delivery_ms: $DELIVERY_MS
CONF
	[ -z "${3:-}" ] || printf '%s\n' "$3" >>"$TMP/$1.yaml"
}
start_proxy() { # start_proxy NAME PORT
	PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/$1.yaml" 2>>"$TMP/$1.err" &
	PIDS+=($!)
	wait_for 10 curl -sf "http://127.0.0.1:$2/ready"
}
proxy_conf A "$A_PORT" "pg_control_url: host=127.0.0.1 port=$FWD_PORT dbname=pulse_hist user=pulse_proxy connect_timeout=2"
proxy_conf B "$B_PORT"
start_proxy A "$A_PORT" && start_proxy B "$B_PORT" || fail_setup "cannot start the proxies: $(tail -n 3 "$TMP"/[AB].err)"
TOKEN=$(python3 proxy/test/token.py "$SECRET" "{\"tenant\": 1, \"exp\": $(($(date +%s) + 3600))}")
echo "ok 1 - setup: PostgreSQL, Redis, the fault forwarder and two proxies (bound: heartbeat $HEARTBEAT_MS + delivery $DELIVERY_MS ms)"
TAP_N=1
TAP_PASSED=1

# --- the history --------------------------------------------------------------------------------------------------------
SEED=${HISTORY_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
python3 -I proxy/test/cache_history.py --proxy "A=127.0.0.1:$A_PORT" --proxy "B=127.0.0.1:$B_PORT" \
	--pg "127.0.0.1:$PGPORT" --db pulse_hist --token "$TOKEN" --bound-ms "$BOUND_MS" --seed "$SEED" \
	--seconds "${FUZZ_SECONDS:-0}" ${HISTORY_PHASES:+--phases "$HISTORY_PHASES"} --fwd-control "$FWD_CTL" --fwd-proxy A \
	--redis-pidfile "$TMP/redis.pid" --redis-cmd "$REDIS_CMD" --stopped-file "$TMP/stopped" \
	--summary "$TMP/summary.json" --case "$TMP/minimal_case.json" >"$TMP/history.out" 2>&1
history_rc=$?
cat "$TMP/history.out"
[ ! -f "$TMP/minimal_case.json" ] || { echo "# minimal case:"; sed 's/^/#   /' "$TMP/minimal_case.json"; echo; }
sj() { python3 -c "import json,sys; s=json.load(open('$TMP/summary.json')); P={p['name']: p for p in s['phases']}; $1" 2>/dev/null; }
tap_check "history (seed $SEED): no read that started more than $BOUND_MS ms after a write's commit returned an older version \
($(sj 'print(s["reads"], "reads,", s["hits"], "hits, max staleness %.1f ms" % s["max_staleness_ms"])'))" \
	[ "$history_rc" = 0 ]
tap_check "the history is not vacuous: thousands of reads, every phase read, hits on both proxies before and after the faults, \
errors under 0.5%" sj '
assert s["reads"] >= 3000 and s["writes"] >= 300, "traffic"
assert all(p["reads"] > 0 for p in s["phases"]), "a phase without reads"
for ph in ("none", "after"):
    assert all(d["hit"] > 0 for d in P[ph]["per_proxy"].values()) and len(P[ph]["per_proxy"]) == 2, ph
assert s["errors"] * 200 <= s["reads"], "errors"'
tap_check "the faults were seen: proxy A reported its channel unverified or down during kill, freeze and delay (/ready \
stayed 200), and both were verified again after" sj '
for ph in ("kill", "freeze", "delay"):
    seen = P[ph]["ready"]["A"]
    assert seen.get("unverified", 0) + seen.get("down", 0) > 0 and seen.get("unready", 0) == 0, (ph, seen)
for p in ("A", "B"):
    assert P["after"]["ready"][p].get("verified", 0) > 0, p'
tap_check "the proxies counted the channel's lapses: unverified time, calls refused a hit, heartbeats missed, reconnects" sj '
for p in ("A", "B"):
    m = s["metrics"][p]
    assert m["pulse_invalidation_unverified_seconds_total"] > 1 and m["pulse_cache_unverified_total"] > 0, p
    assert m["pulse_invalidation_heartbeats_total{result=\"missed\"}"] > 0 and m["pulse_invalidation_reconnects_total"] >= 2, p'

# --- a notification that arrives while the catalog connection runs a query ------------------------------------------------
# Proxy C has no heartbeat: only acting on what libpq read along with a query's answer makes it see such a
# notification.  Its catalog read waits on a lock while a NOTIFY commits; the notification is then delivered with the
# query's answer, and nothing else arrives on that socket afterwards.
for p in "${PIDS[@]:1}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
PIDS=("${PIDS[0]}")
proxy_conf C "$C_PORT" "invalidation_heartbeat_ms: 0"
sed -i 's/^threads: 2$/threads: 1/' "$TMP/C.yaml"
start_proxy C "$C_PORT" || echo "# proxy C did not start: $(tail -n 3 "$TMP/C.err")"
xcache_c() { curl -s -o /dev/null -D - -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$C_PORT/rpc/probe" | tr -d '\r' | sed -n 's/^x-cache: //Ip'; }
xcache_c >/dev/null
x_before=$(xcache_c)
psql_su -c "BEGIN; LOCK TABLE pulse.endpoint IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT" >/dev/null &
holder=$!
locked() { [ "$(psql_su -Atc "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'endpoint' AND l.mode = 'AccessExclusiveLock' AND l.granted")" = 1 ]; }
waiting() { [ "$(psql_su -Atc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog' AND wait_event_type = 'Lock'")" = 1 ]; }
# the catalog's read waits on the lock when the NOTIFY commits, and still waits after it
wait_for 5 locked && psql_su -c "NOTIFY pulse_reload" && wait_for 5 waiting &&
	psql_su -c "SELECT pg_notify('pulse_invalidate', 'hist.probe:1000000')" >/dev/null && waiting
blocked=$?
wait "$holder"
idle() { [ "$(psql_su -Atc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog' AND state = 'idle'")" = 1 ]; }
wait_for 5 idle
sleep 0.3
x_after=$(xcache_c)
tap_check "a NOTIFY committed while the catalog connection waited for a query is acted on when the query returns (without \
a heartbeat: X-Cache $x_before before, $x_after after; a stuck notification would leave it a hit; catalog read seen \
waiting on the lock: $([ "$blocked" = 0 ] && echo yes || echo no))" \
	eval '[ "$blocked" = 0 ] && [ "$x_before" = hit ] && [ "$x_after" = miss ]'
tap_check "no proxy wrote anything but JSON log lines to stderr" eval '! cat "$TMP"/[ABC].err | grep -a -v "^{" | grep -q .'
tap_done
