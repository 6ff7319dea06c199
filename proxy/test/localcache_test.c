/*
 * localcache_test.c: the per-loop local cache (localcache.c): fresh entries
 * only, copies independent of the caller's buffers, replacement, LRU
 * eviction within the byte bound, oversized and non-200 entries refused,
 * growth of the table with many keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include "localcache.h"
#include "test.h"

static pulse_cache_entry_t entry(char *body, uint64_t created, uint64_t ttl)
{
    pulse_cache_entry_t e = {0};
    e.status = 200;
    e.created_at_ms = created;
    e.ttl_ms = ttl;
    e.content_type = h2o_iovec_init(H2O_STRLIT("application/json"));
    e.etag = h2o_iovec_init(H2O_STRLIT("\"abc\""));
    e.body = h2o_iovec_init(body, strlen(body));
    return e;
}

int main(void)
{
    CHECK(pulse_lcache_create(0) == NULL, "size 0: no local cache");
    pulse_lcache_t *c = pulse_lcache_create(64 * 1024);
    CHECK(c != NULL, "created");
    CHECK(pulse_lcache_get(c, "k1", 1000) == NULL, "absent key: NULL");

    char body[64] = "{\"a\": 1}";
    pulse_cache_entry_t e = entry(body, 1000, 500);
    pulse_lcache_put(c, "k1", &e);
    strcpy(body, "{\"a\": 2}"); /* the caller's buffer changes: the copy does not */
    const pulse_cache_entry_t *g = pulse_lcache_get(c, "k1", 1200);
    CHECK(g != NULL && g->body.len == 8 && memcmp(g->body.base, "{\"a\": 1}", 8) == 0 && g->etag.len == 5 && g->ttl_ms == 500,
          "fresh entry returned, an independent copy");
    CHECK(pulse_lcache_get(c, "k1", 1500) == NULL, "at created + ttl: no longer served (Redis decides)");
    CHECK(pulse_lcache_get(c, "k1", 1200) == NULL, "and it was dropped");

    e = entry(body, 2000, 500);
    pulse_lcache_put(c, "k2", &e);
    char other[] = "{\"b\": 3}";
    pulse_cache_entry_t e2 = entry(other, 2000, 500);
    pulse_lcache_put(c, "k2", &e2);
    g = pulse_lcache_get(c, "k2", 2100);
    pulse_lcache_stats_t st;
    pulse_lcache_stats(c, &st);
    CHECK(g != NULL && memcmp(g->body.base, "{\"b\": 3}", 8) == 0 && st.entries == 1, "put of an existing key replaces it");

    e2.status = 304;
    pulse_lcache_put(c, "k3", &e2);
    CHECK(pulse_lcache_get(c, "k3", 2100) == NULL, "non-200 entries are not stored");
    char *huge = malloc(9000);
    memset(huge, 'x', 8999);
    huge[8999] = '\0';
    pulse_cache_entry_t eh = entry(huge, 2000, 500);
    pulse_lcache_put(c, "k4", &eh);
    CHECK(pulse_lcache_get(c, "k4", 2100) == NULL, "an entry over an eighth of the cache is not stored");
    pulse_lcache_destroy(c);

    /* LRU within 16 KiB: entries of ~1.2 KiB; k0 is read again, so k1 goes first */
    c = pulse_lcache_create(16 * 1024);
    char *kb = malloc(1001);
    memset(kb, 'y', 1000);
    kb[1000] = '\0';
    char key[32];
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        pulse_cache_entry_t ei = entry(kb, 3000, 1000);
        pulse_lcache_put(c, key, &ei);
    }
    CHECK(pulse_lcache_get(c, "k0", 3001) != NULL, "k0 present");
    for (int i = 8; i < 20; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        pulse_cache_entry_t ei = entry(kb, 3000, 1000);
        pulse_lcache_put(c, key, &ei);
        if (i == 10)
            CHECK(pulse_lcache_get(c, "k0", 3001) != NULL, "k0 kept while it is used");
    }
    pulse_lcache_stats(c, &st);
    CHECK(st.bytes <= 16 * 1024 && st.evictions > 0, "within the byte bound, with evictions");
    CHECK(pulse_lcache_get(c, "k1", 3001) == NULL, "the least recently used entry was evicted");
    CHECK(pulse_lcache_get(c, "k19", 3001) != NULL, "the newest entry is there");
    pulse_lcache_destroy(c);

    /* many small keys: the table grows, every key is found */
    c = pulse_lcache_create(64 * 1024 * 1024);
    char small[] = "1";
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        pulse_cache_entry_t ei = entry(small, 4000, 1000);
        pulse_lcache_put(c, key, &ei);
    }
    int found = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        found += pulse_lcache_get(c, key, 4001) != NULL;
    }
    pulse_lcache_stats(c, &st);
    CHECK(found == 20000 && st.entries == 20000 && st.evictions == 0, "20000 keys, all found after the table grew");
    pulse_lcache_destroy(c);
    pulse_lcache_destroy(NULL);
    free(huge);
    free(kb);
    TEST_DONE();
}
