/* chunk_memory.c — memfd segments for stored body chunks (see the header for
 * why: sendfile without copies, and hole punching for safe reuse).
 *
 * Segments are CHUNK_SEGMENT_SIZE files, mapped whole; space is carved from
 * the newest segment with a bump pointer and recycled through one free list
 * per size class (a whole number of pages, 4 to 16 for 16–64 KiB). Free-list
 * nodes live on the heap, never in the punched ranges (writing there would
 * bring the pages back). Invariant: every range on a free list is punched.
 */

#include "chunk_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../proxy/base.h"

#define CHUNK_PAGE 4096
#define CHUNK_SEGMENT_SIZE ((size_t)64 << 20)
#define CHUNK_CLASSES (CHUNK_MEMORY_FILE_MAX / CHUNK_PAGE + 1)

struct segment {
    int fd;
    char *base;
};

struct free_range {
    struct free_range *next;
    size_t segment;
    uint64_t offset;
};

static pthread_mutex_t chunk_lock = PTHREAD_MUTEX_INITIALIZER;
static struct segment *segments;
static size_t segment_count, segment_slots;
static size_t bump_used = CHUNK_SEGMENT_SIZE; /* in the newest segment; full means "open a new one" */
static struct free_range *free_lists[CHUNK_CLASSES];
static bool files_unavailable;

static bool open_segment_locked(void)
{
    int fd = memfd_create("verge-cache", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)CHUNK_SEGMENT_SIZE) != 0) {
        log_warn("cache: memfd segments unavailable (%s); stored bodies use heap memory and are copied on send", strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    char *base = mmap(NULL, CHUNK_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        log_warn("cache: cannot map a memfd segment (%s); stored bodies use heap memory", strerror(errno));
        close(fd);
        return false;
    }
    if (segment_count == segment_slots) {
        segment_slots = segment_slots ? segment_slots * 2 : 8;
        segments = realloc(segments, segment_slots * sizeof *segments);
        VERGE_ASSERT(segments != NULL);
    }
    segments[segment_count++] = (struct segment){fd, base};
    bump_used = 0;
    return true;
}

static void heap_alloc(size_t capacity, struct chunk_memory *out)
{
    out->data = malloc(capacity ? capacity : 1);
    VERGE_ASSERT(out->data != NULL);
    out->fd = -1;
    out->file_offset = 0;
    out->capacity = capacity;
}

void chunk_memory_alloc(size_t capacity, struct chunk_memory *out)
{
    if (capacity < CHUNK_MEMORY_FILE_MIN || capacity > CHUNK_MEMORY_FILE_MAX) {
        heap_alloc(capacity, out);
        return;
    }
    size_t pages = (capacity + CHUNK_PAGE - 1) / CHUNK_PAGE;
    size_t bytes = pages * CHUNK_PAGE;
    pthread_mutex_lock(&chunk_lock);
    if (files_unavailable) {
        pthread_mutex_unlock(&chunk_lock);
        heap_alloc(capacity, out);
        return;
    }
    struct free_range *range = free_lists[pages];
    size_t segment;
    uint64_t offset;
    if (range != NULL) {
        free_lists[pages] = range->next;
        segment = range->segment;
        offset = range->offset;
        free(range);
    } else {
        if (bump_used + bytes > CHUNK_SEGMENT_SIZE && !open_segment_locked()) {
            files_unavailable = true;
            pthread_mutex_unlock(&chunk_lock);
            heap_alloc(capacity, out);
            return;
        }
        segment = segment_count - 1;
        offset = bump_used;
        bump_used += bytes;
    }
    out->data = segments[segment].base + offset;
    out->fd = segments[segment].fd;
    out->file_offset = offset;
    out->capacity = capacity;
    pthread_mutex_unlock(&chunk_lock);
}

void chunk_memory_free(struct chunk_memory *chunk)
{
    if (chunk->fd < 0) {
        free(chunk->data);
        chunk->data = NULL;
        return;
    }
    size_t bytes = (chunk->capacity + CHUNK_PAGE - 1) / CHUNK_PAGE * CHUNK_PAGE;
    /* Pages still queued in a socket keep their references; the range gets
     * fresh pages when it is reused. */
    if (fallocate(chunk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)chunk->file_offset, (off_t)bytes) != 0)
        log_warn("cache: cannot release %zu bytes of a memfd segment: %s", bytes, strerror(errno));
    struct free_range *range = malloc(sizeof *range);
    VERGE_ASSERT(range != NULL);
    pthread_mutex_lock(&chunk_lock);
    size_t segment = 0;
    while (segment < segment_count && segments[segment].fd != chunk->fd)
        segment++;
    VERGE_ASSERT(segment < segment_count);
    range->segment = segment;
    range->offset = chunk->file_offset;
    range->next = free_lists[bytes / CHUNK_PAGE];
    free_lists[bytes / CHUNK_PAGE] = range;
    pthread_mutex_unlock(&chunk_lock);
    chunk->data = NULL;
}
