#!/usr/bin/env bash
# pulse-proxy with a read replica (issue 11's bench items).  See bench/replicas/README.md.
#
# One primary and one streaming replica (scripts/cluster.sh start / replica: pg_basebackup -R) of one machine,
# bench/proxy/dataset.sql, and two proxies from one binary: `plain` (pg_url only) and `replicas` (the same with
# replica_urls).  Three measurements:
#  1. Reads split: wrk (uncached primary-key lookups, read class) against `replicas` for DURATION s while a writer
#     commits WRITE_RATE transactions/s on the primary: how the calls split between the servers
#     (pulse_server_calls_total) and why (pulse_replica_routing_total).
#  2. Routing cost: h2load sends exactly REQUESTS requests (the same random ids) to each proxy, REPEATS
#     interleaved rounds, no writer; the proxy's CPU (utime + stime from /proc/<pid>/stat) per request, with and
#     without replicas; and the replica monitor's own CPU over the same time with no request (idle cost).  The
#     servers' CPU per call too (every process of each cluster), for the expected scaling.
#  3. Staleness: a writer stamps benchr.clock with clock_timestamp() WRITE_RATE times a second on the primary;
#     a client reads /rpc/staleness (its age as seen by the server that answered) through `replicas` at
#     STALE_RATE requests/s for STALE_SECONDS: the distribution on the replica, and the share of reads it got.
#     The age includes up to 1/WRITE_RATE s between two stamps: the primary's answers show that baseline.
#
# Everything listens on 127.0.0.1 on free ports from PORT up and is stopped on exit (trap), with the scratch
# directory.  Parameters (environment):
#   ROWS, TENANTS      dataset (bench/proxy/dataset.sql)                    (100000, 4)
#   DURATION           seconds of the split run                              (10)
#   CONNS              wrk / h2load connections; proxies' pool_size          (8)
#   PROXY_THREADS      proxies' event loops                                  (1)
#   REQUESTS, REPEATS  requests per routing-cost run, rounds (medians)       (20000, 3)
#   WRITE_RATE         writer's commits per second (1, 2, 3)                 (200)
#   STALE_SECONDS, STALE_RATE   staleness run                                (10, 200)
#   PROXY_BIN          proxy binary (copied at start)                        (build/pulse-proxy)
#   PORT               first TCP port to try                                 (27300)
#   WORK               scratch directory (removed on exit)                   (/tmp/pulse-bench-replicas.PID)
#   OUT                report              (bench/results/<UTC date>-replicas.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

ROWS=${ROWS:-100000}
TENANTS=${TENANTS:-4}
DURATION=${DURATION:-10}
CONNS=${CONNS:-8}
PROXY_THREADS=${PROXY_THREADS:-1}
REQUESTS=${REQUESTS:-20000}
REPEATS=${REPEATS:-3}
WRITE_RATE=${WRITE_RATE:-200}
STALE_SECONDS=${STALE_SECONDS:-10}
STALE_RATE=${STALE_RATE:-200}
PROXY_BIN=${PROXY_BIN:-build/pulse-proxy}
WORK=${WORK:-/tmp/pulse-bench-replicas.$$}
OUT=${OUT:-bench/results/$(date -u +%F)-replicas.md}
DB=pulse_bench
CMD="ROWS=$ROWS TENANTS=$TENANTS DURATION=$DURATION CONNS=$CONNS PROXY_THREADS=$PROXY_THREADS REQUESTS=$REQUESTS REPEATS=$REPEATS WRITE_RATE=$WRITE_RATE STALE_SECONDS=$STALE_SECONDS STALE_RATE=$STALE_RATE bench/replicas/run.sh"
PY=/usr/bin/python3 # psycopg2 for the clients below

log() { printf '%s bench-replicas: %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }
for tool in wrk h2load pgbench curl; do command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh installs it)"; done
$PY -c 'import psycopg2' 2>/dev/null || die "$PY cannot import psycopg2 (Debian: python3-psycopg2)"
[ -x "$PROXY_BIN" ] || die "no proxy binary at $PROXY_BIN (make proxy)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

