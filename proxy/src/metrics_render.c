/*
 * metrics_render.c: the Prometheus text exposition of /metrics, summed over
 * the loops' shards (metrics.c) with relaxed loads: a scrape sees each
 * counter whole, if not all of them at the same instant.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "channel.h"
#include "metrics_int.h"

static const char *cache_names[] = {"hit", "miss", "stale"};
static const char *pool_states[] = {"down", "connecting", "idle", "busy"};
static const char *redis_states[] = {"down", "connecting", "up"};

size_t pulse_metrics_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        const char *rep = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        size_t l = rep != NULL ? 2 : 1;
        if (n + l < cap)
            memcpy(out + n, rep != NULL ? rep : s, l);
        n += l;
    }
    if (cap != 0)
        out[n < cap ? n : cap - 1] = '\0';
    return n;
}

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} buf_t;

static void bprintf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf_t *b, const char *fmt, ...)
{
    for (;;) {
        if (b->oom)
            return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (s == NULL) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* an escaped label value (from a scratch buffer reused per call) */
static const char *esc(buf_t *scratch, const char *s)
{
    size_t n = pulse_metrics_escape(scratch->s, scratch->cap, s);
    if (n >= scratch->cap) {
        char *p = realloc(scratch->s, n + 1);
        if (p == NULL)
            return "";
        scratch->s = p;
        scratch->cap = n + 1;
        pulse_metrics_escape(scratch->s, scratch->cap, s);
    }
    return scratch->s;
}

static void family(buf_t *b, const char *name, const char *type, const char *help)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* the invalidation channel (channel.h), when a cache is configured */
static void render_channel(buf_t *b, const pulse_catalog_channel_stats_t *st)
{
    if (st == NULL || st->state == PULSE_CATALOG_CHANNEL_OFF)
        return;
    uint64_t refused = 0, keyed_stale = 0;
    for (int i = 0; i < pulse_metrics_nshards; i++) {
        refused += ctr_get(&pulse_metrics_shards_v[i].cache_unverified);
        keyed_stale += ctr_get(&pulse_metrics_shards_v[i].cache_keyed_stale);
    }
    family(b, "pulse_invalidation_channel_state", "gauge",
           "State of the invalidation channel (1 for the current one): down (listening connection not up), unverified (no "
           "cache hits), verified, unchecked (no heartbeat configured).");
    for (int k = PULSE_CATALOG_CHANNEL_DOWN; k < PULSE_CATALOG_CHANNEL_STATES; k++)
        bprintf(b, "pulse_invalidation_channel_state{state=\"%s\"} %d\n",
                pulse_catalog_channel_state_name((pulse_catalog_channel_state_t)k), st->state == (pulse_catalog_channel_state_t)k);
    family(b, "pulse_invalidation_lag_seconds", "gauge",
           "Time since the instant up to which the generations map is vouched for (the send time of the last heartbeat "
           "received, or of the last resync).");
    bprintf(b, "pulse_invalidation_lag_seconds %.6f\n", st->lag_seconds);
    family(b, "pulse_invalidation_unverified_seconds_total", "counter",
           "Time the generations map was not vouched for (cache hits refused).");
    bprintf(b, "pulse_invalidation_unverified_seconds_total %.6f\n", st->unverified_seconds);
    family(b, "pulse_invalidation_heartbeats_total", "counter",
           "Heartbeats through the invalidation channel: sent (committed), failed, received, missed (not received within "
           "invalidation_delivery_ms).");
    bprintf(b, "pulse_invalidation_heartbeats_total{result=\"sent\"} %llu\n", (unsigned long long)st->beats_sent);
    bprintf(b, "pulse_invalidation_heartbeats_total{result=\"failed\"} %llu\n", (unsigned long long)st->beats_failed);
    bprintf(b, "pulse_invalidation_heartbeats_total{result=\"received\"} %llu\n", (unsigned long long)st->beats_received);
    bprintf(b, "pulse_invalidation_heartbeats_total{result=\"missed\"} %llu\n", (unsigned long long)st->beats_missed);
    family(b, "pulse_invalidation_resyncs_total", "counter", "Reads of every route tag's generation by the catalog thread.");
    bprintf(b, "pulse_invalidation_resyncs_total %llu\n", (unsigned long long)st->resyncs);
    family(b, "pulse_invalidation_reconnects_total", "counter", "Listening connections opened again after the first.");
    bprintf(b, "pulse_invalidation_reconnects_total %llu\n", (unsigned long long)st->reconnects);
    family(b, "pulse_cache_unverified_total", "counter",
           "Cacheable calls not answered from the cache because the invalidation channel was unverified (answered by the "
           "database, or stale-if-error).");
    bprintf(b, "pulse_cache_unverified_total %llu\n", (unsigned long long)refused);
    family(b, "pulse_cache_keyed_stale_total", "counter",
           "Cached entries not served because a keyed tag they read was bumped since (or could not be vouched for).");
    bprintf(b, "pulse_cache_keyed_stale_total %llu\n", (unsigned long long)keyed_stale);
    family(b, "pulse_keyed_tags", "gauge", "Keyed cache tags the proxy knows (at most cache_keyed_tags).");
    bprintf(b, "pulse_keyed_tags %llu\n", (unsigned long long)st->keyed.tags);
    family(b, "pulse_keyed_forgotten_total", "counter",
           "Keyed cache tags forgotten: evicted (the map was full), or all of them at a reconnect of the listening connection.");
    bprintf(b, "pulse_keyed_forgotten_total{reason=\"evicted\"} %llu\n", (unsigned long long)st->keyed.evictions);
    bprintf(b, "pulse_keyed_forgotten_total{reason=\"reset\"} %llu\n", (unsigned long long)st->keyed.resets);
    family(b, "pulse_keyed_coverage_pending", "gauge",
           "1 while no coverage snapshot was taken since keyed tags were forgotten: unknown keyed tags count as bumped.");
    bprintf(b, "pulse_keyed_coverage_pending %d\n", st->keyed.coverage_pending);
}

