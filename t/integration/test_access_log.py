"""Access log (behavior.md "Access log"): one JSON object per line, written by a background thread."""

import json
import os
import re
import threading
import time


from conftest import free_port, wait_until

KEYS = {"time", "request_id", "client_ip", "method", "uri", "status", "bytes", "duration_ms", "behavior", "origin",
        "origin_status", "origin_ms"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def test_line_has_every_key_with_the_right_values(verge, origin):
    v = verge(origin=origin)
    r = v.get("/path/x?q=1&r=%20")
    (line,) = v.access_log_lines(1)
    assert set(line) >= KEYS, KEYS - set(line)
    assert TIME.match(line["time"]), line["time"]
    logged = time.mktime(time.strptime(line["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(logged - time.time()) < 60
    assert line["request_id"] == r.header("x-amz-cf-id")
    assert line["client_ip"] == "127.0.0.1"
    assert line["method"] == "GET"
    assert line["uri"] == "/path/x?q=1&r=%20"
    assert line["status"] == 200 and isinstance(line["status"], int)
    assert line["bytes"] == len(r.body) and isinstance(line["bytes"], int)
    assert is_number(line["duration_ms"]) and line["duration_ms"] >= 0
    assert line["behavior"] == "*" and line["origin"] == "app"
    assert line["origin_status"] == 200 and isinstance(line["origin_status"], int)
    assert is_number(line["origin_ms"]) and 0 <= line["origin_ms"] <= line["duration_ms"] + 1


def test_durations_reflect_a_slow_origin(verge, origin):
    v = verge(origin=origin)
    v.get("/slow?delay_ms=300")
    (line,) = v.access_log_lines(1)
    assert 280 <= line["origin_ms"] < 5000 and 280 <= line["duration_ms"] < 5000


def test_one_line_per_request_in_order(verge, origin):
    v = verge({"threads": 1}, origin=origin)
    with v.conn() as c:
        for i in range(10):
            c.request("GET", "/n%d?body=%s" % (i, "x" * i))
    lines = v.access_log_lines(10)
    assert len(lines) == 10
    assert [l["uri"] for l in lines] == ["/n%d?body=%s" % (i, "x" * i) for i in range(10)]
    assert [l["bytes"] for l in lines] == list(range(10))
    assert len({l["request_id"] for l in lines}) == 10


def test_origin_status_and_bytes_of_various_responses(verge, origin):
    v = verge({"threads": 1}, origin=origin)
    with v.conn() as c:
        c.request("GET", "/a?status=404&body=missing")
        c.request("HEAD", "/b?size=500")
        c.request("GET", "/c?size=70000&chunked=1")
        c.request("POST", "/d?status=201&body=", body=b"12345")
    lines = v.access_log_lines(4)
    assert [(l["method"], l["status"], l["origin_status"], l["bytes"]) for l in lines] == [
        ("GET", 404, 404, 7), ("HEAD", 200, 200, 0), ("GET", 200, 200, 70000), ("POST", 201, 201, 0)]


def test_origin_failure_has_null_origin_fields(verge):
    v = verge(origin=free_port())
    r = v.get("/refused")
    (line,) = v.access_log_lines(1)
    assert line["status"] == 502 and line["origin_status"] is None and line["origin_ms"] is None
    assert line["bytes"] == len(r.body) and line["origin"] == "app"


def test_behavior_and_origin_names(verge, origin_factory):
    a, b = origin_factory(), origin_factory()
    v = verge({"origins": {"alpha": {"url": a.url}, "beta": {"url": b.url}},
               "behaviors": [{"path": "/a/*", "origin": "alpha"}, {"path": "*", "origin": "beta"}]})
    v.get("/a/1")
    v.get("/b/1")
    lines = v.access_log_lines(2)
    assert [(l["behavior"], l["origin"]) for l in lines] == [("/a/*", "alpha"), ("*", "beta")]


def test_concurrent_requests_give_whole_lines(verge, origin):
    v = verge({"threads": 2}, origin=origin)
    errors = []

    def worker(n):
        try:
            with v.conn() as c:
                for i in range(10):
                    assert c.request("GET", "/w%d/%d" % (n, i)).status == 200
        except BaseException as e:  # noqa: B902
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    lines = v.access_log_lines(80)
    assert len(lines) == 80  # every line parsed as JSON: no interleaving
    assert sorted(l["uri"] for l in lines) == sorted("/w%d/%d" % (n, i) for n in range(8) for i in range(10))


def test_relative_path_resolves_against_the_config_directory(verge, origin, tmp_path):
    v = verge({"access_log": {"path": "relative-access.log", "format": "json"}}, origin=origin)
    v.get("/rel")
    lines = v.access_log_lines(1, path=str(tmp_path / "relative-access.log"))
    assert lines[0]["uri"] == "/rel"


def test_dash_means_stdout(verge, origin):
    v = verge({"access_log": {"path": "-", "format": "json"}}, origin=origin)
    r = v.get("/to-stdout")
    # The fixture sends verge's stdout and stderr to the same file.
    found = wait_until(lambda: [json.loads(l) for l in v.stderr_text().splitlines() if l.startswith("{")], 5,
                       message="access log line on stdout")
    assert found[0]["uri"] == "/to-stdout" and found[0]["request_id"] == r.header("x-amz-cf-id")


def test_false_disables_the_access_log(verge, origin, tmp_path):
    v = verge({"access_log": False}, origin=origin)
    assert v.get("/x").status == 200
    time.sleep(0.5)
    assert not os.path.exists(v.access_log_path)
    assert not [l for l in v.stderr_text().splitlines() if l.startswith("{")]


def test_log_file_is_appended_not_truncated(verge, origin):
    v = verge(origin=origin)
    v.get("/first")
    v.access_log_lines(1)
    v.stop()
    v2 = verge({"access_log": {"path": v.access_log_path, "format": "json"}}, origin=origin)
    v2.get("/second")
    lines = v2.access_log_lines(2, path=v.access_log_path)
    assert [l["uri"] for l in lines] == ["/first", "/second"]
