# shellcheck shell=bash
# bench/scenarios.sh: the scenarios of the load-test suite, sourced by
# bench/run.sh (which defines serve, run_wrk, run_rate, run_h2load, ...).
# Each scenario_<name> measures every server of $SERVERS in turn, with the
# other servers stopped, and appends its numbers to $RES (and, for some, to
# a side file in $WORK).  Variants: "cache" is the server as shipped,
# "nocache" the same without its Redis cache (Flask has none), "tabletags"
# the proxy with its endpoints cached under the table's tag (as before keyed
# tags, bench/data/api.sql); nginx and
# Varnish (HTTP caches in front of Express without its cache) have one
# variant per TTL, ttl<N>.

# variants SERVER: the variants of SERVER to measure.
variants() {
	local t
	if [ "$1" = flask ]; then echo nocache
	elif is_http_cache "$1"; then for t in $PEER_TTLS; do printf 'ttl%s ' "$t"; done; echo
	elif [ "$1" = proxy ] && [ "$BASELINES" = 1 ]; then echo cache tabletags nocache
	elif [ "$1" = proxy ]; then echo cache tabletags
	elif [ "$BASELINES" = 1 ]; then echo cache nocache
	else echo cache; fi
}

# shipped SERVER: the variant of SERVER with its cache on (the HTTP caches:
# the longest TTL)
shipped() {
	if [ "$1" = flask ]; then echo nocache
	elif is_http_cache "$1"; then echo "ttl$(echo "$PEER_TTLS" | tr ' ' '\n' | sort -n | tail -n 1)"
	else echo cache; fi
}

# app_servers: the servers of $SERVERS that are applications, not an HTTP
# cache in front of one (the scenarios page, agg, spike and soak measure
# the applications' own features)
app_servers() {
	local s
	for s in $SERVERS; do is_http_cache "$s" || echo "$s"; done
}

unavailable() { # unavailable SCEN SERVER
	log "$1: $2 is not available, skipped"
	printf '%s\t%s\n' "$1" "$2" >>"$WORK/skipped.tsv"
}

# rate_ok SCEN SERVER VARIANT RATE: was RATE within capacity?  The reads met
# the SLOs, at least 95% of the offered requests (all classes) were served,
# none failed.
rate_ok() {
	[ "$(capacity_rate "$1" "$2" "$3" "$4")" = "$4" ]
}

# --- smoke (bench/run.sh peers): every endpoint once with curl, then a short
# wrk run of the mix, on every server.
scenario_smoke() {
	local s tok body url next
	tok=$(awk '$1 == 1 {print $2}' "$WORK/tokens.tsv")
	for s in $SERVERS; do
		serve "$s" "$(shipped "$s")" || { unavailable smoke "$s"; continue; }
		url=${URL[$s]}
		{
			echo "## $s ($url)"
			smoke_req "$s" "GET /health" "$url/health"
			smoke_req "$s" "GET /rpc/event?id=N (tenant 1's event)" \
				"$url/rpc/event?id=$(awk '$2 == 1 {print $1; exit}' "$BENCH_DIR/data/samples.tsv")" -H "Authorization: Bearer $tok"
			body=$(curl -s "$url/rpc/search_events?kind=click&page_size=3" -H "Authorization: Bearer $tok")
			smoke_req "$s" "GET /rpc/search_events?kind=click&page_size=3" \
				"$url/rpc/search_events?kind=click&page_size=3" -H "Authorization: Bearer $tok"
			next=$(printf '%s' "$body" | python3 -c 'import json, sys, urllib.parse; print(urllib.parse.quote(json.load(sys.stdin)["next_cursor"], safe=""))' 2>/dev/null || true)
			smoke_req "$s" "GET /rpc/search_events?...&cursor=<next_cursor>" \
				"$url/rpc/search_events?kind=click&page_size=3&cursor=$next" -H "Authorization: Bearer $tok"
			smoke_req "$s" "GET /rpc/search_events_offset?kind=click&start=3&page_size=3" \
				"$url/rpc/search_events_offset?kind=click&start=3&page_size=3" -H "Authorization: Bearer $tok"
			smoke_req "$s" "POST /rpc/add_event" "$url/rpc/add_event" -H "Authorization: Bearer $tok" \
				-H 'Content-Type: application/json' -d '{"kind":"click","amount":1.5,"note":"smoke"}'
			smoke_req "$s" "GET /rpc/tenant_stats" "$url/rpc/tenant_stats" -H "Authorization: Bearer $tok"
			smoke_req "$s" "GET /rpc/tenant_stats_live" "$url/rpc/tenant_stats_live" -H "Authorization: Bearer $tok"
			smoke_req "$s" "GET /rpc/event?id=1 without a token" "$url/rpc/event?id=1"
			echo
		} >>"$WORK/smoke.md"
		run_wrk smoke "$s" "$(shipped "$s")" 16 16 "$DURATION" mix.lua
	done
}

