#!/usr/bin/env bash
# `make run`: a throwaway PostgreSQL 15 with the pulse extension and the demo
# dataset, ready for psql, and pulse-proxy serving its API over HTTP with a
# redis-server on loopback as its response cache.  REPLICAS=1 adds a streaming
# replica of the database (pg_basebackup -R, port RUN_REPLICA_PORT) that
# answers the proxy's reads.
# `make stop` (scripts/run.sh stop) stops them all.
# Idempotent: running it again reuses what is already there (the proxy is
# restarted, so a rebuilt binary is picked up).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-/tmp/pulse-run}
RUN_PORT=${RUN_PORT:-54329}
RUN_PROXY_PORT=${RUN_PROXY_PORT:-8089}
RUN_REDIS_PORT=${RUN_REDIS_PORT:-6389}
RUN_PROM_PORT=${RUN_PROM_PORT:-9099}
RUN_REPLICA_PORT=${RUN_REPLICA_PORT:-54330}
METRICS=${METRICS:-}
REPLICAS=${REPLICAS:-}
[ "$REPLICAS" != 0 ] || REPLICAS=

# stop_pidfile NAME [TENTHS]: SIGTERM the process in $RUN_DIR/NAME.pid, wait up to TENTHS x 0.1 s for it to go
stop_pidfile() {
	local pid
	pid=$(cat "$RUN_DIR/$1.pid" 2>/dev/null) || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq "${2:-100}"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		echo "$1: stopped"
	fi
	rm -f "$RUN_DIR/$1.pid"
}
stop_proxy() { stop_pidfile proxy; }
stop_redis() { stop_pidfile redis 50; }
stop_prometheus() { stop_pidfile prometheus; }

if [ "${1:-}" = stop ]; then
	stop_prometheus
	stop_proxy
	stop_redis
	PGBIN="$RUN_DIR/pgroot/usr/lib/postgresql/15/bin" scripts/cluster.sh stop "$RUN_DIR/replica1"
	PGBIN="$RUN_DIR/pgroot/usr/lib/postgresql/15/bin" scripts/cluster.sh stop "$RUN_DIR/pg"
	exit 0
fi

mkdir -p "$RUN_DIR/pgroot"
chmod 755 "$RUN_DIR" "$RUN_DIR/pgroot"
# A private copy of PostgreSQL 15 with this build of pulse (scripts/pgroot.sh).
PGBIN=$(BUILD_LOG=build/build.log scripts/pgroot.sh "$RUN_DIR/pgroot")
export PGBIN
# A server started before this build still has the old pulse.so loaded.
so_sum=$(sha256sum "$RUN_DIR/pgroot/usr/lib/postgresql/15/lib/pulse.so" | cut -d' ' -f1)
if [ -f "$RUN_DIR/pg/data/postmaster.pid" ] && [ "$(cat "$RUN_DIR/pulse.so.sha256" 2>/dev/null)" != "$so_sum" ]; then
	echo "run: restarting PostgreSQL to load the new build of pulse"
	scripts/cluster.sh stop "$RUN_DIR/replica1" >/dev/null
	scripts/cluster.sh stop "$RUN_DIR/pg" >/dev/null
fi
PULSE_CRON_DB=pulse scripts/cluster.sh start "$RUN_DIR/pg" "$RUN_PORT"
# REPLICAS=1: a streaming replica of it, from the same private PostgreSQL tree (kept across runs, like the primary)
if [ -n "$REPLICAS" ]; then
	scripts/cluster.sh replica "$RUN_DIR/replica1" "$RUN_REPLICA_PORT" "$RUN_DIR/pg"
else
	scripts/cluster.sh stop "$RUN_DIR/replica1" >/dev/null
fi
echo "$so_sum" >"$RUN_DIR/pulse.so.sha256"
export PGHOST="$RUN_DIR/pg" PGPORT="$RUN_PORT" PGUSER=postgres
export PGOPTIONS="-c client_min_messages=warning"
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

if [ "$(psql -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = 'pulse'")" = 0 ]; then
	psql -d postgres -c "CREATE DATABASE pulse"
fi
psql -d pulse -c "CREATE EXTENSION IF NOT EXISTS pulse" -c "CREATE EXTENSION IF NOT EXISTS pg_cron"
psql -d pulse -c "ALTER EXTENSION pulse UPDATE" 2>/dev/null || true
if [ "$(psql -d pulse -Atc "SELECT count(*) FROM pg_namespace WHERE nspname = 'demo'")" = 0 ]; then
	echo "demo: loading the demo schema and dataset"
	psql -d pulse -f scripts/demo.sql
