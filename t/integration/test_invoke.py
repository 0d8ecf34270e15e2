"""`verge invoke` (issue 6, item 1): one function, one event, a real worker with serving's limits
and serving's validation. Exit status 0 valid result, 1 the function failed, 2 validation failed,
3 bad arguments or input; --json gives one object with the same facts.

Every run here starts the real binary; each is checked for sanitizer reports on its stderr."""

import json
import math
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import SANITIZER_REPORT, VERGE_BIN, run_verge, wait_until

REQUEST_ID = "invoke-test-request-0001"
VIEWER_REQUEST_EVENT = {"Records": [{"cf": {
    "config": {"distributionDomainName": "example.com", "distributionId": "VERGE", "eventType": "viewer-request",
               "requestId": REQUEST_ID},
    "request": {"clientIp": "203.0.113.9", "method": "GET", "uri": "/index.html", "querystring": "a=1",
                "headers": {"host": [{"key": "Host", "value": "example.com"}],
                            "user-agent": [{"key": "User-Agent", "value": "curl/8.0"}]}}}}]}
USAGE_STATUS = 3


def invoke(*args, stdin=None, timeout=60):
    r = subprocess.run([VERGE_BIN, "invoke"] + [str(a) for a in args], input=stdin, capture_output=True, text=True,
                       timeout=timeout)
    assert not SANITIZER_REPORT.search(r.stderr), r.stderr
    return r


def invoke_json(*args, stdin=None, expect=0):
    r = invoke(*args, "--json", stdin=stdin)
    assert r.returncode == expect, (r.returncode, r.stdout, r.stderr)
    assert r.stderr == "", r.stderr
    return json.loads(r.stdout)


def lua(tmp_path, name, body):
    path = tmp_path / (name + ".lua")
    path.write_text(body)
    return path


def event_file(tmp_path, event=None, name="event.json"):
    path = tmp_path / name
    path.write_text(json.dumps(event or VIEWER_REQUEST_EVENT))
    return path


def human_lines(r):
    """{'result': text, 'log': [lines], 'duration': text, ...} from the human report."""
    report = {"log": []}
    for line in r.stdout.splitlines():
        key, _, value = line.partition(": ")
        if key == "log":
            report["log"].append(value)
        elif key in ("result", "duration", "memory", "validation", "validation failed", "function failed"):
            report[key] = value
    return report


def report_line(logs):
    reports = [line for line in logs if line.startswith("REPORT RequestId: ")]
    assert len(reports) == 1, logs
    return reports[0]


CHANGE_REQUEST = """
function handler(event, context)
  local request = event.Records[1].cf.request
  print("hello", 42, context.functionName, context.memoryLimitInMB)
  request.uri = "/changed"
  request.headers["x-added"] = {{value = "yes"}}
  return request
end
"""


def test_valid_result_human_report(tmp_path):
    r = invoke(lua(tmp_path, "change", CHANGE_REQUEST), "--event", event_file(tmp_path))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stderr == ""
    report = human_lines(r)
    result = json.loads(report["result"])
    assert result["uri"] == "/changed"
    assert result["headers"]["x-added"] == [{"key": "X-Added", "value": "yes"}]
    assert report["log"][:3] == ["START RequestId: %s Version: 1" % REQUEST_ID,
                                 "%s\tINFO\thello\t42\tchange\t128" % REQUEST_ID,
                                 "END RequestId: %s" % REQUEST_ID]
    assert re.fullmatch(r"REPORT RequestId: %s\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB\t"
                        r"Max Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms\t" % REQUEST_ID, report["log"][3]), report["log"]
    assert len(report["log"]) == 4
    m = re.fullmatch(r"(\d+\.\d\d) ms \(timeout 3000 ms, (\d+\.\d)%\)", report["duration"])
    assert m and float(m.group(1)) < 3000, report["duration"]
    m = re.fullmatch(r"peak (\d+\.\d\d) MB of 128 MB \((\d+\.\d)%\)", report["memory"])
    assert m and 0 < float(m.group(1)) < 128, report["memory"]
    assert report["validation"] == "ok"
    assert r.stdout.splitlines()[-1] == "validation: ok"