static int ep_cmp(const void *a, const void *b)
{
    const metrics_ep_t *x = *(metrics_ep_t *const *)a, *y = *(metrics_ep_t *const *)b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : x->cls - y->cls;
}

/* the sums of one (endpoint, class) over the pulse_metrics_shards_v */
typedef struct {
    const char *name;
    int cls;
    uint64_t status[NSTATUS], buckets[NB], sum_us, cache[3];
    uint64_t live_streams, live_opened;
} ep_sum_t;

/* live endpoints: streams per endpoint, events, refreshes, conflation, refusals, the push latency histogram */
static void render_live(buf_t *b, buf_t *scratch, const ep_sum_t *sums, size_t nsums)
{
    uint64_t ev[3] = {0}, conflated = 0, rf[3] = {0}, shared = 0, rej[2] = {0}, bk[NB] = {0}, sum_us = 0;
    for (int i = 0; i < pulse_metrics_nshards; i++) {
        pulse_metrics_shard_t *s = &pulse_metrics_shards_v[i];
        for (int k = 0; k < 3; k++) {
            ev[k] += ctr_get(&s->live_events[k]);
            rf[k] += ctr_get(&s->live_refreshes[k]);
        }
        for (int k = 0; k < 2; k++)
            rej[k] += ctr_get(&s->live_rejected[k]);
        for (int k = 0; k < NB; k++)
            bk[k] += ctr_get(&s->live_buckets[k]);
        conflated += ctr_get(&s->live_conflated);
        shared += ctr_get(&s->live_shared);
        sum_us += ctr_get(&s->live_sum_us);
    }
    family(b, "pulse_live_streams", "gauge", "Open live (text/event-stream) streams, by endpoint and endpoint class.");
    for (size_t i = 0; i < nsums; i++)
        if (sums[i].live_opened != 0)
            bprintf(b, "pulse_live_streams{endpoint=\"%s\",class=\"%s\"} %llu\n", esc(scratch, sums[i].name),
                    cls_label(sums[i].cls), (unsigned long long)sums[i].live_streams);
    family(b, "pulse_live_streams_opened_total", "counter", "Live streams opened, by endpoint and endpoint class.");
    for (size_t i = 0; i < nsums; i++)
        if (sums[i].live_opened != 0)
            bprintf(b, "pulse_live_streams_opened_total{endpoint=\"%s\",class=\"%s\"} %llu\n", esc(scratch, sums[i].name),
                    cls_label(sums[i].cls), (unsigned long long)sums[i].live_opened);
    static const char *const evn[3] = {"result", "error", "heartbeat"}, *const rfn[3] = {"changed", "unchanged", "failed"};
    family(b, "pulse_live_events_total", "counter", "Events written to live streams: result, error (the stream ends), heartbeat.");
    for (int k = 0; k < 3; k++)
        bprintf(b, "pulse_live_events_total{type=\"%s\"} %llu\n", evn[k], (unsigned long long)ev[k]);
    family(b, "pulse_live_conflated_total", "counter",
           "Results a slow stream skipped: a newer one replaced them before they were written.");
    bprintf(b, "pulse_live_conflated_total %llu\n", (unsigned long long)conflated);
    family(b, "pulse_live_refreshes_total", "counter",
           "Database calls of live subscription keys, by outcome: changed (a new ETag), unchanged, failed.");
    for (int k = 0; k < 3; k++)
        bprintf(b, "pulse_live_refreshes_total{result=\"%s\"} %llu\n", rfn[k], (unsigned long long)rf[k]);
    family(b, "pulse_live_refreshes_shared_total", "counter",
           "Streams that got a refresh's result without a call of their own (the key's streams beyond the first, per refresh).");
    bprintf(b, "pulse_live_refreshes_shared_total %llu\n", (unsigned long long)shared);
    family(b, "pulse_live_rejected_total", "counter",
           "Live streams refused for a cap: tenant_limit (live_max_streams_tenant, 429), proxy_limit (live_max_streams, 503).");
    bprintf(b, "pulse_live_rejected_total{reason=\"tenant_limit\"} %llu\n", (unsigned long long)rej[0]);
    bprintf(b, "pulse_live_rejected_total{reason=\"proxy_limit\"} %llu\n", (unsigned long long)rej[1]);
    family(b, "pulse_live_push_latency_seconds", "histogram",
           "Time from the commit of a bump (its pulse_commit notification, the database's clock; from the arrival of the "
           "pulse_invalidate notification when the extension sends no commit time) to the write of the result it caused.");
    uint64_t cum = 0;
    for (int k = 0; k < NB; k++) {
        cum += bk[k];
        if (k < PULSE_METRICS_NBUCKETS)
            bprintf(b, "pulse_live_push_latency_seconds_bucket{le=\"%g\"} %llu\n", pulse_metrics_bounds[k],
                    (unsigned long long)cum);
        else
            bprintf(b, "pulse_live_push_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    bprintf(b, "pulse_live_push_latency_seconds_sum %.6f\n", (double)sum_us / 1e6);
    bprintf(b, "pulse_live_push_latency_seconds_count %llu\n", (unsigned long long)cum);
}

/* the pulse_server_* and pulse_replica_* families, when replicas are configured */
static void render_replicas(buf_t *b)
{
    static const char *const decisions[PULSE_REPLICAS_DECISIONS] = {"fresh", "lagging", "down", "min_lsn_wait", "min_lsn_primary"};
    size_t n = pulse_replicas_count(pulse_metrics_src_replicas);
    pulse_replicas_status_t st[PULSE_REPLICAS_MAX + 1];
    for (size_t i = 0; i <= n; i++)
        pulse_replicas_status(pulse_metrics_src_replicas, i, &st[i]);
    family(b, "pulse_server_calls_total", "counter", "Database calls sent to each server: the primary or a replica.");
    for (size_t i = 0; i <= n; i++) {
        uint64_t v = 0;
        for (int k = 0; k < pulse_metrics_nshards; k++)
            v += ctr_get(&pulse_metrics_shards_v[k].rep_calls[i]);
        bprintf(b, "pulse_server_calls_total{server=\"%s\"} %llu\n", st[i].name, (unsigned long long)v);
    }
    family(b, "pulse_replica_routing_total", "counter",
           "Routing decisions of read and search calls: fresh (a replica at once), lagging (no replica within "
           "replica_max_lag_ms), down (no replica up), min_lsn_wait (a replica after waiting for its replay), min_lsn_primary "
           "(none replayed the call's LSN in replica_wait_ms).");
    for (int d = 0; d < PULSE_REPLICAS_DECISIONS; d++) {
        uint64_t v = 0;
        for (int k = 0; k < pulse_metrics_nshards; k++)
            v += ctr_get(&pulse_metrics_shards_v[k].rep_decisions[d]);
        bprintf(b, "pulse_replica_routing_total{decision=\"%s\"} %llu\n", decisions[d], (unsigned long long)v);
    }
    family(b, "pulse_replica_retries_total", "counter",
           "Calls a replica failed (connection, recovery conflict, ...) that the primary ran again.");
    for (size_t i = 1; i <= n; i++) {
        uint64_t v = 0;
        for (int k = 0; k < pulse_metrics_nshards; k++)
            v += ctr_get(&pulse_metrics_shards_v[k].rep_retries[i]);
        bprintf(b, "pulse_replica_retries_total{server=\"%s\"} %llu\n", st[i].name, (unsigned long long)v);
    }
    uint64_t stored = 0, refused = 0;
    for (int k = 0; k < pulse_metrics_nshards; k++) {
        stored += ctr_get(&pulse_metrics_shards_v[k].rep_fills_stored);
        refused += ctr_get(&pulse_metrics_shards_v[k].rep_fills_refused);
    }
    family(b, "pulse_replica_fills_total", "counter",
           "Cache fills answered by a replica: stored, or refused (served, not stored: the replica had not replayed a "
           "generation of the key).");
    bprintf(b, "pulse_replica_fills_total{result=\"stored\"} %llu\n", (unsigned long long)stored);
    bprintf(b, "pulse_replica_fills_total{result=\"refused\"} %llu\n", (unsigned long long)refused);
    family(b, "pulse_replica_up", "gauge", "1 when the replica answers its monitor and is in recovery.");
    for (size_t i = 1; i <= n; i++)
        bprintf(b, "pulse_replica_up{server=\"%s\"} %d\n", st[i].name, st[i].state == PULSE_REPLICAS_STATE_UP);
    family(b, "pulse_replica_lag_seconds", "gauge",
           "Upper bound of a replica's replay lag at its last measurement (-1: unknown; 0: it replayed the primary's latest "
           "sample).");
    for (size_t i = 1; i <= n; i++)
        bprintf(b, "pulse_replica_lag_seconds{server=\"%s\"} %.3f\n", st[i].name,
                st[i].lag_ms < 0 ? -1.0 : (double)st[i].lag_ms / 1000.0);
    family(b, "pulse_replica_lag_bytes", "gauge", "The primary's flushed WAL position minus a replica's replay position.");
    for (size_t i = 1; i <= n; i++)
        bprintf(b, "pulse_replica_lag_bytes{server=\"%s\"} %llu\n", st[i].name, (unsigned long long)st[i].lag_bytes);
}

/* pulse_metrics_render's parts ------------------------------------------------------------------------------------ */

/* every endpoint's counters of every shard, summed by (endpoint, class) into `*sums` (`*nsums`); -1 when out of memory */
static int collect_endpoints(ep_sum_t **sums_out, size_t *nsums_out)
{
    size_t n = 0, cap = 16, nsums = 0;
    metrics_ep_t **all = malloc(cap * sizeof(*all));
    ep_sum_t *sums = NULL;
    if (all == NULL)
        return -1;
    for (int i = 0; i < pulse_metrics_nshards; i++) {
        for (metrics_ep_t *e = atomic_load_explicit(&pulse_metrics_shards_v[i].eps, memory_order_acquire); e != NULL; e = e->next) {
            if (n == cap) {
                metrics_ep_t **p = realloc(all, cap * 2 * sizeof(*all));
                if (p == NULL)
                    goto oom;
                all = p;
                cap *= 2;
            }
            all[n++] = e;
        }
    }
    qsort(all, n, sizeof(*all), ep_cmp);
    if ((sums = calloc(n + 1, sizeof(*sums))) == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        metrics_ep_t *e = all[i];
        if (nsums == 0 || ep_cmp(&all[i - 1], &all[i]) != 0) {
            sums[nsums].name = e->name;
            sums[nsums].cls = e->cls;
            nsums++;
        }
        ep_sum_t *s = &sums[nsums - 1];
        for (int k = 0; k < NSTATUS; k++)
            s->status[k] += ctr_get(&e->status[k]);
        for (int k = 0; k < NB; k++)
            s->buckets[k] += ctr_get(&e->buckets[k]);
        s->sum_us += ctr_get(&e->sum_us);
        for (int k = 0; k < 3; k++)
            s->cache[k] += ctr_get(&e->cache[k]);
        s->live_streams += ctr_get(&e->live_streams);
        s->live_opened += ctr_get(&e->live_opened);
    }

    free(all);
    *sums_out = sums;
    *nsums_out = nsums;
    return 0;
oom:
    free(all);
    free(sums);
    return -1;
}

/* requests, their latency and cache results, by endpoint */
static void render_endpoints(buf_t *b, buf_t *scratch, const ep_sum_t *sums, size_t nsums)
{
    family(b, "pulse_http_requests_total", "counter",
           "HTTP requests answered, by endpoint (\"\" when none matched), endpoint class and status.");
    for (size_t i = 0; i < nsums; i++)
        for (int k = 0; k < NSTATUS; k++)
            if (sums[i].status[k] != 0)
                bprintf(b, "pulse_http_requests_total{endpoint=\"%s\",class=\"%s\",status=\"%d\"} %llu\n",
                        esc(scratch, sums[i].name), cls_label(sums[i].cls), k + 100, (unsigned long long)sums[i].status[k]);

    family(b, "pulse_http_request_duration_seconds", "histogram",
           "Time from a request's arrival to its response, by endpoint and endpoint class.");
    for (size_t i = 0; i < nsums; i++) {
        const char *ep = esc(scratch, sums[i].name), *cl = cls_label(sums[i].cls);
        uint64_t cum = 0;
        for (int k = 0; k < NB; k++) {
            cum += sums[i].buckets[k];
            if (k < PULSE_METRICS_NBUCKETS)
                bprintf(b, "pulse_http_request_duration_seconds_bucket{endpoint=\"%s\",class=\"%s\",le=\"%g\"} %llu\n", ep, cl,
                        pulse_metrics_bounds[k], (unsigned long long)cum);
            else
                bprintf(b, "pulse_http_request_duration_seconds_bucket{endpoint=\"%s\",class=\"%s\",le=\"+Inf\"} %llu\n", ep, cl,
                        (unsigned long long)cum);
        }
        bprintf(b, "pulse_http_request_duration_seconds_sum{endpoint=\"%s\",class=\"%s\"} %.6f\n", ep, cl,
                (double)sums[i].sum_us / 1e6);
        bprintf(b, "pulse_http_request_duration_seconds_count{endpoint=\"%s\",class=\"%s\"} %llu\n", ep, cl,
                (unsigned long long)cum);
    }

    family(b, "pulse_cache_requests_total", "counter", "Answers of cacheable calls by X-Cache result (hit, miss, stale).");
    for (size_t i = 0; i < nsums; i++) {
        if (sums[i].cache[0] + sums[i].cache[1] + sums[i].cache[2] == 0)
            continue;
        for (int k = 0; k < 3; k++)
            bprintf(b, "pulse_cache_requests_total{endpoint=\"%s\",result=\"%s\"} %llu\n", esc(scratch, sums[i].name),
                    cache_names[k], (unsigned long long)sums[i].cache[k]);
    }
}

/* SLO breaches by class, PostgreSQL errors */
static void render_slo_pg(buf_t *b)
{
    family(b, "pulse_slo_breaches_total", "counter",
           "SLO windows of an endpoint class that broke an objective: p95 or p99 latency over its threshold, or error_rate "
           "(share of 5xx answers) over its threshold.");
    for (int c = 0; c < PULSE_CLASS_COUNT; c++) {
        bprintf(b, "pulse_slo_breaches_total{class=\"%s\",slo=\"p95\"} %llu\n", cls_label(c),
                (unsigned long long)pulse_metrics_slo_breaches(c, 0));
        bprintf(b, "pulse_slo_breaches_total{class=\"%s\",slo=\"p99\"} %llu\n", cls_label(c),
                (unsigned long long)pulse_metrics_slo_breaches(c, 1));
        bprintf(b, "pulse_slo_breaches_total{class=\"%s\",slo=\"error_rate\"} %llu\n", cls_label(c),
                (unsigned long long)pulse_metrics_slo_breaches(c, 2));
    }
    bprintf(b, "pulse_slo_breaches_total{class=\"live\",slo=\"p95\"} %llu\n",
            (unsigned long long)pulse_metrics_slo_breaches(PULSE_CLASS_COUNT, 0));
    bprintf(b, "pulse_slo_breaches_total{class=\"live\",slo=\"p99\"} %llu\n",
            (unsigned long long)pulse_metrics_slo_breaches(PULSE_CLASS_COUNT, 1));

    family(b, "pulse_pg_errors_total", "counter", "Errors raised by PostgreSQL, by SQLSTATE class.");
    for (int k = 0; k < NSQLSTATE_CLASS; k++) {
        uint64_t v = 0;
        for (int i = 0; i < pulse_metrics_nshards; i++)
            v += ctr_get(&pulse_metrics_shards_v[i].pg_errors[k]);
        static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        if (v != 0)
            bprintf(b, "pulse_pg_errors_total{sqlstate_class=\"%c%c\"} %llu\n", digits[k / 36], digits[k % 36],
                    (unsigned long long)v);
    }
    uint64_t v = 0;
    for (int i = 0; i < pulse_metrics_nshards; i++)
        v += ctr_get(&pulse_metrics_shards_v[i].pg_unavailable);
    family(b, "pulse_pg_unavailable_total", "counter", "Calls that found no PostgreSQL connection up, or whose connection broke.");
    bprintf(b, "pulse_pg_unavailable_total %llu\n", (unsigned long long)v);
}

/* the pools' and the Redis clients' gauges and counters */
static void render_pool_redis(buf_t *b)
{
    int pool_present = 0, redis_present = 0, conns[4] = {0}, queued = 0, limit = 0, redis_by_state[3] = {0};
    uint64_t waits = 0, wait_ms = 0, full = 0, timeouts = 0, deallocated = 0, rc[6] = {0};
    uint64_t shed[PULSE_CLASS_COUNT][PULSE_PGPOOL_SHED_REASONS] = {{0}};
    for (int i = 0; i < pulse_metrics_nshards; i++) {
        pulse_metrics_shard_t *s = &pulse_metrics_shards_v[i];
        if (atomic_load_explicit(&s->pool_present, memory_order_relaxed)) {
            pool_present = 1;
            for (int k = 0; k < 4; k++)
                conns[k] += atomic_load_explicit(&s->pool_conns[k], memory_order_relaxed);
            queued += atomic_load_explicit(&s->pool_queued, memory_order_relaxed);
            limit += atomic_load_explicit(&s->pool_queue_limit, memory_order_relaxed);
            waits += ctr_get(&s->pool_waits);
            wait_ms += ctr_get(&s->pool_wait_ms);
            full += ctr_get(&s->pool_queue_full);
            timeouts += ctr_get(&s->pool_queue_timeouts);
            deallocated += ctr_get(&s->pool_deallocated);
            for (int c = 0; c < PULSE_CLASS_COUNT; c++)
                for (int k = 0; k < PULSE_PGPOOL_SHED_REASONS; k++)
                    shed[c][k] += ctr_get(&s->pool_shed[c][k]);
        }
        if (atomic_load_explicit(&s->redis_present, memory_order_relaxed)) {
            redis_present = 1;
            int st = atomic_load_explicit(&s->redis_state, memory_order_relaxed);
            if (st >= 0 && st < 3)
                redis_by_state[st]++;
            rc[0] += ctr_get(&s->redis_commands);
            rc[1] += ctr_get(&s->redis_failures);
            rc[2] += ctr_get(&s->redis_timeouts);
            rc[3] += ctr_get(&s->redis_fast_fails);
            rc[4] += ctr_get(&s->redis_opens);
            rc[5] += ctr_get(&s->redis_connects);
        }
    }
    if (pool_present) {
        family(b, "pulse_pool_connections", "gauge", "PostgreSQL connections of the pools, by state.");
        for (int k = 0; k < 4; k++)
            bprintf(b, "pulse_pool_connections{state=\"%s\"} %d\n", pool_states[k], conns[k]);
        family(b, "pulse_pool_queue_depth", "gauge", "Calls waiting for a PostgreSQL connection.");
        bprintf(b, "pulse_pool_queue_depth %d\n", queued);
        family(b, "pulse_pool_queue_limit", "gauge", "Calls that may wait for a connection (queue_limit per loop, summed).");
        bprintf(b, "pulse_pool_queue_limit %d\n", limit);
        family(b, "pulse_pool_waits_total", "counter", "Calls that found no idle connection and waited in the queue.");
        bprintf(b, "pulse_pool_waits_total %llu\n", (unsigned long long)waits);
        family(b, "pulse_pool_wait_seconds_total", "counter", "Time calls that got a connection spent waiting for it.");
        bprintf(b, "pulse_pool_wait_seconds_total %.3f\n", (double)wait_ms / 1000.0);
        family(b, "pulse_pool_rejected_total", "counter", "Calls answered 503 by the pool: queue full, or no connection in time.");
        bprintf(b, "pulse_pool_rejected_total{reason=\"queue_full\"} %llu\n", (unsigned long long)full);
        bprintf(b, "pulse_pool_rejected_total{reason=\"queue_timeout\"} %llu\n", (unsigned long long)timeouts);
        family(b, "pulse_pool_statements_deallocated_total", "counter",
               "Prepared statements deallocated to keep at most pool_max_prepared per connection.");
        bprintf(b, "pulse_pool_statements_deallocated_total %llu\n", (unsigned long long)deallocated);
        static const char *const shed_reasons[PULSE_PGPOOL_SHED_REASONS] = {"queue_full", "estimate", "waited"};
        family(b, "pulse_shed_total", "counter",
               "Calls answered 503 without running, by class and reason: queue full, estimated wait over the class's queue "
               "budget, or waited the whole budget.");
        for (int c = 0; c < PULSE_CLASS_COUNT; c++)
            for (int k = 0; k < PULSE_PGPOOL_SHED_REASONS; k++)
                bprintf(b, "pulse_shed_total{class=\"%s\",reason=\"%s\"} %llu\n", pulse_config_class_name((pulse_class_t)c),
                        shed_reasons[k], (unsigned long long)shed[c][k]);
    }
    if (redis_present) {
        family(b, "pulse_redis_up", "gauge", "1 when the Redis client of every event loop is up (breaker closed).");
        bprintf(b, "pulse_redis_up %d\n", redis_by_state[PULSE_REDIS_UP] == pulse_metrics_nshards ? 1 : 0);
        family(b, "pulse_redis_clients", "gauge", "Redis clients (one per event loop) by state.");
        for (int k = 0; k < 3; k++)
            bprintf(b, "pulse_redis_clients{state=\"%s\"} %d\n", redis_states[k], redis_by_state[k]);
        static const char *names[][2] = {
            {"pulse_redis_commands_total", "Redis commands sent."},
            {"pulse_redis_command_failures_total", "Redis commands that got no reply: the connection broke or closed."},
            {"pulse_redis_command_timeouts_total", "Redis commands that timed out."},
            {"pulse_redis_fast_fails_total", "Redis commands refused without touching a socket (client not up, too many pending)."},
            {"pulse_redis_breaker_opens_total", "Times a Redis client's circuit breaker opened."},
            {"pulse_redis_connects_total", "Redis connections that passed their probe."},
        };
        for (int k = 0; k < 6; k++) {
            family(b, names[k][0], "counter", names[k][1]);
            bprintf(b, "%s %llu\n", names[k][0], (unsigned long long)rc[k]);
        }
    }
}

/* the loops' local caches */
static void render_local_cache(buf_t *b)
{
    uint64_t lc[4] = {0};
    int lc_present = 0;
    for (int i = 0; i < pulse_metrics_nshards; i++) {
        if (!atomic_load_explicit(&pulse_metrics_shards_v[i].lcache_present, memory_order_relaxed))
            continue;
        lc_present = 1;
        lc[0] += ctr_get(&pulse_metrics_shards_v[i].lcache_hits);
        lc[1] += ctr_get(&pulse_metrics_shards_v[i].lcache_evictions);
        lc[2] += ctr_get(&pulse_metrics_shards_v[i].lcache_entries);
        lc[3] += ctr_get(&pulse_metrics_shards_v[i].lcache_bytes);
    }
    if (lc_present) {
        family(b, "pulse_cache_local_hits_total", "counter", "Cached hits answered by the loops' local caches, without Redis.");
        bprintf(b, "pulse_cache_local_hits_total %llu\n", (unsigned long long)lc[0]);
        family(b, "pulse_cache_local_evictions_total", "counter", "Entries evicted from the local caches to stay within size.");
        bprintf(b, "pulse_cache_local_evictions_total %llu\n", (unsigned long long)lc[1]);
        family(b, "pulse_cache_local_entries", "gauge", "Entries in the local caches.");
        bprintf(b, "pulse_cache_local_entries %llu\n", (unsigned long long)lc[2]);
        family(b, "pulse_cache_local_bytes", "gauge", "Bytes held by the local caches (cache_local_bytes per loop at most).");
        bprintf(b, "pulse_cache_local_bytes %llu\n", (unsigned long long)lc[3]);
    }
}

/* rate limits */
static void render_ratelimit(buf_t *b)
{
    if (pulse_metrics_src_ratelimit == NULL)
        return;
    pulse_ratelimit_stats_t st;
    pulse_ratelimit_stats(pulse_metrics_src_ratelimit, &st);
    family(b, "pulse_ratelimit_requests_total", "counter",
           "Rate limit decisions by class and result: allowed, or limited by the tenant, ip or global bucket.");
    for (int c = 0; c < PULSE_CLASS_COUNT; c++) {
        const char *cl = pulse_config_class_name((pulse_class_t)c);
        bprintf(b, "pulse_ratelimit_requests_total{class=\"%s\",result=\"allowed\"} %llu\n", cl, (unsigned long long)st.allowed[c]);
        for (int k = 0; k < PULSE_RATELIMIT_SCOPE_COUNT; k++)
            bprintf(b, "pulse_ratelimit_requests_total{class=\"%s\",result=\"limited_%s\"} %llu\n", cl,
                    pulse_ratelimit_scope_name((pulse_ratelimit_scope_t)k), (unsigned long long)st.limited[c][k]);
    }
    family(b, "pulse_ratelimit_decisions_total", "counter",
           "Decisions with at least one bucket, by where they were made: redis (shared), lease (tokens leased from Redis "
           "earlier), local (fallback).");
    bprintf(b, "pulse_ratelimit_decisions_total{source=\"redis\"} %llu\n", (unsigned long long)st.redis_checks);
    bprintf(b, "pulse_ratelimit_decisions_total{source=\"local\"} %llu\n", (unsigned long long)st.fallback_checks);
    bprintf(b, "pulse_ratelimit_decisions_total{source=\"lease\"} %llu\n", (unsigned long long)st.lease_checks);
    family(b, "pulse_ratelimit_redis_errors_total", "counter", "Rate limit checks Redis failed (decided locally).");
    bprintf(b, "pulse_ratelimit_redis_errors_total %llu\n", (unsigned long long)st.errors);
}

/* the span exporter */
static void render_tracer(buf_t *b)
{
    if (pulse_metrics_src_tracer == NULL)
        return;
    pulse_tracer_stats_t st;
    pulse_tracer_stats(pulse_metrics_src_tracer, &st);
    family(b, "pulse_trace_spans_total", "counter",
           "Spans by fate: exported, failed (the collector refused or was unreachable), dropped (queue full).");
    bprintf(b, "pulse_trace_spans_total{result=\"exported\"} %llu\n", (unsigned long long)st.spans_exported);
    bprintf(b, "pulse_trace_spans_total{result=\"failed\"} %llu\n", (unsigned long long)st.spans_failed);
    bprintf(b, "pulse_trace_spans_total{result=\"dropped\"} %llu\n", (unsigned long long)st.spans_dropped);
    family(b, "pulse_trace_spans_queued", "gauge", "Spans waiting for the exporter.");
    bprintf(b, "pulse_trace_spans_queued %llu\n", (unsigned long long)st.spans_queued);
}

char *pulse_metrics_render(const pulse_catalog_channel_stats_t *channel, size_t *len)
{
    buf_t b = {NULL, 0, 0, 0}, scratch = {malloc(256), 0, 256, 0};
    ep_sum_t *sums = NULL;
    size_t nsums = 0;
    if (scratch.s == NULL || collect_endpoints(&sums, &nsums) != 0)
        goto oom;
    render_endpoints(&b, &scratch, sums, nsums);
    render_live(&b, &scratch, sums, nsums);
    render_slo_pg(&b);
    render_pool_redis(&b);
    render_local_cache(&b);
    render_channel(&b, channel);
    render_ratelimit(&b);
    render_tracer(&b);
    if (pulse_metrics_src_replicas != NULL)
        render_replicas(&b);
    if (b.oom)
        goto oom;
    free(sums);
    free(scratch.s);
    *len = b.len;
    return b.s;
oom:
    free(sums);
    free(scratch.s);
    free(b.s);
    return NULL;
}
