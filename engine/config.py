"""The engine's configuration (dockerd's flags and daemon.json keys): a small shared module, so the API and the
parts can be typed against it without importing the daemon that wires them (daemon.py re-exports it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidArgument

DEFAULT_DATA_ROOT = Path("/var/lib/portside")
DEFAULT_EXEC_ROOT = Path("/run/portside")
DEFAULT_HOST = "unix:///run/portside.sock"

# daemon.json keys we take, mapped to DaemonConfig fields (dockerd's names).
_FILE_KEYS = {
    "data-root": "data_root", "exec-root": "exec_root", "hosts": "hosts", "pidfile": "pidfile",
    "insecure-registries": "insecure_registries", "registry-mirrors": "registry_mirrors", "log-level": "log_level",
    "tlsverify": "tlsverify", "tlscacert": "tlscacert", "tlscert": "tlscert", "tlskey": "tlskey", "group": "group",
    "bridge": "bridge", "ip-forward": "ip_forward", "cgroup-parent": "cgroup_parent",
}


@dataclass
class DaemonConfig:
    data_root: Path = DEFAULT_DATA_ROOT
    exec_root: Path = DEFAULT_EXEC_ROOT
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_HOST])
    pidfile: Path | None = None
    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)
    log_level: str = "info"
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    group: str = "docker"
    bridge: str = "portside0"  # dockerd's -b/--bridge: the default bridge's name
    ip_forward: bool = True  # dockerd's --ip-forward
    cgroup_parent: str = "portside"  # dockerd's --cgroup-parent: containers' cgroups go below it

    @classmethod
    def merge_file(cls, cfg: DaemonConfig, path: Path, flags_given: set[str]) -> DaemonConfig:
        """Fold a daemon.json into `cfg`; a directive both in the file and on the command line is an error."""
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise InvalidArgument(f"unable to configure the Docker daemon with file {path}: {e}") from None
        except ValueError as e:
            raise InvalidArgument(f"unable to configure the Docker daemon with file {path}: {e}") from None
        unknown = sorted(k for k in data if k not in _FILE_KEYS)
        if unknown:
            raise InvalidArgument(
                f"the following directives don't match any configuration option: {', '.join(unknown)}"
            )
        both = sorted(k for k in data if _FILE_KEYS[k] in flags_given)
        if both:
            raise InvalidArgument(
                "the following directives are specified both as a flag and in the configuration file: "
                + ", ".join(f"{k}: (from flag: {getattr(cfg, _FILE_KEYS[k])}, from file: {data[k]})" for k in both)
            )
        for k, v in data.items():
            attr = _FILE_KEYS[k]
            if attr in ("data_root", "exec_root", "pidfile"):
                v = Path(v)
            setattr(cfg, attr, v)
        return cfg