def test_valid_result_json(tmp_path):
    out = invoke_json(lua(tmp_path, "change", CHANGE_REQUEST), "--event", event_file(tmp_path))
    assert (out["outcome"], out["function"], out["trigger"], out["error"], out["error_kind"]) == (
        "valid", "change", "viewer-request", None, None)
    assert out["result"] == {"clientIp": "203.0.113.9", "method": "GET", "uri": "/changed", "querystring": "a=1",
                             "headers": {"host": [{"key": "Host", "value": "example.com"}],
                                         "user-agent": [{"key": "User-Agent", "value": "curl/8.0"}],
                                         "x-added": [{"key": "X-Added", "value": "yes"}]}}
    assert out["logs"][1] == "%s\tINFO\thello\t42\tchange\t128" % REQUEST_ID
    assert (out["timeout_ms"], out["memory_limit_mb"]) == (3000, 128)
    assert 0 < out["duration_ms"] < 3000
    assert isinstance(out["memory_peak_bytes"], int) and 0 < out["memory_peak_bytes"] < 128 << 20
    assert out["memory_peak_mb"] == math.ceil(out["memory_peak_bytes"] / (1 << 20))
    # the same numbers as the function log's REPORT line
    report = report_line(out["logs"])
    assert "\tMax Memory Used: %d MB\t" % out["memory_peak_mb"] in report, report
    assert "\tDuration: %.2f ms\t" % out["duration_ms"] in report, (report, out["duration_ms"])


def test_fields_left_out_keep_the_events_values(tmp_path):
    """The result printed is the request verge goes on with: a returned request without clientIp,
    method and querystring keeps the event's; a body returned without Include Body is dropped."""
    code = lua(tmp_path, "short", """
function handler(event)
  return {uri = "/short", headers = {host = {{value = "example.com"}}},
          body = {action = "replace", encoding = "text", data = "ignored"}}
end
""")
    out = invoke_json(code, "--event", event_file(tmp_path))
    assert out["result"] == {"clientIp": "203.0.113.9", "method": "GET", "querystring": "a=1", "uri": "/short",
                             "headers": {"host": [{"key": "Host", "value": "example.com"}]}}


def test_generated_response(tmp_path):
    code = lua(tmp_path, "redirect", """
function handler(event)
  return {status = 302, headers = {location = {{value = "https://example.com/new"}}}, body = "moved"}
end
""")
    out = invoke_json(code, "--event", event_file(tmp_path))
    assert out["outcome"] == "valid"
    assert out["result"] == {"status": "302", "body": "moved", "bodyEncoding": "text",
                             "headers": {"location": [{"key": "Location", "value": "https://example.com/new"}]}}


def test_function_error_exits_1(tmp_path):
    code = lua(tmp_path, "boom", 'function handler(event)\n  error("boom")\nend\n')
    r = invoke(code, "--event", event_file(tmp_path))
    assert r.returncode == 1, (r.stdout, r.stderr)
    report = human_lines(r)
    assert report["result"] == "none"
    # (Lua shortens a long chunk name to its end, "...")
    where = r"\S*/boom\.lua:2: boom"
    assert re.fullmatch(where, report["function failed"]), report
    assert str(code).endswith(report["function failed"].lstrip(".").rsplit(":2: ", 1)[0]), report
    assert any(re.fullmatch(r"%s\tERROR\t%s" % (REQUEST_ID, where), line) for line in report["log"]), report["log"]
    assert "validation" not in report
    out = invoke_json(code, "--event", event_file(tmp_path), expect=1)
    assert (out["outcome"], out["error_kind"], out["result"]) == ("function_failed", "execution", None)
    assert re.match(where + r"\nstack traceback:\n", out["error"]), out["error"]


def test_missing_handler_is_a_function_failure(tmp_path):
    code = lua(tmp_path, "nohandler", "function other(event) end\n")
    out = invoke_json(code, "--event", event_file(tmp_path), expect=1)
    assert out["error"] == ("%s: handler 'handler' is not a function (neither a global nor a field of the returned table)"
                            % code)
    assert out["logs"][0] == "INIT\tERROR\t" + out["error"]


