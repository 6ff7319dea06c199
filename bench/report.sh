# shellcheck shell=bash
# bench/report.sh: the Markdown report and gnuplot plots of a run of
# bench/run.sh, sourced by it.  Everything comes from the run's directory
# (WORK): results.tsv, meta.env, commands.txt and the scenarios' side files,
# so `bench/run.sh report WORKDIR` rebuilds a report without running
# anything.  Plots are PNG files next to the report, in a directory named
# after it (bench/results/<date>-<name>/).
#
# results.tsv columns (tab-separated):
#   1 scenario  2 server  3 variant  4 x (connections, offered req/s, depth,
#   second...)  5 req/s  6 p50  7 p90  8 p95  9 p99  10 max (ms)  11 errors
#   12 requests  13 non-2xx  14 cache hits ("-": not counted)

META_VARS="ROWS TENANTS DURATION SERVERS BASELINES PROXY_TTL_READ PROXY_TTL_SEARCH THREADS RAMP_CONNS RAMP_RATES SLO_P95 SLO_P99
PAGE_DEPTHS PAGE_WALK PAGE_CONNS AGG_CONNS AGG_WRITERS CACHE_CONNS SPIKE_SECONDS SOAK_SECONDS SOAK_CONNS
SOAK_EVERY H2_TENANT H2_PER_CLIENT PROXY_THREADS PROXY_POOL EXPRESS_WORKERS EXPRESS_POOL
FLASK_WORKERS NAME DATE QUICK PEER_TTLS PEER_GRACE UPDATES HITS_CONNS HITS_ROUNDS NGINX_WORKERS VARNISH_POOLS
STATIC_THREADS RATE_BISECT"

# save_meta WORK SCENARIOS: parameters, machine and software facts.
save_meta() {
	local w=$1 v
	{
		for v in $META_VARS; do printf '%s=%q\n' "$v" "${!v}"; done
		printf 'SCENARIOS=%q\n' "$2"
		printf 'INVOCATION=%q\n' "$(for v in NAME ROWS TENANTS QUICK DURATION SERVERS BASELINES UPDATES PROXY_TTL_READ PROXY_TTL_SEARCH RAMP_CONNS RAMP_RATES RATE_BISECT PEER_TTLS SOAK_SECONDS; do
			[ -z "${!v:-}" ] || printf '%s=%q ' "$v" "${!v}"; done)bench/run.sh ${BENCH_CMD:-all} ${scenarios:-}"
		printf 'START=%q\n' "$(date -u +'%F %T')"
		printf 'LOAD_BEFORE=%q\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
		printf 'CPU=%q\n' "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
		printf 'CORES=%q\n' "$(nproc)"
		printf 'MEM=%q\n' "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
		printf 'KERNEL=%q\n' "$(uname -sr)"
		printf 'PG_VERSION=%q\n' "$(psql_ -Atc 'SELECT version()' 2>/dev/null)"
		printf 'PG_SETTINGS=%q\n' "$(psql_ -Atc "SELECT string_agg(name || ' = ' || current_setting(name), ', ' ORDER BY name)
			FROM pg_settings WHERE name IN ('shared_buffers', 'fsync', 'synchronous_commit', 'max_connections', 'work_mem')" 2>/dev/null)"
		printf 'REDIS_VERSION=%q\n' "$(redis-server --version | sed 's/ sha=.*//')"
		printf 'NODE_VERSION=%q\n' "$(node --version 2>/dev/null)"
		printf 'PY_VERSIONS=%q\n' "$(/usr/bin/python3 -c 'import sys, flask, psycopg2, jwt; print("Python %s, Flask %s, psycopg2 %s, PyJWT %s" % (sys.version.split()[0], flask.__version__, psycopg2.__version__.split()[0], jwt.__version__))' 2>/dev/null)"
		printf 'GUNICORN_VERSION=%q\n' "$(gunicorn --version 2>/dev/null)"
		printf 'NPM_VERSIONS=%q\n' "$(cd bench/peers/express && node -e 'for (const p of ["express", "pg", "ioredis"]) process.stdout.write(p + " " + require(p + "/package.json").version + " ")' 2>/dev/null)"
		printf 'WRK_VERSION=%q\n' "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
		printf 'H2LOAD_VERSION=%q\n' "$(h2load --version 2>&1 | head -n 1)"
		printf 'NGINX_VERSION=%q\n' "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
		printf 'VARNISH_VERSION=%q\n' "$(varnishd -V 2>&1 | head -n 1 | sed 's/^varnishd (\(varnish-[0-9.]*\).*/\1/')"
		printf 'H2O_VERSION=%q\n' "$(h2o --version 2>/dev/null | head -n 1)"
		printf 'GIT=%q\n' "$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
		printf 'PROXY_INFO=%q\n' "$( [ -x "$PROXY_BIN" ] && echo "$PROXY_BIN, built $(date -u -r "$PROXY_BIN" +'%F %T') UTC" || echo "no binary at $PROXY_BIN")"
		cat "$BENCH_DIR/data/facts.env" 2>/dev/null
	} >"$w/meta.env"
}

finish_meta() {
	{
		printf 'END=%q\n' "$(date -u +'%F %T')"
		printf 'LOAD_AFTER=%q\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
	} >>"$1/meta.env"
}

# rows SCEN [SERVER] [VARIANT]: the result lines of SCEN
rows() {
	awk -F'\t' -v sc="$1" -v s="${2:-}" -v v="${3:-}" \
		'$1 == sc && (s == "" || $2 == s) && (v == "" || $3 == v)' "$WORK/results.tsv"
}

pct() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.0f%%", 100 * a / b; else print "-"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a > 0 && b > 0) printf "%.1fx", a / b; else print "-"}'; }

# plot FILE TITLE XLABEL YLABEL LOGX LOGY SERIES...: one PNG; each SERIES is
# "title|datafile|xcol|ycol".
# plot FILE ALT TITLE XLABEL YLABEL LOGX LOGY SERIES...: draws FILE (a series is "title|datafile|xcol|ycol") and,
# when it was drawn, keeps "![ALT](<dir name>/FILE)" for show_figures
FIGURES=()
plot() {
	local file=$1 alt=$2 title=$3 xl=$4 yl=$5 logx=$6 logy=$7 cmds="" sep="" t f x y
	shift 7
	for sp in "$@"; do
		IFS='|' read -r t f x y <<<"$sp"
		[ -s "$f" ] || continue
		cmds+="$sep'$f' using $x:$y with linespoints title '$t'"
		sep=", "
	done
	[ -n "$cmds" ] || return 0
	gnuplot <<GP 2>>"$WORK/gnuplot.log" || true
set terminal pngcairo size 900,500 font 'sans,10'
set output '$file'
set title '$title'
set xlabel '$xl'
set ylabel '$yl'
set grid
set key outside right
$( [ "$logx" = 1 ] && echo 'set logscale x 2' )
$( [ "$logy" = 1 ] && echo 'set logscale y' )
plot $cmds
GP
	[ ! -f "$file" ] || FIGURES+=("![$alt]($(basename "$(dirname "$file")")/$(basename "$file"))")
}

