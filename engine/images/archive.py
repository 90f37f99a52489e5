"""Image and filesystem archives: save/load (docker-archive with an OCI index), import, export, commit, and the
`docker cp` archive helpers that resolve every path inside the container's root (openat2 RESOLVE_IN_ROOT)."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Self, cast

from engine.errors import EngineError, InvalidArgument, NotFound
from engine.images import platform as platforms
from engine.images.changes import write_tree
from engine.images.content import digest_bytes, hex_of
from engine.images.reference import parse
from engine.images.registry import (
    INDEX_TYPES,
    MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER_ZSTD,
)
from engine.images.snapshots import chain_ids
from engine.images.unpack import LayerError, Limits, _clean, apply_layer, detect_compression

_deflate: Any = zlib  # ISA-L's deflate where installed (see _GzipSink), as engine/images/unpack.py inflates
with contextlib.suppress(ImportError):
    from isal import isal_zlib

    _deflate = isal_zlib

if TYPE_CHECKING:
    from engine.images.records import ImageRecord
    from engine.images.service import ContainerLayer, ImageService

MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
_BLOCK = 512
_CHUNK = 1 << 20


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- streaming helpers -----------------------------------------------------------------------------------------


def pipe_stream(write: Callable[[BinaryIO], None]) -> Iterator[bytes]:
    """Runs `write(fileobj)` on a thread and yields what it writes; re-raises its error at the end."""
    r, w = os.pipe()
    err: list[BaseException] = []

    def run() -> None:
        try:
            with os.fdopen(w, "wb", buffering=_CHUNK) as f:
                write(f)
        except BrokenPipeError:
            pass
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=run, daemon=True, name="portside-archive")
    t.start()
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            while chunk := f.read(_CHUNK):
                yield chunk
    finally:
        t.join()
    if err:
        raise err[0]


def _tar_header(name: str, size: int = 0, *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = kind
    ti.mode = mode
    ti.mtime = 0
    return ti.tobuf(format=tarfile.PAX_FORMAT)


def _tar_add_bytes(out: BinaryIO, name: str, data: bytes) -> None:
    out.write(_tar_header(name, len(data)))
    out.write(data)
    out.write(b"\0" * (-len(data) % _BLOCK))


def _tar_add_file(out: BinaryIO, name: str, path: Path) -> None:
    size = path.stat().st_size
    out.write(_tar_header(name, size))
    with open(path, "rb") as f:
        left = size
        while left:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise InvalidArgument(f"{path} shrank while being archived")
            out.write(chunk)
            left -= len(chunk)
    out.write(b"\0" * (-size % _BLOCK))


# ---- save / load -----------------------------------------------------------------------------------------------


def save(svc: ImageService, names: list[str], out: BinaryIO) -> None:
    """Writes a docker-archive (manifest.json) that is also an OCI layout (index.json, blobs/sha256)."""
    images: dict[str, list[str]] = {}  # image id -> full tag names
    for name in names:
        image_id = svc.resolve(name)
        if image_id is None:
            raise NotFound(f"No such image: {name}")
        tags = images.setdefault(image_id, [])
        with contextlib.suppress(InvalidArgument):
            r = parse(name, default_tag=False)
            if r.tag and str(r) in svc.meta.tags_of(image_id):
                tags.append(str(r))
            elif not r.tag and not r.digest and not name.startswith(image_id[7:]):
                tags.extend(t for t in svc.meta.tags_of(image_id) if t.rsplit(":", 1)[0] == r.name)
    written: set[str] = set()
    out.write(_tar_header("blobs/", kind=tarfile.DIRTYPE, mode=0o755))
    out.write(_tar_header("blobs/sha256/", kind=tarfile.DIRTYPE, mode=0o755))
    index: list[dict[str, Any]] = []
    manifest_json: list[dict[str, Any]] = []

    def blob(digest: str) -> str:
        name = f"blobs/sha256/{hex_of(digest)}"
        if digest not in written:
            written.add(digest)
            _tar_add_file(out, name, svc.content.blob_path(digest))
        return name

    for image_id, tags in images.items():
        row = svc.meta.image(image_id)
        assert row is not None
        manifest_raw = svc.content.read(row.manifest_digest)
        manifest = json.loads(manifest_raw)
        layer_paths = []
        for d in manifest.get("layers") or []:
            if not svc.content.has(d["digest"]):
                raise NotFound(f"layer {d['digest']} of {image_id} is not in the content store: pull the image again")
            layer_paths.append(blob(d["digest"]))
        config_path = blob(image_id)
        blob(row.manifest_digest)
        desc = {
            "mediaType": manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json",
            "digest": row.manifest_digest,
            "size": len(manifest_raw),
        }
        for t in tags or [""]:
            entry: dict[str, Any] = dict(desc)
            if t:
                entry["annotations"] = {
                    "io.containerd.image.name": t,
                    "org.opencontainers.image.ref.name": t.rsplit(":", 1)[1],
                }
            index.append(entry)
        from engine.images.service import _familiar

        manifest_json.append(
            {"Config": config_path, "RepoTags": [_familiar(t) for t in tags] or None, "Layers": layer_paths}
        )
    _tar_add_bytes(out, "index.json", json.dumps(
        {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index}).encode())
    _tar_add_bytes(out, "manifest.json", json.dumps(manifest_json).encode())
    _tar_add_bytes(out, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    out.write(b"\0" * (_BLOCK * 2))
    out.flush()


TAR_EOF = "Error processing tar file(exit status 1): unexpected EOF"
TAR_BAD_HEADER = "Error processing tar file(exit status 1): archive/tar: invalid tar header"


# Python's own header errors (not exported in the stubs)
_TRUNCATED_HEADER: type[Exception] = getattr(tarfile, "TruncatedHeaderError")  # noqa: B009
_EOF_HEADER: type[Exception] = getattr(tarfile, "EOFHeaderError")  # noqa: B009
_INVALID_HEADER: type[Exception] = getattr(tarfile, "InvalidHeaderError")  # noqa: B009


class _CheckedTarInfo(tarfile.TarInfo):
    """Notes why a stream's headers stopped: Python's tarfile ends quietly at a cut or corrupt header after the
    first, where Go's archive/tar (and so `docker load`) fails with unexpected EOF or an invalid header."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tf)
        except _TRUNCATED_HEADER:
            tf._pst_error = TAR_EOF  # type: ignore[attr-defined]
            raise
        except _EOF_HEADER:
            raise  # a zero block: the end
        except _INVALID_HEADER:
            tf._pst_error = TAR_BAD_HEADER  # type: ignore[attr-defined]
            raise


