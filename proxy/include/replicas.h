/*
 * replicas.h: read replicas.  PostgreSQL's own streaming replicas (made with
 * pg_basebackup -R) listed in replica_urls answer the read and search
 * calls; write and batch calls, and any call no replica is fit for, go to
 * the primary (pg_url).
 *
 * - Lag (replicas_monitor.c): one thread per server measures, every
 *   replica_check_ms, the primary's flushed WAL position and each replica's
 *   replay position, and estimates each replica's lag in time (an upper
 *   bound: see pulse_replicas_lag_ms) and bytes.  The loops read the
 *   figures (atomics) and never wait for them.
 * - Routing (replicas.c): a read goes to a replica that is up (its monitor
 *   and this loop's pool to it), within replica_max_lag_ms, and has replayed
 *   the call's required LSN: the client's token (Pulse-Min-LSN, or the
 *   cookie) and, for a cache fill, the stamp of the endpoint's cache tags
 *   (below).  Without such a replica a call with a required LSN waits up to
 *   replica_wait_ms for one, then goes to the primary; a call without one
 *   goes to the primary at once.  A replica that fails a call in a way the
 *   primary may not (connection lost, shutting down, recovery conflict,
 *   read-only transaction, ...) has the call run again on the primary: a
 *   replica never causes an error.
 * - Read-your-writes: a write reads pg_current_wal_insert_lsn() in the same
 *   pipeline after its COMMIT (>= its commit record's end) and answers it in
 *   Pulse-LSN (and the cookie); a read carrying it runs where it is
 *   replayed.  Such a read skips the response cache: another proxy's cache
 *   may not know the write's generations yet.
 * - Cache fills: a tag generation is learned from the primary (NOTIFY, the
 *   resync, a write's after-statement) before a replica has replayed it, so
 *   every generation is first stamped with an LSN read on the primary after
 *   it (an upper bound of the bump's commit); a cache fill goes to a replica
 *   only when it replayed the largest stamp of the endpoint's tags.  As a
 *   safety net a fill on a replica also reads pulse.tag_generations of those
 *   tags in its transaction, before the call (a later snapshot sees at least
 *   as much); when one is below the process's generation the answer is
 *   served but not stored.
 *
 * Threads: pulse_replicas_t is process-wide (the monitor threads write its
 * figures, any thread reads them; stamps are a thread-safe generations map);
 * a pulse_replicas_loop_t belongs to one event loop.  Functions taking a
 * pulse_replicas_loop_t run on its loop; every one accepts NULL (no replicas
 * configured: everything goes to the primary).
 */
#ifndef PULSE_REPLICAS_H
#define PULSE_REPLICAS_H

#include <h2o.h>
#include <libpq-fe.h>
#include <stdint.h>
#include "config.h"
#include "generations.h"
#include "pgpool.h"
#include "replicas_monitor.h"
#include "router.h"

typedef struct pulse_replicas_loop_t pulse_replicas_loop_t;
typedef struct pulse_replicas_waiter_t pulse_replicas_waiter_t;

/* Why a routed call went where it went (pulse_replica_routing_total). */
typedef enum {
    PULSE_REPLICAS_FRESH,           /* a replica fit at once */
    PULSE_REPLICAS_LAGGING,         /* replicas up, none within replica_max_lag_ms: the primary */
    PULSE_REPLICAS_DOWN,            /* no replica up: the primary */
    PULSE_REPLICAS_MIN_LSN_WAIT,    /* waited for a replica to replay the required LSN, and got one */
    PULSE_REPLICAS_MIN_LSN_PRIMARY, /* no replica replayed it within replica_wait_ms: the primary */
    PULSE_REPLICAS_DECISIONS
} pulse_replicas_decision_t;

/* What one call's routing decided; in the request, zeroed before the first pulse_replicas_route. */
typedef struct pulse_replicas_pick_t {
    int decided;
    int server;       /* 0: the primary, i: replica i (1-based) */
    int retried;      /* ran on a replica that failed; now on the primary */
    uint64_t min_lsn; /* the client's token (Pulse-Min-LSN or the cookie); 0: none */
    pulse_replicas_waiter_t *_waiter;
} pulse_replicas_pick_t;

