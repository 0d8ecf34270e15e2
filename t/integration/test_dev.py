"""`verge dev -c FILE` (issue 6): serving with a trace of every request on stdout and the
X-Verge-Trace response header; hot reload when the config, a function file or a module it can
require changes (debounced; editor swap files ignored), "reloaded in N ms", or the error with
file:line while the last good generation keeps serving. Also "dev": {"trace_header": true}
under plain `verge -c`, and the command's usage errors.

verge dev writes its traces to stdout (Verge.stdout_path here) and its reload messages to stderr.
"""

import os
import re
import subprocess
import time

from conftest import VERGE_BIN, curl, origin_entry, run_verge, wait_until

HELLO = """
function handler(event, context)
  local request = event.Records[1].cf.request
  print("hello from " .. request.uri)
  request.headers["x-greeting"] = {{key = "X-Greeting", value = "%s"}}
  return request
end
"""

SAME = """
function handler(event, context)
  local cf = event.Records[1].cf
  return cf.response or cf.request
end
"""

GENERATE = """
function handler(event, context)
  return {status = "200", body = "made at the edge"}
end
"""

RAISE = """
function handler(event, context)
  print("about to fail")
  error("boom: no token")
end
"""

INVALID = """
function handler(event, context)
  local request = event.Records[1].cf.request
  request.headers["transfer-encoding"] = {{key = "Transfer-Encoding", value = "chunked"}}
  return request
end
"""

TAG_RESPONSE = """
function handler(event, context)
  local response = event.Records[1].cf.response
  response.headers["x-tagged"] = {{key = "X-Tagged", value = "yes"}}
  return response
end
"""

USES_MODULE = """
local greet = require("lib.greet")
function handler(event, context)
  local request = event.Records[1].cf.request
  request.headers["x-greeting"] = {{key = "X-Greeting", value = greet.word}}
  return request
end
"""


def write_functions(tmp_path, functions):
    config = {}
    for name, source in functions.items():
        path = tmp_path / ("%s.lua" % name)
        path.write_text(source)
        config[name] = {"code": str(path)}
    return config


def start_dev(verge, tmp_path, origin, functions, behaviors, extra=None):
    config = {
        "origins": {"app": origin_entry(origin)},
        "functions": write_functions(tmp_path, functions),
        "behaviors": behaviors,
    }
    config.update(extra or {})
    return verge(config, command="dev")