fi
rows=$(psql -d pulse -Atc "SELECT count(*) FROM demo.events")

# pulse-proxy logs in as pulse_proxy, a member of api: not a superuser, so
# row-level security applies to it.  It serves what pulse.endpoints lists.
psql -d pulse <<'SQL'
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pulse_proxy') THEN
        CREATE ROLE pulse_proxy LOGIN IN ROLE api;
    END IF;
END $$;
-- writes to demo.events bump the cache tag demo.events: cached pages are invalidated at once
SELECT pulse.track('demo.events')
 WHERE NOT EXISTS (SELECT 1 FROM pulse.tracked WHERE rel = 'demo.events'::regclass);
SELECT pulse.expose('api.events_page(text,int,text)', 'search', ttl => '30 seconds', tags => '{demo.events}')
 WHERE NOT EXISTS (SELECT 1 FROM pulse.endpoint WHERE name = 'events_page');
SQL
make --no-print-directory proxy >/dev/null
. scripts/lib.sh
# the response cache: a redis-server of its own on loopback, nothing on disk (kept across runs, like PostgreSQL)
if ! { [ -f "$RUN_DIR/redis.pid" ] && kill -0 "$(cat "$RUN_DIR/redis.pid")" 2>/dev/null; }; then
	redis-server --port "$RUN_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize yes --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log"
	wait_for 10 redis-cli -p "$RUN_REDIS_PORT" ping || { echo "redis: did not start (see $RUN_DIR/redis.log)" >&2; exit 1; }
fi
[ -f "$RUN_DIR/proxy.secret" ] || openssl rand -hex 32 >"$RUN_DIR/proxy.secret"
chmod 600 "$RUN_DIR/proxy.secret"
cat >"$RUN_DIR/proxy.yaml" <<CONF
# pulse-proxy configuration of \`make run\` (options: proxy/README.md)
listen: 127.0.0.1:$RUN_PROXY_PORT
pg_url: host=$RUN_DIR/pg port=$RUN_PORT dbname=pulse user=pulse_proxy
threads: 2
pool_size: 4
access_log: $RUN_DIR/proxy-access.log
redis_url: redis://127.0.0.1:$RUN_REDIS_PORT
# token buckets in Redis per class: rate per second / burst (429 beyond, RateLimit-* headers)
ratelimit_read: tenant=100/200,ip=200/400
ratelimit_search: tenant=50/100,ip=100/200
ratelimit_write: tenant=20/40
ratelimit_batch: tenant=1/5
CONF
if [ -n "$REPLICAS" ]; then
	cat >>"$RUN_DIR/proxy.yaml" <<CONF
# reads go to the streaming replica when it is fresh enough (Replicas in proxy/README.md)
replica_urls:
  - host=$RUN_DIR/replica1 port=$RUN_REPLICA_PORT dbname=pulse user=pulse_proxy
replica_lsn_cookie: pulse_lsn
CONF
fi
stop_proxy >/dev/null
PULSE_JWT_SECRET=$(cat "$RUN_DIR/proxy.secret") nohup build/pulse-proxy --config "$RUN_DIR/proxy.yaml" \
	>>"$RUN_DIR/proxy.log" 2>&1 </dev/null &
echo $! >"$RUN_DIR/proxy.pid"
wait_for 10 curl -sf "http://127.0.0.1:$RUN_PROXY_PORT/ready" ||
	{ tail -n 20 "$RUN_DIR/proxy.log" >&2; echo "proxy: did not become ready" >&2; exit 1; }
# METRICS=1: a local Prometheus (Debian's package) scraping the proxy every 5 s, with pulse's rules
prom_msg=
if [ -n "$METRICS" ] && [ "$METRICS" != 0 ]; then
	mkdir -p "$RUN_DIR/prometheus/data"
	cp proxy/prometheus/pulse-rules.yml "$RUN_DIR/prometheus/"
	cat >"$RUN_DIR/prometheus/prometheus.yml" <<CONF
# Prometheus of \`make run METRICS=1\`
global:
  scrape_interval: 5s
  evaluation_interval: 15s
rule_files:
  - pulse-rules.yml
scrape_configs:
  - job_name: pulse-proxy
    static_configs:
      - targets: ['127.0.0.1:$RUN_PROXY_PORT']
