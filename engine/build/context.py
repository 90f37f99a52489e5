"""The build context: the request's tar (plain, gzip, bzip2, xz or zstd) or a `remote=` URL, unpacked into a
private directory with the hardened layer applier (no entry can leave it), the Dockerfile read from it, and
`.dockerignore` applied before any instruction sees a file (Docker's remotecontext.Detect)."""

from __future__ import annotations

import bz2
import contextlib
import lzma
import os
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from engine.build import copy as cp
from engine.build import ignore
from engine.build.tarindex import TarIndex, is_plain_tar, is_tar_header
from engine.errors import InvalidArgument
from engine.images.unpack import LayerError, Limits, apply_layer

DEFAULT_DOCKERFILE = "Dockerfile"
_BZ2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"
MAX_DOCKERFILE = 16 << 20


@dataclass
class BuildContext:
    root: Path  # the unpacked context (its parent is the build's private directory); see materialize()
    dockerfile: str  # the Dockerfile's text
    dockerfile_name: str  # as the request named it (for messages)
    excludes: list[str] = field(default_factory=list)
    _dir: Path | None = None
    index: TarIndex | None = None  # a plain tar is read in place until a step needs its files
    body: BinaryIO | None = None
    limits: Limits | None = None

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def materialize(self) -> None:
        """Unpack an indexed context (once), .dockerignore applied: a COPY/ADD step missed the cache."""
        if self.index is None or self.body is None or self.root.exists():
            return
        self.body.seek(0)
        unpack(self.body, self.root.parent, self.limits)
        if self.excludes:
            ignore.apply(self.root, self.excludes)

    def resolve(self, patterns: list[str]) -> list[cp.Source]:
        """The sources a COPY/ADD names, with their cache keys; from the index when there is one."""
        if self.index is None:
            return cp.resolve_sources(self.root, patterns, in_context=True)
        out: list[cp.Source] = []
        for orig in patterns:
            p = cp.clean_source(orig)
            if cp.has_wildcards(p):
                rx = cp.go_match_regex(p)
                for rel in self.index.all_paths():
                    if rx.match(rel):
                        out.append(self._source(rel))
                continue
            if self.index.resolve(p if p != "." else "") is None and p != ".":
                raise cp.not_found(p, in_context=True)
            out.append(self._source("" if p == "." else p))
        if not out:
            raise InvalidArgument("no source files were specified")
        return out

    def _source(self, rel: str) -> cp.Source:
        assert self.index is not None
        found = self.index.source_hash(rel)
        if found is None:
            raise cp.not_found(rel, in_context=True)
        return cp.Source(self.root, rel, found[0], found[1])


def _decompressed(f: BinaryIO) -> BinaryIO:
    """bzip2 and xz wrapped here; gzip, zstd and plain tar are the layer applier's own."""
    head = f.read(6)
    f.seek(0)
    if head.startswith(_BZ2):
        return bz2.BZ2File(f)  # type: ignore[return-value]
    if head.startswith(_XZ):
        return lzma.LZMAFile(f)  # type: ignore[return-value]
    return f


def _is_tar(f: BinaryIO) -> bool:
    """A (possibly compressed) tar, as Docker's detection decides it: a compressed stream, a tar header, or
    an empty archive (all zeros)."""
    pos = f.tell()
    head = f.read(512)
    f.seek(pos)
    return head.startswith((b"\x1f\x8b", _BZ2, _XZ, b"\x28\xb5\x2f\xfd")) or is_tar_header(head) \
        or head == b"\0" * 512


def _read_indexed(index: TarIndex, name: str) -> bytes | None:
    return index.read(name, MAX_DOCKERFILE + 1)


def unpack(body: BinaryIO, workdir: Path, limits: Limits | None = None) -> Path:
    """The context tar unpacked into `workdir`/context; InvalidArgument for a body that is not a valid tar."""
    root = workdir / "context"
    root.mkdir(mode=0o700)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not body.read(1):
            return root  # an empty body: an empty context (the Dockerfile must come from elsewhere)
        body.seek(0)
        try:
            apply_layer(_decompressed(body), fd, limits=limits, whiteouts=False)
        except LayerError as e:
            raise InvalidArgument(f"failed to read the build context: {e.message}") from None
        except (EOFError, OSError, lzma.LZMAError, ValueError) as e:
            raise InvalidArgument(f"failed to read the build context: {e}") from None
    finally:
        os.close(fd)
    return root


