/*
 * cache.h: the semantics of the response cache, independent of HTTP: cache
 * keys, the stored value and its binary encoding, gzip, strong ETags and
 * If-None-Match, freshness (TTL, stale-while-revalidate, stale-if-error),
 * Cache-Control, single-flight of concurrent misses, and the two Redis
 * operations (fetch, store) on top of redis.h.
 *
 * How the request path uses it (rpc.c, steps 4 and 6):
 *   1. pulse_generations_get_many() for the endpoint's tags, then
 *      pulse_cache_key() over (tenant, endpoint, given arguments, tags and
 *      their generations);
 *   2. pulse_cache_fetch() the key (-1: Redis is down, go to step 3) and
 *      pulse_cache_classify() a HIT: FRESH → answer with the representation
 *      pulse_cache_select() picks (gzip or identity, each with its own ETag;
 *      304 when If-None-Match matches it); STALE → answer, and refresh
 *      in the background (as a flight leader, step 3); STALE_IF_ERROR → keep
 *      it, call the database, answer with it when the call fails; EXPIRED,
 *      MISS or UNAVAILABLE → call the database;
 *   3. before calling the database, pulse_cache_flight_join(): only the
 *      leader calls, the others wait for its pulse_cache_flight_finish();
 *   4. the leader builds the value with pulse_cache_entry_init() and
 *      pulse_cache_store()s it with PX pulse_cache_redis_ttl_ms().
 * Nothing here blocks: fetch and store are asynchronous commands of the
 * loop's Redis client.  Everything but the generations map (generations.h)
 * belongs to one event loop's thread.
 */
#ifndef PULSE_CACHE_H
#define PULSE_CACHE_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "redis.h"

/* prefix of every cache key; bump the version when the key derivation or the value encoding changes */
#define PULSE_CACHE_KEY_PREFIX "pulse:v1:"
/* bytes of the longest key pulse_cache_key writes, NUL included */
#define PULSE_CACHE_KEY_SIZE 128
/* bytes of a strong ETag written by pulse_cache_etag, quotes and NUL included */
#define PULSE_CACHE_ETAG_SIZE 35
/* bodies longer than this get a gzip variant in pulse_cache_entry_init */
#define PULSE_CACHE_GZIP_MIN 1024

/* One argument of a call; a NULL value is SQL NULL (different from an empty string). */
typedef struct pulse_cache_arg_t {
    const char *name;
    const char *value;
    size_t value_len;
} pulse_cache_arg_t;

/* A cached response.  In a decoded entry every pointer points into the encoded buffer. */
typedef struct pulse_cache_entry_t {
    int status;             /* HTTP status, normally 200 */
    uint64_t created_at_ms; /* wall clock (ms since the epoch) when the database answered */
    uint64_t ttl_ms;        /* freshness lifetime at creation */
    h2o_iovec_t content_type;
    h2o_iovec_t etag; /* strong, quoted: "<hex>" */
    h2o_iovec_t link; /* Link header value, or empty */
    h2o_iovec_t body;
    h2o_iovec_t gzip;  /* gzip (RFC 1952) of body, or empty when not worth it */
    h2o_iovec_t keyed; /* the keyed state of the call that made it (keyed.h), or empty: it depends on no keyed tag */
} pulse_cache_entry_t;

typedef enum {
    PULSE_CACHE_FRESH,          /* age < ttl: serve */
    PULSE_CACHE_STALE,          /* within stale-while-revalidate: serve, refresh in the background */
    PULSE_CACHE_STALE_IF_ERROR, /* within stale-if-error only: serve only when the database call fails */
    PULSE_CACHE_EXPIRED,        /* unusable */
} pulse_cache_freshness_t;

