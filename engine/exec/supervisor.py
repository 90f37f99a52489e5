"""The per-container supervisor (like conmon or containerd's shim).

Started by the runtime as `python -S -E` (see runtime.py), it detaches into its own session and then owns the
container: it creates the init, holds the stdio pipes or the pty master, writes Docker's json-file log with
rotation, reaps the init and the exec'd processes, records the exit status atomically in the exec-root, and serves
the control socket (start, kill, wait, attach, resize, exec). It lives while the container does, whatever
happens to the engine, and exits once the exit status is recorded.

Its imports are kept tiny (no json, no asyncio, no pathlib): its memory per idle container is a benchmark figure.
"""

from __future__ import annotations

import _json  # the C string encoder json uses, without json's imports
import _signal
import _socket
import gc
import marshal
import os
import select
import sys
import time

from engine.exec import linux
from engine.exec import protocol as P
from engine.exec.cgroups import Cgroup
from engine.exec.cgroups import read_bytes as read_file
from engine.exec.lean import suppress

# No typing at run time (annotations only): what the zygote imports is shared by every supervisor, each
# paying its share of those pages in PSS (see lean.py); mypy reads the block below as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# What a supervisor runs after its fork writes to every page it touches (refcounts, first allocations, warm-up
# counters), and each such page becomes a private copy: its idle memory is a benchmark figure. Hence, in the
# supervisor's own paths: sockets of _socket's C type (socket.py's class converts its family and type to enums
# on accept), os.open/os.read rather than io's file objects, try/except rather than contextlib.suppress, and no
# import statement in a function (`from package import name` runs importlib's Python code).
Sock = _socket.socket

_enc = _json.encode_basestring
_PARTIAL_MAX = 16 * 1024  # Docker's json-file splits lines longer than this


def dumps(d: dict[str, Any]) -> str:
    """JSON for flat dicts of str, int, bool and None."""
    parts = []
    for k, v in d.items():
        if v is None:
            s = "null"
        elif v is True:
            s = "true"
        elif v is False:
            s = "false"
        elif isinstance(v, int):
            s = str(v)
        else:
            s = _enc(str(v))
        parts.append(f"{_enc(k)}: {s}")
    return "{" + ", ".join(parts) + "}"


def write_atomic(path: str, text: str) -> None:
    """Replaces the file by rename, so a reader (or an engine killed mid-way) sees the old or the new content.

    No fsync: the exec-root describes live processes, which a machine crash ends anyway (it is a tmpfs on most
    hosts, and /run is cleared at boot); each fsync cost several milliseconds of `docker run` on a busy disk."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def rfc3339(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def recv_fds(sock: Sock, bufsize: int, maxfds: int = 1) -> tuple[bytes, list[int]]:
    """socket.recv_fds without its array module."""
    msg, ancdata, _flags, _addr = sock.recvmsg(bufsize, _socket.CMSG_LEN(4 * maxfds))
    fds = [int.from_bytes(data[i : i + 4], sys.byteorder, signed=True)
           for level, kind, data in ancdata if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
           for i in range(0, len(data) - 3, 4)]  # fmt: skip
    return msg, fds


def send_fds(sock: Sock, msg: bytes, fds: list[int]) -> None:
    data = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
    sock.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, data)] if fds else [])


def start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot: with the pid, it names one process (no pid reuse)."""
    try:
        data = read_file(f"/proc/{pid}/stat")
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def read_bpf(path: str) -> bytes | None:
    """The container's seccomp program the engine compiled (None: the init compiles it from the spec)."""
    try:
        return read_file(path)
    except OSError:
        return None


