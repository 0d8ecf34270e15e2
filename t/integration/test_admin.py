"""Admin listener (behavior.md "Admin listener"): healthz, metrics, reload, token auth."""

import json

import pytest

from conftest import LOG_LINE, free_port, origin_entry, port_refuses, run_verge, wait_until

REQUIRED_SERIES = [
    ("verge_requests_total", {"status_class": "1xx"}),
    ("verge_requests_total", {"status_class": "2xx"}),
    ("verge_requests_total", {"status_class": "3xx"}),
    ("verge_requests_total", {"status_class": "4xx"}),
    ("verge_requests_total", {"status_class": "5xx"}),
    ("verge_origin_requests_total", {"origin": "app"}),
    ("verge_origin_errors_total", {"origin": "app", "kind": "refused"}),
    ("verge_origin_errors_total", {"origin": "app", "kind": "reset"}),
    ("verge_origin_errors_total", {"origin": "app", "kind": "timeout"}),
    ("verge_origin_errors_total", {"origin": "app", "kind": "malformed"}),
    ("verge_origin_duration_seconds_sum", {"origin": "app"}),
    ("verge_origin_duration_seconds_count", {"origin": "app"}),
    ("verge_connections_open", {}),
    ("verge_config_generation", {}),
    ("verge_config_reloads_total", {"result": "ok"}),
    ("verge_config_reloads_total", {"result": "error"}),
]


def settled_metrics(v, name, total):
    """The metrics once the samples of `name` add up to at least `total` (else None)."""
    m = v.metrics()
    return m if m.sum(name) >= total else None


@pytest.fixture
def proxy(verge, origin):
    return verge(origin=origin)


def test_healthz(proxy):
    r = proxy.admin("GET", "/healthz")
    assert r.status == 200 and r.body == b"ok\n"


def test_metrics_format_and_required_series(proxy):
    r = proxy.admin("GET", "/metrics")
    assert r.status == 200
    assert r.header("content-type", "").startswith("text/plain; version=0.0.4")
    m = proxy.metrics()
    for name, labels in REQUIRED_SERIES:
        assert m.get(name, **labels) is not None, (name, labels)
    buckets = [(l["le"], val) for n, l, val in m.samples if n == "verge_origin_duration_seconds_bucket" and l.get("origin") == "app"]
    assert buckets and buckets[-1][0] == "+Inf"
    assert m.get("verge_config_generation") == 1
    assert m.types.get("verge_requests_total") == "counter"
    assert m.types.get("verge_origin_duration_seconds") == "histogram"
    assert m.types.get("verge_connections_open") == "gauge"


def test_request_counters_change(proxy, origin):
    before = proxy.metrics()
    for _ in range(3):
        assert proxy.get("/ok").status == 200
    assert proxy.get("/nf?status=404").status == 404
    assert proxy.get("/err?status=503").status == 503
    assert proxy.get("/redir?status=301").status == 301
    # verge counts a request when it finishes, just after the last byte went out: poll.
    after = wait_until(lambda: settled_metrics(proxy, "verge_requests_total", before.sum("verge_requests_total") + 6), 5,
                       message="6 more requests in verge_requests_total")

    def delta(name, **labels):
        return after.get(name, 0, **labels) - before.get(name, 0, **labels)

    assert delta("verge_requests_total", status_class="2xx") == 3
    assert delta("verge_requests_total", status_class="3xx") == 1
    assert delta("verge_requests_total", status_class="4xx") == 1
    assert delta("verge_requests_total", status_class="5xx") == 1
    assert delta("verge_origin_requests_total", origin="app") == 6
    assert delta("verge_origin_duration_seconds_count", origin="app") == 6
    assert delta("verge_origin_duration_seconds_sum", origin="app") >= 0


