"""The edge cache (issue 3; cache-behavior.md is binding): hit / miss, X-Cache / Cache-Status /
Age, TTLs (s-maxage, max-age, Expires, default_ttl, min/max clamping, error_ttl), what is not
stored (no-store, private, no-cache, Authorization, methods), HEAD from a GET entry, error
caching, the cache key, Vary, viewer conditionals and ranges from cache, max_object_mb, the
memory bound, metrics, and the cache across a reload.

Collapsing is in test_cache_collapse.py, revalidation / stale-* in test_cache_revalidate.py,
purge in test_cache_purge.py.

TTL tests use 2 s lifetimes and one bounded sleep each; Age is checked against the range the
wall-clock times of the two fetches allow (conftest.age_range), which is one value when the test
runs right after a second boundary (align_to_second).
"""

import hashlib
import json
import os
import socket
import time
from email.utils import formatdate

from conftest import (CACHE_STATUS_BYPASS, CACHE_STATUS_HIT, CACHE_STATUS_NOT_STORED, CACHE_STATUS_STORED, ERROR, HIT,
                      MISS, HTTPConn, age_range, align_to_second, assert_age, cache_config, cached_behavior, origin_requests_for,
                      pattern_bytes, pattern_sha256, sleep_until, wait_until)

def http_date(t):
    return formatdate(t, usegmt=True)


def assert_miss(r, stored=True, error=False):
    assert r.header("x-cache") == (ERROR if error else MISS), r.headers
    assert r.header("cache-status") == (CACHE_STATUS_STORED if stored else CACHE_STATUS_NOT_STORED), r.headers


def assert_hit(r):
    assert r.header("x-cache") == HIT, r.headers
    assert r.header("cache-status") == CACHE_STATUS_HIT, r.headers
    assert r.has_header("age"), r.headers


# ---- hit / miss and the headers verge adds ------------------------------------------------------


def test_miss_then_hit(verge, origin):
    origin.route("/a", body="hello", header="X-From: origin")
    v = verge(cache_config(origin))
    first = v.fetch("/a")
    assert (first.status, first.body, first.header("x-from")) == (200, b"hello", "origin")
    assert_miss(first)
    assert not first.has_header("age")  # a miss adds no Age (the origin sent none)
    second = v.fetch("/a")
    assert (second.status, second.body, second.header("x-from")) == (200, b"hello", "origin")
    assert second.header("content-length") == "5"
    assert_hit(second)
    assert_age(second, first)
    # A hit is still this request's response: its own request id, one Via entry, one X-Cache.
    assert second.header("x-amz-cf-id") and second.header("x-amz-cf-id") != first.header("x-amz-cf-id")
    assert len(second.header_values("x-amz-cf-id")) == 1
    assert second.header_list("via") == ["1.1 verge"], second.headers
    assert len(second.header_values("x-cache")) == 1 and len(second.header_values("cache-status")) == 1
    with v.conn() as c:  # hits on one keep-alive connection
        for _ in range(3):
            r = c.request("GET", "/a")
            assert (r.status, r.body, r.header("x-cache")) == (200, b"hello", HIT)
    # Viewer Cache-Control / Pragma cannot force a refetch (spec §10.3).
    r = v.get("/a", [("Cache-Control", "no-cache"), ("Pragma", "no-cache")])
    assert r.header("x-cache") == HIT, r.headers
    r = v.get("/a", [("Cache-Control", "max-age=0")])
    assert r.header("x-cache") == HIT, r.headers
    assert len(origin.requests) == 1


def test_age_from_the_origin_counts(verge, origin):
    """RFC 9111 §4.2.3: the origin's Age passes on a miss and is part of current_age on a hit; an
    object older than its lifetime on arrival is stale at once."""
    origin.route("/aged", header=["Age: 30", "Cache-Control: max-age=100"])
    origin.route("/too-old", header=["Age: 200", "Cache-Control: max-age=100"])
    v = verge(cache_config(origin))
    first = v.fetch("/aged")
    assert first.header_values("age") == ["30"], first.headers
    assert first.header("x-cache") == MISS
    second = v.fetch("/aged")
    assert second.header("x-cache") == HIT
    lo, hi = age_range(first, second)
    assert 30 + lo <= int(second.header("age")) <= 30 + hi + 1, second.headers  # + the response delay, rounded up
    assert len(second.header_values("age")) == 1
    for _ in range(2):
        r = v.get("/too-old")
        assert r.header("x-cache") == MISS and r.header_values("age") == ["200"], r.headers
    assert len(origin_requests_for(origin, "/too-old")) == 2


