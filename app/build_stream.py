"""The Build flow's headless part: the form's checks (build args, Tab completion of a folder), the parser that turns
a classic build's JSON stream into events, and `BuildJob`, which runs one build in a thread and keeps what it showed.

The stream is docker-py's `api.build(..., decode=True)`: docker-py makes the context tar from the folder (applying
its .dockerignore) and yields the engine's JSON messages. Both dockerd and portside send Docker's classic shapes:
`{"stream": text}` pieces that need not end at line ends (dockerd sends "Step 1/3 : FROM x" and its "\\n" apart),
`{"status": ..., "id": ...}` while a base image is pulled, `{"aux": {"ID": ...}}` for the built image, and a last
`{"error": ..., "errorDetail": {"message": ..., "code": n}}` when a step fails (code: a RUN's exit status).
No Textual import here.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.lifecycle import error_text

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_BUILT = re.compile(r"^Successfully built ([0-9a-f]+)\s*$")
_TAGGED = re.compile(r"^Successfully tagged (\S+)\s*$")
# A comma starts the next build arg only where a NAME= follows, so values may hold commas ("NO_PROXY=a,b").
_ARG_SPLIT = re.compile(r",\s*(?=[A-Za-z_][A-Za-z0-9_]*=)")
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- events ---

@dataclass(frozen=True)
class Step:
    n: int
    total: int
    text: str  # the instruction as the Dockerfile has it

    @property
    def line(self) -> str:
        return f"Step {self.n}/{self.total} : {self.text}"


@dataclass(frozen=True)
class Output:
    line: str


@dataclass(frozen=True)
class Failed:
    message: str
    code: int | None = None  # a failed RUN's exit status


@dataclass(frozen=True)
class Built:
    image_id: str  # the full id from the aux message, else the short one of "Successfully built"


@dataclass(frozen=True)
class Tagged:
    tag: str


BuildEvent = Step | Output | Failed | Built | Tagged


class BuildParser:
    """Feed it the stream's decoded items in order; it returns the events each completes. Text is split into
    whole lines (a piece without its line end waits for the next piece, or for `flush`)."""

    def __init__(self) -> None:
        self._partial = ""
        self.built = False

    def feed(self, item: dict[str, Any]) -> list[BuildEvent]:
        events: list[BuildEvent] = []
        if "stream" in item:
            text = self._partial + str(item["stream"])
            *whole, self._partial = text.split("\n")
            for line in whole:
                events.extend(self._line(line))
        if "aux" in item:
            aux = item["aux"]
            image_id = aux.get("ID") if isinstance(aux, dict) else None
            if image_id and not self.built:
                self.built = True
                events.append(Built(str(image_id)))
        if "status" in item and "error" not in item:
            events.extend(self._flush_partial())
            events.extend(self._status(item))
        if "error" in item or "errorDetail" in item:
            events.extend(self._flush_partial())
            detail = item.get("errorDetail") or {}
            message = str(detail.get("message") or item.get("error") or "the build failed")
            code = detail.get("code")
            events.append(Failed(message, int(code) if isinstance(code, int) and not isinstance(code, bool) else None))
        return events

    def flush(self) -> list[BuildEvent]:
        """The stream ended: its last piece of text, if it had no line end."""
        return self._flush_partial()

    def _flush_partial(self) -> list[BuildEvent]:
        if not self._partial:
            return []
        line, self._partial = self._partial, ""
        return self._line(line)

    def _line(self, raw: str) -> list[BuildEvent]:
        line = raw.removesuffix("\r")
        if "\r" in line:  # a progress line redrawn in place: what a terminal would end up showing
            line = line.rsplit("\r", 1)[-1]
        m = _STEP.match(line)
        if m:
            return [Step(int(m.group(1)), int(m.group(2)), m.group(3))]
        events: list[BuildEvent] = [Output(line)]
        m = _BUILT.match(line)
        if m and not self.built:
            self.built = True
            events.append(Built(m.group(1)))
        m = _TAGGED.match(line)
        if m:
            events.append(Tagged(m.group(1)))
        return events

    @staticmethod
    def _status(item: dict[str, Any]) -> list[BuildEvent]:
        """A base image's pull: its milestones as `docker pull` prints them, not every byte count."""
        if item.get("progressDetail"):
            return []
        status = str(item.get("status") or "")
        lid = item.get("id")
        return [Output(f"{lid}: {status}" if lid else status)] if status else []


