"""Images, Networks, Volumes (list, create or pull, remove, inspect; images also history and prune) and Events.

Each list reloads on the engine's events for its type, not by polling.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, RichLog

from app.key_hint import key_of
from app.messages import DockerEvent, RunImage
from app.stats import human_bytes
from app.widgets.json_tree import JsonTree


class NameScreen(ModalScreen[str | None]):
    """Ask for one line of text (a name, an image reference)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str) -> None:
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.prompt, markup=False)
            yield Input(id="name-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class JsonScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Close")]

    def __init__(self, title: str, data: Any) -> None:
        super().__init__()
        self.title_text = title
        self.data = data

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog json-dialog"):
            yield JsonTree()

    def on_mount(self) -> None:
        self.query_one(JsonTree).load(self.data, self.title_text)


class TableScreen(Screen[None]):
    """A list of one kind of engine object; subclasses say how to list, name and act on them."""

    KIND: ClassVar[str] = ""
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("delete,d", "remove", "Remove", id="resource_remove"),
        Binding("i,enter", "inspect", "Inspect", id="resource_inspect"),
        Binding("space", "mark", "Mark", id="resource_mark"),
    ]

    @dataclass
    class Loaded(Message):
        rows: list[tuple[str, tuple[str, ...]]]

    @dataclass
    class ShowJson(Message):
        title: str
        data: Any

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label(self.KIND.capitalize(), classes="section")
        yield DataTable(id="resource-table", cursor_type="row")
        yield Footer()

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one(DataTable)

    def on_mount(self) -> None:
        self.marked: set[str] = set()  # Remove acts on these when there are any, as on the containers screen
        self.table.add_column(" ", key="mark", width=1)
        for col in self.COLUMNS:
            self.table.add_column(col, key=col)
        self.table.focus()
        self.load()

    def _mark_cell(self, key: str) -> Text:
        return Text("●" if key in self.marked else " ", style="bold magenta")

    def action_mark(self) -> None:
        key = self.current_key
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        self.table.update_cell(key, "mark", self._mark_cell(key))
        if self.table.cursor_row < self.table.row_count - 1:
            self.table.move_cursor(row=self.table.cursor_row + 1)

    def targets(self) -> list[str]:
        """The marked rows in list order, else the one under the cursor."""
        if self.marked:
            return [str(k.value) for k in self.table.rows if str(k.value) in self.marked]
        key = self.current_key
        return [key] if key is not None else []

    def list_rows(self, api: Any) -> list[tuple[str, tuple[str, ...]]]:
        raise NotImplementedError

    @work(thread=True, exclusive=True, group="resource-list", exit_on_error=False)
    def load(self) -> None:
        try:
            rows = self.list_rows(self.app.wait_engine().api)  # type: ignore[attr-defined]
        except Exception as exc:
            self.app.fail(f"Listing {self.KIND}", exc)  # type: ignore[attr-defined]
            return
        self.post_message(self.Loaded(rows))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        row = self.table.cursor_row
        self.table.clear()
        self.marked &= {key for key, _ in message.rows}
        for key, cells in message.rows:
            self.table.add_row(self._mark_cell(key), *cells, key=key)
        if message.rows:
            self.table.move_cursor(row=min(row, len(message.rows) - 1))
        self.rows_loaded(message.rows)

    def rows_loaded(self, rows: list[tuple[str, tuple[str, ...]]]) -> None:
        """The list was (re)loaded with these rows; a screen may show something around it."""

    @on(DockerEvent)
    def _event(self, message: DockerEvent) -> None:
        if message.event.get("Type") == self.KIND.rstrip("s"):
            self.load()

    @property
    def current_key(self) -> str | None:
        if not self.table.row_count:
            return None
        key = self.table.coordinate_to_cell_key(self.table.cursor_coordinate).row_key.value
        return str(key) if key is not None else None

    def call(self, what: str, fn: Callable[[Any], Any], then: Callable[[Any], object] | None = None) -> None:
        self._call(what, fn, then)

    @work(thread=True, group="resource-call", exit_on_error=False)
    def _call(self, what: str, fn: Callable[[Any], Any], then: Callable[[Any], object] | None) -> None:
        try:
            result = fn(self.app.wait_engine().api)  # type: ignore[attr-defined]
        except Exception as exc:
            self.app.fail(what, exc)  # type: ignore[attr-defined]
            return
        self.app.call_from_thread(self.load)
        if then is not None:
            self.app.call_from_thread(then, result)

    def remove_object(self, api: Any, key: str) -> None:
        raise NotImplementedError

    def inspect_object(self, api: Any, key: str) -> Any:
        raise NotImplementedError

    def action_remove(self) -> None:
        keys = self.targets()
        if not keys:
            return
        from app.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.marked.clear()
                for key in keys:
                    self.call(f"Remove {key}", self._remover(key))

        what = f"{self.KIND.rstrip('s')} {keys[0]}" if len(keys) == 1 else f"{len(keys)} {self.KIND}: {', '.join(keys)}"
        self.app.push_screen(ConfirmScreen(f"Remove {what}?"), answered)

    def _remover(self, key: str) -> Callable[[Any], Any]:
        return lambda api: self.remove_object(api, key)

    def action_inspect(self) -> None:
        key = self.current_key
        if key is not None:
            self.call(f"Inspect {key}", lambda api: self.inspect_object(api, key),
                      lambda data: self.app.push_screen(JsonScreen(key, data)))

    def confirm_then(self, question: str, what: str, fn: Callable[[Any], Any], then: Callable[[Any], object]) -> None:
        from app.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(what, fn, then)

        self.app.push_screen(ConfirmScreen(question), answered)

    def ask(self, prompt: str, then: Callable[[str], None]) -> None:
        def answered(value: str | None) -> None:
            if value:
                then(value)

        self.app.push_screen(NameScreen(prompt), answered)


