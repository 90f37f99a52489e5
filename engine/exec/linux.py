"""The Linux system calls Python 3.11 lacks, through ctypes on libc: namespaces, mounts, pivot_root, prctl,
capabilities, path resolution that never leaves a root (openat2 RESOLVE_IN_ROOT), and a link brought up by ioctl.

The container's init and exec children and the supervisor's start-up use it; the engine side only `link_up` and
`loopback_up` (engine/net/ifconf.py, for the namespaces it makes).
"""

from __future__ import annotations

import _socket
import ctypes
import errno
import fcntl
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
# Looked up here (in the zygote) rather than by a supervisor's first call, and called with plain ints (no
# argtypes, no c_int objects): what a call touches, in ctypes' objects, is copied into the supervisor.
_unshare = _libc.unshare
_setns = _libc.setns
_prctl_ints = _libc["prctl"]  # without prctl's argtypes: libffi widens plain ints to the registers' size

_MACHINE = os.uname().machine  # platform.machine(), without platform's imports
# syscall numbers not wrapped by glibc 2.36 (x86_64 first, aarch64 second)
_NR = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126, "openat2": 437, "pidfd_open": 434},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91, "openat2": 437, "pidfd_open": 434},
}.get(_MACHINE, {"pivot_root": 155, "capget": 125, "capset": 126, "openat2": 437, "pidfd_open": 434})

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "cgroup": CLONE_NEWCGROUP,
    "user": CLONE_NEWUSER,
}
# the names of /proc/PID/ns/* for each OCI namespace type
NAMESPACE_FILES = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "pid": "pid", "network": "net", "cgroup": "cgroup"}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]  # fmt: skip
CAP_NUMBER = {name: i for i, name in enumerate(CAPABILITIES)}


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    _check(_unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_setns(fd, nstype), "setns")


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target} ({fstype}): {os.strerror(err)}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_NR["pivot_root"], _b(new_root), _b(put_old)), "pivot_root")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def set_child_subreaper() -> None:
    """PR_SET_CHILD_SUBREAPER: orphans among our descendants become our children (the supervisor's call: see
    _unshare above)."""
    if _prctl_ints(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0:
        _check(-1, "prctl(PR_SET_CHILD_SUBREAPER)")


def pidfd_open(pid: int) -> int:
    return _check(_libc.syscall(_NR["pidfd_open"], ctypes.c_int(pid), ctypes.c_uint(0)), "pidfd_open")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def cap_mask(names: list[str] | None) -> int:
    mask = 0
    for name in names or []:
        if name in CAP_NUMBER:
            mask |= 1 << CAP_NUMBER[name]
    return mask


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc.syscall(_NR["capset"], ctypes.byref(hdr), ctypes.byref(data)), "capset")


def apply_capabilities(caps: dict[str, list[str]]) -> None:
    """Sets the bounding, effective, permitted, inheritable and ambient sets as an OCI process asks."""
    bounding = cap_mask(caps.get("bounding"))
    for n in range(last_cap() + 1):
        if not bounding & (1 << n):
            prctl(PR_CAPBSET_DROP, n)
    capset(cap_mask(caps.get("effective")), cap_mask(caps.get("permitted")), cap_mask(caps.get("inheritable")))
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for name in caps.get("ambient") or []:
        if name in CAP_NUMBER:
            prctl(PR_CAP_AMBIENT, 2, CAP_NUMBER[name])  # PR_CAP_AMBIENT_RAISE


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_have_openat2: bool | None = None


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """Opens `path` as seen from `root_fd` taken as `/`: symlinks and `..` never leave it."""
    global _have_openat2
    rel = path.lstrip("/") or "."
    if _have_openat2 is not False:
        how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        fd = _libc.syscall(
            _NR["openat2"], ctypes.c_int(root_fd), _b(rel), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))
        )
        if fd >= 0:
            _have_openat2 = True
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, f"open {path} in root: {os.strerror(err)}", path)
        _have_openat2 = False
    return _open_in_root_walk(root_fd, rel, flags, mode)


def _open_in_root_walk(root_fd: int, rel: str, flags: int, mode: int, depth: int = 0) -> int:
    # For kernels before 5.6: walk one component at a time, resolving symlinks against the root ourselves.
    if depth > 40:
        raise OSError(errno.ELOOP, "too many levels of symbolic links", rel)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    stack: list[str] = []
    i = 0
    while i < len(parts):
        name = parts[i]
        i += 1
        if name == "..":
            if stack:
                stack.pop()
            continue
        cur = os.open("/".join(stack) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
        try:
            try:
                target = os.readlink(name, dir_fd=cur)
            except OSError as e:
                if e.errno in (errno.EINVAL, errno.ENOENT):
                    stack.append(name)
                    continue
                raise
        finally:
            os.close(cur)
        last = i == len(parts)
        if last and flags & os.O_NOFOLLOW:
            stack.append(name)
            continue
        if target.startswith("/"):
            stack = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts[i:]
        i = 0
    return os.open("/".join(stack) or ".", flags | os.O_CLOEXEC, mode, dir_fd=root_fd)


def mkdir_all_in_root(root_fd: int, path: str, mode: int = 0o755) -> None:
    """`mkdir -p` inside the root, never following a symlink out of it."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done = ""
    for name in parts:
        nxt = f"{done}/{name}"
        try:
            fd = open_in_root(root_fd, nxt, os.O_PATH | os.O_DIRECTORY)
            os.close(fd)
        except FileNotFoundError:
            parent = open_in_root(root_fd, done or "/", os.O_PATH | os.O_DIRECTORY)
            try:
                os.mkdir(name, mode, dir_fd=parent)
            except FileExistsError:
                pass
            finally:
                os.close(parent)
        done = nxt


def ensure_file_in_root(root_fd: int, path: str) -> None:
    """Makes an empty file at `path` (and its parents) inside the root unless something is already there."""
    parent, _, name = path.rstrip("/").rpartition("/")
    mkdir_all_in_root(root_fd, parent)
    try:
        os.close(open_in_root(root_fd, path, os.O_PATH))
    except FileNotFoundError:
        pfd = open_in_root(root_fd, parent or "/", os.O_PATH | os.O_DIRECTORY)
        try:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=pfd))
        finally:
            os.close(pfd)


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ_FLAGS = struct.Struct("16sH22x")  # struct ifreq: the name, then ifr_flags in its 24-byte union


def link_up(sock_fd: int, name: bytes) -> None:
    """Interface `name` up (SIOCGIFFLAGS, then SIOCSIFFLAGS if it is down) in the network namespace of the
    datagram socket `sock_fd`: two ioctls, where a netlink request and its parsed reply cost ~1 ms more."""
    flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock_fd, SIOCGIFFLAGS, _IFREQ_FLAGS.pack(name, 0)))[1]
    if not flags & IFF_UP:
        fcntl.ioctl(sock_fd, SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name, flags | IFF_UP))


def loopback_up() -> None:
    """`lo` up in the calling thread's network namespace (_socket's C type: no socket.py in the zygote)."""
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        link_up(s.fileno(), b"lo")
    finally:
        s.close()
