/*
 * rpc_trace.c: the W3C trace context of a /rpc request and its spans
 * (request, cache lookup, database call, serialization), built when the
 * request ends and handed to the exporter (trace.h) when it was sampled,
 * failed with a 5xx or was slower than trace_slow_ms.
 */
#include <stdio.h>
#include <string.h>
#include "problem.h"
#include "rpc_int.h"

void rpc_trace_start(rpc_req_t *r)
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

void rpc_trace_export(rpc_req_t *r, double ms)
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
        pulse_span_set_str(s, "pulse.server", pulse_replicas_server_name(r->worker->replicas, &r->pick));
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
