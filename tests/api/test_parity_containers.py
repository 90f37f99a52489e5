"""Docker parity of the container lifecycle, through the real docker CLI and docker-py: kill's wait for the exit,
the pty's line discipline, detach keys, log drivers, bind propagation."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import docker
import pytest

from engine.api.hijack import DetachFilter, detach_keys
from tests.api.conftest import DOCKER, PortsideDaemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def client(daemon: PortsideDaemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


def _state(daemon: PortsideDaemon, name: str) -> dict:
    out = daemon.docker("inspect", name)
    assert out.returncode == 0, out.stderr
    state: dict = json.loads(out.stdout)[0]["State"]
    return state


# -- 1. kill ------------------------------------------------------------------------------------------------------
def test_kill_returns_once_the_container_has_exited(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-kill-{os.getpid()}"
    names.append(name)
    assert daemon.docker("create", "--name", name, busybox, "sleep", "300").returncode == 0
    for _ in range(20):
        assert daemon.docker("start", name).returncode == 0
        killed = daemon.docker("kill", name)
        assert (killed.returncode, killed.stdout) == (0, name + "\n"), killed.stderr
        st = _state(daemon, name)  # right after: no poll
        assert (st["Status"], st["Running"], st["ExitCode"], st["Pid"]) == ("exited", False, 137, 0)


def test_kill_with_another_signal_returns_at_once(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-killterm-{os.getpid()}"
    names.append(name)
    # a shell that traps TERM, says so, and exits 3 a while later: kill must not wait for that exit
    script = "trap 'echo got-term; sleep 30; exit 3' TERM; echo ready; while :; do sleep 1; done"
    assert daemon.docker("run", "-d", "--name", name, busybox, "sh", "-c", script).returncode == 0
    _wait_logs(daemon, name, "ready")
    t0 = time.monotonic()
    assert daemon.docker("kill", "-s", "TERM", name).returncode == 0
    assert time.monotonic() - t0 < 20
    assert _state(daemon, name)["Running"] is True
    _wait_logs(daemon, name, "got-term")
    assert daemon.docker("kill", "-s", "KILL", name).returncode == 0
    assert _state(daemon, name)["ExitCode"] == 137


def test_kill_bad_signal_and_stopped_container(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-killbad-{os.getpid()}"
    names.append(name)
    assert daemon.docker("create", "--name", name, busybox, "sleep", "300").returncode == 0
    cid = json.loads(daemon.docker("inspect", name).stdout)[0]["Id"]
    out = daemon.docker("kill", name)
    assert out.returncode == 1
    assert f"cannot kill container: {name}: container {cid} is not running" in out.stderr, out.stderr
    assert daemon.request("POST", f"/v1.50/containers/{name}/kill")[0] == 409
    assert daemon.docker("start", name).returncode == 0
    status, _, body = daemon.request("POST", f"/v1.50/containers/{name}/stop?signal=FROB")
    assert (status, json.loads(body)["message"]) == (400, "Invalid signal: FROB")
    assert _state(daemon, name)["Running"] is True


def test_signal_names_and_numbers_as_dockerd(daemon: PortsideDaemon, busybox: str) -> None:
    def kill(ref: str, sig: str) -> tuple[int, str]:
        status, _, body = daemon.request("POST", f"/v1.50/containers/{ref}/kill?signal={quote(sig)}")
        return status, json.loads(body)["message"] if body else ""

    # the signal is checked before the container is looked up; dockerd's router prefixes every kill error
    pre = "cannot kill container: pst-no-such-container: "
    assert kill("pst-no-such-container", "FROB") == (400, pre + "Invalid signal: FROB")
    assert kill("pst-no-such-container", "0") == (400, pre + "Invalid signal: 0")
    assert kill("pst-no-such-container", "99") == (400, pre + "the linux daemon does not support signal 99")
    assert kill("pst-no-such-container", "32") == (400, pre + "the linux daemon does not support signal 32")
    for good in ("sigterm", "CLD", "IOT", "RTMIN+3", "RTMAX-1", "64"):
        assert kill("pst-no-such-container", good) == (404, pre + "No such container: pst-no-such-container"), good
    status, body = _create(daemon, {"Image": busybox, "StopSignal": "SIGFROB"})
    assert (status, body["message"]) == (400, "Invalid signal: SIGFROB")


def test_kill_resumes_a_paused_container(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-killpaused-{os.getpid()}"
    names.append(name)
    script = "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.1; done"
    assert daemon.docker("run", "-d", "--name", name, busybox, "sh", "-c", script).returncode == 0
    _wait_logs(daemon, name, "ready")
    assert daemon.docker("pause", name).returncode == 0
    # no StopSignal set: dockerd resumes it, so the signal arrives
    assert daemon.docker("kill", "-s", "USR1", name).returncode == 0
    st = _state(daemon, name)
    assert (st["Status"], st["Paused"], st["Running"]) == ("running", False, True)
    _wait_logs(daemon, name, "got-usr1")
    assert daemon.docker("pause", name).returncode == 0
    assert daemon.docker("kill", name).returncode == 0
    st = _state(daemon, name)
    assert (st["Status"], st["Paused"], st["ExitCode"]) == ("exited", False, 137)


def _wait_logs(daemon: PortsideDaemon, name: str, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = daemon.docker("logs", name).stdout
        if text in out:
            return out
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the logs of {name}: {out!r}")


# -- 2. the pty's output translation ------------------------------------------------------------------------------
def _docker_bytes(daemon: PortsideDaemon, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The CLI with its output as bytes (text mode would turn the \\r\\n under test into \\n)."""
    return subprocess.run([DOCKER, "-H", daemon.host, *args], capture_output=True, timeout=120, check=False,
                          env={**os.environ, "DOCKER_CONFIG": str(daemon.tmp / "cli")})


