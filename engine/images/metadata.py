"""Image metadata in SQLite: images, tags, repo digests, container layers. Every change is one transaction, so
a kill -9 at any moment leaves either the old or the new state (WAL journal, synchronous=FULL)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.crashpoints import crashpoint

log = logging.getLogger("portside.images")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,            -- config digest
    manifest_digest TEXT NOT NULL,  -- the platform manifest kept in the content store
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    ref TEXT PRIMARY KEY,           -- docker.io/library/nginx:latest
    image_id TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS digests (
    ref TEXT PRIMARY KEY,           -- docker.io/library/nginx@sha256:...
    image_id TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS container_layers (
    id TEXT PRIMARY KEY,
    image_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS extra_blobs (
    digest TEXT PRIMARY KEY,        -- indexes kept for repo digests
    image_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parents (
    id TEXT PRIMARY KEY,            -- an image made from another (commit): Docker's Parent, for rmi's pruning
    parent TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE INDEX IF NOT EXISTS parents_parent ON parents(parent);
CREATE INDEX IF NOT EXISTS digests_image ON digests(image_id);
"""


@dataclass
class ImageRow:
    id: str
    manifest_digest: str
    added: float


class MetadataStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        # Set when the database was unreadable and was moved aside for an empty one (start-up reports it).
        self.moved_aside: Path | None = None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as e:
            # A power cut that truncated the database (not its WAL: SQLite ignores a torn WAL tail itself).
            # The engine starts with no image records rather than not at all; the old file stays for forensics.
            self.moved_aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                src = path.with_name(path.name + suffix)
                if src.exists():
                    os.replace(src, path.with_name(self.moved_aside.name + suffix))
            log.warning("image metadata %s is unreadable (%s): moved to %s, starting with no image records", path,
                        e, self.moved_aside)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size == 0:
                # SQLite writes its header when it makes the file: an empty one is a truncated database, which
                # it would take for a new one and so lose every record without a word
                raise sqlite3.DatabaseError("the file is empty")
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            row = db.execute("PRAGMA quick_check").fetchone()
            if not row or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _q(self, sql: str, *args: object) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def images(self) -> list[ImageRow]:
        return [ImageRow(*r) for r in self._q("SELECT id, manifest_digest, added FROM images")]

    def image(self, image_id: str) -> ImageRow | None:
        rows = self._q("SELECT id, manifest_digest, added FROM images WHERE id=?", image_id)
        return ImageRow(*rows[0]) if rows else None

    def find_prefix(self, prefix: str) -> list[str]:
        return [r[0] for r in self._q("SELECT id FROM images WHERE id LIKE ?", prefix.replace("%", "") + "%")]

    def tag_target(self, ref: str) -> str | None:
        rows = self._q("SELECT image_id FROM tags WHERE ref=?", ref)
        return rows[0][0] if rows else None

    def digest_target(self, ref: str) -> str | None:
        rows = self._q("SELECT image_id FROM digests WHERE ref=?", ref)
        return rows[0][0] if rows else None

    def tags_of(self, image_id: str) -> list[str]:
        return [r[0] for r in self._q("SELECT ref FROM tags WHERE image_id=? ORDER BY ref", image_id)]

    def digests_of(self, image_id: str) -> list[str]:
        return [r[0] for r in self._q("SELECT ref FROM digests WHERE image_id=? ORDER BY ref", image_id)]

    def all_tags(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._q("SELECT ref, image_id FROM tags")]

    def all_digests(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._q("SELECT ref, image_id FROM digests")]

    def parent_of(self, image_id: str) -> str:
        rows = self._q("SELECT parent FROM parents WHERE id=?", image_id)
        return str(rows[0][0]) if rows else ""

    def children_of(self, image_id: str) -> list[str]:
        return [r[0] for r in self._q("SELECT id FROM parents WHERE parent=? ORDER BY id", image_id)]

    def extra_blobs(self) -> list[str]:
        return [r[0] for r in self._q("SELECT digest FROM extra_blobs")]

    def container_layers(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._q("SELECT id, image_id FROM container_layers")]

    def add_image(
        self,
        image_id: str,
        manifest_digest: str,
        *,
        tags: Sequence[str] = (),
        digests: Sequence[str] = (),
        extra_blobs: Sequence[str] = (),
        parent: str = "",
    ) -> list[str]:
        """Records an image and points tags/digests at it in one transaction; returns the ids that lost their
        last tag to this (now dangling)."""
        crashpoint("image.record")
        with self.tx() as db:
            db.execute(
                "INSERT INTO images(id, manifest_digest, added) VALUES(?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET manifest_digest=excluded.manifest_digest",
                (image_id, manifest_digest, time.time()),
            )
            previous = []
            for t in tags:
                old = db.execute("SELECT image_id FROM tags WHERE ref=?", (t,)).fetchone()
                if old and old[0] != image_id:
                    previous.append(old[0])
                db.execute("INSERT OR REPLACE INTO tags(ref, image_id) VALUES(?,?)", (t, image_id))
            for d in digests:
                db.execute("INSERT OR REPLACE INTO digests(ref, image_id) VALUES(?,?)", (d, image_id))
            for b in extra_blobs:
                db.execute("INSERT OR REPLACE INTO extra_blobs(digest, image_id) VALUES(?,?)", (b, image_id))
            if parent and parent != image_id:
                db.execute("INSERT OR REPLACE INTO parents(id, parent) VALUES(?,?)", (image_id, parent))
        return previous
