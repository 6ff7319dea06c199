#!/usr/bin/env bash
# pulse-proxy throughput and latency against its baselines (issue 4's bench
# item).  See bench/proxy/README.md.  `make bench-proxy` runs it.
#
# Starts, all on 127.0.0.1 and all stopped on exit whatever happens: a
# throwaway PostgreSQL 15 cluster (scripts/pgroot.sh + scripts/cluster.sh),
# redis-server, pulse-proxy and the h2o server (static-file baseline).
# Loads bench/proxy/dataset.sql (ROWS rows, TENANTS tenants) and pgbench's
# own tables at the same size, then for REPEATS rounds runs, side by side:
#   wrk (closed loop, max throughput): h2o static file, proxy cached hit,
#     proxy uncached primary-key lookup, pgbench -S -M prepared, proxy cursor
#     page 1, proxy next page (following page 1's next_cursor);
#   h2load --rps (constant arrival rate) at half of each proxy scenario's
#     median wrk throughput: p50 / p99;
#   CPU time per request of every server process (proxy, Redis, PostgreSQL,
#     h2o) for h2o static, cached hits (local cache, and Redis through a
#     second proxy without local cache), uncached PK lookup, cursor page and
#     a write.
# Writes a Markdown report with medians of the rounds and per-round ratios.
#
# Parameters (environment):
#   ROWS        rows in benchp.items and pgbench_accounts   (1000000)
#   TENANTS     tenants (1 + id % TENANTS)                   (4)
#   DURATION    seconds per load run                         (10)
#   REPEATS     rounds; medians taken                        (3)
#   CONNS       wrk / h2load connections, pgbench clients,
#               proxy pool_size                              (8)
#   PROXY_THREADS  proxy event loops                         (1)
#   WRK_THREADS    wrk threads (= pgbench -j)                (1)
#   H2O_THREADS    h2o num-threads                           (1)
#   PROXY_BIN   proxy binary (copied at start)               (build/pulse-proxy)
#   PORT        first TCP port to try                        (26000)
#   WORK        scratch directory (removed on exit)          (/tmp/pulse-bench-proxy.PID)
#   OUT         report           (bench/results/<UTC date>-proxy.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. bench/proxy/cluster.sh

ROWS=${ROWS:-1000000}
TENANTS=${TENANTS:-4}
DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
CONNS=${CONNS:-8}
PROXY_THREADS=${PROXY_THREADS:-1}
WRK_THREADS=${WRK_THREADS:-1}
H2O_THREADS=${H2O_THREADS:-1}
PROXY_BIN=${PROXY_BIN:-build/pulse-proxy}
WORK=${WORK:-/tmp/pulse-bench-proxy.$$}
OUT=${OUT:-bench/results/$(date -u +%F)-proxy.md}
DB=pulse_bench
SCALE=$((ROWS / 100000)) # pgbench_accounts has 100000 rows per scale unit
[ "$SCALE" -ge 1 ] || SCALE=1
CMD="ROWS=$ROWS TENANTS=$TENANTS DURATION=$DURATION REPEATS=$REPEATS CONNS=$CONNS PROXY_THREADS=$PROXY_THREADS WRK_THREADS=$WRK_THREADS H2O_THREADS=$H2O_THREADS bench/proxy/run.sh"

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log() { printf '%s bench-proxy: %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }

for tool in wrk h2load h2o redis-server redis-cli curl python3; do
	command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh installs it)"
done
[ -x "$PROXY_BIN" ] || die "no proxy binary at $PROXY_BIN (make proxy)"

PIDS=()
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/www" "$WORK/logs" "$WORK/pgroot"
chmod 755 "$WORK" "$WORK/www" "$WORK/pgroot"
LOGS=$WORK/logs
cp "$PROXY_BIN" "$WORK/pulse-proxy"

PGPORT=$(free_port "${PORT:-26000}")
REDIS_PORT=$(free_port $((PGPORT + 1)))
PROXY_PORT=$(free_port $((REDIS_PORT + 1)))
H2O_PORT=$(free_port $((PROXY_PORT + 1)))
PROXY2_PORT=$(free_port $((H2O_PORT + 1)))

# --- PostgreSQL -----------------------------------------------------------------
start_bench_cluster
log "pgbench -i -s $SCALE"
"$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U postgres "$DB" >"$LOGS/pgbench-init.out" 2>&1 ||
	{ cat "$LOGS/pgbench-init.out" >&2; die "pgbench -i failed"; }
load_secs=$(($(date +%s) - t0))
psql -d "$DB" -At -c "SELECT pg_prewarm(c) FROM unnest(ARRAY['benchp.items', 'benchp.items_pkey', 'benchp.items_tenant_created', 'pgbench_accounts', 'pgbench_accounts_pkey', 'pgbench_branches', 'pgbench_tellers']::regclass[]) c" >/dev/null
items_size=$(psql -d "$DB" -Atc "SELECT pg_size_pretty(pg_table_size('benchp.items'))")
accounts_size=$(psql -d "$DB" -Atc "SELECT pg_size_pretty(pg_table_size('pgbench_accounts'))")
accounts_rows=$(psql -d "$DB" -Atc "SELECT count(*) FROM pgbench_accounts")
log "loaded in ${load_secs}s: benchp.items $items_size, pgbench_accounts $accounts_size ($accounts_rows rows)"

# --- Redis, proxy -------------------------------------------------------------------
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$LOGS/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=($REDIS_PID)
wait_for 10 redis-cli -p "$REDIS_PORT" ping || die "redis-server did not start"

