"""Containers through the real docker 28 CLI: the `docker run` family, logs, exec, stats, top, cp, diff, commit,
volumes, events, rm -f. Images come from the test bed's registry."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import DOCKER, PortsideDaemon
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# The runtime part lands in parallel; until the daemon can run containers these tests cannot run.
pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")


@pytest.fixture(scope="session")
def busybox(daemon: PortsideDaemon, registry: Registry) -> str:
    """`busybox:latest` in the daemon: pulled from the test registry by the CLI, then tagged."""
    src = f"{registry.host}/testbed/busybox:latest"
    out = daemon.docker("pull", src)
    assert out.returncode == 0, out.stderr
    assert daemon.docker("tag", src, "busybox:latest").returncode == 0
    return "busybox"


@pytest.fixture
def names(daemon: PortsideDaemon) -> Iterator[list[str]]:
    """Container names a test makes; removed (forced) afterwards, also on failure."""
    made: list[str] = []
    yield made
    for n in made:
        daemon.docker("rm", "-f", "-v", n)


def test_run_rm_echo_prints_and_exits_0(daemon: PortsideDaemon, busybox: str) -> None:
    out = daemon.docker("run", "--rm", busybox, "echo", "hi")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
    ps = daemon.docker("ps", "-a", "-q")
    assert ps.stdout.strip() == ""


def test_run_propagates_exit_code_and_stderr(daemon: PortsideDaemon, busybox: str) -> None:
    out = daemon.docker("run", "--rm", busybox, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert out.returncode == 3
    assert out.stdout == "out\n" and out.stderr == "err\n"


def test_missing_command_is_127(daemon: PortsideDaemon, busybox: str) -> None:
    out = daemon.docker("run", "--rm", busybox, "no-such-command")
    assert out.returncode == 127, out.stderr
    assert "executable file not found" in out.stderr


def test_run_it_drives_a_shell_through_a_pty(daemon: PortsideDaemon, busybox: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(DOCKER, [DOCKER, "-H", daemon.host, "run", "--rm", "-it", busybox, "sh"])
    buf = b""
    try:
        os.write(fd, b"echo pty-$((40+2)); tty; exit 5\r")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert b"pty-42" in buf
    assert b"/dev/pts/" in buf
    assert os.waitstatus_to_exitcode(status) == 5


def test_detached_logs_follow_stop_and_events(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-logs-{os.getpid()}"
    names.append(name)
    since = f"{time.time() - 1:.9f}"
    out = daemon.docker("run", "-d", "--name", name, busybox, "sh", "-c",
                        "i=0; while [ $i -lt 3 ]; do echo line$i; i=$((i+1)); sleep 0.2; done; sleep 30")
    assert out.returncode == 0, out.stderr
    follow = subprocess.Popen([DOCKER, "-H", daemon.host, "logs", "-f", name], stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        lines = [follow.stdout.readline().strip() for _ in range(3)]
        assert lines == ["line0", "line1", "line2"]
    finally:
        follow.kill()  # hanging up mid-stream
        follow.wait()
    assert daemon.docker("logs", "--tail", "1", name).stdout == "line2\n"
    insp = json.loads(daemon.docker("inspect", name).stdout)[0]
    assert insp["State"]["Running"] is True and insp["Name"] == "/" + name
    assert daemon.docker("stop", "-t", "1", name).returncode == 0
    insp = json.loads(daemon.docker("inspect", name).stdout)[0]
    assert insp["State"]["Status"] == "exited"
    assert daemon.docker("rm", name).returncode == 0
    ev = daemon.docker("events", "--since", since, "--until", f"{time.time():.9f}", "--filter",
                       f"container={name}", "--format", "{{.Action}}")
    actions = ev.stdout.split()
    for a in ("create", "start", "die", "destroy"):
        assert a in actions, ev.stdout


def test_exec_top_stats(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-exec-{os.getpid()}"
    names.append(name)
    assert daemon.docker("run", "-d", "--name", name, busybox, "sleep", "60").returncode == 0
    out = daemon.docker("exec", name, "sh", "-c", "echo $((6*7)); exit 4")
    assert out.returncode == 4 and out.stdout == "42\n"
    top = daemon.docker("top", name)
    assert top.returncode == 0 and "sleep 60" in top.stdout
    st = daemon.docker("stats", "--no-stream", "--format", "{{json .}}", name)
    assert st.returncode == 0, st.stderr
    figures = json.loads(st.stdout)
    assert not figures["MemUsage"].startswith("0B")


def test_cp_both_ways_and_diff(daemon: PortsideDaemon, busybox: str, names: list[str], tmp_path: Path) -> None:
    name = f"pst-cp-{os.getpid()}"
    names.append(name)
    assert daemon.docker("run", "-d", "--name", name, busybox, "sleep", "60").returncode == 0
    src = tmp_path / "hello.txt"
    src.write_text("from host\n")
    assert daemon.docker("cp", str(src), f"{name}:/tmp/").returncode == 0
    assert daemon.docker("exec", name, "cat", "/tmp/hello.txt").stdout == "from host\n"
    daemon.docker("exec", name, "sh", "-c", "echo from container > /root/made.txt")
    back = tmp_path / "back.txt"
    out = daemon.docker("cp", f"{name}:/root/made.txt", str(back))
    assert out.returncode == 0, out.stderr
    assert back.read_text() == "from container\n"
    diff = daemon.docker("diff", name).stdout.splitlines()
    assert "A /tmp/hello.txt" in diff and "A /root/made.txt" in diff


def test_volume_keeps_data_across_containers(daemon: PortsideDaemon, busybox: str) -> None:
    vol = f"pst-data-{os.getpid()}"
    try:
        w = daemon.docker("run", "--rm", "-v", f"{vol}:/data", busybox, "sh", "-c", "echo kept > /data/f")
        assert w.returncode == 0, w.stderr
        r = daemon.docker("run", "--rm", "-v", f"{vol}:/data", busybox, "cat", "/data/f")
        assert r.stdout == "kept\n"
    finally:
        daemon.docker("volume", "rm", vol)


def test_rm_f_removes_a_running_container(daemon: PortsideDaemon, busybox: str) -> None:
    name = f"pst-rmf-{os.getpid()}"
    assert daemon.docker("run", "-d", "--name", name, busybox, "sleep", "60").returncode == 0
    out = daemon.docker("rm", name)
    assert out.returncode != 0 and "stop the container before removing or force remove" in out.stderr
    assert daemon.docker("rm", "-f", name).returncode == 0
    assert daemon.docker("inspect", name).returncode != 0
