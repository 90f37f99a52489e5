"""A shell in a container through the Engine API's exec (with a tty), wired to this terminal.

Used while the TUI is suspended: the terminal goes raw, bytes are pumped both ways between it and the exec
socket, the exec tty follows the terminal's size. No Textual here.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from typing import Any

SHELL = ["/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash; else exec /bin/sh; fi"]


def _raw_socket(sock: Any) -> Any:
    return getattr(sock, "_sock", sock)


def exec_config(cmd: list[str] | None = None) -> dict[str, Any]:
    """docker-py's exec_create arguments for an interactive shell (or `cmd`): stdin and a tty, like
    `docker exec -it`."""
    return {"cmd": list(cmd or SHELL), "stdin": True, "tty": True, "environment": {"TERM": "xterm"}}


def run_shell(api: Any, container_id: str, cmd: list[str] | None = None, *, fd_in: int | None = None,
              fd_out: int | None = None) -> int:
    """Run `cmd` (bash, else sh) in the container wired to this terminal (or to `fd_in`/`fd_out`); return its
    exit code. The terminal is put in raw mode only when `fd_in` is a tty."""
    exec_id = api.exec_create(container_id, **exec_config(cmd))["Id"]
    sock = _raw_socket(api.exec_start(exec_id, tty=True, socket=True))
    fd_in = sys.stdin.fileno() if fd_in is None else fd_in
    fd_out = sys.stdout.fileno() if fd_out is None else fd_out

    def resize(*_: object) -> None:
        size = shutil.get_terminal_size()
        with contextlib.suppress(Exception):
            api.exec_resize(exec_id, height=size.lines, width=size.columns)

    old_attrs = termios.tcgetattr(fd_in) if os.isatty(fd_in) else None
    main_thread = threading.current_thread() is threading.main_thread()  # signals only there
    old_handler = signal.signal(signal.SIGWINCH, resize) if main_thread else None
    try:
        if old_attrs is not None:
            tty.setraw(fd_in)
        resize()
        while True:
            ready, _, _ = select.select([sock, fd_in], [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    break
                os.write(fd_out, data)
            if fd_in in ready:
                data = os.read(fd_in, 65536)
                if not data:
                    break
                sock.sendall(data)
    finally:
        if main_thread:
            signal.signal(signal.SIGWINCH, old_handler)
        if old_attrs is not None:
            termios.tcsetattr(fd_in, termios.TCSADRAIN, old_attrs)
        with contextlib.suppress(OSError):
            sock.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else -1
