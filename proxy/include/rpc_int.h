/*
 * rpc_int.h: what the files of the /rpc/<name> handler share: rpc.c (the
 * pipeline: route, token, rate limit, arguments), rpc_cache.c (the cache's
 * lookups, single flight and background refreshes), rpc_db.c (the database
 * call, what its answer becomes), rpc_answer.c (answers and the access
 * log) and rpc_trace.c (a request's spans).  Private to them; calls go one
 * way: rpc.c -> rpc_cache.c -> rpc_db.c -> rpc_answer.c -> rpc_trace.c.
 *
 * A /rpc request lives in an rpc_req_t allocated from req->pool with a
 * dispose callback: h2o runs it when the request ends, also when the client
 * goes away first, and it cancels the pending database job and releases the
 * configuration and route table the request held.  The database result is
 * copied into req->pool before the response is sent.
 *
 * The cache (cache.h describes the flow): a read or search call with a TTL
 * gets a key; a Redis lookup (rpc_fetch_t, heap, owned by the pending
 * command: dispose only clears its back pointer) answers a usable entry, a
 * miss joins the loop's flight table: the leader calls the database, stores
 * a 200 and hands the entry to the waiters (rpc_flight_done, also from
 * dispose when the leader goes away: the waiters then call themselves).  A
 * stale entry is served and refreshed by an rpc_refresh_t (heap, owns a copy
 * of the call and a reference to the route table) that leads the flight and
 * lives until its database call ends.  Entries served are always copied into
 * req->pool first.
 */
#ifndef PULSE_RPC_INT_H
#define PULSE_RPC_INT_H

#include <netdb.h>
#include <sys/time.h>
#include "auth.h"
#include "config.h"
#include "router.h"
#include "worker.h"

typedef struct rpc_req_t rpc_req_t;

/*
 * A request's trace (W3C trace context): its ids, and the times its spans
 * need; the spans are built only when the request ends and is exported
 * (sampled by the head decision, failed with a 5xx, or slower than
 * trace_slow_ms).  Times in nanoseconds since the epoch, 0: did not happen.
 */
typedef struct rpc_trace_t {
    uint8_t trace_id[16], span_id[8], parent_id[8];
    int has_parent, sampled;
    uint64_t start_ns;
    uint64_t cache_start_ns, cache_end_ns;
    uint64_t db_start_ns, db_end_ns;
    uint64_t send_ns; /* the response was handed to h2o: serialization ended */
    char sqlstate[6];
} rpc_trace_t;

/* a pending Redis lookup; `r` is NULL once the request went away */
typedef struct rpc_fetch_t {
    rpc_req_t *r;
} rpc_fetch_t;

struct rpc_req_t {
    h2o_req_t *req;
    pulse_worker_t *worker;
    pulse_config_t *conf;   /* held until dispose */
    pulse_routes_t *routes; /* held until dispose: `route` points into it */
    const pulse_route_t *route;
    pulse_pgjob_t *job;         /* pending database call; NULLed by the pool when it ends */
    pulse_replicas_pick_t pick; /* the server of the database call (replicas.h) */
    pulse_call_t call;
    char request_id[65];
    char tenant[PULSE_AUTH_MAX_TENANT + 1];
    int authenticated;
    struct timeval t0;
    /* cache; key[0] == '\0': the call is not cached */
    char key[PULSE_CACHE_KEY_SIZE];
    uint64_t ttl_ms, swr_ms, sie_ms;
    rpc_fetch_t *fetch;           /* pending lookup */
    pulse_cache_waiter_t *waiter; /* waiting for the flight of key */
    int leader;                   /* leads the flight of key: finishes it on every path */
    int locked;                   /* holds the flight lock of key in Redis: released when the flight ends */
    uint64_t poll_until_ms;       /* polling for another leader's entry until then */
    h2o_timeout_entry_t poll;     /* linked while waiting for the next poll */
    int unverified;               /* the channel could not vouch for the generations: no hit, no flight (rpc_cache.c) */
    int has_stale;                /* `stale` is a stale-if-error entry (in req->pool) */
    pulse_cache_entry_t stale;
    int is_get;
    const char *xcache; /* "hit", "miss", "stale" once a cached answer is sent */
    char remote[NI_MAXHOST];
    pulse_ratelimit_pending_t *rl_pending; /* a rate limit decision on its way from Redis */
    pulse_ratelimit_result_t rl;
    rpc_trace_t trace;
    int live;               /* a text/event-stream request: a stream of the call's results (live_stream.c) */
    h2o_iovec_t live_token; /* its token, when it came as the query's access_token */
};

