/*
 * ratelimit.h: token-bucket rate limiting per endpoint class, shared by the
 * proxies through Redis, with an in-process fallback.
 *
 * A class's policy has up to three buckets per request: the tenant's (the
 * API token's tenant), the client IP's and a global one; each has a rate
 * (tokens per second, fractional allowed) and a burst (the bucket's size, an
 * integer).  A request takes one token from EVERY bucket that applies, or
 * from none: it is allowed only when all of them have a token, so a request
 * the IP bucket denies leaves the tenant's bucket untouched.
 *
 * The buckets live in Redis, as hashes {tokens, ts} under
 *   <prefix>:<class>:t:<tenant>   <prefix>:<class>:ip:<ip>   <prefix>:<class>:g
 * with a PEXPIRE a little beyond the time they take to refill: one Lua script
 * (EVALSHA, EVAL after NOSCRIPT) decides a request atomically with Redis's own
 * clock (TIME), so proxies with skewed clocks agree.  Ids outside
 * [A-Za-z0-9._:-] or longer than 64 bytes are replaced by "~" and a hash of
 * them, so no id can inject into a key, grow it without bound, or collide
 * with another.  (With Redis Cluster the keys of one request would need a
 * hash tag; the proxy talks to one Redis.)
 *
 * The fallback: when there is no Redis client, it is not UP, it refuses the
 * command, or it answers with an error or a timeout, the request is decided
 * with the same arithmetic on buckets in this process (monotonic clock): a
 * hash table shared by all loops under a mutex, bounded (least recently used
 * buckets are evicted beyond the bound, see pulse_ratelimit_set_local_max),
 * so a flood of addresses cannot grow memory.  While Redis is down each proxy
 * enforces every limit alone: N proxies let up to N times the limit through.
 *
 * Threads: one limiter is shared by every event loop; pulse_ratelimit_check
 * and pulse_ratelimit_cancel run on a loop's thread with that loop's Redis
 * client; pulse_ratelimit_set_policies and pulse_ratelimit_stats are safe from
 * any thread at any time (checks read the policies through a seqlock: no
 * lock, no shared write on the hot path).
 */
#ifndef PULSE_RATELIMIT_H
#define PULSE_RATELIMIT_H

#include <h2o.h>
#include <stdbool.h>
#include <stdint.h>
#include "config.h"
#include "redis.h"

typedef enum {
    PULSE_RATELIMIT_SCOPE_TENANT = 0,
    PULSE_RATELIMIT_SCOPE_IP,
    PULSE_RATELIMIT_SCOPE_GLOBAL,
    PULSE_RATELIMIT_SCOPE_COUNT
} pulse_ratelimit_scope_t;

#define PULSE_RATELIMIT_MAX_BURST 1000000000u /* largest burst (and rate) a policy accepts */
#define PULSE_RATELIMIT_MAX_ID 64             /* longest tenant or IP kept verbatim in a key */
#define PULSE_RATELIMIT_MAX_PREFIX 64         /* longest key prefix */

/* one bucket of a policy: rate == 0 means the scope is not limited */
typedef struct pulse_ratelimit_limit_t {
    double rate;    /* tokens per second, > 0 */
    uint32_t burst; /* tokens in a full bucket, >= 1 */
} pulse_ratelimit_limit_t;

/* the policy of one endpoint class: a limit per scope */
typedef struct pulse_ratelimit_policy_t {
    pulse_ratelimit_limit_t scope[PULSE_RATELIMIT_SCOPE_COUNT];
} pulse_ratelimit_policy_t;

typedef enum {
    PULSE_RATELIMIT_SOURCE_NONE = 0, /* no bucket applies: unlimited */
    PULSE_RATELIMIT_SOURCE_REDIS,    /* decided by the shared buckets */
    PULSE_RATELIMIT_SOURCE_LOCAL,    /* decided by this process's buckets (fallback) */
} pulse_ratelimit_source_t;

/* the state of one bucket of a decision, after it (the RateLimit field has one item per bucket) */
typedef struct pulse_ratelimit_bucket_t {
    pulse_ratelimit_scope_t scope;
    uint32_t burst;     /* tokens in a full bucket */
    double rate;        /* tokens per second */
    uint32_t remaining; /* whole tokens left in it */
    uint64_t next_ms;   /* until it holds one more whole token (a full bucket: 1 / rate after the next request) */
} pulse_ratelimit_bucket_t;

/*
 * A decision.  When `limited` is false no bucket applied (the class, or the request's scopes, have no limit): the request
 * is allowed and gets no header.  Otherwise `scope` is the bucket that denied the request (the one that refills last
 * when several did), or, when it was allowed, the most constraining one (fewest tokens left); limit, rate, remaining and
 * reset_ms describe that bucket, and `bucket` holds every bucket that applied (tenant, ip, global order).
 */
