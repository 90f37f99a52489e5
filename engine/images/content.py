"""A content-addressed blob store: `root/blobs/sha256/<hex>`, written only through verified ingests.

A writer appends to `root/ingest/<hex>` (named after the digest it expects, so a killed download can be resumed
and a second writer of the same blob waits on its lock), hashes as it goes, and on commit checks size and digest,
fsyncs, and renames into `blobs/`. Nothing half-written is ever visible under a digest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from engine.errors import InvalidArgument, NotFound

_DIGEST_RE = re.compile(r"^sha256:([a-f0-9]{64})$")
CHUNK = 1 << 20


class DigestMismatch(InvalidArgument):
    """Content that does not match the digest (or size) it was announced with."""


def hex_of(digest: str) -> str:
    m = _DIGEST_RE.match(digest)
    if m is None:
        raise InvalidArgument(f"invalid digest {digest!r}: only sha256 digests are supported")
    return m.group(1)


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    """An open ingest. Use `write`, then `commit`; `close` without commit keeps the partial file for a resume (when
    the writer was given the digest to resume it under; an anonymous one is dropped)."""

    def __init__(self, store: ContentStore, digest: str | None, size: int | None, path: Path, fd: int) -> None:
        self._store = store
        self.expected_digest = digest
        self.expected_size = size
        self.path = path
        self._fd = fd
        self._hash = hashlib.sha256()
        self.offset = 0
        self._committed = False
        # Resume: hash what an earlier, killed writer already put there.
        st = os.fstat(fd)
        if st.st_size:
            if size is not None and st.st_size > size:
                os.ftruncate(fd, 0)
            else:
                os.lseek(fd, 0, os.SEEK_SET)
                while True:
                    chunk = os.read(fd, CHUNK)
                    if not chunk:
                        break
                    self._hash.update(chunk)
                    self.offset += len(chunk)
        os.lseek(fd, self.offset, os.SEEK_SET)

    on_truncate: Callable[[], None] | None = None  # told when the content starts over (readers of the ingest)

    def truncate(self) -> None:
        """Starts over (the server would not resume)."""
        if self.on_truncate is not None:
            self.on_truncate()
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hash = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes) -> None:
        if self.expected_size is not None and self.offset + len(data) > self.expected_size:
            raise DigestMismatch(
                f"blob {self.expected_digest}: more data than its announced size {self.expected_size}"
            )
        self._hash.update(data)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.offset += len(data)

    def commit(self) -> str:
        """Verifies size and digest, makes the blob durable and visible; returns its digest."""
        actual = "sha256:" + self._hash.hexdigest()
        if self.expected_size is not None and self.offset != self.expected_size:
            self.abort()
            raise DigestMismatch(
                f"blob {self.expected_digest}: size {self.offset} does not match the expected {self.expected_size}"
            )
        if self.expected_digest is not None and actual != self.expected_digest:
            self.abort()
            raise DigestMismatch(
                f"filesystem layer verification failed for digest {self.expected_digest}: content has digest {actual}"
            )
        os.fsync(self._fd)
        target = self._store.blob_path(actual)
        os.rename(self.path, target)
        _fsync_dir(target.parent)
        self._committed = True
        self._release()
        return actual

    def abort(self) -> None:
        """Drops the partial content."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._release()

    def close(self) -> None:
        if not self._committed:
            if self.expected_digest is None:
                self.abort()  # named by no digest, a partial blob can never be resumed: its room is given back
            else:
                self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also drops the flock
            self._fd = -1

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.ingest = root / "ingest"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.ingest.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def read(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def writer(self, digest: str | None = None, size: int | None = None, *, wait: bool = True) -> Writer:
        """Opens an ingest; with a digest it is resumable and exclusive (a second writer waits for the first)."""
        name = hex_of(digest) if digest is not None else "tmp-" + os.urandom(12).hex()
        path = self.ingest / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        # The file we locked may have been committed (renamed away) by the writer we waited for.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self.writer(digest, size, wait=wait)
        return Writer(self, digest, size, path, fd)

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Writes a small blob (manifest, config) in one go, verified against `digest` when given."""
        if digest is not None and self.has(digest):
            return digest
        with self.writer(digest, len(data) if digest else None) as w:
            if w.offset:
                w.truncate()
            w.write(data)
            return w.commit()

    def ingest_file(self, path: Path, digest: str | None = None) -> str:
        """Copies a local file in (for load/import/commit)."""
        with self.writer(digest) as w, open(path, "rb") as f:
            if w.offset:
                w.truncate()
            while chunk := f.read(CHUNK):
                w.write(chunk)
            return w.commit()

    def digests(self) -> Iterator[str]:
        for p in self.blobs.iterdir():
            if _DIGEST_RE.match("sha256:" + p.name):
                yield "sha256:" + p.name

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.blob_path(digest).unlink()

    def gc(self, referenced: Iterable[str], *, stale_ingest_seconds: float = 24 * 3600) -> tuple[list[str], int]:
        """Deletes blobs not in `referenced` and ingests untouched for a day (and not locked by a live writer).

        Returns the deleted digests and the bytes reclaimed."""
        keep = set(referenced)
        deleted: list[str] = []
        reclaimed = 0
        for d in list(self.digests()):
            if d not in keep:
                p = self.blob_path(d)
                with contextlib.suppress(FileNotFoundError):
                    reclaimed += p.stat().st_size
                    p.unlink()
                    deleted.append(d)
        now = time.time()
        for p in self.ingest.iterdir():
            try:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer
                st = os.fstat(fd)
                if now - st.st_mtime >= stale_ingest_seconds:
                    reclaimed += st.st_size
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            finally:
                os.close(fd)
        return deleted, reclaimed
