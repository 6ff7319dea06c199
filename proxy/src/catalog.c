/*
 * catalog.c: the catalog thread (see catalog.h).
 *
 * It owns its PGconn; what it shares is a few flags and counters (atomics),
 * the route table, which it hands to the router with pulse_router_publish,
 * and the generations map (thread-safe, generations.h), which it feeds with
 * the pulse_invalidate notifications and vouches for as this process's
 * heartbeats come back (channel.h).
 *
 * Every query on the connection goes through cat_query, which acts on the
 * notifications libpq read along with the answer (cat_drain): one that
 * arrives while a query runs sits in libpq's buffer when the query returns,
 * and poll() would not report it before the next byte came.
 *
 * The generations of the published routes' tags are complete relative to
 * this connection: a (re)connect loads the catalog, and a load resyncs the
 * new routes' tags before it publishes them.  `synced` says that the next
 * heartbeat may vouch for the map: set by a resync, cleared by a reconnect
 * and by a lapse (nothing vouched for the map for its max lag: a silent
 * channel, or a frozen thread).  A heartbeat that finds it cleared asks for
 * a resync first, so a beat that comes back after a freeze never restores
 * trust by itself.  (A lapse is measured from when the last beat or resync
 * was processed, not from the instant vouched for: a resync slower than
 * the max lag must not call for another one.)
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "catalog.h"
#include "channel.h"
#include "generations.h"
#include "keyed.h"
#include "live.h"
#include "log.h"
#include "openapi.h"
#include "router.h"

#define CAT_QUERY_TIMEOUT_US 10000000ULL /* a catalog read or resync that takes longer: the connection is opened again */
#define CAT_RESYNC_RETRY_US 1000000ULL   /* a resync that failed (connection fine) is retried after this */

static pthread_t thread;
static char *conninfo;
static atomic_int stop_requested, reload_requested, started, connected;
static atomic_int ready; /* the routes were loaded from the database once: /ready (the connection may be down since) */
static _Atomic uint64_t resyncs, connects;
static pulse_generations_t *gens;  /* shared with the event loops; NULL: no cache */
static pulse_keyed_t *keyed;       /* the keyed tags known (keyed.h), shared with the event loops; NULL: no cache */
static pulse_replicas_t *replicas; /* stamps of the generations (replicas.h); NULL: no replicas */
static pulse_channel_t *chan;      /* the heartbeat; NULL: none (no cache, or invalidation_heartbeat_ms 0) */
static uint64_t query_timeout_us, beat_timeout_us, max_lag_us;
static int poll_ms = 250;
/* why the catalog cannot be read, for /ready ("" when it can): written by the catalog thread, read by any */
static pthread_mutex_t problem_lock = PTHREAD_MUTEX_INITIALIZER;
static char problem[PULSE_CATALOG_PROBLEM_MAX];
/* catalog thread only (or before it starts) */
static int load_failed;           /* the last read of the catalog failed: retried every few seconds */
static unsigned connect_failures; /* in a row; only some are logged */
static int reload_pending;        /* a pulse_reload notification arrived */
static int synced;                /* the next heartbeat may vouch for the map (see the header) */
static uint64_t heard_us;         /* when the last heartbeat vouched for the map, or the last resync ended */
static int resync_pending;        /* a heartbeat found `synced` cleared */
static uint64_t resync_retry_us;  /* a failed resync is not retried before */
static uint64_t listen_us;        /* when this connection's LISTEN took effect */
static uint64_t commit_us;        /* the last pulse_commit notification: when the bumps after it committed (live.h) */
static int lapse_logged;
static uint64_t lapse_since_us;

/* a heartbeat arrived: vouch for the map up to its send time, unless the map lapsed since its last resync */
static void cat_beat(const char *payload)
{
    uint64_t sent, now = pulse_generations_now_us();
    if (!pulse_channel_beat_received(chan, payload, now, &sent))
        return;
    if (now >= heard_us + max_lag_us)
        synced = 0;
    if (synced) {
        pulse_generations_vouch(gens, sent);
        heard_us = now;
    } else {
        resync_pending = 1;
    }
}

/* stamps the generations of the invalidations in `batch` with an LSN read on the primary after they arrived: an upper
   bound of each bump's commit (replicas.h: a fill may go to a replica only once it replayed the stamps of its tags).
   Returns that LSN (UINT64_MAX when it could not be read), which live refreshes also wait for (live.h) */
