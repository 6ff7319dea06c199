/*
 * cache_test.c: unit tests of the pure parts of the cache (cache.c) and of
 * the generations map (generations.c): keys, ETags, freshness, value
 * encoding with gzip, single-flight bookkeeping, notification parsing.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>
#include "cache.h"
#include "generations.h"
#include "test.h"

#define ARG(n, v) ((pulse_cache_arg_t){(n), (v), (v) != NULL ? strlen(v) : 0})

static void test_keys(void)
{
    char k1[PULSE_CACHE_KEY_SIZE], k2[PULSE_CACHE_KEY_SIZE];
    pulse_cache_arg_t ab[] = {ARG("a", "1"), ARG("b", "2")}, ba[] = {ARG("b", "2"), ARG("a", "1")};
    const char *tags[] = {"public.events", "public.users"}, *tags_rev[] = {"public.users", "public.events"};
    uint64_t gens[] = {3, 7}, gens_rev[] = {7, 3}, gens_bumped[] = {4, 7};

    int n1 = pulse_cache_key(k1, "acme", "events_by_day", ab, 2, tags, gens, 2);
    int n2 = pulse_cache_key(k2, "acme", "events_by_day", ba, 2, tags_rev, gens_rev, 2);
    CHECK(n1 > 0 && n1 == (int)strlen(k1), "key: length returned");
    CHECK(strncmp(k1, "pulse:v1:acme:", 14) == 0 && strlen(k1) == 14 + 32, "key: prefix, tenant, 32 hex digits");
    CHECK(n2 > 0 && strcmp(k1, k2) == 0, "key: ?a=1&b=2 == ?b=2&a=1, tag order irrelevant");

    CHECK(pulse_cache_key(k2, "globex", "events_by_day", ab, 2, tags, gens, 2) > 0 && strcmp(k1, k2) != 0 &&
              strncmp(k2, "pulse:v1:globex:", 16) == 0,
          "key: another tenant, another key");
    CHECK(pulse_cache_key(k2, "acme", "events_by_day", ab, 2, tags, gens_bumped, 2) > 0 && strcmp(k1, k2) != 0,
          "key: a bumped generation moves the key");
    CHECK(pulse_cache_key(k2, "acme", "events_by_week", ab, 2, tags, gens, 2) > 0 && strcmp(k1, k2) != 0,
          "key: another endpoint, another key");
    pulse_cache_arg_t a3[] = {ARG("a", "1"), ARG("b", "3")};
    CHECK(pulse_cache_key(k2, "acme", "events_by_day", a3, 2, tags, gens, 2) > 0 && strcmp(k1, k2) != 0,
          "key: another value, another key");

    /* NULL vs "" vs missing */
    char kn[PULSE_CACHE_KEY_SIZE], ke[PULSE_CACHE_KEY_SIZE], km[PULSE_CACHE_KEY_SIZE];
    pulse_cache_arg_t an[] = {{"a", NULL, 0}}, ae[] = {ARG("a", "")};
    CHECK(pulse_cache_key(kn, "t", "e", an, 1, NULL, NULL, 0) > 0 && pulse_cache_key(ke, "t", "e", ae, 1, NULL, NULL, 0) > 0 &&
              pulse_cache_key(km, "t", "e", NULL, 0, NULL, NULL, 0) > 0 && strcmp(kn, ke) != 0 && strcmp(kn, km) != 0 &&
              strcmp(ke, km) != 0,
          "key: NULL, empty and missing arguments differ");

    /* field boundaries: ("ab","c") vs ("a","bc") */
    pulse_cache_arg_t x[] = {ARG("ab", "c")}, y[] = {ARG("a", "bc")};
    CHECK(pulse_cache_key(k1, "t", "e", x, 1, NULL, NULL, 0) > 0 && pulse_cache_key(k2, "t", "e", y, 1, NULL, NULL, 0) > 0 &&
              strcmp(k1, k2) != 0,
          "key: length-prefixed fields (no ambiguity at boundaries)");
    /* tenant boundary: tenant "a:b" endpoint "c" vs tenant "a" endpoint "b:c" */
    CHECK(pulse_cache_key(k1, "a:b", "c", NULL, 0, NULL, NULL, 0) > 0 &&
              pulse_cache_key(k2, "a", "b:c", NULL, 0, NULL, NULL, 0) > 0 && strcmp(k1, k2) != 0,
          "key: tenant/endpoint boundary");
    CHECK(strncmp(k1, "pulse:v1:a%3ab:", 15) == 0, "key: tenant bytes outside [A-Za-z0-9._-] are percent-encoded");

    /* binary values */
    pulse_cache_arg_t b1[] = {{"a", "x\0y", 3}}, b2[] = {{"a", "x\0z", 3}};
    CHECK(pulse_cache_key(k1, "t", "e", b1, 1, NULL, NULL, 0) > 0 && pulse_cache_key(k2, "t", "e", b2, 1, NULL, NULL, 0) > 0 &&
              strcmp(k1, k2) != 0,
          "key: values are binary-safe");

    /* long tenant */
    char longt[200];
    memset(longt, 'z', sizeof(longt) - 1);
    longt[sizeof(longt) - 1] = '\0';
    int nl = pulse_cache_key(k1, longt, "e", NULL, 0, NULL, NULL, 0);
    CHECK(nl > 0 && nl < PULSE_CACHE_KEY_SIZE && strncmp(k1, "pulse:v1:~", 10) == 0, "key: long tenant is hashed, key bounded");
    longt[150] = 'y';
    CHECK(pulse_cache_key(k2, longt, "e", NULL, 0, NULL, NULL, 0) > 0 && strcmp(k1, k2) != 0, "key: long tenants still differ");

    /* deterministic across calls */
    CHECK(pulse_cache_key(k1, "acme", "events_by_day", ab, 2, tags, gens, 2) > 0 &&
              pulse_cache_key(k2, "acme", "events_by_day", ab, 2, tags, gens, 2) > 0 && strcmp(k1, k2) == 0,
          "key: deterministic");
}

