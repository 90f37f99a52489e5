"""Starting the TUI: choose the Engine API endpoint, then run the Textual app."""

from __future__ import annotations


def run_tui(host: str | None = None) -> int:
    from app.tui import PortsideApp

    PortsideApp(host=host).run()
    return 0