SECRET=bench-secret-$$
cat >"$WORK/proxy.yaml" <<CONF
# pulse-proxy configuration of bench/proxy/run.sh
listen: 127.0.0.1:$PROXY_PORT
pg_url: host=127.0.0.1 port=$PGPORT dbname=$DB user=pulse_proxy
threads: $PROXY_THREADS
pool_size: $CONNS
access_log: "off"
redis_url: redis://127.0.0.1:$REDIS_PORT
CONF
PULSE_JWT_SECRET=$SECRET "$WORK/pulse-proxy" --config "$WORK/proxy.yaml" 2>"$LOGS/proxy.err" &
PROXY_PID=$!
PIDS+=($PROXY_PID)
# the same proxy without its loops' local caches: every hit is a Redis round trip (CPU table only)
sed -e "s/^listen: .*/listen: 127.0.0.1:$PROXY2_PORT/" "$WORK/proxy.yaml" >"$WORK/proxy-redis.yaml"
echo "cache_local_bytes: 0" >>"$WORK/proxy-redis.yaml"
PULSE_JWT_SECRET=$SECRET "$WORK/pulse-proxy" --config "$WORK/proxy-redis.yaml" 2>"$LOGS/proxy-redis.err" &
PROXY2_PID=$!
PIDS+=($PROXY2_PID)
wait_for 15 curl -sf "http://127.0.0.1:$PROXY_PORT/ready" || { cat "$LOGS/proxy.err" >&2; die "proxy not ready"; }
wait_for 15 curl -sf "http://127.0.0.1:$PROXY2_PORT/ready" || { cat "$LOGS/proxy-redis.err" >&2; die "proxy (no local cache) not ready"; }
BASE=http://127.0.0.1:$PROXY_PORT
TOKEN=$(python3 proxy/test/token.py "$SECRET" "{\"tenant\": 1, \"exp\": $(($(date +%s) + 7200))}")
AUTH="Authorization: Bearer $TOKEN"

# --- the URLs, checked once ----------------------------------------------------------
HIT_ID=$((TENANTS * 1000)) # a row of tenant 1
HIT_URL="$BASE/rpc/item_cached?id=$HIT_ID"
PK_PATH="/rpc/item?id="
PAGE1_URL="$BASE/rpc/items_page?page_size=20"

curl -sf -o /dev/null -H "$AUTH" "$HIT_URL" || die "GET $HIT_URL failed"
curl -sf -D "$LOGS/hit.headers" -o "$WORK/www/item.json" -H "$AUTH" "$HIT_URL"
grep -qi '^x-cache: hit' "$LOGS/hit.headers" || { cat "$LOGS/hit.headers" >&2; die "second GET of $HIT_URL is not X-Cache: hit"; }
hit_bytes=$(wc -c <"$WORK/www/item.json")
chmod 644 "$WORK/www/item.json"
curl -sf -o "$LOGS/pk.body" -H "$AUTH" "$BASE$PK_PATH$((TENANTS * 7))" || die "GET $PK_PATH failed"
grep -q '"id"' "$LOGS/pk.body" || die "pk lookup returned no row: $(cat "$LOGS/pk.body")"
grep -qi '^x-cache' <(curl -s -D - -o /dev/null -H "$AUTH" "$BASE$PK_PATH$((TENANTS * 7))") && die "uncached endpoint answered with X-Cache"
curl -sf -D "$LOGS/page1.headers" -o "$LOGS/page1.body" -H "$AUTH" "$PAGE1_URL" || die "GET $PAGE1_URL failed"
next=$(sed -n 's/^[Ll]ink: <\([^>]*\)>; rel="next".*$/\1/p' "$LOGS/page1.headers" | tr -d '\r')
[ -n "$next" ] || die "page 1 has no Link rel=next"
PAGE2_URL="$BASE$next"
curl -sf -o "$LOGS/page2.body" -H "$AUTH" "$PAGE2_URL" || die "GET $PAGE2_URL failed"
page_items=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['items']))" "$LOGS/page2.body")
[ "$page_items" = 20 ] || die "next page has $page_items items"
curl -s -o "$LOGS/write.body" -w '%{http_code}' -H "$AUTH" -H 'Content-Type: application/json' \
	-d "{\"id\": $((TENANTS * 7))}" "$BASE/rpc/touch_item" | grep -q '^200$' ||
	die "POST /rpc/touch_item failed: $(cat "$LOGS/write.body")"
page1_bytes=$(wc -c <"$LOGS/page1.body")
page2_bytes=$(wc -c <"$LOGS/page2.body")

# --- h2o: the same bytes as the cached hit's body, as a static file --------------------
h2o_user=
[ "$(id -u)" -ne 0 ] || h2o_user="user: nobody"
cat >"$WORK/h2o.conf" <<CONF
# h2o configuration of bench/proxy/run.sh: one static file on loopback
$h2o_user
num-threads: $H2O_THREADS
error-log: $LOGS/h2o.err
listen:
  host: 127.0.0.1
  port: $H2O_PORT
hosts:
  "127.0.0.1:$H2O_PORT":
    paths:
      /:
        file.dir: $WORK/www
CONF
h2o -c "$WORK/h2o.conf" >"$LOGS/h2o.out" 2>&1 &
H2O_PID=$!
PIDS+=($H2O_PID)
STATIC_URL="http://127.0.0.1:$H2O_PORT/item.json"
wait_for 10 curl -sf -o /dev/null "$STATIC_URL" || { cat "$LOGS/h2o.out" "$LOGS/h2o.err" >&2 2>/dev/null; die "h2o did not start"; }
cmp -s "$WORK/www/item.json" <(curl -sf "$STATIC_URL") || die "h2o does not serve the cached body's bytes"
cmp -s "$WORK/www/item.json" <(curl -sf -H "$AUTH" "$HIT_URL") || die "the cached body changed"
log "ports: PostgreSQL $PGPORT, Redis $REDIS_PORT, proxy $PROXY_PORT, h2o $H2O_PORT; cached body $hit_bytes bytes"

