#!/usr/bin/python3
"""bench.py — the body of tools/bench: verge vs nginx as reverse proxies.

What it does (docs/bench.md has the why and how to read the output):
  1. builds verge optimised in build-bench/ (release, no sanitizers);
  2. starts, on loopback ports in a temporary directory, one origin (an nginx
     serving 1k.bin and 100k.bin) and, in front of it, each peer that the
     selected scenarios need (verge, and nginx configured as a pass-through
     reverse proxy), all with the same number of worker threads/processes;
  3. for each round, for each scenario, drives each peer with the client
     (wrk) in turn — a short warm-up, then the measured run — alternating
     the order every round;
  4. prints a Markdown report (medians, ratio verge/peer, per-round numbers,
     errors) to stdout and to build-bench/bench-results.md.

Everything it starts runs in its own session and is stopped (SIGTERM to the
process group, then SIGKILL) when the script ends for any reason, including
Ctrl-C and SIGTERM. Nothing listens beyond 127.0.0.1; every run is bounded.

Adding rows: a row is a Scenario (name, URL path, peers, client). A new peer
(nginx proxy_cache, Varnish, nginx+lua, ...) is a function in PEER_STARTERS
that starts it and returns a Peer; a new client (h2load, ...) is a function
in CLIENTS that returns a RunResult. Nothing else needs to change.
"""

import argparse
import ctypes
import dataclasses
import datetime
import http.client
import os
import platform
import re
import shlex
import shutil
import signal
import socket
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


# --------------------------------------------------------------------------
# Scenarios: one per row of the report.


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str  # row label
    path: str  # URL path requested through every peer
    expected_bytes: int  # body size a correct response has (checked before measuring)
    peers: tuple  # keys of PEER_STARTERS; peers[0] is the subject (verge), the rest baselines
    client: str = "wrk"  # key of CLIENTS


SCENARIOS = [
    Scenario("1 KiB, keep-alive, pass-through", "/1k.bin", 1024, ("verge", "nginx")),
    Scenario("100 KiB, keep-alive, pass-through", "/100k.bin", 100 * 1024, ("verge", "nginx")),
]


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

    # The origin: one nginx serving static files with keep-alive. It is the
    # same process for every peer, so its cost is the same for all of them.
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
        location / {{ }}
    }}"""
        self.origin = self.start_nginx("origin", self.args.origin_workers, self.origin_port, server, self.load_cpus)

    def start_nginx(
        self, name: str, workers: int, port: int, server_block: str, cpus: Optional[str], http_extra: str = ""
    ) -> Peer:
        """Starts an nginx of our own: prefix and config in tmp, never the
        system service, in the foreground (daemon off) so its pid is ours."""
        prefix = self.tmp / name
        prefix.mkdir()
        prefix.chmod(0o755)
        conf = prefix / "nginx.conf"
        conf.write_text(f"""# generated by tools/bench
worker_processes {workers};
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


def start_verge(bench: Bench) -> Peer:
    if bench.args.verge_as_nginx:
        peer = start_nginx_proxy(bench, name="verge-standin")
        peer.label = "verge(=nginx)"
        peer.description = "nginx stand-in in the verge slot (--verge-as-nginx): " + peer.description
        return peer
    port = free_loopback_port()
    directory = bench.tmp / "verge"
    directory.mkdir()
    config = directory / "verge.json"
    config.write_text(f"""{{
    // generated by tools/bench
    "listen": [{{ "address": "127.0.0.1:{port}" }}],
    "threads": {bench.args.threads},
    "origins": {{
        "origin": {{ "url": "http://127.0.0.1:{bench.origin_port}", "max_idle": {bench.upstream_idle} }}
    }},
    "behaviors": [{{ "path": "*", "origin": "origin" }}],
    "access_log": false
}}
""")
    log_path = directory / "stderr.log"
    process = bench.processes.start([bench.verge_binary, "-c", config], log_path, bench.proxy_cpus)
    wait_for_port(port, process, log_path, "verge")
    return Peer(
        "verge", port, process, log_path,
        f"`{bench.verge_binary} -c verge.json`: threads {bench.args.threads}, one origin, "
        f'behavior "*", origin max_idle {bench.upstream_idle}, access_log false',
    )