def _tar_error(e: BaseException) -> InvalidArgument:
    text = str(e)
    if "invalid header" in text or "bad checksum" in text:
        return InvalidArgument(TAR_BAD_HEADER)
    return InvalidArgument(TAR_EOF)


class _Extracted:
    """An archive unpacked to a private temp dir: regular files only; symlinks and hardlinks kept as a map and
    resolved lexically inside the archive, so nothing in it can point at host files."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.links: dict[str, str] = {}

    def extract(self, fileobj: BinaryIO, limits: Limits) -> None:
        written = 0
        try:
            tar = tarfile.open(fileobj=cast(IO[bytes], fileobj), mode="r|*", bufsize=_CHUNK,
                               tarinfo=_CheckedTarInfo)
        except tarfile.ReadError as e:
            if "empty file" in str(e):
                return  # dockerd reads an empty stream as an empty archive
            raise _tar_error(e) from None
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise _tar_error(e) from None
        try:
            with tar:
                for m in tar:
                    self._member(tar, m, limits, written)
                    if m.isreg():
                        written += m.size
                if err := getattr(tar, "_pst_error", None):
                    raise InvalidArgument(err)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise _tar_error(e) from None

    def _member(self, tar: tarfile.TarFile, m: tarfile.TarInfo, limits: Limits, written: int) -> None:
        parts = _clean(m.name)
        if not parts:
            return
        key = "/".join(parts)
        if m.issym():
            base = parts[:-1] if not m.linkname.startswith("/") else []
            self.links[key] = "/".join(_clean("/".join([*base, m.linkname])))
        elif m.islnk():
            self.links[key] = "/".join(_clean(m.linkname))
        elif m.isreg():
            if written + m.size > limits.max_bytes:
                raise InvalidArgument("archive is larger than the allowed size: refused")
            dest = self.tmp.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with open(dest, "wb") as f:
                left = m.size
                while left and (chunk := src.read(min(_CHUNK, left))):
                    left -= len(chunk)
                    f.write(chunk)
                if left > 0:
                    raise InvalidArgument(TAR_EOF)

    def missing(self, name: str) -> InvalidArgument:
        # dockerd's words: the open(2) of the file it expected in its temp dir
        return InvalidArgument(f"open {self.tmp}/{'/'.join(_clean(name))}: no such file or directory")

    def path(self, name: str) -> Path:
        key = "/".join(_clean(name))
        for _ in range(40):
            if key in self.links:
                key = self.links[key]
                continue
            # a link among the parents (Docker 25 writes <id>/layer.tar -> ../blobs/sha256/...)
            parts = key.split("/")
            for i in range(len(parts) - 1, 0, -1):
                head = "/".join(parts[:i])
                if head in self.links:
                    key = "/".join([*self.links[head].split("/"), *parts[i:]])
                    break
            else:
                p = self.tmp.joinpath(*parts)
                if not key or not p.is_file():
                    raise self.missing(name)
                return p
        raise InvalidArgument(f"invalid archive: too many links resolving {name}")

    def has(self, name: str) -> bool:
        try:
            self.path(name)
            return True
        except InvalidArgument:
            return False


_DIFF_MISMATCH = re.compile(r"does not match its diff id: expected \S+, got (\S+)")


def _layer_media(kind: str) -> str:
    return {"gzip": MEDIA_DOCKER_LAYER_GZIP, "zstd": MEDIA_OCI_LAYER_ZSTD}.get(kind, MEDIA_DOCKER_LAYER_TAR)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class _Ingest:
    """What one load added to the content and snapshot stores, so a failure can take it all back."""

    def __init__(self, svc: ImageService) -> None:
        self.svc = svc
        self.blobs: list[str] = []
        self.chains: list[str] = []

    def put(self, data: bytes) -> str:
        digest = digest_bytes(data)
        if not self.svc.content.has(digest):
            self.svc.content.put(data, digest)
            self.blobs.append(digest)
        return digest

    def file(self, path: Path) -> str:
        digest = _file_digest(path)
        if not self.svc.content.has(digest):
            self.svc.content.ingest_file(path, digest)
            self.blobs.append(digest)
        return digest

    def rollback(self) -> None:
        """Removes what this load added that no recorded image uses (another pull may share a blob)."""
        blobs, chains = self.svc.referenced()
        for c in reversed(self.chains):
            if c not in chains:
                self.svc.snapshots.remove(c)
        for d in self.blobs:
            if d not in blobs:
                self.svc.content.delete(d)


@dataclass
class _Planned:
    image_id: str
    manifest_digest: str
    tags: list[str]


def _ingest_image(
    svc: ImageService,
    ing: _Ingest,
    config_raw: bytes,
    layer_files: list[Path],
    *,
    tags: list[str],
    manifest_raw: bytes | None = None,
) -> _Planned:
    """Ingests a config and layer files and unpacks what is missing; the image is recorded later, once every
    image of the archive is in."""
    try:
        config = json.loads(config_raw)
    except ValueError as e:
        raise InvalidArgument(f"invalid image config: {e}") from None
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layer_files):
        # dockerd's tarexport wording
        raise InvalidArgument(
            f"invalid manifest, layers length mismatch: expected {len(layer_files)}, got {len(diff_ids)}"
        )
    image_id = ing.put(config_raw)
    chain = chain_ids(diff_ids)
    descs: list[dict[str, Any]] = []
    for i, f in enumerate(layer_files):
        digest = ing.file(f)
        with open(f, "rb") as fh:
            kind = detect_compression(fh.read(4))
        descs.append({"mediaType": _layer_media(kind), "size": f.stat().st_size, "digest": digest})
        if not svc.snapshots.has(chain[i]):
            with svc.content.open(digest) as fh:
                try:
                    svc.snapshots.create(chain[i], chain[i - 1] if i else None, fh, expected_diff_id=diff_ids[i])
                except LayerError as e:
                    got = _DIFF_MISMATCH.search(e.message)
                    if got is None:
                        raise
                    raise InvalidArgument(  # dockerd's tarexport wording
                        f'invalid diffID for layer {i}: expected "{diff_ids[i]}", got "{got.group(1)}"'
                    ) from None
            ing.chains.append(chain[i])
    if manifest_raw is not None:
        m = json.loads(manifest_raw)
        same = (m.get("config") or {}).get("digest") == image_id and [d["digest"] for d in m.get("layers") or []] == [
            d["digest"] for d in descs
        ]
        if not same:
            manifest_raw = None
    if manifest_raw is None:
        media = MEDIA_DOCKER_MANIFEST
        if any(d["mediaType"] == MEDIA_OCI_LAYER_ZSTD for d in descs):
            media = "application/vnd.oci.image.manifest.v1+json"
            for d in descs:
                d["mediaType"] = {
                    MEDIA_DOCKER_LAYER_GZIP: "application/vnd.oci.image.layer.v1.tar+gzip",
                    MEDIA_DOCKER_LAYER_TAR: "application/vnd.oci.image.layer.v1.tar",
                }.get(d["mediaType"], d["mediaType"])
        manifest_raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media,
                "config": {
                    "mediaType": MEDIA_DOCKER_CONFIG if media == MEDIA_DOCKER_MANIFEST
                    else "application/vnd.oci.image.config.v1+json",
                    "size": len(config_raw),
                    "digest": image_id,
                },
                "layers": descs,
            },
            separators=(",", ":"),
        ).encode()
    return _Planned(image_id, ing.put(manifest_raw), tags)


def _json_file(ex: _Extracted, name: str) -> Any:
    try:
        return json.loads(ex.path(name).read_bytes())
    except ValueError as e:
        raise InvalidArgument(f"invalid {name}: {e}") from None


def _tags(names: list[str]) -> list[str]:
    return [str(parse(t)) for t in names]


def _plan_docker_archive(svc: ImageService, ex: _Extracted, ing: _Ingest) -> list[tuple[_Planned, list[str]]]:
    entries = _json_file(ex, "manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument("invalid manifest.json: not a list of images")
    oci_manifests: dict[str, bytes] = {}
    if ex.has("index.json"):
        for d in (_json_file(ex, "index.json") or {}).get("manifests") or []:
            with contextlib.suppress(InvalidArgument, KeyError, ValueError, TypeError, AttributeError):
                raw = ex.path(f"blobs/sha256/{hex_of(d['digest'])}").read_bytes()
                if digest_bytes(raw) == d["digest"]:
                    cfg = (json.loads(raw).get("config") or {}).get("digest")
                    if cfg:
                        oci_manifests[cfg] = raw
    # every file is looked for before anything goes into the stores
    wanted = [(e["Config"], list(e.get("Layers") or []), list(e.get("RepoTags") or [])) for e in entries]
    for config, layers, _t in wanted:
        for name in (config, *layers):
            ex.path(name)
    out = []
    for config, layers, repo_tags in wanted:
        config_raw = ex.path(config).read_bytes()
        planned = _ingest_image(svc, ing, config_raw, [ex.path(x) for x in layers], tags=_tags(repo_tags),
                                manifest_raw=oci_manifests.get(digest_bytes(config_raw)))
        loaded = [f"Loaded image: {parse(t).familiar}" for t in repo_tags]
        out.append((planned, loaded or [f"Loaded image ID: {planned.image_id}"]))
    return out


def _plan_oci_layout(svc: ImageService, ex: _Extracted, ing: _Ingest) -> list[tuple[_Planned, list[str]]]:
    index = _json_file(ex, "index.json")
    out = []
    for d in index.get("manifests") or []:
        raw = ex.path(f"blobs/sha256/{hex_of(d['digest'])}").read_bytes()
        if digest_bytes(raw) != d["digest"]:
            raise InvalidArgument(f"invalid archive: manifest {d['digest']} does not match its digest")
        m = json.loads(raw)
        if (m.get("mediaType") or d.get("mediaType")) in INDEX_TYPES or "manifests" in m:
            chosen = platforms.choose(m.get("manifests") or [], platforms.host())
            raw = ex.path(f"blobs/sha256/{hex_of(chosen['digest'])}").read_bytes()
            m = json.loads(raw)
        config_raw = ex.path(f"blobs/sha256/{hex_of(m['config']['digest'])}").read_bytes()
        layers = [ex.path(f"blobs/sha256/{hex_of(x['digest'])}") for x in m.get("layers") or []]
        ann = d.get("annotations") or {}
        name = ann.get("io.containerd.image.name") or ""
        if not name and ann.get("org.opencontainers.image.ref.name", "").count(":"):
            name = ann["org.opencontainers.image.ref.name"]
        planned = _ingest_image(svc, ing, config_raw, layers, tags=_tags([name] if name else []), manifest_raw=raw)
        out.append((planned, [f"Loaded image: {parse(name).familiar}" if name else
                              f"Loaded image ID: {planned.image_id}"]))
    return out


def load(
    svc: ImageService, fileobj: BinaryIO, *, progress: Callable[[dict[str, Any]], None] | None = None
) -> list[str]:
    """`docker load`: archives of `docker save` (Docker 20.10's and 25+'s forms) and OCI layouts.

    All or nothing: every image of the archive is ingested (and its layers checked against their diff ids)
    before any is recorded; on an error what this load added to the stores is removed again.
    Returns the messages Docker prints ("Loaded image: nginx:latest" / "Loaded image ID: sha256:...")."""
    tmp = svc.root / "tmp" / f"load-{os.getpid()}-{os.urandom(6).hex()}"
    tmp.mkdir(parents=True)
    messages: list[str] = []
    ing = _Ingest(svc)
    try:
        ex = _Extracted(tmp)
        ex.extract(fileobj, svc.snapshots.limits)
        try:
            if ex.has("manifest.json"):
                plan = _plan_docker_archive(svc, ex, ing)
            elif ex.has("index.json"):
                plan = _plan_oci_layout(svc, ex, ing)
            else:
                # dockerd falls back to the pre-1.10 format, whose `repositories` file is missing too
                raise ex.missing("repositories")
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            # a manifest.json or index.json of the wrong shape (a field missing, a string for a list, ...)
            raise InvalidArgument(f"invalid archive: malformed image description ({type(e).__name__}: {e})") from None
        for planned, lines in plan:
            svc.meta.add_image(planned.image_id, planned.manifest_digest, tags=planned.tags)
            messages.extend(lines)
    except BaseException:
        ing.rollback()
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return messages  # the caller prints them (progress is for per-layer messages, none yet)


# ---- config changes (import / commit --change) -------------------------------------------------------------------

_CHANGE_KEYS = {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME",
                "WORKDIR"}  # fmt: skip


def _json_or_shell(arg: str, shell_form: bool) -> list[str]:
    arg = arg.strip()
    if arg.startswith("["):
        try:
            val = json.loads(arg)
            if isinstance(val, list) and all(isinstance(x, str) for x in val):
                return val
        except ValueError:
            pass
    return ["/bin/sh", "-c", arg] if shell_form else shlex.split(arg)


def _key_values(arg: str) -> list[tuple[str, str]]:
    words = shlex.split(arg)
    if len(words) == 2 and "=" not in words[0]:
        return [(words[0], words[1])]
    if words and "=" not in words[0]:  # ENV key value with spaces
        return [(words[0], arg.strip().split(None, 1)[1])]
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq:
            raise InvalidArgument(f"invalid change: {arg!r}: expected key=value")
        out.append((k, v))
    return out


def apply_changes(cfg: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Applies Dockerfile instructions (`docker commit/import --change`) to an image's run config."""
    cfg = dict(cfg)
    for change in changes:
        change = change.strip()
        if not change:
            continue
        word, _, arg = change.partition(" ")
        word = word.upper()
        if word not in _CHANGE_KEYS:
            raise InvalidArgument(f"{word} is not a valid change command")
        if word == "CMD":
            cfg["Cmd"] = _json_or_shell(arg, True)
        elif word == "ENTRYPOINT":
            cfg["Entrypoint"] = _json_or_shell(arg, True)
        elif word == "ENV":
            env = [e for e in cfg.get("Env") or []]
            for k, v in _key_values(arg):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            cfg["Env"] = env
        elif word == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(dict(_key_values(arg)))
            cfg["Labels"] = labels
        elif word == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in arg.split():
                ports[p if "/" in p else p + "/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif word == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for v in _json_or_shell(arg, False):
                vols[v] = {}
            cfg["Volumes"] = vols
        elif word == "USER":
            cfg["User"] = arg.strip()
        elif word == "WORKDIR":
            cfg["WorkingDir"] = arg.strip()
        elif word == "STOPSIGNAL":
            cfg["StopSignal"] = arg.strip()
        elif word == "HEALTHCHECK":
            from engine.images.healthcheck import parse_instruction

            cfg["Healthcheck"] = parse_instruction(arg)
        elif word == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), arg.strip()]
    return cfg


