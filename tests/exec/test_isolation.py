"""Real containers on the busybox image: isolation and Docker's hardening, seen from inside."""

from __future__ import annotations

import asyncio
import json

import pytest

from engine.errors import Conflict
from engine.exec.runtime import Runtime
from tests.exec.conftest import MakeBundle, new_id, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PROBE = r"""
echo "pid=$$"
echo "procs=$(ls /proc | grep '^[0-9]' | tr '\n' ' ')"
echo "hostname=$(hostname)"
echo "uid=$(id -u)"
grep -E '^(CapEff|CapBnd|CapPrm|CapInh|CapAmb|Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\t'
"""


def _fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=") if "=" in line else line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


async def test_root_container_sees_only_itself_with_docker_defaults(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", PROBE], {"Hostname": "pst-iso"})
    st = await run(runtime, b)
    assert st.exit_code == 0, b.stream("stderr")
    f = _fields(b.stream("stdout"))
    assert f["pid"] == "1"  # the command is PID 1
    pids = [int(p) for p in f["procs"].split()]
    assert 1 in pids and len(pids) <= 5 and max(pids) < 50  # sh, its subshell, ls, grep: no host process
    assert f["hostname"] == "pst-iso"
    assert f["CapEff"] == "00000000a80425fb"
    assert f["CapBnd"] == "00000000a80425fb"
    assert f["CapInh"] == f["CapAmb"] == "0000000000000000"
    assert f["Seccomp"] == "2"
    assert f["NoNewPrivs"] == "0"


async def test_non_root_user_has_no_effective_capabilities(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", PROBE], {"User": "user"}, {"SecurityOpt": ["no-new-privileges"]})
    st = await run(runtime, b)
    assert st.exit_code == 0, b.stream("stderr")
    f = _fields(b.stream("stdout"))
    assert f["uid"] == "1000"
    assert f["CapEff"] == f["CapPrm"] == "0000000000000000"
    assert f["CapBnd"] == "00000000a80425fb"
    assert f["NoNewPrivs"] == "1"
    assert f["Seccomp"] == "2"


WRITES = r"""
try() { if out=$(sh -c "$1" 2>&1); then echo "ok $2"; else echo "denied $2: $out" | head -1; fi; }
try 'cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness' sysvm
try 'echo x > /proc/sys/kernel/domainname' procsys
try 'touch /sys/pst-test' sys
try 'echo 1 > /sys/fs/cgroup/pids/pids.max || echo 1 > /sys/fs/cgroup/pids.max' cgroupfs
try 'mount -t tmpfs none /tmp' mount
try 'unshare -m true' unshare
try 'mkdir -p /tmp/x && mount --bind /bin /tmp/x' bindmount
try 'touch /tmp/ok' tmpwrite
echo "timer_list=$(wc -c < /proc/timer_list)"
echo "keys=$(wc -c < /proc/keys)"
echo "ro=$(grep -cE ' /proc/(bus|fs|sys) ro,' /proc/self/mountinfo)"
echo "masks=$(grep -cE ' /proc/(acpi|keys|timer_list) ' /proc/self/mountinfo)"
"""


async def test_masked_and_readonly_paths_and_mount_unshare_fail(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", WRITES])
    st = await run(runtime, b)
    assert st.exit_code == 0, b.stream("stderr")
    out = b.stream("stdout")
    for what in ("sysvm", "procsys", "sys", "cgroupfs", "mount", "unshare", "bindmount"):
        line = next(line for line in out.splitlines() if line.split(":")[0].split()[-1] == what)
        assert line.startswith(f"denied {what}:"), out
        assert "not found" not in line and ("denied" in line[7:] or "not permitted" in line or "Read-only" in line)
    assert "ok tmpwrite" in out  # the probe itself can write where it should
    f = _fields(out)
    assert f["timer_list"] == "0" and f["keys"] == "0"  # masked by /dev/null
    assert f["ro"] == "3"  # read-only paths: mounts of their own, read-only
    assert f["masks"] == "3"  # each one a mount of its own


async def test_readonly_rootfs_and_fresh_network(runtime: Runtime, make_bundle: MakeBundle) -> None:
    script = (
        "touch /x 2>/dev/null && echo rw || echo ro; ls /sys/class/net | tr '\\n' ' '; echo; "
        "touch /dev/shm/ok && echo shm"
    )
    b = make_bundle(["sh", "-c", script], {}, {"ReadonlyRootfs": True})
    st = await run(runtime, b)
    assert st.exit_code == 0, b.stream("stderr")
    out = b.stream("stdout")
    assert out.startswith("ro\n")
    assert out.split("\n")[1].split() == ["lo"]  # a fresh network namespace with only lo
    assert "shm" in out


async def test_stdout_and_stderr_stay_apart_in_order(runtime: Runtime, make_bundle: MakeBundle) -> None:
    script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; printf partial"
    b = make_bundle(["sh", "-c", script])
    st = await run(runtime, b)
    assert st.exit_code == 0
    assert b.stream("stdout") == "out1\nout2\nout3\nout4\nout5\npartial"
    assert b.stream("stderr") == "err1\nerr2\nerr3\nerr4\nerr5\n"
    entries = b.logs()
    assert all(e["time"].endswith("Z") and "T" in e["time"] for e in entries)
    assert entries[0]["log"] == "out1\n"


async def test_exit_codes(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "exit 3"])
    assert (await run(runtime, b)).exit_code == 3


async def test_kill_and_stop(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "100"])
    cid = new_id()
    await runtime.create(cid, b.dir, log_path=b.log)
    try:
        assert runtime.state(cid).status == "created"
        pid = await runtime.start(cid)
        st = runtime.state(cid)
        assert st.status == "running" and st.pid == pid and st.started_at
        await runtime.kill(cid, 9)
        st = await asyncio.wait_for(runtime.wait(cid), 10)
        assert st.status == "exited" and st.exit_code == 137 and not st.oom_killed
        with pytest.raises(Conflict):
            await runtime.kill(cid, 9)
    finally:
        await runtime.delete(cid, force=True)
    # sleep as PID 1 has no SIGTERM handler, so the kernel ignores it: stop must fall back to SIGKILL
    cid = new_id()
    await runtime.create(cid, b.dir, log_path=b.log)
    try:
        await runtime.start(cid)
        with pytest.raises(Conflict):
            await runtime.delete(cid)
        st = await runtime.stop(cid, 15, timeout=0.5)
        assert st.exit_code == 137
    finally:
        await runtime.delete(cid, force=True)
    assert cid not in runtime.list()


async def test_json_log_rotates_at_max_size_keeping_max_file(runtime: Runtime, make_bundle: MakeBundle) -> None:
    # 300 lines of ~100 bytes of JSON each: about 30 KB through a 4 KB cap and 3 files
    b = make_bundle(["sh", "-c", "for i in $(seq 1 300); do echo line-$i; done"])
    st = await run(runtime, b, log_max_size=4096, log_max_file=3)
    assert st.exit_code == 0
    files = sorted(p.name for p in b.log.parent.iterdir() if p.name.startswith(b.log.name))
    assert files == [b.log.name, b.log.name + ".1", b.log.name + ".2"]
    for name in files:
        assert (b.log.parent / name).stat().st_size <= 4096
    lines = []
    for name in reversed(files):  # oldest first
        lines += [json.loads(x)["log"] for x in (b.log.parent / name).read_text().splitlines()]
    assert lines[-1] == "line-300\n"
    numbers = [int(x.split("-")[1]) for x in lines]
    assert numbers == list(range(numbers[0], 301))  # contiguous: nothing lost inside the kept files
    assert numbers[0] > 1  # the oldest went
