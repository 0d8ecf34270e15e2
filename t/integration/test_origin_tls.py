"""HTTPS origins (origins.*.url "https://..."): verification against ca_file or the system store,
SNI, host-name and IP checks, pooled connections, tls_verify false, large bodies both ways
through TLS (with a slow viewer pausing the origin read), and the errors: an untrusted or
misnamed certificate answers 502 with a log line that says why.

The origin is t/origin.py with a server SSLContext; the certificates are conftest's `pki`.
"""

import hashlib
import json
import os
import socket
import time

import pytest

from conftest import HIT, HTTPConn, cached_behavior, https_origin, pattern_sha256, require_verge, run_verge

@pytest.fixture
def origins():
    started = []
    yield started
    for o in started:
        o.stop()


def start(verge, origin, url_host="localhost", **entry):
    """verge in front of `origin` as origin "app" at https://url_host:port; `entry` adds keys."""
    app = dict({"url": "https://%s:%d" % (url_host, origin.port)}, **entry)
    return verge({"origins": {"app": app}, "behaviors": [{"path": "*", "origin": "app"}]})


def test_https_origin_verified_with_ca_file_gets_sni_and_pooled_connections(verge, pki, origins):
    origin = https_origin(pki, "local")
    origins.append(origin)
    v = start(verge, origin, ca_file=pki("ca.pem"))
    with HTTPConn(v.port) as c:
        for i in range(3):
            r = c.request("GET", "/hello%d?x=1" % i)
            assert (r.status, r.body) == (200, b"origin: GET /hello%d?x=1\n" % i), r.body
    assert [x.path for x in origin.requests] == ["/hello0", "/hello1", "/hello2"]
    assert origin.server_names == ["localhost"]  # SNI carries the URL's host
    assert origin.connections == 1  # one handshake, then the pooled connection
    assert origin.requests[0].header("host") == "localhost:%d" % origin.port


def test_ip_literal_origin_is_checked_against_the_certificates_ip_and_sends_no_sni(verge, pki, origins):
    origin = https_origin(pki, "local")
    origins.append(origin)
    v = start(verge, origin, url_host="127.0.0.1", ca_file=pki("ca.pem"))
    assert v.get("/ip").status == 200
    assert origin.server_names == [None]  # RFC 6066: no IP literals in SNI


def test_untrusted_certificate_answers_502_and_logs_why(verge, pki, origins):
    origin = https_origin(pki, "self")
    origins.append(origin)
    v = start(verge, origin)  # the system trust store does not know the self-signed certificate
    since = v.stderr_size()
    r = v.get("/secret")
    assert r.status == 502 and r.body == b"verge: origin TLS handshake failed\n", (r.status, r.body)
    v.wait_for_log(r"origin app: TLS handshake with localhost failed: certificate verify failed: self-signed certificate",
                   since=since)
    assert origin.requests == []  # nothing was sent to an origin that could not prove who it is
    assert v.metrics().get("verge_origin_errors_total", origin="app", kind="tls") == 1


def test_certificate_for_another_name_answers_502(verge, pki, origins):
    origin = https_origin(pki, "other")
    origins.append(origin)
    v = start(verge, origin, ca_file=pki("ca.pem"))
    since = v.stderr_size()
    assert v.get("/x").status == 502
    v.wait_for_log(r"origin app: TLS handshake with localhost failed: certificate verify failed: hostname mismatch", since=since)
    assert origin.requests == []


def test_ca_file_that_did_not_sign_the_origin_answers_502(verge, pki, origins):
    origin = https_origin(pki, "local")
    origins.append(origin)
    v = start(verge, origin, ca_file=pki("self.pem"))
    assert v.get("/x").status == 502
    assert origin.requests == []


def test_tls_verify_false_connects_and_warns_at_start_and_reload(verge, pki, origins):
    origin = https_origin(pki, "self")
    origins.append(origin)
    v = start(verge, origin, tls_verify=False)
    assert v.get("/anyway").status == 200
    warning = r"origins\.app\.tls_verify is false: https://localhost:%d's certificate is not checked" % origin.port
    v.wait_for_log(warning)
    since = v.stderr_size()
    assert v.reload().status == 200
    v.wait_for_log(warning, since=since)


def test_large_bodies_both_ways_through_tls(verge, pki, origins):
    origin = https_origin(pki, "local")
    origins.append(origin)
    size = 6 * 1024 * 1024 + 3
    origin.route("/big", size=size)
    v = start(verge, origin, ca_file=pki("ca.pem"))
    r = v.get("/big", keep_body=False)
    assert (r.status, r.body_length, r.body_sha256) == (200, size, pattern_sha256(size))
    upload = os.urandom(3 * 1024 * 1024 + 11)
    r = v.get("/upload", method="POST", body=upload)
    assert r.status == 200
    request = origin.requests[-1]
    assert request.body_length == len(upload) and request.body_sha256 == hashlib.sha256(upload).hexdigest()


