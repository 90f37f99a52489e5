"""The real `portside` command in a terminal (tmux): it lists a container made with the docker CLI, and its logs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.tui.conftest import Engine

pytestmark = [pytest.mark.integration, pytest.mark.tui, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def _capture(server: str, session: str) -> str:
    return subprocess.run(["tmux", "-L", server, "capture-pane", "-p", "-t", session],
                          capture_output=True, text=True, check=False).stdout


def _wait_screen(server: str, session: str, needles: list[str], timeout: float = 30.0,
                 absent: tuple[str, ...] = ()) -> str:  # fmt: skip
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _capture(server, session)
        if all(n in screen for n in needles) and not any(a in screen for a in absent):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{needles} (and not {list(absent)}) not on screen:\n{screen}")


def test_portside_in_tmux_lists_a_cli_container_and_its_logs(engine: Engine, tmp_path: Path) -> None:
    """docker CLI creates a container; portside shows its name, image and state, and its log line."""
    if not shutil.which("tmux"):
        pytest.fail("tmux is a test dependency: run ./scripts/install --test")
    docker = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")
    assert docker, "no docker CLI"
    name = f"pst-tmux-{uuid.uuid4().hex[:6]}"
    subprocess.run([docker, "-H", engine.url, "run", "-d", "--network", "none", "--name", name, engine.busybox,
                    "sh", "-c", "echo hello-from-tmux; exec sleep 300"], check=True, capture_output=True, timeout=60)
    server, session = f"pst-{uuid.uuid4().hex[:8]}", "portside"
    env = f"XDG_CONFIG_HOME={tmp_path} PYTHONPATH={ROOT} TERM=xterm-256color"
    cmd = f"env -u COLUMNS -u LINES {env} {sys.executable} -m app.cli -H {engine.url}"
    # -f /dev/null: a user's tmux.conf cannot change the window; COLUMNS/LINES unset: the pty's size counts.
    new = ["tmux", "-L", server, "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "160", "-y", "45"]
    subprocess.run([*new, cmd], check=True, cwd=tmp_path)
    subprocess.run(["tmux", "-L", server, "resize-window", "-t", session, "-x", "160", "-y", "45"],
                   capture_output=True, check=False)
    try:
        _wait_screen(server, session, [name, "running"])
        # move the cursor onto our container (others may be listed), then its log shows on the Home tab
        subprocess.run(["tmux", "-L", server, "send-keys", "-t", session, "/"], check=True)
        _wait_screen(server, session, ["filter containers"], absent=("space Mark",))
        subprocess.run(["tmux", "-L", server, "send-keys", "-t", session, "-l", name], check=True)
        subprocess.run(["tmux", "-L", server, "send-keys", "-t", session, "Enter"], check=True)
        # the list has the focus back (its keys in the footer): a q now is not typed into the filter
        screen = _wait_screen(server, session, [name, "hello-from-tmux", "space Mark"])
        assert "unix://" in screen or "-H" in screen  # the header names the endpoint
        subprocess.run(["tmux", "-L", server, "send-keys", "-t", session, "Escape"], check=True)
        time.sleep(0.3)
        # An ESC and a key that reach the app in one read are one key, alt+<key> (as in every terminal app): on a
        # loaded machine the app's input thread can be late enough for that, so an unanswered q is sent again.
        for _attempt in range(3):
            subprocess.run(["tmux", "-L", server, "send-keys", "-t", session, "q"], check=True)
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                alive = subprocess.run(["tmux", "-L", server, "has-session", "-t", session], capture_output=True,
                                       check=False).returncode == 0
                if not alive:
                    break
                time.sleep(0.2)
            else:
                continue
            break
        else:
            raise AssertionError("portside did not quit on q:\n" + _capture(server, session))
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True, check=False)


def test_exec_key_hands_the_terminal_to_a_shell_and_takes_it_back(engine: Engine, tmp_path: Path) -> None:
    """In a real terminal, e suspends portside and gives the container's shell the terminal: a typed command's
    output shows, `exit` brings portside back with the shell's exit status."""
    if not shutil.which("tmux"):
        pytest.fail("tmux is a test dependency: run ./scripts/install --test")
    name = f"pst-exec-{uuid.uuid4().hex[:6]}"
    cid = engine.run(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"], name)
    server, session = f"pst-{uuid.uuid4().hex[:8]}", "portside"
    env = f"XDG_CONFIG_HOME={tmp_path} PYTHONPATH={ROOT} TERM=xterm-256color"
    cmd = f"env -u COLUMNS -u LINES {env} {sys.executable} -m app.cli -H {engine.url}"
    new = ["tmux", "-L", server, "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "160", "-y", "45"]
    subprocess.run([*new, cmd], check=True, cwd=tmp_path)

    def keys(*k: str, literal: bool = False) -> None:
        subprocess.run(["tmux", "-L", server, "send-keys", "-t", session, *(["-l"] if literal else []), *k],
                       check=True)

    try:
        _wait_screen(server, session, [name, "running"])
        # The footer shows the list's keys (space Mark) only while the list has the focus: the filter's Enter gives
        # it back through a message, so an e sent before that is typed into the filter (seen under load)
        keys("/")
        _wait_screen(server, session, ["filter containers"], absent=("space Mark",))
        keys(name, literal=True)
        keys("Enter")
        # and the Home tab shows a sample of the selected container (PIDs): the selection is on our row, the only
        # one the filter leaves
        _wait_screen(server, session, [name, "PIDs", "space Mark"])
        keys("e")
        _wait_screen(server, session, ["#"])  # busybox sh's prompt, on a terminal of its own
        keys("echo tmux-$((6*7))", literal=True)
        keys("Enter")
        _wait_screen(server, session, ["tmux-42"])
        keys("exit 0", literal=True)
        keys("Enter")
        _wait_screen(server, session, [f"Shell in {name} ended (exit 0)"])
        keys("q")
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True, check=False)
        engine.api.remove_container(cid, force=True)
