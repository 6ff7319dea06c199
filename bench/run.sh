#!/usr/bin/env bash
# The load-test suite: pulse-proxy and its peers (Flask, Express, and Express
# behind nginx proxy_cache or Varnish) on the same data, the same load, the
# same machine, one invocation.  See bench/README.md.
#
#   bench/run.sh                  everything: dataset, services, all scenarios,
#                                 report (`make bench`)
#   bench/run.sh data             the dataset only (`make bench-data`)
#   bench/run.sh peers            services up, a smoke test of every server
#                                 with curl and a short wrk run, report
#                                 (`make bench-peers`)
#   bench/run.sh scenario S...    the named scenarios and their report
#                                 (`make bench-scenario S="mix page"`)
#   bench/run.sh report WORKDIR   rebuild the report of a finished run
#   bench/run.sh clean            remove BENCH_DIR (cluster and dataset)
#
# Scenarios (bench/scenarios.sh): mix, page, agg, cache, spike, soak, hits.
#
# Everything runs on loopback.  The PostgreSQL cluster and the dataset stay
# in BENCH_DIR between invocations (reloaded when ROWS, TENANTS or
# bench/data/ change); every server this script starts is stopped when it
# exits, whatever happens, and every load run is bounded by `timeout`.
#
# Parameters (environment; defaults in brackets):
#   ROWS, TENANTS      dataset size                     [10000000, 1000]
#   QUICK=1            short runs: DURATION 5, fewer load steps, ROWS 200000
#   DURATION           seconds per measured load step   [15]
#   SERVERS            servers to measure  ["proxy express nginx varnish flask"]
#                      (nginx, varnish: Express without its own cache behind
#                      the HTTP cache; they take part in smoke, mix, cache
#                      and hits)
#   BASELINES          0: skip the features-off runs    [1]
#   PEER_TTLS          TTLs of nginx's and Varnish's caches, seconds: one
#                      variant ttl<N> each (cache: the longest)      ["1 10"]
#   PEER_GRACE         Varnish's grace, nginx's extra inactive time (s) [10]
#   UPDATES            % of the mix's writes that update an event   [50]
#   PROXY_TTL_READ, PROXY_TTL_SEARCH  the proxy's TTLs (s) of reads by id and
#                      of searches [60, 10] (exact tags: a longer TTL stays exact)
#   HITS_CONNS, HITS_ROUNDS  scenario hits: wrk -t1 connections, rounds [32, 3]
#   THREADS            wrk threads                      [2]
#   RAMP_CONNS         closed-loop steps (connections)  ["4 8 16 32 64 128"]
#   RAMP_RATES         constant-rate steps (req/s)      ["100 200 400 800 1600 3200 6400 12800 25600"]
#   RATE_BISECT        steps between the last rate within capacity and the
#                      first beyond, halving the interval each time      [2]
#   SLO_P95, SLO_P99   read SLOs in ms                  [100, 200]
#   PAGE_DEPTHS        rows skipped, scenario page      ["0 10000 100000 500000"]
#   PAGE_WALK          pages read from there            [10]
#   SPIKE_BASE         req/s before the 5x spike        [capacity/5 from mix, else 200]
#   SOAK_SECONDS       soak length                      [60; the issue's soak: 1800]
#   NAME, OUT          report name and file  [load, bench/results/<UTC date>-<NAME>.md]
#                      (through make: BENCH_NAME, since PGXS owns NAME)
#   BENCH_DIR          cluster, dataset, logs           [/tmp/pulse-bench]
#   PORT               first port tried (below the ephemeral range, so that
#                      the load's client sockets cannot hold it)  [25800]
#   PROXY_THREADS, PROXY_POOL, EXPRESS_WORKERS, EXPRESS_POOL, FLASK_WORKERS,
#   NGINX_WORKERS, VARNISH_POOLS, STATIC_THREADS (h2o, scenario hits)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	ROWS=${ROWS:-200000}
	DURATION=${DURATION:-5}
	RAMP_CONNS=${RAMP_CONNS:-"4 16 64"}
	RAMP_RATES=${RAMP_RATES:-"200 800 3200 12800"}
	PAGE_DEPTHS=${PAGE_DEPTHS:-"0 1000 10000"}
	SOAK_SECONDS=${SOAK_SECONDS:-20}