# ---- import / commit ---------------------------------------------------------------------------------------------


class _GzipSink:
    """A write-only file that gzips into a content Writer and hashes the uncompressed bytes (the diff id).
    ISA-L's deflate where it is installed: ~7x zlib's level 1 on incompressible files (20 MiB: 95 ms, not 700)."""

    def __init__(self, writer: Any) -> None:
        self._w = writer
        self._z = _deflate.compressobj(1, _deflate.DEFLATED, 31)
        self.diff = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        out = self._z.compress(data)
        if out:
            self._w.write(out)
        return len(data)

    def close_stream(self) -> None:
        self._w.write(self._z.flush())

    def flush(self) -> None:
        pass


def write_upper_layer(svc: ImageService, layer: ContainerLayer) -> tuple[str, str]:
    """A container layer's upper directory (whiteouts back in `.wh.` form) as a gzipped layer blob in the
    content store: (blob digest, diff id). Shared by `docker commit` and the builder's steps."""
    w = svc.content.writer()
    try:
        sink = _GzipSink(w)
        fd = os.open(layer.upper_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # 1 MiB blocks: the stream's default 10 KiB ones cost a Python call each (hash, deflate)
            with tarfile.open(fileobj=cast(IO[bytes], sink), mode="w|", format=tarfile.PAX_FORMAT,
                              bufsize=1 << 20) as tar:
                tar.copybufsize = 1 << 20  # type: ignore[attr-defined]  # TarFile's, not in typeshed
                write_tree(tar, fd, overlay_upper=True)
        finally:
            os.close(fd)
        sink.close_stream()
        digest = w.commit()
    finally:
        w.close()
    return digest, "sha256:" + sink.diff.hexdigest()


def _new_config(base: dict[str, Any] | None, diff_id: str, run_config: dict[str, Any], *, comment: str,
                author: str, created_by: str) -> dict[str, Any]:
    created = now_rfc3339()
    host = platforms.host()
    cfg: dict[str, Any] = dict(base or {"architecture": host.architecture, "os": host.os})
    cfg.pop("container", None)
    cfg.pop("container_config", None)
    cfg["created"] = created
    cfg["config"] = run_config
    if author:
        cfg["author"] = author
    rootfs = dict(cfg.get("rootfs") or {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), diff_id]
    cfg["rootfs"] = rootfs
    hist = {"created": created, "created_by": created_by}
    if comment:
        hist["comment"] = comment
    cfg["history"] = [*(cfg.get("history") or []), hist]
    if comment:
        cfg["comment"] = comment
    return cfg


def _record_new_image(
    svc: ImageService, base: ImageRecord | None, config: dict[str, Any], layer_digest: str, diff_id: str,
    tags: list[str],
) -> ImageRecord:
    config_raw = json.dumps(config, separators=(",", ":")).encode()
    image_id = svc.content.put(config_raw)
    chain = chain_ids(config["rootfs"]["diff_ids"])
    if not svc.snapshots.has(chain[-1]):
        with svc.content.open(layer_digest) as fh:
            svc.snapshots.create(chain[-1], chain[-2] if len(chain) > 1 else None, fh, expected_diff_id=diff_id)
    layers: list[dict[str, Any]] = []
    if base is not None:
        layers = list(json.loads(svc.content.read(base.manifest_digest)).get("layers") or [])
    with svc.content.open(layer_digest) as fh:
        kind = detect_compression(fh.read(4))
    layers.append({"mediaType": _layer_media(kind), "size": svc.content.size(layer_digest), "digest": layer_digest})
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_DOCKER_MANIFEST,
        "config": {"mediaType": MEDIA_DOCKER_CONFIG, "size": len(config_raw), "digest": image_id},
        "layers": layers,
    }
    manifest_digest = svc.content.put(json.dumps(manifest, separators=(",", ":")).encode())
    svc.meta.add_image(image_id, manifest_digest, tags=tags, parent=base.id if base is not None else "")
    return svc.get(image_id)


