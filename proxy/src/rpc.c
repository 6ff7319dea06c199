/*
 * rpc.c: the HTTP side of pulse-proxy.
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
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include "auth.h"
#include "catalog.h"
#include "log.h"
#include "problem.h"
#include "router.h"
#include "rpc.h"

#define RPC_TAG_GENERATIONS_SQL "SELECT pulse.tag_generations($1::text[])::text"

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
    pulse_pgjob_t *job; /* pending database call; NULLed by the pool when it ends */
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
    int has_stale;                /* `stale` is a stale-if-error entry (in req->pool) */
    pulse_cache_entry_t stale;
    int is_get;
    const char *xcache; /* "hit", "miss", "stale" once a cached answer is sent */
    char remote[NI_MAXHOST];
    pulse_ratelimit_pending_t *rl_pending; /* a rate limit decision on its way from Redis */
    pulse_ratelimit_result_t rl;
    rpc_trace_t trace;
};

/* a background refresh of a stale entry; leads the flight of its key */
typedef struct rpc_refresh_t {
    pulse_worker_t *w;
    pulse_pgjob_t *job;
    pulse_routes_t *routes; /* held: call.route points into it */
    h2o_mem_pool_t pool;    /* the call's copy, the result */
    pulse_call_t call;
    char key[PULSE_CACHE_KEY_SIZE];
    uint64_t ttl_ms, px_ms;
} rpc_refresh_t;

typedef struct {
    h2o_handler_t super;
    int kind; /* HANDLER_* */
} rpc_handler_t;

enum { HANDLER_RPC, HANDLER_HEALTH, HANDLER_READY, HANDLER_METRICS, HANDLER_NOT_FOUND };

pulse_worker_t *pulse_rpc_worker(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(pulse_worker_t, ctx, req->conn->ctx);
}

void pulse_rpc_request_id(const char *given, size_t len, char *buf)
{
    if (given != NULL && len >= 1 && len <= 64) {
        size_t i;
        for (i = 0; i < len; i++) {
            char c = given[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
                  c == '-'))
                break;
        }
        if (i == len) {
            memcpy(buf, given, len);
            buf[len] = '\0';
            return;
        }
    }
    unsigned char rnd[16];
    static const char hex[] = "0123456789abcdef";
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        memcpy(rnd, &tv, sizeof(rnd) < sizeof(tv) ? sizeof(rnd) : sizeof(tv));
    }
    for (size_t i = 0; i < sizeof(rnd); i++) {
        buf[2 * i] = hex[rnd[i] >> 4];
        buf[2 * i + 1] = hex[rnd[i] & 15];
    }
    buf[2 * sizeof(rnd)] = '\0';
}

/* the request id of `req`: its X-Request-Id when valid, a new one otherwise (pulse_rpc_request_id) */
static void rpc_request_id_of(h2o_req_t *req, char *buf)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    pulse_rpc_request_id(i >= 0 ? req->headers.entries[i].value.base : NULL, i >= 0 ? req->headers.entries[i].value.len : 0, buf);
}

static double ms_since(const struct timeval *t0)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    return (double)(now.tv_sec - t0->tv_sec) * 1000.0 + (double)(now.tv_usec - t0->tv_usec) / 1000.0;
}

static void rpc_trace_export(rpc_req_t *r, double ms);

/* fills `host` with the client's address */
static void rpc_peer(h2o_req_t *req, char host[NI_MAXHOST])
{
    struct sockaddr_storage ss;
    host[0] = '\0';
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (sl != 0)
        h2o_socket_getnumerichost((struct sockaddr *)&ss, sl, host);
}

/* logs the request, and counts it in the loop's metrics unless it is a built-in (/health, /ready, /metrics: route NULL,
   counted 0); `route` NULL and counted: no endpoint matched; `r`: the /rpc request, whose trace ends here (NULL for
   the others) */
static void rpc_log_access(h2o_req_t *req, rpc_req_t *r, const char *request_id, const struct timeval *t0,
                           const pulse_route_t *route, int counted, const char *tenant, size_t bytes, const char *source)
{
    const char *endpoint = route != NULL ? route->name : NULL;
    double ms = ms_since(t0);
    char trace_id[33] = "";
    if (r != NULL) {
        rpc_trace_export(r, ms);
        pulse_trace_hex(r->trace.trace_id, 16, trace_id);
    }
    if (counted)
        pulse_metrics_observe_request(pulse_rpc_worker(req)->metrics, endpoint, route != NULL ? route->cls : PULSE_CLASS_READ,
                                      req->res.status, ms / 1000.0);
    char host[NI_MAXHOST];
    if (r != NULL && r->remote[0] != '\0')
        memcpy(host, r->remote, sizeof(host));
    else
        rpc_peer(req, host);
    pulse_access_t e = {.request_id = request_id,
                        .trace_id = trace_id[0] != '\0' ? trace_id : NULL,
                        .method = req->method.base,
                        .method_len = req->method.len,
                        .path = req->path.base,
                        .path_len = req->path.len,
                        .endpoint = endpoint,
                        .cls = route != NULL ? pulse_config_class_name(route->cls) : NULL,
                        .tenant = tenant,
                        .remote = host,
                        .status = req->res.status,
                        .bytes = bytes,
                        .duration_ms = ms,
                        .source = source,
                        .cache = r != NULL ? r->xcache : NULL};
    pulse_log_access(&e);
}

