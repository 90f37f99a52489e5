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


def test_a_plain_tui_start_reads_its_options_as_argparse_does() -> None:
    from app.cli import _tui_only, build_parser

    for argv in ([], ["tui"], ["-H", "unix:///x.sock"], ["--host", "tcp://127.0.0.1:2375"], ["--host=ssh://u@h"],
                 ["-c", "remote"], ["--context=remote"], ["-H", "unix:///a", "--context", "b", "tui"],
                 ["-H", "unix:///a", "-H", "unix:///b"]):
        quick = _tui_only(argv)
        full = build_parser().parse_args(argv)
        assert quick is not None, argv
        assert (quick.command, quick.host, quick.context) == (full.command, full.host, full.context), argv
    # everything else goes through argparse: help, version, commands, unknown options, missing values
    for argv in (["--help"], ["--version"], ["daemon"], ["kube", "generate", "x"], ["-H"], ["-H", "--version"],
                 ["-Hunix:///x"], ["--no-such-flag"], ["tui", "tui"], ["tui", "-H", "unix:///a"], ["-x"]):
        assert _tui_only(argv) is None, argv


def test_a_missing_option_value_is_argparses_error() -> None:
    out = _portside("-H")
    assert out.returncode == 2 and "expected one argument" in out.stderr
