/*
 * channel.h: the health of the invalidation channel (the catalog thread's
 * LISTEN connection, catalog.h): a heartbeat that travels through the
 * channel itself, and the libpq helpers of the connections involved.
 *
 * The heartbeat thread sends `SELECT pg_notify(<channel>, <seq>)` every
 * `heartbeat` from a connection of its own, on a channel whose name only
 * this process knows and LISTENs to, and records each beat's send time
 * (taken before the query leaves) in a ring.  PostgreSQL queues
 * notifications in commit order (the NOTIFY queue lock is held from
 * pre-commit until the commit is recorded) and a listening session delivers
 * them in queue order, so when the catalog thread receives beat k it has
 * already received every pulse_invalidate notification of every
 * transaction whose COMMIT returned before beat k was sent: it vouches for
 * the generations map up to that send time (generations.h).  No beat, no
 * vouching: a connection that is down, frozen, slow or reconnecting stops
 * the proxy from trusting its map after heartbeat + delivery, whatever the
 * cause.
 *
 * A beat's payload is only a sequence number; one that is not in the ring
 * (forged, or too old) is ignored, and a forged copy of a beat that was sent
 * can only arrive after it was sent, which vouches for nothing false.
 */
#ifndef PULSE_CHANNEL_H
#define PULSE_CHANNEL_H

#include <libpq-fe.h>
#include <stdint.h>
#include "config.h"
#include "keyed.h"

/* beats remembered; a beat older than this many intervals is ignored when it arrives */
#define PULSE_CHANNEL_RING 64

typedef struct pulse_channel_t pulse_channel_t;

typedef struct pulse_channel_stats_t {
    uint64_t sent;     /* beats whose NOTIFY committed */
    uint64_t failed;   /* beats whose query failed or took longer than the reconnect time */
    uint64_t received; /* beats that came back on the listening connection */
    uint64_t missed;   /* beats not received within `delivery` of being sent (some arrive later all the same) */
} pulse_channel_stats_t;

/**
 * Creates the beat bookkeeping of one process: a channel name unique to it ("pulse_heartbeat_<pid>_<random hex>"),
 * `delivery_us` the time a beat may take from its send to its arrival before it counts as missed. Nothing runs yet.
 * Returns NULL when out of memory.
 */
pulse_channel_t *pulse_channel_create(uint64_t delivery_us) PULSE_WUR;

/**
 * Stops the heartbeat thread if it runs, closes its connection and frees everything.
 */
void pulse_channel_destroy(pulse_channel_t *c);

/**
 * Starts the heartbeat thread: one beat every `interval_us` on a connection to `conninfo` (with synchronous_commit off,
 * application_name "pulse-proxy heartbeat"); a beat that has not committed within `timeout_us` fails and the connection is
 * opened again (at most every half second). Returns 0, or -1 when the thread cannot be created.
 */
int pulse_channel_start(pulse_channel_t *c, const char *conninfo, uint64_t interval_us, uint64_t timeout_us) PULSE_WUR;

/**
 * Returns the channel name to LISTEN to (an identifier that needs no quoting).
 */
const char *pulse_channel_name(const pulse_channel_t *c);

/**
 * Records a new beat about to be sent at `now_us` and returns its sequence number (the payload to send, in decimal).
 */
uint64_t pulse_channel_beat_begin(pulse_channel_t *c, uint64_t now_us);

/**
 * Records the outcome of beat `seq`: its NOTIFY committed at `now_us` (ok) or failed.
 */
void pulse_channel_beat_end(pulse_channel_t *c, uint64_t seq, uint64_t now_us, int ok);

/**
 * A notification on the channel arrived at `now_us` with `payload`. Returns 1 and stores the beat's send time in
 * `*sent_us` when it is a beat of the ring not received before; 0 otherwise (unknown, too old, received already,
 * malformed).
 */
int pulse_channel_beat_received(pulse_channel_t *c, const char *payload, uint64_t now_us, uint64_t *sent_us) PULSE_WUR;

/**
 * Counts the beats sent before `now_us - delivery` that have not arrived as missed (once each).
 */
void pulse_channel_expire(pulse_channel_t *c, uint64_t now_us);

/**
 * Tells whether the listening connection looks frozen: a beat sent after `since_us` (when its LISTEN took effect)
 * committed at least `timeout_us` before `now_us` and has not arrived. The caller then opens it again.
 */
int pulse_channel_overdue(pulse_channel_t *c, uint64_t since_us, uint64_t now_us, uint64_t timeout_us);

/**
 * Copies the counters.
 */
void pulse_channel_stats(pulse_channel_t *c, pulse_channel_stats_t *out);

/* --- libpq helpers of the channel's connections ------------------------------------------------------------------- */

/**
 * Opens a blocking connection to `conninfo` (a connection string or URI) with defaults that the string may override:
 * connect_timeout 5 s, TCP keepalives (idle 5 s, interval 2 s, 3 probes) and tcp_user_timeout 10 s, so that a dead peer
 * is noticed even while nothing is sent. Returns NULL on failure, with the reason in `err` (`errlen` bytes).
 */
PGconn *pulse_channel_connect(const char *conninfo, char *err, size_t errlen);

/* called with the connection whenever libpq may have read notifications */
typedef void (*pulse_channel_notify_cb)(PGconn *pg, void *arg);

/**
 * Runs `sql` (with `nparams` text parameters, or as a simple query that may hold several statements when 0) and waits
 * for its end at most `timeout_us`, without blocking longer: every time input arrives, and once more at the end,
 * `on_notify` (may be NULL) is called so that notifications libpq read along with the answer are acted on at once
 * instead of waiting in its buffer for the next byte on the socket. Returns the first failed result, or else the last
 * one (PQclear it); NULL when the connection broke or the time ran out (the connection is then unusable: close it).
 */
PGresult *pulse_channel_exec(PGconn *pg, const char *sql, int nparams, const char *const *params, uint64_t timeout_us,
                             pulse_channel_notify_cb on_notify, void *arg);

/* The state and counters of the catalog thread's invalidation channel (pulse_catalog_channel_stats in catalog.h), here
   so that /metrics can render them without depending on the catalog. */
typedef enum {
    PULSE_CATALOG_CHANNEL_OFF,        /* no cache: the channel is not listened to */
    PULSE_CATALOG_CHANNEL_DOWN,       /* the listening connection is down or being opened */
    PULSE_CATALOG_CHANNEL_UNVERIFIED, /* connected, but the map is not vouched for: no cache hits */
    PULSE_CATALOG_CHANNEL_VERIFIED,   /* the map is vouched for: hits are served */
    PULSE_CATALOG_CHANNEL_UNCHECKED,  /* connected, no heartbeat configured: hits are served without a bound */
    PULSE_CATALOG_CHANNEL_STATES
} pulse_catalog_channel_state_t;

typedef struct pulse_catalog_channel_stats_t {
    pulse_catalog_channel_state_t state;
    double lag_seconds;        /* since the instant the map was last vouched for (0 without a heartbeat) */
    double unverified_seconds; /* total time the map was not trusted */
    uint64_t beats_sent, beats_failed, beats_received, beats_missed;
    uint64_t resyncs;    /* successful reads of pulse.tag_generations by the catalog thread */
    uint64_t reconnects; /* listening connections opened after the first */
    pulse_keyed_stats_t keyed;
} pulse_catalog_channel_stats_t;

/**
 * Returns the name of a channel state: "off", "down", "unverified", "verified", "unchecked".
 */
const char *pulse_catalog_channel_state_name(pulse_catalog_channel_state_t s);

#endif
