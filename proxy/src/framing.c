/*
 * framing.c: HTTP/1.1 request framing, checked before h2o 2.2.5's parser
 * sees a byte (framing.h; guard.c feeds it the bytes of each connection).
 *
 * h2o 2.2.5 frames a request by the first Content-Length header, lets
 * Transfer-Encoding override it and keeps the connection, accepts obs-fold,
 * bare LF and chunk lines with anything after the size, and answers a head
 * it cannot parse with a plain-text 400 before any request exists.  Behind a
 * front proxy that frames the same bytes differently, that is request
 * smuggling (RFC 9112 6.1, 6.3, 11.2).  So the stream of each connection runs
 * through this parser first, which is stricter than h2o everywhere: every
 * stream it accepts, h2o frames at exactly the same message boundaries, and
 * every violation is found here, before h2o could act on it.
 *
 * The rules (RFC 9112 and 9110, with the choices the RFCs leave open made
 * the strict way):
 *   - lines end with CRLF; a bare LF or CR is refused; one empty line before
 *     a request line is skipped (as h2o does), a second is refused;
 *   - request line: token method, one SP, origin-form target (see
 *     pulse_framing_check_target), one SP, HTTP/1.0 or HTTP/1.1 (another
 *     version is a 505); at most PULSE_FRAMING_MAX_REQUEST_LINE bytes (414);
 *   - header lines: token name, ':' right after it, a value of visible
 *     characters, SP, HTAB and obs-text; obs-fold refused; at most
 *     PULSE_FRAMING_MAX_HEADERS lines and max_header_bytes bytes (431);
 *   - exactly one Host in HTTP/1.1 (at most one in 1.0), valid characters;
 *   - at most one Content-Length (two equal values are refused too: the RFC
 *     allows merging them, but a front proxy may not), digits only;
 *   - at most one Transfer-Encoding, exactly "chunked" (anything else is a
 *     501), never with Content-Length, never in HTTP/1.0;
 *   - chunked bodies: 1-16 hex digits, optional extensions after ';',
 *     CRLF, the data, CRLF; the last chunk is followed by CRLF: trailer
 *     fields are refused;
 *   - a Content-Length over body_limit, or a chunked body reaching it (as h2o
 *     counts), is a 413.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "framing.h"

enum {
    F_HEAD,
    F_BODY,
    F_CHUNK_SIZE,
    F_CHUNK_EXT,
    F_CHUNK_SIZE_LF,
    F_CHUNK_DATA,
    F_CHUNK_DATA_CR,
    F_CHUNK_DATA_LF,
    F_LAST_CR,
    F_LAST_LF,
    F_DONE,
};

static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN (sizeof(H2_PREFACE) - 1)
#define MAX_CHUNK_EXT 1024

/* RFC 9110 5.6.2 tchar */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* a field value's characters: HTAB, SP, VCHAR, obs-text */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int hex_value(unsigned char c)
{
    if (!isxdigit(c))
        return -1;
    return isdigit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

static int fail(pulse_framing_t *f, int status, const char *detail)
{
    f->_state = F_DONE;
    f->status = status;
    f->detail = detail;
    return status;
}

static int too_large(pulse_framing_t *f, const pulse_framing_limits_t *lim)
{
    snprintf(f->_detail, sizeof(f->_detail), "the request body is larger than %llu bytes", (unsigned long long)lim->body_limit);
    return fail(f, 413, f->_detail);
}

/* a new request head begins */
static void message_reset(pulse_framing_t *f)
{
    unsigned messages = f->_messages;
    memset(f, 0, offsetof(pulse_framing_t, method));
    f->_messages = messages;
    f->_state = F_HEAD;
    f->method[0] = f->target[0] = f->request_id[0] = '\0';
    f->head_only = 0;
}

int pulse_framing_check_target(const char *t, size_t len, const char **detail)
{
    if (len == 0 || t[0] != '/') {
        *detail = "the request target must be a path beginning with /";
        return 400;
    }
    size_t i, seg = 1;
    for (i = 1; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)t[i] : '?';
        if (c == '/' || c == '?') {
            size_t n = i - seg;
            if (n == 0 && c == '/') {
                *detail = "empty path segments (//) are not allowed";
                return 400;
            }
            if ((n == 1 && t[seg] == '.') || (n == 2 && t[seg] == '.' && t[seg + 1] == '.')) {
                *detail = "dot segments (. and ..) are not allowed in the path";
                return 400;
            }
            if (c == '?')
                break;
            seg = i + 1;
            continue;
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL))
            continue;
        if (c == '%')
            *detail = "percent-encoding is not allowed in the path";
        else if (c == '\\')
            *detail = "a backslash is not allowed in the path";
        else
            *detail = "invalid character in the path";
        return 400;
    }
    for (i++; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c < 0x21 || c > 0x7e || c == '#') {
            *detail = "invalid character in the query";
            return 400;
        }
    }
    return 0;
}