typedef struct pulse_ratelimit_result_t {
    bool allowed;
    bool limited;
    pulse_ratelimit_source_t source;
    pulse_ratelimit_scope_t scope;
    uint32_t limit;          /* burst of the bucket */
    double rate;             /* its rate, tokens per second */
    uint32_t remaining;      /* whole tokens left in it (after this request) */
    uint64_t retry_after_ms; /* 0 when allowed; else until every bucket has a token */
    uint64_t reset_ms;       /* until the bucket is full again */
    int nbuckets;
    pulse_ratelimit_bucket_t bucket[PULSE_RATELIMIT_SCOPE_COUNT];
} pulse_ratelimit_result_t;

/* who a decision was about: the partition keys (pk) of its buckets */
typedef struct pulse_ratelimit_subject_t {
    pulse_class_t cls;
    const char *tenant; /* NULL: none */
    const char *ip;     /* NULL: none */
} pulse_ratelimit_subject_t;

#define PULSE_RATELIMIT_FIELD_SIZE 640 /* three items with 64-byte partition keys fit */

/*
 * Header values of a decision (ratelimit_fields.c), NUL-terminated; empty when the header is not due. RateLimit and
 * RateLimit-Policy follow draft-ietf-httpapi-ratelimit-headers-12 (structured fields, RFC 9651): one item per bucket
 * that applied, named "<class>-<scope>" (e.g. "read-tenant"), with the bucket's partition key as pk (the tenant, the
 * client address; none for the global bucket):
 *   RateLimit-Policy: "read-tenant";q=<burst>;w=<seconds to refill from empty, rounded up>;pk=:<base64>:, ...
 *   RateLimit: "read-tenant";r=<whole tokens left>;t=<seconds until one more token, rounded up>;pk=:<base64>:, ...
 * The draft-06 fields (limit, remaining, reset, legacy_policy) describe the most constraining bucket, as before.
 */
typedef struct pulse_ratelimit_headers_t {
    char policy[PULSE_RATELIMIT_FIELD_SIZE];    /* RateLimit-Policy (-12) */
    char ratelimit[PULSE_RATELIMIT_FIELD_SIZE]; /* RateLimit (-12) */
    char limit[16];                             /* RateLimit-Limit (draft-06): the burst */
    char remaining[16];                         /* RateLimit-Remaining (draft-06) */
    char reset[24];                             /* RateLimit-Reset (draft-06): seconds until full, rounded up */
    char legacy_policy[40];                     /* draft-06's RateLimit-Policy: "<burst>;w=<seconds>" (never sent since -12) */
    char retry_after[24];                       /* Retry-After (denied only): seconds, rounded up, >= 1 */
} pulse_ratelimit_headers_t;

typedef struct pulse_ratelimit_stats_t {
    uint64_t allowed[PULSE_CLASS_COUNT];                              /* allowed decisions, unlimited ones included */
    uint64_t limited[PULSE_CLASS_COUNT][PULSE_RATELIMIT_SCOPE_COUNT]; /* denied, by the scope that denied */
    uint64_t unlimited;                                               /* decisions without any bucket */
    uint64_t redis_checks;                                            /* decided by Redis */
    uint64_t lease_checks;    /* decided with tokens a loop leased from Redis earlier (no round trip) */
    uint64_t fallback_checks; /* decided by the local buckets */
    uint64_t errors;          /* Redis answered an error, a timeout or an unexpected reply */
    uint64_t cancelled;       /* pending checks cancelled */
    uint64_t local_buckets;   /* buckets in the local table now */
    uint64_t local_evictions; /* buckets evicted from it to respect its bound */
} pulse_ratelimit_stats_t;

typedef struct pulse_ratelimit_t pulse_ratelimit_t;
typedef struct pulse_ratelimit_pending_t pulse_ratelimit_pending_t;

/*
 * The callback of a pending check: runs once on the loop of the Redis client the check used, with the decision (valid
 * during the call only).
 */
typedef void (*pulse_ratelimit_cb)(void *data, const pulse_ratelimit_result_t *result);

/**
 * Parses a policy: comma-separated `scope=rate/burst` items, scope one of tenant, ip, global, each at most once; rate a
 * decimal number from 0.001 to PULSE_RATELIMIT_MAX_BURST (e.g. 0.5), burst an integer from 1 to PULSE_RATELIMIT_MAX_BURST;
 * blanks around items are ignored; an empty string (or NULL) means no limit. Returns 0, or -1 with a one-line reason in `err` (out
 * is then all unlimited).
 */
int pulse_ratelimit_policy_parse(const char *s, pulse_ratelimit_policy_t *out, char *err, size_t errlen) PULSE_WUR;

/**
 * Tells whether a policy limits anything.
 */
bool pulse_ratelimit_policy_is_limited(const pulse_ratelimit_policy_t *p);

/**
 * Returns the name of a scope ("tenant", "ip", "global").
 */
const char *pulse_ratelimit_scope_name(pulse_ratelimit_scope_t scope);

