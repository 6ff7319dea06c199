/*
 * framing_test.c: HTTP/1.1 request framing (framing.c) and the path rules.
 *
 * run() plays guard.c's part: it feeds a stream in pieces, holds what the
 * parser leaves undelivered and passes it again in front of the next piece.
 * Every stream is run whole and split at every point (and at every pair of
 * points for short ones): the verdict and what reaches h2o must not depend on
 * how the bytes arrive.
 */
#include <stdlib.h>
#include "framing.h"
#include "test.h"

static const pulse_framing_limits_t LIMITS = {.max_header_bytes = 8192, .body_limit = 65536};

typedef struct {
    int rc;           /* the first non-zero return, or 0 */
    size_t delivered; /* bytes handed to h2o */
    size_t held;      /* bytes held at the end */
    char detail[128];
} result_t;

/* feeds `s` (`n` bytes) cut at the `ncuts` offsets of `cuts` (increasing) */
static result_t run(const char *s, size_t n, const size_t *cuts, size_t ncuts)
{
    pulse_framing_t f = {0};
    result_t r = {0};
    char *held = NULL;
    size_t held_len = 0, from = 0;
    for (size_t i = 0; i <= ncuts && r.rc == 0; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        size_t len = held_len + (to - from);
        char *buf = malloc(len + 1);
        if (held_len != 0)
            memcpy(buf, held, held_len);
        memcpy(buf + held_len, s + from, to - from);
        size_t deliver = 99999999;
        int rc = pulse_framing_feed(&f, &LIMITS, buf, len, &deliver);
        if (deliver > len)
            r.rc = -1; /* impossible delivery */
        else
            r.delivered += deliver;
        if (rc != 0 && r.rc == 0) {
            r.rc = rc;
            snprintf(r.detail, sizeof(r.detail), "%s", f.detail != NULL ? f.detail : "");
        }
        free(held);
        held = NULL;
        held_len = 0;
        if (rc == 0 && deliver < len) {
            if (f.head_len != len - deliver)
                r.rc = -2; /* the parser and the caller disagree on what is held */
            held_len = len - deliver;
            held = malloc(held_len);
            memcpy(held, buf + deliver, held_len);
        }
        free(buf);
        from = to;
    }
    free(held);
    r.held = held_len;
    return r;
}

static int same(result_t a, result_t b)
{
    return a.rc == b.rc && a.delivered == b.delivered && a.held == b.held;
}

/* the verdict of `s` whole, after checking that every split of it gives the same */
static result_t verdict(const char *s, size_t n, int *split_ok)
{
    result_t whole = run(s, n, NULL, 0);
    *split_ok = 1;
    for (size_t a = 1; a < n && *split_ok; a++) {
        size_t cut[2] = {a, 0};
        if (!same(run(s, n, cut, 1), whole))
            *split_ok = 0;
        if (n <= 120)
            for (size_t b = a + 1; b < n && *split_ok; b++) {
                cut[1] = b;
                if (!same(run(s, n, cut, 2), whole))
                    *split_ok = 0;
            }
    }
    return whole;
}

/* `s` is a C string; expects status `rc` (0: valid) with `delivered` bytes reaching h2o (SIZE_MAX: all of them) */
static void expect(const char *name, const char *s, int rc, size_t delivered)
{
    size_t n = strlen(s);
    int split_ok;
    result_t r = verdict(s, n, &split_ok);
    if (delivered == SIZE_MAX)
        delivered = n;
    char msg[256];
    snprintf(msg, sizeof(msg), "%s: %d, %zu bytes to h2o", name, rc, delivered);
    CHECK(r.rc == rc && r.delivered == delivered && split_ok, msg);
    if (r.rc != rc || r.delivered != delivered || !split_ok)
        printf("#   got %d (%s), %zu delivered, %zu held; same for every split: %s\n", r.rc, r.detail, r.delivered, r.held,
               split_ok ? "yes" : "no");
}

#define GET_HEALTH "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"

