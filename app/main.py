"""Starting the TUI: choose the Engine API endpoint, then run the Textual app."""

from __future__ import annotations

import gc


def run_tui(host: str | None = None, context: str | None = None) -> int:
    # Start-up allocates hundreds of thousands of objects (Textual's modules, styles, widgets) that all stay alive:
    # collecting them while they are made costs a sixth of the time to the first frame. The app collects again,
    # with what start-up made frozen out of the way, once that frame is drawn (PortsideApp.first_frame_drawn).
    gc.disable()
    from app import prefetch

    # before the imports below, which take most of a second; a --context is read by app.hosts, not here
    early = prefetch.start(host) if not context else None
    from app.tui import PortsideApp

    PortsideApp(host=host, context=context, prefetch=early).run()
    return 0
