/*
 * ratelimit_test.c: the rate limiter (ratelimit.c): policy parsing, header
 * values, keys, and the buckets against a real redis-server that the test
 * starts on a free loopback port (and kills, also when the test dies:
 * PR_SET_PDEATHSIG): burst then denial, refill, all-or-nothing, two limiters
 * (two proxies) sharing a bucket, NOSCRIPT, the local fallback while Redis is
 * down and the return to Redis, cancellation, the bound of the local table,
 * and policies replaced while another thread checks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "ratelimit.h"
#include "test.h"

#define RL_TEST_MIN_RATE 0.001 /* the smallest rate a policy takes */

#include "redis_server.h"

static h2o_evloop_t *loop;

/* runs the loop until *flag (when given) is true or `ms` passed; returns *flag (or 1) */
static int run_for(const int *flag, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    while ((flag == NULL || !*flag) && now_ms() < deadline)
        h2o_evloop_run(loop, 10);
    return flag == NULL || *flag;
}

static int run_until_up(pulse_redis_t *r, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    while (!pulse_redis_is_up(r) && now_ms() < deadline)
        h2o_evloop_run(loop, 10);
    return pulse_redis_is_up(r);
}

static int run_until_down(pulse_redis_t *r, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    while (pulse_redis_is_up(r) && now_ms() < deadline)
        h2o_evloop_run(loop, 10);
    return !pulse_redis_is_up(r);
}

static pulse_redis_t *new_client(void)
{
    pulse_redis_config_t c;
    memset(&c, 0, sizeof(c));
    strcpy(c.host, "127.0.0.1");
    c.port = redis_port;
    c.connect_timeout_ms = 200;
    c.command_timeout_ms = 500; /* ASan: leave the first EVAL room */
    c.backoff_min_ms = 50;
    c.backoff_max_ms = 200;
    return pulse_redis_create(loop, &c);
}

/* a policy table with `read` for the read class and nothing for the others */
static pulse_ratelimit_t *new_limiter(const char *read, const char *prefix)
{
    pulse_ratelimit_policy_t pol[PULSE_CLASS_COUNT];
    char err[256];
    memset(pol, 0, sizeof(pol));
    if (pulse_ratelimit_policy_parse(read, &pol[PULSE_CLASS_READ], err, sizeof(err)) != 0) {
        printf("# %s\n", err);
        return NULL;
    }
    return pulse_ratelimit_create(pol, prefix);
}

typedef struct {
    int calls;
    pulse_ratelimit_result_t res;
} rec_t;

static void on_result(void *data, const pulse_ratelimit_result_t *res)
{
    rec_t *r = data;
    r->calls++;
    r->res = *res;
}

/* one check, waited for: returns the check's return value (0: answered by the callback, 1: at once, -2: never answered) */
static int check(pulse_ratelimit_t *rl, pulse_redis_t *r, const char *tenant, const char *ip, pulse_ratelimit_result_t *res)
{
    rec_t rec = {0};
    pulse_ratelimit_pending_t *ref = (void *)1;
    int rc = pulse_ratelimit_check(rl, r, PULSE_CLASS_READ, tenant, ip, res, on_result, &rec, &ref);
    if (rc == 1)
        return ref == NULL && rec.calls == 0 ? 1 : -3;
    if (rc != 0 || ref == NULL || rec.calls != 0)
        return -3;
    if (!run_for(&rec.calls, 3000))
        return -2;
    *res = rec.res;
    return ref == NULL && rec.calls == 1 ? 0 : -3;
}

/* a Redis command answered synchronously enough for a test: the string (or integer) reply in `out` */
typedef struct {
    int calls;
    char str[256];
    long long integer;
    int type;
} raw_t;

static void on_raw(void *data, redisReply *reply, const char *err)
{
    raw_t *x = data;
    x->calls++;
    x->type = err != NULL ? -1 : reply->type;
    if (reply != NULL) {
        x->integer = reply->integer;
        if (reply->str != NULL)
            snprintf(x->str, sizeof(x->str), "%.*s", (int)reply->len, reply->str);
    }
}

static int redis_raw(pulse_redis_t *r, raw_t *x, int argc, const char **argv)
{
    memset(x, 0, sizeof(*x));
    return pulse_redis_command_argv(r, on_raw, x, argc, argv, NULL) == 0 && run_for(&x->calls, 2000) && x->type >= 0 ? 0 : -1;
}

/* --- pure parts --------------------------------------------------------------------------------------------------- */

