"""A Healthcheck's shape, as both an image config and a container config carry it: checking one
(`validate`), Go durations ("1m30s"), and a Dockerfile HEALTHCHECK instruction's arguments (`docker commit
--change`, the builder). Running the probes is engine/containers/health.py, which imports these.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from engine.errors import InvalidArgument

SECOND = 1_000_000_000
MIN_DURATION = 1_000_000  # 1ms, dockerd's containertypes.MinimumDuration
_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


def validate(hc: dict[str, Any] | None) -> None:
    if not hc:
        return
    for key in _DURATIONS:
        value = hc.get(key) or 0
        if not isinstance(value, int):
            raise InvalidArgument(f"{key} in Healthcheck must be an integer (nanoseconds)")
        if value != 0 and value < MIN_DURATION:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    if (hc.get("Retries") or 0) < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")


_GO_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": SECOND, "m": 60 * SECOND,
             "h": 3600 * SECOND}  # fmt: skip
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration ("1m30s", "1.5s", "200ms") in nanoseconds."""
    t = text.strip()
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    if t == "0":
        return 0
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if not t or pos != len(t):
        raise InvalidArgument(f'time: invalid duration "{text}"')
    return sign * round(total)


def parse_instruction(arg: str) -> dict[str, Any]:
    """The Healthcheck of a Dockerfile HEALTHCHECK instruction's arguments (`docker commit --change`)."""
    words = arg.strip().split(None, 1)
    hc: dict[str, Any] = {}
    flags = {"--interval": "Interval", "--timeout": "Timeout", "--start-period": "StartPeriod",
             "--start-interval": "StartInterval", "--retries": "Retries"}  # fmt: skip
    while words and words[0].startswith("--"):
        name, eq, value = words[0].partition("=")
        if name not in flags or not eq:
            raise InvalidArgument(f"Unknown flag: {name.lstrip('-')}")
        if name == "--retries":
            try:
                hc["Retries"] = int(value)
            except ValueError:
                raise InvalidArgument(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
        else:
            hc[flags[name]] = parse_go_duration(value)
        words = words[1].split(None, 1) if len(words) > 1 else []
    kind = words[0].upper() if words else ""
    rest = words[1].strip() if len(words) > 1 else ""
    if kind == "NONE":
        if hc or rest:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD" or not rest:
        raise InvalidArgument("Missing command after HEALTHCHECK CMD" if kind == "CMD" else
                              f"Unknown type \"{kind}\" in HEALTHCHECK (try CMD)")  # fmt: skip
    test: list[str] | None = None
    if rest.startswith("["):
        with contextlib.suppress(ValueError):
            val = json.loads(rest)
            if isinstance(val, list) and val and all(isinstance(x, str) for x in val):
                test = ["CMD", *val]
    hc["Test"] = test or ["CMD-SHELL", rest]
    validate(hc)
    return hc
