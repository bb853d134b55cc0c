"""The gateway's front under attack (issue 12): connection floods and
slowloris, a client that pipelines without reading, many clients behind one
token, request smuggling through Host and absolute targets, session floods,
NUL-framed lines on the stdio bridge, forged log lines, and refusals that
leave a trace (never the token)."""

from __future__ import annotations

import http.client
import json
import re
import resource
import socket
import subprocess
import threading
import time

import pytest
from conftest import Stack, jsonrpc, start_gateway_with_descriptors, unix_call

# The gateway's descriptor limit in the flood tests: its caps come from it
# (112 TCP and 16 UNIX connections for the default reserve).
NOFILE = 256
FLOOD = 400


def raise_own_descriptor_limit(wanted: int):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def open_idle_connections(port: int, count: int, deadline: float) -> list[socket.socket]:
    """Up to `count` TCP connections that send nothing (bounded in time)."""
    opened = []
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        connection = socket.socket()
        connection.settimeout(1.0)
        try:
            connection.connect(("127.0.0.1", port))
            opened.append(connection)
        except OSError:
            connection.close()
    return opened


def post(stack: Stack, message: str, headers: dict | None = None, timeout: float = 15.0):
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=timeout)
    try:
        connection.request(
            "POST", "/mcp", body=message, headers={**stack.auth, "Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def accept_error_lines(log: str) -> int:
    return sum(1 for line in log.splitlines() if "accept" in line.lower() and ("error" in line.lower() or "cannot" in line.lower()))


def test_an_idle_connection_flood_leaves_room_for_real_clients(tmp_path):
    raise_own_descriptor_limit(FLOOD + 256)
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    start_gateway_with_descriptors(stack, NOFILE)
    flood: list[socket.socket] = []
    try:
        # More idle connections than the gateway has descriptors.
        flood = open_idle_connections(stack.port, FLOOD, time.monotonic() + 20)
        assert len(flood) > NOFILE // 2, f"only {len(flood)} connections opened"
        # A client with the token and a UNIX-socket client still get answers.
        status, payload = post(stack, jsonrpc("mcp.test.echo", {"text": "through"}))
        assert status == 200, payload
        assert json.loads(payload)["result"] == {"text": "through"}
        assert unix_call(stack.gateway_socket, jsonrpc("mcp.hello"))["result"]["services"] == ["test"]
        # A backend call still opens what it needs.
        assert unix_call(stack.gateway_socket, jsonrpc("mcp.test.echo", {"text": "unix"}))["result"] == {"text": "unix"}
        time.sleep(1)
        log = stack.gateway.log()
        assert accept_error_lines(log) < 10, log[-3000:]
        assert "Too many open files" not in log or accept_error_lines(log) < 10
    finally:
        for connection in flood:
            connection.close()
        stack.stop()


def test_a_slowloris_connection_is_closed_after_the_header_timeout(stack: Stack):
    with socket.create_connection(("127.0.0.1", stack.port), timeout=2) as slow:
        slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        # The default header timeout is 10 s; give up after 30 s of trickling.
        for index in range(30):
            try:
                slow.sendall(b"X-Slow-%d: 1\r\n" % index)
                data = slow.recv(4096)
                if data == b"" or data.startswith(b"HTTP/1.1 408"):
                    closed = True
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
        assert closed, "the gateway kept a connection that never finished its headers"


def test_a_client_that_pipelines_without_reading_does_not_starve_its_other_connections(stack: Stack):
    # 32 slow requests (the identity's whole budget), then 3,000 whose
    # answers (64 KiB each) fill the socket: the client never reads. The
    # same identity (uid) on another connection must still be served once
    # the slow ones are done.
    stalled = socket.socket(socket.AF_UNIX)
    stalled.connect(str(stack.gateway_socket))
    slow = [jsonrpc("mcp.test.sleep", {"ms": 2000}, id=f"slow-{index}") for index in range(32)]
    big = [jsonrpc("mcp.test.echo", {"text": "x" * 1024, "repeat": 64}, id=index) for index in range(3000)]
    requests = b"".join(message.encode() + b"\0" for message in slow + big)

    def send_all():
        try:
            stalled.sendall(requests)
        except OSError:
            pass

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    try:
        time.sleep(3)
        for index in range(5):
            answer = unix_call(stack.gateway_socket, jsonrpc("mcp.test.echo", {"text": "other"}, id=index))
            assert answer.get("result") == {"text": "other"}, answer
    finally:
        stalled.close()
        sender.join(10)


def test_64_http_clients_sharing_one_token_are_all_served(stack: Stack):
    refusals: list[dict] = []
    failures: list[str] = []

    def client(number: int):
        connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        try:
            for call in range(10):
                connection.request(
                    "POST",
                    "/mcp",
                    body=jsonrpc("mcp.test.sleep", {"ms": 20}, id=call),
                    headers={**stack.auth, "Content-Type": "application/json"},
                )
                response = connection.getresponse()
                answer = json.loads(response.read())
                if "error" in answer:
                    refusals.append(answer)
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(f"client {number}: {error!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(number,)) for number in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[:3]
    assert refusals == [], f"{len(refusals)} refusals, e.g. {refusals[0]}"


def raw_request(stack: Stack, head: str, body: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as connection:
        connection.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
        status = int(data.split(b" ", 2)[1])
        return status, data


@pytest.mark.parametrize(
    ("what", "head"),
    [
        ("two Host headers", "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.com\r\n"),
        ("an absolute-form target", "POST http://evil.com/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
    ],
)
def test_host_tricks_are_refused(stack: Stack, what: str, head: str):
    head += f"Authorization: Bearer {stack.token}\r\nContent-Type: application/json\r\n"
    status, data = raw_request(stack, head, jsonrpc("mcp.hello"))
    assert status == 400, (what, data)


def initialize_session(stack: Stack, token_headers: dict, name: str = "flood") -> tuple[int, str | None, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        body = jsonrpc(
            "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": name, "version": "1"}}
        )
        connection.request("POST", "/mcp", body=body, headers={**token_headers, "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("mcp-session-id"), response.read()
    finally:
        connection.close()


def test_one_token_cannot_evict_another_clients_session(tmp_path):
    import hashlib
    import secrets

    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    other = secrets.token_urlsafe(24)
    tokens = [
        {"name": "tests", "sha256": hashlib.sha256(stack.token.encode()).hexdigest()},
        {"name": "victim", "sha256": hashlib.sha256(other.encode()).hexdigest()},
    ]
    stack.start_gateway(overrides={"auth": {"tokens": tokens}})
    try:
        victim = {"Authorization": f"Bearer {other}"}
        status, session, _ = initialize_session(stack, victim, "victim")
        assert status == 200 and session
        refused = 0
        for _ in range(1100):
            status, _, payload = initialize_session(stack, stack.auth)
            if status != 200:
                refused += 1
                assert status == 429, payload
                assert "sessions" in json.loads(payload)["error"]["message"]
        assert refused > 0, "one token opened 1,100 sessions"
        connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        connection.request(
            "POST",
            "/mcp",
            body=jsonrpc("tools/list"),
            headers={**victim, "Content-Type": "application/json", "Mcp-Session-Id": session},
        )
        response = connection.getresponse()
        assert response.status == 200, response.read()
        connection.close()
    finally:
        stack.stop()


def test_a_nul_inside_a_stdio_line_is_one_bad_message(stack: Stack):
    bridge = subprocess.Popen(
        stack.stdio_bridge_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        smuggled = jsonrpc("mcp.test.echo", {"text": "smuggled"}, id=1)
        honest = jsonrpc("mcp.test.echo", {"text": "honest"}, id=2)
        bridge.stdin.write(b"garbage\0" + smuggled.encode() + b"\n" + honest.encode() + b"\n")
        bridge.stdin.flush()
        first = json.loads(bridge.stdout.readline())
        second = json.loads(bridge.stdout.readline())
        assert first["error"]["code"] == -32700, first
        assert second == {"jsonrpc": "2.0", "id": 2, "result": {"text": "honest"}}
    finally:
        bridge.stdin.close()
        bridge.wait(10)


def test_client_strings_cannot_forge_log_lines(stack: Stack):
    forged = "host\n2026-12-01T00:00:00Z  INFO forged: admin logged in\x1b[2J"
    status, _, payload = initialize_session(stack, stack.auth, forged)
    assert status == 200, payload
    unix_call(stack.gateway_socket, jsonrpc("mcp.no\nforged.line\x1b[2J"))
    time.sleep(0.5)
    log = stack.gateway.log()
    assert "\x1b" not in log
    assert not any(line.startswith("2026-12-01T00:00:00Z") or "forged.line" in line.split("mcp.no")[0] for line in log.splitlines())
    assert not any(line.lstrip().startswith("forged.line") for line in log.splitlines())
    assert "host\\n2026-12-01" in log


def test_a_refused_token_is_logged_with_the_peer_and_never_the_token(stack: Stack):
    secret = "wrong-token-" + "s3cr3t" * 4
    status, payload = post(stack, jsonrpc("mcp.hello"), headers={"Authorization": f"Bearer {secret}"})
    assert status == 401, payload
    time.sleep(0.5)
    log = stack.gateway.log()
    assert secret not in log
    lines = [line for line in log.splitlines() if "refused a client" in line]
    assert lines, log[-2000:]
    assert re.search(r"peer=127\.0\.0\.1:\d+", lines[-1]), lines[-1]
    assert "not valid" in lines[-1]
