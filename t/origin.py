#!/usr/bin/python3
"""t/origin.py — a scriptable HTTP/1.1 origin for verge's integration tests.

Python 3 standard library only. Two ways to use it:

  * imported by tests:
        origin = Origin(); origin.start()          # background thread, free loopback port
        origin.route("/slow", delay_ms=500)        # per-path behaviour
        ... origin.requests, origin.connections, origin.clear(), origin.stop()
  * standalone, for manual use and demos:
        python3 t/origin.py --port 8081 [--static-dir DIR]
        curl 'localhost:8081/x?size=1000&chunked=1'
        curl localhost:8081/__origin/requests        # recorded requests as JSON

Behaviour knobs come from origin.route(path, **knobs) and from query parameters of
any request (a query parameter wins over the route; header= values are added to the
route's). Knobs (see t/README.md for the full table):
    status=NNN  header=Name:Value (repeatable)  size=N  body=text  chunked=1  close=1
    delay_ms=N  body_delay_ms=N  reset_after=N  reset_before_head=1  raw=<base64>
    close_after_response=1  drop_next=1  echo=1
    etag=VALUE  last_modified=HTTP-date   (validators; a matching conditional GET/HEAD gets 304)
    pause_after=N pause_ms=M              (stop M ms after N body bytes: a body that streams in)

Invariants: bodies are streamed in 64 KiB pieces both ways (a 1 GB upload is hashed on
the fly, a 1 GB download is written from one precomputed block), so memory stays flat.
One thread per connection; the recorded-request list is guarded by one lock.
"""

import argparse
import base64
import email.utils
import hashlib
import json
import mimetypes
import os
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

# ---- deterministic body pattern -------------------------------------------------