PIDS=()
# the replica first; then scripts/lib.sh's bench_cleanup: the proxies, the primary, $WORK
cleanup() {
	scripts/cluster.sh destroy "$WORK/replica" >/dev/null 2>&1 || true
	bench_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/logs" "$WORK/pgroot"
chmod 755 "$WORK" "$WORK/pgroot"
LOGS=$WORK/logs
cp "$PROXY_BIN" "$WORK/pulse-proxy"
proxy_sum=$(sha256sum "$WORK/pulse-proxy" | cut -c1-12)
CLK_TCK=$(getconf CLK_TCK)

# --- servers -----------------------------------------------------------------------------------------------------
PGPORT=$(free_port "${PORT:-27300}")
RPORT=$(free_port $((PGPORT + 1)))
declare -A PPORT PPID_OF
PPORT[plain]=$(free_port $((RPORT + 1)))
PPORT[replicas]=$(free_port $((${PPORT[plain]} + 1)))
PGBIN=$(scripts/pgroot.sh "$WORK/pgroot")
export PGBIN
PULSE_FSYNC=off PULSE_SHARED_BUFFERS=256MB PULSE_CRON_DB=postgres scripts/cluster.sh start "$WORK/pg" "$PGPORT" >/dev/null
export PGHOST=$WORK/pg PGPORT PGUSER=postgres
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE $DB"
psql -d "$DB" -c "CREATE EXTENSION pulse"
log "loading $ROWS rows (bench/proxy/dataset.sql)"
psql -d "$DB" -v rows="$ROWS" -v tenants="$TENANTS" -f bench/proxy/dataset.sql >/dev/null
psql -d "$DB" >/dev/null <<'SQL'
CREATE SCHEMA benchr;
CREATE TABLE benchr.clock (id int PRIMARY KEY, t timestamptz NOT NULL);
INSERT INTO benchr.clock VALUES (1, clock_timestamp());
GRANT USAGE ON SCHEMA benchr TO api;
GRANT SELECT ON benchr.clock TO api;
-- the age of the newest stamp the answering server sees, in ms, and whether it is a standby
CREATE FUNCTION api.staleness() RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('age_ms', 1000 * extract(epoch FROM clock_timestamp() - t), 'replica', pg_is_in_recovery())
      FROM benchr.clock WHERE id = 1
$$;
GRANT EXECUTE ON FUNCTION api.staleness() TO api;
SELECT pulse.expose('api.staleness()', 'read');
SQL
log "replica: pg_basebackup -R"
scripts/cluster.sh replica "$WORK/replica" "$RPORT" "$WORK/pg" >/dev/null
# pids of every process of a cluster (the postmaster and its children)
cluster_pids() { local pm; pm=$(head -n 1 "$1/data/postmaster.pid"); echo "$pm" $(pgrep -P "$pm" || true); }
cpu_ticks() { local s=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && s=$((s + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done; echo $s; }
secs() { awk -v a="$1" -v b="$2" -v t="$CLK_TCK" 'BEGIN {printf "%.3f", (b - a) / t}'; }

# --- proxies -----------------------------------------------------------------------------------------------------
SECRET=bench-secret-$$
for name in plain replicas; do
	{
		echo "listen: 127.0.0.1:${PPORT[$name]}"
		echo "pg_url: host=127.0.0.1 port=$PGPORT dbname=$DB user=pulse_proxy"
		[ "$name" = plain ] || echo "replica_urls: host=127.0.0.1 port=$RPORT dbname=$DB user=pulse_proxy"
		echo "threads: $PROXY_THREADS"
		echo "pool_size: $CONNS"
		echo 'access_log: "off"'
	} >"$WORK/$name.yaml"
	PULSE_JWT_SECRET=$SECRET "$WORK/pulse-proxy" --config "$WORK/$name.yaml" 2>"$LOGS/proxy-$name.err" &
	PPID_OF[$name]=$!
	PIDS+=("$!")
	wait_for 15 curl -sf "http://127.0.0.1:${PPORT[$name]}/ready" || die "proxy $name not ready: $(tail -n 5 "$LOGS/proxy-$name.err")"
done
wait_for 15 eval 'curl -s "http://127.0.0.1:${PPORT[replicas]}/ready" | grep -q "\"state\":\"up\""' || die "the replica is not up"
TOKEN=$($PY proxy/test/token.py "$SECRET" "{\"tenant\": 1, \"exp\": $(($(date +%s) + 7200))}")
AUTH="Authorization: Bearer $TOKEN"
metric() { curl -s "http://127.0.0.1:${PPORT[replicas]}/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# writer: WRITE_RATE commits/s on the primary, each stamping the clock (pgbench -R: a constant rate)
echo "UPDATE benchr.clock SET t = clock_timestamp() WHERE id = 1;" >"$WORK/write.sql"
writer() { # writer SECONDS
	pgbench -n -h "$WORK/pg" -p "$PGPORT" -U postgres -c 1 -R "$WRITE_RATE" -T "$1" -f "$WORK/write.sql" "$DB" >"$LOGS/writer.log" 2>&1
}

# --- 1. reads split ------------------------------------------------------------------------------------------------
log "split: wrk $DURATION s on the replicas proxy, writer at $WRITE_RATE/s"
declare -A C0 D0
for s in primary replica1; do C0[$s]=$(metric "pulse_server_calls_total{server=\"$s\"}"); done
for d in fresh lagging down min_lsn_wait min_lsn_primary; do D0[$d]=$(metric "pulse_replica_routing_total{decision=\"$d\"}"); done
writer $((DURATION + 2)) &
W=$!
timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "$AUTH" -s bench/proxy/random_id.lua \
	"http://127.0.0.1:${PPORT[replicas]}" -- /rpc/item?id= "$TENANTS" "$ROWS" >"$LOGS/wrk-split.out" 2>&1 || die "wrk failed"
wait $W || true
sleep 0.3
split_rps=$(awk '/^Requests\/sec:/ {print $2}' "$LOGS/wrk-split.out")
split_non2xx=$(awk '/^ *Non-2xx/ {print $NF}' "$LOGS/wrk-split.out")
split_rows=""
for s in primary replica1; do split_rows+="| \`$s\` | $(($(metric "pulse_server_calls_total{server=\"$s\"}") - ${C0[$s]})) |"$'\n'; done
dec_rows=""
for d in fresh lagging down min_lsn_wait min_lsn_primary; do
	dec_rows+="| \`$d\` | $(($(metric "pulse_replica_routing_total{decision=\"$d\"}") - ${D0[$d]})) |"$'\n'
