"""Settings > Volumes shows every mount of a container, not only HostConfig.Binds: `--mount` entries
(HostConfig.Mounts) and anonymous volumes are rows too, can be edited or removed, and a recreate keeps the data
of what the user left alone (anonymous volumes are mounted again by name)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Input, Select

from app import settings as st
from app.screens.confirm import ConfirmScreen
from app.tui import STYLESHEET, PortsideApp
from app.widgets.settings_pane import SettingsPane
from tests.tui.conftest import Engine, open_settings, settings_settled, wait_for

pytestmark = [pytest.mark.tui, pytest.mark.timeout(180)]

SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
ANON = "f" * 64

INSPECT: dict[str, Any] = {
    "Id": "c0ffee" * 10 + "abcd",
    "Name": "/web",
    "Config": {"Cmd": ["sleep", "1"], "Image": "busybox", "Volumes": {"/anon": {}}},
    "HostConfig": {
        "NetworkMode": "none", "Binds": ["cache:/cache"],
        "Mounts": [{"Type": "volume", "Source": "data", "Target": "/data", "VolumeOptions": {"NoCopy": True}},
                   {"Type": "bind", "Source": "/srv", "Target": "/srv", "ReadOnly": True,
                    "BindOptions": {"Propagation": "rslave"}},
                   {"Type": "tmpfs", "Target": "/run/scratch"},
                   {"Type": "volume", "Target": "/unnamed"}],
    },
    "Mounts": [{"Type": "volume", "Name": "cache", "Destination": "/cache", "RW": True},
               {"Type": "volume", "Name": "data", "Destination": "/data", "RW": True},
               {"Type": "bind", "Source": "/srv", "Destination": "/srv", "RW": False},
               {"Type": "tmpfs", "Destination": "/run/scratch", "RW": True},
               {"Type": "volume", "Name": "e" * 64, "Destination": "/unnamed", "RW": True},
               {"Type": "volume", "Name": ANON, "Destination": "/anon", "RW": True}],
    "NetworkSettings": {"Networks": {}},
}


def test_mounts_and_anonymous_volumes_are_settings() -> None:
    """from_inspect reads Mounts (an unnamed `--mount` volume gets its engine name) and anonymous volumes; an
    untouched form plans nothing; removing the anonymous volume drops it from Config.Volumes too; an edited mount
    keeps its own options and loses the other types'."""
    s = st.from_inspect(INSPECT)
    assert s.binds == ["cache:/cache", f"{ANON}:/anon"] and s.anonymous == [f"{ANON}:/anon"]
    assert [m["Target"] for m in s.mounts] == ["/data", "/srv", "/run/scratch", "/unnamed"]
    assert s.mounts[3]["Source"] == "e" * 64
    assert st.plan(st.from_inspect(INSPECT), s).empty
    body, _ = st.recreate_body(INSPECT, s)
    assert body["HostConfig"]["Binds"] == ["cache:/cache", f"{ANON}:/anon"]
    assert body["HostConfig"]["Mounts"] == s.mounts and body["Volumes"] == {"/anon": {}}
    s.binds = ["cache:/cache"]
    s.mounts = [st.edited_mount(s.mounts[0], "volume", st.BindEntry("data", "/data2", True)), *s.mounts[1:]]
    assert st.plan(st.from_inspect(INSPECT), s).recreate == ["volumes"]
    body, _ = st.recreate_body(INSPECT, s)
    assert body["HostConfig"]["Binds"] == ["cache:/cache"] and not body.get("Volumes")
    assert body["HostConfig"]["Mounts"][0] == {"Type": "volume", "Source": "data", "Target": "/data2",
                                               "ReadOnly": True, "VolumeOptions": {"NoCopy": True}}
    as_volume = st.edited_mount(s.mounts[1], "volume", st.BindEntry("v1", "/srv", False))
    assert "BindOptions" not in as_volume and as_volume["Type"] == "volume"


class Host(App[None]):
    CSS_PATH = STYLESHEET

    def compose(self) -> ComposeResult:
        yield SettingsPane(id="settings")


