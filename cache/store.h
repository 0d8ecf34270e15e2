/* store.h — the in-memory object store shared by every loop thread: an index
 * sharded by key hash, refcounted objects whose body fills while readers
 * stream it, request collapsing through busy objects, hit-for-pass markers,
 * eviction within a memory budget, and purge.
 *
 * Objects. One object is one stored response variant: status, headers, body
 * chunks, freshness data, its primary key, its Vary names and signature, its
 * path (for invalidation) and its surrogate keys (tags). An object starts
 * BUSY (inserted by the request that goes to the origin, the "leader"), then
 * either gets its response head (cache_object_set_head: FILLING), receives
 * body bytes (cache_object_append) and is finished (COMPLETE), or is
 * abandoned (ABANDONED: the response could not be stored; waiters go to the
 * origin themselves). A COMPLETE object never changes; a 304 refresh makes a
 * new object that shares the body (cache_object_refresh).
 *
 * Waiting. A request that finds a BUSY or FILLING object registers a waiter
 * (cache_object_wait). Every state change (head set, bytes appended,
 * finished, abandoned) calls waiter->notify(waiter) from the thread that made
 * the change, with the object's lock held: notify must only hand the event
 * to the waiter's own thread (and not call back into the store). A waiter is
 * unregistered with cache_object_unwait before it is freed; after unwait
 * returns, notify is not called for it again. Register first, then look at
 * the object (cache_object_view): every change after the registration
 * notifies. Registering on an object that is already COMPLETE or ABANDONED
 * calls notify once at once (from the caller's thread), so a waiter that
 * registers after the last change is not left waiting. A waiter on a BUSY
 * object looks up again when woken: the object may turn out to be another
 * Vary variant, or abandoned.
 *
 * Locking: one mutex per index shard (lookup, insert, unlink), one mutex per
 * object (state, body growth, waiters), one mutex for the eviction queue and
 * memory accounting. Order: shard → object, eviction → shard → object; never
 * the reverse. Reading a COMPLETE object's head and body takes no lock.
 *
 * Memory: an object's head (one allocation) and its body chunks count
 * towards memory_bytes while it is linked. Going over the budget (insert,
 * append, refresh, reconfigure) evicts COMPLETE objects, referenced or not,
 * in the policy's order until under budget; objects still filling are not
 * evicted (they are bounded by the origin fetches in flight).
 *
 * Refcounts: the index holds one reference on each linked object; each
 * lookup result or waiter's request holds its own. An object is freed when
 * the last reference goes, never while a reader holds one (eviction and
 * purge only unlink).
 */
#ifndef VERGE_CACHE_STORE_H
#define VERGE_CACHE_STORE_H

#include <stdatomic.h>

#include "../proxy/base.h"
#include "../proxy/http1.h"

#define CACHE_KEY_HASH_LEN 32 /* SHA-256 */

enum cache_eviction_policy { CACHE_EVICTION_SIEVE, CACHE_EVICTION_LRU };

enum cache_object_state { CACHE_OBJECT_BUSY, CACHE_OBJECT_FILLING, CACHE_OBJECT_COMPLETE, CACHE_OBJECT_ABANDONED };

struct cache_object;

struct cache_waiter {
    void (*notify)(struct cache_waiter *waiter); /* see "Waiting" above */
    void *context;
    struct cache_waiter *next, *prev; /* private: the object's waiter list */
};

/* What a caller hands the store when a response head becomes known. */
struct cache_object_head {
    int status;
    const struct http_header *headers; /* copied; hop-by-hop headers must already be gone */
    size_t header_count;
    slice_t vary_names;     /* from cache_vary_names */
    slice_t vary_signature; /* the leader's request's signature for those names */
    slice_t path;           /* URL path, for invalidation by path */
    int64_t request_time, response_time, initial_age;
    int64_t ttl, stale_while_revalidate, stale_if_error;
    int64_t content_length; /* -1 when unknown (chunked) */
};

/* A read-only view of an object's head, valid while a reference is held. */
struct cache_object_view {
    enum cache_object_state state;
    int status;
    const struct http_header *headers;
    size_t header_count;
    int64_t response_time, initial_age, ttl, stale_while_revalidate, stale_if_error;
    int64_t content_length;                   /* -1 while unknown */
    uint64_t body_available;                  /* bytes appended so far (all of them once COMPLETE) */
    bool body_truncated;                      /* the fill ended early: readers must cut their response short */
    slice_t vary_names, vary_signature, path; /* as given to cache_object_set_head (empty while BUSY) */
};

struct cache_stats {
    atomic_ullong objects, bytes, evictions, purged, inserted;
};

/* Sets the memory budget (bytes for heads + bodies of linked objects), the
 * largest object kept (bigger ones are abandoned while filling and pass
 * through), and the eviction policy. Called once at start; later calls
 * change the budget and limits (config reload) and evict if needed. */
void cache_store_configure(uint64_t memory_bytes, uint64_t max_object_bytes, enum cache_eviction_policy policy);

/* Computes the key hash (SHA-256) of a canonical key from cache_build_key. */
void cache_key_hash(slice_t key, unsigned char hash[CACHE_KEY_HASH_LEN]);

enum cache_lookup_outcome {
    CACHE_LOOKUP_HIT,    /* *object: a COMPLETE or FILLING object whose Vary signature matches */
    CACHE_LOOKUP_BUSY,   /* *object: a BUSY object for this key (headers unknown yet): wait on it */
    CACHE_LOOKUP_LEADER, /* *object: a new BUSY object this caller must fill or abandon */
    CACHE_LOOKUP_PASS,   /* hit-for-pass marker: go to the origin, do not collapse, do not store */
};