# h2load input: 20000 random ids of tenant 1 (fixed seed), cycled through
awk -v n=20000 -v t="$TENANTS" -v r="$ROWS" -v b="$BASE$PK_PATH" \
	'BEGIN {srand(20261125); for (i = 0; i < n; i++) print b (1 + int(rand() * int(r / t))) * t}' >"$WORK/pk.urls"

# --- load runs ------------------------------------------------------------------------
RESULTS=$LOGS/results.tsv # round tool scenario rps p50_ms p99_ms requests errors offered
: >"$RESULTS"
COMMANDS=$WORK/commands.txt
: >"$COMMANDS"
TOKEN_SHOWN="Authorization: Bearer <HS256 JWT, tenant 1>"
# shq ARGS...: the arguments as one shell-quoted line
shq() {
	local a out=
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+="$a "; else out+="'${a//\'/\'\\\'\'}' "; fi
	done
	printf '%s' "${out% }"
}
note_cmd() { # note_cmd ROUND TEXT: the first round's commands go to the report
	[ "$1" != 1 ] || printf '%s\n' "$2" | sed "s|Bearer [A-Za-z0-9._-]*|Bearer <HS256 JWT, tenant 1>|g" >>"$COMMANDS"
}

# wrk latency figures ("512.00us", "1.23ms", "1.02s") in ms
to_ms() { awk -v v="$1" 'BEGIN {
	if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
	else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
	else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
	else { sub(/s$/, "", v); printf "%.3f", v * 1000 } }'; }

# run_wrk ROUND SCENARIO SECS ARGS...: one wrk run; a result line unless ROUND is 0
run_wrk() {
	local round=$1 scen=$2 secs=$3 out rps p50 p99 n err
	shift 3
	out=$LOGS/wrk-$scen-r$round.out
	note_cmd "$round" "wrk -t$WRK_THREADS -c$CONNS -d${secs}s --timeout 10s --latency $(shq "$@")"
	# --timeout 10s: wrk's 2 s default counts a request a saturated shared machine answers late as a socket error
	timeout $((secs + 20)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${secs}s" --timeout 10s --latency "$@" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "wrk failed for $scen"; }
	[ "$round" != 0 ] || return 0
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
	p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
	p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
	n=$(awk '/requests in/ {print $1}' "$out")
	err=$(awk '/^ *Non-2xx/ {s += $NF} /Socket errors/ {gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) s += $i} END {print s + 0}' "$out")
	printf '%s\twrk\t%s\t%s\t%s\t%s\t%s\t%s\t-\n' "$round" "$scen" "$rps" "$p50" "$p99" "$n" "$err" >>"$RESULTS"
	log "round $round wrk $scen: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors $err"
}

# run_pgbench ROUND SCENARIO SECS ARGS...: pgbench -M prepared, CONNS clients,
# WRK_THREADS threads, over TCP loopback; ARGS: -S, or a script and its user
run_pgbench() {
	local round=$1 scen=$2 secs=$3 out tps n p50 p99 err
	shift 3
	out=$LOGS/$scen-r$round.out
	rm -rf "$LOGS/$scen-r$round.tx" && mkdir -p "$LOGS/$scen-r$round.tx"
	note_cmd "$round" "pgbench -n -M prepared -c $CONNS -j $WRK_THREADS -T $secs --log -h 127.0.0.1 -p $PGPORT $(shq "$@") $DB"
	timeout $((secs + 30)) "$PGBIN/pgbench" -n -M prepared -c "$CONNS" -j "$WRK_THREADS" -T "$secs" \
		--log --log-prefix="$LOGS/$scen-r$round.tx/tx" -h 127.0.0.1 -p "$PGPORT" "$@" "$DB" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "pgbench failed for $scen"; }
	[ "$round" != 0 ] || return 0
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
	err=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
	# pgbench --log: client_id transaction_no latency_us script_no epoch_s epoch_us
	read -r n p50 p99 < <(cat "$LOGS/$scen-r$round.tx"/tx* | awk '{print $3}' | sort -n | awk '
		{ v[NR] = $1 }
		function pct(p,  i) { i = int(NR * p + 0.999999); if (i < 1) i = 1; return v[i] / 1000 }
		END { printf "%d %.3f %.3f\n", NR, pct(0.5), pct(0.99) }')
	printf '%s\tpgbench\t%s\t%s\t%s\t%s\t%s\t%s\t-\n' "$round" "$scen" "$tps" "$p50" "$p99" "$n" "${err:-0}" >>"$RESULTS"
	log "round $round $scen: $tps tps, p50 $p50 ms, p99 $p99 ms"
}

# run_rate ROUND SCENARIO RATE SECS ARGS...: h2load at RATE req/s in all
# (CONNS clients at RATE/CONNS each); p50/p99 from its per-request log
run_rate() {
	local round=$1 scen=$2 rate=$3 secs=$4 per out lg
	shift 4
	per=$(awk -v r="$rate" -v c="$CONNS" 'BEGIN {printf "%.2f", r / c}')
	out=$LOGS/h2load-$scen-r$round.out
	lg=$LOGS/h2load-$scen-r$round.log
	rm -f "$lg"
	note_cmd "$round" "h2load --h1 -t 1 -c $CONNS --rps $per -D $secs --log-file=<log> $(shq "$@")"
	timeout $((secs + 30)) h2load --h1 -t 1 -c "$CONNS" --rps "$per" -D "$secs" --log-file="$lg" "$@" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "h2load failed for $scen"; }
	sort -t$'\t' -k3,3n "$lg" | awk -F'\t' -v secs="$secs" -v r="$round" -v s="$scen" -v off="$rate" '
		{ d[NR] = $3 / 1000; if ($2 < 200 || $2 > 299) bad++ }
		function pct(p,  i) { i = int(NR * p + 0.999999); if (i < 1) i = 1; return d[i] }
		END { printf "%s\th2load\t%s\t%.1f\t%.3f\t%.3f\t%d\t%d\t%s\n", r, s, NR / secs, pct(0.5), pct(0.99), NR, bad + 0, off }' >>"$RESULTS"
	log "round $round h2load $scen at $rate req/s: $(tail -n 1 "$RESULTS" | awk -F'\t' '{printf "%s req/s served, p50 %s ms, p99 %s ms, errors %s", $4, $5, $6, $8}')"
}

