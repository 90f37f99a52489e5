"""App-wide messages; messages that belong to one widget are declared on that widget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class Connected(Message, bubble=False):
    """The Engine API answered: screens may load their data."""

    label: str


@dataclass
class ConnectionLost(Message, bubble=False):
    """The event stream broke or the engine stopped answering; the app shows a banner and retries."""

    reason: str


@dataclass
class EngineUnavailable(Message, bubble=False):
    """No engine could be reached or started; the text says why in plain words."""

    reason: str


@dataclass
class DockerEvent(Message, bubble=False):
    """One decoded message of `GET /events`."""

    event: dict[str, Any]


@dataclass
class HostSwitched(Message, bubble=False):
    """The app now shows another host: screens drop what they show of the last one (Connected follows)."""

    name: str


@dataclass
class HostStateChanged(Message, bubble=False):
    """A host in the pool connected or could not be reached (app.pool.state(name) says how it is now)."""

    name: str


@dataclass
class HostEvent(Message, bubble=False):
    """An /events message of a connected host that is not the current one (the all-hosts list follows them)."""

    name: str
    event: dict[str, Any]


@dataclass
class ActionFailed(Message):
    """A docker call made on the user's behalf failed; shown as a notification."""

    what: str
    error: str


@dataclass
class RunImage(Message):
    """Pull (when missing) and run an image with its exposed ports published, then show the new container."""

    reference: str
