/*
 * openapi_test.c: the OpenAPI document (openapi.c) built from a catalog
 * like the one PULSE_ROUTER_CATALOG_SQL returns: the type mapping, the
 * paths and operations, parameters and bodies, defaults, the x-pulse-*
 * extensions, responses and headers, and the version and ETag.  (The
 * document is validated against the OpenAPI 3.1 schema by
 * proxy/test/api_surface.sh with a packaged validator.)
 */
#include <stdlib.h>
#include "openapi.h"
#include "test.h"

static const char catalog[] =
    "[{\"name\":\"events_page\",\"schema\":\"api\",\"function\":\"events_page\","
    "\"arg_names\":[\"since\",\"cursor\",\"page_size\",\"kind\",\"ids\",\"at\"],"
    "\"arg_types\":[\"date\",\"text\",\"integer\",\"text\",\"bigint[]\",\"timestamp with time zone\"],"
    "\"arg_defaults\":5,\"result\":\"json\",\"class\":\"search\",\"ttl_ms\":30000,\"tags\":[\"demo.events\"],"
    "\"openapi\":{\"signature\":\"api.events_page(date,text,integer,text,bigint[],timestamp with time zone)\","
    "\"return_type\":\"jsonb\",\"cache_tags\":[\"demo.events\"],\"description\":\"Pages of events.\\nNewest first.\","
    "\"arg_default_values\":{\"cursor\":{\"value\":null},\"page_size\":{\"value\":20},\"kind\":{\"value\":\"view\"},"
    "\"ids\":{\"value\":[1,2]},\"at\":{\"expression\":\"now()\"}},\"result_columns\":null}},"
    "{\"name\":\"counts\",\"schema\":\"api\",\"function\":\"counts\",\"arg_names\":[\"n\"],\"arg_types\":[\"numeric(10,2)\"],"
    "\"arg_defaults\":0,\"result\":\"rows\",\"class\":\"read\",\"ttl_ms\":null,\"tags\":[],"
    "\"openapi\":{\"signature\":\"api.counts(numeric)\",\"return_type\":\"record\",\"cache_tags\":[],\"description\":null,"
    "\"arg_default_values\":{},\"result_columns\":[[\"kind\",\"text\"],[\"n\",\"bigint\"],[\"doc\",\"jsonb\"]]}},"
    "{\"name\":\"add_event\",\"schema\":\"api\",\"function\":\"add_event\",\"arg_names\":[\"kind\",\"doc\"],"
    "\"arg_types\":[\"text\",\"jsonb\"],\"arg_defaults\":1,\"result\":\"json\",\"class\":\"write\",\"ttl_ms\":null,\"tags\":[],"
    "\"openapi\":{\"signature\":\"api.add_event(text,jsonb)\",\"return_type\":\"json\",\"cache_tags\":[\"demo.events\"],"
    "\"description\":\"Adds one.\",\"arg_default_values\":{\"doc\":{\"value\":{\"expression\":\"a jsonb default\"}}},"
    "\"result_columns\":null}},"
    "{\"name\":\"tags\",\"schema\":\"api\",\"function\":\"tags\",\"arg_names\":[],\"arg_types\":[],\"arg_defaults\":0,"
    "\"result\":\"rows\",\"class\":\"batch\",\"ttl_ms\":null,\"tags\":[],\"openapi\":{\"signature\":\"api.tags()\","
    "\"return_type\":\"text\",\"cache_tags\":[],\"description\":null,\"arg_default_values\":{},\"result_columns\":null}},"
    "{\"name\":\"broken\",\"class\":\"nope\"}]";

/* the JSON text of `v` (compact, sorted keys), for comparisons; from a static buffer */
static const char *text_of(json_t *v)
{
    static char buf[4096];
    char *s = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    snprintf(buf, sizeof(buf), "%s", s != NULL ? s : "(null)");
    free(s);
    return buf;
}

static void check_type(const char *pgtype, pulse_openapi_use_t use, const char *want)
{
    char name[160];
    json_t *s = pulse_openapi_type_schema(pgtype, use);
    snprintf(name, sizeof(name), "type: %s as %s", pgtype,
             use == PULSE_OPENAPI_QUERY  ? "query"
             : use == PULSE_OPENAPI_BODY ? "body"
                                         : "output");
    CHECK_STR(text_of(s), want, name);
    json_decref(s);
}