def _tags_for(repo: str | None, tag: str | None) -> list[str]:
    if not repo:
        return []
    r = parse(repo + (f":{tag}" if tag else ""))
    return [str(r)]


def import_(
    svc: ImageService,
    fileobj: BinaryIO,
    *,
    repo: str | None = None,
    tag: str | None = None,
    changes: list[str] | None = None,
    message: str = "",
    platform: str | None = None,
    source: str = "-",
) -> ImageRecord:
    """`docker import`: a root filesystem tarball (plain or compressed) becomes a one-layer image."""
    w = svc.content.writer()
    try:
        while chunk := fileobj.read(_CHUNK):
            w.write(chunk)
        if w.offset == 0:
            w.write(b"\0" * (_BLOCK * 2))  # dockerd imports an empty stream as an empty layer: an empty tar
        digest = w.commit()
    finally:
        w.close()
    with svc.content.open(digest) as fh:
        from engine.images.unpack import diff_id_of

        diff_id = diff_id_of(fh)
    base: dict[str, Any] | None = None
    if platform:
        p = platforms.parse(platform)
        base = {"architecture": p.architecture, "os": p.os}
        if p.variant:
            base["variant"] = p.variant
    run_config = apply_changes({}, changes or [])
    config = _new_config(base, diff_id, run_config, comment=message or f"Imported from {source}", author="",
                         created_by="")
    return _record_new_image(svc, None, config, digest, diff_id, _tags_for(repo, tag))