static void test_parse(void)
{
    pulse_ratelimit_policy_t p;
    char err[256];

    CHECK(pulse_ratelimit_policy_parse("tenant=100/200,ip=50/100,global=5000/10000", &p, err, sizeof(err)) == 0 &&
              p.scope[PULSE_RATELIMIT_SCOPE_TENANT].rate == 100 && p.scope[PULSE_RATELIMIT_SCOPE_TENANT].burst == 200 &&
              p.scope[PULSE_RATELIMIT_SCOPE_IP].rate == 50 && p.scope[PULSE_RATELIMIT_SCOPE_IP].burst == 100 &&
              p.scope[PULSE_RATELIMIT_SCOPE_GLOBAL].rate == 5000 && p.scope[PULSE_RATELIMIT_SCOPE_GLOBAL].burst == 10000,
          "parse: the three scopes");
    CHECK(pulse_ratelimit_policy_parse("  ip = 0.5 / 1 ", &p, err, sizeof(err)) == 0 &&
              p.scope[PULSE_RATELIMIT_SCOPE_IP].rate == 0.5 && p.scope[PULSE_RATELIMIT_SCOPE_IP].burst == 1 &&
              p.scope[PULSE_RATELIMIT_SCOPE_TENANT].rate == 0 && p.scope[PULSE_RATELIMIT_SCOPE_GLOBAL].rate == 0 &&
              pulse_ratelimit_policy_is_limited(&p),
          "parse: fractional rate, blanks, absent scopes unlimited");
    CHECK(pulse_ratelimit_policy_parse("global=1/1 , tenant=2/3", &p, err, sizeof(err)) == 0 &&
              p.scope[PULSE_RATELIMIT_SCOPE_GLOBAL].burst == 1 && p.scope[PULSE_RATELIMIT_SCOPE_TENANT].burst == 3,
          "parse: any order");
    CHECK(pulse_ratelimit_policy_parse("", &p, err, sizeof(err)) == 0 && !pulse_ratelimit_policy_is_limited(&p) &&
              pulse_ratelimit_policy_parse("   ", &p, err, sizeof(err)) == 0 &&
              pulse_ratelimit_policy_parse(NULL, &p, err, sizeof(err)) == 0 && !pulse_ratelimit_policy_is_limited(&p),
          "parse: empty means no limits");

    static const struct {
        const char *in, *want;
    } bad[] = {
        {"user=1/2", "unknown scope \"user\""},
        {"ip=1/0", "burst must be"},
        {"ip=1/-3", "burst must be >= 1"},
        {"ip=0/5", "rate must be > 0"},
        {"ip=0.0/5", "rate must be > 0"},
        {"ip=-1/5", "rate must be > 0"},
        {"ip=abc/5", "not a decimal number"},
        {"ip=1e3/5", "not a decimal number"},
        {"ip=nan/5", "not a decimal number"},
        {"ip=1/2.5", "not an integer"},
        {"ip=1/", "not an integer"},
        {"ip=1", "expected scope=rate/burst"},
        {"garbage", "expected scope=rate/burst"},
        {"ip=1/2,", "empty item"},
        {",ip=1/2", "empty item"},
        {"ip=1/2,,global=1/1", "empty item"},
        {"ip=1/2,ip=3/4", "ip given twice"},
        {"ip=1/2 x", "not an integer"},
        {"ip=0.0001/5", "rate must be between"},
        {"ip=1/2000000000", "burst must be between"},
    };
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        char name[128];
        err[0] = '\0';
        int rc = pulse_ratelimit_policy_parse(bad[i].in, &p, err, sizeof(err));
        snprintf(name, sizeof(name), "parse: \"%s\" refused", bad[i].in);
        CHECK(rc == -1 && strstr(err, bad[i].want) != NULL && !pulse_ratelimit_policy_is_limited(&p), name);
        if (rc != -1 || strstr(err, bad[i].want) == NULL)
            printf("#   err: %s\n", err);
    }
}

/* the value of header `name` in `hs`, or "" */
static const char *header_of(h2o_headers_t *hs, const char *name)
{
    static char v[PULSE_RATELIMIT_FIELD_SIZE];
    ssize_t i = h2o_find_header_by_str(hs, name, strlen(name), -1);
    snprintf(v, sizeof(v), "%.*s", i >= 0 ? (int)hs->entries[i].value.len : 0, i >= 0 ? hs->entries[i].value.base : "");
    return v;
}