static void test_etags(void)
{
    char e1[PULSE_CACHE_ETAG_SIZE], e2[PULSE_CACHE_ETAG_SIZE], e3[PULSE_CACHE_ETAG_SIZE];
    pulse_cache_etag("{\"a\":1}", 7, e1);
    pulse_cache_etag("{\"a\":1}", 7, e2);
    pulse_cache_etag("{\"a\":2}", 7, e3);
    CHECK(strlen(e1) == 34 && e1[0] == '"' && e1[33] == '"', "etag: quoted, 32 hex digits");
    CHECK(strcmp(e1, e2) == 0 && strcmp(e1, e3) != 0, "etag: equal bodies equal tags, different bodies different tags");

    CHECK(pulse_cache_etag_equal("\"x\"", 3, "\"x\"", 3, true), "etag: strong equal");
    CHECK(!pulse_cache_etag_equal("W/\"x\"", 5, "\"x\"", 3, true), "etag: strong comparison rejects weak");
    CHECK(pulse_cache_etag_equal("W/\"x\"", 5, "\"x\"", 3, false), "etag: weak comparison W/\"x\" == \"x\"");
    CHECK(pulse_cache_etag_equal("W/\"x\"", 5, "W/\"x\"", 5, false), "etag: weak comparison W/ both");
    CHECK(!pulse_cache_etag_equal("W/\"x\"", 5, "W/\"y\"", 5, false), "etag: weak comparison different");
    CHECK(!pulse_cache_etag_equal("x", 1, "x", 1, false), "etag: unquoted is malformed");

    size_t l = strlen(e1);
    char hdr[256];
    CHECK(pulse_cache_etag_list_match(e1, l, e1, l, false), "inm: exact");
    CHECK(pulse_cache_etag_list_match("*", 1, e1, l, false), "inm: *");
    CHECK(pulse_cache_etag_list_match(" * ", 3, e1, l, false), "inm: * with spaces");
    snprintf(hdr, sizeof(hdr), "\"a\", W/%s , \"b\"", e1);
    CHECK(pulse_cache_etag_list_match(hdr, strlen(hdr), e1, l, false), "inm: weak member of a list matches (weak comparison)");
    CHECK(!pulse_cache_etag_list_match(hdr, strlen(hdr), e1, l, true), "if-match: weak member does not match strongly");
    snprintf(hdr, sizeof(hdr), "\"a\",,%s", e1);
    CHECK(pulse_cache_etag_list_match(hdr, strlen(hdr), e1, l, true), "list: empty elements allowed");
    CHECK(!pulse_cache_etag_list_match("\"a\", \"b\"", 10, e1, l, false), "inm: no match");
    snprintf(hdr, sizeof(hdr), "%s, garbage", e1);
    CHECK(!pulse_cache_etag_list_match(hdr, strlen(hdr), e1, l, false), "inm: malformed list matches nothing");
    CHECK(!pulse_cache_etag_list_match("\"abc", 4, "\"abc\"", 5, false), "inm: unterminated");
    CHECK(!pulse_cache_etag_list_match("*, \"a\"", 6, "\"a\"", 3, false), "inm: * in a list is malformed");
    CHECK(!pulse_cache_etag_list_match("", 0, e1, l, false), "inm: empty");
    CHECK(!pulse_cache_etag_list_match(NULL, 0, e1, l, false), "inm: NULL");
}

