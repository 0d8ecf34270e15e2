"""Edge-function failures and the worker pool (DESIGN.md "Edge functions run in separate worker
processes"; spec lambda-edge.md: 503 LambdaExecutionError / LambdaLimitExceeded).

A function can loop forever, exhaust its memory, crash, try to leave its sandbox or raise: that
one invocation is answered 503, every other request goes on (checked with concurrent traffic on a
healthy-function path and a no-function path while the bad invocation runs), verge itself keeps
its pid, and the next invocation of the same function is served by a working worker. Also:
"on_error": "continue", throttling at workers.max_concurrency, scale-out and idle scale-in of
worker processes, workers replaced on reload, the worker sandbox as seen from /proc, and a
function syntax error at startup.

Worker processes are found from outside: children of verge's pid whose /proc/PID/cmdline is
"verge\\0worker\\0". No timing thresholds are asserted; elapsed times are printed (pytest -s).
"""

import json
import os
import signal
import threading
import time

import pytest

from conftest import concurrent_requests, free_port, origin_entry, run_verge, wait_until

EXECUTION_ERROR = "LambdaExecutionError from verge"
LIMIT_EXCEEDED = "LambdaLimitExceeded from verge"

# The handler runs `failure` only when the request has "X-Fail" (so the next request without it
# shows the function is served again), and returns the request unchanged otherwise.
FUNCTION_TEMPLATE = """\
function handler(event, context)
  local request = event.Records[1].cf.request
  if request.headers["x-fail"] then
    %s
  end
  return request
end
"""

HEALTHY_FUNCTION = """\
function handler(event, context)
  local request = event.Records[1].cf.request
  request.headers["x-healthy"] = {{key = "X-Healthy", value = "yes"}}
  return request
end
"""


# ---- helpers ----------------------------------------------------------------------------------


def write_function(tmp_path, name, text):
    path = tmp_path / (name + ".lua")
    path.write_text(text)
    return str(path)


def failing_function(tmp_path, failure, name="bad"):
    return write_function(tmp_path, name, FUNCTION_TEMPLATE % failure)


def function_config(tmp_path, origin, bad_code, bad_settings=None, bad_trigger="bad", workers=None):
    """Behaviors: /bad/* runs function "bad", /ok/* a healthy function, everything else none.
    The function log goes to tmp_path/fn.log."""
    bad = {"code": bad_code, "timeout_ms": 1000, "memory_mb": 128}
    bad.update(bad_settings or {})
    config = {
        "origins": {"app": origin_entry(origin)},
        "functions": {
            "bad": bad,
            "healthy": {"code": write_function(tmp_path, "healthy", HEALTHY_FUNCTION), "timeout_ms": 1000},
        },
        "function_log": str(tmp_path / "fn.log"),
        "behaviors": [
            {"path": "/bad/*", "origin": "app", "triggers": {"viewer-request": bad_trigger}},
            {"path": "/ok/*", "origin": "app", "triggers": {"viewer-request": "healthy"}},
            {"path": "*", "origin": "app"},
        ],
    }
    if workers is not None:
        config["workers"] = workers
    return config


