/*
 * openapi.h: the OpenAPI 3.1 document of the endpoints (GET /openapi.json)
 * and the /docs page that renders it.
 *
 * The catalog thread builds the document from the endpoint catalog each
 * time it publishes a route table (pulse_openapi_build), and the table
 * keeps it (pulse_routes_t.openapi): requests only copy it, with its
 * strong ETag, its gzip variant and 304s (cache.h's representations).
 *
 * What the document says, per endpoint /rpc/<name>: GET (read and search
 * endpoints) with query parameters and POST (every endpoint) with a JSON
 * object body, typed from the function's argument types, required when
 * they have no default, their defaults (constants as `default`, others as
 * x-pulse-default-expression), the function's COMMENT as description, the
 * class, cache TTL and tags as x-pulse-class, x-pulse-ttl (seconds) and
 * x-pulse-tags, the cursor argument marked x-pulse-cursor, the result
 * (rows typed from their columns), the response headers that apply (ETag,
 * Cache-Control and X-Cache of cached endpoints, Link of paged ones,
 * RateLimit and RateLimit-Policy, Pulse-LSN of writes, X-Request-Id) and
 * every problem document the proxy may answer, under a bearer JWT
 * security scheme.  bigint and numeric values are described as numbers or
 * strings: the proxy takes both (a string keeps every digit) and JSON
 * readers that hold numbers in doubles lose digits beyond 2^53.
 */
#ifndef PULSE_OPENAPI_H
#define PULSE_OPENAPI_H

#include <h2o.h>
#include <jansson.h>
#include "config.h"
#include "router.h"

typedef struct pulse_openapi_t pulse_openapi_t;

/* where a value of a type goes: a query parameter, a member of a JSON body, or a column of an answer */
typedef enum { PULSE_OPENAPI_QUERY, PULSE_OPENAPI_BODY, PULSE_OPENAPI_OUTPUT } pulse_openapi_use_t;

/**
 * Returns the JSON Schema (a new reference) of a value of the PostgreSQL type named `pgtype` (format_type's spelling,
 * e.g. "integer", "numeric(10,2)", "timestamp with time zone", "text[]") used as `use`; NULL when out of memory.
 */
json_t *pulse_openapi_type_schema(const char *pgtype, pulse_openapi_use_t use);

/**
 * Builds the document of the endpoints of `routes` from the catalog's JSON text (`catalog`, what
 * PULSE_ROUTER_CATALOG_SQL returned; entries the router skipped are left out). Returns NULL, with a reason in `err`,
 * when the text is not a JSON array or memory runs out.
 */
pulse_openapi_t *pulse_openapi_build(const pulse_routes_t *routes, const char *catalog, char *err, size_t errlen) PULSE_WUR;

/**
 * Frees a document (NULL is fine).
 */
void pulse_openapi_free(pulse_openapi_t *doc);

/**
 * The document's JSON text (`*len` bytes) and its strong ETag (a quoted string), valid while `doc` lives.
 */
const char *pulse_openapi_text(const pulse_openapi_t *doc, size_t *len);
const char *pulse_openapi_etag(const pulse_openapi_t *doc);

/**
 * Answers GET or HEAD /openapi.json with the current route table's document (200, or 304 for a matching
 * If-None-Match; gzip when accepted), 404 when the `openapi` option is off, 503 before the catalog was read. Returns 0.
 */
int pulse_openapi_serve(h2o_req_t *req);

/**
 * Answers GET or HEAD /docs (an HTML page rendering /openapi.json with Redoc) and /docs/redoc.standalone.js (the file
 * of that name in the `docs_dir` option's directory); 404 when docs_dir is empty or `openapi` is off. `path` is the
 * request's path without its query. Returns 0.
 */
int pulse_openapi_docs(h2o_req_t *req, const char *path, size_t len);

#endif