def test_big_and_chunked_objects_are_served_whole_from_cache(verge, origin):
    origin.route("/big", size=3 * 1024 * 1024 + 17)
    origin.route("/chunked", size=200003, chunked=True)
    v = verge(cache_config(origin))
    for path, size in (("/big", 3 * 1024 * 1024 + 17), ("/chunked", 200003)):
        for expected in (MISS, HIT):
            with v.conn() as c:
                r = c.request("GET", path, [("Connection", "close")], keep_body=False)
            assert (r.status, r.complete, r.body_length, r.body_sha256) == (200, True, size, pattern_sha256(size)), path
            assert r.header("x-cache") == expected, (path, r.headers)
    assert [r.path for r in origin.requests] == ["/big", "/chunked"]


def test_a_behavior_without_cache_key_caches_with_the_defaults(verge, origin):
    """The factory writes "cache": false into plain behaviors; a config written raw without any
    "cache" key shows verge's own default: a GET 200 without Cache-Control is stored."""
    v = verge(cache_config(origin))
    raw = dict(v.config, behaviors=[{"path": "*", "origin": "app"}])
    assert v.reload(raw=json.dumps(raw)).status == 200
    first = v.fetch("/plain")
    assert_miss(first)
    assert_hit(v.fetch("/plain"))
    assert len(origin.requests) == 1


def test_cache_false_passes_every_request(verge, origin):
    v = verge(cache_config(origin, [cached_behavior("/c/*"), {"path": "*", "origin": "app", "cache": False}]))
    for _ in range(2):
        r = v.get("/off")
        assert r.status == 200 and r.body == b"origin: GET /off\n"
        assert r.header("x-cache") == MISS and r.header("cache-status") == CACHE_STATUS_BYPASS, r.headers
        assert not r.has_header("age")
    assert [r.path for r in origin.requests] == ["/off", "/off"]
    assert v.get("/c/on").header("x-cache") == MISS
    assert v.get("/c/on").header("x-cache") == HIT


# ---- TTLs ----------------------------------------------------------------------------------------


def test_ttl_sources_and_clamping(verge, origin):
    """s-maxage over max-age over Expires; default_ttl; min_ttl / max_ttl clamping; error_ttl:
    everything stored at once, then looked at 3 s later (2 s lifetimes have expired, the rest
    are still hits with Age 3)."""
    v = verge(cache_config(origin, [
        cached_behavior("/d/*", default_ttl=2),
        cached_behavior("/min/*", min_ttl=5),
        cached_behavior("/max/*", default_ttl=1, max_ttl=2),
        cached_behavior("/err/*", error_ttl=2),
        cached_behavior("*"),
    ]))
    start = int(align_to_second())
    dated = lambda expires: ["Date: " + http_date(start), "Expires: " + http_date(start + expires)]  # noqa: E731
    expiring = {  # lifetime 2 s
        "/t/s-maxage": {"header": "Cache-Control: s-maxage=2, max-age=100"},
        "/t/max-age": {"header": "Cache-Control: max-age=2"},
        "/t/max-age-over-expires": {"header": ["Cache-Control: max-age=2"] + dated(100)},
        "/t/expires": {"header": dated(2)},
        "/d/default-ttl": {},
        "/max/clamped-to-max-ttl": {"header": "Cache-Control: max-age=100"},
        "/err/404-error-ttl": {"status": 404},
        "/err/503-error-ttl": {"status": 503},
    }
    lasting = {  # lifetime >= 5 s
        "/t/s-maxage-long": {"header": "Cache-Control: s-maxage=100, max-age=2"},
        "/t/max-age-long": {"header": "Cache-Control: max-age=100"},
        "/t/expires-long": {"header": dated(100)},
        "/t/default-ttl-one-day": {},
        "/d/max-age-beats-default-ttl": {"header": "Cache-Control: max-age=100"},
        "/min/clamped-to-min-ttl": {"header": "Cache-Control: max-age=1"},
        "/err/404-with-max-age": {"status": 404, "header": "Cache-Control: max-age=100"},
    }
    routes = dict(expiring, **lasting)
    for path, knobs in routes.items():
        origin.route(path, **knobs)
    # An origin Date adds an apparent age (response_time - Date) of up to one second.
    extra = {path: (1 if "Date" in str(knobs.get("header")) else 0) for path, knobs in routes.items()}
    stored = {}
    for path, knobs in routes.items():
        r = v.fetch(path)
        assert r.status == knobs.get("status", 200), path
        assert_miss(r, error=r.status >= 400)
        stored[path] = r
    for path in routes:
        r = v.fetch(path)
        assert r.header("cache-status") == CACHE_STATUS_HIT, (path, r.headers)
        assert_age(r, stored[path], extra[path])
        assert r.body == stored[path].body
    sleep_until(max(r.done_wall for r in stored.values()) + 3.1)
    for path in lasting:
        r = v.fetch(path)
        assert r.header("cache-status") == CACHE_STATUS_HIT, (path, r.headers)
        assert_age(r, stored[path], extra[path])
        assert int(r.header("age")) >= 3
    for path, knobs in expiring.items():
        r = v.fetch(path)
        assert r.status == knobs.get("status", 200)
        assert r.header("x-cache") == (ERROR if r.status >= 400 else MISS), (path, r.headers)
        assert r.header("cache-status") == CACHE_STATUS_STORED, (path, r.headers)  # refetched and stored again
        assert not r.has_header("age")
    for path in routes:
        assert len(origin_requests_for(origin, path)) == (2 if path in expiring else 1), path


