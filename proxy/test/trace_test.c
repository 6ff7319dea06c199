/*
 * trace_test.c: tracing (trace.c): traceparent parsing and formatting, ids,
 * deterministic sampling, span attributes, the OTLP/HTTP JSON encoding (read
 * back with jansson), and the exporter end to end against a small HTTP
 * server the test runs on a free loopback port: batching, the flush timer,
 * the final flush of destroy, an endpoint that refuses connections, one that
 * never answers, and a full queue.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "test.h"
#include "trace.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int parse(const char *s, pulse_trace_ctx_t *ctx)
{
    return pulse_trace_parse_traceparent(s, strlen(s), ctx);
}

static void test_traceparent(void)
{
    pulse_trace_ctx_t ctx;
    char hex[33], out[56];

    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx) == 0, "traceparent: valid v00");
    pulse_trace_hex(ctx.trace_id, 16, hex);
    CHECK_STR(hex, "4bf92f3577b34da6a3ce929d0e0e4736", "traceparent: trace id");
    pulse_trace_hex(ctx.span_id, 8, hex);
    CHECK_STR(hex, "00f067aa0ba902b7", "traceparent: parent id");
    CHECK(ctx.flags == 1, "traceparent: sampled flag");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &ctx) == 0 && ctx.flags == 0,
          "traceparent: not sampled");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &ctx) == 0 && ctx.flags == 0xff,
          "traceparent: unknown flags kept");

    CHECK(parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", &ctx) == -1, "traceparent: uppercase trace id");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", &ctx) == -1, "traceparent: uppercase parent id");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", &ctx) == -1, "traceparent: uppercase flags");
    CHECK(parse("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx) == -1, "traceparent: uppercase version");
    CHECK(parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", &ctx) == -1, "traceparent: zero trace id");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", &ctx) == -1, "traceparent: zero parent id");
    CHECK(parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx) == -1, "traceparent: version ff");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", &ctx) == -1, "traceparent: v00 too long");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", &ctx) == -1, "traceparent: too short");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", &ctx) == -1, "traceparent: short trace id");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701", &ctx) == -1, "traceparent: short parent id");
    CHECK(parse("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx) == -1, "traceparent: bad separator");
    CHECK(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01", &ctx) == -1, "traceparent: non-hex digit");
    CHECK(parse("", &ctx) == -1, "traceparent: empty");
    CHECK(pulse_trace_parse_traceparent(NULL, 0, &ctx) == -1, "traceparent: NULL");
    CHECK(pulse_trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 54, &ctx) == -1,
          "traceparent: len honoured");

    CHECK(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx) == 0, "traceparent: future version, 55 chars");
    CHECK(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", &ctx) == 0 && ctx.flags == 1 &&
              ctx.trace_id[0] == 0x4b,
          "traceparent: future version with more fields");
    CHECK(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", &ctx) == -1,
          "traceparent: future version, no dash after flags");
    CHECK(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", &ctx) == -1, "traceparent: future version, short");

    /* format and round trip */
    uint8_t tid[16], sid[8];
    pulse_trace_new_ids(tid, sid);
    pulse_trace_format_traceparent(tid, sid, 1, out);
    CHECK(strlen(out) == PULSE_TRACEPARENT_LEN && memcmp(out, "00-", 3) == 0 && memcmp(out + 52, "-01", 3) == 0,
          "format: sampled shape");
    CHECK(parse(out, &ctx) == 0 && memcmp(ctx.trace_id, tid, 16) == 0 && memcmp(ctx.span_id, sid, 8) == 0 && ctx.flags == 1,
          "format: round trip");
    pulse_trace_format_traceparent(tid, sid, 0, out);
    CHECK(parse(out, &ctx) == 0 && ctx.flags == 0, "format: round trip, not sampled");
    static const uint8_t t1[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
    static const uint8_t s1[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
    pulse_trace_format_traceparent(t1, s1, 1, out);
    CHECK_STR(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "format: known value");

    uint8_t b[4];
    CHECK(pulse_trace_unhex("00ff7a10", 4, b) == 0 && b[0] == 0 && b[1] == 0xff && b[2] == 0x7a && b[3] == 0x10, "unhex");
    CHECK(pulse_trace_unhex("00FF7a10", 4, b) == -1, "unhex: uppercase rejected");
}

#define IDS_PER_THREAD 2000
#define ID_THREADS 4

static void *ids_thread(void *arg)
{
    uint8_t(*ids)[8] = arg;
    for (int i = 0; i < IDS_PER_THREAD; i++)
        pulse_trace_new_ids(NULL, ids[i]);
    return NULL;
}

static int cmp8(const void *a, const void *b)
{
    return memcmp(a, b, 8);
}

static void test_ids(void)
{
    static uint8_t ids[ID_THREADS * IDS_PER_THREAD][8];
    pthread_t th[ID_THREADS];
    for (int i = 0; i < ID_THREADS; i++)
        pthread_create(&th[i], NULL, ids_thread, ids[i * IDS_PER_THREAD]);
    for (int i = 0; i < ID_THREADS; i++)
        pthread_join(th[i], NULL);
    qsort(ids, ID_THREADS * IDS_PER_THREAD, 8, cmp8);
    int dup = 0, zero = 0;
    static const uint8_t z[8];
    for (int i = 0; i < ID_THREADS * IDS_PER_THREAD; i++) {
        zero += memcmp(ids[i], z, 8) == 0;
        dup += i > 0 && memcmp(ids[i], ids[i - 1], 8) == 0;
    }
    CHECK(dup == 0 && zero == 0, "ids: span ids from 4 threads unique and non-zero");

    uint8_t a[16], c[16], s[8];
    static const uint8_t z16[16];
    pulse_trace_new_ids(a, s);
    pulse_trace_new_ids(c, NULL);
    CHECK(memcmp(a, c, 16) != 0 && memcmp(a, z16, 16) != 0 && memcmp(s, z16, 8) != 0, "ids: trace ids differ, non-zero");
}

static void test_sampling(void)
{
    int none = 0, all = 0, half = 0, tenth = 0, stable = 1;
    for (int i = 0; i < 10000; i++) {
        uint8_t tid[16];
        pulse_trace_new_ids(tid, NULL);
        none += pulse_trace_sample(tid, 0);
        all += pulse_trace_sample(tid, 1000000);
        int h = pulse_trace_sample(tid, 500000);
        half += h;
        tenth += pulse_trace_sample(tid, 100000);
        stable &= pulse_trace_sample(tid, 500000) == h;
        if (!h)
            stable &= !pulse_trace_sample(tid, 100000); /* a lower ratio samples a subset */
    }
    CHECK(none == 0, "sample: ratio 0 never");
    CHECK(all == 10000, "sample: ratio 1000000 always");
    /* binomial: sd 50 for 50%, 30 for 10%; 10 sd margins */
    CHECK(half > 4500 && half < 5500, "sample: 50% within tolerance");
    CHECK(tenth > 700 && tenth < 1300, "sample: 10% within tolerance");
    CHECK(stable, "sample: deterministic and consistent across ratios");

    uint8_t lo[16] = {1}, hi[16] = {1};
    memset(hi + 9, 0xff, 7);
    CHECK(!pulse_trace_sample(lo, 999999) && pulse_trace_sample(hi, 1), "sample: decided on the rightmost 56 bits");
}

static void test_span_attrs(void)
{
    pulse_span_t s;
    uint8_t tid[16], parent[8];
    pulse_trace_new_ids(tid, parent);
    pulse_span_start(&s, "GET /rpc/x", PULSE_SPAN_SERVER, tid, parent, 0);
    CHECK(memcmp(s.trace_id, tid, 16) == 0 && memcmp(s.parent_span_id, parent, 8) == 0 && s.start_ns > 1600000000000000000ULL,
          "span: start");
    CHECK(pulse_span_set_str(&s, "http.method", "GET") == 0 && pulse_span_set_int(&s, "http.status_code", 200) == 0,
          "span: set attributes");
    CHECK(pulse_span_set_int(&s, "http.status_code", 404) == 0 && s.nattrs == 2 && s.attrs[1].v.i == 404,
          "span: same key replaces");
    char key[16];
    int rc = 0;
    for (int i = 0; i < PULSE_SPAN_MAX_ATTRS - 2; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        rc |= pulse_span_set_int(&s, key, i);
    }
    CHECK(rc == 0 && s.nattrs == PULSE_SPAN_MAX_ATTRS, "span: fills up");
    CHECK(pulse_span_set_str(&s, "one.more", "x") == -1 && s.dropped_attrs == 1, "span: full, dropped and counted");
    CHECK(pulse_span_set_str(&s, "http.method", "POST") == 0 && strcmp(s.attrs[0].v.str, "POST") == 0,
          "span: full span still replaces");

    /* truncation at a UTF-8 boundary: 126 'a' then a 2-byte char would end at byte 128, one past the limit */
    char v[200];
    memset(v, 'a', 126);
    memcpy(v + 126, "\xc3\xa9zz", 5);
    pulse_span_start(&s, NULL, PULSE_SPAN_INTERNAL, tid, NULL, 0);
    CHECK(pulse_span_set_str(&s, "v", v) == 0 && strlen(s.attrs[0].v.str) == 126, "span: truncated before a split char");
    memcpy(v + 125, "\xc3\xa9zz", 5);
    CHECK(pulse_span_set_str(&s, "v", v) == 0 && strlen(s.attrs[0].v.str) == 127, "span: char that fits is kept");
    CHECK(pulse_span_set_strn(&s, "w", "abc", 2) == 0 && strcmp(s.attrs[1].v.str, "ab") == 0, "span: strn length");
    pulse_span_set_status(&s, PULSE_SPAN_STATUS_OK, "ignored");
    CHECK(s.status == PULSE_SPAN_STATUS_OK && s.status_msg[0] == '\0', "span: ok status has no message");
    pulse_span_set_status(&s, PULSE_SPAN_STATUS_ERROR, "boom");
    CHECK(s.status == PULSE_SPAN_STATUS_ERROR && strcmp(s.status_msg, "boom") == 0, "span: error message");
}

static json_t *attr_value(json_t *attrs, const char *key)
{
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
            return json_object_get(a, "value");
    }
    return NULL;
}

