#!/usr/bin/env bash
# `make run`: a throwaway PostgreSQL 15 with the pulse extension and the demo
# dataset, ready for psql.  `make stop` (scripts/run.sh stop) stops it.
# Idempotent: running it again reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-/tmp/pulse-run}
RUN_PORT=${RUN_PORT:-54329}

if [ "${1:-}" = stop ]; then
	PGBIN="$RUN_DIR/pgroot/usr/lib/postgresql/15/bin" scripts/cluster.sh stop "$RUN_DIR/pg"
	exit 0
fi

mkdir -p "$RUN_DIR/pgroot"
chmod 755 "$RUN_DIR" "$RUN_DIR/pgroot"
# A private copy of PostgreSQL 15 with this build of pulse (scripts/pgroot.sh).
PGBIN=$(BUILD_LOG=build/build.log scripts/pgroot.sh "$RUN_DIR/pgroot")
export PGBIN
# A server started before this build still has the old pulse.so loaded.
so_sum=$(sha256sum "$RUN_DIR/pgroot/usr/lib/postgresql/15/lib/pulse.so" | cut -d' ' -f1)
if [ -f "$RUN_DIR/pg/data/postmaster.pid" ] && [ "$(cat "$RUN_DIR/pulse.so.sha256" 2>/dev/null)" != "$so_sum" ]; then
	echo "run: restarting PostgreSQL to load the new build of pulse"
	scripts/cluster.sh stop "$RUN_DIR/pg" >/dev/null
fi
PULSE_CRON_DB=pulse scripts/cluster.sh start "$RUN_DIR/pg" "$RUN_PORT"
echo "$so_sum" >"$RUN_DIR/pulse.so.sha256"
export PGHOST="$RUN_DIR/pg" PGPORT="$RUN_PORT" PGUSER=postgres
export PGOPTIONS="-c client_min_messages=warning"
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

if [ "$(psql -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = 'pulse'")" = 0 ]; then
	psql -d postgres -c "CREATE DATABASE pulse"
fi
psql -d pulse -c "CREATE EXTENSION IF NOT EXISTS pulse" -c "CREATE EXTENSION IF NOT EXISTS pg_cron"
psql -d pulse -c "ALTER EXTENSION pulse UPDATE" 2>/dev/null || true
if [ "$(psql -d pulse -Atc "SELECT count(*) FROM pg_namespace WHERE nspname = 'demo'")" = 0 ]; then
	echo "demo: loading the demo schema and dataset"
	psql -d pulse -f scripts/demo.sql
fi
rows=$(psql -d pulse -Atc "SELECT count(*) FROM demo.events")

cat <<MSG

Pulse is running (PostgreSQL 15 with the pulse extension, demo dataset: $rows events).

  psql "host=$RUN_DIR/pg port=$RUN_PORT user=postgres dbname=pulse"

Try, as the API role of tenant 7 (row-level security keeps other tenants out):

  SET ROLE api; SET pulse.tenant = '7';
  SELECT pulse.page('SELECT id, created_at, kind, amount FROM demo.events',
                    'created_at DESC, id DESC', page_size => 3);
  -- pass the returned next_cursor as the third argument for the next page:
  SELECT api.events_page(page_size => 3);
  SELECT pulse.fingerprint('SELECT * FROM demo.events WHERE id = 42');
  SELECT pulse.normalize('SELECT * FROM demo.events WHERE id = 42');
  SELECT pulse.explain_page('SELECT id, created_at FROM demo.events', 'created_at DESC, id DESC');

Stop it with: make stop
MSG
