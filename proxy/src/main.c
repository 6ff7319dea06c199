/*
 * main.c: pulse-proxy's entry point: options, configuration, one h2o event
 * loop per thread each with its own SO_REUSEPORT listener and PostgreSQL
 * pool, and signals (SIGHUP reloads, SIGTERM/SIGINT drain and exit).
 *
 * Signals are blocked in every thread and taken by the main thread with
 * sigwait; it only sets flags the loops poll (every 100 ms) and publishes
 * configurations.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "catalog.h"
#include "config.h"
#include "generations.h"
#include "guard.h"
#include "live.h"
#include "log.h"
#include "metrics.h"
#include "pgpool.h"
#include "router.h"
#include "site.h"
#include "worker.h"

static h2o_globalconf_t globalconf;
static atomic_int stopping;
static const char *config_path;
static pulse_worker_t *volatile kept_workers; /* workers whose loops still had connections at exit */
static pulse_generations_t *gens;             /* cache tag generations: fed by the catalog thread, read by the workers */
static pulse_keyed_t *keyed;                  /* keyed cache tags known: fed by the catalog thread and writes, read by hits */
static pulse_ratelimit_t *ratelimit;          /* token buckets, shared by the workers */
static pulse_tracer_t *tracer;                /* span exporter; NULL: no tracing */
static pulse_replicas_t *replicas;            /* read replicas' monitors; NULL: none configured */

/* parses the ratelimit_<class> options; returns 0, or -1 with the reason in `err` */
static int ratelimit_policies(const pulse_config_t *conf, pulse_ratelimit_policy_t out[PULSE_CLASS_COUNT], char *err, size_t errlen)
{
    for (int c = 0; c < PULSE_CLASS_COUNT; c++) {
        char why[256];
        if (pulse_ratelimit_policy_parse(conf->ratelimit[c], &out[c], why, sizeof(why)) != 0) {
            snprintf(err, errlen, "ratelimit_%s: %s", pulse_config_class_name((pulse_class_t)c), why);
            return -1;
        }
    }
    return 0;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: pulse-proxy [--config FILE] [--threads N]\n"
                "Serves the endpoints of the pulse extension's catalog over HTTP; see proxy/README.md.\n");
}

/* a listening socket on host:port with SO_REUSEPORT, one per loop */
static int open_listener(const char *listen_addr)
{
    char host[256];
    const char *colon = strrchr(listen_addr, ':');
    if (colon == NULL || (size_t)(colon - listen_addr) >= sizeof(host)) {
        fprintf(stderr, "pulse-proxy: listen must be host:port, not \"%s\"\n", listen_addr);
        return -1;
    }
    memcpy(host, listen_addr, (size_t)(colon - listen_addr));
    host[colon - listen_addr] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {0}, *ai;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host[0] != '\0' ? host : NULL, colon + 1, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "pulse-proxy: cannot resolve %s: %s\n", listen_addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        fprintf(stderr, "pulse-proxy: cannot listen on %s: %s\n", listen_addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    pulse_worker_t *w = listener->data;
    h2o_socket_t *sock;
    if (err != NULL)
        return;
    /* accept a batch, then let the other loops have their turn; every connection's bytes pass the guard before h2o's
       HTTP/1 parser (guard.c) */
    for (int i = 0; i < 16 && (sock = h2o_evloop_socket_accept(listener)) != NULL; i++) {
        h2o_accept(&w->accept_ctx, sock);
        pulse_guard_attach(w, sock);
    }
}

/* whether h2o_context_dispose can run: no connection and no timer left in the context */
static int context_is_idle(h2o_context_t *ctx)
{
    h2o_timeout_t *timeouts[] = {&ctx->zero_timeout,
                                 &ctx->one_sec_timeout,
                                 &ctx->hundred_ms_timeout,
                                 &ctx->handshake_timeout,
                                 &ctx->http1.req_timeout,
                                 &ctx->http2.idle_timeout,
                                 &ctx->http2.graceful_shutdown_timeout};
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++)
        if (!h2o_linklist_is_empty(&timeouts[i]->_entries))
            return 0;
    return h2o_linklist_is_empty(&ctx->http1._conns) && h2o_linklist_is_empty(&ctx->http2._conns);
}

