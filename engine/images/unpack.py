"""Applies a layer archive to an empty snapshot directory, for overlayfs, without ever writing outside it.

Python's tarfile only parses here; every entry is created by this module relative to directory file descriptors
opened one component at a time with O_NOFOLLOW, so no symlink (made by this layer or planted beforehand) and no
`..` can take a write outside the snapshot. Whiteouts become overlayfs whiteouts (a 0/0 character device) and
opaque markers the `trusted.overlay.opaque` xattr. A size cap and a free-space reserve stop decompression bombs
from filling the disk.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from engine.errors import InvalidArgument

_zlib: Any = zlib
_ZLIB_ERRORS: tuple[type[Exception], ...] = (zlib.error,)
try:  # ISA-L's inflate is several times faster than zlib's on real layers; same API
    from isal import isal_zlib

    _zlib = isal_zlib
    _ZLIB_ERRORS = (zlib.error, cast(type[Exception], isal_zlib.error))
except ImportError:  # pragma: no cover - isal is a dependency, but zlib does the same job
    pass

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_READ = 1 << 20
_INFLATE = 4 << 20  # most output one inflate step makes (bounds memory against bombs)
_TAR_BUF = 32 << 10  # tarfile's stream mode copies its buffer on every read: keep it small
_SMALL = 256 << 10
_WRITERS = 4  # threads creating small files: file creation is mostly kernel time, which runs without the GIL
_BATCH_FILES = 32
_BATCH_BYTES = 1 << 20
_INFLIGHT = 16  # batches queued before the parser waits for the oldest
_EUID, _EGID = os.geteuid(), os.getegid()
# xattrs a layer may carry onto files; trusted.overlay.* would steer overlayfs (redirects, metacopy) and is refused.
_ALLOWED_XATTR_PREFIXES = ("user.", "security.capability", "trusted.")
_REFUSED_XATTR_PREFIXES = ("trusted.overlay.",)


class LayerError(InvalidArgument):
    """A layer archive that is malformed or tries to leave its snapshot."""


@dataclass
class Limits:
    """Caps on what one layer may write: total uncompressed bytes, and free space left on the filesystem."""

    max_bytes: int = 1 << 40
    min_free_bytes: int = 256 << 20


@dataclass
class ApplyResult:
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # bytes of file content written (Docker's layer size)
    tar_size: int


def detect_compression(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


class _Decompressed:
    """A reader of the uncompressed stream that hashes it (the diff id) and enforces the byte cap."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        head = raw.read(4)
        kind = detect_compression(head)
        self._hash = hashlib.sha256()
        self.count = 0
        self._limit = limit
        self._pending = head
        self._raw = raw
        self._zstd: BinaryIO | None = None
        self._zlib: Any = None
        self._kind = kind
        self._buf = b""
        self._bufpos = 0
        self._eof = False
        if kind == "gzip":
            self._zlib = _zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif kind == "zstd":
            import zstandard

            self._zstd = zstandard.ZstdDecompressor().stream_reader(
                cast(IO[bytes], _Prepend(head, raw)), read_across_frames=True
            )

    def _fill(self, n: int) -> bytes:
        if self._kind == "none":
            if self._pending:
                data, self._pending = self._pending, b""
                return data
            return self._raw.read(n)
        if self._zstd is not None:
            try:
                return self._zstd.read(n)
            except Exception as e:  # zstandard.ZstdError: corrupt frames
                raise LayerError(f"invalid layer: zstd: {e}") from None
        # Inflate in big steps and hand out slices: with tarfile's small reads as max_length, zlib would copy
        # the rest of each 1 MiB input chunk (its unconsumed_tail) for every 32 KiB it returns.
        if self._bufpos >= len(self._buf):
            self._buf, self._bufpos = self._inflate(_INFLATE), 0
            if len(self._buf) <= n:
                data, self._buf = self._buf, b""
                return data
        data = self._buf[self._bufpos : self._bufpos + n]
        self._bufpos += len(data)
        return data

    def _inflate(self, n: int) -> bytes:
        assert self._zlib is not None
        out = b""
        while not out:
            if self._zlib.unconsumed_tail:
                out = self._zlib.decompress(self._zlib.unconsumed_tail, n)
                continue
            if self._zlib.eof:
                # Concatenated gzip members (gzip allows them).
                rest = self._zlib.unused_data
                if not rest:
                    rest = self._raw.read(_READ)
                if not rest:
                    return b""
                self._zlib = _zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = self._zlib.decompress(rest, n)
                continue
            chunk = self._pending or self._raw.read(_READ)
            self._pending = b""
            if not chunk:
                if not self._zlib.eof:
                    raise LayerError("unexpected EOF in the compressed layer")
                return b""
            out = self._zlib.decompress(chunk, n)
        return out

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(_READ):
                parts.append(chunk)
            return b"".join(parts)
        if self._eof:
            return b""
        data = self._fill(max(n, 1))
        if not data:
            self._eof = True
            return b""
        self.count += len(data)
        if self.count > self._limit:
            raise LayerError(f"layer expands beyond the limit of {self._limit} bytes: refused (decompression bomb?)")
        self._hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(_READ):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def readable(self) -> bool:
        return True