def run_kitematic(app: Any, reference: str) -> None:
    """Back to the containers, where the image runs Kitematic's way (ports published, the new container
    selected with its URL): the Images screen's `r`, and the build dialog's."""
    main = app._main_screen()
    while app.screen is not main and len(app.screen_stack) > 1:
        app.pop_screen()
    main.post_message(RunImage(reference))


def _age(ts: int | str) -> str:
    if isinstance(ts, str):
        return ts[:19].replace("T", " ")
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M")


class HistoryScreen(ModalScreen[None]):
    """An image's layers as `docker history` shows them: newest first, the command that made each, its size."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Close")]

    def __init__(self, reference: str, history: list[dict[str, Any]]) -> None:
        super().__init__()
        self.reference = reference
        self.history = history

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog json-dialog"):
            yield Label(f"History of [b]{escape(self.reference)}[/]")
            yield DataTable(id="history-table", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")
        for layer in self.history:
            lid = str(layer.get("Id") or "")
            short = lid.split(":")[-1][:12] if lid and lid != "<missing>" else "<missing>"
            created_by = " ".join(str(layer.get("CreatedBy") or "").split())
            created_by = created_by.removeprefix("/bin/sh -c #(nop) ").removeprefix("/bin/sh -c ")
            table.add_row(short, _age(layer.get("Created") or 0), created_by[:60],
                          human_bytes(layer.get("Size") or 0, False), str(layer.get("Comment") or ""))
        table.focus()


class ImagesScreen(TableScreen):
    KIND = "images"
    COLUMNS = ("REPOSITORY:TAG", "IMAGE ID", "CREATED", "SIZE")
    BINDINGS = [
        Binding("p", "pull", "Pull", id="image_pull"),
        Binding("h", "history", "History", id="image_history"),
        Binding("P", "prune", "Prune", id="image_prune"),
        Binding("D", "remove_force", "Remove (force)", id="image_remove_force"),
        Binding("r", "run", "Run", id="image_run"),
        Binding("b", "build", "Build", id="image_build"),
        Binding("k", "kube_play", "Play Kubernetes YAML", id="kube_play"),
    ]
    last_pull: Any = None  # the PullScreen of the latest pull (its per-layer bars stay readable after it closes)

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield Label("", id="images-hint")

    def rows_loaded(self, rows: list[tuple[str, tuple[str, ...]]]) -> None:
        hint = self.query_one("#images-hint", Label)
        hint.display = not rows
        if not rows:
            pull, build = (self._key_of(b) for b in ("image_pull", "image_build"))
            hint.update(f"No images yet: [b]{pull}[/] pulls one by name, [b]{build}[/] builds one from a folder "
                        "with a Dockerfile")

    def _key_of(self, binding_id: str) -> str:
        return key_of(self.app, binding_id)

    def action_kube_play(self) -> None:
        from app.screens.kube import play_yaml

        play_yaml(self)

    def action_build(self) -> None:
        """A build still going (or ended unseen behind a hidden dialog) shows again; else the form for a new one."""
        from app.screens.build import BuildFormScreen, BuildScreen, current_job, start_build

        job = current_job(self.app)
        if job is not None and (not job.finished or not job.seen):
            self.app.push_screen(BuildScreen(job))
            return

        def done(_job: Any) -> None:
            if self.is_attached:  # the build may end after this screen was left
                self._reload()

        def answered(request: Any) -> None:
            if request is not None:
                self.app.push_screen(BuildScreen(start_build(self.app, request, on_done=done)))

        self.app.push_screen(BuildFormScreen(job.request if job is not None else None), answered)

    def list_rows(self, api: Any) -> list[tuple[str, tuple[str, ...]]]:
        rows = []
        for img in api.images():
            short = img["Id"].split(":")[-1][:12]
            for tag in img.get("RepoTags") or ["<none>:<none>"]:
                key = tag if tag != "<none>:<none>" else img["Id"]
                rows.append((key, (tag, short, _age(img.get("Created", 0)), human_bytes(img.get("Size", 0), False))))
        return sorted(rows)

    def remove_object(self, api: Any, key: str) -> None:
        api.remove_image(key)

    def action_run(self) -> None:
        """Kitematic's CREATE from "My Images": back to the containers, where the image runs with its ports
        published and the new container is selected."""
        key = self.current_key
        if key is None:
            return
        if key.startswith("sha256:"):
            self.notify("This image has no tag to run it by", severity="warning")
            return
        run_kitematic(self.app, key)

    def action_remove_force(self) -> None:
        """`docker rmi -f`: untags an image other tags or containers still use; removes it otherwise."""
        key = self.current_key
        if key is None:
            return
        from app.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(f"Remove {key}", lambda api: api.remove_image(key, force=True))

        self.app.push_screen(ConfirmScreen(f"Force-remove image {key}, even if containers use it?"), answered)

    def inspect_object(self, api: Any, key: str) -> Any:
        return api.inspect_image(key)

    def action_pull(self) -> None:
        from app.screens.pull import PullScreen

        def pull(ref: str) -> None:
            def done(result: str | None) -> None:
                if result is not None:  # None: failed, and the pull screen said why
                    self.notify(f"Pulled {ref}", title="Images")
                if self.is_attached:  # the pull may end after this screen was left
                    self._reload()

            self.last_pull = PullScreen(ref, pull_only=True, on_done=done)
            self.app.push_screen(self.last_pull)

        self.ask("Image to pull (name[:tag])", pull)

    def _reload(self) -> None:
        self.load()

    def action_history(self) -> None:
        key = self.current_key
        if key is not None:
            self.call(f"History of {key}", lambda api: api.history(key),
                      lambda data: self.app.push_screen(HistoryScreen(key, data or [])))

    def action_prune(self) -> None:
        self.confirm_then("Remove all dangling images?", "Prune images", lambda api: api.prune_images(),
                          lambda r: self.notify(f"Reclaimed {human_bytes((r or {}).get('SpaceReclaimed') or 0)}"))


class NetworksScreen(TableScreen):
    KIND = "networks"
    COLUMNS = ("NAME", "NETWORK ID", "DRIVER", "SCOPE")
    BINDINGS = [
        Binding("n", "create", "Create", id="network_create"),
        Binding("P", "prune", "Prune", id="network_prune"),
    ]

    def action_prune(self) -> None:
        def report(r: Any) -> None:
            gone = (r or {}).get("NetworksDeleted") or []
            self.notify(f"Removed {len(gone)} network(s)" + (f": {', '.join(gone)}" if gone else ""))

        self.confirm_then("Remove every user network no container is connected to?", "Prune networks",
                          lambda api: api.prune_networks(), report)

    def list_rows(self, api: Any) -> list[tuple[str, tuple[str, ...]]]:
        return sorted((n["Name"], (n["Name"], n["Id"][:12], n.get("Driver", ""), n.get("Scope", "")))
                      for n in api.networks())

    def remove_object(self, api: Any, key: str) -> None:
        api.remove_network(key)

    def inspect_object(self, api: Any, key: str) -> Any:
        return api.inspect_network(key)

    def action_create(self) -> None:
        self.ask("New network name", lambda name: self.call(f"Create network {name}",
                                                             lambda api: api.create_network(name)))


def keeps_named_volumes(app: Any) -> bool:
    """Whether the connected engine's volume prune spares named volumes (Engine API 1.42 and later)."""
    from docker.utils import version_gte

    engine = getattr(app, "engine", None)
    version = getattr(getattr(engine, "api", None), "_version", None)
    return bool(version) and version_gte(version, "1.42")


