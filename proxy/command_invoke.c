/* command_invoke.c — `verge invoke`: runs one edge function once, on one
 * event, the way serving runs it, and reports what happened.
 *
 *   verge invoke FILE.lua --event FILE|- [--trigger T] [--json]
 *   verge invoke -c CONFIG --function NAME --event FILE|- [--trigger T] [--json]
 *
 * Nothing here imitates serving; it is serving's own machinery on a loop of
 * its own:
 *  - the function: FILE.lua becomes a one-function config built in memory
 *    and loaded by config_load_buffer (so it is read and compiled as at load,
 *    and gets the schema's default limits); -c loads the user's config. The
 *    limits at the trigger are config_function_limits', the ones behaviors get.
 *  - the run: hooks_pools_create + hooks_invoke, i.e. `verge worker` spawned
 *    and sandboxed by the pool, its memory cap, its deadline (SIGKILL), the
 *    event in the compact format, and the pool's START/END/REPORT lines.
 *  - the verdict: hooks_outcome_read_result, the parse (with the worker's
 *    header changes) and validation request_hooks.c applies, so the error text
 *    and rule names are the ones the proxy logs.
 *  - the log lines: the function log is pointed at a memfd for the run
 *    (function_log_configure with its /proc/self/fd path), drained by
 *    function_log_shutdown, then read back: serving's writer, unchanged.
 *
 * The result printed is the request or response verge goes on with: what
 * the function returned as verge read it (header changes merged, keys filled
 * in, status a string), with the fields it left out that keep the event's
 * value (clientIp, method, querystring, origin, a response's
 * statusDescription) taken from the event, and a request body dropped when
 * the event had none (no Include Body: verge ignores it). A result that
 * parses but fails validation is printed as well (as read, not completed).
 *
 * Exit status: 0 a valid result, 1 the function failed (raised, ran out of
 * memory, timed out, crashed, no worker), 2 its result failed validation,
 * 3 bad arguments or input (event, function file, config).
 *
 * One run per process; everything lives in one arena and is freed before
 * the return (the function log is shut down: the process is about to exit).
 */
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "../hooks/pool.h"
#include "access_log.h"
#include "commands.h"

#define INVOKE_USAGE_ERROR 3
#define INVOKE_EVENT_FILE_MAX (64u << 20)
#define INVOKE_ORIGIN_NAME "invoke"

enum invoke_outcome { INVOKE_VALID, INVOKE_FUNCTION_FAILED, INVOKE_VALIDATION_FAILED };

static const char *const outcome_names[] = {"valid", "function_failed", "validation_failed"};

static const char usage_text[] =
    "usage: verge invoke FILE.lua --event FILE|- [--trigger TRIGGER] [--json]\n"
    "       verge invoke -c CONFIG --function NAME --event FILE|- [--trigger TRIGGER] [--json]\n"
    "       TRIGGER: viewer-request|origin-request|origin-response|viewer-response (default: the event's eventType)\n"
    "       exit status: 0 valid result, 1 the function failed, 2 validation failed, 3 bad arguments or input\n";

static int input_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A problem with what the command was given: one line on stderr. */
static int input_error(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "verge invoke: ");
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n");
    va_end(args);
    return INVOKE_USAGE_ERROR;
}

/* ---- input ------------------------------------------------------------------ */

struct invoke_arguments {
    const char *lua_file;    /* FILE.lua form */
    const char *config_path; /* -c form, with function_name */
    const char *function_name;
    const char *event_path; /* "-": standard input */
    const char *trigger_name;
    bool json;
};

