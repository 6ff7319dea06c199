#!/usr/bin/env bash
# End-to-end tests of pulse-proxy against a real PostgreSQL and Redis on loopback.
#
#   PULSE_PROXY_BIN  proxy binary (default build/pulse-proxy)
#   PULSE_TEST_PORT  PostgreSQL port (default: a free one from 25600)
#   PULSE_TEST_TMP   scratch directory (default: a fresh one, removed at exit)
#
# Starts its own cluster (scripts/cluster.sh) and redis-server, installs the
# pulse extension and proxy/test/fixture.sql, starts the proxy and checks it
# with curl.
# Prints "ok N - ..." / "not ok N - ..." and ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. proxy/test/lib.sh

proxy_test_setup e2e 25600
BASE="http://127.0.0.1:$HTTP_PORT"
SECRET=e2e-secret-$$
PROXY_PID=
REDIS_PID=
SF_PID=
MX_PID=
EXTRA_PIDS=()

start_redis() {
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >>"$TMP/redis.log" 2>&1 &
	REDIS_PID=$!
	wait_for 10 redis-cli -p "$REDIS_PORT" ping
}
stop_redis() {
	[ -n "$REDIS_PID" ] || return 0
	kill -KILL "$REDIS_PID" 2>/dev/null
	wait "$REDIS_PID" 2>/dev/null
	REDIS_PID=
}

