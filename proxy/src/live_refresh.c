/*
 * live_refresh.c: the refreshes of live subscription keys (live.h), on the
 * loop that owns each key: the call in the key's tenant scope (at most one
 * in flight per key, at most one started per live_min_interval_ms, made
 * again after a failure for lack of a database), the cache fill a miss
 * would make, the index of the key's keyed tags from its result, the check
 * that the result is not older than a keyed bump notified before the index
 * knew the tag, the events its streams get, and a span per refresh.
 *
 * Threads and locks: as live.c says; everything here runs on the owner's
 * loop and takes live_lock for the key's shared fields.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "live_int.h"
#include "log.h"
#include "problem.h"

/* an error event: `status` and its detail */
static live_event_t *live_event_error(int status, const char *detail, uint64_t seq)
{
    size_t len = strlen(detail);
    live_event_t *e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    atomic_init(&e->refs, 1);
    e->status = status;
    e->seq = seq;
    e->len = len;
    memcpy(e->text, detail, len + 1);
    return e;
}

/* a result event: its ETag, and the body as data lines (a line break of the body, CR, LF or CRLF, starts a new one) */
static live_event_t *live_event_result(const pulse_cache_entry_t *e, uint64_t notified_us)
{
    static const char head[] = "event: result\nid: ", data[] = "data: ";
    size_t lines = 1;
    for (size_t i = 0; i < e->body.len; i++)
        if (e->body.base[i] == '\n' || (e->body.base[i] == '\r' && (i + 1 == e->body.len || e->body.base[i + 1] != '\n')))
            lines++;
    size_t cap = sizeof(head) + e->etag.len + 1 + lines * (sizeof(data) + 1) + e->body.len + 2;
    live_event_t *ev = calloc(1, sizeof(*ev) + cap);
    if (ev == NULL || e->etag.len >= sizeof(ev->etag)) {
        free(ev);
        return NULL;
    }
    atomic_init(&ev->refs, 1);
    ev->status = 200;
    ev->notified_us = notified_us;
    memcpy(ev->etag, e->etag.base, e->etag.len);
    char *p = ev->text;
    memcpy(p, head, sizeof(head) - 1), p += sizeof(head) - 1;
    memcpy(p, e->etag.base, e->etag.len), p += e->etag.len;
    *p++ = '\n';
    memcpy(p, data, sizeof(data) - 1), p += sizeof(data) - 1;
    for (size_t i = 0; i < e->body.len; i++) {
        char c = e->body.base[i];
        if (c != '\n' && c != '\r') {
            *p++ = c;
            continue;
        }
        if (c == '\r' && i + 1 < e->body.len && e->body.base[i + 1] == '\n')
            i++;
        *p++ = '\n';
        memcpy(p, data, sizeof(data) - 1), p += sizeof(data) - 1;
    }
    *p++ = '\n';
    *p++ = '\n';
    ev->len = (size_t)(p - ev->text);
    return ev;
}

void live_refresh_free(live_refresh_t *rf)
{
    h2o_mem_clear_pool(&rf->pool);
    if (rf->routes != NULL)
        pulse_router_release(rf->routes);
    free(rf);
}

/* the interval after a refresh started (or the retry after a failed one) is over: refresh again when dirty */
void live_refresh_on_timer(h2o_timeout_entry_t *entry)
{
    live_key_t *k = H2O_STRUCT_FROM_MEMBER(live_key_t, timer, entry);
    pulse_live_loop_t *l = NULL;
    pthread_mutex_lock(&live_lock);
    l = live_owner(k);
    int go = l != NULL && !k->removed && k->dirty && k->refresh == NULL;
    if (!go && k->refresh == NULL)
        k->scheduled = 0;
    pthread_mutex_unlock(&live_lock);
    if (go)
        live_refresh_start(l, k);
    pthread_mutex_lock(&live_lock);
    live_key_unref(k); /* the timer's */
    pthread_mutex_unlock(&live_lock);
}

/* the key's streams get `err` (the refresh failed with `status`): one not started yet answers it; a started one ends with
   it when it is final (4xx), and keeps its last result otherwise (the refresh is made again) */
