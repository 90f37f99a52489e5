"""Writing OCI image layouts by hand: deterministic layer tars, gzip or zstd blobs, configs, manifests, indexes.

The test bed writes its images itself rather than with a build tool, so that every byte of every form
(Docker schema2 via skopeo's conversion, OCI manifests, indexes, zstd layers, whiteouts) is known to the tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
REF_NAME = "org.opencontainers.image.ref.name"
# A fixed time for every entry and the config, so that the same inputs give the same digests.
EPOCH = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    """One tar entry of a hand-made layer. kind: file, dir, symlink, hardlink."""

    path: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""
    uid: int = 0
    gid: int = 0


def tar_entries(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.mtime = EPOCH
            info.uid, info.gid = e.uid, e.gid
            info.mode = e.mode
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = e.mode if e.mode != 0o644 else 0o755
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = e.target
                info.mode = 0o777
                tar.addfile(info)
            elif e.kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = e.target
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def tar_directory(root: Path) -> bytes:
    """A deterministic tar of a directory tree: sorted names, fixed times, owners and modes as on disk."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            base = Path(dirpath)
            for name in sorted(dirnames + filenames):
                paths.append(base / name)
        paths.sort(key=lambda p: p.relative_to(root).as_posix())
        for path in paths:
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime = EPOCH
            info.uname = info.gname = ""
            info.uid, info.gid = st.st_uid, st.st_gid
            if stat.S_ISREG(st.st_mode) and info.type == tarfile.REGTYPE:
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if how == "none":
        return data
    raise ValueError(f"unknown compression {how}")


@dataclass
class Layout:
    """An OCI image layout directory (oci-layout, index.json, blobs/sha256/...)."""

    path: Path
    manifests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def add_blob(self, data: bytes) -> tuple[str, int]:
        digest = sha256(data)
        (self.path / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return digest, len(data)

    def add_json(self, obj: dict[str, Any]) -> tuple[str, int]:
        return self.add_blob(json.dumps(obj, indent=None, separators=(",", ":"), sort_keys=True).encode())

    def image(
        self,
        layers: list[bytes],
        *,
        config: dict[str, Any],
        compression: str | list[str] = "gzip",
        architecture: str = "amd64",
        os_name: str = "linux",
        history: list[str] | None = None,
    ) -> dict[str, Any]:
        """Add an image (uncompressed layer tars in order) and return its manifest descriptor."""
        kinds = compression if isinstance(compression, list) else [compression] * len(layers)
        layer_descs = []
        diff_ids = []
        for tar, how in zip(layers, kinds, strict=True):
            diff_ids.append(sha256(tar))
            digest, size = self.add_blob(compress(tar, how))
            layer_descs.append({"mediaType": MEDIA_OCI_LAYER[how], "digest": digest, "size": size})
        hist = history or [f"layer {i}" for i in range(len(layers))]
        image_config = {
            "architecture": architecture,
            "os": os_name,
            "created": CREATED,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": CREATED, "created_by": h} for h in hist],
        }
        cdigest, csize = self.add_json(image_config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": cdigest, "size": csize},
            "layers": layer_descs,
        }
        mdigest, msize = self.add_json(manifest)
        return {
            "mediaType": MEDIA_OCI_MANIFEST,
            "digest": mdigest,
            "size": msize,
            "platform": {"architecture": architecture, "os": os_name},
        }

    def index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        """Add a multi-platform index blob over the given manifest descriptors; return its descriptor."""
        digest, size = self.add_json({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": manifests})
        return {"mediaType": MEDIA_OCI_INDEX, "digest": digest, "size": size}

    def tag(self, descriptor: dict[str, Any], name: str) -> None:
        desc = {k: v for k, v in descriptor.items() if k != "platform"}
        desc["annotations"] = {REF_NAME: name}
        self.manifests.append(desc)
        (self.path / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": self.manifests}, indent=1)
        )