# one closed-loop round: baselines next to the proxy scenario they are compared with
wrk_round() {
	local r=$1 secs=$2
	run_wrk "$r" static "$secs" "$STATIC_URL"
	run_wrk "$r" hit "$secs" -H "$AUTH" "$HIT_URL"
	run_wrk "$r" pk "$secs" -H "$AUTH" -s bench/proxy/random_id.lua "$BASE" -- "$PK_PATH" "$TENANTS" "$ROWS"
	run_pgbench "$r" pgbench "$secs" -S -U postgres
	run_pgbench "$r" pgbench_rpc "$secs" -U pulse_proxy -f bench/proxy/rpc.sql -D maxk=$((ROWS / TENANTS)) -D tenants="$TENANTS"
	run_wrk "$r" pk_pl "$secs" -H "$AUTH" -s bench/proxy/random_id.lua "$BASE" -- "/rpc/item_pl?id=" "$TENANTS" "$ROWS"
	run_pgbench "$r" pgbench_rpc_pl "$secs" -U pulse_proxy -f bench/proxy/rpc_pl.sql -D maxk=$((ROWS / TENANTS)) -D tenants="$TENANTS"
	run_wrk "$r" page1 "$secs" -H "$AUTH" "$PAGE1_URL"
	run_wrk "$r" page2 "$secs" -H "$AUTH" "$PAGE2_URL"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -F'\t' -v t="$1" -v s="$2" -v c="$3" '$2 == t && $3 == s {printf "%s ", $c}' "$RESULTS"; }
fmt() { awk -v x="$1" -v p="$2" 'BEGIN {printf "%.*f", p, x}'; }
# per-round ratio of the wrk req/s of scenario A over scenario B (pgbench: tps), then the median
ratio() {
	awk -F'\t' -v a="$1" -v b="$2" '
		$2 != "h2load" && $3 == a {x[$1] = $4}
		$2 != "h2load" && $3 == b {y[$1] = $4}
		END {for (r in x) if (y[r] > 0) printf "%.4f ", x[r] / y[r]}' "$RESULTS" | median
}
ratios() {
	awk -F'\t' -v a="$1" -v b="$2" '
		$2 != "h2load" && $3 == a {x[$1] = $4}
		$2 != "h2load" && $3 == b {y[$1] = $4}
		END {for (r in x) if (y[r] > 0) printf "%.2f ", x[r] / y[r]}' "$RESULTS"
}

log "warm-up (3 s each, not measured)"
wrk_round 0 3

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bench_start=$(date -u +'%F %T')
for round in $(seq 1 "$REPEATS"); do
	wrk_round "$round" "$DURATION"
done

# constant arrival rate at half of each proxy scenario's median max throughput
declare -A HALF
for s in hit pk page1 page2; do
	HALF[$s]=$(awk -v x="$(col wrk "$s" 4 | median)" 'BEGIN {printf "%d", x / 2}')
done
for round in $(seq 1 "$REPEATS"); do
	run_rate "$round" hit "${HALF[hit]}" "$DURATION" -H "$AUTH" "$HIT_URL"
	run_rate "$round" pk "${HALF[pk]}" "$DURATION" -H "$AUTH" -i "$WORK/pk.urls"
	run_rate "$round" page1 "${HALF[page1]}" "$DURATION" -H "$AUTH" "$PAGE1_URL"
	run_rate "$round" page2 "${HALF[page2]}" "$DURATION" -H "$AUTH" "$PAGE2_URL"
