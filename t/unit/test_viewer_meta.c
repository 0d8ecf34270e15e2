/* test_viewer_meta.c — CloudFront's viewer metadata headers without sockets:
 * header names, the User-Agent rules, network and address parsing, the
 * country table (longest prefix, families kept apart, checked against a
 * linear scan over random tables), and the request's headers after
 * viewer_meta_add_headers (replaced copies, order, unknown country, the debug
 * override) and the viewer's view of them.
 */
#include "../../proxy/viewer_meta.h"
#include "unit.h"

#include <arpa/inet.h>
#include <stdlib.h>

/* ---- names ------------------------------------------------------------------ */

static void test_header_names(void)
{
    CHECK_STR(viewer_meta_header_name(0), "CloudFront-Forwarded-Proto");
    CHECK_STR(viewer_meta_header_name(5), "CloudFront-Viewer-Country");
    for (unsigned i = 0; i < VIEWER_HEADER_COUNT; i++)
        CHECK_INT(viewer_meta_header_bit(slice_from_cstr(viewer_meta_header_name(i))), 1u << i);
    CHECK_INT(viewer_meta_header_bit(SLICE_LITERAL("cloudfront-viewer-country")), VIEWER_HEADER_COUNTRY);
    CHECK_INT(viewer_meta_header_bit(SLICE_LITERAL("CLOUDFRONT-IS-SMARTTV-VIEWER")), VIEWER_HEADER_IS_SMARTTV);
    CHECK_INT(viewer_meta_header_bit(SLICE_LITERAL("CloudFront-Viewer-City")), 0);
    CHECK_INT(viewer_meta_header_bit(SLICE_LITERAL("CloudFront-Viewer-Country ")), 0);
    CHECK_INT(viewer_meta_header_bit(SLICE_LITERAL("")), 0);
}

/* ---- device classes ------------------------------------------------------------ */

static void test_device_classes(void)
{
    static const struct {
        const char *user_agent;
        enum viewer_device device;
    } cases[] = {
        /* phones */
        {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
         "Mobile/15E148 Safari/604.1",
         VIEWER_DEVICE_MOBILE},
        {"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
         VIEWER_DEVICE_MOBILE},
        {"Mozilla/5.0 (Android 13; Mobile; rv:120.0) Gecko/120.0 Firefox/120.0", VIEWER_DEVICE_MOBILE},
        {"Mozilla/5.0 (Mobile; Windows Phone 8.1; Android 4.0; ARM; Trident/7.0; Touch; rv:11.0; IEMobile/11.0) like iPhone OS "
         "7_0_3 Mac OS X AppleWebKit/537 (KHTML, like Gecko) Mobile Safari/537",
         VIEWER_DEVICE_MOBILE},
        {"Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
         VIEWER_DEVICE_MOBILE},
        {"Mozilla/5.0 (BB10; Touch) AppleWebKit/537.10+ (KHTML, like Gecko) Version/10.0.9.2372 Mobile Safari/537.10+",
         VIEWER_DEVICE_MOBILE},
        {"Mozilla/5.0 (iPod touch; CPU iPhone OS 12_5 like Mac OS X)", VIEWER_DEVICE_MOBILE},
        /* tablets */
        {"Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
         VIEWER_DEVICE_TABLET},
        {"Mozilla/5.0 (Linux; Android 10; SM-T510) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
         VIEWER_DEVICE_TABLET},
        {"Mozilla/5.0 (Android 4.4; Tablet; rv:41.0) Gecko/41.0 Firefox/41.0", VIEWER_DEVICE_TABLET},
        {"Mozilla/5.0 (Linux; U; en-US) AppleWebKit/528.5+ (KHTML, like Gecko, Safari/528.5+) Version/4.0 Kindle/3.0",
         VIEWER_DEVICE_TABLET},
        {"Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120.3.1 like Chrome/120.0 Safari",
         VIEWER_DEVICE_TABLET},
        /* televisions */
        {"Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 TV Safari/537.36",
         VIEWER_DEVICE_SMARTTV},
        {"Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0 Safari/537.36 WebAppManager",
         VIEWER_DEVICE_SMARTTV},
        {"AppleTV11,1/11.1", VIEWER_DEVICE_SMARTTV},
        {"Roku/DVP-9.10 (519.10E04111A)", VIEWER_DEVICE_SMARTTV},
        {"Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 CrKey/1.56.500000",
         VIEWER_DEVICE_SMARTTV},
        {"Mozilla/5.0 (Linux; Android 9; BRAVIA 4K VH2 Build/PTT1.190515.001.S52)", VIEWER_DEVICE_SMARTTV},
        {"HbbTV/1.4.1 (+DRM; Sony; KD-55XE9005; v6.3.0; 2.0;) CE-HTML/1.0", VIEWER_DEVICE_SMARTTV},
        {"Mozilla/5.0 (Linux; GoogleTV 3.2; NSZ-GS7/GX70 Build/MASTER) Mobile", VIEWER_DEVICE_SMARTTV},
        /* desktops and everything else */
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
         VIEWER_DEVICE_DESKTOP},
        {"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
         VIEWER_DEVICE_DESKTOP},
        {"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", VIEWER_DEVICE_DESKTOP},
        {"curl/8.5.0", VIEWER_DEVICE_DESKTOP},
        {"Googlebot/2.1 (+http://www.google.com/bot.html)", VIEWER_DEVICE_DESKTOP},
        {"", VIEWER_DEVICE_DESKTOP},
        /* case does not matter; a word may sit anywhere */
        {"IPHONE", VIEWER_DEVICE_MOBILE},
        {"xxipadxx", VIEWER_DEVICE_TABLET},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(cases); i++) {
        enum viewer_device got = viewer_meta_classify_device(slice_from_cstr(cases[i].user_agent));
        if (got != cases[i].device)
            fprintf(stderr, "  user agent %zu: \"%s\"\n", i, cases[i].user_agent);
        CHECK_INT(got, cases[i].device);
    }
    /* a slice is read to its length only */
    CHECK_INT(viewer_meta_classify_device(slice_make("iPhoneiPad", 6)), VIEWER_DEVICE_MOBILE);
}

