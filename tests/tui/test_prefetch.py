"""The container list fetched while the app imports (app/prefetch.py): which endpoints it fetches from, that it
gives what docker-py's containers(all=True) gives, and that the main screen shows it before any connection."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app import prefetch
from app.screens.main import MainScreen
from app.tui import PortsideApp
from tests.tui.conftest import Engine, wait_for

NOWHERE = "unix:///nonexistent/portside-test.sock"


def test_only_plain_endpoints_are_prefetched(tmp_path: Path) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    env = {"DOCKER_CONFIG": str(config)}
    assert prefetch.plain_url("/run/x.sock", env) == "unix:///run/x.sock"
    assert prefetch.plain_url(None, {**env, "DOCKER_HOST": "tcp://127.0.0.1:2375"}) == "tcp://127.0.0.1:2375"
    assert prefetch.plain_url(None, {**env, "DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1"}) is None
    assert prefetch.plain_url(None, {**env, "DOCKER_HOST": "ssh://me@host"}) is None
    # a docker CLI context is read through docker-py: no prefetch, whether named by env or by the config file
    assert prefetch.plain_url(None, {**env, "DOCKER_CONTEXT": "remote"}) is None
    (config / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    assert prefetch.plain_url(None, env) is None
    # -H wins over a context, as in endpoint.choose
    assert prefetch.plain_url("unix:///run/x.sock", env) == "unix:///run/x.sock"


def _answer(raw: bytes) -> bytes:
    """What read_response makes of `raw` sent by a peer that then closes, in pieces of 7 bytes."""
    ours, theirs = socket.socketpair()

    def send() -> None:
        with theirs:
            for i in range(0, len(raw), 7):
                theirs.sendall(raw[i : i + 7])

    t = threading.Thread(target=send)
    t.start()
    try:
        with ours:
            return prefetch.read_response(ours)
    finally:
        t.join()


def test_the_answer_is_read_by_length_chunks_or_close() -> None:
    body = json.dumps([{"Id": "a" * 64, "Names": ["/x"]}]).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    assert _answer(head + b"Content-Length: %d\r\n\r\n" % len(body) + body) == body
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 10]), body[i : i + 10]) for i in range(0, len(body), 10))
    assert _answer(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n") == body
    assert _answer(head + b"\r\n" + body) == body  # HTTP/1.0 style: the body ends with the connection
    for bad in (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}",
                head + b"Content-Length: %d\r\n\r\n" % (len(body) + 5) + body,  # cut short
                head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked,  # no last chunk
                b"SSH-2.0-OpenSSH_9.2\r\n"):  # not HTTP at all
        with pytest.raises(prefetch.BadResponse):
            _answer(bad)


def test_the_start_path_imports_no_http_stack() -> None:
    """docker-py, requests and http.client cost a tenth of a second or more: the first frame must not wait for
    them (they are imported once it is drawn, when the app connects)."""
    code = ("import sys, app.cli, app.main, app.prefetch, app.tui, app.screens.main; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('docker', 'requests', 'urllib3', 'paramiko', 'http', 'email'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert out == [], f"imported before the first frame: {out}"


def test_a_dead_endpoint_gives_none_quickly() -> None:
    early = prefetch.ContainerPrefetch(NOWHERE)
    assert early.result(timeout=5) is None
    assert prefetch.ContainerPrefetch("tcp://127.0.0.1:1").result(timeout=5) is None
    assert prefetch.ContainerPrefetch("tcp://127.0.0.1").result(timeout=5) is None  # no port: left to docker-py


@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(120)
async def test_the_first_frame_shows_the_prefetched_list(engine: Engine) -> None:
    cid = engine.run(["sleep", "300"])
    early = prefetch.ContainerPrefetch(engine.url)
    listed = early.result(timeout=10)
    assert listed is not None
    assert {c["Id"] for c in listed} == {c["Id"] for c in engine.api.containers(all=True)}
    mine = next(c for c in listed if c["Id"] == cid)
    assert mine["State"] == "running" and mine["Names"] == engine.api.containers(filters={"id": cid})[0]["Names"]
    # the app is pointed at a socket that does not answer: the rows can only come from the prefetch
    app = PortsideApp(host=NOWHERE, config=engine.config(), prefetch=early)
    async with app.run_test(size=(160, 45)) as pilot:
        main = app.screen
        assert isinstance(main, MainScreen)
        assert cid in main.container_list.rows_by_id and main.container_list.rows_by_id[cid].state == "running"
        await wait_for(pilot, lambda: main.tabs_built, what="the hidden tabs")
        assert main.selected_id == main.container_list.current_id is not None
        assert not app.connected
