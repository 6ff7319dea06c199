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
case "$cmd" in
start)
	: "${PORT:?PORT missing}" "${BENCH_PG_DSN:?BENCH_PG_DSN missing}" "${PULSE_JWT_SECRET:?PULSE_JWT_SECRET missing}"
	export BENCH_PG_DSN PULSE_JWT_SECRET
	gunicorn --workers "${WORKERS:-4}" --worker-class sync --bind "127.0.0.1:$PORT" \
		--backlog 2048 --timeout 60 --log-level warning app:app >"$DIR/flask.log" 2>&1 &
	echo $! >"$DIR/flask.pid"
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && exit 0
		kill -0 "$(cat "$DIR/flask.pid")" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$(cat "$DIR/flask.pid")" 2>/dev/null || true
	rm -f "$DIR/flask.pid"
	echo "flask peer did not start:" >&2
	tail -n 20 "$DIR/flask.log" >&2
	exit 1
	;;
stop)
	[ -f "$DIR/flask.pid" ] || exit 0
	pid=$(cat "$DIR/flask.pid")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$DIR/flask.pid"
	;;
*)
	echo "usage: run.sh start|stop DIR" >&2
	exit 2
	;;
esac
