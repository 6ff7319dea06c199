/*
 * openapi.c: the OpenAPI 3.1 document of the endpoint catalog (see
 * openapi.h): built by the catalog thread from the catalog's JSON once per
 * route table, kept with the table, served by the event loops.
 *
 * A document owns a memory pool holding its text, its gzip variant and its
 * ETag (a pulse_cache_entry_t, so cache.c's representation choice, ETags
 * and 304s serve it); it is immutable once built and freed with the route
 * table that holds it.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include "cache.h"
#include "log.h"
#include "openapi.h"
#include "problem.h"
#include "respond.h"

struct pulse_openapi_t {
    h2o_mem_pool_t pool;
    pulse_cache_entry_t entry;
};

#define OA_SET(o, k, v) json_object_set_new((o), (k), (v))

/* ---- types --------------------------------------------------------------------------------------------------------- */

/* the schema of a scalar PostgreSQL type (no "[]"), typmod already stripped */
static json_t *oa_scalar_schema(const char *t, pulse_openapi_use_t use)
{
    if (strcmp(t, "smallint") == 0)
        return json_pack("{s:s, s:s, s:i, s:i}", "type", "integer", "format", "int32", "minimum", -32768, "maximum", 32767);
    if (strcmp(t, "integer") == 0)
        return json_pack("{s:s, s:s}", "type", "integer", "format", "int32");
    if (strcmp(t, "bigint") == 0)
        return use == PULSE_OPENAPI_OUTPUT
                   ? json_pack("{s:s, s:s}", "type", "integer", "format", "int64")
                   : json_pack("{s:[ss], s:s, s:s}", "type", "integer", "string", "format", "int64", "pattern", "^-?[0-9]+$");
    if (strcmp(t, "numeric") == 0)
        return json_pack("{s:[ss], s:s}", "type", "number", "string", "pattern",
                         "^[-+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?$|^[-+]?(Infinity|NaN)$");
    if (strcmp(t, "real") == 0)
        return json_pack("{s:s, s:s}", "type", "number", "format", "float");
    if (strcmp(t, "double precision") == 0)
        return json_pack("{s:s, s:s}", "type", "number", "format", "double");
    if (strcmp(t, "boolean") == 0)
        return json_pack("{s:s}", "type", "boolean");
    if (strcmp(t, "uuid") == 0)
        return json_pack("{s:s, s:s}", "type", "string", "format", "uuid");
    if (strcmp(t, "date") == 0)
        return json_pack("{s:s, s:s}", "type", "string", "format", "date");
    if (strcmp(t, "timestamp with time zone") == 0)
        return json_pack("{s:s, s:s}", "type", "string", "format", "date-time");
    if (strcmp(t, "json") == 0 || strcmp(t, "jsonb") == 0)
        return use == PULSE_OPENAPI_QUERY ? json_pack("{s:s, s:s}", "type", "string", "contentMediaType", "application/json")
                                          : json_object(); /* any JSON value */
    return json_pack("{s:s}", "type", "string"); /* text, varchar, timestamps without zone, intervals, enums, domains, ... */
}

json_t *pulse_openapi_type_schema(const char *pgtype, pulse_openapi_use_t use)
{
    char t[128];
    snprintf(t, sizeof(t), "%s", pgtype != NULL ? pgtype : "");
    size_t n = strlen(t);
    if (n > 2 && strcmp(t + n - 2, "[]") == 0) {
        t[n - 2] = '\0';
        if (use == PULSE_OPENAPI_QUERY)
            return json_pack("{s:s, s:s, s:s}", "type", "string", "pattern", "^\\{.*\\}$", "description",
                             "a PostgreSQL array literal, e.g. {1,2,3}");
        json_t *items = pulse_openapi_type_schema(t, use);
        if (items == NULL)
            return NULL;
        /* a JSON array, or (as a body member) the same array literal the query takes */
        return use == PULSE_OPENAPI_BODY ? json_pack("{s:[ss], s:o}", "type", "array", "string", "items", items)
                                         : json_pack("{s:s, s:o}", "type", "array", "items", items);
    }
    char *paren = strchr(t, '(');
    if (paren != NULL) { /* numeric(10,2), character varying(20), timestamp(3) with time zone */
        char rest[128];
        const char *close = strchr(paren, ')');
        snprintf(rest, sizeof(rest), "%s", close != NULL ? close + 1 : "");
        snprintf(paren, sizeof(t) - (size_t)(paren - t), "%s", rest);
    }
    return oa_scalar_schema(t, use);
}

