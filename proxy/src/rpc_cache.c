/*
 * rpc_cache.c: the cache side of a /rpc call (cache.h describes the flow;
 * rpc_int.h the ownership rules): the key and the lookups (the loop's local
 * cache, then Redis), the single flight of misses within a loop and, through
 * a lock in Redis, across loops and proxies, stale-while-revalidate
 * refreshes in the background, and stale-if-error answers.
 *
 * The invalidation channel's health (generations.h, channel.h): a call
 * whose lookup finds the generations map not vouched for is `unverified`:
 * the key is computed all the same (what the database answers is stored
 * under it: an entry is never older than the generations of its key), but
 * no entry is served as a hit or stale-while-revalidate, and it joins no
 * flight (a flight under an unvouched key may have started before a write
 * the map has not heard of); it calls the database, and only stale-if-error
 * may answer with the entry Redis had.
 *
 * Keyed tags (keyed.h): an entry of a call with tag templates carries its
 * keyed state; a local or Redis hit, or another flight's entry found by
 * polling, is served only when pulse_keyed_current says none of its keyed
 * tags was bumped since; otherwise it is a miss (stale-if-error aside).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rpc_int.h"

/* a background refresh of a stale entry; leads the flight of its key */
typedef struct rpc_refresh_t {
    pulse_worker_t *w;
    pulse_pgjob_t *job;
    pulse_routes_t *routes; /* held: call.route points into it */
    h2o_mem_pool_t pool;    /* the call's copy, the result */
    pulse_call_t call;
    char key[PULSE_CACHE_KEY_SIZE];
    uint64_t ttl_ms, px_ms;
} rpc_refresh_t;

/* whether entry `e` of the call is current as far as its keyed tags go (keyed.h); counts those that are not */
static int rpc_keyed_current(rpc_req_t *r, const pulse_cache_entry_t *e)
{
    if (e->keyed.len == 0 || pulse_keyed_current(r->worker->keyed, e->keyed))
        return 1;
    pulse_metrics_observe_keyed_stale(r->worker->metrics);
    return 0;
}

/* the flight this request waited for ended: answer with the leader's entry, or call the database */
static void on_flight_done(void *data, const void *result)
{
    rpc_req_t *r = data;
    r->waiter = NULL;
    if (result == NULL) {
        rpc_call_database(r);
        return;
    }
    /* the leader's call may have started before a write to a keyed tag this request came after (the key is the same) */
    if (!rpc_keyed_current(r, result)) {
        rpc_call_database(r);
        return;
    }
    pulse_cache_entry_t e;
    rpc_entry_copy(&r->req->pool, &e, result);
    rpc_send_entry(r, &e, "miss", "flight");
}

/*
 * Single-flight across loops and proxies: the loop's leader of a key takes
 * the key's flight lock in Redis before calling the database.  When another
 * loop or proxy holds it, the leader polls the key every 10 ms until that
 * other call's entry appears, and hands it to its own waiters;
 * when the lock's time (the class's statement timeout and a margin) runs out
 * first, or Redis fails, it calls the database itself.
 */
static void rpc_poll(rpc_req_t *r);

static void on_poll_fetch(void *data, pulse_cache_lookup_t status, const pulse_cache_entry_t *entry)
{
    rpc_fetch_t *f = data;
    rpc_req_t *r = f->r;
    free(f);
    if (r == NULL)
        return;
    r->fetch = NULL;
    if (status == PULSE_CACHE_LOOKUP_HIT &&
        pulse_cache_classify(entry->created_at_ms, entry->ttl_ms, r->swr_ms, r->sie_ms, rpc_now_ms()) == PULSE_CACHE_FRESH) {
        if (!rpc_keyed_current(r, entry)) { /* the other call started before a write this one came after: no use waiting */
            rpc_call_database(r);
            return;
        }
        pulse_cache_entry_t e;
        rpc_entry_copy(&r->req->pool, &e, entry);
        pulse_lcache_put(r->worker->lcache, r->key, &e);
        rpc_flight_done(r, &e);
        rpc_send_entry(r, &e, "miss", "flight");
        return;
    }
    if (status == PULSE_CACHE_LOOKUP_UNAVAILABLE || rpc_now_ms() >= r->poll_until_ms) {
        rpc_call_database(r);
        return;
    }
    rpc_poll(r);
}

