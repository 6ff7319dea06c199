#!/usr/bin/env bash
# Keyset pagination (pulse.page) versus LIMIT/OFFSET at depth, with pgbench.
# See bench/page/README.md.  `make bench-page` runs it with the defaults.
#
# Starts its own throwaway PostgreSQL 15 cluster (scripts/cluster.sh) under
# /tmp, loads a deterministic dataset, builds the deep cursors by paging,
# checks that both methods return the same rows, then for REPEATS rounds runs
# every scenario (keyset and offset at every depth, side by side) for
# DURATION seconds and writes a Markdown report.  The cluster and the dataset
# are destroyed on exit, whatever happens.
#
# Parameters (environment):
#   ROWS       rows in bench_events                  (5000000)
#   DURATION   seconds per pgbench run                (15)
#   DEPTHS     page depths, in rows                   ("0 1000000 4000000")
#   REPEATS    rounds of all scenarios; median taken  (3)
#   CLIENTS    pgbench clients (= threads)            (2)
#   PAGE_SIZE  rows per page                          (50)
#   PORT       first TCP port to try                  (25450)
#   BENCH_DIR  cluster directory (removed on exit)    (/tmp/pulse-bench-page.PID)
#   OUT        report file           (bench/results/<UTC date>-page-depth.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

ROWS=${ROWS:-5000000}
DURATION=${DURATION:-15}
DEPTHS=${DEPTHS:-"0 1000000 4000000"}
REPEATS=${REPEATS:-3}
CLIENTS=${CLIENTS:-2}
PAGE_SIZE=${PAGE_SIZE:-50}
PORT=$(free_port "${PORT:-25450}")
BENCH_DIR=${BENCH_DIR:-/tmp/pulse-bench-page.$$}
OUT=${OUT:-bench/results/$(date -u +%F)-page-depth.md}
DB=pulse_bench
QUERY='SELECT id, tenant_id, created_at, kind, amount, note FROM bench_events'
ORDER='created_at, id'
CMD="ROWS=$ROWS DURATION=$DURATION DEPTHS=\"$DEPTHS\" REPEATS=$REPEATS CLIENTS=$CLIENTS PAGE_SIZE=$PAGE_SIZE bench/page/run.sh"

for d in $DEPTHS; do
	[[ $d =~ ^[0-9]+$ ]] && [ "$d" -le $((ROWS - PAGE_SIZE)) ] ||
		{ echo "bench-page: depth $d is not in 0..ROWS-PAGE_SIZE" >&2; exit 2; }
done
first_depth=${DEPTHS%% *}
[ "$first_depth" = 0 ] || { echo "bench-page: DEPTHS must start with 0 (page 1)" >&2; exit 2; }

log() { printf '%s bench-page: %s\n' "$(date -u +%T)" "$*" >&2; }

