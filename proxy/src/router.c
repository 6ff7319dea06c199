/*
 * router.c: route table and call building.
 *
 * The route table is immutable once published and reference counted: the
 * catalog thread publishes a new one after every reload, each request holds
 * the table it started with until it ends (so its pulse_route_t stays valid),
 * and the last holder frees it.  The mutex guards `current` and the counts.
 *
 * Everything a call allocates comes from the request's pool.
 */
#define _GNU_SOURCE /* vasprintf */
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "log.h"
#include "router.h"

static pthread_mutex_t routes_mutex = PTHREAD_MUTEX_INITIALIZER;
static pulse_routes_t *current;

/* ---- route table ------------------------------------------------------- */

static void route_clear(pulse_route_t *r)
{
    free(r->name);
    free(r->schema);
    free(r->function);
    for (size_t i = 0; i < r->nargs; i++) {
        free(r->arg_names != NULL ? r->arg_names[i] : NULL);
        free(r->arg_types != NULL ? r->arg_types[i] : NULL);
    }
    free(r->arg_names);
    free(r->arg_types);
    for (size_t i = 0; i < r->ntags; i++)
        free(r->tags[i]);
    free(r->tags);
    free(r->keyed_sql);
}

void pulse_router_free(pulse_routes_t *routes)
{
    if (routes == NULL)
        return;
    for (size_t i = 0; i < routes->n; i++)
        route_clear(&routes->v[i]);
    free(routes->v);
    if (routes->openapi != NULL && routes->openapi_free != NULL)
        routes->openapi_free(routes->openapi);
    free(routes);
}

static char *dup_string(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? strdup(s) : NULL;
}

static char **dup_string_array(json_t *a, size_t *n)
{
    *n = json_array_size(a);
    char **v = calloc(*n + 1, sizeof(char *));
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < *n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (s == NULL || (v[i] = strdup(s)) == NULL) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return NULL;
        }
    }
    return v;
}

/* fills `r` from one catalog object; -1 when it is unusable */
static int route_from_json(pulse_route_t *r, json_t *o)
{
    size_t ntypes;
    json_t *names = json_object_get(o, "arg_names"), *types = json_object_get(o, "arg_types");
    const char *cls = json_string_value(json_object_get(o, "class"));
    const char *result = json_string_value(json_object_get(o, "result"));

    memset(r, 0, sizeof(*r));
    r->cursor_arg = -1;
    if ((r->name = dup_string(o, "name")) == NULL || (r->schema = dup_string(o, "schema")) == NULL ||
        (r->function = dup_string(o, "function")) == NULL || cls == NULL || result == NULL || !json_is_array(names) ||
        !json_is_array(types) || json_array_size(names) != json_array_size(types) || json_array_size(names) > PULSE_ROUTER_MAX_ARGS)
        return -1;
    int c = pulse_config_class_from_name(cls);
    if (c < 0)
        return -1;
    r->cls = (pulse_class_t)c;
    r->returns_rows = strcmp(result, "rows") == 0;
    if ((r->arg_names = dup_string_array(names, &r->nargs)) == NULL)
        return -1;
    if ((r->arg_types = dup_string_array(types, &ntypes)) == NULL) {
        r->arg_types = NULL;
        return -1;
    }
    json_int_t ndef = json_integer_value(json_object_get(o, "arg_defaults"));
    if (ndef < 0 || (size_t)ndef > r->nargs)
        return -1;
    r->nrequired = r->nargs - (size_t)ndef;
    json_t *ttl = json_object_get(o, "ttl_ms");
    r->ttl_ms = json_is_integer(ttl) ? (long long)json_integer_value(ttl) : -1;
    json_t *tags = json_object_get(o, "tags");
    if (json_is_array(tags) && (r->tags = dup_string_array(tags, &r->ntags)) == NULL)
        return -1;
    if (json_is_string(json_object_get(o, "keyed_sql")) && (r->keyed_sql = dup_string(o, "keyed_sql")) == NULL)
        return -1;
    for (size_t i = 0; i < r->nargs; i++)
        if (strcmp(r->arg_names[i], "cursor") == 0)
            r->cursor_arg = (int)i;
    return 0;
}

