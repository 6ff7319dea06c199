/*
 * trace.c: W3C trace context, span ids, head sampling, OTLP/HTTP JSON
 * encoding and the span exporter (see trace.h).
 *
 * The queue is a ring of queue_max span slots: `head` is the oldest queued
 * span, `count` the number of queued ones, both protected by the mutex.
 * Producers (pulse_tracer_submit) only ever write the free slots after
 * head + count; the exporter thread reads the slots [head, head + k) of the
 * batch it sends without holding the mutex (nobody else writes them while
 * they are counted) and only then gives them back by advancing head.  So
 * submit's critical section is a memcpy of its spans and the thread never
 * holds the mutex across encoding or I/O.  Submit signals the condition
 * variable only when the queue stops being empty (which starts the flush_ms
 * timer) and when it reaches batch_max, not on every span.
 *
 * The thread owns the curl easy handle (one keep-alive connection to the
 * collector).  During destroy it keeps sending batches until the queue is
 * empty or stop_deadline (timeout_ms after the call) has passed, with each
 * POST's timeout cut to what is left; what is still queued then is dropped.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <curl/curl.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "trace.h"

/* ---------------------------------------------------------------------------------------------------------------------
 * Hex, trace context, ids, sampling
 * ------------------------------------------------------------------------------------------------------------------- */

static const char hexdigits[] = "0123456789abcdef";

static int unhex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

void pulse_trace_hex(const uint8_t *id, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[id[i] >> 4];
        out[2 * i + 1] = hexdigits[id[i] & 0xf];
    }
    out[2 * n] = '\0';
}

