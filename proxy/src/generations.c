/*
 * generations.c: the process-wide map of cache tag → generation.
 *
 * Locking: one pthread read-write lock guards the whole map; lookups take it
 * shared, updates exclusive.  The map is a chained hash table (FNV-1a) that
 * doubles when it holds more than two tags per bucket; it owns copies of the
 * tag names and frees them in pulse_generations_destroy.  Nothing is ever
 * removed: the set of tags is the set of tables, aggregates and key columns
 * tracked, and the tags routes name; keyed value tags, which are as many as
 * rows, enter only when a route's key names one (keyed.c keeps the others).
 *
 * Trust (generations.h): the instant vouched for is an atomic that readers
 * load with acquire ordering before they take the lock, and the catalog
 * thread stores with release ordering after it applied the notifications it
 * vouches for; `_trust_lock` only guards the bookkeeping of the time spent
 * untrusted (metrics).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include "generations.h"
#include "keyed.h"

#define GEN_MAX ((uint64_t)INT64_MAX)

typedef struct gen_entry_t {
    struct gen_entry_t *next;
    uint64_t hash;
    uint64_t gen;
    size_t len;
    char tag[];
} gen_entry_t;

struct pulse_generations_t {
    pthread_rwlock_t _lock;
    gen_entry_t **_buckets;
    size_t _nbuckets; /* a power of two */
    size_t _count;
    _Atomic uint64_t _vouched_us; /* 0: never */
    uint64_t _max_lag_us;         /* 0: always trusted */
    pthread_mutex_t _trust_lock;
    uint64_t _created_us, _unverified_us, _accounted_us; /* untrusted time counted up to _accounted_us */
};

