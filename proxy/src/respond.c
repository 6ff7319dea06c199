/*
 * respond.c: the pieces every answer of pulse-proxy shares (respond.h).
 */
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "config.h"
#include "log.h"
#include "problem.h"
#include "respond.h"
#include "worker.h"

void pulse_respond_request_id(const char *given, size_t len, char *buf)
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
    /* 8 random bytes per thread, drawn once, then a counter through a bijective mixer: unique per thread and process,
       without OpenSSL's RAND_bytes (its fork and lock checks were 15% of the proxy's CPU on cached hits) */
    static __thread uint64_t prefix, counter;
    static __thread int seeded;
    static const char hex[] = "0123456789abcdef";
    if (!seeded) {
        if (RAND_bytes((unsigned char *)&prefix, sizeof(prefix)) != 1) {
            struct timeval tv;
            gettimeofday(&tv, NULL);
            prefix = ((uint64_t)tv.tv_sec << 20) ^ (uint64_t)tv.tv_usec ^ ((uint64_t)(uintptr_t)&seeded << 7);
        }
        seeded = 1;
    }
    uint64_t z = ++counter + 0x9e3779b97f4a7c15ULL * (prefix | 1); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    uint64_t v[2] = {prefix, z};
    for (int w = 0; w != 2; ++w)
        for (int i = 0; i != 16; ++i)
            buf[16 * w + i] = hex[(v[w] >> (60 - 4 * i)) & 15];
    buf[32] = '\0';
}

void pulse_respond_request_id_of(h2o_req_t *req, char *buf)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    pulse_respond_request_id(i >= 0 ? req->headers.entries[i].value.base : NULL, i >= 0 ? req->headers.entries[i].value.len : 0,
                             buf);
}

double pulse_respond_ms_since(const struct timeval *t0)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    return (double)(now.tv_sec - t0->tv_sec) * 1000.0 + (double)(now.tv_usec - t0->tv_usec) / 1000.0;
}

void pulse_respond_peer(h2o_req_t *req, char host[NI_MAXHOST])
{
    struct sockaddr_storage ss;
    host[0] = '\0';
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (sl != 0)
        h2o_socket_getnumerichost((struct sockaddr *)&ss, sl, host);
}

double pulse_respond_log(h2o_req_t *req, const pulse_respond_log_t *e)
{
    const pulse_route_t *route = e->route;
    double ms = pulse_respond_ms_since(e->t0);
    if (e->counted)
        pulse_metrics_observe_request(pulse_worker_of(req)->metrics, route != NULL ? route->name : NULL,
                                      route != NULL ? route->cls : PULSE_CLASS_READ, req->res.status, ms / 1000.0);
    char host[NI_MAXHOST];
    if (e->remote != NULL && e->remote[0] != '\0')
        snprintf(host, sizeof(host), "%s", e->remote);
    else
        pulse_respond_peer(req, host);
    pulse_access_t a = {.request_id = e->request_id,
                        .trace_id = e->trace_id,
                        .method = req->method.base,
                        .method_len = req->method.len,
                        .path = req->path.base,
                        .path_len = req->path.len,
                        .endpoint = route != NULL ? route->name : NULL,
                        .cls = route != NULL ? pulse_config_class_name(route->cls) : NULL,
                        .tenant = e->tenant,
                        .remote = host,
                        .status = req->res.status,
                        .bytes = e->bytes,
                        .duration_ms = ms,
                        .source = e->source,
                        .cache = e->cache};
    pulse_log_access(&a);
    return ms;
}

size_t pulse_respond_problem(h2o_req_t *req, const char *request_id, int status, const char *detail, int retry_after,
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
