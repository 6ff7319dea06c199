/*
 * cors.c: CORS for pulse-proxy (see cors.h): the cors_origins list (its
 * check and the origin match, pure functions), the OPTIONS answers and the
 * filter that adds Access-Control-Allow-Origin, Access-Control-Expose-
 * Headers and Vary: Origin to every answer.
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include "cors.h"
#include "respond.h"

/* ---- the list -------------------------------------------------------------------------------------------------- */

static int cors_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* calls `fn` on each item of `list` (separated by ',' or by lines, trimmed, possibly empty); stops at the first non-zero
   return and returns it */
static int cors_each(const char *list, int (*fn)(const char *item, size_t len, void *arg), void *arg)
{
    const char *p = list != NULL ? list : "";
    while (1) {
        size_t n = strcspn(p, ",\n");
        const char *comma = p[n] != '\0' ? p + n : NULL, *end = p + n, *a = p, *b = end;
        while (a != b && cors_is_blank(*a))
            ++a;
        while (b != a && cors_is_blank(b[-1]))
            --b;
        int rc = fn(a, (size_t)(b - a), arg);
        if (rc != 0 || comma == NULL)
            return rc;
        p = comma + 1;
    }
}

/* the reason an origin item is malformed, or NULL */
static const char *cors_item_problem(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 1 && s[0] == '*')
        return NULL;
    if (len == 0)
        return "an empty item";
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return "an origin starts with its scheme";
    while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                       s[i] == '+' || s[i] == '.' || s[i] == '-'))
        ++i;
    if (len - i < 3 || memcmp(s + i, "://", 3) != 0)
        return "an origin is scheme://host[:port]";
    i += 3;
    size_t host = i;
    if (i < len && s[i] == '[') {
        for (++i; i < len && s[i] != ']'; ++i)
            if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F') || s[i] == ':' ||
                  s[i] == '.'))
                return "a bracketed host is an IPv6 address";
        if (i == len || i == host + 1)
            return "an empty or unterminated [IPv6] host";
        ++i;
    } else {
        while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                           s[i] == '-' || s[i] == '.'))
            ++i;
    }
    if (i == host)
        return "an origin needs a host";
    if (i < len && s[i] == ':') {
        size_t port = ++i;
        unsigned long v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - port < 6)
            v = v * 10 + (unsigned long)(s[i++] - '0');
        if (i == port || v == 0 || v > 65535)
            return "a port is 1 to 65535";
    }
    if (i != len)
        return s[i] == '/' ? "an origin has no path (not even \"/\")" : "an origin is scheme://host[:port]";
    return NULL;
}

typedef struct {
    char *err;
    size_t errlen;
} cors_check_t;

static int cors_check_item(const char *item, size_t len, void *arg)
{
    cors_check_t *c = arg;
    const char *why = cors_item_problem(item, len);
    if (why == NULL)
        return 0;
    snprintf(c->err, c->errlen, "cors_origins: \"%.*s\" is not an origin: %s", (int)(len > 80 ? 80 : len), item, why);
    return -1;
}

int pulse_cors_check_origins(const char *list, char *err, size_t errlen)
{
    if (list == NULL || list[strspn(list, " \t")] == '\0')
        return 0;
    cors_check_t c = {err, errlen};
    return cors_each(list, cors_check_item, &c);
}

typedef struct {
    const char *origin;
    size_t len;
} cors_match_t;

static int cors_match_item(const char *item, size_t len, void *arg)
{
    const cors_match_t *m = arg;
    if (len == 1 && item[0] == '*')
        return 1;
    if (len != m->len)
        return 0;
    for (size_t i = 0; i != len; ++i)
        if (h2o_tolower(item[i]) != h2o_tolower(m->origin[i]))
            return 0;
    return 2;
}

int pulse_cors_origin_allowed(const char *list, const char *origin, size_t len)
{
    if (list == NULL || list[0] == '\0' || len == 0 || h2o_memis(origin, len, H2O_STRLIT("null")))
        return 0;
    cors_match_t m = {origin, len};
    return cors_each(list, cors_match_item, &m);
}

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
