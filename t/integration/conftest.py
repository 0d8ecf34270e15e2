"""conftest.py — fixtures and helpers for verge's integration tests.

The tests start the real binary (build/verge, or $VERGE_BIN) against t/origin.py and
drive it over loopback with raw sockets, a small HTTP/1.1 reader and curl.

Fixtures:
  origin        a started Origin (t/origin.py) on a free port, stopped after the test
  origin_factory  callable making more origins (each stopped after the test)
  verge         factory: verge(config_dict=None, origin=None, ...) -> Verge (started, port accepting)
Helpers (import them: `from conftest import http, HTTPConn, curl, ...`):
  free_port(), http(port, raw), HTTPConn, read_response(sock), curl(url, ...),
  parse_metrics(text), run_verge(*args), cached_behavior(path, origin, **cache_settings)

Caching: the factory writes "cache": false into every behavior that has no "cache" key, so
tests see every request reach the origin unless they turn the cache on for a behavior.

Every verge started by the factory is checked on teardown: SIGTERM, then SIGKILL after a
timeout; the test fails (as a teardown error) when verge did not exit 0, died by a signal,
or its stderr holds a sanitizer report.

Bounds: every socket has a timeout; each test is also bounded by a SIGALRM watchdog
(VERGE_TEST_TIMEOUT seconds, default 120) so a hang fails one test instead of the suite.
"""

import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "t"))

from origin import BlackholeListener, HeaderLookup, Origin, pattern_bytes, pattern_chunks, pattern_sha256, raw_knob  # noqa: E402,F401

VERGE_BIN = os.environ.get("VERGE_BIN", os.path.join(REPO, "build", "verge"))
SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: \w+Sanitizer")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z verge (debug|info|warning|warn|error|notice): ")
TEST_TIMEOUT = float(os.environ.get("VERGE_TEST_TIMEOUT", "120"))
START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0

# Defaults so that running pytest by hand behaves like tools/test.
os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")


# ---- pytest hooks ------------------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (1 GB transfers); still run by default, deselect with -m 'not slow'")


class WatchdogTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _watchdog():
    """Fails a test that runs longer than TEST_TIMEOUT (interrupts blocking socket calls)."""

    def expired(signum, frame):
        raise WatchdogTimeout("test exceeded %.0f s (VERGE_TEST_TIMEOUT)" % TEST_TIMEOUT)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


# ---- small utilities -----------------------------------------------------------------------


_ports_handed_out = set()


def free_port():
    """A loopback TCP port that was free a moment ago, and never handed out before in this run: two
    calls before either port is bound (a listen and an admin address) could otherwise get the
    same one from the kernel."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port
    raise RuntimeError("no fresh free port in 100 tries")


def wait_until(predicate, timeout=5.0, interval=0.02, message="condition"):
    """Polls predicate() until it returns a truthy value (returned) or fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail("timed out after %.1f s waiting for %s" % (timeout, message))
        time.sleep(interval)


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_refuses(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


# ---- HTTP/1.1 response reading ---------------------------------------------------------------


class Response(HeaderLookup):
    """One parsed HTTP/1.x response."""

    def __init__(self):
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers = []  # [(name, value)] in order, as received
        self.raw_head = b""
        self.body = b""  # kept unless read with keep_body=False
        self.body_length = 0
        self.body_sha256 = ""
        self.chunked = False
        self.framing = ""  # "length", "chunked", "close" or "none"
        self.complete = True  # False when the connection ended before the framing said the body ends
        self.trailers = []
        self.interim = []  # 1xx responses read before this one

    def header_list(self, name):
        """All comma-separated items of header `name` across its lines, stripped."""
        return [item.strip() for v in self.header_values(name) for item in v.split(",") if item.strip()]

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %s, %d body bytes>" % (self.status, self.framing, self.body_length)


class PeerClosed(Exception):
    pass


class _SocketReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(256 * 1024)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker, limit=1 << 20):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[: i + len(marker)])
                del self.buf[: i + len(marker)]
                return out
            if len(self.buf) > limit:
                raise ValueError("no %r within %d bytes" % (marker, limit))
            if not self.fill():
                raise PeerClosed("connection closed while waiting for %r (have %r)" % (marker, bytes(self.buf[:200])))

    def read_some(self, n):
        """Up to n bytes (at least 1), or b"" at EOF."""
        if not self.buf and not self.fill():
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError("bad status line %r" % status_line)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return parts[0], int(parts[1]), (parts[2] if len(parts) > 2 else ""), headers