/* adds "null" to a schema's type (SQL NULL: a JSON body's null, a NULL column); a schema without a type takes it */
static void oa_nullable(json_t *schema)
{
    json_t *type = json_object_get(schema, "type");
    if (json_is_string(type))
        OA_SET(schema, "type", json_pack("[ss]", json_string_value(type), "null"));
    else if (json_is_array(type))
        json_array_append_new(type, json_string("null"));
}

/* whether a value fits the schema's "type" well enough to be its `default` */
static int oa_admits(const json_t *schema, const json_t *v)
{
    const json_t *type = json_object_get(schema, "type");
    if (type == NULL)
        return 1;
    const char *want = json_is_string(v)    ? "string"
                       : json_is_integer(v) ? "integer"
                       : json_is_real(v)    ? "number"
                       : json_is_boolean(v) ? "boolean"
                       : json_is_array(v)   ? "array"
                       : json_is_object(v)  ? "object"
                                            : "null";
    for (size_t i = 0; i < (json_is_array(type) ? json_array_size(type) : 1); i++) {
        const char *t = json_string_value(json_is_array(type) ? json_array_get(type, i) : type);
        if (t != NULL && (strcmp(t, want) == 0 || (strcmp(t, "number") == 0 && strcmp(want, "integer") == 0)))
            return 1;
    }
    return 0;
}