class JsonLog:
    """Docker's json-file log driver: one JSON object per line, rotated at max_size keeping max_file files."""

    def __init__(self, path: str, max_size: int | None, max_file: int) -> None:
        self.path = path
        self.max_size = max_size or 0
        self.max_file = max(1, max_file)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.dropped = 0  # entries lost to write errors (a full disk) since the last one written

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            self._entry(stream, buf[: i + 1])
            buf = buf[i + 1 :]
        while len(buf) >= _PARTIAL_MAX:
            self._entry(stream, buf[:_PARTIAL_MAX])
            buf = buf[_PARTIAL_MAX:]
        self.partial[stream] = buf

    def flush(self) -> None:
        for stream, buf in self.partial.items():
            if buf:
                self._entry(stream, buf)
            self.partial[stream] = b""

    def _entry(self, stream: str, line: bytes) -> None:
        text = '{{"log":{},"stream":"{}","time":"{}"}}\n'.format(
            _enc(line.decode("utf-8", "replace")),
            stream,
            rfc3339(time.time_ns()),
        )
        raw = text.encode()
        try:
            if self.max_size and self.size and self.size + len(raw) > self.max_size:
                self._rotate()
            if self.fd < 0:  # a rotation could not open the new file (disk full): try again now
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
                self.size = os.fstat(self.fd).st_size
            n = os.write(self.fd, raw)
            if n < len(raw):  # the disk filled mid-entry: take the half line back, a reader would choke on it
                os.ftruncate(self.fd, self.size)
                raise OSError(28, "No space left on device")
        except OSError as e:
            # As dockerd's json-file logger: the entry is lost, the container runs on, and it says so (once per
            # spell of failures, on the supervisor's stderr), not kill the supervisor that holds the container.
            self.dropped += 1
            if self.dropped == 1:
                with suppress(OSError):
                    os.write(2, f"portside supervisor: error writing log message to {self.path}: "
                                f"{(e.strerror or str(e)).lower()}; dropping output until it can be written\n"
                             .encode())
            return
        if self.dropped:
            with suppress(OSError):
                os.write(2, f"portside supervisor: writing {self.path} again, {self.dropped} entries lost\n".encode())
            self.dropped = 0
        self.size += n

    def _rotate(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.max_file > 1:
            for n in range(self.max_file - 1, 0, -1):
                src = self.path if n == 1 else f"{self.path}.{n - 1}"
                if os.path.exists(src):
                    os.rename(src, f"{self.path}.{n}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        self.size = 0
        self.fd = os.open(self.path, flags, 0o640)


class Client:
    def __init__(self, sock: Sock) -> None:
        self.sock = sock
        self.buf = b""
        self.mode = ""  # "", "attach", "exec", "wait"
        self.streams: tuple[bool, bool] = (False, False)
        self.stdin = False
        self.exec: Proc | None = None


class Proc:
    """A process of the container the supervisor reaps: the init or an exec'd one, with its stdio."""

    def __init__(self, pid: int, tty: bool) -> None:
        self.pid = pid
        self.tty = tty
        self.outputs: dict[int, str] = {}  # fd -> "stdout"/"stderr"
        self.stdin_fd = -1
        self.master = -1
        self.status: int | None = None
        self.client: Client | None = None


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class NoLog:
    """The `none` log driver: output goes to attached clients only."""

    def write(self, stream: str, data: bytes) -> None:
        pass

    def flush(self) -> None:
        pass


class Supervisor:
    def __init__(self, state_dir: str, params: dict[str, Any]) -> None:
        self.dir = state_dir
        self.p = params
        self.cgroup = Cgroup(params["cgroup"])
        self.tty = bool(params["tty"])
        self.log: JsonLog | NoLog = (
            JsonLog(params["log_path"], params.get("log_max_size"), params.get("log_max_file") or 1)
            if params["log_path"] else NoLog())
        self.ep = select.epoll()
        self.fds: dict[int, Any] = {}
        self.init: Proc | None = None
        self.sync: Sock | None = None
        self.execs: dict[int, Proc] = {}
        self.clients: dict[int, Client] = {}
        self.stdin_taken = False
        self.state: dict[str, Any] = {}
        self.exited = False
        self.started = False
        self.in_pidns = not params.get("pidns")  # are our children born in the container's pid namespace?

    # --- set-up ---

    def fork_child(self, target: Any, tty: bool, stdin: bool) -> tuple[Proc, Sock]:
        """Forks a child running `target(sync)` with fresh stdio (pipes, or /dev/null until its pty exists)."""
        parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        child_fds: list[int] = []
        if tty:
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            stdio = [null, null, null]
            child_fds.append(null)
            in_w = -1
            outs: dict[int, str] = {}
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            if stdin:
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
            else:
                in_r, in_w = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), -1
            stdio = [in_r, out_w, err_w]
            child_fds += [in_r, out_w, err_w]
            outs = {out_r: "stdout", err_r: "stderr"}
        pid = os.fork()
        if pid == 0:
            try:
                for i, fd in enumerate(stdio):
                    os.dup2(fd, i)
                os.dup2(child_sock.fileno(), 3, inheritable=False)
                os.closerange(4, 65536)
                target(Sock(fileno=3))
            finally:
                os._exit(1)
        for fd in child_fds:
            os.close(fd)
        child_sock.close()
        proc = Proc(pid, tty)
        proc.outputs = outs
        proc.stdin_fd = in_w
        return proc, parent_sock

    def wait_ready(self, proc: Proc, sock: Sock) -> str | None:
        """Reads the child's set-up messages until ready ("R"): the pty master ("P" + fd) or an error ("E...")."""
        while True:
            msg, fds = recv_fds(sock, 65536)
            if fds:
                proc.master = fds[0]
                os.set_blocking(proc.master, False)
                msg = msg[1:]
                if not msg:
                    continue
            if not msg:
                return "container init exited before it was ready"
            if msg[:1] == b"R":
                return None
            if msg[:1] == b"E":
                return msg[1:].decode(errors="replace")
            if msg[:1] == b"P":
                continue

    def setup(self, handshake: Any = None) -> str | None:
        """Creates the cgroup and the init, through a helper process, then takes the init over.

        The helper (our child) does the work of `make_init` and hands us the init's descriptors; once it has
        exited, the init is our child (we are a subreaper). What that work touches (cgroup and namespace code,
        ctypes, the init's fork) is copied into the helper's pages, which go with it, not into ours: an idle
        supervisor's memory is a benchmark figure."""
        linux.set_child_subreaper()
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        helper = os.fork()
        if helper == 0:
            try:
                ours.close()
                self.helper_main(theirs, handshake)
            finally:
                os._exit(0)
        theirs.close()
        try:
            msg, fds = recv_fds(ours, 65536, 4)
        finally:
            ours.close()
            os.waitpid(helper, 0)
        if msg[:1] != b"R":
            for fd in fds:
                os.close(fd)
            return msg[1:].decode(errors="replace") if msg else "the supervisor's helper died"
        desc = marshal.loads(msg[1:])
        proc = Proc(desc["pid"], self.tty)
        self.sync = Sock(fileno=fds.pop(0))
        proc.outputs = {fds.pop(0): stream for stream in desc["outputs"]}
        if desc["stdin"]:
            proc.stdin_fd = fds.pop(0)
        if desc["master"]:
            proc.master = fds.pop(0)
        self.init = proc
        if handshake is not None:
            self.p = marshal.loads(read_file(self.dir + "/params"))
        self.watch_proc(proc)
        self.state = {
            "id": self.p["id"],
            "status": "created",
            "pid": proc.pid,
            "pid_start": start_time(proc.pid),
            "supervisor_pid": os.getpid(),
            "supervisor_start": start_time(os.getpid()),
            "cgroup": self.p["cgroup"],
            "created_at": rfc3339(time.time_ns()),
            "started_at": None,
        }
        write_atomic(self.dir + "/state.json", dumps(self.state))
        return None

    def helper_main(self, sock: Sock, handshake: Any) -> None:
        """The helper of `setup`: makes the init, sends us "R" + its description and descriptors (the sync
        socket, the outputs, stdin, the pty master) or "E" + what went wrong, and exits."""
        try:
            err = self.make_init(handshake)
        except Exception as e:
            err = f"{type(e).__name__}: {e}"
        init, sync = self.init, self.sync
        if err is not None or init is None or sync is None:
            if init is not None:
                with suppress(OSError):
                    os.kill(init.pid, 9)
                    os.waitpid(init.pid, 0)
            sock.sendall(b"E" + (err or "no init").encode())
            return
        fds = [sync.fileno(), *init.outputs]
        if init.stdin_fd >= 0:
            fds.append(init.stdin_fd)
        if init.master >= 0:
            fds.append(init.master)
        desc = {"pid": init.pid, "outputs": list(init.outputs.values()), "stdin": init.stdin_fd >= 0,
                "master": init.master >= 0}  # fmt: skip
        send_fds(sock, b"R" + marshal.dumps(desc), fds)

    def make_init(self, handshake: Any = None) -> str | None:
        """Creates the cgroup and the init. With `handshake` (a staged create), the init joins its cgroup and
        waits; `handshake(b"P")` tells the engine and returns once it has written the spec (None: it gave up)."""
        staged = handshake is not None
        self.cgroup.create()
        if not staged:
            self.cgroup.set_resources(self.p["resources"])
        pidns = self.p["pidns"]
        if pidns == "new":
            # our children (the init) are born in the container's pid namespace
            linux.unshare(linux.CLONE_NEWPID)
        elif pidns:
            fd = os.open(pidns, os.O_RDONLY | os.O_CLOEXEC)
            linux.setns(fd, linux.CLONE_NEWPID)
            os.close(fd)
        spec_path = self.dir + "/spec"
        cg_files = self.cgroup.join_files()
        bundle = self.p["bundle"]
        cache = self.dir.rpartition("/")[0] + "/.seccomp"  # not posixpath's Python code
        bpf_path = self.dir + "/seccomp.bpf"

        def target(sync: Sock) -> None:
            from engine.exec import container

            if staged:
                # joining (slow on cgroup v2: the kernel waits for an RCU grace period) overlaps the engine's work
                container.join_cgroups(cg_files, sync)
            # only the child loads the whole spec: an idle supervisor's memory is a benchmark figure
            with open(spec_path, "rb") as f:
                spec = marshal.load(f)
            container.container_main(spec, bundle, [] if staged else cg_files, sync, cache, bpf=read_bpf(bpf_path))

        proc, sock = self.fork_child(target, self.tty, bool(self.p.get("open_stdin")))
        self.init = proc
        self.sync = sock
        if staged:
            if handshake(b"P") is None:
                return "the engine gave the container up before creating it"
            self.p = marshal.loads(read_file(self.dir + "/params"))
            self.cgroup.set_resources(self.p["resources"])
            try:  # noqa: SIM105 (no contextlib after the fork, see the top)
                sock.sendall(b"S")
            except OSError:  # an init that failed already says why below
                pass
        return self.wait_ready(proc, sock)

    def watch_proc(self, proc: Proc) -> None:
        for fd in proc.outputs:
            os.set_blocking(fd, False)
            self.ep.register(fd, select.EPOLLIN)
            self.fds[fd] = ("out", proc)
        if proc.master >= 0:
            self.ep.register(proc.master, select.EPOLLIN)
            self.fds[proc.master] = ("out", proc)
            proc.outputs[proc.master] = "stdout"

    # --- the loop ---

    def serve(self, listener: Sock, wake_r: int) -> None:
        self.ep.register(listener.fileno(), select.EPOLLIN)
        self.fds[listener.fileno()] = ("listen", listener)
        self.ep.register(wake_r, select.EPOLLIN)
        self.fds[wake_r] = ("signal", None)
        self.listener = listener
        drain_deadline = 0.0
        while True:
            timeout = -1.0
            if self.exited:
                if not self.open_outputs(self.init) or time.monotonic() > drain_deadline:
                    self.finish()
                    return
                timeout = 0.05
            try:
                events = self.ep.poll(timeout)
            except InterruptedError:
                continue
            self.dispatch(events, wake_r)
            if self.init is not None and self.init.status is not None and not self.exited:
                self.exited = True
                drain_deadline = time.monotonic() + 2.0

    def dispatch(self, events: list[tuple[int, int]], wake_r: int) -> None:
        for fd, _ev in events:
            kind, obj = self.fds.get(fd, (None, None))
            if kind == "out":
                self.on_output(fd, obj)
            elif kind == "listen":
                self.on_accept()
            elif kind == "client":
                self.on_client(obj)
            elif kind == "signal":
                try:  # noqa: SIM105 (no contextlib after the fork, see the top)
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
        self.reap()

    def open_outputs(self, proc: Proc | None) -> bool:
        return proc is not None and bool(proc.outputs)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.init is not None and pid == self.init.pid:
                self.init.status = status
            elif pid in self.execs:
                proc = self.execs.pop(pid)
                proc.status = status
                self.finish_exec(proc)

    def finish_exec(self, proc: Proc) -> None:
        # drain what the process wrote before its exit, then tell its client
        deadline = time.monotonic() + 1.0
        while proc.outputs and time.monotonic() < deadline:
            for fd in list(proc.outputs):
                self.on_output(fd, proc, final=True)
        self.close_outputs(proc)
        if proc.stdin_fd >= 0:
            os.close(proc.stdin_fd)
            proc.stdin_fd = -1
        c = proc.client
        if c is not None and proc.status is not None:
            self.send(c, P.frame(P.EXIT, marshal.dumps({"exit_code": exit_code(proc.status)})))
            self.drop(c)

    def close_outputs(self, proc: Proc) -> None:
        for fd in list(proc.outputs):
            self.close_output(fd, proc)

    def close_output(self, fd: int, proc: Proc) -> None:
        proc.outputs.pop(fd, None)
        self.fds.pop(fd, None)
        try:  # noqa: SIM105 (no contextlib after the fork, see the top)
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass
        if fd == proc.master:
            return  # kept for stdin and resize until the process is gone
        os.close(fd)

    def on_output(self, fd: int, proc: Proc, final: bool = False) -> None:
        stream = proc.outputs.get(fd)
        if stream is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            if final and proc.status is not None:
                self.close_output(fd, proc)
            return
        except OSError:  # EIO: the pty's last slave is closed
            data = b""
        if not data:
            self.close_output(fd, proc)
            return
        kind = P.STDOUT if stream == "stdout" else P.STDERR
        if proc is self.init:
            self.log.write(stream, data)
            out = P.frame(kind, data)
            for c in list(self.clients.values()):
                if c.mode == "attach" and c.streams[kind - 1]:
                    self.send(c, out)
        elif proc.client is not None:
            self.send(proc.client, P.frame(kind, data))

    def send(self, c: Client, data: bytes) -> None:
        try:
            c.sock.sendall(data)
        except OSError:
            self.drop(c)

    def drop(self, c: Client) -> None:
        fd = c.sock.fileno()
        if fd < 0:
            return
        self.clients.pop(fd, None)
        self.fds.pop(fd, None)
        try:  # noqa: SIM105 (no contextlib after the fork, see the top)
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass
        if c.mode == "attach" and c.stdin:
            self.stdin_done()
        if c.exec is not None:
            c.exec.client = None
        c.sock.close()

    def stdin_done(self) -> None:
        if self.p.get("stdin_once") and self.init is not None and self.init.stdin_fd >= 0:
            os.close(self.init.stdin_fd)
            self.init.stdin_fd = -1

    def on_accept(self) -> None:
        try:
            fd, _ = self.listener._accept()  # type: ignore[attr-defined]  # C's accept, not in typeshed
        except OSError:
            return
        sock = Sock(fileno=fd)
        sock.setblocking(True)
        sock.settimeout(30)
        c = Client(sock)
        self.clients[sock.fileno()] = c
        self.fds[sock.fileno()] = ("client", c)
        self.ep.register(sock.fileno(), select.EPOLLIN)

    def on_client(self, c: Client) -> None:
        try:
            data = c.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop(c)
            return
        c.buf += data
        while len(c.buf) >= P.HEADER:
            kind, size = P.parse_header(c.buf[: P.HEADER])
            if len(c.buf) < P.HEADER + size:
                return
            payload = c.buf[P.HEADER : P.HEADER + size]
            c.buf = c.buf[P.HEADER + size :]
            self.on_frame(c, kind, payload)
            if c.sock.fileno() < 0:
                return

    def target_proc(self, c: Client) -> Proc | None:
        return c.exec if c.mode == "exec" else self.init

    def on_frame(self, c: Client, kind: int, payload: bytes) -> None:
        if kind == P.CONTROL:
            try:
                req = marshal.loads(payload)
                reply = self.handle(c, req)
            except Exception as e:
                reply = {"error": f"{type(e).__name__}: {e}"}
            if reply is not None:
                self.send(c, P.frame(P.CONTROL, marshal.dumps(reply)))
            return
        proc = self.target_proc(c)
        if proc is None:
            return
        if kind == P.STDIN:
            fd = proc.master if proc.tty else proc.stdin_fd
            if fd >= 0 and (c.stdin or c.mode == "exec"):
                try:
                    os.set_blocking(fd, True)
                    os.write(fd, payload)
                except OSError:
                    pass
        elif kind == P.CLOSE_STDIN:
            if proc is self.init:
                if c.stdin:
                    c.stdin = False
                    self.stdin_done()
            elif proc.stdin_fd >= 0:
                os.close(proc.stdin_fd)
                proc.stdin_fd = -1
        elif kind == P.RESIZE:
            h, w = marshal.loads(payload)
            self.resize(proc, h, w)

    def resize(self, proc: Proc, h: int, w: int) -> None:
        if proc.master >= 0:
            import fcntl
            import struct

            fcntl.ioctl(proc.master, 0x5414, struct.pack("HHHH", h, w, 0, 0))  # TIOCSWINSZ

    def handle(self, c: Client, req: dict[str, Any]) -> dict[str, Any] | None:
        op = req.get("op")
        init = self.init
        assert init is not None
        if op == "start":
            return self.start()
        if op == "kill":
            sig = int(req.get("signal", 15))
            if req.get("all"):
                self.cgroup.kill_all(sig)
            elif init.status is None:
                os.kill(init.pid, sig)
            return {"ok": True}
        if op == "wait":
            c.mode = "wait"
            return None
        if op == "attach":
            c.mode = "attach"
            c.streams = (bool(req.get("stdout", True)), bool(req.get("stderr", True)))
            c.stdin = bool(req.get("stdin")) and (init.stdin_fd >= 0 or init.tty)
            return {"ok": True}
        if op == "resize":
            self.resize(init, int(req["height"]), int(req["width"]))
            return {"ok": True}
        if op == "exec":
            return self.exec(c, req)
        if op == "state":
            return dict(self.state)
        if op == "spawn":
            spawn(c.sock, str(req["dir"]), staged=bool(req.get("staged")))
            self.drop(c)
            return None
        return {"error": f"unknown op {op!r}"}

    def start(self) -> dict[str, Any]:
        init, sync = self.init, self.sync
        if init is None or sync is None or self.started:
            return {"error": "container already started"}
        self.started = True
        sync.sendall(b"G")
        sync.settimeout(30)
        # the sync socket is close-on-exec in the child: EOF means execve succeeded
        try:
            msg = sync.recv(65536)
        except OSError:
            msg = b""
        sync.close()
        self.sync = None
        if msg[:1] == b"E":
            text = msg[1:].decode(errors="replace")
            code = 127 if ("not found" in text or "no such file" in text) else 126 if "permission denied" in text else 1
            self.error = text
            self.error_code = code
            return {"error": text, "exit_code": code}
        self.state["status"] = "running"
        self.state["started_at"] = rfc3339(time.time_ns())
        write_atomic(self.dir + "/state.json", dumps(self.state))
        return {"pid": init.pid}

    def exec(self, c: Client, req: dict[str, Any]) -> dict[str, Any]:
        init = self.init
        if init is None or init.status is not None or not self.started:
            return {"error": "container is not running"}
        proc_spec = req["process"]
        if not self.in_pidns:
            # exec'd processes are born in the init's pid namespace (the helper made it, or joined it, for the init)
            fd = os.open(f"/proc/{init.pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.CLONE_NEWPID)
            finally:
                os.close(fd)
            self.in_pidns = True
        with open(self.dir + "/spec", "rb") as f:
            spec = marshal.load(f)
        cg_files = self.cgroup.join_files()
        init_pid = init.pid
        cache = os.path.dirname(self.dir) + "/.seccomp"
        bpf = None if proc_spec.get("privileged") else read_bpf(self.dir + "/seccomp.bpf")

        def target(sync: Sock) -> None:
            from engine.exec import container

            container.exec_main(init_pid, spec, proc_spec, cg_files, sync, cache, bpf=bpf)

        proc, sock = self.fork_child(target, bool(proc_spec.get("terminal")), bool(req.get("stdin")))
        sock.settimeout(30)
        err = self.wait_ready(proc, sock)
        if err is None:
            try:
                msg = sock.recv(65536)  # EOF once execve succeeded
            except OSError:
                msg = b""
            if msg[:1] == b"E":
                err = msg[1:].decode(errors="replace")
        sock.close()
        if err is not None:
            for fd in [*list(proc.outputs), proc.stdin_fd, proc.master]:
                if fd >= 0:
                    os.close(fd)
            with suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            code = 127 if ("not found" in err or "no such file" in err) else 126 if "permission denied" in err else 1
            return {"error": err, "exit_code": code}
        c.mode = "exec"
        c.exec = proc
        proc.client = c
        self.execs[proc.pid] = proc
        self.watch_proc(proc)
        return {"pid": proc.pid}

    # --- the end ---

    def finish(self) -> None:
        init = self.init
        assert init is not None and init.status is not None
        self.close_outputs(init)
        self.log.flush()
        oom = self.cgroup.oom_kills() > 0
        code = getattr(self, "error_code", None) or exit_code(init.status)
        # processes left by exec (they were killed with the pid namespace); the cgroup goes once they are reaped
        with suppress(OSError):
            self.cgroup.kill_all(9)
        with suppress(OSError):
            self.cgroup.delete()
        result = {"exit_code": code, "oom_killed": oom, "finished_at": rfc3339(time.time_ns()),
                  "error": getattr(self, "error", None)}  # fmt: skip
        write_atomic(self.dir + "/exit.json", dumps(result))
        with suppress(OSError):
            os.unlink(self.dir + "/ctl.sock")
        note = P.frame(P.EXIT, marshal.dumps({"exit_code": code}))
        reply = P.frame(P.CONTROL, marshal.dumps(result))
        for c in list(self.clients.values()):
            if c.mode == "wait":
                self.send(c, reply)
            elif c.mode == "attach":
                self.send(c, note)
            self.drop(c)


def run(state_dir: str, report: Any, handshake: Any = None) -> None:
    """The supervisor's life: set up the container, `report(b"R<pid>" or b"E<error>")`, serve, exit.

    `handshake`: a staged create (see Supervisor.setup)."""
    params = marshal.loads(read_file(state_dir + "/params"))
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda *_: None)
    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGPIPE):
        _signal.signal(sig, _signal.SIG_IGN)
    sup = Supervisor(state_dir, params)
    try:
        err = sup.setup(handshake)
    except Exception as e:
        err = f"{type(e).__name__}: {e}"
    if err is not None:
        if sup.init is not None:
            with suppress(OSError):
                os.kill(sup.init.pid, 9)
                os.waitpid(sup.init.pid, 0)
        with suppress(OSError):
            sup.cgroup.delete()
        report(("E" + err).encode())
        os._exit(1)
    listener = Sock(_socket.AF_UNIX, _socket.SOCK_STREAM)
    path = state_dir + "/ctl.sock"
    if len(path.encode()) <= P.SUN_PATH_MAX:  # most often: without socket_path's generator machinery
        listener.bind(path)
    else:
        with P.socket_path(path) as name:
            listener.bind(name)
    os.chmod(path, 0o600)
    listener.listen(16)
    listener.setblocking(False)
    assert sup.init is not None
    # what exists now is shared copy-on-write with the supervisors forked from this one: keep the collector
    # from writing to it
    gc.freeze()
    report(f"R{sup.init.pid}".encode())
    sup.serve(listener, wake_r)
    os._exit(0)


