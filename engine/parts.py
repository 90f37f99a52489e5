"""Starting and stopping the parts the daemon wires: runtime, images, networks, then the containers on them."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.daemon import Daemon

log = logging.getLogger("portside.daemon")


def nft_table_for(bridge: str) -> str:
    """The default bridge keeps the `portside` table; another bridge name (tests, second engines) gets its own."""
    return "portside" if bridge == "portside0" else bridge.replace("-", "_")


def _optional(module: str, name: str) -> Any:
    """A part's entry point, or None while that part is not in this tree yet."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


async def start(daemon: Daemon) -> None:
    from engine.containers.manager import ContainerManager
    from engine.containers.runtime import make_runtime

    cfg = daemon.config
    daemon.runtime = make_runtime(daemon)
    containers = ContainerManager(daemon)
    daemon.containers = containers
    daemon.volumes.users = containers.volume_users
    ImageService = _optional("engine.images.service", "ImageService")
    if ImageService is not None:
        daemon.images = await asyncio.to_thread(
            lambda: ImageService(cfg.data_root / "image", insecure_registries=list(cfg.insecure_registries),
                                 registry_mirrors=list(cfg.registry_mirrors), in_use=containers.image_users,
                                 # Docker's certs.d places, plus one inside the data root (per-engine CAs)
                                 certs_dirs=(Path("/etc/portside/certs.d"), Path("/etc/docker/certs.d"),
                                             cfg.data_root / "certs.d"))
        )
    await importlib.import_module("engine.recovery").recover(daemon)  # what a crash left, before anything uses it
    NetworkService = _optional("engine.net", "NetworkService")
    alive: list[str] = []
    if daemon.runtime is not None:
        for rec in containers.store.all():
            if await daemon.runtime.alive(rec["Id"]):
                alive.append(rec["Id"])
    if NetworkService is not None:
        svc = NetworkService(cfg.data_root, cfg.exec_root, default_bridge=cfg.bridge,
                             nft_table=nft_table_for(cfg.bridge), enable_ip_forward=cfg.ip_forward,
                             host_id=daemon.engine_id or None)
        await asyncio.to_thread(svc.start, alive)
        daemon.networks = svc
    await containers.restore()
    if daemon.images is not None:
        from engine.build.service import BuildService

        daemon.builder = BuildService(daemon.images, containers, daemon.events, cfg.data_root / "build")
        await asyncio.to_thread(daemon.builder.sweep)


async def stop(daemon: Daemon) -> None:
    if daemon.containers is not None:
        await daemon.containers.close()
    if daemon.networks is not None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(daemon.networks.close)
    if daemon.images is not None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(daemon.images.close)
    if daemon.runtime is not None and hasattr(daemon.runtime, "close"):
        with contextlib.suppress(Exception):
            await daemon.runtime.close()


async def image_usage(daemon: Daemon) -> tuple[list[dict[str, Any]], int]:
    svc = daemon.images

    def build() -> tuple[list[dict[str, Any]], int]:
        out, total = [], 0
        for rec in svc.list():
            s = rec.summary()
            s["Containers"] = len(daemon.containers.image_users(rec.id)) if daemon.containers else 0
            s["SharedSize"] = 0
            out.append(s)
            total += int(s.get("Size") or 0)
        return out, total

    return await asyncio.to_thread(build)
