/*
 * replicas_monitor.h: the replicas' monitor (replicas_monitor.c), the half
 * of read replicas that depends on nothing else of them: one thread per
 * server measures the primary's flushed WAL position and each replica's
 * replay position and lag; the loops read the figures and never wait.
 * replicas.h (routing, tokens, stamps) builds on it.
 */
#ifndef PULSE_REPLICAS_MONITOR_H
#define PULSE_REPLICAS_MONITOR_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "generations.h"

#define PULSE_REPLICAS_MAX 16      /* replicas in replica_urls */
#define PULSE_REPLICAS_LSN_SIZE 18 /* "XXXXXXXX/XXXXXXXX" and its NUL */

typedef struct pulse_replicas_t pulse_replicas_t;

/* A server as the monitor last saw it. */
typedef enum { PULSE_REPLICAS_STATE_DOWN, PULSE_REPLICAS_STATE_UP } pulse_replicas_state_t;

/* The monitor's figures of one server (pulse_replicas_status). */
typedef struct pulse_replicas_status_t {
    const char *name; /* "primary", "replica1", ... */
    pulse_replicas_state_t state;
    uint64_t lsn;             /* replicas: replay LSN; the primary: flushed LSN */
    int64_t lag_ms;           /* replicas: upper bound of the lag; -1: unknown */
    uint64_t lag_bytes;       /* replicas: the primary's flushed LSN minus the replay LSN (0 when ahead) */
    uint64_t measured_age_ms; /* since the last successful measurement (UINT64_MAX: never) */
} pulse_replicas_status_t;

/* One sample of the primary's flushed WAL position (replicas_monitor.c's history). */
typedef struct pulse_replicas_sample_t {
    uint64_t at_ms; /* monotonic clock, when the measuring query was sent */
    uint64_t lsn;
} pulse_replicas_sample_t;

/* the monitor ------------------------------------------------------------------------------------------------------- */

/**
 * Starts monitoring the primary `conf->pg_url` and every replica of `conf->replica_urls` (one thread each, measuring
 * every `conf->replica_check_ms`); `gens` is the process's generations map (NULL: no cache). Returns NULL with a reason
 * in `err` when replica_urls is empty (then no replicas: not an error, err is "") or invalid, or out of memory.
 */
pulse_replicas_t *pulse_replicas_create(const pulse_config_t *conf, pulse_generations_t *gens, char *err, size_t errlen);

/**
 * Stops the monitor threads and frees `rs` (NULL is ignored); no loop may use it any more.
 */
void pulse_replicas_destroy(pulse_replicas_t *rs);

/**
 * Returns the number of replicas (0 for NULL).
 */
size_t pulse_replicas_count(const pulse_replicas_t *rs);

/**
 * Fills `out` with the monitor's figures of server `i` (0: the primary, 1..count: the replicas). Any thread.
 */
void pulse_replicas_status(const pulse_replicas_t *rs, size_t i, pulse_replicas_status_t *out);

/**
 * Returns the map of tag -> LSN stamp (a generations map whose values are LSNs: they only move forward), and the
 * process's generations (NULL: no cache); NULL for NULL `rs`.
 */
pulse_generations_t *pulse_replicas_stamps(pulse_replicas_t *rs);
pulse_generations_t *pulse_replicas_generations(pulse_replicas_t *rs);

/**
 * Tells the monitors that a loop has calls waiting for a replica's replay (`delta` +1 or -1): while any waits, the
 * replicas are measured every few milliseconds instead of every replica_check_ms.
 */
void pulse_replicas_kick(pulse_replicas_t *rs, int delta);

/**
 * Estimates a replica's lag in milliseconds from its replay LSN `replay` at `now_ms` and the primary's samples `hist`
 * (`n`, oldest first): 0 when it replayed the latest sample's LSN; otherwise now_ms minus the time of the latest sample
 * it replayed (the primary had no more than that then: an upper bound), or minus the oldest sample's time when it
 * replayed none; and at most `ts_lag_ms` (the replica's now() - pg_last_xact_replay_timestamp(), another upper bound;
 * -1: unknown). Returns -1 when there is no sample and no ts_lag_ms.
 */
int64_t pulse_replicas_lag_ms(const pulse_replicas_sample_t *hist, size_t n, uint64_t now_ms, uint64_t replay, int64_t ts_lag_ms);

/* LSNs ---------------------------------------------------------------------------------------------------------------- */

/**
 * Parses the text of a pg_lsn ("X/Y", 1 to 8 hexadecimal digits each) of `len` bytes into `*lsn`. Returns 0 or -1.
 */
int pulse_replicas_lsn_parse(const char *s, size_t len, uint64_t *lsn) PULSE_WUR;

/**
 * Formats an LSN as PostgreSQL does ("%X/%X") into `buf`.
 */
void pulse_replicas_lsn_format(uint64_t lsn, char buf[PULSE_REPLICAS_LSN_SIZE]);

#endif
