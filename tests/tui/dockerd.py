"""A private dockerd (Debian's docker.io) for the TUI's tests: its own data/exec roots and socket, its own
bridge named `pst…` on a /24 of 10.213.x (published ports bind 127.0.0.1 only), no iptables. Stopped by PID."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"


def available() -> bool:
    return os.geteuid() == 0 and Path(DOCKERD).exists()


@dataclass
class Dockerd:
    workdir: Path
    bridge: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 60.0) -> None:
        # A /24 that no route of the host uses, picked at random so parallel sessions do not collide.
        taken = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
        for _ in range(50):
            third = random.randint(1, 254)
            if f"10.213.{third}." not in taken:
                break
        self.bridge = f"pstd{random.randint(0, 0xFFFFFF):06x}"
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"10.213.{third}.1/24", "dev", self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        log = open(self.workdir / "dockerd.log", "wb")
        self.process = subprocess.Popen(
            [
                DOCKERD,
                "--data-root", str(self.workdir / "data"),
                "--exec-root", str(self.workdir / "exec"),
                "-H", self.url,
                "--pidfile", str(self.workdir / "dockerd.pid"),
                "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                "--bridge", self.bridge,
                "--ip", "127.0.0.1",
                "--storage-driver", "overlay2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKER_HOST": ""},
        )
        deadline = time.monotonic() + timeout
        import docker

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(self.workdir / 'dockerd.log').read_text()[-2000:]}")
            if self.socket.exists():
                try:
                    if docker.APIClient(base_url=self.url, timeout=5).ping():
                        return
                except Exception:
                    pass
            time.sleep(0.1)
        raise RuntimeError("dockerd did not answer in time")

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                try:
                    import docker

                    api = docker.APIClient(base_url=self.url, timeout=30)
                    for c in api.containers(all=True):
                        api.remove_container(c["Id"], force=True)
                except Exception:
                    pass
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
        finally:
            if self.bridge:
                subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
            # dockerd unmounts its own overlays on a clean stop; a killed one may leave some behind.
            mounts = Path("/proc/self/mounts").read_text().splitlines()
            for line in reversed(mounts):
                target = line.split()[1]
                if target.startswith(str(self.workdir)):
                    subprocess.run(["umount", "-l", target], capture_output=True, check=False)
            shutil.rmtree(self.workdir, ignore_errors=True)


def make() -> Dockerd:
    return Dockerd(Path(tempfile.mkdtemp(prefix="portside-test-dockerd-")))
