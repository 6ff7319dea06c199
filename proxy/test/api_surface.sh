#!/usr/bin/env bash
# The proxy's HTTP surface for API clients and browsers, end to end (issue
# 13): one PostgreSQL, one Redis, one proxy, and
#   - GET /openapi.json: valid OpenAPI 3.1 for a packaged validator
#     (@seriousme/openapi-schema-validator, pinned in proxy/test/npm), every
#     catalog endpoint with its methods and its parameters typed from the
#     function's argument types, its ETag, 304, gzip and HEAD; a COMMENT ON
#     FUNCTION reaches the document through the catalog reload; SIGHUP with
#     openapi: 0 turns it off;
#   - HEAD of read endpoints: GET's status and headers, no body; 405 with
#     Allow for the other methods;
#   - JSON arrays in a POST body for array arguments;
#   - RateLimit and RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers-12)
#     as RFC 9651 lists, one item per bucket, on allowed and limited answers,
#     r counting down, t = Retry-After on the 429, pk the tenant and the
#     address; the draft-06 fields only with ratelimit_legacy_headers;
#   - CORS: preflights answered by the proxy (204, 403 for an origin that is
#     not allowed, 405, 404), the headers on answers; and a real browser
#     (Debian's chromium, headless, driven by playwright-core): fetch() from
#     a page of an allowed origin (another port) succeeds and reads the
#     exposed headers, from another origin it fails;
#   - /docs: Redoc (the npm package's standalone bundle, served from
#     docs_dir) renders the document in the browser; a screenshot is taken.
# The npm packages are installed with `npm ci` from the committed lock file
# (the npm registry is the only network it needs).
# Prints TAP lines; PULSE_PROXY_BIN, PULSE_TEST_PORT, PULSE_TEST_TMP as e2e.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. proxy/test/lib.sh

proxy_test_setup api 26100
SECRET=api-secret-$$
PROXY_PID=
REDIS_PID=
PAGE_PID=
proxy_test_exit_traps
command -v node >/dev/null || proxy_test_abort "node is not installed (scripts/deps.sh)"
[ -x /usr/bin/chromium ] || proxy_test_abort "chromium is not installed (scripts/deps.sh)"
NPM=proxy/test/npm
# node_modules/.pulse-lock: the lock file node_modules was installed from (npm's own .package-lock.json is written in
# another form, so it cannot tell); installed again only when the committed lock file changed, under a lock (the suite
# and its -asan twin run side by side)
(
	flock 9
	cmp -s "$NPM/package-lock.json" "$NPM/node_modules/.pulse-lock" 2>/dev/null ||
		(cd "$NPM" && timeout 600 npm ci --loglevel=error && cp package-lock.json node_modules/.pulse-lock) >"$TMP/npm.log" 2>&1
) 9>"$NPM/.install-lock" || proxy_test_abort "npm ci in $NPM failed: $(tail -n 3 "$TMP/npm.log" | tr '\n' ' ')"

proxy_test_db pulse_api
psql_su -d pulse_api >/dev/null <<'SQL' || proxy_test_abort "cannot load the api fixture"
CREATE FUNCTION api.typed(i int, b bigint, n numeric, f float8, t text, flag boolean, d date, ts timestamptz,
                          u uuid, j jsonb, ids int[], tags text[] DEFAULT '{a,b}', lim int DEFAULT 10,
                          since timestamptz DEFAULT now())
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('i', i, 'b', b, 'n', n, 'f', f, 't', t, 'flag', flag, 'd', d, 'ts', ts, 'u', u,
                             'j', j, 'ids', ids, 'tags', tags, 'lim', lim, 'since_set', since IS NOT NULL)
$$;
COMMENT ON FUNCTION api.typed IS 'Echoes its typed arguments.';
COMMENT ON FUNCTION api.events_page IS 'Events, newest first, a page at a time.';
GRANT EXECUTE ON FUNCTION api.typed TO api;
SELECT pulse.expose('api.typed'::regproc::regprocedure, 'read');
SQL

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
wait_for 10 redis-cli -p "$REDIS_PORT" ping || proxy_test_abort "cannot start redis-server on port $REDIS_PORT"