fi
ROWS=${ROWS:-10000000}
TENANTS=${TENANTS:-1000}
DURATION=${DURATION:-15}
SERVERS=${SERVERS:-"proxy express nginx varnish flask"}
BASELINES=${BASELINES:-1}
PEER_TTLS=${PEER_TTLS:-"1 10"}
PEER_GRACE=${PEER_GRACE:-10}
UPDATES=${UPDATES:-50}
PROXY_TTL_READ=${PROXY_TTL_READ:-60}
PROXY_TTL_SEARCH=${PROXY_TTL_SEARCH:-10}
[[ "$PROXY_TTL_READ$PROXY_TTL_SEARCH" =~ ^[0-9]+$ ]] || { echo "bench: PROXY_TTL_READ and PROXY_TTL_SEARCH are seconds" >&2; exit 2; }
HITS_CONNS=${HITS_CONNS:-32}
HITS_ROUNDS=${HITS_ROUNDS:-3}
THREADS=${THREADS:-2}
RAMP_CONNS=${RAMP_CONNS:-"4 8 16 32 64 128"}
RAMP_RATES=${RAMP_RATES:-"100 200 400 800 1600 3200 6400 12800 25600"}
RATE_BISECT=${RATE_BISECT:-2}
SLO_P95=${SLO_P95:-100}
SLO_P99=${SLO_P99:-200}
PAGE_DEPTHS=${PAGE_DEPTHS:-"0 10000 100000 500000"}
PAGE_WALK=${PAGE_WALK:-10}
PAGE_CONNS=${PAGE_CONNS:-4}
AGG_CONNS=${AGG_CONNS:-16}
AGG_WRITERS=${AGG_WRITERS:-4}
CACHE_CONNS=${CACHE_CONNS:-16}
SPIKE_BASE=${SPIKE_BASE:-}
SPIKE_SECONDS=${SPIKE_SECONDS:-10}
SOAK_SECONDS=${SOAK_SECONDS:-60}
SOAK_CONNS=${SOAK_CONNS:-16}
SOAK_EVERY=${SOAK_EVERY:-5}
H2_TENANT=${H2_TENANT:-1}
H2_PER_CLIENT=${H2_PER_CLIENT:-50}
# BENCH_NAME first: under make, PGXS defines NAME (the library, "pulse") and exports it over the caller's NAME
NAME=${BENCH_NAME:-${NAME:-load}}
DATE=$(date -u +%F)
OUT=${OUT:-bench/results/$DATE-$NAME.md}
BENCH_DIR=${BENCH_DIR:-/tmp/pulse-bench}
PROXY_BIN=${PROXY_BIN:-build/pulse-proxy}
PROXY_THREADS=${PROXY_THREADS:-$(nproc)}
PROXY_POOL=${PROXY_POOL:-8}
EXPRESS_WORKERS=${EXPRESS_WORKERS:-$(nproc)}
EXPRESS_POOL=${EXPRESS_POOL:-8}
FLASK_WORKERS=${FLASK_WORKERS:-4}
NGINX_WORKERS=${NGINX_WORKERS:-$(nproc)}
VARNISH_POOLS=${VARNISH_POOLS:-2}
STATIC_THREADS=${STATIC_THREADS:-$(nproc)}
DB=pulse_bench
SECRET=bench-secret-$$-$RANDOM
ALL_SCENARIOS="mix page agg cache spike soak hits"
# every server the harness knows, and those of them that are an HTTP cache
# in front of Express (started with it, by serve)
ALL_SERVERS="proxy express nginx varnish flask static"
HTTP_CACHES=" nginx varnish "
export UPDATES