static uint64_t cat_stamp(PGconn *pg, PGnotify *batch)
{
    PGresult *res = pulse_channel_exec(pg, "SELECT pg_current_wal_insert_lsn()::text", 0, NULL, query_timeout_us, NULL, NULL);
    const char *lsn = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : NULL;
    for (PGnotify *note = batch; note != NULL; note = note->next)
        if (strcmp(note->relname, "pulse_invalidate") == 0) /* no LSN (the connection broke): the maximum, so that no fill of
                                                              the tag goes to a replica before a resync */
            pulse_replicas_stamp_bumps(replicas, note->extra, strlen(note->extra), lsn != NULL ? lsn : "FFFFFFFF/FFFFFFFF");
    uint64_t v = UINT64_MAX;
    if (lsn == NULL || pulse_replicas_lsn_parse(lsn, strlen(lsn), &v) != 0)
        v = UINT64_MAX;
    PQclear(res);
    return v;
}

/*
 * Acts on every notification libpq has read: invalidations, heartbeats, reloads, in the order they were sent. Called
 * with no query in flight (cat_query drains after its answer): with replicas, the batch's generations are stamped
 * first, by a query of its own (notifications it brings make the next batch).
 */
static void cat_drain(PGconn *pg)
{
    PGnotify *batch = NULL, **tail = &batch, *note;
    int invalidations = 0;
    uint64_t lsn = 0; /* the batch's stamp; 0: no replicas */
    while ((note = PQnotifies(pg)) != NULL) {
        *tail = note;
        tail = &note->next;
        invalidations += strcmp(note->relname, "pulse_invalidate") == 0;
    }
    if (invalidations != 0 && replicas != NULL && gens != NULL)
        lsn = cat_stamp(pg, batch);
    while ((note = batch) != NULL) {
        batch = note->next;
        if (strcmp(note->relname, "pulse_invalidate") == 0) {
            if (gens != NULL && pulse_generations_apply_notify(gens, keyed, note->extra, strlen(note->extra)) < 0)
                pulse_log_msg("warning", NULL, "catalog: ignoring the pulse_invalidate payload \"%.80s\"", note->extra);
            else
                pulse_live_notify(note->extra, strlen(note->extra), lsn, commit_us); /* after the map: live.h */
        } else if (strcmp(note->relname, "pulse_commit") == 0) {
            char *end;
            unsigned long long v = strtoull(note->extra, &end, 10);
            commit_us = end != note->extra && *end == '\0' ? (uint64_t)v : 0;
        } else if (chan != NULL && strcmp(note->relname, pulse_channel_name(chan)) == 0) {
            cat_beat(note->extra);
        } else {
            reload_pending = 1;
        }
        PQfreemem(note);
    }
}

/* a query on the catalog connection, then the notifications that came with its answer (libpq keeps those that arrive
   while it runs: poll() would not report them again); NULL: no answer in time or the connection broke (reset it) */
static PGresult *cat_query(PGconn *pg, const char *sql, int nparams, const char *const *params)
{
    PGresult *res = pulse_channel_exec(pg, sql, nparams, params, query_timeout_us, NULL, NULL);
    if (res != NULL)
        cat_drain(pg);
    return res;
}

/*
 * Reads the generations of every tag of `routes` (NULL: the published ones) with pulse.tag_generations and raises the map
 * to them: after a (re)connect, notifications sent while the connection was down are lost. Returns 1 when it did (the map
 * may then be vouched for from `*sent_us`, the instant before the query was sent), 0 when it failed on a healthy
 * connection, -1 when the connection must be reset.
 */
