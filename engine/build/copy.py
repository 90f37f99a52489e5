"""COPY and ADD: which files a source names, the cache key of their contents, and writing them into a step's
root filesystem with Docker's rules (a directory source copies its contents; a file goes into a destination
that is a directory or ends in `/`; more than one source needs such a destination; ADD unpacks local tars).

Every path is resolved inside its own root: sources inside the build context (or the `--from` image), with
symlinks followed only within it (Docker's FollowSymlinkInScope); the destination inside the step's root
filesystem. Files are written by the layer applier from a tar stream made here, so no entry can leave the
destination directory and existing files, directories and links are replaced as a layer would replace them.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import hashlib
import lzma
import os
import re
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

from engine.build.tarindex import is_tar_header
from engine.errors import InvalidArgument
from engine.gomatch import compile_pattern
from engine.images.archive import open_in_root
from engine.images.unpack import apply_layer

_WILDCARD = re.compile(r"(?<!\\)[*?\[]")


@dataclass
class Source:
    root: Path  # the context, or the mounted --from image
    rel: str  # path inside root, '/'-separated, no leading '/'
    hash: str  # "file:<hex>", "dir:<hex>"
    is_dir: bool
    decompress: bool = True  # ADD may unpack it (never a downloaded file)
    mtime: float | None = None  # a download's Last-Modified
    mode: int | None = None  # a download's mode (0600)


def has_wildcards(path: str) -> bool:
    return bool(_WILDCARD.search(path))


def go_match_regex(pattern: str) -> re.Pattern[str]:
    rx = compile_pattern(pattern)
    if rx is None:
        raise InvalidArgument(f"syntax error in pattern: {pattern}")
    return rx


def _walk(root_fd: int, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below `rel` (relative paths, parents before children), never following symlinks."""
    fd = open_in_root(root_fd, "/" + rel, os.O_RDONLY | os.O_DIRECTORY) if rel else os.dup(root_fd)
    try:
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            path = f"{rel}/{e.name}" if rel else e.name
            st = e.stat(follow_symlinks=False)
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                yield from _walk(root_fd, path)
    finally:
        os.close(fd)


def _header_fields(name: str, st: os.stat_result, link: str) -> bytes:
    """What tarsum v1 hashes of an entry's header: name, mode, ids, size, type, link; not the mtime, so a
    touched but unchanged file keeps its cache key while a chmod or new content changes it."""
    kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
    size = st.st_size if kind == "f" else 0
    return f"{name}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_uid}\0{st.st_gid}\0{size}\0{kind}\0{link}\0".encode()