# smoke_req SERVER TITLE URL [curl args]: one request, its status and the
# first bytes of the body, as Markdown.
smoke_req() {
	local s=$1 title=$2 url=$3 status body
	shift 3
	status=$(curl -s -o "$WORK/smoke.body" -w '%{http_code}' "$@" "$url" || echo 000)
	body=$(head -c 160 "$WORK/smoke.body" | tr '\n' ' ')
	echo "- \`$title\`: **$status** \`${body//\`/}\`"
	printf 'smoke-http\t%s\t%s\t%s\n' "$s" "$title" "$status" >>"$WORK/smoke.tsv"
}

# --- 1. the read-heavy mix, ramped: closed loop (wrk, connections) and
# constant arrival rate (h2load) until the read SLOs break twice.
scenario_mix() {
	local s v c r broke lo hi i
	for s in $SERVERS; do
		for v in $(variants "$s"); do
			serve "$s" "$v" || { unavailable mix "$s"; continue; }
			reset_data
			run_wrk warmup "$s" "$v" 0 16 3 mix.lua
			for c in $RAMP_CONNS; do
				run_wrk mix "$s" "$v" "$c" "$c" "$DURATION" mix.lua
			done
			# the writes alone: with 30% of the mix writes, the mix cannot
			# go beyond this rate / 0.3 whatever the reads cost
			reset_data
			run_wrk mix-writes "$s" "$v" 16 16 "$DURATION" mix.lua MIX=0:100:0
			uri_files "$s"
			broke=0 lo=0 hi=0
			for r in $RAMP_RATES; do
				run_rate mix-rate "$s" "$v" "$r"
				if rate_ok mix-rate "$s" "$v" "$r"; then
					[ "$broke" -gt 0 ] || lo=$r
				else
					broke=$((broke + 1))
					[ "$hi" != 0 ] || hi=$r
				fi
				[ "$broke" -lt 2 ] || break
			done
			# RATE_BISECT more steps between the last rate within capacity
			# and the first beyond it, each halving the interval: the
			# doubling ramp alone knows a capacity within a factor of 2
			for ((i = 0; i < RATE_BISECT; i++)); do
				[ "$lo" -gt 0 ] && [ "$hi" -gt "$lo" ] || break
				r=$(((lo + hi) / 2))
				run_rate mix-rate "$s" "$v" "$r"
				if rate_ok mix-rate "$s" "$v" "$r"; then lo=$r; else hi=$r; fi
			done
		done
	done
}

# --- 2. deep pagination: walks of WALK pages of the largest tenant
# starting PAGE_DEPTHS rows deep, cursor (pulse.page) vs offset, without
# cache (the walks repeat the same pages).
scenario_page() {
	local s d m
	declare -A cursors=()
	for d in $PAGE_DEPTHS; do
		cursors[$d]=$(page_cursor "$d")
		[ "$d" = 0 ] || [ -n "${cursors[$d]}" ] || log "page: no cursor at depth $d (tenant 1 has fewer rows?)"
	done
	# shellcheck disable=SC2034 # read by run_wrk
	local WRK_THREADS=$PAGE_CONNS # one connection per thread: a walk per connection
	for s in $(app_servers); do
		serve "$s" nocache || { unavailable page "$s"; continue; }
		run_wrk warmup "$s" cursor 0 "$PAGE_CONNS" 3 page.lua MODE=cursor
		for d in $PAGE_DEPTHS; do
			[ "$d" = 0 ] || [ -n "${cursors[$d]}" ] || continue
			for m in cursor offset; do
				run_wrk page "$s" "$m" "$d" "$PAGE_CONNS" "$DURATION" page.lua MODE=$m START_ROWS="$d" \
					START_CURSOR="${cursors[$d]}" WALK="$PAGE_WALK" BENCH_TENANT=1
			done
		done
	done
}