static int cat_resync(PGconn *pg, const pulse_routes_t *routes, uint64_t *sent_us)
{
    pulse_routes_t *held = NULL;
    size_t ntags = 0;
    const char **tags = NULL;
    char *lit = NULL;
    int rc = 0;
    *sent_us = pulse_generations_now_us();
    if (gens == NULL)
        return 1;
    if (routes == NULL)
        routes = held = pulse_router_acquire();
    if (routes != NULL)
        for (size_t i = 0; i < routes->n; i++)
            ntags += routes->v[i].ntags;
    if (ntags == 0) {
        rc = 1;
        goto out;
    }
    if ((tags = calloc(ntags, sizeof(*tags))) == NULL)
        goto out;
    ntags = 0;
    for (size_t i = 0; i < routes->n; i++)
        for (size_t j = 0; j < routes->v[i].ntags; j++)
            tags[ntags++] = routes->v[i].tags[j];
    if ((lit = pulse_generations_text_array(tags, ntags)) == NULL)
        goto out;
    pulse_generations_watch(gens, tags, ntags); /* a bump notified while the query runs is applied */
    const char *params[1] = {lit};
    PGresult *res = cat_query(pg, PULSE_REPLICAS_TAG_GENERATIONS_SQL, 1, params);
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        pulse_replicas_stamp(replicas, tags, ntags, PQgetvalue(res, 0, 1)); /* before they move (replicas.h) */
        int moved = pulse_generations_resync(gens, tags, ntags, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
        if (moved < 0)
            pulse_log_msg("error", NULL, "catalog: unexpected pulse.tag_generations result");
        else if (moved > 0)
            pulse_log_msg("info", NULL, "catalog: resync moved %d cache tags", moved);
        rc = moved >= 0;
    } else {
        pulse_log_msg("error", NULL, "catalog: cannot read the tag generations: %s",
                      res != NULL ? PQresultErrorMessage(res) : "no answer in time, or the connection broke");
        if (res == NULL || PQstatus(pg) == CONNECTION_BAD)
            rc = -1;
    }
    PQclear(res);
out:
    if (rc == 1) {
        synced = 1;
        resync_pending = 0;
        heard_us = pulse_generations_now_us();
        atomic_fetch_add(&resyncs, 1);
        pulse_live_resynced(); /* notifications may have been lost: every live subscription is refreshed once */
    } else {
        resync_retry_us = pulse_generations_now_us() + CAT_RESYNC_RETRY_US;
    }
    free(tags);
    free(lit);
    if (held != NULL)
        pulse_router_release(held);
    return rc;
}

/*
 * Takes the coverage snapshot of the keyed tags (keyed.h) when it is pending: after the listening connection (re)opened
 * (pulse_keyed_reset) or a keyed tag was evicted. Returns 0, or -1 when the connection must be reset.
 */
static int cat_cover(PGconn *pg)
{
    if (keyed == NULL || !pulse_keyed_coverage_pending(keyed))
        return 0;
    uint64_t epoch = pulse_keyed_coverage_epoch(keyed);
    PGresult *res = cat_query(pg, "SELECT pg_current_snapshot()::text", 0, NULL);
    int rc = res == NULL ? -1 : 0;
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        if (pulse_keyed_set_coverage(keyed, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), epoch) != 0)
            pulse_log_msg("error", NULL, "catalog: unexpected pg_current_snapshot() \"%.80s\"", PQgetvalue(res, 0, 0));
    } else if (res != NULL) {
        pulse_log_msg("error", NULL, "catalog: cannot read pg_current_snapshot(): %s", PQresultErrorMessage(res));
        if (PQstatus(pg) == CONNECTION_BAD)
            rc = -1;
    }
    PQclear(res);
    return rc;
}

static void cat_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* resyncs `routes`' tags, publishes them and vouches for the map; -1 when the connection must be reset */
static int cat_publish(PGconn *pg, pulse_routes_t *routes)
{
    uint64_t sent;
    int r = cat_resync(pg, routes, &sent);
    if (r < 0) {
        pulse_router_free(routes);
        return -1;
    }
    pulse_router_publish(routes);
    if (r == 1 && gens != NULL)
        pulse_generations_vouch(gens, sent);
    return 0;
}

/* sets the catalog's problem (NULL: none); logged once per distinct problem. Quotes, backslashes and control characters
   become "'" and " ": the text goes into /ready's JSON as it is. */
static void cat_set_problem(const char *text)
{
    char clean[sizeof(problem)];
    size_t i = 0;
    for (; text != NULL && text[i] != '\0' && i + 1 < sizeof(clean); i++)
        clean[i] = text[i] == '"' || text[i] == '\\' ? '\'' : (unsigned char)text[i] < 0x20 ? ' ' : text[i];
    clean[i] = '\0';
    pthread_mutex_lock(&problem_lock);
    int changed = strcmp(problem, clean) != 0;
    memcpy(problem, clean, i + 1);
    pthread_mutex_unlock(&problem_lock);
    if (changed && clean[0] != '\0')
        pulse_log_msg("error", NULL, "catalog: %s", clean);
}

