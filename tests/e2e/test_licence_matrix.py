"""The licence matrix end to end: tier × path × transport, through the real
gateway and real clients. One gateway per tier (the bearer token `tests`
and this test's own uid, the UNIX peer, both get the tier); every row of
ROWS is sent over every transport that can carry it:

- Streamable HTTP with the official MCP SDK (2026-07-28, stateless),
- Streamable HTTP as raw JSON-RPC POSTs (the classic vocabulary),
- WebSocket (raw JSON-RPC, the seed vocabulary's transport),
- the UNIX socket (raw JSON-RPC, NUL-delimited; the UNIX peer's uid),
- the stdio bridge with the official MCP SDK (legacy, initialize),
- the stdio bridge as raw JSON lines (the classic names through it).

Paths: our services' tools, the gateway's own tool, classic direct names
(including the backend methods behind resources and prompts, so a classic
name cannot get round a tier), resources/read, prompts/get, and the tools
of a third-party upstream (Streamable HTTP, the SDK's own server). Lists
(tools, resources, prompts) are checked per tier on every MCP transport."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import select
import subprocess
import sys

import pytest
from conftest import ROOT, Stack, connectable_tcp, free_port, jsonrpc, unix_call, wait_for
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from websockets.sync.client import connect as ws_connect

TIERS = """
tiers:
  FREE:
    allow: []
  LIMITED:
    allow: ["mcp.test.echo", "test_echo", "mcp.test.resources.read", "mcp.test.prompts.get", "upstream.weather.temperature"]
    deny: ["mcp.test.noop", "test_noop"]
  ELITE:
    allow: ["*"]
