"""Supervisor control sockets under an exec-root of any length: `<exec_root>/<64-hex id>/ctl.sock` may exceed
AF_UNIX's 108 bytes, and every path (zygote, forked and fresh supervisors, a later engine) must still work."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from engine.exec.runtime import Runtime
from tests.exec.conftest import MakeBundle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def _exec_output(rt: Runtime, cid: str, args: list[str]) -> tuple[bytes, int | None]:
    stream = await rt.exec(cid, rt.exec_process(cid, args))
    out = b""
    while (item := await stream.read()) is not None:
        out += item[1]
    await stream.close()
    return out, stream.exit_code


async def test_long_exec_root(runtime: Runtime, make_bundle: MakeBundle) -> None:
    base = Path(tempfile.mkdtemp(prefix="portside-test-exec-long-"))
    root = base / ("long-exec-root-" + "x" * 70)
    ids = [uuid.uuid4().hex * 2 for _ in range(2)]  # Docker's 64-hex ids
    assert len(str(root / ids[0] / "ctl.sock")) > 108
    rt = Runtime(root, runtime.cgroup_parent, zygote=True)
    fresh = Runtime(root, runtime.cgroup_parent, fork_supervisors=False)  # a new interpreter binds the socket
    try:
        b = make_bundle(["sleep", "100"])
        await rt.create(ids[0], b.dir, log_path=b.log)  # forked from the zygote, whose socket is long too
        assert rt._zygote_path is not None and len(str(rt._zygote_path)) > 108
        await rt.start(ids[0])
        c = make_bundle(["sh", "-c", "echo fresh"])
        await fresh.create(ids[1], c.dir, log_path=c.log)
        await fresh.start(ids[1])
        assert (await asyncio.wait_for(fresh.wait(ids[1]), 30)).exit_code == 0
        assert c.stream("stdout") == "fresh\n"
        assert await _exec_output(rt, ids[0], ["echo", "exec ok"]) == (b"exec ok\n", 0)
        # a later engine (a new Runtime, no zygote) finds and drives the container by its socket
        later = Runtime(root, runtime.cgroup_parent)
        assert later.state(ids[0]).status == "running"
        await later.kill(ids[0], 9)
        st = await asyncio.wait_for(later.wait(ids[0]), 30)
        assert st.status == "exited" and st.exit_code == 137
    finally:
        rt.close()
        for cid in ids:
            with contextlib.suppress(Exception):
                await rt.delete(cid, force=True)
        shutil.rmtree(base, ignore_errors=True)
    assert not root.exists() or not list(root.glob("*/ctl.sock"))
