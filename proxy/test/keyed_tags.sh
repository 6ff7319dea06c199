#!/usr/bin/env bash
# Keyed cache tags through the proxy, end to end (issue 12): one PostgreSQL,
# one Redis, one proxy; a table tracked with keys {tenant_id,id}, endpoints
# with a {tenant} and an {id} template, and the checks:
#   - a write of one tenant (SQL) leaves another tenant's entries hits, and
#     makes its own a miss within the staleness bound;
#   - an UPDATE of one row leaves the other rows' by-id entries hits;
#   - a write through the proxy is seen by the next read at once, also when
#     a flight for the same key started before the write;
#   - a bulk write over pulse.keyed_tag_limit bumps the epoch: every entry
#     of the column misses;
#   - the listening connection killed: keyed knowledge is forgotten and
#     counted, and entries made before are not served until covered again;
#   - a map smaller than the tags bumped (cache_keyed_tags) evicts, and an
#     entry whose tag was evicted is not served until the coverage moves;
#   - tenant isolation through the keyed cache.
# Prints TAP lines; PULSE_PROXY_BIN, PULSE_TEST_PORT, PULSE_TEST_TMP as e2e.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. proxy/test/lib.sh

proxy_test_setup keyed 25900
SECRET=keyed-secret-$$
PROXY_PID=
REDIS_PID=
proxy_test_exit_traps
proxy_test_db pulse_keyed
psql_su -d pulse_keyed >/dev/null <<'SQL' || proxy_test_abort "cannot load the keyed fixture"
CREATE SCHEMA kt;
CREATE TABLE kt.items (id bigint PRIMARY KEY, tenant_id int NOT NULL, v int NOT NULL DEFAULT 0);
INSERT INTO kt.items SELECT i, 1 + i % 3, 0 FROM generate_series(1, 300) i;
GRANT USAGE ON SCHEMA kt TO api;
GRANT SELECT, UPDATE ON kt.items TO api;
ALTER TABLE kt.items ENABLE ROW LEVEL SECURITY;
CREATE POLICY items_tenant ON kt.items USING (tenant_id = nullif(current_setting('pulse.tenant', true), '')::int);
SELECT pulse.track('kt.items', 'kt', keys => '{tenant_id,id}');
CREATE FUNCTION api.kt_mine() RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('n', count(*), 'sum', sum(v)) FROM kt.items
$$;
CREATE FUNCTION api.kt_item(id bigint) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT row_to_json(i) FROM kt.items i WHERE i.id = kt_item.id
$$;
-- the same, 0.8 s late: its snapshot is taken before the sleep
CREATE FUNCTION api.kt_slow(id bigint) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT row_to_json(i) FROM kt.items i, pg_sleep(0.8) WHERE i.id = kt_slow.id
$$;
CREATE FUNCTION api.kt_touch(id bigint) RETURNS json LANGUAGE sql AS $$
    UPDATE kt.items i SET v = i.v + 1 WHERE i.id = kt_touch.id RETURNING json_build_object('id', i.id, 'v', i.v)
$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO api;
SELECT pulse.expose('api.kt_mine()', 'read', '60 s', ARRAY['kt:tenant_id={tenant}']);
SELECT pulse.expose('api.kt_item(bigint)', 'read', '60 s', ARRAY['kt:id={id}']);
SELECT pulse.expose('api.kt_slow(bigint)', 'read', '60 s', ARRAY['kt:id={id}']);
SELECT pulse.expose('api.kt_touch(bigint)', 'write');
SQL

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
wait_for 10 redis-cli -p "$REDIS_PORT" ping || proxy_test_abort "cannot start redis-server on port $REDIS_PORT"

