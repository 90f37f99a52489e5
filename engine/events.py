"""The events bus behind `GET /events`: a bounded history plus live subscribers, filtered like dockerd."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

Event = dict[str, Any]

# Docker keeps the last 256 events for `since` (moby's eventsLimit); so does this bus. 1024 of them held ~1 MiB
# (the soak benchmark's RSS), for history no Docker client expects.
HISTORY = 256


def make_event(type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> Event:
    """An event in the Engine API shape (with the legacy status/id/from fields the 1.2x clients print)."""
    now = time.time_ns()
    attrs = dict(attributes or {})
    ev: Event = {
        "Type": type_,
        "Action": action,
        "Actor": {"ID": actor_id, "Attributes": attrs},
        "scope": "local",
        "time": now // 1_000_000_000,
        "timeNano": now,
    }
    if type_ == "container":
        ev["status"] = action
        ev["id"] = actor_id
        if "image" in attrs:
            ev["from"] = attrs["image"]
    return ev


def _filter_values(filters: dict[str, list[str]], key: str) -> list[str]:
    return filters.get(key, [])


def matches(ev: Event, filters: dict[str, list[str]]) -> bool:
    """Whether `ev` passes `filters` (each key: any value matches; all keys must match), as dockerd filters."""
    if not filters:
        return True
    attrs: dict[str, str] = ev["Actor"]["Attributes"]
    type_ = ev["Type"]
    if (types := _filter_values(filters, "type")) and type_ not in types:
        return False
    if (actions := _filter_values(filters, "event")) and not any(
        ev["Action"] == a or ev["Action"].split(":", 1)[0] == a for a in actions
    ):
        return False
    for key in ("container", "image", "volume", "network", "daemon", "plugin", "node", "service", "secret", "config"):
        wanted = _filter_values(filters, key)
        if not wanted:
            continue
        if key == "image" and type_ == "container":
            candidates = {attrs.get("image", ""), ev["Actor"]["ID"] if type_ == "image" else ""}
        elif key == type_:
            candidates = {ev["Actor"]["ID"], attrs.get("name", "")}
        else:
            return False
        ok = any(w and (w in candidates or (len(w) >= 3 and ev["Actor"]["ID"].startswith(w) and key == type_))
                 for w in wanted)
        if not ok:
            return False
    if labels := _filter_values(filters, "label"):
        for lab in labels:
            k, sep, v = lab.partition("=")
            if k not in attrs or (sep and attrs[k] != v):
                return False
    scopes = _filter_values(filters, "scope")
    return not scopes or ev.get("scope", "local") in scopes


class EventBus:
    """Publish events from any thread of the daemon's loop; subscribers get them through asyncio queues."""

    def __init__(self) -> None:
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._subscribers: set[tuple[asyncio.Queue[Event], asyncio.AbstractEventLoop]] = set()
        self._lock = threading.Lock()

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> Event:
        ev = make_event(type_, action, actor_id, attributes)
        with self._lock:
            self._history.append(ev)
            subs = list(self._subscribers)
        for queue, loop in subs:
            with contextlib.suppress(RuntimeError):  # a subscriber's loop already closed
                loop.call_soon_threadsafe(queue.put_nowait, ev)
        return ev

    def history(self, since_ns: int | None, until_ns: int | None) -> list[Event]:
        with self._lock:
            return _between(list(self._history), since_ns, until_ns)

    @contextlib.contextmanager
    def follow(self, since_ns: int | None, until_ns: int | None) -> Iterator[tuple[list[Event], asyncio.Queue[Event]]]:
        """The events kept from `since_ns` (to `until_ns`) and a queue of every later one, taken under one lock: an
        event published meanwhile is in exactly one of them (read apart, it could be in both, and sent twice)."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        entry = (queue, asyncio.get_running_loop())
        with self._lock:
            events = list(self._history)
            self._subscribers.add(entry)
        try:
            yield _between(events, since_ns, until_ns), queue
        finally:
            with self._lock:
                self._subscribers.discard(entry)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)


def _between(events: list[Event], since_ns: int | None, until_ns: int | None) -> list[Event]:
    return [e for e in events
            if (since_ns is None or e["timeNano"] >= since_ns) and (until_ns is None or e["timeNano"] <= until_ns)]
