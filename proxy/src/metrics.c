/*
 * metrics.c: per-loop metric shards, what the loops observe into them, and
 * the SLO windows (their Prometheus rendering: metrics_render.c; what both
 * share: metrics_int.h).
 *
 * Ownership and threads: shard i belongs to event loop i.  Its counters are
 * only written by that loop's thread, as a relaxed load and a relaxed store
 * (no locked instruction on the request path); other threads read them with
 * relaxed loads, so a scrape sees each counter whole, if not all of them at
 * the same instant.  A shard's endpoints are a list published with a release
 * store of its head (readers acquire it) plus an index only the owner uses to
 * find them; entries are never removed before pulse_metrics_free.
 *
 * The SLO state (the previous window's sums) belongs to the one thread that
 * calls pulse_metrics_slo_tick; the breach counters it writes are atomics any
 * scrape reads.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "log.h"
#include "metrics_int.h"

const double pulse_metrics_bounds[PULSE_METRICS_NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                             0.2,    0.25,  0.5,    1,     2.5,  5,     10};

pulse_metrics_shard_t *pulse_metrics_shards_v;
int pulse_metrics_nshards;

/* SLO: written by the ticking thread only */
static ctr_t slo_breaches[PULSE_CLASS_COUNT][2], slo_error_breaches[PULSE_CLASS_COUNT];
static uint64_t slo_prev_buckets[PULSE_CLASS_COUNT][NB], slo_prev_errors[PULSE_CLASS_COUNT];
static ctr_t slo_live_breaches[2];
static uint64_t slo_live_prev[NB];
static uint64_t slo_next_ms;
static int slo_started;

uint64_t pulse_metrics_slo_breaches(int cls, int slo)
{
    if (cls < 0 || cls > PULSE_CLASS_COUNT || slo < 0 || slo > 2)
        return 0;
    if (cls == PULSE_CLASS_COUNT)
        return slo < 2 ? ctr_get(&slo_live_breaches[slo]) : 0;
    return slo < 2 ? ctr_get(&slo_breaches[cls][slo]) : ctr_get(&slo_error_breaches[cls]);
}

pulse_ratelimit_t *pulse_metrics_src_ratelimit;
pulse_tracer_t *pulse_metrics_src_tracer;
pulse_replicas_t *pulse_metrics_src_replicas;

void pulse_metrics_set_replicas(pulse_replicas_t *replicas)
{
    pulse_metrics_src_replicas = replicas;
}

void pulse_metrics_sync_replicas(pulse_metrics_shard_t *s, const pulse_replicas_loop_t *rl)
{
    if (rl == NULL)
        return;
    pulse_replicas_stats_t st;
    pulse_replicas_loop_stats(rl, &st);
    for (size_t i = 0; i < st.nservers && i <= PULSE_REPLICAS_MAX; i++) {
        ctr_set(&s->rep_calls[i], st.calls[i]);
        ctr_set(&s->rep_retries[i], st.retries[i]);
    }
    for (int k = 0; k < PULSE_REPLICAS_DECISIONS; k++)
        ctr_set(&s->rep_decisions[k], st.decisions[k]);
    ctr_set(&s->rep_fills_stored, st.fills_stored);
    ctr_set(&s->rep_fills_refused, st.fills_refused);
}

void pulse_metrics_set_sources(pulse_ratelimit_t *ratelimit, pulse_tracer_t *tracer)
{
    pulse_metrics_src_ratelimit = ratelimit;
    pulse_metrics_src_tracer = tracer;
}

int pulse_metrics_init(int n)
{
    if ((pulse_metrics_shards_v = calloc((size_t)n, sizeof(*pulse_metrics_shards_v))) == NULL)
        return -1;
    pulse_metrics_nshards = n;
    return 0;
}