/* Looks up the key. `signature_of(names, context, out)` must append the
 * request's Vary signature for `names` (cache_vary_signature); it runs with
 * the shard lock held (pure: no call back into the store); NULL means an
 * empty signature. Stale objects are returned as HITs: freshness is the
 * caller's decision (policy.h), and a caller that will refetch asks for a
 * leader slot with cache_insert_leader. The order: an unexpired hit-for-pass
 * marker → PASS (whatever variants exist, like Varnish's hit-for-pass, which
 * is newer than them); else the newest variant whose signature matches →
 * HIT; else the key's BUSY object → BUSY; else a new BUSY object → LEADER.
 * The returned object carries a reference for the caller. */
enum cache_lookup_outcome cache_lookup(const unsigned char hash[CACHE_KEY_HASH_LEN], slice_t key,
                                       void (*signature_of)(slice_t names, void *context, struct bytebuf *out), void *context,
                                       int64_t now, struct cache_object **object);

/* Inserts a BUSY object for the key even though a stale variant exists (a
 * refresh). Returns it with a reference (and *busy NULL), or NULL when
 * another fetch for the key is already BUSY (returned in *busy with a
 * reference, to wait on). Hit-for-pass markers are cache_lookup's business:
 * this does not look at them. */
struct cache_object *cache_insert_leader(const unsigned char hash[CACHE_KEY_HASH_LEN], slice_t key, struct cache_object **busy);

/* The leader's response may be stored: BUSY → FILLING. Wakes waiters. A
 * variant with the same Vary signature that was stored before is replaced
 * (unlinked) when this object completes; until then lookups find the newer
 * one first. Clears the key's hit-for-pass marker. A head whose
 * content_length is over max_object_bytes is not linked: the object fills
 * only for the waiters that already hold it. At most 32 variants are kept
 * per key (the oldest complete one goes). */
void cache_object_set_head(struct cache_object *object, const struct cache_object_head *head);
/* Appends body bytes (copied). Returns false once the object has outgrown
 * max_object_bytes: it is unlinked, and a filler that does not want to hold
 * the rest of the body in memory should cache_object_finish(object, false)
 * (readers of it are then cut short). */
bool cache_object_append(struct cache_object *object, const void *data, size_t len);
/* Ends the fill (FILLING → COMPLETE): `complete` false means the origin
 * stopped early (body_truncated: readers cut their responses short; the
 * object is unlinked before anyone can find it truncated). */
void cache_object_finish(struct cache_object *object, bool complete);
/* The response cannot be stored (BUSY → ABANDONED; a FILLING object is
 * ended with cache_object_finish instead): unlinks the object, leaves a
 * hit-for-pass marker until now + `pass_seconds` (0: none) and wakes the
 * waiters, who go to the origin themselves (or look up again). */
void cache_object_abandon(struct cache_object *object, int64_t pass_seconds, int64_t now);
/* A 304 refreshed `stale`: links a new COMPLETE object with `head`'s
 * freshness, headers, Vary names and signature and path, and `stale`'s body
 * (shared, not copied), and unlinks `stale`. Returns the new object with a
 * reference for the caller. If `stale` was unlinked meanwhile (purged,
 * evicted) the new object is returned but not linked. If `stale` is not
 * COMPLETE (still filling) there is no body to share yet: `stale` itself is
 * returned with a new reference, unchanged. The refresh's BUSY leader (from
 * cache_insert_leader) is then abandoned with pass_seconds 0: its waiters
 * look up again and find the new object. */
struct cache_object *cache_object_refresh(struct cache_object *stale, const struct cache_object_head *head);

/* Snapshot of an object's head and fill state (takes the object lock unless
 * COMPLETE). */
void cache_object_view(struct cache_object *object, struct cache_object_view *view);
/* Copies up to `max` body bytes starting at `offset` into `out`; returns the
 * number copied (0 when nothing is available yet at that offset). */
size_t cache_object_read(struct cache_object *object, uint64_t offset, void *out, size_t max);
/* Zero-copy form of cache_object_read: the contiguous body bytes available
 * at `offset` (up to the end of one chunk; empty when none yet), valid and
 * unchanged while a reference on the object is held, and where they live:
 * `fd` >= 0 when they are also in a memfd at `file_offset` (see
 * cache/chunk_memory.h), so sendfile(2) can send them without a copy; -1 for
 * heap memory. */
struct cache_body_piece {
    const char *data;
    size_t len;
    int fd;
    uint64_t file_offset;
};
struct cache_body_piece cache_object_piece_at(struct cache_object *object, uint64_t offset);
/* Marks the object as used (eviction bookkeeping; cheap, lock-free for SIEVE). */
void cache_object_touch(struct cache_object *object);

void cache_object_wait(struct cache_object *object, struct cache_waiter *waiter);
void cache_object_unwait(struct cache_object *object, struct cache_waiter *waiter);

void cache_object_ref(struct cache_object *object);
void cache_object_unref(struct cache_object *object);

/* Purge (admin POST /purge). Each unlinks matching objects (all variants and
 * query strings) and returns how many went. `pattern` is CloudFront
 * invalidation syntax: an exact path, or a prefix ending in '*'. */
size_t cache_purge_path(slice_t pattern);
size_t cache_purge_tag(slice_t tag); /* from Surrogate-Key / Cache-Tag (space- or comma-separated) */
size_t cache_purge_all(void);        /* also drops every hit-for-pass marker */

extern struct cache_stats cache_stats;

#endif
