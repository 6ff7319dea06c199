#!/usr/bin/env bash
# A/B comparison of the refresh timings of two builds of pulse, interleaved.
#
#   A_PGBIN=<bin dir of build A> B_PGBIN=<bin dir of build B> bench/aggregates/ab.sh
#
# Each *_PGBIN is a private PostgreSQL tree with that build installed
# (scripts/pgroot.sh DIR prints it).  Starts one throwaway cluster per build,
# loads the same ROWS-row bench_sales into both (the dataset and query of
# run.sh), then REPEATS rounds; in each round, for each build in turn (the
# order alternates between rounds): update CHANGED random rows, time the
# incremental refresh (wall clock and backend CPU time); update CHANGED
# rows, time the full refresh; time REFRESH MATERIALIZED VIEW.  Interleaving makes both builds see the same
# load on a shared machine, which sequential run.sh reports do not.  Prints
# the medians and every run; both clusters are destroyed on exit.
#
# Parameters (environment): A_PGBIN, B_PGBIN (required), ROWS (5000000),
# NGROUPS (50000), CHANGED (1000), REPEATS (11), PORT (55480),
# AB_DIR (/tmp/pulse-bench-ab.PID).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

: "${A_PGBIN:?A_PGBIN missing}" "${B_PGBIN:?B_PGBIN missing}"
ROWS=${ROWS:-5000000}
NGROUPS=${NGROUPS:-50000}
CHANGED=${CHANGED:-1000}
REPEATS=${REPEATS:-11}
AB_DIR=${AB_DIR:-/tmp/pulse-bench-ab.$$}
DB=pulse_bench
Q="SELECT account, count(*) AS n, sum(amount) AS total, min(amount) AS lo, max(amount) AS hi, avg(amount) AS mean FROM bench_sales GROUP BY account"
declare -A BIN PORTS
BIN[A]=$A_PGBIN
BIN[B]=$B_PGBIN
PORTS[A]=$(free_port "${PORT:-55480}")
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
ms() {
	psqlb "$1" -d "$DB" -c '\timing on' -c "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
}
median() { sort -n | awk '{ a[NR] = $1 } END { m = int((NR + 1) / 2); if (NR % 2) print a[m]; else printf "%.3f\n", (a[m] + a[m + 1]) / 2 }'; }
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
change_rows() {
	psqlb "$1" -d "$DB" -c "UPDATE bench_sales SET amount = amount + 1
	                        WHERE id IN (SELECT 1 + (random() * ($ROWS - 1))::bigint
	                                       FROM generate_series(1, $CHANGED))"
}

for b in A B; do
	log "build $b: cluster in $AB_DIR/$b on port ${PORTS[$b]}, loading $ROWS rows"
	PGBIN=${BIN[$b]} PULSE_FSYNC=off PULSE_SHARED_BUFFERS=${PULSE_SHARED_BUFFERS:-1GB} PULSE_CRON_DB=postgres \
		scripts/cluster.sh start "$AB_DIR/$b" "${PORTS[$b]}" >/dev/null
	psqlb "$b" -d postgres -c "CREATE DATABASE $DB"
	psqlb "$b" -d "$DB" -c "CREATE EXTENSION pulse" -c "ALTER DATABASE $DB SET work_mem = '64MB'"
	psqlb "$b" -d "$DB" >/dev/null <<SQL
CREATE TABLE bench_sales (
    id      bigint PRIMARY KEY,
    account int NOT NULL,
    kind    int NOT NULL,
    amount  int NOT NULL,
    created timestamptz NOT NULL
);
INSERT INTO bench_sales
SELECT i, 1 + (hashint4(i::int) & 2147483647) % $NGROUPS, i % 7, (i::bigint * 7919 % 1000)::int,
       timestamptz '2026-01-01' + i * interval '1 second'
  FROM generate_series(1, $ROWS) i;
CREATE INDEX bench_sales_account ON bench_sales (account);
VACUUM ANALYZE bench_sales;
SELECT pulse.create_aggregate('bench_agg', '$Q', '1 hour');
CREATE MATERIALIZED VIEW bench_mv AS $Q;
ANALYZE bench_agg;
ANALYZE bench_mv;
SQL
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
	d=$(psqlb "$b" -d "$DB" -Atc "SELECT count(*) FROM ((TABLE bench_agg EXCEPT ALL ($Q)) UNION ALL (($Q) EXCEPT ALL TABLE bench_agg)) d")
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