/**
 * Creates a limiter with a copy of one policy per class (NULL: no limits) and a key prefix for Redis ("pulse:rl" when
 * NULL or empty; longer than PULSE_RATELIMIT_MAX_PREFIX or with bytes outside [A-Za-z0-9._:{}-]: NULL). Returns NULL
 * when out of memory.
 */
pulse_ratelimit_t *pulse_ratelimit_create(const pulse_ratelimit_policy_t policies[PULSE_CLASS_COUNT],
                                          const char *key_prefix) PULSE_WUR;

/**
 * Frees a limiter. Call it once no check is pending: after every loop's Redis client was destroyed (destroying a client
 * answers its pending checks) or every pending check was cancelled and answered.
 */
void pulse_ratelimit_destroy(pulse_ratelimit_t *rl);

/**
 * Replaces the policies (e.g. on SIGHUP), from any thread, while checks run: each check sees either the old or the new
 * policy of its class, never a mix. Buckets are kept: a smaller burst caps them at their next check.
 */
void pulse_ratelimit_set_policies(pulse_ratelimit_t *rl, const pulse_ratelimit_policy_t policies[PULSE_CLASS_COUNT]);

/**
 * Copies the current policy of a class into `out`.
 */
void pulse_ratelimit_get_policy(pulse_ratelimit_t *rl, pulse_class_t cls, pulse_ratelimit_policy_t *out);

/**
 * Sets the bound of the local table (buckets; at least 16; the default is 100000). Beyond it, the least recently used
 * buckets are evicted (a bucket that comes back starts full).
 */
void pulse_ratelimit_set_local_max(pulse_ratelimit_t *rl, size_t max);

/**
 * Decides a request of class `cls` from `tenant` (NULL or empty: no tenant bucket) and `ip` (NULL or empty: no IP
 * bucket). Returns:
 *   1: decided now (no limit applies, or the local fallback decided): the decision is in `*result`, `cb` never runs and
 *      `*ref` (when ref is not NULL) is set to NULL;
 *   0: pending on Redis: `*ref` (when ref is not NULL) is set to the check, and `cb` runs exactly once later on the loop
 *      (never from inside this call) with the decision (the local fallback's when Redis fails), `*ref` being set to
 *      NULL just before; until then the check can be cancelled with pulse_ratelimit_cancel.
 * `redis` is the calling loop's client (NULL: local buckets only); with `cb` NULL the check is always decided now.
 */
int pulse_ratelimit_check(pulse_ratelimit_t *rl, pulse_redis_t *redis, pulse_class_t cls, const char *tenant, const char *ip,
                          pulse_ratelimit_result_t *result, pulse_ratelimit_cb cb, void *data,
                          pulse_ratelimit_pending_t **ref) PULSE_WUR;

/**
 * Cancels a pending check (e.g. when its HTTP request is disposed of first): its callback will not run and the `ref`
 * given to the check is set to NULL; the check's memory is freed when Redis answers (or its client is destroyed). A
 * token Redis already took is not given back. Call it on the check's loop, only while the check is pending.
 */
void pulse_ratelimit_cancel(pulse_ratelimit_pending_t *p);

/**
 * Formats the header values of a decision about `who` into `out` (all empty when !r->limited; retry_after empty when
 * allowed). A partition key that cannot be written (over 64 bytes) leaves its pk out.
 */
void pulse_ratelimit_headers(const pulse_ratelimit_result_t *r, const pulse_ratelimit_subject_t *who,
                             pulse_ratelimit_headers_t *out);

/**
 * Adds the headers of a decision about `who` to `headers` (strings copied into `pool`) when a bucket applied:
 * RateLimit-Policy and RateLimit, the draft-06 RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset too when
 * `legacy`, and Retry-After when the request was denied (answer it with 429). E.g.
 * pulse_ratelimit_add_headers(&req->pool, &req->res.headers, &result, &who, conf->ratelimit_legacy_headers).
 */
void pulse_ratelimit_add_headers(h2o_mem_pool_t *pool, h2o_headers_t *headers, const pulse_ratelimit_result_t *r,
                                 const pulse_ratelimit_subject_t *who, int legacy);

/**
 * Writes the key of a bucket into `buf` (size `len`, at least PULSE_RATELIMIT_KEY_SIZE): the key in Redis, and the id of
 * the local bucket. Returns its length. Exposed for tests and tools.
 */
#define PULSE_RATELIMIT_KEY_SIZE 192
size_t pulse_ratelimit_key(const pulse_ratelimit_t *rl, pulse_class_t cls, pulse_ratelimit_scope_t scope, const char *id, char *buf,
                           size_t len);

/**
 * Copies the limiter's counters into `out` (for /metrics). Safe from any thread.
 */
void pulse_ratelimit_stats(pulse_ratelimit_t *rl, pulse_ratelimit_stats_t *out);

#endif
