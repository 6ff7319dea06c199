/*
 * sfv.c: structured field values, serialization only (see sfv.h and
 * RFC 9651 section 4.1).
 */
#include <stdio.h>
#include <string.h>
#include "sfv.h"

void pulse_sfv_init(pulse_sfv_t *s, char *buf, size_t cap)
{
    *s = (pulse_sfv_t){.buf = buf, .cap = cap};
    if (cap != 0)
        buf[0] = '\0';
    else
        s->failed = 1;
}

static void sfv_fail(pulse_sfv_t *s)
{
    s->failed = 1;
}

static void sfv_put(pulse_sfv_t *s, const char *p, size_t n)
{
    if (s->failed)
        return;
    if (s->len + n + 1 > s->cap) {
        sfv_fail(s);
        return;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

static void sfv_putc(pulse_sfv_t *s, char c)
{
    sfv_put(s, &c, 1);
}

static int sfv_is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int sfv_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* tchar of RFC 9110 5.6.2 */
static int sfv_is_tchar(char c)
{
    return sfv_is_alpha(c) || sfv_is_digit(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

void pulse_sfv_member(pulse_sfv_t *s)
{
    if (s->members++ != 0)
        sfv_put(s, ", ", 2);
}

void pulse_sfv_string(pulse_sfv_t *s, const char *v, size_t len)
{
    for (size_t i = 0; i != len; ++i)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            sfv_fail(s);
    sfv_putc(s, '"');
    for (size_t i = 0; i != len && !s->failed; ++i) {
        if (v[i] == '"' || v[i] == '\\')
            sfv_putc(s, '\\');
        sfv_putc(s, v[i]);
    }
    sfv_putc(s, '"');
}

void pulse_sfv_token(pulse_sfv_t *s, const char *v, size_t len)
{
    if (len == 0 || !(sfv_is_alpha(v[0]) || v[0] == '*'))
        sfv_fail(s);
    for (size_t i = 1; i < len; ++i)
        if (!(sfv_is_tchar(v[i]) || v[i] == ':' || v[i] == '/'))
            sfv_fail(s);
    sfv_put(s, v, len);
}

void pulse_sfv_integer(pulse_sfv_t *s, int64_t v)
{
    char num[24];
    if (v > PULSE_SFV_INTEGER_MAX || v < -PULSE_SFV_INTEGER_MAX) {
        sfv_fail(s);
        return;
    }
    int n = snprintf(num, sizeof(num), "%lld", (long long)v);
    sfv_put(s, num, (size_t)n);
}

void pulse_sfv_bytes(pulse_sfv_t *s, const void *v, size_t len)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = v;
    sfv_putc(s, ':');
    for (size_t i = 0; i < len; i += 3) {
        unsigned w = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < len ? p[i + 2] : 0);
        char q[4] = {b64[w >> 18 & 63], b64[w >> 12 & 63], i + 1 < len ? b64[w >> 6 & 63] : '=', i + 2 < len ? b64[w & 63] : '='};
        sfv_put(s, q, 4);
    }
    sfv_putc(s, ':');
}

static void sfv_key(pulse_sfv_t *s, const char *key)
{
    size_t len = strlen(key);
    if (len == 0 || !((key[0] >= 'a' && key[0] <= 'z') || key[0] == '*'))
        sfv_fail(s);
    for (size_t i = 1; i < len; ++i)
        if (!((key[i] >= 'a' && key[i] <= 'z') || sfv_is_digit(key[i]) || strchr("_-.*", key[i]) != NULL))
            sfv_fail(s);
    sfv_put(s, key, len);
}

void pulse_sfv_param(pulse_sfv_t *s, const char *key)
{
    sfv_putc(s, ';');
    sfv_key(s, key);
    sfv_putc(s, '=');
}

void pulse_sfv_param_true(pulse_sfv_t *s, const char *key)
{
    sfv_putc(s, ';');
    sfv_key(s, key);
}

int pulse_sfv_end(pulse_sfv_t *s)
{
    if (s->failed) {
        s->len = 0;
        if (s->cap != 0)
            s->buf[0] = '\0';
        return -1;
    }
    return (int)s->len;
}
