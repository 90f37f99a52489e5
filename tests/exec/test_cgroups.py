"""cgroups: memory limit and OOM kill, pids limit, freezer, stats, top and update on real containers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import pytest

from engine.exec import cgroups
from engine.exec.runtime import Runtime
from tests.exec.conftest import MakeBundle, new_id, run
from tests.exec.test_stdio import read_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MiB = 1024 * 1024


def _limit_file(kind: str) -> str:
    version, _ = cgroups.layout()
    if kind == "memory":
        return "/sys/fs/cgroup/memory.max" if version == 2 else "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    return "/sys/fs/cgroup/pids.max" if version == 2 else "/sys/fs/cgroup/pids/pids.max"


async def test_memory_limit_is_enforced_and_the_oom_kill_reported(runtime: Runtime, make_bundle: MakeBundle) -> None:
    script = f"cat {_limit_file('memory')}; dd if=/dev/zero of=/dev/null bs=200M count=1; echo rc=$?"
    b = make_bundle(["sh", "-c", script], {}, {"Memory": 32 * MiB, "MemorySwap": 32 * MiB})
    st = await run(runtime, b)
    lines = b.stream("stdout").splitlines()
    assert lines[0] == str(32 * MiB)
    assert lines[1] == "rc=137"  # dd was killed by the OOM killer
    assert st.oom_killed is True and st.exit_code == 0  # Docker's OOMKilled: any OOM kill in the container
    # the memory hog as PID 1: the container dies of it
    b = make_bundle(["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"], {}, {"Memory": 32 * MiB})
    st = await run(runtime, b)
    assert st.oom_killed is True and st.exit_code == 137
    # without a limit the same command runs through
    b = make_bundle(["sh", "-c", "dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null; echo survived"])
    st = await run(runtime, b)
    assert "survived" in b.stream("stdout") and not st.oom_killed and st.exit_code == 0


async def test_pids_limit_stops_a_fork_loop(runtime: Runtime, make_bundle: MakeBundle) -> None:
    pids = _limit_file("pids")
    # the fork loop runs in a child shell; the builtin `read` then counts without a fork of its own
    script = f"cat {pids}; sh -c 'for i in $(seq 1 40); do sleep 3 & done'; read n < {pids[:-4]}.current; echo cur=$n"
    b = make_bundle(["sh", "-c", script], {}, {"PidsLimit": 10})
    st = await run(runtime, b)
    out, err = b.stream("stdout"), b.stream("stderr")
    assert out.splitlines()[0] == "10"
    assert "can't fork" in err or "Resource temporarily unavailable" in err, err
    current = int(out.split("cur=")[1].split()[0])
    assert 5 <= current <= 10  # the sleeps that did start, and never more than the limit
    assert st.status == "exited"


async def _grows(value: Callable[[], int], than: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value() > than:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_pause_freezes_and_unpause_resumes(runtime: Runtime, make_bundle: MakeBundle) -> None:
    # Written aside and renamed: a freeze between `>`'s truncation and the write would leave it empty for good.
    b = make_bundle(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; mv /tmp/n /tmp/count; "
                                 "sleep 0.02; done"])
    counter = b.dir / "upper" / "tmp" / "count"
    cid = new_id()
    await runtime.create(cid, b.dir, log_path=b.log)

    def value() -> int:
        for _ in range(1000):  # up to 10 s: the first write can be slow on a loaded machine
            text = counter.read_text().strip() if counter.exists() else ""
            if text:
                return int(text)
            time.sleep(0.01)
        raise AssertionError("no counter")

    try:
        await runtime.start(cid)
        first = value()
        assert await _grows(value, first)  # it counts
        await runtime.pause(cid)
        assert runtime.state(cid).status == "paused"
        frozen = value()
        await asyncio.sleep(0.3)
        assert value() == frozen  # frozen
        await runtime.resume(cid)
        assert runtime.state(cid).status == "running"
        assert await _grows(value, frozen)  # counting again
        # stop works on a paused container too
        await runtime.pause(cid)
        st = await runtime.stop(cid, 15, timeout=0.2)
        assert st.status == "exited"
    finally:
        await runtime.delete(cid, force=True)


async def test_stats_top_and_update(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "dd if=/dev/zero of=/tmp/f bs=1M count=4 2>/dev/null; sleep 100 & wait"], {},
                    {"Memory": 64 * MiB, "PidsLimit": 50})  # fmt: skip
    cid = new_id()
    await runtime.create(cid, b.dir, log_path=b.log)
    try:
        pid = await runtime.start(cid)
        await asyncio.sleep(0.3)
        stats = await runtime.stats(cid)
        mem = stats["memory_stats"]
        assert mem["limit"] == 64 * MiB
        assert mem["usage"] > 0
        assert "cache" in mem["stats"] or "inactive_file" in mem["stats"] or "file" in mem["stats"]
        assert stats["pids_stats"]["current"] >= 2 and stats["pids_stats"]["limit"] == 50
        assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert stats["cpu_stats"]["system_cpu_usage"] > 0 and stats["cpu_stats"]["online_cpus"] >= 1
        assert "io_service_bytes_recursive" in stats["blkio_stats"]

        top = await runtime.top(cid)
        assert "PID" in top["Titles"] and "CMD" in top["Titles"]
        pids = {int(row[top["Titles"].index("PID")]) for row in top["Processes"]}
        assert pid in pids
        assert any("sleep 100" in row[-1] for row in top["Processes"])
        assert all(len(row) == len(top["Titles"]) for row in top["Processes"])

        await runtime.update(cid, {"Memory": 128 * MiB, "MemorySwap": 256 * MiB, "PidsLimit": 20, "CpuShares": 512})
        s = await runtime.exec(cid, runtime.exec_process(cid, ["cat", _limit_file("memory"), _limit_file("pids")]))
        out = await read_all(s)
        assert out[1].decode().split() == [str(128 * MiB), "20"]
        assert (await runtime.stats(cid))["memory_stats"]["limit"] == 128 * MiB
    finally:
        await runtime.delete(cid, force=True)


@pytest.mark.parametrize("zygote", [False, True], ids=["direct", "staged"])
async def test_init_and_exec_join_every_hierarchy(runtime: Runtime, make_bundle: MakeBundle, zygote: bool) -> None:
    # v1 joins through `tasks` (one thread): the whole process must still land in each controller's cgroup,
    # and so must the processes it forks and the ones `exec` adds
    rt = Runtime(runtime.exec_root, runtime.cgroup_parent, zygote=True) if zygote else runtime
    b = make_bundle(["sh", "-c", "sleep 100 & wait"])
    cid = new_id()
    try:
        if zygote:
            assert await rt.prepare(cid, b.dir, log_path=b.log)
        await rt.create(cid, b.dir, log_path=b.log)
        pid = await rt.start(cid)
        cg = cgroups.Cgroup(f"{runtime.cgroup_parent}/{cid}")
        dirs = cg.dirs()
        assert len(dirs) == (1 if cg.version == 2 else len(cg.mounts)) and all(os.path.isdir(d) for d in dirs)
        for _ in range(100):
            kids = [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
            if kids:
                break
            await asyncio.sleep(0.02)
        for d in dirs:
            procs = {int(p) for p in open(d + "/cgroup.procs").read().split()}
            assert {pid, *kids} <= procs, (d, pid, kids, procs)
        s = await rt.exec(cid, rt.exec_process(cid, ["sh", "-c", "cat /proc/1/cgroup; echo --; cat /proc/self/cgroup"]))
        out = (await read_all(s))[1].decode()
        init_cg, _, exec_cg = out.partition("--\n")
        assert init_cg and init_cg == exec_cg
    finally:
        await rt.delete(cid, force=True)
        if zygote:
            rt.close()
