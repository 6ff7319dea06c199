/*
 * digest.h: SHA-256 for the proxy's hot paths (cache keys, ETags, the token
 * cache).  OpenSSL 3 looks an algorithm up again whenever it is named by
 * EVP_sha256() in EVP_Digest/EVP_DigestInit_ex ("implicit fetch"); the
 * proxy fetches it once per process instead.
 */
#ifndef PULSE_DIGEST_H
#define PULSE_DIGEST_H

#include <openssl/evp.h>
#include <stddef.h>
#include "config.h"

/**
 * Returns SHA-256 fetched once for the process (thread-safe; EVP_MD objects may be shared by threads), or NULL when
 * OpenSSL has none.
 */
const EVP_MD *pulse_digest_sha256(void);

/**
 * Writes the SHA-256 of `len` bytes at `p` into `out` (32 bytes). Returns 0, or -1 when OpenSSL fails.
 */
int pulse_digest(const void *p, size_t len, unsigned char out[32]) PULSE_WUR;

#endif