cleanup() {
	scripts/cluster.sh destroy "$BENCH_DIR" >/dev/null 2>&1 || true
	rm -rf "$BENCH_DIR.pgroot"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A read-only benchmark: fsync off only speeds up the load.  shared_buffers
# holds the whole dataset, so the runs measure CPU, not the disk.
log "cluster in $BENCH_DIR on port $PORT"
mkdir -p "$BENCH_DIR.pgroot" && chmod 755 "$BENCH_DIR.pgroot"
PGBIN=$(scripts/pgroot.sh "$BENCH_DIR.pgroot")
export PGBIN
PULSE_FSYNC=off PULSE_SHARED_BUFFERS=${PULSE_SHARED_BUFFERS:-1GB} PULSE_CRON_DB=postgres \
	scripts/cluster.sh start "$BENCH_DIR" "$PORT" >/dev/null
export PGHOST=$BENCH_DIR PGPORT=$PORT PGUSER=postgres
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE $DB"
psql -d "$DB" -c "CREATE EXTENSION pulse" -c "CREATE EXTENSION pg_prewarm"

log "loading $ROWS rows"
t0=$(date +%s)
psql -d "$DB" -v rows="$ROWS" -f bench/page/dataset.sql
load_secs=$(($(date +%s) - t0))
table_size=$(psql -d "$DB" -Atc "SELECT pg_size_pretty(pg_table_size('bench_events'))")
index_size=$(psql -d "$DB" -Atc "SELECT pg_size_pretty(pg_relation_size('bench_events_created_at_id'))")
distinct_ts=$(psql -d "$DB" -Atc "SELECT count(DISTINCT created_at) FROM bench_events")
log "loaded in ${load_secs}s: table $table_size, (created_at, id) index $index_size"

# Deep cursors can only be had by paging: walk the table with pages of up to
# 10000 rows and keep the next_cursor at every depth under test.
log "paging to the deep cursors"
t0=$(date +%s)
depth_list=$(echo "$DEPTHS" | tr ' ' ',')
psql -d "$DB" -v query="$QUERY" -v order_by="$ORDER" -v depths="{$depth_list}" <<'SQL'
SELECT set_config('bench.query', :'query', false),
       set_config('bench.order_by', :'order_by', false),
       set_config('bench.depths', :'depths', false) \g /dev/null
DO $$
DECLARE
	q       text := current_setting('bench.query');
	ob      text := current_setting('bench.order_by');
	targets bigint[] := current_setting('bench.depths')::bigint[];
	target  bigint;
	cur     text := NULL;
	depth   bigint := 0;
	step    int;
	res     jsonb;
BEGIN
	FOREACH target IN ARRAY (SELECT array_agg(t ORDER BY t) FROM unnest(targets) t WHERE t > 0)
	LOOP
		WHILE depth < target LOOP
			step := least(10000, target - depth);
			res := pulse.page(q, ob, cur, step);
			IF jsonb_array_length(res->'items') <> step OR res->>'next_cursor' IS NULL THEN
				RAISE EXCEPTION 'paging stopped at depth %', depth;
			END IF;
			cur := res->>'next_cursor';
			depth := depth + step;
		END LOOP;
		INSERT INTO bench_cursor VALUES (target, cur);
	END LOOP;
END
$$;
SQL
cursor_secs=$(($(date +%s) - t0))
log "deep cursors built in ${cursor_secs}s"

# Same rows, same order, from both methods, at every depth.
for d in $DEPTHS; do
	ok=$(psql -d "$DB" -At -v q="$QUERY" -v ob="$ORDER" -v d="$d" -v n="$PAGE_SIZE" <<'SQL'
SELECT (SELECT array_agg((e->>'id')::bigint ORDER BY o)
        FROM jsonb_array_elements(pulse.page(:'q', :'ob',
                 (SELECT c FROM bench_cursor WHERE depth = :d), :n)->'items')
             WITH ORDINALITY AS t(e, o))
     = (SELECT array_agg(id ORDER BY created_at, id)
        FROM (SELECT id, created_at FROM bench_events
              ORDER BY created_at, id LIMIT :n OFFSET :d) s);
SQL
)
	[ "$ok" = t ] || { log "keyset and offset pages differ at depth $d"; exit 1; }
done
log "keyset and offset pages agree at depths $DEPTHS"

# Plans, once, for the report: the generated keyset query with the key values
# of the deepest cursor bound, and the offset query at the same depth.
deepest=${DEPTHS##* }
explain=$(psql -d "$DB" -At -v q="$QUERY" -v ob="$ORDER" 2>&1 <<'SQL' || true
SELECT jsonb_pretty(pulse.explain_page(:'q', :'ob'));
SQL
)
keyset_sql=$(psql -d "$DB" -At -v q="$QUERY" -v ob="$ORDER" 2>/dev/null <<'SQL' || true
SELECT pulse.explain_page(:'q', :'ob')->>'sql';
SQL
)
keyset_plan="(not available)"
if [ -n "$keyset_sql" ] && [ "$deepest" -gt 0 ]; then
	keyset_plan=$(psql -d "$DB" -v sql="$keyset_sql" -v d="$deepest" 2>&1 <<'SQL' || true
SELECT created_at AS k1, id AS k2 FROM bench_events
ORDER BY created_at, id LIMIT 1 OFFSET :d - 1 \gset
SELECT format('PREPARE bench_keyset AS %s', :'sql') \gexec
EXECUTE bench_keyset(:'k1', :'k2') \g /dev/null
\pset format unaligned
\pset tuples_only on
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE bench_keyset(:'k1', :'k2');
SQL
)
fi
offset_plan=$(psql -d "$DB" -At -v d="$deepest" -v n="$PAGE_SIZE" 2>&1 <<'SQL' || true
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT jsonb_agg(to_jsonb(s))
FROM (SELECT id, tenant_id, created_at, kind, amount, note FROM bench_events
      ORDER BY created_at, id LIMIT :n OFFSET :d) AS s;
SQL
)

# Everything in shared_buffers before the first measurement.
psql -d "$DB" -At -c "SELECT pg_prewarm('bench_events'), pg_prewarm('bench_events_created_at_id'), pg_prewarm('bench_events_pkey')" >/dev/null

LOGDIR=$BENCH_DIR/logs
mkdir -p "$LOGDIR"
RESULTS=$LOGDIR/results.tsv	# round scenario depth tps p50_ms p99_ms txns
: >"$RESULTS"
PGBENCH_CMD="$PGBIN/pgbench -n -M prepared -c $CLIENTS -j $CLIENTS -T $DURATION"

# run_one ROUND SCENARIO DEPTH: one pgbench run; appends a line to $RESULTS.
run_one() {
	local round=$1 scen=$2 depth=$3 secs=${4:-$DURATION} name cursor rc
	name=$scen-$depth-r$round
	mkdir -p "$LOGDIR/$name"
	if [ "$scen" = keyset ]; then
		cursor=-
		[ "$depth" = 0 ] || cursor=$(psql -d "$DB" -Atc "SELECT c FROM bench_cursor WHERE depth = $depth")
		set -- -f bench/page/keyset.sql -D cursor="$cursor"
	else
		set -- -f bench/page/offset.sql -D depth="$depth"
	fi
	rc=0
	$PGBIN/pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$secs" "$@" -D page_size="$PAGE_SIZE" --log --log-prefix="$LOGDIR/$name/tx" \
		"$DB" >"$LOGDIR/$name.out" 2>&1 || rc=$?
	if [ $rc -ne 0 ] || grep -q "aborted in command\|ERROR" "$LOGDIR/$name.out"; then
		log "pgbench failed for $name:"; cat "$LOGDIR/$name.out" >&2; exit 1
	fi
	local tps
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$LOGDIR/$name.out")
	# pgbench --log lines: client_id transaction_no latency_us script_no epoch_s epoch_us
	cat "$LOGDIR/$name"/tx.* | awk '{print $3}' | sort -n | awk -v r="$round" -v s="$scen" -v d="$depth" -v tps="$tps" '
		{ v[NR] = $1 }
		END {
			i50 = int(NR * 0.50 + 0.999999); if (i50 < 1) i50 = 1
			i99 = int(NR * 0.99 + 0.999999); if (i99 < 1) i99 = 1
			printf "%s\t%s\t%s\t%.1f\t%.3f\t%.3f\t%d\n", r, s, d, tps, v[i50] / 1000, v[i99] / 1000, NR
		}' >>"$RESULTS"
	log "round $round $scen depth $depth: $(tail -n 1 "$RESULTS" | awk -F'\t' '{printf "%s tps, p50 %s ms, p99 %s ms, %s txns", $4, $5, $6, $7}')"
}

# Unmeasured warm-up: the first run of a fresh server pays for catalog and
# plan caches.
for d in 0 $deepest; do
	run_one 0 keyset "$d" 3
	run_one 0 offset "$d" 3
done
: >"$RESULTS"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bench_start=$(date -u +'%F %T')
for round in $(seq 1 "$REPEATS"); do
	for d in $DEPTHS; do
		run_one "$round" keyset "$d"
		run_one "$round" offset "$d"
	done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
bench_end=$(date -u +'%F %T')

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
pg_version=$(psql -d "$DB" -Atc "SELECT version()")
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)

# median LIST: median of whitespace-separated numbers
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -F'\t' -v s="$1" -v d="$2" -v c="$3" '$2 == s && $3 == d {printf "%s ", $c}' "$RESULTS"; }
# per-round ratio of p50 (column 5) of (s1, d1) over (s2, d2), then the median
ratio() {
	awk -F'\t' -v s1="$1" -v d1="$2" -v s2="$3" -v d2="$4" '
		$2 == s1 && $3 == d1 {a[$1] = $5}
		$2 == s2 && $3 == d2 {b[$1] = $5}
		END {for (r in a) if (b[r] > 0) printf "%.4f ", a[r] / b[r]}' "$RESULTS" | median
}
fmt() { awk -v x="$1" -v p="$2" 'BEGIN {printf "%.*f", p, x}'; }

