/*
 * rpc_db.c: the database side of a /rpc call: the call through the loop's
 * pool, what its answer becomes (a cache entry stored in Redis and the
 * loop's local cache, with the keyed state of a keyed call; a problem
 * document mapped from its SQLSTATE; a stale-if-error entry when the
 * database fails), the end of the call's flight, and what a write tells
 * the generations (pulse.last_bumps) before it is answered.
 */
#include <stdio.h>
#include <string.h>
#include "log.h"
#include "problem.h"
#include "rpc_int.h"

void rpc_flight_done(rpc_req_t *r, const pulse_cache_entry_t *result)
{
    if (!r->leader)
        return;
    r->leader = 0;
    if (r->locked) {
        r->locked = 0;
        pulse_cache_unlock(r->worker->redis, r->key, r->request_id);
    }
    if (r->worker->flights != NULL)
        (void)pulse_cache_flight_finish(r->worker->flights, r->key, result);
}

int rpc_serve_stale(rpc_req_t *r)
{
    if (!r->has_stale)
        return 0;
    rpc_flight_done(r, NULL);
    rpc_send_entry(r, &r->stale, "stale", "stale-if-error");
    return 1;
}

int rpc_store(pulse_worker_t *w, h2o_mem_pool_t *pool, const pulse_route_t *route, const char *key, h2o_iovec_t body,
              const char *link, const pulse_pgresult_t *res, uint64_t ttl_ms, uint64_t px_ms, pulse_cache_entry_t *e)
{
    h2o_iovec_t lv = link != NULL ? h2o_iovec_init(link, strlen(link)) : h2o_iovec_init(NULL, 0);
    if (pulse_cache_entry_init(pool, e, 200, h2o_iovec_init(H2O_STRLIT("application/json")), body, lv, rpc_now_ms(), ttl_ms) != 0) {
        /* gzip failed: the entry is still usable, without a gzip variant */
    }
    if (route->keyed_sql != NULL &&
        (res->state == NULL || pulse_keyed_state_from_json(pool, res->state, res->state_len, &e->keyed) != 0 ||
         e->keyed.len == 0)) {
        /* a keyed answer that does not say what it read cannot be vouched for later: answered, not stored */
        pulse_log_msg("error", NULL, "%s: no usable pulse.keyed_state in the answer; not cached", route->name);
        return -1;
    }
    if (key == NULL)
        return 0;
    if (w->redis != NULL && pulse_cache_store(w->redis, pool, key, e, px_ms) != 0) {
        /* Redis is down: answered from the database all the same */
    }
    pulse_lcache_put(w->lcache, key, e);
    return 0;
}

