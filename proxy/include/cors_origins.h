/*
 * cors_origins.h: the `cors_origins` option's list (cors.h says what it
 * means): its check (config.c) and the match of a request's Origin (cors.c).
 */
#ifndef PULSE_CORS_ORIGINS_H
#define PULSE_CORS_ORIGINS_H

#include <stddef.h>

#ifndef PULSE_WUR
#define PULSE_WUR __attribute__((warn_unused_result))
#endif

/**
 * Checks a cors_origins value: empty, or items separated by "," or lines (blanks around them ignored), each "*" or an origin
 * scheme://host[:port] (scheme [A-Za-z][A-Za-z0-9+.-]*, host of letters, digits, "-", "." or a bracketed IPv6
 * address, port 1-65535, nothing after it: no path, no "/"). Returns 0, or -1 with a one-line reason in `err`.
 */
int pulse_cors_check_origins(const char *list, char *err, size_t errlen) PULSE_WUR;

/**
 * Tells whether the Origin `origin` (`len` bytes) is allowed by the cors_origins value `list`: 1 by "*", 2 by an item
 * equal to it (ASCII case-insensitive), 0 otherwise (also for an empty list, an empty origin, and "null").
 */
int pulse_cors_origin_allowed(const char *list, const char *origin, size_t len);

#endif
