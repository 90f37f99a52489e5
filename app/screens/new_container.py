"""New container: search local images, the recommended list, configured registries and Docker Hub as you type;
Enter runs the highlighted image (pull with progress, then run with its ports published); t picks a tag.
A full reference (a registry, a tag or a digest in it) is offered first, to run as typed without a search hit;
a search that names a registry (`127.0.0.1:5000/team`) asks that registry's catalog instead of Docker Hub."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Header, Input, Label, OptionList
from textual.widgets.option_list import Option

from app import images
from app.images import Candidate
from app.lifecycle import error_text
from app.messages import RunImage


class TagScreen(ModalScreen[str | None]):
    """Pick a tag; typing filters the list (Kitematic's tag filter), Enter takes the highlighted one."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel"), Binding("down", "focus_tags", show=False)]

    def __init__(self, reference: str, tags: list[str]) -> None:
        super().__init__()
        self.reference = reference
        self.tags = tags
        self.shown = list(tags)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Tags of [b]{escape(self.reference)}[/]")
            yield Input(placeholder="filter tags", id="tag-filter")
            yield OptionList(*[Option(t, id=t) for t in self.tags], id="tags")

    def on_mount(self) -> None:
        self.query_one("#tag-filter", Input).focus()

    @on(Input.Changed, "#tag-filter")
    def _filter(self, event: Input.Changed) -> None:
        text = event.value.strip().lower()
        self.shown = [t for t in self.tags if text in t.lower()]
        tags = self.query_one("#tags", OptionList)
        tags.clear_options()
        tags.add_options([Option(t, id=t) for t in self.shown])
        if self.shown:
            tags.highlighted = 0

    @on(Input.Submitted, "#tag-filter")
    def _take(self, _: Input.Submitted) -> None:
        if self.shown:
            self.dismiss(self.shown[self.query_one("#tags", OptionList).highlighted or 0])

    def action_focus_tags(self) -> None:
        self.query_one("#tags", OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


def _short(exc: BaseException) -> str:
    text = " ".join(error_text(exc).split())
    return text if len(text) <= 80 else text[:79] + "…"


class NewContainerScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("t", "tags", "Tags", id="pick_tag"),
        Binding("k", "kube_play", "Play Kubernetes YAML", id="kube_play"),
        Binding("down", "focus_results", show=False),
    ]

    @dataclass
    class Results(Message):
        query: str
        source: str
        candidates: list[Candidate]
        note: str = ""  # why a source gave nothing (unreachable), shown under the search box

    def __init__(self) -> None:
        super().__init__()
        self.by_source: dict[str, list[Candidate]] = {}
        self.notes: dict[str, str] = {}
        self.shown: list[Candidate] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="search images: local, recommended, registries, Docker Hub", id="image-search")
        yield Label("", id="search-note", markup=False)
        yield OptionList(id="results")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._search("")

    @property
    def results(self) -> OptionList:
        return self.query_one("#results", OptionList)

    @on(Input.Changed, "#image-search")
    def _changed(self, event: Input.Changed) -> None:
        # results belong to the query they answer: a registry's list for "" must not stand for "busybox" until the
        # debounced search answers
        self.by_source.clear()
        self.notes.clear()
        self._search(event.value.strip())

    @on(Input.Submitted, "#image-search")
    def _submitted(self, event: Input.Submitted) -> None:
        if self.shown:
            self._run(self.shown[self.results.highlighted or 0])

    def action_focus_results(self) -> None:
        self.results.focus()

    @work(thread=True, exclusive=True, group="image-search", exit_on_error=False)
    def _search(self, query: str) -> None:
        app = self.app
        self.post_message(self.Results(query, "recommended", images.recommended_candidates(query)))
        try:
            api = app.wait_engine(5).api  # type: ignore[attr-defined]
            self.post_message(self.Results(query, "local", images.local_candidates(api, query)))
        except Exception:
            api = None
        time.sleep(0.2)  # debounce the network searches, as Kitematic did
        named = images.registry_of(query)  # `127.0.0.1:5000/te` searches that registry, whether configured or not
        searched = [(host, query) for host in app.config.registries]  # type: ignore[attr-defined]
        if named is not None:
            searched = [(named, query.partition("/")[2])] + [(h, q) for h, q in searched if h != named]
        for host, words in searched:
            source = f"registry {host}"
            try:
                self.post_message(self.Results(query, source, images.registry_candidates(host, words)))
            except Exception as exc:  # an unreachable registry gives no results and a note naming it, not an error
                self.post_message(self.Results(query, source, [], f"{host} not reachable ({_short(exc)})"))
        if api is not None and query and named is None and app.config.hub_search:  # type: ignore[attr-defined]
            try:
                self.post_message(self.Results(query, "hub", images.hub_candidates(api, query)))
            except Exception as exc:  # offline: say so quietly
                self.post_message(self.Results(query, "hub", [], f"Docker Hub not reachable ({_short(exc)})"))

    @on(Results)
    def _results(self, message: Results) -> None:
        if message.query != self.query_one(Input).value.strip():
            return
        self.by_source[message.source] = message.candidates
        self.notes[message.source] = message.note
        order = ["local", "recommended", *sorted(s for s in self.by_source if s.startswith("registry")), "hub"]
        self.shown = [c for s in order for c in self.by_source.get(s, [])]
        typed = images.typed_reference(message.query)
        if typed is not None:  # a full reference runs as typed, whether or not a search finds it
            self.shown.insert(0, Candidate(typed, "reference", "run this reference directly", tag=""))
        self.results.clear_options()
        for c in self.shown:
            ref = f"{c.reference}:{c.tag}" if c.source == "local" else c.reference
            source = "run" if c.source == "reference" else c.source
            self.results.add_option(Option(f"[b]{escape(ref)}[/]  [dim]{escape(source)}[/]  {escape(c.description)}"))
        if self.shown:
            self.results.highlighted = 0
        notes = [n for n in self.notes.values() if n]
        self.query_one("#search-note", Label).update("; ".join([f"{len(self.shown)} images", *notes]))

    @on(OptionList.OptionSelected, "#results")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self._run(self.shown[event.option_index])

    def _run(self, c: Candidate, tag: str | None = None) -> None:
        if tag and c.source == "reference":  # a tag picked for a typed reference replaces the typed tag
            reference = f"{images.split_reference(c.reference)[0]}:{tag}"
        else:
            reference = f"{c.reference}:{tag or c.tag}" if (tag or c.tag) else c.reference
        self.app.pop_screen()
        main = self.app.screen
        main.post_message(RunImage(reference))

    def action_kube_play(self) -> None:
        from app.screens.kube import play_yaml

        play_yaml(self)

    def action_tags(self) -> None:
        if not self.shown:
            return
        c = self.shown[self.results.highlighted or 0]
        self._load_tags(c)

    @work(thread=True, exit_on_error=False)
    def _load_tags(self, c: Candidate) -> None:
        try:
            repo = images.split_reference(c.reference)[0] if c.source == "reference" else c.reference
            tags = images.tags_for(self.app.wait_engine().api, repo)  # type: ignore[attr-defined]
        except Exception as exc:
            self.app.fail("Tags", exc)  # type: ignore[attr-defined]
            return

        def show() -> None:
            def chosen(tag: str | None) -> None:
                if tag:
                    self._run(c, tag)

            self.app.push_screen(TagScreen(repo, tags), chosen)

        self.app.call_from_thread(show)
