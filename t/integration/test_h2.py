"""HTTP/2 for viewers: h2c with prior knowledge ("h2c": true, beside HTTP/1.1 on the same port) and
h2 by ALPN over TLS; streams through the same request path as HTTP/1.1 (cache, origin, bodies both
ways, flow control, a slow stream beside fast ones); frame-level bad input from Debian's
python3-h2 and raw frames (RFC 9113 validation, floods: rapid reset, SETTINGS, PING, CONTINUATION,
empty DATA, an HPACK bomb); GOAWAY on drain; access log and metrics.

Clients: curl --http2 / --http2-prior-knowledge, h2load, and H2Client below (python3-h2 over a
socket, optionally TLS with ALPN h2).
"""

import hashlib
import os
import signal
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest

from conftest import HIT, cached_behavior, curl, free_port, pattern_sha256, wait_until

# ---- a python3-h2 client -------------------------------------------------------------------------

FRAME_DATA, FRAME_HEADERS, FRAME_RST_STREAM, FRAME_SETTINGS, FRAME_PING, FRAME_GOAWAY, FRAME_CONTINUATION = 0, 1, 3, 4, 6, 7, 9
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload


class H2Client:
    """An HTTP/2 connection from python3-h2: request() opens a stream, response() collects it.
    `validate=False` lets malformed requests out (h2 checks its own output by default)."""

    def __init__(self, port, tls=False, validate=True, window=None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_outbound_headers=validate,
                                           normalize_outbound_headers=validate, validate_inbound_headers=True)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.streams = {}  # id -> {"status", "headers", "body", "ended", "reset"}
        self.goaway = None
        self.closed = False
        self.auto_ack = True

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, method="GET", headers=(), body=None, authority="localhost"):
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":path", path), (":scheme", "https"), (":authority", authority)] + list(headers)
        self.conn.send_headers(stream_id, fields, end_stream=body is None)
        self.track(stream_id)
        if body is not None:
            self.send_body(stream_id, body)
        self.flush()
        return stream_id

    def open_upload(self, path, content_length, first=b"", headers=()):
        """Opens a POST stream that announces `content_length` body bytes and sends only `first`
        of them (the stream stays open): for uploads that stall, wait or are answered early."""
        stream_id = self.conn.get_next_available_stream_id()
        self.track(stream_id)
        self.conn.send_headers(stream_id, [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "x"),
                                           ("content-length", str(content_length))] + list(headers))
        if first:
            self.conn.send_data(stream_id, first)
        self.flush()
        return stream_id

    def track(self, stream_id):
        """Starts collecting what arrives for `stream_id` (opened by hand with self.conn)."""
        self.streams[stream_id] = {"status": None, "headers": [], "body": bytearray(), "ended": False, "reset": None}

    def send_body(self, stream_id, body):
        offset = 0
        while offset < len(body):
            while self.conn.local_flow_control_window(stream_id) <= 0:
                self.pump(2.0)
            n = min(len(body) - offset, self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            self.conn.send_data(stream_id, body[offset:offset + n])
            offset += n
            self.flush()
        self.conn.end_stream(stream_id)
        self.flush()

    def pump(self, timeout):
        """Reads once (up to `timeout`), handles the events; False when the connection closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            stream = self.streams.get(getattr(event, "stream_id", None))
            if isinstance(event, h2.events.ResponseReceived):
                stream["headers"] = event.headers
                stream["status"] = int(dict(event.headers)[":status"])
            elif isinstance(event, h2.events.DataReceived):
                stream["body"] += event.data
                if self.auto_ack:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream["ended"] = True
            elif isinstance(event, h2.events.StreamReset):
                if stream is not None:
                    stream["reset"] = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event.error_code
        self.flush()
        return True

    def response(self, stream_id, timeout=10.0):
        deadline = time.monotonic() + timeout
        stream = self.streams[stream_id]
        # A graceful GOAWAY (drain) lets open streams finish: only the close ends the wait.
        while not stream["ended"] and stream["reset"] is None and not self.closed:
            assert time.monotonic() < deadline, "stream %d: no complete response within %.0f s" % (stream_id, timeout)
            self.pump(deadline - time.monotonic())
        return stream

    def close(self):
        self.sock.close()


def parse_frames(data):
    """The whole frames in `data`: (type, stream id, payload) each."""
    frames, offset = [], 0
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset:offset + 3], "big")
        stream_id = int.from_bytes(data[offset + 5:offset + 9], "big") & 0x7fffffff
        frames.append((data[offset + 3], stream_id, bytes(data[offset + 9:offset + 9 + length])))
        offset += 9 + length
    return frames


def read_until_closed(sock, deadline=None):
    """What `sock` receives until the server closes (or `deadline`, a monotonic time, passes, or
    the read times out). Returns (the bytes, whether the server closed)."""
    received = bytearray()
    while deadline is None or time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except (socket.timeout, ssl.SSLError):
            return received, False
        except ConnectionResetError:
            return received, True
        if not data:
            return received, True
        received += data
    return received, False


def raw_session(port, frames_after_preface, read_timeout=3.0):
    """Sends the preface, an empty SETTINGS and `frames_after_preface` (bytes) on a raw socket,
    then reads until the server closes. Returns (the frame types and GOAWAY error codes it got,
    whether it closed)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        sock.sendall(PREFACE + frame(FRAME_SETTINGS, 0, 0))
        try:
            sock.sendall(frames_after_preface)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received, closed = read_until_closed(sock, time.monotonic() + read_timeout)
    finally:
        sock.close()
    frames = parse_frames(received)
    goaways = [int.from_bytes(p[4:8], "big") for k, _, p in frames if k == FRAME_GOAWAY and len(p) >= 8]
    return [k for k, _, _ in frames], goaways, closed


def h2_verge(verge, origin, extra=None, tls=False, pki=None):
    """verge with an h2c listener (listen[0]) and, with `tls`, an HTTPS one (.tls_port)."""
    listen = [{"address": "127.0.0.1:%d" % free_port(), "h2c": True}]
    if tls:
        port = free_port()
        listen.append({"address": "127.0.0.1:%d" % port,
                       "tls": {"certificates": [{"cert": pki("local.pem"), "key": pki("local.key")}]}})
    v = verge(dict(extra or {}, listen=listen), origin=origin)
    if tls:
        v.tls_port = port
        wait_until(lambda: _accepts(port), 5, message="the TLS listener")
    return v


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# ---- through the request path --------------------------------------------------------------------


def test_h2c_prior_knowledge_and_http11_share_the_listener(verge, origin):
    v = h2_verge(verge, origin)
    r = curl("http://127.0.0.1:%d/a?x=1" % v.port, "--http2-prior-knowledge")
    assert r.returncode == 0, r.stderr
    assert r.all_heads[-1][0].startswith("HTTP/2 200"), r.all_heads
    assert r.body == b"origin: GET /a?x=1\n"
    assert v.get("/b").status == 200  # HTTP/1.1 on the same port
    assert [x.path for x in origin.requests] == ["/a", "/b"]
    assert origin.requests[0].header("host") is not None
    # Via names the protocol verge received each request in
    assert (origin.requests[0].header("via"), origin.requests[1].header("via")) == ("2 verge", "1.1 verge")


def test_h2_by_alpn_over_tls_and_the_access_log(verge, origin, pki):
    v = h2_verge(verge, origin, tls=True, pki=pki)
    r = curl("https://127.0.0.1:%d/tls" % v.tls_port, "--http2", "-k")
    assert r.returncode == 0, r.stderr
    assert r.all_heads[-1][0].startswith("HTTP/2 200"), r.all_heads
    line = v.access_log_lines(1)[0]
    assert (line["protocol"], line["tls_version"], line["uri"]) == ("HTTP/2", "TLSv1.3", "/tls"), line
    metrics = v.metrics()
    assert metrics.get("verge_connections_by_protocol_total", protocol="HTTP/2") == 1
    assert metrics.get("verge_http2_streams_total") == 1


def test_many_concurrent_streams_with_h2load(verge, origin):
    v = h2_verge(verge, origin)
    origin.route("/k", size=1000)
    import subprocess
    out = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "20", "http://127.0.0.1:%d/k" % v.port],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "400 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    assert "status codes: 400 2xx" in out.stdout, out.stdout