static void refresh_failed(live_refresh_t *rf, int status, const char *detail)
{
    live_key_t *k = rf->key;
    pthread_mutex_lock(&live_lock);
    live_event_t *err = live_event_error(status, detail, ++k->errors);
    if (err != NULL && !k->removed && (status < 500 || k->waiting != 0)) {
        live_event_release(k->error);
        k->error = err;
        live_key_broadcast(k);
    } else {
        live_event_release(err);
    }
    if (status >= 500 && !k->removed) {
        k->dirty = 1;
        if (h2o_timeout_is_linked(&k->timer))
            h2o_timeout_unlink(&k->timer);
        else
            k->refs++;
        h2o_timeout_link(rf->loop->w->loop, &rf->loop->retry, &k->timer);
    }
    pthread_mutex_unlock(&live_lock);
}

/* the keyed tags of a keyed state (keyed.h's format: the snapshot and a NUL, then per tag 8 bytes of generation, 2 of
   length and the tag) appended to `names`; -1 when malformed */
static int keyed_names(h2o_iovec_t state, live_name_t *names, size_t cap, size_t *n)
{
    const char *p = memchr(state.base, '\0', state.len), *end = state.base + state.len;
    if (p == NULL)
        return -1;
    for (p++; p < end;) {
        if (end - p < 10 || *n == cap)
            return -1;
        size_t len = ((size_t)(unsigned char)p[8] << 8) | (unsigned char)p[9];
        if ((size_t)(end - p - 10) < len)
            return -1;
        names[(*n)++] = (live_name_t){p + 10, len, 0};
        p += 10 + len;
    }
    return 0;
}

/* a result: the index follows its keyed tags, and a changed one (or one streams wait for) goes to every loop */
static void refresh_succeeded(live_refresh_t *rf, const pulse_cache_entry_t *e, int has_state)
{
    live_key_t *k = rf->key;
    const pulse_route_t *rt = rf->call.route;
    live_event_t *ev = live_event_result(e, rf->notified_us);
    size_t cap = 2 * rt->ntags + (has_state ? e->keyed.len / 10 : 0) + 1, n = 0;
    live_name_t *names = malloc(cap * sizeof(*names));
    if (ev == NULL || names == NULL) {
        free(names);
        live_event_release(ev);
        refresh_failed(rf, 503, "out of memory");
        return;
    }
    int keyed_ok = rt->keyed_sql == NULL || (has_state && keyed_names(e->keyed, names, cap, &n) == 0);
    if (!keyed_ok)
        n = 0;
    /* a keyed call whose keyed tags are unknown is woken by every value of its templates' families (their epochs) */
    for (size_t i = 0; i < rt->ntags; i++) {
        size_t len = strlen(rt->tags[i]);
        names[n++] = (live_name_t){rt->tags[i], len, 0};
        if (!keyed_ok && len > 2 && memcmp(rt->tags[i] + len - 2, "=*", 2) == 0)
            names[n++] = (live_name_t){rt->tags[i], len - 2, 1};
    }
    pthread_mutex_lock(&live_lock);
    int changed = 0;
    if (!k->removed) {
        if (live_key_index(k, names, n) != 0)
            k->dirty = 1;
        changed = k->result == NULL || strcmp(k->result->etag, ev->etag) != 0;
        if (changed || k->error != NULL) {
            live_event_release(k->result);
            k->result = ev;
            ev = NULL;
            live_event_release(k->error);
            k->error = NULL;
        }
        if (changed || k->waiting != 0)
            live_key_broadcast(k);
    }
    unsigned shared = k->nstreams > 0 ? k->nstreams - 1 : 0;
    pthread_mutex_unlock(&live_lock);
    live_event_release(ev);
    free(names);
    pulse_metrics_live_refresh(rf->loop->w->metrics, changed ? PULSE_METRICS_LIVE_CHANGED : PULSE_METRICS_LIVE_UNCHANGED, shared);
    /* a keyed tag bumped before the index knew it: the result may be older than that bump (the resync after a lapse
       refreshes every key: unvouched results are not checked) */
    if (rt->keyed_sql != NULL && keyed_ok && pulse_generations_vouched(live_gens, pulse_generations_now_us()) &&
        !pulse_keyed_current(live_keyed, e->keyed)) {
        pthread_mutex_lock(&live_lock);
        if (!k->removed && !k->dirty) {
            k->dirty = 1;
            k->dirty_us = rf->notified_us;
        }
        pthread_mutex_unlock(&live_lock);
    }
}

