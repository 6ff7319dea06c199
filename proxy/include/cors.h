/*
 * cors.h: cross-origin resource sharing (the Fetch standard's CORS
 * protocol) for browsers calling pulse-proxy from pages of other origins.
 *
 * The allowed origins are the `cors_origins` option: empty (the default)
 * turns CORS off, "*" allows every origin, otherwise a list (a YAML
 * sequence, or one string with the items separated by ',' or ';') of
 * serialized origins (scheme "://" host [":" port], no path), compared
 * case-insensitively with the request's Origin.  Reloadable: every answer
 * reads the current configuration.
 *
 *   - Answers to an allowed Origin carry Access-Control-Allow-Origin (the
 *     origin, or "*" when "*" is configured) and Access-Control-Expose-
 *     Headers (Link, ETag, RateLimit, RateLimit-Policy, Retry-After,
 *     X-Request-Id, X-Cache, Pulse-LSN); with CORS on, every answer varies
 *     by Origin (Vary: Origin).  An origin that is not allowed gets no CORS
 *     header: the browser hides the answer from the page.  Credentials
 *     (cookies) are never allowed: the API takes bearer tokens.
 *   - OPTIONS is answered by the proxy, never by an endpoint: a preflight
 *     (Origin and Access-Control-Request-Method) from an allowed origin
 *     gets 204 with the resource's methods, the request headers the API
 *     reads and Access-Control-Max-Age (`cors_max_age`); from an origin
 *     that is not allowed, a 403 problem document; for a method the
 *     resource does not take, a 405 with Allow.  An OPTIONS that is not a
 *     preflight gets 204 with Allow.
 */
#ifndef PULSE_CORS_H
#define PULSE_CORS_H

#include <h2o.h>
#include <stddef.h>
#include "config.h"

/* request headers a preflight allows */
#define PULSE_CORS_ALLOW_HEADERS                                                                                                   \
    "Authorization, Content-Type, If-None-Match, Pulse-Min-LSN, X-Request-Id, traceparent, tracestate, Last-Event-ID"
/* response headers a page may read */
#define PULSE_CORS_EXPOSE_HEADERS "Link, ETag, RateLimit, RateLimit-Policy, Retry-After, X-Request-Id, X-Cache, Pulse-LSN"

/**
 * Answers an OPTIONS request for a resource that takes `methods` (e.g. "GET, HEAD, POST"; NULL: no such resource, 404)
 * as the header describes. Always returns 0.
 */
int pulse_cors_options(h2o_req_t *req, const char *methods);

/**
 * Registers, on `pathconf`, the filter that adds the CORS headers to every answer (see the header). Returns 0 or -1.
 */
int pulse_cors_register(h2o_pathconf_t *pathconf) PULSE_WUR;

#endif
