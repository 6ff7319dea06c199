/*
 * channel_test.c: unit tests of the invalidation channel's pure pieces: the
 * trust of the generations map (generations.c: vouch, vouched, the time
 * spent unverified) and the heartbeat's ring of beats (channel.c: arrivals,
 * forged and stale payloads, missed beats, a frozen listener).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "channel.h"
#include "generations.h"
#include "test.h"

static void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

static void test_trust(void)
{
    pulse_generations_t *g = pulse_generations_create();
    uint64_t now = pulse_generations_now_us();
    CHECK(g != NULL && pulse_generations_vouched(g, now), "trust: without a max lag the map is always trusted");
    CHECK(pulse_generations_unverified_us(g, now + 5000000) == 0, "trust: ... and never counted unverified");

    pulse_generations_set_max_lag(g, 200000); /* 200 ms */
    now = pulse_generations_now_us();
    CHECK(!pulse_generations_vouched(g, now), "trust: never vouched for: not trusted");
    pulse_generations_vouch(g, now);
    CHECK(pulse_generations_vouched(g, now) && pulse_generations_vouched(g, now + 199999),
          "trust: vouched at T: trusted until T + max lag (exclusive)");
    CHECK(!pulse_generations_vouched(g, now + 200000) && !pulse_generations_vouched(g, now + 10000000),
          "trust: at T + max lag and later: not trusted");
    pulse_generations_vouch(g, now - 100000);
    CHECK(pulse_generations_vouched_as_of(g) == now, "trust: an older vouch changes nothing");
    pulse_generations_vouch(g, now + 50000);
    CHECK(pulse_generations_vouched_as_of(g) == now + 50000 && pulse_generations_vouched(g, now + 249999),
          "trust: a newer vouch moves the instant forward");
    pulse_generations_destroy(g);

    /* the time spent unverified: from creation to the first vouch, then every stretch past T + max lag */
    g = pulse_generations_create();
    pulse_generations_set_max_lag(g, 20000); /* 20 ms */
    sleep_us(30000);
    uint64_t t1 = pulse_generations_now_us();
    uint64_t u1 = pulse_generations_unverified_us(g, t1);
    CHECK(u1 >= 30000 && u1 < 1000000, "unverified: counted from creation until the first vouch");
    pulse_generations_vouch(g, pulse_generations_now_us());
    uint64_t t2 = pulse_generations_now_us();
    uint64_t u2 = pulse_generations_unverified_us(g, t2);
    CHECK(u2 >= u1 && pulse_generations_unverified_us(g, t2 + 19000) == u2, "unverified: not counted while trusted");
    CHECK(pulse_generations_unverified_us(g, t2 + 20000 + 5000) >= u2 + 4000, "unverified: counted again past the max lag");
    sleep_us(50000); /* about 30 ms untrusted */
    uint64_t before = pulse_generations_unverified_us(g, pulse_generations_now_us());
    pulse_generations_vouch(g, pulse_generations_now_us() - 100000); /* an old instant: still untrusted after it */
    uint64_t after = pulse_generations_unverified_us(g, pulse_generations_now_us());
    CHECK(after >= before && after < before + 20000, "unverified: a vouch that does not restore trust counts nothing twice");
    uint64_t prev = after, monotone = 1;
    for (int i = 0; i < 50; i++) { /* a counter: never goes back, whatever vouches in between */
        if (i % 7 == 0)
            pulse_generations_vouch(g, pulse_generations_now_us() - (uint64_t)(i % 3) * 15000);
        uint64_t u = pulse_generations_unverified_us(g, pulse_generations_now_us());
        monotone &= u >= prev;
        prev = u;
        sleep_us(1000);
    }
    CHECK(monotone, "unverified: the total never decreases");
    pulse_generations_destroy(g);
}

