#!/usr/bin/env bash
# Live endpoints under load (issue 18).  See bench/live/README.md.
#
# One PostgreSQL (proxy/test/fixture.sql and live_fixture.sql: lv.items, KEYS groups of 4 rows), one pulse-proxy
# (no Redis), and three runs of the same STREAMS clients (bench/live/client.mjs) over KEYS keys (lv_group(grp)),
# each for DURATION seconds while bench/live/writer.py commits WRITES_PER_S single-row updates a second:
#   live      every client holds a text/event-stream connection;
#   poll 1 s  every client GETs its key every 1000 ms (keep-alive);
#   poll 100  every client GETs its key every 100 ms.
# Per run: commit -> client latency p50/p99/max (from the writer's COMMIT returning to the client's receipt; a state
# that carries several commits counts each one, report.py), commits a client never saw, the proxy's RSS per client
# (RSS with every client connected minus RSS before, / STREAMS), the proxy's CPU (utime + stime) per event pushed
# (live) or per request (polls), and database calls/s (pg_stat_database xact_commit over the run, minus the writer's
# commits and the idle rate measured before the runs: the catalog thread's heartbeats).
#
# Parameters (environment):
#   STREAMS        clients                                          (200)
#   KEYS           distinct keys (groups)                           (50)
#   TENANTS        tenants the keys are spread over                 (4)
#   WRITES_PER_S   writer commits per second                        (100)
#   DURATION       recorded seconds per run                         (10)
#   PROXY_THREADS  proxy event loops                                (2)
#   POOL_SIZE      proxy pool size per loop                         (8)
#   MODES          runs, in order                                   ("live poll:1000 poll:100")
#   LIVE_CLIENT    the live run's clients: c (sse_client.c, epoll: the least CPU taken from the proxy and PostgreSQL
#                  on a shared machine) or node (client.mjs, as the polls)   (c)
#   PROXY_BIN      proxy binary (copied at start)                   (build/pulse-proxy)
#   PORT           first TCP port to try                            (27500)
#   WORK           scratch directory (removed on exit)              (/tmp/pulse-bench-live.PID)
#   OUT            report                                           (bench/results/<UTC date>-live.md)
# The full run the targets are about (10,000 streams, 1,000 writes/s):
#   STREAMS=10000 KEYS=1000 WRITES_PER_S=1000 DURATION=30 bench/live/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

STREAMS=${STREAMS:-200}
KEYS=${KEYS:-50}
TENANTS=${TENANTS:-4}
WRITES_PER_S=${WRITES_PER_S:-100}
SECONDS_RUN=${DURATION:-10}
PROXY_THREADS=${PROXY_THREADS:-2}
POOL_SIZE=${POOL_SIZE:-8}
MODES=${MODES:-live poll:1000 poll:100}
LIVE_CLIENT=${LIVE_CLIENT:-c}
PROXY_BIN=${PROXY_BIN:-build/pulse-proxy}
WORK=${WORK:-/tmp/pulse-bench-live.$$}
OUT=${OUT:-bench/results/$(date -u +%F)-live.md}
DB=pulse_bench
CMD="STREAMS=$STREAMS KEYS=$KEYS TENANTS=$TENANTS LIVE_CLIENT=$LIVE_CLIENT WRITES_PER_S=$WRITES_PER_S DURATION=$SECONDS_RUN PROXY_THREADS=$PROXY_THREADS POOL_SIZE=$POOL_SIZE bench/live/run.sh"
PY=/usr/bin/python3