log() { printf '%s bench: %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------
# Services.  Each start_* records its pid in $PIDS/<name>.pid; stop_all
# stops them all (the EXIT trap).  URL_<server> is where a server listens.
# ---------------------------------------------------------------------------
PIDS=$BENCH_DIR/pids
PG=$BENCH_DIR/pg
declare -A URL=() VARIANT=() PORTS=()
REDIS_PORT=

next_port() { # next_port NAME: a free port for NAME in PORTS[NAME]
	local base=${PORTS[_last]:-${PORT:-25800}}
	PORTS[$1]=$(free_port "$((base + 1))")
	PORTS[_last]=${PORTS[$1]}
}

start_pg() {
	mkdir -p "$BENCH_DIR" "$PIDS" && chmod 755 "$BENCH_DIR"
	mkdir -p "$BENCH_DIR/pgroot" && chmod 755 "$BENCH_DIR/pgroot"
	PGBIN=$(BUILD_LOG=$BENCH_DIR/pgroot.log scripts/pgroot.sh "$BENCH_DIR/pgroot")
	export PGBIN
	local port
	next_port pg
	port=${PORTS[pg]}
	if [ -f "$PG/data/postgresql.conf" ]; then # keep the cluster, change its port
		sed -i "s/^port = [0-9]*$/port = $port/" "$PG/data/postgresql.conf"
	fi
	# fsync on (checkpoints are real), synchronous_commit off (a commit does
	# not wait for its WAL flush): the same for every server under test.
	PULSE_FSYNC=${PULSE_FSYNC:-on} PULSE_SYNC_COMMIT=${PULSE_SYNC_COMMIT:-off} \
		PULSE_SHARED_BUFFERS=${PULSE_SHARED_BUFFERS:-2GB} PULSE_CRON_DB=$DB \
		scripts/cluster.sh start "$PG" "$port" >/dev/null
	export PGHOST=$PG PGPORT=$port PGUSER=postgres
	PG_DSN="host=127.0.0.1 port=$port dbname=$DB user=pulse_proxy"
}

psql_() { command psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

start_redis() {
	next_port redis
	REDIS_PORT=${PORTS[redis]}
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize yes --pidfile "$PIDS/redis.pid" --logfile "$BENCH_DIR/redis.log" >/dev/null
	wait_for 10 redis-cli -p "$REDIS_PORT" ping || die "redis did not start"
}

# stop_pidfile FILE: TERM, then KILL after 10 s.
stop_pidfile() {
	[ -f "$1" ] || return 0
	local pid
	pid=$(cat "$1")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$1"
}

# start_proxy VARIANT: pulse-proxy with the cache (VARIANT cache) or without
# (nocache: no Redis URL).  The only place that knows the proxy's
# configuration format (proxy/include/config.h, proxy/src/config.c): a flat
# YAML file, the secret from PULSE_JWT_SECRET.
start_proxy() {
	local variant=$1 port conf redis= keyed=true
	[ -n "${PORTS[proxy]:-}" ] || next_port proxy
	# variant tabletags: the endpoints cached under the table's tag, as before keyed tags (bench/data/api.sql)
	[ "$variant" != tabletags ] || keyed=false
	psql -X -q -d "$DB" -c "SELECT bench.use_tags($keyed, '$PROXY_TTL_READ seconds', '$PROXY_TTL_SEARCH seconds')" >/dev/null ||
		{ log "proxy: bench.use_tags($keyed) failed"; return 1; }
	port=${PORTS[proxy]}
	conf=$BENCH_DIR/proxy.yaml
	[ "$variant" = nocache ] || redis="redis://127.0.0.1:$REDIS_PORT"
	cat >"$conf" <<CONF
# written by bench/run.sh
listen: 127.0.0.1:$port
pg_url: $PG_DSN
redis_url: $redis
threads: $PROXY_THREADS
pool_size: $PROXY_POOL
access_log: "off"
CONF
	[ -x "${PROXY_RUN_BIN:-}" ] || { log "proxy: no binary at $PROXY_BIN (make proxy)"; return 1; }
	PULSE_JWT_SECRET=$SECRET "$PROXY_RUN_BIN" --config "$conf" >"$BENCH_DIR/proxy.log" 2>&1 &
	echo $! >"$PIDS/proxy.pid"
	if ! wait_for 15 curl -sf "http://127.0.0.1:$port/health"; then
		log "proxy did not answer /health: $(tail -n 3 "$BENCH_DIR/proxy.log" | tr '\n' ' ')"
		stop_pidfile "$PIDS/proxy.pid"
		return 1
	fi
	URL[proxy]=http://127.0.0.1:$port
}

start_express() {
	local variant=$1 port cache=tags
	[ -n "${PORTS[express]:-}" ] || next_port express
	port=${PORTS[express]}
	[ "$variant" != nocache ] || cache=off
	PORT=$port BENCH_PG_DSN=$PG_DSN PULSE_JWT_SECRET=$SECRET REDIS_URL=redis://127.0.0.1:$REDIS_PORT \
		CACHE=$cache WORKERS=$EXPRESS_WORKERS PG_POOL=$EXPRESS_POOL \
		bench/peers/express/run.sh start "$BENCH_DIR/express" || return 1
	cp "$BENCH_DIR/express/express.pid" "$PIDS/express.pid"
	URL[express]=http://127.0.0.1:$port
}

start_flask() {
	local port
	[ -n "${PORTS[flask]:-}" ] || next_port flask
	port=${PORTS[flask]}
	PORT=$port BENCH_PG_DSN=$PG_DSN PULSE_JWT_SECRET=$SECRET WORKERS=$FLASK_WORKERS \
		bench/peers/flask/run.sh start "$BENCH_DIR/flask" || return 1
	cp "$BENCH_DIR/flask/flask.pid" "$PIDS/flask.pid"
	URL[flask]=http://127.0.0.1:$port
}

# ttl_of VARIANT: the TTL in seconds of an HTTP cache's variant ttl<N>
ttl_of() { echo "${1#ttl}"; }

# start_nginx VARIANT / start_varnish VARIANT: the HTTP cache in front of
# the running Express (serve starts it first), with the TTL of VARIANT
# (ttl<N>); configurations in bench/peers/nginx and bench/peers/varnish.
start_nginx() { start_http_cache nginx "$1"; }
start_varnish() { start_http_cache varnish "$1"; }
start_http_cache() { # start_http_cache nginx|varnish VARIANT
	local s=$1 port
	[ -n "${PORTS[$s]:-}" ] || next_port "$s"
	port=${PORTS[$s]}
	PORT=$port UPSTREAM=${URL[express]#http://} TTL=$(ttl_of "$2") GRACE=$PEER_GRACE WORKERS=$NGINX_WORKERS \
		POOLS=$VARNISH_POOLS "bench/peers/$s/run.sh" start "$BENCH_DIR/$s" || return 1
	cp "$BENCH_DIR/$s/$s.pid" "$PIDS/$s.pid"
	URL[$s]=http://127.0.0.1:$port
}

# start_static FILE: h2o serving FILE (the bytes of a cached answer) as
# /hit.json, STATIC_THREADS threads: the ceiling of scenario hits.  As
# root, h2o runs as nobody.
start_static() {
	local port dir=$BENCH_DIR/static user=
	[ -n "${PORTS[static]:-}" ] || next_port static
	port=${PORTS[static]}
	mkdir -p "$dir/www"
	cp "$1" "$dir/www/hit.json"
	chmod 755 "$dir" "$dir/www"
	chmod 644 "$dir/www/hit.json"
	[ "$(id -u)" -ne 0 ] || user="user: nobody"
	cat >"$dir/h2o.conf" <<CONF
# written by bench/run.sh: one static file on loopback
$user
num-threads: $STATIC_THREADS
error-log: $dir/h2o.err
listen:
  host: 127.0.0.1
  port: $port
hosts:
  "127.0.0.1:$port":
    paths:
      /:
        file.dir: $dir/www
CONF
	h2o -c "$dir/h2o.conf" >"$dir/h2o.log" 2>&1 &
	echo $! >"$PIDS/static.pid"
	if ! wait_for 10 curl -sf -o /dev/null "http://127.0.0.1:$port/hit.json"; then
		log "h2o did not start: $(tail -n 3 "$dir/h2o.log" "$dir/h2o.err" 2>/dev/null | tr '\n' ' ')"
		stop_pidfile "$PIDS/static.pid"
		return 1
	fi
	URL[static]=http://127.0.0.1:$port
}

stop_server() {
	stop_pidfile "$PIDS/$1.pid"
	unset "URL[$1]" "VARIANT[$1]"
}

is_http_cache() { [[ $HTTP_CACHES == *" $1 "* ]]; }

# up SERVER VARIANT: makes SERVER run in VARIANT, restarting it if needed
# (once more on another port when it cannot start).  Returns 1 when it
# cannot start.
up() {
	local s=$1 v=$2
	if [ "${VARIANT[$s]:-}" = "$v" ] && [ -n "${URL[$s]:-}" ]; then return 0; fi
	stop_server "$s"
	if ! "start_$s" "$v"; then
		next_port "$s"
		"start_$s" "$v" || return 1
	fi
	VARIANT[$s]=$v
}

# serve SERVER VARIANT: makes SERVER run in VARIANT (cache | nocache for the
# proxy and Express; Flask has no cache; ttl<N> for nginx and Varnish, which
# run in front of Express without its cache) and stops the other servers
# so that the one under test has the machine.  Returns 1 when it cannot
# start.
serve() {
	local s=$1 v=$2 o keep=" $1 "
	[ "$s" != flask ] || v=nocache
	! is_http_cache "$s" || keep+="express "
	for o in $ALL_SERVERS; do
		[[ $keep == *" $o "* ]] || stop_server "$o"
	done
	if is_http_cache "$s"; then
		# a restarted Express may listen elsewhere: restart the cache too
		if [ "${VARIANT[express]:-}" != nocache ] || [ -z "${URL[express]:-}" ]; then stop_server "$s"; fi
		up express nocache || return 1
	fi
	[ "${VARIANT[$s]:-}" = "$v" ] && [ -n "${URL[$s]:-}" ] && return 0
	up "$s" "$v" || return 1
	redis-cli -p "$REDIS_PORT" flushall >/dev/null
}

stop_all() {
	local s
	for s in $ALL_SERVERS; do stop_pidfile "$PIDS/$s.pid"; done
	stop_pidfile "$PIDS/redis.pid"
	[ ! -d "$PG/data" ] || scripts/cluster.sh stop "$PG" >/dev/null 2>&1 || true
}

# front_pids SERVER: the process that answers SERVER's HTTP requests (with
# its children, cpu_ticks counts its workers too).
front_pids() {
	cat "$PIDS/$1.pid" 2>/dev/null || true
}
# stack_pids SERVER: every process whose CPU a request to SERVER costs, each
# with its children (workers, PostgreSQL backends): the front, Express
# behind an HTTP cache, Redis, PostgreSQL; h2o alone for static.
stack_pids() {
	front_pids "$1"
	! is_http_cache "$1" || front_pids express
	case $1 in flask | static) ;; *) front_pids redis ;; esac
	[ "$1" = static ] || head -n 1 "$PG/data/postmaster.pid" 2>/dev/null || true
}

# cpu_ticks PID...: CPU time (utime + stime + cutime + cstime, clock ticks)
# of the PIDs and all their descendants, from /proc/<pid>/stat.  A counter:
# a child that exits moves its time into its parent's cutime/cstime when
# reaped, so the difference of two samples is the CPU used in between.
cpu_ticks() {
	[ $# -gt 0 ] || { echo 0; return; }
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v roots="$*" '
		{ pid = $1; sub(/^.*\) /, ""); ppid[pid] = $2; t[pid] = $12 + $13 + $14 + $15 }
		END {
			n = split(roots, r, " ")
			for (i = 1; i <= n; i++) if (r[i] in t) in_tree[r[i]] = 1
			do { added = 0
				for (p in ppid) if (!(p in in_tree) && (ppid[p] in in_tree)) { in_tree[p] = 1; added = 1 }
			} while (added)
			for (p in in_tree) sum += t[p]
			printf "%d\n", sum
		}'
}
CLK_TCK=$(getconf CLK_TCK)

# cpu_sample SERVER: "stack front" CPU ticks of SERVER now (cpu_per_req
# turns two samples into microseconds per request)
cpu_sample() {
	# shellcheck disable=SC2046 # pid lists
	echo "$(cpu_ticks $(stack_pids "$1")) $(cpu_ticks $(front_pids "$1"))"
}
cpu_per_req() { # cpu_per_req "BEFORE" "AFTER" REQUESTS: "stack_us front_us"
	awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		if (n > 0) printf "%.1f\t%.1f\n", (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) * 1e6 / hz / n
		else print "-\t-" }'
}

