/*
 * ratelimit.c: token buckets in Redis (one Lua script per request) with an
 * in-process fallback (see ratelimit.h).
 *
 * The arithmetic, the same in the script and in rl_decide(): a bucket holds
 * `tokens` (a real number) as of `ts` (ms); at `now` it holds
 * min(burst, tokens + (now - ts) * rate / 1000), a missing bucket is full.
 * When every bucket of the request holds at least one token, one is taken from
 * each and each is written back with ts = now; otherwise nothing is written
 * (refilling is a function of time, so a denial has nothing to store).
 *
 * Policies: read on every check from any loop, replaced rarely from the main
 * thread.  They are stored as atomics under a seqlock: the writer (serialized
 * by a mutex) makes the sequence odd, stores, makes it even; a reader retries
 * while it saw an odd or changed sequence.  Readers write nothing shared.
 *
 * Leases: a round trip to Redis per request would cost more than the rest of
 * a cached hit.  When a request's buckets are refilled fast enough (rate x
 * RL_LEASE_MS / 1000 >= 2 tokens in each), the script may hand the loop
 * several tokens at once (all buckets give the same number, all-or-nothing),
 * and the loop spends them on the next requests with the same buckets for at
 * most RL_LEASE_MS, without Redis.  The lease follows the loop's demand (see
 * rl_lease_size), so an idle loop does not hoard what others need.
 * Tokens are taken from Redis before they are spent, so the proxies together
 * never admit more than the buckets allow; a lease left unspent is lost (the
 * others see a little less for a moment).  Slow buckets (like the tests'
 * 2/s) get leases of one token: one round trip per request, exact.
 *
 * Pending checks: a pulse_ratelimit_pending_t is the privdata of the Redis
 * command; the Redis client answers it exactly once (reply, error, timeout,
 * "closed"), and that answer frees it.  Cancelling only clears its callback.
 */
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "digest.h"
#include "ratelimit.h"

#define RL_DEFAULT_PREFIX "pulse:rl"
#define RL_LOCAL_DEFAULT_MAX 100000
#define RL_LOCAL_MIN_MAX 16
#define RL_EXPIRE_MARGIN_MS 1000
#define RL_MIN_RATE 0.001
#define RL_LEASE_MS 50     /* how long a loop may spend a lease */
#define RL_LEASE_SLOTS 256 /* leases kept per thread (direct-mapped) */

/* KEYS: the buckets; ARGV: rate, burst, scope per bucket, then the lease wanted. Returns {allowed, scope, burst, remaining,
 * retry_ms, reset_ms} of the bucket rl_decide() picks, the tokens taken from every bucket (0 when denied), then the
 * remaining tokens and the ms until the next token of each bucket, in KEYS order (rl_next_ms). */
static const char rl_script[] =
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local n = #KEYS\n"
    "local want = tonumber(ARGV[3 * n + 1]) or 1\n"
    "local tokens, rate, burst, scope = {}, {}, {}, {}\n"
    "local allowed = 1\n"
    "for i = 1, n do\n"
    "  rate[i] = tonumber(ARGV[3 * i - 2])\n"
    "  burst[i] = tonumber(ARGV[3 * i - 1])\n"
    "  scope[i] = tonumber(ARGV[3 * i])\n"
    "  local s = redis.call('HMGET', KEYS[i], 'tokens', 'ts')\n"
    "  local tk, ts = tonumber(s[1]), tonumber(s[2])\n"
    "  if tk == nil or ts == nil then\n"
    "    tk = burst[i]\n"
    "  else\n"
    "    local el = now - ts\n"
    "    if el < 0 then el = 0 end\n"
    "    tk = math.min(burst[i], tk + el * rate[i] / 1000)\n"
    "  end\n"
    "  tokens[i] = tk\n"
    "  if tk < 1 then allowed = 0 end\n"
    "  if math.floor(tk) < want then want = math.floor(tk) end\n"
    "end\n"
    "if want < 1 then want = 1 end\n"
    "local pick, pretry, premain, preset = 0, 0, 0, 0\n"
    "local each = {}\n"
    "for i = 1, n do\n"
    "  local tk = tokens[i]\n"
    "  if allowed == 1 then\n"
    "    tk = tk - want\n"
    "    redis.call('HSET', KEYS[i], 'tokens', tk, 'ts', now)\n"
    "    redis.call('PEXPIRE', KEYS[i], math.ceil((burst[i] - tk) * 1000 / rate[i]) + " H2O_TO_STR(
        RL_EXPIRE_MARGIN_MS) ")\n"
                             "  end\n"
                             "  local remain = math.floor(tk)\n"
                             "  each[2 * i - 1] = remain\n"
                             "  if remain + 1 > burst[i] then each[2 * i] = math.ceil(1000 / rate[i])\n"
                             "  else each[2 * i] = math.ceil((remain + 1 - tk) * 1000 / rate[i]) end\n"
                             "  local retry = 0\n"
                             "  if tk < 1 then retry = math.ceil((1 - tk) * 1000 / rate[i]) end\n"
                             "  local reset = math.ceil((burst[i] - tk) * 1000 / rate[i])\n"
                             "  local better\n"
                             "  if pick == 0 then better = true\n"
                             "  elseif allowed == 0 then better = retry > pretry\n"
                             "  else better = remain < premain or (remain == premain and reset > preset) end\n"
                             "  if better then pick, pretry, premain, preset = i, retry, remain, reset end\n"
                             "end\n"
                             "local out = {allowed, scope[pick], burst[pick], premain, pretry, preset, allowed * want}\n"
                             "for j = 1, 2 * n do out[7 + j] = each[j] end\n"
                             "return out\n";