int pulse_catalog_problem(char *buf, size_t len)
{
    if (len == 0)
        return 0;
    pthread_mutex_lock(&problem_lock);
    snprintf(buf, len, "%s", problem);
    pthread_mutex_unlock(&problem_lock);
    return buf[0] != '\0';
}

/* "1.10" > "1.9": numeric major.minor comparison; -1, 0, 1 */
static int cat_version_cmp(const char *a, const char *b)
{
    unsigned long ma = strtoul(a, (char **)&a, 10), mb = strtoul(b, (char **)&b, 10);
    unsigned long na = *a == '.' ? strtoul(a + 1, NULL, 10) : 0, nb = *b == '.' ? strtoul(b + 1, NULL, 10) : 0;
    return ma != mb ? (ma < mb ? -1 : 1) : na != nb ? (na < nb ? -1 : 1) : 0;
}

/* the catalog could not be read (`sqlstate`, `message`): says why in terms a DBA acts on (the extension is missing or
   older than this proxy needs), for the log and /ready */
static void cat_diagnose(PGconn *pg, const char *sqlstate, const char *message)
{
    char text[sizeof(problem)];
    PGresult *res = cat_query(pg, "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pulse'", 0, NULL);
    int ok = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK;
    if (ok && PQntuples(res) == 0)
        snprintf(text, sizeof(text), "the pulse extension is not installed in this database: CREATE EXTENSION pulse");
    else if (ok && cat_version_cmp(PQgetvalue(res, 0, 0), PULSE_EXTENSION_VERSION) < 0)
        snprintf(text, sizeof(text), "the pulse extension is version %.20s, this proxy needs %s: ALTER EXTENSION pulse UPDATE",
                 PQgetvalue(res, 0, 0), PULSE_EXTENSION_VERSION);
    else
        snprintf(text, sizeof(text), "cannot read pulse.endpoints (%s): %.*s", sqlstate != NULL ? sqlstate : "-",
                 (int)strcspn(message, "\n"), message);
    PQclear(res);
    cat_set_problem(text);
}

/* loads the catalog and publishes it; -1 when the connection must be reset */
static int cat_load(PGconn *pg)
{
    PGresult *res = cat_query(pg, PULSE_ROUTER_CATALOG_SQL, 0, NULL);
    if (res == NULL) {
        pulse_log_msg("error", NULL, "catalog: cannot read pulse.endpoints: no answer in time, or the connection broke");
        return -1;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        char state[8], message[256];
        snprintf(state, sizeof(state), "%s", sqlstate != NULL ? sqlstate : "-");
        snprintf(message, sizeof(message), "%s", PQerrorMessage(pg));
        PQclear(res);
        if (PQstatus(pg) == CONNECTION_BAD) {
            pulse_log_msg("error", NULL, "catalog: cannot read pulse.endpoints (%s): %s", state, message);
            return -1;
        }
        cat_diagnose(pg, state, message);
        load_failed = 1;
        /* the extension may not be there yet: serve no routes, retry on the next notification or reload */
        pulse_routes_t *empty = calloc(1, sizeof(*empty));
        return empty != NULL ? cat_publish(pg, empty) : 0;
    }
    char err[256];
    pulse_routes_t *routes = pulse_router_parse_catalog(PQgetvalue(res, 0, 0), err, sizeof(err));
    if (routes != NULL)
        routes->openapi_free = pulse_openapi_free;
    if (routes != NULL && (routes->openapi = pulse_openapi_build(routes, PQgetvalue(res, 0, 0), err, sizeof(err))) == NULL)
        pulse_log_msg("error", NULL, "catalog: no OpenAPI document: %s", err);
    PQclear(res);
    if (routes == NULL) {
        pulse_log_msg("error", NULL, "catalog: %s", err);
        return 0;
    }
    load_failed = 0;
    cat_set_problem(NULL);
    pulse_log_msg("info", NULL, "catalog: %zu endpoints loaded", routes->n);
    return cat_publish(pg, routes);
}

