/*
 * localcache.c: a byte-bounded LRU map from cache keys to copies of entries
 * (localcache.h).  Chained hash table with a power-of-two number of buckets
 * that doubles when the table gets crowded, and a doubly linked recency list;
 * each entry is one allocation holding the node, its key and its copied
 * fields.
 */
#include <stdlib.h>
#include <string.h>
#include "localcache.h"

typedef struct lc_node_t {
    struct lc_node_t *next_in_bucket;
    struct lc_node_t *prev, *next; /* recency list: head = most recent */
    uint64_t hash;
    size_t size;
    pulse_cache_entry_t e;
    char key[]; /* NUL-terminated, followed by the entry's bytes */
} lc_node_t;

struct pulse_lcache_t {
    lc_node_t **buckets;
    size_t nbuckets; /* a power of two */
    lc_node_t *head, *tail;
    size_t max_bytes;
    pulse_lcache_stats_t st;
};

static uint64_t lc_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

pulse_lcache_t *pulse_lcache_create(size_t max_bytes)
{
    if (max_bytes == 0)
        return NULL;
    pulse_lcache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->nbuckets = 256;
    if ((c->buckets = calloc(c->nbuckets, sizeof(*c->buckets))) == NULL) {
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes;
    return c;
}

void pulse_lcache_destroy(pulse_lcache_t *c)
{
    if (c == NULL)
        return;
    for (lc_node_t *n = c->head, *next; n != NULL; n = next) {
        next = n->next;
        free(n);
    }
    free(c->buckets);
    free(c);
}

static lc_node_t **lc_slot(pulse_lcache_t *c, uint64_t hash, const char *key)
{
    lc_node_t **p = &c->buckets[hash & (c->nbuckets - 1)];
    while (*p != NULL && !((*p)->hash == hash && strcmp((*p)->key, key) == 0))
        p = &(*p)->next_in_bucket;
    return p;
}

static void lc_unlink_lru(pulse_lcache_t *c, lc_node_t *n)
{
    if (n->prev != NULL)
        n->prev->next = n->next;
    else
        c->head = n->next;
    if (n->next != NULL)
        n->next->prev = n->prev;
    else
        c->tail = n->prev;
    n->prev = n->next = NULL;
}

static void lc_push_front(pulse_lcache_t *c, lc_node_t *n)
{
    n->prev = NULL;
    n->next = c->head;
    if (c->head != NULL)
        c->head->prev = n;
    c->head = n;
    if (c->tail == NULL)
        c->tail = n;
}

static void lc_remove(pulse_lcache_t *c, lc_node_t **slot)
{
    lc_node_t *n = *slot;
    *slot = n->next_in_bucket;
    lc_unlink_lru(c, n);
    c->st.entries--;
    c->st.bytes -= n->size;
    free(n);
}

const pulse_cache_entry_t *pulse_lcache_get(pulse_lcache_t *c, const char *key, uint64_t now_ms)
{
    if (c == NULL)
        return NULL;
    uint64_t h = lc_hash(key);
    lc_node_t **slot = lc_slot(c, h, key), *n = *slot;
    if (n == NULL) {
        c->st.misses++;
        return NULL;
    }
    if (now_ms >= n->e.created_at_ms + n->e.ttl_ms) { /* no longer fresh: Redis decides (stale windows, refresh) */
        lc_remove(c, slot);
        c->st.misses++;
        return NULL;
    }
    lc_unlink_lru(c, n);
    lc_push_front(c, n);
    c->st.hits++;
    return &n->e;
}

static void lc_grow(pulse_lcache_t *c)
{
    size_t nb = c->nbuckets * 2;
    lc_node_t **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (lc_node_t *n = c->buckets[i], *next; n != NULL; n = next) {
            next = n->next_in_bucket;
            n->next_in_bucket = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
}

static h2o_iovec_t lc_copy(char **p, h2o_iovec_t v)
{
    h2o_iovec_t out = h2o_iovec_init(*p, v.len);
    if (v.len != 0)
        memcpy(*p, v.base, v.len);
    *p += v.len;
    return out;
}

void pulse_lcache_put(pulse_lcache_t *c, const char *key, const pulse_cache_entry_t *e)
{
    if (c == NULL || e->status != 200)
        return;
    size_t klen = strlen(key) + 1;
    size_t size =
        sizeof(lc_node_t) + klen + e->content_type.len + e->etag.len + e->link.len + e->body.len + e->gzip.len + e->keyed.len;
    if (size > c->max_bytes / 8)
        return;
    uint64_t h = lc_hash(key);
    lc_node_t **slot = lc_slot(c, h, key);
    if (*slot != NULL)
        lc_remove(c, slot);
    while (c->st.bytes + size > c->max_bytes && c->tail != NULL) {
        lc_node_t *victim = c->tail;
        lc_remove(c, lc_slot(c, victim->hash, victim->key));
        c->st.evictions++;
    }
    lc_node_t *n = malloc(size);
    if (n == NULL)
        return;
    memcpy(n->key, key, klen);
    char *p = n->key + klen;
    n->e = *e;
    n->e.content_type = lc_copy(&p, e->content_type);
    n->e.etag = lc_copy(&p, e->etag);
    n->e.link = lc_copy(&p, e->link);
    n->e.body = lc_copy(&p, e->body);
    n->e.gzip = lc_copy(&p, e->gzip);
    n->e.keyed = lc_copy(&p, e->keyed);
    n->hash = h;
    n->size = size;
    slot = lc_slot(c, h, key); /* evictions may have changed the chain */
    n->next_in_bucket = *slot;
    *slot = n;
    n->prev = n->next = NULL;
    lc_push_front(c, n);
    c->st.entries++;
    c->st.bytes += size;
    c->st.insertions++;
    if (c->st.entries > c->nbuckets * 2)
        lc_grow(c);
}

void pulse_lcache_stats(const pulse_lcache_t *c, pulse_lcache_stats_t *out)
{
    if (c == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = c->st;
}