def _read_one(reader, method, keep_body, interim_ok):
    response = Response()
    head = reader.read_until(b"\r\n\r\n")
    response.raw_head = head
    response.version, response.status, response.reason, response.headers = _parse_head(head)
    if 100 <= response.status < 200:
        return response
    hasher = hashlib.sha256()
    kept = bytearray()

    def take(data):
        hasher.update(data)
        response.body_length += len(data)
        if keep_body:
            kept.extend(data)

    te = response.header("transfer-encoding")
    cl = response.header("content-length")
    if method == "HEAD" or response.status in (204, 304):
        response.framing = "none"
    elif te is not None and te.split(",")[-1].strip().lower() == "chunked":
        response.framing = "chunked"
        response.chunked = True
        try:
            while True:
                line = reader.read_until(b"\r\n", limit=4096)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        trailer = reader.read_until(b"\r\n", limit=65536)
                        if trailer == b"\r\n":
                            break
                        name, _, value = trailer.decode("latin-1").rstrip("\r\n").partition(":")
                        response.trailers.append((name, value.strip()))
                    break
                left = size
                while left:
                    data = reader.read_some(left)
                    if not data:
                        raise PeerClosed("EOF in chunk")
                    take(data)
                    left -= len(data)
                if reader.read_until(b"\r\n", limit=2) != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
        except PeerClosed:
            response.complete = False
    elif cl is not None:
        response.framing = "length"
        left = int(cl)
        while left:
            data = reader.read_some(left)
            if not data:
                response.complete = False
                break
            take(data)
            left -= len(data)
    else:
        response.framing = "close"
        while True:
            data = reader.read_some(1 << 20)
            if not data:
                break
            take(data)
        # A close-delimited body is complete only on a clean FIN.
        response.complete = not reader.reset
    response.body = bytes(kept)
    response.body_sha256 = hasher.hexdigest()
    return response


def read_response(reader, method="GET", keep_body=True, skip_interim=True):
    """Reads one response from a _SocketReader (1xx interim responses go to .interim)."""
    interim = []
    while True:
        response = _read_one(reader, method, keep_body, True)
        if 100 <= response.status < 200 and skip_interim:
            interim.append(response)
            continue
        response.interim = interim
        return response


