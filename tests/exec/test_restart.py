"""Containers outlive the engine: SIGKILL the process that started them, then a new Runtime in this process
re-adopts them (lists, attaches, execs, stops, gets the right exit code and the exits that happened meanwhile)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine.exec.runtime import Runtime
from tests.exec.conftest import MakeBundle, new_id
from tests.exec.test_stdio import read_all, read_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ENGINE = """
import asyncio, sys
from pathlib import Path
from engine.exec.runtime import Runtime

async def main():
    rt = Runtime(Path(sys.argv[1]), sys.argv[2])
    for cid, bundle in zip(sys.argv[3::2], sys.argv[4::2]):
        await rt.create(cid, Path(bundle), log_path=Path(bundle) / "container.log", open_stdin=True)
        await rt.start(cid)
    print("started", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""

TICKER = 'trap "exit 42" TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done'


def _descendants(pid: int) -> set[int]:
    out: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(entry.name))
    return out


async def test_containers_survive_a_killed_engine_and_are_readopted(runtime: Runtime, make_bundle: MakeBundle) -> None:
    ticker = make_bundle(["sh", "-c", TICKER])
    quick = make_bundle(["sh", "-c", "sleep 0.3; exit 9"])
    ids = [new_id(), new_id()]
    env = dict(os.environ, PYTHONPATH=str(Path(engine.__file__).resolve().parents[1]))
    eng = subprocess.Popen(
        [sys.executable, "-c", ENGINE, str(runtime.exec_root), runtime.cgroup_parent,
         ids[0], str(ticker.dir), ids[1], str(quick.dir)],
        stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert eng.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(eng.stdout.readline), 30)
        assert line.strip() == b"started"
        assert _descendants(eng.pid) == set()  # the supervisors left the engine's process tree
        eng.send_signal(signal.SIGKILL)
        eng.wait()
    finally:
        if eng.poll() is None:
            eng.kill()
            eng.wait()
    try:
        # the container keeps running and logging without any engine
        size = ticker.log.stat().st_size
        for _ in range(500):
            if ticker.log.stat().st_size > size:
                break
            await asyncio.sleep(0.02)
        assert ticker.log.stat().st_size > size

        rt = Runtime(runtime.exec_root, runtime.cgroup_parent)  # a new engine
        assert set(ids) <= set(rt.list())
        assert rt.state(ids[0]).status == "running"
        # the quick one ended while no engine was there: its exit status was recorded anyway
        st = await asyncio.wait_for(rt.wait(ids[1]), 10)
        assert st.status == "exited" and st.exit_code == 9

        exits = rt.exits()
        first_exit = asyncio.ensure_future(anext(exits))

        s = await rt.attach(ids[0])
        assert b"tick" in await read_until(s, b"tick")
        e = await rt.exec(ids[0], rt.exec_process(ids[0], ["sh", "-c", "echo in-$(hostname); exit 4"]))
        out = await read_all(e)
        assert out[1].startswith(b"in-") and e.exit_code == 4

        st = await rt.stop(ids[0], signal.SIGTERM, timeout=10)
        assert st.exit_code == 42  # the container's own TERM trap ran: a clean stop, not a SIGKILL
        await read_all(s)
        assert s.exit_code == 42
        await s.close()
        reported = await asyncio.wait_for(first_exit, 10)
        assert reported.id == ids[0] and reported.exit_code == 42
        await exits.aclose()
    finally:
        for cid in ids:
            with contextlib.suppress(Exception):
                await runtime.delete(cid, force=True)