def test_no_store_private_no_cache(verge, origin):
    """With min_ttl 0 these are not stored; with min_ttl > 0 CloudFront stores them for min_ttl."""
    directives = ["no-store", "private", "no-cache", "no-store, max-age=100", "private, max-age=100",
                  "no-cache, s-maxage=100", "max-age=100, NO-STORE"]
    v = verge(cache_config(origin, [cached_behavior("/floor/*", min_ttl=100), cached_behavior("*")]))
    for i, directive in enumerate(directives):
        origin.route("/d%d" % i, header="Cache-Control: " + directive)
        origin.route("/floor/d%d" % i, header="Cache-Control: " + directive)
    for i, directive in enumerate(directives):
        path = "/d%d" % i
        first = v.get(path)
        assert first.header("cache-control") == directive  # the viewer gets the origin's header
        assert_miss(first, stored=False)
        second = v.get(path)
        assert second.header("x-cache") == MISS, (directive, second.headers)
        assert second.header("cache-status") in (CACHE_STATUS_NOT_STORED, CACHE_STATUS_BYPASS), (directive, second.headers)
        assert len(origin_requests_for(origin, path)) == 2, directive
        path = "/floor/d%d" % i
        assert_miss(v.get(path))
        assert_hit(v.get(path))
        assert len(origin_requests_for(origin, path)) == 1, directive


def test_requests_with_authorization(verge, origin):
    """RFC 9111 §3.5: a response to a request with Authorization is stored only when it says
    public, s-maxage or must-revalidate. The Authorization header still reaches the origin."""
    v = verge(cache_config(origin))
    auth = [("Authorization", "Basic dXNlcjpwYXNz")]
    origin.route("/auth/public", header="Cache-Control: public")
    origin.route("/auth/s-maxage", header="Cache-Control: s-maxage=100")
    origin.route("/auth/must-revalidate", header="Cache-Control: must-revalidate, max-age=100")
    origin.route("/auth/max-age", header="Cache-Control: max-age=100")
    for path in ("/auth/plain", "/auth/max-age"):
        first = v.get(path, auth)
        assert_miss(first, stored=False)
        second = v.get(path, auth)
        assert second.header("x-cache") == MISS, second.headers
        assert second.header("cache-status") in (CACHE_STATUS_NOT_STORED, CACHE_STATUS_BYPASS), second.headers
        assert [r.header("authorization") for r in origin_requests_for(origin, path)] == ["Basic dXNlcjpwYXNz"] * 2
    for path in ("/auth/public", "/auth/s-maxage", "/auth/must-revalidate"):
        assert_miss(v.get(path, auth))
        assert_hit(v.get(path, auth))
        assert len(origin_requests_for(origin, path)) == 1, path
    # Nothing the Authorization requests got was stored for others either.
    r = v.get("/auth/plain")
    assert r.header("x-cache") == MISS and len(origin_requests_for(origin, "/auth/plain")) == 3


# ---- methods --------------------------------------------------------------------------------------