static void refresh_span(live_refresh_t *rf, int status, const char *sqlstate);

/* the refresh ended (`res`: the database's answer, or a made-up one when it could not be sent) */
static void refresh_done(live_refresh_t *rf, const pulse_pgresult_t *res)
{
    live_key_t *k = rf->key;
    pulse_live_loop_t *l = rf->loop;
    pulse_worker_t *w = l->w;
    int status = 200;
    if (res->status == PULSE_PG_OK) {
        pulse_config_t *conf = pulse_config_acquire();
        const pulse_route_t *rt = rf->call.route;
        h2o_iovec_t body = res->body != NULL ? h2o_strdup(&rf->pool, res->body, res->body_len) : h2o_iovec_init(H2O_STRLIT("null"));
        uint64_t px =
            pulse_cache_redis_ttl_ms((uint64_t)rt->ttl_ms, (uint64_t)conf->swr_ms[rt->cls], (uint64_t)conf->sie_ms[rt->cls]);
        pulse_cache_entry_t e;
        /* stored as a miss stores it (when the endpoint is cached), under the key of the generations read before the call */
        int has_state = rpc_store(w, &rf->pool, rt, rf->cache_key[0] != '\0' ? rf->cache_key : NULL, body,
                                  rpc_next_link(&rf->pool, &rf->call, body), res, (uint64_t)rt->ttl_ms, px, &e) == 0;
        pulse_config_release(conf);
        refresh_succeeded(rf, &e, has_state && e.keyed.len != 0);
    } else {
        const char *detail;
        if (res->status == PULSE_PG_ERROR) {
            pulse_metrics_observe_pg_error(w->metrics, res->sqlstate);
            status = pulse_problem_status_for_sqlstate(res->sqlstate);
            detail = pulse_problem_detail_is_public(status) && res->message != NULL ? res->message
                     : status == 503                                                ? "the database is unavailable, retry later"
                                                                                    : "internal error; see the proxy log";
            if (!pulse_problem_detail_is_public(status))
                pulse_log_msg("error", rf->request_id, "live %s: SQLSTATE %s: %s", k->endpoint,
                              res->sqlstate != NULL ? res->sqlstate : "-", res->message != NULL ? res->message : "-");
        } else {
            if (res->status == PULSE_PG_UNAVAILABLE)
                pulse_metrics_observe_pg_unavailable(w->metrics);
            status = 503;
            detail =
                res->status == PULSE_PG_BUSY ? "the proxy is overloaded, retry later" : "the database is unavailable, retry later";
        }
        pulse_metrics_live_refresh(w->metrics, PULSE_METRICS_LIVE_FAILED, 0);
        refresh_failed(rf, status, detail);
    }
    refresh_span(rf, status, res->sqlstate);
    pthread_mutex_lock(&live_lock);
    k->refresh = NULL;
    int again = !k->removed && !l->stopping && k->dirty && !h2o_timeout_is_linked(&k->timer);
    if (!again && !h2o_timeout_is_linked(&k->timer))
        k->scheduled = 0;
    pthread_mutex_unlock(&live_lock);
    live_refresh_free(rf);
    if (again)
        live_refresh_start(l, k);
    pthread_mutex_lock(&live_lock);
    live_key_unref(k); /* the refresh's */
    pthread_mutex_unlock(&live_lock);
}

static void refresh_submit(live_refresh_t *rf);

static void on_refresh_result(void *data, const pulse_pgresult_t *res)
{
    live_refresh_t *rf = data;
    pulse_replicas_loop_t *rl = rf->loop->w->replicas;
    rf->job = NULL;
    /* a replica failed, or answered from before the generations this proxy knows (the cache fill's check): the primary
       makes the call again */
    if (pulse_replicas_retry(rl, &rf->pick, res) ||
        (res->status == PULSE_PG_OK && !pulse_replicas_may_store(rl, &rf->pick, rf->call.route, res) &&
         pulse_replicas_retry(rl, &rf->pick, NULL))) {
        refresh_submit(rf);
        return;
    }
    refresh_done(rf, res);
}