cleanup() {
	proxy_test_kill "$PROXY_PID"
	[ -z "$SF_PID" ] || kill -KILL "$SF_PID" 2>/dev/null
	for p in "${EXTRA_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	[ -z "$MX_PID" ] || kill -KILL "$MX_PID" 2>/dev/null
	[ -z "$REDIS_PID" ] || kill -CONT "$REDIS_PID" 2>/dev/null
	stop_redis
	scripts/cluster.sh destroy "$PG" >/dev/null 2>&1
	[ -z "$OWN_TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
n=0
ok() { n=$((n + 1)); passed=$((passed + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; [ -z "${2:-}" ] || echo "#   $2"; }
check() { # check DESCRIPTION COMMAND...
	local d=$1
	shift
	if "$@"; then ok "$d"; else notok "$d" "last response: $(head -c 300 "$TMP/body" 2>/dev/null)"; fi
}

# --- setup ------------------------------------------------------------------
[ -x "$BIN" ] || { echo "not ok 1 - no proxy binary at $BIN (make proxy)"; echo "0 passed, 1 failed"; exit 1; }
proxy_test_db pulse_e2e
start_redis || { echo "not ok 1 - cannot start redis-server on port $REDIS_PORT"; echo "0 passed, 1 failed"; exit 1; }

cat >"$TMP/proxy.yaml" <<CONF
# pulse-proxy configuration of the e2e test
listen: 127.0.0.1:$HTTP_PORT
pg_url: host=127.0.0.1 port=$PGPORT dbname=pulse_e2e user=pulse_proxy connect_timeout=2
threads: 2
pool_size: 2
timeout_read_ms: 1000
queue_timeout_ms: 3000
queue_budget_read_ms: 3000
queue_budget_search_ms: 3000
queue_budget_write_ms: 3000
queue_budget_batch_ms: 3000
call_timeout_ms: 3000
body_limit: 65536
max_args: 8
max_header_bytes: 8192
pool_max_prepared: 2
access_log: $TMP/access.log
redis_url: redis://127.0.0.1:$REDIS_PORT
redis_command_timeout_ms: 200
redis_backoff_max_ms: 500
# a stale-while-revalidate window wide enough for two requests a loaded machine keeps seconds apart
cache_swr_read_ms: 5000
cache_sie_read_ms: 600000
# a heartbeat late on a loaded machine must not turn the hits checked here into misses (cache_history.sh tests the bound)
invalidation_delivery_ms: 1000
CONF

start_proxy() {
	PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/proxy.yaml" 2>>"$TMP/proxy.err" &
	PROXY_PID=$!
	wait_for 10 curl -sf "$BASE/ready"
}
alive() { kill -0 "$PROXY_PID" 2>/dev/null; }

token() { python3 proxy/test/token.py "${2:-$SECRET}" "$1" "${3:-HS256}"; }
NOW=$(date +%s)
T1=$(token "{\"tenant\": 1, \"exp\": $((NOW + 3600))}")
T2=$(token "{\"tenant\": \"2\", \"exp\": $((NOW + 3600))}")

# req METHOD PATH [TOKEN] [curl args...]: sets $status, body in $TMP/body, headers in $TMP/headers
req() {
	local method=$1 path=$2 tok=${3:-}
	shift 3 2>/dev/null || shift $#
	local auth=()
	[ -z "$tok" ] || auth=(-H "Authorization: Bearer $tok")
	: >"$TMP/body" # curl leaves the file alone when there is no body (304)
	status=$(curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X "$method" "${auth[@]}" "$@" "$BASE$path")
}
header() { grep -i "^$1:" "$TMP/headers" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
jq_() { python3 -c "import json,sys; d=json.load(open('$TMP/body')); print($1)"; }
is_problem() { # is_problem STATUS
	[ "$status" = "$1" ] && header content-type | grep -q '^application/problem+json' &&
		[ "$(jq_ 'd["status"]')" = "$1" ] && [ -n "$(jq_ 'd["request_id"]')" ]
}

if start_proxy; then ok "proxy starts and is ready"; else notok "proxy starts and is ready" "$(tail -n 5 "$TMP/proxy.err")"; fi

# --- health -------------------------------------------------------------------
req GET /health ""
check "/health is 200" [ "$status" = 200 ]
req GET /ready ""
check "/ready is 200 with PostgreSQL up" [ "$status" = 200 ]

# --- serving --------------------------------------------------------------------
req GET "/rpc/events_page?page_size=3" "$T1"
check "GET read endpoint: 200, application/json" \
	eval '[ "$status" = 200 ] && header content-type | grep -q "^application/json"'
check "body is the function's JSON, passed through" \
	eval '[ "$(jq_ "len(d[\"items\"])")" = 3 ] && [ -n "$(jq_ "d[\"next_cursor\"]")" ]'
link=$(header link)
check "Link rel=next with the encoded cursor" \
	eval '[[ "$link" == "</rpc/events_page?page_size=3&cursor="*"; rel=\"next\"" ]]'
check "X-Request-Id is generated" eval '[ -n "$(header x-request-id)" ]'
check "Content-Length matches the body" eval '[ "$(header content-length)" = "$(wc -c <"$TMP/body")" ]'

# page through tenant 1 (100 rows) with the Link headers
seen=0 pages=0 other=0 ids=""
path="/rpc/events_page?page_size=30"
while [ -n "$path" ] && [ $pages -lt 10 ]; do
	req GET "$path" "$T1"
	[ "$status" = 200 ] || break
	pages=$((pages + 1))
	seen=$((seen + $(jq_ 'len(d["items"])')))
	other=$((other + $(jq_ 'sum(1 for r in d["items"] if r["tenant_id"] != 1)')))
	ids="$ids $(jq_ '" ".join(str(r["id"]) for r in d["items"])')"
	path=$(header link | sed -n 's/^<\([^>]*\)>; rel="next"$/\1/p')
done
uniq_ids=$(echo $ids | tr ' ' '\n' | sort -u | wc -l)
check "cursor paging through Link headers: 100 rows in 4 pages, no repeats" \
	[ "$seen" = 100 -a "$pages" = 4 -a "$uniq_ids" = 100 ]
check "tenant 1 sees only its rows" [ "$other" = 0 ]

t1_id=$(echo $ids | cut -d' ' -f1)
req GET "/rpc/event?id=$t1_id" "$T1"
check "tenant 1 reads its event" eval '[ "$status" = 200 ] && [ "$(jq_ "d[\"tenant_id\"]")" = 1 ]'
req GET "/rpc/event?id=$t1_id" "$T2"
check "tenant 2 never sees tenant 1's event (RLS)" eval '[ "$status" = 200 ] && [ "$(cat "$TMP/body")" = null ]'

req GET /rpc/counts "$T2"
check "set-returning endpoint: a JSON array of rows" \
	eval '[ "$status" = 200 ] && [ "$(jq_ "sum(r[\"n\"] for r in d)")" = 100 ]'

req POST /rpc/events_page "$T1" -H 'Content-Type: application/json' --data '{"page_size": 2, "kind": "buy"}'
check "POST with a JSON object body" \
	eval '[ "$status" = 200 ] && [ "$(jq_ "[r[\"kind\"] for r in d[\"items\"]]")" = "['"'"'buy'"'"', '"'"'buy'"'"']" ]'

req POST /rpc/add_event "$T2" -H 'Content-Type: application/json' --data '{"kind": "buy", "note": "via proxy"}'
check "write endpoint by POST: runs in the tenant's scope" \
	eval '[ "$status" = 200 ] && [ "$(jq_ "d[\"tenant_id\"]")" = 2 ]'

req GET /rpc/whoami "$T2" -H 'X-Request-Id: e2e-req-42'
check "tenant and request id reach PostgreSQL; X-Request-Id echoed" \
	eval '[ "$(jq_ "d[\"tenant\"]")" = 2 ] && [[ "$(jq_ "d[\"application_name\"]")" == *e2e-req-42* ]] && [ "$(header x-request-id)" = e2e-req-42 ]'
req GET /rpc/whoami "$T2" -H 'X-Request-Id: bad id with spaces!'
check "an invalid X-Request-Id is replaced" eval '[ "$(header x-request-id)" != "bad id with spaces!" ] && [ -n "$(header x-request-id)" ]'

# --- cache ---------------------------------------------------------------------------
xcache() { header x-cache; }
calls() { psql_su -d pulse_e2e -Atc "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM demo.calls"; }
req GET "/rpc/events_page?page_size=30&kind=view" "$T1"
cp "$TMP/body" "$TMP/first"
x1=$(xcache) etag=$(header etag)
req GET "/rpc/events_page?page_size=30&kind=view" "$T1"
check "cache: miss, then hit with the identical body" \
	eval '[ "$x1" = miss ] && [ "$status" = 200 ] && [ "$(xcache)" = hit ] && cmp -s "$TMP/first" "$TMP/body"'
check "cache: ETag (the same on miss and hit), Cache-Control, Vary" \
	eval '[[ "$etag" == \"*\" ]] && [ "$(header etag)" = "$etag" ] && header cache-control | grep -q "max-age=" && [ "$(header vary)" = Accept-Encoding ]'
req GET "/rpc/events_page?page_size=30&kind=view" "$T1" -H "If-None-Match: W/\"x\", $etag"
check "If-None-Match with the ETag: 304 without a body" eval '[ "$status" = 304 ] && [ ! -s "$TMP/body" ] && [ "$(header etag)" = "$etag" ]'
req GET "/rpc/events_page?page_size=30&kind=view" "$T1" -H 'If-None-Match: "nope"'
check "If-None-Match with another tag: 200" eval '[ "$status" = 200 ] && cmp -s "$TMP/first" "$TMP/body"'
req GET "/rpc/events_page?page_size=30&kind=view" "$T1" -H 'Accept-Encoding: gzip, deflate'
check "Accept-Encoding gzip: Content-Encoding gzip of the same body" \
	eval '[ "$(header content-encoding)" = gzip ] && gzip -dc <"$TMP/body" | cmp -s "$TMP/first" -'
req GET "/rpc/events_page?kind=view&page_size=30" "$T1"
check "argument order does not matter: hit" eval '[ "$(xcache)" = hit ] && cmp -s "$TMP/first" "$TMP/body"'

req GET "/rpc/events_page?page_size=5" "$T1"
req GET "/rpc/events_page?page_size=5" "$T1"
cp "$TMP/body" "$TMP/t1"
x1=$(xcache)
req GET "/rpc/events_page?page_size=5" "$T2"
check "tenant B never gets tenant A's cached body for the same URL" \
	eval '[ "$x1" = hit ] && [ "$(xcache)" = miss ] && ! cmp -s "$TMP/t1" "$TMP/body" && [ "$(jq_ "sorted({r[\"tenant_id\"] for r in d[\"items\"]})")" = "[2]" ]'
req GET "/rpc/events_page?page_size=5" "$T2"
check "... and its own entry is a hit with its own rows" \
	eval '[ "$(xcache)" = hit ] && [ "$(jq_ "sorted({r[\"tenant_id\"] for r in d[\"items\"]})")" = "[2]" ]'

# a write made directly in SQL: NOTIFY pulse_invalidate moves the tag and the next read is fresh.  The
# issue's target is 100 ms (typically ~10 ms here); the assertion allows 1 s so that a loaded CI machine
# cannot fail it, and the description reports the measured time.
req GET "/rpc/events_page?page_size=1&kind=click" "$T1"
req GET "/rpc/events_page?page_size=1&kind=click" "$T1"
x1=$(xcache)
new_id=$(psql_su -d pulse_e2e -Atc "INSERT INTO demo.events (tenant_id, created_at, kind) VALUES (1, now(), 'click') RETURNING id")
t0=$(date +%s%N)
fresh=0
while :; do
	req GET "/rpc/events_page?page_size=1&kind=click" "$T1"
	elapsed=$(( ($(date +%s%N) - t0) / 1000000 ))
	if grep -q "\"id\": $new_id," "$TMP/body"; then fresh=1; break; fi
	[ "$elapsed" -lt 1000 ] || break
done
check "write in SQL: the next read is fresh (after ${elapsed} ms; target 100 ms)" eval '[ "$x1" = hit ] && [ $fresh = 1 ] && [ "$elapsed" -le 1000 ]'

# the listening connection lost while a write commits: after the reconnect, pulse.tag_generations resyncs
req GET "/rpc/events_page?page_size=1&kind=view" "$T1"
req GET "/rpc/events_page?page_size=1&kind=view" "$T1"
x1=$(xcache)
new_id=$(psql_su -d pulse_e2e -Atc "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog'" \
	-c "INSERT INTO demo.events (tenant_id, created_at, kind) VALUES (1, now(), 'view') RETURNING id" | tail -n 1)
wait_for 5 eval 'curl -s -H "Authorization: Bearer $T1" "$BASE/rpc/events_page?page_size=1&kind=view" | grep -q "\"id\": $new_id,"'
resynced=$?
check "listener reconnected: the generations are resynced, reads are fresh" \
	eval '[ $resynced = 0 ] && [ "$x1" = hit ] && ! grep -q "cannot read the tag generations" "$TMP/proxy.err"'

# a write through the proxy: the generations are read after its COMMIT, before its response
req GET "/rpc/events_page?page_size=1&kind=buy" "$T2"
req GET "/rpc/events_page?page_size=1&kind=buy" "$T2"
x1=$(xcache)
req POST /rpc/add_event "$T2" -H 'Content-Type: application/json' --data '{"kind": "buy", "note": "cache"}'
new_id=$(jq_ 'd["id"]')
req GET "/rpc/events_page?page_size=1&kind=buy" "$T2"
check "write through the proxy: the very next read is fresh" \
	eval '[ "$x1" = hit ] && [ "$(xcache)" = miss ] && [ "$(jq_ "d[\"items\"][0][\"id\"]")" = "$new_id" ]'

# single-flight across loops and proxies: 10 identical concurrent misses, 5 on the main proxy and 5 on a second one,
# both with 2 loops (h2o 2.2.5 cannot multiplex cleartext HTTP/2 streams for curl, so they come on 10 connections)
SF_PORT=$(free_port $((REDIS_PORT + 1)))
sed -e "s/^listen: .*/listen: 127.0.0.1:$SF_PORT/" -e "s|^access_log: .*|access_log: $TMP/sf_access.log|" \
	"$TMP/proxy.yaml" >"$TMP/sf.yaml"
PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/sf.yaml" 2>>"$TMP/proxy.err" &
SF_PID=$!
wait_for 10 curl -sf "http://127.0.0.1:$SF_PORT/ready"
before=$(calls)
{ for i in 1 2 3 4 5; do echo "$BASE"; echo "http://127.0.0.1:$SF_PORT"; done; } |
	xargs -P 10 -I{} curl -s -o "$TMP/sf.$RANDOM$RANDOM" -w '%{http_code}\n' -H "Authorization: Bearer $T1" \
		"{}/rpc/counted?k=sf&sleep=0.5" >"$TMP/sf_status"
after=$(calls)
kill -TERM $SF_PID
wait $SF_PID
sf_rc=$?
SF_PID=
check "single-flight across 2 proxies x 2 loops: 10 concurrent identical misses, all 200 with one body, $((after - before)) database call(s)" \
	eval '[ "$(grep -c "^200$" "$TMP/sf_status")" = 10 ] && [ "$(md5sum "$TMP"/sf.[0-9]* | cut -d" " -f1 | sort -u | wc -l)" = 1 ] && [ $((after - before)) = 1 ] && [ $sf_rc = 0 ]'

# stale-while-revalidate (counted: ttl 1 s, cache_swr_read_ms 5000): served stale, refreshed once in the background
req GET "/rpc/counted?k=swr" "$T1"
c1=$(jq_ 'd["call"]')
sleep 1.2
before=$(calls)
req GET "/rpc/counted?k=swr" "$T1"
x1=$(xcache) c2=$(jq_ 'd["call"]')
wait_for 3 eval '[ "$(calls)" -gt "$before" ]'
# the refreshed entry is stored when the refresh's call returns: a hit within a few seconds (on a loaded machine, a
# request on the other loop before that may start that loop's own refresh: background refreshes are single-flight
# per loop, so at most one per loop)
hit_ok=0
for _ in $(seq 30); do
	req GET "/rpc/counted?k=swr" "$T1"
	[ "$(xcache)" = hit ] && { hit_ok=1; break; }
	sleep 0.1
done
refreshes=$(($(calls) - before))
check "stale-while-revalidate: stale answer ($x1), background refresh ($refreshes; at most one per loop), then a hit ($hit_ok) with the new body" \
	eval '[ "$x1" = stale ] && [ "$c2" = "$c1" ] && [ $hit_ok = 1 ] && [ "$(jq_ "d[\"call\"]")" = "$(calls)" ] && [ $refreshes -ge 1 ] && [ $refreshes -le 2 ]'

# Redis slow, then killed and restarted: the database answers, caching resumes by itself
kill -STOP "$REDIS_PID"
req GET "/rpc/events_page?page_size=4" "$T1"
check "Redis not answering: 200 from the database" eval '[ "$status" = 200 ] && [ "$(xcache)" = miss ]'
kill -CONT "$REDIS_PID"
stop_redis
ok_all=1
for i in 1 2 3; do
	req GET "/rpc/events_page?page_size=4&kind=rk-$$-$i" "$T1"
	[ "$status" = 200 ] && [ "$(xcache)" = miss ] || ok_all=0
done
check "Redis killed: 200 from the database, no error" [ $ok_all = 1 ]
# each loop keeps fresh entries itself (cache_local_bytes): with 2 loops, the third repeat at the latest is a local hit
hit=0
for i in 1 2 3; do
	req GET "/rpc/events_page?page_size=4&kind=rk-$$-1" "$T1"
	[ "$status" = 200 ] && [ "$(xcache)" = hit ] && { hit=1; break; }
done
check "Redis killed: fresh entries still served by the loops' local caches" [ $hit = 1 ]
req GET /ready ""
check "Redis killed: /ready is 200, degraded" eval '[ "$status" = 200 ] && [ "$(jq_ "d[\"status\"]")" = degraded ]'
start_redis
wait_for 10 eval 'curl -s -o /dev/null -D - -H "Authorization: Bearer $T1" "$BASE/rpc/events_page?page_size=4" | grep -qi "^x-cache: hit"'
check "Redis restarted: caching resumes (X-Cache: hit)" [ $? = 0 ]
wait_for 5 eval '[ "$(curl -s "$BASE/ready")" = "{\"status\":\"ok\",\"postgresql\":\"up\",\"redis\":\"up\",\"invalidation\":\"verified\"}" ]'
check "Redis restarted: /ready reports it up" [ $? = 0 ]

# --- client errors ----------------------------------------------------------------
req GET "/rpc/events_page?cursor=not-a-cursor" "$T1"
check "bad cursor: 400 problem+json" is_problem 400
req GET "/rpc/events_page?page_size=abc" "$T1"
check "argument of the wrong type: 400" is_problem 400
req GET "/rpc/events_page?nope=1" "$T1"
check "unknown argument: 400" is_problem 400
req GET "/rpc/events_page?page_size=1&page_size=2" "$T1"
check "repeated argument: 400" is_problem 400
req GET "/rpc/event" "$T1"
check "missing required argument: 400" is_problem 400
req GET "/rpc/events_page?kind=%00x" "$T1"
check "NUL byte in an argument: 400" is_problem 400
req GET "/rpc/events_page?kind=%zz" "$T1"
check "malformed percent-encoding: 400" is_problem 400
req GET "/rpc/events_page?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9" "$T1"
check "too many arguments: 400" is_problem 400
req POST /rpc/events_page "$T1" -H 'Content-Type: application/json' --data '{"page_size": '
check "malformed JSON body: 400" is_problem 400
req POST /rpc/events_page "$T1" -H 'Content-Type: application/json' --data '[1, 2]'
check "JSON body that is not an object: 400" is_problem 400
req POST /rpc/events_page "$T1" -H 'Content-Type: text/plain' --data 'x'
check "non-JSON content type: 415" is_problem 415

# --- authentication ----------------------------------------------------------------
req GET /rpc/whoami ""
check "missing token: 401 with WWW-Authenticate" eval 'is_problem 401 && header www-authenticate | grep -q "^Bearer"'
req GET /rpc/whoami "$(token "{\"tenant\": 1, \"exp\": $((NOW + 3600))}" wrong-secret)"
check "bad signature: 401" is_problem 401
req GET /rpc/whoami "$(token "{\"tenant\": 1, \"exp\": $((NOW - 10))}")"
check "expired token: 401" is_problem 401
req GET /rpc/whoami "$(token "{\"tenant\": 1, \"exp\": $((NOW + 3600))}" "$SECRET" none)"
check "alg none: 401" is_problem 401
req GET /rpc/whoami "$(token "{\"tenant\": 1, \"exp\": $((NOW + 3600))}" "$SECRET" RS256)"
check "alg RS256: 401" is_problem 401
req GET /rpc/whoami "$(token "{\"exp\": $((NOW + 3600))}")"
check "no tenant claim: 401" is_problem 401
req GET /rpc/whoami "$(token "{\"tenant\": 1}")"
check "no exp claim: 401" is_problem 401
req GET /rpc/whoami "garbage.token.here"
check "garbage token: 401" is_problem 401
req GET /rpc/whoami "" -H "Authorization: Basic dXNlcjpwYXNz"
check "Basic scheme: 401" is_problem 401

# --- other statuses ----------------------------------------------------------------
req GET /rpc/secret "$T1"
check "permission denied in the database: 403" is_problem 403
req GET /rpc/nope "$T1"
check "unknown endpoint: 404" is_problem 404
req GET /elsewhere ""
check "unknown path: 404 problem+json" is_problem 404
req DELETE /rpc/events_page "$T1"
check "DELETE: 405 with Allow" eval 'is_problem 405 && [ "$(header allow)" = "GET, HEAD, POST" ]'
req GET "/rpc/add_event?kind=x" "$T1"
check "GET on a write endpoint: 405" eval 'is_problem 405 && [ "$(header allow)" = POST ]'
req GET /rpc/fail "$T1"
check "function error: 500 without the server's message" \
	eval 'is_problem 500 && ! grep -q "internal detail" "$TMP/body"'
rid=$(header x-request-id)
check "... logged with its request id and SQLSTATE" eval 'sleep 0.3; grep "$rid" "$TMP/proxy.err" | grep -q P0001'
req GET "/rpc/slow?seconds=3" "$T1"
check "statement timeout (timeout_read_ms): 503 with Retry-After" eval 'is_problem 503 && [ -n "$(header retry-after)" ]'

# --- metrics ---------------------------------------------------------------------
# a second proxy (2 loops, fresh counters, SLO windows of 500 ms, read p99 100 ms) gets a known set of requests
MX_PORT=$(free_port $((SF_PORT + 1)))
MX="http://127.0.0.1:$MX_PORT"
sed -e "s/^listen: .*/listen: 127.0.0.1:$MX_PORT/" -e "s|^access_log: .*|access_log: $TMP/mx_access.log|" "$TMP/proxy.yaml" >"$TMP/mx.yaml"
printf 'slo_window_ms: 500\nslo_read_p99_ms: 100\n' >>"$TMP/mx.yaml"
PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/mx.yaml" 2>"$TMP/mx.err" &
MX_PID=$!
wait_for 10 curl -sf "$MX/ready"
mx() { # mx PATH [curl args...]: prints the status; appends the X-Cache header, if any, to $TMP/mx_xcache
	local path=$1
	shift
	curl -s -o /dev/null -D "$TMP/mx_headers" -w '%{http_code}\n' "$@" "$MX$path"
	grep -i '^x-cache:' "$TMP/mx_headers" | cut -d' ' -f2 | tr -d '\r' >>"$TMP/mx_xcache"
}
: >"$TMP/mx_xcache"
: >"$TMP/mx_status"
for _ in 1 2 3 4 5; do mx /rpc/whoami -H "Authorization: Bearer $T1" >>"$TMP/mx_status"; done
for _ in 1 2; do mx /rpc/whoami >>"$TMP/mx_status"; done
for _ in 1 2 3; do mx /rpc/nope -H "Authorization: Bearer $T1" >>"$TMP/mx_status"; done
for _ in 1 2; do mx "/elsewhere/$RANDOM" >>"$TMP/mx_status"; done
mx /rpc/fail -H "Authorization: Bearer $T1" >>"$TMP/mx_status"
mx /rpc/secret -H "Authorization: Bearer $T1" >>"$TMP/mx_status"
mx "/rpc/slow?seconds=0.3" -H "Authorization: Bearer $T1" >>"$TMP/mx_status"
for _ in 1 2 3 4 5 6; do mx "/rpc/events_page?page_size=2&kind=mx-$$" -H "Authorization: Bearer $T1" >>"$TMP/mx_status"; done
for _ in 1 2 3; do curl -s -o /dev/null "$MX/health" "$MX/ready"; done
check "metrics: the requests got the statuses expected" \
	[ "$(sort "$TMP/mx_status" | uniq -c | awk '{printf "%s:%s ", $2, $1}')" = "200:12 401:2 403:1 404:5 500:1 " ]
sleep 1.2 # two SLO windows: the one with the slow call has ended
curl -s -o "$TMP/metrics" -D "$TMP/headers" "$MX/metrics"
curl -s -o "$TMP/metrics2" "$MX/metrics"
check "GET /metrics: 200, text/plain; version=0.0.4" eval 'header content-type | grep -q "^text/plain; version=0.0.4"'
check "promtool check metrics accepts it" eval 'promtool check metrics <"$TMP/metrics" >"$TMP/promtool.out" 2>&1 || { cat "$TMP/promtool.out"; false; }'
metric() { # metric 'NAME{LABELS}': its value in $TMP/metrics, or "absent"
	awk -v k="$1" 'index($0, k " ") == 1 { print $2; f = 1 } END { if (!f) print "absent" }' "$TMP/metrics"
}
check "pulse_http_requests_total: 5 200s and 2 401s of whoami" \
	eval '[ "$(metric "pulse_http_requests_total{endpoint=\"whoami\",class=\"read\",status=\"200\"}")" = 5 ] && [ "$(metric "pulse_http_requests_total{endpoint=\"whoami\",class=\"read\",status=\"401\"}")" = 2 ]'
check "pulse_http_requests_total: 5 404s of unknown routes under endpoint=\"\", no label per unknown path" \
	eval '[ "$(metric "pulse_http_requests_total{endpoint=\"\",class=\"\",status=\"404\"}")" = 5 ] && ! grep -q "nope\|elsewhere" "$TMP/metrics"'
check "pulse_http_requests_total: 500, 403, 6 200s of events_page; /health, /ready, /metrics not counted" \
	eval '[ "$(metric "pulse_http_requests_total{endpoint=\"fail\",class=\"read\",status=\"500\"}")" = 1 ] && [ "$(metric "pulse_http_requests_total{endpoint=\"secret\",class=\"read\",status=\"403\"}")" = 1 ] && [ "$(metric "pulse_http_requests_total{endpoint=\"events_page\",class=\"search\",status=\"200\"}")" = 6 ] && [ "$(awk "/^pulse_http_requests_total/ { s += \$2 } END { print s }" "$TMP/metrics")" = 21 ]'
check "latency histogram: whoami counted 7 times, the 0.3 s call above le=0.25 and within le=0.5" \
	eval '[ "$(metric "pulse_http_request_duration_seconds_count{endpoint=\"whoami\",class=\"read\"}")" = 7 ] && [ "$(metric "pulse_http_request_duration_seconds_bucket{endpoint=\"slow\",class=\"read\",le=\"0.25\"}")" = 0 ] && [ "$(metric "pulse_http_request_duration_seconds_bucket{endpoint=\"slow\",class=\"read\",le=\"0.5\"}")" = 1 ]'
hits=$(grep -c '^hit$' "$TMP/mx_xcache") misses=$(grep -c '^miss$' "$TMP/mx_xcache") stales=$(grep -c '^stale$' "$TMP/mx_xcache")
check "pulse_cache_requests_total matches the X-Cache headers seen ($hits hits, $misses misses, $stales stale)" \
	eval '[ $((hits + misses + stales)) = 6 ] && [ "$(metric "pulse_cache_requests_total{endpoint=\"events_page\",result=\"hit\"}")" = $hits ] && [ "$(metric "pulse_cache_requests_total{endpoint=\"events_page\",result=\"miss\"}")" = $misses ] && [ "$(metric "pulse_cache_requests_total{endpoint=\"events_page\",result=\"stale\"}")" = $stales ]'
check "PostgreSQL errors by SQLSTATE class: P0 (raise) and 42 (permission)" \
	eval '[ "$(metric "pulse_pg_errors_total{sqlstate_class=\"P0\"}")" = 1 ] && [ "$(metric "pulse_pg_errors_total{sqlstate_class=\"42\"}")" = 1 ]'
check "pool and Redis gauges: 4 connections, Redis up" \
	eval '[ $(( $(metric "pulse_pool_connections{state=\"idle\"}") + $(metric "pulse_pool_connections{state=\"busy\"}") )) = 4 ] && [ "$(metric pulse_pool_queue_depth)" = 0 ] && [ "$(metric pulse_redis_up)" = 1 ] && [ "$(metric "pulse_redis_clients{state=\"up\"}")" = 2 ]'
check "SLO: the window with the 0.3 s read breached read p99 100 ms and the error rate, logged once each" \
	eval '[ "$(metric "pulse_slo_breaches_total{class=\"read\",slo=\"p99\"}")" -ge 1 ] && [ "$(metric "pulse_slo_breaches_total{class=\"read\",slo=\"error_rate\"}")" -ge 1 ] && [ "$(metric "pulse_slo_breaches_total{class=\"search\",slo=\"p99\"}")" = 0 ] && [ "$(grep -c "slo breach: class read p99" "$TMP/mx.err")" = "$(metric "pulse_slo_breaches_total{class=\"read\",slo=\"p99\"}")" ]'
check "a second scrape counts the same requests" \
	eval '[ "$(grep "^pulse_http_requests_total" "$TMP/metrics")" = "$(grep "^pulse_http_requests_total" "$TMP/metrics2")" ]'
kill -TERM $MX_PID
wait $MX_PID
mx_rc=$?
MX_PID=
check "metrics proxy stops cleanly" [ $mx_rc = 0 ]

# --- concurrency ------------------------------------------------------------------
# 4 connections (2 loops x pool_size 2) serve 40 concurrent calls through the queue
seq 40 | xargs -P 20 -I{} curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $T1" \
	"$BASE/rpc/events_page?page_size=5&kind=view" >"$TMP/concurrent"
check "40 concurrent calls on 4 connections: all 200" [ "$(grep -c '^200$' "$TMP/concurrent")" = 40 ]
# clients that go away while their call runs or waits
pids=()
for _ in 1 2 3 4 5 6; do
	curl -s -o /dev/null -m 0.2 -H "Authorization: Bearer $T1" "$BASE/rpc/slow?seconds=0.5" &
	pids+=($!)
done
wait "${pids[@]}"
req GET "/rpc/event?id=$t1_id" "$T1"
check "clients gone mid-call: proxy alive and serving" eval '[ "$status" = 200 ] && alive'

# --- load shedding ----------------------------------------------------------------------
# extra_proxy NAME [YAML LINES]: another proxy with the main configuration plus the lines given, on a free port, its
# access log in $TMP/NAME_access.log; sets XP (its base URL) and XP_PID
extra_proxy() {
	local port
	port=$(free_port $((REDIS_PORT + 10 + ${#EXTRA_PIDS[@]})))
	{ cat "$TMP/proxy.yaml"; printf 'listen: 127.0.0.1:%s\naccess_log: %s\n%s\n' "$port" "$TMP/$1_access.log" "${2:-}"; } >"$TMP/$1.yaml"
	PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/$1.yaml" 2>>"$TMP/$1.err" &
	XP_PID=$!
	EXTRA_PIDS+=("$XP_PID")
	XP="http://127.0.0.1:$port"
	wait_for 10 curl -sf "$XP/ready"
}
stop_extra() { # stop_extra PID: SIGTERM, returns its exit status
	kill -TERM "$1" 2>/dev/null
	wait "$1"
}
# timed URL [curl args]: one request, prints "STATUS SECONDS RETRY-AFTER"
timed() {
	local url=$1 h="$TMP/timed.$BASHPID"
	shift
	curl -s -o /dev/null -D "$h" -w '%{http_code} %{time_total}' -H "Authorization: Bearer $T1" "$@" "$url"
	printf ' %s\n' "$(grep -i '^retry-after:' "$h" | cut -d' ' -f2 | tr -d '\r')"
}
# one loop, one connection: a slow call holds it while the others queue
extra_proxy shed "$(printf 'threads: 1\npool_size: 1\nqueue_budget_read_ms: 3000\nqueue_budget_batch_ms: 3000\nqueue_budget_search_ms: 300\ntimeout_read_ms: 5000\ntimeout_batch_ms: 5000')"
for _ in 1 2 3; do curl -s -o /dev/null -H "Authorization: Bearer $T1" "$XP/rpc/whoami"; done
timed "$XP/rpc/slow?seconds=1" >"$TMP/shed_hold" &
hold=$!
sleep 0.2
timed "$XP/rpc/slow_batch" -X POST -H 'Content-Type: application/json' -H "X-Request-Id: prio-batch-$$" -d '{"seconds": 0.3}' >"$TMP/shed_batch" &
b=$!
sleep 0.2
timed "$XP/rpc/whoami" -H "X-Request-Id: prio-read-$$" >"$TMP/shed_read"
wait $b $hold
# access_field REQUEST_ID FIELD: a field of the shedding proxy's access log line of a request (server-side times)
access_field() {
	python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get('request_id') == sys.argv[2]][0][sys.argv[3]])" \
		"$TMP/shed_access.log" "$1" "$2" 2>/dev/null
}
wait_for 5 eval '[ -n "$(access_field prio-batch-$$ ts)" ]'
t_read_end=$(access_field "prio-read-$$" ts)
t_batch_end=$(access_field "prio-batch-$$" ts)
check "priority: a read queued after a batch call runs first (read $(cut -d' ' -f1,2 "$TMP/shed_read"), batch $(cut -d' ' -f1,2 "$TMP/shed_batch") s)" \
	eval '[ "$(cut -d" " -f1 "$TMP/shed_read")" = 200 ] && [ "$(cut -d" " -f1 "$TMP/shed_batch")" = 200 ] && python3 -c "import sys, datetime; r, b = (datetime.datetime.fromisoformat(a.replace(\"Z\", \"+00:00\")).timestamp() for a in sys.argv[1:]); sys.exit(not (b - r >= 0.25))" "$t_read_end" "$t_batch_end"'
# the search budget is 300 ms: behind a 2.2 s call, searches wait it out (503 after ~300 ms, not 2.2 s; that long (under call_timeout_ms, 3 s) so that 12 curl processes started on a loaded machine all arrive while it holds the connection), and once
# enough are queued the next ones are refused at once
timed "$XP/rpc/slow?seconds=2.2" >"$TMP/shed_hold" &
hold=$!
sleep 0.2
pids=()
for i in $(seq 12); do
	timed "$XP/rpc/events_page?kind=shed-$$-$i" -H "X-Request-Id: shed-$$-$i" >"$TMP/shed_s$i" &
	pids+=($!)
done
wait "${pids[@]}" $hold
cat "$TMP"/shed_s* >"$TMP/shed_searches"
metric_of() { curl -s "$1/metrics" | awk -v k="$2" 'index($0, k " ") == 1 { print $2 }'; }
waited=$(metric_of "$XP" 'pulse_shed_total{class="search",reason="waited"}')
estimated=$(metric_of "$XP" 'pulse_shed_total{class="search",reason="estimate"}')
# server-side durations (the access log), not the clients' (12 curl processes on a loaded machine)
wait_for 5 eval '[ "$(grep -c "\"shed-$$-" "$TMP/shed_access.log")" = 12 ]'
python3 -c "import json,sys; [print(d['status'], d['duration_ms']) for d in map(json.loads, open(sys.argv[1])) if d.get('request_id', '').startswith(sys.argv[2])]" \
	"$TMP/shed_access.log" "shed-$$-" >"$TMP/shed_server"
check "overload: 12 searches all 503 with Retry-After, none waited past ~budget ($waited waited, $estimated refused at once)" \
	eval '[ "$(awk "\$1 == 503 && \$3 >= 1" "$TMP/shed_searches" | wc -l)" = 12 ] && [ "$(awk "\$1 == 503 && \$2 < 1000" "$TMP/shed_server" | wc -l)" = 12 ] && [ "${waited:-0}" -ge 1 ] && [ "${estimated:-0}" -ge 1 ] && [ $((waited + estimated)) = 12 ]'
check "overload: refused at once means fast (the proxy answered each refused search in under 150 ms, half the 300 ms budget a waiting one spends; ASan and a loaded machine make 50 ms too tight)" \
	eval '[ "$(awk "\$1 == 503 && \$2 < 150" "$TMP/shed_server" | wc -l)" -ge "$estimated" ]'
check "overload: the call holding the connection still completes" eval '[ "$(cut -d" " -f1 "$TMP/shed_hold")" = 200 ]'
req GET "/rpc/whoami" "$T1"
curl -s -o "$TMP/body" -D "$TMP/headers" -H "Authorization: Bearer $T1" "$XP/rpc/events_page?kind=shed-after-$$"
check "after the overload: served again" eval 'grep -q "^HTTP/1.1 200" "$TMP/headers"'
stop_extra "$XP_PID"
check "shedding proxy stops cleanly" [ $? = 0 ]

# --- rate limits ---------------------------------------------------------------------------
T3=$(token "{\"tenant\": 3, \"exp\": $((NOW + 3600))}")
T4=$(token "{\"tenant\": 4, \"exp\": $((NOW + 3600))}")
# slow refills (one token per 10 s): a loaded machine may take seconds over a burst without refilling the bucket
RL_CONF=$(printf 'ratelimit_read: tenant=0.1/4\nratelimit_search: ip=0.1/3\nthreads: 2')
extra_proxy rla "$RL_CONF"
RLA=$XP RLA_PID=$XP_PID
extra_proxy rlb "$RL_CONF"
RLB=$XP RLB_PID=$XP_PID
# rl URL TOKEN: one request, prints "STATUS LIMIT REMAINING RETRY-AFTER" (- for a missing header): q of RateLimit-Policy
# and r of RateLimit (their first item), Retry-After; body in $TMP/body
rl() {
	curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -H "Authorization: Bearer $2" "$1"
	printf ' %s' "$(sed -n 's/^ratelimit-policy: "[^"]*";q=\([0-9]*\).*/\1/Ip' "$TMP/headers" | grep . || echo -)"
	printf ' %s' "$(sed -n 's/^ratelimit: "[^"]*";r=\([0-9]*\).*/\1/Ip' "$TMP/headers" | grep . || echo -)"
	printf ' %s' "$(grep -i "^retry-after:" "$TMP/headers" | cut -d' ' -f2 | tr -d '\r' | grep . || echo -)"
	echo
}
: >"$TMP/rl1"
for _ in 1 2 3 4 5 6; do rl "$RLA/rpc/whoami" "$T1" >>"$TMP/rl1"; done
check "rate limit (tenant=0.1/4): a burst of 4, then 429 with RateLimit-* and Retry-After ($(tr '\n' ',' <"$TMP/rl1"))" \
	eval '[ "$(cut -d" " -f1 "$TMP/rl1" | tr "\n" " ")" = "200 200 200 200 429 429 " ] && [ "$(sed -n 4p "$TMP/rl1")" = "200 4 0 -" ] && [ "$(sed -n 5p "$TMP/rl1" | cut -d" " -f2,3)" = "4 0" ] && [ "$(sed -n 6p "$TMP/rl1" | cut -d" " -f4)" -ge 1 ]'
status=$(rl "$RLA/rpc/whoami" "$T1" | cut -d' ' -f1)
check "the 429 is a problem document naming the bucket" eval 'is_problem 429 && grep -q "tenant bucket" "$TMP/body"'
check "another tenant has its own bucket" eval '[ "$(rl "$RLA/rpc/whoami" "$T2" | cut -d" " -f1)" = 200 ]'
sleep 10.1
check "the bucket refills at its rate: allowed again after 10 s" eval '[ "$(rl "$RLA/rpc/whoami" "$T1" | cut -d" " -f1)" = 200 ]'
: >"$TMP/rl2"
for p in "$RLA" "$RLB" "$RLA" "$RLB" "$RLA" "$RLB"; do rl "$p/rpc/whoami" "$T3" >>"$TMP/rl2"; done
check "two proxies share one bucket in Redis: 4 allowed across both, then 429 from either" \
	eval '[ "$(cut -d" " -f1 "$TMP/rl2" | tr "\n" " ")" = "200 200 200 200 429 429 " ]'
: >"$TMP/rl3"
for t in "$T1" "$T2" "$T3" "$T4"; do rl "$RLA/rpc/events_page?kind=rl-$$" "$t" >>"$TMP/rl3"; done
check "per-IP bucket (search ip=0.1/3): the 4th search from this address is limited whatever the tenant" \
	eval '[ "$(cut -d" " -f1 "$TMP/rl3" | tr "\n" " ")" = "200 200 200 429 " ] && grep -q "ip bucket" "$TMP/body"'
kill -STOP "$REDIS_PID"
: >"$TMP/rl4"
for _ in 1 2 3 4 5 6 7 8; do rl "$RLA/rpc/whoami" "$T4" >>"$TMP/rl4"; done
local_decisions=$(metric_of "$RLA" 'pulse_ratelimit_decisions_total{source="local"}')
kill -CONT "$REDIS_PID"
check "Redis down: limits still enforced by the local buckets ($(cut -d' ' -f1 "$TMP/rl4" | tr '\n' ' '); $local_decisions local decisions)" \
	eval '[ "$(grep -c "^200" "$TMP/rl4")" -ge 4 ] && [ "$(grep -c "^200" "$TMP/rl4")" -le 6 ] && [ "$(grep -c "^429" "$TMP/rl4")" -ge 2 ] && [ "${local_decisions:-0}" -ge 1 ]'
before=$(metric_of "$RLA" 'pulse_ratelimit_decisions_total{source="redis"}')
# each loop's client reconnects on its own backoff (at most redis_backoff_max_ms): retry for a while
wait_for 10 eval 'rl "$RLA/rpc/whoami" "$T2" >/dev/null; [ "$(metric_of "$RLA" "pulse_ratelimit_decisions_total{source=\"redis\"}")" -gt "$before" ]'
check "Redis back: decisions go to Redis again" [ $? = 0 ]
check "rate limit counters in /metrics" \
	eval '[ "$(metric_of "$RLA" "pulse_ratelimit_requests_total{class=\"read\",result=\"limited_tenant\"}")" -ge 2 ] && curl -s "$RLA/metrics" | promtool check metrics >/dev/null 2>&1'
stop_extra "$RLA_PID"
a=$?
stop_extra "$RLB_PID"
check "rate limited proxies stop cleanly" [ "$a$?" = 00 ]

# --- tracing, access log, slow clients ---------------------------------------------------------
OTLP_PORT=$(free_port $((REDIS_PORT + 40)))
python3 proxy/test/otlp_receiver.py "$OTLP_PORT" "$TMP/spans.jsonl" 2>"$TMP/otlp.err" &
OTLP_PID=$!
EXTRA_PIDS+=("$OTLP_PID")
wait_for 5 eval 'curl -s -o /dev/null "http://127.0.0.1:$OTLP_PORT/"'
extra_proxy tr "$(printf 'otlp_endpoint: http://127.0.0.1:%s/v1/traces\ntrace_sample_ppm: 0\nrequest_timeout_ms: 1000' "$OTLP_PORT")"
TRACE=4bf92f3577b34da6a3ce929d0e0e4736
PARENT=00f067aa0ba902b7
curl -s -o "$TMP/body" -H "Authorization: Bearer $T1" -H "traceparent: 00-$TRACE-$PARENT-01" "$XP/rpc/whoami"
curl -s -o /dev/null -H "Authorization: Bearer $T1" "$XP/rpc/whoami?unsampled=1" # head sampling 0: not exported
curl -s -o /dev/null -H "Authorization: Bearer $T1" -H "X-Request-Id: trace-fail-$$" "$XP/rpc/fail" # 500: always exported
span() { # span NAME FIELD-EXPR: prints the field of the spans named NAME of trace $TRACE
	python3 -c "
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d['traceId'] == sys.argv[2] and d['name'] == sys.argv[3]:
        print(eval(sys.argv[4]))" "$TMP/spans.jsonl" "$TRACE" "$1" "$2"
}
wait_for 5 eval '[ "$(span "GET /rpc/whoami" "d[\"spanId\"]")" != "" ] && [ -n "$(grep "trace-fail-$$" "$TMP/spans.jsonl")" ]'
root=$(span "GET /rpc/whoami" 'd["spanId"]')
check "traceparent accepted: the request span continues the caller's trace under its span" \
	eval '[ -n "$root" ] && [ "$(span "GET /rpc/whoami" "d[\"parentSpanId\"]")" = "$PARENT" ] && [ "$(span "GET /rpc/whoami" "d[\"kind\"]")" = 2 ]'
check "request span attributes: method, status, endpoint, class, tenant, request id" \
	eval '[ "$(span "GET /rpc/whoami" "[d[\"attributes\"].get(k) for k in (\"http.request.method\", \"http.response.status_code\", \"pulse.endpoint\", \"pulse.class\", \"pulse.tenant\")] == [\"GET\", 200, \"whoami\", \"read\", \"1\"] and len(d[\"attributes\"][\"pulse.request_id\"]) == 32")" = True ]'
check "database span: child of the request span, PostgreSQL, with the statement and its fingerprint" \
	eval '[ "$(span "database call" "d[\"parentSpanId\"]")" = "$root" ] && [ "$(span "database call" "d[\"attributes\"][\"db.system\"]")" = postgresql ] && [ -n "$(span "database call" "d[\"attributes\"][\"pulse.fingerprint\"]")" ] && span "database call" "d[\"attributes\"][\"db.statement\"]" | grep -q whoami'
check "serialization span: child of the request span, within it" \
	eval '[ "$(span "serialize response" "d[\"parentSpanId\"]")" = "$root" ] && [ "$(span "serialize response" "d[\"endTimeUnixNano\"] <= [json.loads(x) for x in open(sys.argv[1]) if json.loads(x)[\"spanId\"] == \"$root\"][0][\"endTimeUnixNano\"]")" = True ]'
check "the trace id reaches PostgreSQL (application_name)" eval '[[ "$(jq_ "d[\"application_name\"]")" == *"$TRACE"* ]]'
check "head sampling 0: an unsampled request is not exported; a failed one (500) always is" \
	eval '! grep -q "unsampled" "$TMP/spans.jsonl" && grep "trace-fail-$$" "$TMP/spans.jsonl" | grep -q "\"status\": *{\"code\": *2"'
curl -s -o /dev/null -H "Authorization: Bearer $T1" -H "traceparent: 00-$TRACE-$PARENT-01" -H 'X-Request-Id: cached-trace' "$XP/rpc/events_page?kind=trace-$$"
wait_for 5 eval '[ -n "$(span "cache lookup" "d[\"spanId\"]")" ]'
check "cache lookup span on a cacheable call (Redis)" eval '[ "$(span "cache lookup" "d[\"attributes\"][\"db.system\"]")" = redis ]'
wait_for 5 eval 'grep -q "cached-trace" "$TMP/tr_access.log"'
check "access log: trace id, class, cache result for the call" \
	eval 'python3 -c "import json,sys; d=[json.loads(l) for l in open(sys.argv[1]) if \"cached-trace\" in l][0]; sys.exit(not (d[\"trace_id\"] == sys.argv[2] and d[\"class\"] == \"search\" and d[\"cache\"] == \"miss\" and d[\"endpoint\"] == \"events_page\" and d[\"bytes\"] > 0))" "$TMP/tr_access.log" "$TRACE"'
check "tracer counters in /metrics: spans exported, none dropped" \
	eval '[ "$(metric_of "$XP" "pulse_trace_spans_total{result=\"exported\"}")" -ge 6 ] && [ "$(metric_of "$XP" "pulse_trace_spans_total{result=\"dropped\"}")" = 0 ]'
# slowloris: a client trickling a request head one byte every 200 ms is cut off after request_timeout_ms (1 s)
slow=$(timeout 10 python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t0 = time.time()
try:
    for c in b"GET /rpc/whoami HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
        s.send(bytes([c]))
        time.sleep(0.2)
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                break
        except BlockingIOError:
            pass
        s.setblocking(True)
except OSError:
    pass
print("%.1f" % (time.time() - t0))' "${XP##*:}")
check "slow client (one byte per 200 ms): connection closed after ~request_timeout_ms ($slow s)" \
	eval '[ -n "$slow" ] && python3 -c "import sys; sys.exit(not (0.8 <= float(sys.argv[1]) <= 3.0))" "$slow"'
check "tracing proxy alive" eval 'curl -sf "$XP/health" >/dev/null'
stop_extra "$XP_PID"
check "tracing proxy stops cleanly (spans flushed)" [ $? = 0 ]
kill "$OTLP_PID"
wait "$OTLP_PID" 2>/dev/null

# --- malformed input never kills the proxy ----------------------------------------
head -c 200000 /dev/zero | tr '\0' 'a' >"$TMP/big"
req POST /rpc/events_page "$T1" --data-binary @"$TMP/big"
check "body over body_limit: 413 problem+json, proxy alive" eval 'is_problem 413 && alive'
req POST /rpc/events_page "$T1" -H "Transfer-Encoding: chunked" -H "X-Request-Id: chunked-big" --data-binary @"$TMP/big"
check "chunked body over body_limit: 413 problem+json with the client's request id" \
	eval 'is_problem 413 && [ "$(header x-request-id)" = chunked-big ] &&
		wait_for 5 python3 -c "import json,sys; sys.exit(not any(d.get(\"request_id\") == \"chunked-big\" and d.get(\"status\") == 413 for d in map(json.loads, open(sys.argv[1]))))" "$TMP/access.log"'
broken=$(printf 'POST /rpc/events_page HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n' |
	timeout 5 python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(sys.stdin.buffer.read()); print(s.recv(65536).decode())' "$HTTP_PORT")
check "broken chunked encoding: 400 problem+json" eval 'printf "%s" "$broken" | grep -q "^HTTP/1.1 400" && printf "%s" "$broken" | grep -qi "^content-type: application/problem+json"'
req GET "/rpc/events_page" "$T1" -H "X-Junk: $(head -c 20000 "$TMP/big")"
check "headers over max_header_bytes: 431, proxy alive" eval 'is_problem 431 && alive'
{ exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" && printf 'GARBAGE \x01\x02\x03 HTTP/9.9\r\n\r\n' >&3 && timeout 2 cat <&3 >/dev/null; exec 3>&-; } 2>/dev/null
{ exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" && head -c 3000 /dev/urandom >&3 && timeout 2 cat <&3 >/dev/null; exec 3>&-; } 2>/dev/null
{ exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" && printf 'POST /rpc/events_page HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a"' >&3; exec 3>&-; } 2>/dev/null
curl -s -o /dev/null --data-binary $'\xff\xfe{"k\xc3":"\xff"}' -H "Authorization: Bearer $T1" "$BASE/rpc/events_page"
curl -s -o /dev/null -H "Authorization: Bearer $(head -c 6000 "$TMP/big")" "$BASE/rpc/events_page"
curl -s -o /dev/null -H "Authorization: Bearer a.$(printf '%s' '{"alg":"HS256"' | base64 -w0).b" "$BASE/rpc/events_page"
req GET /health ""
check "garbage HTTP, truncated bodies, invalid UTF-8, junk tokens: proxy alive" eval '[ "$status" = 200 ] && alive'

# --- catalog reload ------------------------------------------------------------------
psql_su -d pulse_e2e -c "CREATE FUNCTION api.added() RETURNS json LANGUAGE sql STABLE AS \$\$ SELECT '{\"added\": true}'::json \$\$; GRANT EXECUTE ON FUNCTION api.added() TO api; SELECT pulse.expose('api.added()')" >/dev/null
wait_for 5 eval 'curl -sf -H "Authorization: Bearer $T1" "$BASE/rpc/added" | grep -q added'
check "NOTIFY pulse_reload: a newly exposed endpoint is served" [ $? = 0 ]
psql_su -d pulse_e2e -c "SELECT pulse.unexpose('api.counts()')" >/dev/null
wait_for 5 eval '[ "$(curl -s -o /dev/null -w "%{http_code}" -H "Authorization: Bearer $T1" "$BASE/rpc/counts")" = 404 ]'
check "an unexposed endpoint is gone (404)" [ $? = 0 ]
sed -i 's/^max_args: 8$/max_args: 2/' "$TMP/proxy.yaml"
kill -HUP "$PROXY_PID"
sleep 0.5
req GET /rpc/added "$T1"
check "SIGHUP reloads and keeps serving" eval '[ "$status" = 200 ] && alive'
req GET "/rpc/events_page?page_size=1&kind=x&cursor=" "$T1"
check "SIGHUP applied a reloadable option (max_args 2: three arguments are a 400)" \
	eval 'is_problem 400 && [[ "$(jq_ "d[\"detail\"]")" == "too many arguments"* ]]'

# --- PostgreSQL hung ---------------------------------------------------------------
backends=$(psql_su -d pulse_e2e -Atc "SELECT pid FROM pg_stat_activity WHERE usename = 'pulse_proxy' AND application_name <> 'pulse-proxy catalog'")
kill -STOP $backends
t0=$SECONDS
req GET /rpc/whoami "$T1"
elapsed=$((SECONDS - t0))
kill -CONT $backends
check "server not answering: 503 after call_timeout_ms (3 s), not a hang" eval 'is_problem 503 && [ "$elapsed" -le 6 ]'
wait_for 10 eval 'curl -sf -H "Authorization: Bearer $T1" "$BASE/rpc/whoami" >/dev/null'
check "... and served again on fresh connections" [ $? = 0 ]

# --- PostgreSQL restart ------------------------------------------------------------
req GET "/rpc/counted?k=sie" "$T1"
sie_body=$(cat "$TMP/body")
req GET "/rpc/events_page?page_size=7" "$T1"
cp "$TMP/body" "$TMP/fresh"
t_sie=$(date +%s%N)
scripts/cluster.sh stop "$PG" >/dev/null
sleep 1.2 # past the staleness bound (heartbeat 100 + delivery 1000 ms)
req GET "/rpc/events_page?page_size=7" "$T1"
# (the invalidation channel went down with it: the entry cannot be vouched for, only stale-if-error serves it)
check "PostgreSQL down: a fresh cached entry is still served (stale-if-error)" eval '[ "$status" = 200 ] && [ "$(xcache)" = stale ] && cmp -s "$TMP/fresh" "$TMP/body"'
# past ttl (1 s) + stale-while-revalidate (5 s): only stale-if-error may serve it
while [ $(( ($(date +%s%N) - t_sie) / 1000000 )) -lt 6200 ]; do sleep 0.1; done
req GET "/rpc/counted?k=sie" "$T1"
check "PostgreSQL down: an expired entry is served stale-if-error" 	eval '[ "$status" = 200 ] && [ "$(xcache)" = stale ] && [ "$(cat "$TMP/body")" = "$sie_body" ]'
req GET /rpc/whoami "$T1"
check "PostgreSQL down: 503 with Retry-After" eval 'is_problem 503 && [ -n "$(header retry-after)" ]'
req GET /ready ""
check "PostgreSQL down: /ready is 503" [ "$status" = 503 ]
req GET /health ""
check "PostgreSQL down: /health is still 200" [ "$status" = 200 ]
scripts/cluster.sh start "$PG" "$PGPORT" >/dev/null
wait_for 15 eval 'curl -sf -H "Authorization: Bearer $T1" "$BASE/rpc/whoami" >/dev/null'
check "PostgreSQL back: served again without a proxy restart" [ $? = 0 ]
wait_for 10 curl -sf "$BASE/ready"
check "PostgreSQL back: /ready is 200 again" [ $? = 0 ]

# --- a database whose extension the proxy cannot read -------------------------------
# /ready says why in words a DBA acts on, the log says it once, and the proxy follows the DBA's fix without a restart
# (a failed catalog read is retried every 5 s)
psql_su -d postgres -c "CREATE DATABASE pulse_cat" >/dev/null
ready_catalog() { curl -s "$XP/ready" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['status'], d.get('catalog', '-'))"; }
extra_proxy catalog "pg_url: host=127.0.0.1 port=$PGPORT dbname=pulse_cat user=pulse_proxy connect_timeout=2"
CAT_PID=$XP_PID
rc_missing=$(ready_catalog)
check "no extension in the database: /ready is degraded and says CREATE EXTENSION pulse ($rc_missing)" \
	eval '[ "${rc_missing%% *}" = degraded ] && [[ "$rc_missing" == *"not installed"*"CREATE EXTENSION pulse"* ]]'
psql_su -d pulse_cat -c "CREATE EXTENSION pulse VERSION '1.1'" >/dev/null
wait_for 15 eval '[[ "$(ready_catalog)" == *"version 1.1"* ]]'
rc_old=$(ready_catalog)
check "pulse 1.1: /ready says the version and the fix ($rc_old)" \
	eval '[[ "$rc_old" == "degraded "*"version 1.1, this proxy needs 1.2: ALTER EXTENSION pulse UPDATE" ]]'
check "... logged once per problem, as an error" \
	eval '[ "$(grep -c "ALTER EXTENSION pulse UPDATE" "$TMP/catalog.err")" = 1 ] && grep -q "\"level\":\"error\".*not installed" "$TMP/catalog.err"'
psql_su -d pulse_cat -c "ALTER EXTENSION pulse UPDATE" >/dev/null
wait_for 15 eval '[ "$(ready_catalog)" = "ok -" ]'
rc_fixed=$(ready_catalog)
check "after ALTER EXTENSION pulse UPDATE the catalog loads without a restart: /ready ok ($rc_fixed)" \
	eval '[ "$rc_fixed" = "ok -" ] && grep -q "endpoints loaded" "$TMP/catalog.err"'
stop_extra "$CAT_PID"

# --- SIGTERM drains ----------------------------------------------------------------
# an idle keep-alive connection and a half-sent request stay open across the shutdown
exec 7<>"/dev/tcp/127.0.0.1/$HTTP_PORT"
printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n' >&7
# pool_max_prepared 2: every connection deallocated statements all along the test, without failing a call
for k in a b c d e f; do req GET "/rpc/events_page?page_size=1&kind=prep-$k" "$T1"; done
dealloc=$(curl -s "$BASE/metrics" | awk '$1 == "pulse_pool_statements_deallocated_total" { print $2 }')
check "prepared statements beyond pool_max_prepared are deallocated ($dealloc so far), none failed" \
	eval '[ "${dealloc:-0}" -gt 10 ] && ! grep -q "DEALLOCATE failed\|SQLSTATE 42P05\|SQLSTATE 26000" "$TMP/proxy.err"'
exec 8<>"/dev/tcp/127.0.0.1/$HTTP_PORT"
printf 'GET /hea' >&8
curl -s -o "$TMP/drain" -w '%{http_code}' -H "Authorization: Bearer $T1" "$BASE/rpc/slow?seconds=0.7" >"$TMP/drain_status" &
curl_pid=$!
sleep 0.3
kill -TERM "$PROXY_PID"
wait "$curl_pid"
wait "$PROXY_PID"
rc=$?
exec 7>&- 8>&-
check "SIGTERM: the request in flight completes" [ "$(cat "$TMP/drain_status")" = 200 ]
check "SIGTERM: exit status 0" [ "$rc" = 0 ]
stray=$(grep -a -v "^{" "$TMP/proxy.err" | head -n 30)
if [ -z "$stray" ]; then ok "no sanitizer report, no stray stderr"; else notok "no sanitizer report, no stray stderr" "$(printf '%s' "$stray" | sed '2,$s/^/#   /')"; fi
[ -z "$stray" ] || { cp "$TMP/proxy.err" "build/e2e-proxy-$$.err" && echo "#   the whole stderr: build/e2e-proxy-$$.err"; }
PROXY_PID=
check "access log has one JSON line per request" \
	eval '[ "$(wc -l <"$TMP/access.log")" -gt 40 ] && python3 -c "import json,sys; [json.loads(l) for l in open(\"$TMP/access.log\")]"'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
