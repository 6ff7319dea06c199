/*
 * replicas_monitor.c: the process-wide side of read replicas (replicas.h):
 * one thread per server measures its WAL position every replica_check_ms
 * (every few milliseconds for the replicas while a loop has calls waiting
 * for a replay), on a blocking connection of its own with a deadline on
 * every query, and publishes the figures the loops route by.
 *
 * - The primary's thread samples pg_current_wal_flush_lsn() (what the
 *   replicas can have received) into a history of (time, LSN).
 * - A replica's thread reads pg_last_wal_replay_lsn() and now() -
 *   pg_last_xact_replay_timestamp(), and estimates its lag from the history
 *   (pulse_replicas_lag_ms): an upper bound, 0 when it replayed the
 *   primary's latest sample.  A replica that cannot be reached, fails a
 *   query, or is not in recovery (promoted, or not a standby) is down; it is
 *   retried with a doubling backoff (100 ms to 2 s).
 *
 * Threads and ownership: the figures of each server are atomics written by
 * its thread only and read by any thread; the history is guarded by
 * hist_mu (written by the primary's thread, read by the replicas'); `mu`
 * and `cv` only wake the threads (stop, and the loops' kick).  The stamps
 * and generations maps are thread-safe themselves (generations.h).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libpq-fe.h>
#include "log.h"
#include "replicas_monitor.h"

#define HIST_MAX 1024         /* samples of the primary's WAL position kept (about 100 s at 100 ms) */
#define QUERY_TIMEOUT_MS 1000 /* a measuring query unanswered for this long: the server is down */
#define BACKOFF_MIN_MS 100    /* first wait before connecting again to a server that is down */
#define BACKOFF_MAX_MS 2000   /* longest */
#define KICKED_MS 5           /* how often the replicas are measured while a loop waits for a replay */

