"""Purge on the admin listener (issue 3 item 8; cache-behavior.md "Admin"): POST /purge with
{"paths": [...]} (CloudFront invalidation syntax: exact path or prefix ending in '*'; all variants
and query strings of a path), {"tags": [...]} (Surrogate-Key / Cache-Tag) or {"all": true};
synchronous; 200 {"purged": N}; a malformed body is 400 {"error": "..."}.
"""

from conftest import HIT, MISS, cache_config, cached_behavior


def expect(v, target, kind, headers=None):
    r = v.get(target, headers)
    assert r.status == 200 and r.header("x-cache") == kind, (target, headers, kind, r.headers)


def purge(v, body, purged):
    r = v.purge(body)
    assert r.status == 200, (body, r.status, r.body)
    assert r.header("content-type", "").startswith("application/json"), r.headers
    assert r.json() == {"purged": purged}, (body, r.body)


def test_purge_by_path_and_prefix_and_all(verge, origin):
    origin.route("/p/v", header="Vary: Accept-Language")
    v = verge(cache_config(origin, [cached_behavior(key={"query": "all"})]))
    en, fr = [("Accept-Language", "en")], [("Accept-Language", "fr")]
    targets = ["/p/a?x=1", "/p/a?x=2", "/p/a", "/p/ab", "/p/c/d", "/q/1", "/pp"]
    for target in targets:
        expect(v, target, MISS)
    expect(v, "/p/v", MISS, en)
    expect(v, "/p/v", MISS, fr)
    for target in targets:
        expect(v, target, HIT)
    before = v.metrics()
    assert before.get("verge_cache_objects") == 9

    purge(v, {"paths": ["/p/a"]}, 3)  # every query string of /p/a, and nothing else
    expect(v, "/p/a?x=1", MISS)
    expect(v, "/p/a?x=2", MISS)
    expect(v, "/p/ab", HIT)
    purge(v, {"paths": ["/p/v"]}, 2)  # both Vary variants
    expect(v, "/p/v", MISS, en)
    purge(v, {"paths": ["/nothing/here"]}, 0)
    # Now stored: /p/a?x=1, /p/a?x=2, /p/ab, /p/c/d, /q/1, /pp, /p/v (en).
    purge(v, {"paths": ["/p/*"]}, 5)
    for target in ("/p/ab", "/p/c/d"):
        expect(v, target, MISS)
    for target in ("/q/1", "/pp"):
        expect(v, target, HIT)
    purge(v, {"paths": ["/p*", "/q/1"]}, 4)  # /p/ab, /p/c/d, /pp and /q/1; several paths add up
    expect(v, "/q/1", MISS)
    expect(v, "/p/a", MISS)
    objects = v.metrics().get("verge_cache_objects")
    assert objects == 2
    purge(v, {"all": True}, 2)
    m = v.metrics()
    assert m.get("verge_cache_objects") == 0 and m.get("verge_cache_bytes") == 0
    assert m.get("verge_cache_purged_total") - before.get("verge_cache_purged_total") == 3 + 2 + 0 + 5 + 4 + 2
    expect(v, "/q/1", MISS)


def test_purge_by_tag(verge, origin):
    origin.route("/t1", header="Surrogate-Key: red blue")
    origin.route("/t2", header="Cache-Tag: blue, green")
    origin.route("/t3", header="Cache-Tag: green,yellow")
    origin.route("/t4")
    v = verge(cache_config(origin))
    for target in ("/t1", "/t2", "/t3", "/t4"):
        expect(v, target, MISS)
    purge(v, {"tags": ["blue"]}, 2)
    expect(v, "/t1", MISS)
    expect(v, "/t2", MISS)
    expect(v, "/t3", HIT)
    purge(v, {"tags": ["green"]}, 2)  # /t2 again (stored anew) and /t3
    expect(v, "/t3", MISS)
    purge(v, {"tags": ["yellow", "red"]}, 2)
    purge(v, {"tags": ["nope"]}, 0)
    purge(v, {"tags": ["gre"]}, 0)  # whole tags only
    expect(v, "/t4", HIT)
    expect(v, "/t2", MISS)


def test_purge_rejects_malformed_bodies(verge, origin):
    v = verge(cache_config(origin))
    expect(v, "/keep", MISS)
    for body in (b"", b"not json", b"[]", b'{"paths": "/keep"}', b'{"paths": [1]}', b'{"tags": "x"}', b'{"unknown": true}'):
        r = v.purge(body)
        assert r.status == 400, (body, r.status, r.body)
        error = r.json().get("error")
        assert isinstance(error, str) and error, (body, r.body)
    expect(v, "/keep", HIT)
    assert v.admin("GET", "/purge").status == 405
