"""Docker's JSON progress messages (jsonmessage.JSONMessage): status, id, progressDetail, progress bar text."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Progress = Callable[[dict[str, Any]], None]


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def bar(current: int, total: int) -> str:
    if total <= 0:
        return f"{_human(current)}"
    width = 50
    filled = min(width, int(width * current / total))
    arrow = ">" if filled < width else ""
    done = "=" * max(filled - (1 if arrow else 0), 0)
    return f"[{done}{arrow}{' ' * (width - filled)}] {_human(current)}/{_human(total)}"


class Emitter:
    """Sends progress messages to an optional callback; throttles the Downloading/Extracting stream per id."""

    def __init__(self, callback: Progress | None, interval: float = 0.1) -> None:
        self.callback = callback
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}

    def status(self, status: str, id: str | None = None, **extra: Any) -> None:
        if self.callback is None:
            return
        msg: dict[str, Any] = {"status": status}
        if id is not None:
            msg["id"] = id
            msg.setdefault("progressDetail", {})
        msg.update(extra)
        self.callback(msg)

    def progress(self, status: str, id: str, current: int, total: int, *, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        key = (status, id)
        if not force and now - self._last.get(key, 0.0) < self.interval and current < total:
            return
        self._last[key] = now
        self.callback(
            {
                "status": status,
                "progressDetail": {"current": current, "total": total},
                "progress": bar(current, total),
                "id": id,
            }
        )

    def aux(self, data: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback({"progressDetail": {}, "aux": data})

    def error(self, message: str) -> None:
        if self.callback is not None:
            self.callback({"errorDetail": {"message": message}, "error": message})
