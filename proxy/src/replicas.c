/*
 * replicas.c: the event loops' side of read replicas (replicas.h): each
 * loop's pools to the replicas, the routing of a call (by class, measured
 * lag and required LSN), the calls waiting for a replica to replay their
 * required LSN, the retry on the primary of a call a replica failed, the
 * write's LSN token, the tag stamps and the check of a replica's cache fill.
 *
 * Ownership: a pulse_replicas_loop_t and its waiters belong to its loop's
 * thread.  A waiter (heap) is owned by the loop's list from
 * pulse_replicas_route until it is decided (its callback then runs) or
 * canceled; the request keeps a pointer to it in its pick.  Everything
 * process-wide (figures, stamps) is read through replicas_monitor.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "log.h"
#include "replicas.h"

#define TICK_MS 2 /* how often the calls waiting for a replay look again */
#define LSN_SQL "SELECT NULL::text, pg_current_wal_insert_lsn()::text"
#define FILL_CHECK_SQL "SELECT pulse.tag_generations($1::text[])::text"

struct pulse_replicas_waiter_t {
    h2o_linklist_t link; /* in rl->waiters */
    pulse_replicas_loop_t *rl;
    pulse_replicas_pick_t *pick;
    uint64_t required, deadline_ms;
    int64_t max_lag_ms;
    void (*cb)(void *);
    void *data;
};

struct pulse_replicas_loop_t {
    pulse_replicas_t *rs;
    h2o_loop_t *loop;
    pulse_pgpool_t *primary;
    size_t n;
    pulse_pgpool_t *pools[PULSE_REPLICAS_MAX];
    unsigned rr; /* round robin among equally loaded replicas */
    h2o_linklist_t waiters;
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick; /* linked while a call waits */
    pulse_replicas_stats_t stats;
};

/* ---- LSNs, tokens, stamps ---------------------------------------------------------------------------------------- */

static h2o_iovec_t trim(h2o_iovec_t v)
{
    while (v.len != 0 && (v.base[0] == ' ' || v.base[0] == '\t'))
        v.base++, v.len--;
    while (v.len != 0 && (v.base[v.len - 1] == ' ' || v.base[v.len - 1] == '\t'))
        v.len--;
    return v;
}

/* the LSN of the cookie `name` in one Cookie header's value, or 0 (absent or not an LSN) */
static uint64_t cookie_lsn(h2o_iovec_t value, const char *name)
{
    size_t nlen = strlen(name);
    uint64_t best = 0, lsn;
    while (value.len != 0) {
        const char *semi = memchr(value.base, ';', value.len);
        h2o_iovec_t pair = trim(h2o_iovec_init(value.base, semi != NULL ? (size_t)(semi - value.base) : value.len));
        if (pair.len > nlen && memcmp(pair.base, name, nlen) == 0 && pair.base[nlen] == '=' &&
            pulse_replicas_lsn_parse(pair.base + nlen + 1, pair.len - nlen - 1, &lsn) == 0 && lsn > best)
            best = lsn;
        if (semi == NULL)
            break;
        value.len -= (size_t)(semi - value.base) + 1;
        value.base = (char *)semi + 1;
    }
    return best;
}

int pulse_replicas_read_token(h2o_req_t *req, const char *cookie, pulse_replicas_pick_t *pick, const char **err)
{
    uint64_t best = 0, lsn;
    for (ssize_t i = -1; (i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("pulse-min-lsn"), i)) >= 0;) {
        h2o_iovec_t v = trim(req->headers.entries[i].value);
        if (pulse_replicas_lsn_parse(v.base, v.len, &lsn) != 0) {
            *err = "Pulse-Min-LSN must be an LSN as the Pulse-LSN header of a write gives it, such as 0/16B3748";
            return -1;
        }
        if (lsn > best)
            best = lsn;
    }
    if (cookie != NULL && cookie[0] != '\0')
        for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) >= 0;)
            if ((lsn = cookie_lsn(req->headers.entries[i].value, cookie)) > best)
                best = lsn;
    pick->min_lsn = best;
    return 0;
}