/* ---- networks and addresses --------------------------------------------------------- */

static enum viewer_network_error parse_network(const char *text, char formatted[64])
{
    struct viewer_network network;
    enum viewer_network_error error = viewer_meta_parse_network(slice_from_cstr(text), &network);
    viewer_meta_format_network(&network, formatted);
    return error;
}

static void test_networks(void)
{
    char shown[64];
    CHECK_INT(parse_network("203.0.113.0/24", shown), VIEWER_NETWORK_OK);
    CHECK_STR(shown, "203.0.113.0/24");
    CHECK_INT(parse_network("0.0.0.0/0", shown), VIEWER_NETWORK_OK);
    CHECK_INT(parse_network("10.1.2.3/32", shown), VIEWER_NETWORK_OK);
    CHECK_INT(parse_network("2001:db8::/32", shown), VIEWER_NETWORK_OK);
    CHECK_STR(shown, "2001:db8::/32");
    CHECK_INT(parse_network("2001:0DB8:0:0::/32", shown), VIEWER_NETWORK_OK);
    CHECK_STR(shown, "2001:db8::/32");
    CHECK_INT(parse_network("::/0", shown), VIEWER_NETWORK_OK);
    CHECK_INT(parse_network("::1/128", shown), VIEWER_NETWORK_OK);
    CHECK_INT(parse_network("2001:db8::/127", shown), VIEWER_NETWORK_OK);

    CHECK_INT(parse_network("203.0.113.7/24", shown), VIEWER_NETWORK_HOST_BITS);
    CHECK_STR(shown, "203.0.113.0/24");
    CHECK_INT(parse_network("10.255.0.0/9", shown), VIEWER_NETWORK_HOST_BITS);
    CHECK_STR(shown, "10.128.0.0/9");
    CHECK_INT(parse_network("2001:db8::1/64", shown), VIEWER_NETWORK_HOST_BITS);
    CHECK_STR(shown, "2001:db8::/64");
    CHECK_INT(parse_network("1.2.3.4/0", shown), VIEWER_NETWORK_HOST_BITS);
    CHECK_STR(shown, "0.0.0.0/0");

    CHECK_INT(parse_network("203.0.113.0/33", shown), VIEWER_NETWORK_LENGTH);
    CHECK_INT(parse_network("2001:db8::/129", shown), VIEWER_NETWORK_LENGTH);
    CHECK_INT(parse_network("::ffff:203.0.113.0/120", shown), VIEWER_NETWORK_IPV4_MAPPED);
    CHECK_INT(parse_network("::ffff:0:0/96", shown), VIEWER_NETWORK_IPV4_MAPPED);
    CHECK_INT(parse_network("::/95", shown), VIEWER_NETWORK_OK); /* covers more than the mapped block: fine */

    static const char *const bad[] = {"",          "203.0.113.0",  "203.0.113.0/",   "/24",          "203.0.113/24",
                                      "example/8", "1.2.3.4/24/1", "203.0.113.0/-1", "1.2.3.0/ 24",  "1.2.3.0/0024",
                                      "[::1]/128", "1.2.3.0/2a",   "2001:db8:::/32", "fe80::1%lo/64"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(bad); i++) {
        enum viewer_network_error error = parse_network(bad[i], shown);
        if (error != VIEWER_NETWORK_SYNTAX)
            fprintf(stderr, "  network \"%s\"\n", bad[i]);
        CHECK_INT(error, VIEWER_NETWORK_SYNTAX);
    }
    struct viewer_network network;
    CHECK_INT(viewer_meta_parse_network(slice_make("10.0.0.0/8\0", 11), &network), VIEWER_NETWORK_SYNTAX);
    CHECK_INT(viewer_meta_parse_network(slice_make("10.0\0.0.0/8", 11), &network), VIEWER_NETWORK_SYNTAX);
}

