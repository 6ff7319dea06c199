/*
 * redis.h: a Redis client for one h2o event loop: hiredis's asynchronous API
 * driven by the loop (no thread, nothing blocks), with command timeouts,
 * reconnection with exponential backoff and a circuit breaker.
 *
 * The breaker: the client is UP while its connection answers.  A connection
 * that breaks, or `failure_threshold` consecutive commands that time out or
 * get an error meaning the server cannot serve now (LOADING, BUSY,
 * MASTERDOWN), open it: the client goes DOWN, its connection is closed (pending
 * commands are answered with an error at once) and every new command fails
 * fast, without touching a socket, until a new connection answers a probe
 * (AUTH/SELECT when configured, then PING) within the connect timeout:
 * CONNECTING is the half-open state, commands still fail fast.  Failed
 * probes are retried after a backoff that doubles from backoff_min_ms to
 * backoff_max_ms and is reset by a successful one.
 *
 * Contract of every command function: it returns 0 when the command was sent
 * (its callback then runs exactly once, on the loop, never from inside the
 * call: with the reply, or with an error when the command timed out, the
 * connection broke or the client was destroyed), and -1 when it was not (the
 * client is not UP, too many commands are pending, the command is malformed
 * or a subscription): the callback then never runs, and the caller goes on
 * without Redis (e.g. to the database).
 *
 * Everything runs on the loop's thread; a client is not shared between loops.
 * The host is resolved by hiredis with getaddrinfo() on every (re)connect,
 * synchronously: give an IP address (or a name in /etc/hosts) so that a slow
 * DNS server can never stall the loop.
 */
#ifndef PULSE_REDIS_H
#define PULSE_REDIS_H

#include <h2o.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>
#include "config.h"

typedef struct pulse_redis_t pulse_redis_t;

typedef struct pulse_redis_config_t {
    char host[256];         /* "127.0.0.1" when empty */
    int port;               /* 6379 when 0 */
    char password[256];     /* AUTH when not empty */
    int db;                 /* SELECT when not 0 */
    int connect_timeout_ms; /* connection and probe; 0: 200 */
    int command_timeout_ms; /* each command; 0: 50 */
    int failure_threshold;  /* consecutive failures or timeouts that open the breaker; 0: 3 */
    int backoff_min_ms;     /* first retry delay, also the granularity of retries; 0: 100 */
    int backoff_max_ms;     /* 0: 5000 */
    int max_pending;        /* commands in flight before new ones fail fast; 0: 4096 */
} pulse_redis_config_t;

typedef enum {
    PULSE_REDIS_DOWN,       /* breaker open: no connection, waiting for the next attempt */
    PULSE_REDIS_CONNECTING, /* half-open: a connection is being probed */
    PULSE_REDIS_UP,         /* breaker closed */
} pulse_redis_state_t;

typedef struct pulse_redis_stats_t {
    uint64_t commands;   /* commands sent */
    uint64_t replies;    /* answered by Redis (error replies included) */
    uint64_t failures;   /* answered with an error: connection broke, or client destroyed */
    uint64_t timeouts;   /* answered with a timeout */
    uint64_t fast_fails; /* refused with -1 */
    uint64_t opens;      /* times the breaker opened */
    uint64_t connects;   /* connections that passed their probe */
} pulse_redis_stats_t;

/*
 * The callback of a command: `reply` is Redis's answer (it may be an error reply, REDIS_REPLY_ERROR, which is still an
 * answer) and `err` is NULL; or `reply` is NULL and `err` says why there is none ("timeout", "connection lost",
 * "closed"). The reply is freed when the callback returns.
 */
typedef void (*pulse_redis_cb)(void *data, redisReply *reply, const char *err);

/**
 * Fills `conf` with the defaults and the fields of `url`: redis://[[user]:password@]host[:port][/db] (an empty or NULL
 * url keeps the defaults). Returns 0, or -1 with a reason in `err` for another scheme, a bad port or db, or a field too
 * long.
 */
int pulse_redis_config_parse_url(pulse_redis_config_t *conf, const char *url, char *err, size_t errlen) PULSE_WUR;

/**
 * Creates a client on `loop` with a copy of `conf` (NULL: all defaults) and starts connecting; it is DOWN until the first
 * probe succeeds, and never gives up. Returns NULL when out of memory.
 */
pulse_redis_t *pulse_redis_create(h2o_evloop_t *loop, const pulse_redis_config_t *conf) PULSE_WUR;

/**
 * Closes the connection and frees the client. Every pending command's callback runs (with "closed") before it returns.
 * Call it on the loop's thread, before the loop is destroyed; normally when the worker stops. It may be called from a
 * callback that received a reply (err == NULL), never from one that received an error: those may run inside the
 * client's own timer, which cannot be freed there (the process aborts with a message instead of corrupting the loop).
 */
void pulse_redis_destroy(pulse_redis_t *r);

/**
 * Sends a command in hiredis's format (`%s` a C string, `%b` a pointer and a size_t length for binary data, as
 * redisCommand). Returns 0 or -1 as described at the top of this file.
 */
int pulse_redis_command(pulse_redis_t *r, pulse_redis_cb cb, void *data, const char *fmt, ...) PULSE_WUR;

/**
 * Sends a command given as `argc` binary-safe arguments (`argvlen[i]` bytes at `argv[i]`; argvlen NULL: C strings),
 * copied before it returns. Returns 0 or -1 as described at the top of this file.
 */
int pulse_redis_command_argv(pulse_redis_t *r, pulse_redis_cb cb, void *data, int argc, const char **argv,
                             const size_t *argvlen) PULSE_WUR;

/**
 * Tells whether the breaker is closed (the client is UP): commands are being sent. For /ready and for skipping the cache.
 */
bool pulse_redis_is_up(pulse_redis_t *r);

/**
 * Returns the state of the client.
 */
pulse_redis_state_t pulse_redis_state(pulse_redis_t *r);

/**
 * Returns the name of a state ("down", "connecting", "up").
 */
const char *pulse_redis_state_name(pulse_redis_state_t s);

/**
 * Copies the client's counters into `out` (for /metrics).
 */
void pulse_redis_stats(pulse_redis_t *r, pulse_redis_stats_t *out);

#endif
