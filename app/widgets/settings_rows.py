"""Row editors of the Settings tab: Ports, Environment and Volumes as rows of fields instead of text lines.

Each field is checked as it is typed (Textual validators: the field turns red and the row's error line says
why); checks across rows (the same host port twice, a port another container publishes, a duplicate mount
point) are run by the editor after every change. Keys: Enter in a row adds a row below it, ctrl+d deletes the
row holding the focus, tab/shift+tab move between fields; every row also has a delete button for the mouse.
A row left completely empty is ignored, so Enter never adds anything by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.validation import ValidationResult, Validator
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static

from app import settings as st


class Check(Validator):
    """A validator from a `check(text) -> error or None` function of app.settings."""

    def __init__(self, check: Callable[[str], str | None]) -> None:
        super().__init__()
        self.check = check

    def validate(self, value: str) -> ValidationResult:
        error = self.check(value)
        return self.failure(error) if error else self.success()


def _field_error(inp: Input) -> str | None:
    for v in inp.validators:
        if isinstance(v, Check) and (err := v.check(inp.value)):
            return err
    return None


T = TypeVar("T")


class Row(Vertical, Generic[T]):
    """A row: its fields on one line, a delete button, and an error line under them."""

    DEFAULT_CSS = """
    Row { height: auto; }
    Row > .row-fields { height: auto; }
    Row .row-error { height: auto; color: $error; padding: 0 1; }
    Row .row-del { min-width: 5; width: 5; }
    Row .arrow { width: 4; padding: 1 1 0 1; }
    Row Input { width: 1fr; }
    Row Input.-clash { border: tall $error; }
    Row .port-cport, Row .port-hport { width: 18; }
    Row .port-proto { width: 12; }
    Row .env-key { width: 2fr; }
    Row .env-value { width: 3fr; }
    Row .vol-kind { width: 14; }
    Row .vol-mode { width: 10; }
    Row .vol-note { width: 11; padding: 1 0 0 1; color: $text-muted; }
    """

    def __init__(self, value: T | None = None) -> None:
        super().__init__()
        self.original = value
        self.clash: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row-fields"):
            yield from self.fields()
            yield Button("✕", classes="row-del", tooltip="delete this row (ctrl+d)")
        yield Static("", classes="row-error")

    def fields(self) -> ComposeResult:
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """Every field is mounted: the delete button comes last among them, the error line after them."""
        return self.is_attached and bool(self.query(".row-del")) and bool(self.query(".row-error"))

    def inputs(self) -> list[Input]:
        return list(self.query(Input))

    def is_blank(self) -> bool:
        return all(not i.value.strip() for i in self.inputs())

    def field_errors(self) -> list[str]:
        if self.is_blank():
            return []
        return [e for i in self.inputs() if (e := _field_error(i))]

    def value(self) -> T | None:
        """The row's value when every field is valid; None when blank or invalid."""
        raise NotImplementedError

    def show_errors(self) -> list[str]:
        errors = self.field_errors()
        if self.clash:
            errors.append(self.clash)
        for inp in self.inputs():
            inp.set_class(bool(self.clash) and inp.has_class("clash-field"), "-clash")
            if self.is_blank():
                inp.set_class(False, "-invalid")
        box = self.query_one(".row-error", Static)
        box.update("\n".join(f"✗ {escape(e)}" for e in errors))
        box.display = bool(errors)
        return errors

    def focus_first(self) -> None:
        self.query(Input).first().focus()


class PortRow(Row[st.PortMapping]):
    """container port / proto -> host IP : host port."""

    def fields(self) -> ComposeResult:
        p = self.original
        yield Input(str(p.container_port) if p else "", placeholder="container port", classes="port-cport",
                    validators=[Check(lambda t: st.check_port_text(t, "container port", required=True))])
        yield Select([(x, x) for x in st.PROTOCOLS], value=p.proto if p else "tcp", allow_blank=False,
                     classes="port-proto")
        yield Label("->", classes="arrow")
        yield Input(p.host_ip if p else "", placeholder="host IP (all)", classes="port-hip",
                    validators=[Check(st.check_host_ip)])
        yield Input(str(p.host_port) if p and p.host_port else "", placeholder="host port (free)",
                    classes="port-hport clash-field",
                    validators=[Check(lambda t: st.check_port_text(t, "host port", required=False))])

    def value(self) -> st.PortMapping | None:
        if self.is_blank() or self.field_errors():
            return None
        hp = self.query_one(".port-hport", Input).value.strip()
        return st.PortMapping(int(self.query_one(".port-cport", Input).value.strip()),
                              str(self.query_one(".port-proto", Select).value),
                              self.query_one(".port-hip", Input).value.strip().strip("[]"),
                              int(hp) if hp else None)


