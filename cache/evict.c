/* evict.c — SIEVE and LRU over one doubly linked list (newest ↔ oldest).
 *
 * Both policies share the list so a config reload can switch between them
 * without touching the items. Invariants: `queued` is true exactly for the
 * nodes on the list; `count` is their number; the SIEVE hand is NULL or a
 * queued node. The caller's mutex guards everything but the visited bits.
 * Victim selection is bounded: two laps clear every visited bit, so a node
 * that can be evicted is found within 2 * count steps.
 */
#include "evict.h"

#include "../proxy/base.h"

void evict_queue_init(struct evict_queue *queue, enum evict_policy policy)
{
    *queue = (struct evict_queue){.policy = policy};
}

void evict_queue_set_policy(struct evict_queue *queue, enum evict_policy policy)
{
    queue->policy = policy;
    queue->hand = NULL;
}

static void unlink_node(struct evict_queue *queue, struct evict_node *node)
{
    if (node->newer != NULL)
        node->newer->older = node->older;
    else
        queue->newest = node->older;
    if (node->older != NULL)
        node->older->newer = node->newer;
    else
        queue->oldest = node->newer;
    node->newer = node->older = NULL;
}

static void push_newest(struct evict_queue *queue, struct evict_node *node)
{
    node->older = queue->newest;
    node->newer = NULL;
    if (queue->newest != NULL)
        queue->newest->newer = node;
    else
        queue->oldest = node;
    queue->newest = node;
}

void evict_queue_insert(struct evict_queue *queue, struct evict_node *node)
{
    VERGE_ASSERT(!node->queued);
    atomic_store_explicit(&node->visited, false, memory_order_relaxed);
    push_newest(queue, node);
    node->queued = true;
    queue->count++;
}

void evict_queue_remove(struct evict_queue *queue, struct evict_node *node)
{
    if (!node->queued)
        return;
    if (queue->hand == node)
        queue->hand = node->newer; /* NULL: the next sweep starts again at the oldest */
    unlink_node(queue, node);
    node->queued = false;
    queue->count--;
}

void evict_queue_touch(struct evict_queue *queue, struct evict_node *node)
{
    if (queue->policy == EVICT_POLICY_SIEVE) {
        evict_node_mark_visited(node);
        return;
    }
    if (!node->queued || queue->newest == node)
        return;
    unlink_node(queue, node);
    push_newest(queue, node);
}

static struct evict_node *choose_sieve(struct evict_queue *queue, bool (*evictable)(struct evict_node *, void *), void *context)
{
    for (size_t step = 0; step <= 2 * queue->count; step++) {
        struct evict_node *node = queue->hand != NULL ? queue->hand : queue->oldest;
        if (node == NULL)
            return NULL;
        if (evictable(node, context)) {
            if (!atomic_load_explicit(&node->visited, memory_order_relaxed)) {
                queue->hand = node; /* evict_queue_remove moves it on */
                return node;
            }
            atomic_store_explicit(&node->visited, false, memory_order_relaxed);
        }
        queue->hand = node->newer;
    }
    return NULL;
}

static struct evict_node *choose_lru(struct evict_queue *queue, bool (*evictable)(struct evict_node *, void *), void *context)
{
    for (struct evict_node *node = queue->oldest; node != NULL; node = node->newer)
        if (evictable(node, context))
            return node;
    return NULL;
}

struct evict_node *evict_queue_choose_victim(struct evict_queue *queue, bool (*evictable)(struct evict_node *node, void *context),
                                             void *context)
{
    if (queue->policy == EVICT_POLICY_SIEVE)
        return choose_sieve(queue, evictable, context);
    return choose_lru(queue, evictable, context);
}
