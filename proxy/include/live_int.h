/*
 * live_int.h: what live.c (the hub: keys, tag index, messages between
 * loops), live_stream.c (the text/event-stream requests) and
 * live_refresh.c (the refreshes, on each key's owner loop) share.  Private to
 * them; rpc.c reaches them through rpc_int.h's rpc_live_* functions.
 *
 * Ownership.  A live_key_t is shared by every loop that has streams of it;
 * its fields say which lock or thread they belong to.  It is freed when its
 * reference count, kept under the hub lock, drops to 0: each stream, each
 * message on its way to a loop, the owner's timer, its refresh in flight
 * and its place in the owner's list hold one.  A live_event_t (a result or
 * an error, immutable once made) is shared across loops with an atomic
 * count.  A live_stream_t lives in its request's pool; its dispose callback
 * unsubscribes it.
 */
#ifndef PULSE_LIVE_INT_H
#define PULSE_LIVE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include "live.h"
#include "rpc_int.h"

/* An event a key's streams may send: a result, or an error of its refresh. */
typedef struct live_event_t {
    atomic_uint refs;
    int status;           /* 200: a result; otherwise the HTTP status of a failed refresh (text: the problem's detail) */
    uint64_t seq;         /* errors: the key's error count when it was made */
    uint64_t notified_us; /* results: when the first notification it answers arrived (generations.h clock); 0: none */
    char etag[PULSE_CACHE_ETAG_SIZE];
    size_t len;
    char text[]; /* a result: "event: result\nid: <etag>\ndata: <line>\n...\n\n"; an error: its detail */
} live_event_t;

typedef struct live_key_t live_key_t;

typedef struct live_node_t {
    struct live_node_t *next;
    uint64_t hash;
    size_t len;
    const char *str;
} live_node_t;

/* a tag some keys depend on, or a family ("<tag>:<col>") whose every value tag wakes its keys */
typedef struct live_tag_t {
    live_node_t node;
    h2o_linklist_t refs; /* live_ref_t.link */
    char name[];
} live_tag_t;

/* one key under one tag */
typedef struct live_ref_t {
    h2o_linklist_t link;
    live_key_t *key;
    live_tag_t *tag;
    int family;
} live_ref_t;

typedef struct live_tenant_t {
    live_node_t node;
    unsigned n; /* open streams */
    char name[];
} live_tenant_t;

typedef struct live_msg_t {
    h2o_multithread_message_t super;
    live_key_t *key;
    int deliver; /* 1: a result for the loop's streams; 0: the owner should look at the key (refresh, or clean up) */
} live_msg_t;

typedef struct live_refresh_t live_refresh_t;

struct live_key_t {
    live_node_t node; /* hub: in `keys`, by id */
    char id[PULSE_CACHE_KEY_SIZE];
    int owner;              /* the loop that refreshes it (where its first stream came) */
    char *endpoint, *query; /* the call, immutable: the route's name and the query string of its arguments */
    size_t query_len;
    char tenant[PULSE_AUTH_MAX_TENANT + 1];
    /* hub */
    unsigned refs;
    int removed;   /* no stream left: out of the table and the index */
    int dirty;     /* a notification or a resync came since its last refresh started */
    int scheduled; /* the owner will look at `dirty` (a refresh runs, or its timer is linked) */
    int queued;    /* msg_refresh is on its way to the owner */
    uint64_t dirty_us;
    uint64_t need_lsn;            /* the largest stamp of the notifications that marked it (never lowered): a refresh
                                     goes to a replica only once it replayed it (UINT64_MAX: the primary) */
    live_event_t *result, *error; /* the latest result, and an error of a refresh since (NULL: none) */
    uint64_t errors;
    unsigned nstreams, waiting;
    unsigned *loop_streams;
    unsigned char *loop_queued; /* msg_deliver[i] is on its way */
    live_msg_t msg_refresh, *msg_deliver;
    live_ref_t *irefs; /* where the key is indexed */
    size_t nirefs;
    /* the owner's thread */
    h2o_timeout_entry_t timer; /* the interval after a refresh started, or the retry after one failed */
    live_refresh_t *refresh;   /* in flight */
    h2o_linklist_t owned;
    /* loop i's thread */
    h2o_linklist_t *streams; /* live_stream_t.link, per loop */
};

/* a refresh in flight: its copy of the call, the route table it holds */
struct live_refresh_t {
    live_key_t *key;
    pulse_live_loop_t *loop;
    pulse_pgjob_t *job;
    pulse_routes_t *routes;
    h2o_mem_pool_t pool;
    pulse_call_t call;
    char cache_key[PULSE_CACHE_KEY_SIZE]; /* "": not cached */
    char request_id[48];
    uint8_t trace_id[16], span_id[8];
    uint64_t notified_us, start_ns;
    unsigned streams;           /* of the key when it started */
    pulse_replicas_pick_t pick; /* its server: a replica that replayed the key's need_lsn and its tags' stamps, or the primary */
};

/* one name to index a key under: a tag, or a family */
typedef struct {
    const char *s;
    size_t len;
    int family;
} live_name_t;

