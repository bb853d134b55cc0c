"""The console's page benchmark (issue 18): server time of each page, p50
and p90 over a bounded number of requests on loopback, with 100+ tools
behind the gateway, and the console's RSS when idle.

Usage: target/test-venv/bin/python tests/e2e/web/bench_pages.py [REQUESTS]
(binaries from target/debug unless LLMBASEDOS_BIN_DIR says otherwise)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import Stack, wait_for  # noqa: E402
from web.console import Console, hostile_upstream  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def main():
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 50
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
        for path in ["/", "/tools", "/tools/fs_read", "/licence", "/semantic", "/logs"]:
            times = []
            for _ in range(requests):
                start = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            times.sort()
            print(
                f"{path:16} p50 {statistics.median(times):7.2f} ms  p90 {times[int(len(times) * 0.9)]:7.2f} ms  ({requests} requests)"
            )
        time.sleep(2)
        print(f"RSS after the run, idle: {rss_kib(console.process.pid)} KiB")
    finally:
        console.stop()
        stack.stop()


if __name__ == "__main__":
    main()
