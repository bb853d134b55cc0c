"""The agent server through the gateway, as a host uses it (the official MCP
SDK): workflows that read a file with the real fs server, ask the language
model (a local server speaking the OpenAI chat-completions wire format,
behind the gateway's mcp.llm.chat), write the answer back and post to a
real local HTTP server; control flow, persistence across SIGKILL, bad
input, template payloads and secrets."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Stack
from servers.dockerd import IMAGE, dockerd  # noqa: F401
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

SECRET = "s3cr3t-webhook-token-4f1d"


class Web:
    """One local HTTP server playing both parts: the OpenAI-compatible API
    (POST /v1/chat/completions) and the webhooks the workflows post to."""

    def __init__(self):
        self.posts: list[dict] = []
        self.llm_requests: list[dict] = []
        self.counters: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(2, timeout=10)
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                path = self.path
                with web.lock:
                    web.counters[path] = web.counters.get(path, 0) + 1
                    count = web.counters[path]
                if path == "/v1/chat/completions":
                    web.llm_requests.append(body)
                    prompt = body["messages"][-1]["content"]
                    content = "SUMMARY: " + prompt.replace("\n", " ")[-80:]
                    if "json please" in json.dumps(body["messages"]):
                        content = '{"score": 7}' if count > 1 else "not json at all"
                    self.answer(200, {
                        "id": "c1", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    })
                elif path == "/flaky":
                    # Fails twice with 503, then answers.
                    if count < 3:
                        self.answer(503, {"error": "try again"})
                    else:
                        self.answer(200, {"ok": True, "attempt": count})
                elif path == "/barrier":
                    # Answers only once two requests are here at the same time.
                    try:
                        web.barrier.wait()
                        self.answer(200, {"met": True})
                    except threading.BrokenBarrierError:
                        self.answer(500, {"met": False})
                elif path == "/concurrency":
                    with web.lock:
                        web.in_flight += 1
                        web.max_in_flight = max(web.max_in_flight, web.in_flight)
                    time.sleep(0.2)
                    with web.lock:
                        web.in_flight -= 1
                    self.answer(200, {"item": body})
                elif path == "/headers":
                    self.answer(200, {"headers": dict(self.headers), "echo": f"you sent {self.headers.get('X-Api-Key')}"})
                elif path == "/fail":
                    self.answer(500, {"error": "always"})
                else:
                    web.posts.append({"path": path, "body": body, "headers": dict(self.headers)})
                    self.answer(200, {"received": True})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.server.shutdown()


WORKFLOWS = {
    "summarize": """
id: summarize
description: Read a file, ask the model, write the answer back, post it.
input_schema:
  type: object
  properties: {path: {type: string}, hook: {type: string}}
  required: [path, hook]
  additionalProperties: false
steps:
  - id: read
    mcp: {method: mcp.fs.read, params: {path: "{{ inputs.path }}"}}
  - id: ask
    llm: {prompt: "Summarize: {{ steps.read.content }}"}
  - id: write
    mcp:
      method: mcp.fs.write
      params: {path: "{{ inputs.path }}.summary", content: "{{ steps.ask.content }}", mode: overwrite}
  - id: post
    http: {url: "{{ inputs.hook }}", json: {summary: "{{ steps.ask.content }}", original: "{{ steps.read.content }}"}}
outputs:
  summary: "{{ steps.ask.content }}"
""",
    "parallel": """
id: parallel
steps:
  - id: left
    needs: []
    http: {url: "{{ inputs.base }}/barrier", json: {side: left}}
  - id: right
    needs: []
    http: {url: "{{ inputs.base }}/barrier", json: {side: right}}
  - id: join
    needs: [left, right]
    log: "both met: {{ steps.left.json.met and steps.right.json.met }}"
""",
    "loop": """
id: loop
steps:
  - id: each
    for_each: "{{ inputs.items }}"
    max_parallel: 2
    http: {url: "{{ inputs.base }}/concurrency", json: {n: "{{ item }}"}}
  - id: skipped
    when: "inputs.items | length > 100"
    log: never
  - id: after
    log: "{{ steps.each | length }} done, skipped is {{ steps.skipped }}"
