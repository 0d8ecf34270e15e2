"""Edge functions (Lambda@Edge contract, /work/shared/spec/lambda-edge.md §1-§4) at the four
triggers: what each trigger may change and where the change lands (origin request, cache key,
stored object, viewer response), generated responses, origin switching, result validation (502
LambdaValidationError), the function log (START / INFO / END / REPORT), the context object, env,
require, and the per-function metrics.

Functions are Lua files written into tmp_path. Every config made by fn_config() also has a
"/__probe" behavior whose viewer-request function "probe" answers at once: a probe request is a
flush barrier for the function log (one background writer, lines in order), so "no START for
request X" is checked only after the probe's START has been written.
"""

import collections
import os
import re
import threading
import time

import pytest

from conftest import HIT, MISS, HTTPConn, https_origin, origin_entry, wait_until

GENERATED = "LambdaGeneratedResponse from verge"
VALIDATION = "LambdaValidationError from verge"
PROBE_PATH = "/__probe"
LOG_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"

PROBE_SOURCE = """
function handler(event, context)
  return {status = "200", body = "probe"}
end
"""


def lua_handler(body):
    """A Lua function file whose handler has `cf`, `request` and `response` (nil at request
    triggers) in scope and runs `body`."""
    return """
function handler(event, context)
  local cf = event.Records[1].cf
  local request = cf.request
  local response = cf.response
%s
end
""" % body


def fn_config(tmp_path, origin, functions, triggers, cache=None, extra=None):
    """A config: origin "app", functions {name: lua source or dict(source=..., env=...)}, the
    "*" behavior with `triggers` (and "cache": `cache` when given), plus the probe behavior."""
    functions = dict(functions, probe=PROBE_SOURCE)
    functions_config = {}
    for name, spec in functions.items():
        if isinstance(spec, str):
            spec = {"source": spec}
        path = tmp_path / ("%s.lua" % name)
        path.write_text(spec["source"])
        entry = {"code": str(path), "handler": "handler"}
        entry.update({k: v for k, v in spec.items() if k != "source"})
        functions_config[name] = entry
    behavior = {"path": "*", "origin": "app", "triggers": triggers}
    if cache is not None:
        behavior["cache"] = cache
    config = {
        "origins": {"app": origin_entry(origin)},
        "functions": functions_config,
        "function_log": str(tmp_path / "fn.log"),
        "behaviors": [{"path": PROBE_PATH, "origin": "app", "triggers": {"viewer-request": "probe"}}, behavior],
    }
    config.update(extra or {})
    return config


class FunctionLog:
    """The function log: lines `<time>\\t<function>\\t<text>`."""

    def __init__(self, path):
        self.path = str(path)

    def lines(self):
        try:
            with open(self.path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.split("\n"):
            if line:
                parts = line.split("\t", 2)
                assert len(parts) == 3, "function log line without time and function: %r" % line
                out.append(tuple(parts))
        return out

    def texts(self, function=None):
        return [text for _, fn, text in self.lines() if function is None or fn == function]

    def starts(self, function=None, request_id=None):
        """Request ids of the START lines (of `function`, for `request_id`)."""
        ids = []
        for text in self.texts(function):
            m = re.match(r"START RequestId: (\S+) Version: ", text)
            if m and (request_id is None or m.group(1) == request_id):
                ids.append(m.group(1))
        return ids

    def flush(self, v):
        """Waits until everything logged before now is in the file (see the module docstring)."""
        r = v.get(PROBE_PATH)
        assert r.status == 200 and r.body == b"probe", (r, r.headers)
        probe_id = r.header("x-amz-cf-id")
        assert probe_id
        wait_until(lambda: self.starts("probe", probe_id), 5, message="probe START %s in %s" % (probe_id, self.path))

    def wait_for(self, pattern, timeout=5.0):
        regex = re.compile(pattern)

        def find():
            for line in self.lines():
                m = regex.search("\t".join(line))
                if m:
                    return m
            return None

        return wait_until(find, timeout, message="function log line /%s/; log:\n%s" % (pattern, self.dump()))

    def dump(self):
        return "\n".join("\t".join(l) for l in self.lines()[-40:])


def cf_id(r):
    value = r.header("x-amz-cf-id")
    assert value, r.headers
    return value


# ---- viewer-request --------------------------------------------------------------------------


def test_viewer_request_changes_reach_the_origin(verge, origin, tmp_path):
    source = lua_handler("""
  request.uri = "/rewritten" .. request.uri
  request.querystring = "a=1&b=" .. request.querystring:gsub("=", "")
  request.headers["x-added"] = {{key = "X-Added", value = "yes"}, {value = "twice"}}
  request.headers["x-drop"] = nil
  request.headers["x-keep"][1].value = "changed"
  return request
""")
    v = verge(fn_config(tmp_path, origin, {"vreq": source}, {"viewer-request": "vreq"}))
    r = v.get("/p?q=2", [("X-Drop", "1"), ("X-Keep", "orig")])
    assert r.status == 200, (r, r.headers)
    assert len(origin.requests) == 1
    seen = origin.requests[0]
    assert seen.path == "/rewritten/p" and seen.query == "a=1&b=q2", seen.target
    assert seen.header_values("x-added") == ["yes", "twice"], seen.headers
    assert any(n == "X-Added" for n, _ in seen.headers), seen.headers  # the key as given
    assert not seen.has_header("x-drop"), seen.headers
    assert seen.header("x-keep") == "changed", seen.headers


def test_viewer_request_uri_is_the_cache_key(verge, origin, tmp_path):
    source = lua_handler("""
  if request.uri:sub(1, 6) == "/alias" then request.uri = "/canonical" end
  return request
""")
    origin.route("/canonical", body="the canonical object")
    v = verge(fn_config(tmp_path, origin, {"vreq": source}, {"viewer-request": "vreq"}, cache={}))
    first = v.get("/alias-one")
    assert (first.status, first.body, first.header("x-cache")) == (200, b"the canonical object", MISS), first.headers
    second = v.get("/alias-two")
    assert (second.status, second.body, second.header("x-cache")) == (200, b"the canonical object", HIT), second.headers
    assert [r.path for r in origin.requests] == ["/canonical"]


def test_viewer_request_generated_response(verge, origin, tmp_path):
    vreq = lua_handler("""
  if request.headers["x-generate"] then
    return {status = "202", statusDescription = "Made Here",
            headers = {["x-gen"] = {{key = "X-Gen", value = "1"}}, ["content-type"] = {{value = "text/plain"}}},
            body = "generated body"}
  end
  return request
""")
    vresp = lua_handler("""
  response.headers["x-vresp"] = {{key = "X-Vresp", value = "ran"}}
  return response
""")
    origin.route("/g", body="from origin")
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"vreq": vreq, "vresp": vresp},
                        {"viewer-request": "vreq", "viewer-response": "vresp"}, cache={}))
    ids = []
    for _ in range(2):
        r = v.get("/g", [("X-Generate", "1")])
        assert (r.status, r.body) == (202, b"generated body"), (r, r.headers)
        assert r.reason == "Made Here", r.reason
        assert r.header("x-gen") == "1" and r.header("content-type") == "text/plain", r.headers
        assert r.header("x-cache") == GENERATED, r.headers
        assert not r.has_header("x-vresp"), r.headers  # viewer-response does not run
        ids.append(cf_id(r))
    assert origin.requests == []
    log.flush(v)
    for request_id in ids:  # the function ran for each: nothing was cached
        assert log.starts("vreq", request_id) == [request_id], log.dump()
        assert log.starts("vresp", request_id) == [], log.dump()
    # Not stored under the key either: the same URI without the generating header goes to the origin.
    r = v.get("/g")
    assert (r.status, r.body, r.header("x-cache")) == (200, b"from origin", MISS), r.headers
    assert r.header("x-vresp") == "ran", r.headers
    assert len(origin.requests) == 1


