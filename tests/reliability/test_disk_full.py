"""A full data root (a small tmpfs under a daemon) during a pull, a build and log writing: the client gets a clear
error (`no space left on device`, as Docker's), nothing half-written is kept or trusted, the engine keeps serving,
and once there is room again the same operation works. Plus log rotation under a flood: a container's json-file or
local log stays within its max-size x max-file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import PortsideDaemon, new_daemon, remove_daemon_dirs
from tests.reliability.conftest import CrashDaemon, mounts_below
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")

SIZE_MIB = 400  # above the 256 MiB a pull keeps free (engine/images/unpack.Limits), so a pull fits once freed
ENOSPC = "no space left on device"


class Full:
    """A daemon on a tmpfs data root of SIZE_MIB, and a filler file that takes what room a test wants gone."""

    def __init__(self, d: PortsideDaemon, busybox: str, nginx: str) -> None:
        self.d = d
        self.busybox = busybox
        self.nginx = nginx
        self.filler = d.data_root / "pst-filler"

    def ok(self, *args: str) -> str:
        out = self.d.docker(*args)
        assert out.returncode == 0, f"docker {' '.join(args)}: {out.stderr}"
        return out.stdout

    def free(self) -> int:
        st = os.statvfs(self.d.data_root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """Takes all but `leave` bytes of the data root."""
        self.unfill()
        with open(self.filler, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, max(0, self.free() - leave))

    def unfill(self) -> None:
        self.filler.unlink(missing_ok=True)

    @contextlib.contextmanager
    def room(self, leave: int) -> Iterator[None]:
        self.fill(leave)
        try:
            yield
        finally:
            self.unfill()

    def net_state(self) -> tuple[set[str], int]:
        return CrashDaemon.net_state(self)  # type: ignore[arg-type]  # it reads only .d

    def check_whole(self) -> None:
        """The engine serves, and what the data root holds is whole: blobs match their digests, no half-made
        snapshot, no ingest taken for a blob, no scratch of a build left."""
        assert self.d.request("GET", "/_ping")[0] == 200
        self.ok("info")
        image = self.d.data_root / "image"
        for blob in (image / "content" / "blobs" / "sha256").iterdir():
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"blob {blob.name} is not whole"
        for s in (image / "snapshots").iterdir():
            assert not s.name.startswith("tmp-"), f"a half-made snapshot is left: {s}"
        build = self.d.data_root / "build"
        assert not build.exists() or list(build.iterdir()) == []
        assert mounts_below(self.d.data_root) == []


@pytest.fixture(scope="module")
def full(registry: Registry) -> Iterator[Full]:
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    d = new_daemon()
    d.data_root.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MIB}m,mode=0711", "portside-test-full",
                    str(d.data_root)], check=True)
    try:
        d.start(timeout=60)
        f = Full(d, f"{registry.host}/testbed/busybox:latest", f"{registry.host}/testbed/nginx:latest")
        f.ok("pull", "-q", f.busybox)
        yield f
    finally:
        d.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)  # the tmpfs too (unmounted with what is below it)


def test_pull_onto_a_full_disk_fails_clearly_and_pulls_later(full: Full) -> None:
    with full.room(256 * 1024):
        out = full.d.docker("pull", full.nginx)
        assert out.returncode != 0
        assert ENOSPC in out.stderr.lower(), out.stderr
        assert full.d.docker("image", "inspect", full.nginx).returncode != 0
        full.check_whole()
        # it serves: what reads works, what must write says why it cannot and leaves nothing behind
        names = full.ok("ps", "-a", "--format", "{{.Names}}")
        assert full.ok("images", "--format", "{{.Repository}}").split() == [full.busybox.rsplit(":", 1)[0]]
        links, rules = full.net_state()
        # a start's records are a few KiB (compact JSON): what 256 KiB left would not always stop, 16 KiB does
        full.fill(16 * 1024)
        out = full.d.docker("run", "--name", "pst-full-run", "-p", "127.0.0.1::80", full.busybox, "true")
        assert out.returncode != 0 and ENOSPC in out.stderr.lower(), out.stderr
        # as on Docker, a container whose start failed stays (created, its error kept), with nothing of its start
        if full.ok("ps", "-a", "--format", "{{.Names}}") != names:
            state = json.loads(full.ok("inspect", "pst-full-run"))[0]["State"]
            assert state["Running"] is False and state["Status"] == "created", state
        netns = full.d.exec_root / "netns"
        assert not netns.exists() or list(netns.iterdir()) == []
        assert [m for m in mounts_below(full.d.exec_root) if "/bundles/" in m] == []
        assert full.net_state() == (links, rules)
    full.d.docker("rm", "-f", "pst-full-run")
    assert full.ok("ps", "-a", "--format", "{{.Names}}") == names
    assert full.ok("run", "--rm", full.busybox, "echo", "serving").strip() == "serving"
    full.ok("pull", full.nginx)  # resumed or started over, and verified
    ingest = full.d.data_root / "image" / "content" / "ingest"
    assert list(ingest.iterdir()) == []
    assert "nginx" in full.ok("run", "--rm", full.nginx, "nginx", "-v") + "nginx"
    full.check_whole()
    full.ok("rmi", full.nginx)


def _build(full: Full, ctx: Path, tag: str) -> subprocess.CompletedProcess[str]:
    os.environ["DOCKER_BUILDKIT"] = "0"
    try:
        return full.d.docker("build", "-t", tag, str(ctx))
    finally:
        os.environ.pop("DOCKER_BUILDKIT", None)


def test_build_whose_layer_does_not_fit_fails_clearly_and_leaves_nothing(full: Full, tmp_path: Path) -> None:
    # the RUN step's 8 MiB (random: the layer blob is as big) fit in the container's upper dir; the layer blob
    # written from it while the step is committed does not
    (tmp_path / "Dockerfile").write_text(f"FROM {full.busybox}\nRUN head -c 8388608 /dev/urandom > /big\n")
    images = set(full.ok("images", "-aq", "--no-trunc").split())
    containers = set(full.ok("ps", "-aq", "--no-trunc").split())
    with full.room(12 << 20):
        out = _build(full, tmp_path, "pst-full-build")
        assert out.returncode != 0
        assert ENOSPC in (out.stdout + out.stderr).lower(), out.stdout + out.stderr
        assert full.d.docker("image", "inspect", "pst-full-build").returncode != 0
        assert set(full.ok("images", "-aq", "--no-trunc").split()) == images
        assert full.free() >= 3 << 20  # the blob that did not fit is not kept: only the step's 8 MiB are used
        full.check_whole()
    for cid in set(full.ok("ps", "-aq", "--no-trunc").split()) - containers:
        full.ok("rm", "-f", cid)  # a failed step's container stays, as on Docker (its upper dir: the 8 MiB)
    out = _build(full, tmp_path, "pst-full-build")
    assert out.returncode == 0, out.stdout + out.stderr
    assert full.ok("run", "--rm", "pst-full-build", "wc", "-c", "/big").split()[0] == "8388608"
    full.ok("rmi", "pst-full-build")
    full.check_whole()


def test_build_whose_run_step_fills_the_disk_fails_with_the_step(full: Full, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {full.busybox}\nRUN head -c 8388608 /dev/zero > /big\n")
    images = set(full.ok("images", "-aq", "--no-trunc").split())
    containers = set(full.ok("ps", "-aq", "--no-trunc").split())
    with full.room(2 << 20):
        out = _build(full, tmp_path, "pst-full-run")
        assert out.returncode != 0
        text = (out.stdout + out.stderr).lower()
        # the step's own process met the full disk (busybox says so in its words) and the step failed with it
        assert "returned a non-zero code: 1" in text, text
        assert set(full.ok("images", "-aq", "--no-trunc").split()) == images
        full.check_whole()
    for cid in set(full.ok("ps", "-aq", "--no-trunc").split()) - containers:
        full.ok("rm", "-f", cid)


def _log_lines(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # each line whole JSON, or this raises


def test_logs_on_a_full_disk_are_dropped_and_the_container_runs_on(full: Full) -> None:
    cid = full.ok("run", "-d", "--name", "pst-full-logs", full.busybox, "sh", "-c",
                  "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.01; done").strip()
    try:
        log = full.d.data_root / "containers" / cid / f"{cid}-json.log"
        deadline = time.monotonic() + 30
        while not log.exists() or log.stat().st_size == 0:
            assert time.monotonic() < deadline, "no log line came"
            time.sleep(0.05)
        full.fill(0)
        with contextlib.suppress(OSError), open(full.filler, "ab") as f:
            f.write(b"x" * 65536)  # any page fallocate's rounding left: taken too
        sup = full.d.exec_root / "rt" / cid / "supervisor.log"
        try:
            deadline = time.monotonic() + 30
            while not sup.exists() or ENOSPC not in sup.read_text().lower():  # said once, at the first lost line
                assert time.monotonic() < deadline, "no write of the log failed"
                time.sleep(0.05)
            size = log.stat().st_size
            time.sleep(0.5)  # fifty lines the container writes meanwhile, with no room for them
            assert log.stat().st_size == size
            state = json.loads(full.ok("inspect", "pst-full-logs"))[0]["State"]
            assert state["Running"] is True  # its supervisor did not die with the write
            assert full.ok("ps", "-q", "--no-trunc").split() == [cid]
            _log_lines(log)  # no half entry in the file
        finally:
            full.unfill()
        size = log.stat().st_size
        deadline = time.monotonic() + 30
        while log.stat().st_size <= size:  # written again once there is room
            assert time.monotonic() < deadline, "the log was not written again"
            time.sleep(0.05)
        lines = _log_lines(log)
        assert lines[-1]["log"].startswith("line ")
        assert full.ok("logs", "--tail", "1", "pst-full-logs").startswith("line ")
        assert "writing" in sup.read_text() and "again" in sup.read_text()
    finally:
        full.d.docker("rm", "-f", "pst-full-logs")


@pytest.mark.parametrize(("driver", "max_file"), [("json-file", 3), ("local", 2)])
def test_a_flooding_container_stays_within_its_log_limits(full: Full, driver: str, max_file: int) -> None:
    name = f"pst-flood-{driver}"
    max_size = 50_000
    # 4.25 MB of 17-byte lines as fast as the container can write them, then a last line
    cid = full.ok("run", "-d", "--name", name, "--log-driver", driver, "--log-opt", f"max-size={max_size}",
                  "--log-opt", f"max-file={max_file}", full.busybox, "sh", "-c",
                  "yes 0123456789abcdef | head -n 250000; echo the-end").strip()
    try:
        assert full.ok("wait", name).strip() == "0"
        cdir = full.d.data_root / "containers" / cid
        files = sorted(p for p in cdir.iterdir() if p.name.startswith(f"{cid}-json.log"))
        assert 1 <= len(files) <= max_file, files
        for f in files:
            assert f.stat().st_size <= max_size, (f, f.stat().st_size)
            _log_lines(f)
        out = full.ok("logs", "--tail", "2", name).splitlines()
        assert out == ["0123456789abcdef", "the-end"]
    finally:
        full.d.docker("rm", "-f", name)