static void on_poll_timer(h2o_timeout_entry_t *entry)
{
    rpc_req_t *r = H2O_STRUCT_FROM_MEMBER(rpc_req_t, poll, entry);
    rpc_fetch_t *f = malloc(sizeof(*f));
    if (f == NULL) {
        rpc_call_database(r);
        return;
    }
    f->r = r;
    if (pulse_cache_fetch(r->worker->redis, r->key, on_poll_fetch, f) != 0) {
        free(f);
        rpc_call_database(r);
        return;
    }
    r->fetch = f;
}

/* waits 10 ms (the worker's flight_poll timer) before the next look */
static void rpc_poll(rpc_req_t *r)
{
    r->poll.cb = on_poll_timer;
    h2o_timeout_link(r->worker->loop, &r->worker->flight_poll, &r->poll);
}

/* a pending SET NX of the flight lock; `super.r` is NULL once the request went away */
typedef struct rpc_lock_t {
    rpc_fetch_t super;
    pulse_redis_t *redis;
    char key[PULSE_CACHE_KEY_SIZE];
    char owner[65];
} rpc_lock_t;

static void on_flight_lock(void *data, int taken)
{
    rpc_lock_t *l = data;
    rpc_req_t *r = l->super.r;
    if (r == NULL) { /* the request went away: give the lock back at once so that others need not wait it out */
        if (taken == 1)
            pulse_cache_unlock(l->redis, l->key, l->owner);
        free(l);
        return;
    }
    free(l);
    r->fetch = NULL;
    if (taken != 0) {
        r->locked = taken == 1;
        rpc_call_database(r);
        return;
    }
    r->poll_until_ms = rpc_now_ms() + (uint64_t)r->conf->timeout_ms[r->route->cls] + 500;
    rpc_poll(r);
}

void rpc_miss(rpc_req_t *r)
{
    if (r->unverified) {
        rpc_call_database(r);
        return;
    }
    if (r->worker->flights != NULL) {
        int rc = pulse_cache_flight_join(r->worker->flights, r->key, on_flight_done, r, &r->waiter);
        if (rc == 0)
            return;
        r->leader = rc == 1;
    }
    if (r->leader) {
        rpc_lock_t *l = malloc(sizeof(*l));
        if (l != NULL) {
            l->super.r = r;
            l->redis = r->worker->redis;
            memcpy(l->key, r->key, sizeof(l->key));
            memcpy(l->owner, r->request_id, sizeof(l->owner));
            if (pulse_cache_lock(r->worker->redis, r->key, r->request_id, (uint64_t)r->conf->timeout_ms[r->route->cls] + 500,
                                 on_flight_lock, l) == 0) {
                r->fetch = &l->super;
                return;
            }
            free(l);
        }
    }
    rpc_call_database(r);
}

static void rpc_refresh_free(rpc_refresh_t *rf)
{
    h2o_mem_clear_pool(&rf->pool);
    pulse_router_release(rf->routes);
    free(rf);
}

static void on_refresh_result(void *data, const pulse_pgresult_t *res)
{
    rpc_refresh_t *rf = data;
    pulse_cache_entry_t e, *result = NULL;
    if (res->status == PULSE_PG_ERROR)
        pulse_metrics_observe_pg_error(rf->w->metrics, res->sqlstate);
    else if (res->status == PULSE_PG_UNAVAILABLE)
        pulse_metrics_observe_pg_unavailable(rf->w->metrics);
    if (res->status == PULSE_PG_OK) {
        h2o_iovec_t body = res->body != NULL ? h2o_strdup(&rf->pool, res->body, res->body_len) : h2o_iovec_init(H2O_STRLIT("null"));
        if (rpc_store(rf->w, &rf->pool, rf->call.route, rf->key, body, rpc_next_link(&rf->pool, &rf->call, body), res, rf->ttl_ms,
                      rf->px_ms, &e) == 0)
            result = &e;
    }
    if (rf->w->flights != NULL)
        (void)pulse_cache_flight_finish(rf->w->flights, rf->key, result);
    rpc_refresh_free(rf);
}

static void on_refresh_join(void *data, const void *result)
{
    (void)data, (void)result; /* never runs: the refresh leaves at once when a flight is open */
}

