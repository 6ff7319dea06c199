/*
 * pgpool.c: non-blocking libpq connections on an h2o event loop.
 *
 * Ownership: the pool owns its connections and every job from submit until
 * the job completes (then its callback runs and the job is freed) or is
 * canceled while queued (freed at once).  A job canceled while running stays
 * with its connection until the Sync arrives.  Everything runs on the loop's
 * thread; nothing here is shared between threads.
 *
 * libpq's socket is watched through an h2o socket created with
 * H2O_SOCKET_FLAG_DONT_READ (h2o only tells us it is readable) on a duplicate
 * of libpq's descriptor: libpq may close its own at any time (a failed read,
 * a new address while connecting), and the duplicate keeps what epoll watches
 * open until conn_detach_socket exports it from the loop and closes it.
 * A broken connection is closed through conn_close(), with its reason.
 */
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "pgpool.h"

#define SETUP_STMT "pulse_setup"
#define SETUP_SQL                                                                                                                  \
    "SELECT set_config('pulse.tenant', $1, true), set_config('application_name', $2, true), "                                      \
    "set_config('statement_timeout', $3, true)"
#define RECONNECT_MS 500
#define MAX_CMDS 7

typedef enum { CONN_DOWN, CONN_CONNECTING, CONN_IDLE, CONN_BUSY } conn_state_t;
typedef enum { CMD_PREP_SETUP, CMD_SETUP, CMD_BEFORE, CMD_PREP_CALL, CMD_CALL, CMD_AFTER, CMD_DEALLOC } cmd_kind_t;

typedef struct prepared_t {
    char name[PULSE_PGPOOL_STMT_NAME_MAX];
    uint64_t used; /* the connection's call counter when it last ran */
} prepared_t;

typedef struct conn_t {
    pulse_pgpool_t *pool;
    int index;
    PGconn *pg;
    h2o_socket_t *sock;
    conn_state_t state;
    pulse_pgjob_t *job;
    cmd_kind_t cmds[MAX_CMDS];
    int ncmds, cur;
    int syncs; /* Syncs still expected for the running job */
    PGresult *error, *result, *after, *before;
    int setup_prepared;
    unsigned failures;    /* connection attempts failed in a row: only some are logged */
    prepared_t *prepared; /* the statements prepared on this connection (max_prepared slots, allocated on first use) */
    size_t nprepared;
    uint64_t calls;
    struct timespec started; /* when the running call was sent */
    h2o_timeout_entry_t reconnect;
    h2o_timeout_entry_t call_timer; /* linked while a call runs */
} conn_t;

struct pulse_pgjob_t {
    h2o_linklist_t _link; /* in pool->queue[cls] while queued */
    h2o_timeout_entry_t _timeout;
    pulse_class_t cls;
    pulse_pgpool_t *_pool;
    pulse_pgjob_cb cb; /* NULL once canceled */
    void *data;
    pulse_pgjob_t **ref; /* the caller's pointer to this job, cleared when it ends */
    uint64_t queued_at;  /* h2o_now() when it was queued */
    char *tenant, *request_id, *app_name, *timeout, *stmt_name, *sql, *after_sql, *after_param, *before_sql, *before_param;
    int nparams;
    char **params;
    /* the strings follow in the same allocation */
};

struct pulse_pgpool_t {
    int id;         /* the worker's index */
    char label[48]; /* "<id>" or "<id> <server>", in log messages */
    h2o_loop_t *loop;
    char *conninfo;
    int size, queue_limit, queue_len;
    int queued[PULSE_CLASS_COUNT]; /* queue_len by class */
    int failing;                   /* the last connection attempt failed, or a connection broke; cleared by a success */
    conn_t *conns;
    /*
     * Load shedding.  One FIFO queue per class, served in the order of
     * class_priority: under overload the batch class waits first, and is shed
     * first.  A call waits at most its class's budget (queue_budget_<class>_ms,
     * capped by queue_timeout_ms), and one whose estimated wait is already
     * over it is refused at once: (calls queued ahead of it + 1) x the mean
     * call time / the connections up.
     */
    h2o_linklist_t queue[PULSE_CLASS_COUNT];
    h2o_timeout_t queue_timeout[PULSE_CLASS_COUNT], reconnect_timeout, call_timeout;
    uint64_t budget_ms[PULSE_CLASS_COUNT];
    double call_us; /* moving average of a call's time on its connection */
    uint64_t shed[PULSE_CLASS_COUNT][PULSE_PGPOOL_SHED_REASONS];
    /*
     * Prepared statements kept per connection.  A call's statement depends on
     * the endpoint and on which of its arguments the request names, and
     * endpoints come and go with the catalog: past max_prepared, the least
     * recently used one is deallocated (after the call that needed room, in
     * its own Sync, so that nothing it does can fail the call).
     */
    int max_prepared;
    uint64_t waits, wait_ms, queue_full, queue_timeouts, deallocated; /* see pulse_pgpool_stats_t */
};