static void copy_text(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* `s`, `n`: the request line without its CRLF */
static int check_request_line(pulse_framing_t *f, const char *s, size_t n)
{
    size_t m = 0, t0, t1;
    while (m < n && is_tchar((unsigned char)s[m]))
        m++;
    if (m == 0 || m > 20 || m == n || s[m] != ' ')
        return fail(f, 400, "invalid request method");
    copy_text(f->method, sizeof(f->method), s, m);
    f->head_only = m == 4 && memcmp(s, "HEAD", 4) == 0;
    t0 = m + 1;
    for (t1 = t0; t1 < n && s[t1] != ' '; t1++)
        ;
    copy_text(f->target, sizeof(f->target), s + t0, t1 - t0);
    if (t1 == t0 || t1 == n)
        return fail(f, 400, "invalid request line");
    const char *v = s + t1 + 1;
    size_t vn = n - t1 - 1;
    if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9')
        return fail(f, 400, "invalid HTTP version");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(f, 505, "only HTTP/1.0, HTTP/1.1 and HTTP/2 are supported");
    f->_http10 = v[7] == '0';
    const char *detail;
    if (pulse_framing_check_target(s + t0, t1 - t0, &detail) != 0)
        return fail(f, 400, detail);
    return 0;
}

static int name_is(const char *s, size_t n, const char *lc)
{
    size_t i;
    for (i = 0; i < n && lc[i] != '\0'; i++)
        if ((s[i] >= 'A' && s[i] <= 'Z' ? s[i] + ('a' - 'A') : s[i]) != lc[i])
            return 0;
    return i == n && lc[i] == '\0';
}

static int check_host(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != '\0' && strchr("-._~!$&'()*+,;=:[]%", c) != NULL)))
            return -1;
    }
    return 0;
}

/* `s`, `n`: a header line without its CRLF */
static int check_field(pulse_framing_t *f, const char *s, size_t n)
{
    size_t k = 0;
    if (s[0] == ' ' || s[0] == '\t')
        return fail(f, 400, "obsolete line folding (obs-fold) is not accepted");
    while (k < n && is_tchar((unsigned char)s[k]))
        k++;
    if (k == n || s[k] != ':')
        return fail(f, 400,
                    k != 0 && k < n && (s[k] == ' ' || s[k] == '\t') ? "whitespace between a header name and its colon"
                                                                     : "invalid header name");
    if (k == 0)
        return fail(f, 400, "invalid header name");
    size_t v0 = k + 1, v1 = n;
    while (v0 < n && (s[v0] == ' ' || s[v0] == '\t'))
        v0++;
    for (size_t i = v0; i < n; i++)
        if (!is_value_char((unsigned char)s[i]))
            return fail(f, 400, "invalid character in a header value");
    /* h2o 2.2.5 keeps trailing whitespace in the value: Content-Length and Transfer-Encoding must have none */
    const char *v = s + v0;
    size_t vn = v1 - v0;
    if (name_is(s, k, "content-length")) {
        f->_n_cl++;
        if (vn == 0 || vn > 19 || strspn(v, "0123456789") < vn)
            return fail(f, 400, "invalid Content-Length");
        f->_cl = 0;
        for (size_t i = 0; i < vn; i++)
            f->_cl = f->_cl * 10 + (uint64_t)(v[i] - '0');
    } else if (name_is(s, k, "transfer-encoding")) {
        f->_n_te++;
        f->_te_chunked = name_is(v, vn, "chunked");
    } else if (name_is(s, k, "host")) {
        f->_n_host++;
        while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
            vn--;
        if (check_host(v, vn) != 0)
            return fail(f, 400, "invalid Host header");
    } else if (name_is(s, k, "x-request-id")) {
        if (vn <= 64)
            copy_text(f->request_id, sizeof(f->request_id), v, vn);
    }
    return 0;
}