static int route_cmp(const void *a, const void *b)
{
    return strcmp(((const pulse_route_t *)a)->name, ((const pulse_route_t *)b)->name);
}

pulse_routes_t *pulse_router_parse_catalog(const char *text, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *arr = json_loads(text, 0, &jerr);
    if (arr == NULL || !json_is_array(arr)) {
        snprintf(err, errlen, "endpoint catalog is not a JSON array: %s", arr == NULL ? jerr.text : "wrong type");
        json_decref(arr);
        return NULL;
    }
    pulse_routes_t *routes = calloc(1, sizeof(*routes));
    if (routes == NULL || (routes->v = calloc(json_array_size(arr) + 1, sizeof(pulse_route_t))) == NULL) {
        free(routes);
        json_decref(arr);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        pulse_route_t *r = &routes->v[routes->n];
        if (route_from_json(r, json_array_get(arr, i)) != 0) {
            pulse_log_msg("warning", NULL, "catalog: skipping unusable endpoint %s", r->name != NULL ? r->name : "(unnamed)");
            route_clear(r);
            memset(r, 0, sizeof(*r));
            continue;
        }
        routes->n++;
    }
    json_decref(arr);
    qsort(routes->v, routes->n, sizeof(pulse_route_t), route_cmp);
    return routes;
}

void pulse_router_publish(pulse_routes_t *routes)
{
    pulse_routes_t *old;
    pthread_mutex_lock(&routes_mutex);
    if (routes != NULL)
        routes->_refcnt = 1; /* the reference of `current` */
    old = current;
    current = routes;
    pthread_mutex_unlock(&routes_mutex);
    if (old != NULL)
        pulse_router_release(old);
}

pulse_routes_t *pulse_router_acquire(void)
{
    pthread_mutex_lock(&routes_mutex);
    pulse_routes_t *r = current;
    if (r != NULL)
        r->_refcnt++;
    pthread_mutex_unlock(&routes_mutex);
    return r;
}

void pulse_router_release(pulse_routes_t *routes)
{
    int last;
    pthread_mutex_lock(&routes_mutex);
    last = --routes->_refcnt == 0;
    pthread_mutex_unlock(&routes_mutex);
    if (last)
        pulse_router_free(routes);
}