def _entry_hash(root_fd: int, rel: str, st: os.stat_result) -> str:
    h = hashlib.sha256()
    link = ""
    if stat.S_ISLNK(st.st_mode):
        parent, _, base = rel.rpartition("/")
        pfd = open_in_root(root_fd, "/" + parent, os.O_PATH | os.O_DIRECTORY)
        try:
            link = os.readlink(base, dir_fd=pfd)
        finally:
            os.close(pfd)
    h.update(_header_fields(rel, st, link))
    if stat.S_ISREG(st.st_mode):
        fd = open_in_root(root_fd, "/" + rel, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
        finally:
            os.close(fd)
    return h.hexdigest()


def clean_source(orig: str) -> str:
    """A COPY/ADD source as Docker takes it: relative to the context's root, cleaned ("." for the root)."""
    p = orig.lstrip("/")
    p = p[2:] if p.startswith("./") else p
    return os.path.normpath(p) if p not in ("", ".") else "."


def not_found(p: str, *, in_context: bool) -> InvalidArgument:
    where = "build context or excluded by .dockerignore" if in_context else "image"
    return InvalidArgument(f"failed to compute cache key: failed to calculate checksum: \"/{p}\": not found: "
                           f"file not found in {where}: stat {p}: file does not exist")


def resolve_sources(root: Path, patterns: list[str], *, in_context: bool) -> list[Source]:
    """The sources a COPY/ADD names: wildcards matched against every path (Go's filepath.Match), a plain path
    followed through symlinks inside `root`. Docker's message for a missing one."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        out: list[Source] = []
        for orig in patterns:
            p = clean_source(orig)
            if has_wildcards(p):
                rx = go_match_regex(p)
                for rel, _st in _walk(root_fd):
                    if rx.match(rel):
                        out.append(_one(root, root_fd, rel))
                continue
            try:
                out.append(_one(root, root_fd, "" if p == "." else p))
            except FileNotFoundError:
                raise not_found(p, in_context=in_context) from None
        if not out:
            raise InvalidArgument("no source files were specified")
        return out
    finally:
        os.close(root_fd)


def _one(root: Path, root_fd: int, rel: str) -> Source:
    try:
        fd = open_in_root(root_fd, "/" + rel, os.O_PATH)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise FileNotFoundError(rel) from None
        raise
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISDIR(st.st_mode):
        return Source(root, rel, "file:" + _entry_hash(root_fd, rel, st), False)
    hashes = sorted(_entry_hash(root_fd, sub, sst) for sub, sst in _walk(root_fd, rel))
    return Source(root, rel, "dir:" + hashlib.sha256(",".join(hashes).encode()).hexdigest(), True)


def sources_hash(sources: list[Source]) -> str:
    if len(sources) == 1:
        return sources[0].hash
    return "multi:" + hashlib.sha256(",".join(s.hash for s in sources).encode()).hexdigest()


def normalize_dest(workdir: str, dest: str) -> str:
    """Docker's normalizeDest: relative to WORKDIR, keeping a trailing '/'."""
    if dest.startswith("/"):
        return dest
    out = os.path.normpath("/" + (workdir or "/").strip("/") + "/" + dest)
    if dest.endswith("/") or dest in (".", "./"):
        out = out.rstrip("/") + "/"
    return out.replace("//", "/")


# ---- writing into the step's root filesystem ------------------------------------------------------------------


@dataclass
class Owner:
    uid: int | None = None  # None: keep the source's (COPY --from without --chown)
    gid: int | None = None


def _is_archive(root_fd: int, rel: str) -> bool:
    fd = open_in_root(root_fd, "/" + rel, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        try:
            return _archive_reader(f) is not None
        except (OSError, EOFError, lzma.LZMAError, ValueError):
            return False


def _archive_reader(f: BinaryIO) -> BinaryIO | None:
    """A reader of the tar inside `f` (gzip, bzip2, xz or plain), or None when it is no tar (ADD then copies it)."""
    import gzip

    head = f.read(6)
    f.seek(0)
    opener: Callable[[BinaryIO], BinaryIO] | None = None
    if head.startswith(b"\x1f\x8b"):
        opener = lambda raw: cast(BinaryIO, gzip.GzipFile(fileobj=raw))  # noqa: E731
    elif head.startswith(b"BZh"):
        opener = lambda raw: cast(BinaryIO, bz2.BZ2File(raw))  # noqa: E731
    elif head.startswith(b"\xfd7zXZ\x00"):
        opener = lambda raw: cast(BinaryIO, lzma.LZMAFile(raw))  # noqa: E731
    block = (opener(f) if opener else f).read(512)
    f.seek(0)
    if not is_tar_header(block):
        return None
    return opener(f) if opener else f


def _mkdirs_in_root(root_fd: int, path: str, owner: Owner) -> int:
    """Opens directory `path` inside the root, creating the missing parts (0755, owned by `owner` when given:
    Docker's MkdirAllAndChownNew); returns an O_PATH fd."""
    parts = [p for p in path.split("/") if p]
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                nfd = open_in_root(fd, part, os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = open_in_root(fd, part, os.O_PATH | os.O_DIRECTORY)
                os.chown(f"/proc/self/fd/{nfd}", owner.uid or 0, owner.gid or 0)
            except NotADirectoryError:
                raise InvalidArgument(f"failed to copy files: mkdir {path}: not a directory") from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _tar_sources(out: BinaryIO, items: list[tuple[Source, str]], owner: Owner, chmod: int | None) -> None:
    """A tar of (source, name in the destination directory) pairs, ownership and modes as COPY gives them."""
    with tarfile.open(fileobj=cast(IO[bytes], out), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for src, name in items:
            root_fd = os.open(src.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                if src.is_dir:
                    # the directory's own entry first (its mode and owner), then its contents
                    _add(tar, root_fd, src.rel, name, owner, chmod, src, top=True)
                    for sub, _st in _walk(root_fd, src.rel):
                        rel_in = sub[len(src.rel) + 1 :] if src.rel else sub
                        _add(tar, root_fd, sub, f"{name}/{rel_in}" if name else rel_in, owner, chmod, src)
                else:
                    _add(tar, root_fd, src.rel, name, owner, chmod, src, top=True)
            finally:
                os.close(root_fd)


def _add(tar: tarfile.TarFile, root_fd: int, rel: str, name: str, owner: Owner, chmod: int | None, src: Source,
         top: bool = False) -> None:
    if not name:
        return  # the destination directory itself: it exists, its metadata is kept
    flags = os.O_PATH if top else os.O_PATH | os.O_NOFOLLOW
    fd = open_in_root(root_fd, "/" + rel, flags) if rel else os.dup(root_fd)
    try:
        st = os.fstat(fd)
        ti = tarfile.TarInfo(name)
        ti.mtime = int(src.mtime if (top and src.mtime is not None) else st.st_mtime)
        ti.uid = st.st_uid if owner.uid is None else owner.uid
        ti.gid = st.st_gid if owner.gid is None else owner.gid
        mode = stat.S_IMODE(st.st_mode)
        if top and src.mode is not None:
            mode = src.mode
        if chmod is not None and not stat.S_ISLNK(st.st_mode):
            mode = chmod
        ti.mode = mode
        if stat.S_ISDIR(st.st_mode):
            ti.type = tarfile.DIRTYPE
            tar.addfile(ti)
        elif stat.S_ISLNK(st.st_mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = _readlink(root_fd, rel)
            tar.addfile(ti)
        elif stat.S_ISREG(st.st_mode):
            ti.size = st.st_size
            rfd = open_in_root(root_fd, "/" + rel, os.O_RDONLY | (0 if top else os.O_NOFOLLOW))
            with os.fdopen(rfd, "rb") as f:
                tar.addfile(ti, f)
        elif stat.S_ISFIFO(st.st_mode):
            ti.type = tarfile.FIFOTYPE
            tar.addfile(ti)
        # sockets and device nodes are not copied (Docker's archiver skips sockets; a context has no devices)
    finally:
        os.close(fd)


def _readlink(root_fd: int, rel: str) -> str:
    parent, _, base = rel.rpartition("/")
    pfd = open_in_root(root_fd, "/" + parent, os.O_PATH | os.O_DIRECTORY)
    try:
        return os.readlink(base, dir_fd=pfd)
    finally:
        os.close(pfd)


def _apply(dest_fd: int, write: Callable[[BinaryIO], None]) -> None:
    """Runs `write(pipe)` on a thread and unpacks what it writes into `dest_fd` (no whiteouts)."""
    r, w = os.pipe()
    err: list[BaseException] = []

    def writer() -> None:
        try:
            with os.fdopen(w, "wb", buffering=1 << 20) as out:
                write(out)
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=writer, name="build-copy", daemon=True)
    t.start()
    try:
        with os.fdopen(r, "rb", buffering=1 << 20) as inp:
            try:
                apply_layer(inp, dest_fd, whiteouts=False)
            finally:
                with contextlib.suppress(OSError):
                    while inp.read(1 << 20):
                        pass  # let the writer finish when the applier stopped early
    finally:
        t.join()
    if err:
        raise err[0]


def copy_into(rootfs: Path, dest: str, sources: list[Source], *, owner: Owner, chmod: int | None = None,
              decompress: bool = False, cmd: str = "COPY") -> None:
    """Writes `sources` into `dest` (already normalized, absolute) inside `rootfs`."""
    if len(sources) > 1 and not dest.endswith("/"):
        raise InvalidArgument(f"When using {cmd} with more than one source file, the destination must be a "
                              "directory and end with a /")
    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for src in sources:
            _copy_one(root_fd, dest, src, owner, chmod, decompress)
    finally:
        os.close(root_fd)


def _dest_is_dir(root_fd: int, path: str) -> bool:
    try:
        fd = open_in_root(root_fd, path, os.O_PATH)
    except OSError:
        return False
    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def _copy_one(root_fd: int, dest: str, src: Source, owner: Owner, chmod: int | None, decompress: bool) -> None:
    dir_owner = owner if owner.uid is not None else Owner(0, 0)
    if src.is_dir:
        dfd = _mkdirs_in_root(root_fd, dest, dir_owner)
        try:
            _apply(dfd, lambda out: _tar_sources(out, [(src, "")], owner, chmod))
        finally:
            os.close(dfd)
        return
    sfd = os.open(src.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if decompress and src.decompress and _is_archive(sfd, src.rel):
            dfd = _mkdirs_in_root(root_fd, dest, dir_owner)
            try:
                afd = open_in_root(sfd, "/" + src.rel, os.O_RDONLY)
                with os.fdopen(afd, "rb") as f:
                    reader = _archive_reader(f)
                    assert reader is not None
                    apply_layer(reader, dfd, whiteouts=False)
            finally:
                os.close(dfd)
            return
    finally:
        os.close(sfd)
    base = src.rel.rsplit("/", 1)[-1]
    if dest.endswith("/") or _dest_is_dir(root_fd, dest):
        parent, name = dest.rstrip("/") or "/", base
    else:
        parent, _, name = dest.rpartition("/")
    dfd = _mkdirs_in_root(root_fd, parent, dir_owner)
    try:
        _apply(dfd, lambda out: _tar_sources(out, [(src, name)], owner, chmod))
    finally:
        os.close(dfd)


def make_dirs(rootfs: Path, path: str) -> None:
    """WORKDIR: the directory and its missing parents inside `rootfs`, owned by root."""
    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(_mkdirs_in_root(root_fd, path, Owner(0, 0)))
    finally:
        os.close(root_fd)


def chown_owner(rootfs: Path, spec: str) -> Owner:
    """`--chown=user[:group]`, looked up in the destination's own passwd and group files (a lone user is its
    own group, as Docker's parseChownFlag has it); every id in 0..2^31-1."""
    from engine.exec.users import _read_in_root, check_id, go_atoi

    parts = spec.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"invalid chown string format: {spec}")
    user, group = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])

    def lookup(name: str, path: str, kind: str, what: str) -> int:
        n = go_atoi(name)
        if n is not None:
            return check_id(n)
        for e in _read_in_root(rootfs, path):
            if len(e) >= 3 and e[0] == name:
                v = go_atoi(e[2])
                if v is None:
                    break
                return check_id(v)
        raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find {kind} for "
                              f"{what} {name}: no such {what}: {name}")

    return Owner(lookup(user, "/etc/passwd", "uid", "user"), lookup(group, "/etc/group", "gid", "group"))


def parse_chmod(value: str) -> int | None:
    if not value:
        return None
    if not re.fullmatch(r"[0-7]{1,4}", value):
        raise InvalidArgument(f"invalid chmod parameter: {value}: only octal modes are supported")
    return int(value, 8)
