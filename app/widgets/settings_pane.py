"""The Settings tab: General (name, command, environment, restart policy), Ports, Network, Volumes.

Saving validates everything first (bad lines and port clashes are listed, nothing is sent), then shows what will
change; what the API can change is applied in place, the rest by a recreate that keeps every untouched field.
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
from textual.widgets import Button, Input, Label, Select, SelectionList, Static, TextArea

from app import settings as st


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
        yield Input(id="set-name")
        yield Label("Command (shell words; empty: the image's)")
        yield Input(id="set-command")
        yield Label("Environment (NAME=value, one per line)")
        yield TextArea(id="set-env", classes="editor")
        yield Label("Restart policy")
        yield Select([(p, p) for p in st.RESTART_POLICIES], id="set-restart", allow_blank=False, value="no")
        yield Label("Ports", classes="section")
        yield Label(
            "one per line: container port[/proto] -> [host address:]host port (empty: a free port)", markup=False
        )
        yield TextArea(id="set-ports", classes="editor")
        yield Label("Network", classes="section")
        yield Select([("default", "default")], id="set-mode", allow_blank=False, value="default")
        yield Label("Also connected to (user networks)")
        yield SelectionList[str](id="set-networks")
        yield Label("Volumes", classes="section")
        yield Label("one per line: /host/path:/container/path[:ro] or volume-name:/container/path[:ro]", markup=False)
        yield TextArea(id="set-binds", classes="editor")
        yield Static("", id="set-errors")
        with Horizontal(classes="buttons"):
            yield Button("Save (ctrl+s)", variant="primary", id="set-save")
            yield Button("Revert", id="set-revert")

    def load(self, cid: str, data: dict[str, Any], networks: list[str], containers: list[str]) -> None:
        self.container_id = cid
        s = st.from_inspect(data)
        self.loaded = s
        self.query_one("#set-name", Input).value = s.name
        self.query_one("#set-command", Input).value = st.format_command(s.command)
        self.query_one("#set-env", TextArea).text = "\n".join(s.env)
        self.query_one("#set-restart", Select).value = s.restart if s.restart in st.RESTART_POLICIES else "no"
        self.query_one("#set-ports", TextArea).text = "\n".join(str(p) for p in s.ports)
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
        self.query_one("#set-binds", TextArea).text = "\n".join(s.binds)
        self.show_errors([])

    def read(self) -> st.Settings:
        """The form as Settings; raises ValueError listing every bad line."""
        errors: list[str] = []
        name = self.query_one("#set-name", Input).value.strip()
        if not name:
            errors.append("the name is empty")
        ports: list[st.PortMapping] = []
        for n, line in enumerate(self.query_one("#set-ports", TextArea).text.splitlines(), 1):
            if line.strip():
                try:
                    ports.append(st.parse_port(line))
                except ValueError as exc:
                    errors.append(f"ports line {n}: {exc}")
        env: list[str] = []
        binds: list[str] = []
        command: list[str] | None = None
        try:
            env = st.parse_env(self.query_one("#set-env", TextArea).text.splitlines())
        except ValueError as exc:
            errors.append(str(exc))
        try:
            binds = st.parse_binds(self.query_one("#set-binds", TextArea).text.splitlines())
        except ValueError as exc:
            errors.append(str(exc))
        try:
            command = st.parse_command(self.query_one("#set-command", Input).value)
        except ValueError as exc:
            errors.append(f"command: {exc}")
        if errors:
            raise ValueError("\n".join(errors))
        return st.Settings(
            name=name,
            command=command,
            env=env,
            restart=str(self.query_one("#set-restart", Select).value),
            ports=ports,
            network_mode=str(self.query_one("#set-mode", Select).value),
            networks=sorted(self.query_one("#set-networks", SelectionList).selected),
            binds=binds,
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
