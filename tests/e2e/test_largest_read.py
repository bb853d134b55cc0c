"""Issue 20, item 6: the largest read the fs server allows reaches an MCP
host on every transport — Streamable HTTP and the stdio bridge with the
official SDK, the WebSocket and the UNIX socket with raw JSON-RPC — in
the content that makes its answer largest, and its bytes arrive intact.

The fs server runs with the largest `max_read_bytes` its configuration
accepts. The files: binary of that size (base64 in the answer); text of
that size made of control characters, which JSON escapes six-fold; and the
text whose answer is the largest one a read may produce, quotes filling the
read's whole JSON budget, which the tool result's text block escapes once
more (each quote is 2 bytes in structuredContent and 4 in the text block)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import socket
from pathlib import Path

import pytest
from conftest import Process, Stack, binary, connectable_unix, jsonrpc, wait_for
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from websockets.sync.client import connect as ws_connect

# fs::config::MAX_MAX_READ_BYTES: the largest read limit fs.yaml may set.
LARGEST_READ_LIMIT = 11 * 1024 * 1024
# What one read's content may take as JSON text: the base64 of the limit.
READ_BUDGET = 4 * math.ceil(LARGEST_READ_LIMIT / 3)
# Debug builds moving answers of tens of MiB on a busy machine: this bounds
# liveness, it does not measure speed.
PATIENCE = 240.0


def largest_files() -> dict[str, bytes]:
    return {
        "binary.bin": os.urandom(LARGEST_READ_LIMIT),
        "controls.txt": b"\x01" * LARGEST_READ_LIMIT,
        "quotes.txt": b'"' * (READ_BUDGET // 2),
    }


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return largest_files()


@pytest.fixture
def largest_stack(tmp_path: Path, files: dict[str, bytes]):
    root = tmp_path / "files"
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    config = tmp_path / "fs.yaml"
    config.write_text(json.dumps({"root": str(root), "max_read_bytes": LARGEST_READ_LIMIT}))
    stack = Stack(tmp_path)
    stack.publish_caps("fs", "llmbasedos-fs")
    socket_path = stack.caps_dir / "fs.sock"
    stack.backends["fs"] = Process(
        [str(binary("llmbasedos-fs")), "--socket", str(socket_path), "--idle-timeout", "0", "--config", str(config)],
        tmp_path / "fs.log",
    )
    wait_for(lambda: connectable_unix(socket_path), "the fs server's socket")
    stack.start_gateway(overrides={"limits": {"backend_timeout_secs": 120}})
    yield stack
    stack.stop()


def check_read(name: str, expected: bytes, result: dict) -> None:
    """A `tools/call` result of fs_read carries the file's bytes, in
    structuredContent and in the JSON of its text block alike."""
    assert not result.get("isError"), result["content"][0]["text"][:500]
    structured = result["structuredContent"]
    assert json.loads(result["content"][0]["text"]) == structured, f"{name}: the text block differs"
    content = structured["content"]
    data = base64.b64decode(content) if structured["encoding"] == "base64" else content.encode()
    assert structured["bytes"] == len(expected), name
    assert data == expected, f"{name}: the bytes read differ from the file's"


def call(name: str) -> str:
    return jsonrpc("tools/call", {"name": "fs_read", "arguments": {"path": f"/{name}"}})


def read_unix(path: Path, message: str) -> dict:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(PATIENCE)
        connection.connect(str(path))
        connection.sendall(message.encode() + b"\0")
        pieces = []
        while not pieces or not pieces[-1].endswith(b"\0"):
            piece = connection.recv(1 << 20)
            assert piece, "the gateway closed the connection before answering"
            pieces.append(piece)
        return json.loads(b"".join(pieces)[:-1])


def via_unix(stack: Stack, names: list[str]) -> dict[str, dict]:
    return {name: read_unix(stack.gateway_socket, call(name)) for name in names}


def via_websocket(stack: Stack, names: list[str]) -> dict[str, dict]:
    answers = {}
    with ws_connect(stack.ws_url, additional_headers=stack.auth, open_timeout=10, max_size=None) as ws:
        for name in names:
            ws.send(call(name))
            answers[name] = json.loads(ws.recv(timeout=PATIENCE))
    return answers


async def via_sdk(target, names: list[str]) -> dict[str, dict]:
    answers = {}
    async with Client(target, mode="legacy", read_timeout_seconds=PATIENCE) as client:
        for name in names:
            result = await client.call_tool("fs_read", {"path": f"/{name}"})
            answers[name] = {"result": result.model_dump(by_alias=True, mode="json")}
    return answers


def via_http(stack: Stack, names: list[str]) -> dict[str, dict]:
    target = streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))
    return asyncio.run(via_sdk(target, names))


def via_stdio_bridge(stack: Stack, names: list[str]) -> dict[str, dict]:
    argv = stack.stdio_bridge_argv()
    return asyncio.run(via_sdk(StdioServerParameters(command=argv[0], args=argv[1:]), names))


TRANSPORTS = {
    "streamable-http": via_http,
    "websocket": via_websocket,
    "unix-socket": via_unix,
    "stdio-bridge": via_stdio_bridge,
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_the_largest_allowed_read_reaches_the_host(largest_stack: Stack, files: dict[str, bytes], transport: str):
    answers = TRANSPORTS[transport](largest_stack, list(files))
    for name, expected in files.items():
        answer = answers[name]
        assert "error" not in answer, f"{name} over {transport}: {str(answer['error'])[:500]}"
        check_read(name, expected, answer["result"])
