/*
 * config.h: the proxy's configuration, a flat YAML file plus environment
 * overrides, described by one declarative table of options (config.c).
 */
#ifndef PULSE_CONFIG_H
#define PULSE_CONFIG_H

#include <stddef.h>

#define PULSE_WUR __attribute__((warn_unused_result))

typedef enum { PULSE_CLASS_READ = 0, PULSE_CLASS_SEARCH, PULSE_CLASS_WRITE, PULSE_CLASS_BATCH, PULSE_CLASS_COUNT } pulse_class_t;

typedef struct pulse_config_t {
    char *listen;                           /* host:port of the HTTP listener */
    char *pg_url;                           /* libpq connection string or URI of the pool */
    char *pg_control_url;                   /* connection for LISTEN/catalog; default: pg_url */
    char *jwt_secret;                       /* HS256 key */
    char *access_log;                       /* "-" (stderr), "off", or a file path */
    char *redis_url;                        /* redis://host:port[/db] of the response cache; empty: no cache */
    int threads;                            /* event loops; 0: one per core */
    int pool_size;                          /* PostgreSQL connections per event loop */
    int cache_local_bytes;                  /* local cache per event loop in front of Redis; 0: none */
    int cache_keyed_tags;                   /* keyed cache tags the proxy remembers (keyed.h) */
    int invalidation_heartbeat_ms;          /* heartbeat through the invalidation channel; 0: none (hits without a bound) */
    int invalidation_delivery_ms;           /* longest delivery of a heartbeat before the channel is unverified */
    int invalidation_reconnect_ms;          /* a committed heartbeat not received for this long: reconnect the listener */
    int pool_max_prepared;                  /* prepared statements kept per connection (least recently used deallocated) */
    int queue_limit;                        /* queued calls per event loop before 503 */
    int queue_timeout_ms;                   /* longest wait for a connection before 503 */
    int queue_budget_ms[PULSE_CLASS_COUNT]; /* longest wait for a connection per class (capped by queue_timeout_ms) */
    int call_timeout_ms;                    /* longest wait for the server's answer before its connection is closed (503) */
    int timeout_ms[PULSE_CLASS_COUNT];      /* statement_timeout per endpoint class */
    int body_limit;                         /* bytes of a request body */
    int max_header_bytes;                   /* bytes of all request header names and values */
    int max_args;                           /* arguments of one call */
    int retry_after;                        /* seconds, in Retry-After of 503s */
    int drain_timeout_ms;                   /* SIGTERM: longest wait for in-flight requests */
    int swr_ms[PULSE_CLASS_COUNT];          /* stale-while-revalidate window per class (read, search; 0 for the others) */
    int sie_ms[PULSE_CLASS_COUNT];          /* stale-if-error window per class (read, search; 0 for the others) */
    int redis_connect_timeout_ms;           /* Redis connection and probe */
    int redis_command_timeout_ms;           /* each Redis command: beyond, the database answers */
    int redis_backoff_max_ms;               /* longest wait between Redis reconnection attempts */
    int slo_p95_ms[PULSE_CLASS_COUNT];      /* SLO: p95 latency per class */
    int slo_p99_ms[PULSE_CLASS_COUNT];      /* SLO: p99 latency per class */
    int slo_error_rate_ppm;                 /* SLO: share of 5xx answers per class, parts per million */
    int slo_window_ms;                      /* SLO: length of an evaluation window */
    char *ratelimit[PULSE_CLASS_COUNT];     /* token buckets per class: "tenant=R/B,ip=R/B,global=R/B" (ratelimit.h) */
    char *otlp_endpoint;                    /* OTLP/HTTP traces URL (http://host:4318/v1/traces); empty: no tracing */
    char *trace_service_name;               /* service.name of the spans */
    int trace_sample_ppm;                   /* head sampling of new traces, parts per million */
    int trace_slow_ms;                      /* a request slower than this is always traced; 0: its class's p99 SLO */
    int request_timeout_ms;                 /* longest time to receive a request's head and body; keep-alive idle time */
    int live_max_streams;                   /* open text/event-stream streams per proxy; 0: no live endpoints (live.h) */
    int live_max_streams_tenant;            /* open streams per tenant */
    int live_min_interval_ms;               /* at most one refresh of a subscription key per interval */
    int live_heartbeat_ms;                  /* a comment line to a stream idle this long; 0: none */
    int live_retry_ms;                      /* the retry: hint of a stream (EventSource's reconnection delay) */
    char *live_allow_origin;                /* Access-Control-Allow-Origin of streams; empty: none */
    int slo_live_p95_ms, slo_live_p99_ms;   /* SLO of the live class: notification to client, p95 and p99 */
    char *replica_urls;                     /* libpq connection strings of the read replicas, one per line; "": none */
    int replica_max_lag_ms;                 /* a replica lagging more gets no reads */
    int replica_wait_ms;                    /* longest wait for a replica to replay a call's required LSN, then the primary */
    int replica_check_ms;                   /* how often each server's WAL position is measured */
    char *replica_lsn_cookie;               /* name of the cookie carrying a write's LSN; "": none */
    int replica_lsn_cookie_max_age;         /* its Max-Age, seconds */
    int ratelimit_legacy_headers;           /* also send draft-06's RateLimit-Limit, -Remaining, -Reset (ratelimit.h) */
    char *cors_origins; /* origins allowed by CORS, one per line (or ,-separated); "*": any; "": none (cors.h) */
    int cors_max_age;   /* Access-Control-Max-Age of preflight answers, seconds */
    int openapi;        /* serve GET /openapi.json (openapi.h) */
    char *docs_dir;     /* directory holding redoc.standalone.js for GET /docs; empty: no /docs */
    int _refcnt;        /* see pulse_config_acquire */
} pulse_config_t;