/* each representation has its own ETag, and If-None-Match is compared with the one the client gets */
static void test_select(void)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    char body[2000];
    memset(body, 'x', sizeof(body));
    pulse_cache_entry_t e;
    CHECK(pulse_cache_entry_init(&pool, &e, 200, h2o_iovec_init(H2O_STRLIT("application/json")), h2o_iovec_init(body, sizeof(body)),
                                 h2o_iovec_init(NULL, 0), 1000, 1000) == 0 &&
              e.gzip.len != 0,
          "select: an entry with a gzip variant");
    char gz[64];
    snprintf(gz, sizeof(gz), "%.*s-gzip\"", (int)e.etag.len - 1, e.etag.base);
    pulse_cache_repr_t r;
    pulse_cache_select(&pool, &e, NULL, 0, NULL, 0, &r);
    CHECK(!r.gzip && r.body.base == e.body.base && h2o_memis(r.etag.base, r.etag.len, e.etag.base, e.etag.len) && !r.not_modified,
          "select: no Accept-Encoding: identity, the entry's ETag");
    pulse_cache_select(&pool, &e, H2O_STRLIT("gzip, br"), NULL, 0, &r);
    CHECK(r.gzip && r.body.base == e.gzip.base && h2o_memis(r.etag.base, r.etag.len, gz, strlen(gz)),
          "select: gzip accepted: the gzip variant, ETag with -gzip inside the quotes");
    pulse_cache_select(&pool, &e, H2O_STRLIT("gzip"), gz, strlen(gz), &r);
    CHECK(r.gzip && r.not_modified, "select: gzip and If-None-Match of the gzip ETag: 304");
    pulse_cache_select(&pool, &e, H2O_STRLIT("gzip"), e.etag.base, e.etag.len, &r);
    CHECK(r.gzip && !r.not_modified, "select: gzip and If-None-Match of the identity ETag: 200 with the gzip variant");
    pulse_cache_select(&pool, &e, H2O_STRLIT("identity"), gz, strlen(gz), &r);
    CHECK(!r.gzip && !r.not_modified, "select: no gzip and If-None-Match of the gzip ETag: 200 with the identity body");
    pulse_cache_select(&pool, &e, H2O_STRLIT("gzip;q=0"), e.etag.base, e.etag.len, &r);
    CHECK(!r.gzip && r.not_modified, "select: gzip;q=0 and If-None-Match of the identity ETag: 304");

    /* an entry of the format an older proxy stored (version 1, the identity ETag): both tags come out right */
    h2o_iovec_t enc;
    pulse_cache_entry_t d;
    CHECK(pulse_cache_entry_encode(&pool, &e, &enc) == 0 && enc.base[3] == 1 &&
              pulse_cache_entry_decode(enc.base, enc.len, &d) == 0,
          "select: entry format version 1, unchanged");
    pulse_cache_select(&pool, &d, H2O_STRLIT("gzip"), NULL, 0, &r);
    CHECK(h2o_memis(r.etag.base, r.etag.len, gz, strlen(gz)), "select: a stored entry's gzip variant gets the gzip ETag");

    pulse_cache_entry_t small;
    CHECK(pulse_cache_entry_init(&pool, &small, 200, h2o_iovec_init(H2O_STRLIT("application/json")),
                                 h2o_iovec_init(H2O_STRLIT("{}")), h2o_iovec_init(NULL, 0), 1000, 1000) == 0 &&
              small.gzip.len == 0,
          "select: a small entry has no gzip variant");
    pulse_cache_select(&pool, &small, H2O_STRLIT("gzip"), small.etag.base, small.etag.len, &r);
    CHECK(!r.gzip && r.not_modified && h2o_memis(r.etag.base, r.etag.len, small.etag.base, small.etag.len),
          "select: no gzip variant: the identity body and ETag even when gzip is accepted");
    h2o_mem_clear_pool(&pool);
}

static void test_accept_encoding(void)
{
#define AE(s) pulse_cache_accepts_gzip((s), strlen(s))
    CHECK(AE("gzip") && AE("deflate, gzip;q=1.0, *;q=0.5") && AE("GZIP") && AE("br, x-gzip") && AE("gzip;q=0.001"),
          "accept-encoding: gzip accepted");
    CHECK(!AE("gzip;q=0") && !AE("gzip; q=0.000") && !AE("br, deflate") && !AE("") && !pulse_cache_accepts_gzip(NULL, 0) &&
              !AE("identity"),
          "accept-encoding: gzip refused or absent");
    CHECK(AE("*") && AE("br;q=1, *;q=0.1") && !AE("*;q=0") && !AE("gzip;q=0, *"), "accept-encoding: * and explicit q=0");
    CHECK(!AE("gzipx") && !AE("xgzip"), "accept-encoding: whole tokens only");
#undef AE
}