class EnvRow(Row[str]):
    """KEY = VALUE."""

    def fields(self) -> ComposeResult:
        key, _, val = (self.original or "").partition("=")
        yield Input(key, placeholder="NAME", classes="env-key clash-field", validators=[Check(st.check_env_key)])
        yield Label("=", classes="arrow")
        yield Input(val, placeholder="value", classes="env-value")

    def is_blank(self) -> bool:
        return not self.key

    @property
    def key(self) -> str:
        return self.query_one(".env-key", Input).value.strip()

    def value(self) -> str | None:
        if self.is_blank() or self.field_errors():
            return None
        val = self.query_one(".env-value", Input).value
        text = f"{self.key}={val}"
        # an entry written without '=' (pass the variable through) stays as it was when untouched
        if self.original is not None and "=" not in self.original and self.original == self.key and not val:
            return self.original
        return text


class VolumeRow(Row[st.BindEntry]):
    """bind host path, named volume (or tmpfs, for a `--mount`) -> container path, rw/ro.

    A row comes from a HostConfig.Binds entry (`raw`), from a HostConfig.Mounts entry (`mount`, noted `--mount`)
    or is new; an anonymous volume shows as a volume row with its generated name, noted `anonymous`."""

    def __init__(self, value: st.BindEntry | None = None, *, raw: str | None = None,
                 volume_names: list[str] | None = None, mount: dict[str, Any] | None = None, note: str = "") -> None:
        super().__init__(value)
        self.raw = raw  # the Binds entry as the engine had it: given back unchanged while the row is untouched
        self.mount_spec = mount  # the Mounts entry as the engine had it, likewise
        self.note = note
        self.volume_names = volume_names or []

    def fields(self) -> ComposeResult:
        b = self.original
        kind = str(self.mount_spec.get("Type") or "volume") if self.mount_spec else (b.kind if b else "volume")
        kinds = ["tmpfs"] if kind == "tmpfs" else ["volume", "bind"]
        yield Select([(k, k) for k in kinds], value=kind, allow_blank=False, classes="vol-kind")
        yield Input(b.source if b else "", placeholder=_SOURCE_HINT.get(kind, ""), disabled=kind == "tmpfs",
                    classes="vol-source", validators=[Check(lambda t: st.check_volume_source(self.kind, t))],
                    suggester=SuggestFromList(self.volume_names, case_sensitive=True) if kind == "volume" else None)
        yield Label("->", classes="arrow")
        yield Input(b.target if b else "", placeholder="/container/path", classes="vol-target clash-field",
                    validators=[Check(st.check_container_path)])
        yield Select([("rw", "rw"), ("ro", "ro")], value="ro" if b and b.read_only else "rw", allow_blank=False,
                     classes="vol-mode")
        if self.note:
            yield Label(self.note, classes="vol-note")

    @property
    def kind(self) -> str:
        try:
            return str(self.query_one(".vol-kind", Select).value)
        except Exception:
            if self.mount_spec:
                return str(self.mount_spec.get("Type") or "volume")
            return self.original.kind if self.original else "volume"

    @property
    def target(self) -> str:
        return self.query_one(".vol-target", Input).value.strip()

    @on(Select.Changed, ".vol-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        source = self.query_one(".vol-source", Input)
        volume = event.value == "volume"
        source.placeholder = _SOURCE_HINT.get(str(event.value), "")
        source.suggester = SuggestFromList(self.volume_names, case_sensitive=True) if volume else None
        source.validate(source.value)

    def value(self) -> st.BindEntry | None:
        if self.is_blank() or self.field_errors():
            return None
        entry = st.BindEntry(self.query_one(".vol-source", Input).value.strip(), self.target,
                             self.query_one(".vol-mode", Select).value == "ro",
                             self.original.options if self.original else ())
        return entry


_SOURCE_HINT = {"volume": "volume name", "bind": "/host/path", "tmpfs": "(memory)"}


R = TypeVar("R", bound=Row[Any])


class RowsEditor(Vertical, Generic[R]):
    """A list of rows with an Add button; posts Changed after every edit so the pane can re-check."""

    ROW: ClassVar[type[Row[Any]]]
    ADD_LABEL: ClassVar[str] = "+ Add"
    # priority: the focused Input would take ctrl+d (delete right) first
    BINDINGS = [Binding("ctrl+d", "delete_row", "Delete row", id="delete_row", priority=True)]
    DEFAULT_CSS = """
    RowsEditor { height: auto; }
    RowsEditor > .rows { height: auto; }
    RowsEditor > .row-add { margin-left: 1; }
    """

    class Changed(Message):
        """A field, a row or the set of rows changed."""

        def __init__(self, editor: RowsEditor[Any]) -> None:
            super().__init__()
            self.editor = editor

    def compose(self) -> ComposeResult:
        yield Vertical(classes="rows")
        yield Button(self.ADD_LABEL, classes="row-add")

    def make_row(self, value: Any) -> Row[Any]:
        return self.ROW(value)

    @property
    def rows(self) -> list[R]:
        """The rows whose fields exist (a row just mounted has none until it has composed)."""
        box = self.query_one(".rows", Vertical)
        return [r for r in box.query_children(self.ROW) if r.ready]  # type: ignore[misc]

    async def set_values(self, values: list[Any]) -> None:
        box = self.query_one(".rows", Vertical)
        await box.remove_children()
        await box.mount_all([self.make_row(v) for v in values])
        self.recheck()

    async def add_row(self, after: Row[Any] | None = None) -> Row[Any]:
        row = self.make_row(None)
        box = self.query_one(".rows", Vertical)
        if after is not None and after in box.children:
            await box.mount(row, after=after)
        else:
            await box.mount(row)
        row.focus_first()
        row.scroll_visible()
        self.recheck()
        return row

    async def delete_row(self, row: Row[Any]) -> None:
        rows = self.rows
        index = rows.index(row) if row in rows else -1
        await row.remove()
        rest = self.rows
        if rest:
            rest[min(index, len(rest) - 1)].focus_first()
        else:
            self.query_one(".row-add", Button).focus()
        self.recheck()

    def _row_of(self, widget: Widget | None) -> Row[Any] | None:
        while widget is not None and widget is not self:
            if isinstance(widget, Row):
                return widget
            widget = widget.parent  # type: ignore[assignment]
        return None

    async def action_delete_row(self) -> None:
        row = self._row_of(self.screen.focused)
        if row is not None:
            await self.delete_row(row)

    @on(Button.Pressed, ".row-add")
    async def _add_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        await self.add_row()

    @on(Button.Pressed, ".row-del")
    async def _del_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        row = self._row_of(event.button)
        if row is not None:
            await self.delete_row(row)

    @on(Input.Submitted)
    async def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        await self.add_row(after=self._row_of(event.input))

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Message) -> None:
        self.recheck()

    def values(self) -> list[Any]:
        return [v for r in self.rows if (v := r.value()) is not None]

    def cross_row_errors(self) -> dict[int, str]:
        """Errors that involve more than one row, by row index."""
        return {}

    def recheck(self) -> list[str]:
        """Show every row's errors; return them all (empty: the editor's values can be saved)."""
        clashes = self.cross_row_errors()
        errors: list[str] = []
        for i, row in enumerate(self.rows):
            row.clash = clashes.get(i)
            errors += row.show_errors()
        self.post_message(self.Changed(self))
        return errors


