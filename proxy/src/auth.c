/*
 * auth.c: HS256 bearer token verification with libjwt; the claims are read
 * with jansson.  Nothing here allocates beyond the call.
 *
 * Verifying costs two JSON parses, libjwt's own decoding and an HMAC, and a
 * client sends the same token with every request: each thread remembers the
 * last tokens it verified (direct-mapped, AUTH_CACHE_SLOTS slots) by their
 * SHA-256, with the key they were verified under (its hash) and their exp/nbf,
 * so a token seen again is one SHA-256, one constant-time comparison and the
 * time checks.  An entry holds the digest, not the token, so that the cache is
 * small enough (about 130 bytes a slot) to hold the tokens of thousands of
 * tenants: with 128 slots of whole tokens, jwt_decode was still 7% of the
 * proxy's CPU samples under the load suite's 1,000 tenants.  A new jwt_secret
 * misses every entry; an expired token fails as before.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "auth.h"
#include "digest.h"

#define AUTH_CACHE_SLOTS 2048

typedef struct auth_cache_entry_t {
    unsigned char digest[32]; /* SHA-256 of the token */
    uint64_t secret_hash;     /* 0: empty */
    double exp, nbf;          /* nbf: -inf when absent */
    char tenant[PULSE_AUTH_MAX_TENANT + 1];
} auth_cache_entry_t;

static __thread auth_cache_entry_t auth_cache[AUTH_CACHE_SLOTS];
static __thread unsigned long long auth_cache_hits;

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h | 1; /* never 0 */
}

unsigned long long pulse_auth_cache_hits(void)
{
    return auth_cache_hits;
}

/* the JOSE header must say HS256 before the key is even tried */
static int jwt_header_is_hs256(const char *token, size_t len)
{
    const char *dot = memchr(token, '.', len);
    if (dot == NULL || dot == token)
        return 0;
    size_t n = (size_t)(dot - token);
    if (n > 1024)
        return 0;
    /* base64url → JSON */
    unsigned char out[800];
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = token[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else
            return 0;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= sizeof(out))
                return 0;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    json_error_t jerr;
    json_t *hdr = json_loadb((const char *)out, o, 0, &jerr);
    if (hdr == NULL)
        return 0;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    int ok = alg != NULL && strcmp(alg, "HS256") == 0;
    json_decref(hdr);
    return ok;
}

/* [+-]? then D+ [. D*] | . D+, then [eE [+-]? D+]; or [+-]? 0x|0o|0b and hex digits: what PostgreSQL's numeric types
   (and 16's integer literals, with '_' between digits) read as a number */
static int auth_numeric_like(const char *s, size_t n)
{
    size_t i = 0, d = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (n - i > 2 && s[i] == '0' && strchr("xXoObB", s[i + 1]) != NULL) {
        for (i += 2; i < n && (isxdigit((unsigned char)s[i]) || s[i] == '_'); i++)
            ;
        return i == n;
    }
    for (; i < n && (isdigit((unsigned char)s[i]) || s[i] == '_'); i++)
        d += s[i] != '_';
    if (i < n && s[i] == '.')
        for (i++; i < n && isdigit((unsigned char)s[i]); i++)
            d++;
    if (d == 0)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = 0;
        if (++i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (; i < n && isdigit((unsigned char)s[i]); i++)
            e++;
        if (e == 0)
            return 0;
    }
    return i == n;
}

/*
 * The tenant claim as the one text that names its tenant (PULSE_AUTH_MAX_TENANT + 1 bytes into `out`), or a reason to
 * refuse the token. A tenant is the key of the cache, the rate limits and, through RLS, of the rows, so one tenant must
 * have one spelling: PostgreSQL reads "07", " 8" and "+8" as the integers 7 and 8, which would get cache entries and
 * buckets of their own. So: a JSON integer is its decimal form; a JSON number with a fraction or an exponent is refused;
 * a string must have no whitespace or control character, and a string that reads as a number must be the canonical
 * decimal form of a 64-bit integer (no sign but '-', no leading zero, no "-0", no fraction, exponent, base prefix or
 * '_'). Any other string (a name, a UUID) is taken as it is.
 */
