"""The start-up recovery pass on its own: real stores in a temp dir, damaged by the test the way a crash or a power
cut would leave them, then each part of engine/recovery.py run and its verdict checked."""

from __future__ import annotations

import io
import os
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import recovery
from engine.containers.store import RECORD, ContainerStore
from engine.images.service import ImageService
from engine.store import write_json
from engine.volumes import ANONYMOUS_LABEL, VolumeStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers keeps owners: needs root")


def _rootfs_tar(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ImageService]:
    s = ImageService(tmp_path / "image", docker_config=tmp_path / "none.json", certs_dirs=())
    yield s
    s.close()


def _image(svc: ImageService, tag: str, content: bytes = b"hello") -> str:
    return svc.import_(_rootfs_tar({"f": content}), repo="pst-recovery", tag=tag).id


def test_whole_store_is_left_alone(svc: ImageService) -> None:
    image_id = _image(svc, "a")
    before = sorted(svc.content.digests())
    report = recovery.recover_images(svc)
    assert report.dropped == [] and report.repaired == []
    assert svc.get("pst-recovery:a").id == image_id
    assert sorted(svc.content.digests()) == before


def test_damaged_config_drops_the_image_and_its_content(svc: ImageService) -> None:
    image_id = _image(svc, "a")
    keep = _image(svc, "b", b"other")
    path = svc.content.blob_path(image_id)
    path.write_bytes(path.read_bytes()[:10])  # a power cut: the file came back short
    report = recovery.recover_images(svc)
    assert any(f"image {image_id[7:19]}" in d and "config blob" in d for d in report.dropped), report.dropped
    assert svc.resolve("pst-recovery:a") is None
    assert svc.get("pst-recovery:b").id == keep
    assert not svc.content.has(image_id)  # collected: nothing refers to its blobs now
    chain = svc.get(keep).chain
    assert [c for c in svc.snapshots.chain_ids()] == chain


def test_short_layer_blob_is_deleted_but_its_verified_snapshot_keeps_the_image(svc: ImageService) -> None:
    image_id = _image(svc, "a")
    layer = svc.referenced()[0] - {image_id, svc.meta.image(image_id).manifest_digest}  # type: ignore[union-attr]
    (digest,) = layer
    svc.content.blob_path(digest).write_bytes(b"")
    report = recovery.recover_images(svc)
    assert any(digest in d and "announced size" in d for d in report.dropped), report.dropped
    assert not svc.content.has(digest)  # never trusted by a later pull or push
    assert svc.get("pst-recovery:a").id == image_id


def test_unreadable_snapshot_record_drops_snapshot_and_image(svc: ImageService) -> None:
    image_id = _image(svc, "a")
    (chain_id,) = svc.get(image_id).chain
    (svc.snapshots.dir(chain_id) / "meta.json").write_text("")
    report = recovery.recover_images(svc)
    assert any(chain_id in d for d in report.dropped)
    assert any("is missing" in d for d in report.dropped)
    assert svc.resolve(image_id) is None and not svc.snapshots.dir(chain_id).exists()


def test_what_a_killed_pull_wrote_before_its_record_is_collected(svc: ImageService) -> None:
    image_id = _image(svc, "a")
    manifest = svc.meta.image(image_id).manifest_digest  # type: ignore[union-attr]
    with svc.meta.tx() as db:  # as if the record's transaction never ran
        db.execute("DELETE FROM tags")
        db.execute("DELETE FROM images")
    report = recovery.recover_images(svc)
    assert any("unreferenced blobs and snapshots" in d for d in report.dropped)
    assert not svc.content.has(image_id) and not svc.content.has(manifest)
    assert list(svc.snapshots.chain_ids()) == []


def test_truncated_image_database_is_moved_aside(tmp_path: Path) -> None:
    root = tmp_path / "image"
    s = ImageService(root, docker_config=tmp_path / "none.json", certs_dirs=())
    _image(s, "a")
    s.close()
    db = root / "images.db"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    s = ImageService(root, docker_config=tmp_path / "none.json", certs_dirs=())
    try:
        assert s.meta.moved_aside is not None and s.meta.moved_aside.exists()
        report = recovery.recover_images(s)
        assert any("image database was unreadable" in d for d in report.dropped)
        assert s.list() == []
        _image(s, "b")  # the engine carries on
        assert s.get("pst-recovery:b")
    finally:
        s.close()


def _record(store: ContainerStore, cid: str, name: str, image: str = "") -> None:
    store.save({"Id": cid, "Name": "/" + name, "Image": image, "State": {}})