# page_cursor ROWS: the next_cursor of search_events (no filter) for tenant
# 1 after ROWS rows, built by paging in SQL as the API's role; empty for 0.
page_cursor() {
	[ "$1" != 0 ] || return 0
	command psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -U pulse_proxy -v depth="$1" <<'SQL' 2>>"$WORK/page-cursor.log" || true
SET pulse.tenant = '1';
SELECT set_config('bench.depth', :'depth', false) \g /dev/null
DO $$
DECLARE
	target int := current_setting('bench.depth')::int;
	done int := 0;
	c text;
	step int;
BEGIN
	WHILE done < target LOOP
		step := least(100, target - done);
		c := api.search_events(NULL, NULL, NULL, c, step)->>'next_cursor';
		EXIT WHEN c IS NULL;
		done := done + step;
	END LOOP;
	PERFORM set_config('bench.cursor', coalesce(c, ''), false);
END
$$;
SELECT current_setting('bench.cursor');
SQL
}

# --- 3. aggregates: reads of the precomputed table (tenant_stats) vs the
# same computed on demand (tenant_stats_live), while AGG_WRITERS
# connections add events; with and without cache.
scenario_agg() {
	local s v ep wpid st
	for s in $(app_servers); do
		for v in $(variants "$s"); do
			serve "$s" "$v" || { unavailable agg "$s"; continue; }
			for ep in tenant_stats tenant_stats_live; do
				reset_data
				(run_wrk agg-writes "$s" "$v" "$ep" "$AGG_WRITERS" "$((DURATION + 2))" mix.lua MIX=0:100:0) &
				wpid=$!
				sleep 1
				run_wrk agg "$s" "$v" "$ep" "$AGG_CONNS" "$DURATION" mix.lua MIX=100:0:0 READ="$ep"
				st=$(psql_ -Atc "SELECT round(extract(epoch FROM staleness)::numeric, 2), pending_changes,
				                        round(extract(epoch FROM last_duration)::numeric * 1000, 1)
				                   FROM pulse.aggregates" 2>/dev/null | tr '|' '\t' || true)
				wait "$wpid" || true
				printf '%s\t%s\t%s\t%s\n' "$s" "$v" "$ep" "${st:-}" >>"$WORK/agg-staleness.tsv"
			done
		done
	done
}

# --- 4. cache: reads by id right after FLUSHALL (cold), then again (warm),
# and without cache; hit rate from X-Cache and from Redis's own counters.
# nginx and Varnish: right after a restart (cold), then again (warm), with
# their longest TTL.
scenario_cache() {
	local s x v
	for s in $SERVERS; do
		if is_http_cache "$s"; then
			v=$(shipped "$s")
			stop_server "$s" # an empty cache
			serve "$s" "$v" || { unavailable cache "$s"; continue; }
			for x in cold warm; do
				run_wrk cache "$s" "$v" "$x" "$CACHE_CONNS" "$DURATION" mix.lua MIX=100:0:0
			done
			continue
		fi
		if [ "$s" != flask ]; then
			serve "$s" cache || { unavailable cache "$s"; continue; }
			redis-cli -p "$REDIS_PORT" flushall >/dev/null
			redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
			for x in cold warm; do
				run_wrk cache "$s" cache "$x" "$CACHE_CONNS" "$DURATION" mix.lua MIX=100:0:0
				printf '%s\t%s\t%s\n' "$s" "$x" "$(redis-cli -p "$REDIS_PORT" info stats |
					awk -F: '/^keyspace_(hits|misses)/ {gsub("\r", ""); printf "%s=%s ", $1, $2}')" >>"$WORK/cache-redis.tsv"
				redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
			done
		fi
		if [ "$s" = flask ] || [ "$BASELINES" = 1 ]; then
			serve "$s" nocache || { unavailable cache "$s"; continue; }
			run_wrk cache "$s" nocache nocache "$CACHE_CONNS" "$DURATION" mix.lua MIX=100:0:0
		fi
	done
}

