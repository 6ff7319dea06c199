/*
 * guard.c: the socket-level guard in front of h2o 2.2.5's HTTP/1 parser
 * (guard.h).  h2o frames requests in ways a front proxy may not (framing.c
 * says which), and answers a head it cannot parse with a plain-text 400
 * written to the socket before any request exists, so neither can be fixed
 * in a handler: by the time one runs, h2o has framed the request.
 *
 * How it stays in front: h2o's HTTP/1 layer reads only through the read
 * callback of its socket, which it sets itself (h2o_socket_read_start) when
 * a connection is accepted and when a response or a "100 Continue" has been
 * written.  The guard replaces that callback with its own (guard_on_read),
 * and the write callback of every write h2o starts with guard_on_write, so
 * that it regains control when each write completes and replaces the read
 * callback again (guard_rewrap).  Writes started outside a callback of the
 * guard (a handler answering later) are found by a filter on every path
 * (pulse_guard_register_filter).  guard_on_read runs each new byte through
 * the connection's pulse_framing_t first; h2o's callback then sees only
 * complete, valid heads and the body bytes after them.  The incomplete head
 * at the end of the stream is taken out of the socket's input and held here
 * until it is complete, so h2o never parses a partial head either.
 *
 * A violation: the bytes from the offending request on are dropped and
 * never reach h2o.  When h2o is idle (reading, nothing being written: the
 * requests before the offending one, if any, have been answered), the guard
 * stops h2o's reading, writes the problem document with "Connection: close",
 * shuts the socket down for writing, discards what the client still sends
 * for up to a second (so that closing does not reset the connection before
 * the client read the answer), and then makes h2o close its connection by
 * calling its read callback with an error.
 *
 * HTTP/2 (prior knowledge, or after an Upgrade: h2c) frames its own
 * messages: when h2o puts another read callback than its HTTP/1 one on the
 * socket, the guard lets go of it and frees itself.
 *
 * Ownership: a guard_t belongs to its socket (sock->on_close, which h2o's
 * server side does not use); it is freed when the socket is disposed, or
 * when it lets go of the socket, never while one of its callbacks is on the
 * stack (depth).  Everything runs on the socket's loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include "framing.h"
#include "guard.h"
#include "log.h"
#include "problem.h"
#include "respond.h"

#define GUARD_LINGER_MAX_BYTES (1024 * 1024)

enum { GUARD_HTTP1, GUARD_ANSWERING, GUARD_LINGERING };

typedef struct guard_t {
    pulse_worker_t *worker;
    h2o_socket_t *sock;
    int mode;
    int depth;               /* callbacks of this guard on the stack */
    int gone;                /* the socket was closed, or the guard let go of it: free when depth is 0 */
    int poisoned;            /* a violation was found: answer it when h2o is idle */
    h2o_socket_cb h1_read;   /* h2o's HTTP/1 read callback */
    h2o_socket_cb h2o_write; /* the completion callback of h2o's write in flight, when it is wrapped */
    pulse_framing_t framing;
    pulse_framing_limits_t limits;
    char *held; /* the incomplete head at the end of the stream */
    size_t held_len, held_cap;
    char *answer; /* the answer to the violation, while it is written */
    size_t lingered;
    struct timeval t0; /* when the violation was found */
    h2o_timeout_entry_t linger;
} guard_t;

static void guard_on_read(h2o_socket_t *sock, const char *err);
static void guard_on_write(h2o_socket_t *sock, const char *err);

static void guard_free(guard_t *g)
{
    if (h2o_timeout_is_linked(&g->linger))
        h2o_timeout_unlink(&g->linger);
    free(g->held);
    free(g->answer);
    free(g);
}

static void guard_on_close(void *data)
{
    guard_t *g = data;
    if (h2o_timeout_is_linked(&g->linger))
        h2o_timeout_unlink(&g->linger);
    g->gone = 1;
    if (g->depth == 0)
        guard_free(g);
}

/* the socket is HTTP/2's now: the guard is freed (at once when none of its callbacks is on the stack) */
static void guard_let_go(guard_t *g)
{
    g->sock->on_close.cb = NULL;
    g->sock->on_close.data = NULL;
    g->gone = 1;
    if (g->depth == 0)
        guard_free(g);
}

/* calls h2o's callback `cb`; returns 0 when the guard still has the socket after it, -1 when it was freed or let go */
static int guard_call(guard_t *g, h2o_socket_cb cb, const char *err)
{
    g->depth++;
    cb(g->sock, err);
    if (--g->depth == 0 && g->gone) {
        guard_free(g);
        return -1;
    }
    return g->gone ? -1 : 0;
}