typedef struct rl_bucket_req_t {
    pulse_ratelimit_scope_t scope;
    double rate;
    uint32_t burst;
    size_t keylen;
    char key[PULSE_RATELIMIT_KEY_SIZE];
} rl_bucket_req_t;

struct pulse_ratelimit_pending_t {
    pulse_ratelimit_t *rl;
    pulse_redis_t *redis;
    pulse_ratelimit_cb cb; /* NULL once cancelled */
    void *data;
    pulse_ratelimit_pending_t **ref;
    pulse_class_t cls;
    int evaled;    /* sent again as EVAL after NOSCRIPT */
    unsigned want; /* the lease asked for */
    int n;
    rl_bucket_req_t b[PULSE_RATELIMIT_SCOPE_COUNT];
};

typedef struct rl_local_bucket_t {
    struct rl_local_bucket_t *next; /* in its hash chain */
    h2o_linklist_t lru;             /* in rl->lru, most recently used last */
    uint64_t hash;
    double tokens;
    uint64_t ts;
    size_t keylen;
    char key[];
} rl_local_bucket_t;

struct pulse_ratelimit_t {
    /* policies, under the seqlock */
    _Atomic unsigned seq;
    _Atomic uint64_t rate_bits[PULSE_CLASS_COUNT][PULSE_RATELIMIT_SCOPE_COUNT];
    _Atomic uint32_t burst[PULSE_CLASS_COUNT][PULSE_RATELIMIT_SCOPE_COUNT];
    pthread_mutex_t policy_mutex; /* serializes writers */

    char prefix[PULSE_RATELIMIT_MAX_PREFIX + 1];
    char sha[41]; /* of rl_script */

    /* the local buckets */
    pthread_mutex_t local_mutex;
    rl_local_bucket_t **heads;
    size_t nheads, count, max;
    h2o_linklist_t lru;

    struct {
        _Atomic uint64_t allowed[PULSE_CLASS_COUNT];
        _Atomic uint64_t limited[PULSE_CLASS_COUNT][PULSE_RATELIMIT_SCOPE_COUNT];
        _Atomic uint64_t unlimited, redis_checks, fallback_checks, errors, cancelled, local_evictions, lease_checks;
    } stats;
};

#define RL_COUNT(field) atomic_fetch_add_explicit(&(field), 1, memory_order_relaxed)

static const char *const rl_scope_names[PULSE_RATELIMIT_SCOPE_COUNT] = {"tenant", "ip", "global"};
static const char *const rl_scope_tags[PULSE_RATELIMIT_SCOPE_COUNT] = {"t", "ip", "g"};

const char *pulse_ratelimit_scope_name(pulse_ratelimit_scope_t scope)
{
    return (unsigned)scope < PULSE_RATELIMIT_SCOPE_COUNT ? rl_scope_names[scope] : "?";
}

/* --- policies ----------------------------------------------------------------------------------------------------- */

static const char *rl_skip_blanks(const char *p, const char *end)
{
    while (p != end && (*p == ' ' || *p == '\t'))
        ++p;
    return p;
}

/* [0-9]+(.[0-9]+)? exactly spanning [p, end) */
static int rl_parse_decimal(const char *p, const char *end, int integer_only, double *out)
{
    const char *q = p;
    size_t digits = 0;
    while (q != end && *q >= '0' && *q <= '9')
        ++q, ++digits;
    if (digits == 0 || digits > 12)
        return -1;
    if (q != end && *q == '.' && !integer_only) {
        const char *f = ++q;
        while (q != end && *q >= '0' && *q <= '9')
            ++q;
        if (q == f || q - f > 9)
            return -1;
    }
    if (q != end)
        return -1;
    char buf[32];
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = '\0';
    *out = strtod(buf, NULL);
    return 0;
}