/* answers a problem document (Retry-After on a 503, Allow when `allow` is not NULL); returns the body's length */
static size_t send_problem(h2o_req_t *req, const char *request_id, int status, const char *detail, int retry_after,
                           const char *allow)
{
    size_t len = 0;
    char *doc = pulse_problem_render(status, detail, request_id, &len);
    h2o_iovec_t body = doc != NULL ? h2o_strdup(&req->pool, doc, len) : h2o_iovec_init(H2O_STRLIT("{}"));
    free(doc);
    req->res.status = status;
    req->res.reason = pulse_problem_title(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT(PULSE_PROBLEM_CONTENT_TYPE));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    if (request_id != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, request_id, strlen(request_id));
    if (status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer realm=\"pulse\", error=\"invalid_token\""));
    if (status == 503) {
        char ra[16];
        int n = snprintf(ra, sizeof(ra), "%d", retry_after);
        h2o_iovec_t v = h2o_strdup(&req->pool, ra, (size_t)n);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v.base, v.len);
    }
    if (allow != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    req->res.content_length = body.len;
    h2o_send_inline(req, body.base, body.len);
    return body.len;
}

static void rpc_fail(rpc_req_t *r, int status, const char *detail, const char *allow)
{
    r->trace.send_ns = pulse_trace_now_ns();
    size_t n = send_problem(r->req, r->request_id, status, detail, r->conf->retry_after, allow);
    rpc_log_access(r->req, r, r->request_id, &r->t0, r->route, 1, r->authenticated ? r->tenant : NULL, n, NULL);
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
    rpc_log_access(req, r, r->request_id, &r->t0, r->route, 1, r->tenant, body.len, source);
}

/* the Link header for a body carrying next_cursor, or NULL */
static const char *rpc_next_link(h2o_mem_pool_t *pool, const pulse_call_t *call, h2o_iovec_t body)
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

