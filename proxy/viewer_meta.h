/* viewer_meta.h — CloudFront's viewer metadata headers (spec §2.3.3):
 * CloudFront-Viewer-Country from a table of client networks, the four
 * CloudFront-Is-*-Viewer flags from the User-Agent, and
 * CloudFront-Forwarded-Proto from the viewer connection.
 *
 * Pure: no I/O, no clock, no globals. The country table is built once, at
 * config load (conf/schema.c parses `viewer_countries` with the functions
 * below), and only read afterwards, from any thread. Request headers are
 * read as given and the changed list is made in the caller's arena.
 */
#ifndef VERGE_VIEWER_META_H
#define VERGE_VIEWER_META_H

#include "http1.h"

/* The six headers, as bits of a behavior's set, in the spec's order. */
enum viewer_header {
    VIEWER_HEADER_FORWARDED_PROTO = 1u << 0, /* CloudFront-Forwarded-Proto: "https" or "http" */
    VIEWER_HEADER_IS_DESKTOP = 1u << 1,      /* CloudFront-Is-Desktop-Viewer: "true" or "false" */
    VIEWER_HEADER_IS_MOBILE = 1u << 2,       /* CloudFront-Is-Mobile-Viewer */
    VIEWER_HEADER_IS_SMARTTV = 1u << 3,      /* CloudFront-Is-SmartTV-Viewer */
    VIEWER_HEADER_IS_TABLET = 1u << 4,       /* CloudFront-Is-Tablet-Viewer */
    VIEWER_HEADER_COUNTRY = 1u << 5,         /* CloudFront-Viewer-Country: two upper-case letters */
};
#define VIEWER_HEADER_COUNT 6
#define VIEWER_HEADER_ALL ((1u << VIEWER_HEADER_COUNT) - 1)

/* The request header that overrides the country when debug headers are on
 * (dev mode). It is taken off the request then, never forwarded. */
#define VIEWER_DEBUG_COUNTRY_HEADER "X-Verge-Debug-Country"

/* The name of header bit `index` (0..VIEWER_HEADER_COUNT-1), as CloudFront
 * spells it ("CloudFront-Viewer-Country"). */
const char *viewer_meta_header_name(unsigned index);
/* The bit of a header name (case-insensitive); 0 when it is not one of the six. */
unsigned viewer_meta_header_bit(slice_t name);

/* ---- device classes from the User-Agent ------------------------------------- */

enum viewer_device { VIEWER_DEVICE_DESKTOP, VIEWER_DEVICE_MOBILE, VIEWER_DEVICE_TABLET, VIEWER_DEVICE_SMARTTV };

/* The device class of a User-Agent value (empty: no User-Agent). Words are
 * matched case-insensitively anywhere in the value, first rule that matches
 * wins:
 *  1. smarttv: SmartTV, SMART-TV, Smart TV, AppleTV, Apple TV, GoogleTV,
 *     HbbTV, Roku, CrKey (Chromecast), BRAVIA, NetCast, Web0S;
 *  2. tablet: iPad, Tablet, Kindle, Silk, PlayBook, or Android without
 *     Mobile;
 *  3. mobile: Mobile, iPhone, iPod, Android, Windows Phone, IEMobile,
 *     BlackBerry, BB10, Opera Mini, Opera Mobi;
 *  4. desktop: everything else, an absent User-Agent, bots and tools
 *     included. (iPadOS Safari sends a Mac desktop User-Agent: desktop.) */
enum viewer_device viewer_meta_classify_device(slice_t user_agent);

/* ---- the country table ---------------------------------------------------------- */

/* A client address: IPv4 in the first 4 bytes, or IPv6. */
struct viewer_address {
    bool ipv4;
    unsigned char bytes[16];
};

/* One network of the table: host bits zero. */
struct viewer_network {
    struct viewer_address address;
    unsigned prefix_length; /* 0..32 (IPv4), 0..128 (IPv6) */
};

