/* viewer_meta.c — CloudFront's viewer metadata headers as pure decisions:
 * the country of a client address (longest-prefix match over the config's
 * table), the device class of a User-Agent, and the request's header list
 * with verge's values in place of the viewer's.
 *
 * The table is sorted once at config load into groups of one address family
 * and prefix length, longest first; a lookup masks the address to each
 * group's length and binary-searches the group, so the first hit is the
 * longest match. Tables live in the config generation and are only read
 * afterwards (no locks). Request-side functions allocate from the caller's
 * arena and never change the arrays they are given.
 */
#include "viewer_meta.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const header_names[VIEWER_HEADER_COUNT] = {
    "CloudFront-Forwarded-Proto",   "CloudFront-Is-Desktop-Viewer", "CloudFront-Is-Mobile-Viewer",
    "CloudFront-Is-SmartTV-Viewer", "CloudFront-Is-Tablet-Viewer",  "CloudFront-Viewer-Country",
};

const char *viewer_meta_header_name(unsigned index)
{
    VERGE_ASSERT(index < VIEWER_HEADER_COUNT);
    return header_names[index];
}

unsigned viewer_meta_header_bit(slice_t name)
{
    for (unsigned i = 0; i < VIEWER_HEADER_COUNT; i++)
        if (slice_equal_nocase(name, slice_from_cstr(header_names[i])))
            return 1u << i;
    return 0;
}

/* ---- device classes ------------------------------------------------------------ */

