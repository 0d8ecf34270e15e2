/* test_chunk_memory.c — memfd-backed chunks: the bytes written through the
 * mapping are what sendfile would read from the file, small chunks stay on
 * the heap, and a freed range comes back punched (fresh zero pages), never
 * with the old bytes. */
#include "../../cache/chunk_memory.h"

#include <stdbool.h>

#include <string.h>
#include <unistd.h>

#include "unit.h"

static void test_small_chunks_use_the_heap(void)
{
    struct chunk_memory chunk;
    chunk_memory_alloc(1024, &chunk);
    CHECK_INT(chunk.fd, -1);
    CHECK(chunk.data != NULL);
    memset(chunk.data, 'x', 1024);
    chunk_memory_free(&chunk);
    chunk_memory_alloc(CHUNK_MEMORY_FILE_MAX + 1, &chunk);
    CHECK_INT(chunk.fd, -1);
    chunk_memory_free(&chunk);
}

static void test_file_chunks_read_back_through_the_file(void)
{
    struct chunk_memory chunk;
    chunk_memory_alloc(40 * 1024, &chunk);
    CHECK(chunk.fd >= 0);
    CHECK_INT(chunk.file_offset % 4096, 0);
    for (size_t i = 0; i < chunk.capacity; i++)
        chunk.data[i] = (char)(i * 7 + 3);
    char back[40 * 1024];
    CHECK_INT(pread(chunk.fd, back, sizeof back, (off_t)chunk.file_offset), (long long)sizeof back);
    CHECK(memcmp(back, chunk.data, sizeof back) == 0);

    struct chunk_memory other;
    chunk_memory_alloc(40 * 1024, &other);
    CHECK(other.fd != chunk.fd || other.file_offset >= chunk.file_offset + 40 * 1024 ||
          other.file_offset + 40 * 1024 <= chunk.file_offset); /* no overlap */
    uint64_t freed_offset = chunk.file_offset;
    int freed_fd = chunk.fd;
    chunk_memory_free(&chunk);
    struct chunk_memory reused;
    chunk_memory_alloc(40 * 1024, &reused);
    CHECK_INT(reused.fd, freed_fd);
    CHECK_INT(reused.file_offset, freed_offset); /* the same size class is reused first */
    bool zero = true;
    for (size_t i = 0; i < reused.capacity; i++)
        zero = zero && reused.data[i] == 0;
    CHECK(zero); /* punched: the old bytes are gone */
    chunk_memory_free(&reused);
    chunk_memory_free(&other);
}

int main(void)
{
    UNIT_RUN(test_small_chunks_use_the_heap);
    UNIT_RUN(test_file_chunks_read_back_through_the_file);
    return unit_summary();
}
