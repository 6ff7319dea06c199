/* keyed_test.c: the keyed-tags map and the check of a cached answer's keyed state (keyed.h) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keyed.h"
#include "test.h"

/* the keyed state of an entry made in `snapshot`, reading `ntags` tags at their generations */
static h2o_iovec_t state(h2o_mem_pool_t *pool, const char *json)
{
    h2o_iovec_t out = {NULL, 0};
    if (pulse_keyed_state_from_json(pool, json, strlen(json), &out) != 0)
        out = h2o_iovec_init(NULL, 0);
    return out;
}

static void test_value_tags(void)
{
    CHECK(pulse_keyed_is_value_tag("ev:id=7", 7), "value tag");
    CHECK(pulse_keyed_is_value_tag("a:b:c=x:y", 9), "value tag with ':' in the value");
    CHECK(!pulse_keyed_is_value_tag("ev:id=*", 7), "an epoch is not a value tag");
    CHECK(!pulse_keyed_is_value_tag("ev:id", 5) && !pulse_keyed_is_value_tag("public.events", 13), "plain tags");
    CHECK(!pulse_keyed_is_value_tag("a=b", 3), "'=' without a ':' before it");
}

static void test_snapshots(void)
{
    pulse_keyed_snapshot_t s, c;
    CHECK(pulse_keyed_parse_snapshot("10:20:12,15", 11, NULL, &s) == 0 && s.xmin == 10 && s.xmax == 20 && s.nxip == 2 &&
              s.xip[0] == 12 && s.xip[1] == 15,
          "parse a snapshot");
    free(s.xip);
    CHECK(pulse_keyed_parse_snapshot("10:20:", 6, NULL, &s) == 0 && s.nxip == 0, "parse one without xip");
    const char *bad[] = {"", "10", "10:20", "20:10:", "10:20:9", "10:20:20", "10:20:12,", "x:20:", "10:20:1a", "10:20:,12"};
    int refused = 0;
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        memset(&s, 0, sizeof(s));
        refused += pulse_keyed_parse_snapshot(bad[i], strlen(bad[i]), NULL, &s) != 0;
    }
    CHECK(refused == (int)(sizeof(bad) / sizeof(bad[0])), "malformed snapshots refused");

    /* covers: s sees everything c sees */
    CHECK(pulse_keyed_parse_snapshot("100:110:105", 11, NULL, &c) == 0, "cover parsed");
    CHECK(pulse_keyed_parse_snapshot("100:120:105,115", 15, NULL, &s) == 0 && pulse_keyed_snapshot_covers(&s, &c),
          "a later snapshot covers (105 still running in both)");
    free(s.xip);
    CHECK(pulse_keyed_parse_snapshot("100:120:103", 11, NULL, &s) == 0 && !pulse_keyed_snapshot_covers(&s, &c),
          "not when s still sees running a transaction c saw finished (103)");
    free(s.xip);
    CHECK(pulse_keyed_parse_snapshot("90:105:", 7, NULL, &s) == 0 && !pulse_keyed_snapshot_covers(&s, &c),
          "not an older snapshot (xmax 105 < 110)");
    free(s.xip);
    CHECK(pulse_keyed_parse_snapshot("110:130:", 8, NULL, &s) == 0 && pulse_keyed_snapshot_covers(&s, &c),
          "a snapshot after all of c's transactions ended");
    free(s.xip);
    free(c.xip);
}

