/*
 * respond.h: what every handler of pulse-proxy answers with: the request id,
 * the client's address, problem documents (problem.h renders them) and the
 * access log line with the request's metrics.
 */
#ifndef PULSE_RESPOND_H
#define PULSE_RESPOND_H

#include <h2o.h>
#include <netdb.h>
#include <sys/time.h>
#include "router.h"

/**
 * Fills `buf` (at least 65 bytes) with the request id: the client's X-Request-Id when it is 1 to 64 characters of
 * [A-Za-z0-9._:-], a fresh random one (32 hex digits) otherwise.
 */
void pulse_respond_request_id(const char *given, size_t len, char *buf);

/**
 * The request id of `req` (pulse_respond_request_id of its X-Request-Id header) into `buf` (65 bytes).
 */
void pulse_respond_request_id_of(h2o_req_t *req, char *buf);

/**
 * Fills `host` with the numeric address of the request's client ("" when unknown).
 */
void pulse_respond_peer(h2o_req_t *req, char host[NI_MAXHOST]);

/**
 * Milliseconds since `t0`.
 */
double pulse_respond_ms_since(const struct timeval *t0);

/**
 * Answers `req` with a problem document of `status` and `detail` (Cache-Control: no-store, X-Request-Id; Retry-After
 * `retry_after` on a 503; WWW-Authenticate on a 401; Allow when `allow` is not NULL). Returns the body's length.
 */
size_t pulse_respond_problem(h2o_req_t *req, const char *request_id, int status, const char *detail, int retry_after,
                             const char *allow);

/* What the access log line of a request says beyond the request itself. */
typedef struct pulse_respond_log_t {
    const char *request_id;
    const struct timeval *t0;   /* when the request started */
    const pulse_route_t *route; /* the endpoint; NULL: none matched, or a built-in */
    int counted;                /* counted in the request metrics (built-ins /health, /ready, /metrics are not) */
    const char *tenant;         /* NULL: not authenticated */
    size_t bytes;               /* body bytes sent */
    const char *source;         /* db, cache, local, flight, ...; NULL: none */
    const char *trace_id;       /* NULL: no trace */
    const char *cache;          /* hit, miss, stale; NULL: not cached */
    const char *remote;         /* the client's address; NULL: looked up here */
} pulse_respond_log_t;

/**
 * Writes the access log line of `req` (status and method from `req`), and counts it in its loop's metrics when
 * `e->counted`. Returns the request's duration in milliseconds.
 */
double pulse_respond_log(h2o_req_t *req, const pulse_respond_log_t *e);

#endif
