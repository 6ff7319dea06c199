#!/usr/bin/env bash
# pulse-proxy's protections under load (issue 5's bench items).  See
# bench/protect/README.md.
#
#  1. Overhead of rate limiting + tracing (+ the always-on metrics) on the
#     cached-hit path: three proxies from one binary, `off` (no ratelimit_*,
#     no otlp_endpoint), `on` (three never-limiting Redis buckets per request,
#     OTLP export at the default 1% sampling), `on-full` (the same, every
#     request traced); REPEATS interleaved rounds of wrk, one proxy loaded at
#     a time; then one more `on` run under `perf record` for the share of the
#     proxy's CPU spent in pulse_metrics_* (and, for context, rate limits,
#     tracing, JWT/crypto, h2o, kernel).
#  2. Spike: uncached PK lookups (read class, SLO p99 200 ms) through one
#     proxy with default queue budgets; capacity C from a closed-loop wrk run,
#     then h2load at a constant arrival rate: 0.4 C (steady), 2 C (spike,
#     5x), 0.4 C (recovery), back to back; per-phase 200s/503s and latency
#     from h2load's per-request log, pulse_shed_total from /metrics.
#
# Everything listens on 127.0.0.1, on free ports from PORT up, and is stopped
# on exit (trap), with the scratch directory.
#
# Parameters (environment):
#   ROWS          rows in benchp.items                          (1000000)
#   TENANTS       tenants (1 + id % TENANTS)                     (4)
#   DURATION      seconds per overhead run (wrk)                 (10)
#   REPEATS       overhead rounds; medians taken                 (3)
#   CONNS         wrk connections of the overhead runs           (8)
#   CAP_SECONDS   seconds of the capacity run (wrk -c CAP_CONNS) (10)
#   CAP_CONNS     connections of the capacity run                (16)
#   STEADY_SECONDS, SPIKE_SECONDS, RECOVERY_SECONDS   phases     (20, 30, 20)
#   STEADY_SHARE  steady rate as a share of C                    (0.4)
#   SPIKE_FACTOR  spike rate / steady rate                       (5)
#   SPIKE_CONNS   h2load connections of the three phases (HTTP/2 cleartext,
#                 prior knowledge; --rps is per connection)       (100)
#   SPIKE_STREAMS h2load -m: concurrent requests per connection  (64)
#   CLOSED_CONNS  then one more spike phase over HTTP/1.1 (--h1, one request
#                 in flight per connection) with this many connections,
#                 as the issue sketched it; 0 skips it            (100)
#   SPIKE_THREADS proxy `threads` of the spike proxy             (1)
#   SPIKE_POOL    proxy `pool_size` of the spike proxy           (4)
#   PERF          1: the perf record run (0 skips it)            (1)
#   PROXY_BIN     proxy binary (copied at start)                 (build/pulse-proxy)
#   PORT          first TCP port to try                          (27000)
#   WORK          scratch directory (removed on exit)            (/tmp/pulse-bench-protect.PID)
#   OUT           report             (bench/results/<UTC date>-protect.md; PNG next to it)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. bench/proxy/cluster.sh

ROWS=${ROWS:-1000000}
TENANTS=${TENANTS:-4}
DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
CONNS=${CONNS:-8}
CAP_SECONDS=${CAP_SECONDS:-10}
CAP_CONNS=${CAP_CONNS:-16}
STEADY_SECONDS=${STEADY_SECONDS:-20}
SPIKE_SECONDS=${SPIKE_SECONDS:-30}
RECOVERY_SECONDS=${RECOVERY_SECONDS:-20}
STEADY_SHARE=${STEADY_SHARE:-0.4}
SPIKE_FACTOR=${SPIKE_FACTOR:-5}
SPIKE_CONNS=${SPIKE_CONNS:-100}
SPIKE_STREAMS=${SPIKE_STREAMS:-64}
CLOSED_CONNS=${CLOSED_CONNS:-100}
SPIKE_THREADS=${SPIKE_THREADS:-1}
SPIKE_POOL=${SPIKE_POOL:-4}
PERF=${PERF:-1}
PROXY_BIN=${PROXY_BIN:-build/pulse-proxy}
WORK=${WORK:-/tmp/pulse-bench-protect.$$}
OUT=${OUT:-bench/results/$(date -u +%F)-protect.md}
PNG=${OUT%.md}-spike.png
DB=pulse_bench
CMD="ROWS=$ROWS TENANTS=$TENANTS DURATION=$DURATION REPEATS=$REPEATS CONNS=$CONNS CAP_SECONDS=$CAP_SECONDS CAP_CONNS=$CAP_CONNS STEADY_SECONDS=$STEADY_SECONDS SPIKE_SECONDS=$SPIKE_SECONDS RECOVERY_SECONDS=$RECOVERY_SECONDS STEADY_SHARE=$STEADY_SHARE SPIKE_FACTOR=$SPIKE_FACTOR SPIKE_CONNS=$SPIKE_CONNS SPIKE_STREAMS=$SPIKE_STREAMS CLOSED_CONNS=$CLOSED_CONNS SPIKE_THREADS=$SPIKE_THREADS SPIKE_POOL=$SPIKE_POOL bench/protect/run.sh"

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
script_start=$(date -u +'%F %T')
log() { printf '%s bench-protect: %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }

for tool in wrk h2load redis-server redis-cli curl python3; do
	command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh installs it)"
done
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null; then
	log "perf not found: skipping the profile"
	PERF=0
fi
[ -x "$PROXY_BIN" ] || die "no proxy binary at $PROXY_BIN (make proxy)"

PIDS=()
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/logs" "$WORK/pgroot"
chmod 755 "$WORK" "$WORK/pgroot"
LOGS=$WORK/logs
cp "$PROXY_BIN" "$WORK/pulse-proxy"
proxy_sum=$(sha256sum "$WORK/pulse-proxy" | cut -c1-12)
proxy_built=$(date -u -r "$PROXY_BIN" +'%F %T')
CLK_TCK=$(getconf CLK_TCK)

PGPORT=$(free_port "${PORT:-27000}")
REDIS_PORT=$(free_port $((PGPORT + 1)))
OTLP_PORT=$(free_port $((REDIS_PORT + 1)))
declare -A PPORT PPID_OF
PPORT[off]=$(free_port $((OTLP_PORT + 1)))
PPORT[rl]=$(free_port $((${PPORT[off]} + 1)))
PPORT[trace]=$(free_port $((${PPORT[rl]} + 1)))
PPORT[on]=$(free_port $((${PPORT[trace]} + 1)))
PPORT[on-full]=$(free_port $((${PPORT[on]} + 1)))
PPORT[spike]=$(free_port $((${PPORT[on-full]} + 1)))

# --- PostgreSQL ---------------------------------------------------------------------
start_bench_cluster
load_secs=$(($(date +%s) - t0))
psql -d "$DB" -At -c "SELECT pg_prewarm(c) FROM unnest(ARRAY['benchp.items', 'benchp.items_pkey']::regclass[]) c" >/dev/null
items_size=$(psql -d "$DB" -Atc "SELECT pg_size_pretty(pg_table_size('benchp.items'))")
log "loaded in ${load_secs}s: benchp.items $items_size"

# --- Redis, OTLP receiver, proxies -----------------------------------------------------
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$LOGS/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_for 10 redis-cli -p "$REDIS_PORT" ping || die "redis-server did not start"

SPANS=$WORK/spans.jsonl
python3 proxy/test/otlp_receiver.py "$OTLP_PORT" "$SPANS" 2>"$LOGS/otlp.err" &
OTLP_PID=$!
PIDS+=("$OTLP_PID")
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$OTLP_PORT" || die "otlp_receiver.py did not start"