static void conn_start(conn_t *c);
static void conn_send(conn_t *c);
static void on_readable(h2o_socket_t *sock, const char *err);
static void pool_dispatch(pulse_pgpool_t *pool);

/* ---- jobs ---------------------------------------------------------------- */

static void job_finish(pulse_pgjob_t *job, const pulse_pgresult_t *res)
{
    if (h2o_timeout_is_linked(&job->_timeout))
        h2o_timeout_unlink(&job->_timeout);
    if (h2o_linklist_is_linked(&job->_link)) {
        h2o_linklist_unlink(&job->_link);
        job->_pool->queue_len--;
        job->_pool->queued[job->cls]--;
    }
    if (job->ref != NULL)
        *job->ref = NULL;
    if (job->cb != NULL)
        job->cb(job->data, res);
    free(job);
}

static void job_fail(pulse_pgjob_t *job, pulse_pgstatus_t status, const char *message)
{
    pulse_pgresult_t res = {.status = status, .message = message};
    job_finish(job, &res);
}

static void on_queue_timeout(h2o_timeout_entry_t *entry)
{
    pulse_pgjob_t *job = H2O_STRUCT_FROM_MEMBER(pulse_pgjob_t, _timeout, entry);
    job->_pool->queue_timeouts++;
    job->_pool->shed[job->cls][PULSE_PGPOOL_SHED_WAITED]++;
    job_fail(job, PULSE_PG_BUSY, "no database connection became free within the class's queue budget");
}

/* ---- connections ---------------------------------------------------------- */

static void conn_detach_socket(conn_t *c)
{
    if (c->sock == NULL)
        return;
    h2o_socket_export_t info;
    if (h2o_socket_is_reading(c->sock))
        h2o_socket_read_stop(c->sock);
    c->sock->_cb.write = NULL; /* a pending notify_write: h2o has no call to withdraw it */
    if (h2o_socket_export(c->sock, &info) == 0) {
        if (info.input != NULL)
            h2o_buffer_dispose(&info.input);
        close(info.fd); /* our duplicate; libpq closes its own descriptor */
    }
    c->sock = NULL;
}

/* watches libpq's current socket; a no-op when it did not change */
static int conn_attach_socket(conn_t *c)
{
    struct stat pst, hst;
    int fd = PQsocket(c->pg);
    if (fd < 0 || fstat(fd, &pst) != 0)
        return -1;
    if (c->sock != NULL && fstat(h2o_socket_get_fd(c->sock), &hst) == 0 && hst.st_ino == pst.st_ino && hst.st_dev == pst.st_dev)
        return 0;
    conn_detach_socket(c);
    /* h2o gets its own descriptor of the same socket: libpq closes its one when the connection fails, h2o's stays
       valid until conn_detach_socket, so epoll is always told about a descriptor that is still open */
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -1;
    c->sock = h2o_evloop_socket_create(c->pool->loop, dfd, H2O_SOCKET_FLAG_DONT_READ);
    c->sock->data = c;
    return 0;
}

static int pool_alive(const pulse_pgpool_t *pool)
{
    int n = 0;
    for (int i = 0; i < pool->size; i++)
        n += pool->conns[i].state == CONN_IDLE || pool->conns[i].state == CONN_BUSY;
    return n;
}

/* the order in which the class queues are served */
static const pulse_class_t class_priority[PULSE_CLASS_COUNT] = {PULSE_CLASS_READ, PULSE_CLASS_WRITE, PULSE_CLASS_SEARCH,
                                                                PULSE_CLASS_BATCH};