/* a failure before the call was sent */
static void refresh_abort(live_refresh_t *rf, pulse_pgstatus_t st, const char *msg)
{
    pulse_pgresult_t res = {.status = st, .message = msg, .sqlstate = st == PULSE_PG_ERROR ? "22023" : NULL};
    refresh_done(rf, &res);
}

/* the call of `k` (dirty, no refresh in flight, its timer not linked), in its tenant's scope */
void live_refresh_start(pulse_live_loop_t *l, live_key_t *k)
{
    k->timer.cb = live_refresh_on_timer; /* the interval and retry timers of the key: linked only here */
    pulse_worker_t *w = l->w;
    live_refresh_t *rf = calloc(1, sizeof(*rf));
    pthread_mutex_lock(&live_lock);
    if (rf == NULL || k->removed || l->stopping) {
        if (!h2o_timeout_is_linked(&k->timer))
            k->scheduled = 0;
        pthread_mutex_unlock(&live_lock);
        free(rf);
        return;
    }
    rf->key = k;
    rf->loop = l;
    rf->notified_us = k->dirty_us;
    rf->streams = k->nstreams;
    k->dirty = 0;
    k->dirty_us = 0;
    k->scheduled = 1;
    k->refresh = rf;
    k->refs += 2; /* the refresh's, the timer's */
    h2o_timeout_link(w->loop, &l->interval, &k->timer);
    pthread_mutex_unlock(&live_lock);

    h2o_mem_init_pool(&rf->pool);
    rf->start_ns = pulse_trace_now_ns();
    pulse_trace_new_ids(rf->trace_id, rf->span_id);
    snprintf(rf->request_id, sizeof(rf->request_id), "live-%d-%llu", l->index, (unsigned long long)++l->seq);
    rf->routes = pulse_router_acquire();
    const pulse_route_t *rt = rf->routes != NULL ? pulse_router_find(rf->routes, k->endpoint, strlen(k->endpoint)) : NULL;
    char *err = NULL;
    if (rt == NULL || !(rt->cls == PULSE_CLASS_READ || rt->cls == PULSE_CLASS_SEARCH) || rt->ntags == 0) {
        pulse_pgresult_t res = {.status = PULSE_PG_ERROR, .sqlstate = "42883", .message = "the endpoint is no longer a live one"};
        refresh_done(rf, &res);
        return;
    }
    pulse_router_call_init(&rf->pool, &rf->call, rt);
    pulse_config_t *conf = pulse_config_acquire();
    if ((k->query_len != 0 &&
         pulse_router_args_from_query(&rf->pool, &rf->call, k->query, k->query_len, conf->max_args, &err) != 0) ||
        pulse_router_prepare(&rf->pool, &rf->call, &err) != 0) {
        pulse_config_release(conf);
        refresh_abort(rf, PULSE_PG_ERROR, err);
        return;
    }
    if (w->redis != NULL && rt->ttl_ms > 0) { /* a cached endpoint: the key of the generations read before the call */
        uint64_t *g = h2o_mem_alloc_pool(&rf->pool, sizeof(*g) * (rt->ntags + 1));
        pulse_generations_get_many(live_gens, (const char *const *)rt->tags, rt->ntags, g);
        if (rpc_call_key(&rf->pool, &rf->call, k->tenant, g, rf->cache_key) != 0)
            rf->cache_key[0] = '\0';
    }
    pulse_config_release(conf);
    /* where it runs (replicas.h): a refresh is a cache fill, so a replica only once it replayed the stamps of the route's
       tags, and the stamps of the notifications that marked the key (keyed value tags have no stamp of their own) */
    pthread_mutex_lock(&live_lock);
    uint64_t need = k->need_lsn;
    pthread_mutex_unlock(&live_lock);
    if (need == UINT64_MAX) {
        rf->pick.decided = 1;
        rf->pick.server = 0;
    } else {
        rf->pick.min_lsn = need;
    }
    refresh_submit(rf);
}