def spawn(conn: Sock, state_dir: str, staged: bool = False) -> None:
    """Forks a new supervisor for another container from this live one (op "spawn").

    No interpreter start-up and no imports, and the new supervisor shares this one's pages copy-on-write: what
    makes create fast and supervisors small. The new one leaves our process tree (double fork, own session) and
    answers on `conn`; our children are born in our container's pid namespace, so we fork from the host's.
    `staged`: the engine writes the spec later; the new supervisor answers {"prepared": "P"} once its init waits
    in the cgroup, then waits for a frame on `conn` (EOF: given up) before it carries on.
    """
    host_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    container_ns = os.open("/proc/self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(host_ns, linux.CLONE_NEWPID)
        _fork_supervisor(conn, state_dir, staged)
    finally:
        linux.setns(container_ns, linux.CLONE_NEWPID)
        os.close(host_ns)
        os.close(container_ns)


def rehearse(scratch: str, rounds: int = 10) -> None:
    """Runs a supervisor's everyday code a few times on a stand-in container, in the zygote before it forks.

    On CPython 3.11 the first calls of a function write to its code object (warm-up counters, then the
    specialised bytecode), and first uses fill caches (method cache, interned names, lazily made objects). Done
    here, those pages stay shared; done in each forked supervisor, each copied its own: ~0.4 MiB apiece. The
    stand-in "init" is a child that exits once started; its output goes through a pipe into a scratch log. The
    scratch dir has no `params` file, so the runtime never takes it for a container."""
    os.mkdir(scratch, 0o700)
    params = {"id": "rehearsal", "cgroup": "portside-rehearsal", "tty": False, "log_path": scratch + "/log",
              "log_max_size": 4096, "log_max_file": 2, "resources": {}, "pidns": "", "bundle": scratch,
              "open_stdin": True, "stdin_once": False}  # fmt: skip
    try:
        with open(scratch + "/rehearsal-params", "wb") as f:
            marshal.dump(params, f)
        for _ in range(rounds):
            _rehearse_once(scratch)
    finally:
        for name in os.listdir(scratch):
            os.unlink(f"{scratch}/{name}")
        os.rmdir(scratch)


def remove_stale_rehearsals(exec_root: str) -> None:
    """Scratch dirs of zygotes killed while rehearsing (another live zygote's is left alone)."""
    for name in os.listdir(exec_root):
        if not name.startswith(".rehearsal-") or not name[11:].isdigit():
            continue
        try:
            os.kill(int(name[11:]), 0)
            continue
        except ProcessLookupError:
            pass
        except OSError:
            continue
        scratch = f"{exec_root}/{name}"
        with suppress(OSError):
            for entry in os.listdir(scratch):
                os.unlink(f"{scratch}/{entry}")
            os.rmdir(scratch)


def _rehearse_once(scratch: str) -> None:
    with open(scratch + "/rehearsal-params", "rb") as f:
        sup = Supervisor(scratch, marshal.load(f))

    def target(sync: Sock) -> None:
        os.write(1, b"rehearsal output\n")
        sync.sendall(b"R")
        sync.recv(1)  # "G": start
        os._exit(0)

    proc, sync = sup.fork_child(target, False, True)
    sup.init, sup.sync = proc, sync
    sup.wait_ready(proc, sync)
    sup.watch_proc(proc)
    sup.state = {"id": "rehearsal", "status": "created", "pid": proc.pid, "pid_start": start_time(proc.pid),
                 "created_at": rfc3339(time.time_ns()), "started_at": None}  # fmt: skip
    write_atomic(scratch + "/state.json", dumps(sup.state))
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    sup.ep.register(wake_r, select.EPOLLIN)
    sup.fds[wake_r] = ("signal", None)
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    c = Client(ours)
    sup.clients[ours.fileno()] = c
    sup.fds[ours.fileno()] = ("client", c)
    sup.ep.register(ours.fileno(), select.EPOLLIN)
    for req in ({"op": "attach", "stdin": True}, {"op": "start"}, {"op": "state"}, {"op": "wait"}):
        theirs.sendall(P.frame(P.CONTROL, marshal.dumps(req)))
    theirs.sendall(P.frame(P.STDIN, b"x"))
    os.write(wake_w, b"\0")
    deadline = time.monotonic() + 2.0
    while (proc.status is None or proc.outputs) and time.monotonic() < deadline:
        sup.dispatch(sup.ep.poll(0.1), wake_r)
        with suppress(ChildProcessError):
            pid, status = os.waitpid(proc.pid, os.WNOHANG)  # the zygote has no SIGCHLD wake-up to rely on
            if pid:
                proc.status = status
    theirs.close()
    sup.dispatch(sup.ep.poll(0.1), wake_r)
    sup.log.flush()
    for fd in (wake_r, wake_w, proc.stdin_fd, *proc.outputs):
        if fd >= 0:
            os.close(fd)
    if sup.sync is not None:
        sup.sync.close()
    if isinstance(sup.log, JsonLog) and sup.log.fd >= 0:
        os.close(sup.log.fd)
    sup.ep.close()
    if proc.status is None:
        with suppress(OSError):
            os.kill(proc.pid, 9)
            os.waitpid(proc.pid, 0)


def _fork_supervisor(conn: Sock, state_dir: str, staged: bool) -> None:
    """The double fork of `spawn`. The parent does as little as it can afterwards: what it writes to then
    (refcounts included) becomes a private copy of the page in the new supervisor."""
    pid = os.fork()
    if pid == 0:
        try:
            if os.fork():
                os._exit(0)
            _become_supervisor(conn.fileno(), state_dir, staged)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)


