/*
 * metrics.h: the proxy's Prometheus metrics (GET /metrics, text exposition
 * format 0.0.4) and the SLO evaluation of each endpoint class.
 *
 * Every event loop owns one shard: only its thread writes it (plain relaxed
 * loads and stores, no lock, no read-modify-write instruction), any thread
 * reads it with relaxed atomic loads; /metrics sums the shards.  Shards live
 * from pulse_metrics_init to pulse_metrics_free (process start and exit), so a
 * reader never sees one go away.  Endpoints appear in a shard when they are
 * first seen and are never removed: the label set is bounded by the names the
 * catalog ever declared (requests that match no endpoint share endpoint="").
 */
#ifndef PULSE_METRICS_H
#define PULSE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "channel.h"
#include "config.h"
#include "pgpool.h"
#include "localcache.h"
#include "ratelimit.h"
#include "redis.h"
#include "replicas.h"
#include "trace.h"

/* upper bounds (seconds) of the latency histogram's buckets, +Inf excluded; every default SLO threshold is one of them */
#define PULSE_METRICS_NBUCKETS 15
extern const double pulse_metrics_bounds[PULSE_METRICS_NBUCKETS];

typedef struct pulse_metrics_shard_t pulse_metrics_shard_t;

typedef enum { PULSE_METRICS_CACHE_HIT, PULSE_METRICS_CACHE_MISS, PULSE_METRICS_CACHE_STALE } pulse_metrics_cache_t;

/* What one window's evaluation of a class found (pulse_metrics_slo_evaluate). */
typedef struct pulse_metrics_slo_result_t {
    uint64_t requests, errors;
    double p95, p99; /* seconds; INFINITY when the quantile is beyond the last bound */
    int p95_breached, p99_breached, error_rate_breached;
} pulse_metrics_slo_result_t;

/**
 * Allocates `nshards` zeroed shards (one per event loop). Returns 0, or -1 when out of memory. Not thread-safe: call it
 * before the loops start.
 */
int pulse_metrics_init(int nshards) PULSE_WUR;

/**
 * Tells /metrics where the process-wide counters of the rate limiter and the span exporter are (either may be NULL).
 * Call it before the loops start.
 */
void pulse_metrics_set_sources(pulse_ratelimit_t *ratelimit, pulse_tracer_t *tracer);

/**
 * Tells /metrics where the read replicas' monitors are (NULL: none; then no pulse_replica_* or pulse_server_* metric is
 * rendered). Call it before the loops start.
 */
void pulse_metrics_set_replicas(pulse_replicas_t *replicas);

/**
 * Copies the counters of a loop's replica routing (NULL: none) into the shard; on the shard's thread.
 */
void pulse_metrics_sync_replicas(pulse_metrics_shard_t *s, const pulse_replicas_loop_t *rl);

/**
 * Frees the shards and resets the SLO state; call it after every loop stopped.
 */
void pulse_metrics_free(void);

/**
 * Returns shard `i` (0 <= i < nshards).
 */
pulse_metrics_shard_t *pulse_metrics_shard(int i);

/**
 * Returns the index of the histogram bucket of a duration of `seconds` (PULSE_METRICS_NBUCKETS for +Inf).
 */
size_t pulse_metrics_bucket(double seconds);

/**
 * Counts one answered request on the shard's thread: `endpoint` NULL or "" when no endpoint matched (cls is then
 * ignored), `status` the HTTP status sent, `seconds` the time from the request's arrival to its response.
 */
void pulse_metrics_observe_request(pulse_metrics_shard_t *s, const char *endpoint, pulse_class_t cls, int status, double seconds);

/**
 * Counts one answer of a cacheable call by its X-Cache value.
 */
void pulse_metrics_observe_cache(pulse_metrics_shard_t *s, const char *endpoint, pulse_class_t cls, pulse_metrics_cache_t result);

/**
 * Counts one cacheable call that could not be answered from the cache because the invalidation channel could not vouch
 * for the generations map (generations.h).
 */
void pulse_metrics_observe_unverified(pulse_metrics_shard_t *s);

/**
 * Counts a cached entry not served because a keyed tag it read was bumped since (keyed.h).
 */
void pulse_metrics_observe_keyed_stale(pulse_metrics_shard_t *s);

/**
 * Counts one error raised by PostgreSQL, by the class (first two characters) of its SQLSTATE (NULL or malformed: "XX").
 */
void pulse_metrics_observe_pg_error(pulse_metrics_shard_t *s, const char *sqlstate);

/**
 * Counts one call that found no usable PostgreSQL connection, or whose connection broke.
 */
