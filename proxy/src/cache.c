/*
 * cache.c: cache keys, the encoding of cached responses, ETags, freshness
 * and single-flight (see cache.h for how the request path uses them).
 *
 * Ownership: pulse_cache_entry_init/encode/gzip allocate from the caller's
 * memory pool (normally req->pool), so nothing outlives the request that
 * built it.  The single-flight table belongs to one event loop and is used
 * from its thread only; it owns its flights (with a copy of their key) and
 * waiters, which are freed when the flight finishes or the waiter leaves.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include "cache.h"
#include "digest.h"

#define CACHE_MAGIC "PLC"
#define CACHE_VERSION 1
#define CACHE_FLAG_GZIP 0x01
#define CACHE_FLAG_KEYED 0x02 /* a keyed state follows (proxies without keyed tags refuse the entry: a miss) */
#define CACHE_MAX_ITEMS 1024
#define CACHE_TENANT_MAX 48

/* --- keys --------------------------------------------------------------------------------------------------------- */

static void cache_hash_bytes(EVP_MD_CTX *md, const void *p, size_t len)
{
    unsigned char hdr[9];
    uint64_t l = len;
    hdr[0] = 's';
    for (int i = 0; i != 8; ++i)
        hdr[1 + i] = (unsigned char)(l >> (56 - 8 * i));
    EVP_DigestUpdate(md, hdr, sizeof(hdr));
    if (len != 0)
        EVP_DigestUpdate(md, p, len);
}

static void cache_hash_u64(EVP_MD_CTX *md, char type, uint64_t v)
{
    unsigned char b[9];
    b[0] = (unsigned char)type;
    for (int i = 0; i != 8; ++i)
        b[1 + i] = (unsigned char)(v >> (56 - 8 * i));
    EVP_DigestUpdate(md, b, sizeof(b));
}

static int cache_cmp_arg(const void *a, const void *b)
{
    const pulse_cache_arg_t *x = *(const pulse_cache_arg_t *const *)a, *y = *(const pulse_cache_arg_t *const *)b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    /* the same name twice: order by value so that the key still does not depend on the request's order */
    if (x->value == NULL || y->value == NULL)
        return (x->value != NULL) - (y->value != NULL);
    size_t n = x->value_len < y->value_len ? x->value_len : y->value_len;
    if ((c = memcmp(x->value, y->value, n)) != 0)
        return c;
    return (x->value_len > y->value_len) - (x->value_len < y->value_len);
}

typedef struct {
    const char *tag;
    uint64_t gen;
} cache_tag_t;

static int cache_cmp_tag(const void *a, const void *b)
{
    const cache_tag_t *x = a, *y = b;
    int c = strcmp(x->tag, y->tag);
    if (c != 0)
        return c;
    return (x->gen > y->gen) - (x->gen < y->gen);
}

