"""Streaming without buffering (behavior.md "Memory"): 1 GB through verge in both directions
while verge's peak RSS (VmHWM) grows by less than 16 MB.

ASan keeps freed memory in a quarantine (256 MB by default), which would count as RSS growth
for any server that frees I/O buffers; these tests start verge with a small quarantine so the
measurement is about verge's own buffering, and still catch use-after-free of recent buffers.
"""

import os
import threading
import time

import pytest

from conftest import pattern_chunks, pattern_sha256

GB = 1024 * 1024 * 1024
MAX_GROWTH_KB = 16 * 1024
WARMUP = 32 * 1024 * 1024
pytestmark = pytest.mark.slow


def small_quarantine_env():
    options = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (options + ":" if options else "") + "quarantine_size_mb=4:thread_local_quarantine_size_kb=64"}


@pytest.fixture
def streaming(verge, origin):
    return verge({"threads": 2}, origin=origin, env=small_quarantine_env())


def download(v, size, chunked=False):
    with v.conn(timeout=60) as c:
        r = c.request("GET", "/big?size=%d%s" % (size, "&chunked=1" if chunked else ""), keep_body=False)
    assert r.status == 200 and r.complete
    assert r.body_length == size
    assert r.body_sha256 == pattern_sha256(size)
    return r


def upload(v, origin, size, chunked=False):
    with v.conn(timeout=60) as c:
        if chunked:
            c.send(b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in pattern_chunks(size, block=256 * 1024):
                c.send(b"%x\r\n" % len(piece))
                c.send(piece)
                c.send(b"\r\n")
            c.send(b"0\r\n\r\n")
        else:
            c.send(b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size)
            for piece in pattern_chunks(size):
                c.send(piece)
        r = c.read_response()
    assert r.status == 200
    req = origin.requests[-1]
    assert req.body_length == size
    assert req.body_sha256 == pattern_sha256(size)


def measure(v, transfer):
    """Runs transfer() and returns verge's VmHWM growth in kB."""
    if v.reset_hwm():
        before = v.rss_kb()
    else:
        before = v.hwm_kb()
    transfer()
    return v.hwm_kb() - before


def test_1gb_download_memory_stays_flat(streaming):
    pattern_sha256(GB)  # compute before timing anything
    download(streaming, WARMUP)
    start = time.monotonic()
    growth = measure(streaming, lambda: download(streaming, GB))
    elapsed = time.monotonic() - start
    assert growth < MAX_GROWTH_KB, "VmHWM grew by %d kB during a 1 GB download" % growth
    assert elapsed < 90, elapsed


def test_1gb_upload_memory_stays_flat(streaming, origin):
    pattern_sha256(GB)
    upload(streaming, origin, WARMUP)
    growth = measure(streaming, lambda: upload(streaming, origin, GB))
    assert growth < MAX_GROWTH_KB, "VmHWM grew by %d kB during a 1 GB upload" % growth


def test_256mb_chunked_download_and_upload(streaming, origin):
    size = 256 * 1024 * 1024 + 3
    download(streaming, WARMUP, chunked=True)
    upload(streaming, origin, WARMUP, chunked=True)
    growth = measure(streaming, lambda: (download(streaming, size, chunked=True), upload(streaming, origin, size, chunked=True)))
    assert growth < MAX_GROWTH_KB, "VmHWM grew by %d kB" % growth


def test_slow_reader_does_not_make_verge_buffer(streaming):
    """A viewer that stops reading: verge must apply backpressure instead of reading the origin dry."""
    size = 512 * 1024 * 1024
    download(streaming, WARMUP)
    streaming.reset_hwm()
    before = streaming.rss_kb()
    c = streaming.conn(timeout=60)
    try:
        c.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 64 * 1024)
        c.send_request("GET", "/big?size=%d" % size)
        time.sleep(2.0)  # verge would pull the whole body from the origin in this time if it buffered
        growth = streaming.hwm_kb() - before
        assert growth < MAX_GROWTH_KB, "VmHWM grew by %d kB while the viewer was not reading" % growth
    finally:
        c.close()


def test_parallel_downloads(streaming):
    size = 128 * 1024 * 1024
    errors = []

    def run():
        try:
            download(streaming, size)
        except BaseException as e:  # noqa: B902 - report anything from the thread
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
