/*
 * redis_test.c: the Redis client (redis.c) against a real redis-server that
 * the test starts on a free loopback port (and kills, also when the test
 * dies: PR_SET_PDEATHSIG): commands on the evloop, binary values,
 * pipelining, timeouts, the circuit breaker opening when Redis is slow or
 * killed and closing when it is back, destroy with commands in flight.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cache.h"
#include "redis.h"
#include "test.h"

#include "redis_server.h"

static h2o_evloop_t *loop;

typedef struct {
    int calls;
    int type;
    char str[256];
    size_t len;
    long long integer;
    const char *err;
    uint64_t at;
} rec_t;

static void on_rec(void *data, redisReply *reply, const char *err)
{
    rec_t *r = data;
    r->calls++;
    r->err = err;
    r->at = now_ms();
    if (reply != NULL) {
        r->type = reply->type;
        r->integer = reply->integer;
        r->len = reply->str != NULL ? reply->len : 0;
        if (reply->str != NULL)
            memcpy(r->str, reply->str, reply->len < sizeof(r->str) ? reply->len : sizeof(r->str));
    }
}

/* runs the loop until *flag (when given) is true or `ms` passed; returns *flag (or 1) */
static int run_for(const int *flag, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    while ((flag == NULL || !*flag) && now_ms() < deadline)
        h2o_evloop_run(loop, 10);
    return flag == NULL || *flag;
}

static int run_until_state(pulse_redis_t *r, pulse_redis_state_t want, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    while (pulse_redis_state(r) != want && now_ms() < deadline)
        h2o_evloop_run(loop, 10);
    return pulse_redis_state(r) == want;
}

static pulse_redis_config_t test_conf(int port)
{
    pulse_redis_config_t c;
    memset(&c, 0, sizeof(c));
    strcpy(c.host, "127.0.0.1");
    c.port = port;
    c.connect_timeout_ms = 200;
    c.command_timeout_ms = 100;
    c.failure_threshold = 3;
    c.backoff_min_ms = 50;
    c.backoff_max_ms = 400;
    return c;
}

static void test_url(void)
{
    pulse_redis_config_t c;
    char err[128];
    CHECK(pulse_redis_config_parse_url(&c, "redis://:s3cret@10.1.2.3:6380/2", err, sizeof(err)) == 0 &&
              strcmp(c.host, "10.1.2.3") == 0 && c.port == 6380 && strcmp(c.password, "s3cret") == 0 && c.db == 2,
          "url: password, host, port, db");
    CHECK(pulse_redis_config_parse_url(&c, "redis://localhost", err, sizeof(err)) == 0 && strcmp(c.host, "localhost") == 0 &&
              c.port == 6379 && c.db == 0 && c.password[0] == '\0' && c.command_timeout_ms == 50 && c.failure_threshold == 3,
          "url: defaults");
    CHECK(pulse_redis_config_parse_url(&c, "", err, sizeof(err)) == 0 && strcmp(c.host, "127.0.0.1") == 0, "url: empty");
    CHECK(pulse_redis_config_parse_url(&c, "http://x", err, sizeof(err)) != 0 &&
              pulse_redis_config_parse_url(&c, "redis://h:0", err, sizeof(err)) != 0 &&
              pulse_redis_config_parse_url(&c, "redis://h:99999", err, sizeof(err)) != 0 &&
              pulse_redis_config_parse_url(&c, "redis://h:12x", err, sizeof(err)) != 0 &&
              pulse_redis_config_parse_url(&c, "redis://h/x", err, sizeof(err)) != 0,
          "url: bad scheme, port, db rejected");
}

