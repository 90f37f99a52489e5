"""The main screen: containers on the left, the selected container's tabs on the right.

Data flow: the app's /events stream is forwarded here; container events mark ids dirty and one debounced worker
re-lists just those ids. Logs and the URL check of the selected container run in thread workers that stop when
the selection changes (a generation number) and post messages back. Stats come from one shared stream per
container (app/stats_streams.py): the selected running container's always, every running container's while the
Stats tab shows (its table); a sample of the selected container updates whichever of Home and Stats is shown,
the table is redrawn from the histories every TABLE_PERIOD seconds, changed cells only.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from app.containers import ContainerRow, on_host, split_row_id, urls
from app.key_hint import key_of
from app.lifecycle import VERBS, error_text
from app.log_stream import drop_resent
from app.messages import (
    Connected,
    ConnectionLost,
    DockerEvent,
    EngineUnavailable,
    HostEvent,
    HostStateChanged,
    HostSwitched,
    RunImage,
)
from app.stats import History
from app.stats_streams import StatsStreams
from app.widgets.container_list import ContainerList
from app.widgets.log_view import LogView

if TYPE_CHECKING:  # the tabs' widgets are imported when they are built (_mount_rest)
    import urllib.request

    from textual.widgets import TabbedContent

    from app import settings as st
    from app.widgets.exec_pane import ExecPane
    from app.widgets.home import HomePane
    from app.widgets.settings_pane import SettingsPane
    from app.widgets.stats_pane import StatsPane

# Container event actions that change what the list shows.
LIST_ACTIONS = {
    "create", "start", "restart", "stop", "die", "kill", "pause", "unpause", "rename", "destroy", "update",
    "health_status", "oom",
}

# Container states `docker stats` lists (a paused container still runs, frozen).
STATS_STATES = {"running", "paused"}
# Seconds between redraws of the Stats tab's table of all running containers.
TABLE_PERIOD = 2.0

@functools.cache
def _no_proxy() -> urllib.request.OpenerDirector:
    import urllib.request  # here, on the URL check's thread: not one of the imports the first frame waits for

    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_check(url: str, timeout: float = 2.0) -> str:
    """`200`, `404`... or why there was no answer."""
    import urllib.error

    try:
        with _no_proxy().open(url, timeout=timeout) as resp:
            return str(resp.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except urllib.error.URLError as exc:
        reason = exc.reason
        return f"no answer ({getattr(reason, 'strerror', None) or reason})"
    except OSError as exc:
        return f"no answer ({exc.strerror or exc})"


def first_run_hint(app: App[object]) -> str:
    """What an empty container list says: the one key that runs nginx, the New container key, other hosts."""
    nginx, new, hosts = (key_of(app, b) for b in ("run_nginx", "new", "hosts"))
    return (f"No containers yet.\n\n[b]{nginx}[/] runs nginx: pulled if needed, its port published, its URL "
            f"shown.\n[b]{new}[/] opens New container: search local images and registries, or type a reference "
            f"(registry:5000/team/app:1.2) and run it.\n[b]{hosts}[/] switches to another Docker host; "
            "`portside -H URL` or $DOCKER_HOST starts on one.")


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("s", "verb('start')", "Start", id="start"),
        Binding("x", "verb('stop')", "Stop", id="stop"),
        Binding("r", "verb('restart')", "Restart", id="restart"),
        Binding("p", "verb('pause')", "Pause", id="pause"),
        Binding("K", "verb('kill')", "Kill", id="kill"),
        Binding("delete,d", "verb('remove')", "Remove", id="remove"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("c", "new", "New", id="new"),
        Binding("w", "run_nginx", "Run nginx", id="run_nginx"),
        Binding("e", "exec", "Exec", id="exec"),
        Binding("k", "kube_export", "Export to Kubernetes", id="kube_export", show=False),
        Binding("Y", "copy('id')", "Copy id", id="copy_id", show=False),
        Binding("U", "copy('url')", "Copy URL", id="copy_url", show=False),
        Binding("A", "all_hosts", "All hosts", id="all_hosts", show=False),
        Binding("escape", "clear_filter", show=False),
    ]

    @dataclass
    class RowsLoaded(Message):
        rows: list[ContainerRow]
        host: str = ""  # the host they came from: a list of the last host arriving after a switch is dropped

    @dataclass
    class RowsRefreshed(Message):
        ids: list[str]
        rows: list[ContainerRow]
        host: str = ""

    @dataclass
    class UrlStatus(Message):
        generation: int
        states: dict[str, str]

    @dataclass
    class StatsSample(Message):
        container_id: str

    @dataclass
    class InspectLoaded(Message):
        container_id: str
        data: dict[str, Any]
        networks: list[str]
        containers: list[str]
        container_list: list[dict[str, Any]]
        volumes: list[str]
        settings_data: dict[str, Any]  # `data` as the settings go by it (st.for_settings)

    @dataclass
    class SavePlanned(Message):
        container_id: str
        settings: st.Settings
        plan: st.Plan
        errors: list[str]

    @dataclass
    class SettingsApplied(Message):
        container_id: str

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._streams: list[Any] = []
        self._streams_lock = threading.Lock()
        self.selected_id: str | None = None
        self.history = History()
        self.stats_streams = StatsStreams(self._open_stats, self._stats_arrived)
        self._stats_pane: StatsPane | None = None
        self._covered = False  # another screen (not a dialog) is over this one
        self.active_tab = "tab-home"
        self.url_states: dict[str, str] = {}
        self.loaded = threading.Event()
        self._loaded_for = -1  # the app's connection count the list was last loaded for
        self._painted = False  # until the first frame is out, a selection's streams and forms wait
        self._rows_in = False
        self.all_hosts = False  # the list shows every connected host's containers, grouped by host (A)
        self._other_reload_scheduled = False
        self._rows_by_host: dict[str, list[ContainerRow]] = {}  # each host's list as last loaded

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="banner")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield ContainerList(self._prefetched(), id="containers")
                yield Static("", id="first-run")
            # The filter box and the tabs are mounted once the first frame is out (_mount_rest): the tab bar,
            # its five panes and their ~75 widgets, and the (hidden) filter box cost that frame over a tenth of
            # its time while it can show nothing of the selection yet; an empty pane of the tabs' size stands in.
            yield Vertical(id="tabs-placeholder")
        yield Footer()

    @property
    def tabs_built(self) -> bool:
        """The tabs and their widgets exist, Home's too, and the filter box (they come once the first frame is out)."""
        return self._painted

    async def _mount_rest(self) -> None:
        # imported here: a twentieth of a second that the first frame does not wait for
        from textual.widgets import TabbedContent, TabPane

        from app.widgets.exec_pane import ExecPane
        from app.widgets.home import HomePane
        from app.widgets.json_tree import JsonTree
        from app.widgets.settings_pane import SettingsPane
        from app.widgets.stats_pane import StatsPane

        box = Input(placeholder="filter containers (/)", id="filter")
        box.display = False
        await self.query_one("#left", Vertical).mount(box, before=0)
        tabs = TabbedContent(id="tabs")
        for pane in (TabPane("Home", HomePane(id="home"), id="tab-home"),
                     TabPane("Stats", StatsPane(id="stats"), id="tab-stats"),
                     TabPane("Settings", SettingsPane(id="settings"), id="tab-settings"),
                     TabPane("Exec", ExecPane(id="exec"), id="tab-exec"),
                     TabPane("Inspect", JsonTree(id="inspect"), id="tab-inspect")):
            tabs.compose_add_child(pane)  # what `with TabbedContent(): yield pane` does in a compose
        placeholder = self.query_one("#tabs-placeholder")
        await self.query_one("#main", Horizontal).mount(tabs, before=placeholder)
        await placeholder.remove()

    def _prefetched(self) -> list[ContainerRow] | None:
        """The list fetched while the app imported (app/prefetch.py), so the first frame shows it."""
        early = getattr(self.app, "prefetch", None)
        data = early.result(timeout=0.25) if early is not None else None
        return [ContainerRow.from_api(c) for c in data] if data is not None else None

    # --- typed accessors ---

    @property
    def container_list(self) -> ContainerList:
        return self.query_one(ContainerList)

    @property
    def home(self) -> HomePane:
        from app.widgets.home import HomePane

        return self.query_one(HomePane)

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    @property
    def stats_pane(self) -> StatsPane:
        if self._stats_pane is None:  # drawn every second: no DOM query each time
            from app.widgets.stats_pane import StatsPane

            self._stats_pane = self.query_one("#stats", StatsPane)
        return self._stats_pane

    @property
    def banner(self) -> Static:
        return self.query_one("#banner", Static)

    @property
    def engine(self) -> Any:
        return self.app.engine  # type: ignore[attr-defined]

    def on_mount(self) -> None:
        self.banner.display = False
        self.container_list.focus()
        self._table_timer = self.set_interval(TABLE_PERIOD, self._refresh_table, pause=True)
        if getattr(self.app, "connected", False):
            self._load_once()
        # pushed once the app's start-up batch is over (PortsideApp.on_mount), so Textual draws its first layout;
        # callbacks after a refresh run once nothing is left to draw
        self.call_after_refresh(self._first_frame_out)

    async def _first_frame_out(self) -> None:
        """Fill the hidden tabs, then start what the selection shows (logs, stats, inspect, settings form)."""
        if self._painted:
            return
        await self._mount_rest()
        self._painted = True
        self.app.first_frame_drawn()  # type: ignore[attr-defined]
        if self._rows_in:
            self.loaded.set()
        self._tab_activated_now()
        self._select(self.container_list.current_id)

    def on_unmount(self) -> None:
        self._stop_streams()

    # --- connection news ---

    @on(Connected)
    def _connected(self, _: Connected) -> None:
        self.banner.display = False
        self._load_once()

    @on(ConnectionLost)
    def _lost(self, message: ConnectionLost) -> None:
        self.banner.update(f"Connection to the engine lost: {message.reason}. Reconnecting… "
                           "(R: retry now, h: other hosts)")
        self.banner.display = True
        self._stop_streams()

    @on(HostSwitched)
    def _host_switched(self, message: HostSwitched) -> None:
        """Another host is shown: nothing of the last one stays; the new host's list as it was last shown is there
        at once, until its fresh list (loaded on Connected) replaces it."""
        self._stop_streams()
        self.banner.display = False
        if self.all_hosts:
            cur = getattr(self.app, "current_host", None)
            self.container_list.host_label = cur.name if cur is not None else ""
            self.container_list._drawn.clear()
        kept = getattr(self.app, "connected", False)  # an unreachable host's old rows would mislead
        self.container_list.set_rows(self._rows_by_host.get(message.name, []) if kept else [])
        self._rows_in = False
        self.loaded.clear()

    @on(EngineUnavailable)
    def _unavailable(self, message: EngineUnavailable) -> None:
        self.banner.update(message.reason)
        self.banner.display = True

    # --- the list ---

    def _load_once(self) -> None:
        """on_mount and the Connected message can both see a new connection: one load for each connection."""
        count = getattr(self.app, "connections", 0)
        if count != self._loaded_for:
            self._loaded_for = count
            self.load()

    def _host_name(self) -> str:
        cur = getattr(self.app, "current_host", None)
        return str(cur.name) if cur is not None else ""

    @work(thread=True, exclusive=True, group="list", exit_on_error=False)
    def load(self) -> None:
        host = self._host_name()
        try:
            data = self.app.wait_engine().api.containers(all=True)  # type: ignore[attr-defined]
        except Exception as exc:
            self.app.fail("Listing containers", exc)  # type: ignore[attr-defined]
            return
        rows = [ContainerRow.from_api(c) for c in data]
        if self.all_hosts:
            rows += self._other_hosts_rows()
        self.post_message(self.RowsLoaded(rows, host))

    def _other_hosts_rows(self) -> list[ContainerRow]:
        """The containers of every other connected host in the pool, keyed `host/id`; one that fails is left out
        (the switcher says why)."""
        app: Any = self.app
        current = app.current_host.name if app.current_host is not None else None
        rows: list[ContainerRow] = []
        for conn in app.pool.connections() if app.pool is not None else []:
            if conn.host.name == current or not conn.connected or conn.engine is None:
                continue
            try:
                listed = conn.engine.api.containers(all=True)
                rows += [on_host(ContainerRow.from_api(c), conn.host.name) for c in listed]
            except Exception:
                continue
        return rows

    def _engine_for(self, row_id: str) -> tuple[Any, str]:
        """The client and container id of a list key: the current host's, or another connected host's."""
        host, cid = split_row_id(row_id)
        if not host:
            return self.app.wait_engine(), cid  # type: ignore[attr-defined]
        pool = getattr(self.app, "pool", None)
        conn = pool.get(host) if pool is not None else None
        if conn is None or not conn.connected or conn.engine is None:
            raise ConnectionError(f"the host {host} is not connected")
        return conn.engine, cid

    def action_all_hosts(self) -> None:
        self.all_hosts = not self.all_hosts
        cur = getattr(self.app, "current_host", None)
        self.container_list.host_label = (cur.name if cur is not None else "") if self.all_hosts else ""
        self.container_list._drawn.clear()  # every name cell changes
        self.notify("Containers of every connected host" if self.all_hosts else "Containers of this host only")
        self.load()

    @on(HostEvent)
    def _host_event(self, message: HostEvent) -> None:
        """Another host's container changed: in the all-hosts list, reload (a burst of events, once)."""
        ev = message.event
        if not self.all_hosts or ev.get("Type") != "container":
            return
        if str(ev.get("Action", "")).split(":")[0] in LIST_ACTIONS and not self._other_reload_scheduled:
            self._other_reload_scheduled = True
            self.set_timer(0.2, self._reload_others)

    @on(HostStateChanged)
    def _host_state_changed(self, _: HostStateChanged) -> None:
        if self.all_hosts and not self._other_reload_scheduled:
            self._other_reload_scheduled = True
            self.set_timer(0.2, self._reload_others)

    def _reload_others(self) -> None:
        self._other_reload_scheduled = False
        if getattr(self.app, "connected", False):
            self.load()

    @on(DataTable.RowSelected, "#containers")
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        """Enter on another host's container: switch to that host (at once: it is connected) and select it."""
        host, cid = split_row_id(str(event.row_key.value))
        if not host:
            return
        target = next((h for h in self.app.known_hosts() if h.name == host), None)  # type: ignore[attr-defined]
        if target is not None:
            self.app.switch_host(target)  # type: ignore[attr-defined]
            self.focus_container(cid)

    @on(ContainerList.EmptyChanged)
    def _empty_changed(self, message: ContainerList.EmptyChanged) -> None:
        hint = self.query_one("#first-run", Static)
        hint.display = message.empty
        if message.empty:
            hint.update(first_run_hint(self.app))

    @on(RowsLoaded)
    def _rows_loaded(self, message: RowsLoaded) -> None:
        if message.host != self._host_name():
            return
        self._rows_by_host[message.host] = [r for r in message.rows if not r.host]
        self.container_list.set_rows(message.rows)
        self._rows_in = True
        if self._painted:  # tests and the reconnect banner wait on this: the tabs must be there too
            self.loaded.set()
        self._watch_stats()

    @on(DockerEvent)
    def _docker_event(self, message: DockerEvent) -> None:
        ev = message.event
        if ev.get("Type") != "container":
            return
        action = str(ev.get("Action", "")).split(":")[0]
        cid = ev.get("id") or (ev.get("Actor") or {}).get("ID")
        if action not in LIST_ACTIONS or not cid:
            return
        self._dirty.add(cid)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(0.05, self._flush)
        if action in ("start", "restart") and cid in self.stats_streams.watched:
            self.stats_streams.restart(cid)  # a stream of the run before may linger
        if cid == self.selected_id and action in ("start", "restart", "unpause"):
            self._restart_streams()

    def _flush(self) -> None:
        self._flush_scheduled = False
        ids, self._dirty = sorted(self._dirty), set()
        if ids:
            self._refresh_ids(ids)

    @work(thread=True, group="list-refresh", exit_on_error=False)
    def _refresh_ids(self, ids: list[str]) -> None:
        host = self._host_name()
        try:
            data = self.app.wait_engine().api.containers(all=True, filters={"id": ids})  # type: ignore[attr-defined]
        except Exception as exc:
            self.app.fail("Refreshing containers", exc)  # type: ignore[attr-defined]
            return
        self.post_message(self.RowsRefreshed(ids, [ContainerRow.from_api(c) for c in data], host))

    @on(RowsRefreshed)
    def _rows_refreshed(self, message: RowsRefreshed) -> None:
        if message.host != self._host_name():
            return
        found = {r.id for r in message.rows}
        for row in message.rows:
            self.container_list.upsert(row)
        for cid in message.ids:
            if cid not in found:
                self.container_list.discard(cid)
        self._watch_stats()
        self._refresh_table()
        if self.selected_id in message.ids:
            self._show_stats()  # its state may have changed
        if self.selected_id in found:
            self._show_urls_for(self.container_list.rows_by_id[self.selected_id])

    # --- filter ---

    def action_filter(self) -> None:
        if not self._painted:
            return  # the box comes with the first frame's follow-up (_mount_rest)
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.container_list.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.container_list.focus()

    def action_clear_filter(self) -> None:
        if not self._painted:
            return
        box = self.query_one("#filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.container_list.set_filter("")
            self.container_list.focus()

    # --- selection and its streams ---

    @on(ContainerList.Highlighted)
    def _highlighted(self, message: ContainerList.Highlighted) -> None:
        if self._painted:
            self._select(message.container_id)

    def _select(self, cid: str | None) -> None:
        if cid == self.selected_id:
            return
        self.selected_id = cid
        row = self.container_list.current
        self.exec_pane.show_target(row.name if row else None, row.state if row else None)
        self.history = self.stats_streams.history(self.selected_id) if self.selected_id else History()
        self._restart_streams(clear=True)
        self._watch_stats()
        self._show_stats()
        if self.selected_id and not split_row_id(self.selected_id)[0]:
            self.load_inspect(self.selected_id)

    def _stop_streams(self, keep_stats: bool = False) -> None:
        self.generation += 1
        with self._streams_lock:
            streams, self._streams = self._streams, []
        for s in streams:
            with contextlib.suppress(Exception):
                s.close()
        if not keep_stats:
            self.stats_streams.close_all()

    def _restart_streams(self, clear: bool = False) -> None:
        self._stop_streams(keep_stats=True)  # the stats streams follow what is wanted (_watch_stats), not this
        gen = self.generation
        row = self.container_list.current
        if clear:
            self.log_view.clear_lines()
            self.log_view.follow = True
            self.home.show_summary(None, "")
            self.stats_pane.reset(row.name if row else "")
        if row is None:
            self.home.show_urls({})
            return
        self.log_view.container_name = row.name  # type: ignore[attr-defined]
        self.log_view.take_pending()
        since = self._last_log_time()
        self._stream_logs(row.id, gen, since, self._resent_second())
        self._show_urls_for(row)
        self._check_urls(gen)

    def _last_log_time(self) -> float | None:
        from app.stats import _timestamp

        stamps = self.log_view.timestamps
        if stamps and stamps[-1]:
            return _timestamp(stamps[-1]) + 1e-6
        return None

    def _keep(self, gen: int, stream: Any) -> bool:
        with self._streams_lock:
            if gen != self.generation:
                return False
            self._streams.append(stream)
            return True

    def _resent_second(self) -> list[str]:
        """The lines shown with the last timestamp when it is whole seconds (Podman's): a stream asked for what
        came since sends that second's lines again, and they are dropped where it joins (drop_resent)."""
        stamps, lines = self.log_view.timestamps, self.log_view.lines
        if not stamps or not stamps[-1] or "." in stamps[-1]:
            return []
        last, out = stamps[-1], []
        for ts, line in zip(reversed(stamps), reversed(lines), strict=False):
            if ts != last:
                break
            out.append(f"{ts} {line}")
        return out[::-1]

    @work(thread=True, group="logs", exit_on_error=False)
    def _stream_logs(self, cid: str, gen: int, since: float | None, resent: list[str] | None = None) -> None:
        view = self.log_view
        try:
            engine, cid = self._engine_for(cid)
            # the configured tail on a new selection; after a restart, all that came since the last line shown
            tail = self.app.config.log_tail if since is None else "all"  # type: ignore[attr-defined]
            stream = engine.logs(cid, tail=tail, since=since, cancelled=lambda: gen != self.generation)
        except Exception as exc:
            if gen == self.generation:
                view.feed([f"(no logs: {error_text(exc)})"])
            return
        if not self._keep(gen, stream):
            stream.close()
            return
        try:
            resent = list(resent or [])
            for lines in stream:
                if gen != self.generation:
                    break
                if resent:
                    lines = drop_resent(lines, resent)
                view.feed(lines)
        except Exception:
            pass  # the stream broke: the engine went away, or the selection changed and closed it
        finally:
            stream.close()

    # --- stats ---

    def _open_stats(self, cid: str) -> Any:
        return self.app.wait_engine().stats(cid)  # type: ignore[attr-defined]

    def _stats_arrived(self, cid: str) -> None:
        """On a stream's thread: only the selected container's samples are drawn as they come."""
        if cid == self.selected_id:
            self.post_message(self.StatsSample(cid))

    def _watch_stats(self) -> None:
        """Stream the selected container if it runs, and every running one while the Stats tab shows."""
        rows = self.container_list.rows_by_id
        running = {cid for cid, r in rows.items() if r.state in STATS_STATES and not r.host}
        wanted = running if self.active_tab == "tab-stats" and not self._covered else set()
        if self.selected_id in running:
            wanted.add(self.selected_id)
        if not getattr(self.app, "connected", False):
            wanted = set()
        self.stats_streams.watch(wanted)
        self.stats_streams.forget(rows)

    def on_screen_suspend(self) -> None:
        # Images, Events...: the table is out of sight, its streams close; a dialog leaves it in sight
        self._covered = not isinstance(self.app.screen, ModalScreen)
        self._watch_stats()

    def on_screen_resume(self) -> None:
        if self._covered:
            self._covered = False
            self._watch_stats()
            self._refresh_table()

    @on(StatsSample)
    def _stats_sample(self, message: StatsSample) -> None:
        if message.container_id == self.selected_id:
            self._show_stats()

    def _show_stats(self) -> None:
        """Draw the selected container's stats on the tab that shows them; the hidden one is drawn when shown."""
        if self.active_tab == "tab-home":
            row = self.container_list.current
            state = row.state if row else ""
            # a stopped container's last sample is history, not its state now
            self.home.show_summary(self.history if state in STATS_STATES else None, state)
        elif self.active_tab == "tab-stats":
            self.stats_pane.show(self.history)

    def _refresh_table(self) -> None:
        if self.active_tab != "tab-stats":
            return
        histories = self.stats_streams.histories()
        rows = {}
        for cid, row in self.container_list.rows_by_id.items():
            h = histories.get(cid)
            last = h.last if h is not None and row.state in STATS_STATES else None
            if last is not None:
                rows[cid] = (row.name, last)
        self.stats_pane.show_table(rows)

    # by name rather than @on(TabbedContent.TabActivated): TabbedContent's module is imported with the tabs
    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.tabbed_content.id != "tabs":
            return
        self.active_tab = event.pane.id or ""
        if not self._painted:
            return  # _first_frame_out follows
        self._tab_activated_now()

    def _tab_activated_now(self) -> None:
        self._watch_stats()
        self._show_stats()
        if self.active_tab == "tab-stats":
            self._refresh_table()
            self._table_timer.resume()
            self.set_timer(1.2, self._refresh_table)  # the streams just opened give their first samples by then
        else:
            self._table_timer.pause()

    def _show_urls_for(self, row: ContainerRow) -> None:
        wanted = urls(row.published)
        self.url_states = {u: self.url_states.get(u, "checking…") for u in wanted}
        self.home.show_urls(self.url_states)

    @work(thread=True, group="urls", exit_on_error=False)
    def _check_urls(self, gen: int) -> None:
        stop = threading.Event()
        while gen == self.generation and not self.app._quitting.is_set():  # type: ignore[attr-defined]
            targets = list(self.url_states)
            states = {u: http_check(u) for u in targets}
            if gen != self.generation:
                return
            self.post_message(self.UrlStatus(gen, states))
            stop.wait(1.0 if any(not s.isdigit() for s in states.values()) else 3.0)

    @on(UrlStatus)
    def _url_status(self, message: UrlStatus) -> None:
        if message.generation != self.generation:
            return
        for url, state in message.states.items():
            if url in self.url_states:
                self.url_states[url] = state
        self.home.show_urls(self.url_states)

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def load_inspect(self, cid: str) -> None:
        from app import settings as st

        try:
            api = self.app.wait_engine().api  # type: ignore[attr-defined]
            data = api.inspect_container(cid)
            settings_data = st.for_settings(api, data)
            networks = sorted(n["Name"] for n in api.networks())
            listed = api.containers(all=True)
            names = sorted((c.get("Names") or ["/"])[0].lstrip("/") for c in listed)
            volumes = sorted(v["Name"] for v in (api.volumes().get("Volumes") or []))
        except Exception:
            return
        self.post_message(self.InspectLoaded(cid, data, networks, names, listed, volumes, settings_data))

    @property
    def engine_is_local(self) -> bool:
        """Ports bound on this machine clash with what the engine publishes only when the engine runs here."""
        ep = getattr(self.app, "endpoint", None)
        from app import settings as st

        return st.is_local_engine(ep.url) if ep is not None else True

    @on(InspectLoaded)
    async def _inspect_loaded(self, message: InspectLoaded) -> None:
        if message.container_id == self.selected_id:
            from app.widgets.json_tree import JsonTree

            self.query_one("#inspect", JsonTree).load(message.data, message.data.get("Name", "").lstrip("/"))
            await self.settings_pane.load(message.container_id, message.settings_data, message.networks,
                                          message.containers, container_list=message.container_list,
                                          volumes=message.volumes,
                                          local_engine=self.engine_is_local)

    @property
    def settings_pane(self) -> SettingsPane:
        from app.widgets.settings_pane import SettingsPane

        return self.query_one("#settings", SettingsPane)

    @property
    def exec_pane(self) -> ExecPane:
        from app.widgets.exec_pane import ExecPane

        return self.query_one("#exec", ExecPane)

    def on_settings_pane_revert_requested(self, _: SettingsPane.RevertRequested) -> None:
        if self.selected_id:
            self.load_inspect(self.selected_id)

    def on_settings_pane_save_requested(self, message: SettingsPane.SaveRequested) -> None:
        self._plan_save(message.container_id, message.settings)

    @work(thread=True, exclusive=True, group="settings", exit_on_error=False)
    def _plan_save(self, cid: str, new: st.Settings) -> None:
        from app import settings as st

        try:
            api = self.app.wait_engine().api  # type: ignore[attr-defined]
            data = st.for_settings(api, api.inspect_container(cid))
            old = st.from_inspect(data)
            errors = st.validate_ports(new.ports, cid, api.containers(all=True), old.ports,
                                       check_host=self.engine_is_local)
            if new.name != old.name and any(
                (c.get("Names") or [""])[0].lstrip("/") == new.name for c in api.containers(all=True)
            ):
                errors.append(f"the name {new.name!r} is already in use by another container")
        except Exception as exc:
            self.app.fail("Checking settings", exc)  # type: ignore[attr-defined]
            return
        self.post_message(self.SavePlanned(cid, new, st.plan(old, new), errors))

    @on(SavePlanned)
    def _save_planned(self, message: SavePlanned) -> None:
        if message.errors:
            self.settings_pane.show_errors(message.errors)
            return
        if message.plan.empty:
            self.notify("Nothing changed")
            return
        changes = message.plan.describe()
        if not message.plan.recreate:
            self._apply_settings(message.container_id, message.settings)
            return
        from app.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._apply_settings(message.container_id, message.settings)

        text = "Save these changes?\n" + "\n".join(f"  • {c}" for c in changes)
        text += "\nEverything else (command, entrypoint, labels, mounts, limits...) is kept."
        self.app.push_screen(ConfirmScreen(text), answered)

    @work(thread=True, exclusive=True, group="settings", exit_on_error=False)
    def _apply_settings(self, cid: str, new: st.Settings) -> None:
        from app import settings as st

        try:
            new_id = st.apply(self.app.wait_engine().api, cid, new)  # type: ignore[attr-defined]
        except Exception as exc:
            self.app.fail("Saving settings", exc)  # type: ignore[attr-defined]
            return
        self.post_message(self.SettingsApplied(new_id))

    @on(SettingsApplied)
    def _settings_applied(self, message: SettingsApplied) -> None:
        self.notify("Settings saved", title="Settings")
        if message.container_id != self.selected_id:
            # recreated: follow the new container in the list; selecting it loads the pane (loading it here as
            # well loaded it twice, and the second load wiped what was typed in between)
            self.focus_container(message.container_id)
        else:
            self.load_inspect(message.container_id)

    # --- actions ---

    def action_verb(self, name: str) -> None:
        self.run_verb(name)

    def run_verb(self, name: str) -> None:
        verb = VERBS[name]
        targets = self.container_list.targets()
        if not targets:
            self.notify("No container selected", severity="warning")
            return
        if verb.destructive:
            from app.screens.confirm import ConfirmScreen

            names = ", ".join(r.name for r in targets)
            question = f"{verb.title} {len(targets)} container(s): {names}?"

            def answered(yes: bool | None) -> None:
                if yes:
                    self._run_verb(name, [(r.id, r.state, r.name) for r in targets])

            self.app.push_screen(ConfirmScreen(question), answered)
            return
        self._run_verb(name, [(r.id, r.state, r.name) for r in targets])

    @work(thread=True, group="verbs", exit_on_error=False)
    def _run_verb(self, name: str, targets: list[tuple[str, str, str]]) -> None:
        verb = VERBS[name]
        for row_id, state, cname in targets:
            try:
                engine, cid = self._engine_for(row_id)  # the all-hosts list: each row on its own host
                verb.run(engine.api, cid, state)
            except Exception as exc:
                self.app.fail(f"{verb.title} {cname}", exc)  # type: ignore[attr-defined]
        self.app.call_from_thread(self._clear_marks)

    def _clear_marks(self) -> None:
        if self.container_list.marked:
            self.container_list.marked.clear()
            self.container_list.refresh_rows()

    def on_exec_pane_run(self, message: ExecPane.Run) -> None:
        self.action_exec(message.cmd)

    def action_copy(self, what: str) -> None:
        """The selected container's full id, or its first published URL, to the clipboard (OSC 52: works over
        ssh and in tmux with set-clipboard)."""
        row = self.container_list.current
        if row is None:
            self.notify("No container selected", severity="warning")
            return
        text = row.id if what == "id" else next(iter(urls(row.published)), "")
        if not text:
            self.notify(f"{row.name} publishes no TCP port", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied {text}")

    def action_exec(self, cmd: list[str] | None = None) -> None:
        row = self.container_list.current
        if row is None:
            return
        if row.host:
            self.notify(f"{row.name} is on {row.host}: Enter switches there", severity="warning")
            return
        if row.state != "running":
            self.notify(f"{row.name} is {row.state}: start it to run a shell", severity="warning")
            return
        from app.exec_shell import run_shell

        engine = self.engine
        if engine is None:
            return
        try:
            with self.app.suspend():
                code = run_shell(engine.streams, row.id, cmd)
        except Exception as exc:
            self.exec_pane.record(f"{row.name}: {' '.join(cmd) if cmd else 'shell'} failed: {exc}")
            self.app.fail(f"Exec in {row.name}", exc)  # type: ignore[attr-defined]
            return
        what = " ".join(cmd) if cmd else "Shell"
        self.exec_pane.record(f"{row.name}: {what} ended (exit {code})")
        self.notify(f"{what} in {row.name} ended (exit {code})")

    def action_kube_export(self) -> None:
        from app.screens.kube import export_selected

        export_selected(self)

    def action_new(self) -> None:
        try:
            from app.screens.new_container import NewContainerScreen
        except ImportError:
            self.notify("The new-container screen is not in this build yet", severity="warning")
            return

        self.app.push_screen(NewContainerScreen())

    def action_run_nginx(self) -> None:
        self.post_message(RunImage(self.app.config.nginx_image))  # type: ignore[attr-defined]

    @on(RunImage)
    def _run_image(self, message: RunImage) -> None:
        try:
            from app.screens.pull import PullScreen
        except ImportError:
            self.notify("Running images is not in this build yet", severity="warning")
            return

        def done(cid: str | None) -> None:
            if cid:
                self.focus_container(cid)

        self.app.push_screen(PullScreen(message.reference, on_done=done))

    def focus_container(self, cid: str) -> None:
        """Select a container as soon as it is in the list (it may arrive by event a moment later)."""

        def attempt(tries: int = 0) -> None:
            if self.container_list.select_id(cid) or tries > 50:
                return
            self.set_timer(0.1, lambda: attempt(tries + 1))

        self.container_list.focus()
        attempt()