async def test_the_form_shows_mounts_and_anonymous_volumes_as_rows() -> None:
    """Every mount is a row, noted by where it comes from; the untouched form reads back unchanged; editing a
    `--mount` row's target changes that Mounts entry only, and deleting the anonymous row drops it."""
    async with Host().run_test(size=(140, 80)) as pilot:
        pane = pilot.app.query_one(SettingsPane)
        await pane.load(INSPECT["Id"], INSPECT, ["bridge", "host", "none"], ["web"], volumes=["cache", "data"])
        await pilot.pause()
        rows = pane.volumes_editor.rows
        assert [(r.query_one(".vol-kind", Select).value, r.target) for r in rows] == [
            ("volume", "/cache"), ("volume", "/anon"), ("volume", "/data"), ("bind", "/srv"),
            ("tmpfs", "/run/scratch"), ("volume", "/unnamed")]
        notes = [str(r.query_one(".vol-note").render()) if r.query(".vol-note") else "" for r in rows]
        assert notes == ["", "anonymous", "--mount", "--mount", "--mount", "--mount"]
        assert rows[3].query_one(".vol-mode", Select).value == "ro"
        assert rows[4].query_one(".vol-source", Input).disabled
        assert st.plan(st.from_inspect(INSPECT), pane.read()).empty
        rows[2].query_one(".vol-target", Input).value = "/srv"
        await pilot.pause()
        assert "duplicate mount point: /srv" in str(rows[3].query_one(".row-error").render())
        rows[2].query_one(".vol-target", Input).value = "/data2"
        rows[1].query_one(".vol-target", Input).focus()
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: len(pane.volumes_editor.rows) == 5, what="the anonymous row deleted")
        s = pane.read()
        assert s.binds == ["cache:/cache"]
        assert [m["Target"] for m in s.mounts] == ["/data2", "/srv", "/run/scratch", "/unnamed"]
        assert s.mounts[1:] == st.from_inspect(INSPECT).mounts[1:]


@pytest.mark.every_engine
@pytest.mark.integration
async def test_a_mount_edited_in_settings_is_remounted_with_its_data(engine: Engine, tmp_config_home: Any) -> None:
    """A container with a `--mount` named volume, a read-only `--mount` bind and an anonymous volume: all three
    show; moving the named volume to another path and removing the anonymous volume recreates the container with
    the same volume (its file still there) at the new path, the bind unchanged, and no volume at the old paths."""
    tag = uuid.uuid4().hex[:6]
    volume = f"pst-mvol-{tag}"
    engine.api.create_volume(volume)
    writer = engine.run(["sh", "-c", f"echo kept-{tag} > /v/file"], f"pst-writer-{tag}",
                        binds=[f"{volume}:/v"])
    engine.api.wait(writer, timeout=30)
    engine.api.remove_container(writer)
    hc = engine.api.create_host_config(network_mode="none", mounts=[
        {"Type": "volume", "Source": volume, "Target": "/data", "ReadOnly": False},
        {"Type": "bind", "Source": "/etc", "Target": "/hostetc", "ReadOnly": True}])
    cid = engine.api.create_container(engine.busybox, SLEEPER, name=f"pst-mnt-{tag}", host_config=hc,
                                      volumes=["/anon"])["Id"]
    engine.api.start(cid)
    anon = next(m["Name"] for m in engine.api.inspect_container(cid)["Mounts"] if m["Destination"] == "/anon")
    new_id = None
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(160, 60)) as pilot:
            main, pane = await open_settings(pilot, cid)
            rows = {r.target: r for r in pane.volumes_editor.rows}
            assert set(rows) == {"/anon", "/data", "/hostetc"}
            assert rows["/anon"].query_one(".vol-source", Input).value == anon
            assert rows["/hostetc"].query_one(".vol-mode", Select).value == "ro"
            rows["/data"].query_one(".vol-target", Input).value = "/moved"
            rows["/anon"].query_one(".vol-target", Input).focus()
            await pilot.press("ctrl+d")
            await wait_for(pilot, lambda: len(pane.volumes_editor.rows) == 2, what="the anonymous row deleted")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            assert "volumes" in str(app.screen.query_one(".question").render())
            await pilot.press("y")
            new_id = await wait_for(pilot, lambda: main.selected_id not in (None, cid) and main.selected_id,
                                    timeout=60, what="the recreated container selected")
            await settings_settled(pilot, main, new_id)  # the form follows it
            assert {r.target for r in pane.volumes_editor.rows} == {"/moved", "/hostetc"}
        data = engine.api.inspect_container(new_id)
        assert data["State"]["Running"]
        by_dest = {m["Destination"]: m for m in data["Mounts"]}
        assert by_dest["/moved"]["Type"] == "volume" and by_dest["/moved"]["Name"] == volume
        assert by_dest["/hostetc"]["Type"] == "bind" and by_dest["/hostetc"]["RW"] is False
        assert "/data" not in by_dest and "/anon" not in by_dest
        exec_id = engine.api.exec_create(new_id, ["cat", "/moved/file"])["Id"]
        assert engine.api.exec_start(exec_id).decode().strip() == f"kept-{tag}"
    finally:
        for c in (new_id, cid):
            if c:
                with contextlib.suppress(Exception):
                    engine.api.remove_container(c, force=True)
        for v in (volume, anon):
            with contextlib.suppress(Exception):
                engine.api.remove_volume(v, force=True)