/* Per-loop counters (pulse_replicas_loop_stats), indexed by server (0: the primary). */
typedef struct pulse_replicas_stats_t {
    size_t nservers;
    uint64_t calls[PULSE_REPLICAS_MAX + 1];   /* calls sent to each server */
    uint64_t retries[PULSE_REPLICAS_MAX + 1]; /* calls a replica failed and the primary ran again */
    uint64_t decisions[PULSE_REPLICAS_DECISIONS];
    uint64_t fills_stored, fills_refused; /* cache fills answered by a replica: stored, or refused by the check */
} pulse_replicas_stats_t;

/* replicas.c --------------------------------------------------------------------------------------------------------- */

/**
 * Creates the state of one event loop: a pool of `conf->pool_size` connections to each replica on `loop` (`id` in
 * log messages); `primary` is the loop's primary pool. Returns NULL for `rs` NULL, or when out of memory.
 */
pulse_replicas_loop_t *pulse_replicas_loop_create(pulse_replicas_t *rs, int id, h2o_loop_t *loop, const pulse_config_t *conf,
                                                  pulse_pgpool_t *primary);

/**
 * Answers the calls still waiting for a replica (they go to the primary), closes the replicas' pools and frees `rl`.
 */
void pulse_replicas_loop_destroy(pulse_replicas_loop_t *rl);

/**
 * Returns the process-wide state of a loop's (NULL for NULL).
 */
pulse_replicas_t *pulse_replicas_of(pulse_replicas_loop_t *rl);

/**
 * Reads a request's token into `pick->min_lsn`: the largest of its Pulse-Min-LSN headers, and the cookie `cookie`
 * (NULL or "": none) when it holds a valid LSN (an invalid cookie is ignored). Returns 0, or -1 with a message for a 400
 * in `*err` when a Pulse-Min-LSN header is not an LSN ("X/Y", 1 to 8 hexadecimal digits each).
 */
int pulse_replicas_read_token(h2o_req_t *req, const char *cookie, pulse_replicas_pick_t *pick, const char **err) PULSE_WUR;

/**
 * Decides where a call of `route` runs, once (a decided pick returns 0 at once): writes and batches on the primary;
 * reads and searches as described above, `cache_fill` telling whether the answer would be stored in the cache (its tags'
 * stamps are then required). Returns 0 when `pick` is decided, 1 when the call waits for a replica: `cb(data)` then runs
 * on the loop once it is decided (never from within this call).
 */
int pulse_replicas_route(pulse_replicas_loop_t *rl, pulse_replicas_pick_t *pick, const pulse_config_t *conf,
                         const pulse_route_t *route, int cache_fill, void (*cb)(void *), void *data);

/**
 * Forgets a waiting pick (its request went away); a no-op otherwise.
 */
void pulse_replicas_cancel(pulse_replicas_pick_t *pick);

/**
 * Returns the pool of the decided `pick` (`primary` for NULL `rl`) and counts the call. Completes `q` for the server:
 * a cache fill on a replica reads its tags' generations first (before_sql); a write reads its LSN after its COMMIT
 * (after_sql: its second column; the caller's after_sql, when set, must be PULSE_REPLICAS_AFTER_WRITE_SQL). The
 * strings put into `q` are from `pool`.
 */
pulse_pgpool_t *pulse_replicas_pool(pulse_replicas_loop_t *rl, const pulse_replicas_pick_t *pick, pulse_pgpool_t *primary,
                                    const pulse_route_t *route, int cache_fill, pulse_pgquery_t *q, h2o_mem_pool_t *pool);

/* The catalog's resync: the tags' generations and the LSN to stamp them with. */
#define PULSE_REPLICAS_TAG_GENERATIONS_SQL "SELECT pulse.tag_generations($1::text[])::text, pg_current_wal_insert_lsn()::text"

/* The after-statement of a write: what it bumped (pulse.last_bumps), and its LSN (replicas.c reads it). */
#define PULSE_REPLICAS_AFTER_WRITE_SQL "SELECT pulse.last_bumps(), pg_current_wal_insert_lsn()::text"

/**
 * Tells whether a call that ran on a replica should run again on the primary: it failed to be queued (`res` NULL) or
 * with a status or SQLSTATE the primary may not fail with. Then `pick` is switched to the primary (once) and the retry
 * counted; returns 1. Returns 0 otherwise.
 */
