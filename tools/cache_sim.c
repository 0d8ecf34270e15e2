/* cache_sim.c — replays synthetic traces through cache/evict.c and prints
 * the hit ratios of SIEVE and LRU as a Markdown table (the issue's
 * eviction-policy comparison; the store's default follows it).
 *
 * Traces (deterministic: a fixed seed, no clock):
 *  - 100,000 objects with sizes from 1 KiB to 1 MiB (60% 1–16 KiB, 30%
 *    16–128 KiB, 10% 128 KiB–1 MiB, log-uniform inside each band),
 *    requested with Zipf(α) popularity; popularity rank and size are
 *    independent (a random permutation maps ranks to objects);
 *  - the same trace with a scan mixed in: every 100,000 requests, 20,000
 *    requests for cold objects that are never requested again.
 * The cache holds 10% or 25% of the working set's bytes (the sum of the
 * 100,000 objects' sizes); admission is unconditional, eviction repeats
 * until the new object fits, the same way store.c charges bytes. Hit ratios
 * count every request of the trace, scans included (scans miss under both
 * policies; the difference is what they push out).
 *
 * Usage: cache_sim [requests]   (default 2,000,000 per trace)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/evict.h"

#define OBJECT_COUNT 100000u
#define SCAN_EVERY 100000u
#define SCAN_LENGTH 20000u
#define SEED 0x5eed5eedcafef00dull

static uint64_t random_state;

static uint64_t random_next(void) /* splitmix64 */
{
    uint64_t z = (random_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double random_unit(void) /* [0, 1) */
{
    return (double)(random_next() >> 11) * (1.0 / 9007199254740992.0);
}

static uint32_t random_size(void)
{
    double band = random_unit(), low, high;
    if (band < 0.6)
        low = 1024, high = 16 * 1024;
    else if (band < 0.9)
        low = 16 * 1024, high = 128 * 1024;
    else
        low = 128 * 1024, high = 1024 * 1024;
    return (uint32_t)exp(log(low) + random_unit() * (log(high) - log(low)));
}

struct trace {
    uint32_t *requests; /* object ids */
    size_t count;
    uint32_t *sizes; /* by object id (Zipf objects, then scan objects) */
    size_t object_count;
    uint64_t working_set_bytes;
};

static void trace_build(struct trace *trace, double alpha, size_t requests, int with_scan)
{
    random_state = SEED; /* the same objects and sizes for every trace */
    size_t scans = with_scan ? requests / SCAN_EVERY : 0;
    trace->object_count = OBJECT_COUNT + scans * SCAN_LENGTH;
    trace->sizes = malloc(trace->object_count * sizeof *trace->sizes);
    trace->working_set_bytes = 0;
    for (size_t i = 0; i < OBJECT_COUNT; i++) {
        trace->sizes[i] = random_size();
        trace->working_set_bytes += trace->sizes[i];
    }
    uint32_t *object_of_rank = malloc(OBJECT_COUNT * sizeof *object_of_rank);
    for (uint32_t i = 0; i < OBJECT_COUNT; i++)
        object_of_rank[i] = i;
    for (uint32_t i = OBJECT_COUNT - 1; i > 0; i--) { /* Fisher–Yates */
        uint32_t j = (uint32_t)(random_next() % (i + 1));
        uint32_t t = object_of_rank[i];
        object_of_rank[i] = object_of_rank[j];
        object_of_rank[j] = t;
    }
    random_state = SEED ^ 0x5ca9; /* cold objects: their own stream, so the Zipf part stays the same */
    for (size_t i = OBJECT_COUNT; i < trace->object_count; i++)
        trace->sizes[i] = random_size();
    double *cumulative = malloc(OBJECT_COUNT * sizeof *cumulative);
    double sum = 0;
    for (uint32_t rank = 0; rank < OBJECT_COUNT; rank++) {
        sum += 1.0 / pow(rank + 1, alpha);
        cumulative[rank] = sum;
    }
    trace->count = requests + scans * SCAN_LENGTH;
    trace->requests = malloc(trace->count * sizeof *trace->requests);
    size_t out = 0;
    uint32_t next_cold = OBJECT_COUNT;
    random_state = SEED ^ (uint64_t)(alpha * 1000); /* the request sequence depends on α only */
    for (size_t r = 0; r < requests; r++) {
        if (with_scan && r > 0 && r % SCAN_EVERY == 0)
            for (uint32_t s = 0; s < SCAN_LENGTH; s++)
                trace->requests[out++] = next_cold++;
        double u = random_unit() * sum;
        size_t low = 0, high = OBJECT_COUNT - 1;
        while (low < high) {
            size_t middle = (low + high) / 2;
            if (cumulative[middle] < u)
                low = middle + 1;
            else
                high = middle;
        }
        trace->requests[out++] = object_of_rank[low];
    }
    trace->count = out;
    free(cumulative);
    free(object_of_rank);
}

static void trace_free(struct trace *trace)
{
    free(trace->requests);
    free(trace->sizes);
}

static bool always_evictable(struct evict_node *node, void *context)
{
    return true;
}

struct result {
    double hit_ratio, byte_hit_ratio;
};

static struct result simulate(const struct trace *trace, enum evict_policy policy, uint64_t capacity)
{
    struct evict_node *nodes = calloc(trace->object_count, sizeof *nodes);
    struct evict_queue queue;
    evict_queue_init(&queue, policy);
    uint64_t used = 0, hits = 0, hit_bytes = 0, total_bytes = 0;
    for (size_t r = 0; r < trace->count; r++) {
        uint32_t id = trace->requests[r];
        uint32_t size = trace->sizes[id];
        total_bytes += size;
        if (nodes[id].queued) {
            hits++;
            hit_bytes += size;
            evict_queue_touch(&queue, &nodes[id]);
            continue;
        }
        if (size > capacity)
            continue;
        while (used + size > capacity) {
            struct evict_node *victim = evict_queue_choose_victim(&queue, always_evictable, NULL);
            evict_queue_remove(&queue, victim);
            used -= trace->sizes[victim - nodes];
        }
        evict_queue_insert(&queue, &nodes[id]);
        used += size;
    }
    free(nodes);
    return (struct result){(double)hits / (double)trace->count, (double)hit_bytes / (double)total_bytes};
}

int main(int argc, char **argv)
{
    size_t requests = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 2000000;
    if (requests == 0) {
        fprintf(stderr, "usage: cache_sim [requests]\n");
        return 2;
    }
    static const double alphas[] = {0.8, 1.0};
    static const int percents[] = {10, 25};
    printf("%zu objects (1 KiB–1 MiB), %zu Zipf requests per trace; scan: %u cold one-time requests every %u; seed %#llx\n\n",
           (size_t)OBJECT_COUNT, requests, SCAN_LENGTH, SCAN_EVERY, (unsigned long long)SEED);
    printf("| trace | α | cache / working set | SIEVE hit | LRU hit | SIEVE byte hit | LRU byte hit |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int with_scan = 0; with_scan < 2; with_scan++) {
        for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
            struct trace trace;
            trace_build(&trace, alphas[a], requests, with_scan);
            for (size_t p = 0; p < sizeof percents / sizeof percents[0]; p++) {
                uint64_t capacity = trace.working_set_bytes * (uint64_t)percents[p] / 100;
                struct result sieve = simulate(&trace, EVICT_POLICY_SIEVE, capacity);
                struct result lru = simulate(&trace, EVICT_POLICY_LRU, capacity);
                printf("| %s | %.1f | %d%% | %.2f%% | %.2f%% | %.2f%% | %.2f%% |\n", with_scan ? "Zipf + scans" : "Zipf", alphas[a],
                       percents[p], 100 * sieve.hit_ratio, 100 * lru.hit_ratio, 100 * sieve.byte_hit_ratio,
                       100 * lru.byte_hit_ratio);
            }
            trace_free(&trace);
        }
    }
    return 0;
}