/* ---- the shared components -------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int status;
    const char *description;
} oa_problems[] = {
    {"BadRequest", 400, "A bad argument, body, cursor or path (SQLSTATE class 22, 42883, 42P18, 42725); the detail says which."},
    {"Unauthorized", 401, "A missing, malformed, badly signed or expired bearer token, or a tenant claim the proxy refuses."},
    {"Forbidden", 403, "Refused by PostgreSQL's privileges or row-level security (SQLSTATE 42501)."},
    {"NotFound", 404, "No such endpoint (it may have been removed since this document was read)."},
    {"MethodNotAllowed", 405, "A method the resource does not take (see Allow)."},
    {"Conflict", 409, "An integrity constraint refused the call (SQLSTATE class 23)."},
    {"PayloadTooLarge", 413, "The request body is over the proxy's body_limit."},
    {"UnsupportedMediaType", 415, "A POST body that is not JSON."},
    {"TooManyRequests", 429, "A rate limit bucket of the endpoint's class is empty (Retry-After, RateLimit, RateLimit-Policy)."},
    {"InternalError", 500, "Any other failure; the detail is generic and the proxy's log has the server's message."},
    {"ServiceUnavailable", 503, "Statement timeout, database unavailable, or the proxy shed the call under load (Retry-After)."},
};

static json_t *oa_header(const char *description, json_t *schema)
{
    return json_pack("{s:s, s:o}", "description", description, "schema", schema);
}

static json_t *oa_ref(const char *kind, const char *name)
{
    char ref[96];
    snprintf(ref, sizeof(ref), "#/components/%s/%s", kind, name);
    return json_pack("{s:s}", "$ref", ref);
}

static json_t *oa_components(void)
{
    json_t *headers = json_object(), *responses = json_object();
    OA_SET(headers, "X-Request-Id",
           oa_header("The request id (the client's when it was 1-64 characters of [A-Za-z0-9._:-]); also in the access log and "
                     "PostgreSQL's application_name.",
                     json_pack("{s:s}", "type", "string")));
    OA_SET(headers, "ETag",
           oa_header("Strong entity tag of the representation (gzip and identity differ).", json_pack("{s:s}", "type", "string")));
    OA_SET(headers, "Cache-Control",
           oa_header("private, max-age, stale-while-revalidate and stale-if-error of the cache entry.",
                     json_pack("{s:s}", "type", "string")));
    OA_SET(headers, "X-Cache",
           oa_header("Where the answer came from.", json_pack("{s:s, s:[sss]}", "type", "string", "enum", "hit", "miss", "stale")));
    OA_SET(headers, "Link",
           oa_header("RFC 8288 link to the next page: </rpc/<name>?<same arguments>&cursor=<next_cursor>>; rel=\"next\".",
                     json_pack("{s:s}", "type", "string")));
    OA_SET(
        headers, "RateLimit",
        oa_header("draft-ietf-httpapi-ratelimit-headers-12: per bucket that applies, \"<class>-<scope>\";r=<remaining>;t=<seconds "
                  "until the next token>;pk=:<partition key>:. Present when a rate limit applies to the endpoint's class.",
                  json_pack("{s:s}", "type", "string")));
    OA_SET(
        headers, "RateLimit-Policy",
        oa_header("draft-ietf-httpapi-ratelimit-headers-12: per bucket that applies, \"<class>-<scope>\";q=<burst>;w=<seconds to "
                  "refill>;pk=:<partition key>:.",
                  json_pack("{s:s}", "type", "string")));
    OA_SET(headers, "Retry-After",
           oa_header("Seconds to wait before trying again.", json_pack("{s:s, s:i}", "type", "integer", "minimum", 0)));
    OA_SET(headers, "Pulse-LSN",
           oa_header("The commit LSN of the write (read-your-writes across read replicas).",
                     json_pack("{s:s, s:s}", "type", "string", "pattern", "^[0-9A-F]+/[0-9A-F]+$")));
    OA_SET(headers, "WWW-Authenticate", oa_header("Bearer challenge.", json_pack("{s:s}", "type", "string")));
    OA_SET(headers, "Allow", oa_header("The methods the resource takes.", json_pack("{s:s}", "type", "string")));
    for (size_t i = 0; i < sizeof(oa_problems) / sizeof(oa_problems[0]); i++) {
        json_t *h = json_pack("{s:o}", "X-Request-Id", oa_ref("headers", "X-Request-Id"));
        int st = oa_problems[i].status;
        if (st == 401)
            OA_SET(h, "WWW-Authenticate", oa_ref("headers", "WWW-Authenticate"));
        if (st == 405)
            OA_SET(h, "Allow", oa_ref("headers", "Allow"));
        if (st == 429 || st == 503)
            OA_SET(h, "Retry-After", oa_ref("headers", "Retry-After"));
        if (st == 429) {
            OA_SET(h, "RateLimit", oa_ref("headers", "RateLimit"));
            OA_SET(h, "RateLimit-Policy", oa_ref("headers", "RateLimit-Policy"));
        }
        OA_SET(responses, oa_problems[i].name,
               json_pack("{s:s, s:o, s:{s:{s:o}}}", "description", oa_problems[i].description, "headers", h, "content",
                         PULSE_PROBLEM_CONTENT_TYPE, "schema", oa_ref("schemas", "Problem")));
    }
    OA_SET(responses, "NotModified",
           json_pack("{s:s, s:{s:o, s:o}}", "description", "If-None-Match matched the representation's ETag.", "headers", "ETag",
                     oa_ref("headers", "ETag"), "X-Request-Id", oa_ref("headers", "X-Request-Id")));
    json_t *problem = json_pack("{s:s, s:s, s:[sss], s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}}", "type", "object",
                                "description", "RFC 9457 problem details", "required", "type", "title", "status", "properties",
                                "type", "type", "string", "title", "type", "string", "status", "type", "integer", "detail", "type",
                                "string", "request_id", "type", "string");
    json_t *min_lsn =
        json_pack("{s:s, s:s, s:b, s:s, s:{s:s, s:s}}", "name", "Pulse-Min-LSN", "in", "header", "required", 0, "description",
                  "Read-your-writes: the Pulse-LSN of an earlier write; the call is answered by a server that has "
                  "replayed it (a replica, or the primary).",
                  "schema", "type", "string", "pattern", "^[0-9A-Fa-f]+/[0-9A-Fa-f]+$");
    return json_pack("{s:{s:{s:s, s:s, s:s, s:s}}, s:{s:o}, s:{s:o}, s:o, s:o}", "securitySchemes", "bearer", "type", "http",
                     "scheme", "bearer", "bearerFormat", "JWT", "description",
                     "An HS256 JWT signed with the proxy's jwt_secret, with exp and a tenant claim (an integer or a string).",
                     "schemas", "Problem", problem, "parameters", "PulseMinLSN", min_lsn, "headers", headers, "responses",
                     responses);
}

/* ---- one endpoint -------------------------------------------------------------------------------------------------------- */

