#!/usr/bin/env bash
# Materialized aggregates: incremental refresh vs full refresh vs REFRESH
# MATERIALIZED VIEW, and read latency of the aggregate vs computing on demand
# under concurrent writes.  See bench/aggregates/README.md.
#
# Starts its own throwaway PostgreSQL 15 cluster (scripts/cluster.sh) under
# /tmp, loads ROWS rows, then
#   1. REPEATS rounds of: change CHANGED random rows, time the incremental
#      refresh; change CHANGED rows, time the full refresh (pulse); time
#      REFRESH MATERIALIZED VIEW and REFRESH MATERIALIZED VIEW CONCURRENTLY of
#      the same query (medians reported);
#   2. with a pgbench writer updating WRITE_RATE random rows per second and
#      the pulse worker refreshing the aggregate every second, one pgbench
#      reader per scenario for DURATION seconds: a point lookup and a top-10,
#      each from the aggregate and computed on demand (p50/p95/p99 from
#      pgbench's per-transaction log).
# Writes a Markdown report; the cluster is destroyed on exit.
#
# Parameters (environment):
#   ROWS        rows in bench_sales                 (5000000)
#   NGROUPS      distinct accounts (groups)          (50000)
#   CHANGED     rows changed before each refresh    (1000)
#   REPEATS     rounds of refresh timings           (5)
#   DURATION    seconds per pgbench reader run      (10)
#   WRITE_RATE  writer transactions per second      (200)
#   PORT        first TCP port to try               (55470)
#   BENCH_DIR   cluster directory (removed on exit) (/tmp/pulse-bench-agg.PID)
#   OUT         report file    (bench/results/<UTC date>-aggregates.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. bench/aggregates/common.sh

REPEATS=${REPEATS:-5}
DURATION=${DURATION:-10}
WRITE_RATE=${WRITE_RATE:-200}
PORT=$(free_port "${PORT:-55470}")
BENCH_DIR=${BENCH_DIR:-/tmp/pulse-bench-agg.$$}
OUT=${OUT:-bench/results/$(date -u +%F)-aggregates.md}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
CMD="ROWS=$ROWS NGROUPS=$NGROUPS CHANGED=$CHANGED REPEATS=$REPEATS DURATION=$DURATION WRITE_RATE=$WRITE_RATE bench/aggregates/run.sh"

