/* unit.h — the tiny unit-test harness shared by the files in t/unit.
 *
 * A test file defines test functions and a main that calls UNIT_RUN(fn) for
 * each, then returns unit_summary(). CHECK records a failure with file:line
 * and the expression and carries on, so one run shows every broken case.
 * The summary line is "N passed, N failed" (checks, not functions).
 */
#ifndef VERGE_UNIT_H
#define VERGE_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;
static const char *unit_current = "";

#define CHECK(expr)                                                                                                                \
    do {                                                                                                                           \
        if (expr) {                                                                                                                \
            unit_passed++;                                                                                                         \
        } else {                                                                                                                   \
            unit_failed++;                                                                                                         \
            fprintf(stderr, "FAIL %s: %s:%d: %s\n", unit_current, __FILE__, __LINE__, #expr);                                      \
        }                                                                                                                          \
    } while (0)

#define CHECK_INT(actual, expected)                                                                                                \
    do {                                                                                                                           \
        long long unit_a = (long long)(actual), unit_e = (long long)(expected);                                                    \
        if (unit_a == unit_e) {                                                                                                    \
            unit_passed++;                                                                                                         \
        } else {                                                                                                                   \
            unit_failed++;                                                                                                         \
            fprintf(stderr, "FAIL %s: %s:%d: %s == %lld, expected %lld\n", unit_current, __FILE__, __LINE__, #actual, unit_a,      \
                    unit_e);                                                                                                       \
        }                                                                                                                          \
    } while (0)

#define CHECK_STR(actual, expected)                                                                                                \
    do {                                                                                                                           \
        const char *unit_a = (actual), *unit_e = (expected);                                                                       \
        if (unit_a != NULL && unit_e != NULL && strcmp(unit_a, unit_e) == 0) {                                                     \
            unit_passed++;                                                                                                         \
        } else {                                                                                                                   \
            unit_failed++;                                                                                                         \
            fprintf(stderr, "FAIL %s: %s:%d: %s == \"%s\", expected \"%s\"\n", unit_current, __FILE__, __LINE__, #actual,          \
                    unit_a ? unit_a : "(null)", unit_e ? unit_e : "(null)");                                                       \
        }                                                                                                                          \
    } while (0)

#define UNIT_RUN(fn)                                                                                                               \
    do {                                                                                                                           \
        unit_current = #fn;                                                                                                        \
        fn();                                                                                                                      \
    } while (0)

static inline int unit_summary(void)
{
    printf("%d passed, %d failed\n", unit_passed, unit_failed);
    return unit_failed == 0 ? 0 : 1;
}

#endif
