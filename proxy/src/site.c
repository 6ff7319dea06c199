/*
 * site.c: the paths pulse-proxy answers and what is not an endpoint call:
 * /rpc/<name> goes to rpc.c, /health and /ready (liveness, readiness),
 * /metrics (Prometheus), /openapi.json and /docs (openapi.c), OPTIONS
 * (cors.c, which also adds the CORS headers to every answer), a problem
 * document for any other path, the header
 * size limit before any of them, and a filter that turns the errors h2o
 * answers by itself into problem documents.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "catalog.h"
#include "cors.h"
#include "framing.h"
#include "guard.h"
#include "openapi.h"
#include "problem.h"
#include "respond.h"
#include "rpc.h"
#include "site.h"
#include "worker.h"

enum { HANDLER_RPC, HANDLER_HEALTH, HANDLER_READY, HANDLER_METRICS, HANDLER_OPENAPI, HANDLER_DOCS, HANDLER_NOT_FOUND };

/* logs an answer that is not an endpoint call; `counted`: in the request metrics (not for /health, /ready, /metrics) */
static void site_log(h2o_req_t *req, const char *rid, const struct timeval *t0, int counted, size_t bytes)
{
    pulse_respond_log_t e = {.request_id = rid, .t0 = t0, .counted = counted, .bytes = bytes};
    (void)pulse_respond_log(req, &e);
}

static int on_health(h2o_req_t *req, int ready)
{
    struct timeval t0;
    char rid[65];
    gettimeofday(&t0, NULL);
    pulse_respond_request_id_of(req, rid);
    if (ready) {
        pulse_worker_t *w = pulse_worker_of(req);
        int db = pulse_catalog_ready() && pulse_pgpool_alive(w->pgpool) > 0;
        if (!db) {
            pulse_config_t *conf = pulse_config_acquire();
            size_t n = pulse_respond_problem(req, rid, 503, "PostgreSQL is not reachable", conf->retry_after, NULL);
            pulse_config_release(conf);
            site_log(req, rid, &t0, 0, n);
            return 0;
        }
    }
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, rid, strlen(rid));
    char body[192 + PULSE_CATALOG_PROBLEM_MAX + 16 + PULSE_REPLICAS_MAX * 160];
    int n;
    if (ready) {
        /* Redis down, a replica down, or an invalidation channel that cannot vouch for the cache, is degraded (slower,
           answered by the database or the primary), not unready */
        pulse_redis_t *redis = pulse_worker_of(req)->redis;
        pulse_catalog_channel_state_t ch = pulse_catalog_channel_state();
        char reps[PULSE_REPLICAS_MAX * 160];
        int reps_up;
        pulse_replicas_ready_json(pulse_replicas_of(pulse_worker_of(req)->replicas), reps, sizeof(reps), &reps_up);
        /* routes the database could not give (the extension missing or too old) is degraded too: said in "catalog" */
        char problem[PULSE_CATALOG_PROBLEM_MAX], catalog[PULSE_CATALOG_PROBLEM_MAX + 16] = "";
        int bad_catalog = pulse_catalog_problem(problem, sizeof(problem));
        if (bad_catalog)
            snprintf(catalog, sizeof(catalog), ",\"catalog\":\"%s\"", problem);
        int up = (redis == NULL || pulse_redis_is_up(redis)) && reps_up && !bad_catalog &&
                 (ch == PULSE_CATALOG_CHANNEL_OFF || ch == PULSE_CATALOG_CHANNEL_VERIFIED || ch == PULSE_CATALOG_CHANNEL_UNCHECKED);
        n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"postgresql\":\"up\",\"redis\":\"%s\",\"invalidation\":\"%s\"%s%s}",
                     up ? "ok" : "degraded", redis == NULL ? "off" : pulse_redis_state_name(pulse_redis_state(redis)),
                     pulse_catalog_channel_state_name(ch), reps, catalog);
    } else {
        n = snprintf(body, sizeof(body), "{\"status\":\"ok\"}");
    }
    h2o_iovec_t b = h2o_strdup(&req->pool, body, (size_t)n);
    req->res.content_length = b.len;
    h2o_send_inline(req, b.base, b.len);
    site_log(req, rid, &t0, 0, b.len);
    return 0;
}

