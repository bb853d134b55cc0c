"""JSON-RPC batches (issue 13): MCP 2025-03-26 requires a server to accept
them, on every transport a host of that revision uses — Streamable HTTP, the
stdio bridge, WebSocket and the UNIX socket. Later revisions dropped them, so
a session of 2025-06-18 or 2025-11-25 (or a caller that never initialized)
is refused with the reason and keeps working."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import Stack, jsonrpc, unix_call, wait_for
from test_hosts import INITIALIZE_PARAMS, mcp_post
from websockets.sync.client import connect as ws_connect


def initialize(version: str, id=0) -> str:
    return jsonrpc("initialize", {**INITIALIZE_PARAMS, "protocolVersion": version}, id=id)


# Every kind of entry: requests that succeed and fail, a notification (no
# answer), an entry that is no message, and initialize (never in a batch).
BATCH = json.dumps([
    {"jsonrpc": "2.0", "id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "test_echo", "arguments": {"text": "hi"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 3},
    {"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {**INITIALIZE_PARAMS, "protocolVersion": "2025-03-26"}},
    {"jsonrpc": "2.0", "id": "five", "method": "no/such/method"},
])  # fmt: skip
NOTIFICATIONS_ONLY = json.dumps([{"jsonrpc": "2.0", "method": "notifications/initialized"}])
TOO_MANY = json.dumps([{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in range(65)])


def check_batch_answer(answers):
    assert isinstance(answers, list), answers
    assert [answer["id"] for answer in answers] == [1, 2, 3, 4, "five"], answers
    ping, echo, not_a_message, initialize_in_batch, unknown = answers
    assert ping["result"] == {}
    assert json.loads(echo["result"]["content"][0]["text"]) == {"text": "hi"}
    # 2025-03-26 has no structuredContent.
    assert "structuredContent" not in echo["result"]
    assert not_a_message["error"]["code"] == -32600
    assert initialize_in_batch["error"]["code"] == -32600
    assert "initialize must not be part of a batch" in initialize_in_batch["error"]["message"]
    assert unknown["error"]["code"] == -32601


def check_refusal(answer, negotiated: str):
    assert isinstance(answer, dict), answer
    assert answer["id"] is None
    assert answer["error"]["code"] == -32600
    message = answer["error"]["message"]
    assert "2025-03-26" in message and negotiated in message and "one message per request" in message, message


def test_a_2025_03_26_host_sends_batches_over_streamable_http(stack: Stack):
    status, headers, body = mcp_post(stack, initialize("2025-03-26"))
    assert status == 200, body
    session = {"Mcp-Session-Id": headers["mcp-session-id"]}
    status, headers, body = mcp_post(stack, BATCH, session)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    check_batch_answer(json.loads(body))
    # Only notifications: accepted, no body.
    status, _, body = mcp_post(stack, NOTIFICATIONS_ONLY, session)
    assert (status, body) == (202, b"")
    # Bad batches are refused as a whole, and the session serves on.
    status, _, body = mcp_post(stack, "[]", session)
    assert status == 400 and "empty batch" in json.loads(body)["error"]["message"], body
    status, _, body = mcp_post(stack, TOO_MANY, session)
    assert status == 400 and "at most 64" in json.loads(body)["error"]["message"], body
    status, _, body = mcp_post(stack, "[{", session)
    assert status == 400 and json.loads(body)["error"]["code"] == -32700, body
    status, _, body = mcp_post(stack, jsonrpc("ping", id=9), session)
    assert status == 200 and json.loads(body)["result"] == {}, body


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_later_revisions_and_sessionless_callers_are_refused_a_batch(stack: Stack, version: str):
    status, headers, _ = mcp_post(stack, initialize(version))
    assert status == 200
    session = {"Mcp-Session-Id": headers["mcp-session-id"], "MCP-Protocol-Version": version}
    status, _, body = mcp_post(stack, BATCH, session)
    assert status == 400, body
    check_refusal(json.loads(body), version)
    status, _, body = mcp_post(stack, jsonrpc("ping", id=9), session)
    assert status == 200 and json.loads(body)["result"] == {}, body
    # No session at all: nothing was negotiated.
    status, _, body = mcp_post(stack, BATCH)
    assert status == 400, body
    check_refusal(json.loads(body), "did not initialize")


class NulClient:
    """One connection to the gateway's UNIX socket, NUL-delimited."""

    def __init__(self, path: Path):
        self.socket = socket.socket(socket.AF_UNIX)
        self.socket.settimeout(10)
        self.socket.connect(str(path))
        self.buffer = b""

    def send(self, text: str):
        self.socket.sendall(text.encode() + b"\0")

    def receive(self):
        while b"\0" not in self.buffer:
            chunk = self.socket.recv(65536)
            assert chunk, f"the socket closed after {self.buffer!r}"
            self.buffer += chunk
        frame, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(frame)

    def close(self):
        self.socket.close()


