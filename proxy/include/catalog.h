/*
 * catalog.h: the catalog thread.  It keeps one blocking libpq connection
 * (never on an event loop) that LISTENs on pulse_reload, loads the endpoint
 * catalog into the router at start, on every notification, after every
 * reconnect and on request (SIGHUP), and tells /ready whether PostgreSQL
 * answers.  The same connection LISTENs on pulse_invalidate and keeps the
 * cache tag generations (generations.h) up to date: each notification
 * raises one tag, and after every (re)connect and catalog load the
 * generations of all the routes' tags are read with pulse.tag_generations.
 */
#ifndef PULSE_CATALOG_H
#define PULSE_CATALOG_H

#include "config.h"
#include "generations.h"
#include "replicas.h"

/**
 * Starts the catalog thread on `conninfo`, feeding `gens` (NULL: no cache, pulse_invalidate is ignored) and stamping
 * each generation for `replicas` before it is applied (NULL: none). The first load is attempted before returning (so a
 * proxy that can reach its database starts with its routes); failures are logged and retried every half second.
 * Returns 0, or -1 when the thread cannot be created.
 */
int pulse_catalog_start(const char *conninfo, pulse_generations_t *gens, pulse_replicas_t *replicas) PULSE_WUR;

/**
 * Stops the catalog thread and closes its connection.
 */
void pulse_catalog_stop(void);

/**
 * Asks the catalog thread to reload the routes soon (within a quarter second). Async-signal-safe.
 */
void pulse_catalog_request_reload(void);

/**
 * Tells whether the catalog connection is up and the routes are loaded.
 */
int pulse_catalog_ready(void);

#endif