class PortsEditor(RowsEditor[PortRow]):
    ROW = PortRow
    ADD_LABEL = "+ Add port"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.container_id = ""
        self.containers: list[dict[str, Any]] = []  # the engine's container list, for ports others publish
        self.own_current: list[st.PortMapping] = []
        self.check_host = True  # the engine is on this machine: a port bound here clashes too

    def cross_row_errors(self) -> dict[int, str]:
        found = st.port_clashes([r.value() for r in self.rows], self.container_id, self.containers,
                                self.own_current, check_host=self.check_host)
        return {i: "; ".join(errs) for i, errs in found.items()}


class EnvEditor(RowsEditor[EnvRow]):
    ROW = EnvRow
    ADD_LABEL = "+ Add variable"

    def cross_row_errors(self) -> dict[int, str]:
        return st.env_key_clashes([r.key or None for r in self.rows])


class VolumesEditor(RowsEditor[VolumeRow]):
    ROW = VolumeRow
    ADD_LABEL = "+ Add volume"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.volume_names: list[str] = []  # the engine's named volumes, offered while typing a volume's name
        self.anonymous: set[str] = set()  # Binds-style entries that stand for anonymous volumes

    def make_row(self, value: Any) -> Row[Any]:
        """`value`: None (a new row), a Binds entry, or a Mounts entry (a dict)."""
        if value is None:
            return VolumeRow(None, volume_names=self.volume_names)
        if isinstance(value, dict):
            return VolumeRow(st.mount_entry(value), mount=value, note="--mount", volume_names=self.volume_names)
        note = "anonymous" if value in self.anonymous else ""
        return VolumeRow(st.parse_bind(value), raw=value, note=note, volume_names=self.volume_names)

    def binds(self) -> list[str]:
        """The Binds rows (and new ones) as HostConfig.Binds entries; an untouched row gives back its entry
        exactly."""
        out = []
        for row in self.rows:
            entry = row.value()
            if entry is None or row.mount_spec is not None:
                continue
            out.append(row.raw if row.raw is not None and entry == row.original else str(entry))
        return out

    def mounts(self) -> list[dict[str, Any]]:
        """The rows that came from HostConfig.Mounts, as Mounts entries; an untouched row gives back its entry."""
        out = []
        for row in self.rows:
            entry = row.value()
            if entry is None or row.mount_spec is None:
                continue
            out.append(row.mount_spec if entry == row.original else st.edited_mount(row.mount_spec, row.kind, entry))
        return out

    def cross_row_errors(self) -> dict[int, str]:
        return st.mount_point_clashes([r.target or None for r in self.rows])
