/* evict.h — the eviction queue behind the cache's memory budget: one
 * interface, two policies.
 *
 *  - SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI'24): a FIFO
 *    queue, a "visited" bit per item and a hand. A hit only sets the bit (a
 *    lock-free atomic store, no queue change). Eviction moves the hand from
 *    the oldest item towards the newest, clearing set bits, and evicts the
 *    first item whose bit is clear; the hand stays where it stopped. Items
 *    inserted after a scan started sit behind the hand, so one-hit wonders
 *    (scans) leave quickly while popular items keep their place.
 *  - LRU: a hit moves the item to the newest end; the victim is the oldest.
 *
 * Nodes are embedded in the caller's items. The queue has no lock of its
 * own: the caller serializes every call with one mutex, except
 * evict_node_mark_visited, which may run concurrently (it only stores the
 * atomic bit). For LRU a hit must go through evict_queue_touch under that
 * mutex; evict_policy_touch_is_lock_free says which applies.
 */
#ifndef VERGE_CACHE_EVICT_H
#define VERGE_CACHE_EVICT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum evict_policy { EVICT_POLICY_SIEVE, EVICT_POLICY_LRU };

struct evict_node {
    struct evict_node *newer, *older; /* queue links; guarded by the caller's mutex */
    atomic_bool visited;              /* SIEVE: hit since the hand last passed */
    bool queued;
};

struct evict_queue {
    enum evict_policy policy;
    struct evict_node *newest, *oldest;
    struct evict_node *hand; /* SIEVE: next item to examine (NULL: start at the oldest) */
    size_t count;
};

void evict_queue_init(struct evict_queue *queue, enum evict_policy policy);
/* Switches policies in place (config reload): both keep the same list, so
 * the items stay; the SIEVE hand restarts at the oldest item. */
void evict_queue_set_policy(struct evict_queue *queue, enum evict_policy policy);

/* Adds a new item at the newest end (visited bit clear). */
void evict_queue_insert(struct evict_queue *queue, struct evict_node *node);
/* Removes a queued item (evicted, purged, replaced); moves the hand past it. */
void evict_queue_remove(struct evict_queue *queue, struct evict_node *node);
/* A hit. SIEVE: sets the visited bit. LRU: moves the item to the newest end.
 * Ignores items that are not queued. */
void evict_queue_touch(struct evict_queue *queue, struct evict_node *node);

static inline bool evict_policy_touch_is_lock_free(enum evict_policy policy)
{
    return policy == EVICT_POLICY_SIEVE;
}
/* SIEVE's whole hit path: safe without the queue's mutex, on a node whose
 * memory is alive (queued or not). */
static inline void evict_node_mark_visited(struct evict_node *node)
{
    /* Loaded first so that hot items do not bounce their cache line. */
    if (!atomic_load_explicit(&node->visited, memory_order_relaxed))
        atomic_store_explicit(&node->visited, true, memory_order_relaxed);
}

/* Picks the next victim without removing it (the caller removes it with
 * evict_queue_remove once it has unlinked the item). Items for which
 * `evictable(node, context)` is false are passed over (objects still
 * filling). Returns NULL when no item is evictable. */
struct evict_node *evict_queue_choose_victim(struct evict_queue *queue, bool (*evictable)(struct evict_node *node, void *context),
                                             void *context);

#endif