"""

TIER_NAMES = ["FREE", "LIMITED", "ELITE"]

# One row a line: what it is, its kind (tool: tools/call; method: a classic
# direct call; resource: resources/read; prompt: prompts/get), the name
# (tool, method, URI or prompt), its arguments, the tiers that may.
ROWS = [
    ("our tool", "tool", "test_echo", {"text": "hi"}, {"LIMITED", "ELITE"}),
    ("our tool outside the patterns", "tool", "test_whoami", {}, {"ELITE"}),
    ("our tool denied by name", "tool", "test_noop", {}, {"ELITE"}),
    ("the gateway's own tool", "tool", "licence_check", {}, {"FREE", "LIMITED", "ELITE"}),
    ("classic name", "method", "mcp.test.echo", {"text": "hi"}, {"LIMITED", "ELITE"}),
    ("classic name denied", "method", "mcp.test.noop", {}, {"ELITE"}),
    ("classic name outside the patterns", "method", "mcp.test.whoami", {}, {"ELITE"}),
    ("classic name behind resources/read", "method", "mcp.test.resource_read", {"uri": "test://greeting"}, {"ELITE"}),
    ("classic name behind prompts/get", "method", "mcp.test.prompt_get", {"name": "greet"}, {"ELITE"}),
    ("classic licence check", "method", "mcp.licence.check", {}, {"FREE", "LIMITED", "ELITE"}),
    ("resource read", "resource", "test://greeting", None, {"LIMITED", "ELITE"}),
    ("prompt get", "prompt", "test_greet", {"who": "you"}, {"LIMITED", "ELITE"}),
    ("upstream tool", "tool", "wx_temperature", {"city": "Lyon"}, {"LIMITED", "ELITE"}),
    ("upstream tool outside the patterns", "tool", "wx_countdown", {"steps": 1}, {"ELITE"}),
]

# What each tier's lists show (ELITE: at least these).
LISTED_TOOLS = {
    "FREE": {"licence_check"},
    "LIMITED": {"licence_check", "test_echo", "wx_temperature"},
    "ELITE": {"licence_check", "test_echo", "test_whoami", "test_noop", "wx_temperature", "wx_countdown"},
}
LISTED_RESOURCES = {"FREE": set(), "LIMITED": {"test://greeting"}, "ELITE": {"test://greeting"}}
LISTED_PROMPTS = {"FREE": set(), "LIMITED": {"test_greet"}, "ELITE": {"test_greet"}}

REFUSAL_TEXT = "is not allowed for this client's tier"


def request_of(kind: str, name: str, arguments) -> tuple[str, dict]:
    if kind == "tool":
        return "tools/call", {"name": name, "arguments": arguments}
    if kind == "resource":
        return "resources/read", {"uri": name}
    if kind == "prompt":
        return "prompts/get", {"name": name, "arguments": arguments}
    return name, arguments


def outcome_of(answer: dict) -> str:
    """'allowed', 'refused' (a permission refusal in either form: -32002
    with its kind, or an isError tool result with it) or what else came."""
    error = answer.get("error")
    if error is not None:
        if error.get("code") == -32002 and (error.get("data") or {}).get("kind") == "permission_denied":
            return "refused"
        return f"error {error}"
    result = answer.get("result") or {}
    if result.get("isError"):
        if (result.get("structuredContent") or {}).get("kind") == "permission_denied":
            return "refused"
        return f"error result {result}"
    return "allowed"


class RawTransport:
    """Sends one JSON-RPC request and returns the JSON answer."""

    mcp = True

    def send(self, method: str, params, id: int) -> dict:
        raise NotImplementedError

    def lists(self) -> tuple[set, set, set]:
        tools = self.send("tools/list", {}, 9001)["result"]["tools"]
        resources = self.send("resources/list", {}, 9002)["result"]["resources"]
        prompts = self.send("prompts/list", {}, 9003)["result"]["prompts"]
        return {t["name"] for t in tools}, {r["uri"] for r in resources}, {p["name"] for p in prompts}

    def close(self):
        pass


class RawHttp(RawTransport):
    name = "Streamable HTTP, raw JSON-RPC"

    def __init__(self, stack: Stack):
        self.stack = stack

    def send(self, method, params, id):
        connection = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=30)
        try:
            headers = {**self.stack.auth, "Content-Type": "application/json", "Accept": "application/json"}
            connection.request("POST", "/mcp", body=jsonrpc(method, params, id), headers=headers)
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()


class WebSocket(RawTransport):
    name = "WebSocket"

    def __init__(self, stack: Stack):
        self.ws = ws_connect(stack.ws_url, additional_headers=stack.auth, open_timeout=10)

    def send(self, method, params, id):
        self.ws.send(jsonrpc(method, params, id))
        return json.loads(self.ws.recv(timeout=30))

    def close(self):
        self.ws.close()


class UnixSocket(RawTransport):
    name = "UNIX socket"

    def __init__(self, stack: Stack):
        self.path = stack.gateway_socket

    def send(self, method, params, id):
        return unix_call(self.path, jsonrpc(method, params, id), timeout=30)


class RawStdio(RawTransport):
    name = "stdio bridge, raw JSON lines"

    def __init__(self, stack: Stack):
        self.process = subprocess.Popen(
            stack.stdio_bridge_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )

    def send(self, method, params, id):
        self.process.stdin.write(jsonrpc(method, params, id).encode() + b"\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        assert ready, f"the stdio bridge did not answer {method}"
        line = self.process.stdout.readline()
        assert line, "the stdio bridge closed its output"
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait(10)


async def sdk_matrix(target, mode: str, tier: str) -> tuple[list[str], tuple[set, set, set]]:
    """The MCP rows through the official SDK; the failures, and the lists."""
    failures = []
    async with Client(target, mode=mode) as client:
        for what, kind, name, arguments, allowed in ROWS:
            if kind == "method":
                continue
            expected = "allowed" if tier in allowed else "refused"
            try:
                if kind == "tool":
                    result = await client.call_tool(name, arguments)
                    if result.is_error:
                        kind_of = (result.structured_content or {}).get("kind")
                        text = result.content[0].text if result.content else ""
                        got = "refused" if kind_of == "permission_denied" or REFUSAL_TEXT in text else f"error {text}"
                    else:
                        got = "allowed"
                elif kind == "resource":
                    await client.read_resource(name)
                    got = "allowed"
                else:
                    await client.get_prompt(name, arguments)
                    got = "allowed"
            except Exception as error:  # the SDK raises the JSON-RPC error
                code = getattr(getattr(error, "error", None), "code", None)
                got = "refused" if code == -32002 and REFUSAL_TEXT in str(error) else f"raised {error!r}"
            if got != expected:
                failures.append(f"{tier} {what} ({name}): expected {expected}, got {got}")
        tools = {tool.name for tool in (await client.list_tools()).tools}
        resources = {str(resource.uri) for resource in (await client.list_resources()).resources}
        prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
    return failures, (tools, resources, prompts)


def check_lists(transport: str, tier: str, lists: tuple[set, set, set]) -> list[str]:
    tools, resources, prompts = lists
    failures = []
    for what, got, expected in [
        ("tools", tools, LISTED_TOOLS[tier]),
        ("resources", resources, LISTED_RESOURCES[tier]),
        ("prompts", prompts, LISTED_PROMPTS[tier]),
    ]:
        wrong = not expected <= got if tier == "ELITE" else got != expected
        if wrong:
            failures.append(f"{transport}: {tier}'s {what} list is {sorted(got)}, expected {sorted(expected)}")
    return failures


@pytest.fixture
def weather(tmp_path):
    """The SDK's own Streamable HTTP server, as a third-party upstream."""
    port = free_port()
    station = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "e2e" / "servers" / "http_upstream.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "station.log", "wb"),
    )
    try:
        wait_for(lambda: connectable_tcp(port), "the HTTP upstream")
        yield port
    finally:
        station.terminate()
        station.wait(10)