static void cache_hex(char *out, const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i != n; ++i) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int cache_tenant_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int pulse_cache_key(char *buf, const char *tenant, const char *endpoint, const pulse_cache_arg_t *args, size_t nargs,
                    const char *const *tags, const uint64_t *gens, size_t ntags)
{
    const pulse_cache_arg_t **sorted_args = NULL;
    cache_tag_t *sorted_tags = NULL;
    EVP_MD_CTX *md = NULL;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int ret = -1;

    if (tenant == NULL)
        tenant = "";
    if (nargs > CACHE_MAX_ITEMS || ntags > CACHE_MAX_ITEMS)
        return -1;
    if ((nargs != 0 && (sorted_args = malloc(nargs * sizeof(*sorted_args))) == NULL) ||
        (ntags != 0 && (sorted_tags = malloc(ntags * sizeof(*sorted_tags))) == NULL) || (md = EVP_MD_CTX_new()) == NULL)
        goto Exit;
    for (size_t i = 0; i != nargs; ++i)
        sorted_args[i] = &args[i];
    if (nargs > 1)
        qsort(sorted_args, nargs, sizeof(*sorted_args), cache_cmp_arg);
    for (size_t i = 0; i != ntags; ++i)
        sorted_tags[i] = (cache_tag_t){tags[i], gens[i]};
    if (ntags > 1)
        qsort(sorted_tags, ntags, sizeof(*sorted_tags), cache_cmp_tag);

    /* every field is typed and length-prefixed, so distinct inputs give distinct hash inputs */
    if (EVP_DigestInit_ex(md, pulse_digest_sha256(), NULL) != 1)
        goto Exit;
    EVP_DigestUpdate(md, PULSE_CACHE_KEY_PREFIX, sizeof(PULSE_CACHE_KEY_PREFIX) - 1);
    cache_hash_bytes(md, tenant, strlen(tenant));
    cache_hash_bytes(md, endpoint, strlen(endpoint));
    cache_hash_u64(md, 'a', nargs);
    for (size_t i = 0; i != nargs; ++i) {
        cache_hash_bytes(md, sorted_args[i]->name, strlen(sorted_args[i]->name));
        if (sorted_args[i]->value == NULL)
            cache_hash_u64(md, 'n', 0);
        else
            cache_hash_bytes(md, sorted_args[i]->value, sorted_args[i]->value_len);
    }
    cache_hash_u64(md, 't', ntags);
    for (size_t i = 0; i != ntags; ++i) {
        cache_hash_bytes(md, sorted_tags[i].tag, strlen(sorted_tags[i].tag));
        cache_hash_u64(md, 'g', sorted_tags[i].gen);
    }
    if (EVP_DigestFinal_ex(md, digest, &dlen) != 1 || dlen < 16)
        goto Exit;

    /* prefix, readable tenant, hash */
    char *p = buf;
    memcpy(p, PULSE_CACHE_KEY_PREFIX, sizeof(PULSE_CACHE_KEY_PREFIX) - 1);
    p += sizeof(PULSE_CACHE_KEY_PREFIX) - 1;
    size_t enc = 0;
    for (const char *t = tenant; *t != '\0'; ++t)
        enc += cache_tenant_char_ok((unsigned char)*t) ? 1 : 3;
    if (enc <= CACHE_TENANT_MAX) {
        for (const char *t = tenant; *t != '\0'; ++t) {
            unsigned char c = (unsigned char)*t;
            if (cache_tenant_char_ok(c)) {
                *p++ = (char)c;
            } else {
                *p++ = '%';
                cache_hex(p, &c, 1);
                p += 2;
            }
        }
    } else {
        unsigned char th[EVP_MAX_MD_SIZE];
        unsigned int thlen = 0;
        if (EVP_Digest(tenant, strlen(tenant), th, &thlen, pulse_digest_sha256(), NULL) != 1)
            goto Exit;
        *p++ = '~';
        cache_hex(p, th, 8);
        p += 16;
    }
    *p++ = ':';
    cache_hex(p, digest, 16);
    p += 32;
    ret = (int)(p - buf);

Exit:
    EVP_MD_CTX_free(md);
    free(sorted_args);
    free(sorted_tags);
    return ret;
}

/* --- ETags ------------------------------------------------------------------------------------------------------- */

void pulse_cache_etag(const void *body, size_t len, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_Digest(body, len, d, &dlen, pulse_digest_sha256(), NULL) != 1)
        memset(d, 0, 16); /* cannot happen with the default provider; an all-zero tag is still a valid tag */
    out[0] = '"';
    cache_hex(out + 1, d, 16);
    out[33] = '"';
    out[34] = '\0';
}

/* splits an entity-tag into its opaque part (quotes included) and weakness; returns 0 or -1 when malformed */
static int cache_etag_parse(const char *s, size_t len, const char **opaque, size_t *olen, bool *weak)
{
    *weak = false;
    if (len >= 2 && s[0] == 'W' && s[1] == '/') {
        *weak = true;
        s += 2;
        len -= 2;
    }
    if (len < 2 || s[0] != '"' || s[len - 1] != '"')
        return -1;
    for (size_t i = 1; i + 1 < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        /* etagc = %x21 / %x23-7E / obs-text */
        if (!(c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80))
            return -1;
    }
    *opaque = s;
    *olen = len;
    return 0;
}

bool pulse_cache_etag_equal(const char *a, size_t alen, const char *b, size_t blen, bool strong)
{
    const char *oa, *ob;
    size_t la, lb;
    bool wa, wb;
    if (cache_etag_parse(a, alen, &oa, &la, &wa) != 0 || cache_etag_parse(b, blen, &ob, &lb, &wb) != 0)
        return false;
    if (strong && (wa || wb))
        return false;
    return la == lb && memcmp(oa, ob, la) == 0;
}