static void test_beats(void)
{
    pulse_channel_t *c = pulse_channel_create(100000); /* delivery 100 ms */
    CHECK(c != NULL && strncmp(pulse_channel_name(c), "pulse_heartbeat_", 16) == 0 && strlen(pulse_channel_name(c)) < 64,
          "beats: a channel name of this process");
    pulse_channel_t *other = pulse_channel_create(100000);
    CHECK(other != NULL && strcmp(pulse_channel_name(c), pulse_channel_name(other)) != 0, "beats: two channels, two names");
    pulse_channel_destroy(other);

    uint64_t sent = 0, t = 1000000000;
    uint64_t s1 = pulse_channel_beat_begin(c, t);
    char p[32];
    snprintf(p, sizeof(p), "%llu", (unsigned long long)s1);
    CHECK(pulse_channel_beat_received(c, p, t + 500, &sent) == 1 && sent == t,
          "beats: a beat received before its query's answer still counts, with its send time");
    pulse_channel_beat_end(c, s1, t + 800, 1);
    CHECK(pulse_channel_beat_received(c, p, t + 900, &sent) == 0, "beats: the same beat twice: ignored");
    CHECK(pulse_channel_beat_received(c, "999", t, &sent) == 0, "beats: a beat never sent (forged ahead): ignored");
    CHECK(pulse_channel_beat_received(c, "", t, &sent) == 0 && pulse_channel_beat_received(c, "1x", t, &sent) == 0 &&
              pulse_channel_beat_received(c, "-1", t, &sent) == 0 &&
              pulse_channel_beat_received(c, "99999999999999999999999", t, &sent) == 0,
          "beats: malformed payloads: ignored");

    /* a beat whose query failed may have committed: when it arrives, its send time vouches all the same */
    uint64_t s2 = pulse_channel_beat_begin(c, t + 1000);
    pulse_channel_beat_end(c, s2, t + 2000, 0);
    snprintf(p, sizeof(p), "%llu", (unsigned long long)s2);
    CHECK(pulse_channel_beat_received(c, p, t + 3000, &sent) == 1 && sent == t + 1000, "beats: a failed beat that arrives counts");

    /* missed: not received within the delivery time of its send, counted once, even when it arrives later */
    uint64_t s3 = pulse_channel_beat_begin(c, t + 10000);
    pulse_channel_beat_end(c, s3, t + 11000, 1);
    pulse_channel_expire(c, t + 10000 + 99999);
    pulse_channel_stats_t st;
    pulse_channel_stats(c, &st);
    CHECK(st.missed == 0, "beats: within the delivery time: not missed");
    pulse_channel_expire(c, t + 10000 + 100000);
    pulse_channel_expire(c, t + 10000 + 500000);
    pulse_channel_stats(c, &st);
    CHECK(st.missed == 1, "beats: past the delivery time: missed, once");
    snprintf(p, sizeof(p), "%llu", (unsigned long long)s3);
    CHECK(pulse_channel_beat_received(c, p, t + 600000, &sent) == 1 && sent == t + 10000, "beats: a late beat still arrives");
    pulse_channel_stats(c, &st);
    CHECK(st.sent == 2 && st.failed == 1 && st.received == 3 && st.missed == 1, "beats: counters");

    /* a frozen listener: a committed beat sent after its LISTEN, not received within the timeout */
    uint64_t s4 = pulse_channel_beat_begin(c, t + 700000);
    CHECK(!pulse_channel_overdue(c, t, t + 5000000, 1000000), "overdue: a beat not committed yet is not overdue");
    pulse_channel_beat_end(c, s4, t + 710000, 1);
    CHECK(!pulse_channel_overdue(c, t, t + 710000 + 999999, 1000000), "overdue: committed less than the timeout ago: no");
    CHECK(pulse_channel_overdue(c, t, t + 710000 + 1000000, 1000000), "overdue: committed the timeout ago, not received: yes");
    CHECK(!pulse_channel_overdue(c, t + 700000, t + 5000000, 1000000),
          "overdue: a beat sent before the connection's LISTEN cannot arrive on it: not counted");
    snprintf(p, sizeof(p), "%llu", (unsigned long long)s4);
    CHECK(pulse_channel_beat_received(c, p, t + 2000000, &sent) == 1 && !pulse_channel_overdue(c, t, t + 5000000, 1000000),
          "overdue: received: no longer");

    /* the ring forgets beats older than PULSE_CHANNEL_RING beats */
    uint64_t first = pulse_channel_beat_begin(c, t + 3000000);
    for (int i = 0; i < PULSE_CHANNEL_RING; i++)
        (void)pulse_channel_beat_begin(c, t + 3000001 + (uint64_t)i);
    snprintf(p, sizeof(p), "%llu", (unsigned long long)first);
    CHECK(pulse_channel_beat_received(c, p, t + 4000000, &sent) == 0, "beats: a beat older than the ring: ignored");
    pulse_channel_destroy(c);
}

int main(void)
{
    test_trust();
    test_beats();
    TEST_DONE();
}
