"""Exec: the request the `e` action builds, run for real through the API, and the interactive pump itself
(run_shell) fed through pipes in place of the terminal. Pilot's headless driver cannot suspend the app, so the
`e` key there must end in a readable message, not a crash."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from app.exec_shell import SHELL, exec_config, run_shell
from app.tui import PortsideApp
from tests.tui.conftest import Engine, select_container, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.tui, pytest.mark.timeout(120)]

SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]


@pytest.mark.every_engine
def test_exec_request_runs_for_real(engine: Engine) -> None:
    """exec_config is `docker exec -it`: stdin, a tty, TERM; with a command it runs that command, and the
    default is bash-else-sh."""
    cfg = exec_config()
    assert cfg["cmd"] == SHELL and cfg["stdin"] and cfg["tty"] and cfg["environment"] == {"TERM": "xterm"}
    cid = engine.run(SLEEPER)
    try:
        exec_id = engine.api.exec_create(cid, **exec_config(["sh", "-c", "echo out-$TERM; tty"]))["Id"]
        out = engine.api.exec_start(exec_id, tty=True).decode()
        assert "out-xterm" in out and "/dev/pts/" in out, out  # the tty was given
        assert engine.api.exec_inspect(exec_id)["ExitCode"] == 0
    finally:
        engine.api.remove_container(cid, force=True)


@pytest.mark.every_engine
def test_the_shell_pump_carries_input_output_and_the_exit_code(engine: Engine) -> None:
    """run_shell with pipes for the terminal: typed lines reach the container's shell, its output comes back,
    and the shell's exit status is returned."""
    cid = engine.run(SLEEPER)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    result: list[int] = []
    try:
        worker = threading.Thread(target=lambda: result.append(run_shell(engine.api, cid, fd_in=in_r,
                                                                         fd_out=out_w)), daemon=True)
        worker.start()
        os.write(in_w, b"echo marker-$((40+2))\nexit 3\n")
        worker.join(60)
        assert not worker.is_alive(), "the shell did not end on exit"
        os.close(out_w)
        out_w = -1
        chunks = []
        while data := os.read(out_r, 65536):
            chunks.append(data)
        out = b"".join(chunks).decode(errors="replace")
        assert "marker-42" in out, out
        assert result == [3]
    finally:
        for fd in (in_r, in_w, out_r, out_w):
            if fd >= 0:
                os.close(fd)
        engine.api.remove_container(cid, force=True)


@pytest.mark.every_engine
async def test_exec_key_without_a_terminal_is_a_message(engine: Engine, tmp_config_home: Any) -> None:
    """`e` on a running container under Pilot (no terminal to hand over): an error notification, the app goes
    on; on a stopped container it says to start it first."""
    cid = engine.run(SLEEPER)
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        main = await select_container(pilot, cid)
        main.container_list.focus()
        await pilot.press("e")
        await wait_for(pilot, lambda: any(n.title.startswith("Exec in") for n in app._notifications),
                       what="the exec message")
        assert app.is_running
        engine.api.kill(cid)
        await wait_for(pilot, lambda: main.container_list.rows_by_id[cid].state != "running", what="stopped")
        await pilot.press("e")
        await wait_for(pilot, lambda: any("start it to run a shell" in n.message for n in app._notifications),
                       what="the stopped message")
    engine.api.remove_container(cid, force=True)


@pytest.mark.every_engine
async def test_exec_tab_names_the_container_and_runs_the_typed_command(engine: Engine, tmp_config_home: Any) -> None:
    """The Exec tab follows the selection, takes a command typed as in a shell (quotes kept together), and
    records each run; under Pilot there is no terminal to hand over, so the run is recorded as failed."""
    from app.widgets.exec_pane import ExecPane

    cid = engine.run(SLEEPER)
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        main = await select_container(pilot, cid)
        name = main.container_list.rows_by_id[cid].name
        main.query_one("#tabs").active = "tab-exec"  # type: ignore[attr-defined]
        await pilot.pause()
        pane = main.query_one(ExecPane)
        assert name in str(pane.query_one("#exec-target").render())
        assert pane.command() is None  # empty: the container's shell
        pane.query_one("#exec-cmd").focus()
        await pilot.press(*"echo 'a b'")
        assert pane.command() == ["echo", "a b"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(pane.sessions), what="the run recorded")
        assert pane.sessions[-1].startswith(f"{name}: echo a b failed")
        assert app.is_running
        await pilot.press("space", "'")  # an unclosed quote: a message, nothing run
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(n.message.startswith("Command:") for n in app._notifications),
                       what="the quote message")
        assert len(pane.sessions) == 1
    engine.api.remove_container(cid, force=True)
