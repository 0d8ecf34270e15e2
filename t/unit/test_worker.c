/* test_worker.c — hooks/worker.c: spawn a worker on a small Lua file, invoke it
 * over the channel and check the RESULT: modified request, generated response,
 * raised error with file:line, memory bomb (and the next invocation still
 * answered), sandbox escapes (io, os.execute, ffi, bytecode), print → LOG, and
 * an endless loop killed at a deadline (the channel closes).
 * Every wait is bounded by poll with a deadline.
 */
#include "../../hooks/worker.h"
#include "unit.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char temp_dir[64];

static const char viewer_request_event[] =
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d111111abcdef8.cloudfront.net\",\"distributionId\":"
    "\"EDFDVBD6EXAMPLE\",\"eventType\":\"viewer-request\",\"requestId\":\"4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_"
    "1oF26ClkoUSEQ==\"},\"request\":{\"clientIp\":\"203.0.113.178\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":"
    "\"d111111abcdef8.cloudfront.net\"}]},\"method\":\"GET\",\"querystring\":\"\",\"uri\":\"/\"}}}]}";

#define MEMORY_LIMIT (32u * 1024u * 1024u)

struct spawned {
    int fd;
    pid_t pid;
    char file[128];
};

static struct spawned spawn_function_limited(const char *name, const char *code, const char *handler, size_t memory_limit)
{
    struct spawned s = {.fd = -1, .pid = -1};
    snprintf(s.file, sizeof s.file, "%s/%s.lua", temp_dir, name);
    FILE *f = fopen(s.file, "w");
    VERGE_ASSERT(f != NULL);
    fputs(code, f);
    fclose(f);
    bool spawned = worker_spawn(s.file, handler, memory_limit, &s.fd, &s.pid);
    CHECK(spawned);
    return s;
}

static struct spawned spawn_function(const char *name, const char *code, const char *handler)
{
    return spawn_function_limited(name, code, handler, MEMORY_LIMIT);
}

/* Waits up to timeout_ms for fd to become readable. */
static bool wait_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    return n == 1;
}

/* Sends one INVOKE and reads messages until RESULT (LOG lines go to `log`).
 * Returns false if nothing (or garbage) arrives within timeout_ms per message. */
static bool invoke(struct spawned *s, const char *event, int timeout_ms, struct bytebuf *payload, struct worker_result *result,
                   struct bytebuf *log)
{
    struct bytebuf message = {0};
    struct worker_invocation invocation = {
        .remaining_ms = 3000,
        .request_id = SLICE_LITERAL("req-1"),
        .function_name = SLICE_LITERAL("fn"),
        .function_version = SLICE_LITERAL("1"),
        .event_json = slice_from_cstr(event),
    };
    worker_invocation_encode(&invocation, &message);
    bool ok = worker_message_write(s->fd, WORKER_MESSAGE_INVOKE, message.data, message.len);
    bytebuf_free(&message);
    for (int i = 0; ok && i < 100; i++) {
        uint32_t type;
        if (!wait_readable(s->fd, timeout_ms) || !worker_message_read(s->fd, &type, payload))
            return false;
        if (type == WORKER_MESSAGE_LOG) {
            if (log)
                bytebuf_append(log, payload->data, payload->len), bytebuf_append(log, "\n", 1);
            continue;
        }
        return type == WORKER_MESSAGE_RESULT && worker_result_decode(payload->data, payload->len, result);
    }
    return false;
}

static char *result_text(const struct worker_result *r)
{
    static char buf[8192];
    snprintf(buf, sizeof buf, "%.*s", (int)r->body.len, r->body.ptr);
    return buf;
}

/* Closing the channel is the clean shutdown: the worker exits 0. Bounded: SIGKILL after 2 s. */
static void finish(struct spawned *s, int expected_status)
{
    close(s->fd);
    int status = 0;
    for (int i = 0; i < 200; i++) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid) {
            CHECK(WIFEXITED(status));
            CHECK_INT(WEXITSTATUS(status), expected_status);
            return;
        }
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    CHECK(!"worker did not exit after its channel closed");
}