def test_origin_duration_histogram_buckets(proxy, origin):
    proxy.get("/slow?delay_ms=300")
    m = proxy.metrics()
    buckets = [(float(l["le"]), v) for n, l, v in m.samples
               if n == "verge_origin_duration_seconds_bucket" and l.get("origin") == "app"]
    values = [v for _, v in buckets]
    assert values == sorted(values), "buckets must be cumulative"
    assert buckets[-1][1] == m.get("verge_origin_duration_seconds_count", origin="app") == 1
    for le, v in buckets:
        if le < 0.29:
            assert v == 0, (le, v)  # the origin took at least 0.3 s
        elif le >= 2.5:
            assert v == 1, (le, v)
    assert 0.29 <= m.get("verge_origin_duration_seconds_sum", origin="app") < 5


def test_origin_error_counters(verge):
    v = verge(origin=free_port())
    v.get("/a")
    v.get("/b")
    m = wait_until(lambda: settled_metrics(v, "verge_requests_total", 2), 5, message="2 requests in verge_requests_total")
    assert m.get("verge_origin_errors_total", origin="app", kind="refused") == 2
    assert m.get("verge_requests_total", status_class="5xx") == 2


def test_connections_open_gauge(proxy):
    # The fixture's readiness probe connection may still be closing: wait for a quiet start.
    wait_until(lambda: proxy.metrics().get("verge_connections_open") == 0, 5, message="no viewer connections at start")
    base = 0
    conns = [proxy.conn() for _ in range(3)]
    try:
        for c in conns:
            assert c.request("GET", "/").status == 200
        assert proxy.metrics().get("verge_connections_open") == base + 3
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: proxy.metrics().get("verge_connections_open") == base, 5, message="connections_open back to base")


def test_unknown_path_is_404_and_wrong_method_is_405(proxy):
    assert proxy.admin("GET", "/nope").status == 404
    assert proxy.admin("POST", "/healthz").status == 405
    assert proxy.admin("POST", "/metrics").status == 405
    assert proxy.admin("GET", "/reload").status == 405


# ---- reload -------------------------------------------------------------------------------


def test_reload_via_http(proxy, origin_factory):
    other = origin_factory()
    r = proxy.reload({"origins": {"app": origin_entry(other)}, "behaviors": [{"path": "*", "origin": "app"}]})
    assert r.status == 200
    assert json.loads(r.body) == {"ok": True, "generation": 2}
    assert r.header("content-type", "").startswith("application/json")
    proxy.wait_for_log(r"verge info: config generation 2 loaded from " + proxy.config_path)
    assert proxy.get("/after").status == 200
    assert [x.path for x in other.requests] == ["/after"]
    m = proxy.metrics()
    assert m.get("verge_config_generation") == 2
    assert m.get("verge_config_reloads_total", result="ok") == 1
    assert m.get("verge_config_reloads_total", result="error") == 0


def test_reload_without_changes_bumps_the_generation(proxy):
    assert json.loads(proxy.reload().body) == {"ok": True, "generation": 2}
    assert json.loads(proxy.reload().body) == {"ok": True, "generation": 3}


def test_broken_reload_via_http_keeps_serving(proxy, origin):
    good = dict(proxy.config)
    r = proxy.reload({"origins": good["origins"], "behaviors": [{"path": "*", "origin": "nope"}]})
    assert r.status == 422
    body = json.loads(r.body)
    assert body["ok"] is False
    assert body["errors"] and all(isinstance(e, str) and e for e in body["errors"])
    assert any("behaviors[0].origin" in e and "nope" in e for e in body["errors"]), body
    assert proxy.get("/still").status == 200
    assert origin.requests[-1].path == "/still"
    m = proxy.metrics()
    assert m.get("verge_config_generation") == 1
    assert m.get("verge_config_reloads_total", result="error") == 1
    assert m.get("verge_config_reloads_total", result="ok") == 0


def test_broken_json_reload(proxy):
    r = proxy.reload(raw='{"listen": [')
    assert r.status == 422 and json.loads(r.body)["ok"] is False
    assert proxy.get("/").status == 200


