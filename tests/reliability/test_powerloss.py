"""Power-loss style: the daemon is killed and the newest files under its data root lose their last writes (emptied
or cut in half, as delayed allocation leaves files a power cut caught). The engine must start, name in its log
what it dropped or repaired, and carry on: list, pull, run, volumes and networks work."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import PortsideDaemon, new_daemon, remove_daemon_dirs
from tests.reliability.conftest import mounts_below
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")


def newest_files(root: Path, n: int) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, str(p)), reverse=True)
    return files[:n]


def _named_in_log(log: str, path: Path, data_root: Path) -> bool:
    """Whether the recovery pass named what `path` held (for the records it knows)."""
    rel = path.relative_to(data_root).parts
    if rel[0] == "containers" and path.name == "config.v2.json":
        return f"container {rel[1][:12]}" in log
    if rel[0] == "volumes" and path.name == "meta.json":
        return f"volume {rel[1]}" in log
    if rel[:2] == ("image", "images.db"):
        return "image database was unreadable" in log
    if rel[:2] == ("image", "snapshots") and path.name == "meta.json":
        return f"snapshot sha256:{rel[2]}" in log
    return True  # logs, WAL tails, network state: they only have to not stop the engine


@pytest.fixture
def lost(registry: Registry) -> Iterator[PortsideDaemon]:
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    d = new_daemon()
    try:
        d.start()
        src = f"{registry.host}/testbed/busybox:latest"
        for args in (["pull", "-q", src], ["tag", src, "busybox:latest"], ["volume", "create", "pst-pl-vol"],
                     ["network", "create", "pst-pl-net"],
                     ["run", "--rm", "-v", "pst-pl-vol:/v", "busybox", "sh", "-c", "echo kept > /v/f"],
                     ["run", "-d", "--name", "pst-pl-run", "--network", "pst-pl-net", "-v", "pst-pl-vol:/v",
                      "busybox", "sleep", "600"],
                     ["create", "--name", "pst-pl-stopped", "busybox", "true"],
                     ["commit", "pst-pl-run", "pst-pl-commit:1"]):
            out = d.docker(*args)
            assert out.returncode == 0, (args, out.stderr)
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is not None:
            with contextlib.suppress(RuntimeError):
                d.start(timeout=60)
        for args in (["rm", "-f", "-v", "pst-pl-run", "pst-pl-stopped", "pst-pl-again"],
                     ["volume", "rm", "pst-pl-vol"], ["network", "rm", "pst-pl-net"]):
            d.docker(*args)
        d.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)


@pytest.mark.parametrize("count,keep", [(4, 0.0), (12, 0.5), (40, 0.0)], ids=["4-empty", "12-half", "40-empty"])
def test_engine_starts_reports_and_carries_on_after_lost_writes(
    lost: PortsideDaemon, registry: Registry, count: int, keep: float
) -> None:
    d = lost
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait(20)
    damaged = newest_files(d.data_root, count)
    for p in damaged:
        size = p.stat().st_size
        os.truncate(p, int(size * keep))
    log_start = d.log.stat().st_size
    d.start(timeout=60)
    log = d.log.read_text()[log_start:]
    # it serves, every list answers
    for args in (["ps", "-a"], ["images", "-a"], ["volume", "ls"], ["network", "ls"], ["info"]):
        out = d.docker(*args)
        assert out.returncode == 0, (args, out.stderr, log[-3000:])
    unnamed = [str(p.relative_to(d.data_root)) for p in damaged if not _named_in_log(log, p, d.data_root)]
    assert unnamed == [], f"damaged but not reported: {unnamed}\n{log[-3000:]}"
    # and carries on: pull (again, when the image went), run with a volume and the user network
    src = f"{registry.host}/testbed/busybox:latest"
    out = d.docker("pull", "-q", src)
    assert out.returncode == 0, out.stderr
    net = "pst-pl-net" if d.docker("network", "inspect", "pst-pl-net").returncode == 0 else "bridge"
    out = d.docker("run", "--name", "pst-pl-again", "--network", net, "-v", "pst-pl-vol:/v", src, "sh", "-c",
                   "ls /v; echo ok")
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.stdout, out.stderr, log[-3000:])
    assert d.docker("rm", "pst-pl-again").returncode == 0
    # what is listed is usable: every container listed can be inspected
    for cid in d.docker("ps", "-aq").stdout.split():
        assert d.docker("inspect", cid).returncode == 0
    for image in d.docker("images", "-q").stdout.split():
        assert json.loads(d.docker("image", "inspect", image).stdout)[0]["Id"]
    assert mounts_below(d.data_root) == []


def _processes_of(exec_root: Path) -> list[int]:
    """The supervisors (their command line names the exec root) and everything below them."""
    parent: dict[int, int] = {}
    cmdline: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    roots = {pid for pid, cmd in cmdline.items() if str(exec_root) in cmd and pid != os.getpid()}
    out = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in out and pid not in out:
                out.add(pid)
                grew = True
    return sorted(out)


def test_engine_starts_after_a_reboot_style_loss_of_the_exec_root(lost: PortsideDaemon, registry: Registry) -> None:
    """A power cut ends every process and empties the exec root (a tmpfs); the data root says containers ran."""
    from tests.testbed.mounts import unmount_below

    d = lost
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait(20)
    for pid in _processes_of(d.exec_root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    deadline = time.monotonic() + 20
    while _processes_of(d.exec_root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_of(d.exec_root) == []
    unmount_below(d.exec_root)
    for p in d.exec_root.iterdir():  # a tmpfs after a reboot: empty
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    d.start(timeout=60)
    state = json.loads(d.docker("inspect", "pst-pl-run").stdout)[0]["State"]
    assert state["Running"] is False and state["Status"] == "exited"
    assert mounts_below(d.exec_root) == [] and mounts_below(d.data_root) == []
    out = d.docker("start", "pst-pl-run")  # its network, volume and layer are all still usable
    assert out.returncode == 0, out.stderr
    out = d.docker("exec", "pst-pl-run", "cat", "/v/f")
    assert out.returncode == 0 and out.stdout == "kept\n", out.stderr
    out = d.docker("run", "--rm", "--network", "pst-pl-net", "busybox", "true")
    assert out.returncode == 0, out.stderr