static void test_encode(void)
{
    pulse_span_t spans[3];
    uint8_t tid[16];
    pulse_trace_new_ids(tid, NULL);
    pulse_span_start(&spans[0], "GET /rpc/\"quoted\"\n", PULSE_SPAN_SERVER, tid, NULL, 1700000000123456789ULL);
    pulse_span_set_str(&spans[0], "http.request.method", "GET");
    pulse_span_set_int(&spans[0], "http.response.status_code", 200);
    pulse_span_set_int(&spans[0], "neg", -9007199254740993LL);
    pulse_span_set_str(&spans[0], "bad.utf8", "a\xff\xc3(b");
    pulse_span_end(&spans[0], 1700000000223456789ULL);
    pulse_span_start(&spans[1], "pg.query", PULSE_SPAN_CLIENT, tid, spans[0].span_id, 1700000000133456789ULL);
    pulse_span_set_status(&spans[1], PULSE_SPAN_STATUS_ERROR, "canceling statement due to \"timeout\"");
    pulse_span_end(&spans[1], 1700000000213456789ULL);
    pulse_span_start(&spans[2], "cache.lookup", PULSE_SPAN_INTERNAL, tid, spans[0].span_id, 1700000000124000000ULL);
    pulse_span_set_status(&spans[2], PULSE_SPAN_STATUS_OK, NULL);
    pulse_span_end(&spans[2], 1700000000125000000ULL);

    size_t len = 0;
    char *body = pulse_trace_encode_otlp(spans, 3, "svc-test", &len);
    CHECK(body != NULL && len == strlen(body), "encode: returns the body and its length");
    json_error_t jerr;
    json_t *root = body != NULL ? json_loadb(body, len, 0, &jerr) : NULL;
    CHECK(root != NULL, "encode: valid JSON (and UTF-8)");
    if (root == NULL) {
        printf("#   %s\n#   %s\n", jerr.text, body != NULL ? body : "(null)");
        free(body);
        return;
    }
    json_t *rs = json_array_get(json_object_get(root, "resourceSpans"), 0);
    json_t *svc = attr_value(json_object_get(json_object_get(rs, "resource"), "attributes"), "service.name");
    CHECK_STR(json_string_value(json_object_get(svc, "stringValue")), "svc-test", "encode: service.name");
    json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
    CHECK_STR(json_string_value(json_object_get(json_object_get(ss, "scope"), "name")), "pulse-proxy", "encode: scope name");
    json_t *js = json_object_get(ss, "spans");
    CHECK(json_array_size(js) == 3, "encode: 3 spans");
    json_t *s0 = json_array_get(js, 0), *s1 = json_array_get(js, 1), *s2 = json_array_get(js, 2);

    char hex[33];
    pulse_trace_hex(tid, 16, hex);
    CHECK_STR(json_string_value(json_object_get(s0, "traceId")), hex, "encode: traceId lowercase hex");
    pulse_trace_hex(spans[0].span_id, 8, hex);
    CHECK_STR(json_string_value(json_object_get(s0, "spanId")), hex, "encode: spanId hex");
    CHECK(json_object_get(s0, "parentSpanId") == NULL, "encode: root has no parentSpanId");
    CHECK_STR(json_string_value(json_object_get(s1, "parentSpanId")), hex, "encode: child's parentSpanId");
    CHECK_STR(json_string_value(json_object_get(s0, "name")), "GET /rpc/\"quoted\"\n", "encode: name escaped");
    CHECK(json_integer_value(json_object_get(s0, "kind")) == 2 && json_integer_value(json_object_get(s1, "kind")) == 3 &&
              json_integer_value(json_object_get(s2, "kind")) == 1,
          "encode: kinds server 2, client 3, internal 1");
    CHECK_STR(json_string_value(json_object_get(s0, "startTimeUnixNano")), "1700000000123456789", "encode: start as string");
    CHECK_STR(json_string_value(json_object_get(s0, "endTimeUnixNano")), "1700000000223456789", "encode: end as string");

    json_t *attrs = json_object_get(s0, "attributes");
    CHECK(json_array_size(attrs) == 4, "encode: 4 attributes");
    CHECK_STR(json_string_value(json_object_get(attr_value(attrs, "http.request.method"), "stringValue")), "GET",
              "encode: string attribute");
    CHECK_STR(json_string_value(json_object_get(attr_value(attrs, "http.response.status_code"), "intValue")), "200",
              "encode: int attribute as decimal string");
    CHECK_STR(json_string_value(json_object_get(attr_value(attrs, "neg"), "intValue")), "-9007199254740993",
              "encode: negative int64 exact");
    CHECK_STR(json_string_value(json_object_get(attr_value(attrs, "bad.utf8"), "stringValue")), "a\xef\xbf\xbd\xef\xbf\xbd(b",
              "encode: invalid UTF-8 replaced");
    CHECK(json_object_get(attr_value(attrs, "http.request.method"), "intValue") == NULL, "encode: one value type");

    json_t *st0 = json_object_get(s0, "status"), *st1 = json_object_get(s1, "status"), *st2 = json_object_get(s2, "status");
    CHECK(json_integer_value(json_object_get(st0, "code")) == 0 && json_object_get(st0, "message") == NULL, "encode: unset status");
    CHECK(json_integer_value(json_object_get(st1, "code")) == 2, "encode: error status code");
    CHECK_STR(json_string_value(json_object_get(st1, "message")), "canceling statement due to \"timeout\"",
              "encode: error status message");
    CHECK(json_integer_value(json_object_get(st2, "code")) == 1, "encode: ok status code");
    CHECK(json_object_get(s0, "droppedAttributesCount") == NULL, "encode: no dropped count when none");
    json_decref(root);
    free(body);

    body = pulse_trace_encode_otlp(NULL, 0, NULL, &len);
    root = body != NULL ? json_loads(body, 0, NULL) : NULL;
    rs = json_array_get(json_object_get(root, "resourceSpans"), 0);
    svc = attr_value(json_object_get(json_object_get(rs, "resource"), "attributes"), "service.name");
    CHECK(root != NULL && json_array_size(json_object_get(json_array_get(json_object_get(rs, "scopeSpans"), 0), "spans")) == 0,
          "encode: no spans");
    CHECK_STR(json_string_value(json_object_get(svc, "stringValue")), "pulse-proxy", "encode: default service.name");
    json_decref(root);
    free(body);
}

