/*
 * bench/live/sse_client.c: the live clients of bench/live/run.sh, in C (epoll, one thread), so that the load generator
 * takes as little as possible of the CPU the proxy and PostgreSQL share with it (node took 0.4 of 2 cores for 10,000
 * events/s; this takes a fraction of that).  Same contract as client.mjs in mode "live":
 *
 *   sse_client HOST PORT TOKENS OUT       (env STREAMS, KEYS, TENANTS, DURATION)
 *
 * TOKENS: a file of TENANTS lines "tenant<TAB>jwt".  Client i opens GET /rpc/lv_group?grp=<1 + i % KEYS> with the token
 * of tenant 1 + grp % TENANTS and Accept: text/event-stream (connections opened 200 at a time); each event's data is
 * a JSON array of {"id":..,"v":..}, and the newest commit it holds is its largest v.  Once every client has its first
 * state, OUT.first gets "client group seq" per client and "ready" is printed; for DURATION seconds each time a
 * client's largest v grows a line "client group seq t_ms" (wall clock) goes to OUT; then one JSON summary line.
 * Responses are HTTP/1.1 chunked (h2o streams them so); any other status or a broken stream counts as an error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct client {
    int i, group, fd;
    int status;          /* 0 until the status line was read */
    int in_body;         /* headers done */
    int first;           /* got a first state */
    long long max;       /* largest v seen */
    long chunk_left;     /* bytes of the current chunk still to read; -1: reading a size line */
    int chunk_crlf;      /* bytes of the CRLF after a chunk still to skip */
    char line[64];       /* a chunk-size line being read */
    int line_len;
    char *hdr;           /* headers being read */
    size_t hdr_len, hdr_cap;
    char *ev;            /* the SSE text not yet split into events */
    size_t ev_len, ev_cap;
} client_t;

static int nstreams, nkeys, ntenants, seconds;
static char **tokens;
static FILE *out;
static int ready, recording;
static long long events, errors;

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 512;
        while (c < *len + n + 1)
            c *= 2;
        if ((*buf = realloc(*buf, c)) == NULL) {
            perror("realloc");
            exit(1);
        }
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void fail(client_t *c, const char *why)
{
    errors++;
    fprintf(stderr, "stream %d: %s\n", c->i, why);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

/* the data of one event: its largest "v" */
static void seen(client_t *c, const char *data)
{
    long long max = -1;
    for (const char *p = data; (p = strstr(p, "\"v\"")) != NULL;) { /* "v" : 12 (json_build_object's spacing) or "v":12 */
        p += 3;
        while (*p == ' ')
            p++;
        if (*p != ':')
            continue;
        long long v = strtoll(p + 1, NULL, 10);
        if (v > max)
            max = v;
    }
    events++;
    if (!c->first) {
        c->first = 1;
        c->max = max;
        ready++;
        return;
    }
    if (max > c->max) {
        c->max = max;
        if (recording)
            fprintf(out, "%d %d %lld %.3f\n", c->i, c->group, max, wall_ms());
    }
}

/* SSE text (de-chunked): complete events ("\n\n"-terminated blocks) are handled, the rest kept */
static void sse_feed(client_t *c, const char *p, size_t n)
{
    append(&c->ev, &c->ev_len, &c->ev_cap, p, n);
    size_t start = 0;
    char *end;
    while ((end = strstr(c->ev + start, "\n\n")) != NULL) {
        *end = '\0';
        /* the data: lines of the block (the proxy sends one) */
        for (char *l = c->ev + start; l != NULL && *l;) {
            char *nl = strchr(l, '\n');
            if (nl != NULL)
                *nl = '\0';
            if (strncmp(l, "data:", 5) == 0)
                seen(c, l + 5);
            l = nl != NULL ? nl + 1 : NULL;
        }
        start = (size_t)(end - c->ev) + 2;
    }
    memmove(c->ev, c->ev + start, c->ev_len - start + 1);
    c->ev_len -= start;
}

/* body bytes, chunked */
static void body_feed(client_t *c, const char *p, size_t n)
{
    while (n > 0 && c->fd >= 0) {
        if (c->chunk_crlf > 0) {
            size_t k = n < (size_t)c->chunk_crlf ? n : (size_t)c->chunk_crlf;
            c->chunk_crlf -= (int)k;
            p += k;
            n -= k;
        } else if (c->chunk_left < 0) {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                c->line[c->line_len] = '\0';
                c->chunk_left = strtol(c->line, NULL, 16);
                c->line_len = 0;
                if (c->chunk_left == 0) {
                    fail(c, "the stream ended");
                    return;
                }
            } else if (ch != '\r' && c->line_len < (int)sizeof(c->line) - 1) {
                c->line[c->line_len++] = ch;
            }
        } else {
            size_t k = n < (size_t)c->chunk_left ? n : (size_t)c->chunk_left;
            sse_feed(c, p, k);
            c->chunk_left -= (long)k;
            p += k;
            n -= k;
            if (c->chunk_left == 0) {
                c->chunk_left = -1;
                c->chunk_crlf = 2;
            }
        }
    }
}

