/*
 * live_stream.c: the text/event-stream requests of live endpoints (live.h;
 * WHATWG HTML 9.2, server-sent events): which requests are streams, their
 * token from the query (an EventSource cannot send headers), the response
 * that starts with the first result, the events, heartbeats, the token's
 * expiry, and conflation for slow consumers.
 *
 * A stream has at most one write in flight (h2o calls `proceed` when it is
 * out) and holds at most two events: the one being written and the latest
 * one not written yet, which a newer one replaces (conflated).  Its memory
 * is therefore bounded whatever the client's speed; a client that went away
 * is found at the next write (HTTP/1 does not read while it answers), a
 * heartbeat at the latest.  Everything here runs on the stream's loop.
 *
 * The response starts with the first result: a stream whose first refresh
 * fails with a 4xx is answered with the problem document of a GET (400,
 * 403, ...), so an EventSource does not retry what cannot work; a 5xx
 * (database down, load shed) is retried by the key's owner, and the stream
 * is answered 503 only when no result came within request_timeout_ms.  Once
 * started, a later 4xx ends the stream with an `error` event
 * (problem+json), a 5xx is retried and the stream keeps its last result.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "live_int.h"
#include "log.h"
#include "problem.h"

static const char heartbeat[] = ": heartbeat\n\n";

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- the request side (rpc.c's steps 1 and 4) --------------------------------------------------------------------- */

/* whether an Accept field value lists text/event-stream (parameters and q-values aside) */
static int accepts_event_stream(h2o_iovec_t v)
{
    static const char want[] = "text/event-stream";
    const char *p = v.base, *end = v.base + v.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *range = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - range) == sizeof(want) - 1 && strncasecmp(range, want, sizeof(want) - 1) == 0)
            return 1;
        while (p < end && *p != ',')
            p++;
    }
    return 0;
}

int rpc_live_accept(rpc_req_t *r, int readonly)
{
    h2o_req_t *req = r->req;
    int live = 0;
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, i)) >= 0;)
        live |= accepts_event_stream(req->headers.entries[i].value);
    if (!live)
        return 0;
    if (!r->is_get || !readonly) { /* a write cannot be a stream, nor can a POST: the client would wait for events */
        rpc_fail(r, 406, "a live stream (Accept: text/event-stream) is a GET of a read or search endpoint", NULL);
        return -1;
    }
    r->live = 1; /* with live_max_streams 0, rpc_live_open refuses it */
    if (req->query_at == SIZE_MAX)
        return 0;
    /* the query without its access_token (RFC 6750 2.3), which becomes the stream's token */
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    char *rest = h2o_mem_alloc_pool(&req->pool, (size_t)(end - q) + 1);
    size_t n = 0;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pend = amp != NULL ? amp : end;
        if ((size_t)(pend - q) >= 13 && memcmp(q, "access_token=", 13) == 0) {
            h2o_iovec_t tok = h2o_iovec_init(q + 13, (size_t)(pend - q) - 13);
            if (r->live_token.base != NULL || tok.len == 0 || memchr(tok.base, '%', tok.len) != NULL ||
                memchr(tok.base, '+', tok.len) != NULL) {
                rpc_fail(r, 400, "access_token must appear once, as a JWT (no percent-encoding)", NULL);
                return -1;
            }
            r->live_token = tok;
        } else if (pend > q) {
            if (n != 0)
                rest[n++] = '&';
            memcpy(rest + n, q, (size_t)(pend - q));
            n += (size_t)(pend - q);
        }
        q = amp != NULL ? amp + 1 : end;
    }
    if (r->live_token.base == NULL)
        return 0;
    if (h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) >= 0) {
        rpc_fail(r, 400, "send the token once: in Authorization or in access_token, not both", NULL);
        return -1;
    }
    size_t plen = req->query_at;
    char *path = h2o_mem_alloc_pool(&req->pool, plen + 1 + n);
    memcpy(path, req->path.base, plen);
    if (n != 0) {
        path[plen] = '?';
        memcpy(path + plen + 1, rest, n);
    }
    req->path = h2o_iovec_init(path, plen + (n != 0 ? 1 + n : 0));
    req->query_at = n != 0 ? plen : SIZE_MAX;
    return 0;
}

