/* test_cache_store.c — the object store (cache/store.c) and its eviction
 * queue (cache/evict.c): lookup outcomes and the BUSY → FILLING → COMPLETE /
 * ABANDONED life of an object, streaming while filling, Vary variants,
 * hit-for-pass expiry with an injected `now`, 304 refresh, the memory
 * budget, max object size, purge, refcounts after unlink, waiters, and a
 * multi-thread stress meant to run under ThreadSanitizer too.
 *
 * The store is a process global: each test uses its own keys, starts from
 * cache_purge_all() and checks deltas of cache_stats. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "../../cache/evict.h"
#include "../../cache/store.h"
#include "unit.h"

#define MIB (1024ull * 1024)

/* ---- helpers ------------------------------------------------------------- */

struct key {
    char text[128];
    slice_t key;
    unsigned char hash[CACHE_KEY_HASH_LEN];
};

static void key_make(struct key *key, const char *host, const char *path, const char *query)
{
    int n = snprintf(key->text, sizeof key->text, "G%c%s%c%s%c%s%c%c", 0, host, 0, path, 0, query, 0, 0);
    key->key = slice_make(key->text, (size_t)n);
    cache_key_hash(key->key, key->hash);
}

/* The Vary signature of a fake request: `context` is the value of the one
 * header a variant may vary on. */
static void signature_of_value(slice_t names, void *context, struct bytebuf *out)
{
    const char *value = context;
    for (size_t i = 0; i < names.len; i++)
        if (names.ptr[i] == '\n')
            bytebuf_appendf(out, "%s\n", value ? value : "\x01");
}

static enum cache_lookup_outcome lookup(const struct key *key, const char *vary_value, int64_t now, struct cache_object **object)
{
    return cache_lookup(key->hash, key->key, signature_of_value, (void *)vary_value, now, object);
}

struct head_builder {
    struct http_header headers[8];
    size_t count;
    char signature[64];
    struct cache_object_head head;
};

static void head_init(struct head_builder *b, const char *path, int64_t content_length)
{
    memset(b, 0, sizeof *b);
    b->head.status = 200;
    b->head.headers = b->headers;
    b->head.path = slice_from_cstr(path);
    b->head.response_time = 1000;
    b->head.request_time = 1000;
    b->head.ttl = 60;
    b->head.content_length = content_length;
}

static void head_add(struct head_builder *b, const char *name, const char *value)
{
    b->headers[b->count++] = (struct http_header){slice_from_cstr(name), slice_from_cstr(value), HTTP_TOKEN_OTHER};
    b->head.header_count = b->count;
}

static void head_vary(struct head_builder *b, const char *value)
{
    head_add(b, "Vary", "Accept-Language");
    b->head.vary_names = SLICE_LITERAL("accept-language\n");
    snprintf(b->signature, sizeof b->signature, "%s\n", value);
    b->head.vary_signature = slice_from_cstr(b->signature);
}

static char pattern_byte(unsigned seed, uint64_t offset)
{
    return (char)((seed * 7 + offset * 13 + (offset >> 9)) & 0xff);
}

/* Returns false when an append reported the object too big to keep. */
static bool append_pattern(struct cache_object *object, unsigned seed, uint64_t from, size_t len)
{
    char buffer[4096];
    bool kept = true;
    while (len > 0) {
        size_t n = len < sizeof buffer ? len : sizeof buffer;
        for (size_t i = 0; i < n; i++)
            buffer[i] = pattern_byte(seed, from + i);
        kept = cache_object_append(object, buffer, n) && kept;
        from += n;
        len -= n;
    }
    return kept;
}

static bool body_matches(struct cache_object *object, unsigned seed, uint64_t length)
{
    char buffer[3001]; /* odd size: reads cross chunk boundaries */
    uint64_t offset = 0;
    while (offset < length) {
        size_t n = cache_object_read(object, offset, buffer, sizeof buffer);
        if (n == 0)
            return false;
        for (size_t i = 0; i < n; i++)
            if (buffer[i] != pattern_byte(seed, offset + i))
                return false;
        offset += n;
    }
    return cache_object_read(object, offset, buffer, sizeof buffer) == 0;
}

/* Stores a complete object for `key` and returns it (the caller's
 * reference), or NULL when the lookup was not a LEADER. */
static struct cache_object *store_object(const struct key *key, const char *vary_value, struct head_builder *b, unsigned seed,
                                         size_t length)
{
    struct cache_object *object;
    if (lookup(key, vary_value, 1000, &object) != CACHE_LOOKUP_LEADER) {
        cache_object_unref(object);
        return NULL;
    }
    cache_object_set_head(object, &b->head);
    append_pattern(object, seed, 0, length);
    cache_object_finish(object, true);
    return object;
}

static unsigned long long stat_of(atomic_ullong *counter)
{
    return atomic_load(counter);
}

/* A waiter that counts notifications; a thread can block until the count
 * changes. */
struct test_waiter {
    struct cache_waiter base;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned events;
};

static void test_waiter_notify(struct cache_waiter *waiter)
{
    struct test_waiter *t = waiter->context;
    pthread_mutex_lock(&t->lock);
    t->events++;
    pthread_cond_signal(&t->changed);
    pthread_mutex_unlock(&t->lock);
}

static void test_waiter_init(struct test_waiter *t)
{
    memset(t, 0, sizeof *t);
    t->base.notify = test_waiter_notify;
    t->base.context = t;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->changed, NULL);
}

static void test_waiter_destroy(struct test_waiter *t)
{
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->changed);
}

static unsigned test_waiter_events(struct test_waiter *t)
{
    pthread_mutex_lock(&t->lock);
    unsigned events = t->events;
    pthread_mutex_unlock(&t->lock);
    return events;
}