/**
 * Loads the configuration: defaults from the options table, then the YAML file at `path` (a flat mapping of option names
 * to scalars; NULL: no file), then the environment variables PULSE_<OPTION> (upper case). On failure writes a one-line
 * reason into `err` (size `errlen`) and returns NULL; the caller frees the result with pulse_config_free.
 */
pulse_config_t *pulse_config_load(const char *path, char *err, size_t errlen) PULSE_WUR;

/**
 * Frees a configuration returned by pulse_config_load that was never published with pulse_config_publish.
 */
void pulse_config_free(pulse_config_t *conf);

/**
 * Sets one option by name from its text form, as the file and the environment do. Returns 0, or -1 with a reason in `err`
 * for an unknown option or a value of the wrong type or out of range.
 */
int pulse_config_set(pulse_config_t *conf, const char *name, const char *value, char *err, size_t errlen) PULSE_WUR;

/**
 * Builds the configuration a reload switches to: a copy of `cur` in which every option marked reloadable in the options
 * table takes its value from `next`. Options that differ but cannot be reloaded are reported on stderr and kept. Returns
 * NULL when out of memory.
 */
pulse_config_t *pulse_config_merge_reload(const pulse_config_t *cur, const pulse_config_t *next) PULSE_WUR;

/**
 * Makes `conf` the current configuration (the process takes ownership; NULL at exit); the previous one is freed once the last
 * request holding it releases it.
 */
void pulse_config_publish(pulse_config_t *conf);

/**
 * Returns the current configuration with a reference held; every caller releases it with pulse_config_release. Safe from
 * any thread.
 */
pulse_config_t *pulse_config_acquire(void);

/**
 * Releases a reference taken by pulse_config_acquire.
 */
void pulse_config_release(pulse_config_t *conf);

/**
 * Returns the endpoint class named `name` ("read", "search", "write", "batch"), or -1.
 */
int pulse_config_class_from_name(const char *name);

/**
 * Returns the name of an endpoint class.
 */
const char *pulse_config_class_name(pulse_class_t cls);

#endif