static void refresh_submit_cb(void *data)
{
    refresh_submit(data);
}

/* sends the prepared call of `rf` to its server (once it is decided: pulse_replicas_route may wait for a replica) */
static void refresh_submit(live_refresh_t *rf)
{
    pulse_worker_t *w = rf->loop->w;
    live_key_t *k = rf->key;
    const pulse_route_t *rt = rf->call.route;
    pulse_config_t *conf = pulse_config_acquire();
    if (pulse_replicas_route(w->replicas, &rf->pick, conf, rt, 1, refresh_submit_cb, rf) != 0) {
        pulse_config_release(conf);
        return;
    }
    char trace_id[33];
    pulse_trace_hex(rf->trace_id, 16, trace_id);
    pulse_pgquery_t q = {.cls = rt->cls,
                         .tenant = k->tenant,
                         .request_id = rf->request_id,
                         .trace_id = trace_id,
                         .statement_timeout_ms = conf->timeout_ms[rt->cls],
                         .stmt_name = rf->call.stmt_name,
                         .sql = rf->call.sql,
                         .nparams = rf->call.nparams,
                         .params = rf->call.params};
    pulse_config_release(conf);
    pulse_pgpool_t *pool = pulse_replicas_pool(w->replicas, &rf->pick, w->pgpool, rt, 1, &q, &rf->pool);
    pulse_pgstatus_t st = PULSE_PG_UNAVAILABLE;
    if (pool != NULL && pulse_pgpool_submit(pool, &q, on_refresh_result, rf, &rf->job, &st) == 0)
        return;
    if (pulse_replicas_retry(w->replicas, &rf->pick, NULL)) { /* a replica's pool refused it: the primary */
        refresh_submit(rf);
        return;
    }
    refresh_abort(rf, st, "the call could not be queued");
}

/* a span per refresh, exported as a request's are: sampled, failed or slow */
static void refresh_span(live_refresh_t *rf, int status, const char *sqlstate)
{
    pulse_worker_t *w = rf->loop->w;
    if (w->tracer == NULL)
        return;
    pulse_config_t *conf = pulse_config_acquire();
    uint64_t end = pulse_trace_now_ns();
    const pulse_route_t *rt = rf->call.route;
    int cls = rt != NULL ? rt->cls : PULSE_CLASS_READ;
    uint64_t slow_ms = conf->trace_slow_ms > 0 ? (uint64_t)conf->trace_slow_ms : (uint64_t)conf->slo_p99_ms[cls];
    int keep = pulse_trace_sample(rf->trace_id, (uint32_t)conf->trace_sample_ppm) || status >= 500 ||
               (end - rf->start_ns) / 1000000 >= slow_ms;
    pulse_config_release(conf);
    if (!keep)
        return;
    pulse_span_t sp;
    pulse_span_start(&sp, "live refresh", PULSE_SPAN_CLIENT, rf->trace_id, NULL, rf->start_ns);
    memcpy(sp.span_id, rf->span_id, sizeof(sp.span_id));
    pulse_span_set_str(&sp, "pulse.endpoint", rf->key->endpoint);
    pulse_span_set_str(&sp, "pulse.class", pulse_config_class_name((pulse_class_t)cls));
    pulse_span_set_str(&sp, "pulse.tenant", rf->key->tenant);
    pulse_span_set_str(&sp, "pulse.request_id", rf->request_id);
    pulse_span_set_int(&sp, "pulse.live.streams", rf->streams);
    pulse_span_set_int(&sp, "http.response.status_code", status);
    if (rf->call.sql != NULL)
        pulse_span_set_str(&sp, "db.statement", rf->call.sql);
    if (sqlstate != NULL)
        pulse_span_set_str(&sp, "db.response.status_code", sqlstate);
    pulse_span_set_status(&sp, status >= 500 ? PULSE_SPAN_STATUS_ERROR : PULSE_SPAN_STATUS_OK,
                          status >= 500 ? "refresh failed" : NULL);
    pulse_span_end(&sp, end);
    (void)pulse_tracer_submit(w->tracer, &sp, 1);
}
