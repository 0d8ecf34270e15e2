"""Origin failures (behavior.md "Origin failures", "Retry").

Connect timeout on loopback: a BlackholeListener (t/origin.py) listens with backlog 0, never
accepts and has its accept queue filled by its own connections; Linux then drops further SYNs
(tcp_abort_on_overflow = 0), so verge's connect stays in SYN_SENT until connect_timeout_ms.
"""

import time

import pytest

from conftest import BlackholeListener, free_port, origin_entry, pattern_bytes, raw_knob


def assert_verge_error(r, status, body):
    assert r.status == status, (r.status, r.body)
    assert r.body == body, r.body
    assert r.header("content-type", "").startswith("text/plain")
    assert r.header("x-amz-cf-id")


def error_count(v, kind, origin="app"):
    return v.metrics().get("verge_origin_errors_total", 0, origin=origin, kind=kind)


def test_connection_refused_is_502(verge):
    v = verge(origin=free_port())
    r = v.get("/x")
    assert_verge_error(r, 502, b"verge: origin connection refused\n")
    line = v.access_log_lines(1)[0]
    assert line["status"] == 502 and line["origin_status"] is None
    assert error_count(v, "refused") == 1


def test_reset_before_head_is_502(verge, origin):
    v = verge(origin=origin)
    r = v.get("/x?reset_before_head=1")
    assert_verge_error(r, 502, b"verge: origin connection reset\n")
    assert origin.requests[0].path == "/x"
    assert error_count(v, "reset") >= 1


def test_connect_timeout_is_504(verge):
    hole = BlackholeListener()
    try:
        v = verge({"origins": {"app": dict(origin_entry(hole), connect_timeout_ms=300)},
                   "behaviors": [{"path": "*", "origin": "app"}]})
        start = time.monotonic()
        r = v.get("/x")
        elapsed = time.monotonic() - start
        assert_verge_error(r, 504, b"verge: origin connect timeout\n")
        assert 0.25 <= elapsed < 3.0, elapsed
        assert error_count(v, "timeout") == 1
        line = v.access_log_lines(1)[0]
        assert line["status"] == 504 and line["origin_status"] is None
    finally:
        hole.close()


def test_read_timeout_before_the_head_is_504(verge, origin):
    v = verge({"origins": {"app": dict(origin_entry(origin), read_timeout_ms=300)},
               "behaviors": [{"path": "*", "origin": "app"}]})
    start = time.monotonic()
    r = v.get("/x?delay_ms=2000")
    elapsed = time.monotonic() - start
    assert_verge_error(r, 504, b"verge: origin read timeout\n")
    assert 0.25 <= elapsed < 1.9, elapsed
    assert error_count(v, "timeout") == 1


def test_read_timeout_resets_on_progress(verge, origin):
    # 300 ms between bytes is fine even when the whole response takes longer than the timeout.
    v = verge({"origins": {"app": dict(origin_entry(origin), read_timeout_ms=600)},
               "behaviors": [{"path": "*", "origin": "app"}]})
    r = v.get("/x?delay_ms=300&body_delay_ms=300&size=100")
    assert r.status == 200 and r.body == pattern_bytes(100)