/* rpc_answer.c */

/* milliseconds since the epoch */
uint64_t rpc_now_ms(void);

/* logs the request (counted in the metrics) and ends its trace */
void rpc_log(rpc_req_t *r, size_t bytes, const char *source);

/* answers a problem document and logs the request */
void rpc_fail(rpc_req_t *r, int status, const char *detail, const char *allow);

/* copies the fields of `src` (e.g. in a Redis reply or another request's pool) into `pool` */
void rpc_entry_copy(h2o_mem_pool_t *pool, pulse_cache_entry_t *dst, const pulse_cache_entry_t *src);

/* step 7 of a cached call: `e` (in req->pool) as `xcache` (hit, miss, stale), from `source` */
void rpc_send_entry(rpc_req_t *r, const pulse_cache_entry_t *e, const char *xcache, const char *source);

/* the Link header for a body carrying next_cursor, or NULL */
const char *rpc_next_link(h2o_mem_pool_t *pool, const pulse_call_t *call, h2o_iovec_t body);

/* step 7 of a call that is not cached: the body as the database produced it */
void rpc_send_body(rpc_req_t *r, h2o_iovec_t body, const char *link, const char *source);

/* rpc_db.c */

/* step 5: the call through this loop's pool; its result answers the request */
void rpc_call_database(rpc_req_t *r);

/* the leader hands `result` (an entry, or NULL: the waiters call the database themselves) to the flight's waiters */
void rpc_flight_done(rpc_req_t *r, const pulse_cache_entry_t *result);

/* answers with the stale-if-error entry when there is one; returns whether it did */
int rpc_serve_stale(rpc_req_t *r);

/* step 6: builds the entry of a database answer of `route` (in `pool`; with the call's keyed state when the route has tag
   templates) and stores it under `key` in Redis (PX px_ms) and the loop's local cache (`key` NULL: builds it only, as a
   live refresh of an endpoint that is not cached does); returns 0, or -1 when it must not be cached (a keyed answer
   without a usable state: serve it, do not store it) */
int rpc_store(pulse_worker_t *w, h2o_mem_pool_t *pool, const pulse_route_t *route, const char *key, h2o_iovec_t body,
              const char *link, const pulse_pgresult_t *res, uint64_t ttl_ms, uint64_t px_ms, pulse_cache_entry_t *e);

/* rpc_cache.c */

/* the cache key of `call` for `tenant` (PULSE_CACHE_KEY_SIZE bytes at `key`) over the route's tags with the generations
   `gens` (one per route tag), or over no tag at all when `gens` is NULL (the identity of a live subscription); 0 or -1 */
int rpc_call_key(h2o_mem_pool_t *pool, const pulse_call_t *call, const char *tenant, const uint64_t *gens, char *key) PULSE_WUR;

/* step 4: the key of a cacheable call and its lookup; returns 0 when the lookup was sent (its answer continues), 2
   when the local cache answered, 1 for a miss without a lookup (Redis is down), -1 for a call that is not cached */
int rpc_cache_lookup(rpc_req_t *r);

/* a miss: the flight's leader calls the database, the others wait for it */
void rpc_miss(rpc_req_t *r);

/* live_stream.c (live.h) */

/* step 1: a GET of a read or search endpoint (`readonly`) that accepts text/event-stream is a stream (r->live), whose
   token may come as the query's access_token (taken out of the path: neither the arguments nor the access log see it);
   any other request that asks for text/event-stream is refused (406). Returns 0 to go on, -1 when it was answered */
int rpc_live_accept(rpc_req_t *r, int readonly);

/* step 4 of a stream: subscribes it; its response starts with its first result */
void rpc_live_open(rpc_req_t *r);

/* rpc_trace.c */

/* the trace of a request: the incoming traceparent's trace, or a new one; the head sampling decision */
void rpc_trace_start(rpc_req_t *r);

/* the request ended after `ms`: its spans go to the exporter when it was sampled, failed (5xx) or slow */
void rpc_trace_export(rpc_req_t *r, double ms);

#endif
