/* store.c — the in-memory object store (contract in store.h).
 *
 * Index: SHARD_COUNT shards chosen by the first byte of the SHA-256 key hash;
 * each has a mutex and a chained hash table of entries (one per primary key,
 * the full key stored and compared). An entry holds its variants (newest
 * first, at most MAX_VARIANTS), at most one BUSY object (the fetch in
 * flight) and an optional hit-for-pass expiry. An entry is freed as soon as
 * it holds none of the three; expired pass markers are cleared by lookups
 * and, so that unique uncacheable URLs cannot grow a shard without bound, by
 * an amortized sweep of the shard when abandon finds its marker count
 * doubled.
 *
 * Objects: the head (status, headers, Vary, path, tags) is one allocation
 * whose slices point into itself; the body is a refcounted chunk list
 * (shared between a stale object and its 304 refresh). Chunks never move or
 * shrink, so piece_at spans stay valid while a reference is held. Chunk
 * sizes follow Content-Length when it is known (capped at CHUNK_MAX) and
 * otherwise double from CHUNK_MIN, so small chunked bodies do not cost a
 * whole 64 KiB chunk each.
 *
 * Which lock guards what:
 *  - shard lock: the shard's table and entries, object->entry / is_variant /
 *    variant_next, and object->head's publication for lookups and purges;
 *  - object lock: state changes, body growth, content_length, oversize,
 *    waiters. `state` is also atomic so that COMPLETE objects are read
 *    without the lock (COMPLETE is stored with release after the last
 *    write, loaded with acquire) and the eviction scan can test it;
 *  - eviction lock: the eviction queue, total_bytes, object->accounted and
 *    object->charged. Linking or unlinking a variant needs it and the shard
 *    lock (order eviction → shard → object); BUSY objects are not in the
 *    queue, so lookup, abandon and insert_leader take only the shard lock.
 * An object is `accounted` (queued and charged) exactly while it is a linked
 * variant. Appends charge new chunks after dropping the object lock, so the
 * eviction lock is taken once per chunk, not per append.
 *
 * Unlinked objects are released (index reference dropped) after the locks
 * are released, through a local list (release_next), so that freeing a
 * large body never happens inside a critical section.
 */
#include "store.h"
#include "chunk_memory.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>

#include "evict.h"

#define SHARD_COUNT 64
#define CHUNK_MIN (4 * 1024)
#define CHUNK_MAX (64 * 1024)
#define MAX_VARIANTS 32
#define INITIAL_BUCKETS 64
#define PASS_SWEEP_MINIMUM 64
#define OBJECT_MAGIC 0x4f424a43u /* "OBJC" */

struct cache_stats cache_stats;

/* ---- data ---------------------------------------------------------------- */

struct object_head {
    int status;
    struct http_header *headers;
    size_t header_count;
    slice_t vary_names, vary_signature, path;
    slice_t *tags; /* from Surrogate-Key and Cache-Tag */
    size_t tag_count;
    int64_t request_time, response_time, initial_age, ttl, stale_while_revalidate, stale_if_error;
    size_t allocation_size;
};

struct body_chunk {
    uint64_t start; /* body offset of data[0] */
    size_t capacity;
    char *data;
    int fd;               /* chunk_memory: a memfd segment (sendfile), or -1 */
    uint64_t file_offset; /* of data[0] in fd */
};

struct object_body {
    atomic_uint refcount;
    struct body_chunk *chunks; /* grows under the filling object's lock; immutable once COMPLETE */
    size_t chunk_count, chunk_slots;
    uint64_t size;      /* bytes appended */
    uint64_t allocated; /* sum of chunk capacities */
};

struct index_entry {
    struct index_entry *chain_next;
    unsigned char hash[CACHE_KEY_HASH_LEN];
    char *key;
    size_t key_len;
    struct cache_object *variants; /* newest first */
    size_t variant_count;
    struct cache_object *busy; /* the BUSY object of the fetch in flight */
    int64_t pass_until;        /* hit-for-pass until this time; 0: none */
};

struct store_shard {
    _Alignas(64) pthread_mutex_t lock;
    struct index_entry **buckets;
    size_t bucket_count, entry_count;
    size_t pass_markers, pass_sweep_threshold;
};

struct cache_object {
    uint32_t magic;
    atomic_uint refcount;
    _Atomic int state; /* enum cache_object_state */
    unsigned shard_index;
    unsigned char hash[CACHE_KEY_HASH_LEN];
    pthread_mutex_t lock;

    /* shard lock */
    struct index_entry *entry; /* non-NULL while linked (as the busy object or a variant) */
    struct cache_object *variant_next;
    bool is_variant;

    /* set once (set_head, or before a refresh is published); immutable after */
    struct object_head *head;

    /* object lock until COMPLETE, immutable after */
    struct object_body *body;
    int64_t content_length;
    bool body_truncated;
    bool oversize; /* grew past max_object_bytes: unlinked, fills for its readers */
    struct cache_waiter *waiters;

    /* eviction lock */
    struct evict_node evict_node;
    bool accounted;
    uint64_t charged;

    struct cache_object *release_next; /* owned by the thread that unlinked it */
};

static struct store_shard shards[SHARD_COUNT];
static pthread_once_t store_once = PTHREAD_ONCE_INIT;

static pthread_mutex_t eviction_lock = PTHREAD_MUTEX_INITIALIZER;
static struct evict_queue eviction_queue; /* zeroed: SIEVE, empty */
static uint64_t total_bytes;              /* eviction lock; mirrored in cache_stats.bytes */
static uint64_t linked_objects;           /* eviction lock; mirrored in cache_stats.objects */