/* the first queued call in priority order, or NULL */
static pulse_pgjob_t *pool_next_job(pulse_pgpool_t *pool)
{
    for (int k = 0; k < PULSE_CLASS_COUNT; k++) {
        h2o_linklist_t *q = &pool->queue[class_priority[k]];
        if (!h2o_linklist_is_empty(q))
            return H2O_STRUCT_FROM_MEMBER(pulse_pgjob_t, _link, q->next);
    }
    return NULL;
}

static void pool_fail_queue(pulse_pgpool_t *pool, const char *why)
{
    pulse_pgjob_t *job;
    while ((job = pool_next_job(pool)) != NULL)
        job_fail(job, PULSE_PG_UNAVAILABLE, why);
}

/* calls that would be served before a new call of class `cls` */
static int pool_queued_ahead(const pulse_pgpool_t *pool, pulse_class_t cls)
{
    int n = 0;
    for (int k = 0; k < PULSE_CLASS_COUNT; k++) {
        n += pool->queued[class_priority[k]];
        if (class_priority[k] == cls)
            break;
    }
    return n;
}

static double elapsed_us(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e6 + (double)(now.tv_nsec - t0->tv_nsec) / 1e3;
}

/* Closes a connection that broke or failed to open, with the reason; its job fails; a reconnect is scheduled. */
static void conn_close(conn_t *c, const char *reason)
{
    pulse_pgpool_t *pool = c->pool;
    int was_up = c->state == CONN_IDLE || c->state == CONN_BUSY;
    if (was_up)
        c->failures = 0;
    else
        c->failures++;
    /* a database that stays down would otherwise log twice a second per connection */
    if (was_up || c->failures % 20 == 1)
        pulse_log_msg(was_up ? "error" : "warning", c->job != NULL ? c->job->request_id : NULL,
                      "pgpool %s: closing connection %d: %s%s", pool->label, c->index, reason,
                      was_up ? "" : " (retrying every 500 ms)");
    if (h2o_timeout_is_linked(&c->call_timer))
        h2o_timeout_unlink(&c->call_timer);
    conn_detach_socket(c);
    if (c->pg != NULL) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    PQclear(c->error);
    PQclear(c->result);
    PQclear(c->after);
    PQclear(c->before);
    c->error = c->result = c->after = c->before = NULL;
    c->nprepared = 0;
    c->setup_prepared = 0;
    c->state = CONN_DOWN;
    pool->failing = 1;
    if (c->job != NULL) {
        pulse_pgjob_t *job = c->job;
        c->job = NULL;
        job_fail(job, PULSE_PG_UNAVAILABLE, "the database connection was lost");
    }
    if (pool_alive(pool) == 0)
        pool_fail_queue(pool, "the database is unavailable");
    if (!h2o_timeout_is_linked(&c->reconnect))
        h2o_timeout_link(pool->loop, &pool->reconnect_timeout, &c->reconnect);
}

/* the server did not answer in call_timeout_ms (a hung server or network: statement_timeout would have fired) */
static void on_call_timeout(h2o_timeout_entry_t *entry)
{
    conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, call_timer, entry);
    conn_close(c, "no answer within call_timeout_ms");
}

static void on_reconnect(h2o_timeout_entry_t *entry)
{
    conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, reconnect, entry);
    if (c->state == CONN_DOWN)
        conn_start(c);
}

static void conn_poll_connect(conn_t *c);

static void on_connect_event(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    (void)err;
    if (h2o_socket_is_reading(sock))
        h2o_socket_read_stop(sock);
    conn_poll_connect(c);
}

static void conn_poll_connect(conn_t *c)
{
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    if (st == PGRES_POLLING_FAILED || conn_attach_socket(c) != 0) {
        char reason[256];
        snprintf(reason, sizeof(reason), "connect failed: %s", PQerrorMessage(c->pg));
        reason[strcspn(reason, "\n")] = '\0';
        conn_close(c, reason);
        return;
    }
    switch (st) {
    case PGRES_POLLING_READING:
        h2o_socket_read_start(c->sock, on_connect_event);
        return;
    case PGRES_POLLING_WRITING:
        h2o_socket_notify_write(c->sock, on_connect_event);
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        conn_close(c, "unexpected connection state");
        return;
    }
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        conn_close(c, "cannot enter pipeline mode");
        return;
    }
    c->state = CONN_IDLE;
    if (c->failures != 0)
        pulse_log_msg("info", NULL, "pgpool %s: connection %d is up again", c->pool->label, c->index);
    c->failures = 0;
    c->pool->failing = 0;
    h2o_socket_read_start(c->sock, on_readable);
    pool_dispatch(c->pool);
}

