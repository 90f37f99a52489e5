"""The Images screen against a real engine: pull by name with a progress bar per layer, `docker history` as a
table, remove (an image a container uses is refused with Docker's message, then force-removed), remove."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import docker.errors
import pytest
from textual.widgets import DataTable

from app.screens.resources import HistoryScreen, ImagesScreen, NameScreen
from app.tui import PortsideApp
from tests.testbed.registry import Registry
from tests.tui.conftest import Engine, confirm_yes, cursor_to, open_screen, row_keys, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.tui, pytest.mark.timeout(180)]


@pytest.mark.every_engine
async def test_pull_history_and_remove_images(engine: Engine, registry: Registry, tmp_config_home: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    ref = f"{registry.host}/testbed/layers:latest"
    with contextlib.suppress(docker.errors.NotFound):
        engine.api.remove_image(ref)
    # an image with one tag that a container uses: only a forced remove takes the tag away
    base = engine.run(["true"], f"pst-base-{tag}")
    engine.api.wait(base, timeout=30)
    engine.api.commit(base, repository=f"pst-img-{tag}", tag="v1")
    # Podman lists what it commits under the name in full (as Docker Hub's), Docker as it was given
    mine = f"{'docker.io/library/' if engine.kind == 'podman' else ''}pst-img-{tag}:v1"
    engine.api.remove_container(base)
    user = engine.api.create_container(mine, ["true"], name=f"pst-user-{tag}")["Id"]
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(pilot, lambda: app.connected, what="connection")
            images = await open_screen(pilot, "I", ImagesScreen)
            await open_screen(pilot, "p", NameScreen)
            await pilot.press(*ref, "enter")
            await wait_for(pilot, lambda: ref in row_keys(images), timeout=60, what="the pulled image listed")
            await wait_for(pilot, lambda: any(n.message == f"Pulled {ref}" for n in app._notifications),
                           what="the pull reported")
            layers = engine.api.inspect_image(ref)["RootFS"]["Layers"]
            pull = images.last_pull
            # one bar per layer; Podman reports the download of the image's config blob too
            extra = 1 if engine.kind == "podman" else 0
            assert len(layers) > 2 and len(pull.bars) == len(layers) + extra
            assert all(bar.total and bar.progress == bar.total for bar in pull.bars.values())
            # history: one row per `docker history` line
            await cursor_to(pilot, images, ref)
            hist = await open_screen(pilot, "h", HistoryScreen)
            assert hist.query_one(DataTable).row_count == len(engine.api.history(ref))
            await pilot.press("escape")
            # an image in use: d is refused with the engine's message, D removes the tag
            await cursor_to(pilot, images, mine)
            await confirm_yes(pilot, "d")
            await wait_for(pilot, lambda: any(n.title == f"Remove {mine}" and n.severity == "error"
                                              for n in app._notifications), what="the refusal")
            assert engine.api.images(name=mine.rsplit(":", 1)[0])
            await confirm_yes(pilot, "D")
            await wait_for(pilot, lambda: mine not in row_keys(images), what="the tag gone from the list")
            assert not engine.api.images(name=mine.rsplit(":", 1)[0])
            # and a plain remove
            await cursor_to(pilot, images, ref)
            await confirm_yes(pilot, "d")
            await wait_for(pilot, lambda: ref not in row_keys(images), what="the pulled image removed")
        with pytest.raises(docker.errors.NotFound):
            engine.api.inspect_image(ref)
    finally:
        with contextlib.suppress(docker.errors.NotFound):  # Podman's forced image remove takes its containers too
            engine.api.remove_container(user, force=True)
        for leftover in (mine, ref):
            with contextlib.suppress(docker.errors.APIError):
                engine.api.remove_image(leftover, force=True)


@pytest.mark.every_engine
async def test_run_from_the_images_screen(engine: Engine, tmp_config_home: Any) -> None:
    """r on an image goes back to the containers and runs it Kitematic's way: the new container is selected,
    running that image with its exposed port published."""
    from app.screens.main import MainScreen

    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.connected, what="connection")
        main = app.screen
        assert isinstance(main, MainScreen)
        images = await open_screen(pilot, "I", ImagesScreen)
        await cursor_to(pilot, images, engine.nginx)
        await pilot.press("r")
        cid = await wait_for(pilot, lambda: app.screen is main and main.selected_id and any(
            c["Id"] == main.selected_id and c["Image"] == engine.nginx for c in engine.api.containers())
            and main.selected_id, timeout=60, what="the new nginx container selected and running")
        data = engine.api.inspect_container(cid)
        assert engine.publishes_all(data, "80/tcp")
        assert data["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        engine.api.remove_container(cid, force=True)