class HTTPConn:
    """A client connection for keep-alive, pipelining and 100-continue tests."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = _SocketReader(self.sock)
        self.host = "%s:%d" % (host, port)

    def send(self, data):
        self.sock.sendall(data)

    def send_request(self, method="GET", target="/", headers=None, body=None, version="HTTP/1.1", host=True):
        """Sends a request; headers is a list of (name, value); body bytes get a Content-Length
        unless the headers give Content-Length or Transfer-Encoding already."""
        headers = list(headers or [])
        names = {n.lower() for n, _ in headers}
        if host and "host" not in names:
            headers.insert(0, ("Host", self.host))
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            headers.append(("Content-Length", str(len(body))))
        head = "%s %s %s\r\n" % (method, target, version) + "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
        self.send(head.encode("latin-1") + (body or b""))

    def read_response(self, method="GET", keep_body=True, skip_interim=True, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        return read_response(self.reader, method, keep_body, skip_interim)

    def request(self, method="GET", target="/", headers=None, body=None, version="HTTP/1.1", keep_body=True):
        self.send_request(method, target, headers, body, version)
        return self.read_response(method, keep_body)

    def closed_by_peer(self, timeout=2.0):
        """True when the peer closes (EOF/RST) within `timeout` with no more data; False when the
        connection is still open at the deadline. Raises if unexpected bytes arrive."""
        if self.reader.buf:
            raise AssertionError("unexpected bytes before close: %r" % bytes(self.reader.buf[:200]))
        if self.reader.eof:
            return True
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if data:
            raise AssertionError("unexpected bytes instead of close: %r" % data[:200])
        return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RawExchange:
    def __init__(self, data, closed, reset, response):
        self.data = data  # every byte received
        self.closed = closed  # the peer closed the connection (FIN or RST)
        self.reset = reset  # it was an RST
        self.response = response  # the first complete parsed Response, or None

    @property
    def status(self):
        return self.response.status if self.response else None

    def __repr__(self):
        return "<RawExchange closed=%s reset=%s %r>" % (self.closed, self.reset, self.data[:300])


def http(port, raw, timeout=5.0, linger=0.5, method="GET", host="127.0.0.1", chunks=None, chunk_delay=0.0):
    """Raw-socket exchange: sends `raw` (or the list `chunks`, chunk_delay seconds apart), then
    reads until the peer closes, or until one complete response was read and `linger` more
    seconds passed without EOF, or `timeout`. Returns a RawExchange."""
    sock = socket.create_connection((host, port), timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        pieces = chunks if chunks is not None else [raw]
        for i, piece in enumerate(pieces):
            if i and chunk_delay:
                time.sleep(chunk_delay)
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # verge may answer and close before reading everything; read what it sent
        data = bytearray()
        closed = reset = False
        response = None
        complete_at = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            wait = deadline - now
            if complete_at is not None:
                wait = min(wait, complete_at + linger - now)
                if wait <= 0:
                    break
            sock.settimeout(wait)
            try:
                got = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed = reset = True
                break
            if not got:
                closed = True
                break
            data += got
            if response is None:
                response = _try_parse(bytes(data), method)
                if response is not None:
                    complete_at = time.monotonic()
        if response is None:
            response = _try_parse(bytes(data), method, at_eof=True)
        return RawExchange(bytes(data), closed, reset, response)
    finally:
        sock.close()


class _BytesReader(_SocketReader):
    def __init__(self, data, at_eof):
        self.buf = bytearray(data)
        self.eof = at_eof
        self.reset = False
        self.sock = None

    def fill(self):
        if not self.eof:
            raise _NeedMore()
        return False


class _NeedMore(Exception):
    pass


def _try_parse(data, method, at_eof=False):
    """The first final response in `data` if it is complete (or at EOF: whatever is there)."""
    if not data:
        return None
    try:
        return read_response(_BytesReader(data, at_eof), method)
    except _NeedMore:
        return None
    except (PeerClosed, ValueError):
        return None


# ---- curl ---------------------------------------------------------------------------------


class CurlResult:
    def __init__(self, returncode, status, headers, body, stderr, all_heads):
        self.returncode = returncode
        self.status = status
        self.headers = headers  # of the final response
        self.body = body
        self.stderr = stderr
        self.all_heads = all_heads  # every response head curl saw (e.g. 100 Continue first)

    def header(self, name, default=None):
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return default

    def __repr__(self):
        return "<CurlResult rc=%d status=%s stderr=%r>" % (self.returncode, self.status, self.stderr[-300:])


def curl(url, *args, max_time=10, input=None):
    """Runs `curl -sS --max-time T -D headers -o body ARGS URL`; returns a CurlResult."""
    with tempfile.TemporaryDirectory() as tmp:
        head_file, body_file = os.path.join(tmp, "head"), os.path.join(tmp, "body")
        cmd = ["curl", "-sS", "--max-time", str(max_time), "-D", head_file, "-o", body_file, "-w", "%{http_code}"]
        cmd += list(args) + [url]
        proc = subprocess.run(cmd, input=input, capture_output=True, timeout=max_time + 10)
        heads = []
        if os.path.exists(head_file):
            text = open(head_file, "rb").read().decode("latin-1")
            for block in text.split("\r\n\r\n"):
                if block.strip():
                    lines = block.strip("\r\n").split("\r\n")
                    heads.append((lines[0], [(n, v.strip()) for n, _, v in (l.partition(":") for l in lines[1:])]))
        body = open(body_file, "rb").read() if os.path.exists(body_file) else b""
        status = int(proc.stdout.decode() or 0)
        return CurlResult(proc.returncode, status, heads[-1][1] if heads else [], body, proc.stderr.decode(), heads)


# ---- metrics --------------------------------------------------------------------------------


class Metrics:
    """Parsed Prometheus text: .samples is [(name, {label: value}, float)]."""

    LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
    LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

    def __init__(self, text):
        self.text = text
        self.samples = []
        self.types = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(None, 3)
                self.types[name] = kind
                continue
            if not line.strip() or line.startswith("#"):
                continue
            m = self.LINE.match(line)
            if not m:
                raise ValueError("unparseable metrics line %r" % line)
            labels = dict(self.LABEL.findall(m.group(2) or ""))
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def get(self, name, default=None, **labels):
        """The value of the one sample `name` whose labels include `labels`."""
        found = [v for n, l, v in self.samples if n == name and all(l.get(k) == str(x) for k, x in labels.items())]
        if not found:
            return default
        if len(found) > 1:
            raise AssertionError("%d samples of %s match %r" % (len(found), name, labels))
        return found[0]

    def sum(self, name, **labels):
        return sum(v for n, l, v in self.samples if n == name and all(l.get(k) == str(x) for k, x in labels.items()))

    def names(self):
        return {n for n, _, _ in self.samples}


def parse_metrics(text):
    return Metrics(text)


# ---- cache helpers ----------------------------------------------------------------------------

HIT = "Hit from verge"
MISS = "Miss from verge"
REFRESH_HIT = "RefreshHit from verge"
ERROR = "Error from verge"
# Cache-Status (RFC 9211) values, cache-behavior.md "Response headers added by verge".
CACHE_STATUS_HIT = "verge; hit"
CACHE_STATUS_STORED = "verge; fwd=miss; stored"
CACHE_STATUS_NOT_STORED = "verge; fwd=miss"
CACHE_STATUS_BYPASS = "verge; fwd=bypass"
CACHE_STATUS_REFRESHED = "verge; fwd=stale; fwd-status=304"
CACHE_STATUS_STALE = "verge; hit; fwd=stale"
CACHE_STATUS_STALE_IF_ERROR = "verge; hit; fwd=stale; detail=stale-if-error"


def align_to_second(offset=0.02):
    """Sleeps (at most ~1 s) until just after a wall-clock second starts; returns time.time().
    A test that stores objects right after this gets exact Age values, whether verge counts age
    in whole wall-clock seconds or in finer units."""
    time.sleep(1.0 - time.time() % 1.0 + offset)
    return time.time()


def sleep_until(wall_time):
    """Sleeps until time.time() >= wall_time (no-op when already past)."""
    left = wall_time - time.time()
    if left > 0:
        time.sleep(left)


def age_range(stored, served, extra=0):
    """The Age values (inclusive range) RFC 9111 §4.2.3 allows on `served`, a response from the
    object that `stored` put in the cache (the miss or refresh that fetched it; both are Responses
    from Verge.fetch(), stamped with wall-clock .sent_wall / .done_wall): whole seconds between the
    two fetches, counted either from whole wall-clock seconds or from precise times. `extra` widens
    the top for an origin Date header that adds an apparent age below one second."""
    # verge stamps request and response times with time(2), the kernel's coarse clock, which may
    # still show the previous second for a few ms after the client's precise clock has moved on:
    # a stamp can fall a second earlier than the client saw the request go (the fill's raises the
    # top, the serving one lowers the bottom).
    coarse_lag = 0.02
    lo = min(math.floor(served.sent_wall - stored.done_wall),
             math.floor(served.sent_wall - coarse_lag) - math.floor(stored.done_wall))
    hi = max(math.floor(served.done_wall - stored.sent_wall),
             math.floor(served.done_wall) - math.floor(stored.sent_wall - coarse_lag))
    return max(lo, 0), hi + extra


def assert_age(served, stored, extra=0):
    value = served.header("age")
    assert value is not None and value.isdigit(), "Age %r on %r (headers %r)" % (value, served, served.headers)
    lo, hi = age_range(stored, served, extra)
    assert lo <= int(value) <= hi, "Age %s not in [%d, %d]" % (value, lo, hi)
    assert len(served.header_values("age")) == 1, served.headers


class TimedResponse:
    """A Response plus client-side times of its arrival, in time.monotonic() (the clock of the
    origin's Request.received_at / answered_at)."""

    def __init__(self, response, sent_at, head_at, first_body_at, done_at):
        self.response = response
        self.sent_at, self.head_at, self.first_body_at, self.done_at = sent_at, head_at, first_body_at, done_at


def timed_request(port, target, headers=None, method="GET", barrier=None, timeout=20.0):
    """One request on a fresh connection (Connection: close); the connection is made before
    `barrier` (a threading.Barrier) releases, so all parties send at once. Returns a TimedResponse
    whose first_body_at is when the first body byte arrived (None when there was no body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = ["%s %s HTTP/1.1" % (method, target), "Host: 127.0.0.1:%d" % port]
        lines += ["%s: %s" % h for h in (headers or [])] + ["Connection: close", "", ""]
        if barrier is not None:
            barrier.wait(timeout)
        sent_at = time.monotonic()
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        reader = _SocketReader(sock)
        head = reader.read_until(b"\r\n\r\n")
        head_at = time.monotonic()
        first_body_at = None
        if method != "HEAD" and (reader.buf or reader.fill()):
            first_body_at = time.monotonic()
        reader.buf[:0] = head
        response = read_response(reader, method)
        if response.body_length == 0:
            first_body_at = None
        return TimedResponse(response, sent_at, head_at, first_body_at, time.monotonic())
    finally:
        sock.close()


def concurrent_requests(port, target, count, headers=None, timeout=30.0):
    """`count` requests for `target` at once (one thread and connection each, all released by one
    barrier). Returns the TimedResponses in thread order; raises the first client error."""
    barrier = threading.Barrier(count)
    results = [None] * count
    errors = []

    def run(i):
        try:
            results[i] = timed_request(port, target, headers, barrier=barrier, timeout=timeout)
        except BaseException as e:  # noqa: B036 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout + 5
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise AssertionError("%d of %d clients still running after %.0f s" % (sum(t.is_alive() for t in threads), count, timeout))
    if errors:
        raise errors[0]
    return results


# ---- verge ----------------------------------------------------------------------------------


def run_verge(*args, timeout=20, cwd=None):
    """Runs build/verge with args to completion (check, config-reference, --version)."""
    return subprocess.run([VERGE_BIN] + list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd)


def cached_behavior(path="*", origin="app", **settings):
    """A behavior with caching on; `settings` are its "cache" object's keys (none: all defaults).
    Plain behaviors written by the `verge` factory get "cache": false (see Verge.full_config)."""
    return {"path": path, "origin": origin, "cache": settings}


def cache_config(origin, behaviors=None, cache=None):
    """A config with origin "app" and `behaviors` (default: one cached "*" behavior with the
    default settings); `cache` is the top-level "cache" object (memory_mb...) when given."""
    config = {"origins": {"app": origin_entry(origin)}, "behaviors": behaviors or [cached_behavior()]}
    if cache is not None:
        config["cache"] = cache
    return config


def origin_requests_for(origin, path):
    """The requests the origin received for URL path `path` (any query)."""
    return [r for r in origin.requests if r.path == path]


def require_verge():
    if not os.access(VERGE_BIN, os.X_OK):
        pytest.fail("verge binary not found at %s (build it, or set VERGE_BIN)" % VERGE_BIN)


def origin_entry(origin, path=""):
    """An origins.NAME entry pointing at an Origin (or BlackholeListener / a port number)."""
    if isinstance(origin, int):
        return {"url": "http://127.0.0.1:%d%s" % (origin, path)}
    return {"url": origin.url + path}


class Verge:
    """A running verge (started by the `verge` fixture)."""

    def __init__(self, directory, config, env=None, name="verge", command=None):
        self.dir = directory
        self.name = name
        # "dev" runs `verge dev -c FILE`, whose stdout (the request traces) goes to its own file.
        self.command = command
        self.stdout_path = os.path.join(directory, name + ".stdout")
        self.port = free_port()
        self.admin_port = free_port()
        self.config_path = os.path.join(directory, name + ".json")
        self.stderr_path = os.path.join(directory, name + ".stderr")
        self.access_log_path = os.path.join(directory, name + "-access.log")
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc = None
        self.expected_exit = 0
        self.stopped_by_test = False
        self.config = None
        self.write_config(config)

    # -- config --

    def full_config(self, config):
        """`config` with the defaults this Verge owns (ports, access log) filled in."""
        full = {
            "listen": [{"address": "127.0.0.1:%d" % self.port}],
            "threads": 2,
            "access_log": {"path": self.access_log_path, "format": "json"},
            "admin": {"address": "127.0.0.1:%d" % self.admin_port},
            "timeouts": {"drain_ms": 5000},
        }
        for key, value in (config or {}).items():
            if key == "timeouts" and isinstance(value, dict):
                full["timeouts"] = dict(full["timeouts"], **value)
            elif value is None:
                full.pop(key, None)
            else:
                full[key] = value
        # verge caches by default (a behavior without "cache" stores GET 200s for a day), but most
        # tests expect every request to reach the origin. So every behavior this factory writes
        # gets "cache": false unless the test's behavior sets "cache" itself: cache tests say
        # {"path": "*", "origin": "app", "cache": {}} (see cached_behavior()) to get the defaults.
        # The test's dicts are copied, never changed. A raw config (write_config(raw=...)) is
        # written verbatim and gets nothing.
        if isinstance(full.get("behaviors"), list):
            full["behaviors"] = [dict(b, cache=False) if isinstance(b, dict) and "cache" not in b else b
                                 for b in full["behaviors"]]
        # The ports the config really uses (a test may give its own listen/admin addresses).
        if full.get("listen"):
            self.port = int(full["listen"][0]["address"].rsplit(":", 1)[1])
        if isinstance(full.get("admin"), dict) and "address" in full["admin"]:
            self.admin_port = int(full["admin"]["address"].rsplit(":", 1)[1])
        return full

    def write_config(self, config, raw=None):
        """Writes the config file (dict merged with defaults), or `raw` text verbatim."""
        if raw is not None:
            text = raw
        else:
            self.config = self.full_config(config)
            text = json.dumps(self.config, indent=2) + "\n"
        with open(self.config_path, "w") as f:
            f.write(text)

    # -- process --

    def start(self, wait=True):
        self.stderr_file = open(self.stderr_path, "ab")
        args = [VERGE_BIN] + ([self.command] if self.command else []) + ["-c", self.config_path]
        stdout = open(self.stdout_path, "ab") if self.command == "dev" else self.stderr_file
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=self.stderr_file, env=self.env,
                                     cwd="/")
        if stdout is not self.stderr_file:
            stdout.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.admin_port] if self.config and self.config.get("admin") else [])
        while True:
            if self.proc.poll() is not None:
                pytest.fail("verge exited with %s during startup:\n%s" % (self.proc.returncode, self.stderr_tail()))
            if all(port_accepts(p) for p in ports):
                return
            if time.monotonic() > deadline:
                pytest.fail("verge did not accept on %s within %.0f s:\n%s" % (ports, timeout, self.stderr_tail()))
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends `sig` and waits for exit; returns the exit code (SIGKILL after `timeout`, then fails)."""
        self.stopped_by_test = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                pytest.fail("verge did not exit within %.0f s of signal %d:\n%s" % (timeout, sig, self.stderr_tail()))
        return self.proc.returncode

    def finish(self):
        """Teardown: stops verge if needed; returns a list of problems (empty when all is well)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                problems.append("did not exit within %.0f s of SIGTERM (killed)" % STOP_TIMEOUT)
        rc = self.proc.returncode
        if rc is not None and rc < 0 and not problems:
            problems.append("died by signal %d" % -rc)
        elif rc is not None and rc > 0 and rc != self.expected_exit:
            problems.append("exited with status %d" % rc)
        self.stderr_file.close()
        text = self.stderr_text()
        if SANITIZER_REPORT.search(text):
            problems.append("sanitizer report on stderr")
        if problems:
            problems.append("stderr (%s):\n%s" % (self.stderr_path, self.stderr_tail(120)))
        return problems

    # -- stderr log --

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines=40):
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def stderr_size(self):
        try:
            return os.path.getsize(self.stderr_path)
        except FileNotFoundError:
            return 0

    def wait_for_log(self, pattern, since=0, timeout=5.0):
        """Waits for a stderr line matching regex `pattern` after byte offset `since`; returns the match."""
        regex = re.compile(pattern)

        def find():
            with open(self.stderr_path, "rb") as f:
                f.seek(since)
                return regex.search(f.read().decode("utf-8", "replace"))

        return wait_until(find, timeout, message="stderr line /%s/; stderr:\n%s" % (pattern, self.stderr_tail()))

    # -- clients --

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def conn(self, timeout=10.0):
        return HTTPConn(self.port, timeout=timeout)

    def get(self, target="/", headers=None, method="GET", body=None, version="HTTP/1.1", keep_body=True):
        """One request on a fresh connection (Connection: close), returns the Response."""
        headers = list(headers or [])
        if not any(n.lower() == "connection" for n, _ in headers):
            headers.append(("Connection", "close"))
        with self.conn() as c:
            return c.request(method, target, headers, body, version, keep_body)

    def fetch(self, target="/", headers=None, method="GET", body=None):
        """Like get(), and stamps the Response with wall-clock .sent_wall and .done_wall (for
        assert_age / age_range)."""
        sent = time.time()
        response = self.get(target, headers, method=method, body=body)
        response.sent_wall, response.done_wall = sent, time.time()
        return response

    def http(self, raw, **kwargs):
        return http(self.port, raw, **kwargs)

    def curl(self, target, *args, **kwargs):
        return curl(self.url + target, *args, **kwargs)

    # -- admin --

    def admin(self, method="GET", path="/healthz", headers=None, body=None, token=None):
        headers = list(headers or [])
        if token is not None:
            headers.append(("Authorization", "Bearer " + token))
        headers.append(("Connection", "close"))
        with HTTPConn(self.admin_port) as c:
            return c.request(method, path, headers, body)

    def purge(self, body, token=None):
        """POST /purge with `body` (a dict or list sent as JSON, or bytes as they are); returns the Response."""
        data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        return self.admin("POST", "/purge", headers=[("Content-Type", "application/json")], body=bytes(data), token=token)

    def metrics(self, token=None):
        response = self.admin("GET", "/metrics", token=token)
        assert response.status == 200, response
        return Metrics(response.text)

    def reload(self, config=None, via="http", token=None, raw=None, timeout=10.0):
        """Optionally rewrites the config, then reloads via POST /reload (returns the Response) or
        SIGHUP (returns the stderr text written for this reload: the 'loaded' or 'failed' lines)."""
        if config is not None or raw is not None:
            self.write_config(config, raw=raw)
        if via == "http":
            return self.admin("POST", "/reload", token=token)
        since = self.stderr_size()
        self.send_signal(signal.SIGHUP)
        self.wait_for_log(r"config generation \d+ loaded|config reload failed", since=since, timeout=timeout)
        time.sleep(0.05)  # the failure case logs one line per error; let them all land
        with open(self.stderr_path, "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")

    # -- access log --

    def access_log_lines(self, count=1, timeout=5.0, path=None):
        """Polls the access log until it has at least `count` lines; returns them parsed."""
        path = path or self.access_log_path

        def read():
            try:
                with open(path, "rb") as f:
                    text = f.read().decode()
            except FileNotFoundError:
                return None
            lines = [l for l in text.split("\n") if l.strip()]
            return [json.loads(l) for l in lines] if len(lines) >= count else None

        return wait_until(read, timeout, message="%d access log lines in %s" % (count, path))

    # -- memory --

    def status_kb(self, field):
        """A field of /proc/PID/status in kB (VmHWM, VmRSS...)."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def rss_kb(self):
        return self.status_kb("VmRSS")

    def hwm_kb(self):
        return self.status_kb("VmHWM")

    def reset_hwm(self):
        """Resets VmHWM to the current RSS (echo 5 > /proc/PID/clear_refs); False if not allowed."""
        try:
            with open("/proc/%d/clear_refs" % self.pid, "w") as f:
                f.write("5")
            return True
        except OSError:
            return False


@pytest.fixture
def origin():
    o = Origin().start()
    yield o
    o.stop()


def openssl(*args):
    """Runs the openssl CLI; fails the test on an error."""
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=15)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """Certificates for HTTPS origins, made once with the openssl CLI: pki("ca.pem") a test CA;
    "local" (.pem/.key) signed by it for localhost and 127.0.0.1, "other" signed for
    other.example, "self" self-signed for localhost."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed by the origin TLS tests")
    d = tmp_path_factory.mktemp("origin-pki")
    p = lambda name: str(d / name)  # noqa: E731
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", p("ca.key"),
            "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=verge test CA")

    def signed(name, sans):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", p(name + ".key"),
                "-out", p(name + ".csr"), "-subj", "/CN=" + name)
        with open(p(name + ".ext"), "w") as f:
            f.write("subjectAltName=" + ",".join(sans) + "\n")
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial",
                "-out", p(name + ".pem"), "-days", "2", "-extfile", p(name + ".ext"))

    signed("local", ["DNS:localhost", "IP:127.0.0.1"])
    signed("other", ["DNS:other.example"])
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", p("self.key"),
            "-out", p("self.pem"), "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost")
    return p


def https_origin(pki, leaf):
    """A started HTTPS Origin presenting pki's `leaf` certificate (stop it yourself)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki(leaf + ".pem"), pki(leaf + ".key"))
    return Origin(tls_context=context).start()