def _read_in_root(root: Path, name: str) -> bytes | None:
    from engine.images.archive import open_in_root

    rfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(rfd, name, os.O_RDONLY)
    except OSError:
        return None
    finally:
        os.close(rfd)
    with os.fdopen(fd, "rb") as f:
        if not os.path.isfile(f"/proc/self/fd/{f.fileno()}"):
            return None
        return f.read(MAX_DOCKERFILE + 1)


def _clean_name(name: str) -> str:
    n = os.path.normpath("/" + name.replace("\\", "/")).lstrip("/")
    return n or DEFAULT_DOCKERFILE


def open_context(body: BinaryIO, dockerfile_name: str = "", *, parent: Path, limits: Limits | None = None,
                 dockerfile_text: str | None = None) -> BuildContext:
    """Unpack `body` under a new private directory in `parent`, read the Dockerfile and apply .dockerignore.
    `dockerfile_text` is a Dockerfile that came without a context (a `remote=` URL to a plain file)."""
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir = Path(tempfile.mkdtemp(prefix="build-", dir=parent))
    try:
        index = TarIndex(body) if is_plain_tar(body) else None
        root = workdir / "context" if index is not None else unpack(body, workdir, limits)

        def read(n: str) -> bytes | None:
            return _read_indexed(index, n) if index is not None else _read_in_root(root, n)

        name = dockerfile_name or DEFAULT_DOCKERFILE
        rel = _clean_name(name)
        if dockerfile_text is None:
            data = read(rel)
            if data is None and not dockerfile_name:
                data = read("dockerfile")
                rel = "dockerfile" if data is not None else rel
            if data is None:
                raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}")
            if len(data) > MAX_DOCKERFILE:
                raise InvalidArgument(f"the Dockerfile ({name}) is larger than {MAX_DOCKERFILE >> 20} MiB")
            text = data.decode("utf-8", errors="replace")
        else:
            text = dockerfile_text
        if not text.strip():
            raise InvalidArgument(f"the Dockerfile ({name}) cannot be empty")
        raw_ignore = read(".dockerignore")
        excludes = ignore.read_patterns(raw_ignore) if raw_ignore else []
        # the Dockerfile and .dockerignore are read above; like every other path, they are left out of the
        # context (so out of `COPY .`) when a pattern excludes them
        if index is not None:
            index.apply_ignore(excludes)
        elif excludes:
            ignore.apply(root, excludes)
        return BuildContext(root, text, name, excludes, workdir, index, body, limits)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def remote_kind(url: str) -> str:
    """'git' for a git URL (not supported without git), 'http' for a URL the daemon downloads."""
    u = urllib.parse.urlparse(url)
    if url.startswith(("git://", "git@")) or u.path.endswith(".git") or ("#" in url and u.scheme in ("http", "https")):
        return "git"
    if u.scheme in ("http", "https"):
        return "http"
    return "unknown"


async def fetch_remote(url: str, dest: BinaryIO, *, max_bytes: int = 1 << 30) -> str | None:
    """Download `url` into `dest`. Returns the text when it is a plain Dockerfile (not a tar), else None."""
    import aiohttp

    kind = remote_kind(url)
    if kind == "git":
        raise InvalidArgument(f"unable to prepare context: git contexts are not supported by portside: {url}")
    if kind != "http":
        raise InvalidArgument(f"unable to prepare context: unable to parse remote URL: {url}")
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            if resp.status >= 400:
                raise InvalidArgument(f"unable to prepare context: error downloading remote context {url}: "
                                      f"{resp.status} {resp.reason}")
            total = 0
            async for chunk in resp.content.iter_chunked(1 << 20):
                total += len(chunk)
                if total > max_bytes:
                    raise InvalidArgument(f"unable to prepare context: remote context {url} is too large")
                dest.write(chunk)
    except aiohttp.ClientError as e:
        raise InvalidArgument(f"unable to prepare context: error downloading remote context {url}: {e}") from None
    dest.seek(0)
    if _is_tar(dest):
        return None
    with contextlib.suppress(UnicodeDecodeError):
        return dest.read(MAX_DOCKERFILE).decode("utf-8")
    raise InvalidArgument(f"unable to prepare context: the remote context {url} is neither a tar nor a text file")