enum viewer_network_error {
    VIEWER_NETWORK_OK,
    VIEWER_NETWORK_SYNTAX,      /* not "address/length" with a numeric IPv4 or IPv6 address */
    VIEWER_NETWORK_LENGTH,      /* the length is past 32 (IPv4) or 128 (IPv6) */
    VIEWER_NETWORK_HOST_BITS,   /* bits set after the prefix: `out` holds the network it is in */
    VIEWER_NETWORK_IPV4_MAPPED, /* inside ::ffff:0:0/96 (clients there are looked up as IPv4) */
};

/* Parses "203.0.113.0/24" or "2001:db8::/32". On VIEWER_NETWORK_HOST_BITS
 * `out` is the network with the host bits cleared (for the message). */
enum viewer_network_error viewer_meta_parse_network(slice_t text, struct viewer_network *out);
/* Writes the network as "address/length" (at most 64 bytes with the NUL). */
void viewer_meta_format_network(const struct viewer_network *network, char out[64]);
/* Parses a client address as accepted ("203.0.113.9", "2001:db8::1"); an
 * IPv4-mapped IPv6 address ("::ffff:203.0.113.9") becomes IPv4. False for
 * anything else. */
bool viewer_meta_parse_address(slice_t text, struct viewer_address *out);

struct viewer_country_range {
    struct viewer_network network;
    char country[3]; /* two upper-case letters, NUL-terminated */
    size_t index;    /* where it was written in the config (messages about duplicates) */
};

/* Ranges sorted by family (IPv4 first), prefix length (longest first), then
 * address; a group is the ranges of one family and length. */
struct viewer_country_group {
    bool ipv4;
    unsigned prefix_length;
    size_t start, count; /* into ranges */
};

struct viewer_country_table {
    struct viewer_country_range *ranges;
    size_t range_count;
    struct viewer_country_group *groups;
    size_t group_count;
};

/* Sorts `ranges` in place and builds the groups (in `arena`); `table`
 * refers to both. Ranges equal in family, length and address end up next to
 * each other (the caller reports them: a lookup would find either). */
void viewer_meta_build_table(struct arena *arena, struct viewer_country_range *ranges, size_t count,
                             struct viewer_country_table *table);
/* The country of the longest matching network, or NULL when none matches
 * (also for an empty table). O(groups · log ranges). */
const char *viewer_meta_lookup_country(const struct viewer_country_table *table, const struct viewer_address *address);

/* ---- the request's headers --------------------------------------------------------- */

struct viewer_meta_input {
    unsigned wanted;                              /* VIEWER_HEADER_* bits the behavior asks for */
    const struct viewer_country_table *countries; /* NULL or empty: no country is known */
    slice_t client_address;                       /* the viewer's address as text */
    bool tls;                                     /* the viewer's connection is TLS */
    bool debug_headers;                           /* X-Verge-Debug-Country overrides the country (dev mode) */
};

struct viewer_meta_output {
    struct http_header *headers; /* the request's headers after the change */
    size_t header_count;
    struct http_header *viewer_sent; /* the viewer's own copies that were taken off, in order */
    size_t viewer_sent_count;
};

/* Takes the viewer's copies of the wanted headers off `headers` (and
 * X-Verge-Debug-Country when debug_headers is on), then appends verge's
 * values of the wanted ones, in the spec's order: the country when one is
 * known (the override's, else the table's; none: no header), "true"/"false"
 * for each wanted device flag, "https"/"http". Everything else keeps its
 * place. New arrays come from `arena`; names and values are static, from
 * the table, or from `headers`. Returns false, writing nothing, when
 * debug_headers is on and X-Verge-Debug-Country is not two ASCII letters
 * (the first one counts; it is upper-cased). */
bool viewer_meta_add_headers(struct arena *arena, const struct viewer_meta_input *input, const struct http_header *headers,
                             size_t count, struct viewer_meta_output *out);

/* The request's headers as the viewer sent them, for viewer functions that
 * run after the headers were added (viewer-response): `headers` without any
 * header of the `wanted` set, plus `viewer_sent` (what viewer_meta_add_headers
 * took off). New array from `arena`. */
size_t viewer_meta_viewer_view(struct arena *arena, unsigned wanted, const struct http_header *headers, size_t count,
                               const struct http_header *viewer_sent, size_t viewer_sent_count, struct http_header **out);

#endif