/* Default policy: SIEVE, the better one in tools/cache_sim (100k objects of
 * 1 KiB to 1 MiB, 2M Zipf requests, fixed seed; object hit ratio SIEVE vs
 * LRU): α 0.8: 54.8% vs 46.6% (cache = 10% of the working set), 68.1% vs
 * 63.4% (25%); α 1.0: 78.1% vs 73.4% (10%), 85.5% vs 83.2% (25%). With a
 * 20k-object cold scan every 100k requests (scans counted as misses): α 0.8:
 * 46.1% vs 37.8% (10%), 57.1% vs 48.4% (25%); α 1.0: 65.6% vs 59.9% (10%),
 * 71.5% vs 64.3% (25%). */
static atomic_int eviction_policy = CACHE_EVICTION_SIEVE;
static _Atomic uint64_t memory_budget = 256ull << 20;
static _Atomic uint64_t max_object_bytes = 64ull << 20;

static void store_init(void)
{
    for (size_t i = 0; i < SHARD_COUNT; i++) {
        pthread_mutex_init(&shards[i].lock, NULL);
        shards[i].pass_sweep_threshold = PASS_SWEEP_MINIMUM;
    }
}

static inline void store_ensure_init(void)
{
    pthread_once(&store_once, store_init);
}

/* An object larger than the whole budget could never stay. */
static uint64_t effective_max_object_bytes(void)
{
    uint64_t max = atomic_load_explicit(&max_object_bytes, memory_order_relaxed);
    uint64_t budget = atomic_load_explicit(&memory_budget, memory_order_relaxed);
    return max < budget ? max : budget;
}

static void publish_totals_locked(void)
{
    atomic_store_explicit(&cache_stats.bytes, total_bytes, memory_order_relaxed);
    atomic_store_explicit(&cache_stats.objects, linked_objects, memory_order_relaxed);
}

/* ---- heads --------------------------------------------------------------- */

static bool is_tag_separator(char c)
{
    return c == ' ' || c == '\t' || c == ',';
}

static bool is_tag_header(slice_t name)
{
    return slice_equal_nocase(name, SLICE_LITERAL("surrogate-key")) || slice_equal_nocase(name, SLICE_LITERAL("cache-tag"));
}

/* Counts the space- or comma-separated tags of `value`, storing them in
 * `out` unless it is NULL. */
static size_t split_tags(slice_t value, slice_t *out)
{
    size_t count = 0, i = 0;
    while (i < value.len) {
        while (i < value.len && is_tag_separator(value.ptr[i]))
            i++;
        size_t start = i;
        while (i < value.len && !is_tag_separator(value.ptr[i]))
            i++;
        if (i > start) {
            if (out != NULL)
                out[count] = slice_make(value.ptr + start, i - start);
            count++;
        }
    }
    return count;
}

static slice_t copy_into(char **cursor, slice_t s)
{
    char *at = *cursor;
    if (s.len > 0)
        memcpy(at, s.ptr, s.len);
    *cursor += s.len;
    return slice_make(at, s.len);
}

/* Copies everything of `in` that the object keeps into one allocation. */
static struct object_head *object_head_build(const struct cache_object_head *in)
{
    size_t bytes = in->vary_names.len + in->vary_signature.len + in->path.len, tag_count = 0;
    for (size_t i = 0; i < in->header_count; i++) {
        bytes += in->headers[i].name.len + in->headers[i].value.len;
        if (is_tag_header(in->headers[i].name))
            tag_count += split_tags(in->headers[i].value, NULL);
    }
    size_t size = sizeof(struct object_head) + in->header_count * sizeof(struct http_header) + tag_count * sizeof(slice_t) + bytes;
    struct object_head *head = malloc(size);
    VERGE_ASSERT(head != NULL);
    *head = (struct object_head){
        .status = in->status,
        .header_count = in->header_count,
        .request_time = in->request_time,
        .response_time = in->response_time,
        .initial_age = in->initial_age,
        .ttl = in->ttl,
        .stale_while_revalidate = in->stale_while_revalidate,
        .stale_if_error = in->stale_if_error,
        .allocation_size = size,
    };
    head->headers = (struct http_header *)(head + 1);
    head->tags = (slice_t *)(head->headers + in->header_count);
    char *cursor = (char *)(head->tags + tag_count);
    for (size_t i = 0; i < in->header_count; i++) {
        head->headers[i].token = in->headers[i].token;
        head->headers[i].name = copy_into(&cursor, in->headers[i].name);
        head->headers[i].value = copy_into(&cursor, in->headers[i].value);
        if (is_tag_header(head->headers[i].name))
            head->tag_count += split_tags(head->headers[i].value, head->tags + head->tag_count);
    }
    head->vary_names = copy_into(&cursor, in->vary_names);
    head->vary_signature = copy_into(&cursor, in->vary_signature);
    head->path = copy_into(&cursor, in->path);
    VERGE_ASSERT(cursor == (char *)head + size);
    return head;
}

/* ---- bodies -------------------------------------------------------------- */

static struct object_body *body_create(void)
{
    struct object_body *body = calloc(1, sizeof *body);
    VERGE_ASSERT(body != NULL);
    atomic_init(&body->refcount, 1);
    return body;
}

