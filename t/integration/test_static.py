"""Static origins (behavior.md "Static origins"): files under a root directory."""

import email.utils
import os

import pytest

from conftest import http

MTIME = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
MTIME_TEXT = "Sun, 06 Nov 1994 08:49:37 GMT"
CONTENT = b"0123456789abcdefghijklmnopqrstuvwxyz" * 100  # 3600 bytes


@pytest.fixture
def site(tmp_path, verge):
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "index.html").write_bytes(b"<h1>home</h1>\n")
    (www / "sub" / "index.html").write_bytes(b"<h1>sub</h1>\n")
    (www / "data.bin").write_bytes(CONTENT)
    for name, data in {"style.css": b"body{}", "app.js": b"1;", "img.png": b"\x89PNG", "doc.json": b"{}",
                       "notes.txt": b"text", "pic.JPG": b"\xff\xd8", "page.htm": b"<p>", "blob.unknownext": b"?",
                       "image.svg": b"<svg/>"}.items():
        (www / name).write_bytes(data)
    os.utime(www / "data.bin", (MTIME, MTIME))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret\n")
    os.symlink(outside / "secret.txt", www / "link-out.txt")
    os.symlink(outside, www / "dir-out")
    os.symlink(www / "notes.txt", www / "link-in.txt")
    os.symlink("/etc/passwd", www / "passwd")
    # "www" is relative: resolved against the config file's directory (verge runs with cwd "/")
    return verge({"origins": {"files": {"static": "www"}}, "behaviors": [{"path": "*", "origin": "files"}]})


def test_get_file(site):
    r = site.get("/data.bin")
    assert r.status == 200 and r.body == CONTENT
    assert r.header("content-length") == str(len(CONTENT))


@pytest.mark.parametrize("path,types", [
    ("/index.html", ["text/html"]),
    ("/page.htm", ["text/html"]),
    ("/style.css", ["text/css"]),
    ("/app.js", ["text/javascript", "application/javascript"]),
    ("/img.png", ["image/png"]),
    ("/pic.JPG", ["image/jpeg"]),
    ("/image.svg", ["image/svg+xml"]),
    ("/doc.json", ["application/json"]),
    ("/notes.txt", ["text/plain"]),
    ("/blob.unknownext", ["application/octet-stream"]),
])
def test_content_type_by_extension(site, path, types):
    r = site.get(path)
    assert r.status == 200
    assert r.header("content-type", "").split(";")[0].strip() in types, r.header("content-type")


def test_directory_serves_its_index(site):
    assert site.get("/").body == b"<h1>home</h1>\n"
    assert site.get("/sub/").body == b"<h1>sub</h1>\n"


def test_last_modified_and_etag(site):
    r = site.get("/data.bin")
    assert r.header("last-modified") == MTIME_TEXT
    etag = r.header("etag")
    assert etag and etag.startswith('"') and etag.endswith('"')
    assert site.get("/data.bin").header("etag") == etag  # stable
    assert site.get("/notes.txt").header("etag") != etag


def test_head(site):
    r = site.get("/data.bin", method="HEAD")
    assert r.status == 200 and r.body == b""
    assert r.header("content-length") == str(len(CONTENT)) and r.header("etag")


def test_if_none_match(site):
    etag = site.get("/data.bin").header("etag")
    r = site.get("/data.bin", headers=[("If-None-Match", etag)])
    assert r.status == 304 and r.body == b"" and r.header("etag") == etag
    assert site.get("/data.bin", headers=[("If-None-Match", '"other", ' + etag)]).status == 304
    assert site.get("/data.bin", headers=[("If-None-Match", "*")]).status == 304
    assert site.get("/data.bin", headers=[("If-None-Match", "W/" + etag)]).status == 304  # weak comparison
    assert site.get("/data.bin", headers=[("If-None-Match", '"nope"')]).status == 200


def test_if_modified_since(site):
    assert site.get("/data.bin", headers=[("If-Modified-Since", MTIME_TEXT)]).status == 304
    later = email.utils.formatdate(MTIME + 3600, usegmt=True)
    assert site.get("/data.bin", headers=[("If-Modified-Since", later)]).status == 304
    earlier = email.utils.formatdate(MTIME - 1, usegmt=True)
    r = site.get("/data.bin", headers=[("If-Modified-Since", earlier)])
    assert r.status == 200 and r.body == CONTENT


def test_if_none_match_wins_over_if_modified_since(site):
    r = site.get("/data.bin", headers=[("If-None-Match", '"nope"'), ("If-Modified-Since", MTIME_TEXT)])
    assert r.status == 200


def test_304_keeps_the_connection_usable(site):
    etag = site.get("/data.bin").header("etag")
    with site.conn() as c:
        assert c.request("GET", "/data.bin", [("If-None-Match", etag)]).status == 304
        assert c.request("GET", "/notes.txt").body == b"text"