# the pages of the browser checks: another port is another origin; http://127.0.0.1:P is allowed, http://localhost:P is not
PAGE_PORT=$(free_port $((REDIS_PORT + 1)))
mkdir -p "$TMP/pages"
printf '<!DOCTYPE html><html><head><meta charset="utf-8"><title>pulse CORS test page</title></head><body>page</body></html>\n' \
	>"$TMP/pages/index.html"
python3 -m http.server "$PAGE_PORT" --bind 127.0.0.1 --directory "$TMP/pages" >"$TMP/pages.log" 2>&1 &
PAGE_PID=$!
wait_for 10 curl -sf "http://127.0.0.1:$PAGE_PORT/index.html" || proxy_test_abort "cannot start the page server on $PAGE_PORT"
ALLOWED=http://127.0.0.1:$PAGE_PORT
OTHER=http://localhost:$PAGE_PORT

write_conf() { # write_conf [extra lines]
	cat >"$TMP/proxy.yaml" <<CONF
listen: 127.0.0.1:$HTTP_PORT
pg_url: host=127.0.0.1 port=$PGPORT dbname=pulse_api user=pulse_proxy connect_timeout=2
threads: 2
pool_size: 2
access_log: "off"
redis_url: redis://127.0.0.1:$REDIS_PORT
invalidation_delivery_ms: 1000
ratelimit_read: tenant=0.02/5,global=1000/2000
ratelimit_search: ip=0.5/3
cors_origins: "https://app.example, $ALLOWED"
cors_max_age: 321
docs_dir: $PWD/$NPM/node_modules/redoc/bundles
$1
CONF
}
write_conf ""
PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/proxy.yaml" 2>>"$TMP/proxy.err" &
PROXY_PID=$!
BASE=http://127.0.0.1:$HTTP_PORT
wait_for 20 curl -sf "$BASE/ready" || proxy_test_abort "the proxy did not become ready: $(tail -n 5 "$TMP/proxy.err")"
reload() { # reload [extra config lines]: SIGHUP with a new configuration
	write_conf "${1:-}"
	kill -HUP "$PROXY_PID"
	sleep 0.5
}

tok() { python3 proxy/test/token.py "$SECRET" "{\"tenant\": $1, \"exp\": $(($(date +%s) + 3600))}"; }
T1=$(tok 1)
T2=$(tok 2)
T3=$(tok 3)
T4=$(tok 4)
T5=$(tok 5)
H="$TMP/h"
B="$TMP/b"
# hdr NAME: the value of a response header in $H ("" when absent)
hdr() { grep -i "^$1:" "$H" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
status() { head -n 1 "$H" | cut -d' ' -f2; }
is_problem() { [ "$(status)" = "$1" ] && [[ $(hdr content-type) == application/problem+json* ]] && grep -q "\"status\":$1" "$B"; }
q() { psql_su -d pulse_api -At -c "$1"; }
# raw_head PATH [TOKEN]: HEAD PATH and GET /health pipelined on one connection; writes the HEAD answer's head to $H and
# succeeds when the GET's answer follows it at once (no body bytes after the HEAD answer's head)
cat >"$TMP/raw_head.py" <<'PY'
import socket, sys
path, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
auth = "Authorization: Bearer %s\r\n" % sys.argv[4] if len(sys.argv) > 4 else ""
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(("HEAD %s HTTP/1.1\r\nHost: t\r\n%s\r\nGET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % (path, auth)).encode())
data = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    data += c
head, _, rest = data.partition(b"\r\n\r\n")
open(out, "wb").write(head + b"\r\n")
sys.exit(0 if rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b'{"status":"ok"}') else 1)
PY
raw_head() { python3 "$TMP/raw_head.py" "$1" "$HTTP_PORT" "$H" ${2:+"$2"}; }

# --- OpenAPI --------------------------------------------------------------------------------------
curl -s -D "$H" -o "$TMP/openapi.json" "$BASE/openapi.json"
tap_check "GET /openapi.json: 200, JSON, a strong ETag, no-cache" \
	eval '[ "$(status)" = 200 ] && [[ $(hdr content-type) == application/json* ]] && [[ $(hdr etag) =~ ^\"[0-9a-f]{32}\"$ ]] && [ "$(hdr cache-control)" = no-cache ]'
ETAG=$(hdr etag)
node "$NPM/validate.mjs" "$TMP/openapi.json" >"$TMP/validate.out" 2>&1
tap_check "the packaged validator (@seriousme/openapi-schema-validator) accepts the document as OpenAPI 3.1 ($(head -c 200 "$TMP/validate.out"))" \
	grep -qx "valid 3.1" "$TMP/validate.out"

q "SELECT json_agg(json_build_object('name', name, 'class', class, 'arg_names', arg_names, 'arg_types', arg_types,
                                     'arg_defaults', arg_defaults, 'ttl', extract(epoch FROM ttl),
                                     'description', description) ORDER BY name) FROM pulse.endpoints" >"$TMP/catalog.json"
