#!/usr/bin/python3
"""bench.py — the body of tools/bench: verge vs nginx (and Varnish) as reverse proxies.

What it does (docs/bench.md has the why and how to read the output):
  1. builds verge optimised in build-bench/ (release, no sanitizers) with
     tools/setup.sh's setup_build;
  2. starts, on loopback ports in a temporary directory, one origin (an nginx
     serving 1k.bin and 100k.bin with Cache-Control: max-age=3600) and, in
     front of it, each peer that the selected scenarios need, all with the
     same number of worker threads/processes: verge and nginx as pass-through
     reverse proxies; verge with its cache, nginx with proxy_cache and
     Varnish for the cache-hit rows; verge with Lua edge functions and
     nginx with ngx_http_lua hooks for the edge-function row;
  3. checks every peer (200, right size; cache peers: a second request must be
     a hit, and the origin must see no request during a cache-hit run);
  4. for each round, for each scenario, drives each peer with the client
     (wrk) in turn — a short warm-up, then the measured run — alternating
     the order every round;
  5. runs the extra sections the selection includes (EXTRA_SECTIONS: the
     latency one edge function adds at one connection, and cold starts of
     function workers read from verge's function log);
  6. prints a Markdown report (medians, ratio verge/peer, per-round numbers,
     errors, the extra sections, and the eviction policies' hit ratios from
     build-bench/cache_sim when it exists) to stdout and to
     build-bench/bench-results.md.

Everything it starts runs in its own session and is stopped (SIGTERM to the
process group, then SIGKILL) when the script ends for any reason, including
Ctrl-C and SIGTERM. Nothing listens beyond 127.0.0.1; every run is bounded.

Adding rows: a row is a Scenario (name, URL path, peers, client). A new peer
(nginx+lua, ...) is a function in PEER_STARTERS that starts it and returns a
Peer; a new client (h2load, ...) is a function in CLIENTS that returns a
RunResult. Nothing else needs to change.
"""

import argparse
import ctypes
import dataclasses
import datetime
import http.client
import io
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BUILD_DIR = REPO / "build-bench"

# Files the origin serves: name -> size in bytes. Contents are random so no
# layer can compress or deduplicate them.
ORIGIN_OBJECTS = {"1k.bin": 1024, "100k.bin": 100 * 1024}
LARGE_OBJECT = "100k.bin"


# --------------------------------------------------------------------------
# Scenarios: one per row of the report.


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str  # row label
    path: str  # URL path requested through every peer
    expected_bytes: int  # body size a correct response has (checked before measuring)
    peers: tuple  # keys of PEER_STARTERS; peers[0] is the subject (verge), the rest baselines
    client: str = "wrk"  # key of CLIENTS
    # True: every peer must answer from its cache (checked before measuring with its hit header,
    # and during each measured run by the origin's request counter, which must not move).
    # False: every request must reach the origin (a pass-through row that caches is wrong).
    cache_hits: bool = False


CACHE_PEERS = ("verge-cache", "nginx-cache", "varnish")
TLS_CACHE_PEERS = ("verge-cache-tls", "nginx-cache-tls")
HTTPS_SCENARIO = "1 KiB, cache hit, HTTPS"
H2C_SCENARIO = "1 KiB, cache hit, HTTP/2 h2c"
H2_TLS_SCENARIO = "1 KiB, cache hit, HTTP/2 TLS"
HOOKS_SCENARIO = "1 KiB, cache hit, two Lua hooks"
SCENARIOS = [
    Scenario("1 KiB, keep-alive, pass-through", "/1k.bin", 1024, ("verge", "nginx")),
    Scenario("100 KiB, keep-alive, pass-through", "/100k.bin", 100 * 1024, ("verge", "nginx")),
    Scenario("1 KiB, cache hit", "/1k.bin", 1024, CACHE_PEERS, cache_hits=True),
    # The same hits with a request hook and a response hook on every request (issue: edge functions).
    Scenario(HOOKS_SCENARIO, "/1k.bin", 1024, ("verge-hooks", "nginx-lua"), cache_hits=True),
    Scenario("100 KiB, cache hit", "/100k.bin", 100 * 1024, CACHE_PEERS, cache_hits=True),
    # The same hits over HTTPS (HTTP/1.1, TLS 1.3, one self-signed P-256 certificate for both).
    Scenario(HTTPS_SCENARIO, "/1k.bin", 1024, TLS_CACHE_PEERS, cache_hits=True),
    Scenario("100 KiB, cache hit, HTTPS", "/100k.bin", 100 * 1024, TLS_CACHE_PEERS, cache_hits=True),
    # HTTP/2 (issue 5): h2load with the same settings against both, cleartext (prior knowledge) and TLS (ALPN h2).
    Scenario(H2C_SCENARIO, "/1k.bin", 1024, ("verge-cache-h2c", "nginx-cache-h2c"), client="h2load", cache_hits=True),
    Scenario(H2_TLS_SCENARIO, "/1k.bin", 1024, ("verge-cache-tls", "nginx-cache-h2tls"), client="h2load", cache_hits=True),
]

# Ratios verge / peer the issues ask for: (scenario, peer key) -> minimum (issue 3: cache hits).
TARGETS = {
    ("1 KiB, cache hit", "nginx-cache"): 1.2,
    ("100 KiB, cache hit", "nginx-cache"): 1.0,
    (HOOKS_SCENARIO, "nginx-lua"): 0.8,
    (H2C_SCENARIO, "nginx-cache-h2c"): 1.2,
    (H2_TLS_SCENARIO, "nginx-cache-h2tls"): 1.2,
}

# The origin's freshness for every object: long enough that nothing expires during a run.
ORIGIN_CACHE_CONTROL = "max-age=3600"
# Memory every cache peer may use (verge memory_mb, nginx max_size, Varnish -s malloc).
CACHE_MEMORY_MB = 256
# Where the origin nginx reports its request counter (stub_status).
ORIGIN_STATUS_PATH = "/bench-origin-status"


# --------------------------------------------------------------------------
# Processes: everything started is registered here and stopped at exit.


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, argv: list, log_path: Path, cpus: Optional[str], capture: bool = False) -> subprocess.Popen:
        if cpus:
            argv = ["taskset", "-c", cpus] + argv  # taskset execs argv: same pid
        output = subprocess.PIPE if capture else open(log_path, "ab")
        process = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop children in order
            preexec_fn=_terminate_when_parent_dies,
        )
        if not capture:
            output.close()
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen, grace_s: float = 3.0) -> None:
        if process.poll() is None:
            with _ignore_missing():
                os.killpg(process.pid, signal.SIGTERM)  # the group: nginx workers too
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        with _ignore_missing():
            os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group, if any
        with _ignore_missing():
            process.wait(timeout=grace_s)
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


def _terminate_when_parent_dies() -> None:
    """In the child before exec: SIGTERM it if this script dies without
    cleaning up (SIGKILL). nginx's master passes SIGTERM on to its workers."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _ignore_missing:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        return kind is not None and issubclass(kind, (ProcessLookupError, PermissionError, subprocess.TimeoutExpired))


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log_path: Path, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{what} exited with status {process.returncode} before listening\n{log_tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s\n{log_tail(log_path)}")


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"  ({path} unreadable)"
    return "\n".join("  | " + line for line in text)


def process_tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU time of root_pid and its direct children (nginx
    workers; verge's threads are already counted in its own /proc/PID/stat)."""
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid ...
        parent_pid, user_ticks, system_ticks = int(fields[1]), int(fields[11]), int(fields[12])
        if int(entry) == root_pid or parent_pid == root_pid:
            total += user_ticks + system_ticks
    return total / ticks_per_second


def cpu_times(cpus: list) -> tuple:
    """(busy, total) jiffies summed over the given CPUs, from /proc/stat.
    Busy includes steal: on a virtual machine, time the host took away."""
    busy = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        match = re.match(r"cpu(\d+) (.*)", line)
        if not match or int(match.group(1)) not in cpus:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, match.group(2).split()[:8])
        busy += user + nice + system + irq + softirq + steal
        total += user + nice + system + idle + iowait + irq + softirq + steal
    return busy, total


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# The bench context: options, temporary directory, CPU sets, the origin.


@dataclasses.dataclass
class Peer:
    label: str  # as shown in the report
    port: int
    process: subprocess.Popen
    log_path: Path
    description: str  # one line for the report's setup section
    # For cache peers: given a response's headers, None when it was a cache hit, else why not.
    hit_check: Optional[Callable[[http.client.HTTPMessage], Optional[str]]] = None
    # verge with edge functions: its function log, and how many REPORT lines one request adds there
    # (the check proves with it that every hook ran, even one whose effect a cache hit does not show).
    function_log: Optional[Path] = None
    functions_per_request: int = 0
    scheme: str = "http"  # "https": the peer listens with TLS (the bench's self-signed certificate)


