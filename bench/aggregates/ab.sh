#!/usr/bin/env bash
# A/B comparison of the refresh timings of two builds of pulse, interleaved.
#
#   A_PGBIN=<bin dir of build A> B_PGBIN=<bin dir of build B> bench/aggregates/ab.sh
#
# Each *_PGBIN is a private PostgreSQL tree with that build installed
# (scripts/pgroot.sh DIR prints it).  Starts one throwaway cluster per build,
# loads the same ROWS-row bench_sales into both (the dataset and query of
# run.sh, from common.sh), then REPEATS rounds; in each round, for each build
# in turn (the order alternates between rounds): update CHANGED random rows,
# time the incremental refresh (wall clock and backend CPU time); update
# CHANGED rows, time the full refresh; time REFRESH MATERIALIZED VIEW.
# Interleaving makes both builds see the same load on a shared machine,
# which sequential run.sh reports do not.  Prints the medians and every run;
# both clusters are destroyed on exit.
#
# Parameters (environment): A_PGBIN, B_PGBIN (required), ROWS (5000000),
# NGROUPS (50000), CHANGED (1000), REPEATS (11), PORT (25480, below the ephemeral port range),
# AB_DIR (/tmp/pulse-bench-ab.PID).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. bench/aggregates/common.sh

: "${A_PGBIN:?A_PGBIN missing}" "${B_PGBIN:?B_PGBIN missing}"
REPEATS=${REPEATS:-11}
AB_DIR=${AB_DIR:-/tmp/pulse-bench-ab.$$}
declare -A BIN PORTS
BIN[A]=$A_PGBIN
BIN[B]=$B_PGBIN
PORTS[A]=$(free_port "${PORT:-25480}")
PORTS[B]=$(free_port $((PORTS[A] + 1)))

log() { printf '%s bench-ab: %s\n' "$(date -u +%T)" "$*" >&2; }
cleanup() {
	for b in A B; do
		PGBIN=${BIN[$b]} scripts/cluster.sh destroy "$AB_DIR/$b" >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export PGUSER=postgres
psqlb() { local b=$1; shift; command psql -X -q -v ON_ERROR_STOP=1 -h "$AB_DIR/$b" -p "${PORTS[$b]}" "$@"; }
ms() { agg_ms "$2" psqlb "$1" -d "$DB"; }
# inc B: "wall_ms cpu_ms" of one incremental refresh; cpu_ms is the CPU time
# of the backend (/proc/self/schedstat, read by the superuser), which the
# load of a shared machine inflates far less than the wall clock
inc() {
	psqlb "$1" -d "$DB" -At <<SQL | awk '/^Time:/ { w = $2 } /^[0-9.]+$/ { c = $1 } END { print w, c }'
SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint AS c0 \gset
\timing on
SELECT pulse.refresh_aggregate('bench_agg') \g /dev/null
\timing off
SELECT round((split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - :c0) / 1e6, 3);
SQL
}
change_rows() { psqlb "$1" -d "$DB" -c "$(agg_change_sql)"; }

for b in A B; do
	log "build $b: cluster in $AB_DIR/$b on port ${PORTS[$b]}, loading $ROWS rows"
	PGBIN=${BIN[$b]} PULSE_FSYNC=off PULSE_SHARED_BUFFERS=${PULSE_SHARED_BUFFERS:-1GB} PULSE_CRON_DB=postgres \
		scripts/cluster.sh start "$AB_DIR/$b" "${PORTS[$b]}" >/dev/null
	agg_bench_db psqlb "$b"
	{
		agg_dataset_sql
		cat <<SQL
SELECT pulse.create_aggregate('bench_agg', '$Q', '1 hour');
CREATE MATERIALIZED VIEW bench_mv AS $Q;
ANALYZE bench_agg;
ANALYZE bench_mv;
SQL
	} | psqlb "$b" -d "$DB" >/dev/null
	: >"$AB_DIR/$b.inc"; : >"$AB_DIR/$b.inccpu"; : >"$AB_DIR/$b.full"; : >"$AB_DIR/$b.mv"
done

for r in $(seq 1 "$REPEATS"); do
	if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
	for b in $order; do
		change_rows "$b"
		read -r w c <<<"$(inc "$b")"
		echo "$w" >>"$AB_DIR/$b.inc"
		echo "$c" >>"$AB_DIR/$b.inccpu"
		change_rows "$b"
		ms "$b" "SELECT pulse.refresh_aggregate('bench_agg', true)" >>"$AB_DIR/$b.full"
		ms "$b" "REFRESH MATERIALIZED VIEW bench_mv" >>"$AB_DIR/$b.mv"
		log "round $r, build $b: incremental $(tail -n1 "$AB_DIR/$b.inc") ms (cpu $(tail -n1 "$AB_DIR/$b.inccpu") ms), full $(tail -n1 "$AB_DIR/$b.full") ms, matview $(tail -n1 "$AB_DIR/$b.mv") ms"
	done
done

for b in A B; do
	psqlb "$b" -d "$DB" -c "SELECT pulse.refresh_aggregate('bench_agg')" >/dev/null
	d=$(psqlb "$b" -d "$DB" -Atc "$(agg_diff_sql)")
	[ "$d" = 0 ] || { log "build $b: the aggregate differs from its query in $d rows"; exit 1; }
done

echo "ROWS=$ROWS NGROUPS=$NGROUPS CHANGED=$CHANGED REPEATS=$REPEATS, interleaved, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
echo "| build | incremental | incremental, backend CPU | full | REFRESH MV | incremental / full |"
echo "|---|---:|---:|---:|---:|---:|"
for b in A B; do
	i=$(median <"$AB_DIR/$b.inc"); c=$(median <"$AB_DIR/$b.inccpu")
	f=$(median <"$AB_DIR/$b.full"); m=$(median <"$AB_DIR/$b.mv")
	echo "| $b | $i | $c | $f | $m | $(awk -v i="$i" -v f="$f" 'BEGIN { printf "%.1f%%", 100 * i / f }') |"
done
echo
for b in A B; do
	echo "$b incremental: $(paste -sd' ' "$AB_DIR/$b.inc")"
	echo "$b incr. CPU:   $(paste -sd' ' "$AB_DIR/$b.inccpu")"
	echo "$b full:        $(paste -sd' ' "$AB_DIR/$b.full")"
	echo "$b matview:     $(paste -sd' ' "$AB_DIR/$b.mv")"
done
