"""The web console under `llmbasedos up` (no systemd), in a real browser:
`up` starts the console beside the servers and prints its one-time
sign-in URL; the overview shows up's children with their states from up's
control socket, sees a killed fs server, stops and starts one from the
page; the logs page filters up's captured lines and shows the
`llmbasedos logs` command that prints the same lines; the console is its
own client at the gateway, with the tier `up --web-tier` gives it. Fails on
any JavaScript error or failed request (test_web_browser's Watched)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import BIN_DIR, PATIENCE, Process, binary, free_port, wait_for
from test_web_browser import Watched, browser  # noqa: F401 (the fixture)

URL = re.compile(r"web console\s+(http://127\.0\.0\.1:\d+/#t=([0-9a-f]{64}))")


class Up:
    """`llmbasedos up` in a private runtime directory and home."""

    def __init__(self, root: Path, extra: list[str] | None = None):
        self.root = root
        self.runtime = root / "run"
        home = root / "home"
        for sub in ("config", "state", "data", "cache"):
            (home / sub).mkdir(parents=True)
        self.files = root / "files"
        self.files.mkdir()
        (self.files / "hello.txt").write_text("hello\n")
        self.web_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "LLMBASEDOS_LOG": "info",
        }
        binary("llmbasedos-web")
        self.process = Process(
            [
                str(binary("llmbasedos")),
                "--runtime-dir",
                str(self.runtime),
                "up",
                "--root",
                str(self.files),
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--web-listen",
                f"127.0.0.1:{self.web_port}",
                "--bin-dir",
                str(BIN_DIR),
                *(extra or []),
            ],
            root / "up.log",
            env=self.env,
        )
        self.first_url = wait_for(lambda: URL.search(self.log()), "up's sign-in URL", timeout=60).group(1)
        self.minted: list[str] = [self.first_url.rsplit("#t=", 1)[1]]
        self._used_first = False

    def log(self) -> str:
        return self.process.log()

    def mint(self) -> str:
        """The URL up printed, then new ones from `llmbasedos web`, which
        finds up's console by itself."""
        if not self._used_first:
            self._used_first = True
            return self.first_url
        out = self.cli("web").stdout.strip()
        assert out.startswith(self.base + "/#t="), out
        self.minted.append(out.rsplit("#t=", 1)[1])
        return out

    def cli(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(binary("llmbasedos")), "--runtime-dir", str(self.runtime), *argv],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=PATIENCE,
        )

    def stop(self):
        code = self.process.stop()
        assert code == 0, self.log()[-3000:]


def watched_up(browser, up: Up):  # noqa: F811 (the imported fixture)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20000)
    watched = Watched(page, up)
    try:
        yield watched, up
    finally:
        context.close()
        up.stop()
    assert not watched.errors, watched.errors
    assert not watched.dialogs, f"a script ran: {watched.dialogs}"
    for token in up.minted:
        assert not any(token in url for url in watched.urls), "the token went into a request line"
    assert not (up.runtime / "up.sock").exists(), "up removes its control socket"


@pytest.fixture
def up_page(browser, tmp_path):  # noqa: F811 (the imported fixture)
    yield from watched_up(browser, Up(tmp_path))


TIERS = """
tiers:
  CONSOLE:
    allow: ["*"]
    deny: ["mcp.fs.write", "fs_write"]
  FULL:
    allow: ["*"]
"""


@pytest.fixture
def licensed_up_page(browser, tmp_path):  # noqa: F811 (the imported fixture)
    """up with a licence (tier FULL, unsigned and allowed) and the console
    given the CONSOLE tier, which may not write files."""
    (tmp_path / "tiers.yaml").write_text(TIERS)
    (tmp_path / "lic.key").write_text("tier: FULL\nuser_id: e2e\n")
    (tmp_path / "keys").mkdir()
    licence = tmp_path / "licence.yaml"
    licence.write_text(json.dumps({
        "key": str(tmp_path / "lic.key"),
        "keys_dir": str(tmp_path / "keys"),
        "tiers": str(tmp_path / "tiers.yaml"),
        "allow_unsigned": True,
        "state_dir": str(tmp_path / "licence-state"),
    }))
    yield from watched_up(browser, Up(tmp_path, ["--licence", str(licence), "--web-tier", "CONSOLE"]))


def row(page, service: str):
    return page.locator(f"#services tr[data-service='{service}']")


def cells(page, service: str) -> dict[str, str]:
    texts = row(page, service).locator("td").all_inner_texts()
    return dict(zip(["service", "state", "since", "memory", "pid", "last_error"], texts))


def overview_until(page, service: str, test, what: str) -> dict[str, str]:
    """Reloads the overview until `service`'s row passes `test`."""

    def check():
        page.reload()
        page.wait_for_selector("#services")
        now = cells(page, service)
        return now if test(now) else None

    return wait_for(check, what, timeout=PATIENCE * 2)