def exchange_on_a_stream(send, receive):
    """The same exchange on every stream transport: a 2025-03-26 session's
    batches are answered (nothing for notifications only), bad ones refused,
    and the connection serves on."""
    send(initialize("2025-03-26"))
    assert receive()["result"]["protocolVersion"] == "2025-03-26"
    send(BATCH)
    check_batch_answer(receive())
    send(NOTIFICATIONS_ONLY)
    send(TOO_MANY)
    # The notifications got no answer: the next frame is the refusal.
    refusal = receive()
    assert refusal["error"]["code"] == -32600 and "at most 64" in refusal["error"]["message"], refusal
    send(jsonrpc("ping", id=9))
    assert receive() == {"jsonrpc": "2.0", "id": 9, "result": {}}


def test_a_2025_03_26_host_sends_batches_over_the_unix_socket(stack: Stack):
    client = NulClient(stack.gateway_socket)
    try:
        exchange_on_a_stream(client.send, client.receive)
    finally:
        client.close()
    # A connection that initialized with a later revision, or not at all.
    for version in ["2025-11-25", None]:
        client = NulClient(stack.gateway_socket)
        try:
            if version:
                client.send(initialize(version))
                client.receive()
            client.send(BATCH)
            check_refusal(client.receive(), version or "did not initialize")
            client.send(jsonrpc("ping", id=9))
            assert client.receive()["result"] == {}
        finally:
            client.close()


def test_a_2025_03_26_host_sends_batches_over_websocket(stack: Stack):
    with ws_connect(stack.ws_url, additional_headers=stack.auth, open_timeout=10) as websocket:
        exchange_on_a_stream(websocket.send, lambda: json.loads(websocket.recv(timeout=10)))


class BridgeHost:
    """A host on the stdio bridge: lines in, lines out, bounded waits."""

    def __init__(self, stack: Stack):
        self.process = subprocess.Popen(
            stack.stdio_bridge_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.pending = bytearray()

    def send(self, text: str):
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()

    def receive(self, timeout: float = 10):
        assert self.process.stdout is not None
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            assert ready, f"no answer from the bridge within {timeout} s after {bytes(self.pending)!r}"
            chunk = os.read(self.process.stdout.fileno(), 65536)
            assert chunk, "the bridge closed stdout"
            self.pending.extend(chunk)
        line, _, rest = bytes(self.pending).partition(b"\n")
        self.pending[:] = rest
        return json.loads(line)

    def close(self):
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)


def test_a_2025_03_26_host_sends_batches_through_the_stdio_bridge(stack: Stack):
    host = BridgeHost(stack)
    try:
        exchange_on_a_stream(host.send, host.receive)
    finally:
        host.close()


def test_a_batch_in_flight_when_the_gateway_restarts_is_failed_as_a_batch(stack: Stack):
    host = BridgeHost(stack)
    try:
        host.send(initialize("2025-03-26"))
        host.receive()
        sleep = {"name": "test_sleep", "arguments": {"ms": 20000}}
        host.send(json.dumps([
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": sleep},
            {"jsonrpc": "2.0", "id": 2, "method": "ping"},
        ]))  # fmt: skip
        # The batch is in flight once the test server counts the sleep started.
        wait_for(
            lambda: unix_call(stack.gateway_socket, jsonrpc("mcp.test.stats"))["result"]["started"] >= 1,
            "the sleep call to reach the test server",
        )
        assert stack.gateway is not None
        stack.gateway.stop(signal.SIGKILL)
        # One array, as the host sent one batch, failing both requests.
        answers = host.receive(timeout=30)
        assert isinstance(answers, list), answers
        assert sorted(answer["id"] for answer in answers) == [1, 2], answers
        for answer in answers:
            assert "restarted during the call" in answer["error"]["message"], answer
        # The bridge goes on with a new gateway.
        stack.start_gateway()
        host.send(jsonrpc("ping", id=3))
        assert host.receive(timeout=30) == {"jsonrpc": "2.0", "id": 3, "result": {}}
    finally:
        host.close()