SECRET=bench-secret-$$
RL_POLICY="tenant=1000000/1000000,ip=1000000/1000000,global=1000000/1000000"
# proxy_conf NAME: the configuration file of one proxy
proxy_conf() {
	local name=$1 threads=1 pool=4
	[ "$name" != spike ] || { threads=$SPIKE_THREADS; pool=$SPIKE_POOL; }
	cat <<CONF
# pulse-proxy configuration "$name" of bench/protect/run.sh
listen: 127.0.0.1:${PPORT[$name]}
pg_url: host=127.0.0.1 port=$PGPORT dbname=$DB user=pulse_proxy
threads: $threads
pool_size: $pool
access_log: "off"
redis_url: redis://127.0.0.1:$REDIS_PORT
CONF
	case $name in rl | on | on-full) echo "ratelimit_read: \"$RL_POLICY\"" ;; esac
	case $name in trace | on | on-full) echo "otlp_endpoint: http://127.0.0.1:$OTLP_PORT/v1/traces" ;; esac
	case $name in trace | on) echo "trace_sample_ppm: 10000" ;; on-full) echo "trace_sample_ppm: 1000000" ;; esac
}
start_proxy() {
	local name=$1
	proxy_conf "$name" >"$WORK/proxy-$name.yaml"
	PULSE_JWT_SECRET=$SECRET "$WORK/pulse-proxy" --config "$WORK/proxy-$name.yaml" 2>"$LOGS/proxy-$name.err" &
	PPID_OF[$name]=$!
	PIDS+=("$!")
	wait_for 15 curl -sf "http://127.0.0.1:${PPORT[$name]}/ready" || { cat "$LOGS/proxy-$name.err" >&2; die "proxy $name not ready"; }
}
stop_proxy() {
	local p=${PPID_OF[$1]}
	kill -TERM "$p" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}
CONFIGS=(off rl trace on on-full)
for c in "${CONFIGS[@]}"; do start_proxy "$c"; done
log "ports: PostgreSQL $PGPORT, Redis $REDIS_PORT, OTLP $OTLP_PORT, proxies $(for c in "${CONFIGS[@]}"; do printf '%s %s ' "$c" "${PPORT[$c]}"; done)"

TOKEN=$(python3 proxy/test/token.py "$SECRET" "{\"tenant\": 1, \"exp\": $(($(date +%s) + 7200))}")
AUTH="Authorization: Bearer $TOKEN"
HIT_ID=$((TENANTS * 1000)) # a row of tenant 1
HIT_PATH="/rpc/item_cached?id=$HIT_ID"
PK_PATH="/rpc/item?id="
url() { echo "http://127.0.0.1:${PPORT[$1]}$2"; }

# --- checks before the runs -------------------------------------------------------------
for c in "${CONFIGS[@]}"; do
	curl -sf -o /dev/null -H "$AUTH" "$(url "$c" "$HIT_PATH")" || die "GET $HIT_PATH on $c failed"
	curl -sf -D "$LOGS/hit-$c.headers" -o "$LOGS/hit-$c.body" -H "$AUTH" "$(url "$c" "$HIT_PATH")" || die "GET $HIT_PATH on $c failed"
	grep -qi '^x-cache: hit' "$LOGS/hit-$c.headers" || { cat "$LOGS/hit-$c.headers" >&2; die "$c: second GET is not X-Cache: hit"; }
done
for c in off trace; do grep -qi '^ratelimit:' "$LOGS/hit-$c.headers" && die "$c answers RateLimit"; done
for c in rl on on-full; do
	grep -qi '^ratelimit:' "$LOGS/hit-$c.headers" || { cat "$LOGS/hit-$c.headers" >&2; die "$c: no RateLimit header"; }
done
rl_header=$(sed -n 's/^[Rr]ate[Ll]imit: *//p' "$LOGS/hit-on.headers" | tr -d '\r')
rl_policy_header=$(sed -n 's/^[Rr]ate[Ll]imit-[Pp]olicy: *//p' "$LOGS/hit-on.headers" | tr -d '\r')
# a sampled caller trace through `on`: its spans must reach the receiver
TRACE_ID=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
curl -sf -o /dev/null -H "$AUTH" -H "traceparent: 00-$TRACE_ID-00f067aa0ba902b7-01" "$(url on "$HIT_PATH")" || die "traced GET failed"
wait_for 10 grep -q "$TRACE_ID" "$SPANS" || die "the OTLP receiver got no span of trace $TRACE_ID"
trace_spans=$(grep -c "$TRACE_ID" "$SPANS")
trace_span_names=$(grep "$TRACE_ID" "$SPANS" | python3 -c 'import json,sys; print(", ".join(sorted(json.loads(l)["name"] for l in sys.stdin)))')
log "checks: X-Cache hit on all five; RateLimit '$rl_header' on rl/on/on-full; $trace_spans spans of a sampled trace received ($trace_span_names)"

# --- helpers ----------------------------------------------------------------------------
COMMANDS=$WORK/commands.txt
: >"$COMMANDS"
note_cmd() { printf '%s\n' "$1" | sed "s|Bearer [A-Za-z0-9._-]*|Bearer <HS256 JWT, tenant 1>|g" >>"$COMMANDS"; }
to_ms() { awk -v v="$1" 'BEGIN {
	if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
	else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
	else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
	else { sub(/s$/, "", v); printf "%.3f", v * 1000 } }'; }
# cpu_ticks PID: user + system clock ticks of the whole process so far
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
fmt() { awk -v x="$1" -v p="$2" 'BEGIN {printf "%.*f", p, x}'; }
spans_now() { wc -l <"$SPANS"; }

OVER=$LOGS/overhead.tsv # round config rps p50 p99 requests non2xx proxy_cpu_s redis_cpu_s otlp_cpu_s spans
: >"$OVER"
# run_hit ROUND CONFIG SECS: wrk against one proxy's cached hit
run_hit() {
	local round=$1 c=$2 secs=$3 out pp=${PPID_OF[$2]} a0 a1 r0 r1 o0 o1 s0 s1 rps p50 p99 n err
	out=$LOGS/wrk-$c-r$round.out
	[ "$round" != 1 ] || note_cmd "wrk -t1 -c$CONNS -d${secs}s --latency -H '$AUTH' $(url "$c" "$HIT_PATH")"
	a0=$(cpu_ticks "$pp"); r0=$(cpu_ticks "$REDIS_PID"); o0=$(cpu_ticks "$OTLP_PID"); s0=$(spans_now)
	timeout $((secs + 20)) wrk -t1 -c"$CONNS" -d"${secs}s" --latency -H "$AUTH" "$(url "$c" "$HIT_PATH")" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "wrk failed for $c"; }
	a1=$(cpu_ticks "$pp"); r1=$(cpu_ticks "$REDIS_PID"); o1=$(cpu_ticks "$OTLP_PID"); s1=$(spans_now)
	[ "$round" != 0 ] || return 0
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
	p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
	p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
	n=$(awk '/requests in/ {print $1}' "$out")
	err=$(awk '/^ *Non-2xx/ {s += $NF} /Socket errors/ {gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) s += $i} END {print s + 0}' "$out")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$c" "$rps" "$p50" "$p99" "$n" "$err" \
		"$(awk -v a="$a0" -v b="$a1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')" \
		"$(awk -v a="$r0" -v b="$r1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')" \
		"$(awk -v a="$o0" -v b="$o1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')" \
		"$((s1 - s0))" >>"$OVER"
	log "round $round $c: $rps req/s, p50 $p50 ms, p99 $p99 ms, non-2xx/errors $err"
}
ocol() { awk -F'\t' -v c="$1" -v k="$2" '$1 != "perf" && $2 == c {printf "%s ", $k}' "$OVER"; }
# per-round ratio of req/s of config A over config B, then the median
oratios() { awk -F'\t' -v a="$1" -v b="$2" '$1 == "perf" {next} $2 == a {x[$1] = $3} $2 == b {y[$1] = $3} END {for (r in x) if (y[r] > 0) printf "%.4f ", x[r] / y[r]}' "$OVER"; }
# proxy CPU microseconds per request, per run
cpu_per_req() { awk -F'\t' -v c="$1" -v k="$2" '$1 != "perf" && $2 == c && $6 > 0 {printf "%.2f ", $k * 1e6 / $6}' "$OVER"; }