static void body_unref(struct object_body *body)
{
    if (body == NULL || atomic_fetch_sub_explicit(&body->refcount, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < body->chunk_count; i++) {
        struct body_chunk *chunk = &body->chunks[i];
        chunk_memory_free(&(struct chunk_memory){chunk->data, chunk->fd, chunk->file_offset, chunk->capacity});
    }
    free(body->chunks);
    free(body);
}

static size_t next_chunk_capacity(const struct object_body *body, int64_t content_length)
{
    if (content_length > 0 && body->size < (uint64_t)content_length) {
        uint64_t remaining = (uint64_t)content_length - body->size;
        return remaining < CHUNK_MAX ? (size_t)remaining : CHUNK_MAX;
    }
    size_t last = body->chunk_count > 0 ? body->chunks[body->chunk_count - 1].capacity : 0;
    size_t capacity = last * 2;
    if (capacity < CHUNK_MIN)
        capacity = CHUNK_MIN;
    return capacity > CHUNK_MAX ? CHUNK_MAX : capacity;
}

static void body_append(struct object_body *body, int64_t content_length, const char *data, size_t len)
{
    while (len > 0) {
        struct body_chunk *last = body->chunk_count > 0 ? &body->chunks[body->chunk_count - 1] : NULL;
        size_t used = last != NULL ? (size_t)(body->size - last->start) : 0;
        if (last == NULL || used == last->capacity) {
            if (body->chunk_count == body->chunk_slots) {
                body->chunk_slots = body->chunk_slots ? body->chunk_slots * 2 : 4;
                body->chunks = realloc(body->chunks, body->chunk_slots * sizeof *body->chunks);
                VERGE_ASSERT(body->chunks != NULL);
            }
            size_t capacity = next_chunk_capacity(body, content_length);
            struct chunk_memory memory;
            chunk_memory_alloc(capacity, &memory);
            body->chunks[body->chunk_count++] = (struct body_chunk){
                .start = body->size, .capacity = capacity, .data = memory.data, .fd = memory.fd, .file_offset = memory.file_offset};
            body->allocated += capacity;
            continue;
        }
        size_t n = last->capacity - used < len ? last->capacity - used : len;
        memcpy(last->data + used, data, n);
        body->size += n;
        data += n;
        len -= n;
    }
}

/* The chunk holding `offset` (< body->size): the last one starting at or
 * before it. */
static const struct body_chunk *body_chunk_at(const struct object_body *body, uint64_t offset)
{
    size_t low = 0, high = body->chunk_count;
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        if (body->chunks[middle].start <= offset)
            low = middle;
        else
            high = middle;
    }
    return &body->chunks[low];
}

/* ---- objects ------------------------------------------------------------- */

static struct cache_object *object_create(const unsigned char hash[CACHE_KEY_HASH_LEN])
{
    struct cache_object *object = calloc(1, sizeof *object);
    VERGE_ASSERT(object != NULL);
    object->magic = OBJECT_MAGIC;
    atomic_init(&object->refcount, 1);
    atomic_init(&object->state, CACHE_OBJECT_BUSY);
    memcpy(object->hash, hash, CACHE_KEY_HASH_LEN);
    object->shard_index = hash[0] % SHARD_COUNT;
    object->content_length = -1;
    pthread_mutex_init(&object->lock, NULL);
    return object;
}

static void object_free(struct cache_object *object)
{
    VERGE_ASSERT(object->entry == NULL && !object->accounted && object->waiters == NULL);
    free(object->head);
    body_unref(object->body);
    pthread_mutex_destroy(&object->lock);
    object->magic = 0;
    free(object);
}

void cache_object_ref(struct cache_object *object)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    atomic_fetch_add_explicit(&object->refcount, 1, memory_order_relaxed);
}

void cache_object_unref(struct cache_object *object)
{
    if (object == NULL)
        return;
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    if (atomic_fetch_sub_explicit(&object->refcount, 1, memory_order_acq_rel) == 1)
        object_free(object);
}

static enum cache_object_state state_of(struct cache_object *object)
{
    return (enum cache_object_state)atomic_load_explicit(&object->state, memory_order_acquire);
}

static void set_state_locked(struct cache_object *object, enum cache_object_state state)
{
    atomic_store_explicit(&object->state, (int)state, memory_order_release);
}

static void notify_waiters_locked(struct cache_object *object)
{
    for (struct cache_waiter *waiter = object->waiters, *next; waiter != NULL; waiter = next) {
        next = waiter->next;
        waiter->notify(waiter);
    }
}

static uint64_t object_charge(const struct cache_object *object)
{
    return sizeof *object + (object->head ? object->head->allocation_size : 0) + (object->body ? object->body->allocated : 0);
}

static bool same_variant(const struct cache_object *a, const struct cache_object *b)
{
    return slice_equal(a->head->vary_names, b->head->vary_names) && slice_equal(a->head->vary_signature, b->head->vary_signature);
}

/* Drops the index references of unlinked objects, outside every lock. */
static void release_all(struct cache_object *list)
{
    while (list != NULL) {
        struct cache_object *next = list->release_next;
        cache_object_unref(list);
        list = next;
    }
}

/* ---- index --------------------------------------------------------------- */

static size_t bucket_index(const struct store_shard *shard, const unsigned char hash[CACHE_KEY_HASH_LEN])
{
    uint64_t bits;
    memcpy(&bits, hash + 8, sizeof bits); /* byte 0 chose the shard */
    return (size_t)(bits & (shard->bucket_count - 1));
}

static struct index_entry *entry_find(struct store_shard *shard, const unsigned char hash[CACHE_KEY_HASH_LEN], slice_t key)
{
    if (shard->bucket_count == 0)
        return NULL;
    for (struct index_entry *entry = shard->buckets[bucket_index(shard, hash)]; entry != NULL; entry = entry->chain_next)
        if (memcmp(entry->hash, hash, CACHE_KEY_HASH_LEN) == 0 && slice_equal(slice_make(entry->key, entry->key_len), key))
            return entry;
    return NULL;
}

