"""resources/subscribe for file:/// resources, as hosts use it: the official
MCP SDK over Streamable HTTP (a 2025-11-25 session, notifications on the
session's GET stream) and over the stdio bridge. A change to the file, by
fs_write or by replacing it on disk, sends notifications/resources/updated;
after resources/unsubscribe nothing comes; paths the file service cannot
watch are refused clearly, and the server keeps serving."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Stack
from mcp import Client, StdioServerParameters

URI = "file:///notes.md"
# Bounded waits: a notification normally comes within a fraction of a second.
WAIT_STEPS = 200
STEP = 0.05


@pytest.fixture
def fs_stack(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    (root / "notes.md").write_text("first\n")
    (root / "other.md").write_text("other\n")
    (tmp_path / "outside.md").write_text("outside\n")
    stack = Stack(tmp_path).start_fs(root)
    yield stack
    stack.stop()


def http_target(stack: Stack):
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    return streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))


def stdio_target(stack: Stack):
    argv = stack.stdio_bridge_argv()
    return StdioServerParameters(command=argv[0], args=argv[1:])


class Updates:
    """Collects the URIs of notifications/resources/updated."""

    def __init__(self):
        self.uris: list[str] = []

    async def handler(self, message):
        message = getattr(message, "root", message)
        if getattr(message, "method", None) == "notifications/resources/updated":
            self.uris.append(str(message.params.uri))

    async def wait_for(self, count: int) -> None:
        for _ in range(WAIT_STEPS):
            if len(self.uris) >= count:
                return
            await asyncio.sleep(STEP)
        raise AssertionError(f"expected {count} notifications/resources/updated, got {self.uris}")


async def scenario(stack: Stack, target):
    updates = Updates()
    async with Client(target, mode="legacy", message_handler=updates.handler) as client:
        resources = client.server_capabilities.resources
        assert resources is not None and resources.subscribe is True, resources
        await client.subscribe_resource(URI)
        # Subscribing twice is one subscription.
        await client.subscribe_resource(URI)

        written = await client.call_tool("fs_write", {"path": "/notes.md", "content": "second\n"})
        assert written.is_error is False, written
        await updates.wait_for(1)
        assert set(updates.uris) == {URI}

        # Replaced on disk by an atomic rename, as editors save.
        seen = len(updates.uris)
        temporary = stack.fs_root / ".notes.md.tmp"
        temporary.write_text("third\n")
        temporary.rename(stack.fs_root / "notes.md")
        await updates.wait_for(seen + 1)
        assert set(updates.uris) == {URI}

        # Another file's change is not this subscription's.
        seen = len(updates.uris)
        await client.call_tool("fs_write", {"path": "/other.md", "content": "changed\n"})

        await client.unsubscribe_resource(URI)
        await client.call_tool("fs_write", {"path": "/notes.md", "content": "fourth\n"})
        await asyncio.sleep(1.0)
        assert len(updates.uris) == seen, updates.uris

        for uri, expected in [
            ("file:///missing.md", "missing.md"),
            ("file:///../outside.md", "outside"),
        ]:
            with pytest.raises(Exception) as refused:
                await client.subscribe_resource(uri)
            message = str(refused.value)
            assert expected in message, message

        # The server keeps serving.
        read = await client.read_resource(URI)
        assert read.contents[0].text == "fourth\n"


def test_subscribe_over_streamable_http(fs_stack: Stack):
    asyncio.run(scenario(fs_stack, http_target(fs_stack)))


def test_subscribe_over_the_stdio_bridge(fs_stack: Stack):
    asyncio.run(scenario(fs_stack, stdio_target(fs_stack)))


def test_subscribing_needs_a_session(fs_stack: Stack):
    import json
    import urllib.request

    async def run():
        # 2026-07-28 is stateless: the method is gone (subscriptions/listen
        # replaces it), and the answer says so.
        async with Client(http_target(fs_stack), mode="2026-07-28") as client:
            with pytest.raises(Exception) as refused:
                await client.subscribe_resource(URI)
            assert getattr(refused.value, "data", None) == {"reason": "removed in protocol 2026-07-28"}, refused.value

    asyncio.run(run())
    # A 2025-11-25 request without a session has nowhere to send updates.
    headers = dict(fs_stack.auth) | {"Accept": "application/json, text/event-stream"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": URI}}
    request = urllib.request.Request(fs_stack.url, data=json.dumps(body).encode(), headers=headers | {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert "needs a session" in answer["error"]["message"], answer
    assert "initialize" in answer["error"]["message"], answer


def test_the_file_service_watches_a_bounded_number_of_files(fs_stack: Stack):
    for index in range(33):
        (fs_stack.fs_root / f"file{index:02}.md").write_text("x\n")

    async def run():
        async with Client(http_target(fs_stack), mode="legacy") as client:
            for index in range(32):
                await client.subscribe_resource(f"file:///file{index:02}.md")
            with pytest.raises(Exception) as refused:
                await client.subscribe_resource("file:///file32.md")
            message = str(refused.value)
            assert "watching as many files as it may (32)" in message, message
            # One freed, one more fits; and other calls still run.
            await client.unsubscribe_resource("file:///file00.md")
            for _ in range(WAIT_STEPS):
                try:
                    await client.subscribe_resource("file:///file32.md")
                    break
                except Exception:
                    await asyncio.sleep(STEP)
            else:
                raise AssertionError("no watch was freed by the unsubscribe")
            read = await client.read_resource("file:///file01.md")
            assert read.contents[0].text == "x\n"

    asyncio.run(run())


def test_a_subscription_survives_a_file_service_restart(fs_stack: Stack):
    import signal

    async def run():
        updates = Updates()
        async with Client(http_target(fs_stack), mode="legacy", message_handler=updates.handler) as client:
            await client.subscribe_resource(URI)
            fs_stack.backends["fs"].stop(signal.SIGKILL)
            await asyncio.to_thread(
                fs_stack.start_backend, "fs", "llmbasedos-fs", {"LLMBASEDOS_FS_ROOT": str(fs_stack.fs_root)}
            )
            # Watching again, the gateway says the file may have changed meanwhile.
            await updates.wait_for(1)
            (fs_stack.fs_root / "notes.md").write_text("after the restart\n")
            await updates.wait_for(2)
            assert set(updates.uris) == {URI}

    asyncio.run(run())
