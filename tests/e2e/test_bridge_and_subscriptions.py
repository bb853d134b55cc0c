"""The stdio bridge outlives the gateway it relays to (a restart between two
calls of one host session is invisible to the host; a call in flight gets a
clear error), and completion as hosts use it: the official MCP SDK."""

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
