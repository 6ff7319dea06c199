/*
 * catalog.h: the catalog thread.  It keeps one blocking libpq connection
 * (never on an event loop) that LISTENs on pulse_reload, loads the endpoint
 * catalog into the router at start, on every notification, after every
 * reconnect and on request (SIGHUP), and tells /ready whether PostgreSQL
 * answers.  The same connection LISTENs on pulse_invalidate and keeps the
 * cache tag generations (generations.h) up to date: each notification
 * raises one tag, and after every (re)connect, before every catalog load is
 * published and whenever the channel lost its heartbeat, the generations of
 * all the routes' tags are read with pulse.tag_generations.  It also
 * LISTENs to this process's heartbeat (channel.h) and vouches for the
 * generations map as the beats come back.
 */
#ifndef PULSE_CATALOG_H
#define PULSE_CATALOG_H

#include <stdint.h>
#include "channel.h"
#include "config.h"
#include "generations.h"
#include "keyed.h"
#include "replicas.h"

/**
 * Starts the catalog thread on `conf->pg_control_url`, feeding `gens` and `keyed` (NULL: no cache, pulse_invalidate is
 * ignored and no heartbeat runs; `keyed` forgets everything at every (re)connect and gets its coverage snapshots from this
 * connection, keyed.h), and stamping each generation for `replicas` before it is applied (NULL: none; replicas.h). With
 * a cache and `conf->invalidation_heartbeat_ms` > 0 it also starts the heartbeat (channel.h)
 * and sets the map's max lag to invalidation_heartbeat_ms + invalidation_delivery_ms. The first load is attempted
 * before returning (so a proxy that can reach its database starts with its routes); failures are logged and retried
 * every half second. Returns 0, or -1 when a thread cannot be created.
 */
int pulse_catalog_start(const pulse_config_t *conf, pulse_generations_t *gens, pulse_keyed_t *keyed,
                        pulse_replicas_t *replicas) PULSE_WUR;

/**
 * Stops the catalog thread and the heartbeat, and closes their connections.
 */
void pulse_catalog_stop(void);

/**
 * Asks the catalog thread to reload the routes soon (within a quarter second). Async-signal-safe.
 */
void pulse_catalog_request_reload(void);

/**
 * Tells whether the routes have been loaded from the database. Losing the listening connection afterwards does not
 * change it (the proxy still answers, from the database: see pulse_catalog_channel_state).
 */
int pulse_catalog_ready(void);

/* The extension version whose pulse.endpoints this proxy reads (PULSE_ROUTER_CATALOG_SQL). */
#define PULSE_EXTENSION_VERSION "1.2"

/* The longest problem pulse_catalog_problem gives, with its terminating NUL. */
#define PULSE_CATALOG_PROBLEM_MAX 320

/**
 * Why the routes could not be read from the database, in words a DBA acts on ("the pulse extension is version 1.1,
 * this proxy needs 1.2: ALTER EXTENSION pulse UPDATE", "... not installed ...", or the SQL error), into `buf` (cut to
 * `len`, no quotes or backslashes). Returns 1 when there is such a problem, 0 when the last read succeeded (or none was
 * tried). Safe from any thread.
 */
int pulse_catalog_problem(char *buf, size_t len);

/**
 * Returns the state of the invalidation channel now. Safe from any thread.
 */
pulse_catalog_channel_state_t pulse_catalog_channel_state(void);

/**
 * Fills `out` with the channel's state and counters (for /metrics). Safe from any thread.
 */
void pulse_catalog_channel_stats(pulse_catalog_channel_stats_t *out);

#endif