static int cache_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool pulse_cache_etag_list_match(const char *hdr, size_t len, const char *etag, size_t etag_len, bool strong)
{
    size_t i = 0;
    bool matched = false;

    if (hdr == NULL)
        return false;
    /* "*" alone */
    while (i < len && cache_is_ows(hdr[i]))
        ++i;
    if (i < len && hdr[i] == '*') {
        size_t j = i + 1;
        while (j < len && cache_is_ows(hdr[j]))
            ++j;
        return j == len;
    }
    /* 1#entity-tag; empty list elements are allowed (RFC 9110 5.6.1.2) */
    i = 0;
    while (i < len) {
        while (i < len && (cache_is_ows(hdr[i]) || hdr[i] == ','))
            ++i;
        if (i == len)
            break;
        size_t start = i;
        if (hdr[i] == 'W') {
            if (i + 1 >= len || hdr[i + 1] != '/')
                return false;
            i += 2;
        }
        if (i >= len || hdr[i] != '"')
            return false;
        ++i;
        while (i < len && hdr[i] != '"')
            ++i;
        if (i == len)
            return false; /* unterminated */
        ++i;
        const char *opaque;
        size_t olen;
        bool weak;
        if (cache_etag_parse(hdr + start, i - start, &opaque, &olen, &weak) != 0)
            return false;
        if (pulse_cache_etag_equal(hdr + start, i - start, etag, etag_len, strong))
            matched = true;
        while (i < len && cache_is_ows(hdr[i]))
            ++i;
        if (i < len && hdr[i] != ',')
            return false;
    }
    return matched;
}

/* parses the q-value of one Accept-Encoding element (the text after the coding); returns 0..1000, 1000 when absent */
static int cache_qvalue(const char *p, const char *end)
{
    int q = 1000;
    while (p < end) {
        while (p < end && (cache_is_ows(*p) || *p == ';'))
            ++p;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            p += 2;
            if (p < end && *p == '0') {
                q = 0;
                ++p;
                if (p < end && *p == '.') {
                    ++p;
                    for (int scale = 100; p < end && *p >= '0' && *p <= '9' && scale != 0; ++p, scale /= 10)
                        q += (*p - '0') * scale;
                }
            } else if (p < end && *p == '1') {
                q = 1000;
                ++p;
            }
        }
        while (p < end && *p != ';')
            ++p;
    }
    return q;
}

bool pulse_cache_accepts_gzip(const char *hdr, size_t len)
{
    const char *p = hdr, *end = hdr + len;
    int gzip_q = -1, star_q = -1;
    if (hdr == NULL)
        return false;
    while (p < end) {
        while (p < end && (cache_is_ows(*p) || *p == ','))
            ++p;
        const char *tok = p;
        while (p < end && *p != ',' && *p != ';' && !cache_is_ows(*p))
            ++p;
        size_t toklen = (size_t)(p - tok);
        const char *params = p;
        while (p < end && *p != ',')
            ++p;
        if (toklen == 0)
            continue;
        int q = cache_qvalue(params, p);
        if ((toklen == 4 && strncasecmp(tok, "gzip", 4) == 0) || (toklen == 6 && strncasecmp(tok, "x-gzip", 6) == 0)) {
            if (q > gzip_q)
                gzip_q = q;
        } else if (toklen == 1 && tok[0] == '*') {
            star_q = q;
        }
    }
    if (gzip_q >= 0)
        return gzip_q > 0;
    return star_q > 0;
}

void pulse_cache_select(h2o_mem_pool_t *pool, const pulse_cache_entry_t *e, const char *accept_encoding, size_t ae_len,
                        const char *if_none_match, size_t inm_len, pulse_cache_repr_t *out)
{
    out->gzip = e->gzip.len != 0 && pulse_cache_accepts_gzip(accept_encoding, ae_len);
    out->body = out->gzip ? e->gzip : e->body;
    out->etag = e->etag;
    if (out->gzip && e->etag.len >= 2 && e->etag.base[e->etag.len - 1] == '"') {
        static const char suffix[] = "-gzip\"";
        char *t = h2o_mem_alloc_pool(pool, e->etag.len - 1 + sizeof(suffix) - 1);
        memcpy(t, e->etag.base, e->etag.len - 1);
        memcpy(t + e->etag.len - 1, suffix, sizeof(suffix) - 1);
        out->etag = h2o_iovec_init(t, e->etag.len - 1 + sizeof(suffix) - 1);
    }
    out->not_modified =
        if_none_match != NULL && pulse_cache_etag_list_match(if_none_match, inm_len, out->etag.base, out->etag.len, false);
}

