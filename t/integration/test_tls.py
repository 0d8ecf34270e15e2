"""TLS termination (listen[].tls): the proxy and the cache over TLS, certificate choice by SNI,
ALPN, protocol versions, session resumption, certificate reloads, `verge check`, the access log
and metrics, and clients that stall or do not speak TLS.

Certificates are self-signed EC P-256 ones made by the openssl CLI for each test (or once per
module for the SNI set). Clients: Python's ssl module (TLSConn below, an HTTPConn over TLS),
curl (--cacert / --resolve, which verifies the chain and the host name) and `openssl s_client`
(ALPN, -sess_out / -sess_in resumption, forced protocol versions). Which certificate verge
presented is checked by comparing the DER bytes the client saw with each test certificate.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections import namedtuple

import pytest

from conftest import HIT, MISS, HTTPConn, cache_config, cached_behavior, curl, free_port, http, pattern_bytes, pattern_sha256, require_verge, run_verge, wait_until

TOOL_TIMEOUT = 15


@pytest.fixture(autouse=True)
def _tools():
    require_verge()
    for tool in ("openssl", "curl"):
        if shutil.which(tool) is None:
            pytest.fail("%s is needed by the TLS tests" % tool)


# ---- certificates ---------------------------------------------------------------------------

Cert = namedtuple("Cert", "name cert key der")


def make_cert(directory, name, cn, sans=()):
    """A self-signed EC P-256 certificate NAME.pem / NAME.key in `directory`, subject CN=`cn`,
    subjectAltName DNS entries `sans` (none: no subjectAltName extension at all)."""
    cert = os.path.join(str(directory), name + ".pem")
    key = os.path.join(str(directory), name + ".key")
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn]
    if sans:
        cmd += ["-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return Cert(name, cert, key, der_of(cert))


def der_of(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def which(der, *certs):
    """The name of the certificate among `certs` whose DER is `der` (for assertion messages)."""
    return next((c.name for c in certs if c.der == der), "an unknown certificate")


def install(src, cert_path, key_path):
    """Copies certificate `src` (a Cert) to the given paths (what an operator's renewal does)."""
    shutil.copyfile(src.cert, cert_path)
    shutil.copyfile(src.key, key_path)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One certificate for a.example, for tests that do not care which certificate is served."""
    return make_cert(tmp_path_factory.mktemp("site"), "site", "a.example", ["a.example"])


@pytest.fixture(scope="module")
def sni_certs(tmp_path_factory):
    """The SNI set, in config order: the wildcard comes before the exact name that overlaps it, and
    `exact` has a CN that is not among its subjectAltNames (so it must not match)."""
    d = tmp_path_factory.mktemp("sni")
    return [
        make_cert(d, "default", "default.example", ["default.example"]),
        make_cert(d, "wild", "wild-cert", ["*.wild.example"]),
        make_cert(d, "exact", "ignored-cn.example", ["exact.example", "x.wild.example"]),
        make_cert(d, "cnonly", "cn-only.example"),
    ]


# ---- configs ----------------------------------------------------------------------------------


def tls_entry(certs, **options):
    """A listen[].tls object serving `certs` (Cert or (cert, key) path pairs) in order."""
    pairs = [(c.cert, c.key) if isinstance(c, Cert) else c for c in certs]
    return dict({"certificates": [{"cert": cert, "key": key} for cert, key in pairs]}, **options)


def wait_listening(port, timeout=5.0):
    """Waits until a socket listens on loopback `port`, without connecting to it (a probe
    connection would count as a TLS connection in the metrics)."""
    suffix = ":%04X" % port

    def listening():
        with open("/proc/net/tcp") as f:
            next(f)
            return any(fields[1].endswith(suffix) and fields[3] == "0A" for fields in (line.split() for line in f))

    wait_until(listening, timeout, message="a listener on port %d" % port)


def start_tls(verge, origin, certs, plain=False, extra=None, name=None, **options):
    """verge with a TLS listener serving `certs` (listen[0]; listen[1] when `plain` puts a plain
    HTTP listener first, so that the fixture's readiness probe does not touch the TLS port).
    The TLS port is .tls_port; `extra` is merged into the config; `options` go into "tls"."""
    tls_port = free_port()
    listen = [{"address": "127.0.0.1:%d" % tls_port, "tls": tls_entry(certs, **options)}]
    if plain:
        listen.insert(0, {"address": "127.0.0.1:%d" % free_port()})
    v = verge(dict(extra or {}, listen=listen), origin=origin, name=name)
    wait_listening(tls_port)
    v.tls_port = tls_port
    return v


# ---- clients ----------------------------------------------------------------------------------


def client_context(cafile=None, minimum=None, maximum=None, alpn=None):
    """A client SSLContext: verifying against `cafile` (and the host name), or verifying nothing."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class TLSConn(HTTPConn):
    """HTTPConn over TLS: `sni` is sent as the server name (None: no SNI extension)."""

    def __init__(self, port, sni="a.example", context=None, timeout=10.0):
        super().__init__(port, timeout=timeout)
        try:
            self.sock = (context or client_context()).wrap_socket(self.sock, server_hostname=sni)
        except BaseException:
            self.sock.close()
            raise
        self.reader.sock = self.sock
        self.host = sni or "127.0.0.1:%d" % port

    @property
    def version(self):
        return self.sock.version()

    @property
    def cipher(self):
        return self.sock.cipher()[0]


def tls_get(port, target="/", sni="a.example", context=None, method="GET", body=None, keep_body=True):
    """One request on a fresh TLS connection (Connection: close); the Response also carries the
    connection's .tls_version and .tls_cipher as the client saw them."""
    with TLSConn(port, sni, context) as c:
        r = c.request(method, target, [("Connection", "close")], body, keep_body=keep_body)
        r.tls_version, r.tls_cipher = c.version, c.cipher
        return r


def presented(port, sni):
    """The DER certificate verge presents to a client sending server name `sni` (None: no SNI)."""
    with TLSConn(port, sni, timeout=5.0) as c:
        return c.sock.getpeercert(binary_form=True)


def tls_curl(port, target, cafile, host="a.example", *args):
    return curl("https://%s:%d%s" % (host, port, target), "--cacert", cafile,
                "--resolve", "%s:%d:127.0.0.1" % (host, port), *args)


class SClient:
    """The parsed output (stdout + stderr) of one `openssl s_client` run."""

    def __init__(self, output):
        self.output = output
        m = re.search(r"^(New|Reused), (\S+), Cipher is (\S+)", output, re.M)
        self.session, self.version = (m.group(1), m.group(2)) if m else (None, None)
        m = re.search(r"^ALPN protocol: (\S+)", output, re.M)
        self.alpn = m.group(1) if m else None
        m = re.search(r"^HTTP/1\.1 (\d{3}) ", output, re.M)
        self.status = int(m.group(1)) if m else None

    @property
    def handshake_ok(self):
        return self.version is not None and self.version != "(NONE)"

    @property
    def reused(self):
        return self.handshake_ok and self.session == "Reused"

    def __repr__(self):
        return "<SClient %s %s alpn=%s status=%s>\n%s" % (self.session, self.version, self.alpn, self.status,
                                                          self.output[-2500:])


def s_client(port, *args, servername="a.example", request=False):
    """Runs `openssl s_client` against `port`. With `request`, sends one GET (Connection: close)
    and reads until verge closes (so TLS 1.3 session tickets arrive before -sess_out is written);
    without, the client hangs up right after the handshake."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-nocommands"]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    cmd += list(args)
    data = b""
    if request:
        cmd.append("-ign_eof")
        data = ("GET /s_client HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (servername or "a.example")).encode()
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=TOOL_TIMEOUT)
    return SClient(proc.stdout.decode("latin-1") + proc.stderr.decode("latin-1"))


def client_hello(sni="a.example"):
    """The bytes of a real TLS ClientHello (from an in-memory client handshake)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def raw_connect(port, timeout=10.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def still_open(sock):
    """True when the peer has neither closed nor sent anything on `sock` yet."""
    sock.settimeout(0.0)
    try:
        sock.recv(1, socket.MSG_PEEK)  # bytes or EOF: not a silent open connection any more
        return False
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.settimeout(10.0)


def wait_closed(sock, timeout):
    """time.monotonic() when the peer closed `sock` (FIN or RST; any bytes before are read and
    dropped, e.g. an alert), or None when it is still open after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            if not sock.recv(4096):
                return time.monotonic()
        except socket.timeout:
            return None
        except ConnectionResetError:
            return time.monotonic()


def tls_metric(v, name):
    return v.metrics().sum(name)


def wait_metric(v, name, value, timeout=5.0):
    wait_until(lambda: tls_metric(v, name) == value, timeout, interval=0.05, message="%s == %s" % (name, value))


# ---- the proxy over TLS -------------------------------------------------------------------------


def test_curl_gets_a_proxied_response_over_tls(verge, origin, site):
    v = start_tls(verge, origin, [site])
    r = tls_curl(v.tls_port, "/hello?x=1", site.cert)
    assert r.returncode == 0, r.stderr
    assert r.status == 200 and r.body == b"origin: GET /hello?x=1\n"
    assert r.all_heads[-1][0].startswith("HTTP/2 200"), r.all_heads  # curl offered h2 and http/1.1; verge chose h2
    assert [x.path for x in origin.requests] == ["/hello"]


def test_request_body_reaches_the_origin_over_tls(verge, origin, site):
    v = start_tls(verge, origin, [site])
    body = os.urandom(300 * 1024)  # many TLS records
    r = tls_get(v.tls_port, "/upload", method="POST", body=body)
    assert r.status == 200
    (request,) = origin.requests
    assert request.method == "POST" and request.body_length == len(body)
    assert request.body_sha256 == hashlib.sha256(body).hexdigest()


def test_keep_alive_serves_several_requests_on_one_tls_connection(verge, origin, site):
    v = start_tls(verge, origin, [site])
    with TLSConn(v.tls_port) as c:
        for i in range(3):
            r = c.request("GET", "/k%d" % i)
            assert r.status == 200 and r.body == b"origin: GET /k%d\n" % i
            assert (r.header("connection") or "").lower() != "close", r.headers
        assert c.request("GET", "/last", [("Connection", "close")]).status == 200
        assert c.closed_by_peer(timeout=3)
    assert [x.path for x in origin.requests] == ["/k0", "/k1", "/k2", "/last"]


def test_pipelined_requests_in_one_tls_record_are_all_answered(verge, origin, site):
    """Both requests arrive in one TLS record: the second is already decrypted in verge's TLS
    buffer when the first is answered, with nothing more to read on the socket."""
    v = start_tls(verge, origin, [site])
    with TLSConn(v.tls_port) as c:
        c.send(b"GET /p1 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a.example\r\n\r\n")
        first, second = c.read_response(timeout=5), c.read_response(timeout=5)
    assert (first.status, first.body) == (200, b"origin: GET /p1\n")
    assert (second.status, second.body) == (200, b"origin: GET /p2\n")


def test_large_object_is_served_whole_from_cache_over_tls(verge, origin, site):
    size = 3 * 1024 * 1024 + 17
    origin.route("/big", size=size)
    v = start_tls(verge, origin, [site], extra=cache_config(origin))
    with TLSConn(v.tls_port) as c:
        r = c.request("GET", "/big", keep_body=False)
        assert (r.status, r.complete, r.body_length, r.body_sha256) == (200, True, size, pattern_sha256(size))
        assert r.header("x-cache") == MISS, r.headers
    with TLSConn(v.tls_port) as c:
        for _ in range(2):  # the connection stays usable after a large response from the cache
            r = c.request("GET", "/big", keep_body=False)
            assert (r.status, r.complete, r.body_length, r.body_sha256) == (200, True, size, pattern_sha256(size))
            assert r.header("x-cache") == HIT, r.headers
    assert [x.path for x in origin.requests] == ["/big"]


@pytest.mark.parametrize("source", ["static", "cache"])
def test_slow_reader_gets_the_body_whole_while_others_are_served(verge, origin, site, tmp_path, source):
    """Static files go out as copies, stored objects as pread pieces of their memfd segments, both
    in TLS records. A viewer that stops reading leaves a record half sent; it must be finished
    with the same bytes, and other viewers must not wait meanwhile."""
    size = 4 * 1024 * 1024 + 5
    www = tmp_path / "www"
    www.mkdir()
    (www / "big.bin").write_bytes(pattern_bytes(size))
    origin.route("/big.bin", size=size)
    files = {"files": {"static": str(www)}} if source == "static" else {}
    big = {"path": "/big.bin", "origin": "files"} if source == "static" else cached_behavior("/big.bin")
    v = start_tls(verge, origin, [site], extra={
        "threads": 1,
        "origins": dict(files, app={"url": "http://127.0.0.1:%d" % origin.port}),
        "behaviors": [big, {"path": "*", "origin": "app"}]})
    if source == "cache":
        r = tls_get(v.tls_port, "/big.bin", keep_body=False)
        assert (r.status, r.body_sha256, r.header("x-cache")) == (200, pattern_sha256(size), MISS)
    slow = socket.create_connection(("127.0.0.1", v.tls_port), timeout=10)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    slow = client_context().wrap_socket(slow, server_hostname="a.example")
    try:
        slow.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
        time.sleep(0.5)  # verge fills the socket and waits with a record half sent
        start = time.monotonic()
        r = tls_get(v.tls_port, "/meanwhile")
        assert (r.status, r.body) == (200, b"origin: GET /meanwhile\n")
        assert time.monotonic() - start < 1.5, "a slow TLS reader delayed another viewer"
        received = bytearray()
        while True:
            chunk = slow.recv(65536)
            if not chunk:
                break
            received += chunk
            if len(received) > 128 * 1024:
                slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)  # the rest at full speed
    finally:
        slow.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    if source == "cache":
        assert HIT.encode() in head, head
    assert len(body) == size and hashlib.sha256(body).hexdigest() == pattern_sha256(size)


def test_plain_and_tls_listeners_side_by_side(verge, origin, site):
    v = start_tls(verge, origin, [site], plain=True)
    assert v.port != v.tls_port
    assert v.get("/plain").body == b"origin: GET /plain\n"
    assert tls_get(v.tls_port, "/secure").body == b"origin: GET /secure\n"
    assert v.get("/plain-again").status == 200
    assert [x.path for x in origin.requests] == ["/plain", "/secure", "/plain-again"]


# ---- SNI ----------------------------------------------------------------------------------------


@pytest.fixture
def sni_verge(verge, origin, sni_certs):
    return start_tls(verge, origin, sni_certs)


def assert_presents(v, sni, expected, certs):
    der = presented(v.tls_port, sni)
    assert der == expected.der, "SNI %r got %s, expected %s" % (sni, which(der, *certs), expected.name)


def test_sni_selects_the_certificate_naming_the_host_case_insensitively(sni_verge, sni_certs):
    default, _, exact, _ = sni_certs
    assert_presents(sni_verge, "default.example", default, sni_certs)
    assert_presents(sni_verge, "exact.example", exact, sni_certs)
    assert_presents(sni_verge, "EXACT.Example", exact, sni_certs)


def test_sni_wildcard_matches_exactly_one_label(sni_verge, sni_certs):
    default, wild, _, _ = sni_certs
    assert_presents(sni_verge, "y.wild.example", wild, sni_certs)
    assert_presents(sni_verge, "a.b.wild.example", default, sni_certs)
    assert_presents(sni_verge, "wild.example", default, sni_certs)


def test_sni_exact_name_beats_an_earlier_wildcard(sni_verge, sni_certs):
    _, _, exact, _ = sni_certs
    assert_presents(sni_verge, "x.wild.example", exact, sni_certs)


def test_no_sni_or_an_unknown_name_gets_the_first_certificate(verge, origin, sni_certs):
    default, wild, exact, cnonly = sni_certs
    v = start_tls(verge, origin, sni_certs)
    assert_presents(v, None, default, sni_certs)
    assert_presents(v, "unknown.example", default, sni_certs)
    reordered = start_tls(verge, origin, [exact, default, wild, cnonly])
    assert_presents(reordered, None, exact, sni_certs)
    assert_presents(reordered, "unknown.example", exact, sni_certs)
    assert_presents(reordered, "default.example", default, sni_certs)


def test_cn_names_a_certificate_only_without_subject_alt_names(sni_verge, sni_certs):
    default, _, _, cnonly = sni_certs
    assert_presents(sni_verge, "cn-only.example", cnonly, sni_certs)
    assert_presents(sni_verge, "ignored-cn.example", default, sni_certs)  # `exact` has SANs: its CN is no name


def test_curl_verifies_the_certificate_sni_chose(sni_verge, sni_certs):
    _, wild, exact, _ = sni_certs
    port = sni_verge.tls_port
    r = tls_curl(port, "/x", exact.cert, "x.wild.example")
    assert (r.returncode, r.status, r.body) == (0, 200, b"origin: GET /x\n"), r
    r = tls_curl(port, "/y", wild.cert, "y.wild.example")
    assert (r.returncode, r.status) == (0, 200), r
    r = tls_curl(port, "/x", wild.cert, "x.wild.example")
    assert r.returncode == 60, r  # verge presented `exact`, which this CA file does not vouch for


# ---- ALPN and versions --------------------------------------------------------------------------


def test_alpn_prefers_h2_and_serves_http11_clients_in_http11(verge, origin, site):
    v = start_tls(verge, origin, [site])
    out = s_client(v.tls_port, "-alpn", "http/1.1,h2")
    assert out.handshake_ok and out.alpn == "h2", out  # the server's preference
    with TLSConn(v.tls_port, context=client_context(alpn=["http/1.1"])) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        assert c.request("GET", "/alpn").status == 200


def test_alpn_offering_neither_negotiates_nothing_and_speaks_http11(verge, origin, site):
    v = start_tls(verge, origin, [site])
    out = s_client(v.tls_port, "-alpn", "spdy/3", request=True)
    assert out.handshake_ok, out
    assert out.alpn is None and "No ALPN negotiated" in out.output, out
    assert out.status == 200, out


def test_default_min_version_accepts_tls12_and_tls13(verge, origin, site):
    v = start_tls(verge, origin, [site])
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        r = tls_get(v.tls_port, "/v", context=client_context(minimum=version, maximum=version))
        assert r.status == 200 and r.tls_version == name


def test_min_version_tls13_refuses_tls12_clients(verge, origin, site):
    v = start_tls(verge, origin, [site], min_version="TLSv1.3")
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        tls_get(v.tls_port, "/old", context=client_context(maximum=ssl.TLSVersion.TLSv1_2))
    out = s_client(v.tls_port, "-tls1_2")
    assert not out.handshake_ok, out
    r = tls_get(v.tls_port, "/new")
    assert r.status == 200 and r.tls_version == "TLSv1.3"
    assert [x.path for x in origin.requests] == ["/new"]


def test_tls11_is_refused(verge, origin, site):
    v = start_tls(verge, origin, [site])
    out = s_client(v.tls_port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    if "no protocols available" in out.output or re.search(r"has read \d+ bytes and written 0 bytes", out.output):
        pytest.skip("this openssl client cannot offer TLS 1.1")
    assert not out.handshake_ok, out
    assert tls_get(v.tls_port, "/after").status == 200


# ---- session resumption ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_session_ticket_resumes_the_session(verge, origin, site, tmp_path, version):
    v = start_tls(verge, origin, [site])
    session = str(tmp_path / "session.pem")
    first = s_client(v.tls_port, version, "-sess_out", session, request=True)
    assert first.handshake_ok and first.session == "New" and first.status == 200, first
    assert os.path.getsize(session) > 0
    second = s_client(v.tls_port, version, "-sess_in", session, request=True)
    assert second.reused and second.version == first.version and second.status == 200, second


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_session_tickets_survive_a_reload(verge, origin, site, tmp_path, version):
    v = start_tls(verge, origin, [site])
    session = str(tmp_path / "session.pem")
    first = s_client(v.tls_port, version, "-sess_out", session, request=True)
    assert first.handshake_ok and first.status == 200, first
    r = v.reload()
    assert r.status == 200 and json.loads(r.body)["generation"] == 2
    second = s_client(v.tls_port, version, "-sess_in", session, request=True)
    assert second.reused and second.status == 200, second


# ---- certificate reloads --------------------------------------------------------------------


@pytest.fixture
def renewable(tmp_path):
    """old and new certificates for a.example, a different key, and the paths the config names
    (holding `old` at first)."""
    old = make_cert(tmp_path, "old", "a.example", ["a.example"])
    new = make_cert(tmp_path, "new", "a.example", ["a.example"])
    other = make_cert(tmp_path, "other", "other.example", ["other.example"])
    paths = (str(tmp_path / "live.pem"), str(tmp_path / "live.key"))
    install(old, *paths)
    return old, new, other, paths


@pytest.mark.parametrize("via", ["http", "sighup"])
def test_reload_serves_replaced_certificate_files(verge, origin, renewable, via):
    old, new, _, paths = renewable
    v = start_tls(verge, origin, [paths])
    assert presented(v.tls_port, "a.example") == old.der
    install(new, *paths)
    result = v.reload(via=via)
    if via == "http":
        assert result.status == 200, result.body
    else:
        assert "config generation 2 loaded" in result, result
    der = presented(v.tls_port, "a.example")
    assert der == new.der, "got %s" % which(der, old, new)
    r = tls_curl(v.tls_port, "/renewed", new.cert)
    assert (r.returncode, r.status) == (0, 200), r


def test_reordered_listeners_keep_their_own_certificates_after_a_reload(verge, origin, renewable):
    """Listeners find their certificates by address, not by position in listen[]."""
    old, _, other, _ = renewable
    first, second = free_port(), free_port()
    listen = [{"address": "127.0.0.1:%d" % first, "tls": tls_entry([old])},
              {"address": "127.0.0.1:%d" % second, "tls": tls_entry([other])}]
    v = verge({"listen": listen}, origin=origin)
    wait_listening(first)
    wait_listening(second)
    assert (presented(first, "x.example"), presented(second, "x.example")) == (old.der, other.der)
    since = v.stderr_size()
    assert v.reload(dict(v.config, listen=list(reversed(listen)))).status == 200
    v.wait_for_log(r"listen addresses \(or which of them have TLS\) changed", since=since)
    assert (presented(first, "x.example"), presented(second, "x.example")) == (old.der, other.der)


def test_check_rejects_an_encrypted_key_without_asking_for_a_passphrase(tmp_path, check_certs):
    a, _ = check_certs
    encrypted = str(tmp_path / "encrypted.key")
    proc = subprocess.run(["openssl", "pkey", "-in", a.key, "-aes256", "-passout", "pass:secret", "-out", encrypted],
                          capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    _, r = check(tmp_path, check_config(tls_entry([(a.cert, encrypted)])))
    assert r.returncode == 1, r.stdout
    assert "listen[0].tls.certificates[0].key: no PEM private key (or an encrypted one)" in r.stderr, r.stderr


@pytest.mark.parametrize("breakage,field", [("mismatched_key", "key"), ("missing_cert", "cert"), ("no_pem_cert", "cert")])
def test_failed_certificate_reload_keeps_the_old_certificate(verge, origin, renewable, breakage, field):
    old, new, other, (cert_path, key_path) = renewable
    v = start_tls(verge, origin, [(cert_path, key_path)])
    if breakage == "mismatched_key":
        shutil.copyfile(new.cert, cert_path)
        shutil.copyfile(other.key, key_path)
    elif breakage == "missing_cert":
        os.remove(cert_path)
    else:
        with open(cert_path, "w") as f:
            f.write("this is not a certificate\n")
    since = v.stderr_size()
    r = v.reload()
    assert r.status == 422, r.body
    body = json.loads(r.body)
    name = "listen[0].tls.certificates[0].%s" % field
    assert body["ok"] is False and any(name in e for e in body["errors"]), body
    v.wait_for_log(r"config reload failed, keeping generation 1: " + re.escape(name), since=since)
    der = presented(v.tls_port, "a.example")
    assert der == old.der, "got %s" % which(der, old, new, other)
    assert tls_get(v.tls_port, "/still").status == 200
    assert v.metrics().get("verge_config_generation") == 1


# ---- verge check --------------------------------------------------------------------------------


@pytest.fixture
def check_certs(tmp_path):
    return (make_cert(tmp_path, "a", "a.example", ["a.example"]),
            make_cert(tmp_path, "b", "b.example", ["b.example"]))


def check_config(tls):
    return {
        "listen": [{"address": "127.0.0.1:%d" % free_port(), "tls": tls}],
        "origins": {"app": {"url": "http://127.0.0.1:9"}},
        "behaviors": [{"path": "*", "origin": "app"}],
    }


def check(tmp_path, config):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config, indent=2))
    return str(path), run_verge("check", "-c", str(path), cwd="/")


def test_check_accepts_a_good_tls_config(tmp_path, check_certs):
    a, b = check_certs
    path, r = check(tmp_path, check_config(tls_entry([a, b], min_version="TLSv1.3")))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "%s: ok" % path


def test_check_resolves_certificate_paths_against_the_config_directory(tmp_path, check_certs):
    a, _ = check_certs
    assert os.path.dirname(a.cert) == str(tmp_path)
    _, r = check(tmp_path, check_config(tls_entry([("a.pem", "a.key")])))
    assert r.returncode == 0, r.stderr
    _, r = check(tmp_path, check_config(tls_entry([("a.pem", "nope.key")])))
    assert r.returncode == 1 and "listen[0].tls.certificates[0].key" in r.stderr, r.stderr


def broken_tls(case, a, b, tmp_path):
    missing = str(tmp_path / "missing.pem")
    if case == "mismatched_key":
        return tls_entry([(a.cert, b.key)])
    if case == "missing_cert":
        return tls_entry([(missing, a.key)])
    if case == "missing_key":
        return tls_entry([(a.cert, missing)])
    if case == "key_in_cert_file":
        return tls_entry([(a.key, a.key)])
    if case == "bad_second_entry":
        return tls_entry([a, (missing, b.key)])
    if case == "unknown_key":
        return tls_entry([a], ciphers="HIGH")
    if case == "tls11":
        return tls_entry([a], min_version="TLSv1.1")
    if case == "no_certificates":
        return {"min_version": "TLSv1.2"}
    if case == "empty_certificates":
        return tls_entry([])
    if case == "too_many_certificates":
        return tls_entry([a] * 65)
    raise AssertionError(case)


@pytest.mark.parametrize("case,needle", [
    ("mismatched_key", "listen[0].tls.certificates[0].key"),
    ("missing_cert", "listen[0].tls.certificates[0].cert"),
    ("missing_key", "listen[0].tls.certificates[0].key"),
    ("key_in_cert_file", "listen[0].tls.certificates[0].cert"),
    ("bad_second_entry", "listen[0].tls.certificates[1].cert"),
    ("unknown_key", "ciphers"),
    ("tls11", "listen[0].tls.min_version"),
    ("no_certificates", "listen[0].tls.certificates"),
    ("empty_certificates", "listen[0].tls.certificates"),
    ("too_many_certificates", "listen[0].tls.certificates"),
])
def test_check_rejects_bad_tls_settings(tmp_path, check_certs, case, needle):
    a, b = check_certs
    _, r = check(tmp_path, check_config(broken_tls(case, a, b, tmp_path)))
    assert r.returncode == 1, r.stdout
    assert needle in r.stderr, r.stderr
    assert "ok" not in r.stdout


# ---- access log and metrics -----------------------------------------------------------------


def test_access_log_records_protocol_and_tls_details(verge, origin, site):
    v = start_tls(verge, origin, [site], plain=True)
    assert v.get("/plain").status == 200
    tls13 = tls_get(v.tls_port, "/tls13", context=client_context(minimum=ssl.TLSVersion.TLSv1_3))
    tls12 = tls_get(v.tls_port, "/tls12", context=client_context(maximum=ssl.TLSVersion.TLSv1_2))
    assert (tls13.tls_version, tls12.tls_version) == ("TLSv1.3", "TLSv1.2")
    lines = {line["uri"]: line for line in v.access_log_lines(3)}
    assert set(lines) == {"/plain", "/tls13", "/tls12"}
    assert all(line["protocol"] == "HTTP/1.1" for line in lines.values()), lines
    plain = lines["/plain"]
    assert "tls_version" in plain and "tls_cipher" in plain, plain
    assert plain["tls_version"] is None and plain["tls_cipher"] is None, plain
    assert lines["/tls13"]["tls_version"] == "TLSv1.3"
    assert lines["/tls13"]["tls_cipher"] == tls13.tls_cipher  # e.g. TLS_AES_256_GCM_SHA384
    assert lines["/tls12"]["tls_version"] == "TLSv1.2"
    assert isinstance(lines["/tls12"]["tls_cipher"], str) and lines["/tls12"]["tls_cipher"], lines["/tls12"]


def test_tls_connections_are_counted(verge, origin, site):
    v = start_tls(verge, origin, [site], plain=True)
    for i in range(3):
        assert tls_get(v.tls_port, "/c%d" % i).status == 200
    assert v.get("/plain").status == 200  # plain connections do not count
    wait_metric(v, "verge_tls_connections_total", 3)
    assert tls_metric(v, "verge_tls_handshake_failures_total") == 0


def test_plain_http_and_garbage_on_the_tls_port_fail_the_handshake(verge, origin, site):
    v = start_tls(verge, origin, [site], plain=True)
    # Closed on the spot: well within the default header timeout (10 s).
    plain = http(v.tls_port, b"GET /plain-on-tls HTTP/1.1\r\nHost: a.example\r\n\r\n", timeout=3)
    assert plain.closed, plain
    garbage = http(v.tls_port, b"\x16\x03\x01\x00\x20" + b"\xff" * 32 + b"\x00garbage\r\n\r\n", timeout=3)
    assert garbage.closed, garbage
    wait_metric(v, "verge_tls_handshake_failures_total", 2)
    assert origin.requests == []
    r = tls_get(v.tls_port, "/after")
    assert (r.status, r.body) == (200, b"origin: GET /after\n")
    assert v.get("/plain-after").status == 200
    assert [x.path for x in origin.requests] == ["/after", "/plain-after"]


def test_resumed_sessions_are_counted(verge, origin, site, tmp_path):
    v = start_tls(verge, origin, [site], plain=True)
    session = str(tmp_path / "session.pem")
    assert s_client(v.tls_port, "-sess_out", session, request=True).session == "New"
    assert s_client(v.tls_port, request=True).session == "New"
    out = s_client(v.tls_port, "-sess_in", session, request=True)
    assert out.reused, out
    wait_metric(v, "verge_tls_sessions_resumed_total", 1)
    wait_metric(v, "verge_tls_connections_total", 3)


# ---- clients that stall -------------------------------------------------------------------------


def test_silent_client_is_closed_after_the_header_timeout(verge, origin, site):
    v = start_tls(verge, origin, [site], extra={"timeouts": {"header_read_ms": 1000}})
    sock = raw_connect(v.tls_port)
    try:
        start = time.monotonic()
        closed_at = wait_closed(sock, 5.0)
    finally:
        sock.close()
    assert closed_at is not None, "a TLS connection that sent nothing was still open after 5 s"
    assert 0.5 <= closed_at - start < 5.0, closed_at - start


def test_stalled_client_hello_is_closed_while_others_are_served(verge, origin, site):
    v = start_tls(verge, origin, [site], extra={"threads": 1, "timeouts": {"header_read_ms": 2000}})
    hello = client_hello()
    assert len(hello) > 100
    stalled = [raw_connect(v.tls_port), raw_connect(v.tls_port)]
    try:
        stalled[1].sendall(hello[: len(hello) // 2])
        start = time.monotonic()
        r = tls_get(v.tls_port, "/meanwhile")
        assert r.status == 200
        assert time.monotonic() - start < 1.5, "a stalled handshake delayed another client"
        assert all(still_open(s) for s in stalled), "closed before the header timeout"
        closed = [wait_closed(s, start + 6.0 - time.monotonic()) for s in stalled]
    finally:
        for s in stalled:
            s.close()
    assert all(t is not None for t in closed), "a stalled TLS connection was still open after 6 s"
    assert all(t - start >= 1.0 for t in closed), [t - start for t in closed]
    assert tls_get(v.tls_port, "/after").status == 200


def test_request_bodies_that_end_inside_records_read_ahead_reach_the_origin(verge, origin, site):
    """Upload sizes around the input buffer: the last records of a body can sit in OpenSSL's
    read-ahead while the socket has nothing more; reading must resume from them."""
    v = start_tls(verge, origin, [site], extra={"timeouts": {"idle_ms": 3000}})
    with TLSConn(v.tls_port) as c:
        for size in range(20 * 1024, 200 * 1024, 5 * 1024 + 7):
            body = bytes([size % 251]) * size
            r = c.request("POST", "/up%d" % size, body=body)
            assert r.status == 200, size
            assert origin.requests[-1].body_length == size, size
