"""The recipes in examples/recipes/ (issue 6): each one's verge.json and Lua function, driven
through a running verge the way a user would run it (listen address and origin swapped for the
test's)."""

import json
import os
import re

import pytest

from conftest import HIT, REPO, run_verge

RECIPES = os.path.join(REPO, "examples", "recipes")


def recipe_config(name, origin=None):
    """The recipe's verge.json, its paths made absolute, its url origin pointed at `origin`."""
    directory = os.path.join(RECIPES, name)
    with open(os.path.join(directory, "verge.json")) as f:
        config = json.loads(re.sub(r"^\s*//.*$", "", f.read(), flags=re.M))
    del config["listen"]
    for function in config["functions"].values():
        function["code"] = os.path.join(directory, function["code"])
    for entry in config["origins"].values():
        if "static" in entry:
            entry["static"] = os.path.normpath(os.path.join(directory, entry["static"]))
        if "url" in entry:
            entry["url"] = origin.url
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
