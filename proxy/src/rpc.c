/*
 * rpc.c: the /rpc/<name> handler of pulse-proxy, the pipeline of rpc.h in
 * order: route and method, bearer token, rate limits, arguments, the cache
 * (rpc_cache.c), the database call and the answer.  rpc_int.h states how a
 * request's memory is owned; rpc_trace.c builds its spans.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "log.h"
#include "problem.h"
#include "respond.h"
#include "rpc.h"
#include "rpc_int.h"

static void rpc_dispose(void *p)
{
    rpc_req_t *r = p;
    pulse_pgpool_cancel(r->job);
    pulse_replicas_cancel(&r->pick);
    if (r->rl_pending != NULL)
        pulse_ratelimit_cancel(r->rl_pending);
    if (h2o_timeout_is_linked(&r->poll))
        h2o_timeout_unlink(&r->poll);
    if (r->fetch != NULL)
        r->fetch->r = NULL;
    if (r->waiter != NULL)
        pulse_cache_flight_leave(r->waiter);
    rpc_flight_done(r, NULL); /* a leader gone: its waiters call the database */
    if (r->routes != NULL)
        pulse_router_release(r->routes);
    if (r->conf != NULL)
        pulse_config_release(r->conf);
    r->worker->inflight--;
}

/* step 2: Authorization: Bearer <token> */
static int rpc_authenticate(rpc_req_t *r, const char **reason)
{
    h2o_req_t *req = r->req;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    h2o_iovec_t v = r->live_token; /* a stream's access_token (live_stream.c): there is no Authorization then */
    if (i < 0 && v.base == NULL) {
        *reason = "missing bearer token";
        return -1;
    }
    if (i >= 0 && ((v = req->headers.entries[i].value).len < 7 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer ")))) {
        *reason = "the Authorization scheme must be Bearer";
        return -1;
    }
    const char *tok = i >= 0 ? v.base + 7 : v.base;
    size_t len = i >= 0 ? v.len - 7 : v.len;
    while (len > 0 && *tok == ' ')
        tok++, len--;
    while (len > 0 && tok[len - 1] == ' ')
        len--;
    if (pulse_auth_verify(tok, len, r->conf->jwt_secret, time(NULL), r->tenant, reason) != 0)
        return -1;
    r->authenticated = 1;
    return 0;
}

static void rpc_run(rpc_req_t *r);

/* the methods an endpoint of class `cls` takes (Allow, CORS preflights) */
static const char *rpc_methods(pulse_class_t cls)
{
    return cls == PULSE_CLASS_READ || cls == PULSE_CLASS_SEARCH ? "GET, HEAD, POST" : "POST";
}

const char *pulse_rpc_methods(const char *name, size_t len)
{
    pulse_routes_t *routes = pulse_router_acquire();
    const pulse_route_t *route = pulse_router_find(routes, name, len);
    const char *methods = route != NULL ? rpc_methods(route->cls) : NULL;
    if (routes != NULL)
        pulse_router_release(routes);
    return methods;
}

/* step 2, rate limits: allowed requests go on (with RateLimit-* headers when a bucket applies), the others get 429 */
static void rpc_ratelimited(rpc_req_t *r, const pulse_ratelimit_result_t *res)
{
    h2o_req_t *req = r->req;
    pulse_ratelimit_subject_t who = {.cls = r->route->cls, .tenant = r->tenant, .ip = r->remote};
    pulse_ratelimit_add_headers(&req->pool, &req->res.headers, res, &who, r->conf->ratelimit_legacy_headers);
    if (res->allowed) {
        rpc_run(r);
        return;
    }
    char detail[160];
    snprintf(detail, sizeof(detail), "rate limit exceeded: %u requests per %s bucket of the %s class, refilled at %g/s", res->limit,
             pulse_ratelimit_scope_name(res->scope), pulse_config_class_name(r->route->cls), res->rate);
    rpc_fail(r, 429, detail, NULL);
}

static void on_ratelimit(void *data, const pulse_ratelimit_result_t *res)
{
    rpc_req_t *r = data;
    r->rl = *res;
    rpc_ratelimited(r, &r->rl);
}

int pulse_rpc_handle(h2o_req_t *req)
{
    pulse_worker_t *w = pulse_worker_of(req);
    rpc_req_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), rpc_dispose);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->worker = w;
    w->inflight++;
    gettimeofday(&r->t0, NULL);
    r->conf = pulse_config_acquire();
    r->routes = pulse_router_acquire();
    pulse_pgpool_set_queue_limit(w->pgpool, r->conf->queue_limit);
    pulse_respond_peer(req, r->remote);
    rpc_trace_start(r);

    /* step 1 */
    pulse_respond_request_id_of(req, r->request_id);
    size_t path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    if (path_len <= 5 || memcmp(req->path.base, "/rpc/", 5) != 0) {
        rpc_fail(r, 404, "no such endpoint", NULL);
        return 0;
    }
    const char *name = req->path.base + 5;
    size_t name_len = path_len - 5;
    if ((r->route = pulse_router_find(r->routes, name, name_len)) == NULL) {
        rpc_fail(r, 404, "no such endpoint", NULL);
        return 0;
    }
    /* HEAD is a GET without the body (h2o drops it) */
    r->is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int readonly = r->route->cls == PULSE_CLASS_READ || r->route->cls == PULSE_CLASS_SEARCH;
    if (!(is_post || (r->is_get && readonly))) {
        rpc_fail(r, 405, readonly ? "use GET, HEAD or POST" : "use POST", rpc_methods(r->route->cls));
        return 0;
    }
    /* Accept: text/event-stream makes a GET a live stream (live_stream.c), whose token may be the query's access_token */
    if (rpc_live_accept(r, readonly) != 0)
        return 0;

    /* step 2 */
    const char *reason = NULL;
    if (rpc_authenticate(r, &reason) != 0) {
        rpc_fail(r, 401, reason, NULL);
        return 0;
    }
    if (pulse_ratelimit_check(w->ratelimit, w->redis, r->route->cls, r->tenant, r->remote, &r->rl, on_ratelimit, r,
                              &r->rl_pending) == 1)
        rpc_ratelimited(r, &r->rl); /* otherwise on_ratelimit continues */
    return 0;
}