class VolumesScreen(TableScreen):
    KIND = "volumes"
    COLUMNS = ("VOLUME NAME", "DRIVER", "MOUNTPOINT")
    BINDINGS = [
        Binding("n", "create", "Create", id="volume_create"),
        Binding("P", "prune", "Prune", id="volume_prune"),
    ]

    def action_prune(self) -> None:
        def report(r: Any) -> None:
            gone = (r or {}).get("VolumesDeleted") or []
            freed = human_bytes((r or {}).get("SpaceReclaimed") or 0)
            self.notify(f"Removed {len(gone)} volume(s), reclaimed {freed}")

        # `docker volume prune` without -a: API 1.42+ (Docker 23+, portside) keeps named volumes even when unused;
        # older engines remove those too, and the question says so.
        question = ("Remove every anonymous volume no container uses? (named volumes are kept)"
                    if keeps_named_volumes(self.app) else "Remove every volume no container uses, named ones too?")
        self.confirm_then(question, "Prune volumes", lambda api: api.prune_volumes(), report)

    def list_rows(self, api: Any) -> list[tuple[str, tuple[str, ...]]]:
        vols = (api.volumes() or {}).get("Volumes") or []
        return sorted((v["Name"], (v["Name"], v.get("Driver", ""), v.get("Mountpoint", ""))) for v in vols)

    def remove_object(self, api: Any, key: str) -> None:
        api.remove_volume(key)

    def inspect_object(self, api: Any, key: str) -> Any:
        return api.inspect_volume(key)

    def action_create(self) -> None:
        self.ask("New volume name", lambda name: self.call(f"Create volume {name}",
                                                            lambda api: api.create_volume(name)))