def test_viewer_request_generated_response_base64_numeric_status_default_key(verge, origin, tmp_path):
    vreq = lua_handler("""
  return {status = 404, headers = {["content-type"] = {{value = "application/octet-stream"}},
                                   ["x-multi-part-name"] = {{value = "a"}}},
          bodyEncoding = "base64", body = "AAEC/w=="}
""")
    v = verge(fn_config(tmp_path, origin, {"vreq": vreq}, {"viewer-request": "vreq"}))
    r = v.get("/b64")
    assert (r.status, r.body) == (404, b"\x00\x01\x02\xff"), (r, r.headers, r.body)
    assert r.header("x-cache") == GENERATED, r.headers
    names = [n for n, _ in r.headers]
    assert "Content-Type" in names and "X-Multi-Part-Name" in names, names  # a missing key is capitalised
    assert r.header("content-type") == "application/octet-stream", r.headers
    assert origin.requests == []


def test_execution_error_and_on_error_continue(verge, origin, tmp_path):
    """Not a validation error: a function that raises gives 503 LambdaExecutionError, unless the
    trigger says "on_error": "continue" (then the request goes on unchanged)."""
    boom = lua_handler('error("boom")')
    config = fn_config(tmp_path, origin, {"boom": boom}, {"viewer-request": "boom"})
    config["behaviors"].insert(1, {"path": "/go-on/*", "origin": "app",
                                   "triggers": {"viewer-request": {"function": "boom", "on_error": "continue"}}})
    v = verge(config)
    r = v.get("/fails")
    assert r.status == 503 and r.header("x-cache") == "LambdaExecutionError from verge", (r, r.headers)
    assert origin.requests == []
    r = v.get("/go-on/x")
    assert r.status == 200, (r, r.headers)
    assert [q.path for q in origin.requests] == ["/go-on/x"]


# ---- origin-request --------------------------------------------------------------------------


def test_origin_request_runs_only_on_a_miss(verge, origin, tmp_path):
    oreq = lua_handler("""
  request.headers["x-oreq"] = {{key = "X-Oreq", value = "added"}}
  return request
""")
    origin.route("/m", body="object")
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"oreq": oreq}, {"origin-request": "oreq"}, cache={}))
    first = v.get("/m")
    assert (first.status, first.header("x-cache")) == (200, MISS), first.headers
    assert origin.requests[0].header("x-oreq") == "added", origin.requests[0].headers
    log.wait_for(r"\toreq\tSTART RequestId: %s " % re.escape(cf_id(first)))
    second = v.get("/m")
    assert (second.status, second.body, second.header("x-cache")) == (200, b"object", HIT), second.headers
    log.flush(v)
    assert log.starts("oreq", cf_id(second)) == [], log.dump()
    assert log.starts("oreq") == [cf_id(first)], log.dump()
    assert len(origin.requests) == 1