static void test_headers(void)
{
    pulse_ratelimit_headers_t h;
    pulse_ratelimit_subject_t who = {.cls = PULSE_CLASS_READ, .tenant = "acme", .ip = "10.0.0.1"};
    pulse_ratelimit_result_t denied = {.allowed = false,
                                       .limited = true,
                                       .scope = PULSE_RATELIMIT_SCOPE_IP,
                                       .limit = 200,
                                       .rate = 100,
                                       .remaining = 0,
                                       .retry_after_ms = 1,
                                       .reset_ms = 2001,
                                       .nbuckets = 3,
                                       .bucket = {{PULSE_RATELIMIT_SCOPE_TENANT, 10, 0.5, 7, 1500},
                                                  {PULSE_RATELIMIT_SCOPE_IP, 200, 100, 0, 1},
                                                  {PULSE_RATELIMIT_SCOPE_GLOBAL, 1000, 1000, 999, 0}}};
    pulse_ratelimit_headers(&denied, &who, &h);
    CHECK_STR(h.policy,
              "\"read-tenant\";q=10;w=20;pk=:YWNtZQ==:, \"read-ip\";q=200;w=2;pk=:MTAuMC4wLjE=:, \"read-global\";q=1000;w=1",
              "RateLimit-Policy: an item per bucket, q=burst, w=burst/rate rounded up, pk the tenant or address bytes");
    CHECK_STR(h.ratelimit,
              "\"read-tenant\";r=7;t=2;pk=:YWNtZQ==:, \"read-ip\";r=0;t=1;pk=:MTAuMC4wLjE=:, \"read-global\";r=999;t=0",
              "RateLimit: r=tokens left, t=seconds to the next token rounded up, no pk for the global bucket");
    CHECK_STR(h.limit, "200", "legacy: RateLimit-Limit is the burst of the most constraining bucket");
    CHECK_STR(h.remaining, "0", "legacy: RateLimit-Remaining");
    CHECK_STR(h.reset, "3", "legacy: RateLimit-Reset in seconds, rounded up");
    CHECK_STR(h.legacy_policy, "200;w=2", "legacy: draft-06 policy burst;w=burst/rate");
    CHECK_STR(h.retry_after, "1", "Retry-After at least 1 s");
    denied.retry_after_ms = 2000;
    pulse_ratelimit_headers(&denied, &who, &h);
    CHECK_STR(h.retry_after, "2", "Retry-After 2000 ms = 2 s");
    denied.retry_after_ms = 2001;
    pulse_ratelimit_headers(&denied, &who, &h);
    CHECK_STR(h.retry_after, "3", "Retry-After rounded up");

    pulse_ratelimit_subject_t search = {.cls = PULSE_CLASS_SEARCH, .tenant = "a\"b\\c d", .ip = NULL};
    pulse_ratelimit_result_t ok = {.allowed = true,
                                   .limited = true,
                                   .limit = 3,
                                   .rate = 0.3,
                                   .remaining = 2,
                                   .reset_ms = 0,
                                   .nbuckets = 1,
                                   .bucket = {{PULSE_RATELIMIT_SCOPE_TENANT, 3, 0.3, 2, 3334}}};
    pulse_ratelimit_headers(&ok, &search, &h);
    CHECK_STR(h.policy,
              "\"search-tenant\";q=3;w=10;pk=:YSJiXGMgZA==:", "window 3/0.3 = 10 s (no float residue); any tenant bytes in pk");
    CHECK_STR(h.ratelimit, "\"search-tenant\";r=2;t=4;pk=:YSJiXGMgZA==:", "t rounded up (3334 ms: 4 s)");
    CHECK_STR(h.reset, "0", "legacy: full bucket resets now");
    CHECK(h.retry_after[0] == '\0', "no Retry-After when allowed");
    ok.bucket[0] = (pulse_ratelimit_bucket_t){PULSE_RATELIMIT_SCOPE_TENANT, 10, 1000, 9, 1};
    search.tenant = "0123456789012345678901234567890123456789012345678901234567890123456789"; /* 70 bytes: no pk */
    pulse_ratelimit_headers(&ok, &search, &h);
    CHECK_STR(h.policy, "\"search-tenant\";q=10;w=1", "window at least 1 s; a partition key over 64 bytes is left out");
    ok.bucket[0].burst = PULSE_RATELIMIT_MAX_BURST, ok.bucket[0].rate = RL_TEST_MIN_RATE;
    pulse_ratelimit_headers(&ok, &search, &h);
    CHECK_STR(h.policy, "\"search-tenant\";q=1000000000;w=1000000000000", "the largest window (1e9 / 0.001 per s) is exact");
    ok.bucket[0].burst = 7, ok.bucket[0].rate = 3;
    pulse_ratelimit_headers(&ok, &search, &h);
    CHECK_STR(h.policy, "\"search-tenant\";q=7;w=3", "a window of 2.33 s is 3 s");

    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    h2o_headers_t hs = {NULL, 0, 0}, hl = {NULL, 0, 0};
    pulse_ratelimit_add_headers(&pool, &hs, &denied, &who, 0);
    CHECK(hs.size == 3 && strcmp(header_of(&hs, "retry-after"), "3") == 0 &&
              strncmp(header_of(&hs, "ratelimit"), "\"read-tenant\";r=7", 17) == 0 &&
              strncmp(header_of(&hs, "ratelimit-policy"), "\"read-tenant\";q=10", 18) == 0,
          "add_headers: RateLimit, RateLimit-Policy and Retry-After on a denial");
    pulse_ratelimit_add_headers(&pool, &hl, &denied, &who, 1);
    CHECK(hl.size == 6 && strcmp(header_of(&hl, "ratelimit-limit"), "200") == 0 &&
              strcmp(header_of(&hl, "ratelimit-remaining"), "0") == 0 && strcmp(header_of(&hl, "ratelimit-reset"), "3") == 0 &&
              strncmp(header_of(&hl, "ratelimit-policy"), "\"read-tenant\"", 13) == 0,
          "add_headers, legacy: the draft-06 fields too, RateLimit-Policy in the -12 form");
    h2o_headers_t hs2 = {NULL, 0, 0}, hs3 = {NULL, 0, 0};
    pulse_ratelimit_add_headers(&pool, &hs2, &ok, &search, 0);
    pulse_ratelimit_result_t unlimited = {.allowed = true};
    pulse_ratelimit_add_headers(&pool, &hs3, &unlimited, &who, 1);
    CHECK(hs2.size == 2 && h2o_find_header_by_str(&hs2, H2O_STRLIT("retry-after"), -1) < 0 && hs3.size == 0,
          "add_headers: no Retry-After when allowed, nothing when unlimited");
    h2o_mem_clear_pool(&pool);
}

