/*
 * ratelimit_fields.c: the response fields of a rate limit decision
 * (ratelimit.h): RateLimit-Policy and RateLimit of
 * draft-ietf-httpapi-ratelimit-headers-12, structured fields written by
 * sfv.c, one item per bucket that applied; the draft-06 RateLimit-Limit,
 * -Remaining and -Reset behind ratelimit_legacy_headers; Retry-After.
 *
 * Mapping of a token bucket (rate r per second, burst b) to the draft:
 *   q  = b, the quota;  w = ceil(b / r), the seconds an empty bucket takes to
 *        fill, so q per w is the bucket's long-run rate;
 *   r  = the whole tokens left after this request;
 *   t  = the seconds, rounded up, until the bucket holds one more whole
 *        token: within t the client can spend no more than r (up to the
 *        rounding).  On a 429 the bucket that refused has r=0 and t equal
 *        to Retry-After (the draft: Retry-After must not end before t);
 *   pk = the bucket's partition: the tenant's id or the client's address
 *        as bytes (both are the caller's own); the global bucket has none.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ratelimit.h"
#include "sfv.h"

/* the seconds `ms` rounded up */
static int64_t rlf_seconds(uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;
    return s > PULSE_SFV_INTEGER_MAX ? PULSE_SFV_INTEGER_MAX : (int64_t)s;
}

/* the window of a bucket: seconds for an empty bucket to fill (burst / rate), rounded up, at least 1; a quotient within
   a relative 1e-9 of an integer is that integer (3 / 0.3 = 10.000000000000002) */
static uint64_t rlf_window(uint32_t burst, double rate)
{
    double x = rate > 0 ? (double)burst / rate : 1, r = round(x);
    double w = fabs(x - r) <= 1e-9 * (r > 1 ? r : 1) ? r : ceil(x);
    if (w < 1)
        w = 1;
    if (w > 1e15)
        w = 1e15;
    return (uint64_t)w;
}

/* "<class>-<scope>" */
static void rlf_name(pulse_sfv_t *s, const pulse_ratelimit_subject_t *who, pulse_ratelimit_scope_t scope)
{
    char name[32];
    int n = snprintf(name, sizeof(name), "%s-%s", pulse_config_class_name(who->cls), pulse_ratelimit_scope_name(scope));
    pulse_sfv_string(s, name, (size_t)n);
}

/* ";pk=:<base64>:" for the tenant and ip buckets */
static void rlf_pk(pulse_sfv_t *s, const pulse_ratelimit_subject_t *who, pulse_ratelimit_scope_t scope)
{
    const char *id = scope == PULSE_RATELIMIT_SCOPE_TENANT ? who->tenant : scope == PULSE_RATELIMIT_SCOPE_IP ? who->ip : NULL;
    if (id == NULL || id[0] == '\0' || strlen(id) > PULSE_RATELIMIT_MAX_ID)
        return;
    pulse_sfv_param(s, "pk");
    pulse_sfv_bytes(s, id, strlen(id));
}

/* writes both structured fields; on a refusal (cannot happen with the names above) both stay empty */
static void rlf_structured(const pulse_ratelimit_result_t *r, const pulse_ratelimit_subject_t *who, pulse_ratelimit_headers_t *out)
{
    pulse_sfv_t pol, cur;
    pulse_sfv_init(&pol, out->policy, sizeof(out->policy));
    pulse_sfv_init(&cur, out->ratelimit, sizeof(out->ratelimit));
    for (int i = 0; i != r->nbuckets; ++i) {
        const pulse_ratelimit_bucket_t *b = &r->bucket[i];
        pulse_sfv_member(&pol);
        rlf_name(&pol, who, b->scope);
        pulse_sfv_param(&pol, "q");
        pulse_sfv_integer(&pol, b->burst);
        pulse_sfv_param(&pol, "w");
        pulse_sfv_integer(&pol, (int64_t)rlf_window(b->burst, b->rate));
        rlf_pk(&pol, who, b->scope);
        pulse_sfv_member(&cur);
        rlf_name(&cur, who, b->scope);
        pulse_sfv_param(&cur, "r");
        pulse_sfv_integer(&cur, b->remaining);
        pulse_sfv_param(&cur, "t");
        pulse_sfv_integer(&cur, rlf_seconds(b->next_ms));
        rlf_pk(&cur, who, b->scope);
    }
    if (pulse_sfv_end(&pol) < 0 || pulse_sfv_end(&cur) < 0)
        out->policy[0] = out->ratelimit[0] = '\0';
}

void pulse_ratelimit_headers(const pulse_ratelimit_result_t *r, const pulse_ratelimit_subject_t *who,
                             pulse_ratelimit_headers_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!r->limited)
        return;
    rlf_structured(r, who, out);
    snprintf(out->limit, sizeof(out->limit), "%u", r->limit);
    snprintf(out->remaining, sizeof(out->remaining), "%u", r->remaining);
    snprintf(out->reset, sizeof(out->reset), "%llu", (unsigned long long)((r->reset_ms + 999) / 1000));
    snprintf(out->legacy_policy, sizeof(out->legacy_policy), "%u;w=%llu", r->limit,
             (unsigned long long)rlf_window(r->limit, r->rate));
    if (!r->allowed) {
        uint64_t s = (r->retry_after_ms + 999) / 1000;
        snprintf(out->retry_after, sizeof(out->retry_after), "%llu", (unsigned long long)(s < 1 ? 1 : s));
    }
}

void pulse_ratelimit_add_headers(h2o_mem_pool_t *pool, h2o_headers_t *headers, const pulse_ratelimit_result_t *r,
                                 const pulse_ratelimit_subject_t *who, int legacy)
{
    if (!r->limited)
        return;
    pulse_ratelimit_headers_t h;
    pulse_ratelimit_headers(r, who, &h);
    struct {
        const char *name;
        size_t namelen;
        const char *value;
        int legacy;
    } list[] = {{H2O_STRLIT("ratelimit-policy"), h.policy, 0}, {H2O_STRLIT("ratelimit"), h.ratelimit, 0},
                {H2O_STRLIT("ratelimit-limit"), h.limit, 1},   {H2O_STRLIT("ratelimit-remaining"), h.remaining, 1},
                {H2O_STRLIT("ratelimit-reset"), h.reset, 1},   {H2O_STRLIT("retry-after"), h.retry_after, 0}};
    for (size_t i = 0; i != sizeof(list) / sizeof(list[0]); ++i) {
        if (list[i].value[0] == '\0' || (list[i].legacy && !legacy))
            continue;
        h2o_iovec_t v = h2o_strdup(pool, list[i].value, SIZE_MAX);
        h2o_add_header_by_str(pool, headers, list[i].name, list[i].namelen, 1, NULL, v.base, v.len);
    }
}
