/*
 * log.h: the JSON log (access lines and operational messages), buffered in
 * memory and written by its own thread so that no event loop ever waits on
 * the disk or a full pipe.
 */
#ifndef PULSE_LOG_H
#define PULSE_LOG_H

#include <stddef.h>
#include "config.h"

typedef struct pulse_access_t {
    const char *request_id;
    const char *trace_id; /* 32 hex digits; NULL for requests outside /rpc */
    const char *method;
    size_t method_len;
    const char *path;
    size_t path_len;
    const char *endpoint; /* NULL when no route matched */
    const char *cls;      /* the endpoint's class; NULL with endpoint */
    const char *tenant;   /* NULL when not authenticated */
    const char *remote;   /* peer address */
    int status;
    size_t bytes; /* body bytes sent */
    double duration_ms;
    const char *source; /* where the body came from: "db", "cache", "flight", ...; NULL for none */
    const char *cache;  /* X-Cache: "hit", "miss", "stale"; NULL for calls that are not cached */
} pulse_access_t;

/**
 * Opens the log: `target` is "-" for stderr, "off" to discard access lines (messages still go to stderr), or a file
 * path (appended to). Starts the writer thread. Returns 0, or -1 when the file cannot be opened.
 */
int pulse_log_open(const char *target) PULSE_WUR;

/**
 * Flushes what is buffered, stops the writer thread and closes the file.
 */
void pulse_log_close(void);

/**
 * Appends one access line. Never blocks on I/O: when the buffer is full (the writer is far behind) the line is dropped
 * and counted. Safe from any thread.
 */
void pulse_log_access(const pulse_access_t *e);

/**
 * Appends an operational message {"level","msg","request_id"} at `level` ("error", "warning", "info"); `request_id`
 * may be NULL. Same buffering as pulse_log_access, but never discarded by "off".
 */
void pulse_log_msg(const char *level, const char *request_id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