# ---------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------
# The dataset's identity: its size and the scripts that build it (not
# api.sql and aggregate.sql, which every run applies again), and pulse's
# install scripts: ALTER EXTENSION UPDATE follows released versions, not a
# version still being written (a proxy reading a newer pulse.endpoints than
# the database's finds no routes).
dataset_id() {
	echo "ROWS=$ROWS TENANTS=$TENANTS SQL=$(cat bench/data/schema.sql bench/data/load.sql bench/data/finish.sql \
		bench/data/load.sh extension/pulse--*.sql | sha1sum | cut -c1-12)"
}

ensure_data() {
	if [ "$(cat "$BENCH_DIR/dataset.id" 2>/dev/null)" = "$(dataset_id)" ] &&
		psql_ -Atc "SELECT 1 FROM pulse.endpoints LIMIT 1" >/dev/null 2>&1; then
		log "dataset: reusing $(cat "$BENCH_DIR/dataset.id")"
		# the dataset outlives pulse's versions: bring the extension, the
		# API and the aggregate to the code under test
		psql_ -c "SET client_min_messages = warning" -c "ALTER EXTENSION pulse UPDATE" -f bench/data/aggregate.sql -f bench/data/api.sql >/dev/null
		return
	fi
	rm -f "$BENCH_DIR/dataset.id"
	command psql -X -q -d postgres -c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
	psql_ -c "CREATE EXTENSION pulse"
	ROWS=$ROWS TENANTS=$TENANTS bench/data/load.sh "$DB" "$BENCH_DIR/data"
	dataset_id >"$BENCH_DIR/dataset.id"
}