def test_slow_viewer_pauses_a_tls_origin_without_losing_bytes(verge, pki, origins):
    """The viewer's backpressure stops reading the origin while OpenSSL may hold records it read
    ahead; reading must resume from them (they never make the socket readable again)."""
    origin = https_origin(pki, "local")
    origins.append(origin)
    size = 16 * 1024 * 1024 + 7
    origin.route("/big", size=size)
    v = start(verge, origin, ca_file=pki("ca.pem"))
    with HTTPConn(v.port) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        hasher, total, head = hashlib.sha256(), 0, b""
        while b"\r\n\r\n" not in head:
            head += c.sock.recv(65536)
        head, _, first = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        hasher.update(first)
        total = len(first)
        reads = 0
        while total < size:
            chunk = c.sock.recv(65536)
            assert chunk, "closed after %d of %d bytes" % (total, size)
            hasher.update(chunk)
            total += len(chunk)
            reads += 1
            if reads % 16 == 0 and total < size // 4:
                time.sleep(0.02)  # slow during the first quarter: many pauses
    assert total == size and hasher.hexdigest() == pattern_sha256(size)


def test_cached_response_from_an_https_origin(verge, pki, origins):
    origin = https_origin(pki, "local")
    origins.append(origin)
    app = {"url": "https://localhost:%d" % origin.port, "ca_file": pki("ca.pem")}
    v = verge({"origins": {"app": app}, "behaviors": [cached_behavior()]})
    origin.route("/c", header=["Cache-Control: max-age=60"])
    assert v.get("/c").status == 200
    assert v.get("/c").status == 200
    assert [x.path for x in origin.requests] == ["/c"]


@pytest.mark.parametrize("entry,needle", [
    ({"url": "https://127.0.0.1:1", "ca_file": "/nonexistent/ca.pem"},
     'origins.app.ca_file: cannot read "/nonexistent/ca.pem": No such file or directory'),
    ({"url": "http://127.0.0.1:1", "tls_verify": False}, "origins.app.tls_verify: only meaningful with an https url"),
    ({"url": "http://127.0.0.1:1", "ca_file": "ca.pem"}, "origins.app.ca_file: only meaningful with an https url"),
    ({"url": "https://127.0.0.1:1", "ca_file": "not-a-ca.pem"}, "origins.app.ca_file: cannot load CA certificates from"),
])
def test_check_reports_bad_origin_tls_settings(tmp_path, entry, needle):
    require_verge()
    (tmp_path / "not-a-ca.pem").write_text("not a certificate\n")
    config = tmp_path / "verge.json"
    config.write_text(json.dumps({"listen": [{"address": "127.0.0.1:1"}], "origins": {"app": entry},
                                  "behaviors": [{"path": "*", "origin": "app"}]}))
    r = run_verge("check", "-c", str(config))
    assert r.returncode == 1 and needle in r.stderr, r.stderr


def test_responses_that_end_inside_records_read_ahead_are_whole(verge, pki, origins):
    """Sizes around the read buffers: the last records of a response can sit in OpenSSL's
    read-ahead with nothing left in the socket; they must still be delivered (no read timeout)."""
    origin = https_origin(pki, "local")
    origins.append(origin)
    v = start(verge, origin, ca_file=pki("ca.pem"), read_timeout_ms=3000)
    with HTTPConn(v.port) as c:
        for size in range(60 * 1024, 260 * 1024, 7 * 1024 + 13):
            r = c.request("GET", "/s?size=%d" % size, keep_body=False)
            assert (r.status, r.body_length, r.body_sha256) == (200, size, pattern_sha256(size)), size


def test_response_cut_by_a_close_without_close_notify_is_not_cached(verge, pki, origins):
    """A body delimited by the connection's close is complete only if the origin ends TLS with
    close_notify; a bare TCP close (a crash, or a forged FIN) must not store a truncated object.
    (t/origin.py closes its TLS sockets without close_notify.)"""
    origin = https_origin(pki, "local")
    origins.append(origin)
    origin.route("/cut", size=5000, close=True, header=["Cache-Control: max-age=60"])
    app = {"url": "https://localhost:%d" % origin.port, "ca_file": pki("ca.pem")}
    v = verge({"origins": {"app": app}, "behaviors": [cached_behavior()]})
    for _ in range(2):
        r = v.get("/cut", keep_body=False)
        assert not (r.status == 200 and r.complete and r.header("x-cache") == HIT), r.headers
    assert [x.path for x in origin.requests] == ["/cut", "/cut"]  # never served from the cache