# --- 1. overhead ------------------------------------------------------------------------
log "overhead: warm-up (3 s each, not measured)"
for c in "${CONFIGS[@]}"; do run_hit 0 "$c" 3; done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bench_start=$(date -u +'%F %T')
for round in $(seq 1 "$REPEATS"); do
	# rotate the order so no configuration always runs first or last
	for i in 0 1 2 3 4; do run_hit "$round" "${CONFIGS[$(((round - 1 + i) % 5))]}" "$DURATION"; done
done

metrics() { curl -sf "http://127.0.0.1:${PPORT[$1]}/metrics"; }
metrics on >"$LOGS/metrics-on.txt"
metrics on-full >"$LOGS/metrics-on-full.txt"
limited=$(cat "$LOGS/metrics-on.txt" "$LOGS/metrics-on-full.txt" | awk '/^pulse_ratelimit_requests_total\{/ && /result="limited/ {s += $NF} END {print s + 0}')
rl_allowed=$(cat "$LOGS/metrics-on.txt" "$LOGS/metrics-on-full.txt" | awk '/^pulse_ratelimit_requests_total\{/ && /result="allowed"/ {s += $NF} END {print s + 0}')
rl_redis=$(cat "$LOGS/metrics-on.txt" "$LOGS/metrics-on-full.txt" | awk '/^pulse_ratelimit_decisions_total\{/ && /source="redis"/ {s += $NF} END {print s + 0}')
rl_local=$(cat "$LOGS/metrics-on.txt" "$LOGS/metrics-on-full.txt" | awk '/^pulse_ratelimit_decisions_total\{/ && /source="local"/ {s += $NF} END {print s + 0}')
span_stats() { awk '/^pulse_trace_spans_total\{/ {match($0, /result="[a-z]+"/); printf "%s %s, ", substr($0, RSTART + 8, RLENGTH - 9), $NF}' "$1" | sed 's/, $//'; }
spans_on=$(span_stats "$LOGS/metrics-on.txt")
spans_full=$(span_stats "$LOGS/metrics-on-full.txt")
non2xx_total=$(awk -F'\t' '{s += $7} END {print s + 0}' "$OVER")
log "after the runs: non-2xx/errors $non2xx_total, rate-limited $limited, allowed $rl_allowed; spans on: $spans_on; on-full: $spans_full"

# perf: one more run of `off` and of `on` under perf record
perf_note="(skipped: PERF=0 or no perf)"
PERF_CMD="perf record -g -p <proxy pid> -o perf.data -- sleep $DURATION"
# source file of each function of the proxy binary (debug info)
nm -l --defined-only "$WORK/pulse-proxy" 2>/dev/null | awk 'NF >= 4 && $2 ~ /^[tTwW]$/ {f = $4; sub(/:[0-9]+$/, "", f); sub(/.*\//, "", f); print $3 "\t" f}' >"$LOGS/symfiles.tsv" || true
perf_run() {
	local c=$1 perf_pid
	log "perf record of the $c proxy during one more ${DURATION} s run"
	timeout $((DURATION + 30)) perf record -g -p "${PPID_OF[$c]}" -o "$WORK/perf-$c.data" -- sleep "$DURATION" >"$LOGS/perf-record-$c.out" 2>&1 &
	perf_pid=$!
	sleep 0.3
	run_hit perf "$c" "$DURATION"
	wait "$perf_pid" || die "perf record failed: $(cat "$LOGS/perf-record-$c.out")"
	perf report -i "$WORK/perf-$c.data" --no-children --sort dso,sym --stdio -g none --percent-limit 0 --field-separator=$'\t' \
		>"$LOGS/perf-report-$c.txt" 2>"$LOGS/perf-report-$c.err" || die "perf report failed: $(cat "$LOGS/perf-report-$c.err")"
	awk -F'\t' '
		FNR == NR { file[$1] = $2; next }
		/^#/ || NF < 3 { next }
		{
			pct = $1; sub(/%/, "", pct); pct += 0
			dso = $2; gsub(/ +$/, "", dso); sym = $3; sub(/^\[.\] /, "", sym); gsub(/ +$/, "", sym)
			base = sym; sub(/\.(part|isra|constprop|cold)\..*$/, "", base)
			f = file[base]
			if (sym ~ /^pulse_metrics_/) c = "pulse_metrics_* functions"
			else if (f == "metrics.c") c = "other functions of metrics.c"
			else if (sym ~ /^pulse_ratelimit_/ || f == "ratelimit.c") c = "rate limits (ratelimit.c)"
			else if (sym ~ /^pulse_(trace|span|tracer)_/ || f == "trace.c") c = "tracing (trace.c, incl. its exporter thread)"
			else if (dso ~ /libjwt|libcrypto|libjansson|libb64/) c = "libjwt + libjansson + libcrypto (JWT HS256, SHA-256 cache key)"
			else if (dso ~ /libcurl|libssl|libnghttp2|libz\./) c = "libcurl + zlib (OTLP export thread)"
			else if (dso ~ /libh2o/) c = "h2o (libh2o-evloop)"
			else if (dso ~ /libhiredis/) c = "hiredis"
			else if (dso ~ /kernel/) c = "kernel"
			else if (dso ~ /libc\.so|ld-linux/) c = "libc"
			else if (dso ~ /pulse-proxy/) c = "other proxy code"
			else c = "other (vdso, ...)"
			share[c] += pct
		}
		END { for (c in share) printf "%s\t%.2f\n", c, share[c] }' "$LOGS/symfiles.tsv" "$LOGS/perf-report-$c.txt" | sort -t$'\t' -k2,2gr >"$LOGS/perf-$c.tsv"
	awk -F'\t' '/^#/ || NF < 3 {next} {p = $1; gsub(/ /, "", p); d = $2; gsub(/ +$/, "", d); s = $3; gsub(/ +$/, "", s); if (++n <= 20) printf "%s\t%s\t%s\n", p, d, s}' "$LOGS/perf-report-$c.txt" >"$LOGS/perf-top-$c.tsv"
	awk -F'\t' '/^#/ || NF < 3 {next} $3 ~ /pulse_metrics_/ {p = $1; gsub(/ /, "", p); d = $3; gsub(/ +$/, "", d); sub(/^\[.\] /, "", d); printf "`%s` %s, ", d, p}' "$LOGS/perf-report-$c.txt" | sed 's/, $//' >"$LOGS/perf-metrics-funcs-$c.txt"
	awk '/^# Samples: / && !n++ {print $3}' "$LOGS/perf-report-$c.txt" >"$LOGS/perf-samples-$c.txt"
	log "perf $c: $(cat "$LOGS/perf-samples-$c.txt") samples; pulse_metrics_*: $(awk -F'\t' '$1 == "pulse_metrics_* functions" {print $2}' "$LOGS/perf-$c.tsv")%"
}
if [ "$PERF" = 1 ]; then
	perf_run off
	perf_run on
	metrics_share=$(awk -F'\t' '$1 == "pulse_metrics_* functions" {print $2}' "$LOGS/perf-on.tsv")
	metrics_share_off=$(awk -F'\t' '$1 == "pulse_metrics_* functions" {print $2}' "$LOGS/perf-off.tsv")
	metrics_share=${metrics_share:-0}
	metrics_share_off=${metrics_share_off:-0}
