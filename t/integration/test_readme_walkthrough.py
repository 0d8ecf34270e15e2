"""The README's "Your first edge function, in five minutes", run as written: its shell blocks
are taken from README.md, with /tmp/edge, the two ports and build/verge replaced by this test's
own, and run with bash. Then the walkthrough's steps: a page through the origin (a miss, then a
hit), the function's 301, the trace on stdout, an edit that reloads, a syntax error that keeps the
last good version serving."""

import os
import re
import signal
import subprocess
import time

from conftest import REPO, VERGE_BIN, curl, free_port, port_accepts, wait_until

SECTION = "## Your first edge function, in five minutes"


def readme_blocks():
    text = open(os.path.join(REPO, "README.md")).read()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```sh\n(.*?)```", text[start:end], re.S)


def localise(block, directory, origin_port, verge_port):
    return (block.replace("/tmp/edge", directory).replace("127.0.0.1:3000", "127.0.0.1:%d" % origin_port)
            .replace("http.server 3000", "http.server %d" % origin_port)
            .replace("127.0.0.1:8080", "127.0.0.1:%d" % verge_port).replace("build/verge", VERGE_BIN))


def test_readme_walkthrough(tmp_path):
    blocks = readme_blocks()
    assert len(blocks) == 3, blocks
    directory = str(tmp_path / "edge")
    origin_port, verge_port = free_port(), free_port()
    origin_block, serve_block, curl_block = (localise(b, directory, origin_port, verge_port) for b in blocks)

    # terminal 1: the origin (its last line runs in the foreground, so the block runs in the background)
    origin = subprocess.Popen(["bash", "-c", origin_block], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    dev = None
    out, err = open(str(tmp_path / "dev.out"), "wb"), open(str(tmp_path / "dev.err"), "wb")
    try:
        wait_until(lambda: port_accepts(origin_port), 10, message="the origin")
        # terminal 2: the files, then verge dev (the block's last line)
        dev = subprocess.Popen(["bash", "-c", serve_block], stdout=out, stderr=err, start_new_session=True, cwd=REPO)
        wait_until(lambda: port_accepts(verge_port), 10, message="verge dev")
        # terminal 3: the two curl lines, as written
        lines = [line.split("#")[0].strip() for line in curl_block.splitlines() if line.strip()]
        assert [line.split()[:2] for line in lines] == [["curl", "-i"], ["curl", "-i"]], lines
        page = curl(lines[0].split()[-1])
        assert page.status == 200 and page.body == b"hello from the origin\n"
        assert "cache=miss-stored" in page.header("x-verge-trace")
        assert "cache=hit" in curl(lines[0].split()[-1]).header("x-verge-trace")
        moved = curl(lines[1].split()[-1])
        assert moved.status == 301 and moved.header("location") == "/index.html"
        assert "viewer-request=hello generated" in moved.header("x-verge-trace")
        stdout = lambda: open(str(tmp_path / "dev.out")).read()
        wait_until(lambda: "GET /old -> 301" in stdout(), 5, message="the trace of /old")
        assert "| INFO  viewer asked for /old" in stdout()

        # edit and save: reloaded, the new code answers
        stderr = lambda: open(str(tmp_path / "dev.err")).read()
        function = os.path.join(directory, "hello.lua")
        source = open(function).read()
        with open(function, "w") as f:
            f.write(source.replace('value = "/index.html"', 'value = "/new-home"'))
        wait_until(lambda: "reloaded in" in stderr() and "(generation 2)" in stderr(), 10, message="reload")
        assert curl(lines[1].split()[-1]).header("location") == "/new-home"

        # a syntax error: file:line, the last good version serves
        with open(function, "w") as f:
            f.write(source.replace("return request\n", "return request +\n"))
        wait_until(lambda: "keeps serving" in stderr(), 10, message="reload failure")
        assert re.search(r"^  %s:\d+: " % re.escape(function), stderr(), re.M), stderr()
        assert curl(lines[1].split()[-1]).header("location") == "/new-home"
    finally:
        for process in (p for p in (dev, origin) if p is not None):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        out.close()
        err.close()
    assert dev.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), dev.returncode
    text = open(str(tmp_path / "dev.err")).read()
    assert "Sanitizer" not in text and "runtime error:" not in text, text
