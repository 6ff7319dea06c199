/*
 * rpc.c: the HTTP side of pulse-proxy.
 *
 * A /rpc request lives in an rpc_req_t allocated from req->pool with a
 * dispose callback: h2o runs it when the request ends, also when the client
 * goes away first, and it cancels the pending database job and releases the
 * configuration and route table the request held.  The database result is
 * copied into req->pool before the response is sent.
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

typedef struct rpc_req_t {
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
} rpc_req_t;

typedef struct {
    h2o_handler_t super;
    int kind; /* HANDLER_* */
} rpc_handler_t;

enum { HANDLER_RPC, HANDLER_HEALTH, HANDLER_READY, HANDLER_NOT_FOUND };

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

static double ms_since(const struct timeval *t0)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    return (double)(now.tv_sec - t0->tv_sec) * 1000.0 + (double)(now.tv_usec - t0->tv_usec) / 1000.0;
}

static void rpc_log_access(h2o_req_t *req, const char *request_id, const struct timeval *t0, const char *endpoint,
                           const char *tenant, size_t bytes, const char *source)
{
    struct sockaddr_storage ss;
    char host[NI_MAXHOST] = "";
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (sl != 0)
        h2o_socket_getnumerichost((struct sockaddr *)&ss, sl, host);
    pulse_access_t e = {request_id, req->method.base, req->method.len, req->path.base, req->path.len, endpoint, tenant,
                        host,       req->res.status,  bytes,           ms_since(t0),   source};
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
    size_t n = send_problem(r->req, r->request_id, status, detail, r->conf->retry_after, allow);
    rpc_log_access(r->req, r->request_id, &r->t0, r->route != NULL ? r->route->name : NULL, r->authenticated ? r->tenant : NULL, n,
                   NULL);
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
    h2o_send_inline(req, body.base, body.len);
    rpc_log_access(req, r->request_id, &r->t0, r->route->name, r->tenant, body.len, source);
}

/* the Link header for a body carrying next_cursor, or NULL */
static const char *rpc_next_link(rpc_req_t *r, h2o_iovec_t body)
{
    if (r->route->cursor_arg < 0 || h2o_strstr(body.base, body.len, H2O_STRLIT("\"next_cursor\"")) == SIZE_MAX)
        return NULL;
    json_t *doc = json_loadb(body.base, body.len, 0, NULL);
    const char *link = NULL;
    json_t *cur = json_object_get(doc, "next_cursor");
    if (json_is_string(cur))
        link = pulse_router_next_link(&r->req->pool, &r->call, json_string_value(cur), json_string_length(cur));
    json_decref(doc);
    return link;
}

