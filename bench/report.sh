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

META_VARS="ROWS TENANTS DURATION SERVERS BASELINES THREADS RAMP_CONNS RAMP_RATES SLO_P95 SLO_P99
PAGE_DEPTHS PAGE_WALK PAGE_CONNS AGG_CONNS AGG_WRITERS CACHE_CONNS SPIKE_SECONDS SOAK_SECONDS SOAK_CONNS
SOAK_EVERY H2_TENANT H2_PER_CLIENT PROXY_THREADS PROXY_POOL EXPRESS_WORKERS EXPRESS_POOL
FLASK_WORKERS NAME DATE QUICK"

# save_meta WORK SCENARIOS: parameters, machine and software facts.
save_meta() {
	local w=$1 v
	{
		for v in $META_VARS; do printf '%s=%q\n' "$v" "${!v}"; done
		printf 'SCENARIOS=%q\n' "$2"
		printf 'INVOCATION=%q\n' "$(for v in ROWS TENANTS QUICK DURATION SERVERS BASELINES SOAK_SECONDS; do
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
	local out=$2 dir s v
	# shellcheck disable=SC1091
	. "$WORK/meta.env"
	dir=${out%.md}
	mkdir -p "$dir"
	local D=$WORK/plotdata
	mkdir -p "$D"
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
		report_smoke
		report_mix "$dir"
		report_page "$dir"
		report_agg
		report_cache
		report_spike "$dir"
		report_soak "$dir"

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
	echo "\`GET /rpc/event?id=\` of that tenant's rows, 30% \`POST /rpc/add_event\`, 10% \`GET /rpc/search_events\` of a"
	echo "random kind, following the \`next_cursor\` of an earlier page half of the time. wrk measures all"
	echo "classes together."
	echo
	echo "### Closed loop (wrk)"
	echo
	echo "| server | variant | connections | req/s | p50 ms | p90 ms | p95 ms | p99 ms | errors | non-2xx | cache hits |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	rows mix | awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8, $9, $11, $13,
		($12 > 0 && $14 != "-") ? sprintf("%.0f%%", 100 * $14 / $12) : "-"}'
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
	echo "| server | variant | offered req/s | served req/s (read/write/search) | read p50 | read p95 | read p99 | write p99 | search p99 | non-2xx | capacity |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	# rows by server and variant (in the order measured), then by offered rate (bisection steps in their place)
	awk -F'\t' -v p95="$SLO_P95" -v p99="$SLO_P99" '$1 == "mix-rate" {
			split($3, a, "/"); k = $2 SUBSEP a[1] SUBSEP $4
			if (!(k in seen)) { seen[k] = 1; order[++n] = k }
			if (!(($2 SUBSEP a[1]) in svo)) svo[$2, a[1]] = ++m
			rps[k, a[2]] = $5; p50[k, a[2]] = $6; q95[k, a[2]] = $8; q99[k, a[2]] = $9; bad[k] += $13
		}
		END {
			for (i = 1; i <= n; i++) {
				k = order[i]; split(k, f, SUBSEP)
				ok = (q95[k, "read"] <= p95 && q99[k, "read"] <= p99 && rps[k, "read"] + rps[k, "write"] + rps[k, "search"] >= 0.95 * f[3] && bad[k] == 0) ? "within" : "**beyond**"
				printf "%d\t%d\t| %s | %s | %s | %.0f (%.0f/%.0f/%.0f) | %s | %s | %s | %s | %s | %d | %s |\n", svo[f[1], f[2]], f[3], f[1], f[2], f[3],
					rps[k, "read"] + rps[k, "write"] + rps[k, "search"], rps[k, "read"], rps[k, "write"], rps[k, "search"],
					p50[k, "read"], q95[k, "read"], q99[k, "read"], q99[k, "write"], q99[k, "search"], bad[k], ok
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
	echo "Hit rate: responses with \`X-Cache: hit\` (or stale); Redis: its keyspace hits and misses in the run."
	echo
	echo "| server | run | req/s | p50 ms | p95 ms | p99 ms | hit rate | Redis |"
	echo "|---|---|---:|---:|---:|---:|---:|---|"
	awk -F'\t' 'FILENAME ~ /cache-redis/ {rd[$1, $2] = $3; next}
		$1 == "cache" { printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $4, $5, $6, $8, $9,
			($12 > 0 && $14 != "-") ? sprintf("%.0f%%", 100 * $14 / $12) : "-", (($2 SUBSEP $4) in rd) ? rd[$2, $4] : "" }' \
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
