"""A build context read in place: the uncompressed tar the client sent, indexed by name, so the Dockerfile,
`.dockerignore` and the cache keys of COPY/ADD sources come straight from it and a build whose every step is a
cache hit never unpacks its context (a 20 MiB context: ~110 ms of unpacking saved).

The index follows the unpacked tree's rules: names cleaned, parents implied, `.dockerignore` applied as the
context walk applies it (an excluded directory whole unless an exception may re-include something below it),
symlinks followed only inside the context when they name a source. Cache keys are computed on the index's own
terms (header fields but the mtime, and the bytes), a deterministic function of the tar's contents: the same
context always gives the same keys, a changed file or mode changes them.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from dataclasses import dataclass
from typing import BinaryIO

from engine.build.ignore import IgnoreMatcher
from engine.errors import InvalidArgument

_MAX_LINKS = 255


@dataclass
class Entry:
    name: str
    kind: str  # "f" file, "d" dir, "l" symlink, "h" hardlink, "o" other
    mode: int
    uid: int
    gid: int
    size: int
    link: str
    offset: int  # of the data in the tar


def is_tar_header(block: bytes) -> bool:
    """A tar's first header block: the ustar magic, or a v7 header's valid checksum."""
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    try:
        chk = int(block[148:156].split(b"\0")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return chk == sum(block[:148]) + 256 + sum(block[156:512])


def is_plain_tar(f: BinaryIO) -> bool:
    pos = f.tell()
    block = f.read(512)
    f.seek(pos)
    return is_tar_header(block)


def _clean(name: str) -> str:
    n = posixpath.normpath("/" + name).lstrip("/")
    return "" if n in (".", "") else n


class TarIndex:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.entries: dict[str, Entry] = {}
        self.children: dict[str, list[str]] = {"": []}
        try:
            with tarfile.open(fileobj=f, mode="r:") as tar:
                for m in tar:
                    self._add(m)
        except tarfile.TarError as e:
            raise InvalidArgument(f"failed to read the build context: {e}") from None

    def _add(self, m: tarfile.TarInfo) -> None:
        name = _clean(m.name)
        if not name:
            return
        kind = "d" if m.isdir() else "l" if m.issym() else "h" if m.islnk() else "f" if m.isreg() else "o"
        link = _clean(m.linkname) if kind == "h" else m.linkname
        self._parents(name)
        if name not in self.entries:
            self.children[posixpath.dirname(name)].append(name)
        self.entries[name] = Entry(name, kind, m.mode & 0o7777, m.uid, m.gid, m.size if kind == "f" else 0, link,
                                   m.offset_data)
        if kind == "d":
            self.children.setdefault(name, [])

    def _parents(self, name: str) -> None:
        parent = posixpath.dirname(name)
        if parent and parent not in self.entries:
            self._parents(parent)
            self.children[posixpath.dirname(parent)].append(parent)
            self.entries[parent] = Entry(parent, "d", 0o755, 0, 0, 0, "", 0)
            self.children.setdefault(parent, [])

    # -- .dockerignore ------------------------------------------------------------------------------------------
    def apply_ignore(self, patterns: list[str]) -> None:
        """Drops what the patterns exclude, as ignore.apply decides it on an unpacked tree."""
        if not patterns:
            return
        matcher = IgnoreMatcher(patterns)
        gone: set[str] = set()
        walked_excluded: list[str] = []
        stack: list[tuple[str, list[bool] | None]] = [("", None)]
        while stack:
            rel_dir, info = stack.pop()
            for rel in sorted(self.children.get(rel_dir, []), reverse=True):
                e = self.entries[rel]
                excluded, child_info = matcher.match_with_parents(rel, info)
                walked = e.kind == "d" and (not excluded or (matcher.has_exceptions
                                                             and matcher.may_reinclude_below(rel)))
                if excluded:
                    if walked:
                        walked_excluded.append(rel)
                    else:
                        gone.update(self._below(rel))
                        gone.add(rel)
                if walked:
                    stack.append((rel, child_info))
        for rel in sorted(walked_excluded, key=len, reverse=True):
            if all(c in gone for c in self.children.get(rel, [])):
                gone.add(rel)
        for rel in gone:
            self.entries.pop(rel, None)
        for d, kids in self.children.items():
            self.children[d] = [k for k in kids if k not in gone]

    def _below(self, rel: str) -> list[str]:
        out = []
        for c in self.children.get(rel, []):
            out.append(c)
            out.extend(self._below(c))
        return out

    # -- paths --------------------------------------------------------------------------------------------------
    def resolve(self, path: str) -> str | None:
        """`path` with its symlinks followed inside the context (FollowSymlinkInScope), or None if missing."""
        parts = [p for p in _clean(path).split("/") if p]
        cur = ""
        hops = 0
        while parts:
            comp = parts.pop(0)
            cand = posixpath.join(cur, comp) if cur else comp
            e = self.entries.get(cand)
            if e is None:
                return None
            if e.kind == "l":
                hops += 1
                if hops > _MAX_LINKS:
                    raise InvalidArgument(f"too many links while resolving {path}")
                target = e.link
                base = "" if target.startswith("/") else cur
                parts = [p for p in _clean(posixpath.join("/", base, target)).split("/") if p] + parts
                cur = ""
                continue
            cur = cand
        return cur

    def walk(self, rel: str) -> list[str]:
        """Everything below directory `rel`, parents first, siblings by name (the unpacked tree's walk order)."""
        out = []
        for c in sorted(self.children.get(rel, [])):
            out.append(c)
            if self.entries[c].kind == "d":
                out.extend(self.walk(c))
        return out

    def all_paths(self) -> list[str]:
        return self.walk("")

    def read(self, rel: str, limit: int = -1) -> bytes | None:
        """A regular file's bytes (a symlink followed in scope, a hard link to its target), or None."""
        r = self.resolve(rel)
        e = self.entries.get(r) if r is not None else None
        if e is not None and e.kind == "h":
            e = self.entries.get(e.link)
        if e is None or e.kind != "f":
            return None
        self.f.seek(e.offset)
        return self.f.read(e.size if limit < 0 else min(e.size, limit))

    # -- cache keys ---------------------------------------------------------------------------------------------
    def entry_hash(self, name: str, e: Entry) -> str:
        h = hashlib.sha256()
        data_of = e
        if e.kind == "h":
            data_of = self.entries.get(e.link, e)
        size = data_of.size if data_of.kind == "f" else 0
        kind = "f" if e.kind == "h" else e.kind
        h.update(f"{name}\0{e.mode:o}\0{e.uid}\0{e.gid}\0{size}\0{kind}\0{e.link if e.kind == 'l' else ''}\0"
                 .encode())
        if data_of.kind == "f" and size:
            self.f.seek(data_of.offset)
            left = size
            while left > 0:
                chunk = self.f.read(min(left, 1 << 20))
                if not chunk:
                    raise InvalidArgument("failed to read the build context: unexpected end of data")
                h.update(chunk)
                left -= len(chunk)
        return h.hexdigest()

    def source_hash(self, rel: str) -> tuple[str, bool] | None:
        """("file:<hex>" or "dir:<hex>", is_dir) of a source path, symlinks followed in scope; None if missing."""
        r = self.resolve(rel) if rel else ""
        if r is None:
            return None
        e = self.entries.get(r) if r else Entry("", "d", 0o755, 0, 0, 0, "", 0)
        if e is None:
            return None
        if e.kind != "d":
            return "file:" + self.entry_hash(rel, e), False
        prefix = rel + "/" if rel else ""
        hashes = sorted(self.entry_hash(prefix + sub[len(r) + 1 :] if r else sub, self.entries[sub])
                        for sub in self.walk(r))
        return "dir:" + hashlib.sha256(",".join(hashes).encode()).hexdigest(), True

