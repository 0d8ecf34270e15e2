/* chunk_memory.h — memory for the chunks of stored bodies, placed so the
 * kernel can send them without copying.
 *
 * Chunks of CHUNK_MEMORY_FILE_MIN bytes or more live in memfd segments
 * (tmpfs files mapped into the process): the bytes are written through the
 * mapping, and a delivery sends them with sendfile(2), which hands the pages
 * to the socket by reference instead of copying them. Smaller chunks are
 * plain heap memory (fd -1): for them a copy costs less than the extra call.
 *
 * Safety of reuse: a page handed to a socket may still be queued there after
 * its chunk is freed. Freeing therefore punches the range out of the file
 * (fallocate PUNCH_HOLE): queued pages keep their own references, and the
 * next chunk placed there gets fresh pages. Punched pages cost no memory.
 *
 * Locking: one mutex guards the segments and free lists; the chunk bytes
 * themselves belong to the caller (the store's object lock).
 */
#ifndef VERGE_CACHE_CHUNK_MEMORY_H
#define VERGE_CACHE_CHUNK_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#define CHUNK_MEMORY_FILE_MIN (16 * 1024)
#define CHUNK_MEMORY_FILE_MAX (64 * 1024)

struct chunk_memory {
    char *data;           /* where the bytes are written and read */
    int fd;               /* the segment's memfd, -1 for heap memory */
    uint64_t file_offset; /* of data[0] in fd */
    size_t capacity;      /* usable bytes (what was asked for) */
};

/* Allocates `capacity` bytes (at most CHUNK_MEMORY_FILE_MAX when
 * file-backed; larger requests get heap memory). Aborts on out-of-memory
 * like the rest of the store; falls back to the heap when memfd is not
 * available. */
void chunk_memory_alloc(size_t capacity, struct chunk_memory *out);
/* Releases a chunk from chunk_memory_alloc. */
void chunk_memory_free(struct chunk_memory *chunk);

#endif