def test_run_t_output_has_crlf(daemon: PortsideDaemon, busybox: str) -> None:
    out = _docker_bytes(daemon, "run", "--rm", "-t", busybox, "echo", "hi")
    assert (out.returncode, out.stdout) == (0, b"hi\r\n"), out.stderr
    out = _docker_bytes(daemon, "run", "--rm", busybox, "echo", "hi")
    assert (out.returncode, out.stdout) == (0, b"hi\n"), out.stderr


def test_tty_logs_and_exec_t_keep_the_crlf(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-onlcr-logs-{os.getpid()}"
    names.append(name)
    assert daemon.docker("run", "-d", "-t", "--name", name, busybox, "sh", "-c", "echo hi; sleep 300").returncode == 0
    _wait_logs(daemon, name, "hi")
    assert _docker_bytes(daemon, "logs", name).stdout == b"hi\r\n"  # the log holds what the pty sent
    out = _docker_bytes(daemon, "exec", "-t", name, "printf", "a\\nb\\n")
    assert (out.returncode, out.stdout) == (0, b"a\r\nb\r\n"), out.stderr


def test_exec_run_tty_output_has_crlf(client: docker.DockerClient, busybox: str) -> None:
    c = client.containers.run(busybox, ["sleep", "300"], detach=True, name=f"pst-onlcr-{os.getpid()}")
    try:
        res = c.exec_run(["echo", "hi"], tty=True)
        assert (res.exit_code, res.output) == (0, b"hi\r\n")
        res = c.exec_run(["echo", "hi"])
        assert (res.exit_code, res.output) == (0, b"hi\n")
    finally:
        c.remove(force=True)


# -- 3. detach keys -----------------------------------------------------------------------------------------------
def test_detach_keys_parse_as_moby_term_does() -> None:
    assert detach_keys("") == b"\x10\x11"
    assert detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach_keys("ctrl-x,x") == b"\x18x"
    assert detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,DEL,a,,") is None  # the empty ones
    assert detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,DEL,a") == b"\x00\x1b\x1c\x1d\x1e\x1f\x7fa"
    for bad in ("ctrl-P", "ctrl-1", " ctrl-p", "ctrl-p, ctrl-q", "ab", "é", "ctrl-", "del"):
        assert detach_keys(bad) is None, bad


def test_detach_filter_holds_a_partial_match_back() -> None:
    f = DetachFilter(b"\x10\x11")
    assert f.feed(b"ab\x10") == b"ab" and not f.detached
    assert f.feed(b"c") == b"\x10c"  # broken: what was held goes on
    assert f.feed(b"\x10\x10\x11") == b"\x10\x10\x11" and not f.detached  # as moby: no re-match on the breaker
    assert f.feed(b"x\x10") == b"x" and f.feed(b"\x11rest") == b"" and f.detached


class _Hijacked:
    """A raw hijacked attach/exec connection to the daemon's socket (the upgrade the CLI does)."""

    def __init__(self, daemon: PortsideDaemon, path: str, body: bytes = b"") -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(daemon.sock))
        head = (f"POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            assert chunk, buf
            buf += chunk
        head_raw, self.buf = buf.split(b"\r\n\r\n", 1)
        self.status = int(head_raw.split()[1])
        self.head = head_raw.decode()

    def read_until(self, text: bytes) -> bytes:
        while text not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, f"EOF before {text!r}: {self.buf!r}"
            self.buf += chunk
        return self.buf

    def read_to_eof(self) -> bytes:
        while chunk := self.sock.recv(4096):
            self.buf += chunk
        return self.buf

    def close(self) -> None:
        self.sock.close()


class _Pty:
    """The docker CLI on a pty of its own. The test keeps the slave side open too, so it can see when the CLI
    has read what was typed (the slave's input queue is empty). `config`: the CLI's config dir, if not the
    daemon's; `size`: the terminal's (rows, columns)."""

    def __init__(self, daemon: PortsideDaemon, *args: str, config: Path | None = None,
                 size: tuple[int, int] | None = None) -> None:  # fmt: skip
        env = {**os.environ, "DOCKER_CONFIG": str(config or daemon.tmp / "cli")}
        self.fd, self.slave = os.openpty()
        if size:
            fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                fcntl.ioctl(self.slave, termios.TIOCSCTTY, 0)
                for i in range(3):
                    os.dup2(self.slave, i)
                os.execve(DOCKER, [DOCKER, "-H", daemon.host, *args], env)
            finally:
                os._exit(127)
        self.pid = pid

    def unread(self) -> int:
        return int(struct.unpack("i", fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0"))[0])

    def type_keys(self, keys: bytes, timeout: float = 30) -> None:
        """Keys one at a time, each read by the CLI before the next, as typed by a person: the CLI's own escape
        proxy matches the sequence only in reads of one byte each."""
        deadline = time.monotonic() + timeout
        for b in keys:
            os.write(self.fd, bytes((b,)))
            while self.unread():
                assert time.monotonic() < deadline, "the CLI does not read its terminal"
                time.sleep(0.01)

    def close(self) -> None:
        os.close(self.slave)


def _read_pty_until(fd: int, text: bytes, buf: bytearray, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in buf:
        assert time.monotonic() < deadline, f"{text!r} not seen on the pty: {bytes(buf)!r}"
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the process closed its terminal
                chunk = b""
            assert chunk, f"EOF before {text!r}: {bytes(buf)!r}"
            buf += chunk


def _wait_exit(t: _Pty, timeout: float = 30) -> tuple[int, bytes]:
    """Waits for the CLI on the pty to exit: (exit code, what it printed meanwhile); closes the pty."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done, status = os.waitpid(t.pid, os.WNOHANG)
            if done:
                while select.select([t.fd], [], [], 0)[0]:
                    chunk = os.read(t.fd, 65536)
                    if not chunk:
                        break
                    out += chunk
                return os.waitstatus_to_exitcode(status), bytes(out)
            if select.select([t.fd], [], [], 0.2)[0]:
                with contextlib.suppress(OSError):
                    out += os.read(t.fd, 4096)
        os.kill(t.pid, 9)
        os.waitpid(t.pid, 0)
        raise AssertionError(f"the docker CLI did not exit: {bytes(out)!r}")
    finally:
        t.close()
        os.close(t.fd)


@pytest.mark.parametrize("keys,typed", [("", b"\x10\x11"), ("ctrl-x,x", b"\x18x")])
def test_run_it_detach_keys_leave_it_running(daemon: PortsideDaemon, busybox: str, names: list[str], keys: str,
                                             typed: bytes) -> None:
    name = f"pst-detach-{len(keys)}-{os.getpid()}"
    names.append(name)
    extra = ["--detach-keys", keys] if keys else []
    t = _Pty(daemon, "run", "-it", *extra, "--name", name, busybox, "sh")
    buf = bytearray()
    os.write(t.fd, b"echo ready-$((1+1))\r")
    _read_pty_until(t.fd, b"ready-2", buf)
    t.type_keys(typed)
    code, said = _wait_exit(t)
    assert code == 0 and b"escape" not in said, (code, said)
    st = _state(daemon, name)
    assert st["Running"] is True, st
    # the shell is still there: attach again, run something, detach with the same keys
    t = _Pty(daemon, "attach", *extra, name)
    buf = bytearray()
    os.write(t.fd, b"echo again-$((2+3))\r")
    _read_pty_until(t.fd, b"again-5", buf)
    t.type_keys(typed)
    code, said = _wait_exit(t)
    # the CLI's own words and status for a detach from `attach` and `exec` (its run says nothing, exits 0)
    assert code == 1 and said.endswith(b"read escape sequence\r\n"), (code, said)
    assert _state(daemon, name)["Running"] is True


def test_exec_it_detach_keys(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-detach-exec-{os.getpid()}"
    names.append(name)
    assert daemon.docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    t = _Pty(daemon, "exec", "-it", "--detach-keys=ctrl-x,x", name, "sh", "-c", "echo exec-ready; exec sleep 300")
    buf = bytearray()
    _read_pty_until(t.fd, b"exec-ready", buf)
    t.type_keys(b"\x18x")
    code, said = _wait_exit(t)
    assert code == 1 and said.endswith(b"read escape sequence\r\n"), (code, said)
    top = daemon.docker("top", name)
    assert top.stdout.count("sleep 300") == 2, top.stdout  # the exec'd process runs on
    bad = daemon.docker("exec", "-i", "--detach-keys=ctrl-1", name, "true")
    assert bad.returncode != 0 and "Invalid escape keys (ctrl-1) provided" in bad.stderr, bad.stderr


def test_attach_api_detach_keys(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    tty_name, raw_name = f"pst-det-tty-{os.getpid()}", f"pst-det-raw-{os.getpid()}"
    names.extend([tty_name, raw_name])
    assert daemon.docker("run", "-d", "-it", "--name", tty_name, busybox, "sh").returncode == 0
    status, _, body = daemon.request(
        "POST", f"/v1.50/containers/{tty_name}/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-1")
    assert (status, json.loads(body)["message"]) == (400, "Invalid detach keys (ctrl-1) provided")
    t = _Pty(daemon, "attach", "--detach-keys=ctrl-1", tty_name)  # the CLI reports the refused upgrade
    code, said = _wait_exit(t)
    assert code == 1 and b"unable to upgrade to tcp, received 400" in said, (code, said)
    # the daemon itself ends the stream at the keys, even sent in one write with other input before them
    conn = _Hijacked(daemon, f"/v1.50/containers/{tty_name}/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x,x")
    try:
        assert conn.status == 101
        conn.sock.sendall(b"echo hop-$((3+4))\r")
        conn.read_until(b"hop-7")
        conn.sock.sendall(b"echo gone\r\x18x")
        conn.read_to_eof()  # the daemon closed the stream
    finally:
        conn.close()
    assert _state(daemon, tty_name)["Running"] is True
    # without a TTY the same bytes are input like any other (dockerd copies a non-TTY stdin as is)
    assert daemon.docker("create", "-i", "--name", raw_name, busybox, "cat").returncode == 0
    conn = _Hijacked(daemon, f"/v1.50/containers/{raw_name}/attach?stream=1&stdin=1&stdout=1")
    try:
        assert daemon.docker("start", raw_name).returncode == 0
        conn.sock.sendall(b"a\x10\x11b\n")
        out = conn.read_until(b"b\n")
        assert b"a\x10\x11b\n" in out
    finally:
        conn.close()


def test_exec_api_detach_keys(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-det-execapi-{os.getpid()}"
    names.append(name)
    assert daemon.docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0

    def exec_create(body: dict) -> tuple[int, dict]:
        status, _, raw = daemon.request("POST", f"/v1.50/containers/{name}/exec", body=json.dumps(body).encode(),
                                        headers={"Content-Type": "application/json"})
        return status, json.loads(raw)

    status, out = exec_create({"Cmd": ["true"], "DetachKeys": "ctrl-P"})
    assert (status, out["message"]) == (500, "Invalid escape keys (ctrl-P) provided")  # dockerd's plain error
    status, out = exec_create({"Cmd": ["sh"], "Tty": True, "AttachStdin": True, "AttachStdout": True,
                               "DetachKeys": "ctrl-x,x"})
    assert status == 201
    eid = out["Id"]
    conn = _Hijacked(daemon, f"/v1.50/exec/{eid}/start", json.dumps({"Tty": True}).encode())
    try:
        assert conn.status == 101
        conn.sock.sendall(b"echo ex-$((5+6))\r")
        conn.read_until(b"ex-11")
        conn.sock.sendall(b"\x18x")
        conn.read_to_eof()  # the daemon ended the stream at the keys
    finally:
        conn.close()
    status, _, raw = daemon.request("GET", f"/v1.50/exec/{eid}/json")
    assert status == 200 and json.loads(raw)["Running"] is True  # the shell runs on
    assert json.loads(raw)["DetachKeys"] == "GHg="  # dockerd's []byte of ctrl-x,x, base64 in JSON


# -- 4. log drivers -----------------------------------------------------------------------------------------------
def _create(daemon: PortsideDaemon, body: dict, name: str = "") -> tuple[int, dict]:
    query = f"?name={name}" if name else ""
    status, _, raw = daemon.request("POST", f"/v1.50/containers/create{query}", body=json.dumps(body).encode(),
                                    headers={"Content-Type": "application/json"})
    return status, json.loads(raw)


def test_unknown_log_driver_or_option_is_refused_at_create(daemon: PortsideDaemon, busybox: str) -> None:
    name = f"pst-logbad-{os.getpid()}"
    out = daemon.docker("run", "--name", name, "--log-driver", "frob", busybox, "true")
    assert out.returncode == 125
    assert "logger: no log driver named 'frob' is registered" in out.stderr, out.stderr
    for opts, msg in (({"frob": "1"}, "unknown log opt 'frob' for json-file log driver"),
                      ({"mode": "sometimes"}, "logger: logging mode not supported: sometimes"),
                      ({"max-buffer-size": "4m"},
                       "logger: max-buffer-size option is only supported with 'mode=non-blocking'")):
        status, body = _create(daemon, {"Image": busybox, "HostConfig": {"LogConfig": {"Type": "json-file",
                                                                                       "Config": opts}}}, name)
        assert (status, body["message"]) == (400, msg)
    status, body = _create(daemon, {"Image": busybox, "HostConfig": {"LogConfig": {"Type": "local",
                                                                                   "Config": {"tag": "x", "y": "1"}}}})
    assert (status, body["message"]) == (400, "unknown log opt 'y' for log driver local")
    assert daemon.docker("inspect", name).returncode == 1  # nothing left behind
    status, body = _create(daemon, {"Image": busybox, "HostConfig": {"LogConfig": {"Type": "frob"}}},
                           "pst-no-such-image-anyway")
    assert status == 400  # checked before the image, as dockerd does


def test_log_config_defaults_to_json_file(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-logdef-{os.getpid()}"
    names.append(name)
    # the CLI sends LogConfig {"Type": "", "Config": {}}: the daemon's default shows in inspect
    assert daemon.docker("create", "--name", name, busybox, "true").returncode == 0
    insp = json.loads(daemon.docker("inspect", name).stdout)[0]
    assert insp["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert insp["LogPath"].endswith(f"{insp['Id']}-json.log")


def test_none_driver_writes_nothing_and_cannot_be_read(daemon: PortsideDaemon, busybox: str,
                                                      names: list[str]) -> None:
    name = f"pst-lognone-{os.getpid()}"
    names.append(name)
    out = daemon.docker("run", "--name", name, "--log-driver", "none", busybox, "echo", "hi")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr  # attached output still comes through
    insp = json.loads(daemon.docker("inspect", name).stdout)[0]
    assert insp["HostConfig"]["LogConfig"]["Type"] == "none" and insp["LogPath"] == ""
    logs = daemon.docker("logs", name)
    assert logs.returncode == 1
    assert "configured logging driver does not support reading" in logs.stderr, logs.stderr
    status, _, _ = daemon.request("GET", f"/v1.50/containers/{name}/logs?stdout=1")
    assert status == 501
    assert not list((daemon.data_root / "containers" / insp["Id"]).glob("*.log*"))


def test_local_driver_reads_back(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-loglocal-{os.getpid()}"
    names.append(name)
    out = daemon.docker("run", "--name", name, "--log-driver", "local", "--log-opt", "max-size=10m", busybox,
                        "sh", "-c", "echo out; echo err >&2")
    assert out.returncode == 0, out.stderr
    logs = daemon.docker("logs", name)
    assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
    insp = json.loads(daemon.docker("inspect", name).stdout)[0]
    assert insp["HostConfig"]["LogConfig"] == {"Type": "local", "Config": {"max-size": "10m"}}


@pytest.mark.parametrize("opt,msg", [
    ("max-size=12x", "invalid size: '12x'"),
    ("max-size=0", "max-size must be a positive number"),
    ("max-file=0", "max-file cannot be less than 1"),
    ("max-file=two", 'strconv.Atoi: parsing "two": invalid syntax'),
])
def test_bad_log_option_values_fail_the_start(daemon: PortsideDaemon, busybox: str, names: list[str], opt: str,
                                              msg: str) -> None:
    name = f"pst-logval-{os.getpid()}"
    names.append(name)
    out = daemon.docker("run", "--name", name, "--log-opt", opt, busybox, "true")
    assert out.returncode == 125
    assert f"failed to create task for container: failed to initialize logging driver: {msg}" in out.stderr, \
        out.stderr
    st = _state(daemon, name)
    assert (st["Status"], st["ExitCode"]) == ("created", 128), st
    assert "failed to initialize logging driver" in st["Error"]


def test_max_size_rotates_at_decimal_megabytes(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = f"pst-logrot-{os.getpid()}"
    names.append(name)
    # json-file's max-size is go-units' FromHumanSize: "1k" is 1000 bytes; each entry here is ~80 bytes
    out = daemon.docker("run", "--name", name, "--log-opt", "max-size=1k", "--log-opt", "max-file=2", busybox,
                        "sh", "-c", "i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); done")
    assert out.returncode == 0, out.stderr
    cid = json.loads(daemon.docker("inspect", name).stdout)[0]["Id"]
    files = sorted((daemon.data_root / "containers" / cid).glob("*-json.log*"))
    assert [f.name.removeprefix(cid) for f in files] == ["-json.log", "-json.log.1"]
    assert all(f.stat().st_size <= 1000 for f in files), [f.stat().st_size for f in files]


# -- 5. bind propagation ------------------------------------------------------------------------------------------
def _mount_dir(path: Path, propagation: str) -> None:
    """A tmpfs of the test's own at `path`, with the given propagation (the host's / may be private or shared)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "pst-prop", str(path)], check=True)
    subprocess.run(["mount", f"--make-{propagation}", str(path)], check=True)


@pytest.fixture
def prop_dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a shared mount, a private mount), unmounted (with anything mounted below) afterwards. Tests ask for it
    before `names`, so their containers are removed first."""
    shared, private = tmp_path / "pst-shared", tmp_path / "pst-private"
    try:
        _mount_dir(shared, "shared")
        _mount_dir(private, "private")
        yield shared, private
    finally:
        for d in (shared, private):
            subprocess.run(["umount", "-R", str(d)], check=False, capture_output=True)


def _container_mount(daemon: PortsideDaemon, name: str, target: str) -> list[str] | None:
    """The optional fields of `target`'s line in the container's mountinfo (None: not mounted)."""
    out = daemon.docker("exec", name, "cat", "/proc/self/mountinfo")
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        head = line.split(" - ", 1)[0].split()
        if head[4] == target:
            return head[6:]
    return None


@pytest.mark.parametrize("how,prop,tag,receives", [
    ("-v", "", None, False),
    ("-v", "rslave", "master:", True),
    ("-v", "rshared", "shared:", True),
    ("-v", "private", None, False),
    ("--mount", "slave", "master:", True),
    ("--mount", "shared", "shared:", True),
    ("--mount", "", None, False),
])
def test_bind_propagation_is_applied_and_shown(daemon: PortsideDaemon, busybox: str, prop_dirs: tuple[Path, Path],
                                               names: list[str], how: str, prop: str, tag: str | None,
                                               receives: bool) -> None:
    shared, _ = prop_dirs
    name = f"pst-prop-{os.getpid()}"
    names.append(name)
    if how == "-v":
        spec = ["-v", f"{shared}:/m" + (f":{prop}" if prop else "")]
    else:
        spec = ["--mount", f"type=bind,src={shared},dst=/m" + (f",bind-propagation={prop}" if prop else "")]
    out = daemon.docker("run", "-d", "--name", name, *spec, busybox, "sleep", "300")
    assert out.returncode == 0, out.stderr
    mounts = json.loads(daemon.docker("inspect", name).stdout)[0]["Mounts"]
    assert [(m["Type"], m["Destination"], m["Propagation"]) for m in mounts] == [("bind", "/m", prop or "rprivate")]
    fields = _container_mount(daemon, name, "/m")
    assert fields is not None
    if tag is None:
        assert not any(f.startswith(("shared:", "master:")) for f in fields), fields
    else:
        assert any(f.startswith(tag) for f in fields), fields
    # what the propagation is for: a mount made on the host below the source shows in the container, or not
    sub = shared / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "pst-prop-sub", str(sub)], check=True)
    assert (_container_mount(daemon, name, "/m/sub") is not None) is receives


def test_bad_propagation_is_refused(daemon: PortsideDaemon, busybox: str, prop_dirs: tuple[Path, Path],
                                    names: list[str]) -> None:
    shared, private = prop_dirs
    name = f"pst-propbad-{os.getpid()}"
    names.append(name)
    out = daemon.docker("run", "--name", name, "-v", f"{shared}:/m:rfoo", busybox, "true")
    assert out.returncode == 125 and "invalid mode: rfoo" in out.stderr, out.stderr
    out = daemon.docker("run", "--name", name, "--mount", f"type=bind,src={shared},dst=/m,bind-propagation=frob",
                        busybox, "true")
    assert out.returncode == 125, out.stderr
    assert 'invalid mount config for type "bind": invalid propagation mode: frob' in out.stderr, out.stderr
    for binds, msg in (([f"{shared}:/m:rshared,rslave"], "invalid mode: rshared,rslave"),
                       ([f"{shared}:/m:ro,rw"], "invalid mode: ro,rw"),
                       (["pst-propvol:/m:rshared"], "invalid volume specification: 'pst-propvol:/m:rshared': "
                        'invalid mount config for type "volume": field BindOptions must not be specified')):
        status, body = _create(daemon, {"Image": busybox, "HostConfig": {"Binds": binds}}, name)
        assert (status, body["message"]) == (400, msg)
    status, body = _create(daemon, {"Image": busybox, "HostConfig": {"Mounts": [
        {"Type": "tmpfs", "Target": "/t", "BindOptions": {"Propagation": "rshared"}}]}}, name)
    assert (status, body["message"]) == (
        400, 'invalid mount config for type "tmpfs": field BindOptions must not be specified')
    assert daemon.docker("inspect", name).returncode == 1
    assert daemon.docker("volume", "inspect", "pst-propvol").returncode == 1  # nothing left behind
    # a shared bind needs a shared source: dockerd's check when the spec is made, at start
    out = daemon.docker("run", "--name", name, "-v", f"{private}:/m:rshared", busybox, "true")
    assert out.returncode == 125
    assert f"path {private} is mounted on {private} but it is not a shared mount" in out.stderr, out.stderr
    assert daemon.docker("rm", name).returncode == 0
    out = daemon.docker("run", "--name", name, "-v", f"{private}:/m:rslave", busybox, "true")
    assert out.returncode == 125
    assert f"path {private} is mounted on {private} but it is not a shared or slave mount" in out.stderr, out.stderr


def test_exec_refusals_name_the_state(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    paused, looping = f"pst-execpaused-{os.getpid()}", f"pst-execloop-{os.getpid()}"
    names.extend([paused, looping])

    def exec_create(ref: str) -> tuple[int, str]:
        status, _, raw = daemon.request("POST", f"/v1.50/containers/{ref}/exec",
                                        body=json.dumps({"Cmd": ["true"]}).encode(),
                                        headers={"Content-Type": "application/json"})
        return status, json.loads(raw).get("message", "")

    assert daemon.docker("run", "-d", "--name", paused, busybox, "sleep", "300").returncode == 0
    assert daemon.docker("pause", paused).returncode == 0
    assert exec_create(paused) == (409, f"Container {paused} is paused, unpause the container before exec")
    # a container between two restarts: the restart back-off doubles, so after 4 restarts it waits 1.6 s, time
    # enough for the two requests below
    assert daemon.docker("run", "-d", "--name", looping, "--restart", "always", busybox, "false").returncode == 0
    cid = json.loads(daemon.docker("inspect", looping).stdout)[0]["Id"]
    deadline = time.monotonic() + 60

    def inspect_looping() -> dict[str, Any]:
        assert time.monotonic() < deadline, "never seen restarting"
        got: dict[str, Any] = json.loads(daemon.request("GET", f"/v1.50/containers/{looping}/json")[2])
        return got

    # Restarting also shows while a restart's start runs (its count already counts it, as in moby): time the
    # back-off from a restart's beginning instead - the 5th and later wait 1.6 s and more
    while (count := inspect_looping()["RestartCount"]) < 4:
        time.sleep(0.02)
    while inspect_looping()["RestartCount"] == count:
        time.sleep(0.02)
    time.sleep(0.3)  # the restart ran `false`, which exited: in the back-off now, over a second of it left
    insp = inspect_looping()
    assert insp["State"]["Restarting"] and insp["RestartCount"] == count + 1
    # moby's SetRestarting: running, with no process and the last exit's code
    assert (insp["State"]["Running"], insp["State"]["Pid"], insp["State"]["ExitCode"]) == (True, 0, 1)
    assert exec_create(looping) == (409, f"Container {cid} is restarting, wait until the container is running")
    status, _, raw = daemon.request("POST", f"/v1.50/containers/{looping}/pause")
    assert (status, json.loads(raw)["message"]) == (
        409, f"Container {cid} is restarting, wait until the container is running")
    # and `docker ps` (no -a) lists it, as dockerd does
    ps = daemon.docker("ps", "--filter", f"name={looping}", "--format", "{{.Names}} {{.Status}}")
    assert ps.stdout.startswith(f"{looping} Restarting (1) ") or ps.stdout.startswith(f"{looping} Up "), ps.stdout
    # a kill between two restarts calls the restart off: it stays exited
    assert daemon.docker("kill", looping).returncode == 0
    st = _state(daemon, looping)
    assert (st["Status"], st["Restarting"], st["Running"]) == ("exited", False, False), st


def test_docker_py_kill_log_driver_and_propagation(client: docker.DockerClient, busybox: str,
                                                   prop_dirs: tuple[Path, Path]) -> None:
    shared, _ = prop_dirs
    made = []
    try:
        c = client.containers.run(busybox, ["sleep", "300"], detach=True, name=f"pst-py-kill-{os.getpid()}",
                                  log_config=docker.types.LogConfig(type="none"),
                                  volumes={str(shared): {"bind": "/m", "mode": "rslave"}})
        made.append(c)
        assert c.attrs["HostConfig"]["LogConfig"]["Type"] == "none"
        assert [m["Propagation"] for m in c.attrs["Mounts"]] == ["rslave"]
        c.kill()
        c.reload()
        assert (c.status, c.attrs["State"]["ExitCode"]) == ("exited", 137)
        with pytest.raises(docker.errors.APIError) as err:
            c.logs()
        assert err.value.status_code == 501
        assert "configured logging driver does not support reading" in str(err.value)
        with pytest.raises(docker.errors.APIError) as err:
            client.containers.create(busybox, ["true"], log_config=docker.types.LogConfig(type="frob"))
        assert err.value.status_code == 400 and "no log driver named 'frob' is registered" in str(err.value)
    finally:
        for c in made:
            c.remove(force=True)