def test_only_get_and_head_use_the_cache(verge, origin):
    v = verge(cache_config(origin))
    assert_miss(v.get("/m"))
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = v.get("/m", method=method, body=b"data")
        assert r.status == 200 and r.body == ("origin: %s /m\n" % method).encode()
        assert r.header("x-cache") == MISS and r.header("cache-status") == CACHE_STATUS_BYPASS, (method, r.headers)
        r = v.get("/m", method=method, body=b"data")
        assert r.body == ("origin: %s /m\n" % method).encode()  # never stored
    r = v.get("/m")  # other methods did not touch the stored GET entry
    assert_hit(r)
    assert r.body == b"origin: GET /m\n"
    assert [r.method for r in origin.requests] == ["GET", "POST", "POST", "PUT", "PUT", "DELETE", "DELETE", "PATCH", "PATCH"]


def test_head_is_answered_from_a_get_entry_and_a_head_miss_is_not_stored(verge, origin):
    origin.route("/h", size=1234, header="Cache-Control: max-age=100")
    origin.route("/h2", size=777, header="Cache-Control: max-age=100")
    v = verge(cache_config(origin))
    assert_miss(v.get("/h"))
    r = v.get("/h", method="HEAD")
    assert_hit(r)
    assert (r.status, r.body, r.header("content-length")) == (200, b"", "1234")
    assert [r.method for r in origin.requests] == ["GET"]
    r = v.get("/h2", method="HEAD")  # a HEAD miss goes to the origin as HEAD and is not stored
    assert (r.status, r.body, r.header("content-length")) == (200, b"", "777")
    assert_miss(r, stored=False)
    r = v.get("/h2")
    assert_miss(r)
    assert r.body == pattern_bytes(777)
    r = v.get("/h2", method="HEAD")
    assert_hit(r)
    assert r.header("content-length") == "777"
    assert_hit(v.get("/h2"))
    assert [(r.method, r.path) for r in origin.requests] == [("GET", "/h"), ("HEAD", "/h2"), ("GET", "/h2")]


# ---- error caching ------------------------------------------------------------------------------


def test_error_caching(verge, origin):
    """§10.3: 404, 414, 500, 501, 502, 503, 504 are stored (error_ttl); 400, 403, 405, 412, 415
    only with max-age / s-maxage."""
    v = verge(cache_config(origin))
    always = (404, 414, 500, 501, 502, 503, 504)
    only_explicit = (400, 403, 405, 412, 415)
    for status in always + only_explicit:
        origin.route("/s%d" % status, status=status, body="error %d" % status)
        origin.route("/s%d-max-age" % status, status=status, body="error %d" % status, header="Cache-Control: max-age=100")
    for status in always:
        first = v.get("/s%d" % status)
        assert first.status == status and first.body == b"error %d" % status
        assert_miss(first, error=True)
        second = v.get("/s%d" % status)
        assert (second.status, second.body) == (status, b"error %d" % status)
        assert second.header("cache-status") == CACHE_STATUS_HIT and second.has_header("age"), (status, second.headers)
        assert second.header("x-cache") == HIT, second.headers  # served from cache (Error is the origin's or verge's own)
        assert len(origin_requests_for(origin, "/s%d" % status)) == 1, status
    for status in only_explicit:
        for _ in range(2):
            r = v.get("/s%d" % status)
            assert r.status == status
            assert r.header("x-cache") == ERROR, (status, r.headers)
            assert r.header("cache-status") in (CACHE_STATUS_NOT_STORED, CACHE_STATUS_BYPASS), (status, r.headers)
        assert len(origin_requests_for(origin, "/s%d" % status)) == 2, status
        assert_miss(v.get("/s%d-max-age" % status), error=True)
        r = v.get("/s%d-max-age" % status)
        assert r.status == status and r.header("cache-status") == CACHE_STATUS_HIT, (status, r.headers)
        assert len(origin_requests_for(origin, "/s%d-max-age" % status)) == 1, status


def test_verge_own_errors_say_error(verge, origin_factory):
    gone = origin_factory()
    gone.stop()
    v = verge(cache_config(gone))
    r = v.get("/x")
    assert r.status == 502 and r.body == b"verge: origin connection refused\n"
    assert r.header("x-cache") == ERROR, r.headers


# ---- the cache key --------------------------------------------------------------------------------


def run_key_script(v, origin, path, script):
    """script: [(target, headers, expected X-Cache)]; checks each answer and that the origin got
    exactly the targets of the misses, queries untouched."""
    misses = []
    for target, headers, expected in script:
        r = v.get(target, headers)
        assert r.status == 200 and r.header("x-cache") == expected, (target, headers, expected, r.headers)
        if expected == MISS:
            misses.append(target)
    assert [r.target for r in origin_requests_for(origin, path)] == misses