@pytest.mark.parametrize("spec,start,end", [
    ("bytes=0-9", 0, 9),
    ("bytes=10-19", 10, 19),
    ("bytes=3590-", 3590, 3599),
    ("bytes=-5", 3595, 3599),
    ("bytes=3000-99999", 3000, 3599),
    ("bytes=0-0", 0, 0),
])
def test_range(site, spec, start, end):
    r = site.get("/data.bin", headers=[("Range", spec)])
    assert r.status == 206
    assert r.header("content-range") == "bytes %d-%d/%d" % (start, end, len(CONTENT))
    assert r.body == CONTENT[start : end + 1]
    assert r.header("content-length") == str(end - start + 1)


@pytest.mark.parametrize("spec", ["bytes=3600-", "bytes=5000-6000"])
def test_unsatisfiable_range_is_416(site, spec):
    r = site.get("/data.bin", headers=[("Range", spec)])
    assert r.status == 416
    assert r.header("content-range") == "bytes */%d" % len(CONTENT)


def test_range_with_matching_if_range(site):
    etag = site.get("/data.bin").header("etag")
    r = site.get("/data.bin", headers=[("Range", "bytes=0-3"), ("If-Range", etag)])
    assert r.status == 206 and r.body == CONTENT[:4]
    r = site.get("/data.bin", headers=[("Range", "bytes=0-3"), ("If-Range", '"stale"')])
    assert r.status == 200 and r.body == CONTENT


def test_range_on_head(site):
    r = site.get("/data.bin", method="HEAD", headers=[("Range", "bytes=0-9")])
    assert r.status == 206 and r.body == b"" and r.header("content-length") == "10"


def test_missing_file_is_404(site):
    assert site.get("/nope.html").status == 404
    assert site.get("/sub/nope").status == 404


@pytest.mark.parametrize("target", [
    b"/../etc/passwd",
    b"/../../../../../../etc/passwd",
    b"/sub/../index.html",
    b"/%2e%2e/etc/passwd",
    b"/%2E%2E/etc/passwd",
    b"/sub/%2e%2e/%2e%2e/outside/secret.txt",
    b"/..%2fetc%2fpasswd",
    b"/%2e%2e%2f%2e%2e%2fetc/passwd",
    b"/sub/..",
    b"/a%00b",
])
def test_dot_dot_and_nul_are_404(site, target):
    ex = http(site.port, b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert ex.status == 404, ex.data[:300]
    assert b"root:" not in ex.data and b"secret" not in ex.data.split(b"\r\n\r\n", 1)[-1]


def test_symlink_out_of_the_root_is_403(site):
    for target in ["/link-out.txt", "/dir-out/secret.txt", "/passwd"]:
        r = site.get(target)
        assert r.status == 403, target
        assert b"secret" not in r.body and b"root:" not in r.body


def test_symlink_inside_the_root_is_served(site):
    r = site.get("/link-in.txt")
    assert r.status == 200 and r.body == b"text"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(site, method):
    body = b"x" if method in ("POST", "PUT", "PATCH") else None
    r = site.get("/index.html", method=method, body=body)
    assert r.status == 405
    allow = [m.strip() for m in r.header("allow", "").split(",")]
    assert sorted(allow) == ["GET", "HEAD"]


def test_query_is_ignored_for_files(site):
    r = site.get("/notes.txt?v=123")
    assert r.status == 200 and r.body == b"text"


def test_static_and_http_origins_side_by_side(tmp_path, verge, origin):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "a.txt").write_bytes(b"static a")
    v = verge({"origins": {"files": {"static": str(tmp_path)}, "app": {"url": origin.url}},
               "behaviors": [{"path": "/assets/*", "origin": "files"}, {"path": "*", "origin": "app"}]})
    assert v.get("/assets/a.txt").body == b"static a"
    assert v.get("/api").body == b"origin: GET /api\n"
    assert [r.path for r in origin.requests] == ["/api"]
    lines = v.access_log_lines(2)
    assert [(l["origin"], l["status"]) for l in lines] == [("files", 200), ("app", 200)]


def test_big_static_file(tmp_path, verge):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(50 * 1024 * 1024)
        f.seek(12345678)
        f.write(b"marker")
    v = verge({"origins": {"files": {"static": str(tmp_path)}}, "behaviors": [{"path": "*", "origin": "files"}]})
    with v.conn(timeout=30) as c:
        r = c.request("GET", "/big.bin", keep_body=False)
        assert r.status == 200 and r.body_length == 50 * 1024 * 1024
        r = c.request("GET", "/big.bin", [("Range", "bytes=12345678-12345683")])
        assert r.body == b"marker"
