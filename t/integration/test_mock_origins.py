"""Mock origins for local work (issue 6): "respond" origins give every request one fixed answer,
which goes through the cache and the triggers like any origin's."""

import json

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
