"""The `portside` command: the TUI by default, `portside daemon` for the headless engine.

Textual is imported only when the TUI runs, so `portside daemon` and `--help` stay light.
"""

from __future__ import annotations

import argparse
import sys

from engine.version import API_VERSION, __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portside",
        description=(
            "A terminal container manager with its own engine. Without a command it opens the TUI on "
            "$DOCKER_HOST, else a running portside daemon, else an engine started in-process."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"portside {__version__} (Engine API {API_VERSION})"
    )
    parser.add_argument(
        "-H", "--host", help="daemon socket to connect to (unix:///path or tcp://host:port); overrides $DOCKER_HOST"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("tui", help="open the TUI (the default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from app.main import run_tui

    return run_tui(host=args.host)


if __name__ == "__main__":
    sys.exit(main())
