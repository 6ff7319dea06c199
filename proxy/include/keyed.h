/*
 * keyed.h: what the proxy knows of keyed cache tags ("<tag>:<col>=<value>",
 * README: Keyed tags), and the check that a cached answer which depends on
 * some of them is still current.
 *
 * Keyed tags are too many to sit in the cache key (a row id each): an
 * entry instead records, read in the very snapshot of the call that made
 * it (pulse.keyed_state), that snapshot and the generation of each keyed
 * tag it depends on; the key holds the column's epoch "<tag>:<col>=*"
 * (generations.h) so that a bulk write still moves it.  A hit is current
 * when, for every keyed tag of the entry,
 *   - the proxy knows the tag (from a pulse_invalidate notification or a
 *     write it made) and its generation is not above the entry's, or
 *   - the proxy does not know it, and the entry's snapshot sees everything
 *     the coverage snapshot sees: the coverage snapshot is taken after this
 *     map last lost knowledge (the listening connection (re)opened, or a
 *     tag was evicted), so every bump the map does not hold committed
 *     before it and is in the entry's answer.
 * Bumps committed after the coverage snapshot reach the map through the
 * notifications, which the heartbeat of generations.h vouches for: together
 * a hit is never older than a write committed before now - max lag.
 *
 * Memory is bounded: at most `capacity` tags, the least recently bumped
 * evicted first; an eviction makes the coverage pending (every unknown tag
 * counts as changed) until the catalog thread takes a new coverage
 * snapshot.  Thread-safe (a read-write lock): the catalog thread feeds
 * notifications, loops feed their writes' bumps and check hits.
 */
#ifndef PULSE_KEYED_H
#define PULSE_KEYED_H

#include <h2o.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"

typedef struct pulse_keyed_t pulse_keyed_t;

/* A PostgreSQL snapshot (pg_current_snapshot()): xids below xmin are finished, from xmax on not started, xip in between
   were running. */
typedef struct pulse_keyed_snapshot_t {
    uint64_t xmin, xmax;
    size_t nxip;
    uint64_t *xip; /* sorted */
} pulse_keyed_snapshot_t;

typedef struct pulse_keyed_stats_t {
    size_t tags;          /* tags known */
    uint64_t evictions;   /* tags forgotten to stay within capacity */
    uint64_t resets;      /* everything forgotten: the listening connection (re)opened */
    int coverage_pending; /* no coverage snapshot since the last eviction or reset */
} pulse_keyed_stats_t;

/**
 * Creates an empty map of at most `capacity` tags (at least 16), coverage pending. NULL when out of memory.
 */
pulse_keyed_t *pulse_keyed_create(size_t capacity) PULSE_WUR;

/**
 * Frees the map; no other thread may use it any more.
 */
void pulse_keyed_destroy(pulse_keyed_t *k);

/**
 * Tells whether a tag (`len` bytes) is a keyed value tag: "<tag>:<col>=<value>" with a value other than "*" (an epoch),
 * or "<tag>:<col>" for NULL cannot be told from a plain tag and is left to the caller: it is fed here too when it
 * contains ':' (see pulse_keyed_notify).
 */
int pulse_keyed_is_value_tag(const char *tag, size_t len);

/**
 * A pulse_invalidate notification for `tag`: its generation is now `gen` (notifications arrive in commit order, so this
 * one is the latest; a pruned tag starts again at 1). Returns 0, or -1 when out of memory (the tag is then unknown).
 */
int pulse_keyed_notify(pulse_keyed_t *k, const char *tag, size_t len, uint64_t gen) PULSE_WUR;

/**
 * A bump the proxy's own write made (pulse.last_bumps): raises the tag to `gen` unless it already knows more. Returns 0
 * or -1 as pulse_keyed_notify.
 */
int pulse_keyed_raise(pulse_keyed_t *k, const char *tag, size_t len, uint64_t gen) PULSE_WUR;

/**
 * Forgets every tag and makes the coverage pending: the listening connection (re)opened, notifications may have been
 * lost. The catalog thread then sets a coverage snapshot taken after its LISTEN.
 */
void pulse_keyed_reset(pulse_keyed_t *k);

/**
 * Tells whether the coverage is pending (the catalog thread should take a snapshot and call pulse_keyed_set_coverage).
 */
int pulse_keyed_coverage_pending(pulse_keyed_t *k);

/**
 * Sets the coverage snapshot from the text of pg_current_snapshot() (`len` bytes), taken after the last eviction or
 * reset was made (the caller reads pulse_keyed_coverage_epoch before it sends the query and passes it as `epoch`: an
 * eviction in between keeps the coverage pending). Returns 0, or -1 for a malformed snapshot.
 */
int pulse_keyed_set_coverage(pulse_keyed_t *k, const char *text, size_t len, uint64_t epoch) PULSE_WUR;

/**
 * Returns the number of evictions and resets so far, for pulse_keyed_set_coverage.
 */
uint64_t pulse_keyed_coverage_epoch(pulse_keyed_t *k);

/**
 * Parses the text of pg_current_snapshot() ("xmin:xmax:xip,xip,...") into `s`, whose xip array comes from `pool` (NULL:
 * malloc, freed by the caller). Returns 0 or -1.
 */
int pulse_keyed_parse_snapshot(const char *text, size_t len, h2o_mem_pool_t *pool, pulse_keyed_snapshot_t *s) PULSE_WUR;

/**
 * Tells whether snapshot `s` sees every transaction `cover` sees.
 */
int pulse_keyed_snapshot_covers(const pulse_keyed_snapshot_t *s, const pulse_keyed_snapshot_t *cover);

/**
 * Converts the JSON text pulse.keyed_state returns ({"snapshot": "...", "tags": [[tag, generation], ...]}) into the
 * binary state a cache entry keeps (from `pool`): the snapshot text and a NUL, then per tag its generation (8 bytes, big
 * endian), its length (2 bytes) and its bytes. Returns 0, or -1 when the JSON is malformed.
 */
int pulse_keyed_state_from_json(h2o_mem_pool_t *pool, const char *json, size_t len, h2o_iovec_t *out) PULSE_WUR;

/**
 * Tells whether an entry with keyed state `state` (pulse_keyed_state_from_json; empty: it depends on no keyed tag) is
 * current (see the header). A malformed state is not current.
 */
int pulse_keyed_current(pulse_keyed_t *k, h2o_iovec_t state);

/**
 * Fills `out` with the map's figures.
 */
void pulse_keyed_stats(pulse_keyed_t *k, pulse_keyed_stats_t *out);

#endif
