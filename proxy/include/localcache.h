/*
 * localcache.h: an in-process copy of hot cache entries, one per event loop,
 * in front of Redis.
 *
 * A cached hit used to cost a Redis round trip; the hottest keys are asked
 * for thousands of times a second.  Each loop keeps the entries it recently
 * got from Redis or stored itself, under the same keys (tenant, endpoint,
 * arguments and the tag generations: a write that bumps a tag changes the key,
 * so a local entry is invalidated exactly when the Redis one is), and serves
 * them while they are fresh (age < ttl).  Anything else (stale, expired,
 * absent) goes to Redis as before.  The size is bounded in bytes; the least
 * recently used entries go first.
 *
 * Everything runs on the loop's thread; nothing is shared between loops.
 */
#ifndef PULSE_LOCALCACHE_H
#define PULSE_LOCALCACHE_H

#include <stddef.h>
#include <stdint.h>
#include "cache.h"

typedef struct pulse_lcache_t pulse_lcache_t;

typedef struct pulse_lcache_stats_t {
    uint64_t hits, misses, insertions, evictions;
    size_t entries, bytes;
} pulse_lcache_stats_t;

/**
 * Creates a local cache of at most `max_bytes` (keys, bodies, gzip variants and headers counted). Returns NULL when out of
 * memory or when `max_bytes` is 0 (no local cache).
 */
pulse_lcache_t *pulse_lcache_create(size_t max_bytes) PULSE_WUR;

/**
 * Frees the cache and its entries (NULL is ignored).
 */
void pulse_lcache_destroy(pulse_lcache_t *c);

/**
 * Returns the entry of `key` when it is fresh at `now_ms` (age < ttl), or NULL. The entry (and the memory it points to)
 * stays valid until the next pulse_lcache_put or pulse_lcache_destroy on this cache: copy what must outlive that.
 */
const pulse_cache_entry_t *pulse_lcache_get(pulse_lcache_t *c, const char *key, uint64_t now_ms);

/**
 * Stores a copy of `e` under `key` (replacing an older one), evicting the least recently used entries to stay within the
 * size; an entry larger than an eighth of the cache is not stored. Entries whose status is not 200 are not stored.
 */
void pulse_lcache_put(pulse_lcache_t *c, const char *key, const pulse_cache_entry_t *e);

/**
 * Copies the counters into `out`.
 */
void pulse_lcache_stats(const pulse_lcache_t *c, pulse_lcache_stats_t *out);

#endif
