#!/usr/bin/env bash
# bench/smoke.sh: the load-test harness itself, end to end, in about two
# minutes (a suite of `make test`).  bench/run.sh runs every scenario against
# pulse-proxy, Express and Flask on a tiny dataset with one short step each,
# in a private BENCH_DIR; then the results are checked, not just produced:
#   - every scenario measured every server (no "skipped"),
#   - no load step had socket errors or non-2xx answers,
#   - the peers answered the same endpoints (smoke: same HTTP statuses),
#   - the report has every section and the summary's ratios, and its plots.
# The numbers mean nothing at this size; that the machinery works does.
#
#   bench/smoke.sh DIR [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:?usage: bench/smoke.sh DIR [PORT]}
mkdir -p "$DIR"
OUT=$DIR/report.md

fail=0
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then echo "ok - $what"; else echo "not ok - $what"; fail=1; fi
}

# Express's packages come from the npm registry (npm ci, once per clone):
# without it the smoke says so and measures the two other servers.
servers="proxy express flask"
if [ ! -d bench/peers/express/node_modules ] &&
	! (cd bench/peers/express && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$DIR/npm.log" 2>&1; then
	echo "# SKIP express: npm ci failed: $(tail -n 3 "$DIR/npm.log" | tr '\n' ' ')"
	servers="proxy flask"
fi

# One step per ramp, rates low enough for Flask, servers up once each.
env ROWS=20000 TENANTS=20 DURATION=2 SERVERS="$servers" BASELINES=0 \
	RAMP_CONNS=4 RAMP_RATES=60 PAGE_DEPTHS="0 200" PAGE_WALK=3 AGG_CONNS=2 AGG_WRITERS=1 \
	CACHE_CONNS=2 SPIKE_BASE=20 SPIKE_SECONDS=2 SOAK_SECONDS=4 SOAK_EVERY=1 SOAK_CONNS=2 \
	BENCH_DIR="$DIR/bench" PORT="${2:-26800}" OUT="$OUT" BENCH_NAME=smoke \
	bench/run.sh scenario smoke mix page agg cache spike soak >"$DIR/run.log" 2>&1 || {
	echo "bench/run.sh failed:"
	tail -n 40 "$DIR/run.log"
	exit 1
}
work=$(ls -d "$DIR"/bench/run-* | tail -n 1)
res=$work/results.tsv

check "a report was written" test -s "$OUT"
check "no server was skipped" test ! -s "$work/skipped.tsv"
for scen in mix mix-writes mix-rate page agg cache spike soak smoke; do
	for s in $servers; do
		check "$scen measured $s" awk -F'\t' -v sc="$scen" -v s="$s" '$1 == sc && $2 == s {n++} END {exit !(n > 0)}' "$res"
	done
done
# columns: scenario server variant x rps p50 p90 p95 p99 max errors requests bad hits
check "no socket errors, no non-2xx answers, every step served" awk -F'\t' '
	($11 != "-" && $11 + 0 > 0) || ($13 != "-" && $13 + 0 > 0) || $5 + 0 <= 0 {print "  " $0; bad = 1}
	END {exit bad}' "$res"
check "the peers answer every smoke request as the proxy does" bash -c '
	p=$(awk -F"\t" "\$2 == \"proxy\" {print \$3 \"=\" \$4}" "$1" | sort)
	for s in ${2#proxy }; do
		[ "$(awk -F"\t" -v s="$s" "\$2 == s {print \$3 \"=\" \$4}" "$1" | sort)" = "$p" ] || { echo "  $s differs"; exit 1; }
	done
	echo "$p" | grep -q "without a token=401"' _ "$work/smoke.tsv" "$servers"
for section in "## Summary" "## 1. Read-heavy mix" "### Constant arrival rate" "## 2. Deep pagination" \
	"## 3. Aggregates" "## 4. Cache" "## 5. Spike" "## 6. Soak" "ceiling of the mix"; do
	check "report has \"$section\"" grep -qF "$section" "$OUT"
done
check "summary has the proxy's ratios" grep -qE '^\| proxy \| cache \|.*[0-9]x \|' "$OUT"
check "plots were drawn" bash -c 'ls "$1"/*.png >/dev/null 2>&1' _ "${OUT%.md}"
exit $fail
