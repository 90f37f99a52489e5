"""New supervisors forked from a live one or from the engine's zygote (fast create, memory shared copy-on-write)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.exec.runtime import Runtime
from tests.exec.conftest import MakeBundle, new_id, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""


def _supervisor_cmdline(rt: Runtime, cid: str) -> str:
    st = json.loads((rt.exec_root / cid / "state.json").read_text())
    return Path(f"/proc/{st['supervisor_pid']}/cmdline").read_bytes().replace(b"\0", b" ").decode()


async def test_supervisor_forked_from_a_live_one_outlives_it(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "100"])
    first, second = new_id(), new_id()
    await runtime.create(first, b.dir, log_path=b.log)
    try:
        await runtime.start(first)
        c = make_bundle(["sh", "-c", "sleep 0.3; echo second"])
        await runtime.create(second, c.dir, log_path=c.log)
        assert first in _supervisor_cmdline(runtime, second)  # forked from the first one's supervisor
        await runtime.start(second)
        await runtime.delete(first, force=True)  # the parent goes; the forked one carries on
        st = await asyncio.wait_for(runtime.wait(second), 10)
        assert st.exit_code == 0 and c.stream("stdout") == "second\n"
    finally:
        for cid in (first, second):
            if cid in runtime.list():
                await runtime.delete(cid, force=True)


async def test_zygote_lives_while_the_runtime_does(runtime: Runtime, make_bundle: MakeBundle) -> None:
    rt = Runtime(runtime.exec_root, runtime.cgroup_parent, zygote=True, fork_supervisors=True)
    try:
        b = make_bundle(["sh", "-c", "echo $$"])
        assert (await run(rt, b)).exit_code == 0 and b.stream("stdout") == "1\n"
        zpath = rt._zygote_path
        assert zpath is not None and zpath.exists()
        zygotes = [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(zpath).encode() in _cmdline(p)]
        assert len(zygotes) == 1
    finally:
        rt.close()
    for _ in range(100):
        if not zygotes[0].exists():
            break
        await asyncio.sleep(0.02)
    assert not zygotes[0].exists() and not zpath.exists()  # closing the runtime ends its zygote


def test_zygote_modules_leave_threading_out() -> None:
    """threading's at-fork hook writes to shared objects in every forked supervisor (~0.4 MiB private each)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import engine.exec.supervisor, engine.exec.container; "
            "print('threading' in sys.modules)")  # fmt: skip
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-S", "-E", "-c", code, root], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_rehearsal_leaves_nothing_behind(tmp_path: Path) -> None:
    """The zygote's rehearsal runs a stand-in container (a forked child, a log, a state file) in a scratch dir."""
    scratch = tmp_path / "pst-rehearsal"
    root = str(Path(__file__).resolve().parents[2])
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); from engine.exec import supervisor as s\n"
            "s.rehearse(sys.argv[2])\n"
            "try:\n    os.waitpid(-1, os.WNOHANG); print('child left')\n"
            "except ChildProcessError:\n    print('no children')\n")
    out = subprocess.run([sys.executable, "-S", "-E", "-c", code, root, str(scratch)], capture_output=True,
                         text=True, check=True, timeout=30)  # fmt: skip
    assert out.stdout.strip() == "no children"
    assert not scratch.exists()


def test_stale_rehearsal_dirs_are_removed(tmp_path: Path) -> None:
    """A zygote killed mid-rehearsal leaves its scratch dir; the next zygote removes it, not a live one's."""
    from engine.exec.supervisor import remove_stale_rehearsals

    dead_pid = subprocess.Popen(["true"])  # a pid that has exited
    dead_pid.wait()
    stale, live = tmp_path / f".rehearsal-{dead_pid.pid}", tmp_path / f".rehearsal-{os.getpid()}"
    for d in (stale, live):
        d.mkdir()
        (d / "log").write_text("x")
    remove_stale_rehearsals(str(tmp_path))
    assert not stale.exists() and (live / "log").exists()
