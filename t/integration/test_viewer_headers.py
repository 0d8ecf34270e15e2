"""CloudFront's viewer metadata headers (issue 6, item 5; spec §2.3.3): CloudFront-Viewer-Country
from `viewer_countries`, the four CloudFront-Is-*-Viewer flags from the User-Agent and
CloudFront-Forwarded-Proto from the viewer connection, added after viewer-request and before the
cache lookup on behaviors that list them in `viewer_headers` (or in their cache key), replacing
what the viewer sent. Origin functions and the origin see verge's values; viewer functions see the
viewer's. `dev.debug_headers` lets X-Verge-Debug-Country override the country.

Viewers are loopback clients: 127.0.0.1 (FR in the table below) and ::1 (DE) on a second listen
address; TLS and HTTP/2 with curl and Python's ssl module.
"""

import json
import socket
import ssl

import pytest

from conftest import HIT, MISS, HTTPConn, curl, free_port, openssl, origin_entry, run_verge

VALIDATION = "LambdaValidationError from verge"
COUNTRIES = {"127.0.0.0/8": "FR", "::1/128": "DE", "203.0.113.0/24": "BE", "2001:db8::/32": "AT"}
COUNTRY, PROTO = "CloudFront-Viewer-Country", "CloudFront-Forwarded-Proto"
DESKTOP, MOBILE = "CloudFront-Is-Desktop-Viewer", "CloudFront-Is-Mobile-Viewer"
SMARTTV, TABLET = "CloudFront-Is-SmartTV-Viewer", "CloudFront-Is-Tablet-Viewer"
ALL = [COUNTRY, DESKTOP, MOBILE, SMARTTV, TABLET, PROTO]
DEVICE_FLAGS = [DESKTOP, MOBILE, SMARTTV, TABLET]

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.0 Mobile/15E148 Safari/604.1")
IPAD = "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
ANDROID_TABLET = "Mozilla/5.0 (Linux; Android 10; SM-T510) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
TV = "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 TV Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def meta_config(origin, viewer_headers=None, countries=None, dev=None, extra_behaviors=(), **behavior):
    """Origin "app"; behavior "/meta/*" asking for `viewer_headers` (default: all six), then
    `extra_behaviors`, then "*" asking for none."""
    first = dict({"path": "/meta/*", "origin": "app", "viewer_headers": ALL if viewer_headers is None else viewer_headers},
                 **behavior)
    config = {
        "origins": {"app": origin_entry(origin)},
        "viewer_countries": COUNTRIES if countries is None else countries,
        "behaviors": [first, *extra_behaviors, {"path": "*", "origin": "app"}],
    }
    if dev is not None:
        config["dev"] = dev
    return config


def seen(origin):
    """{name: [values]} of the viewer headers the origin's last request carried, names as sent."""
    request = origin.requests[-1]
    out = {}
    for name, value in request.headers:
        if name.lower().startswith("cloudfront-"):
            out.setdefault(name, []).append(value)
    return out


def write_function(tmp_path, name, body):
    path = tmp_path / (name + ".lua")
    path.write_text("""
function handler(event, context)
  local cf = event.Records[1].cf
  local request = cf.request
  local response = cf.response
  local function h(name) local v = request.headers[name]; return v and v[1].value or "none" end
%s
end
""" % body)
    return {"code": str(path)}


# ---- what the origin sees ----------------------------------------------------------------------


def test_origin_sees_the_headers_only_where_a_behavior_asks(verge, origin):
    v = verge(meta_config(origin))
    r = v.get("/meta/a", [("User-Agent", FIREFOX)])
    assert r.status == 200, (r, r.headers)
    assert seen(origin) == {PROTO: ["http"], DESKTOP: ["true"], MOBILE: ["false"], SMARTTV: ["false"], TABLET: ["false"],
                            COUNTRY: ["FR"]}, origin.requests[-1].headers
    # after the viewer's headers, in the spec's order
    names = [n for n, _ in origin.requests[-1].headers]
    assert names.index(PROTO) > names.index("User-Agent"), names
    assert [n for n in names if n in ALL] == [PROTO, DESKTOP, MOBILE, SMARTTV, TABLET, COUNTRY], names
    assert v.get("/plain", [("User-Agent", FIREFOX)]).status == 200
    assert seen(origin) == {}, origin.requests[-1].headers