static void test_add_header(void)
{
    struct spawned s = spawn_function("add_header",
                                      "function handler(event, context)\n"
                                      "  local request = event.Records[1].cf.request\n"
                                      "  request.headers['x-fn'] = {{key = 'X-Fn', value = context.functionName .. ':' ..\n"
                                      "      context.awsRequestId .. ':' .. context.memoryLimitInMB}}\n"
                                      "  assert(context.getRemainingTimeInMillis() > 0)\n"
                                      "  print('hello', 42, nil)\n"
                                      "  return request\n"
                                      "end\n",
                                      "handler");
    struct bytebuf payload = {0}, log = {0};
    struct worker_result r;
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, &log));
    CHECK_INT(r.status, WORKER_RESULT_OK);
    /* Object member order follows Lua's hash order: check members, not whole objects. */
    CHECK(strstr(result_text(&r), "\"x-fn\":[{\"") != NULL);
    CHECK(strstr(result_text(&r), "\"key\":\"X-Fn\"") != NULL);
    CHECK(strstr(result_text(&r), "\"value\":\"fn:req-1:32\"") != NULL);
    CHECK(strstr(result_text(&r), "\"host\":[{\"") != NULL);
    CHECK(strstr(result_text(&r), "\"value\":\"d111111abcdef8.cloudfront.net\"") != NULL);
    CHECK(strstr(result_text(&r), "\"uri\":\"/\"") != NULL);
    CHECK(r.peak_memory_bytes > 0 && r.peak_memory_bytes < MEMORY_LIMIT);
    bytebuf_append(&log, "", 1);
    CHECK_STR(log.data, "hello\t42\tnil\n");
    /* warm: a second invocation on the same state */
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_OK);
    /* malformed event JSON is an error result, not a dead worker */
    CHECK(invoke(&s, "{\"Records\":[", 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_ERROR);
    CHECK(strstr(result_text(&r), "invalid event JSON") != NULL);
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_OK);
    bytebuf_free(&payload);
    bytebuf_free(&log);
    finish(&s, 0);
}

static void test_generated_response_from_module_table(void)
{
    struct spawned s = spawn_function("generate",
                                      "local M = {}\n"
                                      "function M.respond(event, context)\n"
                                      "  return { status = 200, statusDescription = 'OK', empty = {}, list = {1, 2.5, 'x', true},\n"
                                      "    headers = { ['content-type'] = {{ key = 'Content-Type', value = 'text/plain' }} },\n"
                                      "    body = 'hi \"there\"\\n' }\n"
                                      "end\n"
                                      "return M\n",
                                      "respond");
    struct bytebuf payload = {0};
    struct worker_result r;
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_OK);
    const char *json = result_text(&r);
    CHECK(strstr(json, "\"status\":200") != NULL);
    CHECK(strstr(json, "\"empty\":{}") != NULL);
    CHECK(strstr(json, "\"list\":[1,2.5,\"x\",true]") != NULL);
    CHECK(strstr(json, "\"body\":\"hi \\\"there\\\"\\n\"") != NULL);
    CHECK(strstr(json, "\"content-type\":[{\"key\":\"Content-Type\",\"value\":\"text/plain\"}]") != NULL ||
          strstr(json, "\"content-type\":[{\"value\":\"text/plain\",\"key\":\"Content-Type\"}]") != NULL);
    bytebuf_free(&payload);
    finish(&s, 0);
}

static void test_raised_error_and_unencodable_result(void)
{
    struct spawned s = spawn_function("raise",
                                      "local function helper()\n"
                                      "  error('boom')\n"
                                      "end\n"
                                      "function handler(event, context)\n"
                                      "  if event.Records[1].cf.request.uri == '/f' then return { f = print } end\n"
                                      "  helper()\n"
                                      "end\n",
                                      "handler");
    struct bytebuf payload = {0};
    struct worker_result r;
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_ERROR);
    char expected[256];
    snprintf(expected, sizeof expected, "%s:2: boom", s.file);
    CHECK(strncmp(result_text(&r), expected, strlen(expected)) == 0);
    CHECK(strstr(result_text(&r), "stack traceback:") != NULL);
    CHECK(strstr(result_text(&r), "in function 'helper'") != NULL || strstr(result_text(&r), "helper") != NULL);

    struct bytebuf event = {0};
    bytebuf_append(&event, viewer_request_event, sizeof viewer_request_event - 1);
    char *uri = strstr(event.data, "\"uri\":\"/\"");
    VERGE_ASSERT(uri != NULL);
    static const char function_event_tail[] = "\"uri\":\"/f\"}}}]}";
    event.len = (size_t)(uri - event.data);
    bytebuf_append(&event, function_event_tail, sizeof function_event_tail);
    CHECK(invoke(&s, event.data, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_ERROR);
    CHECK(strstr(result_text(&r), "cannot encode a function value") != NULL);
    bytebuf_free(&event);
    bytebuf_free(&payload);
    finish(&s, 0);
}

