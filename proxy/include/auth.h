/*
 * auth.h: verification of the HS256 bearer tokens that carry a request's tenant.
 */
#ifndef PULSE_AUTH_H
#define PULSE_AUTH_H

#include <stddef.h>
#include <time.h>
#include "config.h"

#define PULSE_AUTH_MAX_TOKEN 4096
#define PULSE_AUTH_MAX_TENANT 64

/**
 * Verifies the compact JWS `token` (`len` bytes, not necessarily NUL-terminated) with libjwt: the header must name HS256,
 * the signature must match `secret`, the claim `exp` must be a number later than `now` (and `nbf`, when present, not
 * later), and the claim `tenant` must be an integer, or a string of 1 to PULSE_AUTH_MAX_TENANT bytes without whitespace
 * or control characters which, when it reads as a number, is the canonical decimal form of a 64-bit integer (so that
 * one tenant has one spelling; "07", "+7", " 7", "7.0" and a JSON 7.0 are refused). On success copies the tenant as text
 * into `tenant` (at least PULSE_AUTH_MAX_TENANT + 1 bytes) and returns 0; otherwise sets `*reason` to a short static
 * explanation fit for a client and returns -1.
 */
int pulse_auth_verify(const char *token, size_t len, const char *secret, time_t now, char *tenant, const char **reason) PULSE_WUR;

/**
 * Returns how many verifications this thread answered from its cache of verified tokens (for tests).
 */
unsigned long long pulse_auth_cache_hits(void);

#endif