def _zygote_child(fd: int) -> None:
    """The zygote's child for one connection `fd` (never returns): reads the request and forks the supervisor
    it asks for, which leaves the zygote's process tree as this one exits.

    Here rather than in the zygote: a page the zygote writes after a fork (reading and decoding a request, a
    socket object made and freed) stays shared with the supervisors forked before, but not with the last one,
    whose copy becomes its own private page."""
    try:
        conn = Sock(fileno=fd)
        conn.settimeout(10)
        buf = b""
        while len(buf) < P.HEADER or len(buf) < P.HEADER + P.parse_header(buf[: P.HEADER])[1]:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
        req = marshal.loads(buf[P.HEADER :])
        if req.get("op") == "spawn" and os.fork() == 0:
            _become_supervisor(conn.detach(), str(req["dir"]), bool(req.get("staged")))
    except Exception as e:
        print(f"portside zygote: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        os._exit(0)


def _become_supervisor(keep: int, state_dir: str, staged: bool) -> None:
    """The new supervisor of a spawn (never returns): its own session, only the descriptor `keep` (the
    connection it answers on) kept, stderr to the container's supervisor.log."""
    try:
        os.setsid()
        os.closerange(3, keep)
        os.closerange(keep + 1, 65536)
        log = os.open(state_dir + "/supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 2)
        os.close(log)
        sock = Sock(fileno=keep)
        sock.setblocking(True)

        def report(msg: bytes) -> None:
            try:  # noqa: SIM105 (no contextlib after the fork, see the top)
                sock.sendall(P.frame(P.CONTROL, marshal.dumps({"spawned": msg.decode()})))
            except OSError:
                pass
            sock.close()

        def handshake(msg: bytes) -> tuple[int, bytes] | None:
            try:
                sock.sendall(P.frame(P.CONTROL, marshal.dumps({"prepared": msg.decode()})))
                sock.settimeout(300)
                got = P.recv_frame(sock)
                sock.settimeout(None)
                return got
            except OSError:
                return None

        run(state_dir, report, handshake if staged else None)
    finally:
        os._exit(1)


_FILLERS: list[object] = []  # kept for the zygote's life: see settle_heap


def settle_heap() -> None:
    """Fills the zygote's half-used allocator pools, so what a forked supervisor allocates goes to fresh pages.

    CPython's small-object allocator serves each size class from its pools with free blocks: holes left across
    the zygote's heap by its imports and its rehearsal. A supervisor allocating there copies every page it
    lands on (and its pool's header page), with the zygote's objects around the hole. With the holes filled
    (and the free lists of tuples, lists, dicts... emptied into them first, by a full collection), a
    supervisor's objects go to new pools it is alone on, a few pages per size class in all.
    """
    gc.collect()  # also empties the free lists
    # the allocator's own account of its pools ("avail blocks" per size class), which it prints to stderr only
    fd = os.memfd_create("mallocstats", os.MFD_CLOEXEC)
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    avail: list[tuple[int, int]] = []
    for line in b"".join(chunks).split(b"\n"):
        parts = line.split()
        if len(parts) == 5 and parts[0].isdigit() and parts[1].isdigit():
            avail.append((int(parts[1]), int(parts[4])))
    # a bytes object of length n takes n + 33 bytes; ints of one digit take 28 (the 32-byte class); nothing
    # takes 16 bytes, and what a supervisor allocates there is little
    for size, n in avail:
        if size == 32:
            _FILLERS.extend([i + (1 << 20) for i in range(n)])
        elif size >= 48:
            _FILLERS.extend(bytes(size - 33) for _ in range(n))


def zygote_main(sock_path: str, life_fd: int, ready_fd: int) -> None:
    """A supervisor without a container, kept by one engine to fork new supervisors from (op "spawn").

    It lives as long as the engine holds the other end of `life_fd`: EOF there (engine closed or died) ends it.
    The supervisors it forked are independent of it.
    """
    if os.fork():
        os._exit(0)
    os.setsid()
    os.chdir("/")
    from engine.exec import container  # noqa: F401  (shared with every supervisor forked from here)

    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGPIPE):
        _signal.signal(sig, _signal.SIG_IGN)
    listener = Sock(_socket.AF_UNIX, _socket.SOCK_STREAM)
    with P.socket_path(sock_path) as name:
        listener.bind(name)
    os.chmod(sock_path, 0o600)
    listener.listen(16)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    ep.register(life_fd, select.EPOLLIN | select.EPOLLHUP)
    os.write(ready_fd, b"Z")  # spawn requests wait in the listen backlog until the rehearsal is over
    os.close(ready_fd)
    try:
        remove_stale_rehearsals(os.path.dirname(sock_path))
        rehearse(f"{os.path.dirname(sock_path)}/.rehearsal-{os.getpid()}")
    except Exception as e:  # a smaller saving lost, not the zygote
        print(f"portside zygote: rehearsal: {type(e).__name__}: {e}", file=sys.stderr)
    try:
        settle_heap()
    except Exception as e:  # likewise (an interpreter without pymalloc prints no pools: nothing is filled)
        print(f"portside zygote: settle_heap: {type(e).__name__}: {e}", file=sys.stderr)
    gc.freeze()
    while True:
        try:
            events = ep.poll()
        except InterruptedError:
            continue
        for fd, _ev in events:
            if fd == life_fd:
                with suppress(OSError):
                    os.unlink(sock_path)
                os._exit(0)
            # as little as can be between two forks, all of it in C: see _zygote_child
            try:
                conn, _ = listener._accept()  # type: ignore[attr-defined]  # C's accept, not in typeshed
            except OSError:
                continue
            try:
                pid = os.fork()
            except OSError as e:
                print(f"portside zygote: {e}", file=sys.stderr)
                os.close(conn)
                continue
            if pid == 0:
                _zygote_child(conn)
            os.close(conn)
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)


def main() -> None:
    if sys.argv[1] == "zygote":
        zygote_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    state_dir, ready_fd = sys.argv[1], int(sys.argv[2])
    if os.fork():
        os._exit(0)  # the runtime reaps this one; the supervisor is orphaned, out of the engine's process tree
    os.setsid()
    os.chdir("/")
    # the container side's modules, loaded once here and shared with every supervisor forked from this one
    from engine.exec import container  # noqa: F401

    def report(msg: bytes) -> None:
        os.write(ready_fd, msg)
        os.close(ready_fd)

    run(state_dir, report)
