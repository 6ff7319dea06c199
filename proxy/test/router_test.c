/*
 * router_test.c: the route table and call building (router.c).
 */
#include <stdlib.h>
#include "router.h"
#include "test.h"

static const char catalog[] =
    "[{\"name\":\"events_page\",\"schema\":\"api\",\"function\":\"events_page\","
    "\"arg_names\":[\"cursor\",\"page_size\",\"kind\"],\"arg_types\":[\"text\",\"integer\",\"text\"],"
    "\"arg_defaults\":3,\"result\":\"json\",\"class\":\"search\",\"ttl_ms\":null,\"tags\":[\"demo.events\"]},"
    "{\"name\":\"event\",\"schema\":\"api\",\"function\":\"event\",\"arg_names\":[\"id\"],\"arg_types\":[\"bigint\"],"
    "\"arg_defaults\":0,\"result\":\"json\",\"class\":\"read\",\"ttl_ms\":60000,\"tags\":[]},"
    "{\"name\":\"rows\",\"schema\":\"We\\\"ird\",\"function\":\"f\",\"arg_names\":[\"a b\"],\"arg_types\":[\"text[]\"],"
    "\"arg_defaults\":1,\"result\":\"rows\",\"class\":\"write\",\"ttl_ms\":null,\"tags\":[]},"
    "{\"name\":\"broken\",\"class\":\"nope\"}]";