def test_reload_via_sighup(proxy, origin_factory):
    other = origin_factory()
    text = proxy.reload({"origins": {"app": origin_entry(other)}, "behaviors": [{"path": "*", "origin": "app"}]},
                        via="sighup")
    assert "verge info: config generation 2 loaded from %s" % proxy.config_path in text
    assert proxy.get("/after-hup").status == 200
    assert [x.path for x in other.requests] == ["/after-hup"]
    assert proxy.metrics().get("verge_config_generation") == 2


def test_broken_reload_via_sighup(proxy, origin):
    good = dict(proxy.config)
    text = proxy.reload({"origins": good["origins"], "behaviors": [{"path": "*", "origin": "nope"}]}, via="sighup")
    lines = [l for l in text.splitlines() if "config reload failed" in l]
    assert lines, text
    assert "verge error: config reload failed, keeping generation 1: behaviors[0].origin: " in lines[0], lines
    assert proxy.get("/x").status == 200
    m = proxy.metrics()
    assert m.get("verge_config_generation") == 1 and m.get("verge_config_reloads_total", result="error") == 1


def test_broken_reload_with_several_errors_logs_each(proxy):
    good = dict(proxy.config)
    text = proxy.reload({"origins": good["origins"], "threads": 0,
                         "behaviors": [{"path": "/a", "origin": "x"}, {"path": "*", "origin": "y"}]}, via="sighup")
    failed = [l for l in text.splitlines() if "config reload failed, keeping generation 1: " in l]
    assert len(failed) >= 3, text  # threads, behaviors[0].origin, behaviors[1].origin
    assert all(LOG_LINE.match(l) for l in failed), failed


# ---- token --------------------------------------------------------------------------------


@pytest.fixture
def with_token(verge, origin, tmp_path):
    (tmp_path / "admin.token").write_text("s3cret-token\n")
    return verge({"admin": {"address": "127.0.0.1:%d" % free_port(), "token_file": "admin.token"}}, origin=origin)


def admin_call(v, method, path, auth=None):
    return v.admin(method, path, headers=[("Authorization", auth)] if auth is not None else [])


@pytest.mark.parametrize("method,path", [("GET", "/healthz"), ("GET", "/metrics"), ("POST", "/reload")])
def test_token_required(with_token, method, path):
    for auth in (None, "Bearer wrong", "Basic czNjcmV0LXRva2Vu", "Bearer s3cret-token-and-more", "Bearer"):
        r = admin_call(with_token, method, path, auth)
        assert r.status == 401, (auth, r.status)
        assert r.header("www-authenticate", "").startswith("Bearer"), r.headers
    r = admin_call(with_token, method, path, "Bearer s3cret-token")
    assert r.status == 200, r.body


def test_token_on_unknown_path(with_token):
    assert admin_call(with_token, "GET", "/nope").status == 401
    assert admin_call(with_token, "GET", "/nope", "Bearer s3cret-token").status == 404


def test_non_loopback_admin_without_token_is_a_config_error(tmp_path, origin):
    config = {"listen": [{"address": "127.0.0.1:%d" % free_port()}],
              "origins": {"app": {"url": origin.url}}, "behaviors": [{"path": "*", "origin": "app"}],
              "admin": {"address": "0.0.0.0:%d" % free_port()}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    r = run_verge("check", "-c", str(path))
    assert r.returncode == 1
    assert "admin.address" in r.stderr and "token_file" in r.stderr, r.stderr


def test_non_loopback_admin_with_token_is_valid(tmp_path, origin):
    (tmp_path / "t").write_text("tok")
    config = {"listen": [{"address": "127.0.0.1:%d" % free_port()}],
              "origins": {"app": {"url": origin.url}}, "behaviors": [{"path": "*", "origin": "app"}],
              "admin": {"address": "0.0.0.0:%d" % free_port(), "token_file": "t"}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    r = run_verge("check", "-c", str(path))
    assert r.returncode == 0, r.stderr


def test_without_admin_there_is_no_admin_listener(verge, origin):
    v = verge({"admin": None}, origin=origin)
    assert v.get("/").status == 200
    assert port_refuses(v.admin_port)
