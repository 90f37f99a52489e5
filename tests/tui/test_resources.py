"""Pilot flows of the Images, Networks, Volumes and Events screens against a real engine."""

from __future__ import annotations

import contextlib
import uuid

import pytest

from app.screens.resources import EventsScreen, ImagesScreen, NameScreen, NetworksScreen, VolumesScreen
from app.tui import PortsideApp
from tests.tui.conftest import Engine, confirm_yes, cursor_to, open_screen, row_keys, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.tui, pytest.mark.timeout(120)]


@pytest.mark.every_engine
async def test_images_networks_volumes_and_events(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """I lists the pulled images; O creates then removes a network; V creates a volume; E shows events live."""
    app = PortsideApp(host=engine.url, config=engine.config())
    tag = uuid.uuid4().hex[:6]
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected, what="connection")
        images = await open_screen(pilot, "I", ImagesScreen)
        await wait_for(pilot, lambda: images.table.row_count > 0, what="images listed")
        keys = row_keys(images)
        assert engine.busybox in keys
        await pilot.press("escape")
        nets = await open_screen(pilot, "O", NetworksScreen)
        await open_screen(pilot, "n", NameScreen)
        await pilot.press(*f"pstnet{tag}", "enter")
        await wait_for(pilot, lambda: f"pstnet{tag}" in row_keys(nets), what="new network")
        assert engine.api.inspect_network(f"pstnet{tag}")["Name"] == f"pstnet{tag}"
        await cursor_to(pilot, nets, f"pstnet{tag}")
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: f"pstnet{tag}" not in row_keys(nets), what="removed")
        await pilot.press("escape")
        vols = await open_screen(pilot, "V", VolumesScreen)
        await open_screen(pilot, "n", NameScreen)
        await pilot.press(*f"pstvol{tag}", "enter")
        await wait_for(pilot, lambda: f"pstvol{tag}" in row_keys(vols), what="new volume")
        await pilot.press("escape")
        events = await open_screen(pilot, "E", EventsScreen)
        engine.api.remove_volume(f"pstvol{tag}")
        from textual.widgets import RichLog

        log = events.query_one(RichLog)
        await wait_for(pilot, lambda: any(f"pstvol{tag}" in line.text for line in log.lines), what="the event")


@pytest.mark.every_engine
async def test_events_show_the_recent_past_then_live_and_volumes_inspect_and_remove(engine: Engine,
                                                                                     tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """E opens with what just happened (a volume created before it opened, once, under its whole name), then
    adds what happens next; on V, i shows a volume's inspect and d removes it from the engine."""
    import docker.errors
    from textual.widgets import RichLog

    from app.screens.resources import JsonScreen
    from app.widgets.json_tree import JsonTree

    tag = uuid.uuid4().hex[:6]
    before, after = f"pst-before-{tag}", f"pst-after-{tag}"
    engine.api.create_volume(before)
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: app.connected, what="connection")
            events = await open_screen(pilot, "E", EventsScreen)
            log = events.query_one(RichLog)

            def lines() -> list[str]:
                return [line.text for line in log.lines]

            await wait_for(pilot, lambda: any(f"volume create {before}" in t for t in lines()), what="the past event")
            engine.api.create_volume(after)
            await wait_for(pilot, lambda: any(f"volume create {after}" in t for t in lines()), what="the live event")
            assert sum(f"volume create {before}" in t for t in lines()) == 1
            await pilot.press("escape")
            vols = await open_screen(pilot, "V", VolumesScreen)
            await cursor_to(pilot, vols, after)
            shown = await open_screen(pilot, "i", JsonScreen)
            assert shown.data["Name"] == after and shown.query_one(JsonTree)
            await pilot.press("escape")
            await confirm_yes(pilot, "d")
            await wait_for(pilot, lambda: after not in row_keys(vols), what="removed")
        with pytest.raises(docker.errors.NotFound):
            engine.api.inspect_volume(after)
    finally:
        for v in (before, after):
            with contextlib.suppress(Exception):
                engine.api.remove_volume(v)