CONF
	promtool check config "$RUN_DIR/prometheus/prometheus.yml" >/dev/null
	stop_prometheus >/dev/null
	nohup prometheus --config.file="$RUN_DIR/prometheus/prometheus.yml" --storage.tsdb.path="$RUN_DIR/prometheus/data" \
		--storage.tsdb.retention.time=2d --web.listen-address="127.0.0.1:$RUN_PROM_PORT" \
		>>"$RUN_DIR/prometheus.log" 2>&1 </dev/null &
	echo $! >"$RUN_DIR/prometheus.pid"
	wait_for 20 curl -sf "http://127.0.0.1:$RUN_PROM_PORT/-/ready" ||
		{ tail -n 20 "$RUN_DIR/prometheus.log" >&2; echo "prometheus: did not become ready" >&2; exit 1; }
	q=$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1]))' 'pulse:request_duration_seconds:p99')
	prom_msg="
Prometheus scrapes the proxy every 5 s (rules: proxy/prometheus/pulse-rules.yml; log: $RUN_DIR/prometheus.log):

  http://127.0.0.1:$RUN_PROM_PORT/graph?g0.expr=$q&g0.tab=0&g0.range_input=15m
  p50/p95/p99 per class: pulse:request_duration_seconds:p50 / :p95 / :p99; alerts: http://127.0.0.1:$RUN_PROM_PORT/alerts
"
else
	stop_prometheus >/dev/null
fi
replica_msg=
if [ -n "$REPLICAS" ]; then
	replica_msg="
A streaming replica (pg_basebackup -R) runs on port $RUN_REPLICA_PORT and answers the reads while its lag
is under replica_max_lag_ms; writes answer their LSN (Pulse-LSN), and a read carrying it runs
where that write is replayed:

  psql \"host=$RUN_DIR/replica1 port=$RUN_REPLICA_PORT user=postgres dbname=pulse\" -c 'SELECT pg_is_in_recovery()'
  curl -s http://127.0.0.1:$RUN_PROXY_PORT/ready                     # the replica and its lag
  # a read that must see everything committed so far (as a write's Pulse-LSN would ask)
  curl -s -H \"Pulse-Min-LSN: \$(psql -Atc 'SELECT pg_current_wal_insert_lsn()' 'host=$RUN_DIR/pg port=$RUN_PORT user=postgres dbname=pulse')\" \\
       -H \"Authorization: Bearer \$TOKEN\" 'http://127.0.0.1:$RUN_PROXY_PORT/rpc/events_page?page_size=3'
  curl -s http://127.0.0.1:$RUN_PROXY_PORT/metrics | grep -E '^pulse_(server|replica)_'
"
fi
TOKEN=$(python3 proxy/test/token.py "$(cat "$RUN_DIR/proxy.secret")" \
	"{\"tenant\": 7, \"exp\": $(($(date +%s) + 30 * 86400))}")

cat <<MSG

Pulse is running (PostgreSQL 15 with the pulse extension, demo dataset: $rows events).

  psql "host=$RUN_DIR/pg port=$RUN_PORT user=postgres dbname=pulse"

Try, as the API role of tenant 7 (row-level security keeps other tenants out):

  SET ROLE api; SET pulse.tenant = '7';
  SELECT pulse.page('SELECT id, created_at, kind, amount FROM demo.events',
                    'created_at DESC, id DESC', page_size => 3);
  -- pass the returned next_cursor as the third argument for the next page:
  SELECT api.events_page(page_size => 3);
  SELECT pulse.fingerprint('SELECT * FROM demo.events WHERE id = 42');
  SELECT pulse.normalize('SELECT * FROM demo.events WHERE id = 42');
  SELECT pulse.explain_page('SELECT id, created_at FROM demo.events', 'created_at DESC, id DESC');

pulse-proxy serves the API on http://127.0.0.1:$RUN_PROXY_PORT (log: $RUN_DIR/proxy.log),
caching events_page for 30 s in the redis-server on 127.0.0.1:$RUN_REDIS_PORT (X-Cache: miss, then hit).
A token for tenant 7, valid 30 days:

  TOKEN=$TOKEN

  curl -s http://127.0.0.1:$RUN_PROXY_PORT/ready
  curl -si -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:$RUN_PROXY_PORT/rpc/events_page?page_size=3'
  # the Link header names the next page:
  curl -s -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:$RUN_PROXY_PORT/rpc/events_page?page_size=3&kind=purchase'
  curl -s -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
       -d '{"page_size": 2, "kind": "refund"}' http://127.0.0.1:$RUN_PROXY_PORT/rpc/events_page
  curl -s 'http://127.0.0.1:$RUN_PROXY_PORT/rpc/events_page'          # 401 problem+json
  curl -s http://127.0.0.1:$RUN_PROXY_PORT/metrics                     # Prometheus text format
$prom_msg
$replica_msg
Stop it with: make stop
MSG
