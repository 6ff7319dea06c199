#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for `make run`, `make test` and `make bench`.
#
#   scripts/cluster.sh start DIR PORT   initdb (once) and start a server
#   scripts/cluster.sh replica DIR PORT PRIMARY_DIR
#                                       a streaming replica of the running
#                                       cluster in PRIMARY_DIR: pg_basebackup
#                                       -R (once), its own port, then start
#   scripts/cluster.sh stop  DIR        fast shutdown; leaves DIR in place
#   scripts/cluster.sh destroy DIR      stop and remove DIR
#   scripts/cluster.sh env   DIR        print PGHOST/PGPORT/PGUSER exports
#
# The server listens on 127.0.0.1:PORT and on a Unix socket in DIR, trusts
# local connections (it is a throwaway cluster: never expose it) and preloads
# pulse and pg_cron.  PostgreSQL refuses to run as root, so as root the
# server runs as the unprivileged "postgres" system user (created by
# Debian's postgresql-common) and DIR is handed to that user.
#
# A replica is PostgreSQL's own streaming replication: pg_basebackup -R
# copies the primary (initdb's pg_hba.conf trusts local replication
# connections; wal_level replica and max_wal_senders are the defaults) and
# writes primary_conninfo and standby.signal; the copy gets its own port and
# socket directory, and hot_standby_feedback so that long reads on it do not
# get canceled by the replay of vacuum.  It uses the same PGBIN (the same
# private PostgreSQL tree) as its primary.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: cluster.sh start|replica|stop|destroy|env DIR [PORT [PRIMARY_DIR]]}
DIR=${2:?cluster directory missing}
PORT=${3:-}

as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "${PULSE_PG_OS_USER:-postgres}" -- "$@"
	else
		"$@"
	fi
}

# own_dir: DIR exists and, as root, belongs to the server's user
own_dir() {
	mkdir -p "$DIR"
	if [ "$(id -u)" -eq 0 ]; then
		id "${PULSE_PG_OS_USER:-postgres}" >/dev/null 2>&1 ||
			useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin "${PULSE_PG_OS_USER:-postgres}"
		chown "${PULSE_PG_OS_USER:-postgres}" "$DIR"
		chmod 755 "$DIR"
	fi
}

# run_server: starts the server in $DIR/data unless it runs
run_server() {
	if as_owner "$PGBIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
		echo "cluster: already running in $DIR"
	else
		as_owner "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null ||
			{ tail -n 30 "$DIR/server.log" >&2; exit 1; }
		echo "cluster: PostgreSQL 15 $1 running in $DIR on 127.0.0.1:$PORT"
	fi
}

case "$cmd" in
start)
	[ -n "$PORT" ] || { echo "cluster: port missing" >&2; exit 2; }
	own_dir
	if [ ! -f "$DIR/data/PG_VERSION" ]; then
		as_owner "$PGBIN/initdb" -D "$DIR/data" -U postgres --auth=trust \
			--encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
			{ cat "$DIR/initdb.log" >&2; exit 1; }
		cat >>"$DIR/data/postgresql.conf" <<CONF

# --- pulse throwaway cluster ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
shared_preload_libraries = 'pulse,pg_cron'
cron.database_name = '${PULSE_CRON_DB:-pulse}'
max_connections = 200
shared_buffers = '${PULSE_SHARED_BUFFERS:-256MB}'
fsync = ${PULSE_FSYNC:-on}
synchronous_commit = ${PULSE_SYNC_COMMIT:-on}
full_page_writes = ${PULSE_FSYNC:-on}
max_worker_processes = 16
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
CONF
	fi
	run_server primary
	;;
replica)
	[ -n "$PORT" ] || { echo "cluster: port missing" >&2; exit 2; }
	PRIMARY=${4:?cluster: PRIMARY_DIR missing}
	pport=$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$PRIMARY/data/postgresql.conf" | tail -n 1)
	[ -n "$pport" ] || { echo "cluster: no cluster in $PRIMARY" >&2; exit 2; }
	own_dir
	if [ ! -f "$DIR/data/PG_VERSION" ]; then
		rm -rf "$DIR/data"
		as_owner "$PGBIN/pg_basebackup" -h "$PRIMARY" -p "$pport" -U postgres -D "$DIR/data" -R -X stream \
			-c fast >"$DIR/basebackup.log" 2>&1 || { cat "$DIR/basebackup.log" >&2; exit 1; }
		cat >>"$DIR/data/postgresql.conf" <<CONF

# --- pulse throwaway replica of $PRIMARY ---
port = $PORT
unix_socket_directories = '$DIR'
hot_standby = on
hot_standby_feedback = on
CONF
	fi
	run_server replica
	;;
stop)
	if [ -f "$DIR/data/postmaster.pid" ]; then
		as_owner "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null || true
		echo "cluster: stopped $DIR"
	fi
	;;
destroy)
	"$0" stop "$DIR"
	rm -rf "$DIR"
	;;
env)
	port=$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$DIR/data/postgresql.conf" | tail -n 1)
	echo "export PGHOST=$DIR PGPORT=$port PGUSER=postgres"
	;;
*)
	echo "usage: cluster.sh start|replica|stop|destroy|env DIR [PORT [PRIMARY_DIR]]" >&2
	exit 2
	;;
esac