/**
 * Writes the cache key of one call into `buf` (at least PULSE_CACHE_KEY_SIZE bytes): PULSE_CACHE_KEY_PREFIX, the tenant
 * (bytes outside [A-Za-z0-9._-] percent-encoded; a tenant longer than 48 encoded bytes is replaced by "~" and a hash), ':'
 * and 32 hex digits of SHA-256 over a length-prefixed encoding of the tenant, `endpoint` (its name or fingerprint), the
 * arguments sorted by name (so their order in the request does not matter; NULL and "" differ) and the tags sorted by name
 * with their generations (`gens[i]` belongs to `tags[i]`). Two calls share a key only if every one of these is equal, so
 * tenants never share entries and bumping any tag's generation moves the call to a new key. Returns the key's length, or -1
 * when out of memory or more than 1024 arguments or tags are given.
 */
int pulse_cache_key(char *buf, const char *tenant, const char *endpoint, const pulse_cache_arg_t *args, size_t nargs,
                    const char *const *tags, const uint64_t *gens, size_t ntags) PULSE_WUR;

/**
 * Writes the strong ETag of `body` into `out` (PULSE_CACHE_ETAG_SIZE bytes): a quoted string of 32 hex digits of its
 * SHA-256, so equal bodies have equal tags on every proxy.
 */
void pulse_cache_etag(const void *body, size_t len, char *out);

/**
 * Compares two entity-tags (each with its optional "W/" prefix) by RFC 9110 8.8.3.2: with `strong`, both must be strong
 * and equal byte for byte; otherwise (weak comparison) the opaque tags must be equal whatever their W/ prefixes.
 */
bool pulse_cache_etag_equal(const char *a, size_t alen, const char *b, size_t blen, bool strong);

/**
 * Tells whether the If-None-Match (or, with `strong`, If-Match) field value `hdr` (`len` bytes, a comma-separated list
 * of entity-tags or "*") matches `etag`: true for "*" or when one listed tag compares equal (weak comparison unless
 * `strong`). For If-None-Match, true means answer 304. A malformed field value matches nothing.
 */
bool pulse_cache_etag_list_match(const char *hdr, size_t len, const char *etag, size_t etag_len, bool strong);

/* The representation of a cached entry a client gets (pulse_cache_select). */
typedef struct pulse_cache_repr_t {
    h2o_iovec_t body;  /* the identity body or its gzip variant */
    h2o_iovec_t etag;  /* the representation's strong ETag */
    bool gzip;         /* send Content-Encoding: gzip */
    bool not_modified; /* If-None-Match matches the representation: answer 304 */
} pulse_cache_repr_t;

/**
 * Picks the representation of `e` for a request with the given Accept-Encoding and If-None-Match field values (NULL when
 * absent): the gzip variant when the entry has one and Accept-Encoding allows gzip, else the identity body. The two have
 * different strong ETags (RFC 9110 8.8.3): the entry's ETag for the identity body, and for the gzip variant the same with
 * "-gzip" before the closing quote (in `pool`), so entries stored by any version of the proxy are served with the right
 * tag. not_modified is set when If-None-Match matches the picked representation's ETag (weak comparison).
 */
void pulse_cache_select(h2o_mem_pool_t *pool, const pulse_cache_entry_t *e, const char *accept_encoding, size_t ae_len,
                        const char *if_none_match, size_t inm_len, pulse_cache_repr_t *out);

/**
 * Tells whether an Accept-Encoding field value (`len` bytes; NULL: the header is absent) allows gzip (RFC 9110 12.5.3):
 * "gzip" or "x-gzip" with a q-value above 0, or "*" above 0 when gzip is not listed. Tokens are case-insensitive.
 */
bool pulse_cache_accepts_gzip(const char *hdr, size_t len);

/**
 * Gzips `len` bytes of `src` (RFC 1952, best speed) into a buffer from `pool` (`out`). Returns 0, or -1 when zlib fails.
 */
int pulse_cache_gzip(h2o_mem_pool_t *pool, const void *src, size_t len, h2o_iovec_t *out) PULSE_WUR;

/**
 * Fills `e` for a response the database just produced: `status`, `content_type`, `body` and `link` (may be empty) as
 * given (not copied), created_at_ms = `now_ms`, ttl_ms = `ttl_ms`, the strong ETag of the body and, when the body is
 * longer than PULSE_CACHE_GZIP_MIN bytes and gzip makes it smaller, its gzip variant; the ETag text and the gzip bytes
 * come from `pool`. Returns 0, or -1 when gzip failed (the entry is then still usable, without a gzip variant).
 */