log() { printf '%s bench-aggregates: %s\n' "$(date -u +%T)" "$*" >&2; }
cleanup() { scripts/cluster.sh destroy "$BENCH_DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$(date -u '+%F %T')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "cluster in $BENCH_DIR on port $PORT"
PULSE_FSYNC=off PULSE_SHARED_BUFFERS=${PULSE_SHARED_BUFFERS:-1GB} PULSE_CRON_DB=postgres \
	scripts/cluster.sh start "$BENCH_DIR" "$PORT" >/dev/null
export PGHOST=$BENCH_DIR PGPORT=$PORT PGUSER=postgres
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
agg_bench_db psql

# ms SQL: server round trip of one statement, in milliseconds (psql \timing)
ms() { agg_ms "$1" psql -d "$DB"; }
change_rows() { psql -d "$DB" -c "$(agg_change_sql)"; }

log "loading $ROWS rows in $NGROUPS groups"
t0=$(date +%s)
agg_dataset_sql | psql -d "$DB"
load_secs=$(($(date +%s) - t0))
table_size=$(psql -d "$DB" -Atc "SELECT pg_size_pretty(pg_table_size('bench_sales'))")
log "loaded in ${load_secs}s ($table_size)"

create_ms=$(ms "SELECT pulse.create_aggregate('bench_agg', '$Q', '1 hour')")
mv_ms=$(ms "CREATE MATERIALIZED VIEW bench_mv AS $Q")
psql -d "$DB" -c "CREATE UNIQUE INDEX ON bench_mv (account)" -c "ANALYZE bench_agg" -c "ANALYZE bench_mv"
mode=$(psql -d "$DB" -Atc "SELECT mode FROM pulse.aggregates WHERE name = 'bench_agg'")
log "aggregate created in ${create_ms} ms ($mode); materialized view in ${mv_ms} ms"

: >"$BENCH_DIR/inc" ; : >"$BENCH_DIR/full" ; : >"$BENCH_DIR/mv" ; : >"$BENCH_DIR/mvc"
for r in $(seq 1 "$REPEATS"); do
	change_rows
	echo "$(ms "SELECT pulse.refresh_aggregate('bench_agg')")" >>"$BENCH_DIR/inc"
	change_rows
	echo "$(ms "SELECT pulse.refresh_aggregate('bench_agg', true)")" >>"$BENCH_DIR/full"
	echo "$(ms "REFRESH MATERIALIZED VIEW CONCURRENTLY bench_mv")" >>"$BENCH_DIR/mvc"
	echo "$(ms "REFRESH MATERIALIZED VIEW bench_mv")" >>"$BENCH_DIR/mv"
	log "round $r: incremental $(tail -n1 "$BENCH_DIR/inc") ms, full $(tail -n1 "$BENCH_DIR/full") ms, matview $(tail -n1 "$BENCH_DIR/mv") ms, concurrently $(tail -n1 "$BENCH_DIR/mvc") ms"
done
inc_rows=$(psql -d "$DB" -Atc "SELECT rows_changed FROM pulse.aggregate_runs WHERE mode = 'incremental' ORDER BY id DESC LIMIT 1")
full_rows=$(psql -d "$DB" -Atc "SELECT rows_changed FROM pulse.aggregate_runs WHERE mode = 'full' ORDER BY id DESC LIMIT 1")
psql -d "$DB" -c "SELECT pulse.refresh_aggregate('bench_agg')" >/dev/null
diff_rows=$(psql -d "$DB" -Atc "$(agg_diff_sql)")
[ "$diff_rows" = 0 ] || { log "the aggregate differs from its query in $diff_rows rows"; exit 1; }

# --- read latency under writes ------------------------------------------------
cat >"$BENCH_DIR/write.sql" <<SQL
\set id random(1, $ROWS)
UPDATE bench_sales SET amount = amount + 1 WHERE id = :id;
SQL
cat >"$BENCH_DIR/point_agg.sql" <<SQL
\set a random(1, $NGROUPS)
SELECT * FROM bench_agg WHERE account = :a;
SQL
cat >"$BENCH_DIR/point_live.sql" <<SQL
\set a random(1, $NGROUPS)
SELECT account, count(*) AS n, sum(amount) AS total, min(amount) AS lo, max(amount) AS hi, avg(amount) AS mean FROM bench_sales WHERE account = :a GROUP BY account;
SQL
cat >"$BENCH_DIR/top_agg.sql" <<SQL
SELECT account, total FROM bench_agg ORDER BY total DESC LIMIT 10;
SQL
cat >"$BENCH_DIR/top_live.sql" <<SQL
SELECT account, sum(amount) AS total FROM bench_sales GROUP BY account ORDER BY total DESC LIMIT 10;
SQL
psql -d "$DB" -c "CREATE INDEX ON bench_agg (total)"
# let the worker keep the aggregate fresh during the runs (admin tweak)
psql -d "$DB" -c "UPDATE pulse.aggregate_defs SET refresh_interval = '1 second'"
runs_before=$(psql -d "$DB" -Atc "SELECT coalesce(max(id), 0) FROM pulse.aggregate_runs")

pct() { # file percentile -> latency in ms from pgbench's log (3rd field, us)
	awk '{ print $3 }' "$1" | sort -n | awk -v p="$2" '{ a[NR] = $1 } END { i = int(NR * p / 100); if (i < 1) i = 1; printf "%.2f", a[i] / 1000 }'
}
declare -A P50 P95 P99 TPS
for s in point_agg point_live top_agg top_live; do
	log "reader $s for ${DURATION}s with a writer at $WRITE_RATE tx/s"
	"$PGBIN/pgbench" -n -M prepared -c 1 -j 1 -R "$WRITE_RATE" -T "$DURATION" \
		-f "$BENCH_DIR/write.sql" "$DB" >"$BENCH_DIR/writer_$s.out" 2>&1 &
	wpid=$!
	(cd "$BENCH_DIR" && rm -f pgbench_log.* &&
		"$PGBIN/pgbench" -n -M prepared -c 1 -j 1 -T "$DURATION" --log \
			-f "$BENCH_DIR/$s.sql" "$DB" >"$BENCH_DIR/reader_$s.out" 2>&1 &&
		cat pgbench_log.* >"$BENCH_DIR/lat_$s" && rm -f pgbench_log.*)
	wait "$wpid"
	P50[$s]=$(pct "$BENCH_DIR/lat_$s" 50)
	P95[$s]=$(pct "$BENCH_DIR/lat_$s" 95)
	P99[$s]=$(pct "$BENCH_DIR/lat_$s" 99)
	TPS[$s]=$(sed -n 's/^tps = \([0-9]*\.[0-9]\).*/\1/p' "$BENCH_DIR/reader_$s.out" | head -n1)
	log "$s: p50 ${P50[$s]} ms, p95 ${P95[$s]} ms, p99 ${P99[$s]} ms, ${TPS[$s]} tps"
done
read -r nruns med_run max_run med_rows <<<"$(psql -d "$DB" -At -F' ' -c "
	SELECT count(*),
	       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM duration)) * 1000)::numeric, 1),
	       round((max(extract(epoch FROM duration)) * 1000)::numeric, 1),
	       percentile_cont(0.5) WITHIN GROUP (ORDER BY rows_changed)
	  FROM pulse.aggregate_runs WHERE id > $runs_before AND error IS NULL")"
writer_tps=$(sed -n 's/^tps = \([0-9]*\).*/\1/p' "$BENCH_DIR/writer_point_agg.out" | head -n1)

finished=$(date -u '+%F %T')
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
inc_med=$(median <"$BENCH_DIR/inc"); full_med=$(median <"$BENCH_DIR/full")
mv_med=$(median <"$BENCH_DIR/mv"); mvc_med=$(median <"$BENCH_DIR/mvc")
mkdir -p "$(dirname "$OUT")"
cat >"$OUT" <<MD
# Materialized aggregates: incremental vs full refresh vs REFRESH MATERIALIZED VIEW