static void shard_grow(struct store_shard *shard)
{
    size_t old_count = shard->bucket_count;
    struct index_entry **old = shard->buckets;
    shard->bucket_count = old_count ? old_count * 2 : INITIAL_BUCKETS;
    shard->buckets = calloc(shard->bucket_count, sizeof *shard->buckets);
    VERGE_ASSERT(shard->buckets != NULL);
    for (size_t i = 0; i < old_count; i++) {
        for (struct index_entry *entry = old[i], *next; entry != NULL; entry = next) {
            next = entry->chain_next;
            size_t b = bucket_index(shard, entry->hash);
            entry->chain_next = shard->buckets[b];
            shard->buckets[b] = entry;
        }
    }
    free(old);
}

static struct index_entry *entry_find_or_create(struct store_shard *shard, const unsigned char hash[CACHE_KEY_HASH_LEN],
                                                slice_t key)
{
    struct index_entry *entry = entry_find(shard, hash, key);
    if (entry != NULL)
        return entry;
    if (shard->entry_count >= shard->bucket_count)
        shard_grow(shard);
    entry = calloc(1, sizeof *entry);
    VERGE_ASSERT(entry != NULL);
    memcpy(entry->hash, hash, CACHE_KEY_HASH_LEN);
    entry->key = malloc(key.len ? key.len : 1);
    VERGE_ASSERT(entry->key != NULL);
    if (key.len > 0)
        memcpy(entry->key, key.ptr, key.len);
    entry->key_len = key.len;
    size_t b = bucket_index(shard, hash);
    entry->chain_next = shard->buckets[b];
    shard->buckets[b] = entry;
    shard->entry_count++;
    return entry;
}

static void entry_release_if_empty(struct store_shard *shard, struct index_entry *entry)
{
    if (entry->variants != NULL || entry->busy != NULL || entry->pass_until != 0)
        return;
    struct index_entry **link = &shard->buckets[bucket_index(shard, entry->hash)];
    while (*link != entry)
        link = &(*link)->chain_next;
    *link = entry->chain_next;
    shard->entry_count--;
    free(entry->key);
    free(entry);
}

static void pass_marker_clear(struct store_shard *shard, struct index_entry *entry)
{
    if (entry->pass_until != 0) {
        entry->pass_until = 0;
        shard->pass_markers--;
    }
}

/* Clears expired markers when their number doubled since the last sweep:
 * amortized O(1) per abandon, and at most ~2× the live markers kept. */
static void pass_markers_sweep(struct store_shard *shard, int64_t now)
{
    if (shard->pass_markers <= shard->pass_sweep_threshold)
        return;
    for (size_t b = 0; b < shard->bucket_count; b++) {
        for (struct index_entry *entry = shard->buckets[b], *next; entry != NULL; entry = next) {
            next = entry->chain_next;
            if (entry->pass_until != 0 && now >= entry->pass_until) {
                pass_marker_clear(shard, entry);
                entry_release_if_empty(shard, entry);
            }
        }
    }
    shard->pass_sweep_threshold = shard->pass_markers * 2 > PASS_SWEEP_MINIMUM ? shard->pass_markers * 2 : PASS_SWEEP_MINIMUM;
}

/* Eviction and shard locks held. Takes the object out of its entry and out
 * of the accounting; its index reference goes on *release. The entry is
 * left for the caller to release (it may still be iterating it). */
static void unlink_locked(struct store_shard *shard, struct cache_object *object, struct cache_object **release)
{
    struct index_entry *entry = object->entry;
    if (entry == NULL)
        return;
    if (object->is_variant) {
        struct cache_object **link = &entry->variants;
        while (*link != object)
            link = &(*link)->variant_next;
        *link = object->variant_next;
        object->variant_next = NULL;
        object->is_variant = false;
        entry->variant_count--;
    } else {
        VERGE_ASSERT(entry->busy == object);
        entry->busy = NULL;
    }
    object->entry = NULL;
    if (object->accounted) {
        evict_queue_remove(&eviction_queue, &object->evict_node);
        total_bytes -= object->charged;
        linked_objects--;
        object->charged = 0;
        object->accounted = false;
        publish_totals_locked();
    }
    object->release_next = *release;
    *release = object;
}

static void unlink_and_release_entry_locked(struct store_shard *shard, struct cache_object *object, struct cache_object **release)
{
    struct index_entry *entry = object->entry;
    unlink_locked(shard, object, release);
    if (entry != NULL)
        entry_release_if_empty(shard, entry);
}

/* Eviction and shard locks held; the object holds a reference for the index
 * and has its head. Makes it the entry's newest variant and charges it. */
static void link_variant_locked(struct store_shard *shard, struct index_entry *entry, struct cache_object *object,
                                struct cache_object **release)
{
    object->entry = entry;
    object->is_variant = true;
    object->variant_next = entry->variants;
    entry->variants = object;
    entry->variant_count++;
    evict_queue_insert(&eviction_queue, &object->evict_node);
    object->accounted = true;
    object->charged = object_charge(object);
    total_bytes += object->charged;
    linked_objects++;
    publish_totals_locked();
    atomic_fetch_add_explicit(&cache_stats.inserted, 1, memory_order_relaxed);
    if (entry->variant_count > MAX_VARIANTS) {
        struct cache_object *oldest_complete = NULL;
        for (struct cache_object *variant = entry->variants->variant_next; variant != NULL; variant = variant->variant_next)
            if (state_of(variant) == CACHE_OBJECT_COMPLETE)
                oldest_complete = variant;
        if (oldest_complete != NULL)
            unlink_locked(shard, oldest_complete, release);
    }
}