# --- the form ---

def parse_build_args(text: str) -> dict[str, str]:
    """`NAME=VALUE, NAME2=VALUE2` (what `--build-arg` takes, several in one field); raises ValueError saying what
    is wrong. A value may hold commas and `=`: only ", NAME=" starts the next one."""
    args: dict[str, str] = {}
    text = text.strip()
    if not text:
        return args
    for piece in _ARG_SPLIT.split(text):
        name, eq, value = piece.strip().partition("=")
        name = name.strip()
        if not eq or not _ARG_NAME.match(name):
            raise ValueError(f"{piece.strip()!r} is not NAME=VALUE (build args are NAME=VALUE, separated by commas)")
        args[name] = value
    return args


def complete_directory(text: str, cwd: Path | None = None, files: bool = False) -> tuple[str, list[str]]:
    """Tab completion of a folder as a shell does it: `text` completed as far as the matching directories agree
    (one match gets its trailing "/"), and the matching names when there are several. `~` is kept as typed;
    hidden folders match only a name typed with its leading dot. With `files`, files match too (a file
    picker's completion: one matching file is completed with no "/")."""
    base_dir = cwd or Path.cwd()
    if text.startswith("~") and "/" not in text:
        home = os.path.expanduser(text)
        return (text + "/", []) if home != text and os.path.isdir(home) else (text, [])
    expanded = os.path.expanduser(text) if text.startswith("~") else text
    head, prefix = os.path.split(expanded)
    where = Path(head) if head else Path(".")
    if not where.is_absolute():
        where = base_dir / where
    try:
        found = {e.name: _is_dir(e) for e in os.scandir(where) if e.name.startswith(prefix)}
        entries = sorted(n for n, is_dir in found.items() if is_dir or files)
    except OSError:
        return text, []
    if not prefix.startswith("."):
        entries = [n for n in entries if not n.startswith(".")]
    if not entries:
        return text, []
    stem = text[: len(text) - len(prefix)]
    if len(entries) == 1:
        return stem + entries[0] + ("/" if found[entries[0]] else ""), []
    return stem + _common_start(entries), entries


def _common_start(names: list[str]) -> str:
    """The characters every name starts with (names, not paths: "app" and "apple" share "app")."""
    first, last = min(names), max(names)
    n = 0
    while n < len(first) and first[n] == last[n]:
        n += 1
    return first[:n]


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, as a shell's completion does
    except OSError:
        return False


def check_folder(text: str, cwd: Path | None = None) -> tuple[Path | None, str]:
    """The build folder for the typed path, or why it cannot be built (no such folder, no Dockerfile)."""
    if not text.strip():
        return None, "type the folder that holds the Dockerfile"
    path = Path(os.path.expanduser(text.strip()))
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    if not path.is_dir():
        return None, f"{text.strip()} is not a folder"
    if not (path / "Dockerfile").is_file():
        return None, f"{text.strip()} has no Dockerfile"
    return path, ""


# --- one build ---

@dataclass
class BuildRequest:
    path: Path
    tag: str = ""
    buildargs: dict[str, str] = field(default_factory=dict)
    target: str = ""