def test_origin_request_generated_response_is_cached(verge, origin, tmp_path):
    oreq = lua_handler("""
  return {status = 200, headers = {["x-gen"] = {{key = "X-Gen", value = "oreq"}},
                                   ["cache-control"] = {{key = "Cache-Control", value = "max-age=60"}}},
          body = "made by origin-request"}
""")
    vresp = lua_handler("""
  response.headers["x-vresp"] = {{key = "X-Vresp", value = "ran"}}
  return response
""")
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"oreq": oreq, "vresp": vresp},
                        {"origin-request": "oreq", "viewer-response": "vresp"}, cache={}))
    first = v.get("/o")
    assert (first.status, first.body) == (200, b"made by origin-request"), (first, first.headers)
    assert first.header("x-cache") == GENERATED, first.headers
    assert first.header("x-gen") == "oreq" and first.header("x-vresp") == "ran", first.headers
    second = v.get("/o")
    assert (second.status, second.body) == (200, b"made by origin-request"), (second, second.headers)
    assert second.header("x-cache") == HIT, second.headers
    assert second.header("x-gen") == "oreq" and second.header("x-vresp") == "ran", second.headers
    assert origin.requests == []
    log.flush(v)
    assert log.starts("oreq") == [cf_id(first)], log.dump()
    assert log.starts("vresp") == [cf_id(first), cf_id(second)], log.dump()


def test_origin_request_host_is_the_origins(verge, origin, tmp_path):
    oreq = lua_handler("""
  request.headers["x-seen-host"] = {{key = "X-Seen-Host", value = request.headers["host"][1].value}}
  request.headers["x-seen-domain"] = {{key = "X-Seen-Domain", value = request.origin.custom.domainName}}
  return request
""")
    v = verge(fn_config(tmp_path, origin, {"oreq": oreq}, {"origin-request": "oreq"}))
    r = v.get("/h", [("Host", "viewer.example")])
    assert r.status == 200, (r, r.headers)
    seen = origin.requests[0]
    assert seen.header("x-seen-host") != "viewer.example", seen.headers
    assert seen.header("x-seen-host") == seen.header("host"), seen.headers
    assert seen.header("x-seen-host").split(":")[0] == "127.0.0.1" == seen.header("x-seen-domain"), seen.headers


def switch_origin_source(port, protocol="http", domain="127.0.0.1"):
    # CloudFront wants a DNS name; verge also takes an IPv4 address (local origins).
    return lua_handler("""
  request.origin = {custom = {domainName = "%s", port = %d, protocol = "%s", path = "",
                              sslProtocols = {"TLSv1.2"}, readTimeout = 5, keepaliveTimeout = 5,
                              customHeaders = {["x-c"] = {{key = "X-C", value = "1"}}}}}
  request.headers["host"] = {{key = "Host", value = "%s:%d"}}
  return request
""" % (domain, port, protocol, domain, port))


@pytest.mark.parametrize("domain", ["127.0.0.1", "localhost"])
def test_origin_request_switches_the_origin(verge, origin, origin_factory, tmp_path, domain):
    second = origin_factory()
    second.route("/s", body="from the second origin")
    v = verge(fn_config(tmp_path, origin, {"oreq": switch_origin_source(second.port, domain=domain)}, {"origin-request": "oreq"}))
    r = v.get("/s")
    assert (r.status, r.body) == (200, b"from the second origin"), (r, r.headers)
    assert len(second.requests) == 1 and second.requests[0].path == "/s"
    assert second.requests[0].header("x-c") == "1", second.requests[0].headers
    assert second.requests[0].header("host") == "%s:%d" % (domain, second.port), second.requests[0].headers
    assert origin.requests == []


def test_origin_request_switches_to_an_https_origin(verge, origin, pki, tmp_path):
    """A function may choose an https origin not in the config: verified against the system
    trust store, which SSL_CERT_FILE points at the test CA here."""
    second = https_origin(pki, "local")
    try:
        second.route("/s", body="from the https origin")
        config = fn_config(tmp_path, origin, {"oreq": switch_origin_source(second.port, "https", domain="localhost")},
                           {"origin-request": "oreq"})
        v = verge(config, env=dict(os.environ, SSL_CERT_FILE=pki("ca.pem")))
        r = v.get("/s")
        assert (r.status, r.body) == (200, b"from the https origin"), (r, r.headers)
        assert [x.path for x in second.requests] == ["/s"] and second.server_names == ["localhost"]
        assert origin.requests == []
    finally:
        second.stop()


def test_origin_request_https_origin_that_is_not_trusted_answers_502(verge, origin, pki, tmp_path):
    second = https_origin(pki, "self")
    try:
        config = fn_config(tmp_path, origin, {"oreq": switch_origin_source(second.port, "https", domain="localhost")},
                           {"origin-request": "oreq"})
        v = verge(config)
        since = v.stderr_size()
        r = v.get("/s")
        assert r.status == 502, (r, r.headers)
        v.wait_for_log(r"origin function:https:localhost:%d: TLS handshake with localhost failed: certificate verify failed"
                       % second.port, since=since)
        assert origin.requests == [] and second.requests == []
    finally:
        second.stop()