/* --- values ------------------------------------------------------------------------------------------------------ */

/* Each thread keeps one deflate stream and resets it per body: deflateInit2 allocates about 270 kB of window and hash
   tables, which cost more than compressing a page of JSON. The key's destructor frees it when the thread exits. */
static pthread_key_t gzip_key;
static pthread_once_t gzip_once = PTHREAD_ONCE_INIT;

static void gzip_stream_free(void *p)
{
    deflateEnd(p);
    free(p);
}

static void gzip_key_init(void)
{
    (void)pthread_key_create(&gzip_key, gzip_stream_free);
}

static z_stream *gzip_stream(void)
{
    (void)pthread_once(&gzip_once, gzip_key_init);
    z_stream *zs = pthread_getspecific(gzip_key);
    if (zs != NULL)
        return deflateReset(zs) == Z_OK ? zs : NULL;
    if ((zs = calloc(1, sizeof(*zs))) == NULL)
        return NULL;
    if (deflateInit2(zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(zs);
        return NULL;
    }
    if (pthread_setspecific(gzip_key, zs) != 0) {
        gzip_stream_free(zs);
        return NULL;
    }
    return zs;
}

int pulse_cache_gzip(h2o_mem_pool_t *pool, const void *src, size_t len, h2o_iovec_t *out)
{
    z_stream *zs;
    if (len > UINT32_MAX / 2 || (zs = gzip_stream()) == NULL)
        return -1;
    uLong cap = deflateBound(zs, (uLong)len) + 32;
    char *buf = h2o_mem_alloc_pool(pool, cap);
    zs->next_in = (Bytef *)src;
    zs->avail_in = (uInt)len;
    zs->next_out = (Bytef *)buf;
    zs->avail_out = (uInt)cap;
    int rc = deflate(zs, Z_FINISH);
    size_t n = zs->total_out;
    if (rc != Z_STREAM_END)
        return -1;
    *out = h2o_iovec_init(buf, n);
    return 0;
}

int pulse_cache_entry_init(h2o_mem_pool_t *pool, pulse_cache_entry_t *e, int status, h2o_iovec_t content_type, h2o_iovec_t body,
                           h2o_iovec_t link, uint64_t now_ms, uint64_t ttl_ms)
{
    int ret = 0;
    memset(e, 0, sizeof(*e));
    e->status = status;
    e->created_at_ms = now_ms;
    e->ttl_ms = ttl_ms;
    e->content_type = content_type;
    e->body = body;
    e->link = link;
    char *etag = h2o_mem_alloc_pool(pool, PULSE_CACHE_ETAG_SIZE);
    pulse_cache_etag(body.base, body.len, etag);
    e->etag = h2o_iovec_init(etag, PULSE_CACHE_ETAG_SIZE - 1);
    if (body.len > PULSE_CACHE_GZIP_MIN) {
        h2o_iovec_t gz;
        if (pulse_cache_gzip(pool, body.base, body.len, &gz) != 0)
            ret = -1;
        else if (gz.len < body.len)
            e->gzip = gz;
    }
    return ret;
}

static char *cache_put_u16(char *p, uint16_t v)
{
    *p++ = (char)(v >> 8);
    *p++ = (char)v;
    return p;
}

static char *cache_put_u32(char *p, uint32_t v)
{
    for (int i = 0; i != 4; ++i)
        *p++ = (char)(v >> (24 - 8 * i));
    return p;
}

static char *cache_put_u64(char *p, uint64_t v)
{
    for (int i = 0; i != 8; ++i)
        *p++ = (char)(v >> (56 - 8 * i));
    return p;
}

static char *cache_put_bytes(char *p, h2o_iovec_t v)
{
    if (v.len != 0)
        memcpy(p, v.base, v.len);
    return p + v.len;
}

/*
 * Layout (big-endian): "PLC" version:u8 flags:u8 status:u16 created_at_ms:u64 ttl_ms:u64
 * content_type:u16+bytes etag:u16+bytes link:u16+bytes body:u32+bytes [gzip:u32+bytes when flags & GZIP]
 */
int pulse_cache_entry_encode(h2o_mem_pool_t *pool, const pulse_cache_entry_t *e, h2o_iovec_t *out)
{
    if (e->content_type.len > 0xffff || e->etag.len > 0xffff || e->link.len > 0xffff || e->body.len > UINT32_MAX ||
        e->gzip.len > UINT32_MAX || e->keyed.len > UINT32_MAX || e->status < 100 || e->status > 599)
        return -1;
    size_t len = 3 + 1 + 1 + 2 + 8 + 8 + 2 + e->content_type.len + 2 + e->etag.len + 2 + e->link.len + 4 + e->body.len;
    if (e->gzip.len != 0)
        len += 4 + e->gzip.len;
    if (e->keyed.len != 0)
        len += 4 + e->keyed.len;
    char *buf = h2o_mem_alloc_pool(pool, len), *p = buf;
    memcpy(p, CACHE_MAGIC, 3);
    p += 3;
    *p++ = CACHE_VERSION;
    *p++ = (e->gzip.len != 0 ? CACHE_FLAG_GZIP : 0) | (e->keyed.len != 0 ? CACHE_FLAG_KEYED : 0);
    p = cache_put_u16(p, (uint16_t)e->status);
    p = cache_put_u64(p, e->created_at_ms);
    p = cache_put_u64(p, e->ttl_ms);
    p = cache_put_bytes(cache_put_u16(p, (uint16_t)e->content_type.len), e->content_type);
    p = cache_put_bytes(cache_put_u16(p, (uint16_t)e->etag.len), e->etag);
    p = cache_put_bytes(cache_put_u16(p, (uint16_t)e->link.len), e->link);
    p = cache_put_bytes(cache_put_u32(p, (uint32_t)e->body.len), e->body);
    if (e->gzip.len != 0)
        p = cache_put_bytes(cache_put_u32(p, (uint32_t)e->gzip.len), e->gzip);
    if (e->keyed.len != 0)
        p = cache_put_bytes(cache_put_u32(p, (uint32_t)e->keyed.len), e->keyed);
    *out = h2o_iovec_init(buf, (size_t)(p - buf));
    return 0;
}

typedef struct {
    const unsigned char *p, *end;
} cache_reader_t;

static int cache_get_uint(cache_reader_t *r, int nbytes, uint64_t *v)
{
    if (r->end - r->p < nbytes)
        return -1;
    *v = 0;
    for (int i = 0; i != nbytes; ++i)
        *v = (*v << 8) | *r->p++;
    return 0;
}

static int cache_get_field(cache_reader_t *r, int lenbytes, h2o_iovec_t *v)
{
    uint64_t len;
    if (cache_get_uint(r, lenbytes, &len) != 0 || (uint64_t)(r->end - r->p) < len)
        return -1;
    *v = h2o_iovec_init(len != 0 ? (const char *)r->p : "", (size_t)len);
    r->p += len;
    return 0;
}

int pulse_cache_entry_decode(const void *buf, size_t len, pulse_cache_entry_t *e)
{
    cache_reader_t r = {buf, (const unsigned char *)buf + len};
    uint64_t version, flags, status;
    memset(e, 0, sizeof(*e));
    if (buf == NULL || len < 3 || memcmp(buf, CACHE_MAGIC, 3) != 0)
        return -1;
    r.p += 3;
    if (cache_get_uint(&r, 1, &version) != 0 || version != CACHE_VERSION || cache_get_uint(&r, 1, &flags) != 0 ||
        (flags & ~(uint64_t)(CACHE_FLAG_GZIP | CACHE_FLAG_KEYED)) != 0 || cache_get_uint(&r, 2, &status) != 0 || status < 100 ||
        status > 599 || cache_get_uint(&r, 8, &e->created_at_ms) != 0 || cache_get_uint(&r, 8, &e->ttl_ms) != 0 ||
        cache_get_field(&r, 2, &e->content_type) != 0 || cache_get_field(&r, 2, &e->etag) != 0 ||
        cache_get_field(&r, 2, &e->link) != 0 || cache_get_field(&r, 4, &e->body) != 0)
        goto Fail;
    if ((flags & CACHE_FLAG_GZIP) != 0 && (cache_get_field(&r, 4, &e->gzip) != 0 || e->gzip.len == 0))
        goto Fail;
    if ((flags & CACHE_FLAG_KEYED) != 0 && (cache_get_field(&r, 4, &e->keyed) != 0 || e->keyed.len == 0))
        goto Fail;
    if (r.p != r.end)
        goto Fail;
    e->status = (int)status;
    return 0;
Fail:
    memset(e, 0, sizeof(*e));
    return -1;
}

/* --- freshness --------------------------------------------------------------------------------------------------- */

pulse_cache_freshness_t pulse_cache_classify(uint64_t created_at_ms, uint64_t ttl_ms, uint64_t swr_ms, uint64_t sie_ms,
                                             uint64_t now_ms)
{
    uint64_t age = now_ms > created_at_ms ? now_ms - created_at_ms : 0;
    if (age < ttl_ms)
        return PULSE_CACHE_FRESH;
    uint64_t over = age - ttl_ms;
    if (over < swr_ms)
        return PULSE_CACHE_STALE;
    if (over < sie_ms)
        return PULSE_CACHE_STALE_IF_ERROR;
    return PULSE_CACHE_EXPIRED;
}

uint64_t pulse_cache_redis_ttl_ms(uint64_t ttl_ms, uint64_t swr_ms, uint64_t sie_ms)
{
    uint64_t extra = swr_ms > sie_ms ? swr_ms : sie_ms;
    uint64_t t = ttl_ms + extra;
    if (t < ttl_ms) /* overflow */
        t = UINT64_MAX;
    return t != 0 ? t : 1;
}

const char *pulse_cache_freshness_name(pulse_cache_freshness_t f)
{
    switch (f) {
    case PULSE_CACHE_FRESH:
        return "fresh";
    case PULSE_CACHE_STALE:
        return "stale";
    case PULSE_CACHE_STALE_IF_ERROR:
        return "stale-if-error";
    case PULSE_CACHE_EXPIRED:
        break;
    }
    return "expired";
}

int pulse_cache_control(char *buf, size_t cap, const pulse_cache_entry_t *e, uint64_t swr_ms, uint64_t sie_ms, uint64_t now_ms)
{
    uint64_t age = now_ms > e->created_at_ms ? now_ms - e->created_at_ms : 0;
    uint64_t left = age < e->ttl_ms ? (e->ttl_ms - age) / 1000 : 0;
    char swr[48] = "", sie[48] = "";
    if (swr_ms != 0)
        snprintf(swr, sizeof(swr), ", stale-while-revalidate=%llu", (unsigned long long)(swr_ms / 1000));
    if (sie_ms != 0)
        snprintf(sie, sizeof(sie), ", stale-if-error=%llu", (unsigned long long)(sie_ms / 1000));
    int n = snprintf(buf, cap, "private, max-age=%llu%s%s", (unsigned long long)left, swr, sie);
    return n >= 0 && (size_t)n < cap ? n : -1;
}

/* --- Redis storage ----------------------------------------------------------------------------------------------- */

typedef struct {
    pulse_cache_fetch_cb cb;
    void *data;
} cache_fetch_t;

static void cache_on_get(void *_ctx, redisReply *reply, const char *err)
{
    cache_fetch_t ctx = *(cache_fetch_t *)_ctx;
    pulse_cache_entry_t e;
    free(_ctx);
    (void)err;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ctx.cb(ctx.data, PULSE_CACHE_LOOKUP_UNAVAILABLE, NULL);
    } else if (reply->type == REDIS_REPLY_STRING && pulse_cache_entry_decode(reply->str, reply->len, &e) == 0) {
        ctx.cb(ctx.data, PULSE_CACHE_LOOKUP_HIT, &e);
    } else {
        ctx.cb(ctx.data, PULSE_CACHE_LOOKUP_MISS, NULL);
    }
}

