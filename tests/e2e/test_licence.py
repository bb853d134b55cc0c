"""The licence end to end: the real gateway with a licence section, in front
of a local server speaking OpenAI's chat-completions wire format (JSON and
SSE, with `usage`). Token quotas are reserved before a call and settled
with the answer's usage; a call that cannot fit never reaches the server; a
stream is cut at the quota; usage survives a restart and a SIGKILL in the
middle of a stream; 64 concurrent calls at a quota boundary overspend by
zero. Rights and lists through the official MCP SDK."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ROOT, Stack, binary, jsonrpc, unix_call, wait_for
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

PROMPT_TOKENS = 5


class FakeOpenAI:
    """`POST /v1/chat/completions` on loopback, as OpenAI answers it.

    It answers `completion` tokens (one word per token), or `max_tokens`
    if fewer, unless `ignore_max_tokens` (a provider that runs on); with
    `stream`, one chunk per token, `delay` seconds apart, then a usage
    chunk and `[DONE]`."""

    def __init__(self, completion: int = 20, delay: float = 0.0, ignore_max_tokens: bool = False):
        self.completion = completion
        self.delay = delay
        self.ignore_max_tokens = ignore_max_tokens
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/tokenize":
                    # llama.cpp's /tokenize: one token per word.
                    answer = json.dumps({"tokens": list(range(len(body["content"].split())))}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                with fake.lock:
                    fake.requests.append(body)
                tokens = fake.completion
                if body.get("max_tokens") is not None and not fake.ignore_max_tokens:
                    tokens = min(tokens, body["max_tokens"])
                usage = {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": tokens,
                    "total_tokens": PROMPT_TOKENS + tokens,
                }
                model = body.get("model", "local-model")
                if not body.get("stream"):
                    answer = json.dumps(
                        {
                            "id": "chatcmpl-1",
                            "object": "chat.completion",
                            "created": 0,
                            "model": model,
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": " ".join(["word"] * tokens)},
                                    "finish_reason": "stop" if tokens == fake.completion else "length",
                                }
                            ],
                            "usage": usage,
                        }
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()

                def event(payload):
                    self.wfile.write(f"data: {payload}\n\n".encode())
                    self.wfile.flush()

                try:
                    for index in range(tokens):
                        chunk = {
                            "id": "chatcmpl-1",
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": model,
                            "choices": [{"index": 0, "delta": {"content": f"w{index} "}, "finish_reason": None}],
                        }
                        event(json.dumps(chunk))
                        time.sleep(fake.delay)
                    last = {
                        "id": "chatcmpl-1",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    }
                    event(json.dumps(last))
                    event(json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}))
                    event("[DONE]")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


TIERS = """
tiers:
  FREE:
    allow: []
  PRO:
    allow: ["*"]
    deny: ["mcp.test.noop", "test_noop"]
    llm:
      access: true
      models: ["local-*"]
      tokens_per_request: 400
      tokens_per_day: {day}
      tokens_per_month: 100000
"""


def licensed(
    stack: Stack, fake: FakeOpenAI, day: int = 1000, extra: dict | None = None, tiers: str | None = None
) -> dict:
    """The gateway's overrides: an unsigned PRO licence (allowed), the
    tiers above, the ledger in the stack's state directory."""
    (stack.root / "tiers.yaml").write_text(tiers or TIERS.format(day=day))
    (stack.root / "lic.key").write_text("tier: PRO\nuser_id: e2e\n")
    overrides = {
        "licence": {
            "key": str(stack.root / "lic.key"),
            "keys_dir": str(stack.root / "keys"),
            "tiers": str(stack.root / "tiers.yaml"),
            "allow_unsigned": True,
            "state_dir": str(stack.root / "state"),
            "time_zone": "Europe/Paris",
        },
        "llm": {"url": fake.url, "model": "local-model", "timeout_secs": 30},
    }
    overrides.update(extra or {})
    return overrides


