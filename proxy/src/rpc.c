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

uint64_t rpc_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* logs the request (counted in the metrics) and ends its trace */
static void rpc_log(rpc_req_t *r, size_t bytes, const char *source)
{
    char trace_id[33];
    pulse_trace_hex(r->trace.trace_id, 16, trace_id);
    pulse_respond_log_t e = {.request_id = r->request_id,
                             .t0 = &r->t0,
                             .route = r->route,
                             .counted = 1,
                             .tenant = r->authenticated ? r->tenant : NULL,
                             .bytes = bytes,
                             .source = source,
                             .trace_id = trace_id,
                             .cache = r->xcache,
                             .remote = r->remote};
    rpc_trace_export(r, pulse_respond_log(r->req, &e));
}

void rpc_fail(rpc_req_t *r, int status, const char *detail, const char *allow)
{
    r->trace.send_ns = pulse_trace_now_ns();
    rpc_log(r, pulse_respond_problem(r->req, r->request_id, status, detail, r->conf->retry_after, allow), NULL);
}

/* step 7: the body as the database produced it */
static void rpc_send_body(rpc_req_t *r, h2o_iovec_t body, const char *link, const char *source)
{
    h2o_req_t *req = r->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, r->request_id, strlen(r->request_id));
    if (link != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LINK, NULL, link, strlen(link));
    req->res.content_length = body.len;
    r->trace.send_ns = pulse_trace_now_ns();
    h2o_send_inline(req, body.base, body.len);
    rpc_log(r, body.len, source);
}

const char *rpc_next_link(h2o_mem_pool_t *pool, const pulse_call_t *call, h2o_iovec_t body)
{
    if (call->route->cursor_arg < 0 || h2o_strstr(body.base, body.len, H2O_STRLIT("\"next_cursor\"")) == SIZE_MAX)
        return NULL;
    const char *v;
    size_t vlen;
    switch (pulse_router_json_top_string(body.base, body.len, "next_cursor", &v, &vlen)) {
    case 1:
        return pulse_router_next_link(pool, call, v, vlen);
    case 0:
        return NULL;
    default: /* escapes, or not an object: the parser decides */
        break;
    }
    json_t *doc = json_loadb(body.base, body.len, 0, NULL);
    const char *link = NULL;
    json_t *cur = json_object_get(doc, "next_cursor");
    if (json_is_string(cur))
        link = pulse_router_next_link(pool, call, json_string_value(cur), json_string_length(cur));
    json_decref(doc);
    return link;
}

void rpc_entry_copy(h2o_mem_pool_t *pool, pulse_cache_entry_t *dst, const pulse_cache_entry_t *src)
{
    *dst = *src;
    dst->content_type = h2o_strdup(pool, src->content_type.base, src->content_type.len);
    dst->etag = h2o_strdup(pool, src->etag.base, src->etag.len);
    dst->link = src->link.len != 0 ? h2o_strdup(pool, src->link.base, src->link.len) : h2o_iovec_init(NULL, 0);
    dst->body = h2o_strdup(pool, src->body.base, src->body.len);
    dst->gzip = src->gzip.len != 0 ? h2o_strdup(pool, src->gzip.base, src->gzip.len) : h2o_iovec_init(NULL, 0);
}

/* step 7 of a cached call: `e` (in req->pool) with ETag, Cache-Control, X-Cache, Vary; 304 on a matching If-None-Match; the
   gzip variant when the client accepts it */
void rpc_send_entry(rpc_req_t *r, const pulse_cache_entry_t *e, const char *xcache, const char *source)
{
    h2o_req_t *req = r->req;
    char cc[128];
    r->xcache = xcache;
    pulse_metrics_observe_cache(r->worker->metrics, r->route->name, r->route->cls,
                                xcache[0] == 'h'   ? PULSE_METRICS_CACHE_HIT
                                : xcache[0] == 's' ? PULSE_METRICS_CACHE_STALE
                                                   : PULSE_METRICS_CACHE_MISS);
    int ccn = pulse_cache_control(cc, sizeof(cc), e, r->swr_ms, r->sie_ms, rpc_now_ms());
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, r->request_id, strlen(r->request_id));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, e->etag.base, e->etag.len);
    if (ccn > 0) {
        h2o_iovec_t v = h2o_strdup(&req->pool, cc, (size_t)ccn);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, v.base, v.len);
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, xcache, strlen(xcache));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Encoding"));
    if (e->link.len != 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LINK, NULL, e->link.base, e->link.len);
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    if (i >= 0 && pulse_cache_etag_list_match(req->headers.entries[i].value.base, req->headers.entries[i].value.len, e->etag.base,
                                              e->etag.len, false)) {
        req->res.status = 304;
        req->res.reason = "Not Modified";
        r->trace.send_ns = pulse_trace_now_ns();
        h2o_send_inline(req, NULL, 0);
        rpc_log(r, 0, source);
        return;
    }
    h2o_iovec_t body = e->body;
    i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, -1);
    if (e->gzip.len != 0 && i >= 0 &&
        pulse_cache_accepts_gzip(req->headers.entries[i].value.base, req->headers.entries[i].value.len)) {
        body = e->gzip;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, H2O_STRLIT("gzip"));
    }
    req->res.status = e->status;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, e->content_type.base, e->content_type.len);
    req->res.content_length = body.len;
    r->trace.send_ns = pulse_trace_now_ns();
    h2o_send_inline(req, body.base, body.len);
    rpc_log(r, body.len, source);
}