def test_cache_hits_over_h2(verge, origin):
    origin.route("/c", size=5000, header=["Cache-Control: max-age=60"])
    v = h2_verge(verge, origin, extra={"behaviors": [cached_behavior()]})
    client = H2Client(v.port)
    try:
        for expected in ("Miss from verge", HIT):
            stream = client.response(client.request("/c"))
            headers = dict(stream["headers"])
            assert stream["status"] == 200 and headers["x-cache"] == expected, headers
            assert hashlib.sha256(bytes(stream["body"])).hexdigest() == pattern_sha256(5000)
            assert "connection" not in headers and "transfer-encoding" not in headers
    finally:
        client.close()
    assert [x.path for x in origin.requests] == ["/c"]


@pytest.mark.parametrize("with_length", [True, False])
def test_request_bodies_with_and_without_content_length(verge, origin, with_length):
    v = h2_verge(verge, origin)
    body = os.urandom(700 * 1024 + 3)  # many windows: flow control must reopen them
    client = H2Client(v.port)
    try:
        headers = [("content-length", str(len(body)))] if with_length else []
        stream = client.response(client.request("/up", method="POST", headers=headers, body=body), timeout=30)
        assert stream["status"] == 200, stream
    finally:
        client.close()
    (seen,) = origin.requests
    assert seen.body_length == len(body) and seen.body_sha256 == hashlib.sha256(body).hexdigest()
    assert (seen.header("content-length") is not None) == with_length
    assert (seen.header("transfer-encoding") == "chunked") == (not with_length)


