"""The first-paint floor for `bench/run tui`: a bare Textual app (a Header, one DataTable of the containers, a
Footer) that lists the engine's containers as the TUI's start-up does, with `GET /containers/json?all=1` on a thread
while Textual is imported. No portside code runs, so its first paint is what Python, Textual's import and Textual's
first frame of a 200-row table cost on the machine at the time: the part of the TUI's figure no change to app/ can
take away.

    python -m bench.tui_floor -H unix:///path/docker.sock
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import socket
import threading
from typing import Any


def fetch(url: str, out: list[Any]) -> None:
    if url.startswith("unix://"):
        conn = http.client.HTTPConnection("localhost", timeout=5)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(url.removeprefix("unix://"))
        conn.sock = sock
    else:
        conn = http.client.HTTPConnection(url.removeprefix("tcp://").split("/", 1)[0], timeout=5)
    conn.request("GET", "/containers/json?all=1")
    out.extend(json.loads(conn.getresponse().read()))
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", required=True)
    host = ap.parse_args().host
    gc.disable()  # as app/main.py does for the TUI's start
    containers: list[Any] = []
    fetcher = threading.Thread(target=fetch, args=(host, containers), daemon=True)
    fetcher.start()

    from textual.app import App, ComposeResult
    from textual.widgets import DataTable, Footer, Header

    class Floor(App[None]):
        BINDINGS = [("q", "quit", "Quit")]

        def compose(self) -> ComposeResult:
            yield Header()
            yield DataTable(cursor_type="row")
            yield Footer()

        def on_mount(self) -> None:
            fetcher.join(5)
            table: DataTable[str] = self.query_one(DataTable)
            table.add_columns("NAME", "IMAGE", "STATE", "STATUS")
            for c in sorted(containers, key=lambda c: c["Names"][0]):
                table.add_row(c["Names"][0].lstrip("/"), c["Image"], c["State"], c["Status"])
            table.focus()

    Floor().run()


if __name__ == "__main__":
    main()
