/*
 * live.h: live endpoints (README: Live endpoints).  A GET of a read or
 * search endpoint with tags, asked for with `Accept: text/event-stream`,
 * becomes a server-sent event stream (WHATWG HTML 9.2): first the current
 * result, then a new one each time a committed write bumps one of the
 * call's tags and the result really changed (its ETag differs).
 *
 * A subscription is keyed like a cache entry without its generations:
 * tenant, endpoint and arguments (live_key_t).  Each proxy keeps its keys
 * in memory, indexed by the tags their calls depend on: the route's tags
 * (table tags and the epochs of its keyed templates) from the start, and
 * the keyed value tags of pulse.keyed_state once a first result said which
 * they are.  The catalog thread hands every pulse_invalidate notification
 * to pulse_live_notify, which marks the keys of the tag dirty in O(1) and
 * wakes the loop that owns each key; that loop makes one database call per
 * dirty key (at most one per live_min_interval_ms, the last state always
 * refreshed), in the subscribers' tenant scope (RLS decides as for a GET),
 * fills the cache as a miss does, and hands a changed result to every loop
 * that has streams of the key.  Streams then write the latest result they
 * have not sent; a slow stream skips the intermediate ones (conflation).
 *
 * Threads: the hub (keys, tag index, counts) is process-wide behind one
 * mutex; a pulse_live_loop_t belongs to one event loop, and loops wake each
 * other through h2o_multithread messages on their contexts' queues.
 * Functions below say from which thread they may be called.
 */
#ifndef PULSE_LIVE_H
#define PULSE_LIVE_H

#include <stddef.h>
#include "config.h"
#include "generations.h"
#include "keyed.h"

typedef struct pulse_live_loop_t pulse_live_loop_t;
struct pulse_worker_t;

/**
 * Sets up the hub for `nloops` event loops, fed by the process's generations map and keyed tags (both NULL: no
 * invalidation channel, streams are refused with 503). Call it once, before the catalog thread and the loops start.
 * Returns 0, or -1 when out of memory.
 */
int pulse_live_init(int nloops, pulse_generations_t *gens, pulse_keyed_t *keyed) PULSE_WUR;

/**
 * Tells whether streams can be served: the hub has an invalidation channel to listen to. Any thread.
 */
int pulse_live_enabled(void);

/**
 * Frees the hub and every key left; call it after every loop stopped and the catalog thread ended.
 */
void pulse_live_destroy(void);

/**
 * A pulse_invalidate notification (its payload, "tag:generation", `len` bytes) was applied to the generations map and
 * the keyed tags: marks every key that depends on the tag dirty and wakes its owner. Called by the catalog thread after
 * pulse_generations_apply_notify (so a key indexed after this call's lookup sees the bump in the keyed map). `lsn`: the
 * stamp of the notification (an LSN read on the primary after it arrived, UINT64_MAX unknown, 0 without replicas): the
 * key's next refresh goes to a replica only when the replica replayed it (replicas.h). `commit_us`: when the bump's
 * transaction committed (the pulse_commit notification before it, microseconds since 1970, 0 unknown): the push
 * latency of the keys it marks is counted from it (from the notification's arrival when unknown or in the future).
 */
void pulse_live_notify(const char *payload, size_t len, uint64_t lsn, uint64_t commit_us);

/**
 * The catalog thread read the generations of every route's tag again (after a (re)connect of the listening
 * connection, a lapse of the channel, or a catalog load): notifications may have been lost, so every key is refreshed
 * once.
 */
void pulse_live_resynced(void);

/**
 * Creates the live state of worker `w` (its loop, context and pool must exist), reading live_min_interval_ms from
 * `conf`. On the worker's thread. Returns NULL when out of memory.
 */
pulse_live_loop_t *pulse_live_loop_create(struct pulse_worker_t *w, const pulse_config_t *conf) PULSE_WUR;

/**
 * The worker is shutting down: no more refreshes or deliveries on this loop, every stream of the loop ends (a started
 * one with its last chunk, so that the client reconnects elsewhere; one not started yet with a 503). On the worker's
 * thread, before its pool is destroyed.
 */
void pulse_live_loop_stop(pulse_live_loop_t *l);

/**
 * Frees the loop's live state (after pulse_live_loop_stop and the loop ran a few more turns); NULL is ignored.
 */
void pulse_live_loop_destroy(pulse_live_loop_t *l);

#endif