static void test_basic(pulse_redis_t *r)
{
    rec_t set = {0}, get = {0}, err = {0}, sub = {0};
    static const char bin[] = {'a', 0, 'b', '\r', '\n', (char)0xff};
    const char *argv[] = {"SET", "pulse:test:bin", bin};
    size_t argvlen[] = {3, 14, sizeof(bin)};

    CHECK(pulse_redis_command_argv(r, on_rec, &set, 3, argv, argvlen) == 0, "argv command sent");
    CHECK(set.calls == 0, "callback never runs from inside the call");
    CHECK(pulse_redis_command(r, on_rec, &get, "GET %b", "pulse:test:bin", (size_t)14) == 0, "fmt command sent");
    run_for(&get.calls, 2000);
    CHECK(set.calls == 1 && set.type == REDIS_REPLY_STATUS && set.len == 2 && memcmp(set.str, "OK", 2) == 0, "SET +OK");
    CHECK(get.calls == 1 && get.type == REDIS_REPLY_STRING && get.len == sizeof(bin) && memcmp(get.str, bin, sizeof(bin)) == 0,
          "GET returns the binary value");

    CHECK(pulse_redis_command(r, on_rec, &err, "HSET %s f v", "pulse:test:bin") == 0, "wrong-type command sent");
    run_for(&err.calls, 2000);
    CHECK(err.calls == 1 && err.err == NULL && err.type == REDIS_REPLY_ERROR && pulse_redis_is_up(r),
          "error reply is an answer, breaker stays closed");

    CHECK(pulse_redis_command(r, on_rec, &sub, "SUBSCRIBE %s", "chan") == -1 &&
              pulse_redis_command(r, on_rec, &sub, "monitor") == -1,
          "SUBSCRIBE and MONITOR refused");
    run_for(NULL, 50);
    CHECK(sub.calls == 0, "refused command: no callback");
}

static void on_big(void *data, redisReply *reply, const char *err)
{
    int *ok = data;
    size_t n = 2 * 1024 * 1024;
    *ok = 1;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_STRING || reply->len != n) {
        *ok = 2;
        return;
    }
    for (size_t i = 0; i != n; ++i)
        if (reply->str[i] != (char)(i * 7 + i / 4096)) {
            *ok = 2;
            return;
        }
}

static void test_large(void)
{
    size_t n = 2 * 1024 * 1024;
    char *v = malloc(n);
    rec_t set = {0};
    int got = 0;
    for (size_t i = 0; i != n; ++i)
        v[i] = (char)(i * 7 + i / 4096);
    pulse_redis_config_t c = test_conf(redis_port);
    c.command_timeout_ms = 2000;
    pulse_redis_t *big = pulse_redis_create(loop, &c);
    CHECK(run_until_state(big, PULSE_REDIS_UP, 2000), "client with a long timeout up");
    const char *argv[] = {"SET", "pulse:test:big", v};
    size_t argvlen[] = {3, 14, n};
    CHECK(pulse_redis_command_argv(big, on_rec, &set, 3, argv, argvlen) == 0 &&
              pulse_redis_command(big, on_big, &got, "GET pulse:test:big") == 0,
          "2 MiB SET and GET sent");
    free(v); /* copied by the call */
    run_for(&got, 5000);
    CHECK(set.calls == 1 && set.err == NULL && got == 1, "2 MiB value round trip (partial writes and reads on the loop)");
    pulse_redis_destroy(big);
}

#define NPIPE 1000
static rec_t pipe_recs[NPIPE];

static void test_pipeline(pulse_redis_t *r)
{
    int sent = 0, done = 0, once = 1;
    rec_t del = {0};
    if (pulse_redis_command(r, on_rec, &del, "DEL pulse:test:counter") != 0)
        return;
    for (int i = 0; i != NPIPE; ++i)
        sent += pulse_redis_command(r, on_rec, &pipe_recs[i], "INCR pulse:test:counter") == 0;
    CHECK(sent == NPIPE, "1000 pipelined commands sent");
    for (uint64_t deadline = now_ms() + 3000; now_ms() < deadline && pipe_recs[NPIPE - 1].calls == 0;)
        h2o_evloop_run(loop, 10);
    int inorder = 1;
    for (int i = 0; i != NPIPE; ++i) {
        done += pipe_recs[i].calls != 0;
        once &= pipe_recs[i].calls <= 1;
        inorder &= pipe_recs[i].integer == i + 1;
    }
    CHECK(done == NPIPE && once, "every callback ran exactly once");
    CHECK(inorder, "replies in order (1..1000)");
}

static void test_timeout(pulse_redis_t *r)
{
    rec_t slow = {0}, ping = {0};
    pulse_redis_stats_t st0, st1;
    pulse_redis_stats(r, &st0);
    uint64_t t0 = now_ms();
    CHECK(pulse_redis_command(r, on_rec, &slow, "DEBUG SLEEP 0.4") == 0, "DEBUG SLEEP sent");
    run_for(&slow.calls, 2000);
    uint64_t took = slow.at - t0;
    CHECK(slow.calls == 1 && slow.err != NULL && strcmp(slow.err, "timeout") == 0, "slow command answered with timeout");
    CHECK(took >= 90 && took < 300, "timeout after ~100 ms: the loop was not blocked");
    if (!(took >= 90 && took < 300))
        printf("#   took %llu ms\n", (unsigned long long)took);
    CHECK(pulse_redis_is_up(r), "one timeout does not open the breaker");
    run_for(NULL, 500); /* the late reply arrives and is dropped */
    CHECK(slow.calls == 1, "late reply does not run the callback again");
    CHECK(pulse_redis_command(r, on_rec, &ping, "PING") == 0, "PING after the timeout");
    run_for(&ping.calls, 2000);
    CHECK(ping.calls == 1 && ping.err == NULL && ping.type == REDIS_REPLY_STATUS, "connection still usable");
    pulse_redis_stats(r, &st1);
    CHECK(st1.timeouts == st0.timeouts + 1 && st1.opens == st0.opens, "stats: one timeout, no open");
}

