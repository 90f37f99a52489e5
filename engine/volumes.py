"""Named volumes with Docker's `local` driver: a directory per volume under `<data-root>/volumes`.

A volume is `volumes/<name>/_data` (what containers mount) plus `volumes/<name>/meta.json` (driver, labels,
options, creation time), written atomically. Anonymous volumes (an image's VOLUME entries, `-v /path`) are named
by a fresh 64-hex id and carry the label `com.docker.volume.anonymous`, as Docker 23+ marks them.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import ids
from engine.crashpoints import crashpoint
from engine.errors import Conflict, InvalidArgument, NotFound
from engine.store import read_json, write_json

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")  # \Z: "$" would let a trailing newline in
_TRASH = ".rm-"  # a volume being removed is renamed to this prefix first


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def dir_size(path: Path) -> int:
    """Bytes used by the files under `path` (hard links once), like `du -sb` without leaving the tree."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size if not os.path.isdir(os.path.join(root, name)) else 0
    return total


class VolumeStore:
    """The local volume driver: create, inspect, list, remove, prune, and the first-mount copy-up."""

    def __init__(self, root: Path, users: Callable[[str], list[str]] | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # Which containers use a volume (set by the daemon once containers exist), to refuse removing it.
        self.users: Callable[[str], list[str]] = users or (lambda name: [])
        self._lock = threading.Lock()

    # -- records ------------------------------------------------------------------------------------------------
    def _meta_path(self, name: str) -> Path:
        return self.root / name / "meta.json"

    def _shape(self, name: str, meta: dict[str, Any], size: bool = False) -> dict[str, Any]:
        vol = {
            "Name": name,
            "Driver": meta.get("Driver", "local"),
            "Mountpoint": str(self.root / name / "_data"),
            "CreatedAt": meta.get("CreatedAt", ""),
            "Labels": meta.get("Labels") or {},
            "Scope": "local",
            "Options": meta.get("Options") or None,
        }
        if size:
            vol["UsageData"] = {"Size": dir_size(self.root / name / "_data"), "RefCount": len(self.users(name))}
        return vol

    def exists(self, name: str) -> bool:
        return self._meta_path(name).is_file()

    def create(
        self,
        name: str = "",
        driver: str = "local",
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        anonymous: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """The volume `name` (made now when new); returns (volume, created). An existing name is no error."""
        if driver not in ("", "local"):
            raise NotFound(f"error looking up volume plugin {driver}: plugin \"{driver}\" not found")
        if not name:
            name = ids.new_id()
            anonymous = True
        if len(name) == 1 and name.isalnum():
            raise InvalidArgument(
                f"create {name}: volume name is too short, names should be at least two alphanumeric characters"
            )
        if not _NAME.match(name):
            raise InvalidArgument(
                f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
            )
        for key in options or {}:
            if key not in ("type", "device", "o", "size"):
                raise InvalidArgument(f"create {name}: invalid option key: {key!r}")
        with self._lock:
            meta = read_json(self._meta_path(name))
            if meta is not None:
                return self._shape(name, meta), False
            labels = dict(labels or {})
            if anonymous:
                labels.setdefault(ANONYMOUS_LABEL, "")
            (self.root / name / "_data").mkdir(parents=True, exist_ok=True)
            crashpoint("volume.create.record")
            meta = {"Driver": "local", "Labels": labels, "Options": dict(options or {}),
                    "CreatedAt": _rfc3339(time.time()), "Populated": False}
            write_json(self._meta_path(name), meta)
        return self._shape(name, meta), True

    def inspect(self, name: str) -> dict[str, Any]:
        meta = read_json(self._meta_path(name)) if _NAME.match(name) else None
        if meta is None:
            raise NotFound(f"get {name}: no such volume")
        return self._shape(name, meta)

    def list(self, size: bool = False) -> builtins.list[dict[str, Any]]:
        out = []
        for d in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if d.name.startswith("."):
                continue  # a removal's trash (no volume name starts with a dot)
            meta = read_json(d / "meta.json")
            if meta is not None:
                out.append(self._shape(d.name, meta, size=size))
        return out

    def remove(self, name: str, force: bool = False) -> None:
        with self._lock:
            meta = read_json(self._meta_path(name)) if _NAME.match(name) else None
            if meta is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = self.users(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            # One rename takes the whole volume out of sight, so a crash mid-delete leaves a trash directory
            # (removed at the next start, see recover), never a half volume nor data without its record.
            trash = self.root / f"{_TRASH}{name}-{os.urandom(4).hex()}"
            os.rename(self.root / name, trash)
            crashpoint("volume.rm.record")
            shutil.rmtree(trash, ignore_errors=True)

    def recover(self) -> builtins.list[tuple[str, str]]:
        """At start-up, before anything uses volumes: finish removals a crash interrupted, drop directories a
        create left without a record, and write the record again for data whose record a power cut emptied.
        Returns (name, what was done) pairs."""
        out: builtins.list[tuple[str, str]] = []
        for d in sorted(self.root.iterdir()):
            if not d.is_dir():
                continue
            if d.name.startswith(_TRASH):
                shutil.rmtree(d, ignore_errors=True)
                out.append((d.name.removeprefix(_TRASH).rsplit("-", 1)[0], "finished its interrupted removal"))
                continue
            meta_path = d / "meta.json"
            if read_json(meta_path) is not None or d.name.startswith("."):
                continue
            data = d / "_data"
            has_data = data.is_dir() and any(data.iterdir())
            if not meta_path.exists() and not has_data:
                shutil.rmtree(d, ignore_errors=True)  # a create killed before its record: nothing was in it yet
                out.append((d.name, "dropped the directory a create left without its record"))
                continue
            data.mkdir(exist_ok=True)
            created = _rfc3339(data.stat().st_mtime)
            labels = {ANONYMOUS_LABEL: ""} if re.fullmatch(r"[0-9a-f]{64}", d.name) else {}
            write_json(meta_path, {"Driver": "local", "Labels": labels, "Options": {}, "CreatedAt": created,
                                   "Populated": True})
            out.append((d.name, "repaired its unreadable record (labels and options are lost)"))
        return out

    def populate(self, name: str, source: Path) -> None:
        """Docker's copy-up: the first mount of an empty volume gets the image's content at the mount path."""
        with self._lock:
            meta = read_json(self._meta_path(name))
            if meta is None or meta.get("Populated"):
                return
            data = self.root / name / "_data"
            if source.is_dir() and not any(data.iterdir()):
                # cp -a keeps owners, modes, times, xattrs and links, which Docker's copy-up keeps too.
                subprocess.run(["cp", "-a", "--", f"{source}/.", f"{data}/"], check=False, capture_output=True)
                st = source.stat()
                os.chown(data, st.st_uid, st.st_gid)
                os.chmod(data, st.st_mode & 0o7777)
            meta["Populated"] = True
            write_json(self._meta_path(name), meta)

    def mark_populated(self, name: str) -> None:
        with self._lock:
            meta = read_json(self._meta_path(name))
            if meta is not None and not meta.get("Populated"):
                meta["Populated"] = True
                write_json(self._meta_path(name), meta)

    def prune(
        self, all_volumes: bool, labels: builtins.list[str], not_labels: builtins.list[str]
    ) -> tuple[builtins.list[str], int]:
        """Remove unused volumes (only anonymous ones unless `all_volumes`, as API >= 1.42 does)."""
        deleted, reclaimed = [], 0
        for vol in self.list():
            vl = vol["Labels"] or {}
            if not all_volumes and ANONYMOUS_LABEL not in vl:
                continue
            if not _labels_match(vl, labels) or (not_labels and _labels_match_any(vl, not_labels)):
                continue
            if self.users(vol["Name"]):
                continue
            size = dir_size(Path(vol["Mountpoint"]))
            try:
                self.remove(vol["Name"])
            except (Conflict, NotFound):
                continue
            deleted.append(vol["Name"])
            reclaimed += size
        return deleted, reclaimed

    async def aprune(
        self, all_volumes: bool, labels: builtins.list[str], not_labels: builtins.list[str]
    ) -> tuple[builtins.list[str], int]:
        return await asyncio.to_thread(self.prune, all_volumes, labels, not_labels)


def _label_ok(labels: dict[str, str], want: str) -> bool:
    k, sep, v = want.partition("=")
    return k in labels and (not sep or labels[k] == v)


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    return all(_label_ok(labels, w) for w in wanted)


def _labels_match_any(labels: dict[str, str], wanted: list[str]) -> bool:
    return any(_label_ok(labels, w) for w in wanted)
