/*
 * rpc.h: the /rpc/<name> handler: an HTTP request mapped to a call of the
 * SQL function the catalog exposes under that name.
 *
 * The request pipeline (rpc.c), in order:
 *   1. request id, route lookup (404), method check (405; HEAD is a GET
 *      without the body)
 *   2. bearer token → tenant (401), then the rate limits of the endpoint's
 *      class: tenant, client IP, global buckets (429; ratelimit.h)
 *   3. arguments → pulse_call_t, typed SQL (400)
 *   4. cacheable call (read/search with a TTL, Redis configured): cache key,
 *      the loop's local cache (fresh entries only, localcache.h), Redis
 *      lookup; a usable entry answers (and may start a background refresh),
 *      a miss joins the loop's single-flight table (rpc_cache.c)
 *   5. database call through the worker's pgpool (4xx/5xx by SQLSTATE, 503);
 *      a write with tags reads their generations after its COMMIT
 *   6. cache store of a 200, waiters of the flight answered
 *   7. response: the JSON body unchanged, Link rel="next" when it has next_cursor
 */
#ifndef PULSE_RPC_H
#define PULSE_RPC_H

#include <h2o.h>

/**
 * Handles a request for /rpc/<name> (site.c dispatches it here). Always returns 0: the request is answered, now or
 * when its cache lookup, rate limit decision or database call ends.
 */
int pulse_rpc_handle(h2o_req_t *req);

/**
 * Returns the methods the endpoint named by the `len` bytes at `name` takes ("GET, HEAD, POST" for read and search
 * endpoints, "POST" for the others), or NULL when there is no such endpoint.
 */
const char *pulse_rpc_methods(const char *name, size_t len);

#endif