# show_figures: a blank line and the figures kept by plot since the last call
show_figures() {
	local f
	echo
	for f in "${FIGURES[@]}"; do echo "$f"; done
	FIGURES=()
}

write_report() {
	WORK=$1
	local out=$2 dir s v f
	# shellcheck disable=SC1091
	. "$WORK/meta.env"
	dir=${out%.md}
	mkdir -p "$dir"
	local D=$WORK/plotdata
	mkdir -p "$D"
	# side files every table joins (mawk stops at a missing input file)
	for f in staleness stale-ages cache-redis agg-staleness; do [ -e "$WORK/$f.tsv" ] || : >"$WORK/$f.tsv"; done
	local servers
	servers=$(cut -f2 "$WORK/results.tsv" | awk '!seen[$0]++' | grep -v '^$' || true)

	{
		echo "# Load test: pulse-proxy and its peers, $DATE ($NAME)"
		echo
		echo "Generated by \`bench/run.sh\` from $START to ${END:-?} UTC; see \`bench/README.md\`."
		echo "Servers measured: $(echo "$servers" | tr '\n' ' ')(one at a time, the others stopped; PostgreSQL,"
		echo "Redis and the load generator on the same machine)."
		if [ -s "$WORK/skipped.tsv" ]; then
			echo
			echo "**Not measured:** $(awk -F'\t' '{printf "%s in %s; ", $2, $1}' "$WORK/skipped.tsv")see the logs of the run."
		fi
		echo
		echo "## Command"
		echo
		echo '```'
		echo "$INVOCATION"
		echo '```'
		echo
		echo "Every load command run is listed at the end of this report."

		report_summary
		report_peers_summary
		report_smoke
		report_mix "$dir"
		report_page "$dir"
		report_agg
		report_cache
		report_spike "$dir"
		report_soak "$dir"
		report_staleness "$dir"
		report_hits

		echo
		echo "## Machine and software"
		echo
		echo "- CPU: ${CPU:-unknown}, $CORES cores, $MEM memory, $KERNEL; load average $LOAD_BEFORE before, ${LOAD_AFTER:-?} after."
		echo "  The machine is shared: PostgreSQL, Redis, the server under test and the load generator compete for the same cores."
		echo "- $PG_VERSION; $PG_SETTINGS"
		echo "- $REDIS_VERSION (no persistence); Node.js $NODE_VERSION ($NPM_VERSIONS); $PY_VERSIONS; $GUNICORN_VERSION"
		echo "- $WRK_VERSION; $H2LOAD_VERSION; pulse at $GIT; proxy: $PROXY_INFO"
		echo "- pulse-proxy: $PROXY_THREADS threads, $PROXY_POOL PostgreSQL connections each; Express: $EXPRESS_WORKERS processes,"
		echo "  a pg pool of $EXPRESS_POOL each, ioredis cache-aside keyed by tag generations; Flask: Gunicorn, $FLASK_WORKERS sync"
		echo "  workers, one psycopg2 connection each. All connect to PostgreSQL as the same role over TCP loopback."
		echo
		echo "## Dataset"
		echo
		echo "\`bench/data/\`: $ROWS events of $TENANTS tenants, deterministic (each row a function of its id). Tenants are"
		echo "Zipf-like: the largest tenant owns ${TOP1_SHARE:-?} of the rows, the 10 largest ${TOP10_SHARE:-?}, the 100 largest"
		echo "${TOP100_SHARE:-?} (${TENANTS_WITH_ROWS:-?} tenants have rows). Table ${EVENTS_SIZE:-?}, indexes ${INDEX_SIZE:-?}; loaded in ${LOAD_SECS:-?} s."
		echo "Row-level security on \`pulse.tenant\`; endpoints \`event\`, \`search_events\` (keyset, \`pulse.page\`),"
		echo "\`search_events_offset\`, \`add_event\`, \`tenant_stats\` (a \`pulse.create_aggregate\` table) and \`tenant_stats_live\`."
		echo "Events added by a run are deleted before the next scenario."
		echo
		echo "## Every load command"
		echo
		echo "<details><summary>$(wc -l <"$WORK/commands.txt") commands</summary>"
		echo
		echo '```'
		cat "$WORK/commands.txt"
		echo '```'
		echo
		echo "</details>"
	} >"$out"
}

