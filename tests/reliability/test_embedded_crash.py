"""kill -9 of a program that embeds the engine the way the TUI does (engine.daemon.DaemonThread, the engine on a
thread of the program's own process: app/endpoint.embedded), while it serves: at the named point `api.request` and
from outside with streams open and a `docker run` in flight. The next program that embeds it takes the data root
(the lock died with the process), replaces the dead socket, re-adopts the running container and holds nothing
half-made."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.api.conftest import PortsideDaemon, new_daemon
from tests.reliability.conftest import KEEPER, CrashDaemon, crash_daemon
from tests.testbed.cli import DOCKER
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")

# The TUI's embedded mode without the TUI: a DaemonThread in the program's process; SIGTERM ends it as quitting the
# TUI does (Endpoint.stop). Private roots, bridge and cgroup parent instead of the defaults endpoint.embedded uses.
HOST = """
import json, signal, sys, threading
from pathlib import Path
from engine.daemon import DaemonConfig, DaemonThread
c = json.loads(sys.argv[1])
cfg = DaemonConfig(data_root=Path(c["data"]), exec_root=Path(c["exec"]), hosts=[c["host"]], bridge=c["bridge"],
                   ip_forward=False, cgroup_parent=c["cgroup"])
engine = DaemonThread(cfg)
engine.start(timeout=60)
print("embedded engine serving", flush=True)
quit = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: quit.set())
quit.wait()
engine.stop()
"""


@dataclass
class EmbeddingProgram(PortsideDaemon):
    """A program with the engine embedded, started and stopped like a daemon (same dirs, socket and checks)."""

    __test__ = False

    def command(self) -> list[str]:
        conf = {"data": str(self.data_root), "exec": str(self.exec_root), "host": self.host, "bridge": self.bridge,
                "cgroup": f"portside-test-{self.bridge}"}
        return [sys.executable, "-c", HOST, json.dumps(conf)]


@pytest.fixture(scope="module")
def embedded(registry: Registry) -> Iterator[CrashDaemon]:
    if os.geteuid() != 0:
        pytest.skip("the engine needs root")
    base = new_daemon()
    with crash_daemon(EmbeddingProgram(base.tmp, [], base.exec_dir), registry, "-p", "127.0.0.1::80") as c:
        yield c


def test_killed_at_a_request_while_serving(embedded: CrashDaemon) -> None:
    c = embedded
    names_before = set(c.ok("ps", "-a", "--format", "{{.Names}}").split())
    code, _o, _e = c.crash_during("api.request", "run", "-d", "--name", "pst-emb-run", "busybox", "sleep", "60")
    assert code != 0
    assert set(c.ok("ps", "-a", "--format", "{{.Names}}").split()) == names_before
    c.check_whole()  # the keeper is re-adopted by the new program's engine
    assert c.ok("run", "--rm", "busybox", "echo", "again").strip() == "again"


def test_killed_from_outside_with_streams_open_and_a_run_in_flight(embedded: CrashDaemon) -> None:
    c = embedded
    d = c.d
    links, rules = c.net_state()
    env = {**os.environ, "DOCKER_CONFIG": str(d.tmp / "cli")}
    streams = [subprocess.Popen([DOCKER, "-H", d.host, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env) for args in (["events"], ["logs", "-f", KEEPER], ["stats", KEEPER])]
    stop = threading.Event()
    made: list[str] = []

    def churn() -> None:  # containers started and removed while the program dies
        i = 0
        while not stop.is_set():
            name = f"pst-emb-churn-{i}"
            made.append(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                d.docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", "busybox", "sleep", "60", timeout=30)
                d.docker("rm", "-f", name, timeout=30)
            i += 1

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while len(made) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert d.proc is not None
        d.proc.send_signal(signal.SIGKILL)  # the whole program: its engine thread, its loop, its open requests
        d.proc.wait(30)
    finally:
        stop.set()
        worker.join(90)
        for s in streams:
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.wait(30)  # each saw its engine go
            if s.poll() is None:
                s.kill()
                s.wait()
    assert d.sock.exists()  # a dead program leaves its socket; the next one replaces it
    c.restart()
    c.check_whole()
    # whatever the churn had made when the program died is whole: running or not, it is removed like any other
    for name in set(c.ok("ps", "-a", "--format", "{{.Names}}").split()) - {KEEPER}:
        assert name.startswith("pst-emb-churn-"), name
        c.ok("rm", "-f", name)
    assert c.net_state() == (links, rules)
    c.check_whole()

