"""The key a binding has now, for hints written in prose ("w runs nginx"): [keys] in the config may move it."""

from __future__ import annotations

from rich.markup import escape
from textual.app import App
from textual.binding import Binding


def key_of(app: App[object], binding_id: str) -> str:
    from app.config import DEFAULT_KEYS

    keys = getattr(getattr(app, "config", None), "keys", {}) or {}
    return escape(app.get_key_display(Binding((keys.get(binding_id) or DEFAULT_KEYS[binding_id]).split(",")[0], "")))