/* The live state of one event loop. */
struct pulse_live_loop_t {
    pulse_worker_t *w;
    int index;
    int stopping;                        /* pulse_live_loop_stop ran: no refresh, no delivery */
    h2o_multithread_receiver_t receiver; /* on w->ctx.queue: refreshes to make, results to deliver */
    h2o_timeout_t interval;              /* live_min_interval_ms: a key refreshed is not refreshed again before */
    h2o_timeout_t retry;                 /* after a refresh that failed for lack of a database */
    h2o_timeout_t tick;                  /* every second: heartbeats, expired tokens */
    h2o_timeout_entry_t tick_entry;
    h2o_linklist_t streams; /* live_stream_t.all: every stream of this loop */
    h2o_linklist_t owned;   /* live_key_t the loop refreshes */
    uint64_t seq;           /* refreshes started: their request ids */
};

/* One text/event-stream request, in its request's pool. */
typedef struct live_stream_t {
    h2o_generator_t super;
    rpc_req_t *r;
    pulse_live_loop_t *loop;
    live_key_t *key;                  /* NULL once unsubscribed */
    h2o_linklist_t link;              /* in the key's streams of this loop */
    h2o_linklist_t all;               /* in loop->streams */
    char sent[PULSE_CACHE_ETAG_SIZE]; /* the ETag the client has: the last result sent, or its Last-Event-ID; "" none */
    uint64_t error_seq;               /* errors of the key made before the stream came are not its own */
    live_event_t *writing;            /* being written: held until h2o proceeds */
    live_event_t *pending;            /* the latest result not written yet (conflation: it replaces an older one) */
    double exp;                       /* the token's exp claim (seconds since the epoch) */
    uint64_t last_write_ms, opened_ms;
    size_t bytes, events;
    int waiting;            /* counted in the key's waiting streams: no result offered yet */
    int started;            /* the 200 and its headers are out */
    int busy;               /* a write is in flight */
    int stopped;            /* h2o stopped the generator: the client went away */
    int ended;              /* the last chunk (or an error answer) is out, or going */
    int end_status;         /* the `error` event it ends with (0: none) */
    const char *end_reason; /* its detail (in the request's pool) */
} live_stream_t;

#define LIVE_RETRY_MS 1000 /* a refresh that found no database is made again after this */

/* live.c */

extern pthread_mutex_t live_lock;      /* the hub lock: see live.c */
extern pulse_generations_t *live_gens; /* the process's map and keyed tags (pulse_live_init) */
extern pulse_keyed_t *live_keyed;

/* indexes `k` under exactly `names` (replacing what it was indexed under when that differs); -1 when out of memory (the
   key then stays indexed as it was). live_lock held */
int live_key_index(live_key_t *k, const live_name_t *names, size_t n) PULSE_WUR;

/* the latest result (or error) of `k` goes to every loop with streams of it. live_lock held */
void live_key_broadcast(live_key_t *k);

/* drops a reference on `k`, freed at the last one. live_lock held */
void live_key_unref(live_key_t *k);

/* sets loop `i` (NULL: it stopped and gets no message) and, with the first loop, the owner's release of a key whose last
   stream leaves on the owner's own loop (live_loop.c). live_lock held */
void live_loop_set(int i, pulse_live_loop_t *l, void (*owner_release)(pulse_live_loop_t *l, live_key_t *k));

/* the loop that owns `k`, NULL when it stopped. live_lock held */
pulse_live_loop_t *live_owner(live_key_t *k);

/* the key of stream `s` (its request `s->r` authenticated, its call prepared) is found or made, and `s` subscribed; returns
   0 and in `*now` a result to send at once (referenced; NULL: the stream waits for its key's next refresh), or the status
   of a refusal (429: the tenant's streams are at live_max_streams_tenant, 503: the proxy's at live_max_streams) */
int live_subscribe(pulse_live_loop_t *l, live_stream_t *s, const char *query, size_t query_len, live_event_t **now) PULSE_WUR;

/* the stream is gone (its request's dispose): counts, the key's streams, the key itself when it was its last */
void live_unsubscribe(live_stream_t *s);

/* takes one more reference on `e` (NULL is returned as is) */
live_event_t *live_event_ref(live_event_t *e);

/* drops a reference taken on `e` (NULL is ignored) */
void live_event_release(live_event_t *e);

/* live_refresh.c */

/* makes the call of `k` (dirty, no refresh in flight, its timer not linked) on its owner `l`, in the key's tenant scope */
void live_refresh_start(pulse_live_loop_t *l, live_key_t *k);

/* frees a refresh whose call ended or was canceled */
void live_refresh_free(live_refresh_t *rf);

/* the callback of a key's timer: the interval after a refresh started, or the retry after one failed, is over */
void live_refresh_on_timer(h2o_timeout_entry_t *entry);

/* live_stream.c */

/* offers the key's latest result `ev` and error `err` (either may be NULL) to stream `s`; returns 1 when the stream was
   waiting for its first result and no longer is */
int live_stream_offer(live_stream_t *s, live_event_t *ev, live_event_t *err);

/* ends stream `s`: a started one with an `error` event of `status` (0: none) and its last chunk, one not started with a
   problem document of `status` (0: 503) */
void live_stream_end(live_stream_t *s, int status, const char *detail);

/* every second: heartbeats to idle streams, the end of streams whose token expired */
void live_stream_tick(pulse_live_loop_t *l);

#endif
