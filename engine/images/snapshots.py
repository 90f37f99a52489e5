"""Snapshots: one unpacked directory per layer chain id, shared by every image that has that chain.

`root/<chain hex>/fs` holds only that layer's own changes in overlayfs form; `root/<chain hex>/meta.json` its
diff id, parent chain id and size. A snapshot is built under `root/tmp-*` and renamed into place, so a
directory named after a chain id is always complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.crashpoints import crashpoint
from engine.images.content import hex_of
from engine.images.unpack import ApplyResult, Limits, apply_layer

_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def mark_topdir(path: Path) -> None:
    """Flags `path` as the top of directory hierarchies (chattr +T), so ext4's Orlov allocator spreads each
    directory made in it over the block groups instead of packing them into the parent's group.

    Every snapshot is a tree of its own; in the parent's group the inodes a removed image just freed are
    skipped one by one while they are recent (ext4 without a journal checks each), which made unpacking many
    small files right after removing an image several times slower. Best effort: other filesystems refuse it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            flags = struct.unpack("i", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0" * 4))[0]
            if not flags & _FS_TOPDIR_FL:
                fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("i", flags | _FS_TOPDIR_FL))
        finally:
            os.close(fd)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI chain ids of a layer list: chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


@dataclass
class SnapshotInfo:
    chain_id: str
    diff_id: str
    parent: str | None
    size: int


class SnapshotStore:
    def __init__(self, root: Path, limits: Limits | None = None) -> None:
        self.root = root
        self.limits = limits or Limits()
        root.mkdir(parents=True, exist_ok=True)
        mark_topdir(root)
        self.empty = root / "empty"
        self.empty.mkdir(exist_ok=True)

    def dir(self, chain_id: str) -> Path:
        return self.root / hex_of(chain_id)

    def fs(self, chain_id: str) -> Path:
        return self.dir(chain_id) / "fs"

    def has(self, chain_id: str) -> bool:
        return (self.dir(chain_id) / "meta.json").exists()

    def info(self, chain_id: str) -> SnapshotInfo:
        meta = json.loads((self.dir(chain_id) / "meta.json").read_text())
        return SnapshotInfo(chain_id, meta["diff_id"], meta.get("parent"), meta["size"])

    def chain_ids(self) -> Iterator[str]:
        for p in self.root.iterdir():
            if len(p.name) == 64 and (p / "meta.json").exists():
                yield "sha256:" + p.name

    def create(
        self,
        chain_id: str,
        parent: str | None,
        blob: BinaryIO,
        *,
        expected_diff_id: str | None,
        progress: Callable[[int], None] | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> ApplyResult:
        """Unpacks `blob` as the snapshot `chain_id`; refuses it when its diff id is not the one expected."""
        tmp = self.root / f"tmp-{os.getpid()}-{os.urandom(6).hex()}"
        (tmp / "fs").mkdir(parents=True)
        try:
            result = apply_layer(blob, tmp / "fs", limits=self.limits, progress=progress)
            if expected_diff_id is not None and result.diff_id != expected_diff_id:
                from engine.images.unpack import LayerError

                raise LayerError(
                    f"layer content does not match its diff id: expected {expected_diff_id}, got {result.diff_id}"
                )
            diff_id = result.diff_id
            if before_commit is not None:
                before_commit()  # e.g. wait until the blob streamed in here is verified
            if parent is None and chain_id != diff_id:
                chain_id = diff_id
            meta = {"diff_id": diff_id, "parent": parent, "size": result.size, "created": time.time()}
            (tmp / "meta.json").write_text(json.dumps(meta))
            crashpoint("snapshot.create.rename")
            try:
                os.rename(tmp, self.dir(chain_id))
            except OSError:
                if not self.has(chain_id):
                    raise
                # Someone made the same snapshot meanwhile: theirs is as good as ours.
                shutil.rmtree(tmp, ignore_errors=True)
            return result
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove(self, chain_id: str) -> None:
        d = self.dir(chain_id)
        if not d.exists():
            return
        # Rename first so a half-removed snapshot is never taken for a complete one.
        trash = self.root / f"tmp-rm-{os.urandom(6).hex()}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(d, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def clean_stale(self) -> None:
        """Removes leftovers of builds and removals killed halfway (at startup, when no build runs)."""
        for p in self.root.iterdir():
            if p.name.startswith("tmp-"):
                try:
                    pid = int(p.name.split("-")[1])
                except (IndexError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    continue
                shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_OVERLAY_PRIVATE = ("trusted.overlay.origin", "trusted.overlay.impure", "trusted.overlay.nlink",
                    "trusted.overlay.upper", "trusted.overlay.uuid")
_OVERLAY_REFUSED = ("trusted.overlay.redirect", "trusted.overlay.metacopy")


def adoptable(upper: Path) -> bool:
    """Whether an overlay upper directory can become a snapshot as it is: its whiteouts and opaque markers are
    already in the snapshots' (overlayfs) form. The xattrs overlayfs keeps for its own bookkeeping of an upper
    layer (origin, impure, nlink) are dropped; a redirect or metacopy entry (redirect_dir, metacopy features)
    only means something next to that upper's own lower layers, so such a tree is unpacked the usual way."""
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in (".", *dirnames, *filenames):
            p = os.path.join(dirpath, name)
            try:
                keys = os.listxattr(p, follow_symlinks=False)
            except OSError:
                return False
            for k in keys:
                if k in _OVERLAY_REFUSED:
                    return False
                if k in _OVERLAY_PRIVATE:
                    with contextlib.suppress(OSError):
                        os.removexattr(p, k, follow_symlinks=False)
    return True


def adopt(store: SnapshotStore, chain_id: str, parent: str | None, upper: Path, diff_id: str) -> bool:
    """Makes the overlay upper directory `upper` (a build step's, whose layer tar was just written from it) the
    snapshot `chain_id` by renaming it into place: no second unpacking of the same bytes. False when it cannot
    (see adoptable); the caller then unpacks the layer blob. `upper` is gone afterwards either way but on False."""
    if store.has(chain_id) or not adoptable(upper):
        return False
    size = 0
    for dirpath, _dirs, files in os.walk(upper):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, f))
                if stat.S_ISREG(st.st_mode):
                    size += st.st_size
    tmp = store.root / f"tmp-{os.getpid()}-{os.urandom(6).hex()}"
    tmp.mkdir()
    try:
        os.rename(upper, tmp / "fs")
        meta = {"diff_id": diff_id, "parent": parent, "size": size, "created": time.time()}
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.rename(tmp, store.dir(chain_id))
    except OSError:
        if (tmp / "fs").exists() and not upper.exists():
            with contextlib.suppress(OSError):
                os.rename(tmp / "fs", upper)  # give it back: the caller unpacks the blob instead
        shutil.rmtree(tmp, ignore_errors=True)
        return store.has(chain_id)
    return True