static void test_keys(void)
{
    pulse_ratelimit_t *rl = new_limiter("", "pfx");
    char a[PULSE_RATELIMIT_KEY_SIZE], b[PULSE_RATELIMIT_KEY_SIZE];
    CHECK(rl != NULL, "keys: limiter");
    if (rl == NULL)
        return;
    pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_TENANT, "acme", a, sizeof(a));
    CHECK_STR(a, "pfx:read:t:acme", "keys: tenant key");
    pulse_ratelimit_key(rl, PULSE_CLASS_WRITE, PULSE_RATELIMIT_SCOPE_IP, "2001:db8::1", a, sizeof(a));
    CHECK_STR(a, "pfx:write:ip:2001:db8::1", "keys: IPv6 address verbatim");
    pulse_ratelimit_key(rl, PULSE_CLASS_SEARCH, PULSE_RATELIMIT_SCOPE_GLOBAL, "ignored", a, sizeof(a));
    CHECK_STR(a, "pfx:search:g", "keys: global key");

    pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_TENANT, "x y", a, sizeof(a));
    pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_TENANT, "x_y", b, sizeof(b));
    CHECK(strncmp(a, "pfx:read:t:~", 12) == 0 && strlen(a) == 12 + 32 && strchr(a, ' ') == NULL && strcmp(a, b) != 0,
          "keys: a space is hashed, no collision with x_y");
    pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_TENANT, "a\r\nDEL *", a, sizeof(a));
    CHECK(strchr(a, '\r') == NULL && strchr(a, '\n') == NULL && strchr(a, '*') == NULL, "keys: no control characters");
    /* "a:ip:b" as a tenant stays in the tenant namespace: the scope comes before the id */
    pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_TENANT, "ip:b", a, sizeof(a));
    pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_IP, "b", b, sizeof(b));
    CHECK(strcmp(a, "pfx:read:t:ip:b") == 0 && strcmp(b, "pfx:read:ip:b") == 0, "keys: tenant with ':' cannot reach the ip keys");
    pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_TENANT, "~0123", a, sizeof(a));
    CHECK(strncmp(a, "pfx:read:t:~", 12) == 0 && strlen(a) == 12 + 32, "keys: an id that looks hashed is hashed itself");

    char long1[301], long2[301];
    memset(long1, '1', 300);
    long1[300] = '\0';
    memcpy(long2, long1, sizeof(long1));
    long2[299] = '2';
    size_t n1 = pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_IP, long1, a, sizeof(a));
    size_t n2 = pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_IP, long2, b, sizeof(b));
    CHECK(n1 == strlen(a) && n1 <= 13 + 33 && n2 == n1 && strcmp(a, b) != 0, "keys: long ids are bounded and distinct");
    char max64[65];
    memset(max64, 'a', 64);
    max64[64] = '\0';
    pulse_ratelimit_key(rl, PULSE_CLASS_READ, PULSE_RATELIMIT_SCOPE_IP, max64, a, sizeof(a));
    CHECK(strstr(a, max64) != NULL, "keys: 64 safe bytes kept verbatim");
    pulse_ratelimit_destroy(rl);

    CHECK(pulse_ratelimit_create(NULL, "bad prefix") == NULL, "keys: prefix with a space refused");
}

/* the local buckets (no Redis) report every bucket, as the script does */
static void test_local_buckets(void)
{
    pulse_ratelimit_t *rl = new_limiter("tenant=1/5,ip=2/3,global=100/50", "tl");
    pulse_ratelimit_result_t a;
    CHECK(check(rl, NULL, "acme", "10.0.0.1", &a) == 1 && a.allowed && a.nbuckets == 3 &&
              a.bucket[0].scope == PULSE_RATELIMIT_SCOPE_TENANT && a.bucket[0].remaining == 4 && a.bucket[0].next_ms == 1000 &&
              a.bucket[1].scope == PULSE_RATELIMIT_SCOPE_IP && a.bucket[1].remaining == 2 && a.bucket[1].next_ms == 500 &&
              a.bucket[2].scope == PULSE_RATELIMIT_SCOPE_GLOBAL && a.bucket[2].remaining == 49 && a.bucket[2].next_ms == 10,
          "local: three buckets, each with its tokens left and the time to its next token");
    if (a.nbuckets == 3)
        printf("#   %u/%llu %u/%llu %u/%llu\n", a.bucket[0].remaining, (unsigned long long)a.bucket[0].next_ms,
               a.bucket[1].remaining, (unsigned long long)a.bucket[1].next_ms, a.bucket[2].remaining,
               (unsigned long long)a.bucket[2].next_ms);
    pulse_ratelimit_result_t b;
    CHECK(check(rl, NULL, NULL, "10.0.0.1", &b) == 1 && b.nbuckets == 2 && b.bucket[0].scope == PULSE_RATELIMIT_SCOPE_IP &&
              b.bucket[1].scope == PULSE_RATELIMIT_SCOPE_GLOBAL,
          "local: no tenant, no tenant bucket");
    pulse_ratelimit_destroy(rl);
}

static void test_unlimited(void)
{
    pulse_ratelimit_t *rl = new_limiter("tenant=1/1", NULL);
    pulse_ratelimit_result_t res;
    rec_t rec = {0};
    pulse_ratelimit_pending_t *ref = (void *)1;
    CHECK(rl != NULL && pulse_ratelimit_check(rl, NULL, PULSE_CLASS_WRITE, "acme", "10.0.0.1", &res, on_result, &rec, &ref) == 1 &&
              res.allowed && !res.limited && res.source == PULSE_RATELIMIT_SOURCE_NONE && ref == NULL,
          "unlimited class: decided at once, allowed, no limit");
    CHECK(pulse_ratelimit_check(rl, NULL, PULSE_CLASS_READ, NULL, "10.0.0.1", &res, on_result, &rec, &ref) == 1 && res.allowed &&
              !res.limited,
          "tenant-only policy, no tenant: unlimited");
    CHECK(pulse_ratelimit_check(rl, NULL, PULSE_CLASS_READ, "acme", "10.0.0.1", &res, on_result, &rec, &ref) == 1 && res.allowed &&
              res.limited && res.source == PULSE_RATELIMIT_SOURCE_LOCAL && res.remaining == 0,
          "no Redis client: local decision");
    CHECK(pulse_ratelimit_check(rl, NULL, PULSE_CLASS_READ, "acme", "10.0.0.2", &res, on_result, &rec, &ref) == 1 && !res.allowed &&
              res.scope == PULSE_RATELIMIT_SCOPE_TENANT && res.retry_after_ms > 500 && res.retry_after_ms <= 1000,
          "no Redis client: local denial, retry within 1 s");
    pulse_ratelimit_stats_t st;
    pulse_ratelimit_stats(rl, &st);
    CHECK(rec.calls == 0 && st.unlimited == 2 && st.allowed[PULSE_CLASS_WRITE] == 1 && st.allowed[PULSE_CLASS_READ] == 2 &&
              st.limited[PULSE_CLASS_READ][PULSE_RATELIMIT_SCOPE_TENANT] == 1 && st.fallback_checks == 2 && st.redis_checks == 0,
          "unlimited: stats, no callback");
    pulse_ratelimit_destroy(rl);
}