/* the schema of argument `i` of `r` as `use`, with its default; NULL when out of memory */
static json_t *oa_arg_schema(const pulse_route_t *r, size_t i, json_t *defaults, pulse_openapi_use_t use)
{
    json_t *s = pulse_openapi_type_schema(r->arg_types[i], use);
    if (s == NULL)
        return NULL;
    OA_SET(s, "x-pulse-type", json_string(r->arg_types[i]));
    if (use == PULSE_OPENAPI_BODY)
        oa_nullable(s);
    json_t *d = json_object_get(defaults, r->arg_names[i]);
    json_t *value = json_object_get(d, "value"), *expr = json_object_get(d, "expression");
    if (value != NULL && oa_admits(s, value))
        OA_SET(s, "default", json_incref(value));
    else if (value != NULL)
        OA_SET(s, "x-pulse-default", json_incref(value));
    else if (json_is_string(expr))
        OA_SET(s, "x-pulse-default-expression", json_incref(expr));
    return s;
}

static const char *oa_cursor_description =
    "The opaque cursor of the next page: the previous answer's next_cursor, or its Link header.";

static json_t *oa_parameters(const pulse_route_t *r, json_t *defaults)
{
    json_t *params = json_array();
    for (size_t i = 0; i < r->nargs; i++) {
        json_t *p = json_pack("{s:s, s:s, s:b, s:o*}", "name", r->arg_names[i], "in", "query", "required", i < r->nrequired,
                              "schema", oa_arg_schema(r, i, defaults, PULSE_OPENAPI_QUERY));
        if ((int)i == r->cursor_arg) {
            OA_SET(p, "description", json_string(oa_cursor_description));
            OA_SET(p, "x-pulse-cursor", json_true());
        }
        json_array_append_new(params, p);
    }
    return params;
}

static json_t *oa_request_body(const pulse_route_t *r, json_t *defaults)
{
    json_t *props = json_object(), *required = json_array();
    for (size_t i = 0; i < r->nargs; i++) {
        json_t *s = oa_arg_schema(r, i, defaults, PULSE_OPENAPI_BODY);
        if ((int)i == r->cursor_arg && s != NULL) {
            OA_SET(s, "description", json_string(oa_cursor_description));
            OA_SET(s, "x-pulse-cursor", json_true());
        }
        OA_SET(props, r->arg_names[i], s != NULL ? s : json_object());
        if (i < r->nrequired)
            json_array_append_new(required, json_string(r->arg_names[i]));
    }
    json_t *schema = json_pack("{s:s, s:o, s:b}", "type", "object", "properties", props, "additionalProperties", 0);
    if (json_array_size(required) != 0)
        OA_SET(schema, "required", required);
    else
        json_decref(required);
    return json_pack("{s:b, s:s, s:{s:{s:o}}}", "required", r->nrequired != 0, "description",
                     "The arguments by name; null is SQL NULL; an omitted argument takes its default.", "content",
                     "application/json", "schema", schema);
}

