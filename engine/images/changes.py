"""Reading a container's upper layer: `docker diff` changes, and a layer tar (overlay whiteouts turned back into
`.wh.` files) for commit. Also the tar writer of export and `docker cp`. Every walk goes through directory fds
without following symlinks (os.fwalk), so a container that plants symlinks cannot make us read host files."""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from engine.images.unpack import OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX

KIND_MODIFIED, KIND_ADDED, KIND_DELETED = 0, 1, 2
_KEEP_XATTRS = ("security.capability", "user.")


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(dirfd: int, name: str | None = None) -> bool:
    path = f"/proc/self/fd/{dirfd}" + (f"/{name}" if name else "")
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lower_exists(lowers: list[Path], parts: list[str]) -> bool:
    """Whether `parts` exists in the union of `lowers` (topmost first), honouring whiteouts and opaque dirs;
    each component is lstat-ed so no symlink of an image is followed."""
    for lower in lowers:
        cur = lower
        hidden = False
        found = True
        for i, p in enumerate(parts):
            cur = cur / p
            try:
                st = os.lstat(cur)
            except (FileNotFoundError, NotADirectoryError):
                found = False
                break
            if is_whiteout(st):
                hidden = True
                break
            if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                found = False
                break
        if hidden:
            return False
        if found:
            return True
        # An opaque directory on the way hides everything below it in the lower layers.
        cur = lower
        for p in parts[:-1]:
            cur = cur / p
            with contextlib.suppress(OSError):
                if os.getxattr(cur, OPAQUE_XATTR, follow_symlinks=False) == b"y":
                    return False
    return False


def overlay_changes(upper: Path, lowers: list[Path]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for dirpath, dirnames, filenames, dirfd in os.fwalk(upper, follow_symlinks=False):
        rel = os.path.relpath(dirpath, upper)
        base_parts = [] if rel == "." else rel.split("/")
        for name in sorted(dirnames + filenames):
            parts = [*base_parts, name]
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            path = "/" + "/".join(parts)
            if is_whiteout(st):
                out.append({"Path": path, "Kind": KIND_DELETED})
            elif _lower_exists(lowers, parts):
                out.append({"Path": path, "Kind": KIND_MODIFIED})
            else:
                out.append({"Path": path, "Kind": KIND_ADDED})
    out.sort(key=lambda c: str(c["Path"]))
    return out


def _xattrs(dirfd: int, name: str) -> dict[str, str]:
    out = {}
    path = f"/proc/self/fd/{dirfd}/{name}"
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    for k in keys:
        if k.startswith(_KEEP_XATTRS):
            with contextlib.suppress(OSError):
                out["SCHILY.xattr." + k] = os.getxattr(path, k, follow_symlinks=False).decode(
                    "utf-8", "surrogateescape"
                )
    return out


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = int(st.st_mtime)
    return ti


def write_tree(
    tar: tarfile.TarFile,
    root_fd: int,
    *,
    prefix: str = "",
    overlay_upper: bool = False,
    include_root: bool = False,
) -> None:
    """Adds the tree under directory fd `root_fd` to `tar`, names prefixed with `prefix` ("" or "dir/").

    With `overlay_upper`, whiteout devices become `.wh.<name>` files and opaque dirs get `.wh..wh..opq`."""
    links: dict[tuple[int, int], str] = {}
    if include_root and prefix:
        st = os.fstat(root_fd)
        ti = _info(prefix.rstrip("/"), st)
        ti.type = tarfile.DIRTYPE
        tar.addfile(ti)
        if overlay_upper and _is_opaque(root_fd):
            tar.addfile(_empty(prefix + WHITEOUT_OPAQUE, st))
    for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
        rel = "" if dirpath == "." else dirpath[2:] + "/"
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            arcname = prefix + rel + name
            if overlay_upper and is_whiteout(st):
                tar.addfile(_empty(prefix + rel + WHITEOUT_PREFIX + name, st))
                continue
            ti = _info(arcname, st)
            ti.pax_headers = _xattrs(dirfd, name)
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
                if overlay_upper and _is_opaque(dirfd, name):
                    tar.addfile(_empty(arcname + "/" + WHITEOUT_OPAQUE, st))
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(name, dir_fd=dirfd)
                tar.addfile(ti)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = links[key]
                    tar.addfile(ti)
                    continue
                links[key] = arcname
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
                with os.fdopen(fd, "rb") as f:
                    fst = os.fstat(f.fileno())
                    if not stat.S_ISREG(fst.st_mode):
                        continue  # swapped under us
                    ti.size = fst.st_size
                    tar.addfile(ti, _Exact(f, fst.st_size))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tar.addfile(ti)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
                tar.addfile(ti)
            # sockets are skipped, as Docker does


class _Exact:
    """A file reader that yields exactly `size` bytes (zero-padded if it shrank meanwhile)."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self._left -= len(data)
        return data


def _empty(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = 0o644
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    return ti