/* the answer to the violation is out: stop discarding, let h2o close its connection */
static void guard_finish(guard_t *g)
{
    if (h2o_timeout_is_linked(&g->linger))
        h2o_timeout_unlink(&g->linger);
    h2o_socket_read_stop(g->sock);
    (void)guard_call(g, g->h1_read, "request refused by the framing guard");
}

static void guard_on_linger_timeout(h2o_timeout_entry_t *entry)
{
    guard_finish(H2O_STRUCT_FROM_MEMBER(guard_t, linger, entry));
}

static void guard_on_linger_read(h2o_socket_t *sock, const char *err)
{
    guard_t *g = sock->on_close.data;
    sock->input->size -= sock->bytes_read; /* discarded, and never seen by h2o */
    g->lingered += sock->bytes_read;
    if (err != NULL || g->lingered > GUARD_LINGER_MAX_BYTES)
        guard_finish(g);
}

static void guard_on_answer_sent(h2o_socket_t *sock, const char *err)
{
    guard_t *g = sock->on_close.data;
    if (err != NULL) {
        guard_finish(g);
        return;
    }
    g->mode = GUARD_LINGERING;
    shutdown(h2o_socket_get_fd(sock), SHUT_WR);
    h2o_socket_read_start(sock, guard_on_linger_read);
    h2o_timeout_link(g->worker->loop, &g->worker->ctx.one_sec_timeout, &g->linger);
}

/* writes the answer to the violation: h2o is idle (reading, not writing) */
static void guard_answer(guard_t *g)
{
    pulse_framing_t *f = &g->framing;
    char rid[65], date[64], host[NI_MAXHOST] = "";
    struct tm tm;
    time_t now = time(NULL);
    pulse_respond_request_id(f->request_id, strlen(f->request_id), rid);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    size_t blen = 0;
    char *body = pulse_problem_render(f->status, f->detail, rid, &blen);
    size_t cap = 512 + blen;
    g->mode = GUARD_ANSWERING;
    h2o_socket_read_stop(g->sock);
    if (body == NULL || (g->answer = malloc(cap)) == NULL) {
        free(body);
        guard_finish(g);
        return;
    }
    int n = snprintf(
        g->answer, cap,
        "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: pulse-proxy\r\nConnection: close\r\nContent-Type: " PULSE_PROBLEM_CONTENT_TYPE
        "\r\nCache-Control: no-store\r\nX-Request-Id: %s\r\nContent-Length: %zu\r\n\r\n%s",
        f->status, pulse_problem_title(f->status), date, rid, blen, f->head_only ? "" : body);
    free(body);
    struct sockaddr_storage ss;
    socklen_t sl = h2o_socket_getpeername(g->sock, (struct sockaddr *)&ss);
    if (sl != 0)
        h2o_socket_getnumerichost((struct sockaddr *)&ss, sl, host);
    double ms = pulse_respond_ms_since(&g->t0);
    pulse_access_t a = {.request_id = rid,
                        .method = f->method,
                        .method_len = strlen(f->method),
                        .path = f->target,
                        .path_len = strlen(f->target),
                        .remote = host,
                        .status = f->status,
                        .bytes = f->head_only ? 0 : blen,
                        .duration_ms = ms};
    pulse_log_access(&a);
    pulse_metrics_observe_request(g->worker->metrics, NULL, PULSE_CLASS_READ, f->status, ms / 1000.0);
    h2o_iovec_t buf = h2o_iovec_init(g->answer, (size_t)n);
    h2o_socket_write(g->sock, &buf, 1, guard_on_answer_sent);
}

/* after h2o had the socket: put the guard in front of what h2o armed, let go of HTTP/2, answer a violation when idle */
static void guard_rewrap(guard_t *g)
{
    h2o_socket_t *sock = g->sock;
    if (g->gone || g->mode != GUARD_HTTP1)
        return;
    if (sock->_cb.read != NULL && sock->_cb.read != guard_on_read) {
        if (sock->_cb.read != g->h1_read) {
            guard_let_go(g);
            return;
        }
        sock->_cb.read = guard_on_read;
    }
    if (sock->_cb.write != NULL && sock->_cb.write != guard_on_write) {
        g->h2o_write = sock->_cb.write;
        sock->_cb.write = guard_on_write;
    }
    if (g->poisoned && sock->_cb.read == guard_on_read && sock->_cb.write == NULL)
        guard_answer(g);
}