/* GET /metrics: this loop's pool and Redis gauges are synced first (the other loops sync theirs every turn) */
static int on_metrics(h2o_req_t *req)
{
    pulse_worker_t *w = pulse_worker_of(req);
    struct timeval t0;
    char rid[65];
    gettimeofday(&t0, NULL);
    pulse_respond_request_id_of(req, rid);
    pulse_metrics_sync(w->metrics, w->pgpool, w->redis, w->lcache);
    pulse_metrics_sync_replicas(w->metrics, w->replicas);
    size_t len;
    pulse_catalog_channel_stats_t channel;
    pulse_catalog_channel_stats(&channel);
    char *text = pulse_metrics_render(&channel, &len);
    if (text == NULL) {
        size_t n = pulse_respond_problem(req, rid, 500, "out of memory", 0, NULL);
        site_log(req, rid, &t0, 0, n);
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
    site_log(req, rid, &t0, 0, body.len);
    return 0;
}

/* bytes of the header lines as HTTP/1 sends them ("name: value" CRLF), so that max_header_bytes means the same over HTTP/2 */
static size_t header_bytes(h2o_req_t *req)
{
    size_t n = 0;
    for (size_t i = 0; i != req->headers.size; i++)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return n;
}

/* a header the request carries more than once that it may carry once: h2o_find_header would take the first, a front
   proxy may have looked at another */
static const char *repeated_header(h2o_req_t *req)
{
    static const char *const once[] = {"authorization", "content-type", "x-request-id"};
    for (size_t k = 0; k < sizeof(once) / sizeof(once[0]); k++) {
        ssize_t i = h2o_find_header_by_str(&req->headers, once[k], strlen(once[k]), -1);
        if (i >= 0 && h2o_find_header_by_str(&req->headers, once[k], strlen(once[k]), i) >= 0)
            return once[k];
    }
    return NULL;
}

/* answers a request refused before routing */
static int site_refuse(h2o_req_t *req, int status, const char *detail, const char *allow)
{
    struct timeval t0;
    char rid[65];
    gettimeofday(&t0, NULL);
    pulse_respond_request_id_of(req, rid);
    size_t n = pulse_respond_problem(req, rid, status, detail, 0, allow);
    site_log(req, rid, &t0, 1, n);
    return 0;
}

/* the handler for a path (without its query) exactly as received */
static int site_route(const char *path, size_t len)
{
    if (len > 5 && memcmp(path, "/rpc/", 5) == 0)
        return HANDLER_RPC;
    if (h2o_memis(path, len, H2O_STRLIT("/health")))
        return HANDLER_HEALTH;
    if (h2o_memis(path, len, H2O_STRLIT("/ready")))
        return HANDLER_READY;
    if (h2o_memis(path, len, H2O_STRLIT("/metrics")))
        return HANDLER_METRICS;
    if (h2o_memis(path, len, H2O_STRLIT("/openapi.json")))
        return HANDLER_OPENAPI;
    if (h2o_memis(path, len, H2O_STRLIT("/docs")) || h2o_memis(path, len, H2O_STRLIT("/docs/redoc.standalone.js")))
        return HANDLER_DOCS;
    return HANDLER_NOT_FOUND;
}

/*
 * Every request comes here (the one handler, on "/"), HTTP/1 and HTTP/2 alike. It is routed by its path exactly as
 * received: h2o routes by req->path_normalized, in which "/rpc/..%2fmetrics" is "/metrics", so a path that a front
 * proxy and the proxy could read differently is refused before routing (pulse_framing_check_target). So are headers
 * repeated that must appear once, and header blocks over the limits (for HTTP/1 the guard checked them before h2o
 * parsed the request; HTTP/2 is checked here).
 */
static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    const char *detail;
    if (pulse_framing_check_target(req->path.base, req->path.len, &detail) != 0)
        return site_refuse(req, 400, detail, NULL);
    size_t path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len, req->path.base, path_len))
        return site_refuse(req, 400, "the path is not in normal form", NULL); /* cannot happen after the check above */
    pulse_config_t *conf = pulse_config_acquire();
    size_t limit = (size_t)conf->max_header_bytes;
    pulse_config_release(conf);
    if (req->headers.size > PULSE_FRAMING_MAX_HEADERS)
        return site_refuse(req, 431, "the request has more than 100 header fields", NULL);
    if (header_bytes(req) > limit)
        return site_refuse(req, 431, "the request headers are too large", NULL);
    const char *rep = repeated_header(req);
    if (rep != NULL) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the %s header must not be repeated", rep);
        return site_refuse(req, 400, msg, NULL);
    }
    int kind = site_route(req->path.base, path_len);
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS"))) /* CORS preflights, and plain OPTIONS */
        return pulse_cors_options(req, kind == HANDLER_RPC         ? pulse_rpc_methods(req->path.base + 5, path_len - 5)
                                       : kind == HANDLER_NOT_FOUND ? NULL
                                                                   : "GET, HEAD");
    if (kind != HANDLER_RPC && kind != HANDLER_NOT_FOUND && !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return site_refuse(req, 405, "use GET or HEAD", "GET, HEAD");
    switch (kind) {
    case HANDLER_RPC:
        return pulse_rpc_handle(req);
    case HANDLER_HEALTH:
        return on_health(req, 0);
    case HANDLER_READY:
        return on_health(req, 1);
    case HANDLER_METRICS:
        return on_metrics(req);
    case HANDLER_OPENAPI:
        return pulse_openapi_serve(req);
    case HANDLER_DOCS:
        return pulse_openapi_docs(req, req->path.base, path_len);
    default:
        return site_refuse(req, 404, "no such resource", NULL);
    }
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
    pulse_respond_request_id_of(req, rid);
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
    site_log(req, rid, &self->t0, 1, body.len);
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

int pulse_site_register(h2o_hostconf_t *hostconf)
{
    h2o_pathconf_t *root = h2o_config_register_path(hostconf, "/", 0);
    if (pulse_guard_register_filter(root) != 0 || pulse_guard_register_filter(&hostconf->fallback_path) != 0 ||
        pulse_cors_register(root) != 0)
        return -1;
    h2o_filter_t *f = h2o_create_filter(&hostconf->fallback_path, sizeof(*f));
    h2o_handler_t *h = h2o_create_handler(root, sizeof(*h));
    if (f == NULL || h == NULL)
        return -1;
    f->on_setup_ostream = problem_on_setup_ostream;
    h->on_req = on_req;
    return 0;
}
