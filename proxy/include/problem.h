/*
 * problem.h: RFC 9457 problem documents (application/problem+json) and the
 * mapping of PostgreSQL SQLSTATEs to HTTP statuses.
 */
#ifndef PULSE_PROBLEM_H
#define PULSE_PROBLEM_H

#include <stddef.h>
#include "config.h"

#define PULSE_PROBLEM_CONTENT_TYPE "application/problem+json"

/**
 * Renders {"type","title","status","detail","request_id"} for `status`. `type` is "about:blank"; the title is the
 * status's reason phrase; `detail` and `request_id` may be NULL (then omitted). Returns a malloc'd NUL-terminated string
 * the caller frees, its length in `*len`, or NULL when out of memory.
 */
char *pulse_problem_render(int status, const char *detail, const char *request_id, size_t *len) PULSE_WUR;

/**
 * Returns the reason phrase of an HTTP status ("Not Found"), "Error" for statuses it does not know.
 */
const char *pulse_problem_title(int status);

/**
 * Maps a SQLSTATE (five characters, as PQresultErrorField(res, PG_DIAG_SQLSTATE) returns it; NULL for none) to the
 * HTTP status the client gets: data exceptions (class 22) and undefined function or indeterminate type (42883, 42P18,
 * 42725) are 400, insufficient privilege including row-level security (42501) 403, integrity violations (class 23) 409,
 * statement timeout (57014), connection trouble (class 08, 57P01-57P03), resources (class 53) and serialization
 * failures (40001, 40P01) 503, and anything else 500.
 */
int pulse_problem_status_for_sqlstate(const char *sqlstate);

/**
 * Tells whether the client may reveal the server's error message for `status` (a 4xx mapped from a SQLSTATE): true
 * for 400, 403 and 409; a 5xx never leaks database internals.
 */
int pulse_problem_detail_is_public(int status);

#endif