def test_a_stalled_stream_does_not_stall_the_others(verge, origin):
    """Stream 1 reads nothing (its window closes); stream 3 on the same connection is answered."""
    size = 4 * 1024 * 1024
    origin.route("/big", size=size)
    v = h2_verge(verge, origin)
    client = H2Client(v.port)
    try:
        client.auto_ack = False  # the window of stream 1 (and the connection's) is not reopened...
        big = client.request("/big")
        time.sleep(0.3)
        client.pump(0.5)
        client.auto_ack = True  # ...except for what stream 3 needs
        small = client.request("/small")
        stream = client.response(small, timeout=5)
        assert (stream["status"], bytes(stream["body"])) == (200, b"origin: GET /small\n")
        for sid in (big,):
            s = client.streams[sid]
            client.conn.acknowledge_received_data(len(s["body"]), sid)
        client.flush()
        stream = client.response(big, timeout=30)
        assert len(stream["body"]) == size and hashlib.sha256(bytes(stream["body"])).hexdigest() == pattern_sha256(size)
    finally:
        client.close()


def test_cookie_crumbs_are_joined_for_the_origin(verge, origin):
    v = h2_verge(verge, origin)
    client = H2Client(v.port)
    try:
        stream = client.response(client.request("/c", headers=[("cookie", "a=1"), ("cookie", "b=2")]))
        assert stream["status"] == 200
    finally:
        client.close()
    assert origin.requests[0].header("cookie") == "a=1; b=2"


def test_upgrade_h2c_and_http2_settings_are_never_forwarded(verge, origin):
    v = h2_verge(verge, origin)
    r = v.get("/up", [("Connection", "Upgrade"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")])
    assert r.status == 200  # answered in HTTP/1.1: no h2c upgrade
    seen = origin.requests[0]
    assert seen.header("upgrade") is None and seen.header("http2-settings") is None, seen.headers


# ---- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    [(":method", "GET"), (":scheme", "http"), (":authority", "x")],  # no :path
    [(":method", "GET"), (":path", "/p"), (":scheme", "http"), (":authority", "x"), ("connection", "keep-alive")],
    [(":method", "GET"), (":path", "/p"), (":scheme", "http"), (":authority", "x"), ("X-Upper", "1")],
    [(":method", "GET"), (":path", "/p"), (":scheme", "http"), (":authority", "x"), ("te", "gzip")],
    [(":path", "/p"), (":method", "GET"), (":scheme", "http"), (":authority", "x"), (":bogus", "1")],
    [(":method", "GET"), ("x-a", "1"), (":path", "/p"), (":scheme", "http"), (":authority", "x")],  # pseudo after regular
])
def test_malformed_request_headers_reset_the_stream_only(verge, origin, fields):
    v = h2_verge(verge, origin)
    client = H2Client(v.port, validate=False)
    try:
        sid = client.conn.get_next_available_stream_id()
        client.track(sid)
        client.conn.send_headers(sid, fields, end_stream=True)
        client.flush()
        stream = client.response(sid)
        assert stream["reset"] == h2.errors.ErrorCodes.PROTOCOL_ERROR or stream["status"] == 400, stream
        ok = client.response(client.request("/after"))  # the connection goes on
        assert ok["status"] == 200
    finally:
        client.close()
    assert [x.path for x in origin.requests] == ["/after"]


def test_bad_preface_over_tls_gets_goaway(verge, origin, pki):
    v = h2_verge(verge, origin, tls=True, pki=pki)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", v.tls_port), timeout=5), server_hostname="localhost")
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64)
        received, _ = read_until_closed(sock)
    finally:
        sock.close()
    assert FRAME_GOAWAY in _frame_kinds(received), received[:100]
    assert origin.requests == []


