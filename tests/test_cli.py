"""`portside --help` and `--version` answer, through the installed console script when there is one."""

from __future__ import annotations

import subprocess
import sys

from engine.version import __version__


def _portside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_version_prints_the_package_version() -> None:
    out = _portside("--version")
    assert out.returncode == 0
    assert out.stdout.strip().startswith(f"portside {__version__}")


def test_help_lists_the_commands() -> None:
    out = _portside("--help")
    assert out.returncode == 0
    assert "usage: portside" in out.stdout
    assert "DOCKER_HOST" in out.stdout


def test_unknown_argument_is_an_error() -> None:
    out = _portside("--no-such-flag")
    assert out.returncode == 2
    assert "unrecognized arguments" in out.stderr
