"""Build an image from a folder (the Images screen's `b`): a form, then the build streaming live.

The form takes the folder (Tab completes directories as a shell does), an optional tag, build args
(`NAME=VALUE, ...` in one field) and an optional target stage. The build itself is an `app.build_stream.BuildJob`
run in an app-owned thread worker, so Escape hides the dialog while it goes on: its end is then a notification,
and `b` shows the dialog again (the job keeps its lines). `c` cancels (after a yes): the stream's connection is
shut and the engine stops the build and removes its container. When it is built, `r` runs the new image the way
the Images screen's `r` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widgets import Input, Label, ProgressBar

from app.build_stream import (
    BuildEvent,
    BuildJob,
    BuildRequest,
    check_folder,
    complete_directory,
    parse_build_args,
)
from app.lifecycle import error_text
from app.widgets.log_view import LogView

# The latest build of each app (weak: a finished test app takes its job with it).
_JOBS: weakref.WeakKeyDictionary[App[Any], BuildJob] = weakref.WeakKeyDictionary()

_STEP_DONE = Style(color="cyan", bold=True)
_STEP_CURRENT = Style(bgcolor="blue", color="white", bold=True)
_STEP_FAILED = Style(bgcolor="red", color="white", bold=True)
_ERROR = Style(color="red", bold=True)


def current_job(app: App[Any]) -> BuildJob | None:
    return _JOBS.get(app)


def start_build(app: App[Any], request: BuildRequest, on_done: Callable[[BuildJob], object] | None = None) -> BuildJob:
    """Run the build in a thread of its own, not the dialog's worker (a hidden dialog must not take the build with
    it). A daemon thread: quitting the app does not wait for the build, its connection goes with the process and
    the engine stops the build then (a Textual thread worker would hold the exit until the build ended)."""
    job = BuildJob(request)
    _JOBS[app] = job
    over = asyncio.Event()  # set on the app's loop once the build has ended

    def work() -> None:
        try:
            api = app.wait_engine().streams  # type: ignore[attr-defined]  # no read timeout: a RUN may be quiet
        except Exception as exc:
            job.abort(error_text(exc))
        else:
            job.run(api)
        with contextlib.suppress(RuntimeError):  # the app has quit meanwhile
            app.call_from_thread(_ended, app, job, on_done, over)

    threading.Thread(target=work, name="portside-build", daemon=True).start()
    app.run_worker(_cancel_on_quit(job, over), group="build-guard", exit_on_error=False)
    return job


async def _cancel_on_quit(job: BuildJob, over: asyncio.Event) -> None:
    """Waits as long as the build goes on; the app cancels its workers when it quits, and then the build goes."""
    try:
        await over.wait()
    except asyncio.CancelledError:
        if not job.finished:
            job.cancel()
        raise


def _ended(app: App[Any], job: BuildJob, on_done: Callable[[BuildJob], object] | None, over: asyncio.Event) -> None:
    over.set()
    shown = any(isinstance(s, BuildScreen) and s.job is job for s in app.screen_stack)
    if not shown:  # hidden: say how it went (`b` shows the dialog again)
        name = job.request.tag or str(job.request.path)
        if job.cancelled:
            app.notify(f"The build of {name} was cancelled", title="Build")
        elif job.error is not None:
            step = job.failed_step
            where = f" at step {step.n}/{step.total}" if step else ""
            app.notify(f"{job.error.message} (b shows the build)", title=f"Build of {name} failed{where}",
                       severity="error", timeout=15)
        else:
            app.notify(f"Built {name} ({_short(job.image_id)})", title="Build")
    if on_done is not None:
        on_done(job)


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


class PathInput(Input):
    """A folder path: Tab completes it as a shell would; when there is nothing left to complete, Tab moves on."""

    BINDINGS = [Binding("tab", "complete", "Complete", show=False)]
    FILES = False  # a folder picker; a subclass with True completes file names too

    class Completed(Message):
        def __init__(self, candidates: list[str]) -> None:
            super().__init__()
            self.candidates = candidates

    def action_complete(self) -> None:
        completed, candidates = complete_directory(self.value, files=self.FILES)
        if completed == self.value and not candidates:
            self.screen.focus_next()
            return
        self.value = completed
        self.cursor_position = len(completed)
        self.post_message(self.Completed(candidates))


class BuildFormScreen(ModalScreen[BuildRequest | None]):
    """What to build: dismissed with the request, or None (Escape)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, last: BuildRequest | None = None) -> None:
        super().__init__()
        self.last = last

    def compose(self) -> ComposeResult:
        last = self.last
        folder = str(last.path) if last else str(Path.cwd())
        with Vertical(classes="dialog build-form"):
            yield Label(Text.assemble(("Build an image", "bold"), " from a folder with a Dockerfile (Enter builds)"))
            yield Label("Folder (Tab completes)", classes="field-label")
            yield PathInput(folder.rstrip("/") + "/", id="build-path")
            yield Label("", id="build-candidates", markup=False)
            yield Label("Tag (optional, name[:tag])", classes="field-label")
            yield Input(last.tag if last else "", id="build-tag", placeholder="myapp:latest")
            yield Label("Build args (optional): NAME=VALUE, NAME2=VALUE2", classes="field-label")
            args = ", ".join(f"{k}={v}" for k, v in last.buildargs.items()) if last else ""
            yield Input(args, id="build-args", placeholder="VERSION=1.2, NO_PROXY=a,b")
            yield Label("Target stage (optional)", classes="field-label")
            yield Input(last.target if last else "", id="build-target", placeholder="the last stage")
            yield Label("", id="build-form-error", markup=False)

    def on_mount(self) -> None:
        path = self.query_one("#build-path", PathInput)
        path.focus()
        path.cursor_position = len(path.value)

    @on(PathInput.Completed)
    def _completed(self, message: PathInput.Completed) -> None:
        names = message.candidates
        text = "  ".join(n + "/" for n in names[:40]) + ("  …" if len(names) > 40 else "")
        self.query_one("#build-candidates", Label).update(text)

    @on(Input.Changed, "#build-path")
    def _path_changed(self) -> None:
        self.query_one("#build-candidates", Label).update("")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        request, problem = self.request()
        self.query_one("#build-form-error", Label).update(problem)
        if request is not None:
            self.dismiss(request)

    def request(self) -> tuple[BuildRequest | None, str]:
        """The request the fields make, or what is wrong with them."""
        path, problem = check_folder(self.query_one("#build-path", Input).value)
        if path is None:
            return None, problem
        tag = self.query_one("#build-tag", Input).value.strip()
        if tag:
            from docker.utils import match_tag

            if not match_tag(tag):
                return None, f"{tag!r} is not a valid tag (lowercase name[:tag])"
        try:
            args = parse_build_args(self.query_one("#build-args", Input).value)
        except ValueError as exc:
            return None, str(exc)
        return BuildRequest(path, tag, args, self.query_one("#build-target", Input).value.strip()), ""

    def action_cancel(self) -> None:
        self.dismiss(None)


