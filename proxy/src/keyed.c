/*
 * keyed.c: the bounded map of keyed cache tags and the check of a cached
 * answer's keyed state (keyed.h explains why a hit it accepts is current).
 *
 * Locking: one read-write lock guards the map, its LRU list, the coverage
 * snapshot and the counters; checks take it shared, updates exclusive.
 * The map is a chained hash table (FNV-1a, doubling at two tags a bucket)
 * whose entries are also on a doubly linked list, most recently bumped
 * first: when the map is full the tail is evicted.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "keyed.h"

typedef struct keyed_entry_t {
    struct keyed_entry_t *next;          /* bucket chain */
    struct keyed_entry_t *newer, *older; /* LRU list */
    uint64_t hash, gen;
    size_t len;
    char tag[];
} keyed_entry_t;

struct pulse_keyed_t {
    pthread_rwlock_t _lock;
    keyed_entry_t **_buckets;
    size_t _nbuckets, _count, _capacity;
    keyed_entry_t *_newest, *_oldest;
    uint64_t _epoch;               /* evictions + resets: knowledge lost */
    uint64_t _covered_epoch;       /* the epoch the coverage snapshot was taken after; != _epoch: pending */
    pulse_keyed_snapshot_t _cover; /* xip from malloc */
    uint64_t _evictions, _resets;
};

static uint64_t keyed_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i != len; ++i) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

pulse_keyed_t *pulse_keyed_create(size_t capacity)
{
    pulse_keyed_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    k->_capacity = capacity < 16 ? 16 : capacity;
    k->_nbuckets = 64;
    if ((k->_buckets = calloc(k->_nbuckets, sizeof(*k->_buckets))) == NULL || pthread_rwlock_init(&k->_lock, NULL) != 0) {
        free(k->_buckets);
        free(k);
        return NULL;
    }
    k->_epoch = 1; /* pending until the first coverage snapshot */
    return k;
}

/* caller holds the lock exclusively */
static void keyed_clear(pulse_keyed_t *k)
{
    keyed_entry_t *e, *next;
    for (e = k->_newest; e != NULL; e = next) {
        next = e->older;
        free(e);
    }
    memset(k->_buckets, 0, k->_nbuckets * sizeof(*k->_buckets));
    k->_newest = k->_oldest = NULL;
    k->_count = 0;
}

void pulse_keyed_destroy(pulse_keyed_t *k)
{
    if (k == NULL)
        return;
    keyed_clear(k);
    free(k->_buckets);
    free(k->_cover.xip);
    pthread_rwlock_destroy(&k->_lock);
    free(k);
}

int pulse_keyed_is_value_tag(const char *tag, size_t len)
{
    const char *eq = memchr(tag, '=', len);
    return eq != NULL && memchr(tag, ':', (size_t)(eq - tag)) != NULL && !(len >= 2 && tag[len - 2] == '=' && tag[len - 1] == '*');
}

