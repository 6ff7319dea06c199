/*
 * generations.h: the process's map of cache tag → generation, the input of
 * every cache key (cache.h).  It is fed by the LISTEN pulse_invalidate
 * notifications ('tag:generation'), by pulse.tag_generations(text[]) after
 * every (re)connect of the listening connection, and by writes made through
 * the proxy (before their response is sent).  Generations only move forward:
 * an older or equal generation is ignored, so notifications and resyncs can
 * arrive in any order.  A tag never seen has generation 0, as in
 * pulse.tag_generations.
 *
 * One map serves every event loop: all functions are thread-safe (a
 * read-write lock; readers never wait for each other).
 *
 * Trust.  A NOTIFY reaches the proxy some time after its commit, and not at
 * all while the listening connection is down or frozen, so the map alone
 * cannot tell whether it is complete.  The catalog thread vouches for it
 * (pulse_generations_vouch): "every bump committed before T is in the map",
 * T being the send time of the latest heartbeat received (channel.h; the
 * heartbeat is a NOTIFY queued after every earlier commit's) or the time a
 * resync was sent.  A reader asks pulse_generations_vouched(now) BEFORE it
 * reads generations: when now - T < max_lag every write that committed
 * before now - max_lag is in what it then reads.  That is the proxy's
 * staleness bound (proxy/README.md, Cache).
 */
#ifndef PULSE_GENERATIONS_H
#define PULSE_GENERATIONS_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "keyed.h"

typedef struct pulse_generations_t pulse_generations_t;

/**
 * Creates an empty map. Returns NULL when out of memory.
 */
pulse_generations_t *pulse_generations_create(void) PULSE_WUR;

/**
 * Frees the map; no other thread may use it any more.
 */
void pulse_generations_destroy(pulse_generations_t *g);

/**
 * Parses a pulse_invalidate payload (`len` bytes): "tag:generation", split at the LAST ':' (tags may contain ':'); the
 * tag is not empty, the generation is 1 to 9223372036854775807 in plain decimal digits (no sign, space or leading zero).
 * On success stores the tag (pointing into `payload`) in `*tag`/`*tag_len` and the generation in `*gen` and returns 0;
 * returns -1 for anything else.
 */
int pulse_generations_parse(const char *payload, size_t len, const char **tag, size_t *tag_len, uint64_t *gen) PULSE_WUR;

/**
 * Raises the generation of `tag` (`len` bytes) to `gen` when `gen` is greater than the one known. Returns 1 when it
 * moved, 0 when it was already at `gen` or beyond, -1 when out of memory or gen is 0 or over INT64_MAX.
 */
int pulse_generations_set(pulse_generations_t *g, const char *tag, size_t len, uint64_t gen) PULSE_WUR;

/**
 * Applies a bump of `tag` (`len` bytes) to generation `gen`: raises it in the map (a keyed value tag only when the map
 * watches it: a route's key names it) and, when `k` is not NULL and the tag may be keyed (it has a ':' and is not an
 * epoch "...=*"), tells `k` (pulse_keyed_notify when `notify`: a pulse_invalidate notification; pulse_keyed_raise
 * otherwise: a write of this proxy). Returns 1 when the map moved, 0 when not, -1 when out of memory.
 */
int pulse_generations_apply_tag(pulse_generations_t *g, pulse_keyed_t *k, const char *tag, size_t len, uint64_t gen,
                                int notify) PULSE_WUR;

/**
 * Applies one pulse_invalidate payload: pulse_generations_parse then pulse_generations_apply_tag. Returns what the
 * latter returns, or -1 for a malformed payload (nothing changed).
 */
int pulse_generations_apply_notify(pulse_generations_t *g, pulse_keyed_t *k, const char *payload, size_t len) PULSE_WUR;

