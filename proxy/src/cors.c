/*
 * cors.c: CORS for pulse-proxy (see cors.h): the OPTIONS answers and the
 * filter that adds Access-Control-Allow-Origin, Access-Control-Expose-
 * Headers and Vary: Origin to every answer.
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include "cors.h"
#include "cors_origins.h"
#include "respond.h"

/* ---- answers --------------------------------------------------------------------------------------------------- */

/* the request's Origin, or NULL */
static const h2o_iovec_t *cors_origin_of(h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    return i >= 0 ? &req->headers.entries[i].value : NULL;
}

/* Access-Control-Allow-Origin for an origin `allowed` (1: any, 2: this one) */
static void cors_allow_origin(h2o_req_t *req, const h2o_iovec_t *origin, int allowed)
{
    if (allowed == 1)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, H2O_STRLIT("*"));
    else
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL,
                       h2o_strdup(&req->pool, origin->base, origin->len).base, origin->len);
}

/* whether the comma-separated `methods` lists the method `m` (`len` bytes) */
static int cors_lists_method(const char *methods, const char *m, size_t len)
{
    for (const char *p = methods; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == len && memcmp(p, m, len) == 0)
            return 1;
        p += n;
        while (*p == ',' || *p == ' ')
            ++p;
    }
    return 0;
}

static void cors_log(h2o_req_t *req, const char *rid, const struct timeval *t0, size_t bytes)
{
    pulse_respond_log_t e = {.request_id = rid, .t0 = t0, .counted = 1, .bytes = bytes};
    (void)pulse_respond_log(req, &e);
}

int pulse_cors_options(h2o_req_t *req, const char *methods)
{
    struct timeval t0;
    char rid[65], allow[64];
    gettimeofday(&t0, NULL);
    pulse_respond_request_id_of(req, rid);
    if (methods == NULL) {
        cors_log(req, rid, &t0, pulse_respond_problem(req, rid, 404, "no such resource", 0, NULL));
        return 0;
    }
    snprintf(allow, sizeof(allow), "%s, OPTIONS", methods);
    pulse_config_t *conf = pulse_config_acquire();
    const h2o_iovec_t *origin = cors_origin_of(req);
    ssize_t acrm = h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-method"), -1);
    if (origin != NULL && acrm >= 0) { /* a preflight */
        int allowed = pulse_cors_origin_allowed(conf->cors_origins, origin->base, origin->len);
        const h2o_iovec_t *m = &req->headers.entries[acrm].value;
        h2o_set_header_token(&req->pool, &req->res.headers, H2O_TOKEN_VARY, H2O_STRLIT("Origin"));
        h2o_set_header_token(&req->pool, &req->res.headers, H2O_TOKEN_VARY, H2O_STRLIT("Access-Control-Request-Method"));
        h2o_set_header_token(&req->pool, &req->res.headers, H2O_TOKEN_VARY, H2O_STRLIT("Access-Control-Request-Headers"));
        if (!allowed) {
            char detail[160];
            snprintf(detail, sizeof(detail), "the origin %.*s may not call this API (cors_origins)",
                     (int)(origin->len > 80 ? 80 : origin->len), origin->base);
            cors_log(req, rid, &t0, pulse_respond_problem(req, rid, 403, detail, 0, NULL));
            pulse_config_release(conf);
            return 0;
        }
        cors_allow_origin(req, origin, allowed);
        if (!cors_lists_method(methods, m->base, m->len)) {
            char detail[96];
            snprintf(detail, sizeof(detail), "this resource takes %s", methods);
            cors_log(req, rid, &t0, pulse_respond_problem(req, rid, 405, detail, 0, allow));
            pulse_config_release(conf);
            return 0;
        }
        char age[16];
        int n = snprintf(age, sizeof(age), "%d", conf->cors_max_age);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL, methods,
                              strlen(methods));
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL,
                              H2O_STRLIT(PULSE_CORS_ALLOW_HEADERS));
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"), 0, NULL,
                              h2o_strdup(&req->pool, age, (size_t)n).base, (size_t)n);
    }
    pulse_config_release(conf);
    req->res.status = 204;
    req->res.reason = "No Content";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, h2o_strdup(&req->pool, allow, SIZE_MAX).base,
                   strlen(allow));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, rid, SIZE_MAX).base, strlen(rid));
    h2o_send_inline(req, NULL, 0);
    cors_log(req, rid, &t0, 0);
    return 0;
}

/* ---- the filter ------------------------------------------------------------------------------------------------ */

static void cors_on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    pulse_config_t *conf = pulse_config_acquire();
    if (conf != NULL && conf->cors_origins[0] != '\0' &&
        h2o_find_header(&req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, -1) < 0) {
        const h2o_iovec_t *origin = cors_origin_of(req);
        int allowed = origin != NULL ? pulse_cors_origin_allowed(conf->cors_origins, origin->base, origin->len) : 0;
        h2o_set_header_token(&req->pool, &req->res.headers, H2O_TOKEN_VARY, H2O_STRLIT("Origin"));
        if (allowed) {
            cors_allow_origin(req, origin, allowed);
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-expose-headers"), 0, NULL,
                                  H2O_STRLIT(PULSE_CORS_EXPOSE_HEADERS));
        }
    }
    if (conf != NULL)
        pulse_config_release(conf);
    h2o_setup_next_ostream(req, slot);
}

int pulse_cors_register(h2o_pathconf_t *pathconf)
{
    h2o_filter_t *f = h2o_create_filter(pathconf, sizeof(*f));
    if (f == NULL)
        return -1;
    f->on_setup_ostream = cors_on_setup_ostream;
    return 0;
}
