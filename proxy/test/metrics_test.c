/*
 * metrics_test.c: histogram bucketing, the exposition text (sums over shards,
 * label escaping) and the SLO windows (metrics.c).
 */
#include <math.h>
#include <stdlib.h>
#include "metrics.h"
#include "test.h"

static int contains(const char *text, const char *line)
{
    return strstr(text, line) != NULL;
}

int main(void)
{
    /* bucketing: a bound belongs to its own bucket (le is "less or equal") */
    CHECK(pulse_metrics_bucket(0) == 0, "0 s: first bucket");
    CHECK(pulse_metrics_bucket(0.0005) == 0, "0.5 ms: le=0.0005");
    CHECK(pulse_metrics_bucket(0.00051) == 1, "0.51 ms: le=0.001");
    CHECK(pulse_metrics_bucket(0.1) == 7 && pulse_metrics_bounds[7] == 0.1, "100 ms: le=0.1");
    CHECK(pulse_metrics_bucket(0.15) == 8 && pulse_metrics_bounds[8] == 0.2, "150 ms: le=0.2");
    CHECK(pulse_metrics_bucket(10) == PULSE_METRICS_NBUCKETS - 1, "10 s: last finite bucket");
    CHECK(pulse_metrics_bucket(10.5) == PULSE_METRICS_NBUCKETS, "10.5 s: +Inf");

    /* escaping */
    char out[64];
    CHECK(pulse_metrics_escape(out, sizeof(out), "a\\b\"c\nd") == 10, "escaped length");
    CHECK_STR(out, "a\\\\b\\\"c\\nd", "backslash, quote and newline are escaped");
    CHECK(pulse_metrics_escape(out, 4, "abcdef") == 6 && strcmp(out, "abc") == 0, "truncated like snprintf");

    /* rendering: two shards summed */
    CHECK(pulse_metrics_init(2) == 0, "init");
    pulse_metrics_shard_t *s0 = pulse_metrics_shard(0), *s1 = pulse_metrics_shard(1);
    for (int i = 0; i < 3; i++)
        pulse_metrics_observe_request(s0, "events", PULSE_CLASS_READ, 200, 0.003);
    pulse_metrics_observe_request(s1, "events", PULSE_CLASS_READ, 200, 0.3);
    pulse_metrics_observe_request(s1, "events", PULSE_CLASS_READ, 503, 20);
    pulse_metrics_observe_request(s0, NULL, PULSE_CLASS_WRITE, 404, 0.0001);
    pulse_metrics_observe_request(s1, "", PULSE_CLASS_READ, 404, 0.0001);
    pulse_metrics_observe_request(s1, "we\"ird\\\n", PULSE_CLASS_SEARCH, 400, 0.001);
    pulse_metrics_observe_cache(s0, "events", PULSE_CLASS_READ, PULSE_METRICS_CACHE_HIT);
    pulse_metrics_observe_cache(s1, "events", PULSE_CLASS_READ, PULSE_METRICS_CACHE_HIT);
    pulse_metrics_observe_cache(s1, "events", PULSE_CLASS_READ, PULSE_METRICS_CACHE_MISS);
    pulse_metrics_observe_pg_error(s0, "23505");
    pulse_metrics_observe_pg_error(s1, "23503");
    pulse_metrics_observe_pg_error(s1, NULL);
    pulse_metrics_observe_pg_unavailable(s0);
    size_t len;
    char *text = pulse_metrics_render(NULL, &len);
    CHECK(text != NULL && strlen(text) == len, "render");
    if (text == NULL)
        TEST_DONE();
    CHECK(contains(text, "# TYPE pulse_http_requests_total counter\n"), "TYPE line");
    CHECK(contains(text, "pulse_http_requests_total{endpoint=\"events\",class=\"read\",status=\"200\"} 4\n"),
          "200s of one endpoint summed over shards");
    CHECK(contains(text, "pulse_http_requests_total{endpoint=\"events\",class=\"read\",status=\"503\"} 1\n"), "503s");
    CHECK(contains(text, "pulse_http_requests_total{endpoint=\"\",class=\"\",status=\"404\"} 2\n"),
          "no endpoint: endpoint=\"\" class=\"\" whatever the class given");
    CHECK(contains(text, "pulse_http_requests_total{endpoint=\"we\\\"ird\\\\\\n\",class=\"search\",status=\"400\"} 1\n"),
          "label values escaped");
    CHECK(contains(text, "pulse_http_request_duration_seconds_bucket{endpoint=\"events\",class=\"read\",le=\"0.005\"} 3\n"),
          "cumulative bucket le=0.005");
    CHECK(contains(text, "pulse_http_request_duration_seconds_bucket{endpoint=\"events\",class=\"read\",le=\"0.5\"} 4\n"),
          "cumulative bucket le=0.5");
    CHECK(contains(text, "pulse_http_request_duration_seconds_bucket{endpoint=\"events\",class=\"read\",le=\"10\"} 4\n"),
          "20 s is beyond le=10");
    CHECK(contains(text, "pulse_http_request_duration_seconds_bucket{endpoint=\"events\",class=\"read\",le=\"+Inf\"} 5\n"),
          "+Inf bucket counts all");
    CHECK(contains(text, "pulse_http_request_duration_seconds_count{endpoint=\"events\",class=\"read\"} 5\n"), "_count");
    CHECK(contains(text, "pulse_http_request_duration_seconds_sum{endpoint=\"events\",class=\"read\"} 20.309000\n"), "_sum");
    CHECK(contains(text, "pulse_cache_requests_total{endpoint=\"events\",result=\"hit\"} 2\n") &&
              contains(text, "pulse_cache_requests_total{endpoint=\"events\",result=\"miss\"} 1\n") &&
              contains(text, "pulse_cache_requests_total{endpoint=\"events\",result=\"stale\"} 0\n"),
          "cache results");
    CHECK(!contains(text, "pulse_cache_requests_total{endpoint=\"\""), "no cache series for endpoints never cached");
    CHECK(contains(text, "pulse_pg_errors_total{sqlstate_class=\"23\"} 2\n") &&
              contains(text, "pulse_pg_errors_total{sqlstate_class=\"XX\"} 1\n"),
          "PostgreSQL errors by SQLSTATE class");
    CHECK(contains(text, "pulse_pg_unavailable_total 1\n"), "unavailable");
    CHECK(contains(text, "pulse_slo_breaches_total{class=\"batch\",slo=\"p99\"} 0\n"), "SLO counters start at 0");
    CHECK(!contains(text, "pulse_pool_connections") && !contains(text, "pulse_redis_up"), "no pool or Redis before a sync");
    CHECK(text[len - 1] == '\n', "ends with a newline");
    free(text);

    /* quantiles and one window's evaluation */
    uint64_t b[PULSE_METRICS_NBUCKETS + 1] = {0};
    CHECK(pulse_metrics_quantile(b, 0.99) == 0, "empty histogram: 0");
    b[7] = 100; /* (0.05, 0.1] */
    CHECK(fabs(pulse_metrics_quantile(b, 0.5) - 0.075) < 1e-9, "interpolated within the bucket");
    CHECK(fabs(pulse_metrics_quantile(b, 1.0) - 0.1) < 1e-9, "p100 at the bound");
    pulse_metrics_slo_result_t r = pulse_metrics_slo_evaluate(b, 0, 100, 200, 1000);
    CHECK(r.requests == 100 && !r.p95_breached && !r.p99_breached && !r.error_rate_breached,
          "everything within 100 ms: no breach of read's SLO");
    b[9] = 2; /* (0.2, 0.25]: 2 of 102 */
    r = pulse_metrics_slo_evaluate(b, 0, 100, 200, 1000);
    CHECK(!r.p95_breached && r.p99_breached && r.p99 > 0.2, "2% over 200 ms: p99 breached, p95 not");
    r = pulse_metrics_slo_evaluate(b, 1, 100, 200, 1000);
    CHECK(r.error_rate_breached, "1 error in 102: error rate breached");
    r = pulse_metrics_slo_evaluate(b, 1, 100, 200, 10000);
    CHECK(!r.error_rate_breached, "1 error in 102 within 1%");
    b[PULSE_METRICS_NBUCKETS] = 50;
    r = pulse_metrics_slo_evaluate(b, 0, 5000, 10000, 1000);
    CHECK(isinf(r.p99) && r.p99_breached, "beyond 10 s: infinite, breached");
    memset(b, 0, sizeof(b));
    r = pulse_metrics_slo_evaluate(b, 0, 1, 1, 0);
    CHECK(!r.p95_breached && !r.p99_breached && !r.error_rate_breached, "an empty window breaches nothing");

    /* windows: what changed since the previous tick is evaluated, against the configured thresholds */
    pulse_metrics_free();
    CHECK(pulse_metrics_init(1) == 0, "init again");
    s0 = pulse_metrics_shard(0);
    char err[256];
    setenv("PULSE_JWT_SECRET", "x", 1);
    pulse_config_t *conf = pulse_config_load(NULL, err, sizeof(err));
    CHECK(conf != NULL && conf->slo_p95_ms[PULSE_CLASS_READ] == 100 && conf->slo_p99_ms[PULSE_CLASS_SEARCH] == 1000 &&
              conf->slo_p99_ms[PULSE_CLASS_BATCH] == 10000 && conf->slo_error_rate_ppm == 1000 && conf->slo_window_ms == 10000,
          "SLO defaults of the issue");
    if (conf == NULL)
        TEST_DONE();
    for (int i = 0; i < 5; i++)
        pulse_metrics_observe_request(s0, "slow", PULSE_CLASS_READ, 200, 3); /* before the first window: not evaluated */
    CHECK(pulse_metrics_slo_due(0), "due before the first tick");
    pulse_metrics_slo_tick(1000, conf);
    CHECK(!pulse_metrics_slo_due(10999) && pulse_metrics_slo_due(11000), "the next window ends slo_window_ms later");
    for (int i = 0; i < 100; i++)
        pulse_metrics_observe_request(s0, "fast", PULSE_CLASS_READ, 200, 0.01);
    pulse_metrics_slo_tick(5000, conf); /* not due: nothing happens */
    pulse_metrics_slo_tick(11000, conf);
    text = pulse_metrics_render(NULL, &len);
    CHECK(text != NULL && contains(text, "pulse_slo_breaches_total{class=\"read\",slo=\"p95\"} 0\n") &&
              contains(text, "pulse_slo_breaches_total{class=\"read\",slo=\"p99\"} 0\n"),
          "a fast window: no breach (the slow requests before the first window are not in it)");
    free(text);
    for (int i = 0; i < 90; i++)
        pulse_metrics_observe_request(s0, "fast", PULSE_CLASS_READ, 200, 0.01);
    for (int i = 0; i < 10; i++)
        pulse_metrics_observe_request(s0, "slow", PULSE_CLASS_READ, 200, 0.3);
    pulse_metrics_observe_request(s0, "w", PULSE_CLASS_WRITE, 500, 0.01);
    pulse_metrics_observe_request(s0, "s", PULSE_CLASS_SEARCH, 200, 0.9); /* search p99 1 s: fine */
    pulse_metrics_slo_tick(21000, conf);
    text = pulse_metrics_render(NULL, &len);
    CHECK(text != NULL && contains(text, "pulse_slo_breaches_total{class=\"read\",slo=\"p95\"} 1\n") &&
              contains(text, "pulse_slo_breaches_total{class=\"read\",slo=\"p99\"} 1\n"),
          "10% of reads over 250 ms: p95 and p99 breached");
    CHECK(text != NULL && contains(text, "pulse_slo_breaches_total{class=\"write\",slo=\"error_rate\"} 1\n") &&
              contains(text, "pulse_slo_breaches_total{class=\"read\",slo=\"error_rate\"} 0\n"),
          "a write answered 500: write's error rate breached");
    CHECK(text != NULL && contains(text, "pulse_slo_breaches_total{class=\"search\",slo=\"p99\"} 0\n"), "search within its SLO");
    free(text);
    pulse_metrics_slo_tick(31000, conf); /* an empty window */
    text = pulse_metrics_render(NULL, &len);
    CHECK(text != NULL && contains(text, "pulse_slo_breaches_total{class=\"read\",slo=\"p95\"} 1\n"),
          "an empty window adds no breach");
    free(text);
    pulse_config_free(conf);
    pulse_metrics_free();
    TEST_DONE();
}
