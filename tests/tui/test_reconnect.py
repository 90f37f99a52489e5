"""Losing the engine shows a banner and the app reconnects by itself: the app talks to the engine through a
unix-socket relay that the test takes away and brings back."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.screens.main import MainScreen
from app.tui import PortsideApp
from tests.tui.conftest import Engine, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.tui, pytest.mark.timeout(120)]


class Relay:
    """Forwards every connection made to `path` to the engine's unix socket, until stopped."""

    def __init__(self, path: Path, target: str) -> None:
        self.path, self.target = path, target
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        self.server: socket.socket | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(self.path))
        server.listen(64)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client = server.accept()[0]
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(self.target)
            except OSError:
                return
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(OSError):
                self.server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self.server.close()
            self.server = None
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.path.unlink(missing_ok=True)


async def test_the_banner_comes_and_goes_and_the_list_catches_up(engine: Engine, tmp_config_home: Any) -> None:
    """The relay goes away: the banner says the connection is lost; a container made meanwhile is in the list
    once the relay is back, and the banner is gone."""
    assert engine.url.startswith("unix://")
    workdir = Path(tempfile.mkdtemp(prefix="portside-test-relay-"))
    relay = Relay(workdir / "engine.sock", engine.url.removeprefix("unix://"))
    relay.start()
    app = PortsideApp(host=f"unix://{relay.path}", config=engine.config())
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            main = app.screen
            assert isinstance(main, MainScreen)
            await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), what="connection")
            assert not main.banner.display
            relay.stop()
            await wait_for(pilot, lambda: main.banner.display, what="the banner")
            assert "Connection to the engine lost" in str(main.banner.render())
            assert "disconnected" in app.sub_title
            cid = engine.run(["sleep", "100"], f"pst-meanwhile-{uuid.uuid4().hex[:6]}")
            relay.start()
            await wait_for(pilot, lambda: not main.banner.display and app.connected, timeout=30,
                           what="reconnected")
            await wait_for(pilot, lambda: cid in main.container_list.rows_by_id, what="the list caught up")
            assert main.container_list.rows_by_id[cid].state == "running"
    finally:
        relay.stop()
        shutil.rmtree(workdir, ignore_errors=True)
