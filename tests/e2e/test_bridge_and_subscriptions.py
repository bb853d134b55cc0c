"""The stdio bridge outlives the gateway it relays to (a restart between two
calls of one host session is invisible to the host; a call in flight gets a
clear error), and completion of resource-template and prompt arguments, as
hosts use them: the official MCP SDK."""

from __future__ import annotations

import asyncio
import signal

import pytest
from conftest import Stack, jsonrpc, unix_call
from mcp import Client, StdioServerParameters


def stdio_target(stack: Stack):
    argv = stack.stdio_bridge_argv()
    return StdioServerParameters(command=argv[0], args=argv[1:])


def restart_gateway(stack: Stack, sig: int = signal.SIGKILL):
    """Kills the gateway by its pid and starts a new one on the same socket."""
    assert stack.gateway is not None
    stack.gateway.stop(sig)
    stack.start_gateway()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_the_bridge_survives_a_gateway_restart_between_two_calls(stack: Stack, mode: str):
    async def run():
        async with Client(stdio_target(stack), mode=mode) as client:
            first = await client.call_tool("test_echo", {"text": "before"})
            assert first.structured_content == {"text": "before"}
            await asyncio.to_thread(restart_gateway, stack)
            second = await client.call_tool("test_echo", {"text": "after"})
            assert second.is_error is False, second
            assert second.structured_content == {"text": "after"}
            # And the session goes on as usual.
            tools = await client.list_tools()
            assert "test_echo" in {tool.name for tool in tools.tools}

    asyncio.run(run())


def test_a_call_in_flight_during_a_restart_gets_a_clear_error(stack: Stack):
    async def run():
        async with Client(stdio_target(stack), mode="legacy") as client:
            in_flight = asyncio.create_task(client.call_tool("test_sleep", {"ms": 20000}))
            # The call is in flight once the test server counts it started.
            for _ in range(500):
                stats = await asyncio.to_thread(unix_call, stack.gateway_socket, jsonrpc("mcp.test.stats"))
                if stats["result"]["started"] >= 1:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the sleep call never reached the test server")
            await asyncio.to_thread(restart_gateway, stack)
            with pytest.raises(Exception) as failure:
                await asyncio.wait_for(in_flight, 30)
            message = str(failure.value)
            assert "gateway restarted" in message, message
            assert "may or may not have taken effect" in message, message
            after = await client.call_tool("test_echo", {"text": "next"})
            assert after.structured_content == {"text": "next"}

    asyncio.run(run())


@pytest.fixture
def fs_stack(tmp_path):
    root = tmp_path / "files"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "todo.md").write_text("todo\n")
    (root / "novel.txt").write_text("once\n")
    (root / "other.txt").write_text("other\n")
    (root / ".nosy").write_text("hidden\n")
    (root / "many").mkdir()
    for index in range(150):
        (root / "many" / f"item{index:03}.txt").write_text("x\n")
    stack = Stack(tmp_path).start_fs(root)
    yield stack
    stack.stop()


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_completion_completes_file_paths_one_level_at_a_time(fs_stack: Stack, mode: str):
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp_types import ResourceTemplateReference

    target = streamable_http_client(fs_stack.url, http_client=create_mcp_http_client(headers=fs_stack.auth))
    template = ResourceTemplateReference(type="ref/resource", uri="file:///{+path}")

    async def run():
        async with Client(target, mode=mode) as client:
            top = await client.complete(template, {"name": "path", "value": "/no"})
            assert top.completion.values == ["/notes/", "/novel.txt"]
            assert not top.completion.has_more
            inner = await client.complete(template, {"name": "path", "value": "/notes/"})
            assert inner.completion.values == ["/notes/todo.md"]
            relative = await client.complete(template, {"name": "path", "value": "notes/t"})
            assert relative.completion.values == ["notes/todo.md"]
            hidden = await client.complete(template, {"name": "path", "value": "/.n"})
            assert hidden.completion.values == ["/.nosy"]
            missing = await client.complete(template, {"name": "path", "value": "/nowhere/x"})
            assert missing.completion.values == []
            cut = await client.complete(template, {"name": "path", "value": "/many/item"})
            assert len(cut.completion.values) == 100
            assert cut.completion.values[0] == "/many/item000.txt"
            assert cut.completion.has_more is True
            assert cut.completion.total == 150

    asyncio.run(run())


def test_completion_completes_prompt_arguments(stack: Stack):
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp_types import PromptReference

    target = streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))

    async def run():
        async with Client(target, mode="legacy") as client:
            greet = PromptReference(type="ref/prompt", name="test_greet")
            names = await client.complete(greet, {"name": "who", "value": "A"})
            assert names.completion.values == ["Ada", "Alan"]
            other = await client.complete(greet, {"name": "nobody", "value": ""})
            assert other.completion.values == []
            with pytest.raises(Exception) as unknown:
                await client.complete(PromptReference(type="ref/prompt", name="test_nothing"), {"name": "x", "value": ""})
            assert "no such prompt" in str(unknown.value)

    asyncio.run(run())