int main(void)
{
    char err[256];
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    char *e = NULL;

    pulse_routes_t *routes = pulse_router_parse_catalog(catalog, err, sizeof(err));
    CHECK(routes != NULL && routes->n == 3, "catalog parses; the unusable endpoint is skipped");
    CHECK(pulse_router_parse_catalog("{}", err, sizeof(err)) == NULL, "catalog must be an array");
    CHECK(pulse_router_parse_catalog("[", err, sizeof(err)) == NULL, "catalog must be JSON");
    const pulse_route_t *page = pulse_router_find(routes, "events_page", 11);
    const pulse_route_t *ev = pulse_router_find(routes, "event/x", 5);
    const pulse_route_t *rows = pulse_router_find(routes, "rows", 4);
    CHECK(page != NULL && ev != NULL && rows != NULL, "routes are found by name (and length)");
    CHECK(pulse_router_find(routes, "events", 6) == NULL && pulse_router_find(routes, "eventz", 6) == NULL,
          "unknown names are not found");
    CHECK(page->cls == PULSE_CLASS_SEARCH && page->nrequired == 0 && page->cursor_arg == 0 && page->ntags == 1, "route fields");
    CHECK(ev->nrequired == 1 && ev->ttl_ms == 60000 && ev->cursor_arg == -1, "required arguments and ttl");

    pulse_call_t call;
    pulse_router_call_init(&pool, &call, page);
    CHECK(pulse_router_args_from_query(&pool, &call, "kind=a%20b+c&page_size=5", 24, 10, &e) == 0, "query parses");
    CHECK_STR(call.values[2], "a b c", "percent and plus decoding");
    CHECK(pulse_router_prepare(&pool, &call, &e) == 0, "prepare");
    CHECK_STR(call.sql, "SELECT \"api\".\"events_page\"(\"page_size\" => $1::integer, \"kind\" => $2::text)::text",
              "SQL in parameter order with types");
    CHECK(call.nparams == 2 && strcmp(call.params[0], "5") == 0 && strcmp(call.params[1], "a b c") == 0, "parameters");
    CHECK(strncmp(call.stmt_name, "pulse_", 6) == 0 && strlen(call.stmt_name) == 22, "statement name");
    char first[24];
    strcpy(first, call.stmt_name);
    pulse_router_call_init(&pool, &call, page);
    CHECK(pulse_router_args_from_query(&pool, &call, "page_size=9&kind=x", 18, 10, &e) == 0 &&
              pulse_router_prepare(&pool, &call, &e) == 0 && strcmp(call.stmt_name, first) == 0,
          "same argument set, other values and order: same statement");
    pulse_router_call_init(&pool, &call, page);
    CHECK(pulse_router_args_from_query(&pool, &call, "page_size=9", 11, 10, &e) == 0 &&
              pulse_router_prepare(&pool, &call, &e) == 0 && strcmp(call.stmt_name, first) != 0,
          "other argument set: other statement");
    pulse_router_call_init(&pool, &call, page);
    CHECK(pulse_router_args_from_query(&pool, &call, "", 0, 10, &e) == 0 && pulse_router_prepare(&pool, &call, &e) == 0,
          "no arguments");
    CHECK_STR(call.sql, "SELECT \"api\".\"events_page\"()::text", "defaults apply when omitted");
    pulse_router_call_init(&pool, &call, page);
    CHECK(pulse_router_args_from_query(&pool, &call, "&&kind=&", 8, 10, &e) == 0 && call.ngiven == 1 &&
              strcmp(call.values[2], "") == 0,
          "empty pairs are skipped, empty values kept");

#define BAD_QUERY(q, want, name)                                                                                                   \
    do {                                                                                                                           \
        pulse_router_call_init(&pool, &call, page);                                                                                \
        e = NULL;                                                                                                                  \
        CHECK(pulse_router_args_from_query(&pool, &call, q, strlen(q), 2, &e) != 0 && e != NULL && strstr(e, want) != NULL, name); \
    } while (0)
    BAD_QUERY("nope=1", "unknown argument \"nope\"", "unknown argument");
    BAD_QUERY("kind=1&kind=2", "given twice", "repeated argument");
    BAD_QUERY("kind=1&page_size=2&cursor=3", "too many", "too many arguments");
    BAD_QUERY("kind=%00", "NUL", "NUL byte");
    BAD_QUERY("kind=%4", "percent", "truncated escape");
    BAD_QUERY("kind=%G0", "percent", "bad escape");
    BAD_QUERY("=1", "empty argument name", "empty name");

    pulse_call_t c2;
    pulse_router_call_init(&pool, &c2, ev);
    CHECK(pulse_router_prepare(&pool, &c2, &e) != 0 && strstr(e, "missing required argument \"id\"") != NULL,
          "missing required argument");

    const char *body = "{\"page_size\": 3, \"kind\": null, \"cursor\": \"abc\"}";
    pulse_router_call_init(&pool, &call, page);
    CHECK(pulse_router_args_from_json(&pool, &call, body, strlen(body), 10, &e) == 0, "JSON body parses");
    CHECK(call.given[2] && call.values[2] == NULL, "JSON null is SQL NULL");
    CHECK_STR(call.values[1], "3", "JSON number as text");
    CHECK(pulse_router_prepare(&pool, &call, &e) == 0 && call.nparams == 3 && call.params[2] == NULL,
          "NULL is bound as a parameter");
#define BAD_JSON(b, want, name)                                                                                                    \
    do {                                                                                                                           \
        pulse_router_call_init(&pool, &call, page);                                                                                \
        e = NULL;                                                                                                                  \
        CHECK(pulse_router_args_from_json(&pool, &call, b, strlen(b), 10, &e) != 0 && e != NULL && strstr(e, want) != NULL, name); \
    } while (0)
    BAD_JSON("[1]", "JSON object", "JSON array body");
    BAD_JSON("{\"kind\": ", "not valid JSON", "truncated JSON");
    BAD_JSON("{\"kind\": 1, \"kind\": 2}", "not valid JSON", "duplicate keys");
    BAD_JSON("{\"x\": 1}", "unknown argument", "unknown argument in JSON");
    BAD_JSON("\xff\xfe", "not valid JSON", "invalid UTF-8");
    BAD_JSON("{\"kind\": \"a\\u0000b\"}", "NUL", "NUL in a JSON string");

    pulse_router_call_init(&pool, &call, rows);
    body = "{\"a b\": [1, {\"x\": true}]}";
    CHECK(pulse_router_args_from_json(&pool, &call, body, strlen(body), 10, &e) == 0 && pulse_router_prepare(&pool, &call, &e) == 0,
          "set-returning call");
    CHECK_STR(call.values[0], "{\"1\",\"{\\\"x\\\":true}\"}", "JSON array for an array argument: a PostgreSQL array literal");
    CHECK_STR(call.sql,
              "SELECT coalesce(json_agg(_pulse_r), '[]')::text FROM \"We\"\"ird\".\"f\"(\"a b\" => $1::text[]) AS _pulse_r",
              "rows result is aggregated; identifiers are quoted");

    /* JSON arrays for array arguments: nested, NULLs, quotes and backslashes; too deep is refused */
    pulse_router_call_init(&pool, &call, rows);
    body = "{\"a b\": [[\"x\\\"y\", null], [\"b\\\\s\", 2.5], [], [true]]}";
    CHECK(pulse_router_args_from_json(&pool, &call, body, strlen(body), 10, &e) == 0, "nested JSON array argument");
    CHECK_STR(call.values[0], "{{\"x\\\"y\",NULL},{\"b\\\\s\",\"2.5\"},{},{\"true\"}}", "nested array literal, NULL, escapes");
    pulse_router_call_init(&pool, &call, rows);
    body = "{\"a b\": []}";
    CHECK(pulse_router_args_from_json(&pool, &call, body, strlen(body), 10, &e) == 0 && strcmp(call.values[0], "{}") == 0,
          "an empty JSON array is the empty array literal");
    pulse_router_call_init(&pool, &call, rows);
    body = "{\"a b\": [[[[[[[1]]]]]]]}";
    CHECK(pulse_router_args_from_json(&pool, &call, body, strlen(body), 10, &e) != 0 && e != NULL && strstr(e, "6 levels") != NULL,
          "an array nested 7 levels is refused");
    pulse_router_call_init(&pool, &call, rows);
    body = "{\"a b\": [[[[[[1]]]]]]}";
    CHECK(pulse_router_args_from_json(&pool, &call, body, strlen(body), 10, &e) == 0 &&
              strcmp(call.values[0], "{{{{{{\"1\"}}}}}}") == 0,
          "an array nested 6 levels is taken");
    pulse_router_call_init(&pool, &call, ev);
    body = "{\"id\": [1, 2]}";
    CHECK(pulse_router_args_from_json(&pool, &call, body, strlen(body), 10, &e) == 0 && strcmp(call.values[0], "[1,2]") == 0,
          "a JSON array for a scalar argument stays JSON text (json, jsonb)");

    char q[16];
    CHECK(pulse_router_quote_ident(q, sizeof(q), "a\"b") == 6 && strcmp(q, "\"a\"\"b\"") == 0, "quote_ident");
    CHECK(pulse_router_quote_ident(q, 4, "abc") == -1, "quote_ident refuses to overflow");
    CHECK_STR(pulse_router_url_encode(&pool, "a b/c?d=e&f~_.-", 15), "a%20b%2Fc%3Fd%3De%26f~_.-", "url_encode");

    pulse_router_call_init(&pool, &call, page);
    CHECK(pulse_router_args_from_query(&pool, &call, "kind=a%26b&cursor=old&page_size=2", 33, 10, &e) == 0, "link call");
    CHECK_STR(pulse_router_next_link(&pool, &call, "AB+/=", 5),
              "</rpc/events_page?page_size=2&kind=a%26b&cursor=AB%2B%2F%3D>; rel=\"next\"",
              "Link: arguments in order, old cursor replaced, all encoded");
    pulse_router_call_init(&pool, &call, page);
    CHECK_STR(pulse_router_next_link(&pool, &call, "c", 1), "</rpc/events_page?cursor=c>; rel=\"next\"",
              "Link without other arguments");

    const char *v;
    size_t vl;
#define TOP(j, want) pulse_router_json_top_string(j, strlen(j), "next_cursor", &v, &vl) == (want)
    CHECK(TOP("{\"items\": [{\"next_cursor\": \"inner\"}], \"next_cursor\": \"abc\"}", 1) && vl == 3 && memcmp(v, "abc", 3) == 0,
          "top_string: the top-level member, not the nested one");
    CHECK(TOP("{\"items\": [\"next_cursor\", {\"a\": \"}]\\\"\"}], \"x\": 1}", 0),
          "top_string: names and brackets in strings are skipped");
    CHECK(TOP("{\"next_cursor\": null}", 0), "top_string: null is not a string");
    CHECK(TOP(" { \"next_cursor\" : \"a\", \"next_cursor\": 5 }", 0), "top_string: the last member wins (jansson's rule)");
    CHECK(TOP("{\"next_cursor\": \"a\\/b\"}", -1), "top_string: an escaped value goes to the parser");
    CHECK(TOP("{\"next\\u005fcursor\": \"a\"}", -1), "top_string: an escaped name goes to the parser");
    CHECK(TOP("[{\"next_cursor\": \"a\"}]", -1) && TOP("{\"next_cursor\": \"a", -1) && TOP("{\"a\": [1, 2", -1),
          "top_string: not an object, unterminated");
    CHECK(TOP("{\"next_cursor\":\"\"}", 1) && vl == 0, "top_string: an empty string");
#undef TOP

    pulse_router_publish(routes);
    pulse_routes_t *held = pulse_router_acquire();
    pulse_router_publish(NULL);
    CHECK(held == routes && pulse_router_find(held, "event", 5) != NULL, "a held table outlives its replacement");
    pulse_router_release(held);
    h2o_mem_clear_pool(&pool);
    TEST_DONE();
}