report_summary() {
	[ -n "$(rows mix)" ] || return 0
	echo
	echo "## Summary: the read-heavy mix (60% reads, 30% writes, 10% searches)"
	echo
	echo "Closed loop (wrk, $RAMP_CONNS connections, ${DURATION}s each): the best throughput of any step, and the"
	echo "best throughput of a step whose p95 and p99 (all classes) stay within $SLO_P95 ms / $SLO_P99 ms."
	echo "Constant rate (h2load): the highest offered rate within capacity (read SLOs met, ≥ 95% of all requests served, see scenario 1)."
	echo
	echo "| server | variant | peak req/s | p99 at peak (ms) | req/s within SLO | vs Flask | vs Express | capacity at constant rate (req/s) | vs Flask | vs Express |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	local fl ex flr exr
	fl=$(capacity_of mix flask nocache)
	ex=$(capacity_of mix express cache)
	flr=$(capacity_rate mix-rate flask nocache 2>/dev/null)
	exr=$(capacity_rate mix-rate express cache 2>/dev/null)
	rows mix | cut -f2,3 | awk '!seen[$0]++' | while IFS=$'\t' read -r s v; do
		local peak slo p99 cap
		peak=$(rows mix "$s" "$v" | sort -t$'\t' -k5,5gr | head -n 1)
		slo=$(capacity_of mix "$s" "$v")
		p99=$(echo "$peak" | cut -f9)
		cap=$(capacity_rate mix-rate "$s" "$v" 2>/dev/null)
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$s" "$v" "$(echo "$peak" | cut -f5)" "$p99" "$slo" \
			"$(ratio "$slo" "$fl")" "$(ratio "$slo" "$ex")" "${cap:-0}" "$(ratio "${cap:-0}" "$flr")" "$(ratio "${cap:-0}" "$exr")"
	done
	echo
	echo "Ratios compare req/s within SLO (closed loop) and capacities (constant rate) measured in this run, against"
	echo "Flask and Express with its cache. Targets of the issue: pulse-proxy ≥ 20x Flask and ≥ 4x Express on this"
	echo "mix, with a lower p99."
	[ -n "$(rows mix-writes)" ] || return 0
	echo
	echo "The writes alone (\`MIX=0:100:0\`, 16 connections, ${DURATION}s) bound the mix: 30% of its requests are writes,"
	echo "so even if reads and searches cost nothing a server cannot serve more than its write rate / 0.3."
	echo
	echo "| server | variant | writes/s alone | p99 (ms) | ceiling of the mix (req/s) | mix within SLO, % of the ceiling |"
	echo "|---|---|---:|---:|---:|---:|"
	rows mix-writes | while IFS=$'\t' read -r _ s v _ rps _ _ _ p99 _; do
		local ceil
		ceil=$(awk -v r="$rps" 'BEGIN {printf "%.0f", r / 0.3}')
		printf '| %s | %s | %s | %s | %s | %s |\n' "$s" "$v" "$rps" "$p99" "$ceil" "$(pct "$(capacity_of mix "$s" "$v")" "$ceil")"
	done
}

capacity_of() { capacity_closed "$@"; }

# capacity_rate SCEN SERVER VARIANT [RATE]: the highest offered rate (or
# RATE only) at which the reads met the SLOs, at least 95% of the offered
# requests of all classes were served and none failed; 0 when none.
capacity_rate() {
	awk -F'\t' -v sc="$1" -v s="$2" -v v="$3" -v only="${4:-}" -v p95="$SLO_P95" -v p99="$SLO_P99" '
		$1 == sc && $2 == s && index($3, v "/") == 1 && (only == "" || $4 == only) {
			r = $4; served[r] += $5; bad[r] += $13 + $11
			if ($3 == v "/read") { q95[r] = $8; q99[r] = $9 } }
		END {
			for (r in served)
				if (q95[r] <= p95 && q99[r] <= p99 && served[r] >= 0.95 * r && bad[r] == 0 && r + 0 > best) best = r + 0
			printf "%.0f\n", best
		}' "$WORK/results.tsv"
}

# capacity_closed SCEN SERVER VARIANT: the highest req/s of a closed-loop
# step whose p95 and p99 (all classes) meet the SLOs.
capacity_closed() {
	awk -F'\t' -v sc="$1" -v s="$2" -v v="$3" -v p95="$SLO_P95" -v p99="$SLO_P99" '
		$1 == sc && $2 == s && $3 == v && $8 <= p95 && $9 <= p99 && $5 > best {best = $5}
		END {printf "%.0f\n", best}' "$WORK/results.tsv"
}

report_smoke() {
	[ -s "$WORK/smoke.md" ] || return 0
	echo
	echo "## Smoke test (every endpoint once, with curl)"
	echo
	cat "$WORK/smoke.md"
	if [ -n "$(rows smoke)" ]; then
		echo "Then the mix for ${DURATION}s with wrk at 16 connections:"
		echo
		echo "| server | req/s | p50 ms | p95 ms | p99 ms | errors | non-2xx |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
		rows smoke | awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $2, $5, $6, $8, $9, $11, $13}'
	fi
}