static void test_memory_bomb(void)
{
    struct spawned s = spawn_function("bomb",
                                      "local calls = 0\n"
                                      "function handler(event, context)\n"
                                      "  calls = calls + 1\n"
                                      "  if calls == 1 then\n"
                                      "    local t = {}\n"
                                      "    for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end\n"
                                      "  end\n"
                                      "  if calls == 3 then local s = string.rep('x', 1e9) end\n"
                                      "  if calls == 4 then local t = {} t.self = t return t end\n"
                                      "  return { status = '200', calls = calls }\n"
                                      "end\n",
                                      "handler");
    struct bytebuf payload = {0};
    struct worker_result r;
    CHECK(invoke(&s, viewer_request_event, 10000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_ERROR);
    CHECK(strstr(result_text(&r), "not enough memory") != NULL);
    CHECK(r.peak_memory_bytes <= MEMORY_LIMIT);
    CHECK(r.peak_memory_bytes > MEMORY_LIMIT / 2);
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_OK);
    CHECK(strstr(result_text(&r), "\"calls\":2") != NULL);
    CHECK(r.peak_memory_bytes < MEMORY_LIMIT / 2);
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL)); /* one huge string */
    CHECK_INT(r.status, WORKER_RESULT_ERROR);
    CHECK(strstr(result_text(&r), "not enough memory") != NULL);
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL)); /* a cycle cannot be encoded */
    CHECK_INT(r.status, WORKER_RESULT_ERROR);
    CHECK(strstr(result_text(&r), "nested too deeply") != NULL);
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_OK);
    CHECK(strstr(result_text(&r), "\"calls\":5") != NULL);
    bytebuf_free(&payload);
    finish(&s, 0);
}

/* The event itself exceeds the limit: the memory error is raised inside yajl's
 * callbacks and unwinds through yajl_parse; the worker answers, then serves a small event. */
static void test_event_larger_than_memory_limit(void)
{
    struct spawned s =
        spawn_function_limited("small", "function handler(event) return { n = #event.a } end\n", "handler", 1024 * 1024);
    struct bytebuf event = {0}, payload = {0};
    bytebuf_appendf(&event, "{\"a\":[");
    for (int i = 0; i < 2000; i++)
        bytebuf_appendf(&event, "%s\"%04d%0996d\"", i ? "," : "", i, 0);
    bytebuf_appendf(&event, "]}");
    bytebuf_append(&event, "", 1);
    struct worker_result r;
    CHECK(invoke(&s, event.data, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_ERROR);
    CHECK(strstr(result_text(&r), "not enough memory") != NULL);
    CHECK(invoke(&s, "{\"a\":[1,2,3]}", 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_OK);
    CHECK_STR(result_text(&r), "{\"n\":3}");
    bytebuf_free(&event);
    bytebuf_free(&payload);
    finish(&s, 0);
}

/* Each escape attempt must raise (so the handler's pcall records "blocked") and leave no trace. */
static void test_sandbox(void)
{
    char code[4096];
    snprintf(code, sizeof code,
             "local marker = '%s/escaped'\n"
             "local attempts = {\n"
             "  function() return io.open(marker, 'w') end,\n"
             "  function() return os.execute('touch ' .. marker) end,\n"
             "  function() return os.exit(3) end,\n"
             "  function() return os.remove(marker) end,\n"
             "  function() return require('ffi') end,\n"
             "  function() return require('io') end,\n"
             "  function() return require('debug') end,\n"
             "  function() return debug.getinfo(1) end,\n"
             "  function() return package.loadlib('libc.so.6', 'system') end,\n"
             "  function() return dofile(marker) end,\n"
             "  function() return loadfile(marker) end,\n"
             "  function() return string.dump(print) end,\n"
             "  function() return assert(loadstring('\\27LJ\\2'))() end,\n"
             "  function() return assert(load('\\27LJ\\2'))() end,\n"
             "  function() return require('jit') end,\n"
             "}\n"
             "function handler(event, context)\n"
             "  local results = {}\n"
             "  for i, attempt in ipairs(attempts) do\n"
             "    local ok = pcall(attempt)\n"
             "    results[i] = ok and 'escaped' or 'blocked'\n"
             "  end\n"
             "  return { results = results, time = type(os.time()), clock = type(os.clock()),\n"
             "           date = type(os.date('%%Y')), env = tostring(os.getenv('HOME')),\n"
             "           text = assert(loadstring('return 1 + 1'))() }\n"
             "end\n",
             temp_dir);
    struct spawned s = spawn_function("sandbox", code, "handler");
    struct bytebuf payload = {0};
    struct worker_result r;
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_OK);
    const char *json = result_text(&r);
    CHECK(strstr(json, "escaped") == NULL);
    CHECK(strstr(json, "\"results\":[\"blocked\",\"blocked\",\"blocked\",\"blocked\",\"blocked\",\"blocked\",\"blocked\","
                       "\"blocked\",\"blocked\",\"blocked\",\"blocked\",\"blocked\",\"blocked\",\"blocked\",\"blocked\"]") != NULL);
    CHECK(strstr(json, "\"time\":\"number\"") != NULL);
    CHECK(strstr(json, "\"clock\":\"number\"") != NULL);
    CHECK(strstr(json, "\"date\":\"string\"") != NULL);
    CHECK(strstr(json, "\"env\":\"nil\"") != NULL);
    CHECK(strstr(json, "\"text\":2") != NULL);
    char marker[128];
    snprintf(marker, sizeof marker, "%s/escaped", temp_dir);
    CHECK(access(marker, F_OK) != 0);
    bytebuf_free(&payload);
    finish(&s, 0);
}

static void test_require_next_to_function(void)
{
    char module_path[128];
    snprintf(module_path, sizeof module_path, "%s/helper_module.lua", temp_dir);
    FILE *f = fopen(module_path, "w");
    VERGE_ASSERT(f != NULL);
    fputs("return { greet = function() return 'hi from module' end }\n", f);
    fclose(f);
    struct spawned s = spawn_function("requirer",
                                      "local helper = require('helper_module')\n"
                                      "function handler() return { greeting = helper.greet() } end\n",
                                      "handler");
    struct bytebuf payload = {0};
    struct worker_result r;
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_OK);
    CHECK_STR(result_text(&r), "{\"greeting\":\"hi from module\"}");
    bytebuf_free(&payload);
    finish(&s, 0);
}

