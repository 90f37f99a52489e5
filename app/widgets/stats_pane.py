"""The Stats tab: graphs over time of CPU %, memory, network and block IO rates and PIDs, plus a compact table
of every running container (streams for that table run only while the tab is shown)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Label, Sparkline

from app.stats import History, human_bytes

GRAPHS = (
    ("cpu", "CPU %"),
    ("mem", "Memory"),
    ("net_rx_rate", "Net in /s"),
    ("net_tx_rate", "Net out /s"),
    ("blk_read_rate", "Block read /s"),
    ("blk_write_rate", "Block write /s"),
    ("pids", "PIDs"),
)


def _fmt(key: str, value: float, limit: int = 0) -> str:
    if key == "cpu":
        return f"{value:.2f}%"
    if key == "mem":
        return f"{human_bytes(value)} / {human_bytes(limit) if limit else 'no limit'}"
    if key == "pids":
        return f"{value:.0f}"
    return f"{human_bytes(value, binary=False)}/s"


class StatsPane(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Label("", id="stats-title")
        for key, title in GRAPHS:
            with Vertical(classes="graph"):
                yield Label(title, id=f"label-{key}", classes="graph-label")
                yield Sparkline([], id=f"graph-{key}", summary_function=max)
        yield Label("All running containers", classes="section")
        yield DataTable(id="all-stats", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#all-stats", DataTable)
        for col in ("NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"):
            table.add_column(col, key=col)

    def reset(self, name: str) -> None:
        self.query_one("#stats-title", Label).update(f"[b]{name}[/]" if name else "")
        for key, title in GRAPHS:
            self.query_one(f"#graph-{key}", Sparkline).data = []
            self.query_one(f"#label-{key}", Label).update(title)

    def show(self, history: History) -> None:
        last = history.last
        limit = last.mem_limit if last else 0
        for key, title in GRAPHS:
            series: Sequence[float] = getattr(history, key)
            self.query_one(f"#graph-{key}", Sparkline).data = list(series)
            value = series[-1] if series else 0.0
            self.query_one(f"#label-{key}", Label).update(f"{title}: [b]{_fmt(key, value, limit)}[/]")

    def show_table(self, rows: dict[str, tuple[str, History]]) -> None:
        """One row per running container: the same columns as `docker stats`."""
        table = self.query_one("#all-stats", DataTable)
        table.clear()
        for cid, (name, h) in sorted(rows.items(), key=lambda kv: kv[1][0]):
            s = h.last
            if s is None:
                continue
            table.add_row(
                name,
                f"{s.cpu_percent:.2f}%",
                f"{human_bytes(s.mem_used)} / {human_bytes(s.mem_limit)}",
                f"{s.mem_percent:.2f}%",
                f"{human_bytes(s.net_rx, False)} / {human_bytes(s.net_tx, False)}",
                f"{human_bytes(s.blk_read, False)} / {human_bytes(s.blk_write, False)}",
                str(s.pids),
                key=cid,
            )