/* step 5 → 6 → 7 */
static void on_db_result(void *data, const pulse_pgresult_t *res)
{
    rpc_req_t *r = data;
    switch (res->status) {
    case PULSE_PG_OK: {
        h2o_iovec_t body =
            res->body != NULL ? h2o_strdup(&r->req->pool, res->body, res->body_len) : h2o_iovec_init(H2O_STRLIT("null"));
        const char *link = rpc_next_link(r, body);
        /* step 6: cache.c stores (tenant, call, body, link) here */
        rpc_send_body(r, body, link, "db");
        return;
    }
    case PULSE_PG_ERROR: {
        int status = pulse_problem_status_for_sqlstate(res->sqlstate);
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
        pulse_log_msg("warning", r->request_id, "%s: %s", r->route->name, res->message);
        rpc_fail(r, 503, "the database is unavailable, retry later", NULL);
        return;
    case PULSE_PG_BUSY:
        rpc_fail(r, 503, "the proxy is overloaded, retry later", NULL);
        return;
    }
}

/* step 5: the call through this loop's pool; on_db_result continues */
static void rpc_call_database(rpc_req_t *r)
{
    pulse_pgquery_t q = {r->tenant,       r->request_id, r->conf->timeout_ms[r->route->cls], r->call.stmt_name, r->call.sql,
                         r->call.nparams, r->call.params};
    pulse_pgstatus_t st;
    if (pulse_pgpool_submit(r->worker->pgpool, &q, on_db_result, r, &r->job, &st) != 0)
        rpc_fail(r, 503,
                 st == PULSE_PG_UNAVAILABLE ? "the database is unavailable, retry later" : "the proxy is overloaded, retry later",
                 NULL);
}

static void rpc_dispose(void *p)
{
    rpc_req_t *r = p;
    pulse_pgpool_cancel(r->job);
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

    /* step 1 */
    ssize_t hi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    pulse_rpc_request_id(hi >= 0 ? req->headers.entries[hi].value.base : NULL, hi >= 0 ? req->headers.entries[hi].value.len : 0,
                         r->request_id);
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
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int readonly = r->route->cls == PULSE_CLASS_READ || r->route->cls == PULSE_CLASS_SEARCH;
    if (!(is_post || (is_get && readonly))) {
        rpc_fail(r, 405, readonly ? "use GET or POST" : "use POST", readonly ? "GET, POST" : "POST");
        return 0;
    }

    /* step 2 */
    const char *reason = NULL;
    if (rpc_authenticate(r, &reason) != 0) {
        rpc_fail(r, 401, reason, NULL);
        return 0;
    }

    /* step 3 */
    char *err = NULL;
    pulse_router_call_init(&req->pool, &r->call, r->route);
    if (is_get) {
        if (req->query_at != SIZE_MAX &&
            pulse_router_args_from_query(&req->pool, &r->call, req->path.base + req->query_at + 1,
                                         req->path.len - req->query_at - 1, r->conf->max_args, &err) != 0) {
            rpc_fail(r, 400, err, NULL);
            return 0;
        }
    } else {
        ssize_t ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
        if (ct >= 0 &&
            h2o_strstr(req->headers.entries[ct].value.base, req->headers.entries[ct].value.len, H2O_STRLIT("json")) == SIZE_MAX) {
            rpc_fail(r, 415, "the request body must be a JSON object (application/json)", NULL);
            return 0;
        }
        if (req->entity.base != NULL && req->entity.len != 0 &&
            pulse_router_args_from_json(&req->pool, &r->call, req->entity.base, req->entity.len, r->conf->max_args, &err) != 0) {
            rpc_fail(r, 400, err, NULL);
            return 0;
        }
    }
    if (pulse_router_prepare(&req->pool, &r->call, &err) != 0) {
        rpc_fail(r, 400, err, NULL);
        return 0;
    }

    /* step 4: cache.c looks up (tenant, call) here, asynchronously: a hit answers with rpc_send_body(r, ..., "cache"),
       a miss (or Redis unavailable) continues with rpc_call_database(r) */
    rpc_call_database(r);
    return 0;
}

static int on_health(h2o_req_t *req, int ready)
{
    struct timeval t0;
    char rid[65];
    gettimeofday(&t0, NULL);
    ssize_t hi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    pulse_rpc_request_id(hi >= 0 ? req->headers.entries[hi].value.base : NULL, hi >= 0 ? req->headers.entries[hi].value.len : 0,
                         rid);
    if (ready) {
        pulse_worker_t *w = pulse_rpc_worker(req);
        int db = pulse_catalog_ready() && pulse_pgpool_alive(w->pgpool) > 0;
        if (!db) {
            pulse_config_t *conf = pulse_config_acquire();
            size_t n = send_problem(req, rid, 503, "PostgreSQL is not reachable", conf->retry_after, NULL);
            pulse_config_release(conf);
            rpc_log_access(req, rid, &t0, NULL, NULL, n, NULL);
            return 0;
        }
    }
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, rid, strlen(rid));
    static const char body[] = "{\"status\":\"ok\"}";
    req->res.content_length = sizeof(body) - 1;
    h2o_send_inline(req, body, sizeof(body) - 1);
    rpc_log_access(req, rid, &t0, NULL, NULL, sizeof(body) - 1, NULL);
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
        rpc_log_access(req, rid, &t0, NULL, NULL, n, NULL);
        return 0;
    }
    switch (h->kind) {
    case HANDLER_RPC:
        return on_rpc(req);
    case HANDLER_HEALTH:
        return on_health(req, 0);
    case HANDLER_READY:
        return on_health(req, 1);
    default: {
        struct timeval t0;
        char rid[65];
        gettimeofday(&t0, NULL);
        ssize_t hi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
        pulse_rpc_request_id(hi >= 0 ? req->headers.entries[hi].value.base : NULL, hi >= 0 ? req->headers.entries[hi].value.len : 0,
                             rid);
        size_t n = send_problem(req, rid, 404, "no such resource", 0, NULL);
        rpc_log_access(req, rid, &t0, NULL, NULL, n, NULL);
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

int pulse_rpc_register(h2o_hostconf_t *hostconf)
{
    if (register_one(hostconf, "/rpc/", HANDLER_RPC) != 0 || register_one(hostconf, "/health", HANDLER_HEALTH) != 0 ||
        register_one(hostconf, "/ready", HANDLER_READY) != 0 || register_one(hostconf, "/", HANDLER_NOT_FOUND) != 0)
        return -1;
    return 0;
}