def test_only_the_listed_headers_are_added(verge, origin):
    v = verge(meta_config(origin, viewer_headers=["cloudfront-viewer-country", "CLOUDFRONT-IS-MOBILE-VIEWER"]))
    v.get("/meta/a", [("User-Agent", IPHONE)])
    assert seen(origin) == {COUNTRY: ["FR"], MOBILE: ["true"]}, origin.requests[-1].headers


def test_viewer_sent_copies_are_replaced(verge, origin):
    v = verge(meta_config(origin))
    spoofed = [("CloudFront-Viewer-Country", "US"), ("cloudfront-viewer-country", "GB"), ("CloudFront-Is-Mobile-Viewer", "true"),
               ("CloudFront-Is-SmartTV-Viewer", "true"), ("CloudFront-Forwarded-Proto", "https"), ("X-Other", "kept")]
    v.get("/meta/a", spoofed + [("User-Agent", FIREFOX)])
    assert seen(origin) == {PROTO: ["http"], DESKTOP: ["true"], MOBILE: ["false"], SMARTTV: ["false"], TABLET: ["false"],
                            COUNTRY: ["FR"]}, origin.requests[-1].headers
    assert origin.requests[-1].header("x-other") == "kept"
    # a behavior that asks for nothing passes the viewer's copies on as they are
    v.get("/plain", spoofed)
    assert seen(origin) == {"CloudFront-Viewer-Country": ["US"], "cloudfront-viewer-country": ["GB"],
                            "CloudFront-Is-Mobile-Viewer": ["true"], "CloudFront-Is-SmartTV-Viewer": ["true"],
                            "CloudFront-Forwarded-Proto": ["https"]}, origin.requests[-1].headers


def test_ipv4_and_ipv6_viewers(verge, origin):
    port6 = free_port()
    config = meta_config(origin, viewer_headers=[COUNTRY])
    config["listen"] = [{"address": "127.0.0.1:%d" % free_port()}, {"address": "[::1]:%d" % port6}]
    v = verge(config)  # the fixture waits on listen[0]
    v.get("/meta/a")
    assert seen(origin) == {COUNTRY: ["FR"]}
    with HTTPConn(port6, host="::1") as c:
        r = c.request("GET", "/meta/a", [("Host", "[::1]:%d" % port6), ("Connection", "close")])
    assert r.status == 200, (r, r.headers)
    assert seen(origin) == {COUNTRY: ["DE"]}, origin.requests[-1].headers
    assert v.access_log_lines(2)[-1]["client_ip"] == "::1"


def test_a_viewer_in_no_listed_network_gets_no_country(verge, origin):
    v = verge(meta_config(origin, viewer_headers=[COUNTRY, PROTO], countries={"203.0.113.0/24": "BE", "::1/128": "DE"}))
    v.get("/meta/a", [("CloudFront-Viewer-Country", "US")])
    assert seen(origin) == {PROTO: ["http"]}, origin.requests[-1].headers  # the spoofed copy is gone all the same
    v2 = verge(meta_config(origin, viewer_headers=[COUNTRY], countries={}))
    v2.get("/meta/a")
    assert seen(origin) == {}, origin.requests[-1].headers


@pytest.mark.parametrize("user_agent, device", [
    (IPHONE, MOBILE), (IPAD, TABLET), (ANDROID_TABLET, TABLET), (TV, SMARTTV), (FIREFOX, DESKTOP), ("curl/8.5.0", DESKTOP),
    (None, DESKTOP)])
