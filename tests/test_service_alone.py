"""A service built alone, with only the collaborators its Protocol names (issue 18): the container manager over a
real image service, volume store and event bus, without a Daemon, an API server, networks or a runtime."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.containers.host import ContainerHost
from engine.containers.manager import ContainerManager
from engine.errors import InvalidArgument
from engine.events import EventBus
from engine.images.service import ImageService
from engine.volumes import VolumeStore
from tests.conftest import TestBed


def _layout_tar(layout: Path) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    buf.seek(0)
    return buf


def test_container_manager_stands_alone(tmp_path: Path, testbed: TestBed) -> None:
    images = ImageService(tmp_path / "image")
    loaded = images.load(_layout_tar(testbed.layouts["busybox"]))
    assert loaded, "the test bed's busybox layout loads into a bare image service"
    config = SimpleNamespace(data_root=tmp_path, exec_root=tmp_path / "run", cgroup_parent="portside-test-alone")
    host: ContainerHost = SimpleNamespace(  # type: ignore[assignment]
        config=config, events=EventBus(), images=images, networks=None, volumes=VolumeStore(tmp_path / "volumes"),
        runtime=None)
    manager = ContainerManager(host)
    image = images.list()[0]
    ref = image.id

    async def scenario() -> tuple[str, dict]:  # type: ignore[type-arg]
        # a value dockerd refuses is refused here too, before anything is made
        with pytest.raises(InvalidArgument, match="range for oom score adj"):
            await manager.create({"Image": ref, "HostConfig": {"OomScoreAdj": 5000}}, "pst-alone-bad")
        assert manager.store.all() == []
        cid, _ = await manager.create({"Image": ref, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}},
                                             "pst-alone")
        return cid, manager.get("pst-alone")

    cid, rec = asyncio.run(scenario())
    assert rec["Id"] == cid and rec["Name"] == "/pst-alone"
    assert rec["Config"]["Cmd"] == ["true"] and rec["Image"] == ref
    assert rec["State"]["Status"] == "created"
    # the record is on disk where a daemon would find it, and the event bus heard the create
    assert (tmp_path / "containers" / cid).is_dir()
    created = [e for e in host.events.history(None, None) if e["Action"] == "create" and e["Actor"]["ID"] == cid]
    assert created and created[0]["Actor"]["Attributes"]["name"] == "pst-alone"
