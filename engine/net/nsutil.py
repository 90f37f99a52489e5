"""Network namespaces as bind-mounted files, and running a little code inside one.

Python 3.11 has no os.setns/os.unshare, so this uses libc through ctypes. A netns is made in a short-lived thread
(unshare only moves the calling thread) and pinned by bind-mounting /proc/thread-self/ns/net onto a file, the way
`ip netns add` does, so it outlives every process in it and a restarted engine finds it again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from engine.net import ifconf

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

T = TypeVar("T")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread: namespace changes there never leak into the caller's thread."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=run, name="portside-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def create_netns(path: Path, *, loopback_up: bool = False) -> None:
    """Make a new network namespace pinned at `path` (which must not exist). Removes the file on failure.
    `loopback_up`: bring its `lo` up too, from the thread that made it (another thread joining it and a netlink
    socket cost ~1.5 ms more: `--network none` does nothing else to its namespace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)

    def make() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        _check(_libc.mount(src, str(path).encode(), None, MS_BIND, None), f"bind netns to {path}")
        if loopback_up:
            ifconf.loopback_up()

    try:
        _in_thread(make)
    except BaseException:
        remove_netns(path)  # unpins it too when only bringing lo up failed
        raise


def is_netns(path: Path) -> bool:
    """True if `path` is a pinned netns (a bind mount of an nsfs inode), not just an empty file."""
    try:
        st = os.stat(path)
        return os.stat(path.parent).st_dev != st.st_dev and st.st_ino != 0 and _fs_magic_is_nsfs(path)
    except OSError:
        return False


def _fs_magic_is_nsfs(path: Path) -> bool:
    # An nsfs file answers the NS_GET_NSTYPE ioctl; a plain file does not.
    import fcntl

    ns_get_nstype = 0xB703
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, ns_get_nstype) == CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_netns(path: Path) -> None:
    """Unpin and delete a netns file; the namespace dies when its last process leaves. Missing is fine."""
    rc = _libc.umount2(str(path).encode(), MNT_DETACH)
    if rc != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        _check(rc, f"umount {path}")
    path.unlink(missing_ok=True)


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace of `fd` (call it in a thread of its own)."""
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


def run_in_netns(path: Path | str, fn: Callable[[], T]) -> T:
    """Call fn in a thread that has joined the netns at `path` (a pinned file or /proc/PID/ns/net).

    Sockets created by fn stay in that namespace after the thread ends, which is how the engine listens inside a
    container (the embedded DNS server) and talks netlink to it.
    """

    def inner() -> T:
        fd = os.open(path, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {path}")
        finally:
            os.close(fd)
        return fn()

    return _in_thread(inner)