class Bench:
    def __init__(self, args: argparse.Namespace, processes: Processes, tmp: Path) -> None:
        self.args = args
        self.processes = processes
        self.tmp = tmp
        self.nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proxy_cpus, self.load_cpus = choose_cpus(args)
        self.origin_port = 0
        self.upstream_idle = args.upstream_idle or max(32, args.connections)
        self.verge_binary: Optional[Path] = None
        self.load_at_start = ""
        self._tls_files: Optional[tuple] = None

    def tls_files(self) -> tuple:
        """(certificate, key): one self-signed EC P-256 certificate for 127.0.0.1, made once
        with the openssl CLI and served by every HTTPS peer."""
        if self._tls_files is None:
            cert, key = self.tmp / "bench-cert.pem", self.tmp / "bench-key.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=bench.example",
                 "-addext", "subjectAltName=DNS:bench.example,IP:127.0.0.1"],
                check=True, capture_output=True, timeout=30,
            )
            self._tls_files = (cert, key)
        return self._tls_files

    # The origin: one nginx serving static files with keep-alive. It is the
    # same process for every peer, so its cost is the same for all of them.
    # Every object carries Cache-Control: max-age=3600, which the cache peers
    # honour and the pass-through peers ignore. stub_status counts requests,
    # which proves that cache-hit runs never reach it and pass-through runs do.
    def start_origin(self) -> None:
        docroot = self.tmp / "origin-root"
        docroot.mkdir()
        for name, size in ORIGIN_OBJECTS.items():
            (docroot / name).write_bytes(os.urandom(size))
            (docroot / name).chmod(0o644)
        self.origin_port = free_loopback_port()
        server = f"""
    server {{
        listen 127.0.0.1:{self.origin_port} backlog=4096;
        root {docroot};
        location / {{
            add_header Cache-Control "{ORIGIN_CACHE_CONTROL}";
        }}
        location = {ORIGIN_STATUS_PATH} {{
            stub_status;
        }}
    }}"""
        self.origin = self.start_nginx("origin", self.args.origin_workers, self.origin_port, server, self.load_cpus)

    def origin_request_count(self) -> int:
        """Requests the origin has received so far, this one included."""
        connection = http.client.HTTPConnection("127.0.0.1", self.origin_port, timeout=5)
        try:
            connection.request("GET", ORIGIN_STATUS_PATH)
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        # "server accepts handled requests\n A H R"
        match = re.search(r"^\s*\d+\s+\d+\s+(\d+)\s*$", text, re.M)
        if not match:
            raise BenchError(f"origin stub_status unreadable: {text!r}")
        return int(match.group(1))

    def start_nginx(
        self, name: str, workers: int, port: int, server_block: str, cpus: Optional[str], http_extra: str = "",
        main_extra: str = "",
    ) -> Peer:
        """Starts an nginx of our own: prefix and config in tmp, never the
        system service, in the foreground (daemon off) so its pid is ours.
        main_extra goes in the main context (load_module lines)."""
        prefix = self.tmp / name
        prefix.mkdir()
        prefix.chmod(0o755)
        conf = prefix / "nginx.conf"
        conf.write_text(f"""# generated by tools/bench
{main_extra}worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16;
    keepalive_timeout 65s;
    keepalive_requests 1000000;  # the default (1000) would make wrk reconnect mid-run
    client_body_temp_path {prefix}/client_body_temp;
    proxy_temp_path {prefix}/proxy_temp;
{http_extra}{server_block}
}}
""")
        log_path = prefix / "stderr.log"
        argv = [self.nginx, "-p", prefix, "-e", prefix / "error.log", "-c", conf, "-g", "daemon off;"]
        process = self.processes.start(argv, log_path, cpus)
        wait_for_port(port, process, log_path, f"nginx ({name})")
        return Peer(name, port, process, log_path, "")


# --------------------------------------------------------------------------
# Peers: the proxies compared. Each starter returns a listening Peer.


def write_verge_config(
    bench: Bench, directory: Path, port: int, top_level: str, behavior: str, tls: bool = False, h2c: bool = False
) -> Path:
    config = directory / "verge.json"
    listen_tls = ', "h2c": true' if h2c else ""
    if tls:
        cert, key = bench.tls_files()
        listen_tls = f', "tls": {{ "certificates": [{{ "cert": "{cert}", "key": "{key}" }}] }}'
    config.write_text(f"""{{
    // generated by tools/bench
    "listen": [{{ "address": "127.0.0.1:{port}"{listen_tls} }}],
    "threads": {bench.args.threads},
    "origins": {{
        "origin": {{ "url": "http://127.0.0.1:{bench.origin_port}", "max_idle": {bench.upstream_idle} }}
    }},
    "behaviors": [{{ "path": "*", "origin": "origin"{behavior} }}],{top_level}
    "access_log": false
}}
""")
    return config


def verge_config_problems(bench: Bench, config: Path) -> Optional[str]:
    """`verge check -c FILE`: None when verge accepts the config, else its complaint."""
    completed = subprocess.run(
        [str(bench.verge_binary), "check", "-c", str(config)], capture_output=True, text=True, timeout=30
    )
    if completed.returncode == 0:
        return None
    return (completed.stdout + completed.stderr).strip() or f"status {completed.returncode}"


def start_verge_process(bench: Bench, name: str, port: int, config: Path) -> subprocess.Popen:
    log_path = config.parent / "stderr.log"
    process = bench.processes.start([bench.verge_binary, "-c", config], log_path, bench.proxy_cpus)
    wait_for_port(port, process, log_path, name)
    return process


def start_verge(bench: Bench) -> Peer:
    """verge as a pass-through proxy: its behavior has "cache": false, since a
    behavior without a "cache" key caches. A verge that predates the cache
    rejects the key (unknown keys are errors) and passes everything anyway."""
    if bench.args.verge_as_nginx:
        peer = start_nginx_proxy(bench, name="verge-standin")
        peer.label = "verge(=nginx)"
        peer.description = "nginx stand-in in the verge slot (--verge-as-nginx): " + peer.description
        return peer
    port = free_loopback_port()
    directory = bench.tmp / "verge"
    directory.mkdir()
    config = write_verge_config(bench, directory, port, "", ', "cache": false')
    cache_setting = '"cache": false'
    if verge_config_problems(bench, config):
        config = write_verge_config(bench, directory, port, "", "")
        cache_setting = 'no "cache" key (this verge has no cache)'
        problems = verge_config_problems(bench, config)
        if problems:
            raise BenchError(f"verge rejects the generated {config}:\n{problems}")
    process = start_verge_process(bench, "verge", port, config)
    return Peer(
        "verge", port, process, directory / "stderr.log",
        f"`{bench.verge_binary} -c verge.json`: threads {bench.args.threads}, one origin, "
        f'behavior "*" with {cache_setting}, origin max_idle {bench.upstream_idle}, access_log false',
    )


def verge_hit(headers: http.client.HTTPMessage) -> Optional[str]:
    x_cache = headers.get("X-Cache")
    if x_cache != "Hit from verge":
        return f"X-Cache: {x_cache!r}, expected 'Hit from verge'"
    return None


def start_verge_cache(bench: Bench, tls: bool = False, h2c: bool = False) -> Peer:
    """verge with its cache on for the behavior. The origin's max-age=3600
    decides the TTL; the key is the default (host + path). With `tls` it
    listens with the bench's certificate (listen[].tls)."""
    if bench.args.verge_as_nginx:
        peer = start_nginx_cache(bench, name="verge-cache-standin" + ("-tls" if tls else ""), tls=tls)
        peer.label = "verge(=nginx cache)"
        peer.description = "nginx proxy_cache stand-in in the verge slot (--verge-as-nginx): " + peer.description
        return peer
    port = free_loopback_port()
    directory = bench.tmp / ("verge-cache-tls" if tls else "verge-cache-h2c" if h2c else "verge-cache")
    directory.mkdir()
    top_level = f'\n    "cache": {{ "memory_mb": {CACHE_MEMORY_MB}, "max_object_mb": 64, "eviction": "sieve" }},'
    behavior = ', "cache": { "min_ttl": 0, "default_ttl": 86400, "max_ttl": 31536000 }'
    config = write_verge_config(bench, directory, port, top_level, behavior, tls=tls, h2c=h2c)
    problems = verge_config_problems(bench, config)
    if problems:
        raise BenchError(
            f"verge ({bench.verge_binary}) rejects the cache configuration in {config}:\n{problems}\n"
            "Does this verge have its cache yet? The cache-hit rows need it; meanwhile run "
            "tools/bench --only pass-through, or --verge-as-nginx to check the harness."
        )
    label = "verge (cache, TLS)" if tls else "verge (cache, h2c)" if h2c else "verge (cache)"
    process = start_verge_process(bench, label, port, config)
    return Peer(
        label, port, process, directory / "stderr.log",
        f"`{bench.verge_binary} -c verge.json`: threads {bench.args.threads}, one origin, "
        f'cache memory_mb {CACHE_MEMORY_MB}, eviction sieve, behavior "*" with "cache" '
        "(default_ttl 86400; the origin's max-age=3600 applies; default key host + path), "
        f"origin max_idle {bench.upstream_idle}, access_log false; adds X-Cache, Cache-Status, Age"
        + ("; listen[].tls with the bench's certificate (defaults: TLS 1.2+, tickets, ALPN h2 and http/1.1)" if tls else "")
        + ('; listen[].h2c true (HTTP/2 prior knowledge beside HTTP/1.1)' if h2c else ""),
        hit_check=verge_hit, scheme="https" if tls else "http",
    )


def start_verge_cache_tls(bench: Bench) -> Peer:
    return start_verge_cache(bench, tls=True)


def start_verge_cache_h2c(bench: Bench) -> Peer:
    return start_verge_cache(bench, h2c=True)


def nginx_proxy_location(bench: Bench, cache_lines: str = "", match: str = "/") -> str:
    return f"""
        location {match} {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # nginx's default buffers (8 x 4k) halve its 100 KiB throughput here; these hold
            # a whole 100 KiB response, and nothing is ever spooled to disk (verge streams).
            proxy_buffer_size 16k;
            proxy_buffers 16 16k;
            proxy_max_temp_file_size 0;{cache_lines}
        }}"""


def nginx_upstream(bench: Bench) -> str:
    return f"""    upstream origin {{
        server 127.0.0.1:{bench.origin_port};
        keepalive {bench.upstream_idle};
        keepalive_requests 1000000;
    }}
"""