def test_key_query_modes(verge, origin):
    v = verge(cache_config(origin, [
        cached_behavior("/all/*", key={"query": "all"}),
        cached_behavior("/list/*", key={"query": ["b", "a"]}),
        cached_behavior("/except/*", key={"query": {"except": ["utm_source", "utm_medium"]}}),
        cached_behavior("/none/*", key={"query": "none"}),
        cached_behavior("*"),
    ]))
    run_key_script(v, origin, "/q", [  # the default: no query in the key
        ("/q?a=1", [], MISS), ("/q?a=2", [], HIT), ("/q", [], HIT), ("/q?b=1&a=1", [], HIT)])
    run_key_script(v, origin, "/none/q", [("/none/q?a=1", [], MISS), ("/none/q?z=9", [], HIT)])
    run_key_script(v, origin, "/all/q", [
        ("/all/q?a=1&b=2", [], MISS), ("/all/q?b=2&a=1", [], HIT), ("/all/q?a=1&b=2", [], HIT),
        ("/all/q?a=1&b=3", [], MISS), ("/all/q?a=1", [], MISS), ("/all/q", [], MISS), ("/all/q?", [], HIT),
        ("/all/q?a=1&b=2&c=", [], MISS)])
    run_key_script(v, origin, "/list/q", [
        ("/list/q?a=1&x=1", [], MISS), ("/list/q?x=2&a=1", [], HIT), ("/list/q?a=2&x=1", [], MISS),
        ("/list/q?b=1&a=2", [], MISS), ("/list/q?a=2&b=1&y=5", [], HIT), ("/list/q", [], MISS), ("/list/q?x=3", [], HIT)])
    run_key_script(v, origin, "/except/q", [
        ("/except/q?a=1&utm_source=x", [], MISS), ("/except/q?utm_source=y&a=1", [], HIT),
        ("/except/q?a=1&utm_medium=m", [], HIT), ("/except/q?a=1", [], HIT), ("/except/q?a=2&utm_source=x", [], MISS),
        ("/except/q?a=1&b=1", [], MISS)])


def test_key_headers_cookies_and_host(verge, origin):
    v = verge(cache_config(origin, [
        cached_behavior("/hdr/*", key={"headers": ["Accept-Language", "x-device"]}),
        cached_behavior("/ck/*", key={"cookies": ["session"]}),
        cached_behavior("/ckall/*", key={"cookies": "all"}),
        cached_behavior("/ckexc/*", key={"cookies": {"except": ["tracking"]}}),
        cached_behavior("*"),
    ]))
    al = lambda value: [("Accept-Language", value)]  # noqa: E731
    run_key_script(v, origin, "/hdr/x", [
        ("/hdr/x", al("en"), MISS), ("/hdr/x", [("accept-language", "en")], HIT), ("/hdr/x", al("fr"), MISS),
        ("/hdr/x", [], MISS), ("/hdr/x", [], HIT), ("/hdr/x", al("en") + [("X-Device", "phone")], MISS),
        ("/hdr/x", [("X-Device", "phone"), ("Accept-Language", "en")], HIT), ("/hdr/x", [("X-Other", "1")], HIT)])
    assert [r.header("accept-language") for r in origin_requests_for(origin, "/hdr/x")] == ["en", "fr", None, "en"]
    ck = lambda value: [("Cookie", value)]  # noqa: E731
    run_key_script(v, origin, "/ck/x", [
        ("/ck/x", ck("session=1; other=a"), MISS), ("/ck/x", ck("other=b; session=1"), HIT), ("/ck/x", ck("session=2"), MISS),
        ("/ck/x", [], MISS), ("/ck/x", ck("other=c"), HIT)])
    assert origin_requests_for(origin, "/ck/x")[0].header("cookie") == "session=1; other=a"  # forwarded whole
    run_key_script(v, origin, "/ckall/x", [
        ("/ckall/x", ck("a=1; b=2"), MISS), ("/ckall/x", ck("b=2; a=1"), HIT), ("/ckall/x", ck("a=1"), MISS),
        ("/ckall/x", [], MISS)])
    run_key_script(v, origin, "/ckexc/x", [
        ("/ckexc/x", ck("a=1; tracking=x"), MISS), ("/ckexc/x", ck("tracking=y; a=1"), HIT), ("/ckexc/x", ck("a=1"), HIT),
        ("/ckexc/x", ck("a=2; tracking=x"), MISS)])
    # The default key is host + path: the viewer's Host.
    run_key_script(v, origin, "/host", [
        ("/host", [("Host", "a.example")], MISS), ("/host", [("Host", "b.example")], MISS),
        ("/host", [("Host", "a.example")], HIT), ("/host", [("Host", "A.EXAMPLE")], HIT),
        ("/host", [("Host", "b.example")], HIT)])
    assert origin_requests_for(origin, "/host")[0].header("host") == "127.0.0.1:%d" % origin.port


