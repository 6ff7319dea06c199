/*
 * trace.h: distributed tracing: W3C trace context (the traceparent header),
 * span ids, head sampling, and an exporter that sends finished spans to an
 * OpenTelemetry collector as OTLP/HTTP JSON (POST /v1/traces).
 *
 * The trace context functions are pure (or use per-thread state only) and may
 * be called from any thread.  A span is a plain fixed-size struct that the
 * request path fills on its own thread (no allocation); finished spans are
 * handed to a tracer with pulse_tracer_submit, which copies them into a
 * bounded queue under a mutex held for a memcpy and returns: it never waits
 * on I/O, and when the queue is full the spans are dropped and counted.  One
 * background thread per tracer takes batches off the queue, encodes them and
 * POSTs them with libcurl, at most every flush_ms or as soon as batch_max
 * spans are waiting.  A batch that cannot be delivered (connection refused,
 * timeout, non-2xx answer) is counted and discarded: nothing is retried, so a
 * collector that is down costs one failed POST per batch and never slows the
 * request path.
 *
 * Ids are random (a per-thread PRNG seeded from RAND_bytes), never all-zero;
 * sampling is decided on the trace id alone, so every proxy of a deployment
 * takes the same decision for a trace.
 */
#ifndef PULSE_TRACE_H
#define PULSE_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"

#define PULSE_TRACEPARENT_LEN 55 /* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define PULSE_TRACE_FLAG_SAMPLED 0x01
#define PULSE_SPAN_MAX_ATTRS 12
#define PULSE_SPAN_NAME_MAX 64 /* sizes of the char arrays below, NUL included; longer text is truncated */
#define PULSE_SPAN_KEY_MAX 48
#define PULSE_SPAN_STR_MAX 128
#define PULSE_SPAN_STATUS_MSG_MAX 96

/* What a traceparent header carries: the trace, the caller's span (the parent of ours) and the trace flags. */
typedef struct pulse_trace_ctx_t {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags; /* bit 0 (PULSE_TRACE_FLAG_SAMPLED): the caller records this trace */
} pulse_trace_ctx_t;

/* The values are OTLP's SpanKind enum. */
typedef enum { PULSE_SPAN_INTERNAL = 1, PULSE_SPAN_SERVER = 2, PULSE_SPAN_CLIENT = 3 } pulse_span_kind_t;

/* The values are OTLP's Status.StatusCode enum. */
typedef enum { PULSE_SPAN_STATUS_UNSET = 0, PULSE_SPAN_STATUS_OK = 1, PULSE_SPAN_STATUS_ERROR = 2 } pulse_span_status_t;

typedef enum { PULSE_SPAN_ATTR_STRING = 0, PULSE_SPAN_ATTR_INT = 1 } pulse_span_attr_type_t;

typedef struct pulse_span_attr_t {
    char key[PULSE_SPAN_KEY_MAX];
    uint8_t type; /* pulse_span_attr_type_t */
    union {
        char str[PULSE_SPAN_STR_MAX];
        int64_t i;
    } v;
} pulse_span_attr_t;

/*
 * One span, self-contained (no pointer): copy it freely. Fill it with pulse_span_start and the setters below, or by hand
 * (zero it first). Strings are NUL-terminated; the setters truncate them at a UTF-8 character boundary, and the encoder
 * replaces any invalid UTF-8 with U+FFFD.
 */
typedef struct pulse_span_t {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_span_id[8]; /* all zero: a root span */
    char name[PULSE_SPAN_NAME_MAX];
    uint8_t kind;   /* pulse_span_kind_t */
    uint8_t status; /* pulse_span_status_t */
    uint8_t nattrs;
    uint8_t dropped_attrs;     /* attributes that did not fit (OTLP droppedAttributesCount), saturates at 255 */
    uint64_t start_ns, end_ns; /* unix epoch nanoseconds (pulse_trace_now_ns) */
    char status_msg[PULSE_SPAN_STATUS_MSG_MAX];
    pulse_span_attr_t attrs[PULSE_SPAN_MAX_ATTRS];
} pulse_span_t;

typedef struct pulse_tracer_t pulse_tracer_t;

typedef struct pulse_tracer_config_t {
    const char *endpoint;     /* full URL of the collector's traces resource, e.g. "http://127.0.0.1:4318/v1/traces" */
    const char *service_name; /* the resource's service.name; NULL or "": "pulse-proxy" */
    size_t queue_max;         /* spans buffered; 0: 8192 (memory: queue_max * sizeof(pulse_span_t), about 2.5 kB each) */
    size_t batch_max;         /* spans per POST, also what wakes the thread early; 0: 512 (capped at queue_max) */
    int flush_ms;             /* longest time a queued span waits before it is sent; 0: 1000 */
    int timeout_ms;           /* of one POST (connection included), and of the final flush of destroy; 0: 2000 */
} pulse_tracer_config_t;

typedef struct pulse_tracer_stats_t {
    uint64_t spans_submitted; /* spans given to pulse_tracer_submit, dropped ones included */
    uint64_t spans_exported;  /* in a batch the collector accepted (2xx) */
    uint64_t spans_dropped;   /* not queued (queue full), or still queued when destroy's flush ran out of time */
    uint64_t spans_failed;    /* in a batch that failed */
    uint64_t spans_queued;    /* waiting or being sent now */
    uint64_t batches_sent;    /* POSTs the collector accepted */
    uint64_t export_failures; /* batches that failed: no connection, timeout, non-2xx answer, out of memory */
} pulse_tracer_stats_t;

