"""The start-up recovery pass: what a crash (kill -9, power loss) left behind is found, dropped and named in the log.

Every record is written atomically (write, fsync, rename; SQLite transactions), so a crash leaves whole records
only. What it can leave is work between records: a container layer whose container record was never written, a
container record whose layer a removal already deleted, a volume directory without its record, blobs and
snapshots no image references yet. A power loss can do worse - files that were written but not yet on disk come
back empty or short - so the pass also verifies what it loads: small blobs against their digests, layer blobs
against the sizes their manifests give, snapshot records, container and volume records.

It runs once, in `engine.parts.start`, after the stores are open and before the network part and the container
restore look at which containers exist. Each part is a function of its own, so tests drive them one at a time on
a store they damaged themselves (tests/reliability/test_recovery.py).

Reliability
===========

Every record is written whole or not at all: JSON records through `engine/store.py` (temp file, fsync, rename,
fsync of the directory), image metadata in SQLite transactions, blobs through verified ingests, snapshots built in
`tmp-*` and renamed, a volume removed by renaming it to `.rm-*` first. What a crash can leave is the work between
records; `engine/recovery.py` is the start-up pass (called from `parts.start` before the network part and the
container restore look at containers) that drops it and names each drop in the log (`recovery: dropped ...`):
container dirs without a readable record, layers without a container, records whose layer a removal had already
deleted, runtime state and bundle mounts of unknown containers, the private mounts of an interrupted `docker cp`
into a stopped container (`<exec-root>/cp-*`), volume trash and record-less volume dirs (data
whose record a power cut emptied gets a record again), unreferenced blobs and snapshots. It also verifies what it
loads: configs, manifests and indexes are hashed, layer blobs checked against their manifest sizes, snapshot
records read; an image missing a piece is dropped (a pull brings it back whole). An `images.db` that is empty
or fails `quick_check` is moved aside. Runtime state of a container without a record is killed and removed (its
cgroup with it), and the cgroup of a container of this engine whose runtime state is gone (an exec root emptied
while the host stayed up) is reclaimed with what still runs in it; only this engine's record ids are looked at,
since another engine may share the cgroup parent. The network part's `start()` then drops sandboxes of containers
that are not running, every bridge, veth and netns file no record names (found by the `portside <table>` alias
engine/net gives its links), and address reservations no sandbox endpoint holds (a connect killed before its
sandbox was saved), naming each in the log, and rewrites the nft table from the records.

`engine/crashpoints.py` names points where a daemon started with `PORTSIDE_CRASH_AT=<name>[,...]` (tests only)
SIGKILLs itself: pull (downloading, downloaded, unpacking, snapshot rename, record), image record and rm, create,
start, stop, rm (cleaned, layer), `cp`, volume create/rm, build (RUN, commit), network create (bridge made),
connect (endpoint made, sandbox not saved), rm (bridge gone, record not), and `api.request` (any request but a
ping, for a program embedding the engine as the TUI does). `tests/reliability/` kills the daemon at each one
(test_crash.py; test_embedded_crash.py kills a DaemonThread host at a request and from outside with streams open
and runs in flight), truncates the newest files of a data root (power loss), loses a running container's record
or runtime state, and tests the pass on its own.

Disk full (tests/reliability/test_disk_full.py, a tmpfs data root): a pull, a build's layer commit or a RUN step
fails with `no space left on device` (the API puts an OSError or a full SQLite database in Go's words, not a
traceback); a partial pull ingest is kept under its digest for a resume and verified, an anonymous one (commit,
build step) is deleted; a failed start releases its netns, veths and rules even when a network record cannot be
written. The json-file/`local` log writer drops an entry it cannot write (a short write is taken back, so the file
stays whole lines), says so once in the supervisor's `supervisor.log`, and writes again when there is room; the
container runs on. Rotation keeps a flooding container's log within `max-size` x `max-file`.

Long use: what the engine keeps per container in memory goes with it - its exit monitor ends with its process,
its exec records that had not exited go at its exit (dockerd's Cleanup) and the rest at its removal, finished
execs are collected two 5-minute ticks after they end (dockerd's execCommandGC; `CanRemove` shows the mark), its
restart task and early-attach events at its removal (tests/reliability/test_leaks.py counts the maps). The runtime
queues exit states only while something listens to `exits()`. The events bus keeps dockerd's 256. glibc malloc
runs with a fixed mmap threshold and two arenas (engine/mallopt.py): its dynamic threshold otherwise moves every
large buffer of a pull or build into the heaps after the first, where they fragment them; a removal has
malloc_trim give the heaps' free pages back a second later. The Dockerfile parser's Go heap is bounded
(engine/mallopt.py), and a Dockerfile text goes through that parser once (its extension leaks every Command's
fields; engine/build/dockerfile.py). What still grows for a while and stops:
CPython's table of interned strings (pathlib interns every path part, container ids included) doubles once, to
~1.9 MiB, when the ids it has seen come and go fill it. `PORTSIDE_TRACEMALLOC=<dir>` (engine/memtrace.py) makes a
daemon trace its allocations and write a snapshot (plus live objects by type and malloc's own figures) on SIGUSR2;
`bench/run soak --tracemalloc` prints what grew.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError, NotFound
from engine.images.content import CHUNK
from engine.images.mount import unmount
from engine.images.snapshots import chain_ids

if TYPE_CHECKING:
    from engine.containers.store import ContainerStore
    from engine.daemon import Daemon
    from engine.images.service import ImageService
    from engine.volumes import VolumeStore

log = logging.getLogger("portside.recovery")

# Configs, manifests and indexes are hashed at start-up; bigger blobs (layers) are checked by size only, as
# hashing every layer would make a start cost a read of the whole store. Past this size even those are not hashed.
VERIFY_MAX = 4 << 20


@dataclass
class Report:
    """What the pass dropped or repaired, one human-readable line each (also logged as warnings)."""

    dropped: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    def drop(self, what: str) -> None:
        self.dropped.append(what)
        log.warning("recovery: dropped %s", what)

    def repair(self, what: str) -> None:
        self.repaired.append(what)
        log.warning("recovery: repaired %s", what)

    def extend(self, other: Report) -> None:
        self.dropped += other.dropped
        self.repaired += other.repaired


def _blob_ok(svc: ImageService, digest: str, size: int | None = None, *, hash_it: bool = True) -> bool:
    """The blob exists, has the size given, and (when small and `hash_it`) hashes to its name."""
    try:
        path = svc.content.blob_path(digest)
        st = path.stat()
    except (OSError, EngineError):
        return False
    if size is not None and st.st_size != size:
        return False
    if st.st_size > VERIFY_MAX or not hash_it:
        return True
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest() == digest


def _snapshot_ok(svc: ImageService, chain_id: str) -> bool:
    try:
        svc.snapshots.info(chain_id)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return svc.snapshots.fs(chain_id).is_dir()


def _drop_image(svc: ImageService, image_id: str) -> None:
    with svc.meta.tx() as db:
        for table, col in (("tags", "image_id"), ("digests", "image_id"), ("extra_blobs", "image_id"),
                           ("parents", "id"), ("images", "id")):
            db.execute(f"DELETE FROM {table} WHERE {col}=?", (image_id,))


def recover_images(svc: ImageService) -> Report:
    """Drops image records whose config, manifest or snapshots are missing or damaged (a re-pull brings them back
    whole), deletes damaged blobs and snapshots so nothing trusts them, then collects what no image references."""
    report = Report()
    if svc.meta.moved_aside is not None:
        report.drop(f"every image record: the image database was unreadable (kept as {svc.meta.moved_aside})")
    for chain_id in list(svc.snapshots.chain_ids()):
        if not _snapshot_ok(svc, chain_id):
            svc.snapshots.remove(chain_id)
            report.drop(f"snapshot {chain_id}: its record is unreadable")
    for row in svc.meta.images():
        short = row.id.removeprefix("sha256:")[:12]
        names = ", ".join(svc.meta.tags_of(row.id)) or "untagged"
        problem = ""
        config: dict[str, Any] = {}
        manifest: dict[str, Any] = {}
        if not _blob_ok(svc, row.id):
            problem = "its config blob is missing or damaged"
        elif not _blob_ok(svc, row.manifest_digest):
            problem = "its manifest blob is missing or damaged"
        else:
            with contextlib.suppress(ValueError, NotFound):
                config = json.loads(svc.content.read(row.id))
                manifest = json.loads(svc.content.read(row.manifest_digest))
            if not config or not manifest:
                problem = "its config or manifest is not JSON"
        if not problem:
            chain = chain_ids(list((config.get("rootfs") or {}).get("diff_ids") or []))
            missing = [c for c in chain if not svc.snapshots.has(c)]
            if missing:
                problem = f"snapshot {missing[0]} is missing"
        if not problem:
            for layer in manifest.get("layers") or []:
                digest, size = layer.get("digest", ""), layer.get("size")
                if svc.content.has(digest) and not _blob_ok(svc, digest, size, hash_it=False):
                    # the snapshot made from it is verified and stays; the short blob goes, a pull fetches it again
                    svc.content.delete(digest)
                    report.drop(f"blob {digest} of image {short}: not its announced size {size}")
        if problem:
            _drop_image(svc, row.id)
            report.drop(f"image {short} ({names}): {problem}")
    for cid, image_id in svc.meta.container_layers():
        if image_id and not _blob_ok(svc, image_id):
            log.warning("recovery: container %s cannot start: the config of its image %s is damaged", cid[:12],
                        image_id[:19])
    for digest in svc.meta.extra_blobs():  # the indexes kept for repo digests
        if svc.content.has(digest) and not _blob_ok(svc, digest):
            svc.content.delete(digest)
            with svc.meta.tx() as db:
                db.execute("DELETE FROM extra_blobs WHERE digest=?", (digest,))
            report.drop(f"index blob {digest}: content does not match its digest")
    before_blobs = set(svc.content.digests())
    before_snaps = set(svc.snapshots.chain_ids())
    reclaimed = svc.gc()  # what a killed pull, commit or build wrote before its record: nothing refers to it
    gone = len(before_blobs - set(svc.content.digests())) + len(before_snaps - set(svc.snapshots.chain_ids()))
    if gone:
        report.drop(f"{gone} unreferenced blobs and snapshots ({reclaimed} bytes of blobs)")
    return report


def recover_containers(store: ContainerStore, images: ImageService | None) -> Report:
    """Container directories without a readable record go (with their layer); a record whose layer a removal
    already deleted is finished off; a layer whose container record was never written goes."""
    report = Report()
    known = {rec["Id"] for rec in store.all()}
    for d in sorted(store.root.iterdir()):
        if d.is_dir() and d.name not in known:
            shutil.rmtree(d, ignore_errors=True)
            report.drop(f"container {d.name[:12]}: no readable record")
    if images is None:
        return report
    layers = dict(images.meta.container_layers())
    for rec in store.all():
        cid = rec["Id"]
        if cid in layers:
            continue
        layer_dir = images.root / "layers" / cid
        if (layer_dir / "upper").is_dir():
            # the layer's row went missing (an images.db that lost its last writes): the files are there
            with images.meta.tx() as db:
                db.execute("INSERT OR REPLACE INTO container_layers(id, image_id) VALUES(?,?)",
                           (cid, rec.get("Image") or ""))
            report.repair(f"container {cid[:12]} ({rec['Name'].lstrip('/')}): its layer record")
        else:
            store.delete(cid)  # a removal killed between the layer and the record: finish it
            report.drop(f"container {cid[:12]} ({rec['Name'].lstrip('/')}): its layer was already removed")
    known = {rec["Id"] for rec in store.all()}
    for cid in layers:
        if cid not in known and not cid.startswith("build-"):  # build- layers are the builder's sweep's
            with contextlib.suppress(OSError, EngineError):
                images.container_layer(cid).remove()
            report.drop(f"container layer {cid[:12]}: no container record")
    for d in sorted((images.root / "layers").iterdir()):
        if d.is_dir() and d.name not in known and d.name not in layers and not d.name.startswith("build-"):
            shutil.rmtree(d, ignore_errors=True)
            report.drop(f"container layer directory {d.name[:12]}: no record")
    return report


def _mounts_below(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first (the order they can be unmounted in)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    prefix = str(path).rstrip("/")
    points = [line.split()[4] for line in lines if len(line.split()) > 4]
    return sorted({p for p in points if p == prefix or p.startswith(prefix + "/")}, key=lambda p: -p.count("/"))


def recover_scratch_mounts(places: list[tuple[Path, str]]) -> Report:
    """The private mounts a killed `docker cp` or export of a stopped container left (`<exec-root>/cp-*`,
    `<image root>/tmp/mnt-*`: its layer, with its volumes bound inside): unmounted, deepest first, then removed.
    `places`: (directory, name prefix) pairs."""
    report = Report()
    for parent, prefix in places:
        if not parent.is_dir():
            continue
        for d in sorted(parent.iterdir()):
            if not d.name.startswith(prefix) or not d.is_dir():
                continue
            try:
                for m in _mounts_below(d):
                    unmount(Path(m))
            except OSError as e:
                log.warning("recovery: cannot unmount below %s: %s", d, e)
                continue  # never delete through a mount
            with contextlib.suppress(OSError):
                d.rmdir()  # empty once unmounted; anything else in it is not ours to delete
            report.drop(f"scratch mount {d.name}: left by a copy or export the crash interrupted")
    return report


async def recover_runtime(daemon: Daemon, store: ContainerStore) -> Report:
    """Processes, runtime state and bundle mounts of containers that have no record any more, and cgroups of
    containers that have no runtime state."""
    import asyncio

    report = Report()
    known = {rec["Id"] for rec in store.all()}
    rt = getattr(daemon.runtime, "rt", None)
    if rt is not None:
        listed = rt.list()
        for cid in listed:
            if cid not in known:
                with contextlib.suppress(Exception):
                    await daemon.runtime.delete(cid)
                report.drop(f"container process {cid[:12]}: no record")
        # A container of this engine whose runtime state went (an exec root emptied while the host stayed up): its
        # cgroup outlived the state that would have removed it, with whatever still runs in it. Only the ids of
        # this engine's own records are looked at: another engine may share the cgroup parent.
        stale = sorted(known - set(listed))
        report.extend(await asyncio.to_thread(recover_cgroups, rt.cgroup_parent, stale))
    bundles = daemon.config.exec_root / "bundles"
    if bundles.is_dir():
        for b in sorted(bundles.iterdir()):
            if b.name in known:
                continue
            try:
                for mp in (b / "rootfs", b / "shm"):  # the root filesystem, a shareable IPC's /dev/shm
                    if os.path.ismount(mp):
                        unmount(mp)
            except OSError as e:
                log.warning("recovery: cannot unmount below %s: %s", b, e)
                continue  # never delete through a mounted root filesystem
            shutil.rmtree(b, ignore_errors=True)
            report.drop(f"container bundle {b.name[:12]}: no record")
    return report


def recover_cgroups(parent: str, ids: list[str]) -> Report:
    """The cgroups `<parent>/<id>` of containers with no runtime state: what runs in them is killed, then they go."""
    from engine.exec.cgroups import Cgroup

    report = Report()
    for cid in ids:
        cg = Cgroup(f"{parent}/{cid}")
        if not cg.exists():
            continue
        try:
            cg.kill_all(9)
            cg.delete(timeout=10)
        except OSError as e:
            log.warning("recovery: cannot remove cgroup %s: %s", cg.path, e)
            continue
        report.drop(f"cgroup {cg.path}: its container has no runtime state")
    return report


def recover_volumes(volumes: VolumeStore) -> Report:
    """Volume removals killed halfway are finished; a directory a create left without its record goes when empty;
    a record lost to a power cut over data that is still there is written again (the data is what matters)."""
    report = Report()
    for name, what in volumes.recover():
        (report.repair if what.startswith("repaired") else report.drop)(f"volume {name}: {what}")
    return report


async def recover(daemon: Daemon) -> Report:
    """The whole pass, as `engine.parts.start` runs it (the stores are open, nothing serves yet)."""
    import asyncio

    report = Report()
    # containers first: a layer they drop leaves its image's blobs for the image pass to collect
    if daemon.containers is not None:
        store = daemon.containers.store
        report.extend(await asyncio.to_thread(recover_containers, store, daemon.images))
        report.extend(await recover_runtime(daemon, store))
    if daemon.images is not None:
        report.extend(await asyncio.to_thread(recover_images, daemon.images))
    scratch = [(daemon.config.exec_root, "cp-")]
    if daemon.images is not None:
        scratch.append((daemon.images.root / "tmp", "mnt-"))
    report.extend(await asyncio.to_thread(recover_scratch_mounts, scratch))
    report.extend(await asyncio.to_thread(recover_volumes, daemon.volumes))
    if report.dropped or report.repaired:
        log.warning("recovery: %d dropped, %d repaired at start-up", len(report.dropped), len(report.repaired))
    return report
