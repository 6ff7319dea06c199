#!/usr/bin/env bash
# bench/peers/nginx/run.sh start|stop DIR: nginx proxy_cache in front of the
# Express peer (nginx.conf beside this script).
#
#   start: writes DIR/nginx.conf from the template, empties DIR/cache (a
#          restarted nginx would load the entries of the last run), runs
#          nginx on 127.0.0.1:$PORT in the background (pid in DIR/nginx.pid,
#          output in DIR/nginx.log) and waits until /health answers.  As
#          root, the master binds and the workers run as nobody (the
#          `user` directive), so DIR's cache and temp dirs are theirs.
#   stop:  TERM (fast shutdown), then KILL after 10 s.
#
# Environment for start: PORT, UPSTREAM (Express's host:port), TTL
# (seconds, default 1), GRACE (seconds an entry may live unread after its
# TTL, default 10), WORKERS (default: auto, one per core).
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
	ttl=${TTL:-1} grace=${GRACE:-10} user=
	command -v nginx >/dev/null || { echo "nginx peer: nginx is missing (scripts/deps.sh)" >&2; exit 1; }
	rm -rf "$DIR/cache" "$DIR/tmp"
	mkdir -p "$DIR/cache" "$DIR/tmp"
	if [ "$(id -u)" -eq 0 ]; then
		user="user nobody nogroup;"
		chown nobody:nogroup "$DIR/cache" "$DIR/tmp"
	fi
	sed -e "s|@USER@|$user|" -e "s|@WORKERS@|${WORKERS:-auto}|" -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$PORT|" \
		-e "s|@UPSTREAM@|$UPSTREAM|" -e "s|@TTL@|$ttl|" -e "s|@INACTIVE@|$((ttl + grace))|" nginx.conf >"$DIR/nginx.conf"
	nginx -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log" >"$DIR/nginx.log" 2>&1 &
	echo $! >"$DIR/nginx.pid"
	peer_await nginx
	;;
stop)
	peer_stop nginx
	;;
*)
	echo "usage: run.sh start|stop DIR" >&2
	exit 2
	;;
esac