# every endpoint of the catalog: its methods, a parameter (GET) and a body member (POST) per argument, typed from the
# argument's type, required when it has no default; the class, TTL and description
cat >"$TMP/catalog_check.py" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1])); cat = json.load(open(sys.argv[2]))
want = {"integer": ("integer", "int32"), "bigint": (["integer", "string"], "int64"), "numeric": (["number", "string"], None),
        "double precision": ("number", "double"), "text": ("string", None), "boolean": ("boolean", None),
        "date": ("string", "date"), "timestamp with time zone": ("string", "date-time"), "uuid": ("string", "uuid"),
        "jsonb": ("string", None), "json": ("string", None), "float8": ("number", "double")}
bad = []
for e in cat:
    path = doc["paths"].get("/rpc/" + e["name"])
    if path is None:
        bad.append(e["name"] + ": no path"); continue
    readonly = e["class"] in ("read", "search")
    if set(path) != ({"get", "post"} if readonly else {"post"}):
        bad.append(e["name"] + ": methods " + ",".join(sorted(path)))
    nreq = len(e["arg_names"]) - e["arg_defaults"]
    for op in path.values():
        if op.get("x-pulse-class") != e["class"]:
            bad.append(e["name"] + ": x-pulse-class")
        if readonly and op.get("x-pulse-ttl") != e["ttl"] and not (e["ttl"] in (None, 0) and op.get("x-pulse-ttl") is None):
            bad.append(e["name"] + ": x-pulse-ttl %r vs %r" % (op.get("x-pulse-ttl"), e["ttl"]))
        if e["description"] and not op["description"].startswith(e["description"]):
            bad.append(e["name"] + ": description")
    if readonly:
        params = [p for p in path["get"]["parameters"] if "$ref" not in p]
        if {"$ref": "#/components/parameters/PulseMinLSN"} not in path["get"]["parameters"]:
            bad.append(e["name"] + ": no Pulse-Min-LSN")
        if [p["name"] for p in params] != e["arg_names"]:
            bad.append(e["name"] + ": parameters %r" % [p["name"] for p in params])
        for k, (p, t) in enumerate(zip(params, e["arg_types"])):
            s = p["schema"]
            if s.get("x-pulse-type") != t or p["required"] != (k < nreq) or p["in"] != "query":
                bad.append("%s.%s: %r" % (e["name"], p["name"], p))
            w = ("string", None) if t.endswith("[]") else want.get(t)
            if w and (s.get("type") != w[0] or s.get("format") != w[1]):
                bad.append("%s.%s: %s is %r/%r" % (e["name"], p["name"], t, s.get("type"), s.get("format")))
    body = path["post"]["requestBody"]["content"]["application/json"]["schema"]
    if list(body["properties"]) != e["arg_names"] or body.get("required", []) != e["arg_names"][:nreq]:
        bad.append(e["name"] + ": body %r" % body)
    for name, t in zip(e["arg_names"], e["arg_types"]):
        s = body["properties"][name]
        if t.endswith("[]") and s.get("type") != ["array", "string", "null"]:
            bad.append("%s.%s: body array %r" % (e["name"], name, s))
print("%d endpoints checked; %s" % (len(cat), "; ".join(bad[:8]) if bad else "all match"))
sys.exit(1 if bad or len(cat) < 10 else 0)
PY
python3 "$TMP/catalog_check.py" "$TMP/openapi.json" "$TMP/catalog.json" >"$TMP/catalog_check.out" 2>&1
tap_check "every catalog endpoint is in the document with its methods and parameter types ($(cat "$TMP/catalog_check.out"))" \
	grep -q "all match" "$TMP/catalog_check.out"
