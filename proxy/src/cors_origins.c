/*
 * cors_origins.c: the cors_origins list (cors_origins.h): its check and the
 * origin match, pure functions that depend on nothing of the proxy, so that
 * config.c can check the option and cors.c can match with it.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "cors_origins.h"

/* ---- the list -------------------------------------------------------------------------------------------------- */

static int cors_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* calls `fn` on each item of `list` (separated by ',' or by lines, trimmed, possibly empty); stops at the first non-zero
   return and returns it */
static int cors_each(const char *list, int (*fn)(const char *item, size_t len, void *arg), void *arg)
{
    const char *p = list != NULL ? list : "";
    while (1) {
        size_t n = strcspn(p, ",\n");
        const char *comma = p[n] != '\0' ? p + n : NULL, *end = p + n, *a = p, *b = end;
        while (a != b && cors_is_blank(*a))
            ++a;
        while (b != a && cors_is_blank(b[-1]))
            --b;
        int rc = fn(a, (size_t)(b - a), arg);
        if (rc != 0 || comma == NULL)
            return rc;
        p = comma + 1;
    }
}

/* the reason an origin item is malformed, or NULL */
static const char *cors_item_problem(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 1 && s[0] == '*')
        return NULL;
    if (len == 0)
        return "an empty item";
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return "an origin starts with its scheme";
    while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                       s[i] == '+' || s[i] == '.' || s[i] == '-'))
        ++i;
    if (len - i < 3 || memcmp(s + i, "://", 3) != 0)
        return "an origin is scheme://host[:port]";
    i += 3;
    size_t host = i;
    if (i < len && s[i] == '[') {
        for (++i; i < len && s[i] != ']'; ++i)
            if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F') || s[i] == ':' ||
                  s[i] == '.'))
                return "a bracketed host is an IPv6 address";
        if (i == len || i == host + 1)
            return "an empty or unterminated [IPv6] host";
        ++i;
    } else {
        while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                           s[i] == '-' || s[i] == '.'))
            ++i;
    }
    if (i == host)
        return "an origin needs a host";
    if (i < len && s[i] == ':') {
        size_t port = ++i;
        unsigned long v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - port < 6)
            v = v * 10 + (unsigned long)(s[i++] - '0');
        if (i == port || v == 0 || v > 65535)
            return "a port is 1 to 65535";
    }
    if (i != len)
        return s[i] == '/' ? "an origin has no path (not even \"/\")" : "an origin is scheme://host[:port]";
    return NULL;
}

typedef struct {
    char *err;
    size_t errlen;
} cors_check_t;

static int cors_check_item(const char *item, size_t len, void *arg)
{
    cors_check_t *c = arg;
    const char *why = cors_item_problem(item, len);
    if (why == NULL)
        return 0;
    snprintf(c->err, c->errlen, "cors_origins: \"%.*s\" is not an origin: %s", (int)(len > 80 ? 80 : len), item, why);
    return -1;
}

int pulse_cors_check_origins(const char *list, char *err, size_t errlen)
{
    if (list == NULL || list[strspn(list, " \t")] == '\0')
        return 0;
    cors_check_t c = {err, errlen};
    return cors_each(list, cors_check_item, &c);
}

typedef struct {
    const char *origin;
    size_t len;
} cors_match_t;

static int cors_match_item(const char *item, size_t len, void *arg)
{
    const cors_match_t *m = arg;
    if (len == 1 && item[0] == '*')
        return 1;
    if (len != m->len)
        return 0;
    for (size_t i = 0; i != len; ++i)
        if (tolower((unsigned char)item[i]) != tolower((unsigned char)m->origin[i]))
            return 0;
    return 2;
}

int pulse_cors_origin_allowed(const char *list, const char *origin, size_t len)
{
    if (list == NULL || list[0] == '\0' || len == 0 || (len == 4 && memcmp(origin, "null", 4) == 0))
        return 0;
    cors_match_t m = {origin, len};
    return cors_each(list, cors_match_item, &m);
}