/* the schema of a 200 body: the function's JSON, or its rows as an array of objects (or of scalars) */
static json_t *oa_result_schema(const pulse_route_t *r, json_t *meta)
{
    if (!r->returns_rows)
        return json_pack("{s:s}", "description", "the function's JSON, as PostgreSQL produced it");
    json_t *cols = json_object_get(meta, "result_columns"), *items;
    if (json_is_array(cols)) {
        json_t *props = json_object();
        size_t i;
        json_t *c;
        json_array_foreach(cols, i, c)
        {
            const char *name = json_string_value(json_array_get(c, 0)), *type = json_string_value(json_array_get(c, 1));
            json_t *s = name != NULL ? pulse_openapi_type_schema(type, PULSE_OPENAPI_OUTPUT) : NULL;
            if (s == NULL)
                continue;
            oa_nullable(s);
            OA_SET(s, "x-pulse-type", json_string(type != NULL ? type : ""));
            OA_SET(props, name, s);
        }
        items = json_pack("{s:s, s:o}", "type", "object", "properties", props);
    } else {
        items = pulse_openapi_type_schema(json_string_value(json_object_get(meta, "return_type")), PULSE_OPENAPI_OUTPUT);
    }
    return json_pack("{s:s, s:s, s:o*}", "type", "array", "description", "the function's rows (json_agg)", "items", items);
}

/* the responses of an operation; `get`: a GET (304 applies to cached ones) */
static json_t *oa_responses(const pulse_route_t *r, json_t *meta, int get, int post)
{
    int cached = r->cls == PULSE_CLASS_READ || r->cls == PULSE_CLASS_SEARCH;
    json_t *h = json_pack("{s:o, s:o, s:o}", "X-Request-Id", oa_ref("headers", "X-Request-Id"), "RateLimit",
                          oa_ref("headers", "RateLimit"), "RateLimit-Policy", oa_ref("headers", "RateLimit-Policy"));
    if (cached && r->ttl_ms > 0) {
        OA_SET(h, "ETag", oa_ref("headers", "ETag"));
        OA_SET(h, "Cache-Control", oa_ref("headers", "Cache-Control"));
        OA_SET(h, "X-Cache", oa_ref("headers", "X-Cache"));
    }
    if (r->cursor_arg >= 0)
        OA_SET(h, "Link", oa_ref("headers", "Link"));
    if (!cached)
        OA_SET(h, "Pulse-LSN", oa_ref("headers", "Pulse-LSN"));
    json_t *res = json_pack("{s:{s:s, s:o, s:{s:{s:o*}}}}", "200", "description", "The function's answer.", "headers", h, "content",
                            "application/json", "schema", oa_result_schema(r, meta));
    if (get && cached && r->ttl_ms > 0)
        OA_SET(res, "304", oa_ref("responses", "NotModified"));
    static const struct {
        const char *status, *name;
        int post_only;
    } errs[] = {{"400", "BadRequest", 0},
                {"401", "Unauthorized", 0},
                {"403", "Forbidden", 0},
                {"404", "NotFound", 0},
                {"409", "Conflict", 0},
                {"413", "PayloadTooLarge", 1},
                {"415", "UnsupportedMediaType", 1},
                {"429", "TooManyRequests", 0},
                {"500", "InternalError", 0},
                {"503", "ServiceUnavailable", 0}};
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
        if (!errs[i].post_only || post)
            OA_SET(res, errs[i].status, oa_ref("responses", errs[i].name));
    return res;
}

