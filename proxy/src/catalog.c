/*
 * catalog.c: the catalog thread (see catalog.h).
 *
 * It owns its PGconn; the only state it shares is three flags (atomics),
 * the route table, which it hands to the router with pulse_router_publish,
 * and the generations map (thread-safe, generations.h), which it feeds with
 * the pulse_invalidate notifications and resyncs after every (re)connect
 * and every catalog load (new routes may bring new tags).
 */
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "catalog.h"
#include "generations.h"
#include "log.h"
#include "router.h"

static pthread_t thread;
static char *conninfo;
static atomic_int stop_requested, reload_requested, ready, started;
static int load_failed;           /* the last read of the catalog failed: retried every few seconds (catalog thread only) */
static unsigned connect_failures; /* in a row; only some are logged (catalog thread, or before it starts) */
static pulse_generations_t *gens; /* shared with the event loops; NULL: no cache */

static pulse_replicas_t *replicas; /* stamps of the generations (replicas.h); NULL: no replicas */

/*
 * Reads the generations of every tag of the current routes with pulse.tag_generations and raises the map to them: after
 * a (re)connect, notifications sent while the connection was down are lost. Returns -1 when the connection must be reset.
 */
static int cat_resync(PGconn *pg)
{
    if (gens == NULL)
        return 0;
    pulse_routes_t *routes = pulse_router_acquire();
    size_t ntags = 0;
    const char **tags = NULL;
    char *lit = NULL;
    int rc = 0;
    if (routes != NULL)
        for (size_t i = 0; i < routes->n; i++)
            ntags += routes->v[i].ntags;
    if (ntags == 0 || (tags = calloc(ntags, sizeof(*tags))) == NULL)
        goto out;
    ntags = 0;
    for (size_t i = 0; i < routes->n; i++)
        for (size_t j = 0; j < routes->v[i].ntags; j++)
            tags[ntags++] = routes->v[i].tags[j];
    if ((lit = pulse_generations_text_array(tags, ntags)) == NULL)
        goto out;
    const char *params[1] = {lit};
    PGresult *res = PQexecParams(pg, PULSE_REPLICAS_TAG_GENERATIONS_SQL, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        pulse_replicas_stamp(replicas, tags, ntags, PQgetvalue(res, 0, 1)); /* before they move (replicas.h) */
        int moved = pulse_generations_resync(gens, tags, ntags, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
        if (moved < 0)
            pulse_log_msg("error", NULL, "catalog: unexpected pulse.tag_generations result");
        else if (moved > 0)
            pulse_log_msg("info", NULL, "catalog: resync moved %d cache tags", moved);
    } else {
        pulse_log_msg("error", NULL, "catalog: cannot read the tag generations: %s", PQerrorMessage(pg));
        if (PQstatus(pg) == CONNECTION_BAD)
            rc = -1;
    }
    PQclear(res);
out:
    free(tags);
    free(lit);
    if (routes != NULL)
        pulse_router_release(routes);
    return rc;
}

static void cat_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* loads the catalog and publishes it; -1 when the connection must be reset */
static int cat_load(PGconn *pg)
{
    PGresult *res = PQexec(pg, PULSE_ROUTER_CATALOG_SQL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        pulse_log_msg("error", NULL, "catalog: cannot read pulse.endpoints (%s): %s", sqlstate != NULL ? sqlstate : "-",
                      PQerrorMessage(pg));
        PQclear(res);
        if (PQstatus(pg) == CONNECTION_BAD)
            return -1;
        load_failed = 1;
        /* the extension may not be there yet: serve no routes, retry on the next notification or reload */
        pulse_routes_t *empty = calloc(1, sizeof(*empty));
        if (empty != NULL)
            pulse_router_publish(empty);
        return 0;
    }
    char err[256];
    pulse_routes_t *routes = pulse_router_parse_catalog(PQgetvalue(res, 0, 0), err, sizeof(err));
    PQclear(res);
    if (routes == NULL) {
        pulse_log_msg("error", NULL, "catalog: %s", err);
        return 0;
    }
    load_failed = 0;
    pulse_log_msg("info", NULL, "catalog: %zu endpoints loaded", routes->n);
    pulse_router_publish(routes);
    return cat_resync(pg);
}

static void cat_notice(void *arg, const char *message)
{
    (void)arg;
    pulse_log_msg("info", NULL, "catalog: %.*s", (int)strcspn(message, "\n"), message);
}

static PGconn *cat_connect(void)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        char *msg = PQerrorMessage(pg);
        if (connect_failures++ % 20 == 0) /* a database that stays down: every 10 s */
            pulse_log_msg("warning", NULL, "catalog: cannot connect (retrying every 500 ms): %.*s", (int)strcspn(msg, "\n"), msg);
        PQfinish(pg);
        return NULL;
    }
    PQsetNoticeProcessor(pg, cat_notice, NULL);
    connect_failures = 0;
    PGresult *res = PQexec(pg, "SET application_name = 'pulse-proxy catalog'; LISTEN pulse_reload; LISTEN pulse_invalidate");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok || cat_load(pg) != 0) {
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static void *cat_main(void *arg)
{
    PGconn *pg = arg;
    int polls = 0;
    while (!atomic_load(&stop_requested)) {
        if (pg == NULL) {
            atomic_store(&ready, 0);
            if ((pg = cat_connect()) == NULL) {
                cat_sleep_ms(500);
                continue;
            }
            atomic_store(&ready, 1);
        }
        struct pollfd pfd = {PQsocket(pg), POLLIN, 0};
        int n = poll(&pfd, 1, 250);
        int reload = atomic_exchange(&reload_requested, 0);
        if (load_failed && ++polls % 20 == 0) /* about every 5 s: the extension may have been installed or updated */
            reload = 1;
        if (n > 0) {
            if (!PQconsumeInput(pg)) {
                char *msg = PQerrorMessage(pg);
                pulse_log_msg("warning", NULL, "catalog: connection lost: %.*s", (int)strcspn(msg, "\n"), msg);
                PQfinish(pg);
                pg = NULL;
                continue;
            }
            PGnotify *note;
            while ((note = pulse_replicas_notifies(replicas, pg)) != NULL) { /* PQnotifies, each stamped first: replicas.h */
                if (strcmp(note->relname, "pulse_invalidate") != 0)
                    reload = 1;
                else if (gens != NULL && pulse_generations_apply_notify(gens, note->extra, strlen(note->extra)) < 0)
                    pulse_log_msg("warning", NULL, "catalog: ignoring the pulse_invalidate payload \"%.80s\"", note->extra);
                PQfreemem(note);
            }
        }
        if (PQstatus(pg) == CONNECTION_BAD) {
            PQfinish(pg);
            pg = NULL;
            continue;
        }
        if (reload && cat_load(pg) != 0) {
            PQfinish(pg);
            pg = NULL;
        }
    }
    if (pg != NULL)
        PQfinish(pg);
    atomic_store(&ready, 0);
    return NULL;
}

int pulse_catalog_start(const char *ci, pulse_generations_t *g, pulse_replicas_t *rs)
{
    gens = g;
    replicas = rs;
    conninfo = strdup(ci);
    if (conninfo == NULL)
        return -1;
    PGconn *pg = cat_connect();
    atomic_store(&ready, pg != NULL);
    if (pg == NULL) { /* serve 404s rather than nothing until the database is there */
        pulse_routes_t *empty = calloc(1, sizeof(*empty));
        if (empty != NULL)
            pulse_router_publish(empty);
    }
    if (pthread_create(&thread, NULL, cat_main, pg) != 0) {
        PQfinish(pg);
        return -1;
    }
    atomic_store(&started, 1);
    return 0;
}

void pulse_catalog_stop(void)
{
    if (!atomic_load(&started))
        return;
    atomic_store(&stop_requested, 1);
    pthread_join(thread, NULL);
    atomic_store(&started, 0);
    free(conninfo);
    conninfo = NULL;
}

void pulse_catalog_request_reload(void)
{
    atomic_store(&reload_requested, 1);
}

int pulse_catalog_ready(void)
{
    return atomic_load(&ready);
}