def test_origin_request_https_to_a_plain_http_origin_times_out_in_the_handshake(verge, origin, origin_factory, tmp_path):
    second = origin_factory()  # reads the ClientHello as the start of a request head and waits for the rest
    v = verge(fn_config(tmp_path, origin, {"oreq": switch_origin_source(second.port, "https")}, {"origin-request": "oreq"}))
    r = v.get("/s")
    assert (r.status, r.body) == (504, b"verge: origin TLS handshake timeout\n"), (r, r.headers)
    assert origin.requests == [] and second.requests == []


# ---- origin-response -------------------------------------------------------------------------


def test_origin_response_sees_the_origins_status_and_headers(verge, origin, tmp_path):
    ores = lua_handler("""
  response.headers["x-seen-status"] = {{key = "X-Seen-Status", value = response.status}}
  response.headers["x-seen-o"] = {{key = "X-Seen-O", value = response.headers["x-o"][1].value}}
  return response
""")
    v = verge(fn_config(tmp_path, origin, {"ores": ores}, {"origin-response": "ores"}))
    r = v.get("/nf?status=404&header=X-O:abc")
    assert r.status == 404, (r, r.headers)
    assert r.header("x-seen-status") == "404" and r.header("x-seen-o") == "abc", r.headers
    assert r.header("x-o") == "abc", r.headers


def test_origin_response_changes_status_and_headers(verge, origin, tmp_path):
    ores = lua_handler("""
  response.status = "200"
  response.statusDescription = "Fixed"
  response.headers["x-fixed"] = {{key = "X-Fixed", value = "yes"}}
  response.headers["x-remove-me"] = nil
  return response
""")
    v = verge(fn_config(tmp_path, origin, {"ores": ores}, {"origin-response": "ores"}))
    r = v.get("/broken?status=503&header=X-Remove-Me:1")
    assert (r.status, r.reason) == (200, "Fixed"), (r, r.reason, r.headers)
    assert r.header("x-fixed") == "yes" and not r.has_header("x-remove-me"), r.headers


def test_origin_response_changes_are_what_is_cached(verge, origin, tmp_path):
    ores = lua_handler("""
  response.headers["x-ores"] = {{key = "X-Ores", value = "stored"}}
  response.headers["x-remove-me"] = nil
  response.headers["cache-control"] = {{key = "Cache-Control", value = "max-age=60"}}
  return response
""")
    origin.route("/c", body="cacheable", header=["X-Remove-Me: 1", "Cache-Control: no-store"])
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"ores": ores}, {"origin-response": "ores"}, cache={}))
    first = v.get("/c")
    assert (first.status, first.body, first.header("x-cache")) == (200, b"cacheable", MISS), first.headers
    assert first.header("x-ores") == "stored" and not first.has_header("x-remove-me"), first.headers
    # The origin said no-store; the function's max-age=60 is what the cache decided on.
    second = v.get("/c")
    assert (second.status, second.body, second.header("x-cache")) == (200, b"cacheable", HIT), second.headers
    assert second.header("x-ores") == "stored" and not second.has_header("x-remove-me"), second.headers
    assert second.header("cache-control") == "max-age=60", second.headers
    assert len(origin.requests) == 1
    log.flush(v)
    assert log.starts("ores") == [cf_id(first)], log.dump()


@pytest.mark.parametrize("body_lua, expected", [
    ('response.body = "replaced by the function"', b"replaced by the function"),
    ('response.body = "aGVsbG8gYmFzZTY0"; response.bodyEncoding = "base64"', b"hello base64"),
    ('response.body = ""', b""),
])
def test_origin_response_replaces_the_body(verge, origin, tmp_path, body_lua, expected):
    ores = lua_handler("""
  %s
  return response
""" % body_lua)
    v = verge(fn_config(tmp_path, origin, {"ores": ores}, {"origin-response": "ores"}))
    r = v.get("/b?size=5000")
    assert r.status == 200, (r, r.headers)
    assert r.body == expected, r.body[:100]
    if r.framing == "length":
        assert r.header("content-length") == str(len(expected)), r.headers


# ---- viewer-response -------------------------------------------------------------------------

VRESP_ADD = lua_handler("""
  response.headers["x-vresp"] = {{key = "X-Vresp", value = "ran"}}
  return response
""")


def test_viewer_response_runs_on_hit_and_miss(verge, origin, tmp_path):
    origin.route("/v", body="object")
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"vresp": VRESP_ADD}, {"viewer-response": "vresp"}, cache={}))
    first = v.get("/v")
    second = v.get("/v")
    assert (first.header("x-cache"), second.header("x-cache")) == (MISS, HIT), (first.headers, second.headers)
    assert first.header("x-vresp") == "ran" and second.header("x-vresp") == "ran", (first.headers, second.headers)
    assert second.body == b"object"
    log.flush(v)
    assert log.starts("vresp") == [cf_id(first), cf_id(second)], log.dump()


