"""What runs inside a container's namespaces before execve: the init's set-up (namespaces, mounts, pivot_root,
masked and read-only paths, devices, sysctls, hostname) and the process set-up shared by the init and by exec
(tty, rlimits, user, capabilities, no_new_privs, seccomp, executable look-up).

Runs in a child forked from the supervisor. Every failure is sent to the supervisor as text on the sync socket
(in runc's and Docker's words, which decide the exit code of `docker run`), then the child exits.
"""

from __future__ import annotations

import _signal
import _socket
import errno
import fcntl
import os
import resource
import stat
import struct
import sys

from engine.exec import cgroups, idrange, linux, seccomp
from engine.exec.lean import suppress
from engine.exec.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
)

# No typing or socket.py at run time (annotations only; _socket's C type does the work): the zygote shares
# what it imports with every supervisor, each paying its share of those pages in PSS (see lean.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_FLAGS = {
    "ro": (True, linux.MS_RDONLY), "rw": (False, linux.MS_RDONLY), "nosuid": (True, linux.MS_NOSUID),
    "suid": (False, linux.MS_NOSUID), "nodev": (True, linux.MS_NODEV), "dev": (False, linux.MS_NODEV),
    "noexec": (True, linux.MS_NOEXEC), "exec": (False, linux.MS_NOEXEC), "sync": (True, linux.MS_SYNCHRONOUS),
    "async": (False, linux.MS_SYNCHRONOUS), "dirsync": (True, linux.MS_DIRSYNC), "remount": (True, MS_REMOUNT),
    "mand": (True, linux.MS_MANDLOCK), "nomand": (False, linux.MS_MANDLOCK), "atime": (False, linux.MS_NOATIME),
    "noatime": (True, linux.MS_NOATIME), "diratime": (False, linux.MS_NODIRATIME),
    "nodiratime": (True, linux.MS_NODIRATIME), "bind": (True, MS_BIND), "rbind": (True, MS_BIND | MS_REC),
    "relatime": (True, linux.MS_RELATIME), "norelatime": (False, linux.MS_RELATIME),
    "strictatime": (True, linux.MS_STRICTATIME), "nostrictatime": (False, linux.MS_STRICTATIME),
}  # fmt: skip
_PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": linux.MS_SHARED,
    "rshared": linux.MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": linux.MS_UNBINDABLE, "runbindable": linux.MS_UNBINDABLE | MS_REC,
}  # fmt: skip

_RLIMIT = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}

TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSWINSZ = 0x5414


class SetupError(Exception):
    """A failure with the text the user sees (runc's words)."""


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """(mount flags, propagation flags, data) of an OCI mount's options."""
    flags = 0
    prop = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, bit = _FLAGS[opt]
            flags = flags | bit if clear else flags & ~bit
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def _fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _join(cgroup_files: list[str]) -> None:
    # Cgroup.join_files: "0" moves the caller, which must still be single-threaded (v1's `tasks` moves a thread)
    for path in cgroup_files:
        with open(path, "w") as f:
            f.write("0")


def join_cgroups(cgroup_files: list[str], sync: _socket.socket) -> None:
    """A staged init's first step: join the container's cgroup, then wait for the supervisor's "S" (the engine
    wrote the spec). Never returns on failure."""
    try:
        _join(cgroup_files)
    except OSError as e:
        _fail(sync, f"unable to start container process: joining the cgroup: {e}")
    if sync.recv(1) != b"S":
        os._exit(1)


def join_namespaces(spec: dict[str, Any], cgroup_files: list[str]) -> None:
    """Joins the cgroup, then makes or joins every namespace but pid (the supervisor did pid before forking)."""
    _join(cgroup_files)
    flags = 0
    fresh_net = False
    for ns in spec["linux"].get("namespaces") or []:
        kind = ns["type"]
        if kind in ("pid", "user"):
            continue
        if ns.get("path"):
            fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.NAMESPACE_FLAGS[kind])
            except OSError as e:
                raise SetupError(f"failed to join {kind} namespace {ns['path']}: {e.strerror}") from None
            finally:
                os.close(fd)
        else:
            flags |= linux.NAMESPACE_FLAGS[kind]
            fresh_net = fresh_net or kind == "network"
    linux.unshare(flags)
    if fresh_net:
        linux.loopback_up()