/* Blocks until the count differs from `seen`; false after 10 s. */
static bool test_waiter_await(struct test_waiter *t, unsigned seen)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&t->lock);
    int rc = 0;
    while (t->events == seen && rc == 0)
        rc = pthread_cond_timedwait(&t->changed, &t->lock, &deadline);
    bool changed = t->events != seen;
    pthread_mutex_unlock(&t->lock);
    return changed;
}

static void reset_store(uint64_t memory_bytes, uint64_t max_object_bytes, enum cache_eviction_policy policy)
{
    cache_purge_all();
    cache_store_configure(memory_bytes, max_object_bytes, policy);
}

/* ---- tests --------------------------------------------------------------- */

static void test_leader_busy_hit_fill(void)
{
    reset_store(64 * MIB, 8 * MIB, CACHE_EVICTION_SIEVE);
    struct key key;
    key_make(&key, "example.com", "/a", "");
    struct cache_object *leader, *other;
    CHECK_INT(lookup(&key, NULL, 1000, &leader), CACHE_LOOKUP_LEADER);
    CHECK_INT(lookup(&key, NULL, 1000, &other), CACHE_LOOKUP_BUSY);
    CHECK(other == leader);
    struct cache_object_view view;
    cache_object_view(other, &view);
    CHECK_INT(view.state, CACHE_OBJECT_BUSY);
    CHECK(view.headers == NULL);
    cache_object_unref(other);

    unsigned long long objects = stat_of(&cache_stats.objects);
    struct head_builder b;
    head_init(&b, "/a", -1);
    head_add(&b, "Content-Type", "text/plain");
    cache_object_set_head(leader, &b.head);
    memset(&b, 0xAB, sizeof b); /* the store copied what it keeps */
    CHECK_INT(stat_of(&cache_stats.objects), objects + 1);

    CHECK_INT(lookup(&key, NULL, 1000, &other), CACHE_LOOKUP_HIT);
    CHECK(other == leader);
    cache_object_view(other, &view);
    CHECK_INT(view.state, CACHE_OBJECT_FILLING);
    CHECK_INT(view.status, 200);
    CHECK_INT(view.header_count, 1);
    CHECK(slice_equal(view.headers[0].name, SLICE_LITERAL("Content-Type")));
    CHECK(slice_equal(view.headers[0].value, SLICE_LITERAL("text/plain")));
    CHECK(slice_equal(view.path, SLICE_LITERAL("/a")));
    CHECK_INT(view.body_available, 0);
    CHECK_INT(view.content_length, -1);
    CHECK_INT(view.ttl, 60);

    char buffer[32] = {0};
    CHECK_INT(cache_object_read(other, 0, buffer, sizeof buffer), 0);
    cache_object_append(leader, "hello ", 6);
    CHECK_INT(cache_object_read(other, 0, buffer, sizeof buffer), 6);
    CHECK(memcmp(buffer, "hello ", 6) == 0);
    cache_object_append(leader, "world", 5);
    CHECK_INT(cache_object_read(other, 6, buffer, sizeof buffer), 5);
    CHECK(memcmp(buffer, "world", 5) == 0);
    CHECK_INT(cache_object_read(other, 11, buffer, sizeof buffer), 0);
    CHECK_INT(cache_object_read(other, 3, buffer, 4), 4);
    CHECK(memcmp(buffer, "lo w", 4) == 0);
    struct cache_body_piece span = cache_object_piece_at(other, 2);
    CHECK(slice_equal(slice_make(span.data, span.len), SLICE_LITERAL("llo world")));
    cache_object_finish(leader, true);
    cache_object_view(other, &view);
    CHECK_INT(view.state, CACHE_OBJECT_COMPLETE);
    CHECK_INT(view.content_length, 11);
    CHECK_INT(view.body_available, 11);
    CHECK(!view.body_truncated);
    cache_object_touch(other);
    cache_object_unref(other);
    cache_object_unref(leader);

    /* Still stored with only the index's reference. */
    CHECK_INT(lookup(&key, NULL, 1000, &other), CACHE_LOOKUP_HIT);
    CHECK_INT(cache_object_read(other, 0, buffer, sizeof buffer), 11);
    cache_object_unref(other);
    CHECK_INT(cache_purge_all(), 1);
    CHECK_INT(stat_of(&cache_stats.objects), 0);
    CHECK_INT(stat_of(&cache_stats.bytes), 0);
}

static void test_large_bodies_cross_chunks(void)
{
    reset_store(64 * MIB, 8 * MIB, CACHE_EVICTION_SIEVE);
    for (int known = 0; known < 2; known++) {
        struct key key;
        key_make(&key, "example.com", known ? "/known" : "/chunked", "");
        const size_t length = 300 * 1024 + 17;
        struct head_builder b;
        head_init(&b, "/big", known ? (int64_t)length : -1);
        struct cache_object *object;
        CHECK_INT(lookup(&key, NULL, 1000, &object), CACHE_LOOKUP_LEADER);
        cache_object_set_head(object, &b.head);
        /* Odd pieces, so that appends straddle chunk ends. */
        for (size_t done = 0; done < length;) {
            size_t n = length - done < 7919 ? length - done : 7919;
            append_pattern(object, 5, done, n);
            done += n;
        }
        CHECK(body_matches(object, 5, length));
        cache_object_finish(object, true);
        CHECK(body_matches(object, 5, length));
        /* The zero-copy spans cover the body exactly. */
        uint64_t offset = 0;
        bool spans_match = true;
        for (struct cache_body_piece span; (span = cache_object_piece_at(object, offset)).len > 0; offset += span.len)
            for (size_t i = 0; i < span.len; i++)
                spans_match = spans_match && span.data[i] == pattern_byte(5, offset + i);
        CHECK(spans_match);
        CHECK_INT(offset, length);
        cache_object_unref(object);
    }
    /* Accounting: each body costs about its size, not whole 64 KiB chunks. */
    CHECK(stat_of(&cache_stats.bytes) < 2 * (300 * 1024 + 17) + 64 * 1024 + 4096);
    struct key small;
    key_make(&small, "example.com", "/small", "");
    unsigned long long before = stat_of(&cache_stats.bytes);
    struct head_builder b;
    head_init(&b, "/small", -1);
    struct cache_object *object = store_object(&small, NULL, &b, 1, 100);
    CHECK(object != NULL);
    CHECK(stat_of(&cache_stats.bytes) - before <= 8192);
    cache_object_unref(object);
}