tap_check "the cursor parameter is marked x-pulse-cursor, defaults are shown, the bearer scheme is declared" \
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
p = {x.get("name"): x for x in d["paths"]["/rpc/events_page"]["get"]["parameters"]}
t = {x.get("name"): x for x in d["paths"]["/rpc/typed"]["get"]["parameters"]}
assert p["cursor"].get("x-pulse-cursor") is True and "x-pulse-cursor" not in p["kind"]
assert p["page_size"]["schema"]["default"] == 20 and t["lim"]["schema"]["default"] == 10
assert t["since"]["schema"]["x-pulse-default-expression"] == "now()" and t["tags"]["schema"]["x-pulse-default"] == ["a", "b"]
assert d["components"]["securitySchemes"]["bearer"] == {**d["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
assert "Link" in d["paths"]["/rpc/events_page"]["get"]["responses"]["200"]["headers"]
assert "Pulse-LSN" in d["paths"]["/rpc/add_event"]["post"]["responses"]["200"]["headers"]
' "$TMP/openapi.json"
curl -s -D "$H" -o "$B" -H "If-None-Match: $ETAG" "$BASE/openapi.json"
tap_check "If-None-Match with its ETag: 304, no body" eval '[ "$(status)" = 304 ] && [ ! -s "$B" ] && [ "$(hdr etag)" = "$ETAG" ]'
curl -s -D "$H" -o "$B" -H "Accept-Encoding: gzip" "$BASE/openapi.json"
tap_check "gzip when accepted, with its own ETag, the same document" \
	eval '[ "$(hdr content-encoding)" = gzip ] && [ "$(hdr etag)" = "${ETAG%\"}-gzip\"" ] && gzip -dc "$B" | cmp -s - "$TMP/openapi.json"'
raw_head /openapi.json
rc=$?
tap_check "HEAD /openapi.json: the GET's headers and length, no body" \
	eval '[ $rc = 0 ] && [ "$(status)" = 200 ] && [ "$(hdr etag)" = "$ETAG" ] && [ "$(hdr content-length)" = "$(wc -c <"$TMP/openapi.json")" ]'
q "COMMENT ON FUNCTION api.whoami() IS 'Who the token says you are.'" >/dev/null
wait_for 10 eval 'curl -s "$BASE/openapi.json" | grep -q "Who the token says you are"'
rc=$?
tap_check "COMMENT ON FUNCTION reaches the document (NOTIFY pulse_reload), with a new ETag" \
	eval '[ $rc = 0 ] && curl -s -D "$H" -o /dev/null "$BASE/openapi.json" && [ "$(hdr etag)" != "$ETAG" ]'
curl -s -o "$B" -D "$H" -X POST "$BASE/openapi.json"
tap_check "POST /openapi.json: 405 with Allow: GET, HEAD" eval 'is_problem 405 && [ "$(hdr allow)" = "GET, HEAD" ]'

# --- HEAD -----------------------------------------------------------------------------------------------
strip() { grep -iv '^\(date\|x-request-id\|x-cache\|ratelimit\|cache-control\):' "$1" | tr -d '\r' | grep -v '^$' | sort; }
curl -s -D "$TMP/get.h" -o "$TMP/get.b" -H "Authorization: Bearer $T2" "$BASE/rpc/event?id=1"
raw_head "/rpc/event?id=1" "$T2"
rc=$?
cp "$H" "$TMP/head.h"
tap_check "HEAD of a read endpoint: the GET's status and headers (ETag, Content-Length, Content-Type), no body ($(diff <(strip "$TMP/get.h") <(strip "$TMP/head.h") | tr '\n' ' '))" \
	eval '[ $rc = 0 ] && [ "$(wc -c <"$TMP/get.b")" -gt 20 ] && diff <(strip "$TMP/get.h") <(strip "$TMP/head.h") >/dev/null && grep -qi "^etag:" "$TMP/head.h" && grep -qi "^ratelimit:" "$TMP/head.h"'
raw_head "/rpc/events_page?page_size=2" "$T2"
rc=$?
tap_check "HEAD of a paged search endpoint carries its Link, no body" eval '[ $rc = 0 ] && [ "$(status)" = 200 ] && [[ $(hdr link) == *rel=\"next\"* ]]'
raw_head /rpc/add_event "$T2"
rc=$?
tap_check "HEAD of a write endpoint: 405, Allow: POST, no body" eval '[ $rc = 0 ] && [ "$(status)" = 405 ] && [ "$(hdr allow)" = POST ]'
curl -s -X PUT -D "$H" -o "$B" -H "Authorization: Bearer $T2" "$BASE/rpc/event?id=1"
tap_check "PUT on a read endpoint: 405, Allow: GET, HEAD, POST" eval 'is_problem 405 && [ "$(hdr allow)" = "GET, HEAD, POST" ]'

# --- typed arguments through POST: JSON arrays for array arguments -------------------------------------------------
curl -s -o "$B" -H "Authorization: Bearer $T2" -H 'Content-Type: application/json' \
	-d '{"i": 1, "b": "9007199254740993", "n": "1.10", "f": 2.5, "t": "x", "flag": true, "d": "2026-01-02",
	     "ts": "2026-01-02T03:04:05Z", "u": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "j": {"k": [1]},
	     "ids": [3, 1, 2], "tags": ["a,b", "c\"d", null]}' "$BASE/rpc/typed"
tap_check "POST with every type: bigint as a string keeps its digits, JSON arrays for array arguments ($(head -c 300 "$B"))" \
	python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["b"] == 9007199254740993 and r["n"] == 1.10 and r["ids"] == [3, 1, 2] and r["tags"] == ["a,b", "c\"d", None], r
assert r["j"] == {"k": [1]} and r["lim"] == 10 and r["since_set"] is True and r["flag"] is True
' "$B"
curl -s -o "$B" -D "$H" -H "Authorization: Bearer $T2" "$BASE/rpc/typed?i=1&b=2&n=3&f=4&t=x&flag=false&d=2026-01-02&ts=2026-01-02&u=6ba7b810-9dad-11d1-80b4-00c04fd430c8&j=%5B1%5D&ids=%7B1,2%7D"
tap_check "GET with every type: an array literal in the query string" \
	python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["ids"] == [1, 2] and r["j"] == [1] and r["tags"] == ["a", "b"], r' "$B"

# --- RateLimit fields -------------------------------------------------------------------------------------------------
# sf FIELD: checks a List of Items of RFC 9651 as the proxy writes them ("<name>";key=value... with Integer and Byte
# Sequence values), prints "name r t pk" (or q w) per item
cat >"$TMP/sf.py" <<'PY'
import base64, re, sys
item = re.compile(r'"([a-z]+-[a-z]+)"((?:;[a-z]+=(?:[0-9]+|:[A-Za-z0-9+/]*={0,2}:))*)')
text, pos, out = sys.argv[1], 0, []
while True:
    m = item.match(text, pos)
    if not m:
        sys.exit("not a list of items at %d: %r" % (pos, text))
    params = dict(p.split("=", 1) for p in m.group(2).split(";")[1:])
    if "pk" in params:
        params["pk"] = base64.b64decode(params["pk"].strip(":"), validate=True).decode()
    out.append(m.group(1) + " " + " ".join("%s=%s" % kv for kv in params.items()))
    pos = m.end()
    if pos == len(text):
        break
    if text[pos:pos + 2] != ", ":
        sys.exit("bad separator at %d: %r" % (pos, text))
    pos += 2
print("|".join(out))
PY
sf() { python3 "$TMP/sf.py" "$1"; }
# six requests in a row (a token every 50 s: none comes back meanwhile), parsed afterwards
for k in 1 2 3 4 5 6; do curl -s -D "$TMP/rl$k.h" -o "$B" -H "Authorization: Bearer $T1" "$BASE/rpc/whoami"; done
: >"$TMP/rl"
for k in 1 2 3 4 5 6; do
	cp "$TMP/rl$k.h" "$H"
	echo "$(status) [$(sf "$(hdr ratelimit)")] [$(sf "$(hdr ratelimit-policy)")] $(hdr retry-after)" >>"$TMP/rl"
done
tap_check "RateLimit-Policy: an item per bucket (tenant, global) with q, w and the tenant as pk ($(sed -n 1p "$TMP/rl"))" \
	eval 'sed -n 1p "$TMP/rl" | grep -qF "[read-tenant q=5 w=250 pk=1|read-global q=2000 w=2]"'
tap_check "RateLimit: r counts down per request, t the seconds to the next token (<= 50 s at 0.02/s), pk the tenant ($(cut -d']' -f1 "$TMP/rl" | tr '\n' ' '))" \
	eval 'for k in 1 2 3 4 5; do sed -n "${k}p" "$TMP/rl" | grep -q "^200 \[read-tenant r=$((5 - k)) t=\([1-9]\|[1-4][0-9]\|50\) pk=1|read-global r=[0-9]* t=[01]\]" || exit 1; done'
tap_check "the 429: r=0, t = Retry-After, both fields, no draft-06 fields ($(sed -n 6p "$TMP/rl"))" \
	eval 'l=$(sed -n 6p "$TMP/rl"); ra=${l##* }; [[ $l =~ ^429\ \[read-tenant\ r=0\ t=$ra\ pk=1\| ]] && [ "$ra" -ge 1 ] && ! grep -qi "^ratelimit-limit:" "$TMP/rl6.h" && ! grep -qi "^ratelimit-limit:" "$TMP/rl1.h"'
cp "$TMP/rl6.h" "$H"
tap_check "the 429 is a problem document" is_problem 429
curl -s -D "$H" -o "$B" -H "Authorization: Bearer $T2" "$BASE/rpc/events_page?page_size=1"
tap_check "a search endpoint's ip bucket: the client address as pk ($(hdr ratelimit))" \
	eval '[[ $(sf "$(hdr ratelimit)") =~ ^search-ip\ r=[12]\ t=[12]\ pk=127.0.0.1$ ]] && [ "$(sf "$(hdr ratelimit-policy)")" = "search-ip q=3 w=6 pk=127.0.0.1" ]'
curl -s -D "$H" -o "$B" -H "Authorization: Bearer $T2" -X POST "$BASE/rpc/add_event" -H 'Content-Type: application/json' -d '{"kind": "rl"}'
tap_check "a class without a limit gets no RateLimit field" eval '[ "$(status)" = 200 ] && [ -z "$(hdr ratelimit)" ] && [ -z "$(hdr ratelimit-policy)" ]'
reload "ratelimit_legacy_headers: 1"
curl -s -D "$H" -o "$B" -H "Authorization: Bearer $T3" "$BASE/rpc/whoami"
tap_check "ratelimit_legacy_headers (SIGHUP): RateLimit-Limit, -Remaining, -Reset too, RateLimit-Policy in the -12 form" \
	eval '[ "$(hdr ratelimit-limit)" = 5 ] && [ "$(hdr ratelimit-remaining)" = 4 ] && [ -n "$(hdr ratelimit-reset)" ] && [[ $(hdr ratelimit-policy) == \"read-tenant\"* ]] && [ -n "$(hdr ratelimit)" ]'
reload ""

# --- CORS with curl ------------------------------------------------------------------------------------------------
pre() { # pre ORIGIN METHOD PATH [HEADERS]: a preflight
	curl -s -X OPTIONS -D "$H" -o "$B" -H "Origin: $1" -H "Access-Control-Request-Method: $2" \
		${4:+-H "Access-Control-Request-Headers: $4"} "$BASE$3"
}
pre "$ALLOWED" GET /rpc/whoami "authorization"
tap_check "preflight from an allowed origin: 204, the origin, the endpoint's methods, Authorization and Content-Type, Max-Age" \
	eval '[ "$(status)" = 204 ] && [ "$(hdr access-control-allow-origin)" = "$ALLOWED" ] && [ "$(hdr access-control-allow-methods)" = "GET, HEAD, POST" ] && [[ $(hdr access-control-allow-headers) == Authorization,\ Content-Type* ]] && [ "$(hdr access-control-max-age)" = 321 ] && [[ $(hdr vary) == *Origin* ]] && [ ! -s "$B" ]'
pre "$ALLOWED" POST /rpc/add_event "authorization, content-type"
tap_check "preflight for a write endpoint: POST only" eval '[ "$(status)" = 204 ] && [ "$(hdr access-control-allow-methods)" = POST ]'
pre "$OTHER" GET /rpc/whoami "authorization"
tap_check "preflight from an origin that is not allowed: 403 problem document, no CORS header" \
	eval 'is_problem 403 && [ -z "$(hdr access-control-allow-origin)" ] && [ -z "$(hdr access-control-allow-methods)" ] && grep -q "localhost" "$B"'
pre "$ALLOWED" GET /rpc/add_event
tap_check "preflight for a method the endpoint does not take: 405 with Allow" eval 'is_problem 405 && [ "$(hdr allow)" = "POST, OPTIONS" ]'
pre "$ALLOWED" GET /rpc/nope
tap_check "preflight for no such endpoint: 404" is_problem 404
pre "https://APP.example" GET /openapi.json
tap_check "preflight for /openapi.json, origin compared case-insensitively: GET, HEAD" \
	eval '[ "$(status)" = 204 ] && [ "$(hdr access-control-allow-methods)" = "GET, HEAD" ] && [ "$(hdr access-control-allow-origin)" = "https://APP.example" ]'
curl -s -X OPTIONS -D "$H" -o "$B" "$BASE/rpc/event"
tap_check "a plain OPTIONS (no preflight): 204 with Allow" eval '[ "$(status)" = 204 ] && [ "$(hdr allow)" = "GET, HEAD, POST, OPTIONS" ] && [ -z "$(hdr access-control-allow-origin)" ]'
curl -s -D "$H" -o "$B" -H "Origin: $ALLOWED" -H "Authorization: Bearer $T4" "$BASE/rpc/event?id=2"
tap_check "an answer to an allowed origin: Allow-Origin, Expose-Headers, Vary: Origin (with Accept-Encoding)" \
	eval '[ "$(hdr access-control-allow-origin)" = "$ALLOWED" ] && [ "$(hdr access-control-expose-headers)" = "Link, ETag, RateLimit, RateLimit-Policy, Retry-After, X-Request-Id, X-Cache, Pulse-LSN" ] && [ "$(hdr vary)" = "Accept-Encoding, Origin" ]'
curl -s -D "$H" -o "$B" -H "Origin: $OTHER" -H "Authorization: Bearer $T4" "$BASE/rpc/event?id=2"
tap_check "an answer to another origin: no CORS header but Vary: Origin" \
	eval '[ "$(status)" = 200 ] && [ -z "$(hdr access-control-allow-origin)" ] && [ -z "$(hdr access-control-expose-headers)" ] && [[ $(hdr vary) == *Origin* ]]'
curl -s -D "$H" -o "$B" -H "Origin: $ALLOWED" "$BASE/rpc/whoami"
tap_check "a problem document (401) to an allowed origin carries the CORS headers (the page can read it)" \
	eval 'is_problem 401 && [ "$(hdr access-control-allow-origin)" = "$ALLOWED" ]'
reload 'cors_origins: "*"'
curl -s -D "$H" -o "$B" -H "Origin: $OTHER" -H "Authorization: Bearer $T4" "$BASE/rpc/event?id=2"
tap_check "cors_origins \"*\" (SIGHUP): Allow-Origin * for any origin" eval '[ "$(hdr access-control-allow-origin)" = "*" ]'
reload 'cors_origins: ""'
curl -s -D "$H" -o "$B" -H "Origin: $ALLOWED" -H "Authorization: Bearer $T4" "$BASE/rpc/event?id=2"
tap_check "cors_origins empty: CORS off, no header at all" eval '[ -z "$(hdr access-control-allow-origin)" ] && [ "$(hdr vary)" = Accept-Encoding ]'
pre "$ALLOWED" GET /rpc/whoami
tap_check "cors_origins empty: a preflight is refused (403)" eval 'is_problem 403 && [ -z "$(hdr access-control-allow-origin)" ]'
reload ""
write_conf 'cors_origins: "https://a.example/"'
kill -HUP "$PROXY_PID"
wait_for 5 grep -q 'is not an origin: an origin has no path' "$TMP/proxy.err"
rc=$?
tap_check "a bad cors_origins on SIGHUP is refused with its reason; the current configuration stays" \
	eval '[ $rc = 0 ] && pre "$ALLOWED" GET /rpc/whoami && [ "$(status)" = 204 ] && [ "$(hdr access-control-allow-origin)" = "$ALLOWED" ]'
reload ""

# --- a real browser ------------------------------------------------------------------------------------------------
node "$NPM/browser.mjs" "$BASE" "$T5" "$ALLOWED/index.html" "$OTHER/index.html" "$BASE/docs" "$TMP/docs.png" "$TMP/chromium-profile" \
	>"$TMP/browser.json" 2>"$TMP/browser.err"
bq() { python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$TMP/browser.json" "$1" 2>/dev/null; }
tap_check "chromium ran ($(head -c 300 "$TMP/browser.err") $(bq 'd.get("error", "")'))" eval '[ "$(bq "\"allowed\" in d and \"error\" not in d")" = True ]'
tap_check "fetch() with a bearer token from a page of the allowed origin ($(bq 'd["allowed"]["origin"]')): 200, the body, the exposed RateLimit and X-Request-Id" \
	eval '[ "$(bq "d[\"allowed\"][\"get\"][\"status\"]")" = 200 ] && [ "$(bq "json.loads(d[\"allowed\"][\"get\"][\"body\"])[\"tenant\"]")" = 5 ] && [[ $(bq "d[\"allowed\"][\"get\"][\"ratelimit\"]") == \"read-tenant\"* ]] && [ -n "$(bq "d[\"allowed\"][\"get\"][\"rid\"] or \"\"")" ]'
tap_check "fetch() POST with a JSON body (preflight for Content-Type) from the allowed origin: 200" \
	eval '[ "$(bq "d[\"allowed\"][\"post\"][\"status\"]")" = 200 ]'
tap_check "the page reads the ETag of a cached answer, and a 401 problem document" \
	eval '[[ $(bq "d[\"allowed\"][\"etag\"][\"etag\"]") =~ ^\"[0-9a-f]{32} ]] && [ "$(bq "d[\"allowed\"][\"noauth\"][\"status\"]")" = 401 ]'
tap_check "fetch() from a page of another origin ($(bq 'd["other"]["origin"]')) fails: $(bq 'd["other"]["get"].get("error")')" \
	eval '[ "$(bq "[d[\"other\"][k][\"ok\"] for k in (\"get\", \"post\", \"etag\", \"noauth\")]")" = "[False, False, False, False]" ]'

# --- /docs -------------------------------------------------------------------------------------------------------------
curl -s -D "$H" -o "$B" "$BASE/docs"
tap_check "GET /docs: the HTML page loading Redoc" eval '[ "$(status)" = 200 ] && [[ $(hdr content-type) == text/html* ]] && grep -q "/docs/redoc.standalone.js" "$B"'
curl -s -D "$H" -o "$B" "$BASE/docs/redoc.standalone.js"
tap_check "GET /docs/redoc.standalone.js: the npm package's bundle, from docs_dir" \
	eval '[ "$(status)" = 200 ] && [[ $(hdr content-type) == text/javascript* ]] && cmp -s "$B" "$NPM/node_modules/redoc/bundles/redoc.standalone.js"'
tap_check "Redoc renders the document in chromium: every endpoint, the comments ($(bq 'd.get("docs", {}).get("errors")'))" \
	eval 'for e in $(python3 -c "import json; print(\" \".join(x[\"name\"] for x in json.load(open(\"$TMP/catalog.json\"))))"); do bq "\"$e\" in d[\"docs\"][\"text\"]" | grep -q True || exit 1; done; bq "\"Echoes its typed arguments.\" in d[\"docs\"][\"text\"]" | grep -q True'
tap_check "the screenshot of /docs is a 1280x900 PNG with content ($(wc -c <"$TMP/docs.png" 2>/dev/null) bytes, in $TMP/docs.png)" \
	python3 -c '
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", b[16:24]) == (1280, 900), b[:24]
assert len(b) > 30000, len(b)
' "$TMP/docs.png"
curl -s -D "$H" -o "$B" "$BASE/docs/other.js"
tap_check "no other file under /docs" is_problem 404
reload "openapi: 0"
curl -s -D "$H" -o "$B" "$BASE/openapi.json"
tap_check "openapi: 0 (SIGHUP): /openapi.json and /docs are 404s" \
	eval 'is_problem 404 && curl -s -D "$H" -o "$B" "$BASE/docs" && is_problem 404'

kill -TERM "$PROXY_PID"
wait "$PROXY_PID"
rc=$?
tap_check "the proxy stops cleanly (exit 0), no sanitizer report" eval '[ $rc = 0 ] && ! grep -q "ERROR: AddressSanitizer\|runtime error" "$TMP/proxy.err"'
PROXY_PID=
tap_done