static void test_map(void)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    pulse_keyed_t *k = pulse_keyed_create(16);
    CHECK(k != NULL && pulse_keyed_coverage_pending(k), "created with the coverage pending");

    h2o_iovec_t e1 = state(&pool, "{\"snapshot\": \"100:110:105\", \"tags\": [[\"ev:id=7\", 3], [\"ev:tenant_id=1\", 0]]}");
    CHECK(e1.len != 0, "state from JSON");
    CHECK(!pulse_keyed_current(k, e1), "unknown tags, coverage pending: not current");
    CHECK(pulse_keyed_current(k, h2o_iovec_init(NULL, 0)), "no keyed tags: current");

    uint64_t epoch = pulse_keyed_coverage_epoch(k);
    CHECK(pulse_keyed_set_coverage(k, "100:101:", 8, epoch) == 0 && !pulse_keyed_coverage_pending(k), "coverage set");
    CHECK(pulse_keyed_current(k, e1), "unknown tags, the entry's snapshot covers the coverage: current");

    CHECK(pulse_keyed_notify(k, "ev:id=7", 7, 3) == 0 && pulse_keyed_current(k, e1), "known at the entry's generation: current");
    CHECK(pulse_keyed_notify(k, "ev:id=7", 7, 4) == 0 && !pulse_keyed_current(k, e1), "bumped since: not current");
    CHECK(pulse_keyed_raise(k, "ev:id=7", 7, 2) == 0 && !pulse_keyed_current(k, e1), "a write's older bump does not lower it");
    CHECK(pulse_keyed_notify(k, "ev:id=7", 7, 1) == 0 && pulse_keyed_current(k, e1),
          "a notification sets it (a pruned tag starts again at 1)");

    /* coverage after the entry was made: unknown tags cannot be vouched for */
    CHECK(pulse_keyed_set_coverage(k, "108:112:", 8, pulse_keyed_coverage_epoch(k)) == 0 && !pulse_keyed_current(k, e1),
          "a coverage the entry's snapshot does not cover: not current");
    CHECK(pulse_keyed_set_coverage(k, "100:101:", 8, pulse_keyed_coverage_epoch(k)) == 0, "coverage back");

    /* eviction: the least recently bumped goes, and the coverage is pending until a snapshot taken after it */
    char tag[32];
    int fed = 0;
    for (int i = 0; i != 16; ++i) {
        int n = snprintf(tag, sizeof(tag), "t:k=%d", i);
        fed += pulse_keyed_notify(k, tag, (size_t)n, 1) == 0;
    }
    CHECK(fed == 16, "16 more tags");
    pulse_keyed_stats_t st;
    pulse_keyed_stats(k, &st);
    CHECK(st.tags == 16 && st.evictions == 1 && st.coverage_pending, "full: one evicted (ev:id=7), coverage pending");
    CHECK(!pulse_keyed_current(k, e1), "pending coverage: unknown tags count as bumped");
    epoch = pulse_keyed_coverage_epoch(k);
    CHECK(pulse_keyed_notify(k, "t:k=99", 6, 1) == 0, "one more eviction after the epoch was read");
    CHECK(pulse_keyed_set_coverage(k, "100:101:", 8, epoch) == 0 && pulse_keyed_coverage_pending(k),
          "a snapshot taken before the last eviction keeps the coverage pending");
    CHECK(pulse_keyed_set_coverage(k, "100:101:", 8, pulse_keyed_coverage_epoch(k)) == 0 && !pulse_keyed_coverage_pending(k) &&
              pulse_keyed_current(k, e1),
          "a snapshot taken after it: covered again");

    pulse_keyed_reset(k);
    pulse_keyed_stats(k, &st);
    CHECK(st.tags == 0 && st.resets == 1 && st.coverage_pending && !pulse_keyed_current(k, e1), "reset forgets all");

    /* malformed states are never current */
    CHECK(state(&pool, "{\"tags\": []}").len == 0 && state(&pool, "{\"snapshot\": \"1:2:\", \"tags\": [[\"a\"]]}").len == 0 &&
              state(&pool, "{\"snapshot\": \"1:2:\", \"tags\": [[\"a\", -1]]}").len == 0 && state(&pool, "not json").len == 0,
          "malformed keyed_state JSON refused");
    CHECK(!pulse_keyed_current(k, h2o_iovec_init(H2O_STRLIT("no nul"))) && !pulse_keyed_current(k, h2o_iovec_init("1:2:\0\0\0", 7)),
          "truncated states are not current");
    pulse_keyed_destroy(k);
    h2o_mem_clear_pool(&pool);
}

int main(void)
{
    test_value_tags();
    test_snapshots();
    test_map();
    TEST_DONE();
}