void pulse_replicas_stamp(pulse_replicas_t *rs, const char *const *tags, size_t ntags, const char *lsn_text)
{
    pulse_generations_t *stamps = pulse_replicas_stamps(rs);
    uint64_t lsn;
    if (stamps == NULL || lsn_text == NULL || pulse_replicas_lsn_parse(lsn_text, strlen(lsn_text), &lsn) != 0 || lsn == 0)
        return;
    for (size_t i = 0; i < ntags; i++)
        if (pulse_generations_set(stamps, tags[i], strlen(tags[i]), lsn) < 0)
            pulse_log_msg("error", NULL, "replicas: cannot stamp the cache tag %s (out of memory)", tags[i]);
}

void pulse_replicas_stamp_bumps(pulse_replicas_t *rs, const char *text, size_t len, const char *lsn_text)
{
    pulse_generations_t *stamps = pulse_replicas_stamps(rs);
    uint64_t lsn;
    if (stamps == NULL || text == NULL || lsn_text == NULL || pulse_replicas_lsn_parse(lsn_text, strlen(lsn_text), &lsn) != 0 ||
        lsn == 0)
        return;
    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos, *nl = memchr(line, '\n', len - pos), *tag;
        size_t llen = nl != NULL ? (size_t)(nl - line) : len - pos, tl;
        uint64_t gen;
        pos += llen + 1;
        /* keyed value tags are in no cache key: their entries carry their own state (keyed.h) */
        if (llen == 0 || pulse_generations_parse(line, llen, &tag, &tl, &gen) != 0 || pulse_keyed_is_value_tag(tag, tl))
            continue;
        if (pulse_generations_set(stamps, tag, tl, lsn) < 0)
            pulse_log_msg("error", NULL, "replicas: cannot stamp the cache tag %.*s (out of memory)", (int)tl, tag);
    }
}

uint64_t pulse_replicas_required_lsn(pulse_replicas_t *rs, const char *const *tags, size_t ntags)
{
    pulse_generations_t *stamps = pulse_replicas_stamps(rs);
    uint64_t buf[16], *v = ntags <= 16 ? buf : malloc(ntags * sizeof(*v)), max = 0;
    if (stamps == NULL || ntags == 0)
        goto out;
    if (v == NULL)
        return UINT64_MAX; /* out of memory: no replica qualifies */
    pulse_generations_get_many(stamps, tags, ntags, v);
    for (size_t i = 0; i < ntags; i++)
        if (v[i] > max)
            max = v[i];
out:
    if (v != buf)
        free(v);
    return max;
}

int pulse_replicas_generations_cover(const char *text, size_t len, const uint64_t *gens, size_t ntags)
{
    if (len < 2 || text[0] != '{' || text[len - 1] != '}')
        return -1;
    const char *p = text + 1, *end = text + len - 1;
    size_t i = 0;
    int covered = 1;
    if (p == end)
        return ntags == 0 ? 1 : -1;
    for (;;) {
        uint64_t g = 0;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9' && p - d < 19)
            g = g * 10 + (uint64_t)(*p++ - '0');
        if (p == d || i == ntags)
            return -1;
        if (g < gens[i])
            covered = 0;
        i++;
        if (p == end)
            break;
        if (*p++ != ',')
            return -1;
    }
    return i == ntags ? covered : -1;
}

/* ---- routing -------------------------------------------------------------------------------------------------------- */

