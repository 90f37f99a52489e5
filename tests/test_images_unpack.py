"""Layer unpacking: overlay whiteouts, attributes, and a suite of hostile archives that must stay inside."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.images.content import ContentStore, DigestMismatch, digest_bytes
from engine.images.snapshots import SnapshotStore
from engine.images.unpack import OPAQUE_XATTR, LayerError, Limits, apply_layer

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and owners need root")


def make_tar(entries: list[tuple], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """entries: (name, kind, payload) with kind file/dir/symlink/hardlink/chr/blk/fifo; payload data or target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for e in entries:
            name, kind = e[0], e[1]
            payload = e[2] if len(e) > 2 else b""
            extra = e[3] if len(e) > 3 else {}
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            ti.mode = extra.get("mode", 0o755 if kind == "dir" else 0o644)
            ti.uid = extra.get("uid", 0)
            ti.gid = extra.get("gid", 0)
            ti.pax_headers = extra.get("pax", {})
            if kind == "file":
                ti.size = len(payload)
                tar.addfile(ti, io.BytesIO(payload))
                continue
            ti.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "blk": tarfile.BLKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            if kind in ("symlink", "hardlink"):
                ti.linkname = payload  # type: ignore[assignment]
            if kind in ("chr", "blk"):
                ti.devmajor, ti.devminor = payload  # type: ignore[misc]
            tar.addfile(ti)
    return buf.getvalue()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A snapshot dir and, beside it, an `outside` dir with a sentinel that nothing may touch."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("untouched")
    dest = tmp_path / "snap"
    dest.mkdir()
    before = sorted(str(p) for p in tmp_path.rglob("*") if not str(p).startswith(str(dest)))
    yield dest, outside
    after = sorted(str(p) for p in tmp_path.rglob("*") if not str(p).startswith(str(dest)))
    assert after == before, "something was written outside the snapshot"
    assert (outside / "sentinel").read_text() == "untouched"


def apply(data: bytes, dest: Path, limits: Limits | None = None) -> None:
    apply_layer(io.BytesIO(data), dest, limits=limits)


