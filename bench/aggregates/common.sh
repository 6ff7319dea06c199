# bench/aggregates/common.sh: what run.sh and ab.sh share, sourced by both
# (defines variables and functions only): the dataset, the aggregate query,
# the change applied before each refresh, and the arithmetic of the report.
#
# Parameters (environment): ROWS (5000000), NGROUPS (50000), CHANGED (1000).

ROWS=${ROWS:-5000000}
NGROUPS=${NGROUPS:-50000}
CHANGED=${CHANGED:-1000}
DB=pulse_bench
Q="SELECT account, count(*) AS n, sum(amount) AS total, min(amount) AS lo, max(amount) AS hi, avg(amount) AS mean FROM bench_sales GROUP BY account"

# agg_bench_db PSQL...: creates database $DB with pulse and work_mem = 64MB
# (the default of pulse.refresh_work_mem, so that every refresh method
# hashes its groups in memory); PSQL... is a psql command line without -d
agg_bench_db() {
	"$@" -d postgres -c "CREATE DATABASE $DB"
	"$@" -d "$DB" -c "CREATE EXTENSION pulse" -c "ALTER DATABASE $DB SET work_mem = '64MB'"
}

# agg_dataset_sql: the SQL that creates and loads bench_sales (ROWS rows in
# NGROUPS accounts spread by a hash of id, btree on account), analysed
agg_dataset_sql() {
	cat <<SQL
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
SQL
}

# agg_change_sql: the UPDATE of CHANGED random rows made before each refresh
agg_change_sql() {
	echo "UPDATE bench_sales SET amount = amount + 1
	      WHERE id IN (SELECT 1 + (random() * ($ROWS - 1))::bigint
	                     FROM generate_series(1, $CHANGED))"
}

# agg_diff_sql: the number of rows in which bench_agg and its query differ
agg_diff_sql() {
	echo "SELECT count(*) FROM ((TABLE bench_agg EXCEPT ALL ($Q)) UNION ALL (($Q) EXCEPT ALL TABLE bench_agg)) d"
}

# agg_ms SQL PSQL...: the server round trip of one statement in
# milliseconds (psql \timing); PSQL... is a psql command line with -d
agg_ms() {
	local sql=$1
	shift
	"$@" -c '\timing on' -c "$sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
}

# median: the median of the numbers on stdin, one per line
median() { sort -n | awk '{ a[NR] = $1 } END { m = int((NR + 1) / 2); if (NR % 2) print a[m]; else printf "%.3f\n", (a[m] + a[m + 1]) / 2 }'; }