static uint64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* copies the fields of `src` (e.g. in a Redis reply or another request's pool) into `pool` */
static void rpc_entry_copy(h2o_mem_pool_t *pool, pulse_cache_entry_t *dst, const pulse_cache_entry_t *src)
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
static void rpc_send_entry(rpc_req_t *r, const pulse_cache_entry_t *e, const char *xcache, const char *source)
{
    h2o_req_t *req = r->req;
    char cc[128];
    r->xcache = xcache;
    pulse_metrics_observe_cache(r->worker->metrics, r->route->name, r->route->cls,
                                xcache[0] == 'h'   ? PULSE_METRICS_CACHE_HIT
                                : xcache[0] == 's' ? PULSE_METRICS_CACHE_STALE
                                                   : PULSE_METRICS_CACHE_MISS);
    int ccn = pulse_cache_control(cc, sizeof(cc), e, r->swr_ms, r->sie_ms, now_ms());
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
        rpc_log_access(req, r, r->request_id, &r->t0, r->route, 1, r->tenant, 0, source);
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
    rpc_log_access(req, r, r->request_id, &r->t0, r->route, 1, r->tenant, body.len, source);
}

/* the leader hands `result` (an entry, or NULL: the waiters call the database themselves) to the flight's waiters */
static void rpc_flight_done(rpc_req_t *r, const pulse_cache_entry_t *result)
{
    if (!r->leader)
        return;
    r->leader = 0;
    if (r->locked) {
        r->locked = 0;
        pulse_cache_unlock(r->worker->redis, r->key, r->request_id);
    }
    if (r->worker->flights != NULL)
        (void)pulse_cache_flight_finish(r->worker->flights, r->key, result);
}

/* answers with the stale-if-error entry when there is one; returns whether it did */
static int rpc_serve_stale(rpc_req_t *r)
{
    if (!r->has_stale)
        return 0;
    rpc_flight_done(r, NULL);
    rpc_send_entry(r, &r->stale, "stale", "stale-if-error");
    return 1;
}

/* step 5 → 6 → 7 */
static void on_db_result(void *data, const pulse_pgresult_t *res)
{
    rpc_req_t *r = data;
    pulse_worker_t *w = r->worker;
    r->trace.db_end_ns = pulse_trace_now_ns();
    if (res->sqlstate != NULL)
        snprintf(r->trace.sqlstate, sizeof(r->trace.sqlstate), "%s", res->sqlstate);
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
            if (pulse_cache_entry_init(&r->req->pool, &e, 200, h2o_iovec_init(H2O_STRLIT("application/json")), body, lv, now_ms(),
                                       r->ttl_ms) != 0)
                pulse_log_msg("warning", r->request_id, "%s: gzip failed; cached without a gzip variant", r->route->name);
            if (w->redis != NULL && pulse_cache_store(w->redis, &r->req->pool, r->key, &e,
                                                      pulse_cache_redis_ttl_ms(r->ttl_ms, r->swr_ms, r->sie_ms)) != 0) {
                /* Redis is down: answered from the database all the same */
            }
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

/* step 5: the call through this loop's pool; on_db_result continues */
static void rpc_call_database(rpc_req_t *r)
{
    pulse_worker_t *w = r->worker;
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
        q.after_sql = RPC_TAG_GENERATIONS_SQL;
        q.after_param = tags;
    }
    pulse_pgstatus_t st = PULSE_PG_UNAVAILABLE;
    int rc = w->pgpool != NULL ? pulse_pgpool_submit(w->pgpool, &q, on_db_result, r, &r->job, &st) : -1;
    free(tags);
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

/* the flight this request waited for ended: answer with the leader's entry, or call the database */
static void on_flight_done(void *data, const void *result)
{
    rpc_req_t *r = data;
    r->waiter = NULL;
    if (result == NULL) {
        rpc_call_database(r);
        return;
    }
    pulse_cache_entry_t e;
    rpc_entry_copy(&r->req->pool, &e, result);
    rpc_send_entry(r, &e, "miss", "flight");
}

/*
 * Single-flight across loops and proxies: the loop's leader of a key takes
 * the key's flight lock in Redis before calling the database.  When another
 * loop or proxy holds it, the leader polls the key every 10 ms until that
 * other call's entry appears, and hands it to its own waiters;
 * when the lock's time (the class's statement timeout and a margin) runs out
 * first, or Redis fails, it calls the database itself.
 */
static void rpc_poll(rpc_req_t *r);

static void on_poll_fetch(void *data, pulse_cache_lookup_t status, const pulse_cache_entry_t *entry)
{
    rpc_fetch_t *f = data;
    rpc_req_t *r = f->r;
    free(f);
    if (r == NULL)
        return;
    r->fetch = NULL;
    if (status == PULSE_CACHE_LOOKUP_HIT &&
        pulse_cache_classify(entry->created_at_ms, entry->ttl_ms, r->swr_ms, r->sie_ms, now_ms()) == PULSE_CACHE_FRESH) {
        pulse_cache_entry_t e;
        rpc_entry_copy(&r->req->pool, &e, entry);
        pulse_lcache_put(r->worker->lcache, r->key, &e);
        rpc_flight_done(r, &e);
        rpc_send_entry(r, &e, "miss", "flight");
        return;
    }
    if (status == PULSE_CACHE_LOOKUP_UNAVAILABLE || now_ms() >= r->poll_until_ms) {
        rpc_call_database(r);
        return;
    }
    rpc_poll(r);
}

static void on_poll_timer(h2o_timeout_entry_t *entry)
{
    rpc_req_t *r = H2O_STRUCT_FROM_MEMBER(rpc_req_t, poll, entry);
    rpc_fetch_t *f = malloc(sizeof(*f));
    if (f == NULL) {
        rpc_call_database(r);
        return;
    }
    f->r = r;
    if (pulse_cache_fetch(r->worker->redis, r->key, on_poll_fetch, f) != 0) {
        free(f);
        rpc_call_database(r);
        return;
    }
    r->fetch = f;
}

/* waits 10 ms (the worker's flight_poll timer) before the next look */
static void rpc_poll(rpc_req_t *r)
{
    r->poll.cb = on_poll_timer;
    h2o_timeout_link(r->worker->loop, &r->worker->flight_poll, &r->poll);
}

/* a pending SET NX of the flight lock; `super.r` is NULL once the request went away */
typedef struct rpc_lock_t {
    rpc_fetch_t super;
    pulse_redis_t *redis;
    char key[PULSE_CACHE_KEY_SIZE];
    char owner[65];
} rpc_lock_t;

static void on_flight_lock(void *data, int taken)
{
    rpc_lock_t *l = data;
    rpc_req_t *r = l->super.r;
    if (r == NULL) { /* the request went away: give the lock back at once so that others need not wait it out */
        if (taken == 1)
            pulse_cache_unlock(l->redis, l->key, l->owner);
        free(l);
        return;
    }
    free(l);
    r->fetch = NULL;
    if (taken != 0) {
        r->locked = taken == 1;
        rpc_call_database(r);
        return;
    }
    r->poll_until_ms = now_ms() + (uint64_t)r->conf->timeout_ms[r->route->cls] + 500;
    rpc_poll(r);
}

/* a miss: the flight's leader calls the database, the others wait for it */
static void rpc_miss(rpc_req_t *r)
{
    if (r->worker->flights != NULL) {
        int rc = pulse_cache_flight_join(r->worker->flights, r->key, on_flight_done, r, &r->waiter);
        if (rc == 0)
            return;
        r->leader = rc == 1;
    }
    if (r->leader) {
        rpc_lock_t *l = malloc(sizeof(*l));
        if (l != NULL) {
            l->super.r = r;
            l->redis = r->worker->redis;
            memcpy(l->key, r->key, sizeof(l->key));
            memcpy(l->owner, r->request_id, sizeof(l->owner));
            if (pulse_cache_lock(r->worker->redis, r->key, r->request_id, (uint64_t)r->conf->timeout_ms[r->route->cls] + 500,
                                 on_flight_lock, l) == 0) {
                r->fetch = &l->super;
                return;
            }
            free(l);
        }
    }
    rpc_call_database(r);
}

static void rpc_refresh_free(rpc_refresh_t *rf)
{
    h2o_mem_clear_pool(&rf->pool);
    pulse_router_release(rf->routes);
    free(rf);
}

static void on_refresh_result(void *data, const pulse_pgresult_t *res)
{
    rpc_refresh_t *rf = data;
    pulse_cache_entry_t e, *result = NULL;
    if (res->status == PULSE_PG_ERROR)
        pulse_metrics_observe_pg_error(rf->w->metrics, res->sqlstate);
    else if (res->status == PULSE_PG_UNAVAILABLE)
        pulse_metrics_observe_pg_unavailable(rf->w->metrics);
    if (res->status == PULSE_PG_OK) {
        h2o_iovec_t body = res->body != NULL ? h2o_strdup(&rf->pool, res->body, res->body_len) : h2o_iovec_init(H2O_STRLIT("null"));
        const char *link = rpc_next_link(&rf->pool, &rf->call, body);
        h2o_iovec_t lv = link != NULL ? h2o_iovec_init(link, strlen(link)) : h2o_iovec_init(NULL, 0);
        if (pulse_cache_entry_init(&rf->pool, &e, 200, h2o_iovec_init(H2O_STRLIT("application/json")), body, lv, now_ms(),
                                   rf->ttl_ms) != 0) {
            /* no gzip variant: still usable */
        }
        if (rf->w->redis != NULL && pulse_cache_store(rf->w->redis, &rf->pool, rf->key, &e, rf->px_ms) != 0) {
            /* Redis went down: the entry is only handed to the waiters */
        }
        pulse_lcache_put(rf->w->lcache, rf->key, &e);
        result = &e;
    }
    if (rf->w->flights != NULL)
        (void)pulse_cache_flight_finish(rf->w->flights, rf->key, result);
    rpc_refresh_free(rf);
}

static void on_refresh_join(void *data, const void *result)
{
    (void)data, (void)result; /* never runs: the refresh leaves at once when a flight is open */
}

/* starts the background refresh of a stale entry, unless a call for its key already runs */
static void rpc_refresh_start(rpc_req_t *r)
{
    pulse_worker_t *w = r->worker;
    pulse_cache_waiter_t *waiter;
    if (w->flights == NULL || w->pgpool == NULL)
        return;
    int rc = pulse_cache_flight_join(w->flights, r->key, on_refresh_join, NULL, &waiter);
    if (rc == 0)
        pulse_cache_flight_leave(waiter);
    if (rc != 1)
        return;
    rpc_refresh_t *rf = calloc(1, sizeof(*rf));
    if (rf == NULL) {
        (void)pulse_cache_flight_finish(w->flights, r->key, NULL);
        return;
    }
    rf->w = w;
    rf->routes = pulse_router_acquire();
    memcpy(rf->key, r->key, sizeof(rf->key));
    rf->ttl_ms = r->ttl_ms;
    rf->px_ms = pulse_cache_redis_ttl_ms(r->ttl_ms, r->swr_ms, r->sie_ms);
    h2o_mem_init_pool(&rf->pool);
    /* the copy of the call points into the route table the refresh holds: only when it is still the request's one (a
       reload in between: no refresh, the entry expires or the next miss replaces it) */
    if (rf->routes != r->routes) {
        (void)pulse_cache_flight_finish(w->flights, r->key, NULL);
        if (rf->routes != NULL)
            pulse_router_release(rf->routes);
        h2o_mem_clear_pool(&rf->pool);
        free(rf);
        return;
    }
    const pulse_route_t *route = r->route;
    rf->call = r->call;
    rf->call.route = route;
    rf->call.values = h2o_mem_alloc_pool(&rf->pool, sizeof(char *) * (route->nargs + 1));
    rf->call.given = h2o_mem_alloc_pool(&rf->pool, route->nargs + 1);
    for (size_t i = 0; i < route->nargs; i++) {
        rf->call.values[i] = r->call.values[i] != NULL ? h2o_strdup(&rf->pool, r->call.values[i], SIZE_MAX).base : NULL;
        rf->call.given[i] = r->call.given[i];
    }
    pulse_pgquery_t q = {.cls = r->route->cls,
                         .tenant = r->tenant,
                         .request_id = r->request_id,
                         .statement_timeout_ms = r->conf->timeout_ms[r->route->cls],
                         .stmt_name = r->call.stmt_name,
                         .sql = r->call.sql,
                         .nparams = r->call.nparams,
                         .params = r->call.params};
    pulse_pgstatus_t st;
    if (pulse_pgpool_submit(w->pgpool, &q, on_refresh_result, rf, &rf->job, &st) != 0) {
        (void)pulse_cache_flight_finish(w->flights, rf->key, NULL);
        rpc_refresh_free(rf);
    }
}

/* step 4 continued: the answer of Redis */
static void on_cache_fetch(void *data, pulse_cache_lookup_t status, const pulse_cache_entry_t *entry)
{
    rpc_fetch_t *f = data;
    rpc_req_t *r = f->r;
    free(f);
    if (r == NULL) /* the request went away */
        return;
    r->fetch = NULL;
    r->trace.cache_end_ns = pulse_trace_now_ns();
    if (status == PULSE_CACHE_LOOKUP_HIT) {
        pulse_cache_entry_t e;
        switch (pulse_cache_classify(entry->created_at_ms, entry->ttl_ms, r->swr_ms, r->sie_ms, now_ms())) {
        case PULSE_CACHE_FRESH:
            rpc_entry_copy(&r->req->pool, &e, entry);
            pulse_lcache_put(r->worker->lcache, r->key, &e);
            rpc_send_entry(r, &e, "hit", "cache");
            return;
        case PULSE_CACHE_STALE:
            rpc_entry_copy(&r->req->pool, &e, entry);
            rpc_refresh_start(r);
            rpc_send_entry(r, &e, "stale", "cache-stale");
            return;
        case PULSE_CACHE_STALE_IF_ERROR:
            rpc_entry_copy(&r->req->pool, &r->stale, entry);
            r->has_stale = 1;
            break;
        case PULSE_CACHE_EXPIRED:
            break;
        }
    }
    rpc_miss(r);
}

/* step 4: the key of a cacheable call and its lookup; returns 0 when the lookup was sent (on_cache_fetch continues), 2
   when the local cache answered, 1 for a miss without a lookup (Redis is down), -1 for a call that is not cached */
static int rpc_cache_lookup(rpc_req_t *r)
{
    pulse_worker_t *w = r->worker;
    const pulse_route_t *rt = r->route;
    if (w->redis == NULL || rt->ttl_ms <= 0 || !(rt->cls == PULSE_CLASS_READ || rt->cls == PULSE_CLASS_SEARCH))
        return -1;
    h2o_mem_pool_t *pool = &r->req->pool;
    pulse_cache_arg_t *args = h2o_mem_alloc_pool(pool, sizeof(*args) * (rt->nargs + 1));
    uint64_t *gens = h2o_mem_alloc_pool(pool, sizeof(*gens) * (rt->ntags + 1));
    size_t nargs = 0;
    for (size_t i = 0; i < rt->nargs; i++) {
        if (!r->call.given[i])
            continue;
        const char *v = r->call.values[i];
        args[nargs++] = (pulse_cache_arg_t){rt->arg_names[i], v, v != NULL ? strlen(v) : 0};
    }
    pulse_generations_get_many(w->gens, (const char *const *)rt->tags, rt->ntags, gens);
    /* the function's identity too: an endpoint moved to another function does not serve the old one's entries */
    size_t eplen = strlen(rt->name) + strlen(rt->schema) + strlen(rt->function) + 3;
    char *ep = h2o_mem_alloc_pool(pool, eplen);
    snprintf(ep, eplen, "%s=%s.%s", rt->name, rt->schema, rt->function);
    if (pulse_cache_key(r->key, r->tenant, ep, args, nargs, (const char *const *)rt->tags, gens, rt->ntags) < 0) {
        r->key[0] = '\0';
        return -1;
    }
    r->ttl_ms = (uint64_t)rt->ttl_ms;
    r->swr_ms = (uint64_t)r->conf->swr_ms[rt->cls];
    r->sie_ms = (uint64_t)r->conf->sie_ms[rt->cls];
    const pulse_cache_entry_t *local = pulse_lcache_get(w->lcache, r->key, now_ms());
    if (local != NULL) {
        pulse_cache_entry_t e;
        rpc_entry_copy(pool, &e, local);
        rpc_send_entry(r, &e, "hit", "local");
        return 2;
    }
    rpc_fetch_t *f = malloc(sizeof(*f));
    if (f == NULL)
        return 1;
    f->r = r;
    r->trace.cache_start_ns = pulse_trace_now_ns();
    if (pulse_cache_fetch(w->redis, r->key, on_cache_fetch, f) != 0) {
        r->trace.cache_end_ns = pulse_trace_now_ns();
        free(f);
        return 1; /* Redis is down: a miss */
    }
    r->fetch = f;
    return 0;
}

static void rpc_dispose(void *p)
{
    rpc_req_t *r = p;
    pulse_pgpool_cancel(r->job);
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

/* the trace of a request: the incoming traceparent's trace, or a new one; the head sampling decision */
static void rpc_trace_start(rpc_req_t *r)
{
    h2o_req_t *req = r->req;
    rpc_trace_t *t = &r->trace;
    t->start_ns = (uint64_t)r->t0.tv_sec * 1000000000u + (uint64_t)r->t0.tv_usec * 1000u;
    pulse_trace_new_ids(t->trace_id, t->span_id);
    if (r->worker->tracer == NULL)
        return;
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("traceparent"), -1);
    pulse_trace_ctx_t ctx;
    if (i >= 0 && pulse_trace_parse_traceparent(req->headers.entries[i].value.base, req->headers.entries[i].value.len, &ctx) == 0) {
        memcpy(t->trace_id, ctx.trace_id, sizeof(t->trace_id));
        memcpy(t->parent_id, ctx.span_id, sizeof(t->parent_id));
        t->has_parent = 1;
        t->sampled = (ctx.flags & PULSE_TRACE_FLAG_SAMPLED) != 0;
    } else {
        t->sampled = pulse_trace_sample(t->trace_id, (uint32_t)r->conf->trace_sample_ppm);
    }
}

/* the request ended after `ms`: its spans go to the exporter when it was sampled, failed (5xx) or slow */
static void rpc_trace_export(rpc_req_t *r, double ms)
{
    pulse_tracer_t *tracer = r->worker->tracer;
    const rpc_trace_t *t = &r->trace;
    if (tracer == NULL)
        return;
    int status = r->req->res.status;
    int slow_ms = r->conf->trace_slow_ms != 0 ? r->conf->trace_slow_ms
                  : r->route != NULL          ? r->conf->slo_p99_ms[r->route->cls]
                                              : r->conf->slo_p99_ms[PULSE_CLASS_READ];
    if (!t->sampled && status < 500 && ms < (double)slow_ms)
        return;
    static __thread pulse_span_t spans[4];
    size_t n = 0;
    uint64_t end_ns = t->start_ns + (uint64_t)(ms * 1e6);
    pulse_span_t *root = &spans[n++];
    char name[PULSE_SPAN_NAME_MAX];
    snprintf(name, sizeof(name), "%.*s /rpc/%s", (int)r->req->method.len, r->req->method.base,
             r->route != NULL ? r->route->name : "{unknown}");
    pulse_span_start(root, name, PULSE_SPAN_SERVER, t->trace_id, t->has_parent ? t->parent_id : NULL, t->start_ns);
    memcpy(root->span_id, t->span_id, sizeof(root->span_id));
    pulse_span_set_strn(root, "http.request.method", r->req->method.base, r->req->method.len);
    pulse_span_set_strn(root, "url.path", r->req->path.base, r->req->query_at != SIZE_MAX ? r->req->query_at : r->req->path.len);
    pulse_span_set_int(root, "http.response.status_code", status);
    pulse_span_set_str(root, "client.address", r->remote);
    pulse_span_set_str(root, "pulse.request_id", r->request_id);
    if (r->route != NULL) {
        pulse_span_set_str(root, "pulse.endpoint", r->route->name);
        pulse_span_set_str(root, "pulse.class", pulse_config_class_name(r->route->cls));
    }
    if (r->authenticated)
        pulse_span_set_str(root, "pulse.tenant", r->tenant);
    if (r->xcache != NULL)
        pulse_span_set_str(root, "pulse.cache", r->xcache);
    pulse_span_set_status(root, status >= 500 ? PULSE_SPAN_STATUS_ERROR : PULSE_SPAN_STATUS_UNSET,
                          status >= 500 ? pulse_problem_title(status) : NULL);
    pulse_span_end(root, end_ns);
    if (t->cache_start_ns != 0) {
        pulse_span_t *s = &spans[n++];
        pulse_span_start(s, "cache lookup", PULSE_SPAN_CLIENT, t->trace_id, t->span_id, t->cache_start_ns);
        pulse_span_set_str(s, "db.system", "redis");
        pulse_span_set_str(s, "pulse.cache", r->xcache != NULL && t->db_start_ns == 0 ? r->xcache : "miss");
        pulse_span_end(s, t->cache_end_ns != 0 ? t->cache_end_ns : end_ns);
    }
    if (t->db_start_ns != 0) {
        pulse_span_t *s = &spans[n++];
        pulse_span_start(s, "database call", PULSE_SPAN_CLIENT, t->trace_id, t->span_id, t->db_start_ns);
        pulse_span_set_str(s, "db.system", "postgresql");
        pulse_span_set_str(s, "db.statement", r->call.sql != NULL ? r->call.sql : "");
        pulse_span_set_str(s, "pulse.fingerprint", r->call.stmt_name + 6); /* "pulse_" + the statement's hash */
        if (t->sqlstate[0] != '\0') {
            pulse_span_set_str(s, "db.response.status_code", t->sqlstate);
            pulse_span_set_status(s, PULSE_SPAN_STATUS_ERROR, t->sqlstate);
        }
        pulse_span_end(s, t->db_end_ns != 0 ? t->db_end_ns : end_ns);
    }
    uint64_t ser_start = t->db_end_ns != 0 ? t->db_end_ns : t->cache_end_ns;
    if (ser_start != 0 && t->send_ns >= ser_start) {
        pulse_span_t *s = &spans[n++];
        pulse_span_start(s, "serialize response", PULSE_SPAN_INTERNAL, t->trace_id, t->span_id, ser_start);
        pulse_span_end(s, t->send_ns);
    }
    (void)pulse_tracer_submit(tracer, spans, n);
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

static int on_rpc(h2o_req_t *req)
{
    pulse_worker_t *w = pulse_rpc_worker(req);
    rpc_req_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), rpc_dispose);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->worker = w;
    w->inflight++;
    gettimeofday(&r->t0, NULL);
    r->conf = pulse_config_acquire();
    r->routes = pulse_router_acquire();
    pulse_pgpool_set_queue_limit(w->pgpool, r->conf->queue_limit);
    rpc_peer(req, r->remote);
    rpc_trace_start(r);

    /* step 1 */
    rpc_request_id_of(req, r->request_id);
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

    /* step 4: a cacheable call is looked up in Redis (on_cache_fetch continues); when Redis cannot be asked, it is a miss */
    switch (rpc_cache_lookup(r)) {
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

static int on_health(h2o_req_t *req, int ready)
{
    struct timeval t0;
    char rid[65];
    gettimeofday(&t0, NULL);
    rpc_request_id_of(req, rid);
    if (ready) {
        pulse_worker_t *w = pulse_rpc_worker(req);
        int db = pulse_catalog_ready() && pulse_pgpool_alive(w->pgpool) > 0;
        if (!db) {
            pulse_config_t *conf = pulse_config_acquire();
            size_t n = send_problem(req, rid, 503, "PostgreSQL is not reachable", conf->retry_after, NULL);
            pulse_config_release(conf);
            rpc_log_access(req, NULL, rid, &t0, NULL, 0, NULL, n, NULL);
            return 0;
        }
    }
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, rid, strlen(rid));
    char body[96];
    int n;
    if (ready) {
        /* Redis down is degraded (slower, answered by the database), not unready */
        pulse_redis_t *redis = pulse_rpc_worker(req)->redis;
        int up = redis == NULL || pulse_redis_is_up(redis);
        n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"postgresql\":\"up\",\"redis\":\"%s\"}", up ? "ok" : "degraded",
                     redis == NULL ? "off" : pulse_redis_state_name(pulse_redis_state(redis)));
    } else {
        n = snprintf(body, sizeof(body), "{\"status\":\"ok\"}");
    }
    h2o_iovec_t b = h2o_strdup(&req->pool, body, (size_t)n);
    req->res.content_length = b.len;
    h2o_send_inline(req, b.base, b.len);
    rpc_log_access(req, NULL, rid, &t0, NULL, 0, NULL, b.len, NULL);
    return 0;
}

/* GET /metrics: this loop's pool and Redis gauges are synced first (the other loops sync theirs every turn) */
static int on_metrics(h2o_req_t *req)
{
    pulse_worker_t *w = pulse_rpc_worker(req);
    struct timeval t0;
    char rid[65];
    gettimeofday(&t0, NULL);
    rpc_request_id_of(req, rid);
    pulse_metrics_sync(w->metrics, w->pgpool, w->redis, w->lcache);
    size_t len;
    char *text = pulse_metrics_render(&len);
    if (text == NULL) {
        size_t n = send_problem(req, rid, 500, "out of memory", 0, NULL);
        rpc_log_access(req, NULL, rid, &t0, NULL, 0, NULL, n, NULL);
        return 0;
    }
    h2o_iovec_t body = h2o_strdup(&req->pool, text, len);
    free(text);
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, rid, strlen(rid));
    req->res.content_length = body.len;
    h2o_send_inline(req, body.base, body.len);
    rpc_log_access(req, NULL, rid, &t0, NULL, 0, NULL, body.len, NULL);
    return 0;
}

