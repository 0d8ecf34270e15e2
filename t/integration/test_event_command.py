"""`verge event TRIGGER --url URL [...]` (issue 6): a Lambda@Edge event for each trigger, written by
the encoder the proxy uses and filled the way the proxy fills it; its error paths exit 2."""

import base64
import json

import pytest

from conftest import run_verge

TRIGGERS = ["viewer-request", "origin-request", "origin-response", "viewer-response"]


def event(*args):
    r = run_verge("event", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["Records"][0]["cf"]


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_each_trigger_gets_its_event(trigger):
    cf = event(trigger, "--url", "https://example.com:8443/a/b?x=1&y=2", "-H", "Accept: text/html", "-H", "X-Two: 1",
               "-H", "x-two: 2", "--client-ip", "203.0.113.9")
    assert cf["config"] == {"distributionDomainName": "example.com", "distributionId": "VERGE", "eventType": trigger,
                            "requestId": cf["config"]["requestId"]}
    request = cf["request"]
    assert (request["uri"], request["querystring"], request["method"], request["clientIp"]) == (
        "/a/b", "x=1&y=2", "GET", "203.0.113.9")
    assert request["headers"]["host"] == [{"key": "Host", "value": "example.com:8443"}]
    assert request["headers"]["x-two"] == [{"key": "X-Two", "value": "1"}, {"key": "x-two", "value": "2"}]
    origin_trigger = trigger.startswith("origin")
    assert ("origin" in request) == origin_trigger
    if origin_trigger:
        custom = request["origin"]["custom"]
        assert (custom["domainName"], custom["port"], custom["protocol"]) == ("example.com", 8443, "https")
    if trigger.endswith("response"):
        assert cf["response"]["status"] == "200" and cf["response"]["statusDescription"] == "OK"
    else:
        assert "response" not in cf


def test_response_status_and_headers():
    cf = event("origin-response", "--url", "http://h/x", "--status", "404", "--response-header", "Cache-Control: no-store")
    assert (cf["response"]["status"], cf["response"]["statusDescription"]) == ("404", "Not Found")
    assert cf["response"]["headers"]["cache-control"] == [{"key": "Cache-Control", "value": "no-store"}]


def test_body_from_a_file_is_base64_and_truncated_at_the_trigger_limit(tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(b"\x00\x01hello")
    cf = event("origin-request", "--url", "http://h/u", "--method", "POST", "--body", "@" + str(small))
    body = cf["request"]["body"]
    assert (body["encoding"], body["action"], body["inputTruncated"]) == ("base64", "read-only", False)
    assert base64.b64decode(body["data"]) == b"\x00\x01hello"
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (40 * 1024 + 5))
    body = event("viewer-request", "--url", "http://h/u", "--body", "@" + str(big))["request"]["body"]
    assert body["inputTruncated"] is True and len(base64.b64decode(body["data"])) == 40 * 1024


@pytest.mark.parametrize("args,needle", [
    (["viewer-reqest", "--url", "http://h/"], 'unknown trigger "viewer-reqest"'),
    ([], "a trigger is needed"),
    (["viewer-request"], "--url is needed"),
    (["viewer-request", "--url", "ftp://h/"], "expected --url http[s]://host"),
    (["viewer-request", "--url", "http://h:99999/"], "expected --url http[s]://host"),
    (["viewer-request", "--url", "http://h/", "-H", "no colon"], "expected -H 'Name: value'"),
    (["viewer-request", "--url", "http://h/", "--body", "@/nonexistent/body"], 'cannot read the body file "/nonexistent/body"'),
    (["viewer-response", "--url", "http://h/", "--body", "x"], "--body goes with the request triggers"),
    (["viewer-request", "--url", "http://h/", "--status", "404"], "--status and --response-header go with the response"),
    (["origin-response", "--url", "http://h/", "--status", "99"], "expected --status 100..599"),
    (["viewer-request", "--url", "http://h/", "--bogus", "1"], 'unknown option "--bogus"'),
    (["viewer-request", "--url"], "--url needs a value"),
])
def test_bad_arguments_exit_2_with_a_clear_error(args, needle):
    r = run_verge("event", *args)
    assert r.returncode == 2, (r.returncode, r.stdout)
    assert needle in r.stderr, r.stderr
    assert r.stdout == ""


def test_the_event_matches_what_a_function_running_in_verge_sees(verge, origin, tmp_path):
    """A viewer-request function answers with the fields of the event it got; `verge event` for the
    same request must give the same values."""
    code = tmp_path / "echo.lua"
    code.write_text("""
function handler(event, context)
  local r = event.Records[1].cf.request
  local names = {}
  for name, _ in pairs(r.headers) do names[#names + 1] = name end
  table.sort(names)
  local body = table.concat({event.Records[1].cf.config.eventType, r.method, r.uri, r.querystring,
                             r.headers["host"][1].value, r.headers["x-test"][1].key, r.headers["x-test"][1].value}, "|")
  return {status = "200", body = body}
end
""")
    v = verge({"functions": {"echo": {"code": str(code)}},
               "behaviors": [{"path": "*", "origin": "app", "triggers": {"viewer-request": "echo"}}]}, origin=origin)
    r = v.get("/p/q?k=v", [("X-Test", "seen")])
    assert r.status == 200, r.body
    cf = event("viewer-request", "--url", "http://127.0.0.1:%d/p/q?k=v" % v.port, "-H", "X-Test: seen")
    request = cf["request"]
    expected = "|".join([cf["config"]["eventType"], request["method"], request["uri"], request["querystring"],
                         request["headers"]["host"][0]["value"], request["headers"]["x-test"][0]["key"],
                         request["headers"]["x-test"][0]["value"]])
    assert r.body.decode() == expected