def config_file(tmp_path, functions, name="verge.json"):
    """A config with the given functions (name -> dict with "source" and config keys)."""
    entries = {}
    for function, spec in functions.items():
        entry = {k: v for k, v in spec.items() if k != "source"}
        entry["code"] = str(lua(tmp_path, function, spec["source"]))
        entries[function] = entry
    path = tmp_path / name
    path.write_text(json.dumps({"listen": [{"address": "127.0.0.1:1"}], "origins": {"app": {"respond": {"status": 200}}},
                                "functions": entries, "behaviors": [{"path": "*", "origin": "app"}]}))
    return path


def test_timeout_exits_1_at_the_deadline(tmp_path):
    config = config_file(tmp_path, {"spin": {"source": "function handler(event)\n  while true do end\nend\n",
                                             "timeout_ms": 300}})
    started = time.monotonic()
    r = invoke("-c", config, "--function", "spin", "--event", event_file(tmp_path))
    elapsed = time.monotonic() - started
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert elapsed < 10, elapsed
    report = human_lines(r)
    assert re.fullmatch(r"the function timed out after 3\d\d ms \(killed\)", report["function failed"]), report
    assert re.fullmatch(r"peak unknown \(the worker did not answer\) of 128 MB", report["memory"]), report
    assert re.fullmatch(r"3\d\d\.\d\d ms \(timeout 300 ms, 1\d\d\.\d%\)", report["duration"]), report
    assert any(re.fullmatch(r"%s\tTask timed out after 0\.3\d seconds" % REQUEST_ID, line) for line in report["log"]), \
        report["log"]
    out = invoke_json("-c", config, "--function", "spin", "--event", event_file(tmp_path), expect=1)
    assert (out["error_kind"], out["memory_peak_bytes"], out["memory_peak_mb"], out["timeout_ms"]) == (
        "timeout", None, None, 300)
    assert out["duration_ms"] >= 300


def test_timeout_shorter_than_a_worker_start_is_a_throttle(tmp_path):
    """Every run is a cold start and, as when serving, an event waits for a worker at most its
    function's timeout: 1 ms is less than any worker takes to start."""
    config = config_file(tmp_path, {"quick": {"source": CHANGE_REQUEST, "timeout_ms": 1}})
    out = invoke_json("-c", config, "--function", "quick", "--event", event_file(tmp_path), expect=1)
    assert (out["outcome"], out["error_kind"], out["error"], out["logs"], out["result"]) == (
        "function_failed", "throttled", "no worker became free within the function's timeout", [], None)


def test_memory_limit_exits_1(tmp_path):
    code = lua(tmp_path, "bomb", 'function handler(event)\n  local s = "x"\n  while true do s = s .. s end\nend\n')
    out = invoke_json(code, "--event", event_file(tmp_path), expect=1)
    assert (out["outcome"], out["error_kind"], out["error"]) == ("function_failed", "execution", "not enough memory")
    assert out["memory_limit_mb"] == 128
    # the peak is the Lua heap's, near the cap it ran into
    assert 64 << 20 < out["memory_peak_bytes"] <= 128 << 20, out["memory_peak_bytes"]
    assert "%s\tERROR\tnot enough memory" % REQUEST_ID in out["logs"]


