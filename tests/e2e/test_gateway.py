"""The gateway as hosts use it: the official MCP SDK over Streamable HTTP
(both protocol eras) and over the stdio bridge, WebSocket with the seed's
method names, the front security, live discovery and backend failures."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, Stack, binary, connectable_tcp, free_port, jsonrpc, require_tool, unix_call, wait_for
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from websockets.sync.client import connect as ws_connect

MODES = ["legacy", "auto", "2026-07-28"]


def http_target(stack: Stack):
    return streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))


def stdio_target(stack: Stack):
    argv = stack.stdio_bridge_argv()
    return StdioServerParameters(command=argv[0], args=argv[1:])


async def exercise(target, mode: str) -> dict:
    """Initialise (or discover), list tools, call one, get a tool error and a protocol error."""
    seen: dict = {}
    async with Client(target, mode=mode) as client:
        seen["version"] = client.session.protocol_version
        tools = await client.list_tools()
        seen["tools"] = {tool.name: tool for tool in tools.tools}
        result = await client.call_tool("test_echo", {"text": "hello", "repeat": 2})
        seen["echo"] = result
        seen["tool_error"] = await client.call_tool("test_fail", {"kind": "not_found"})
        seen["bad_arguments"] = await client.call_tool("test_echo", {"text": 5})
        progress: list[float] = []

        async def on_progress(value, total, message):
            progress.append(value)

        await client.call_tool("test_progress", {"steps": 5}, progress_callback=on_progress)
        seen["progress"] = progress
        with pytest.raises(Exception) as protocol_error:
            await client.call_tool("no_such_tool", {})
        seen["protocol_error"] = str(protocol_error.value)
    return seen


def check_exercise(seen: dict, mode: str):
    expected_version = "2025-11-25" if mode == "legacy" else "2026-07-28"
    assert seen["version"] == expected_version
    echo_tool = seen["tools"]["test_echo"]
    assert echo_tool.description == "Returns the text it is given."
    assert echo_tool.input_schema["required"] == ["text"]
    assert echo_tool.annotations is not None and echo_tool.annotations.read_only_hint is True
    assert set(seen["tools"]) >= {"test_echo", "test_sleep", "test_progress", "test_fail"}
    echo = seen["echo"]
    assert echo.is_error is False
    assert echo.structured_content == {"text": "hellohello"}
    assert json.loads(echo.content[0].text) == {"text": "hellohello"}
    assert seen["tool_error"].is_error is True
    assert seen["tool_error"].content[0].text == "no such thing"
    assert seen["bad_arguments"].is_error is True
    assert "/text" in seen["bad_arguments"].content[0].text
    assert seen["progress"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert "unknown tool: no_such_tool" in seen["protocol_error"]


@pytest.mark.parametrize("mode", MODES)
def test_streamable_http_with_the_official_sdk(stack: Stack, mode: str):
    check_exercise(asyncio.run(exercise(http_target(stack), mode)), mode)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_stdio_bridge_with_the_official_sdk(stack: Stack, mode: str):
    check_exercise(asyncio.run(exercise(stdio_target(stack), mode)), mode)


def test_websocket_speaks_the_seed_vocabulary(stack: Stack):
    with ws_connect(stack.ws_url, additional_headers=stack.auth, open_timeout=10) as ws:

        def call(message: str) -> dict:
            ws.send(message)
            return json.loads(ws.recv(timeout=10))

        hello = call(jsonrpc("mcp.hello"))
        assert hello["result"]["services"] == ["test"]
        capabilities = call(jsonrpc("mcp.listCapabilities", id=2))
        [service] = capabilities["result"]["services"]
        assert service["service"] == "test"
        assert "mcp.test.echo" in [method["name"] for method in service["methods"]]
        echo = call(jsonrpc("mcp.test.echo", ["hi", 3], id="three"))
        assert echo == {"jsonrpc": "2.0", "id": "three", "result": {"text": "hihihi"}}
        failure = call(jsonrpc("mcp.test.fail", {"kind": "permission_denied"}, id=4))
        assert failure["error"]["code"] == -32092
        unknown = call(jsonrpc("mcp.nothing.here", id=5))
        assert unknown["error"]["code"] == -32601
        assert "mcp.nothing.here" in unknown["error"]["message"]
        broken = call("{not json")
        assert broken["error"]["code"] == -32700
        # The connection keeps serving after every error.
        assert call(jsonrpc("mcp.test.echo", {"text": "still"}, id=6))["result"] == {"text": "still"}


def http_status(stack: Stack, headers: dict[str, str], method: str = "POST", path: str = "/mcp"):
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    body = jsonrpc("tools/list") if method == "POST" else None
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    connection.request(method, path, body=body, headers={**base, **headers})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), payload


@pytest.mark.parametrize(
    ("what", "headers", "status", "says"),
    [
        ("no token", {}, 401, "bearer token is required"),
        ("a wrong token", {"Authorization": "Bearer not-the-token"}, 401, "not valid"),
        ("a foreign Origin", {"Origin": "http://evil.example"}, 403, "Origin"),
        ("a foreign Host", {"Host": "evil.example"}, 403, "Host"),
        ("a rebinding Host with a local port", {"Host": "attacker.test:8000"}, 403, "Host"),
    ],
)
def test_the_front_refuses(stack: Stack, what: str, headers: dict[str, str], status: int, says: str):
    if what not in ("no token", "a wrong token"):
        headers = {**stack.auth, **headers}
    got, response_headers, payload = http_status(stack, headers)
    assert got == status, (what, payload)
    assert says in json.loads(payload)["error"]["message"]
    if status == 401:
        assert response_headers["www-authenticate"].startswith('Bearer realm="llmbasedos"')


def test_the_front_admits_local_origins_and_the_token(stack: Stack):
    for origin in ["http://localhost:5173", "http://127.0.0.1", "https://[::1]:8443"]:
        status, _, payload = http_status(stack, {**stack.auth, "Origin": origin})
        assert status == 200, (origin, payload)
        assert "tools" in json.loads(payload)["result"]


def test_websocket_needs_the_token_too(stack: Stack):
    with pytest.raises(Exception) as refused:
        ws_connect(stack.ws_url, open_timeout=10)
    assert "401" in str(refused.value)


def test_no_auth_is_refused_off_loopback(tmp_path):
    stack = Stack(tmp_path)
    config = stack.write_config()
    result = subprocess.run(
        [binary("llmbasedos-gateway"), "--config", str(config), "--listen", f"0.0.0.0:{free_port()}", "--no-auth"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 78
    assert "--no-auth is refused" in result.stderr
    assert "not a loopback address" in result.stderr


def test_check_config_names_the_key(tmp_path):
    bad = tmp_path / "gateway.yaml"
    bad.write_text("listen: nowhere\n")
    result = subprocess.run([binary("llmbasedos-gateway"), "--check-config", str(bad)], capture_output=True, text=True)
    assert result.returncode == 78
    assert f"{bad}: listen:" in result.stderr
    # The shipped file admits llmgroup, which the packages' sysusers.d
    # creates; a test machine has none, so it is checked with a gid instead.
    shipped = (ROOT / "config" / "gateway.yaml").read_text()
    assert "unix_allowed_groups: [llmgroup]" in shipped
    copy = tmp_path / "shipped.yaml"
    copy.write_text(shipped.replace("unix_allowed_groups: [llmgroup]", 'unix_allowed_groups: ["0"]'))
    good = subprocess.run(
        [binary("llmbasedos-gateway"), "--check-config", str(copy)],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr


OTHER_CAPS = {
    "service": "other",
    "version": "0.1.0",
    "description": "A service that appears while the gateway runs.",
    "error_base": -32080,
    "methods": [
        {
            "name": "mcp.other.ping",
            "description": "Answers pong.",
            "params_schema": {"type": "object", "properties": {}},
        }
    ],
}


def test_caps_files_added_and_removed_change_the_tools_live(stack: Stack):
    async def scenario():
        changes: list[str] = []

        async def on_message(message):
            method = getattr(getattr(message, "root", message), "method", None)
            if method:
                changes.append(method)

        async with Client(stdio_target(stack), mode="legacy", message_handler=on_message) as client:
            before = {tool.name for tool in (await client.list_tools()).tools}
            assert "other_ping" not in before
            (stack.caps_dir / "broken.cap.json").write_text("{ this is not json")
            other = stack.caps_dir / "other.cap.json"
            temporary = stack.caps_dir / "other.tmp"
            temporary.write_text(json.dumps(OTHER_CAPS))
            temporary.rename(other)
            for _ in range(200):
                if "notifications/tools/list_changed" in changes:
                    break
                await asyncio.sleep(0.05)
            assert "notifications/tools/list_changed" in changes
            during = {tool.name for tool in (await client.list_tools()).tools}
            assert "other_ping" in during and "test_echo" in during
            # A tool whose server is not running is a tool error, not a crash.
            result = await client.call_tool("other_ping", {})
            assert result.is_error and "other service is not running" in result.content[0].text
            changes.clear()
            other.unlink()
            for _ in range(200):
                if "notifications/tools/list_changed" in changes:
                    break
                await asyncio.sleep(0.05)
            after = {tool.name for tool in (await client.list_tools()).tools}
            assert "other_ping" not in after and "test_echo" in after

    asyncio.run(scenario())
    log = stack.gateway.log()
    assert "broken.cap.json" in log and "ignoring a broken caps file" in log


def test_a_backend_killed_mid_call_gives_an_error_and_the_next_call_works(stack: Stack):
    async def scenario():
        async with Client(http_target(stack), mode="legacy") as client:
            slow = asyncio.create_task(client.call_tool("test_sleep", {"ms": 30000}))
            await asyncio.sleep(0.5)
            stack.backends["test"].stop(signal.SIGKILL)
            started = time.monotonic()
            result = await asyncio.wait_for(slow, timeout=15)
            assert result.is_error
            assert "stopped while handling" in result.content[0].text
            assert time.monotonic() - started < 10
            down = await client.call_tool("test_echo", {"text": "anyone?"})
            assert down.is_error and "not running" in down.content[0].text
            (stack.caps_dir / "test.sock").unlink()
            stack.start_backend()
            back = await client.call_tool("test_echo", {"text": "back"})
            assert back.structured_content == {"text": "back"}

    asyncio.run(scenario())


def test_a_slow_backend_times_out_with_a_clear_error(stack: Stack):
    async def scenario():
        async with Client(http_target(stack), mode="auto") as client:
            started = time.monotonic()
            result = await client.call_tool("test_sleep", {"ms": 20000})
            elapsed = time.monotonic() - started
            assert result.is_error
            assert "did not answer within 5 s" in result.content[0].text
            assert elapsed < 15
            quick = await client.call_tool("test_echo", {"text": "fine"})
            assert quick.structured_content == {"text": "fine"}

    asyncio.run(scenario())
    wait_for(lambda: '"cancelled":1' in _stats(stack), "the backend to see the cancellation")


def _stats(stack: Stack) -> str:
    with ws_connect(stack.ws_url, additional_headers=stack.auth, open_timeout=10) as ws:
        ws.send(jsonrpc("mcp.test.stats"))
        return json.dumps(json.loads(ws.recv(timeout=10))["result"], separators=(",", ":"))


def test_sessions_end_with_delete_and_unknown_sessions_are_refused(stack: Stack):
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    headers = {**stack.auth, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    initialize = jsonrpc(
        "initialize",
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    )
    connection.request("POST", "/mcp", body=initialize, headers=headers)
    response = connection.getresponse()
    body = json.loads(response.read())
    session = response.getheader("mcp-session-id")
    assert body["result"]["protocolVersion"] == "2025-11-25" and session
    connection.request("DELETE", "/mcp", headers={**headers, "Mcp-Session-Id": session})
    deleted = connection.getresponse()
    deleted.read()
    assert deleted.status == 204
    connection.request("POST", "/mcp", body=jsonrpc("tools/list"), headers={**headers, "Mcp-Session-Id": session})
    gone = connection.getresponse()
    assert gone.status == 404
    assert "initialize again" in json.loads(gone.read())["error"]["message"]
    connection.request("POST", "/mcp", body=jsonrpc("tools/list"), headers={**headers, "MCP-Protocol-Version": "1999-01-01"})
    old = connection.getresponse()
    assert old.status == 400
    assert "unsupported MCP-Protocol-Version" in json.loads(old.read())["error"]["message"]
    connection.close()


REFERENCE_SERVER = ROOT / "target" / "test-node" / "node_modules" / ".bin" / "mcp-server-filesystem"


def reference_server() -> Path:
    if not REFERENCE_SERVER.exists():
        pytest.fail(f"{REFERENCE_SERVER} is missing: run scripts/install-test-deps (npm install of tests/node-packages.txt)")
    return REFERENCE_SERVER


def upstream_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and "mcp-server-filesystem" in cmdline:
                pids.append(int(entry.name))
    return pids


def test_the_reference_filesystem_server_works_as_a_stdio_upstream(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note.txt").write_text("hello from the reference server\n")
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    upstream = {"name": "reference-fs", "prefix": "reffs", "command": [str(reference_server()), str(shared)]}
    stack.start_gateway(overrides={"upstreams": [upstream]})
    try:

        async def tool_names(client) -> set[str]:
            return {tool.name for tool in (await client.list_tools()).tools}

        async def scenario():
            async with Client(http_target(stack), mode="legacy") as client:
                for _ in range(300):
                    if "reffs_read_text_file" in await tool_names(client):
                        break
                    await asyncio.sleep(0.1)
                names = await tool_names(client)
                assert {"reffs_read_text_file", "reffs_list_directory", "test_echo"} <= names
                read = await client.call_tool("reffs_read_text_file", {"path": str(shared / "note.txt")})
                assert read.is_error is False
                assert read.content[0].text == "hello from the reference server\n"
                outside = await client.call_tool("reffs_read_text_file", {"path": "/etc/passwd"})
                assert outside.is_error is True
                # It dies: its tools go, and come back when it is restarted.
                for pid in upstream_pids(str(shared)):
                    os.kill(pid, signal.SIGKILL)
                for _ in range(300):
                    if "reffs_read_text_file" not in await tool_names(client):
                        break
                    await asyncio.sleep(0.05)
                for _ in range(300):
                    if "reffs_read_text_file" in await tool_names(client):
                        break
                    await asyncio.sleep(0.1)
                again = await client.call_tool("reffs_read_text_file", {"path": str(shared / "note.txt")})
                assert again.content[0].text == "hello from the reference server\n"

        asyncio.run(scenario())
        log = stack.gateway.log()
        assert "upstream connected" in log and "restarting in" in log
    finally:
        stack.stop()


def test_a_client_may_run_only_so_many_requests_at_once(tmp_path):
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    stack.start_gateway(overrides={"limits": {"max_concurrent_requests": 2}})
    try:
        with ws_connect(stack.ws_url, additional_headers=stack.auth, open_timeout=10) as first, ws_connect(
            stack.ws_url, additional_headers=stack.auth, open_timeout=10
        ) as second:
            for id in (1, 2):
                first.send(jsonrpc("mcp.test.sleep", {"ms": 1500}, id=id))
            time.sleep(0.3)
            # The limit is the client's (its token), not the connection's:
            # the third request waits for a slot instead of being refused.
            second.send(jsonrpc("mcp.test.sleep", {"ms": 10}, id=3))
            time.sleep(0.3)
            # Another client (the UNIX socket's uid) sees only two running.
            stats = unix_call(stack.gateway_socket, jsonrpc("mcp.test.stats"))["result"]
            assert stats["started"] - stats["completed"] - stats["cancelled"] == 2, stats
            waited = json.loads(second.recv(timeout=10))
            assert waited == {"jsonrpc": "2.0", "id": 3, "result": {"slept_ms": 10}}
            answers = {json.loads(first.recv(timeout=10))["id"] for _ in range(2)}
            assert answers == {1, 2}
            second.send(jsonrpc("mcp.test.echo", {"text": "now"}, id=4))
            assert json.loads(second.recv(timeout=10))["result"] == {"text": "now"}
    finally:
        stack.stop()


def test_oversized_messages_are_refused_and_the_client_goes_on(tmp_path):
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    stack.start_gateway(overrides={"limits": {"max_message_bytes": 4096}})
    try:
        big = jsonrpc("mcp.test.echo", {"text": "x" * 8000})
        connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        connection.request("POST", "/mcp", body=big, headers={**stack.auth, "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 413
        connection.close()
        # The UNIX socket answers -32600 and keeps the connection.
        with socket.socket(socket.AF_UNIX) as unix:
            unix.settimeout(10)
            unix.connect(str(stack.gateway_socket))
            unix.sendall(big.encode() + b"\0" + jsonrpc("mcp.test.echo", {"text": "small"}, id=2).encode() + b"\0")
            answers = read_frames(unix, 2)
            assert answers[0]["error"]["code"] == -32600
            assert "limit of 4096 bytes" in answers[0]["error"]["message"]
            assert answers[1] == {"jsonrpc": "2.0", "id": 2, "result": {"text": "small"}}
        # A WebSocket frame over the limit closes that socket; others are unaffected.
        with ws_connect(stack.ws_url, additional_headers=stack.auth, open_timeout=10, max_size=None) as ws:
            ws.send(big)
            with pytest.raises(Exception):
                ws.recv(timeout=10)
        status, _, payload = http_status(stack, stack.auth)
        assert status == 200, payload
    finally:
        stack.stop()


def read_frames(connection: socket.socket, count: int) -> list[dict]:
    buffer = b""
    while buffer.count(b"\0") < count:
        chunk = connection.recv(65536)
        assert chunk, f"closed after {buffer!r}"
        buffer += chunk
    return [json.loads(frame) for frame in buffer.split(b"\0")[:count]]


NOBODY = 65534
UNIX_CLIENT = """
import json, socket, sys
client = socket.socket(socket.AF_UNIX)
client.settimeout(10)
client.connect(sys.argv[1])
try:
    client.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "mcp.hello"}).encode() + b"\\0")