/* --- against Redis ------------------------------------------------------------------------------------------------ */

static void test_burst_refill(pulse_redis_t *r)
{
    pulse_ratelimit_t *rl = new_limiter("ip=2/3", "t1"); /* a token every 500 ms */
    pulse_ratelimit_result_t res[4];
    int rc[4];
    for (int i = 0; i != 4; ++i)
        rc[i] = check(rl, r, "acme", "10.0.0.1", &res[i]);
    CHECK(rc[0] == 0 && rc[1] == 0 && rc[2] == 0 && rc[3] == 0, "burst: decided by Redis (pending, then the callback)");
    CHECK(res[0].allowed && res[1].allowed && res[2].allowed && res[0].source == PULSE_RATELIMIT_SOURCE_REDIS &&
              res[0].remaining == 2 && res[1].remaining == 1 && res[2].remaining == 0 && res[2].limit == 3 &&
              res[2].scope == PULSE_RATELIMIT_SCOPE_IP,
          "burst: 3 allowed, remaining 2, 1, 0");
    CHECK(!res[3].allowed && res[3].scope == PULSE_RATELIMIT_SCOPE_IP && res[3].limit == 3 && res[3].remaining == 0 &&
              res[3].retry_after_ms > 250 && res[3].retry_after_ms <= 500 && res[3].reset_ms > 1250 && res[3].reset_ms <= 1500,
          "burst: the 4th denied, retry after <= 500 ms, full in <= 1500 ms");
    if (res[3].allowed || res[3].retry_after_ms <= 250 || res[3].retry_after_ms > 500)
        printf("#   retry_after_ms %llu reset_ms %llu\n", (unsigned long long)res[3].retry_after_ms,
               (unsigned long long)res[3].reset_ms);
    pulse_ratelimit_headers_t h;
    pulse_ratelimit_subject_t who = {.cls = PULSE_CLASS_READ, .tenant = "acme", .ip = "10.0.0.1"};
    pulse_ratelimit_headers(&res[3], &who, &h);
    CHECK(strcmp(h.retry_after, "1") == 0 && strcmp(h.legacy_policy, "3;w=2") == 0 &&
              strcmp(h.policy, "\"read-ip\";q=3;w=2;pk=:MTAuMC4wLjE=:") == 0 &&
              strcmp(h.ratelimit, "\"read-ip\";r=0;t=1;pk=:MTAuMC4wLjE=:") == 0,
          "burst: Retry-After 1, the ip bucket's item with r=0 and t = Retry-After");
    if (strcmp(h.ratelimit, "\"read-ip\";r=0;t=1;pk=:MTAuMC4wLjE=:") != 0)
        printf("#   RateLimit: %s\n#   RateLimit-Policy: %s\n", h.ratelimit, h.policy);
    CHECK(res[1].nbuckets == 1 && res[1].bucket[0].remaining == 1 && res[1].bucket[0].next_ms > 0 &&
              res[1].bucket[0].next_ms <= 500,
          "burst: the bucket's own state from Redis (1 left, next token within 500 ms)");

    run_for(NULL, 600);
    pulse_ratelimit_result_t a, b;
    CHECK(check(rl, r, "acme", "10.0.0.1", &a) == 0 && a.allowed && a.remaining == 0, "refill: allowed again after 600 ms");
    CHECK(check(rl, r, "acme", "10.0.0.1", &b) == 0 && !b.allowed, "refill: one token only");
    CHECK(check(rl, r, "acme", "10.0.0.2", &b) == 0 && b.allowed && b.remaining == 2, "another IP has its own bucket");

    raw_t x;
    const char *pttl[] = {"PTTL", "t1:read:ip:10.0.0.1"};
    CHECK(redis_raw(r, &x, 2, pttl) == 0 && x.integer > 1500 && x.integer <= 2500, "bucket expires after its refill time + 1 s");
    pulse_ratelimit_stats_t st;
    pulse_ratelimit_stats(rl, &st);
    CHECK(st.redis_checks == 7 && st.fallback_checks == 0 && st.errors == 0 && st.allowed[PULSE_CLASS_READ] == 5 &&
              st.limited[PULSE_CLASS_READ][PULSE_RATELIMIT_SCOPE_IP] == 2,
          "burst: stats");
    pulse_ratelimit_destroy(rl);
}

