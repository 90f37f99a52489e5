"""The `portside` command: the TUI by default, `portside daemon` for the headless engine.

Textual is imported only when the TUI runs, so `portside daemon` and `--help` stay light.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from engine.version import API_VERSION, __version__

if TYPE_CHECKING:  # argparse is imported by build_parser: a plain TUI start needs none of it (see _tui_only)
    import argparse

DEFAULT_DAEMON_CONFIG = Path("/etc/portside/daemon.json")


def _add_daemon_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "daemon",
        help="run the engine headless, serving the Docker Engine API (dockerd's flag names)",
        description="Run the portside engine and serve the Docker Engine API on its sockets.",
    )
    d.add_argument("-H", "--host", action="append", dest="hosts", default=None,
                   help="daemon socket(s) to serve: unix:///path, or tcp://ADDR:PORT on loopback or with --tlsverify")
    d.add_argument("--data-root", help="root of persistent engine state (default /var/lib/portside)")
    d.add_argument("--exec-root", help="root of the runtime's state (default /run/portside)")
    d.add_argument("-p", "--pidfile", help="path of the daemon's PID file")
    d.add_argument("--insecure-registry", action="append", dest="insecure_registries", default=None,
                   help="registry (host:port or CIDR) to reach over plain HTTP or unverified TLS")
    d.add_argument("--registry-mirror", action="append", dest="registry_mirrors", default=None,
                   help="preferred Docker Hub mirror")
    d.add_argument("--config-file", help=f"daemon configuration file (default {DEFAULT_DAEMON_CONFIG})")
    d.add_argument("-l", "--log-level", choices=["debug", "info", "warn", "error", "fatal"], default=None,
                   help="logging level (default info)")
    d.add_argument("-D", "--debug", action="store_true", help="debug logging")
    d.add_argument("-G", "--group", default=None, help="group owning the unix socket (default docker)")
    d.add_argument("-b", "--bridge", default=None, help="name of the default bridge (default portside0)")
    d.add_argument("--ip-forward", default=None, choices=["true", "false"], nargs="?", const="true",
                   help="enable net.ipv4.ip_forward (default true)")
    d.add_argument("--cgroup-parent", default=None, help="parent cgroup of the containers (default portside)")
    d.add_argument("--tlsverify", action="store_true", default=None, help="require TLS client certificates")
    d.add_argument("--tlscacert", default=None, help="CA that client certificates must chain to")
    d.add_argument("--tlscert", default=None, help="server TLS certificate")
    d.add_argument("--tlskey", default=None, help="server TLS key")


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="portside",
        description=(
            "A terminal container manager with its own engine. Without a command it opens the TUI on -H, "
            "--context, $DOCKER_HOST or the docker CLI's current context, else a running portside daemon, else an "
            "engine started in-process. In the TUI, h lists every host (the local engine, $DOCKER_HOST, docker "
            "contexts, Podman's socket, hosts you add) and switches between them."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"portside {__version__} (Engine API {API_VERSION})"
    )
    parser.add_argument(
        "-H", "--host", help="daemon socket to connect to (unix:///path, tcp://host:port, ssh://user@host); "
        "overrides $DOCKER_HOST; tcp:// uses TLS with $DOCKER_TLS_VERIFY and $DOCKER_CERT_PATH as docker does"
    )
    parser.add_argument(
        "-c", "--context", help="docker CLI context to start on (see `docker context ls`); overrides "
        "$DOCKER_CONTEXT and the docker config's current context"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("tui", help="open the TUI (the default)")
    _add_daemon_parser(sub)
    from app import kube_cli  # light: it imports docker-py and engine/kube only when a verb runs

    kube_cli.add_parser(sub)
    return parser


def run_daemon(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from engine.daemon import Daemon, DaemonConfig
    from engine.errors import EngineError

    cfg = DaemonConfig()
    given: set[str] = set()
    for attr, value in (
        ("hosts", args.hosts), ("data_root", args.data_root and Path(args.data_root)),
        ("exec_root", args.exec_root and Path(args.exec_root)), ("pidfile", args.pidfile and Path(args.pidfile)),
        ("insecure_registries", args.insecure_registries), ("registry_mirrors", args.registry_mirrors),
        ("log_level", "debug" if args.debug else args.log_level), ("group", args.group),
        ("tlsverify", args.tlsverify), ("tlscacert", args.tlscacert), ("tlscert", args.tlscert),
        ("tlskey", args.tlskey), ("bridge", args.bridge), ("cgroup_parent", args.cgroup_parent),
    ):
        if value:
            setattr(cfg, attr, value)
            given.add(attr)
    if args.ip_forward is not None:
        cfg.ip_forward = args.ip_forward == "true"
        given.add("ip_forward")
    try:
        config_file = Path(args.config_file) if args.config_file else DEFAULT_DAEMON_CONFIG
        if args.config_file or config_file.exists():
            cfg = DaemonConfig.merge_file(cfg, config_file, given)
    except EngineError as e:
        print(f"portside daemon: {e.message}", file=sys.stderr)
        return 1
    level = {"warn": "WARNING", "fatal": "CRITICAL"}.get(cfg.log_level, cfg.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(Daemon(cfg).run_forever())
    except EngineError as e:
        print(f"portside daemon: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"portside daemon: {e}", file=sys.stderr)
        return 1
    return 0


def _tui_only(argv: list[str]) -> Any:
    """The arguments of a plain TUI start (`portside`, `portside tui`, with -H/--host, -c/--context), read without
    building the parser: its eight parsers and fifty options cost ~8 ms (gettext looks up a catalogue for each
    help string) and argparse's import ~2 ms, a thirtieth of the first frame. None for anything else (help,
    version, a command, a typo): those go through argparse, as before."""
    out = SimpleNamespace(command=None, host=None, context=None)
    options = {"-H": "host", "--host": "host", "-c": "context", "--context": "context"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if out.command is not None:
            return None  # `tui` takes no options of its own: argparse's error
        if arg == "tui":
            out.command = "tui"
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name in options and name.startswith("--") and eq:
            setattr(out, options[name], value)
            i += 1
        elif arg in options and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            setattr(out, options[arg], argv[i + 1])
            i += 2
        else:
            return None
    return out


def main(argv: list[str] | None = None) -> int:
    args = _tui_only(sys.argv[1:] if argv is None else argv)
    if args is None:
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "daemon":
        return run_daemon(args)
    if args.command == "kube":
        from app import kube_cli

        return kube_cli.run(args)
    if args.host and args.context:
        # docker's own refusal of both at once
        print('portside: conflicting options: cannot specify both --host and --context', file=sys.stderr)
        return 1
    if not args.host:  # --context or $DOCKER_CONTEXT naming no context: docker's message, exit 1
        from app.hosts import ContextNotFound, initial  # not for -H: it and hashlib, tomllib stay off the first frame

        try:
            initial(context=args.context)
        except ContextNotFound as exc:
            print(f"portside: {exc}", file=sys.stderr)
            return 1
    from app.main import run_tui

    return run_tui(host=args.host, context=args.context)


if __name__ == "__main__":
    sys.exit(main())