static void test_vary_variants(void)
{
    reset_store(64 * MIB, 8 * MIB, CACHE_EVICTION_SIEVE);
    struct key key;
    key_make(&key, "example.com", "/vary", "");
    struct head_builder b;
    head_init(&b, "/vary", -1);
    head_vary(&b, "en");
    struct cache_object *english = store_object(&key, "en", &b, 1, 10);
    CHECK(english != NULL);
    /* Another language: no variant matches and nothing is BUSY → leader. */
    head_init(&b, "/vary", -1);
    head_vary(&b, "fr");
    struct cache_object *french = store_object(&key, "fr", &b, 2, 20);
    CHECK(french != NULL);
    CHECK(french != english);

    struct cache_object *found;
    CHECK_INT(lookup(&key, "en", 1000, &found), CACHE_LOOKUP_HIT);
    CHECK(found == english);
    cache_object_unref(found);
    CHECK_INT(lookup(&key, "fr", 1000, &found), CACHE_LOOKUP_HIT);
    CHECK(found == french);
    cache_object_unref(found);

    /* A third language collapses on the BUSY fetch for the second unknown. */
    struct cache_object *german, *spanish;
    CHECK_INT(lookup(&key, "de", 1000, &german), CACHE_LOOKUP_LEADER);
    CHECK_INT(lookup(&key, "es", 1000, &spanish), CACHE_LOOKUP_BUSY);
    CHECK(spanish == german);
    cache_object_unref(spanish);
    cache_object_abandon(german, 0, 1000);
    cache_object_unref(german);

    /* Replacing a variant: the refetch is found first while it fills, and
     * the old one goes when it completes. */
    unsigned long long objects = stat_of(&cache_stats.objects);
    struct cache_object *busy = NULL;
    struct cache_object *refetch = cache_insert_leader(key.hash, key.key, &busy);
    CHECK(refetch != NULL && busy == NULL);
    struct cache_object *second = cache_insert_leader(key.hash, key.key, &busy);
    CHECK(second == NULL && busy == refetch);
    cache_object_unref(busy);
    head_init(&b, "/vary", -1);
    head_vary(&b, "en");
    cache_object_set_head(refetch, &b.head);
    CHECK_INT(lookup(&key, "en", 1000, &found), CACHE_LOOKUP_HIT);
    CHECK(found == refetch);
    cache_object_unref(found);
    CHECK_INT(stat_of(&cache_stats.objects), objects + 1);
    append_pattern(refetch, 3, 0, 30);
    cache_object_finish(refetch, true);
    CHECK_INT(stat_of(&cache_stats.objects), objects);
    CHECK_INT(lookup(&key, "en", 1000, &found), CACHE_LOOKUP_HIT);
    CHECK(found == refetch);
    cache_object_unref(found);
    CHECK_INT(lookup(&key, "fr", 1000, &found), CACHE_LOOKUP_HIT);
    CHECK(found == french);
    cache_object_unref(found);
    /* The replaced object is unlinked but still readable by its holder. */
    CHECK(body_matches(english, 1, 10));
    cache_object_unref(english);
    cache_object_unref(french);
    cache_object_unref(refetch);
}

static void test_variant_cap(void)
{
    reset_store(64 * MIB, 8 * MIB, CACHE_EVICTION_SIEVE);
    struct key key;
    key_make(&key, "example.com", "/many-variants", "");
    for (int i = 0; i < 40; i++) {
        char value[16];
        snprintf(value, sizeof value, "v%d", i);
        struct head_builder b;
        head_init(&b, "/many-variants", -1);
        head_vary(&b, value);
        cache_object_unref(store_object(&key, value, &b, 1, 10));
    }
    CHECK_INT(stat_of(&cache_stats.objects), 32);
    struct cache_object *found;
    CHECK_INT(lookup(&key, "v39", 1000, &found), CACHE_LOOKUP_HIT);
    cache_object_unref(found);
    CHECK_INT(lookup(&key, "v0", 1000, &found), CACHE_LOOKUP_LEADER); /* the oldest went */
    cache_object_abandon(found, 0, 1000);
    cache_object_unref(found);
}

