/*
 * sfv.h: serialization of HTTP structured field values (RFC 9651): the
 * bare items pulse-proxy sends (Strings, Tokens, Integers, Byte Sequences),
 * their Parameters and the members of a List, written into a caller's
 * buffer.  Used by the RateLimit and RateLimit-Policy fields (ratelimit.h).
 *
 * A serializer refuses what RFC 9651 cannot carry instead of writing an
 * invalid field: a String with a byte outside 0x20-0x7E, a Token or Key
 * that breaks its grammar, an Integer beyond 15 digits, or a value that
 * does not fit the buffer.  The first refusal sticks: every later call
 * writes nothing and pulse_sfv_end returns -1, so a caller may chain calls
 * and check once.
 */
#ifndef PULSE_SFV_H
#define PULSE_SFV_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"

#define PULSE_SFV_INTEGER_MAX 999999999999999LL /* RFC 9651 3.3.1: at most 15 digits */

typedef struct pulse_sfv_t {
    char *buf;
    size_t cap; /* bytes of buf, the NUL included */
    size_t len;
    int failed;
    int members; /* list members begun */
} pulse_sfv_t;

/**
 * Starts a field value in `buf` (`cap` bytes, at least 1): empty and NUL-terminated.
 */
void pulse_sfv_init(pulse_sfv_t *s, char *buf, size_t cap);

/**
 * Begins the next member of a List: writes the ", " separator before every member but the first.
 */
void pulse_sfv_member(pulse_sfv_t *s);

/**
 * Writes a bare item: a String ("..." with `"` and `\` escaped; only bytes 0x20-0x7E), a Token (ALPHA or "*", then
 * tchar, ":" or "/"), an Integer (-999,999,999,999,999 to 999,999,999,999,999) or a Byte Sequence (":" base64 ":").
 */
void pulse_sfv_string(pulse_sfv_t *s, const char *v, size_t len);
void pulse_sfv_token(pulse_sfv_t *s, const char *v, size_t len);
void pulse_sfv_integer(pulse_sfv_t *s, int64_t v);
void pulse_sfv_bytes(pulse_sfv_t *s, const void *v, size_t len);

/**
 * Writes ";<key>=" before a parameter's value (then call one of the bare item writers), or ";<key>" alone for a
 * Boolean true (pulse_sfv_param_true). A key is lcalpha or "*", then lcalpha, DIGIT, "_", "-", "." or "*".
 */
void pulse_sfv_param(pulse_sfv_t *s, const char *key);
void pulse_sfv_param_true(pulse_sfv_t *s, const char *key);

/**
 * Ends the value: returns its length (the buffer holds it, NUL-terminated), or -1 when something was refused (the
 * buffer then holds an empty string).
 */
int pulse_sfv_end(pulse_sfv_t *s) PULSE_WUR;

#endif
