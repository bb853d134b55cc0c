"""The end-to-end suite's dockerd (servers/dockerd.py) works as the agent's
Docker tests need it: offline image, no network, nothing left behind, and
the daemon gone by its pid when stopped."""

import os
import subprocess

from servers.dockerd import IMAGE, Dockerd, dockerd  # noqa: F401


def test_the_busybox_image_runs_without_a_network(dockerd):
    ran = dockerd.docker("run", "--rm", "--network", "none", IMAGE, "sh", "-c", "echo hi; ip -o link | cut -d: -f2")
    assert ran.stdout.split() == ["hi", "lo"]
    assert dockerd.containers() == []


def test_the_client_finds_the_daemon_through_its_env(dockerd):
    env = {**os.environ, **dockerd.env}
    version = subprocess.run(
        [dockerd.docker_cli, "version", "--format", "{{.Server.APIVersion}}"], env=env, capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().startswith("1.")


def test_a_second_daemon_stops_by_its_pid(tmp_path):
    daemon = Dockerd(tmp_path / "own").start()
    pid = daemon.popen.pid
    assert daemon.docker("images", "-q", IMAGE).stdout.strip(), "the image is imported"
    daemon.stop()
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not (tmp_path / "own" / "data").exists()