static void test_abandon_and_hit_for_pass(void)
{
    reset_store(64 * MIB, 8 * MIB, CACHE_EVICTION_SIEVE);
    struct key key;
    key_make(&key, "example.com", "/private", "");
    struct cache_object *leader, *waiting;
    CHECK_INT(lookup(&key, NULL, 1000, &leader), CACHE_LOOKUP_LEADER);
    CHECK_INT(lookup(&key, NULL, 1000, &waiting), CACHE_LOOKUP_BUSY);
    struct test_waiter waiter;
    test_waiter_init(&waiter);
    cache_object_wait(waiting, &waiter.base);
    CHECK_INT(test_waiter_events(&waiter), 0);
    cache_object_abandon(leader, 10, 1000);
    CHECK_INT(test_waiter_events(&waiter), 1);
    struct cache_object_view view;
    cache_object_view(waiting, &view);
    CHECK_INT(view.state, CACHE_OBJECT_ABANDONED);
    cache_object_unwait(waiting, &waiter.base);
    cache_object_unref(waiting);
    cache_object_unref(leader);

    struct cache_object *object = (struct cache_object *)&waiter; /* must be overwritten */
    CHECK_INT(lookup(&key, NULL, 1000, &object), CACHE_LOOKUP_PASS);
    CHECK(object == NULL);
    CHECK_INT(lookup(&key, NULL, 1009, &object), CACHE_LOOKUP_PASS);
    CHECK_INT(lookup(&key, NULL, 1010, &object), CACHE_LOOKUP_LEADER); /* expired */
    cache_object_abandon(object, 0, 1010);                             /* no marker this time */
    cache_object_unref(object);
    CHECK_INT(lookup(&key, NULL, 1011, &object), CACHE_LOOKUP_LEADER);

    /* A stored response clears the marker. */
    cache_object_abandon(object, 10, 1011);
    cache_object_unref(object);
    CHECK_INT(lookup(&key, NULL, 1012, &object), CACHE_LOOKUP_PASS);
    struct cache_object *busy = NULL;
    struct cache_object *fill = cache_insert_leader(key.hash, key.key, &busy);
    CHECK(fill != NULL);
    struct head_builder b;
    head_init(&b, "/private", 0);
    cache_object_set_head(fill, &b.head);
    cache_object_finish(fill, true);
    cache_object_unref(fill);
    CHECK_INT(lookup(&key, NULL, 1013, &object), CACHE_LOOKUP_HIT);
    cache_object_unref(object);
    test_waiter_destroy(&waiter);

    /* Many unique uncacheable keys: expired markers are swept, not kept. */
    bool all_leaders = true;
    for (int i = 0; i < 5000; i++) {
        char path[32];
        snprintf(path, sizeof path, "/unique/%d", i);
        struct key unique;
        key_make(&unique, "example.com", path, "");
        all_leaders = all_leaders && lookup(&unique, NULL, 2000 + i, &object) == CACHE_LOOKUP_LEADER;
        cache_object_abandon(object, 10, 2000 + i);
        cache_object_unref(object);
    }
    CHECK(all_leaders);
    CHECK_INT(cache_purge_all(), 1); /* only /private's object */
}

static void test_finish_truncated(void)
{
    reset_store(64 * MIB, 8 * MIB, CACHE_EVICTION_SIEVE);
    struct key key;
    key_make(&key, "example.com", "/cut", "");
    struct head_builder b;
    head_init(&b, "/cut", 1000);
    struct cache_object *object;
    CHECK_INT(lookup(&key, NULL, 1000, &object), CACHE_LOOKUP_LEADER);
    cache_object_set_head(object, &b.head);
    append_pattern(object, 9, 0, 400);
    cache_object_finish(object, false);
    struct cache_object_view view;
    cache_object_view(object, &view);
    CHECK_INT(view.state, CACHE_OBJECT_COMPLETE);
    CHECK(view.body_truncated);
    CHECK_INT(view.body_available, 400);
    CHECK(body_matches(object, 9, 400));
    struct cache_object *again;
    CHECK_INT(lookup(&key, NULL, 1000, &again), CACHE_LOOKUP_LEADER);
    cache_object_abandon(again, 0, 1000);
    cache_object_unref(again);
    cache_object_unref(object);
    CHECK_INT(stat_of(&cache_stats.objects), 0);
}

static void test_refresh(void)
{
    reset_store(64 * MIB, 8 * MIB, CACHE_EVICTION_SIEVE);
    struct key key;
    key_make(&key, "example.com", "/refresh", "");
    struct head_builder b;
    head_init(&b, "/refresh", 5000);
    head_add(&b, "ETag", "\"v1\"");
    head_add(&b, "X-Old", "1");
    struct cache_object *stale = store_object(&key, NULL, &b, 4, 5000);
    CHECK(stale != NULL);
    unsigned long long objects = stat_of(&cache_stats.objects);

    /* The refresh's leader, as request.c takes it. */
    struct cache_object *busy = NULL, *leader = cache_insert_leader(key.hash, key.key, &busy);
    CHECK(leader != NULL);
    struct cache_object *waiting;
    CHECK_INT(lookup(&key, NULL, 1000, &waiting), CACHE_LOOKUP_HIT); /* the stale one is still served */
    CHECK(waiting == stale);
    cache_object_unref(waiting);

    head_init(&b, "/refresh", 5000);
    head_add(&b, "ETag", "\"v1\"");
    head_add(&b, "X-New", "2");
    b.head.ttl = 99;
    b.head.response_time = 2000;
    struct cache_object *fresh = cache_object_refresh(stale, &b.head);
    CHECK(fresh != NULL && fresh != stale);
    cache_object_abandon(leader, 0, 2000);
    cache_object_unref(leader);
    struct cache_object_view view;
    cache_object_view(fresh, &view);
    CHECK_INT(view.state, CACHE_OBJECT_COMPLETE);
    CHECK_INT(view.ttl, 99);
    CHECK_INT(view.response_time, 2000);
    CHECK_INT(view.header_count, 2);
    CHECK(slice_equal(view.headers[1].value, SLICE_LITERAL("2")));
    CHECK_INT(view.body_available, 5000);
    CHECK(body_matches(fresh, 4, 5000));
    CHECK(cache_object_piece_at(fresh, 0).data == cache_object_piece_at(stale, 0).data); /* shared, not copied */
    struct cache_object *found;
    CHECK_INT(lookup(&key, NULL, 2000, &found), CACHE_LOOKUP_HIT);
    CHECK(found == fresh);
    cache_object_unref(found);
    CHECK_INT(stat_of(&cache_stats.objects), objects);
    /* The stale object is unlinked; its holder still reads it. */
    cache_object_view(stale, &view);
    CHECK_INT(view.ttl, 60);
    CHECK(slice_equal(view.headers[1].name, SLICE_LITERAL("X-Old")));
    cache_object_unref(stale);
    CHECK(body_matches(fresh, 4, 5000));

    /* Refreshing an object that still fills returns it unchanged. */
    struct key filling_key;
    key_make(&filling_key, "example.com", "/refresh-filling", "");
    struct cache_object *filling;
    CHECK_INT(lookup(&filling_key, NULL, 1000, &filling), CACHE_LOOKUP_LEADER);
    head_init(&b, "/refresh-filling", -1);
    cache_object_set_head(filling, &b.head);
    struct cache_object *same = cache_object_refresh(filling, &b.head);
    CHECK(same == filling);
    cache_object_unref(same);
    cache_object_finish(filling, true);
    cache_object_unref(filling);

    /* A purge between the stale lookup and the 304: not stored again. */
    CHECK_INT(cache_purge_path(SLICE_LITERAL("/refresh")), 1);
    struct cache_object *orphan = cache_object_refresh(fresh, &b.head);
    CHECK(orphan != fresh);
    CHECK(body_matches(orphan, 4, 5000));
    CHECK_INT(lookup(&key, NULL, 2000, &found), CACHE_LOOKUP_LEADER);
    cache_object_abandon(found, 0, 2000);
    cache_object_unref(found);
    cache_object_unref(orphan);
    cache_object_unref(fresh);
}

