"""The Textual app: owns the engine connection, the /events stream and reconnection; screens do the rest."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from app import endpoint as endpoints
from app.config import Config, load_config
from app.lifecycle import error_text
from app.messages import (
    ActionFailed,
    Connected,
    ConnectionLost,
    DockerEvent,
    EngineUnavailable,
    HostEvent,
    HostStateChanged,
    HostSwitched,
)
from app.prefetch import ContainerPrefetch

if TYPE_CHECKING:
    from app import hosts
    from app.engine_client import EngineClient
    from app.host_pool import HostConnection, HostPool


class PortsideApp(App[None]):
    """portside: Kitematic in the terminal, over the Docker Engine API."""

    CSS_PATH = "portside.tcss"
    TITLE = "portside"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark,f1", "help", "Help", id="help"),
        Binding("I", "screen('images')", "Images", id="images"),
        Binding("O", "screen('networks')", "Networks", id="networks"),
        Binding("V", "screen('volumes')", "Volumes", id="volumes"),
        Binding("E", "screen('events')", "Events", id="events"),
        Binding("h,H", "hosts", "Hosts", id="hosts"),
        Binding("R", "retry_host", "Retry host", id="retry_host", show=False),
    ]

    def __init__(
        self,
        host: str | None = None,
        *,
        context: str | None = None,
        config: Config | None = None,
        start_embedded: Callable[[], endpoints.Endpoint] | None = None,
        prefetch: ContainerPrefetch | None = None,
    ) -> None:
        self.config, config_errors = (config, []) if config is not None else load_config()
        super().__init__()
        self.host = host
        self.context = context  # --context NAME
        self.user_hosts: list[hosts.Host] = []
        if self.config.hosts:  # app.hosts (ssl, hashlib, tomllib...) is imported off the first frame's path
            from app.hosts import parse_user_hosts

            self.user_hosts, host_errors = parse_user_hosts(self.config.hosts, str(self.config.path or "config"))
            config_errors = [*config_errors, *host_errors]
        self.current_host: hosts.Host | None = None
        self._session_hosts: list[hosts.Host] = []  # hosts shown in this session (a -H URL is listed by none)
        self.pool: HostPool | None = None
        self._seen: tuple[str, int] = ("", -1)  # the connection the screens last loaded for
        self._embedded: endpoints.Endpoint | None = None
        self._embedded_lock = threading.Lock()
        self._start_embedded = start_embedded
        self.engine: EngineClient | None = None
        self.endpoint: endpoints.Endpoint | None = None
        self.connected = False
        self.connections = 0  # counts successful connections: a screen loads its list once per connection
        self.prefetch = prefetch
        self.first_frame = threading.Event()  # set by the main screen once its first frame is drawn
        self._quitting = threading.Event()
        self._config_errors = config_errors
        if self.config.theme:
            self._wanted_theme = self.config.theme

    # --- lifecycle ---

    def on_mount(self) -> None:
        from app.screens.main import MainScreen

        if getattr(self, "_wanted_theme", None):
            try:
                self.theme = self._wanted_theme
            except Exception as exc:  # an unknown theme name
                self._config_errors.append(f"theme: {exc}")
        if self.config.keys:
            self.set_keymap(self.config.keys)
        for err in self._config_errors:
            self.notify(err, title="Config file", severity="error", timeout=15)
        self.sub_title = "connecting…"
        if self.is_headless:  # tests (Pilot): the screen is there as soon as the app runs
            self.push_screen(MainScreen())
        else:
            # after Textual's start-up batch: a screen laid out inside it is not drawn until something repaints
            # it, and its first frame is the one the user waits for
            self.call_later(self.push_screen, MainScreen())
        self.connect()

    async def action_quit(self) -> None:
        self.shutdown_streams()
        self.exit()

    def shutdown_streams(self) -> None:
        """Close every open stream so the thread workers reading them end (they would keep the process alive)."""
        self._quitting.set()
        self.first_frame.set()  # a connect still waiting for it goes on, sees the quit and ends
        for screen in self.screen_stack:
            stop = getattr(screen, "_stop_streams", None)
            if stop is not None:
                stop()
        if self.pool is not None:
            self.pool.close_all()

    def on_unmount(self) -> None:
        self.shutdown_streams()
        if self._embedded is not None:
            self._embedded.close()

    @work(thread=True, exclusive=True, group="connect", exit_on_error=False)
    def connect(self) -> None:
        """Pick the host to start on (-H, --context, $DOCKER_HOST, the docker context, else portside's engine) and
        open its connection; the host pool's thread connects, follows /events and reconnects from there."""
        if self.prefetch is not None and self.prefetch.result(timeout=1.0) is not None:
            # the first frame shows the prefetched list: docker-py's import and handshakes wait for it to be
            # drawn rather than share the interpreter with it
            self.first_frame.wait(2.0)
        from app import hosts

        try:
            first = hosts.initial(self.host, self.context)
        except hosts.ContextNotFound as exc:
            self.post_message(EngineUnavailable(str(exc)))
            return
        if not self._quitting.is_set():
            self.call_from_thread(self.switch_host, first)

    # --- hosts ---

    def switch_host(self, host: hosts.Host) -> None:
        """Make `host` the one every screen shows. A host the pool holds connected is there at once; another
        connects on the pool's thread (Connected, or ConnectionLost saying why, follow)."""
        from app.host_pool import HostPool

        if self.pool is None:
            self.pool = HostPool(self._resolve, self._host_changed, self._host_event)
        previous, self.current_host = self.current_host, host
        if host not in self._session_hosts:
            self._session_hosts.append(host)
        conn = self.pool.open(host)
        self.engine = conn.engine if conn.connected else None
        self.endpoint = conn.endpoint
        self.connected = conn.connected
        self._seen = (host.name, -1)
        if previous is not None:  # the first host keeps what the screen shows (the prefetched list)
            self._forward(HostSwitched(host.name))
        if conn.connected:
            self._show_connection(conn)
        else:
            self.sub_title = f"{host.title} - connecting…"
            if conn.status.state != "connecting":
                self._show_connection(conn)

    def _resolve(self, host: hosts.Host) -> endpoints.Endpoint:
        """On a pool thread: the Engine API address of a host; the local portside engine is its daemon's socket
        when one answers, else the engine started in this process (once)."""
        if host.source != "portside":
            return endpoints.Endpoint(host.url, "host", host.title, tls=host.tls.config() if host.tls else None)
        if endpoints.socket_answers(endpoints.PORTSIDE_SOCKET):
            sock = endpoints.PORTSIDE_SOCKET
            return endpoints.Endpoint(f"unix://{sock}", "daemon", f"portside daemon {sock}")
        with self._embedded_lock:
            if self._embedded is None:
                try:
                    self._embedded = (self._start_embedded or endpoints.embedded)()
                except endpoints.NoEngine:
                    raise
                except Exception as exc:
                    raise endpoints.NoEngine(f"Could not start the embedded engine: {error_text(exc)}") from exc
            return self._embedded

    def _host_changed(self, conn: HostConnection) -> None:
        """On a pool thread: a host connected, or could not be reached (the switcher and header show it)."""
        self.post_message(HostStateChanged(conn.host.name))

    def _host_event(self, conn: HostConnection, event: dict[str, Any]) -> None:
        if self.current_host is not None and conn.host.name == self.current_host.name:
            self.post_message(DockerEvent(event))
        else:
            self.post_message(HostEvent(conn.host.name, event))

    @on(HostStateChanged)
    def _host_state(self, message: HostStateChanged) -> None:
        self._forward(message)
        conn = self.pool.get(message.name) if self.pool is not None else None
        if conn is None or self.current_host is None or conn.host.name != self.current_host.name:
            return
        self._show_connection(conn)

    def _show_connection(self, conn: HostConnection) -> None:
        """The current host's state, as it is now (messages may arrive after it changed again)."""
        state = conn.status
        if conn.connected and conn.engine is not None:
            if self._seen == (conn.host.name, conn.connections):
                return
            self._seen = (conn.host.name, conn.connections)
            self.engine, self.endpoint = conn.engine, conn.endpoint
            self.connections += 1
            self.connected = True
            label = conn.endpoint.label if conn.endpoint is not None else conn.host.title
            self._connected(Connected(label))
            return
        self.connected = False
        self.endpoint = conn.endpoint
        if state.state == "unavailable":
            self._unavailable(EngineUnavailable(state.reason))
        elif state.state == "unreachable":
            self._seen = (conn.host.name, -1)
            label = conn.endpoint.label if conn.endpoint is not None else conn.host.title
            self._lost(ConnectionLost(f"{label}: {state.reason}"))

    def retry_host(self) -> None:
        """Try the current host again now (the banner's and the switcher's retry)."""
        if self.pool is not None and self.current_host is not None:
            conn = self.pool.get(self.current_host.name)
            if conn is None:
                self.switch_host(self.current_host)
            else:
                conn.retry()

    def known_hosts(self) -> list[hosts.Host]:
        """Every host the switcher lists: discovered ones, the user's, and those of this session that are none
        of them (a -H URL), after the local engine."""
        from app import hosts

        found = hosts.discover(user=self.user_hosts)
        names = {h.name for h in found}
        extra = [h for h in self._session_hosts if h.name not in names]
        return [*found[:1], *extra, *found[1:]]

    def action_retry_host(self) -> None:
        self.retry_host()

    def action_hosts(self) -> None:
        from app.screens.hosts import HostsScreen

        if not isinstance(self.screen, HostsScreen):
            self.push_screen(HostsScreen())

    # --- app-wide messages ---

    @on(Connected)
    def _connected(self, message: Connected) -> None:
        self.sub_title = message.label
        self._forward(message)

    @on(ConnectionLost)
    def _lost(self, message: ConnectionLost) -> None:
        where = self.endpoint.label if self.endpoint else self.current_host.title if self.current_host else ""
        self.sub_title = f"{where} - disconnected"
        self._forward(message)

    @on(EngineUnavailable)
    def _unavailable(self, message: EngineUnavailable) -> None:
        self.sub_title = "no engine"
        self._forward(message)

    @on(DockerEvent)
    @on(HostEvent)
    def _event(self, message: DockerEvent | HostEvent) -> None:
        self._forward(message)

    def _forward(self, message: Connected | ConnectionLost | EngineUnavailable | DockerEvent | HostSwitched
                 | HostStateChanged | HostEvent) -> None:
        """Give app-wide news to every screen on the stack (the main screen keeps its list fresh underneath)."""
        kind = type(message)
        for screen in self.screen_stack:
            copy = kind(**{f: getattr(message, f) for f in message.__dataclass_fields__})
            screen.post_message(copy)

    @on(ActionFailed)
    def _failed(self, message: ActionFailed) -> None:
        self.notify(message.error, title=message.what, severity="error", timeout=10)

    def fail(self, what: str, exc: BaseException) -> None:
        """Report a failed docker call from any thread; never raises."""
        self.post_message(ActionFailed(what, error_text(exc)))

    # --- navigation ---

    def action_help(self) -> None:
        from app.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def action_kube_play(self) -> None:
        from app.screens.kube import play_yaml

        play_yaml(self.screen)

    def action_screen(self, name: str) -> None:
        try:
            from app.screens.resources import EventsScreen, ImagesScreen, NetworksScreen, VolumesScreen
        except ImportError:
            self.notify(f"The {name} screen is not in this build yet", severity="warning")
            return

        screens: dict[str, type[Screen[None]]] = {
            "images": ImagesScreen,
            "networks": NetworksScreen,
            "volumes": VolumesScreen,
            "events": EventsScreen,
        }
        if isinstance(self.screen, screens[name]):
            return
        self.push_screen(screens[name]())

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        from app.lifecycle import VERBS

        main = self._main_screen()
        if main is not None:
            for verb in VERBS.values():
                yield SystemCommand(f"Container: {verb.title}", f"{verb.title} the selected containers",
                                    lambda v=verb.name: main.run_verb(v))
            yield SystemCommand("Run nginx", "Pull and run nginx with its ports published", main.action_run_nginx)
            yield SystemCommand("New container", "Search images and create a container", main.action_new)
            yield SystemCommand("Export to Kubernetes", "Kubernetes YAML of the selected container (or its compose "
                                "project): copy or save it", main.action_kube_export)
        yield SystemCommand("Play Kubernetes YAML", "Run the Pods, Deployments and Services of a YAML file",
                            self.action_kube_play)
        yield SystemCommand("Hosts", "Switch to another Docker host, add or remove one", self.action_hosts)
        for name in ("images", "networks", "volumes", "events"):
            yield SystemCommand(f"Show {name}", f"Open the {name} screen", lambda n=name: self.action_screen(n))
        yield SystemCommand("Help", "Keys and what they do", self.action_help)
        yield from self._binding_commands(screen)

    # Actions the commands above already offer under clearer names.
    _PALETTE_COVERED = ("verb(", "new", "run_nginx", "screen(", "help", "quit", "app.", "command_palette", "hosts",
                        "kube_export", "kube_play")

    def _binding_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Every other action bound on the screen and its focused widgets (pull, prune, create, exec, mark...),
        so the palette reaches all that the keys reach; the help text names the key."""
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding, node = active.binding, active.node
            if not binding.description or not active.enabled or binding.action.startswith(self._PALETTE_COVERED):
                continue
            name = f"{binding.description} ({type(node).__name__.removesuffix('Screen')})"
            if name in seen:
                continue
            seen.add(name)
            display = self.get_key_display(binding)

            async def run(action: str = binding.action, where: Any = node) -> None:
                await self.run_action(action, where)

            yield SystemCommand(name, f"key {display or key}", run)

    def _main_screen(self) -> Any:
        from app.screens.main import MainScreen

        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def first_frame_drawn(self) -> None:
        """The main screen's first frame is out: the connection may start, and garbage collection again."""
        self.first_frame.set()
        if not gc.isenabled():  # run_tui turned it off for the start
            gc.freeze()  # what start-up made lives as long as the app: no collection need look at it again
            gc.enable()

    def wait_engine(self, timeout: float = 30.0) -> EngineClient:
        """The connected client, for worker threads that start before the connection is made."""
        deadline = time.monotonic() + timeout
        while self.engine is None or not self.connected:
            if time.monotonic() > deadline or self._quitting.is_set():
                raise ConnectionError("not connected to an engine")
            time.sleep(0.05)
        return self.engine


STYLESHEET = Path(__file__).with_name("portside.tcss")