int pulse_cache_entry_init(h2o_mem_pool_t *pool, pulse_cache_entry_t *e, int status, h2o_iovec_t content_type, h2o_iovec_t body,
                           h2o_iovec_t link, uint64_t now_ms, uint64_t ttl_ms) PULSE_WUR;

/**
 * Encodes `e` into a binary-safe string from `pool` (`out`), the value stored in Redis: a magic and version, the status,
 * timestamps and every field length-prefixed (big-endian). Returns 0, or -1 when a field is too long (content type, ETag
 * or link over 64 KiB, body over 4 GiB).
 */
int pulse_cache_entry_encode(h2o_mem_pool_t *pool, const pulse_cache_entry_t *e, h2o_iovec_t *out) PULSE_WUR;

/**
 * Decodes a value written by pulse_cache_entry_encode (`len` bytes at `buf`, e.g. a Redis reply) into `e`, whose
 * pointers then point into `buf`: copy what must outlive it. Returns 0, or -1 for anything else (another version, a
 * truncated or overlong value, a status outside 100..599): the caller treats that as a miss.
 */
int pulse_cache_entry_decode(const void *buf, size_t len, pulse_cache_entry_t *e) PULSE_WUR;

/**
 * Classifies an entry created at `created_at_ms` with freshness lifetime `ttl_ms`, at `now_ms`, given the endpoint
 * class's stale-while-revalidate (`swr_ms`) and stale-if-error (`sie_ms`) windows, both counted from the end of the
 * lifetime. An entry from the future (clock skew between proxies) has age 0.
 */
pulse_cache_freshness_t pulse_cache_classify(uint64_t created_at_ms, uint64_t ttl_ms, uint64_t swr_ms, uint64_t sie_ms,
                                             uint64_t now_ms);

/**
 * Returns the lifetime to give the key in Redis (SET ... PX): ttl + max(swr, sie), at least 1 ms.
 */
uint64_t pulse_cache_redis_ttl_ms(uint64_t ttl_ms, uint64_t swr_ms, uint64_t sie_ms);

/**
 * Returns the name of a freshness class ("fresh", "stale", "stale-if-error", "expired").
 */
const char *pulse_cache_freshness_name(pulse_cache_freshness_t f);

/**
 * Writes the Cache-Control value of a response served from `e` at `now_ms` into `buf` (`cap` bytes): "private" (answers
 * are per tenant), max-age = the seconds of freshness left (0 when stale), and stale-while-revalidate / stale-if-error in
 * seconds when not 0. Returns the length, or -1 when it does not fit.
 */
int pulse_cache_control(char *buf, size_t cap, const pulse_cache_entry_t *e, uint64_t swr_ms, uint64_t sie_ms, uint64_t now_ms);

/* --- Redis storage ------------------------------------------------------------------------------------------------ */

typedef enum {
    PULSE_CACHE_LOOKUP_HIT,         /* entry holds the decoded value */
    PULSE_CACHE_LOOKUP_MISS,        /* no value, or one that does not decode (another version, corrupt) */
    PULSE_CACHE_LOOKUP_UNAVAILABLE, /* Redis did not answer (timeout, connection lost) or answered an error */
} pulse_cache_lookup_t;

/*
 * The callback of pulse_cache_fetch: `entry` (HIT only) points into the Redis reply and is valid during the call only;
 * copy (e.g. into req->pool) what must outlive it.
 */
typedef void (*pulse_cache_fetch_cb)(void *data, pulse_cache_lookup_t status, const pulse_cache_entry_t *entry);

/**
 * GETs `key` from Redis and decodes it. Returns 0 when the command was sent: `cb` then runs exactly once, on the loop,
 * never from inside this call. Returns -1 when it was not (the breaker is open, too many commands pending, out of
 * memory): treat that as a miss and call the database. A small context (callback and data) is allocated until `cb` runs.
 */
int pulse_cache_fetch(pulse_redis_t *redis, const char *key, pulse_cache_fetch_cb cb, void *data) PULSE_WUR;