/* step 5 → 6 → 7 */
static void on_db_result(void *data, const pulse_pgresult_t *res)
{
    rpc_req_t *r = data;
    pulse_worker_t *w = r->worker;
    r->trace.db_end_ns = pulse_trace_now_ns();
    if (pulse_replicas_retry(w->replicas, &r->pick, res)) { /* a replica failed: the primary answers */
        rpc_call_database(r);
        return;
    }
    pulse_replicas_wrote(w->replicas, r->req, r->conf, r->route, res); /* a write's LSN: stamps, Pulse-LSN */
    if (res->sqlstate != NULL)
        snprintf(r->trace.sqlstate, sizeof(r->trace.sqlstate), "%s", res->sqlstate);
    if (res->after != NULL && w->gens != NULL && pulse_generations_apply_bumps(w->gens, w->keyed, res->after, res->after_len) < 0)
        pulse_log_msg("error", r->request_id, "%s: unexpected pulse.last_bumps result", r->route->name);
    switch (res->status) {
    case PULSE_PG_OK: {
        h2o_iovec_t body =
            res->body != NULL ? h2o_strdup(&r->req->pool, res->body, res->body_len) : h2o_iovec_init(H2O_STRLIT("null"));
        const char *link = rpc_next_link(&r->req->pool, &r->call, body);
        pulse_cache_entry_t e;
        /* a replica's answer older than a generation of the key is served, never stored (replicas.h) */
        if (r->key[0] != '\0' && pulse_replicas_may_store(w->replicas, &r->pick, r->route, res) &&
            rpc_store(w, &r->req->pool, r->route, r->key, body, link, res, r->ttl_ms,
                      pulse_cache_redis_ttl_ms(r->ttl_ms, r->swr_ms, r->sie_ms), &e) == 0) {
            /* step 6: stored; answer the flight's waiters, answer */
            rpc_flight_done(r, &e);
            rpc_send_entry(r, &e, "miss", "db");
            return;
        }
        rpc_flight_done(r, NULL);
        rpc_send_body(r, body, link, "db");
        return;
    }
    case PULSE_PG_ERROR: {
        int status = pulse_problem_status_for_sqlstate(res->sqlstate);
        pulse_metrics_observe_pg_error(w->metrics, res->sqlstate);
        rpc_flight_done(r, NULL);
        if (status >= 500 && rpc_serve_stale(r))
            return;
        if (pulse_problem_detail_is_public(status)) {
            rpc_fail(r, status, res->message, NULL);
        } else {
            pulse_log_msg("error", r->request_id, "%s: SQLSTATE %s: %s", r->route->name,
                          res->sqlstate != NULL ? res->sqlstate : "-", res->message != NULL ? res->message : "-");
            rpc_fail(r, status,
                     status == 503 && res->sqlstate != NULL && strcmp(res->sqlstate, "57014") == 0
                         ? "the call took longer than its statement timeout"
                     : status == 503 ? "the database is unavailable, retry later"
                                     : "internal error; see the proxy log",
                     NULL);
        }
        return;
    }
    case PULSE_PG_UNAVAILABLE:
        pulse_metrics_observe_pg_unavailable(w->metrics);
        pulse_log_msg("warning", r->request_id, "%s: %s", r->route->name, res->message);
        rpc_flight_done(r, NULL);
        if (!rpc_serve_stale(r))
            rpc_fail(r, 503, "the database is unavailable, retry later", NULL);
        return;
    case PULSE_PG_BUSY:
        rpc_flight_done(r, NULL);
        if (!rpc_serve_stale(r))
            rpc_fail(r, 503, "the proxy is overloaded, retry later", NULL);
        return;
    }
}

static void rpc_call_database_cb(void *r)
{
    rpc_call_database(r);
}

/* step 5: on_db_result continues */
void rpc_call_database(rpc_req_t *r)
{
    pulse_worker_t *w = r->worker;
    /* a read may go to a replica; one may have to replay the call's LSN first: then this runs again, decided */
    if (pulse_replicas_route(w->replicas, &r->pick, r->conf, r->route, r->key[0] != '\0', rpc_call_database_cb, r) != 0)
        return;
    char trace_id[33];
    pulse_trace_hex(r->trace.trace_id, 16, trace_id);
    pulse_pgquery_t q = {.cls = r->route->cls,
                         .tenant = r->tenant,
                         .request_id = r->request_id,
                         .trace_id = trace_id,
                         .statement_timeout_ms = r->conf->timeout_ms[r->route->cls],
                         .stmt_name = r->call.stmt_name,
                         .sql = r->call.sql,
                         .nparams = r->call.nparams,
                         .params = r->call.params};
    r->trace.db_start_ns = pulse_trace_now_ns();
    /* a write reads what its transaction bumped after its COMMIT, so that the next read through this proxy is fresh (the
       other proxies hear it from pulse_invalidate) */
    if (w->gens != NULL && (r->route->cls == PULSE_CLASS_WRITE || r->route->cls == PULSE_CLASS_BATCH))
        q.after_sql = PULSE_REPLICAS_AFTER_WRITE_SQL;
    pulse_pgpool_t *pool = pulse_replicas_pool(w->replicas, &r->pick, w->pgpool, r->route, r->key[0] != '\0', &q, &r->req->pool);
    pulse_pgstatus_t st = PULSE_PG_UNAVAILABLE;
    int rc = pool != NULL ? pulse_pgpool_submit(pool, &q, on_db_result, r, &r->job, &st) : -1;
    if (rc != 0 && pulse_replicas_retry(w->replicas, &r->pick, NULL)) {
        rpc_call_database(r);
        return;
    }
    if (rc != 0) {
        if (st == PULSE_PG_UNAVAILABLE)
            pulse_metrics_observe_pg_unavailable(w->metrics);
        rpc_flight_done(r, NULL);
        if (!rpc_serve_stale(r))
            rpc_fail(r, 503,
                     st == PULSE_PG_UNAVAILABLE ? "the database is unavailable, retry later"
                                                : "the proxy is overloaded, retry later",
                     NULL);
    }
}
