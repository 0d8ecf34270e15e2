"""Process lifetime (behavior.md "Lifetime"): startup logs, reload generations, SIGTERM drain."""

import json
import signal
import threading
import time


from conftest import LOG_LINE, HTTPConn, free_port, origin_entry, port_refuses, run_verge, wait_until


def one_origin(o):
    return {"origins": {"app": origin_entry(o)}, "behaviors": [{"path": "*", "origin": "app"}]}


def test_startup_logs(verge, origin):
    v = verge(origin=origin)
    v.wait_for_log(r"verge info: listening on 127\.0\.0\.1:%d" % v.port)
    v.wait_for_log(r"verge info: admin listening on ")
    for line in v.stderr_text().splitlines():
        if "listening on" in line:
            assert LOG_LINE.match(line), line


def test_in_flight_request_finishes_on_its_generation(verge, origin_factory):
    a, b = origin_factory(), origin_factory()
    a.route("/slow", delay_ms=1500, body="from a")
    b.route("/slow", body="from b")
    v = verge(one_origin(a))
    slow = v.conn()
    try:
        slow.send_request("GET", "/slow")
        a.wait_for_head(1, timeout=5)
        r = v.reload(one_origin(b))
        assert r.status == 200 and json.loads(r.body)["generation"] == 2
        assert v.get("/next").body == b"origin: GET /next\n"
        assert [x.path for x in b.requests] == ["/next"]
        old = slow.read_response(timeout=10)
        assert old.status == 200 and old.body == b"from a"
        # the old viewer connection now serves on the new generation
        assert slow.request("GET", "/slow").body == b"from b"
    finally:
        slow.close()
    assert [x.path for x in a.requests] == ["/slow"]


def test_reload_cannot_change_listeners_or_threads(verge, origin_factory):
    a, b = origin_factory(), origin_factory()
    v = verge(dict(one_origin(a), threads=2))
    since = v.stderr_size()
    config = dict(one_origin(b), threads=3)
    r = v.reload(config)
    assert r.status == 200, r.body
    v.wait_for_log(r"verge warn(ing)?: .*threads", since=since)
    assert v.get("/x").status == 200
    assert [x.path for x in b.requests] == ["/x"]  # the rest of the config applied


def test_reload_cannot_change_the_listen_address(verge, origin_factory):
    a, b = origin_factory(), origin_factory()
    v = verge(one_origin(a))
    since = v.stderr_size()
    new_port = free_port()
    config = v.full_config(one_origin(b))
    config["listen"] = [{"address": "127.0.0.1:%d" % new_port}]
    old_port = v.port
    v.write_config(None, raw=json.dumps(config))
    r = v.admin("POST", "/reload")
    assert r.status == 200, r.body
    v.wait_for_log(r"verge warn(ing)?: .*listen", since=since)
    assert port_refuses(new_port)
    with HTTPConn(old_port) as c:
        assert c.request("GET", "/x").status == 200
    assert [x.path for x in b.requests] == ["/x"]


def test_generations_count_up_across_http_and_sighup(verge, origin):
    v = verge(origin=origin)
    assert json.loads(v.reload().body)["generation"] == 2
    assert "config generation 3 loaded" in v.reload(via="sighup")
    v.reload(raw="{broken", via="sighup")
    assert json.loads(v.reload(config=one_origin(origin)).body)["generation"] == 4
    assert v.metrics().get("verge_config_generation") == 4


def test_sigterm_drains_in_flight_requests(verge, origin):
    origin.route("/slow", delay_ms=1500, body="slow done")
    v = verge(dict(one_origin(origin), timeouts={"drain_ms": 8000}))
    idle = v.conn()
    slow = v.conn()
    try:
        assert idle.request("GET", "/warm").status == 200  # now an idle keep-alive connection
        slow.send_request("GET", "/slow")
        origin.wait_for_head(2, timeout=5)
        start = time.monotonic()
        v.send_signal(signal.SIGTERM)
        wait_until(lambda: port_refuses(v.port), 2, message="listener closed after SIGTERM")
        assert idle.closed_by_peer(timeout=2), "idle keep-alive connection not closed during drain"
        r = slow.read_response(timeout=10)
        assert r.status == 200 and r.body == b"slow done"
        v.proc.wait(timeout=10)
        assert v.proc.returncode == 0
        assert time.monotonic() - start < 6
    finally:
        idle.close()
        slow.close()


def test_sigterm_without_traffic_exits_promptly(verge, origin):
    v = verge(origin=origin)
    start = time.monotonic()
    assert v.stop(signal.SIGTERM) == 0
    assert time.monotonic() - start < 3


def test_sigint_behaves_like_sigterm(verge, origin):
    v = verge(origin=origin)
    assert v.get("/").status == 200
    assert v.stop(signal.SIGINT) == 0


def test_drain_deadline_bounds_shutdown(verge, origin):
    origin.route("/forever", delay_ms=20000)
    v = verge(dict(one_origin(origin), timeouts={"drain_ms": 700}))
    c = v.conn(timeout=15)
    try:
        c.send_request("GET", "/forever")
        origin.wait_for_head(1, timeout=5)
        start = time.monotonic()
        v.send_signal(signal.SIGTERM)
        v.proc.wait(timeout=10)
        elapsed = time.monotonic() - start
        assert v.proc.returncode == 0
        assert 0.5 <= elapsed < 4, elapsed
        assert c.closed_by_peer(timeout=2)  # the viewer connection went away with the process
    finally:
        c.close()


def test_request_arriving_during_drain_on_an_open_connection(verge, origin):
    """A keep-alive connection that was busy when SIGTERM came is closed after its response."""
    origin.route("/slow", delay_ms=800)
    v = verge(one_origin(origin))
    with v.conn() as c:
        c.send_request("GET", "/slow")
        origin.wait_for_head(1, timeout=5)
        v.send_signal(signal.SIGTERM)
        r = c.read_response(timeout=10)
        assert r.status == 200
        assert c.closed_by_peer(timeout=3)
    v.proc.wait(timeout=10)
    assert v.proc.returncode == 0


def test_invalid_config_at_startup_exits_1(verge, tmp_path, origin):
    path = tmp_path / "bad.json"
    path.write_text('{"listen": [{"address": "127.0.0.1:1"}], "origins": {}, "behaviors": []}')
    r = run_verge("-c", str(path))
    assert r.returncode == 1
    assert "origins" in r.stderr


def test_concurrent_reloads_and_traffic(verge, origin_factory):
    a, b = origin_factory(), origin_factory()
    v = verge(one_origin(a))
    stop = threading.Event()
    errors = []

    def traffic():
        try:
            with v.conn() as c:
                while not stop.is_set():
                    assert c.request("GET", "/t").status == 200
        except BaseException as e:  # noqa: B902
            errors.append(e)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            r = v.reload(one_origin(b if i % 2 == 0 else a))
            assert r.status == 200
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors, errors
    assert v.metrics().get("verge_config_generation") == 11