static void test_addresses(void)
{
    struct viewer_address address;
    CHECK(viewer_meta_parse_address(SLICE_LITERAL("203.0.113.9"), &address));
    CHECK(address.ipv4);
    CHECK(memcmp(address.bytes, "\xcb\x00\x71\x09", 4) == 0);
    CHECK(viewer_meta_parse_address(SLICE_LITERAL("::ffff:203.0.113.9"), &address));
    CHECK(address.ipv4); /* a dual-stack listener's IPv4 client */
    CHECK(memcmp(address.bytes, "\xcb\x00\x71\x09", 4) == 0);
    CHECK(viewer_meta_parse_address(SLICE_LITERAL("::1"), &address));
    CHECK(!address.ipv4);
    CHECK_INT(address.bytes[15], 1);
    CHECK(!viewer_meta_parse_address(SLICE_LITERAL("unknown"), &address));
    CHECK(!viewer_meta_parse_address(SLICE_LITERAL(""), &address));
    CHECK(!viewer_meta_parse_address(SLICE_LITERAL("203.0.113.9/32"), &address));
}

/* ---- the table --------------------------------------------------------------------------- */

static struct viewer_country_table make_table(struct arena *arena, const char *const *entries, size_t count)
{
    struct viewer_country_range *ranges = arena_alloc(arena, (count ? count : 1) * sizeof *ranges);
    for (size_t i = 0; i < count; i++) {
        CHECK_INT(viewer_meta_parse_network(slice_from_cstr(entries[2 * i]), &ranges[i].network), VIEWER_NETWORK_OK);
        memcpy(ranges[i].country, entries[2 * i + 1], 3);
        ranges[i].index = i;
    }
    struct viewer_country_table table;
    viewer_meta_build_table(arena, ranges, count, &table);
    return table;
}

static const char *lookup(const struct viewer_country_table *table, const char *address_text)
{
    struct viewer_address address;
    CHECK(viewer_meta_parse_address(slice_from_cstr(address_text), &address));
    const char *country = viewer_meta_lookup_country(table, &address);
    return country != NULL ? country : "(none)";
}

