"""Malformed and hostile requests (behavior.md "Parse errors", "Header-read timeout").

Every parse error must answer the exact status with Connection: close, Content-Type text/plain,
a one-line body "verge: <reason>\\n" and an X-Amz-Cf-Id, then close the connection; the origin
must never see the request.
"""

import time

import pytest

from conftest import HTTPConn, http

H = b"Host: h\r\n"

# (id, raw request, expected status)
CASES = [
    # smuggling: conflicting or ambiguous framing
    ("cl-and-te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-and-cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("two-different-cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("two-equal-cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("cl-list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("cl-negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("cl-plus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    ("cl-hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("cl-trailing-junk", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5a\r\n\r\nhello", 400),
    ("cl-empty", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n", 400),
    ("cl-overflow", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("te-chunked-not-last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    ("te-space-before-colon", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("cl-space-before-colon", b"POST / HTTP/1.1\r\n" + H + b"Content-Length : 5\r\n\r\nhello", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: one\r\n two\r\n\r\n", 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: one\r\n\ttwo\r\n\r\n", 400),
    ("bare-cr-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("ctl-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    ("empty-header-name", b"GET / HTTP/1.1\r\n" + H + b": value\r\n\r\n", 400),
    ("bad-char-in-name", b"GET / HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n", 400),
    ("space-in-name", b"GET / HTTP/1.1\r\n" + H + b"X A: 1\r\n\r\n", 400),
    ("no-colon", b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", 400),
    ("missing-host", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bad-method-char", b"GE(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("request-line-two-parts", b"GET /\r\n" + H + b"\r\n", 400),
    ("request-line-double-space", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-not-origin-form", b"GET foo HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk-with-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad-chunk-size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-missing-crlf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400),
    # unsupported transfer coding
    ("te-gzip-chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    # bad versions
    ("http-2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http-3.0", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505),
    ("http-0.9-version", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    # CONNECT
    ("connect", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405),
]


@pytest.fixture
def proxy(verge, origin):
    return verge({"threads": 1}, origin=origin)


def assert_error_and_close(ex, status):
    assert ex.response is not None, "no complete response; got %r" % ex.data[:300]
    r = ex.response
    assert r.status == status, (r.status, ex.data[:300])
    assert r.header("connection", "").lower() == "close", r.headers
    assert r.header("content-type", "").startswith("text/plain"), r.headers
    assert r.header("x-amz-cf-id"), r.headers
    assert r.body.startswith(b"verge: ") and r.body.endswith(b"\n") and r.body.count(b"\n") == 1, r.body
    assert ex.closed, "verge kept the connection open after a %d" % status


@pytest.mark.parametrize("raw,status", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_request_is_rejected_and_closed(proxy, origin, raw, status):
    ex = proxy.http(raw)
    assert_error_and_close(ex, status)
    if status != 400 or b"chunk" not in raw.lower():
        assert origin.requests == [], "origin saw a request verge should have rejected"


@pytest.mark.parametrize("raw,status", [c[1:] for c in CASES if c[2] != 400 or c[0] in ("cl-and-te", "obs-fold")],
                         ids=[c[0] for c in CASES if c[2] != 400 or c[0] in ("cl-and-te", "obs-fold")])
def test_bad_request_after_a_good_one_on_the_same_connection(proxy, origin, raw, status):
    ex = proxy.http(b"GET /good HTTP/1.1\r\nHost: h\r\n\r\n" + raw)
    first, _, rest = ex.data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200"), ex.data[:300]
    assert ("HTTP/1.1 %d" % status).encode() in rest, ex.data[:600]
    assert ex.closed


def test_smuggled_request_after_cl_te_is_never_forwarded(proxy, origin):
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (
        5 + len(smuggled))) + smuggled
    ex = proxy.http(raw)
    assert_error_and_close(ex, 400)
    assert ex.data.count(b"HTTP/1.1") == 1
    assert [r.path for r in origin.requests] == []


def test_head_over_20480_bytes_is_431(proxy, origin):
    raw = b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 21000 + b"\r\n\r\n"
    assert_error_and_close(proxy.http(raw), 431)
    assert origin.requests == []


def test_head_over_20480_bytes_in_many_headers_is_431(proxy, origin):
    raw = b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 300) for i in range(70)) + b"\r\n"
    assert len(raw) > 20480
    assert_error_and_close(proxy.http(raw), 431)


def test_head_under_the_limit_is_accepted(proxy, origin):
    raw = b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 19000 + b"\r\nConnection: close\r\n\r\n"
    ex = proxy.http(raw)
    assert ex.status == 200
    assert origin.requests[0].header("x-big") == "a" * 19000


def test_more_than_128_fields_is_431(proxy, origin):
    raw = b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-F%d: v\r\n" % i for i in range(128)) + b"\r\n"  # 129 fields
    assert_error_and_close(proxy.http(raw), 431)


def test_128_fields_are_accepted(proxy, origin):
    raw = b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(126)) + b"\r\n"
    ex = proxy.http(raw)
    assert ex.status == 200, ex.data[:300]
    assert origin.requests[0].header("x-f125") == "v"


def test_target_over_8192_bytes_is_414(proxy, origin):
    raw = b"GET /" + b"a" * 8300 + b" HTTP/1.1\r\n" + H + b"\r\n"
    assert_error_and_close(proxy.http(raw), 414)
    assert origin.requests == []


def test_long_target_under_the_limit_is_accepted(proxy, origin):
    target = b"/" + b"a" * 8000
    ex = proxy.http(b"GET " + target + b" HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    assert ex.status == 200
    assert origin.requests[0].target == target.decode()


def test_error_response_has_its_own_request_id(proxy):
    ids = set()
    for _ in range(3):
        ex = proxy.http(b"GET / HTTP/2.0\r\n" + H + b"\r\n")
        ids.add(ex.response.header("x-amz-cf-id"))
    assert len(ids) == 3


def test_bare_lf_line_endings_are_accepted(proxy, origin):
    ex = proxy.http(b"GET /lf HTTP/1.1\nHost: h\nConnection: close\n\n")
    assert ex.status == 200
    assert origin.requests[0].path == "/lf"


# ---- timeouts --------------------------------------------------------------------------------


@pytest.fixture
def short_timeouts(verge, origin):
    return verge({"threads": 1, "timeouts": {"header_read_ms": 800, "idle_ms": 1200}}, origin=origin)


def test_incomplete_head_gets_408_and_close(short_timeouts, origin):
    start = time.monotonic()
    ex = http(short_timeouts.port, b"GET / HTTP/1.1\r\nHost: h\r\n", timeout=5)
    elapsed = time.monotonic() - start
    assert_error_and_close(ex, 408)
    assert 0.6 <= elapsed < 3.0, elapsed
    assert origin.requests == []


def test_slowloris_trickle_gets_408(short_timeouts, origin):
    # One header line every 200 ms keeps the connection busy, but the whole head must arrive in 800 ms.
    chunks = [b"GET / HTTP/1.1\r\n", H] + [b"X-Slow-%d: 1\r\n" % i for i in range(25)]
    start = time.monotonic()
    ex = http(short_timeouts.port, None, chunks=chunks, chunk_delay=0.2, timeout=8)
    elapsed = time.monotonic() - start
    assert_error_and_close(ex, 408)
    assert elapsed < 6.0
    assert origin.requests == []


def test_idle_connection_without_bytes_is_closed_silently(short_timeouts):
    start = time.monotonic()
    ex = http(short_timeouts.port, b"", timeout=6)
    elapsed = time.monotonic() - start
    assert ex.closed and ex.data == b""
    assert elapsed < 4.0, elapsed


def test_idle_keep_alive_connection_is_closed_silently(short_timeouts):
    with HTTPConn(short_timeouts.port) as c:
        assert c.request("GET", "/").status == 200
        start = time.monotonic()
        assert c.closed_by_peer(timeout=5)
        assert 0.8 <= time.monotonic() - start < 4.0


def test_keep_alive_connection_that_starts_a_head_gets_408(short_timeouts):
    with HTTPConn(short_timeouts.port) as c:
        assert c.request("GET", "/").status == 200
        c.send(b"GET /second HTTP/1.1\r\n")
        r = c.read_response(timeout=5)
        assert r.status == 408 and r.header("connection", "").lower() == "close"
        assert c.closed_by_peer(3)


def test_active_connection_is_not_closed_by_idle_timer(short_timeouts):
    with HTTPConn(short_timeouts.port) as c:
        for _ in range(4):
            assert c.request("GET", "/").status == 200
            time.sleep(0.5)  # each gap is under idle_ms; the total is over it
        assert c.request("GET", "/").status == 200


def test_slow_body_within_idle_is_fine(short_timeouts, origin):
    chunks = [b"POST /slowbody HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nConnection: close\r\n\r\n", b"ab", b"cd", b"ef"]
    ex = http(short_timeouts.port, None, chunks=chunks, chunk_delay=0.5, timeout=8)
    assert ex.status == 200, ex.data[:300]
    assert origin.requests[0].body == b"abcdef"
