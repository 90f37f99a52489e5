"""The Stats tab: its table of all running containers against a real engine, and what an idle app repaints.

Issue 7 wants the TUI under 2% of a core with 20 running containers and this tab open; the pane tests here pin
the two things that brought it there: a stats sample never re-lays out the screen, and a graph whose picture did
not change is not repainted (while drawing what Textual's Sparkline draws)."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Sparkline

from app.screens.main import MainScreen
from app.stats import History, Sample, cpu_percent
from app.tui import PortsideApp
from app.widgets.fixed_label import FixedLabel
from app.widgets.graph import StatsGraph
from app.widgets.stats_pane import StatsPane
from tests.tui.conftest import Engine, wait_for

SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]


def _used(cells: tuple[str, ...]) -> float:
    """The memory used of a table row, '212.00KiB / 23.54GiB' -> 212.0."""
    return float(cells[2].split("/")[0].strip().rstrip("KMGTiB"))


@pytest.mark.every_engine
@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(120)
async def test_table_lists_every_running_container(engine: Engine, tmp_config_home: Any) -> None:
    """The table shows each running container with its memory, never a stopped one; a container that stops
    leaves it; leaving the tab, or another screen over it, closes every stream but the selected container's."""
    tag = uuid.uuid4().hex[:6]
    running = [engine.run(SLEEPER, f"pst-stats-{tag}-{i}") for i in range(3)]
    hc = engine.api.create_host_config(network_mode="none")
    stopped = engine.api.create_container(engine.busybox, SLEEPER, name=f"pst-stats-{tag}-off", host_config=hc)["Id"]
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        main = app.screen
        assert isinstance(main, MainScreen)
        await wait_for(pilot, lambda: main.tabs_built
                                      and all(c in main.container_list.rows_by_id for c in [*running, stopped]),
                       what="the containers listed")
        assert main.container_list.select_id(running[0])
        main.query_one("#tabs").active = "tab-stats"  # type: ignore[attr-defined]
        pane = main.stats_pane
        await wait_for(pilot, lambda: all(c in pane.table_rows and _used(pane.table_rows[c]) > 0 for c in running),
                       timeout=30, what=f"every running container in the table with memory: {pane.table_rows}")
        assert stopped not in pane.table_rows
        assert pane.table.row_count == len(pane.table_rows)
        name = pane.table_rows[running[1]][0]
        assert name == f"pst-stats-{tag}-1"
        # the selected container's graphs come from the same stream as its row
        await wait_for(pilot, lambda: main.history.last and main.history.last.mem_used > 0, what="memory > 0")
        assert main.history is main.stats_streams.history(running[0])
        label = str(main.query_one("#label-mem").render())
        assert label.startswith("Memory: ") and float(label.split(":")[1].split("/")[0].strip().rstrip("KMGiB")) > 0

        engine.api.stop(running[1], timeout=5)
        await wait_for(pilot, lambda: running[1] not in pane.table_rows, timeout=30, what="the stopped one gone")
        assert running[1] not in main.stats_streams.watched
        assert {running[0], running[2]} <= set(pane.table_rows)

        main.query_one("#tabs").active = "tab-home"  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: main.stats_streams.watched == {running[0]}, what="only the selected streamed")
        # the Home summary of the stopped one says so, not its last figures
        assert main.container_list.select_id(running[1])
        summary = main.query_one("#summary", FixedLabel)
        await wait_for(pilot, lambda: summary.text == "[dim]exited: no stats[/]", what=f"no stats: {summary.text}")
        assert main.container_list.select_id(running[0])
        await wait_for(pilot, lambda: summary.text.startswith("CPU "), what=f"figures again: {summary.text}")
        main.query_one("#tabs").active = "tab-stats"  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: main.stats_streams.watched >= {running[0], running[2]}, what="streams again")

        # another screen over this one: the table's streams close until it is back
        app.action_screen("images")  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: app.screen is not main and app.screen.is_mounted, what="the images screen")
        await wait_for(pilot, lambda: main.stats_streams.watched == {running[0]}, what="only the selected streamed")
        await pilot.pause(0.3)  # let the screen finish mounting (its Header) before it goes
        app.pop_screen()
        await wait_for(pilot, lambda: main.stats_streams.watched >= {running[0], running[2]}, what="table streams back")


class PaneApp(App[None]):
    CSS_PATH = "../../app/portside.tcss"

    def compose(self) -> ComposeResult:
        yield StatsPane(id="stats")


def _sample(mem: int, t: float, cpu: float = 0.0) -> Sample:
    return Sample(cpu_percent=cpu, mem_used=mem, mem_limit=1 << 30, net_rx=0, net_tx=0, blk_read=0, blk_write=0,
                  pids=1, read=t)


async def test_unchanged_sample_repaints_nothing() -> None:
    """A sample like the one before causes no layout and no repaint; a new memory value repaints its label and
    its graph only, still without a layout."""
    app = PaneApp()
    async with app.run_test(size=(120, 60)) as pilot:
        pane = app.query_one(StatsPane)
        history = History()
        t = time.time()
        for i in range(5):
            history.add(_sample(10 << 20, t + i))
        pane.show(history)
        await pilot.pause(0.1)
        screen = app.screen
        layouts: list[int] = []
        painted: list[str] = []
        refresh_layout = screen._refresh_layout
        screen._refresh_layout = lambda *a, **k: (layouts.append(1), refresh_layout(*a, **k))[1]  # type: ignore[method-assign]
        for widget in pane.query("FixedLabel, StatsGraph"):
            original = widget.render_line

            def counted(y: int, w: Any = widget, orig: Any = original) -> Any:
                painted.append(w.id)
                return orig(y)

            widget.render_line = counted  # type: ignore[method-assign]

        history.add(_sample(10 << 20, t + 5))
        pane.show(history)
        await pilot.pause(0.2)
        assert layouts == [] and painted == [], (layouts, painted)

        history.add(_sample(20 << 20, t + 6))
        pane.show(history)
        await pilot.pause(0.2)
        assert set(painted) == {"label-mem", "graph-mem"}, painted
        assert layouts == []
        assert "20.00MiB" in str(app.query_one("#label-mem").render())