static void test_all_or_nothing(pulse_redis_t *r)
{
    pulse_ratelimit_t *rl = new_limiter("tenant=1/10,ip=1/2", "t2");
    pulse_ratelimit_result_t a, b, c, d;
    raw_t before, after, other;
    const char *hget[] = {"HMGET", "t2:read:t:acme", "tokens", "ts"};
    CHECK(check(rl, r, "acme", "10.0.0.1", &a) == 0 && a.allowed && a.scope == PULSE_RATELIMIT_SCOPE_IP && a.remaining == 1,
          "aon: first allowed, the IP bucket is the most constraining");
    CHECK(check(rl, r, "acme", "10.0.0.1", &b) == 0 && b.allowed, "aon: second allowed");
    const char *tk[] = {"HGET", "t2:read:t:acme", "tokens"};
    CHECK(redis_raw(r, &before, 3, tk) == 0 && atof(before.str) > 7.9 && atof(before.str) < 8.6, "aon: tenant bucket holds ~8");
    CHECK(check(rl, r, "acme", "10.0.0.1", &c) == 0 && !c.allowed && c.scope == PULSE_RATELIMIT_SCOPE_IP && c.limit == 2,
          "aon: third denied by the IP bucket");
    CHECK(c.nbuckets == 2 && c.bucket[0].scope == PULSE_RATELIMIT_SCOPE_TENANT && c.bucket[0].burst == 10 &&
              c.bucket[0].remaining == 8 && c.bucket[1].scope == PULSE_RATELIMIT_SCOPE_IP && c.bucket[1].remaining == 0 &&
              c.bucket[1].next_ms > 0 && c.bucket[1].next_ms <= 1000 &&
              (c.bucket[1].next_ms + 999) / 1000 == (c.retry_after_ms + 999) / 1000,
          "aon: every bucket's state from Redis: the tenant's 8 left, the IP's 0 with its next token at Retry-After");
    if (c.nbuckets != 2 || c.bucket[0].remaining != 8)
        printf("#   nbuckets %d tenant %u ip %u next %llu\n", c.nbuckets, c.bucket[0].remaining, c.bucket[1].remaining,
               (unsigned long long)c.bucket[1].next_ms);
    CHECK(redis_raw(r, &after, 3, tk) == 0 && strcmp(before.str, after.str) == 0,
          "aon: the denial left the tenant bucket untouched");
    CHECK(check(rl, r, "acme", "10.0.0.9", &d) == 0 && d.allowed && redis_raw(r, &other, 3, tk) == 0 &&
              atof(other.str) < atof(after.str) - 0.5,
          "aon: another IP's request takes a tenant token");
    raw_t x;
    CHECK(redis_raw(r, &x, 4, hget) == 0 && x.type == REDIS_REPLY_ARRAY, "aon: the bucket is a hash {tokens, ts}");
    pulse_ratelimit_destroy(rl);
}

static void test_two_proxies(void)
{
    pulse_redis_t *ra = new_client(), *rb = new_client();
    pulse_ratelimit_t *la = new_limiter("global=1/4", "t3"), *lb = new_limiter("global=1/4", "t3");
    CHECK(run_until_up(ra, 2000) && run_until_up(rb, 2000), "two proxies: two clients up");
    int allowed = 0, denied_a = 0, denied_b = 0;
    pulse_ratelimit_result_t res;
    for (int i = 0; i != 4; ++i) {
        if (check(i % 2 == 0 ? la : lb, i % 2 == 0 ? ra : rb, NULL, "10.0.0.1", &res) == 0 && res.allowed &&
            res.scope == PULSE_RATELIMIT_SCOPE_GLOBAL)
            ++allowed;
    }
    denied_a = check(la, ra, NULL, "10.0.0.2", &res) == 0 && !res.allowed;
    denied_b = check(lb, rb, "other", "10.0.0.3", &res) == 0 && !res.allowed;
    CHECK(allowed == 4 && denied_a && denied_b, "two proxies: one global bucket of 4, shared");
    pulse_ratelimit_destroy(la);
    pulse_ratelimit_destroy(lb);
    pulse_redis_destroy(ra);
    pulse_redis_destroy(rb);
}

/* fast buckets: a loop leases tokens and spends them without Redis, its lease doubling while it spends each in time (up
   to rate x 50 ms, at most burst / 8); the proxies together never take more than the buckets hold */
static void test_lease(pulse_redis_t *r)
{
    pulse_ratelimit_t *rl = new_limiter("global=10000/10000", "t9");
    pulse_ratelimit_result_t res;
    pulse_ratelimit_stats_t s0, s1;
    pulse_ratelimit_stats(rl, &s0);
    int redis = 0, now = 0, allowed = 0;
    for (int i = 0; i != 300; ++i) {
        int rc = check(rl, r, NULL, "10.0.0.1", &res);
        redis += rc == 0;
        now += rc == 1;
        allowed += res.allowed && rc >= 0;
    }
    pulse_ratelimit_stats(rl, &s1);
    CHECK(allowed == 300 && redis >= 5 && redis <= 40 && s1.lease_checks - s0.lease_checks == (uint64_t)now &&
              s1.redis_checks - s0.redis_checks == (uint64_t)redis,
          "lease: 300 requests of a 10000/s bucket, a few round trips (leases 1, 2, 4, ...), not 300");
    printf("#   %d round trips to Redis, %d decided with leased tokens\n", redis, now);
    raw_t x;
    const char *tk[] = {"HGET", "t9:read:g", "tokens"};
    CHECK(redis_raw(r, &x, 3, tk) == 0 && atof(x.str) >= 10000 - 2 * 300 && atof(x.str) < 9720,
          "lease: the tokens were taken from the bucket in Redis (no more than twice what was spent)");
    CHECK(res.limit == 10000, "lease: headers from the leased decision");
    pulse_ratelimit_destroy(rl);

    /* a second proxy sees what the first one leased: a bucket of 16 gives leases of 2, and 16 requests in all */
    pulse_redis_t *rb = new_client();
    pulse_ratelimit_t *la = new_limiter("global=100/16", "t10"), *lb = new_limiter("global=100/16", "t10");
    CHECK(run_until_up(rb, 2000), "lease: second client up");
    int ok = 0;
    for (int i = 0; i != 40; ++i)
        ok += check(i % 2 ? la : lb, i % 2 ? r : rb, NULL, "10.0.0.1", &res) >= 0 && res.allowed;
    CHECK(ok >= 16 && ok <= 18, "lease: two proxies with leases admit what the bucket holds (16, and ~2 refilled)");
    pulse_ratelimit_destroy(la);
    pulse_ratelimit_destroy(lb);
    pulse_redis_destroy(rb);
}