/* Returns 0, or the exit status after printing the problem and the usage. */
static int parse_arguments(int argc, char **argv, struct invoke_arguments *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < argc; i++) {
        const char *argument = argv[i];
        const char **slot = strcmp(argument, "--event") == 0                                   ? &out->event_path
                            : strcmp(argument, "--trigger") == 0                               ? &out->trigger_name
                            : strcmp(argument, "-c") == 0 || strcmp(argument, "--config") == 0 ? &out->config_path
                            : strcmp(argument, "--function") == 0                              ? &out->function_name
                                                                                               : NULL;
        if (slot != NULL) {
            if (i + 1 >= argc) {
                input_error("%s needs a value", argument);
                goto usage;
            }
            *slot = argv[++i];
        } else if (strcmp(argument, "--json") == 0) {
            out->json = true;
        } else if (argument[0] == '-' && argument[1] != '\0') {
            input_error("unknown option \"%s\"", argument);
            goto usage;
        } else if (out->lua_file == NULL) {
            out->lua_file = argument;
        } else {
            input_error("one function file only, got \"%s\" and \"%s\"", out->lua_file, argument);
            goto usage;
        }
    }
    if (out->lua_file != NULL && out->config_path != NULL) {
        input_error("either FILE.lua or -c CONFIG --function NAME, not both");
        goto usage;
    }
    if (out->lua_file == NULL && out->config_path == NULL) {
        input_error("a function is needed: FILE.lua, or -c CONFIG --function NAME");
        goto usage;
    }
    if (out->config_path != NULL && out->function_name == NULL) {
        input_error("-c CONFIG needs --function NAME");
        goto usage;
    }
    if (out->config_path == NULL && out->function_name != NULL) {
        input_error("--function NAME goes with -c CONFIG");
        goto usage;
    }
    if (out->event_path == NULL) {
        input_error("--event FILE is needed (- reads the event from standard input)");
        goto usage;
    }
    return 0;
usage:
    fputs(usage_text, stderr);
    return INVOKE_USAGE_ERROR;
}

static bool trigger_from_name(const char *name, enum event_trigger *out)
{
    for (int t = 0; t < EVENT_TRIGGER_COUNT; t++)
        if (strcmp(name, event_trigger_name((enum event_trigger)t)) == 0) {
            *out = (enum event_trigger)t;
            return true;
        }
    return false;
}

/* The whole event file (or standard input for "-") into `arena`. */
static bool read_event_text(struct arena *arena, const char *path, slice_t *out)
{
    bool from_stdin = strcmp(path, "-") == 0;
    FILE *file = from_stdin ? stdin : fopen(path, "rb");
    if (file == NULL)
        return false;
    struct bytebuf text = {0};
    bool ok = bytebuf_read_file(&text, file, INVOKE_EVENT_FILE_MAX);
    int saved_errno = errno;
    if (text.len > INVOKE_EVENT_FILE_MAX) {
        ok = false;
        saved_errno = EFBIG;
    }
    if (!from_stdin)
        fclose(file);
    *out = arena_slice_copy(arena, (slice_t){text.data != NULL ? text.data : "", text.len});
    bytebuf_free(&text);
    errno = saved_errno;
    return ok;
}

/* A function name for FILE.lua: its base name without ".lua", other
 * characters than the config's name characters as '_'. */
static char *function_name_for_file(struct arena *arena, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".lua") == 0)
        len -= 4;
    if (len == 0)
        return arena_strndup(arena, "function", 8);
    char *name = arena_strndup(arena, base, len);
    for (char *c = name; *c != '\0'; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            *c = '_';
    return name;
}

static void gen_cstring(yajl_gen gen, const char *s)
{
    yajl_gen_string(gen, (const unsigned char *)s, strlen(s));
}

/* A config holding FILE.lua as its one function, with every default:
 * loaded (read, compiled) by the config loader as a config file would be.
 * Its listener and origin are placeholders: nothing listens or fetches. */
static struct config *config_for_file(const char *lua_file, const char *function_name, struct config_errors *errors)
{
    yajl_gen gen = yajl_gen_alloc(NULL);
    VERGE_ASSERT(gen != NULL);
    yajl_gen_map_open(gen);
    gen_cstring(gen, "listen");
    yajl_gen_array_open(gen);
    yajl_gen_map_open(gen);
    gen_cstring(gen, "address");
    gen_cstring(gen, "127.0.0.1:1");
    yajl_gen_map_close(gen);
    yajl_gen_array_close(gen);
    gen_cstring(gen, "origins");
    yajl_gen_map_open(gen);
    gen_cstring(gen, INVOKE_ORIGIN_NAME);
    yajl_gen_map_open(gen);
    gen_cstring(gen, "respond");
    yajl_gen_map_open(gen);
    gen_cstring(gen, "status");
    yajl_gen_integer(gen, 200);
    yajl_gen_map_close(gen);
    yajl_gen_map_close(gen);
    yajl_gen_map_close(gen);
    gen_cstring(gen, "functions");
    yajl_gen_map_open(gen);
    gen_cstring(gen, function_name);
    yajl_gen_map_open(gen);
    gen_cstring(gen, "code");
    gen_cstring(gen, lua_file);
    yajl_gen_map_close(gen);
    yajl_gen_map_close(gen);
    gen_cstring(gen, "behaviors");
    yajl_gen_array_open(gen);
    yajl_gen_map_open(gen);
    gen_cstring(gen, "path");
    gen_cstring(gen, "*");
    gen_cstring(gen, "origin");
    gen_cstring(gen, INVOKE_ORIGIN_NAME);
    yajl_gen_map_close(gen);
    yajl_gen_array_close(gen);
    yajl_gen_map_close(gen);
    const unsigned char *text;
    size_t len;
    VERGE_ASSERT(yajl_gen_get_buf(gen, &text, &len) == yajl_gen_status_ok);
    char *cwd = getcwd(NULL, 0);
    struct config *config = config_load_buffer((const char *)text, len, cwd != NULL ? cwd : ".", errors);
    free(cwd);
    yajl_gen_free(gen);
    return config;
}

