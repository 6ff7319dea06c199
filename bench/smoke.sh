#!/usr/bin/env bash
# bench/smoke.sh: the load-test harness itself, end to end, in about four
# minutes (a suite of `make test`).  bench/run.sh runs every scenario against
# pulse-proxy, Express, Express behind nginx and behind Varnish (TTL 1 s and
# 10 s) and Flask on a tiny dataset with one short step each, in a private
# BENCH_DIR; the mix reads and updates a hot set of BENCH_HOT rows.  Then
# the results are checked, not just produced:
#   - every scenario measured every server it applies to (no "skipped"),
#   - no load step had socket errors or non-2xx answers,
#   - the peers answered the same endpoints (smoke: same HTTP statuses),
#   - every closed-loop step has its CPU per request,
#   - the staleness machinery: every closed-loop mix step was checked; the
#     10 s TTL caches returned stale reads under the updates, pulse-proxy
#     none (over at least 100 reads),
#   - the cached-hit ceiling measured the proxy, nginx, Varnish and h2o,
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
# nginx and Varnish run in front of Express: without it, or without their
# binaries (scripts/deps.sh), they are skipped too.
servers="proxy express nginx varnish flask"
if [ ! -d bench/peers/express/node_modules ] &&
	! (cd bench/peers/express && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$DIR/npm.log" 2>&1; then
	echo "# SKIP express, nginx, varnish: npm ci failed: $(tail -n 3 "$DIR/npm.log" | tr '\n' ' ')"
	servers="proxy flask"
fi
for b in nginx:nginx varnish:varnishd; do
	if [[ " $servers " == *" ${b%:*} "* ]] && ! command -v "${b#*:}" >/dev/null; then
		echo "# SKIP ${b%:*}: ${b#*:} is not installed (scripts/deps.sh)"
		servers=$(echo " $servers " | sed "s/ ${b%:*} / /; s/^ //; s/ $//")
	fi
done
caches=$(for s in $servers; do case $s in nginx | varnish) echo "$s" ;; esac; done)

# One step per ramp, rates low enough for Flask, servers up once each.
env ROWS=20000 TENANTS=20 DURATION=2 SERVERS="$servers" BASELINES=0 PEER_TTLS="1 10" BENCH_HOT=50 \
	RAMP_CONNS=4 RAMP_RATES=60 PAGE_DEPTHS="0 200" PAGE_WALK=3 AGG_CONNS=2 AGG_WRITERS=1 \
	CACHE_CONNS=2 SPIKE_BASE=20 SPIKE_SECONDS=2 SOAK_SECONDS=4 SOAK_EVERY=1 SOAK_CONNS=2 HITS_ROUNDS=1 HITS_CONNS=4 \
	BENCH_DIR="$DIR/bench" PORT="${2:-26800}" OUT="$OUT" BENCH_NAME=smoke \
	bench/run.sh scenario smoke mix page agg cache spike soak hits >"$DIR/run.log" 2>&1 || {
	echo "bench/run.sh failed:"
	tail -n 40 "$DIR/run.log"
	exit 1
}
work=$(ls -d "$DIR"/bench/run-* | tail -n 1)
res=$work/results.tsv

check "a report was written" test -s "$OUT"
check "no server was skipped" test ! -s "$work/skipped.tsv"
measured() { awk -F'\t' -v sc="$1" -v s="$2" -v v="${3:-}" '$1 == sc && $2 == s && (v == "" || $3 == v) {n++} END {exit !(n > 0)}' "$res"; }
for scen in mix mix-writes mix-rate page agg cache spike soak smoke; do
	for s in $servers; do
		case $s:$scen in nginx:page | nginx:agg | nginx:spike | nginx:soak | varnish:page | varnish:agg | varnish:spike | varnish:soak) continue ;; esac
		check "$scen measured $s" measured "$scen" "$s"
	done
done
for s in $caches; do
	for v in ttl1 ttl10; do check "mix measured $s $v" measured mix "$s" "$v"; done
done
for s in proxy $caches static; do
	check "hits measured $s" measured hits "$s"
done
# columns: scenario server variant x rps p50 p90 p95 p99 max errors requests bad hits
check "no socket errors, no non-2xx answers, every step served" awk -F'\t' '
	($11 != "-" && $11 + 0 > 0) || ($13 != "-" && $13 + 0 > 0) || $5 + 0 <= 0 {print "  " $0; bad = 1}
	END {exit bad}' "$res"
check "every closed-loop step has its CPU per request" awk -F'\t' '
	$1 ~ /^(mix|cache|smoke|hits)$/ && !($15 + 0 > 0 && $16 + 0 > 0) {print "  " $0; bad = 1}
	END {exit bad}' "$res"
# staleness.tsv: scenario server variant x reads stale p50 p99 max updates
st=$work/staleness.tsv
check "the staleness check ran on every closed-loop mix step" awk -F'\t' '
	FILENAME == ARGV[1] {seen[$1, $2, $3, $4] = 1; next}
	$1 == "mix" && !(($1, $2, $3, $4) in seen) {print "  not checked: " $0; bad = 1}
	END {exit bad}' "$st" "$res"
stale() { # stale SERVER VARIANT: "reads stale" over the mix steps
	awk -F'\t' -v s="$1" -v v="$2" '$1 == "mix" && $2 == s && $3 == v {r += $5; n += $6} END {print r + 0, n + 0}' "$st"
}
for s in $caches; do
	check "$s ttl10 returned stale reads under updates ($(stale "$s" ttl10))" \
		awk -v x="$(stale "$s" ttl10)" 'BEGIN {split(x, f, " "); exit !(f[2] > 0)}'
done
check "pulse-proxy returned no stale read ($(stale proxy cache), at least 100 reads)" \
	awk -v x="$(stale proxy cache)" 'BEGIN {split(x, f, " "); exit !(f[1] >= 100 && f[2] == 0)}'
[ ! -s "$work/stale-examples.tsv" ] || { echo "# the oldest stale reads (scen server variant x id seen start newer ack age_ms):"; sed 's/^/#   /' "$work/stale-examples.tsv" | head -n 12; }
check "the peers answer every smoke request as the proxy does" bash -c '
	p=$(awk -F"\t" "\$2 == \"proxy\" {print \$3 \"=\" \$4}" "$1" | sort)
	for s in ${2#proxy }; do
		[ "$(awk -F"\t" -v s="$s" "\$2 == s {print \$3 \"=\" \$4}" "$1" | sort)" = "$p" ] || { echo "  $s differs"; exit 1; }
	done
	echo "$p" | grep -q "without a token=401"' _ "$work/smoke.tsv" "$servers"
for section in "## Summary" "## 1. Read-heavy mix" "### Constant arrival rate" "## 2. Deep pagination" \
	"## 3. Aggregates" "## 4. Cache" "## 5. Spike" "## 6. Soak" "ceiling of the mix" "### Against what users deploy" \
	"## 7. Staleness" "## 8. Cached-hit ceiling"; do
	check "report has \"$section\"" grep -qF "$section" "$OUT"
done
check "summary has the proxy's ratios" grep -qE '^\| proxy \| cache \|.*[0-9]x \|' "$OUT"
check "plots were drawn" bash -c 'ls "$1"/*.png >/dev/null 2>&1' _ "${OUT%.md}"
check "the staleness plots were drawn" test -s "${OUT%.md}/peers-stale-fraction.png" -a -s "${OUT%.md}/peers-rps-p99.png"
exit $fail
