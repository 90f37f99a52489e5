"""What the container manager and the runtime adapter need from the engine around them, as narrow Protocols.

daemon.py (the composition root) satisfies them; a test can hand in a small object of its own instead. They sit
here, below the daemon, so engine/containers imports nothing above it (tests/test_layering.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from engine.events import EventBus
from engine.volumes import VolumeStore


class HostConfig(Protocol):
    """The daemon's settings the containers use: where state lives and the cgroup parent."""

    @property
    def data_root(self) -> Path: ...
    @property
    def exec_root(self) -> Path: ...
    @property
    def cgroup_parent(self) -> str: ...


class RuntimeHost(Protocol):
    """What make_runtime / ExecRuntime read: the settings only."""

    @property
    def config(self) -> HostConfig: ...


class ContainerHost(Protocol):
    """The collaborators of ContainerManager: settings, the event bus, the image, network and volume services
    and the runtime (the services are typed where the daemon types them)."""

    @property
    def config(self) -> HostConfig: ...
    @property
    def events(self) -> EventBus: ...
    @property
    def images(self) -> Any: ...
    @property
    def networks(self) -> Any: ...
    @property
    def volumes(self) -> VolumeStore: ...
    @property
    def runtime(self) -> Any: ...
