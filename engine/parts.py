"""Starting and stopping the parts the daemon wires (images, networks, runtime, containers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.daemon import Daemon


async def start(daemon: Daemon) -> None:
    return None


async def stop(daemon: Daemon) -> None:
    return None


async def image_usage(daemon: Daemon) -> tuple[list[dict[str, Any]], int]:
    return [], 0