def post(stack: Stack, method: str, params=None, id=1, timeout: float = 30.0) -> tuple[int, dict, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=timeout)
    try:
        connection.request(
            "POST",
            "/mcp",
            body=jsonrpc(method, params, id),
            headers={**stack.auth, "Content-Type": "application/json", "Accept": "application/json"},
        )
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def chat(max_tokens=None, stream=False, content="hi"):
    params = {"messages": [{"role": "user", "content": content}], "stream": stream}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    return params


def usage(stack: Stack) -> dict:
    _, _, answer = post(stack, "mcp.licence.check")
    return answer["result"]


@pytest.fixture
def fake():
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def llm_stack(tmp_path: Path):
    stack = Stack(tmp_path)
    stack.publish_caps()
    stack.start_backend()
    yield stack
    stack.stop()


def test_quotas_reserve_settle_and_refuse_before_the_provider(llm_stack: Stack, fake: FakeOpenAI):
    stack = llm_stack
    stack.start_gateway(overrides=licensed(stack, fake, day=300))
    _, _, answer = post(stack, "mcp.llm.chat", chat(max_tokens=50))
    assert answer["result"]["usage"]["total_tokens"] == PROMPT_TOKENS + 20, answer
    check = usage(stack)
    assert check["tier"] == "PRO" and check["standing"] == "unsigned_allowed", check
    assert check["usage"]["day"] == PROMPT_TOKENS + 20 and check["usage"]["in_flight"] == 0, check
    # More than a request may take: refused, and the provider never asked.
    before = fake.count()
    _, _, answer = post(stack, "mcp.llm.chat", chat(max_tokens=500))
    assert answer["error"]["code"] == -32003 and answer["error"]["data"]["kind"] == "quota_exceeded", answer
    # A model outside the tier's list.
    _, _, answer = post(stack, "mcp.llm.chat", {**chat(max_tokens=5), "model": "gpt-4"})
    assert answer["error"]["code"] == -32004, answer
    # More than the day leaves (275 left; the prompt is counted high).
    _, headers, answer = post(stack, "mcp.llm.chat", chat(max_tokens=280))
    assert answer["error"]["code"] == -32003, answer
    assert answer["error"]["data"]["period"] == "day", answer
    assert answer["error"]["data"]["retry_after_ms"] > 0
    assert int(headers["retry-after"]) > 0
    assert fake.count() == before
    # Without max_tokens, the provider is told what remains.
    _, _, answer = post(stack, "mcp.llm.chat", chat())
    assert "error" not in answer, answer
    asked = fake.requests[-1]["max_tokens"]
    assert 0 < asked <= 300 - (PROMPT_TOKENS + 20), fake.requests[-1]


def test_a_stream_is_cut_at_the_quota(llm_stack: Stack):
    fake = FakeOpenAI(completion=200, ignore_max_tokens=True)
    try:
        stack = llm_stack
        stack.start_gateway(overrides=licensed(stack, fake, day=1000))
        _, _, answer = post(stack, "mcp.llm.chat", chat(max_tokens=30, stream=True))
        result = answer["result"]
        assert result["finish_reason"] == "quota", result
        assert "quota" in result["cut"]
        assert result["message"]["content"].count("w") == 30, result
        # Charged what was streamed (and the prompt), not the provider's 200.
        day = usage(stack)["usage"]["day"]
        assert 30 < day < 100, day
    finally:
        fake.close()


def test_usage_survives_a_restart_and_a_sigkill_mid_stream(llm_stack: Stack):
    fake = FakeOpenAI(completion=100, delay=0.1)
    try:
        stack = llm_stack
        overrides = licensed(stack, fake, day=5000)
        stack.start_gateway(overrides=overrides)
        post(stack, "mcp.llm.chat", chat(max_tokens=10))
        settled = usage(stack)["usage"]["day"]
        assert settled == PROMPT_TOKENS + 10
        stack.gateway.stop()
        stack.start_gateway(overrides=overrides)
        assert usage(stack)["usage"]["day"] == settled, "a restart keeps the usage"
        # A stream in flight when the gateway is killed.
        streaming = threading.Thread(
            target=lambda: _ignore_errors(lambda: post(stack, "mcp.llm.chat", chat(max_tokens=100, stream=True))),
            daemon=True,
        )
        before = fake.count()
        streaming.start()
        wait_for(lambda: fake.count() > before, "the stream to start")
        time.sleep(0.3)
        stack.gateway.stop(signal.SIGKILL)
        streaming.join(10)
        stack.start_gateway(overrides=overrides)
        after = usage(stack)["usage"]
        # The whole reservation (prompt counted high + 100) stays charged.
        assert after["day"] >= settled + 100 and after["in_flight"] == 0, after
    finally:
        fake.close()