def test_containers_half_made_or_half_removed(svc: ImageService, tmp_path: Path) -> None:
    store = ContainerStore(tmp_path / "containers")
    image_id = _image(svc, "a")
    whole, no_layer, no_row, no_record = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    _record(store, whole, "pst-whole", image_id)
    svc.create_container_layer(whole, image_id)
    _record(store, no_layer, "pst-removed", image_id)  # rm killed after the layer went
    _record(store, no_row, "pst-norow", image_id)
    svc.create_container_layer(no_row, image_id)
    with svc.meta.tx() as db:  # images.db lost its last write
        db.execute("DELETE FROM container_layers WHERE id=?", (no_row,))
    svc.create_container_layer(no_record, image_id)  # create killed before the record
    (store.root / no_record).mkdir()
    stray = store.root / ("e" * 64)
    stray.mkdir()
    (stray / RECORD).write_text('{"Id": "trunc')  # a record cut short
    store = ContainerStore(store.root)  # as the daemon loads it at start
    report = recovery.recover_containers(store, svc)
    ids = {r["Id"] for r in store.all()}
    assert ids == {whole, no_row}
    assert {c for c, _i in svc.meta.container_layers()} == {whole, no_row}
    assert sorted(p.name for p in store.root.iterdir()) == sorted([whole, no_row])
    assert sorted(p.name for p in (svc.root / "layers").iterdir()) == sorted([whole, no_row])
    assert any("pst-removed" in d and "already removed" in d for d in report.dropped)
    assert any("pst-norow" in r for r in report.repaired)
    assert any(no_record[:12] in d and "no container record" in d for d in report.dropped)
    assert any("e" * 12 in d and "no readable record" in d for d in report.dropped)
    assert svc.container_layer(no_row).image_id == image_id


def test_volumes_interrupted_and_damaged(tmp_path: Path) -> None:
    vols = VolumeStore(tmp_path / "volumes")
    vols.create("pst-whole")
    vols.create("pst-data")
    (vols.root / "pst-data" / "_data" / "f").write_text("keep me")
    (vols.root / "pst-data" / "meta.json").write_text("")  # emptied by a power cut
    (vols.root / "pst-halfmade" / "_data").mkdir(parents=True)  # create killed before its record
    anon = "f" * 64
    (vols.root / anon / "_data").mkdir(parents=True)
    (vols.root / anon / "_data" / "x").write_text("1")
    (vols.root / anon / "meta.json").write_text("{")
    trash = vols.root / ".rm-pst-gone-0a0b0c0d"  # rm killed after its rename
    (trash / "_data").mkdir(parents=True)
    write_json(trash / "meta.json", {"Driver": "local"})
    assert "pst-gone" not in {v["Name"] for v in vols.list()}  # never listed, even before recovery
    report = recovery.recover_volumes(vols)
    assert sorted(v["Name"] for v in vols.list()) == sorted([anon, "pst-data", "pst-whole"])
    assert (vols.root / "pst-data" / "_data" / "f").read_text() == "keep me"
    assert ANONYMOUS_LABEL in vols.inspect(anon)["Labels"]
    assert not trash.exists() and not (vols.root / "pst-halfmade").exists()
    assert any("pst-gone" in d and "interrupted removal" in d for d in report.dropped)
    assert any("pst-halfmade" in d for d in report.dropped)
    assert any("pst-data" in r for r in report.repaired)
    vols.remove("pst-data")
    assert not any(p.name.startswith(".rm-") for p in vols.root.iterdir())


def test_scratch_mounts_of_an_interrupted_copy_are_unmounted_deepest_first(svc: ImageService, tmp_path: Path) -> None:
    from engine.exec import linux
    from tests.reliability.conftest import mounts_below
    from tests.testbed.mounts import unmount_below

    image_id = _image(svc, "a")
    layer = svc.create_container_layer("a" * 64, image_id)
    exec_root = tmp_path / "exec"
    cp_dir = exec_root / "cp-aaaaaaaaaaaa-x1"
    cp_dir.mkdir(parents=True)
    vol = tmp_path / "vol"
    vol.mkdir()
    layer.mount(cp_dir)  # as `docker cp` into a stopped container mounts it, a volume bound inside
    (cp_dir / "v").mkdir()
    linux.mount(str(vol), str(cp_dir / "v"), None, linux.MS_BIND)
    other = exec_root / "bundles"
    other.mkdir()
    try:
        report = recovery.recover_scratch_mounts([(exec_root, "cp-"), (svc.root / "tmp", "mnt-")])
        assert mounts_below(exec_root) == [] and not cp_dir.exists()
        assert other.is_dir()  # only the scratch places are touched
        assert any("cp-aaaaaaaaaaaa-x1" in d for d in report.dropped)
    finally:
        unmount_below(exec_root)  # whatever the pass did not get to