def commit(
    svc: ImageService,
    layer: ContainerLayer,
    *,
    repo: str | None = None,
    tag: str | None = None,
    comment: str = "",
    author: str = "",
    changes: list[str] | None = None,
    config: dict[str, Any] | None = None,
) -> ImageRecord:
    """`docker commit`: the container's upper layer (whiteouts back in `.wh.` form) on top of its image.

    `config` is the container's run config (Docker's Config shape); `changes` Dockerfile instructions on top.
    The caller pauses the container meanwhile."""
    base = svc.get(layer.image_id) if layer.image_id else None
    digest, diff_id = write_upper_layer(svc, layer)
    run_config = dict(base.container_config if base is not None else {})
    if config:
        run_config.update({k: v for k, v in config.items() if v is not None})
    run_config = apply_changes(run_config, changes or [])
    new = _new_config(base.config if base else None, diff_id, run_config, comment=comment, author=author,
                      created_by="")
    return _record_new_image(svc, base, new, digest, diff_id, _tags_for(repo, tag))


# ---- export / docker cp ------------------------------------------------------------------------------------------


def export(svc: ImageService, layer: ContainerLayer, out: BinaryIO, rootfs: Path | None = None) -> None:
    """`docker export`: the container's merged filesystem as a tar (mounted here when `rootfs` is not given)."""
    with mounted(svc, layer, rootfs) as root:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with tarfile.open(fileobj=cast(IO[bytes], out), mode="w|", format=tarfile.PAX_FORMAT) as tar:
                write_tree(tar, fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def mounted(svc: ImageService, layer: ContainerLayer, rootfs: Path | None) -> Iterator[Path]:
    """The container's root: `rootfs` when it is mounted already (running), else a private mount for the call."""
    if rootfs is not None:
        yield rootfs
        return
    target = svc.root / "tmp" / f"mnt-{layer.id[:12]}-{os.urandom(4).hex()}"
    target.mkdir(parents=True)
    try:
        layer.mount(target)
        try:
            yield target
        finally:
            layer.unmount(target)
    finally:
        with contextlib.suppress(OSError):
            target.rmdir()


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root_fd: int, path: str, flags: int) -> int:
    """openat2 with RESOLVE_IN_ROOT: `..` and symlinks (absolute ones too) stay inside the root."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(SYS_OPENAT2, ctypes.c_int(root_fd), path.encode(), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return int(fd)


def _split_container_path(path: str) -> tuple[str, str]:
    p = "/" + path.lstrip("/")
    parent, _, name = p.rstrip("/").rpartition("/")
    return parent or "/", name


def _go_mode(st: os.stat_result) -> int:
    """Go's os.FileMode bits, which X-Docker-Container-Path-Stat carries."""
    m = stat.S_IMODE(st.st_mode) & 0o777
    if stat.S_ISDIR(st.st_mode):
        m |= 1 << 31
    elif stat.S_ISLNK(st.st_mode):
        m |= 1 << 27
    elif stat.S_ISFIFO(st.st_mode):
        m |= 1 << 25
    elif stat.S_ISSOCK(st.st_mode):
        m |= 1 << 24
    elif stat.S_ISCHR(st.st_mode):
        m |= (1 << 26) | (1 << 21)
    elif stat.S_ISBLK(st.st_mode):
        m |= 1 << 26
    if st.st_mode & stat.S_ISUID:
        m |= 1 << 23
    if st.st_mode & stat.S_ISGID:
        m |= 1 << 22
    if st.st_mode & stat.S_ISVTX:
        m |= 1 << 20
    return m