static void fill_budget(enum cache_eviction_policy policy)
{
    const uint64_t budget = 1 * MIB;
    reset_store(budget, 512 * 1024, policy);
    unsigned long long evictions = stat_of(&cache_stats.evictions);
    struct cache_object *first = NULL;
    bool within_budget = true;
    /* 4× the budget in 32 KiB objects, sizes known and unknown. */
    for (int i = 0; i < 128; i++) {
        char path[32];
        snprintf(path, sizeof path, "/budget/%d", i);
        struct key key;
        key_make(&key, "example.com", path, "");
        struct head_builder b;
        head_init(&b, path, i % 2 ? 32 * 1024 : -1);
        struct cache_object *object = store_object(&key, NULL, &b, (unsigned)i, 32 * 1024);
        within_budget = within_budget && object != NULL && stat_of(&cache_stats.bytes) <= budget;
        if (i == 0)
            first = object;
        else
            cache_object_unref(object);
        if (i % 3 == 0 && first != NULL)
            cache_object_touch(first); /* popular: SIEVE and LRU both keep it */
    }
    CHECK(within_budget);
    CHECK(stat_of(&cache_stats.bytes) > budget / 2);
    CHECK(stat_of(&cache_stats.evictions) - evictions >= 64);
    struct key key;
    key_make(&key, "example.com", "/budget/0", "");
    struct cache_object *found;
    CHECK_INT(lookup(&key, NULL, 1000, &found), CACHE_LOOKUP_HIT);
    CHECK(found == first);
    cache_object_unref(found);
    /* Evicted while referenced: unlinked, still readable. */
    key_make(&key, "example.com", "/budget/1", "");
    CHECK_INT(lookup(&key, NULL, 1000, &found), CACHE_LOOKUP_LEADER);
    cache_object_abandon(found, 0, 1000);
    cache_object_unref(found);
    CHECK(body_matches(first, 0, 32 * 1024));

    /* A smaller budget at reload evicts at once. */
    cache_store_configure(256 * 1024, 512 * 1024, policy);
    CHECK(stat_of(&cache_stats.bytes) <= 256 * 1024);
    cache_object_unref(first);
}

static void test_memory_budget_sieve(void)
{
    fill_budget(CACHE_EVICTION_SIEVE);
}

static void test_memory_budget_lru(void)
{
    fill_budget(CACHE_EVICTION_LRU);
}

static void test_filling_objects_are_not_evicted(void)
{
    reset_store(256 * 1024, 256 * 1024, CACHE_EVICTION_SIEVE);
    struct key key;
    key_make(&key, "example.com", "/filling", "");
    struct cache_object *filling;
    CHECK_INT(lookup(&key, NULL, 1000, &filling), CACHE_LOOKUP_LEADER);
    struct head_builder b;
    head_init(&b, "/filling", -1);
    cache_object_set_head(filling, &b.head);
    append_pattern(filling, 2, 0, 100 * 1024);
    for (int i = 0; i < 20; i++) {
        char path[32];
        snprintf(path, sizeof path, "/around/%d", i);
        struct key other;
        key_make(&other, "example.com", path, "");
        struct head_builder ob;
        head_init(&ob, path, 20 * 1024);
        cache_object_unref(store_object(&other, NULL, &ob, 1, 20 * 1024));
    }
    struct cache_object *found;
    CHECK_INT(lookup(&key, NULL, 1000, &found), CACHE_LOOKUP_HIT);
    CHECK(found == filling);
    cache_object_unref(found);
    cache_object_finish(filling, true);
    CHECK(stat_of(&cache_stats.bytes) <= 256 * 1024);
    cache_object_unref(filling);
}

static void test_max_object(void)
{
    reset_store(64 * MIB, 100 * 1024, CACHE_EVICTION_SIEVE);
    unsigned long long bytes = stat_of(&cache_stats.bytes);
    struct key key;
    key_make(&key, "example.com", "/huge", "");
    struct cache_object *leader, *reader;
    CHECK_INT(lookup(&key, NULL, 1000, &leader), CACHE_LOOKUP_LEADER);
    struct head_builder b;
    head_init(&b, "/huge", -1);
    cache_object_set_head(leader, &b.head);
    CHECK_INT(lookup(&key, NULL, 1000, &reader), CACHE_LOOKUP_HIT);
    CHECK(append_pattern(leader, 6, 0, 90 * 1024));
    struct cache_object *found;
    CHECK_INT(lookup(&key, NULL, 1000, &found), CACHE_LOOKUP_HIT);
    cache_object_unref(found);
    CHECK(!append_pattern(leader, 6, 90 * 1024, 60 * 1024)); /* now over max_object: the filler is told */
    CHECK_INT(lookup(&key, NULL, 1000, &found), CACHE_LOOKUP_LEADER);
    cache_object_abandon(found, 0, 1000);
    cache_object_unref(found);
    CHECK_INT(stat_of(&cache_stats.bytes), bytes);
    append_pattern(leader, 6, 150 * 1024, 50 * 1024); /* keeps filling for its reader */
    cache_object_finish(leader, true);
    CHECK(body_matches(reader, 6, 200 * 1024));
    cache_object_unref(reader);
    cache_object_unref(leader);

    /* A Content-Length over the limit is never linked. */
    CHECK_INT(lookup(&key, NULL, 1000, &leader), CACHE_LOOKUP_LEADER);
    CHECK_INT(lookup(&key, NULL, 1000, &reader), CACHE_LOOKUP_BUSY);
    head_init(&b, "/huge", 200 * 1024);
    cache_object_set_head(leader, &b.head);
    CHECK_INT(lookup(&key, NULL, 1000, &found), CACHE_LOOKUP_LEADER);
    cache_object_abandon(found, 0, 1000);
    cache_object_unref(found);
    append_pattern(leader, 7, 0, 200 * 1024);
    cache_object_finish(leader, true);
    CHECK(body_matches(reader, 7, 200 * 1024)); /* the waiter was served */
    cache_object_unref(reader);
    cache_object_unref(leader);
    CHECK_INT(stat_of(&cache_stats.bytes), bytes);
}

