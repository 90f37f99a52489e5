"""A private dockerd (Debian's docker.io) for tests and benchmarks: its own data and exec roots, socket and
containerd namespace, no iptables. With `bridge=True` it gets a bridge of its own named `pstd…` on a /24 of 10.213.x
that no host route uses (published ports bind 127.0.0.1 only); otherwise `--bridge=none`. Stopped by its PID; its
mounts and roots are removed."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed import cli
from tests.testbed.mounts import unmount_below

DOCKERD = "/usr/sbin/dockerd"


def available() -> bool:
    return os.geteuid() == 0 and Path(DOCKERD).exists() and shutil.which("containerd") is not None


@dataclass
class Dockerd:
    workdir: Path
    bridge: bool = False
    insecure_registries: tuple[str, ...] = ()
    bridge_name: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return self.workdir / "data"

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this dockerd (see tests.testbed.cli.docker)."""
        return cli.docker(self.url, self.workdir / "cli", *args, timeout=timeout)

    def _make_bridge(self) -> list[str]:
        taken = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
        free = [n for n in range(1, 255) if f"10.213.{n}." not in taken]
        third = random.choice(free)  # at random, so parallel sessions do not collide
        self.bridge_name = f"pstd{random.randint(0, 0xFFFFFF):06x}"
        subprocess.run(["ip", "link", "add", self.bridge_name, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"10.213.{third}.1/24", "dev", self.bridge_name], check=True)
        subprocess.run(["ip", "link", "set", self.bridge_name, "up"], check=True)
        return ["--bridge", self.bridge_name, "--ip", "127.0.0.1", "--ip-forward=false", "--ip-masq=false"]

    def start(self, timeout: float = 90.0) -> None:
        net = self._make_bridge() if self.bridge else ["--bridge=none"]
        ns = f"pst{os.urandom(4).hex()}"  # containerd namespaces allow [A-Za-z0-9] only
        cmd = [DOCKERD, "--data-root", str(self.data_root), "--exec-root", str(self.workdir / "exec"),
               "-H", self.url, "--pidfile", str(self.workdir / "dockerd.pid"), "--iptables=false",
               "--ip6tables=false", "--storage-driver", "overlay2", "--containerd-namespace", ns,
               "--containerd-plugins-namespace", ns + "-plugins", *net]  # fmt: skip
        for registry in self.insecure_registries:
            cmd += ["--insecure-registry", registry]
        with open(self.workdir / "dockerd.log", "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "DOCKER_HOST": ""})  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {self.log()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        """dockerd's socket can exist while dockerd is still starting and not answering: a CLI call that times
        out then is "not yet", not an error."""
        if not self.socket.exists():
            return False
        try:
            return self.docker("version", timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def log(self) -> str:
        return (self.workdir / "dockerd.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                ids = self.docker("ps", "-aq", timeout=30).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, timeout=60)
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
        finally:
            if self.bridge_name:
                subprocess.run(["ip", "link", "del", self.bridge_name], capture_output=True, check=False)
            # dockerd unmounts its own overlays on a clean stop; a killed one may leave some behind
            unmount_below(self.workdir)
            shutil.rmtree(self.workdir, ignore_errors=True)


def make(bridge: bool = False, insecure_registries: tuple[str, ...] = (), parent: Path | None = None) -> Dockerd:
    return Dockerd(Path(tempfile.mkdtemp(prefix="portside-test-dockerd-", dir=parent)), bridge=bridge,
                   insecure_registries=insecure_registries)  # fmt: skip


@contextmanager
def running(bridge: bool = False, insecure_registries: tuple[str, ...] = (), parent: Path | None = None,
            timeout: float = 90.0) -> Iterator[Dockerd]:  # fmt: skip
    """A started dockerd, stopped and removed on exit (also when it fails to start)."""
    d = make(bridge, insecure_registries, parent)
    try:
        d.start(timeout)
        yield d
    finally:
        d.stop()