static void test_breaker_slow(pulse_redis_t *r)
{
    rec_t slow[3] = {{0}}, fast = {0}, after = {0};
    pulse_redis_stats_t st0, st1;
    pulse_redis_stats(r, &st0);
    int sent = 0;
    for (int i = 0; i != 3; ++i)
        sent += pulse_redis_command(r, on_rec, &slow[i], "DEBUG SLEEP 0.3") == 0;
    CHECK(sent == 3, "3 slow commands sent");
    run_for(&slow[2].calls, 2000);
    CHECK(slow[0].calls == 1 && slow[1].calls == 1 && slow[2].calls == 1 && slow[2].err != NULL, "3 slow commands time out");
    CHECK(!pulse_redis_is_up(r), "3 consecutive timeouts open the breaker");
    uint64_t t0 = now_ms();
    int rc = pulse_redis_command(r, on_rec, &fast, "PING");
    CHECK(rc == -1 && now_ms() - t0 < 5, "while open, commands fail fast");
    run_for(NULL, 30);
    CHECK(fast.calls == 0, "fast-failed command: no callback");
    CHECK(run_until_state(r, PULSE_REDIS_UP, 5000), "breaker closes once Redis answers again");
    CHECK(pulse_redis_command(r, on_rec, &after, "PING") == 0 && run_for(&after.calls, 2000) && after.err == NULL,
          "commands work after recovery");
    pulse_redis_stats(r, &st1);
    CHECK(st1.opens == st0.opens + 1 && st1.fast_fails > st0.fast_fails && st1.connects > st0.connects,
          "stats: opened once, fast fails, reconnected");
}

static void test_kill_restart(pulse_redis_t *r)
{
    rec_t inflight = {0}, down = {0}, after = {0};
    CHECK(pulse_redis_command(r, on_rec, &inflight, "SET pulse:test:k v") == 0, "command in flight");
    stop_redis();
    run_for(&inflight.calls, 2000);
    CHECK(inflight.calls == 1, "in-flight command answered once when Redis dies");
    CHECK(run_until_state(r, PULSE_REDIS_DOWN, 1000) || pulse_redis_state(r) == PULSE_REDIS_CONNECTING, "client not up");
    CHECK(!pulse_redis_is_up(r), "breaker open after Redis died");
    uint64_t t0 = now_ms();
    CHECK(pulse_redis_command(r, on_rec, &down, "GET pulse:test:k") == -1 && now_ms() - t0 < 5, "fail fast while Redis is down");
    run_for(NULL, 800); /* several failed reconnect attempts */
    CHECK(!pulse_redis_is_up(r) && down.calls == 0, "stays down, no callback, no crash");

    CHECK(start_redis(redis_port) == 0, "redis restarted on the same port");
    CHECK(run_until_state(r, PULSE_REDIS_UP, 3000), "breaker closes after the restart (within the max backoff)");
    CHECK(pulse_redis_command(r, on_rec, &after, "SET pulse:test:k v2") == 0 && run_for(&after.calls, 2000) && after.err == NULL,
          "commands work after the restart");
}

static void test_destroy_pending(void)
{
    pulse_redis_config_t c = test_conf(redis_port);
    c.command_timeout_ms = 1000;
    pulse_redis_t *r = pulse_redis_create(loop, &c);
    rec_t a = {0}, b = {0};
    CHECK(r != NULL && run_until_state(r, PULSE_REDIS_UP, 2000), "second client up");
    CHECK(pulse_redis_command(r, on_rec, &a, "DEBUG SLEEP 0.2") == 0 && pulse_redis_command(r, on_rec, &b, "GET x") == 0,
          "two commands pending");
    run_for(NULL, 20);
    pulse_redis_destroy(r);
    CHECK(a.calls == 1 && b.calls == 1 && a.err != NULL && strcmp(a.err, "closed") == 0, "destroy answers pending commands");
    run_for(NULL, 300);
    CHECK(a.calls == 1 && b.calls == 1, "and only once");
}