log() { printf '%s bench-live: %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }
command -v node >/dev/null || die "node not found"
$PY -c 'import psycopg2' 2>/dev/null || die "$PY cannot import psycopg2 (Debian: python3-psycopg2)"
[ -x "$PROXY_BIN" ] || die "no proxy binary at $PROXY_BIN (make proxy)"
ulimit -n $((STREAMS * 2 + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((STREAMS + 256)) ] || die "ulimit -n $(ulimit -n) is too low for $STREAMS streams"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

PIDS=()
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/logs" "$WORK/pgroot"
chmod 755 "$WORK" "$WORK/pgroot"
LOGS=$WORK/logs
cp "$PROXY_BIN" "$WORK/pulse-proxy"
CLK_TCK=$(getconf CLK_TCK)

PGPORT=$(free_port "${PORT:-27500}")
HPORT=$(free_port $((PGPORT + 1)))
PGBIN=$(scripts/pgroot.sh "$WORK/pgroot")
export PGBIN
PULSE_FSYNC=off PULSE_SYNC_COMMIT=off PULSE_SHARED_BUFFERS=256MB PULSE_CRON_DB=postgres scripts/cluster.sh start "$WORK/pg" "$PGPORT" >/dev/null
export PGHOST=$WORK/pg PGPORT PGUSER=postgres
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE $DB"
psql -d "$DB" -c "CREATE EXTENSION pulse"
psql -d "$DB" -f proxy/test/fixture.sql >/dev/null
psql -d "$DB" -f proxy/test/live_fixture.sql >/dev/null
psql -d "$DB" -c "INSERT INTO lv.items SELECT g * 10 + i, 1 + g % $TENANTS, g, 0 FROM generate_series(1, $KEYS) g, generate_series(1, 4) i"
psql -d "$DB" -c "ANALYZE lv.items" # planner statistics, as any loaded table has: without them lv_group ANDs two bitmaps
DSN="host=$WORK/pg port=$PGPORT dbname=$DB user=postgres"

SECRET=bench-secret-$$
cat >"$WORK/proxy.yaml" <<CONF
listen: 127.0.0.1:$HPORT
pg_url: host=127.0.0.1 port=$PGPORT dbname=$DB user=pulse_proxy
threads: $PROXY_THREADS
pool_size: $POOL_SIZE
access_log: "off"
live_max_streams: $((STREAMS + 100))
live_max_streams_tenant: $((STREAMS + 100))
CONF
PULSE_JWT_SECRET=$SECRET "$WORK/pulse-proxy" --config "$WORK/proxy.yaml" 2>"$LOGS/proxy.err" &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
wait_for 15 curl -sf "http://127.0.0.1:$HPORT/ready" || die "proxy not ready: $(tail -n 5 "$LOGS/proxy.err")"

# the live run's client: C (sse_client.c, default) or node (client.mjs, as the polls)
if [ "$LIVE_CLIENT" = c ]; then
	cc -O2 -Wall -o "$WORK/sse_client" bench/live/sse_client.c || die "cannot build bench/live/sse_client.c"
	$PY bench/data/tokens.py "$SECRET" "$TENANTS" 7200 >"$WORK/tokens" || die "cannot make the clients' tokens"
fi

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$PROXY_PID/status"; }
cpu_ticks() { sed 's/^.*) //' "/proc/${1:-$PROXY_PID}/stat" | awk '{print $12 + $13}'; }
# busy and total ticks of the machine
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
xacts() { psql -d "$DB" -At -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'"; }
metric() { curl -s "http://127.0.0.1:$HPORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# the database's own rate of transactions with no client (the catalog thread's heartbeats): subtracted from each run
bx0=$(xacts)
sleep 3
BASE_XPS=$(( ($(xacts) - bx0) / 3 ))

ROWS_MD=()
CPU_MD=()
OUT_DIR=${OUT%.md}
mkdir -p "$OUT_DIR"
for mode in $MODES; do
	name=${mode/poll:/poll }
	log "$name: $STREAMS clients over $KEYS keys"
	rss0=$(rss_kb)
	if [ "$mode" = live ] && [ "$LIVE_CLIENT" = c ]; then
		STREAMS=$STREAMS KEYS=$KEYS TENANTS=$TENANTS DURATION=$((SECONDS_RUN + 3)) \
			"$WORK/sse_client" 127.0.0.1 "$HPORT" "$WORK/tokens" "$WORK/receipts" >"$WORK/client.out" 2>"$LOGS/client.err" &
	else
		STREAMS=$STREAMS KEYS=$KEYS TENANTS=$TENANTS DURATION=$((SECONDS_RUN + 3)) \
			node bench/live/client.mjs "$mode" "http://127.0.0.1:$HPORT" "$SECRET" "$WORK/receipts" >"$WORK/client.out" 2>"$LOGS/client.err" &
	fi
	CLIENT=$!
	wait_for 150 grep -q ready "$WORK/client.out" || die "$name: the clients did not connect: $(tail -n 3 "$LOGS/client.err")"
	rss1=$(rss_kb)
	cpu0=$(cpu_ticks)
	read -r mb0 mt0 < <(machine_ticks)
	x0=$(xacts)
	ev0=$(metric 'pulse_live_events_total{type="result"}')
	DURATION=$SECONDS_RUN KEYS=$KEYS WRITES_PER_S=$WRITES_PER_S $PY bench/live/writer.py "$DSN" "$WORK/writes" >"$LOGS/writer.out" &
	WRITER=$!
	$PY bench/live/cpu_sampler.py "$OUT_DIR/${name// /-}.cpu" "$(head -n 1 "$WORK/pg/data/postmaster.pid")" \
		"$PROXY_PID=proxy" "$CLIENT=client" "$WRITER=writer" &
	SAMPLER=$!
	wait "$WRITER" || die "$name: the writer failed: $(tail -n 3 "$LOGS/writer.out")"
	cpu1=$(cpu_ticks)
	read -r mb1 mt1 < <(machine_ticks)
	kill "$SAMPLER" 2>/dev/null || true
	wait "$CLIENT" || die "$name: the client failed: $(tail -n 3 "$LOGS/client.err")"
	x1=$(xacts)
	ev1=$(metric 'pulse_live_events_total{type="result"}')
	summary=$(tail -n 1 "$WORK/client.out")
	lat=$(TIMELINE="$OUT_DIR/${name// /-}.timeline" $PY bench/live/report.py "$WORK/writes" "$WORK/receipts" "$WORK/receipts.first")
	cpu_md=$($PY bench/live/cpu_table.py "$name" "$(awk -v b=$((mb1 - mb0)) -v t=$((mt1 - mt0)) 'BEGIN {printf "%.0f%%", 100 * b / t}')" \
		"$OUT_DIR/${name// /-}.cpu")
	CPU_MD+=("$cpu_md")
	commits=$(wc -l <"$WORK/writes")
	row=$($PY - "$name" "$summary" "$lat" "$rss0" "$rss1" "$cpu0" "$cpu1" "$CLK_TCK" "$x0" "$x1" "$commits" "$ev0" "$ev1" "$STREAMS" "$BASE_XPS" <<'PY'
import json, sys
name, summ, lat = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
rss0, rss1, cpu0, cpu1, tck, x0, x1, commits, ev0, ev1, n, base = sys.argv[4:16]
secs = summ["seconds"]
work = (float(ev1 or 0) - float(ev0 or 0)) if name == "live" else summ["requests"]
cpu_us = (int(cpu1) - int(cpu0)) / int(tck) * 1e6
calls = (int(x1) - int(x0) - int(commits)) / secs - int(base)
print(f"| {name} | {lat['p50_ms']} | {lat['p99_ms']} | {lat['max_ms']} | {lat['missed']} | "
      f"{(int(rss1) - int(rss0)) / int(n):.1f} | {cpu_us / max(work, 1):.1f} ({work:.0f} {'pushes' if name == 'live' else 'requests'}) | "
      f"{calls:.0f} | " + (f"{summ['requests'] / secs:.0f} / {summ.get('skipped', 0) / secs:.0f}" if name != "live" else "-") + " | "
      f"{summ['errors']}" + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(summ.get("errorKinds", {}).items())) + ")" if summ["errors"] else "") + " |")
PY
)
	log "$row"
	ROWS_MD+=("$row")
	sleep 1
done

mkdir -p "$(dirname "$OUT")"
{
	echo "# Live endpoints: $STREAMS clients, $KEYS keys, $WRITES_PER_S writes/s ($(date -u +%FT%TZ))"
	echo
	echo "Command: \`$CMD\`. Machine: $(nproc) cores, load at start $load_start. Proxy $PROXY_THREADS loops, no Redis."
	echo
	echo "| run | commit→client p50 ms | p99 ms | max ms | missed | proxy RSS KB per client | proxy CPU µs per push/request | database calls/s | polls/s sent / skipped | client errors |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS_MD[@]}"
	echo
	echo "Polls skipped: a client's previous poll had not answered when its next was due (a poller waits for it)."
	echo
	echo "Where the CPU went during each run's recorded seconds (/proc): the machine's busy share of its $(nproc) cores, then mean cores"
	echo "(\\`bench/live/cpu_sampler.py\\`, per second in \\`<run>.cpu\\`) of the proxy, PostgreSQL's backends serving the proxy,"
	echo "PostgreSQL's other processes (the writer's backend, walwriter, ...), the load client (live: C; polls: node) and the writer."
	echo
	echo "| run | machine busy | proxy | PostgreSQL, proxy's backends | PostgreSQL, other | client | writer |"
	echo "|---|---|---|---|---|---|---|"
	printf '%s\n' "${CPU_MD[@]}"
	echo
	echo "Per second of the run (by commit time): \`$(basename "$OUT_DIR")/<run>.timeline\` (second, deliveries, p50 ms, p99 ms, max ms)."
} >"$OUT"
cat "$OUT"
log "report: $OUT"
