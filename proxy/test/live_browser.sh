#!/usr/bin/env bash
# A live endpoint in a real browser (issue 18), in `make test` as suite
# proxy-live-browser: PostgreSQL, one proxy (live_allow_origin set to the
# page's origin, retry hint 500 ms), a static page on another origin
# (python3 -m http.server on another port), and headless Chromium (Debian's
# /usr/bin/chromium driven by playwright-core 1.65.2 from proxy/test/npm,
# installed with npm when missing; node_modules is not committed) running
# proxy/test/live_browser.mjs: the page's EventSource gets the first result,
# the result after a psql write (in the DOM; a screenshot goes to
# build/test-artifacts/live-browser.png), nothing for another tenant's writes
# (keyed tags: its own group does not wake the stream; its row in the same
# group is refreshed under the page's tenant, RLS hides it, nothing changes),
# an `error` event when a token expires, reconnects by itself after the proxy
# restarts without getting its last result again (Last-Event-ID), and gets
# the next write's result.
# Prints TAP lines; PULSE_PROXY_BIN, PULSE_TEST_PORT, PULSE_TEST_TMP as e2e.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. proxy/test/lib.sh

proxy_test_setup live-browser 26300
SECRET=live-browser-$$
PROXY_PID=
PAGE_PID=
cleanup() {
	[ -z "$PROXY_PID" ] || proxy_test_kill "$(cat "$TMP/proxy.pid" 2>/dev/null)"
	[ -z "$PAGE_PID" ] || kill "$PAGE_PID" 2>/dev/null
	scripts/cluster.sh destroy "$PG" >/dev/null 2>&1
	[ -z "$OWN_TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$BIN" ] || proxy_test_abort "no proxy binary at $BIN (make proxy)"
[ -x /usr/bin/chromium ] || proxy_test_abort "no /usr/bin/chromium (Debian package chromium)"
NPM=proxy/test/npm
if [ ! -f "$NPM/node_modules/playwright-core/package.json" ]; then
	if [ -f "$NPM/package-lock.json" ]; then # the lock file another test commits pins the same version
		(cd "$NPM" && timeout 600 npm ci --loglevel=error) >"$TMP/npm.log" 2>&1
	else
		(cd "$NPM" && timeout 600 npm install --no-save --no-package-lock --ignore-scripts --no-fund --no-audit \
			--loglevel=error playwright-core@1.65.2) >"$TMP/npm.log" 2>&1
	fi || proxy_test_abort "npm in $NPM failed: $(tail -n 3 "$TMP/npm.log" | tr '\n' ' ')"
fi
grep -q '"version": "1.65.2"' "$NPM/node_modules/playwright-core/package.json" ||
	proxy_test_abort "playwright-core in $NPM is not 1.65.2"

proxy_test_db pulse_live
psql_su -d pulse_live -f proxy/test/live_fixture.sql >/dev/null || proxy_test_abort "cannot load the live fixture"
psql_su -d pulse_live -c "INSERT INTO lv.items SELECT 100100 + i, 1, 1001, 0 FROM generate_series(1, 3) i" >/dev/null
psql_su -d pulse_live -c "INSERT INTO lv.items SELECT 200100 + i, 2, 2001, 0 FROM generate_series(1, 3) i" >/dev/null

PAGE_PORT=$(free_port $((HTTP_PORT + 1)))
API="http://127.0.0.1:$HTTP_PORT"
PAGE="http://localhost:$PAGE_PORT" # another origin: another host name and port
cat >"$TMP/proxy.yaml" <<CONF
listen: 127.0.0.1:$HTTP_PORT
pg_url: host=127.0.0.1 port=$PGPORT dbname=pulse_live user=pulse_proxy connect_timeout=2
threads: 1
access_log: "off"
live_retry_ms: 500
live_allow_origin: $PAGE
CONF
start_proxy() {
	PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/proxy.yaml" 2>>"$TMP/proxy.err" &
	echo $! >"$TMP/proxy.pid"
	wait_for 20 curl -sf "$API/ready"
}
start_proxy || proxy_test_abort "the proxy did not become ready: $(tail -n 5 "$TMP/proxy.err")"
PROXY_PID=1

TOKEN=$(/usr/bin/python3 proxy/test/token.py "$SECRET" "{\"tenant\": 1, \"exp\": $(($(date +%s) + 3600))}")
# the second EventSource's token expires 10 s after it is minted, which live_browser.mjs does right before it opens the
# page (in the URL's fragment): a browser slow to start on a loaded machine must not get it already expired
cat >"$TMP/short_token.sh" <<SH
#!/bin/sh
exec /usr/bin/python3 "$PWD/proxy/test/token.py" "$SECRET" "{\"tenant\": 1, \"exp\": \$((\$(date +%s) + 10))}"
SH
mkdir -p "$TMP/www"
cat >"$TMP/www/index.html" <<HTML
<!doctype html><meta charset="utf-8"><title>live</title>
<h1>group 1001</h1><pre id="result">(waiting)</pre><h2>short token</h2><pre id="expiring">(waiting)</pre>
<script>
  window.events = []; window.opens = 0; window.errors = 0; window.expired = null;
  const es = new EventSource("$API/rpc/lv_group?grp=1001&access_token=$TOKEN");
  es.addEventListener("open", () => window.opens++);
  es.addEventListener("error", () => window.errors++);
  es.addEventListener("result", (e) => {
    window.events.push({ id: e.lastEventId, data: e.data });
    document.getElementById("result").textContent = JSON.parse(e.data).map((r) => r.id + ": " + r.v).join("\\n");
  });
  const short = new EventSource("$API/rpc/lv_group?grp=1001&access_token=" + location.hash.slice(1));
  short.addEventListener("result", (e) => (document.getElementById("expiring").textContent = "live: " + e.data));
  short.addEventListener("error", (e) => {
    if (e.data) { // the stream's own error event (problem+json): the token expired
      window.expired = JSON.parse(e.data);
      short.close();
      document.getElementById("expiring").textContent = "ended: " + window.expired.detail;
    }
  });
</script>
HTML
(cd "$TMP/www" && exec /usr/bin/python3 -m http.server "$PAGE_PORT" --bind 127.0.0.1) >"$TMP/page.log" 2>&1 &
PAGE_PID=$!
wait_for 10 curl -sf "http://127.0.0.1:$PAGE_PORT/index.html" || proxy_test_abort "the page server did not start"

cat >"$TMP/write.sh" <<SH
#!/bin/sh
exec psql -X -q -h "$PG" -p "$PGPORT" -U postgres -d pulse_live -c "UPDATE lv.items SET v = \$1 WHERE id = 100101"
SH
cat >"$TMP/restart.sh" <<SH
#!/usr/bin/env bash
cd "$PWD"
. scripts/lib.sh
p=\$(cat "$TMP/proxy.pid"); kill -TERM "\$p"; while kill -0 "\$p" 2>/dev/null; do sleep 0.1; done
PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/proxy.yaml" 2>>"$TMP/proxy.err" </dev/null >/dev/null &
echo \$! >"$TMP/proxy.pid"
wait_for 20 curl -sf "$API/ready"
SH
cat >"$TMP/other.sh" <<SH
#!/bin/sh
# tenant 2 writes its own group, and a row of its own into the page's group (RLS hides it from tenant 1)
exec psql -X -q -h "$PG" -p "$PGPORT" -U postgres -d pulse_live -c "UPDATE lv.items SET v = 56 WHERE grp = 2001" \
	-c "INSERT INTO lv.items VALUES (200199, 2, 1001, 55)"
SH
chmod +x "$TMP/write.sh" "$TMP/restart.sh" "$TMP/other.sh" "$TMP/short_token.sh"
chmod 777 "$TMP"
mkdir -p build/test-artifacts
SHOT=$PWD/build/test-artifacts/live-browser.png
rm -f "$SHOT"
timeout 150 node proxy/test/live_browser.mjs "$PAGE/index.html" "$TMP/profile" "$TMP/write.sh" "$TMP/restart.sh" \
	"$TMP/other.sh" "$SHOT" "$TMP/short_token.sh" >"$TMP/browser.json" 2>"$TMP/browser.err"
echo "# browser: $(head -c 1500 "$TMP/browser.json") $(tail -n 3 "$TMP/browser.err" | tr '\n' ' ')"

check() { /usr/bin/python3 -c "import json,sys; o=json.load(open('$TMP/browser.json')); sys.exit(0 if ($1) else 1)" 2>/dev/null; }
tap_check "the page (origin $PAGE) gets the first result of its EventSource on $API" \
	check "o['origin'] == '$PAGE' and o['first'] and json.loads(o['first']['data']) == [{'id': 100101, 'v': 0}, {'id': 100102, 'v': 0}, {'id': 100103, 'v': 0}] and o['first']['id'].startswith('\"')"
tap_check "a psql write pushes the new result to the page" check "o['after_write']['saw77'] and o['after_write']['events'] == 2"
tap_check "... and the page's DOM shows it" check "'100101: 77' in o['after_write']['dom'] and '100102: 0' in o['after_write']['dom']"
tap_check "a screenshot of the page is in build/test-artifacts/live-browser.png ($(wc -c <"$SHOT" 2>/dev/null) bytes)" \
	eval '[ "$(head -c 8 "$SHOT" 2>/dev/null | od -An -tx1 | tr -d " \n")" = 89504e470d0a1a0a ] && [ "$(wc -c <"$SHOT")" -gt 2000 ]'
tap_check "another tenant's writes (its group, and its row in the page's group) push nothing and never show its rows" \
	check "o['other_tenant']['events'] == o['other_tenant']['before'] and '2001' not in o['other_tenant']['all'] and '200199' not in o['other_tenant']['all'] and '200199' not in o['other_tenant']['dom']"
tap_check "a token that expires ends its stream with an error event (problem+json 401), shown by the page" \
	check "o['expiry']['expired'] and o['expiry']['expired']['status'] == 401 and 'expired' in o['expiry']['expired']['detail'] and o['expiry']['expiring'].startswith('ended:')"
tap_check "after the proxy restarts, the EventSource reconnects by itself" check "o['reconnected']['opens'] >= 2"
tap_check "the reconnect sends Last-Event-ID: the last result is not sent again" \
	check "o['reconnected']['opens'] >= 2 and o['after_reconnect']['before'] >= 2 and o['after_reconnect']['events'] == o['after_reconnect']['before']"
tap_check "the next write reaches the page through the new connection" \
	check "o['after_second_write']['saw78'] and o['after_second_write']['events'] == o['after_reconnect']['events'] + 1"
tap_done