#define PRIMARY_SQL "SELECT pg_current_wal_flush_lsn()::text"
#define REPLICA_SQL                                                                                                                \
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "                                                                 \
    "coalesce((extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint, -1)"

typedef struct mon_server_t {
    pulse_replicas_t *rs;
    size_t index; /* 0: the primary */
    char name[16];
    char *conninfo;
    pthread_t thread;
    int started;
    /* the figures: written by this server's thread, read by any thread */
    _Atomic int state;
    _Atomic uint64_t lsn;
    _Atomic int64_t lag_ms;
    _Atomic uint64_t lag_bytes;
    _Atomic uint64_t measured_ms; /* monotonic time of the last successful measurement; 0: never */
    uint64_t last_ms;             /* this thread's: when it last measured */
} mon_server_t;

struct pulse_replicas_t {
    mon_server_t servers[PULSE_REPLICAS_MAX + 1];
    size_t n; /* replicas */
    int check_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;           /* under mu */
    atomic_int waiting; /* calls the loops keep waiting for a replay */
    pthread_mutex_t hist_mu;
    pulse_replicas_sample_t hist[HIST_MAX];
    size_t nhist;
    pulse_generations_t *stamps; /* tag -> LSN stamp (replicas.c) */
    pulse_generations_t *gens;   /* the process's generations; NULL: no cache */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- LSNs --------------------------------------------------------------------------------------------------------- */

static int hex_part(const char *s, size_t len, uint32_t *out)
{
    if (len == 0 || len > 8)
        return -1;
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

int pulse_replicas_lsn_parse(const char *s, size_t len, uint64_t *lsn)
{
    const char *slash = memchr(s, '/', len);
    uint32_t hi, lo;
    if (slash == NULL || hex_part(s, (size_t)(slash - s), &hi) != 0 || hex_part(slash + 1, len - (size_t)(slash - s) - 1, &lo) != 0)
        return -1;
    *lsn = (uint64_t)hi << 32 | lo;
    return 0;
}

void pulse_replicas_lsn_format(uint64_t lsn, char buf[PULSE_REPLICAS_LSN_SIZE])
{
    snprintf(buf, PULSE_REPLICAS_LSN_SIZE, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
}

int64_t pulse_replicas_lag_ms(const pulse_replicas_sample_t *hist, size_t n, uint64_t now_ms, uint64_t replay, int64_t ts_lag_ms)
{
    if (n == 0)
        return ts_lag_ms;
    if (replay >= hist[n - 1].lsn)
        return 0;
    /* the latest sample the replica replayed: the primary had no more than that then, so the replica misses at most what
       came after it */
    size_t lo = 0, hi = n; /* samples' LSNs never decrease: the first one beyond `replay` */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (hist[mid].lsn <= replay)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) /* older than the history: only the replay timestamp tells */
        return ts_lag_ms;
    int64_t h = now_ms > hist[lo - 1].at_ms ? (int64_t)(now_ms - hist[lo - 1].at_ms) : 0;
    return ts_lag_ms >= 0 && ts_lag_ms < h ? ts_lag_ms : h;
}

/* sleeps until `until_ms` (monotonic) or stop; a replica's thread wakes every KICKED_MS while a loop waits for a replay;
   returns whether to stop */
static int mon_sleep(mon_server_t *s, uint64_t until_ms)
{
    pulse_replicas_t *rs = s->rs;
    int stop;
    pthread_mutex_lock(&rs->mu);
    for (;;) {
        if ((stop = rs->stop))
            break;
        uint64_t now = mono_ms(), due = until_ms;
        if (s->index != 0 && atomic_load(&rs->waiting) > 0 && s->last_ms + KICKED_MS < due)
            due = s->last_ms + KICKED_MS;
        if (now >= due)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (due - now) * 1000000;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&rs->cv, &rs->mu, &ts);
    }
    pthread_mutex_unlock(&rs->mu);
    return stop;
}

/* runs `sql` on `pg`, waiting at most QUERY_TIMEOUT_MS; returns its one-row result, or NULL with the reason in `why` */
static PGresult *mon_query(PGconn *pg, const char *sql, char *why, size_t whylen)
{
    if (!PQsendQuery(pg, sql)) {
        snprintf(why, whylen, "%s", PQerrorMessage(pg));
        return NULL;
    }
    uint64_t deadline = mono_ms() + QUERY_TIMEOUT_MS;
    PGresult *res = NULL, *r;
    for (;;) {
        while (!PQisBusy(pg)) {
            if ((r = PQgetResult(pg)) == NULL) {
                if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
                    return res;
                snprintf(why, whylen, "%s", res != NULL ? PQresultErrorMessage(res) : "no result");
                PQclear(res);
                return NULL;
            }
            if (res == NULL)
                res = r;
            else
                PQclear(r);
        }
        uint64_t now = mono_ms();
        struct pollfd pfd = {PQsocket(pg), POLLIN, 0};
        int n = now < deadline ? poll(&pfd, 1, (int)(deadline - now)) : 0;
        if (n == 0 || (n < 0 && errno != EINTR) || (n > 0 && !PQconsumeInput(pg))) {
            snprintf(why, whylen, "%s", n == 0 ? "no answer within 1 s" : PQerrorMessage(pg));
            PQclear(res);
            return NULL;
        }
    }
}

static void mon_set_state(mon_server_t *s, int up, const char *why)
{
    int was = atomic_exchange(&s->state, up ? PULSE_REPLICAS_STATE_UP : PULSE_REPLICAS_STATE_DOWN);
    if (was == (up ? PULSE_REPLICAS_STATE_UP : PULSE_REPLICAS_STATE_DOWN))
        return;
    if (up)
        pulse_log_msg("info", NULL, "replicas: %s is up", s->name);
    else
        pulse_log_msg("warning", NULL, "replicas: %s is down: %.*s", s->name, (int)strcspn(why, "\n"), why);
}

/* one measurement of the primary; returns -1 with `why` when the connection must be reset */
static int mon_measure_primary(mon_server_t *s, PGconn *pg, char *why, size_t whylen)
{
    pulse_replicas_t *rs = s->rs;
    uint64_t sent = mono_ms(), lsn;
    PGresult *res = mon_query(pg, PRIMARY_SQL, why, whylen);
    if (res == NULL)
        return -1;
    int ok = pulse_replicas_lsn_parse(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), &lsn) == 0;
    PQclear(res);
    if (!ok) {
        snprintf(why, whylen, "unexpected pg_current_wal_flush_lsn()");
        return -1;
    }
    pthread_mutex_lock(&rs->hist_mu);
    if (rs->nhist == HIST_MAX) { /* drop the older half */
        memmove(rs->hist, rs->hist + HIST_MAX / 2, sizeof(rs->hist[0]) * (HIST_MAX - HIST_MAX / 2));
        rs->nhist -= HIST_MAX / 2;
    }
    if (rs->nhist == 0 || lsn >= rs->hist[rs->nhist - 1].lsn) /* a primary restored from a backup would go back: not a sample */
        rs->hist[rs->nhist++] = (pulse_replicas_sample_t){sent, lsn};
    pthread_mutex_unlock(&rs->hist_mu);
    atomic_store(&s->lsn, lsn);
    return 0;
}

/* one measurement of a replica; returns -1 with `why` when the connection must be reset, 1 when it is not a standby */
static int mon_measure_replica(mon_server_t *s, PGconn *pg, char *why, size_t whylen)
{
    pulse_replicas_t *rs = s->rs;
    PGresult *res = mon_query(pg, REPLICA_SQL, why, whylen);
    if (res == NULL)
        return -1;
    uint64_t now = mono_ms(), replay;
    int standby = strcmp(PQgetvalue(res, 0, 0), "t") == 0 && !PQgetisnull(res, 0, 1) &&
                  pulse_replicas_lsn_parse(PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1), &replay) == 0;
    int64_t ts_lag = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    PQclear(res);
    if (!standby) {
        snprintf(why, whylen, "not a standby (pg_is_in_recovery() is false): promoted, or not a replica");
        return 1;
    }
    pthread_mutex_lock(&rs->hist_mu);
    int64_t lag = pulse_replicas_lag_ms(rs->hist, rs->nhist, now, replay, ts_lag);
    uint64_t primary = rs->nhist != 0 ? rs->hist[rs->nhist - 1].lsn : 0;
    pthread_mutex_unlock(&rs->hist_mu);
    atomic_store(&s->lsn, replay);
    atomic_store(&s->lag_ms, lag);
    atomic_store(&s->lag_bytes, primary > replay ? primary - replay : 0);
    return 0;
}