/* ---------------------------------------------------------------------------------------------------------------------
 * A tiny OTLP/HTTP receiver: one connection at a time, HTTP/1.1 keep-alive, Content-Length bodies.
 * ------------------------------------------------------------------------------------------------------------------- */

#define MAX_BODIES 256

typedef struct {
    int fd, port, stop;
    int accept_conns; /* 0: never accept (the kernel completes the handshake, nobody answers) */
    pthread_t thread;
    pthread_mutex_t mutex;
    char *bodies[MAX_BODIES];
    size_t nbodies, nspans, bad_requests;
} server_t;

static int stopped(server_t *sv)
{
    pthread_mutex_lock(&sv->mutex);
    int s = sv->stop;
    pthread_mutex_unlock(&sv->mutex);
    return s;
}

/* waits until fd is readable; returns 0, or -1 when the server stops */
static int wait_readable(server_t *sv, int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (!stopped(sv))
        if (poll(&p, 1, 20) > 0)
            return 0;
    return -1;
}

static size_t count_spans(const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    size_t n = json_array_size(json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(root, "resourceSpans"), 0), "scopeSpans"), 0), "spans"));
    json_decref(root);
    return n;
}

static void serve_conn(server_t *sv, int c)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        char *end;
        while ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
            if (len + 4096 > cap)
                buf = realloc(buf, cap *= 2);
            if (wait_readable(sv, c) != 0)
                goto out;
            ssize_t r = read(c, buf + len, cap - len);
            if (r <= 0)
                goto out;
            len += (size_t)r;
        }
        size_t hlen = (size_t)(end - buf) + 4, clen = 0;
        buf[hlen - 1] = '\0';
        int ok = strncmp(buf, "POST /v1/traces HTTP/1.1\r\n", 26) == 0;
        int json = 0;
        for (char *line = strstr(buf, "\r\n"); line != NULL && line[2] != '\r'; line = strstr(line + 2, "\r\n")) {
            if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
                clen = strtoul(line + 17, NULL, 10);
            if (strncasecmp(line + 2, "Content-Type: application/json", 30) == 0)
                json = 1;
        }
        while (len < hlen + clen) {
            if (hlen + clen > cap)
                buf = realloc(buf, cap = hlen + clen);
            if (wait_readable(sv, c) != 0)
                goto out;
            ssize_t r = read(c, buf + len, cap - len);
            if (r <= 0)
                goto out;
            len += (size_t)r;
        }
        char *body = malloc(clen + 1);
        memcpy(body, buf + hlen, clen);
        body[clen] = '\0';
        size_t n = count_spans(body, clen);
        pthread_mutex_lock(&sv->mutex);
        if (!ok || !json)
            sv->bad_requests++;
        if (sv->nbodies < MAX_BODIES)
            sv->bodies[sv->nbodies++] = body;
        else
            free(body);
        sv->nspans += n;
        pthread_mutex_unlock(&sv->mutex);
        static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        if (send(c, resp, sizeof(resp) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(resp) - 1)
            goto out;
        memmove(buf, buf + hlen + clen, len - hlen - clen);
        len -= hlen + clen;
    }
