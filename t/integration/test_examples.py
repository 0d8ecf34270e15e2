"""The recipes in examples/recipes/ (issue 6): each one's verge.json and Lua function, driven
through a running verge the way a user would run it (listen address and origin swapped for the
test's)."""

import json
import os
import re

import pytest

from conftest import HIT, MISS, REPO, HTTPConn, free_port, run_verge

RECIPES = os.path.join(REPO, "examples", "recipes")


def recipe_config(name, origin=None, origins=None):
    """The recipe's verge.json, its paths made absolute, its url origins pointed at `origin` (or
    each at origins[its name])."""
    directory = os.path.join(RECIPES, name)
    with open(os.path.join(directory, "verge.json")) as f:
        config = json.loads(re.sub(r"^\s*//.*$", "", f.read(), flags=re.M))
    del config["listen"]
    for function in config["functions"].values():
        function["code"] = os.path.join(directory, function["code"])
    for origin_name, entry in config["origins"].items():
        if "static" in entry:
            entry["static"] = os.path.normpath(os.path.join(directory, entry["static"]))
        if "url" in entry:
            entry["url"] = (origins[origin_name] if origins else origin).url
    return config


@pytest.mark.parametrize("name", sorted(os.listdir(RECIPES)))
def test_every_recipe_passes_check_as_shipped(name):
    r = run_verge("check", "-c", os.path.join(RECIPES, name, "verge.json"))
    assert r.returncode == 0, r.stderr


def test_security_headers(verge):
    v = verge(recipe_config("security-headers"))
    r = v.get("/")
    assert r.status == 200
    assert r.header("strict-transport-security") == "max-age=63072000; includeSubDomains; preload"
    assert (r.header("x-content-type-options"), r.header("x-frame-options")) == ("nosniff", "DENY")
    assert r.header("content-security-policy") == "default-src 'self'"


def test_redirect_map(verge, origin):
    v = verge(recipe_config("redirect-map", origin))
    for _ in range(2):
        r = v.get("/old")
        assert (r.status, r.header("location")) == (301, "/new"), r.headers
    assert r.header("x-cache") == HIT  # generated at origin-request: cached
    assert v.get("/docs").header("location") == "https://docs.example.com/"
    r = v.get("/kept")
    assert (r.status, r.body) == (200, b"origin: GET /kept\n")
    assert [x.path for x in origin.requests] == ["/kept"]


def test_ab_testing(verge, origin):
    v = verge(recipe_config("ab-testing", origin))
    assert v.get("/experiment/page", [("Cookie", "theme=dark; experiment=b")]).body == b"origin: GET /experiment-b/page\n"
    assert v.get("/experiment/page", [("Cookie", "experiment=a")]).body == b"origin: GET /experiment-a/page\n"
    groups = set()
    for _ in range(20):  # no cookie: a group at random, told to the origin
        v.get("/experiment/x")
        groups.add(origin.requests[-1].header("x-experiment"))
    assert groups <= {"a", "b"} and groups, groups
    assert v.get("/other").body == b"origin: GET /other\n"


def test_basic_auth(verge):
    v = verge(recipe_config("basic-auth"))
    r = v.get("/")
    assert r.status == 401 and r.header("www-authenticate") == 'Basic realm="example"', (r.status, r.headers)
    assert r.header("x-cache") == "LambdaGeneratedResponse from verge"
    assert v.get("/", [("Authorization", "Basic d3Jvbmc6d3Jvbmc=")]).status == 401
    r = v.get("/", [("Authorization", "Basic dXNlcjpwYXNz")])  # user:pass
    assert r.status == 200 and b"<html" in r.body.lower()


def test_origin_by_country(verge, origin_factory):
    world, eu = origin_factory(), origin_factory()
    config = recipe_config("origin-by-country", origins={"world": world, "eu": eu})
    config["functions"]["origin-by-country"]["env"]["EU_ORIGIN_PORT"] = str(eu.port)
    port6 = free_port()
    config["listen"] = [{"address": "127.0.0.1:%d" % free_port()}, {"address": "[::1]:%d" % port6}]
    v = verge(config)

    def answered_by(headers=()):
        before = (len(world.requests), len(eu.requests))
        r = v.get("/page", list(headers))
        assert r.status == 200, (r, r.headers)
        after = (len(world.requests), len(eu.requests))
        return {(1, 0): "world", (0, 1): "eu", (0, 0): "cache"}[(after[0] - before[0], after[1] - before[1])], r

    # 127.0.0.1 is "US" in the recipe's table: the behavior's own origin
    assert answered_by()[0] == "world"
    assert world.requests[-1].header("cloudfront-viewer-country") == "US"
    # dev.debug_headers: a request pretends to come from France, then Germany (EU), Britain (not)
    who, r = answered_by([("X-Verge-Debug-Country", "FR")])
    assert (who, r.header("x-cache")) == ("eu", MISS)
    assert eu.requests[-1].header("cloudfront-viewer-country") == "FR"
    assert eu.requests[-1].header("host") == "127.0.0.1:%d" % eu.port  # Host follows the chosen origin
    assert not eu.requests[-1].has_header("x-verge-debug-country")
    assert answered_by([("X-Verge-Debug-Country", "DE")])[0] == "eu"
    assert answered_by([("X-Verge-Debug-Country", "GB")])[0] == "world"
    # the cache is keyed on the country: each country's object from its own origin
    who, r = answered_by([("X-Verge-Debug-Country", "FR")])
    assert (who, r.header("x-cache"), r.body) == ("cache", HIT, b"origin: GET /page\n"), r.headers
    assert answered_by()[0] == "cache"
    # ::1 is "DE" in the table: the EU origin, without any debug header
    with HTTPConn(port6, host="::1") as c:
        r = c.request("GET", "/ipv6", [("Host", "[::1]:%d" % port6), ("Connection", "close")])
    assert r.status == 200 and eu.requests[-1].path == "/ipv6", (r, [q.path for q in eu.requests])
    # a viewer's own CloudFront-Viewer-Country changes nothing
    assert answered_by([("CloudFront-Viewer-Country", "FR")])[0] == "cache"
    assert [q.path for q in world.requests] == ["/page", "/page"]