def _ignore_errors(call):
    try:
        call()
    except Exception:
        pass


def test_sixty_four_concurrent_calls_at_the_boundary_overspend_by_zero(llm_stack: Stack, fake: FakeOpenAI):
    stack = llm_stack
    quota = 1000
    stack.start_gateway(overrides=licensed(stack, fake, day=quota))

    def one(index: int) -> dict:
        return post(stack, "mcp.llm.chat", chat(max_tokens=40), id=index, timeout=60)[2]

    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(one, range(64)))
    granted = [answer for answer in answers if "result" in answer]
    refused = [answer for answer in answers if answer.get("error", {}).get("code") == -32003]
    assert len(granted) + len(refused) == 64, [a for a in answers if a not in granted and a not in refused]
    spent = sum(answer["result"]["usage"]["total_tokens"] for answer in granted)
    day = usage(stack)["usage"]
    assert day["day"] == spent and day["in_flight"] == 0, (day, spent)
    assert spent <= quota, spent
    assert fake.count() == len(granted)
    assert refused, "the boundary was reached"


def test_rights_and_lists_through_the_sdk(llm_stack: Stack, fake: FakeOpenAI):
    stack = llm_stack
    stack.start_gateway(overrides=licensed(stack, fake))

    async def scenario():
        target = streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))
        async with Client(target, mode="2026-07-28") as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"licence_check", "llm_chat", "test_echo"} <= tools
            assert "test_noop" not in tools
            refused = await client.call_tool("test_noop", {})
            assert refused.is_error and refused.structured_content["kind"] == "permission_denied"
            answer = await client.call_tool(
                "llm_chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
            )
            assert not answer.is_error, answer
            assert answer.structured_content["usage"]["total_tokens"] == PROMPT_TOKENS + 8
            check = await client.call_tool("licence_check", {})
            assert check.structured_content["usage"]["day"] == PROMPT_TOKENS + 8

    asyncio.run(scenario())
    log = stack.gateway.log()
    assert "refused" in log and "test_noop" in log and "permission denied" in log


def test_rates_per_client_over_http_and_the_unix_socket(llm_stack: Stack, fake: FakeOpenAI):
    """Three requests a window per client, then -32001 with a retry hint
    (Retry-After on HTTP); the UNIX peer (another client) has its own
    bucket; the UNIX socket's raw path is checked too."""
    stack = llm_stack
    tiers = "tiers:\n  FREE: {allow: []}\n  PRO:\n    allow: ['mcp.test.echo', 'test_echo']\n    requests: 3\n    window_secs: 3600\n"
    stack.start_gateway(overrides=licensed(stack, fake, tiers=tiers))
    echo = {"text": "x"}
    for index in range(3):
        _, _, answer = post(stack, "mcp.test.echo", echo, id=index)
        assert answer.get("result") == {"text": "x"}, answer
    _, headers, answer = post(stack, "mcp.test.echo", echo, id=9)
    assert answer["error"]["code"] == -32001 and answer["error"]["data"]["kind"] == "rate_limited", answer
    assert 1_000_000 < answer["error"]["data"]["retry_after_ms"] <= 1_200_000
    assert 1000 < int(headers["retry-after"]) <= 1200
    # The UNIX peer is another client: its bucket is full; its raw path
    # refuses what the tier does not allow.
    socket_path = stack.gateway_socket
    assert unix_call(socket_path, jsonrpc("mcp.test.echo", echo))["result"] == {"text": "x"}
    denied = unix_call(socket_path, jsonrpc("mcp.test.noop", {}, id=2))
    assert denied["error"]["code"] == -32002, denied
    log = stack.gateway.log()
    assert "rate limited" in log and "mcp.test.noop" in log


