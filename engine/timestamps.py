"""Docker's `since`/`until` times, shared by the API's filters and the managers' prune `until` (kept below both
so a manager need not import the API to read a filter)."""

from __future__ import annotations

import datetime as dt

from engine.errors import InvalidArgument


def timestamp_ns(value: str) -> int | None:
    """A `since`/`until` value: unix seconds with optional fraction (what the CLI sends), or RFC 3339."""
    value = value.strip()
    if not value:
        return None
    try:
        if "." in value:
            sec, frac = value.split(".", 1)
            return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
        return int(value) * 1_000_000_000
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"failed to parse value as time or duration: {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1_000_000_000)