/* step 5 → 6 → 7 */
static void on_db_result(void *data, const pulse_pgresult_t *res)
{
    rpc_req_t *r = data;
    pulse_worker_t *w = r->worker;
    r->trace.db_end_ns = pulse_trace_now_ns();
    if (pulse_replicas_retry(w->replicas, &r->pick, res)) { /* a replica failed: the primary answers */
        rpc_call_database(r);
        return;
    }
    if (res->sqlstate != NULL)
        snprintf(r->trace.sqlstate, sizeof(r->trace.sqlstate), "%s", res->sqlstate);
    pulse_replicas_wrote(w->replicas, r->req, r->conf, r->route, res); /* a write's LSN: stamps, Pulse-LSN */
    if (res->after != NULL && w->gens != NULL &&
        pulse_generations_resync(w->gens, (const char *const *)r->route->tags, r->route->ntags, res->after, res->after_len) < 0)
        pulse_log_msg("error", r->request_id, "%s: unexpected pulse.tag_generations result", r->route->name);
    switch (res->status) {
    case PULSE_PG_OK: {
        h2o_iovec_t body =
            res->body != NULL ? h2o_strdup(&r->req->pool, res->body, res->body_len) : h2o_iovec_init(H2O_STRLIT("null"));
        const char *link = rpc_next_link(&r->req->pool, &r->call, body);
        if (r->key[0] != '\0') {
            /* step 6: store, answer the flight's waiters, answer */
            pulse_cache_entry_t e;
            h2o_iovec_t lv = link != NULL ? h2o_iovec_init(link, strlen(link)) : h2o_iovec_init(NULL, 0);
            if (pulse_cache_entry_init(&r->req->pool, &e, 200, h2o_iovec_init(H2O_STRLIT("application/json")), body, lv,
                                       rpc_now_ms(), r->ttl_ms) != 0)
                pulse_log_msg("warning", r->request_id, "%s: gzip failed; cached without a gzip variant", r->route->name);
            /* a replica's answer older than a generation of the key is served, never stored (replicas.h) */
            int store = pulse_replicas_may_store(w->replicas, &r->pick, r->route, res);
            uint64_t px_ms = pulse_cache_redis_ttl_ms(r->ttl_ms, r->swr_ms, r->sie_ms);
            if (store && w->redis != NULL && pulse_cache_store(w->redis, &r->req->pool, r->key, &e, px_ms) != 0) {
                /* Redis is down: answered from the database all the same */
            }
            if (store)
                pulse_lcache_put(w->lcache, r->key, &e);
            rpc_flight_done(r, &e);
            rpc_send_entry(r, &e, "miss", "db");
            return;
        }
        rpc_send_body(r, body, link, "db");
        return;
    }
    case PULSE_PG_ERROR: {
        int status = pulse_problem_status_for_sqlstate(res->sqlstate);
        pulse_metrics_observe_pg_error(w->metrics, res->sqlstate);
        rpc_flight_done(r, NULL);
        if (status >= 500 && rpc_serve_stale(r))
            return;
        if (pulse_problem_detail_is_public(status)) {
            rpc_fail(r, status, res->message, NULL);
        } else {
            pulse_log_msg("error", r->request_id, "%s: SQLSTATE %s: %s", r->route->name,
                          res->sqlstate != NULL ? res->sqlstate : "-", res->message != NULL ? res->message : "-");
            rpc_fail(r, status,
                     status == 503 && res->sqlstate != NULL && strcmp(res->sqlstate, "57014") == 0
                         ? "the call took longer than its statement timeout"
                     : status == 503 ? "the database is unavailable, retry later"
                                     : "internal error; see the proxy log",
                     NULL);
        }
        return;
    }
    case PULSE_PG_UNAVAILABLE:
        pulse_metrics_observe_pg_unavailable(w->metrics);
        pulse_log_msg("warning", r->request_id, "%s: %s", r->route->name, res->message);
        rpc_flight_done(r, NULL);
        if (!rpc_serve_stale(r))
            rpc_fail(r, 503, "the database is unavailable, retry later", NULL);
        return;
    case PULSE_PG_BUSY:
        rpc_flight_done(r, NULL);
        if (!rpc_serve_stale(r))
            rpc_fail(r, 503, "the proxy is overloaded, retry later", NULL);
        return;
    }
}