static void test_noscript(pulse_redis_t *r)
{
    pulse_ratelimit_t *rl = new_limiter("ip=10/100", "t4"); /* slow enough for leases of one token: Redis every time */
    pulse_ratelimit_result_t res;
    raw_t x;
    const char *flush[] = {"SCRIPT", "FLUSH"};
    CHECK(check(rl, r, NULL, "10.0.0.1", &res) == 0 && res.allowed && redis_raw(r, &x, 2, flush) == 0, "noscript: scripts flushed");
    CHECK(check(rl, r, NULL, "10.0.0.1", &res) == 0 && res.allowed && res.source == PULSE_RATELIMIT_SOURCE_REDIS &&
              res.remaining == 98,
          "noscript: EVALSHA, NOSCRIPT, EVAL: decided by Redis");
    pulse_ratelimit_stats_t st;
    pulse_ratelimit_stats(rl, &st);
    CHECK(st.redis_checks == 2 && st.errors == 0 && st.fallback_checks == 0, "noscript: not an error");
    pulse_ratelimit_destroy(rl);
}

static void test_cancel(pulse_redis_t *r)
{
    pulse_ratelimit_t *rl = new_limiter("ip=100/100", "t5");
    pulse_ratelimit_result_t res;
    rec_t rec = {0};
    pulse_ratelimit_pending_t *ref = NULL;
    CHECK(pulse_ratelimit_check(rl, r, PULSE_CLASS_READ, NULL, "10.0.0.1", &res, on_result, &rec, &ref) == 0 && ref != NULL,
          "cancel: check pending");
    pulse_ratelimit_cancel(ref);
    CHECK(ref == NULL, "cancel: ref cleared");
    run_for(NULL, 200);
    CHECK(rec.calls == 0, "cancel: no callback after the reply");

    /* cancelled, then its client destroyed before the reply: freed by the "closed" answer */
    pulse_redis_t *rc = new_client();
    rec_t rec2 = {0}, rec3 = {0};
    pulse_ratelimit_pending_t *ref2 = NULL, *ref3 = NULL;
    CHECK(run_until_up(rc, 2000) &&
              pulse_ratelimit_check(rl, rc, PULSE_CLASS_READ, NULL, "10.0.0.1", &res, on_result, &rec2, &ref2) == 0 &&
              pulse_ratelimit_check(rl, rc, PULSE_CLASS_READ, NULL, "10.0.0.2", &res, on_result, &rec3, &ref3) == 0,
          "cancel: two checks pending on a second client");
    pulse_ratelimit_cancel(ref2);
    pulse_redis_destroy(rc);
    CHECK(rec2.calls == 0 && rec3.calls == 1 && ref3 == NULL && rec3.res.allowed && rec3.res.source == PULSE_RATELIMIT_SOURCE_LOCAL,
          "cancel: client destroyed: the cancelled check stays silent, the other is decided locally");
    pulse_ratelimit_stats_t st;
    pulse_ratelimit_stats(rl, &st);
    CHECK(st.cancelled == 2 && st.errors == 1, "cancel: stats");
    pulse_ratelimit_destroy(rl);
}

static void test_fallback(pulse_redis_t *r)
{
    pulse_ratelimit_t *rl = new_limiter("ip=1/3", "t6");
    pulse_ratelimit_result_t res;
    pulse_ratelimit_stats_t st0, st1, st2;
    rec_t inflight = {0};
    pulse_ratelimit_pending_t *ref = NULL;

    CHECK(check(rl, r, NULL, "10.0.0.1", &res) == 0 && res.source == PULSE_RATELIMIT_SOURCE_REDIS, "fallback: Redis decides first");
    pulse_ratelimit_stats(rl, &st0);
    CHECK(pulse_ratelimit_check(rl, r, PULSE_CLASS_READ, NULL, "10.0.0.5", &res, on_result, &inflight, &ref) == 0,
          "fallback: a check in flight");
    stop_redis();
    run_for(&inflight.calls, 3000);
    CHECK(inflight.calls == 1 && inflight.res.allowed && inflight.res.source == PULSE_RATELIMIT_SOURCE_LOCAL && ref == NULL,
          "fallback: the check in flight when Redis died is decided locally");
    CHECK(run_until_down(r, 2000), "fallback: client down");

    int allowed = 0, rcs = 0;
    pulse_ratelimit_result_t last;
    for (int i = 0; i != 4; ++i) {
        rcs += check(rl, r, "acme", "10.0.0.1", &last) == 1;
        allowed += last.allowed && last.source == PULSE_RATELIMIT_SOURCE_LOCAL;
    }
    CHECK(rcs == 4 && allowed == 3 && !last.allowed && last.scope == PULSE_RATELIMIT_SCOPE_IP && last.retry_after_ms > 500 &&
              last.retry_after_ms <= 1000,
          "fallback: decided at once, locally: 3 allowed, the 4th denied");
    pulse_ratelimit_stats(rl, &st1);
    CHECK(st1.fallback_checks == st0.fallback_checks + 5 && st1.errors == st0.errors + 1 && st1.local_buckets == 2,
          "fallback: counted");

    CHECK(start_redis(redis_port) == 0, "fallback: redis restarted");
    CHECK(run_until_up(r, 3000), "fallback: client up again");
    CHECK(check(rl, r, "acme", "10.0.0.1", &res) == 0 && res.allowed && res.source == PULSE_RATELIMIT_SOURCE_REDIS &&
              res.remaining == 2,
          "fallback: back to Redis (an empty one: EVAL after NOSCRIPT)");
    pulse_ratelimit_stats(rl, &st2);
    CHECK(st2.redis_checks == st1.redis_checks + 1 && st2.fallback_checks == st1.fallback_checks, "fallback: Redis counted again");
    pulse_ratelimit_destroy(rl);
}