static void test_freshness(void)
{
    uint64_t t0 = 1000000;
    CHECK(pulse_cache_classify(t0, 1000, 500, 2000, t0) == PULSE_CACHE_FRESH, "fresh: age 0");
    CHECK(pulse_cache_classify(t0, 1000, 500, 2000, t0 + 999) == PULSE_CACHE_FRESH, "fresh: age ttl-1");
    CHECK(pulse_cache_classify(t0, 1000, 500, 2000, t0 + 1000) == PULSE_CACHE_STALE, "stale: age ttl");
    CHECK(pulse_cache_classify(t0, 1000, 500, 2000, t0 + 1499) == PULSE_CACHE_STALE, "stale: end of swr");
    CHECK(pulse_cache_classify(t0, 1000, 500, 2000, t0 + 1500) == PULSE_CACHE_STALE_IF_ERROR, "stale-if-error after swr");
    CHECK(pulse_cache_classify(t0, 1000, 500, 2000, t0 + 2999) == PULSE_CACHE_STALE_IF_ERROR, "stale-if-error: end");
    CHECK(pulse_cache_classify(t0, 1000, 500, 2000, t0 + 3000) == PULSE_CACHE_EXPIRED, "expired");
    CHECK(pulse_cache_classify(t0, 1000, 0, 0, t0 + 1000) == PULSE_CACHE_EXPIRED, "expired: no windows");
    CHECK(pulse_cache_classify(t0, 1000, 3000, 2000, t0 + 3500) == PULSE_CACHE_STALE, "swr wider than sie");
    CHECK(pulse_cache_classify(t0 + 5000, 1000, 0, 0, t0) == PULSE_CACHE_FRESH, "created in the future: age 0");
    CHECK(pulse_cache_redis_ttl_ms(1000, 500, 2000) == 3000, "redis ttl = ttl + max(swr, sie)");
    CHECK(pulse_cache_redis_ttl_ms(1000, 4000, 2000) == 5000, "redis ttl: swr larger");
    CHECK(pulse_cache_redis_ttl_ms(0, 0, 0) == 1, "redis ttl at least 1 ms");
    CHECK_STR(pulse_cache_freshness_name(PULSE_CACHE_STALE_IF_ERROR), "stale-if-error", "freshness name");

    pulse_cache_entry_t e = {.created_at_ms = t0, .ttl_ms = 60000};
    char cc[128];
    CHECK(pulse_cache_control(cc, sizeof(cc), &e, 30000, 300000, t0 + 10500) > 0, "cache-control written");
    CHECK_STR(cc, "private, max-age=49, stale-while-revalidate=30, stale-if-error=300",
              "cache-control: remaining max-age, windows");
    CHECK(pulse_cache_control(cc, sizeof(cc), &e, 0, 0, t0 + 70000) > 0, "cache-control stale");
    CHECK_STR(cc, "private, max-age=0", "cache-control: stale entry has max-age=0, no zero windows");
    CHECK(pulse_cache_control(cc, 10, &e, 0, 0, t0) == -1, "cache-control: too small a buffer");
}

static int gunzip(const h2o_iovec_t gz, char *out, size_t cap, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return -1;
    zs.next_in = (Bytef *)gz.base;
    zs.avail_in = (uInt)gz.len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)cap;
    int rc = inflate(&zs, Z_FINISH);
    *outlen = zs.total_out;
    inflateEnd(&zs);
    return rc == Z_STREAM_END ? 0 : -1;
}