/* steps 3 to 7 */
static void rpc_run(rpc_req_t *r)
{
    h2o_req_t *req = r->req;
    /* step 3 */
    char *err = NULL;
    pulse_router_call_init(&req->pool, &r->call, r->route);
    if (r->is_get) {
        if (req->query_at != SIZE_MAX &&
            pulse_router_args_from_query(&req->pool, &r->call, req->path.base + req->query_at + 1,
                                         req->path.len - req->query_at - 1, r->conf->max_args, &err) != 0) {
            rpc_fail(r, 400, err, NULL);
            return;
        }
    } else {
        ssize_t ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
        if (ct >= 0 &&
            h2o_strstr(req->headers.entries[ct].value.base, req->headers.entries[ct].value.len, H2O_STRLIT("json")) == SIZE_MAX) {
            rpc_fail(r, 415, "the request body must be a JSON object (application/json)", NULL);
            return;
        }
        if (req->entity.base != NULL && req->entity.len != 0 &&
            pulse_router_args_from_json(&req->pool, &r->call, req->entity.base, req->entity.len, r->conf->max_args, &err) != 0) {
            rpc_fail(r, 400, err, NULL);
            return;
        }
    }
    if (pulse_router_prepare(&req->pool, &r->call, &err) != 0) {
        rpc_fail(r, 400, err, NULL);
        return;
    }
    const char *lsn_err;
    if (pulse_replicas_read_token(req, r->conf->replica_lsn_cookie, &r->pick, &lsn_err) != 0) {
        rpc_fail(r, 400, lsn_err, NULL);
        return;
    }

    if (r->live) { /* a stream: its results come from its subscription (live.c), never from the cache */
        rpc_live_open(r);
        return;
    }

    /* step 4: a cacheable call is looked up in Redis (on_cache_fetch continues); when Redis cannot be asked, it is a miss.
       A read carrying a write's LSN skips the cache: it runs where that write is (replicas.h) */
    switch (r->pick.min_lsn != 0 ? -1 : rpc_cache_lookup(r)) {
    case 0:
    case 2:
        break;
    case 1:
        rpc_miss(r);
        break;
    default:
        rpc_call_database(r);
        break;
    }
}