void pulse_metrics_free(void)
{
    pulse_metrics_src_ratelimit = NULL;
    pulse_metrics_src_tracer = NULL;
    pulse_metrics_src_replicas = NULL;
    for (int i = 0; i < pulse_metrics_nshards; i++) {
        metrics_ep_t *e = atomic_load(&pulse_metrics_shards_v[i].eps);
        while (e != NULL) {
            metrics_ep_t *next = e->next;
            free(e->name);
            free(e);
            e = next;
        }
        free(pulse_metrics_shards_v[i].index);
    }
    free(pulse_metrics_shards_v);
    pulse_metrics_shards_v = NULL;
    pulse_metrics_nshards = 0;
    memset(slo_breaches, 0, sizeof(slo_breaches));
    memset(slo_error_breaches, 0, sizeof(slo_error_breaches));
    memset(slo_live_breaches, 0, sizeof(slo_live_breaches));
    slo_started = 0;
}

pulse_metrics_shard_t *pulse_metrics_shard(int i)
{
    return &pulse_metrics_shards_v[i];
}

size_t pulse_metrics_bucket(double seconds)
{
    size_t i = 0;
    while (i < PULSE_METRICS_NBUCKETS && seconds > pulse_metrics_bounds[i])
        i++;
    return i;
}

static size_t ep_hash(const char *name, int cls)
{
    size_t h = 2166136261u ^ (size_t)cls;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static int index_put(pulse_metrics_shard_t *s, metrics_ep_t *e)
{
    if ((s->index_n + 1) * 2 > s->index_cap) {
        size_t cap = s->index_cap != 0 ? s->index_cap * 2 : 16;
        metrics_ep_t **idx = calloc(cap, sizeof(*idx));
        if (idx == NULL)
            return -1;
        for (size_t i = 0; i < s->index_cap; i++) {
            metrics_ep_t *o = s->index[i];
            if (o == NULL)
                continue;
            size_t j = ep_hash(o->name, o->cls) & (cap - 1);
            while (idx[j] != NULL)
                j = (j + 1) & (cap - 1);
            idx[j] = o;
        }
        free(s->index);
        s->index = idx;
        s->index_cap = cap;
    }
    size_t j = ep_hash(e->name, e->cls) & (s->index_cap - 1);
    while (s->index[j] != NULL)
        j = (j + 1) & (s->index_cap - 1);
    s->index[j] = e;
    s->index_n++;
    return 0;
}

/* the shard's entry of (name, cls), created on first use; NULL when out of memory */
static metrics_ep_t *ep_get(pulse_metrics_shard_t *s, const char *name, int cls)
{
    if (name == NULL)
        name = "";
    if (name[0] == '\0')
        cls = NO_CLASS;
    if (s->index_cap != 0) {
        for (size_t j = ep_hash(name, cls) & (s->index_cap - 1); s->index[j] != NULL; j = (j + 1) & (s->index_cap - 1))
            if (s->index[j]->cls == cls && strcmp(s->index[j]->name, name) == 0)
                return s->index[j];
    }
    metrics_ep_t *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->name = strdup(name)) == NULL) {
        free(e);
        return NULL;
    }
    e->cls = cls;
    if (index_put(s, e) != 0) {
        free(e->name);
        free(e);
        return NULL;
    }
    e->next = atomic_load_explicit(&s->eps, memory_order_relaxed);
    atomic_store_explicit(&s->eps, e, memory_order_release);
    return e;
}

void pulse_metrics_observe_request(pulse_metrics_shard_t *s, const char *endpoint, pulse_class_t cls, int status, double seconds)
{
    metrics_ep_t *e = ep_get(s, endpoint, (int)cls);
    if (e == NULL)
        return;
    if (status >= 100 && status < 100 + NSTATUS)
        ctr_add(&e->status[status - 100], 1);
    if (seconds < 0)
        seconds = 0;
    size_t b = pulse_metrics_bucket(seconds);
    ctr_add(&e->buckets[b], 1);
    ctr_add(&e->sum_us, (uint64_t)(seconds * 1e6 + 0.5));
    if (e->cls != NO_CLASS) {
        ctr_add(&s->cls_buckets[e->cls][b], 1);
        if (status >= 500)
            ctr_add(&s->cls_errors[e->cls], 1);
    }
}

