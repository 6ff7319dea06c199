/*
 * redis.c: hiredis's asynchronous API on an h2o evloop, with command
 * timeouts, reconnection and a circuit breaker (see redis.h).
 *
 * The event adapter: hiredis's descriptor is wrapped in an h2o socket created
 * with H2O_SOCKET_FLAG_DONT_READ, so h2o only reports readiness and hiredis
 * does the I/O itself.  addRead/delRead map to h2o_socket_read_start/stop;
 * addWrite asks for one write-readiness notification with
 * h2o_socket_notify_write (hiredis asks again while its output buffer is not
 * empty, so delWrite has nothing to do).  The adapter state (redis_ev_t) is
 * owned by the hiredis context and freed by its cleanup hook, which closes
 * the h2o socket (and with it the descriptor) and sets c.fd to -1 so that
 * hiredis does not close it a second time.
 *
 * Ownership of commands: a redis_cmd_t is allocated per command and handed to
 * hiredis as privdata; hiredis always calls on_reply for it exactly once
 * (with the reply, or with NULL when the context is freed), and on_reply
 * frees it.  While the caller has not been answered the command is on
 * r->pending with cmd->r set; a command answered early (timeout, breaker
 * open, destroy) is taken off the list and has cmd->r = NULL: it is an orphan
 * that on_reply just frees.  So the client can be destroyed while hiredis
 * still holds commands, and a slow reply never reaches a caller twice.
 *
 * Connections: the client owns at most one context, r->ac; ac->data points
 * back to the client while it is current.  A context is dropped through
 * redis_teardown() (we close it: redisAsyncFree) or redis_lost() (hiredis is
 * already freeing it after an I/O error); both clear ac->data first, so late
 * callbacks of an old context never touch the client's state.
 */
#include <errno.h>
#include <hiredis/async.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "log.h"
#include "redis.h"

typedef enum { CMD_USER = 0, CMD_PROBE_SETUP, CMD_PROBE_PING } cmd_kind_t;

typedef struct redis_cmd_t {
    h2o_linklist_t _link; /* in r->_pending while the caller has not been answered */
    h2o_timeout_entry_t _timeout;
    pulse_redis_t *r; /* NULL once answered (an orphan hiredis still holds) */
    cmd_kind_t kind;
    pulse_redis_cb cb;
    void *data;
} redis_cmd_t;

typedef struct redis_ev_t {
    redisAsyncContext *ac;
    h2o_socket_t *sock;
} redis_ev_t;

struct pulse_redis_t {
    h2o_evloop_t *loop;
    pulse_redis_config_t conf;
    pulse_redis_state_t state;
    redisAsyncContext *ac; /* the current connection, or NULL */
    h2o_linklist_t _pending;
    int npending;
    int consecutive_failures;
    int failed_attempts; /* failed connection attempts in a row (only the first is logged) */
    uint64_t backoff_ms;
    uint64_t next_attempt_at;
    h2o_timeout_t _cmd_timeout, _connect_timeout, _tick;
    h2o_timeout_entry_t _probe_timer; /* in _connect_timeout while CONNECTING */
    h2o_timeout_entry_t _retry_timer; /* in _tick while DOWN */
    int _in_timer;                    /* answering commands from on_cmd_timeout */
    pulse_redis_stats_t stats;
};

static const char err_timeout[] = "timeout", err_lost[] = "connection lost", err_closed[] = "closed";

static void redis_connect(pulse_redis_t *r);

/* --- event adapter ------------------------------------------------------------------------------------------------ */

static void ev_on_read(h2o_socket_t *sock, const char *err)
{
    (void)err; /* DONT_READ: h2o reads nothing, so it reports no error; hiredis finds out itself */
    redis_ev_t *ev = sock->data;
    redisAsyncHandleRead(ev->ac);
}

static void ev_on_write(h2o_socket_t *sock, const char *err)
{
    (void)err;
    redis_ev_t *ev = sock->data;
    redisAsyncHandleWrite(ev->ac);
}

static void ev_add_read(void *privdata)
{
    redis_ev_t *ev = privdata;
    h2o_socket_read_start(ev->sock, ev_on_read);
}

