"""Revalidation and serving stale (issue 3 item 5; cache-behavior.md "Revalidation",
"stale-while-revalidate", "stale-if-error"): a stale object with an ETag or Last-Modified is
refreshed with a conditional request and a 304 (RefreshHit, headers updated); a 200 replaces it;
stale-while-revalidate serves stale at once with one background refresh; stale-if-error serves
stale when the origin is down or answers 5xx. Lifetimes are 1 s; each test sleeps once until
everything is stale (2.1 s after the last store).
"""

import time

from conftest import (CACHE_STATUS_HIT, CACHE_STATUS_REFRESHED, CACHE_STATUS_STALE, CACHE_STATUS_STALE_IF_ERROR,
                      CACHE_STATUS_STORED, ERROR, HIT, MISS, REFRESH_HIT, assert_age, cache_config, cached_behavior,
                      origin_requests_for, sleep_until, wait_until)

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def fetch_all(v, paths):
    stored = {}
    for path in paths:
        r = v.fetch(path)
        assert r.status == 200 and r.header("x-cache") == MISS, (path, r.headers)
        stored[path] = r
    return stored


def test_refresh_with_etag_and_last_modified(verge, origin):
    origin.route("/etag", etag='"v1"', body="etag body", header=["Cache-Control: max-age=1", "X-Rev: 1"])
    origin.route("/lm", last_modified=LAST_MODIFIED, body="lm body", header=["Cache-Control: max-age=1", "X-Rev: 1"])
    origin.route("/changed", etag='"c1"', body="old", header="Cache-Control: max-age=1")
    origin.route("/no-validator", body="plain", header="Cache-Control: max-age=1")
    v = verge(cache_config(origin))
    before = v.metrics()
    stored = fetch_all(v, ["/etag", "/lm", "/changed", "/no-validator"])
    sleep_until(max(r.done_wall for r in stored.values()) + 2.1)
    # The origin's 304s carry new header values (a longer max-age among them, which the refreshed
    # objects take: the hits checked at the end stay fresh however slow the machine is); /changed
    # has a new version.
    origin.route("/etag", etag='"v1"', body="etag body", header=["Cache-Control: max-age=60", "X-Rev: 2"])
    origin.route("/lm", last_modified=LAST_MODIFIED, body="lm body", header=["Cache-Control: max-age=60", "X-Rev: 2"])
    origin.route("/changed", etag='"c2"', body="new", header="Cache-Control: max-age=60")

    refreshed = {}
    for path, body in (("/etag", b"etag body"), ("/lm", b"lm body")):
        r = v.fetch(path)
        assert (r.status, r.body, r.header("x-rev")) == (200, body, "2"), (path, r.headers)
        assert r.header("x-cache") == REFRESH_HIT and r.header("cache-status") == CACHE_STATUS_REFRESHED, (path, r.headers)
        assert_age(r, r)  # the 304 made it fresh again: Age counts from the revalidation
        refreshed[path] = r
    conditional = origin_requests_for(origin, "/etag")[1]
    assert conditional.method == "GET" and conditional.header("if-none-match") == '"v1"'
    assert conditional.answered_status == 304
    conditional = origin_requests_for(origin, "/lm")[1]
    assert conditional.header("if-modified-since") == LAST_MODIFIED and conditional.answered_status == 304

    r = v.fetch("/changed")  # the origin answers 200: the object is replaced
    assert (r.status, r.body, r.header("etag")) == (200, b"new", '"c2"')
    assert r.header("x-cache") == MISS and r.header("cache-status") == CACHE_STATUS_STORED, r.headers
    conditional = origin_requests_for(origin, "/changed")[1]
    assert conditional.header("if-none-match") == '"c1"' and conditional.answered_status == 200
    refreshed["/changed"] = r

    r = v.fetch("/no-validator")  # nothing to validate with: a plain refetch
    assert r.header("x-cache") == MISS and r.body == b"plain"
    request = origin_requests_for(origin, "/no-validator")[1]
    assert not request.has_header("if-none-match") and not request.has_header("if-modified-since")

    for path, body, rev in (("/etag", b"etag body", "2"), ("/lm", b"lm body", "2"), ("/changed", b"new", None)):
        r = v.fetch(path)
        assert (r.body, r.header("x-rev"), r.header("x-cache")) == (body, rev, HIT), (path, r.headers)
        assert r.header("cache-status") == CACHE_STATUS_HIT
        assert_age(r, refreshed[path])
        assert len(origin_requests_for(origin, path)) == 2, path
    m = v.metrics()
    assert m.get("verge_cache_refresh_hits_total") - before.get("verge_cache_refresh_hits_total") == 2