/**
 * Parses a traceparent header value (`len` bytes at `s`, no surrounding whitespace) into `out`:
 * "vv-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>", lowercase hex only. Version 00 must be exactly 55 bytes; a
 * later version (01..fe) must be at least that long and, when longer, continue with '-' (its extra fields are ignored).
 * Returns 0, or -1 (and `out` is unspecified) for anything else: version ff, an all-zero trace or parent id, a wrong
 * length, an uppercase or non-hex digit. On -1 the caller starts a new trace.
 */
int pulse_trace_parse_traceparent(const char *s, size_t len, pulse_trace_ctx_t *out) PULSE_WUR;

/**
 * Writes the version 00 traceparent of a span (`span_id` is the id of the span the receiver's work hangs under, i.e. ours)
 * into `out`: 55 characters and a NUL.
 */
void pulse_trace_format_traceparent(const uint8_t trace_id[16], const uint8_t span_id[8], int sampled, char out[56]);

/**
 * Writes new random ids into `trace_id` (16 bytes) and `span_id` (8 bytes); either may be NULL. Neither is ever all-zero.
 * Lock-free and thread-safe: each thread has its own PRNG, seeded from RAND_bytes on its first call. A child process
 * created by fork() must not use it on a thread that used it before the fork (it would repeat the parent's ids).
 */
void pulse_trace_new_ids(uint8_t trace_id[16], uint8_t span_id[8]);

/**
 * Decides head sampling for a trace: returns 1 to record it, 0 not to. Deterministic on the trace id: its rightmost 56
 * bits (the random part of W3C level 2 ids, as OpenTelemetry's consistent probability sampling) against a threshold of
 * `ratio_ppm` parts per million (0: never; 1000000 or more: always).
 */
int pulse_trace_sample(const uint8_t trace_id[16], uint32_t ratio_ppm);

/**
 * Writes `n` bytes at `id` as 2n lowercase hex digits and a NUL into `out` (2n + 1 bytes).
 */
void pulse_trace_hex(const uint8_t *id, size_t n, char *out);

/**
 * Decodes 2n lowercase hex digits at `s` into `n` bytes at `out`. Returns 0, or -1 at the first character that is not a
 * lowercase hex digit (`out` is then partly written).
 */
int pulse_trace_unhex(const char *s, size_t n, uint8_t *out) PULSE_WUR;

/**
 * Returns the current time as unix epoch nanoseconds (CLOCK_REALTIME), for start_ns and end_ns.
 */
uint64_t pulse_trace_now_ns(void);

/**
 * Zeroes `s` and starts a span: `name` (truncated), `kind`, `trace_id`, `parent_span_id` (NULL: a root span), a new span
 * id and `start_ns` (0: now).
 */
void pulse_span_start(pulse_span_t *s, const char *name, pulse_span_kind_t kind, const uint8_t trace_id[16],
                      const uint8_t parent_span_id[8], uint64_t start_ns);

/**
 * Sets the string attribute `key` to the `len` bytes at `value` (truncated to PULSE_SPAN_STR_MAX - 1 bytes at a UTF-8
 * boundary), replacing an attribute of the same key. Returns 0, or -1 when the span already has PULSE_SPAN_MAX_ATTRS
 * attributes (the attribute is counted in dropped_attrs) or `key` is empty.
 */
int pulse_span_set_strn(pulse_span_t *s, const char *key, const char *value, size_t len);

/**
 * pulse_span_set_strn with a NUL-terminated `value`.
 */
int pulse_span_set_str(pulse_span_t *s, const char *key, const char *value);

/**
 * Sets the integer attribute `key` to `value`, as pulse_span_set_strn.
 */
int pulse_span_set_int(pulse_span_t *s, const char *key, int64_t value);

/**
 * Sets the span's status; `msg` (NULL: none, truncated) is kept for PULSE_SPAN_STATUS_ERROR only, as OTLP says.
 */
void pulse_span_set_status(pulse_span_t *s, pulse_span_status_t status, const char *msg);

/**
 * Ends a span at `end_ns` (0: now).
 */
void pulse_span_end(pulse_span_t *s, uint64_t end_ns);

/**
 * Encodes `n` spans as one OTLP/HTTP JSON ExportTraceServiceRequest of one resource (service.name = `service_name`,
 * NULL: "pulse-proxy") and one scope ("pulse-proxy"): ids as lowercase hex, times as decimal strings, kind and status
 * code as integers, parentSpanId omitted for a root span. Returns a malloc'd NUL-terminated string (`*len` its length
 * when `len` is not NULL), or NULL when out of memory.
 */
char *pulse_trace_encode_otlp(const pulse_span_t *spans, size_t n, const char *service_name, size_t *len) PULSE_WUR;

/**
 * Creates a tracer with a copy of `conf` (endpoint required) and starts its thread. Initializes libcurl once per
 * process (pthread_once; never cleaned up). Nothing is sent before the first span. Returns NULL when the endpoint is
 * missing, out of memory or the thread cannot start.
 */
pulse_tracer_t *pulse_tracer_create(const pulse_tracer_config_t *conf) PULSE_WUR;

/**
 * Queues copies of `n` spans, all or none. Never blocks on I/O; safe from any thread, concurrently. Returns 0 when they
 * were queued (or `t` is NULL: tracing is off, nothing happens), -1 when the queue had no room for all of them: they
 * are dropped and counted in spans_dropped.
 */
int pulse_tracer_submit(pulse_tracer_t *t, const pulse_span_t *spans, size_t n);

/**
 * Copies the tracer's counters into `out` (for /metrics; NULL: all zero). Safe from any thread.
 */
void pulse_tracer_stats(pulse_tracer_t *t, pulse_tracer_stats_t *out);

/**
 * Sends what is queued (giving up after timeout_ms in all: the rest counts as dropped), stops the thread and frees the
 * tracer. Call it once, after every thread that submits has stopped submitting. NULL does nothing.
 */
void pulse_tracer_destroy(pulse_tracer_t *t);

#endif