/* caller holds the lock (shared or exclusive) */
static keyed_entry_t *keyed_find(pulse_keyed_t *k, const char *tag, size_t len, uint64_t h)
{
    for (keyed_entry_t *e = k->_buckets[h & (k->_nbuckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && e->len == len && memcmp(e->tag, tag, len) == 0)
            return e;
    return NULL;
}

/* caller holds the lock exclusively */
static void keyed_unlink_lru(pulse_keyed_t *k, keyed_entry_t *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        k->_newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        k->_oldest = e->newer;
    e->newer = e->older = NULL;
}

/* caller holds the lock exclusively */
static void keyed_push_lru(pulse_keyed_t *k, keyed_entry_t *e)
{
    e->older = k->_newest;
    e->newer = NULL;
    if (k->_newest != NULL)
        k->_newest->newer = e;
    k->_newest = e;
    if (k->_oldest == NULL)
        k->_oldest = e;
}

/* caller holds the lock exclusively: forgets the least recently bumped tag */
static void keyed_evict(pulse_keyed_t *k)
{
    keyed_entry_t *e = k->_oldest, **p;
    if (e == NULL)
        return;
    keyed_unlink_lru(k, e);
    for (p = &k->_buckets[e->hash & (k->_nbuckets - 1)]; *p != e; p = &(*p)->next)
        ;
    *p = e->next;
    free(e);
    k->_count--;
    k->_evictions++;
    k->_epoch++;
}

/* caller holds the lock exclusively; a failed resize leaves the table as it was */
static void keyed_grow(pulse_keyed_t *k)
{
    size_t n = k->_nbuckets * 2;
    keyed_entry_t **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return;
    for (size_t i = 0; i != k->_nbuckets; ++i) {
        keyed_entry_t *e, *next;
        for (e = k->_buckets[i]; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(k->_buckets);
    k->_buckets = b;
    k->_nbuckets = n;
}

/* `raise`: keep the larger generation; otherwise the new one (a notification, in commit order) */
static int keyed_update(pulse_keyed_t *k, const char *tag, size_t len, uint64_t gen, int raise)
{
    uint64_t h = keyed_hash(tag, len);
    int ret = 0;
    pthread_rwlock_wrlock(&k->_lock);
    keyed_entry_t *e = keyed_find(k, tag, len, h);
    if (e != NULL) {
        if (!raise || gen > e->gen)
            e->gen = gen;
        keyed_unlink_lru(k, e);
        keyed_push_lru(k, e);
    } else if ((e = malloc(sizeof(*e) + len + 1)) != NULL) {
        if (k->_count >= k->_capacity)
            keyed_evict(k);
        e->hash = h;
        e->gen = gen;
        e->len = len;
        memcpy(e->tag, tag, len);
        e->tag[len] = '\0';
        e->next = k->_buckets[h & (k->_nbuckets - 1)];
        k->_buckets[h & (k->_nbuckets - 1)] = e;
        keyed_push_lru(k, e);
        if (++k->_count > k->_nbuckets * 2)
            keyed_grow(k);
    } else {
        /* out of memory: the bump is known to nobody; forget all, so that nothing unknown passes as unchanged */
        keyed_clear(k);
        k->_epoch++;
        ret = -1;
    }
    pthread_rwlock_unlock(&k->_lock);
    return ret;
}

int pulse_keyed_notify(pulse_keyed_t *k, const char *tag, size_t len, uint64_t gen)
{
    return keyed_update(k, tag, len, gen, 0);
}

int pulse_keyed_raise(pulse_keyed_t *k, const char *tag, size_t len, uint64_t gen)
{
    return keyed_update(k, tag, len, gen, 1);
}

void pulse_keyed_reset(pulse_keyed_t *k)
{
    pthread_rwlock_wrlock(&k->_lock);
    keyed_clear(k);
    k->_resets++;
    k->_epoch++;
    pthread_rwlock_unlock(&k->_lock);
}

int pulse_keyed_coverage_pending(pulse_keyed_t *k)
{
    pthread_rwlock_rdlock(&k->_lock);
    int pending = k->_covered_epoch != k->_epoch;
    pthread_rwlock_unlock(&k->_lock);
    return pending;
}

uint64_t pulse_keyed_coverage_epoch(pulse_keyed_t *k)
{
    pthread_rwlock_rdlock(&k->_lock);
    uint64_t epoch = k->_epoch;
    pthread_rwlock_unlock(&k->_lock);
    return epoch;
}

/* parses an unsigned decimal number of [s, end) up to a byte of `stops`; advances *s; 0 or -1 */
static int keyed_number(const char **s, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = *s;
    if (p == end || *p < '0' || *p > '9')
        return -1;
    for (; p != end && *p >= '0' && *p <= '9'; ++p) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *s = p;
    *out = v;
    return 0;
}

static int keyed_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int pulse_keyed_parse_snapshot(const char *text, size_t len, h2o_mem_pool_t *pool, pulse_keyed_snapshot_t *s)
{
    const char *p = text, *end = text + len;
    size_t n = 0;
    memset(s, 0, sizeof(*s));
    if (keyed_number(&p, end, &s->xmin) != 0 || p == end || *p++ != ':' || keyed_number(&p, end, &s->xmax) != 0 || p == end ||
        *p++ != ':' || s->xmin > s->xmax)
        return -1;
    for (const char *q = p; q != end; ++q)
        n += *q == ',';
    if (p != end)
        n++;
    if (n != 0) {
        s->xip = pool != NULL ? h2o_mem_alloc_pool(pool, n * sizeof(uint64_t)) : malloc(n * sizeof(uint64_t));
        if (s->xip == NULL)
            return -1;
    }
    while (p != end) {
        if (keyed_number(&p, end, &s->xip[s->nxip]) != 0 || s->xip[s->nxip] < s->xmin || s->xip[s->nxip] >= s->xmax)
            goto Fail;
        s->nxip++;
        if (p != end && *p++ != ',')
            goto Fail;
        if (p == end && text[len - 1] == ',')
            goto Fail;
    }
    if (s->nxip > 1)
        qsort(s->xip, s->nxip, sizeof(uint64_t), keyed_cmp_u64);
    return 0;
Fail:
    if (pool == NULL)
        free(s->xip);
    s->xip = NULL;
    return -1;
}

/* whether xid is in the sorted xip of `s` */
static int keyed_in_xip(const pulse_keyed_snapshot_t *s, uint64_t xid)
{
    return s->nxip != 0 && bsearch(&xid, s->xip, s->nxip, sizeof(uint64_t), keyed_cmp_u64) != NULL;
}

int pulse_keyed_snapshot_covers(const pulse_keyed_snapshot_t *s, const pulse_keyed_snapshot_t *cover)
{
    /* cover sees x when x < cover.xmax and x is not in cover.xip; s must see every such x: below s.xmin, or below s.xmax
       and not in s.xip. So cover.xmax <= s.xmax, and no x that s still saw running is one cover saw finished. */
    if (cover->xmax > s->xmax)
        return 0;
    for (size_t i = 0; i != s->nxip; ++i)
        if (s->xip[i] < cover->xmax && !keyed_in_xip(cover, s->xip[i]))
            return 0;
    return 1;
}

int pulse_keyed_set_coverage(pulse_keyed_t *k, const char *text, size_t len, uint64_t epoch)
{
    pulse_keyed_snapshot_t s;
    if (pulse_keyed_parse_snapshot(text, len, NULL, &s) != 0)
        return -1;
    pthread_rwlock_wrlock(&k->_lock);
    free(k->_cover.xip);
    k->_cover = s;
    k->_covered_epoch = epoch; /* an eviction since `epoch` was read keeps it pending */
    pthread_rwlock_unlock(&k->_lock);
    return 0;
}

int pulse_keyed_state_from_json(h2o_mem_pool_t *pool, const char *json, size_t len, h2o_iovec_t *out)
{
    json_t *doc = json_loadb(json, len, 0, NULL), *tags = json_object_get(doc, "tags");
    const char *snap = json_string_value(json_object_get(doc, "snapshot"));
    size_t size, i;
    json_t *t;
    int ret = -1;
    if (snap == NULL || !json_is_array(tags))
        goto Out;
    size = strlen(snap) + 1;
    json_array_foreach(tags, i, t)
    {
        const char *tag = json_string_value(json_array_get(t, 0));
        if (json_array_size(t) != 2 || tag == NULL || !json_is_integer(json_array_get(t, 1)) ||
            json_integer_value(json_array_get(t, 1)) < 0 || json_string_length(json_array_get(t, 0)) > UINT16_MAX)
            goto Out;
        size += 10 + json_string_length(json_array_get(t, 0));
    }
    unsigned char *b = h2o_mem_alloc_pool(pool, size), *p = b;
    memcpy(p, snap, strlen(snap) + 1);
    p += strlen(snap) + 1;
    json_array_foreach(tags, i, t)
    {
        uint64_t gen = (uint64_t)json_integer_value(json_array_get(t, 1));
        size_t tl = json_string_length(json_array_get(t, 0));
        for (int s = 56; s >= 0; s -= 8)
            *p++ = (unsigned char)(gen >> s);
        *p++ = (unsigned char)(tl >> 8);
        *p++ = (unsigned char)tl;
        memcpy(p, json_string_value(json_array_get(t, 0)), tl);
        p += tl;
    }
    *out = h2o_iovec_init(b, size);
    ret = 0;
Out:
    json_decref(doc);
    return ret;
}

int pulse_keyed_current(pulse_keyed_t *k, h2o_iovec_t state)
{
    if (state.len == 0)
        return 1;
    const unsigned char *p = (const unsigned char *)state.base, *end = p + state.len, *nul = memchr(p, '\0', state.len);
    pulse_keyed_snapshot_t s;
    h2o_mem_pool_t pool;
    int current = 1, have_snapshot = -1;
    if (nul == NULL)
        return 0;
    h2o_mem_init_pool(&pool);
    pthread_rwlock_rdlock(&k->_lock);
    for (p = nul + 1; p != end && current;) {
        if (end - p < 10) {
            current = 0;
            break;
        }
        uint64_t gen = 0;
        for (int i = 0; i != 8; ++i)
            gen = gen << 8 | p[i];
        size_t tl = (size_t)p[8] << 8 | p[9];
        p += 10;
        if ((size_t)(end - p) < tl) {
            current = 0;
            break;
        }
        keyed_entry_t *e = keyed_find(k, (const char *)p, tl, keyed_hash((const char *)p, tl));
        p += tl;
        if (e != NULL) {
            current = e->gen <= gen;
            continue;
        }
        /* unknown: only if the entry's snapshot covers what the map may have lost */
        if (have_snapshot < 0)
            have_snapshot =
                k->_covered_epoch == k->_epoch &&
                pulse_keyed_parse_snapshot(state.base, (size_t)(nul - (const unsigned char *)state.base), &pool, &s) == 0;
        current = have_snapshot && pulse_keyed_snapshot_covers(&s, &k->_cover);
    }
    pthread_rwlock_unlock(&k->_lock);
    h2o_mem_clear_pool(&pool);
    return current;
}

void pulse_keyed_stats(pulse_keyed_t *k, pulse_keyed_stats_t *out)
{
    pthread_rwlock_rdlock(&k->_lock);
    out->tags = k->_count;
    out->evictions = k->_evictions;
    out->resets = k->_resets;
    out->coverage_pending = k->_covered_epoch != k->_epoch;
    pthread_rwlock_unlock(&k->_lock);
}