/* the head is complete: the framing of its body */
static int finish_head(pulse_framing_t *f, const pulse_framing_limits_t *lim)
{
    if (f->_n_host > 1)
        return fail(f, 400, "more than one Host header");
    if (f->_n_host == 0 && !f->_http10)
        return fail(f, 400, "an HTTP/1.1 request must have a Host header");
    if (f->_n_cl > 1)
        return fail(f, 400, "more than one Content-Length header");
    if (f->_n_te > 1)
        return fail(f, 400, "more than one Transfer-Encoding header");
    if (f->_n_cl != 0 && f->_n_te != 0)
        return fail(f, 400, "both Content-Length and Transfer-Encoding");
    f->_messages++;
    if (f->_n_te != 0) {
        if (f->_http10)
            return fail(f, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (!f->_te_chunked)
            return fail(f, 501, "the only transfer coding accepted is chunked");
        f->_state = F_CHUNK_SIZE;
    } else if (f->_n_cl != 0 && f->_cl != 0) {
        if (f->_cl > lim->body_limit)
            return too_large(f, lim);
        f->_left = f->_cl;
        f->_state = F_BODY;
    } else {
        f->_state = F_HEAD;
    }
    f->head_len = f->_scan = f->_line = 0;
    f->_leading_crlf = 0;
    return 0;
}

#define SCAN_COMPLETE (-1)

/* scans the head that starts at buf[hs]; returns SCAN_COMPLETE when it is complete (*pos after it), 0 when more is
   needed (it is held), PULSE_FRAMING_H2, or a status */
static int scan_head(pulse_framing_t *f, const pulse_framing_limits_t *lim, const char *buf, size_t len, size_t hs, size_t *pos)
{
    size_t max_hbytes = lim->max_header_bytes < PULSE_FRAMING_MAX_HEAD ? lim->max_header_bytes : PULSE_FRAMING_MAX_HEAD;
    if (f->_messages == 0 && hs == 0 && !f->_have_line && !f->_leading_crlf) {
        size_t n = len < H2_PREFACE_LEN ? len : H2_PREFACE_LEN;
        if (memcmp(buf, H2_PREFACE, n) == 0) {
            if (n == H2_PREFACE_LEN) {
                f->_state = F_DONE;
                return PULSE_FRAMING_H2;
            }
            f->head_len = len; /* held, but not scanned: it may still turn out to be an HTTP/1 head */
            return 0;
        }
    }
    size_t p = hs + f->_scan;
    for (;;) {
        const char *lf = p < len ? memchr(buf + p, '\n', len - p) : NULL;
        size_t ls = hs + f->_line;
        if (lf == NULL) {
            size_t partial = len - ls;
            f->head_len = f->_scan = len - hs;
            if (!f->_have_line && partial > PULSE_FRAMING_MAX_REQUEST_LINE)
                return fail(f, 414, "the request line is too long");
            if (f->_have_line && buf[ls] != '\r' && f->_hbytes + partial > max_hbytes) /* '\r': the empty line */
                return fail(f, 431, "the request headers are too large");
            if (f->_have_line && f->_nheaders == PULSE_FRAMING_MAX_HEADERS && partial != 0 && buf[ls] != '\r')
                return fail(f, 431, "the request has more than 100 header fields");
            return 0;
        }
        size_t q = (size_t)(lf - buf);
        if (q == ls || buf[q - 1] != '\r')
            return fail(f, 400, "a line of the request head ends with a bare LF");
        const char *s = buf + ls;
        size_t n = q - 1 - ls;
        if (memchr(s, '\r', n) != NULL)
            return fail(f, 400, "a bare CR in the request head");
        if (!f->_have_line) {
            if (n == 0) {
                if (f->_leading_crlf)
                    return fail(f, 400, "empty request line");
                f->_leading_crlf = 1;
            } else {
                if (n + 2 > PULSE_FRAMING_MAX_REQUEST_LINE)
                    return fail(f, 414, "the request line is too long");
                if (check_request_line(f, s, n) != 0)
                    return f->status;
                f->_have_line = 1;
            }
        } else if (n == 0) {
            *pos = q + 1;
            int rc = finish_head(f, lim);
            return rc != 0 ? rc : SCAN_COMPLETE;
        } else {
            if (f->_nheaders == PULSE_FRAMING_MAX_HEADERS)
                return fail(f, 431, "the request has more than 100 header fields");
            f->_nheaders++;
            f->_hbytes += n + 2;
            if (f->_hbytes > max_hbytes)
                return fail(f, 431, "the request headers are too large");
            if (check_field(f, s, n) != 0)
                return f->status;
        }
        p = q + 1;
        f->_line = f->_scan = p - hs;
    }
}

/* one byte of a chunked body's framing (not of its data); returns 0 or a status */
static int chunk_byte(pulse_framing_t *f, const pulse_framing_limits_t *lim, unsigned char c)
{
    int v;
    switch (f->_state) {
    case F_CHUNK_SIZE:
        if ((v = hex_value(c)) >= 0) {
            if (++f->_digits > 16)
                return fail(f, 400, "chunk size too large");
            f->_left = f->_left * 16 + (uint64_t)v;
            return 0;
        }
        if (f->_digits == 0)
            return fail(f, 400, "invalid chunk size");
        if (c == '\r') {
            f->_state = F_CHUNK_SIZE_LF;
        } else if (c == ';' || c == ' ' || c == '\t') {
            f->_ext = c == ';' ? 1 : 0; /* 1: the ';' was seen, the extension may follow */
            f->_state = F_CHUNK_EXT;
        } else {
            return fail(f, 400, "invalid chunk size");
        }
        return 0;
    case F_CHUNK_EXT:
        if (c == '\r') {
            f->_state = F_CHUNK_SIZE_LF;
            return 0;
        }
        if (c == ';' && f->_ext == 0)
            f->_ext = 1;
        else if (c != ' ' && c != '\t' && (f->_ext == 0 || !is_value_char(c)))
            return fail(f, 400, "invalid chunk extension");
        else if (f->_ext != 0 && ++f->_ext > MAX_CHUNK_EXT)
            return fail(f, 400, "chunk extension too long");
        return 0;
    case F_CHUNK_SIZE_LF:
        if (c != '\n')
            return fail(f, 400, "a chunk size line must end with CRLF");
        if (f->_left == 0) {
            f->_state = F_LAST_CR;
        } else {
            if (f->_left >= lim->body_limit - f->_decoded) /* h2o 2.2.5 refuses a chunked body that reaches the limit */
                return too_large(f, lim);
            f->_state = F_CHUNK_DATA;
        }
        return 0;
    case F_CHUNK_DATA_CR:
        if (c != '\r')
            return fail(f, 400, "chunk data must be followed by CRLF");
        f->_state = F_CHUNK_DATA_LF;
        return 0;
    case F_CHUNK_DATA_LF:
        if (c != '\n')
            return fail(f, 400, "chunk data must be followed by CRLF");
        f->_state = F_CHUNK_SIZE;
        f->_digits = 0;
        f->_left = 0;
        return 0;
    case F_LAST_CR:
        if (c != '\r')
            return fail(f, 400, "trailer fields are not accepted");
        f->_state = F_LAST_LF;
        return 0;
    case F_LAST_LF:
        if (c != '\n')
            return fail(f, 400, "the last chunk must be followed by CRLF");
        message_reset(f);
        return 0;
    default:
        return fail(f, 400, "invalid chunked encoding");
    }
}

int pulse_framing_feed(pulse_framing_t *f, const pulse_framing_limits_t *lim, const char *buf, size_t len, size_t *deliver)
{
    size_t pos = 0, hs;
    int rc;
    *deliver = 0;
    if (f->_state == F_DONE) {
        if (f->status != 0)
            return f->status;
        *deliver = len;
        return PULSE_FRAMING_H2;
    }
    while (pos < len) {
        switch (f->_state) {
        case F_HEAD:
            hs = pos;
            if (f->head_len == 0 && f->_line == 0 && !f->_leading_crlf)
                message_reset(f);
            rc = scan_head(f, lim, buf, len, hs, &pos);
            if (rc == PULSE_FRAMING_H2) {
                *deliver = len;
                return rc;
            }
            if (rc != SCAN_COMPLETE)
                return rc; /* 0: the head is held from hs (== *deliver); or a violation in it */
            *deliver = pos;
            break;
        case F_BODY: /* the bytes of a Content-Length body or of a chunk pass as they are */
        case F_CHUNK_DATA: {
            uint64_t n = len - pos < f->_left ? len - pos : f->_left;
            pos += (size_t)n;
            f->_left -= n;
            if (f->_state == F_CHUNK_DATA)
                f->_decoded += n;
            if (f->_left == 0) {
                if (f->_state == F_BODY)
                    message_reset(f);
                else
                    f->_state = F_CHUNK_DATA_CR;
            }
            *deliver = pos;
            break;
        }
        default:
            if ((rc = chunk_byte(f, lim, (unsigned char)buf[pos])) != 0)
                return rc;
            *deliver = ++pos;
            break;
        }
    }
    return 0;
}