/* server notices (and the FATAL of a terminated backend) go to the log, not to stderr directly */
static void on_notice(void *arg, const char *message)
{
    conn_t *c = arg;
    pulse_log_msg("info", NULL, "pgpool %s: connection %d: %.*s", c->pool->label, c->index, (int)strcspn(message, "\n"), message);
}

static void conn_start(conn_t *c)
{
    c->state = CONN_CONNECTING;
    c->pg = PQconnectStart(c->pool->conninfo);
    if (c->pg == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->pg, on_notice, c);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        char reason[256];
        snprintf(reason, sizeof(reason), "connect failed: %s", PQerrorMessage(c->pg));
        reason[strcspn(reason, "\n")] = '\0';
        conn_close(c, reason);
        return;
    }
    conn_poll_connect(c);
}

/* whether `name` is prepared on the connection; marks it used */
static int conn_is_prepared(conn_t *c, const char *name)
{
    for (size_t i = 0; i < c->nprepared; i++)
        if (strcmp(c->prepared[i].name, name) == 0) {
            c->prepared[i].used = c->calls;
            return 1;
        }
    return 0;
}

static void conn_mark_prepared(conn_t *c, const char *name)
{
    if (conn_is_prepared(c, name) || strlen(name) >= PULSE_PGPOOL_STMT_NAME_MAX)
        return;
    if (c->prepared == NULL && (c->prepared = calloc((size_t)c->pool->max_prepared, sizeof(prepared_t))) == NULL)
        return; /* it will be prepared again and fail with 42P05: harmless but logged */
    if (c->nprepared == (size_t)c->pool->max_prepared)
        return; /* conn_run makes room first: cannot happen */
    prepared_t *p = &c->prepared[c->nprepared++];
    strcpy(p->name, name);
    p->used = c->calls;
}

/* forgets the least recently used statement, whose name goes to `out`, when the table is full; returns 1 then */
static int conn_evict_prepared(conn_t *c, char out[PULSE_PGPOOL_STMT_NAME_MAX])
{
    if (c->nprepared < (size_t)c->pool->max_prepared)
        return 0;
    size_t lru = 0;
    for (size_t i = 1; i < c->nprepared; i++)
        if (c->prepared[i].used < c->prepared[lru].used)
            lru = i;
    memcpy(out, c->prepared[lru].name, PULSE_PGPOOL_STMT_NAME_MAX);
    c->prepared[lru] = c->prepared[--c->nprepared];
    c->pool->deallocated++;
    return 1;
}

static void on_writable(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    (void)err;
    conn_send(c);
}

/* flushes the pipeline; waits for writability when the socket is full */
static void conn_send(conn_t *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_close(c, "cannot send to the server");
        return;
    }
    if (r == 1)
        h2o_socket_notify_write(c->sock, on_writable);
}