static void test_values(void)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    pulse_cache_entry_t e, d;
    h2o_iovec_t enc;

    /* small binary body: no gzip */
    static const char bin[] = {'{', 0, '\r', '\n', (char)0xff, 'x', 0};
    h2o_iovec_t body = h2o_iovec_init(bin, sizeof(bin));
    CHECK(pulse_cache_entry_init(&pool, &e, 200, h2o_iovec_init(H2O_STRLIT("application/json")), body,
                                 h2o_iovec_init(H2O_STRLIT("</rpc/x?cursor=abc>; rel=\"next\"")), 1234567890123ULL, 60000) == 0,
          "entry_init small");
    CHECK(e.gzip.len == 0 && e.etag.len == 34, "entry_init: small body has no gzip, has an etag");
    CHECK(pulse_cache_entry_encode(&pool, &e, &enc) == 0, "encode");
    CHECK(pulse_cache_entry_decode(enc.base, enc.len, &d) == 0, "decode");
    CHECK(d.status == 200 && d.created_at_ms == 1234567890123ULL && d.ttl_ms == 60000, "round trip: status, times");
    CHECK(h2o_memis(d.content_type.base, d.content_type.len, H2O_STRLIT("application/json")) &&
              h2o_memis(d.etag.base, d.etag.len, e.etag.base, e.etag.len) &&
              h2o_memis(d.link.base, d.link.len, e.link.base, e.link.len),
          "round trip: content type, etag, link");
    CHECK(d.body.len == sizeof(bin) && memcmp(d.body.base, bin, sizeof(bin)) == 0 && d.gzip.len == 0,
          "round trip: binary body (NUL, CR LF, 0xff)");

    /* every truncation and a trailing byte are rejected */
    int bad = 0;
    for (size_t n = 0; n < enc.len; ++n)
        if (pulse_cache_entry_decode(enc.base, n, &d) == 0)
            ++bad;
    CHECK(bad == 0, "decode rejects every truncation");
    char *longer = h2o_mem_alloc_pool(&pool, enc.len + 1);
    memcpy(longer, enc.base, enc.len);
    longer[enc.len] = 'x';
    CHECK(pulse_cache_entry_decode(longer, enc.len + 1, &d) != 0, "decode rejects trailing bytes");
    memcpy(longer, enc.base, enc.len);
    longer[3] = 2;
    CHECK(pulse_cache_entry_decode(longer, enc.len, &d) != 0, "decode rejects another version");
    CHECK(pulse_cache_entry_decode("hello", 5, &d) != 0 && pulse_cache_entry_decode(NULL, 0, &d) != 0, "decode rejects garbage");
    memcpy(longer, enc.base, enc.len);
    longer[5] = 0x03, longer[6] = (char)0xe8; /* status 1000 */
    CHECK(pulse_cache_entry_decode(longer, enc.len, &d) != 0, "decode rejects status 1000");

    /* large body: gzip variant */
    size_t big_len = 64 * 1024;
    char *big = h2o_mem_alloc_pool(&pool, big_len);
    for (size_t i = 0; i != big_len; ++i)
        big[i] = "{\"id\":1,\"name\":\"pulse\"},"[i % 25];
    big[100] = '\0';
    CHECK(pulse_cache_entry_init(&pool, &e, 200, h2o_iovec_init(H2O_STRLIT("application/json")), h2o_iovec_init(big, big_len),
                                 h2o_iovec_init(NULL, 0), 1, 1000) == 0 &&
              e.gzip.len != 0 && e.gzip.len < big_len,
          "entry_init: large body gets a smaller gzip variant");
    CHECK(pulse_cache_entry_encode(&pool, &e, &enc) == 0 && pulse_cache_entry_decode(enc.base, enc.len, &d) == 0,
          "encode/decode gzip");
    char *plain = malloc(big_len + 16);
    size_t plain_len = 0;
    CHECK(d.gzip.len == e.gzip.len && gunzip(d.gzip, plain, big_len + 16, &plain_len) == 0 && plain_len == big_len &&
              memcmp(plain, big, big_len) == 0,
          "gzip variant inflates to the body");
    CHECK(d.link.len == 0 && d.body.len == big_len && memcmp(d.body.base, big, big_len) == 0, "round trip: large body, empty link");
    /* the thread's deflate stream is reused: a second, different body must not carry anything of the first */
    h2o_iovec_t gz2;
    for (size_t i = 0; i != 5000; ++i)
        big[i] = "[\"other\",2]"[i % 11];
    CHECK(pulse_cache_gzip(&pool, big, 5000, &gz2) == 0 && gunzip(gz2, plain, big_len + 16, &plain_len) == 0 && plain_len == 5000 &&
              memcmp(plain, big, 5000) == 0,
          "gzip: a second body through the reused stream inflates to itself");
    free(plain);

    /* incompressible large body: no gzip */
    unsigned char *rnd = h2o_mem_alloc_pool(&pool, 4096);
    uint32_t s = 12345;
    for (size_t i = 0; i != 4096; ++i) {
        s = s * 1103515245 + 12345;
        rnd[i] = (unsigned char)(s >> 16);
    }
    CHECK(pulse_cache_entry_init(&pool, &e, 200, h2o_iovec_init(H2O_STRLIT("application/octet-stream")), h2o_iovec_init(rnd, 4096),
                                 h2o_iovec_init(NULL, 0), 1, 1000) == 0 &&
              e.gzip.len == 0,
          "entry_init: incompressible body keeps no gzip");

    /* empty body */
    CHECK(pulse_cache_entry_init(&pool, &e, 204, h2o_iovec_init(NULL, 0), h2o_iovec_init(NULL, 0), h2o_iovec_init(NULL, 0), 1,
                                 1000) == 0 &&
              pulse_cache_entry_encode(&pool, &e, &enc) == 0 && pulse_cache_entry_decode(enc.base, enc.len, &d) == 0 &&
              d.status == 204 && d.body.len == 0,
          "round trip: empty body");
    e.status = 42;
    CHECK(pulse_cache_entry_encode(&pool, &e, &enc) != 0, "encode rejects a bad status");

    h2o_mem_clear_pool(&pool);
}

