"""A portside daemon per test session, driven by the real docker CLI and docker-py."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import engine
from tests.testbed.cli import DOCKER
from tests.testbed.cli import docker as docker_cli
from tests.testbed.mounts import unmount_below
from tests.testbed.registry import Registry

ENGINE_PARENT = str(Path(engine.__file__).resolve().parent.parent)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


@dataclass
class PortsideDaemon:
    """A `portside daemon` subprocess on a temp data root, exec root and socket."""

    __test__ = False
    tmp: Path
    extra_args: list[str] = field(default_factory=list)
    # Short, apart from tmp: the supervisors' socket paths (with 64-hex ids) must fit AF_UNIX's 108 bytes.
    exec_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> Path:
        return self.tmp / "portside.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    @property
    def data_root(self) -> Path:
        return self.tmp / "data"

    @property
    def exec_root(self) -> Path:
        return self.exec_dir or self.tmp / "exec"

    @property
    def log(self) -> Path:
        return self.tmp / "daemon.log"

    @property
    def bridge(self) -> str:
        return "pst" + self.tmp.name.rsplit("-", 1)[-1][-8:].lower().replace("_", "0")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "app.cli", "daemon", "--data-root", str(self.data_root), "--exec-root",
                str(self.exec_root), "-H", self.host, "--bridge", self.bridge, "--ip-forward=false",
                "--cgroup-parent", f"portside-test-{self.bridge}", *self.extra_args]

    def cleanup_containers(self) -> None:
        """Containers outlive the daemon by design: a test session kills what its daemon left running."""
        rt_dir = self.exec_root / "rt"
        try:
            from engine.exec.runtime import Runtime
        except ImportError:
            return
        import asyncio

        async def kill_all() -> None:
            rt = Runtime(rt_dir, cgroup_parent=f"portside-test-{self.bridge}")
            for cid in rt.list():
                with contextlib.suppress(Exception):
                    await rt.delete(cid, force=True)

        if rt_dir.is_dir():
            asyncio.run(kill_all())
        # the runtime removes each container's cgroup; the parent this daemon was given goes here
        for parent in sorted(Path("/sys/fs/cgroup").glob(f"*/portside-test-{self.bridge}"), reverse=True):
            for child in sorted(parent.rglob("*"), key=lambda p: -len(p.parts)):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()

    def destroy_network_state(self) -> None:
        """The daemon leaves its bridge and nft table for running containers; a test removes them."""
        from engine.net import NetworkService
        from engine.parts import nft_table_for

        if not (self.data_root / "network").exists():
            return
        svc = NetworkService(self.data_root, self.exec_root, default_bridge=self.bridge,
                             nft_table=nft_table_for(self.bridge), enable_ip_forward=False)
        try:
            svc.start()
        finally:
            svc.destroy()

    def start(self, timeout: float = 30) -> None:
        env = dict(os.environ, PYTHONPATH=ENGINE_PARENT)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=ENGINE_PARENT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"portside daemon exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if self.request("GET", "/_ping")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"portside daemon did not answer: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = UnixHTTPConnection(str(self.sock))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def docker(self, *args: str, input: str | None = None, timeout: float = 120,
               cli: str = DOCKER) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this daemon (see tests.testbed.cli.docker)."""
        return docker_cli(self.host, self.tmp / "cli", *args, input=input, timeout=timeout, cli=cli)


def new_daemon(extra_args: list[str] | None = None) -> PortsideDaemon:
    tmp = Path(tempfile.mkdtemp(prefix="portside-test-api-"))
    exec_dir = Path(tempfile.mkdtemp(prefix="portside-test-x", dir="/tmp"))
    return PortsideDaemon(tmp, extra_args or [], exec_dir)


def remove_daemon_dirs(d: PortsideDaemon) -> None:
    for p in (d.tmp, d.exec_dir):
        if p is not None:
            unmount_below(p)
            shutil.rmtree(p, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon() -> Iterator[PortsideDaemon]:
    """One daemon for the whole session (tests clean up what they make in it)."""
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    d = new_daemon()
    try:
        d.start()
        yield d
    finally:
        d.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)


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