void pulse_metrics_observe_cache(pulse_metrics_shard_t *s, const char *endpoint, pulse_class_t cls, pulse_metrics_cache_t result)
{
    metrics_ep_t *e = ep_get(s, endpoint, (int)cls);
    if (e != NULL && (unsigned)result < 3)
        ctr_add(&e->cache[result], 1);
}

void pulse_metrics_live_stream(pulse_metrics_shard_t *s, const char *endpoint, pulse_class_t cls, int delta)
{
    metrics_ep_t *e = ep_get(s, endpoint, (int)cls);
    if (e == NULL)
        return;
    ctr_set(&e->live_streams, ctr_get(&e->live_streams) + (uint64_t)(int64_t)delta);
    if (delta > 0)
        ctr_add(&e->live_opened, 1);
}

void pulse_metrics_live_event(pulse_metrics_shard_t *s, pulse_metrics_live_event_t kind, double latency)
{
    if ((unsigned)kind < 3)
        ctr_add(&s->live_events[kind], 1);
    if (latency >= 0) {
        ctr_add(&s->live_buckets[pulse_metrics_bucket(latency)], 1);
        ctr_add(&s->live_sum_us, (uint64_t)(latency * 1e6 + 0.5));
    }
}

void pulse_metrics_live_conflated(pulse_metrics_shard_t *s)
{
    ctr_add(&s->live_conflated, 1);
}

void pulse_metrics_live_refresh(pulse_metrics_shard_t *s, pulse_metrics_live_refresh_t kind, unsigned shared)
{
    if ((unsigned)kind < 3)
        ctr_add(&s->live_refreshes[kind], 1);
    ctr_add(&s->live_shared, shared);
}

void pulse_metrics_live_rejected(pulse_metrics_shard_t *s, pulse_metrics_live_reject_t reason)
{
    if ((unsigned)reason < 2)
        ctr_add(&s->live_rejected[reason], 1);
}

static int sqlstate_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'Z')
        return 10 + c - 'A';
    return -1;
}

void pulse_metrics_observe_pg_error(pulse_metrics_shard_t *s, const char *sqlstate)
{
    int a = sqlstate != NULL ? sqlstate_digit(sqlstate[0]) : -1;
    int b = a >= 0 ? sqlstate_digit(sqlstate[1]) : -1;
    if (a < 0 || b < 0)
        a = sqlstate_digit('X'), b = sqlstate_digit('X');
    ctr_add(&s->pg_errors[a * 36 + b], 1);
}

void pulse_metrics_observe_pg_unavailable(pulse_metrics_shard_t *s)
{
    ctr_add(&s->pg_unavailable, 1);
}

void pulse_metrics_observe_unverified(pulse_metrics_shard_t *s)
{
    ctr_add(&s->cache_unverified, 1);
}

void pulse_metrics_observe_keyed_stale(pulse_metrics_shard_t *s)
{
    ctr_add(&s->cache_keyed_stale, 1);
}

