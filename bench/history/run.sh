#!/usr/bin/env bash
# The cache history checker at length, and the heartbeat's cost (issue 17).  See bench/history/README.md.
#
#  1. History: proxy/test/cache_history.sh with FUZZ_SECONDS=HISTORY_SECONDS: the fault phases (LISTEN killed,
#     frozen, reconnect refused, Redis killed, reloads during writes) again and again against two proxies, every
#     read checked against the commits (no read that started more than the staleness bound after a write's commit
#     returned an older version).  Its whole output goes into the report.
#  2. Heartbeat cost: one idle proxy (2 loops) per HEARTBEATS value, COST_SECONDS each, one after the other on the
#     same cluster: NOTIFY transactions per second and WAL written (pg_stat_database, pg_current_wal_lsn), CPU of
#     the heartbeat and catalog backends and of the proxy process (/proc/<pid>/stat), heartbeats sent, received and
#     missed (/metrics).  0 is the baseline without a heartbeat.
#
# Parameters (environment):
#   HISTORY_SECONDS  seconds of fault phases (0 skips part 1)     (300)
#   HISTORY_SEED     seed of the checker's choices               (random)
#   COST_SECONDS     seconds per heartbeat setting (0 skips 2)    (60)
#   HEARTBEATS       invalidation_heartbeat_ms values measured    ("0 100 20")
#   PROXY_BIN        proxy binary (copied at start)              (build/pulse-proxy)
#   PORT             first TCP port to try                       (27500)
#   WORK             scratch directory (removed on exit)         (/tmp/pulse-bench-history.PID)
#   OUT              report                                      (bench/results/<UTC date>-history.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

HISTORY_SECONDS=${HISTORY_SECONDS:-300}
COST_SECONDS=${COST_SECONDS:-60}
HEARTBEATS=${HEARTBEATS:-0 100 20}
PROXY_BIN=${PROXY_BIN:-build/pulse-proxy}
PORT=${PORT:-27500}
WORK=${WORK:-/tmp/pulse-bench-history.$$}
OUT=${OUT:-bench/results/$(date -u +%F)-history.md}
CMD="HISTORY_SECONDS=$HISTORY_SECONDS COST_SECONDS=$COST_SECONDS HEARTBEATS=\"$HEARTBEATS\"${HISTORY_SEED:+ HISTORY_SEED=$HISTORY_SEED} bench/history/run.sh"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
script_start=$(date -u +'%F %T')
log() { printf '%s bench-history: %s\n' "$(date -u +%T)" "$*" >&2; }

PIDS=()
trap bench_cleanup EXIT
mkdir -p "$WORK"
chmod 755 "$WORK"
[ -x "$PROXY_BIN" ] || { log "no proxy binary at $PROXY_BIN (make proxy)"; exit 1; }
cp "$PROXY_BIN" "$WORK/pulse-proxy"
if [ -z "${PGBIN:-}" ]; then
	PGBIN=$(BUILD_LOG=build/build.log scripts/pgroot.sh "$WORK/pgroot")
	export PGBIN
fi

# --- 1. the history -------------------------------------------------------------------------------------------------
history_rc=skipped
if [ "$HISTORY_SECONDS" -gt 0 ]; then
	log "history: $HISTORY_SECONDS s of fault phases"
	mkdir -p "$WORK/history"
	chmod 755 "$WORK/history"
	set +e
	FUZZ_SECONDS=$HISTORY_SECONDS PULSE_PROXY_BIN="$WORK/pulse-proxy" PULSE_TEST_PORT="$(free_port "$PORT")" \
		PULSE_TEST_TMP="$WORK/history" bash proxy/test/cache_history.sh >"$WORK/history.out" 2>&1
	history_rc=$?
	set -e
	log "history: exit status $history_rc"
fi

# --- 2. the heartbeat's cost ----------------------------------------------------------------------------------------
cpu_ticks() { # cpu_ticks PID...: utime + stime of the processes (clock ticks), 0 for one that is gone
	local p t=0
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] && t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
	done
	echo "$t"
}
metric() { curl -s "http://127.0.0.1:$HTTP/metrics" | awk -v k="$1" 'index($0, k " ") == 1 { print $2 }'; }
cost_rows=()
if [ "$COST_SECONDS" -gt 0 ]; then
	PG="$WORK/pg"
	PGPORT=$(free_port $((PORT + 20)))
	HTTP=$(free_port $((PGPORT + 1)))
	REDIS_PORT=$(free_port $((HTTP + 1)))
	PULSE_CRON_DB=pulse_hist scripts/cluster.sh start "$PG" "$PGPORT" >/dev/null
	psql_su() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG" -p "$PGPORT" -U postgres "$@"; }
	psql_su -d postgres -c "CREATE DATABASE pulse_hist" >/dev/null
	psql_su -d pulse_hist -c "CREATE EXTENSION pulse" >/dev/null
	psql_su -d pulse_hist -f proxy/test/history.sql >/dev/null
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 redis-cli -p "$REDIS_PORT" ping
	tck=$(getconf CLK_TCK)
	for hb in $HEARTBEATS; do
		cat >"$WORK/cost.yaml" <<CONF