static bool object_is_evictable(struct evict_node *node, void *context)
{
    struct cache_object *object = (struct cache_object *)((char *)node - offsetof(struct cache_object, evict_node));
    return state_of(object) == CACHE_OBJECT_COMPLETE;
}

/* Eviction lock held. */
static void evict_to_budget_locked(struct cache_object **release)
{
    uint64_t budget = atomic_load_explicit(&memory_budget, memory_order_relaxed);
    while (total_bytes > budget) {
        struct evict_node *node = evict_queue_choose_victim(&eviction_queue, object_is_evictable, NULL);
        if (node == NULL)
            break;
        struct cache_object *object = (struct cache_object *)((char *)node - offsetof(struct cache_object, evict_node));
        struct store_shard *shard = &shards[object->shard_index];
        pthread_mutex_lock(&shard->lock);
        unlink_and_release_entry_locked(shard, object, release);
        pthread_mutex_unlock(&shard->lock);
        atomic_fetch_add_explicit(&cache_stats.evictions, 1, memory_order_relaxed);
    }
}

/* ---- configuration and keys ---------------------------------------------- */

void cache_store_configure(uint64_t memory_bytes, uint64_t max_object, enum cache_eviction_policy policy)
{
    store_ensure_init();
    atomic_store_explicit(&memory_budget, memory_bytes, memory_order_relaxed);
    atomic_store_explicit(&max_object_bytes, max_object, memory_order_relaxed);
    struct cache_object *release = NULL;
    pthread_mutex_lock(&eviction_lock);
    atomic_store_explicit(&eviction_policy, (int)policy, memory_order_relaxed);
    evict_queue_set_policy(&eviction_queue, policy == CACHE_EVICTION_LRU ? EVICT_POLICY_LRU : EVICT_POLICY_SIEVE);
    evict_to_budget_locked(&release);
    pthread_mutex_unlock(&eviction_lock);
    release_all(release);
}

/* SHA-256 fetched once: the one-shot SHA256() looks the algorithm up in
 * OpenSSL's provider store on every call, which cost more than hashing a
 * short key. The fetched object lives for the process. */
static EVP_MD *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

/* Each thread's digest context, made once and reused: EVP_Digest makes,
 * wipes and frees one per call, which cost as much as hashing the key. The
 * key only gets the thread-exit destructor called, which frees it. */
static _Thread_local EVP_MD_CTX *sha256_context;
static pthread_key_t sha256_context_key;
static bool sha256_context_key_made; /* else every call uses EVP_Digest */

static void sha256_context_free(void *unused)
{
    (void)unused;
    EVP_MD_CTX_free(sha256_context);
    sha256_context = NULL;
}

static void sha256_fetch(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha256_context_key_made = pthread_key_create(&sha256_context_key, sha256_context_free) == 0;
}

static bool sha256_with_context(const unsigned char *data, size_t len, unsigned char hash[CACHE_KEY_HASH_LEN])
{
    if (sha256 == NULL)
        return false;
    if (!sha256_context_key_made)
        return EVP_Digest(data, len, hash, NULL, sha256, NULL);
    if (sha256_context == NULL) {
        if ((sha256_context = EVP_MD_CTX_new()) == NULL)
            return false;
        if (pthread_setspecific(sha256_context_key, &sha256_context) != 0) {
            EVP_MD_CTX_free(sha256_context); /* nothing would free it when the thread ends */
            sha256_context = NULL;
            return EVP_Digest(data, len, hash, NULL, sha256, NULL);
        }
    }
    return EVP_DigestInit_ex2(sha256_context, sha256, NULL) && EVP_DigestUpdate(sha256_context, data, len) &&
           EVP_DigestFinal_ex(sha256_context, hash, NULL);
}

void cache_key_hash(slice_t key, unsigned char hash[CACHE_KEY_HASH_LEN])
{
    static const unsigned char empty = 0;
    pthread_once(&sha256_once, sha256_fetch);
    const unsigned char *data = key.len > 0 ? (const unsigned char *)key.ptr : &empty;
    if (!sha256_with_context(data, key.len, hash))
        SHA256(data, key.len, hash); /* cannot happen with a working OpenSSL; the slow path still hashes */
}

/* ---- lookup -------------------------------------------------------------- */

/* Shard lock held. A new BUSY object in the entry's busy slot, with a
 * reference for the index and one for the caller. */
static struct cache_object *busy_create_locked(struct index_entry *entry, const unsigned char hash[CACHE_KEY_HASH_LEN])
{
    struct cache_object *object = object_create(hash);
    atomic_store_explicit(&object->refcount, 2, memory_order_relaxed);
    object->entry = entry;
    entry->busy = object;
    return object;
}

