/*
 * rpc_answer.c: how a /rpc call is answered and logged: the function's JSON
 * as the database produced it, a cached entry (its representation, ETag,
 * Cache-Control, 304), a problem document; and the copy of an entry into
 * the request's pool that every answer from the cache starts with.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "problem.h"
#include "respond.h"
#include "rpc_int.h"

uint64_t rpc_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

void rpc_log(rpc_req_t *r, size_t bytes, const char *source)
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
void rpc_send_body(rpc_req_t *r, h2o_iovec_t body, const char *link, const char *source)
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
    dst->keyed = src->keyed.len != 0 ? h2o_strdup(pool, src->keyed.base, src->keyed.len) : h2o_iovec_init(NULL, 0);
    dst->content_type = h2o_strdup(pool, src->content_type.base, src->content_type.len);
    dst->etag = h2o_strdup(pool, src->etag.base, src->etag.len);
    dst->link = src->link.len != 0 ? h2o_strdup(pool, src->link.base, src->link.len) : h2o_iovec_init(NULL, 0);
    dst->body = h2o_strdup(pool, src->body.base, src->body.len);
    dst->gzip = src->gzip.len != 0 ? h2o_strdup(pool, src->gzip.base, src->gzip.len) : h2o_iovec_init(NULL, 0);
}

/* step 7 of a cached call: `e` (in req->pool) with ETag, Cache-Control, X-Cache, Vary; the representation (gzip variant
   or identity, each with its own ETag) pulse_cache_select picks, or 304 when If-None-Match matches it */
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
    ssize_t ae = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, -1),
            inm = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    pulse_cache_repr_t rep;
    pulse_cache_select(&req->pool, e, ae >= 0 ? req->headers.entries[ae].value.base : NULL,
                       ae >= 0 ? req->headers.entries[ae].value.len : 0, inm >= 0 ? req->headers.entries[inm].value.base : NULL,
                       inm >= 0 ? req->headers.entries[inm].value.len : 0, &rep);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, r->request_id, strlen(r->request_id));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, rep.etag.base, rep.etag.len);
    if (ccn > 0) {
        h2o_iovec_t v = h2o_strdup(&req->pool, cc, (size_t)ccn);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, v.base, v.len);
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, xcache, strlen(xcache));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Encoding"));
    if (e->link.len != 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LINK, NULL, e->link.base, e->link.len);
    if (rep.not_modified) {
        req->res.status = 304;
        req->res.reason = "Not Modified";
        r->trace.send_ns = pulse_trace_now_ns();
        h2o_send_inline(req, NULL, 0);
        rpc_log(r, 0, source);
        return;
    }
    h2o_iovec_t body = rep.body;
    if (rep.gzip)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, H2O_STRLIT("gzip"));
    req->res.status = e->status;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, e->content_type.base, e->content_type.len);
    req->res.content_length = body.len;
    r->trace.send_ns = pulse_trace_now_ns();
    h2o_send_inline(req, body.base, body.len);
    rpc_log(r, body.len, source);
}
