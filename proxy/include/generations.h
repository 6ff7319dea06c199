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
 */
#ifndef PULSE_GENERATIONS_H
#define PULSE_GENERATIONS_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"

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
 * Applies one pulse_invalidate payload: pulse_generations_parse then pulse_generations_set. Returns what the latter
 * returns, or -1 for a malformed payload (the map is then unchanged).
 */
int pulse_generations_apply_notify(pulse_generations_t *g, const char *payload, size_t len) PULSE_WUR;

/**
 * Applies the result of `SELECT pulse.tag_generations($1)` for `ntags` tags: `text` (`len` bytes) is the text form of
 * the bigint[] it returns, "{g1,g2,...}" with one non-negative generation per tag in the same order. Each tag is raised
 * as pulse_generations_set does (0 means never bumped and changes nothing). The whole text is checked first: returns -1
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

#endif
