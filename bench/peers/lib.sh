# Shared by bench/peers/*/run.sh (source it after setting DIR).

# peer_await NAME: waits up to 10 s until the peer whose pid is in
# DIR/NAME.pid answers /health on 127.0.0.1:$PORT; if it does not (or dies),
# stops it (peer_stop: TERM first, so that a master process such as nginx's
# or Gunicorn's takes its workers down with it), prints the tail of
# DIR/NAME.log and exits 1.
peer_await() {
	local name=$1
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && exit 0
		kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null || break
		sleep 0.1
	done
	peer_stop "$name"
	echo "$name peer did not start:" >&2
	tail -n 20 "$DIR/$name.log" >&2
	exit 1
}

# peer_stop NAME: TERM, then KILL after 10 s, of the pid in DIR/NAME.pid.
peer_stop() {
	local name=$1 pid
	[ -f "$DIR/$name.pid" ] || return 0
	pid=$(cat "$DIR/$name.pid")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$DIR/$name.pid"
}