static void test_purge(void)
{
    reset_store(64 * MIB, 8 * MIB, CACHE_EVICTION_SIEVE);
    unsigned long long purged = stat_of(&cache_stats.purged);
    struct key a_plain, a_query, b_png, css, js;
    key_make(&a_plain, "example.com", "/img/a.png", "");
    key_make(&a_query, "example.com", "/img/a.png", "x=1");
    key_make(&b_png, "example.com", "/img/b.png", "");
    key_make(&css, "example.com", "/css/c.css", "");
    key_make(&js, "example.com", "/img.js", "");
    struct head_builder b;
    head_init(&b, "/img/a.png", -1);
    head_vary(&b, "en");
    struct cache_object *held = store_object(&a_plain, "en", &b, 1, 100);
    head_init(&b, "/img/a.png", -1);
    head_vary(&b, "fr");
    cache_object_unref(store_object(&a_plain, "fr", &b, 1, 100));
    head_init(&b, "/img/a.png", -1);
    cache_object_unref(store_object(&a_query, NULL, &b, 1, 100));
    head_init(&b, "/img/b.png", -1);
    head_add(&b, "Surrogate-Key", "  product-42 images ");
    cache_object_unref(store_object(&b_png, NULL, &b, 1, 100));
    head_init(&b, "/css/c.css", -1);
    head_add(&b, "Cache-Tag", "style,product-42, site");
    cache_object_unref(store_object(&css, NULL, &b, 1, 100));
    head_init(&b, "/img.js", -1);
    cache_object_unref(store_object(&js, NULL, &b, 1, 100));
    CHECK_INT(stat_of(&cache_stats.objects), 6);

    CHECK_INT(cache_purge_path(SLICE_LITERAL("/img/a.png")), 3); /* both variants and the query string */
    CHECK_INT(cache_purge_path(SLICE_LITERAL("/img/a.png")), 0);
    CHECK(body_matches(held, 1, 100)); /* referenced objects survive their purge */
    struct cache_object_view view;
    cache_object_view(held, &view);
    CHECK_INT(view.state, CACHE_OBJECT_COMPLETE);
    cache_object_unref(held);
    CHECK_INT(cache_purge_tag(SLICE_LITERAL("product")), 0);
    CHECK_INT(cache_purge_tag(SLICE_LITERAL("product-42")), 2);
    CHECK_INT(stat_of(&cache_stats.objects), 1);
    head_init(&b, "/img/b.png", -1);
    cache_object_unref(store_object(&b_png, NULL, &b, 1, 100));
    CHECK_INT(cache_purge_path(SLICE_LITERAL("/img/*")), 1); /* not /img.js */
    CHECK_INT(cache_purge_path(SLICE_LITERAL("/*")), 1);
    head_init(&b, "/css/c.css", -1);
    cache_object_unref(store_object(&css, NULL, &b, 1, 100));
    head_init(&b, "/img.js", -1);
    cache_object_unref(store_object(&js, NULL, &b, 1, 100));
    CHECK_INT(cache_purge_all(), 2);
    CHECK_INT(stat_of(&cache_stats.objects), 0);
    CHECK_INT(stat_of(&cache_stats.bytes), 0);
    CHECK_INT(stat_of(&cache_stats.purged) - purged, 3 + 2 + 1 + 1 + 2);

    /* BUSY objects are not stored yet: a purge leaves them to their fetch. */
    struct cache_object *leader;
    CHECK_INT(lookup(&css, NULL, 1000, &leader), CACHE_LOOKUP_LEADER);
    CHECK_INT(cache_purge_all(), 0);
    struct cache_object *busy;
    CHECK_INT(lookup(&css, NULL, 1000, &busy), CACHE_LOOKUP_BUSY);
    cache_object_unref(busy);
    /* A FILLING one is stored: purged (its readers finish reading it). */
    head_init(&b, "/css/c.css", -1);
    cache_object_set_head(leader, &b.head);
    CHECK_INT(cache_purge_path(SLICE_LITERAL("/css/c.css")), 1);
    append_pattern(leader, 3, 0, 50);
    cache_object_finish(leader, true);
    CHECK(body_matches(leader, 3, 50));
    CHECK_INT(lookup(&css, NULL, 1000, &busy), CACHE_LOOKUP_LEADER);
    cache_object_abandon(busy, 0, 1000);
    cache_object_unref(busy);
    cache_object_unref(leader);
    CHECK_INT(stat_of(&cache_stats.objects), 0);
}

