/*
 * replicas_test.c: the pure pieces of read replicas (replicas.h): LSN text,
 * the client's token (Pulse-Min-LSN and the cookie), the routing rule, the
 * lag estimate, the check of a replica's cache fill, tag stamps, and the
 * replica_urls list option (config.c).
 */
#include <stdlib.h>
#include <unistd.h>
#include "config.h"
#include "replicas.h"
#include "test.h"

static void test_lsn(void)
{
    uint64_t v = 0;
    char buf[PULSE_REPLICAS_LSN_SIZE];
    CHECK(pulse_replicas_lsn_parse("0/16B3748", 9, &v) == 0 && v == 0x16B3748, "lsn: 0/16B3748");
    CHECK(pulse_replicas_lsn_parse("1A/ff", 5, &v) == 0 && v == ((uint64_t)0x1A << 32 | 0xff), "lsn: high word, lower-case hex");
    CHECK(pulse_replicas_lsn_parse("FFFFFFFF/FFFFFFFF", 17, &v) == 0 && v == UINT64_MAX, "lsn: the largest");
    const char *bad[] = {"", "/", "0/", "/0", "0", "0/0/0", "123456789/0", "0/123456789", "g/0", "0/-1", " 0/1", "0/1 ", "0x1/2"};
    int all_bad = 1;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pulse_replicas_lsn_parse(bad[i], strlen(bad[i]), &v) == 0) {
            printf("#   accepted: \"%s\"\n", bad[i]);
            all_bad = 0;
        }
    CHECK(all_bad, "lsn: malformed ones are refused");
    pulse_replicas_lsn_format((uint64_t)0x2 << 32 | 0x3001150, buf);
    CHECK_STR(buf, "2/3001150", "lsn: formatted as PostgreSQL does");
    pulse_replicas_lsn_format(UINT64_MAX, buf);
    CHECK_STR(buf, "FFFFFFFF/FFFFFFFF", "lsn: the largest fits");
}

static void test_token(void)
{
    h2o_req_t req;
    const char *err = NULL;
    pulse_replicas_pick_t pick;
    memset(&req, 0, sizeof(req));
    memset(&pick, 0, sizeof(pick));
    h2o_mem_init_pool(&req.pool);
    CHECK(pulse_replicas_read_token(&req, "pulse_lsn", &pick, &err) == 0 && pick.min_lsn == 0, "token: none");
    h2o_add_header_by_str(&req.pool, &req.headers, H2O_STRLIT("pulse-min-lsn"), 0, NULL, H2O_STRLIT(" 0/10 "));
    h2o_add_header_by_str(&req.pool, &req.headers, H2O_STRLIT("pulse-min-lsn"), 0, NULL, H2O_STRLIT("0/30"));
    CHECK(pulse_replicas_read_token(&req, NULL, &pick, &err) == 0 && pick.min_lsn == 0x30, "token: the largest header");
    h2o_add_header(&req.pool, &req.headers, H2O_TOKEN_COOKIE, NULL, H2O_STRLIT("a=b; pulse_lsn=0/40;c=d"));
    CHECK(pulse_replicas_read_token(&req, "pulse_lsn", &pick, &err) == 0 && pick.min_lsn == 0x40, "token: the cookie, larger");
    CHECK(pulse_replicas_read_token(&req, "", &pick, &err) == 0 && pick.min_lsn == 0x30, "token: no cookie configured");
    h2o_add_header(&req.pool, &req.headers, H2O_TOKEN_COOKIE, NULL, H2O_STRLIT("pulse_lsn=garbage; xpulse_lsn=0/99"));
    CHECK(pulse_replicas_read_token(&req, "pulse_lsn", &pick, &err) == 0 && pick.min_lsn == 0x40,
          "token: a bad cookie, or another cookie's name ending the same, is ignored");
    h2o_add_header_by_str(&req.pool, &req.headers, H2O_STRLIT("pulse-min-lsn"), 0, NULL, H2O_STRLIT("yesterday"));
    CHECK(pulse_replicas_read_token(&req, "pulse_lsn", &pick, &err) == -1 && err != NULL && strstr(err, "Pulse-Min-LSN") != NULL,
          "token: a bad header is an error");
    h2o_mem_clear_pool(&req.pool);
}