static void rpc_call_database_cb(void *r)
{
    rpc_call_database(r);
}

/* step 5: on_db_result continues */
void rpc_call_database(rpc_req_t *r)
{
    pulse_worker_t *w = r->worker;
    /* a read may go to a replica; one may have to replay the call's LSN first: then this runs again, decided */
    if (pulse_replicas_route(w->replicas, &r->pick, r->conf, r->route, r->key[0] != '\0', rpc_call_database_cb, r) != 0)
        return;
    char trace_id[33];
    pulse_trace_hex(r->trace.trace_id, 16, trace_id);
    pulse_pgquery_t q = {.cls = r->route->cls,
                         .tenant = r->tenant,
                         .request_id = r->request_id,
                         .trace_id = trace_id,
                         .statement_timeout_ms = r->conf->timeout_ms[r->route->cls],
                         .stmt_name = r->call.stmt_name,
                         .sql = r->call.sql,
                         .nparams = r->call.nparams,
                         .params = r->call.params};
    r->trace.db_start_ns = pulse_trace_now_ns();
    char *tags = NULL;
    /* a write with tags reads their generations after its COMMIT, so that the next read through this proxy is fresh */
    if (w->gens != NULL && r->route->ntags != 0 && (r->route->cls == PULSE_CLASS_WRITE || r->route->cls == PULSE_CLASS_BATCH) &&
        (tags = pulse_generations_text_array((const char *const *)r->route->tags, r->route->ntags)) != NULL) {
        q.after_sql = PULSE_REPLICAS_TAG_GENERATIONS_SQL;
        q.after_param = tags;
    }
    pulse_pgpool_t *pool = pulse_replicas_pool(w->replicas, &r->pick, w->pgpool, r->route, r->key[0] != '\0', &q, &r->req->pool);
    pulse_pgstatus_t st = PULSE_PG_UNAVAILABLE;
    int rc = pool != NULL ? pulse_pgpool_submit(pool, &q, on_db_result, r, &r->job, &st) : -1;
    free(tags);
    if (rc != 0 && pulse_replicas_retry(w->replicas, &r->pick, NULL)) {
        rpc_call_database(r);
        return;
    }
    if (rc != 0) {
        if (st == PULSE_PG_UNAVAILABLE)
            pulse_metrics_observe_pg_unavailable(w->metrics);
        rpc_flight_done(r, NULL);
        if (!rpc_serve_stale(r))
            rpc_fail(r, 503,
                     st == PULSE_PG_UNAVAILABLE ? "the database is unavailable, retry later"
                                                : "the proxy is overloaded, retry later",
                     NULL);
    }
}

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
    if (i < 0) {
        *reason = "missing bearer token";
        return -1;
    }
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer "))) {
        *reason = "the Authorization scheme must be Bearer";
        return -1;
    }
    const char *tok = v.base + 7;
    size_t len = v.len - 7;
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

/* step 2, rate limits: allowed requests go on (with RateLimit-* headers when a bucket applies), the others get 429 */
static void rpc_ratelimited(rpc_req_t *r, const pulse_ratelimit_result_t *res)
{
    h2o_req_t *req = r->req;
    if (res->limited)
        pulse_ratelimit_add_headers(&req->pool, &req->res.headers, res);
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
    r->is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int readonly = r->route->cls == PULSE_CLASS_READ || r->route->cls == PULSE_CLASS_SEARCH;
    if (!(is_post || (r->is_get && readonly))) {
        rpc_fail(r, 405, readonly ? "use GET or POST" : "use POST", readonly ? "GET, POST" : "POST");
        return 0;
    }

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
