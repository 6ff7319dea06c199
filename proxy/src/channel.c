/*
 * channel.c: the heartbeat of the invalidation channel and the libpq helpers
 * of its connections (channel.h).
 *
 * Threads and ownership: the heartbeat thread owns its PGconn; the ring of
 * beats and the counters are shared with the catalog thread (which reports
 * arrivals) and /metrics (which reads the counters), under `_lock`.  Every
 * beat is one slot, reused after PULSE_CHANNEL_RING beats.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "channel.h"
#include "generations.h"
#include "log.h"

enum { SLOT_FREE, SLOT_PENDING, SLOT_COMMITTED, SLOT_FAILED, SLOT_RECEIVED };

typedef struct chan_slot_t {
    uint64_t seq, sent_us, committed_us;
    int state;
    int missed; /* counted as missed already */
} chan_slot_t;

struct pulse_channel_t {
    char _name[64];
    uint64_t _delivery_us;
    pthread_mutex_t _lock; /* guards the ring, _next_seq and _st */
    chan_slot_t _ring[PULSE_CHANNEL_RING];
    uint64_t _next_seq;
    pulse_channel_stats_t _st;
    /* the heartbeat thread */
    pthread_t _thread;
    int _running;
    atomic_int _stop;
    char *_conninfo;
    uint64_t _interval_us, _timeout_us;
};

pulse_channel_t *pulse_channel_create(uint64_t delivery_us)
{
    pulse_channel_t *c = calloc(1, sizeof(*c));
    uint64_t rnd = 0;
    if (c == NULL)
        return NULL;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = pulse_generations_now_us() ^ ((uint64_t)getpid() << 32);
    snprintf(c->_name, sizeof(c->_name), "pulse_heartbeat_%d_%016" PRIx64, (int)getpid(), rnd);
    c->_delivery_us = delivery_us;
    c->_next_seq = 1;
    pthread_mutex_init(&c->_lock, NULL);
    return c;
}

const char *pulse_channel_name(const pulse_channel_t *c)
{
    return c->_name;
}

uint64_t pulse_channel_beat_begin(pulse_channel_t *c, uint64_t now_us)
{
    pthread_mutex_lock(&c->_lock);
    uint64_t seq = c->_next_seq++;
    c->_ring[seq % PULSE_CHANNEL_RING] = (chan_slot_t){.seq = seq, .sent_us = now_us, .state = SLOT_PENDING};
    pthread_mutex_unlock(&c->_lock);
    return seq;
}

void pulse_channel_beat_end(pulse_channel_t *c, uint64_t seq, uint64_t now_us, int ok)
{
    pthread_mutex_lock(&c->_lock);
    chan_slot_t *s = &c->_ring[seq % PULSE_CHANNEL_RING];
    if (ok)
        c->_st.sent++;
    else
        c->_st.failed++;
    if (s->seq == seq) {
        s->committed_us = now_us;
        if (s->state == SLOT_PENDING) /* a beat may arrive before its query's answer is read */
            s->state = ok ? SLOT_COMMITTED : SLOT_FAILED;
    }
    pthread_mutex_unlock(&c->_lock);
}

int pulse_channel_beat_received(pulse_channel_t *c, const char *payload, uint64_t now_us, uint64_t *sent_us)
{
    uint64_t seq = 0;
    size_t i;
    (void)now_us;
    for (i = 0; payload[i] >= '0' && payload[i] <= '9' && i < 19; i++)
        seq = seq * 10 + (uint64_t)(payload[i] - '0');
    if (i == 0 || payload[i] != '\0')
        return 0;
    int found = 0;
    pthread_mutex_lock(&c->_lock);
    chan_slot_t *s = &c->_ring[seq % PULSE_CHANNEL_RING];
    /* a beat whose query failed (timed out, say) may have committed all the same: its send time still vouches */
    if (s->seq == seq && s->state != SLOT_FREE && s->state != SLOT_RECEIVED) {
        s->state = SLOT_RECEIVED;
        c->_st.received++;
        *sent_us = s->sent_us;
        found = 1;
    }
    pthread_mutex_unlock(&c->_lock);
    return found;
}