def children(pid):
    """[(child pid, state, cmdline bytes)] of every process whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        # comm (field 2) may hold spaces and parentheses: split after its closing parenthesis.
        fields = stat.rsplit(")", 1)[1].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == pid:
            found.append((int(entry), state, cmdline))
    return found


def worker_pids(verge_pid):
    """Live worker processes of verge (zombies have an empty cmdline and are not counted)."""
    return sorted(p for p, state, cmdline in children(verge_pid) if cmdline == b"verge\0worker\0" and state != "Z")


def origin_requests_paths(origin):
    return [r.path for r in origin.requests]


def function_log(tmp_path):
    try:
        with open(tmp_path / "fn.log", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait_for_function_log(tmp_path, needle, timeout=5.0):
    return wait_until(lambda: needle in function_log(tmp_path), timeout,
                      message="%r in the function log:\n%s" % (needle, function_log(tmp_path)[-3000:]))


def function_metric(v, name, function="bad", **labels):
    return v.metrics().get(name, 0, function=function, trigger="viewer-request", **labels)


def wait_for_metric(v, name, at_least, function="bad", **labels):
    """Polls /metrics until the sample reaches `at_least` (verge may count just after answering)."""
    return wait_until(lambda: function_metric(v, name, function, **labels) >= at_least, 5,
                      message="%s{function=%s,%r} >= %s" % (name, function, labels, at_least))


class BackgroundTraffic:
    """Requests from a thread, alternating between `targets`, until stopped; records statuses."""

    def __init__(self, v, targets=("/ok/x", "/plain/x")):
        self.v = v
        self.targets = targets
        self.results = []  # (target, status, X-Cache, body)
        self.errors = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        try:
            while not self.stop_event.is_set() and i < 20000:
                target = self.targets[i % len(self.targets)]
                r = self.v.get(target)
                self.results.append((target, r.status, r.header("x-cache"), r.body))
                i += 1
        except BaseException as e:  # noqa: B036 - reported by check()
            self.errors.append(e)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: len(self.results) >= 2 or self.errors, 5, message="background traffic started")
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(15)

    def count_during(self, seconds):
        """Waits `seconds` and returns how many requests completed meanwhile."""
        before = len(self.results)
        time.sleep(seconds)
        return len(self.results) - before

    def check(self, origin):
        """Every background request got 200 from the origin, and the healthy function ran on /ok."""
        assert not self.thread.is_alive(), "background traffic still running"
        assert not self.errors, self.errors
        assert self.results, "no background request completed"
        bad = [r for r in self.results if r[1] != 200]
        assert not bad, "background requests failed during the function failure: %r" % bad[:5]
        for target, status, _, body in self.results:
            assert body == ("origin: GET %s\n" % target).encode(), (target, body)
        healthy = [q.header("x-healthy") for q in origin.requests if q.path == "/ok/x"]
        assert healthy and set(healthy) == {"yes"}, healthy


def bad_request_in_thread(v, target="/bad/x", headers=(("X-Fail", "1"),)):
    """Sends one request to the failing function from a thread; returns (thread, box) where box
    gets "response" (or "error") and "elapsed"."""
    box = {}

    def run():
        start = time.monotonic()
        try:
            with v.conn(timeout=30) as c:
                box["response"] = c.request("GET", target, list(headers) + [("Connection", "close")])
        except BaseException as e:  # noqa: B036 - reported by the test
            box["error"] = e
        box["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def assert_execution_error(response):
    assert response.status == 503, (response, response.headers, response.body)
    assert response.header("x-cache") == EXECUTION_ERROR, response.headers


def assert_served_again(v, origin):
    """The function's next invocation (no X-Fail) is answered 200 from the origin; verge is alive."""
    before = len(origin.requests)
    r = v.get("/bad/next")
    assert r.status == 200, (r, r.headers, r.body)
    assert r.body == b"origin: GET /bad/next\n"
    assert len(origin.requests) == before + 1
    assert v.proc.poll() is None, "verge exited"


def run_failure_with_traffic(v, origin):
    """The bad request runs while background traffic goes to /ok and /plain; returns the response."""
    assert v.get("/bad/warm").status == 200  # a warm worker of "bad" exists
    with BackgroundTraffic(v) as traffic:
        t, box = bad_request_in_thread(v)
        t.join(30)
        assert not t.is_alive(), "the failing request got no answer within 30 s"
        served = len(traffic.results)
        traffic.count_during(0.2)
    traffic.check(origin)
    assert "error" not in box, box["error"]
    print("failing request answered after %.3f s; %d background requests by then" % (box["elapsed"], served))
    assert_execution_error(box["response"])
    return box["response"]


# ---- failure modes ----------------------------------------------------------------------------


