"""A staged create: `prepare` starts the supervisor and init (cgroup joined) before the spec exists, `create`
finishes it, `discard` gives it up without leaving anything behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.exec import cgroups
from engine.exec.runtime import ContainerStartError, Runtime
from tests.exec.conftest import MakeBundle, new_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def zrt(runtime: Runtime) -> Iterator[Runtime]:
    rt = Runtime(runtime.exec_root, runtime.cgroup_parent, zygote=True)
    try:
        yield rt
    finally:
        rt.close()


def _cgroup_dirs(rt: Runtime, cid: str) -> list[Path]:
    return [p for p in (Path(d) for d in cgroups.Cgroup(f"{rt.cgroup_parent}/{cid}").dirs()) if p.exists()]


async def test_prepare_then_create(zrt: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "cat /proc/self/cgroup; echo done"])
    cid = new_id()
    assert await zrt.prepare(cid, b.dir, log_path=b.log)
    try:
        # the init joins the container's cgroup and waits there, before any spec exists
        dirs = _cgroup_dirs(zrt, cid)
        for _ in range(200):
            if dirs and all((d / "cgroup.procs").read_text().split() for d in dirs):
                break
            await asyncio.sleep(0.01)
        assert dirs and all((d / "cgroup.procs").read_text().split() for d in dirs)
        assert not (zrt.exec_root / cid / "spec").exists()
        await zrt.create(cid, b.dir, log_path=b.log, spec=json.loads((b.dir / "config.json").read_text()))
        await zrt.start(cid)
        st = await asyncio.wait_for(zrt.wait(cid), 30)
        assert st.exit_code == 0
        out = b.stream("stdout")
        assert out.endswith("done\n") and f"/{cid}" not in out  # its own cgroup namespace: it sees itself at /
    finally:
        await zrt.delete(cid, force=True)
    assert not _cgroup_dirs(zrt, cid) and not (zrt.exec_root / cid).exists()


async def test_discard_leaves_nothing(zrt: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["true"])
    cid = new_id()
    assert await zrt.prepare(cid, b.dir, log_path=b.log)
    pids: list[int] = []
    for _ in range(200):
        pids = [int(p) for d in _cgroup_dirs(zrt, cid) for p in (d / "cgroup.procs").read_text().split()]
        if pids:
            break
        await asyncio.sleep(0.01)
    assert pids
    await zrt.discard(cid)
    assert not (zrt.exec_root / cid).exists() and not _cgroup_dirs(zrt, cid)
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    await zrt.discard(cid)  # nothing prepared any more: a no-op


async def test_create_of_another_shape_starts_over(zrt: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "test -t 0 && echo tty"], config={"Tty": True})
    cid = new_id()
    assert await zrt.prepare(cid, b.dir, log_path=b.log)  # prepared without a tty
    try:
        await zrt.create(cid, b.dir, log_path=b.log, tty=True)
        await zrt.start(cid)
        assert (await asyncio.wait_for(zrt.wait(cid), 30)).exit_code == 0
        assert b.stream("stdout").strip() == "tty"
    finally:
        await zrt.delete(cid, force=True)


async def test_failed_create_after_prepare_leaves_nothing(zrt: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["no-such-command"])
    cid = new_id()
    assert await zrt.prepare(cid, b.dir, log_path=b.log)
    with pytest.raises(ContainerStartError) as e:
        await zrt.create(cid, b.dir, log_path=b.log)
    assert e.value.exit_code == 127 and "executable file not found" in str(e.value)
    assert not (zrt.exec_root / cid).exists() and not _cgroup_dirs(zrt, cid)


async def test_a_killed_zygote_is_replaced(zrt: Runtime, make_bundle: MakeBundle) -> None:
    import os
    import signal

    b = make_bundle(["true"])
    zpath = await asyncio.to_thread(zrt._zygote_socket)
    assert zpath is not None
    pid = next(int(p.name) for p in Path("/proc").iterdir()
               if p.name.isdigit() and str(zpath).encode() in _read(p / "cmdline"))  # fmt: skip
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):
        if not Path(f"/proc/{pid}").exists():
            break
        await asyncio.sleep(0.01)
    for _ in range(2):  # the first create finds the zygote gone (and still runs), the next has a new one
        cid = new_id()
        await zrt.prepare(cid, b.dir, log_path=b.log)
        await zrt.create(cid, b.dir, log_path=b.log)
        try:
            await zrt.start(cid)
            assert (await asyncio.wait_for(zrt.wait(cid), 30)).exit_code == 0
        finally:
            await zrt.delete(cid, force=True)
    assert zrt._zygote_path is not None and zrt._zygote_path.exists()
    assert [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and str(zpath).encode() in _read(p / "cmdline")] not in ([], [pid])  # fmt: skip


def _read(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError:
        return b""