""",
    "retry": """
id: retry
steps:
  - id: flaky
    http: {url: "{{ inputs.base }}/flaky", json: {}}
    retry: {attempts: 5, backoff: 50ms, retry_if: "error.kind == 'http_status' and error.status == 503"}
  - id: never-retried
    http: {url: "{{ inputs.base }}/fail", json: {}}
    retry: {attempts: 5, backoff: 10ms, retry_if: "error.status == 503"}
    on_error:
      handler:
        set: {handled: "{{ error.kind }} {{ error.status }}"}
  - id: continued
    http: {url: "{{ inputs.base }}/fail", json: {}}
    on_error: continue
  - id: last
    log: "handled={{ steps['never-retried'].handled }}"
""",
    "approve": """
id: approve
steps:
  - id: first
    http: {url: "{{ inputs.base }}/first", json: {}}
  - id: gate
    approval: {message: "ship it?", timeout: 60s}
  - id: after
    http: {url: "{{ inputs.base }}/after", json: {}}
""",
    "payload": """
id: payload
steps:
  - id: read
    mcp: {method: mcp.fs.read, params: {path: /payload.txt}}
  - id: post
    http:
      url: "{{ inputs.base }}/payload"
      json: {input: "{{ inputs.text }}", file: "{{ steps.read.content }}", mixed: "a {{ inputs.text }} b"}
""",
    "secret": """
id: secret
steps:
  - id: call
    http:
      url: "{{ inputs.base }}/headers"
      json: {}
      auth: {credential: hook, header: X-Api-Key}
""",
    "docker": """
id: docker
steps:
  - id: box
    docker: {image: busybox, command: [echo, hi]}
    on_error: continue
  - id: after
    log: "docker step error: {{ steps.box }}"
""",
    "schema": """
id: schema
steps:
  - id: rate
    llm:
      prompt: "Rate it, json please"
      schema: {type: object, properties: {score: {type: integer}}, required: [score]}
      retries: 2