int pulse_ratelimit_policy_parse(const char *s, pulse_ratelimit_policy_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return 0;
    const char *p = s, *end = s + strlen(s);
    if (rl_skip_blanks(p, end) == end)
        return 0;
    while (1) {
        const char *comma = memchr(p, ',', (size_t)(end - p)), *iend = comma != NULL ? comma : end;
        const char *a = rl_skip_blanks(p, iend), *b = iend;
        while (b != a && (b[-1] == ' ' || b[-1] == '\t'))
            --b;
        int ilen = (int)(b - a < 60 ? b - a : 60);
        const char *eq = memchr(a, '=', (size_t)(b - a)), *slash = eq != NULL ? memchr(eq, '/', (size_t)(b - eq)) : NULL;
        if (a == b) {
            snprintf(err, errlen, "rate limit policy: empty item in \"%.80s\"", s);
            goto Fail;
        }
        if (eq == NULL || slash == NULL) {
            snprintf(err, errlen, "rate limit policy: expected scope=rate/burst, got \"%.*s\"", ilen, a);
            goto Fail;
        }
        const char *ne = eq;
        while (ne != a && (ne[-1] == ' ' || ne[-1] == '\t'))
            --ne;
        int scope = -1;
        for (int i = 0; i != PULSE_RATELIMIT_SCOPE_COUNT; ++i)
            if (strlen(rl_scope_names[i]) == (size_t)(ne - a) && memcmp(rl_scope_names[i], a, (size_t)(ne - a)) == 0)
                scope = i;
        if (scope < 0) {
            snprintf(err, errlen, "rate limit policy: unknown scope \"%.*s\" (tenant, ip or global)",
                     (int)(ne - a < 40 ? ne - a : 40), a);
            goto Fail;
        }
        if (out->scope[scope].rate != 0) {
            snprintf(err, errlen, "rate limit policy: scope %s given twice", rl_scope_names[scope]);
            goto Fail;
        }
        const char *rs = rl_skip_blanks(eq + 1, slash), *re = slash, *bs = rl_skip_blanks(slash + 1, b);
        while (re != rs && (re[-1] == ' ' || re[-1] == '\t'))
            --re;
        double rate, burst;
        if (rs != re && *rs == '-') {
            snprintf(err, errlen, "rate limit policy: %s: rate must be > 0", rl_scope_names[scope]);
            goto Fail;
        }
        if (rl_parse_decimal(rs, re, 0, &rate) != 0) {
            snprintf(err, errlen, "rate limit policy: %s: rate \"%.*s\" is not a decimal number", rl_scope_names[scope],
                     (int)(re - rs < 30 ? re - rs : 30), rs);
            goto Fail;
        }
        if (rate <= 0) {
            snprintf(err, errlen, "rate limit policy: %s: rate must be > 0", rl_scope_names[scope]);
            goto Fail;
        }
        if (rate < RL_MIN_RATE || rate > PULSE_RATELIMIT_MAX_BURST) {
            snprintf(err, errlen, "rate limit policy: %s: rate must be between %g and %u per second", rl_scope_names[scope],
                     RL_MIN_RATE, PULSE_RATELIMIT_MAX_BURST);
            goto Fail;
        }
        if (bs != b && *bs == '-') {
            snprintf(err, errlen, "rate limit policy: %s: burst must be >= 1", rl_scope_names[scope]);
            goto Fail;
        }
        if (rl_parse_decimal(bs, b, 1, &burst) != 0) {
            snprintf(err, errlen, "rate limit policy: %s: burst \"%.*s\" is not an integer", rl_scope_names[scope],
                     (int)(b - bs < 30 ? b - bs : 30), bs);
            goto Fail;
        }
        if (burst < 1 || burst > PULSE_RATELIMIT_MAX_BURST) {
            snprintf(err, errlen, "rate limit policy: %s: burst must be between 1 and %u", rl_scope_names[scope],
                     PULSE_RATELIMIT_MAX_BURST);
            goto Fail;
        }
        out->scope[scope].rate = rate;
        out->scope[scope].burst = (uint32_t)burst;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
Fail:
    memset(out, 0, sizeof(*out));
    return -1;
}

bool pulse_ratelimit_policy_is_limited(const pulse_ratelimit_policy_t *p)
{
    for (int i = 0; i != PULSE_RATELIMIT_SCOPE_COUNT; ++i)
        if (p->scope[i].rate > 0 && p->scope[i].burst >= 1)
            return true;
    return false;
}

static uint64_t rl_double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double rl_bits_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

void pulse_ratelimit_set_policies(pulse_ratelimit_t *rl, const pulse_ratelimit_policy_t policies[PULSE_CLASS_COUNT])
{
    pthread_mutex_lock(&rl->policy_mutex);
    unsigned seq = atomic_load_explicit(&rl->seq, memory_order_relaxed);
    atomic_store_explicit(&rl->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int c = 0; c != PULSE_CLASS_COUNT; ++c) {
        for (int s = 0; s != PULSE_RATELIMIT_SCOPE_COUNT; ++s) {
            pulse_ratelimit_limit_t l = policies != NULL ? policies[c].scope[s] : (pulse_ratelimit_limit_t){0, 0};
            if (!(l.rate > 0) || l.burst < 1) /* not limited (also NaN) */
                l = (pulse_ratelimit_limit_t){0, 0};
            atomic_store_explicit(&rl->rate_bits[c][s], rl_double_bits(l.rate), memory_order_relaxed);
            atomic_store_explicit(&rl->burst[c][s], l.burst, memory_order_relaxed);
        }
    }
    atomic_store_explicit(&rl->seq, seq + 2, memory_order_release);
    pthread_mutex_unlock(&rl->policy_mutex);
}

void pulse_ratelimit_get_policy(pulse_ratelimit_t *rl, pulse_class_t cls, pulse_ratelimit_policy_t *out)
{
    unsigned s1, s2;
    if ((unsigned)cls >= PULSE_CLASS_COUNT) {
        memset(out, 0, sizeof(*out));
        return;
    }
    do {
        while ((s1 = atomic_load_explicit(&rl->seq, memory_order_acquire)) & 1)
            ;
        for (int s = 0; s != PULSE_RATELIMIT_SCOPE_COUNT; ++s) {
            out->scope[s].rate = rl_bits_double(atomic_load_explicit(&rl->rate_bits[cls][s], memory_order_relaxed));
            out->scope[s].burst = atomic_load_explicit(&rl->burst[cls][s], memory_order_relaxed);
        }
        atomic_thread_fence(memory_order_acquire);
        s2 = atomic_load_explicit(&rl->seq, memory_order_relaxed);
    } while (s1 != s2);
}

/* --- keys --------------------------------------------------------------------------------------------------------- */

static int rl_id_is_safe(const char *id, size_t len)
{
    if (len == 0 || len > PULSE_RATELIMIT_MAX_ID)
        return 0;
    for (size_t i = 0; i != len; ++i) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
              c == ':'))
            return 0;
    }
    return 1;
}