static void test_choose(void)
{
    pulse_replicas_decision_t why;
    pulse_replicas_view_t v[3] = {{1, 10, 100, 5}, {1, 0, 200, 1}, {1, 2000, 300, 0}};
    CHECK(pulse_replicas_choose(v, 3, 1000, 0, 0, &why) == 1 && why == PULSE_REPLICAS_FRESH,
          "choose: the least loaded within the lag");
    CHECK(pulse_replicas_choose(v, 3, 1000, 150, 0, &why) == 1, "choose: one that replayed the required LSN");
    CHECK(pulse_replicas_choose(v, 3, 1000, 250, 0, &why) == -1 && why == PULSE_REPLICAS_MIN_LSN_PRIMARY,
          "choose: none replayed it (the one that did lags too much)");
    CHECK(pulse_replicas_choose(v, 3, 5000, 250, 0, &why) == 2, "choose: a larger lag bound admits it");
    v[1].usable = 0;
    CHECK(pulse_replicas_choose(v, 3, 1000, 0, 0, &why) == 0, "choose: an unusable one is skipped");
    v[0].lag_ms = -1;
    CHECK(pulse_replicas_choose(v, 3, 1000, 0, 0, &why) == -1 && why == PULSE_REPLICAS_LAGGING,
          "choose: unknown lag and too much lag are lagging");
    v[0].usable = v[2].usable = 0;
    CHECK(pulse_replicas_choose(v, 3, 1000, 0, 0, &why) == -1 && why == PULSE_REPLICAS_DOWN, "choose: none usable is down");
    pulse_replicas_view_t eq[2] = {{1, 0, 1, 0}, {1, 0, 1, 0}};
    int a = pulse_replicas_choose(eq, 2, 1000, 0, 0, &why), b = pulse_replicas_choose(eq, 2, 1000, 0, 1, &why);
    CHECK(a == 0 && b == 1, "choose: equally loaded ones take turns");
    CHECK(pulse_replicas_choose(v, 0, 1000, 0, 0, &why) == -1 && why == PULSE_REPLICAS_DOWN, "choose: no replica");
}

static void test_lag(void)
{
    pulse_replicas_sample_t h[] = {{1000, 100}, {1100, 200}, {1200, 200}, {1300, 400}};
    CHECK(pulse_replicas_lag_ms(h, 4, 1350, 400, 5000) == 0, "lag: replayed the latest sample: 0");
    CHECK(pulse_replicas_lag_ms(h, 4, 1350, 500, -1) == 0, "lag: ahead of the latest sample: 0");
    CHECK(pulse_replicas_lag_ms(h, 4, 1350, 250, -1) == 150, "lag: since the latest sample it replayed");
    CHECK(pulse_replicas_lag_ms(h, 4, 1350, 250, 40) == 40, "lag: the replay timestamp when it is a smaller bound");
    CHECK(pulse_replicas_lag_ms(h, 4, 1350, 100, -1) == 350, "lag: first sample");
    CHECK(pulse_replicas_lag_ms(h, 4, 1350, 50, 9000) == 9000, "lag: older than the history: the replay timestamp");
    CHECK(pulse_replicas_lag_ms(h, 4, 1350, 50, -1) == -1, "lag: older than the history without a timestamp: unknown");
    CHECK(pulse_replicas_lag_ms(h, 0, 1350, 50, 70) == 70 && pulse_replicas_lag_ms(NULL, 0, 1350, 50, -1) == -1, "lag: no history");
}