static void test_types(void)
{
    check_type("integer", PULSE_OPENAPI_QUERY, "{\"format\":\"int32\",\"type\":\"integer\"}");
    check_type("smallint", PULSE_OPENAPI_BODY, "{\"format\":\"int32\",\"maximum\":32767,\"minimum\":-32768,\"type\":\"integer\"}");
    check_type("bigint", PULSE_OPENAPI_QUERY,
               "{\"format\":\"int64\",\"pattern\":\"^-?[0-9]+$\",\"type\":[\"integer\",\"string\"]}");
    check_type("bigint", PULSE_OPENAPI_OUTPUT, "{\"format\":\"int64\",\"type\":\"integer\"}");
    check_type(
        "numeric(10,2)", PULSE_OPENAPI_BODY,
        "{\"pattern\":\"^[-+]?([0-9]+(\\\\.[0-9]*)?|\\\\.[0-9]+)([eE][-+]?[0-9]+)?$|^[-+]?(Infinity|NaN)$\",\"type\":[\"number\","
        "\"string\"]}");
    check_type("real", PULSE_OPENAPI_QUERY, "{\"format\":\"float\",\"type\":\"number\"}");
    check_type("double precision", PULSE_OPENAPI_OUTPUT, "{\"format\":\"double\",\"type\":\"number\"}");
    check_type("boolean", PULSE_OPENAPI_QUERY, "{\"type\":\"boolean\"}");
    check_type("text", PULSE_OPENAPI_QUERY, "{\"type\":\"string\"}");
    check_type("character varying(20)", PULSE_OPENAPI_BODY, "{\"type\":\"string\"}");
    check_type("uuid", PULSE_OPENAPI_QUERY, "{\"format\":\"uuid\",\"type\":\"string\"}");
    check_type("date", PULSE_OPENAPI_QUERY, "{\"format\":\"date\",\"type\":\"string\"}");
    check_type("timestamp with time zone", PULSE_OPENAPI_QUERY, "{\"format\":\"date-time\",\"type\":\"string\"}");
    check_type("timestamp(3) with time zone", PULSE_OPENAPI_QUERY, "{\"format\":\"date-time\",\"type\":\"string\"}");
    check_type("timestamp without time zone", PULSE_OPENAPI_QUERY, "{\"type\":\"string\"}");
    check_type("json", PULSE_OPENAPI_QUERY, "{\"contentMediaType\":\"application/json\",\"type\":\"string\"}");
    check_type("jsonb", PULSE_OPENAPI_BODY, "{}");
    check_type("jsonb", PULSE_OPENAPI_OUTPUT, "{}");
    check_type("integer[]", PULSE_OPENAPI_QUERY,
               "{\"description\":\"a PostgreSQL array literal, e.g. {1,2,3}\",\"pattern\":\"^\\\\{.*\\\\}$\",\"type\":\"string\"}");
    check_type("integer[]", PULSE_OPENAPI_BODY,
               "{\"items\":{\"format\":\"int32\",\"type\":\"integer\"},\"type\":[\"array\",\"string\"]}");
    check_type("text[]", PULSE_OPENAPI_OUTPUT, "{\"items\":{\"type\":\"string\"},\"type\":\"array\"}");
    check_type("demo.mood", PULSE_OPENAPI_QUERY, "{\"type\":\"string\"}");
    check_type("", PULSE_OPENAPI_QUERY, "{\"type\":\"string\"}");
}

/* the operation `method` of /rpc/<name> */
static json_t *op(json_t *doc, const char *name, const char *method)
{
    char path[64];
    snprintf(path, sizeof(path), "/rpc/%s", name);
    return json_object_get(json_object_get(json_object_get(doc, "paths"), path), method);
}

/* parameter `name` of an operation */
static json_t *param(json_t *o, const char *name)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(o, "parameters"), i, p)
    {
        const char *n = json_string_value(json_object_get(p, "name"));
        if (n != NULL && strcmp(n, name) == 0)
            return p;
    }
    return NULL;
}