int pulse_trace_unhex(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = unhex_digit(s[2 * i]), lo = unhex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

int pulse_trace_parse_traceparent(const char *s, size_t len, pulse_trace_ctx_t *out)
{
    uint8_t version;
    if (s == NULL || len < PULSE_TRACEPARENT_LEN)
        return -1;
    if (pulse_trace_unhex(s, 1, &version) != 0 || version == 0xff)
        return -1;
    if (version == 0 ? len != PULSE_TRACEPARENT_LEN : len > PULSE_TRACEPARENT_LEN && s[PULSE_TRACEPARENT_LEN] != '-')
        return -1;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return -1;
    if (pulse_trace_unhex(s + 3, 16, out->trace_id) != 0 || pulse_trace_unhex(s + 36, 8, out->span_id) != 0 ||
        pulse_trace_unhex(s + 53, 1, &out->flags) != 0)
        return -1;
    if (all_zero(out->trace_id, 16) || all_zero(out->span_id, 8))
        return -1;
    return 0;
}

void pulse_trace_format_traceparent(const uint8_t trace_id[16], const uint8_t span_id[8], int sampled, char out[56])
{
    memcpy(out, "00-", 3);
    pulse_trace_hex(trace_id, 16, out + 3);
    out[35] = '-';
    pulse_trace_hex(span_id, 8, out + 36);
    out[52] = '-';
    out[53] = '0';
    out[54] = sampled ? '1' : '0';
    out[55] = '\0';
}

/* xoshiro256** (Blackman & Vigna), one state per thread */
static __thread struct {
    uint64_t s[4];
    int seeded;
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(void)
{
    if (RAND_bytes((unsigned char *)rng.s, sizeof(rng.s)) != 1) {
        /* no entropy from OpenSSL (should not happen): mix what differs between threads and processes */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)(uintptr_t)&rng ^ ((uint64_t)getpid() << 32);
        for (int i = 0; i < 4; i++)
            rng.s[i] = splitmix64(&x);
    }
    if ((rng.s[0] | rng.s[1] | rng.s[2] | rng.s[3]) == 0) /* the one state xoshiro cannot leave */
        rng.s[0] = 0x9e3779b97f4a7c15ULL;
    rng.seeded = 1;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    if (!rng.seeded)
        rng_seed();
    uint64_t *s = rng.s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void pulse_trace_new_ids(uint8_t trace_id[16], uint8_t span_id[8])
{
    if (trace_id != NULL) {
        do {
            uint64_t a = rng_next(), b = rng_next();
            memcpy(trace_id, &a, 8);
            memcpy(trace_id + 8, &b, 8);
        } while (all_zero(trace_id, 16));
    }
    if (span_id != NULL) {
        do {
            uint64_t a = rng_next();
            memcpy(span_id, &a, 8);
        } while (all_zero(span_id, 8));
    }
}

int pulse_trace_sample(const uint8_t trace_id[16], uint32_t ratio_ppm)
{
    if (ratio_ppm == 0)
        return 0;
    if (ratio_ppm >= 1000000)
        return 1;
    uint64_t r = 0;
    for (int i = 9; i < 16; i++) /* the rightmost 7 bytes, big-endian */
        r = r << 8 | trace_id[i];
    /* OpenTelemetry's rejection threshold: sampled when r >= (1 - p) * 2^56 */
    uint64_t accept = (uint64_t)(((unsigned __int128)ratio_ppm << 56) / 1000000);
    return r >= ((uint64_t)1 << 56) - accept;
}

uint64_t pulse_trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------------------------------------
 * Spans
 * ------------------------------------------------------------------------------------------------------------------- */

/* copies at most cap - 1 bytes of the `len` at `src` (up to a NUL) into dst, cut at a UTF-8 character boundary */
static void copy_utf8(char *dst, size_t cap, const char *src, size_t len)
{
    const char *nul = memchr(src, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - src);
    if (len > cap - 1) {
        len = cap - 1;
        while (len > 0 && ((unsigned char)src[len] & 0xc0) == 0x80) /* src[len], the first byte left out, continues a char */
            len--;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

void pulse_span_start(pulse_span_t *s, const char *name, pulse_span_kind_t kind, const uint8_t trace_id[16],
                      const uint8_t parent_span_id[8], uint64_t start_ns)
{
    memset(s, 0, sizeof(*s));
    memcpy(s->trace_id, trace_id, 16);
    if (parent_span_id != NULL)
        memcpy(s->parent_span_id, parent_span_id, 8);
    pulse_trace_new_ids(NULL, s->span_id);
    if (name != NULL)
        copy_utf8(s->name, sizeof(s->name), name, strlen(name));
    s->kind = (uint8_t)kind;
    s->start_ns = start_ns != 0 ? start_ns : pulse_trace_now_ns();
}

static pulse_span_attr_t *attr_slot(pulse_span_t *s, const char *key)
{
    char k[PULSE_SPAN_KEY_MAX];
    if (key == NULL || key[0] == '\0')
        return NULL;
    copy_utf8(k, sizeof(k), key, strlen(key));
    for (size_t i = 0; i < s->nattrs && i < PULSE_SPAN_MAX_ATTRS; i++)
        if (strncmp(s->attrs[i].key, k, sizeof(k)) == 0)
            return &s->attrs[i];
    if (s->nattrs >= PULSE_SPAN_MAX_ATTRS) {
        if (s->dropped_attrs < UINT8_MAX)
            s->dropped_attrs++;
        return NULL;
    }
    pulse_span_attr_t *a = &s->attrs[s->nattrs++];
    memset(a, 0, sizeof(*a));
    memcpy(a->key, k, sizeof(k));
    return a;
}

int pulse_span_set_strn(pulse_span_t *s, const char *key, const char *value, size_t len)
{
    pulse_span_attr_t *a = attr_slot(s, key);
    if (a == NULL)
        return -1;
    a->type = PULSE_SPAN_ATTR_STRING;
    copy_utf8(a->v.str, sizeof(a->v.str), value != NULL ? value : "", value != NULL ? len : 0);
    return 0;
}

int pulse_span_set_str(pulse_span_t *s, const char *key, const char *value)
{
    return pulse_span_set_strn(s, key, value, value != NULL ? strlen(value) : 0);
}

int pulse_span_set_int(pulse_span_t *s, const char *key, int64_t value)
{
    pulse_span_attr_t *a = attr_slot(s, key);
    if (a == NULL)
        return -1;
    a->type = PULSE_SPAN_ATTR_INT;
    a->v.i = value;
    return 0;
}

void pulse_span_set_status(pulse_span_t *s, pulse_span_status_t status, const char *msg)
{
    s->status = (uint8_t)status;
    s->status_msg[0] = '\0';
    if (status == PULSE_SPAN_STATUS_ERROR && msg != NULL)
        copy_utf8(s->status_msg, sizeof(s->status_msg), msg, strlen(msg));
}

void pulse_span_end(pulse_span_t *s, uint64_t end_ns)
{
    s->end_ns = end_ns != 0 ? end_ns : pulse_trace_now_ns();
}

/* ---------------------------------------------------------------------------------------------------------------------
 * OTLP/HTTP JSON
 * ------------------------------------------------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} jbuf_t;

static int jb_reserve(jbuf_t *b, size_t n)
{
    if (b->oom)
        return -1;
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap != 0 ? b->cap : 1024;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void jb_add(jbuf_t *b, const char *s, size_t n)
{
    if (jb_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

#define jb_lit(b, s) jb_add((b), (s), sizeof(s) - 1)

/* the length of the valid UTF-8 sequence at s (n bytes left, s[0] >= 0x80), or 0 when it is not one */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t min, cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2, min = 0x80, cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3, min = 0x800, cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4, min = 0x10000, cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* appends a NUL-terminated string as a JSON string: escaped, invalid UTF-8 replaced with U+FFFD */
static void jb_str(jbuf_t *b, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    jb_lit(b, "\"");
    for (size_t i = 0; i < n;) {
        size_t run = i;
        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
            run++;
        if (run > i) {
            jb_add(b, (const char *)s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = s[i];
        if (c == '"') {
            jb_lit(b, "\\\"");
        } else if (c == '\\') {
            jb_lit(b, "\\\\");
        } else if (c == '\n') {
            jb_lit(b, "\\n");
        } else if (c == '\r') {
            jb_lit(b, "\\r");
        } else if (c == '\t') {
            jb_lit(b, "\\t");
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            jb_add(b, esc, 6);
        } else {
            size_t len = utf8_seq(s + i, n - i);
            if (len == 0) {
                jb_lit(b, "\xef\xbf\xbd");
                i++;
            } else {
                jb_add(b, (const char *)s + i, len);
                i += len;
            }
            continue;
        }
        i++;
    }
    jb_lit(b, "\"");
}

static void jb_hex(jbuf_t *b, const uint8_t *id, size_t n)
{
    char hex[33];
    pulse_trace_hex(id, n, hex);
    jb_lit(b, "\"");
    jb_add(b, hex, 2 * n);
    jb_lit(b, "\"");
}

static void jb_fmt_u64(jbuf_t *b, uint64_t v, int quoted)
{
    char num[24];
    int n = snprintf(num, sizeof(num), quoted ? "\"%" PRIu64 "\"" : "%" PRIu64, v);
    jb_add(b, num, (size_t)n);
}

static void encode_span(jbuf_t *b, const pulse_span_t *s)
{
    jb_lit(b, "{\"traceId\":");
    jb_hex(b, s->trace_id, 16);
    jb_lit(b, ",\"spanId\":");
    jb_hex(b, s->span_id, 8);
    if (!all_zero(s->parent_span_id, 8)) {
        jb_lit(b, ",\"parentSpanId\":");
        jb_hex(b, s->parent_span_id, 8);
    }
    char name[sizeof(s->name)]; /* a span filled by hand may lack its NUL */
    copy_utf8(name, sizeof(name), s->name, sizeof(s->name));
    jb_lit(b, ",\"name\":");
    jb_str(b, name);
    jb_lit(b, ",\"kind\":");
    jb_fmt_u64(b, s->kind, 0);
    jb_lit(b, ",\"startTimeUnixNano\":");
    jb_fmt_u64(b, s->start_ns, 1);
    jb_lit(b, ",\"endTimeUnixNano\":");
    jb_fmt_u64(b, s->end_ns != 0 ? s->end_ns : s->start_ns, 1);
    jb_lit(b, ",\"attributes\":[");
    size_t nattrs = s->nattrs <= PULSE_SPAN_MAX_ATTRS ? s->nattrs : PULSE_SPAN_MAX_ATTRS;
    for (size_t i = 0; i < nattrs; i++) {
        const pulse_span_attr_t *a = &s->attrs[i];
        char key[sizeof(a->key)];
        copy_utf8(key, sizeof(key), a->key, sizeof(a->key));
        jb_add(b, i == 0 ? "{\"key\":" : ",{\"key\":", i == 0 ? 7 : 8);
        jb_str(b, key);
        if (a->type == PULSE_SPAN_ATTR_INT) {
            char num[24];
            int n = snprintf(num, sizeof(num), "\"%" PRId64 "\"", a->v.i);
            jb_lit(b, ",\"value\":{\"intValue\":");
            jb_add(b, num, (size_t)n);
        } else {
            char str[sizeof(a->v.str)];
            copy_utf8(str, sizeof(str), a->v.str, sizeof(a->v.str));
            jb_lit(b, ",\"value\":{\"stringValue\":");
            jb_str(b, str);
        }
        jb_lit(b, "}}");
    }
    jb_lit(b, "]");
    if (s->dropped_attrs != 0) {
        jb_lit(b, ",\"droppedAttributesCount\":");
        jb_fmt_u64(b, s->dropped_attrs, 0);
    }
    jb_lit(b, ",\"status\":{\"code\":");
    jb_fmt_u64(b, s->status, 0);
    if (s->status_msg[0] != '\0') {
        char msg[sizeof(s->status_msg)];
        copy_utf8(msg, sizeof(msg), s->status_msg, sizeof(s->status_msg));
        jb_lit(b, ",\"message\":");
        jb_str(b, msg);
    }
    jb_lit(b, "}}");
}

/* encodes the spans of two arrays (the two halves of a wrapped ring segment) as one request */
static char *encode2(const pulse_span_t *a, size_t na, const pulse_span_t *c, size_t nc, const char *service, size_t *len)
{
    jbuf_t b = {0};
    jb_lit(&b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":");
    jb_str(&b, service != NULL && service[0] != '\0' ? service : "pulse-proxy");
    jb_lit(&b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"pulse-proxy\"},\"spans\":[");
    for (size_t i = 0; i < na + nc; i++) {
        if (i != 0)
            jb_lit(&b, ",");
        encode_span(&b, i < na ? &a[i] : &c[i - na]);
    }
    jb_lit(&b, "]}]}]}");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len != NULL)
        *len = b.len;
    return b.p;
}

char *pulse_trace_encode_otlp(const pulse_span_t *spans, size_t n, const char *service_name, size_t *len)
{
    return encode2(spans, n, NULL, 0, service_name, len);
}

/* ---------------------------------------------------------------------------------------------------------------------
 * The exporter
 * ------------------------------------------------------------------------------------------------------------------- */

struct pulse_tracer_t {
    char *endpoint, *service_name;
    size_t queue_max, batch_max;
    int flush_ms, timeout_ms;

    pthread_mutex_t mutex;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    pulse_span_t *ring;
    size_t head, count; /* queued spans: ring[head], ring[(head + 1) % queue_max], ...; in-flight ones included */
    int stopping;
    uint64_t stop_deadline_ms;
    pulse_tracer_stats_t stats; /* spans_queued unused: count is */

    pthread_t thread;
    CURL *curl; /* the thread's */
    struct curl_slist *headers;
    int failing; /* the last batch failed: log only when this changes */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ok;

static void curl_init_once(void)
{
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void deadline_ts(struct timespec *ts, uint64_t ms)
{
    ts->tv_sec = (time_t)(ms / 1000);
    ts->tv_nsec = (long)(ms % 1000) * 1000000;
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *data)
{
    (void)ptr, (void)data;
    return size * nmemb;
}

/* POSTs the k queued spans from ring[h]; returns 0 when the collector accepted them */
static int export_batch(pulse_tracer_t *t, size_t h, size_t k, long timeout_ms)
{
    size_t first = k <= t->queue_max - h ? k : t->queue_max - h, len;
    char *body = encode2(t->ring + h, first, t->ring, k - first, t->service_name, &len);
    char err[CURL_ERROR_SIZE] = "";
    long status = 0;
    int rc = -1;
    if (body == NULL) {
        snprintf(err, sizeof(err), "out of memory");
        goto done;
    }
    curl_easy_setopt(t->curl, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(t->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(t->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(t->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(t->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    CURLcode cc = curl_easy_perform(t->curl);
    curl_easy_setopt(t->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(t->curl, CURLOPT_POSTFIELDS, NULL);
    if (cc != CURLE_OK) {
        if (err[0] == '\0')
            snprintf(err, sizeof(err), "%s", curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status <= 299)
            rc = 0;
        else
            snprintf(err, sizeof(err), "HTTP status %ld", status);
    }
    free(body);
done:
    if (rc != 0 && !t->failing)
        pulse_log_msg("warning", NULL, "trace export to %s failed (%zu spans dropped; logged again after a success): %s",
                      t->endpoint, k, err);
    else if (rc == 0 && t->failing)
        pulse_log_msg("info", NULL, "trace export to %s works again", t->endpoint);
    t->failing = rc != 0;
    return rc;
}

static void *tracer_main(void *arg)
{
    pulse_tracer_t *t = arg;
    pthread_mutex_lock(&t->mutex);
    for (;;) {
        while (!t->stopping && t->count == 0)
            pthread_cond_wait(&t->cond, &t->mutex);
        if (!t->stopping && t->count < t->batch_max) { /* wait for a full batch, at most flush_ms */
            uint64_t deadline = mono_ms() + (uint64_t)t->flush_ms;
            struct timespec ts;
            deadline_ts(&ts, deadline);
            while (!t->stopping && t->count < t->batch_max && mono_ms() < deadline)
                pthread_cond_timedwait(&t->cond, &t->mutex, &ts);
        }
        if (t->count == 0)
            break; /* stopping, nothing left */
        long timeout_ms = t->timeout_ms;
        if (t->stopping) {
            uint64_t now = mono_ms();
            if (now >= t->stop_deadline_ms) { /* out of time: drop the rest */
                t->stats.spans_dropped += t->count;
                t->count = 0;
                break;
            }
            if (t->stop_deadline_ms - now < (uint64_t)timeout_ms)
                timeout_ms = (long)(t->stop_deadline_ms - now);
        }
        size_t h = t->head, k = t->count < t->batch_max ? t->count : t->batch_max;
        pthread_mutex_unlock(&t->mutex);
        int rc = export_batch(t, h, k, timeout_ms);
        pthread_mutex_lock(&t->mutex);
        t->head = (t->head + k) % t->queue_max;
        t->count -= k;
        if (rc == 0) {
            t->stats.spans_exported += k;
            t->stats.batches_sent++;
        } else {
            t->stats.spans_failed += k;
            t->stats.export_failures++;
        }
    }
    pthread_mutex_unlock(&t->mutex);
    return NULL;
}

static void tracer_free(pulse_tracer_t *t)
{
    if (t->curl != NULL)
        curl_easy_cleanup(t->curl);
    curl_slist_free_all(t->headers);
    free(t->ring);
    free(t->endpoint);
    free(t->service_name);
    free(t);
}

pulse_tracer_t *pulse_tracer_create(const pulse_tracer_config_t *conf)
{
    if (conf == NULL || conf->endpoint == NULL || conf->endpoint[0] == '\0')
        return NULL;
    pthread_once(&curl_once, curl_init_once);
    if (!curl_ok)
        return NULL;
    pulse_tracer_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->queue_max = conf->queue_max != 0 ? conf->queue_max : 8192;
    t->batch_max = conf->batch_max != 0 ? conf->batch_max : 512;
    if (t->batch_max > t->queue_max)
        t->batch_max = t->queue_max;
    t->flush_ms = conf->flush_ms > 0 ? conf->flush_ms : 1000;
    t->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 2000;
    t->endpoint = strdup(conf->endpoint);
    t->service_name = strdup(conf->service_name != NULL && conf->service_name[0] != '\0' ? conf->service_name : "pulse-proxy");
    t->ring = malloc(t->queue_max * sizeof(*t->ring));
    t->curl = curl_easy_init();
    t->headers = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = t->headers != NULL ? curl_slist_append(t->headers, "Expect:") : NULL; /* no 100-continue wait */
    if (t->endpoint == NULL || t->service_name == NULL || t->ring == NULL || t->curl == NULL || h2 == NULL) {
        tracer_free(t);
        return NULL;
    }
    curl_easy_setopt(t->curl, CURLOPT_URL, t->endpoint);
    curl_easy_setopt(t->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(t->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->curl, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(t->curl, CURLOPT_USERAGENT, "pulse-proxy");
    curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(t->curl, CURLOPT_FOLLOWLOCATION, 0L);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->mutex, NULL);

    sigset_t all, old; /* the thread takes no signal */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&t->thread, NULL, tracer_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->mutex);
        tracer_free(t);
        return NULL;
    }
    pthread_setname_np(t->thread, "pulse-trace");
    return t;
}

int pulse_tracer_submit(pulse_tracer_t *t, const pulse_span_t *spans, size_t n)
{
    if (t == NULL || n == 0)
        return 0;
    pthread_mutex_lock(&t->mutex);
    t->stats.spans_submitted += n;
    if (n > t->queue_max - t->count || t->stopping) {
        t->stats.spans_dropped += n;
        pthread_mutex_unlock(&t->mutex);
        return -1;
    }
    size_t before = t->count, tail = (t->head + t->count) % t->queue_max;
    size_t first = n <= t->queue_max - tail ? n : t->queue_max - tail;
    memcpy(t->ring + tail, spans, first * sizeof(*spans));
    memcpy(t->ring, spans + first, (n - first) * sizeof(*spans));
    t->count += n;
    if (before == 0 || (before < t->batch_max && t->count >= t->batch_max))
        pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->mutex);
    return 0;
}

void pulse_tracer_stats(pulse_tracer_t *t, pulse_tracer_stats_t *out)
{
    if (t == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    pthread_mutex_lock(&t->mutex);
    *out = t->stats;
    out->spans_queued = t->count;
    pthread_mutex_unlock(&t->mutex);
}

void pulse_tracer_destroy(pulse_tracer_t *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->mutex);
    t->stopping = 1;
    t->stop_deadline_ms = mono_ms() + (uint64_t)t->timeout_ms;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->mutex);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->mutex);
    tracer_free(t);
}
