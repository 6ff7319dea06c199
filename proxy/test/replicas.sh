#!/usr/bin/env bash
# End-to-end tests of pulse-proxy with read replicas (proxy/README.md, "Replicas"): a real primary and two real
# streaming replicas (scripts/cluster.sh start / replica: pg_basebackup -R), redis-server, and the proxy, all on
# loopback.  Suite proxy-replicas of scripts/test.sh.
#
#   PULSE_PROXY_BIN  proxy binary (default build/pulse-proxy)
#   PULSE_TEST_PORT  the primary's port (default: a free one from 24000); the others follow it
#   PULSE_TEST_TMP   scratch directory (default: a fresh one, removed at exit)
#   RYW_PAIRS        write-then-read pairs of the read-your-writes check (default 1000)
#
# Checks: routing by class; Pulse-LSN, Pulse-Min-LSN (and the cookie), bad tokens; replay paused: the replica is
# skipped once over replica_max_lag_ms and reads still answer; both paused: the primary answers; a replica killed
# and restarted under load: no client error; read-your-writes over RYW_PAIRS pairs with replay delayed
# (recovery_min_apply_delay), and without the token the same pairs do miss their writes (the lag is real); the
# cache never stores a paused replica's past, whichever way the generation arrived (a write through the proxy, the
# NOTIFY, the resync after the listener reconnects), and serves no stale hit afterwards; tenant isolation (RLS) on the
# replicas; a live stream's refresh skips a replica that has not replayed the bump; a read endpoint that writes fails
# over to the primary; /ready and /metrics; a replica that is down
# from the start.  Prints "ok N - ..." / "not ok N - ..." and ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

BIN=${PULSE_PROXY_BIN:-build/pulse-proxy}
RYW_PAIRS=${RYW_PAIRS:-1000}
export LSAN_OPTIONS="suppressions=$PWD/proxy/test/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
PY=/usr/bin/python3
OWN_TMP=
if [ -z "${PULSE_TEST_TMP:-}" ]; then
	PULSE_TEST_TMP=$(mktemp -d /tmp/pulse-proxy-replicas.XXXXXX)
	OWN_TMP=1
fi
TMP=$PULSE_TEST_TMP
mkdir -p "$TMP"
chmod 755 "$TMP"
PGPORT=${PULSE_TEST_PORT:-$(free_port 24000)}
R1PORT=$(free_port $((PGPORT + 1)))
R2PORT=$(free_port $((R1PORT + 1)))
HTTP_PORT=$(free_port $((R2PORT + 1)))
REDIS_PORT=$(free_port $((HTTP_PORT + 1)))
DEAD_PORT=$(free_port $((REDIS_PORT + 1))) # nobody listens there
DOWN_HTTP_PORT=$(free_port $((DEAD_PORT + 1)))
PG=$TMP/pg R1=$TMP/r1 R2=$TMP/r2
BASE="http://127.0.0.1:$HTTP_PORT"
SECRET=replicas-secret-$$
PROXY_PID= REDIS_PID= DOWN_PID=
BG_PIDS=()
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