def test_the_providers_tokenizer_counts_the_prompt(llm_stack: Stack, fake: FakeOpenAI):
    """With llm.tokenize_url (llama.cpp's /tokenize), the prompt is counted
    by the provider: 40 words are 40 tokens where the estimate (one per
    byte) would be 200 and refuse the call."""
    stack = llm_stack
    overrides = licensed(stack, fake, day=100)
    overrides["llm"]["tokenize_url"] = f"http://127.0.0.1:{fake.port}/tokenize"
    stack.start_gateway(overrides=overrides)
    prompt = " ".join(["word"] * 40)
    _, _, answer = post(stack, "mcp.llm.chat", chat(max_tokens=20, content=prompt))
    assert "result" in answer, answer
    # 3 + 40 words + 4 + 4 ("user") reserved with 20: 71 of 100; settled 25.
    assert usage(stack)["usage"]["day"] == PROMPT_TOKENS + 20


def test_a_fresh_install_is_free_says_how_to_get_further_and_a_licence_installed_applies_at_once(llm_stack: Stack):
    """The packaged default: the shipped tiers, a licence section, no
    lic.key: FREE (fs reads only). The refusal and `llmbasedos status` /
    `llmbasedos licence status` say how to get further. A licence
    installed and SIGHUP (or the file's change) upgrades the running
    gateway's clients without a restart; a broken new file keeps it."""
    stack = llm_stack
    key = stack.root / "lic.key"
    overrides = {
        "licence": {
            "key": str(key),
            "keys_dir": str(stack.root / "keys"),
            "tiers": str(ROOT / "config" / "licence_tiers.yaml"),
            "allow_unsigned": True,
            "state_dir": str(stack.root / "state"),
        }
    }
    stack.start_gateway(overrides=overrides)
    _, _, answer = post(stack, "mcp.test.echo", {"text": "x"})
    assert answer["error"]["code"] == -32002, answer
    message = answer["error"]["message"]
    assert f"install a licence: put a signed lic.key at {key}" in message, message
    assert "remove the `licence:` section from gateway.yaml" in message, message
    assert answer["error"]["data"]["how_to_get_further"] in message
    check = usage(stack)
    assert check["tier"] == "FREE" and check["standing"] == "missing", check
    for argv in (["status"], ["licence", "status"]):
        shown = subprocess.run(
            [str(binary("llmbasedos")), "--runtime-dir", str(stack.root), *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown
        assert "licence: FREE" in shown.stdout, shown.stdout
        assert "to get further:" in shown.stdout and "install a licence" in shown.stdout, shown.stdout
        assert "remove the `licence:` section" in shown.stdout, shown.stdout

    # A licence installed (unsigned, allowed here), then SIGHUP.
    aside = stack.root / "lic.key.new"
    aside.write_text("tier: ELITE\nuser_id: e2e\n")
    aside.rename(key)
    os.kill(stack.gateway.pid, signal.SIGHUP)
    wait_for(lambda: usage(stack)["tier"] == "ELITE", "the licence to be read again")
    _, _, answer = post(stack, "mcp.test.echo", {"text": "x"})
    assert answer.get("result") == {"text": "x"}, answer
    assert "SIGHUP: reading the licence again" in stack.gateway.log()

    # A broken new file: ELITE stays, logged, and the check says why.
    aside.write_text("tier: [this is not\n")
    aside.rename(key)
    os.kill(stack.gateway.pid, signal.SIGHUP)
    wait_for(lambda: "licence reload failed" in stack.gateway.log(), "the broken licence to be judged")
    check = usage(stack)
    assert check["tier"] == "ELITE" and "stays in force" in check["reload_error"], check
    assert stack.gateway.popen.poll() is None, "SIGHUP does not end the gateway"
