/*
 * live.c: the hub of live endpoints (live.h): subscriptions keyed by
 * (tenant, endpoint, arguments), their index by tag, the notifications that
 * mark them dirty, one refresh per dirty key on the loop that owns it, and
 * the delivery of its result to the loops that have streams of the key.
 * The loops' side (messages, the owner's refreshes, delivery to the
 * streams, set-up and stop) is live_loop.c; the refreshes live_refresh.c,
 * the streams live_stream.c: this file calls none of them.
 *
 * Why a push is exact.  A pulse_invalidate notification reaches the
 * catalog thread only once its transaction committed and is visible to
 * every later snapshot.  A key is indexed under the route's tags before its
 * first refresh starts, so every later notification of those tags marks it
 * dirty, and a dirty key is refreshed by a call that starts after the mark:
 * the last state is always fetched.  Its keyed value tags are only known
 * from its first result (pulse.keyed_state): they are indexed before the
 * result is checked with pulse_keyed_current, so a bump notified before the
 * index knew them shows in the keyed map (the catalog thread applies a
 * notification to the map before it looks the tag up here), and one
 * notified after finds the key.  A result whose keyed state the channel
 * cannot vouch for is not checked: the resync that ends every lapse of the
 * channel refreshes every key (pulse_live_resynced).
 *
 * Refreshes of one key never overlap and each starts after the previous one
 * ended, on the same server (the primary), so its snapshot is not older:
 * the states a stream gets follow the commit order.
 *
 * Locking: `live_lock` guards the tables, the counts, every field of a key
 * marked "hub" in its struct, the `loops` array (a loop that stopped is
 * NULL there and gets no message) and the sending of messages.  It is never held while calling
 * into h2o's sockets or the pool's callbacks.  Loop-local fields of a key
 * (its timer, its refresh, its streams on a loop) are only touched by that
 * loop's thread.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "live_int.h"
#include "log.h"

/* --- a small chained hash table of strings ------------------------------------------------------------------------ */

typedef struct live_table_t {
    live_node_t **b;
    size_t nb, n;
} live_table_t;

static uint64_t lt_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i != len; ++i)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

static live_node_t *lt_find(live_table_t *t, const char *s, size_t len)
{
    if (t->nb == 0)
        return NULL;
    uint64_t h = lt_hash(s, len);
    for (live_node_t *n = t->b[h & (t->nb - 1)]; n != NULL; n = n->next)
        if (n->hash == h && n->len == len && memcmp(n->str, s, len) == 0)
            return n;
    return NULL;
}

/* inserts `n` (str and len set, not in the table); -1 when out of memory */
static int lt_insert(live_table_t *t, live_node_t *n)
{
    if (t->n + 1 > t->nb * 2) {
        size_t nb = t->nb != 0 ? t->nb * 2 : 64;
        live_node_t **b = calloc(nb, sizeof(*b));
        if (b == NULL)
            return -1;
        for (size_t i = 0; i < t->nb; i++)
            for (live_node_t *o = t->b[i], *next; o != NULL; o = next) {
                next = o->next;
                o->next = b[o->hash & (nb - 1)];
                b[o->hash & (nb - 1)] = o;
            }
        free(t->b);
        t->b = b;
        t->nb = nb;
    }
    n->hash = lt_hash(n->str, n->len);
    n->next = t->b[n->hash & (t->nb - 1)];
    t->b[n->hash & (t->nb - 1)] = n;
    t->n++;
    return 0;
}

static void lt_remove(live_table_t *t, live_node_t *n)
{
    for (live_node_t **p = &t->b[n->hash & (t->nb - 1)]; *p != NULL; p = &(*p)->next)
        if (*p == n) {
            *p = n->next;
            t->n--;
            return;
        }
}

/* --- the hub ------------------------------------------------------------------------------------------------------ */

pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static int nloops;
static pulse_live_loop_t **loops; /* hub: NULL once a loop stopped */
/* live_loop.c's owner_release, for a key whose last stream leaves on its owner's loop (set with the first loop) */
static void (*owner_release_hook)(pulse_live_loop_t *l, live_key_t *k);

void live_loop_set(int i, pulse_live_loop_t *l, void (*owner_release)(pulse_live_loop_t *l, live_key_t *k))
{
    loops[i] = l;
    if (owner_release != NULL)
        owner_release_hook = owner_release;
}
static live_table_t keys, tags, tenants;
static live_tag_t **family_v; /* the families (few): checked one by one */
static size_t nfamilies;
static unsigned total_streams;
pulse_generations_t *live_gens;
pulse_keyed_t *live_keyed;

live_event_t *live_event_ref(live_event_t *e)
{
    if (e != NULL)
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

void live_event_release(live_event_t *e)
{
    if (e != NULL && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

/* --- keys (hub lock held) ----------------------------------------------------------------------------------------- */

static void key_unindex(live_key_t *k)
{
    for (size_t i = 0; i < k->nirefs; i++) {
        live_ref_t *ref = &k->irefs[i];
        h2o_linklist_unlink(&ref->link);
        if (!h2o_linklist_is_empty(&ref->tag->refs))
            continue;
        if (ref->family) {
            for (size_t j = 0; j < nfamilies; j++)
                if (family_v[j] == ref->tag) {
                    family_v[j] = family_v[--nfamilies];
                    break;
                }
        } else {
            lt_remove(&tags, &ref->tag->node);
        }
        free(ref->tag);
    }
    free(k->irefs);
    k->irefs = NULL;
    k->nirefs = 0;
}

/* the tag (or family) `name`, made when new; NULL when out of memory */
static live_tag_t *tag_get(const char *name, size_t len, int family)
{
    if (family) {
        for (size_t j = 0; j < nfamilies; j++)
            if (family_v[j]->node.len == len && memcmp(family_v[j]->name, name, len) == 0)
                return family_v[j];
    } else {
        live_node_t *n = lt_find(&tags, name, len);
        if (n != NULL)
            return H2O_STRUCT_FROM_MEMBER(live_tag_t, node, n);
    }
    live_tag_t *t = calloc(1, sizeof(*t) + len + 1);
    if (t == NULL)
        return NULL;
    memcpy(t->name, name, len);
    t->node.str = t->name;
    t->node.len = len;
    h2o_linklist_init_anchor(&t->refs);
    if (family) {
        live_tag_t **v = realloc(family_v, (nfamilies + 1) * sizeof(*v));
        if (v == NULL) {
            free(t);
            return NULL;
        }
        family_v = v;
        family_v[nfamilies++] = t;
    } else if (lt_insert(&tags, &t->node) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

/* indexes `k` under exactly `names` (replacing what it was indexed under when that differs); -1 when out of memory (the
   key then stays indexed under the route's tags it had, at least) */
int live_key_index(live_key_t *k, const live_name_t *names, size_t n)
{
    if (n == k->nirefs) {
        size_t i = 0;
        while (i < n && k->irefs[i].family == names[i].family && k->irefs[i].tag->node.len == names[i].len &&
               memcmp(k->irefs[i].tag->name, names[i].s, names[i].len) == 0)
            i++;
        if (i == n)
            return 0;
    }
    live_ref_t *refs = calloc(n + 1, sizeof(*refs));
    if (refs == NULL)
        return -1;
    live_ref_t *old = k->irefs;
    size_t nold = k->nirefs;
    for (size_t i = 0; i < n; i++) {
        refs[i].key = k;
        refs[i].family = names[i].family;
        if ((refs[i].tag = tag_get(names[i].s, names[i].len, names[i].family)) == NULL) {
            for (size_t j = 0; j < i; j++) /* keep the old index: unlink the new refs (their tags may be left empty) */
                h2o_linklist_unlink(&refs[j].link);
            free(refs);
            return -1;
        }
        h2o_linklist_insert(&refs[i].tag->refs, &refs[i].link);
    }
    k->irefs = old;
    k->nirefs = nold;
    key_unindex(k);
    k->irefs = refs;
    k->nirefs = n;
    return 0;
}

static void key_free(live_key_t *k)
{
    live_event_release(k->result);
    live_event_release(k->error);
    free(k->endpoint);
    free(k->query);
    free(k->loop_streams);
    free(k->loop_queued);
    free(k->msg_deliver);
    free(k->streams);
    free(k);
}

void live_key_unref(live_key_t *k)
{
    if (--k->refs == 0)
        key_free(k);
}

pulse_live_loop_t *live_owner(live_key_t *k)
{
    return loops[k->owner];
}

/* sends `m` to loop `i` unless it stopped; takes a reference for the message */
static int key_send(live_key_t *k, int i, live_msg_t *m)
{
    if (loops[i] == NULL)
        return 0;
    k->refs++;
    h2o_multithread_send_message(&loops[i]->receiver, &m->super);
    return 1;
}

/* a notification (at `now_us`; 0: a resync) stamped `lsn` concerns `k`: its owner refreshes it */
static void key_mark(live_key_t *k, uint64_t now_us, uint64_t lsn)
{
    if (k->removed)
        return;
    if (lsn > k->need_lsn)
        k->need_lsn = lsn;
    if (!k->dirty) {
        k->dirty = 1;
        k->dirty_us = now_us;
    }
    if (!k->scheduled && !k->queued)
        k->queued = key_send(k, k->owner, &k->msg_refresh);
}

/* the latest result (or error) of `k` goes to every loop with streams of it */
void live_key_broadcast(live_key_t *k)
{
    for (int i = 0; i < nloops; i++)
        if (k->loop_streams[i] != 0 && !k->loop_queued[i])
            k->loop_queued[i] = (unsigned char)key_send(k, i, &k->msg_deliver[i]);
}

static live_key_t *key_new(pulse_live_loop_t *l, const rpc_req_t *r, const char *query, size_t query_len)
{
    live_key_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    k->owner = l->index;
    k->endpoint = strdup(r->route->name);
    k->query = malloc(query_len + 1);
    k->loop_streams = calloc((size_t)nloops, sizeof(*k->loop_streams));
    k->loop_queued = calloc((size_t)nloops, 1);
    k->msg_deliver = calloc((size_t)nloops, sizeof(*k->msg_deliver));
    k->streams = calloc((size_t)nloops, sizeof(*k->streams));
    if (k->endpoint == NULL || k->query == NULL || k->loop_streams == NULL || k->loop_queued == NULL || k->msg_deliver == NULL ||
        k->streams == NULL) {
        key_free(k);
        return NULL;
    }
    memcpy(k->id, r->key, sizeof(k->id));
    memcpy(k->query, query, query_len);
    k->query[query_len] = '\0';
    k->query_len = query_len;
    snprintf(k->tenant, sizeof(k->tenant), "%s", r->tenant);
    k->msg_refresh.key = k;
    for (int i = 0; i < nloops; i++) {
        k->msg_deliver[i].key = k;
        k->msg_deliver[i].deliver = 1;
        h2o_linklist_init_anchor(&k->streams[i]);
    }
    k->node.str = k->id;
    k->node.len = strlen(k->id);
    return k;
}

/* --- subscriptions (on the stream's loop) ------------------------------------------------------------------------- */

int live_subscribe(pulse_live_loop_t *l, live_stream_t *s, const char *query, size_t query_len, live_event_t **now)
{
    rpc_req_t *r = s->r;
    *now = NULL;
    int status = 0;
    pthread_mutex_lock(&live_lock);
    live_node_t *tn = lt_find(&tenants, r->tenant, strlen(r->tenant));
    live_tenant_t *tenant = tn != NULL ? H2O_STRUCT_FROM_MEMBER(live_tenant_t, node, tn) : NULL;
    live_key_t *k = NULL;
    if (total_streams >= (unsigned)r->conf->live_max_streams) {
        status = 503;
        goto out;
    }
    if (tenant != NULL && tenant->n >= (unsigned)r->conf->live_max_streams_tenant) {
        status = 429;
        goto out;
    }
    if (tenant == NULL) {
        size_t len = strlen(r->tenant);
        if ((tenant = calloc(1, sizeof(*tenant) + len + 1)) == NULL) {
            status = 503;
            goto out;
        }
        memcpy(tenant->name, r->tenant, len);
        tenant->node.str = tenant->name;
        tenant->node.len = len;
        if (lt_insert(&tenants, &tenant->node) != 0) {
            free(tenant);
            tenant = NULL;
            status = 503;
            goto out;
        }
    }
    live_node_t *kn = lt_find(&keys, r->key, strlen(r->key));
    if (kn != NULL) {
        k = H2O_STRUCT_FROM_MEMBER(live_key_t, node, kn);
    } else {
        /* a new key: indexed under the route's tags before its first refresh can start */
        const pulse_route_t *rt = r->route;
        live_name_t *names = malloc((rt->ntags + 1) * sizeof(*names));
        if (names == NULL || (k = key_new(l, r, query, query_len)) == NULL) {
            free(names);
            status = 503;
            goto out;
        }
        for (size_t i = 0; i < rt->ntags; i++)
            names[i] = (live_name_t){rt->tags[i], strlen(rt->tags[i]), 0};
        int rc = live_key_index(k, names, rt->ntags);
        free(names);
        if (rc != 0 || lt_insert(&keys, &k->node) != 0) {
            key_unindex(k);
            key_free(k);
            k = NULL;
            status = 503;
            goto out;
        }
        k->refs = 1; /* the owner's list */
        h2o_linklist_insert(&l->owned, &k->owned);
    }
    k->refs++;
    k->nstreams++;
    k->loop_streams[l->index]++;
    tenant->n++;
    total_streams++;
    s->key = k;
    s->error_seq = k->errors;
    h2o_linklist_insert(&k->streams[l->index], &s->link);
    /* the latest result is current when the channel vouches for the map (a dirty key pushes its next one after it) */
    if (k->result != NULL && k->error == NULL && pulse_generations_vouched(live_gens, pulse_generations_now_us())) {
        *now = live_event_ref(k->result);
    } else {
        s->waiting = 1;
        k->waiting++;
        key_mark(k, 0, 0);
    }
out:
    if (status != 0 && tenant != NULL && tenant->n == 0) {
        lt_remove(&tenants, &tenant->node);
        free(tenant);
    }
    pthread_mutex_unlock(&live_lock);
    return status;
}

void live_unsubscribe(live_stream_t *s)
{
    live_key_t *k = s->key;
    if (k == NULL)
        return;
    pulse_live_loop_t *l = s->loop;
    s->key = NULL;
    h2o_linklist_unlink(&s->link);
    pthread_mutex_lock(&live_lock);
    live_node_t *tn = lt_find(&tenants, s->r->tenant, strlen(s->r->tenant));
    if (tn != NULL) {
        live_tenant_t *tenant = H2O_STRUCT_FROM_MEMBER(live_tenant_t, node, tn);
        if (--tenant->n == 0) {
            lt_remove(&tenants, &tenant->node);
            free(tenant);
        }
    }
    total_streams--;
    k->nstreams--;
    k->loop_streams[l->index]--;
    if (s->waiting) {
        s->waiting = 0;
        k->waiting--;
    }
    if (k->nstreams == 0 && !k->removed) {
        k->removed = 1;
        lt_remove(&keys, &k->node);
        key_unindex(k);
        if (k->owner == l->index)
            owner_release_hook(l, k);
        else if (!k->queued) /* its owner lets go of it */
            k->queued = key_send(k, k->owner, &k->msg_refresh);
    }
    live_key_unref(k);
    pthread_mutex_unlock(&live_lock);
}

/* --- notifications (the catalog thread) --------------------------------------------------------------------------- */

void pulse_live_notify(const char *payload, size_t len, uint64_t lsn, uint64_t commit_us)
{
    const char *tag;
    size_t tlen;
    uint64_t gen;
    if (loops == NULL || pulse_generations_parse(payload, len, &tag, &tlen, &gen) != 0)
        return;
    uint64_t now = pulse_generations_now_us(); /* monotonic; the commit time is the database's wall clock */
    if (commit_us != 0) {
        uint64_t wall = pulse_trace_now_ns() / 1000;
        if (commit_us <= wall && wall - commit_us < now) /* else a database clock ahead of ours: from the arrival */
            now -= wall - commit_us;
    }
    pthread_mutex_lock(&live_lock);
    live_node_t *n = lt_find(&tags, tag, tlen);
    if (n != NULL) {
        live_tag_t *t = H2O_STRUCT_FROM_MEMBER(live_tag_t, node, n);
        for (h2o_linklist_t *l = t->refs.next; l != &t->refs; l = l->next)
            key_mark(H2O_STRUCT_FROM_MEMBER(live_ref_t, link, l)->key, now, lsn);
    }
    for (size_t i = 0; i < nfamilies; i++) {
        live_tag_t *f = family_v[i];
        if (tlen > f->node.len && tag[f->node.len] == '=' && memcmp(tag, f->name, f->node.len) == 0)
            for (h2o_linklist_t *l = f->refs.next; l != &f->refs; l = l->next)
                key_mark(H2O_STRUCT_FROM_MEMBER(live_ref_t, link, l)->key, now, lsn);
    }
    pthread_mutex_unlock(&live_lock);
}

void pulse_live_resynced(void)
{
    if (loops == NULL)
        return;
    pthread_mutex_lock(&live_lock);
    for (size_t i = 0; i < keys.nb; i++)
        for (live_node_t *n = keys.b[i]; n != NULL; n = n->next)
            key_mark(H2O_STRUCT_FROM_MEMBER(live_key_t, node, n), 0, 0);
    pthread_mutex_unlock(&live_lock);
}

/* --- set-up ------------------------------------------------------------------------------------------------------- */

int pulse_live_init(int n, pulse_generations_t *g, pulse_keyed_t *k)
{
    if ((loops = calloc((size_t)n, sizeof(*loops))) == NULL)
        return -1;
    nloops = n;
    live_gens = g;
    live_keyed = k;
    return 0;
}

int pulse_live_enabled(void)
{
    return live_gens != NULL && live_keyed != NULL;
}

void pulse_live_destroy(void)
{
    pthread_mutex_lock(&live_lock);
    for (size_t i = 0; i < keys.nb; i++)
        for (live_node_t *n = keys.b[i], *next; n != NULL; n = next) {
            next = n->next;
            live_key_t *k = H2O_STRUCT_FROM_MEMBER(live_key_t, node, n);
            key_unindex(k);
            key_free(k);
        }
    for (size_t i = 0; i < tenants.nb; i++)
        for (live_node_t *n = tenants.b[i], *next; n != NULL; n = next) {
            next = n->next;
            free(H2O_STRUCT_FROM_MEMBER(live_tenant_t, node, n));
        }
    free(keys.b);
    free(tags.b);
    free(tenants.b);
    free(family_v);
    free(loops);
    memset(&keys, 0, sizeof(keys));
    memset(&tags, 0, sizeof(tags));
    memset(&tenants, 0, sizeof(tenants));
    family_v = NULL;
    nfamilies = 0;
    loops = NULL;
    nloops = 0;
    total_streams = 0;
    pthread_mutex_unlock(&live_lock);
}