/* starts the background refresh of a stale entry, unless a call for its key already runs */
static void rpc_refresh_start(rpc_req_t *r)
{
    pulse_worker_t *w = r->worker;
    pulse_cache_waiter_t *waiter;
    if (w->flights == NULL || w->pgpool == NULL)
        return;
    int rc = pulse_cache_flight_join(w->flights, r->key, on_refresh_join, NULL, &waiter);
    if (rc == 0)
        pulse_cache_flight_leave(waiter);
    if (rc != 1)
        return;
    rpc_refresh_t *rf = calloc(1, sizeof(*rf));
    if (rf == NULL) {
        (void)pulse_cache_flight_finish(w->flights, r->key, NULL);
        return;
    }
    rf->w = w;
    rf->routes = pulse_router_acquire();
    memcpy(rf->key, r->key, sizeof(rf->key));
    rf->ttl_ms = r->ttl_ms;
    rf->px_ms = pulse_cache_redis_ttl_ms(r->ttl_ms, r->swr_ms, r->sie_ms);
    h2o_mem_init_pool(&rf->pool);
    /* the copy of the call points into the route table the refresh holds: only when it is still the request's one (a
       reload in between: no refresh, the entry expires or the next miss replaces it) */
    if (rf->routes != r->routes) {
        (void)pulse_cache_flight_finish(w->flights, r->key, NULL);
        if (rf->routes != NULL)
            pulse_router_release(rf->routes);
        h2o_mem_clear_pool(&rf->pool);
        free(rf);
        return;
    }
    const pulse_route_t *route = r->route;
    rf->call = r->call;
    rf->call.route = route;
    rf->call.values = h2o_mem_alloc_pool(&rf->pool, sizeof(char *) * (route->nargs + 1));
    rf->call.given = h2o_mem_alloc_pool(&rf->pool, route->nargs + 1);
    for (size_t i = 0; i < route->nargs; i++) {
        rf->call.values[i] = r->call.values[i] != NULL ? h2o_strdup(&rf->pool, r->call.values[i], SIZE_MAX).base : NULL;
        rf->call.given[i] = r->call.given[i];
    }
    pulse_pgquery_t q = {.cls = r->route->cls,
                         .tenant = r->tenant,
                         .request_id = r->request_id,
                         .statement_timeout_ms = r->conf->timeout_ms[r->route->cls],
                         .stmt_name = r->call.stmt_name,
                         .sql = r->call.sql,
                         .nparams = r->call.nparams,
                         .params = r->call.params};
    pulse_pgstatus_t st;
    if (pulse_pgpool_submit(w->pgpool, &q, on_refresh_result, rf, &rf->job, &st) != 0) {
        (void)pulse_cache_flight_finish(w->flights, rf->key, NULL);
        rpc_refresh_free(rf);
    }
}

/* step 4 continued: the answer of Redis */
static void on_cache_fetch(void *data, pulse_cache_lookup_t status, const pulse_cache_entry_t *entry)
{
    rpc_fetch_t *f = data;
    rpc_req_t *r = f->r;
    free(f);
    if (r == NULL) /* the request went away */
        return;
    r->fetch = NULL;
    r->trace.cache_end_ns = pulse_trace_now_ns();
    if (status == PULSE_CACHE_LOOKUP_HIT && r->unverified) {
        /* the entry cannot be vouched for: only stale-if-error may serve it */
        if (pulse_cache_classify(entry->created_at_ms, entry->ttl_ms, r->swr_ms, r->sie_ms, rpc_now_ms()) != PULSE_CACHE_EXPIRED) {
            rpc_entry_copy(&r->req->pool, &r->stale, entry);
            r->has_stale = 1;
        }
        rpc_call_database(r);
        return;
    }
    if (status == PULSE_CACHE_LOOKUP_HIT) {
        pulse_cache_entry_t e;
        pulse_cache_freshness_t f = pulse_cache_classify(entry->created_at_ms, entry->ttl_ms, r->swr_ms, r->sie_ms, rpc_now_ms());
        /* a keyed tag it read was bumped since: as good as expired, but for stale-if-error */
        if ((f == PULSE_CACHE_FRESH || f == PULSE_CACHE_STALE) && !rpc_keyed_current(r, entry))
            f = PULSE_CACHE_STALE_IF_ERROR;
        switch (f) {
        case PULSE_CACHE_FRESH:
            rpc_entry_copy(&r->req->pool, &e, entry);
            pulse_lcache_put(r->worker->lcache, r->key, &e);
            rpc_send_entry(r, &e, "hit", "cache");
            return;
        case PULSE_CACHE_STALE:
            rpc_entry_copy(&r->req->pool, &e, entry);
            rpc_refresh_start(r);
            rpc_send_entry(r, &e, "stale", "cache-stale");
            return;
        case PULSE_CACHE_STALE_IF_ERROR:
            rpc_entry_copy(&r->req->pool, &r->stale, entry);
            r->has_stale = 1;
            break;
        case PULSE_CACHE_EXPIRED:
            break;
        }
    }
    rpc_miss(r);
}

