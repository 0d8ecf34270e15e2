"""Include Body (spec §1.5): request triggers see the request body, base64, truncated at
40 KB (viewer-request) or 1 MB (origin-request); "read-only" forwards the viewer's whole
body, "replace" sends the function's instead."""

import base64
import hashlib
import os

from conftest import HTTPConn

# A viewer-request/origin-request function that reports what it saw in response headers of the
# origin request (the origin records them) and optionally replaces the body.
REPORT_BODY = """
function handler(event, context)
  local request = event.Records[1].cf.request
  local body = request.body
  if body == nil then
    request.headers["x-body"] = {{value = "absent"}}
    return request
  end
  request.headers["x-body-length"] = {{value = tostring(#body.data)}}
  request.headers["x-body-truncated"] = {{value = tostring(body.inputTruncated)}}
  request.headers["x-body-encoding"] = {{value = body.encoding}}
  request.headers["x-body-action"] = {{value = body.action}}
  if #body.data <= 64 then
    request.headers["x-body-data"] = {{value = body.data}}
  end
  %s
  return request
end
"""


def write_function(tmp_path, name, extra=""):
    path = os.path.join(str(tmp_path), name + ".lua")
    with open(path, "w") as f:
        f.write(REPORT_BODY % extra)
    return path


def body_config(tmp_path, origin, trigger="viewer-request", extra="", include_body=True):
    code = write_function(tmp_path, "body", extra)
    return {
        "origins": {"app": {"url": origin.url}},
        "functions": {"body": {"code": code}},
        "function_log": os.path.join(str(tmp_path), "fn.log"),
        "behaviors": [{"path": "*", "origin": "app", "triggers": {trigger: {"function": "body", "include_body": include_body}}}],
    }


def post(port, body, headers=None, chunked=False):
    with HTTPConn(port) as conn:
        if chunked:
            head = [("Transfer-Encoding", "chunked")] + list(headers or [])
            payload = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in [body[i:i + 5000] for i in range(0, len(body), 5000)])
            payload += b"0\r\n\r\n"
            return conn.request("POST", "/upload", headers=head, body=payload)
        return conn.request("POST", "/upload", headers=headers, body=body)


def test_viewer_request_sees_the_body_and_the_origin_gets_it_unchanged(verge, origin, tmp_path):
    v = verge(body_config(tmp_path, origin))
    response = post(v.port, b"hello body")
    assert response.status == 200
    seen = origin.wait_for_requests(1)[0]
    assert seen.body == b"hello body"
    assert seen.header("x-body-data") == base64.b64encode(b"hello body").decode()
    assert seen.header("x-body-truncated") == "false"
    assert seen.header("x-body-encoding") == "base64"
    assert seen.header("x-body-action") == "read-only"


def test_without_include_body_the_event_has_no_body(verge, origin, tmp_path):
    v = verge(body_config(tmp_path, origin, include_body=False))
    assert post(v.port, b"hello").status == 200
    seen = origin.wait_for_requests(1)[0]
    assert seen.header("x-body") == "absent"
    assert seen.body == b"hello"


def test_a_body_over_40_kb_is_truncated_for_the_function_but_sent_whole(verge, origin, tmp_path):
    v = verge(body_config(tmp_path, origin))
    body = os.urandom(100 * 1024)
    assert post(v.port, body).status == 200
    seen = origin.wait_for_requests(1)[0]
    assert seen.header("x-body-truncated") == "true"
    assert int(seen.header("x-body-length")) == len(base64.b64encode(body[:40 * 1024]))
    assert seen.body_length == len(body)
    assert seen.body_sha256 == hashlib.sha256(body).hexdigest()


def test_a_chunked_body_is_collected_and_forwarded(verge, origin, tmp_path):
    v = verge(body_config(tmp_path, origin))
    body = os.urandom(12000)
    assert post(v.port, body, chunked=True).status == 200
    seen = origin.wait_for_requests(1)[0]
    assert seen.header("x-body-truncated") == "false"
    assert int(seen.header("x-body-length")) == len(base64.b64encode(body))
    assert seen.body == body


def test_a_long_chunked_body_streams_on_after_the_collected_part(verge, origin, tmp_path):
    v = verge(body_config(tmp_path, origin))
    body = os.urandom(300 * 1024)
    assert post(v.port, body, chunked=True).status == 200
    seen = origin.wait_for_requests(1)[0]
    assert seen.header("x-body-truncated") == "true"
    assert seen.body_sha256 == hashlib.sha256(body).hexdigest()
    assert seen.body_length == len(body)


def test_replace_with_text_sends_the_function_body(verge, origin, tmp_path):
    extra = 'request.body = {action = "replace", encoding = "text", data = "replaced!"}'
    v = verge(body_config(tmp_path, origin, extra=extra))
    assert post(v.port, b"original").status == 200
    seen = origin.wait_for_requests(1)[0]
    assert seen.body == b"replaced!"
    assert seen.header("content-length") == "9"


def test_replace_with_base64_at_origin_request(verge, origin, tmp_path):
    payload = base64.b64encode(b"\x00\x01binary\xff").decode()
    extra = 'request.body = {action = "replace", encoding = "base64", data = "%s"}' % payload
    v = verge(body_config(tmp_path, origin, trigger="origin-request", extra=extra))
    assert post(v.port, os.urandom(2000)).status == 200
    seen = origin.wait_for_requests(1)[0]
    assert seen.body == b"\x00\x01binary\xff"


def test_origin_request_limit_is_1_mb(verge, origin, tmp_path):
    v = verge(body_config(tmp_path, origin, trigger="origin-request"))
    body = os.urandom(200 * 1024)
    response = post(v.port, body)
    assert response.status == 200, response.body
    seen = origin.wait_for_requests(1)[0]
    assert seen.header("x-body-truncated") == "false"
    assert int(seen.header("x-body-length")) == len(base64.b64encode(body))
    assert seen.body_sha256 == hashlib.sha256(body).hexdigest()


def test_a_replacement_body_that_is_not_base64_is_a_validation_error(verge, origin, tmp_path):
    extra = 'request.body = {action = "replace", encoding = "base64", data = "not base64!"}'
    v = verge(body_config(tmp_path, origin, extra=extra))
    response = post(v.port, b"original")
    assert response.status == 502
    assert response.header("x-cache") == "LambdaValidationError from verge"
    assert origin.requests == []


def test_expect_100_continue_with_include_body(verge, origin, tmp_path):
    v = verge(body_config(tmp_path, origin))
    with HTTPConn(v.port) as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = conn.read_response(skip_interim=False)
        assert interim.status == 100
        conn.send(b"hello")
        final = conn.read_response()
        assert final.status == 200
    seen = origin.wait_for_requests(1)[0]
    assert seen.body == b"hello"
    assert seen.header("x-body-data") == base64.b64encode(b"hello").decode()


def test_a_get_with_include_body_sees_an_empty_body(verge, origin, tmp_path):
    v = verge(body_config(tmp_path, origin))
    with HTTPConn(v.port) as conn:
        assert conn.request("GET", "/x").status == 200
    seen = origin.wait_for_requests(1)[0]
    assert seen.header("x-body-length") == "0"
    assert seen.header("x-body-truncated") == "false"