/* an operation of `r`: GET (`post` 0) or POST */
static json_t *oa_operation(const pulse_route_t *r, json_t *meta, int post)
{
    int readonly = r->cls == PULSE_CLASS_READ || r->cls == PULSE_CLASS_SEARCH;
    char id[96];
    snprintf(id, sizeof(id), "%s%s", r->name, post && readonly ? "_post" : "");
    json_t *defaults = json_object_get(meta, "arg_default_values");
    const char *comment = json_string_value(json_object_get(meta, "description"));
    char summary[128] = "";
    if (comment != NULL) { /* its first line, shortened */
        size_t n = strcspn(comment, "\n");
        snprintf(summary, sizeof(summary), "%.*s", (int)(n > 120 ? 120 : n), comment);
    }
    char desc[512];
    snprintf(desc, sizeof(desc), "%s%sCalls %s.%s as a %s endpoint%s.", comment != NULL ? comment : "",
             comment != NULL ? "\n\n" : "", r->schema, r->function, pulse_config_class_name(r->cls),
             readonly && r->ttl_ms > 0 ? ", cached when the proxy has a response cache" : "");
    json_t *op = json_pack("{s:s, s:s, s:[s]}", "operationId", id, "description", desc, "tags", pulse_config_class_name(r->cls));
    if (summary[0] != '\0')
        OA_SET(op, "summary", json_string(summary));
    json_t *params = post ? json_array() : oa_parameters(r, defaults);
    if (readonly) /* reads may go to a replica (replicas.h) */
        json_array_append_new(params, oa_ref("parameters", "PulseMinLSN"));
    if (post)
        OA_SET(op, "requestBody", oa_request_body(r, defaults));
    if (json_array_size(params) != 0)
        OA_SET(op, "parameters", params);
    else
        json_decref(params);
    OA_SET(op, "responses", oa_responses(r, meta, !post, post));
    OA_SET(op, "x-pulse-class", json_string(pulse_config_class_name(r->cls)));
    OA_SET(op, "x-pulse-function", json_incref(json_object_get(meta, "signature")));
    if (readonly)
        OA_SET(op, "x-pulse-ttl", r->ttl_ms > 0 ? json_real((double)r->ttl_ms / 1000.0) : json_null());
    json_t *tags = json_object_get(meta, "cache_tags");
    OA_SET(op, "x-pulse-tags", json_is_array(tags) ? json_incref(tags) : json_array());
    return op;
}

/* the paths the proxy serves besides /rpc: health, readiness, metrics, this document */
static void oa_builtin_paths(json_t *paths)
{
    static const struct {
        const char *path, *id, *description, *type;
    } b[] = {{"/health", "health", "200 while the process runs.", "application/json"},
             {"/ready", "ready",
              "200 when the routes are loaded and PostgreSQL answers (the body tells Redis's and the invalidation "
              "channel's state), 503 otherwise.",
              "application/json"},
             {"/metrics", "metrics", "Prometheus metrics, text format 0.0.4.", "text/plain"},
             {"/openapi.json", "openapi", "This document.", "application/json"}};
    for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++)
        OA_SET(paths, b[i].path,
               json_pack("{s:{s:s, s:s, s:[], s:[s], s:{s:{s:s, s:{s:{s:{}}}}}}}", "get", "operationId", b[i].id, "description",
                         b[i].description, "security", "tags", "proxy", "responses", "200", "description", "OK", "content",
                         b[i].type, "schema"));
}