def _frame_kinds(data):
    return [kind for kind, _, _ in parse_frames(data)]


def headers_frame(stream_id, fields, end_stream=True, end_headers=True):
    block = hpack.Encoder().encode(fields)
    return frame(FRAME_HEADERS, (0x1 if end_stream else 0) | (0x4 if end_headers else 0), stream_id, block)


GET_FIELDS = [(":method", "GET"), (":path", "/flood"), (":scheme", "http"), (":authority", "x")]
ENHANCE_YOUR_CALM, PROTOCOL_ERROR, INTERNAL_ERROR = 0xB, 0x1, 0x2


@pytest.mark.parametrize("flood", ["rapid_reset", "settings", "ping", "continuation", "empty_data", "hpack_bomb"])
def test_floods_end_the_connection_and_others_are_served(verge, origin, flood):
    v = h2_verge(verge, origin)
    if flood == "rapid_reset":
        payload = b"".join(headers_frame(2 * i + 1, GET_FIELDS) + frame(FRAME_RST_STREAM, 0, 2 * i + 1, struct.pack(">I", 8))
                           for i in range(3000))
    elif flood == "settings":
        payload = frame(FRAME_SETTINGS, 0, 0) * 200000
    elif flood == "ping":
        payload = frame(FRAME_PING, 0, 0, b"12345678") * 200000
    elif flood == "continuation":
        payload = frame(FRAME_HEADERS, 0, 1, hpack.Encoder().encode(GET_FIELDS[:1])) + b"".join(
            frame(FRAME_CONTINUATION, 0, 1, b"\x40\x01a\x01b") for _ in range(10000))
    elif flood == "empty_data":
        payload = headers_frame(1, [(":method", "POST")] + GET_FIELDS[1:], end_stream=False) + frame(FRAME_DATA, 0, 1) * 100000
    else:  # one 3000-byte value in the dynamic table, then referenced thousands of times (12 MB decoded)
        encoder_block = b"\x40\x01x" + b"\x7f\xb9\x16" + b"v" * 3000  # literal with incremental indexing (3000 bytes)
        payload = frame(FRAME_HEADERS, 0x5, 1, hpack.Encoder().encode(GET_FIELDS) + encoder_block + b"\xbe" * 4000)
    kinds, goaways, closed = raw_session(v.port, payload)
    if flood != "hpack_bomb":
        assert closed or FRAME_GOAWAY in kinds, (kinds[:20], goaways)
    if flood in ("continuation", "empty_data"):
        assert goaways and goaways[-1] == ENHANCE_YOUR_CALM, goaways
    if flood == "rapid_reset":  # nghttp2's own rate limit answers INTERNAL_ERROR
        assert goaways and goaways[-1] == INTERNAL_ERROR, goaways
    if flood == "hpack_bomb":  # the stream is refused, the connection goes on
        assert FRAME_RST_STREAM in kinds, kinds
    assert v.get("/still").status == 200
    assert "/flood" not in [x.path for x in origin.requests] or flood in ("rapid_reset", "empty_data")


# ---- lifecycle -----------------------------------------------------------------------------------