cleanup() {
	for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in $PROXY_PID $DOWN_PID; do
		kill -TERM "$p" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	[ -z "$REDIS_PID" ] || { kill -KILL "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; }
	for d in "$R1" "$R2" "$PG"; do scripts/cluster.sh destroy "$d" >/dev/null 2>&1; done
	[ -z "$OWN_TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0 failed=0 n=0
ok() { n=$((n + 1)); passed=$((passed + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; [ -z "${2:-}" ] || echo "#   $2"; }
check() { # check DESCRIPTION COMMAND...
	local d=$1
	shift
	if "$@"; then ok "$d"; else notok "$d" "last response: $(head -c 300 "$TMP/body" 2>/dev/null)"; fi
}
bail() { notok "$1"; echo "$passed passed, $failed failed"; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
sql() { # sql DIR PORT SQL...: as the superuser, in pulse_r
	local dir=$1 port=$2
	shift 2
	command psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d pulse_r -Atc "$@"
}
primary() { sql "$PG" "$PGPORT" "$@"; }

# --- setup: a primary, two streaming replicas, Redis, the proxy -----------------------------------------------
[ -x "$BIN" ] || bail "no proxy binary at $BIN (make proxy)"
PULSE_FSYNC=off PULSE_CRON_DB=pulse_r scripts/cluster.sh start "$PG" "$PGPORT" >/dev/null || bail "cannot start the primary"
command psql -X -q -h "$PG" -p "$PGPORT" -U postgres -d postgres -c "CREATE DATABASE pulse_r" >/dev/null &&
	primary "CREATE EXTENSION pulse" >/dev/null &&
	command psql -X -q -v ON_ERROR_STOP=1 -h "$PG" -p "$PGPORT" -U postgres -d pulse_r -f proxy/test/fixture.sql >/dev/null &&
	command psql -X -q -v ON_ERROR_STOP=1 -h "$PG" -p "$PGPORT" -U postgres -d pulse_r >/dev/null <<'SQL' || bail "cannot load the fixture"
-- where a call ran: the server's port and whether it is a standby, as the caller's tenant sees it
CREATE FUNCTION api.where_am_i() RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('port', current_setting('port')::int, 'recovery', pg_is_in_recovery(),
                             'tenant', current_setting('pulse.tenant', true), 'events', (SELECT count(*) FROM demo.events))
$$;
CREATE FUNCTION api.where_search() RETURNS json LANGUAGE sql STABLE AS $$ SELECT api.where_am_i() $$;
CREATE FUNCTION api.where_batch() RETURNS json LANGUAGE sql VOLATILE AS $$ SELECT api.where_am_i() $$;
-- an uncached read of one event, and where it ran
CREATE FUNCTION api.event_nc(id bigint) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('row', (SELECT row_to_json(e) FROM demo.events e WHERE e.id = event_nc.id),
                             'recovery', pg_is_in_recovery())
$$;
-- a cached count of the tenant's events (tag demo.events), and where it was filled
CREATE FUNCTION api.event_count() RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('n', count(*), 'recovery', pg_is_in_recovery()) FROM demo.events
$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO api;
SELECT pulse.expose('api.where_am_i()');
SELECT pulse.expose('api.where_search()', 'search');
SELECT pulse.expose('api.where_batch()', 'batch');
SELECT pulse.expose('api.event_nc(bigint)');
SELECT pulse.expose('api.event_count()', 'read', '60 s', '{demo.events}');
CREATE TABLE demo.ticks (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());
SQL
scripts/cluster.sh replica "$R1" "$R1PORT" "$PG" >/dev/null || bail "cannot make replica 1 (pg_basebackup -R)"
scripts/cluster.sh replica "$R2" "$R2PORT" "$PG" >/dev/null || bail "cannot make replica 2 (pg_basebackup -R)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >>"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
wait_for 10 redis-cli -p "$REDIS_PORT" ping || bail "cannot start redis-server"

MAX_LAG=400
url() { echo "host=127.0.0.1 port=$1 dbname=pulse_r user=pulse_proxy connect_timeout=2"; }
cat >"$TMP/proxy.yaml" <<CONF
listen: 127.0.0.1:$HTTP_PORT
pg_url: $(url "$PGPORT")
replica_urls:
  - $(url "$R1PORT")
  - $(url "$R2PORT")
replica_max_lag_ms: $MAX_LAG
replica_lsn_cookie: pulse_lsn
threads: 2
pool_size: 2
access_log: $TMP/access.log
redis_url: redis://127.0.0.1:$REDIS_PORT
call_timeout_ms: 5000
CONF
start_proxy() { # start_proxy CONFIG PORT: sets LAST_PID
	PULSE_JWT_SECRET=$SECRET "$BIN" --config "$1" 2>>"$TMP/proxy.err" &
	LAST_PID=$!
	wait_for 20 curl -sf "http://127.0.0.1:$2/ready"
}
start_proxy "$TMP/proxy.yaml" "$HTTP_PORT" || bail "proxy starts and is ready: $(tail -n 5 "$TMP/proxy.err")"
PROXY_PID=$LAST_PID
ok "a primary, two replicas made by pg_basebackup -R, and the proxy are up"

NOW=$(date +%s)
token() { $PY proxy/test/token.py "$SECRET" "$1"; }
T1=$(token "{\"tenant\": 1, \"exp\": $((NOW + 7200))}")
T2=$(token "{\"tenant\": 2, \"exp\": $((NOW + 7200))}")
# req METHOD PATH TOKEN [curl args...]: sets $status, body in $TMP/body, headers in $TMP/headers
req() {
	local method=$1 path=$2 tok=$3
	shift 3
	: >"$TMP/body"
	status=$(curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $tok" "$@" "$BASE$path")
}
header() { grep -i "^$1:" "$TMP/headers" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
jq_() { $PY -c "import json,sys; d=json.load(open('$TMP/body')); print($1)"; }
metric() { curl -s "$BASE/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
replicas_fresh() { # every replica up with lag under the bound
	curl -s "$BASE/ready" | $PY -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if all(r['state']=='up' and 0<=r['lag_ms']<$MAX_LAG for r in d['replicas']) else 1)"
}
wait_for 20 replicas_fresh || bail "the replicas are up and fresh: $(curl -s "$BASE/ready")"
# where N PATH TOKEN: N GETs; prints the ports that answered, one per line (the status too with WHERE_STATUS=1)
where() {
	$PY proxy/test/replicas_load.py where "$HTTP_PORT" "$3" "$2" "$1" | if [ -n "${WHERE_STATUS:-}" ]; then cat; else cut -d' ' -f2; fi
}

# --- routing by class ----------------------------------------------------------------------------------------------
where 12 /rpc/where_am_i "$T1" >"$TMP/ports"
check "reads go to the replicas, both of them ($(sort "$TMP/ports" | uniq -c | tr -s ' \n' ' '))" \
	eval '! grep -qvx -e "$R1PORT" -e "$R2PORT" "$TMP/ports" && grep -qx "$R1PORT" "$TMP/ports" && grep -qx "$R2PORT" "$TMP/ports"'
where 4 /rpc/where_search "$T1" >"$TMP/ports"
check "searches go to the replicas" eval '! grep -qvx -e "$R1PORT" -e "$R2PORT" "$TMP/ports"'
req POST /rpc/where_batch "$T1"
check "batch calls go to the primary" eval '[ "$status" = 200 ] && [ "$(jq_ "d[\"port\"]")" = "$PGPORT" ]'
req POST /rpc/add_event "$T1" -H 'Content-Type: application/json' --data '{"kind": "view", "note": "routing"}'
lsn=$(header pulse-lsn)
check "writes go to the primary and answer their LSN in Pulse-LSN ($lsn) and the cookie" \
	eval '[ "$status" = 200 ] && [[ "$lsn" =~ ^[0-9A-F]+/[0-9A-F]+$ ]] &&
	      header set-cookie | grep -q "^pulse_lsn=$lsn; Max-Age=10; Path=/; HttpOnly; SameSite=Lax$" &&
	      [ "$(primary "SELECT count(*) FROM demo.events WHERE note = '"'"'routing'"'"'")" = 1 ]'
check "the write's LSN is at least its commit's: the primary's WAL position passed it" \
	eval '[ "$(primary "SELECT pg_current_wal_lsn() >= '"'"'$lsn'"'"'::pg_lsn")" = t ]'

# --- tokens ---------------------------------------------------------------------------------------------------------
bad_ok=1
for bad in "yesterday" "0/" "/1" "1/2/3" "123456789/0" "0x1/0" "-1/0"; do
	req GET /rpc/where_am_i "$T1" -H "Pulse-Min-LSN: $bad"
	if ! { [ "$status" = 400 ] && header content-type | grep -q '^application/problem+json'; }; then bad_ok=0; echo "#   $bad: $status"; fi
done
check "a bad Pulse-Min-LSN is a 400 problem+json" [ $bad_ok = 1 ]
req GET /rpc/where_am_i "$T1" -H "Pulse-Min-LSN: FFFFFFFF/0"
check "a token no replica replayed: the primary answers after replica_wait_ms" \
	eval '[ "$status" = 200 ] && [ "$(jq_ "d[\"port\"]")" = "$PGPORT" ]'
req GET /rpc/where_am_i "$T1" -H "Cookie: a=b; pulse_lsn=FFFFFFFF/0"
check "... the same token in the cookie" eval '[ "$status" = 200 ] && [ "$(jq_ "d[\"port\"]")" = "$PGPORT" ]'
req GET /rpc/where_am_i "$T1" -H "Cookie: pulse_lsn=garbage"
check "a bad cookie is ignored: a replica answers" eval '[ "$status" = 200 ] && [ "$(jq_ "d[\"port\"]")" != "$PGPORT" ]'
req GET /rpc/where_am_i "$T1" -H "Pulse-Min-LSN: $lsn"
check "a replayed token: a replica answers" eval '[ "$status" = 200 ] && [ "$(jq_ "d[\"port\"]")" != "$PGPORT" ]'

# --- tenant isolation on the replicas (RLS runs there too) --------------------------------------------------------
t1_id=$(primary "SELECT min(id) FROM demo.events WHERE tenant_id = 1")
req GET "/rpc/event_nc?id=$t1_id" "$T1"
a1=$(jq_ 'd["row"]["tenant_id"] if d["row"] else None'),$(jq_ 'd["recovery"]')
req GET "/rpc/event_nc?id=$t1_id" "$T2"
a2=$(jq_ 'd["row"]'),$(jq_ 'd["recovery"]')
req GET /rpc/where_am_i "$T2"
check "tenant isolation on the replicas: tenant 1 reads its row, tenant 2 gets null ($a1 / $a2)" \
	eval '[ "$a1" = "1,True" ] && [ "$a2" = "None,True" ] && [ "$(jq_ "d[\"tenant\"]")" = 2 ] && [ "$(jq_ "d[\"recovery\"]")" = True ]'
p2=$(primary "SET ROLE pulse_proxy; SET pulse.tenant = '2'; SELECT count(*) FROM demo.events" | tail -n 1)
check "... and counts only its own rows there ($(jq_ 'd["events"]') = $p2 on the primary)" eval '[ "$(jq_ "d[\"events\"]")" = "$p2" ]'

# --- a read endpoint that writes (nextval): the replica refuses (25006), the primary answers ---------------------
req GET "/rpc/counted?k=rw$$" "$T1"
check "a read endpoint that writes fails over to the primary: 200" eval '[ "$status" = 200 ] && [ -n "$(jq_ "d[\"call\"]")" ]'

# --- replay paused: skipped once over the lag bound; both paused: the primary answers -----------------------------
# a write every 20 ms (the replicas fall behind at once when paused), for as long as this part takes at most
$PY proxy/test/replicas_load.py tick "host=$PG port=$PGPORT user=postgres dbname=pulse_r" 120 0.02 &
TICKER=$!
BG_PIDS+=($TICKER)
sql "$R1" "$R1PORT" "SELECT pg_wal_replay_pause()" >/dev/null
t0=$(date +%s%N)
skipped_after=
while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt $((MAX_LAG + 10000)) ]; do
	where 10 /rpc/where_am_i "$T1" >"$TMP/ports"
	grep -qx "$R1PORT" "$TMP/ports" || { skipped_after=$(( ($(date +%s%N) - t0) / 1000000 )); break; }
done
where 20 /rpc/where_am_i "$T1" >"$TMP/ports"
check "replay paused on replica 1: 10 reads in a row skip it after ${skipped_after:-?} ms (bound $MAX_LAG ms, measured every 100 ms, on a loaded machine), the next 20 too" \
	eval '[ -n "$skipped_after" ] && ! grep -qx "$R1PORT" "$TMP/ports" && grep -qx "$R2PORT" "$TMP/ports"'
sql "$R2" "$R2PORT" "SELECT pg_wal_replay_pause()" >/dev/null
lagging() { curl -s "$BASE/ready" | $PY -c "import json,sys; sys.exit(any(0<=r['lag_ms']<$MAX_LAG for r in json.load(sys.stdin)['replicas']))"; }
wait_for 20 lagging
sleep 0.2 # every loop's metrics shard synced
lagging_before=$(metric 'pulse_replica_routing_total{decision="lagging"}')
codes=$(WHERE_STATUS=1 where 10 /rpc/where_am_i "$T1" | sort | uniq -c | tr -s ' \n' ' ')
sleep 0.2
lagging_after=$(metric 'pulse_replica_routing_total{decision="lagging"}')
check "both paused past the bound: reads answer 200 from the primary (count, status, port:$codes)" \
	eval '[ "$codes" = " 10 200 $PGPORT " ]'
check "... counted as lagging ($lagging_before -> $lagging_after)" [ "$lagging_after" -ge $((lagging_before + 10)) ]
req GET /ready ""
check "/ready lists the replicas and their lag" \
	eval '[ "$status" = 200 ] && [ "$(jq_ "[r[\"name\"] for r in d[\"replicas\"]]")" = "['"'"'replica1'"'"', '"'"'replica2'"'"']" ] && [ "$(jq_ "min(r[\"lag_ms\"] for r in d[\"replicas\"]) >= $MAX_LAG")" = True ]'
sql "$R1" "$R1PORT" "SELECT pg_wal_replay_resume()" >/dev/null
sql "$R2" "$R2PORT" "SELECT pg_wal_replay_resume()" >/dev/null
kill "$TICKER" 2>/dev/null
wait "$TICKER" 2>/dev/null
wait_for 20 replicas_fresh
where 6 /rpc/where_am_i "$T1" >"$TMP/ports"
check "replay resumed: the replicas answer again" eval '! grep -qx "$PGPORT" "$TMP/ports"'

# --- a replica killed and restarted under requests: no client error ------------------------------------------------
$PY proxy/test/replicas_load.py hammer "$HTTP_PORT" "$T1" /rpc/where_am_i 9 4 >"$TMP/hammer.json" &
HAMMER=$!
sleep 1
as_pg "$PGBIN/pg_ctl" -D "$R1/data" -m immediate -w stop >/dev/null 2>&1
sleep 1.5
as_pg "$PGBIN/pg_ctl" -D "$R2/data" -m immediate -w stop >/dev/null 2>&1
sleep 1.5
scripts/cluster.sh replica "$R1" "$R1PORT" "$PG" >/dev/null
scripts/cluster.sh replica "$R2" "$R2PORT" "$PG" >/dev/null
wait "$HAMMER"
summary=$($PY -c "import json; d=json.load(open('$TMP/hammer.json')); print(d['total'], 'requests,', d['errors'], 'errors, by port', d['by_port'], d['first_errors'])")
check "replicas killed (-m immediate) and restarted under 4 clients: 0 errors ($summary)" \
	eval '$PY -c "import json,sys; d=json.load(open(\"$TMP/hammer.json\")); sys.exit(0 if d[\"errors\"] == 0 and d[\"total\"] > 20 and d[\"by_port\"].get(\"$PGPORT\", 0) > 0 else 1)"'
wait_for 20 replicas_fresh
where 8 /rpc/where_am_i "$T1" >"$TMP/ports"
check "restarted replicas take reads again" eval '! grep -qx "$PGPORT" "$TMP/ports"'
check "... and the replica failures were run again on the primary (retries $(metric 'pulse_replica_retries_total{server="replica1"}') + $(metric 'pulse_replica_retries_total{server="replica2"}'))" \
	eval '[ $(( $(metric "pulse_replica_retries_total{server=\"replica1\"}") + $(metric "pulse_replica_retries_total{server=\"replica2\"}") )) -ge 1 ]'

# --- read-your-writes with replay delayed ----------------------------------------------------------------------------
for d in "$R1:$R1PORT" "$R2:$R2PORT"; do
	sql "${d%:*}" "${d#*:}" "ALTER SYSTEM SET recovery_min_apply_delay = '30ms'" -c "SELECT pg_reload_conf()" >/dev/null
done
sleep 0.5
$PY proxy/test/replicas_load.py ryw "$HTTP_PORT" "$T1" 200 none >"$TMP/ryw_none.json"
missing_none=$($PY -c "import json; print(json.load(open('$TMP/ryw_none.json'))['missing'])")
check "without the token, reads right after a write do miss it on a delayed replica ($missing_none of 200): the lag is real" \
	eval '[ "$missing_none" -gt 0 ]'
wait_before=$(metric 'pulse_replica_routing_total{decision="min_lsn_wait"}')
$PY proxy/test/replicas_load.py ryw "$HTTP_PORT" "$T1" "$RYW_PAIRS" token >"$TMP/ryw.json"
read -r missing errors on_replica < <($PY -c "import json; d=json.load(open('$TMP/ryw.json')); print(d['missing'], d['errors'], d['on_replica'])")
sleep 0.2
waited=$(( $(metric 'pulse_replica_routing_total{decision="min_lsn_wait"}') - wait_before ))
check "read-your-writes: $RYW_PAIRS write-then-read pairs with Pulse-Min-LSN, replay delayed 30 ms: $missing missing, $errors errors ($on_replica read on a replica, $waited after waiting for its replay)" \
	eval '[ "$missing" = 0 ] && [ "$errors" = 0 ] && [ "$on_replica" -gt 0 ]'
[ "$missing" = 0 ] && [ "$errors" = 0 ] || echo "#   $(cat "$TMP/ryw.json")"
for d in "$R1:$R1PORT" "$R2:$R2PORT"; do
	sql "${d%:*}" "${d#*:}" "ALTER SYSTEM RESET recovery_min_apply_delay" -c "SELECT pg_reload_conf()" >/dev/null
done
wait_for 20 replicas_fresh

# --- the cache never stores a replica's past --------------------------------------------------------------------------
# the replicas are paused but count as fresh (a lag bound of 10 minutes): only the stamps keep the fills away from them
sed -i "s/^replica_max_lag_ms: .*/replica_max_lag_ms: 600000/" "$TMP/proxy.yaml"
kill -HUP "$PROXY_PID"
sleep 0.5
truth() { primary "SET ROLE pulse_proxy; SET pulse.tenant = '1'; SELECT count(*) FROM demo.events" | tail -n 1; }
req GET /rpc/event_count "$T1"
req GET /rpc/event_count "$T1"
x0=$(header x-cache) n0=$(jq_ 'd["n"]')
check "cached endpoint: filled by a replica, then a hit ($x0, n=$n0)" eval '[ "$x0" = hit ] && [ "$n0" = "$(truth)" ]'
# Each cycle pauses both replicas, writes once, reads, and resumes them: a stamp set after the pause would cover any
# later write (stamps only go up), so only a cycle's first write shows whether its way of learning a generation stamps
# it.  The three ways: a write through the proxy (its after-statement), a write in SQL (the NOTIFY), and a write
# while the listening connection is down (the resync after it reconnects).
caught_up() { # both replicas replayed what the primary has flushed
	local lsn
	lsn=$(primary "SELECT pg_current_wal_flush_lsn()")
	[ "$(sql "$R1" "$R1PORT" "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] &&
		[ "$(sql "$R2" "$R2PORT" "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ]
}
wait_for 20 caught_up
stale_hits=0 stale_first=0 cycles=0
refused_before=$(metric 'pulse_replica_fills_total{result="refused"}')
for kind in proxy sql resync proxy sql resync; do
	sql "$R1" "$R1PORT" "SELECT pg_wal_replay_pause()" >/dev/null
	sql "$R2" "$R2PORT" "SELECT pg_wal_replay_pause()" >/dev/null
	case $kind in
	proxy) # the after-statement moves the generation before the write answers; the listener is kept away meanwhile
		# (no NOTIFY, no resync: the role may not connect, the pools' open connections stay) so that only it stamps
		primary "ALTER ROLE pulse_proxy CONNECTION LIMIT 0; SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog'" >/dev/null
		req POST /rpc/add_event "$T1" -H 'Content-Type: application/json' --data "{\"kind\": \"view\", \"note\": \"cache $cycles\"}"
		req GET /rpc/event_count "$T1"
		primary "ALTER ROLE pulse_proxy CONNECTION LIMIT -1" >/dev/null
		want=$(truth)
		;;
	sql | resync) # the NOTIFY, or the resync, moves it: until then the old entry is a hit, as without replicas
		kill_listener=
		[ $kind = sql ] || kill_listener="SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog';"
		primary "$kill_listener INSERT INTO demo.events (tenant_id, created_at, kind) VALUES (1, now(), 'view')" >/dev/null
		want=$(truth)
		wait_for 15 eval 'req GET /rpc/event_count "$T1"; [ "$(header x-cache)" != hit ]'
		;;
	esac
	[ "$(jq_ 'd["n"]')" = "$want" ] || { stale_first=$((stale_first + 1)); echo "#   cycle $cycles ($kind): first read n=$(jq_ 'd["n"]') $(header x-cache), truth $want"; }
	for _ in 1 2 3; do
		req GET /rpc/event_count "$T1"
		if [ "$(header x-cache)" = hit ] && [ "$(jq_ 'd["n"]')" != "$want" ]; then
			stale_hits=$((stale_hits + 1))
			echo "#   cycle $cycles ($kind): stale hit n=$(jq_ 'd["n"]'), truth $want"
		fi
	done
	cycles=$((cycles + 1))
	sql "$R1" "$R1PORT" "SELECT pg_wal_replay_resume()" >/dev/null
	sql "$R2" "$R2PORT" "SELECT pg_wal_replay_resume()" >/dev/null
	wait_for 20 caught_up # this cycle's stamps replayed: they cannot cover the next one
done
check "replicas paused, $cycles writes (through the proxy, in SQL, while the listener was down): every first read after a write sees it ($stale_first did not)" [ $stale_first = 0 ]
check "... and no stale entry is ever served as a hit ($stale_hits)" [ $stale_hits = 0 ]
want=$(truth)
req GET /rpc/event_count "$T1"
check "replay resumed: still the right entry as a hit (n=$(jq_ 'd["n"]'), truth $want)" \
	eval '[ "$(header x-cache)" = hit ] && [ "$(jq_ "d[\"n\"]")" = "$want" ]'
refused=$(( $(metric 'pulse_replica_fills_total{result="refused"}') - refused_before ))
check "the stamps kept every fill away from the paused replicas: none left to the after-the-fact check ($refused refused)" [ "$refused" = 0 ]

# --- live endpoints follow the same rule: a refresh goes to a replica only once it replayed the bump --------------------
# (the replicas still count as fresh, 10 minutes of lag allowed). A stream of event_count; both replicas paused; a
# write in SQL: its refresh must come from the primary and push the new count. Were it run on a paused replica, it
# would read the old count, whose ETag is the one already sent: nothing would be pushed until replay resumed.
sse_n() { # the n of the last result the stream pushed
	$PY -c "import json,sys; d=[l[5:] for l in open('$TMP/sse.out') if l.startswith('data:')]; print(json.loads(d[-1])['n'] if d else '')"
}
curl -sN -H "Accept: text/event-stream" -H "Authorization: Bearer $T1" "$BASE/rpc/event_count" >"$TMP/sse.out" 2>/dev/null &
SSE_PID=$!
BG_PIDS+=("$SSE_PID")
wait_for 10 eval '[ "$(sse_n)" = "$(truth)" ]'
n_first=$(sse_n)
sql "$R1" "$R1PORT" "SELECT pg_wal_replay_pause()" >/dev/null
sql "$R2" "$R2PORT" "SELECT pg_wal_replay_pause()" >/dev/null
primary "INSERT INTO demo.events (tenant_id, created_at, kind) VALUES (1, now(), 'view')" >/dev/null
want=$(truth)
wait_for 10 eval '[ "$(sse_n)" = "$want" ]'
n_pushed=$(sse_n)
replica_n=$(sql "$R1" "$R1PORT" "SET ROLE pulse_proxy; SET pulse.tenant = '1'; SELECT count(*) FROM demo.events" | tail -n 1)
check "live: with both replicas paused, a write's refresh comes from the primary and is pushed ($n_first -> $n_pushed, truth $want; a paused replica still reads $replica_n)" \
	eval '[ "$n_first" != "$want" ] && [ "$n_pushed" = "$want" ] && [ "$replica_n" != "$want" ]'
kill "$SSE_PID" 2>/dev/null
sql "$R1" "$R1PORT" "SELECT pg_wal_replay_resume()" >/dev/null
sql "$R2" "$R2PORT" "SELECT pg_wal_replay_resume()" >/dev/null
wait_for 20 caught_up
sed -i "s/^replica_max_lag_ms: .*/replica_max_lag_ms: $MAX_LAG/" "$TMP/proxy.yaml"
kill -HUP "$PROXY_PID"

# --- metrics -----------------------------------------------------------------------------------------------------------
curl -s "$BASE/metrics" >"$TMP/metrics"
check "/metrics passes promtool check metrics" eval 'promtool check metrics <"$TMP/metrics" >"$TMP/promtool.out" 2>&1 || { cat "$TMP/promtool.out"; false; }'
check "/metrics: calls per server, routing decisions, lag, fills, retries" \
	eval 'for m in "pulse_server_calls_total{server=\"primary\"}" "pulse_server_calls_total{server=\"replica1\"}" \
	          "pulse_replica_routing_total{decision=\"fresh\"}" "pulse_replica_routing_total{decision=\"min_lsn_primary\"}" \
	          "pulse_replica_lag_seconds{server=\"replica2\"}" "pulse_replica_lag_bytes{server=\"replica1\"}" \
	          "pulse_replica_up{server=\"replica1\"}" "pulse_replica_fills_total{result=\"stored\"}"; do
	          grep -qF "$m " "$TMP/metrics" || { echo "#   missing $m"; exit 1; }; done; true'
check "/metrics: fresh and min_lsn_wait decisions were taken, and replica fills stored" \
	eval '[ "$(metric "pulse_replica_routing_total{decision=\"fresh\"}")" -gt 0 ] && [ "$(metric "pulse_replica_routing_total{decision=\"min_lsn_wait\"}")" -gt 0 ] && [ "$(metric "pulse_replica_fills_total{result=\"stored\"}")" -gt 0 ]'

# --- a replica down from the start -----------------------------------------------------------------------------------
sed -e "s/^listen: .*/listen: 127.0.0.1:$DOWN_HTTP_PORT/" -e "s|^access_log: .*|access_log: $TMP/down_access.log|" \
	-e "/^  - /d" -e "s/^replica_urls:$/replica_urls: $(url "$DEAD_PORT")/" "$TMP/proxy.yaml" >"$TMP/down.yaml"
if start_proxy "$TMP/down.yaml" "$DOWN_HTTP_PORT"; then DOWN_PID=$LAST_PID; fi
codes=$(for i in $(seq 5); do curl -s -o /dev/null -w '%{http_code} ' -H "Authorization: Bearer $T1" "http://127.0.0.1:$DOWN_HTTP_PORT/rpc/where_am_i"; done)
ready=$(curl -s "http://127.0.0.1:$DOWN_HTTP_PORT/ready")
check "a replica down from the start: reads answer 200 from the primary, /ready is degraded ($ready)" \
	eval '[ "$codes" = "200 200 200 200 200 " ] && [[ "$ready" == *"\"status\":\"degraded\""*"\"state\":\"down\""* ]] &&
	      curl -s "http://127.0.0.1:$DOWN_HTTP_PORT/metrics" | grep -q "^pulse_replica_routing_total{decision=\"down\"} [1-9]"'

# --- shutdown ---------------------------------------------------------------------------------------------------------
kill -TERM "$PROXY_PID"
wait "$PROXY_PID"
rc=$?
PROXY_PID=
check "SIGTERM: the proxy exits 0 (monitor threads and replica pools stopped)" [ $rc = 0 ]
if grep -E "runtime error|AddressSanitizer|LeakSanitizer" "$TMP/proxy.err" >/dev/null; then
	notok "no sanitizer report" "$(grep -E -m 3 "runtime error|AddressSanitizer|LeakSanitizer" "$TMP/proxy.err")"
else
	ok "no sanitizer report"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