def start_nginx_proxy(bench: Bench, name: str = "nginx-proxy") -> Peer:
    port = free_loopback_port()
    upstream = f"""    upstream origin {{
        server 127.0.0.1:{bench.origin_port};
        keepalive {bench.upstream_idle};
        keepalive_requests 1000000;
    }}
"""
    server = f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096 reuseport;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # nginx's default buffers (8 x 4k) halve its 100 KiB throughput here; these hold
            # a whole 100 KiB response, and nothing is ever spooled to disk (verge streams).
            proxy_buffer_size 16k;
            proxy_buffers 16 16k;
            proxy_max_temp_file_size 0;
        }}
    }}"""
    peer = bench.start_nginx(name, bench.args.threads, port, server, bench.proxy_cpus, http_extra=upstream)
    peer.label = "nginx"
    peer.description = (
        f"nginx proxy_pass: worker_processes {bench.args.threads}, upstream keepalive {bench.upstream_idle}, "
        'proxy_http_version 1.1, Connection "", access_log off, no cache, '
        "proxy_buffer_size 16k, proxy_buffers 16 16k, proxy_max_temp_file_size 0"
    )
    return peer


PEER_STARTERS: dict[str, Callable[[Bench], Peer]] = {
    "verge": start_verge,
    "nginx": start_nginx_proxy,
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


def run_wrk(bench: Bench, url: str, duration_s: float) -> RunResult:
    args = bench.args
    argv = [
        "wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{duration_s:g}s",
        "--latency", "--timeout", "5s", url,
    ]
    process = bench.processes.start(argv, bench.tmp / "wrk.log", bench.load_cpus, capture=True)
    try:
        output, _ = process.communicate(timeout=duration_s + 30)
    except subprocess.TimeoutExpired:
        bench.processes.stop(process)
        return RunResult(problems=[f"wrk did not finish within {duration_s + 30:g} s"])
    bench.processes.running.remove(process)
    text = output.decode(errors="replace")
    with open(bench.tmp / "wrk.log", "a") as log:
        log.write(f"$ {shlex.join(argv)}\n{text}\n")
    result = parse_wrk_output(text)
    if process.returncode != 0:
        result.problems.append(f"wrk exited with status {process.returncode}")
    return result


def wrk_command_line(args: argparse.Namespace) -> str:
    return f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s --latency --timeout 5s URL"


CLIENTS: dict[str, Callable[[Bench, str, float], RunResult]] = {
    "wrk": run_wrk,
}


# --------------------------------------------------------------------------
# Checks and measurement.


def check_response(port: int, path: str, expected_bytes: int) -> Optional[str]:
    """One GET through a peer before measuring: a proxy that answers quickly
    with the wrong thing must not win the benchmark."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        connection.close()
    except (OSError, http.client.HTTPException) as error:
        return f"GET {path}: {error!r}"
    if response.status != 200:
        return f"GET {path}: status {response.status}"
    if len(body) != expected_bytes:
        return f"GET {path}: {len(body)} body bytes, expected {expected_bytes}"
    return None


def measure(bench: Bench, peer: Peer, scenario: Scenario) -> RunResult:
    client = CLIENTS[scenario.client]
    url = f"http://127.0.0.1:{peer.port}{scenario.path}"
    if bench.args.warmup > 0:
        warmup = client(bench, url, bench.args.warmup)
        if warmup.problems:
            print(f"bench:   warm-up {peer.label}: {'; '.join(warmup.problems)}", file=sys.stderr)
    load_cpus = parse_cpu_list(bench.load_cpus) if bench.load_cpus else sorted(os.sched_getaffinity(0))
    cpu_before, wall_before = process_tree_cpu_seconds(peer.process.pid), time.monotonic()
    load_busy_before, load_total_before = cpu_times(load_cpus)
    result = client(bench, url, bench.args.duration)
    cpu_after, wall_after = process_tree_cpu_seconds(peer.process.pid), time.monotonic()
    load_busy_after, load_total_after = cpu_times(load_cpus)
    result.proxy_cpu_percent = 100.0 * (cpu_after - cpu_before) / (wall_after - wall_before)
    if load_total_after > load_total_before:
        result.load_cpus_busy_percent = (
            100.0 * (load_busy_after - load_busy_before) / (load_total_after - load_total_before)
        )
    if peer.process.poll() is not None:
        result.problems.append(f"{peer.label} exited (status {peer.process.returncode})")
    return result


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


