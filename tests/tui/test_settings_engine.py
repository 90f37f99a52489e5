"""Settings saved against a real engine: a port another container publishes blocks the save; a valid edit of
ports, environment and volumes recreates the container with every other field kept; user networks are connected
and disconnected in place (same container). Each is checked through the API, not the screen."""

from __future__ import annotations

import contextlib
import socket
import uuid
from typing import Any

import pytest
from textual.widgets import Input, Select, SelectionList

from app.screens.confirm import ConfirmScreen
from app.tui import PortsideApp
from tests.tui.conftest import Engine, open_settings, settings_settled, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.tui, pytest.mark.timeout(180)]

SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _saved(app: PortsideApp) -> int:
    return sum(n.message == "Settings saved" for n in app._notifications)


@pytest.mark.every_engine
async def test_a_clash_blocks_saving_and_a_valid_edit_recreates_keeping_the_rest(engine: Engine,
                                                                                 tmp_config_home: Any) -> None:
    """Ports: the host port another container publishes is flagged by the row and ctrl+s sends nothing. Then a
    free port, a new env row and a named-volume row: the confirmed save recreates the container with them, and
    with its command, labels, other env and restart policy (with its retry count) unchanged."""
    tag = uuid.uuid4().hex[:6]
    taken, old_port, new_port = _free_port(), _free_port(), _free_port()
    volume = f"pst-vol-{tag}"
    engine.api.create_volume(volume)
    other = engine.api.create_container(
        engine.busybox, SLEEPER, name=f"pst-other-{tag}", ports=[80],
        host_config=engine.api.create_host_config(port_bindings={80: ("127.0.0.1", taken)}))["Id"]
    engine.api.start(other)
    hc = engine.api.create_host_config(port_bindings={80: ("127.0.0.1", old_port)},
                                       restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})
    cid = engine.api.create_container(engine.busybox, SLEEPER, name=f"pst-form-{tag}", ports=[80],
                                      environment={"FOO": "bar baz"}, labels={"keep": "me"}, host_config=hc)["Id"]
    engine.api.start(cid)
    new_id = None
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(160, 60)) as pilot:
            main, pane = await open_settings(pilot, cid)
            row = pane.ports_editor.rows[0]
            hport = row.query_one(".port-hport", Input)
            hport.value = str(taken)
            await pilot.pause()
            assert f"already published by pst-other-{tag}" in str(row.query_one(".row-error").render())
            hport.focus()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: "already published" in str(pane.query_one("#set-errors").render()),
                           what="the clash listed")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, ConfirmScreen) and _saved(app) == 0
            assert engine.api.inspect_container(cid)["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == str(
                old_port)
            # a valid edit: free port, one more variable, a named volume read-only
            hport.value = str(new_port)
            await pilot.click(pane.env_editor.query_one(".row-add"))
            await pilot.press(*"NEW", "tab", *"value 1")
            pane.volumes_editor.query_one(".row-add").focus()
            await pilot.press("enter")
            vrow = pane.volumes_editor.rows[-1]
            assert app.focused is vrow.query_one(".vol-source", Input)
            await pilot.press(*volume, "tab", *"/data")
            vrow.query_one(".vol-mode", Select).value = "ro"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            question = str(app.screen.query_one(".question").render())
            assert "environment" in question and "ports" in question and "volumes" in question
            await pilot.press("y")
            await wait_for(pilot, lambda: _saved(app), timeout=60, what="the settings saved")
            new_id = await wait_for(pilot, lambda: main.selected_id not in (None, cid) and main.selected_id,
                                    what="the recreated container selected")
            await settings_settled(pilot, main, new_id)  # the form follows it
        data = engine.api.inspect_container(new_id)
        assert data["Name"] == f"/pst-form-{tag}" and data["State"]["Running"]
        assert data["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(new_port)}]}
        assert "FOO=bar baz" in data["Config"]["Env"] and "NEW=value 1" in data["Config"]["Env"]
        assert data["Config"]["Cmd"] == SLEEPER and data["Config"]["Labels"]["keep"] == "me"
        assert data["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        mounts = [m for m in data["Mounts"] if m["Destination"] == "/data"]
        assert mounts and mounts[0]["Type"] == "volume" and mounts[0]["Name"] == volume and mounts[0]["RW"] is False
        assert not [c for c in engine.api.containers(all=True) if c["Id"] == cid]
    finally:
        for c in (new_id, cid, other):
            if c:
                with contextlib.suppress(Exception):
                    engine.api.remove_container(c, force=True)
        engine.api.remove_volume(volume, force=True)


@pytest.mark.every_engine
async def test_user_networks_connect_and_disconnect_in_place(engine: Engine, tmp_config_home: Any) -> None:
    """Ticking a user network and saving connects the same container (no recreate); unticking disconnects it."""
    tag = uuid.uuid4().hex[:6]
    net = f"pst-net-{tag}"
    engine.api.create_network(net, driver="bridge")
    cid = engine.run(SLEEPER, f"pst-netc-{tag}", network_mode="bridge")
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(160, 60)) as pilot:
            main, pane = await open_settings(pilot, cid)
            nets = pane.query_one("#set-networks", SelectionList)
            await wait_for(pilot, lambda: net in [nets.get_option_at_index(i).value for i in range(nets.option_count)],
                           what="the network offered")
            nets.select(net)
            nets.focus()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: _saved(app), timeout=30, what="saved in place")
            assert not isinstance(app.screen, ConfirmScreen)
            networks = engine.api.inspect_container(cid)["NetworkSettings"]["Networks"]
            assert net in networks and networks[net]["IPAddress"]
            await settings_settled(pilot, main, cid)  # reloaded after the save
            assert pane.loaded and net in pane.loaded.networks
            app.clear_notifications()
            nets.deselect(net)
            assert app.focused is nets  # an in-place save leaves the focus in the form
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: _saved(app), timeout=30, what="saved in place again")
            assert net not in engine.api.inspect_container(cid)["NetworkSettings"]["Networks"]
            assert main.selected_id == cid  # the same container all along
            await settings_settled(pilot, main, cid)
            assert pane.loaded and net not in pane.loaded.networks
    finally:
        engine.api.remove_container(cid, force=True)
        engine.api.remove_network(net)