static size_t header_bytes(h2o_req_t *req)
{
    size_t n = 0;
    for (size_t i = 0; i != req->headers.size; i++)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len;
    return n;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    rpc_handler_t *h = (rpc_handler_t *)self;
    pulse_config_t *conf = pulse_config_acquire();
    size_t limit = (size_t)conf->max_header_bytes;
    pulse_config_release(conf);
    if (header_bytes(req) > limit) {
        struct timeval t0;
        char rid[65];
        gettimeofday(&t0, NULL);
        pulse_rpc_request_id(NULL, 0, rid);
        size_t n = send_problem(req, rid, 431, "the request headers are too large", 0, NULL);
        rpc_log_access(req, NULL, rid, &t0, NULL, 1, NULL, n, NULL);
        return 0;
    }
    switch (h->kind) {
    case HANDLER_RPC:
        return on_rpc(req);
    case HANDLER_HEALTH:
        return on_health(req, 0);
    case HANDLER_READY:
        return on_health(req, 1);
    case HANDLER_METRICS:
        return on_metrics(req);
    default: {
        struct timeval t0;
        char rid[65];
        gettimeofday(&t0, NULL);
        rpc_request_id_of(req, rid);
        size_t n = send_problem(req, rid, 404, "no such resource", 0, NULL);
        rpc_log_access(req, NULL, rid, &t0, NULL, 1, NULL, n, NULL);
        return 0;
    }
    }
}