def start_nginx_proxy(bench: Bench, name: str = "nginx-proxy") -> Peer:
    port = free_loopback_port()
    server = f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096 reuseport;{nginx_proxy_location(bench)}
    }}"""
    peer = bench.start_nginx(name, bench.args.threads, port, server, bench.proxy_cpus, http_extra=nginx_upstream(bench))
    peer.label = "nginx"
    peer.description = (
        f"nginx proxy_pass: worker_processes {bench.args.threads}, upstream keepalive {bench.upstream_idle}, "
        'proxy_http_version 1.1, Connection "", access_log off, no cache, '
        "proxy_buffer_size 16k, proxy_buffers 16 16k, proxy_max_temp_file_size 0"
    )
    return peer


def nginx_hit(headers: http.client.HTTPMessage) -> Optional[str]:
    status = headers.get("X-Cache-Status")
    if status != "HIT":
        return f"X-Cache-Status: {status!r}, expected 'HIT'"
    return None


def start_nginx_cache(
    bench: Bench, name: str = "nginx-cache", location_extra: str = "", main_extra: str = "", tls: bool = False,
    http2: bool = False,
) -> Peer:
    """nginx with proxy_cache: the same proxy as the pass-through one, plus a
    cache zone whose files live in the temporary directory (in the page cache
    once written; served with sendfile and open_file_cache). location_extra
    goes in every location (the Lua hooks), main_extra in the main context."""
    port = free_loopback_port()
    cache_directory = bench.tmp / name / "cache"
    cache_path = (
        f"    proxy_cache_path {cache_directory} levels=1:2 keys_zone=bench:10m "
        f"max_size={CACHE_MEMORY_MB}m inactive=1h use_temp_path=off;\n"
    )
    cache_lines = """
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            add_header X-Cache-Status $upstream_cache_status;""" + location_extra
    # nginx gets its best setting for each object: tcp_nopush on (the http-level default here)
    # is ~10 % faster for 1 KiB hits, but makes every 100 KiB hit sent from the cache file
    # stall ~40 ms (1.7k req/s instead of 33k, measured on this harness with nginx 1.22).
    large_object = f"= /{LARGE_OBJECT}"
    large_lines = cache_lines + """
            tcp_nopush off;  # see tools/bench.py start_nginx_cache"""
    tls_lines = ""
    if tls:
        cert, key = bench.tls_files()
        tls_lines = f"""
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;"""
    server = f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096 reuseport{" ssl" if tls else ""}{" http2" if http2 else ""};{tls_lines}{
        nginx_proxy_location(bench, cache_lines)}{nginx_proxy_location(bench, large_lines, large_object)}
    }}"""
    peer = bench.start_nginx(
        name, bench.args.threads, port, server, bench.proxy_cpus, http_extra=nginx_upstream(bench) + cache_path,
        main_extra=main_extra,
    )
    peer.label = "nginx proxy_cache"
    peer.description = (
        f"nginx proxy_cache: the pass-through nginx above plus `proxy_cache_path TMP/{name}/cache levels=1:2 "
        f"keys_zone=bench:10m max_size={CACHE_MEMORY_MB}m inactive=1h use_temp_path=off`, `proxy_cache bench`, "
        "`proxy_cache_valid 200 1h`, `add_header X-Cache-Status $upstream_cache_status`; "
        f"cached files on local disk (page cache), sendfile on, open_file_cache max=16; tcp_nopush on, "
        f"except `tcp_nopush off` in `location = /{LARGE_OBJECT}` (with it on, every 100 KiB hit stalls ~40 ms)"
    )
    if tls:
        peer.label = "nginx proxy_cache, TLS"
        peer.description += "; `listen ... ssl` with the bench's certificate, `ssl_protocols TLSv1.2 TLSv1.3`"
        peer.scheme = "https"
    if http2:
        peer.label += ", HTTP/2" if tls else ", h2c"
        peer.description += "; `listen ... http2`" + ("" if tls else " (h2c prior knowledge: nginx then speaks only HTTP/2 there)")
    peer.hit_check = nginx_hit
    return peer


def start_nginx_cache_tls(bench: Bench) -> Peer:
    return start_nginx_cache(bench, name="nginx-cache-tls", tls=True)


def start_nginx_cache_h2c(bench: Bench) -> Peer:
    return start_nginx_cache(bench, name="nginx-cache-h2c", http2=True)


def start_nginx_cache_h2tls(bench: Bench) -> Peer:
    return start_nginx_cache(bench, name="nginx-cache-h2tls", tls=True, http2=True)


def varnish_hit(headers: http.client.HTTPMessage) -> Optional[str]:
    # X-Varnish carries this request's id, plus the id of the request that
    # stored the object when it is a hit. Age is 0 within the object's first second.
    x_varnish = (headers.get("X-Varnish") or "").split()
    if len(x_varnish) != 2:
        return f"X-Varnish: {headers.get('X-Varnish')!r}, expected two ids (a hit)"
    if headers.get("Age") is None:
        return "no Age header"
    return None


def start_varnish(bench: Bench) -> Peer:
    """varnishd in the foreground with the built-in VCL (-b): it caches GET
    200s for the origin's max-age. thread_pools = --threads, like verge's
    threads and nginx's workers; the pool minimum covers every wrk
    connection so no thread is created during a run. fetch_chunksize 128k
    (the largest the Varnish docs advise; default 16k) stores a 100 KiB
    object in one piece: 100 KiB hits were ~1.4x faster than with the
    default in A/B runs here, 1 KiB hits the same. As root, varnishd's
    default jail (-j unix) runs the manager as user varnish and the cache
    process as vcache; as another user it falls back to -j none. Either
    works in the temporary directory, which is world-readable."""
    varnishd = shutil.which("varnishd") or "/usr/sbin/varnishd"
    if not os.access(varnishd, os.X_OK):
        raise BenchError("varnishd not found: install the Debian package varnish (tools/bench does)")
    port = free_loopback_port()
    workdir = bench.tmp / "varnish"
    log_path = bench.tmp / "varnish.log"
    pools = bench.args.threads
    pool_min = max(100, -(-bench.args.connections // pools) + 10)
    argv = [
        varnishd, "-F", "-n", workdir, "-a", f"127.0.0.1:{port}", "-b", f"127.0.0.1:{bench.origin_port}",
        "-s", f"malloc,{CACHE_MEMORY_MB}m", "-T", "none",
        "-p", f"thread_pools={pools}", "-p", f"thread_pool_min={pool_min}", "-p", "fetch_chunksize=128k",
    ]
    process = bench.processes.start(argv, log_path, bench.proxy_cpus)
    wait_for_port(port, process, log_path, "varnishd")
    shown = shlex.join(str(a) for a in argv).replace(str(bench.tmp), "TMP")
    return Peer(
        "varnish", port, process, log_path,
        f"`{shown}`: built-in VCL, thread_pools {pools}, thread_pool_min {pool_min}, "
        "fetch_chunksize 128k (100 KiB objects in one piece); "
        "no CLI listener; Varnish always writes its in-memory shared log (VSL), it has no access log to turn off",
        hit_check=varnish_hit,
    )


# --------------------------------------------------------------------------
# Edge functions: verge with Lua functions at the viewer triggers against
# nginx with ngx_http_lua hooks at the same points (access phase, header
# filter). Every hook adds x-hook: 1 (to the request, to the response): the
# least a hook can do, so the row measures what running a hook costs.

HOOK_HEADER = "X-Hook"
NGINX_LUA_PACKAGE = "libnginx-mod-http-lua"
# Where Debian puts dynamic modules: its modules-available/*.conf load them as modules/NAME.so,
# relative to nginx's compiled prefix /usr/share/nginx, whose modules is a link to /usr/lib/nginx/modules.
# Our nginx runs with its own prefix (-p), so the load_module lines use absolute paths.
NGINX_MODULE_DIRECTORIES = (Path("/usr/lib/nginx/modules"), Path("/usr/share/nginx/modules"))
# ngx_http_lua needs the Nginx Development Kit loaded first (Debian's 10-mod-http-ndk.conf, 50-mod-http-lua.conf).
NGINX_LUA_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")
NGINX_REQUEST_HOOK = 'access_by_lua_block { ngx.req.set_header("x-hook", "1") }'
NGINX_RESPONSE_HOOK = 'header_filter_by_lua_block { ngx.header["x-hook"] = "1" }'

# verge's functions: name -> (trigger, Lua source). The handler is the global `handler` (verge's default).
VERGE_FUNCTIONS = {
    "vreq": ("viewer-request", """-- generated by tools/bench: adds x-hook: 1 to the viewer's request
function handler(event, context)
  local request = event.Records[1].cf.request
  request.headers["x-hook"] = {{key = "X-Hook", value = "1"}}
  return request
end
"""),
    "vresp": ("viewer-response", """-- generated by tools/bench: adds x-hook: 1 to the response to the viewer
function handler(event, context)
  local response = event.Records[1].cf.response
  response.headers["x-hook"] = {{key = "X-Hook", value = "1"}}
  return response
end
"""),
}
# How long to wait for the REPORT lines of a request to reach the function log (written after the response).
FUNCTION_REPORT_WAIT_S = 3.0


def install_packages(packages: list) -> None:
    """tools/setup.sh's setup_packages (dpkg-query first; apt-get only for what is missing)."""
    argv = ["bash", "-c", 'source "$0" && setup_packages "$@"', str(REPO / "tools" / "setup.sh")] + packages
    print(f"bench: setup_packages {' '.join(packages)}", file=sys.stderr)
    try:
        completed = subprocess.run(argv, cwd=REPO, stdout=sys.stderr, stderr=sys.stderr, timeout=900)
    except subprocess.TimeoutExpired:
        raise BenchError(f"installing {' '.join(packages)} took more than 900 s")
    if completed.returncode != 0:
        raise BenchError(f"could not install {' '.join(packages)} (see above)")


def nginx_module_path(file_name: str) -> Optional[Path]:
    for directory in NGINX_MODULE_DIRECTORIES:
        if (directory / file_name).is_file():
            return directory / file_name
    return None


def nginx_lua_load_lines() -> str:
    """The load_module lines for ngx_http_lua (and NDK before it); installs
    Debian's libnginx-mod-http-lua when the module is missing."""
    if not all(nginx_module_path(name) for name in NGINX_LUA_MODULES):
        install_packages([NGINX_LUA_PACKAGE])
    lines = ""
    for name in NGINX_LUA_MODULES:
        path = nginx_module_path(name)
        if path is None:
            searched = ", ".join(str(d) for d in NGINX_MODULE_DIRECTORIES)
            raise BenchError(f"{name} not found in {searched} after installing {NGINX_LUA_PACKAGE}")
        lines += f"load_module {path};\n"
    return lines


def package_version(package: str) -> str:
    version = tool_version(["dpkg-query", "-W", "-f=${Version}", package])
    return version if re.match(r"^[\w.:~+-]+$", version) else "?"


