"""ImageService: the images part of the engine - pull, records, tags, removal, container root filesystems.

Layout under `root`: `content/` (verified blobs), `snapshots/` (one per chain id), `layers/<container id>/`
(upper and work dirs), `images.db` (SQLite metadata). An image becomes visible only in the metadata transaction
that ends a pull, after every blob and snapshot it needs is complete, so a kill at any moment leaves no half image.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import aiohttp

from engine.crashpoints import crashpoint
from engine.errors import Conflict, EngineError, InvalidArgument, NotFound
from engine.images import platform as platforms
from engine.images.auth import Credentials, DockerConfig, from_auth_header
from engine.images.content import ContentStore, digest_bytes, hex_of
from engine.images.metadata import MetadataStore
from engine.images.mount import mount_overlay, unmount
from engine.images.progress import Emitter, Progress
from engine.images.records import ImageRecord
from engine.images.reference import Reference, parse
from engine.images.registry import (
    INDEX_TYPES,
    MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    Manifest,
    RegistryError,
    RegistryHosts,
    Repository,
)
from engine.images.snapshots import SnapshotStore, chain_ids, mark_topdir
from engine.images.unpack import OPAQUE_XATTR, Limits

DEFAULT_CERTS_DIRS = (Path("/etc/portside/certs.d"), Path("/etc/docker/certs.d"))
InUse = Callable[[str], list[str]]  # image id -> ids of containers using it


class _TailAbort(Exception):
    pass


class _Tail:
    """Reads an ingest file while its download writes it (the download side calls start/grow/finish/restart from
    the event loop; the unpacking thread reads)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._fd = -1
        self._written = 0
        self._pos = 0
        self._done = False
        self._ok = False
        self.aborted = False

    def start(self, path: Path, offset: int) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # survives the rename into blobs/
        with self._cond:
            self._fd, self._written = fd, offset
            self._cond.notify_all()

    def grow(self, n: int) -> None:
        with self._cond:
            self._written += n
            self._cond.notify_all()

    def restart(self) -> None:
        with self._cond:
            self.aborted = True
            self._cond.notify_all()

    def finish(self, ok: bool) -> None:
        with self._cond:
            self._done, self._ok = True, ok
            if not ok:
                self.aborted = True
            self._cond.notify_all()

    def read(self, n: int = -1) -> bytes:
        with self._cond:
            while True:
                if self.aborted:
                    raise _TailAbort("download started over")
                if self._fd >= 0 and self._pos < self._written:
                    break
                if self._done:
                    return b""
                self._cond.wait(5)
            avail = self._written - self._pos
            fd = self._fd
        data = os.pread(fd, avail if n is None or n < 0 else min(n, avail), self._pos)
        self._pos += len(data)
        return data

    def wait_verified(self) -> None:
        with self._cond:
            while not self._done and not self.aborted:
                self._cond.wait(5)
            if self.aborted or not self._ok:
                raise _TailAbort("download failed")

    def close(self) -> None:
        with self._cond:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class ContainerLayer:
    """A container's writable layer over its image's snapshot chain."""

    def __init__(self, service: ImageService, container_id: str, image_id: str) -> None:
        self.service = service
        self.id = container_id
        self.image_id = image_id
        self.dir = service.root / "layers" / container_id

    @property
    def upper_dir(self) -> Path:
        return self.dir / "upper"

    @property
    def work_dir(self) -> Path:
        return self.dir / "work"

    @property
    def lower_dirs(self) -> builtins.list[Path]:
        """Snapshot dirs, topmost first (overlay's lowerdir order)."""
        if not self.image_id:
            return [self.service.snapshots.empty]
        # From the config blob, which outlives a forced removal of the image record while containers use it.
        config = json.loads(self.service.content.read(self.image_id))
        chain = chain_ids((config.get("rootfs") or {}).get("diff_ids") or [])
        dirs = [self.service.snapshots.fs(c) for c in reversed(chain)]
        return dirs or [self.service.snapshots.empty]

    def mount(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        mount_overlay(target, self.lower_dirs, self.upper_dir, self.work_dir)

    def unmount(self, target: Path) -> None:
        unmount(target)

    def remove(self) -> None:
        with self.service.meta.tx() as db:
            db.execute("DELETE FROM container_layers WHERE id=?", (self.id,))
        self.service.discard_tree(self.dir)

    def changes(self) -> builtins.list[dict[str, Any]]:
        """`docker diff`: Kind 0 = changed (C), 1 = added (A), 2 = deleted (D), sorted by path."""
        from engine.images.changes import overlay_changes

        return overlay_changes(self.upper_dir, self.lower_dirs)


class ImageService:
    def __init__(
        self,
        root: Path,
        *,
        insecure_registries: Sequence[str] = (),
        registry_mirrors: Sequence[str] = (),
        docker_config: Path | None = None,
        certs_dirs: Sequence[Path] = DEFAULT_CERTS_DIRS,
        limits: Limits | None = None,
        max_concurrent_downloads: int = 4,
        in_use: InUse | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.root / "content")
        self.snapshots = SnapshotStore(self.root / "snapshots", limits)
        (self.root / "layers").mkdir(exist_ok=True)
        mark_topdir(self.root / "layers")  # each container's upper dir is a tree of its own, as snapshots are
        self.meta = MetadataStore(self.root / "images.db")
        self.hosts = RegistryHosts(insecure_registries, registry_mirrors, certs_dirs)
        if docker_config is None:
            docker_config = Path(os.environ.get("DOCKER_CONFIG", str(Path.home() / ".docker"))) / "config.json"
        self.docker_config = DockerConfig(docker_config)
        self.max_concurrent_downloads = max_concurrent_downloads
        self.in_use: InUse = in_use or (lambda _id: [])
        self._pull_locks: dict[str, asyncio.Lock] = {}
        self.snapshots.clean_stale()
        # what a removal moved aside and an engine stopped mid-way did not delete yet
        self._trash = self.root / "trash"
        self._trash.mkdir(exist_ok=True)
        for leftover in self._trash.iterdir():
            self._delete_later(leftover)

    def discard_tree(self, path: Path) -> None:
        """Removes a directory tree now from the caller's view: renamed into the trash (one syscall), deleted by a
        background thread, so `docker rm` (and `run --rm`) does not wait for thousands of unlinks. A crash leaves
        it in the trash, which the next start empties."""
        spot = self._trash / f"{path.name}-{os.urandom(4).hex()}"
        try:
            os.rename(path, spot)
        except FileNotFoundError:
            return
        except OSError:  # another file system (a bind-mounted layers dir): delete in place
            shutil.rmtree(path, ignore_errors=True)
            return
        self._delete_later(spot)

    @staticmethod
    def _delete_later(path: Path) -> None:
        threading.Thread(target=shutil.rmtree, args=(path, True), name="portside-trash", daemon=True).start()

    def close(self) -> None:
        self.meta.close()

    # ---- lookup ----------------------------------------------------------------------------------------------

    def _record(self, image_id: str) -> ImageRecord:
        row = self.meta.image(image_id)
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        config = json.loads(self.content.read(image_id))
        chain = chain_ids(list((config.get("rootfs") or {}).get("diff_ids") or []))
        size = 0
        for c in chain:
            with contextlib.suppress(OSError, ValueError):
                size += self.snapshots.info(c).size
        return ImageRecord(
            id=image_id,
            config=config,
            manifest_digest=row.manifest_digest,
            repo_tags=[_familiar(r) for r in self.meta.tags_of(image_id)],
            repo_digests=[_familiar(r) for r in self.meta.digests_of(image_id)],
            size=size,
            chain=chain,
            parent=self.meta.parent_of(image_id),
        )

    def resolve(self, name_or_id: str) -> str | None:
        """The image id `name_or_id` names (reference, full id, or unique id prefix), or None."""
        s = name_or_id
        if s.startswith("sha256:") and len(s) == 71:
            return s if self.meta.image(s) else None
        ref: Reference | None = None
        with contextlib.suppress(InvalidArgument):
            ref = parse(s)
        if ref is not None:
            if ref.digest:
                target = self.meta.digest_target(f"{ref.name}@{ref.digest}")
                if target:
                    return target
                if self.meta.image(ref.digest):
                    return ref.digest
            else:
                target = self.meta.tag_target(str(ref))
                if target:
                    return target
        hexpart = s.removeprefix("sha256:")
        if hexpart and all(c in "0123456789abcdef" for c in hexpart) and len(hexpart) <= 64:
            ids = self.meta.find_prefix("sha256:" + hexpart)
            if len(ids) == 1:
                return ids[0]
        return None

    def get(self, name_or_id: str) -> ImageRecord:
        image_id = self.resolve(name_or_id)
        if image_id is None:
            raise NotFound(f"No such image: {name_or_id}")
        return self._record(image_id)

    def list(self) -> builtins.list[ImageRecord]:
        out = []
        for row in self.meta.images():
            with contextlib.suppress(NotFound, OSError, ValueError):
                out.append(self._record(row.id))
        out.sort(key=lambda r: r.created_unix, reverse=True)
        return out

    def inspect(self, name: str) -> dict[str, Any]:
        rec = self.get(name)
        lowers = [str(self.snapshots.fs(c)) for c in reversed(rec.chain)]
        data: dict[str, Any] = {}
        if lowers:
            data["UpperDir"] = lowers[0]
            data["MergedDir"] = ""
            data["WorkDir"] = ""
            if len(lowers) > 1:
                data["LowerDir"] = ":".join(lowers[1:])
        return rec.inspect({"Name": "overlay2", "Data": data or None})

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        rec = self.get(name)
        sizes = []
        for c in rec.chain:
            try:
                sizes.append(self.snapshots.info(c).size)
            except (OSError, ValueError):
                sizes.append(0)
        out = rec.history()
        for h in out:
            idx = h.pop("_layer", None)
            if idx is not None and idx < len(sizes):
                h["Size"] = sizes[idx]
        return out

    # ---- pull ------------------------------------------------------------------------------------------------

    def credentials(self, domain: str, auth: dict | None) -> Credentials | None:
        return from_auth_header(auth) or self.docker_config.credentials(domain)

    def _session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
        return aiohttp.ClientSession(timeout=timeout, auto_decompress=False, trust_env=False)

    async def pull(
        self,
        ref: str,
        *,
        platform: str | None = None,
        auth: dict | None = None,
        progress: Progress | None = None,
    ) -> ImageRecord:
        """Pulls `ref` for the host's (or the given) platform and returns its record."""
        r = parse(ref)
        want = platforms.parse(platform) if platform else platforms.host()
        emit = Emitter(progress)
        creds = self.credentials(r.domain, auth)
        lock = self._pull_locks.setdefault(str(r), asyncio.Lock())
        async with lock, self._session() as session:
            return await self._pull(session, r, want, bool(platform), creds, emit)

    async def _resolve_manifest(
        self, session: aiohttp.ClientSession, r: Reference, creds: Credentials | None
    ) -> tuple[Repository, Manifest]:
        errors: builtins.list[EngineError] = []
        endpoints = self.hosts.endpoints(r.domain)
        for i, ep in enumerate(endpoints):
            repo = Repository(session, self.hosts, ep, r, creds)
            try:
                return repo, await repo.get_manifest(r.tag_or_digest)
            except EngineError as e:
                if ep.mirror and i < len(endpoints) - 1:
                    errors.append(e)
                    continue
                raise
        raise errors[-1]

    async def _pull(
        self,
        session: aiohttp.ClientSession,
        r: Reference,
        want: platforms.Platform,
        explicit_platform: bool,
        creds: Credentials | None,
        emit: Emitter,
    ) -> ImageRecord:
        repo, top = await self._resolve_manifest(session, r, creds)
        # after the manifest, as dockerd: a missing one is then an HTTP error, not one in a started stream
        emit.status(f"Pulling from {r.path}", r.tag_or_digest if not r.digest else r.digest)
        manifest = top
        if top.media_type in INDEX_TYPES:
            desc = platforms.choose(list(top.data.get("manifests") or []), want)
            manifest = await repo.get_manifest(desc["digest"])
            if manifest.media_type in INDEX_TYPES:
                raise InvalidArgument(f"manifest list {desc['digest']} nests another index: not supported")
        cfg_desc = manifest.data.get("config") or {}
        config_digest = cfg_desc.get("digest", "")
        hex_of(config_digest)
        if not self.content.has(config_digest):
            with self.content.writer(config_digest, cfg_desc.get("size")) as w:
                await repo.fetch_blob(config_digest, int(cfg_desc.get("size", 0)), w)
                w.commit()
        config = json.loads(self.content.read(config_digest))
        if explicit_platform:
            actual = platforms.Platform(config.get("os", ""), config.get("architecture", ""), config.get("variant", ""))
            if top.media_type not in INDEX_TYPES and not actual.matches(want):
                raise NotFound(
                    f"image with reference {r.familiar} was found but does not match the specified platform: "
                    f"wanted {want}, actual: {actual}"
                )
        layers = list(manifest.data.get("layers") or [])
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            raise InvalidArgument(
                f"image {r.familiar}: the manifest lists {len(layers)} layers but the config {len(diff_ids)}"
            )
        chain = chain_ids(diff_ids)
        existed = self.meta.image(config_digest) is not None and all(self.snapshots.has(c) for c in chain)
        await self._fetch_layers(repo, layers, diff_ids, chain, emit)
        crashpoint("pull.record")
        # The manifests go in last: with them the image is complete.
        self.content.put(manifest.raw, manifest.digest)
        extra = []
        if top is not manifest:
            self.content.put(top.raw, top.digest)
            extra.append(top.digest)
        tags = [str(r)] if r.tag and not r.digest else []
        digests = [f"{r.name}@{top.digest}"]
        already_tagged = bool(tags) and self.meta.tag_target(tags[0]) == config_digest
        await asyncio.to_thread(
            self.meta.add_image, config_digest, manifest.digest, tags=tags, digests=digests, extra_blobs=extra
        )
        emit.status(f"Digest: {top.digest}")
        if existed and (already_tagged or not tags):
            emit.status(f"Status: Image is up to date for {r.familiar}")
        else:
            emit.status(f"Status: Downloaded newer image for {r.familiar}")
        return self._record(config_digest)

    async def _fetch_layers(
        self,
        repo: Repository,
        layers: builtins.list[dict[str, Any]],
        diff_ids: builtins.list[str],
        chain: builtins.list[str],
        emit: Emitter,
    ) -> None:
        loop = asyncio.get_running_loop()
        todo = []
        quiet: set[int] = set()
        for i, desc in enumerate(layers):
            sid = _short(desc["digest"])
            if self.snapshots.has(chain[i]):
                emit.status("Already exists", sid)
                if not self.content.has(desc["digest"]):
                    # Shared snapshot, but this image's compressed blob is new: fetch it (quietly) so that
                    # save and push have every blob the manifest names.
                    quiet.add(i)
                    todo.append(i)
            else:
                emit.status("Pulling fs layer", sid)
                todo.append(i)
        if not todo:
            return
        loud = emit
        silent = Emitter(None)
        sem = asyncio.Semaphore(self.max_concurrent_downloads)
        # Streaming unpacks mostly wait on their download: as many as there are downloads.
        unpack_sem = asyncio.Semaphore(max(self.max_concurrent_downloads, os.cpu_count() or 1))
        downloads: dict[str, asyncio.Task[None]] = {}

        async def download(desc: dict[str, Any], emit: Emitter, tail: _Tail | None) -> None:
            digest, size = desc["digest"], int(desc.get("size", 0))
            sid = _short(digest)
            ok = False
            try:
                if self.content.has(digest):
                    emit.status("Download complete", sid)
                    ok = True
                    return
                if sem.locked():
                    emit.status("Waiting", sid)
                async with sem:
                    w = await asyncio.to_thread(self.content.writer, digest, size)
                    try:
                        got = w.offset
                        if tail is not None:
                            tail.start(w.path, got)
                            w.on_truncate = tail.restart
                        if got:
                            emit.progress("Downloading", sid, got, size, force=True)

                        def on_bytes(n: int) -> None:
                            nonlocal got
                            got += n
                            crashpoint("pull.layer.downloading")
                            if tail is not None:
                                tail.grow(n)
                            emit.progress("Downloading", sid, got, size)

                        await repo.fetch_blob(digest, size, w, on_bytes)
                        emit.status("Verifying Checksum", sid)
                        await asyncio.to_thread(w.commit)
                        crashpoint("pull.layer.downloaded")
                        ok = True
                    finally:
                        w.close()
                    emit.status("Download complete", sid)
            finally:
                if tail is not None:
                    tail.finish(ok)

        async def layer(i: int) -> None:
            desc = layers[i]
            digest = desc["digest"]
            sid = _short(digest)
            emit = silent if i in quiet else loud
            task = downloads.get(digest)
            tail: _Tail | None = None
            if task is None:
                if i not in quiet and not self.content.has(digest):
                    tail = _Tail()  # unpack while it downloads
                task = downloads[digest] = asyncio.ensure_future(download(desc, emit, tail))
            total = int(desc.get("size", 0))
            done = 0

            def on_extract(n: int) -> None:
                nonlocal done
                done += n
                crashpoint("pull.layer.unpacking")
                loop.call_soon_threadsafe(emit.progress, "Extracting", sid, min(done, total), total)

            if tail is not None:
                async with unpack_sem:
                    if await self._unpack_streaming(tail, task, chain, i, diff_ids[i], on_extract):
                        emit.progress("Extracting", sid, total, total, force=True)
                        emit.status("Pull complete", sid)
                        return
                    done = 0
            await asyncio.shield(task)
            if i in quiet:
                return
            async with unpack_sem:
                if self.snapshots.has(chain[i]):
                    emit.status("Pull complete", sid)
                    return
                def unpack() -> None:
                    with self.content.open(digest) as f:
                        self.snapshots.create(
                            chain[i], chain[i - 1] if i else None, f, expected_diff_id=diff_ids[i],
                            progress=on_extract,
                        )

                emit.progress("Extracting", sid, 0, total, force=True)
                await asyncio.to_thread(unpack)
                emit.progress("Extracting", sid, total, total, force=True)
                emit.status("Pull complete", sid)

        tasks = [asyncio.ensure_future(layer(i)) for i in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in [*tasks, *downloads.values()]:
                t.cancel()
            await asyncio.gather(*tasks, *downloads.values(), return_exceptions=True)
            raise

    async def _unpack_streaming(
        self,
        tail: _Tail,
        task: asyncio.Future[None],
        chain: builtins.list[str],
        i: int,
        diff_id: str,
        progress: Callable[[int], None],
    ) -> bool:
        """Unpacks layer `i` from its ingest file as the download writes it; the snapshot is kept only once the
        blob is verified. False when the download started over (then unpack from the blob as usual)."""
        if self.snapshots.has(chain[i]):
            return False

        def run() -> None:
            try:
                self.snapshots.create(
                    chain[i], chain[i - 1] if i else None, cast(BinaryIO, tail), expected_diff_id=diff_id,
                    before_commit=tail.wait_verified, progress=progress,
                )
            finally:
                tail.close()  # here, by the reading thread, even when the awaiting task was cancelled

        try:
            await asyncio.to_thread(run)
            return True
        except Exception:
            # A download that failed explains the unpack error (a bad blob is a digest error, not a tar error).
            await asyncio.shield(task)
            if tail.aborted:
                return False  # it started over: unpack from the verified blob
            raise

    # ---- push ------------------------------------------------------------------------------------------------

    async def push(self, ref: str, *, auth: dict | None = None, progress: Progress | None = None) -> str:
        """Pushes the image `ref` names (its layers, config, then manifest); returns the manifest digest."""
        r = parse(ref)
        emit = Emitter(progress)
        # first, as dockerd: an image missing here is then an error in the stream after this line
        emit.status(f"The push refers to repository [{r.name}]")
        image_id = self.resolve(str(r))
        if image_id is None:
            raise NotFound(f"An image does not exist locally with the tag: {r.familiar_name}")
        row = self.meta.image(image_id)
        assert row is not None
        raw = self.content.read(row.manifest_digest)
        manifest = json.loads(raw)
        media = manifest.get("mediaType") or MEDIA_OCI_MANIFEST
        tag = r.tag or "latest"
        layers = list(manifest.get("layers") or [])
        for d in layers:
            if not self.content.has(d["digest"]):
                raise NotFound(
                    f"layer {d['digest']} of {r.familiar} is not in the content store (it was shared with an "
                    "image pulled before): pull the image again to push it"
                )
        # Other repositories on the same registry that hold this image: blobs can be mounted from them.
        names = self.meta.tags_of(image_id) + self.meta.digests_of(image_id)
        sources = sorted({n.split("@")[0] if "@" in n else n.rsplit(":", 1)[0] for n in names})
        mount_from = [s.split("/", 1)[1] for s in sources if s.split("/", 1)[0] == r.domain and s != r.name]
        creds = self.credentials(r.domain, auth)
        async with self._session() as session:
            ep = self.hosts.endpoints(r.domain)[-1]
            repo = Repository(session, self.hosts, ep, r, creds, actions="pull,push")
            for d in reversed(layers):
                emit.status("Preparing", _short(d["digest"]))
            sem = asyncio.Semaphore(self.max_concurrent_downloads)

            async def push_blob(d: dict[str, Any], show: bool) -> None:
                digest, sid = d["digest"], _short(d["digest"])
                async with sem:
                    if await repo.blob_exists(digest):
                        if show:
                            emit.status("Layer already exists", sid)
                        return
                    for src in mount_from:
                        if await repo.mount_blob(digest, src):
                            if show:
                                emit.status(f"Mounted from {src}", sid)
                            return
                    size = self.content.size(digest)
                    sent = 0

                    def on_bytes(n: int) -> None:
                        nonlocal sent
                        sent += n
                        if show:
                            emit.progress("Pushing", sid, sent, size)

                    await repo.upload_blob(digest, self.content.blob_path(digest), size, on_bytes)
                    if show:
                        emit.status("Pushed", sid)

            await asyncio.gather(*(push_blob(d, True) for d in layers))
            await push_blob(manifest["config"], False)
            await repo.put_manifest(tag, media, raw)
        digest = row.manifest_digest
        emit.status(f"{tag}: digest: {digest} size: {len(raw)}")
        emit.aux({"Tag": tag, "Digest": digest, "Size": len(raw)})
        await asyncio.to_thread(self.meta.add_image, image_id, digest, digests=[f"{r.name}@{digest}"])
        return digest

    # ---- tags and removal ------------------------------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        image_id = self.resolve(source)
        if image_id is None:
            raise NotFound(f"No such image: {source}")
        r = parse(target)
        if r.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        row = self.meta.image(image_id)
        assert row is not None
        self.meta.add_image(image_id, row.manifest_digest, tags=[str(r)])

    def remove(self, name: str, *, force: bool = False, noprune: bool = False) -> builtins.list[dict[str, str]]:
        """`docker rmi`: untags a reference while others remain; deletes the image with its last name (or by id)."""
        image_id = self.resolve(name)
        if image_id is None:
            raise NotFound(f"No such image: {name}")
        tags = self.meta.tags_of(image_id)
        digests = self.meta.digests_of(image_id)
        ref_key: str | None = None
        with contextlib.suppress(InvalidArgument):
            pr = parse(name)
            key = f"{pr.name}@{pr.digest}" if pr.digest else str(pr)
            if key in tags or key in digests:
                ref_key = key
        users = self.in_use(image_id)
        children = self.meta.children_of(image_id)
        out: builtins.list[dict[str, str]] = []
        if ref_key is None and children:
            # A hard conflict in Docker: even force does not delete an image other images are made from.
            raise Conflict(
                f"conflict: unable to delete {_short(image_id)} (cannot be forced) - image has dependent child images"
            )
        if ref_key is not None:
            other_tags = [t for t in tags if t != ref_key]
            if other_tags:
                drop = [ref_key]
                if ref_key in tags:
                    # A repository's digests go with its last tag, as in Docker.
                    repo = ref_key.rsplit(":", 1)[0]
                    if not any(t.rsplit(":", 1)[0] == repo for t in other_tags):
                        drop += [d for d in digests if d.split("@")[0] == repo]
                self._untag(drop)
                return [{"Untagged": _familiar(d)} for d in drop]
            if users and not force:
                raise Conflict(
                    f'conflict: unable to remove repository reference "{name}" (must force) - container '
                    f"{users[0][:12]} is using its referenced image {_short(image_id)}"
                )
        else:
            repos = {t.rsplit(":", 1)[0] for t in tags}
            if len(repos) > 1 and not force:
                raise Conflict(
                    f"conflict: unable to delete {_short(image_id)} (must be forced) - "
                    "image is referenced in multiple repositories"
                )
            if users and not force:
                raise Conflict(
                    f"conflict: unable to delete {_short(image_id)} (must be forced) - "
                    f"image is being used by stopped container {users[0][:12]}"
                )
        self._untag(tags + digests)
        out = [{"Untagged": _familiar(t)} for t in tags + digests]
        if (users or children) and ref_key is not None:
            return out  # forced by name while in use, or a parent of others: the image stays, untagged
        out.extend(self._delete(image_id, noprune))
        return out

    def _untag(self, refs: builtins.list[str]) -> None:
        with self.meta.tx() as db:
            for ref in refs:
                db.execute("DELETE FROM tags WHERE ref=?", (ref,))
                db.execute("DELETE FROM digests WHERE ref=?", (ref,))

    def _delete(self, image_id: str, noprune: bool) -> builtins.list[dict[str, str]]:
        """Deletes the image and then, unless `noprune`, its parents while they are untagged, unused and have no
        other children (Docker's pruning of untagged parents)."""
        out: builtins.list[dict[str, str]] = []
        while image_id:
            parent = self.meta.parent_of(image_id)
            with self.meta.tx() as db:
                db.execute("DELETE FROM extra_blobs WHERE image_id=?", (image_id,))
                db.execute("DELETE FROM parents WHERE id=?", (image_id,))
                db.execute("DELETE FROM images WHERE id=?", (image_id,))
            out.append({"Deleted": image_id})
            if noprune or not parent or self.meta.image(parent) is None:
                break
            if self.meta.tags_of(parent) or self.meta.children_of(parent) or self.in_use(parent):
                break
            self._untag(self.meta.digests_of(parent))
            image_id = parent
        crashpoint("image.rm.gc")
        self.gc()
        return out

    def referenced(self) -> tuple[set[str], set[str]]:
        """Blobs and chain ids that some image or container layer still needs."""
        blobs: set[str] = set(self.meta.extra_blobs())
        chains: set[str] = set()
        image_ids = {r.id for r in self.meta.images()} | {img for _c, img in self.meta.container_layers() if img}
        for image_id in image_ids:
            blobs.add(image_id)
            row = self.meta.image(image_id)
            if row is not None:
                blobs.add(row.manifest_digest)
                with contextlib.suppress(NotFound, ValueError):
                    m = json.loads(self.content.read(row.manifest_digest))
                    blobs.update(layer["digest"] for layer in m.get("layers") or [])
            with contextlib.suppress(NotFound, ValueError):
                cfg = json.loads(self.content.read(image_id))
                chains.update(chain_ids((cfg.get("rootfs") or {}).get("diff_ids") or []))
        return blobs, chains

    def gc(self, *, stale_ingest_seconds: float = 24 * 3600) -> int:
        """Removes blobs and snapshots nothing references; returns the bytes reclaimed (blobs only)."""
        blobs, chains = self.referenced()
        for c in list(self.snapshots.chain_ids()):
            if c not in chains:
                self.snapshots.remove(c)
        _deleted, reclaimed = self.content.gc(blobs, stale_ingest_seconds=stale_ingest_seconds)
        return reclaimed

    def prune(
        self, *, dangling_only: bool = True, filters: dict[str, builtins.list[str]] | None = None
    ) -> dict[str, Any]:
        """`docker image prune`: dangling images (or, with dangling_only=False, every unused one)."""
        deleted: builtins.list[dict[str, str]] = []
        before = self._space()
        progress = True
        while progress:  # a parent becomes prunable once the last of its children is gone
            progress = False
            for rec in self.list():
                if dangling_only and not rec.dangling:
                    continue
                if self.in_use(rec.id) or self.meta.children_of(rec.id):
                    continue
                if not _filters_match(rec, filters or {}):
                    continue
                for t in rec.repo_tags + rec.repo_digests:
                    deleted.append({"Untagged": t})
                with self.meta.tx() as db:
                    db.execute("DELETE FROM tags WHERE image_id=?", (rec.id,))
                    db.execute("DELETE FROM digests WHERE image_id=?", (rec.id,))
                    db.execute("DELETE FROM extra_blobs WHERE image_id=?", (rec.id,))
                    db.execute("DELETE FROM parents WHERE id=?", (rec.id,))
                    db.execute("DELETE FROM images WHERE id=?", (rec.id,))
                deleted.append({"Deleted": rec.id})
                progress = True
        self.gc()
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": max(0, before - self._space())}

    def _space(self) -> int:
        total = 0
        for c in self.snapshots.chain_ids():
            with contextlib.suppress(OSError, ValueError):
                total += self.snapshots.info(c).size
        for d in self.content.digests():
            with contextlib.suppress(OSError):
                total += self.content.blob_path(d).stat().st_size
        return total

    # ---- container layers ------------------------------------------------------------------------------------

    def create_container_layer(self, container_id: str, image_id: str | None) -> ContainerLayer:
        """A writable layer for a container over `image_id`'s chain (None or "" for an empty root)."""
        if image_id:
            image_id = self.get(image_id).id
        layer = ContainerLayer(self, container_id, image_id or "")
        if layer.dir.exists():
            if any(cid == container_id for cid, _img in self.meta.container_layers()):
                raise Conflict(f"container layer {container_id} already exists")
            shutil.rmtree(layer.dir)  # left by a create killed before its record was written
        layer.upper_dir.mkdir(parents=True)
        layer.work_dir.mkdir()
        with self.meta.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO container_layers(id, image_id) VALUES(?,?)", (container_id, image_id or "")
            )
        return layer

    def container_layer(self, container_id: str) -> ContainerLayer:
        for cid, image_id in self.meta.container_layers():
            if cid == container_id:
                return ContainerLayer(self, cid, image_id)
        raise NotFound(f"No such container layer: {container_id}")

    # ---- archives ----------------------------------------------------------------------------------------------

    def save(self, names: builtins.list[str]) -> Iterator[bytes]:
        """`docker save`: a docker-archive tar (manifest.json + OCI index.json and blobs), streamed."""
        from engine.images import archive

        for n in names:
            if self.resolve(n) is None:
                raise NotFound(f"No such image: {n}")
        return archive.pipe_stream(lambda out: archive.save(self, names, out))

    def load(self, fileobj: BinaryIO, *, progress: Progress | None = None) -> builtins.list[str]:
        """`docker load`; returns Docker's "Loaded image: X" / "Loaded image ID: sha256:..." lines."""
        from engine.images import archive

        return archive.load(self, fileobj, progress=progress)

    def import_(
        self,
        fileobj: BinaryIO,
        *,
        repo: str | None = None,
        tag: str | None = None,
        changes: builtins.list[str] | None = None,
        message: str = "",
        platform: str | None = None,
        source: str = "-",
    ) -> ImageRecord:
        """`docker import`: a filesystem tarball (plain, gzip or zstd) as a one-layer image."""
        from engine.images import archive

        return archive.import_(
            self, fileobj, repo=repo, tag=tag, changes=changes, message=message, platform=platform, source=source
        )

    def commit(
        self,
        layer: ContainerLayer,
        *,
        repo: str | None = None,
        tag: str | None = None,
        comment: str = "",
        author: str = "",
        changes: builtins.list[str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> ImageRecord:
        """`docker commit` of a container's upper layer (pause the container around this call)."""
        from engine.images import archive

        return archive.commit(
            self, layer, repo=repo, tag=tag, comment=comment, author=author, changes=changes, config=config
        )

    def export(self, layer: ContainerLayer, rootfs: Path | None = None) -> Iterator[bytes]:
        """`docker export`: the merged filesystem as a tar stream. Pass `rootfs` when the container runs."""
        from engine.images import archive

        return archive.pipe_stream(lambda out: archive.export(self, layer, out, rootfs))

    def path_stat(self, layer: ContainerLayer, path: str, rootfs: Path | None = None) -> dict[str, Any]:
        """HEAD /containers/{id}/archive: the X-Docker-Container-Path-Stat dict (NotFound when missing)."""
        from engine.images import archive

        with archive.mounted(self, layer, rootfs) as root:
            return archive.path_stat(root, path)

    def archive_get(
        self, layer: ContainerLayer, path: str, rootfs: Path | None = None
    ) -> tuple[dict[str, Any], Iterator[bytes]]:
        """GET /containers/{id}/archive: (path stat, tar stream); every path resolved inside the container."""
        from engine.images import archive

        st = self.path_stat(layer, path, rootfs)

        def write(out: BinaryIO) -> None:
            with archive.mounted(self, layer, rootfs) as root:
                archive.archive_get(root, path, out)

        return st, archive.pipe_stream(write)

    def archive_put(self, layer: ContainerLayer, path: str, fileobj: BinaryIO, rootfs: Path | None = None) -> None:
        """PUT /containers/{id}/archive: extracts a tar into directory `path` inside the container."""
        from engine.images import archive

        with archive.mounted(self, layer, rootfs) as root:
            archive.archive_put(root, path, fileobj, limits=self.snapshots.limits)

    # ---- registry listings -----------------------------------------------------------------------------------

    async def tags_of(self, repository: str, *, auth: dict | None = None) -> builtins.list[str]:
        r = parse(repository)
        async with self._session() as session:
            ep = self.hosts.endpoints(r.domain)[-1]
            repo = Repository(session, self.hosts, ep, r, self.credentials(r.domain, auth))
            return await repo.tags()

    async def catalog(self, registry: str, *, auth: dict | None = None) -> builtins.list[str]:
        from engine.images.registry import catalog

        async with self._session() as session:
            return await catalog(session, self.hosts, registry, self.credentials(registry, auth))

    async def search(self, term: str, *, limit: int = 25, auth: dict | None = None) -> builtins.list[dict[str, Any]]:
        """`docker search` against the registry's v1 search endpoint (Docker Hub's index when no host given)."""
        from engine.errors import Unavailable

        first = term.split("/")[0]
        domain, _, query = term.partition("/") if ("." in first or ":" in first) and "/" in term else ("", "", term)
        host = domain or "index.docker.io"
        ep = self.hosts.endpoint(host)
        url = f"{ep.base}/v1/search"
        async with self._session() as session:
            try:
                async with session.get(url, params={"q": query, "n": str(limit)}, ssl=ep.ssl) as resp:
                    if resp.status != 200:
                        raise Unavailable(f"Unexpected status code {resp.status} from {url}: search is not available")
                    data = await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError) as e:
                raise Unavailable(f"Get \"{url}\": {e or type(e).__name__}: registry search is not reachable") from None
        return [
            {
                "name": x.get("name", ""),
                "description": x.get("description", ""),
                "star_count": x.get("star_count", 0),
                "is_official": x.get("is_official", False),
                "is_automated": x.get("is_automated", False),
            }
            for x in (data.get("results") or [])
        ][:limit]


def _familiar(full: str) -> str:
    """`docker.io/library/nginx:latest` -> `nginx:latest`; `docker.io/library/nginx@sha256:..` likewise."""
    if "@" in full:
        name, _, digest = full.partition("@")
        return Reference(*_split(name)).familiar_name + "@" + digest
    name, _, tag = full.rpartition(":")
    return Reference(*_split(name)).familiar_name + ":" + tag


def _split(name: str) -> tuple[str, str]:
    domain, _, path = name.partition("/")
    return domain, path


def _filters_match(rec: ImageRecord, filters: dict[str, list[str]]) -> bool:
    labels = (rec.config.get("config") or {}).get("Labels") or {}
    for f in filters.get("label", []):
        k, eq, v = f.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    for f in filters.get("label!", []):
        k, eq, v = f.partition("=")
        if k in labels and (not eq or labels[k] == v):
            return False
    for f in filters.get("until", []):
        from engine.images.records import parse_time

        try:
            until = float(f)
        except ValueError:
            until = parse_time(f)
        if rec.created_unix >= until:
            return False
    return True


__all__ = [
    "MEDIA_DOCKER_CONFIG",
    "MEDIA_DOCKER_MANIFEST",
    "MEDIA_OCI_INDEX",
    "MEDIA_OCI_MANIFEST",
    "OPAQUE_XATTR",
    "ContainerLayer",
    "ImageRecord",
    "ImageService",
    "Iterable",
    "RegistryError",
    "digest_bytes",
    "stat",
]
