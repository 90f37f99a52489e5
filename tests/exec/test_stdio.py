"""attach (several clients, stdin, stdin_once), the pty (from the container's devpts, resize) and exec."""

from __future__ import annotations

import asyncio

import pytest

from engine.exec.runtime import ContainerStartError, Runtime, Stream
from tests.exec.conftest import MakeBundle, new_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def read_all(s: Stream, timeout: float = 20) -> dict[int, bytes]:
    out = {1: b"", 2: b""}

    async def go() -> None:
        while (item := await s.read()) is not None:
            out[item[0]] += item[1]

    await asyncio.wait_for(go(), timeout)
    return out


async def read_until(s: Stream, needle: bytes, timeout: float = 20) -> bytes:
    buf = b""

    async def go() -> None:
        nonlocal buf
        while needle not in buf:
            item = await s.read()
            if item is None:
                raise AssertionError(f"stream ended before {needle!r}: {buf!r}")
            buf += item[1]

    await asyncio.wait_for(go(), timeout)
    return buf


async def test_attach_two_clients_and_stdin_once(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh", "-c", "while read line; do echo got:$line; echo e:$line >&2; done; echo bye"])
    cid = new_id()
    await runtime.create(cid, b.dir, log_path=b.log, open_stdin=True, stdin_once=True)
    try:
        first = await runtime.attach(cid, stdin=True)
        second = await runtime.attach(cid, stdout=True, stderr=False)
        await runtime.start(cid)
        await first.write(b"one\ntwo\n")
        await first.close_stdin()  # stdin_once: the container's stdin closes with the first client's
        got1 = await read_all(first)
        got2 = await read_all(second)
        assert got1[1] == b"got:one\ngot:two\nbye\n" and got1[2] == b"e:one\ne:two\n"
        assert got2[1] == b"got:one\ngot:two\nbye\n" and got2[2] == b""
        assert first.exit_code == 0
        st = await runtime.wait(cid)
        assert st.exit_code == 0
        assert b.stream("stdout") == "got:one\ngot:two\nbye\n"
        await first.close()
        await second.close()
    finally:
        await runtime.delete(cid, force=True)


async def test_tty_is_the_containers_own_pty_and_resizes(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sh"], {"Tty": True, "OpenStdin": True})
    cid = new_id()
    await runtime.create(cid, b.dir, log_path=b.log, tty=True, open_stdin=True)
    try:
        s = await runtime.attach(cid, stdin=True)
        await runtime.start(cid)
        await s.resize(33, 111)
        await s.write(b"tty; stty size; echo $TERM; exit 5\n")
        out = await read_all(s)
        text = out[1].decode()
        assert out[2] == b""  # a tty has one stream
        assert "/dev/pts/0" in text
        assert "33 111" in text
        assert "xterm" in text
        assert "\r\n" in text  # the line discipline of a real pty
        assert (await runtime.wait(cid)).exit_code == 5
        assert "33 111" in b.stream("stdout")
    finally:
        await runtime.delete(cid, force=True)


async def test_exec_joins_every_namespace_and_reports_its_exit(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "100"], {"Hostname": "pst-exec"})
    cid = new_id()
    await runtime.create(cid, b.dir, log_path=b.log)
    try:
        await runtime.start(cid)
        script = (
            "hostname; ps -o pid,comm; cat /proc/self/cgroup | head -3; "
            "grep -E '^(CapEff|Seccomp)' /proc/self/status; echo err >&2; exit 7"
        )
        proc = runtime.exec_process(cid, ["sh", "-c", script])
        s = await runtime.exec(cid, proc)
        out = await read_all(s)
        text = out[1].decode()
        assert s.exit_code == 7
        assert out[2] == b"err\n"
        assert text.startswith("pst-exec\n")
        assert "    1 sleep" in text  # the container's pid namespace
        assert ":/\n" in text  # the container's cgroup namespace: it sees its cgroup as the root
        assert "CapEff:\t00000000a80425fb" in text and "Seccomp:\t2" in text
        # a non-root user, with stdin
        proc = runtime.exec_process(cid, ["sh", "-c", "id -u; cat"], user="user")
        s = await runtime.exec(cid, proc, stdin=True)
        await s.write(b"hello\n")
        await s.close_stdin()
        out = await read_all(s)
        assert out[1] == b"1000\nhello\n" and s.exit_code == 0
        # a tty
        s = await runtime.exec(cid, runtime.exec_process(cid, ["sh", "-c", "tty; exit 3"], tty=True))
        out = await read_all(s)
        assert out[1].startswith(b"/dev/pts/") and s.exit_code == 3
        # Docker's errors
        with pytest.raises(ContainerStartError) as exc:
            await runtime.exec(cid, runtime.exec_process(cid, ["nosuch"]))
        assert "executable file not found in $PATH" in exc.value.message and exc.value.exit_code == 127
        assert runtime.state(cid).status == "running"
    finally:
        await runtime.delete(cid, force=True)