/* single-flight */
typedef struct {
    int calls;
    const void *result;
    int order;
} waiter_rec_t;

static int wake_seq;
static pulse_cache_flights_t *reentrant_table;
static int reentrant_join;

static void on_wake(void *data, const void *result)
{
    waiter_rec_t *r = data;
    r->calls++;
    r->result = result;
    r->order = ++wake_seq;
    if (reentrant_table != NULL) {
        pulse_cache_waiter_t *w;
        reentrant_join = pulse_cache_flight_join(reentrant_table, "k1", on_wake, r, &w);
        reentrant_table = NULL;
    }
}

static void test_flights(void)
{
    pulse_cache_flights_t *t = pulse_cache_flights_create();
    pulse_cache_waiter_t *w1, *w2, *w3, *w4;
    waiter_rec_t r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};
    size_t nw;
    int result = 42;

    CHECK(t != NULL, "flights: create");
    CHECK(pulse_cache_flight_join(t, "k1", on_wake, &r1, &w1) == 1 && w1 == NULL, "flights: first miss leads");
    CHECK(pulse_cache_flight_join(t, "k1", on_wake, &r2, &w2) == 0 && w2 != NULL, "flights: second waits");
    CHECK(pulse_cache_flight_join(t, "k1", on_wake, &r3, &w3) == 0, "flights: third waits");
    CHECK(pulse_cache_flight_join(t, "k2", on_wake, &r4, &w4) == 1, "flights: another key leads");
    CHECK(pulse_cache_flights_count(t, &nw) == 2 && nw == 2, "flights: 2 flights, 2 waiters");
    pulse_cache_flight_leave(w3);
    CHECK(pulse_cache_flights_count(t, &nw) == 2 && nw == 1, "flights: a waiter leaves");
    CHECK(pulse_cache_flight_finish(t, "k1", &result) == 1, "flights: finish wakes the remaining waiter");
    CHECK(r2.calls == 1 && r2.result == &result && r3.calls == 0 && r1.calls == 0,
          "flights: waiter got the result, leaver nothing");
    CHECK(pulse_cache_flight_finish(t, "k1", &result) == -1, "flights: finishing twice fails");
    CHECK(pulse_cache_flight_join(t, "k1", on_wake, &r1, &w1) == 1, "flights: after finish the next miss leads again");

    /* wake order and reentrancy: a waiter that joins again during finish opens a new flight */
    waiter_rec_t a = {0}, b = {0};
    CHECK(pulse_cache_flight_join(t, "k1", on_wake, &a, &w2) == 0 && pulse_cache_flight_join(t, "k1", on_wake, &b, &w3) == 0,
          "flights: two waiters");
    reentrant_table = t;
    CHECK(pulse_cache_flight_finish(t, "k1", NULL) == 2, "flights: finish with NULL (leader gave up)");
    CHECK(a.calls == 1 && b.calls == 1 && a.order < b.order && a.result == NULL, "flights: woken in join order");
    CHECK(reentrant_join == 1 && pulse_cache_flights_count(t, NULL) == 2, "flights: re-join from a callback leads a new flight");

    /* many keys: table grows */
    char key[32];
    pulse_cache_waiter_t *w;
    int led = 0;
    for (int i = 0; i != 2000; ++i) {
        snprintf(key, sizeof(key), "many:%d", i);
        led += pulse_cache_flight_join(t, key, on_wake, &r4, &w) == 1;
    }
    CHECK(led == 2000 && pulse_cache_flights_count(t, NULL) == 2002, "flights: 2000 keys");
    int found = 0;
    for (int i = 0; i != 2000; ++i) {
        snprintf(key, sizeof(key), "many:%d", i);
        found += pulse_cache_flight_finish(t, key, NULL) == 0;
    }
    CHECK(found == 2000 && pulse_cache_flights_count(t, NULL) == 2, "flights: all found after growth");

    /* destroy wakes pending waiters with NULL */
    waiter_rec_t c = {0};
    CHECK(pulse_cache_flight_join(t, "k2", on_wake, &c, &w) == 0, "flights: waiter pending at destroy");
    pulse_cache_flights_destroy(t);
    CHECK(c.calls == 1 && c.result == NULL, "flights: destroy wakes waiters with NULL");
}