static void test_cover(void)
{
    uint64_t g[3] = {5, 0, 7};
    CHECK(pulse_replicas_generations_cover("{5,0,7}", 7, g, 3) == 1, "cover: equal generations");
    CHECK(pulse_replicas_generations_cover("{6,3,9}", 7, g, 3) == 1, "cover: newer generations");
    CHECK(pulse_replicas_generations_cover("{5,0,6}", 7, g, 3) == 0, "cover: one older is not covered");
    CHECK(pulse_replicas_generations_cover("{5,0}", 5, g, 3) == -1, "cover: too few elements");
    CHECK(pulse_replicas_generations_cover("{5,0,7,1}", 9, g, 3) == -1, "cover: too many elements");
    CHECK(pulse_replicas_generations_cover("{5,,7}", 6, g, 3) == -1 && pulse_replicas_generations_cover("5,0,7", 5, g, 3) == -1 &&
              pulse_replicas_generations_cover("{5,0,-7}", 8, g, 3) == -1,
          "cover: malformed");
    CHECK(pulse_replicas_generations_cover("{}", 2, g, 0) == 1 && pulse_replicas_generations_cover("{}", 2, g, 1) == -1,
          "cover: no tags");
}

static void test_stamps(void)
{
    /* a process without replica_urls has no replicas: every function takes NULL */
    char err[256] = "x";
    pulse_config_t conf;
    memset(&conf, 0, sizeof(conf));
    conf.replica_urls = "";
    CHECK(pulse_replicas_create(&conf, NULL, err, sizeof(err)) == NULL && err[0] == '\0', "no replica_urls: no replicas, no error");
    const char *tags[] = {"a", "b"};
    pulse_replicas_stamp(NULL, tags, 2, "0/10");
    CHECK(pulse_replicas_required_lsn(NULL, tags, 2) == 0, "stamps: none without replicas");
    pulse_replicas_pick_t pick = {.decided = 1, .server = 0};
    CHECK(pulse_replicas_route(NULL, &pick, &conf, NULL, 1, NULL, NULL) == 0 && pick.server == 0, "route: no replicas, primary");
    CHECK(strcmp(pulse_replicas_server_name(NULL, &pick), "primary") == 0, "server name: primary");
}

static void test_config(void)
{
    char err[256], path[64];
    snprintf(path, sizeof(path), "/tmp/pulse-replicas-test.XXXXXX");
    int fd = mkstemp(path);
    FILE *fp = fdopen(fd, "w");
    fputs("jwt_secret: x\nreplica_urls:\n  - host=a port=1\n  - \"host=b password='x;y'\"\nreplica_max_lag_ms: 250\n", fp);
    fclose(fp);
    unsetenv("PULSE_REPLICA_URLS");
    pulse_config_t *c = pulse_config_load(path, err, sizeof(err));
    CHECK_STR(c != NULL ? c->replica_urls : err, "host=a port=1\nhost=b password='x;y'", "config: a YAML list, entries whole");
    CHECK(c != NULL && c->replica_max_lag_ms == 250 && c->replica_wait_ms == 50 && c->replica_check_ms == 100,
          "config: replica options and defaults");
    pulse_config_free(c);
    setenv("PULSE_REPLICA_URLS", " host=c ; ;host=d ", 1);
    c = pulse_config_load(path, err, sizeof(err));
    CHECK_STR(c != NULL ? c->replica_urls : err, "host=c\nhost=d", "config: the environment's list, split at ';'");
    unsetenv("PULSE_REPLICA_URLS");
    pulse_config_free(c);
    fp = fopen(path, "w");
    fputs("jwt_secret: x\npool_size:\n  - 1\n", fp);
    fclose(fp);
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "lists are not options") != NULL, "config: a list for another option is refused");
    fp = fopen(path, "w");
    fputs("jwt_secret: x\nreplica_lsn_cookie: \"a;b\"\n", fp);
    fclose(fp);
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "replica_lsn_cookie") != NULL, "config: a bad cookie name is refused");
    unlink(path);
}

int main(void)
{
    test_lsn();
    test_token();
    test_choose();
    test_lag();
    test_cover();
    test_stamps();
    test_config();
    TEST_DONE();
}