def hook_header_problem(headers: http.client.HTTPMessage) -> Optional[str]:
    value = headers.get(HOOK_HEADER)
    if value != "1":
        return f"{HOOK_HEADER}: {value!r}, expected '1' (the response hook did not run)"
    return None


def start_nginx_lua(bench: Bench, name: str = "nginx-lua", response_hook: bool = True) -> Peer:
    """The nginx proxy_cache peer, exactly, plus ngx_http_lua and two trivial
    hooks in every location: access_by_lua_block sets a request header
    (access phase: it runs for hits too), header_filter_by_lua_block sets a
    response header (every response, hits included)."""
    hooks = f"\n            {NGINX_REQUEST_HOOK}"
    if response_hook:
        hooks += f"\n            {NGINX_RESPONSE_HOOK}"
    peer = start_nginx_cache(bench, name, location_extra=hooks, main_extra=nginx_lua_load_lines())
    peer.label = "nginx proxy_cache + lua" if response_hook else "nginx proxy_cache + lua (request hook)"
    peer.description = (
        f"the nginx proxy_cache peer above plus {NGINX_LUA_PACKAGE} {package_version(NGINX_LUA_PACKAGE)} "
        f"(`load_module` {' and '.join(NGINX_LUA_MODULES)}) and, in every location, `{NGINX_REQUEST_HOOK}`"
        + (f" and `{NGINX_RESPONSE_HOOK}`" if response_hook else "")
    )
    if response_hook:
        peer.hit_check = lambda headers: hook_header_problem(headers) or nginx_hit(headers)
    return peer


def function_reports(log: Path) -> list:
    """The REPORT lines of verge's function log (one per invocation), from
    "REPORT RequestId:" on (verge prefixes each line with a timestamp and the
    function's name, as CloudWatch shows them)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    marker = "REPORT RequestId:"
    return [line[line.index(marker):] for line in text.splitlines() if marker in line]


def wait_for_function_reports(log: Path, count: int, timeout_s: float = FUNCTION_REPORT_WAIT_S) -> list:
    """The log's REPORT lines once there are at least count (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reports = function_reports(log)
        if len(reports) >= count or time.monotonic() >= deadline:
            return reports
        time.sleep(0.02)


def settled_function_reports(log: Path, quiet_s: float = 0.3, timeout_s: float = FUNCTION_REPORT_WAIT_S) -> list:
    """The log's REPORT lines once no new one has come for quiet_s (verge's
    log writer flushes every 100 ms), or at the timeout."""
    deadline = time.monotonic() + timeout_s
    reports = function_reports(log)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
        time.sleep(0.02)
        latest = function_reports(log)
        if len(latest) != len(reports):
            reports, quiet_since = latest, time.monotonic()
    return reports


def report_field_ms(report: str, field: str) -> Optional[float]:
    """A duration field of a REPORT line ("Init Duration: 12.34 ms"), by name, whatever the order."""
    match = re.search(rf"(?:^|\t){re.escape(field)}: ([\d.]+) ms", report)
    return float(match.group(1)) if match else None


def start_verge_functions(
    bench: Bench, key: str, label: str, function_names: tuple, workers: str = "",
) -> Peer:
    """verge with its cache (exactly the verge-cache peer) plus the named
    functions of VERGE_FUNCTIONS, written as files in its directory, each on
    its trigger in the behavior, and the function log in the same directory.
    A verge whose config has no "function_log" yet runs without it (the
    check then cannot count the hooks' REPORT lines, and says so)."""
    port = free_loopback_port()
    directory = bench.tmp / key
    directory.mkdir()
    functions, triggers = [], []
    for name in function_names:
        trigger, source = VERGE_FUNCTIONS[name]
        code = directory / f"{name}.lua"
        code.write_text(source)
        functions.append(f'"{name}": {{ "code": {json.dumps(str(code))} }}')
        triggers.append(f'"{trigger}": "{name}"')
    function_log = directory / "functions.log"
    cache = f'\n    "cache": {{ "memory_mb": {CACHE_MEMORY_MB}, "max_object_mb": 64, "eviction": "sieve" }},'
    functions_json = f'\n    "functions": {{ {", ".join(functions)} }},'
    log_json = f'\n    "function_log": {json.dumps(str(function_log))},'
    workers_json = f'\n    "workers": {workers},' if workers else ""
    behavior = (
        ', "cache": { "min_ttl": 0, "default_ttl": 86400, "max_ttl": 31536000 }'
        f',\n                   "triggers": {{ {", ".join(triggers)} }}'
    )
    config = write_verge_config(bench, directory, port, cache + functions_json + log_json + workers_json, behavior)
    problems = verge_config_problems(bench, config)
    log_note = f"function_log {directory.name}/functions.log"
    if problems and "function_log" in problems:
        print(f"bench: {label}: this verge rejects \"function_log\"; running without it", file=sys.stderr)
        function_log = None
        log_note = 'no function_log (this verge rejects the key)'
        config = write_verge_config(bench, directory, port, cache + functions_json + workers_json, behavior)
        problems = verge_config_problems(bench, config)
    if problems:
        raise BenchError(
            f"verge ({bench.verge_binary}) rejects the edge-function configuration in {config}:\n{problems}\n"
            "Does this verge have edge functions yet? Meanwhile run the other rows with --only "
            "(e.g. --only pass-through, --only '100 KiB') or check the harness with --verge-as-nginx."
        )
    process = start_verge_process(bench, label, port, config)
    hooks = ", ".join(f"{VERGE_FUNCTIONS[name][0]} `{name}.lua`" for name in function_names)
    peer = Peer(
        label, port, process, directory / "stderr.log",
        f"the verge (cache) peer above plus edge functions ({hooks}: each adds `x-hook: 1` to the request or "
        f"the response; handler(event, context), default limits)"
        + (f", workers {workers}" if workers else "") + f", {log_note} (a REPORT line per invocation)",
        function_log=function_log,
        functions_per_request=len(function_names),
    )
    if "vresp" in function_names:
        peer.hit_check = lambda headers: hook_header_problem(headers) or verge_hit(headers)
    else:
        peer.hit_check = verge_hit
    return peer


def start_verge_hooks(bench: Bench) -> Peer:
    if bench.args.verge_as_nginx:
        peer = start_nginx_lua(bench, name="verge-hooks-standin")
        peer.label = "verge(=nginx lua)"
        peer.description = "nginx proxy_cache + lua stand-in in the verge slot (--verge-as-nginx): " + peer.description
        return peer
    return start_verge_functions(bench, "verge-hooks", "verge (cache, two hooks)", ("vreq", "vresp"))


def start_verge_one_hook(bench: Bench) -> Peer:
    if bench.args.verge_as_nginx:
        peer = start_nginx_lua(bench, name="verge-one-hook-standin", response_hook=False)
        peer.label = "verge(=nginx lua, request hook)"
        peer.description = "nginx proxy_cache + lua stand-in in the verge slot (--verge-as-nginx): " + peer.description
        return peer
    return start_verge_functions(bench, "verge-one-hook", "verge (cache, one hook)", ("vreq",))


PEER_STARTERS: dict[str, Callable[[Bench], Peer]] = {
    "verge": start_verge,
    "nginx": start_nginx_proxy,
    "verge-cache": start_verge_cache,
    "nginx-cache": start_nginx_cache,
    "varnish": start_varnish,
    "verge-hooks": start_verge_hooks,
    "nginx-lua": start_nginx_lua,
    "verge-one-hook": start_verge_one_hook,
    "verge-cache-tls": start_verge_cache_tls,
    "nginx-cache-tls": start_nginx_cache_tls,
    "verge-cache-h2c": start_verge_cache_h2c,
    "nginx-cache-h2c": start_nginx_cache_h2c,
    "nginx-cache-h2tls": start_nginx_cache_h2tls,
}


# --------------------------------------------------------------------------
# Clients: drive one peer for a while and report what happened.


@dataclasses.dataclass
class RunResult:
    requests_per_second: float = 0.0
    requests: int = 0
    p50_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    bad_status: int = 0  # responses outside 2xx/3xx (wrk lumps 3xx with 2xx)
    socket_errors: dict = dataclasses.field(default_factory=dict)  # kind -> count, non-zero only
    proxy_cpu_percent: Optional[float] = None  # of one CPU, measured by the caller
    origin_requests: Optional[int] = None  # requests the origin got during the run, measured by the caller
    load_cpus_busy_percent: Optional[float] = None  # of the CPUs wrk and the origin run on
    problems: list = dataclasses.field(default_factory=list)  # human-readable flags
    raw: str = ""


LATENCY_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk_output(text: str) -> RunResult:
    result = RunResult(raw=text)
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if match:
        result.requests_per_second = float(match.group(1))
    else:
        result.problems.append("wrk printed no Requests/sec")
    match = re.search(r"(\d+) requests in", text)
    result.requests = int(match.group(1)) if match else 0
    for percent, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        milliseconds = float(value) * LATENCY_UNIT_MS[unit]
        if percent == "50":
            result.p50_ms = milliseconds
        else:
            result.p99_ms = milliseconds
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if match:
        counts = dict(zip(("connect", "read", "write", "timeout"), map(int, match.groups())))
        result.socket_errors = {kind: count for kind, count in counts.items() if count}
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result.bad_status = int(match.group(1)) if match else 0
    if result.bad_status:
        result.problems.append(f"{result.bad_status} non-2xx/3xx responses")
    if result.socket_errors:
        result.problems.append("socket errors " + ", ".join(f"{k} {v}" for k, v in result.socket_errors.items()))
    if result.requests == 0:
        result.problems.append("no requests completed")
    return result


def run_wrk(
    bench: Bench, url: str, duration_s: float, connections: Optional[int] = None, threads: Optional[int] = None
) -> RunResult:
    args = bench.args
    argv = [
        "wrk", f"-t{threads or args.wrk_threads}", f"-c{connections or args.connections}", f"-d{duration_s:g}s",
        "--latency", "--timeout", "5s", url,
    ]
    return run_load_client(bench, argv, duration_s, parse_wrk_output)