static void test_load_errors(void)
{
    struct spawned s = spawn_function("syntax", "function handler(\n  return 1\nend\n", "handler");
    struct bytebuf payload = {0};
    struct worker_result r;
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_ERROR);
    char expected[256];
    snprintf(expected, sizeof expected, "%s:2:", s.file);
    CHECK(strncmp(result_text(&r), expected, strlen(expected)) == 0);
    finish(&s, 0);

    s = spawn_function("nohandler", "x = 1\n", "handler");
    CHECK(invoke(&s, viewer_request_event, 5000, &payload, &r, NULL));
    CHECK_INT(r.status, WORKER_RESULT_ERROR);
    CHECK(strstr(result_text(&r), "handler 'handler' is not a function") != NULL);
    bytebuf_free(&payload);
    finish(&s, 0);
}

static void test_endless_loop_killed(void)
{
    struct spawned s = spawn_function("loop", "function handler() local i = 0 while true do i = i + 1 end end\n", "handler");
    struct bytebuf payload = {0};
    struct worker_result r;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    CHECK(!invoke(&s, viewer_request_event, 300, &payload, &r, NULL)); /* deadline passes, no answer */
    CHECK_INT(kill(s.pid, SIGKILL), 0);
    CHECK(wait_readable(s.fd, 2000));
    char byte;
    CHECK_INT(read(s.fd, &byte, 1), 0); /* channel closed */
    int status = 0;
    CHECK_INT(waitpid(s.pid, &status, 0), s.pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    clock_gettime(CLOCK_MONOTONIC, &end);
    CHECK((end.tv_sec - start.tv_sec) < 5);
    close(s.fd);
    bytebuf_free(&payload);
}

static void remove_temp_dir(void)
{
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    if (system(command) != 0)
        fprintf(stderr, "could not remove %s\n", temp_dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(temp_dir, sizeof temp_dir, "/tmp/verge-worker-XXXXXX");
    VERGE_ASSERT(mkdtemp(temp_dir) != NULL);
    UNIT_RUN(test_add_header);
    UNIT_RUN(test_generated_response_from_module_table);
    UNIT_RUN(test_raised_error_and_unencodable_result);
    UNIT_RUN(test_memory_bomb);
    UNIT_RUN(test_event_larger_than_memory_limit);
    UNIT_RUN(test_sandbox);
    UNIT_RUN(test_require_next_to_function);
    UNIT_RUN(test_load_errors);
    UNIT_RUN(test_endless_loop_killed);
    remove_temp_dir();
    return unit_summary();
}