report_mix() {
	local dir=$1 s v series_rps=() series_p99=() series_thr=() series_lat=()
	[ -n "$(rows mix)$(rows mix-rate)" ] || return 0
	echo
	echo "## 1. Read-heavy mix, ramped"
	echo
	echo "\`bench/scenarios/mix.lua\`: each request acts for the tenant of a random sample row (Zipf-skewed); 60%"
	echo "\`GET /rpc/event?id=\` of that tenant's rows, 30% writes ($UPDATES% of them \`POST /rpc/update_event\` of the"
	echo "sample's event, the others \`POST /rpc/add_event\`), 10% \`GET /rpc/search_events\` of a random kind, following the"
	echo "\`next_cursor\` of an earlier page half of the time. wrk measures all classes together. CPU: microseconds per"
	echo "request of all the stack's processes (server, workers, Redis, PostgreSQL; Express behind nginx and Varnish) over"
	echo "the step, from \`/proc/<pid>/stat\`, and of the front alone in brackets; stale: reads by id that returned a state"
	echo "older than an update answered before they were sent (section 7)."
	echo
	echo "### Closed loop (wrk)"
	echo
	echo "| server | variant | connections | req/s | p50 ms | p90 ms | p95 ms | p99 ms | errors | non-2xx | cache hits | CPU µs/req (front) | stale reads |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' 'FILENAME ~ /staleness/ {st[$1, $2, $3, $4] = ($5 > 0) ? sprintf("%d of %d", $6, $5) : "-"; next}
		$1 == "mix" {printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8, $9, $11, $13,
		($12 > 0 && $14 != "-") ? sprintf("%.0f%%", 100 * $14 / $12) : "-", ($15 != "") ? $15 " (" $16 ")" : "-",
		(($1, $2, $3, $4) in st) ? st[$1, $2, $3, $4] : "-"}' "$WORK/staleness.tsv" "$WORK/results.tsv" 2>/dev/null
	for sv in $(rows mix | cut -f2,3 | awk '!seen[$0]++' | tr '\t' '/'); do
		rows mix "${sv%/*}" "${sv#*/}" | sort -t$'\t' -k4,4n >"$D/mix-${sv/\//-}.dat"
		series_rps+=("$sv|$D/mix-${sv/\//-}.dat|4|5")
		series_p99+=("$sv p99|$D/mix-${sv/\//-}.dat|4|9")
	done
	plot "$dir/mix-closed-throughput.png" "throughput vs connections" "Mix, closed loop: throughput" "connections" "req/s" 1 0 "${series_rps[@]}"
	plot "$dir/mix-closed-p99.png" "p99 vs connections" "Mix, closed loop: p99 latency" "connections" "ms" 1 1 "${series_p99[@]}"
	show_figures

	[ -n "$(rows mix-rate)" ] || return 0
	echo
	echo "### Constant arrival rate (h2load --rps)"
	echo
	echo "Three h2load processes at once, one per class, at 60/30/10% of the offered rate, each with"
	echo "ceil(rate/$H2_PER_CLIENT) connections paced at an equal share (\`--rps\`), so a slow response does not slow the"
	echo "arrivals of the others. h2load sends one set of headers per process: every request acts for tenant"
	echo "$H2_TENANT (the largest). Reads are ids of that tenant's rows, searches 60 (kind, month) pairs. The ramp"
	echo "stops after two steps beyond capacity, then $RATE_BISECT steps bisect the interval between the last rate within"
	echo "capacity and the first beyond it. A step is within capacity when the reads meet the SLOs (p95 ≤"
	echo "$SLO_P95 ms, p99 ≤ $SLO_P99 ms), at least 95% of the offered requests of all classes are served, and none fails."
	echo "Flask's Gunicorn sync workers close every connection, and \`--rps\` paces keep-alive connections: Flask gets one"
	echo "connection per request instead, opened at the class's rate (\`-r K --rate-period P\`); a request's time starts"
	echo "when it is sent, after its connect, and includes its wait in Gunicorn's accept queue."
	echo
	echo "| server | variant | offered req/s | served req/s (read/write/search) | read p50 | read p95 | read p99 | write p99 | search p99 | non-2xx | CPU µs/req (front) | capacity |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	# rows by server and variant (in the order measured), then by offered rate (bisection steps in their place)
	awk -F'\t' -v p95="$SLO_P95" -v p99="$SLO_P99" '$1 == "mix-rate" {
			split($3, a, "/"); k = $2 SUBSEP a[1] SUBSEP $4
			if (!(k in seen)) { seen[k] = 1; order[++n] = k }
			if (!(($2 SUBSEP a[1]) in svo)) svo[$2, a[1]] = ++m
			rps[k, a[2]] = $5; p50[k, a[2]] = $6; q95[k, a[2]] = $8; q99[k, a[2]] = $9; bad[k] += $13
			cpu[k] = ($15 != "") ? $15 " (" $16 ")" : "-"
		}
		END {
			for (i = 1; i <= n; i++) {
				k = order[i]; split(k, f, SUBSEP)
				ok = (q95[k, "read"] <= p95 && q99[k, "read"] <= p99 && rps[k, "read"] + rps[k, "write"] + rps[k, "search"] >= 0.95 * f[3] && bad[k] == 0) ? "within" : "**beyond**"
				printf "%d\t%d\t| %s | %s | %s | %.0f (%.0f/%.0f/%.0f) | %s | %s | %s | %s | %s | %d | %s | %s |\n", svo[f[1], f[2]], f[3], f[1], f[2], f[3],
					rps[k, "read"] + rps[k, "write"] + rps[k, "search"], rps[k, "read"], rps[k, "write"], rps[k, "search"],
					p50[k, "read"], q95[k, "read"], q99[k, "read"], q99[k, "write"], q99[k, "search"], bad[k], cpu[k], ok
			}
		}' "$WORK/results.tsv" | sort -t$'\t' -k1,1n -k2,2n | cut -f3-
	for sv in $(rows mix-rate | cut -f2,3 | sed 's#/[a-z]*$##' | awk '!seen[$0]++' | tr '\t' '/'); do
		local f=$D/rate-${sv/\//-}
		awk -F'\t' -v s="${sv%/*}" -v v="${sv#*/}" '$1 == "mix-rate" && $2 == s && index($3, v "/") == 1 {t[$4] += $5}
			END {for (r in t) print r "\t" t[r]}' "$WORK/results.tsv" | sort -k1,1n >"$f.thr"
		rows mix-rate "${sv%/*}" "${sv#*/}/read" | sort -t$'\t' -k4,4n >"$f.read"
		series_thr+=("$sv|$f.thr|1|2")
		series_lat+=("$sv p50|$f.read|4|6" "$sv p95|$f.read|4|8" "$sv p99|$f.read|4|9")
	done
	awk -F'\t' '$1 == "mix-rate" {print $4 "\t" $4}' "$WORK/results.tsv" | sort -u -k1,1n >"$D/ideal.dat"
	plot "$dir/mix-rate-throughput.png" "served vs offered" "Mix at constant rate: served vs offered" "offered req/s" "served req/s" 1 1 \
		"offered|$D/ideal.dat|1|2" "${series_thr[@]}"
	plot "$dir/mix-rate-latency.png" "read p50/p95/p99 vs offered" "Mix at constant rate: read latency" "offered req/s" "ms" 1 1 "${series_lat[@]}"
	show_figures
}

report_page() {
	local dir=$1 series=()
	[ -n "$(rows page)" ] || return 0
	echo
	echo "## 2. Deep pagination: cursor vs offset"
	echo
	echo "\`bench/scenarios/page.lua\`, $PAGE_CONNS connections, each reading walks of $PAGE_WALK newest-first pages (20 rows) of"
	echo "tenant 1 (the largest) that start DEPTH rows deep, again and again; cache off (the walks repeat the same"
	echo "pages). cursor: \`search_events\` from the \`next_cursor\` found at DEPTH rows (built beforehand by paging"
	echo "in SQL), then following \`next_cursor\` (\`pulse.page\`); offset: \`search_events_offset\` with"
	echo "\`start\` = DEPTH, DEPTH + 20, ... (LIMIT/OFFSET)."
	echo
	echo "| server | DEPTH (rows) | cursor req/s | offset req/s | cursor p50 / p99 ms | offset p50 / p99 ms | cursor / offset req/s |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' '$1 == "page" { k = $2 SUBSEP $4; if (!(k in seen)) {seen[k] = 1; order[++n] = k}
			r[k, $3] = $5; l[k, $3] = $6 " / " $9 }
		END { for (i = 1; i <= n; i++) { k = order[i]; split(k, f, SUBSEP)
			printf "| %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], r[k, "cursor"], r[k, "offset"], l[k, "cursor"], l[k, "offset"],
				(r[k, "offset"] > 0) ? sprintf("%.1fx", r[k, "cursor"] / r[k, "offset"]) : "-" } }' "$WORK/results.tsv"
	for sv in $(rows page | cut -f2,3 | awk '!seen[$0]++' | tr '\t' '/'); do
		rows page "${sv%/*}" "${sv#*/}" | sort -t$'\t' -k4,4n >"$D/page-${sv/\//-}.dat"
		series+=("$sv|$D/page-${sv/\//-}.dat|4|5")
	done
	plot "$dir/page.png" "pagination" "Pagination walks: throughput vs depth" "rows skipped (DEPTH)" "req/s" 0 1 "${series[@]}"
	show_figures
}