static void ev_del_read(void *privdata)
{
    redis_ev_t *ev = privdata;
    h2o_socket_read_stop(ev->sock);
}

static void ev_add_write(void *privdata)
{
    redis_ev_t *ev = privdata;
    if (!h2o_socket_is_writing(ev->sock))
        h2o_socket_notify_write(ev->sock, ev_on_write);
}

static void ev_del_write(void *privdata)
{
    (void)privdata; /* notifications are one-shot */
}

static void ev_cleanup(void *privdata)
{
    redis_ev_t *ev = privdata;
    h2o_socket_close(ev->sock);
    ev->ac->c.fd = -1; /* closed by h2o; keep hiredis from closing it (or a reused number) again */
    ev->ac->ev.data = NULL;
    free(ev);
}

static int ev_attach(redisAsyncContext *ac, h2o_evloop_t *loop)
{
    redis_ev_t *ev = malloc(sizeof(*ev));
    if (ev == NULL)
        return -1;
    ev->ac = ac;
    ev->sock = h2o_evloop_socket_create(loop, ac->c.fd, H2O_SOCKET_FLAG_DONT_READ);
    ev->sock->data = ev;
    ac->ev.data = ev;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* --- breaker and connection state -------------------------------------------------------------------------------- */

static uint64_t redis_now(pulse_redis_t *r)
{
    return h2o_now(r->loop);
}

/* DOWN: the next attempt after the current backoff, which then doubles */
static void redis_schedule_retry(pulse_redis_t *r)
{
    r->state = PULSE_REDIS_DOWN;
    r->next_attempt_at = redis_now(r) + r->backoff_ms;
    r->backoff_ms *= 2;
    if (r->backoff_ms > (uint64_t)r->conf.backoff_max_ms)
        r->backoff_ms = (uint64_t)r->conf.backoff_max_ms;
    if (!h2o_timeout_is_linked(&r->_retry_timer))
        h2o_timeout_link(r->loop, &r->_tick, &r->_retry_timer);
}

/* the client stops using r->ac (caller: r->ac != NULL); the breaker opens */
static redisAsyncContext *redis_detach(pulse_redis_t *r, const char *reason)
{
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    ac->data = NULL;
    if (h2o_timeout_is_linked(&r->_probe_timer))
        h2o_timeout_unlink(&r->_probe_timer);
    if (r->state == PULSE_REDIS_UP) {
        r->stats.opens++;
        pulse_log_msg("warning", NULL, "redis %s:%d is down (%s): requests bypass the cache", r->conf.host, r->conf.port, reason);
    } else if (r->failed_attempts++ == 0) {
        pulse_log_msg("warning", NULL, "redis %s:%d: connection failed (%s); retrying", r->conf.host, r->conf.port, reason);
    }
    r->consecutive_failures = 0;
    redis_schedule_retry(r);
    return ac;
}

/* closes the current connection ourselves; its pending commands are answered "connection lost" (now, or when the
 * hiredis callback we are in returns) */
static void redis_teardown(pulse_redis_t *r, const char *reason)
{
    if (r->ac == NULL)
        return;
    redisAsyncContext *ac = redis_detach(r, reason);
    redisAsyncFree(ac);
}

/* hiredis is freeing `ac` after an error: forget it if it is still ours */
static void redis_lost(pulse_redis_t *r, const redisAsyncContext *ac)
{
    if (r->ac != ac)
        return;
    redis_detach(r, ac->errstr != NULL && ac->errstr[0] != '\0' ? ac->errstr : err_lost);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    pulse_redis_t *r = ac->data;
    if (r != NULL)
        redis_lost(r, ac);
}

static void redis_up(pulse_redis_t *r)
{
    if (h2o_timeout_is_linked(&r->_probe_timer))
        h2o_timeout_unlink(&r->_probe_timer);
    r->state = PULSE_REDIS_UP;
    r->consecutive_failures = 0;
    r->backoff_ms = (uint64_t)r->conf.backoff_min_ms;
    r->stats.connects++;
    if (r->stats.connects > 1 || r->failed_attempts != 0)
        pulse_log_msg("info", NULL, "redis %s:%d is up again: caching resumes", r->conf.host, r->conf.port);
    r->failed_attempts = 0;
}

/* a command failed or timed out: count it against the breaker */
static void redis_count_failure(pulse_redis_t *r)
{
    if (++r->consecutive_failures >= r->conf.failure_threshold && r->state == PULSE_REDIS_UP)
        redis_teardown(r, "too many failures or timeouts");
}

/* error replies that mean "this server cannot serve now" (loading its dataset, busy with a script, replica without a
 * master): they count against the breaker like timeouts */
static int redis_is_unavailable_error(const redisReply *reply)
{
    static const char *const prefixes[] = {"LOADING", "BUSY", "MASTERDOWN"};
    if (reply->type != REDIS_REPLY_ERROR || reply->str == NULL)
        return 0;
    for (size_t i = 0; i != sizeof(prefixes) / sizeof(prefixes[0]); ++i) {
        size_t n = strlen(prefixes[i]);
        if (reply->len >= n && memcmp(reply->str, prefixes[i], n) == 0 && (reply->len == n || reply->str[n] == ' '))
            return 1;
    }
    return 0;
}

/* --- commands ---------------------------------------------------------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *_reply, void *privdata)
{
    redis_cmd_t *cmd = privdata;
    redisReply *reply = _reply;
    pulse_redis_t *r = cmd->r;

    if (r == NULL) { /* answered already */
        free(cmd);
        return;
    }
    h2o_linklist_unlink(&cmd->_link);
    --r->npending;
    cmd->r = NULL;

    if (cmd->kind != CMD_USER) {
        /* a probe: only the current connection's count */
        if (r->ac == ac) {
            if (reply == NULL) {
                redis_lost(r, ac);
            } else if (reply->type == REDIS_REPLY_ERROR) {
                char reason[160];
                snprintf(reason, sizeof(reason), "refused: %.*s", (int)(reply->len < 120 ? reply->len : 120), reply->str);
                redis_teardown(r, reason);
            } else if (cmd->kind == CMD_PROBE_PING) {
                redis_up(r);
            }
        }
        free(cmd);
        return;
    }

    if (h2o_timeout_is_linked(&cmd->_timeout))
        h2o_timeout_unlink(&cmd->_timeout);
    pulse_redis_cb cb = cmd->cb;
    void *data = cmd->data;
    free(cmd);
    if (reply != NULL) {
        r->stats.replies++;
        if (redis_is_unavailable_error(reply))
            redis_count_failure(r); /* may close the connection; the reply stays valid until we return */
        else
            r->consecutive_failures = 0;
        cb(data, reply, NULL);
    } else {
        r->stats.failures++;
        redis_lost(r, ac);
        cb(data, NULL, err_lost);
    }
}