/**
 * Applies the text of pulse.last_bumps() (`len` bytes): "tag:generation" lines, the bumps of a write this proxy just
 * made (pulse_generations_apply_tag, not a notification). Returns the number of tags of the map that moved, or -1 for a
 * malformed line (the lines before it are applied) or out of memory.
 */
int pulse_generations_apply_bumps(pulse_generations_t *g, pulse_keyed_t *k, const char *text, size_t len) PULSE_WUR;

/**
 * Adds `ntags` tags to the map at generation 0 unless known: the tags of routes about to be published, watched before
 * their generations are read (a keyed value tag is only raised when watched: a bump notified while the read runs must
 * not be lost).
 */
void pulse_generations_watch(pulse_generations_t *g, const char *const *tags, size_t ntags);

/**
 * Applies the result of `SELECT pulse.tag_generations($1)` for `ntags` tags: `text` (`len` bytes) is the text form of
 * the bigint[] it returns, "{g1,g2,...}" with one non-negative generation per tag in the same order. Each tag is raised
 * as pulse_generations_set does (0 means never bumped: the tag is then watched at 0). The whole text is checked first: returns -1
 * and changes nothing when it is malformed or has another number of elements, otherwise the number of tags that moved.
 */
int pulse_generations_resync(pulse_generations_t *g, const char *const *tags, size_t ntags, const char *text, size_t len) PULSE_WUR;

/**
 * Returns the generation of `tag` (`len` bytes), 0 when unknown.
 */
uint64_t pulse_generations_get(pulse_generations_t *g, const char *tag, size_t len);

/**
 * Stores the generations of `ntags` NUL-terminated tags into `out`, read under one lock (a consistent snapshot).
 */
void pulse_generations_get_many(pulse_generations_t *g, const char *const *tags, size_t ntags, uint64_t *out);

/**
 * Returns the text[] literal of `ntags` tags ("{\"a\",\"b\"}", every element double-quoted, '"' and '\\' escaped), the
 * parameter of pulse.tag_generations($1::text[]), from malloc; NULL when out of memory.
 */
char *pulse_generations_text_array(const char *const *tags, size_t ntags) PULSE_WUR;

/**
 * Returns the number of tags known.
 */
size_t pulse_generations_count(pulse_generations_t *g);

/* --- trust ---------------------------------------------------------------------------------------------------------- */

/**
 * Returns CLOCK_MONOTONIC in microseconds, the clock of every time below (and of the heartbeats' send times).
 */
uint64_t pulse_generations_now_us(void);

/**
 * Sets the longest time after the instant the map was last vouched for during which it is still trusted, in
 * microseconds; 0 (the default) means always trusted (no heartbeat, no bound). Call it before the event loops start.
 */
void pulse_generations_set_max_lag(pulse_generations_t *g, uint64_t max_lag_us);

/**
 * Records that the map holds every bump committed before `as_of_us` for the tags of the published routes. It only moves
 * forward (an older `as_of_us` changes nothing). Called by the catalog thread only, after it applied the notifications
 * that arrived before a heartbeat sent at `as_of_us`, or after a resync whose query was sent at `as_of_us`.
 */
void pulse_generations_vouch(pulse_generations_t *g, uint64_t as_of_us);

/**
 * Tells whether the map is trusted at `now_us` (pulse_generations_now_us() read after the request arrived): `now_us` is
 * less than max_lag after the instant last vouched for, or no max lag is set. Call it before reading the generations of a
 * key: the generations read after a 1 then hold every bump committed before now_us - max_lag.
 */
int pulse_generations_vouched(pulse_generations_t *g, uint64_t now_us);

/**
 * Returns the instant last vouched for (0: never), in microseconds of pulse_generations_now_us.
 */
uint64_t pulse_generations_vouched_as_of(pulse_generations_t *g);

/**
 * Returns how long, in microseconds, the map was not trusted between its creation and `now_us` (0 without a max lag).
 */
uint64_t pulse_generations_unverified_us(pulse_generations_t *g, uint64_t now_us);

#endif