static uint64_t gen_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i != len; ++i) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* caller holds the lock (shared or exclusive) */
static gen_entry_t *gen_find(pulse_generations_t *g, const char *tag, size_t len, uint64_t h)
{
    for (gen_entry_t *e = g->_buckets[h & (g->_nbuckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && e->len == len && memcmp(e->tag, tag, len) == 0)
            return e;
    return NULL;
}

/* caller holds the lock exclusively; a failed resize leaves the table as it was */
static void gen_grow(pulse_generations_t *g)
{
    size_t n = g->_nbuckets * 2;
    gen_entry_t **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return;
    for (size_t i = 0; i != g->_nbuckets; ++i) {
        gen_entry_t *e, *next;
        for (e = g->_buckets[i]; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(g->_buckets);
    g->_buckets = b;
    g->_nbuckets = n;
}

/* caller holds the lock exclusively */
static int gen_set_locked(pulse_generations_t *g, const char *tag, size_t len, uint64_t gen)
{
    uint64_t h = gen_hash(tag, len);
    gen_entry_t *e = gen_find(g, tag, len, h);
    if (e != NULL) {
        if (gen <= e->gen)
            return 0;
        e->gen = gen;
        return 1;
    }
    /* a new tag: watched from now on (a generation of 0 is not a move) */
    if ((e = malloc(sizeof(*e) + len + 1)) == NULL)
        return -1;
    e->hash = h;
    e->gen = gen;
    e->len = len;
    memcpy(e->tag, tag, len);
    e->tag[len] = '\0';
    e->next = g->_buckets[h & (g->_nbuckets - 1)];
    g->_buckets[h & (g->_nbuckets - 1)] = e;
    if (++g->_count > g->_nbuckets * 2)
        gen_grow(g);
    return gen != 0;
}

void pulse_generations_watch(pulse_generations_t *g, const char *const *tags, size_t ntags)
{
    pthread_rwlock_wrlock(&g->_lock);
    for (size_t i = 0; i != ntags; ++i)
        (void)gen_set_locked(g, tags[i], strlen(tags[i]), 0);
    pthread_rwlock_unlock(&g->_lock);
}

pulse_generations_t *pulse_generations_create(void)
{
    pulse_generations_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->_nbuckets = 64;
    if ((g->_buckets = calloc(g->_nbuckets, sizeof(*g->_buckets))) == NULL || pthread_rwlock_init(&g->_lock, NULL) != 0) {
        free(g->_buckets);
        free(g);
        return NULL;
    }
    pthread_mutex_init(&g->_trust_lock, NULL);
    g->_created_us = g->_accounted_us = pulse_generations_now_us();
    return g;
}

void pulse_generations_destroy(pulse_generations_t *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i != g->_nbuckets; ++i) {
        gen_entry_t *e, *next;
        for (e = g->_buckets[i]; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(g->_buckets);
    pthread_rwlock_destroy(&g->_lock);
    pthread_mutex_destroy(&g->_trust_lock);
    free(g);
}

/* parses 1..INT64_MAX (or 0 when allow_zero) in plain decimal; returns 0 or -1 */
static int gen_parse_number(const char *s, size_t len, int allow_zero, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return -1;
    if (s[0] == '0' && len != 1)
        return -1;
    for (size_t i = 0; i != len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits cannot overflow uint64_t */
    }
    if (v > GEN_MAX || (v == 0 && !allow_zero))
        return -1;
    *out = v;
    return 0;
}

int pulse_generations_parse(const char *payload, size_t len, const char **tag, size_t *tag_len, uint64_t *gen)
{
    size_t colon = len;
    if (payload == NULL)
        return -1;
    while (colon != 0 && payload[colon - 1] != ':')
        --colon;
    if (colon <= 1) /* no ':' at all, or an empty tag */
        return -1;
    if (memchr(payload, '\0', len) != NULL)
        return -1;
    if (gen_parse_number(payload + colon, len - colon, 0, gen) != 0)
        return -1;
    *tag = payload;
    *tag_len = colon - 1;
    return 0;
}

int pulse_generations_set(pulse_generations_t *g, const char *tag, size_t len, uint64_t gen)
{
    if (gen == 0 || gen > GEN_MAX)
        return -1;
    pthread_rwlock_wrlock(&g->_lock);
    int ret = gen_set_locked(g, tag, len, gen);
    pthread_rwlock_unlock(&g->_lock);
    return ret;
}

/* a keyed value tag reaches the map only when a route's key names it (the resync added it): they are too many */
static int gen_apply(pulse_generations_t *g, const char *tag, size_t len, uint64_t gen)
{
    if (pulse_keyed_is_value_tag(tag, len)) {
        int ret = 0;
        pthread_rwlock_wrlock(&g->_lock);
        gen_entry_t *e = gen_find(g, tag, len, gen_hash(tag, len));
        if (e != NULL && gen > e->gen) {
            e->gen = gen;
            ret = 1;
        }
        pthread_rwlock_unlock(&g->_lock);
        return ret;
    }
    return pulse_generations_set(g, tag, len, gen);
}

int pulse_generations_apply_tag(pulse_generations_t *g, pulse_keyed_t *k, const char *tag, size_t len, uint64_t gen, int notify)
{
    int ret = gen_apply(g, tag, len, gen);
    /* every tag that may be keyed ("<tag>:<col>=<value>", or "<tag>:<col>" for NULL), epochs aside */
    if (k != NULL && ret >= 0 && memchr(tag, ':', len) != NULL && !(len >= 2 && tag[len - 2] == '=' && tag[len - 1] == '*') &&
        (notify ? pulse_keyed_notify(k, tag, len, gen) : pulse_keyed_raise(k, tag, len, gen)) != 0)
        ret = -1;
    return ret;
}

int pulse_generations_apply_notify(pulse_generations_t *g, pulse_keyed_t *k, const char *payload, size_t len)
{
    const char *tag;
    size_t tag_len;
    uint64_t gen;
    if (pulse_generations_parse(payload, len, &tag, &tag_len, &gen) != 0)
        return -1;
    return pulse_generations_apply_tag(g, k, tag, tag_len, gen, 1);
}

int pulse_generations_apply_bumps(pulse_generations_t *g, pulse_keyed_t *k, const char *text, size_t len)
{
    int moved = 0;
    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t llen = nl != NULL ? (size_t)(nl - line) : len - pos, tag_len;
        const char *tag;
        uint64_t gen;
        pos += llen + 1;
        if (llen == 0)
            continue;
        if (pulse_generations_parse(line, llen, &tag, &tag_len, &gen) != 0)
            return -1;
        int r = pulse_generations_apply_tag(g, k, tag, tag_len, gen, 0);
        if (r < 0)
            return -1;
        moved += r;
    }
    return moved;
}

int pulse_generations_resync(pulse_generations_t *g, const char *const *tags, size_t ntags, const char *text, size_t len)
{
    uint64_t *gens = NULL;
    size_t n = 0, pos = 1;
    int moved = 0;

    if (text == NULL || len < 2 || text[0] != '{' || text[len - 1] != '}')
        return -1;
    if (ntags != 0 && (gens = malloc(ntags * sizeof(*gens))) == NULL)
        return -1;
    /* check everything first: the map changes only for a well-formed answer of the right size */
    if (len != 2) {
        for (;;) {
            size_t start = pos;
            while (pos < len - 1 && text[pos] != ',')
                ++pos;
            if (n == ntags || gen_parse_number(text + start, pos - start, 1, &gens[n]) != 0)
                goto Fail;
            ++n;
            if (pos == len - 1)
                break;
            ++pos; /* the ',' */
        }
    }
    if (n != ntags)
        goto Fail;

    pthread_rwlock_wrlock(&g->_lock);
    for (size_t i = 0; i != ntags; ++i) {
        int r = gen_set_locked(g, tags[i], strlen(tags[i]), gens[i]); /* 0: watched, never bumped */
        if (r < 0) {
            moved = -1;
            break;
        }
        moved += r;
    }
    pthread_rwlock_unlock(&g->_lock);
    free(gens);
    return moved;

Fail:
    free(gens);
    return -1;
}

uint64_t pulse_generations_get(pulse_generations_t *g, const char *tag, size_t len)
{
    uint64_t h = gen_hash(tag, len), gen;
    pthread_rwlock_rdlock(&g->_lock);
    gen_entry_t *e = gen_find(g, tag, len, h);
    gen = e != NULL ? e->gen : 0;
    pthread_rwlock_unlock(&g->_lock);
    return gen;
}

void pulse_generations_get_many(pulse_generations_t *g, const char *const *tags, size_t ntags, uint64_t *out)
{
    pthread_rwlock_rdlock(&g->_lock);
    for (size_t i = 0; i != ntags; ++i) {
        size_t len = strlen(tags[i]);
        gen_entry_t *e = gen_find(g, tags[i], len, gen_hash(tags[i], len));
        out[i] = e != NULL ? e->gen : 0;
    }
    pthread_rwlock_unlock(&g->_lock);
}

size_t pulse_generations_count(pulse_generations_t *g)
{
    pthread_rwlock_rdlock(&g->_lock);
    size_t n = g->_count;
    pthread_rwlock_unlock(&g->_lock);
    return n;
}

char *pulse_generations_text_array(const char *const *tags, size_t ntags)
{
    size_t cap = 3;
    for (size_t i = 0; i < ntags; i++)
        cap += 2 * strlen(tags[i]) + 3;
    char *buf = malloc(cap), *p = buf;
    if (buf == NULL)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < ntags; i++) {
        if (i != 0)
            *p++ = ',';
        *p++ = '"';
        for (const char *s = tags[i]; *s != '\0'; s++) {
            if (*s == '"' || *s == '\\')
                *p++ = '\\';
            *p++ = *s;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return buf;
}

uint64_t pulse_generations_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void pulse_generations_set_max_lag(pulse_generations_t *g, uint64_t max_lag_us)
{
    g->_max_lag_us = max_lag_us;
}

/* the instant trust ends (or ended) with the current vouch; caller holds _trust_lock or is the only writer */
static uint64_t gen_trust_end(pulse_generations_t *g, uint64_t vouched)
{
    return vouched == 0 ? g->_created_us : vouched + g->_max_lag_us;
}

void pulse_generations_vouch(pulse_generations_t *g, uint64_t as_of_us)
{
    uint64_t now = pulse_generations_now_us();
    pthread_mutex_lock(&g->_trust_lock);
    uint64_t cur = atomic_load_explicit(&g->_vouched_us, memory_order_relaxed);
    if (as_of_us > cur) {
        if (g->_max_lag_us != 0) {
            /* an untrusted stretch ends (or goes on) now: count it up to now */
            uint64_t from = gen_trust_end(g, cur);
            if (from < g->_accounted_us)
                from = g->_accounted_us;
            if (now > from) {
                g->_unverified_us += now - from;
                g->_accounted_us = now;
            }
        }
        atomic_store_explicit(&g->_vouched_us, as_of_us, memory_order_release);
    }
    pthread_mutex_unlock(&g->_trust_lock);
}

int pulse_generations_vouched(pulse_generations_t *g, uint64_t now_us)
{
    if (g->_max_lag_us == 0)
        return 1;
    uint64_t v = atomic_load_explicit(&g->_vouched_us, memory_order_acquire);
    return v != 0 && now_us < v + g->_max_lag_us;
}

uint64_t pulse_generations_vouched_as_of(pulse_generations_t *g)
{
    return atomic_load_explicit(&g->_vouched_us, memory_order_acquire);
}

uint64_t pulse_generations_unverified_us(pulse_generations_t *g, uint64_t now_us)
{
    if (g->_max_lag_us == 0)
        return 0;
    pthread_mutex_lock(&g->_trust_lock);
    uint64_t total = g->_unverified_us;
    uint64_t from = gen_trust_end(g, atomic_load_explicit(&g->_vouched_us, memory_order_relaxed));
    if (from < g->_accounted_us)
        from = g->_accounted_us;
    if (now_us > from)
        total += now_us - from;
    pthread_mutex_unlock(&g->_trust_lock);
    return total;
}
