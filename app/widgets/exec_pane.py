"""The Exec tab: a command for the selected container (its shell by default) and the sessions run from here.

Running it suspends the TUI and hands the terminal to the exec (app/exec_shell.py), as `e` does; the tab keeps a
short record of what ran and how it ended, so a shell's exit status is still there when the TUI comes back.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Static

DEFAULT_HINT = "empty: bash if the image has it, else sh"


class ExecPane(Vertical):
    DEFAULT_CSS = """
    ExecPane { padding: 1 2; }
    ExecPane > Horizontal { height: auto; }
    ExecPane #exec-cmd { width: 1fr; }
    ExecPane #exec-target, ExecPane #exec-history { margin-top: 1; }
    """

    @dataclass
    class Run(Message):
        """Run `cmd` (None: the shell) in the selected container, with the terminal."""

        cmd: list[str] | None

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.sessions: list[str] = []

    def compose(self) -> ComposeResult:
        yield Label("No container selected", id="exec-target")
        with Horizontal():
            yield Input(placeholder=DEFAULT_HINT, id="exec-cmd")
            yield Button("Run in terminal (e)", id="exec-run", variant="primary")
        yield Static("", id="exec-history")

    def show_target(self, name: str | None, state: str | None) -> None:
        text = "No container selected" if name is None else f"{name} ({state}): the TUI steps aside while it runs"
        self.query_one("#exec-target", Label).update(text)

    def command(self) -> list[str] | None:
        """The typed command split as a shell would (None when empty: the container's shell)."""
        text = self.query_one("#exec-cmd", Input).value.strip()
        return shlex.split(text) if text else None

    def record(self, line: str) -> None:
        self.sessions = [*self.sessions, line][-10:]
        self.query_one("#exec-history", Static).update("\n".join(reversed(self.sessions)))

    @on(Button.Pressed, "#exec-run")
    @on(Input.Submitted, "#exec-cmd")
    def _run(self, event: Message) -> None:
        event.stop()
        try:
            cmd = self.command()
        except ValueError as exc:  # an unclosed quote
            self.notify(f"Command: {exc}", severity="error")
            return
        self.post_message(self.Run(cmd))