class BuildLog(LogView):
    """The build's lines: step lines bold, the current one highlighted (red when it failed), the error in red."""

    def __init__(self, job: BuildJob, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job
        self._appended = 0  # the job's number of the line after the last one this view took

    def backlog(self, lines: list[str], first: int) -> None:
        """The job's lines so far, `first` being the number of the first (under the job's lock)."""
        self._appended = first
        if lines:
            self.feed(lines)

    def _append(self, batch: list[str]) -> None:
        self._appended += len(batch)
        super()._append(batch)

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        if index >= len(self.lines):
            return super().render_line(y)
        number = index + self._appended - len(self.lines)  # the job's line number (either may have let lines go)
        kind = self.job.kinds.get(number)
        if kind is None:
            return super().render_line(y)
        if kind == "error":
            style = _ERROR
        elif self.job.step_lines and number == self.job.step_lines[-1] and not self.job.ok:
            style = _STEP_FAILED if self.job.error is not None else _STEP_CURRENT
        else:
            style = _STEP_DONE
        width = self.scrollable_content_region.width
        scroll_x = self.scroll_offset.x
        strip = Strip([Segment(self.lines[index], style)]).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, self.rich_style)


class BuildScreen(ModalScreen[None]):
    """One build, live: its steps in a log view, a bar by step, then the image (and `r` to run it) or the error."""

    BINDINGS = [
        Binding("escape", "hide", "Hide / close"),
        Binding("c", "cancel_build", "Cancel the build"),
        Binding("r", "run", "Run the image"),
    ]

    class Changed(Message):
        """The job's step or outcome changed; coalesced, the screen reads the job."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, BuildScreen.Changed)

    def __init__(self, job: BuildJob) -> None:
        super().__init__()
        self.job = job

    def compose(self) -> ComposeResult:
        req = self.job.request
        title = Text.assemble("Building ", (str(req.path), "bold"))
        if req.tag:
            title.append_text(Text.assemble(" as ", (req.tag, "bold")))
        if req.target:
            title.append_text(Text.assemble(" (target ", (req.target, "bold"), ")"))
        with Vertical(classes="dialog build"):
            yield Label(title, id="build-title")
            yield Label("Sending the build context…", id="build-step", markup=False)
            yield ProgressBar(total=None, show_eta=False, id="build-progress")
            yield BuildLog(self.job, id="build-log")
            yield Label("", id="build-result")
            yield Label("", id="build-keys")

    @property
    def log_view(self) -> BuildLog:
        return self.query_one(BuildLog)

    def on_mount(self) -> None:
        self._log = log = self.log_view  # kept: the build's thread feeds it, and may not query the DOM
        log.focus()
        self.job.attach(self._listen, backlog=log.backlog)
        self._show()

    def on_unmount(self) -> None:
        self.job.attach(None)

    def _listen(self, event: BuildEvent | None) -> None:
        """From the build's thread: lines go straight to the view (thread-safe), the rest as one message."""
        from app.build_stream import Failed, Output, Step

        if isinstance(event, Step):
            self._log.feed([event.line])
        elif isinstance(event, Output):
            self._log.feed([event.line])
            return
        elif isinstance(event, Failed):
            self._log.feed([event.message])
        self.post_message(self.Changed())

    @on(Changed)
    def _changed(self) -> None:
        self._show()

    def _show(self) -> None:
        job = self.job
        step_label = self.query_one("#build-step", Label)
        bar = self.query_one("#build-progress", ProgressBar)
        result = self.query_one("#build-result", Label)
        keys = self.query_one("#build-keys", Label)
        if job.step is not None:
            step_label.update(job.step.line)
            done = job.step.total if job.ok else job.step.n - 1
            bar.update(total=job.step.total, progress=done)
        elif job.started:
            step_label.update("Waiting for the first step…")
        if not job.finished:
            keys.update("[dim]Escape hides (the build goes on) · c cancels it[/]")
            return
        job.seen = True
        if job.cancelled:
            result.update("[yellow]Cancelled: the engine stopped the build[/]")
        elif job.error is not None:
            step = job.failed_step
            where = f"Step {step.n}/{step.total} failed: " if step else "The build failed: "
            result.update(f"[red]{escape(where + job.error.message)}[/]")  # Docker's message names the exit code
        else:
            tags = ", ".join(job.tags) or "no tag"
            result.update(f"[green]Built {escape(job.image_id)}[/] - {escape(tags)}")
        run = "r runs it · " if job.ok and job.request.tag else ""
        keys.update(f"[dim]{run}Escape closes[/]")

    def action_hide(self) -> None:
        if not self.job.finished:
            self.app.notify("Still building in the background; b on the Images screen shows it again",
                            title="Build")
        self.dismiss(None)

    def action_cancel_build(self) -> None:
        if self.job.finished:
            return
        from app.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes and not self.job.finished:
                self.query_one("#build-step", Label).update("Cancelling…")
                threading.Thread(target=self.job.cancel, name="portside-build-cancel", daemon=True).start()

        self.app.push_screen(ConfirmScreen("Cancel the build? The engine stops it and removes its container."),
                             answered)

    def action_run(self) -> None:
        job = self.job
        if not job.ok:
            return
        if not job.request.tag:
            self.notify("This build has no tag to run it by: build it again with a tag", severity="warning")
            return
        from app.screens.resources import run_kitematic

        run_kitematic(self.app, job.tags[0] if job.tags else job.request.tag)
