"""Reading Engine API requests the way dockerd does: booleans, integers, filters, JSON bodies, timestamps."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from engine.errors import InvalidArgument
from engine.timestamps import timestamp_ns as timestamp_ns  # re-exported: the routes parse since/until here


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    """dockerd's BoolValue: absent -> default; "", 0, no, false, none -> False; anything else True."""
    if name not in request.query:
        return default
    return request.query[name].strip().lower() not in ("", "0", "no", "false", "none")


def qint(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {raw!r}") from None


def filters(request: web.Request) -> dict[str, list[str]]:
    """The `filters` query parameter; both the map-of-lists and the legacy map-of-bools forms."""
    raw = request.query.get("filters", "")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"invalid filter: {e}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, val in data.items():
        if isinstance(val, dict):
            out[key] = [k for k, on in val.items() if on]
        elif isinstance(val, list):
            out[key] = [str(v) for v in val]
        elif isinstance(val, str):
            out[key] = [val]
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return out


def check_filters(f: dict[str, list[str]], allowed: set[str]) -> None:
    for key in f:
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")


async def json_body(request: web.Request, required: bool = True) -> dict[str, Any]:
    """The request's JSON object; a malformed body is dockerd's 400."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise InvalidArgument("invalid JSON: EOF")  # what Go's decoder says about an empty body
        return {}
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
    if ctype and ctype != "application/json" and not ctype.endswith("+json") and ctype != "text/plain":
        raise InvalidArgument(f"unsupported Content-Type header ({ctype}): must be 'application/json'")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    return data


def version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (0,)


def api_at_least(request: web.Request, version: str) -> bool:
    from engine.api.server import API_VERSION_KEY

    return version_tuple(request.get(API_VERSION_KEY, "99.0")) >= version_tuple(version)


def go_fields(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """`body` with its keys named as the Go struct's `fields` where they match ignoring case, as encoding/json
    decodes them (docker-py sends exec create's `detachKeys` so); in the object's order, so the last key that
    maps to a field wins, as in Go. Keys that match no field stay as they are."""
    canon = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    for key, value in body.items():
        out[canon.get(key.lower(), key)] = value
    return out