MALFORMED = [
    ("garbage", b"this is not http\r\n\r\n"),
    ("differing-content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
    ("cl-and-te", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("bad-status-code", b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"),
    ("header-without-colon", b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n"),
    ("unsupported-coding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("http-2-version", b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
]


@pytest.mark.parametrize("raw", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_response_is_502(verge, origin, raw):
    v = verge(origin=origin)
    r = v.get("/m?raw=" + raw_knob(raw))
    assert r.status == 502, (r.status, r.body)
    assert r.body.startswith(b"verge: origin sent a malformed response (") and r.body.endswith(b")\n"), r.body
    assert r.header("content-type", "").startswith("text/plain") and r.header("x-amz-cf-id")
    assert error_count(v, "malformed") == 1


def test_origin_closing_without_answer_is_502(verge, origin):
    v = verge(origin=origin)
    r = v.get("/m?raw=")  # raw= empty: read the request, then FIN
    assert r.status == 502 and r.body.startswith(b"verge: origin "), r.body


def test_error_does_not_poison_the_viewer_connection(verge, origin):
    v = verge(origin=origin)
    with v.conn() as c:
        assert c.request("GET", "/x?reset_before_head=1").status == 502
        assert c.request("GET", "/ok").status == 200


# ---- truncation mid-body ------------------------------------------------------------------


def test_reset_mid_body_with_content_length_truncates(verge, origin):
    v = verge(origin=origin)
    with v.conn() as c:
        # body_delay_ms lets the head reach the viewer before the reset
        r = c.request("GET", "/big?size=1000000&reset_after=100000&body_delay_ms=200", keep_body=False)
        assert r.status == 200 and r.header("content-length") == "1000000"
        assert not r.complete and r.body_length < 1000000
        assert c.closed_by_peer(3)
    assert error_count(v, "reset") >= 1


def test_reset_mid_body_chunked_has_no_final_chunk(verge, origin):
    v = verge(origin=origin)
    with v.conn() as c:
        r = c.request("GET", "/big?size=1000000&chunked=1&reset_after=100000&body_delay_ms=200", keep_body=False)
        assert r.status == 200 and r.framing == "chunked"
        assert not r.complete and r.body_length <= 100000
        assert c.closed_by_peer(3)


def test_reset_mid_body_close_delimited_to_http11_viewer(verge, origin):
    v = verge(origin=origin)
    with v.conn() as c:
        r = c.request("GET", "/big?size=1000000&close=1&reset_after=100000&body_delay_ms=200", keep_body=False)
        assert r.status == 200 and r.framing == "chunked" and not r.complete


def test_truncated_body_bytes_are_the_origins(verge, origin):
    v = verge(origin=origin)
    with v.conn() as c:
        r = c.request("GET", "/big?size=50000&reset_after=30000&body_delay_ms=200")
        assert not r.complete
        assert r.body == pattern_bytes(len(r.body))


# ---- retry --------------------------------------------------------------------------------


def test_retry_when_the_origin_closed_a_pooled_connection(verge, origin):
    v = verge({"threads": 1}, origin=origin)
    with v.conn() as c:
        assert c.request("GET", "/a?close_after_response=1").status == 200
        time.sleep(0.1)
        r = c.request("GET", "/b")
        assert r.status == 200 and r.body == b"origin: GET /b\n"
    assert origin.connections == 2


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "DELETE", "PUT"])
def test_retry_when_a_reused_connection_dies_before_the_response(verge, origin, method):
    # drop_next: the origin answers /a, then closes the connection when the next request arrives on it,
    # so verge surely sends /b on a reused connection that dies before any response byte.
    v = verge({"threads": 1}, origin=origin)
    with v.conn() as c:
        assert c.request("GET", "/a?drop_next=1").status == 200
        r = c.request(method, "/b")
        assert r.status == 200
    reqs = origin.requests
    assert [(r.method, r.path, r.dropped) for r in reqs] == [("GET", "/a", False), (method, "/b", True), (method, "/b", False)]
    assert origin.connections == 2


def test_post_is_not_retried(verge, origin):
    v = verge({"threads": 1}, origin=origin)
    with v.conn() as c:
        assert c.request("GET", "/a?drop_next=1").status == 200
        r = c.request("POST", "/b", body=b"payload")
        assert r.status == 502
    assert [(r.method, r.path, r.dropped) for r in origin.requests] == [("GET", "/a", False), ("POST", "/b", True)]


def test_get_with_a_body_is_not_retried(verge, origin):
    v = verge({"threads": 1}, origin=origin)
    with v.conn() as c:
        assert c.request("GET", "/a?drop_next=1").status == 200
        r = c.request("GET", "/b", body=b"payload")
        assert r.status == 502
    assert len(origin.requests) == 2


def test_retry_happens_only_once(verge, origin):
    # The retried request lands on a fresh connection whose answer is a reset: no second retry.
    v = verge({"threads": 1}, origin=origin)
    with v.conn() as c:
        assert c.request("GET", "/a?drop_next=1").status == 200
        r = c.request("GET", "/b?reset_before_head=1")
        assert r.status == 502
    assert [r.path for r in origin.requests] == ["/a", "/b", "/b"]


def test_fresh_connection_failure_is_not_retried(verge, origin):
    v = verge({"threads": 1}, origin=origin)
    assert v.get("/x?reset_before_head=1").status == 502
    assert len(origin.requests) == 1


def test_no_100_continue_when_the_origin_is_unreachable(verge):
    # verge sends 100 Continue only once it has an origin connection; a refused origin means the
    # viewer gets the 502 straight away and never sends the body.
    v = verge(origin=free_port())
    with v.conn() as c:
        c.send(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response(skip_interim=False, timeout=5)
        assert r.status == 502 and r.body == b"verge: origin connection refused\n"