out:
    free(buf);
    close(c);
}

static void *server_main(void *arg)
{
    server_t *sv = arg;
    while (sv->accept_conns && wait_readable(sv, sv->fd) == 0) {
        int c = accept(sv->fd, NULL, NULL);
        if (c >= 0)
            serve_conn(sv, c);
    }
    return NULL;
}

static int server_start(server_t *sv, int accept_conns)
{
    memset(sv, 0, sizeof(*sv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sin);
    sv->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (sv->fd < 0 || bind(sv->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(sv->fd, 8) != 0 ||
        getsockname(sv->fd, (struct sockaddr *)&sin, &slen) != 0)
        return -1;
    sv->port = ntohs(sin.sin_port);
    sv->accept_conns = accept_conns;
    pthread_mutex_init(&sv->mutex, NULL);
    return pthread_create(&sv->thread, NULL, server_main, sv) == 0 ? 0 : -1;
}

static void server_stop(server_t *sv)
{
    pthread_mutex_lock(&sv->mutex);
    sv->stop = 1;
    pthread_mutex_unlock(&sv->mutex);
    pthread_join(sv->thread, NULL);
    close(sv->fd);
    for (size_t i = 0; i < sv->nbodies; i++)
        free(sv->bodies[i]);
    pthread_mutex_destroy(&sv->mutex);
}

static size_t server_spans(server_t *sv)
{
    pthread_mutex_lock(&sv->mutex);
    size_t n = sv->nspans;
    pthread_mutex_unlock(&sv->mutex);
    return n;
}

/* waits up to `ms` for the server to have received `n` spans; returns the time it took, or -1 */
static long wait_spans(server_t *sv, size_t n, int ms)
{
    uint64_t start = now_ms();
    while (server_spans(sv) < n) {
        if (now_ms() - start > (uint64_t)ms)
            return -1;
        usleep(2000);
    }
    return (long)(now_ms() - start);
}

static void make_spans(pulse_span_t *spans, size_t n)
{
    uint8_t tid[16];
    pulse_trace_new_ids(tid, NULL);
    for (size_t i = 0; i < n; i++) {
        pulse_span_start(&spans[i], i == 0 ? "GET /rpc/x" : "pg.query", i == 0 ? PULSE_SPAN_SERVER : PULSE_SPAN_CLIENT, tid,
                         i == 0 ? NULL : spans[0].span_id, 0);
        pulse_span_set_int(&spans[i], "i", (int64_t)i);
        pulse_span_end(&spans[i], 0);
    }
}

/* checks that the received bodies hold exactly the spans `want` (by span id, each once) */
static void check_received(server_t *sv, const pulse_span_t *want, size_t n, const char *name)
{
    size_t found = 0, extra = 0, dup = 0, badtrace = 0;
    char *seen = calloc(n, 1);
    for (size_t b = 0; b < sv->nbodies; b++) {
        json_t *root = json_loads(sv->bodies[b], 0, NULL);
        json_t *spans = json_object_get(
            json_array_get(json_object_get(json_array_get(json_object_get(root, "resourceSpans"), 0), "scopeSpans"), 0), "spans");
        size_t i;
        json_t *s;
        json_array_foreach(spans, i, s)
        {
            uint8_t sid[8], tid[16];
            const char *hs = json_string_value(json_object_get(s, "spanId"));
            const char *ht = json_string_value(json_object_get(s, "traceId"));
            size_t j = n;
            if (hs != NULL && strlen(hs) == 16 && pulse_trace_unhex(hs, 8, sid) == 0)
                for (j = 0; j < n && memcmp(want[j].span_id, sid, 8) != 0; j++)
                    ;
            if (j == n) {
                extra++;
                continue;
            }
            if (ht == NULL || strlen(ht) != 32 || pulse_trace_unhex(ht, 16, tid) != 0 || memcmp(tid, want[j].trace_id, 16) != 0)
                badtrace++;
            if (seen[j])
                dup++;
            else
                found++;
            seen[j] = 1;
        }
        json_decref(root);
    }
    free(seen);
    CHECK(found == n && extra == 0 && dup == 0 && badtrace == 0, name);
    if (found != n || extra != 0 || dup != 0 || badtrace != 0)
        printf("#   found %zu of %zu, %zu unknown, %zu duplicates, %zu wrong trace ids\n", found, n, extra, dup, badtrace);
}

/* starts a collector (answering or `silent`) and writes its URL into `url`; CHECKs `what` on failure */
static int collector_start(server_t *sv, int answer, char url[64], const char *what)
{
    if (server_start(sv, answer) != 0) {
        CHECK(0, what);
        return -1;
    }
    snprintf(url, 64, "http://127.0.0.1:%d/v1/traces", sv->port);
    return 0;
}

/* waits up to 2 s until the exporter counted `batches` sent batches; `st` holds its last stats */
static void wait_batches_sent(pulse_tracer_t *t, uint64_t batches, pulse_tracer_stats_t *st)
{
    for (uint64_t t0 = now_ms(); pulse_tracer_stats(t, st), st->batches_sent < batches && now_ms() - t0 < 2000;)
        usleep(2000);
}

static void test_export(void)
{
    server_t sv;
    char url[64];
    if (collector_start(&sv, 1, url, "export: test server starts") != 0)
        return;

    /* batch_max wakes the thread long before flush_ms; destroy flushes the rest */
    pulse_tracer_config_t conf = {.endpoint = url, .service_name = "svc", .batch_max = 10, .flush_ms = 60000, .timeout_ms = 2000};
    pulse_tracer_t *t = pulse_tracer_create(&conf);
    CHECK(t != NULL, "export: create");
    if (t == NULL) {
        server_stop(&sv);
        return;
    }
    enum { N = 25 };
    pulse_span_t spans[N];
    make_spans(spans, N);
    int rc = pulse_tracer_submit(t, &spans[0], 1);
    usleep(30000); /* the thread now waits for flush_ms: only reaching batch_max can wake it */
    for (int i = 1; i < N; i++)
        rc |= pulse_tracer_submit(t, &spans[i], 1);
    CHECK(rc == 0, "export: submit");
    CHECK(wait_spans(&sv, 20, 3000) >= 0, "export: two full batches sent without waiting for flush_ms");
    pulse_tracer_stats_t st;
    wait_batches_sent(t, 2, &st); /* the server stored the body before it answered */
    CHECK(st.batches_sent == 2 && st.spans_exported == 20 && st.spans_queued == 5, "export: the partial batch waits");
    uint64_t t0 = now_ms();
    pulse_tracer_destroy(t);
    CHECK(now_ms() - t0 < 1500, "export: destroy flushes promptly");
    pthread_mutex_lock(&sv.mutex);
    CHECK(sv.nbodies == 3 && sv.nspans == N && sv.bad_requests == 0, "export: 3 POSTs of application/json to /v1/traces");
    CHECK(sv.nbodies == 3 && count_spans(sv.bodies[0], strlen(sv.bodies[0])) == 10 &&
              count_spans(sv.bodies[1], strlen(sv.bodies[1])) == 10 && count_spans(sv.bodies[2], strlen(sv.bodies[2])) == 5,
          "export: batches of 10, 10, 5");
    check_received(&sv, spans, N, "export: exactly the submitted spans, each once");
    for (size_t b = 0; b < sv.nbodies; b++)
        free(sv.bodies[b]);
    sv.nbodies = sv.nspans = 0;
    pthread_mutex_unlock(&sv.mutex);

    /* the flush timer: spans below batch_max leave after flush_ms; a batch submitted at once */
    conf = (pulse_tracer_config_t){.endpoint = url, .flush_ms = 100};
    t = pulse_tracer_create(&conf);
    make_spans(spans, 7);
    CHECK(pulse_tracer_submit(t, spans, 7) == 0, "timer: submit 7 at once");
    long took = wait_spans(&sv, 7, 3000);
    CHECK(took >= 50 && took < 2000, "timer: sent after about flush_ms");
    make_spans(spans + 7, 3);
    CHECK(pulse_tracer_submit(t, spans + 7, 3) == 0, "timer: submit 3 more");
    took = wait_spans(&sv, 10, 3000);
    CHECK(took >= 50 && took < 2000, "timer: timer restarts for the next batch");
    /* the server has the body; the exporter counts the batch once it has read the answer */
    wait_batches_sent(t, 2, &st);
    CHECK(st.spans_submitted == 10 && st.spans_exported == 10 && st.batches_sent == 2 && st.export_failures == 0 &&
              st.spans_dropped == 0 && st.spans_queued == 0,
          "timer: stats add up");
    pulse_tracer_destroy(t);
    pthread_mutex_lock(&sv.mutex);
    check_received(&sv, spans, 10, "timer: exactly the submitted spans");
    pthread_mutex_unlock(&sv.mutex);
    CHECK(pulse_tracer_submit(NULL, spans, 1) == 0, "submit to a NULL tracer does nothing");
    memset(&st, 0xff, sizeof(st));
    pulse_tracer_stats(NULL, &st);
    CHECK(st.spans_submitted == 0 && st.export_failures == 0, "stats of a NULL tracer are zero");
    pulse_tracer_destroy(NULL);
    server_stop(&sv);
}

static void test_export_failures(void)
{
    /* a closed port: connections are refused */
    server_t sv;
    char url[64];
    if (collector_start(&sv, 1, url, "refused: test server starts") != 0)
        return;
    server_stop(&sv); /* the port is free again */
    pulse_tracer_config_t conf = {.endpoint = url, .batch_max = 8, .flush_ms = 20, .timeout_ms = 500};
    pulse_tracer_t *t = pulse_tracer_create(&conf);
    enum { N = 200 };
    static pulse_span_t spans[N];
    make_spans(spans, N);
    uint64_t worst = 0, t0 = now_ms();
    int rc = 0;
    for (int i = 0; i < N; i++) {
        uint64_t s = now_ms();
        rc |= pulse_tracer_submit(t, &spans[i], 1);
        if (now_ms() - s > worst)
            worst = now_ms() - s;
        if (i % 50 == 49)
            usleep(30000); /* let the thread try a few batches meanwhile */
    }
    CHECK(rc == 0 && worst < 100, "refused: submit never waits");
    (void)t0;
    uint64_t start = now_ms();
    while (now_ms() - start < 2000) { /* the thread gives up on a batch fast */
        pulse_tracer_stats_t st;
        pulse_tracer_stats(t, &st);
        if (st.export_failures >= 2)
            break;
        usleep(5000);
    }
    t0 = now_ms();
    pulse_tracer_destroy(t); /* leaks nothing, no crash */
    CHECK(now_ms() - t0 < 1500, "refused: destroy returns within timeout_ms");

    t = pulse_tracer_create(&conf);
    make_spans(spans, 20);
    CHECK(pulse_tracer_submit(t, spans, 20) == 0, "refused: submit");
    t0 = now_ms();
    while (now_ms() - t0 < 2000) {
        pulse_tracer_stats_t st;
        pulse_tracer_stats(t, &st);
        if (st.spans_queued == 0)
            break;
        usleep(5000);
    }
    pulse_tracer_stats_t st;
    pulse_tracer_stats(t, &st);
    CHECK(st.export_failures == 3 && st.spans_failed == 20 && st.spans_exported == 0 && st.batches_sent == 0 &&
              st.spans_submitted == 20 && st.spans_queued == 0,
          "refused: every batch failed once and was discarded (8 + 8 + 4)");
    pulse_tracer_destroy(t);

    /* a port that accepts connections and never answers: POSTs time out; a full queue drops */
    if (collector_start(&sv, 0, url, "silent: test server starts") != 0)
        return;
    conf = (pulse_tracer_config_t){.endpoint = url, .queue_max = 16, .batch_max = 16, .flush_ms = 60000, .timeout_ms = 400};
    t = pulse_tracer_create(&conf);
    make_spans(spans, 60);
    rc = 0;
    for (int i = 0; i < 16; i++)
        rc |= pulse_tracer_submit(t, &spans[i], 1);
    CHECK(rc == 0, "silent: 16 queued");
    usleep(20000); /* the thread is now waiting on the POST of those 16 */
    int dropped = 0;
    t0 = now_ms();
    for (int i = 16; i < 26; i++)
        dropped += pulse_tracer_submit(t, &spans[i], 1) == -1;
    CHECK(now_ms() - t0 < 100, "silent: submit does not wait for the hanging POST");
    CHECK(dropped == 10, "silent: full queue drops");
    CHECK(pulse_tracer_submit(t, spans + 26, 17) == -1, "silent: more than queue_max at once is dropped");
    pulse_tracer_stats(t, &st);
    CHECK(st.spans_submitted == 43 && st.spans_dropped == 27 && st.spans_queued == 16, "silent: drops counted");
    t0 = now_ms();
    pulse_tracer_destroy(t);
    uint64_t took = now_ms() - t0;
    CHECK(took < 1200, "silent: destroy bounded by timeout_ms");
    if (took >= 1200)
        printf("#   destroy took %llu ms\n", (unsigned long long)took);
    server_stop(&sv);

    /* destroy with spans queued and a silent collector: the final flush gives up after timeout_ms */
    if (collector_start(&sv, 0, url, "flush: test server starts") != 0)
        return;
    conf = (pulse_tracer_config_t){.endpoint = url, .batch_max = 4, .flush_ms = 60000, .timeout_ms = 300};
    t = pulse_tracer_create(&conf);
    CHECK(pulse_tracer_submit(t, spans, 3) == 0, "flush: 3 queued below batch_max");
    t0 = now_ms();
    pulse_tracer_destroy(t);
    took = now_ms() - t0;
    CHECK(took >= 250 && took < 1000, "flush: destroy tried, then gave up after timeout_ms");

    /* destroy while a POST hangs: the batches after it get only what is left of timeout_ms, then the rest is dropped */
    conf = (pulse_tracer_config_t){.endpoint = url, .batch_max = 2, .flush_ms = 60000, .timeout_ms = 400};
    t = pulse_tracer_create(&conf);
    CHECK(pulse_tracer_submit(t, spans, 6) == 0, "deadline: 3 batches queued");
    usleep(100000);
    t0 = now_ms();
    pulse_tracer_destroy(t); /* first POST ends at ~400 ms, the second is cut to ~100 ms, the third is not sent */
    took = now_ms() - t0;
    CHECK(took >= 350 && took < 650, "deadline: destroy returns about timeout_ms after it was called");
    if (took < 350 || took >= 650)
        printf("#   destroy took %llu ms\n", (unsigned long long)took);
    server_stop(&sv);
}

int main(void)
{
    test_traceparent();
    test_ids();
    test_sampling();
    test_span_attrs();
    test_encode();
    test_export();
    test_export_failures();
    TEST_DONE();
}
