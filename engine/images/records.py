"""Image records and their Docker-shaped views (inspect, list summary, history)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "",
    "Domainname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": None,
    "Cmd": None,
    "Image": "",
    "Volumes": None,
    "WorkingDir": "",
    "Entrypoint": None,
    "OnBuild": None,
    "Labels": None,
}


def parse_time(s: str | None) -> float:
    """Unix seconds of an RFC 3339 timestamp (with nanoseconds, as Go writes them); 0 when absent."""
    if not s:
        return 0.0
    try:
        main, _, frac = s.rstrip("Z").partition(".")
        tz = ""
        for sep in ("+", "-"):
            if sep in frac:
                frac, _, rest = frac.partition(sep)
                tz = sep + rest
        if not frac and ("+" in main[10:] or main[10:].count("-")):
            idx = max(main.rfind("+"), main.rfind("-"))
            if idx > 10:
                main, tz = main[:idx], main[idx:]
        t = _dt.datetime.fromisoformat(main + (tz or "+00:00"))
        return t.timestamp() + (float("0." + frac[:9]) if frac else 0.0)
    except ValueError:
        return 0.0


def format_time(ts: float) -> str:
    d = _dt.datetime.fromtimestamp(int(ts), _dt.UTC)
    ns = round((ts - int(ts)) * 1e9)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ns:09d}".rstrip("0") if ns else "") + "Z"


@dataclass
class ImageRecord:
    id: str  # sha256 of the config blob
    config: dict[str, Any]  # the OCI/Docker image config
    manifest_digest: str
    repo_tags: list[str] = field(default_factory=list)  # familiar form: nginx:latest
    repo_digests: list[str] = field(default_factory=list)  # nginx@sha256:...
    size: int = 0
    chain: list[str] = field(default_factory=list)  # chain ids, bottom first
    parent: str = ""  # the image this one was committed from ("" for pulled, loaded, imported images)

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def created(self) -> str:
        return str(self.config.get("created") or "0001-01-01T00:00:00Z")

    @property
    def created_unix(self) -> int:
        return int(parse_time(self.config.get("created")))

    @property
    def container_config(self) -> dict[str, Any]:
        """The image's default run config (`config` of the image config) in Docker's API shape."""
        out = dict(_CONFIG_DEFAULTS)
        out.update(self.config.get("config") or {})
        return out

    @property
    def dangling(self) -> bool:
        return not self.repo_tags

    def inspect(self, graph_driver: dict[str, Any] | None = None) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {
            "Id": self.id,
            "RepoTags": list(self.repo_tags),
            "RepoDigests": list(self.repo_digests),
            "Parent": self.parent,
            "Comment": c.get("comment", "") or "",
            "Created": self.created,
            "DockerVersion": c.get("docker_version", "") or "",
            "Author": c.get("author", "") or "",
            "Config": self.container_config,
            "Architecture": c.get("architecture", "") or "",
            "Os": c.get("os", "") or "",
            "Size": self.size,
            "VirtualSize": self.size,
            "GraphDriver": graph_driver or {"Name": "overlay2", "Data": None},
            "RootFS": {"Type": "layers", "Layers": self.diff_ids},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }
        if c.get("variant"):
            out["Variant"] = c["variant"]
        if c.get("os.version"):
            out["OsVersion"] = c["os.version"]
        return out

    def summary(self) -> dict[str, Any]:
        """One entry of GET /images/json."""
        return {
            "Id": self.id,
            "ParentId": self.parent,
            "RepoTags": list(self.repo_tags),
            "RepoDigests": list(self.repo_digests),
            "Created": self.created_unix,
            "Size": self.size,
            "SharedSize": -1,
            "VirtualSize": self.size,
            "Labels": (self.config.get("config") or {}).get("Labels") or {},
            "Containers": -1,
        }

    def history(self) -> list[dict[str, Any]]:
        """GET /images/{name}/history: newest first; layer-making steps carry the layer's id for the top one."""
        hist = list(self.config.get("history") or [])
        if not hist:
            hist = [{"created": self.config.get("created"), "created_by": ""} for _ in self.diff_ids] or [
                {"created": self.config.get("created"), "created_by": ""}
            ]
        out = []
        layer_index = 0
        for h in hist:
            empty = bool(h.get("empty_layer"))
            entry = {
                "Id": "<missing>",
                "Created": int(parse_time(h.get("created"))),
                "CreatedBy": h.get("created_by", "") or "",
                "Tags": None,
                "Size": 0,
                "Comment": h.get("comment", "") or "",
            }
            if not empty:
                entry["_layer"] = layer_index
                layer_index += 1
            out.append(entry)
        out.reverse()
        if out:
            out[0]["Id"] = self.id
            out[0]["Tags"] = list(self.repo_tags) or None
        return out
