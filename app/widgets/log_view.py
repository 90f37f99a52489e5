"""A virtual log view (toolong's design): only visible lines are rendered, so 100k lines scroll without lag.

Lines arrive from a thread into a deque; the thread posts `Pending`, which Textual coalesces (`can_replace`), and
the widget drains the deque on the UI thread at most 10 times a second. Follow keeps the end in view; pause holds
new lines back. The view keeps the last `max_lines` lines (a list trimmed at the front on each drain).

Under a flood nothing here may make Textual lay out the screen again: the virtual size is set without the
reactive's layout (only the scrollbars are updated), and the status line's text is posted at most 4 times a
second for a new line count (a key's change of follow, pause or search is posted at once).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

MAX_LINES = 200_000  # about 40 MB of 60-character lines with their timestamps
# Each drain repaints the view: under a flood that is most of the app's CPU (Textual's render and output), so
# 10 a second, which still looks live; keys never wait for it.
DRAIN_INTERVAL = 0.1
STATUS_INTERVAL = 0.25  # seconds between status lines that only count new lines

_MATCH = Style(bgcolor="yellow", color="black")
_CURRENT = Style(bgcolor="magenta", color="white", bold=True)
_TS = Style(color="bright_black")


def split_timestamp(line: str) -> tuple[str, str]:
    """Docker prefixes each line with an RFC 3339 time and a space when asked for timestamps."""
    if len(line) > 20 and line[4] == "-" and line[10] == "T":
        ts, sep, rest = line.partition(" ")
        if sep:
            return ts, rest
    return "", line


class LogView(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("f", "toggle_follow", "Follow", id="log_follow"),
        Binding("P", "toggle_pause", "Pause", id="log_pause"),
        Binding("t", "toggle_timestamps", "Timestamps", id="log_timestamps"),
        Binding("n", "next_match", "Next", show=False, id="log_next"),
        Binding("N", "previous_match", "Prev", show=False, id="log_prev"),
        Binding("ctrl+s", "save", "Save", id="log_save"),
        Binding("y", "copy", "Copy", id="log_copy"),
        Binding("home,g", "scroll_home", show=False),
        Binding("end,G", "scroll_end", show=False),
    ]
    max_lines = MAX_LINES

    follow: reactive[bool] = reactive(True)
    paused: reactive[bool] = reactive(False)
    show_timestamps: reactive[bool] = reactive(False)

    class Pending(Message, bubble=False):
        """New lines wait in the queue; many of these collapse into one."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, LogView.Pending)

    @dataclass
    class StatusChanged(Message):
        """Follow, pause, search or line count changed: the status line shows it."""

        text: str

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.timestamps: list[str] = []
        self.lines: list[str] = []
        self._queue: deque[str] = deque()
        self._held: list[str] = []
        self._lock = threading.Lock()
        self._width = 0
        self._search: re.Pattern[str] | None = None
        self.matches: list[int] = []
        self.match_index = -1
        self.save_dir = Path.cwd()
        self._drain_scheduled = False
        self._status_text = ""
        self._status_at = 0.0
        self._status_scheduled = False

    # --- feeding (any thread) ---

    def feed(self, lines: list[str]) -> None:
        """Queue lines from a reader thread (thread-safe) and ask the UI thread to take them."""
        with self._lock:
            was_empty = not self._queue
            self._queue.extend(lines)
        if was_empty:
            self.post_message(self.Pending())

    def clear_lines(self) -> None:
        with self._lock:
            self._queue.clear()
        self.timestamps.clear()
        self.lines.clear()
        self._held.clear()
        self._width = 0
        self.matches = []
        self.match_index = -1
        self._set_virtual_size(Size(0, 0))
        self.scroll_to(0, 0, animate=False)
        self.refresh()
        self._status()

    def on_log_view_pending(self, _: Pending) -> None:
        # Drain at most DRAIN_INTERVAL apart: keys must not queue behind a message per chunk.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.set_timer(DRAIN_INTERVAL, self._drain)

    def take_pending(self) -> None:
        """Append what the readers queued now (UI thread): a restarted stream asks for what came since the last
        line, which must count the lines not drained yet, or they come twice."""
        self._drain()

    def _drain(self) -> None:
        self._drain_scheduled = False
        with self._lock:
            batch = list(self._queue)
            self._queue.clear()
        if not batch:
            return
        if self.paused:
            self._held.extend(batch)
            if len(self._held) > self.max_lines:
                del self._held[: len(self._held) - self.max_lines]
            self._status(soon=True)
            return
        self._append(batch)

    def _append(self, batch: list[str]) -> None:
        lines, timestamps = self.lines, self.timestamps
        start = len(lines)
        for raw in batch:  # split_timestamp, inlined: this loop sees every line
            if len(raw) > 20 and raw[10] == "T" and raw[4] == "-":
                ts, sep, text = raw.partition(" ")
                if sep:
                    timestamps.append(ts)
                    lines.append(text)
                    continue
            timestamps.append("")
            lines.append(raw)
        width = max(map(len, lines[start:])) + (len(timestamps[-1]) + 1 if timestamps[-1] else 0)
        self._width = max(self._width, width)
        drop = len(lines) - self.max_lines
        if drop > 0:
            del lines[:drop]
            del timestamps[:drop]
            start = max(0, start - drop)
            if self.matches:
                self.matches = [m - drop for m in self.matches if m >= drop]
                self.match_index = min(max(self.match_index, 0), len(self.matches) - 1)
            if not self.follow:  # the lines in view moved up: keep them in view
                self.scroll_to(y=max(0, self.scroll_offset.y - drop), animate=False, immediate=True)
        if self._search is not None:
            rx = self._search
            self.matches.extend(i for i in range(start, len(lines)) if rx.search(lines[i]))
        self._set_virtual_size(Size(self._width, len(lines)))
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()
        self._status(soon=True)

    def _set_virtual_size(self, size: Size) -> None:
        """Like `self.virtual_size = size` without the reactive's layout of the whole screen: the view's own
        size does not change, only how far it scrolls (the scrollbars and the scroll limits are updated)."""
        if size != self.virtual_size:
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)

    # --- rendering ---

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self.lines):
            return Strip.blank(width, self.rich_style)
        text = self.lines[index]
        if (not self.show_timestamps and text.isascii() and text.isprintable()
                and (self._search is None or index not in self._match_set)):
            # the usual line, and every line of a flood: one cell per character, so one segment cut to width
            return Strip([Segment(text[scroll_x : scroll_x + width].ljust(width), self.rich_style)], width)
        segments: list[Segment] = []
        if self.show_timestamps and self.timestamps[index]:
            segments.append(Segment(self.timestamps[index] + " ", _TS))
        if self._search is not None and (index in self._match_set):
            style = _CURRENT if self.matches and self.matches[self.match_index] == index else _MATCH
            pos = 0
            for m in self._search.finditer(text):
                if m.start() == m.end():
                    continue
                segments.append(Segment(text[pos : m.start()]))
                segments.append(Segment(m.group(), style))
                pos = m.end()
            segments.append(Segment(text[pos:]))
        else:
            segments.append(Segment(text))
        strip = Strip(segments).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, self.rich_style).apply_style(self.rich_style)

    @property
    def _match_set(self) -> set[int]:
        cached = getattr(self, "_match_cache", None)
        if cached is None or cached[0] != len(self.matches):
            cached = (len(self.matches), set(self.matches))
            self._match_cache = cached
        return cached[1]

    # --- search ---

    def search(self, pattern: str) -> int:
        """Highlight every match of `pattern` (a regex; plain text if it is not one); returns the match count."""
        if not pattern:
            self._search = None
            self.matches = []
            self.match_index = -1
            self.refresh()
            self._status()
            return 0
        try:
            rx = re.compile(pattern, re.IGNORECASE)
        except re.error:
            rx = re.compile(re.escape(pattern), re.IGNORECASE)
        self._search = rx
        self.matches = [i for i, line in enumerate(self.lines) if rx.search(line)]
        self.match_index = len(self.matches) - 1
        if self.matches:
            self.follow = False
            self._goto_match()
        self.refresh()
        self._status()
        return len(self.matches)

    def _goto_match(self) -> None:
        if not self.matches:
            return
        line = self.matches[self.match_index]
        height = self.scrollable_content_region.height
        self.scroll_to(y=max(0, line - height // 2), animate=False, immediate=True)
        self.refresh()
        self._status()

    def action_next_match(self) -> None:
        if self.matches:
            self.follow = False
            self.match_index = (self.match_index + 1) % len(self.matches)
            self._goto_match()

    def action_previous_match(self) -> None:
        if self.matches:
            self.follow = False
            self.match_index = (self.match_index - 1) % len(self.matches)
            self._goto_match()

    # --- toggles ---

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self._status()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused

    def watch_paused(self, paused: bool) -> None:
        if not paused and self._held:
            held, self._held = self._held, []
            self._append(held)
        self._status()

    def action_toggle_timestamps(self) -> None:
        self.show_timestamps = not self.show_timestamps

    def watch_show_timestamps(self, show: bool) -> None:
        self.refresh()

    def _on_mouse_scroll_up(self, event: object) -> None:
        self.follow = False

    # Moving up leaves follow (else the next lines would pull the view back down); the end takes it up again.
    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self.follow = False
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        self.follow = True
        super().action_scroll_end()

    def plain_text(self, with_timestamps: bool | None = None) -> str:
        ts = self.show_timestamps if with_timestamps is None else with_timestamps
        if ts:
            return "\n".join(f"{t} {line}" if t else line for t, line in zip(self.timestamps, self.lines, strict=True))
        return "\n".join(self.lines)

    def action_save(self) -> Path | None:
        name = getattr(self, "container_name", None) or "container"
        path = self.save_dir / f"{name}.log"
        try:
            path.write_text(self.plain_text(with_timestamps=True) + "\n")
        except OSError as exc:
            self.notify(f"Could not save the log to {path}: {exc.strerror}", severity="error")
            return None
        self.notify(f"Saved {len(self.lines)} lines to {path}", title="Logs")
        return path

    def action_copy(self) -> None:
        """Copy the current search match's line, else the visible lines, to the clipboard (OSC 52)."""
        if self.matches and self.match_index >= 0:
            text = self.lines[self.matches[self.match_index]]
        else:
            top = self.scroll_offset.y
            text = "\n".join(self.lines[top : top + self.scrollable_content_region.height])
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied {text.count(chr(10)) + 1 if text else 0} line(s)", title="Logs")

    def _status(self, soon: bool = False) -> None:
        """Post the status line's text if it changed: at once, or (`soon`, for a new line count) within
        STATUS_INTERVAL of the last one."""
        parts = [f"{len(self.lines)} lines"]
        parts.append("following" if self.follow else "not following (f)")
        if self.paused:
            parts.append(f"PAUSED, {len(self._held)} held (P)")
        if self._search is not None:
            where = f"{self.match_index + 1}/{len(self.matches)}" if self.matches else "no matches"
            parts.append(f"/{self._search.pattern}: {where}")
        text = " · ".join(parts)
        if text == self._status_text:
            return
        wait = self._status_at + STATUS_INTERVAL - time.monotonic() if soon else 0
        if wait > 0:
            if not self._status_scheduled:
                self._status_scheduled = True
                self.set_timer(wait, self._status_later)
            return
        self._status_text = text
        self._status_at = time.monotonic()
        self.post_message(self.StatusChanged(text))

    def _status_later(self) -> None:
        self._status_scheduled = False
        self._status(soon=True)