class _Prepend:
    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            h, self._head = self._head, b""
            return h + (self._raw.read(n - len(h)) if n > len(h) else b"")
        return self._raw.read(n)


def _clean(name: str) -> list[str]:
    """Splits an entry name into components inside the snapshot; absolute names are taken relative to it."""
    parts: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                raise LayerError(f"invalid layer: entry {name!r} points outside the layer (path traversal refused)")
            parts.pop()
            continue
        if "\0" in p:
            raise LayerError(f"invalid layer: entry name {name!r} has a NUL byte")
        parts.append(p)
    return parts


class SafeRoot:
    """Directory-fd based access below one root, never following a symlink or leaving the root."""

    def __init__(self, root: Path | int) -> None:
        """`root` is a path, or a directory fd (duplicated: the caller keeps its own)."""
        if isinstance(root, int):
            self.fd = os.dup(root)
        else:
            self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._cache: dict[tuple[str, ...], int] = {(): self.fd}

    def close(self) -> None:
        for k, fd in self._cache.items():
            if k != ():
                os.close(fd)
        self._cache = {(): self.fd}
        os.close(self.fd)

    def forget(self, prefix: tuple[str, ...]) -> None:
        """Drops cached fds of `prefix` and below (the directory was removed or replaced)."""
        for k in [k for k in self._cache if k[: len(prefix)] == prefix and k != ()]:
            os.close(self._cache.pop(k))

    def dir(self, parts: tuple[str, ...] | list[str], *, create: bool, mode: int = 0o755) -> int:
        """Returns an fd (owned by the cache) of directory `parts`, creating missing ones when asked.

        A component that exists but is not a directory (a symlink above all) is refused, never followed."""
        key = tuple(parts)
        fd = self._cache.get(key)
        if fd is not None:
            return fd
        if len(self._cache) > 512:
            self.forget_all()
        parent = self.dir(key[:-1], create=create, mode=mode)
        name = key[-1]
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, mode, dir_fd=parent)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LayerError(
                    f"invalid layer: path {'/'.join(key)!r} is not a directory inside the layer (symlink refused)"
                ) from None
            raise
        self._cache[key] = fd
        return fd

    def forget_all(self) -> None:
        self.forget(())

    def remove(self, dirfd: int, name: str, key: tuple[str, ...]) -> None:
        """Removes whatever is at `name` in `dirfd`, recursively for directories, never following symlinks."""
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self.forget(key)
            shutil.rmtree(name, dir_fd=dirfd)
        else:
            os.unlink(name, dir_fd=dirfd)


def _set_xattr(dirfd: int, name: str, key: str, value: bytes) -> None:
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        os.setxattr(f"/proc/self/fd/{fd}", key, value)
    finally:
        os.close(fd)