static void on_cmd_timeout(h2o_timeout_entry_t *entry)
{
    redis_cmd_t *cmd = H2O_STRUCT_FROM_MEMBER(redis_cmd_t, _timeout, entry);
    pulse_redis_t *r = cmd->r;
    pulse_redis_cb cb = cmd->cb;
    void *data = cmd->data;

    /* answer now; hiredis keeps the orphan until the reply comes or the connection goes */
    h2o_linklist_unlink(&cmd->_link);
    --r->npending;
    cmd->r = NULL;
    r->stats.timeouts++;
    /* callbacks run from here are inside h2o_timeout_run(&r->_cmd_timeout): r must outlive them (see destroy) */
    r->_in_timer = 1;
    redis_count_failure(r); /* may free cmd, and answer other commands "connection lost" */
    cb(data, NULL, err_timeout);
    r->_in_timer = 0;
}

static void on_probe_timeout(h2o_timeout_entry_t *entry)
{
    pulse_redis_t *r = H2O_STRUCT_FROM_MEMBER(pulse_redis_t, _probe_timer, entry);
    redis_teardown(r, "connect timeout");
}

static void on_retry_tick(h2o_timeout_entry_t *entry)
{
    pulse_redis_t *r = H2O_STRUCT_FROM_MEMBER(pulse_redis_t, _retry_timer, entry);
    if (r->state != PULSE_REDIS_DOWN)
        return;
    if (redis_now(r) >= r->next_attempt_at)
        redis_connect(r);
    else
        h2o_timeout_link(r->loop, &r->_tick, &r->_retry_timer);
}

