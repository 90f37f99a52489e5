"""SVG snapshots of the main screens (pytest-textual-snapshot); volatile parts (CPU/memory, socket paths) are
hidden or fixed before the picture is taken. Update with `pytest tests/tui/test_snapshots.py --snapshot-update`."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Config
from app.screens.main import MainScreen
from app.tui import PortsideApp
from tests.tui.conftest import Engine, wait_for

pytestmark = [pytest.mark.tui, pytest.mark.timeout(120)]

NOWHERE = "unix:///nonexistent/portside-test.sock"
SIZE = (120, 34)


def _offline_app() -> PortsideApp:
    return PortsideApp(host=NOWHERE, config=Config())


def test_snapshot_engine_unreachable(snap_compare: Any, tmp_config_home: Any) -> None:
    """The banner says the connection is lost and that it is retrying."""

    async def run_before(pilot: Any) -> None:
        main = pilot.app.screen
        await wait_for(pilot, lambda: main.banner.display, what="banner")

    assert snap_compare(_offline_app(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_help(snap_compare: Any, tmp_config_home: Any) -> None:
    """? lists every key with its binding id."""
    assert snap_compare(_offline_app(), terminal_size=SIZE, press=["question_mark"])


def test_snapshot_new_container(snap_compare: Any, tmp_config_home: Any) -> None:
    """c opens the image search with the recommended list, nginx first."""

    async def run_before(pilot: Any) -> None:
        await pilot.press("c")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "shown", None), what="results")
        # A blinking cursor is drawn or not depending on when the shot is taken: hold it on.
        from textual.widgets import Input

        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        await pilot.pause()

    assert snap_compare(_offline_app(), terminal_size=SIZE, run_before=run_before)


@pytest.mark.integration
def test_snapshot_main_with_logs(snap_compare: Any, engine: Engine, tmp_config_home: Any) -> None:
    """The main screen: one container in the list, its Home tab with its log lines."""
    engine.api.tag(engine.busybox, "testbed/busybox", "latest")
    hc = engine.api.create_host_config(network_mode="none")
    cid = engine.api.create_container("testbed/busybox:latest", ["sh", "-c", "echo one; echo two; echo three; "
                                      "exec sleep 300"], name="snap-logs", host_config=hc)["Id"]
    engine.api.start(cid)
    app = PortsideApp(host=engine.url, config=engine.config())

    async def run_before(pilot: Any) -> None:
        main = pilot.app.screen
        assert isinstance(main, MainScreen)
        await wait_for(pilot, lambda: main.selected_id == cid, what="selection")
        await wait_for(pilot, lambda: main.log_view.lines == ["one", "two", "three"], what="logs")
        await wait_for(pilot, lambda: main.container_list.rows_by_id[cid].state == "running", what="running")
        main.query_one("#summary").display = False  # CPU and memory move from run to run
        pilot.app.sub_title = "dockerd under test"
        await pilot.pause(0.2)

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        engine.api.remove_container(cid, force=True)