int pulse_cache_fetch(pulse_redis_t *redis, const char *key, pulse_cache_fetch_cb cb, void *data)
{
    if (redis == NULL || !pulse_redis_is_up(redis))
        return -1;
    cache_fetch_t *ctx = malloc(sizeof(*ctx));
    if (ctx == NULL)
        return -1;
    *ctx = (cache_fetch_t){cb, data};
    const char *argv[] = {"GET", key};
    if (pulse_redis_command_argv(redis, cache_on_get, ctx, 2, argv, NULL) != 0) {
        free(ctx);
        return -1;
    }
    return 0;
}

typedef struct {
    pulse_cache_lock_cb cb;
    void *data;
} cache_lock_t;

static void cache_on_lock(void *_ctx, redisReply *reply, const char *err)
{
    cache_lock_t ctx = *(cache_lock_t *)_ctx;
    free(_ctx);
    (void)err;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        ctx.cb(ctx.data, -1);
    else
        ctx.cb(ctx.data, reply->type == REDIS_REPLY_STATUS ? 1 : 0); /* +OK, or nil when the key exists */
}

int pulse_cache_lock(pulse_redis_t *redis, const char *key, const char *owner, uint64_t px_ms, pulse_cache_lock_cb cb, void *data)
{
    if (redis == NULL || !pulse_redis_is_up(redis))
        return -1;
    cache_lock_t *ctx = malloc(sizeof(*ctx));
    if (ctx == NULL)
        return -1;
    *ctx = (cache_lock_t){cb, data};
    char lock[PULSE_CACHE_KEY_SIZE + 8], px[24];
    snprintf(lock, sizeof(lock), "%s:lock", key);
    snprintf(px, sizeof(px), "%llu", (unsigned long long)(px_ms != 0 ? px_ms : 1));
    const char *argv[] = {"SET", lock, owner, "NX", "PX", px};
    if (pulse_redis_command_argv(redis, cache_on_lock, ctx, 6, argv, NULL) != 0) {
        free(ctx);
        return -1;
    }
    return 0;
}