static void guard_on_write(h2o_socket_t *sock, const char *err)
{
    guard_t *g = sock->on_close.data;
    h2o_socket_cb cb = g->h2o_write;
    g->h2o_write = NULL;
    if (guard_call(g, cb, err) == 0)
        guard_rewrap(g);
}

/* keeps the `n` bytes at `p` as the held head */
static int guard_hold(guard_t *g, const char *p, size_t n)
{
    if (n > g->held_cap) {
        size_t cap = n < 1024 ? 1024 : n * 2;
        char *h = realloc(g->held, cap);
        if (h == NULL)
            return -1;
        g->held = h;
        g->held_cap = cap;
    }
    memcpy(g->held, p, n);
    g->held_len = n;
    return 0;
}

static void guard_on_read(h2o_socket_t *sock, const char *err)
{
    guard_t *g = sock->on_close.data;
    if (err != NULL) {
        (void)guard_call(g, g->h1_read, err);
        return;
    }
    size_t n = sock->bytes_read, base = sock->input->size - n, deliver = 0;
    if (g->held_len != 0) { /* the held head goes back in front of the new bytes */
        if (h2o_buffer_reserve(&sock->input, g->held_len).base == NULL) {
            (void)guard_call(g, g->h1_read, h2o_socket_error_out_of_memory);
            return;
        }
        char *b = sock->input->bytes + base;
        memmove(b + g->held_len, b, n);
        memcpy(b, g->held, g->held_len);
        sock->input->size += g->held_len;
        n += g->held_len;
        g->held_len = 0;
    }
    int rc = pulse_framing_feed(&g->framing, &g->limits, sock->input->bytes + base, n, &deliver);
    if (rc == 0 && deliver < n && guard_hold(g, sock->input->bytes + base + deliver, n - deliver) != 0) {
        (void)guard_call(g, g->h1_read, h2o_socket_error_out_of_memory);
        return;
    }
    if (rc != 0 && rc != PULSE_FRAMING_H2) {
        g->poisoned = 1;
        gettimeofday(&g->t0, NULL);
    }
    sock->input->size = base + deliver;
    /* with the HTTP/2 preface, h2o's HTTP/1 layer hands the socket to HTTP/2, and guard_rewrap lets go of it */
    if (deliver != 0 && guard_call(g, g->h1_read, NULL) != 0)
        return;
    guard_rewrap(g);
}

void pulse_guard_attach(pulse_worker_t *w, h2o_socket_t *sock)
{
    guard_t *g;
    if (sock->_cb.read == NULL || sock->on_close.cb != NULL) { /* not a connection h2o's HTTP/1 layer reads: nothing to guard */
        pulse_log_msg("error", NULL, "guard: unexpected socket state; connection not guarded");
        return;
    }
    if ((g = calloc(1, sizeof(*g))) == NULL) {
        pulse_log_msg("error", NULL, "guard: out of memory; connection closed");
        sock->_cb.read(sock, h2o_socket_error_out_of_memory);
        return;
    }
    pulse_config_t *conf = pulse_config_acquire();
    g->limits.max_header_bytes = (size_t)conf->max_header_bytes;
    g->limits.body_limit = (uint64_t)conf->body_limit;
    pulse_config_release(conf);
    g->worker = w;
    g->sock = sock;
    g->mode = GUARD_HTTP1;
    g->h1_read = sock->_cb.read;
    g->linger.cb = guard_on_linger_timeout;
    sock->_cb.read = guard_on_read;
    sock->on_close.cb = guard_on_close;
    sock->on_close.data = g;
}

/* --- the filter: after a response's bytes were handed to the socket, the write is wrapped ------------------------- */

static void guard_do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    /* an HTTP/1 request lives in its connection: the socket is still there after the write started */
    h2o_socket_t *sock =
        req->version < 0x200 && req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    h2o_ostream_send_next(self, req, bufs, bufcnt, state);
    if (sock != NULL && sock->on_close.cb == guard_on_close)
        guard_rewrap(sock->on_close.data);
}

static void guard_on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    if (req->version < 0x200) {
        h2o_ostream_t *o = h2o_add_ostream(req, sizeof(*o), slot);
        o->do_send = guard_do_send;
        slot = &o->next;
    }
    h2o_setup_next_ostream(req, slot);
}

int pulse_guard_register_filter(h2o_pathconf_t *pathconf)
{
    h2o_filter_t *f = h2o_create_filter(pathconf, sizeof(*f));
    if (f == NULL)
        return -1;
    f->on_setup_ostream = guard_on_setup_ostream;
    return 0;
}
