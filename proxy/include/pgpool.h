/*
 * pgpool.h: a pool of non-blocking libpq connections attached to one h2o
 * event loop.  Each call runs as one pipeline (libpq pipeline mode) in one
 * implicit transaction: the request's settings (tenant, request id,
 * statement_timeout) are applied with set_config(..., true), then the
 * endpoint's prepared statement runs, then Sync.
 */
#ifndef PULSE_PGPOOL_H
#define PULSE_PGPOOL_H

#include <h2o.h>
#include "config.h"

typedef struct pulse_pgpool_t pulse_pgpool_t;
typedef struct pulse_pgjob_t pulse_pgjob_t;

typedef enum {
    PULSE_PG_OK,          /* body holds the result (body == NULL: SQL NULL) */
    PULSE_PG_ERROR,       /* the server raised an error: sqlstate, message */
    PULSE_PG_UNAVAILABLE, /* no connection to the server, or it broke during the call */
    PULSE_PG_BUSY,        /* the queue is full, or no connection became free in time */
} pulse_pgstatus_t;

typedef struct pulse_pgresult_t {
    pulse_pgstatus_t status;
    const char *sqlstate; /* PULSE_PG_ERROR */
    const char *message;  /* the server's primary message, or why the call did not run */
    const char *body;     /* PULSE_PG_OK: the first column of the one row; valid during the callback only */
    size_t body_len;
    const char *state; /* PULSE_PG_OK: the second column, when the call has one and it is not NULL (a keyed call's
                          pulse.keyed_state); valid during the callback only */
    size_t state_len;
    const char *after; /* the text of pulse_pgquery_t.after_sql's first column (NULL when none, or it failed); valid during the
                          callback only */
    size_t after_len;
    const char *after2; /* ... of its second column (NULL when none) */
    size_t after2_len;
    const char *before; /* the text of pulse_pgquery_t.before_sql's first column (NULL when none); valid during the callback */
    size_t before_len;
} pulse_pgresult_t;

/* Why a call was shed (answered PULSE_PG_BUSY): the queue was full; its estimated wait was over its class's budget when
   it came; it waited its whole budget. */
enum { PULSE_PGPOOL_SHED_QUEUE_FULL, PULSE_PGPOOL_SHED_ESTIMATE, PULSE_PGPOOL_SHED_WAITED, PULSE_PGPOOL_SHED_REASONS };

/* Longest prepared statement name, with its NUL (router.h's "pulse_" and 16 hex digits fit). */
#define PULSE_PGPOOL_STMT_NAME_MAX 24

/* What one call runs; every string is copied by pulse_pgpool_submit. */
typedef struct pulse_pgquery_t {
    pulse_class_t cls;        /* its queue, priority and queue budget */
    const char *tenant;       /* pulse.tenant */
    const char *request_id;   /* put into application_name for log correlation */
    const char *trace_id;     /* too: application_name = "pulse <trace_id> <request_id>" (NULL: none) */
    int statement_timeout_ms; /* 0: the server's default */
    const char *stmt_name;    /* prepared once per connection (shorter than PULSE_PGPOOL_STMT_NAME_MAX) */
    const char *sql;
    int nparams;
    const char *const *params; /* text parameters, NULL for SQL NULL */
    const char *after_sql;     /* NULL, or a statement with one parameter (none when after_param is NULL) run after the call's
                                  transaction ended, in the same pipeline (what a write bumped, and its LSN, read after its
                                  COMMIT); its errors are only logged */
    const char *after_param;   /* its one parameter ($1), or NULL when it has none */
    const char *before_sql;    /* NULL, or a statement with one parameter run in the call's transaction just before the call (a
                                  replica's tag generations); its error fails the call */
    const char *before_param;
} pulse_pgquery_t;

/* The pool's state and counters (pulse_pgpool_stats). */
typedef struct pulse_pgpool_stats_t {
    int down, connecting, idle, busy; /* connections by state */
    int queued, queue_limit;          /* calls waiting for a connection, and how many may */
    uint64_t waits;                   /* calls that found no idle connection and were queued */
    uint64_t wait_ms;                 /* time queued calls waited until they got a connection */
    uint64_t queue_full;              /* calls refused because the queue was full */
    uint64_t queue_timeouts;          /* queued calls that got no connection within queue_timeout_ms */
    uint64_t deallocated;             /* prepared statements deallocated to stay within pool_max_prepared */
    uint64_t shed[PULSE_CLASS_COUNT][PULSE_PGPOOL_SHED_REASONS]; /* calls answered PULSE_PG_BUSY, by class and reason */
    double call_us;                                              /* moving average of a call's time on its connection */
} pulse_pgpool_stats_t;

typedef void (*pulse_pgjob_cb)(void *data, const pulse_pgresult_t *res);

/**
 * Creates a pool of `conf->pool_size` connections to `conf->pg_url` on `loop` and starts connecting them; `id` names the
 * pool in log messages. At most `conf->queue_limit` calls wait for a free connection, each at most
 * `conf->queue_timeout_ms`; a call the server does not answer within `conf->call_timeout_ms` closes its connection and
 * fails with PULSE_PG_UNAVAILABLE. Returns NULL when out of memory.
 */
pulse_pgpool_t *pulse_pgpool_create(int id, h2o_loop_t *loop, const pulse_config_t *conf) PULSE_WUR;

/**
 * The same as pulse_pgpool_create, to `conninfo` instead of `conf->pg_url`; `server` (NULL: none) follows the id in log
 * messages ("pgpool 0 replica1: ...").
 */
pulse_pgpool_t *pulse_pgpool_create_server(int id, const char *server, const char *conninfo, h2o_loop_t *loop,
                                           const pulse_config_t *conf) PULSE_WUR;

/**
 * Closes every connection and frees the pool; jobs still pending are answered PULSE_PG_UNAVAILABLE. Call it on the
 * loop's thread.
 */
void pulse_pgpool_destroy(pulse_pgpool_t *pool);

/**
 * Queues one call and stores the job in `*ref`; `cb(data, res)` runs on the loop exactly once unless the job is
 * canceled, after the pool has set `*ref` to NULL (so the caller always knows whether its job is still pending; the
 * callback may even run before this function returns, when the connection breaks while sending). Returns 0, or -1
 * without calling `cb` when the call cannot be queued: then `*status` says why (PULSE_PG_UNAVAILABLE when no connection
 * is up and the last attempt failed, PULSE_PG_BUSY when the queue is full).
 */
int pulse_pgpool_submit(pulse_pgpool_t *pool, const pulse_pgquery_t *q, pulse_pgjob_cb cb, void *data, pulse_pgjob_t **ref,
                        pulse_pgstatus_t *status) PULSE_WUR;

/**
 * Forgets the caller of `job` (its request went away; NULL is ignored): the callback will not run. A running call finishes on its
 * connection and its result is dropped.
 */
void pulse_pgpool_cancel(pulse_pgjob_t *job);

/**
 * Returns how many connections are up (idle or running a call).
 */
int pulse_pgpool_alive(const pulse_pgpool_t *pool);

/**
 * Returns how many calls run or wait on the pool.
 */
int pulse_pgpool_load(const pulse_pgpool_t *pool);

/**
 * Copies the pool's state and counters into `out` (for /metrics); on the loop's thread.
 */
void pulse_pgpool_stats(const pulse_pgpool_t *pool, pulse_pgpool_stats_t *out);

/**
 * Changes the queue limit (a reloadable option).
 */
void pulse_pgpool_set_queue_limit(pulse_pgpool_t *pool, int queue_limit);

#endif
