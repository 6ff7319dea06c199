#!/usr/bin/env bash
# `make test`: every suite against real servers on loopback.
#
#   pg_regress      sql/ <-> expected/ on a throwaway PostgreSQL 15 cluster
#   unit            unit tests of the pure C pieces, under ASan/UBSan
#   fuzz-cursor     a bounded libFuzzer run of the cursor decoder
#   ext-<name>      scripted end-to-end tests (extension/test/<name>.sh), each
#                   with its own cluster
#   proxy-unit      pulse-proxy's unit tests under ASan/UBSan
#   prom-rules      promtool check + test of the Prometheus rules
#   proxy-e2e       proxy/test/e2e.sh against build/pulse-proxy
#   proxy-e2e-asan  the same against build/asan/pulse-proxy
#   proxy-<name>    other proxy/test/<name>.sh suites (real PostgreSQL, Redis
#                   and proxies; each says in its header what it needs)
#   proxy-http-hostile-asan  proxy/test/http_hostile.sh against build/asan/pulse-proxy
#   proxy-live-asan  proxy/test/live.sh against build/asan/pulse-proxy
#   proxy-api-surface-asan  proxy/test/api_surface.sh against build/asan/pulse-proxy
#   bench-smoke     bench/smoke.sh: every scenario of bench/run.sh against the
#                   proxy, Express, Express behind nginx and Varnish, and
#                   Flask on a tiny dataset; the staleness checks
#
# Knobs (environment):
#   SUITES="pg_regress proxy-*"   run only the suites whose id matches one of
#                                 these shell patterns (default: all)
#   TEST_JOBS=2                   suites run side by side (default: 2, the
#                                 machine's cores; 1 runs them one by one)
#   KEEP_TMP=1, REGRESS="page cursor", FUZZ_SECONDS=N, PULSE_TEST_PORT_BASE
#
# Each suite's output is printed whole when it ends, framed by "=== id" and
# "--- id: ok|FAILED (N s)"; the run ends with "suites: N passed, M failed"
# and exits non-zero if any suite failed.  The extension must already be
# built (`make test` does that first); it is installed into a private copy of
# the PostgreSQL tree under the test directory (scripts/pgroot.sh), never
# system-wide.  Every suite gets a port range of its own (100 ports apart) so
# that suites running side by side never race for a port.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TMP=$(mktemp -d /tmp/pulse-test.XXXXXX)
chmod 755 "$TMP"
PORT_BASE=${PULSE_TEST_PORT_BASE:-25400}
JOBS=${TEST_JOBS:-2}
T_START=$SECONDS
cleanup() {
	local p
	for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
	wait 2>/dev/null
	for d in "$TMP"/*/pg; do [ ! -d "$d" ] || scripts/cluster.sh destroy "$d" >/dev/null 2>&1; done
	if [ -n "${KEEP_TMP:-}" ]; then echo "test: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the suites ------------------------------------------------------------
IDS=()
declare -A DESC=() CMD=()
add() { # add ID DESCRIPTION COMMAND (a string run by bash, with $PORT and $DIR set)
	IDS+=("$1")
	DESC[$1]=$2
	CMD[$1]=$3
}
selected() {
	local pat
	[ -n "${SUITES:-}" ] || return 0
	for pat in $SUITES; do
		# shellcheck disable=SC2053
		[[ $1 == $pat ]] && return 0
	done
	return 1
}

regress() { # regress PORT DIR
	local pg=$2/pg rc port
	port=$(free_port "$1")
	PULSE_FSYNC=off PULSE_SYNC_COMMIT=off PULSE_CRON_DB=pulse_regress \
		scripts/cluster.sh start "$pg" "$port" || return 1
	make --no-print-directory installcheck \
		PGHOST="$pg" PGPORT="$port" PGUSER=postgres \
		EXTRA_REGRESS_OPTS="--outputdir=$2/regress" ${REGRESS:+REGRESS="$REGRESS"}
	rc=$?
	if [ $rc -ne 0 ] && [ -f "$2/regress/regression.diffs" ]; then
		head -n 300 "$2/regress/regression.diffs"
	fi
	scripts/cluster.sh destroy "$pg" >/dev/null
	return $rc
}
fuzz() { # fuzz DIR
	if make --no-print-directory fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-15}" >"$1/fuzz.log" 2>&1; then
		grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$1/fuzz.log"
	else
		tail -n 80 "$1/fuzz.log"
		return 1
	fi
}
prom_rules() {
	promtool check rules proxy/prometheus/pulse-rules.yml &&
		(cd proxy/prometheus && promtool test rules pulse-rules.test.yml)
}
proxy_e2e() { # proxy_e2e BINARY PORT DIR [SCRIPT]
	PULSE_PROXY_BIN=$1 PULSE_TEST_PORT="$(free_port "$2")" PULSE_TEST_TMP="$3" \
		bash "${4:-proxy/test/e2e.sh}"
}
export -f regress fuzz prom_rules proxy_e2e free_port

add pg_regress "pg_regress (sql/ <-> expected/)" 'regress "$PORT" "$DIR"'
add unit "unit: cursor codec (ASan/UBSan)" 'make --no-print-directory unit'
add fuzz-cursor "fuzz cursor decoder (${FUZZ_SECONDS:-15} s)" 'fuzz "$DIR"'
for t in extension/test/*.sh; do
	[ -e "$t" ] || continue
	n=$(basename "$t" .sh)
	add "ext-${n//_/-}" "extension: $n.sh" \
		"PULSE_TEST_PORT=\"\$(free_port \"\$PORT\")\" PULSE_TEST_TMP=\"\$DIR\" bash $t"
done
add proxy-unit "proxy unit (ASan/UBSan)" 'make --no-print-directory proxy-unit'
add prom-rules "prometheus rules (promtool check + test)" prom_rules
add proxy-e2e "proxy e2e (build/pulse-proxy)" 'proxy_e2e build/pulse-proxy "$PORT" "$DIR"'
add proxy-e2e-asan "proxy e2e (build/asan/pulse-proxy)" 'proxy_e2e build/asan/pulse-proxy "$PORT" "$DIR"'
for t in proxy/test/*.sh; do
	[ -e "$t" ] || continue
	n=$(basename "$t" .sh)
	case $n in e2e | lib) continue ;; esac # e2e runs twice below; lib.sh is their shared library
	add "proxy-${n//_/-}" "proxy: $n.sh" "proxy_e2e build/pulse-proxy \"\$PORT\" \"\$DIR\" $t"
done
add proxy-http-hostile-asan "proxy: http_hostile.sh (build/asan/pulse-proxy)" \
	'proxy_e2e build/asan/pulse-proxy "$PORT" "$DIR" proxy/test/http_hostile.sh'
add proxy-live-asan "proxy: live.sh (build/asan/pulse-proxy)" 'proxy_e2e build/asan/pulse-proxy "$PORT" "$DIR" proxy/test/live.sh'
add proxy-api-surface-asan "proxy: api_surface.sh (build/asan/pulse-proxy)" \
	'proxy_e2e build/asan/pulse-proxy "$PORT" "$DIR" proxy/test/api_surface.sh'
add bench-smoke "load-test harness (bench/smoke.sh: every scenario, 5 servers, tiny dataset)" \
	'bash bench/smoke.sh "$DIR" "$(free_port "$PORT")"'

# --- build what the suites share, once, before they run side by side ------
# the longest suites start first, so that the short ones fill the other slot
# around them instead of one long suite running alone at the end
LONG=(bench-smoke proxy-e2e-asan proxy-e2e proxy-replicas proxy-http-hostile-asan proxy-http-hostile)
RUN=()
for id in "${LONG[@]}"; do [ -z "${CMD[$id]:-}" ] || ! selected "$id" || RUN+=("$id"); done
for id in "${IDS[@]}"; do
	[[ " ${LONG[*]} " == *" $id "* ]] || ! selected "$id" || RUN+=("$id")
done
[ ${#RUN[@]} -gt 0 ] || { echo "test: no suite matches SUITES='$SUITES'" >&2; exit 2; }
PGBIN=$(BUILD_LOG=build/build.log scripts/pgroot.sh "$TMP/pgroot") || exit 1
export PGBIN
need_proxy= need_asan= need_units=
for id in "${RUN[@]}"; do
	case $id in
	proxy-unit) need_units=1 ;;
	proxy-e2e-asan | proxy-*-asan) need_asan=1 ;;
	proxy-* | bench-smoke) need_proxy=1 ;;
	esac
done
targets=()
[ -z "$need_proxy" ] || targets+=(proxy)
[ -z "$need_asan" ] || targets+=(proxy-asan)
[ -z "$need_units" ] || targets+=($(make --no-print-directory -s print-proxy-tests))
if [ ${#targets[@]} -gt 0 ]; then
	echo "test: building ${targets[*]}"
	make --no-print-directory -j"$JOBS" "${targets[@]}" >"$TMP/build.log" 2>&1 ||
		{ tail -n 60 "$TMP/build.log"; echo "suites: 0 passed, 1 failed (build)"; exit 1; }
fi

# --- run them, JOBS at a time ----------------------------------------------
passed=0
failed=0
failures=()
declare -A PID_OF=() T0=()
finish() { # finish ID RC
	local id=$1 rc=$2 secs=$((SECONDS - T0[$1]))
	echo "=== $id: ${DESC[$id]}"
	cat "$TMP/$id.out"
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
		echo "--- $id: ok ($secs s)"
	else
		failed=$((failed + 1))
		failures+=("$id")
		echo "--- $id: FAILED ($secs s)"
	fi
}
reap() { # waits for one running suite to end and reports it
	local pid id rc
	wait -n -p pid "${!PID_OF[@]}" 2>/dev/null
	rc=$?
	for id in "${!PID_OF[@]}"; do
		if [ "$id" = "$pid" ]; then
			finish "${PID_OF[$id]}" "$rc"
			unset "PID_OF[$id]"
			return
		fi
	done
}
i=0
for id in "${RUN[@]}"; do
	while [ ${#PID_OF[@]} -ge "$JOBS" ]; do reap; done
	dir=$TMP/$id
	mkdir -p "$dir"
	chmod 755 "$dir"
	T0[$id]=$SECONDS
	PORT=$((PORT_BASE + 100 * i)) DIR=$dir bash -c "${CMD[$id]}" >"$TMP/$id.out" 2>&1 &
	PID_OF[$!]=$id
	i=$((i + 1))
done
while [ ${#PID_OF[@]} -gt 0 ]; do reap; done

echo
[ $failed -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed ($((SECONDS - T_START)) s, $JOBS side by side)"
[ $failed -eq 0 ]