Generated by \`bench/aggregates/run.sh\` ($started to $finished UTC). See \`bench/aggregates/README.md\`.

## Command

\`\`\`
$CMD
\`\`\`

## Machine

- CPU: $(nproc) cores visible, shared with other engineers' builds and tests
  (load average $load_before before the runs, $load_after after)
- $(command psql -X -d "$DB" -Atc "SELECT version()")
- Cluster: scripts/cluster.sh defaults, shared_buffers = ${PULSE_SHARED_BUFFERS:-1GB}, fsync = off; clients over the Unix socket
- work_mem = 64MB for the benchmark database (ALTER DATABASE), the default of
  pulse.refresh_work_mem, so that every refresh method hashes its groups in memory

## Dataset

\`bench_sales(id bigint PRIMARY KEY, account int, kind int, amount int, created timestamptz)\`,
$ROWS rows ($table_size), $NGROUPS accounts (about $((ROWS / NGROUPS)) rows each, spread by a hash of id),
btree on account. Load: ${load_secs}s. Aggregate query (incremental mode: \`$mode\`):

\`\`\`
$Q
\`\`\`

\`pulse.create_aggregate\` (fill + unique index + triggers): $create_ms ms;
\`CREATE MATERIALIZED VIEW\` of the same query: $mv_ms ms (plus a unique index on account for CONCURRENTLY).

## Refresh after $CHANGED changed rows (median of $REPEATS rounds, ms)

Each round: update $CHANGED random rows
(\`UPDATE bench_sales SET amount = amount + 1 WHERE id IN (<$CHANGED random ids>)\`), time the
incremental refresh; update $CHANGED other random rows, time the full refresh, then
REFRESH MATERIALIZED VIEW CONCURRENTLY, then plain REFRESH MATERIALIZED VIEW (so each
pulse refresh and the CONCURRENTLY one see exactly $CHANGED changed rows).

| method | median ms | runs (ms) | rows written |
|---|---:|---|---:|
| \`pulse.refresh_aggregate('bench_agg')\` (incremental) | $inc_med | $(paste -sd' ' "$BENCH_DIR/inc") | $inc_rows |
| \`pulse.refresh_aggregate('bench_agg', true)\` (full, diff applied) | $full_med | $(paste -sd' ' "$BENCH_DIR/full") | $full_rows |
| \`REFRESH MATERIALIZED VIEW bench_mv\` | $mv_med | $(paste -sd' ' "$BENCH_DIR/mv") | all |
| \`REFRESH MATERIALIZED VIEW CONCURRENTLY bench_mv\` | $mvc_med | $(paste -sd' ' "$BENCH_DIR/mvc") | diff |

Incremental vs full: $(awk -v a="$full_med" -v b="$inc_med" 'BEGIN { printf "%.0fx", a / b }') faster;
vs REFRESH MATERIALIZED VIEW: $(awk -v a="$mv_med" -v b="$inc_med" 'BEGIN { printf "%.0fx", a / b }');
vs CONCURRENTLY: $(awk -v a="$mvc_med" -v b="$inc_med" 'BEGIN { printf "%.0fx", a / b }').
Plain REFRESH MATERIALIZED VIEW takes an ACCESS EXCLUSIVE lock: readers wait for it.
After the rounds the aggregate was checked equal to its query (0 differing rows).

## Read latency under concurrent writes (ms)

A pgbench writer (\`-c 1 -R $WRITE_RATE\`, $writer_tps tps measured) updates one random
row per transaction while a single pgbench reader (\`-n -M prepared -c 1 -T $DURATION --log\`)
runs each script; the pulse worker refreshes the aggregate (refresh interval 1 s).

| reader | p50 | p95 | p99 | tps |
|---|---:|---:|---:|---:|
| point lookup, aggregate (\`SELECT * FROM bench_agg WHERE account = :a\`) | ${P50[point_agg]} | ${P95[point_agg]} | ${P99[point_agg]} | ${TPS[point_agg]} |
| point lookup, on demand (\`... FROM bench_sales WHERE account = :a GROUP BY account\`) | ${P50[point_live]} | ${P95[point_live]} | ${P99[point_live]} | ${TPS[point_live]} |
| top 10, aggregate (\`... FROM bench_agg ORDER BY total DESC LIMIT 10\`) | ${P50[top_agg]} | ${P95[top_agg]} | ${P99[top_agg]} | ${TPS[top_agg]} |
| top 10, on demand (\`... FROM bench_sales GROUP BY account ORDER BY total DESC LIMIT 10\`) | ${P50[top_live]} | ${P95[top_live]} | ${P99[top_live]} | ${TPS[top_live]} |

During these runs the worker refreshed the aggregate $nruns times (incremental),
median $med_run ms, max $max_run ms, median $med_rows rows written per refresh.
A change reaches the aggregate after at most the refresh interval (1 s) plus the
worker's nap (pulse.worker_naptime, 1 s) plus one refresh.
MD
log "report written to $OUT"
