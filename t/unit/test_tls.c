/* Unit tests for the pure parts of proxy/tls.c: which certificate an SNI name
 * selects, and the session-ticket key ring's rotation and expiry. (Handshakes,
 * certificate files and reloads are driven end to end in
 * t/integration/test_tls.py.) */
#include <string.h>

#include "../../proxy/tls.h"
#include "unit.h"

#define NAME(text, index)                                                                                                          \
    {                                                                                                                              \
        {text, sizeof text - 1}, index                                                                                             \
    }

static size_t select_name(const struct tls_name *names, size_t count, const char *server_name)
{
    return tls_select_certificate(names, count, slice_from_cstr(server_name));
}

static void test_sni_selection(void)
{
    /* 0: the default; 1: a wildcard listed before 2's exact name; 3: another wildcard. */
    static const struct tls_name names[] = {
        NAME("default.example", 0), NAME("*.wild.example", 1),  NAME("x.wild.example", 2),
        NAME("exact.example", 2),   NAME("*.other.example", 3), NAME("*.wild.example", 3),
    };
    size_t count = VERGE_ARRAY_SIZE(names);
    struct {
        const char *server_name;
        size_t expected;
    } cases[] = {
        {"default.example", 0},
        {"exact.example", 2},
        {"EXACT.Example", 2},    /* case-insensitive */
        {"x.wild.example", 2},   /* exact beats an earlier wildcard */
        {"y.wild.example", 1},   /* first wildcard listed wins */
        {"Y.WILD.example", 1},   /* wildcards case-insensitive too */
        {"a.b.wild.example", 0}, /* a wildcard covers one label only */
        {"wild.example", 0},     /* ... and not the bare parent */
        {".wild.example", 0},    /* an empty label */
        {"z.other.example", 3},  /* the second certificate's wildcard */
        {"unknown.example", 0},  /* no match: the default */
        {"", 0},                 /* no name */
        {"exact.example.", 0},   /* a trailing dot is another name */
        {"*.wild.example", 1},   /* a literal "*" label is compared as written */
        {"exactxexample", 0},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(cases); i++) {
        size_t got = select_name(names, count, cases[i].server_name);
        if (got != cases[i].expected)
            fprintf(stderr, "SNI \"%s\": expected %zu, got %zu\n", cases[i].server_name, cases[i].expected, got);
        CHECK(got == cases[i].expected);
    }
    CHECK_INT(select_name(NULL, 0, "anything.example"), 0);
}

static struct tls_ticket_key key_made_at(unsigned char tag, uint64_t created_s)
{
    struct tls_ticket_key key = {.created_s = created_s};
    memset(key.name, tag, sizeof key.name);
    memset(key.aes_key, tag ^ 0x5a, sizeof key.aes_key);
    return key;
}

static void test_ticket_key_rotation(void)
{
    const uint64_t hour = 3600;
    struct tls_ticket_keys ring = {0};
    CHECK(tls_ticket_keys_need_rotation(&ring, 1000, hour)); /* empty: the first ticket makes a key */
    struct tls_ticket_key a = key_made_at('a', 1000);
    tls_ticket_keys_push(&ring, &a);
    CHECK_INT(ring.count, 1);
    CHECK(!tls_ticket_keys_need_rotation(&ring, 1000, hour));
    CHECK(!tls_ticket_keys_need_rotation(&ring, 1000 + hour - 1, hour));
    CHECK(tls_ticket_keys_need_rotation(&ring, 1000 + hour, hour));

    struct tls_ticket_key b = key_made_at('b', 1000 + hour), c = key_made_at('c', 1000 + 2 * hour),
                          d = key_made_at('d', 1000 + 3 * hour);
    tls_ticket_keys_push(&ring, &b);
    tls_ticket_keys_push(&ring, &c);
    CHECK_INT(ring.count, 3);
    CHECK(memcmp(ring.keys[0].name, c.name, 16) == 0 && memcmp(ring.keys[2].name, a.name, 16) == 0);

    /* The newest encrypts; an older key still decrypts, and says so. */
    bool is_newest = false;
    const struct tls_ticket_key *found = tls_ticket_keys_find(&ring, c.name, 1000 + 2 * hour + 5, hour, &is_newest);
    CHECK(found != NULL && is_newest);
    found = tls_ticket_keys_find(&ring, a.name, 1000 + 2 * hour + 5, hour, &is_newest);
    CHECK(found != NULL && !is_newest && found->aes_key[0] == a.aes_key[0]);
    /* Keys expire after TLS_TICKET_KEYS_KEPT rotations even when nothing rotated them out. */
    CHECK(tls_ticket_keys_find(&ring, a.name, 1000 + 3 * hour - 1, hour, &is_newest) != NULL);
    CHECK(tls_ticket_keys_find(&ring, a.name, 1000 + 3 * hour, hour, &is_newest) == NULL);

    /* A fourth key pushes out the oldest. */
    tls_ticket_keys_push(&ring, &d);
    CHECK_INT(ring.count, TLS_TICKET_KEYS_KEPT);
    CHECK(tls_ticket_keys_find(&ring, a.name, 1000 + 3 * hour, hour, &is_newest) == NULL);
    CHECK(tls_ticket_keys_find(&ring, b.name, 1000 + 3 * hour, hour, &is_newest) != NULL && !is_newest);
    unsigned char unknown[16] = {0};
    CHECK(tls_ticket_keys_find(&ring, unknown, 1000 + 3 * hour, hour, &is_newest) == NULL);
}

int main(void)
{
    UNIT_RUN(test_sni_selection);
    UNIT_RUN(test_ticket_key_rotation);
    return unit_summary();
}