static void conn_run(conn_t *c, pulse_pgjob_t *job)
{
    const char *setup_params[3] = {job->tenant, job->app_name, job->timeout};
    c->job = job;
    c->state = CONN_BUSY;
    c->ncmds = c->cur = 0;
    c->calls++;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    h2o_timeout_link(c->pool->loop, &c->pool->call_timeout, &c->call_timer);
    int ok = 1;
    if (!c->setup_prepared) {
        ok = ok && PQsendPrepare(c->pg, SETUP_STMT, SETUP_SQL, 3, NULL);
        c->cmds[c->ncmds++] = CMD_PREP_SETUP;
    }
    ok = ok && PQsendQueryPrepared(c->pg, SETUP_STMT, 3, setup_params, NULL, NULL, 0);
    c->cmds[c->ncmds++] = CMD_SETUP;
    if (job->before_sql != NULL) { /* in the call's transaction, before it: unnamed statement, parsed every time */
        const char *p[1] = {job->before_param};
        ok = ok && PQsendQueryParams(c->pg, job->before_sql, 1, NULL, p, NULL, NULL, 0);
        c->cmds[c->ncmds++] = CMD_BEFORE;
    }
    char evict[PULSE_PGPOOL_STMT_NAME_MAX];
    int evicting = 0;
    if (!conn_is_prepared(c, job->stmt_name)) {
        evicting = conn_evict_prepared(c, evict);
        ok = ok && PQsendPrepare(c->pg, job->stmt_name, job->sql, job->nparams, NULL);
        c->cmds[c->ncmds++] = CMD_PREP_CALL;
    }
    ok = ok && PQsendQueryPrepared(c->pg, job->stmt_name, job->nparams, (const char *const *)job->params, NULL, NULL, 0);
    c->cmds[c->ncmds++] = CMD_CALL;
    ok = ok && PQpipelineSync(c->pg);
    c->syncs = 1;
    if (job->after_sql != NULL) {
        /* a new implicit transaction: it sees what the call committed; unnamed statement, parsed every time */
        const char *p[1] = {job->after_param};
        ok = ok && PQsendQueryParams(c->pg, job->after_sql, job->after_param != NULL ? 1 : 0, NULL, p, NULL, NULL, 0);
        c->cmds[c->ncmds++] = CMD_AFTER;
        ok = ok && PQpipelineSync(c->pg);
        c->syncs++;
    }
    if (evicting) { /* statement names are ours, "pulse_" and hex digits: no quoting needed */
        char sql[16 + PULSE_PGPOOL_STMT_NAME_MAX];
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", evict);
        ok = ok && PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
        c->cmds[c->ncmds++] = CMD_DEALLOC;
        ok = ok && PQpipelineSync(c->pg);
        c->syncs++;
    }
    if (!ok) {
        char reason[256];
        snprintf(reason, sizeof(reason), "cannot queue the call: %s", PQerrorMessage(c->pg));
        reason[strcspn(reason, "\n")] = '\0';
        conn_close(c, reason);
        return;
    }
    conn_send(c);
}

static void conn_complete(conn_t *c)
{
    pulse_pgjob_t *job = c->job;
    pulse_pgresult_t res = {.status = PULSE_PG_OK};
    if (c->error != NULL) {
        res.status = PULSE_PG_ERROR;
        res.sqlstate = PQresultErrorField(c->error, PG_DIAG_SQLSTATE);
        res.message = PQresultErrorField(c->error, PG_DIAG_MESSAGE_PRIMARY);
        if (res.message == NULL)
            res.message = PQresultErrorMessage(c->error);
    } else if (c->result != NULL && PQntuples(c->result) == 1 && PQnfields(c->result) >= 1) {
        if (!PQgetisnull(c->result, 0, 0)) {
            res.body = PQgetvalue(c->result, 0, 0);
            res.body_len = (size_t)PQgetlength(c->result, 0, 0);
        }
        if (PQnfields(c->result) >= 2 && !PQgetisnull(c->result, 0, 1)) {
            res.state = PQgetvalue(c->result, 0, 1);
            res.state_len = (size_t)PQgetlength(c->result, 0, 1);
        }
    } else {
        res.status = PULSE_PG_ERROR;
        res.message = "the call returned no row";
    }
    if (c->after != NULL && PQntuples(c->after) == 1 && PQnfields(c->after) >= 1 && !PQgetisnull(c->after, 0, 0)) {
        res.after = PQgetvalue(c->after, 0, 0);
        res.after_len = (size_t)PQgetlength(c->after, 0, 0);
    }
    if (c->after != NULL && PQntuples(c->after) == 1 && PQnfields(c->after) >= 2 && !PQgetisnull(c->after, 0, 1)) {
        res.after2 = PQgetvalue(c->after, 0, 1);
        res.after2_len = (size_t)PQgetlength(c->after, 0, 1);
    }
    if (c->before != NULL && PQntuples(c->before) == 1 && PQnfields(c->before) >= 1 && !PQgetisnull(c->before, 0, 0)) {
        res.before = PQgetvalue(c->before, 0, 0);
        res.before_len = (size_t)PQgetlength(c->before, 0, 0);
    }
    h2o_timeout_unlink(&c->call_timer);
    double us = elapsed_us(&c->started);
    c->pool->call_us = c->pool->call_us == 0 ? us : c->pool->call_us + (us - c->pool->call_us) / 16;
    c->job = NULL;
    c->state = CONN_IDLE;
    PGresult *error = c->error, *result = c->result, *after = c->after, *before = c->before;
    c->error = c->result = c->after = c->before = NULL; /* the callback may start another job on this connection */
    job_finish(job, &res);
    PQclear(error);
    PQclear(result);
    PQclear(after);
    PQclear(before);
}