def _not_found(path: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container")


def path_stat(root: Path, path: str) -> dict[str, Any]:
    """The X-Docker-Container-Path-Stat of `path` in the container (the last component not followed)."""
    parent, name = _split_container_path(path)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            pfd = open_in_root(root_fd, parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            raise _not_found(path) from None
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False) if name else os.fstat(pfd)
            link = ""
            if stat.S_ISLNK(st.st_mode):
                link = os.readlink(name, dir_fd=pfd)
                link = link if link.startswith("/") else os.path.normpath(os.path.join(parent, link))
        except FileNotFoundError:
            raise _not_found(path) from None
        finally:
            os.close(pfd)
    finally:
        os.close(root_fd)
    return {
        "name": name or "/",
        "size": st.st_size,
        "mode": _go_mode(st),
        "mtime": _dt.datetime.fromtimestamp(st.st_mtime, _dt.UTC).isoformat().replace("+00:00", "Z"),
        "linkTarget": link,
    }


def archive_get(root: Path, path: str, out: BinaryIO) -> None:
    """`docker cp CONTAINER:path -`: a tar of `path` named by its base name, resolved inside `root`.

    A trailing `/.` copies a directory's content; a trailing `/` follows a final symlink."""
    follow = path.endswith("/") or path.endswith("/.")
    contents_only = path.endswith("/.")
    parent, name = _split_container_path(path.removesuffix("/.") if contents_only else path)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            pfd = open_in_root(root_fd, parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            raise _not_found(path) from None
        try:
            if not name:
                tfd, st = os.dup(pfd), os.fstat(pfd)
                name = "."
            else:
                try:
                    st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    raise _not_found(path) from None
                tfd = -1
                if stat.S_ISDIR(st.st_mode) or (follow and stat.S_ISLNK(st.st_mode)):
                    tfd = open_in_root(root_fd, f"{parent}/{name}", os.O_RDONLY | os.O_DIRECTORY)
                    st = os.fstat(tfd)
            with tarfile.open(fileobj=cast(IO[bytes], out), mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if stat.S_ISDIR(st.st_mode):
                    try:
                        prefix = "" if contents_only or name == "." else name + "/"
                        write_tree(tar, tfd, prefix=prefix, include_root=bool(prefix))
                    finally:
                        os.close(tfd)
                else:
                    _write_single(tar, pfd, name)
        finally:
            os.close(pfd)
    finally:
        os.close(root_fd)


def _write_single(tar: tarfile.TarFile, dirfd: int, name: str) -> None:
    """One non-directory entry, read through `dirfd` without following it."""
    tmp = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        # write_tree over a one-name filter: reuse its type handling.
        st = os.stat(name, dir_fd=tmp, follow_symlinks=False)
        ti = tarfile.TarInfo(name)
        ti.mode, ti.uid, ti.gid, ti.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
        if stat.S_ISREG(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=tmp)
            with os.fdopen(fd, "rb") as f:
                fst = os.fstat(f.fileno())
                ti.size = fst.st_size
                tar.addfile(ti, f)
        elif stat.S_ISLNK(st.st_mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=tmp)
            tar.addfile(ti)
        elif stat.S_ISFIFO(st.st_mode):
            ti.type = tarfile.FIFOTYPE
            tar.addfile(ti)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            tar.addfile(ti)
    finally:
        os.close(tmp)


def _refuse_dir_non_dir_swaps(dfd: int, where: str, fileobj: BinaryIO) -> None:
    """noOverwriteDirNonDir: no entry of the tar may replace a directory with a non-directory or the reverse
    (dockerd's words and status); reads the tar once, then rewinds it for the real extraction."""
    start = fileobj.tell()
    with tarfile.open(fileobj=cast(IO[bytes], fileobj), mode="r|*") as tar:
        for member in tar:
            parent, name = _split_container_path(member.name)
            if not name:
                continue
            try:
                pfd = open_in_root(dfd, parent, os.O_PATH | os.O_DIRECTORY)
            except OSError:
                continue  # its parent doesn't exist yet, so neither does it
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            finally:
                os.close(pfd)
            dest = "/" + os.path.normpath(f"{where}/{member.name}").lstrip("/")  # normpath keeps a leading "//"
            if stat.S_ISDIR(st.st_mode) and not member.isdir():
                raise EngineError(f'cannot overwrite directory "{dest}" with non-directory "{where}"')
            if not stat.S_ISDIR(st.st_mode) and member.isdir():
                raise EngineError(f'cannot overwrite non-directory "{dest}" with directory "{where}"')
    fileobj.seek(start)


def archive_put(root: Path, path: str, fileobj: BinaryIO, *, limits: Limits | None = None,
                no_overwrite_dir_non_dir: bool = False, owner: tuple[int, int] | None = None) -> None:
    """`docker cp - CONTAINER:path`: extracts a tar into directory `path`, resolved inside `root` (symlinks
    included); entries are created by the layer applier, so none can leave that directory. With
    `no_overwrite_dir_non_dir` `fileobj` must be seekable. `owner`: every entry's uid and gid instead of the archive's
    (`docker cp -a` into a container with a user)."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            dfd = open_in_root(root_fd, "/" + path.lstrip("/"), os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                raise InvalidArgument(f"extraction point is not a directory: {path}") from None
            raise _not_found(path) from None
        try:
            if no_overwrite_dir_non_dir:
                _refuse_dir_non_dir_swaps(dfd, "/" + path.strip("/"), fileobj)
            apply_layer(fileobj, dfd, limits=limits, whiteouts=False, owner=owner)
        finally:
            os.close(dfd)
    finally:
        os.close(root_fd)