static void cache_on_unlock(void *data, redisReply *reply, const char *err)
{
    (void)data, (void)reply, (void)err; /* a lock left behind expires by itself */
}

void pulse_cache_unlock(pulse_redis_t *redis, const char *key, const char *owner)
{
    if (redis == NULL || !pulse_redis_is_up(redis))
        return;
    char lock[PULSE_CACHE_KEY_SIZE + 8];
    snprintf(lock, sizeof(lock), "%s:lock", key);
    const char *argv[] = {"EVAL", "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                          "1", lock, owner};
    if (pulse_redis_command_argv(redis, cache_on_unlock, NULL, 5, argv, NULL) != 0) {
        /* not sent: the lock expires by itself */
    }
}

static void cache_on_set(void *data, redisReply *reply, const char *err)
{
    (void)data, (void)reply, (void)err; /* counted in the client's stats */
}

int pulse_cache_store(pulse_redis_t *redis, h2o_mem_pool_t *pool, const char *key, const pulse_cache_entry_t *e, uint64_t px_ms)
{
    h2o_iovec_t v;
    char px[24];
    if (redis == NULL || !pulse_redis_is_up(redis) || pulse_cache_entry_encode(pool, e, &v) != 0)
        return -1;
    snprintf(px, sizeof(px), "%llu", (unsigned long long)(px_ms != 0 ? px_ms : 1));
    const char *argv[] = {"SET", key, v.base, "PX", px};
    size_t argvlen[] = {3, strlen(key), v.len, 2, strlen(px)};
    return pulse_redis_command_argv(redis, cache_on_set, NULL, 5, argv, argvlen);
}

/* --- single-flight ----------------------------------------------------------------------------------------------- */

typedef struct cache_flight_t {
    struct cache_flight_t *next; /* in its bucket */
    uint64_t hash;
    h2o_linklist_t waiters; /* pulse_cache_waiter_t._link */
    char key[];
} cache_flight_t;

struct pulse_cache_waiter_t {
    h2o_linklist_t _link;
    pulse_cache_flights_t *_table;
    pulse_cache_flight_cb cb;
    void *data;
};

struct pulse_cache_flights_t {
    cache_flight_t **_buckets;
    size_t _nbuckets; /* a power of two */
    size_t _count;
    size_t _nwaiters;
};

static uint64_t cache_str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s != '\0'; ++s) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