static void test_valid(void)
{
    expect("a GET", GET_HEALTH, 0, SIZE_MAX);
    expect("two pipelined GETs", GET_HEALTH GET_HEALTH, 0, SIZE_MAX);
    expect("one empty line before the request line", "\r\n" GET_HEALTH, 0, SIZE_MAX);
    expect("HTTP/1.0 without Host", "GET /health HTTP/1.0\r\n\r\n", 0, SIZE_MAX);
    expect("POST with Content-Length, then a GET", "POST /rpc/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" GET_HEALTH, 0,
           SIZE_MAX);
    expect("Content-Length: 0", "POST /rpc/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" GET_HEALTH, 0, SIZE_MAX);
    expect("chunked with an extension, then a GET",
           "POST /rpc/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\"b "
           "c\"\r\n{}\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n" GET_HEALTH,
           0, SIZE_MAX);
    expect("Transfer-Encoding in another case", "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", 0,
           SIZE_MAX);
    expect("query with characters a path may not have", "GET /rpc/x?a=%2e%2e&b=../c//d HTTP/1.1\r\nHost: x\r\n\r\n", 0, SIZE_MAX);
    expect("Host with a port and an IPv6 literal", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0, SIZE_MAX);
    expect("an incomplete head is held", "GET /health HTTP/1.1\r\nHost:", 0, 0);
    expect("a complete request, then an incomplete one", GET_HEALTH "GET /he", 0, strlen(GET_HEALTH));
    expect("a body still arriving is delivered", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345", 0, SIZE_MAX);
    expect("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04", PULSE_FRAMING_H2, SIZE_MAX);
    expect("part of the HTTP/2 preface is held", "PRI * HTTP/2.0\r\n", 0, 0);
}

#define POST "POST /rpc/x HTTP/1.1\r\nHost: x\r\n"
#define TE "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

static void test_smuggling(void)
{
    static const struct {
        const char *name, *stream;
        int rc;
        size_t delivered; /* bytes that reach h2o */
    } cases[] = {
        {"two different Content-Length",
         POST "Content-Length: 2\r\nContent-Length: 37\r\n\r\n{}GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0},
        {"two equal Content-Length", POST "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400, 0},
        {"Content-Length and Transfer-Encoding", POST "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0},
        {"Transfer-Encoding and Content-Length", POST "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n", 400, 0},
        {"two Transfer-Encoding", POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0},
        {"Transfer-Encoding gzip, chunked", POST "Transfer-Encoding: gzip, chunked\r\n\r\n", 501, 0},
        {"Transfer-Encoding with trailing whitespace", POST "Transfer-Encoding: chunked \r\n\r\n", 501, 0},
        {"Transfer-Encoding in HTTP/1.0", "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0},
        {"Content-Length with a sign", POST "Content-Length: +2\r\n\r\n{}", 400, 0},
        {"Content-Length with trailing whitespace", POST "Content-Length: 2 \r\n\r\n{}", 400, 0},
        {"Content-Length list", POST "Content-Length: 2, 2\r\n\r\n{}", 400, 0},
        {"Content-Length of 20 digits", POST "Content-Length: 12345678901234567890\r\n\r\n", 400, 0},
        {"Content-Length over the body limit", POST "Content-Length: 65537\r\n\r\n", 413, 0},
        {"obs-fold", POST "Content-Length:\r\n 2\r\n\r\n{}", 400, 0},
        {"whitespace before the colon", POST "Content-Length : 2\r\n\r\n{}", 400, 0},
        {"bare LF", "GET /health HTTP/1.1\nHost: x\n\n", 400, 0},
        {"bare CR", "GET /health HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", 400, 0},
        {"two empty lines first", "\r\n\r\n" GET_HEALTH, 400, 0},
        {"two Host", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, 0},
        {"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400, 0},
        {"a valid request, then a smuggling one: only the first reaches h2o",
         GET_HEALTH "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n", 400, sizeof(GET_HEALTH) - 1},
        /* chunked bodies: the bytes before the violation reach h2o (it is reading the body), none after */
        {"chunk size of 17 hex digits", TE "1ffffffffffffffff\r\n", 400, sizeof(TE) - 1 + 16},
        {"chunk size over the body limit", TE "ffffffffffffffff\r\n", 413, sizeof(TE) - 1 + 17},
        {"chunk size not hex", TE "zz\r\n", 400, sizeof(TE) - 1},
        {"garbage after a chunk size", TE "2 x\r\n{}\r\n0\r\n\r\n", 400, sizeof(TE) - 1 + 2},
        {"chunk longer than its size", TE "2\r\n{}x\r\n0\r\n\r\n", 400, sizeof(TE) - 1 + 5},
        {"chunk size line ending in LF", TE "2\n{}\r\n0\r\n\r\n", 400, sizeof(TE) - 1 + 1},
        {"trailer fields", TE "0\r\nX: y\r\n\r\n", 400, sizeof(TE) - 1 + 3},
        {"chunks still arriving", TE "8000\r\n", 0, SIZE_MAX},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect(cases[i].name, cases[i].stream, cases[i].rc, cases[i].delivered);
}

static void test_limits(void)
{
    char *s = malloc(70000);
    int n = sprintf(s, "GET /health HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 99; i++)
        n += sprintf(s + n, "X-H: v\r\n");
    strcpy(s + n, "\r\n");
    expect("100 header lines", s, 0, SIZE_MAX);
    n += sprintf(s + n, "X-H: v\r\n");
    strcpy(s + n, "\r\n");
    expect("101 header lines", s, 431, 0);
    n = sprintf(s, "GET /health HTTP/1.1\r\nHost: x\r\nX-A: ");
    memset(s + n, 'a', 8176);
    strcpy(s + n + 8176, "\r\n\r\n");
    expect("header lines of max_header_bytes", s, 0, SIZE_MAX);
    memset(s + n, 'a', 8177);
    strcpy(s + n + 8177, "\r\n\r\n");
    expect("header lines one byte over", s, 431, 0);
    n = sprintf(s, "GET /");
    memset(s + n, 'a', 8200);
    strcpy(s + n + 8200, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect("request line over 8192 bytes", s, 414, 0);
    strcpy(s + n + 8200, "");
    expect("request line over 8192 bytes, not finished", s, 414, 0);
    free(s);
}

static void test_request_line(void)
{
    expect("lower-case method (a valid token)", "get /health HTTP/1.1\r\nHost: x\r\n\r\n", 0, SIZE_MAX);
    expect("method with '@'", "G@T /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0);
    expect("two spaces", "GET  /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0);
    expect("HTTP/1.9", "GET / HTTP/1.9\r\nHost: x\r\n\r\n", 505, 0);
    expect("HTTP/2.0 later on", GET_HEALTH "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, strlen(GET_HEALTH));
    expect("malformed version", "GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400, 0);
    expect("asterisk form", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0);
    expect("absolute form", "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0);
    expect("NUL in the path", "GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0);
    expect("dot segment", "GET /rpc/../metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0);
    expect("NUL in a header value", "GET / HTTP/1.1\r\nHost: x\r\nA: \x01\r\n\r\n", 400, 0);
    expect("TLS handshake bytes", "\x16\x03\x01\x02\x01\x01\x01\x01\xfc\x03\x03\r\n\r\n", 400, 0);
}

static void test_target(void)
{
    static const struct {
        const char *target;
        int ok;
    } cases[] = {
        {"/", 1},
        {"/rpc/events_page", 1},
        {"/rpc/a-b_c.d~e!$&'()*+,;=:@", 1},
        {"/rpc/x/", 1},
        {"/rpc/.hidden", 1},
        {"/rpc/x?a=..&b=%2e%2f", 1},
        {"/metrics?", 1},
        {"", 0},
        {"rpc/x", 0},
        {"*", 0},
        {"http://x/metrics", 0},
        {"/rpc/../metrics", 0},
        {"/rpc/..", 0},
        {"/rpc/.", 0},
        {"/./x", 0},
        {"/rpc/..?x", 0},
        {"//rpc", 0},
        {"/rpc//x", 0},
        {"/rpc/..%2fmetrics", 0},
        {"/rpc/%2e%2e/metrics", 0},
        {"/rpc/%252e", 0},
        {"/rpc\\x", 0},
        {"/rpc/\xc0\xae", 0},
        {"/rpc/ x", 0},
        {"/rpc/x#f", 0},
        {"/rpc/x?a#f", 0},
        {"/rpc/x?a b", 0},
        {"/rpc/x?\xff", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *detail = NULL;
        int rc = pulse_framing_check_target(cases[i].target, strlen(cases[i].target), &detail);
        char msg[160];
        snprintf(msg, sizeof(msg), "target \"%s\": %s", cases[i].target, cases[i].ok ? "accepted" : "refused (400)");
        CHECK(cases[i].ok ? rc == 0 : rc == 400 && detail != NULL, msg);
    }
    const char *detail = NULL;
    CHECK(pulse_framing_check_target("/a\0b", 4, &detail) == 400, "target with a NUL byte: refused");
}

/* random streams of valid requests, cut at random points: all delivered, nothing held, whatever the cuts */
static void test_random_pipelines(void)
{
    static const char *reqs[] = {GET_HEALTH, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
                                 "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e\r\nabc\r\n0\r\n\r\n",
                                 "\r\nGET /rpc/x?y=1 HTTP/1.0\r\nX-A:  v \r\n\r\n"};
    unsigned seed = 20240611;
    int ok = 1;
    char s[2048];
    for (int iter = 0; iter < 300 && ok; iter++) {
        size_t n = 0;
        int k = 1 + (int)(rand_r(&seed) % 5);
        for (int i = 0; i < k; i++)
            n += (size_t)sprintf(s + n, "%s", reqs[rand_r(&seed) % 4]);
        size_t cuts[8], nc = rand_r(&seed) % 8;
        for (size_t i = 0; i < nc; i++)
            cuts[i] = 1 + rand_r(&seed) % (n - 1);
        for (size_t i = 1; i < nc; i++) /* sort */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        result_t r = run(s, n, cuts, nc);
        if (r.rc != 0 || r.delivered != n || r.held != 0) {
            ok = 0;
            printf("#   seed 20240611, iteration %d: rc %d, %zu of %zu delivered: %s\n", iter, r.rc, r.delivered, n, s);
        }
    }
    CHECK(ok, "300 random pipelines of valid requests, cut at random points: all delivered");
}

int main(void)
{
    test_valid();
    test_smuggling();
    test_limits();
    test_request_line();
    test_target();
    test_random_pipelines();
    TEST_DONE();
}