class _KeepResponse:
    """docker-py's APIClient for one `build` call, keeping the response of its POST: `api.build` hands back only a
    generator, which another thread cannot close while the worker reads it, but the response's socket can be."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.response: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def _post(self, *args: Any, **kwargs: Any) -> Any:
        self.response = self._api._post(*args, **kwargs)
        return self.response


def open_build(api: Any, request: BuildRequest) -> Any:
    """Start the build: docker-py's `api.build` (classic builder, rm=True) wrapped in a CancellableStream whose
    `close()` shuts the connection, which makes the engine stop the build and remove its container."""
    from docker import APIClient
    from docker.types.daemon import CancellableStream

    keep = _KeepResponse(api)
    stream = APIClient.build(keep, path=str(request.path), tag=request.tag or None,
                             buildargs=dict(request.buildargs) or None, target=request.target or None,
                             rm=True, decode=True)
    return CancellableStream(stream, keep.response)


class BuildJob:
    """One build, run by `run()` in a thread. It keeps the lines it showed (`lines`: the last `max_lines`, the
    first of them being line number `dropped`; `kinds` marks the step and error lines by line number), the current
    step and the outcome, so a view opened late (or again, after Escape hid the first) starts from the same text.
    A view listens with `attach`: it gets the lines so far and then every event, from the build's thread, in order.
    """

    max_lines = 200_000  # as many as the log view keeps

    def __init__(self, request: BuildRequest) -> None:
        self.request = request
        self.lines: list[str] = []
        self.dropped = 0  # lines let go at the front (number of the first line in `lines`)
        self.kinds: dict[int, str] = {}  # line number -> "step" | "error"
        self.step_lines: list[int] = []  # line numbers of the steps, in order
        self.step: Step | None = None
        self.image_id = ""
        self.tags: list[str] = []
        self.error: Failed | None = None
        self.started = False  # the engine answered: the stream is open
        self.finished = False
        self.cancelled = False
        self.seen = False  # a view showed the outcome (else `b` shows it again before a new form)
        self._lock = threading.Lock()
        self._listener: Callable[[BuildEvent | None], None] | None = None
        self._stream: Any = None

    @property
    def ok(self) -> bool:
        return self.finished and self.error is None and bool(self.image_id)

    @property
    def failed_step(self) -> Step | None:
        return self.step if self.error is not None else None

    def attach(self, listener: Callable[[BuildEvent | None], None] | None,
               backlog: Callable[[list[str], int], object] | None = None) -> None:
        """Listen from now on (None: stop): the listener gets each event, and None once the build is over.
        `backlog` gets the lines so far and the number of the first, with no event of the build's thread between."""
        with self._lock:
            self._listener = listener
            if backlog is not None:
                backlog(list(self.lines), self.dropped)

    def abort(self, message: str) -> None:
        """The build could not even start (no engine): end it with this error."""
        self._emit(Failed(message))
        self._finish()

    def cancel(self) -> None:
        """Stop the build from any thread: the connection is shut, the engine stops the build."""
        self.cancelled = True
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):  # already closed
                stream.close()

    def run(self, api: Any) -> None:
        parser = BuildParser()
        try:
            stream = open_build(api, self.request)
            self._stream = stream
            self.started = True
            if self.cancelled:
                stream.close()
            for item in self._items(stream):
                for event in parser.feed(item):
                    self._emit(event)
            for event in parser.flush():
                self._emit(event)
        except Exception as exc:
            if not self.cancelled:
                self._emit(Failed(error_text(exc)))
        if not self.cancelled and self.error is None and not self.image_id:
            self._emit(Failed("the engine ended the build stream before the build finished"))
        self._finish()

    def _items(self, stream: Any) -> Iterator[dict[str, Any]]:
        for item in stream:
            if self.cancelled:
                return
            if isinstance(item, dict):
                yield item

    def _emit(self, event: BuildEvent) -> None:
        with self._lock:
            number = self.dropped + len(self.lines)
            if isinstance(event, Step):
                self.step = event
                self.kinds[number] = "step"
                self.step_lines.append(number)
                self._add(event.line)
            elif isinstance(event, Output):
                self._add(event.line)
            elif isinstance(event, Failed):
                if self.error is not None:
                    return
                self.error = event
                self.kinds[number] = "error"
                self._add(event.message)
            elif isinstance(event, Built):
                self.image_id = event.image_id
            else:
                self.tags.append(event.tag)
            listener = self._listener
        if listener is not None:
            listener(event)

    def _add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) > self.max_lines:  # a tenth at a time, not a list shift per line
            cut = max(1, self.max_lines // 10)
            del self.lines[:cut]
            self.dropped += cut
            self.kinds = {n: k for n, k in self.kinds.items() if n >= self.dropped}
            self.step_lines = [n for n in self.step_lines if n >= self.dropped] or self.step_lines[-1:]

    def _finish(self) -> None:
        with self._lock:
            self.finished = True
            listener = self._listener
        if listener is not None:
            listener(None)