static void test_generations(void)
{
    const char *tag;
    size_t tl;
    uint64_t gen;

    CHECK(pulse_generations_parse("public.events:12", 16, &tag, &tl, &gen) == 0 && tl == 13 &&
              memcmp(tag, "public.events", 13) == 0 && gen == 12,
          "parse: tag:generation");
    CHECK(pulse_generations_parse("report:daily:3", 14, &tag, &tl, &gen) == 0 && tl == 12 && memcmp(tag, "report:daily", 12) == 0 &&
              gen == 3,
          "parse: split at the last ':'");
    CHECK(pulse_generations_parse("x:9223372036854775807", 21, &tag, &tl, &gen) == 0 && gen == 9223372036854775807ULL,
          "parse: INT64_MAX");
    static const char *bad[] = {"",
                                "events",
                                ":5",
                                "events:",
                                "events:0",
                                "events:-1",
                                "events:+1",
                                "events: 1",
                                "events:1 ",
                                "events:01",
                                "events:1a",
                                "events:9223372036854775808",
                                "events:99999999999999999999",
                                "events::"};
    int rejected = 0;
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i)
        rejected += pulse_generations_parse(bad[i], strlen(bad[i]), &tag, &tl, &gen) != 0;
    CHECK(rejected == (int)(sizeof(bad) / sizeof(bad[0])), "parse: strict (empty, no colon, 0, signs, spaces, zeros, overflow)");
    CHECK(pulse_generations_parse("ev\0x:1", 6, &tag, &tl, &gen) != 0, "parse: NUL byte rejected");

    pulse_generations_t *g = pulse_generations_create();
    CHECK(g != NULL && pulse_generations_get(g, "public.events", 13) == 0, "gens: unknown tag is 0");
    CHECK(pulse_generations_apply_notify(g, NULL, "public.events:5", 15) == 1, "gens: notify sets");
    CHECK(pulse_generations_get(g, "public.events", 13) == 5, "gens: get");
    CHECK(pulse_generations_apply_notify(g, NULL, "public.events:3", 15) == 0 && pulse_generations_get(g, "public.events", 13) == 5,
          "gens: never goes back");
    CHECK(pulse_generations_apply_notify(g, NULL, "public.events:5", 15) == 0, "gens: same generation is no change");
    CHECK(pulse_generations_apply_notify(g, NULL, "public.events:x", 15) == -1 &&
              pulse_generations_get(g, "public.events", 13) == 5,
          "gens: malformed notify changes nothing");
    CHECK(pulse_generations_apply_notify(g, NULL, "report:daily:2", 14) == 1 && pulse_generations_get(g, "report:daily", 12) == 2 &&
              pulse_generations_get(g, "report", 6) == 0,
          "gens: tag with ':'");
    CHECK(pulse_generations_set(g, "t", 1, 0) == -1, "gens: set 0 refused");
    /* keyed value tags are as many as rows: they enter the map only when watched (a route's key names one) */
    CHECK(pulse_generations_apply_notify(g, NULL, "ev:id=7:3", 9) == 0 && pulse_generations_get(g, "ev:id=7", 7) == 0,
          "gens: a keyed value tag not watched stays out");
    CHECK(pulse_generations_apply_notify(g, NULL, "ev:id=*:2", 9) == 1 && pulse_generations_get(g, "ev:id=*", 7) == 2 &&
              pulse_generations_apply_notify(g, NULL, "ev:id:4", 7) == 1 && pulse_generations_get(g, "ev:id", 5) == 4,
          "gens: epochs and NULL-keyed tags enter");
    const char *watch[] = {"ev:id=7"};
    pulse_generations_watch(g, watch, 1);
    CHECK(pulse_generations_apply_notify(g, NULL, "ev:id=7:3", 9) == 1 && pulse_generations_get(g, "ev:id=7", 7) == 3,
          "gens: a watched keyed value tag is raised");
    CHECK(pulse_generations_apply_bumps(g, NULL, "ev:id=7:5\nother:1\n", 18) == 2 && pulse_generations_get(g, "ev:id=7", 7) == 5 &&
              pulse_generations_get(g, "other", 5) == 1,
          "gens: a write's pulse.last_bumps lines");
    CHECK(pulse_generations_apply_bumps(g, NULL, "ev:id=7:6\nbad\n", 14) == -1 && pulse_generations_get(g, "ev:id=7", 7) == 6,
          "gens: a malformed line fails (the lines before it applied)");
    pulse_keyed_t *k = pulse_keyed_create(16);
    CHECK(pulse_generations_apply_notify(g, k, "ev:id=9:2", 9) == 0 && pulse_generations_apply_notify(g, k, "plain:3", 7) == 1,
          "gens: keyed map fed");
    pulse_keyed_stats_t kst;
    pulse_keyed_stats(k, &kst);
    CHECK(kst.tags == 1, "gens: only tags with ':' reach the keyed map");
    pulse_keyed_destroy(k);

    const char *tags[] = {"public.events", "report:daily", "new.tag", "zero"};
    CHECK(pulse_generations_resync(g, tags, 4, "{4,7,1,0}", 9) == 2, "resync: two tags moved (events stays 5)");
    CHECK(pulse_generations_get(g, "public.events", 13) == 5 && pulse_generations_get(g, "report:daily", 12) == 7 &&
              pulse_generations_get(g, "new.tag", 7) == 1 && pulse_generations_get(g, "zero", 4) == 0,
          "resync: monotonic values");
    CHECK(pulse_generations_resync(g, tags, 4, "{9,9,9}", 7) == -1 && pulse_generations_get(g, "public.events", 13) == 5,
          "resync: wrong count changes nothing");
    CHECK(pulse_generations_resync(g, tags, 2, "{9,x}", 5) == -1 && pulse_generations_get(g, "public.events", 13) == 5,
          "resync: malformed element changes nothing");
    CHECK(pulse_generations_resync(g, tags, 2, "{9,NULL}", 8) == -1 && pulse_generations_resync(g, tags, 2, "{9,}", 4) == -1 &&
              pulse_generations_resync(g, tags, 2, "9,9", 3) == -1,
          "resync: NULL, empty element, no braces rejected");
    CHECK(pulse_generations_resync(g, NULL, 0, "{}", 2) == 0 && pulse_generations_resync(g, NULL, 0, "{1}", 3) == -1,
          "resync: empty array");
    uint64_t many[4];
    pulse_generations_get_many(g, tags, 4, many);
    CHECK(many[0] == 5 && many[1] == 7 && many[2] == 1 && many[3] == 0, "get_many");

    /* the parameter of pulse.tag_generations($1::text[]) */
    const char *odd[] = {"demo.events", "a\"b", "c\\d", "e,f", ""};
    char *lit = pulse_generations_text_array(odd, 5);
    CHECK_STR(lit, "{\"demo.events\",\"a\\\"b\",\"c\\\\d\",\"e,f\",\"\"}", "text_array: quoted, escaped");
    free(lit);
    lit = pulse_generations_text_array(NULL, 0);
    CHECK_STR(lit, "{}", "text_array: empty");
    free(lit);

    /* many tags */
    char name[32];
    int ok = 1;
    size_t before = pulse_generations_count(g);
    for (int i = 0; i != 5000; ++i) {
        snprintf(name, sizeof(name), "t%d", i);
        ok &= pulse_generations_set(g, name, strlen(name), (uint64_t)i + 1) == 1;
    }
    for (int i = 0; i != 5000; ++i) {
        snprintf(name, sizeof(name), "t%d", i);
        ok &= pulse_generations_get(g, name, strlen(name)) == (uint64_t)i + 1;
    }
    CHECK(ok && pulse_generations_count(g) == before + 5000, "gens: 5000 tags after growth");
    pulse_generations_destroy(g);
}

