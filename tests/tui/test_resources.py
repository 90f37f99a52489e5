"""Pilot flows of the Images, Networks, Volumes and Events screens against a real engine."""

from __future__ import annotations

import uuid

import pytest

from app.screens.resources import EventsScreen, ImagesScreen, NameScreen, NetworksScreen, VolumesScreen
from app.tui import PortsideApp
from tests.tui.conftest import Engine, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.tui, pytest.mark.timeout(120)]


async def test_images_networks_volumes_and_events(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """I lists the pulled images; O creates then removes a network; V creates a volume; E shows events live."""
    app = PortsideApp(host=engine.url, config=engine.config())
    tag = uuid.uuid4().hex[:6]
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected, what="connection")
        await pilot.press("I")
        images = await wait_for(pilot, lambda: isinstance(app.screen, ImagesScreen) and app.screen)
        await wait_for(pilot, lambda: images.table.row_count > 0, what="images listed")
        keys = [str(k.value) for k in images.table.rows]
        assert engine.busybox in keys
        await pilot.press("escape", "O")
        nets = await wait_for(pilot, lambda: isinstance(app.screen, NetworksScreen) and app.screen)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NameScreen))
        await pilot.press(*f"pstnet{tag}", "enter")
        await wait_for(pilot, lambda: f"pstnet{tag}" in [str(k.value) for k in nets.table.rows], what="new network")
        assert engine.api.inspect_network(f"pstnet{tag}")["Name"] == f"pstnet{tag}"
        nets.table.move_cursor(row=[str(k.value) for k in nets.table.rows].index(f"pstnet{tag}"))
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: f"pstnet{tag}" not in [str(k.value) for k in nets.table.rows], what="removed")
        await pilot.press("escape", "V")
        vols = await wait_for(pilot, lambda: isinstance(app.screen, VolumesScreen) and app.screen)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NameScreen))
        await pilot.press(*f"pstvol{tag}", "enter")
        await wait_for(pilot, lambda: f"pstvol{tag}" in [str(k.value) for k in vols.table.rows], what="new volume")
        await pilot.press("escape", "E")
        events = await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen) and app.screen)
        engine.api.remove_volume(f"pstvol{tag}")
        from textual.widgets import RichLog

        log = events.query_one(RichLog)
        await wait_for(pilot, lambda: any(f"pstvol{tag}" in line.text for line in log.lines), what="the event")