static void cat_notice(void *arg, const char *message)
{
    (void)arg;
    pulse_log_msg("info", NULL, "catalog: %.*s", (int)strcspn(message, "\n"), message);
}

static PGconn *cat_connect(void)
{
    char err[256], sql[256];
    PGconn *pg = pulse_channel_connect(conninfo, err, sizeof(err));
    if (pg == NULL) {
        if (connect_failures++ % 20 == 0) /* a database that stays down: every 10 s */
            pulse_log_msg("warning", NULL, "catalog: cannot connect (retrying every 500 ms): %s", err);
        return NULL;
    }
    PQsetNoticeProcessor(pg, cat_notice, NULL);
    connect_failures = 0;
    synced = resync_pending = reload_pending = 0;
    snprintf(sql, sizeof(sql),
             "SET application_name = 'pulse-proxy catalog'; LISTEN pulse_reload; LISTEN pulse_invalidate; LISTEN pulse_commit%s%s",
             chan != NULL ? "; LISTEN " : "", chan != NULL ? pulse_channel_name(chan) : "");
    PGresult *res = cat_query(pg, sql, 0, NULL);
    int ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    listen_us = pulse_generations_now_us();
    commit_us = 0;
    /* the keyed tags bumped while no connection listened are unknown: forget what is known, cover from here on */
    if (ok && keyed != NULL)
        pulse_keyed_reset(keyed);
    if (!ok || cat_load(pg) != 0 || cat_cover(pg) != 0) {
        PQfinish(pg);
        return NULL;
    }
    atomic_fetch_add(&connects, 1);
    return pg;
}

/* after every wake-up with a heartbeat: lapses (logged once), missed beats and, `connected`, a frozen connection (-1:
   reset it) */
static int cat_watch(int connected)
{
    uint64_t now = pulse_generations_now_us();
    pulse_channel_expire(chan, now);
    if (now >= heard_us + max_lag_us)
        synced = 0;
    if (!pulse_generations_vouched(gens, now)) {
        if (!lapse_logged) {
            uint64_t v = pulse_generations_vouched_as_of(gens);
            char ago[48] = "never vouched for";
            if (v != 0)
                snprintf(ago, sizeof(ago), "last vouched for %.0f ms ago", (double)(now - v) / 1000.0);
            pulse_log_msg("warning", NULL,
                          "invalidation channel unverified (%s): cached entries are not served until a heartbeat comes back "
                          "and the generations are resynced",
                          ago);
            lapse_logged = 1;
            lapse_since_us = now;
        }
    } else if (lapse_logged) {
        pulse_log_msg("info", NULL, "invalidation channel verified again after %.0f ms", (double)(now - lapse_since_us) / 1000.0);
        lapse_logged = 0;
    }
    if (connected && pulse_channel_overdue(chan, listen_us, now, beat_timeout_us)) {
        pulse_log_msg("warning", NULL,
                      "catalog: a heartbeat committed over %" PRIu64 " ms ago has not arrived: the listening connection "
                      "looks frozen, reconnecting",
                      beat_timeout_us / 1000);
        return -1;
    }
    return 0;
}

static void *cat_main(void *arg)
{
    PGconn *pg = arg;
    int waited_ms = 0;
    while (!atomic_load(&stop_requested)) {
        if (pg == NULL) {
            atomic_store(&connected, 0);
            if ((pg = cat_connect()) == NULL) {
                cat_sleep_ms(500);
                if (chan != NULL)
                    (void)cat_watch(0); /* the lapse is logged while the connection is down, too */
                continue;
            }
            atomic_store(&ready, 1);
            atomic_store(&connected, 1);
        }
        struct pollfd pfd = {PQsocket(pg), POLLIN, 0};
        int n = poll(&pfd, 1, poll_ms);
        int reload = atomic_exchange(&reload_requested, 0);
        if (load_failed && (waited_ms += poll_ms) >= 5000) { /* the extension may have been installed or updated */
            reload = 1;
            waited_ms = 0;
        }
        if (n > 0 && !PQconsumeInput(pg)) {
            char *msg = PQerrorMessage(pg);
            pulse_log_msg("warning", NULL, "catalog: connection lost: %.*s", (int)strcspn(msg, "\n"), msg);
            PQfinish(pg);
            pg = NULL;
            continue;
        }
        cat_drain(pg);
        int rc = PQstatus(pg) == CONNECTION_BAD ? -1 : 0;
        reload |= reload_pending;
        reload_pending = 0;
        if (rc == 0 && reload)
            rc = cat_load(pg);
        uint64_t sent;
        if (rc == 0 && !reload && resync_pending && pulse_generations_now_us() >= resync_retry_us &&
            (rc = cat_resync(pg, NULL, &sent)) == 1) {
            pulse_generations_vouch(gens, sent);
            rc = 0;
        }
        if (rc >= 0)
            rc = cat_cover(pg);
        if (rc >= 0 && chan != NULL)
            rc = cat_watch(1);
        if (rc < 0) {
            PQfinish(pg);
            pg = NULL;
        }
    }
    if (pg != NULL)
        PQfinish(pg);
    atomic_store(&connected, 0);
    return NULL;
}