done
# --- CPU time per request ------------------------------------------------------------
# For a fixed load (wrk, DURATION s, CONNS connections), the CPU time (utime +
# stime from /proc/<pid>/stat, all threads) each server process used, divided
# by the requests wrk counted: noise on the shared machine moves req/s, much
# less the CPU a request costs. PostgreSQL: every process of the cluster (the
# pool's backends and the auxiliary processes).
CLK_TCK=$(getconf CLK_TCK)
CPU=$LOGS/cpu.tsv # round scenario requests proxy_us redis_us pg_us h2o_us
: >"$CPU"
pg_pids() { local pm; pm=$(head -n 1 "$WORK/pg/data/postmaster.pid"); echo "$pm" $(pgrep -P "$pm"); }
ticks() { # ticks PID...: utime + stime of the processes, in clock ticks
	local f=() pid
	for pid in "$@"; do [ -r "/proc/$pid/stat" ] && f+=("/proc/$pid/stat"); done
	[ ${#f[@]} -gt 0 ] || { echo 0; return; }
	# the fields after "pid (comm) ": state is the 1st, utime the 12th, stime the 13th
	awk '{ sub(/^.*\) /, ""); split($0, a, " "); t += a[12] + a[13] } END { print t + 0 }' "${f[@]}"
}
# run_cpu ROUND SCENARIO PROXY_PID ARGS...: one wrk run, with the CPU of every server process around it
run_cpu() {
	local round=$1 scen=$2 ppid=$3 b_p b_r b_pg b_h a_p a_r a_pg a_h n
	shift 3
	b_p=$(ticks "$ppid"); b_r=$(ticks "$REDIS_PID"); b_pg=$(ticks $(pg_pids)); b_h=$(ticks "$H2O_PID")
	run_wrk 0 "cpu-$scen" "$DURATION" "$@"
	a_p=$(ticks "$ppid"); a_r=$(ticks "$REDIS_PID"); a_pg=$(ticks $(pg_pids)); a_h=$(ticks "$H2O_PID")
	n=$(awk '/requests in/ {print $1}' "$LOGS/wrk-cpu-$scen-r0.out")
	# a wrong answer or a broken connection ends the run; a request slower than wrk's timeout is counted and logged (its
	# CPU was spent all the same), as the closed-loop tail it is
	! grep -qE '^ *Non-2xx|Socket errors: connect [1-9]|Socket errors: .*(read|write) [1-9]' "$LOGS/wrk-cpu-$scen-r0.out" ||
		{ cat "$LOGS/wrk-cpu-$scen-r0.out" >&2; die "cpu $scen: errors or non-2xx answers"; }
	! grep -qE 'Socket errors: .*timeout [1-9]' "$LOGS/wrk-cpu-$scen-r0.out" ||
		log "round $round cpu $scen: $(grep -oE 'timeout [0-9]+' "$LOGS/wrk-cpu-$scen-r0.out") requests over 10 s (counted)"
	mv "$LOGS/wrk-cpu-$scen-r0.out" "$LOGS/wrk-cpu-$scen-r$round.out"
	awk -v r="$round" -v s="$scen" -v n="$n" -v hz="$CLK_TCK" -v p=$((a_p - b_p)) -v q=$((a_r - b_r)) \
		-v g=$((a_pg - b_pg)) -v h=$((a_h - b_h)) \
		'BEGIN { u = 1e6 / hz / (n > 0 ? n : 1); printf "%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\n", r, s, n, p * u, q * u, g * u, h * u }' >>"$CPU"
	log "round $round cpu $scen: $(tail -n 1 "$CPU" | awk -F'\t' '{printf "%s requests; us per request: proxy %s, redis %s, postgres %s, h2o %s", $3, $4, $5, $6, $7}')"
}
BASE2=http://127.0.0.1:$PROXY2_PORT
curl -sf -o /dev/null -H "$AUTH" "$BASE2/rpc/item_cached?id=$HIT_ID" || die "the proxy without local cache does not answer"
for round in $(seq 1 "$REPEATS"); do
	run_cpu "$round" static "$PROXY_PID" "$STATIC_URL"
	run_cpu "$round" hit_local "$PROXY_PID" -H "$AUTH" "$HIT_URL"
	run_cpu "$round" hit_redis "$PROXY2_PID" -H "$AUTH" "$BASE2/rpc/item_cached?id=$HIT_ID"
	run_cpu "$round" pk_pl "$PROXY_PID" -H "$AUTH" -s bench/proxy/random_id.lua "$BASE" -- "/rpc/item_pl?id=" "$TENANTS" "$ROWS"
	run_cpu "$round" page2 "$PROXY_PID" -H "$AUTH" "$PAGE2_URL"
	run_cpu "$round" write "$PROXY_PID" -H "$AUTH" -s bench/proxy/random_id.lua "$BASE" -- "/rpc/touch_item" "$TENANTS" "$ROWS" post
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
bench_end=$(date -u +'%F %T')

# the cache really answered the hit runs
redis_hits=$(redis-cli -p "$REDIS_PORT" info stats | sed -n 's/^keyspace_hits:\([0-9]*\).*/\1/p')
local_hits=$(curl -s "$BASE/metrics" | awk '$1 == "pulse_cache_local_hits_total" {print $2}')
redis_misses=$(redis-cli -p "$REDIS_PORT" info stats | sed -n 's/^keyspace_misses:\([0-9]*\).*/\1/p')
curl -s -D "$LOGS/hit-after.headers" -o /dev/null -H "$AUTH" "$HIT_URL"
xcache_after=$(sed -n 's/^[Xx]-[Cc]ache: *//p' "$LOGS/hit-after.headers" | tr -d '\r')

# --- report ---------------------------------------------------------------------------
pg_version=$(psql -d "$DB" -Atc "SELECT version()")
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
cpu=$({ lscpu 2>/dev/null || true; } | sed -n 's/^Model name: *//p' | sed -n 1p)
kernel=$(uname -r)
h2o_version=$({ h2o --version 2>/dev/null || true; } | sed -n "1s/^h2o version //p")
wrk_version=$({ wrk -v 2>&1 || true; } | sed -n 1p | cut -d' ' -f1-2)
h2load_version=$({ h2load --version 2>&1 || true; } | sed -n 1p)
redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
proxy_sum=$(sha256sum "$WORK/pulse-proxy" | cut -c1-12)
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
proxy_built=$(date -u -r "$PROXY_BIN" +'%F %T')

cpu_label() {
	case $1 in
	static) echo "h2o static file ($hit_bytes B)" ;;
	hit_local) echo "cached hit, loop's local cache" ;;
	hit_redis) echo "cached hit, Redis (local cache off)" ;;
	pk_pl) echo "uncached PK lookup (PL/pgSQL)" ;;
	page2) echo "cursor next page (20 rows)" ;;
	write) echo "write (UPDATE of one row, tracked table)" ;;
	esac
}
met() { awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op == ">=") ? (x >= t) : (x < t); print ok ? "yes" : "**no**"}'; }
label() {
	case $1 in
	static) echo "h2o static file ($hit_bytes B)" ;;
	hit) echo "proxy cached hit" ;;
	pk) echo "proxy uncached PK lookup" ;;
	pgbench) echo "pgbench -S -M prepared" ;;
	pgbench_rpc) echo "pgbench, the proxy's SQL for a PK lookup (rpc.sql)" ;;
	pk_pl) echo "proxy uncached PK lookup, PL/pgSQL endpoint" ;;
	pgbench_rpc_pl) echo "pgbench, the proxy's SQL for the PL/pgSQL lookup (rpc_pl.sql)" ;;
	page1) echo "proxy cursor page 1 (20 rows)" ;;
	page2) echo "proxy cursor next page (20 rows)" ;;
	esac
}