void pulse_metrics_sync(pulse_metrics_shard_t *s, const pulse_pgpool_t *pool, pulse_redis_t *redis, const pulse_lcache_t *lcache)
{
    if (lcache != NULL) {
        pulse_lcache_stats_t st;
        pulse_lcache_stats(lcache, &st);
        atomic_store_explicit(&s->lcache_present, 1, memory_order_relaxed);
        ctr_set(&s->lcache_hits, st.hits);
        ctr_set(&s->lcache_evictions, st.evictions);
        ctr_set(&s->lcache_entries, st.entries);
        ctr_set(&s->lcache_bytes, st.bytes);
    }
    if (pool != NULL) {
        pulse_pgpool_stats_t st;
        pulse_pgpool_stats(pool, &st);
        atomic_store_explicit(&s->pool_conns[0], st.down, memory_order_relaxed);
        atomic_store_explicit(&s->pool_conns[1], st.connecting, memory_order_relaxed);
        atomic_store_explicit(&s->pool_conns[2], st.idle, memory_order_relaxed);
        atomic_store_explicit(&s->pool_conns[3], st.busy, memory_order_relaxed);
        atomic_store_explicit(&s->pool_queued, st.queued, memory_order_relaxed);
        atomic_store_explicit(&s->pool_queue_limit, st.queue_limit, memory_order_relaxed);
        ctr_set(&s->pool_waits, st.waits);
        ctr_set(&s->pool_wait_ms, st.wait_ms);
        ctr_set(&s->pool_queue_full, st.queue_full);
        ctr_set(&s->pool_queue_timeouts, st.queue_timeouts);
        ctr_set(&s->pool_deallocated, st.deallocated);
        for (int c = 0; c < PULSE_CLASS_COUNT; c++)
            for (int k = 0; k < PULSE_PGPOOL_SHED_REASONS; k++)
                ctr_set(&s->pool_shed[c][k], st.shed[c][k]);
        atomic_store_explicit(&s->pool_present, 1, memory_order_relaxed);
    }
    if (redis != NULL) {
        pulse_redis_stats_t st;
        pulse_redis_stats(redis, &st);
        atomic_store_explicit(&s->redis_state, (int)pulse_redis_state(redis), memory_order_relaxed);
        ctr_set(&s->redis_commands, st.commands);
        ctr_set(&s->redis_failures, st.failures);
        ctr_set(&s->redis_timeouts, st.timeouts);
        ctr_set(&s->redis_fast_fails, st.fast_fails);
        ctr_set(&s->redis_opens, st.opens);
        ctr_set(&s->redis_connects, st.connects);
        atomic_store_explicit(&s->redis_present, 1, memory_order_relaxed);
    }
}

/* ---- SLO ---------------------------------------------------------------------- */

double pulse_metrics_quantile(const uint64_t *buckets, double q)
{
    uint64_t total = 0;
    for (int k = 0; k < NB; k++)
        total += buckets[k];
    if (total == 0)
        return 0;
    double rank = q * (double)total, cum = 0;
    for (int k = 0; k < PULSE_METRICS_NBUCKETS; k++) {
        if (buckets[k] != 0 && cum + (double)buckets[k] >= rank) {
            double lo = k == 0 ? 0 : pulse_metrics_bounds[k - 1], hi = pulse_metrics_bounds[k];
            return lo + (hi - lo) * (rank - cum) / (double)buckets[k];
        }
        cum += (double)buckets[k];
    }
    return INFINITY;
}

pulse_metrics_slo_result_t pulse_metrics_slo_evaluate(const uint64_t *buckets, uint64_t errors, int p95_ms, int p99_ms,
                                                      int error_rate_ppm)
{
    pulse_metrics_slo_result_t r = {0};
    for (int k = 0; k < NB; k++)
        r.requests += buckets[k];
    r.errors = errors;
    if (r.requests == 0)
        return r;
    r.p95 = pulse_metrics_quantile(buckets, 0.95);
    r.p99 = pulse_metrics_quantile(buckets, 0.99);
    /* a quantile computed on a bucket bound is compared exactly (the default thresholds are bounds) */
    r.p95_breached = r.p95 * 1000.0 > (double)p95_ms * (1 + 1e-9);
    r.p99_breached = r.p99 * 1000.0 > (double)p99_ms * (1 + 1e-9);
    r.error_rate_breached = (double)errors * 1e6 > (double)error_rate_ppm * (double)r.requests;
    return r;
}

int pulse_metrics_slo_due(uint64_t now_ms)
{
    return !slo_started || now_ms >= slo_next_ms;
}