int rpc_call_key(h2o_mem_pool_t *pool, const pulse_call_t *call, const char *tenant, const uint64_t *gens, char *key)
{
    const pulse_route_t *rt = call->route;
    pulse_cache_arg_t *args = h2o_mem_alloc_pool(pool, sizeof(*args) * (rt->nargs + 1));
    size_t nargs = 0;
    for (size_t i = 0; i < rt->nargs; i++) {
        if (!call->given[i])
            continue;
        const char *v = call->values[i];
        args[nargs++] = (pulse_cache_arg_t){rt->arg_names[i], v, v != NULL ? strlen(v) : 0};
    }
    /* the function's identity too: an endpoint moved to another function does not serve the old one's entries */
    size_t eplen = strlen(rt->name) + strlen(rt->schema) + strlen(rt->function) + 3;
    char *ep = h2o_mem_alloc_pool(pool, eplen);
    snprintf(ep, eplen, "%s=%s.%s", rt->name, rt->schema, rt->function);
    return pulse_cache_key(key, tenant, ep, args, nargs, (const char *const *)rt->tags, gens, gens != NULL ? rt->ntags : 0) < 0 ? -1
                                                                                                                                : 0;
}

int rpc_cache_lookup(rpc_req_t *r)
{
    pulse_worker_t *w = r->worker;
    const pulse_route_t *rt = r->route;
    if (w->redis == NULL || rt->ttl_ms <= 0 || !(rt->cls == PULSE_CLASS_READ || rt->cls == PULSE_CLASS_SEARCH))
        return -1;
    h2o_mem_pool_t *pool = &r->req->pool;
    uint64_t *gens = h2o_mem_alloc_pool(pool, sizeof(*gens) * (rt->ntags + 1));
    /* trust first, then the generations: vouched for now, they hold every bump committed before now - max lag */
    r->unverified = !pulse_generations_vouched(w->gens, pulse_generations_now_us());
    pulse_generations_get_many(w->gens, (const char *const *)rt->tags, rt->ntags, gens);
    if (rpc_call_key(pool, &r->call, r->tenant, gens, r->key) != 0) {
        r->key[0] = '\0';
        return -1;
    }
    r->ttl_ms = (uint64_t)rt->ttl_ms;
    r->swr_ms = (uint64_t)r->conf->swr_ms[rt->cls];
    r->sie_ms = (uint64_t)r->conf->sie_ms[rt->cls];
    const pulse_cache_entry_t *local = NULL;
    if (r->unverified)
        pulse_metrics_observe_unverified(w->metrics);
    else if ((local = pulse_lcache_get(w->lcache, r->key, rpc_now_ms())) != NULL && !rpc_keyed_current(r, local))
        local = NULL; /* Redis may hold a newer one */
    if (local != NULL) {
        pulse_cache_entry_t e;
        rpc_entry_copy(pool, &e, local);
        rpc_send_entry(r, &e, "hit", "local");
        return 2;
    }
    rpc_fetch_t *f = malloc(sizeof(*f));
    if (f == NULL)
        return 1;
    f->r = r;
    r->trace.cache_start_ns = pulse_trace_now_ns();
    if (pulse_cache_fetch(w->redis, r->key, on_cache_fetch, f) != 0) {
        r->trace.cache_end_ns = pulse_trace_now_ns();
        free(f);
        return 1; /* Redis is down: a miss */
    }
    r->fetch = f;
    return 0;
}
