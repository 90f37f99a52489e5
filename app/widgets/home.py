"""The Home tab: published URLs with a live HTTP check, a CPU/memory summary, and the live log view."""

from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, Static

from app.stats import History, human_bytes
from app.widgets.fixed_label import FixedLabel
from app.widgets.log_view import LogView


class HomePane(Vertical):
    BINDINGS = [Binding("slash", "search", "Search logs", id="log_search")]

    _urls_text: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="urls")
        yield FixedLabel("", id="summary")
        yield Static("", id="log-status")
        yield LogView(id="logs")
        yield Input(placeholder="search the log (regex); Enter keeps it, Esc clears", id="log-search")

    def on_mount(self) -> None:
        self.search_input.display = False  # until `/` opens it

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    @property
    def search_input(self) -> Input:
        return self.query_one("#log-search", Input)

    def action_search(self) -> None:
        self.search_input.display = True
        self.search_input.focus()

    @on(Input.Changed, "#log-search")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.log_view.search(event.value)

    @on(Input.Submitted, "#log-search")
    def _search_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.log_view.focus()

    def key_escape(self) -> None:
        if self.search_input.has_focus:
            self.search_input.value = ""
            self.search_input.display = False
            self.log_view.focus()

    @on(LogView.StatusChanged)
    def _status(self, event: LogView.StatusChanged) -> None:
        event.stop()
        # one line of fixed height: no layout of the screen (the text is plain, a search pattern is no markup)
        self.query_one("#log-status", Static).update(Content(event.text), layout=False)

    def show_urls(self, states: dict[str, str]) -> None:
        if not states:
            text = "[dim]no published TCP ports[/]"
        else:
            text = "\n".join(f"[b]{escape(url)}[/] -> {escape(state)}" for url, state in states.items())
        if text != self._urls_text:  # the check repeats every few seconds: an unchanged answer costs nothing
            self._urls_text = text
            self.query_one("#urls", Static).update(text)

    def show_summary(self, history: History | None, state: str) -> None:
        last = history.last if history else None
        if last is None:
            text = f"[dim]{state}: no stats[/]" if state else ""
        else:
            limit = human_bytes(last.mem_limit) if last.mem_limit else "no limit"
            text = (f"CPU [b]{last.cpu_percent:.2f}%[/]   MEM [b]{human_bytes(last.mem_used)}[/] / {limit}"
                    f" ({last.mem_percent:.2f}%)   PIDs {last.pids}")
        self.query_one("#summary", FixedLabel).set(text)