static void *worker_main(void *arg)
{
    pulse_worker_t *w = arg;
    pulse_config_t *conf = pulse_config_acquire();
    w->loop = h2o_evloop_create();
    h2o_context_init(&w->ctx, w->loop, &globalconf);
    w->accept_ctx.ctx = &w->ctx;
    w->accept_ctx.hosts = globalconf.hosts;
    w->pgpool = pulse_pgpool_create(w->index, w->loop, conf);
    if (w->pgpool == NULL ||
        (replicas != NULL && (w->replicas = pulse_replicas_loop_create(replicas, w->index, w->loop, conf, w->pgpool)) == NULL)) {
        pulse_log_msg("error", NULL, "worker %d: out of memory", w->index);
        exit(1);
    }
    w->gens = gens;
    w->keyed = keyed;
    w->ratelimit = ratelimit;
    w->tracer = tracer;
    if (conf->redis_url[0] != '\0') {
        pulse_redis_config_t rc;
        char err[256];
        if (pulse_redis_config_parse_url(&rc, conf->redis_url, err, sizeof(err)) != 0) {
            pulse_log_msg("error", NULL, "worker %d: redis_url: %s", w->index, err); /* checked in main: cannot happen */
            exit(1);
        }
        rc.connect_timeout_ms = conf->redis_connect_timeout_ms;
        rc.command_timeout_ms = conf->redis_command_timeout_ms;
        rc.backoff_max_ms = conf->redis_backoff_max_ms;
        if ((w->redis = pulse_redis_create(w->loop, &rc)) == NULL || (w->flights = pulse_cache_flights_create()) == NULL) {
            pulse_log_msg("error", NULL, "worker %d: out of memory", w->index);
            exit(1);
        }
        h2o_timeout_init(w->loop, &w->flight_poll, 10);
        if (conf->cache_local_bytes > 0 && (w->lcache = pulse_lcache_create((size_t)conf->cache_local_bytes)) == NULL) {
            pulse_log_msg("error", NULL, "worker %d: out of memory", w->index);
            exit(1);
        }
    }
    if ((w->live = pulse_live_loop_create(w, conf)) == NULL) {
        pulse_log_msg("error", NULL, "worker %d: out of memory", w->index);
        exit(1);
    }
    w->listener = h2o_evloop_socket_create(w->loop, w->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    w->listener->data = w;
    h2o_socket_read_start(w->listener, on_accept);
    pulse_config_release(conf);

    while (!atomic_load(&stopping)) {
        h2o_evloop_run(w->loop, 100);
        pulse_metrics_sync(w->metrics, w->pgpool, w->redis, w->lcache);
        pulse_metrics_sync_replicas(w->metrics, w->replicas);
        if (w->index == 0 && pulse_metrics_slo_due(h2o_now(w->loop))) { /* worker 0 evaluates the SLO windows */
            conf = pulse_config_acquire();
            pulse_metrics_slo_tick(h2o_now(w->loop), conf);
            pulse_config_release(conf);
        }
    }

    /* drain: no new connections, no more keep-alive, wait for the requests in flight */
    h2o_socket_read_stop(w->listener);
    h2o_socket_close(w->listener);
    w->listener = NULL;
    h2o_context_request_shutdown(&w->ctx);
    pulse_live_loop_stop(w->live); /* streams end: their clients reconnect to another proxy */
    conf = pulse_config_acquire();
    struct timeval t0, now;
    gettimeofday(&t0, NULL);
    for (;;) {
        h2o_evloop_run(w->loop, 10);
        gettimeofday(&now, NULL);
        long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_usec - t0.tv_usec) / 1000;
        if (w->inflight == 0 || ms > conf->drain_timeout_ms)
            break;
    }
    if (w->inflight != 0)
        pulse_log_msg("warning", NULL, "worker %d: %d requests still in flight after the drain timeout", w->index, w->inflight);
    for (int i = 0; i < 5; i++) /* let responses just sent leave the socket buffers */
        h2o_evloop_run(w->loop, 10);
    pulse_config_release(conf);
    /* in this order: waiters of open flights then call the database, fetches still pending are answered "closed" and
       call it too, and the pool answers all of them (and background refreshes, which skip the store) with 503 */
    if (w->flights != NULL) {
        pulse_cache_flights_t *flights = w->flights;
        w->flights = NULL;
        pulse_cache_flights_destroy(flights);
    }
    if (w->redis != NULL) {
        pulse_redis_t *redis = w->redis;
        w->redis = NULL;
        pulse_redis_destroy(redis);
    }
    pulse_lcache_destroy(w->lcache);
    w->lcache = NULL;
    pulse_replicas_loop_t *rl = w->replicas; /* its calls fail over to the primary's pool, destroyed next */
    pulse_replicas_loop_destroy(rl);
    w->replicas = NULL;
    pulse_pgpool_destroy(w->pgpool); /* answers what is still pending with 503 */
    w->pgpool = NULL;
    for (int i = 0; i < 5; i++)
        h2o_evloop_run(w->loop, 10);
    pulse_live_loop_destroy(w->live);
    w->live = NULL;
    /* h2o cannot dispose a context with open connections (idle keep-alive ones, for instance): then the process exits
       with them, and the worker stays allocated (main keeps it) */
    if (!context_is_idle(&w->ctx))
        return NULL;
    if (w->flight_poll._link.next != NULL) /* initialized (a cache is configured) */
        h2o_timeout_dispose(w->loop, &w->flight_poll);
    h2o_context_dispose(&w->ctx);
    free(w->ctx.queue); /* h2o 2.2.5's h2o_context_dispose destroys the queue but does not free it */
    h2o_evloop_destroy(w->loop);
    w->disposed = 1;
    return NULL;
}

