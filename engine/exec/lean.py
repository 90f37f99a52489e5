"""Stand-ins for standard-library helpers whose modules the supervisor's zygote does not import.

What the zygote imports is shared by every supervisor forked from it, and counted in each one's PSS (a share of
its pages): contextlib alone brings collections and functools, ~0.8 MiB of the zygote's heap. Imports nothing.
"""

from __future__ import annotations


class suppress:
    """contextlib.suppress: the `with` block's exceptions of these types end the block silently."""

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self.exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, value: object, tb: object) -> bool:
        return kind is not None and issubclass(kind, self.exceptions)