def _mount_cgroup(root_fd: int, dest: str, flags: int) -> None:
    version, mounts = cgroups.layout()
    linux.mkdir_all_in_root(root_fd, dest)
    fd = linux.open_in_root(root_fd, dest, os.O_PATH | os.O_DIRECTORY)
    try:
        if version == 2:
            linux.mount("cgroup", _fdpath(fd), "cgroup2", flags)
            return
        linux.mount("tmpfs", _fdpath(fd), "tmpfs", flags & ~MS_RDONLY, "mode=755")
        done: set[str] = set()
        for _ctrl, mnt in mounts.items():
            name = os.path.basename(mnt)
            if name in done:
                continue
            done.add(name)
            linux.mkdir_all_in_root(root_fd, f"{dest}/{name}")
            sub = linux.open_in_root(root_fd, f"{dest}/{name}", os.O_PATH | os.O_DIRECTORY)
            try:
                # in the container's cgroup namespace this shows its own cgroup as the root
                linux.mount("cgroup", _fdpath(sub), "cgroup", flags, ",".join(sorted(
                    c for c, m in mounts.items() if m == mnt)))  # fmt: skip
            finally:
                os.close(sub)
        if flags & MS_RDONLY:
            top = linux.open_in_root(root_fd, dest, os.O_PATH | os.O_DIRECTORY)
            try:
                linux.mount(None, _fdpath(top), None, MS_REMOUNT | MS_RDONLY | (flags & ~MS_RDONLY))
            finally:
                os.close(top)
    finally:
        os.close(fd)


def _do_mount(root_fd: int, m: dict[str, Any]) -> None:
    dest = m["destination"]
    kind = m.get("type") or ""
    flags, prop, data = parse_options(m.get("options") or [])
    if kind == "cgroup":
        _mount_cgroup(root_fd, dest, flags)
        return
    source = m.get("source") or kind
    is_bind = kind == "bind" or flags & MS_BIND
    if is_bind:
        try:
            st = os.stat(source)
        except OSError as e:
            raise SetupError(f"error mounting \"{source}\" to rootfs at \"{dest}\": stat {source}: "
                             f"{e.strerror.lower() if e.strerror else e}") from None  # fmt: skip
        if stat.S_ISDIR(st.st_mode):
            linux.mkdir_all_in_root(root_fd, dest)
        else:
            linux.ensure_file_in_root(root_fd, dest)
    else:
        linux.mkdir_all_in_root(root_fd, dest)
    fd = linux.open_in_root(root_fd, dest, os.O_PATH)
    target = _fdpath(fd)
    try:
        if is_bind:
            linux.mount(source, target, None, MS_BIND | (flags & MS_REC))
            remount = flags & ~(MS_BIND | MS_REC)
            if remount:
                os.close(fd)
                fd = linux.open_in_root(root_fd, dest, os.O_PATH)
                target = _fdpath(fd)
                linux.mount(None, target, None, MS_BIND | MS_REMOUNT | remount | _locked_flags(target))
        else:
            try:
                linux.mount(source, target, kind, flags, data or None)
            except OSError as e:
                if kind == "sysfs" and e.errno == errno.EPERM:
                    # no network namespace of its own (host mode): the host's /sys, bound read-only
                    linux.mount("/sys", target, None, MS_BIND | MS_REC)
                    linux.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
                else:
                    raise SetupError(f'error mounting "{source}" to rootfs at "{dest}": {e.strerror}') from None
        if prop:
            os.close(fd)
            fd = linux.open_in_root(root_fd, dest, os.O_PATH)
            linux.mount(None, _fdpath(fd), None, prop)
    finally:
        os.close(fd)


def _locked_flags(path: str) -> int:
    # flags a bind remount must keep (the kernel refuses to clear them on a locked mount)
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    return f & (MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _make_devices(root_fd: int, devices: list[dict[str, Any]]) -> None:
    for d in devices:
        path = d["path"]
        parent, _, name = path.rpartition("/")
        linux.mkdir_all_in_root(root_fd, parent)
        pfd = linux.open_in_root(root_fd, parent, os.O_PATH | os.O_DIRECTORY)
        try:
            kind = stat.S_IFCHR if d.get("type", "c") in ("c", "u") else stat.S_IFBLK
            mode = d.get("fileMode", 0o666)
            with suppress(FileNotFoundError):
                os.unlink(name, dir_fd=pfd)
            os.mknod(name, kind | mode, os.makedev(d["major"], d["minor"]), dir_fd=pfd)
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                os.chmod(_fdpath(fd), mode)
                os.chown(_fdpath(fd), d.get("uid", 0), d.get("gid", 0))
            finally:
                os.close(fd)
        finally:
            os.close(pfd)
    dev = linux.open_in_root(root_fd, "/dev", os.O_PATH | os.O_DIRECTORY)
    try:
        links = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
                 ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx")]  # fmt: skip
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "core"))
        for src, name in links:
            with suppress(FileExistsError):
                os.symlink(src, name, dir_fd=dev)
    finally:
        os.close(dev)