HEADER_EDITS = lua_handler("""
  response.headers["x-change"][1].value = "changed"
  response.headers["x-drop"] = nil
  response.headers["x-empty"] = {}
  response.headers["set-cookie"][2].value = "b=3"
  response.headers["x-new"] = {{key = "X-New", value = "added"}}
  return response
""")


@pytest.mark.parametrize("trigger", ["viewer-response", "origin-response"])
def test_response_header_edits_leave_the_other_headers_as_they_were(verge, origin, tmp_path, trigger):
    """A function that edits a few of many response headers: workers send such results as changes
    against the event's headers (hooks/README.md, "Header changes") once the map is a template,
    i.e. from the second event on. Every response, miss or hit, must carry exactly the origin's
    other headers, repeated ones in their order, and the edits."""
    origin.route("/edits", body="x", headers=[
        "Set-Cookie: a=1", "X-Keep: kept", "X-Change: before", "Set-Cookie: b=2", "X-Drop: dropped",
        "Cache-Control: max-age=60", "X-Padding: %s" % ("p" * 40), "X-Empty: e", "X-Edge-Origin-Shield: kept"])
    v = verge(fn_config(tmp_path, origin, {"edits": HEADER_EDITS}, {trigger: "edits"}, cache={}))
    for i in range(4):
        r = v.get("/edits?n=%d" % (i % 2))  # two objects: misses, then hits of each
        assert r.status == 200, (r, r.headers)
        names = [n.lower() for n, _ in r.headers]
        assert [value for n, value in r.headers if n.lower() == "set-cookie"] == ["a=1", "b=3"], r.headers
        assert (r.header("x-keep"), r.header("x-change"), r.header("x-new")) == ("kept", "changed", "added"), r.headers
        assert "x-drop" not in names and "x-empty" not in names, r.headers
        assert names.count("x-change") == 1 and names.count("x-keep") == 1, r.headers
        # a header functions never see (X-Edge-*) stays on the message
        assert r.header("x-edge-origin-shield") == "kept", r.headers
        assert r.header("x-padding") == "p" * 40 and r.header("cache-control") == "max-age=60", r.headers
        assert r.body == b"x"


REQUEST_HEADER_EDITS = lua_handler("""
  request.headers["x-change"][1].value = "changed"
  request.headers["x-drop"] = nil
  request.headers["x-new"] = {{key = "X-New", value = "added"}}
  return request
""")


@pytest.mark.parametrize("trigger", ["viewer-request", "origin-request"])
def test_request_header_edits_leave_the_other_headers_as_they_were(verge, origin, tmp_path, trigger):
    """The request side of the test above: from the second event on the worker sends the edits
    as changes; the origin must see the viewer's other headers, repeated ones in order, and the
    edits, every time (no cache: each request reaches the origin)."""
    v = verge(fn_config(tmp_path, origin, {"edits": REQUEST_HEADER_EDITS}, {trigger: "edits"}))
    sent = [("Cookie", "a=1"), ("X-Keep", "kept"), ("X-Change", "before"), ("Cookie", "b=2"), ("X-Drop", "dropped"),
            ("X-Padding", "p" * 40)]
    for i in range(4):
        r = v.get("/edits/%d" % i, headers=sent)
        assert r.status == 200, (r, r.headers)
        seen = origin.requests[-1]
        names = [n.lower() for n, _ in seen.headers]
        assert seen.header_values("cookie") == ["a=1", "b=2"], seen.headers
        assert (seen.header("x-keep"), seen.header("x-change"), seen.header("x-new")) == ("kept", "changed", "added"), seen.headers
        assert "x-drop" not in names and names.count("x-change") == 1 and seen.header("x-padding") == "p" * 40, seen.headers


@pytest.mark.parametrize("status", [404, 500])
def test_viewer_response_skipped_for_origin_errors(verge, origin, tmp_path, status):
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"vresp": VRESP_ADD}, {"viewer-response": "vresp"}))
    r = v.get("/e?status=%d" % status)
    assert r.status == status and not r.has_header("x-vresp"), (r, r.headers)
    ok = v.get("/ok")
    assert ok.status == 200 and ok.header("x-vresp") == "ran", ok.headers  # the function does run otherwise
    log.flush(v)
    assert log.starts("vresp") == [cf_id(ok)], log.dump()


# ---- validation ------------------------------------------------------------------------------

ADD = 'request.headers["%s"] = {{key = "%s", value = "x"}}; return request'
RESPONSE_ADD = 'response.headers["%s"] = {{key = "%s", value = "x"}}; return response'

