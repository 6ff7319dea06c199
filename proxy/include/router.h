/*
 * router.h: the route table built from the extension's endpoint catalog
 * (pulse.endpoints), and the translation of one HTTP call into a typed,
 * parameterized SQL statement.
 */
#ifndef PULSE_ROUTER_H
#define PULSE_ROUTER_H

#include <h2o.h>
#include <stddef.h>
#include "config.h"

#define PULSE_ROUTER_MAX_ARGS 100 /* FUNC_MAX_ARGS */

/* The query the catalog thread runs: one JSON array describing every endpoint (the last line: what openapi.c adds). */
#define PULSE_ROUTER_CATALOG_SQL                                                                                                   \
    "SELECT coalesce(json_agg(json_build_object('name', name, 'schema', schema, 'function', function, "                            \
    "'arg_names', arg_names, 'arg_types', arg_types, 'arg_defaults', arg_defaults, 'result', result, "                             \
    "'class', class, 'ttl_ms', (extract(epoch FROM ttl) * 1000)::bigint, 'tags', key_tags, 'keyed_sql', keyed_sql, "               \
    "'openapi', json_build_object('signature', signature, 'return_type', return_type, 'cache_tags', tags, "                        \
    "'description', description, 'arg_default_values', arg_default_values, 'result_columns', result_columns)) "                    \
    "ORDER BY name), '[]')::text "                                                                                                 \
    "FROM pulse.endpoints"

typedef struct pulse_route_t {
    char *name;        /* /rpc/<name> */
    char *schema;      /* of the function */
    char *function;    /* its name */
    pulse_class_t cls; /* read, search, write, batch */
    int returns_rows;  /* 1: set-returning, aggregated into a JSON array */
    size_t nargs;      /* input arguments in call order */
    char **arg_names;
    char **arg_types; /* format_type() of each, used as $n::type */
    size_t nrequired; /* the first nrequired arguments have no default */
    long long ttl_ms; /* cache lifetime; -1: the proxy's default */
    size_t ntags;
    char **tags;     /* the tags of its cache key (pulse.endpoints.key_tags: plain tags and the epochs of its templates) */
    char *keyed_sql; /* NULL, or the text[] expression filling its tag templates from $1..$nrequired (keyed.h) */
    int cursor_arg;  /* index of the argument named "cursor", or -1 */
} pulse_route_t;

typedef struct pulse_routes_t {
    size_t n;
    pulse_route_t *v;                               /* sorted by name */
    struct pulse_openapi_t *openapi;                /* the OpenAPI document of these routes (openapi.h), owned; NULL: none */
    void (*openapi_free)(struct pulse_openapi_t *); /* frees it (set with it: the router does not depend on openapi.c) */
    int _refcnt;                                    /* see pulse_router_acquire */
} pulse_routes_t;

/* One call of an endpoint, normalized: arguments in the function's order. */
typedef struct pulse_call_t {
    const pulse_route_t *route;
    const char **values;  /* per argument: its text, NULL for SQL NULL or omitted */
    unsigned char *given; /* per argument: 1 when the request passed it */
    size_t ngiven;
    /* filled by pulse_router_prepare */
    char *sql;          /* SELECT "schema"."fn"("a" => $1::type, ...)[, pulse.keyed_state(<keyed_sql>)] */
    char stmt_name[24]; /* prepared statement name, a hash of sql */
    int nparams;
    const char **params; /* values of the given arguments, in $n order */
} pulse_call_t;

/**
 * Builds a route table from the JSON text PULSE_ROUTER_CATALOG_SQL returns. Endpoints whose description is unusable are
 * skipped with a message on stderr. Returns NULL (with a reason in `err`) when the text is not a JSON array.
 */
pulse_routes_t *pulse_router_parse_catalog(const char *json, char *err, size_t errlen) PULSE_WUR;

/**
 * Frees a route table that was never published.
 */
void pulse_router_free(pulse_routes_t *routes);

/**
 * Makes `routes` the table requests are routed with (taking ownership; NULL at exit); the previous table is freed when
 * its last holder releases it.
 */
void pulse_router_publish(pulse_routes_t *routes);

/**
 * Returns the current route table with a reference held (NULL before the first load); release it with
 * pulse_router_release. Safe from any thread.
 */
pulse_routes_t *pulse_router_acquire(void);

/**
 * Releases a reference taken by pulse_router_acquire.
 */
void pulse_router_release(pulse_routes_t *routes);

/**
 * Returns the route named by the `len` bytes at `name`, or NULL.
 */
const pulse_route_t *pulse_router_find(const pulse_routes_t *routes, const char *name, size_t len);

/**
 * Starts a call of `route`: allocates its argument slots from `pool`.
 */
void pulse_router_call_init(h2o_mem_pool_t *pool, pulse_call_t *call, const pulse_route_t *route);

/**
 * Adds the arguments of a URL query string (`query`, `len` bytes, without the '?'; percent-decoded, '+' is a space).
 * Returns 0, or -1 with a message for the client in `*err` (from `pool`): an unknown or repeated argument, more than
 * `max_args` arguments, a malformed escape or a NUL byte.
 */
int pulse_router_args_from_query(h2o_mem_pool_t *pool, pulse_call_t *call, const char *query, size_t len, int max_args,
                                 char **err) PULSE_WUR;

/**
 * Adds the arguments of a JSON object body: strings are passed as they are, numbers and booleans in their JSON form,
 * null as SQL NULL, arrays and objects as JSON text. Returns 0, or -1 with a message in `*err` as
 * pulse_router_args_from_query does, also for a body that is not a JSON object.
 */
int pulse_router_args_from_json(h2o_mem_pool_t *pool, pulse_call_t *call, const char *body, size_t len, int max_args,
                                char **err) PULSE_WUR;

/**
 * Checks that every argument without a default was given, then builds the SQL text, the prepared statement name and the
 * parameter array of the call (all from `pool`). Returns 0, or -1 with a message in `*err`.
 */
int pulse_router_prepare(h2o_mem_pool_t *pool, pulse_call_t *call, char **err) PULSE_WUR;

/**
 * Returns the value of an RFC 8288 Link header pointing at the next page: `</rpc/<name>?<given arguments but cursor,
 * in order>&cursor=<next_cursor>>; rel="next"`, every name and value percent-encoded; from `pool`.
 */
char *pulse_router_next_link(h2o_mem_pool_t *pool, const pulse_call_t *call, const char *next_cursor, size_t cursor_len);

/**
 * Finds the string value of `key` in the top-level object of the JSON text `json` (`len` bytes) without building a
 * document: the next page's cursor of a search answer, whose items come first and are most of its bytes. Returns 1 and
 * points `*val`/`*vlen` into `json` when the (last) member `key` is a string without escapes; 0 when the text is an object
 * without such a string member; -1 when it cannot tell (not an object, unterminated, escapes in the key or the value):
 * then parse the document.
 */
int pulse_router_json_top_string(const char *json, size_t len, const char *key, const char **val, size_t *vlen);

/**
 * Percent-encodes `len` bytes of `s` for a URL query component (RFC 3986 unreserved characters are kept) into a
 * NUL-terminated string from `pool`.
 */
char *pulse_router_url_encode(h2o_mem_pool_t *pool, const char *s, size_t len);

/**
 * Appends the SQL identifier `id` to `buf` (at most `cap` bytes including the NUL), double-quoted with embedded quotes
 * doubled. Returns the number of bytes written, or -1 when it does not fit.
 */
int pulse_router_quote_ident(char *buf, size_t cap, const char *id);

#endif