def test_up_starts_the_console_and_the_overview_follows_its_services(up_page):
    watched, up = up_page
    page = watched.page
    watched.sign_in()
    assert "#t=" not in page.url
    for service in ("fs", "gateway", "web"):
        wait_for(lambda: row(page, service).count() == 1 or page.reload(), f"{service} listed")
    fs = overview_until(page, "fs", lambda c: c["state"] == "running", "fs running")
    assert "up:fs" in fs["service"] and fs["memory"] not in ("", "—"), fs
    pid = int(fs["pid"])
    watched.shoot("up-overview")

    # Killed behind up's back: the overview says so, and shows it back.
    os.kill(pid, signal.SIGKILL)
    killed = overview_until(page, "fs", lambda c: "killed by signal 9" in c["last_error"], "the kill seen")
    assert killed["pid"] != str(pid), killed
    overview_until(page, "fs", lambda c: c["state"] == "running" and c["pid"] not in (str(pid), "—"), "fs restarted")

    # Stopped and started from the page.
    row(page, "fs").locator("button[data-control='stop']").click()
    page.locator("#control-status", has_text="stop fs: done").wait_for()
    stopped = overview_until(page, "fs", lambda c: c["state"] == "inactive", "fs stopped")
    assert stopped["pid"] == "—", stopped
    row(page, "fs").locator("button[data-control='start']").click()
    page.locator("#control-status", has_text="start fs: done").wait_for()
    overview_until(page, "fs", lambda c: c["state"] == "running", "fs started again")
    # The gateway reaches the new fs server.
    out = up.cli("call", "mcp.fs.list", "path=/").stdout
    assert "hello.txt" in out, out


def test_up_logs_are_filtered_in_the_page_as_by_llmbasedos_logs(up_page):
    watched, up = up_page
    page = watched.page
    watched.sign_in()
    page.click("nav >> text=Logs")
    page.wait_for_selector("#log-filters")
    assert page.locator("#log-rows tr").count() > 0, "up captured its children's lines"
    page.select_option("#log-service", "gateway")
    page.fill("#log-text", "Serving")
    page.click("#log-filters button[type='submit']")
    page.wait_for_selector("#log-command")
    rows = page.locator("#log-rows tr")
    wait_for(lambda: rows.count() > 0, "a gateway line with 'serving'")
    messages = []
    for index in range(rows.count()):
        service, message = rows.nth(index).locator("td").all_inner_texts()[1::2]
        assert service == "gateway", service
        assert "serving" in message.lower(), message
        messages.append(message)
    command = page.locator("#log-command").inner_text()
    assert "--service=gateway" in command and "--grep=Serving" in command, command
    argv = command.split()
    assert argv[0] == "llmbasedos", argv
    out = subprocess.run(
        [str(binary("llmbasedos")), *argv[1:]],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **up.env},
        timeout=PATIENCE,
    ).stdout
    printed = [line for line in out.splitlines() if line]
    # The page shows newest first; the command prints oldest first.
    assert [line.split(" ", 3)[3] for line in printed] == list(reversed(messages)), (printed, messages)
    watched.shoot("up-logs")


def test_the_console_is_its_own_client_with_its_own_tier_under_up(licensed_up_page):
    """Under up the console runs as the user, like `llmbasedos call`; the
    gateway still tells it apart, as token:llmbasedos-web with the tier up
    gave it: a tool that tier does not allow is absent from its pages and
    refused when called anyway, while the user may call it."""
    watched, up = licensed_up_page
    page = watched.page
    watched.sign_in()

    page.goto(up.base + "/licence")
    licence = dict(zip(page.locator("#licence dt").all_inner_texts(), page.locator("#licence dd").all_inner_texts()))
    assert licence.get("Console's tier") == "CONSOLE", licence
    assert licence.get("Machine tier") == "FULL", licence

    # Listed for the user, not for the console.
    assert "fs_write" in up.cli("call", "tools/list").stdout
    page.goto(up.base + "/tools?q=fs_")
    names = page.locator("#tool-list li a code").all_inner_texts()
    assert "fs_list" in names and "fs_write" not in names, names
    page.goto(up.base + "/tools/fs_write")
    page.locator(".problem", has_text="no tool named fs_write").wait_for()

    # Called anyway, as a crafted page would: refused by the gateway.
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    started = page.request.post(
        up.base + "/api/tools/call",
        headers={"Origin": up.base, "X-CSRF-Token": csrf, "Content-Type": "application/json"},
        data=json.dumps({"name": "fs_write", "arguments": {"path": "/by-console.txt", "content": "x", "mode": "overwrite"}}),
    )
    assert started.status == 200, started.text()
    events = page.request.get(up.base + f"/api/calls/{started.json()['id']}/events").text()
    assert "event: result" in events and "result error" in events, events
    assert not (up.files / "by-console.txt").exists()
    # The user's own calls have the machine's tier.
    up.cli("call", "mcp.fs.write", "path=/by-user.txt", "content=x", "mode=overwrite")
    assert (up.files / "by-user.txt").read_text() == "x"

    # The gateway names the console's client and tier in the refusal, and
    # lists it among its clients with that tier.
    refusals = up.cli("logs", "--service=gateway", "--grep=refused").stdout
    assert "client=token:llmbasedos-web" in refusals and "tier=CONSOLE" in refusals, refusals
    page.goto(up.base + "/")
    clients = page.locator("#clients tbody tr").all_inner_texts()
    assert any("token:llmbasedos-web" in row and "CONSOLE" in row for row in clients), clients