@pytest.mark.every_engine
async def test_prune_volumes_and_networks(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """P on Volumes removes an anonymous volume no container uses (and a named one only where the engine's API is
    older than 1.42, as the question says); P on Networks removes an unused user network. Checked in the engine."""
    import docker.errors
    from docker.utils import version_gte

    from app.screens.confirm import ConfirmScreen

    tag = uuid.uuid4().hex[:6]
    named, net = f"pst-keep-{tag}", f"pstprune{tag}"
    engine.api.create_volume(named)
    c = engine.api.create_container(engine.busybox, ["true"], volumes=["/x"], name=f"pst-anon-{tag}",
                                    host_config=engine.api.create_host_config(network_mode="none"))["Id"]
    anon = next(m["Name"] for m in engine.api.inspect_container(c)["Mounts"] if m["Destination"] == "/x")
    engine.api.remove_container(c)  # without v: the anonymous volume stays, unused
    engine.api.create_network(net)
    keeps_named = version_gte(engine.api._version, "1.42")
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: app.connected, what="connection")
            vols = await open_screen(pilot, "V", VolumesScreen)
            await wait_for(pilot, lambda: anon in row_keys(vols), what="volumes listed")
            confirm = await open_screen(pilot, "P", ConfirmScreen)
            assert ("named volumes are kept" in confirm.question) == keeps_named
            await pilot.press("y")
            await wait_for(pilot, lambda: anon not in row_keys(vols), what="pruned")
            with pytest.raises(docker.errors.NotFound):
                engine.api.inspect_volume(anon)
            if keeps_named:
                assert engine.api.inspect_volume(named)["Name"] == named
            await pilot.press("escape")
            nets = await open_screen(pilot, "O", NetworksScreen)
            await wait_for(pilot, lambda: net in row_keys(nets), what="networks listed")
            await confirm_yes(pilot, "P")
            await wait_for(pilot, lambda: net not in row_keys(nets), what="net pruned")
            with pytest.raises(docker.errors.NotFound):
                engine.api.inspect_network(net)
    finally:
        for v in (named, anon):
            with contextlib.suppress(Exception):
                engine.api.remove_volume(v)
        with contextlib.suppress(Exception):
            engine.api.remove_network(net)


@pytest.mark.every_engine
async def test_marked_volumes_are_removed_together(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """space marks rows on a resource screen; d then asks once and removes every marked one from the engine,
    leaving the unmarked one."""
    import docker.errors

    from app.screens.confirm import ConfirmScreen

    tag = uuid.uuid4().hex[:6]
    names = [f"pst-m{i}-{tag}" for i in range(3)]
    for n in names:
        engine.api.create_volume(n)
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: app.connected, what="connection")
            vols = await open_screen(pilot, "V", VolumesScreen)
            await wait_for(pilot, lambda: all(n in row_keys(vols) for n in names), what="volumes listed")
            await cursor_to(pilot, vols, names[0])
            await pilot.press("space")  # marks and moves down
            assert vols.current_key == names[1]
            await pilot.press("down", "space")
            assert vols.marked == {names[0], names[2]}
            confirm = await open_screen(pilot, "d", ConfirmScreen)
            assert f"2 volumes: {names[0]}, {names[2]}" in confirm.question
            await pilot.press("y")
            await wait_for(pilot, lambda: not {names[0], names[2]} & set(row_keys(vols)), what="both removed")
            assert names[1] in row_keys(vols) and not vols.marked
        for gone in (names[0], names[2]):
            with pytest.raises(docker.errors.NotFound):
                engine.api.inspect_volume(gone)
        assert engine.api.inspect_volume(names[1])["Name"] == names[1]
    finally:
        for n in names:
            with contextlib.suppress(Exception):
                engine.api.remove_volume(n)