int pulse_replicas_retry(pulse_replicas_loop_t *rl, pulse_replicas_pick_t *pick, const pulse_pgresult_t *res);

/**
 * After a successful write or batch (`res` PULSE_PG_OK with the LSN of its after-statement): stamps the route's tags
 * with the LSN, before the caller applies their generations, and adds `Pulse-LSN` (and the cookie
 * `conf->replica_lsn_cookie` when set) to the response. A no-op for reads or without an LSN.
 */
void pulse_replicas_wrote(pulse_replicas_loop_t *rl, h2o_req_t *req, const pulse_config_t *conf, const pulse_route_t *route,
                          const pulse_pgresult_t *res);

/**
 * Tells whether the answer `res` of a cache fill may be stored: always when it came from the primary; from a replica
 * only when the generations it read before the call (res->before) are at least the process's current generations of
 * the route's tags. Counts the replica's fills.
 */
int pulse_replicas_may_store(pulse_replicas_loop_t *rl, const pulse_replicas_pick_t *pick, const pulse_route_t *route,
                             const pulse_pgresult_t *res);

/**
 * Returns the name of the server of a decided pick ("primary", "replica1", ...).
 */
const char *pulse_replicas_server_name(const pulse_replicas_loop_t *rl, const pulse_replicas_pick_t *pick);

/**
 * Stamps the tags of `text` (`len` bytes of "tag:generation" lines: pulse.last_bumps, or pulse_invalidate payloads one
 * per line) with `lsn` (the text of a pg_lsn; NULL or invalid: nothing happens); keyed value tags are skipped (no cache
 * key holds them, keyed.h).
 */
void pulse_replicas_stamp_bumps(pulse_replicas_t *rs, const char *text, size_t len, const char *lsn);

/**
 * Stamps `ntags` tags with `lsn` (the text of a pg_lsn; NULL or invalid: nothing happens).
 */
void pulse_replicas_stamp(pulse_replicas_t *rs, const char *const *tags, size_t ntags, const char *lsn);

/**
 * Returns the largest stamp of `ntags` tags (0: none).
 */
uint64_t pulse_replicas_required_lsn(pulse_replicas_t *rs, const char *const *tags, size_t ntags);

/**
 * Copies the loop's counters into `out`.
 */
void pulse_replicas_loop_stats(const pulse_replicas_loop_t *rl, pulse_replicas_stats_t *out);

/**
 * Writes the replicas member of /ready's body, `,"replicas":[{...},...]`, into `buf` (`cap` bytes, NUL-terminated);
 * returns its length (0 for NULL `rs`). `*all_up` is set to whether every replica is up.
 */
size_t pulse_replicas_ready_json(const pulse_replicas_t *rs, char *buf, size_t cap, int *all_up);

/**
 * Tells whether the text of pulse.tag_generations(tags) (`len` bytes, "{g1,...}") has, for each of the `ntags` tags, a
 * generation at least `gens[i]`. Returns 1, 0, or -1 when it is malformed or has another number of elements.
 */
int pulse_replicas_generations_cover(const char *text, size_t len, const uint64_t *gens, size_t ntags);

/* What pulse_replicas_choose sees of one replica. */
typedef struct pulse_replicas_view_t {
    int usable;      /* up (monitor) with connections up on this loop */
    int64_t lag_ms;  /* -1: unknown */
    uint64_t replay; /* replay LSN */
    int load;        /* calls running or queued on this loop's pool */
} pulse_replicas_view_t;

/**
 * The routing rule, on a snapshot of `n` replicas: returns the index of the least loaded usable replica within
 * `max_lag_ms` that replayed `required` (ties: the first after `rr`, round robin), or -1 and the reason in `*why`
 * (PULSE_REPLICAS_DOWN: none usable; PULSE_REPLICAS_LAGGING: none within the lag; PULSE_REPLICAS_MIN_LSN_PRIMARY: none
 * replayed `required`).
 */
int pulse_replicas_choose(const pulse_replicas_view_t *v, size_t n, int64_t max_lag_ms, uint64_t required, unsigned rr,
                          pulse_replicas_decision_t *why);

#endif
