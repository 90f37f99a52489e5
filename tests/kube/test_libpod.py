"""Podman's libpod `GET /libpod/generate/kube`, over the daemon's socket in raw HTTP."""

from __future__ import annotations

import http.client
import json
import socket

import yaml

from tests.api.conftest import PortsideDaemon

from .conftest import validate


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def get(daemon: PortsideDaemon, url: str) -> tuple[int, str, bytes]:
    conn = _Unix(daemon.host.removeprefix("unix://"))
    conn.request("GET", url)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type") or "", body


def test_generate_kube_endpoint(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    names.append("pst-klibpod")
    out = daemon.docker("run", "-d", "--name", "pst-klibpod", "-p", "127.0.0.1::7000", "busybox", "sleep", "300")
    assert out.returncode == 0, out.stderr
    for prefix in ("", "/v4.0.0"):
        status, ctype, body = get(daemon, f"{prefix}/libpod/generate/kube?names=pst-klibpod&service=true")
        assert status == 200 and ctype.startswith("text/vnd.yaml"), body
        docs = [d for d in yaml.safe_load_all(body) if d]
        for d in docs:
            validate(d)
        assert sorted(d["kind"] for d in docs) == ["Pod", "Service"]
    status, _, body = get(daemon, "/libpod/generate/kube?names=pst-knosuch")
    assert status == 404 and "pst-knosuch" in json.loads(body)["message"]
    status, _, body = get(daemon, "/libpod/generate/kube")
    assert status == 400 and json.loads(body)["message"]
