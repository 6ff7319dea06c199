/*
 * auth_test.c: HS256 bearer token verification (auth.c).
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <time.h>
#include "auth.h"
#include "test.h"

static void b64url(const unsigned char *in, size_t len, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) | (i + 2 < len ? in[i + 2] : 0);
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = tbl[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = tbl[v & 63];
    }
    out[o] = '\0';
}

/* header and claims are JSON texts; signs with HMAC-SHA256 under `key` unless `key` is NULL (empty signature) */
static char *make_token(const char *header, const char *claims, const char *key)
{
    static char tok[4096];
    char h[1024], c[2048], s[128] = "";
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)claims, strlen(claims), c);
    snprintf(tok, sizeof(tok), "%s.%s", h, c);
    if (key != NULL) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)tok, strlen(tok), mac, &maclen);
        b64url(mac, maclen, s);
    }
    size_t n = strlen(tok);
    snprintf(tok + n, sizeof(tok) - n, ".%s", s);
    return tok;
}

static int verify(const char *tok, char *tenant, const char **reason)
{
    return pulse_auth_verify(tok, strlen(tok), "sekrit", time(NULL), tenant, reason);
}

int main(void)
{
    char tenant[PULSE_AUTH_MAX_TENANT + 1], claims[256];
    const char *reason = NULL;
    const char *hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    long later = (long)time(NULL) + 600, earlier = (long)time(NULL) - 600;

    snprintf(claims, sizeof(claims), "{\"tenant\":\"acme\",\"exp\":%ld}", later);
    CHECK(verify(make_token(hs, claims, "sekrit"), tenant, &reason) == 0, "good token is accepted");
    CHECK_STR(tenant, "acme", "string tenant claim");

    snprintf(claims, sizeof(claims), "{\"tenant\":42,\"exp\":%ld}", later);
    CHECK(verify(make_token(hs, claims, "sekrit"), tenant, &reason) == 0, "numeric tenant is accepted");
    CHECK_STR(tenant, "42", "numeric tenant claim as text");

    snprintf(claims, sizeof(claims), "{\"tenant\":\"acme\",\"exp\":%ld}", later);
    CHECK(verify(make_token(hs, claims, "other"), tenant, &reason) != 0, "bad signature is refused");
    char *t = make_token(hs, claims, "sekrit");
    t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
    CHECK(verify(t, tenant, &reason) != 0, "tampered signature is refused");

    snprintf(claims, sizeof(claims), "{\"tenant\":\"acme\",\"exp\":%ld}", earlier);
    CHECK(verify(make_token(hs, claims, "sekrit"), tenant, &reason) != 0, "expired token is refused");
    CHECK_STR(reason, "token has expired", "expired: reason");

    CHECK(verify(make_token(hs, "{\"tenant\":\"acme\"}", "sekrit"), tenant, &reason) != 0, "token without exp is refused");

    snprintf(claims, sizeof(claims), "{\"tenant\":\"acme\",\"exp\":%ld,\"nbf\":%ld}", later, later);
    CHECK(verify(make_token(hs, claims, "sekrit"), tenant, &reason) != 0, "token not valid yet (nbf) is refused");

    snprintf(claims, sizeof(claims), "{\"tenant\":\"acme\",\"exp\":%ld}", later);
    CHECK(verify(make_token("{\"alg\":\"none\"}", claims, NULL), tenant, &reason) != 0, "alg none is refused");
    CHECK(verify(make_token("{\"alg\":\"none\"}", claims, "sekrit"), tenant, &reason) != 0, "alg none with a signature is refused");
    CHECK(verify(make_token("{\"alg\":\"RS256\"}", claims, "sekrit"), tenant, &reason) != 0, "alg RS256 is refused");
    CHECK(verify(make_token("{\"alg\":\"HS512\"}", claims, "sekrit"), tenant, &reason) != 0, "alg HS512 is refused");

    snprintf(claims, sizeof(claims), "{\"sub\":\"x\",\"exp\":%ld}", later);
    CHECK(verify(make_token(hs, claims, "sekrit"), tenant, &reason) != 0, "missing tenant is refused");
    CHECK_STR(reason, "token has no tenant claim", "missing tenant: reason");
    snprintf(claims, sizeof(claims), "{\"tenant\":\"\",\"exp\":%ld}", later);
    CHECK(verify(make_token(hs, claims, "sekrit"), tenant, &reason) != 0, "empty tenant is refused");
    snprintf(claims, sizeof(claims), "{\"tenant\":[1],\"exp\":%ld}", later);
    CHECK(verify(make_token(hs, claims, "sekrit"), tenant, &reason) != 0, "array tenant is refused");
    snprintf(claims, sizeof(claims), "{\"tenant\":\"%0100d\",\"exp\":%ld}", 7, later);
    CHECK(verify(make_token(hs, claims, "sekrit"), tenant, &reason) != 0, "over-long tenant is refused");

    /* one tenant, one spelling (auth_tenant) */
    static const struct {
        const char *json; /* the claim's JSON */
        const char *want; /* the tenant, or NULL: refused */
    } tenants[] = {
        {"7", "7"},
        {"\"7\"", "7"},
        {"-7", "-7"},
        {"\"-7\"", "-7"},
        {"0", "0"},
        {"-0", "0"},
        {"\"0\"", "0"},
        {"9223372036854775807", "9223372036854775807"},
        {"\"9223372036854775807\"", "9223372036854775807"},
        {"\"-9223372036854775808\"", "-9223372036854775808"},
        {"\"acme\"", "acme"},
        {"\"550e8400-e29b-41d4-a716-446655440000\"", "550e8400-e29b-41d4-a716-446655440000"},
        {"\"12abc\"", "12abc"},
        {"\"-\"", "-"},
        {"\"x y\"", NULL},
        {"\"07\"", NULL},
        {"\"007\"", NULL},
        {"\" 8\"", NULL},
        {"\"8 \"", NULL},
        {"\"\\t8\"", NULL},
        {"\"\\n8\"", NULL},
        {"\"+8\"", NULL},
        {"\"-0\"", NULL},
        {"\"+0\"", NULL},
        {"\"7.0\"", NULL},
        {"\"7.\"", NULL},
        {"\".7\"", NULL},
        {"\"7e0\"", NULL},
        {"\"7E+1\"", NULL},
        {"\"0x7\"", NULL},
        {"\"0b101\"", NULL},
        {"\"1_000\"", NULL},
        {"\"9223372036854775808\"", NULL},
        {"\"123456789012345678901234567890\"", NULL},
        {"7.0", NULL},
        {"7e0", NULL},
        {"1e30", NULL},
        {"true", NULL},
        {"null", NULL},
        {"{}", NULL},
        {"[]", NULL},
        {"\"\"", NULL},
    };
    for (size_t i = 0; i < sizeof(tenants) / sizeof(tenants[0]); i++) {
        char name[160];
        snprintf(claims, sizeof(claims), "{\"tenant\":%s,\"exp\":%ld}", tenants[i].json, later);
        int rc = verify(make_token(hs, claims, "sekrit"), tenant, &reason);
        if (tenants[i].want != NULL) {
            snprintf(name, sizeof(name), "tenant claim %s is tenant \"%s\"", tenants[i].json, tenants[i].want);
            CHECK(rc == 0 && strcmp(tenant, tenants[i].want) == 0, name);
        } else {
            snprintf(name, sizeof(name), "tenant claim %s is refused", tenants[i].json);
            CHECK(rc != 0 && strstr(reason, "tenant") != NULL, name);
        }
    }

    CHECK(verify("", tenant, &reason) != 0, "empty token is refused");
    CHECK(verify("abc", tenant, &reason) != 0, "token without dots is refused");
    CHECK(verify("a.b.c", tenant, &reason) != 0, "garbage token is refused");
    CHECK(verify("....", tenant, &reason) != 0, "dots only are refused");
    char *big = malloc(PULSE_AUTH_MAX_TOKEN + 10);
    memset(big, 'a', PULSE_AUTH_MAX_TOKEN + 9);
    big[PULSE_AUTH_MAX_TOKEN + 9] = '\0';
    CHECK(verify(big, tenant, &reason) != 0, "over-long token is refused");
    free(big);
    CHECK(pulse_auth_verify("a\0b", 3, "sekrit", time(NULL), tenant, &reason) != 0, "NUL in token is refused");
    snprintf(claims, sizeof(claims), "{\"tenant\":\"acme\",\"exp\":%ld}", later);
    CHECK(pulse_auth_verify(make_token(hs, claims, "sekrit"), strlen(make_token(hs, claims, "sekrit")), "", time(NULL), tenant,
                            &reason) != 0,
          "no secret configured: refused");

    /* the per-thread cache of verified tokens: a repeat is a hit, and still checks exp, nbf and the key */
    long now = (long)time(NULL);
    snprintf(claims, sizeof(claims), "{\"tenant\":\"cached\",\"exp\":%ld,\"nbf\":%ld}", now + 100, now - 100);
    char *tok = strdup(make_token(hs, claims, "sekrit"));
    size_t tl = strlen(tok);
    unsigned long long h0 = pulse_auth_cache_hits();
    CHECK(pulse_auth_verify(tok, tl, "sekrit", now, tenant, &reason) == 0 && strcmp(tenant, "cached") == 0, "first use: verified");
    memset(tenant, 0, sizeof(tenant));
    CHECK(pulse_auth_verify(tok, tl, "sekrit", now, tenant, &reason) == 0 && strcmp(tenant, "cached") == 0 &&
              pulse_auth_cache_hits() == h0 + 1,
          "second use: answered from the cache with the same tenant");
    CHECK(pulse_auth_verify(tok, tl, "sekrit", now + 100, tenant, &reason) != 0 && strcmp(reason, "token has expired") == 0,
          "cached token past its exp: expired");
    CHECK(pulse_auth_verify(tok, tl, "sekrit", now - 101, tenant, &reason) != 0 && strcmp(reason, "token is not valid yet") == 0,
          "cached token before its nbf: not valid yet");
    unsigned long long h1 = pulse_auth_cache_hits();
    CHECK(pulse_auth_verify(tok, tl, "another key", now, tenant, &reason) != 0 && pulse_auth_cache_hits() == h1,
          "another jwt_secret: not answered from the cache, refused");
    tok[tl - 2] = tok[tl - 2] == 'A' ? 'B' : 'A'; /* a forged signature of the same claims */
    CHECK(pulse_auth_verify(tok, tl, "sekrit", now, tenant, &reason) != 0, "a changed signature misses the cache and is refused");
    free(tok);
    TEST_DONE();
}
