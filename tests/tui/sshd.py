"""A tiny SSH server on 127.0.0.1 for the ssh:// host tests (paramiko's server side): public-key login for one key,
and `docker system dial-stdio` (what docker-py and the docker CLI run over ssh) served by piping the channel to an
engine's unix socket, as the docker CLI on the far host would."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import paramiko

DIAL = b"docker system dial-stdio"


class _Server(paramiko.ServerInterface):
    def __init__(self, owner: SshServer) -> None:
        self.owner = owner

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == self.owner.user and key == self.owner.authorized
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        if command != DIAL:
            return False
        self.owner.dials += 1
        threading.Thread(target=self.owner.pipe, args=(channel,), daemon=True).start()
        return True


class SshServer:
    def __init__(self, engine_socket: str, authorized: paramiko.PKey, user: str = "pst") -> None:
        self.engine_socket = engine_socket
        self.authorized = authorized
        self.user = user
        self.host_key = paramiko.ECDSAKey.generate()
        self.dials = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._transports: list[paramiko.Transport] = []
        self._open: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n"

    def _accept(self) -> None:
        while True:
            try:
                sock = self._listener.accept()[0]
            except OSError:
                return
            t = paramiko.Transport(sock)
            t.add_server_key(self.host_key)
            self._transports.append(t)
            try:
                t.start_server(server=_Server(self))
            except (paramiko.SSHException, EOFError, OSError):
                continue
            threading.Thread(target=self._channels, args=(t,), daemon=True).start()

    def _channels(self, t: paramiko.Transport) -> None:
        while t.is_active():
            chan = t.accept(1)  # exec requests start their pipes in check_channel_exec_request
            if chan is not None:
                self._open.append(chan)  # a Channel nobody holds is closed when it is collected

    def pipe(self, channel: Any) -> None:
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect(self.engine_socket)
        except OSError:
            channel.close()
            return

        def down() -> None:
            with contextlib.suppress(OSError, EOFError):
                while data := upstream.recv(65536):
                    channel.sendall(data)
            with contextlib.suppress(Exception):
                channel.shutdown_write()

        threading.Thread(target=down, daemon=True).start()
        with contextlib.suppress(OSError, EOFError):
            while data := channel.recv(65536):
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for t in self._transports:
            with contextlib.suppress(Exception):
                t.close()
