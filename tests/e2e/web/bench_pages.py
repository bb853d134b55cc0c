"""The console's page benchmark (issue 18): server time of each page, p50
and p90 over a bounded number of requests on loopback, with 100+ tools
behind the gateway, and the console's RSS when idle.

Usage: target/test-venv/bin/python tests/e2e/web/bench_pages.py [REQUESTS] [--up]
(binaries from target/debug unless LLMBASEDOS_BIN_DIR says otherwise; the
figures that count come from target/release). With --up, the console runs
under `llmbasedos up` instead, whose control socket serves the overview's
services and at least 1,000 captured log lines to the logs page."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import BIN_DIR, Process, Stack, free_port, wait_for  # noqa: E402
from web.console import Console, Http, hostile_upstream  # noqa: E402

TARGET_MS = 20.0
TARGET_RSS_KIB = 15 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def measure(client, paths, requests):
    for path in paths:
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        times.sort()
        p50 = statistics.median(times)
        print(
            f"{path:16} p50 {p50:7.2f} ms  p99 {times[min(len(times) - 1, int(len(times) * 0.99))]:7.2f} ms"
            f"  target p50 <= {TARGET_MS:.0f} ms ({p50 / TARGET_MS:.2f} of it)  ({requests} requests)"
        )


def bench_up(requests: int):
    """The console as `llmbasedos up` starts it, its logs page over up's
    captured lines (at least 1,000: sign-ins with unknown tokens, which the
    console refuses and logs as warnings)."""
    root = Path(tempfile.mkdtemp(prefix="web-bench-up-"))
    files = root / "files"
    files.mkdir()
    (files / "hello.txt").write_text("hello\n")
    home = root / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "XDG_STATE_HOME": str(home / "state"),
           "LLMBASEDOS_LOG": "info"}
    web_port = free_port()
    gateway_port = free_port()
    runtime = root / "run"
    up = Process([str(BIN_DIR / "llmbasedos"), "--runtime-dir", str(runtime), "up", "--root", str(files),
                  "--listen", f"127.0.0.1:{gateway_port}", "--web-listen", f"127.0.0.1:{web_port}",
                  "--bin-dir", str(BIN_DIR)], root / "up.log", env=env)
    cli = [str(BIN_DIR / "llmbasedos"), "--runtime-dir", str(runtime)]
    try:
        url = wait_for(lambda: re.search(r"web console\s+(\S+#t=([0-9a-f]{64}))", up.log()), "the URL", timeout=60)
        def lines() -> int:
            out = subprocess.run([*cli, "logs", "-n", "1000"], capture_output=True, text=True, env={**os.environ, **env})
            return len(out.stdout.splitlines())
        calls = 0
        origin = {"Origin": f"http://127.0.0.1:{web_port}"}
        while lines() < 1000 and calls < 5000:
            for _ in range(250):
                Http(web_port).post("/session", json={"token": "0" * 64}, headers=origin)
            calls += 250
        print(f"under up: {lines()} captured lines shown by `llmbasedos logs -n 1000` after {calls} refused sign-ins")
        web_pid = int(re.search(r"started web \(pid (\d+)\)", up.log()).group(1))
        time.sleep(1)
        print(f"console idle RSS at start: {rss_kib(web_pid)} KiB (target <= {TARGET_RSS_KIB} KiB)")
        client = Http(web_port)
        response = client.post("/session", json={"token": url.group(2)}, headers={"Origin": f"http://127.0.0.1:{web_port}"})
        assert response.status_code == 204, response.text
        rows = client.get("/logs").text.count("<tr class=\"priority-")
        print(f"log rows on /logs: {rows}")
        measure(client, ["/", "/logs", "/logs?service=fs&text=list"], requests)
        time.sleep(2)
        print(f"console RSS after the run, idle: {rss_kib(web_pid)} KiB (target <= {TARGET_RSS_KIB} KiB)")
    finally:
        up.stop()


def main():
    args = [arg for arg in sys.argv[1:] if arg != "--up"]
    requests = int(args[0]) if args else 50
    print(f"binaries: {BIN_DIR}")
    if "--up" in sys.argv:
        bench_up(requests)
        return
    root = Path(tempfile.mkdtemp(prefix="web-bench-"))
    files = root / "files"
    files.mkdir()
    (files / "hello.txt").write_text("hello\n")
    stack = Stack(root)
    stack.publish_caps("fs", "llmbasedos-fs")
    stack.start_backend("fs", "llmbasedos-fs", env={"LLMBASEDOS_FS_ROOT": str(files)})
    upstream = {**hostile_upstream(), "env": {"HOSTILE_EXTRA_TOOLS": "100"}}
    stack.start_gateway(overrides={"upstreams": [upstream]})
    wait_for(lambda: "upstream connected upstream=hostile" in stack.gateway.log(), "the upstream", timeout=60)
    console = Console(stack, root)
    try:
        time.sleep(1)
        print(f"idle RSS at start: {rss_kib(console.process.pid)} KiB")
        client, _ = console.signed_in()
        tools = client.get("/tools").text.count('<li data-search="')
        print(f"tools listed: {tools}")
        measure(client, ["/", "/tools", "/tools/fs_read", "/licence", "/semantic", "/logs"], requests)
        time.sleep(2)
        print(f"RSS after the run, idle: {rss_kib(console.process.pid)} KiB")
    finally:
        console.stop()
        stack.stop()


if __name__ == "__main__":
    main()
