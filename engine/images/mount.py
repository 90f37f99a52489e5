"""Overlay mounts of a snapshot chain, with the new mount API when the lower list is too long for one page.

mount(2) takes its options in one page (4096 bytes), so deep images overflow a `lowerdir=` list of absolute
paths. Kernels from 6.8 accept each lower layer on its own through fsconfig(`lowerdir+`), which has no such
limit; older kernels get the classic call and a clear error past the page.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence
from pathlib import Path

from engine.errors import EngineError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long

# New mount API syscalls share one number on every architecture.
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100
MNT_DETACH = 2
PAGE = os.sysconf("SC_PAGE_SIZE")


class MountError(EngineError):
    pass


def _err(what: str) -> MountError:
    e = ctypes.get_errno()
    return MountError(f"{what}: {os.strerror(e)}")


def _options(lowers: Sequence[Path], upper: Path | None, work: Path | None) -> str:
    opts = "lowerdir=" + ":".join(str(p) for p in lowers)
    if upper is not None and work is not None:
        opts += f",upperdir={upper},workdir={work}"
    return opts


def mount_overlay(target: Path, lowers: Sequence[Path], upper: Path | None, work: Path | None) -> None:
    """Mounts an overlay at `target`; `lowers` are topmost first."""
    if not lowers:
        raise MountError("overlay mount needs at least one lower directory")
    opts = _options(lowers, upper, work)
    if len(opts) < PAGE - 1:
        rc = _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, opts.encode())
        if rc != 0:
            raise _err(f"mount overlay on {target}")
        return
    _mount_overlay_fsconfig(target, lowers, upper, work)


def _fsconfig_string(fd: int, key: str, value: str) -> None:
    rc = _libc.syscall(
        SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(FSCONFIG_SET_STRING), key.encode(), value.encode(), 0
    )
    if rc < 0:
        raise _err(f"overlay option {key}={value}")


def _mount_overlay_fsconfig(target: Path, lowers: Sequence[Path], upper: Path | None, work: Path | None) -> None:
    fs = _libc.syscall(SYS_FSOPEN, b"overlay", ctypes.c_uint(FSOPEN_CLOEXEC))
    if fs < 0:
        raise _err("fsopen overlay")
    try:
        try:
            for p in lowers:
                _fsconfig_string(fs, "lowerdir+", str(p))
        except MountError as e:
            raise MountError(
                f"image has {len(lowers)} layers, more than this kernel's overlay mount options can list ({e})"
            ) from None
        if upper is not None and work is not None:
            _fsconfig_string(fs, "upperdir", str(upper))
            _fsconfig_string(fs, "workdir", str(work))
        rc = _libc.syscall(SYS_FSCONFIG, ctypes.c_int(fs), ctypes.c_uint(FSCONFIG_CMD_CREATE), None, None, 0)
        if rc < 0:
            raise _err("create overlay")
        mnt = _libc.syscall(SYS_FSMOUNT, ctypes.c_int(fs), ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(0))
        if mnt < 0:
            raise _err("fsmount overlay")
        try:
            rc = _libc.syscall(
                SYS_MOVE_MOUNT,
                ctypes.c_int(mnt),
                b"",
                ctypes.c_int(AT_FDCWD),
                str(target).encode(),
                ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
            )
            if rc < 0:
                raise _err(f"move_mount overlay to {target}")
        finally:
            os.close(mnt)
    finally:
        os.close(fs)


def unmount(target: Path) -> None:
    """Unmounts `target`; a busy mount is detached lazily. Not mounted is not an error."""
    rc = _libc.umount2(str(target).encode(), 0)
    if rc == 0:
        return
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOENT):
        return
    if e == errno.EBUSY:
        if _libc.umount2(str(target).encode(), MNT_DETACH) == 0:
            return
        raise _err(f"unmount {target}")
    raise MountError(f"unmount {target}: {os.strerror(e)}")


def is_mountpoint(path: Path) -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            s = str(path)
            return any(line.split()[4] == s for line in f)
    except OSError:
        return False