def _mask_and_protect(spec: dict[str, Any]) -> None:
    lx = spec["linux"]
    for p in lx.get("readonlyPaths") or []:
        if not os.path.exists(p):
            continue
        linux.mount(p, p, None, MS_BIND | MS_REC)
        linux.mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | _locked_flags(p))
    for p in lx.get("maskedPaths") or []:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            linux.mount("tmpfs", p, "tmpfs", MS_RDONLY)
        else:
            linux.mount("/dev/null", p, None, MS_BIND)


def _make_parent_private(path: str) -> None:
    """As runc's rootfsParentMountPrivate: with a shared root (a shared bind asked for it), the mount holding the
    rootfs must not be shared, or the rootfs bind would propagate back to the host and pivot_root refuses it."""
    real = os.path.realpath(path)
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head = line.split(" - ", 1)[0].split(" ")
            mp = head[4].replace("\\040", " ")
            if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, shared = mp, any(o.startswith("shared:") for o in head[6:])
    if best and shared:
        linux.mount(None, best, None, MS_PRIVATE)


def setup_rootfs(spec: dict[str, Any], bundle: str) -> None:
    """Mounts, devices, pivot_root, sysctls, masks, read-only paths and hostname, in runc's order."""
    root = spec["root"]["path"]
    rootfs = root if root.startswith("/") else os.path.join(bundle, root)
    lx = spec["linux"]
    prop = _PROPAGATION.get(lx.get("rootfsPropagation") or "rslave", MS_SLAVE | MS_REC)
    linux.mount(None, "/", None, prop)
    if prop & linux.MS_SHARED:
        _make_parent_private(rootfs)
    linux.mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for m in spec.get("mounts") or []:
            try:
                _do_mount(root_fd, m)
            except OSError as e:
                raise SetupError(f"error mounting \"{m.get('source')}\" to rootfs at \"{m['destination']}\": "
                                 f"{e.strerror or e}") from None  # fmt: skip
        _make_devices(root_fd, lx.get("devices") or [])
        cwd = spec["process"].get("cwd") or "/"
        linux.mkdir_all_in_root(root_fd, cwd)
    finally:
        os.close(root_fd)
    dfd = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(dfd)
    finally:
        os.close(dfd)
    # pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the new root alone. As runc
    # does, the old root is made rslave first (so the detach does not propagate to the host) through an fd of
    # it: mount(2) on "." would be the new root, and MS_REC would turn the container's shared binds into slaves.
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.pivot_root(".", ".")
        os.fchdir(old_root)
    finally:
        os.close(old_root)
    linux.mount(None, ".", None, MS_SLAVE | MS_REC)
    linux.umount2(".", MNT_DETACH)
    os.chdir("/")
    for key, value in (lx.get("sysctl") or {}).items():
        parts = key.replace(".", "/").split("/")
        if "" in parts or ".." in parts:  # the name is a path below /proc/sys; never one that leaves it
            raise OSError(errno.EINVAL, f"invalid sysctl name {key!r}")
        with open("/proc/sys/" + "/".join(parts), "w") as f:
            f.write(str(value))
    _mask_and_protect(spec)
    if spec.get("hostname"):
        _socket.sethostname(spec["hostname"])
    if spec.get("domainname"):
        name = spec["domainname"].encode()
        linux._libc.setdomainname(name, len(name))


def finish_rootfs(spec: dict[str, Any]) -> None:
    if spec["root"].get("readonly"):
        linux.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags("/"))


