"""Request collapsing (issue 3 item 4; cache-behavior.md "Collapsing"): concurrent misses for one
key make exactly one origin request and the others are served from it while it streams in; an
answer that cannot be stored releases the waiters to the origin and does not serialize later
bursts (hit-for-pass); waiters get their own Vary variant; waiters are not hurt when the first
viewer goes away mid-stream.

Times: the origin's Request.received_at / answered_at and the clients' TimedResponse times are
all time.monotonic() in this process, so they compare directly.
"""

import collections
import threading
import time

from conftest import CACHE_STATUS_BYPASS, HIT, MISS, cache_config, concurrent_requests, pattern_sha256, wait_until

SIZE = 256 * 1024 + 7  # not a multiple of the pattern period: a shifted or spliced body changes the hash


def in_thread(function, *args):
    """Runs function(*args) in a thread; returns (thread, box) where box["result"] / box["error"]."""
    box = {}

    def run():
        try:
            box["result"] = function(*args)
        except BaseException as e:  # noqa: B036 - re-raised by the test
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_100_concurrent_requests_for_a_cold_key_make_one_origin_request(verge, origin):
    """60 clients ask at once while the origin waits 300 ms before its head (they find the key
    busy); 40 more ask once the first half of the body has arrived and the origin pauses 800 ms
    (they join mid-stream). One origin request; 100 complete, identical bodies; everyone gets
    body bytes before the origin has sent its last byte (served while it streams in)."""
    origin.route("/cold", size=SIZE, delay_ms=300, pause_after=SIZE // 2, pause_ms=800, header="Cache-Control: max-age=100")
    v = verge(cache_config(origin))
    before = v.metrics()
    wave1_thread, wave1 = in_thread(concurrent_requests, v.port, "/cold", 60)
    (fetch,) = origin.wait_for_requests(1, timeout=10)
    time.sleep(max(0.0, fetch.received_at + 0.5 - time.monotonic()))  # head and first half sent, origin paused
    wave2 = concurrent_requests(v.port, "/cold", 40)
    wave1_thread.join(40)
    assert not wave1_thread.is_alive(), "wave 1 clients did not finish"
    if "error" in wave1:
        raise wave1["error"]
    results = wave1["result"] + wave2
    wait_until(lambda: fetch.answered_at is not None, 5, message="the origin's answer to end")
    assert [r.target for r in origin.requests] == ["/cold"], "exactly one origin request"
    assert all(r.sent_at < fetch.answered_at for r in wave2), "test too slow: wave 2 started after the origin's body ended"
    for i, t in enumerate(results):
        r = t.response
        assert (r.status, r.complete, r.body_length, r.body_sha256) == (200, True, SIZE, pattern_sha256(SIZE)), (i, r.headers)
        assert t.first_body_at is not None and t.first_body_at < fetch.answered_at, \
            "client %d got its first body byte %.3f s after the origin finished" % (i, t.first_body_at - fetch.answered_at)
    kinds = collections.Counter(t.response.header("x-cache") for t in results)
    assert kinds == {MISS: 1, HIT: 99}, kinds
    m = v.metrics()
    assert m.get("verge_cache_misses_total") - before.get("verge_cache_misses_total") == 1
    assert m.get("verge_cache_hits_total") - before.get("verge_cache_hits_total") == 99
    collapsed = m.get("verge_cache_collapsed_total") - before.get("verge_cache_collapsed_total")
    assert 59 <= collapsed <= 99, collapsed  # at least wave 1's waiters; wave 2 joined a filling object
    r = v.get("/cold")
    assert r.header("x-cache") == HIT and r.body_sha256 == pattern_sha256(SIZE)
    assert len(origin.requests) == 1


def test_uncacheable_answer_releases_waiters_and_the_next_burst_is_not_collapsed(verge, origin):
    """The origin answers no-store after 0.5 s. Burst 1 collapses behind the first request, then
    the waiters go to the origin themselves, together: about 2 × 0.5 s, not 10 × 0.5 s. The key is
    then pass-through: burst 2 goes to the origin at once (about 0.5 s), every request bypassed."""
    delay, n = 0.5, 10
    origin.route("/mine", delay_ms=int(delay * 1000), header="Cache-Control: no-store", body="mine")
    v = verge(cache_config(origin))
    start = time.monotonic()
    burst1 = concurrent_requests(v.port, "/mine", n)
    took = time.monotonic() - start
    for t in burst1:
        assert (t.response.status, t.response.body, t.response.header("x-cache")) == (200, b"mine", MISS), t.response.headers
    requests = origin.wait_for_requests(n)
    assert len(requests) == n, "the first request plus each released waiter once"
    assert took < 2 * delay + 0.8, "burst 1 took %.2f s: waiters were serialized" % took
    arrivals = sorted(r.received_at for r in requests)
    assert arrivals[-1] - arrivals[1] < 0.4, "released waiters reached the origin %.2f s apart" % (arrivals[-1] - arrivals[1])
    origin.clear()
    start = time.monotonic()
    burst2 = concurrent_requests(v.port, "/mine", n)
    took = time.monotonic() - start
    assert took < delay + 0.6, "burst 2 took %.2f s" % took
    assert len(origin.requests) == n
    arrivals = sorted(r.received_at for r in origin.requests)
    assert arrivals[-1] - arrivals[0] < 0.4, "burst 2 reached the origin %.2f s apart" % (arrivals[-1] - arrivals[0])
    for t in burst2:
        assert (t.response.status, t.response.body, t.response.header("x-cache")) == (200, b"mine", MISS)
        assert t.response.header("cache-status") == CACHE_STATUS_BYPASS, t.response.headers


def test_collapsed_requests_get_their_own_vary_variant(verge, origin):
    """The Vary of a cold key is unknown while its first request is out: waiters whose
    Accept-Language differs from the leader's must not get the leader's variant."""
    origin.route("/v", echo=True, delay_ms=300, header=["Vary: Accept-Language", "Cache-Control: max-age=100"])
    v = verge(cache_config(origin))
    threads = {lang: in_thread(concurrent_requests, v.port, "/v", 5, [("Accept-Language", lang)]) for lang in ("en", "fr")}
    for lang, (thread, box) in threads.items():
        thread.join(30)
        assert not thread.is_alive() and "error" not in box, (lang, box.get("error"))
        for t in box["result"]:
            r = t.response
            assert r.status == 200, r.headers
            seen = dict((n.lower(), value) for n, value in r.json()["headers"]).get("accept-language")
            assert seen == lang, "asked for %s, got the %s variant (%s)" % (lang, seen, r.header("x-cache"))
    assert sorted(r.header("accept-language") for r in origin.requests) == ["en", "fr"]


def test_waiters_complete_when_the_leader_viewer_goes_away(verge, origin):
    """The first viewer disconnects while the object streams in: the waiters still get complete,
    correct bodies."""
    origin.route("/gone", size=SIZE, delay_ms=300, pause_after=1000, pause_ms=500, header="Cache-Control: max-age=100")
    v = verge(cache_config(origin))
    leader = v.conn()
    leader.send_request("GET", "/gone")
    origin.wait_for_head(1, timeout=10)
    thread, box = in_thread(concurrent_requests, v.port, "/gone", 5)
    time.sleep(0.45)  # the head and 1000 body bytes are out; the origin pauses
    leader.close()
    thread.join(30)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    outcomes = [(t.response.status, t.response.complete, t.response.body_length, t.response.header("x-cache"))
                for t in box["result"]]
    assert outcomes == [(200, True, SIZE, outcome[3]) for outcome in outcomes], outcomes
    assert all(t.response.body_sha256 == pattern_sha256(SIZE) for t in box["result"])
    assert 1 <= len(origin.requests) <= 2
    r = v.get("/gone")
    assert r.header("x-cache") == HIT and r.body_sha256 == pattern_sha256(SIZE)