def run_load_client(bench: Bench, argv: list, duration_s: float, parse: Callable[[str], RunResult]) -> RunResult:
    """Runs a load generator (wrk, h2load) on the load CPUs for about `duration_s`, appends its
    command line and output to TMP/<tool>.log, and parses the output."""
    tool = argv[0]
    process = bench.processes.start(argv, bench.tmp / f"{tool}.log", bench.load_cpus, capture=True)
    try:
        output, _ = process.communicate(timeout=duration_s + 30)
    except subprocess.TimeoutExpired:
        bench.processes.stop(process)
        return RunResult(problems=[f"{tool} did not finish within {duration_s + 30:g} s"])
    bench.processes.running.remove(process)
    text = output.decode(errors="replace")
    with open(bench.tmp / f"{tool}.log", "a") as log:
        log.write(f"$ {shlex.join(argv)}\n{text}\n")
    result = parse(text)
    if process.returncode != 0:
        result.problems.append(f"{tool} exited with status {process.returncode}")
    return result


def wrk_command_line(args: argparse.Namespace) -> str:
    return f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s --latency --timeout 5s URL"


def run_wrk_one_connection(bench: Bench, url: str, duration_s: float) -> RunResult:
    """wrk -t1 -c1: one request at a time, so latency is the cost of one request, not queueing."""
    return run_wrk(bench, url, duration_s, connections=1, threads=1)


def parse_h2load_output(text: str) -> RunResult:
    result = RunResult(raw=text)
    match = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    if match:
        result.requests_per_second = float(match.group(1))
    else:
        result.problems.append("h2load printed no req/s")
    match = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    if match:
        total, succeeded, failed, errored = map(int, match.groups())
        result.requests = succeeded
        if failed or errored:
            result.problems.append(f"{failed} failed, {errored} errored requests")
    match = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if match:
        result.bad_status = int(match.group(1)) + int(match.group(2))
        if result.bad_status:
            result.problems.append(f"{result.bad_status} 4xx/5xx responses")
    match = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    if match:  # h2load reports the mean, not percentiles: shown in the p50 column, marked in the report
        result.p50_ms = float(match.group(1)) * LATENCY_UNIT_MS[match.group(2)]
    if result.requests == 0:
        result.problems.append("no requests completed")
    return result


def run_h2load(bench: Bench, url: str, duration_s: float) -> RunResult:
    """h2load over HTTP/2 (h2c prior knowledge for http://, ALPN h2 for https://): the wrk
    connection count, H2_STREAMS streams in flight on each, one thread per wrk thread."""
    args = bench.args
    argv = ["h2load", f"-c{args.connections}", f"-m{H2_STREAMS}", f"-t{args.wrk_threads}", f"-D{duration_s:g}", url]
    return run_load_client(bench, argv, duration_s, parse_h2load_output)


# Streams each h2load connection keeps in flight (HTTP/2's multiplexing; wrk has one per connection).
H2_STREAMS = 10

CLIENTS: dict[str, Callable[[Bench, str, float], RunResult]] = {
    "wrk": run_wrk,
    "wrk-c1": run_wrk_one_connection,
    "h2load": run_h2load,
}


# --------------------------------------------------------------------------
# Checks and measurement.