def open_pty(console: bool) -> tuple[int, int]:
    """A pty from the container's own devpts: (master, slave). `console` binds the slave on /dev/console."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    slave_path = f"/dev/pts/{n}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    if console:
        try:
            if not os.path.exists("/dev/console"):
                os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            linux.mount(slave_path, "/dev/console", None, MS_BIND)
        except OSError:
            pass
    return master, slave


def send_fd(sock: _socket.socket, msg: bytes, fd: int) -> None:
    sock.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder, signed=True))])


def look_path(args: list[str], env: list[str]) -> str:
    """Go's exec.LookPath in the container, with runc's error texts."""
    arg0 = args[0]
    if "/" in arg0:
        try:
            st = os.stat(arg0)
        except OSError as e:
            raise SetupError(f'exec: "{arg0}": stat {arg0}: {(e.strerror or "").lower()}') from None
        if stat.S_ISDIR(st.st_mode) or not os.access(arg0, os.X_OK):
            raise SetupError(f'exec: "{arg0}": permission denied')
        return arg0
    path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), "")
    for d in path.split(":"):
        cand = os.path.join(d or ".", arg0)
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 and os.access(cand, os.X_OK):
            return cand
    raise SetupError(f'exec: "{arg0}": executable file not found in $PATH')


def _current_permitted() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                return int(line.split()[1], 16)
    return (1 << (linux.last_cap() + 1)) - 1


def setup_process(proc: dict[str, Any], seccomp_bpf: bytes | None) -> str:
    """rlimits, oom score, user, capabilities, no_new_privs, seccomp, cwd; returns the executable's path.

    Without no_new_privs, loading seccomp needs CAP_SYS_ADMIN, so it happens before the capabilities drop (as
    runc does); with it, as late as possible.
    """
    for rl in proc.get("rlimits") or []:
        name = rl["type"]
        if name in _RLIMIT:
            try:
                resource.setrlimit(_RLIMIT[name], (rl["soft"], rl["hard"]))
            except (ValueError, OSError) as e:
                raise SetupError(f"error setting rlimit type {name[7:].lower()}: {e}") from None
    if proc.get("oomScoreAdj") is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc["oomScoreAdj"]))
    nnp = bool(proc.get("noNewPrivileges"))
    if nnp:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    elif seccomp_bpf:
        seccomp.load_bpf(seccomp_bpf)
    caps = proc.get("capabilities") or {}
    _permitted = _current_permitted()
    bounding = linux.cap_mask(caps.get("bounding"))
    for n in range(linux.last_cap() + 1):
        if not bounding & (1 << n):
            linux.prctl(linux.PR_CAPBSET_DROP, n)
    try:
        uid, gid, additional = idrange.process_ids(proc.get("user") or {})
    except ValueError as e:
        raise SetupError(str(e)) from None
    linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    os.setgroups(additional)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    # a capability this process lacks (here: CAP_SYS_RESOURCE on some hosts) cannot be granted; skip it as a
    # privileged container on such a host would otherwise not start at all
    have = _permitted
    linux.capset(linux.cap_mask(caps.get("effective")) & have, linux.cap_mask(caps.get("permitted")) & have,
                 linux.cap_mask(caps.get("inheritable")) & have)  # fmt: skip
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in caps.get("ambient") or []:
        if name in linux.CAP_NUMBER:
            linux.prctl(linux.PR_CAP_AMBIENT, 2, linux.CAP_NUMBER[name])
    cwd = proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise SetupError(f'chdir to cwd ("{cwd}") set in config.json failed: {(e.strerror or "").lower()}') from None
    path = look_path(proc["args"], proc.get("env") or [])
    if nnp and seccomp_bpf:
        seccomp.load_bpf(seccomp_bpf)
    return path


def env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def exec_process(path: str, proc: dict[str, Any], sync: _socket.socket) -> None:
    """execve; on failure tells the supervisor why (the sync socket is close-on-exec: EOF means success)."""
    try:
        os.execve(path, proc["args"], env_dict(proc.get("env") or []))
    except OSError as e:
        if e.errno == errno.EACCES:
            msg = f'exec: "{proc["args"][0]}": permission denied'
        elif e.errno == errno.ENOENT:
            msg = f'exec: "{proc["args"][0]}": no such file or directory'
        else:
            msg = f'exec: "{proc["args"][0]}": {(e.strerror or "").lower()}'
        _fail(sync, msg)


def _fail(sync: _socket.socket, msg: str) -> None:
    with suppress(OSError):
        sync.sendall(b"E" + msg.encode())
    os._exit(127 if "not found" in msg or "no such file" in msg else 126 if "permission denied" in msg else 1)


def run_init_reaper(child: int) -> None:
    """PID 1 for `--init`: forwards signals to the command, reaps every zombie, exits as the command did."""
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGCHLD, _signal.SIGKILL, _signal.SIGSTOP):
            continue
        with suppress(OSError, ValueError):
            _signal.signal(sig, lambda s, _f: os.kill(child, s))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)


def reset_signals() -> None:
    """Default dispositions and an empty mask: the supervisor ignores SIGTERM, SIGPIPE..., and ignored signals
    would survive execve into the container."""
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        with suppress(OSError, ValueError):
            _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def container_main(
    spec: dict[str, Any], bundle: str, cgroup_files: list[str], sync: _socket.socket, seccomp_cache: str | None = None,
    *, bpf: bytes | None = None,
) -> None:
    """The container's init: set-up, report ready, wait for start, execve. Never returns. `bpf`: the spec's
    seccomp program compiled already (by the engine); None compiles it here (or reads `seccomp_cache`)."""
    try:
        reset_signals()
        linux.prctl(linux.PR_SET_DUMPABLE, 0)
        if bpf is None and spec["linux"].get("seccomp"):
            bpf = seccomp.prepare(spec["linux"]["seccomp"], seccomp_cache)
        os.setsid()
        join_namespaces(spec, cgroup_files)
        setup_rootfs(spec, bundle)
        proc = spec["process"]
        if proc.get("terminal"):
            take_terminal(sync, console=True, size=proc.get("consoleSize"))
        finish_rootfs(spec)
        path = setup_process(proc, bpf)
    except SetupError as e:
        _fail(sync, str(e))
    except OSError as e:
        _fail(sync, f"unable to start container process: {e}")
    except Exception as e:  # an unexpected bug: still report it, never hang the supervisor
        _fail(sync, f"unable to start container process: {type(e).__name__}: {e}")
    sync.sendall(b"R")
    go = sync.recv(1)
    if go != b"G":
        os._exit(1)
    if (spec.get("annotations") or {}).get("io.portside.init") == "true":
        child = os.fork()
        if child == 0:
            exec_process(path, proc, sync)
        sync.close()
        run_init_reaper(child)
    exec_process(path, proc, sync)


def take_terminal(sync: _socket.socket, console: bool, size: dict[str, int] | None = None) -> None:
    """Open the container's pty, hand the master to the supervisor, and make the slave this process's stdio
    and controlling terminal. `size`: the OCI process's consoleSize, set before the process runs (as runc
    does), so that its first look at the terminal already sees it."""
    master, slave = open_pty(console=console)
    if size:
        fcntl.ioctl(slave, TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    send_fd(sync, b"P", master)
    os.close(master)
    for i in range(3):
        os.dup2(slave, i)
    if slave > 2:
        os.close(slave)
    fcntl.ioctl(0, TIOCSCTTY, 0)


def exec_main(init_pid: int, spec: dict[str, Any], proc: dict[str, Any], cgroup_files: list[str],
              sync: _socket.socket, seccomp_cache: str | None = None, *, bpf: bytes | None = None) -> None:  # fmt: skip
    """A process exec'd into a running container: joins its cgroup and namespaces, then as the init. Never returns.
    `bpf`: the container's compiled seccomp program (not used for a privileged exec)."""
    try:
        reset_signals()
        linux.prctl(linux.PR_SET_DUMPABLE, 0)
        sc = None if proc.get("privileged") else spec["linux"].get("seccomp")
        bpf = None if not sc else bpf if bpf is not None else seccomp.prepare(sc, seccomp_cache)
        os.setsid()
        _join(cgroup_files)
        fds = []
        for kind in ("ipc", "uts", "net", "cgroup", "mnt"):
            with suppress(FileNotFoundError):
                fds.append((os.open(f"/proc/{init_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC), kind))
        for fd, kind in fds:
            if kind == "net" and os.readlink(f"/proc/{init_pid}/ns/net") == os.readlink("/proc/self/ns/net"):
                os.close(fd)
                continue
            linux.setns(fd, 0)
            os.close(fd)
        if proc.get("terminal"):
            take_terminal(sync, console=False, size=proc.get("consoleSize"))
        path = setup_process(proc, bpf)
    except SetupError as e:
        _fail(sync, str(e))
    except OSError as e:
        _fail(sync, f"unable to start container process: {e}")
    except Exception as e:
        _fail(sync, f"unable to start container process: {type(e).__name__}: {e}")
    sync.sendall(b"R")
    exec_process(path, proc, sync)
    sys.exit(127)