pulse_cache_flights_t *pulse_cache_flights_create(void)
{
    pulse_cache_flights_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->_nbuckets = 256;
    if ((t->_buckets = calloc(t->_nbuckets, sizeof(*t->_buckets))) == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

static cache_flight_t **cache_flight_find(pulse_cache_flights_t *t, const char *key, uint64_t h)
{
    cache_flight_t **ref;
    for (ref = &t->_buckets[h & (t->_nbuckets - 1)]; *ref != NULL; ref = &(*ref)->next)
        if ((*ref)->hash == h && strcmp((*ref)->key, key) == 0)
            return ref;
    return NULL;
}

static void cache_flights_grow(pulse_cache_flights_t *t)
{
    size_t n = t->_nbuckets * 2;
    cache_flight_t **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return;
    for (size_t i = 0; i != t->_nbuckets; ++i) {
        cache_flight_t *f, *next;
        for (f = t->_buckets[i]; f != NULL; f = next) {
            next = f->next;
            f->next = b[f->hash & (n - 1)];
            b[f->hash & (n - 1)] = f;
        }
    }
    free(t->_buckets);
    t->_buckets = b;
    t->_nbuckets = n;
}

/* wakes every waiter of a flight already unlinked from the table, then frees it */
static int cache_flight_run(pulse_cache_flights_t *t, cache_flight_t *f, const void *result)
{
    int n = 0;
    while (!h2o_linklist_is_empty(&f->waiters)) {
        pulse_cache_waiter_t *w = H2O_STRUCT_FROM_MEMBER(pulse_cache_waiter_t, _link, f->waiters.next);
        h2o_linklist_unlink(&w->_link);
        --t->_nwaiters;
        pulse_cache_flight_cb cb = w->cb;
        void *data = w->data;
        free(w);
        cb(data, result);
        ++n;
    }
    free(f);
    return n;
}

void pulse_cache_flights_destroy(pulse_cache_flights_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i != t->_nbuckets; ++i) {
        cache_flight_t *f;
        while ((f = t->_buckets[i]) != NULL) {
            t->_buckets[i] = f->next;
            --t->_count;
            cache_flight_run(t, f, NULL);
        }
    }
    free(t->_buckets);
    free(t);
}

int pulse_cache_flight_join(pulse_cache_flights_t *t, const char *key, pulse_cache_flight_cb cb, void *data,
                            pulse_cache_waiter_t **waiter)
{
    uint64_t h = cache_str_hash(key);
    cache_flight_t **ref = cache_flight_find(t, key, h);

    *waiter = NULL;
    if (ref == NULL) {
        size_t len = strlen(key);
        cache_flight_t *f = malloc(sizeof(*f) + len + 1);
        if (f == NULL)
            return -1;
        f->hash = h;
        h2o_linklist_init_anchor(&f->waiters);
        memcpy(f->key, key, len + 1);
        f->next = t->_buckets[h & (t->_nbuckets - 1)];
        t->_buckets[h & (t->_nbuckets - 1)] = f;
        if (++t->_count > t->_nbuckets * 2)
            cache_flights_grow(t);
        return 1;
    }
    pulse_cache_waiter_t *w = malloc(sizeof(*w));
    if (w == NULL)
        return -1;
    *w = (pulse_cache_waiter_t){{NULL, NULL}, t, cb, data};
    h2o_linklist_insert(&(*ref)->waiters, &w->_link);
    ++t->_nwaiters;
    *waiter = w;
    return 0;
}

int pulse_cache_flight_finish(pulse_cache_flights_t *t, const char *key, const void *result)
{
    cache_flight_t **ref = cache_flight_find(t, key, cache_str_hash(key));
    if (ref == NULL)
        return -1;
    cache_flight_t *f = *ref;
    *ref = f->next;
    --t->_count;
    return cache_flight_run(t, f, result);
}

void pulse_cache_flight_leave(pulse_cache_waiter_t *w)
{
    if (w == NULL)
        return;
    h2o_linklist_unlink(&w->_link);
    --w->_table->_nwaiters;
    free(w);
}

size_t pulse_cache_flights_count(pulse_cache_flights_t *t, size_t *nwaiters)
{
    if (nwaiters != NULL)
        *nwaiters = t->_nwaiters;
    return t->_count;
}