""",
}


@pytest.fixture
def agent(tmp_path: Path):
    web = Web()
    root = tmp_path / "files"
    root.mkdir()
    (root / "doc.txt").write_text("The cat sat on the mat.\n")
    (root / "payload.txt").write_text("file says {{ inputs.text }} and {% for x in range(3) %}{{ x }}{% endfor %}")
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    for name, text in WORKFLOWS.items():
        (workflows / f"{name}.yaml").write_text(text)
    (workflows / "broken.yaml").write_text("id: broken\nsteps:\n  - id: a\n    log: [unclosed\n")
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    config = tmp_path / "agent.yaml"
    # No Docker here (the Docker test restarts the agent with its own daemon).
    config.write_text(json.dumps({"http": {"credentials": {"hook": str(secret_file)}},
                                  "docker": {"socket": str(tmp_path / "no-docker.sock")}}))
    stack = Stack(tmp_path)
    stack.agent_config = config
    stack.publish_caps("fs", "llmbasedos-fs")
    stack.start_backend("fs", "llmbasedos-fs", env={"LLMBASEDOS_FS_ROOT": str(root)})
    stack.agent_env = {
        "LLMBASEDOS_AGENT_CONFIG": str(config),
        "LLMBASEDOS_AGENT_WORKFLOWS": str(workflows),
        "LLMBASEDOS_AGENT_STATE_DIR": str(tmp_path / "agent-state"),
        "LLMBASEDOS_AGENT_GATEWAY_SOCKET": str(stack.gateway_socket),
    }
    stack.publish_caps("agent", "llmbasedos-agent")
    stack.start_backend("agent", "llmbasedos-agent", env=stack.agent_env)
    stack.start_gateway(overrides={"llm": {"url": web.url("/v1"), "model": "test-model"}, "limits": {"backend_timeout_secs": 30}})
    stack.fs_root, stack.web, stack.workflows = root, web, workflows
    yield stack
    stack.stop()
    web.stop()


def target(stack: Stack):
    return streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))


async def call(client, tool: str, arguments: dict, **kwargs) -> dict:
    result = await client.call_tool(tool, arguments, **kwargs)
    assert result.is_error is False, result.content[0].text
    return result.structured_content


async def tool_error(client, tool: str, arguments: dict) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error is True, result
    return result.content[0].text


async def finished(client, execution_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await call(client, "agent_getWorkflowStatus", {"execution_id": execution_id})
        if status["status"] not in ("running", "waiting_approval"):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"execution {execution_id} did not finish: {status}")


async def status_is(client, execution_id: str, wanted: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await call(client, "agent_getWorkflowStatus", {"execution_id": execution_id})
        if status["status"] == wanted:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"execution {execution_id} never became {wanted}: {status}")


def steps_of(status: dict) -> dict:
    return {step["id"]: step["status"] for step in status["steps"]}


def test_a_workflow_reads_asks_writes_and_posts(agent: Stack):
    web = agent.web

    async def scenario():
        async with Client(target(agent)) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"agent_runWorkflow", "agent_getWorkflowStatus", "agent_getWorkflowLogs"} <= tools
            inputs = {"path": "/doc.txt", "hook": web.url("/hook")}
            started = await call(client, "agent_runWorkflow", {"id": "summarize", "inputs": inputs})
            status = await finished(client, started["execution_id"])
            assert status["status"] == "succeeded", status
            assert steps_of(status) == {"read": "succeeded", "ask": "succeeded", "write": "succeeded", "post": "succeeded"}
            assert status["outputs"]["summary"].startswith("SUMMARY: ")
            assert "The cat sat on the mat." in status["outputs"]["summary"]

            logs = await call(client, "agent_getWorkflowLogs", {"execution_id": started["execution_id"]})
            by_id = {step["id"]: step for step in logs["steps"]}
            assert by_id["read"]["input"] == {"method": "mcp.fs.read", "params": {"path": "/doc.txt"}}
            assert "The cat" in by_id["read"]["output"]["content"]
            assert by_id["ask"]["output"]["untrusted"] is True
            assert by_id["post"]["output"]["status"] == 200
            assert all(step["attempts"] == 1 and step["duration_ms"] >= 0 for step in logs["steps"])

            # The same workflow waited for, with a progress notification per step.
            progress: list[tuple[float, str]] = []

            async def on_progress(value, total, message):
                progress.append((value, message))

            waited = await call(client, "agent_runWorkflow", {"id": "summarize", "inputs": inputs, "wait": True},
                                progress_callback=on_progress)
            assert waited["status"] == "succeeded"
            messages = [message for _, message in progress]
            assert messages[0].startswith("execution ")
            for step in ("read", "ask", "write", "post"):
                assert f"step {step}: succeeded" in messages, messages

            executions = await call(client, "agent_listExecutions", {"workflow": "summarize"})
            assert len(executions["executions"]) == 2

    asyncio.run(scenario())
    summary = (agent.fs_root / "doc.txt.summary").read_text()
    assert summary.startswith("SUMMARY: ") and "cat sat" in summary
    assert len(web.posts) == 2 and web.posts[0]["body"]["summary"] == summary
    assert web.llm_requests[0]["messages"][-1]["content"] == "Summarize: The cat sat on the mat.\n"


def test_template_payloads_in_inputs_and_step_outputs_are_not_evaluated(agent: Stack):
    payload = "{{ 7 * 7 }}{% for i in range(99999999) %}x{% endfor %}{{ inputs }}"

    async def scenario():
        async with Client(target(agent)) as client:
            started = await call(client, "agent_runWorkflow",
                                 {"id": "payload", "inputs": {"base": agent.web.url(""), "text": payload}})
            status = await finished(client, started["execution_id"])
            assert status["status"] == "succeeded", status

    asyncio.run(scenario())
    body = agent.web.posts[0]["body"]
    assert body["input"] == payload
    assert body["mixed"] == f"a {payload} b"
    assert body["file"] == (agent.fs_root / "payload.txt").read_text()
    assert "49" not in json.dumps(body)


def test_needs_run_independent_steps_in_parallel(agent: Stack):
    async def scenario():
        async with Client(target(agent)) as client:
            started = await call(client, "agent_runWorkflow", {"id": "parallel", "inputs": {"base": agent.web.url("")}})
            status = await finished(client, started["execution_id"])
            # Each barrier request answers only while the other one waits too.
            assert status["status"] == "succeeded", status
            logs = await call(client, "agent_getWorkflowLogs", {"execution_id": started["execution_id"], "step": "join"})
            assert logs["steps"][0]["output"] == "both met: True"

    asyncio.run(scenario())


def test_for_each_runs_at_most_max_parallel_and_when_skips(agent: Stack):
    async def scenario():
        async with Client(target(agent)) as client:
            started = await call(client, "agent_runWorkflow",
                                 {"id": "loop", "inputs": {"base": agent.web.url(""), "items": [1, 2, 3, 4, 5]}})
            status = await finished(client, started["execution_id"])
            assert status["status"] == "succeeded", status
            assert steps_of(status)["skipped"] == "skipped"
            logs = await call(client, "agent_getWorkflowLogs", {"execution_id": started["execution_id"]})
            by_id = {step["id"]: step for step in logs["steps"]}
            assert [item["json"]["item"]["n"] for item in by_id["each"]["output"]] == [1, 2, 3, 4, 5]
            assert by_id["after"]["output"] == "5 done, skipped is None"

    asyncio.run(scenario())
    assert agent.web.max_in_flight == 2


def test_retry_if_succeeds_on_the_third_attempt_and_on_error_handles(agent: Stack):
    async def scenario():
        async with Client(target(agent)) as client:
            started = await call(client, "agent_runWorkflow", {"id": "retry", "inputs": {"base": agent.web.url("")}})
            status = await finished(client, started["execution_id"])
            assert status["status"] == "succeeded", status
            steps = {step["id"]: step for step in status["steps"]}
            assert steps["flaky"]["status"] == "succeeded" and steps["flaky"]["attempts"] == 3
            # retry_if said no: one attempt, then the handler answered.
            assert steps["never-retried"]["status"] == "handled" and steps["never-retried"]["attempts"] == 2
            assert steps["continued"]["status"] == "failed"
            assert steps["continued"]["error"]["kind"] == "http_status"
            logs = await call(client, "agent_getWorkflowLogs", {"execution_id": started["execution_id"], "step": "last"})
            assert logs["steps"][0]["output"] == "handled=http_status 500"

    asyncio.run(scenario())
    assert agent.web.counters["/flaky"] == 3


def test_approval_pauses_until_approved_and_stop_ends_a_run(agent: Stack):
    async def scenario():
        async with Client(target(agent)) as client:
            base = {"base": agent.web.url("")}
            started = await call(client, "agent_runWorkflow", {"id": "approve", "inputs": base})
            execution = started["execution_id"]
            status = await status_is(client, execution, "waiting_approval")
            assert steps_of(status) == {"first": "succeeded", "gate": "waiting_approval", "after": "pending"}
            assert "/after" not in agent.web.counters
            error = await tool_error(client, "agent_approve", {"execution_id": execution, "step": "first"})
            assert "gate" in error
            await call(client, "agent_approve", {"execution_id": execution, "step": "gate"})
            status = await finished(client, execution)
            assert status["status"] == "succeeded", status
            assert agent.web.counters["/after"] == 1

            second = await call(client, "agent_runWorkflow", {"id": "approve", "inputs": base})
            await status_is(client, second["execution_id"], "waiting_approval")
            stopped = await call(client, "agent_stopWorkflow", {"execution_id": second["execution_id"]})
            assert stopped["status"] == "stopped"
            status = await call(client, "agent_getWorkflowStatus", {"execution_id": second["execution_id"]})
            assert steps_of(status)["gate"] == "cancelled" and steps_of(status)["after"] == "pending"

            third = await call(client, "agent_runWorkflow", {"id": "approve", "inputs": base})
            await status_is(client, third["execution_id"], "waiting_approval")
            await call(client, "agent_approve", {"execution_id": third["execution_id"], "step": "gate", "approved": False})
            status = await finished(client, third["execution_id"])
            assert status["status"] == "failed" and status["error"]["kind"] == "rejected"

    asyncio.run(scenario())
    assert agent.web.counters["/after"] == 1


def test_a_run_killed_with_the_server_is_interrupted_then_resumed(agent: Stack):
    base = {"base": agent.web.url("")}

    async def start() -> str:
        async with Client(target(agent)) as client:
            started = await call(client, "agent_runWorkflow", {"id": "approve", "inputs": base})
            await status_is(client, started["execution_id"], "waiting_approval")
            return started["execution_id"]

    execution = asyncio.run(start())
    agent.backends["agent"].stop(signal.SIGKILL)
    agent.start_backend("agent", "llmbasedos-agent", env=agent.agent_env)

    async def resume():
        async with Client(target(agent)) as client:
            status = await call(client, "agent_getWorkflowStatus", {"execution_id": execution})
            assert status["status"] == "interrupted", status
            assert steps_of(status)["first"] == "succeeded"
            assert status["error"]["kind"] == "interrupted"
            await call(client, "agent_resumeWorkflow", {"execution_id": execution})
            await status_is(client, execution, "waiting_approval")
            await call(client, "agent_approve", {"execution_id": execution, "step": "gate"})
            status = await finished(client, execution)
            assert status["status"] == "succeeded", status

    asyncio.run(resume())
    # The finished first step was not run again.
    assert agent.web.counters["/first"] == 1
    assert agent.web.counters["/after"] == 1


def test_bad_input_is_a_clear_error_and_the_other_workflows_keep_working(agent: Stack):
    async def scenario():
        async with Client(target(agent)) as client:
            listed = await call(client, "agent_listWorkflows", {})
            assert "summarize" in {w["id"] for w in listed["workflows"]}
            [broken] = listed["errors"]
            assert broken["file"].endswith("broken.yaml") and broken["line"] == 4, broken

            cases = {
                "id: w\nsteps:\n  - id: a\n    frobnicate: {}\n": ("frobnicate", 4),
                "id: w\nsteps:\n  - id: a\n    needs: [b]\n    log: a\n  - id: b\n    needs: [a]\n    log: b\n": ("cycle", 3),
                "id: w\nsteps:\n  - id: a\n    log: \"{{ inputs.x \"\n": ("template error", 3),
                "id: w\nsteps: [\n": ("", None),
            }
            for yaml, (problem, line) in cases.items():
                result = await call(client, "agent_validateWorkflow", {"yaml": yaml})
                assert result["valid"] is False
                assert problem in result["error"]["problem"], result
                if line is not None:
                    assert result["error"]["line"] == line, result
                else:
                    assert result["error"]["line"] is not None, result
                assert result["error"]["fix"]
            ok = await call(client, "agent_validateWorkflow", {"yaml": WORKFLOWS["parallel"]})
            assert ok["valid"] is True and [s["id"] for s in ok["steps"]] == ["left", "right", "join"]

            error = await tool_error(client, "agent_runWorkflow", {"id": "summarize", "inputs": {"path": 5}})
            assert "input_schema" in error and "inputs/path" in error and "hook" in error, error
            error = await tool_error(client, "agent_runWorkflow", {"id": "broken"})
            assert "broken.yaml:4" in error, error

            # Docker is missing here: the docker step fails saying so, the others run.
            started = await call(client, "agent_runWorkflow", {"id": "docker"})
            status = await finished(client, started["execution_id"])
            assert status["status"] == "succeeded"
            assert steps_of(status) == {"box": "failed", "after": "succeeded"}
            box = {s["id"]: s for s in status["steps"]}["box"]
            assert box["error"]["kind"] == "docker_unavailable" and "Docker" in box["error"]["message"]

            # The directory is watched: a new file is a workflow soon after.
            (agent.workflows / "late.yaml").write_text("id: late\nsteps:\n  - log: hi\n")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                listed = await call(client, "agent_listWorkflows", {})
                if "late" in {w["id"] for w in listed["workflows"]}:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the new workflow never appeared")
            started = await call(client, "agent_runWorkflow", {"id": "late", "wait": True})
            assert started["status"] == "succeeded"

    asyncio.run(scenario())


def test_secrets_of_http_steps_never_appear_in_logs_or_results(agent: Stack):
    async def scenario():
        async with Client(target(agent)) as client:
            started = await call(client, "agent_runWorkflow", {"id": "secret", "inputs": {"base": agent.web.url("")}})
            status = await finished(client, started["execution_id"])
            assert status["status"] == "succeeded", status
            logs = await call(client, "agent_getWorkflowLogs", {"execution_id": started["execution_id"]})
            return status, logs

    status, logs = asyncio.run(scenario())
    # The server got the secret; nothing the agent reports carries it.
    assert agent.web.counters["/headers"] == 1
    text = json.dumps([status, logs])
    assert SECRET not in text
    assert "[secret]" in text
    assert SECRET not in agent.backends["agent"].log()


def test_an_llm_answer_is_validated_against_its_schema_with_a_bounded_retry(agent: Stack):
    async def scenario():
        async with Client(target(agent)) as client:
            started = await call(client, "agent_runWorkflow", {"id": "schema", "wait": True})
            logs = await call(client, "agent_getWorkflowLogs", {"execution_id": started["execution_id"]})
            rate = logs["steps"][0]
            assert rate["output"]["json"] == {"score": 7}
            assert rate["output"]["attempts"] == 2

    asyncio.run(scenario())
    retry = agent.web.llm_requests[-1]["messages"]
    assert "not JSON" in retry[-1]["content"]


def stdio_target(stack: Stack):
    from mcp.client.stdio import StdioServerParameters, stdio_client

    argv = stack.stdio_bridge_argv()
    return stdio_client(StdioServerParameters(command=argv[0], args=argv[1:]))


def test_every_workflow_is_a_tool_whose_list_follows_the_directory(agent: Stack):
    web = agent.web

    async def scenario():
        changes: list[str] = []

        async def on_message(message):
            method = getattr(getattr(message, "root", message), "method", None)
            if method:
                changes.append(method)

        async with Client(stdio_target(agent), mode="legacy", message_handler=on_message) as client:
            async def tools() -> dict:
                return {tool.name: tool for tool in (await client.list_tools()).tools}

            deadline = time.monotonic() + 10
            listed = await tools()
            while "workflow_summarize" not in listed and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                listed = await tools()
            tool = listed["workflow_summarize"]
            assert tool.description == "Read a file, ask the model, write the answer back, post it."
            assert tool.input_schema["required"] == ["path", "hook"]
            assert "workflow_broken" not in listed and "workflow_parallel" in listed

            progress: list[str] = []

            async def on_progress(value, total, message):
                progress.append(message)

            result = await client.call_tool("workflow_summarize", {"path": "/doc.txt", "hook": web.url("/tool")},
                                            progress_callback=on_progress)
            assert result.is_error is False, result.content[0].text
            assert result.structured_content["status"] == "succeeded"
            assert result.structured_content["outputs"]["summary"].startswith("SUMMARY: ")
            for step in ("read", "ask", "write", "post"):
                assert f"step {step}: succeeded" in progress, progress

            bad = await client.call_tool("workflow_summarize", {"path": 3})
            assert bad.is_error is True and "input_schema" in bad.content[0].text

            changes.clear()
            (agent.workflows / "fresh.yaml").write_text("id: fresh\ndescription: A new one.\nsteps:\n  - log: hi\n")
            for _ in range(200):
                if "notifications/tools/list_changed" in changes:
                    break
                await asyncio.sleep(0.05)
            assert "notifications/tools/list_changed" in changes
            assert (await tools())["workflow_fresh"].description == "A new one."
            changes.clear()
            (agent.workflows / "fresh.yaml").unlink()
            for _ in range(200):
                if "notifications/tools/list_changed" in changes:
                    break
                await asyncio.sleep(0.05)
            assert "workflow_fresh" not in await tools()

    asyncio.run(scenario())
    assert web.posts[0]["path"] == "/tool"


DOCKER_WORKFLOW = """
id: boxes
steps:
  - id: hello
    needs: []
    docker: {image: IMAGE, command: [sh, -c, "echo 'hello {{ inputs.name }}'; ip -o link | cut -d: -f2 | tr -d ' '"]}
  - id: mounted
    needs: []
    docker:
      image: IMAGE
      command: [cat, /data/in.txt]
      mounts: [{source: "{{ inputs.allowed }}", target: /data}]
  - id: outside
    needs: []
    docker:
      image: IMAGE
      command: [cat, /data/passwd]
      mounts: [{source: /etc, target: /data}]
    on_error: continue
  - id: networked
    needs: []
    docker: {image: IMAGE, command: [true], network: bridge}
    on_error: continue