static void test_waiters(void)
{
    reset_store(64 * MIB, 8 * MIB, CACHE_EVICTION_SIEVE);
    struct key key;
    key_make(&key, "example.com", "/wait", "");
    struct cache_object *leader;
    CHECK_INT(lookup(&key, NULL, 1000, &leader), CACHE_LOOKUP_LEADER);
    struct test_waiter first, second;
    test_waiter_init(&first);
    test_waiter_init(&second);
    cache_object_wait(leader, &first.base);
    cache_object_wait(leader, &first.base); /* registering twice is once */
    cache_object_wait(leader, &second.base);
    CHECK_INT(test_waiter_events(&first), 0);
    struct head_builder b;
    head_init(&b, "/wait", -1);
    cache_object_set_head(leader, &b.head);
    CHECK_INT(test_waiter_events(&first), 1);
    CHECK_INT(test_waiter_events(&second), 1);
    cache_object_append(leader, "x", 1);
    CHECK_INT(test_waiter_events(&first), 2);
    cache_object_unwait(leader, &first.base);
    cache_object_unwait(leader, &first.base); /* harmless */
    cache_object_append(leader, "y", 1);
    CHECK_INT(test_waiter_events(&first), 2);
    CHECK_INT(test_waiter_events(&second), 3);
    cache_object_wait(leader, &first.base);
    cache_object_finish(leader, true);
    CHECK_INT(test_waiter_events(&first), 3);
    CHECK_INT(test_waiter_events(&second), 4);
    cache_object_unwait(leader, &first.base);
    cache_object_unwait(leader, &second.base);
    /* Registering on a finished object notifies at once. */
    cache_object_wait(leader, &first.base);
    CHECK_INT(test_waiter_events(&first), 4);
    cache_object_unwait(leader, &first.base);
    cache_object_unref(leader);
    test_waiter_destroy(&first);
    test_waiter_destroy(&second);
}

/* ---- the eviction queue on its own ---------------------------------------- */

static bool evictable_unless_second(struct evict_node *node, void *context)
{
    return node != context;
}

static void test_evict_sieve_and_lru(void)
{
    struct evict_node nodes[4];
    struct evict_queue queue;
    memset(nodes, 0, sizeof nodes);
    evict_queue_init(&queue, EVICT_POLICY_SIEVE);
    for (int i = 0; i < 4; i++)
        evict_queue_insert(&queue, &nodes[i]); /* 0 is the oldest */
    evict_queue_touch(&queue, &nodes[0]);
    evict_node_mark_visited(&nodes[2]);
    /* The hand clears 0's bit and stops at 1. */
    CHECK(evict_queue_choose_victim(&queue, evictable_unless_second, NULL) == &nodes[1]);
    evict_queue_remove(&queue, &nodes[1]);
    /* From 2 (visited: cleared) to 3. */
    CHECK(evict_queue_choose_victim(&queue, evictable_unless_second, NULL) == &nodes[3]);
    evict_queue_remove(&queue, &nodes[3]);
    /* Wraps to 0 (cleared on the first lap). */
    CHECK(evict_queue_choose_victim(&queue, evictable_unless_second, NULL) == &nodes[0]);
    evict_queue_remove(&queue, &nodes[0]);
    /* Nothing evictable → NULL rather than a loop. */
    CHECK(evict_queue_choose_victim(&queue, evictable_unless_second, &nodes[2]) == NULL);
    evict_queue_remove(&queue, &nodes[2]);
    CHECK_INT(queue.count, 0);
    CHECK(evict_queue_choose_victim(&queue, evictable_unless_second, NULL) == NULL);

    memset(nodes, 0, sizeof nodes);
    evict_queue_init(&queue, EVICT_POLICY_LRU);
    for (int i = 0; i < 4; i++)
        evict_queue_insert(&queue, &nodes[i]);
    evict_queue_touch(&queue, &nodes[0]);
    CHECK(evict_queue_choose_victim(&queue, evictable_unless_second, NULL) == &nodes[1]);
    CHECK(evict_queue_choose_victim(&queue, evictable_unless_second, &nodes[1]) == &nodes[2]);
    evict_queue_remove(&queue, &nodes[1]);
    evict_queue_touch(&queue, &nodes[2]);
    CHECK(evict_queue_choose_victim(&queue, evictable_unless_second, NULL) == &nodes[3]);
    /* Switching policy keeps the items. */
    evict_queue_set_policy(&queue, EVICT_POLICY_SIEVE);
    CHECK_INT(queue.count, 3);
    CHECK(evict_queue_choose_victim(&queue, evictable_unless_second, NULL) == &nodes[3]);
}

/* ---- many threads on a few keys ------------------------------------------ */

#define STRESS_THREADS 4
#define STRESS_KEYS 6
#define STRESS_ROUNDS 3000

static atomic_int stress_errors, stress_hits, stress_leads, stress_waits;

static size_t stress_length(int k)
{
    return 3000 + (size_t)k * 9000;
}

/* Reads an object to its end, waiting while it fills. */
static void stress_read(struct cache_object *object, int k)
{
    struct test_waiter waiter;
    test_waiter_init(&waiter);
    cache_object_wait(object, &waiter.base);
    char buffer[2500];
    uint64_t offset = 0;
    for (;;) {
        unsigned seen = test_waiter_events(&waiter);
        size_t n = cache_object_read(object, offset, buffer, sizeof buffer);
        for (size_t i = 0; i < n; i++)
            if (buffer[i] != pattern_byte((unsigned)k, offset + i)) {
                atomic_fetch_add(&stress_errors, 1);
                break;
            }
        offset += n;
        if (n > 0)
            continue;
        struct cache_object_view view;
        cache_object_view(object, &view);
        if (view.body_available > offset)
            continue;
        if (view.state == CACHE_OBJECT_COMPLETE) {
            if (!view.body_truncated && offset != stress_length(k))
                atomic_fetch_add(&stress_errors, 1);
            break;
        }
        if (view.state != CACHE_OBJECT_FILLING || !test_waiter_await(&waiter, seen)) {
            atomic_fetch_add(&stress_errors, 1);
            break;
        }
    }
    cache_object_unwait(object, &waiter.base);
    test_waiter_destroy(&waiter);
}

