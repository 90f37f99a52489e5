"""The crash-injection harness itself: a no-op unless armed, a SIGKILL at the armed point, nothing inherited."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from engine.crashpoints import ENV, POINTS

SCRIPT = """
import os, subprocess, sys
from engine.crashpoints import crashpoint
crashpoint("pull.record")  # not armed in any case below
child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('PORTSIDE_CRASH_AT'))"],
                       capture_output=True, text=True, check=True)
print("child sees", child.stdout.strip(), flush=True)
crashpoint("image.record")
print("survived", flush=True)
"""


def _run(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if env_value is not None:
        env[ENV] = env_value
    env["PYTHONPATH"] = os.getcwd()
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


def test_disarmed_points_do_nothing() -> None:
    out = _run(None)
    assert out.returncode == 0 and "survived" in out.stdout


def test_armed_point_kills_the_process_there_and_the_variable_is_not_passed_on() -> None:
    out = _run("image.record")
    assert out.returncode == -signal.SIGKILL
    assert "child sees None" in out.stdout  # taken out of the environment: supervisors never inherit it
    assert "survived" not in out.stdout
    assert "crashpoint image.record: SIGKILL" in out.stderr


def test_an_unknown_name_is_reported() -> None:
    out = _run("image.recrod")
    assert out.returncode == 0 and "no crashpoint named 'image.recrod'" in out.stderr


def test_every_point_is_placed_in_the_engine() -> None:
    root = os.path.join(os.getcwd(), "engine")
    placed: set[str] = set()
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith(".py") and f != "crashpoints.py":
                text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                placed.update(p for p in POINTS if f'crashpoint("{p}")' in text)
    assert placed == POINTS