@pytest.fixture
def origin_factory():
    made = []

    def make(**kwargs):
        o = Origin(**kwargs).start()
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()


@pytest.fixture
def verge(tmp_path):
    """Factory: verge(config=None, origin=None, env=None, wait=True, name="verge", command=None) -> Verge.

    `config` is merged over the defaults (listen on a free port, threads 2, JSON access log in
    tmp_path, admin on a free port, drain 5 s); a key set to None is removed. With `origin`
    (an Origin, BlackholeListener or port) and no "origins"/"behaviors" in config, one origin
    "app" serves behavior "*". Every behavior without a "cache" key gets "cache": false (caching
    off); cache tests give their behaviors a "cache" object (cached_behavior())."""
    require_verge()
    started = []

    def start(config=None, origin=None, env=None, wait=True, name=None, command=None):
        config = dict(config or {})
        if origin is not None:
            config.setdefault("origins", {"app": origin_entry(origin)})
            config.setdefault("behaviors", [{"path": "*", "origin": "app"}])
        name = name or ("verge" if not started else "verge%d" % (len(started) + 1))
        v = Verge(str(tmp_path), config, env=env, name=name, command=command)
        started.append(v)
        return v.start(wait=wait)

    yield start
    report = []
    for v in started:
        problems = v.finish()
        if problems:
            report.append("%s (pid %s): %s" % (v.name, v.proc.pid if v.proc else "-", "\n".join(problems)))
    if report:
        pytest.fail("verge teardown problems:\n" + "\n\n".join(report), pytrace=False)
