"""The container list: name, image, state in colour, published ports; filter as you type; multi-selection."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from app.containers import STATE_COLOURS, ContainerRow, grouped_order


class ContainerList(DataTable[Text]):
    """Rows keyed by container id; the set of rows is kept by the screen, the table shows the filtered ones."""

    BINDINGS = [
        Binding("space", "mark", "Mark", id="mark"),
        Binding("g", "mark_project", "Mark stack", id="mark_project"),
    ]

    @dataclass
    class Highlighted(Message):
        """The cursor moved to another container (or to none)."""

        container_id: str | None

    @dataclass
    class EmptyChanged(Message):
        """The list went from no containers to some, or back (the first-run hint shows while it has none)."""

        empty: bool

    _empty: bool | None = None

    def __init__(self, rows: list[ContainerRow] | None = None, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self._initial = rows
        self.rows_by_id: dict[str, ContainerRow] = {}
        self.marked: set[str] = set()
        self.filter_text = ""
        self._shown: list[str] = []
        self._drawn: dict[str, tuple[ContainerRow, bool]] = {}  # what each shown row's cells were made from
        self._measured: set[RowKey] = set()  # rows added with their cells measured here (_update_dimensions)
        self.host_label = ""  # the all-hosts list: the current host's name, shown before its rows' names

    def on_mount(self) -> None:
        self.add_column(" ", key="mark", width=1)
        self.add_column("NAME", key="name")
        self.add_column("IMAGE", key="image")
        self.add_column("STATE", key="state")
        self.add_column("PORTS", key="ports")
        if self._initial is not None:  # in the first frame, not a frame later
            rows, self._initial = self._initial, None
            self.set_rows(rows)

    # --- data ---

    def set_rows(self, rows: list[ContainerRow]) -> None:
        self.rows_by_id = {r.id: r for r in rows}
        self.marked &= set(self.rows_by_id)
        self.refresh_rows()

    def upsert(self, row: ContainerRow) -> None:
        self.rows_by_id[row.id] = row
        if row.id in self._shown:
            self._draw(row)
            if not row.matches(self.filter_text):
                self.refresh_rows()
        else:
            self.refresh_rows()

    def discard(self, cid: str) -> None:
        if self.rows_by_id.pop(cid, None) is not None:
            self.marked.discard(cid)
            self.refresh_rows()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.refresh_rows()

    def _ordered(self) -> list[ContainerRow]:
        return grouped_order([r for r in self.rows_by_id.values() if r.matches(self.filter_text)])

    def refresh_rows(self) -> None:
        empty = not self.rows_by_id
        if empty != self._empty:
            self._empty = empty
            self.post_message(self.EmptyChanged(empty))
        current = self.current_id
        rows = self._ordered()
        wanted = [r.id for r in rows]
        if wanted == self._shown:
            for r in rows:
                if self._drawn.get(r.id) != (r, r.id in self.marked):  # a reload of the same list redraws nothing
                    self._draw(r)
            return
        self.clear()
        widths = dict.fromkeys(("name", "image", "state", "ports"), 0)
        for r in rows:
            cells = [self._cell(r, c) for c in ("mark", "name", "image", "state", "ports")]
            self._measured.add(self.add_row(*cells, key=r.id))
            for col, cell in zip(widths, cells[1:], strict=True):
                widths[col] = max(widths[col], cell.cell_len)
        # The table measures new rows when it is next idle, but a frame drawn before that caches its lines with
        # the columns at their labels' widths and keeps them: measured here, the first frame has them right.
        for col, width in widths.items():
            column = self.columns[ColumnKey(col)]
            column.content_width = max(column.content_width, width)
        self._shown = wanted
        self._drawn = {r.id: (r, r.id in self.marked) for r in rows}
        if current in wanted:
            self.move_cursor(row=wanted.index(current), animate=False)
        self.post_message(self.Highlighted(self.current_id))

    def _update_dimensions(self, new_rows: Iterable[RowKey], *args: Any, **kwargs: Any) -> None:
        # The table's own pass over new rows (each cell formatted and measured through Rich, ~15 ms for 200 rows,
        # run before the first frame) is left to rows refresh_rows did not measure: its cell_len of a one-line
        # Text is what Rich's measure gives. The pass still sets the virtual size from the rows' heights. A private
        # DataTable method: extra arguments a later Textual adds are passed through, and a rename only loses this.
        measured, self._measured = self._measured, set()
        super()._update_dimensions([key for key in new_rows if key not in measured], *args, **kwargs)

    def _draw(self, row: ContainerRow) -> None:
        self._drawn[row.id] = (row, row.id in self.marked)
        for col in ("mark", "name", "image", "state", "ports"):
            self.update_cell(row.id, col, self._cell(row, col))

    def _cell(self, row: ContainerRow, col: str) -> Text:
        if col == "mark":
            return Text("●" if row.id in self.marked else " ", style="bold magenta")
        if col == "state":
            return Text(row.state, style=STATE_COLOURS.get(row.state, ""))
        if col == "name":
            host = row.host or self.host_label
            if host:  # the all-hosts list: every row says which host it is on
                return Text.assemble((f"{host} ▸ ", "cyan"), self._name_text(row))
            return self._name_text(row)
        return Text(getattr(row, col))

    @staticmethod
    def _name_text(row: ContainerRow) -> Text:
        if row.project:
            # The stack it belongs to, dimmed, so a compose project reads as one block.
            short = row.name
            for sep in ("-", "_"):  # compose v2 names project-service-N, v1 project_service_N
                short = short.removeprefix(row.project + sep)
            return Text.assemble((row.project, "dim"), (" / ", "dim"), (short, "bold"))
        return Text(row.name, style="bold")

    # --- selection ---

    @property
    def current_id(self) -> str | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= len(self._shown):
            return None
        return self._shown[self.cursor_row]

    @property
    def current(self) -> ContainerRow | None:
        cid = self.current_id
        return self.rows_by_id.get(cid) if cid else None

    def targets(self) -> list[ContainerRow]:
        """What an action applies to: the marked containers, else the one under the cursor."""
        if self.marked:
            return [self.rows_by_id[c] for c in self._shown if c in self.marked]
        row = self.current
        return [row] if row else []

    def select_id(self, cid: str) -> bool:
        if cid in self._shown:
            self.move_cursor(row=self._shown.index(cid), animate=False)
            return True
        return False

    def action_mark(self) -> None:
        cid = self.current_id
        if cid is None:
            return
        self.marked.symmetric_difference_update({cid})
        self._draw(self.rows_by_id[cid])
        if self.cursor_row < len(self._shown) - 1:
            self.move_cursor(row=self.cursor_row + 1)

    def action_mark_project(self) -> None:
        """Mark (or unmark) every container of the cursor's compose project, so a verb acts on the whole stack."""
        row = self.current
        if row is None or not row.project:
            self.notify("Not part of a compose project", severity="warning")
            return
        members = {r.id for r in self.rows_by_id.values() if r.project == row.project and r.host == row.host}
        if members <= self.marked:
            self.marked -= members
        else:
            self.marked |= members
        for cid in members & set(self._shown):
            self._draw(self.rows_by_id[cid])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.Highlighted(self.current_id))