fi
for c in "${CONFIGS[@]}"; do stop_proxy "$c"; done

# --- 2. spike ---------------------------------------------------------------------------
start_proxy spike
SBASE=$(url spike "")
curl -sf -o "$LOGS/pk.body" -H "$AUTH" "$SBASE$PK_PATH$((TENANTS * 7))" || die "GET $PK_PATH failed"
grep -q '"id"' "$LOGS/pk.body" || die "pk lookup returned no row: $(cat "$LOGS/pk.body")"
awk -v n=20000 -v t="$TENANTS" -v r="$ROWS" -v b="$SBASE$PK_PATH" \
	'BEGIN {srand(20261125); for (i = 0; i < n; i++) print b (1 + int(rand() * int(r / t))) * t}' >"$WORK/pk.urls"

log "spike: warm-up 3 s, then capacity (wrk -c $CAP_CONNS, ${CAP_SECONDS} s)"
timeout 30 wrk -t1 -c"$CAP_CONNS" -d3s -H "$AUTH" -s bench/proxy/random_id.lua "$SBASE" -- "$PK_PATH" "$TENANTS" "$ROWS" >"$LOGS/wrk-cap-warm.out" 2>&1 || die "wrk warm-up failed"
note_cmd "wrk -t1 -c$CAP_CONNS -d${CAP_SECONDS}s --latency -H '$AUTH' -s bench/proxy/random_id.lua $SBASE -- $PK_PATH $TENANTS $ROWS"
timeout $((CAP_SECONDS + 20)) wrk -t1 -c"$CAP_CONNS" -d"${CAP_SECONDS}s" --latency -H "$AUTH" -s bench/proxy/random_id.lua "$SBASE" -- "$PK_PATH" "$TENANTS" "$ROWS" >"$LOGS/wrk-cap.out" 2>&1 ||
	{ cat "$LOGS/wrk-cap.out" >&2; die "wrk failed for the capacity run"; }
CAP=$(awk '/^Requests\/sec:/ {printf "%d", $2}' "$LOGS/wrk-cap.out")
cap_p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$LOGS/wrk-cap.out")")
cap_p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$LOGS/wrk-cap.out")")
cap_err=$(awk '/^ *Non-2xx/ {s += $NF} /Socket errors/ {gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) s += $i} END {print s + 0}' "$LOGS/wrk-cap.out")
[ "$CAP" -gt 0 ] || die "capacity run served nothing"
STEADY_RATE=$(awk -v c="$CAP" -v s="$STEADY_SHARE" 'BEGIN {printf "%d", c * s}')
SPIKE_RATE=$((STEADY_RATE * SPIKE_FACTOR))
log "capacity C = $CAP req/s (p50 $cap_p50 ms, p99 $cap_p99 ms, non-2xx/errors $cap_err); steady $STEADY_RATE req/s, spike $SPIKE_RATE req/s"

SPIKE=$LOGS/spike.tsv # phase offered secs start_us end_us
: >"$SPIKE"
metrics spike >"$LOGS/metrics-spike-0.txt"
phase_n=0
# run_phase NAME RATE SECS [h1 CONNS]: h2load at RATE req/s in all; HTTP/2, SPIKE_CONNS
# connections of up to SPIKE_STREAMS requests each; or HTTP/1.1 with CONNS connections
run_phase() {
	local name=$1 rate=$2 secs=$3 proto=(-m "$SPIKE_STREAMS") conns=$SPIKE_CONNS per t0 t1 label
	label="$SPIKE_CONNS h2 (-m $SPIKE_STREAMS)"
	[ "${4:-}" != h1 ] || { proto=(--h1); conns=$5; label="$5 h1"; }
	per=$(awk -v r="$rate" -v c="$conns" 'BEGIN {printf "%.3f", r / c}')
	note_cmd "h2load ${proto[*]} -t 1 -c $conns --rps $per -D $secs --log-file=<log> -H '$AUTH' -i pk.urls   # $name: $rate req/s"
	t0=$(date +%s%6N)
	timeout $((secs + 60)) h2load "${proto[@]}" -t 1 -c "$conns" --rps "$per" -D "$secs" --log-file="$LOGS/h2load-$name.log" \
		-H "$AUTH" -i "$WORK/pk.urls" >"$LOGS/h2load-$name.out" 2>&1 || { cat "$LOGS/h2load-$name.out" >&2; die "h2load failed for $name"; }
	t1=$(date +%s%6N)
	phase_n=$((phase_n + 1))
	metrics spike >"$LOGS/metrics-spike-$phase_n.txt"
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rate" "$secs" "$t0" "$t1" "$label" >>"$SPIKE"
	log "$name: $(awk -F'\t' '{n++; if ($2 == 200) ok++; else if ($2 == 503) sh++} END {printf "%d requests, %d 200, %d 503", n, ok, sh}' "$LOGS/h2load-$name.log")"
}
spike_start=$(date -u +'%F %T')
run_phase steady "$STEADY_RATE" "$STEADY_SECONDS"
run_phase spike "$SPIKE_RATE" "$SPIKE_SECONDS"
run_phase recovery "$STEADY_RATE" "$RECOVERY_SECONDS"
if [ "$CLOSED_CONNS" != 0 ]; then
	sleep 2
	run_phase "spike-h1-c$CLOSED_CONNS" "$SPIKE_RATE" "$SPIKE_SECONDS" h1 "$CLOSED_CONNS"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
bench_end=$(date -u +'%F %T')