listen: 127.0.0.1:$HTTP
pg_url: host=127.0.0.1 port=$PGPORT dbname=pulse_hist user=pulse_proxy
threads: 2
redis_url: redis://127.0.0.1:$REDIS_PORT
access_log: off
invalidation_heartbeat_ms: $hb
CONF
		PULSE_JWT_SECRET=bench "$WORK/pulse-proxy" --config "$WORK/cost.yaml" 2>>"$WORK/cost.err" &
		proxy=$!
		PIDS+=("$proxy")
		wait_for 10 curl -sf "http://127.0.0.1:$HTTP/ready"
		sleep 2
		backends=$(psql_su -d pulse_hist -Atc "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE application_name IN ('pulse-proxy catalog', 'pulse-proxy heartbeat')")
		q="SELECT sum(xact_commit), pg_current_wal_lsn() FROM pg_stat_database"
		IFS='|' read -r c0 lsn0 < <(psql_su -d pulse_hist -Atc "$q")
		b0=$(cpu_ticks $backends) p0=$(cpu_ticks "$proxy")
		s0=$(metric 'pulse_invalidation_heartbeats_total{result="sent"}') r0=$(metric 'pulse_invalidation_heartbeats_total{result="received"}')
		m0=$(metric 'pulse_invalidation_heartbeats_total{result="missed"}')
		t0=$(date +%s.%N)
		sleep "$COST_SECONDS"
		t1=$(date +%s.%N)
		IFS='|' read -r c1 lsn1 < <(psql_su -d pulse_hist -Atc "$q")
		b1=$(cpu_ticks $backends) p1=$(cpu_ticks "$proxy")
		s1=$(metric 'pulse_invalidation_heartbeats_total{result="sent"}') r1=$(metric 'pulse_invalidation_heartbeats_total{result="received"}')
		m1=$(metric 'pulse_invalidation_heartbeats_total{result="missed"}')
		wal=$(psql_su -d pulse_hist -Atc "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
		kill -TERM "$proxy"
		wait "$proxy" || true
		row=$(python3 -c "
import sys
hb, t0, t1, c0, c1, wal, b0, b1, p0, p1, tck = sys.argv[1:12]
s = [float(x or 0) for x in sys.argv[12:]]
d = float(t1) - float(t0)
print('| %s | %.1f | %.1f | %.1f | %.0f | %.2f%% | %.2f%% | %.0f / %.0f / %.0f |' % (hb, (s[1] - s[0]) / d, (s[3] - s[2]) / d,
      (float(c1) - float(c0)) / d, float(wal) / d, 100 * (int(b1) - int(b0)) / float(tck) / d,
      100 * (int(p1) - int(p0)) / float(tck) / d, s[1] - s[0], s[3] - s[2], s[5] - s[4]))
" "$hb" "$t0" "$t1" "$c0" "$c1" "$wal" "$b0" "$b1" "$p0" "$p1" "$tck" "${s0:-0}" "${s1:-0}" "${r0:-0}" "${r1:-0}" "${m0:-0}" "${m1:-0}")
		cost_rows+=("$row")
		log "cost: heartbeat $hb ms: $row"
	done
fi

# --- report ---------------------------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
	echo "# Cache history and heartbeat cost ($(date -u +%F))"
	echo
	echo "Command: \`$CMD\` (started $script_start UTC, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))."
	echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "## 1. History (\`proxy/test/cache_history.sh\`, FUZZ_SECONDS=$HISTORY_SECONDS): exit status $history_rc"
	echo
	if [ -f "$WORK/history.out" ]; then
		echo '```'
		grep -v '^#   ' "$WORK/history.out" | grep -v '^# *[0-9.]* s ' || true
		echo '```'
	else
		echo "(skipped)"
	fi
	echo
	echo "## 2. Heartbeat cost (one idle proxy, 2 loops, $COST_SECONDS s per setting)"
	echo
	echo "| invalidation_heartbeat_ms | beats sent/s | beats received/s | commits/s (all databases) | WAL bytes/s | CPU of the catalog + heartbeat backends | CPU of the proxy | sent / received / missed |"
	echo "|---|---|---|---|---|---|---|---|"
	for r in "${cost_rows[@]}"; do echo "$r"; done
	echo
	echo "CPU as a share of one core; 0 is the baseline (no heartbeat: the catalog backend only)."
} >"$OUT"
log "report: $OUT"
[ "$history_rc" = skipped ] || [ "$history_rc" = 0 ]