size_t pulse_ratelimit_key(const pulse_ratelimit_t *rl, pulse_class_t cls, pulse_ratelimit_scope_t scope, const char *id, char *buf,
                           size_t len)
{
    int n;
    if ((unsigned)scope >= PULSE_RATELIMIT_SCOPE_COUNT || (unsigned)cls >= PULSE_CLASS_COUNT || len == 0) {
        if (len != 0)
            buf[0] = '\0';
        return 0;
    }
    if (scope == PULSE_RATELIMIT_SCOPE_GLOBAL || id == NULL) {
        n = snprintf(buf, len, "%s:%s:%s", rl->prefix, pulse_config_class_name(cls), rl_scope_tags[scope]);
    } else if (rl_id_is_safe(id, strlen(id))) {
        n = snprintf(buf, len, "%s:%s:%s:%s", rl->prefix, pulse_config_class_name(cls), rl_scope_tags[scope], id);
    } else {
        /* '~' is outside the safe set: a hashed id never equals a verbatim one */
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        char hex[33];
        if (EVP_Digest(id, strlen(id), md, &mdlen, pulse_digest_sha256(), NULL) != 1 || mdlen < 16)
            memset(md, 0, 16);
        for (int i = 0; i != 16; ++i)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        n = snprintf(buf, len, "%s:%s:%s:~%s", rl->prefix, pulse_config_class_name(cls), rl_scope_tags[scope], hex);
    }
    if (n < 0)
        n = 0;
    return (size_t)n < len ? (size_t)n : len - 1;
}

/* --- decisions ---------------------------------------------------------------------------------------------------- */

/* ms until a bucket holding `tk` tokens holds one more whole token; a full one: 1 / rate (after the next request) */
static uint64_t rl_next_ms(double tk, uint32_t burst, double rate)
{
    double remain = floor(tk);
    return remain + 1 > burst ? (uint64_t)ceil(1000 / rate) : (uint64_t)ceil((remain + 1 - tk) * 1000 / rate);
}

/* decides on the refilled `tokens` of n >= 1 buckets (taking one from each when allowed); the script does the same */
static void rl_decide(int n, const rl_bucket_req_t *b, double *tokens, pulse_ratelimit_result_t *res)
{
    bool allowed = true;
    for (int i = 0; i != n; ++i)
        if (tokens[i] < 1)
            allowed = false;
    int pick = -1;
    uint64_t pretry = 0, preset = 0;
    double premain = 0;
    for (int i = 0; i != n; ++i) {
        if (allowed)
            tokens[i] -= 1;
        double tk = tokens[i], remain = floor(tk);
        uint64_t retry = tk < 1 ? (uint64_t)ceil((1 - tk) * 1000 / b[i].rate) : 0;
        uint64_t reset = (uint64_t)ceil((b[i].burst - tk) * 1000 / b[i].rate);
        bool better = pick < 0 || (!allowed ? retry > pretry : (remain < premain || (remain == premain && reset > preset)));
        if (better)
            pick = i, pretry = retry, premain = remain, preset = reset;
    }
    *res = (pulse_ratelimit_result_t){.allowed = allowed,
                                      .limited = true,
                                      .scope = b[pick].scope,
                                      .limit = b[pick].burst,
                                      .rate = b[pick].rate,
                                      .remaining = premain > 0 ? (uint32_t)premain : 0,
                                      .retry_after_ms = pretry,
                                      .reset_ms = preset,
                                      .nbuckets = n};
    for (int i = 0; i != n; ++i)
        res->bucket[i] = (pulse_ratelimit_bucket_t){.scope = b[i].scope,
                                                    .burst = b[i].burst,
                                                    .rate = b[i].rate,
                                                    .remaining = tokens[i] > 0 ? (uint32_t)floor(tokens[i]) : 0,
                                                    .next_ms = rl_next_ms(tokens[i], b[i].burst, b[i].rate)};
}

static void rl_count(pulse_ratelimit_t *rl, pulse_class_t cls, const pulse_ratelimit_result_t *res)
{
    if (res->allowed)
        RL_COUNT(rl->stats.allowed[cls]);
    else
        RL_COUNT(rl->stats.limited[cls][res->scope]);
}

/* --- local buckets ------------------------------------------------------------------------------------------------ */

