"""The gateway's backend connections under bursts: concurrent calls on an
empty pool open one connection per slot, and idle closes really close them
(issue 12: descriptors grew 16 -> 48 -> 76 -> 104 over three bursts)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from conftest import Stack, wait_for

BURSTS = 10
PIPELINED = 32


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pipelined_burst(path: Path, count: int) -> None:
    """`count` requests written at once on one connection, then every answer read."""
    frames = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": i, "method": "mcp.test.echo", "params": {"text": f"{i}"}}).encode()
        + b"\0"
        for i in range(count)
    )
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(15)
        client.connect(str(path))
        client.sendall(frames)
        received = b""
        while received.count(b"\0") < count:
            chunk = client.recv(65536)
            assert chunk, f"the gateway closed before answering all {count} requests"
            received += chunk
    answers = [json.loads(frame) for frame in received.split(b"\0") if frame]
    assert sorted(answer["id"] for answer in answers) == list(range(count))
    failed = [answer for answer in answers if "result" not in answer]
    assert not failed, failed[:3]


def test_gateway_descriptors_stay_flat_across_bursts_with_idle_closes(tmp_path: Path):
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    gateway = stack.start_gateway(overrides={"limits": {"backend_idle_close_secs": 0}})
    try:
        # One call first, so that whatever the gateway opens once (its
        # caps watch, its runtime) is in the baseline; then its idle close.
        pipelined_burst(stack.gateway_socket, 1)
        baseline = wait_for(lambda: stable_count(gateway.pid), "the gateway's first idle close")
        counts = []
        for burst in range(BURSTS):
            pipelined_burst(stack.gateway_socket, PIPELINED)
            # The idle close runs every second; a leak never comes back down.
            deadline = time.monotonic() + 5
            while descriptors(gateway.pid) > baseline and time.monotonic() < deadline:
                time.sleep(0.05)
            counts.append(descriptors(gateway.pid))
        print(f"gateway descriptors: baseline {baseline}, after each burst's idle close {counts}")
        assert counts == [baseline] * BURSTS, (
            f"gateway descriptors grew across bursts: baseline {baseline}, after each idle close {counts}"
        )
    finally:
        stack.stop()


def stable_count(pid: int) -> int | None:
    """The descriptor count once the idle close has run (two equal reads a tick apart)."""
    first = descriptors(pid)
    time.sleep(1.2)
    return first if descriptors(pid) == first else None