def test_drain_sends_goaway_and_finishes_streams(verge, origin):
    """SIGTERM: GOAWAY(NO_ERROR) at once; the stream in flight still gets its whole response; then
    the connection closes and verge exits 0. (Raw frames: python3-h2 stops at a GOAWAY.)"""
    origin.route("/slow", delay_ms=600)
    v = h2_verge(verge, origin)
    sock = socket.create_connection(("127.0.0.1", v.port), timeout=10)
    try:
        sock.sendall(PREFACE + frame(FRAME_SETTINGS, 0, 0) + headers_frame(1, [(":method", "GET"), (":path", "/slow"),
                                                                               (":scheme", "http"), (":authority", "x")]))
        time.sleep(0.2)
        v.send_signal(signal.SIGTERM)
        received, closed = read_until_closed(sock)
    finally:
        sock.close()
    assert closed
    frames = parse_frames(received)
    kinds = [k for k, _, _ in frames]
    goaway = [p for k, _, p in frames if k == FRAME_GOAWAY]
    assert goaway and int.from_bytes(goaway[0][4:8], "big") == 0, kinds
    assert kinds.index(FRAME_GOAWAY) < kinds.index(FRAME_HEADERS), kinds  # announced before the answer
    body = b"".join(p for k, sid, p in frames if k == FRAME_DATA and sid == 1)
    assert body == b"origin: GET /slow\n", frames
    assert v.proc.wait(timeout=10) == 0


def test_a_stream_whose_body_stalls_is_reset_after_idle_ms(verge, origin):
    v = h2_verge(verge, origin, extra={"timeouts": {"idle_ms": 500}})
    client = H2Client(v.port)
    try:
        sid = client.open_upload("/stall", 1000, b"x" * 10)
        start = time.monotonic()
        stream = client.response(sid, timeout=5)
        assert stream["reset"] is not None or stream["status"] is not None, stream
        assert time.monotonic() - start < 4
        ok = client.response(client.request("/after"))  # the connection itself is fine
        assert ok["status"] == 200
    finally:
        client.close()


def test_client_reset_mid_response_ends_the_request(verge, origin):
    size = 8 * 1024 * 1024
    origin.route("/big", size=size)
    v = h2_verge(verge, origin)
    client = H2Client(v.port)
    try:
        sid = client.request("/big")
        while len(client.streams[sid]["body"]) < 100000:
            client.pump(2.0)
        client.conn.reset_stream(sid)
        client.flush()
        client.streams[sid]["ended"] = True
        ok = client.response(client.request("/after"))
        assert (ok["status"], bytes(ok["body"])) == (200, b"origin: GET /after\n")
    finally:
        client.close()
    line = [l for l in v.access_log_lines(2) if l["uri"] == "/big"][0]
    assert line["bytes"] < size, line


def test_answer_before_the_request_body_is_whole_then_no_error_reset(verge, origin, tmp_path):
    """A static origin answers a POST with 405 without reading its body: the whole response goes
    out first, then RST_STREAM(NO_ERROR) stops the upload (RFC 9113 §8.1)."""
    (tmp_path / "www").mkdir()
    v = h2_verge(verge, origin, extra={"origins": {"files": {"static": str(tmp_path / "www")}},
                                       "behaviors": [{"path": "*", "origin": "files"}]})
    client = H2Client(v.port)
    try:
        sid = client.open_upload("/x", 10000000, b"x" * 1000)
        stream = client.response(sid)
        assert stream["status"] == 405 and stream["ended"], stream
        deadline = time.monotonic() + 3
        while stream["reset"] is None and time.monotonic() < deadline:
            client.pump(0.5)
        assert stream["reset"] == h2.errors.ErrorCodes.NO_ERROR, stream
        ok = client.response(client.request("/missing"))
        assert ok["status"] == 404
    finally:
        client.close()


def test_many_uploads_on_one_connection_keep_its_window_open(verge, origin):
    """Each upload's last bytes must be given back to the connection's window, or about 1 MiB of
    bodies later every upload on the connection would stall."""
    v = h2_verge(verge, origin)
    client = H2Client(v.port)
    try:
        for i in range(40):
            body = bytes([i]) * (50 * 1024)
            stream = client.response(client.request("/u%d" % i, method="POST", body=body,
                                                    headers=[("content-length", str(len(body)))]), timeout=10)
            assert stream["status"] == 200, (i, stream)
    finally:
        client.close()
    assert len(origin.requests) == 40 and all(r.body_length == 50 * 1024 for r in origin.requests)