void pulse_metrics_observe_pg_unavailable(pulse_metrics_shard_t *s);

/* live endpoints (live.h) */
typedef enum { PULSE_METRICS_LIVE_CHANGED, PULSE_METRICS_LIVE_UNCHANGED, PULSE_METRICS_LIVE_FAILED } pulse_metrics_live_refresh_t;
typedef enum { PULSE_METRICS_LIVE_RESULT, PULSE_METRICS_LIVE_ERROR, PULSE_METRICS_LIVE_HEARTBEAT } pulse_metrics_live_event_t;
typedef enum { PULSE_METRICS_LIVE_TENANT_LIMIT, PULSE_METRICS_LIVE_PROXY_LIMIT } pulse_metrics_live_reject_t;

/**
 * A live stream of `endpoint` (of class `cls`) opened (`delta` 1) or closed (-1) on the shard's loop.
 */
void pulse_metrics_live_stream(pulse_metrics_shard_t *s, const char *endpoint, pulse_class_t cls, int delta);

/**
 * Counts one event written to a stream; a result with `latency` >= 0 (seconds from the arrival of the notification it
 * answers to its write) is also counted in the push latency histogram, the live class's SLO.
 */
void pulse_metrics_live_event(pulse_metrics_shard_t *s, pulse_metrics_live_event_t kind, double latency);

/**
 * Counts one result a slow stream skipped: a newer one replaced it before it was written.
 */
void pulse_metrics_live_conflated(pulse_metrics_shard_t *s);

/**
 * Counts one refresh (a database call for a subscription key) by outcome; `shared`: the streams beyond the first that
 * the key had, which got its result without a call of their own.
 */
void pulse_metrics_live_refresh(pulse_metrics_shard_t *s, pulse_metrics_live_refresh_t kind, unsigned shared);

/**
 * Counts one stream refused for a cap (live_max_streams_tenant: 429, live_max_streams: 503).
 */
void pulse_metrics_live_rejected(pulse_metrics_shard_t *s, pulse_metrics_live_reject_t reason);

/**
 * Copies the gauges and counters of the shard's pool and Redis client (NULL: none) into the shard. Call it on the
 * shard's thread (the pool and client are not thread-safe), e.g. after every turn of its loop.
 */
void pulse_metrics_sync(pulse_metrics_shard_t *s, const pulse_pgpool_t *pool, pulse_redis_t *redis, const pulse_lcache_t *lcache);

/**
 * Renders every metric, summed over the shards, in the Prometheus text format into a malloc'd NUL-terminated string
 * (`*len` its length), or returns NULL when out of memory; `channel`: the invalidation channel's figures
 * (pulse_catalog_channel_stats; NULL: none). Safe from any thread.
 */
char *pulse_metrics_render(const pulse_catalog_channel_stats_t *channel, size_t *len);

/**
 * Appends `s` to `out` (capacity `cap`) escaped as a label value: backslash, double quote and newline. Returns the
 * length the escaped text needs, as snprintf does (NUL-terminated when it fits).
 */
size_t pulse_metrics_escape(char *out, size_t cap, const char *s);

/**
 * Estimates the quantile `q` (0..1) of a histogram of per-bucket (not cumulative) counts `buckets`
 * (PULSE_METRICS_NBUCKETS + 1, the last one +Inf) by linear interpolation within its bucket, as Prometheus's
 * histogram_quantile does; INFINITY when it falls into +Inf, 0 for an empty histogram.
 */
double pulse_metrics_quantile(const uint64_t *buckets, double q);

/**
 * Evaluates one window of one class: its per-bucket counts and its 5xx count against the thresholds (milliseconds;
 * error rate in parts per million). An empty window breaches nothing.
 */
pulse_metrics_slo_result_t pulse_metrics_slo_evaluate(const uint64_t *buckets, uint64_t errors, int p95_ms, int p99_ms,
                                                      int error_rate_ppm);

/**
 * Tells whether the current SLO window has ended at `now_ms` (always true before the first pulse_metrics_slo_tick).
 */
int pulse_metrics_slo_due(uint64_t now_ms);

/**
 * Ends the window when it is due: sums the class histograms of every shard, evaluates what changed since the previous
 * window against `conf`'s SLO options, counts each breach in pulse_slo_breaches_total and logs one line per breach,
 * then starts a window of `conf->slo_window_ms`. The first call only starts the first window. Call it from one thread
 * only (worker 0).
 */
void pulse_metrics_slo_tick(uint64_t now_ms, const pulse_config_t *conf);

#endif
