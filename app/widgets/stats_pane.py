"""The Stats tab: graphs over time of CPU %, memory, network and block IO rates and PIDs, plus a compact table
of every running container (the screen streams those only while the tab is shown).

Idle cost matters here (issue 7: under 2% of a core with 20 containers and this tab open): the labels have a
fixed size, so a new value repaints the label alone and never re-lays out the screen, and text or cells that did
not change are not touched at all."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable

from app.stats import History, Sample, human_bytes
from app.widgets.fixed_label import FixedLabel
from app.widgets.graph import StatsGraph

GRAPHS = (
    ("cpu", "CPU %"),
    ("mem", "Memory"),
    ("net_rx_rate", "Net in /s"),
    ("net_tx_rate", "Net out /s"),
    ("blk_read_rate", "Block read /s"),
    ("blk_write_rate", "Block write /s"),
    ("pids", "PIDs"),
)

# The table's columns, as `docker stats` names them, with fixed widths: a changing value never resizes a
# column (which would re-measure every cell and re-lay out the table).
COLUMNS = (
    ("NAME", 16),
    ("CPU %", 7),
    ("MEM USAGE / LIMIT", 20),
    ("MEM %", 6),
    ("NET I/O", 17),
    ("BLOCK I/O", 17),
    ("PIDS", 4),
)


def _fmt(key: str, value: float, limit: int = 0) -> str:
    if key == "cpu":
        return f"{value:.2f}%"
    if key == "mem":
        return f"{human_bytes(value)} / {human_bytes(limit) if limit else 'no limit'}"
    if key == "pids":
        return f"{value:.0f}"
    return f"{human_bytes(value, binary=False)}/s"


def table_cells(name: str, s: Sample) -> tuple[str, ...]:
    """One row of the table: the same columns and units as `docker stats`."""
    return (
        name,
        f"{s.cpu_percent:.2f}%",
        f"{human_bytes(s.mem_used)} / {human_bytes(s.mem_limit)}",
        f"{s.mem_percent:.2f}%",
        f"{human_bytes(s.net_rx, False)} / {human_bytes(s.net_tx, False)}",
        f"{human_bytes(s.blk_read, False)} / {human_bytes(s.blk_write, False)}",
        str(s.pids),
    )


class StatsPane(VerticalScroll):
    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.table_rows: dict[str, tuple[str, ...]] = {}  # what the table shows, by container id
        self.graphs = {key: (FixedLabel(title, id=f"label-{key}", classes="graph-label"),
                             StatsGraph([], id=f"graph-{key}", summary_function=max)) for key, title in GRAPHS}

    def compose(self) -> ComposeResult:
        yield FixedLabel("", id="stats-title")
        for label, graph in self.graphs.values():
            with Vertical(classes="graph"):
                yield label
                yield graph
        yield FixedLabel("All running containers", classes="section")
        yield DataTable(id="all-stats", cursor_type="row")

    def on_mount(self) -> None:
        table = self.table
        for col, width in COLUMNS:
            table.add_column(col, key=col, width=width)

    @property
    def table(self) -> DataTable[str]:
        return self.query_one("#all-stats", DataTable)

    def reset(self, name: str) -> None:
        self.query_one("#stats-title", FixedLabel).set(f"[b]{name}[/]" if name else "")
        for key, title in GRAPHS:
            label, graph = self.graphs[key]
            graph.plot([])
            label.set(title)

    def show(self, history: History) -> None:
        last = history.last
        limit = last.mem_limit if last else 0
        for key, title in GRAPHS:
            series: Sequence[float] = getattr(history, key)
            label, graph = self.graphs[key]
            graph.plot(series)
            value = series[-1] if series else 0.0
            # the graph's scale: bars stand on zero and the tallest is the window's peak
            peak = ""
            if len(series) >= 2:
                top = human_bytes(max(series)) if key == "mem" else _fmt(key, max(series))
                peak = f"   [dim]0 to {top}[/]"
            label.set(f"{title}: [b]{_fmt(key, value, limit)}[/]{peak}")

    def show_table(self, rows: dict[str, tuple[str, Sample]]) -> int:
        """Make the table show these containers (id -> name and last sample), sorted by name: rows come and go,
        cells that changed are updated in place. Returns how many cells were written."""
        table = self.table
        wanted = {cid: table_cells(name, s) for cid, (name, s) in rows.items()}
        written = 0
        for cid in [c for c in self.table_rows if c not in wanted]:
            table.remove_row(cid)
            del self.table_rows[cid]
        added = False
        for cid, cells in wanted.items():
            old = self.table_rows.get(cid)
            if old is None:
                table.add_row(*cells, key=cid)
                written += len(cells)
                added = True
            else:
                for (col, _), new, was in zip(COLUMNS, cells, old, strict=True):
                    if new != was:
                        table.update_cell(cid, col, new)
                        written += 1
            self.table_rows[cid] = cells
        if added:
            table.sort("NAME")
        return written
