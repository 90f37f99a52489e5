"""The Settings row editors (Ports, Environment, Volumes) driven by keys and mouse: per-field errors as you type,
clashes between rows, Enter adds a row, ctrl+d and the ✕ button delete one, and what the form reads back.

These run the real SettingsPane in a small host app, filled from an inspect document: no engine needed. The
flows against an engine (clash with another container, a saved edit recreating the container) are in
test_settings_engine.py.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Input, Select

from app import settings as st
from app.tui import STYLESHEET
from app.widgets.settings_pane import SettingsPane
from app.widgets.settings_rows import EnvRow, PortRow, VolumeRow
from tests.tui.conftest import wait_for

pytestmark = [pytest.mark.tui, pytest.mark.timeout(60)]

INSPECT: dict[str, Any] = {
    "Id": "c0ffee" * 10 + "abcd",
    "Name": "/web",
    "Config": {"Cmd": ["nginx", "-g", "daemon off;"], "Env": ["A=1", "PATH=/usr/bin"], "Image": "nginx"},
    "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
                   "NetworkMode": "bridge", "RestartPolicy": {"Name": "always"},
                   "Binds": ["/srv/www:/usr/share/nginx/html:ro,z", "cache:/cache"]},
    "NetworkSettings": {"Networks": {"bridge": {}}},
}
OTHERS = [{"Id": "other", "Names": ["/db"], "Ports": [{"PrivatePort": 5432, "PublicPort": 15432, "Type": "tcp"}]}]


class Host(App[None]):
    CSS_PATH = STYLESHEET

    def compose(self) -> ComposeResult:
        yield SettingsPane(id="settings")


async def _loaded(pilot: Any) -> SettingsPane:
    pane = pilot.app.query_one(SettingsPane)
    await pane.load(INSPECT["Id"], INSPECT, ["bridge", "host", "none"], ["web", "db"], container_list=OTHERS,
                    volumes=["cache", "data1", "data2"], local_engine=True)
    await pilot.pause()
    return pane


def _errors(row: Any) -> str:
    return str(row.query_one(".row-error").render())


async def test_forms_show_the_container_as_rows() -> None:
    """Each Binds/Env/PortBindings entry is one row of fields; reading the untouched form gives them back
    exactly (so saving it changes nothing)."""
    async with Host().run_test(size=(140, 60)) as pilot:
        pane = await _loaded(pilot)
        port = pane.ports_editor.rows[0]
        assert port.query_one(".port-cport", Input).value == "80"
        assert port.query_one(".port-hip", Input).value == "127.0.0.1"
        assert port.query_one(".port-hport", Input).value == "8080"
        assert [r.key for r in pane.env_editor.rows] == ["A", "PATH"]
        vols = pane.volumes_editor.rows
        assert [r.query_one(".vol-kind", Select).value for r in vols] == ["bind", "volume"]
        assert vols[0].query_one(".vol-mode", Select).value == "ro"
        s = pane.read()
        assert s.binds == INSPECT["HostConfig"]["Binds"]  # ro,z kept to the letter
        assert s.env == ["A=1", "PATH=/usr/bin"]
        assert s.ports == [st.PortMapping(80, "tcp", "127.0.0.1", 8080)]
        assert st.plan(st.from_inspect(INSPECT), s).empty


async def test_port_fields_are_checked_as_you_type_and_clashes_block_saving() -> None:
    """A bad host port turns its field red with the reason under the row; the same port twice, a port another
    container publishes and a port bound on this machine are each shown by their row, and ctrl+s refuses."""
    saves: list[Any] = []
    async with Host().run_test(size=(140, 60), message_hook=lambda m: isinstance(
            m, SettingsPane.SaveRequested) and saves.append(m)) as pilot:
        pane = await _loaded(pilot)
        row = pane.ports_editor.rows[0]
        hport = row.query_one(".port-hport", Input)
        hport.focus()
        await pilot.press("end", "9", "9")  # 808099
        assert hport.has_class("-invalid")
        assert "host port must be a number from 1 to 65535" in _errors(row)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "host port must be a number" in str(pane.query_one("#set-errors").render())
        assert not saves
        await pilot.press("backspace", "backspace")
        assert not hport.has_class("-invalid") and _errors(row) == ""
        # Enter adds a row under this one, with the focus in its first field
        await pilot.press("enter")
        rows = pane.ports_editor.rows
        assert len(rows) == 2 and pilot.app.focused is rows[1].query_one(".port-cport", Input)
        await pilot.press(*"81", "tab", "tab", *"127.0.0.1", "tab", *"8080")
        assert rows[1].value() == st.PortMapping(81, "tcp", "127.0.0.1", 8080)
        assert "host port 8080/tcp is used twice" in _errors(rows[1])
        assert rows[1].query_one(".port-hport", Input).has_class("-clash")
        # a port the other container publishes
        await pilot.press(*["backspace"] * 4, *"15432")
        assert "host port 15432/tcp is already published by db" in _errors(rows[1])
        # a port something holds on this machine (the engine is local)
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            busy = held.getsockname()[1]
            await pilot.press(*["backspace"] * 5, *str(busy))
            assert f"host port {busy}/tcp is in use on this machine" in _errors(rows[1])
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert "in use on this machine" in str(pane.query_one("#set-errors").render())
            assert not saves
            # ctrl+d deletes the row holding the focus; the form is valid again and saves
            await pilot.press("ctrl+d")
        assert len(pane.ports_editor.rows) == 1
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: saves, what="the save request")
        assert saves[0].settings.ports == [st.PortMapping(80, "tcp", "127.0.0.1", 8080)]


async def test_env_keys_are_flagged_and_rows_added_and_deleted_by_mouse() -> None:
    """An env name with a space or '=' and a name set twice are flagged by their row; the + button adds a row,
    the ✕ button deletes one; a blank row is ignored."""
    async with Host().run_test(size=(140, 80)) as pilot:
        pane = await _loaded(pilot)
        env = pane.env_editor
        await pilot.click(env.query_one(".row-add"))
        await pilot.pause()
        assert len(env.rows) == 3
        new = env.rows[2]
        assert isinstance(new, EnvRow) and pilot.app.focused is new.query_one(".env-key", Input)
        assert pane.read().env == ["A=1", "PATH=/usr/bin"]  # blank row ignored
        await pilot.press(*"MY VAR")
        assert "'MY VAR': a name cannot contain spaces" in _errors(new)
        with pytest.raises(ValueError, match="cannot contain spaces"):
            pane.read()
        await pilot.press(*["backspace"] * 4, "=")
        assert "a name cannot contain '='" in _errors(new)
        await pilot.press("backspace", *"A")  # "MYA" -> fine
        await pilot.press(*["backspace"] * 3, "A")
        assert "A is set twice" in _errors(new)
        await pilot.press("B", "tab", *"two words")
        assert pane.read().env == ["A=1", "PATH=/usr/bin", "AB=two words"]
        await pilot.click(env.rows[0].query_one(".row-del"))
        await pilot.pause()
        assert pane.read().env == ["PATH=/usr/bin", "AB=two words"]


async def test_volume_rows_check_paths_names_and_mount_points() -> None:
    """Volume rows: a bind needs an absolute host path, a named volume a valid name (the engine's volumes are
    offered as you type), the container path must be absolute and used once."""
    async with Host().run_test(size=(140, 80)) as pilot:
        pane = await _loaded(pilot)
        vols = pane.volumes_editor
        vols.rows[1].query_one(".vol-target", Input).focus()
        await pilot.press("enter")
        row = vols.rows[2]
        assert isinstance(row, VolumeRow) and row.kind == "volume"
        source = row.query_one(".vol-source", Input)
        source.focus()
        await pilot.press("d")
        await wait_for(pilot, lambda: source._suggestion == "data1", what="the volume name suggested")
        await pilot.press("right")  # accept the suggestion
        assert source.value == "data1"
        await pilot.press("tab", *"cache")
        assert "'cache': the container path must be absolute" in _errors(row)
        await pilot.press(*["backspace"] * 5, *"/cache")
        assert "duplicate mount point: /cache" in _errors(row)
        await pilot.press("backspace", "2")
        assert _errors(row) == ""
        row.query_one(".vol-kind", Select).value = "bind"
        await pilot.pause()
        assert "'data1': a host path must be absolute" in _errors(row)
        source.value = "/tmp/portside-test-data"
        row.query_one(".vol-mode", Select).value = "ro"
        await pilot.pause()
        binds = pane.read().binds
        assert binds == [*INSPECT["HostConfig"]["Binds"], "/tmp/portside-test-data:/cach2:ro"]
        assert isinstance(pane.ports_editor.rows[0], PortRow)
