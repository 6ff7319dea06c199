#!/usr/bin/env bash
# bench/data/load.sh DB OUTDIR: creates and loads the load-test dataset into
# database DB (which must exist, with the pulse extension) of the server
# PGHOST/PGPORT/PGUSER (a superuser), then writes into OUTDIR:
#
#   samples.tsv   "id<TAB>tenant_id" of about SAMPLES rows drawn uniformly
#                 from the events (hence Zipf-skewed over the tenants): the
#                 load scripts pick ids and tenants from it
#   facts.env     shell assignments: LOAD_SECS, EVENTS_SIZE, INDEX_SIZE,
#                 TOP1_SHARE, TOP10_SHARE, TOP100_SHARE (fractions of rows)
#
# Environment: ROWS (10000000), TENANTS (1000), JOBS (parallel loading
# sessions, default: cores), CHUNK (rows per transaction, 1000000),
# SAMPLES (50000).  Deterministic: the same ROWS and TENANTS give the same
# table whatever JOBS and CHUNK are (bench/data/load.sql).
set -euo pipefail
cd "$(dirname "$0")/../.."
DB=${1:?usage: load.sh DB OUTDIR}
OUTDIR=${2:?usage: load.sh DB OUTDIR}
ROWS=${ROWS:-10000000}
TENANTS=${TENANTS:-1000}
JOBS=${JOBS:-$(nproc)}
CHUNK=${CHUNK:-1000000}
SAMPLES=${SAMPLES:-50000}
[[ $ROWS =~ ^[0-9]+$ && $ROWS -ge 1000 ]] || { echo "load: ROWS must be >= 1000" >&2; exit 2; }
[[ $TENANTS =~ ^[0-9]+$ && $TENANTS -ge 1 ]] || { echo "load: TENANTS must be >= 1" >&2; exit 2; }
mkdir -p "$OUTDIR"

log() { printf '%s bench-data: %s\n' "$(date -u +%T)" "$*" >&2; }
psql() { command psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

t0=$(date +%s)
psql -f bench/data/schema.sql

# JOBS sessions, each taking every JOBS-th chunk of CHUNK ids.
log "loading $ROWS events of $TENANTS tenants ($JOBS sessions, $CHUNK rows per transaction)"
pids=()
for j in $(seq 0 $((JOBS - 1))); do
	(
		lo=$((1 + j * CHUNK))
		while [ "$lo" -le "$ROWS" ]; do
			hi=$((lo + CHUNK - 1))
			[ "$hi" -le "$ROWS" ] || hi=$ROWS
			psql -v lo="$lo" -v hi="$hi" -v rows="$ROWS" -v tenants="$TENANTS" -f bench/data/load.sql
			lo=$((lo + JOBS * CHUNK))
		done
	) &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
log "rows in $(($(date +%s) - t0))s; indexes, policies, endpoints, aggregate"
psql -v rows="$ROWS" -v tenants="$TENANTS" -f bench/data/finish.sql >/dev/null
psql -c "VACUUM (ANALYZE) bench.events" -c "ANALYZE bench.tenants"
# the aggregate first: api.sql's tenant_stats reads its table
psql -f bench/data/aggregate.sql >/dev/null
psql -f bench/data/api.sql >/dev/null
LOAD_SECS=$(($(date +%s) - t0))

pct=$(awk -v s="$SAMPLES" -v r="$ROWS" 'BEGIN {p = 100 * s / r; if (p > 100) p = 100; printf "%.6f", p}')
psql -c "\\copy (SELECT id, tenant_id FROM bench.events TABLESAMPLE BERNOULLI ($pct) REPEATABLE (42) ORDER BY id) TO '$OUTDIR/samples.tsv'"

psql -At -F' ' >"$OUTDIR/facts.env" <<SQL
SELECT 'LOAD_SECS=$LOAD_SECS';
SELECT format('EVENTS_SIZE=%L', pg_size_pretty(pg_table_size('bench.events')));
SELECT format('INDEX_SIZE=%L', pg_size_pretty(pg_indexes_size('bench.events')));
WITH t AS (SELECT tenant_id, count(*) AS n, row_number() OVER (ORDER BY count(*) DESC) AS r
             FROM bench.events GROUP BY tenant_id)
SELECT format('TOP1_SHARE=%s TOP10_SHARE=%s TOP100_SHARE=%s TENANTS_WITH_ROWS=%s',
              round(sum(n) FILTER (WHERE r <= 1) / sum(n), 3),
              round(sum(n) FILTER (WHERE r <= 10) / sum(n), 3),
              round(sum(n) FILTER (WHERE r <= 100) / sum(n), 3),
              count(*))
  FROM t;
SQL
log "dataset ready in ${LOAD_SECS}s: $(tr '\n' ' ' <"$OUTDIR/facts.env")"