# --- 5. spike: reads at a constant BASE req/s for 3*SPIKE_SECONDS, plus
# 4*BASE more (5x in all) during the middle SPIKE_SECONDS; latency per second.
scenario_spike() {
	local s v base p1 p2 secs=$((3 * SPIKE_SECONDS))
	for s in $(app_servers); do
		v=$(variants "$s" | awk '{print $1}') # as shipped: cache, or nocache for Flask
		serve "$s" "$v" || { unavailable spike "$s"; continue; }
		uri_files "$s"
		base=$SPIKE_BASE
		if [ -z "$base" ]; then
			base=$(capacity_rate mix-rate "$s" "$v")
			base=$(awk -v c="$base" 'BEGIN {b = int(0.6 * c / 5); print (b >= 20) ? b : 200}')
		fi
		echo "$s $base" >>"$WORK/spike-base.txt"
		run_h2load "spike-$s-base" "$s" read "$base" "$secs"
		p1=$H2PID
		sleep "$SPIKE_SECONDS"
		run_h2load "spike-$s-extra" "$s" read "$((4 * base))" "$SPIKE_SECONDS"
		p2=$H2PID
		wait "$p1" || true
		wait "$p2" || true
		# per second since the start: all requests that started in it
		cat "$LOGS/spike-$s-base.log" "$LOGS/spike-$s-extra.log" 2>/dev/null | sort -t$'\t' -k1,1n |
			awk -F'\t' 'NR == 1 {t0 = $1} {printf "%d\t%.3f\t%d\n", ($1 - t0) / 1e6, $3 / 1000, $2}' |
			sort -t$'\t' -k1,1n -k2,2n |
			awk -F'\t' -v s="$s" -v variant="$v" '
				function flush(  m) {
					m = n; if (m == 0) return
					printf "spike\t%s\t%s\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t0\t%d\t%d\t-\n", s, variant, sec, m,
						v[int(m * 0.5 + 0.999)], v[int(m * 0.9 + 0.999)], v[int(m * 0.95 + 0.999)],
						v[int(m * 0.99 + 0.999)], v[m], m, bad
				}
				$1 != sec && n > 0 {flush(); n = 0; bad = 0}
				{sec = $1; v[++n] = $2; if ($3 < 200 || $3 > 299) bad++}
				END {flush()}' >>"$RES"
		log "spike $s: base $base req/s, 5x during seconds $SPIKE_SECONDS-$((2 * SPIKE_SECONDS))"
	done
}

# --- 6. soak: the mix at SOAK_CONNS connections for SOAK_SECONDS, sampling
# the server's RSS (with its children), its PostgreSQL connections, its open
# TCP connections and Redis's memory every SOAK_EVERY seconds.
scenario_soak() {
	local s pid port wpid t0 now
	for s in $(app_servers); do
		serve "$s" cache || { unavailable soak "$s"; continue; }
		pid=$(cat "$PIDS/$s.pid")
		port=${PORTS[$s]}
		(run_wrk soak "$s" "${VARIANT[$s]}" "$SOAK_SECONDS" "$SOAK_CONNS" "$SOAK_SECONDS" mix.lua) &
		wpid=$!
		t0=$(date +%s)
		while kill -0 "$wpid" 2>/dev/null; do
			now=$(($(date +%s) - t0))
			printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$now" "$(proc_rss "$pid")" \
				"$(psql_ -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pulse_proxy'" 2>/dev/null || echo -)" \
				"$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)" \
				"$(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {gsub("\r", ""); print int($2 / 1024)}')" \
				>>"$WORK/soak.tsv"
			[ "$now" -le $((SOAK_SECONDS + 60)) ] || break
			sleep "$SOAK_EVERY"
		done
		wait "$wpid" || true
	done
}