# reset_data: removes the events the load added, so every run starts from
# the generated dataset.
reset_data() {
	psql_ -c "DELETE FROM bench.events WHERE id > $ROWS" \
		-c "VACUUM (ANALYZE) bench.events" \
		-c "SELECT pulse.refresh_aggregate('bench.tenant_kind_stats')" >/dev/null 2>&1 ||
		log "reset_data: could not reset (ignored)"
}

# ---------------------------------------------------------------------------
# Load tools.  Every result is one line of $RES (tab-separated):
#   scenario server variant x rps p50 p90 p95 p99 max errors requests bad hits
#   cpu_stack cpu_front
# (the last two: CPU microseconds per request served, of the whole stack
# and of the front alone, over the step; see cpu_sample)
# ---------------------------------------------------------------------------
export BENCH_LUA_DIR=$PWD/bench/scenarios

# run_wrk SCEN SERVER VARIANT X CONNS SECS SCRIPT [VAR=VALUE...]: one wrk run
# against SERVER; the VAR=VALUE pairs go to the Lua script's environment.
# WRK_THREADS, when set, overrides THREADS.  mix.lua logs its reads by id
# and updates (BENCH_LOG), and check_staleness decides which reads were
# stale.
run_wrk() {
	local scen=$1 s=$2 v=$3 x=$4 c=$5 secs=$6 script=$7 t=${WRK_THREADS:-$THREADS} out ops=
	shift 7
	[ "$c" -ge "$t" ] || t=$c
	out=$LOGS/$scen-$s-$v-$x.wrk
	[ "$script" != mix.lua ] || ops=$LOGS/ops/$scen-$s-$v-$x
	local cmd=(wrk -t"$t" -c"$c" -d"${secs}s" --timeout 10s -s "bench/scenarios/$script" "${URL[$s]}")
	echo "$* ${cmd[*]}" >>"$WORK/commands.txt"
	local cpu0 cpu1
	cpu0=$(cpu_sample "$s")
	env BENCH_SAMPLES="$BENCH_DIR/data/samples.tsv" BENCH_TOKENS="$WORK/tokens.tsv" BENCH_LOG="$ops" "$@" \
		timeout $((secs + 30)) "${cmd[@]}" >"$out" 2>&1 || log "wrk exited with $? ($out)"
	cpu1=$(cpu_sample "$s")
	local r line
	r=$(grep '^RESULT ' "$out" | tail -n 1)
	[ -n "$r" ] || { log "no result in $out: $(tail -n 2 "$out" | tr '\n' ' ')"; return 0; }
	line=$(echo "$r" | awk -v sc="$scen" -v s="$s" -v v="$v" -v x="$x" '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", sc, s, v, x, f["rps"], f["p50"], f["p90"],
			f["p95"], f["p99"], f["max"], f["errors"], f["requests"], f["bad"], f["hits"] }')
	line+=$'\t'$(cpu_per_req "$cpu0" "$cpu1" "$(echo "$line" | cut -f12)")
	echo "$line" >>"$RES"
	log "$scen $s $v x=$x: $(echo "$line" | awk -F'\t' '{printf "%s req/s, p50 %s ms, p99 %s ms, errors %s, non-2xx %s, %s us CPU/req", $5, $6, $9, $11, $13, $15}')"
	[ -z "$ops" ] || check_staleness "$scen" "$s" "$v" "$x" "$ops"
}