# (id, trigger, handler body, the field named, what the rule must contain)
VALIDATION_CASES = [
    ("disallowed-x-cache", "viewer-request", ADD % ("x-cache", "X-Cache"), 'request.headers["x-cache"]', "disallowed"),
    ("disallowed-connection", "viewer-request", ADD % ("connection", "Connection"), 'request.headers["connection"]',
     "disallowed"),
    ("disallowed-at-origin-response", "origin-response", RESPONSE_ADD % ("x-edge-thing", "X-Edge-Thing"),
     'response.headers["x-edge-thing"]', "disallowed"),
    ("read-only-host", "viewer-request", 'request.headers["host"] = {{key = "Host", value = "other.example"}}; return request',
     'request.headers["host"]', "read-only"),
    ("read-only-via", "origin-response", RESPONSE_ADD % ("via", "Via"), 'response.headers["via"]', "read-only"),
    ("read-only-transfer-encoding", "origin-response", RESPONSE_ADD % ("transfer-encoding", "Transfer-Encoding"),
     'response.headers["transfer-encoding"]', "read-only"),
    ("read-only-transfer-encoding-request", "origin-request", ADD % ("transfer-encoding", "Transfer-Encoding"),
     'request.headers["transfer-encoding"]', "read-only"),
    ("uri-without-slash", "viewer-request", 'request.uri = "noslash"; return request', "request.uri", "'/'"),
    ("querystring-space", "viewer-request", 'request.querystring = "a=1 b"; return request', "request.querystring", "spaces"),
    ("status-99", "viewer-request", 'return {status = "99"}', "response.status", "200-599"),
    ("status-600", "viewer-request", 'return {status = 600}', "response.status", "200-599"),
    ("status-abc", "viewer-request", 'return {status = "abc"}', "response.status", "status"),
    ("generated-over-40kb", "viewer-request", 'return {status = "200", body = string.rep("x", 41 * 1024)}', "response", "40 KB"),
    ("invalid-base64", "viewer-request", 'return {status = "200", body = "!!not base64!!", bodyEncoding = "base64"}',
     "response.body", "base64"),
    ("status-at-viewer-response", "viewer-response", 'response.status = "201"; return response', "response.status",
     "viewer-response"),
    ("origin-ipv6-address", "origin-request",
     'request.origin.custom.domainName = "::1"; return request', "request.origin.custom.domainName", "IP address"),
    ("origin-port-range", "origin-request",
     'request.origin.custom.port = 1000; return request', "request.origin.custom.port", "1024-65535"),
    ("number-from-origin-response", "origin-response", "return 42", "$", "object"),
    ("nil-from-origin-response", "origin-response", "return nil", "$", "object"),
    ("request-from-origin-response", "origin-response", "return request", "response", "response object required"),
    ("number-from-viewer-request", "viewer-request", "return 42", "$", "object"),
]


@pytest.mark.parametrize("trigger, body, field_expected, rule_part", [c[1:] for c in VALIDATION_CASES],
                         ids=[c[0] for c in VALIDATION_CASES])
def test_validation_error(verge, origin, tmp_path, trigger, body, field_expected, rule_part):
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"bad": lua_handler(body)}, {trigger: "bad"}))
    since = v.stderr_size()
    r = v.get("/x")
    assert r.status == 502, (r, r.headers, r.body[:200])
    assert r.header("x-cache") == VALIDATION, r.headers
    request_id = cf_id(r)
    # verge's log names the request, the function, the trigger, the field and the rule.
    m = v.wait_for_log(r"%s[^\n]*function bad \(%s\)[^\n]*?: (\S+): ([^\n]+)" % (re.escape(request_id), re.escape(trigger)),
                       since=since)
    field, rule = m.group(1), m.group(2).strip()
    assert field == field_expected and rule_part in rule, (field, rule)
    line = log.wait_for(r"\tbad\t%s\tERROR\tValidation error: (.*)$" % re.escape(request_id))
    assert line.group(1) == "%s: %s" % (field, rule), line.group(0)
    if trigger in ("viewer-request", "origin-request"):
        assert origin.requests == []  # the request went no further


def test_unserializable_result_is_a_validation_error_counted_once(verge, origin, tmp_path):
    """A result the worker cannot encode (a Lua function in it) answers 502 like any invalid
    result, with field "$"; the pool saw it first and counts it, once."""
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"bad": lua_handler("request.uri = function() end; return request")},
                        {"viewer-request": "bad"}))
    labels = {"function": "bad", "trigger": "viewer-request"}
    since = v.stderr_size()
    r = v.get("/x")
    assert (r.status, r.header("x-cache")) == (502, VALIDATION), r.headers
    request_id = cf_id(r)
    v.wait_for_log(r"request %s: function bad \(viewer-request\) returned an invalid result: \$: cannot serialize "
                   r"'function'" % re.escape(request_id), since=since)
    log.wait_for(r"\tbad\t%s\tERROR\t.*cannot serialize 'function'" % re.escape(request_id))
    metrics = wait_until(lambda: (lambda m: m if m.get("verge_function_invocations_total", 0, **labels) >= 1 else None)(
        v.metrics()), 5, message="the invocation counted")
    assert metrics.get("verge_function_errors_total", 0, kind="validation", **labels) == 1, metrics.text
    assert origin.requests == []


def test_validation_error_is_not_cached(verge, origin, tmp_path):
    """A failed origin-response stores nothing: the next request reaches the origin again."""
    ores = lua_handler(RESPONSE_ADD % ("x-cache", "X-Cache"))
    origin.route("/nc", header="Cache-Control: max-age=60")
    v = verge(fn_config(tmp_path, origin, {"ores": ores}, {"origin-response": "ores"}, cache={}))
    for _ in range(2):
        r = v.get("/nc")
        assert (r.status, r.header("x-cache")) == (502, VALIDATION), r.headers
    assert len(origin.requests) == 2


# ---- logs ------------------------------------------------------------------------------------