def build_report(bench: Bench, peers: dict, results: dict, scenarios: list, started: datetime.datetime) -> tuple:
    """Returns (Markdown text, whether any run had problems)."""
    args = bench.args
    lines = [
        "# verge vs nginx — reverse-proxy benchmark",
        "",
        f"- command: `tools/bench {shlex.join(sys.argv[1:])}`".replace("`tools/bench `", "`tools/bench`"),
        f"- date: {started.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        *machine_lines(bench.load_at_start),
        f"- versions: {verge_version(bench)}; {tool_version([bench.nginx, '-v'])}; "
        f"{tool_version(['wrk', '-v']).split(' Copyright')[0]}",
        f"- threads: {args.threads} for every proxy (verge `threads`, nginx `worker_processes`); "
        f"origin: nginx, {args.origin_workers} worker(s), files on local disk (page cache), keep-alive",
        "- access logs: off for both proxies (verge `\"access_log\": false`, nginx `access_log off`)",
        f"- CPU pinning: {pin_description(bench)}",
        f"- client: `{wrk_command_line(args)}`, {args.warmup:g} s warm-up before each measured run; "
        f"{args.rounds} round(s), peer order alternates every round",
    ]
    for peer in peers.values():
        lines.append(f"- {peer.label}: {peer.description}")
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
                f"| {fmt(median([r.p50_ms for r in subject_runs]), 2)} / {fmt(median([r.p99_ms for r in subject_runs]), 2)} "
                f"| {fmt(median([r.p50_ms for r in runs]), 2)} / {fmt(median([r.p99_ms for r in runs]), 2)} "
                f"| {fmt(subject_cpu)} | {fmt(cpu)} | {fmt_ratio(efficiency_subject, efficiency_baseline)} |"
            )
    lines += [
        "",
        "## Every run",
        "",
        f"proxy CPU %: of one CPU. {load_cpus_label(bench)} busy %: if near 100 while the proxy is below "
        f"{100 * args.threads} %, the client side limited the run and req/s understates the gap; "
        "compare the req/CPU-s ratio instead.",
        "",
        f"| scenario | peer | round | req/s | p50 ms | p99 ms | proxy CPU % | {load_cpus_label(bench)} busy % | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    problems = []
    for scenario in scenarios:
        for peer_key in scenario.peers:
            for round_index, run in enumerate(results[(scenario.name, peer_key)], 1):
                flag = "; ".join(run.problems) if run.problems else "none"
                if run.problems:
                    problems.append(f"- {scenario.name}, {peers[peer_key].label}, round {round_index}: {flag}")
                lines.append(
                    f"| {scenario.name} | {peers[peer_key].label} | {round_index} | {fmt(run.requests_per_second)} "
                    f"| {fmt(run.p50_ms, 2)} | {fmt(run.p99_ms, 2)} | {fmt(run.proxy_cpu_percent)} "
                    f"| {fmt(run.load_cpus_busy_percent)} "
                    f"| {'**' + flag + '**' if run.problems else flag} |"
                )
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
    """Release build, no sanitizers, in its own build directory."""
    options = ["-Dbuildtype=release", "-Db_sanitize=none"]
    if (build_dir / "build.ninja").exists():
        setup = ["meson", "configure", str(build_dir)] + options  # an existing dir: just (re)set the options
    else:
        setup = ["meson", "setup", str(build_dir)] + options
    for argv in (setup, ["meson", "compile", "-C", str(build_dir), "verge"]):
        print(f"bench: $ {shlex.join(argv)}", file=sys.stderr)
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
        "requests/s, ratio verge/nginx, p50/p99, for 1 KiB and 100 KiB objects over keep-alive. "
        "See docs/bench.md.",
    )
    parser.add_argument("--threads", type=int, default=1, help="verge threads = nginx worker_processes (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the order of peers alternates (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before each run (default 2)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 s runs, 1 s warm-up")
    parser.add_argument("--only", metavar="TEXT", help="run only the scenarios whose name contains TEXT")
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
        help="put a second nginx proxy in the verge slot (tests the harness while verge does not build)",
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
    if not scenarios:
        print(f"bench: no scenario matches {args.only!r}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, raise_system_exit)
    signal.signal(signal.SIGHUP, raise_system_exit)
    processes = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="verge-bench-"))
    tmp.chmod(0o755)  # nginx workers may run as nobody
    try:
        bench = Bench(args, processes, tmp)
        return run(bench, scenarios)
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


def run(bench: Bench, scenarios: list) -> int:
    args = bench.args
    started = datetime.datetime.now(datetime.timezone.utc)
    bench.load_at_start = load_average()
    needed = list(dict.fromkeys(peer for s in scenarios for peer in s.peers))
    if "verge" in needed and not args.verge_as_nginx:
        bench.verge_binary = args.verge.resolve() if args.verge else build_verge(args.build_dir)

    runs = args.rounds * sum(len(s.peers) for s in scenarios)
    print(
        f"bench: {runs} runs of {args.duration:g} s (+{args.warmup:g} s warm-up each): "
        f"about {runs * (args.duration + args.warmup) / 60:.1f} min; temporary files in {bench.tmp}",
        file=sys.stderr,
    )
    bench.start_origin()
    peers = {key: PEER_STARTERS[key](bench) for key in needed}
    for scenario in scenarios:
        for target, port in [("origin", bench.origin_port)] + [(peers[k].label, peers[k].port) for k in scenario.peers]:
            problem = check_response(port, scenario.path, scenario.expected_bytes)
            if problem:
                raise BenchError(f"{target} answers wrongly, not measuring: {problem}")

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
                    f"bench: round {round_index + 1}/{args.rounds}  {scenario.name:<34} {peer.label:<14}"
                    f"{result.requests_per_second:>12,.0f} req/s  cpu {fmt(result.proxy_cpu_percent)}%{flag}",
                    file=sys.stderr,
                )

    report, had_problems = build_report(bench, peers, results, scenarios, started)
    sys.stdout.write(report)
    output = args.output or args.build_dir / "bench-results.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    print(f"bench: report written to {output}", file=sys.stderr)
    return 1 if had_problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