def test_endless_loop_is_killed_at_the_deadline(verge, origin, tmp_path):
    code = failing_function(tmp_path, "while true do end")
    v = verge(function_config(tmp_path, origin, code, {"timeout_ms": 500}))
    pid = v.pid
    run_failure_with_traffic(v, origin)
    assert "/bad/x" not in origin_requests_paths(origin)
    wait_for_function_log(tmp_path, "Task timed out after")
    wait_for_metric(v, "verge_function_errors_total", 1, kind="timeout")
    assert function_metric(v, "verge_function_errors_total", kind="execution") == 0
    assert_served_again(v, origin)
    assert v.pid == pid and v.proc.poll() is None


def test_memory_bomb_is_an_execution_error(verge, origin, tmp_path):
    bomb = """local t = {}
    local s = string.rep("x", 1024 * 1024)
    for i = 1, 100000 do t[i] = s .. i end"""
    code = failing_function(tmp_path, bomb)
    v = verge(function_config(tmp_path, origin, code, {"memory_mb": 128, "timeout_ms": 5000}))
    run_failure_with_traffic(v, origin)
    assert "/bad/x" not in origin_requests_paths(origin)
    wait_for_function_log(tmp_path, "not enough memory")
    wait_for_metric(v, "verge_function_errors_total", 1, kind="execution")
    assert function_metric(v, "verge_function_errors_total", kind="timeout") == 0
    assert_served_again(v, origin)


def test_events_queued_behind_a_killed_worker_run_on_another(verge, origin, tmp_path):
    """A fast function's events are pipelined: several wait on the worker behind the one it runs.
    When that one loops and the worker is killed at its deadline, the events behind it go back
    to the pool (with their frames) and are answered by a new worker, each with its own request."""
    code = failing_function(tmp_path, "while true do end")
    config = function_config(tmp_path, origin, code, {"timeout_ms": 700})
    config["threads"] = 1
    v = verge(config)
    for i in range(30):  # quick events: the pool starts pipelining them
        assert v.get("/bad/warm%d" % i).status == 200
    started = function_log(tmp_path).count("START RequestId")
    t, box = bad_request_in_thread(v)
    wait_until(lambda: function_log(tmp_path).count("START RequestId") > started, 10, message="the looping event began")
    queued = concurrent_requests(v.port, "/bad/queued", 6)
    t.join(30)
    assert not t.is_alive() and "error" not in box, box
    assert_execution_error(box["response"])
    for r in queued:
        assert (r.response.status, r.response.body) == (200, b"origin: GET /bad/queued\n"), (r.response, r.response.body)
    print("queued events answered after %s s" % ", ".join("%.3f" % (r.done_at - r.sent_at) for r in queued))
    assert origin_requests_paths(origin).count("/bad/queued") == 6
    assert "/bad/x" not in origin_requests_paths(origin)
    wait_for_function_log(tmp_path, "Task timed out after")
    # They waited behind the loop and began only after the kill (START is logged when an event
    # becomes a worker's first): not answered by some other worker meanwhile.
    log = function_log(tmp_path)
    assert log[log.index("Task timed out after"):].count("START RequestId") >= 6, log[-3000:]
    assert_served_again(v, origin)


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
def test_crashed_worker_is_an_execution_error(verge, origin, tmp_path, sig):
    code = failing_function(tmp_path, "verge.sleep(3000)")
    # A sanitizer build would report the SIGSEGV sent below as a crash (on the stderr the worker
    # shares with verge, which the teardown checks): let the signal kill the worker plainly.
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":handle_segv=0"}
    v = verge(function_config(tmp_path, origin, code, {"timeout_ms": 5000}), env=env)
    assert worker_pids(v.pid) == [], "a worker before any function ran"
    t, box = bad_request_in_thread(v)
    sleeping = wait_until(lambda: worker_pids(v.pid), 10, message="a worker for the sleeping function")
    assert len(sleeping) == 1, sleeping
    wait_for_function_log(tmp_path, "START RequestId")  # the worker took the event: it is running it
    with BackgroundTraffic(v) as traffic:
        traffic.count_during(0.2)
        killed_at = time.monotonic()
        os.kill(sleeping[0], sig)
        t.join(30)
        answered_after = time.monotonic() - killed_at
        traffic.count_during(0.2)
    traffic.check(origin)
    assert not t.is_alive() and "error" not in box, box
    print("answered %.3f s after the signal (the function would have slept 3 s)" % answered_after)
    assert_execution_error(box["response"])
    wait_for_function_log(tmp_path, "Runtime exited with error")
    wait_for_metric(v, "verge_function_errors_total", 1, kind="execution")
    assert function_metric(v, "verge_function_errors_total", kind="timeout") == 0
    wait_until(lambda: sleeping[0] not in worker_pids(v.pid), 5, message="the crashed worker reaped")
    assert_served_again(v, origin)
    assert sleeping[0] not in worker_pids(v.pid)


