/*
 * rpc.h: the HTTP handlers (/rpc/<name>, /health, /ready, /metrics, and a
 * 404 for the rest) and the per-thread worker they run on.
 *
 * The request pipeline of /rpc/<name> (rpc.c), in order:
 *   1. request id, route lookup (404), method check (405)
 *   2. bearer token → tenant (401), then the rate limits of the endpoint's
 *      class: tenant, client IP, global buckets (429; ratelimit.h)
 *   3. arguments → pulse_call_t, typed SQL (400)
 *   4. cacheable call (read/search with a TTL, Redis configured): cache key,
 *      the loop's local cache (fresh entries only, localcache.h), Redis lookup; a usable entry answers (and may start a background
 *      refresh), a miss joins the loop's single-flight table
 *   5. database call through the worker's pgpool (4xx/5xx by SQLSTATE, 503);
 *      a write with tags reads their generations after its COMMIT
 *   6. cache store of a 200, waiters of the flight answered
 *   7. response: the JSON body unchanged, Link rel="next" when it has next_cursor
 */
#ifndef PULSE_RPC_H
#define PULSE_RPC_H

#include <h2o.h>
#include "cache.h"
#include "config.h"
#include "generations.h"
#include "localcache.h"
#include "metrics.h"
#include "pgpool.h"
#include "ratelimit.h"
#include "redis.h"
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
    pulse_metrics_shard_t *metrics; /* this loop's metrics (written only by its thread) */
    pulse_ratelimit_t *ratelimit;   /* the process's limiter (main.c), shared by every worker */
    pulse_tracer_t *tracer;         /* the process's span exporter; NULL: no tracing */
    int inflight;                   /* /rpc requests not yet disposed (SIGTERM waits for 0) */
    int index;
    int disposed; /* its context and loop were freed at exit */
} pulse_worker_t;

/**
 * Registers the proxy's handlers on `hostconf`: /rpc, /health, /ready, /metrics and a catch-all 404. Returns 0 or -1.
 */
int pulse_rpc_register(h2o_hostconf_t *hostconf) PULSE_WUR;

/**
 * Returns the worker a request runs on.
 */
pulse_worker_t *pulse_rpc_worker(h2o_req_t *req);

/**
 * Fills `buf` (at least 65 bytes) with the request id: the client's X-Request-Id when it is 1 to 64 characters of
 * [A-Za-z0-9._:-], a fresh random one (32 hex digits) otherwise.
 */
void pulse_rpc_request_id(const char *given, size_t len, char *buf);

#endif