def check_response_h2(port: int, path: str, expected_bytes: int, scheme: str) -> tuple:
    """check_response over HTTP/2 (curl: prior knowledge for http, ALPN for https)."""
    with tempfile.TemporaryDirectory() as tmp:
        head, body = Path(tmp) / "head", Path(tmp) / "body"
        mode = "--http2-prior-knowledge" if scheme == "http" else "--http2"
        completed = subprocess.run(
            ["curl", "-sSk", mode, "--max-time", "5", "-D", str(head), "-o", str(body), f"{scheme}://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, timeout=30,
        )
        if completed.returncode != 0:
            return f"GET {path} over HTTP/2: curl status {completed.returncode}: {completed.stderr.strip()}", None
        lines = head.read_bytes().split(b"\r\n")
        headers = http.client.parse_headers(io.BytesIO(b"\r\n".join(lines[1:]) + b"\r\n"))
        if not lines[0].startswith(b"HTTP/2 200"):
            return f"GET {path} over HTTP/2: {lines[0].decode(errors='replace')}", headers
        if body.stat().st_size != expected_bytes:
            return f"GET {path} over HTTP/2: {body.stat().st_size} body bytes, expected {expected_bytes}", headers
        return None, headers


def check_response(port: int, path: str, expected_bytes: int, scheme: str = "http", http2: bool = False) -> tuple:
    """One GET through a peer before measuring: a proxy that answers quickly
    with the wrong thing must not win the benchmark. Returns (problem or
    None, the response headers or None)."""
    if http2:
        return check_response_h2(port, path, expected_bytes, scheme)
    try:
        if scheme == "https":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the bench's own certificate
            connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
        else:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        connection.close()
    except (OSError, http.client.HTTPException) as error:
        return f"GET {path}: {error!r}", None
    if response.status != 200:
        return f"GET {path}: status {response.status}", response.headers
    if len(body) != expected_bytes:
        return f"GET {path}: {len(body)} body bytes, expected {expected_bytes}", response.headers
    return None, response.headers


def check_peers(bench: Bench, peers: dict, scenario: Scenario) -> None:
    """Before measuring a scenario: the origin and every peer answer 200 with
    the right size. For a cache scenario that first request also warms the
    cache, and a second one must be a hit by the peer's own header; a peer
    that is not hitting would be measured doing something else, so stop."""
    problem, _ = check_response(bench.origin_port, scenario.path, scenario.expected_bytes)
    if problem:
        raise BenchError(f"the origin answers wrongly, not measuring: {problem}")
    for key in scenario.peers:
        peer = peers[key]
        http2 = scenario.client == "h2load"
        problem, _ = check_response(peer.port, scenario.path, scenario.expected_bytes, peer.scheme, http2)
        if problem and peer.functions_per_request:
            problem += " (does this verge run edge functions yet?)"
        if problem:
            raise BenchError(f"{peer.label} answers wrongly, not measuring: {problem}")
        if not scenario.cache_hits:
            continue
        if peer.hit_check is None:
            raise BenchError(f"{peer.label} has no cache-hit check; it cannot be in {scenario.name!r}")
        # The warming request's REPORT lines come a little after its response.
        reports_before = len(settled_function_reports(peer.function_log)) if peer.function_log else 0
        problem, headers = check_response(peer.port, scenario.path, scenario.expected_bytes, peer.scheme, http2)
        problem = problem or peer.hit_check(headers)
        if problem and peer.functions_per_request:
            problem += " (does this verge run edge functions yet?)"
        if problem:
            raise BenchError(
                f"{scenario.name}: {peer.label} is NOT answering from its cache after a warming request, "
                f"not measuring: {problem}"
            )
        if peer.function_log:
            check_function_reports(peer, reports_before)


def check_function_reports(peer: Peer, reports_before: int) -> None:
    """A cache hit does not show that a request hook ran; the function log
    does: the request must have added one REPORT line per function. A log
    without any REPORT line (a verge that does not write them yet) is noted,
    not fatal."""
    wait_for_function_reports(peer.function_log, reports_before + peer.functions_per_request)
    reports = settled_function_reports(peer.function_log)  # more than expected would be a hook run twice
    if not reports:
        note = "the function log has no REPORT lines, so it could not confirm that every hook ran"
        if note not in peer.description:
            peer.description += f"; {note}"
            print(f"bench: {peer.label}: {note}", file=sys.stderr)
        return
    added = len(reports) - reports_before
    if added != peer.functions_per_request:
        raise BenchError(
            f"{peer.label}: one request added {added} REPORT line(s) to {peer.function_log}, expected "
            f"{peer.functions_per_request} (one per function): a hook did not run, not measuring"
        )


def measure(bench: Bench, peer: Peer, scenario: Scenario, duration_s: Optional[float] = None) -> RunResult:
    client = CLIENTS[scenario.client]
    url = f"{peer.scheme}://127.0.0.1:{peer.port}{scenario.path}"
    if bench.args.warmup > 0:
        warmup = client(bench, url, bench.args.warmup)
        if warmup.problems:
            print(f"bench:   warm-up {peer.label}: {'; '.join(warmup.problems)}", file=sys.stderr)
    load_cpus = parse_cpu_list(bench.load_cpus) if bench.load_cpus else sorted(os.sched_getaffinity(0))
    origin_before = bench.origin_request_count()
    cpu_before, wall_before = process_tree_cpu_seconds(peer.process.pid), time.monotonic()
    load_busy_before, load_total_before = cpu_times(load_cpus)
    result = client(bench, url, duration_s or bench.args.duration)
    cpu_after, wall_after = process_tree_cpu_seconds(peer.process.pid), time.monotonic()
    load_busy_after, load_total_after = cpu_times(load_cpus)
    # Each count includes the status request that reads it: one of the difference is ours.
    result.origin_requests = bench.origin_request_count() - origin_before - 1
    result.proxy_cpu_percent = 100.0 * (cpu_after - cpu_before) / (wall_after - wall_before)
    if scenario.cache_hits and result.origin_requests > 0:
        result.problems.append(
            f"NOT A CACHE HIT RUN: the origin got {result.origin_requests} requests during it"
        )
    elif not scenario.cache_hits and result.requests and result.origin_requests < 0.99 * result.requests:
        result.problems.append(
            f"the origin got only {result.origin_requests} of {result.requests} requests: "
            "the peer answered from a cache in a pass-through row"
        )
    if load_total_after > load_total_before:
        result.load_cpus_busy_percent = (
            100.0 * (load_busy_after - load_busy_before) / (load_total_after - load_total_before)
        )
    if peer.process.poll() is not None:
        result.problems.append(f"{peer.label} exited (status {peer.process.returncode})")
    return result


# --------------------------------------------------------------------------
# Extra sections: measurements that are not a req/s row. Each is selected by
# --only like a scenario (a substring of its title), starts its peers with
# the others (PEER_STARTERS keys) and returns Markdown plus problems.


@dataclasses.dataclass
class SectionResult:
    text: str  # Markdown, under the section's title
    problems: list = dataclasses.field(default_factory=list)  # each makes the exit status 1


@dataclasses.dataclass(frozen=True)
class ExtraSection:
    title: str
    peers: tuple  # keys of PEER_STARTERS started and checked with the others
    run: Callable[[Bench, dict], SectionResult]
    seconds: Callable[[argparse.Namespace], float]  # about how long it takes, for the progress estimate


# The latency section: at one connection wrk measures the time of one request, and the difference
# between verge's cache hits with and without a viewer-request hook is what the hook costs.
HOOK_LATENCY_TITLE = "Latency one Lua hook adds"
HOOK_LATENCY_SECONDS = 5.0
HOOK_LATENCY_SCENARIO = Scenario(
    HOOK_LATENCY_TITLE, "/1k.bin", 1024, ("verge-one-hook", "verge-cache"), client="wrk-c1", cache_hits=True
)


def hook_latency_seconds(args: argparse.Namespace) -> float:
    return min(HOOK_LATENCY_SECONDS, args.duration)


def measure_hook_latency(bench: Bench, peers: dict) -> SectionResult:
    scenario = HOOK_LATENCY_SCENARIO
    seconds = hook_latency_seconds(bench.args)
    runs = {key: [] for key in scenario.peers}
    for round_index in range(bench.args.rounds):
        order = scenario.peers if round_index % 2 == 0 else tuple(reversed(scenario.peers))
        for key in order:
            result = measure(bench, peers[key], scenario, seconds)
            runs[key].append(result)
            flag = f"  !! {'; '.join(result.problems)}" if result.problems else ""
            print(
                f"bench: round {round_index + 1}/{bench.args.rounds}  {scenario.name:<34} {peers[key].label:<20}"
                f"  p50 {fmt_us(result.p50_ms)} µs  p99 {fmt_us(result.p99_ms)} µs{flag}",
                file=sys.stderr,
            )
    hooked, plain = (runs[key] for key in scenario.peers)
    p50_hooked, p99_hooked = median([r.p50_ms for r in hooked]), median([r.p99_ms for r in hooked])
    p50_plain, p99_plain = median([r.p50_ms for r in plain]), median([r.p99_ms for r in plain])
    lines = [
        f"Cache hits of /1k.bin at one connection (`wrk -t1 -c1 -d{seconds:g}s --latency`, "
        f"{bench.args.warmup:g} s warm-up; median of {bench.args.rounds} round(s)): {peers[scenario.peers[0]].label} "
        f"runs a viewer-request function on every request, {peers[scenario.peers[1]].label} none. "
        "One request at a time, so the latency is the request's own cost and the difference is the hook's.",
        "",
        "| peer | req/s | p50 µs | p99 µs |",
        "|---|--:|--:|--:|",
    ]
    for key in scenario.peers:
        lines.append(
            f"| {peers[key].label} | {fmt(median([r.requests_per_second for r in runs[key]]))} "
            f"| {fmt_us(median([r.p50_ms for r in runs[key]]))} | {fmt_us(median([r.p99_ms for r in runs[key]]))} |"
        )
    lines.append(
        f"| **one viewer-request hook adds** | | **{fmt_us(difference(p50_hooked, p50_plain), True)}** "
        f"| **{fmt_us(difference(p99_hooked, p99_plain), True)}** |"
    )
    if bench.args.rounds > 1:
        lines += ["", "Every run: " + "; ".join(
            f"{peers[key].label} round {index}: p50 {fmt_us(run.p50_ms)} / p99 {fmt_us(run.p99_ms)} µs"
            for key in scenario.peers for index, run in enumerate(runs[key], 1)
        ) + "."]
    problems = [
        f"- {scenario.name}, {peers[key].label}, round {index}: {'; '.join(run.problems)}"
        for key in scenario.peers for index, run in enumerate(runs[key], 1) if run.problems
    ]
    return SectionResult("\n".join(lines), problems)


def difference(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def fmt_us(milliseconds: Optional[float], signed: bool = False) -> str:
    """Milliseconds shown as whole microseconds (wrk reports these latencies in µs)."""
    if milliseconds is None:
        return "–"
    return f"{1000 * milliseconds:{'+' if signed else ''},.0f}"


# The cold-start section: a verge whose function workers exit after one idle second. After each
# wait the next request finds no worker: the proxy starts one per function (Init Duration in the
# REPORT line) while the client waits.
COLD_START_TITLE = "Cold start, two Lua hooks"
COLD_START_SAMPLES = 5
COLD_START_IDLE_TIMEOUT_S = 1
COLD_START_WAIT_S = 2.5  # > idle_timeout_s: the idle workers have exited


@dataclasses.dataclass
class ColdSample:
    cold_ms: Optional[float] = None  # wall time of the first request after the wait, by the client
    warm_ms: Optional[float] = None  # the request right after it
    init_ms: list = dataclasses.field(default_factory=list)  # Init Duration of the REPORT lines it added
    reports: int = 0  # REPORT lines the first request added
    problem: Optional[str] = None


def cold_start_seconds(args: argparse.Namespace) -> float:
    return COLD_START_SAMPLES * (COLD_START_WAIT_S + 1)


def timed_hook_request(port: int, path: str, expected_bytes: int) -> tuple:
    """(wall ms, problem or None): one GET on a new connection, checked like
    the peer check (200, size, X-Hook from the response hook)."""
    started = time.monotonic()
    problem, headers = check_response(port, path, expected_bytes)
    elapsed_ms = 1000 * (time.monotonic() - started)
    if problem is None:
        problem = hook_header_problem(headers)
    return elapsed_ms, problem


def measure_cold_start(bench: Bench, peers: dict) -> SectionResult:
    if bench.args.verge_as_nginx:
        return SectionResult("Not available: --verge-as-nginx runs no verge (nginx has no function workers).")
    path, size = "/1k.bin", ORIGIN_OBJECTS["1k.bin"]
    try:
        peer = start_verge_functions(
            bench, "verge-cold", "verge (cold starts)", ("vreq", "vresp"),
            workers=f'{{ "idle_timeout_s": {COLD_START_IDLE_TIMEOUT_S} }}',
        )
    except BenchError as error:
        return SectionResult(f"Not available: {error}".replace("\n", " "))
    try:
        samples = cold_start_samples(bench, peer, path, size)
    finally:
        bench.processes.stop(peer.process)
    return cold_start_report(peer, samples, path)


def cold_start_samples(bench: Bench, peer: Peer, path: str, size: int) -> list:
    log = peer.function_log
    _, problem = timed_hook_request(peer.port, path, size)  # fills the cache; starts the workers
    report_wait_s = FUNCTION_REPORT_WAIT_S
    if log is not None and not wait_for_function_reports(log, peer.functions_per_request):
        report_wait_s = 0.5  # this verge writes no REPORT lines: do not wait for them every time
    samples = []
    for index in range(COLD_START_SAMPLES):
        time.sleep(COLD_START_WAIT_S)
        before = len(function_reports(log)) if log else 0
        sample = ColdSample()
        sample.cold_ms, sample.problem = timed_hook_request(peer.port, path, size)
        if log is not None:
            added = wait_for_function_reports(log, before + peer.functions_per_request, report_wait_s)[before:]
            sample.reports = len(added)
            sample.init_ms = [ms for ms in (report_field_ms(r, "Init Duration") for r in added) if ms is not None]
        sample.warm_ms, warm_problem = timed_hook_request(peer.port, path, size)
        sample.problem = sample.problem or warm_problem
        if peer.process.poll() is not None:
            sample.problem = (sample.problem or "") + f" {peer.label} exited (status {peer.process.returncode})"
        samples.append(sample)
        print(
            f"bench: cold start {index + 1}/{COLD_START_SAMPLES}: first request {sample.cold_ms:.1f} ms, "
            f"Init Duration {', '.join(f'{ms:.1f}' for ms in sample.init_ms) or '–'} ms, next request "
            f"{sample.warm_ms:.1f} ms{'  !! ' + sample.problem if sample.problem else ''}",
            file=sys.stderr,
        )
    return samples


def cold_start_report(peer: Peer, samples: list, path: str) -> SectionResult:
    init_values = [ms for sample in samples for ms in sample.init_ms]
    cold_samples = [sample for sample in samples if sample.init_ms]
    lines = [
        f"verge with its cache and the two functions of the hooks row, `\"workers\": {{\"idle_timeout_s\": "
        f"{COLD_START_IDLE_TIMEOUT_S}}}`, started on its own. One GET of {path} fills the cache; then "
        f"{COLD_START_SAMPLES} times: wait {COLD_START_WAIT_S:g} s (the idle function workers exit), GET {path} "
        "(a cache hit whose functions need new workers: its wall time by the client, on a new connection), "
        "read the REPORT lines it added to the function log, then GET again at once (warm workers) for comparison.",
        "",
    ]
    if peer.function_log is None:
        lines.append('Init Duration: **not available** (this verge rejects "function_log": no REPORT lines).')
    elif not any(sample.reports for sample in samples):
        lines.append("Init Duration: **not available** (the function log has no REPORT lines yet).")
    else:
        lines.append(
            f"{len(cold_samples)} of {len(samples)} first requests found cold workers (REPORT lines with "
            f"Init Duration: {len(init_values)})."
        )
    lines += [
        "",
        "| | median ms | max ms |",
        "|---|--:|--:|",
        f"| Init Duration (function log, per cold function) | {fmt(median(init_values), 2)} "
        f"| {fmt(max(init_values) if init_values else None, 2)} |",
        f"| first request after idle, wall time (client) | {fmt(median([s.cold_ms for s in samples]), 2)} "
        f"| {fmt(max((s.cold_ms for s in samples if s.cold_ms is not None), default=None), 2)} |",
        f"| next request (warm workers), wall time (client) | {fmt(median([s.warm_ms for s in samples]), 2)} "
        f"| {fmt(max((s.warm_ms for s in samples if s.warm_ms is not None), default=None), 2)} |",
        "",
        "| sample | first request ms | REPORT lines | Init Duration ms | next request ms | problems |",
        "|--:|--:|--:|--:|--:|---|",
    ]
    for index, sample in enumerate(samples, 1):
        lines.append(
            f"| {index} | {fmt(sample.cold_ms, 2)} | {sample.reports if peer.function_log else '–'} "
            f"| {', '.join(f'{ms:.2f}' for ms in sample.init_ms) or '–'} | {fmt(sample.warm_ms, 2)} "
            f"| {'**' + sample.problem + '**' if sample.problem else 'none'} |"
        )
    problems = [f"- {COLD_START_TITLE}, sample {i}: {s.problem}" for i, s in enumerate(samples, 1) if s.problem]
    return SectionResult("\n".join(lines), problems)


EXTRA_SECTIONS = [
    ExtraSection(HOOK_LATENCY_TITLE, HOOK_LATENCY_SCENARIO.peers, measure_hook_latency, hook_latency_seconds),
    ExtraSection(COLD_START_TITLE, (), measure_cold_start, cold_start_seconds),
]


# --------------------------------------------------------------------------
# Report.


def median(values: list) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: Optional[float], digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def fmt_ratio(numerator: Optional[float], denominator: Optional[float]) -> str:
    if not numerator or not denominator:
        return "–"
    return f"{numerator / denominator:.2f}"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def machine_lines(load_at_start: str) -> list:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    virtual = " (virtual machine)" if "hypervisor" in Path("/proc/cpuinfo").read_text() else ""
    return [
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}{virtual}, "
        f"{memory} RAM, Linux {platform.release()}",
        f"- load average at start: {load_at_start}",
    ]


def tool_version(argv: list) -> str:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (completed.stdout + completed.stderr).strip().splitlines()
    return text[0] if text else "?"


def verge_version(bench: Bench) -> str:
    if bench.args.verge_as_nginx:
        return "verge not run (--verge-as-nginx)"
    version = tool_version([str(bench.verge_binary), "--version"])
    revision = tool_version(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    if revision.startswith("fatal") or revision == "?":
        revision = "no commit"
    return f"{version} ({revision}, {bench.verge_binary})"


@dataclasses.dataclass
class EvictionTable:
    text: str  # Markdown: the simulator's output, or why there is none
    problem: Optional[str] = None  # the simulator failed


def eviction_table(bench: Bench) -> EvictionTable:
    """The eviction policies' hit ratios (LRU vs the scan-resistant policy on a
    Zipf trace with a scan) from build-bench/cache_sim, which prints Markdown.
    It is a separate program built by meson with verge; skipped when absent."""
    simulator = bench.args.build_dir / "cache_sim"
    if not os.access(simulator, os.X_OK):
        return EvictionTable(f"Skipped: {simulator} does not exist (meson target `cache_sim`, tools/cache_sim.c).")
    print(f"bench: running {simulator}", file=sys.stderr)
    try:
        completed = subprocess.run([str(simulator)], capture_output=True, text=True, timeout=600, cwd=bench.tmp)
    except subprocess.TimeoutExpired:
        problem = f"{simulator} did not finish within 600 s"
        return EvictionTable(problem, problem)
    output = completed.stdout.strip()
    if completed.returncode != 0 or not output:
        problem = f"{simulator} exited with status {completed.returncode}"
        detail = (completed.stderr.strip() or "(no output)")[-2000:]
        return EvictionTable(f"{problem}:\n\n```\n{detail}\n```", problem)
    return EvictionTable(f"`{simulator}`:\n\n{output}")


def build_report(
    bench: Bench, peers: dict, results: dict, scenarios: list, started: datetime.datetime,
    eviction: Optional[EvictionTable] = None, section_results: tuple = (),
) -> tuple:
    """Returns (Markdown text, whether any run had problems). section_results:
    (title, SectionResult) of the extra sections that ran."""
    args = bench.args
    varnish = any(key == "varnish" for s in scenarios for key in s.peers)
    cache_rows = any(s.cache_hits for s in scenarios)
    versions = [
        verge_version(bench), tool_version([bench.nginx, "-v"]),
        tool_version(["wrk", "-v"]).split(" Copyright")[0],
    ]
    if varnish:
        versions.append(tool_version([shutil.which("varnishd") or "/usr/sbin/varnishd", "-V"]))
    lines = [
        f"# verge vs nginx{' and Varnish' if varnish else ''} — reverse-proxy benchmark",
        "",
        f"- command: `tools/bench {shlex.join(sys.argv[1:])}`".replace("`tools/bench `", "`tools/bench`"),
        f"- date: {started.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        *machine_lines(bench.load_at_start),
        f"- versions: {'; '.join(versions)}",
        f"- threads: {args.threads} for every proxy (verge `threads`, nginx `worker_processes`"
        f"{', Varnish `thread_pools`' if varnish else ''}); "
        f"origin: nginx, {args.origin_workers} worker(s), files on local disk (page cache), keep-alive, "
        f"`Cache-Control: {ORIGIN_CACHE_CONTROL}` on every object",
        "- access logs: off for verge and nginx (verge `\"access_log\": false`, nginx `access_log off`)"
        + ("; Varnish keeps its in-memory shared log (VSL), which cannot be turned off" if varnish else ""),
        f"- CPU pinning: {pin_description(bench)}",
        f"- client: `{wrk_command_line(args)}`, {args.warmup:g} s warm-up before each measured run; "
        f"{args.rounds} round(s), peer order alternates every round",
    ]
    for peer in peers.values():
        lines.append(f"- {peer.label}: {peer.description}")
    if cache_rows:
        lines.append(
            "- cache-hit rows: before measuring, one GET warms each cache peer and a second must be a hit "
            "by the peer's own header (verge `X-Cache: Hit from verge`, nginx `X-Cache-Status: HIT`, "
            "Varnish two ids in `X-Varnish` and an `Age`); during each measured run the origin's request "
            "counter (stub_status) must not move. Same object, same client, same CPUs for every peer"
        )
    if any(key in ("verge-hooks", "nginx-lua", "verge-one-hook") for key in peers):
        lines.append(
            f"- hooks: every hook adds `x-hook: 1` (request hooks to the request, response hooks to the response). "
            f"Before measuring, a peer with a response hook must answer `{HOOK_HEADER}: 1` on its cache hit, and a "
            "verge with functions must log one REPORT line per function for that request"
        )
    if scenarios:
        lines += [
            "",
            f"## Summary (median of {args.rounds} round(s))",
            "",
            "req/s: requests per second (higher is better). ratio: verge / peer (> 1: verge faster). "
            "CPU: % of one CPU used by the proxy during the run. "
            "req/CPU-s ratio: requests per CPU-second, verge / peer (> 1: verge cheaper per request).",
            "",
            "| scenario | vs | verge req/s | peer req/s | ratio | verge p50 / p99 ms | peer p50 / p99 ms "
            "| verge CPU % | peer CPU % | req/CPU-s ratio |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        targets = []
        for scenario in scenarios:
            subject = scenario.peers[0]
            subject_runs = results[(scenario.name, subject)]
            subject_rps = median([r.requests_per_second for r in subject_runs])
            subject_cpu = median([r.proxy_cpu_percent for r in subject_runs])
            for baseline in scenario.peers[1:]:
                runs = results[(scenario.name, baseline)]
                rps = median([r.requests_per_second for r in runs])
                cpu = median([r.proxy_cpu_percent for r in runs])
                efficiency_subject = subject_rps / subject_cpu if subject_rps and subject_cpu else None
                efficiency_baseline = rps / cpu if rps and cpu else None
                lines.append(
                    f"| {scenario.name} | {peers[baseline].label} | {fmt(subject_rps)} | {fmt(rps)} "
                    f"| **{fmt_ratio(subject_rps, rps)}** "
                    f"| {fmt(median([r.p50_ms for r in subject_runs]), 2)} "
                    f"/ {fmt(median([r.p99_ms for r in subject_runs]), 2)} "
                    f"| {fmt(median([r.p50_ms for r in runs]), 2)} / {fmt(median([r.p99_ms for r in runs]), 2)} "
                    f"| {fmt(subject_cpu)} | {fmt(cpu)} | {fmt_ratio(efficiency_subject, efficiency_baseline)} |"
                )
                target = TARGETS.get((scenario.name, baseline))
                if target is not None:
                    ratio = subject_rps / rps if subject_rps and rps else None
                    verdict = "–" if ratio is None else ("met" if ratio >= target else "NOT met")
                    # Round i of both peers ran back to back (order alternating): their ratio
                    # cancels most of the machine's drift, so the spread shows how settled the verdict is.
                    per_round = [
                        f"{a.requests_per_second / b.requests_per_second:.2f}"
                        for a, b in zip(subject_runs, runs)
                        if a.requests_per_second and b.requests_per_second
                    ]
                    spread = f" (per round: {', '.join(per_round)})" if len(per_round) > 1 else ""
                    targets.append(
                        f"- {scenario.name}, {peers[scenario.peers[0]].label} / {peers[baseline].label} "
                        f"≥ {target:.2f}: {fmt_ratio(subject_rps, rps)} — {verdict}{spread}"
                    )
        if targets:
            lines += ["", "Targets (req/s ratio):", "", *targets]
    for title, section in section_results:
        lines += ["", f"## {title}", "", section.text]
    problems = []
    if scenarios:
        lines += [
            "",
            "## Every run",
            "",
            f"proxy CPU %: of one CPU. {load_cpus_label(bench)} busy %: if near 100 while the proxy is below "
            f"{100 * args.threads} %, the client side limited the run and req/s understates the gap; "
            "compare the req/CPU-s ratio instead. origin requests: what the origin received during the "
            "measured run (0 in a cache-hit row, about req/s × duration in a pass-through row).",
            "",
            f"| scenario | peer | round | req/s | p50 ms | p99 ms | proxy CPU % | {load_cpus_label(bench)} busy % "
            "| origin requests | errors |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
        for scenario in scenarios:
            for peer_key in scenario.peers:
                for round_index, run in enumerate(results[(scenario.name, peer_key)], 1):
                    flag = "; ".join(run.problems) if run.problems else "none"
                    if run.problems:
                        problems.append(f"- {scenario.name}, {peers[peer_key].label}, round {round_index}: {flag}")
                    lines.append(
                        f"| {scenario.name} | {peers[peer_key].label} | {round_index} | {fmt(run.requests_per_second)} "
                        f"| {fmt(run.p50_ms, 2)} | {fmt(run.p99_ms, 2)} | {fmt(run.proxy_cpu_percent)} "
                        f"| {fmt(run.load_cpus_busy_percent)} | {fmt(run.origin_requests)} "
                        f"| {'**' + flag + '**' if run.problems else flag} |"
                    )
    for _, section in section_results:
        problems += section.problems
    if eviction is not None:
        lines += ["", "## Cache eviction policies: hit ratio (simulation)", "", eviction.text]
        if eviction.problem:
            problems.append(f"- eviction simulation: {eviction.problem}")
    lines += ["", "## Problems", ""]
    lines += problems if problems else ["none: every run completed without errors"]
    lines += ["", f"Load average at the end: {load_average()} "
              "(other work on the machine during the run makes the numbers noisy)."]
    busy_at_start = float(bench.load_at_start.split()[0])
    if busy_at_start > 0.5 * len(os.sched_getaffinity(0)):
        lines += ["", f"Warning: the load average was {busy_at_start:.2f} at the start, on "
                  f"{len(os.sched_getaffinity(0))} CPUs: other work was running, so these numbers are unreliable."]
    if args.rounds < 3:
        lines += ["", f"Note: {args.rounds} round(s) only — a smoke run, not a measurement."]
    return "\n".join(lines) + "\n", bool(problems)


# --------------------------------------------------------------------------
# Setup: CPU sets, build.


def parse_cpu_list(text: str) -> list:
    cpus = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-")
            cpus += range(int(low), int(high) + 1)
        elif part:
            cpus.append(int(part))
    return cpus


def choose_cpus(args: argparse.Namespace) -> tuple:
    """(proxy CPUs, load CPUs) as taskset lists, or (None, None) unpinned.

    Default: the proxy under test gets CPUs 1..threads to itself; wrk and
    the origin share the rest (CPU 0 on a 2-CPU machine). The proxy does
    about twice the socket work of either wrk or the origin (it talks to
    both), so this keeps the two sides roughly balanced, and each peer gets
    exactly the same placement."""
    if args.no_pin:
        return None, None
    available = sorted(os.sched_getaffinity(0))
    if args.proxy_cpus or args.load_cpus:
        if not (args.proxy_cpus and args.load_cpus):
            raise BenchError("--proxy-cpus and --load-cpus go together")
        return args.proxy_cpus, args.load_cpus
    if len(available) < 2:
        return None, None
    proxy = available[1 : 1 + min(args.threads, len(available) - 1)]
    load = [cpu for cpu in available if cpu not in proxy]
    return ",".join(map(str, proxy)), ",".join(map(str, load))


def load_cpus_label(bench: Bench) -> str:
    return f"wrk+origin CPU {bench.load_cpus}" if bench.load_cpus else "all CPUs"


def pin_description(bench: Bench) -> str:
    if not bench.proxy_cpus:
        return "none (processes float over all CPUs)"
    return f"proxy under test on CPU {bench.proxy_cpus}; wrk and the origin on CPU {bench.load_cpus} (taskset)"


def build_verge(build_dir: Path) -> Path:
    """Release build, no sanitizers, in its own build directory, with
    tools/setup.sh's setup_build (the same as tools/test and tools/demo use):
    it builds every target, cache_sim included."""
    options = ["-Dbuildtype=release", "-Db_sanitize=none"]
    argv = ["bash", "-c", 'source "$0" && setup_build "$@"', str(REPO / "tools" / "setup.sh"), str(build_dir)] + options
    print(f"bench: setup_build {build_dir} {' '.join(options)}", file=sys.stderr)
    completed = subprocess.run(argv, cwd=REPO, stdout=sys.stderr, stderr=sys.stderr)
    if completed.returncode != 0:
        raise BenchError(
            "verge did not build (see above). To check the rest of the harness meanwhile, run "
            "tools/bench --verge-as-nginx (an nginx stands in for verge), or pass --verge PATH."
        )
    binary = build_dir / "verge"
    if not binary.exists():
        raise BenchError(f"{binary} missing after the build")
    return binary


# --------------------------------------------------------------------------
# Main.


def parse_args(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/bench",
        description="verge vs nginx as reverse proxies in front of the same local origin, on loopback: "
        "requests/s, ratio verge/peer, p50/p99, for 1 KiB and 100 KiB objects over keep-alive, passed "
        "through (vs nginx) and served from cache (vs nginx proxy_cache and Varnish), cache hits with two Lua "
        "hooks (verge edge functions vs nginx + ngx_http_lua), the latency one hook adds, function cold "
        "starts, plus the eviction policies' hit ratios from build-bench/cache_sim when it exists. "
        "See docs/bench.md.",
    )
    parser.add_argument("--threads", type=int, default=1, help="verge threads = nginx worker_processes (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the order of peers alternates (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before each run (default 2)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 s runs, 1 s warm-up")
    parser.add_argument(
        "--only", metavar="TEXT",
        help="run only the scenarios and extra sections whose name contains TEXT (e.g. 'cache hit', "
        "'pass-through', '100 KiB', 'Lua hook' for the row and both sections, 'two Lua hooks', 'Cold start')",
    )
    parser.add_argument("--origin-workers", type=int, default=1, help="origin nginx worker_processes (default 1)")
    parser.add_argument(
        "--upstream-idle", type=int, default=0,
        help="idle keep-alive connections each proxy keeps to the origin (nginx keepalive, verge max_idle); "
        "default max(32, --connections) so neither proxy reconnects under load",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--proxy-cpus", metavar="LIST", help="taskset CPU list for the proxy under test")
    parser.add_argument("--load-cpus", metavar="LIST", help="taskset CPU list for wrk and the origin")
    parser.add_argument("--verge", metavar="PATH", type=Path, help="use this verge binary, do not build")
    parser.add_argument(
        "--verge-as-nginx", action="store_true",
        help="put a second nginx proxy in the verge slot (nginx proxy_cache in the cache rows): tests the "
        "harness while verge does not build or has no cache; no build",
    )
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR, help="default build-bench/")
    parser.add_argument("--output", type=Path, help="report file (default BUILD_DIR/bench-results.md)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (configs, logs, wrk output)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3, 1
    for name in ("threads", "rounds", "connections", "wrk_threads", "origin_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    if args.connections < args.wrk_threads:
        parser.error("--connections must be at least --wrk-threads")
    return args


def raise_system_exit(signal_number, frame):
    raise SystemExit(128 + signal_number)


def main(argv: list) -> int:
    args = parse_args(argv)
    scenarios = [s for s in SCENARIOS if not args.only or args.only in s.name]
    sections = [x for x in EXTRA_SECTIONS if not args.only or args.only in x.title]
    if not scenarios and not sections:
        print(f"bench: no scenario or section matches {args.only!r}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, raise_system_exit)
    signal.signal(signal.SIGHUP, raise_system_exit)
    processes = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="verge-bench-"))
    tmp.chmod(0o755)  # nginx workers may run as nobody
    try:
        bench = Bench(args, processes, tmp)
        return run(bench, scenarios, sections)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        processes.stop_all()
        if args.keep_tmp:
            print(f"bench: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(bench: Bench, scenarios: list, sections: list) -> int:
    args = bench.args
    started = datetime.datetime.now(datetime.timezone.utc)
    bench.load_at_start = load_average()
    needed = list(dict.fromkeys([peer for s in scenarios for peer in s.peers] + [p for x in sections for p in x.peers]))
    if args.verge:
        bench.verge_binary = args.verge.resolve()
    elif not args.verge_as_nginx:
        bench.verge_binary = build_verge(args.build_dir)  # also builds cache_sim, used by the report

    runs = args.rounds * sum(len(s.peers) for s in scenarios)
    extra_seconds = sum(x.seconds(args) for x in sections)
    print(
        f"bench: {runs} runs of {args.duration:g} s (+{args.warmup:g} s warm-up each)"
        f"{f' and {len(sections)} extra section(s)' if sections else ''}: "
        f"about {(runs * (args.duration + args.warmup) + extra_seconds) / 60:.1f} min; temporary files in {bench.tmp}",
        file=sys.stderr,
    )
    bench.start_origin()
    peers = {key: PEER_STARTERS[key](bench) for key in needed}
    for scenario in scenarios:
        check_peers(bench, peers, scenario)
    if any(x.title == HOOK_LATENCY_TITLE for x in sections):
        check_peers(bench, peers, HOOK_LATENCY_SCENARIO)

    results = {(s.name, peer): [] for s in scenarios for peer in s.peers}
    for round_index in range(args.rounds):
        for scenario in scenarios:
            order = scenario.peers if round_index % 2 == 0 else tuple(reversed(scenario.peers))
            for peer_key in order:
                peer = peers[peer_key]
                result = measure(bench, peer, scenario)
                results[(scenario.name, peer_key)].append(result)
                flag = f"  !! {'; '.join(result.problems)}" if result.problems else ""
                print(
                    f"bench: round {round_index + 1}/{args.rounds}  {scenario.name:<34} {peer.label:<20}"
                    f"{result.requests_per_second:>12,.0f} req/s  cpu {fmt(result.proxy_cpu_percent)}%{flag}",
                    file=sys.stderr,
                )

    section_results = [(x.title, x.run(bench, peers)) for x in sections]

    processes_used = list(bench.processes.running)
    for process in processes_used:
        bench.processes.stop(process)  # the simulator gets an idle machine
    eviction = eviction_table(bench) if any(s.cache_hits for s in scenarios) else None
    report, had_problems = build_report(bench, peers, results, scenarios, started, eviction, section_results)
    sys.stdout.write(report)
    output = args.output or args.build_dir / "bench-results.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    print(f"bench: report written to {output}", file=sys.stderr)
    return 1 if had_problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