# check_staleness SCEN SERVER VARIANT X PREFIX: bench/staleness.py on the
# operation logs PREFIX.*.tsv of one wrk run, against the updates of this
# run and of the runs before it (LOGS/ops/history.tsv, under a lock: the agg
# scenario runs two wrk at once); one line of WORK/staleness.tsv:
#   scenario server variant x reads stale p50_ms p99_ms max_ms updates
# and, for each stale read, "scenario server variant x age_ms" in
# WORK/stale-ages.tsv; the five oldest of each run in
# WORK/stale-examples.tsv.  The logs are gzipped afterwards.
check_staleness() {
	local f=("$5".*.tsv) st
	[ -e "${f[0]}" ] || return 0
	if ! grep -q '^R' "${f[@]}"; then # updates only (or nothing): history, no analysis
		st="0 0 - - - $(cat "${f[@]}" | grep -c '^W' || true)"
		flock "$LOGS/ops/history.lock" sh -c 'grep -h "^W" "$@" >>"$0" || true' "$LOGS/ops/history.tsv" "${f[@]}"
	else st=$(flock "$LOGS/ops/history.lock" python3 bench/staleness.py --history "$LOGS/ops/history.tsv" \
		--examples "$WORK/stale-examples.tsv" --ages "$WORK/stale-ages.tsv" --label "$1"$'\t'"$2"$'\t'"$3"$'\t'"$4" \
		"${f[@]}") || {
		log "staleness: bench/staleness.py failed on $5"
		return 0
	}
	fi
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(echo "$st" | tr ' ' '\t')" >>"$WORK/staleness.tsv"
	gzip -f "${f[@]}"
	log "$1 $2 $3 x=$4: staleness (reads stale p50 p99 max updates) $st"
}

# uri_files SERVER: the h2load inputs for SERVER in $WORK/h2-SERVER.*
uri_files() {
	local s=$1 base=${URL[$1]}
	awk -v t="$H2_TENANT" -v b="$base" 'BEGIN {srand(7)} $2 == t {print rand() "\t" b "/rpc/event?id=" $1}' \
		"$BENCH_DIR/data/samples.tsv" | sort -k1,1 | cut -f2 >"$WORK/h2-$s.read"
	: >"$WORK/h2-$s.search"
	for m in 01 02 03 04 05 06 07 08 09 10 11 12; do
		for k in view click signup purchase refund; do
			echo "$base/rpc/search_events?kind=$k&page_size=20&until=2025-$m-01T00:00:00Z" >>"$WORK/h2-$s.search"
		done
	done
	echo "$base/rpc/add_event" >"$WORK/h2-$s.write"
	echo '{"kind":"click","amount":12.34,"note":"bench write"}' >"$WORK/h2-write.json"
}