static uint64_t rl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rl_hash(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a */
    for (size_t i = 0; i != len; ++i)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static rl_local_bucket_t **rl_local_slot(pulse_ratelimit_t *rl, uint64_t hash, const char *key, size_t keylen)
{
    rl_local_bucket_t **slot = &rl->heads[hash & (rl->nheads - 1)];
    while (*slot != NULL && !((*slot)->hash == hash && (*slot)->keylen == keylen && memcmp((*slot)->key, key, keylen) == 0))
        slot = &(*slot)->next;
    return slot;
}

static void rl_local_remove(pulse_ratelimit_t *rl, rl_local_bucket_t *lb)
{
    rl_local_bucket_t **slot = rl_local_slot(rl, lb->hash, lb->key, lb->keylen);
    *slot = lb->next;
    h2o_linklist_unlink(&lb->lru);
    --rl->count;
    free(lb);
}

static void rl_local_grow(pulse_ratelimit_t *rl)
{
    size_t n = rl->nheads * 2;
    rl_local_bucket_t **heads = calloc(n, sizeof(*heads));
    if (heads == NULL)
        return; /* longer chains */
    for (size_t i = 0; i != rl->nheads; ++i) {
        for (rl_local_bucket_t *lb = rl->heads[i], *next; lb != NULL; lb = next) {
            next = lb->next;
            lb->next = heads[lb->hash & (n - 1)];
            heads[lb->hash & (n - 1)] = lb;
        }
    }
    free(rl->heads);
    rl->heads = heads;
    rl->nheads = n;
}

/* evicts the least recently used buckets beyond the bound (called with the mutex held) */
static void rl_local_trim(pulse_ratelimit_t *rl, size_t keep)
{
    while (rl->count > keep && !h2o_linklist_is_empty(&rl->lru)) {
        rl_local_remove(rl, H2O_STRUCT_FROM_MEMBER(rl_local_bucket_t, lru, rl->lru.next));
        RL_COUNT(rl->stats.local_evictions);
    }
}

static void rl_decide_local(pulse_ratelimit_t *rl, int n, const rl_bucket_req_t *b, pulse_ratelimit_result_t *res)
{
    rl_local_bucket_t *found[PULSE_RATELIMIT_SCOPE_COUNT];
    double tokens[PULSE_RATELIMIT_SCOPE_COUNT];
    uint64_t hash[PULSE_RATELIMIT_SCOPE_COUNT];

    pthread_mutex_lock(&rl->local_mutex);
    uint64_t now = rl_now_ms();
    for (int i = 0; i != n; ++i) {
        hash[i] = rl_hash(b[i].key, b[i].keylen);
        found[i] = *rl_local_slot(rl, hash[i], b[i].key, b[i].keylen);
        if (found[i] != NULL) {
            rl_local_bucket_t *lb = found[i];
            double tk = lb->tokens + (double)(now > lb->ts ? now - lb->ts : 0) * b[i].rate / 1000;
            tokens[i] = tk < b[i].burst ? tk : b[i].burst;
            h2o_linklist_unlink(&lb->lru); /* most recently used */
            h2o_linklist_insert(&rl->lru, &lb->lru);
        } else {
            tokens[i] = b[i].burst;
        }
    }
    rl_decide(n, b, tokens, res);
    if (res->allowed) {
        for (int i = 0; i != n; ++i) {
            rl_local_bucket_t *lb = found[i];
            if (lb == NULL) {
                /* the buckets of this request are the most recently used: trimming to max - 1 >= 15 keeps them */
                rl_local_trim(rl, rl->max - 1);
                if ((lb = malloc(offsetof(rl_local_bucket_t, key) + b[i].keylen)) == NULL)
                    continue; /* not remembered: the next request finds it full */
                lb->lru = (h2o_linklist_t){NULL, NULL};
                lb->hash = hash[i];
                lb->keylen = b[i].keylen;
                memcpy(lb->key, b[i].key, b[i].keylen);
                if (rl->count >= rl->nheads && rl->nheads < ((size_t)1 << 24))
                    rl_local_grow(rl);
                rl_local_bucket_t **slot = &rl->heads[hash[i] & (rl->nheads - 1)];
                lb->next = *slot;
                *slot = lb;
                h2o_linklist_insert(&rl->lru, &lb->lru);
                ++rl->count;
            }
            lb->tokens = tokens[i];
            lb->ts = now;
        }
    }
    pthread_mutex_unlock(&rl->local_mutex);
    res->source = PULSE_RATELIMIT_SOURCE_LOCAL;
}

void pulse_ratelimit_set_local_max(pulse_ratelimit_t *rl, size_t max)
{
    pthread_mutex_lock(&rl->local_mutex);
    rl->max = max < RL_LOCAL_MIN_MAX ? RL_LOCAL_MIN_MAX : max;
    rl_local_trim(rl, rl->max);
    pthread_mutex_unlock(&rl->local_mutex);
}

/* --- leases ------------------------------------------------------------------------------------------------------- */

typedef struct rl_lease_t {
    uint64_t hash;       /* of the class and the bucket keys; 0: empty */
    uint64_t expires_ms; /* rl_now_ms() */
    unsigned tokens;     /* left to spend */
    unsigned leased;     /* tokens the last lease brought; 0 once its outcome was weighed */
    unsigned want;       /* the next lease to ask for: follows the demand */
    pulse_ratelimit_result_t res;
    size_t keylen;
    char key[PULSE_RATELIMIT_SCOPE_COUNT * PULSE_RATELIMIT_KEY_SIZE + 8];
} rl_lease_t;

static __thread rl_lease_t rl_leases[RL_LEASE_SLOTS];

/* the identity of a request's set of buckets: its class and their keys */
static size_t rl_lease_key(pulse_class_t cls, int n, const rl_bucket_req_t *b, char *out)
{
    size_t len = (size_t)snprintf(out, 8, "%d", (int)cls);
    for (int i = 0; i != n; ++i) {
        out[len++] = '\n';
        memcpy(out + len, b[i].key, b[i].keylen);
        len += b[i].keylen;
    }
    return len;
}

/* this thread's lease slot of a set of buckets, when it holds that set */
static rl_lease_t *rl_lease_find(pulse_class_t cls, int n, const rl_bucket_req_t *b, char *key, size_t *len, uint64_t *hash)
{
    *len = rl_lease_key(cls, n, b, key);
    *hash = rl_hash(key, *len) | 1;
    rl_lease_t *l = &rl_leases[*hash % RL_LEASE_SLOTS];
    return l->hash == *hash && l->keylen == *len && memcmp(l->key, key, *len) == 0 ? l : NULL;
}

/*
 * The lease to ask for.  It follows the demand: a loop starts with one token
 * per round trip, doubles its lease each time it spends one before it
 * expires, and falls back to what it spent when one expires unspent; never
 * more than what every bucket refills in RL_LEASE_MS nor an eighth of a
 * burst, and 1 when that is under 2 (slow buckets: exact, one round trip per
 * request).
 */
static unsigned rl_lease_size(pulse_class_t cls, int n, const rl_bucket_req_t *b)
{
    double cap = 1e9;
    for (int i = 0; i != n; ++i) {
        double w = floor(b[i].rate * RL_LEASE_MS / 1000.0), c = floor(b[i].burst / 8.0);
        if (c < w)
            w = c;
        if (w < cap)
            cap = w;
    }
    if (cap < 2)
        return 1;
    char key[sizeof(rl_leases[0].key)];
    size_t len;
    uint64_t h;
    const rl_lease_t *l = rl_lease_find(cls, n, b, key, &len, &h);
    unsigned want = l != NULL && l->want > 1 ? l->want : 1;
    return want < cap ? want : (unsigned)cap;
}

/* a Redis decision allowed the request and took `taken` >= 1 tokens: the rest is this thread's lease */
static void rl_lease_store(const pulse_ratelimit_pending_t *p, unsigned taken, const pulse_ratelimit_result_t *res)
{
    char key[sizeof(rl_leases[0].key)];
    size_t len;
    uint64_t h;
    rl_lease_t *l = rl_lease_find(p->cls, p->n, p->b, key, &len, &h);
    if (l == NULL) {
        l = &rl_leases[h % RL_LEASE_SLOTS];
        l->hash = h;
        l->want = 1;
        l->keylen = len;
        memcpy(l->key, key, len);
    }
    l->expires_ms = rl_now_ms() + RL_LEASE_MS;
    l->tokens = taken - 1;
    l->leased = taken;
    l->res = *res;
}

/* spends a token of this thread's lease for these buckets, when it has one; returns whether it did */
static int rl_lease_take(pulse_class_t cls, int n, const rl_bucket_req_t *b, pulse_ratelimit_result_t *result)
{
    char key[sizeof(rl_leases[0].key)];
    size_t len;
    uint64_t h;
    rl_lease_t *l = rl_lease_find(cls, n, b, key, &len, &h);
    if (l == NULL)
        return 0;
    if (rl_now_ms() >= l->expires_ms) { /* expired: the next lease is what this one served */
        if (l->leased != 0)
            l->want = l->leased - l->tokens > 1 ? l->leased - l->tokens : 1;
        l->leased = l->tokens = 0;
        return 0;
    }
    if (l->tokens == 0) { /* spent in time: ask for twice as much */
        if (l->leased != 0 && l->want < (1u << 20))
            l->want = l->leased * 2;
        l->leased = 0;
        return 0;
    }
    l->tokens--;
    *result = l->res;
    result->remaining = l->res.remaining + l->tokens;
    for (int i = 0; i != result->nbuckets; ++i)
        result->bucket[i].remaining += l->tokens;
    return 1;
}

/* --- Redis -------------------------------------------------------------------------------------------------------- */

static void rl_on_reply(void *data, redisReply *reply, const char *err);

static int rl_send(pulse_ratelimit_pending_t *p)
{
    const char *argv[4 + 4 * PULSE_RATELIMIT_SCOPE_COUNT];
    size_t argvlen[4 + 4 * PULSE_RATELIMIT_SCOPE_COUNT];
    char nkeys[4], num[PULSE_RATELIMIT_SCOPE_COUNT][3][32];
    int argc = 0;

#define ARG(s, l) (argv[argc] = (s), argvlen[argc] = (l), ++argc)
    if (p->evaled) {
        ARG("EVAL", 4);
        ARG(rl_script, sizeof(rl_script) - 1);
    } else {
        ARG("EVALSHA", 7);
        ARG(p->rl->sha, 40);
    }
    snprintf(nkeys, sizeof(nkeys), "%d", p->n);
    ARG(nkeys, strlen(nkeys));
    for (int i = 0; i != p->n; ++i)
        ARG(p->b[i].key, p->b[i].keylen);
    for (int i = 0; i != p->n; ++i) {
        snprintf(num[i][0], sizeof(num[i][0]), "%.17g", p->b[i].rate);
        snprintf(num[i][1], sizeof(num[i][1]), "%u", p->b[i].burst);
        snprintf(num[i][2], sizeof(num[i][2]), "%d", (int)p->b[i].scope);
        for (int j = 0; j != 3; ++j)
            ARG(num[i][j], strlen(num[i][j]));
    }
    char want[16];
    snprintf(want, sizeof(want), "%u", p->want);
    ARG(want, strlen(want));
#undef ARG
    return pulse_redis_command_argv(p->redis, rl_on_reply, p, argc, argv, argvlen);
}

/* reads the script's answer; -1 when it is not one */
static int rl_parse_reply(const pulse_ratelimit_pending_t *p, const redisReply *reply, pulse_ratelimit_result_t *res,
                          long long *taken)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 7 + 2 * (size_t)p->n)
        return -1;
    long long v[7 + 2 * PULSE_RATELIMIT_SCOPE_COUNT];
    for (int i = 0; i != 7 + 2 * p->n; ++i) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER || reply->element[i]->integer < 0)
            return -1;
        v[i] = reply->element[i]->integer;
    }
    const rl_bucket_req_t *b = NULL;
    for (int i = 0; i != p->n; ++i)
        if ((long long)p->b[i].scope == v[1])
            b = &p->b[i];
    if (v[0] > 1 || b == NULL || v[6] > (long long)p->want)
        return -1;
    *taken = v[6];
    *res = (pulse_ratelimit_result_t){.allowed = v[0] == 1,
                                      .limited = true,
                                      .source = PULSE_RATELIMIT_SOURCE_REDIS,
                                      .scope = b->scope,
                                      .limit = v[2] <= PULSE_RATELIMIT_MAX_BURST ? (uint32_t)v[2] : b->burst,
                                      .rate = b->rate,
                                      .remaining = v[3] <= PULSE_RATELIMIT_MAX_BURST ? (uint32_t)v[3] : 0,
                                      .retry_after_ms = (uint64_t)v[4],
                                      .reset_ms = (uint64_t)v[5],
                                      .nbuckets = p->n};
    for (int i = 0; i != p->n; ++i)
        res->bucket[i] =
            (pulse_ratelimit_bucket_t){.scope = p->b[i].scope,
                                       .burst = p->b[i].burst,
                                       .rate = p->b[i].rate,
                                       .remaining = v[7 + 2 * i] <= PULSE_RATELIMIT_MAX_BURST ? (uint32_t)v[7 + 2 * i] : 0,
                                       .next_ms = (uint64_t)v[8 + 2 * i]};
    return 0;
}