def test_expect_100_continue_gets_an_interim_response_then_the_answer(verge, origin):
    v = h2_verge(verge, origin)
    client = H2Client(v.port)
    try:
        sid = client.open_upload("/e", 5, headers=[("expect", "100-continue")])
        time.sleep(0.3)
        client.pump(0.5)
        client.send_body(sid, b"hello")
        stream = client.response(sid)
        assert (stream["status"], bytes(stream["body"])) == (200, b"origin: POST /e\n"), stream
    finally:
        client.close()
    assert origin.requests[0].body_length == 5


def test_a_client_that_closes_its_window_gets_its_streams_reset(verge, origin):
    origin.route("/big", size=2 * 1024 * 1024)
    v = h2_verge(verge, origin, extra={"timeouts": {"idle_ms": 500}})
    client = H2Client(v.port, window=0)  # verge may send no DATA at all
    try:
        sid = client.request("/big")
        stream = client.response(sid, timeout=6)
        assert stream["reset"] is not None, stream
    finally:
        client.close()
    assert v.get("/still").status == 200


def test_reload_sends_a_graceful_goaway_and_open_streams_finish(verge, origin):
    origin.route("/slow", delay_ms=600)
    v = h2_verge(verge, origin)
    sock = socket.create_connection(("127.0.0.1", v.port), timeout=10)
    try:
        sock.sendall(PREFACE + frame(FRAME_SETTINGS, 0, 0) + headers_frame(1, [(":method", "GET"), (":path", "/slow"),
                                                                               (":scheme", "http"), (":authority", "x")]))
        time.sleep(0.2)
        assert v.reload().status == 200
        received, closed = read_until_closed(sock)
    finally:
        sock.close()
    assert closed
    kinds = _frame_kinds(received)
    assert FRAME_GOAWAY in kinds and FRAME_DATA in kinds, kinds
    assert kinds.index(FRAME_GOAWAY) < kinds.index(FRAME_DATA), kinds  # announced, then the stream finished
    assert b"origin: GET /slow\n" in received
    assert v.get("/after-reload").status == 200


def test_nghttp_fetches_several_streams_at_once(verge, origin):
    import subprocess
    origin.route("/one", size=3000)
    origin.route("/two", size=70000)
    v = h2_verge(verge, origin)
    base = "http://127.0.0.1:%d" % v.port
    out = subprocess.run(["nghttp", "-ns", base + "/one", base + "/two", base + "/missing?status=404"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    codes = {fields[-1]: fields[4] for fields in (line.split() for line in out.stdout.splitlines())
             if len(fields) == 7 and fields[0].isdigit()}
    assert codes == {"/one": "200", "/two": "200", "/missing?status=404": "404"}, out.stdout
    assert sorted(x.path for x in origin.requests) == ["/missing", "/one", "/two"]


def test_more_streams_than_max_concurrent_streams_are_refused(verge, origin):
    origin.route("/slow", delay_ms=500)
    v = h2_verge(verge, origin)
    fields = [(":method", "GET"), (":path", "/slow"), (":scheme", "http"), (":authority", "x")]
    payload = b"".join(headers_frame(2 * i + 1, fields) for i in range(101))  # the limit is 100
    kinds, goaways, closed = raw_session(v.port, payload, read_timeout=3.0)
    assert FRAME_RST_STREAM in kinds or goaways, (kinds[:30], goaways)
    assert v.get("/still").status == 200


@pytest.mark.parametrize("flood", ["settings", "ping"])
def test_ack_floods_from_a_client_that_never_reads_keep_memory_bounded(verge, origin, flood):
    """The client sends and never reads: the acks verge owes pile up only to nghttp2's limit."""
    v = h2_verge(verge, origin)
    before = v.rss_kb()
    one = frame(FRAME_SETTINGS, 0, 0) if flood == "settings" else frame(FRAME_PING, 0, 0, b"12345678")
    sock = socket.create_connection(("127.0.0.1", v.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.sendall(PREFACE + frame(FRAME_SETTINGS, 0, 0))
        sent = 0
        try:
            while sent < 400000:
                sock.sendall(one * 1000)
                sent += 1000
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass  # verge closed it (or stopped reading): either way the flood is over
    finally:
        sock.close()
    assert v.rss_kb() - before < 64 * 1024, (before, v.rss_kb())
    assert v.get("/still").status == 200
