"""Starting the TUI: choose the Engine API endpoint, then run the Textual app."""

from __future__ import annotations


def run_tui(host: str | None = None) -> int:
    from app import prefetch

    early = prefetch.start(host)  # before the imports below, which take most of a second
    from app.tui import PortsideApp

    PortsideApp(host=host, prefetch=early).run()
    return 0