static json_t *oa_document(const pulse_routes_t *routes, json_t *catalog, const char *version)
{
    json_t *paths = json_object(), *tags = json_array();
    int classes[PULSE_CLASS_COUNT] = {0};
    size_t i;
    json_t *e;
    json_array_foreach(catalog, i, e)
    {
        const pulse_route_t *r = pulse_router_find(routes, json_string_value(json_object_get(e, "name")) ?: "",
                                                   strlen(json_string_value(json_object_get(e, "name")) ?: ""));
        if (r == NULL)
            continue; /* the router skipped it */
        json_t *meta = json_object_get(e, "openapi"), *item = json_object();
        char path[80];
        snprintf(path, sizeof(path), "/rpc/%s", r->name);
        if (r->cls == PULSE_CLASS_READ || r->cls == PULSE_CLASS_SEARCH)
            OA_SET(item, "get", oa_operation(r, meta, 0));
        OA_SET(item, "post", oa_operation(r, meta, 1));
        OA_SET(paths, path, item);
        classes[r->cls] = 1;
    }
    static const char *class_desc[PULSE_CLASS_COUNT] = {"Read endpoints: GET, HEAD or POST, cacheable.",
                                                        "Search endpoints: GET, HEAD or POST, cacheable.", "Write endpoints: POST.",
                                                        "Batch endpoints: POST, long statement timeout."};
    for (int c = 0; c < PULSE_CLASS_COUNT; c++)
        if (classes[c])
            json_array_append_new(
                tags, json_pack("{s:s, s:s}", "name", pulse_config_class_name((pulse_class_t)c), "description", class_desc[c]));
    json_array_append_new(tags, json_pack("{s:s, s:s}", "name", "proxy", "description", "The proxy's own resources."));
    oa_builtin_paths(paths);
    return json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:[{s:[]}], s:o, s:o, s:o}", "openapi", "3.1.0", "info", "title", "pulse-proxy", "version",
        version, "description",
        "The SQL functions of the pulse endpoint catalog, served by pulse-proxy. Every error is an application/problem+json "
        "document. Read and search endpoints take GET (and HEAD) with query parameters and POST with a JSON object; write and "
        "batch "
        "endpoints take POST. Other methods are answered 405, OPTIONS by the proxy (CORS). Rate limited answers carry RateLimit "
        "and RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers-12).",
        "security", "bearer", "tags", tags, "paths", paths, "components", oa_components());
}

/* ---- build and free ------------------------------------------------------------------------------------------------------ */

pulse_openapi_t *pulse_openapi_build(const pulse_routes_t *routes, const char *catalog, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *arr = json_loads(catalog, 0, &jerr);
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "the catalog is not a JSON array: %s", arr == NULL ? jerr.text : "wrong type");
        json_decref(arr);
        return NULL;
    }
    /* the version: a hash of the catalog, so it changes when the catalog does */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char version[17];
    if (EVP_Digest(catalog, strlen(catalog), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8)
        memset(md, 0, 8);
    for (int i = 0; i < 8; i++)
        snprintf(version + 2 * i, 3, "%02x", md[i]);
    json_t *doc = oa_document(routes, arr, version);
    json_decref(arr);
    char *text = doc != NULL ? json_dumps(doc, JSON_PRESERVE_ORDER | JSON_COMPACT) : NULL;
    json_decref(doc);
    pulse_openapi_t *d = text != NULL ? calloc(1, sizeof(*d)) : NULL;
    if (d == NULL) {
        free(text);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h2o_mem_init_pool(&d->pool);
    h2o_iovec_t body = h2o_strdup(&d->pool, text, SIZE_MAX);
    free(text);
    struct timeval now;
    gettimeofday(&now, NULL);
    if (pulse_cache_entry_init(&d->pool, &d->entry, 200, h2o_iovec_init(H2O_STRLIT("application/json")), body,
                               h2o_iovec_init(NULL, 0), (uint64_t)now.tv_sec * 1000, 0) != 0) {
        /* no gzip variant: served as it is */
    }
    return d;
}

void pulse_openapi_free(pulse_openapi_t *doc)
{
    if (doc == NULL)
        return;
    h2o_mem_clear_pool(&doc->pool);
    free(doc);
}

const char *pulse_openapi_text(const pulse_openapi_t *doc, size_t *len)
{
    *len = doc->entry.body.len;
    return doc->entry.body.base;
}

const char *pulse_openapi_etag(const pulse_openapi_t *doc)
{
    return doc->entry.etag.base;
}

/* ---- serving ------------------------------------------------------------------------------------------------------------- */

static void oa_log(h2o_req_t *req, const char *rid, const struct timeval *t0, size_t bytes)
{
    pulse_respond_log_t e = {.request_id = rid, .t0 = t0, .counted = 1, .bytes = bytes};
    (void)pulse_respond_log(req, &e);
}

int pulse_openapi_serve(h2o_req_t *req)
{
    struct timeval t0;
    char rid[65];
    gettimeofday(&t0, NULL);
    pulse_respond_request_id_of(req, rid);
    pulse_config_t *conf = pulse_config_acquire();
    int on = conf->openapi, retry = conf->retry_after;
    pulse_config_release(conf);
    if (!on) {
        oa_log(req, rid, &t0, pulse_respond_problem(req, rid, 404, "no such resource", 0, NULL));
        return 0;
    }
    pulse_routes_t *routes = pulse_router_acquire();
    if (routes == NULL || routes->openapi == NULL) {
        if (routes != NULL)
            pulse_router_release(routes);
        oa_log(req, rid, &t0, pulse_respond_problem(req, rid, 503, "the endpoint catalog is not loaded yet", retry, NULL));
        return 0;
    }
    ssize_t ae = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, -1),
            inm = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    pulse_cache_repr_t rep;
    pulse_cache_select(&req->pool, &routes->openapi->entry, ae >= 0 ? req->headers.entries[ae].value.base : NULL,
                       ae >= 0 ? req->headers.entries[ae].value.len : 0, inm >= 0 ? req->headers.entries[inm].value.base : NULL,
                       inm >= 0 ? req->headers.entries[inm].value.len : 0, &rep);
    /* the answer outlives the route table's reference: copied into the request's pool */
    h2o_iovec_t etag = h2o_strdup(&req->pool, rep.etag.base, rep.etag.len);
    h2o_iovec_t body = rep.not_modified ? h2o_iovec_init(NULL, 0) : h2o_strdup(&req->pool, rep.body.base, rep.body.len);
    pulse_router_release(routes);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, etag.base, etag.len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Encoding"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, rid, SIZE_MAX).base, strlen(rid));
    if (rep.not_modified) {
        req->res.status = 304;
        req->res.reason = "Not Modified";
        h2o_send_inline(req, NULL, 0);
        oa_log(req, rid, &t0, 0);
        return 0;
    }
    if (rep.gzip)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, H2O_STRLIT("gzip"));
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    req->res.content_length = body.len;
    h2o_send_inline(req, body.base, body.len);
    oa_log(req, rid, &t0, body.len);
    return 0;
}