typedef struct {
    pulse_redis_t *r;
    rec_t rec;
} destroyer_t;

static void on_destroy_in_cb(void *data, redisReply *reply, const char *err)
{
    destroyer_t *d = data;
    on_rec(&d->rec, reply, err);
    pulse_redis_destroy(d->r);
}

static void test_destroy_in_callback(void)
{
    pulse_redis_config_t c = test_conf(redis_port);
    destroyer_t d = {pulse_redis_create(loop, &c), {0}};
    rec_t second = {0};
    CHECK(d.r != NULL && run_until_state(d.r, PULSE_REDIS_UP, 2000), "third client up");
    CHECK(pulse_redis_command(d.r, on_destroy_in_cb, &d, "PING") == 0 && pulse_redis_command(d.r, on_rec, &second, "PING") == 0,
          "two pipelined PINGs");
    run_for(&d.rec.calls, 2000);
    CHECK(d.rec.calls == 1 && second.calls == 1 && (second.err == NULL || strcmp(second.err, "closed") == 0),
          "destroy from a callback: the other command is answered once");
    run_for(NULL, 50);
    CHECK(second.calls == 1, "no late callback");
}

static void test_db_and_limits(void)
{
    pulse_redis_config_t c3 = test_conf(redis_port), c0 = test_conf(redis_port);
    c3.db = 3;
    c3.max_pending = 4;
    pulse_redis_t *r3 = pulse_redis_create(loop, &c3), *r0 = pulse_redis_create(loop, &c0);
    rec_t set = {0}, get0 = {0}, get3 = {0}, p[5] = {{0}};
    CHECK(run_until_state(r3, PULSE_REDIS_UP, 2000) && run_until_state(r0, PULSE_REDIS_UP, 2000), "clients on db 3 and db 0 up");
    CHECK(pulse_redis_command(r3, on_rec, &set, "SET pulse:test:db three") == 0 && run_for(&set.calls, 2000), "SET on db 3");
    CHECK(pulse_redis_command(r0, on_rec, &get0, "GET pulse:test:db") == 0 && run_for(&get0.calls, 2000) &&
              get0.type == REDIS_REPLY_NIL,
          "db 0 does not see it (SELECT in the probe)");
    CHECK(pulse_redis_command(r3, on_rec, &get3, "GET pulse:test:db") == 0 && run_for(&get3.calls, 2000) && get3.len == 5,
          "db 3 sees it");
    int sent = 0;
    for (int i = 0; i != 5; ++i)
        sent += pulse_redis_command(r3, on_rec, &p[i], "PING") == 0;
    CHECK(sent == 4, "max_pending: the 5th command fails fast");
    run_for(&p[3].calls, 2000);
    CHECK(p[0].calls == 1 && p[3].calls == 1 && p[4].calls == 0, "the 4 sent are answered");
    pulse_redis_destroy(r3);
    pulse_redis_destroy(r0);
}

typedef struct {
    int calls;
    pulse_cache_lookup_t status;
    int body_ok, gzip_ok, etag_ok;
    uint64_t created_at;
} fetch_rec_t;

static const char *fetch_body;
static size_t fetch_body_len;

static void on_fetch(void *data, pulse_cache_lookup_t status, const pulse_cache_entry_t *e)
{
    fetch_rec_t *f = data;
    f->calls++;
    f->status = status;
    if (e != NULL) {
        f->body_ok = e->body.len == fetch_body_len && memcmp(e->body.base, fetch_body, fetch_body_len) == 0;
        f->gzip_ok = e->gzip.len != 0;
        char etag[PULSE_CACHE_ETAG_SIZE];
        pulse_cache_etag(fetch_body, fetch_body_len, etag);
        f->etag_ok = h2o_memis(e->etag.base, e->etag.len, etag, strlen(etag));
        f->created_at = e->created_at_ms;
    }
}

