"""Forwarding between viewer and an HTTP origin (behavior.md "Request path")."""

import hashlib
import os
import random
import subprocess

import pytest

from conftest import origin_entry, pattern_bytes, pattern_sha256

HOP_BY_HOP_REQUEST = [
    ("Connection", "keep-alive, X-Listed-Hop"),
    ("X-Listed-Hop", "listed in Connection"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Trailer", "X-Some-Trailer"),
    ("Upgrade", "example/1"),
    ("Proxy-Connection", "keep-alive"),
    ("Proxy-Authenticate", "Basic realm=x"),
    ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
    ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
]


@pytest.fixture
def proxy(verge, origin):
    """verge with one thread (so origin connection reuse is deterministic) in front of `origin`."""
    return verge({"threads": 1}, origin=origin)


def only(requests):
    assert len(requests) == 1, requests
    return requests[0]


# ---- the request to the origin -------------------------------------------------------------


def test_get_is_forwarded_with_status_and_body(proxy, origin):
    r = proxy.get("/hello?x=1")
    assert r.status == 200
    assert r.body == b"origin: GET /hello?x=1\n"
    req = only(origin.requests)
    assert req.raw_head.split(b"\r\n")[0] == b"GET /hello?x=1 HTTP/1.1"


def test_request_target_and_query_are_forwarded_verbatim(proxy, origin):
    target = "/a%20b/c;p=1/%7Euser?q=%2F%3F&b=c+d&&empty=&x=%E2%82%AC"
    proxy.get(target)
    req = only(origin.requests)
    assert req.target == target


def test_no_query_means_no_question_mark(proxy, origin):
    proxy.get("/plain")
    assert only(origin.requests).target == "/plain"


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS", "PATCH"])
def test_methods_are_forwarded(proxy, origin, method):
    r = proxy.get("/m", method=method)
    assert r.status == 200
    assert only(origin.requests).method == method


def test_host_is_the_origins_not_the_viewers(proxy, origin):
    proxy.get("/h", headers=[("Host", "viewer.example")])
    req = only(origin.requests)
    assert req.header_values("host") == ["127.0.0.1:%d" % origin.port]


def test_path_prefix_of_the_origin_url(verge, origin):
    v = verge({"origins": {"app": origin_entry(origin, "/base")}, "behaviors": [{"path": "*", "origin": "app"}]})
    v.get("/x/y?q=1")
    v.get("/")
    assert [r.target for r in origin.requests] == ["/base/x/y?q=1", "/base/"]


def test_path_prefix_trailing_slash_is_not_doubled(verge, origin):
    v = verge({"origins": {"app": origin_entry(origin, "/base/")}, "behaviors": [{"path": "*", "origin": "app"}]})
    v.get("/x?q=1")
    assert only(origin.requests).target == "/base/x?q=1"


def test_hop_by_hop_request_headers_are_removed(proxy, origin):
    headers = HOP_BY_HOP_REQUEST + [("X-End-To-End", "kept")]
    r = proxy.get("/hop", headers=headers)
    assert r.status == 200
    req = only(origin.requests)
    for name, _ in HOP_BY_HOP_REQUEST:
        if name.lower() == "connection":
            # verge may send its own Connection (keep-alive/close) but never the viewer's list.
            assert all("x-listed-hop" not in v.lower() for v in req.header_values(name)), req.headers
        else:
            assert not req.has_header(name), (name, req.headers)
    assert req.header("X-End-To-End") == "kept"


def test_end_to_end_request_headers_are_forwarded(proxy, origin):
    headers = [
        ("User-Agent", "test-agent/1.0"),
        ("Accept", "text/html"),
        ("Accept-Language", "en, fr;q=0.5"),
        ("Cookie", "a=1; b=2"),
        ("Authorization", "Bearer secret"),
        ("Cache-Control", "no-cache"),
        ("X-Custom", "value with  spaces"),
        ("X-Dup", "first"),
        ("X-Dup", "second"),
    ]
    proxy.get("/e2e", headers=headers)
    req = only(origin.requests)
    for name, value in headers:
        if name == "X-Dup":
            continue
        assert req.header(name) == value, (name, req.headers)
    dup = [item.strip() for v in req.header_values("X-Dup") for item in v.split(",")]
    assert dup == ["first", "second"]


def test_via_is_added(proxy, origin):
    proxy.get("/v")
    assert only(origin.requests).header_values("via") == ["1.1 verge"]


def test_via_is_appended_to_an_existing_via(proxy, origin):
    proxy.get("/v", headers=[("Via", "1.0 fred, 1.1 example.com")])
    req = only(origin.requests)
    items = [i.strip() for v in req.header_values("via") for i in v.split(",")]
    assert items == ["1.0 fred", "1.1 example.com", "1.1 verge"]


def test_x_forwarded_for_is_the_client_ip(proxy, origin):
    proxy.get("/xff")
    assert only(origin.requests).header_values("x-forwarded-for") == ["127.0.0.1"]


def test_x_forwarded_for_is_appended(proxy, origin):
    proxy.get("/xff", headers=[("X-Forwarded-For", "203.0.113.9")])
    assert only(origin.requests).header_values("x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]


def test_amz_cf_id_is_set_and_matches_the_response_and_access_log(proxy, origin):
    r = proxy.get("/id", headers=[("X-Amz-Cf-Id", "forged-by-viewer")])
    req = only(origin.requests)
    ids = req.header_values("x-amz-cf-id")
    assert len(ids) == 1 and ids[0] != "forged-by-viewer" and ids[0]
    assert r.header_values("x-amz-cf-id") == ids
    (line,) = proxy.access_log_lines(1)
    assert line["request_id"] == ids[0]


def test_request_ids_are_unique(proxy, origin):
    seen = set()
    with proxy.conn() as c:
        for i in range(25):
            r = c.request("GET", "/u%d" % i)
            assert r.status == 200
            seen.add(r.header("x-amz-cf-id"))
    for i in range(5):
        seen.add(proxy.get("/fresh%d" % i).header("x-amz-cf-id"))
    assert None not in seen and len(seen) == 30
    assert {r.header("x-amz-cf-id") for r in origin.requests} == seen


# ---- the response to the viewer ------------------------------------------------------------


def test_origin_status_and_headers_reach_the_viewer(proxy, origin):
    origin.route("/r", status=201, body="made", header=[
        "X-Custom: one", "Set-Cookie: a=1; Path=/", "Set-Cookie: b=2", "Cache-Control: max-age=60",
        "Content-Type: text/x-test"])
    r = proxy.get("/r")
    assert (r.status, r.body) == (201, b"made")
    assert r.header("x-custom") == "one"
    assert r.header_values("set-cookie") == ["a=1; Path=/", "b=2"]
    assert r.header("cache-control") == "max-age=60"
    assert r.header("content-type") == "text/x-test"


@pytest.mark.parametrize("status", [204, 301, 304, 404, 500, 503])
def test_origin_statuses_pass_through(proxy, origin, status):
    with proxy.conn() as c:
        r = c.request("GET", "/s?status=%d" % status)
        assert r.status == status
        assert c.request("GET", "/after").status == 200  # framing was right: the connection still works


def test_hop_by_hop_response_headers_are_removed(proxy, origin):
    origin.route("/hop", body="x", header=[
        "Connection: X-Secret-Hop", "X-Secret-Hop: 1", "Keep-Alive: timeout=5, max=10", "Proxy-Authenticate: Basic",
        "Upgrade: example/1", "Trailer: X-T", "Proxy-Connection: keep-alive", "X-Kept: yes"])
    r = proxy.get("/hop", headers=[("Connection", "keep-alive")])
    for name in ("X-Secret-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade", "Trailer", "Proxy-Connection"):
        assert not r.has_header(name), (name, r.headers)
    assert all("x-secret-hop" not in v.lower() for v in r.header_values("connection"))
    assert r.header("x-kept") == "yes"


def test_via_is_added_to_the_response(proxy, origin):
    assert proxy.get("/v").header_values("via") == ["1.1 verge"]
    origin.route("/v2", header="Via: 1.1 upstream")
    r = proxy.get("/v2")
    assert [i.strip() for v in r.header_values("via") for i in v.split(",")] == ["1.1 upstream", "1.1 verge"]


def test_content_length_from_the_origin_is_kept(proxy, origin):
    with proxy.conn() as c:
        r = c.request("GET", "/cl?size=100000")
        assert r.framing == "length" and r.header("content-length") == "100000"
        assert r.body == pattern_bytes(100000)


def test_chunked_origin_response_is_chunked_to_http11_viewer(proxy, origin):
    with proxy.conn() as c:
        r = c.request("GET", "/ch?size=300000&chunked=1")
        assert r.framing == "chunked" and r.complete and r.header("content-length") is None
        assert r.body_sha256 == pattern_sha256(300000)
        assert c.request("GET", "/next").status == 200


def test_close_delimited_origin_response_is_chunked_to_http11_viewer(proxy, origin):
    with proxy.conn() as c:
        r = c.request("GET", "/close?size=70000&close=1")
        assert r.framing == "chunked" and r.complete
        assert r.body == pattern_bytes(70000)
        assert c.request("GET", "/next").status == 200


@pytest.mark.parametrize("knob", ["chunked=1", "close=1"])
def test_http10_viewer_gets_body_until_close(proxy, origin, knob):
    with proxy.conn() as c:
        c.send(("GET /ten?size=50000&%s HTTP/1.0\r\nHost: h\r\n\r\n" % knob).encode())
        r = c.read_response()
        assert r.status == 200 and r.header("transfer-encoding") is None
        assert r.framing == "close" and r.complete
        assert r.body == pattern_bytes(50000)


def test_http10_viewer_with_content_length(proxy, origin):
    with proxy.conn() as c:
        c.send(b"GET /ten?size=1000 HTTP/1.0\r\nHost: h\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.header("content-length") == "1000" and r.body == pattern_bytes(1000)


def test_head_is_forwarded_as_head_without_body(proxy, origin):
    with proxy.conn() as c:
        r = c.request("HEAD", "/h?size=1234")
        assert r.status == 200 and r.header("content-length") == "1234" and r.body == b""
        r2 = c.request("GET", "/after")  # no stray body bytes on the connection
        assert r2.status == 200 and r2.body == b"origin: GET /after\n"
    assert [r.method for r in origin.requests] == ["HEAD", "GET"]


def test_head_of_a_chunked_origin_response(proxy, origin):
    with proxy.conn() as c:
        r = c.request("HEAD", "/h?size=1234&chunked=1")
        assert r.status == 200 and r.body == b""
        assert c.request("GET", "/after").status == 200


# ---- connections ---------------------------------------------------------------------------


def test_origin_connection_is_reused_on_one_viewer_connection(proxy, origin):
    with proxy.conn() as c:
        for i in range(5):
            assert c.request("GET", "/k%d" % i).status == 200
    assert origin.connections == 1
    assert [r.seq for r in origin.requests] == [1, 2, 3, 4, 5]


def test_origin_connection_is_reused_across_viewer_connections(proxy, origin):
    for i in range(4):
        assert proxy.get("/k%d" % i).status == 200
    assert origin.connections == 1


def test_viewer_keep_alive_many_requests(proxy, origin):
    with proxy.conn() as c:
        for i in range(50):
            r = c.request("GET", "/n?body=%d" % i)
            assert r.body == str(i).encode()
        assert not c.closed_by_peer(0.2)


def test_pipelined_requests_are_answered_in_order(proxy, origin):
    with proxy.conn() as c:
        c.send(b"GET /p1?delay_ms=300&body=one HTTP/1.1\r\nHost: h\r\n\r\n"
               b"GET /p2?body=two HTTP/1.1\r\nHost: h\r\n\r\n"
               b"HEAD /p3?size=10 HTTP/1.1\r\nHost: h\r\n\r\n"
               b"GET /p4?size=20&chunked=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert c.read_response().body == b"one"
        assert c.read_response().body == b"two"
        head = c.read_response(method="HEAD")
        assert head.header("content-length") == "10" and head.body == b""
        assert c.read_response().body == pattern_bytes(20)


def test_pipelined_requests_with_bodies(proxy, origin):
    with proxy.conn() as c:
        c.send(b"POST /b1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
               b"POST /b2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
               b"GET /b3 HTTP/1.1\r\nHost: h\r\n\r\n")
        for _ in range(3):
            assert c.read_response().status == 200
    reqs = origin.requests
    assert [(r.path, r.body) for r in reqs] == [("/b1", b"hello"), ("/b2", b"abc"), ("/b3", b"")]


def test_connection_close_from_the_viewer(proxy, origin):
    with proxy.conn() as c:
        r = c.request("GET", "/c", headers=[("Connection", "close")])
        assert r.status == 200
        assert "close" in [i.lower() for i in r.header_list("connection")]
        assert c.closed_by_peer(3)


def test_pipelined_request_after_connection_close_is_not_served(proxy, origin):
    with proxy.conn() as c:
        c.send(b"GET /first HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\n\r\n")
        assert c.read_response().status == 200
        assert c.closed_by_peer(3)
    assert [r.path for r in origin.requests] == ["/first"]


# ---- request bodies -----------------------------------------------------------------------


def test_content_length_body_is_forwarded_with_the_same_length(proxy, origin):
    body = os.urandom(200000)
    with proxy.conn() as c:
        r = c.request("POST", "/up", body=body)
        assert r.status == 200
    req = only(origin.requests)
    assert req.header("content-length") == str(len(body)) and not req.chunked
    assert req.body_sha256 == hashlib.sha256(body).hexdigest()


def test_empty_content_length_body(proxy, origin):
    with proxy.conn() as c:
        assert c.request("POST", "/up", body=b"").status == 200
    req = only(origin.requests)
    assert req.body_length == 0 and req.header("content-length") in ("0", None)


def test_chunked_body_is_reencoded_without_extensions_and_trailers(proxy, origin):
    with proxy.conn() as c:
        c.send(b"POST /chunky HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
               b"5;name=value\r\nhello\r\n1;a;b=\"q\"\r\n \r\n5\r\nworld\r\n0;last=1\r\nX-Checksum: abc\r\n\r\n")
        assert c.read_response().status == 200
        assert c.request("GET", "/next").status == 200
    req = origin.requests[0]
    assert req.chunked and req.body == b"hello world"
    assert req.header_values("transfer-encoding") == ["chunked"] and not req.has_header("content-length")
    assert req.chunk_extensions == [] and req.trailers == []
    assert not req.has_header("x-checksum") and not req.has_header("trailer")


def test_big_chunked_body_with_random_chunk_sizes(proxy, origin):
    rng = random.Random(7)
    data = os.urandom(3 * 1024 * 1024 + 11)
    pieces, pos = [], 0
    while pos < len(data):
        n = min(len(data) - pos, rng.choice([1, 7, 100, 4096, 65536, 300000]))
        pieces.append(b"%x\r\n" % n + data[pos : pos + n] + b"\r\n")
        pos += n
    with proxy.conn(timeout=30) as c:
        c.send(b"PUT /bigchunks HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(pieces) + b"0\r\n\r\n")
        assert c.read_response().status == 200
    req = only(origin.requests)
    assert req.body_length == len(data) and req.body_sha256 == hashlib.sha256(data).hexdigest()


def test_expect_100_continue_with_a_raw_socket(proxy, origin):
    body = b"x" * 10000
    with proxy.conn() as c:
        c.send(b"PUT /ex HTTP/1.1\r\nHost: h\r\nContent-Length: 10000\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_response(skip_interim=False, timeout=5)
        assert interim.status == 100 and interim.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n")
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        assert c.request("GET", "/next").status == 200
    req = origin.requests[0]
    assert req.body == body and not req.has_header("expect")


def test_expect_100_continue_chunked(proxy, origin):
    with proxy.conn() as c:
        c.send(b"POST /ex HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        assert c.read_response(skip_interim=False, timeout=5).status == 100
        c.send(b"4\r\nbody\r\n0\r\n\r\n")
        assert c.read_response().status == 200
    assert origin.requests[0].body == b"body"


def test_expect_100_continue_with_curl(proxy, origin, tmp_path):
    upload = tmp_path / "upload.bin"
    data = os.urandom(2 * 1024 * 1024)
    upload.write_bytes(data)
    # --expect100-timeout 5: curl would send the body after 1 s anyway; 5 s makes a missing 100 show as slowness
    # and the all_heads check below proves the 100 came from verge.
    r = proxy.curl("/curl-up", "-H", "Expect: 100-continue", "--expect100-timeout", "5", "--data-binary",
                   "@" + str(upload), max_time=20)
    assert r.returncode == 0, r.stderr
    assert r.status == 200
    assert r.all_heads[0][0].startswith("HTTP/1.1 100")
    req = only(origin.requests)
    assert req.body_sha256 == hashlib.sha256(data).hexdigest() and not req.has_header("expect")


def test_curl_keep_alive_several_urls(proxy, origin):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", proxy.url + "/a?body=A", proxy.url + "/b?body=B"],
                       capture_output=True, timeout=20)
    assert r.returncode == 0 and r.stdout == b"AB"


# ---- behaviors ------------------------------------------------------------------------------


def test_first_matching_behavior_wins(verge, origin_factory):
    a, b, c = origin_factory(), origin_factory(), origin_factory()
    v = verge({
        "origins": {"a": origin_entry(a), "b": origin_entry(b), "c": origin_entry(c)},
        "behaviors": [
            {"path": "/api/*", "origin": "a"},
            {"path": "/img/??.png", "origin": "b"},
            {"path": "*.css", "origin": "b"},
            {"path": "/api/v2/*", "origin": "c"},  # shadowed by /api/*
            {"path": "*", "origin": "c"},
        ],
    })
    for target in ["/api/users?x=1", "/api/v2/thing", "/img/ab.png", "/img/abc.png", "/style/site.css", "/", "/API/x"]:
        assert v.get(target).status == 200
    assert [r.target for r in a.requests] == ["/api/users?x=1", "/api/v2/thing"]
    assert [r.target for r in b.requests] == ["/img/ab.png", "/style/site.css"]
    assert [r.target for r in c.requests] == ["/img/abc.png", "/", "/API/x"]
    lines = v.access_log_lines(7)
    assert [(l["behavior"], l["origin"]) for l in lines] == [
        ("/api/*", "a"), ("/api/*", "a"), ("/img/??.png", "b"), ("*", "c"), ("*.css", "b"), ("*", "c"), ("*", "c")]


def test_absolute_form_target(proxy, origin):
    with proxy.conn() as c:
        c.send(b"GET http://viewer.example/abs/path?q=1 HTTP/1.1\r\nHost: viewer.example\r\n\r\n")
        assert c.read_response().status == 200
    req = only(origin.requests)
    assert req.target == "/abs/path?q=1" and req.header("host") == "127.0.0.1:%d" % origin.port


def test_many_concurrent_viewer_connections(verge, origin):
    v = verge({"threads": 2}, origin=origin)
    conns = [v.conn() for _ in range(40)]
    try:
        for i, c in enumerate(conns):
            c.send_request("GET", "/c%d?body=%d" % (i, i))
        for i, c in enumerate(conns):
            assert c.read_response().body == str(i).encode()
    finally:
        for c in conns:
            c.close()