# per phase: offered sent served_rps n200 n503 nother p50 p95 p99 (200s) p99_all p99_503
PHASES=$LOGS/phases.tsv
SERIES=$WORK/series.tsv
# per phase: name offered sent_rps served_rps n200 n503 nother p50 p95 p99 (200s) p99_all p50_503 p99_503;
# per second since the first request: s n200 n503 p50_200 p99_200 p99_503
python3 - "$SPIKE" "$LOGS" "$PHASES" "$SERIES" <<'PY'
import math, sys
spike, logs, phases_out, series_out = sys.argv[1:5]
def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[max(1, math.ceil(len(v) * p)) - 1] / 1000.0
f = lambda x: "-" if x is None else "%.1f" % x
rows, allreq = [], []
for line in open(spike):
    name, rate, secs, t0, t1, conns = line.rstrip("\n").split("\t")
    reqs = []
    for l in open(f"{logs}/h2load-{name}.log"):
        c = l.split("\t")
        if len(c) >= 3:
            reqs.append((int(c[0]), int(c[1]), int(c[2])))
    if not name.startswith("spike-h1"):
        allreq += reqs
    ok = [d for _, s, d in reqs if s == 200]
    sh = [d for _, s, d in reqs if s == 503]
    other = len(reqs) - len(ok) - len(sh)
    secs = float(secs)
    per = {}
    if reqs:
        first = min(r[0] for r in reqs)
        for t, st, d in reqs:
            if st == 200:
                per.setdefault(int((t - first) // 1000000), []).append(d)
    p99s = [pct(v, .99) for v in per.values() if len(v) >= 100]
    worst = "%.1f" % max(p99s) if p99s else "-"
    over = str(sum(1 for x in p99s if x > 200.0))
    rows.append("\t".join([name + "\t" + conns, rate, "%.0f" % (len(reqs) / secs), "%.0f" % (len(ok) / secs), str(len(ok)), str(len(sh)), str(other),
                           f(pct(ok, .5)), f(pct(ok, .95)), f(pct(ok, .99)), f(pct([d for *_, d in reqs], .99)), f(pct(sh, .5)), f(pct(sh, .99)), worst, over, str(len(p99s))]))
open(phases_out, "w").write("\n".join(rows) + "\n")
t0 = min(r[0] for r in allreq)
sec = {}
for t, s, d in allreq:
    sec.setdefault(int((t - t0) // 1000000), []).append((s, d))
out = []
for k in range(max(sec) + 1):
    v = sec.get(k, [])
    ok = [d for s, d in v if s == 200]
    sh = [d for s, d in v if s == 503]
    g = lambda x: "NaN" if x is None else "%.2f" % x
    out.append("\t".join([str(k), str(len(ok)), str(len(sh)), g(pct(ok, .5)), g(pct(ok, .99)), g(pct(sh, .99))]))
open(series_out, "w").write("\n".join(out) + "\n")
PY
pcol() { awk -F'\t' -v p="$1" -v k="$2" '$1 == p {print $k}' "$PHASES"; }

# proxy counters per phase (deltas of the /metrics scrapes)
COUNTERS=$LOGS/counters.tsv
for i in $(seq 1 "$phase_n"); do
	awk -v ph="$i" '
		/^#/ {next}
		FNR == NR { if ($0 ~ /^pulse_(shed_total|pool_rejected_total|slo_breaches_total|http_requests_total|pool_waits_total)/) b[$1] = $2; next }
		$0 ~ /^pulse_(shed_total|pool_rejected_total|slo_breaches_total|http_requests_total|pool_waits_total)/ { d = $2 - b[$1]; if (d != 0) printf "%s\t%s\t%d\n", $1, ph, d }' \
		"$LOGS/metrics-spike-$((i - 1)).txt" "$LOGS/metrics-spike-$i.txt"
done >"$COUNTERS"

spike_from=$(awk -F'\t' 'NR == 1 {a = $4} $1 == "spike" {printf "%.1f", ($4 - a) / 1e6}' "$SPIKE")
spike_to=$(awk -F'\t' 'NR == 1 {a = $4} $1 == "spike" {printf "%.1f", ($5 - a) / 1e6}' "$SPIKE")
png_note=""
if command -v gnuplot >/dev/null; then
	mkdir -p "$(dirname "$PNG")"
	if gnuplot >"$LOGS/gnuplot.out" 2>&1 <<GP; then
set terminal pngcairo size 1100,600 font ",10"
set output "$PNG"
set title "pulse-proxy spike: uncached PK lookups, $STEADY_RATE -> $SPIKE_RATE -> $STEADY_RATE req/s offered (C = $CAP req/s)"
set xlabel "seconds since the start of the steady phase"
set ylabel "latency, ms (per second)"
set y2label "responses per second"
set ytics nomirror
set y2tics
set key top left
set grid
set object 1 rect from $spike_from, graph 0 to $spike_to, graph 1 fc rgb "#f4e0e0" fs solid 0.5 noborder behind
set yrange [0:*]
set y2range [0:*]
set datafile missing "NaN"
plot 200 with lines dt 2 lc rgb "red" title "read SLO p99 (200 ms)", \
     "$SERIES" using (\$1 + 0.5):5 with linespoints pt 7 ps 0.5 lw 2 title "p99 of 200s", \
     "$SERIES" using (\$1 + 0.5):4 with lines lw 2 title "p50 of 200s", \
     "$SERIES" using (\$1 + 0.5):6 with linespoints pt 1 ps 0.5 title "p99 of 503s", \
     "$SERIES" using (\$1 + 0.5):2 axes x1y2 with lines lc rgb "#2a8a2a" dt 3 title "200/s (right)", \
     "$SERIES" using (\$1 + 0.5):3 axes x1y2 with lines lc rgb "#cc3300" dt 3 title "503/s (right)"
GP
		png_note="![latency over time]($(basename "$PNG"))"
	else
		log "gnuplot failed: $(cat "$LOGS/gnuplot.out")"
	fi
fi

# --- report ------------------------------------------------------------------------------
pg_version=$(psql -d "$DB" -Atc "SELECT version()")
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
cpu=$({ lscpu 2>/dev/null || true; } | sed -n 's/^Model name: *//p' | sed -n 1p)
kernel=$(uname -r)
wrk_version=$({ wrk -v 2>&1 || true; } | sed -n 1p | cut -d' ' -f1-2)
h2load_version=$({ h2load --version 2>&1 || true; } | sed -n 1p)
redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
perf_version=$({ perf --version 2>/dev/null || true; } | sed -n 1p)
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
met() { awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN {if (x == "-") {print "-"; exit} ok = (op == ">=") ? (x >= t) : (x < t); print ok ? "yes" : "**no**"}'; }
pctf() { awk -v x="$1" 'BEGIN {printf "%.1f%%", x * 100}'; }

r_on=$(oratios on off | median)
r_full=$(oratios on-full off | median)
steady_p99=$(pcol steady 11)
spike_p99=$(pcol spike 11)
rec_p99=$(pcol recovery 11)
spike_503=$(pcol spike 7)
shed_sum() { awk -F'\t' -v ph="$1" -v r="$2" '$2 == ph && $1 ~ /^pulse_shed_total/ && $1 ~ "reason=\"" r "\"" {s += $3} END {print s + 0}' "$COUNTERS"; }

# --- the conclusion, from the figures -----------------------------------------------------
r_rl=$(oratios rl off | median)
r_trace=$(oratios trace off | median)
cpu() { fmt "$(cpu_per_req "$1" "$2" | median)" 1; }
pgroup() { awk -F'\t' -v g="$2" -v cfg="$1" -v o="$OVER" 'BEGIN {while ((getline l < o) > 0) {split(l, f, "\t"); if (f[1] == "perf" && f[2] == cfg) c = f[8] * 1e6 / f[6]}} $1 == g {printf "%.1f", $2 * c / 100; found = 1} END {if (!found) printf "0"}' "$LOGS/perf-$1.tsv" 2>/dev/null || echo "?"; }
verdict_on=$(awk -v x="$r_on" 'BEGIN {print (x >= 0.9) ? "met" : "not met"}')
conclusion="**Overhead: the target is $verdict_on**: with rate limits and 1% tracing the cached hit kept $(pctf "$r_on") of the
\`off\` throughput (median of $REPEATS interleaved rounds; target >= 90%)."
if [ "$limited" -gt 0 ]; then
	conclusion="$conclusion **But $limited requests of rl/on/on-full were answered 429 by buckets that should never limit
(1000000/s, burst 1000000 each): the check \"no 429\" failed, so these rates are not clean (a 429 is cheaper than a hit).**"
fi
conclusion="$conclusion Tracing at 1% alone: trace/off $(pctf "$r_trace") (proxy CPU $(cpu trace 8) against $(cpu off 8) µs/request).
Rate limits alone: rl/off $(pctf "$r_rl"); proxy CPU $(cpu rl 8) µs/request, Redis CPU $(cpu rl 9) µs/request against $(cpu off 9) in
\`off\` (where the loop's local cache answers the hit without Redis); rate limit decisions made by Redis: $rl_redis for
$rl_allowed allowed requests of rl/on/on-full$(awk -v r="$rl_redis" -v a="$rl_allowed" 'BEGIN {if (r > 0) printf " (one per %.0f requests)", a / r}')."
if [ "$PERF" = 1 ]; then
	conclusion="$conclusion Profile of on against off, µs/request: kernel $(pgroup off kernel) -> $(pgroup on kernel), libc $(pgroup off libc) -> $(pgroup on libc),
hiredis $(pgroup off hiredis) -> $(pgroup on hiredis), ratelimit.c $(pgroup on "rate limits (ratelimit.c)"), all $(awk -F'\t' '$1 == "perf" && $2 == "off" {printf "%.1f", $8 * 1e6 / $6}' "$OVER") -> $(awk -F'\t' '$1 == "perf" && $2 == "on" {printf "%.1f", $8 * 1e6 / $6}' "$OVER")."
fi
conclusion="$conclusion Every request traced (on-full): $(pctf "$r_full") of \`off\`, with the Python OTLP receiver on the same
2 cores ($(fmt "$(ocol on-full 10 | median)" 2) s of its CPU per ${DURATION} s run; spans beyond the exporter's queue are dropped and counted).
The always-on metrics are not where the time goes: pulse_metrics_* functions are ${metrics_share:-?}% of the proxy's samples in
\`on\` (${metrics_share_off:-?}% in \`off\`), all of metrics.c $(awk -F'\t' '$1 ~ /metrics/ {s += $2} END {printf "%.2f", s}' "$LOGS/perf-on.tsv" 2>/dev/null || echo "?")%.
**Spike:** at $SPIKE_FACTOR x the steady rate ($(awk -v a="$SPIKE_RATE" -v c="$CAP" 'BEGIN {printf "%.1f", a / c}') x the measured capacity C = $CAP req/s), the proxy served
$(pcol spike 5) req/s and shed $(pcol spike 7) requests with 503 (p50 $(pcol spike 13) ms, p99 $(pcol spike 14) ms; by reason: queue_full
$(shed_sum 2 queue_full), estimate $(shed_sum 2 estimate), waited $(shed_sum 2 waited)); the p99 of the admitted requests was $spike_p99 ms,
$(awk -v x="$spike_p99" 'BEGIN {print (x <= 200) ? "within the read SLO of 200 ms" : "**over the read SLO of 200 ms: the claim does not hold in this run**"}')$(awk -F'\t' '$1 == "spike" {if ($16 + 0 > 0) printf ", with no margin: the queue budget equals the SLO, so an admitted request can wait up to 200 ms before its call starts (p50 %s ms), and in %s of %s one-second slices the p99 of the 200s went over 200 ms (worst %s ms)", $9, $16, $17, $15; else printf " (worst one-second p99 %s ms; the admitted requests wait up to the 200 ms queue budget, p50 %s ms)", $15, $9}' "$PHASES").
After the spike the p99 of the 200s was $rec_p99 ms against $steady_p99 ms before it (p50 $(pcol recovery 9) against $(pcol steady 9) ms), with
$(pcol recovery 7) 503s: $(awk -v a="$steady_p99" -v b="$rec_p99" 'BEGIN {print (b <= 2 * a + 1) ? "latency returned to the steady level as soon as the offered rate did" : "**latency did not return to the steady level**"}'). Over HTTP/1.1 with $CLOSED_CONNS connections, as first sketched, the
same offered rate is not a spike: the client itself holds back (it sent $(awk -F'\t' '$1 ~ /^spike-h1/ {print $4}' "$PHASES") of $SPIKE_RATE req/s) and $(awk -F'\t' '$1 ~ /^spike-h1/ {print $7}' "$PHASES") requests were shed."
[ "$CLOSED_CONNS" != 0 ] || conclusion=${conclusion%% Over HTTP/1.1 with*}

mkdir -p "$(dirname "$OUT")"
{
	echo "# pulse-proxy: the cost of its protections, and a load spike"
	echo
	echo "Generated by \`bench/protect/run.sh\`, $script_start to $bench_end UTC (measured runs from $bench_start)."
	echo "See \`bench/protect/README.md\`. Issue 5, bench items: the overhead of metrics + tracing + rate limiting"
	echo "on the cached-hit path (expected < 10% of throughput), and a spike (5x load for ${SPIKE_SECONDS} s) whose"
	echo "admitted requests keep the read class's SLO (p99 200 ms) while the excess is shed."
	echo
	echo "## Command"
	echo
	echo '```'
	echo "$CMD"
	echo '```'
	echo
	echo "## Claims"
	echo
	echo "| claim | measured | met |"
	echo "|---|---|---|"
	echo "| rate limits (3 Redis buckets) + tracing at 1% keep >= 90% of the cached-hit throughput | on/off = $(pctf "$r_on") (median of $REPEATS per-round ratios: $(oratios on off | tr ' ' '\n' | grep -v '^$' | awk '{printf "%s%.1f%%", (NR > 1 ? ", " : ""), $1 * 100}')) | $(met "$r_on" ">=" 0.9)$([ "$limited" -eq 0 ] || echo " **(invalid: $limited requests answered 429)**") |"
	echo "| (decomposition) rate limits alone / tracing at 1% alone | rl/off = $(pctf "$(oratios rl off | median)"), trace/off = $(pctf "$(oratios trace off | median)") | $(met "$(oratios rl off | median)" ">=" 0.9) / $(met "$(oratios trace off | median)" ">=" 0.9) |"
	echo "| (for context) both with every request traced | on-full/off = $(pctf "$r_full") (rounds: $(oratios on-full off | tr ' ' '\n' | grep -v '^$' | awk '{printf "%s%.1f%%", (NR > 1 ? ", " : ""), $1 * 100}')) | $(met "$r_full" ">=" 0.9) |"
	echo "| metrics (always on) are a small share of the proxy's CPU | pulse_metrics_* functions: ${metrics_share:-?}% of the proxy's perf samples in on, ${metrics_share_off:-?}% in off | - |"
	echo "| spike (${SPIKE_FACTOR}x): p99 of admitted requests within the read SLO (200 ms) | p99 of 200s: steady $steady_p99 ms, spike $spike_p99 ms, recovery $rec_p99 ms | $(met "$spike_p99" "<" 200.0001) |"
	echo "| the excess gets fast 503s | $spike_503 503s in the spike, their p50 $(pcol spike 13) ms, p99 $(pcol spike 14) ms ($(shed_sum 2 waited) of them \`waited\`: 503 after the whole 200 ms budget) | $( [ "$spike_503" -gt 0 ] && echo yes || echo '**no** (nothing shed)') |"
	echo "| after the spike, latency returns to the steady level | p50/p99 of 200s: steady $(pcol steady 9)/$steady_p99 ms, recovery $(pcol recovery 9)/$rec_p99 ms | $(awk -v a="$steady_p99" -v b="$rec_p99" 'BEGIN {print (b <= 2 * a + 1) ? "yes" : "**no**"}') |"
	echo
	echo "(\"Returns to the steady level\" is judged as recovery p99 <= 2 x steady p99 + 1 ms.)"
	echo
	echo "## Conclusion"
	echo
	echo "$conclusion"
	echo
	echo "## 1. Overhead on the cached-hit path"
	echo
	echo "\`GET $HIT_PATH\` with a tenant-1 JWT, \`X-Cache: hit\` (same URL every time), wrk \`-t1 -c$CONNS -d${DURATION}s\`,"
	echo "$REPEATS interleaved rounds (the order rotates each round: round 1 off, rl, trace, on, on-full; round 2 rl, trace, on, on-full, off; ...),"
	echo "one proxy loaded at a time (the five run side by side, idle when not loaded), after one unmeasured 3 s warm-up each."
	echo "The issue's comparison is on/off; rl and trace split it into its two parts."
	echo
	echo "| config | what | req/s (median) | p50 ms | p99 ms | ratio to off (median of rounds) | proxy CPU µs/request | Redis CPU µs/request | OTLP receiver CPU s/run | spans received/run | non-2xx |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for c in "${CONFIGS[@]}"; do
		case $c in
		off) w="no ratelimit_*, no otlp_endpoint (metrics only)" ;;
		rl) w="ratelimit_read only (3 buckets in Redis)" ;;
		trace) w="otlp_endpoint only, trace_sample_ppm 10000 (1%)" ;;
		on) w="**both**: ratelimit_read + OTLP at 1%" ;;
		on-full) w="both, trace_sample_ppm 1000000 (100%)" ;;
		esac
		rr=$(pctf "$(oratios "$c" off | median)")
		echo "| $c | $w | $(fmt "$(ocol "$c" 3 | median)" 0) | $(fmt "$(ocol "$c" 4 | median)" 3) | $(fmt "$(ocol "$c" 5 | median)" 3) | $rr | $(fmt "$(cpu_per_req "$c" 8 | median)" 1) | $(fmt "$(cpu_per_req "$c" 9 | median)" 1) | $(fmt "$(ocol "$c" 10 | median)" 2) | $(fmt "$(ocol "$c" 11 | median)" 0) | $(awk -F'\t' -v c="$c" '$2 == c {s += $7} END {print s + 0}' "$OVER") |"
	done
	echo
	echo "CPU per request: the process's user + system time (\`/proc/<pid>/stat\`) over the run divided by the requests"
	echo "wrk counted; it does not depend on how the 2 cores were shared, so it is the steadier overhead figure: on"
	echo "costs $(awk -v a="$(cpu_per_req on 8 | median)" -v b="$(cpu_per_req off 8 | median)" 'BEGIN {printf "%+.1f%%", (a / b - 1) * 100}') proxy CPU per request against off,"
	echo "on-full $(awk -v a="$(cpu_per_req on-full 8 | median)" -v b="$(cpu_per_req off 8 | median)" 'BEGIN {printf "%+.1f%%", (a / b - 1) * 100}') (medians). Redis CPU per request: the cache GETs, if any (none when the"
	echo "loops' local cache answers the hit), and, for rl/on/on-full, the EVALSHA of the rate limit script. CPU times"
	echo "are read in clock ticks (1/$CLK_TCK s)."
	echo
	echo "Checks: before the runs, every proxy answered \`X-Cache: hit\`; \`rl\`, \`on\` and \`on-full\` answered"
	echo "\`RateLimit: $rl_header\` (\`RateLimit-Policy: $rl_policy_header\`), \`off\` and \`trace\` no RateLimit header; a request"
	echo "through \`on\` with a sampled \`traceparent\` reached the OTLP receiver as $trace_spans span(s): $trace_span_names."
	echo "After the runs: wrk counted $non2xx_total non-2xx answers or socket errors over all runs; the proxies'"
	echo "\`pulse_ratelimit_requests_total\` counted $rl_allowed allowed and $limited limited (429) requests;"
	echo "\`pulse_ratelimit_decisions_total\`: $rl_redis by Redis, $rl_local local. \`pulse_trace_spans_total\`: on $spans_on;"
	echo "on-full $spans_full."
	echo
	echo "The OTLP receiver is \`proxy/test/otlp_receiver.py\` (Python, one JSON line per span to a file), on the same"
	echo "2 cores: in on-full its CPU (column above) is taken from the proxy and wrk, so on-full's ratio is a"
	echo "pessimistic figure for a proxy whose collector runs elsewhere."
	echo
	echo "### Every overhead run"
	echo
	echo "| round | config | req/s | p50 ms | p99 ms | requests | non-2xx | proxy CPU s | Redis CPU s | receiver CPU s | spans |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11}' "$OVER"
	echo
	echo "### Where the proxy's CPU goes (perf, one more on run)"
	echo
	if [ "$PERF" = 1 ]; then
		echo "\`$PERF_CMD\` while wrk ran the same ${DURATION} s load against \`off\`, then against \`on\` (the \"perf\" rows"
		echo "above): $(cat "$LOGS/perf-samples-off.txt") and $(cat "$LOGS/perf-samples-on.txt") samples of the proxy process (all its threads: the event loop, the OTLP"
		echo "exporter, the catalog and log threads). Self time (\`perf report --no-children --sort dso,sym\`), grouped;"
		echo "functions of the proxy are grouped by the source file their debug info names (\`nm -l\`), so static helpers"
		echo "count with their file (the binary is built -O2; without LTO nothing of metrics.c is inlined into other files)."
		echo "µs/request = share x the proxy's CPU time in that run / requests served in it."
		echo
		echo "| group | off: share | off: µs/request | on: share | on: µs/request |"
		echo "|---|---:|---:|---:|---:|"
		cpu_off=$(awk -F'\t' '$1 == "perf" && $2 == "off" {print $8 * 1e6 / $6}' "$OVER")
		cpu_on=$(awk -F'\t' '$1 == "perf" && $2 == "on" {print $8 * 1e6 / $6}' "$OVER")
		awk -F'\t' -v co="$cpu_off" -v cn="$cpu_on" '
			FNR == NR { off[$1] = $2; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }; next }
			{ on[$1] = $2; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
			END { for (i = 1; i <= n; i++) { k = order[i]; printf "| %s | %.2f%% | %.2f | %.2f%% | %.2f |\n", k, off[k], off[k] * co / 100, on[k], on[k] * cn / 100 }
			      printf "| **all** | 100%% | %.2f | 100%% | %.2f |\n", co, cn }' "$LOGS/perf-off.tsv" "$LOGS/perf-on.tsv"
		echo
		echo "pulse_metrics_* functions seen: off: $(cat "$LOGS/perf-metrics-funcs-off.txt"); on: $(cat "$LOGS/perf-metrics-funcs-on.txt")."
		echo
		echo "Top 20 functions of \`on\`:"
		echo
		echo "| share | object | function |"
		echo "|---:|---|---|"
		awk -F'\t' '{printf "| %s | %s | `%s` |\n", $1, $2, $3}' "$LOGS/perf-top-on.tsv"
	else
		echo "$perf_note"
	fi
	echo
	echo "## 2. Spike"
	echo
	echo "\`GET /rpc/item?id=<random id of tenant 1>\` (\`api.item(bigint)\`, read class, no ttl: one PostgreSQL"
	echo "call per request) through one proxy: \`threads: $SPIKE_THREADS\`, \`pool_size: $SPIKE_POOL\`, default queue budgets"
	echo "(\`queue_budget_read_ms\` 200 = the read SLO p99, \`queue_timeout_ms\` 2000, \`queue_limit\` 1024), no rate"
	echo "limits, no tracing (with tracing on, every 5xx is exported whatever the sampling: each shed 503 would"
	echo "add its spans to the exporter's queue), Redis cache configured (unused: no ttl)."
	echo "One event loop and 4 connections: on 2 cores shared with wrk/h2load, Redis and PostgreSQL's backends,"
	echo "1 loop + 4 backends already use the CPU; more would only add contention."
	echo
	echo "Capacity C: wrk \`-t1 -c$CAP_CONNS -d${CAP_SECONDS}s\` (random ids, \`bench/proxy/random_id.lua\`) after a 3 s warm-up:"
	echo "**C = $CAP req/s**, p50 $cap_p50 ms, p99 $cap_p99 ms, $cap_err non-2xx/errors."
	echo
	echo "Then h2load at a constant arrival rate, 20,000 random URLs (\`-i\`), three runs back to back: steady ${STEADY_SHARE} C,"
	echo "spike ${SPIKE_FACTOR} x steady = $(awk -v a="$SPIKE_RATE" -v c="$CAP" 'BEGIN {printf "%.1f", a / c}') C, recovery = steady; $SPIKE_CONNS connections (\`--rps\` is per connection) over HTTP/2"
	echo "cleartext (prior knowledge) with up to $SPIKE_STREAMS requests in flight each (\`-m $SPIKE_STREAMS\`): up to $((SPIKE_CONNS * SPIKE_STREAMS)) outstanding"
	echo "requests, so the client keeps sending at the offered rate however slow the answers (open loop)."
	if [ "$CLOSED_CONNS" != 0 ]; then
		echo "Then, 2 s later, the spike once more as the issue sketched it: \`--h1 -c $CLOSED_CONNS\`. Over HTTP/1.1 a"
		echo "connection has one request in flight, so $CLOSED_CONNS connections never have more than $CLOSED_CONNS requests"
		echo "outstanding: a connection whose answer is late sends its next request late (h2load measures from the"
		echo "actual send), the client absorbs the excess (\"sent\" < \"offered\") and the proxy's queue never holds"
		echo "more than $CLOSED_CONNS calls, so there is nothing to shed; that row is a closed loop, not a spike."
		echo "(Many HTTP/1.1 connections are no way out: h2load's per-connection timers fire together, so thousands"
		echo "of connections arrive as synchronized waves of thousands of requests, shed even at 0.4 C.)"
	fi
	echo
	echo "| phase | s | conns | offered req/s | sent req/s | served (200) req/s | 200 | 503 (shed) | other | p50 200s ms | p95 200s ms | p99 200s ms | p99 all ms | p50 503s ms | p99 503s ms | worst 1-s p99 of 200s ms (seconds > 200 ms) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	while IFS=$'\t' read -r name conns rate sent served ok sh other p50 p95 p99 p99all s50 s99 worst over nsec; do
		secs=$(awk -F'\t' -v p="$name" '$1 == p {print $3}' "$SPIKE")
		echo "| $name | $secs | $conns | $rate | $sent | $served | $ok | $sh | $other | $p50 | $p95 | $p99 | $p99all | $s50 | $s99 | $worst ($over of $nsec) |"
	done <"$PHASES"
	echo
	echo "Offered = the nominal rate (connections x \`--rps\`); sent = requests h2load logged / phase length; latencies"
	echo "from h2load's per-request log (start time, status, time from the send to the end of the response)."
	echo "\"other\" counts any status besides 200 and 503 (-1: a failed stream). Worst 1-s p99: the highest p99 of the"
	echo "200s over the phase's one-second slices (slices with at least 100 answers)."
	echo
	echo "Proxy counters per phase (deltas of \`/metrics\` scraped before and after each phase; non-zero only):"
	echo
	echo "| counter | steady | spike | recovery | spike-h1-c$CLOSED_CONNS |"
	echo "|---|---:|---:|---:|---:|"
	awk -F'\t' '{v[$1, $2] = $3; if (!($1 in seen)) {seen[$1] = 1; order[++n] = $1}}
		END {for (i = 1; i <= n; i++) {k = order[i]; printf "| `%s` | %s | %s | %s | %s |\n", k, v[k, 1] + 0, v[k, 2] + 0, v[k, 3] + 0, v[k, 4] + 0}}' "$COUNTERS"
	echo
	echo "\`pulse_slo_breaches_total\` is evaluated every 10 s (\`slo_window_ms\`) over the last window: a breach counted"
	echo "in the phase after the spike can be the spike's window. \`pulse_pool_rejected_total{reason=\"queue_full\"}\` and"
	echo "\`pulse_shed_total{reason=\"queue_full\"}\` count the same 503s."
	echo
	echo "Shed by reason over the three phases: estimate $(($(shed_sum 1 estimate) + $(shed_sum 2 estimate) + $(shed_sum 3 estimate))),"
	echo "waited $(($(shed_sum 1 waited) + $(shed_sum 2 waited) + $(shed_sum 3 waited))), queue_full $(($(shed_sum 1 queue_full) + $(shed_sum 2 queue_full) + $(shed_sum 3 queue_full)))."
	echo
	if [ -n "$png_note" ]; then
		echo "$png_note"
		echo
		echo "Per second of the run (x: seconds since the steady phase began; shaded: the spike): p50 and p99 of the"
		echo "200s and p99 of the 503s (left axis), 200s and 503s per second (right axis)."
		echo
	fi
	echo "### Per second"
	echo
	echo "<details><summary>seconds since the steady phase began: 200s, 503s, p50/p99 of 200s, p99 of 503s (ms)</summary>"
	echo
	echo "| s | 200 | 503 | p50 200s | p99 200s | p99 503s |"
	echo "|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}' "$SERIES" | sed 's/NaN/-/g'
	echo
	echo "</details>"
	echo
	echo "## Configuration"
	echo
	echo "- pulse-proxy: binary \`$PROXY_BIN\` sha256 $proxy_sum…, built $proxy_built UTC (git HEAD $git_rev when the"
	echo "  report was written), copied to the scratch directory at start. Overhead proxies: \`threads: 1\`, \`pool_size: 4\`,"
	echo "  \`access_log: off\`, \`redis_url\` (cache on); on/on-full add"
	echo "  \`ratelimit_read: \"$RL_POLICY\"\`, \`otlp_endpoint: http://127.0.0.1:<port>/v1/traces\` and"
	echo "  \`trace_sample_ppm: 10000\` / \`1000000\`. Spike proxy: \`threads: $SPIKE_THREADS\`, \`pool_size: $SPIKE_POOL\`, \`access_log: off\`,"
	echo "  \`redis_url\`, everything else default. Metrics are always on (no option)."
	echo "- redis-server $redis_version: \`--bind 127.0.0.1 --save '' --appendonly no\`, shared by the proxies (cache and rate limit buckets)."
	echo "- OTLP receiver: \`python3 proxy/test/otlp_receiver.py <port> spans.jsonl\`."
	echo "- Load: $wrk_version; $h2load_version; ${perf_version:-perf}."
	echo "- Dataset: \`bench/proxy/dataset.sql\`, $ROWS rows of \`benchp.items\` ($items_size), $TENANTS tenants, RLS on"
	echo "  \`pulse.tenant\`, loaded in ${load_secs} s, table and primary key prewarmed; every request carries one HS256 JWT of tenant 1."
	echo
	echo "## Machine"
	echo
	echo "- CPU: ${cpu:-unknown}, $(nproc) cores visible, shared with other engineers' builds and tests: load average"
	echo "  $load_start when the script started (before it started anything), $load_before right before the measured"
	echo "  runs, $load_after after the spike (during the runs the benchmark's own processes make most of it)."
	echo "- Memory: $mem; kernel $kernel"
	echo "- $pg_version; cluster from scripts/cluster.sh, shared_buffers ${PULSE_SHARED_BUFFERS:-512MB}, fsync off (read-only benchmark)"
	echo
	echo "## Commands (the token is elided)"
	echo
	echo '```'
	cat "$COMMANDS"
	[ "$PERF" != 1 ] || echo "$PERF_CMD   # during one more wrk run against off, then on"
	echo '```'
} >"$OUT"
log "report written to $OUT${png_note:+ and $PNG}"