static const char oa_docs_page[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>pulse-proxy API</title>\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n</head>\n<body>\n"
    "<redoc spec-url=\"/openapi.json\"></redoc>\n<script src=\"/docs/redoc.standalone.js\"></script>\n</body>\n</html>\n";

int pulse_openapi_docs(h2o_req_t *req, const char *path, size_t len)
{
    struct timeval t0;
    char rid[65], file[1024] = "";
    gettimeofday(&t0, NULL);
    pulse_respond_request_id_of(req, rid);
    pulse_config_t *conf = pulse_config_acquire();
    int on = conf->openapi && conf->docs_dir[0] != '\0';
    if (on)
        snprintf(file, sizeof(file), "%s/redoc.standalone.js", conf->docs_dir);
    pulse_config_release(conf);
    int page = h2o_memis(path, len, H2O_STRLIT("/docs")), script = h2o_memis(path, len, H2O_STRLIT("/docs/redoc.standalone.js"));
    if (!on || !(page || script)) {
        oa_log(req, rid, &t0, pulse_respond_problem(req, rid, 404, "no such resource", 0, NULL));
        return 0;
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, rid, SIZE_MAX).base, strlen(rid));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    if (script) {
        if (h2o_file_send(req, 200, "OK", file, h2o_iovec_init(H2O_STRLIT("text/javascript; charset=utf-8")), 0) != 0) {
            pulse_log_msg("error", rid, "docs: cannot read %s", file);
            memset(&req->res.headers, 0, sizeof(req->res.headers));
            oa_log(req, rid, &t0, pulse_respond_problem(req, rid, 404, "the docs renderer is not installed (docs_dir)", 0, NULL));
            return 0;
        }
        oa_log(req, rid, &t0, 0);
        return 0;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/html; charset=utf-8"));
    req->res.content_length = sizeof(oa_docs_page) - 1;
    h2o_send_inline(req, oa_docs_page, sizeof(oa_docs_page) - 1);
    oa_log(req, rid, &t0, sizeof(oa_docs_page) - 1);
    return 0;
}
