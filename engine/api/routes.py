"""Every route of the Engine API, module by module."""

from __future__ import annotations

from aiohttp import web


def register(app: web.Application) -> None:
    from engine.api import (
        build,
        container_fs,
        containers,
        distribution,
        exec,
        images,
        kube,
        networks,
        swarm,
        system,
        volumes,
    )

    for module in (system, volumes, containers, container_fs, exec, build, images, distribution, networks, swarm,
                   kube):
        module.register(app)
