"""Mock origins for local work (issue 6): "respond" origins give every request one fixed answer,
which goes through the cache and the triggers like any origin's."""

import json
import time

from conftest import HIT, MISS, cached_behavior, run_verge


def respond_config(respond, behavior=None):
    return {"origins": {"mock": {"respond": respond}}, "behaviors": [behavior or {"path": "*", "origin": "mock"}]}


def test_respond_origin_answers_every_request_with_its_status_fields_and_body(verge):
    v = verge(respond_config({"status": 418, "headers": {"X-Mock": "yes", "Content-Type": "text/plain"}, "body": "teapot\n"}))
    for path in ("/", "/any/path?q=1"):
        r = v.get(path)
        assert (r.status, r.body) == (418, b"teapot\n"), (r.status, r.body)
        assert r.header("x-mock") == "yes" and r.header("content-type") == "text/plain", r.headers
        assert r.header("date") is not None and r.header("content-length") == "7"
    head = v.get("/h", method="HEAD")
    assert (head.status, head.body, head.header("content-length")) == (418, b"", "7")
    line = v.access_log_lines(3)[-1]
    assert (line["origin"], line["origin_status"]) == ("mock", 418), line


def test_respond_origin_defaults_to_an_empty_200(verge):
    v = verge(respond_config({}))
    r = v.get("/")
    assert (r.status, r.body, r.header("content-length")) == (200, b"", "0")


def test_respond_answer_is_cached_by_its_cache_control(verge):
    v = verge(respond_config({"headers": {"Cache-Control": "max-age=60"}, "body": "fixed"},
                             behavior=cached_behavior(origin="mock")))
    first, second = v.get("/c"), v.get("/c")
    assert (first.header("x-cache"), second.header("x-cache")) == (MISS, HIT), (first.headers, second.headers)
    assert second.body == b"fixed"


def test_check_reports_bad_respond_settings(tmp_path):
    config = {"listen": [{"address": "127.0.0.1:1"}], "behaviors": [{"path": "*", "origin": "mock"}],
              "origins": {"mock": {"respond": {"status": 99, "headers": {"Transfer-Encoding": "chunked"}}}}}
    path = tmp_path / "verge.json"
    path.write_text(json.dumps(config))
    r = run_verge("check", "-c", str(path))
    assert r.returncode == 1, r.stdout
    assert "origins.mock.respond.status: expected an integer from 200 to 599, got 99" in r.stderr, r.stderr
    assert "origins.mock.respond.headers.Transfer-Encoding: verge frames the body itself" in r.stderr, r.stderr


# ---- faults ------------------------------------------------------------------------------------


def faulty(origin, faults, behavior=None):
    return {"origins": {"app": {"url": "http://127.0.0.1:%d" % origin.port, "faults": faults}},
            "behaviors": [behavior or {"path": "*", "origin": "app"}]}


def test_error_rate_one_answers_every_request_with_the_error_status(verge, origin):
    v = verge(faulty(origin, {"error_rate": 1, "error_status": 503}))
    r = v.get("/e")
    assert r.status == 503 and r.header("x-verge-fault") == "error_rate", (r.status, r.headers)
    assert r.body == b"verge: injected fault (origins.app.faults.error_rate)\n"
    assert origin.requests == []
    line = v.access_log_lines(1)[0]
    assert (line["origin"], line["origin_status"]) == ("app", 503), line


def test_reset_rate_one_fails_like_a_reset_origin(verge, origin):
    v = verge(faulty(origin, {"reset_rate": 1}))
    r = v.get("/r")
    assert r.status == 502 and b"origin connection reset (injected: faults.reset_rate)" in r.body, (r.status, r.body)
    assert origin.requests == []
    assert v.metrics().get("verge_origin_errors_total", origin="app", kind="reset") == 1


def test_latency_is_added_before_the_fetch(verge, origin):
    v = verge(faulty(origin, {"latency_ms": 300}))
    start = time.monotonic()
    r = v.get("/slow")
    assert (r.status, r.body) == (200, b"origin: GET /slow\n")
    assert time.monotonic() - start >= 0.3  # a lower bound: injected, never shorter
    assert [x.path for x in origin.requests] == ["/slow"]


def test_error_rate_half_fails_about_half(verge, origin):
    v = verge(faulty(origin, {"error_rate": 0.5}))
    statuses = [v.get("/h%d" % i).status for i in range(200)]
    failed = statuses.count(503)
    assert failed + statuses.count(200) == 200, statuses
    assert 50 <= failed <= 150, failed  # binomial(200, 0.5): sd 7, so this is 7 sd wide
    assert len(origin.requests) == 200 - failed


def test_stale_if_error_can_be_tried_with_injected_errors(verge, origin):
    origin.route("/s", header=["Cache-Control: max-age=1, stale-if-error=60"], body="fresh once")
    behavior = cached_behavior(min_ttl=0, default_ttl=1, max_ttl=1)
    v = verge(faulty(origin, {}, behavior=behavior))
    assert v.get("/s").body == b"fresh once"
    v.reload(faulty(origin, {"error_rate": 1}, behavior=behavior))
    time.sleep(1.3)  # the stored object goes stale
    r = v.get("/s")
    assert (r.status, r.body) == (200, b"fresh once"), (r.status, r.headers)
    assert "stale-if-error" in (r.header("cache-status") or ""), r.headers
    assert [x.path for x in origin.requests] == ["/s"]


def test_viewer_leaving_during_injected_latency(verge, origin):
    v = verge(faulty(origin, {"latency_ms": 400}))
    with v.conn() as c:
        c.send(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.6)  # the latency timer of the finished request must not fire
    r = v.get("/after")
    assert r.status == 200
    # (an EOF after a whole request reads as a half-close: verge still answers it, so /gone may reach the origin)
    assert origin.requests[-1].path == "/after"


def test_stream_reset_during_injected_latency_never_reaches_the_origin(verge, origin):
    """An HTTP/2 stream reset while its fetch waits out the latency ends the request (and its timer)."""
    import socket
    import struct

    from conftest import free_port
    from test_h2 import FRAME_RST_STREAM, FRAME_SETTINGS, PREFACE, frame, headers_frame

    port = free_port()
    v = verge(dict(faulty(origin, {"latency_ms": 400}), listen=[{"address": "127.0.0.1:%d" % port, "h2c": True}]))
    fields = [(":method", "GET"), (":path", "/gone"), (":scheme", "http"), (":authority", "x")]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(PREFACE + frame(FRAME_SETTINGS, 0, 0) + headers_frame(1, fields))
        time.sleep(0.1)
        sock.sendall(frame(FRAME_RST_STREAM, 0, 1, struct.pack(">I", 8)))  # CANCEL
        time.sleep(0.6)
    assert v.get("/after").status == 200
    assert [x.path for x in origin.requests] == ["/after"]


def test_check_fails_for_an_origin_host_that_does_not_resolve(tmp_path):
    config = {"listen": [{"address": "127.0.0.1:1"}], "behaviors": [{"path": "*", "origin": "app"}],
              "origins": {"app": {"url": "http://no-such-host.invalid:8080"}}}
    path = tmp_path / "verge.json"
    path.write_text(json.dumps(config))
    r = run_verge("check", "-c", str(path))
    assert r.returncode == 1, r.stdout
    assert 'origins.app.url: cannot resolve "no-such-host.invalid"' in r.stderr, r.stderr