# ---- Vary ---------------------------------------------------------------------------------------------


def test_vary_keeps_several_variants(verge, origin):
    origin.route("/v", echo=True, header=["Vary: Accept-Language", "Cache-Control: max-age=100"])
    origin.route("/vstar", header=["Vary: *", "Cache-Control: max-age=100"])
    v = verge(cache_config(origin))

    def language_seen(r):
        return dict((n.lower(), val) for n, val in r.json()["headers"]).get("accept-language")

    for lang, expected in (("en", MISS), ("fr", MISS), ("en", HIT), ("fr", HIT), ("de", MISS), (None, MISS), (None, HIT),
                           ("fr", HIT)):
        r = v.get("/v", [("Accept-Language", lang)] if lang else [])
        assert r.status == 200 and r.header("x-cache") == expected, (lang, r.headers)
        assert language_seen(r) == lang, (lang, r.text)
    assert [r.header("accept-language") for r in origin_requests_for(origin, "/v")] == ["en", "fr", "de", None]
    for _ in range(3):
        r = v.get("/vstar")
        assert r.header("x-cache") == MISS, r.headers
        assert r.header("cache-status") in (CACHE_STATUS_NOT_STORED, CACHE_STATUS_BYPASS), r.headers
    assert len(origin_requests_for(origin, "/vstar")) == 3


# ---- viewer conditionals and ranges from cache ------------------------------------------------------


def test_viewer_conditionals_and_ranges_from_cache(verge, origin):
    last_modified = "Wed, 21 Oct 2015 07:28:00 GMT"
    origin.route("/c", size=1000, etag='"c1"', last_modified=last_modified, header="Cache-Control: max-age=100")
    v = verge(cache_config(origin))
    assert_miss(v.get("/c"))

    def check(headers, status, body=None, content_range=None):
        r = v.get("/c", headers)
        assert r.status == status, (headers, r.status, r.headers)
        assert r.header("x-cache") == HIT, (headers, r.headers)
        if status == 304:
            assert r.body == b"" and r.header("etag") == '"c1"', r.headers
        if body is not None:
            assert r.body == body, headers
            assert r.header("content-length") == str(len(body)), r.headers
        assert r.header("content-range") == content_range, (headers, r.headers)
        return r

    full = pattern_bytes(1000)
    check([("If-None-Match", '"c1"')], 304)
    check([("If-None-Match", 'W/"c1"')], 304)
    check([("If-None-Match", '"x", "c1"')], 304)
    check([("If-None-Match", "*")], 304)
    check([("If-None-Match", '"zz"')], 200, full)
    check([("If-Modified-Since", last_modified)], 304)
    check([("If-Modified-Since", "Thu, 22 Oct 2015 07:28:00 GMT")], 304)
    check([("If-Modified-Since", "Tue, 20 Oct 2015 07:28:00 GMT")], 200, full)
    check([("If-None-Match", '"zz"'), ("If-Modified-Since", last_modified)], 200, full)  # If-None-Match decides
    check([("Range", "bytes=0-99")], 206, full[:100], "bytes 0-99/1000")
    check([("Range", "bytes=990-")], 206, full[990:], "bytes 990-999/1000")
    check([("Range", "bytes=-5")], 206, full[995:], "bytes 995-999/1000")
    check([("Range", "bytes=500-5000")], 206, full[500:], "bytes 500-999/1000")
    check([("Range", "bytes=1000-2000")], 416, None, "bytes */1000")
    check([("Range", "bytes=x-y")], 200, full)  # unparseable: ignored
    check([("Range", "bytes=10-19"), ("If-Range", '"c1"')], 206, full[10:20], "bytes 10-19/1000")
    check([("Range", "bytes=10-19"), ("If-Range", '"c0"')], 200, full)
    check([("Range", "bytes=10-19"), ("If-Range", 'W/"c1"')], 200, full)  # If-Range compares strongly
    check([("Range", "bytes=10-19"), ("If-Range", "Tue, 20 Oct 2015 07:28:00 GMT")], 200, full)
    assert len(origin.requests) == 1  # none of it reached the origin


# ---- size limits and memory --------------------------------------------------------------------------