/* the exp claim of the (verified) token: the payload's middle part, base64url JSON */
static double token_exp(rpc_req_t *r)
{
    h2o_req_t *req = r->req;
    h2o_iovec_t tok = r->live_token;
    if (tok.base == NULL) {
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
        if (i < 0 || req->headers.entries[i].value.len < 7)
            return 0;
        tok = h2o_iovec_init(req->headers.entries[i].value.base + 7, req->headers.entries[i].value.len - 7);
        while (tok.len > 0 && *tok.base == ' ')
            tok.base++, tok.len--;
    }
    const char *dot1 = memchr(tok.base, '.', tok.len);
    const char *dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', tok.len - (size_t)(dot1 + 1 - tok.base)) : NULL;
    if (dot2 == NULL)
        return 0;
    h2o_iovec_t json = h2o_decode_base64url(&req->pool, dot1 + 1, (size_t)(dot2 - dot1 - 1));
    json_t *doc = json.base != NULL ? json_loadb(json.base, json.len, 0, NULL) : NULL;
    json_t *exp = json_object_get(doc, "exp");
    double v = json_is_number(exp) ? json_number_value(exp) : 0;
    json_decref(doc);
    return v;
}

static void stream_dispose(void *p)
{
    live_stream_t *s = p;
    live_unsubscribe(s);
    if (h2o_linklist_is_linked(&s->all))
        h2o_linklist_unlink(&s->all);
    live_event_release(s->writing);
    live_event_release(s->pending);
    s->writing = s->pending = NULL;
    if (s->r != NULL && s->r->route != NULL)
        pulse_metrics_live_stream(s->r->worker->metrics, s->r->route->name, s->r->route->cls, -1);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req);
static void on_stop(h2o_generator_t *g, h2o_req_t *req);
static void stream_offer_first(live_stream_t *s, live_event_t *ev);

void rpc_live_open(rpc_req_t *r)
{
    h2o_req_t *req = r->req;
    pulse_live_loop_t *l = r->worker->live;
    if (l == NULL || !pulse_live_enabled() || r->conf->live_max_streams == 0) {
        rpc_fail(r, 503, "live endpoints are off on this proxy (live_max_streams is 0)", NULL);
        return;
    }
    if (r->route->ntags == 0) {
        rpc_fail(r, 406, "this endpoint has no cache tags: nothing tells the proxy when its result changes", NULL);
        return;
    }
    if (rpc_call_key(&req->pool, &r->call, r->tenant, NULL, r->key) != 0) {
        rpc_fail(r, 400, "too many arguments", NULL);
        return;
    }
    live_stream_t *s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), stream_dispose);
    memset(s, 0, sizeof(*s));
    s->super.proceed = on_proceed;
    s->super.stop = on_stop;
    s->r = r;
    s->loop = l;
    s->exp = token_exp(r);
    s->opened_ms = wall_ms();
    /* a reconnecting EventSource sends the id of the last event it got: the ETag, quoted as in HTTP */
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (v.len > 0 && v.base[0] != '"')
            snprintf(s->sent, sizeof(s->sent), "\"%.*s\"", (int)(v.len < sizeof(s->sent) - 3 ? v.len : 0), v.base);
        else if (v.len < sizeof(s->sent))
            memcpy(s->sent, v.base, v.len);
    }
    const char *query = req->query_at != SIZE_MAX ? req->path.base + req->query_at + 1 : "";
    size_t query_len = req->query_at != SIZE_MAX ? req->path.len - req->query_at - 1 : 0;
    live_event_t *now = NULL;
    int status = live_subscribe(l, s, query, query_len, &now);
    if (status != 0) {
        s->r = NULL; /* not counted as open */
        pulse_metrics_live_rejected(r->worker->metrics,
                                    status == 429 ? PULSE_METRICS_LIVE_TENANT_LIMIT : PULSE_METRICS_LIVE_PROXY_LIMIT);
        char ra[16];
        int n = snprintf(ra, sizeof(ra), "%d", r->conf->retry_after);
        if (status == 429) /* a 503 gets its Retry-After from the problem document */
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, h2o_strdup(&req->pool, ra, (size_t)n).base,
                           (size_t)n);
        rpc_fail(r, status,
                 status == 429 ? "too many open streams for this tenant (live_max_streams_tenant)"
                               : "too many open streams on this proxy (live_max_streams)",
                 NULL);
        return;
    }
    h2o_linklist_insert(&l->streams, &s->all);
    pulse_metrics_live_stream(r->worker->metrics, r->route->name, r->route->cls, 1);
    if (now != NULL) {
        stream_offer_first(s, now);
        live_event_release(now);
    }
}

