"""The Settings tab: General (name, command, restart policy), Environment, Ports, Network, Volumes.

Environment, Ports and Volumes are row editors (app/widgets/settings_rows.py): every field is checked as it is
typed and port clashes (twice in the form, published by another container, bound on this machine when the
engine is local) show by their row. Saving re-checks everything against the engine (nothing is sent while an
error remains), then shows what will change; what the API can change is applied in place, the rest by a
recreate that keeps every untouched field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, SelectionList, Static

from app import settings as st
from app.widgets.settings_rows import Check, EnvEditor, PortsEditor, VolumesEditor


def _check_command(text: str) -> str | None:
    try:
        st.parse_command(text)
    except ValueError as exc:
        return f"command: {exc}"
    return None


class SettingsPane(VerticalScroll):
    BINDINGS = [Binding("ctrl+s", "save", "Save settings", id="save_settings")]

    @dataclass
    class SaveRequested(Message):
        """The form parsed; the screen validates clashes against the engine and applies."""

        container_id: str
        settings: st.Settings

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.container_id: str | None = None
        self.loaded: st.Settings | None = None

    def compose(self) -> ComposeResult:
        yield Label("General", classes="section")
        yield Label("Name")
        yield Input(id="set-name", validators=[Check(lambda t: None if t.strip() else "the name is empty")])
        yield Label("Command (shell words; empty: the image's)")
        yield Input(id="set-command", validators=[Check(_check_command)])
        yield Label("Restart policy")
        yield Select([(p, p) for p in st.RESTART_POLICIES], id="set-restart", allow_blank=False, value="no")
        yield Label("Environment", classes="section")
        yield EnvEditor(id="set-env")
        yield Label("Ports", classes="section")
        yield Label("container port / protocol -> host IP (empty: all) : host port (empty: a free one)",
                    markup=False, classes="hint")
        yield PortsEditor(id="set-ports")
        yield Label("Network", classes="section")
        yield Select([("default", "default")], id="set-mode", allow_blank=False, value="default")
        yield Label("Also connected to (user networks)")
        yield SelectionList[str](id="set-networks")
        yield Label("Volumes", classes="section")
        yield Label("named volume or bind (host path) -> container path, rw/ro; `--mount` and anonymous volumes too",
                    markup=False, classes="hint")
        yield VolumesEditor(id="set-binds")
        yield Static("", id="set-errors")
        with Horizontal(classes="buttons"):
            yield Button("Save (ctrl+s)", variant="primary", id="set-save")
            yield Button("Revert", id="set-revert")

    @property
    def env_editor(self) -> EnvEditor:
        return self.query_one(EnvEditor)

    @property
    def ports_editor(self) -> PortsEditor:
        return self.query_one(PortsEditor)

    @property
    def volumes_editor(self) -> VolumesEditor:
        return self.query_one(VolumesEditor)

    async def load(self, cid: str, data: dict[str, Any], networks: list[str], containers: list[str], *,
                   container_list: list[dict[str, Any]] | None = None, volumes: list[str] | None = None,
                   local_engine: bool = True) -> None:
        """Fill the form from inspect. `container_list` (the API's list) and `local_engine` feed the port clash
        checks run as you type; `volumes` are the named volumes offered in the Volumes rows."""
        self.container_id = None  # not savable while the rows are being rebuilt
        s = st.from_inspect(data)
        self.query_one("#set-name", Input).value = s.name
        self.query_one("#set-command", Input).value = st.format_command(s.command)
        self.query_one("#set-restart", Select).value = s.restart if s.restart in st.RESTART_POLICIES else "no"
        user = [n for n in networks if n not in ("bridge", "host", "none")]
        modes = ["default", "bridge", "host", "none", *user, *(f"container:{c}" for c in containers if c != s.name)]
        if s.network_mode not in modes:
            modes.append(s.network_mode)
        mode = self.query_one("#set-mode", Select)
        mode.set_options([(m, m) for m in modes])
        mode.value = s.network_mode
        nets = self.query_one("#set-networks", SelectionList)
        nets.clear_options()
        for n in user:
            nets.add_option((n, n, n in s.networks))
        ports = self.ports_editor
        ports.container_id = cid
        ports.containers = list(container_list or [])
        ports.own_current = list(s.ports)
        ports.check_host = local_engine
        self.volumes_editor.volume_names = sorted(volumes or [])
        self.volumes_editor.anonymous = set(s.anonymous)
        await self.env_editor.set_values(s.env)
        await ports.set_values(s.ports)
        await self.volumes_editor.set_values([*s.binds, *s.mounts])
        self.show_errors([])
        self.loaded = s
        self.container_id = cid

    def read(self) -> st.Settings:
        """The form as Settings; raises ValueError listing every bad field (each is also shown by its field)."""
        errors: list[str] = []
        name = self.query_one("#set-name", Input).value.strip()
        if not name:
            errors.append("the name is empty")
        command: list[str] | None = None
        try:
            command = st.parse_command(self.query_one("#set-command", Input).value)
        except ValueError as exc:
            errors.append(f"command: {exc}")
        for title, editor in (("environment", self.env_editor), ("ports", self.ports_editor),
                              ("volumes", self.volumes_editor)):
            errors += [f"{title}: {e}" for e in editor.recheck()]
        if errors:
            raise ValueError("\n".join(errors))
        return st.Settings(
            name=name,
            command=command,
            env=self.env_editor.values(),
            restart=str(self.query_one("#set-restart", Select).value),
            ports=self.ports_editor.values(),
            network_mode=str(self.query_one("#set-mode", Select).value),
            networks=sorted(self.query_one("#set-networks", SelectionList).selected),
            binds=self.volumes_editor.binds(),
            mounts=self.volumes_editor.mounts(),
            anonymous=list(self.loaded.anonymous) if self.loaded else [],
        )

    def show_errors(self, errors: list[str]) -> None:
        box = self.query_one("#set-errors", Static)
        box.update("\n".join(f"[red]✗ {escape(e)}[/]" for e in errors))

    def action_save(self) -> None:
        if self.container_id is None:
            return
        try:
            new = self.read()
        except ValueError as exc:
            self.show_errors(str(exc).splitlines())
            return
        self.show_errors([])
        self.post_message(self.SaveRequested(self.container_id, new))

    @on(Button.Pressed, "#set-save")
    def _save(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#set-revert")
    def _revert(self) -> None:
        self.post_message(self.RevertRequested())

    class RevertRequested(Message):
        """Reload the form from the engine."""
