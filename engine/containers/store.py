"""Container records: one atomic JSON file per container under `<data-root>/containers/<id>/`.

The record is Docker's inspect shape plus a private `_portside` section (volumes made for it, the original
image reference, manual-stop flag for `unless-stopped`). Lookup accepts a full id, a name, or a unique id prefix,
as dockerd does.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import Conflict, InvalidArgument, NotFound
from engine.store import read_json, remove_stale_temps, write_json

RECORD = "config.v2.json"
_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")  # \Z: "$" would let a trailing newline in


def check_name(name: str) -> str:
    """A valid container name with its leading slash."""
    if not _NAME.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


class ContainerStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._by_id: dict[str, dict[str, Any]] = {}
        self._names: dict[str, str] = {}  # "/name" -> id
        for d in self.root.iterdir():
            if not d.is_dir():
                continue
            remove_stale_temps(d)
            rec = read_json(d / RECORD)
            if rec is None or rec.get("Id") != d.name:
                continue
            self._by_id[rec["Id"]] = rec
            self._names[rec["Name"]] = rec["Id"]

    def dir(self, cid: str) -> Path:
        return self.root / cid

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._by_id.values())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._by_id)

    def find(self, ref: str) -> dict[str, Any] | None:
        with self._lock:
            if ref in self._by_id:
                return self._by_id[ref]
            cid = self._names.get(ref if ref.startswith("/") else "/" + ref)
            if cid is not None:
                return self._by_id[cid]
            if not ref or not re.fullmatch(r"[0-9a-f]+", ref):
                return None
            hits = [c for c in self._by_id if c.startswith(ref)]
            if len(hits) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
            return self._by_id[hits[0]] if hits else None

    def get(self, ref: str) -> dict[str, Any]:
        rec = self.find(ref)
        if rec is None:
            raise NotFound(f"No such container: {ref}")
        return rec

    def reserve_name(self, name: str, cid: str) -> None:
        with self._lock:
            other = self._names.get(name)
            if other is not None and other != cid:
                raise Conflict(
                    f'Conflict. The container name "{name}" is already in use by container "{other}". You have to '
                    "remove (or rename) that container to be able to reuse that name."
                )
            self._names[name] = cid

    def release_name(self, name: str, cid: str) -> None:
        with self._lock:
            if self._names.get(name) == cid:
                del self._names[name]

    def name_taken(self, name: str) -> bool:
        with self._lock:
            return name in self._names

    def save(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self._by_id[rec["Id"]] = rec
            self._names[rec["Name"]] = rec["Id"]
            write_json(self.dir(rec["Id"]) / RECORD, rec)

    def delete(self, cid: str) -> None:
        with self._lock:
            rec = self._by_id.pop(cid, None)
            if rec is not None:
                self.release_name(rec["Name"], cid)
            # The record goes first: a crash after it leaves an orphan directory, never a half container.
            (self.dir(cid) / RECORD).unlink(missing_ok=True)
            shutil.rmtree(self.dir(cid), ignore_errors=True)
