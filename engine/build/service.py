"""The builder as the daemon holds it: one private scratch directory under the data root for contexts, mounts
and downloads (swept at start-up: a crashed build leaves nothing a later one would trust), and the build cache
seen from outside - `GET /system/df`'s BuildCache and `POST /build/prune`."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from engine.build.builder import Builder, BuildOptions, Output
from engine.build.context import open_context
from engine.errors import NotFound
from engine.images.mount import unmount

log = logging.getLogger("portside.build")


class BuildService:
    def __init__(self, images: Any, containers: Any, events: Any, scratch: Path) -> None:
        self.images = images
        self.containers = containers
        self.events = events
        self.scratch = scratch

    def sweep(self) -> None:
        """What a build killed mid-way left: mounts first (a layer step's or a --from image's), then the files."""
        if not self.scratch.exists():
            self.scratch.mkdir(parents=True, mode=0o700)
            return
        for entry in sorted(self.scratch.iterdir()):
            with contextlib.suppress(OSError):
                for sub in [entry, *(entry.iterdir() if entry.is_dir() and not entry.is_symlink() else [])]:
                    if os.path.ismount(sub):
                        unmount(sub)
            shutil.rmtree(entry, ignore_errors=True)
            log.info("build: removed %s left by an interrupted build", entry.name)
        self.sweep_layers()

    def sweep_layers(self) -> None:
        """Layers of COPY/ADD/WORKDIR steps and --from mounts (ids starting with 'build-') that a crash left."""
        for cid, _image in self.images.meta.container_layers():
            if cid.startswith("build-"):
                with contextlib.suppress(OSError, NotFound):
                    self.images.container_layer(cid).remove()

    async def build(self, body: BinaryIO, dockerfile: str, opts: BuildOptions,
                    emit: Callable[[dict[str, Any]], None], dockerfile_text: str | None = None) -> str:
        import asyncio

        ctx = await asyncio.to_thread(open_context, body, dockerfile, parent=self.scratch,
                                      dockerfile_text=dockerfile_text)
        try:
            out = Output(emit, quiet=opts.quiet)
            b = Builder(self.images, self.containers, self.events, opts, out, ctx.root.parent)
            try:
                return await b.build(ctx)
            except asyncio.CancelledError:
                # the client went away: no intermediate container outlives the build, whatever rm said
                await asyncio.shield(b.abandon())
                raise
        finally:
            await asyncio.to_thread(ctx.close)

    # -- the build cache ------------------------------------------------------------------------------------
    def _built_here(self) -> list[Any]:
        out = []
        for rec in self.images.list():
            if rec.repo_tags or "container_config" not in rec.config:
                continue
            out.append(rec)
        return out

    def cache_records(self) -> list[dict[str, Any]]:
        """Intermediate images of classic builds, as `docker system df -v` lists build cache entries."""
        out = []
        for rec in self._built_here():
            hist = (rec.config.get("history") or [{}])[-1]
            top = rec.chain[-1] if rec.chain else ""
            size = 0
            if top and not hist.get("empty_layer"):
                with contextlib.suppress(OSError, ValueError):
                    size = self.images.snapshots.info(top).size
            out.append({"ID": rec.id.removeprefix("sha256:")[:25], "Parent": rec.parent.removeprefix("sha256:"),
                        "Type": "regular", "Description": hist.get("created_by", ""), "InUse": False,
                        "Shared": bool(self.images.meta.children_of(rec.id)), "Size": size,
                        "CreatedAt": rec.created, "LastUsedAt": rec.created, "UsageCount": 0})
        return out

    def prune(self, *, keep_storage: int = 0) -> dict[str, Any]:
        """`docker builder prune`: untagged images of builds that nothing uses or builds on, until none is left
        (an intermediate image goes once the last image made from it is gone)."""
        deleted: list[str] = []
        before = self.images._space()
        progress = True
        while progress:
            progress = False
            for rec in self._built_here():
                if self.images.in_use(rec.id) or self.images.meta.children_of(rec.id):
                    continue
                with self.images.meta.tx() as db:
                    db.execute("DELETE FROM parents WHERE id=?", (rec.id,))
                    db.execute("DELETE FROM images WHERE id=?", (rec.id,))
                deleted.append(rec.id)
                progress = True
        self.images.gc()
        reclaimed = max(0, before - self.images._space())
        del keep_storage
        return {"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed}