int pulse_replicas_choose(const pulse_replicas_view_t *v, size_t n, int64_t max_lag_ms, uint64_t required, unsigned rr,
                          pulse_replicas_decision_t *why)
{
    int best = -1, usable = 0, within = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = (rr + k) % n;
        if (!v[i].usable)
            continue;
        usable = 1;
        if (v[i].lag_ms < 0 || v[i].lag_ms > max_lag_ms)
            continue;
        within = 1;
        if (v[i].replay < required)
            continue;
        if (best < 0 || v[i].load < v[best].load)
            best = (int)i;
    }
    if (best >= 0)
        *why = PULSE_REPLICAS_FRESH;
    else
        *why = !usable ? PULSE_REPLICAS_DOWN : !within ? PULSE_REPLICAS_LAGGING : PULSE_REPLICAS_MIN_LSN_PRIMARY;
    return best;
}

/* what the loop sees of its replicas now */
static void loop_views(pulse_replicas_loop_t *rl, pulse_replicas_view_t *v)
{
    for (size_t i = 0; i < rl->n; i++) {
        pulse_replicas_status_t st;
        pulse_replicas_status(rl->rs, i + 1, &st);
        v[i].usable = st.state == PULSE_REPLICAS_STATE_UP && pulse_pgpool_alive(rl->pools[i]) > 0;
        v[i].lag_ms = st.lag_ms;
        v[i].replay = st.lsn;
        v[i].load = pulse_pgpool_load(rl->pools[i]);
    }
}

static void waiter_free(pulse_replicas_loop_t *rl, pulse_replicas_waiter_t *w)
{
    h2o_linklist_unlink(&w->link);
    w->pick->_waiter = NULL;
    pulse_replicas_kick(rl->rs, -1);
    free(w);
    if (h2o_linklist_is_empty(&rl->waiters) && h2o_timeout_is_linked(&rl->tick))
        h2o_timeout_unlink(&rl->tick);
}

/* decides the first waiter that can be, and runs its callback; returns 0 when none could */
static int loop_decide_one(pulse_replicas_loop_t *rl, const pulse_replicas_view_t *v, uint64_t now, int all)
{
    for (h2o_linklist_t *l = rl->waiters.next; l != &rl->waiters; l = l->next) {
        pulse_replicas_waiter_t *w = H2O_STRUCT_FROM_MEMBER(pulse_replicas_waiter_t, link, l);
        pulse_replicas_decision_t why = PULSE_REPLICAS_MIN_LSN_PRIMARY;
        int i = all ? -1 : pulse_replicas_choose(v, rl->n, w->max_lag_ms, w->required, rl->rr, &why);
        if (i < 0 && !all && why == PULSE_REPLICAS_MIN_LSN_PRIMARY && now < w->deadline_ms)
            continue; /* still waiting */
        pulse_replicas_pick_t *pick = w->pick;
        pick->decided = 1;
        pick->server = i + 1;
        rl->rr++;
        rl->stats.decisions[i >= 0 ? PULSE_REPLICAS_MIN_LSN_WAIT : all ? PULSE_REPLICAS_MIN_LSN_PRIMARY : why]++;
        void (*cb)(void *) = w->cb;
        void *data = w->data;
        waiter_free(rl, w);
        cb(data); /* may end or cancel other waiters: the caller looks at the list again from its start */
        return 1;
    }
    return 0;
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    pulse_replicas_loop_t *rl = H2O_STRUCT_FROM_MEMBER(pulse_replicas_loop_t, tick, entry);
    pulse_replicas_view_t v[PULSE_REPLICAS_MAX];
    loop_views(rl, v);
    uint64_t now = h2o_now(rl->loop);
    while (loop_decide_one(rl, v, now, 0))
        ;
    if (!h2o_linklist_is_empty(&rl->waiters) && !h2o_timeout_is_linked(&rl->tick))
        h2o_timeout_link(rl->loop, &rl->tick_timeout, &rl->tick);
}

