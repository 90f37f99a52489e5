"""Container lifecycle verbs over docker-py's low-level API, one place for the TUI, the palette and the tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verb:
    name: str  # the action name ("start"), also the keymap id
    title: str  # what the footer, help and palette say
    run: Callable[[Any, str, str], None]  # (docker APIClient, container id, current state)
    destructive: bool = False


def _pause_toggle(api: Any, cid: str, state: str) -> None:
    if state == "paused":
        api.unpause(cid)
    else:
        api.pause(cid)


VERBS: dict[str, Verb] = {
    v.name: v
    for v in (
        Verb("start", "Start", lambda api, cid, state: api.unpause(cid) if state == "paused" else api.start(cid)),
        Verb("stop", "Stop", lambda api, cid, state: api.stop(cid)),
        Verb("restart", "Restart", lambda api, cid, state: api.restart(cid)),
        Verb("pause", "Pause/unpause", _pause_toggle),
        Verb("kill", "Kill", lambda api, cid, state: api.kill(cid)),
        Verb("remove", "Remove", lambda api, cid, state: api.remove_container(cid, force=True), destructive=True),
    )
}


def error_text(exc: BaseException) -> str:
    """Docker's own message when the daemon sent one, else the exception's text."""
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation.decode() if isinstance(explanation, bytes) else explanation)
    return str(exc) or exc.__class__.__name__