static int register_one(h2o_hostconf_t *hostconf, const char *path, int kind)
{
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, path, 0);
    rpc_handler_t *h = (rpc_handler_t *)h2o_create_handler(pathconf, sizeof(*h));
    if (h == NULL)
        return -1;
    h->super.on_req = on_req;
    h->kind = kind;
    return 0;
}

/*
 * Errors h2o answers by itself before a handler runs: while reading a request
 * body it sends a plain-text 413 (body over body_limit) or 400 (broken
 * chunked encoding or content-length), and 417 for an unknown Expect.  Such a
 * request is bound to the host's fallback path, where this filter rewrites
 * the response into a problem document (h2o's text becomes its detail), with
 * a request id, and logs and counts it like any other answer.  (Errors of the
 * request line and headers, before a request exists, are written to the
 * socket by h2o directly and stay plain text.)
 */
typedef struct {
    h2o_ostream_t super;
    struct timeval t0;
} problem_ostream_t;

static void problem_do_send(h2o_ostream_t *_self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    problem_ostream_t *self = (problem_ostream_t *)_self;
    if (h2o_send_state_is_in_progress(state)) { /* h2o_send_inline sends once, final; keep going if that ever changes */
        h2o_ostream_send_next(&self->super, req, NULL, 0, state);
        return;
    }
    char detail[256] = "";
    size_t n = 0;
    for (size_t i = 0; i < bufcnt && n < sizeof(detail) - 1; i++) {
        size_t k = bufs[i].len < sizeof(detail) - 1 - n ? bufs[i].len : sizeof(detail) - 1 - n;
        memcpy(detail + n, bufs[i].base, k);
        n += k;
    }
    detail[n] = '\0';
    detail[strcspn(detail, "\r\n")] = '\0';
    char rid[65];
    rpc_request_id_of(req, rid);
    if (req->res.status == 413) {
        pulse_config_t *conf = pulse_config_acquire();
        snprintf(detail, sizeof(detail), "the request body is larger than %d bytes", conf->body_limit);
        pulse_config_release(conf);
    }
    size_t len = 0;
    char *doc = pulse_problem_render(req->res.status, detail[0] != '\0' ? detail : NULL, rid, &len);
    h2o_iovec_t body = doc != NULL ? h2o_strdup(&req->pool, doc, len) : h2o_iovec_init(H2O_STRLIT("{}"));
    free(doc);
    memset(&req->res.headers, 0, sizeof(req->res.headers));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT(PULSE_PROBLEM_CONTENT_TYPE));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_iovec_t rv = h2o_strdup(&req->pool, rid, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, rv.base, rv.len);
    req->res.reason = pulse_problem_title(req->res.status);
    req->res.content_length = body.len;
    rpc_log_access(req, NULL, rid, &self->t0, NULL, 1, NULL, body.len, NULL);
    h2o_ostream_send_next(&self->super, req, &body, 1, state);
}

static void problem_on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    if (req->res.status >= 400) {
        problem_ostream_t *o = (problem_ostream_t *)h2o_add_ostream(req, sizeof(*o), slot);
        o->super.do_send = problem_do_send;
        gettimeofday(&o->t0, NULL);
        slot = &o->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

int pulse_rpc_register(h2o_hostconf_t *hostconf)
{
    h2o_filter_t *f = h2o_create_filter(&hostconf->fallback_path, sizeof(*f));
    if (f == NULL)
        return -1;
    f->on_setup_ostream = problem_on_setup_ostream;
    if (register_one(hostconf, "/rpc/", HANDLER_RPC) != 0 || register_one(hostconf, "/health", HANDLER_HEALTH) != 0 ||
        register_one(hostconf, "/ready", HANDLER_READY) != 0 || register_one(hostconf, "/metrics", HANDLER_METRICS) != 0 ||
        register_one(hostconf, "/", HANDLER_NOT_FOUND) != 0)
        return -1;
    return 0;
}