def test_device_flags_from_the_user_agent(verge, origin, user_agent, device):
    v = verge(meta_config(origin, viewer_headers=DEVICE_FLAGS))
    with v.conn() as c:  # HTTPConn sends no User-Agent of its own
        headers = [("Connection", "close")] + ([("User-Agent", user_agent)] if user_agent else [])
        assert c.request("GET", "/meta/a", headers).status == 200
    assert seen(origin) == {flag: ["true" if flag == device else "false"] for flag in DEVICE_FLAGS}, origin.requests[-1].headers


# ---- TLS and HTTP/2 -------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path):
    cert, key = str(tmp_path / "site.pem"), str(tmp_path / "site.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
            cert, "-days", "2", "-subj", "/CN=a.example", "-addext", "subjectAltName=DNS:a.example")
    return {"cert": cert, "key": key}


def test_forwarded_proto_follows_the_viewer_connection(verge, origin, certificate):
    plain, h2c, tls = free_port(), free_port(), free_port()
    config = meta_config(origin, viewer_headers=[PROTO, COUNTRY])
    config["listen"] = [{"address": "127.0.0.1:%d" % plain}, {"address": "127.0.0.1:%d" % h2c, "h2c": True},
                        {"address": "127.0.0.1:%d" % tls, "tls": {"certificates": [certificate]}}]
    verge(config)
    # HTTP/1.1 over TLS
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", tls), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="a.example") as sock:
        sock.sendall(b"GET /meta/tls HTTP/1.1\r\nHost: a.example\r\nCloudFront-Forwarded-Proto: http\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert seen(origin) == {PROTO: ["https"], COUNTRY: ["FR"]}, origin.requests[-1].headers
    # HTTP/2 over TLS: a stream's protocol is its connection's
    r = curl("https://127.0.0.1:%d/meta/h2" % tls, "--http2", "-k")
    assert (r.returncode, r.status) == (0, 200), r
    assert origin.requests[-1].path == "/meta/h2" and seen(origin) == {PROTO: ["https"], COUNTRY: ["FR"]}
    # h2c and plain HTTP/1.1
    r = curl("http://127.0.0.1:%d/meta/h2c" % h2c, "--http2-prior-knowledge", "-H", "CloudFront-Forwarded-Proto: https")
    assert (r.returncode, r.status) == (0, 200), r
    assert origin.requests[-1].path == "/meta/h2c" and seen(origin) == {PROTO: ["http"], COUNTRY: ["FR"]}
    r = curl("http://127.0.0.1:%d/meta/plain" % plain)
    assert (r.returncode, r.status) == (0, 200), r
    assert seen(origin) == {PROTO: ["http"], COUNTRY: ["FR"]}


# ---- functions --------------------------------------------------------------------------------------


def test_origin_request_functions_see_verges_values(verge, origin, tmp_path):
    config = meta_config(origin)
    config["functions"] = {"oreq": write_function(tmp_path, "oreq", """
  return {status = "200", body = h("cloudfront-viewer-country") .. " " .. h("cloudfront-is-tablet-viewer") .. " " ..
          h("cloudfront-forwarded-proto") .. " " .. request.headers["cloudfront-viewer-country"][1].key}
""")}
    config["behaviors"][0]["triggers"] = {"origin-request": "oreq"}
    v = verge(config)
    r = v.get("/meta/a", [("User-Agent", IPAD), ("CloudFront-Viewer-Country", "US")])
    assert (r.status, r.body) == (200, b"FR true http CloudFront-Viewer-Country"), (r, r.headers)


def test_viewer_functions_see_the_viewers_values(verge, origin, tmp_path):
    """viewer-request runs before the headers are added; viewer-response is shown the viewer's
    copies; the origin gets verge's in between."""
    config = meta_config(origin)
    config["functions"] = {
        "vreq": write_function(tmp_path, "vreq", """
  request.headers["x-vreq-saw"] = {{value = h("cloudfront-viewer-country") .. " " .. h("cloudfront-is-mobile-viewer")}}
  return request
"""),
        "vresp": write_function(tmp_path, "vresp", """
  response.headers["x-vresp-saw"] = {{value = h("cloudfront-viewer-country") .. " " .. h("cloudfront-is-mobile-viewer") ..
                                               " " .. h("cloudfront-forwarded-proto")}}
  return response
"""),
    }
    config["behaviors"][0]["triggers"] = {"viewer-request": "vreq", "viewer-response": "vresp"}
    config["behaviors"][0]["cache"] = {"key": {"headers": [COUNTRY]}}
    v = verge(config)
    r = v.get("/meta/a", [("CloudFront-Viewer-Country", "US"), ("User-Agent", IPHONE)])
    assert r.status == 200, (r, r.headers)
    assert origin.requests[-1].header("x-vreq-saw") == "US none"
    assert seen(origin)[COUNTRY] == ["FR"] and seen(origin)[MOBILE] == ["true"]
    assert r.header("x-vresp-saw") == "US none none", r.headers
    # a hit: viewer-response again sees what this viewer sent
    r = v.get("/meta/a", [("User-Agent", IPHONE)])
    assert (r.header("x-cache"), r.header("x-vresp-saw")) == (HIT, "none none none"), r.headers
    assert len(origin.requests) == 1


def test_viewer_request_may_not_add_the_country(verge, origin, tmp_path):
    config = meta_config(origin)
    config["functions"] = {"vreq": write_function(tmp_path, "vreq", """
  if request.headers["cloudfront-viewer-country"] then
    request.headers["cloudfront-viewer-country"][1].value = "GB"  -- changing the viewer's copy is allowed
  else
    request.headers["cloudfront-viewer-country"] = {{value = "GB"}}
  end
  return request
""")}
    config["behaviors"][0]["triggers"] = {"viewer-request": "vreq"}
    v = verge(config)
    r = v.get("/meta/a")
    assert (r.status, r.header("x-cache")) == (502, VALIDATION), (r, r.headers)
    assert b"header may not be added at viewer-request" in r.body, r.body
    assert origin.requests == []
    r = v.get("/meta/a", [("CloudFront-Viewer-Country", "US")])
    assert r.status == 200, (r, r.headers)
    assert seen(origin)[COUNTRY] == ["FR"]  # and verge's value replaces the function's


# ---- the cache key ------------------------------------------------------------------------------


def test_cache_key_per_country(verge, origin):
    """CloudFront-Viewer-Country in the cache key: one object per country, keyed on verge's value
    (a viewer's own copy changes nothing), and added even without viewer_headers."""
    keyed = {"path": "/keyed/*", "origin": "app", "cache": {"key": {"headers": ["cloudfront-viewer-country"]}}}
    unkeyed = {"path": "/unkeyed/*", "origin": "app", "viewer_headers": [COUNTRY], "cache": {}}
    v = verge(meta_config(origin, dev={"debug_headers": True}, extra_behaviors=[keyed, unkeyed]))
    debug = "X-Verge-Debug-Country"
    assert v.get("/keyed/a").header("x-cache") == MISS
    assert seen(origin) == {COUNTRY: ["FR"]}
    assert v.get("/keyed/a", [("CloudFront-Viewer-Country", "DE")]).header("x-cache") == HIT  # spoofing changes nothing
    assert v.get("/keyed/a", [(debug, "de")]).header("x-cache") == MISS
    assert seen(origin) == {COUNTRY: ["DE"]}
    assert v.get("/keyed/a", [(debug, "FR")]).header("x-cache") == HIT
    assert v.get("/keyed/a", [(debug, "DE")]).header("x-cache") == HIT
    assert len(origin.requests) == 2
    # not in the key: one object for every country
    assert v.get("/unkeyed/a", [(debug, "FR")]).header("x-cache") == MISS
    assert v.get("/unkeyed/a", [(debug, "DE")]).header("x-cache") == HIT
    assert len(origin.requests) == 3


# ---- the debug override ---------------------------------------------------------------------------


def test_debug_country_override(verge, origin):
    debug = "X-Verge-Debug-Country"
    off = verge(meta_config(origin, viewer_headers=[COUNTRY]))
    off.get("/meta/a", [(debug, "JP")])
    assert seen(origin) == {COUNTRY: ["FR"]}
    assert origin.requests[-1].header(debug) == "JP"  # off: an ordinary header, passed on

    on = verge(meta_config(origin, viewer_headers=[COUNTRY], dev={"debug_headers": True}))
    on.get("/meta/a", [(debug, "jp")])
    assert seen(origin) == {COUNTRY: ["JP"]}
    assert not origin.requests[-1].has_header(debug)
    on.get("/plain", [(debug, "JP")])  # taken off on every behavior
    assert seen(origin) == {} and not origin.requests[-1].has_header(debug), origin.requests[-1].headers
    on.get("/meta/a")
    assert seen(origin) == {COUNTRY: ["FR"]}
    count = len(origin.requests)
    r = on.get("/meta/a", [(debug, "France")])
    assert r.status == 400 and b"X-Verge-Debug-Country must be a country code of two letters" in r.body, (r, r.body)
    assert len(origin.requests) == count


def test_reload_changes_the_table(verge, origin):
    config = meta_config(origin, viewer_headers=[COUNTRY])
    v = verge(config)
    v.get("/meta/a")
    assert seen(origin) == {COUNTRY: ["FR"]}
    assert v.reload(dict(config, viewer_countries={"127.0.0.1/32": "IT", "127.0.0.0/8": "FR"})).status == 200
    v.get("/meta/a")
    assert seen(origin) == {COUNTRY: ["IT"]}, origin.requests[-1].headers


# ---- verge check -------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"viewer_countries": {"10.0.0.0/33": "US"}},
     'viewer_countries."10.0.0.0/33": expected a prefix length from 0 to 32 for an IPv4 network'),
    ({"viewer_countries": {"10.1.0.0/8": "US"}},
     'viewer_countries."10.1.0.0/8": the address has bits set after the /8 prefix; write the network "10.0.0.0/8"'),
    ({"viewer_countries": {"2001:db8::/32": "germany"}},
     'viewer_countries."2001:db8::/32": expected a country code of two upper-case letters (ISO 3166-1 alpha-2, e.g. "FR"), '
     'got "germany"'),
    ({"viewer_countries": {"localhost": "US"}},
     'viewer_countries.localhost: expected an IPv4 or IPv6 network written "address/length" (e.g. "203.0.113.0/24", '
     '"2001:db8::/32")'),
    ({"viewer_countries": ["10.0.0.0/8"]},
     'viewer_countries: expected an object of "address/length": "country", got an array'),
    ({"viewer_headers": ["CloudFront-Viewer-City"]},
     'behaviors[0].viewer_headers[0]: expected one of CloudFront-Forwarded-Proto, CloudFront-Is-Desktop-Viewer, '
     'CloudFront-Is-Mobile-Viewer, CloudFront-Is-SmartTV-Viewer, CloudFront-Is-Tablet-Viewer, CloudFront-Viewer-Country, '
     'got "CloudFront-Viewer-City"'),
    ({"dev": {"debug_headers": 1}}, "dev.debug_headers: expected true or false, got 1"),
])
def test_check_messages(tmp_path, change, message):
    config = {"listen": [{"address": "127.0.0.1:%d" % free_port()}], "origins": {"app": {"url": "http://127.0.0.1:9"}},
              "behaviors": [{"path": "*", "origin": "app"}]}
    if "viewer_headers" in change:
        config["behaviors"][0]["viewer_headers"] = change["viewer_headers"]
    else:
        config.update(change)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    r = run_verge("check", "-c", str(path))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert any(line.endswith(message) for line in r.stderr.splitlines()), r.stderr