static void stress_lead(struct cache_object *object, int k, unsigned round)
{
    atomic_fetch_add(&stress_leads, 1);
    if (round % 13 == 0) {
        cache_object_abandon(object, round % 26 == 0 ? 1 : 0, round);
        return;
    }
    struct head_builder b;
    char path[32];
    snprintf(path, sizeof path, "/stress/%d", k);
    head_init(&b, path, round % 2 ? (int64_t)stress_length(k) : -1);
    head_add(&b, "Surrogate-Key", k % 2 ? "odd" : "even");
    sched_yield(); /* widen the BUSY window so that others collapse on it */
    cache_object_set_head(object, &b.head);
    size_t length = stress_length(k), done = 0;
    bool cut = round % 17 == 0;
    while (done < length) {
        size_t n = length - done < 1500 ? length - done : 1500;
        append_pattern(object, (unsigned)k, done, n);
        done += n;
        sched_yield(); /* readers catch up and wait mid-fill */
        if (cut && done > length / 2)
            break;
    }
    cache_object_finish(object, !cut);
}

static void *stress_thread(void *argument)
{
    unsigned id = (unsigned)(uintptr_t)argument;
    uint64_t random = 0x9e3779b97f4a7c15ull * (id + 1);
    for (unsigned round = 0; round < STRESS_ROUNDS; round++) {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        int k = (int)(random % STRESS_KEYS);
        struct key key;
        char path[32];
        snprintf(path, sizeof path, "/stress/%d", k);
        key_make(&key, "stress.example", path, "");
        int64_t now = round; /* markers of 1 s expire as rounds go by */
        struct cache_object *object;
        switch (lookup(&key, NULL, now, &object)) {
        case CACHE_LOOKUP_LEADER:
            stress_lead(object, k, round);
            break;
        case CACHE_LOOKUP_HIT:
            atomic_fetch_add(&stress_hits, 1);
            cache_object_touch(object);
            stress_read(object, k);
            if (random % 29 == 0) {
                /* A refresh through a leader, as request.c does it. */
                struct cache_object *busy = NULL, *leader = cache_insert_leader(key.hash, key.key, &busy);
                struct cache_object_view view;
                cache_object_view(object, &view);
                if (leader != NULL && view.state == CACHE_OBJECT_COMPLETE && !view.body_truncated) {
                    struct head_builder b;
                    head_init(&b, path, (int64_t)view.body_available);
                    cache_object_unref(cache_object_refresh(object, &b.head));
                }
                if (leader != NULL) {
                    cache_object_abandon(leader, 0, now);
                    cache_object_unref(leader);
                }
                cache_object_unref(busy);
            }
            break;
        case CACHE_LOOKUP_BUSY: {
            atomic_fetch_add(&stress_waits, 1);
            struct test_waiter waiter;
            test_waiter_init(&waiter);
            cache_object_wait(object, &waiter.base);
            struct cache_object_view view;
            for (;;) {
                unsigned seen = test_waiter_events(&waiter);
                cache_object_view(object, &view);
                if (view.state != CACHE_OBJECT_BUSY)
                    break;
                if (!test_waiter_await(&waiter, seen)) {
                    atomic_fetch_add(&stress_errors, 1);
                    break;
                }
            }
            cache_object_unwait(object, &waiter.base);
            test_waiter_destroy(&waiter);
            if (view.state != CACHE_OBJECT_ABANDONED)
                stress_read(object, k); /* served from the collapsed fetch */
            break;
        }
        case CACHE_LOOKUP_PASS:
            break;
        }
        cache_object_unref(object);
        if (id == 0 && round % 97 == 0)
            cache_purge_tag(SLICE_LITERAL("odd"));
        if (id == 1 && round % 151 == 0)
            cache_purge_path(SLICE_LITERAL("/stress/*"));
        if (id == 2 && round % 211 == 0)
            cache_store_configure(round % 2 ? 96 * 1024 : 160 * 1024, 40 * 1024,
                                  round % 4 < 2 ? CACHE_EVICTION_SIEVE : CACHE_EVICTION_LRU);
    }
    return NULL;
}

static void test_threads_stress(void)
{
    reset_store(128 * 1024, 40 * 1024, CACHE_EVICTION_SIEVE); /* small: evictions all along */
    unsigned long long evictions = stat_of(&cache_stats.evictions);
    pthread_t threads[STRESS_THREADS];
    for (uintptr_t i = 0; i < STRESS_THREADS; i++)
        pthread_create(&threads[i], NULL, stress_thread, (void *)i);
    for (int i = 0; i < STRESS_THREADS; i++)
        pthread_join(threads[i], NULL);
    CHECK_INT(atomic_load(&stress_errors), 0);
    CHECK(atomic_load(&stress_hits) > 0);
    CHECK(atomic_load(&stress_leads) > 0);
    CHECK(stat_of(&cache_stats.bytes) <= 160 * 1024);
    printf("stress: %d hits, %d leads, %d collapsed waits, %llu evictions\n", atomic_load(&stress_hits), atomic_load(&stress_leads),
           atomic_load(&stress_waits), stat_of(&cache_stats.evictions) - evictions);
    cache_purge_all();
    CHECK_INT(stat_of(&cache_stats.objects), 0);
    CHECK_INT(stat_of(&cache_stats.bytes), 0);
}

int main(void)
{
    UNIT_RUN(test_leader_busy_hit_fill);
    UNIT_RUN(test_large_bodies_cross_chunks);
    UNIT_RUN(test_vary_variants);
    UNIT_RUN(test_variant_cap);
    UNIT_RUN(test_abandon_and_hit_for_pass);
    UNIT_RUN(test_finish_truncated);
    UNIT_RUN(test_refresh);
    UNIT_RUN(test_memory_budget_sieve);
    UNIT_RUN(test_memory_budget_lru);
    UNIT_RUN(test_filling_objects_are_not_evicted);
    UNIT_RUN(test_max_object);
    UNIT_RUN(test_purge);
    UNIT_RUN(test_waiters);
    UNIT_RUN(test_evict_sieve_and_lru);
    UNIT_RUN(test_threads_stress);
    cache_purge_all();
    return unit_summary();
}
