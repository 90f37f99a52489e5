"""`docker cp`: the container's filesystem as Docker shows it, volumes included, for the archive endpoints.

Every path is resolved by engine/images/archive.py with openat2(RESOLVE_IN_ROOT) under this root, so no symlink
inside the container leads out of it. A running container's root is `/proc/<pid>/root`, which also shows its
volumes and binds. A stopped one has its layer mounted for the call, with its binds and named volumes mounted
on top at their destinations, as dockerd does, so `docker cp` reaches a volume's content either way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from engine.crashpoints import crashpoint
from engine.errors import InvalidArgument
from engine.exec import linux
from engine.images import archive
from engine.images.archive import open_in_root
from engine.images.service import ImageService

MNT_DETACH = 2


def _mount_point(root_fd: int, dest: str) -> int:
    """An O_PATH fd of directory `dest` inside the root, made (like dockerd does at mount time) if missing."""
    at = "/"
    for part in [p for p in dest.split("/") if p not in ("", ".")]:
        parent = open_in_root(root_fd, at, os.O_PATH | os.O_DIRECTORY)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=parent)
        finally:
            os.close(parent)
        at = f"{at.rstrip('/')}/{part}"
    return open_in_root(root_fd, at, os.O_PATH | os.O_DIRECTORY)


@contextlib.contextmanager
def _volumes_mounted(root: Path, mounts: list[dict[str, Any]]) -> Iterator[None]:
    done: list[str] = []
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for mt in sorted(mounts, key=lambda mt: mt["Destination"].count("/")):
            if mt.get("Type") not in ("bind", "volume") or not mt.get("Source"):
                continue  # a tmpfs has no content while the container is stopped
            if not os.path.isdir(mt["Source"]):
                continue  # a bind of a single file: copy through the layer's own file
            fd = _mount_point(root_fd, mt["Destination"])
            try:
                # Mount through the fd: the destination was resolved inside the root, symlinks and all.
                target = os.readlink(f"/proc/self/fd/{fd}")
                linux.mount(mt["Source"], f"/proc/self/fd/{fd}", None, linux.MS_BIND | linux.MS_REC)
            finally:
                os.close(fd)
            done.append(target)
            if not mt.get("RW", True):
                linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
        yield
    finally:
        os.close(root_fd)
        for target in reversed(done):
            with contextlib.suppress(OSError):
                linux.umount2(target, MNT_DETACH)


@contextlib.contextmanager
def container_root(images: ImageService, rec: dict[str, Any], scratch: Path) -> Iterator[Path]:
    """The container's filesystem as a path, for the length of the `with`."""
    if rec["State"]["Running"] and rec["State"].get("Pid"):
        yield Path(f"/proc/{rec['State']['Pid']}/root")
        return
    layer = images.container_layer(rec["Id"])
    tmp = Path(tempfile.mkdtemp(prefix=f"cp-{rec['Id'][:12]}-", dir=scratch))
    try:
        layer.mount(tmp)
        try:
            with _volumes_mounted(tmp, rec.get("Mounts") or []):
                yield tmp
        finally:
            layer.unmount(tmp)
    finally:
        with contextlib.suppress(OSError):
            tmp.rmdir()


def _check_writable(rec: dict[str, Any], path: str) -> None:
    """dockerd refuses a copy into a read-only volume, or outside the volumes of a read-only root filesystem."""
    norm = os.path.normpath("/" + path.lstrip("/"))
    for mt in rec.get("Mounts") or []:
        dest = mt["Destination"].rstrip("/") or "/"
        if norm == dest or norm.startswith(dest + "/"):
            if not mt.get("RW", True):
                raise InvalidArgument("mounted volume is marked read-only")
            return
    if rec["HostConfig"].get("ReadonlyRootfs"):
        raise InvalidArgument("container rootfs is marked read-only")


def stat(images: ImageService, rec: dict[str, Any], path: str, scratch: Path) -> dict[str, Any]:
    with container_root(images, rec, scratch) as root:
        return archive.path_stat(root, path)


def get(images: ImageService, rec: dict[str, Any], path: str, scratch: Path) -> tuple[dict[str, Any], Iterator[bytes]]:
    """The path's stat (NotFound raised now, before any byte is sent) and its tar stream."""
    st = stat(images, rec, path, scratch)

    def write(out: BinaryIO) -> None:
        with container_root(images, rec, scratch) as root:
            archive.archive_get(root, path, out)

    return st, archive.pipe_stream(write)


def put(images: ImageService, rec: dict[str, Any], path: str, body: BinaryIO, scratch: Path, *,
        no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
    """`docker cp` into a container. The archive's uid and gid stay, unless `copy_uid_gid` (`docker cp -a`) and
    the container has a Config.User: then every entry belongs to that user and group, resolved in the container's
    passwd and group files (dockerd's applyTarCopyUserOptions)."""
    _check_writable(rec, path)
    with container_root(images, rec, scratch) as root:
        try:
            owner = None
            user = rec["Config"].get("User") or ""
            if copy_uid_gid and user:
                from engine.exec.users import resolve_user

                resolved = resolve_user(root, user)
                owner = (resolved.uid, resolved.gid)
            archive.archive_put(root, path, body, limits=images.snapshots.limits,
                                no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, owner=owner)
            crashpoint("container.cp.mounted")
        except OSError as e:
            if e.errno == errno.EROFS:
                raise InvalidArgument("container rootfs is marked read-only") from None
            raise