int pulse_catalog_start(const pulse_config_t *conf, pulse_generations_t *g, pulse_keyed_t *k, pulse_replicas_t *rs)
{
    gens = g;
    keyed = k;
    replicas = rs;
    if ((conninfo = strdup(conf->pg_control_url)) == NULL)
        return -1;
    beat_timeout_us = (uint64_t)conf->invalidation_reconnect_ms * 1000;
    query_timeout_us = beat_timeout_us > CAT_QUERY_TIMEOUT_US ? beat_timeout_us : CAT_QUERY_TIMEOUT_US;
    if (gens != NULL && conf->invalidation_heartbeat_ms > 0) {
        uint64_t heartbeat_us = (uint64_t)conf->invalidation_heartbeat_ms * 1000,
                 delivery_us = (uint64_t)conf->invalidation_delivery_ms * 1000;
        max_lag_us = heartbeat_us + delivery_us;
        pulse_generations_set_max_lag(gens, max_lag_us);
        if ((chan = pulse_channel_create(delivery_us)) == NULL ||
            pulse_channel_start(chan, conf->pg_control_url, heartbeat_us, beat_timeout_us) != 0)
            return -1;
        poll_ms = conf->invalidation_heartbeat_ms / 2;
        poll_ms = poll_ms < 5 ? 5 : poll_ms > 250 ? 250 : poll_ms;
    }
    PGconn *pg = cat_connect();
    atomic_store(&ready, pg != NULL);
    atomic_store(&connected, pg != NULL);
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
    if (atomic_load(&started)) {
        atomic_store(&stop_requested, 1);
        pthread_join(thread, NULL);
        atomic_store(&started, 0);
    }
    pulse_channel_destroy(chan);
    chan = NULL;
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

pulse_catalog_channel_state_t pulse_catalog_channel_state(void)
{
    if (gens == NULL || !atomic_load(&started))
        return PULSE_CATALOG_CHANNEL_OFF;
    if (!atomic_load(&connected))
        return PULSE_CATALOG_CHANNEL_DOWN;
    if (chan == NULL)
        return PULSE_CATALOG_CHANNEL_UNCHECKED;
    return pulse_generations_vouched(gens, pulse_generations_now_us()) ? PULSE_CATALOG_CHANNEL_VERIFIED
                                                                       : PULSE_CATALOG_CHANNEL_UNVERIFIED;
}

void pulse_catalog_channel_stats(pulse_catalog_channel_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->state = pulse_catalog_channel_state();
    if (out->state == PULSE_CATALOG_CHANNEL_OFF)
        return;
    uint64_t now = pulse_generations_now_us(), v = pulse_generations_vouched_as_of(gens);
    if (chan != NULL) {
        pulse_channel_stats_t st;
        pulse_channel_stats(chan, &st);
        out->beats_sent = st.sent;
        out->beats_failed = st.failed;
        out->beats_received = st.received;
        out->beats_missed = st.missed;
        out->lag_seconds = v != 0 && now > v ? (double)(now - v) / 1e6 : 0;
    }
    out->unverified_seconds = (double)pulse_generations_unverified_us(gens, now) / 1e6;
    if (keyed != NULL)
        pulse_keyed_stats(keyed, &out->keyed);
    out->resyncs = atomic_load(&resyncs);
    uint64_t c = atomic_load(&connects);
    out->reconnects = c > 0 ? c - 1 : 0;
}