int pulse_replicas_route(pulse_replicas_loop_t *rl, pulse_replicas_pick_t *pick, const pulse_config_t *conf,
                         const pulse_route_t *route, int cache_fill, void (*cb)(void *), void *data)
{
    if (pick->decided || pick->_waiter != NULL)
        return pick->decided ? 0 : 1;
    pick->decided = 1;
    pick->server = 0;
    if (rl == NULL || !(route->cls == PULSE_CLASS_READ || route->cls == PULSE_CLASS_SEARCH))
        return 0;
    uint64_t required = pick->min_lsn;
    if (cache_fill) { /* a fill must not store the past of a generation in its key */
        uint64_t stamp = pulse_replicas_required_lsn(rl->rs, (const char *const *)route->tags, route->ntags);
        if (stamp > required)
            required = stamp;
    }
    pulse_replicas_view_t v[PULSE_REPLICAS_MAX];
    loop_views(rl, v);
    for (size_t i = 0; i < rl->n; i++)
        pulse_pgpool_set_queue_limit(rl->pools[i], conf->queue_limit);
    pulse_replicas_decision_t why;
    int i = pulse_replicas_choose(v, rl->n, conf->replica_max_lag_ms, required, rl->rr++, &why);
    if (i < 0 && why == PULSE_REPLICAS_MIN_LSN_PRIMARY && conf->replica_wait_ms > 0) {
        pulse_replicas_waiter_t *w = malloc(sizeof(*w));
        if (w != NULL) {
            *w = (pulse_replicas_waiter_t){.rl = rl,
                                           .pick = pick,
                                           .required = required,
                                           .deadline_ms = h2o_now(rl->loop) + (uint64_t)conf->replica_wait_ms,
                                           .max_lag_ms = conf->replica_max_lag_ms,
                                           .cb = cb,
                                           .data = data};
            h2o_linklist_insert(&rl->waiters, &w->link);
            pulse_replicas_kick(rl->rs, 1);
            if (!h2o_timeout_is_linked(&rl->tick))
                h2o_timeout_link(rl->loop, &rl->tick_timeout, &rl->tick);
            pick->decided = 0;
            pick->_waiter = w;
            return 1;
        }
    }
    pick->server = i + 1;
    rl->stats.decisions[why]++;
    return 0;
}

void pulse_replicas_cancel(pulse_replicas_pick_t *pick)
{
    if (pick->_waiter != NULL)
        waiter_free(pick->_waiter->rl, pick->_waiter);
}

/* ---- the loop's pools ----------------------------------------------------------------------------------------------- */

pulse_replicas_loop_t *pulse_replicas_loop_create(pulse_replicas_t *rs, int id, h2o_loop_t *loop, const pulse_config_t *conf,
                                                  pulse_pgpool_t *primary)
{
    if (rs == NULL)
        return NULL;
    pulse_replicas_loop_t *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return NULL;
    rl->rs = rs;
    rl->loop = loop;
    rl->primary = primary;
    h2o_linklist_init_anchor(&rl->waiters);
    h2o_timeout_init(loop, &rl->tick_timeout, TICK_MS);
    rl->tick.cb = on_tick;
    rl->stats.nservers = pulse_replicas_count(rs) + 1;
    /* replica i's connection string, as the monitor has it */
    const char *p = conf->replica_urls;
    for (size_t i = 0; i < pulse_replicas_count(rs); i++) {
        const char *end = strchr(p, '\n');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char *conninfo = strndup(p, len);
        pulse_replicas_status_t st;
        pulse_replicas_status(rs, i + 1, &st);
        if (conninfo == NULL || (rl->pools[i] = pulse_pgpool_create_server(id, st.name, conninfo, loop, conf)) == NULL) {
            free(conninfo);
            pulse_replicas_loop_destroy(rl);
            return NULL;
        }
        free(conninfo);
        rl->n = i + 1;
        p = end != NULL ? end + 1 : p + len;
    }
    return rl;
}