@pytest.mark.parametrize("escape", ['os.exit(1)', 'os.execute("true")', 'io.open("/etc/passwd")'])
def test_sandbox_escape_attempts_fail_the_invocation(verge, origin, tmp_path, escape):
    code = failing_function(tmp_path, escape)
    v = verge(function_config(tmp_path, origin, code))
    run_failure_with_traffic(v, origin)
    assert "/bad/x" not in origin_requests_paths(origin)
    wait_for_function_log(tmp_path, "(a nil value)")  # "attempt to call field 'exit' (a nil value)" and the like
    wait_for_metric(v, "verge_function_errors_total", 1, kind="execution")
    assert_served_again(v, origin)


def test_raised_error_is_logged_with_location_and_traceback(verge, origin, tmp_path):
    code = failing_function(tmp_path, 'error("boom")')
    v = verge(function_config(tmp_path, origin, code))
    run_failure_with_traffic(v, origin)
    line = FUNCTION_TEMPLATE.splitlines().index("    %s") + 1
    wait_for_function_log(tmp_path, "bad.lua:%d: boom" % line)
    wait_for_function_log(tmp_path, "stack traceback")
    wait_for_metric(v, "verge_function_errors_total", 1, kind="execution")
    assert_served_again(v, origin)


# ---- on_error: continue -----------------------------------------------------------------------


@pytest.mark.parametrize("failure,kind", [('error("boom")', "execution"), ("while true do end", "timeout")])
def test_on_error_continue_passes_the_request_on_unchanged(verge, origin, tmp_path, failure, kind):
    # The function changes the request before failing: the origin must get the original.
    code = failing_function(tmp_path, 'request.headers["x-added"] = {{key = "X-Added", value = "1"}}\n'
                                      '    request.uri = "/changed"\n    ' + failure)
    config = function_config(tmp_path, origin, code, {"timeout_ms": 500},
                             bad_trigger={"function": "bad", "on_error": "continue"})
    v = verge(config)
    for i in range(2):
        start = time.monotonic()
        r = v.get("/bad/x%d" % i, headers=[("X-Fail", "1")])
        print("continued request %d answered after %.3f s" % (i, time.monotonic() - start))
        assert r.status == 200, (r, r.headers, r.body)
        assert r.body == ("origin: GET /bad/x%d\n" % i).encode()
    seen = [q for q in origin.requests if q.path.startswith("/bad/")]
    assert [q.path for q in seen] == ["/bad/x0", "/bad/x1"]
    for q in seen:
        assert q.header("x-added") is None, q.headers
        assert q.header("x-fail") == "1"
    wait_for_metric(v, "verge_function_continued_total", 2)
    wait_for_metric(v, "verge_function_errors_total", 2, kind=kind)
    assert_served_again(v, origin)


# ---- throttling, scale out and in -------------------------------------------------------------


SLEEPER = """\
function handler(event, context)
  verge.sleep(%d)
  return event.Records[1].cf.request
end
"""


