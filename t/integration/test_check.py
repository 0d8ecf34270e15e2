"""The command line (behavior.md "Binary"): verge check, config-reference, --version."""

import json
import os
import socket

import pytest

from conftest import REPO, free_port, require_verge, run_verge


@pytest.fixture(autouse=True)
def _binary():
    require_verge()


def write(tmp_path, config, name="c.json"):
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
    return str(path)


def valid_config():
    return {
        "listen": [{"address": "127.0.0.1:%d" % free_port()}],
        "origins": {"app": {"url": "http://127.0.0.1:9"}, "site": {"url": "http://127.0.0.1:10/prefix"}},
        "behaviors": [{"path": "/a/*", "origin": "app"}, {"path": "*", "origin": "site"}],
    }


def test_version():
    r = run_verge("--version")
    assert r.returncode == 0 and r.stdout.strip() == "verge 0.1.0"


def test_check_valid(tmp_path):
    path = write(tmp_path, valid_config())
    r = run_verge("check", "-c", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "%s: ok" % path


def test_check_unknown_origin_message(tmp_path):
    config = valid_config()
    config["behaviors"][1]["origin"] = "ap"
    r = run_verge("check", "-c", write(tmp_path, config))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert any(l.endswith('behaviors[1].origin: unknown origin "ap" (known: app, site)') for l in lines), r.stderr
    assert "ok" not in r.stdout


def test_check_reports_every_error_on_its_own_line(tmp_path):
    config = valid_config()
    config["threads"] = 0
    config["behaviors"][0]["origin"] = "nope"
    config["timeouts"] = {"idle_ms": "soon"}
    r = run_verge("check", "-c", write(tmp_path, config))
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert any("threads" in l for l in lines), r.stderr
    assert any("behaviors[0].origin" in l and '"nope"' in l for l in lines), r.stderr
    assert any("timeouts.idle_ms" in l for l in lines), r.stderr
    assert len(lines) >= 3


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c.pop("listen"), "listen"),
    (lambda c: c.pop("origins"), "origins"),
    (lambda c: c.update(behaviors=[{"path": "/x", "origin": "app"}]), "behaviors[0].path"),
    (lambda c: c["listen"].__setitem__(0, {"address": "not-an-address"}), "listen[0].address"),
    (lambda c: c["origins"].__setitem__("app", {"url": "ftp://x"}), "origins.app.url"),
    (lambda c: c["origins"].__setitem__("app", {}), "origins.app"),
    (lambda c: c.update(unknown_key=1), "unknown_key"),
    (lambda c: c.update(access_log={"path": "-", "format": "xml"}), "access_log.format"),
])
def test_check_invalid_configs(tmp_path, mutate, needle):
    config = valid_config()
    mutate(config)
    r = run_verge("check", "-c", write(tmp_path, config))
    assert r.returncode == 1, r.stdout
    assert needle in r.stderr, r.stderr


def test_check_json_syntax_error_has_a_location(tmp_path):
    r = run_verge("check", "-c", write(tmp_path, '{\n  "listen": [\n    {"address": }\n  ]\n}\n'))
    assert r.returncode == 1
    assert "line 3" in r.stderr, r.stderr


def test_check_allows_comments(tmp_path):
    text = json.dumps(valid_config(), indent=2)
    text = "// verge config\n/* block\n comment */\n" + text.replace('"origins"', '// origins follow\n  "origins"', 1)
    r = run_verge("check", "-c", write(tmp_path, text))
    assert r.returncode == 0, r.stderr


def test_check_missing_file():
    r = run_verge("check", "-c", "/nonexistent/verge.json")
    assert r.returncode == 1
    assert "/nonexistent/verge.json" in r.stderr