report_agg() {
	[ -n "$(rows agg)" ] || return 0
	echo
	echo "## 3. Aggregates: precomputed vs on demand, under concurrent writes"
	echo
	echo "$AGG_CONNS connections read \`tenant_stats\` (the \`pulse.create_aggregate\` table, refreshed incrementally by the"
	echo "pulse workers every 5 s) or \`tenant_stats_live\` (the same GROUP BY over the tenant's events, on demand) for"
	echo "random Zipf-skewed tenants, while $AGG_WRITERS more connections add events."
	echo
	echo "| server | variant | endpoint | reads/s | p50 ms | p95 ms | p99 ms | non-2xx | writes/s meanwhile | write p99 ms | aggregate staleness at the end (s) |"
	echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' 'FILENAME ~ /staleness/ {st[$1, $2, $3] = $4; next}
		$1 == "agg-writes" {w[$2, $3, $4] = $5; wp[$2, $3, $4] = $9; next}
		$1 == "agg" {k[++n] = $2 SUBSEP $3 SUBSEP $4; line[n] = $0}
		END { for (i = 1; i <= n; i++) { split(line[i], f, "\t")
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[2], f[3], f[4], f[5], f[6], f[8], f[9], f[13],
				w[k[i]], wp[k[i]], (k[i] in st) ? st[k[i]] : "-" } }' "$WORK/agg-staleness.tsv" "$WORK/results.tsv" 2>/dev/null
}

report_cache() {
	[ -n "$(rows cache)" ] || return 0
	echo
	echo "## 4. Cache: cold vs warm, hit rate"
	echo
	echo "Reads by id only (\`MIX=100:0:0\`), $CACHE_CONNS connections, ${DURATION}s: right after \`FLUSHALL\` (cold), then"
	echo "again (warm), then with the cache off. The working set is the $(wc -l <"$BENCH_DIR/data/samples.tsv" 2>/dev/null || echo '?') sampled ids."
	echo "Hit rate: responses with \`X-Cache: hit\` (or stale); Redis: its keyspace hits and misses in the run. nginx and"
	echo "Varnish (in front of Express without its cache, their longest TTL): right after a restart (cold), then again"
	echo "(warm). CPU: microseconds per request of the whole stack (the front alone in brackets), as in scenario 1."
	echo
	echo "| server | variant | run | req/s | p50 ms | p95 ms | p99 ms | hit rate | CPU µs/req (front) | Redis |"
	echo "|---|---|---|---:|---:|---:|---:|---:|---:|---|"
	awk -F'\t' 'FILENAME ~ /cache-redis/ {rd[$1, $2] = $3; next}
		$1 == "cache" { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $8, $9,
			($12 > 0 && $14 != "-") ? sprintf("%.0f%%", 100 * $14 / $12) : "-", ($15 != "") ? $15 " (" $16 ")" : "-",
			(($2 SUBSEP $4) in rd) ? rd[$2, $4] : "" }' \
		"$WORK/cache-redis.tsv" "$WORK/results.tsv" 2>/dev/null
}

report_spike() {
	local dir=$1 series=() series_r=() s
	[ -n "$(rows spike)" ] || return 0
	echo
	echo "## 5. Spike: 5x for ${SPIKE_SECONDS}s"
	echo
	echo "Reads by id of tenant $H2_TENANT at a constant BASE req/s for $((3 * SPIKE_SECONDS))s (h2load --rps; Flask: a connection per request"
	echo "opened at the rate, as in scenario 1); during the middle"
	echo "${SPIKE_SECONDS}s a second h2load adds 4 x BASE (5x in all). BASE is a fifth of the constant-rate read capacity"
	echo "found by scenario 1 (200 when unknown). Per phase, the worst per-second p99:"
	echo
	echo "| server | BASE req/s | p99 before (ms) | p99 during | p99 after | max during | non-2xx |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for s in $(rows spike | cut -f2 | awk '!seen[$0]++'); do
		rows spike "$s" | awk -F'\t' -v s="$s" -v b="$(awk -v s="$s" '$1 == s {print $2}' "$WORK/spike-base.txt")" -v p="$SPIKE_SECONDS" '
			{ ph = ($4 < p) ? 1 : ($4 < 2 * p + 1) ? 2 : 3; if ($9 > w[ph]) w[ph] = $9; if (ph == 2 && $10 > mx) mx = $10; bad += $13 }
			END { printf "| %s | %s | %s | %s | %s | %s | %d |\n", s, b, w[1], w[2], w[3], mx, bad }'
		rows spike "$s" | sort -t$'\t' -k4,4n >"$D/spike-$s.dat"
		series+=("$s p99|$D/spike-$s.dat|4|9")
		series_r+=("$s|$D/spike-$s.dat|4|5")
	done
	plot "$dir/spike-p99.png" "spike p99" "Spike: p99 per second" "second" "ms" 0 1 "${series[@]}"
	plot "$dir/spike-rps.png" "spike req/s" "Spike: requests per second" "second" "req/s" 0 0 "${series_r[@]}"
	show_figures
}

report_soak() {
	local dir=$1 series=() s
	[ -s "$WORK/soak.tsv" ] || return 0
	echo
	echo "## 6. Soak: ${SOAK_SECONDS}s of the mix"
	echo
	echo "wrk, $SOAK_CONNS connections; every ${SOAK_EVERY}s the server's resident memory (with its child processes), its"
	echo "PostgreSQL connections (role pulse_proxy), its established TCP connections and Redis's used memory."
	echo
	echo "| server | req/s | p99 ms | non-2xx | RSS first → last (max), MB | PG connections min–max | TCP min–max | Redis first → last, MB |"
	echo "|---|---:|---:|---:|---|---|---|---|"
	for s in $(cut -f1 "$WORK/soak.tsv" | awk '!seen[$0]++'); do
		local w
		w=$(rows soak "$s" | tail -n 1)
		awk -F'\t' -v s="$s" -v w="$w" '$1 == s {
				n++; if (n == 1) {r0 = $3; m0 = $6; pmin = $4; tmin = $5}
				r1 = $3; m1 = $6; if ($3 > rmax) rmax = $3
				if ($4 < pmin) pmin = $4; if ($4 > pmax) pmax = $4; if ($5 < tmin) tmin = $5; if ($5 > tmax) tmax = $5 }
			END { split(w, f, "\t")
				printf "| %s | %s | %s | %s | %.1f → %.1f (%.1f) | %s–%s | %s–%s | %.1f → %.1f |\n", s, f[5], f[9], f[13],
					r0 / 1024, r1 / 1024, rmax / 1024, pmin, pmax, tmin, tmax, m0 / 1024, m1 / 1024 }' "$WORK/soak.tsv"
		awk -F'\t' -v s="$s" '$1 == s {print $2 "\t" $3 / 1024}' "$WORK/soak.tsv" >"$D/soak-$s.dat"
		series+=("$s|$D/soak-$s.dat|1|2")
	done
	plot "$dir/soak-rss.png" "soak RSS" "Soak: resident memory of the server" "seconds" "MB" 0 0 "${series[@]}"
	show_figures
}