/* concurrent setters and readers: monotonic from every reader's view */
typedef struct {
    pulse_generations_t *g;
    int id;
    int regress;
} thr_t;

static void *thr_main(void *p)
{
    thr_t *t = p;
    uint64_t last = 0;
    char payload[64];
    for (int i = 1; i <= 20000; ++i) {
        if (t->id % 2 == 0) {
            int n = snprintf(payload, sizeof(payload), "hot:tag:%d", i);
            if (pulse_generations_apply_notify(t->g, NULL, payload, (size_t)n) < 0)
                t->regress++;
        } else {
            uint64_t v = pulse_generations_get(t->g, "hot:tag", 7);
            if (v < last)
                t->regress++;
            last = v;
        }
    }
    return NULL;
}

static void test_generations_threads(void)
{
    pulse_generations_t *g = pulse_generations_create();
    pthread_t th[4];
    thr_t args[4];
    int regress = 0;
    for (int i = 0; i != 4; ++i) {
        args[i] = (thr_t){g, i, 0};
        pthread_create(&th[i], NULL, thr_main, &args[i]);
    }
    for (int i = 0; i != 4; ++i) {
        pthread_join(th[i], NULL);
        regress += args[i].regress;
    }
    CHECK(regress == 0 && pulse_generations_get(g, "hot:tag", 7) == 20000, "gens: threads see it monotonic, ends at max");
    pulse_generations_destroy(g);
}

int main(void)
{
    test_keys();
    test_etags();
    test_select();
    test_freshness();
    test_accept_encoding();
    test_values();
    test_flights();
    test_generations();
    test_generations_threads();
    TEST_DONE();
}
