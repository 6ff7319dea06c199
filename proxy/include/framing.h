/*
 * framing.h: the rules of HTTP/1.1 request framing that pulse-proxy applies
 * before h2o's parser sees a byte (framing.c), and the path rules every
 * request (HTTP/1 and HTTP/2) must meet before it is routed.  Pure functions
 * over bytes: guard.c runs them on the sockets, site.c on h2o's requests.
 */
#ifndef PULSE_FRAMING_H
#define PULSE_FRAMING_H

#include <stddef.h>
#include <stdint.h>

#define PULSE_FRAMING_MAX_HEADERS 100       /* h2o 2.2.5 refuses a 101st header line (H2O_MAX_HEADERS) */
#define PULSE_FRAMING_MAX_REQUEST_LINE 8192 /* longer: 414 */
#define PULSE_FRAMING_MAX_HEAD 400000       /* below h2o 2.2.5's H2O_MAX_REQLEN (417792): max_header_bytes is capped by it */
#define PULSE_FRAMING_H2 1                  /* pulse_framing_feed: the connection starts with the HTTP/2 preface */

/* what a connection's requests may be */
typedef struct pulse_framing_limits_t {
    size_t max_header_bytes; /* bytes of the header lines (each "name: value" CRLF), the request line excluded */
    uint64_t body_limit;     /* bytes of a body: a larger Content-Length, or a chunked body reaching it, is a 413 */
} pulse_framing_limits_t;

/* The parser of one connection's request stream (zero it to start). */
typedef struct pulse_framing_t {
    int _state;
    unsigned _messages; /* requests whose head was complete */
    /* the head being read: the caller holds its bytes until it is complete */
    size_t head_len;   /* bytes of the head seen so far */
    size_t _scan;      /* bytes of it searched for a line end */
    size_t _line;      /* where its current line starts */
    size_t _nheaders;  /* header lines so far */
    size_t _hbytes;    /* bytes of the header lines so far */
    int _leading_crlf; /* an empty line before the request line was skipped (h2o skips one) */
    int _have_line;    /* the request line was read */
    int _http10;
    int _n_cl, _n_te, _n_host;
    int _te_chunked;
    uint64_t _cl;
    /* the body */
    uint64_t _left;    /* bytes left in a Content-Length body or the current chunk */
    uint64_t _decoded; /* bytes of the chunked body so far */
    unsigned _digits;  /* hex digits of the chunk size so far */
    size_t _ext;       /* bytes of the chunk extension so far */
    /* the last request line and request id read, for the answer to a violation and its log line */
    char method[24];
    char target[256];
    char request_id[65]; /* the X-Request-Id header as sent (at most 64 bytes), "" when absent or longer */
    int head_only;       /* the request's method is HEAD: the answer has no body */
    /* the violation */
    int status;         /* 0 while the stream is valid */
    const char *detail; /* a sentence for the client (static, or in _detail) */
    char _detail[96];
} pulse_framing_t;

/**
 * Runs the bytes `buf[0..len)` of a connection through `f`. When `f` is inside a request head (f->head_len != 0), `buf`
 * must begin with the f->head_len bytes of that head it already saw (the caller held them), followed by the new bytes.
 * Sets `*deliver` to the length of the prefix of `buf` that h2o may see: complete, valid heads and the body bytes that
 * follow them. The rest is either the beginning of a head that is not complete yet, f->head_len bytes that the caller
 * holds and passes again (return 0), or a violation (returns its status, f->status and f->detail set; nothing from
 * `*deliver` on may reach h2o, the parser takes no more bytes and the connection is to be answered and closed).
 * Statuses: 400 (syntax, conflicting or repeated framing headers, obs-fold, bare CR or LF, trailers, bad path), 413
 * (body over the limit), 414 (request line over PULSE_FRAMING_MAX_REQUEST_LINE), 431 (more than
 * PULSE_FRAMING_MAX_HEADERS header lines or more than limits->max_header_bytes of them), 501 (a transfer coding other
 * than chunked), 505 (an HTTP version other than 1.0 and 1.1). Returns PULSE_FRAMING_H2 when the connection begins with
 * the HTTP/2 connection preface: everything may be delivered, and the parser takes no more bytes.
 */
int pulse_framing_feed(pulse_framing_t *f, const pulse_framing_limits_t *limits, const char *buf, size_t len, size_t *deliver);

/**
 * Checks the request target `target` (`len` bytes: the path, then optionally '?' and a query) of any request before it
 * is routed, so that the proxy routes by exactly the path a front proxy sees: the path must begin with '/', consist of
 * unreserved characters, sub-delims, ':', '@' and '/', and have no percent-encoding, no backslash, no empty segment
 * ("//") and no dot segment ("." or ".."); the query must be visible ASCII without '#'. Returns 0, or 400 with a static
 * sentence for the client in `*detail`.
 */
int pulse_framing_check_target(const char *target, size_t len, const char **detail);

#endif