static char lower_ascii(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

/* Whether `word` (lower case) occurs in `text`, ignoring ASCII case. */
static bool contains_word(slice_t text, const char *word)
{
    size_t len = strlen(word);
    if (len > text.len)
        return false;
    for (size_t i = 0; i + len <= text.len; i++) {
        if (lower_ascii(text.ptr[i]) != word[0])
            continue;
        size_t j = 1;
        while (j < len && lower_ascii(text.ptr[i + j]) == word[j])
            j++;
        if (j == len)
            return true;
    }
    return false;
}

static bool contains_any(slice_t text, const char *const *words)
{
    for (size_t i = 0; words[i] != NULL; i++)
        if (contains_word(text, words[i]))
            return true;
    return false;
}

enum viewer_device viewer_meta_classify_device(slice_t user_agent)
{
    static const char *const smarttv[] = {"smarttv", "smart-tv", "smart tv", "appletv", "apple tv", "googletv", "hbbtv",
                                          "roku",    "crkey",    "bravia",   "netcast", "web0s",    NULL};
    static const char *const tablet[] = {"ipad", "tablet", "kindle", "silk", "playbook", NULL};
    static const char *const mobile[] = {"mobile", "iphone",     "ipod",       "android", "windows phone", "iemobile", "blackberry",
                                         "bb10",   "opera mini", "opera mobi", NULL};
    if (user_agent.len == 0)
        return VIEWER_DEVICE_DESKTOP;
    if (contains_any(user_agent, smarttv))
        return VIEWER_DEVICE_SMARTTV;
    if (contains_any(user_agent, tablet) || (contains_word(user_agent, "android") && !contains_word(user_agent, "mobile")))
        return VIEWER_DEVICE_TABLET;
    if (contains_any(user_agent, mobile))
        return VIEWER_DEVICE_MOBILE;
    return VIEWER_DEVICE_DESKTOP;
}

/* ---- addresses and networks ------------------------------------------------------------ */

static const unsigned char ipv4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Text of at most `max` bytes without NUL into `out` (NUL-terminated). */
static bool copy_text(slice_t text, char *out, size_t size)
{
    if (text.len == 0 || text.len >= size || memchr(text.ptr, '\0', text.len) != NULL)
        return false;
    memcpy(out, text.ptr, text.len);
    out[text.len] = '\0';
    return true;
}

bool viewer_meta_parse_address(slice_t text, struct viewer_address *out)
{
    char buffer[INET6_ADDRSTRLEN + 1];
    memset(out, 0, sizeof *out);
    if (!copy_text(text, buffer, sizeof buffer))
        return false;
    if (inet_pton(AF_INET, buffer, out->bytes) == 1) {
        out->ipv4 = true;
        return true;
    }
    if (inet_pton(AF_INET6, buffer, out->bytes) != 1)
        return false;
    if (memcmp(out->bytes, ipv4_mapped_prefix, sizeof ipv4_mapped_prefix) == 0) {
        memmove(out->bytes, out->bytes + 12, 4);
        memset(out->bytes + 4, 0, 12);
        out->ipv4 = true;
    }
    return true;
}

/* Clears the bits of `address` after the first `length`; returns whether any was set. */
static bool clear_host_bits(unsigned char bytes[16], unsigned length)
{
    bool any = false;
    for (unsigned i = 0; i < 16; i++) {
        unsigned kept = length >= 8 * (i + 1) ? 8 : length > 8 * i ? length - 8 * i : 0;
        unsigned char mask = (unsigned char)(kept == 0 ? 0 : 0xffu << (8 - kept));
        any = any || (bytes[i] & ~mask) != 0;
        bytes[i] &= mask;
    }
    return any;
}

enum viewer_network_error viewer_meta_parse_network(slice_t text, struct viewer_network *out)
{
    memset(out, 0, sizeof *out);
    const char *slash = text.len > 0 ? memchr(text.ptr, '/', text.len) : NULL;
    if (slash == NULL)
        return VIEWER_NETWORK_SYNTAX;
    slice_t address_text = slice_make(text.ptr, (size_t)(slash - text.ptr));
    slice_t length_text = slice_make(slash + 1, text.len - address_text.len - 1);
    char buffer[INET6_ADDRSTRLEN + 1];
    if (!copy_text(address_text, buffer, sizeof buffer))
        return VIEWER_NETWORK_SYNTAX;
    struct viewer_address *address = &out->address;
    if (inet_pton(AF_INET, buffer, address->bytes) == 1)
        address->ipv4 = true;
    else if (inet_pton(AF_INET6, buffer, address->bytes) != 1)
        return VIEWER_NETWORK_SYNTAX;
    uint64_t length;
    if (length_text.len > 3 || !slice_parse_u64(length_text, &length))
        return VIEWER_NETWORK_SYNTAX;
    if (length > (address->ipv4 ? 32u : 128u))
        return VIEWER_NETWORK_LENGTH;
    out->prefix_length = (unsigned)length;
    if (!address->ipv4 && length >= 96 && memcmp(address->bytes, ipv4_mapped_prefix, sizeof ipv4_mapped_prefix) == 0)
        return VIEWER_NETWORK_IPV4_MAPPED;
    return clear_host_bits(address->bytes, out->prefix_length) ? VIEWER_NETWORK_HOST_BITS : VIEWER_NETWORK_OK;
}

void viewer_meta_format_network(const struct viewer_network *network, char out[64])
{
    char address[INET6_ADDRSTRLEN];
    if (inet_ntop(network->address.ipv4 ? AF_INET : AF_INET6, network->address.bytes, address, sizeof address) == NULL)
        strcpy(address, "?");
    snprintf(out, 64, "%s/%u", address, network->prefix_length);
}

/* ---- the table ------------------------------------------------------------------------- */

static int compare_ranges(const void *a, const void *b)
{
    const struct viewer_network *x = &((const struct viewer_country_range *)a)->network;
    const struct viewer_network *y = &((const struct viewer_country_range *)b)->network;
    if (x->address.ipv4 != y->address.ipv4)
        return x->address.ipv4 ? -1 : 1;
    if (x->prefix_length != y->prefix_length)
        return x->prefix_length > y->prefix_length ? -1 : 1;
    int order = memcmp(x->address.bytes, y->address.bytes, sizeof x->address.bytes);
    if (order != 0)
        return order;
    /* equal networks keep the order they were written in */
    size_t i = ((const struct viewer_country_range *)a)->index, j = ((const struct viewer_country_range *)b)->index;
    return i < j ? -1 : i > j;
}

void viewer_meta_build_table(struct arena *arena, struct viewer_country_range *ranges, size_t count,
                             struct viewer_country_table *table)
{
    memset(table, 0, sizeof *table);
    if (count == 0)
        return;
    qsort(ranges, count, sizeof *ranges, compare_ranges);
    size_t groups = 1;
    for (size_t i = 1; i < count; i++)
        groups += ranges[i].network.address.ipv4 != ranges[i - 1].network.address.ipv4 ||
                  ranges[i].network.prefix_length != ranges[i - 1].network.prefix_length;
    table->ranges = ranges;
    table->range_count = count;
    table->groups = arena_alloc(arena, groups * sizeof *table->groups);
    for (size_t i = 0; i < count; i++) {
        const struct viewer_network *network = &ranges[i].network;
        struct viewer_country_group *last = table->group_count > 0 ? &table->groups[table->group_count - 1] : NULL;
        if (last == NULL || last->ipv4 != network->address.ipv4 || last->prefix_length != network->prefix_length) {
            last = &table->groups[table->group_count++];
            *last = (struct viewer_country_group){network->address.ipv4, network->prefix_length, i, 0};
        }
        last->count++;
    }
    VERGE_ASSERT(table->group_count == groups);
}

const char *viewer_meta_lookup_country(const struct viewer_country_table *table, const struct viewer_address *address)
{
    if (table == NULL)
        return NULL;
    for (size_t g = 0; g < table->group_count; g++) {
        const struct viewer_country_group *group = &table->groups[g];
        if (group->ipv4 != address->ipv4)
            continue;
        unsigned char key[16];
        memcpy(key, address->bytes, sizeof key);
        clear_host_bits(key, group->prefix_length);
        size_t low = group->start, high = group->start + group->count;
        while (low < high) {
            size_t middle = low + (high - low) / 2;
            int order = memcmp(table->ranges[middle].network.address.bytes, key, sizeof key);
            if (order == 0)
                return table->ranges[middle].country;
            if (order < 0)
                low = middle + 1;
            else
                high = middle;
        }
    }
    return NULL;
}

/* ---- the request's headers ---------------------------------------------------------------- */

static bool is_debug_country(slice_t name)
{
    return slice_equal_nocase(name, SLICE_LITERAL(VIEWER_DEBUG_COUNTRY_HEADER));
}

bool viewer_meta_add_headers(struct arena *arena, const struct viewer_meta_input *input, const struct http_header *headers,
                             size_t count, struct viewer_meta_output *out)
{
    unsigned wanted = input->wanted & VIEWER_HEADER_ALL;
    const char *country = NULL;
    if (input->debug_headers) {
        for (size_t i = 0; i < count; i++)
            if (is_debug_country(headers[i].name)) {
                slice_t value = headers[i].value;
                bool letters = value.len == 2;
                for (size_t c = 0; c < value.len && letters; c++)
                    letters = (value.ptr[c] >= 'A' && value.ptr[c] <= 'Z') || (value.ptr[c] >= 'a' && value.ptr[c] <= 'z');
                if (!letters)
                    return false;
                char *upper = arena_alloc(arena, 3);
                upper[0] = (char)(value.ptr[0] & ~0x20);
                upper[1] = (char)(value.ptr[1] & ~0x20);
                country = upper;
                break;
            }
    }
    if ((wanted & VIEWER_HEADER_COUNTRY) && country == NULL) {
        struct viewer_address address;
        if (viewer_meta_parse_address(input->client_address, &address))
            country = viewer_meta_lookup_country(input->countries, &address);
    }

    struct http_header *kept = arena_alloc(arena, sizeof *kept * (count + VIEWER_HEADER_COUNT + 1));
    struct http_header *taken = arena_alloc(arena, sizeof *taken * (count + 1));
    size_t kept_count = 0, taken_count = 0;
    for (size_t i = 0; i < count; i++) {
        bool take =
            (viewer_meta_header_bit(headers[i].name) & wanted) != 0 || (input->debug_headers && is_debug_country(headers[i].name));
        if (take)
            taken[taken_count++] = headers[i];
        else
            kept[kept_count++] = headers[i];
    }

    enum viewer_device device = VIEWER_DEVICE_DESKTOP;
    if (wanted & (VIEWER_HEADER_IS_DESKTOP | VIEWER_HEADER_IS_MOBILE | VIEWER_HEADER_IS_SMARTTV | VIEWER_HEADER_IS_TABLET)) {
        slice_t user_agent = {NULL, 0};
        for (size_t i = 0; i < count && user_agent.ptr == NULL; i++)
            if (slice_equal_nocase(headers[i].name, SLICE_LITERAL("User-Agent")))
                user_agent = headers[i].value;
        device = viewer_meta_classify_device(user_agent);
    }
    for (unsigned i = 0; i < VIEWER_HEADER_COUNT; i++) {
        unsigned bit = 1u << i;
        if (!(wanted & bit))
            continue;
        const char *value = NULL;
        switch ((enum viewer_header)bit) {
        case VIEWER_HEADER_FORWARDED_PROTO:
            value = input->tls ? "https" : "http";
            break;
        case VIEWER_HEADER_IS_DESKTOP:
            value = device == VIEWER_DEVICE_DESKTOP ? "true" : "false";
            break;
        case VIEWER_HEADER_IS_MOBILE:
            value = device == VIEWER_DEVICE_MOBILE ? "true" : "false";
            break;
        case VIEWER_HEADER_IS_SMARTTV:
            value = device == VIEWER_DEVICE_SMARTTV ? "true" : "false";
            break;
        case VIEWER_HEADER_IS_TABLET:
            value = device == VIEWER_DEVICE_TABLET ? "true" : "false";
            break;
        case VIEWER_HEADER_COUNTRY:
            value = country; /* none known: no header */
            break;
        }
        if (value != NULL)
            kept[kept_count++] = (struct http_header){slice_from_cstr(header_names[i]), slice_from_cstr(value), HTTP_TOKEN_OTHER};
    }
    *out = (struct viewer_meta_output){kept, kept_count, taken, taken_count};
    return true;
}

size_t viewer_meta_viewer_view(struct arena *arena, unsigned wanted, const struct http_header *headers, size_t count,
                               const struct http_header *viewer_sent, size_t viewer_sent_count, struct http_header **out)
{
    struct http_header *view = arena_alloc(arena, sizeof *view * (count + viewer_sent_count + 1));
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if ((viewer_meta_header_bit(headers[i].name) & wanted) == 0)
            view[n++] = headers[i];
    for (size_t i = 0; i < viewer_sent_count; i++)
        view[n++] = viewer_sent[i];
    *out = view;
    return n;
}