def test_check_does_not_bind(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        config = valid_config()
        config["listen"] = [{"address": "127.0.0.1:%d" % busy.getsockname()[1]}]
        r = run_verge("check", "-c", write(tmp_path, config))
        assert r.returncode == 0, r.stderr
    finally:
        busy.close()


def test_check_resolves_static_roots_against_the_config_directory(tmp_path):
    (tmp_path / "www").mkdir()
    config = valid_config()
    config["origins"]["site"] = {"static": "www"}
    assert run_verge("check", "-c", write(tmp_path, config), cwd="/").returncode == 0
    config["origins"]["site"] = {"static": "missing-dir"}
    r = run_verge("check", "-c", write(tmp_path, config), cwd="/")
    assert r.returncode == 1 and "origins.site.static" in r.stderr, r.stderr


def test_check_reports_a_function_syntax_error_with_file_and_line(tmp_path):
    """Functions are compiled (not run) at load: a syntax error is a config error on the key, with file:line."""
    (tmp_path / "ok.lua").write_text("function handler(event, context)\n  return event.Records[1].cf.request\nend\n")
    (tmp_path / "auth.lua").write_text("function handler(event, context)\n  local request = event\n  request.x x\nend\n")
    config = valid_config()
    config["functions"] = {"ok": {"code": "ok.lua"}}
    config["behaviors"][0]["triggers"] = {"viewer-request": "ok"}
    path = write(tmp_path, config)
    r = run_verge("check", "-c", path, cwd="/")
    assert r.returncode == 0, r.stderr

    config["functions"]["auth"] = {"code": "auth.lua"}
    r = run_verge("check", "-c", write(tmp_path, config), cwd="/")
    assert r.returncode == 1, r.stdout
    expected = "functions.auth.code: %s:3: '=' expected near 'x'" % (tmp_path / "auth.lua")
    assert any(l.endswith(expected) for l in r.stderr.splitlines()), r.stderr
    assert "functions.ok" not in r.stderr, r.stderr
    assert "ok" not in r.stdout


def test_check_refuses_bytecode_functions(tmp_path):
    (tmp_path / "fn.lua").write_bytes(b"\x1bLJ\x02\x00binary")
    config = valid_config()
    config["functions"] = {"f": {"code": "fn.lua"}}
    r = run_verge("check", "-c", write(tmp_path, config))
    assert r.returncode == 1
    assert "functions.f.code: %s: bytecode is not accepted" % (tmp_path / "fn.lua") in r.stderr, r.stderr


@pytest.mark.parametrize("value,ok", [("-", True), ("logs/functions.log", True), (False, True), (True, False), ("", False)])
def test_check_function_log_values(tmp_path, value, ok):
    config = valid_config()
    config["function_log"] = value
    r = run_verge("check", "-c", write(tmp_path, config))
    assert (r.returncode == 0) == ok, r.stderr
    if not ok:
        assert "function_log: expected a file path, \"-\" or false" in r.stderr, r.stderr


def test_example_config_is_valid():
    example = os.path.join(REPO, "conf", "verge.example.json")
    if not os.path.exists(example):
        pytest.skip("conf/verge.example.json does not exist yet")
    r = run_verge("check", "-c", example)
    assert r.returncode == 0, r.stderr  # the example is a working config, every key shown


def test_config_reference_is_a_markdown_table():
    r = run_verge("config-reference")
    assert r.returncode == 0, r.stderr
    rows = [l for l in r.stdout.splitlines() if l.startswith("|")]
    assert len(rows) > 10
    text = r.stdout
    for key in ("listen[].address", "threads", "origins.*.url", "origins.*.static", "origins.*.connect_timeout_ms",
                "origins.*.read_timeout_ms", "origins.*.max_idle", "behaviors[].path", "behaviors[].origin",
                "access_log.path", "access_log.format", "function_log", "admin.address", "admin.token_file",
                "timeouts.header_read_ms", "timeouts.idle_ms", "timeouts.send_ms", "timeouts.drain_ms"):
        assert key in text, key


def test_readme_embeds_the_config_reference():
    readme = os.path.join(REPO, "README.md")
    begin, end = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
    if not os.path.exists(readme):
        pytest.skip("README.md does not exist yet")
    text = open(readme).read()
    if begin not in text or end not in text:
        pytest.skip("README.md lacks the %s / %s markers" % (begin, end))
    embedded = text.split(begin, 1)[1].split(end, 1)[0]
    generated = run_verge("config-reference").stdout
    assert embedded.strip() == generated.strip(), "README's config reference is stale: regenerate it with " \
                                                  "`build/verge config-reference`"
