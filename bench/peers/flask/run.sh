#!/usr/bin/env bash
# bench/peers/flask/run.sh start|stop DIR: the Flask peer under Gunicorn.
#
#   start: runs gunicorn (WORKERS sync workers, default 4) on
#          127.0.0.1:$PORT in the background, its pid in DIR/flask.pid and
#          its output in DIR/flask.log, and waits until /health answers.
#   stop:  TERM, then KILL after 10 s, of the pid in DIR/flask.pid.
#
# Environment for start: PORT, BENCH_PG_DSN, PULSE_JWT_SECRET, WORKERS.
set -euo pipefail
cd "$(dirname "$0")"
cmd=${1:?usage: run.sh start|stop DIR}
DIR=${2:?usage: run.sh start|stop DIR}
mkdir -p "$DIR"
. ../lib.sh
case "$cmd" in
start)
	: "${PORT:?PORT missing}" "${BENCH_PG_DSN:?BENCH_PG_DSN missing}" "${PULSE_JWT_SECRET:?PULSE_JWT_SECRET missing}"
	export BENCH_PG_DSN PULSE_JWT_SECRET
	gunicorn --workers "${WORKERS:-4}" --worker-class sync --bind "127.0.0.1:$PORT" \
		--backlog 2048 --timeout 60 --log-level warning app:app >"$DIR/flask.log" 2>&1 &
	echo $! >"$DIR/flask.pid"
	peer_await flask
	;;
stop)
	peer_stop flask
	;;
*)
	echo "usage: run.sh start|stop DIR" >&2
	exit 2
	;;
esac