enum cache_lookup_outcome cache_lookup(const unsigned char hash[CACHE_KEY_HASH_LEN], slice_t key,
                                       void (*signature_of)(slice_t names, void *context, struct bytebuf *out), void *context,
                                       int64_t now, struct cache_object **object)
{
    store_ensure_init();
    struct store_shard *shard = &shards[hash[0] % SHARD_COUNT];
    struct bytebuf signature = {0};
    enum cache_lookup_outcome outcome;
    *object = NULL;
    pthread_mutex_lock(&shard->lock);
    struct index_entry *entry = entry_find_or_create(shard, hash, key);
    if (entry->pass_until != 0 && now >= entry->pass_until)
        pass_marker_clear(shard, entry);
    if (entry->pass_until != 0) {
        outcome = CACHE_LOOKUP_PASS;
        goto out;
    }
    /* Variants usually share their Vary names: the request's signature is
     * computed once per distinct names. */
    const struct object_head *signed_for = NULL;
    for (struct cache_object *variant = entry->variants; variant != NULL; variant = variant->variant_next) {
        const struct object_head *head = variant->head;
        if (signed_for == NULL || !slice_equal(signed_for->vary_names, head->vary_names)) {
            signature.len = 0;
            if (signature_of != NULL && head->vary_names.len > 0)
                signature_of(head->vary_names, context, &signature);
            signed_for = head;
        }
        if (slice_equal(slice_make(signature.data, signature.len), head->vary_signature)) {
            cache_object_ref(variant);
            *object = variant;
            outcome = CACHE_LOOKUP_HIT;
            goto out;
        }
    }
    if (entry->busy != NULL) {
        cache_object_ref(entry->busy);
        *object = entry->busy;
        outcome = CACHE_LOOKUP_BUSY;
        goto out;
    }
    *object = busy_create_locked(entry, hash);
    outcome = CACHE_LOOKUP_LEADER;
out:
    pthread_mutex_unlock(&shard->lock);
    bytebuf_free(&signature);
    return outcome;
}

struct cache_object *cache_insert_leader(const unsigned char hash[CACHE_KEY_HASH_LEN], slice_t key, struct cache_object **busy)
{
    store_ensure_init();
    struct store_shard *shard = &shards[hash[0] % SHARD_COUNT];
    struct cache_object *leader = NULL;
    *busy = NULL;
    pthread_mutex_lock(&shard->lock);
    struct index_entry *entry = entry_find_or_create(shard, hash, key);
    if (entry->busy != NULL) {
        cache_object_ref(entry->busy);
        *busy = entry->busy;
    } else {
        leader = busy_create_locked(entry, hash);
    }
    pthread_mutex_unlock(&shard->lock);
    return leader;
}

/* ---- filling ------------------------------------------------------------- */

void cache_object_set_head(struct cache_object *object, const struct cache_object_head *in)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    struct object_head *head = object_head_build(in);
    struct object_body *body = body_create();
    bool too_big = in->content_length > 0 && (uint64_t)in->content_length > effective_max_object_bytes();
    struct store_shard *shard = &shards[object->shard_index];
    struct cache_object *release = NULL;

    pthread_mutex_lock(&eviction_lock);
    pthread_mutex_lock(&shard->lock);
    pthread_mutex_lock(&object->lock);
    VERGE_ASSERT(state_of(object) == CACHE_OBJECT_BUSY);
    object->head = head;
    object->body = body;
    object->content_length = in->content_length;
    object->oversize = too_big;
    struct index_entry *entry = object->entry;
    if (entry != NULL) {
        VERGE_ASSERT(entry->busy == object);
        entry->busy = NULL;
        if (too_big) {
            object->entry = NULL;
            object->release_next = release;
            release = object;
            entry_release_if_empty(shard, entry);
        } else {
            pass_marker_clear(shard, entry); /* the key is storable again */
            link_variant_locked(shard, entry, object, &release);
        }
    }
    set_state_locked(object, CACHE_OBJECT_FILLING);
    notify_waiters_locked(object);
    pthread_mutex_unlock(&object->lock);
    pthread_mutex_unlock(&shard->lock);
    evict_to_budget_locked(&release);
    pthread_mutex_unlock(&eviction_lock);
    release_all(release);
}

bool cache_object_append(struct cache_object *object, const void *data, size_t len)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    if (len == 0)
        return !object->oversize;
    uint64_t max = effective_max_object_bytes();
    pthread_mutex_lock(&object->lock);
    VERGE_ASSERT(state_of(object) == CACHE_OBJECT_FILLING);
    struct object_body *body = object->body;
    uint64_t allocated_before = body->allocated;
    body_append(body, object->content_length, data, len);
    uint64_t grown = body->allocated - allocated_before;
    bool became_oversize = !object->oversize && body->size > max;
    if (became_oversize)
        object->oversize = true;
    bool oversize = object->oversize;
    notify_waiters_locked(object);
    pthread_mutex_unlock(&object->lock);
    if (grown == 0 && !became_oversize)
        return !oversize;

    struct cache_object *release = NULL;
    pthread_mutex_lock(&eviction_lock);
    if (became_oversize) {
        struct store_shard *shard = &shards[object->shard_index];
        pthread_mutex_lock(&shard->lock);
        unlink_and_release_entry_locked(shard, object, &release);
        pthread_mutex_unlock(&shard->lock);
    } else if (object->accounted) {
        object->charged += grown;
        total_bytes += grown;
        publish_totals_locked();
    }
    evict_to_budget_locked(&release);
    pthread_mutex_unlock(&eviction_lock);
    release_all(release);
    return !oversize;
}