/* --- local table, policies ---------------------------------------------------------------------------------------- */

static void test_local_bound(void)
{
    pulse_ratelimit_t *rl = new_limiter("ip=1/1", NULL);
    pulse_ratelimit_set_local_max(rl, 16);
    pulse_ratelimit_result_t res;
    int allowed = 0;
    for (int i = 0; i != 100; ++i) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 256, i % 256);
        allowed += check(rl, NULL, NULL, ip, &res) == 1 && res.allowed;
    }
    pulse_ratelimit_stats_t st;
    pulse_ratelimit_stats(rl, &st);
    CHECK(allowed == 100 && st.local_buckets == 16 && st.local_evictions == 84, "local table: bounded at 16, oldest evicted");
    CHECK(check(rl, NULL, NULL, "10.1.0.99", &res) == 1 && !res.allowed, "local table: a recent bucket is still enforced");
    CHECK(check(rl, NULL, NULL, "10.1.0.0", &res) == 1 && res.allowed, "local table: an evicted one starts full");
    pulse_ratelimit_set_local_max(rl, 1);
    pulse_ratelimit_stats(rl, &st);
    CHECK(st.local_buckets == 16, "local table: the bound is at least 16");
    pulse_ratelimit_destroy(rl);
}

typedef struct {
    pulse_ratelimit_t *rl;
    volatile int stop;
    int swaps;
} swapper_t;

static void *swapper(void *arg)
{
    swapper_t *s = arg;
    pulse_ratelimit_policy_t pa[PULSE_CLASS_COUNT], pb[PULSE_CLASS_COUNT];
    char err[128];
    memset(pa, 0, sizeof(pa));
    memset(pb, 0, sizeof(pb));
    if (pulse_ratelimit_policy_parse("ip=1/5,tenant=1/5", &pa[PULSE_CLASS_READ], err, sizeof(err)) != 0 ||
        pulse_ratelimit_policy_parse("ip=2/7,tenant=2/7", &pb[PULSE_CLASS_READ], err, sizeof(err)) != 0)
        return NULL;
    while (!s->stop) {
        pulse_ratelimit_set_policies(s->rl, (s->swaps++ & 1) ? pa : pb);
    }
    return NULL;
}

static void test_policy_swap(void)
{
    swapper_t s = {new_limiter("ip=1/5,tenant=1/5", NULL), 0, 0};
    pthread_t th;
    int bad = 0, reads = 0;
    pthread_create(&th, NULL, swapper, &s);
    uint64_t end = now_ms() + 300;
    while (now_ms() < end || s.swaps < 1000) {
        pulse_ratelimit_policy_t p;
        pulse_ratelimit_get_policy(s.rl, PULSE_CLASS_READ, &p);
        for (int i = 0; i != 2; ++i) {
            const pulse_ratelimit_limit_t *l = &p.scope[i];
            if (!((l->rate == 1 && l->burst == 5) || (l->rate == 2 && l->burst == 7)) || l->rate != p.scope[1 - i].rate)
                ++bad;
        }
        pulse_ratelimit_result_t res;
        if (check(s.rl, NULL, "t", "10.0.0.1", &res) != 1 || !(res.limit == 5 || res.limit == 7))
            ++bad;
        ++reads;
    }
    s.stop = 1;
    pthread_join(th, NULL);
    CHECK(bad == 0 && s.swaps >= 1000 && reads > 100, "policies replaced by another thread: never torn");
    printf("#   %d swaps, %d reads\n", s.swaps, reads);

    pulse_ratelimit_policy_t none[PULSE_CLASS_COUNT];
    memset(none, 0, sizeof(none));
    pulse_ratelimit_set_policies(s.rl, none);
    pulse_ratelimit_result_t res;
    CHECK(check(s.rl, NULL, "t", "10.0.0.1", &res) == 1 && res.allowed && !res.limited, "policies removed: unlimited");
    pulse_ratelimit_destroy(s.rl);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    atexit(stop_redis);
    loop = h2o_evloop_create();
    test_parse();
    test_headers();
    test_keys();
    test_unlimited();
    test_local_buckets();
    test_local_bound();
    test_policy_swap();

    redis_port = free_port();
    if (redis_port < 0 || start_redis(redis_port) != 0) {
        CHECK(0, "redis-server starts");
        TEST_DONE();
    }
    pulse_redis_t *r = new_client();
    CHECK(r != NULL && run_until_up(r, 2000), "client up");
    if (pulse_redis_is_up(r)) {
        test_burst_refill(r);
        test_all_or_nothing(r);
        test_two_proxies();
        test_lease(r);
        test_noscript(r);
        test_cancel(r);
        test_fallback(r);
    }
    pulse_redis_destroy(r);
    h2o_evloop_run(loop, 0); /* let closed sockets be freed */
    stop_redis();
    h2o_evloop_destroy(loop);
    TEST_DONE();
}