# --- 7. hits: the cached-hit ceiling.  One cached answer (tenant
# H2_TENANT's first sampled event) read again and again with wrk -t1 -c
# HITS_CONNS and no Lua per request: from the proxy's cache, from nginx's
# and Varnish's (longest TTL, in front of Express), and from h2o serving
# the same bytes as a static file (the ceiling of this machine).  Every
# server is up at once; HITS_ROUNDS rounds, each running them in turn, so
# that the two sides of a ratio are seconds apart.
scenario_hits() {
	local id path tok s r p auth fronts=() body=$WORK/hit.body
	id=$(awk -v t="$H2_TENANT" '$2 == t {print $1; exit}' "$BENCH_DIR/data/samples.tsv")
	path="/rpc/event?id=$id"
	tok=$(awk -v t="$H2_TENANT" '$1 == t {print $2}' "$WORK/tokens.tsv")
	for s in $ALL_SERVERS; do stop_server "$s"; done
	rm -f "$body"
	: >"$WORK/hits-bytes.tsv"
	for s in $SERVERS; do
		case $s in
		proxy) up proxy cache || { unavailable hits proxy; continue; } ;;
		nginx | varnish)
			{ up express nocache && up "$s" "$(shipped "$s")"; } || { unavailable hits "$s"; continue; } ;;
		*) continue ;;
		esac
		# an answer fills the cache; then it must answer hits with the same
		# bytes as the first server's
		hit_check "$s" "${URL[$s]}$path" "$tok" "$body" && fronts+=("$s")
	done
	[ ${#fronts[@]} -gt 0 ] || return 0
	if start_static "$body"; then
		hit_check static "${URL[static]}/hit.json" "" "$body" && fronts+=(static)
	else
		unavailable hits static
	fi
	for r in $(seq "$HITS_ROUNDS"); do
		for s in "${fronts[@]}"; do
			p=$path auth="Bearer $tok"
			[ "$s" != static ] || p=/hit.json auth=
			WRK_THREADS=1 run_wrk hits "$s" "${VARIANT[$s]:-file}" "$r" "$HITS_CONNS" "$DURATION" hit.lua \
				HIT_PATH="$p" HIT_AUTH="$auth"
		done
	done
	stop_server static
}

# hit_check SERVER URL TOKEN BODY: SERVER answers URL from its cache
# (X-Cache: hit, within 5 s: a proxy just started may still be loading its
# catalog; h2o: a static file) with BODY's bytes (BODY is written by the
# first server checked); records the sizes of the body and of the headers
# in WORK/hits-bytes.tsv.
hit_check() {
	local s=$1 url=$2 tok=$3 body=$4 got=$WORK/hit-$1.body hdr=$WORK/hit-$1.headers xc=
	for _ in $(seq 50); do
		curl -s -D "$hdr" -o "$got" ${tok:+-H "Authorization: Bearer $tok"} "$url" || true
		xc=$(awk -F': *' 'tolower($1) == "x-cache" {gsub("\r", "", $2); print $2}' "$hdr")
		[ "$s" != static ] && [ "$xc" != hit ] || break
		sleep 0.1
	done
	[ -s "$body" ] || cp "$got" "$body"
	if [ "$s" != static ] && [ "$xc" != hit ]; then
		log "hits: $s answers X-Cache: ${xc:-none}, not a hit; skipped"
		unavailable hits "$s"
		return 1
	fi
	if ! cmp -s "$got" "$body"; then
		log "hits: $s answers other bytes than the first server; skipped"
		unavailable hits "$s"
		return 1
	fi
	printf '%s\t%s\t%s\t%s\n' "$s" "$(wc -c <"$got")" "$(wc -c <"$hdr")" "${xc:--}" >>"$WORK/hits-bytes.tsv"
}