static redis_cmd_t *redis_cmd_new(pulse_redis_t *r, cmd_kind_t kind, pulse_redis_cb cb, void *data)
{
    redis_cmd_t *cmd = malloc(sizeof(*cmd));
    if (cmd == NULL)
        return NULL;
    *cmd = (redis_cmd_t){{NULL, NULL}, {0}, r, kind, cb, data};
    cmd->_timeout.cb = on_cmd_timeout;
    h2o_linklist_insert(&r->_pending, &cmd->_link);
    ++r->npending;
    return cmd;
}

/* takes a command that hiredis refused back */
static void redis_cmd_abandon(pulse_redis_t *r, redis_cmd_t *cmd)
{
    h2o_linklist_unlink(&cmd->_link);
    --r->npending;
    if (h2o_timeout_is_linked(&cmd->_timeout))
        h2o_timeout_unlink(&cmd->_timeout);
    free(cmd);
}

static int redis_send_probe(pulse_redis_t *r, cmd_kind_t kind, int argc, const char **argv)
{
    redis_cmd_t *cmd = redis_cmd_new(r, kind, NULL, NULL);
    if (cmd == NULL)
        return -1;
    if (redisAsyncCommandArgv(r->ac, on_reply, cmd, argc, argv, NULL) != REDIS_OK) {
        redis_cmd_abandon(r, cmd);
        return -1;
    }
    return 0;
}

static void redis_connect(pulse_redis_t *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->conf.host, r->conf.port);
    if (ac == NULL || ac->err != 0) {
        if (r->failed_attempts++ == 0)
            pulse_log_msg("warning", NULL, "redis %s:%d: cannot connect (%s); retrying", r->conf.host, r->conf.port,
                          ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        redis_schedule_retry(r);
        return;
    }
    if (ev_attach(ac, r->loop) != 0) {
        redisAsyncFree(ac);
        redis_schedule_retry(r);
        return;
    }
    ac->data = r;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->state = PULSE_REDIS_CONNECTING;
    h2o_timeout_link(r->loop, &r->_connect_timeout, &r->_probe_timer);

    /* pipelined: AUTH, SELECT, PING; the PING reply closes the breaker */
    char db[16];
    const char *auth[] = {"AUTH", r->conf.password}, *sel[] = {"SELECT", db}, *ping[] = {"PING"};
    snprintf(db, sizeof(db), "%d", r->conf.db);
    if ((r->conf.password[0] != '\0' && redis_send_probe(r, CMD_PROBE_SETUP, 2, auth) != 0) ||
        (r->conf.db != 0 && redis_send_probe(r, CMD_PROBE_SETUP, 2, sel) != 0) || redis_send_probe(r, CMD_PROBE_PING, 1, ping) != 0)
        redis_teardown(r, "cannot send the probe");
}

/* commands whose replies do not come one per command: refused */
static int redis_is_forbidden(const char *cmd, size_t len)
{
    static const char *const names[] = {"subscribe", "psubscribe", "unsubscribe", "punsubscribe",
                                        "monitor",   "ssubscribe", "sunsubscribe"};
    /* *<argc>\r\n$<len>\r\n<name>\r\n */
    const char *p = memchr(cmd, '$', len), *end = cmd + len;
    if (p == NULL || (p = memchr(p, '\n', (size_t)(end - p))) == NULL)
        return 1;
    ++p;
    const char *e = memchr(p, '\r', (size_t)(end - p));
    if (e == NULL)
        return 1;
    for (size_t i = 0; i != sizeof(names) / sizeof(names[0]); ++i)
        if (strlen(names[i]) == (size_t)(e - p) && strncasecmp(p, names[i], (size_t)(e - p)) == 0)
            return 1;
    return 0;
}