static void reload(void)
{
    char err[512];
    pulse_config_t *next = pulse_config_load(config_path, err, sizeof(err));
    if (next == NULL) {
        pulse_log_msg("error", NULL, "reload: %s; keeping the current configuration", err);
    } else {
        pulse_config_t *cur = pulse_config_acquire();
        pulse_config_t *merged = pulse_config_merge_reload(cur, next);
        pulse_config_release(cur);
        pulse_config_free(next);
        pulse_ratelimit_policy_t policies[PULSE_CLASS_COUNT];
        if (merged != NULL && ratelimit_policies(merged, policies, err, sizeof(err)) != 0) {
            pulse_log_msg("error", NULL, "reload: %s; keeping the current configuration", err);
            pulse_config_free(merged);
            merged = NULL;
        }
        if (merged != NULL) {
            pulse_ratelimit_set_policies(ratelimit, policies);
            pulse_config_publish(merged);
            pulse_log_msg("info", NULL, "reload: configuration reloaded");
        }
    }
    pulse_catalog_request_reload();
}

/*
 * Checks what the configuration names and creates the process-wide services from it: the generations map and keyed
 * tags (the invalidation channel feeds the cache and the live streams: either needs it), the rate limiter, the span
 * exporter, the replicas. Returns 0, or the exit status after saying why on stderr (2: the configuration, 1: out of
 * resources).
 */
static int start_services(const pulse_config_t *conf)
{
    char err[512];
    if (conf->redis_url[0] != '\0') {
        pulse_redis_config_t rc;
        if (pulse_redis_config_parse_url(&rc, conf->redis_url, err, sizeof(err)) != 0) {
            fprintf(stderr, "pulse-proxy: redis_url: %s\n", err);
            return 2;
        }
    }
    if (conf->redis_url[0] != '\0' || conf->live_max_streams > 0) {
        if ((gens = pulse_generations_create()) == NULL || (keyed = pulse_keyed_create((size_t)conf->cache_keyed_tags)) == NULL)
            return 1;
    }
    pulse_ratelimit_policy_t policies[PULSE_CLASS_COUNT];
    if (ratelimit_policies(conf, policies, err, sizeof(err)) != 0) {
        fprintf(stderr, "pulse-proxy: %s\n", err);
        return 2;
    }
    if ((ratelimit = pulse_ratelimit_create(policies, NULL)) == NULL)
        return 1;
    if (conf->otlp_endpoint[0] != '\0') {
        if (strncmp(conf->otlp_endpoint, "http://", 7) != 0 && strncmp(conf->otlp_endpoint, "https://", 8) != 0) {
            fprintf(stderr, "pulse-proxy: otlp_endpoint must be an http:// or https:// URL\n");
            return 2;
        }
        pulse_tracer_config_t tc = {.endpoint = conf->otlp_endpoint, .service_name = conf->trace_service_name};
        if ((tracer = pulse_tracer_create(&tc)) == NULL) {
            fprintf(stderr, "pulse-proxy: cannot start the span exporter\n");
            return 1;
        }
    }
    if ((replicas = pulse_replicas_create(conf, gens, err, sizeof(err))) == NULL && err[0] != '\0') {
        fprintf(stderr, "pulse-proxy: %s\n", err);
        return 2;
    }
    return 0;
}