static void test_lookup(void)
{
    struct arena arena;
    arena_init(&arena);
    static const char *const entries[] = {
        "203.0.113.0/24", "FR", "203.0.113.128/25", "BE", "203.0.113.200/32", "LU", "10.0.0.0/8",  "US", "10.20.0.0/16", "CA",
        "2001:db8::/32",  "DE", "2001:db8:1::/48",  "AT", "::1/128",          "NL", "127.0.0.0/8", "JP",
    };
    struct viewer_country_table table = make_table(&arena, entries, VERGE_ARRAY_SIZE(entries) / 2);
    CHECK_INT(table.range_count, 9);
    CHECK_INT(table.group_count, 8); /* IPv4 /32 /25 /24 /16 /8; IPv6 /128 /48 /32 */
    CHECK_STR(lookup(&table, "203.0.113.1"), "FR");
    CHECK_STR(lookup(&table, "203.0.113.127"), "FR");
    CHECK_STR(lookup(&table, "203.0.113.128"), "BE");
    CHECK_STR(lookup(&table, "203.0.113.200"), "LU");
    CHECK_STR(lookup(&table, "203.0.113.201"), "BE");
    CHECK_STR(lookup(&table, "203.0.114.1"), "(none)");
    CHECK_STR(lookup(&table, "10.20.30.40"), "CA");
    CHECK_STR(lookup(&table, "10.21.30.40"), "US");
    CHECK_STR(lookup(&table, "127.0.0.1"), "JP");
    CHECK_STR(lookup(&table, "::ffff:127.0.0.1"), "JP");
    CHECK_STR(lookup(&table, "::1"), "NL");
    CHECK_STR(lookup(&table, "2001:db8:1::5"), "AT");
    CHECK_STR(lookup(&table, "2001:db8:2::5"), "DE");
    CHECK_STR(lookup(&table, "2001:db9::"), "(none)");
    /* families stay apart: ::/0 is IPv6 only, 0.0.0.0/0 IPv4 only */
    static const char *const catch_all[] = {"::/0", "ZZ"};
    struct viewer_country_table v6_only = make_table(&arena, catch_all, 1);
    CHECK_STR(lookup(&v6_only, "2001:db8::1"), "ZZ");
    CHECK_STR(lookup(&v6_only, "198.51.100.1"), "(none)");
    static const char *const v4_all[] = {"0.0.0.0/0", "YY"};
    struct viewer_country_table v4_only = make_table(&arena, v4_all, 1);
    CHECK_STR(lookup(&v4_only, "198.51.100.1"), "YY");
    CHECK_STR(lookup(&v4_only, "::"), "(none)");
    /* empty and absent tables know nothing */
    struct viewer_country_table empty = make_table(&arena, NULL, 0);
    CHECK_STR(lookup(&empty, "203.0.113.1"), "(none)");
    struct viewer_address address;
    viewer_meta_parse_address(SLICE_LITERAL("203.0.113.1"), &address);
    CHECK(viewer_meta_lookup_country(NULL, &address) == NULL);
    arena_destroy(&arena);
}

/* The longest-prefix answer by a plain scan, for comparison. */
static const char *lookup_by_scan(const struct viewer_country_range *ranges, size_t count, const struct viewer_address *address)
{
    const char *best = NULL;
    unsigned best_length = 0;
    for (size_t i = 0; i < count; i++) {
        const struct viewer_network *network = &ranges[i].network;
        if (network->address.ipv4 != address->ipv4 || (best != NULL && network->prefix_length <= best_length))
            continue;
        bool match = true;
        for (unsigned bit = 0; bit < network->prefix_length && match; bit++) {
            unsigned mask = 0x80u >> (bit % 8);
            match = (network->address.bytes[bit / 8] & mask) == (address->bytes[bit / 8] & mask);
        }
        if (match) {
            best = ranges[i].country;
            best_length = network->prefix_length;
        }
    }
    return best;
}

static void test_lookup_matches_a_scan(void)
{
    srand(7);
    for (int round = 0; round < 200; round++) {
        struct arena arena;
        arena_init(&arena);
        size_t count = (size_t)(rand() % 40);
        struct viewer_country_range *ranges = arena_alloc(&arena, (count + 1) * sizeof *ranges);
        struct viewer_country_range *copy = arena_alloc(&arena, (count + 1) * sizeof *copy);
        size_t made = 0;
        for (size_t i = 0; i < count; i++) {
            struct viewer_country_range *range = &ranges[made];
            memset(range, 0, sizeof *range);
            /* few distinct high bits, so networks nest and collide */
            range->network.address.ipv4 = rand() % 2;
            range->network.address.bytes[0] = (unsigned char)(rand() % 4 << 6);
            range->network.address.bytes[1] = (unsigned char)(rand() % 4);
            unsigned max = range->network.address.ipv4 ? 32 : 128;
            range->network.prefix_length = (unsigned)rand() % (max < 20 ? max + 1 : 20);
            char text[64];
            viewer_meta_format_network(&range->network, text);
            /* clear host bits through the parser */
            struct viewer_network parsed;
            enum viewer_network_error error = viewer_meta_parse_network(slice_from_cstr(text), &parsed);
            if (error == VIEWER_NETWORK_IPV4_MAPPED)
                continue;
            CHECK(error == VIEWER_NETWORK_OK || error == VIEWER_NETWORK_HOST_BITS);
            range->network = parsed;
            /* skip duplicates: the config refuses them */
            bool duplicate = false;
            for (size_t j = 0; j < made && !duplicate; j++)
                duplicate = ranges[j].network.address.ipv4 == parsed.address.ipv4 &&
                            ranges[j].network.prefix_length == parsed.prefix_length &&
                            memcmp(ranges[j].network.address.bytes, parsed.address.bytes, 16) == 0;
            if (duplicate)
                continue;
            range->country[0] = (char)('A' + made % 26);
            range->country[1] = (char)('A' + made / 26);
            range->index = made;
            made++;
        }
        memcpy(copy, ranges, made * sizeof *copy);
        struct viewer_country_table table;
        viewer_meta_build_table(&arena, ranges, made, &table);
        for (int probe = 0; probe < 200; probe++) {
            struct viewer_address address = {.ipv4 = rand() % 2};
            address.bytes[0] = (unsigned char)(rand() % 4 << 6 | rand() % 64);
            address.bytes[1] = (unsigned char)(rand() % 4);
            address.bytes[2] = (unsigned char)rand();
            const char *expected = lookup_by_scan(copy, made, &address);
            const char *got = viewer_meta_lookup_country(&table, &address);
            CHECK((expected == NULL) == (got == NULL));
            if (expected != NULL && got != NULL)
                CHECK_STR(got, expected);
        }
        arena_destroy(&arena);
    }
}