@needs_root
def test_whiteouts_opaque_and_attributes(box: tuple[Path, Path]) -> None:
    dest, _ = box
    cap = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # cap_net_bind_service
    data = make_tar(
        [
            ("dir", "dir"),
            ("dir/.wh.gone", "file"),
            ("opq", "dir"),
            ("opq/.wh..wh..opq", "file"),
            ("opq/new", "file", b"new"),
            ("suid", "file", b"x", {"mode": 0o4755, "uid": 1000, "gid": 1000}),
            ("ping", "file", b"p", {"pax": {"SCHILY.xattr.security.capability": cap.decode("latin-1")}}),
            ("link", "symlink", "/etc/passwd"),
            ("hard", "hardlink", "suid"),
            ("fifo", "fifo"),
            ("null", "chr", (1, 3)),
            ("/abs/file", "file", b"abs"),
            ("./dot/../dotted", "file", b"d"),
            ("dir/.wh..wh.plnk", "file"),
        ]
    )
    apply(data, dest)
    st = os.lstat(dest / "dir/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "opq", OPAQUE_XATTR) == b"y"
    assert not (dest / "opq/.wh..wh..opq").exists()
    st = os.stat(dest / "suid")
    assert st.st_mode & 0o7777 == 0o4755 and (st.st_uid, st.st_gid) == (1000, 1000)
    assert os.readlink(dest / "link") == "/etc/passwd"  # a symlink may point anywhere; nothing follows it here
    assert os.stat(dest / "hard").st_ino == st.st_ino
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    assert os.lstat(dest / "null").st_rdev == os.makedev(1, 3)
    assert (dest / "abs/file").read_bytes() == b"abs"
    assert (dest / "dotted").read_bytes() == b"d"
    assert not (dest / "dir/.wh..wh.plnk").exists()
    assert os.getxattr(dest / "ping", "security.capability")[:4] == cap[:4]
    assert int(os.stat(dest / "dir").st_mtime) == 1_700_000_000


@needs_root
@pytest.mark.parametrize(
    ("name", "entries"),
    [
        ("path traversal", [("../outside/evil", "file", b"x")]),
        ("deep traversal", [("a/../../outside/evil", "file", b"x")]),
        ("symlink dir escape", [("esc", "symlink", "../outside"), ("esc/evil", "file", b"x")]),
        ("absolute symlink escape", [("esc", "symlink", "/"), ("esc/tmp/evil", "file", b"x")]),
        ("hardlink escape", [("h", "hardlink", "../outside/sentinel")]),
        ("hardlink to host file", [("h", "hardlink", "/etc/passwd")]),
        ("hardlink through symlink", [("esc", "symlink", "../outside"), ("h", "hardlink", "esc/sentinel")]),
        ("whiteout outside", [("../.wh.outside", "file")]),
        ("whiteout through symlink", [("esc", "symlink", "../outside"), ("esc/.wh.sentinel", "file")]),
        ("whiteout of parent", [("d", "dir"), ("d/.wh..", "file")]),
        ("opaque through symlink", [("esc", "symlink", "../outside"), ("esc/.wh..wh..opq", "file")]),
    ],
)
def test_hostile_archives_are_refused(box: tuple[Path, Path], name: str, entries: list[tuple]) -> None:
    dest, _ = box
    with pytest.raises(LayerError):
        apply(make_tar(entries), dest)


@needs_root
def test_entries_replace_symlinks_instead_of_writing_through(box: tuple[Path, Path]) -> None:
    dest, outside = box
    data = make_tar(
        [
            ("s", "symlink", str(outside / "sentinel")),
            ("s", "file", b"replaced"),
            ("d", "symlink", str(outside)),
            ("d", "dir"),
            ("d/f", "file", b"inside"),
            ("n", "symlink", str(outside / "sentinel")),
            ("n", "chr", (0, 0)),
        ]
    )
    apply(data, dest)
    assert (dest / "s").read_bytes() == b"replaced" and not (dest / "s").is_symlink()
    assert (dest / "d").is_dir() and not (dest / "d").is_symlink() and (dest / "d/f").read_bytes() == b"inside"


@needs_root
def test_device_nodes_stay_nodes_inside(box: tuple[Path, Path]) -> None:
    dest, _ = box
    apply(make_tar([("dev", "dir"), ("dev/sda", "blk", (8, 0)), ("dev/mem", "chr", (1, 1))]), dest)
    assert stat.S_ISBLK(os.lstat(dest / "dev/sda").st_mode)
    assert os.lstat(dest / "dev/mem").st_rdev == os.makedev(1, 1)


def _bomb(uncompressed: int) -> bytes:
    """A gzip'd tar holding one file of zeros, about 1000 times smaller than what it expands to."""
    header = tarfile.TarInfo("bomb")
    header.size = uncompressed
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [comp.compress(header.tobuf(format=tarfile.PAX_FORMAT))]
    zero = bytes(1 << 20)
    left = uncompressed
    while left:
        n = min(left, len(zero))
        out.append(comp.compress(zero[:n]))
        left -= n
    out.append(comp.compress(bytes(1024)))
    out.append(comp.flush())
    return b"".join(out)


@needs_root
def test_decompression_bomb_is_stopped_and_cleaned(tmp_path: Path) -> None:
    bomb = _bomb(256 << 20)
    assert len(bomb) < 1 << 20
    snaps = SnapshotStore(tmp_path / "snaps", Limits(max_bytes=32 << 20))
    with pytest.raises(LayerError, match="limit"):
        snaps.create("sha256:" + "1" * 64, None, io.BytesIO(bomb), expected_diff_id=None)
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == ["empty"]
    # and a free-space reserve larger than the disk stops it too, long before the disk fills
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    snaps = SnapshotStore(tmp_path / "snaps2", Limits(min_free_bytes=free + (1 << 40)))
    with pytest.raises(LayerError, match="no space left"):
        snaps.create("sha256:" + "1" * 64, None, io.BytesIO(bomb), expected_diff_id=None)
    assert [p.name for p in (tmp_path / "snaps2").iterdir()] == ["empty"]


@needs_root
def test_compression_forms_and_diff_id(tmp_path: Path) -> None:
    import zstandard

    raw = make_tar([("f", "file", b"hello")])
    for i, blob in enumerate([raw, gzip.compress(raw), zstandard.ZstdCompressor().compress(raw)]):
        dest = tmp_path / str(i)
        dest.mkdir()
        res = apply_layer(io.BytesIO(blob), dest)
        assert res.diff_id == digest_bytes(raw)
        assert (dest / "f").read_bytes() == b"hello"
    with pytest.raises(LayerError):
        d = tmp_path / "bad"
        d.mkdir()
        apply_layer(io.BytesIO(gzip.compress(raw)[:-12]), d)
    snaps = SnapshotStore(tmp_path / "snaps")
    with pytest.raises(LayerError, match="does not match its diff id"):
        snaps.create("sha256:" + "2" * 64, None, io.BytesIO(raw), expected_diff_id="sha256:" + "3" * 64)


def test_content_store_verifies_and_resumes(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    data = os.urandom(300_000)
    d = digest_bytes(data)
    w = cs.writer(d, len(data))
    w.write(data[:100_000])
    w.close()  # as if killed: partial ingest stays, invisible
    assert not cs.has(d) and (tmp_path / "ingest").iterdir()
    w = cs.writer(d, len(data))
    assert w.offset == 100_000  # resumes
    w.write(data[100_000:])
    assert w.commit() == d
    assert cs.read(d) == data and list((tmp_path / "ingest").iterdir()) == []
    bad = digest_bytes(b"other")
    with pytest.raises(DigestMismatch, match="verification failed"):
        cs.put(b"not other", bad)
    assert not cs.has(bad) and list((tmp_path / "ingest").iterdir()) == []
    w = cs.writer(digest_bytes(b"xyz"), 3)
    with pytest.raises(DigestMismatch, match="more data than its announced size"):
        w.write(b"toolong")
    w.abort()
    deleted, reclaimed = cs.gc([], stale_ingest_seconds=0)
    assert deleted == [d] and reclaimed >= len(data) and not cs.has(d)


def test_many_small_files_queued_to_writers_keep_archive_order(tmp_path: Path) -> None:
    """Small files are written by threads in batches: a later entry for a queued path, a hardlink to one, and a
    directory replacing one must still see the archive's order."""
    entries: list[tuple] = [("d", "dir")]
    entries += [(f"d/f{i:03d}", "file", b"first %d" % i) for i in range(300)]
    entries += [(f"d/f{i:03d}", "file", b"second %d" % i) for i in range(0, 300, 7)]
    entries += [("d/link", "hardlink", "d/f001"), ("d/f002", "dir"), ("d/f002/inner", "file", b"in")]
    dest = tmp_path / "x"
    dest.mkdir()
    apply_layer(io.BytesIO(gzip.compress(make_tar(entries))), dest)
    assert (dest / "d/f000").read_bytes() == b"second 0" and (dest / "d/f001").read_bytes() == b"first 1"
    assert (dest / "d/f007").read_bytes() == b"second 7" and (dest / "d/f299").read_bytes() == b"first 299"
    assert os.stat(dest / "d/link").st_ino == os.stat(dest / "d/f001").st_ino
    assert (dest / "d/f002/inner").read_bytes() == b"in"
    assert len(os.listdir(dest / "d")) == 301


def test_snapshot_roots_are_top_directories(tmp_path: Path) -> None:
    """chattr +T: ext4 spreads each snapshot over the block groups (see snapshots.mark_topdir)."""
    import fcntl
    import struct

    store = SnapshotStore(tmp_path / "snaps")
    fd = os.open(store.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            flags = struct.unpack("i", fcntl.ioctl(fd, 0x80086601, b"\0" * 4))[0]
        except OSError:
            pytest.skip("this filesystem has no inode flags")
    finally:
        os.close(fd)
    if not flags & 0x00020000:
        pytest.skip("this filesystem keeps no TOPDIR flag")  # e.g. tmpfs, overlayfs
    assert flags & 0x00020000


@pytest.mark.parametrize("size", [100, 300 << 10])  # a small file (writer threads) and a big one (streamed)
def test_truncated_layer_is_refused(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    tar = make_tar([("f", "file", data)])
    dest = tmp_path / "x"
    dest.mkdir()
    with pytest.raises(LayerError, match="invalid layer"):
        apply_layer(io.BytesIO(tar[: 512 + size // 2]), dest)
    dest2 = tmp_path / "y"
    dest2.mkdir()
    apply_layer(io.BytesIO(gzip.compress(tar)), dest2)
    assert (dest2 / "f").read_bytes() == data