void cache_object_finish(struct cache_object *object, bool complete)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    struct store_shard *shard = &shards[object->shard_index];
    struct cache_object *release = NULL;
    if (!complete) {
        /* Unlinked first, so that no lookup finds it truncated. */
        pthread_mutex_lock(&eviction_lock);
        pthread_mutex_lock(&shard->lock);
        unlink_and_release_entry_locked(shard, object, &release);
        pthread_mutex_unlock(&shard->lock);
        pthread_mutex_unlock(&eviction_lock);
    }
    pthread_mutex_lock(&object->lock);
    VERGE_ASSERT(state_of(object) == CACHE_OBJECT_FILLING);
    object->body_truncated = !complete;
    object->content_length = (int64_t)object->body->size;
    set_state_locked(object, CACHE_OBJECT_COMPLETE);
    notify_waiters_locked(object);
    pthread_mutex_unlock(&object->lock);

    /* The older variant it replaces goes now; and it is evictable now, which
     * may be what an over-budget store was waiting for. */
    pthread_mutex_lock(&eviction_lock);
    if (complete) {
        pthread_mutex_lock(&shard->lock);
        if (object->is_variant) {
            struct index_entry *entry = object->entry;
            for (struct cache_object *older = object->variant_next, *next; older != NULL; older = next) {
                next = older->variant_next;
                if (same_variant(older, object))
                    unlink_locked(shard, older, &release);
            }
            entry_release_if_empty(shard, entry);
        }
        pthread_mutex_unlock(&shard->lock);
    }
    evict_to_budget_locked(&release);
    pthread_mutex_unlock(&eviction_lock);
    release_all(release);
}

void cache_object_abandon(struct cache_object *object, int64_t pass_seconds, int64_t now)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    struct store_shard *shard = &shards[object->shard_index];
    bool unlinked = false;
    pthread_mutex_lock(&shard->lock);
    pthread_mutex_lock(&object->lock);
    VERGE_ASSERT(state_of(object) == CACHE_OBJECT_BUSY);
    struct index_entry *entry = object->entry;
    if (entry != NULL) {
        VERGE_ASSERT(entry->busy == object);
        entry->busy = NULL;
        object->entry = NULL;
        unlinked = true;
        if (pass_seconds > 0) {
            if (entry->pass_until == 0)
                shard->pass_markers++;
            entry->pass_until = now + pass_seconds;
        }
        entry_release_if_empty(shard, entry);
        pass_markers_sweep(shard, now);
    }
    set_state_locked(object, CACHE_OBJECT_ABANDONED);
    notify_waiters_locked(object);
    pthread_mutex_unlock(&object->lock);
    pthread_mutex_unlock(&shard->lock);
    if (unlinked)
        cache_object_unref(object);
}

struct cache_object *cache_object_refresh(struct cache_object *stale, const struct cache_object_head *in)
{
    VERGE_CHECK_MAGIC(stale, OBJECT_MAGIC);
    if (state_of(stale) != CACHE_OBJECT_COMPLETE) {
        cache_object_ref(stale);
        return stale;
    }
    struct cache_object *object = object_create(stale->hash);
    object->head = object_head_build(in);
    object->body = stale->body; /* immutable: stale is COMPLETE */
    atomic_fetch_add_explicit(&object->body->refcount, 1, memory_order_relaxed);
    object->content_length = stale->content_length;
    object->body_truncated = stale->body_truncated;
    atomic_store_explicit(&object->state, CACHE_OBJECT_COMPLETE, memory_order_relaxed); /* published by the shard lock */

    struct store_shard *shard = &shards[object->shard_index];
    struct cache_object *release = NULL;
    pthread_mutex_lock(&eviction_lock);
    pthread_mutex_lock(&shard->lock);
    if (stale->is_variant) {
        struct index_entry *entry = stale->entry;
        cache_object_ref(object); /* the index's */
        link_variant_locked(shard, entry, object, &release);
        unlink_locked(shard, stale, &release);
        entry_release_if_empty(shard, entry);
    }
    pthread_mutex_unlock(&shard->lock);
    evict_to_budget_locked(&release);
    pthread_mutex_unlock(&eviction_lock);
    release_all(release);
    return object;
}

/* ---- reading ------------------------------------------------------------- */

static void view_fill(struct cache_object *object, enum cache_object_state state, struct cache_object_view *view)
{
    const struct object_head *head = object->head;
    *view = (struct cache_object_view){
        .state = state,
        .content_length = object->content_length,
        .body_available = object->body ? object->body->size : 0,
        .body_truncated = object->body_truncated,
    };
    if (head != NULL) {
        view->status = head->status;
        view->headers = head->headers;
        view->header_count = head->header_count;
        view->response_time = head->response_time;
        view->initial_age = head->initial_age;
        view->ttl = head->ttl;
        view->stale_while_revalidate = head->stale_while_revalidate;
        view->stale_if_error = head->stale_if_error;
        view->vary_names = head->vary_names;
        view->vary_signature = head->vary_signature;
        view->path = head->path;
    }
}

void cache_object_view(struct cache_object *object, struct cache_object_view *view)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    enum cache_object_state state = state_of(object);
    if (state == CACHE_OBJECT_COMPLETE) {
        view_fill(object, state, view);
        return;
    }
    pthread_mutex_lock(&object->lock);
    view_fill(object, state_of(object), view);
    pthread_mutex_unlock(&object->lock);
}

static size_t read_unlocked(struct cache_object *object, uint64_t offset, char *out, size_t max)
{
    const struct object_body *body = object->body;
    if (body == NULL || offset >= body->size || max == 0)
        return 0;
    const struct body_chunk *chunk = body_chunk_at(body, offset);
    const struct body_chunk *end = body->chunks + body->chunk_count;
    size_t copied = 0;
    while (copied < max && offset < body->size && chunk < end) {
        uint64_t chunk_end = chunk->start + chunk->capacity < body->size ? chunk->start + chunk->capacity : body->size;
        size_t n = (size_t)(chunk_end - offset) < max - copied ? (size_t)(chunk_end - offset) : max - copied;
        memcpy(out + copied, chunk->data + (offset - chunk->start), n);
        copied += n;
        offset += n;
        chunk++;
    }
    return copied;
}