def test_stale_while_revalidate(verge, origin):
    """From the response's directive and from the behavior setting: the stale object is served at
    once (the origin now takes 0.8 s), exactly one background request refreshes it, then the
    fresh object is served."""
    cache_control = {"/directive": "Cache-Control: max-age=1, stale-while-revalidate=30",
                     "/b/setting": "Cache-Control: max-age=1"}
    for path, header in cache_control.items():
        origin.route(path, body="v1", header=header)
    v = verge(cache_config(origin, [cached_behavior("/b/*", stale_while_revalidate=30), cached_behavior("*")]))
    before = v.metrics()
    stored = fetch_all(v, list(cache_control))
    sleep_until(max(r.done_wall for r in stored.values()) + 2.1)
    for path in cache_control:  # the refresh is slow; what it brings stays fresh (0.8 s would eat a 1 s lifetime)
        origin.route(path, body="v2", delay_ms=800, header="Cache-Control: max-age=100")
    for path in cache_control:
        for _ in range(3):
            start = time.monotonic()
            r = v.fetch(path)
            took = time.monotonic() - start
            assert (r.status, r.body) == (200, b"v1"), (path, r.headers)
            assert r.header("x-cache") == HIT and r.header("cache-status") == CACHE_STATUS_STALE, (path, r.headers)
            assert_age(r, stored[path])
            assert took < 0.5, "a stale-while-revalidate answer took %.2f s (waited for the origin?)" % took
    for path in cache_control:
        requests = wait_until(lambda: at_least(origin_requests_for(origin, path), 2), 5, message="the refresh of " + path)
        wait_until(lambda: requests[1].answered_at is not None, 5, message="the origin's answer to the refresh")
        fresh = wait_until(lambda: fresh_or_none(v, path), 5, message="the refreshed object of " + path)
        assert fresh.body == b"v2" and fresh.header("x-cache") == HIT
        assert int(fresh.header("age")) <= 2  # the origin's 0.8 s response delay counts (RFC 9111 §4.2.3)
    for path in cache_control:
        assert len(origin_requests_for(origin, path)) == 2, "exactly one background refresh of " + path
    m = v.metrics()
    served = m.get("verge_cache_stale_served_total", reason="while_revalidate") - \
        before.get("verge_cache_stale_served_total", reason="while_revalidate")
    assert served >= 6, served


def at_least(items, count):
    return items if len(items) >= count else None


def fresh_or_none(v, path):
    r = v.get(path)
    return r if r.header("cache-status") == CACHE_STATUS_HIT else None


def test_stale_if_error_with_the_origin_down(verge, origin_factory):
    origin = origin_factory()
    origin.route("/directive", body="v1", header="Cache-Control: max-age=1, stale-if-error=60")
    origin.route("/b/setting", body="v1", header="Cache-Control: max-age=1")
    origin.route("/none", body="v1", header="Cache-Control: max-age=1")
    v = verge(cache_config(origin, [cached_behavior("/b/*", stale_if_error=60), cached_behavior("*")]))
    before = v.metrics()
    stored = fetch_all(v, ["/directive", "/b/setting", "/none"])
    origin.stop()
    sleep_until(max(r.done_wall for r in stored.values()) + 2.1)
    for path in ("/directive", "/b/setting"):
        r = v.fetch(path)
        assert (r.status, r.body) == (200, b"v1"), (path, r.status, r.body)
        assert r.header("cache-status") == CACHE_STATUS_STALE_IF_ERROR, (path, r.headers)
        assert r.header("x-cache") == HIT, (path, r.headers)
        assert_age(r, stored[path])
    r = v.get("/none")  # no stale-if-error window: verge's own 502
    assert (r.status, r.body) == (502, b"verge: origin connection refused\n")
    assert r.header("x-cache") == ERROR, r.headers
    m = v.metrics()
    assert m.get("verge_cache_stale_served_total", reason="if_error") - \
        before.get("verge_cache_stale_served_total", reason="if_error") == 2


def test_stale_if_error_on_a_5xx(verge, origin):
    origin.route("/directive", body="v1", header="Cache-Control: max-age=1, stale-if-error=60")
    origin.route("/b/setting", body="v1", header="Cache-Control: max-age=1")
    origin.route("/none", body="v1", header="Cache-Control: max-age=1")
    v = verge(cache_config(origin, [cached_behavior("/b/*", stale_if_error=60), cached_behavior("*")]))
    stored = fetch_all(v, ["/directive", "/b/setting", "/none"])
    sleep_until(max(r.done_wall for r in stored.values()) + 2.1)
    for path in ("/directive", "/b/setting", "/none"):
        origin.route(path, status=503, body="down")
    for path in ("/directive", "/b/setting"):
        r = v.fetch(path)
        assert (r.status, r.body) == (200, b"v1"), (path, r.status, r.body)
        assert r.header("cache-status") == CACHE_STATUS_STALE_IF_ERROR, (path, r.headers)
        assert_age(r, stored[path])
        assert [q.answered_status for q in origin_requests_for(origin, path)] == [200, 503]
    r = v.get("/none")
    assert (r.status, r.body, r.header("x-cache")) == (503, b"down", ERROR), r.headers