static const char *auth_tenant(json_t *t, char *out)
{
    if (t == NULL)
        return "token has no tenant claim";
    if (json_is_integer(t)) {
        snprintf(out, PULSE_AUTH_MAX_TENANT + 1, "%" JSON_INTEGER_FORMAT, json_integer_value(t));
        return NULL;
    }
    if (json_is_real(t))
        return "the tenant claim must be an integer, not a number with a fraction or an exponent";
    if (!json_is_string(t))
        return "the tenant claim must be a string or an integer";
    const char *s = json_string_value(t);
    size_t n = json_string_length(t);
    if (n == 0 || n > PULSE_AUTH_MAX_TENANT)
        return "the tenant claim must be 1 to 64 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return "the tenant claim must not contain whitespace or control characters";
    if (auth_numeric_like(s, n)) {
        char canon[32];
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno != 0 || snprintf(canon, sizeof(canon), "%lld", v) != (int)n || memcmp(canon, s, n) != 0)
            return "the tenant claim is a number in a non-canonical form (a sign, leading zeros, a fraction, an exponent, a "
                   "base prefix, or out of the 64-bit range): send the integer in its shortest decimal form";
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return NULL;
}

int pulse_auth_verify(const char *token, size_t len, const char *secret, time_t now, char *tenant, const char **reason)
{
    char buf[PULSE_AUTH_MAX_TOKEN + 1];
    jwt_t *jwt = NULL;
    json_t *claims = NULL;
    char *claims_text = NULL;
    int rc = -1;

    if (len == 0 || len > PULSE_AUTH_MAX_TOKEN || memchr(token, '\0', len) != NULL) {
        *reason = "malformed bearer token";
        return -1;
    }
    if (secret == NULL || secret[0] == '\0') {
        *reason = "token verification is not configured";
        return -1;
    }
    unsigned char digest[32];
    uint64_t secret_hash = fnv1a(secret, strlen(secret)), slot;
    auth_cache_entry_t *ce = NULL;
    if (pulse_digest(token, len, digest) == 0) {
        memcpy(&slot, digest, sizeof(slot));
        ce = &auth_cache[slot % AUTH_CACHE_SLOTS];
    }
    if (ce != NULL && ce->secret_hash == secret_hash && CRYPTO_memcmp(ce->digest, digest, sizeof(digest)) == 0) {
        if (ce->exp <= (double)now) {
            *reason = "token has expired";
            return -1;
        }
        if (ce->nbf > (double)now) {
            *reason = "token is not valid yet";
            return -1;
        }
        memcpy(tenant, ce->tenant, sizeof(ce->tenant));
        auth_cache_hits++;
        return 0;
    }
    if (!jwt_header_is_hs256(token, len)) {
        *reason = "token must be signed with HS256";
        return -1;
    }
    memcpy(buf, token, len);
    buf[len] = '\0';
    if (jwt_decode(&jwt, buf, (const unsigned char *)secret, (int)strlen(secret)) != 0 || jwt == NULL) {
        *reason = "invalid token signature";
        goto out;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        *reason = "token must be signed with HS256";
        goto out;
    }
    if ((claims_text = jwt_get_grants_json(jwt, NULL)) == NULL ||
        (claims = json_loads(claims_text, JSON_DECODE_ANY, NULL)) == NULL || !json_is_object(claims)) {
        *reason = "malformed token claims";
        goto out;
    }
    json_t *exp = json_object_get(claims, "exp");
    if (!json_is_number(exp)) {
        *reason = "token has no exp claim";
        goto out;
    }
    if (json_number_value(exp) <= (double)now) {
        *reason = "token has expired";
        goto out;
    }
    json_t *nbf = json_object_get(claims, "nbf");
    if (nbf != NULL && (!json_is_number(nbf) || json_number_value(nbf) > (double)now)) {
        *reason = "token is not valid yet";
        goto out;
    }
    if ((*reason = auth_tenant(json_object_get(claims, "tenant"), tenant)) != NULL)
        goto out;
    rc = 0;
    if (ce != NULL) {
        memcpy(ce->digest, digest, sizeof(digest));
        ce->secret_hash = secret_hash;
        ce->exp = json_number_value(exp);
        ce->nbf = nbf != NULL ? json_number_value(nbf) : -INFINITY;
        memcpy(ce->tenant, tenant, sizeof(ce->tenant));
    }
out:
    json_decref(claims);
    free(claims_text);
    if (jwt != NULL)
        jwt_free(jwt);
    return rc;
}
