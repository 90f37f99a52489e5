"""TTY parity of exec and attach, through docker-py and the real docker CLI, byte for byte against what dockerd
sends (checked against dockerd 20.10 and moby v28's router): an exec has a pty when it was *created* with Tty,
whatever its start says; the start's Tty only picks the stream (raw stdout, or multiplexed frames); docker-py's
`detachKeys` (lower case, from ~/.docker/config.json) counts; a detach is answered as dockerd answers it and
leaves the process running; attach and detach are events."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.api.conftest import PortsideDaemon
from tests.api.test_parity_containers import _Hijacked, _Pty, _read_pty_until, _wait_exit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# stdout, then stderr: on a pty both are the terminal, so they arrive in this order, each \n made \r\n
CMD = 'sh -c "echo hello out; echo hello err >&2"'
# dockerd's answer on the stream when its own escape proxy ends an exec (its stdin copy wraps term's EscapeError)
DETACHED = b"exec attach failed: error on attach stdin: read escape sequence\r\n"


@pytest.fixture(scope="module")
def api(daemon: PortsideDaemon) -> Iterator[docker.APIClient]:
    c = docker.APIClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def cat(daemon: PortsideDaemon, busybox: str, names: list[str]) -> str:
    """A running container whose init is `cat` on an open stdin (docker-py's ExecDemuxTest's)."""
    name = f"pst-tty-{os.getpid()}-{len(names)}"
    names.append(name)
    assert daemon.docker("run", "-d", "-i", "--name", name, busybox, "cat").returncode == 0
    return name


def test_exec_created_with_tty_has_a_pty_when_the_start_says_no_tty(api: docker.APIClient, cat: str) -> None:
    # docker-py's exec_start sends Tty false unless told: dockerd still runs the process on a pty (the create's
    # Tty) and sends the pty's output, \r\n and all, as stdout frames; stderr is the pty too
    e = api.exec_create(cat, CMD, tty=True)
    assert api.exec_start(e) == b"hello out\r\nhello err\r\n"
    e = api.exec_create(cat, CMD, tty=True)
    assert api.exec_start(e, demux=True) == (b"hello out\r\nhello err\r\n", None)
    e = api.exec_create(cat, CMD, tty=True)
    assert api.exec_start(e, tty=True) == b"hello out\r\nhello err\r\n"


def test_start_tty_without_a_pty_sends_raw_stdout_only(api: docker.APIClient, cat: str) -> None:
    # no pty (the create said no Tty): the output keeps its \n; a raw stream (the start's Tty) has no room for
    # stderr, which dockerd drops
    e = api.exec_create(cat, CMD)
    assert api.exec_start(e, tty=True) == b"hello out\n"
    e = api.exec_create(cat, CMD)
    assert api.exec_start(e, demux=True) == (b"hello out\n", b"hello err\n")


def test_exec_console_size_of_the_create_is_the_pty_size_from_the_start(daemon: PortsideDaemon, cat: str) -> None:
    status, _, raw = daemon.request("POST", f"/v1.50/containers/{cat}/exec", headers={
        "Content-Type": "application/json"}, body=json.dumps({
            "Cmd": ["stty", "size"], "Tty": True, "AttachStdout": True, "ConsoleSize": [31, 97]}).encode())
    assert status == 201, raw
    conn = _Hijacked(daemon, f"/v1.50/exec/{json.loads(raw)['Id']}/start", json.dumps({"Tty": True}).encode())
    try:
        assert conn.status == 101
        # the size is there before the process looks (no resize after the start to race with)
        assert conn.read_to_eof() == b"31 97\r\n"
    finally:
        conn.close()


def test_docker_py_detach_keys_from_its_config_detach_an_exec(api: docker.APIClient, cat: str) -> None:
    # docker-py's test_detach_with_config_file: the keys go in the body as `detachKeys`, which Go's decoder takes
    # for DetachKeys; one ctrl-p then ends the stream
    since = time.time()
    api._general_configs["detachKeys"] = "ctrl-p"
    try:
        e = api.exec_create(cat, "cat", stdin=True, tty=True, stdout=True)
    finally:
        del api._general_configs["detachKeys"]
    assert api.exec_inspect(e)["DetachKeys"] == "EA=="  # the parsed byte, base64
    sock = api.exec_start(e, tty=True, socket=True)._sock
    try:
        sock.settimeout(10)
        sock.sendall(b"abc\n")
        buf = b""
        while b"abc\r\nabc\r\n" not in buf:  # the pty's echo, then cat's copy
            chunk = sock.recv(4096)
            assert chunk, buf
            buf += chunk
        sock.sendall(b"\x10")
        while chunk := sock.recv(4096):
            buf += chunk
        assert buf == b"abc\r\nabc\r\n" + DETACHED
    finally:
        sock.close()
    ex = api.exec_inspect(e)
    assert ex["Running"] is True and ex["ExitCode"] is None, ex  # the detached cat runs on
    assert [p[-1] for p in api.top(cat)["Processes"]] == ["cat", "cat"]
    events = api.events(since=since, until=time.time(), decode=True, filters={"container": cat})
    # dockerd names an exec "entrypoint + ' ' + args": here a trailing space
    assert [e["Action"] for e in events if e["Action"].startswith("exec_")] == ["exec_create: cat ",
                                                                                  "exec_start: cat "]


def test_attach_and_its_detach_are_events(api: docker.APIClient, daemon: PortsideDaemon, busybox: str,
                                          names: list[str]) -> None:  # fmt: skip
    name = f"pst-tty-att-{os.getpid()}"
    names.append(name)
    since = time.time()
    assert daemon.docker("run", "-d", "-it", "--name", name, busybox, "sh").returncode == 0
    sock = api.attach_socket(name, params={"stdin": 1, "stdout": 1, "stream": 1, "detachKeys": "ctrl-a"})._sock
    try:
        sock.settimeout(10)
        sock.sendall(b"echo at-$((4+5))\r")
        buf = b""
        while b"at-9\r\n" not in buf:
            chunk = sock.recv(4096)
            assert chunk, buf
            buf += chunk
        sock.sendall(b"\x01")
        while sock.recv(4096):
            pass  # the daemon ends the stream, says nothing (dockerd's attach takes the escape for a detach)
    finally:
        sock.close()
    assert api.inspect_container(name)["State"]["Running"] is True
    deadline = time.monotonic() + 10
    while True:
        events = api.events(since=since, until=time.time(), decode=True, filters={"container": name})
        actions = [e["Action"] for e in events]
        if "detach" in actions or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert actions[:2] == ["create", "start"] and actions[2:] == ["attach", "detach"], actions


def test_cli_detach_keys_from_its_config_file(daemon: PortsideDaemon, busybox: str, names: list[str],
                                             tmp_path: Path) -> None:  # fmt: skip
    # `detachKeys` of config.json: the CLI sends it (exec create's DetachKeys, attach's ?detachKeys=) and
    # watches for it itself; it says "read escape sequence" and exits 1, and what it left runs on
    name = f"pst-tty-cfg-{os.getpid()}"
    names.append(name)
    assert daemon.docker("run", "-d", "-it", "--name", name, busybox, "sh").returncode == 0
    (tmp_path / "config.json").write_text(json.dumps({"detachKeys": "ctrl-x,x"}))
    for args in (("exec", "-it", name, "sh"), ("attach", name)):
        t = _Pty(daemon, *args, config=tmp_path)
        buf = bytearray()
        os.write(t.fd, b"echo cfg-$((6+1))\r")
        _read_pty_until(t.fd, b"cfg-7\r\n", buf)
        t.type_keys(b"\x10\x11")  # ctrl-p,ctrl-q is no longer the sequence: the shell gets them
        t.type_keys(b"\x18x")
        code, said = _wait_exit(t)
        assert code == 1 and said.endswith(b"read escape sequence\r\n"), (args, code, said)
    top = daemon.docker("top", name, "-e", "-o", "pid,comm")
    assert top.returncode == 0, top.stderr
    # the container's shell and the exec'd one, detached
    assert [line.split()[-1] for line in top.stdout.splitlines()[1:]] == ["sh", "sh"], top.stdout


def test_exec_that_cannot_start_says_so_on_the_stream_the_start_chose(api: docker.APIClient, cat: str) -> None:
    # runc's words through containerd's shim, as dockerd writes them: stdout frames for a start without Tty
    # (docker-py's default), though the exec has a pty
    e = api.exec_create(cat, "pwd", workdir="/pst-nowhere", tty=True)
    assert api.exec_start(e, demux=True) == (
        b'OCI runtime exec failed: exec failed: unable to start container process: chdir to cwd ("/pst-nowhere") '
        b"set in config.json failed: no such file or directory: unknown\r\n", None)
    assert api.exec_inspect(e)["ExitCode"] == 127  # dockerd's isInvalidCommand: "no such file or directory"
    e = api.exec_create(cat, "pst-nosuch")
    assert api.exec_start(e, tty=True) == (
        b'OCI runtime exec failed: exec failed: unable to start container process: exec: "pst-nosuch": '
        b"executable file not found in $PATH: unknown\r\n")


def test_cli_it_starts_on_the_terminal_size(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    # the CLI sends its terminal's size with the create (HostConfig.ConsoleSize, exec's ConsoleSize) and resizes
    # only after the start: the pty must have the size before the process looks, or it sees 0x0
    name = f"pst-tty-size-{os.getpid()}"
    names.append(name)
    assert daemon.docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    for args in (("run", "--rm", "-it", busybox, "stty", "size"), ("exec", "-it", name, "stty", "size")):
        code, said = _wait_exit(_Pty(daemon, *args, size=(41, 123)))
        assert (code, said) == (0, b"41 123\r\n"), args