size_t cache_object_read(struct cache_object *object, uint64_t offset, void *out, size_t max)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    if (state_of(object) == CACHE_OBJECT_COMPLETE)
        return read_unlocked(object, offset, out, max);
    pthread_mutex_lock(&object->lock);
    size_t n = read_unlocked(object, offset, out, max);
    pthread_mutex_unlock(&object->lock);
    return n;
}

static struct cache_body_piece piece_at_unlocked(struct cache_object *object, uint64_t offset)
{
    const struct object_body *body = object->body;
    if (body == NULL || offset >= body->size)
        return (struct cache_body_piece){NULL, 0, -1, 0};
    const struct body_chunk *chunk = body_chunk_at(body, offset);
    uint64_t chunk_end = chunk->start + chunk->capacity < body->size ? chunk->start + chunk->capacity : body->size;
    return (struct cache_body_piece){chunk->data + (offset - chunk->start), (size_t)(chunk_end - offset), chunk->fd,
                                     chunk->file_offset + (offset - chunk->start)};
}

struct cache_body_piece cache_object_piece_at(struct cache_object *object, uint64_t offset)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    if (state_of(object) == CACHE_OBJECT_COMPLETE)
        return piece_at_unlocked(object, offset);
    pthread_mutex_lock(&object->lock);
    struct cache_body_piece piece = piece_at_unlocked(object, offset);
    pthread_mutex_unlock(&object->lock);
    return piece;
}

void cache_object_touch(struct cache_object *object)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    if (atomic_load_explicit(&eviction_policy, memory_order_relaxed) == CACHE_EVICTION_SIEVE) {
        evict_node_mark_visited(&object->evict_node);
        return;
    }
    pthread_mutex_lock(&eviction_lock);
    evict_queue_touch(&eviction_queue, &object->evict_node);
    pthread_mutex_unlock(&eviction_lock);
}

/* ---- waiting ------------------------------------------------------------- */

static bool waiter_registered_locked(struct cache_object *object, struct cache_waiter *waiter)
{
    return waiter->prev != NULL || object->waiters == waiter;
}

void cache_object_wait(struct cache_object *object, struct cache_waiter *waiter)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    pthread_mutex_lock(&object->lock);
    if (!waiter_registered_locked(object, waiter)) {
        waiter->prev = NULL;
        waiter->next = object->waiters;
        if (object->waiters != NULL)
            object->waiters->prev = waiter;
        object->waiters = waiter;
    }
    enum cache_object_state state = state_of(object);
    if (state == CACHE_OBJECT_COMPLETE || state == CACHE_OBJECT_ABANDONED)
        waiter->notify(waiter); /* nothing will change any more: the waiter must look now */
    pthread_mutex_unlock(&object->lock);
}

void cache_object_unwait(struct cache_object *object, struct cache_waiter *waiter)
{
    VERGE_CHECK_MAGIC(object, OBJECT_MAGIC);
    pthread_mutex_lock(&object->lock);
    if (waiter_registered_locked(object, waiter)) {
        if (waiter->prev != NULL)
            waiter->prev->next = waiter->next;
        else
            object->waiters = waiter->next;
        if (waiter->next != NULL)
            waiter->next->prev = waiter->prev;
    }
    waiter->next = waiter->prev = NULL;
    pthread_mutex_unlock(&object->lock);
}

/* ---- purge --------------------------------------------------------------- */

/* Unlinks every variant that `matches`, shard by shard (so that one purge
 * never holds the eviction lock for the whole index). */
static size_t purge_matching(bool (*matches)(const struct object_head *head, slice_t argument), slice_t argument,
                             bool drop_pass_markers)
{
    store_ensure_init();
    size_t purged = 0;
    for (size_t s = 0; s < SHARD_COUNT; s++) {
        struct store_shard *shard = &shards[s];
        struct cache_object *release = NULL;
        pthread_mutex_lock(&eviction_lock);
        pthread_mutex_lock(&shard->lock);
        for (size_t b = 0; b < shard->bucket_count; b++) {
            for (struct index_entry *entry = shard->buckets[b], *next_entry; entry != NULL; entry = next_entry) {
                next_entry = entry->chain_next;
                for (struct cache_object *variant = entry->variants, *next; variant != NULL; variant = next) {
                    next = variant->variant_next;
                    if (matches(variant->head, argument)) {
                        unlink_locked(shard, variant, &release);
                        purged++;
                    }
                }
                if (drop_pass_markers)
                    pass_marker_clear(shard, entry);
                entry_release_if_empty(shard, entry);
            }
        }
        pthread_mutex_unlock(&shard->lock);
        pthread_mutex_unlock(&eviction_lock);
        release_all(release);
    }
    atomic_fetch_add_explicit(&cache_stats.purged, purged, memory_order_relaxed);
    return purged;
}

static bool path_matches(const struct object_head *head, slice_t pattern)
{
    if (pattern.len > 0 && pattern.ptr[pattern.len - 1] == '*')
        return slice_starts_with(head->path, slice_make(pattern.ptr, pattern.len - 1));
    return slice_equal(head->path, pattern);
}

static bool tag_matches(const struct object_head *head, slice_t tag)
{
    for (size_t i = 0; i < head->tag_count; i++)
        if (slice_equal(head->tags[i], tag))
            return true;
    return false;
}

static bool always_matches(const struct object_head *head, slice_t unused)
{
    return true;
}

size_t cache_purge_path(slice_t pattern)
{
    return purge_matching(path_matches, pattern, false);
}

size_t cache_purge_tag(slice_t tag)
{
    if (tag.len == 0)
        return 0;
    return purge_matching(tag_matches, tag, false);
}

size_t cache_purge_all(void)
{
    return purge_matching(always_matches, slice_make(NULL, 0), true);
}