/* Prints the config's problems, one line each; for FILE.lua without the
 * "functions.NAME.code: " of the config the user never wrote. */
static int config_errors_report(const struct config_errors *errors, const char *generated_function)
{
    char prefix[128] = "";
    if (generated_function != NULL)
        snprintf(prefix, sizeof prefix, "functions.%s.code: ", generated_function);
    size_t prefix_len = strlen(prefix);
    for (size_t i = 0; i < errors->count; i++) {
        const char *message = errors->messages[i];
        if (prefix_len > 0 && strncmp(message, prefix, prefix_len) == 0)
            message += prefix_len;
        input_error("%s", message);
    }
    return INVOKE_USAGE_ERROR;
}

/* ---- the run ------------------------------------------------------------------ */

struct invoke_run {
    struct ev_loop *loop;
    struct arena *arena;
    const struct event_input *input;
    const char *function_name;
    bool answered;
    double duration_ms;
    uint64_t peak_memory_bytes;
    enum invoke_outcome outcome;
    const char *error;      /* the function's failure, or the validation's "field: rule" */
    const char *error_kind; /* "execution", "timeout", "throttled", "validation" */
    bool has_result;        /* read: valid (and completed), or well formed but invalid */
    struct event_result result;
};

/* Fields of a valid result that keep the event's value when the function
 * left them out, and a request body verge ignores: the message verge goes
 * on with. */
static void complete_result(const struct event_input *input, struct event_result *result)
{
    if (result->kind == EVENT_RESULT_REQUEST) {
        struct event_request *request = &result->request;
        const struct event_request *in = &input->request;
        if (!request->has_client_ip) {
            request->client_ip = in->client_ip;
            request->has_client_ip = true;
        }
        if (!request->has_method) {
            request->method = in->method;
            request->has_method = true;
        }
        if (!request->has_querystring) {
            request->querystring = in->querystring;
            request->has_querystring = true;
        }
        if (!request->has_origin && in->has_origin) {
            request->origin = in->origin;
            request->has_origin = true;
        }
        if (!in->has_body)
            request->has_body = false;
    } else if (!event_trigger_is_request(input->trigger) && !result->response.has_status_description) {
        result->response.status_description = input->response.status_description;
        result->response.has_status_description = true;
    }
}

static void on_invoke_done(void *context, const struct hooks_outcome *outcome)
{
    struct invoke_run *run = context;
    run->answered = true;
    run->duration_ms = outcome->duration_ms;
    run->peak_memory_bytes = outcome->peak_memory_bytes;
    ev_break(run->loop, EVBREAK_ALL);
    if (outcome->kind != HOOKS_OK && outcome->kind != HOOKS_UNSERIALIZABLE) {
        run->outcome = INVOKE_FUNCTION_FAILED;
        const char *why = outcome->error != NULL ? outcome->error : "the function failed";
        run->error = arena_strndup(run->arena, why, strlen(why));
        run->error_kind = outcome->kind == HOOKS_TIMEOUT ? "timeout" : outcome->kind == HOOKS_THROTTLED ? "throttled" : "execution";
        return;
    }
    struct event_error error;
    const struct event_input *input = run->input;
    if (hooks_outcome_read_result(outcome, input, run->arena, &run->result, &error)) {
        run->outcome = INVOKE_VALID;
        run->has_result = true;
        event_result_merge_header_changes(input, &run->result, run->arena);
        complete_result(input, &run->result);
        return;
    }
    run->outcome = INVOKE_VALIDATION_FAILED;
    run->error_kind = "validation";
    run->error = arena_printf(run->arena, "%s: %s", error.field, error.rule);
    hooks_log_validation_error(slice_from_cstr(run->function_name), input->config.request_id, error.field, error.rule);
    /* Shown as read when it parses (validation failed on its values). */
    struct event_error ignored;
    if (outcome->kind == HOOKS_OK && event_parse_result_compact(input->trigger, outcome->result_json.ptr, outcome->result_json.len,
                                                                outcome->header_changes, run->arena, &run->result, &ignored)) {
        run->has_result = true;
        event_result_merge_header_changes(input, &run->result, run->arena);
    }
}

