"""The command palette reaches every action the keys reach: besides the container verbs and screens, each
screen's own bindings (create a network, pull an image, exec, mark...) are commands naming their key."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette

from app.screens.resources import NameScreen, NetworksScreen
from app.tui import PortsideApp
from tests.tui.conftest import Engine, open_screen, row_keys, select_container, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.tui, pytest.mark.timeout(120)]


def _names(app: PortsideApp) -> dict[str, str]:
    return {c.title: c.help for c in app.get_system_commands(app.screen)}


async def test_palette_offers_each_screens_actions_and_runs_them(engine: Engine, tmp_config_home: Any) -> None:
    """On the main screen the palette has Exec and Mark besides the verbs; on Networks, choosing "Create" from the
    palette asks for a name and the network really exists in the engine."""
    app = PortsideApp(host=engine.url, config=engine.config())
    name = f"pstpal{uuid.uuid4().hex[:6]}"
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected, what="connection")
        main = _names(app)
        assert main["Exec (Main)"] == "key e" and main["Mark (ContainerList)"] == "key space"
        assert "Container: Kill" in main and "Kill (Main)" not in main  # covered once, by the verb command
        await open_screen(pilot, "O", NetworksScreen)
        assert {"Create (Networks)", "Remove (Networks)", "Inspect (Networks)"} <= set(_names(app))
        palette = await open_screen(pilot, "ctrl+p", CommandPalette)
        await pilot.press(*"Create (Net")
        # the hits are gathered by a worker: Enter before the list shows them would pick nothing
        hits = palette.query_one(CommandList)
        await wait_for(pilot, lambda: hits.highlighted is not None and "Create (Networks)" in str(
            hits.get_option_at_index(hits.highlighted).prompt), what="the Create command offered")
        await open_screen(pilot, "enter", NameScreen)
        await pilot.press(*name, "enter")
        nets = app.screen
        assert isinstance(nets, NetworksScreen)
        await wait_for(pilot, lambda: name in row_keys(nets), what="the network listed")
    try:
        assert engine.api.inspect_network(name)["Name"] == name
    finally:
        engine.api.remove_network(name)


async def test_copy_the_id_and_the_url_of_the_selected_container(engine: Engine, tmp_config_home: Any) -> None:
    """Y puts the container's full id on the clipboard, U its published URL (the one the Home tab checks)."""
    hc = engine.api.create_host_config(network_mode="bridge", port_bindings={80: ("127.0.0.1", None)})
    cid = engine.api.create_container(engine.busybox, ["sleep", "100"], name=f"pst-copy-{uuid.uuid4().hex[:6]}",
                                      ports=[80], host_config=hc)["Id"]
    engine.api.start(cid)
    port = engine.api.inspect_container(cid)["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(140, 40)) as pilot:
        await select_container(pilot, cid)
        await pilot.press("Y")
        assert app.clipboard == cid
        await pilot.press("U")
        assert app.clipboard == f"http://127.0.0.1:{port}"
    engine.api.remove_container(cid, force=True)