def sleeper_config(tmp_path, origin, sleep_ms, workers=None, timeout_ms=5000):
    config = {
        "origins": {"app": origin_entry(origin)},
        "functions": {"bad": {"code": write_function(tmp_path, "sleeper", SLEEPER % sleep_ms), "timeout_ms": timeout_ms}},
        "function_log": str(tmp_path / "fn.log"),
        "behaviors": [{"path": "/bad/*", "origin": "app", "triggers": {"viewer-request": "bad"}},
                      {"path": "*", "origin": "app"}],
    }
    if workers is not None:
        config["workers"] = workers
    return config


def test_throttled_past_max_concurrency(verge, origin, tmp_path):
    v = verge(sleeper_config(tmp_path, origin, 1000, workers={"max_concurrency": 2}))
    start = time.monotonic()
    results = concurrent_requests(v.port, "/bad/x", 6, timeout=30)
    print("6 concurrent requests took %.3f s" % (time.monotonic() - start))
    statuses = [t.response.status for t in results]
    print("statuses:", statuses)
    ok = [t.response for t in results if t.response.status == 200]
    throttled = [t.response for t in results if t.response.status != 200]
    assert len(ok) >= 2, statuses
    assert throttled, statuses
    for r in throttled:
        assert r.status == 503 and r.header("x-cache") == LIMIT_EXCEEDED, (r, r.headers)
    wait_for_metric(v, "verge_function_throttles_total", 1)
    assert function_metric(v, "verge_function_throttles_total") == len(throttled)
    # a function-less path is never throttled
    assert v.get("/plain").status == 200


def test_scale_out_and_in(verge, origin, tmp_path):
    v = verge(sleeper_config(tmp_path, origin, 200, workers={"idle_timeout_s": 1}))
    start = time.monotonic()
    results = concurrent_requests(v.port, "/bad/x", 100, timeout=60)
    elapsed = time.monotonic() - start
    statuses = [t.response.status for t in results]
    workers = worker_pids(v.pid)
    print("100 concurrent requests to a 200 ms function: %.3f s; %d worker processes afterwards" % (elapsed, len(workers)))
    assert statuses == [200] * 100, [s for s in statuses if s != 200]
    assert 5 < len(workers) <= 100, workers
    wait_for_metric(v, "verge_function_invocations_total", 100)
    assert function_metric(v, "verge_function_throttles_total") == 0
    # scale in: idle for idle_timeout_s, every worker exits (and is reaped: no zombie child left)
    idle_start = time.monotonic()
    wait_until(lambda: not worker_pids(v.pid), 10, interval=0.1,
               message="no worker process left (have %r)" % worker_pids(v.pid))
    wait_until(lambda: not children(v.pid), 5, interval=0.1, message="no child process (zombies) left")
    print("all workers gone %.3f s after the burst" % (time.monotonic() - idle_start))
    assert function_metric(v, "verge_function_concurrent_executions") == 0
    # and a new request gets a new worker
    assert v.get("/bad/again").status == 200


def test_scale_out_keeps_workers_before_idle_timeout(verge, origin, tmp_path):
    """The default idle timeout (60 s) keeps the burst's workers (so the scale-in above is the
    idle timeout at work, not workers exiting after every event)."""
    v = verge(sleeper_config(tmp_path, origin, 200))
    results = concurrent_requests(v.port, "/bad/x", 20, timeout=60)
    assert [t.response.status for t in results] == [200] * 20
    after = worker_pids(v.pid)
    assert len(after) > 1, after
    time.sleep(1.5)
    assert worker_pids(v.pid) == after


# ---- reload -----------------------------------------------------------------------------------


VERSIONED = """\
function handler(event, context)
  local request = event.Records[1].cf.request
  request.headers["x-v"] = {{key = "X-V", value = "%s"}}
  return request
end
"""

SYNTAX_ERROR = "function handler(event, context)\n  return event.Records[1].cf.request\nend end\n"  # line 3


