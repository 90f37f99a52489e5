"""A supervisor that resets its control connection mid-request (the container exited while `rm -f` or `stop`
signalled it) is a container that is not running (Conflict), not a ConnectionResetError that became a 500."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from pathlib import Path

import pytest

from engine.errors import Conflict
from engine.exec import protocol as P
from engine.exec.runtime import Runtime

CID = "f" * 64


def _resetting_server(path: Path) -> tuple[socket.socket, threading.Thread]:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with P.socket_path(str(path)) as name:
        srv.bind(name)
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        # the request arrived (peeked, so it stays unread) and the supervisor goes before it reads or answers: a
        # unix socket closed with unread data resets the peer (ECONNRESET at its recv)
        conn.recv(1, socket.MSG_PEEK)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def test_a_reset_mid_request_is_not_running(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, fork_supervisors=False)
    d = tmp_path / CID
    d.mkdir()
    (d / "params").write_text("{}")
    srv, t = _resetting_server(d / "ctl.sock")
    try:
        with pytest.raises(Conflict, match="is not running"):
            asyncio.run(rt._request(CID, {"op": "kill", "signal": int(signal.SIGKILL), "all": False}))
    finally:
        t.join(5)
        srv.close()