/* reads whatever results arrived; completes the job at the Sync */
static void conn_read_results(conn_t *c)
{
    while (c->state == CONN_BUSY && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) { /* end of one command's results */
            if (c->cur < c->ncmds)
                c->cur++;
            else
                break;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            if (--c->syncs > 0)
                continue;
            conn_complete(c);
            pool_dispatch(c->pool);
            return;
        }
        cmd_kind_t kind = c->cur < c->ncmds ? c->cmds[c->cur] : CMD_CALL;
        if (kind == CMD_DEALLOC) {
            if (st == PGRES_FATAL_ERROR)
                pulse_log_msg("warning", c->job->request_id, "pgpool %s: DEALLOCATE failed: %s", c->pool->label,
                              PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
        } else if (kind == CMD_AFTER) {
            if (st == PGRES_TUPLES_OK && c->after == NULL) {
                c->after = r;
                r = NULL;
            } else if (st == PGRES_FATAL_ERROR) {
                pulse_log_msg("warning", c->job->request_id, "pgpool %s: statement after the call failed: %s", c->pool->label,
                              PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
            }
        } else if (kind == CMD_BEFORE && st == PGRES_TUPLES_OK) {
            if (c->before == NULL) {
                c->before = r;
                r = NULL;
            }
        } else if (st == PGRES_FATAL_ERROR) {
            if (c->error == NULL) {
                c->error = r;
                r = NULL;
            }
        } else if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            if (kind == CMD_PREP_SETUP)
                c->setup_prepared = 1;
            else if (kind == CMD_PREP_CALL)
                conn_mark_prepared(c, c->job->stmt_name);
            else if (kind == CMD_CALL && c->result == NULL) {
                c->result = r;
                r = NULL;
            }
        }
        PQclear(r);
    }
}

static void on_readable(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    (void)err;
    if (!PQconsumeInput(c->pg)) {
        char reason[256];
        snprintf(reason, sizeof(reason), "lost the server: %s", PQerrorMessage(c->pg));
        reason[strcspn(reason, "\n")] = '\0';
        conn_close(c, reason);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL)
        PQfreemem(n);
    if (c->state == CONN_BUSY)
        conn_read_results(c);
    if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_BAD)
        conn_close(c, "connection is bad");
}

/* ---- pool ------------------------------------------------------------------ */

static void pool_dispatch(pulse_pgpool_t *pool)
{
    for (int i = 0; i < pool->size && pool->queue_len != 0; i++) {
        conn_t *c = &pool->conns[i];
        if (c->state != CONN_IDLE)
            continue;
        pulse_pgjob_t *job = pool_next_job(pool);
        h2o_linklist_unlink(&job->_link);
        pool->queue_len--;
        pool->queued[job->cls]--;
        h2o_timeout_unlink(&job->_timeout);
        pool->wait_ms += h2o_now(pool->loop) - job->queued_at;
        if (job->cb == NULL) { /* canceled while queued: cannot happen, cancel frees it */
            free(job);
            continue;
        }
        conn_run(c, job);
    }
}

pulse_pgpool_t *pulse_pgpool_create(int id, h2o_loop_t *loop, const pulse_config_t *conf)
{
    return pulse_pgpool_create_server(id, NULL, conf->pg_url, loop, conf);
}