def versioned_config(tmp_path, origin, path, workers=None):
    """Function "v" (a viewer-request trigger on every path) adds X-V to the request the origin gets."""
    config = {
        "origins": {"app": origin_entry(origin)},
        "functions": {"v": {"code": path, "timeout_ms": 1000}},
        "function_log": str(tmp_path / "fn.log"),
        "behaviors": [{"path": "*", "origin": "app", "triggers": {"viewer-request": "v"}}],
    }
    if workers is not None:
        config["workers"] = workers
    return config


def versions_seen(v, origin, count, concurrent=False):
    """Sends `count` requests; returns the X-V values the origin received for them."""
    before = len(origin.requests)
    if concurrent:
        results = concurrent_requests(v.port, "/v", count)
        assert [t.response.status for t in results] == [200] * count, [t.response for t in results]
    else:
        for _ in range(count):
            r = v.get("/v")
            assert r.status == 200, (r, r.headers, r.body)
    return [q.header("x-v") for q in origin.requests[before:]]


def test_reload_replaces_the_function_code(verge, origin, tmp_path):
    path = write_function(tmp_path, "v", VERSIONED % "1")
    v = verge(versioned_config(tmp_path, origin, path))
    assert versions_seen(v, origin, 4, concurrent=True) == ["1"] * 4
    write_function(tmp_path, "v", VERSIONED % "2")
    text = v.reload(via="sighup")
    assert "config generation 2 loaded" in text, text
    assert versions_seen(v, origin, 6) == ["2"] * 6
    assert versions_seen(v, origin, 4, concurrent=True) == ["2"] * 4
    # a syntax error: the reload fails and says file:line; generation 2 stays
    write_function(tmp_path, "v", SYNTAX_ERROR)
    text = v.reload(via="sighup")
    assert "config reload failed" in text, text
    assert "%s:3:" % path in text, text
    assert v.metrics().get("verge_config_generation") == 2


def test_reload_retires_the_old_generation_workers(verge, origin, tmp_path):
    path = write_function(tmp_path, "v", VERSIONED % "1")
    v = verge(versioned_config(tmp_path, origin, path))
    assert versions_seen(v, origin, 4, concurrent=True) == ["1"] * 4
    generation1 = set(worker_pids(v.pid))
    assert generation1, "no worker after requests"
    write_function(tmp_path, "v", VERSIONED % "2")
    assert "config generation 2 loaded" in v.reload(via="sighup")
    start = time.monotonic()
    wait_until(lambda: not (generation1 & set(worker_pids(v.pid))), 5,
               message="generation 1 workers %r gone (live: %r)" % (generation1, worker_pids(v.pid)))
    print("generation 1 workers gone %.3f s after the reload" % (time.monotonic() - start))
    assert versions_seen(v, origin, 4, concurrent=True) == ["2"] * 4


def test_reload_lets_an_event_in_flight_finish_on_the_old_code(verge, origin, tmp_path):
    """A reload does not cut an event short: the event a generation-1 worker is running when
    the reload comes finishes there (on the old code), new requests run the new code, and the
    old worker exits afterwards. (The slow event sleeps 700 ms, under the function's 1000 ms.)"""
    slow = VERSIONED.replace("  return request", "  if request.uri == '/slow' then verge.sleep(700) end\n  return request")
    path = write_function(tmp_path, "v", slow % "1")
    v = verge(versioned_config(tmp_path, origin, path))
    result = {}

    def slow_request():
        result["response"] = v.get("/slow")

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_for_function_log(tmp_path, "START RequestId")  # a worker runs the slow event
    running = set(worker_pids(v.pid))
    write_function(tmp_path, "v", slow % "2")
    assert "config generation 2 loaded" in v.reload(via="sighup")
    assert thread.is_alive(), "the slow event ended before the reload: the test proves nothing"
    assert versions_seen(v, origin, 2) == ["2", "2"]
    thread.join(10)
    assert result["response"].status == 200, result["response"]
    slow_seen = [q.header("x-v") for q in origin.requests if q.path == "/slow"]
    assert slow_seen == ["1"], slow_seen
    wait_until(lambda: not (running & set(worker_pids(v.pid))), 5, message="the generation 1 worker exited")