def test_objects_over_max_object_mb_pass_through_uncached(verge, origin):
    big = 1536 * 1024
    origin.route("/big", size=big, header="Cache-Control: max-age=100")
    origin.route("/bigchunked", size=big, chunked=True, header="Cache-Control: max-age=100")
    origin.route("/small", size=1000, header="Cache-Control: max-age=100")
    v = verge(cache_config(origin, cache={"max_object_mb": 1}))
    known_length_statuses = []
    for path in ("/big", "/bigchunked"):
        for i in range(2):
            with v.conn() as c:
                r = c.request("GET", path, [("Connection", "close")], keep_body=False)
            assert (r.status, r.complete, r.body_length, r.body_sha256) == (200, True, big, pattern_sha256(big)), path
            assert r.header("x-cache") == MISS, (path, i, r.headers)
            if path == "/big":
                known_length_statuses.append(r.header("cache-status"))
        assert len(origin_requests_for(origin, path)) == 2, path
    assert_miss(v.get("/small"))
    assert_hit(v.get("/small"))
    m = v.metrics()
    assert m.get("verge_cache_objects") == 1
    assert m.get("verge_cache_bytes") < 1024 * 1024
    # The Content-Length was in the head: verge knew it would not store /big, and must not say "stored".
    for status in known_length_statuses:
        assert status in (CACHE_STATUS_NOT_STORED, CACHE_STATUS_BYPASS), known_length_statuses


def test_memory_bound_holds_while_4x_memory_is_written(verge, origin):
    """cache.memory_mb 4, 16 MB written through 64 distinct keys of 256 KiB: verge_cache_bytes
    stays within the budget, objects are evicted, the newest is a hit, and RSS does not grow
    by much more than the budget (ASan's quarantine is turned down so that freed objects do not
    count)."""
    size = 256 * 1024
    budget = 4 * 1024 * 1024
    origin.route("*", size=size, header="Cache-Control: max-age=1000")
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"}
    v = verge(dict(cache_config(origin, cache={"memory_mb": 4}), threads=1), env=env)
    with v.conn() as c:  # warm up: pools, buffers, one object
        for i in range(4):
            assert c.request("GET", "/warm%d" % i, keep_body=False).status == 200
    before = v.metrics()
    v.reset_hwm()
    rss_before = v.rss_kb()
    with v.conn() as c:
        for i in range(64):
            r = c.request("GET", "/obj%d" % i, keep_body=False)
            assert (r.status, r.body_length, r.body_sha256) == (200, size, pattern_sha256(size)), i
            assert r.header("x-cache") == MISS
            if i % 8 == 7:
                assert v.metrics().get("verge_cache_bytes") <= budget, i
    m = v.metrics()
    growth_kb = max(v.hwm_kb(), v.rss_kb()) - rss_before
    assert 0 < m.get("verge_cache_bytes") <= budget
    assert 1 <= m.get("verge_cache_objects") <= 16
    assert m.get("verge_cache_evictions_total") - before.get("verge_cache_evictions_total") >= 64 - 16
    r = v.get("/obj63")
    assert r.header("x-cache") == HIT and r.body == pattern_bytes(size)
    assert growth_kb <= 4 * 1024 + 8 * 1024, "RSS grew by %d kB while 16 MB went through a 4 MB cache" % growth_kb


# ---- metrics and reload ---------------------------------------------------------------------------------


def test_metrics_count_hits_misses_objects_bytes(verge, origin):
    origin.route("/a", size=5000)
    origin.route("/b", size=3000)
    v = verge(cache_config(origin))
    before = v.metrics()
    for name in ("verge_cache_hits_total", "verge_cache_misses_total", "verge_cache_refresh_hits_total",
                 "verge_cache_collapsed_total", "verge_cache_evictions_total", "verge_cache_purged_total"):
        assert before.get(name) == 0, name
        assert before.types.get(name) == "counter", name
    for reason in ("while_revalidate", "if_error"):
        assert before.get("verge_cache_stale_served_total", reason=reason) == 0, reason
    for name in ("verge_cache_objects", "verge_cache_bytes"):
        assert before.get(name) == 0 and before.types.get(name) == "gauge", name
    for target in ("/a", "/a", "/a", "/b", "/b"):
        assert v.get(target).status == 200
    m = v.metrics()
    assert m.get("verge_cache_hits_total") == 3
    assert m.get("verge_cache_misses_total") == 2
    assert m.get("verge_cache_objects") == 2
    assert 8000 <= m.get("verge_cache_bytes") <= 8000 + 256 * 1024  # bodies plus head and chunk overhead


