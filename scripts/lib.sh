# Shared shell helpers for Pulse's scripts.  Source it; it defines functions only.

# free_port BASE: prints the first TCP port >= BASE nobody listens on at 127.0.0.1.
# Pick BASE below the kernel's ephemeral range (32768-60999 on Linux): there a
# client connection's local port can take the port between this check and
# the server's bind.
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
		p=$((p + 1))
	done
	echo "$p"
}

# wait_for SECONDS CMD...: retries CMD every 0.1 s until it succeeds or time runs out.
wait_for() {
	local deadline=$(( $(date +%s) + $1 ))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

# TAP-style checks for the scripted end-to-end tests:
#   tap_check "description" CMD...   runs CMD, prints "ok N - ..." or "not ok N - ..."
#   tap_done                         prints "N passed, M failed"; returns non-zero on failure
TAP_N=0
TAP_PASSED=0
TAP_FAILED=0
tap_check() {
	local desc=$1
	shift
	TAP_N=$((TAP_N + 1))
	if "$@"; then
		TAP_PASSED=$((TAP_PASSED + 1))
		echo "ok $TAP_N - $desc"
	else
		TAP_FAILED=$((TAP_FAILED + 1))
		echo "not ok $TAP_N - $desc"
	fi
}
tap_done() {
	echo "$TAP_PASSED passed, $TAP_FAILED failed"
	[ "$TAP_FAILED" -eq 0 ]
}

# bench_cleanup: the EXIT trap of the benchmarks that run their own servers: SIGTERM every pid in PIDS (SIGKILL
# after 5 s), then destroy the throwaway cluster in $WORK/pg and remove $WORK
bench_cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	scripts/cluster.sh destroy "$WORK/pg" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