"""

HANG_WORKFLOW = """
id: hang
steps:
  - id: sleepy
    docker: {image: IMAGE, command: [sleep, "600"]}
    timeout: 1s
"""


def test_docker_steps_run_confined_and_a_hanging_one_is_killed(agent: Stack, dockerd):
    allowed = agent.root / "allowed"
    allowed.mkdir()
    (allowed / "in.txt").write_text("from the host\n")
    (agent.workflows / "boxes.yaml").write_text(DOCKER_WORKFLOW.replace("IMAGE", IMAGE))
    (agent.workflows / "hang.yaml").write_text(HANG_WORKFLOW.replace("IMAGE", IMAGE))
    config = json.loads(agent.agent_config.read_text())
    config["docker"] = {"socket": str(dockerd.socket), "allowed_mounts": [str(allowed)]}
    agent.agent_config.write_text(json.dumps(config))
    agent.backends["agent"].stop()
    agent.start_backend("agent", "llmbasedos-agent", env=agent.agent_env)

    async def scenario():
        async with Client(target(agent)) as client:
            started = await call(client, "agent_runWorkflow",
                                 {"id": "boxes", "inputs": {"name": "{{ 6 * 7 }}", "allowed": str(allowed)}})
            status = await finished(client, started["execution_id"], timeout=60)
            assert status["status"] == "succeeded", status
            logs = await call(client, "agent_getWorkflowLogs", {"execution_id": started["execution_id"]})
            by_id = {step["id"]: step for step in logs["steps"]}
            # The template payload stayed text, and the container had no network but lo.
            assert by_id["hello"]["output"]["stdout"].split() == ["hello", "{{", "6", "*", "7", "}}", "lo"]
            assert by_id["mounted"]["output"]["stdout"] == "from the host\n"
            assert by_id["outside"]["error"]["kind"] == "docker_mount_refused", by_id["outside"]
            assert by_id["networked"]["error"]["kind"] == "docker_network_refused", by_id["networked"]

            hang = await call(client, "agent_runWorkflow", {"id": "hang"})
            status = await finished(client, hang["execution_id"], timeout=60)
            assert status["status"] == "failed" and status["error"]["kind"] == "timeout", status

    asyncio.run(scenario())
    assert dockerd.containers() == []


def test_a_schedule_fires_and_its_run_carries_the_schedules_identity(agent: Stack):
    # Every minute (the shortest five-field cron); added live, so it fires
    # only in this test. The first slot is at most a minute away; a reload
    # landing just after a slot waits for the next one: bounded at ~2 min.
    (agent.workflows / "tick.yaml").write_text("""
id: tick
on: {schedule: {cron: "* * * * *", timezone: UTC, identity: "uid:4242"}}
steps:
  - id: stamp
    mcp: {method: mcp.fs.write, params: {path: /tick.txt, content: "tick {{ execution.id }}", mode: overwrite}}
""")

    async def scenario():
        async with Client(target(agent)) as client:
            deadline = time.monotonic() + 130
            while time.monotonic() < deadline:
                listed = await call(client, "agent_listExecutions", {"workflow": "tick"})
                done = [e for e in listed["executions"] if e["status"] not in ("running", "waiting_approval")]
                if done:
                    return done[0]
                await asyncio.sleep(0.5)
            raise AssertionError(f"the schedule did not fire within 130 s: {listed}")

    execution = asyncio.run(scenario())
    assert execution["status"] == "succeeded", execution
    assert execution["started_by"] == {"trigger": "schedule", "identity": "uid:4242"}, execution
    # The step ran through the gateway and the fs server.
    assert (agent.fs_root / "tick.txt").read_text() == f"tick {execution['execution_id']}"