def stdout_text(v):
    try:
        with open(v.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def trace_block(v, request_id, timeout=5.0):
    """The block verge dev printed for the request with `request_id` (its X-Amz-Cf-Id)."""

    def find():
        # a block starts at a line without indentation: "GET /path -> 200 in ... [id ID, behavior ...]"
        blocks = re.split(r"\n(?=\S)", stdout_text(v))
        return next((block for block in blocks if "[id %s," % request_id in block.partition("\n")[0]), None)

    return wait_until(find, timeout, message="trace of %s; stdout:\n%s" % (request_id, stdout_text(v)[-3000:]))


def trace_fields(response):
    """X-Verge-Trace as a dict: {"id": ..., "viewer-request": "fn outcome 0.12ms", "cache": ..., ...}."""
    value = response.header("X-Verge-Trace")
    assert value is not None, response.headers
    fields = {}
    for part in re.findall(r'(?:[^;"]|"[^"]*")+', value):
        name, _, rest = part.strip().partition("=")
        fields[name] = rest
    return fields


def wait_reload(v, since, generation, timeout=10.0):
    return v.wait_for_log(r"changed; reloaded in \d+\.\d ms \(generation %d\)" % generation, since=since, timeout=timeout)


def replace_file(path, text):
    """How most editors save: write a temporary, rename it over the file."""
    temporary = str(path) + ".tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, str(path))


# ---- traces -----------------------------------------------------------------------------------


def test_trace_of_a_miss_and_a_hit(verge, origin, tmp_path):
    v = start_dev(verge, tmp_path, origin, {"hello": HELLO % "hi"},
                  [{"path": "*", "origin": "app", "cache": {}, "triggers": {"viewer-request": "hello"}}])
    first = v.get("/page?x=1")
    assert first.status == 200
    request_id = first.header("X-Amz-Cf-Id")
    fields = trace_fields(first)
    assert fields["id"] == request_id
    assert re.fullmatch(r"hello modified \d+\.\d\dms", fields["viewer-request"]), fields
    assert fields["cache"] == "miss-stored"
    assert fields["key"] == '"127.0.0.1:%d/page"' % v.port
    assert re.fullmatch(r"app 200 \d+\.\d\dms", fields["origin"]), fields
    # the order: request triggers, cache, origin
    assert list(fields)[:5] == ["id", "viewer-request", "cache", "key", "origin"]
    assert origin.requests[-1].header("X-Greeting") == "hi"

    block = trace_block(v, request_id)
    lines = block.splitlines()
    assert re.match(r"GET /page\?x=1 -> 200 in \d+\.\d\d ms  \[id %s, behavior \*\]$" % re.escape(request_id), lines[0])
    assert re.match(r"  viewer-request +hello +modified +\d+\.\d\d ms$", lines[1]), block
    assert lines[2] == "      | INFO  hello from /page", block
    assert re.match(r'  cache +miss-stored  key "127\.0\.0\.1:%d/page"$' % v.port, lines[3]), block
    assert re.match(r"  origin +app +200 +\d+\.\d\d ms$", lines[4]), block

    second = v.get("/page?x=1")
    fields = trace_fields(second)
    assert fields["cache"] == "hit"
    assert "origin" not in fields
    block = trace_block(v, second.header("X-Amz-Cf-Id"))
    assert re.search(r"^  cache +hit  key", block, re.M), block
    assert "  origin" not in block


def test_trace_outcomes(verge, origin, tmp_path):
    functions = {"same": SAME, "generate": GENERATE, "fail": RAISE, "invalid": INVALID, "tag": TAG_RESPONSE}
    behaviors = [
        {"path": "/continue", "origin": "app", "triggers": {"viewer-request": "same"}},
        {"path": "/generated", "origin": "app", "triggers": {"viewer-request": "generate", "viewer-response": "tag"}},
        {"path": "/error", "origin": "app", "triggers": {"viewer-request": "fail"}},
        {"path": "/continued", "origin": "app", "triggers": {"viewer-request": {"function": "fail", "on_error": "continue"}}},
        {"path": "/invalid", "origin": "app", "triggers": {"viewer-request": "invalid"}},
        {"path": "*", "origin": "app",
         "triggers": {"origin-request": "same", "origin-response": "tag", "viewer-response": "same"}},
    ]
    v = start_dev(verge, tmp_path, origin, functions, behaviors)

    r = v.get("/continue")
    assert r.status == 200
    assert trace_fields(r)["viewer-request"].startswith("same continue ")
    assert trace_fields(r)["cache"] == "bypass"

    r = v.get("/generated")
    assert r.status == 200 and r.body == b"made at the edge"
    fields = trace_fields(r)
    assert fields["viewer-request"].startswith("generate generated ")
    assert "origin" not in fields
    # viewer-response does not run after a viewer-request generated response
    assert "viewer-response" not in fields

    r = v.get("/error")
    assert r.status == 503
    assert trace_fields(r)["viewer-request"].startswith("fail error ")
    block = trace_block(v, r.header("X-Amz-Cf-Id"))
    assert re.search(r"^  viewer-request +fail +error +\d+\.\d\d ms  .*boom: no token", block, re.M), block
    assert "      | INFO  about to fail" in block
    assert re.search(r"^      \| ERROR  .*boom: no token", block, re.M), block

    r = v.get("/continued")
    assert r.status == 200
    block = trace_block(v, r.header("X-Amz-Cf-Id"))
    assert re.search(r"^  viewer-request +fail +error +\d+\.\d\d ms  went on \(on_error: continue\): .*boom: no token$", block, re.M), block
    assert re.search(r"^  origin +app +200 ", block, re.M), block

    r = v.get("/invalid")
    assert r.status == 502
    assert trace_fields(r)["viewer-request"].startswith("invalid invalid ")
    block = trace_block(v, r.header("X-Amz-Cf-Id"))
    assert re.search(r'^  viewer-request +invalid +invalid .*request\.headers\["transfer-encoding"\]: ', block, re.M), block

    r = v.get("/other")
    assert r.status == 200 and r.header("X-Tagged") == "yes"
    fields = trace_fields(r)
    assert list(fields) == ["id", "origin-request", "cache", "origin", "origin-response", "viewer-response"], fields
    assert fields["origin-request"].startswith("same continue ")
    assert fields["origin-response"].startswith("tag modified ")
    assert fields["viewer-response"].startswith("same continue ")
    block = trace_block(v, r.header("X-Amz-Cf-Id"))
    order = [line.split()[0] for line in block.splitlines()[1:]]
    assert order == ["origin-request", "cache", "origin", "origin-response", "viewer-response"], block


def test_trace_over_http2(verge, origin, tmp_path):
    v = start_dev(verge, tmp_path, origin, {"hello": HELLO % "h2"},
                  [{"path": "*", "origin": "app", "triggers": {"viewer-request": "hello"}}])
    v.config["listen"][0]["h2c"] = True
    v.write_config(v.config)
    since = v.stderr_size()
    v.wait_for_log(r"verge\.json changed; reloaded", since=since)
    # a new listener setting needs a restart
    v.stop()
    v.start()
    r = curl(v.url + "/h2", "--http2-prior-knowledge")
    assert r.returncode == 0 and r.status == 200
    assert r.header("x-verge-trace") is not None and "viewer-request=hello modified" in r.header("x-verge-trace")
    assert re.search(r"^GET /h2 -> 200 ", stdout_text(v), re.M)


# ---- reloads ------------------------------------------------------------------------------------


def test_reload_on_save(verge, origin, tmp_path):
    v = start_dev(verge, tmp_path, origin, {"hello": HELLO % "one"},
                  [{"path": "*", "origin": "app", "triggers": {"viewer-request": "hello"}}])
    assert "verge dev: serving http://127.0.0.1:%d (generation 1)" % v.port in v.stderr_text()
    v.get("/")
    assert origin.requests[-1].header("X-Greeting") == "one"

    # written in place (a plain write, then close)
    since = v.stderr_size()
    (tmp_path / "hello.lua").write_text(HELLO % "two")
    match = wait_reload(v, since, 2)
    assert str(tmp_path / "hello.lua") in v.stderr_text()[since:]
    assert float(re.search(r"reloaded in (\d+\.\d) ms", match.group(0)).group(1)) < 5000
    v.get("/")
    assert origin.requests[-1].header("X-Greeting") == "two"

    # replaced by a rename
    since = v.stderr_size()
    replace_file(tmp_path / "hello.lua", HELLO % "three")
    wait_reload(v, since, 3)
    v.get("/")
    assert origin.requests[-1].header("X-Greeting") == "three"
    # one reload per save: no generation 4 appears
    time.sleep(0.5)
    assert "generation 4" not in v.stderr_text()[since:]


def test_swap_and_backup_files_do_not_reload(verge, origin, tmp_path):
    v = start_dev(verge, tmp_path, origin, {"hello": HELLO % "one"},
                  [{"path": "*", "origin": "app", "triggers": {"viewer-request": "hello"}}])
    since = v.stderr_size()
    for name in (".hello.lua.swp", "hello.lua~", "#hello.lua#", ".#hello.lua", "4913", "notes.txt", "other.json"):
        (tmp_path / name).write_text("garbage =")
    time.sleep(0.8)
    assert "changed" not in v.stderr_text()[since:]
    # the watch is alive: a real save reloads
    (tmp_path / "hello.lua").write_text(HELLO % "two")
    wait_reload(v, since, 2)


def test_a_burst_of_saves_is_one_reload(verge, origin, tmp_path):
    v = start_dev(verge, tmp_path, origin, {"hello": HELLO % "one", "same": SAME},
                  [{"path": "*", "origin": "app", "triggers": {"viewer-request": "hello", "viewer-response": "same"}}])
    since = v.stderr_size()
    for i in range(5):
        (tmp_path / "hello.lua").write_text(HELLO % ("burst%d" % i))
        (tmp_path / "same.lua").write_text(SAME)
    wait_reload(v, since, 2)
    time.sleep(0.5)
    assert len(re.findall("changed; reloaded", v.stderr_text()[since:])) == 1
    assert "(and others)" in v.stderr_text()[since:]
    v.get("/")
    assert origin.requests[-1].header("X-Greeting") == "burst4"


def test_errors_keep_the_last_good_generation(verge, origin, tmp_path):
    v = start_dev(verge, tmp_path, origin, {"hello": HELLO % "good"},
                  [{"path": "*", "origin": "app", "triggers": {"viewer-request": "hello"}}])
    lua = tmp_path / "hello.lua"

    # a Lua syntax error: file:line, and the old code serves
    since = v.stderr_size()
    lua.write_text("function handler(event)\n  local x = = 1\nend\n")
    match = v.wait_for_log(r"hello\.lua changed; reload failed, generation 1 keeps serving:\n  (.*)", since=since)
    assert match.group(1).startswith("%s:2: " % lua), match.group(1)
    v.get("/")
    assert origin.requests[-1].header("X-Greeting") == "good"
    since = v.stderr_size()
    lua.write_text(HELLO % "good again")
    wait_reload(v, since, 2)

    # broken JSON: config:line:column
    config_text = open(v.config_path).read()
    since = v.stderr_size()
    with open(v.config_path, "w") as f:
        f.write(config_text.replace('"behaviors": [', '"behaviors": [,', 1))
    expected_line = config_text[:config_text.index('"behaviors": [')].count("\n") + 1
    match = v.wait_for_log(r"verge\.json changed; reload failed, generation 2 keeps serving:\n  (.*)", since=since)
    assert re.fullmatch(r"%s:%d:\d+: invalid JSON: .*" % (re.escape(v.config_path), expected_line), match.group(1)), \
        match.group(1)

    # a config error: config:line of the key it names
    since = v.stderr_size()
    with open(v.config_path, "w") as f:
        f.write(config_text.replace('"origin": "app"', '"origin": "nope"'))
    expected_line = config_text[:config_text.index('"origin": "app"')].count("\n") + 1
    match = v.wait_for_log(r"verge\.json changed; reload failed, generation 2 keeps serving:\n  (.*)", since=since)
    assert match.group(1) == '%s:%d: behaviors[0].origin: unknown origin "nope" (known: app)' % (v.config_path,
                                                                                                  expected_line)
    v.get("/")
    assert origin.requests[-1].header("X-Greeting") == "good again"

    # fixed: the next save reloads
    since = v.stderr_size()
    lua.write_text(HELLO % "fixed")
    with open(v.config_path, "w") as f:
        f.write(config_text)
    wait_reload(v, since, 3)
    v.get("/")
    assert origin.requests[-1].header("X-Greeting") == "fixed"


def test_modules_are_watched(verge, origin, tmp_path):
    (tmp_path / "lib").mkdir()
    module = tmp_path / "lib" / "greet.lua"
    module.write_text('return {word = "first"}\n')
    v = start_dev(verge, tmp_path, origin, {"main": USES_MODULE},
                  [{"path": "*", "origin": "app", "triggers": {"viewer-request": "main"}}])
    v.get("/")
    assert origin.requests[-1].header("X-Greeting") == "first"

    since = v.stderr_size()
    module.write_text('return {word = "second"}\n')
    wait_reload(v, since, 2)
    v.get("/")
    assert origin.requests[-1].header("X-Greeting") == "second"

    # a module that does not compile is reported, and nothing reloads
    since = v.stderr_size()
    module.write_text('return {word = }\n')
    match = v.wait_for_log(r"greet\.lua changed; reload failed, generation 2 keeps serving:\n  (.*)", since=since)
    assert match.group(1).startswith("%s:1: " % module), match.group(1)


def test_logs_on_stdout_give_way_to_traces(verge, origin, tmp_path):
    v = start_dev(verge, tmp_path, origin, {"hello": HELLO % "x"},
                  [{"path": "*", "origin": "app", "triggers": {"viewer-request": "hello"}}],
                  extra={"access_log": {"path": "-"}, "function_log": "-"})
    r = v.get("/quiet")
    trace_block(v, r.header("X-Amz-Cf-Id"))
    text = stdout_text(v)
    assert '"request_id"' not in text  # no access log line
    assert "START RequestId" not in text  # no function log line
    assert text.count("hello from /quiet") == 1  # the function's line, once, in its trace


# ---- X-Verge-Trace without verge dev ------------------------------------------------------------


def test_trace_header_by_config(verge, origin, tmp_path):
    functions = write_functions(tmp_path, {"hello": HELLO % "x"})
    behaviors = [{"path": "*", "origin": "app", "triggers": {"viewer-request": "hello"}}]
    plain = verge({"origins": {"app": origin_entry(origin)}, "functions": functions, "behaviors": behaviors})
    r = plain.get("/")
    assert r.status == 200 and r.header("X-Verge-Trace") is None

    traced = verge({"origins": {"app": origin_entry(origin)}, "functions": functions, "behaviors": behaviors,
                    "dev": {"trace_header": True}})
    r = traced.get("/a")
    fields = trace_fields(r)
    assert fields["id"] == r.header("X-Amz-Cf-Id")
    assert fields["viewer-request"].startswith("hello modified ")
    # plain `verge` prints no traces
    time.sleep(0.2)
    assert "GET /a -> " not in traced.stderr_text()


# ---- the command ---------------------------------------------------------------------------------


def test_usage_errors(tmp_path):
    r = run_verge("dev")
    assert r.returncode == 2
    assert "verge: dev needs -c FILE" in r.stderr
    r = run_verge("dev", "-c", str(tmp_path / "missing.json"))
    assert r.returncode == 1
    assert 'cannot read config file "%s"' % (tmp_path / "missing.json") in r.stderr
    r = run_verge("--help")
    assert "verge dev -c FILE" in r.stdout


def test_debug_country_is_on_under_dev(verge, origin, tmp_path):
    """verge dev turns dev.debug_headers on (the file may still say false)."""
    behaviors = [{"path": "*", "origin": "app", "viewer_headers": ["CloudFront-Viewer-Country"]}]
    extra = {"viewer_countries": {"127.0.0.0/8": "US"}}
    v = start_dev(verge, tmp_path, origin, {}, behaviors, extra=extra)
    r = v.get("/", headers=[("X-Verge-Debug-Country", "fr")])
    seen = origin.requests[-1]
    assert seen.header("CloudFront-Viewer-Country") == "FR"
    assert not seen.has_header("X-Verge-Debug-Country")
    # the trace shows what verge added
    block = trace_block(v, r.header("X-Amz-Cf-Id"))
    assert re.search(r"^  viewer headers +CloudFront-Viewer-Country: FR$", block, re.M), block
    v.get("/")
    assert origin.requests[-1].header("CloudFront-Viewer-Country") == "US"

    plain = verge({"origins": {"app": origin_entry(origin)}, "behaviors": behaviors, **extra})
    plain.get("/", headers=[("X-Verge-Debug-Country", "fr")])
    assert origin.requests[-1].header("CloudFront-Viewer-Country") == "US"

    off = start_dev(verge, tmp_path, origin, {}, behaviors, extra=dict(extra, dev={"debug_headers": False}))
    off.get("/", headers=[("X-Verge-Debug-Country", "fr")])
    assert origin.requests[-1].header("CloudFront-Viewer-Country") == "US"