/* ---- the request's headers ---------------------------------------------------------------- */

#define HEADER(name, value)                                                                                                        \
    {                                                                                                                              \
        SLICE_LITERAL(name), SLICE_LITERAL(value), HTTP_TOKEN_OTHER                                                                \
    }

static const char *header_value(const struct http_header *headers, size_t count, const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < count; i++)
        if (slice_equal_nocase(headers[i].name, slice_from_cstr(name))) {
            if (found != NULL)
                return "(twice)";
            static char value[256];
            snprintf(value, sizeof value, "%.*s", (int)headers[i].value.len, headers[i].value.ptr);
            found = value;
        }
    return found != NULL ? found : "(none)";
}

static void test_add_headers(void)
{
    struct arena arena;
    arena_init(&arena);
    static const char *const entries[] = {"127.0.0.0/8", "FR", "::1/128", "DE"};
    struct viewer_country_table table = make_table(&arena, entries, 2);
    const struct http_header headers[] = {
        {SLICE_LITERAL("Host"), SLICE_LITERAL("example.com"), HTTP_TOKEN_HOST},
        HEADER("cloudfront-viewer-country", "XX"),
        HEADER("User-Agent", "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X)"),
        HEADER("CloudFront-Is-Mobile-Viewer", "true"),
        HEADER("X-Verge-Debug-Country", "jp"),
        HEADER("CloudFront-Forwarded-Proto", "https"),
        HEADER("Accept", "*/*"),
    };
    size_t count = VERGE_ARRAY_SIZE(headers);

    /* everything: viewer's copies out, verge's in, in the spec's order at the end */
    struct viewer_meta_input input = {
        .wanted = VIEWER_HEADER_ALL, .countries = &table, .client_address = SLICE_LITERAL("127.0.0.1")};
    struct viewer_meta_output out;
    CHECK(viewer_meta_add_headers(&arena, &input, headers, count, &out));
    CHECK_INT(out.header_count, 4 + 6);
    CHECK_INT(out.viewer_sent_count, 3);
    static const char *const order[] = {"Host",
                                        "User-Agent",
                                        "X-Verge-Debug-Country",
                                        "Accept",
                                        "CloudFront-Forwarded-Proto",
                                        "CloudFront-Is-Desktop-Viewer",
                                        "CloudFront-Is-Mobile-Viewer",
                                        "CloudFront-Is-SmartTV-Viewer",
                                        "CloudFront-Is-Tablet-Viewer",
                                        "CloudFront-Viewer-Country"};
    for (size_t i = 0; i < out.header_count && i < VERGE_ARRAY_SIZE(order); i++)
        CHECK(slice_equal(out.headers[i].name, slice_from_cstr(order[i])));
    CHECK_INT(out.headers[0].token, HTTP_TOKEN_HOST);
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Viewer-Country"), "FR");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Forwarded-Proto"), "http");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Is-Tablet-Viewer"), "true");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Is-Mobile-Viewer"), "false");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Is-Desktop-Viewer"), "false");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Is-SmartTV-Viewer"), "false");
    CHECK_STR(header_value(out.headers, out.header_count, "X-Verge-Debug-Country"), "jp"); /* debug off: an ordinary header */
    CHECK(slice_equal(out.viewer_sent[0].value, SLICE_LITERAL("XX")));
    CHECK(slice_equal(out.viewer_sent[2].name, SLICE_LITERAL("CloudFront-Forwarded-Proto")));

    /* the viewer's view: its own copies back, verge's gone */
    struct http_header *view;
    size_t view_count =
        viewer_meta_viewer_view(&arena, input.wanted, out.headers, out.header_count, out.viewer_sent, out.viewer_sent_count, &view);
    CHECK_INT(view_count, count);
    CHECK_STR(header_value(view, view_count, "CloudFront-Viewer-Country"), "XX");
    CHECK_STR(header_value(view, view_count, "CloudFront-Is-Mobile-Viewer"), "true");
    CHECK_STR(header_value(view, view_count, "CloudFront-Is-Tablet-Viewer"), "(none)");

    /* only what is wanted; other viewer copies stay as sent */
    input.wanted = VIEWER_HEADER_COUNTRY;
    input.client_address = SLICE_LITERAL("::1");
    input.tls = true;
    CHECK(viewer_meta_add_headers(&arena, &input, headers, count, &out));
    CHECK_INT(out.header_count, count);
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Viewer-Country"), "DE");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Is-Mobile-Viewer"), "true");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Forwarded-Proto"), "https");
    input.wanted = VIEWER_HEADER_FORWARDED_PROTO;
    CHECK(viewer_meta_add_headers(&arena, &input, headers, count, &out));
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Forwarded-Proto"), "https");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Viewer-Country"), "XX");

    /* an unknown country: the viewer's copy goes, none comes */
    input.wanted = VIEWER_HEADER_COUNTRY;
    input.client_address = SLICE_LITERAL("198.51.100.7");
    CHECK(viewer_meta_add_headers(&arena, &input, headers, count, &out));
    CHECK_INT(out.header_count, count - 1);
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Viewer-Country"), "(none)");
    input.countries = NULL;
    input.client_address = SLICE_LITERAL("127.0.0.1");
    CHECK(viewer_meta_add_headers(&arena, &input, headers, count, &out));
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Viewer-Country"), "(none)");
    input.countries = &table;

    /* debug headers: the override wins (upper-cased) and is never passed on */
    input.debug_headers = true;
    CHECK(viewer_meta_add_headers(&arena, &input, headers, count, &out));
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Viewer-Country"), "JP");
    CHECK_STR(header_value(out.headers, out.header_count, "X-Verge-Debug-Country"), "(none)");
    CHECK_INT(out.viewer_sent_count, 2);
    view_count =
        viewer_meta_viewer_view(&arena, input.wanted, out.headers, out.header_count, out.viewer_sent, out.viewer_sent_count, &view);
    CHECK_STR(header_value(view, view_count, "X-Verge-Debug-Country"), "jp");
    CHECK_STR(header_value(view, view_count, "CloudFront-Viewer-Country"), "XX");
    /* ... also for a behavior that asks for nothing: taken off all the same */
    input.wanted = 0;
    CHECK(viewer_meta_add_headers(&arena, &input, headers, count, &out));
    CHECK_INT(out.header_count, count - 1);
    CHECK_STR(header_value(out.headers, out.header_count, "X-Verge-Debug-Country"), "(none)");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Viewer-Country"), "XX");
    /* a malformed override is refused */
    static const char *const bad[] = {"FRA", "F", "", "F1", "é"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(bad); i++) {
        struct http_header with_bad[] = {HEADER("Host", "h"),
                                         {SLICE_LITERAL("x-verge-debug-country"), slice_from_cstr(bad[i]), HTTP_TOKEN_OTHER}};
        out.header_count = 12345;
        input.wanted = VIEWER_HEADER_COUNTRY;
        CHECK(!viewer_meta_add_headers(&arena, &input, with_bad, 2, &out));
        CHECK_INT(out.header_count, 12345);
    }

    /* no User-Agent: desktop */
    const struct http_header bare[] = {HEADER("Host", "h")};
    input = (struct viewer_meta_input){.wanted = VIEWER_HEADER_IS_DESKTOP | VIEWER_HEADER_IS_MOBILE};
    CHECK(viewer_meta_add_headers(&arena, &input, bare, 1, &out));
    CHECK_INT(out.header_count, 3);
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Is-Desktop-Viewer"), "true");
    CHECK_STR(header_value(out.headers, out.header_count, "CloudFront-Is-Mobile-Viewer"), "false");
    arena_destroy(&arena);
}

int main(void)
{
    UNIT_RUN(test_header_names);
    UNIT_RUN(test_device_classes);
    UNIT_RUN(test_networks);
    UNIT_RUN(test_addresses);
    UNIT_RUN(test_lookup);
    UNIT_RUN(test_lookup_matches_a_scan);
    UNIT_RUN(test_add_headers);
    return unit_summary();
}