pulse_pgpool_t *pulse_pgpool_create_server(int id, const char *server, const char *conninfo, h2o_loop_t *loop,
                                           const pulse_config_t *conf)
{
    int size = conf->pool_size, queue_limit = conf->queue_limit;
    pulse_pgpool_t *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->id = id;
    if (server != NULL)
        snprintf(pool->label, sizeof(pool->label), "%d %s", id, server);
    else
        snprintf(pool->label, sizeof(pool->label), "%d", id);
    pool->loop = loop;
    pool->size = size;
    pool->queue_limit = queue_limit;
    pool->max_prepared = conf->pool_max_prepared > 0 ? conf->pool_max_prepared : 128;
    pool->conninfo = strdup(conninfo);
    pool->conns = calloc((size_t)size, sizeof(conn_t));
    if (pool->conninfo == NULL || pool->conns == NULL) {
        free(pool->conninfo);
        free(pool->conns);
        free(pool);
        return NULL;
    }
    for (int k = 0; k < PULSE_CLASS_COUNT; k++) {
        int budget = conf->queue_budget_ms[k] < conf->queue_timeout_ms ? conf->queue_budget_ms[k] : conf->queue_timeout_ms;
        pool->budget_ms[k] = (uint64_t)budget;
        h2o_linklist_init_anchor(&pool->queue[k]);
        h2o_timeout_init(loop, &pool->queue_timeout[k], (uint64_t)budget);
    }
    h2o_timeout_init(loop, &pool->call_timeout, (uint64_t)conf->call_timeout_ms);
    h2o_timeout_init(loop, &pool->reconnect_timeout, RECONNECT_MS);
    for (int i = 0; i < size; i++) {
        conn_t *c = &pool->conns[i];
        c->pool = pool;
        c->index = i;
        c->reconnect.cb = on_reconnect;
        c->call_timer.cb = on_call_timeout;
        conn_start(c);
    }
    return pool;
}

void pulse_pgpool_destroy(pulse_pgpool_t *pool)
{
    if (pool == NULL)
        return;
    pool_fail_queue(pool, "the proxy is shutting down");
    for (int i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        if (h2o_timeout_is_linked(&c->reconnect))
            h2o_timeout_unlink(&c->reconnect);
        if (h2o_timeout_is_linked(&c->call_timer))
            h2o_timeout_unlink(&c->call_timer);
        if (c->job != NULL) {
            pulse_pgjob_t *job = c->job;
            c->job = NULL;
            job_fail(job, PULSE_PG_UNAVAILABLE, "the proxy is shutting down");
        }
        conn_detach_socket(c);
        if (c->pg != NULL)
            PQfinish(c->pg);
        PQclear(c->error);
        PQclear(c->result);
        PQclear(c->after);
        PQclear(c->before);
        free(c->prepared);
    }
    for (int k = 0; k < PULSE_CLASS_COUNT; k++)
        h2o_timeout_dispose(pool->loop, &pool->queue_timeout[k]);
    h2o_timeout_dispose(pool->loop, &pool->call_timeout);
    h2o_timeout_dispose(pool->loop, &pool->reconnect_timeout);
    free(pool->conns);
    free(pool->conninfo);
    free(pool);
}

static char *copy_into(char **p, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = *p;
    memcpy(d, s, n);
    *p += n;
    return d;
}