void pulse_channel_expire(pulse_channel_t *c, uint64_t now_us)
{
    pthread_mutex_lock(&c->_lock);
    for (size_t i = 0; i < PULSE_CHANNEL_RING; i++) {
        chan_slot_t *s = &c->_ring[i];
        if ((s->state == SLOT_PENDING || s->state == SLOT_COMMITTED) && !s->missed && s->sent_us + c->_delivery_us <= now_us) {
            s->missed = 1;
            c->_st.missed++;
        }
    }
    pthread_mutex_unlock(&c->_lock);
}

int pulse_channel_overdue(pulse_channel_t *c, uint64_t since_us, uint64_t now_us, uint64_t timeout_us)
{
    int overdue = 0;
    pthread_mutex_lock(&c->_lock);
    for (size_t i = 0; i < PULSE_CHANNEL_RING && !overdue; i++) {
        chan_slot_t *s = &c->_ring[i];
        overdue = s->state == SLOT_COMMITTED && s->sent_us > since_us && s->committed_us + timeout_us <= now_us;
    }
    pthread_mutex_unlock(&c->_lock);
    return overdue;
}

void pulse_channel_stats(pulse_channel_t *c, pulse_channel_stats_t *out)
{
    pthread_mutex_lock(&c->_lock);
    *out = c->_st;
    pthread_mutex_unlock(&c->_lock);
}

/* --- libpq helpers ------------------------------------------------------------------------------------------------- */