static int redis_send_formatted(pulse_redis_t *r, pulse_redis_cb cb, void *data, const char *buf, int len)
{
    if (len <= 0 || redis_is_forbidden(buf, (size_t)len))
        return -1;
    redis_cmd_t *cmd = redis_cmd_new(r, CMD_USER, cb, data);
    if (cmd == NULL)
        return -1;
    if (redisAsyncFormattedCommand(r->ac, on_reply, cmd, buf, (size_t)len) != REDIS_OK) {
        redis_cmd_abandon(r, cmd);
        return -1;
    }
    h2o_timeout_link(r->loop, &r->_cmd_timeout, &cmd->_timeout);
    r->stats.commands++;
    return 0;
}

static int redis_can_send(pulse_redis_t *r)
{
    if (r->state == PULSE_REDIS_UP && r->ac != NULL && r->npending < r->conf.max_pending)
        return 1;
    r->stats.fast_fails++;
    return 0;
}

int pulse_redis_command(pulse_redis_t *r, pulse_redis_cb cb, void *data, const char *fmt, ...)
{
    char *buf = NULL;
    va_list ap;
    if (!redis_can_send(r))
        return -1;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&buf, fmt, ap);
    va_end(ap);
    int ret = len > 0 ? redis_send_formatted(r, cb, data, buf, len) : -1;
    if (len > 0)
        free(buf);
    return ret;
}

int pulse_redis_command_argv(pulse_redis_t *r, pulse_redis_cb cb, void *data, int argc, const char **argv, const size_t *argvlen)
{
    char *buf = NULL;
    if (!redis_can_send(r))
        return -1;
    if (argc <= 0)
        return -1;
    int len = redisFormatCommandArgv(&buf, argc, argv, argvlen);
    int ret = len > 0 ? redis_send_formatted(r, cb, data, buf, len) : -1;
    if (len > 0)
        redisFreeCommand(buf);
    return ret;
}

/* --- lifecycle --------------------------------------------------------------------------------------------------- */

static void redis_config_defaults(pulse_redis_config_t *c)
{
    if (c->host[0] == '\0')
        strcpy(c->host, "127.0.0.1");
    if (c->port <= 0)
        c->port = 6379;
    if (c->connect_timeout_ms <= 0)
        c->connect_timeout_ms = 200;
    if (c->command_timeout_ms <= 0)
        c->command_timeout_ms = 50;
    if (c->failure_threshold <= 0)
        c->failure_threshold = 3;
    if (c->backoff_min_ms <= 0)
        c->backoff_min_ms = 100;
    if (c->backoff_max_ms < c->backoff_min_ms)
        c->backoff_max_ms = c->backoff_min_ms > 5000 ? c->backoff_min_ms : 5000;
    if (c->max_pending <= 0)
        c->max_pending = 4096;
}

int pulse_redis_config_parse_url(pulse_redis_config_t *conf, const char *url, char *err, size_t errlen)
{
    memset(conf, 0, sizeof(*conf));
    if (url != NULL && url[0] != '\0') {
        const char *p = url, *end;
        if (strncmp(p, "redis://", 8) != 0) {
            snprintf(err, errlen, "redis url: only redis:// is supported");
            return -1;
        }
        p += 8;
        const char *at = strrchr(p, '@'), *slash;
        if (at != NULL) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            if (colon != NULL) { /* [user]:password; the user (Redis 6 ACL) is not supported and ignored */
                size_t n = (size_t)(at - colon - 1);
                if (n >= sizeof(conf->password)) {
                    snprintf(err, errlen, "redis url: password too long");
                    return -1;
                }
                memcpy(conf->password, colon + 1, n);
                conf->password[n] = '\0';
            }
            p = at + 1;
        }
        slash = strchr(p, '/');
        end = slash != NULL ? slash : p + strlen(p);
        const char *pc = memchr(p, ':', (size_t)(end - p));
        const char *hend = pc != NULL ? pc : end;
        if ((size_t)(hend - p) >= sizeof(conf->host)) {
            snprintf(err, errlen, "redis url: host too long");
            return -1;
        }
        memcpy(conf->host, p, (size_t)(hend - p));
        conf->host[hend - p] = '\0';
        if (pc != NULL) {
            char *e;
            long port = strtol(pc + 1, &e, 10);
            if (e != end || pc + 1 == end || port <= 0 || port > 65535) {
                snprintf(err, errlen, "redis url: bad port");
                return -1;
            }
            conf->port = (int)port;
        }
        if (slash != NULL && slash[1] != '\0') {
            char *e;
            long db = strtol(slash + 1, &e, 10);
            if (*e != '\0' || db < 0 || db > 1000000) {
                snprintf(err, errlen, "redis url: bad database number");
                return -1;
            }
            conf->db = (int)db;
        }
    }
    redis_config_defaults(conf);
    return 0;
}

