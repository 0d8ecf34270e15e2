/* fuzz_config.c — libFuzzer target: arbitrary bytes into config_load_buffer.
 *
 * Every input must either load (and be freed) or fail with at least one
 * message; nothing may crash, leak or hang. Host names are not resolved
 * (config_resolve_hosts = false) so no input waits on DNS; relative paths
 * resolve against /tmp. A loaded config is exercised a little further:
 * every behavior pattern is matched against a few paths, the first
 * behavior must be found for a path equal to its own pattern when that has
 * no wildcard, and every network of viewer_countries must find a country.
 * verge dev's error lines come from the same bytes: config_locate_line
 * must answer for any path, 0 (not JSON) only when the load said so.
 */
#include "../../conf/config.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config_resolve_hosts = false;
    struct config_errors errors = {0};
    struct config *config = config_load_buffer((const char *)data, size, "/tmp", &errors);
    bool loaded = config != NULL;
    if (config == NULL) {
        if (errors.count == 0)
            abort(); /* a rejected config must say why */
    } else {
        if (errors.count != 0 || config->behavior_count == 0)
            abort();
        static const char *const paths[] = {"", "/", "/index.html", "/api/v1/x", "/a/b/c.jpg"};
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
            if (config_match_behavior(config, slice_from_cstr(paths[i])) == NULL)
                abort(); /* the last behavior is "*" */
        const char *pattern = config->behaviors[0].path_pattern;
        if (strpbrk(pattern, "*?") == NULL && !config_path_pattern_match(slice_from_cstr(pattern), slice_from_cstr(pattern)))
            abort();
        for (size_t i = 0; i < config->origin_count; i++)
            if (config->origins[i].kind == ORIGIN_KIND_HTTP && config->origins[i].sockaddr_len == 0)
                abort(); /* a loaded url origin is resolved */
        /* every network of the country table finds a country for its own address */
        const struct viewer_country_table *countries = &config->viewer_countries;
        for (size_t i = 0; i < countries->range_count; i++) {
            const struct viewer_country_range *range = &countries->ranges[i];
            const char *country = viewer_meta_lookup_country(countries, &range->network.address);
            if (country == NULL || strlen(country) != 2)
                abort();
        }
        config_ref(config);
        config_unref(config);
        config_unref(config);
    }
    static const char *const json_paths[] = {"behaviors[0].origin", "origins.app.url", "listen[1]", "a[x].b", "", "[0]"};
    for (size_t i = 0; i < sizeof json_paths / sizeof json_paths[0]; i++) {
        unsigned line = config_locate_line((const char *)data, size, json_paths[i]);
        if (loaded && line == 0)
            abort(); /* it parsed, so it is JSON with lines */
    }
    config_errors_free(&errors);
    return 0;
}