# h2load_log_stats LOG SECS OFFERED: "rps p50 p90 p95 p99 max errors requests bad"
# from an h2load --log-file (start_us status duration_us per request).  rps
# counts the requests answered within SECS of the first one's start: with
# -n (a connection per request) h2load waits for every answer, however late.
h2load_log_stats() {
	sort -t$'\t' -k3,3n "$1" | awk -F'\t' -v secs="$2" '
		{ d[NR] = $3 / 1000; e[NR] = $1 + $3; if ($2 < 200 || $2 > 299) bad++; if (NR == 1 || $1 < t0) t0 = $1 }
		function pct(p,  i) { i = int(NR * p + 0.999999); if (i < 1) i = 1; return d[i] }
		END {
			if (NR == 0) { print "0 0 0 0 0 0 0 0 0"; exit }
			for (i = 1; i <= NR; i++) if (e[i] <= t0 + secs * 1e6) done++
			printf "%.1f %.3f %.3f %.3f %.3f %.3f 0 %d %d\n", done / secs, pct(0.5), pct(0.9), pct(0.95), pct(0.99), d[NR], NR, bad + 0
		}'
}

# Servers that close the connection after every response (Gunicorn's sync
# workers).  h2load --rps paces requests on keep-alive connections, so these
# get one connection per request instead, opened at the rate: -r K new
# connections every P ms (the smallest P for which RATE * P / 1000 is a whole
# K), -c = -n = RATE * SECS.  The request's time starts when it is sent, after
# the connect, and includes its wait in the server's accept queue.
CLOSES_CONNECTIONS=" flask "

# run_h2load NAME SERVER CLASS RATE SECS: one constant-rate h2load process
# in the background (its pid in H2PID); CLASS read | write | search.
run_h2load() {
	local name=$1 s=$2 cls=$3 rate=$4 secs=$5 c rps args n kp
	if [[ $CLOSES_CONNECTIONS == *" $s "* ]]; then
		n=$(awk -v r="$rate" -v d="$secs" 'BEGIN {n = int(r * d + 0.5); print (n < 1) ? 1 : n}')
		kp=$(awk -v r="$rate" 'BEGIN {
			for (p = 1; p <= 1000; p++) { k = r * p / 1000; kk = int(k + 0.5); if (kk >= 1 && (k - kk) ^ 2 < 1e-12) { print kk, p; exit } }
			printf "%d 1000\n", (r < 1) ? 1 : int(r + 0.5) }')
		# -T: an answer later than 5 s counts as not served, and h2load ends
		# at most 5 s after the last connection (not when `timeout` kills it
		# with its log unwritten)
		args=(--h1 -t 1 -c "$n" -n "$n" -r "${kp% *}" --rate-period "${kp#* }ms" -T 5)
	else
		c=$(awk -v r="$rate" -v p="$H2_PER_CLIENT" 'BEGIN {c = int((r + p - 1) / p); print (c < 1) ? 1 : c}')
		rps=$(awk -v r="$rate" -v c="$c" 'BEGIN {printf "%.3f", r / c}')
		args=(--h1 -t 1 -c "$c" --rps "$rps" -D "$secs")
	fi
	args+=(-H "Authorization: Bearer $H2_TOKEN" --log-file="$LOGS/$name.log")
	case $cls in
	read) args+=(-i "$WORK/h2-$s.read") ;;
	search) args+=(-i "$WORK/h2-$s.search") ;;
	write) args+=(-H "Content-Type: application/json" -d "$WORK/h2-write.json" -i "$WORK/h2-$s.write") ;;
	esac
	rm -f "$LOGS/$name.log"
	echo "h2load ${args[*]}" | sed "s/Bearer [^ ]*/Bearer <jwt of tenant $H2_TENANT>/" >>"$WORK/commands.txt"
	timeout $((secs + 30)) h2load "${args[@]}" >"$LOGS/$name.out" 2>&1 &
	H2PID=$!
}

# drain SERVER: waits (up to 90 s) until SERVER answers /health within 100
# ms, so that the requests queued by a step beyond capacity (Gunicorn keeps
# serving its accept queue after the clients are gone) do not land in the
# next step.
drain() {
	local t
	for _ in $(seq 90); do
		t=$(curl -s -o /dev/null -m 2 -w '%{time_total}' "${URL[$1]}/health" 2>/dev/null || echo 9)
		awk -v t="$t" 'BEGIN {exit !(t < 0.1)}' && return 0
		sleep 1
	done
	log "drain: $1 still slow after 90 s"
}

