# bench/proxy/cluster.sh: sourced by bench/proxy/run.sh and bench/protect/run.sh.
# start_bench_cluster: a throwaway cluster in $WORK/pg on $PGPORT for a read-only
# benchmark (fsync off only speeds up the load; shared_buffers holds everything,
# prewarmed by the caller, so the runs measure CPU, not the disk), database $DB
# with pulse and pg_prewarm, and bench/proxy/dataset.sql at $ROWS rows and
# $TENANTS tenants. Sets PGBIN, exports PGHOST/PGPORT/PGUSER, defines psql, and
# sets t0 to when the load began.
start_bench_cluster() {
	log "PostgreSQL on port $PGPORT ($WORK/pg)"
	PGBIN=$(scripts/pgroot.sh "$WORK/pgroot")
	PGBIN=$PGBIN PULSE_FSYNC=off PULSE_SYNC_COMMIT=off PULSE_SHARED_BUFFERS=${PULSE_SHARED_BUFFERS:-512MB} PULSE_CRON_DB=postgres \
		scripts/cluster.sh start "$WORK/pg" "$PGPORT" >/dev/null
	export PGHOST=$WORK/pg PGPORT PGUSER=postgres
	psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
	psql -d postgres -c "CREATE DATABASE $DB"
	psql -d "$DB" -c "CREATE EXTENSION pulse" -c "CREATE EXTENSION pg_prewarm"
	log "loading $ROWS rows, $TENANTS tenants (bench/proxy/dataset.sql)"
	t0=$(date +%s)
	psql -d "$DB" -v rows="$ROWS" -v tenants="$TENANTS" -f bench/proxy/dataset.sql >/dev/null
}