/* h2o's global configuration from ours, and the site's handlers; 0 or -1 */
static int start_h2o(const pulse_config_t *conf)
{
    h2o_config_init(&globalconf);
    globalconf.server_name = h2o_iovec_init(H2O_STRLIT("pulse-proxy"));
    globalconf.max_request_entity_size = (size_t)conf->body_limit;
    /* slow clients: the whole request (head and body) must arrive within request_timeout_ms, which is also how long an
       idle keep-alive connection is kept (h2o arms it once per request, not per read: a client that trickles bytes is
       cut off all the same) */
    globalconf.http1.req_timeout = (uint64_t)conf->request_timeout_ms;
    globalconf.http2.idle_timeout = (uint64_t)conf->request_timeout_ms;
    h2o_hostconf_t *hostconf = h2o_config_register_host(&globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    if (pulse_site_register(hostconf) != 0) {
        fprintf(stderr, "pulse-proxy: cannot register handlers\n");
        return -1;
    }
    return 0;
}

/* SIGTERM or SIGINT: drains the loops, then stops and frees the services in the order their users go away */
static void shut_down(pulse_worker_t *workers, pthread_t *tids, int nthreads)
{
    pulse_log_msg("info", NULL, "shutting down: draining requests in flight");
    atomic_store(&stopping, 1);
    for (int i = 0; i < nthreads; i++)
        pthread_join(tids[i], NULL);
    int all_disposed = 1;
    for (int i = 0; i < nthreads; i++)
        all_disposed &= workers[i].disposed;
    if (all_disposed)
        free(workers);
    else
        kept_workers = workers;
    free(tids);
    if (all_disposed) /* otherwise a kept loop may still count into its shard */
        pulse_metrics_free();
    pulse_catalog_stop();
    if (all_disposed) /* a kept loop may still hold streams */
        pulse_live_destroy();
    if (all_disposed) /* no loop routes by its figures any more */
        pulse_replicas_destroy(replicas);
    pulse_generations_destroy(gens);
    pulse_keyed_destroy(keyed);
    if (all_disposed) /* every loop's Redis client is gone, and no check is pending */
        pulse_ratelimit_destroy(ratelimit);
    pulse_tracer_destroy(tracer); /* flushes the spans still queued */
    pulse_log_msg("info", NULL, "stopped");
    pulse_log_close();
    h2o_config_dispose(&globalconf);
    pulse_router_publish(NULL);
    pulse_config_publish(NULL);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *threads_opt = NULL;
    int ch;
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread */

    while ((ch = getopt_long(argc, argv, "c:t:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            threads_opt = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    char err[512];
    pulse_config_t *conf = pulse_config_load(config_path, err, sizeof(err));
    if (conf == NULL || (threads_opt != NULL && pulse_config_set(conf, "threads", threads_opt, err, sizeof(err)) != 0)) {
        fprintf(stderr, "pulse-proxy: %s\n", err);
        return 2;
    }
    int rc = start_services(conf);
    if (rc != 0)
        return rc;
    int nthreads = conf->threads;
    if (nthreads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }
    pulse_config_publish(conf);

    if (pulse_log_open(conf->access_log) != 0) {
        fprintf(stderr, "pulse-proxy: cannot open the access log %s: %s\n", conf->access_log, strerror(errno));
        return 1;
    }

    if (start_h2o(conf) != 0)
        return 1;

    pulse_worker_t *workers = calloc((size_t)nthreads, sizeof(pulse_worker_t));
    pthread_t *tids = calloc((size_t)nthreads, sizeof(pthread_t));
    if (workers == NULL || tids == NULL)
        return 1;
    if (pulse_metrics_init(nthreads) != 0)
        return 1;
    pulse_metrics_set_sources(ratelimit, tracer);
    if (pulse_live_init(nthreads, gens, keyed) != 0)
        return 1;
    pulse_metrics_set_replicas(replicas);
    for (int i = 0; i < nthreads; i++) {
        workers[i].index = i;
        workers[i].metrics = pulse_metrics_shard(i);
        if ((workers[i].listen_fd = open_listener(conf->listen)) < 0)
            return 1;
    }
    if (pulse_catalog_start(conf, gens, keyed, replicas) != 0) {
        fprintf(stderr, "pulse-proxy: cannot start the catalog thread\n");
        return 1;
    }
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&tids[i], NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "pulse-proxy: cannot start thread %d\n", i);
            return 1;
        }
    }
    pulse_log_msg("info", NULL, "listening on %s with %d threads", conf->listen, nthreads);

    for (;;) {
        int sig;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload();
            continue;
        }
        break;
    }
    shut_down(workers, tids, nthreads);
    return 0;
}