PGconn *pulse_channel_connect(const char *conninfo, char *err, size_t errlen)
{
    /* defaults first: the expanded dbname (the user's string) comes after them and overrides what it sets */
    static const char *const keys[] = {"connect_timeout",     "keepalives",       "keepalives_idle", "keepalives_count",
                                       "keepalives_interval", "tcp_user_timeout", "dbname",          NULL};
    const char *values[] = {"5", "1", "5", "3", "2", "10000", conninfo, NULL};
    PGconn *pg = PQconnectdbParams(keys, values, 1);
    if (pg == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(pg);
        snprintf(err, errlen, "%.*s", (int)strcspn(msg, "\n"), msg);
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static int chan_failed(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
}

PGresult *pulse_channel_exec(PGconn *pg, const char *sql, int nparams, const char *const *params, uint64_t timeout_us,
                             pulse_channel_notify_cb on_notify, void *arg)
{
    uint64_t deadline = pulse_generations_now_us() + timeout_us;
    PGresult *keep = NULL;
    int sent = nparams == 0 ? PQsendQuery(pg, sql) : PQsendQueryParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
    if (!sent)
        return NULL;
    for (;;) {
        while (PQisBusy(pg)) {
            uint64_t now = pulse_generations_now_us();
            if (now >= deadline)
                goto Fail;
            struct pollfd pfd = {PQsocket(pg), POLLIN, 0};
            int n = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
            if (n < 0 && errno != EINTR)
                goto Fail;
            if (n > 0) {
                if (!PQconsumeInput(pg))
                    goto Fail;
                if (on_notify != NULL)
                    on_notify(pg, arg);
            }
        }
        PGresult *res = PQgetResult(pg);
        if (res == NULL)
            break;
        if (keep != NULL && chan_failed(keep)) {
            PQclear(res);
        } else {
            PQclear(keep);
            keep = res;
        }
    }
    /* the notifications that came with the last bytes of the answer: poll() will not report them again */
    if (on_notify != NULL)
        on_notify(pg, arg);
    return keep;
Fail:
    PQclear(keep);
    return NULL;
}

/* --- the heartbeat thread ------------------------------------------------------------------------------------------ */

static void chan_sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

/* a connection ready to send beats, or NULL (logged, rate-limited by `failures`) */
static PGconn *chan_connect(pulse_channel_t *c, unsigned *failures)
{
    char err[256];
    PGconn *pg = pulse_channel_connect(c->_conninfo, err, sizeof(err));
    if (pg != NULL) {
        PGresult *res = pulse_channel_exec(pg, "SET application_name = 'pulse-proxy heartbeat'; SET synchronous_commit = off", 0,
                                           NULL, c->_timeout_us, NULL, NULL);
        if (res == NULL || chan_failed(res)) {
            const char *msg = PQerrorMessage(pg);
            snprintf(err, sizeof(err), "%.*s", (int)strcspn(msg, "\n"), msg);
            PQfinish(pg);
            pg = NULL;
        }
        PQclear(res);
    }
    if (pg == NULL && (*failures)++ % 20 == 0) /* a database that stays down: every 10 s */
        pulse_log_msg("warning", NULL, "heartbeat: cannot connect (retrying every 500 ms): %s", err);
    return pg;
}

static void *chan_main(void *arg)
{
    pulse_channel_t *c = arg;
    PGconn *pg = NULL;
    unsigned failures = 0;
    uint64_t next = pulse_generations_now_us(), retry_at = 0;
    while (!atomic_load(&c->_stop)) {
        uint64_t now = pulse_generations_now_us();
        if (now < next) {
            chan_sleep_us(next - now < 50000 ? next - now : 50000);
            continue;
        }
        next += c->_interval_us;
        if (next <= now) /* a slow beat: keep the rhythm from now on, do not burst */
            next = now + c->_interval_us;
        if (pg == NULL) {
            if (now < retry_at)
                continue;
            if ((pg = chan_connect(c, &failures)) == NULL) {
                retry_at = now + 500000;
                continue;
            }
            if (failures != 0)
                pulse_log_msg("info", NULL, "heartbeat: connected again");
            failures = 0;
        }
        char seq_text[24];
        uint64_t seq = pulse_channel_beat_begin(c, pulse_generations_now_us());
        snprintf(seq_text, sizeof(seq_text), "%" PRIu64, seq);
        const char *params[2] = {c->_name, seq_text};
        PGresult *res = pulse_channel_exec(pg, "SELECT pg_notify($1, $2)", 2, params, c->_timeout_us, NULL, NULL);
        int ok = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK;
        pulse_channel_beat_end(c, seq, pulse_generations_now_us(), ok);
        if (!ok) {
            const char *msg = res != NULL ? PQresultErrorMessage(res) : "no answer in time, or the connection broke";
            if (failures++ % 20 == 0)
                pulse_log_msg("warning", NULL, "heartbeat: beat %" PRIu64 " failed, reconnecting: %.*s", seq,
                              (int)strcspn(msg, "\n"), msg);
            PQfinish(pg);
            pg = NULL;
        }
        PQclear(res);
    }
    PQfinish(pg);
    return NULL;
}

int pulse_channel_start(pulse_channel_t *c, const char *conninfo, uint64_t interval_us, uint64_t timeout_us)
{
    if ((c->_conninfo = strdup(conninfo)) == NULL)
        return -1;
    c->_interval_us = interval_us;
    c->_timeout_us = timeout_us;
    if (pthread_create(&c->_thread, NULL, chan_main, c) != 0)
        return -1;
    c->_running = 1;
    return 0;
}

void pulse_channel_destroy(pulse_channel_t *c)
{
    if (c == NULL)
        return;
    if (c->_running) {
        atomic_store(&c->_stop, 1);
        pthread_join(c->_thread, NULL);
    }
    pthread_mutex_destroy(&c->_lock);
    free(c->_conninfo);
    free(c);
}

const char *pulse_catalog_channel_state_name(pulse_catalog_channel_state_t s)
{
    static const char *const names[PULSE_CATALOG_CHANNEL_STATES] = {"off", "down", "unverified", "verified", "unchecked"};
    return (unsigned)s < PULSE_CATALOG_CHANNEL_STATES ? names[s] : "?";
}