def _xattrs_of(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for k, v in member.pax_headers.items():
        if not k.startswith("SCHILY.xattr."):
            continue
        key = k[len("SCHILY.xattr.") :]
        if not key.startswith(_ALLOWED_XATTR_PREFIXES) or key.startswith(_REFUSED_XATTR_PREFIXES):
            continue
        out.append((key, v.encode("utf-8", "surrogateescape")))
    return out


class _Applier:
    def __init__(
        self, root: Path | int, limits: Limits, progress: Callable[[int], None] | None, whiteouts: bool = True,
        owner: tuple[int, int] | None = None,
    ) -> None:
        self.whiteouts = whiteouts
        self.owner = owner
        self.r = SafeRoot(root)
        self.limits = limits
        self.written = 0
        self._since_check = 0
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        self.progress = progress
        # File creation costs mostly kernel time per file; small files are written by a few threads while this
        # one parses the tar. Anything that could touch a pending path waits for them first (drain).
        # Files go to the threads in batches (one future per batch, not per file), and the parser waits only for
        # the oldest batch when too many are in flight, so the pipeline stays full.
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[tuple[str, ...]] = set()  # paths queued or being written
        self._batch: list[tuple[tarfile.TarInfo, int, str, bytes]] = []
        self._batch_bytes = 0
        self._inflight: collections.deque[Future[None]] = collections.deque()
        # In an empty root (a new snapshot) only paths this layer made can exist: skip lookups for the others.
        self.fresh = False
        self.created: set[tuple[str, ...]] = set()

    def _check_space(self, n: int) -> None:
        self.written += n
        self._since_check += n
        if self.written > self.limits.max_bytes:
            raise LayerError(f"layer content exceeds the limit of {self.limits.max_bytes} bytes: refused")
        if self._since_check >= 8 << 20:
            self._since_check = 0
            st = os.statvfs(self.r.fd)
            if st.f_bavail * st.f_frsize < self.limits.min_free_bytes:
                raise LayerError("no space left on device: layer refused to keep the disk from filling up")

    def _flush(self) -> None:
        if not self._batch:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="portside-unpack")
        self._inflight.append(self._pool.submit(self._write_batch, self._batch))
        self._batch, self._batch_bytes = [], 0

    def drain(self) -> None:
        """Waits until every queued small file is written (before anything that could touch their paths)."""
        self._flush()
        first: BaseException | None = None
        while self._inflight:
            try:
                self._inflight.popleft().result()
            except BaseException as e:
                first = first or e
        self._pending.clear()
        if first is not None:
            raise first

    def close(self) -> None:
        try:
            self.drain()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self.r.close()

    def _small_file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parts: list[str]) -> None:
        key = tuple(parts)
        if key in self._pending or len(self.r._cache) + len(parts) > 500:  # queued files hold cached dir fds
            self.drain()
        dirfd = self.r.dir(parts[:-1], create=True)
        base = parts[-1]
        if not self.fresh or key in self.created:
            self.r.remove(dirfd, base, key)
        self.created.add(key)
        # Straight from the stream: tarfile's extractfile() builds three objects per member. The next member
        # header is read after skipping to its offset, padding included, as with extractfile.
        fileobj = tar.fileobj
        assert fileobj is not None
        data = fileobj.read(m.size) if m.size else b""
        if len(data) != m.size:
            raise tarfile.ReadError("unexpected end of data")
        self._check_space(len(data))
        if self.progress is not None:
            self.progress(len(data))
        self._pending.add(key)
        self._batch.append((m, dirfd, base, data))
        self._batch_bytes += len(data)
        if len(self._batch) >= _BATCH_FILES or self._batch_bytes >= _BATCH_BYTES:
            self._flush()
            if len(self._inflight) > _INFLIGHT:
                self._inflight.popleft().result()

    def _write_batch(self, batch: list[tuple[tarfile.TarInfo, int, str, bytes]]) -> None:
        for m, dirfd, base, data in batch:
            self._write_small(m, dirfd, base, data)

    def _write_small(self, m: tarfile.TarInfo, dirfd: int, base: str, data: bytes) -> None:
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            self._fd_attrs(m, fd)
        finally:
            os.close(fd)

    def _fd_attrs(self, m: tarfile.TarInfo, fd: int) -> None:
        """Owner, mode, xattrs and times of a regular file through its fd (no more path lookups)."""
        if (m.uid, m.gid) != (_EUID, _EGID):
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears setuid bits
        for key, value in _xattrs_of(m):  # after chown, which clears file capabilities
            with contextlib.suppress(OSError):
                os.setxattr(fd, key, value)
        ns = int(m.mtime * 1e9)
        os.utime(fd, ns=(ns, ns))

    def apply(self, tar: tarfile.TarFile) -> None:
        for m in tar:
            if self.owner is not None:
                m.uid, m.gid = self.owner
            if m.isreg() and m.size <= _SMALL and not m.issparse():
                parts = _clean(m.name)
                if parts and not (self.whiteouts and parts[-1].startswith(WHITEOUT_PREFIX)):
                    self._small_file(tar, m, parts)
                    continue
            self.drain()
            self.entry(tar, m)
            self.created.add(tuple(_clean(m.name)))
        self.drain()
        # Directory times last: creating entries inside them changed them.
        for key, mtime in reversed(self.dir_times):
            with contextlib.suppress(OSError):
                if key:
                    parent = self.r.dir(key[:-1], create=False)
                    os.utime(key[-1], ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
                else:
                    os.utime(self.r.fd, ns=(mtime, mtime))

    def entry(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        if m.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            return
        parts = _clean(m.name)
        if not parts:
            return  # the root itself: the snapshot directory keeps its own attributes
        base = parts[-1]
        parent_key = tuple(parts[:-1])
        if self.whiteouts and base.startswith(WHITEOUT_PREFIX):
            dirfd = self.r.dir(parent_key, create=True)
            if base == WHITEOUT_OPAQUE:
                os.setxattr(f"/proc/self/fd/{dirfd}", OPAQUE_XATTR, b"y")
                return
            if base.startswith(WHITEOUT_META_PREFIX):
                return  # aufs hard-link bookkeeping and the like: nothing for overlayfs
            target = base[len(WHITEOUT_PREFIX) :]
            if target in ("", ".", ".."):
                raise LayerError(f"invalid layer: whiteout {m.name!r} names no file inside the layer")
            self.r.remove(dirfd, target, (*parent_key, target))
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dirfd)
            with contextlib.suppress(OSError):
                os.chown(target, m.uid, m.gid, dir_fd=dirfd, follow_symlinks=False)
            return
        dirfd = self.r.dir(parent_key, create=True)
        key = tuple(parts)
        mode = m.mode & 0o7777
        if m.isdir():
            try:
                st = os.stat(base, dir_fd=dirfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    self.r.remove(dirfd, base, key)
                    os.mkdir(base, 0o700, dir_fd=dirfd)
            except FileNotFoundError:
                os.mkdir(base, 0o700, dir_fd=dirfd)
            self.dir_times.append((key, int(m.mtime * 1e9)))
        else:
            self.r.remove(dirfd, base, key)
            if m.isreg():
                self._regular(tar, m, dirfd, base)
                return
            elif m.issym():
                os.symlink(m.linkname, base, dir_fd=dirfd)
            elif m.islnk():
                tparts = _clean(m.linkname)
                if not tparts:
                    raise LayerError(f"invalid layer: hardlink {m.name!r} to the layer root")
                try:
                    tdir = self.r.dir(tparts[:-1], create=False)
                    tst = os.stat(tparts[-1], dir_fd=tdir, follow_symlinks=False)
                except (FileNotFoundError, NotADirectoryError):
                    raise LayerError(
                        f"invalid layer: hardlink {m.name!r} to {m.linkname!r}, which is not in the layer"
                    ) from None
                if stat.S_ISDIR(tst.st_mode):
                    raise LayerError(f"invalid layer: hardlink {m.name!r} to a directory")
                os.link(tparts[-1], base, src_dir_fd=tdir, dst_dir_fd=dirfd, follow_symlinks=False)
                return  # a hard link shares the target's attributes
            elif m.ischr() or m.isblk():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=dirfd)
            elif m.isfifo():
                os.mkfifo(base, 0o600, dir_fd=dirfd)
            else:
                return  # unknown types are skipped, as Docker does
        self._attrs(m, dirfd, base, mode)

    def _regular(self, tar: tarfile.TarFile, m: tarfile.TarInfo, dirfd: int, base: str) -> None:
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
        try:
            # Straight from the stream (after next() it stands at the member's data), except sparse members
            # whose data needs tarfile's map.
            src: Any = tar.extractfile(m) if m.issparse() else tar.fileobj
            left = m.size
            if src is not None:
                while left > 0:
                    chunk = src.read(min(left, _READ))
                    if not chunk:
                        raise tarfile.ReadError("unexpected end of data")
                    left -= len(chunk)
                    self._check_space(len(chunk))
                    view = memoryview(chunk)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    if self.progress is not None:
                        self.progress(len(chunk))
            self._fd_attrs(m, fd)
        finally:
            os.close(fd)

    def _attrs(self, m: tarfile.TarInfo, dirfd: int, base: str, mode: int) -> None:
        os.chown(base, m.uid, m.gid, dir_fd=dirfd, follow_symlinks=False)
        if not m.issym():
            os.chmod(base, mode, dir_fd=dirfd)  # after chown, which clears setuid bits
        for key, value in _xattrs_of(m):  # after chown, which clears file capabilities
            with contextlib.suppress(OSError):
                _set_xattr(dirfd, base, key, value)
        if not m.isdir():
            ns = int(m.mtime * 1e9)
            with contextlib.suppress(OSError):
                os.utime(base, ns=(ns, ns), dir_fd=dirfd, follow_symlinks=False)


def apply_layer(
    blob: BinaryIO,
    dest: Path | int,
    *,
    limits: Limits | None = None,
    progress: Callable[[int], None] | None = None,
    whiteouts: bool = True,
    owner: tuple[int, int] | None = None,
) -> ApplyResult:
    """Unpacks one (gzip, zstd or plain) layer tar into `dest`, an existing empty directory (path or fd).

    On error the caller discards `dest`; nothing outside it has been touched. With whiteouts=False (docker cp)
    `.wh.` names are ordinary files. `owner` (uid, gid) replaces every member's own (docker cp without -a)."""
    limits = limits or Limits()
    reader = _Decompressed(blob, limits.max_bytes + (64 << 20))
    applier = _Applier(dest, limits, progress, whiteouts, owner)
    if not isinstance(dest, int):
        with os.scandir(dest) as it:
            applier.fresh = not any(it)
    try:
        try:
            with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|", bufsize=_TAR_BUF) as tar:
                applier.apply(tar)
        except tarfile.TarError as e:
            raise LayerError(f"invalid layer: not a valid tar archive: {e}") from None
        except (EOFError, gzip.BadGzipFile) as e:
            raise LayerError(f"invalid layer: {e}") from None
        except _ZLIB_ERRORS as e:
            raise LayerError(f"invalid layer: {e}") from None
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise LayerError("no space left on device while unpacking the layer") from None
            raise
        reader.drain()
    finally:
        applier.close()
    return ApplyResult(diff_id=reader.digest, size=applier.written, tar_size=reader.count)


def diff_id_of(blob: BinaryIO) -> str:
    """The sha256 of the uncompressed content of a (possibly compressed) layer."""
    reader = _Decompressed(blob, 1 << 62)
    reader.drain()
    return reader.digest