_HEX_ID = re.compile(r"[0-9a-f]{64}")


class EventsScreen(Screen[None]):
    """The engine's /events: what happened in the last minutes (as far as the engine remembers: dockerd keeps
    256 events) when the screen opens, then live (the app's one stream, forwarded)."""

    HISTORY_SECONDS = 600
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    @dataclass
    class History(Message):
        events: list[dict[str, Any]]

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[dict[str, Any]] | None = []  # live events held back until the history is shown
        self._shown: set[tuple[Any, ...]] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label(f"Events (the last {self.HISTORY_SECONDS // 60} minutes, then live)", classes="section")
        yield RichLog(id="events-log", max_lines=5000)
        yield Footer()

    def on_mount(self) -> None:
        self._load_history(time.time())

    @work(thread=True, exit_on_error=False)
    def _load_history(self, now: float) -> None:
        events: list[dict[str, Any]] = []
        try:
            api = self.app.wait_engine().api  # type: ignore[attr-defined]
            # `until` now: the stream ends with the history instead of following. Whole seconds (the next one, up
            # to a second's wait): Podman answers a fractional `until` with no events at all; what that second
            # adds comes in the live stream too, once (see _write)
            events = list(api.events(since=int(now) - self.HISTORY_SECONDS, until=str(math.ceil(now)),
                                     decode=True))  # fmt: skip
        except Exception as exc:
            self.app.fail("Reading past events", exc)  # type: ignore[attr-defined]
        self.post_message(self.History(events))

    @on(History)
    def _history(self, message: History) -> None:
        pending, self._pending = self._pending or [], None
        for ev in sorted(message.events, key=lambda e: e.get("timeNano") or 0):
            self._write(ev)
        for ev in pending:
            self._write(ev)

    @on(DockerEvent)
    def _event(self, message: DockerEvent) -> None:
        if self._pending is not None:
            self._pending.append(message.event)
        else:
            self._write(message.event)

    def _write(self, ev: dict[str, Any]) -> None:
        actor = ev.get("Actor") or {}
        key = (ev.get("timeNano"), ev.get("Type"), ev.get("Action"), actor.get("ID"))
        if key in self._shown:  # at the seam of history and live stream
            return
        self._shown.add(key)
        attrs = actor.get("Attributes") or {}
        when = datetime.datetime.fromtimestamp(ev.get("time", 0), datetime.UTC).strftime("%H:%M:%S")
        ident = str(actor.get("ID") or "")
        name = attrs.get("name") or (ident[:12] if _HEX_ID.fullmatch(ident) else ident)  # a volume's ID is its name
        self.query_one(RichLog).write(
            Text.assemble(f"{when} ", (str(ev.get("Type")), "bold"), f" {ev.get('Action')} {name}")
        )