pulse_redis_t *pulse_redis_create(h2o_evloop_t *loop, const pulse_redis_config_t *conf)
{
    pulse_redis_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = loop;
    if (conf != NULL)
        r->conf = *conf;
    r->conf.host[sizeof(r->conf.host) - 1] = '\0';
    r->conf.password[sizeof(r->conf.password) - 1] = '\0';
    redis_config_defaults(&r->conf);
    r->state = PULSE_REDIS_DOWN;
    r->backoff_ms = (uint64_t)r->conf.backoff_min_ms;
    h2o_linklist_init_anchor(&r->_pending);
    h2o_timeout_init(loop, &r->_cmd_timeout, (uint64_t)r->conf.command_timeout_ms);
    h2o_timeout_init(loop, &r->_connect_timeout, (uint64_t)r->conf.connect_timeout_ms);
    h2o_timeout_init(loop, &r->_tick, (uint64_t)r->conf.backoff_min_ms);
    r->_probe_timer.cb = on_probe_timeout;
    r->_retry_timer.cb = on_retry_tick;
    redis_connect(r);
    return r;
}

void pulse_redis_destroy(pulse_redis_t *r)
{
    if (r == NULL)
        return;
    if (r->_in_timer) {
        /* h2o_timeout_run is iterating r->_cmd_timeout: freeing it now would corrupt the loop */
        pulse_log_msg("error", NULL, "pulse_redis_destroy called from a callback that got an error (see redis.h)");
        abort();
    }
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->state = PULSE_REDIS_DOWN;
    if (ac != NULL)
        ac->data = NULL;
    if (h2o_timeout_is_linked(&r->_probe_timer))
        h2o_timeout_unlink(&r->_probe_timer);
    if (h2o_timeout_is_linked(&r->_retry_timer))
        h2o_timeout_unlink(&r->_retry_timer);

    /* answer everyone now; hiredis frees the orphans */
    while (!h2o_linklist_is_empty(&r->_pending)) {
        redis_cmd_t *cmd = H2O_STRUCT_FROM_MEMBER(redis_cmd_t, _link, r->_pending.next);
        h2o_linklist_unlink(&cmd->_link);
        --r->npending;
        cmd->r = NULL;
        if (h2o_timeout_is_linked(&cmd->_timeout))
            h2o_timeout_unlink(&cmd->_timeout);
        if (cmd->kind == CMD_USER) {
            r->stats.failures++;
            cmd->cb(cmd->data, NULL, err_closed);
        }
    }
    if (ac != NULL)
        redisAsyncFree(ac); /* deferred by hiredis when called from one of its callbacks */

    h2o_timeout_dispose(r->loop, &r->_cmd_timeout);
    h2o_timeout_dispose(r->loop, &r->_connect_timeout);
    h2o_timeout_dispose(r->loop, &r->_tick);
    free(r);
}

bool pulse_redis_is_up(pulse_redis_t *r)
{
    return r->state == PULSE_REDIS_UP;
}

pulse_redis_state_t pulse_redis_state(pulse_redis_t *r)
{
    return r->state;
}

const char *pulse_redis_state_name(pulse_redis_state_t s)
{
    switch (s) {
    case PULSE_REDIS_UP:
        return "up";
    case PULSE_REDIS_CONNECTING:
        return "connecting";
    case PULSE_REDIS_DOWN:
        break;
    }
    return "down";
}

void pulse_redis_stats(pulse_redis_t *r, pulse_redis_stats_t *out)
{
    *out = r->stats;
}
