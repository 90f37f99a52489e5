"""A portside daemon that tests kill at named points (engine/crashpoints.py) and start again, plus the checks that
what it left on disk is whole: every blob matches its digest, every snapshot and record is complete, nothing is
mounted for a container that does not exist."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.crashpoints import ENV, POINTS
from tests.api.conftest import PortsideDaemon, new_daemon, remove_daemon_dirs
from tests.testbed.registry import Registry

KEEPER = "pst-keeper"


def mounts_below(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path) + "/")]


@dataclass
class CrashDaemon:
    """One daemon for a module, with a container (`pst-keeper`) kept running across every crash."""

    d: PortsideDaemon
    busybox: str
    registry: Registry
    keeper_pid: int = 0
    made: list[str] = field(default_factory=list)

    def docker(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        out = self.d.docker(*args, timeout=timeout)
        return out.returncode, out.stdout, out.stderr

    def ok(self, *args: str) -> str:
        code, out, err = self.docker(*args)
        assert code == 0, f"docker {' '.join(args)}: {err}"
        return out

    def arm(self, point: str) -> None:
        """Restarts the daemon with `point` armed."""
        assert point in POINTS, point
        self.d.stop()
        os.environ[ENV] = point
        try:
            self.d.start()
        finally:
            os.environ.pop(ENV, None)

    def wait_crash(self, point: str, timeout: float = 90) -> None:
        """The armed daemon died by SIGKILL at `point` (and not otherwise)."""
        assert self.d.proc is not None
        try:
            self.d.proc.wait(timeout)
        except Exception:
            pytest.fail(f"the daemon did not die at {point}: {self.d.log.read_text()[-3000:]}")
        assert self.d.proc.returncode == -9, self.d.log.read_text()[-3000:]
        assert f"crashpoint {point}: SIGKILL" in self.d.log.read_text()

    def restart(self) -> None:
        """Starts the daemon again, unarmed, after a crash."""
        self.d.start(timeout=60)

    def crash_during(self, point: str, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        """Arms `point`, runs `docker args...` (which fails: the daemon dies under it), waits for the death,
        starts the daemon again. Returns the CLI's result."""
        self.arm(point)
        res = self.docker(*args, timeout=timeout)
        self.wait_crash(point)
        self.restart()
        return res

    def recovery_log(self) -> str:
        """The daemon log since its last start."""
        text = self.d.log.read_text()
        return text[text.rfind("crashpoint "):]

    def net_state(self) -> tuple[set[str], int]:
        """This engine's links (by the alias engine/net gives them) and how many nft rules its table has."""
        import subprocess

        from engine.parts import nft_table_for

        table = nft_table_for(self.d.bridge)
        out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=False).stdout
        links = {link["ifname"] for link in json.loads(out or "[]")
                 if str(link.get("ifalias", "")).startswith(f"portside {table} ")}
        out = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True,
                             check=False).stdout
        rules = sum(1 for item in json.loads(out or "{}").get("nftables", []) if "rule" in item)
        return links, rules

    # -- the checks after every crash ---------------------------------------------------------------------------
    def check_whole(self) -> None:
        """The engine serves, the keeper was re-adopted, and the data root holds only whole things."""
        assert self.d.request("GET", "/_ping")[0] == 200
        state = json.loads(self.ok("inspect", KEEPER))[0]["State"]
        assert state["Running"] is True and state["Pid"] == self.keeper_pid, state
        assert self.ok("exec", KEEPER, "echo", "adopted").strip() == "adopted"
        image = self.d.data_root / "image"
        for blob in (image / "content" / "blobs" / "sha256").iterdir():
            h = hashlib.sha256(blob.read_bytes()).hexdigest()
            assert h == blob.name, f"blob {blob.name} holds other content"
        snaps = image / "snapshots"
        for s in snaps.iterdir():
            assert not s.name.startswith("tmp-"), f"a half-made snapshot is left: {s}"
            if len(s.name) == 64:
                assert (s / "meta.json").is_file() and (s / "fs").is_dir(), s
        db = sqlite3.connect(f"file:{image / 'images.db'}?mode=ro", uri=True)
        try:
            layers = {r[0] for r in db.execute("SELECT id FROM container_layers")}
        finally:
            db.close()
        records = {p.name for p in (self.d.data_root / "containers").iterdir()}
        for cid in records:
            assert (self.d.data_root / "containers" / cid / "config.v2.json").is_file(), cid
        assert {cid for cid in layers if not cid.startswith("build-")} == records
        assert {p.name for p in (image / "layers").iterdir()} == layers
        for v in (self.d.data_root / "volumes").iterdir():
            assert (v / "meta.json").is_file(), f"a volume directory without its record: {v}"
        assert mounts_below(self.d.data_root) == []
        running = set(self.ok("ps", "-q", "--no-trunc").split())
        for m in mounts_below(self.d.exec_root):
            # a running container's rootfs (and what is mounted in it) and its netns file, nothing else
            rel = Path(m).relative_to(self.d.exec_root).parts
            assert rel[0] in ("bundles", "netns") and rel[1] in running, f"a mount nothing uses: {m}"


@contextlib.contextmanager
def crash_daemon(d: PortsideDaemon, registry: Registry, *keeper_args: str) -> Iterator[CrashDaemon]:
    """Starts `d` with the test bed's busybox and a running keeper container (`keeper_args` go before the image
    in its `docker run`); afterwards removes the keeper, stops `d` and clears every trace of it, also when a test
    left it dead."""
    try:
        d.start(timeout=60)
        src = f"{registry.host}/testbed/busybox:latest"
        assert d.docker("pull", "-q", src).returncode == 0
        assert d.docker("tag", src, "busybox:latest").returncode == 0
        out = d.docker("run", "-d", "--name", KEEPER, *keeper_args, "busybox", "sleep", "3600")
        assert out.returncode == 0, out.stderr
        pid = json.loads(d.docker("inspect", KEEPER).stdout)[0]["State"]["Pid"]
        yield CrashDaemon(d, "busybox", registry, keeper_pid=pid)
    finally:
        with contextlib.suppress(Exception):
            if d.proc is None or d.proc.poll() is not None:
                d.start(timeout=60)
            d.docker("rm", "-f", KEEPER)
        d.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)


@pytest.fixture(scope="module")
def crash(registry: Registry) -> Iterator[CrashDaemon]:
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    with crash_daemon(new_daemon(), registry) as c:
        yield c


def poll(cond: object, timeout: float = 30, what: str = "") -> None:
    """Waits until `cond()` is true."""
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or cond}")
        time.sleep(0.1)