int pulse_pgpool_submit(pulse_pgpool_t *pool, const pulse_pgquery_t *q, pulse_pgjob_cb cb, void *data, pulse_pgjob_t **ref,
                        pulse_pgstatus_t *status)
{
    if (pool_alive(pool) == 0 && pool->failing) {
        *status = PULSE_PG_UNAVAILABLE;
        return -1;
    }
    pulse_class_t cls = q->cls >= 0 && q->cls < PULSE_CLASS_COUNT ? q->cls : PULSE_CLASS_READ;
    if (pool->queue_len >= pool->queue_limit) {
        pool->queue_full++;
        pool->shed[cls][PULSE_PGPOOL_SHED_QUEUE_FULL]++;
        *status = PULSE_PG_BUSY;
        return -1;
    }
    int idle = 0, alive = 0;
    for (int i = 0; i < pool->size; i++) {
        idle += pool->conns[i].state == CONN_IDLE;
        alive += pool->conns[i].state == CONN_IDLE || pool->conns[i].state == CONN_BUSY;
    }
    if (idle == 0 && alive != 0 &&
        (double)(pool_queued_ahead(pool, cls) + 1) * pool->call_us / alive > (double)pool->budget_ms[cls] * 1000.0) {
        pool->shed[cls][PULSE_PGPOOL_SHED_ESTIMATE]++; /* it would wait past its budget: refuse it now, not then */
        *status = PULSE_PG_BUSY;
        return -1;
    }
    char app[64], timeout[24];
    /* PostgreSQL keeps 63 bytes of it (NAMEDATALEN - 1): cut here, so the server never has to; the trace id (the key to
     * join the server's log with the traces) comes first and always fits */
    snprintf(app, sizeof(app), "pulse %s %s", q->trace_id != NULL ? q->trace_id : "-", q->request_id != NULL ? q->request_id : "-");
    snprintf(timeout, sizeof(timeout), "%d", q->statement_timeout_ms);
    const char *rid = q->request_id != NULL ? q->request_id : "-";
    size_t size = sizeof(pulse_pgjob_t) + (size_t)q->nparams * sizeof(char *) + strlen(q->tenant) + 1 + strlen(rid) + 1 +
                  strlen(app) + 1 + strlen(timeout) + 1 + strlen(q->stmt_name) + 1 + strlen(q->sql) + 1;
    if (q->after_sql != NULL)
        size += strlen(q->after_sql) + 1 + (q->after_param != NULL ? strlen(q->after_param) + 1 : 0);
    if (q->before_sql != NULL)
        size += strlen(q->before_sql) + 1 + (q->before_param != NULL ? strlen(q->before_param) + 1 : 0);
    for (int i = 0; i < q->nparams; i++)
        size += q->params[i] != NULL ? strlen(q->params[i]) + 1 : 0;
    pulse_pgjob_t *job = calloc(1, size);
    if (job == NULL) {
        *status = PULSE_PG_BUSY;
        return -1;
    }
    job->_pool = pool;
    job->cb = cb;
    job->data = data;
    job->ref = ref;
    *ref = job;
    job->nparams = q->nparams;
    job->params = (char **)(job + 1);
    char *p = (char *)(job->params + q->nparams);
    job->tenant = copy_into(&p, q->tenant);
    job->request_id = copy_into(&p, rid);
    job->app_name = copy_into(&p, app);
    job->timeout = copy_into(&p, timeout);
    job->stmt_name = copy_into(&p, q->stmt_name);
    job->sql = copy_into(&p, q->sql);
    job->after_sql = copy_into(&p, q->after_sql);
    job->after_param = copy_into(&p, q->after_param);
    job->before_sql = copy_into(&p, q->before_sql);
    job->before_param = copy_into(&p, q->before_param);
    for (int i = 0; i < q->nparams; i++)
        job->params[i] = copy_into(&p, q->params[i]);
    job->_timeout.cb = on_queue_timeout;
    job->queued_at = h2o_now(pool->loop);
    job->cls = cls;
    if (idle == 0 || pool->queue_len != 0)
        pool->waits++;
    h2o_linklist_insert(&pool->queue[cls], &job->_link);
    pool->queue_len++;
    pool->queued[cls]++;
    h2o_timeout_link(pool->loop, &pool->queue_timeout[cls], &job->_timeout);
    pool_dispatch(pool);
    return 0;
}

void pulse_pgpool_cancel(pulse_pgjob_t *job)
{
    if (job == NULL)
        return;
    if (h2o_linklist_is_linked(&job->_link)) {
        h2o_linklist_unlink(&job->_link);
        job->_pool->queue_len--;
        job->_pool->queued[job->cls]--;
        if (h2o_timeout_is_linked(&job->_timeout))
            h2o_timeout_unlink(&job->_timeout);
        free(job);
        return;
    }
    job->cb = NULL; /* running: freed by its connection */
    job->ref = NULL;
}

int pulse_pgpool_alive(const pulse_pgpool_t *pool)
{
    return pool_alive(pool);
}

int pulse_pgpool_load(const pulse_pgpool_t *pool)
{
    int n = pool->queue_len;
    for (int i = 0; i < pool->size; i++)
        n += pool->conns[i].state == CONN_BUSY;
    return n;
}

void pulse_pgpool_stats(const pulse_pgpool_t *pool, pulse_pgpool_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < pool->size; i++) {
        switch (pool->conns[i].state) {
        case CONN_DOWN:
            out->down++;
            break;
        case CONN_CONNECTING:
            out->connecting++;
            break;
        case CONN_IDLE:
            out->idle++;
            break;
        case CONN_BUSY:
            out->busy++;
            break;
        }
    }
    out->queued = pool->queue_len;
    out->queue_limit = pool->queue_limit;
    out->waits = pool->waits;
    out->wait_ms = pool->wait_ms;
    out->queue_full = pool->queue_full;
    out->queue_timeouts = pool->queue_timeouts;
    out->deallocated = pool->deallocated;
    memcpy(out->shed, pool->shed, sizeof(out->shed));
    out->call_us = pool->call_us;
}

void pulse_pgpool_set_queue_limit(pulse_pgpool_t *pool, int queue_limit)
{
    pool->queue_limit = queue_limit;
}