static PGconn *mon_connect(mon_server_t *s, char *why, size_t whylen)
{
    char app[64];
    snprintf(app, sizeof(app), "pulse-proxy monitor %s", s->name);
    /* the connection string comes last: what it says overrides these defaults */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"2", app, s->conninfo, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(why, whylen, "cannot connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static void *mon_main(void *arg)
{
    mon_server_t *s = arg;
    PGconn *pg = NULL;
    uint64_t backoff = 0;
    char why[256];
    for (;;) {
        int rc = -1;
        s->last_ms = mono_ms();
        if (pg == NULL)
            pg = mon_connect(s, why, sizeof(why));
        if (pg != NULL)
            rc = s->index == 0 ? mon_measure_primary(s, pg, why, sizeof(why)) : mon_measure_replica(s, pg, why, sizeof(why));
        if (rc == 0) {
            atomic_store(&s->measured_ms, mono_ms());
            mon_set_state(s, 1, NULL);
            backoff = 0;
            if (mon_sleep(s, s->last_ms + (uint64_t)s->rs->check_ms))
                break;
            continue;
        }
        mon_set_state(s, 0, why);
        if (rc < 0 && pg != NULL) {
            PQfinish(pg);
            pg = NULL;
        }
        backoff = backoff == 0 ? BACKOFF_MIN_MS : backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        if (mon_sleep(s, mono_ms() + backoff))
            break;
    }
    PQfinish(pg);
    return NULL;
}

pulse_replicas_t *pulse_replicas_create(const pulse_config_t *conf, pulse_generations_t *gens, char *err, size_t errlen)
{
    err[0] = '\0';
    if (conf->replica_urls[0] == '\0')
        return NULL;
    pulse_replicas_t *rs = calloc(1, sizeof(*rs));
    if (rs == NULL || (rs->stamps = pulse_generations_create()) == NULL) {
        free(rs);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rs->gens = gens;
    rs->check_ms = conf->replica_check_ms;
    pthread_mutex_init(&rs->mu, NULL);
    pthread_mutex_init(&rs->hist_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rs->cv, &ca);
    pthread_condattr_destroy(&ca);
    const char *p = conf->pg_url;
    for (size_t i = 0; p != NULL; i++) {
        if (i > PULSE_REPLICAS_MAX) {
            snprintf(err, errlen, "replica_urls: more than %d replicas", PULSE_REPLICAS_MAX);
            pulse_replicas_destroy(rs);
            return NULL;
        }
        mon_server_t *s = &rs->servers[i];
        const char *end = i == 0 ? p + strlen(p) : strchr(p, '\n');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        s->rs = rs;
        s->index = i;
        if (i == 0)
            snprintf(s->name, sizeof(s->name), "primary");
        else
            snprintf(s->name, sizeof(s->name), "replica%zu", i);
        atomic_store(&s->lag_ms, -1);
        if ((s->conninfo = strndup(p, len)) == NULL) {
            snprintf(err, errlen, "out of memory");
            pulse_replicas_destroy(rs);
            return NULL;
        }
        rs->n = i;
        p = i == 0 ? conf->replica_urls : end != NULL ? end + 1 : NULL;
    }
    for (size_t i = 0; i <= rs->n; i++) {
        if (pthread_create(&rs->servers[i].thread, NULL, mon_main, &rs->servers[i]) != 0) {
            snprintf(err, errlen, "cannot start the replica monitor threads");
            pulse_replicas_destroy(rs);
            return NULL;
        }
        rs->servers[i].started = 1;
    }
    return rs;
}

void pulse_replicas_destroy(pulse_replicas_t *rs)
{
    if (rs == NULL)
        return;
    pthread_mutex_lock(&rs->mu);
    rs->stop = 1;
    pthread_cond_broadcast(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
    for (size_t i = 0; i <= rs->n; i++) {
        if (rs->servers[i].started)
            pthread_join(rs->servers[i].thread, NULL);
        free(rs->servers[i].conninfo);
    }
    pthread_cond_destroy(&rs->cv);
    pthread_mutex_destroy(&rs->mu);
    pthread_mutex_destroy(&rs->hist_mu);
    pulse_generations_destroy(rs->stamps);
    free(rs);
}

size_t pulse_replicas_count(const pulse_replicas_t *rs)
{
    return rs != NULL ? rs->n : 0;
}

void pulse_replicas_status(const pulse_replicas_t *rs, size_t i, pulse_replicas_status_t *out)
{
    mon_server_t *s = (mon_server_t *)&rs->servers[i]; /* atomics are read, never written, here */
    uint64_t at = atomic_load(&s->measured_ms), now = mono_ms();
    out->name = s->name;
    out->state = (pulse_replicas_state_t)atomic_load(&s->state);
    out->lsn = atomic_load(&s->lsn);
    out->lag_ms = atomic_load(&s->lag_ms);
    out->lag_bytes = atomic_load(&s->lag_bytes);
    out->measured_age_ms = at == 0 ? UINT64_MAX : now > at ? now - at : 0;
    /* a thread stuck on a hung server measures nothing: its last figures are too old to route by */
    if (out->measured_age_ms > 3 * (uint64_t)rs->check_ms + QUERY_TIMEOUT_MS)
        out->state = PULSE_REPLICAS_STATE_DOWN;
}

void pulse_replicas_kick(pulse_replicas_t *rs, int delta)
{
    if (rs == NULL)
        return;
    if (atomic_fetch_add(&rs->waiting, delta) == 0 && delta > 0) {
        pthread_mutex_lock(&rs->mu);
        pthread_cond_broadcast(&rs->cv);
        pthread_mutex_unlock(&rs->mu);
    }
}

pulse_generations_t *pulse_replicas_stamps(pulse_replicas_t *rs)
{
    return rs != NULL ? rs->stamps : NULL;
}

pulse_generations_t *pulse_replicas_generations(pulse_replicas_t *rs)
{
    return rs != NULL ? rs->gens : NULL;
}
