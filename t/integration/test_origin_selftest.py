"""Self-test of t/origin.py (no verge needed): every knob the verge tests rely on."""

import base64
import hashlib
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import REPO, BlackholeListener, HTTPConn, curl, free_port, http, pattern_bytes, pattern_sha256, raw_knob, wait_until


def test_default_answer_and_recording(origin):
    with HTTPConn(origin.port) as c:
        c.send(b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nx-two:  two  \r\nX-One: 3\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    assert r.body == b"origin: GET /a/b?x=1&y=%20\n"
    assert r.header("content-length") == str(len(r.body))
    (req,) = origin.requests
    assert (req.method, req.target, req.path, req.query, req.version) == ("GET", "/a/b?x=1&y=%20", "/a/b", "x=1&y=%20", "HTTP/1.1")
    assert req.headers == [("Host", "h"), ("X-One", "1"), ("x-two", "two"), ("X-One", "3")]
    assert req.header("X-TWO") == "two" and req.header_values("x-one") == ["1", "3"]
    assert req.raw_head.startswith(b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\n") and req.raw_head.endswith(b"\r\n\r\n")
    assert req.body_length == 0 and req.body_sha256 == hashlib.sha256(b"").hexdigest()


def test_keep_alive_and_connection_count(origin):
    with HTTPConn(origin.port) as c:
        for _ in range(3):
            assert c.request("GET", "/k").status == 200
    with HTTPConn(origin.port) as c:
        assert c.request("GET", "/k", [("Connection", "close")]).header("connection") == "close"
        assert c.closed_by_peer(2)
    assert origin.connections == 2
    assert [(r.conn_id, r.seq) for r in origin.requests] == [(1, 1), (1, 2), (1, 3), (2, 1)]
    origin.clear()
    assert origin.requests == [] and origin.connections == 0


def test_pipelined_requests_answered_in_order(origin):
    with HTTPConn(origin.port) as c:
        c.send(b"GET /1?delay_ms=100 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert c.read_response().body == b"origin: GET /1?delay_ms=100\n"
        assert c.read_response().body == b"origin: GET /2\n"


def test_status_headers_body_route_and_query_precedence(origin):
    origin.route("/r", status=201, header=["X-Route: r", ("X-Tuple", "t")], body="route body")
    r = curl(origin.url + "/r")
    assert (r.status, r.body, r.header("x-route"), r.header("x-tuple")) == (201, b"route body", "r", "t")
    r = curl(origin.url + "/r?status=404&header=X-Q:q&body=query")
    assert (r.status, r.body, r.header("x-route"), r.header("x-q")) == (404, b"query", "r", "q")
    origin.route("*", status=418)
    assert curl(origin.url + "/anything").status == 418
    origin.clear_routes()
    assert curl(origin.url + "/anything").status == 200
    with pytest.raises(ValueError):
        origin.route("/x", bogus=1)


def test_size_pattern_content_length(origin):
    r = curl(origin.url + "/s?size=1000")
    assert r.header("content-length") == "1000"
    assert r.body == pattern_bytes(1000) and hashlib.sha256(r.body).hexdigest() == pattern_sha256(1000)
    assert pattern_bytes(10, offset=60) == b"Y012345678"


def test_chunked_response(origin):
    with HTTPConn(origin.port) as c:
        r = c.request("GET", "/c?size=200000&chunked=1")
        assert r.chunked and r.complete and r.header("content-length") is None
        assert r.body_sha256 == pattern_sha256(200000)
        assert c.request("GET", "/again").status == 200  # still keep-alive


def test_close_delimited_response(origin):
    with HTTPConn(origin.port) as c:
        r = c.request("GET", "/c?size=5000&close=1")
        assert r.framing == "close" and r.complete and r.body == pattern_bytes(5000)
        assert r.header("connection") == "close"


def test_head_has_no_body(origin):
    with HTTPConn(origin.port) as c:
        r = c.request("HEAD", "/h?size=1234")
        assert r.header("content-length") == "1234" and r.body == b""
        assert c.request("GET", "/h2").status == 200


def test_no_body_statuses(origin):
    with HTTPConn(origin.port) as c:
        r = c.request("GET", "/n?status=304&header=ETag:%22x%22")
        assert r.status == 304 and r.header("content-length") is None and r.header("etag") == '"x"'
        r = c.request("GET", "/n?status=204")
        assert r.status == 204
        assert c.request("GET", "/n").status == 200


def test_delay_before_head(origin):
    start = time.monotonic()
    r = curl(origin.url + "/d?delay_ms=300")
    assert r.status == 200 and time.monotonic() - start >= 0.3


def test_body_delay_sends_head_first(origin):
    with HTTPConn(origin.port) as c:
        c.send(b"GET /bd?body_delay_ms=400&body=late HTTP/1.1\r\nHost: h\r\n\r\n")
        c.sock.settimeout(2)
        start = time.monotonic()
        first = c.sock.recv(65536)
        head_at = time.monotonic() - start
        assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"\r\n\r\n"), first
        assert head_at < 0.3
        assert c.sock.recv(65536) == b"late"
        assert time.monotonic() - start >= 0.4


def test_pause_after_stops_mid_body(origin):
    with HTTPConn(origin.port) as c:
        c.send(b"GET /p?size=1000&pause_after=300&pause_ms=400 HTTP/1.1\r\nHost: h\r\n\r\n")
        c.sock.settimeout(2)
        start = time.monotonic()
        got = b""
        while not got.endswith(pattern_bytes(300)):
            got += c.sock.recv(65536)
        assert got.partition(b"\r\n\r\n")[2] == pattern_bytes(300) and time.monotonic() - start < 0.3
        rest = b""
        while len(rest) < 700:
            rest += c.sock.recv(65536)
        assert rest == pattern_bytes(700, 300) and time.monotonic() - start >= 0.4
    (req,) = origin.requests
    wait_until(lambda: req.answered_at is not None, 2, message="answered_at")  # set just after the last write
    assert req.answered_status == 200 and req.answered_at - req.received_at >= 0.4


def test_etag_answers_304_to_a_matching_if_none_match(origin):
    origin.route("/e", etag='"v1"', header="Cache-Control: max-age=5", body="e")
    with HTTPConn(origin.port) as c:
        r = c.request("GET", "/e")
        assert (r.status, r.header("etag"), r.body) == (200, '"v1"', b"e")
        for inm in ('"v1"', 'W/"v1"', '"x", "v1"', "*"):
            r = c.request("GET", "/e", [("If-None-Match", inm)])
            assert (r.status, r.header("etag"), r.header("cache-control"), r.body) == (304, '"v1"', "max-age=5", b""), inm
            assert not r.has_header("content-length")
        r = c.request("HEAD", "/e", [("If-None-Match", '"v1"')])
        assert r.status == 304
        r = c.request("GET", "/e", [("If-None-Match", '"v2"')])
        assert (r.status, r.body) == (200, b"e")
        # If-None-Match decides when present, even if If-Modified-Since would match.
        r = c.request("GET", "/e", [("If-None-Match", '"v2"'), ("If-Modified-Since", "Sat, 01 Jan 2050 00:00:00 GMT")])
        assert r.status == 200
        assert c.request("POST", "/e", [("If-None-Match", '"v1"')], body=b"").status == 200
    assert [r.answered_status for r in origin.requests] == [200, 304, 304, 304, 304, 304, 200, 200, 200]


def test_last_modified_answers_304_to_if_modified_since(origin):
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    origin.route("/lm", last_modified=lm)
    with HTTPConn(origin.port) as c:
        r = c.request("GET", "/lm")
        assert (r.status, r.header("last-modified")) == (200, lm)
        assert c.request("GET", "/lm", [("If-Modified-Since", lm)]).status == 304
        assert c.request("GET", "/lm", [("If-Modified-Since", "Thu, 22 Oct 2015 00:00:00 GMT")]).status == 304
        assert c.request("GET", "/lm", [("If-Modified-Since", "Tue, 20 Oct 2015 00:00:00 GMT")]).status == 200
        assert c.request("GET", "/lm", [("If-Modified-Since", "garbage")]).status == 200
        assert c.request("GET", "/lm", [("If-None-Match", '"x"'), ("If-Modified-Since", lm)]).status == 200


def test_reset_after_truncates_with_rst(origin):
    ex = http(origin.port, b"GET /r?size=100000&reset_after=1000 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert ex.closed
    head, _, body = ex.data.partition(b"\r\n\r\n")
    assert b"Content-Length: 100000" in head and body == pattern_bytes(1000)
    assert ex.reset


def test_reset_after_chunked(origin):
    ex = http(origin.port, b"GET /r?size=100000&chunked=1&reset_after=10 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert ex.closed and ex.data.endswith(b"\r\n\r\na\r\n0123456789\r\n"), ex.data


def test_reset_before_head(origin):
    ex = http(origin.port, b"GET /rb?reset_before_head=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert ex.closed and ex.reset and ex.data == b""
    assert origin.requests[0].path == "/rb"


def test_raw_response_verbatim(origin):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    ex = http(origin.port, b"GET /raw?raw=" + raw_knob(raw).encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert ex.data == raw and ex.closed
    # Standard base64 (with + and /) works too, and a route can give bytes directly.
    origin.route("/rr", raw=b"garbage\r\n\r\n")
    assert http(origin.port, b"GET /rr HTTP/1.1\r\nHost: h\r\n\r\n").data == b"garbage\r\n\r\n"
    std = base64.b64encode(b"\xfb\xff" + raw).decode()
    assert http(origin.port, ("GET /raw?raw=%s HTTP/1.1\r\nHost: h\r\n\r\n" % std).encode()).data == b"\xfb\xff" + raw


def test_close_after_response_closes_quietly(origin):
    with HTTPConn(origin.port) as c:
        r = c.request("GET", "/x?close_after_response=1")
        assert r.status == 200 and r.header("connection") is None and r.header("content-length")
        assert c.closed_by_peer(2)


def test_drop_next_closes_next_request_without_answer(origin):
    with HTTPConn(origin.port) as c:
        assert c.request("GET", "/x?drop_next=1").status == 200
        c.send_request("GET", "/y")
        assert c.closed_by_peer(2)
    reqs = origin.requests
    assert [r.path for r in reqs] == ["/x", "/y"] and [r.dropped for r in reqs] == [False, True]


def test_echo(origin):
    r = curl(origin.url + "/e?echo=1", "-H", "X-Test: yes", "--data-binary", "hello")
    data = json.loads(r.body)
    assert r.header("content-type") == "application/json"
    assert data["method"] == "POST" and ["X-Test", "yes"] in data["headers"]
    assert data["body_length"] == 5 and data["body_sha256"] == hashlib.sha256(b"hello").hexdigest()


def test_content_length_request_body(origin):
    body = os.urandom(300000)
    with HTTPConn(origin.port) as c:
        assert c.request("PUT", "/u", body=body).status == 200
    req = origin.requests[0]
    assert req.body_length == len(body) and req.body_sha256 == hashlib.sha256(body).hexdigest()
    assert req.body == body and not req.chunked


def test_chunked_request_body_extensions_trailers(origin):
    with HTTPConn(origin.port) as c:
        c.send(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        assert c.read_response().status == 200
        assert c.request("GET", "/next").status == 200
    req = origin.requests[0]
    assert req.chunked and req.body == b"hello world" and req.body_length == 11
    assert req.chunk_extensions == ["ext=1"] and req.trailers == [("X-Trailer", "t")]


def test_expect_100_continue(origin):
    with HTTPConn(origin.port) as c:
        c.send(b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_response(skip_interim=False)
        assert interim.status == 100
        c.send(b"abc")
        assert c.read_response().status == 200
    assert origin.requests[0].body == b"abc"


def test_wait_for_requests(origin):
    with pytest.raises(TimeoutError):
        origin.wait_for_requests(1, timeout=0.1)
    curl(origin.url + "/w")
    assert len(origin.wait_for_requests(1, timeout=2)) == 1


def test_big_body_streams(origin):
    size = 64 * 1024 * 1024 + 7
    with HTTPConn(origin.port) as c:
        r = c.request("GET", "/big?size=%d" % size, keep_body=False)
        assert r.body_length == size and r.body_sha256 == pattern_sha256(size)


def test_blackhole_listener_connect_times_out():
    hole = BlackholeListener()
    try:
        s = socket.socket()
        s.settimeout(0.5)
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            s.connect(("127.0.0.1", hole.port))
        assert time.monotonic() - start >= 0.45
        s.close()
    finally:
        hole.close()


def test_standalone_mode(tmp_path):
    (tmp_path / "f.html").write_text("<p>hi</p>")
    port = free_port()
    proc = subprocess.Popen(["/usr/bin/python3", os.path.join(REPO, "t", "origin.py"), "--port", str(port),
                             "--static-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert b"origin listening on" in proc.stdout.readline()
        r = curl("http://127.0.0.1:%d/f.html" % port)
        assert (r.status, r.body, r.header("content-type")) == (200, b"<p>hi</p>", "text/html")
        assert curl("http://127.0.0.1:%d/missing.html" % port).status == 404
        assert curl("http://127.0.0.1:%d/q?size=10" % port).body == pattern_bytes(10)
        recorded = json.loads(curl("http://127.0.0.1:%d/__origin/requests" % port).body)
        assert [r["path"] for r in recorded] == ["/f.html", "/missing.html", "/q"]
    finally:
        proc.terminate()
        proc.wait(timeout=5)