void pulse_replicas_loop_destroy(pulse_replicas_loop_t *rl)
{
    if (rl == NULL)
        return;
    /* the waiters go to the primary, then what the replicas' pools still hold fails over to it */
    while (loop_decide_one(rl, NULL, 0, 1))
        ;
    for (size_t i = 0; i < rl->n; i++)
        pulse_pgpool_destroy(rl->pools[i]);
    if (h2o_timeout_is_linked(&rl->tick))
        h2o_timeout_unlink(&rl->tick);
    h2o_timeout_dispose(rl->loop, &rl->tick_timeout);
    free(rl);
}

pulse_replicas_t *pulse_replicas_of(pulse_replicas_loop_t *rl)
{
    return rl != NULL ? rl->rs : NULL;
}

pulse_pgpool_t *pulse_replicas_pool(pulse_replicas_loop_t *rl, const pulse_replicas_pick_t *pick, pulse_pgpool_t *primary,
                                    const pulse_route_t *route, int cache_fill, pulse_pgquery_t *q, h2o_mem_pool_t *pool)
{
    if (rl == NULL)
        return primary;
    int server = pick->decided ? pick->server : 0;
    rl->stats.calls[server]++;
    if (server == 0) {
        /* a write answers its LSN: the after-statement reads it (with the tags' generations when the caller asked) */
        if ((route->cls == PULSE_CLASS_WRITE || route->cls == PULSE_CLASS_BATCH) && q->after_sql == NULL) {
            q->after_sql = LSN_SQL;
            q->after_param = NULL;
        }
        return primary;
    }
    pulse_generations_t *gens = pulse_replicas_generations(rl->rs);
    if (cache_fill && gens != NULL && route->ntags != 0) {
        char *lit = pulse_generations_text_array((const char *const *)route->tags, route->ntags);
        if (lit != NULL) {
            q->before_sql = FILL_CHECK_SQL;
            q->before_param = h2o_strdup(pool, lit, SIZE_MAX).base;
            free(lit);
        }
        /* out of memory: no check, and pulse_replicas_may_store refuses the answer for want of it */
    }
    return rl->pools[server - 1];
}

/* whether a replica's error may not be the primary's: the replica's connection or state, not the call */
static int replica_failure(const pulse_pgresult_t *res)
{
    if (res->status == PULSE_PG_UNAVAILABLE || res->status == PULSE_PG_BUSY)
        return 1;
    const char *s = res->sqlstate;
    if (res->status != PULSE_PG_ERROR || s == NULL || strlen(s) != 5)
        return 0;
    return memcmp(s, "08", 2) == 0                                 /* connection exception */
           || memcmp(s, "53", 2) == 0                              /* insufficient resources */
           || (memcmp(s, "57", 2) == 0 && strcmp(s, "57014") != 0) /* shutting down, cannot connect now (not a timeout) */
           || memcmp(s, "58", 2) == 0                              /* system error */
           || strcmp(s, "40001") == 0                              /* canceled by a conflict with recovery */
           || strcmp(s, "25006") == 0                              /* a read endpoint that writes: read-only transaction */
           || strcmp(s, "55000") == 0                              /* e.g. "recovery is in progress" */
           || strcmp(s, "0A000") == 0;                             /* not supported during recovery */
}

int pulse_replicas_retry(pulse_replicas_loop_t *rl, pulse_replicas_pick_t *pick, const pulse_pgresult_t *res)
{
    if (rl == NULL || !pick->decided || pick->server == 0 || pick->retried || (res != NULL && !replica_failure(res)))
        return 0;
    rl->stats.retries[pick->server]++;
    pick->server = 0;
    pick->retried = 1;
    return 1;
}