done
log "split: $split_rps req/s"

# --- 2. routing cost -------------------------------------------------------------------------------------------------
$PY - "$REQUESTS" "$TENANTS" "$ROWS" >"$WORK/uris.txt" <<'PY'
import random, sys
n, tenants, rows = map(int, sys.argv[1:])
random.seed(20261206)
for _ in range(n):
    print("/rpc/item?id=%d" % (random.randint(1, rows // tenants) * tenants))
PY
COST=$LOGS/cost.tsv # round proxy proxy_s primary_s replica_s seconds
: >"$COST"
PRIM_PIDS=$(cluster_pids "$WORK/pg")
REP_PIDS=$(cluster_pids "$WORK/replica")
cost_run() { # cost_run ROUND PROXY
	local pp=${PPID_OF[$2]} a0 a1 p0 p1 r0 r1 t0 t1 out=$LOGS/h2load-$2-r$1.out
	PRIM_PIDS=$(cluster_pids "$WORK/pg")
	REP_PIDS=$(cluster_pids "$WORK/replica")
	a0=$(cpu_ticks "$pp"); p0=$(cpu_ticks $PRIM_PIDS); r0=$(cpu_ticks $REP_PIDS); t0=$(date +%s%N)
	sed "s|^|http://127.0.0.1:${PPORT[$2]}|" "$WORK/uris.txt" >"$WORK/uris-$2.txt"
	timeout 300 h2load --h1 -t1 -c"$CONNS" -n "$REQUESTS" -H "$AUTH" -i "$WORK/uris-$2.txt" >"$out" 2>&1 || die "h2load failed: $(tail -n 5 "$out")"
	a1=$(cpu_ticks "$pp"); p1=$(cpu_ticks $PRIM_PIDS); r1=$(cpu_ticks $REP_PIDS); t1=$(date +%s%N)
	grep -q "succeeded, 0 failed, 0 errored" "$out" || log "warning: $2 round $1: $(grep -m1 'requests:' "$out")"
	grep -q "status codes: $REQUESTS 2xx" "$out" || log "warning: $2 round $1: $(grep -m1 'status codes' "$out")"
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(secs "$a0" "$a1")" "$(secs "$p0" "$p1")" "$(secs "$r0" "$r1")" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')" >>"$COST"
}
log "routing cost: $REQUESTS requests x $REPEATS rounds per proxy"
cost_run 0 plain
cost_run 0 replicas
: >"$COST" # the warm-up is not measured
for round in $(seq "$REPEATS"); do
	if [ $((round % 2)) = 1 ]; then cost_run "$round" plain; cost_run "$round" replicas; else cost_run "$round" replicas; cost_run "$round" plain; fi
done
# the monitor threads' CPU with no request: as long as one replicas run took
idle_secs=$(awk -F'\t' '$2 == "replicas" {s += $6; n++} END {printf "%.0f", s / n + 0.5}' "$COST")
i0=$(cpu_ticks "${PPID_OF[replicas]}"); j0=$(cpu_ticks "${PPID_OF[plain]}")
sleep "$idle_secs"
i1=$(cpu_ticks "${PPID_OF[replicas]}"); j1=$(cpu_ticks "${PPID_OF[plain]}")
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
per_req() { awk -F'\t' -v p="$1" -v k="$2" -v n="$REQUESTS" '$2 == p {printf "%.2f ", $k * 1e6 / n}' "$COST"; }
us_plain=$(per_req plain 3 | median)
us_rep=$(per_req replicas 3 | median)
db_plain=$(per_req plain 4 | median)
db_rep=$(per_req replicas 5 | median)
db_rep_primary=$(per_req replicas 4 | median)
idle_rep=$(secs "$i0" "$i1")
idle_plain=$(secs "$j0" "$j1")
log "routing cost: proxy ${us_plain} us/request plain, ${us_rep} us/request with the replica; idle ${idle_rep} s vs ${idle_plain} s over ${idle_secs} s"

# --- 3. staleness ------------------------------------------------------------------------------------------------------
log "staleness: $STALE_RATE reads/s for $STALE_SECONDS s, writer at $WRITE_RATE/s"
writer $((STALE_SECONDS + 2)) &
W=$!
sleep 1
$PY - "${PPORT[replicas]}" "$TOKEN" "$STALE_SECONDS" "$STALE_RATE" >"$LOGS/staleness.tsv" <<'PY'
import http.client, json, sys, time
port, token, seconds, rate = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
start = time.monotonic()
i = 0
while time.monotonic() - start < seconds:
    due = start + i / rate
    if due > time.monotonic():
        time.sleep(due - time.monotonic())
    c.request("GET", "/rpc/staleness", headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    body = r.read()
    if r.status == 200:
        d = json.loads(body)
        print("%s\t%.3f" % ("replica" if d["replica"] else "primary", d["age_ms"]))
    else:
        print("error\t%d" % r.status)
    i += 1
PY
wait $W || true
pct() { # pct SERVER P: the P-th percentile of the ages the SERVER answered
	awk -F'\t' -v s="$1" '$1 == s {print $2}' "$LOGS/staleness.tsv" | sort -g |
		awk -v p="$2" '{v[NR] = $1} END {if (NR == 0) {print "-"; exit} i = int(p / 100 * NR + 0.999); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.1f", v[i]}'
}
count() { awk -F'\t' -v s="$1" '$1 == s {n++} END {print n + 0}' "$LOGS/staleness.tsv"; }
stale_rows=""
for s in replica primary; do
	stale_rows+="| $s | $(count "$s") | $(pct "$s" 50) | $(pct "$s" 90) | $(pct "$s" 99) | $(pct "$s" 100) |"$'\n'
done
stale_errors=$(count error)
writer_rate=$(awk '/^tps = / {printf "%.0f", $3; exit}' "$LOGS/writer.log")
log "staleness: replica p50 $(pct replica 50) ms p99 $(pct replica 99) ms over $(count replica) reads; primary $(count primary) reads"

# --- report ------------------------------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
calc() { awk "BEGIN {printf \"%.${2:-1}f\", $1}"; }
cat >"$OUT" <<REPORT
# pulse-proxy with a read replica

\`$CMD\` — $(date -u +'%F %T') UTC, proxy binary \`$proxy_sum\`, $(nproc) cores, load average before: $load_start.

One primary and one streaming replica (\`pg_basebackup -R\`) on this machine, bench/proxy/dataset.sql ($ROWS rows,
$TENANTS tenants), proxies with \`threads: $PROXY_THREADS\`, \`pool_size: $CONNS\`, access log off, no cache.
Uncached primary-key lookups (\`/rpc/item?id=\`, read class, \`LANGUAGE sql\`).

## 1. Reads split ($DURATION s of wrk, $CONNS connections, writer at $WRITE_RATE commits/s)

$split_rps requests/s, non-2xx: ${split_non2xx:-0}.

| server | calls |
|---|---|
$split_rows
| routing decision | calls |
|---|---|
$dec_rows
## 2. Routing cost ($REQUESTS requests per run, $REPEATS rounds, medians; h2load, $CONNS connections, no writer)

| proxy | proxy CPU per request | database CPU per call |
|---|---|---|
| without replicas | $us_plain µs | $db_plain µs (primary) |
| with the replica | $us_rep µs | $db_rep µs (replica), $db_rep_primary µs left on the primary |

Routing cost: $(calc "$us_rep - $us_plain" 2) µs per request ($(calc "($us_rep - $us_plain) * 100 / $us_plain" 1)% of the
proxy's CPU per request). Monitor threads with no request: ${idle_rep} s of CPU over ${idle_secs} s (the proxy
without replicas: ${idle_plain} s).

Per-run figures (round, proxy, proxy CPU s, primary CPU s, replica CPU s, wall s):

\`\`\`
$(cat "$COST")
\`\`\`

## 3. Staleness of replica reads ($STALE_RATE reads/s for $STALE_SECONDS s; writer at $WRITE_RATE/s, measured ${writer_rate:-?}/s)

Age of the newest clock stamp the answering server saw, ms (it includes up to $(calc "1000 / $WRITE_RATE" 1) ms between two
stamps: the primary's answers show that baseline). Errors: $stale_errors.

| answered by | reads | p50 | p90 | p99 | max |
|---|---|---|---|---|---|
$stale_rows
## Expected scaling

Two cores run everything here (load generator, proxies, both servers): throughput figures say nothing about
scale.  From the per-call costs above: a proxy core serves about $(calc "1e6 / $us_rep" 0) requests/s; a database
core about $(calc "1e6 / ($db_rep > 0 ? $db_rep : 1)" 0) of these calls/s on a replica.  Reads scale with the
replicas (each adds its cores' worth of $(calc "1e6 / ($db_rep > 0 ? $db_rep : 1)" 0) calls/s/core) until the primary's
WAL shipping or the proxies bind; proxies scale out behind a load balancer (stateless), each adding $(calc "1e6 / $us_rep" 0)
requests/s per core.  Writes do not scale with replicas: every replica replays all of them.
REPORT
log "report: $OUT"