static int rl_is_noscript(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->str != NULL && reply->len >= 8 &&
           memcmp(reply->str, "NOSCRIPT", 8) == 0;
}

static void rl_on_reply(void *data, redisReply *reply, const char *err)
{
    (void)err;
    pulse_ratelimit_pending_t *p = data;
    pulse_ratelimit_t *rl = p->rl;
    pulse_ratelimit_result_t res;
    long long taken = 0;

    if (p->cb == NULL) { /* cancelled */
        if (rl_parse_reply(p, reply, &res, &taken) == 0 && res.allowed && taken > 1)
            rl_lease_store(p, (unsigned)taken, &res); /* the tokens are taken: spend them on the next requests */
        free(p);
        return;
    }
    if (rl_is_noscript(reply) && !p->evaled) {
        /* first use on this server (or after a restart or SCRIPT FLUSH): EVAL caches the script */
        p->evaled = 1;
        if (rl_send(p) == 0)
            return;
        rl_decide_local(rl, p->n, p->b, &res);
        RL_COUNT(rl->stats.fallback_checks);
    } else if (rl_parse_reply(p, reply, &res, &taken) == 0) {
        RL_COUNT(rl->stats.redis_checks);
        if (res.allowed && taken >= 1)
            rl_lease_store(p, (unsigned)taken, &res);
    } else {
        RL_COUNT(rl->stats.errors);
        rl_decide_local(rl, p->n, p->b, &res);
        RL_COUNT(rl->stats.fallback_checks);
    }
    rl_count(rl, p->cls, &res);
    if (p->ref != NULL)
        *p->ref = NULL;
    p->cb(p->data, &res);
    free(p);
}