# Byte at absolute offset p of a size=N body is PATTERN_ALPHABET[p % 61]: printable,
# and a prime period so that a body shifted, duplicated or truncated by any amount
# that is not a multiple of 61 changes its hash.
PATTERN_ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY"
PATTERN_PERIOD = len(PATTERN_ALPHABET)
WRITE_BLOCK = 64 * 1024
_PATTERN_BUFFER = (PATTERN_ALPHABET * (WRITE_BLOCK // PATTERN_PERIOD + 2))[: WRITE_BLOCK + PATTERN_PERIOD]
_pattern_sha_cache = {}


def pattern_chunks(length, offset=0, block=WRITE_BLOCK):
    """Yields memoryviews covering pattern bytes [offset, offset + length), each at most `block` long."""
    view = memoryview(_PATTERN_BUFFER)
    block = min(block, WRITE_BLOCK)
    position, end = offset, offset + length
    while position < end:
        n = min(block, end - position)
        start = position % PATTERN_PERIOD
        yield view[start : start + n]
        position += n


def pattern_bytes(length, offset=0):
    """The pattern bytes [offset, offset + length) (for small bodies)."""
    return b"".join(bytes(c) for c in pattern_chunks(length, offset))


def pattern_sha256(length):
    """Hex sha256 of a size=`length` body (cached)."""
    if length not in _pattern_sha_cache:
        h = hashlib.sha256()
        for c in pattern_chunks(length):
            h.update(c)
        _pattern_sha_cache[length] = h.hexdigest()
    return _pattern_sha_cache[length]


# ---- recorded requests ----------------------------------------------------------


class HeaderLookup:
    """Case-insensitive lookups over `self.headers`, a list of (name, value) pairs as received
    (shared by recorded requests here and by the tests' parsed responses)."""

    def header(self, name, default=None):
        """First value of header `name` (case-insensitive), or `default`."""
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return default

    def header_values(self, name):
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def has_header(self, name):
        return bool(self.header_values(name))


class Request(HeaderLookup):
    """One request as the origin received it."""

    BODY_KEEP = 1024 * 1024  # the first MiB of a body is kept in .body; the rest is only hashed

    def __init__(self):
        self.method = ""
        self.target = ""
        self.path = ""
        self.query = ""
        self.version = ""
        self.headers = []  # [(name, value)] exactly as received (latin-1 decoded), in order
        self.raw_head = b""  # request line + headers + final CRLF, verbatim
        self.body_length = 0
        self.body_sha256 = hashlib.sha256(b"").hexdigest()
        self.body = b""  # at most BODY_KEEP bytes
        self.chunked = False  # the body came with Transfer-Encoding: chunked
        self.chunk_extensions = []  # extension text of every chunk-size line that had one
        self.trailers = []  # [(name, value)] of a chunked body
        self.conn_id = 0  # 1-based number of the connection it came on
        self.seq = 0  # 1-based position on that connection
        self.dropped = False  # drop_next: closed without an answer
        self.error = None  # why the body could not be read (the origin answered 400 and closed)
        self.received_at = 0.0  # time.monotonic() when the head was complete
        self.answered_status = None  # the status the origin answered with (None: no answer yet / none)
        self.answered_at = None  # time.monotonic() when the last byte of the answer was written


    def to_dict(self):
        return {
            "method": self.method,
            "target": self.target,
            "path": self.path,
            "query": self.query,
            "version": self.version,
            "headers": [[n, v] for n, v in self.headers],
            "body_length": self.body_length,
            "body_sha256": self.body_sha256,
            "chunked": self.chunked,
            "chunk_extensions": self.chunk_extensions,
            "trailers": [[n, v] for n, v in self.trailers],
            "conn_id": self.conn_id,
            "seq": self.seq,
            "dropped": self.dropped,
            "error": self.error,
            "raw_head": self.raw_head.decode("latin-1"),
        }

    def __repr__(self):
        return "<Request %s %s conn=%d seq=%d body=%d>" % (self.method, self.target, self.conn_id, self.seq, self.body_length)


class ProtocolError(Exception):
    pass


class _Reader:
    """Buffered reads from a socket that never read past what the current message needs."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.big = bytearray(256 * 1024)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self, limit):
        """Returns the head bytes (through the blank line), or None on a clean EOF before any byte."""
        # RFC 9112 §2.2: ignore at least one empty line before the request line.
        while True:
            while self.buf[:2] == b"\r\n":
                del self.buf[:2]
            while self.buf[:1] == b"\n":
                del self.buf[:1]
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[: end + 4])
                del self.buf[: end + 4]
                return head
            if len(self.buf) > limit:
                raise ProtocolError("head too large")
            had = len(self.buf)
            if not self._fill():
                if had == 0:
                    return None
                raise ProtocolError("EOF inside the head")

    def read_line(self, limit=65536):
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[: end + 1])
                del self.buf[: end + 1]
                return line.rstrip(b"\r\n")
            if len(self.buf) > limit:
                raise ProtocolError("line too long")
            if not self._fill():
                raise ProtocolError("EOF inside a line")

    def read_exact(self, n, sink):
        """Reads exactly n bytes, passing them to sink(memoryview) piece by piece."""
        if self.buf:
            take = min(n, len(self.buf))
            sink(memoryview(self.buf)[:take])
            del self.buf[:take]
            n -= take
        view = memoryview(self.big)
        while n > 0:
            got = self.sock.recv_into(view, min(n, len(view)))
            if got == 0:
                raise ProtocolError("EOF inside the body")
            sink(view[:got])
            n -= got


# ---- behaviour knobs --------------------------------------------------------------

_INT_KNOBS = ("status", "size", "delay_ms", "body_delay_ms", "reset_after", "pause_after", "pause_ms")
_BOOL_KNOBS = ("chunked", "close", "reset_before_head", "close_after_response", "echo", "drop_next")
_TEXT_KNOBS = ("etag", "last_modified")
_KNOWN_KNOBS = set(_INT_KNOBS) | set(_BOOL_KNOBS) | set(_TEXT_KNOBS) | {"header", "headers", "body", "raw"}

_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content", 301: "Moved Permanently",
    302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large", 418: "I'm a teapot",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


def _truthy(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    return str(value).lower() not in ("", "0", "false", "no", "off")


def _decode_raw(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value).replace(" ", "+").strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    return base64.b64decode(text)


def _parse_header_knob(item):
    if isinstance(item, (tuple, list)):
        return (str(item[0]), str(item[1]))
    name, sep, value = str(item).partition(":")
    if not sep:
        raise ValueError("header knob needs Name:Value, got %r" % item)
    return (name.strip(), value.strip())


def _normalise_knobs(raw_knobs):
    """Turns route kwargs or query pairs into one dict of typed knobs."""
    knobs = {"headers": []}
    for key, value in raw_knobs:
        if key in ("header", "headers"):
            # A "Name:Value" string, a (name, value) tuple, or a list of either.
            items = value if isinstance(value, list) else [value]
            for item in items:
                knobs["headers"].append(_parse_header_knob(item))
        elif key in _INT_KNOBS:
            knobs[key] = int(value)
        elif key in _BOOL_KNOBS:
            knobs[key] = _truthy(value)
        elif key == "body":
            knobs["body"] = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        elif key == "raw":
            knobs["raw"] = _decode_raw(value)
        elif key in _TEXT_KNOBS:
            knobs[key] = str(value)
    return knobs


def _entity_tags(value):
    """The opaque tags of an If-None-Match list, W/ prefixes dropped (weak comparison); "*" kept."""
    tags = []
    for item in value.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        if item:
            tags.append(item)
    return tags


def _not_modified(request, knobs):
    """RFC 9110 §13.1.2/§13.1.3 for the etag / last_modified knobs: If-None-Match (weak
    comparison) decides when present; otherwise If-Modified-Since against Last-Modified."""
    if request.method not in ("GET", "HEAD"):
        return False
    inm = request.header_values("if-none-match")
    if inm:
        if "etag" not in knobs:
            return False
        ours = knobs["etag"][2:] if knobs["etag"].startswith("W/") else knobs["etag"]
        tags = _entity_tags(",".join(inm))
        return "*" in tags or ours in tags
    ims = request.header("if-modified-since")
    if ims is None or "last_modified" not in knobs:
        return False
    try:
        since = email.utils.parsedate_to_datetime(ims)
        modified = email.utils.parsedate_to_datetime(knobs["last_modified"])
    except (TypeError, ValueError):
        return False
    if since is None or modified is None:
        return False
    return modified <= since


def raw_knob(data):
    """URL-safe base64 of `data`, for a raw= query parameter."""
    return base64.urlsafe_b64encode(data).decode("ascii")


# ---- the server ---------------------------------------------------------------------


class Origin:
    """A scriptable HTTP/1.1 origin on a loopback port (see module doc)."""

    HEAD_LIMIT = 1024 * 1024

    def __init__(self, host="127.0.0.1", port=0, static_dir=None, io_timeout=120.0, tls_context=None):
        """`tls_context` (a server ssl.SSLContext) makes it an HTTPS origin: every connection
        starts with a handshake; .server_names records the SNI each one sent (None: none) and
        .tls_failures counts handshakes that failed (e.g. verge rejected the certificate)."""
        self.host = host
        self.tls_context = tls_context
        self._server_names = []
        self._tls_failures = 0
        self.port = port
        self.static_dir = os.path.abspath(static_dir) if static_dir else None
        self.io_timeout = io_timeout
        self._lock = threading.Condition()
        self._requests = []
        self._routes = {}
        self._connections = 0
        self._open = set()
        self._listener = None
        self._thread = None
        self._stopping = False
        self._heads_seen = 0

    # -- lifecycle --

    def start(self):
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        if self.tls_context is not None:
            self.tls_context.sni_callback = self._on_server_name
        self._thread = threading.Thread(target=self._accept_loop, name="origin-accept-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping = True
        if self._thread:
            self._thread.join(timeout=5)
        if self._listener:
            self._listener.close()
        with self._lock:
            live = list(self._open)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.tls_context is not None else "http", self.host, self.port)

    def _on_server_name(self, sslsock, name, context):
        with self._lock:
            self._server_names.append(name)

    @property
    def server_names(self):
        with self._lock:
            return list(self._server_names)

    @property
    def tls_failures(self):
        with self._lock:
            return self._tls_failures

    # -- scripting and inspection --

    def route(self, path, **knobs):
        """Sets the behaviour for requests whose path is exactly `path` ("*" = every other path)."""
        unknown = set(knobs) - _KNOWN_KNOBS
        if unknown:
            raise ValueError("unknown origin knobs: %s" % ", ".join(sorted(unknown)))
        with self._lock:
            self._routes[path] = knobs

    def clear_routes(self):
        with self._lock:
            self._routes.clear()

    def clear(self):
        """Forgets recorded requests and resets the connection counter."""
        with self._lock:
            self._requests.clear()
            self._connections = 0
            self._heads_seen = 0

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    @property
    def connections(self):
        """Connections accepted since start (or the last clear())."""
        with self._lock:
            return self._connections

    @property
    def open_connections(self):
        with self._lock:
            return len(self._open)

    def wait_for_requests(self, count, timeout=5.0):
        """Waits until at least `count` requests are recorded; returns them (raises on timeout)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("origin saw %d requests, expected %d" % (len(self._requests), count))
                self._lock.wait(left)
            return list(self._requests)

    def wait_for_head(self, count, timeout=5.0):
        """Like wait_for_requests but counts heads as soon as they arrive (before the body)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._heads_seen < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("origin saw %d heads, expected %d" % (self._heads_seen, count))
                self._lock.wait(left)

    # -- connection handling --

    def _accept_loop(self):
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping:
                    return
                time.sleep(0.01)
                continue
            with self._lock:
                self._connections += 1
                conn_id = self._connections
                self._open.add(sock)
            threading.Thread(target=self._serve_connection, args=(sock, conn_id), daemon=True,
                             name="origin-conn-%d" % conn_id).start()

    def _serve_connection(self, sock, conn_id):
        sock.settimeout(self.io_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls_context is not None:
            try:
                tls_sock = self.tls_context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                with self._lock:
                    self._tls_failures += 1
                    self._open.discard(sock)
                sock.close()
                return
            with self._lock:
                self._open.discard(sock)
                self._open.add(tls_sock)
            sock = tls_sock
        reader = _Reader(sock)
        seq = 0
        drop_next = False
        try:
            while not self._stopping:
                try:
                    head = reader.read_head(self.HEAD_LIMIT)
                except ProtocolError:
                    self._send_simple(sock, 400, b"origin: bad request head\n", close=True)
                    return
                if head is None:
                    return
                seq += 1
                request = self._parse_head(head, conn_id, seq)
                if request is None:
                    self._send_simple(sock, 400, b"origin: malformed request\n", close=True)
                    return
                with self._lock:
                    self._heads_seen += 1
                    self._lock.notify_all()
                if request.header("expect", "").lower() == "100-continue" and self._has_body(request):
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    self._read_body(reader, request)
                except ProtocolError as e:
                    request.error = str(e)
                    self._record(request)
                    self._send_simple(sock, 400, b"origin: bad request body\n", close=True)
                    return
                if drop_next:
                    request.dropped = True
                    self._record(request)
                    return  # FIN without an answer: a keep-alive connection the peer thought reusable
                self._record(request)
                if request.path == "/__origin/requests" or request.path == "/__origin/clear":
                    keep = self._answer_control(sock, request)
                else:
                    keep, drop_next = self._answer(sock, request)
                if not keep:
                    return
        except (OSError, ProtocolError, ValueError):
            return
        finally:
            with self._lock:
                self._open.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _parse_head(self, head, conn_id, seq):
        request = Request()
        request.raw_head = head
        request.conn_id = conn_id
        request.seq = seq
        request.received_at = time.monotonic()
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None
        request.method, request.target, request.version = parts
        path, _, query = request.target.partition("?")
        if path.startswith("http://") or path.startswith("https://"):
            rest = path.split("//", 1)[1]
            path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        request.path, request.query = path, query
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                return None
            request.headers.append((name, value.strip(" \t")))
        return request

    @staticmethod
    def _has_body(request):
        te = request.header("transfer-encoding")
        if te is not None:
            return True
        return int(request.header("content-length", "0") or 0) > 0

    def _read_body(self, reader, request):
        hasher = hashlib.sha256()
        kept = bytearray()

        def sink(view):
            hasher.update(view)
            request.body_length += len(view)
            if len(kept) < Request.BODY_KEEP:
                kept.extend(view[: Request.BODY_KEEP - len(kept)])

        te = request.header("transfer-encoding")
        if te is not None and te.split(",")[-1].strip().lower() == "chunked":
            request.chunked = True
            while True:
                line = reader.read_line().decode("latin-1")
                size_text, sep, extension = line.partition(";")
                if sep:
                    request.chunk_extensions.append(extension)
                try:
                    size = int(size_text.strip(), 16)
                except ValueError:
                    raise ProtocolError("bad chunk size line %r" % line[:100])
                if size == 0:
                    break
                reader.read_exact(size, sink)
                if reader.read_line() != b"":
                    raise ProtocolError("chunk not followed by CRLF")
            while True:
                line = reader.read_line().decode("latin-1")
                if line == "":
                    break
                name, _, value = line.partition(":")
                request.trailers.append((name, value.strip(" \t")))
        else:
            length = request.header("content-length")
            if length is not None:
                if not length.isdigit():
                    raise ProtocolError("bad Content-Length %r" % length)
                reader.read_exact(int(length), sink)
        request.body_sha256 = hasher.hexdigest()
        request.body = bytes(kept)

    def _record(self, request):
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    def _knobs_for(self, request):
        with self._lock:
            route = self._routes.get(request.path)
            if route is None:
                route = self._routes.get("*", {})
            route_items = list(route.items())
        query_items = [(k, v) for k, v in urllib.parse.parse_qsl(request.query, keep_blank_values=True) if k in _KNOWN_KNOBS]
        route_knobs = _normalise_knobs(route_items)
        query_knobs = _normalise_knobs(query_items)
        headers = route_knobs["headers"] + query_knobs["headers"]
        route_knobs.update(query_knobs)
        route_knobs["headers"] = headers
        route_knobs["_from_route"] = bool(route_items)
        route_knobs["_from_query"] = bool(query_items)
        return route_knobs

    def _client_wants_close(self, request):
        connection = [t.strip().lower() for t in ",".join(request.header_values("connection")).split(",")]
        if request.version == "HTTP/1.0":
            return "keep-alive" not in connection
        return "close" in connection

    def _answer(self, sock, request):
        """Writes the response. Returns (keep_connection_open, drop_next_request)."""
        knobs = self._knobs_for(request)
        if knobs.get("reset_before_head"):
            self._reset(sock)
            return False, False
        if knobs.get("delay_ms"):
            time.sleep(knobs["delay_ms"] / 1000.0)
        if "raw" in knobs:
            sock.sendall(knobs["raw"])
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return False, False

        status = knobs.get("status", 200)
        headers = list(knobs["headers"])
        if "etag" in knobs:
            headers.append(("ETag", knobs["etag"]))
        if "last_modified" in knobs:
            headers.append(("Last-Modified", knobs["last_modified"]))
        if status == 200 and _not_modified(request, knobs):
            status = 304
        custom_names = {n.lower() for n, _ in headers}

        # The body: a static file, echo, body=, size=, or a short default text.
        body_iter, body_length = None, 0
        static_file = None
        if not knobs["_from_route"] and not knobs["_from_query"] and self.static_dir:
            static_file = self._static_path(request.path)
        if knobs.get("echo"):
            data = json.dumps(request.to_dict(), indent=1).encode() + b"\n"
            body_iter, body_length = [data], len(data)
            default_type = "application/json"
        elif "body" in knobs:
            body_iter, body_length = [knobs["body"]], len(knobs["body"])
            default_type = "text/plain"
        elif "size" in knobs:
            body_length = knobs["size"]
            body_iter = pattern_chunks(body_length)
            default_type = "application/octet-stream"
        elif self.static_dir and not knobs["_from_route"] and not knobs["_from_query"]:
            if static_file is None:
                status, data = 404, b"origin: no such file\n"
                body_iter, body_length, default_type = [data], len(data), "text/plain"
            else:
                body_length = os.path.getsize(static_file)
                body_iter = self._file_chunks(static_file)
                default_type = mimetypes.guess_type(static_file)[0] or "application/octet-stream"
        else:
            data = ("origin: %s %s\n" % (request.method, request.target)).encode("latin-1")
            body_iter, body_length = [data], len(data)
            default_type = "text/plain"

        no_body_status = status < 200 or status in (204, 304)
        send_body = not no_body_status and request.method != "HEAD"
        chunked = bool(knobs.get("chunked"))
        until_close = bool(knobs.get("close"))
        close_after = bool(knobs.get("close_after_response")) or self._client_wants_close(request) or until_close

        if "content-type" not in custom_names and not no_body_status:
            headers.append(("Content-Type", default_type))
        if not no_body_status and "content-length" not in custom_names and "transfer-encoding" not in custom_names:
            if chunked:
                headers.append(("Transfer-Encoding", "chunked"))
            elif not until_close:
                headers.append(("Content-Length", str(body_length)))
        if until_close and "connection" not in custom_names:
            headers.append(("Connection", "close"))
        elif self._client_wants_close(request) and "connection" not in custom_names:
            headers.append(("Connection", "close"))

        request.answered_status = status  # before the first byte goes out: a client never sees it unset
        head = "HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Status"))
        head += "".join("%s: %s\r\n" % (n, v) for n, v in headers) + "\r\n"
        sock.sendall(head.encode("latin-1"))

        if send_body:
            if knobs.get("body_delay_ms"):
                time.sleep(knobs["body_delay_ms"] / 1000.0)
            budget = knobs.get("reset_after")
            pause_at = knobs.get("pause_after") if knobs.get("pause_ms") else None
            sent = 0

            def emit(piece):
                if chunked:
                    sock.sendall(b"%x\r\n" % len(piece))
                    sock.sendall(piece)
                    sock.sendall(b"\r\n")
                else:
                    sock.sendall(piece)

            for piece in body_iter:
                if budget is not None and sent + len(piece) > budget:
                    piece = piece[: budget - sent]
                if len(piece):
                    if pause_at is not None and sent + len(piece) > pause_at:
                        first = pause_at - sent
                        if first > 0:
                            emit(piece[:first])
                        time.sleep(knobs["pause_ms"] / 1000.0)
                        pause_at = None
                        if len(piece) > first:
                            emit(piece[first:])
                    else:
                        emit(piece)
                    sent += len(piece)
                if budget is not None and sent >= budget:
                    break
            if budget is not None:
                self._reset(sock)
                return False, False
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        elif knobs.get("reset_after") is not None:
            self._reset(sock)
            return False, False
        request.answered_at = time.monotonic()

        if close_after:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return False, False
        return True, bool(knobs.get("drop_next"))

    @staticmethod
    def _reset(sock):
        """Closes with RST (SO_LINGER on, timeout 0)."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()

    def _static_path(self, url_path):
        path = urllib.parse.unquote(url_path)
        full = os.path.realpath(os.path.join(self.static_dir, path.lstrip("/")))
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        if not (full + os.sep).startswith(self.static_dir + os.sep) or not os.path.isfile(full):
            return None
        return full

    @staticmethod
    def _file_chunks(path):
        with open(path, "rb") as f:
            while True:
                block = f.read(WRITE_BLOCK)
                if not block:
                    return
                yield block

    def _answer_control(self, sock, request):
        if request.path == "/__origin/clear":
            self.clear()
            data = b'{"ok":true}\n'
        else:
            data = json.dumps([r.to_dict() for r in self.requests if not r.path.startswith("/__origin/")],
                              indent=1).encode() + b"\n"
        close = self._client_wants_close(request)
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
            len(data), "Connection: close\r\n" if close else "")
        sock.sendall(head.encode() + (data if request.method != "HEAD" else b""))
        return not close

    @staticmethod
    def _send_simple(sock, status, body, close):
        head = "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n" % (
            status, _REASONS.get(status, "Status"), len(body), "Connection: close\r\n" if close else "")
        try:
            sock.sendall(head.encode() + body)
        except OSError:
            pass


# ---- a listener whose connects time out -------------------------------------------


class BlackholeListener:
    """A loopback port where TCP connects hang (and so time out) instead of being refused.

    Linux drops a SYN when the listener's accept queue is full (net.ipv4.tcp_abort_on_overflow
    = 0, the default), so the client keeps retransmitting it and connect() only ends at the
    client's own timeout. We listen with backlog 0 (queue length 1), never accept, and fill the
    queue with our own connections; every later connect to .port stays in SYN_SENT.
    """

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        self._fill()

    def _fill(self):
        # Connect until one attempt does not complete promptly: then the queue is full.
        for _ in range(8):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect((self.host, self.port))
            except BlockingIOError:
                pass
            self.fillers.append(s)
            import select

            _, writable, _ = select.select([], [s], [], 0.2)
            if not writable:
                return
        raise RuntimeError("could not fill the accept queue of port %d" % self.port)

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def close(self):
        for s in self.fillers:
            s.close()
        self.listener.close()


# ---- standalone ----------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description="verge's scriptable test origin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--static-dir", help="serve files from this directory when a request has no knobs")
    args = parser.parse_args(argv)
    origin = Origin(host=args.host, port=args.port, static_dir=args.static_dir).start()
    print("origin listening on %s (recorded requests: %s/__origin/requests)" % (origin.url, origin.url), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        origin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