def test_cache_survives_a_reload(verge, origin):
    origin.route("/r", body="kept", header="Cache-Control: max-age=1000")
    config = cache_config(origin, cache={"memory_mb": 16})
    v = verge(config)
    assert_miss(v.get("/r"))
    assert_hit(v.get("/r"))
    r = v.reload(config)
    assert r.status == 200 and r.json() == {"ok": True, "generation": 2}
    r = v.get("/r")
    assert_hit(r)
    assert r.body == b"kept"
    v.reload(config, via="sighup")
    assert_hit(v.get("/r"))
    assert len(origin.requests) == 1


def test_reload_applies_a_smaller_memory_budget(verge, origin):
    size = 512 * 1024
    origin.route("*", size=size, header="Cache-Control: max-age=1000")
    config = cache_config(origin, cache={"memory_mb": 8})
    v = verge(config)
    with v.conn() as c:
        for i in range(10):
            assert c.request("GET", "/f%d" % i, keep_body=False).status == 200
    assert v.metrics().get("verge_cache_bytes") >= 4 * 1024 * 1024
    assert v.reload(cache_config(origin, cache={"memory_mb": 2})).status == 200
    wait_until(lambda: v.metrics().get("verge_cache_bytes") <= 2 * 1024 * 1024, 5,
               message="verge_cache_bytes within the new 2 MB budget")
    with HTTPConn(v.port) as c:  # it still serves and stores within the new budget
        for i in range(10, 16):
            assert c.request("GET", "/f%d" % i, keep_body=False).status == 200
    assert v.metrics().get("verge_cache_bytes") <= 2 * 1024 * 1024


def test_static_origin_responses_are_stored_whole(tmp_path, verge):
    """A static origin fills the cache like a url origin: the whole file (not a 304 or a range the
    first viewer asked for), then hits; its 404s are stored with error_ttl."""
    root = tmp_path / "www"
    root.mkdir()
    body = bytes(range(256)) * 400  # 100 KiB: file-backed chunks
    (root / "big.bin").write_bytes(body)
    v = verge({"origins": {"files": {"static": str(root)}},
               "behaviors": [{"path": "*", "origin": "files", "cache": {}}]})
    first = v.get("/big.bin", headers=[("If-None-Match", '"nope"'), ("Range", "bytes=0-9")])
    assert first.status == 200 and first.body == body  # the filling viewer gets it whole
    assert first.header("x-cache") == MISS and first.header("cache-status") == CACHE_STATUS_STORED
    hit = v.get("/big.bin")
    assert hit.status == 200 and hit.body == body
    assert hit.header("x-cache") == HIT
    # Ranges are answered from a complete object; the fill may still be finishing its last chunk
    # when the first hit has read the whole body (seen on a loaded machine), hence the bounded wait.
    ranged = wait_until(lambda: (lambda r: r if r.status == 206 else None)(v.get("/big.bin", headers=[("Range", "bytes=10-19")])),
                        5, message="a ranged hit answered 206 once the object is complete")
    assert ranged.body == body[10:20] and ranged.header("x-cache") == HIT
    etag = hit.header("etag")
    assert v.get("/big.bin", headers=[("If-None-Match", etag)]).status == 304
    missing = v.get("/nope.txt")
    assert missing.status == 404 and missing.header("cache-status") == CACHE_STATUS_STORED
    again = v.get("/nope.txt")
    assert again.status == 404 and again.header("cache-status") == CACHE_STATUS_HIT and again.body == missing.body


def test_a_slow_reader_of_a_stored_object_gets_it_whole(verge, origin):
    """Stored bodies go out without a copy (sendfile / sendmsg of the stored chunks): what a full
    socket does not take must be offered again when it drains, from the right offset."""
    size = 9 * 1024 * 1024 + 5  # more than a socket send buffer holds (tcp_wmem max is 4 MiB)
    origin.route("/slow-reader", size=size, header="Cache-Control: max-age=100")
    v = verge(cache_config(origin))
    assert v.fetch("/slow-reader").header("x-cache") == MISS
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # a small window: verge meets a full socket
    s.settimeout(10)
    s.connect(("127.0.0.1", v.port))
    s.sendall(b"GET /slow-reader HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % v.port)  # the key's host
    time.sleep(0.3)  # let verge fill the socket and wait for it to drain
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) < 64 * 1024:
            time.sleep(0.001)  # read the first part slowly
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"X-Cache: Hit from verge" in head, head
    assert len(body) == size and hashlib.sha256(body).hexdigest() == pattern_sha256(size)
