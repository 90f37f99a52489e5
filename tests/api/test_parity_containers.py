"""Docker parity of the container lifecycle, through the real docker CLI and docker-py: kill's wait for the exit,
the pty's line discipline, detach keys, log drivers, bind propagation."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from tests.api.conftest import DOCKER, PortsideDaemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def client(daemon: PortsideDaemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


def _state(daemon: PortsideDaemon, name: str) -> dict:
    out = daemon.docker("inspect", name)
    assert out.returncode == 0, out.stderr
    state: dict = json.loads(out.stdout)[0]["State"]
    return state


# -- 1. kill ------------------------------------------------------------------------------------------------------
def test_kill_returns_once_the_container_has_exited(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-kill-{os.getpid()}"
    names.append(name)
    assert daemon.docker("create", "--name", name, busybox, "sleep", "300").returncode == 0
    for _ in range(20):
        assert daemon.docker("start", name).returncode == 0
        killed = daemon.docker("kill", name)
        assert (killed.returncode, killed.stdout) == (0, name + "\n"), killed.stderr
        st = _state(daemon, name)  # right after: no poll
        assert (st["Status"], st["Running"], st["ExitCode"], st["Pid"]) == ("exited", False, 137, 0)


def test_kill_with_another_signal_returns_at_once(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-killterm-{os.getpid()}"
    names.append(name)
    # a shell that traps TERM, says so, and exits 3 a while later: kill must not wait for that exit
    script = "trap 'echo got-term; sleep 30; exit 3' TERM; echo ready; while :; do sleep 1; done"
    assert daemon.docker("run", "-d", "--name", name, busybox, "sh", "-c", script).returncode == 0
    _wait_logs(daemon, name, "ready")
    t0 = time.monotonic()
    assert daemon.docker("kill", "-s", "TERM", name).returncode == 0
    assert time.monotonic() - t0 < 20
    assert _state(daemon, name)["Running"] is True
    _wait_logs(daemon, name, "got-term")
    assert daemon.docker("kill", "-s", "KILL", name).returncode == 0
    assert _state(daemon, name)["ExitCode"] == 137


def test_kill_bad_signal_and_stopped_container(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-killbad-{os.getpid()}"
    names.append(name)
    assert daemon.docker("create", "--name", name, busybox, "sleep", "300").returncode == 0
    out = daemon.docker("kill", name)
    assert out.returncode == 1
    assert "is not running" in out.stderr
    status, _, body = daemon.request("POST", f"/v1.50/containers/{name}/kill?signal=FROB")
    assert status == 400 and json.loads(body)["message"] == "Invalid signal: FROB"


def _wait_logs(daemon: PortsideDaemon, name: str, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = daemon.docker("logs", name).stdout
        if text in out:
            return out
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the logs of {name}: {out!r}")


# -- 2. the pty's output translation ------------------------------------------------------------------------------
def _docker_bytes(daemon: PortsideDaemon, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The CLI with its output as bytes (text mode would turn the \\r\\n under test into \\n)."""
    return subprocess.run([DOCKER, "-H", daemon.host, *args], capture_output=True, timeout=120, check=False,
                          env={**os.environ, "DOCKER_CONFIG": str(daemon.tmp / "cli")})


def test_run_t_output_has_crlf(daemon: PortsideDaemon, busybox: str) -> None:
    out = _docker_bytes(daemon, "run", "--rm", "-t", busybox, "echo", "hi")
    assert (out.returncode, out.stdout) == (0, b"hi\r\n"), out.stderr
    out = _docker_bytes(daemon, "run", "--rm", busybox, "echo", "hi")
    assert (out.returncode, out.stdout) == (0, b"hi\n"), out.stderr


def test_tty_logs_and_exec_t_keep_the_crlf(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-onlcr-logs-{os.getpid()}"
    names.append(name)
    assert daemon.docker("run", "-d", "-t", "--name", name, busybox, "sh", "-c", "echo hi; sleep 300").returncode == 0
    _wait_logs(daemon, name, "hi")
    assert _docker_bytes(daemon, "logs", name).stdout == b"hi\r\n"  # the log holds what the pty sent
    out = _docker_bytes(daemon, "exec", "-t", name, "printf", "a\\nb\\n")
    assert (out.returncode, out.stdout) == (0, b"a\r\nb\r\n"), out.stderr


def test_exec_run_tty_output_has_crlf(client: docker.DockerClient, busybox: str) -> None:
    c = client.containers.run(busybox, ["sleep", "300"], detach=True, name=f"pst-onlcr-{os.getpid()}")
    try:
        res = c.exec_run(["echo", "hi"], tty=True)
        assert (res.exit_code, res.output) == (0, b"hi\r\n")
        res = c.exec_run(["echo", "hi"])
        assert (res.exit_code, res.output) == (0, b"hi\n")
    finally:
        c.remove(force=True)
