"""The engine's errors. Each carries the HTTP status the Engine API answers with, as dockerd does.

Every part of the engine raises these (or subclasses), so the API layer maps them to
`{"message": ...}` with the right status without knowing which part failed.
"""

from __future__ import annotations


class EngineError(Exception):
    """An error with an HTTP status; the message is what the user sees, in Docker's words."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(EngineError):
    status = 400


class Unauthorized(EngineError):
    status = 401


class Forbidden(EngineError):
    status = 403


class NotFound(EngineError):
    status = 404


class Conflict(EngineError):
    status = 409


class NotModified(EngineError):
    status = 304


class Unavailable(EngineError):
    status = 503
