/* swar.h — eight bytes at a time ("SIMD within a register"), for scans of
 * header text: the HTTP/1 parser (proxy/http1.c) and the validation of
 * function results (hooks/rules.c). Words are loaded with memcpy (any
 * alignment). The tests are exact as yes/no answers for a whole word; which
 * bytes they mark is only exact where a comment says so.
 */
#ifndef VERGE_PROXY_SWAR_H
#define VERGE_PROXY_SWAR_H

#include <stdint.h>
#include <string.h>

#define SWAR_ONES 0x0101010101010101ull
#define SWAR_HIGHS 0x8080808080808080ull

static inline uint64_t load_word(const char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* Non-zero when a byte of w is below n (n <= 128). */
static inline uint64_t swar_has_less(uint64_t w, unsigned n)
{
    return (w - SWAR_ONES * n) & ~w & SWAR_HIGHS;
}

/* Non-zero when a byte of w equals b. */
static inline uint64_t swar_has_byte(uint64_t w, unsigned b)
{
    return swar_has_less(w ^ (SWAR_ONES * b), 1);
}

/* The high bit of each byte of w that is zero (exactly those). */
static inline uint64_t swar_zero_bytes(uint64_t w)
{
    return ~(((w & ~SWAR_HIGHS) + ~SWAR_HIGHS) | w | ~SWAR_HIGHS);
}

/* The high bit of each byte of an ASCII word (no high bits set) that is >= c, or <= c. */
static inline uint64_t swar_at_least(uint64_t w, unsigned c)
{
    return (w + SWAR_ONES * (0x80 - c)) & SWAR_HIGHS;
}
static inline uint64_t swar_at_most(uint64_t w, unsigned c)
{
    return ~(w + SWAR_ONES * (0x7f - c)) & SWAR_HIGHS;
}

#endif