/* --- writing ------------------------------------------------------------------------------------------------------ */

/* the 200 and its headers; the first write follows at once */
static void stream_start(live_stream_t *s)
{
    rpc_req_t *r = s->r;
    h2o_req_t *req = r->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, r->request_id, strlen(r->request_id));
    /* a front proxy (nginx) must not buffer the stream */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL, H2O_STRLIT("no"));
    /* until cors_origins covers every answer: the origins allowed to read a stream (live_allow_origin) */
    if (r->conf->live_allow_origin[0] != '\0') {
        h2o_iovec_t o = h2o_strdup(&req->pool, r->conf->live_allow_origin, SIZE_MAX);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, o.base, o.len);
    }
    req->res.content_length = SIZE_MAX;
    s->started = 1;
    h2o_start_response(req, &s->super);
    rpc_log(r, 0, "live"); /* its duration: the time to the first result */
}

/* writes `ev` (NULL: a heartbeat); the first write of a stream carries the retry hint */
static void stream_write(live_stream_t *s, live_event_t *ev)
{
    rpc_req_t *r = s->r;
    h2o_iovec_t bufs[2];
    size_t n = 0;
    if (s->bytes == 0) {
        char hint[48];
        int len = snprintf(hint, sizeof(hint), "retry: %d\n%s", r->conf->live_retry_ms, ev == NULL ? "\n" : "");
        bufs[n++] = h2o_strdup(&r->req->pool, hint, (size_t)len);
    }
    if (ev != NULL) {
        bufs[n++] = h2o_iovec_init(ev->text, ev->len);
        memcpy(s->sent, ev->etag, sizeof(s->sent));
        s->events++;
        uint64_t now = pulse_generations_now_us();
        pulse_metrics_live_event(r->worker->metrics, PULSE_METRICS_LIVE_RESULT,
                                 ev->notified_us != 0 && now > ev->notified_us ? (double)(now - ev->notified_us) / 1e6 : -1);
    } else if (s->bytes != 0) {
        bufs[n++] = h2o_iovec_init(heartbeat, sizeof(heartbeat) - 1);
        pulse_metrics_live_event(r->worker->metrics, PULSE_METRICS_LIVE_HEARTBEAT, -1);
    }
    for (size_t i = 0; i < n; i++)
        s->bytes += bufs[i].len;
    s->writing = live_event_ref(ev);
    s->busy = 1;
    s->last_write_ms = wall_ms();
    h2o_send(r->req, bufs, n, H2O_SEND_STATE_IN_PROGRESS);
}

/* the last chunk, after an `error` event of `status` when it is not 0 */
static void stream_final(live_stream_t *s, int status, const char *detail)
{
    rpc_req_t *r = s->r;
    h2o_iovec_t buf = {NULL, 0};
    if (status != 0) {
        size_t len = 0;
        char *doc = pulse_problem_render(status, detail, r->request_id, &len);
        if (doc != NULL) {
            static const char head[] = "event: error\ndata: ";
            buf.base = h2o_mem_alloc_pool(&r->req->pool, sizeof(head) + len + 2);
            memcpy(buf.base, head, sizeof(head) - 1);
            memcpy(buf.base + sizeof(head) - 1, doc, len);
            memcpy(buf.base + sizeof(head) - 1 + len, "\n\n", 2);
            buf.len = sizeof(head) - 1 + len + 2;
            free(doc);
            pulse_metrics_live_event(r->worker->metrics, PULSE_METRICS_LIVE_ERROR, -1);
        }
    }
    s->busy = 1;
    h2o_send(r->req, &buf, buf.base != NULL ? 1 : 0, H2O_SEND_STATE_FINAL);
}