mkdir -p "$(dirname "$OUT")"
{
	echo "# Keyset pagination (pulse.page) vs LIMIT/OFFSET at depth"
	echo
	echo "Generated by \`bench/page/run.sh\` ($bench_start to $bench_end UTC). See \`bench/page/README.md\`."
	echo
	echo "## Command"
	echo
	echo '```'
	echo "$CMD"
	echo '```'
	echo
	echo "Each scenario is one pgbench run:"
	echo
	echo '```'
	echo "$PGBENCH_CMD -f bench/page/keyset.sql -D cursor=<next_cursor at DEPTH, '-' for page 1> -D page_size=$PAGE_SIZE --log pulse_bench"
	echo "$PGBENCH_CMD -f bench/page/offset.sql -D depth=<DEPTH> -D page_size=$PAGE_SIZE --log pulse_bench"
	echo '```'
	echo
	echo "Order of runs: $REPEATS rounds; in each round, for each depth, keyset then offset."
	echo "p50/p99 come from pgbench's per-transaction log (all $CLIENTS clients); every number in the"
	echo "main table is the median over the $REPEATS rounds, and each ratio is the median of the"
	echo "ratios measured within one round (side by side, a few seconds apart)."
	echo
	echo "## Machine"
	echo
	echo "- CPU: ${cpu:-unknown}, $(nproc) cores visible, shared with other engineers' builds and tests"
	echo "  (load average $load_before before the runs, $load_after after)"
	echo "- Memory: $mem"
	echo "- $pg_version"
	echo "- Cluster: scripts/cluster.sh defaults, shared_buffers = ${PULSE_SHARED_BUFFERS:-1GB} (the whole dataset is prewarmed"
	echo "  into it), fsync = off (read-only benchmark); clients over the Unix socket"
	echo
	echo "## Dataset"
	echo
	echo "\`bench/page/dataset.sql\`, deterministic (generate_series): $ROWS rows of"
	echo "\`bench_events(id bigint, tenant_id int, created_at timestamptz, kind text, amount numeric(12,2), note text)\`,"
	echo "all NOT NULL, a normal logged table ($table_size), primary key on id and a btree on (created_at, id)"
	echo "($index_size) built after the load, then VACUUM ANALYZE. created_at follows id with jitter"
	echo "($distinct_ts distinct values, so ties are broken by id). Load: ${load_secs}s; paging to the deep"
	echo "cursors with pages of 10000 rows: ${cursor_secs}s. Page size $PAGE_SIZE, order \`$ORDER\`,"
	echo "base query \`$QUERY\`. Before the runs the script checks that both methods return the same"
	echo "$PAGE_SIZE ids at every depth."
	echo
	echo "## Results (median of $REPEATS rounds, ${DURATION}s per run, $CLIENTS clients)"
	echo
	echo "| scenario | depth (rows) | TPS | p50 ms | p99 ms | transactions | p50 vs page 1 | p50 offset / keyset |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for scen in keyset offset; do
		for d in $DEPTHS; do
			tps=$(col "$scen" "$d" 4 | median)
			p50=$(col "$scen" "$d" 5 | median)
			p99=$(col "$scen" "$d" 6 | median)
			r1=$(ratio "$scen" "$d" "$scen" 0)
			n=$(col "$scen" "$d" 7 | median)
			ro=-
			[ "$scen" = keyset ] || ro="$(fmt "$(ratio offset "$d" keyset "$d")" 1)x"
			printf '| %s | %s | %s | %s | %s | %s | %sx | %s |\n' "$scen" "$d" \
				"$(fmt "$tps" 1)" "$(fmt "$p50" 3)" "$(fmt "$p99" 3)" "$(fmt "$n" 0)" "$(fmt "$r1" 2)" "$ro"
		done
	done
	echo
	echo "\"p50 vs page 1\" compares with the same method at depth 0; \"offset / keyset\" compares the two"
	echo "methods at the same depth. \"transactions\" is the number of pages fetched in one ${DURATION}s run (all"
	echo "clients): where it is small, p99 is close to the slowest page and is only indicative."
	echo
	echo "### Every run"
	echo
	echo "| round | scenario | depth | TPS | p50 ms | p99 ms | transactions |"
	echo "|---:|---|---:|---:|---:|---:|---:|"
	awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7}' "$RESULTS"
	echo
	echo "## Plans at depth $deepest"
	echo
	echo "\`pulse.explain_page(query, order_by)\`:"
	echo
	echo '```json'
	echo "$explain"
	echo '```'
	echo
	echo "The generated keyset query, prepared and run with the key values of the row at depth $deepest"
	echo "(after one warm-up execution, \`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)\`):"
	echo
	echo '```'
	echo "$keyset_sql"
	echo '```'
	echo
	echo '```'
	echo "$keyset_plan"
	echo '```'
	echo
	echo "The OFFSET query at the same depth:"
	echo
	echo '```'
	echo "$offset_plan"
	echo '```'
} >"$OUT"
log "report written to $OUT"