except BrokenPipeError:
    pass
data = b""
while not data.endswith(b"\\0"):
    chunk = client.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.rstrip(b"\\0").decode())
"""


@pytest.mark.parametrize("allowed", [False, True])
def test_unix_socket_peers_are_admitted_by_uid(tmp_path, allowed: bool):
    setpriv = require_tool("setpriv", "apt-get install util-linux")
    if os.geteuid() != 0:
        pytest.fail("this test changes user with setpriv: run it as root")
    # A directory the other user can reach, and a socket it may connect to:
    # only the gateway's own check stands between it and the services.
    public = Path(tempfile.mkdtemp(prefix="llmbasedos-unix-"))
    public.chmod(0o755)
    stack = Stack(tmp_path)
    stack.gateway_socket = public / "gateway.sock"
    stack.publish_caps()
    stack.start_backend()
    overrides = {"auth": {"unix_allowed_uids": [NOBODY] if allowed else []}}
    stack.start_gateway(overrides=overrides)
    try:
        stack.gateway_socket.chmod(0o666)
        result = subprocess.run(
            [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "/usr/bin/python3", "-c", UNIX_CLIENT, str(stack.gateway_socket)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        if allowed:
            assert answer["result"]["services"] == ["test"]
        else:
            assert "permission denied" in answer["error"]["message"]
            assert "uid 65534" in stack.gateway.log()
    finally:
        stack.stop()
        shutil.rmtree(public, ignore_errors=True)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_resources_and_media_pass_through_from_backends(stack: Stack, mode: str):
    async def scenario():
        async with Client(http_target(stack), mode=mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "test_image" in names
            # Methods behind resources are not tools.
            assert "test_resources_list" not in names and "test_resource_read" not in names
            resources = await client.list_resources()
            assert [str(resource.uri) for resource in resources.resources] == ["test://greeting"]
            templates = await client.list_resource_templates()
            assert [template.uri_template for template in templates.resource_templates] == ["test://{name}"]
            read = await client.read_resource("test://greeting")
            assert read.contents[0].text == "hello from a resource"
            with pytest.raises(Exception) as missing:
                await client.read_resource("test://nothing")
            assert "no resource test://nothing" in str(missing.value)
            with pytest.raises(Exception) as unowned:
                await client.read_resource("elsewhere://x")
            assert "resource not found" in str(unowned.value)
            image = await client.call_tool("test_image", {})
            assert image.content[0].type == "image"
            assert image.content[0].mime_type == "image/png"
            assert image.structured_content == {"mime_type": "image/png"}

    asyncio.run(scenario())


def test_prompts_pass_through_from_backends(stack: Stack):
    async def scenario():
        async with Client(http_target(stack), mode="legacy") as client:
            prompts = await client.list_prompts()
            assert [prompt.name for prompt in prompts.prompts] == ["test_greet"]
            assert prompts.prompts[0].arguments[0].name == "who"
            rendered = await client.get_prompt("test_greet", {"who": "Ada"})
            assert rendered.messages[0].content.text == "Say hello to Ada."
            with pytest.raises(Exception) as unknown:
                await client.get_prompt("test_nothing", {})
            assert "no such prompt: test_nothing" in str(unknown.value)

    asyncio.run(scenario())


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
def test_log_records_reach_clients_that_ask_for_them(stack: Stack):
    async def scenario():
        records = []

        async def on_log(params):
            records.append(params)

        async with Client(stdio_target(stack), mode="legacy", logging_callback=on_log) as client:
            await client.set_logging_level("warning")
            (stack.caps_dir / "other.cap.json").write_text(json.dumps(OTHER_CAPS))
            for _ in range(200):
                if "other_ping" in {tool.name for tool in (await client.list_tools()).tools}:
                    break
                await asyncio.sleep(0.05)
            failed = await client.call_tool("other_ping", {})
            assert failed.is_error
            for _ in range(100):
                if records:
                    break
                await asyncio.sleep(0.05)
            warnings = [record for record in records if record.level == "warning"]
            assert warnings and warnings[0].data["service"] == "other"
            # Info records (the services changed) stay below the level asked for.
            assert all(record.level != "info" for record in records)

    asyncio.run(scenario())


def test_a_cancelled_request_is_cancelled_on_the_backend(stack: Stack):
    with ws_connect(stack.ws_url, additional_headers=stack.auth, open_timeout=10) as ws:
        ws.send(jsonrpc("mcp.test.sleep", {"ms": 30000}, id="slow"))
        time.sleep(0.3)
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow"}}))
        wait_for(lambda: '"cancelled":1' in _stats(stack), "the backend to see the cancellation")
        ws.send(jsonrpc("mcp.test.echo", {"text": "after"}, id=2))
        # The cancelled request gets no answer; the next one does.
        assert json.loads(ws.recv(timeout=10)) == {"jsonrpc": "2.0", "id": 2, "result": {"text": "after"}}


def test_a_streamable_http_server_works_as_an_upstream(tmp_path):
    port = free_port()
    station = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "e2e" / "servers" / "http_upstream.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "station.log", "wb"),
    )
    stack = Stack(tmp_path)
    try:
        wait_for(lambda: connectable_tcp(port), "the HTTP upstream")
        stack.publish_caps()
        stack.start_backend()
        upstream = {"name": "weather", "prefix": "wx", "url": f"http://127.0.0.1:{port}/mcp"}
        stack.start_gateway(overrides={"upstreams": [upstream]})

        async def scenario():
            async with Client(http_target(stack), mode="auto") as client:
                for _ in range(300):
                    names = {tool.name for tool in (await client.list_tools()).tools}
                    if "wx_temperature" in names:
                        break
                    await asyncio.sleep(0.1)
                assert {"wx_temperature", "wx_countdown", "test_echo"} <= names
                result = await client.call_tool("wx_temperature", {"city": "Lyon"})
                assert result.content[0].text == "It is 21 °C in Lyon."
                progress = []

                async def on_progress(value, total, message):
                    progress.append(value)

                lift_off = await client.call_tool("wx_countdown", {"steps": 3}, progress_callback=on_progress)
                assert lift_off.content[0].text == "lift-off"
                assert progress == [1.0, 2.0, 3.0]

        asyncio.run(scenario())
    finally:
        stack.stop()
        station.terminate()
        station.wait(10)
