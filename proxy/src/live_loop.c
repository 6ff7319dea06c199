/*
 * live_loop.c: live endpoints on one event loop (live.h, live_int.h): the
 * messages the hub (live.c) sends it, the refreshes of the keys it owns
 * (live_refresh.c) and the delivery of results to its streams
 * (live_stream.c), a tick for heartbeats and expired tokens, set-up and
 * stop.  It sits above the three: they do not call it.
 */
#include <pthread.h>
#include <stdlib.h>
#include "live_int.h"

/* --- refreshes (on the owner's loop) ------------------------------------------------------------------------------ */

/* the owner lets go of a removed (or, at stop, any) key: its timer, its refresh, its place in the owned list (hub lock) */
static void owner_release(pulse_live_loop_t *l, live_key_t *k)
{
    (void)l;
    if (h2o_timeout_is_linked(&k->timer)) {
        h2o_timeout_unlink(&k->timer);
        k->refs--;
    }
    if (k->refresh != NULL) {
        pulse_pgpool_cancel(k->refresh->job);
        pulse_replicas_cancel(&k->refresh->pick);
        live_refresh_free(k->refresh);
        k->refresh = NULL;
        k->refs--;
    }
    k->scheduled = 0;
    if (h2o_linklist_is_linked(&k->owned)) {
        h2o_linklist_unlink(&k->owned);
        k->refs--;
    }
    /* the caller still holds a reference: the key is freed by its key_unref */
}

/* the owner is asked to look at `k`: refresh it when dirty and nothing is scheduled, or let go of it when removed */
static void owner_consider(pulse_live_loop_t *l, live_key_t *k)
{
    pthread_mutex_lock(&live_lock);
    k->queued = 0;
    if (k->removed || l->stopping) {
        owner_release(l, k);
        pthread_mutex_unlock(&live_lock);
        return;
    }
    int go = k->dirty && !k->scheduled;
    pthread_mutex_unlock(&live_lock);
    if (go)
        live_refresh_start(l, k);
}

/* the key's latest result and error to this loop's streams of it */
static void loop_deliver(pulse_live_loop_t *l, live_key_t *k)
{
    pthread_mutex_lock(&live_lock);
    k->loop_queued[l->index] = 0;
    live_event_t *ev = live_event_ref(k->result), *err = live_event_ref(k->error);
    pthread_mutex_unlock(&live_lock);
    unsigned served = 0;
    if (!l->stopping) {
        h2o_linklist_t *anchor = &k->streams[l->index];
        for (h2o_linklist_t *node = anchor->next, *next; node != anchor; node = next) {
            next = node->next;
            served += (unsigned)live_stream_offer(H2O_STRUCT_FROM_MEMBER(live_stream_t, link, node), ev, err);
        }
    }
    live_event_release(ev);
    live_event_release(err);
    pthread_mutex_lock(&live_lock);
    k->waiting -= served;
    pthread_mutex_unlock(&live_lock);
}

static void on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    pulse_live_loop_t *l = H2O_STRUCT_FROM_MEMBER(pulse_live_loop_t, receiver, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        live_msg_t *m = H2O_STRUCT_FROM_MEMBER(live_msg_t, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link); /* before a flag is cleared: the message may be sent again at once */
        live_key_t *k = m->key;
        if (m->deliver)
            loop_deliver(l, k);
        else
            owner_consider(l, k);
        pthread_mutex_lock(&live_lock);
        live_key_unref(k); /* the message's */
        pthread_mutex_unlock(&live_lock);
    }
}

/* --- set-up and stop ------------------------------------------------------------------------------------------- */

static void on_tick(h2o_timeout_entry_t *entry)
{
    pulse_live_loop_t *l = H2O_STRUCT_FROM_MEMBER(pulse_live_loop_t, tick_entry, entry);
    live_stream_tick(l);
    if (!l->stopping)
        h2o_timeout_link(l->w->loop, &l->tick, &l->tick_entry);
}

pulse_live_loop_t *pulse_live_loop_create(pulse_worker_t *w, const pulse_config_t *conf)
{
    pulse_live_loop_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->w = w;
    l->index = w->index;
    h2o_linklist_init_anchor(&l->streams);
    h2o_linklist_init_anchor(&l->owned);
    h2o_timeout_init(w->loop, &l->interval, (uint64_t)conf->live_min_interval_ms);
    h2o_timeout_init(w->loop, &l->retry, LIVE_RETRY_MS);
    h2o_timeout_init(w->loop, &l->tick, 1000);
    l->tick_entry.cb = on_tick;
    h2o_timeout_link(w->loop, &l->tick, &l->tick_entry);
    h2o_multithread_register_receiver(w->ctx.queue, &l->receiver, on_messages);
    pthread_mutex_lock(&live_lock);
    live_loop_set(l->index, l, owner_release);
    pthread_mutex_unlock(&live_lock);
    return l;
}

void pulse_live_loop_stop(pulse_live_loop_t *l)
{
    if (l == NULL || l->stopping)
        return;
    pthread_mutex_lock(&live_lock);
    l->stopping = 1;
    live_loop_set(l->index, NULL, NULL); /* no message is sent to it any more */
    while (!h2o_linklist_is_empty(&l->owned)) {
        live_key_t *k = H2O_STRUCT_FROM_MEMBER(live_key_t, owned, l->owned.next);
        k->refs++;
        owner_release(l, k);
        live_key_unref(k);
    }
    pthread_mutex_unlock(&live_lock);
    while (!h2o_linklist_is_empty(&l->streams)) {
        /* a started stream just ends (its client reconnects, elsewhere): no error event; one not started gets a 503 */
        live_stream_t *s = H2O_STRUCT_FROM_MEMBER(live_stream_t, all, l->streams.next);
        live_stream_end(s, s->started ? 0 : 503, "the proxy is shutting down");
    }
    if (h2o_timeout_is_linked(&l->tick_entry))
        h2o_timeout_unlink(&l->tick_entry);
}

void pulse_live_loop_destroy(pulse_live_loop_t *l)
{
    if (l == NULL)
        return;
    pulse_live_loop_stop(l);
    /* nothing is sent to the loop since it stopped: what is still linked can be taken without the queue's lock */
    on_messages(&l->receiver, &l->receiver._messages);
    h2o_multithread_unregister_receiver(l->w->ctx.queue, &l->receiver);
    h2o_timeout_dispose(l->w->loop, &l->interval);
    h2o_timeout_dispose(l->w->loop, &l->retry);
    h2o_timeout_dispose(l->w->loop, &l->tick);
    free(l);
}