start_proxy() { # start_proxy [extra config lines]
	cat >"$TMP/proxy.yaml" <<CONF
listen: 127.0.0.1:$HTTP_PORT
pg_url: host=127.0.0.1 port=$PGPORT dbname=pulse_keyed user=pulse_proxy connect_timeout=2
threads: 1
pool_size: 2
access_log: "off"
redis_url: redis://127.0.0.1:$REDIS_PORT
invalidation_delivery_ms: 1000
$1
CONF
	PULSE_JWT_SECRET=$SECRET "$BIN" --config "$TMP/proxy.yaml" 2>>"$TMP/proxy.err" &
	PROXY_PID=$!
	wait_for 20 curl -sf "http://127.0.0.1:$HTTP_PORT/ready" || proxy_test_abort "the proxy did not become ready: $(tail -n 5 "$TMP/proxy.err")"
}
stop_proxy() { proxy_test_kill "$PROXY_PID"; PROXY_PID=; redis-cli -p "$REDIS_PORT" flushall >/dev/null; }

BASE=http://127.0.0.1:$HTTP_PORT
tok() { python3 proxy/test/token.py "$SECRET" "{\"tenant\": $1, \"exp\": $(($(date +%s) + 3600))}"; }
T1=$(tok 1)
T2=$(tok 2)
# xcache TOKEN PATH: "X-Cache body" of a GET
xcache() {
	curl -s -D "$TMP/h" -o "$TMP/b" -H "Authorization: Bearer $1" "$BASE$2"
	printf '%s %s' "$(sed -n 's/^[Xx]-[Cc]ache: *//p' "$TMP/h" | tr -d '\r')" "$(tr -d '\n' <"$TMP/b")"
}
q() { psql_su -d pulse_keyed -At -c "$1"; }
metric() { curl -s "$BASE/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# eventually SECONDS CMD...: CMD succeeds within SECONDS (the staleness bound on a loaded machine)
eventually() { wait_for "$@"; }
is_miss() { [[ $(xcache "$1" "$2") == miss* ]]; }
is_hit() { [[ $(xcache "$1" "$2") == hit* ]]; }

start_proxy ""
# item 1 is tenant 2's, item 3 tenant 1's, item 4 tenant 2's
xcache "$T1" /rpc/kt_mine >/dev/null
xcache "$T2" /rpc/kt_mine >/dev/null
xcache "$T1" "/rpc/kt_item?id=3" >/dev/null
xcache "$T1" "/rpc/kt_item?id=6" >/dev/null
tap_check "keyed entries are hits once filled" eval '[[ $(xcache "$T1" /rpc/kt_mine) == hit* && $(xcache "$T2" /rpc/kt_mine) == hit* && $(xcache "$T1" "/rpc/kt_item?id=3") == hit* ]]'

q "UPDATE kt.items SET v = v + 1 WHERE id = 4" >/dev/null # tenant 2
tap_check "a write of tenant 2 makes tenant 2's entry a miss within the bound" eventually 3 is_miss "$T2" /rpc/kt_mine
tap_check "... and leaves tenant 1's entries hits" eval '[[ $(xcache "$T1" /rpc/kt_mine) == hit* && $(xcache "$T1" "/rpc/kt_item?id=3") == hit* ]]'

q "UPDATE kt.items SET v = v + 1 WHERE id = 3" >/dev/null # tenant 1, row 3
tap_check "an UPDATE of row 3 makes its by-id entry a miss, with the new value" \
	eventually 3 eval '[[ $(xcache "$T1" "/rpc/kt_item?id=3") == miss*\"v\":1* ]]'
tap_check "... and leaves row 6's entry a hit" is_hit "$T1" "/rpc/kt_item?id=6"
xcache "$T1" "/rpc/kt_item?id=3" >/dev/null

# a write through the proxy: the next read through it is fresh at once (pulse.last_bumps)
curl -sf -o /dev/null -H "Authorization: Bearer $T1" -H 'Content-Type: application/json' -d '{"id": 3}' "$BASE/rpc/kt_touch"
tap_check "a write through the proxy: the next read is fresh at once" \
	eval '[[ $(xcache "$T1" "/rpc/kt_item?id=3") == miss*\"v\":2* ]]'

# a read that comes after a write must not join a flight that started before it (the key is the same for keyed tags)
curl -s -o "$TMP/slow1" -H "Authorization: Bearer $T1" "$BASE/rpc/kt_slow?id=18" &
slow_pid=$!
sleep 0.3
curl -sf -o /dev/null -H "Authorization: Bearer $T1" -H 'Content-Type: application/json' -d '{"id": 18}' "$BASE/rpc/kt_touch"
tap_check "a read after a write does not take the answer of a flight that started before the write" \
	eval '[[ $(xcache "$T1" "/rpc/kt_slow?id=18") == *\"v\":1* ]]'
wait "$slow_pid"

# tenant isolation: tenant 2 asking for tenant 1's row gets nothing, through the cache too
xcache "$T2" "/rpc/kt_item?id=6" >/dev/null
tap_check "tenant 2 never gets tenant 1's row through the keyed cache" \
	eval '[[ $(xcache "$T2" "/rpc/kt_item?id=6") == hit\ null && $(xcache "$T1" "/rpc/kt_item?id=6") == hit*\"tenant_id\":1* ]]'

# a bulk write over the limit: the epoch moves every key of the column
xcache "$T1" "/rpc/kt_item?id=9" >/dev/null
q "SET pulse.keyed_tag_limit = 10; UPDATE kt.items SET v = v + 1 WHERE id > 100" >/dev/null
tap_check "a bulk write over pulse.keyed_tag_limit bumps the id epoch: other rows' entries miss too" \
	eventually 3 is_miss "$T1" "/rpc/kt_item?id=9"

# the listening connection killed: keyed knowledge is forgotten and the old entries are not served until covered
xcache "$T1" "/rpc/kt_item?id=12" >/dev/null
before=$(metric 'pulse_keyed_forgotten_total{reason="reset"}')
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog'" >/dev/null
tap_check "a reconnect of the listening connection forgets the keyed tags (counted)" \
	eventually 10 eval '[ "$(metric "pulse_keyed_forgotten_total{reason=\"reset\"}")" -gt "${before:-0}" ]'
q "UPDATE kt.items SET v = v + 1 WHERE id = 12" >/dev/null
tap_check "a write after the reconnect is not missed" eventually 3 is_miss "$T1" "/rpc/kt_item?id=12"
tap_check "entries filled after it are hits again" eventually 5 is_hit "$T1" "/rpc/kt_item?id=12"

# a tiny keyed map: evictions make unknown tags count as bumped until the coverage moves on
stop_proxy
start_proxy "cache_keyed_tags: 16"
xcache "$T1" "/rpc/kt_item?id=15" >/dev/null
tap_check "small map: an entry is a hit before any eviction" eventually 5 is_hit "$T1" "/rpc/kt_item?id=15"
q "UPDATE kt.items SET v = v + 1 WHERE id BETWEEN 200 AND 230" >/dev/null # 31 ids, 3 tenants: > 16 tags
tap_check "small map: the keyed tags of that write were evicted (counted)" \
	eventually 5 eval '[ "$(metric "pulse_keyed_forgotten_total{reason=\"evicted\"}")" -gt 0 ]'
q "UPDATE kt.items SET v = v + 1 WHERE id = 15" >/dev/null
tap_check "small map: a write of the evicted tags' neighbour is still seen" eventually 3 is_miss "$T1" "/rpc/kt_item?id=15"
tap_check "small map: hits resume after the coverage moved" eventually 5 is_hit "$T1" "/rpc/kt_item?id=15"
tap_check "pulse_cache_keyed_stale_total counted the refused entries" eval '[ "$(metric pulse_cache_keyed_stale_total)" -gt 0 ]'
tap_check "the proxy's stderr has only JSON log lines, and no statement after a call failed" \
	eval '! grep -a -v "^{" "$TMP/proxy.err" | grep -q . && ! grep -q "statement after the call failed" "$TMP/proxy.err"'
tap_done
