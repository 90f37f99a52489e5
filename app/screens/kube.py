"""Kubernetes hand-off in the TUI: "Export to Kubernetes" (the main screen's `k`) and "Play Kubernetes YAML" (`k`
on the Images and New container screens, and the command palette).

Both are the CLI's (app/kube_cli.py) over the app's Engine API client: export inspects the selected container (or
every container of its compose project) and shows engine/kube's generate output, highlighted, with the warnings
above it; play checks every document of a file (engine/kube/play.plan) and makes it with kube_cli.run_plan. The
engine calls run in thread workers; what went wrong is a line in the dialog (the document and field for bad YAML),
never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Static

from app.lifecycle import error_text
from app.screens.build import PathInput


class FileInput(PathInput):
    """A file path: Tab completes folders and file names."""

    FILES = True


def _problem(exc: BaseException) -> str:
    """What the user reads: the CLI's own messages as they are, else the engine's answer."""
    from app.kube_cli import CliError
    from engine.kube.manifests import ManifestError

    if isinstance(exc, (CliError, ManifestError)):
        return str(exc)
    return " ".join(error_text(exc).split())


def engine_name(api: Any) -> str:
    """"portside", "Podman" or "Docker" (with its version), as the host switcher names engines."""
    try:
        v = api.version()
    except Exception:
        return "the engine"
    if any("podman" in str(c.get("Name", "")).lower() for c in v.get("Components") or []):
        name = "Podman"
    elif "portside" in str((v.get("Platform") or {}).get("Name", "")).lower():
        name = "portside"
    else:
        name = "Docker"
    return f"{name} {v.get('Version', '')}".strip()


_CSS = """
KubeExportScreen, KubeSaveScreen, KubePlayScreen { align: center middle; }
.kube { height: 90%; }
.kube-form { height: auto; }
#kube-warnings { color: $warning; height: auto; max-height: 10; }
#kube-yaml-box { height: 1fr; border: round $primary-darken-2; }
#kube-error, #kube-play-error { color: $error; height: auto; }
#kube-candidates, #kube-play-candidates { color: $text-muted; height: auto; }
#kube-play-result { height: auto; max-height: 20; }
"""


class _PathForm:
    """A form around one FileInput: it has the focus with the cursor at the end, and Tab's candidates show in the
    label `CANDIDATES` names."""

    CANDIDATES = ""

    def on_mount(self) -> None:
        box = self.query_one(FileInput)  # type: ignore[attr-defined]
        box.focus()
        box.cursor_position = len(box.value)

    def on_path_input_completed(self, message: PathInput.Completed) -> None:  # by name: a mixin's @on is not seen
        self.query_one(self.CANDIDATES, Label).update("  ".join(message.candidates[:40]))  # type: ignore[attr-defined]


class KubeExportScreen(ModalScreen[None]):
    """The YAML of one container, or of its compose project: `c` copies it, `s` saves it, `t` switches Pod and
    Deployment, `p` (a compose container) switches between the project and the container alone."""

    DEFAULT_CSS = _CSS
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Close"),
        Binding("c", "copy", "Copy", id="kube_copy"),
        Binding("s", "save", "Save", id="kube_save"),
        Binding("t", "toggle_kind", "Pod/Deployment", id="kube_type"),
        Binding("p", "toggle_scope", "Project/container", id="kube_scope"),
    ]

    def __init__(self, api_of: Callable[[], Any], container: str, name: str, project: str = "") -> None:
        super().__init__()
        self.api_of = api_of  # the Engine API client, got on the worker's thread (it may wait for a connection)
        self.container = container
        self.name_ = name
        self.project = project
        self.whole_project = bool(project)
        self.kind = "pod"
        self.yaml_text = ""  # the YAML shown ("" until generated, or when it failed)
        self.warnings: list[str] = []
        self.error = ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog kube"):
            yield Label("", id="kube-title")
            yield Static("", id="kube-warnings", markup=False)
            yield Label("", id="kube-error", markup=False)
            with VerticalScroll(id="kube-yaml-box"):
                yield Static("Generating…", id="kube-yaml")
            yield Label("", id="kube-keys")

    def on_mount(self) -> None:
        self.query_one("#kube-keys", Label).update(
            "[b]c[/] copy  [b]s[/] save to a file  [b]t[/] Pod/Deployment" + ("  [b]p[/] project/container"
                                                                            if self.project else "")
            + "  [b]Esc[/] close")
        self._generate()

    @property
    def subject(self) -> str:
        return f"compose project {self.project}" if self.whole_project else f"container {self.name_}"

    @work(thread=True, exclusive=True, group="kube-export", exit_on_error=False)
    def _generate(self) -> None:
        from app.kube_cli import inspect_for_generate
        from engine.kube.generate import generate
        from engine.kube.manifests import dump

        try:
            api = self.api_of()
            if self.whole_project:
                containers, images = inspect_for_generate(api, [], self.project)
            else:
                containers, images = inspect_for_generate(api, [self.container], None)
            out = generate(containers, images, kind=self.kind)
            result = (dump(out.docs), out.warnings, "")
        except Exception as exc:
            result = ("", [], _problem(exc))
        self.app.call_from_thread(self._show, *result)

    def _show(self, text: str, warnings: list[str], error: str) -> None:
        self.yaml_text, self.warnings, self.error = text, warnings, error
        kind = "Deployment" if self.kind == "deployment" else "Pod"
        self.query_one("#kube-title", Label).update(Text.assemble(("Kubernetes YAML", "bold"),
                                                                  f" of {self.subject} ({kind})"))
        box = self.query_one("#kube-warnings", Static)
        box.display = bool(warnings)
        box.update("\n".join(f"⚠ {w}" for w in warnings))
        self.query_one("#kube-error", Label).update(f"Cannot generate: {error}" if error else "")
        yaml = self.query_one("#kube-yaml", Static)
        yaml.update(Syntax(text, "yaml", theme="ansi_dark", background_color="default") if text else "")

    def action_toggle_kind(self) -> None:
        self.kind = "deployment" if self.kind == "pod" else "pod"
        self._generate()

    def action_toggle_scope(self) -> None:
        if not self.project:
            self.notify(f"{self.name_} is not part of a compose project", severity="warning")
            return
        self.whole_project = not self.whole_project
        self._generate()

    def action_copy(self) -> None:
        if not self.yaml_text:
            self.notify("Nothing to copy", severity="warning")
            return
        self.app.copy_to_clipboard(self.yaml_text)
        self.notify(f"Copied the YAML of {self.subject}")

    def action_save(self) -> None:
        if not self.yaml_text:
            self.notify("Nothing to save", severity="warning")
            return
        text = self.yaml_text
        default = str(Path.cwd() / f"{self.project if self.whole_project else self.name_}.yaml")

        def chosen(path: str | None) -> None:
            if path:
                self.notify(f"Saved the YAML of {self.subject} to {path}")

        self.app.push_screen(KubeSaveScreen(default, text), chosen)


class KubeSaveScreen(_PathForm, ModalScreen[str | None]):
    """Where to write the YAML (Tab completes): Enter writes it and closes, or says why it could not."""

    CANDIDATES = "#kube-candidates"

    DEFAULT_CSS = _CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: str, text: str) -> None:
        super().__init__()
        self.default = default
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog kube-form"):
            yield Label(Text.assemble(("Save the YAML", "bold"), " to a file (Tab completes, Enter saves)"))
            yield FileInput(self.default, id="kube-save-path")
            yield Label("", id="kube-candidates", markup=False)
            yield Label("", id="kube-error", markup=False)


    @on(Input.Submitted)
    def _save(self, event: Input.Submitted) -> None:
        path = Path(event.value.strip()).expanduser()
        if not event.value.strip() or path.is_dir():
            self.query_one("#kube-error", Label).update("Name a file to write (not a folder)")
            return
        try:
            path.write_text(self.text)
        except OSError as exc:
            self.query_one("#kube-error", Label).update(f"Cannot write {path}: {exc.strerror or exc}")
            return
        self.dismiss(str(path))

    def action_cancel(self) -> None:
        self.dismiss(None)


class KubePlayScreen(_PathForm, ModalScreen[None]):
    """A Kubernetes YAML file to run (Tab completes, Enter plays): Pods, Deployments, Services, ConfigMaps, Secrets
    and PersistentVolumeClaims, as `portside kube play FILE` runs them; what was made, or what is wrong."""

    CANDIDATES = "#kube-play-candidates"

    DEFAULT_CSS = _CSS
    BINDINGS = [Binding("escape", "app.pop_screen", "Close")]

    def __init__(self, api_of: Callable[[], Any], path: str = "") -> None:
        super().__init__()
        self.api_of = api_of
        self.path = path or str(Path.cwd()) + "/"
        self.made: list[str] = []  # the containers the last play made
        self.error = ""
        self.playing = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog kube-form"):
            yield Label(Text.assemble(("Play Kubernetes YAML", "bold"), " (Tab completes, Enter plays)"))
            yield FileInput(self.path, id="kube-play-path")
            yield Label("", id="kube-play-candidates", markup=False)
            yield Checkbox("Replace what an earlier play of these objects made", id="kube-replace")
            yield Label("", id="kube-play-error", markup=False)
            yield Static("", id="kube-play-result")


    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if self.playing:
            return
        self.playing = True
        self.error, self.made = "", []
        self.query_one("#kube-play-error", Label).update("")
        self.query_one("#kube-play-result", Static).update(f"Playing {escape(event.value.strip())}…")
        self._play(event.value.strip(), self.query_one("#kube-replace", Checkbox).value)

    @work(thread=True, exclusive=True, group="kube-play", exit_on_error=False)
    def _play(self, path: str, replace: bool) -> None:
        from app.kube_cli import CliError, run_plan
        from engine.kube.manifests import load
        from engine.kube.play import plan

        where, lines, made = "", [], []
        try:
            file = Path(path).expanduser()
            try:
                text = file.read_text()
            except OSError as exc:
                raise CliError(f"cannot read {file}: {exc.strerror or exc}") from exc
            p = plan(load(text, str(file)))  # every document is checked before anything is made
            lines = [f"⚠ {w}" for w in p.warnings]
            api = self.api_of()
            where = engine_name(api)
            run_plan(api, p, replace)
            made = [c.name for pod in p.pods for c in pod.containers]
            lines += [f"Pod {pod.name}: {', '.join(c.name for c in pod.containers)}" for pod in p.pods]
            lines += [f"Volume {v.name}" for v in p.volumes]
            result = (f"Played {file.name} on {where}", lines, made, "")
        except Exception as exc:
            problem = _problem(exc)
            if where and not where.startswith("portside"):
                problem += (f" ({where} is not the portside engine: kube play makes its objects through the Engine "
                            "API, and is tested on portside)")
            result = ("", lines, [], problem)
        self.app.call_from_thread(self._done, *result)

    def _done(self, title: str, lines: list[str], made: list[str], error: str) -> None:
        self.playing = False
        self.made, self.error = made, error
        self.query_one("#kube-play-error", Label).update(f"Cannot play: {error}" if error else "")
        body = "\n".join(escape(line) for line in lines)
        self.query_one("#kube-play-result", Static).update(f"[b]{escape(title)}[/]\n{body}" if title else body)
        if title:
            self.notify(title, title="Kubernetes")


def current_api(app: Any) -> Callable[[], Any]:
    return lambda: app.wait_engine().api


def export_selected(main: Any) -> None:
    """The main screen's "Export to Kubernetes": the selected container, or its compose project."""
    row = main.container_list.current
    if row is None:
        main.notify("No container selected", severity="warning")
        return

    def api_of() -> Any:
        return main._engine_for(row.id)[0].api  # the all-hosts list: a row of another connected host

    main.app.push_screen(KubeExportScreen(api_of, row.id.rpartition("/")[2], row.name, row.project))


def play_yaml(screen: Any) -> None:
    """"Play Kubernetes YAML" (Images, New container, the palette)."""
    screen.app.push_screen(KubePlayScreen(current_api(screen.app)))