void pulse_replicas_wrote(pulse_replicas_loop_t *rl, h2o_req_t *req, const pulse_config_t *conf, const pulse_route_t *route,
                          const pulse_pgresult_t *res)
{
    uint64_t lsn;
    if (rl == NULL || res->status != PULSE_PG_OK || res->after2 == NULL ||
        !(route->cls == PULSE_CLASS_WRITE || route->cls == PULSE_CLASS_BATCH) ||
        pulse_replicas_lsn_parse(res->after2, res->after2_len, &lsn) != 0)
        return;
    char text[PULSE_REPLICAS_LSN_SIZE];
    pulse_replicas_lsn_format(lsn, text);
    /* before the generations move: no loop may see them without their stamp */
    if (res->after != NULL)
        pulse_replicas_stamp_bumps(rl->rs, res->after, res->after_len, text);
    h2o_iovec_t v = h2o_strdup(&req->pool, text, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("pulse-lsn"), 0, NULL, v.base, v.len);
    if (conf->replica_lsn_cookie[0] != '\0') {
        char cookie[256];
        int n = snprintf(cookie, sizeof(cookie), "%s=%s; Max-Age=%d; Path=/; HttpOnly; SameSite=Lax", conf->replica_lsn_cookie,
                         text, conf->replica_lsn_cookie_max_age);
        if (n > 0 && (size_t)n < sizeof(cookie)) {
            v = h2o_strdup(&req->pool, cookie, (size_t)n);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, v.base, v.len);
        }
    }
}

int pulse_replicas_may_store(pulse_replicas_loop_t *rl, const pulse_replicas_pick_t *pick, const pulse_route_t *route,
                             const pulse_pgresult_t *res)
{
    if (rl == NULL || !pick->decided || pick->server == 0)
        return 1;
    pulse_generations_t *gens = pulse_replicas_generations(pulse_replicas_of(rl));
    int ok = 1;
    if (gens != NULL && route->ntags != 0) {
        uint64_t buf[16], *cur = route->ntags <= 16 ? buf : malloc(route->ntags * sizeof(*cur));
        ok = cur != NULL && res->before != NULL;
        if (ok) {
            /* the process's generations now, not those of the key: they are at least as high (a bump in between only
               refuses an answer whose key is already out of use) */
            pulse_generations_get_many(gens, (const char *const *)route->tags, route->ntags, cur);
            ok = pulse_replicas_generations_cover(res->before, res->before_len, cur, route->ntags) == 1;
        }
        if (cur != buf)
            free(cur);
    }
    if (ok)
        rl->stats.fills_stored++;
    else
        rl->stats.fills_refused++;
    return ok;
}

const char *pulse_replicas_server_name(const pulse_replicas_loop_t *rl, const pulse_replicas_pick_t *pick)
{
    if (rl == NULL || !pick->decided || pick->server == 0)
        return "primary";
    pulse_replicas_status_t st;
    pulse_replicas_status(rl->rs, (size_t)pick->server, &st);
    return st.name;
}

void pulse_replicas_loop_stats(const pulse_replicas_loop_t *rl, pulse_replicas_stats_t *out)
{
    *out = rl->stats;
}

size_t pulse_replicas_ready_json(const pulse_replicas_t *rs, char *buf, size_t cap, int *all_up)
{
    size_t n = 0;
    *all_up = 1;
    if (cap != 0)
        buf[0] = '\0';
    if (rs == NULL)
        return 0;
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, ",\"replicas\":[");
    for (size_t i = 1; i <= pulse_replicas_count(rs); i++) {
        pulse_replicas_status_t st;
        char lsn[PULSE_REPLICAS_LSN_SIZE];
        pulse_replicas_status(rs, i, &st);
        pulse_replicas_lsn_format(st.lsn, lsn);
        int up = st.state == PULSE_REPLICAS_STATE_UP;
        *all_up &= up;
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0,
                              "%s{\"name\":\"%s\",\"state\":\"%s\",\"lag_ms\":%lld,\"lag_bytes\":%llu,\"replay_lsn\":\"%s\"}",
                              i > 1 ? "," : "", st.name, up ? "up" : "down", (long long)st.lag_ms, (unsigned long long)st.lag_bytes,
                              lsn);
    }
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "]");
    return n;
}