mkdir -p "$(dirname "$OUT")"
{
	echo "# pulse-proxy: throughput and latency against h2o and pgbench"
	echo
	echo "Generated by \`bench/proxy/run.sh\` (\`make bench-proxy\`), $bench_start to $bench_end UTC."
	echo "See \`bench/proxy/README.md\`. Issue 4, \"Tests and evidence\", bench item."
	echo
	echo "## Command"
	echo
	echo '```'
	echo "$CMD"
	echo '```'
	echo
	echo "## Targets"
	echo
	echo "| target | measured (median of $REPEATS per-round ratios / runs) | met |"
	echo "|---|---:|---|"
	r_hit=$(ratio hit static)
	r_pk=$(ratio pk pgbench)
	r_pkpl=$(ratio pk_pl pgbench)
	echo "| cached hits >= 50% of the h2o static-file rate | $(fmt "$(awk -v x="$r_hit" 'BEGIN {print x * 100}')" 1)% (rounds: $(ratios hit static)) | $(met "$r_hit" ">=" 0.5) |"
	echo "| uncached PK lookups >= 60% of pgbench -S tps (LANGUAGE sql endpoint) | $(fmt "$(awk -v x="$r_pk" 'BEGIN {print x * 100}')" 1)% (rounds: $(ratios pk pgbench)) | $(met "$r_pk" ">=" 0.6) |"
	echo "| uncached PK lookups >= 60% of pgbench -S tps (PL/pgSQL endpoint) | $(fmt "$(awk -v x="$r_pkpl" 'BEGIN {print x * 100}')" 1)% (rounds: $(ratios pk_pl pgbench)) | $(met "$r_pkpl" ">=" 0.6) |"
	for s in hit pk page1 page2; do
		p99=$(col h2load "$s" 6 | median)
		echo "| p99 < 5 ms at half of max throughput: $(label "$s") at ${HALF[$s]} req/s | $(fmt "$p99" 3) ms | $(met "$p99" "<" 5) |"
	done
	echo
	echo "## Maximum throughput (wrk, closed loop; median of $REPEATS rounds, ${DURATION} s each)"
	echo
	echo "| scenario | req/s | p50 ms | p99 ms | requests | errors | baseline | ratio vs baseline (median of rounds) | target | met |"
	echo "|---|---:|---:|---:|---:|---:|---|---:|---|---|"
	for s in static hit pk pgbench pgbench_rpc pk_pl pgbench_rpc_pl page1 page2; do
		t=wrk
		[[ $s != pgbench* ]] || t=pgbench
		rps=$(col "$t" "$s" 4 | median)
		p50=$(col "$t" "$s" 5 | median)
		p99=$(col "$t" "$s" 6 | median)
		n=$(col "$t" "$s" 7 | median)
		e=$(col "$t" "$s" 8 | median)
		case $s in
		hit) b="h2o static"; rr="$(fmt "$(awk -v x="$r_hit" 'BEGIN {print x * 100}')" 1)%"; tg=">= 50%"; m=$(met "$r_hit" ">=" 0.5) ;;
		pk) b="pgbench -S"; rr="$(fmt "$(awk -v x="$r_pk" 'BEGIN {print x * 100}')" 1)%"; tg=">= 60%"; m=$(met "$r_pk" ">=" 0.6) ;;
		pgbench_rpc) b="proxy uncached PK (inverse)"; rr="$(fmt "$(awk -v x="$(ratio pk pgbench_rpc)" 'BEGIN {print x * 100}')" 1)%"; tg="-"; m="-" ;;
		pk_pl) b="pgbench -S"; rr="$(fmt "$(awk -v x="$r_pkpl" 'BEGIN {print x * 100}')" 1)%"; tg=">= 60%"; m=$(met "$r_pkpl" ">=" 0.6) ;;
		pgbench_rpc_pl) b="proxy PL/pgSQL PK (inverse)"; rr="$(fmt "$(awk -v x="$(ratio pk_pl pgbench_rpc_pl)" 'BEGIN {print x * 100}')" 1)%"; tg="-"; m="-" ;;
		page1 | page2) b="proxy uncached PK"; rr="$(fmt "$(awk -v x="$(ratio "$s" pk)" 'BEGIN {print x * 100}')" 1)%"; tg="-"; m="-" ;;
		*) b="-"; rr="-"; tg="-"; m="-" ;;
		esac
		echo "| $(label "$s") | $(fmt "$rps" 0) | $(fmt "$p50" 3) | $(fmt "$p99" 3) | $(fmt "$n" 0) | $(fmt "$e" 0) | $b | $rr | $tg | $m |"
	done
	echo
	echo "pgbench rows: tps, p50/p99 from the per-transaction log. \`-S\`: one"
	echo "\`SELECT abalance FROM pgbench_accounts WHERE aid = :aid\` per transaction, as postgres. \`rpc.sql\`: what the"
	echo "proxy sends for one uncached lookup (the three set_config calls and \`SELECT api.item(id => :id)::text\`"
	echo "in one pipeline, one implicit transaction), as pulse_proxy under RLS, same ids; its ratio column is"
	echo "proxy PK req/s / rpc.sql tps, i.e. how much of PostgreSQL's rate for the same SQL the HTTP layer keeps."
	echo "\`pk_pl\`/\`rpc_pl.sql\`: the same lookup as a PL/pgSQL function. PostgreSQL 15 plans the query of a"
	echo "LANGUAGE sql function (one that is not inlined) again on every call; PL/pgSQL keeps its plans per session."
	echo "Order within a round: static, hit, pk, pgbench -S, rpc.sql, pk_pl, rpc_pl.sql, page1, page2. wrk's p50/p99 are closed-loop latencies at saturation"
	echo "(coordinated omission included): the latency figures to judge are the constant-rate ones below."
	echo
	echo "## Latency at half of the maximum (h2load --rps, constant arrival rate; median of $REPEATS rounds)"
	echo
	echo "| scenario | offered req/s | served req/s | p50 ms | p99 ms | non-2xx | target p99 | met |"
	echo "|---|---:|---:|---:|---:|---:|---|---|"
	for s in hit pk page1 page2; do
		p99=$(col h2load "$s" 6 | median)
		echo "| $(label "$s") | ${HALF[$s]} | $(fmt "$(col h2load "$s" 4 | median)" 0) | $(fmt "$(col h2load "$s" 5 | median)" 3) | $(fmt "$p99" 3) | $(fmt "$(col h2load "$s" 8 | median)" 0) | < 5 ms | $(met "$p99" "<" 5) |"
	done
	echo
	echo "Offered rate = half of the scenario's median wrk req/s above, as $CONNS keep-alive connections of"
	echo "offered/$CONNS req/s each. p50/p99 from h2load's per-request log (time from the request's"
	echo "scheduled start to the end of its response)."
	echo
	echo "## CPU time per request"
	echo
	echo "Each scenario once more under wrk (${DURATION} s, $CONNS connections, $REPEATS rounds), with the CPU"
	echo "time (user + system, all threads, from \`/proc/<pid>/stat\`) each server process used during the run"
	echo "divided by the requests served: medians of the rounds, in microseconds per request. PostgreSQL:"
	echo "all processes of the cluster. The CPU a request costs moves much less with the machine's noise"
	echo "than req/s does."
	echo
	echo "| scenario | requests (median) | proxy µs | Redis µs | PostgreSQL µs | h2o µs | server total µs |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for s in static hit_local hit_redis pk_pl page2 write; do
		cm() { awk -F'\t' -v s="$s" -v c="$1" '$2 == s {printf "%s ", $c}' "$CPU" | median; }
		tot=$(awk -F'\t' -v s="$s" '$2 == s {printf "%s ", $4 + $5 + $6 + $7}' "$CPU" | median)
		echo "| $(cpu_label "$s") | $(fmt "$(cm 3)" 0) | $(fmt "$(cm 4)" 1) | $(fmt "$(cm 5)" 1) | $(fmt "$(cm 6)" 1) | $(fmt "$(cm 7)" 1) | $(fmt "$tot" 1) |"
	done
	echo
	c_static=$(awk -F'\t' '$2 == "static" {printf "%s ", $7}' "$CPU" | median)
	echo "| target | measured | met |"
	echo "|---|---:|---|"
	for s in hit_local hit_redis; do
		c=$(awk -F'\t' -v s="$s" '$2 == s {printf "%s ", $4 + $5}' "$CPU" | median)
		r=$(awk -v a="$c" -v b="$c_static" 'BEGIN {print (b > 0) ? a / b : 0}')
		echo "| $(cpu_label "$s"): proxy + Redis CPU per request <= 1.5x h2o's for the same bytes | $(fmt "$c" 1) µs = $(fmt "$r" 2)x | $(met "$r" "<" 1.5000001) |"
	done
	for s in pk_pl page2 write; do
		cp_=$(awk -F'\t' -v s="$s" '$2 == s {printf "%s ", $4}' "$CPU" | median)
		cg=$(awk -F'\t' -v s="$s" '$2 == s {printf "%s ", $6}' "$CPU" | median)
		r=$(awk -v a="$cp_" -v b="$cg" 'BEGIN {print (b > 0) ? a / b : 0}')
		echo "| $(cpu_label "$s"): proxy CPU per call <= PostgreSQL's | $(fmt "$cp_" 1) vs $(fmt "$cg" 1) µs = $(fmt "$r" 2)x | $(met "$r" "<" 1.0000001) |"
	done
	echo
	echo "## Configuration (2 cores shared by everything)"
	echo
	echo "- pulse-proxy: \`threads: $PROXY_THREADS\`, \`pool_size: $CONNS\` (PostgreSQL connections, TCP loopback,"
	echo "  role \`pulse_proxy\` under RLS), \`access_log: off\`, Redis cache on; binary \`$PROXY_BIN\` sha256 $proxy_sum…,"
	echo "  built $proxy_built UTC (git HEAD $git_rev when the report was written)."
	echo "- h2o $h2o_version: \`num-threads: $H2O_THREADS\`, \`file.dir\` serving one file with the exact bytes of"
	echo "  the cached-hit body ($hit_bytes bytes; checked with \`cmp\` before the runs). h2o adds its own"
	echo "  headers (etag, last-modified, accept-ranges); the proxy's hit carries ETag, Cache-Control,"
	echo "  Vary, X-Cache, X-Request-Id."
	echo "- redis-server $redis_version: \`--bind 127.0.0.1 --save '' --appendonly no\`."
	echo "- pgbench: \`-c $CONNS -j $WRK_THREADS\` over TCP loopback as postgres (no RLS), pgbench_accounts at scale"
	echo "  $SCALE ($accounts_rows rows, the size of benchp.items); the same database, cluster and settings as the proxy's."
	echo "- Load: $wrk_version \`-t$WRK_THREADS -c$CONNS\`; $h2load_version \`--h1 -t 1 -c $CONNS\`. Comparable"
	echo "  concurrency on both sides of each ratio: $CONNS client connections, one client thread; the proxy"
	echo "  runs $PROXY_THREADS event loop(s) with $CONNS PostgreSQL connections, pgbench's $CONNS clients have"
	echo "  $CONNS backends; h2o runs $H2O_THREADS thread(s)."
	echo "- Processes sharing the 2 cores in each run: static = wrk + h2o; hit = wrk + proxy + redis-server;"
	echo "  pk, page = wrk + proxy + up to $CONNS PostgreSQL backends; pgbench = pgbench + $CONNS backends."
	echo "- The load generators run on the same 2 cores as the servers and compete with them for CPU:"
	echo "  absolute figures are lower than on a dedicated client machine, and the ratios compare"
	echo "  configurations with the same client (one wrk thread or one pgbench thread)."
	echo "- Cache check: the hit URL answered \`X-Cache: hit\` before the runs and \`X-Cache: $xcache_after\` after;"
	echo "  Redis counted $redis_hits keyspace hits and $redis_misses misses over the whole run; the proxy's loops"
	echo "  answered $local_hits hits from their local caches (\`pulse_cache_local_hits_total\`, no Redis round trip)."
	echo
	echo "## Machine"
	echo
	echo "- CPU: ${cpu:-unknown}, $(nproc) cores visible, shared with other engineers' builds and tests"
	echo "  (load average $load_start when the script started, before it started anything; $load_before after"
	echo "  the load and the warm-up, right before the measured runs; $load_after after them: during the runs"
	echo "  the benchmark's own processes, 3 to 10 runnable at once, make most of it)"
	echo "- Memory: $mem; kernel $kernel"
	echo "- $pg_version; cluster from scripts/cluster.sh, shared_buffers ${PULSE_SHARED_BUFFERS:-512MB}"
	echo "  (everything prewarmed), fsync off (read-only benchmark)"
	echo
	echo "## Dataset and endpoints"
	echo
	echo "\`bench/proxy/dataset.sql\`, deterministic (generate_series): $ROWS rows of"
	echo "\`benchp.items(id bigint primary key, tenant_id int, created_at timestamptz, kind text, amount numeric(12,2), note text)\`"
	echo "($items_size), tenant = 1 + id % $TENANTS, btree on (tenant_id, created_at DESC, id DESC), RLS on"
	echo "\`pulse.tenant\`. Load (with \`pgbench -i -s $SCALE\`): ${load_secs} s. Every request carries one HS256 JWT of tenant 1."
	echo
	echo "| scenario | URL | endpoint |"
	echo "|---|---|---|"
	echo "| cached hit | \`/rpc/item_cached?id=$HIT_ID\` (same URL every time, \`X-Cache: hit\`) | \`api.item_cached(bigint)\`, read, ttl 60 s |"
	echo "| uncached PK lookup | \`/rpc/item?id=<random multiple of $TENANTS>\` (wrk: \`bench/proxy/random_id.lua\`; h2load: 20,000 random URLs, \`-i\`) | \`api.item(bigint)\`, LANGUAGE sql, read, no ttl |"
	echo "| uncached PK lookup, PL/pgSQL | \`/rpc/item_pl?id=<random multiple of $TENANTS>\` (wrk only) | \`api.item_pl(bigint)\`, LANGUAGE plpgsql, read, no ttl |"
	echo "| cursor page 1 | \`/rpc/items_page?page_size=20\` ($page1_bytes B) | \`api.items_page(text,int)\`, search, no ttl, \`pulse.page\` |"
	echo "| cursor next page | page 1's \`Link: rel=\"next\"\` URL (\`&cursor=...\`, $page2_bytes B, 20 rows) | the same |"
	echo
	echo "## Commands (first round; the token is elided)"
	echo
	echo "Order of each round: static, hit, pk, pgbench -S, pgbench rpc.sql, pk_pl, pgbench rpc_pl.sql, page1, page2 (each ratio's two sides a few"
	echo "seconds apart); one unmeasured 3 s warm-up round first; then the h2load rounds."
	echo
	echo '```'
	cat "$COMMANDS"
	echo '```'
	echo
	echo "## Every run"
	echo
	echo "| round | tool | scenario | req/s | p50 ms | p99 ms | requests | errors | offered |"
	echo "|---:|---|---|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$RESULTS"
} >"$OUT"
log "report written to $OUT"
