"""Pull (when missing) and run an image: a step line, one progress bar per layer, then the new container.

The work runs in an app-owned worker, so Escape hides the dialog and the pull goes on: its end is then a
notification, and the caller's `on_done` still gets the result (the new container is selected)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, ProgressBar

from app.images import PullProgress, run_image
from app.lifecycle import error_text
from app.stats import human_bytes

# A layer's statuses that say it is there: nothing left to download ("Already exists"), or all of it downloaded
DONE = frozenset({"Already exists", "Download complete", "Pull complete"})

class PullScreen(ModalScreen[str | None]):
    """Dismissed with the new container's id, or None when something failed (the error is notified)."""

    BINDINGS = [Binding("escape", "hide", "Hide (keeps going)")]

    @dataclass
    class Step(Message):
        text: str

    class Progress(Message):
        """Layer bytes changed; coalesced, the screen reads the latest state."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, PullScreen.Progress)

    @dataclass
    class Finished(Message):
        container_id: str | None
        error: str = ""

    def __init__(self, reference: str, pull_only: bool = False,
                 on_done: Callable[[str | None], object] | None = None) -> None:
        super().__init__()
        self.reference = reference
        self.pull_only = pull_only
        self.on_done = on_done  # gets the container id ("" for a pull) or None on failure, shown or hidden
        self.hidden = False
        self.result: tuple[str | None, str] | None = None
        self._app: Any = None
        self.progress = PullProgress()
        self.bars: dict[str, ProgressBar] = {}
        self.steps: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog pull"):
            yield Label(f"[b]{self.reference}[/]", id="pull-title")
            yield Label("Connecting…", id="pull-step")
            yield ProgressBar(total=100, id="pull-total", show_eta=True)
            yield VerticalScroll(id="pull-layers")

    def on_mount(self) -> None:
        # The app's worker, not the screen's: hiding (popping) the screen must not orphan the pull. A hidden
        # screen has no `self.app` any more (it is detached), so the worker keeps the app itself.
        self._app = self.app
        self._app.run_worker(self._run, thread=True, group="pull", exit_on_error=False)

    def _end(self, container_id: str | None, error: str = "") -> None:
        """From the worker: hand the result to the main thread, which knows whether the dialog is still up."""
        self._app.call_from_thread(self._ended, container_id, error)

    def _ended(self, container_id: str | None, error: str) -> None:
        self.result = (container_id, error)
        if not self.hidden:
            self.post_message(self.Finished(container_id, error))
            return
        if error:
            self._report_error(error)
        elif not self.pull_only:  # a pull's caller says "Pulled" itself
            self._app.notify(f"{self.reference} is running", title="Run")
        if self.on_done is not None:
            self.on_done(None if error else container_id)

    def _run(self) -> None:
        try:
            engine = self._app.wait_engine()
        except Exception as exc:
            self._end(None, error_text(exc))
            return

        def progress(p: PullProgress) -> None:
            self.progress = p
            self.post_message(self.Progress())

        def step(text: str) -> None:
            self.post_message(self.Step(text))

        try:
            if self.pull_only:
                from app.images import split_reference

                repo, tag = split_reference(self.reference)
                step(f"Pulling {repo}:{tag}")
                p = PullProgress()
                stream = engine.pull(repo, tag)
                try:
                    for line in stream:
                        p.feed(line)
                        progress(p)
                        if p.error:
                            raise RuntimeError(p.error)
                finally:
                    stream.close()
                self._end("")
                return
            cid = run_image(engine.api, self.reference, engine.pull, progress, step)
        except Exception as exc:
            self._end(None, error_text(exc))
            return
        self._end(cid)

    @on(Step)
    def _step(self, message: Step) -> None:
        self.steps.append(message.text)
        self.query_one("#pull-step", Label).update(message.text)

    @on(Progress)
    async def _progress(self, _: Progress) -> None:
        p = self.progress
        box = self.query_one("#pull-layers", VerticalScroll)
        # a copy: the pull's thread adds layers while this awaits the mount of new bars
        for lid, (status, current, total) in list(p.layers.items()):
            bar = self.bars.get(lid)
            if bar is None:
                label = Label("", id=f"layer-label-{lid}", classes="layer-label")
                bar = ProgressBar(total=None, show_eta=False, id=f"layer-{lid}")
                self.bars[lid] = bar
                await box.mount(label, bar)
            if status in DONE:  # a full bar, not an endless "waiting" one: Podman sends no sizes for small layers
                bar.update(total=total or 1, progress=total or 1)
            else:
                bar.update(total=total or None, progress=current)
            self.query_one(f"#layer-label-{lid}", Label).update(
                f"{lid}: {status} {human_bytes(current, False)}/{human_bytes(total, False) if total else '?'}"
            )
        self.query_one("#pull-total", ProgressBar).update(total=100, progress=p.fraction * 100)

    def _report_error(self, error: str) -> None:
        verb = "pull" if self.pull_only else "run"
        self._app.notify(error, title=f"Could not {verb} {self.reference}", severity="error", timeout=15)

    @on(Finished)
    def _finished(self, message: Finished) -> None:
        if message.error:
            self._report_error(message.error)
        result = None if message.error else message.container_id
        self.dismiss(result)
        if self.on_done is not None:
            self.on_done(result)

    def action_hide(self) -> None:
        if self.result is not None:
            return  # already finished: the Finished message closes the dialog
        self.hidden = True
        self.app.notify("Still working in the background; a message will say when it is done", title=self.reference)
        self.dismiss(None)