static void test_cache_store(pulse_redis_t *r)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    char key[PULSE_CACHE_KEY_SIZE];
    pulse_cache_arg_t args[] = {{"day", "2026-11-25", 10}};
    const char *tags[] = {"public.events"};
    uint64_t gens[] = {1};
    size_t blen = 8192;
    char *body = h2o_mem_alloc_pool(&pool, blen);
    for (size_t i = 0; i != blen; ++i)
        body[i] = (char)("[{\"n\":1},\0"[i % 10]);
    fetch_body = body, fetch_body_len = blen;

    CHECK(pulse_cache_key(key, "acme", "events", args, 1, tags, gens, 1) > 0, "store: key");
    fetch_rec_t miss = {0}, hit = {0}, bad = {0};
    CHECK(pulse_cache_fetch(r, key, on_fetch, &miss) == 0, "fetch sent");
    run_for(&miss.calls, 2000);
    CHECK(miss.calls == 1 && miss.status == PULSE_CACHE_LOOKUP_MISS, "fetch of an absent key: miss");

    pulse_cache_entry_t e;
    CHECK(pulse_cache_entry_init(&pool, &e, 200, h2o_iovec_init(H2O_STRLIT("application/json")), h2o_iovec_init(body, blen),
                                 h2o_iovec_init(NULL, 0), 1764075600000ULL, 60000) == 0,
          "store: entry");
    CHECK(pulse_cache_store(r, &pool, key, &e, pulse_cache_redis_ttl_ms(60000, 30000, 300000)) == 0, "store sent");
    CHECK(pulse_cache_fetch(r, key, on_fetch, &hit) == 0, "fetch after store sent");
    run_for(&hit.calls, 2000);
    CHECK(hit.calls == 1 && hit.status == PULSE_CACHE_LOOKUP_HIT && hit.body_ok && hit.gzip_ok && hit.etag_ok &&
              hit.created_at == 1764075600000ULL,
          "fetch after store: hit with the binary body, gzip variant and etag");

    rec_t ttl = {0}, garbage = {0};
    CHECK(pulse_redis_command(r, on_rec, &ttl, "PTTL %s", key) == 0 && run_for(&ttl.calls, 2000) && ttl.integer > 350000 &&
              ttl.integer <= 360000,
          "stored with PX ttl + max(swr, sie)");
    CHECK(pulse_redis_command(r, on_rec, &garbage, "SET %s %s", key, "PLC\x01garbage") == 0 && run_for(&garbage.calls, 2000),
          "overwrite with garbage");
    CHECK(pulse_cache_fetch(r, key, on_fetch, &bad) == 0 && run_for(&bad.calls, 2000) && bad.status == PULSE_CACHE_LOOKUP_MISS,
          "undecodable value: miss");
    h2o_mem_clear_pool(&pool);
}

static void test_unreachable(void)
{
    pulse_redis_config_t c = test_conf(free_port());
    rec_t x = {0};
    pulse_redis_t *r = pulse_redis_create(loop, &c);
    CHECK(r != NULL, "client on a closed port created");
    run_for(NULL, 400);
    CHECK(!pulse_redis_is_up(r) && pulse_redis_command(r, on_rec, &x, "PING") == -1, "closed port: down, fail fast");
    pulse_redis_stats_t st;
    fetch_rec_t f = {0};
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    pulse_cache_entry_t e;
    if (pulse_cache_entry_init(&pool, &e, 200, h2o_iovec_init(H2O_STRLIT("application/json")), h2o_iovec_init(H2O_STRLIT("{}")),
                               h2o_iovec_init(NULL, 0), 1, 1000) != 0)
        CHECK(0, "entry");
    CHECK(pulse_cache_fetch(r, "k", on_fetch, &f) == -1 && pulse_cache_store(r, &pool, "k", &e, 1000) == -1 && f.calls == 0,
          "cache fetch/store fail fast while Redis is down");
    h2o_mem_clear_pool(&pool);
    pulse_redis_stats(r, &st);
    CHECK(st.connects == 0 && st.fast_fails == 1, "stats of a client that never connected");
    pulse_redis_destroy(r);
    CHECK(x.calls == 0, "no callback");
}