# run_rate SCEN SERVER VARIANT RATE: the 60/30/10 mix at RATE req/s offered,
# as three concurrent constant-rate h2load processes (one per class, one
# tenant: h2load sends one header set); one result line per class.
run_rate() {
	local scen=$1 s=$2 v=$3 rate=$4 pids=() cls share cpu0 cpu1 n cpu
	cpu0=$(cpu_sample "$s")
	for cls in read:0.6 write:0.3 search:0.1; do
		share=${cls#*:}
		cls=${cls%%:*}
		run_h2load "$scen-$s-$v-$rate-$cls" "$s" "$cls" "$(awk -v r="$rate" -v f="$share" 'BEGIN {print r * f}')" "$DURATION"
		pids+=("$H2PID")
	done
	for p in "${pids[@]}"; do wait "$p" || true; done
	cpu1=$(cpu_sample "$s")
	drain "$s"
	n=$(cat "$LOGS/$scen-$s-$v-$rate-"{read,write,search}.log 2>/dev/null | wc -l)
	cpu=$(cpu_per_req "$cpu0" "$cpu1" "$n")
	for cls in read write search; do
		local st
		st=$(h2load_log_stats "$LOGS/$scen-$s-$v-$rate-$cls.log" "$DURATION")
		echo "$scen $s $v/$cls $rate $st -" | tr ' ' '\t' | tr -d '\n' >>"$RES"
		printf '\t%s\n' "$cpu" >>"$RES"
	done
	log "$scen $s $v offered $rate req/s: $(awk -F'\t' -v sc="$scen" -v s="$s" -v v="$v" -v r="$rate" '
		$1 == sc && $2 == s && $4 == r && index($3, v "/") == 1 {printf "%s %s req/s p95 %s p99 %s non-2xx %s; ", substr($3, length(v) + 2), $5, $8, $9, $13}' "$RES")"
}

# capacity_closed and capacity_rate: bench/report.sh.

# proc_rss PID: resident KB of PID and its children.
proc_rss() {
	local total=0 p
	for p in $1 $(pgrep -P "$1" 2>/dev/null); do
		total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
	done
	echo "$total"
}

# shellcheck source=bench/scenarios.sh
. bench/scenarios.sh
# shellcheck source=bench/report.sh
. bench/report.sh

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
# Wrapped in a function so that bash has read the whole file before it
# runs: editing the script during a run does not break the run.
main() {
	BENCH_CMD=${1:-all}
	[ $# -eq 0 ] || shift
	case $BENCH_CMD in
	clean)
		scripts/cluster.sh destroy "$PG" >/dev/null 2>&1 || true
		rm -rf "$BENCH_DIR"
		exit 0
		;;
	report)
		WORK=${1:?usage: run.sh report WORKDIR}
		# shellcheck disable=SC1091
		. "$WORK/meta.env"
		write_report "$WORK" "$OUT"
		exit 0
		;;
	all) scenarios=$ALL_SCENARIOS ;;
	data) scenarios= ;;
	peers) scenarios=smoke ;;
	scenario)
		scenarios=${*:-}
		[ -n "$scenarios" ] || die "usage: run.sh scenario NAME... (one of: $ALL_SCENARIOS)"
		for s in $scenarios; do
			case " $ALL_SCENARIOS smoke " in *" $s "*) ;; *) die "unknown scenario $s (one of: $ALL_SCENARIOS smoke)" ;; esac
		done
		;;
	*) die "usage: run.sh [all|data|peers|scenario NAME...|report WORKDIR|clean]" ;;
	esac

	trap stop_all EXIT
	trap 'exit 130' INT TERM
	for tool in wrk h2load gnuplot redis-server curl; do
		command -v $tool >/dev/null || die "$tool is missing: run scripts/deps.sh"
	done

	start_pg
	log "PostgreSQL on 127.0.0.1:$PGPORT ($PG)"
	ensure_data
	[ -n "$scenarios" ] || { log "dataset ready in $BENCH_DIR"; exit 0; }

	WORK=$BENCH_DIR/run-$(date -u +%Y%m%dT%H%M%S)
	LOGS=$WORK/logs
	RES=$WORK/results.tsv
	mkdir -p "$LOGS/ops"
	: >"$RES"
	: >"$WORK/commands.txt"
	# The proxy binary of the whole run, copied: a rebuild during the run
	# does not change what is measured.
	PROXY_RUN_BIN=
	if [ -x "$PROXY_BIN" ] && cp "$PROXY_BIN" "$WORK/pulse-proxy" 2>/dev/null; then
		PROXY_RUN_BIN=$WORK/pulse-proxy
	fi
	python3 bench/data/tokens.py "$SECRET" "$TENANTS" 86400 >"$WORK/tokens.tsv"
	H2_TOKEN=$(awk -v t="$H2_TENANT" '$1 == t {print $2}' "$WORK/tokens.tsv")
	start_redis
	log "Redis on 127.0.0.1:$REDIS_PORT; results in $WORK"

	save_meta "$WORK" "$scenarios"
	for s in $scenarios; do
		reset_data
		"scenario_$s"
	done
	finish_meta "$WORK"
	write_report "$WORK" "$OUT"
	log "report: $OUT"
}

main "$@"; exit
