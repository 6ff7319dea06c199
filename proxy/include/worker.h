/*
 * worker.h: one event loop of pulse-proxy (a thread: main.c starts them)
 * with everything its requests use: the HTTP context, the PostgreSQL pool,
 * the Redis client, the single-flight table and local cache, and the
 * process-wide generations, metrics, rate limiter and tracer.
 */
#ifndef PULSE_WORKER_H
#define PULSE_WORKER_H

#include <h2o.h>
#include "cache.h"
#include "generations.h"
#include "keyed.h"
#include "localcache.h"
#include "metrics.h"
#include "pgpool.h"
#include "ratelimit.h"
#include "redis.h"
#include "replicas.h"
#include "trace.h"

/* One event loop with its HTTP context and its PostgreSQL pool; owned by its thread (main.c). */
typedef struct pulse_worker_t {
    h2o_context_t ctx; /* first: handlers find their worker from req->conn->ctx */
    h2o_accept_ctx_t accept_ctx;
    h2o_evloop_t *loop;
    h2o_socket_t *listener;
    int listen_fd;
    pulse_pgpool_t *pgpool;
    pulse_redis_t *redis;           /* NULL: no cache (no redis_url), or the worker is stopping */
    pulse_cache_flights_t *flights; /* single-flight of this loop's misses; NULL when redis is */
    h2o_timeout_t flight_poll;      /* a miss whose flight another loop or proxy leads polls Redis on this timer */
    pulse_lcache_t *lcache;         /* fresh entries kept in this loop, in front of Redis; NULL: none */
    pulse_generations_t *gens;      /* the process's map (main.c), shared by every worker */
    pulse_keyed_t *keyed;           /* the keyed tags known (main.c, keyed.h), shared by every worker */
    pulse_metrics_shard_t *metrics; /* this loop's metrics (written only by its thread) */
    pulse_ratelimit_t *ratelimit;   /* the process's limiter (main.c), shared by every worker */
    pulse_tracer_t *tracer;         /* the process's span exporter; NULL: no tracing */
    struct pulse_live_loop_t *live; /* this loop's live streams and refreshes (live.h) */
    int inflight;                   /* /rpc requests not yet disposed (SIGTERM waits for 0) */
    int index;
    int disposed;                    /* its context and loop were freed at exit */
    pulse_replicas_loop_t *replicas; /* this loop's pools to the read replicas; NULL: none configured */
} pulse_worker_t;

/**
 * Returns the worker a request runs on.
 */
static inline pulse_worker_t *pulse_worker_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(pulse_worker_t, ctx, req->conn->ctx);
}

#endif