static int raw_send(int port, const char *resp)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        write(fd, resp, strlen(resp)) != (ssize_t)strlen(resp)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* a script that never ends: Redis answers -BUSY, which counts against the breaker like a timeout */
static void test_busy(void)
{
    pulse_redis_config_t c = test_conf(redis_port);
    c.command_timeout_ms = 2000;
    pulse_redis_t *r = pulse_redis_create(loop, &c);
    rec_t g[3] = {{0}}, after = {0};
    CHECK(run_until_state(r, PULSE_REDIS_UP, 2000), "busy: client up");
    int script = raw_send(redis_port, "*3\r\n$4\r\nEVAL\r\n$17\r\nwhile true do end\r\n$1\r\n0\r\n");
    CHECK(script >= 0, "busy: endless script started");
    run_for(NULL, 200); /* past lua-time-limit */
    int sent = 0;
    for (int i = 0; i != 3; ++i)
        sent += pulse_redis_command(r, on_rec, &g[i], "GET pulse:test:k") == 0;
    run_for(&g[2].calls, 3000);
    CHECK(sent == 3 && g[2].calls == 1 && g[2].type == REDIS_REPLY_ERROR && strncmp(g[2].str, "BUSY", 4) == 0,
          "busy: commands answered -BUSY");
    CHECK(!pulse_redis_is_up(r), "busy: 3 BUSY replies open the breaker");
    int killer = raw_send(redis_port, "*2\r\n$6\r\nSCRIPT\r\n$4\r\nKILL\r\n");
    CHECK(killer >= 0 && run_until_state(r, PULSE_REDIS_UP, 3000), "busy: breaker closes after SCRIPT KILL");
    CHECK(pulse_redis_command(r, on_rec, &after, "PING") == 0 && run_for(&after.calls, 2000) && after.err == NULL &&
              after.type == REDIS_REPLY_STATUS,
          "busy: commands work again");
    if (killer >= 0)
        close(killer);
    if (script >= 0)
        close(script);
    pulse_redis_destroy(r);
}

/* a server that accepts connections (the kernel does) but never answers: every probe times out */
static void test_silent_server(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        CHECK(0, "silent server listens");
        return;
    }
    pulse_redis_config_t c = test_conf(ntohs(sin.sin_port));
    /* A probe that blocked the loop would hold it for the whole connect
     * timeout (2 s); the bound below leaves room for a loaded machine. */
    c.connect_timeout_ms = 2000;
    c.backoff_min_ms = 50;
    c.backoff_max_ms = 200;
    pulse_redis_t *r = pulse_redis_create(loop, &c);
    rec_t x = {0};
    int saw_connecting = 0, ever_up = 0;
    uint64_t t0 = now_ms(), longest = 0;
    while (now_ms() - t0 < 1000) {
        uint64_t a = now_ms();
        h2o_evloop_run(loop, 10);
        if (now_ms() - a > longest)
            longest = now_ms() - a;
        saw_connecting |= pulse_redis_state(r) == PULSE_REDIS_CONNECTING;
        ever_up |= pulse_redis_state(r) == PULSE_REDIS_UP;
    }
    CHECK(!ever_up, "silent server: never up");
    CHECK(saw_connecting, "silent server: half-open while probing");
    CHECK(longest < 1000, "silent server: the loop never waits on it");
    CHECK(pulse_redis_command(r, on_rec, &x, "PING") == -1, "silent server: commands fail fast");
    pulse_redis_stats_t st;
    pulse_redis_stats(r, &st);
    CHECK(st.connects == 0, "silent server: no connection counted");
    pulse_redis_destroy(r);
    close(fd);
    CHECK(x.calls == 0, "silent server: no callback");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    atexit(stop_redis);
    loop = h2o_evloop_create();
    test_url();

    redis_port = free_port();
    if (redis_port < 0 || start_redis(redis_port) != 0) {
        CHECK(0, "redis-server starts");
        TEST_DONE();
    }
    pulse_redis_config_t c = test_conf(redis_port);
    pulse_redis_t *r = pulse_redis_create(loop, &c);
    CHECK(r != NULL && pulse_redis_state(r) != PULSE_REDIS_UP, "client created, not up before the probe");
    CHECK(run_until_state(r, PULSE_REDIS_UP, 2000), "client up after connecting");
    if (pulse_redis_is_up(r)) {
        /* the functional checks on a client whose commands may take 2 s: on a loaded machine a GET can take longer than
           the 100 ms that the timeout and breaker checks below need */
        pulse_redis_config_t patient = test_conf(redis_port);
        patient.command_timeout_ms = 2000;
        pulse_redis_t *p = pulse_redis_create(loop, &patient);
        CHECK(run_until_state(p, PULSE_REDIS_UP, 2000), "patient client up");
        test_basic(p);
        test_pipeline(p);
        test_large();
        test_cache_store(p);
        pulse_redis_destroy(p);
        test_timeout(r);
        test_breaker_slow(r);
        test_kill_restart(r);
        test_destroy_pending();
        test_destroy_in_callback();
        test_db_and_limits();
        test_busy();
    }
    test_unreachable();
    test_silent_server();
    pulse_redis_destroy(r);
    h2o_evloop_run(loop, 0); /* let closed sockets be freed */
    stop_redis();
    h2o_evloop_destroy(loop);
    TEST_DONE();
}
