"""Issue 12 through the real stack (fs server behind the gateway, seed-style
calls on the gateway's UNIX socket): memory goes back after a burst of large
reads, and an error about a huge value is short."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import Stack

READERS = 32
FILE_BYTES = 8_000_000
# What each process may keep over its RSS before the burst. Unfixed, the fs
# server kept about 145 MiB and the gateway 65-225 MiB (debug builds).
KEPT_AT_MOST = 64 << 20
# A burst of 256 MB through two debug processes on a busy machine: this
# bounds liveness, it does not measure speed.
BURST_PATIENCE = 120.0


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def call_on(
    connection: socket.socket, method: str, params: dict, request_id: int = 1, timeout: float = BURST_PATIENCE
) -> dict:
    """One request on an open connection; the answer's frame parsed."""
    connection.settimeout(timeout)
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    connection.sendall(json.dumps(message).encode() + b"\0")
    pieces = []
    while True:
        piece = connection.recv(1 << 20)
        assert piece, "the gateway closed the connection before answering"
        pieces.append(piece)
        if piece.endswith(b"\0"):
            break
    return json.loads(b"".join(pieces)[:-1])


def call(path: Path, method: str, params: dict, request_id: int = 1, timeout: float = BURST_PATIENCE) -> dict:
    """One request on its own connection; the answer's frame parsed."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(path))
        return call_on(connection, method, params, request_id, timeout)


@pytest.fixture
def fs_stack(tmp_path: Path):
    root = tmp_path / "files"
    root.mkdir()
    line = b"abcdefghijklmnopqrstuvwxyz0123456789\n"
    (root / "big.txt").write_bytes(line * (FILE_BYTES // len(line)))
    (root / "small.txt").write_text("small\n")
    stack = Stack(tmp_path).start_fs(root, overrides={"limits": {"backend_timeout_secs": int(BURST_PATIENCE)}})
    yield stack
    stack.stop()


# Clients that close after their read, and clients that keep their
# connection open (the gateway's per-client write buffer held 250 MiB
# until the clients left).
@pytest.mark.parametrize("clients", ["close", "stay"])
def test_memory_goes_back_after_32_concurrent_8_mb_reads(fs_stack: Stack, clients: str):
    fs, gateway = fs_stack.backends["fs"], fs_stack.gateway
    # One read first: what a warm stack costs is the baseline.
    assert "result" in call(fs_stack.gateway_socket, "mcp.fs.read", {"path": "/big.txt", "encoding": "text"})
    before = {"fs": rss(fs.pid), "gateway": rss(gateway.pid)}

    failures: list[str] = []
    kept_open: list[socket.socket] = []

    def read(request_id: int):
        try:
            if clients == "stay":
                connection = socket.socket(socket.AF_UNIX)
                kept_open.append(connection)
                connection.connect(str(fs_stack.gateway_socket))
                answer = call_on(connection, "mcp.fs.read", {"path": "/big.txt", "encoding": "text"}, request_id)
            else:
                answer = call(fs_stack.gateway_socket, "mcp.fs.read", {"path": "/big.txt", "encoding": "text"}, request_id)
            if len(answer.get("result", {}).get("content", "")) < FILE_BYTES - 64:
                failures.append(json.dumps(answer)[:300])
        except Exception as error:  # noqa: BLE001 - every failure is reported below
            failures.append(repr(error))

    readers = [threading.Thread(target=read, args=(request_id,)) for request_id in range(READERS)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(BURST_PATIENCE)
    assert not any(reader.is_alive() for reader in readers), f"reads still running after {BURST_PATIENCE} s"
    assert not failures, failures[:3]

    # Freed memory goes back at once; the wait only bounds a slow return.
    deadline = time.monotonic() + 3.0
    while True:
        after = {"fs": rss(fs.pid), "gateway": rss(gateway.pid)}
        kept = {name: after[name] - before[name] for name in after}
        if all(value <= KEPT_AT_MOST for value in kept.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    figures = {name: f"{before[name] >> 20} -> {after[name] >> 20} MiB" for name in after}
    print(f"RSS before the burst -> after: {figures}")
    assert all(value <= KEPT_AT_MOST for value in kept.values()), (
        f"RSS kept after the burst (at most {KEPT_AT_MOST >> 20} MiB more allowed): {figures}"
    )
    small = call(fs_stack.gateway_socket, "mcp.fs.read", {"path": "/small.txt"}, 99)
    assert small["result"]["content"] == "small\n"
    for connection in kept_open:
        connection.close()


def test_an_error_about_a_huge_value_is_short_through_the_gateway(fs_stack: Stack):
    answer = call(fs_stack.gateway_socket, "mcp.fs.read", {"path": "/small.txt", "offset": "9" * (12 << 20)})
    error = answer["error"]
    assert len(json.dumps(error)) < 2048, json.dumps(error)[:300]
    for says in ("/offset", "integer", "bytes)"):
        assert says in error["message"], error
    assert call(fs_stack.gateway_socket, "mcp.fs.read", {"path": "/small.txt"}, 2)["result"]["content"] == "small\n"