def test_function_log_lines(verge, origin, tmp_path):
    vreq = lua_handler("""
  print("hello from vreq", request.uri)
  return request
""")
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"vreq": vreq}, {"viewer-request": "vreq"}, extra={"threads": 1}))
    ids = []
    for i in range(4):
        r = v.get("/l%d" % i)
        assert r.status == 200, (r, r.headers)
        ids.append(cf_id(r))
    log.flush(v)
    lines = [l for l in log.lines() if l[1] == "vreq"]
    for when, _, _ in lines:
        assert re.fullmatch(LOG_TIME, when), when
    for i, request_id in enumerate(ids):
        mine = [text for _, _, text in lines if request_id in text]
        assert len(mine) == 4, (request_id, mine)
        assert re.fullmatch(r"START RequestId: %s Version: \d+" % re.escape(request_id), mine[0]), mine[0]
        assert mine[1] == "%s\tINFO\thello from vreq\t/l%d" % (request_id, i) or \
            mine[1] == "%s\tINFO\thello from vreq /l%d" % (request_id, i), mine[1]
        assert mine[2] == "END RequestId: %s" % request_id, mine[2]
        report = (r"REPORT RequestId: %s\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB\t"
                  r"Max Memory Used: \d+ MB\t(Init Duration: \d+\.\d\d ms\t)?" % re.escape(request_id))
        m = re.fullmatch(report, mine[3])
        assert m, mine[3]
        # One loop thread, sequential requests: one worker, cold only for its first event.
        assert bool(m.group(1)) == (i == 0), (i, mine[3])


def test_print_of_several_values_and_no_output_before_start(verge, origin, tmp_path):
    """print() output belongs to its event: it sits between that event's START and END."""
    vreq = lua_handler("""
  print("one")
  print("two")
  return request
""")
    log = FunctionLog(tmp_path / "fn.log")
    v = verge(fn_config(tmp_path, origin, {"vreq": vreq}, {"viewer-request": "vreq"}))
    r = v.get("/p")
    request_id = cf_id(r)
    log.flush(v)
    mine = [text for _, fn, text in log.lines() if fn == "vreq" and request_id in text]
    kinds = [t.split("\t")[-1] if "\tINFO\t" in t else t.split(" ")[0] for t in mine]
    assert kinds == ["START", "one", "two", "END", "REPORT"], mine


# ---- context, env, require -------------------------------------------------------------------


