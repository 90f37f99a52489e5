"""Pull (when missing) and run an image: a step line, one progress bar per layer, then the new container."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, ProgressBar

from app.images import PullProgress, run_image
from app.lifecycle import error_text
from app.stats import human_bytes


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

    def __init__(self, reference: str, pull_only: bool = False) -> None:
        super().__init__()
        self.reference = reference
        self.pull_only = pull_only
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
        self._run()

    @work(thread=True, exit_on_error=False)
    def _run(self) -> None:
        try:
            engine = self.app.wait_engine()  # type: ignore[attr-defined]
        except Exception as exc:
            self.post_message(self.Finished(None, error_text(exc)))
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
                self.post_message(self.Finished(""))
                return
            cid = run_image(engine.api, self.reference, engine.pull, progress, step)
        except Exception as exc:
            self.post_message(self.Finished(None, error_text(exc)))
            return
        self.post_message(self.Finished(cid))

    @on(Step)
    def _step(self, message: Step) -> None:
        self.steps.append(message.text)
        self.query_one("#pull-step", Label).update(message.text)

    @on(Progress)
    async def _progress(self, _: Progress) -> None:
        p = self.progress
        box = self.query_one("#pull-layers", VerticalScroll)
        for lid, (status, current, total) in p.layers.items():
            bar = self.bars.get(lid)
            if bar is None:
                label = Label("", id=f"layer-label-{lid}", classes="layer-label")
                bar = ProgressBar(total=None, show_eta=False, id=f"layer-{lid}")
                self.bars[lid] = bar
                await box.mount(label, bar)
            if status == "Already exists":  # nothing to download: a full bar, not an endless "waiting" one
                bar.update(total=1, progress=1)
            else:
                bar.update(total=total or None, progress=current)
            self.query_one(f"#layer-label-{lid}", Label).update(
                f"{lid}: {status} {human_bytes(current, False)}/{human_bytes(total, False) if total else '?'}"
            )
        self.query_one("#pull-total", ProgressBar).update(total=100, progress=p.fraction * 100)

    @on(Finished)
    def _finished(self, message: Finished) -> None:
        if message.error:
            verb = "pull" if self.pull_only else "run"
            self.app.notify(message.error, title=f"Could not {verb} {self.reference}", severity="error", timeout=15)
            self.dismiss(None)
            return
        self.dismiss(message.container_id)

    def action_hide(self) -> None:
        self.notify("Still working in the background", title=self.reference)