static void on_readable(client_t *c)
{
    char buf[65536];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            fail(c, n == 0 ? "closed by the server" : strerror(errno));
            return;
        }
        const char *p = buf;
        size_t len = (size_t)n;
        if (!c->in_body) {
            append(&c->hdr, &c->hdr_len, &c->hdr_cap, p, len);
            char *end = strstr(c->hdr, "\r\n\r\n");
            if (end == NULL)
                continue;
            if (sscanf(c->hdr, "HTTP/1.%*d %d", &c->status) != 1 || c->status != 200) {
                fail(c, "not 200");
                return;
            }
            c->in_body = 1;
            size_t used = (size_t)(end + 4 - c->hdr);
            body_feed(c, c->hdr + used, c->hdr_len - used);
            free(c->hdr);
            c->hdr = NULL;
            c->hdr_len = c->hdr_cap = 0;
        } else {
            body_feed(c, p, len);
        }
        if (c->fd < 0)
            return;
    }
}

static int open_stream(int ep, client_t *c, struct sockaddr_in *sa)
{
    char req[2048];
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)sa, sizeof(*sa)) != 0) {
        if (fd >= 0)
            close(fd);
        fail(c, "connect");
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int tenant = 1 + c->group % ntenants;
    int len = snprintf(req, sizeof(req),
                       "GET /rpc/lv_group?grp=%d HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
                       "Authorization: Bearer %s\r\n\r\n",
                       c->group, tokens[tenant]);
    if (send(fd, req, (size_t)len, 0) != len) {
        close(fd);
        fail(c, "send");
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT TOKENS OUT (env STREAMS KEYS TENANTS DURATION)\n", argv[0]);
        return 2;
    }
    nstreams = atoi(getenv("STREAMS") ? getenv("STREAMS") : "200");
    nkeys = atoi(getenv("KEYS") ? getenv("KEYS") : "50");
    ntenants = atoi(getenv("TENANTS") ? getenv("TENANTS") : "4");
    seconds = atoi(getenv("DURATION") ? getenv("DURATION") : "10");
    tokens = calloc((size_t)ntenants + 1, sizeof(*tokens));
    FILE *tf = fopen(argv[3], "r");
    char line[4096];
    while (tf != NULL && fgets(line, sizeof(line), tf) != NULL) {
        int t;
        char tok[4000];
        if (sscanf(line, "%d %3999s", &t, tok) == 2 && t >= 1 && t <= ntenants)
            tokens[t] = strdup(tok);
    }
    for (int t = 1; t <= ntenants; t++)
        if (tokens[t] == NULL) {
            fprintf(stderr, "no token for tenant %d in %s\n", t, argv[3]);
            return 2;
        }
    if ((out = fopen(argv[4], "w")) == NULL) {
        perror(argv[4]);
        return 1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &sa.sin_addr);
    int ep = epoll_create1(0);
    client_t *cs = calloc((size_t)nstreams, sizeof(*cs));
    for (int i = 0; i < nstreams; i++) {
        cs[i] = (client_t){.i = i, .group = 1 + i % nkeys, .fd = -1, .max = -1, .chunk_left = -1};
    }
    struct epoll_event evs[512];
    int opened = 0;
    double t_open = 0, t0 = 0, deadline = wall_ms() + 120e3;
    for (;;) {
        double now = wall_ms();
        if (opened < nstreams && now >= t_open) { /* 200 at a time: a burst of 10,000 would overflow the backlog */
            for (int k = 0; k < 200 && opened < nstreams; k++, opened++)
                open_stream(ep, &cs[opened], &sa);
            t_open = now + 20;
        }
        int n = epoll_wait(ep, evs, 512, 10);
        for (int k = 0; k < n; k++)
            on_readable(evs[k].data.ptr);
        now = wall_ms();
        if (!recording && t0 == 0) {
            if (ready == nstreams) {
                char path[4096];
                snprintf(path, sizeof(path), "%s.first", argv[4]);
                FILE *f = fopen(path, "w");
                for (int i = 0; f != NULL && i < nstreams; i++)
                    fprintf(f, "%d %d %lld\n", cs[i].i, cs[i].group, cs[i].max);
                if (f != NULL)
                    fclose(f);
                recording = 1;
                t0 = now;
                events = errors = 0;
                printf("ready\n");
                fflush(stdout);
            } else if (now > deadline) {
                fprintf(stderr, "only %d of %d clients got a first state in 120 s\n", ready, nstreams);
                return 1;
            }
        }
        if (recording && now - t0 >= seconds * 1e3) {
            printf("{\"mode\": \"live\", \"streams\": %d, \"keys\": %d, \"seconds\": %.3f, \"events\": %lld, \"requests\": 0, "
                   "\"skipped\": 0, \"errors\": %lld, \"errorKinds\": {%s%lld}}\n",
                   nstreams, nkeys, (now - t0) / 1e3, events, errors, errors ? "\"stream broken or not 200\": " : "\"none\": ",
                   errors);
            fclose(out);
            return 0;
        }
    }
}