static void test_document(void)
{
    char err[256];
    pulse_routes_t *routes = pulse_router_parse_catalog(catalog, err, sizeof(err));
    CHECK(routes != NULL && routes->n == 4, "the router takes 4 of the 5 catalog entries");
    pulse_openapi_t *d = pulse_openapi_build(routes, catalog, err, sizeof(err));
    CHECK(d != NULL, "the document builds");
    if (d == NULL)
        return;
    size_t len;
    const char *text = pulse_openapi_text(d, &len);
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    CHECK(doc != NULL && strlen(text) == len, "the document is JSON");
    CHECK_STR(json_string_value(json_object_get(doc, "openapi")), "3.1.0", "OpenAPI 3.1.0");
    json_t *paths = json_object_get(doc, "paths");
    CHECK(json_object_size(paths) == 8 && json_object_get(paths, "/rpc/broken") == NULL &&
              json_object_get(paths, "/health") != NULL && json_object_get(paths, "/openapi.json") != NULL,
          "one path per routed endpoint (4) and the proxy's own (4); the unusable endpoint is absent");
    CHECK(op(doc, "events_page", "get") != NULL && op(doc, "events_page", "post") != NULL && op(doc, "counts", "get") != NULL &&
              op(doc, "add_event", "get") == NULL && op(doc, "add_event", "post") != NULL && op(doc, "tags", "get") == NULL,
          "GET for read and search endpoints, POST for all");
    CHECK_STR(json_string_value(json_object_get(op(doc, "events_page", "get"), "operationId")), "events_page",
              "GET's operationId is the name");
    CHECK_STR(json_string_value(json_object_get(op(doc, "events_page", "post"), "operationId")), "events_page_post",
              "a read endpoint's POST has its own operationId");
    CHECK_STR(json_string_value(json_object_get(op(doc, "add_event", "post"), "operationId")), "add_event",
              "a write endpoint's POST is the name");

    json_t *get = op(doc, "events_page", "get");
    CHECK(json_array_size(json_object_get(get, "parameters")) == 7, "a query parameter per argument, and Pulse-Min-LSN");
    CHECK_STR(text_of(json_array_get(json_object_get(get, "parameters"), 6)), "{\"$ref\":\"#/components/parameters/PulseMinLSN\"}",
              "a read's GET takes the Pulse-Min-LSN header (read-your-writes on replicas)");
    CHECK(json_array_size(json_object_get(op(doc, "events_page", "post"), "parameters")) == 1 &&
              json_object_get(op(doc, "add_event", "post"), "parameters") == NULL,
          "a read's POST takes Pulse-Min-LSN too, a write's POST has no parameters");
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_object_get(json_object_get(doc, "components"), "parameters"), "PulseMinLSN"), "in")),
              "header", "Pulse-Min-LSN is a header parameter");
    CHECK_STR(text_of(param(get, "since")),
              "{\"in\":\"query\",\"name\":\"since\",\"required\":true,\"schema\":{\"format\":\"date\","
              "\"type\":\"string\",\"x-pulse-type\":\"date\"}}",
              "an argument without a default is required, typed");
    CHECK_STR(text_of(json_object_get(param(get, "page_size"), "schema")),
              "{\"default\":20,\"format\":\"int32\",\"type\":\"integer\",\"x-pulse-type\":\"integer\"}", "a constant default");
    CHECK(json_is_false(json_object_get(param(get, "page_size"), "required")), "an argument with a default is optional");
    CHECK_STR(
        text_of(json_object_get(param(get, "at"), "schema")),
        "{\"format\":\"date-time\",\"type\":\"string\",\"x-pulse-default-expression\":\"now()\",\"x-pulse-type\":\"timestamp with "
        "time zone\"}",
        "an expression default");
    CHECK(json_is_true(json_object_get(param(get, "cursor"), "x-pulse-cursor")) &&
              json_object_get(param(get, "kind"), "x-pulse-cursor") == NULL,
          "the cursor parameter is marked x-pulse-cursor");
    CHECK(json_is_null(json_object_get(json_object_get(param(get, "cursor"), "schema"), "x-pulse-default")),
          "a NULL default of a string parameter: null does not fit the type, so x-pulse-default");
    CHECK_STR(text_of(json_object_get(json_object_get(param(get, "ids"), "schema"), "x-pulse-default")), "[1,2]",
              "an array default of a query parameter (a string literal there) is x-pulse-default");

    json_t *post = op(doc, "events_page", "post");
    json_t *body = json_object_get(
        json_object_get(json_object_get(json_object_get(post, "requestBody"), "content"), "application/json"), "schema");
    CHECK(json_is_true(json_object_get(json_object_get(post, "requestBody"), "required")) &&
              json_is_false(json_object_get(body, "additionalProperties")) &&
              strcmp(text_of(json_object_get(body, "required")), "[\"since\"]") == 0,
          "POST: a JSON object body, required arguments listed, no other members");
    json_t *props = json_object_get(body, "properties");
    CHECK_STR(
        text_of(json_object_get(props, "ids")),
        "{\"default\":[1,2],\"items\":{\"format\":\"int64\",\"pattern\":\"^-?[0-9]+$\",\"type\":[\"integer\",\"string\"]},\"type\":"
        "[\"array\",\"string\",\"null\"],\"x-pulse-type\":\"bigint[]\"}",
        "a body array argument: a JSON array (or a literal), nullable, with its default");
    CHECK_STR(text_of(json_object_get(json_object_get(props, "cursor"), "default")), "null",
              "a NULL default fits a nullable body member");
    CHECK(json_object_size(props) == 6 && json_is_true(json_object_get(json_object_get(props, "cursor"), "x-pulse-cursor")),
          "the body has every argument, the cursor marked");

    CHECK_STR(json_string_value(json_object_get(get, "x-pulse-class")), "search", "x-pulse-class");
    CHECK_STR(text_of(json_object_get(get, "x-pulse-ttl")), "30.0", "x-pulse-ttl in seconds");
    CHECK_STR(text_of(json_object_get(get, "x-pulse-tags")), "[\"demo.events\"]", "x-pulse-tags");
    CHECK_STR(json_string_value(json_object_get(get, "x-pulse-function")),
              "api.events_page(date,text,integer,text,bigint[],timestamp with time zone)", "x-pulse-function");
    CHECK_STR(json_string_value(json_object_get(get, "summary")), "Pages of events.", "summary: the comment's first line");
    CHECK(strncmp(json_string_value(json_object_get(get, "description")),
                  "Pages of events.\nNewest first.\n\nCalls api.events_page", 50) == 0,
          "description: the comment, then what the endpoint calls");
    CHECK_STR(text_of(json_object_get(get, "tags")), "[\"search\"]", "operation tags: the class");

    json_t *res = json_object_get(get, "responses"), *h200 = json_object_get(json_object_get(res, "200"), "headers");
    CHECK(json_object_get(h200, "ETag") && json_object_get(h200, "X-Cache") && json_object_get(h200, "Cache-Control") &&
              json_object_get(h200, "Link") && json_object_get(h200, "RateLimit") && json_object_get(h200, "RateLimit-Policy") &&
              json_object_get(h200, "X-Request-Id") && !json_object_get(h200, "Pulse-LSN"),
          "a cached, paged GET: ETag, X-Cache, Cache-Control, Link, RateLimit, RateLimit-Policy, X-Request-Id");
    CHECK(json_object_get(res, "304") && json_object_get(res, "400") && json_object_get(res, "401") &&
              json_object_get(res, "403") && json_object_get(res, "404") && json_object_get(res, "409") &&
              json_object_get(res, "429") && json_object_get(res, "500") && json_object_get(res, "503") &&
              !json_object_get(res, "413") && !json_object_get(res, "415"),
          "GET responses: 304 and the problem statuses, no body statuses");
    json_t *pres = json_object_get(post, "responses");
    CHECK(!json_object_get(pres, "304") && json_object_get(pres, "413") && json_object_get(pres, "415"),
          "POST responses: 413, 415, no 304");
    CHECK_STR(json_string_value(json_object_get(json_object_get(res, "429"), "$ref")), "#/components/responses/TooManyRequests",
              "problem responses are shared components");

    json_t *counts = op(doc, "counts", "get"), *c200 = json_object_get(json_object_get(counts, "responses"), "200");
    CHECK(!json_object_get(json_object_get(c200, "headers"), "ETag") &&
              !json_object_get(json_object_get(counts, "responses"), "304") &&
              !json_object_get(json_object_get(c200, "headers"), "Link") && json_is_null(json_object_get(counts, "x-pulse-ttl")),
          "an uncached endpoint: no ETag, no 304, no Link, x-pulse-ttl null");
    CHECK_STR(
        text_of(json_object_get(json_object_get(json_object_get(c200, "content"), "application/json"), "schema")),
        "{\"description\":\"the function's rows "
        "(json_agg)\",\"items\":{\"properties\":{\"doc\":{\"x-pulse-type\":\"jsonb\"},\"kind\":"
        "{\"type\":[\"string\",\"null\"],\"x-pulse-type\":\"text\"},\"n\":{\"format\":\"int64\",\"type\":[\"integer\",\"null\"],"
        "\"x-pulse-type\":\"bigint\"}},\"type\":\"object\"},\"type\":\"array\"}",
        "rows: an array of objects typed from the result columns (NULL allowed)");
    CHECK(json_object_get(counts, "summary") == NULL, "no comment: no summary");
    json_t *t200 = json_object_get(json_object_get(op(doc, "tags", "post"), "responses"), "200");
    CHECK_STR(text_of(json_object_get(
                  json_object_get(json_object_get(json_object_get(t200, "content"), "application/json"), "schema"), "items")),
              "{\"type\":\"string\"}", "SETOF text: an array of strings");
    CHECK(json_is_false(json_object_get(json_object_get(op(doc, "tags", "post"), "requestBody"), "required")),
          "a body without required arguments is optional");

    json_t *add = op(doc, "add_event", "post");
    CHECK(json_object_get(json_object_get(json_object_get(json_object_get(add, "responses"), "200"), "headers"), "Pulse-LSN") !=
                  NULL &&
              json_object_get(add, "x-pulse-ttl") == NULL,
          "a write: Pulse-LSN, no x-pulse-ttl");
    json_t *addprops = json_object_get(
        json_object_get(json_object_get(json_object_get(json_object_get(add, "requestBody"), "content"), "application/json"),
                        "schema"),
        "properties");
    CHECK_STR(text_of(json_object_get(addprops, "doc")),
              "{\"default\":{\"expression\":\"a jsonb default\"},\"x-pulse-type\":\"jsonb\"}",
              "a jsonb default that looks like an expression stays a value");

    json_t *comp = json_object_get(doc, "components");
    CHECK_STR(text_of(json_object_get(json_object_get(comp, "securitySchemes"), "bearer")),
              "{\"bearerFormat\":\"JWT\",\"description\":\"An HS256 JWT signed with the proxy's jwt_secret, with exp and a tenant "
              "claim (an "
              "integer or a string).\",\"scheme\":\"bearer\",\"type\":\"http\"}",
              "bearer JWT security scheme");
    CHECK_STR(text_of(json_object_get(doc, "security")), "[{\"bearer\":[]}]", "every operation needs the token");
    CHECK_STR(text_of(json_object_get(json_object_get(json_object_get(paths, "/health"), "get"), "security")), "[]",
              "/health needs none");
    json_t *tmr = json_object_get(json_object_get(comp, "responses"), "TooManyRequests");
    CHECK(json_object_get(json_object_get(tmr, "content"), "application/problem+json") != NULL &&
              json_object_get(json_object_get(tmr, "headers"), "Retry-After") != NULL &&
              json_object_get(json_object_get(tmr, "headers"), "RateLimit") != NULL,
          "429: a problem document with Retry-After and RateLimit");
    CHECK(json_object_size(json_object_get(comp, "responses")) == 12, "eleven problem responses and NotModified");

    /* version and ETag */
    const char *etag = pulse_openapi_etag(d);
    CHECK(etag != NULL && strlen(etag) == 34 && etag[0] == '"', "a strong ETag");
    pulse_openapi_t *again = pulse_openapi_build(routes, catalog, err, sizeof(err));
    CHECK(again != NULL && strcmp(pulse_openapi_etag(again), etag) == 0, "the same catalog gives the same document and ETag");
    char other[sizeof(catalog) + 8];
    snprintf(other, sizeof(other), "%s", catalog);
    *strstr(other, "Adds one.") = 'B'; /* another description */
    pulse_openapi_t *changed = pulse_openapi_build(routes, other, err, sizeof(err));
    size_t clen = 0;
    const char *ctext = changed != NULL ? pulse_openapi_text(changed, &clen) : NULL;
    json_t *cdoc = ctext != NULL ? json_loadb(ctext, clen, 0, &jerr) : NULL;
    CHECK(changed != NULL && strcmp(pulse_openapi_etag(changed), etag) != 0 &&
              strcmp(json_string_value(json_object_get(json_object_get(cdoc, "info"), "version")),
                     json_string_value(json_object_get(json_object_get(doc, "info"), "version"))) != 0,
          "another catalog: another version and ETag");
    CHECK(pulse_openapi_build(routes, "{}", err, sizeof(err)) == NULL && strstr(err, "JSON array") != NULL,
          "a catalog that is not an array");
    CHECK(pulse_openapi_build(routes, "[", err, sizeof(err)) == NULL, "a catalog that is not JSON");
    json_decref(cdoc);
    json_decref(doc);
    pulse_openapi_free(changed);
    pulse_openapi_free(again);
    pulse_openapi_free(d);
    pulse_openapi_free(NULL);
    pulse_router_free(routes);
}

int main(void)
{
    test_types();
    test_document();
    TEST_DONE();
}