/* the live class: the push latency histogram over the window against slo_live_p95_ms / _p99_ms (no error rate) */
static void slo_live_tick(const pulse_config_t *conf)
{
    uint64_t cur[NB] = {0}, win[NB];
    for (int i = 0; i < pulse_metrics_nshards; i++)
        for (int k = 0; k < NB; k++)
            cur[k] += ctr_get(&pulse_metrics_shards_v[i].live_buckets[k]);
    for (int k = 0; k < NB; k++)
        win[k] = cur[k] - slo_live_prev[k];
    memcpy(slo_live_prev, cur, sizeof(cur));
    if (!slo_started)
        return;
    pulse_metrics_slo_result_t r = pulse_metrics_slo_evaluate(win, 0, conf->slo_live_p95_ms, conf->slo_live_p99_ms, 1000000);
    double window_s = (double)conf->slo_window_ms / 1000.0;
    if (r.p95_breached) {
        ctr_add(&slo_live_breaches[0], 1);
        pulse_log_msg("warning", NULL, "slo breach: class live p95 %.3f s > %.3f s over %g s (%llu pushes)", r.p95,
                      conf->slo_live_p95_ms / 1000.0, window_s, (unsigned long long)r.requests);
    }
    if (r.p99_breached) {
        ctr_add(&slo_live_breaches[1], 1);
        pulse_log_msg("warning", NULL, "slo breach: class live p99 %.3f s > %.3f s over %g s (%llu pushes)", r.p99,
                      conf->slo_live_p99_ms / 1000.0, window_s, (unsigned long long)r.requests);
    }
}

void pulse_metrics_slo_tick(uint64_t now_ms, const pulse_config_t *conf)
{
    if (!pulse_metrics_slo_due(now_ms))
        return;
    uint64_t cur[PULSE_CLASS_COUNT][NB] = {{0}}, errs[PULSE_CLASS_COUNT] = {0};
    for (int i = 0; i < pulse_metrics_nshards; i++)
        for (int c = 0; c < PULSE_CLASS_COUNT; c++) {
            for (int k = 0; k < NB; k++)
                cur[c][k] += ctr_get(&pulse_metrics_shards_v[i].cls_buckets[c][k]);
            errs[c] += ctr_get(&pulse_metrics_shards_v[i].cls_errors[c]);
        }
    if (slo_started) {
        double window_s = (double)conf->slo_window_ms / 1000.0;
        for (int c = 0; c < PULSE_CLASS_COUNT; c++) {
            uint64_t win[NB];
            for (int k = 0; k < NB; k++)
                win[k] = cur[c][k] - slo_prev_buckets[c][k];
            pulse_metrics_slo_result_t r = pulse_metrics_slo_evaluate(win, errs[c] - slo_prev_errors[c], conf->slo_p95_ms[c],
                                                                      conf->slo_p99_ms[c], conf->slo_error_rate_ppm);
            const char *cl = cls_label(c);
            if (r.p95_breached) {
                ctr_add(&slo_breaches[c][0], 1);
                pulse_log_msg("warning", NULL, "slo breach: class %s p95 %.3f s > %.3f s over %g s (%llu requests)", cl, r.p95,
                              conf->slo_p95_ms[c] / 1000.0, window_s, (unsigned long long)r.requests);
            }
            if (r.p99_breached) {
                ctr_add(&slo_breaches[c][1], 1);
                pulse_log_msg("warning", NULL, "slo breach: class %s p99 %.3f s > %.3f s over %g s (%llu requests)", cl, r.p99,
                              conf->slo_p99_ms[c] / 1000.0, window_s, (unsigned long long)r.requests);
            }
            if (r.error_rate_breached) {
                ctr_add(&slo_error_breaches[c], 1);
                pulse_log_msg("warning", NULL, "slo breach: class %s error rate %.4f%% > %.4f%% over %g s (%llu of %llu requests)",
                              cl, 100.0 * (double)r.errors / (double)r.requests, conf->slo_error_rate_ppm / 1e4, window_s,
                              (unsigned long long)r.errors, (unsigned long long)r.requests);
            }
        }
    }
    slo_live_tick(conf);
    memcpy(slo_prev_buckets, cur, sizeof(cur));
    memcpy(slo_prev_errors, errs, sizeof(errs));
    slo_started = 1;
    slo_next_ms = now_ms + (uint64_t)conf->slo_window_ms;
}