/* --- checks ------------------------------------------------------------------------------------------------------- */

int pulse_ratelimit_check(pulse_ratelimit_t *rl, pulse_redis_t *redis, pulse_class_t cls, const char *tenant, const char *ip,
                          pulse_ratelimit_result_t *result, pulse_ratelimit_cb cb, void *data, pulse_ratelimit_pending_t **ref)
{
    rl_bucket_req_t b[PULSE_RATELIMIT_SCOPE_COUNT];
    pulse_ratelimit_policy_t pol;
    int n = 0;

    if (ref != NULL)
        *ref = NULL;
    pulse_ratelimit_get_policy(rl, cls, &pol);
    for (int s = 0; s != PULSE_RATELIMIT_SCOPE_COUNT; ++s) {
        const char *id = s == PULSE_RATELIMIT_SCOPE_TENANT ? tenant : s == PULSE_RATELIMIT_SCOPE_IP ? ip : NULL;
        if (pol.scope[s].rate <= 0 || (s != PULSE_RATELIMIT_SCOPE_GLOBAL && (id == NULL || id[0] == '\0')))
            continue;
        b[n].scope = (pulse_ratelimit_scope_t)s;
        b[n].rate = pol.scope[s].rate;
        b[n].burst = pol.scope[s].burst;
        b[n].keylen = pulse_ratelimit_key(rl, cls, (pulse_ratelimit_scope_t)s, id, b[n].key, sizeof(b[n].key));
        ++n;
    }
    if (n == 0) {
        *result = (pulse_ratelimit_result_t){.allowed = true, .source = PULSE_RATELIMIT_SOURCE_NONE};
        RL_COUNT(rl->stats.unlimited);
        if ((unsigned)cls < PULSE_CLASS_COUNT)
            RL_COUNT(rl->stats.allowed[cls]);
        return 1;
    }

    if (redis != NULL && cb != NULL && pulse_redis_is_up(redis)) {
        if (rl_lease_take(cls, n, b, result)) {
            RL_COUNT(rl->stats.lease_checks);
            rl_count(rl, cls, result);
            return 1;
        }
        pulse_ratelimit_pending_t *p = malloc(sizeof(*p));
        if (p != NULL) {
            *p = (pulse_ratelimit_pending_t){
                .rl = rl, .redis = redis, .cb = cb, .data = data, .ref = ref, .cls = cls, .n = n, .want = rl_lease_size(cls, n, b)};
            memcpy(p->b, b, sizeof(b[0]) * (size_t)n);
            if (rl_send(p) == 0) {
                if (ref != NULL)
                    *ref = p;
                return 0;
            }
            free(p);
        }
    }
    rl_decide_local(rl, n, b, result);
    RL_COUNT(rl->stats.fallback_checks);
    rl_count(rl, cls, result);
    return 1;
}