def test_failed_reload_keeps_serving_the_loaded_code_on_new_workers(verge, origin, tmp_path):
    path = write_function(tmp_path, "v", VERSIONED % "1")
    v = verge(versioned_config(tmp_path, origin, path, workers={"idle_timeout_s": 1}))
    assert versions_seen(v, origin, 2) == ["1"] * 2
    write_function(tmp_path, "v", SYNTAX_ERROR)
    text = v.reload(via="sighup")
    assert "config reload failed" in text and "%s:3:" % path in text, text
    # the warm workers exit when idle; the next requests need new workers of generation 1
    wait_until(lambda: not worker_pids(v.pid), 10, interval=0.1, message="idle workers gone")
    assert versions_seen(v, origin, 4, concurrent=True) == ["1"] * 4


def test_reload_over_http_reports_a_function_syntax_error(verge, origin, tmp_path):
    path = write_function(tmp_path, "v", VERSIONED % "1")
    v = verge(versioned_config(tmp_path, origin, path))
    assert versions_seen(v, origin, 1) == ["1"]
    write_function(tmp_path, "v", "function handler(event, context)\n  local x = = 1\nend\n")
    r = v.reload()
    assert r.status != 200, (r, r.body)
    assert ("%s:2:" % path).encode() in r.body, r.body
    assert v.metrics().get("verge_config_generation") == 1


# ---- the sandbox, seen from outside -----------------------------------------------------------


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_worker_sandbox_from_outside(verge, origin, tmp_path):
    code = failing_function(tmp_path, "verge.sleep(3000)")
    v = verge(function_config(tmp_path, origin, code, {"timeout_ms": 5000}))
    t, box = bad_request_in_thread(v)
    pids = wait_until(lambda: worker_pids(v.pid), 10, message="a worker for the sleeping function")
    # A worker is hardened before it says READY; START is logged when it takes the event.
    wait_for_function_log(tmp_path, "START RequestId")
    assert len(pids) == 1, pids
    pid = pids[0]
    fds = sorted(int(fd) for fd in os.listdir("/proc/%d/fd" % pid))
    status = proc_status(pid)
    t.join(30)
    print("worker %d: fds %r, Seccomp %s, NoNewPrivs %s, Uid %s" % (pid, fds, status.get("Seccomp"),
                                                                   status.get("NoNewPrivs"), status.get("Uid")))
    assert 3 in fds and set(fds) <= {2, 3}, fds  # fd 2 only in sanitizer builds
    assert status.get("Seccomp") == "2", status.get("Seccomp")
    assert status.get("NoNewPrivs") == "1", status.get("NoNewPrivs")
    if os.geteuid() == 0:
        assert status["Uid"].split() == ["65534"] * 4, status["Uid"]
        assert status["Gid"].split() == ["65534"] * 4, status["Gid"]
        assert status.get("Groups", "").split() in ([], ["65534"]), status.get("Groups")
    # the sleeping function finished normally
    assert box["response"].status == 200, box["response"]


# ---- startup ----------------------------------------------------------------------------------


def test_startup_with_a_function_syntax_error_exits_1(tmp_path, origin):
    """(`verge check` reporting it is test_check.py's; this is `verge -c` refusing to start.)"""
    path = write_function(tmp_path, "broken", "function handler(event, context)\n  return event.\nend\n")
    config = {
        "listen": [{"address": "127.0.0.1:%d" % free_port()}],
        "origins": {"app": origin_entry(origin)},
        "functions": {"broken": {"code": path}},
        "behaviors": [{"path": "*", "origin": "app", "triggers": {"viewer-request": "broken"}}],
    }
    config_path = tmp_path / "verge.json"
    config_path.write_text(json.dumps(config))
    r = run_verge("-c", str(config_path))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "%s:3:" % path in r.stderr, r.stderr