def test_context_env_and_require(verge, origin, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.lua").write_text('local M = {}\nfunction M.greet(name) return "hi " .. name end\nreturn M\n')
    source = """
local util = require("lib.util")
local function set(request, name, value)
  request.headers[name] = {{value = tostring(value)}}
end
return {handler = function(event, context)
  local request = event.Records[1].cf.request
  set(request, "x-request-id", context.awsRequestId)
  set(request, "x-function-name", context.functionName)
  set(request, "x-memory", context.memoryLimitInMB)
  set(request, "x-remaining", context.getRemainingTimeInMillis())
  set(request, "x-env-k", os.getenv("K"))
  set(request, "x-env-path", os.getenv("PATH"))
  set(request, "x-greet", util.greet("there"))
  set(request, "x-event-request-id", event.Records[1].cf.config.requestId)
  set(request, "x-event-type", event.Records[1].cf.config.eventType)
  return request
end}
"""
    v = verge(fn_config(tmp_path, origin, {"vreq": {"source": source, "env": {"K": "configured value"}, "timeout_ms": 3000,
                                                    "memory_mb": 128}},
                        {"viewer-request": "vreq"}))
    r = v.get("/ctx")
    assert r.status == 200, (r, r.headers, r.body[:300])
    seen = origin.requests[0]
    assert seen.header("x-request-id") == cf_id(r), seen.headers
    assert seen.header("x-event-request-id") == cf_id(r), seen.headers
    assert seen.header("x-event-type") == "viewer-request", seen.headers
    assert seen.header("x-function-name") == "vreq", seen.headers
    assert seen.header("x-memory") == "128", seen.headers
    remaining = float(seen.header("x-remaining"))
    assert 0 < remaining <= 3000, seen.headers
    assert seen.header("x-env-k") == "configured value", seen.headers
    assert seen.header("x-env-path") == "nil", seen.headers
    assert seen.header("x-greet") == "hi there", seen.headers
    assert any(n == "X-Greet" for n, _ in seen.headers), seen.headers  # an omitted key is capitalised


# ---- metrics ---------------------------------------------------------------------------------


def test_function_metrics(verge, origin, tmp_path):
    vreq = lua_handler("""
  if request.headers["x-bad"] then
    request.headers["x-cache"] = {{key = "X-Cache", value = "forged"}}
  end
  return request
""")
    v = verge(fn_config(tmp_path, origin, {"vreq": vreq}, {"viewer-request": "vreq"}))
    labels = {"function": "vreq", "trigger": "viewer-request"}
    before = v.metrics()
    assert v.get("/one").status == 200
    assert v.get("/two").status == 200
    bad = v.get("/three", [("X-Bad", "1")])
    assert (bad.status, bad.header("x-cache")) == (502, VALIDATION), bad.headers

    def settled():
        m = v.metrics()
        return m if m.get("verge_function_invocations_total", 0, **labels) >= 3 else None

    after = wait_until(settled, 5, message="3 invocations of vreq")

    def delta(name, **extra):
        return after.get(name, 0, **labels, **extra) - before.get(name, 0, **labels, **extra)

    assert delta("verge_function_invocations_total") == 3, after.text
    assert delta("verge_function_errors_total", kind="validation") == 1, after.text
    assert delta("verge_function_duration_seconds_count") == 3, after.text
    assert after.get("verge_function_cold_starts_total", 0, **labels) >= 1, after.text
    assert after.types.get("verge_function_invocations_total") == "counter"
    assert after.types.get("verge_function_duration_seconds") == "histogram"


def test_origin_request_passing_the_configured_origin_back_is_valid(verge, origin, tmp_path):
    """The configured origin handed back unchanged is not checked against CloudFront's limits on
    chosen origins (here a 2 s read timeout, which would fail "readTimeout must be 4-60")."""
    oreq = lua_handler("""
  request.headers["x-passed"] = {{value = "1"}}
  return request
""")
    config = fn_config(tmp_path, origin, {"oreq": oreq}, {"origin-request": "oreq"})
    config["origins"]["app"]["read_timeout_ms"] = 2000
    v = verge(config)
    r = v.get("/p")
    assert r.status == 200, (r, r.headers, r.body)
    assert origin.requests[0].header("x-passed") == "1"


def test_dotted_handler_name(verge, origin, tmp_path):
    source = """
local M = {api = {}}
function M.api.handle(event, context)
  local request = event.Records[1].cf.request
  request.headers["x-dotted"] = {{value = "yes"}}
  return request
end
return M
"""
    config = fn_config(tmp_path, origin, {"dotted": {"source": source, "handler": "api.handle"}}, {"viewer-request": "dotted"})
    v = verge(config)
    r = v.get("/d")
    assert r.status == 200, (r, r.headers, r.body)
    assert origin.requests[0].header("x-dotted") == "yes"


def test_worker_gauge(verge, origin, tmp_path):
    vreq = lua_handler("  return request\n")
    v = verge(fn_config(tmp_path, origin, {"vreq": vreq}, {"viewer-request": "vreq"}))
    assert v.get("/w").status == 200
    assert v.metrics().get("verge_function_workers", 0) >= 1


@pytest.mark.parametrize("body, expected_status, expected_cache", [
    # Something that cannot be sent back is an invalid result, not a failed function.
    ("  request.headers['x-f'] = {{value = print}}\n  return request\n", 502, "LambdaValidationError from verge"),
    ("  return 'a string'\n", 502, "LambdaValidationError from verge"),
    ("  return {status = 200.5}\n", 502, "LambdaValidationError from verge"),
    # An empty table is fine where a list is due (Lua cannot tell {} from []).
    ("  request.headers['x-empty'] = {}\n  return request\n", 200, None),
])
def test_result_shapes(verge, origin, tmp_path, body, expected_status, expected_cache):
    vreq = lua_handler(body)
    v = verge(fn_config(tmp_path, origin, {"vreq": vreq}, {"viewer-request": "vreq"}))
    r = v.get("/shape")
    assert r.status == expected_status, (r, r.headers, r.body)
    if expected_cache:
        assert r.header("x-cache") == expected_cache, r.headers


def test_viewer_response_may_drop_every_header(verge, origin, tmp_path):
    vresp = """
function handler(event, context)
  local response = event.Records[1].cf.response
  response.headers = {}
  return response
end
"""
    v = verge(fn_config(tmp_path, origin, {"vresp": vresp}, {"viewer-response": "vresp"}))
    r = v.get("/drop")
    assert r.status == 200, (r, r.headers, r.body)
    assert r.header("x-cache") is not None  # verge's own headers stay


def test_a_result_too_large_for_the_channel_is_invalid(verge, origin, tmp_path):
    """A result over the channel's 8 MiB frame bound is an invalid result (502), and the worker
    and its channel stay usable for the next event."""
    vreq = lua_handler("""
  if request.uri == "/big" then
    return {status = "200", body = string.rep("x", 9 * 1024 * 1024)}
  end
  return request
""")
    config = fn_config(tmp_path, origin, {"vreq": {"source": vreq, "memory_mb": 256, "limits": "relaxed"}},
                       {"viewer-request": "vreq"})
    v = verge(config)
    r = v.get("/big")
    assert (r.status, r.header("x-cache")) == (502, VALIDATION), (r, r.headers)
    assert v.get("/small").status == 200


def test_pipelined_events_with_large_include_bodies(verge, origin, tmp_path):
    """Frames too large for one socket write (30 KB Include Body events) from many clients at
    once: batches stay in step with the worker's answers, nothing waits for a deadline."""
    vreq = lua_handler("  return request\n")
    config = fn_config(tmp_path, origin, {"vreq": vreq},
                       {"viewer-request": {"function": "vreq", "include_body": True}}, extra={"threads": 1})
    v = verge(config)
    body = os.urandom(30000)
    statuses = []
    deadline = time.monotonic() + 4

    def client():
        conn = HTTPConn(v.port)
        try:
            while time.monotonic() < deadline:
                statuses.append(conn.request("POST", "/u", body=body).status)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses and set(statuses) == {200}, collections.Counter(statuses)
    assert not any("timed out" in text for text in FunctionLog(tmp_path / "fn.log").texts())