def test_crashed_worker_exits_1(tmp_path):
    """A worker killed during the event (as by a crash) is an execution error with the signal named."""
    code = lua(tmp_path, "sleeper", "function handler(event)\n  verge.sleep(2500)\n  return event.Records[1].cf.request\nend\n")
    process = subprocess.Popen([VERGE_BIN, "invoke", str(code), "--event", str(event_file(tmp_path))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def worker():
            try:
                with open("/proc/%d/task/%d/children" % (process.pid, process.pid)) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                return None
            for pid in pids:
                try:
                    with open("/proc/%d/comm" % pid) as f:
                        if f.read().strip() == "verge-worker":  # the worker named itself: it runs
                            return pid
                except OSError:
                    pass
            return None

        pid = wait_until(worker, 10, message="a running worker")
        time.sleep(0.5)  # it took the event (it sleeps 2.5 s in it)
        os.kill(pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, (stdout, stderr)
    assert not SANITIZER_REPORT.search(stderr), stderr
    # How it ended is known when the kernel had reaped it by the time its channel closed; when the
    # close is seen first (a busy machine), the pool says so and reaps it later.
    how = r"(the worker was killed by signal 9 \(Killed\)|the worker closed its channel \(pid %d; how it ended follows in the log\))" % pid
    assert re.search(r"^function failed: %s$" % how, stdout, re.M), stdout
    assert re.search(r"^log: RequestId: %s Error: Runtime exited with error: %s$" % (REQUEST_ID, how), stdout, re.M), stdout


def test_validation_failure_exits_2(tmp_path):
    code = lua(tmp_path, "hosty", """
function handler(event)
  local request = event.Records[1].cf.request
  request.headers["host"] = {{value = "evil.example"}}
  return request
end
""")
    r = invoke(code, "--event", event_file(tmp_path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    report = human_lines(r)
    assert report["validation failed"] == 'request.headers["host"]: read-only header'
    # the result is shown as the function returned it
    assert json.loads(report["result"])["headers"]["host"] == [{"key": "Host", "value": "evil.example"}]
    # serving's function-log line, after REPORT
    assert report["log"][-1] == '%s\tERROR\tValidation error: request.headers["host"]: read-only header' % REQUEST_ID
    assert report["log"][-2].startswith("REPORT RequestId: ")
    out = invoke_json(code, "--event", event_file(tmp_path), expect=2)
    assert (out["outcome"], out["error_kind"], out["error"]) == (
        "validation_failed", "validation", 'request.headers["host"]: read-only header')


def test_unserializable_result_exits_2(tmp_path):
    code = lua(tmp_path, "fn", "function handler(event)\n  return {uri = '/', headers = {}, x = function() end}\nend\n")
    out = invoke_json(code, "--event", event_file(tmp_path), expect=2)
    assert (out["error"], out["result"]) == ("$: cannot serialize 'function'", None)


@pytest.mark.parametrize("body, trigger, url", [
    ('request.headers["host"] = {{value = "evil.example"}}; return request', "viewer-request", "/x"),
    ("return {status = 600}", "viewer-request", "/x"),
    ("return 42", "origin-request", "/x"),
    ('response.status = "201"; return response', "viewer-response", "/x"),
], ids=["read-only-host", "status-600", "number", "viewer-response-status"])
def test_same_verdict_as_serving(verge, origin, tmp_path, body, trigger, url):
    """The function's validation error as verge serving logs it and as verge invoke reports it
    for the event of the same request are the same text."""
    source = ("function handler(event)\n  local request = event.Records[1].cf.request\n"
              "  local response = event.Records[1].cf.response\n  %s\nend\n" % body)
    code = lua(tmp_path, "bad", source)
    log_path = tmp_path / "fn.log"
    v = verge({"functions": {"bad": {"code": str(code)}}, "function_log": str(log_path),
               "behaviors": [{"path": "*", "origin": "app", "triggers": {trigger: "bad"}}]}, origin=origin)
    r = v.get(url)
    assert r.status == 502, (r.status, r.body)

    def served_verdict():
        text = log_path.read_text() if log_path.exists() else ""
        m = re.search(r"\tERROR\tValidation error: (.*)\n", text)
        return m and m.group(1)

    served = wait_until(served_verdict, 10, message="the validation error in the function log")
    event = run_verge("event", trigger, "--url", "http://127.0.0.1:%d%s" % (v.port, url))
    assert event.returncode == 0, event.stderr
    out = invoke_json(code, "--event", "-", stdin=event.stdout, expect=2)
    assert out["error"] == served


def test_event_from_stdin(tmp_path):
    out = invoke_json(lua(tmp_path, "change", CHANGE_REQUEST), "--event", "-", stdin=json.dumps(VIEWER_REQUEST_EVENT))
    assert (out["outcome"], out["result"]["uri"]) == ("valid", "/changed")


LIMITS = """
function handler(event, context)
  print(context.memoryLimitInMB, os.getenv("REALM"))
  return event.Records[1].cf.response or event.Records[1].cf.request
end
"""


@pytest.mark.parametrize("function, trigger, timeout_ms, memory_mb", [
    ("big", "viewer-request", 5000, 128),
    ("big", "origin-request", 30000, 512),
    ("big", "origin-response", 30000, 512),
    ("free", "viewer-request", 60000, 512),
    ("small", "viewer-response", 250, 128),
])
def test_config_function_limits(tmp_path, function, trigger, timeout_ms, memory_mb):
    """-c CONFIG --function NAME: the function's configured limits, capped at the trigger as the
    proxy caps them (unless relaxed), and its env."""
    config = config_file(tmp_path, {
        "big": {"source": LIMITS, "timeout_ms": 60000, "memory_mb": 512, "env": {"REALM": "staff"}},
        "free": {"source": LIMITS, "timeout_ms": 60000, "memory_mb": 512, "limits": "relaxed", "env": {"REALM": "staff"}},
        "small": {"source": "function handler(event) return event.Records[1].cf.response end\n", "timeout_ms": 250},
    })
    event = run_verge("event", trigger, "--url", "http://example.com/p")
    assert event.returncode == 0, event.stderr
    out = invoke_json("-c", config, "--function", function, "--trigger", trigger, "--event", "-", stdin=event.stdout)
    assert (out["outcome"], out["function"], out["trigger"]) == ("valid", function, trigger), out
    assert (out["timeout_ms"], out["memory_limit_mb"]) == (timeout_ms, memory_mb)
    assert "\tMemory Size: %d MB\t" % memory_mb in report_line(out["logs"])
    if function != "small":
        assert out["logs"][1] == "verge-event-000000000000\tINFO\t%d\tstaff" % memory_mb


def test_pipeline_from_verge_event(tmp_path):
    """verge event … | verge invoke … --event -: the origin-request event, its origin kept in the
    result when the function leaves it alone."""
    code = lua(tmp_path, "tag", """
function handler(event)
  local request = event.Records[1].cf.request
  request.headers["x-origin-token"] = {{value = request.origin.custom.domainName}}
  return request
end
""")
    pipeline = "%s event origin-request --url 'https://origin.example:8443/a?b=c' | %s invoke %s --event - --json" % (
        VERGE_BIN, VERGE_BIN, code)
    r = subprocess.run(pipeline, shell=True, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert not SANITIZER_REPORT.search(r.stderr), r.stderr
    out = json.loads(r.stdout)
    assert (out["outcome"], out["trigger"], out["timeout_ms"]) == ("valid", "origin-request", 3000)
    result = out["result"]
    assert result["headers"]["x-origin-token"] == [{"key": "X-Origin-Token", "value": "origin.example"}]
    assert (result["uri"], result["querystring"]) == ("/a", "b=c")
    assert result["origin"]["custom"]["port"] == 8443 and result["origin"]["custom"]["protocol"] == "https"


# ---- error paths: exit 3, one line on stderr, nothing on stdout -----------------------------------


def bad_input(tmp_path, *args, stdin=None):
    r = invoke(*args, stdin=stdin)
    assert r.returncode == USAGE_STATUS, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    return r.stderr.splitlines()


def test_bad_event_json(tmp_path):
    code = lua(tmp_path, "ok", CHANGE_REQUEST)
    event = tmp_path / "broken.json"
    event.write_text('{"Records": [')
    assert bad_input(tmp_path, code, "--event", event) == [
        "verge invoke: bad event in %s: $: not a JSON text (empty, cut short or malformed)" % event]
    event.write_text('{"Records": []}')
    assert bad_input(tmp_path, code, "--event", event) == [
        "verge invoke: bad event in %s: Records[0].cf.config: required field missing" % event]
    assert bad_input(tmp_path, code, "--event", "-", stdin="not json") == [
        "verge invoke: bad event in standard input: $: not a JSON text (empty, cut short or malformed)"]


def test_bad_request_id(tmp_path):
    event = json.loads(json.dumps(VIEWER_REQUEST_EVENT))
    event["Records"][0]["cf"]["config"]["requestId"] = "x" * 64
    assert bad_input(tmp_path, lua(tmp_path, "ok", CHANGE_REQUEST), "--event", event_file(tmp_path, event)) == [
        "verge invoke: bad event in %s: config.requestId: at most 63 characters, no control characters"
        % (tmp_path / "event.json")]


def test_unknown_trigger(tmp_path):
    assert bad_input(tmp_path, lua(tmp_path, "ok", CHANGE_REQUEST), "--trigger", "viewer-reqest", "--event",
                     event_file(tmp_path)) == [
        'verge invoke: unknown trigger "viewer-reqest" (known: viewer-request, origin-request, origin-response, '
        'viewer-response)']


def test_trigger_other_than_the_events(tmp_path):
    event = event_file(tmp_path)
    assert bad_input(tmp_path, lua(tmp_path, "ok", CHANGE_REQUEST), "--trigger", "origin-request", "--event", event) == [
        "verge invoke: the event in %s is for viewer-request (config.eventType), not origin-request" % event]


def test_missing_lua_file(tmp_path):
    assert bad_input(tmp_path, tmp_path / "missing.lua", "--event", event_file(tmp_path)) == [
        'verge invoke: cannot read "%s": No such file or directory' % (tmp_path / "missing.lua")]


def test_relative_lua_file_is_read_from_the_working_directory(tmp_path):
    lua(tmp_path, "here", CHANGE_REQUEST)
    r = subprocess.run([VERGE_BIN, "invoke", "here.lua", "--event", str(event_file(tmp_path)), "--json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["function"] == "here"


def test_missing_event_file(tmp_path):
    assert bad_input(tmp_path, lua(tmp_path, "ok", CHANGE_REQUEST), "--event", tmp_path / "none.json") == [
        "verge invoke: cannot read the event from %s: No such file or directory" % (tmp_path / "none.json")]


def test_unknown_function_name(tmp_path):
    config = config_file(tmp_path, {"auth": {"source": CHANGE_REQUEST}, "tag": {"source": CHANGE_REQUEST}})
    assert bad_input(tmp_path, "-c", config, "--function", "auht", "--event", event_file(tmp_path)) == [
        'verge invoke: unknown function "auht" in %s (known: auth, tag)' % config]


def test_lua_syntax_error(tmp_path):
    code = lua(tmp_path, "syntax", "function handler(event)\n  return event +* 1\nend\n")
    assert bad_input(tmp_path, code, "--event", event_file(tmp_path)) == [
        "verge invoke: %s:2: unexpected symbol near '*'" % code]
    # in a config, the config's own message (the key names the function)
    config = config_file(tmp_path, {"syntax": {"source": "function handler(event)\n  return event +* 1\nend\n"}})
    assert bad_input(tmp_path, "-c", config, "--function", "syntax", "--event", event_file(tmp_path)) == [
        "verge invoke: functions.syntax.code: %s:2: unexpected symbol near '*'" % code]


def test_invalid_config(tmp_path):
    config = tmp_path / "broken.json"
    config.write_text('{"origins": {}, "behaviors": []}')
    lines = bad_input(tmp_path, "-c", config, "--function", "f", "--event", event_file(tmp_path))
    assert "verge invoke: listen: required key is missing" in lines, lines
    assert all(line.startswith("verge invoke: ") for line in lines), lines


@pytest.mark.parametrize("args, message", [
    ([], "a function is needed: FILE.lua, or -c CONFIG --function NAME"),
    (["f.lua"], "--event FILE is needed (- reads the event from standard input)"),
    (["f.lua", "--event"], "--event needs a value"),
    (["f.lua", "g.lua", "--event", "-"], 'one function file only, got "f.lua" and "g.lua"'),
    (["f.lua", "-c", "verge.json", "--function", "f", "--event", "-"],
     "either FILE.lua or -c CONFIG --function NAME, not both"),
    (["-c", "verge.json", "--event", "-"], "-c CONFIG needs --function NAME"),
    (["f.lua", "--function", "f", "--event", "-"], "--function NAME goes with -c CONFIG"),
    (["f.lua", "--event", "-", "--bogus"], 'unknown option "--bogus"'),
])
def test_bad_arguments(tmp_path, args, message):
    lines = bad_input(tmp_path, *args)
    assert lines[0] == "verge invoke: " + message, lines
    assert lines[1].startswith("usage: verge invoke FILE.lua --event FILE|-"), lines
    assert "exit status: 0 valid result, 1 the function failed, 2 validation failed, 3 bad arguments or input" in lines[-1]
