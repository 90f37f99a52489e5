"""portside's Textual TUI. It talks the Docker Engine API only, through docker-py.

The TUI (app/)
==============

Headless modules (no Textual import; usable by tests and benchmarks): `endpoint.py` (which Engine API:
`-H`/$DOCKER_HOST, else the docker CLI's context ($DOCKER_CONTEXT, else the config's `currentContext`, read
with docker-py's context code, TLS material included) when it isn't "default", else a portside daemon answering
on /run/portside.sock, else `engine.daemon`'s in-process engine; as non-root with nothing reachable it says root
is needed and names the Docker/Podman sockets that answer; `portside kube` uses `choose`, the TUI `hosts.initial`, in the same order, and
`endpoint.embedded` for the local engine), `engine_client.py` (docker-py clients: one
with a call timeout, one without for the follow streams, which docker-py would otherwise time out),
`containers.py` (list rows, `docker ps` port strings, URLs, Kitematic names, the list order: running first, a compose project's containers kept together under its name so `g` marks the whole stack for one verb), `stats.py` (`docker stats`
formulas and rate history), `lifecycle.py` (the verbs), `config.py` (XDG config file, readable errors),
`exec_shell.py` (exec with a tty wired to the terminal while the TUI is suspended: `exec_config()` is the
`docker exec -it` request, `run_shell()` the byte pump, which also takes other fds so tests drive it through
pipes; the Exec tab, `widgets/exec_pane.py`, takes a command typed as in a shell (empty: bash, else sh), runs it
the same way as `e`, and keeps a record of what ran and its exit status).
Hosts (issue 16): `hosts.py` (headless) lists what the switcher offers: the local portside engine (its daemon's
socket when one answers, else the embedded engine, started when chosen), `$DOCKER_HOST` (TLS from
`$DOCKER_TLS_VERIFY`/`$DOCKER_CERT_PATH` for tcp://), every docker CLI context read from
`$DOCKER_CONFIG/contexts/meta/<sha256 of name>/meta.json` with its TLS files under `contexts/tls/` (the current one
from `$DOCKER_CONTEXT`, else config.json's `currentContext`, marked `*`), `/var/run/docker.sock`, Podman's sockets
(`/run/podman/podman.sock`, `$XDG_RUNTIME_DIR/podman/podman.sock`) when present, and the user's hosts: `[[hosts]]`
tables (name, url, tls_ca/tls_cert/tls_key, tls_verify) in the config file, rewritten by `save_user_hosts`
(other lines kept, the result parsed before it atomically replaces the file). `initial()` keeps the start-up
order: `-H`, `--context`, `$DOCKER_HOST`, a non-default current context, else the local engine; an unknown
context is Docker's `context "x": context not found: ...` (the CLI exits 1). `describe_error()` turns a failed
connection into a short reason: connection refused, no such socket, permission denied, TLS error (wrong version
number, certificate not trusted, client certificate refused), auth (HTTP 401/403, ssh login), timed out.
`host_pool.py` (headless) keeps a `HostConnection` per host for the last 4 used (LRU): a daemon thread that
probes `GET /version` with a 3 s timeout (docker-py's version="auto" would ask with the minute-long call timeout),
makes the `EngineClient`s with that API version, follows `/events`, and when the host cannot be reached says why
and tries again after 1, 2, 4, 8, then 15 s (`retry()`: at once). ssh:// goes through docker-py's paramiko
transport (its shell-out mode lets ssh write on the TUI's terminal). A TLS host's clients ignore
$REQUESTS_CA_BUNDLE/$CURL_CA_BUNDLE (`engine_client.own_ca`): requests would let them replace the host's CA, as the
docker CLI never does.
Textual side: `tui.py` (`PortsideApp`: picks the first host in a thread worker, then `switch_host()`: the pool's
connection of that host; one already connected is shown at once, with no round trip, its list as last
loaded drawn until the fresh one comes (a list or refresh of the last host arriving after the switch is dropped); its events become
`DockerEvent`s, other hosts' `HostEvent`s; state changes arrive as `HostStateChanged` and set the header
(`sub_title`: which host, or "- disconnected") and the banner (reason, `R` retries now, `h` other hosts); forwards
app-wide messages to every screen), `screens/hosts.py` (`h`, or `H` where a screen uses `h`, palette "Hosts": the switcher lists every host with
its state, probing hosts not in the pool once; Enter switches and goes back to the main screen, `a` the add-host
form (URL, name suggested from it, CA/cert/key paths, verify) checked by `hosts.make_user_host` before anything is
saved, `d` removes a host the user added, `r` retries), `screens/`, `widgets/`, one stylesheet `portside.tcss`.
The main screen's `A` shows every connected host's containers at once, grouped (the current host first, each row's
name prefixed by its host; other hosts' rows are keyed `host/id`): verbs and logs go to the row's own host, those
hosts' events reload the list, Enter on another host's row switches there and selects it; Stats, Settings,
Inspect and Exec stay the current host's. `screens/resources.py`: Images (pull by name with a bar per layer, `docker history` as a table, remove,
force remove `D`, prune), Networks and Volumes (list, create, remove, inspect), Events (the last 10 minutes from
`/events?since=&until=`, then the app's live stream). `screens/pull.py` runs a pull or a Kitematic run in an
app-owned worker, so Escape hides the dialog while the work goes on and its end arrives as a message.
Build flow (Images `b`, binding id `image_build`; the empty Images list's hint names it): `screens/build.py`'s form
takes a folder (Tab completes directories as a shell does, then moves on), an optional tag, build args as one
`NAME=VALUE, ...` field (a comma starts the next arg only before a `NAME=`) and a target stage, and refuses a
folder without a Dockerfile, a bad tag or arg before anything is sent. `build_stream.py` (headless) runs
docker-py's `api.build(path=, rm=True, decode=True)` (classic builder on every engine; docker-py makes the context
tar and applies .dockerignore) in a daemon thread of its own: `BuildParser` joins the JSON stream's text pieces
into lines (dockerd sends "Step 1/3 : X" and its line end apart) and turns them into
Step/Output/Failed/Built/Tagged events; `BuildJob` keeps the lines (the last 200k, as the log view does) with the
step and error lines marked, so the dialog (`BuildLog`, a `LogView` that paints the done steps, the current one and
a failed one in their own styles; a ProgressBar by step) can be hidden with Escape and shown again by `b` from the
same text. `c` cancels after a yes: docker-py's build generator cannot be closed while a thread reads it, so the
POST's response is kept (`_KeepResponse`) and its socket shut, and the engine stops the build and removes its
container; quitting the app cancels a build still going (a worker waiting for its end is cancelled with the app's).
On success `r` runs the image as the Images screen's `r` does (`resources.run_kitematic`); a failure keeps the
failing step and its output in view with Docker's error in red. `tests/tui/test_build.py` checks the parser on
streams recorded from real builds on each engine (and re-cut into other pieces) and the flows with Pilot on each
engine.
Kubernetes (`screens/kube.py`, issue 15): the main screen's `k` (binding `kube_export`, palette "Export to
Kubernetes") shows engine/kube's YAML for the selected container, or all of its compose project (`p` switches),
highlighted with the warnings above it (`t` Pod/Deployment, `c` copies, `s` saves); `k` on Images and New container
(`kube_play`, palette "Play Kubernetes YAML") plays a file through `kube_cli.run_plan`, the CLI's own play, over
the app's docker-py client in a thread worker, and shows what it made or the document and field that is wrong.
`screens/new_container.py` notes a registry or Docker Hub that does not answer (config `hub_search = false`
keeps Hub unasked; the TUI tests do), and its tag picker filters as you type. What was typed is offered first as
a reference to run as typed when `images.typed_reference` finds a registry, a tag or a digest in it (distribution's
reference grammar: `registry:5000/team/app:1.2`, `nginx@sha256:...`); a search naming a registry
(`127.0.0.1:5000/team`) asks that registry's `_catalog` instead of Docker Hub, so its failure note names it;
`images.is_loopback_registry` (127.0.0.0/8, ::1, localhost) is what the TUI speaks plain HTTP to, as Docker does.
An empty container list shows `main.first_run_hint` under it (the nginx key, New container, typed references,
the host switcher and `-H`), shown and hidden by `ContainerList.EmptyChanged`; prose hints name a binding's
current key through `key_hint.key_of`. The Stats tab's graphs (`widgets/graph.py`) stand on zero, not on the
window's minimum, and each label shows the value, its unit and the scale (`0 to` the window's peak). The Settings tab (`widgets/settings_pane.py`) edits Environment, Ports and
Volumes as rows of fields (`widgets/settings_rows.py`: Enter adds a row, ctrl+d or the ✕ button deletes one, a
blank row is ignored): each field is checked as it is typed by validators built on `settings.py`'s `check_*`
functions (the field turns red, the reason shows under its row), and `settings.port_clashes` flags per row the
same host ip:port twice, a port another container publishes (the API's container list) and, when
`settings.is_local_engine` says the engine runs here, a port bound on this machine; saving re-checks against a
fresh list and sends nothing while an error remains. Untouched rows give back their inspect entry to the letter
(a Binds entry's `ro,z` included), so `settings.plan` sees no change for them. Volumes rows cover every mount: HostConfig.Binds, HostConfig.Mounts (`--mount`, noted as such,
edited as Mounts entries keeping their own options) and anonymous volumes (noted; kept by a recreate by their
generated name, dropped from Config.Volumes when the row is deleted). Keys: every action's binding has an id in
`config.DEFAULT_KEYS`, so `[keys]` can rebind it; the help screen lists the keys with the config's keymap
applied. The command palette (ctrl+p) has the container verbs, the screens, and every other action bound on
the current screen and its focused widgets (`PortsideApp._binding_commands`), each naming its key. Single-key actions bind on the screen, so they act while the list (or a pane) has focus and go into the
filter box while it has it; Escape clears and leaves the filter. Blocking docker-py calls and streams run in thread workers that post messages
back; each stream is closed (and its thread ends) when the selection changes or the app quits.
Start-up (issue 7: first paint under 1 s with 200 containers; Textual's import alone is ~0.5 s here), in order:
`main.run_tui` turns garbage collection off (start-up makes hundreds of thousands of objects that all stay alive;
collecting them meanwhile cost ~0.1 s) and starts `prefetch.py` before importing Textual: a thread asks
`GET /containers/json?all=1` on a bare socket (no docker-py, no http.client: its email and ssl imports cost ~20 ms
there) on the endpoint `endpoint.choose` will pick when it
is a plain one (`-H`/$DOCKER_HOST on a unix socket or plain TCP, or the portside daemon's socket; not a docker CLI
context, TLS or the embedded engine). `PortsideApp.on_mount` pushes the main screen after Textual's start-up batch
(Textual lays out a screen inside that batch without drawing it, so a screen pushed there waits for a repaint;
under Pilot it is pushed at once, so tests find it); its `ContainerList` starts with the prefetched rows, measuring
column widths itself, so the first frame shows them (and DataTable's own pass over new rows, which measures every
cell again through Rich before that frame, skips the rows it measured). The first frame holds the header, the
list, the footer and an empty pane where the tabs go; the tabs themselves (the tab bar, Home, which shows nothing of
the selection before then, and the hidden Stats, Settings, Exec, Inspect: ~75 widgets and their modules, with
TabbedContent's) and the hidden filter box are mounted, and the selection's streams started, once that frame is
drawn (`MainScreen._mount_rest` from `_first_frame_out`, a callback after refresh, which Textual runs once nothing
is left to draw: ~30 ms less to the first frame);
`tabs_built` and `loaded` say when. Then `first_frame_drawn()` freezes what start-up made (`gc.freeze`) and turns
collection back on, and the connect worker, which waited for that frame whenever there was a prefetched list,
imports docker-py, connects, follows /events and loads the list once per connection; a reload of the same rows
redraws no cell. None of app.hosts (with -H, or a config without `[[hosts]]`), docker-py, urllib.request, or
tomllib (without a config file) is imported before the first frame (issue 16); what is left there is Python,
Textual and the first screen's widgets (`bench/run tui` prints them beside a bare Textual app's first paint).
Stats flow: `stats_streams.py` (headless) keeps one `GET /containers/{id}/stats?stream=1` per watched container, read by
a daemon thread into that container's `stats.History` (a one-shot call costs ~10x a streamed sample). The main
screen decides what is watched (`_watch_stats`, on list changes, selection and tab switches): the selected
container while it runs, plus every running (or paused) container while the Stats tab shows and no other screen
(a dialog aside) covers the main one; other streams are closed, and a stream that ends (the container stopped) forgets its watch. A sample of the selected container
posts a message and updates only the visible tab (the Home summary or the Stats graphs; the hidden one is drawn
when shown); the Stats tab's table (`docker stats` columns, fixed widths) is redrawn from the histories every 2 s,
rows added/removed and changed cells only. Idle cost rules (issue 7: < 2% of a core with 20 running containers
and the Stats tab open): values that change each second go in `widgets/fixed_label.py` labels (CSS-fixed size,
`update(layout=False)`, skipped when the text is the same), because a Static's default update re-lays out the
whole screen; graphs are `widgets/graph.py`'s `StatsGraph` (Sparkline's look painted through the line API,
repainted only when the picture - each column's bar and shade - changed), because Sparkline's Rich rendering
costs ~10 ms per 80x3 graph; `EngineClient.stats` splits the stream's lines and parses each whole (docker-py's
decoder reads a byte at a time). A stream's first sample has no CPU % (no previous sample to take a delta
from); a stopped container's Home summary says "no stats" rather than its last figures.
`tests/tui/test_stats.py` checks the table on both engines and that an unchanged sample re-lays out nothing.
Tests: `tests/tui/` drive the app with Pilot against each engine in `PORTSIDE_TUI_ENGINES` (default
`portside,dockerd`): portside's engine embedded in the test process (`DaemonThread`, private roots, `pst` bridge)
and a private Debian dockerd (`tests/testbed/dockerd.py`, shared with the image interop tests and the benchmarks: own roots, socket, containerd namespace and `pst…` bridge, published ports on
127.0.0.1 only), both holding the test bed's images. `test_tmux.py` drives the real `portside` command in tmux (list and logs; `e` giving a shell the terminal and
taking it back);
`test_hosts.py` (tests/ and tests/tui/): discovery in a fake HOME with contexts made by `docker context create`
and by hand, the `[[hosts]]` round trip, the error reasons against real sockets (a dead unix socket, a 127.0.0.1
listener that never answers, TLS to a plain listener, a 401, a refused ssh port; the pool's LRU), the switcher and
add-host form (switching from the Images screen too), an ssh:// host end to end (`tests/tui/sshd.py`: a paramiko
SSH server on 127.0.0.1 that serves `docker system dial-stdio` from the engine's socket), a tcp:// TLS host through a
context (a `portside daemon --tlsverify` with certificates made in the test; no client certificate, another CA),
an unreachable host's retry, and one session driving two `portside daemon`s (one through a context), dockerd and
the all-hosts list;
`test_settings_forms.py`, `test_keys_config.py` run without an engine (an unreachable socket or a host app);
`test_settings_engine.py`, `test_exec.py` (the exec request and pump run for real) need one; `test_snapshots.py` keeps SVG snapshots (`--snapshot-update` to refresh);
`test_logs.py` checks the log decoder (cut at every byte, and on each engine's real streams), the bounded view
and keys during a flood.
Logs: `log_stream.py` (headless) reads `GET /containers/{id}/logs?follow=1` itself: `read1(64 KiB)` from the
connection's buffered reader, HTTP chunked coding undone (`Dechunker`), the 8-byte frame headers of a non-TTY
stream taken off and whole lines decoded once per read (`LogDecoder`; stdout and stderr keep their partial lines
apart; a TTY stream is raw lines), because docker-py's per-frame (and, for a TTY, per-byte) reads held the GIL
for much of a flood. `widgets/log_view.py` is a Line API view of the last `MAX_LINES` (200k) lines: the reader
thread queues lists of lines, the UI drains them at most 10 times a second (each drain repaints the view,
most of the app's CPU under a flood; a plain ASCII line renders as one segment), sets its virtual size without a
screen layout, and posts its status line (a fixed-height `Static`, updated with `layout=False`) at most 4 times
a second for a new count and at once for a key's change (follow, pause, search). Moving up leaves follow; End
takes it up again.
"""
