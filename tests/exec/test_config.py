"""Docker's container options on real containers: capabilities, privileged, seccomp, init, sysctls, mounts,
devices, ulimits, env, working dir; and what must not leak in (file descriptors, ignored signals)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from engine.exec.runtime import Runtime
from tests.exec.conftest import MakeBundle, new_id, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k] = v.strip()
    return out


STATUS = "grep -E '^(CapEff|Seccomp|SigIgn|SigBlk|NoNewPrivs):' /proc/self/status"


async def test_nothing_leaks_into_the_container(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["ls", "/proc/self/fd"])
    st = await run(runtime, b)
    assert st.exit_code == 0, b.stream("stderr")
    assert b.stream("stdout").split() == ["0", "1", "2", "3"]  # stdio and ls's own: none of the supervisor's
    b = make_bundle(["grep", "-E", "^(SigIgn|SigBlk):", "/proc/self/status"])
    await run(runtime, b)
    f = _status(b.stream("stdout"))
    assert f["SigIgn"] == "0000000000000000" and f["SigBlk"] == "0000000000000000"


async def test_capabilities_privileged_and_seccomp_options(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", STATUS], {}, {"CapAdd": ["NET_ADMIN"], "CapDrop": ["chown", "CAP_KILL"]})
    await run(runtime, b)
    f = _status(b.stream("stdout"))
    want = (0xA80425FB | (1 << 12)) & ~(1 << 0) & ~(1 << 5)
    assert int(f["CapEff"], 16) == want
    b = make_bundle(["sh", "-c", STATUS], {}, {"CapDrop": ["ALL"]})
    await run(runtime, b)
    assert _status(b.stream("stdout"))["CapEff"] == "0000000000000000"
    b = make_bundle(["sh", "-c", STATUS], {}, {"SecurityOpt": ["seccomp=unconfined"]})
    await run(runtime, b)
    assert _status(b.stream("stdout"))["Seccomp"] == "0"
    b = make_bundle(["sh", "-c", STATUS + "; touch /sys/kernel/pst 2>&1; mount -t tmpfs t /tmp && echo mounted"], {},
                    {"Privileged": True})  # fmt: skip
    await run(runtime, b)
    out = b.stream("stdout")
    f = _status(out)
    host = _status(Path("/proc/self/status").read_text())["CapPrm"]
    assert f["CapEff"] == host and f["Seccomp"] == "0"  # every capability this host grants
    assert "mounted" in out


async def test_init_reaps_and_forwards_signals(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "echo sh=$$; (sleep 0.1 &); sleep 100"], {}, {"Init": True})
    cid = new_id()
    await runtime.create(cid, b.dir, log_path=b.log)
    try:
        await runtime.start(cid)
        for _ in range(200):
            if "sh=" in b.stream("stdout"):
                break
            await asyncio.sleep(0.01)
        assert b.stream("stdout").strip() != "sh=1"  # PID 1 is the init, not the command
        await asyncio.sleep(0.3)  # the orphaned sleep 0.1 has exited and must be reaped by the init
        s = await runtime.exec(cid, runtime.exec_process(cid, ["sh", "-c", "ps -o stat,comm | grep -c '^Z' || true"]))
        from tests.exec.test_stdio import read_all

        assert (await read_all(s))[1].strip() == b"0"
        st = await runtime.stop(cid, 15, timeout=5)
        assert st.exit_code == 143  # SIGTERM reached the command through the init (sh as PID 1 would ignore it)
    finally:
        await runtime.delete(cid, force=True)


async def test_sysctls_mounts_devices_ulimits_env_workdir(runtime: Runtime, make_bundle: MakeBundle) -> None:
    host = Path(tempfile.mkdtemp(prefix="portside-test-bind-"))
    try:
        (host / "in.txt").write_text("from host")
        script = (
            "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax; cat /data/in.txt; echo; "
            "echo w > /rw/out.txt; touch /data/x 2>/dev/null || echo ro-bind; "
            "grep ' /scratch ' /proc/mounts | cut -d' ' -f3; ulimit -n; pwd; echo $FOO; "
            "ls -l /dev/null | cut -c1; mknod /dev/pstsda b 8 0 && (head -c1 /dev/pstsda >/dev/null 2>&1 || echo nodev)"
        )
        b = make_bundle(
            ["sh", "-c", script],
            {"Env": ["FOO=bar"], "WorkingDir": "/work/dir"},
            {
                "Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"},
                "Binds": [f"{host}:/data:ro", f"{host}:/rw"],
                "Tmpfs": {"/scratch": "size=1m"},
                "Ulimits": [{"Name": "nofile", "Soft": 512, "Hard": 1024}],
            },
        )
        st = await run(runtime, b)
        assert st.exit_code == 0, b.stream("stderr")
        out = b.stream("stdout").splitlines()
        assert out[:3] == ["1", "123456789", "from host"]
        assert (host / "out.txt").read_text() == "w\n"
        assert out[3:] == ["ro-bind", "tmpfs", "512", "/work/dir", "bar", "c", "nodev"]
        with pytest.raises(Exception, match="is not in a separate kernel namespace"):
            make_bundle(["true"], {}, {"Sysctls": {"vm.swappiness": "1"}})
    finally:
        for p in host.iterdir():
            p.unlink()
        host.rmdir()