/**
 * Encodes `e` (into `pool`) and SETs it under `key` with PX `px_ms` (see pulse_cache_redis_ttl_ms); fire-and-forget: the
 * value is copied into the connection's buffer before it returns, its outcome only counted in the client's stats.
 * Returns 0 when sent, -1 otherwise (the breaker is open, or the entry cannot be encoded).
 */
int pulse_cache_store(pulse_redis_t *redis, h2o_mem_pool_t *pool, const char *key, const pulse_cache_entry_t *e,
                      uint64_t px_ms) PULSE_WUR;

/*
 * The flight lock: across event loops and proxies, the first miss of a key takes "<key>:lock" (SET NX PX) and calls the
 * database; a miss that finds the lock taken polls the key until the entry appears or the lock's time is up. The
 * callback gets 1 (taken: call the database), 0 (someone else holds it) or -1 (Redis did not answer: call the database).
 */
typedef void (*pulse_cache_lock_cb)(void *data, int taken);

/**
 * Tries to take the flight lock of `key` for `px_ms`, naming `owner` (e.g. the request id) as its holder. Returns 0 when
 * sent (`cb` runs once, on the loop, never from inside this call), -1 when not (treat as -1: call the database).
 */
int pulse_cache_lock(pulse_redis_t *redis, const char *key, const char *owner, uint64_t px_ms, pulse_cache_lock_cb cb,
                     void *data) PULSE_WUR;

/**
 * Releases the flight lock of `key` if `owner` still holds it (one atomic script: a lock that expired and was taken by
 * another request is left alone); fire-and-forget.
 */
void pulse_cache_unlock(pulse_redis_t *redis, const char *key, const char *owner);

/* --- single-flight ------------------------------------------------------------------------------------------------ */

typedef struct pulse_cache_flights_t pulse_cache_flights_t;
typedef struct pulse_cache_waiter_t pulse_cache_waiter_t;

/*
 * Called once per waiter by pulse_cache_flight_finish with the leader's `result` (opaque here: rpc.c passes its
 * database result; NULL means the leader gave up and the waiter should make its own call), valid during the call only.
 */
typedef void (*pulse_cache_flight_cb)(void *data, const void *result);

/**
 * Creates the single-flight table of one event loop. Returns NULL when out of memory.
 */
pulse_cache_flights_t *pulse_cache_flights_create(void) PULSE_WUR;

/**
 * Frees the table; flights still open are finished with a NULL result first, so every waiter's callback has run when
 * it returns.
 */
void pulse_cache_flights_destroy(pulse_cache_flights_t *t);

/**
 * Joins the flight of `key`. When no flight is open, opens one and returns 1: the caller is the leader, makes the one
 * database call and must call pulse_cache_flight_finish(key) exactly once on every path (cb is not used). Otherwise
 * queues the caller as a waiter and returns 0: `cb(data, result)` runs once from the leader's pulse_cache_flight_finish,
 * unless the waiter leaves first with pulse_cache_flight_leave(*waiter). Returns -1 when out of memory (the caller then
 * makes its own call). The key is copied.
 */
int pulse_cache_flight_join(pulse_cache_flights_t *t, const char *key, pulse_cache_flight_cb cb, void *data,
                            pulse_cache_waiter_t **waiter) PULSE_WUR;

/**
 * Closes the flight of `key` and runs every waiter's callback with `result`, in the order they joined. The flight is
 * removed before the first callback, so a callback that joins `key` again opens a new flight. Returns the number of
 * waiters woken, or -1 when no flight of `key` is open.
 */
int pulse_cache_flight_finish(pulse_cache_flights_t *t, const char *key, const void *result);

/**
 * Removes a waiter whose request went away before its flight finished; its callback will not run. Only valid before the
 * callback ran.
 */
void pulse_cache_flight_leave(pulse_cache_waiter_t *waiter);

/**
 * Returns the number of open flights, and in `*nwaiters` (when not NULL) the number of waiters across them.
 */
size_t pulse_cache_flights_count(pulse_cache_flights_t *t, size_t *nwaiters);

#endif
