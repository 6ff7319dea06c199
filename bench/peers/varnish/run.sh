#!/usr/bin/env bash
# bench/peers/varnish/run.sh start|stop DIR: Varnish in front of the Express
# peer (default.vcl beside this script).
#
#   start: writes DIR/default.vcl from the template, runs varnishd in the
#          foreground of a background job (pid of the manager process in
#          DIR/varnish.pid, output in DIR/varnish.log) on 127.0.0.1:$PORT,
#          with its working directory DIR/work, no management port (-T
#          none), objects in memory (-s malloc), and waits until /health
#          answers.  As root varnishd drops to its unprivileged users (the
#          Debian package's varnish and vcache: the default unix jail);
#          otherwise it runs as the caller (-j none).
#   stop:  TERM to the manager (it stops the cache process), then KILL
#          after 10 s.
#
# Environment for start: PORT, UPSTREAM (Express's host:port), TTL
# (seconds, default 1), GRACE (seconds, default 10), POOLS (thread pools,
# default 2, Varnish's own default), MEMORY (malloc storage, default 256m).
set -euo pipefail
cd "$(dirname "$0")"
cmd=${1:?usage: run.sh start|stop DIR}
DIR=${2:?usage: run.sh start|stop DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
. ../lib.sh
case "$cmd" in
start)
	: "${PORT:?PORT missing}" "${UPSTREAM:?UPSTREAM missing}"
	command -v varnishd >/dev/null || { echo "varnish peer: varnishd is missing (scripts/deps.sh)" >&2; exit 1; }
	jail=()
	[ "$(id -u)" -eq 0 ] || jail=(-j none)
	sed -e "s|@UPSTREAM_HOST@|${UPSTREAM%:*}|" -e "s|@UPSTREAM_PORT@|${UPSTREAM##*:}|" -e "s|@TTL@|${TTL:-1}|" -e "s|@GRACE@|${GRACE:-10}|" \
		default.vcl >"$DIR/default.vcl"
	rm -rf "$DIR/work"
	varnishd -F -n "$DIR/work" -f "$DIR/default.vcl" -a "127.0.0.1:$PORT" -T none "${jail[@]}" \
		-s "malloc,${MEMORY:-256m}" -p "thread_pools=${POOLS:-2}" >"$DIR/varnish.log" 2>&1 &
	echo $! >"$DIR/varnish.pid"
	peer_await varnish
	;;
stop)
	peer_stop varnish
	;;
*)
	echo "usage: run.sh start|stop DIR" >&2
	exit 2
	;;
esac