const pulse_route_t *pulse_router_find(const pulse_routes_t *routes, const char *name, size_t len)
{
    size_t lo = 0, hi = routes != NULL ? routes->n : 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *n = routes->v[mid].name;
        int c = strncmp(n, name, len);
        if (c == 0)
            c = n[len] == '\0' ? 0 : 1;
        if (c == 0)
            return &routes->v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- call building ------------------------------------------------------ */

/* a growable string in a pool (abandoned chunks stay in the pool until it is cleared) */
typedef struct {
    h2o_mem_pool_t *pool;
    char *s;
    size_t len, cap;
} sbuf_t;

static void sb_reserve(sbuf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = (b->cap == 0 ? 128 : b->cap * 2);
    while (cap < b->len + more + 1)
        cap *= 2;
    char *n = h2o_mem_alloc_pool(b->pool, cap);
    if (b->len != 0)
        memcpy(n, b->s, b->len);
    b->s = n;
    b->cap = cap;
}

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_adds(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_ident(sbuf_t *b, const char *id)
{
    sb_reserve(b, 2 * strlen(id) + 2);
    int n = pulse_router_quote_ident(b->s + b->len, b->cap - b->len, id);
    b->len += (size_t)n; /* cannot fail: reserved enough */
}

int pulse_router_quote_ident(char *buf, size_t cap, const char *id)
{
    size_t o = 0;
    if (cap < 3)
        return -1;
    buf[o++] = '"';
    for (const char *p = id; *p != '\0'; p++) {
        if (o + (*p == '"' ? 2 : 1) + 2 > cap)
            return -1;
        if (*p == '"')
            buf[o++] = '"';
        buf[o++] = *p;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return (int)o;
}

static char *pool_printf(h2o_mem_pool_t *pool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *pool_printf(h2o_mem_pool_t *pool, const char *fmt, ...)
{
    va_list ap;
    char *tmp = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return "out of memory";
    char *s = h2o_strdup(pool, tmp, (size_t)n).base;
    free(tmp);
    return s;
}

void pulse_router_call_init(h2o_mem_pool_t *pool, pulse_call_t *call, const pulse_route_t *route)
{
    memset(call, 0, sizeof(*call));
    call->route = route;
    size_t n = route->nargs != 0 ? route->nargs : 1;
    call->values = h2o_mem_alloc_pool(pool, n * sizeof(char *));
    call->given = h2o_mem_alloc_pool(pool, n);
    memset(call->values, 0, n * sizeof(char *));
    memset(call->given, 0, n);
}

/* records argument `name` = `value` (NULL: SQL NULL) */
static int call_set(h2o_mem_pool_t *pool, pulse_call_t *call, const char *name, size_t nlen, const char *value, size_t vlen,
                    int max_args, char **err)
{
    const pulse_route_t *r = call->route;
    size_t i;
    if ((int)call->ngiven >= max_args) {
        *err = pool_printf(pool, "too many arguments (at most %d)", max_args);
        return -1;
    }
    if (memchr(name, '\0', nlen) != NULL || (value != NULL && memchr(value, '\0', vlen) != NULL)) {
        *err = pool_printf(pool, "arguments must not contain NUL bytes");
        return -1;
    }
    for (i = 0; i < r->nargs; i++)
        if (strlen(r->arg_names[i]) == nlen && memcmp(r->arg_names[i], name, nlen) == 0)
            break;
    if (i == r->nargs) {
        *err = pool_printf(pool, "unknown argument \"%.*s\" for %s", (int)(nlen > 64 ? 64 : nlen), name, r->name);
        return -1;
    }
    if (call->given[i]) {
        *err = pool_printf(pool, "argument \"%s\" given twice", r->arg_names[i]);
        return -1;
    }
    call->given[i] = 1;
    call->ngiven++;
    if (value != NULL) {
        char *v = h2o_mem_alloc_pool(pool, vlen + 1);
        memcpy(v, value, vlen);
        v[vlen] = '\0';
        call->values[i] = v;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* percent-decodes in place into `out`; returns the length or -1 */
static ssize_t url_decode(char *out, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
                return -1;
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    return (ssize_t)o;
}

int pulse_router_args_from_query(h2o_mem_pool_t *pool, pulse_call_t *call, const char *query, size_t len, int max_args, char **err)
{
    size_t pos = 0;
    while (pos < len) {
        const char *amp = memchr(query + pos, '&', len - pos);
        size_t end = amp != NULL ? (size_t)(amp - query) : len;
        if (end > pos) {
            const char *part = query + pos;
            size_t plen = end - pos;
            const char *eq = memchr(part, '=', plen);
            size_t klen = eq != NULL ? (size_t)(eq - part) : plen;
            const char *v = eq != NULL ? eq + 1 : part + plen;
            size_t vlen = eq != NULL ? plen - klen - 1 : 0;
            char *kbuf = h2o_mem_alloc_pool(pool, klen + 1), *vbuf = h2o_mem_alloc_pool(pool, vlen + 1);
            ssize_t kl = url_decode(kbuf, part, klen), vl = url_decode(vbuf, v, vlen);
            if (kl < 0 || vl < 0) {
                *err = pool_printf(pool, "malformed percent-encoding in the query string");
                return -1;
            }
            if (kl == 0) {
                *err = pool_printf(pool, "empty argument name in the query string");
                return -1;
            }
            if (call_set(pool, call, kbuf, (size_t)kl, vbuf, (size_t)vl, max_args, err) != 0)
                return -1;
        }
        pos = end + 1;
    }
    return 0;
}

/* appends `v`, a JSON array, as a PostgreSQL array literal: {"e1","e2",NULL,{...}}: strings as they are, numbers and
   booleans in their JSON form, objects as JSON text, every element double-quoted ('"' and '\' escaped), null as NULL,
   nested arrays as sub-arrays (at most 6 levels, PostgreSQL's MAXDIM); -1 for deeper nesting or no memory */
static int pg_array_literal(sbuf_t *b, json_t *v, int depth)
{
    if (depth > 6)
        return -1;
    sb_adds(b, "{");
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (i != 0)
            sb_adds(b, ",");
        if (json_is_null(e)) {
            sb_adds(b, "NULL");
            continue;
        }
        if (json_is_array(e)) {
            if (pg_array_literal(b, e, depth + 1) != 0)
                return -1;
            continue;
        }
        char *dumped = json_is_string(e) ? NULL : json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT);
        const char *s = json_is_string(e) ? json_string_value(e) : dumped;
        size_t n = json_is_string(e) ? json_string_length(e) : dumped != NULL ? strlen(dumped) : 0;
        if (s == NULL)
            return -1;
        sb_adds(b, "\"");
        for (size_t k = 0; k < n; k++) {
            if (s[k] == '"' || s[k] == '\\')
                sb_add(b, "\\", 1);
            sb_add(b, s + k, 1);
        }
        sb_adds(b, "\"");
        free(dumped);
    }
    sb_adds(b, "}");
    return 0;
}

/* whether the argument `name` of `r` has an array type */
static int arg_is_array(const pulse_route_t *r, const char *name)
{
    for (size_t i = 0; i < r->nargs; i++)
        if (strcmp(r->arg_names[i], name) == 0) {
            size_t n = strlen(r->arg_types[i]);
            return n > 2 && strcmp(r->arg_types[i] + n - 2, "[]") == 0;
        }
    return 0;
}

int pulse_router_args_from_json(h2o_mem_pool_t *pool, pulse_call_t *call, const char *body, size_t len, int max_args, char **err)
{
    json_error_t jerr;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL) {
        *err = pool_printf(pool, "request body is not valid JSON: %s", jerr.text);
        return -1;
    }
    int rc = 0;
    if (!json_is_object(o)) {
        *err = pool_printf(pool, "request body must be a JSON object of arguments");
        rc = -1;
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        if (json_is_null(v)) {
            rc = call_set(pool, call, key, strlen(key), NULL, 0, max_args, err);
        } else if (json_is_string(v)) {
            rc = call_set(pool, call, key, strlen(key), json_string_value(v), json_string_length(v), max_args, err);
        } else if (json_is_array(v) && arg_is_array(call->route, key)) {
            sbuf_t b = {pool, NULL, 0, 0};
            if (pg_array_literal(&b, v, 1) != 0) {
                *err = pool_printf(pool, "argument \"%s\": arrays nest at most 6 levels", key);
                rc = -1;
            } else {
                rc = call_set(pool, call, key, strlen(key), b.s, b.len, max_args, err);
            }
        } else {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            if (s == NULL) {
                *err = pool_printf(pool, "cannot encode argument \"%s\"", key);
                rc = -1;
            } else {
                rc = call_set(pool, call, key, strlen(key), s, strlen(s), max_args, err);
                free(s);
            }
        }
        if (rc != 0)
            break;
    }
out:
    json_decref(o);
    return rc;
}

/* ", pulse.keyed_state(<keyed_sql>)" for a route with tag templates */
static void sb_keyed_state(sbuf_t *b, const pulse_route_t *r)
{
    if (r->keyed_sql == NULL)
        return;
    sb_adds(b, ", pulse.keyed_state(");
    sb_adds(b, r->keyed_sql);
    sb_adds(b, ")");
}

int pulse_router_prepare(h2o_mem_pool_t *pool, pulse_call_t *call, char **err)
{
    const pulse_route_t *r = call->route;
    sbuf_t b = {pool, NULL, 0, 0};
    for (size_t i = 0; i < r->nrequired; i++) {
        if (!call->given[i]) {
            *err = pool_printf(pool, "missing required argument \"%s\"", r->arg_names[i]);
            return -1;
        }
    }
    call->params = h2o_mem_alloc_pool(pool, (call->ngiven != 0 ? call->ngiven : 1) * sizeof(char *));
    call->nparams = 0;
    /* a keyed call also reads its keyed state in the statement's snapshot, the one the function reads in (keyed.h) */
    sb_adds(&b, "SELECT ");
    if (r->returns_rows) {
        sb_adds(&b, "coalesce(json_agg(_pulse_r), '[]')::text");
        sb_keyed_state(&b, r);
        sb_adds(&b, " FROM ");
    }
    sb_ident(&b, r->schema);
    sb_adds(&b, ".");
    sb_ident(&b, r->function);
    sb_adds(&b, "(");
    for (size_t i = 0; i < r->nargs; i++) {
        if (!call->given[i])
            continue;
        char num[32];
        if (call->nparams != 0)
            sb_adds(&b, ", ");
        sb_ident(&b, r->arg_names[i]);
        snprintf(num, sizeof(num), " => $%d::", call->nparams + 1);
        sb_adds(&b, num);
        sb_adds(&b, r->arg_types[i]);
        call->params[call->nparams++] = call->values[i];
    }
    if (r->returns_rows) {
        sb_adds(&b, ") AS _pulse_r");
    } else {
        sb_adds(&b, ")::text");
        sb_keyed_state(&b, r);
    }
    call->sql = b.s;
    /* FNV-1a: the same text is the same statement on every connection */
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < b.len; i++) {
        h ^= (unsigned char)b.s[i];
        h *= 1099511628211ULL;
    }
    snprintf(call->stmt_name, sizeof(call->stmt_name), "pulse_%016llx", (unsigned long long)h);
    return 0;
}

char *pulse_router_url_encode(h2o_mem_pool_t *pool, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = h2o_mem_alloc_pool(pool, len * 3 + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
            c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

static size_t json_skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* i at an opening quote: returns the index of the closing one (n when there is none); *esc tells whether it saw a '\\' */
static size_t json_string_end(const char *s, size_t i, size_t n, int *esc)
{
    *esc = 0;
    for (i++; i < n && s[i] != '"'; i++) {
        if (s[i] == '\\') {
            *esc = 1;
            i++;
        }
    }
    return i < n ? i : n;
}

int pulse_router_json_top_string(const char *json, size_t len, const char *key, const char **val, size_t *vlen)
{
    size_t klen = strlen(key), i = json_skip_ws(json, 0, len);
    int depth = 0, found = 0;
    if (i >= len || json[i] != '{')
        return -1;
    for (; i < len; i++) {
        char c = json[i];
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0)
                return found;
        } else if (c == '"') {
            int esc;
            size_t end = json_string_end(json, i, len, &esc);
            if (end >= len)
                return -1;
            size_t j = json_skip_ws(json, end + 1, len);
            if (depth == 1 && j < len && json[j] == ':') { /* a member name of the top-level object */
                if (esc)
                    return -1; /* an escaped name might spell `key` */
                if (end - i - 1 == klen && memcmp(json + i + 1, key, klen) == 0) {
                    found = 0;
                    j = json_skip_ws(json, j + 1, len);
                    if (j < len && json[j] == '"') {
                        size_t vend = json_string_end(json, j, len, &esc);
                        if (vend >= len || esc)
                            return -1;
                        *val = json + j + 1;
                        *vlen = vend - j - 1;
                        found = 1;
                        end = vend;
                    }
                }
            }
            i = end;
        }
    }
    return -1; /* unterminated */
}

char *pulse_router_next_link(h2o_mem_pool_t *pool, const pulse_call_t *call, const char *next_cursor, size_t cursor_len)
{
    const pulse_route_t *r = call->route;
    sbuf_t b = {pool, NULL, 0, 0};
    sb_adds(&b, "</rpc/");
    sb_adds(&b, pulse_router_url_encode(pool, r->name, strlen(r->name)));
    char sep = '?';
    for (size_t i = 0; i < r->nargs; i++) {
        if (!call->given[i] || call->values[i] == NULL || (int)i == r->cursor_arg)
            continue;
        sb_add(&b, &sep, 1);
        sb_adds(&b, pulse_router_url_encode(pool, r->arg_names[i], strlen(r->arg_names[i])));
        sb_adds(&b, "=");
        sb_adds(&b, pulse_router_url_encode(pool, call->values[i], strlen(call->values[i])));
        sep = '&';
    }
    sb_add(&b, &sep, 1);
    sb_adds(&b, "cursor=");
    sb_adds(&b, pulse_router_url_encode(pool, next_cursor, cursor_len));
    sb_adds(&b, ">; rel=\"next\"");
    return b.s;
}
