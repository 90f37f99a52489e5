"""The host switcher (`h`): every Docker host portside knows, the current one marked, each with its state; Enter
switches, `a` adds a host (URL, TLS files, name), `d` removes one the user added, `r` tries again.

Hosts that are not open in the app's pool are probed once when the list opens (a `GET /version` with a short
timeout, on a thread each), so an unreachable one says why without being opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from app import hosts
from app.config import config_path
from app.hosts import Host, HostState
from app.messages import HostStateChanged, HostSwitched

STATE_STYLE = {"connected": "green", "unreachable": "red", "unavailable": "red", "connecting": "yellow",
               "reachable": "green"}


def host_line(host: Host, state: HostState, current: bool) -> Text:
    """One row of the switcher: current marker, name, where it points, what portside knows of its state."""
    mark = "▶ " if current else "  "
    text = Text.assemble((mark, "bold magenta"), (host.name, "bold"))
    if host.current:
        text.append(" *", style="bold")  # the docker CLI's current context, as `docker context ls` marks it
    where = (host.url if host.url != host.name else "") or host.description  # a -H host is named by its URL
    text.append(f"  {where}", style="dim")
    if host.tls is not None:
        text.append("  TLS" if host.tls.verify else "  TLS (no verify)", style="dim")
    text.append("\n    ")
    text.append(state.text, style=STATE_STYLE.get(state.state, "dim"))
    return text


class HostsScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HostsScreen { align: center middle; }
    HostsScreen .dialog { height: auto; max-height: 90%; }
    HostsScreen #host-list { height: auto; max-height: 24; }
    HostsScreen #host-help { color: $text-muted; height: auto; margin-top: 1; }
    """

    BINDINGS = [
        Binding("escape,h,H", "close", "Close"),
        Binding("a", "add", "Add host", id="host_add"),
        Binding("d,delete", "remove", "Remove host", id="host_remove"),
        Binding("r", "retry", "Retry", id="host_retry"),
    ]

    @dataclass
    class Probed(Message):
        name: str
        state: HostState

    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[Host] = []
        self.probed: dict[str, HostState] = {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("[b]Hosts[/]  (▶ shown now, * docker's current context)")
            yield OptionList(id="host-list")
            yield Static("Enter switch · a add · d remove (added hosts) · r retry · Esc close", id="host-help")

    @property
    def option_list(self) -> OptionList:
        return self.query_one("#host-list", OptionList)

    def on_mount(self) -> None:
        self.hosts = self.app.known_hosts()  # type: ignore[attr-defined]
        self.refresh_list()
        cur = self._current_name()
        names = [h.name for h in self.hosts]
        self.option_list.highlighted = names.index(cur) if cur in names else 0
        self.option_list.focus()
        for h in self.hosts:
            if self._pool_state(h.name) is None:
                self._probe(h)

    def _current_name(self) -> str | None:
        cur = getattr(self.app, "current_host", None)
        return cur.name if cur is not None else None

    def _pool_state(self, name: str) -> HostState | None:
        pool = getattr(self.app, "pool", None)
        conn = pool.get(name) if pool is not None else None
        return conn.status if conn is not None else None

    def state_of(self, name: str) -> HostState:
        return self._pool_state(name) or self.probed.get(name) or HostState("checking…")

    def refresh_list(self) -> None:
        ol = self.option_list
        keep = ol.highlighted
        ol.clear_options()
        cur = self._current_name()
        ol.add_options([Option(host_line(h, self.state_of(h.name), h.name == cur), id=h.name) for h in self.hosts])
        if keep is not None and self.hosts:
            ol.highlighted = min(keep, len(self.hosts) - 1)

    @work(thread=True, group="host-probe", exit_on_error=False)
    def _probe(self, host: Host) -> None:
        from app.host_pool import probe

        ep = None
        try:
            ep = self.app._resolve(host) if host.source != "portside" else None  # type: ignore[attr-defined]
            if ep is None:  # the local engine: its daemon's socket, or the embedded engine (not started here)
                from app import endpoint as endpoints

                if endpoints.socket_answers(endpoints.PORTSIDE_SOCKET):
                    ep = endpoints.Endpoint(f"unix://{endpoints.PORTSIDE_SOCKET}", "daemon", "")
                else:
                    self.post_message(self.Probed(host.name, HostState("embedded engine (starts when chosen)")))
                    return
            version = probe(ep)
            self.post_message(self.Probed(host.name, HostState("reachable", version=version)))
        except Exception as exc:
            reason = hosts.describe_error(exc, tls=ep.tls if ep is not None else None)
            self.post_message(self.Probed(host.name, HostState("unreachable", reason)))

    @on(Probed)
    def _probed(self, message: Probed) -> None:
        self.probed[message.name] = message.state
        self.refresh_list()

    @on(HostStateChanged)
    @on(HostSwitched)
    def _changed(self, _: Message) -> None:
        self.refresh_list()

    @property
    def highlighted_host(self) -> Host | None:
        i = self.option_list.highlighted
        return self.hosts[i] if i is not None and 0 <= i < len(self.hosts) else None

    @on(OptionList.OptionSelected, "#host-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        host = next((h for h in self.hosts if h.name == event.option.id), None)
        if host is not None:
            self.choose(host)

    def choose(self, host: Host) -> None:
        """Switch the app to `host` and go back to its containers (other screens showed the last host's data)."""
        app: Any = self.app
        from app.screens.main import MainScreen

        # this dialog, and an Images or Events screen under it, showed the last host
        while not isinstance(app.screen, MainScreen) and len(app.screen_stack) > 2:
            app.pop_screen()
        if app.current_host is None or app.current_host != host:
            app.switch_host(host)
        else:
            app.retry_host()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_retry(self) -> None:
        host = self.highlighted_host
        if host is None:
            return
        pool = getattr(self.app, "pool", None)
        conn = pool.get(host.name) if pool is not None else None
        if conn is not None:
            conn.retry()
        else:
            self.probed.pop(host.name, None)
            self.refresh_list()
            self._probe(host)

    def action_add(self) -> None:
        taken = {h.name for h in self.hosts}

        def added(host: Host | None) -> None:
            if host is None:
                return
            if self._save([*self.app.user_hosts, host]):  # type: ignore[attr-defined]
                self.notify(f"Added {host.name}", title="Hosts")
                self.hosts = self.app.known_hosts()  # type: ignore[attr-defined]
                self.refresh_list()
                self.option_list.highlighted = [h.name for h in self.hosts].index(host.name)
                self._probe(host)

        self.app.push_screen(AddHostScreen(taken), added)

    def action_remove(self) -> None:
        host = self.highlighted_host
        if host is None:
            return
        if not host.removable:
            self.notify(f"{host.name} is not a host you added ({host.source}): nothing to remove",
                        severity="warning")
            return
        if host.name == self._current_name():
            self.notify(f"{host.name} is shown now: switch to another host first", severity="warning")
            return
        from app.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes and self._save([h for h in self.app.user_hosts if h.name != host.name]):  # type: ignore
                pool = getattr(self.app, "pool", None)
                if pool is not None:
                    pool.close(host.name)
                self.hosts = self.app.known_hosts()  # type: ignore[attr-defined]
                self.refresh_list()

        self.app.push_screen(ConfirmScreen(f"Remove the host {host.name} ({host.url})?"), answered)

    def _save(self, user: list[Host]) -> bool:
        app: Any = self.app
        path = app.config.path or config_path()
        try:
            hosts.save_user_hosts(path, user)
        except (OSError, ValueError) as exc:
            self.notify(f"{path}: {exc}", title="Hosts not saved", severity="error")
            return False
        app.user_hosts = user
        return True


class AddHostScreen(ModalScreen[Host | None]):
    """The add-host form: name, URL, and for tcp:// with TLS the CA, client certificate and key files."""

    DEFAULT_CSS = """
    AddHostScreen { align: center middle; }
    AddHostScreen .field-label { margin-top: 1; color: $text-muted; }
    AddHostScreen #add-host-error { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, taken: set[str]) -> None:
        super().__init__()
        self.taken = taken

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("[b]Add a host[/]")
            yield Label("URL: unix:///path/docker.sock, tcp://host:2376, ssh://user@host", classes="field-label")
            yield Input(placeholder="tcp://127.0.0.1:2376", id="host-url")
            yield Label("Name", classes="field-label")
            yield Input(placeholder="build-box", id="host-name")
            yield Label("TLS (tcp:// only; empty for none): CA, client certificate, client key",
                        classes="field-label")
            yield Input(placeholder="ca.pem", id="host-ca")
            yield Input(placeholder="cert.pem", id="host-cert")
            yield Input(placeholder="key.pem", id="host-key")
            yield Checkbox("verify the host's certificate", value=True, id="host-verify")
            yield Static("", id="add-host-error")
            with Horizontal(classes="buttons"):
                yield Button("Add", variant="primary", id="add")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#host-url", Input).focus()

    def _value(self, wid: str) -> str:
        return self.query_one(f"#{wid}", Input).value

    @on(Input.Changed, "#host-url")
    def _suggest_name(self, event: Input.Changed) -> None:
        """A name from the URL's host part until one is typed."""
        box = self.query_one("#host-name", Input)
        if box.value and box.value != getattr(self, "_suggested", ""):
            return
        rest = event.value.partition("://")[2]
        guess = rest.rsplit("/", 1)[-1].removesuffix(".sock") if event.value.startswith("unix://") else \
            rest.split("/", 1)[0].rpartition("@")[2].split(":")[0]
        guess = "".join(c if c.isalnum() or c in "_.+-" else "-" for c in guess).strip("-._+")
        self._suggested = guess
        box.value = guess

    def form_host(self) -> Host:
        """The host the fields describe; HostError says what is wrong."""
        return hosts.make_user_host(self._value("host-name"), self._value("host-url"), self._value("host-ca"),
                                    self._value("host-cert"), self._value("host-key"),
                                    verify=self.query_one("#host-verify", Checkbox).value, taken=self.taken)

    def submit(self) -> None:
        try:
            host = self.form_host()
        except hosts.HostError as exc:
            self.query_one("#add-host-error", Static).update(escape(str(exc)))
            return
        self.dismiss(host)

    @on(Input.Submitted)
    def _submitted(self, _: Input.Submitted) -> None:
        self.submit()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "add":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
