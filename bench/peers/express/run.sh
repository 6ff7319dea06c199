#!/usr/bin/env bash
# bench/peers/express/run.sh start|stop DIR: the Express peer.
#
#   start: installs the locked npm packages into node_modules when missing
#          (npm ci), runs server.js on 127.0.0.1:$PORT in the background,
#          its pid in DIR/express.pid and its output in DIR/express.log, and
#          waits until /health answers.
#   stop:  TERM, then KILL after 10 s, of the pid in DIR/express.pid.
#
# Environment for start: PORT, BENCH_PG_DSN, REDIS_URL, PULSE_JWT_SECRET,
# CACHE (tags|ttl|off), WORKERS (processes, default: cores), PG_POOL.
set -euo pipefail
cd "$(dirname "$0")"
cmd=${1:?usage: run.sh start|stop DIR}
DIR=${2:?usage: run.sh start|stop DIR}
mkdir -p "$DIR"
. ../lib.sh
case "$cmd" in
start)
	: "${PORT:?PORT missing}" "${BENCH_PG_DSN:?BENCH_PG_DSN missing}" "${PULSE_JWT_SECRET:?PULSE_JWT_SECRET missing}"
	if [ ! -d node_modules/express ] || [ ! -d node_modules/pg ] || [ ! -d node_modules/ioredis ]; then
		timeout 600 npm ci --no-audit --no-fund --loglevel=error >"$DIR/npm.log" 2>&1 ||
			{ echo "express peer: npm ci failed:" >&2; tail -n 20 "$DIR/npm.log" >&2; exit 1; }
	fi
	export PORT BENCH_PG_DSN PULSE_JWT_SECRET REDIS_URL CACHE WORKERS PG_POOL
	NODE_ENV=production node server.js >"$DIR/express.log" 2>&1 &
	echo $! >"$DIR/express.pid"
	peer_await express
	;;
stop)
	peer_stop express
	;;
*)
	echo "usage: run.sh start|stop DIR" >&2
	exit 2
	;;
esac