# --- issue 19: the HTTP caches users deploy instead, speed and staleness ---

# stack_name SERVER: how the report names a server's stack
stack_name() {
	case $1 in
	proxy) echo "pulse-proxy" ;;
	express) echo "Express" ;;
	nginx) echo "Express + nginx" ;;
	varnish) echo "Express + Varnish" ;;
	flask) echo "Flask" ;;
	static) echo "h2o static file" ;;
	*) echo "$1" ;;
	esac
}

# slo_row SCEN SERVER VARIANT: the result line of the closed-loop step with
# the highest req/s whose p95 and p99 meet the SLOs (capacity_closed's step)
slo_row() {
	awk -F'\t' -v sc="$1" -v s="$2" -v v="$3" -v p95="$SLO_P95" -v p99="$SLO_P99" '
		$1 == sc && $2 == s && $3 == v && $8 <= p95 && $9 <= p99 && $5 + 0 > best {best = $5 + 0; line = $0}
		END {if (line != "") print line}' "$WORK/results.tsv"
}

# stale_of SCEN SERVER VARIANT [X]: "reads stale pct p50 p99 max" over the
# steps of SCEN (or step X only), ages in ms from WORK/stale-ages.tsv
stale_of() {
	local counts ages
	counts=$(awk -F'\t' -v sc="$1" -v s="$2" -v v="$3" -v x="${4:-}" '
		$1 == sc && $2 == s && $3 == v && (x == "" || $4 == x) {r += $5; n += $6}
		END {printf "%d %d", r, n}' "$WORK/staleness.tsv" 2>/dev/null)
	ages=$(awk -F'\t' -v sc="$1" -v s="$2" -v v="$3" -v x="${4:-}" '
		$1 == sc && $2 == s && $3 == v && (x == "" || $4 == x) {print $5}' "$WORK/stale-ages.tsv" 2>/dev/null |
		sort -g | awk '{a[NR] = $1}
			function q(p,  i) {i = int(NR * p + 0.999999); if (i < 1) i = 1; return a[i]}
			END {if (NR) printf "%.1f %.1f %.1f", q(0.5), q(0.99), a[NR]; else print "- - -"}')
	echo "${counts:-0 0} $(awk -v c="${counts:-0 0}" 'BEGIN {split(c, f, " "); if (f[1] > 0) printf "%.3f", 100 * f[2] / f[1]; else print "-"}') $ages"
}

# fmt_stale "reads stale pct p50 p99 max": the report's staleness cells
# "stale of reads (pct%) | p50 / p99 / max"
fmt_stale() {
	local r n pc a b c
	read -r r n pc a b c <<<"$1"
	if [ "${r:-0}" = 0 ]; then echo "not measured | -"; return; fi
	if [ "$n" = 0 ]; then echo "**0** of $r | -"; return; fi
	echo "$n of $r ($pc%) | $a / $b / $c"
}

# the stacks measured by the closed-loop mix, in the order measured
mix_stacks() { rows mix | cut -f2,3 | awk '!seen[$0]++'; }

report_peers_summary() {
	[ -s "$WORK/staleness.tsv" ] && [ -n "$(rows mix)" ] || return 0
	echo
	echo "### Against what users deploy instead: HTTP caches with a TTL in front of Express"
	echo
	echo "The closed-loop mix (wrk, ${DURATION}s steps; its writes are half updates of the events the reads fetch): the"
	echo "step with the highest req/s within the SLOs, its latency and its CPU per request (all processes of the"
	echo "stack; the front alone in brackets), and, over all its steps, the reads by id that returned a state older"
	echo "than an update acknowledged before they were sent (section 7). Constant rate: the capacity of scenario 1."
	echo
	echo "| stack | variant | req/s within SLO | p50 / p99 (ms) | CPU µs/req (front) | capacity at constant rate | stale reads | stale age p50 / p99 / max (ms) |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|"
	local s v row
	while IFS=$'\t' read -r s v; do
		row=$(slo_row mix "$s" "$v")
		[ -n "$row" ] || row=$'-\t-\t-\t0\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-'
		printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(stack_name "$s")" "$v" \
			"$(echo "$row" | awk -F'\t' '{printf "%.0f", $5}')" \
			"$(echo "$row" | awk -F'\t' '{printf "%s / %s", $6, $9}')" \
			"$(echo "$row" | awk -F'\t' '{printf "%s (%s)", $15, $16}')" \
			"$(capacity_rate mix-rate "$s" "$v" 2>/dev/null)" "$(fmt_stale "$(stale_of mix "$s" "$v")")"
	done < <(mix_stacks)
	peers_targets
}

# peers_targets: the issue's bar for the mix, from this run
peers_targets() {
	local p best bs bv s v c st
	p=$(capacity_closed mix proxy cache)
	[ "${p:-0}" != 0 ] || return 0
	best=0
	while IFS=$'\t' read -r s v; do
		is_http_cache "$s" || continue
		c=$(capacity_closed mix "$s" "$v")
		if [ "$c" -gt "$best" ]; then best=$c bs=$s bv=$v; fi
	done < <(mix_stacks)
	[ "$best" -gt 0 ] || return 0
	st=$(stale_of mix proxy cache)
	echo
	echo "Target (issue 19): on the mix, pulse-proxy's throughput ≥ the best TTL-cache stack's, with 0 stale reads against"
	echo "their measured stale fraction. Measured: pulse-proxy $p req/s within SLO vs $(stack_name "$bs") $bv $best req/s"
	echo "($(ratio "$p" "$best")): throughput **$(awk -v a="$p" -v b="$best" 'BEGIN {print (a >= b) ? "met" : "not met"}')**; stale reads"
	echo "$(fmt_stale "$st" | cut -d'|' -f1 | sed 's/ *$//') against $(fmt_stale "$(stale_of mix "$bs" "$bv")" | cut -d'|' -f1 | sed 's/ *$//'): staleness"
	echo "**$(echo "$st" | awk '{print ($1 > 0 && $2 == 0) ? "met" : "not met"}')**."
}

report_staleness() {
	local dir=$1 s v sp=() f
	[ -s "$WORK/staleness.tsv" ] || return 0
	echo
	echo "## 7. Staleness: reads that returned a state older than a committed write"
	echo
	echo "Every closed-loop run of \`mix.lua\` logs, per wrk thread, each read by id (\`GET /rpc/event?id=\`: the row's"
	echo "id, the \`version\` it returned, the time it was sent) and each update (\`POST /rpc/update_event\`, which sets"
	echo "\`version = version + 1\`: the id, the new version, the time its answer arrived, that is after its COMMIT"
	echo "returned). Times are CLOCK_MONOTONIC microseconds of the machine. A read is **stale** when an update of its"
	echo "row to a higher version had been answered before the read was sent; its age is the read's start minus the"
	echo "earliest such answer (\`bench/staleness.py\`, against the updates of this run's earlier steps too). An update"
	echo "still in flight when a read starts does not count. A thread never has two reads of one id in flight, so an"
	echo "answer is matched to its request by the id in its body. UPDATES=$UPDATES% of the writes are updates; reads and"
	echo "updates draw the same Zipf-skewed sample rows, so the stale fraction depends on how often a row read was"
	echo "updated within the cache's TTL, and the ages on the TTL and grace; neither depends on the machine's speed much."
	echo
	echo "Configurations (\`bench/peers/\`): nginx ${NGINX_VERSION:-} \`proxy_cache\` keyed on method, URI and"
	echo "\`Authorization\` (the tenant's token), \`proxy_cache_valid 200 <TTL>\`, \`proxy_cache_lock on\`,"
	echo "\`proxy_cache_use_stale updating\` + \`proxy_cache_background_update on\`, entries dropped after TTL + $PEER_GRACE s"
	echo "unread; Varnish ${VARNISH_VERSION:-} hashing URL + \`Authorization\`, \`beresp.ttl = <TTL>\`, \`beresp.grace ="
	echo "${PEER_GRACE}s\`, $VARNISH_POOLS thread pools, \`-s malloc\`. Both in front of Express without its cache"
	echo "($EXPRESS_WORKERS workers). pulse-proxy: \`event\` and \`update_event\` carry the table tag \`bench.events\`"
	echo "(\`bench/data/api.sql\`, until keyed tags), so every write invalidates every cached event. nginx's waiters on"
	echo "\`proxy_cache_lock\` poll it every 500 ms, so concurrent misses of one key can answer up to 500 ms late."
	echo "With stale-while-updating and grace, the first read after an entry expired gets the old entry while it is"
	echo "refreshed: a stale answer can be up to TTL + grace old, whatever the TTL."
	echo
	echo "| stack | variant | step | req/s | p99 ms | CPU µs/req (front) | reads | updates | stale reads | stale age p50 / p99 / max (ms) |"
	echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' 'FILENAME ~ /staleness/ {k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4; st[k] = $0; next}
		$1 == "mix" || $1 == "cache" || $1 == "smoke" { k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4; if (k in st) {
			split(st[k], f, "\t")
			printf "%s\t%s\t%s\t%s\t%s\t%s\t%s (%s)\t%s\t%s\t%s\t%s\t%s\t%s\n", $2, $3, $1, $4, $5, $9, $15, $16, f[5], f[10], f[6], f[7], f[8], f[9] } }' \
		"$WORK/staleness.tsv" "$WORK/results.tsv" | while IFS=$'\t' read -r s v sc x rps p99 cpu r u n a b c; do
		local cell="**0**" age="-"
		[ "$n" = 0 ] || cell="$n ($(awk -v n="$n" -v r="$r" 'BEGIN {printf "%.2f%%", 100 * n / r}'))" \
			age=$(awk -v a="$a" -v b="$b" -v c="$c" 'BEGIN {printf "%.1f / %.1f / %.1f", a, b, c}')
		printf '| %s | %s | %s %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(stack_name "$s")" "$v" "$sc" "$x" "$rps" "$p99" "$cpu" "$r" "$u" "$cell" "$age"
	done
	if [ -s "$WORK/stale-examples.tsv" ]; then
		echo
		echo "The oldest stale reads of each stack (from \`stale-examples.tsv\` of the run: the read's row, the version it"
		echo "returned, the newer version whose update had been answered, and how long before the read):"
		echo
		echo "| stack | variant | step | row | version read | newer version answered | age (ms) |"
		echo "|---|---|---|---:|---:|---:|---:|"
		sort -t$'\t' -k1,3 -k10,10gr "$WORK/stale-examples.tsv" | awk -F'\t' '$1 == "mix" && !(($2, $3) in seen) {seen[$2, $3] = 1; print}' |
			while IFS=$'\t' read -r sc s v x id seen _ ver _ age; do
				printf '| %s | %s | %s %s | %s | %s | %s | %s |\n' "$(stack_name "$s")" "$v" "$sc" "$x" "$id" "$seen" "$ver" "$age"
			done
	fi
	# plots: the closed-loop mix, p99 against req/s, one line per stack; the
	# stale fraction and ages per stack
	while IFS=$'\t' read -r s v; do
		f=$D/peers-$s-$v.dat
		rows mix "$s" "$v" | sort -t$'\t' -k4,4n >"$f"
		sp+=("$(stack_name "$s") $v|$f|5|9")
	done < <(mix_stacks)
	plot "$dir/peers-rps-p99.png" "p99 vs req/s per stack" "Mix, closed loop: p99 against throughput, per stack (points: $RAMP_CONNS connections)" \
		"req/s" "p99 ms" 0 1 "${sp[@]}"
	: >"$D/peers-stale.dat"
	while IFS=$'\t' read -r s v; do
		read -r r n pc a b c <<<"$(stale_of mix "$s" "$v")"
		[ "$r" != 0 ] || continue
		printf '"%s %s"\t%s\t%s\t%s\t%s\n' "$(stack_name "$s")" "$v" "${pc/-/0}" "$a" "$b" "$c" >>"$D/peers-stale.dat"
	done < <(mix_stacks)
	plot_bars "$dir/peers-stale-fraction.png" "stale reads per stack" "Mix: stale reads, % of the reads by id" "% stale" 0 \
		"$D/peers-stale.dat" "+2:stale reads"
	plot_bars "$dir/peers-stale-age.png" "age of the stale answers per stack" "Mix: age of the stale answers" "ms (log)" 1 \
		"$D/peers-stale.dat" "3:p50" "4:p99" "5:max"
	show_figures
}

# plot_bars FILE ALT TITLE YLABEL LOGY DATAFILE COL:TITLE...: a clustered bar
# chart of DATAFILE (tab-separated; column 1 the quoted label), kept for
# show_figures like plot's.  +COL:TITLE also writes each bar's value over
# it (for one column only: the labels sit on the clusters' centres).
plot_bars() {
	local file=$1 alt=$2 title=$3 yl=$4 logy=$5 data=$6 cmds="" sep="" c n
	shift 6
	[ -s "$data" ] || return 0
	for c in "$@"; do
		n=${c%%:*}
		cmds+="$sep'$data' using ${n#+}:xtic(1) title '${c#*:}'"
		[ "$n" = "${n#+}" ] || cmds+=", '' using 0:${n#+}:${n#+} with labels offset 0,0.8 notitle"
		sep=", "
	done
	gnuplot <<GP 2>>"$WORK/gnuplot.log" || true
set terminal pngcairo size 900,500 font 'sans,10'
set output '$file'
set title '$title'
set ylabel '$yl'
set datafile separator '\t'
set datafile missing '-'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set xtics rotate by -20
set key outside right
set yrange [$( [ "$logy" = 1 ] && echo 0.1 || echo 0 ):*]
set offsets 0, 0, graph 0.08, 0
$( [ "$logy" = 1 ] && echo 'set logscale y' )
plot $cmds
GP
	[ ! -f "$file" ] || FIGURES+=("![$alt]($(basename "$(dirname "$file")")/$(basename "$file"))")
}

# hit_ratio A B COLUMN: the median over the rounds of scenario hits of A's
# COLUMN / B's (each round's two sides are seconds apart)
hit_ratio() {
	awk -F'\t' -v a="$1" -v b="$2" -v c="$3" '$1 == "hits" && ($2 == a || $2 == b) {v[$2, $4] = $c; r[$4] = 1}
		END {for (k in r) if (v[b, k] > 0 && v[a, k] != "") print v[a, k] / v[b, k]}' "$WORK/results.tsv" | median
}

# times: "1.23x" for the number on stdin, "-" for none
times() { awk '{if ($1 == "-" || $1 == "") print "-"; else printf "%.2fx\n", $1}'; }

# median of the numbers on stdin
median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

report_hits() {
	[ -n "$(rows hits)" ] || return 0
	local s
	echo
	echo "## 8. Cached-hit ceiling: one cached answer, again and again"
	echo
	echo "\`wrk -t1 -c$HITS_CONNS\` (\`bench/scenarios/hit.lua\`: one prebuilt request, no Lua per request) reading one"
	echo "answer (\`GET /rpc/event?id=\` of tenant $H2_TENANT, its token) from pulse-proxy's cache, from nginx's and Varnish's (the"
	echo "longest TTL, in front of Express), and the same body bytes as a static file from h2o (${H2O_VERSION:-h2o},"
	echo "$STATIC_THREADS threads): the best a server does on this machine. All servers up at once, $HITS_ROUNDS rounds of"
	echo "${DURATION}s each, each round running them in turn; medians. CPU per hit: the front's own processes (pulse-proxy's"
	echo "$PROXY_THREADS threads; nginx's $NGINX_WORKERS workers; varnishd's manager and cache process; h2o), and the whole stack"
	echo "(with Redis and PostgreSQL, and Express behind nginx and Varnish: idle here, but running)."
	echo
	echo "| server | req/s (median) | rounds | p50 ms | p99 ms | CPU µs/hit, front | CPU µs/hit, stack | body / headers (bytes) |"
	echo "|---|---:|---|---:|---:|---:|---:|---:|"
	for s in $(rows hits | cut -f2 | awk '!seen[$0]++'); do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(stack_name "$s")" \
			"$(rows hits "$s" | cut -f5 | median)" "$(rows hits "$s" | cut -f5 | awk '{printf "%s%.0f", sep, $1; sep = ", "}')" \
			"$(rows hits "$s" | cut -f6 | median)" "$(rows hits "$s" | cut -f9 | median)" \
			"$(rows hits "$s" | cut -f16 | median)" "$(rows hits "$s" | cut -f15 | median)" \
			"$(awk -F'\t' -v s="$s" '$1 == s {printf "%s / %s", $2, $3}' "$WORK/hits-bytes.tsv" 2>/dev/null)"
	done
	echo
	echo "| ratio (median of the rounds' ratios) | req/s | CPU µs/hit, front |"
	echo "|---|---:|---:|"
	for s in nginx varnish static; do
		[ -n "$(rows hits "$s")" ] && [ -n "$(rows hits proxy)" ] || continue
		printf '| pulse-proxy / %s | %s | %s |\n' "$(stack_name "$s")" \
			"$(hit_ratio proxy "$s" 5 | times)" "$(hit_ratio proxy "$s" 16 | times)"
	done
	if [ -n "$(rows hits nginx)" ] && [ -n "$(rows hits proxy)" ]; then
		local rr cr
		rr=$(hit_ratio proxy nginx 5)
		cr=$(hit_ratio proxy nginx 16)
		echo
		echo "Target (issue 19): cached hits ≥ 1.2x nginx proxy_cache's req/s, at ≤ its server CPU per hit, same bytes."
		echo "Measured: $(awk -v r="$rr" 'BEGIN {printf "%.2fx", r}') the req/s (**$(awk -v r="$rr" 'BEGIN {print (r >= 1.2) ? "met" : "not met"}')**), $(awk -v r="$cr" 'BEGIN {printf "%.2fx", r}') the CPU per hit of the front"
		echo "(**$(awk -v r="$cr" 'BEGIN {print (r <= 1) ? "met" : "not met"}')**). The headers differ (each server's own: X-Cache, Date, Server, ETag...), the bodies are the"
		echo "same bytes (checked with \`cmp\` before the runs)."
	fi
}