def matrix_stack(tmp_path, weather: int, tier: str) -> Stack:
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    (stack.root / "tiers.yaml").write_text(TIERS)
    (stack.root / "lic.key").write_text("tier: ELITE\nuser_id: matrix\n")
    config = stack.write_config()
    base = json.loads(config.read_text())
    token = {**base["auth"]["tokens"][0]}
    if tier != "ELITE":
        token["tier"] = tier
    overrides = {
        "auth": {"tokens": [token]},
        "licence": {
            "key": str(stack.root / "lic.key"),
            "keys_dir": str(stack.root / "keys"),
            "tiers": str(stack.root / "tiers.yaml"),
            "allow_unsigned": True,
            "state_dir": str(stack.root / "state"),
            # The UNIX peer (this test's uid: the socket and the stdio
            # bridge) gets the tier too; ELITE is the licence's own.
            "clients": [] if tier == "ELITE" else [{"uid": os.getuid(), "tier": tier}],
        },
        "upstreams": [{"name": "weather", "prefix": "wx", "url": f"http://127.0.0.1:{weather}/mcp"}],
    }
    stack.start_gateway(overrides=overrides)
    wait_for(lambda: "upstream connected" in stack.gateway.log(), "the upstream to connect")
    return stack


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_the_matrix_tier_by_path_by_transport(tmp_path, weather: int, tier: str):
    stack = matrix_stack(tmp_path, weather, tier)
    failures: list[str] = []
    try:
        raw = [RawHttp(stack), WebSocket(stack), UnixSocket(stack), RawStdio(stack)]
        identities = {
            "Streamable HTTP, raw JSON-RPC": "token:tests",
            "WebSocket": "token:tests",
            "UNIX socket": f"uid:{os.getuid()}",
            "stdio bridge, raw JSON lines": f"uid:{os.getuid()}",
        }
        for transport in raw:
            try:
                for index, (what, kind, name, arguments, allowed) in enumerate(ROWS):
                    method, params = request_of(kind, name, arguments)
                    expected = "allowed" if tier in allowed else "refused"
                    got = outcome_of(transport.send(method, params, index + 1))
                    if got != expected:
                        failures.append(f"{transport.name}: {tier} {what} ({name}): expected {expected}, got {got}")
                check = transport.send("mcp.licence.check", {}, 999)["result"]
                if check["tier"] != tier or check["client"] != identities[transport.name]:
                    failures.append(f"{transport.name}: licence check says {check['client']} {check['tier']}")
                failures += check_lists(transport.name, tier, transport.lists())
            finally:
                transport.close()

        http_target = streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))
        argv = stack.stdio_bridge_argv()
        stdio_target = StdioServerParameters(command=argv[0], args=argv[1:])
        for name, target, mode in [
            ("Streamable HTTP, the SDK (2026-07-28)", http_target, "2026-07-28"),
            ("stdio bridge, the SDK (legacy)", stdio_target, "legacy"),
        ]:
            sdk_failures, lists = asyncio.run(sdk_matrix(target, mode, tier))
            failures += [f"{name}: {failure}" for failure in sdk_failures]
            failures += check_lists(name, tier, lists)
        # Every refusal is logged with the client, the path and the reason.
        if tier != "ELITE":
            log = stack.gateway.log()
            assert "refused" in log and "permission denied" in log and "wx_countdown" in log
    finally:
        stack.stop()
    assert not failures, f"{len(failures)} cells failed:\n" + "\n".join(failures)