async def test_graph_draws_what_sparkline_draws() -> None:
    """StatsGraph paints the same bars as Textual's Sparkline, for empty, single and varied series that reach
    zero (ours stand on zero, Textual's on the window's minimum: the same thing when that minimum is 0)."""

    class Both(App[None]):
        CSS = "Sparkline { height: 3; width: 60; }"

        def compose(self) -> ComposeResult:
            yield Sparkline([], summary_function=max, id="theirs")
            yield StatsGraph([], summary_function=max, id="ours")

    rng = random.Random(7)
    app = Both()
    async with app.run_test(size=(80, 10)) as pilot:
        theirs, ours = app.query_one("#theirs", Sparkline), app.query_one("#ours", StatsGraph)
        for data in ([], [5.0], [0.0, 2.0], [0.0] + [rng.random() for _ in range(30)],
                     [rng.random() for _ in range(120)] + [0.0], [0.0] * 40 + [3.0] + [0.0] * 40):
            theirs.data = data
            ours.plot(data)
            await pilot.pause(0.05)
            for y in range(3):
                a, b = theirs.render_line(y), ours.render_line(y)
                assert a.text.rstrip() == b.text.rstrip(), (len(data), y, a.text, b.text)
                cells_a = [s.style.color for s in a for _ in s.text if s.text.strip()]
                cells_b = [s.style.color for s in b for _ in s.text if s.text.strip()]
                for ca, cb in zip(cells_a, cells_b, strict=True):  # shades within one step of 64
                    assert ca is not None and cb is not None and ca.triplet and cb.triplet
                    assert max(abs(p - q) for p, q in zip(ca.triplet, cb.triplet, strict=True)) <= 4


async def test_graph_stands_on_zero_and_label_names_its_scale() -> None:
    """A few kilobytes more on ten megabytes is a small step near the top, not a bar from empty to full; a
    constant non-zero series is a full block, zero an empty line; the label says the value, its unit and the
    graph's scale (0 to the window's peak)."""
    app = PaneApp()
    async with app.run_test(size=(120, 60)) as pilot:
        pane = app.query_one(StatsPane)
        graph = pane.graphs["mem"][1]
        history = History()
        t = time.time()
        for i, used in enumerate([10 << 20] * 10 + [(10 << 20) + 8192] * 10):
            history.add(_sample(used, t + i))
        pane.show(history)
        await pilot.pause(0.1)
        height = graph.size.height
        assert height >= 2
        # every column is (nearly) full height: the top row is drawn across the whole width
        top = graph.render_line(0).text
        assert top.strip() and set(top.strip()) <= set("▇█"), top
        bottom = graph.render_line(height - 1).text
        assert set(bottom.strip()) == {"█"}, bottom
        label = str(app.query_one("#label-mem").render())
        assert "Memory: 10.01MiB" in label and "0 to 10.01MiB" in label, label

        zero = History()
        for i in range(5):
            zero.add(_sample(10 << 20, t + i))
        pane.show(zero)
        await pilot.pause(0.1)
        # net rates are all zero here: an empty line at the floor, and a scale of 0 to 0
        net = pane.graphs["net_rx_rate"][1]
        assert net.render_line(0).text.strip() == ""
        assert "0 to 0" in str(app.query_one("#label-net_rx_rate").render()).replace("B/s", "")


async def test_constant_series_is_painted_once() -> None:
    """A flat series looks the same at any length and value: plot() repaints only when the picture changes."""

    class One(App[None]):
        CSS = "StatsGraph { height: 3; width: 50; }"

        def compose(self) -> ComposeResult:
            yield StatsGraph([], summary_function=max)

    app = One()
    async with app.run_test(size=(80, 10)) as pilot:
        graph = app.query_one(StatsGraph)
        await pilot.pause(0.05)
        assert graph.plot([7.0, 7.0]) is True
        assert [graph.plot([7.0] * n) for n in range(3, 130)] == [False] * 127
        assert graph.plot([8.0] * 10) is False  # another constant: still a flat line
        assert graph.plot([8.0] * 10 + [9.0]) is True
        assert graph.plot([1.0]) is True and graph.plot([]) is True


def test_first_stream_sample_has_no_cpu_percent() -> None:
    """A stream's first sample carries no previous one (dockerd: zeros; portside: no system usage): its CPU %
    is 0, not the average since the container started, which would scale the CPU graph for two minutes."""
    cpu = {"cpu_usage": {"total_usage": 5_000_000_000}, "system_cpu_usage": 90_000_000_000_000, "online_cpus": 2}
    assert cpu_percent({"cpu_stats": cpu, "precpu_stats": {"cpu_usage": {"total_usage": 0}}}) == 0.0
    assert cpu_percent({"cpu_stats": cpu, "precpu_stats": {}}) == 0.0
    pre = {"cpu_usage": {"total_usage": 4_000_000_000}, "system_cpu_usage": 89_999_000_000_000}
    assert cpu_percent({"cpu_stats": cpu, "precpu_stats": pre}) == 200.0
