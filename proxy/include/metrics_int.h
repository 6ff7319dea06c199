/*
 * metrics_int.h: what metrics.c (the shards, what the loops observe, the SLO
 * windows) and metrics_render.c (the Prometheus text of /metrics) share: the
 * shard's layout, the relaxed counters and the process-wide state.  Not for
 * other files: they use metrics.h.  Threads and ownership: metrics.c's header.
 */
#ifndef PULSE_METRICS_INT_H
#define PULSE_METRICS_INT_H

#include <stdatomic.h>
#include <stdint.h>
#include "metrics.h"

#define NB (PULSE_METRICS_NBUCKETS + 1) /* with +Inf */
#define NSTATUS 500                     /* 100..599 */
#define NSQLSTATE_CLASS (36 * 36)
#define NO_CLASS PULSE_CLASS_COUNT

typedef _Atomic uint64_t ctr_t;

/* one endpoint (and class) of one shard */
typedef struct metrics_ep_t {
    struct metrics_ep_t *next; /* the shard's published list; immutable once published */
    char *name;
    int cls; /* NO_CLASS when no endpoint matched */
    ctr_t status[NSTATUS];
    ctr_t buckets[NB];
    ctr_t sum_us;
    ctr_t cache[3];
    ctr_t live_streams, live_opened; /* open streams (opened minus closed on this shard), streams opened */
} metrics_ep_t;

struct pulse_metrics_shard_t {
    _Atomic(metrics_ep_t *) eps;
    metrics_ep_t **index; /* owner only: open addressing by name and class */
    size_t index_cap, index_n;
    ctr_t cls_buckets[PULSE_CLASS_COUNT][NB]; /* every endpoint of a class, for the SLO windows */
    ctr_t cls_errors[PULSE_CLASS_COUNT];      /* 5xx */
    ctr_t pg_errors[NSQLSTATE_CLASS];
    ctr_t pg_unavailable;
    ctr_t cache_unverified;
    ctr_t cache_keyed_stale;
    /* copied by pulse_metrics_sync */
    atomic_int lcache_present;
    ctr_t lcache_hits, lcache_evictions, lcache_entries, lcache_bytes;
    _Atomic int pool_present, pool_conns[4], pool_queued, pool_queue_limit;
    ctr_t pool_waits, pool_wait_ms, pool_queue_full, pool_queue_timeouts, pool_deallocated;
    ctr_t pool_shed[PULSE_CLASS_COUNT][PULSE_PGPOOL_SHED_REASONS];
    _Atomic int redis_present, redis_state;
    ctr_t redis_commands, redis_failures, redis_timeouts, redis_fast_fails, redis_opens, redis_connects;
    /* live endpoints */
    ctr_t live_events[3], live_conflated, live_refreshes[3], live_shared, live_rejected[2];
    ctr_t live_buckets[NB], live_sum_us; /* notification to write of pushed results */
    ctr_t rep_calls[PULSE_REPLICAS_MAX + 1], rep_retries[PULSE_REPLICAS_MAX + 1], rep_decisions[PULSE_REPLICAS_DECISIONS];
    ctr_t rep_fills_stored, rep_fills_refused;
};

extern pulse_metrics_shard_t *pulse_metrics_shards_v; /* nshards of them, one per loop */
extern int pulse_metrics_nshards;

/* SLO windows of class `cls` (PULSE_CLASS_COUNT: the live class) that broke objective `slo` (0: p95, 1: p99, 2: the
   error rate; the live class has no error rate), counted by the ticking thread (metrics.c) */
uint64_t pulse_metrics_slo_breaches(int cls, int slo);

/* sources set once at start-up (pulse_metrics_set_sources, pulse_metrics_set_replicas) */
extern pulse_ratelimit_t *pulse_metrics_src_ratelimit;
extern pulse_tracer_t *pulse_metrics_src_tracer;
extern pulse_replicas_t *pulse_metrics_src_replicas;

static inline void ctr_add(ctr_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline uint64_t ctr_get(ctr_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static inline void ctr_set(ctr_t *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

/* a class's label value ("" when no endpoint matched) */
static inline const char *cls_label(int cls)
{
    return cls == NO_CLASS ? "" : pulse_config_class_name((pulse_class_t)cls);
}

#endif