void pulse_ratelimit_cancel(pulse_ratelimit_pending_t *p)
{
    if (p == NULL || p->cb == NULL)
        return;
    p->cb = NULL;
    if (p->ref != NULL)
        *p->ref = NULL;
    p->ref = NULL;
    RL_COUNT(p->rl->stats.cancelled);
}

/* --- lifecycle ---------------------------------------------------------------------------------------------------- */

pulse_ratelimit_t *pulse_ratelimit_create(const pulse_ratelimit_policy_t policies[PULSE_CLASS_COUNT], const char *key_prefix)
{
    if (key_prefix == NULL || key_prefix[0] == '\0')
        key_prefix = RL_DEFAULT_PREFIX;
    size_t plen = strlen(key_prefix);
    if (plen > PULSE_RATELIMIT_MAX_PREFIX)
        return NULL;
    for (size_t i = 0; i != plen; ++i)
        if (!rl_id_is_safe(key_prefix + i, 1) && key_prefix[i] != '{' && key_prefix[i] != '}')
            return NULL;

    pulse_ratelimit_t *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return NULL;
    rl->nheads = 1024;
    if ((rl->heads = calloc(rl->nheads, sizeof(*rl->heads))) == NULL) {
        free(rl);
        return NULL;
    }
    memcpy(rl->prefix, key_prefix, plen + 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (EVP_Digest(rl_script, sizeof(rl_script) - 1, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
        free(rl->heads);
        free(rl);
        return NULL;
    }
    for (int i = 0; i != 20; ++i)
        snprintf(rl->sha + 2 * i, 3, "%02x", md[i]);
    pthread_mutex_init(&rl->policy_mutex, NULL);
    pthread_mutex_init(&rl->local_mutex, NULL);
    h2o_linklist_init_anchor(&rl->lru);
    rl->max = RL_LOCAL_DEFAULT_MAX;
    pulse_ratelimit_set_policies(rl, policies);
    return rl;
}

void pulse_ratelimit_destroy(pulse_ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    rl_local_trim(rl, 0);
    free(rl->heads);
    pthread_mutex_destroy(&rl->policy_mutex);
    pthread_mutex_destroy(&rl->local_mutex);
    free(rl);
}

void pulse_ratelimit_stats(pulse_ratelimit_t *rl, pulse_ratelimit_stats_t *out)
{
#define LOAD(f) atomic_load_explicit(&(f), memory_order_relaxed)
    memset(out, 0, sizeof(*out));
    for (int c = 0; c != PULSE_CLASS_COUNT; ++c) {
        out->allowed[c] = LOAD(rl->stats.allowed[c]);
        for (int s = 0; s != PULSE_RATELIMIT_SCOPE_COUNT; ++s)
            out->limited[c][s] = LOAD(rl->stats.limited[c][s]);
    }
    out->unlimited = LOAD(rl->stats.unlimited);
    out->redis_checks = LOAD(rl->stats.redis_checks);
    out->lease_checks = LOAD(rl->stats.lease_checks);
    out->fallback_checks = LOAD(rl->stats.fallback_checks);
    out->errors = LOAD(rl->stats.errors);
    out->cancelled = LOAD(rl->stats.cancelled);
    out->local_evictions = LOAD(rl->stats.local_evictions);
#undef LOAD
    pthread_mutex_lock(&rl->local_mutex);
    out->local_buckets = rl->count;
    pthread_mutex_unlock(&rl->local_mutex);
}