static int stream_served(live_stream_t *s)
{
    if (!s->waiting)
        return 0;
    s->waiting = 0;
    return 1;
}

/* the first result of a stream that had it at once (not counted among the key's waiting streams) */
static void stream_offer_first(live_stream_t *s, live_event_t *ev)
{
    (void)live_stream_offer(s, ev, NULL);
}

int live_stream_offer(live_stream_t *s, live_event_t *ev, live_event_t *err)
{
    if (s->ended || s->stopped)
        return stream_served(s);
    /* a 4xx ends the stream; a 5xx only answers one not started that waited request_timeout_ms (the key retries) */
    if (err != NULL && err->seq > s->error_seq &&
        (err->status < 500 || (!s->started && wall_ms() >= s->opened_ms + (uint64_t)s->r->conf->request_timeout_ms))) {
        s->error_seq = err->seq;
        int first = stream_served(s);
        live_stream_end(s, err->status, err->text);
        return first;
    }
    if (ev == NULL)
        return 0;
    int first = stream_served(s);
    if (!s->started)
        stream_start(s);
    if (strcmp(ev->etag, s->sent) == 0) { /* the client has it (its Last-Event-ID, or a state that came back) */
        if (s->pending != NULL) {
            live_event_release(s->pending);
            s->pending = NULL;
            pulse_metrics_live_conflated(s->r->worker->metrics);
        }
        if (s->bytes == 0 && !s->busy)
            stream_write(s, NULL);
        return first;
    }
    if (s->busy) { /* a slow consumer: only the latest state waits */
        if (s->pending != NULL) {
            live_event_release(s->pending);
            pulse_metrics_live_conflated(s->r->worker->metrics);
        }
        s->pending = live_event_ref(ev);
        return first;
    }
    stream_write(s, ev);
    return first;
}

void live_stream_end(live_stream_t *s, int status, const char *detail)
{
    if (h2o_linklist_is_linked(&s->all))
        h2o_linklist_unlink(&s->all);
    if (s->ended || s->stopped)
        return;
    s->ended = 1;
    s->end_status = status;
    s->end_reason = detail;
    if (!s->started) {
        rpc_fail(s->r, status != 0 ? status : 503, detail, NULL);
        return;
    }
    live_event_release(s->pending);
    s->pending = NULL;
    if (detail != NULL)
        s->end_reason = h2o_strdup(&s->r->req->pool, detail, SIZE_MAX).base; /* `detail` may be an event's, released before */
    if (!s->busy)
        stream_final(s, status, s->end_reason);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    live_stream_t *s = H2O_STRUCT_FROM_MEMBER(live_stream_t, super, g);
    (void)req;
    s->busy = 0;
    live_event_release(s->writing);
    s->writing = NULL;
    if (s->ended) {
        stream_final(s, s->end_status, s->end_reason);
        return;
    }
    if (s->pending != NULL) {
        live_event_t *ev = s->pending;
        s->pending = NULL;
        if (strcmp(ev->etag, s->sent) != 0)
            stream_write(s, ev);
        live_event_release(ev);
    }
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    live_stream_t *s = H2O_STRUCT_FROM_MEMBER(live_stream_t, super, g);
    (void)req;
    s->stopped = 1;
}

void live_stream_tick(pulse_live_loop_t *l)
{
    pulse_config_t *conf = pulse_config_acquire();
    uint64_t now = wall_ms(), hb = (uint64_t)conf->live_heartbeat_ms;
    pulse_config_release(conf);
    for (h2o_linklist_t *node = l->streams.next, *next; node != &l->streams; node = next) {
        next = node->next;
        live_stream_t *s = H2O_STRUCT_FROM_MEMBER(live_stream_t, all, node);
        if (s->exp != 0 && (double)now / 1000.0 >= s->exp)
            live_stream_end(s, 401, "token has expired");
        else if (!s->started && !s->ended && now >= s->opened_ms + (uint64_t)s->r->conf->request_timeout_ms)
            live_stream_end(s, 503, "no result in time: the database is unavailable or overloaded, retry later");
        else if (s->started && !s->busy && !s->ended && hb != 0 && now - s->last_write_ms >= hb)
            stream_write(s, NULL);
    }
}