/* Runs the function once on a worker of its own; fills `run`. Returns
 * false (with a message) when the function log cannot be captured. */
static bool invoke_once(struct config *config, size_t function_index, enum event_trigger trigger, int timeout_ms, int memory_mb,
                        struct invoke_run *run, struct bytebuf *log_text)
{
    int log_fd = memfd_create("verge-invoke-function-log", MFD_CLOEXEC);
    char path[64], error[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", log_fd);
    if (log_fd < 0 || function_log_configure(path, error, sizeof error) != 0) {
        input_error("cannot capture the function log: %s", log_fd < 0 ? strerror(errno) : error);
        if (log_fd >= 0)
            close(log_fd);
        return false;
    }
    run->loop = ev_loop_new(EVFLAG_AUTO);
    VERGE_ASSERT(run->loop != NULL);
    struct hooks_pools *pools = hooks_pools_create(run->loop);
    struct hooks_invocation invocation = {
        .config = config,
        .function_index = function_index,
        .trigger = trigger,
        .timeout_ms = timeout_ms,
        .memory_mb = memory_mb,
        .request_id = run->input->config.request_id,
        .event = run->input,
    };
    struct hooks_call call;
    if (hooks_invoke(pools, &invocation, &call, on_invoke_done, run))
        ev_run(run->loop, 0);
    if (!run->answered) { /* refused: no concurrency left (cannot happen with one event) */
        run->outcome = INVOKE_FUNCTION_FAILED;
        run->error_kind = "throttled";
        run->error = "throttled: workers.max_concurrency reached";
    }
    hooks_pools_destroy(pools);
    ev_loop_destroy(run->loop);
    function_log_shutdown(); /* every line written */
    char chunk[65536];
    ssize_t n;
    for (off_t at = 0; (n = pread(log_fd, chunk, sizeof chunk, at)) > 0; at += n)
        bytebuf_append(log_text, chunk, (size_t)n);
    close(log_fd);
    return true;
}

/* ---- the report ---------------------------------------------------------------- */

/* The function log's lines without their time and function columns
 * ("<time>\t<function>\t<text>"). */
static size_t log_lines(struct arena *arena, const struct bytebuf *text, slice_t **out)
{
    size_t count = 0, capacity = 16;
    slice_t *lines = arena_alloc(arena, capacity * sizeof *lines);
    *out = lines;
    if (text->len == 0)
        return 0; /* (throttled: no line; data may be NULL) */
    const char *p = text->data, *end = text->data + text->len;
    while (p != NULL && p < end) {
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        const char *stop = newline != NULL ? newline : end;
        const char *field = p;
        for (int columns = 0; columns < 2 && field != NULL; columns++) {
            field = memchr(field, '\t', (size_t)(stop - field));
            if (field != NULL)
                field++;
        }
        if (count == capacity) {
            slice_t *grown = arena_alloc(arena, capacity * 2 * sizeof *lines);
            memcpy(grown, lines, capacity * sizeof *lines);
            lines = grown;
            capacity *= 2;
        }
        lines[count++] = field != NULL ? (slice_t){field, (size_t)(stop - field)} : (slice_t){p, (size_t)(stop - p)};
        p = newline != NULL ? newline + 1 : NULL;
    }
    *out = lines;
    return count;
}

static double share_percent(double part, double whole)
{
    return whole > 0 ? part * 100.0 / whole : 0;
}

static void print_human(const struct invoke_run *run, slice_t result_json, const slice_t *lines, size_t line_count, int timeout_ms,
                        int memory_mb)
{
    if (run->has_result)
        printf("result: " SLICE_FMT "\n", SLICE_ARG(result_json));
    else
        printf("result: none\n");
    for (size_t i = 0; i < line_count; i++)
        printf("log: " SLICE_FMT "\n", SLICE_ARG(lines[i]));
    printf("duration: %.2f ms (timeout %d ms, %.1f%%)\n", run->duration_ms, timeout_ms,
           share_percent(run->duration_ms, timeout_ms));
    double limit_bytes = (double)memory_mb * 1024 * 1024;
    if (run->peak_memory_bytes > 0)
        printf("memory: peak %.2f MB of %d MB (%.1f%%)\n", (double)run->peak_memory_bytes / (1024 * 1024), memory_mb,
               share_percent((double)run->peak_memory_bytes, limit_bytes));
    else
        printf("memory: peak unknown (the worker did not answer) of %d MB\n", memory_mb);
    if (run->outcome == INVOKE_VALID)
        printf("validation: ok\n");
    else if (run->outcome == INVOKE_VALIDATION_FAILED)
        printf("validation failed: %s\n", run->error);
    else
        printf("function failed: %s\n", run->error);
}

static void json_key(struct bytebuf *out, const char *key)
{
    if (out->len > 1)
        bytebuf_append(out, ",", 1);
    access_log_append_json_string(out, slice_from_cstr(key));
    bytebuf_append(out, ":", 1);
}

static void json_string_or_null(struct bytebuf *out, const char *s)
{
    if (s != NULL)
        access_log_append_json_string(out, slice_from_cstr(s));
    else
        bytebuf_append_cstr(out, "null");
}

static void print_json(const struct invoke_run *run, enum event_trigger trigger, slice_t result_json, const slice_t *lines,
                       size_t line_count, int timeout_ms, int memory_mb)
{
    struct bytebuf out = {0};
    bytebuf_append(&out, "{", 1);
    json_key(&out, "outcome");
    json_string_or_null(&out, outcome_names[run->outcome]);
    json_key(&out, "function");
    json_string_or_null(&out, run->function_name);
    json_key(&out, "trigger");
    json_string_or_null(&out, event_trigger_name(trigger));
    json_key(&out, "result");
    if (run->has_result)
        bytebuf_append_slice(&out, result_json);
    else
        bytebuf_append_cstr(&out, "null");
    json_key(&out, "logs");
    bytebuf_append(&out, "[", 1);
    for (size_t i = 0; i < line_count; i++) {
        if (i > 0)
            bytebuf_append(&out, ",", 1);
        access_log_append_json_string(&out, lines[i]);
    }
    bytebuf_append(&out, "]", 1);
    json_key(&out, "duration_ms");
    bytebuf_appendf(&out, "%.3f", run->duration_ms);
    json_key(&out, "timeout_ms");
    bytebuf_append_decimal(&out, (uint64_t)timeout_ms);
    json_key(&out, "memory_peak_bytes");
    if (run->peak_memory_bytes > 0)
        bytebuf_append_decimal(&out, run->peak_memory_bytes);
    else
        bytebuf_append_cstr(&out, "null");
    json_key(&out, "memory_peak_mb"); /* rounded up, as REPORT's Max Memory Used */
    if (run->peak_memory_bytes > 0)
        bytebuf_append_decimal(&out, (run->peak_memory_bytes + 1024 * 1024 - 1) / (1024 * 1024));
    else
        bytebuf_append_cstr(&out, "null");
    json_key(&out, "memory_limit_mb");
    bytebuf_append_decimal(&out, (uint64_t)memory_mb);
    json_key(&out, "error_kind");
    json_string_or_null(&out, run->error_kind);
    json_key(&out, "error");
    json_string_or_null(&out, run->error);
    bytebuf_append_cstr(&out, "}\n");
    fwrite(out.data, 1, out.len, stdout);
    bytebuf_free(&out);
}

/* ---- the command ------------------------------------------------------------------ */

int command_invoke(int argc, char **argv)
{
    struct invoke_arguments arguments;
    int status = parse_arguments(argc, argv, &arguments);
    if (status != 0)
        return status;
    enum event_trigger trigger = EVENT_VIEWER_REQUEST;
    if (arguments.trigger_name != NULL && !trigger_from_name(arguments.trigger_name, &trigger)) {
        input_error("unknown trigger \"%s\" (known: viewer-request, origin-request, origin-response, viewer-response)",
                    arguments.trigger_name);
        return INVOKE_USAGE_ERROR;
    }
    /* The pool's warnings repeat what the report says; VERGE_LOG_LEVEL still decides when set. */
    if (getenv("VERGE_LOG_LEVEL") == NULL)
        log_threshold = LOG_ERROR;

    struct arena arena;
    arena_init(&arena);
    struct config *config = NULL;
    struct bytebuf log_text = {0};
    status = INVOKE_USAGE_ERROR;
    const char *event_name = strcmp(arguments.event_path, "-") == 0 ? "standard input" : arguments.event_path;
    slice_t event_text;
    if (!read_event_text(&arena, arguments.event_path, &event_text)) {
        input_error("cannot read the event from %s: %s", event_name, strerror(errno));
        goto done;
    }
    struct event_input input;
    struct event_error event_error;
    if (!event_parse_event(event_text.ptr, event_text.len, &arena, &input, &event_error)) {
        input_error("bad event in %s: %s: %s", event_name, event_error.field, event_error.rule);
        goto done;
    }
    /* The id goes into the function log's lines, which hold no control characters and cut long ids. */
    slice_t request_id = input.config.request_id;
    bool request_id_ok = request_id.len < HOOKS_REQUEST_ID_MAX;
    for (size_t i = 0; i < request_id.len && request_id_ok; i++)
        request_id_ok = (unsigned char)request_id.ptr[i] >= 0x20 && request_id.ptr[i] != 0x7f;
    if (!request_id_ok) {
        input_error("bad event in %s: config.requestId: at most %d characters, no control characters", event_name,
                    HOOKS_REQUEST_ID_MAX - 1);
        goto done;
    }
    if (arguments.trigger_name == NULL)
        trigger = input.trigger;
    else if (input.trigger != trigger) {
        input_error("the event in %s is for %s (config.eventType), not %s", event_name, event_trigger_name(input.trigger),
                    arguments.trigger_name);
        goto done;
    }

    struct config_errors errors = {0};
    const char *function_name = arguments.function_name;
    if (arguments.lua_file != NULL) {
        function_name = function_name_for_file(&arena, arguments.lua_file);
        config = config_for_file(arguments.lua_file, function_name, &errors);
    } else {
        config = config_load(arguments.config_path, &errors);
    }
    if (config == NULL) {
        status = config_errors_report(&errors, arguments.lua_file != NULL ? function_name : NULL);
        config_errors_free(&errors);
        goto done;
    }
    config_errors_free(&errors);
    config->generation = 1; /* what serving's first generation is: START's Version, context.functionVersion */
    size_t function_index = config->function_count;
    for (size_t i = 0; i < config->function_count; i++)
        if (strcmp(config->functions[i].name, function_name) == 0)
            function_index = i;
    if (function_index == config->function_count) {
        struct bytebuf known = {0};
        for (size_t i = 0; i < config->function_count; i++) {
            bytebuf_append_cstr(&known, i > 0 ? ", " : "");
            bytebuf_append_cstr(&known, config->functions[i].name);
        }
        input_error("unknown function \"%s\" in %s (known: %.*s)", function_name, arguments.config_path, (int)known.len,
                    known.len > 0 ? known.data : "none");
        bytebuf_free(&known);
        goto done;
    }
    int timeout_ms, memory_mb;
    config_function_limits(&config->functions[function_index], (enum config_trigger_kind)trigger, &timeout_ms, &memory_mb);

    struct invoke_run run = {.arena = &arena, .input = &input, .function_name = function_name};
    if (!invoke_once(config, function_index, trigger, timeout_ms, memory_mb, &run, &log_text))
        goto done;
    struct bytebuf result_json = {0};
    if (run.has_result)
        event_encode_result(trigger, &run.result, &result_json);
    slice_t *lines;
    size_t line_count = log_lines(&arena, &log_text, &lines);
    slice_t result_text = {result_json.data, result_json.len};
    if (arguments.json)
        print_json(&run, trigger, result_text, lines, line_count, timeout_ms, memory_mb);
    else
        print_human(&run, result_text, lines, line_count, timeout_ms, memory_mb);
    bytebuf_free(&result_json);
    status = run.outcome == INVOKE_VALID ? 0 : run.outcome == INVOKE_FUNCTION_FAILED ? 1 : 2;
done:
    fflush(stdout);
    bytebuf_free(&log_text);
    config_unref(config);
    arena_destroy(&arena);
    return status;
}
