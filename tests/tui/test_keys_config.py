"""Keys, the config file, the inspect tree and log save/copy, driven by Pilot with no engine behind the app
(an unreachable socket): what they test does not need containers, so these stay fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.binding import Binding
from textual.widgets import Footer, Input, Tree

from app.config import DEFAULT_KEYS, Config
from app.screens.help import HelpScreen
from app.screens.main import MainScreen
from app.tui import PortsideApp
from app.widgets.json_tree import JsonTree
from tests.tui.conftest import wait_for

pytestmark = [pytest.mark.tui, pytest.mark.timeout(60)]

NOWHERE = "unix:///nonexistent/portside-test.sock"


def _main(app: PortsideApp) -> MainScreen:
    for screen in app.screen_stack:
        if isinstance(screen, MainScreen):
            return screen
    raise AssertionError("no main screen")


def _messages(app: PortsideApp) -> list[str]:
    return [n.message for n in app._notifications]


def _write_config(home: Path, text: str) -> Path:
    path = home / "portside" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def test_keymap_and_theme_from_the_xdg_config_file(tmp_config_home: Path) -> None:
    """$XDG_CONFIG_HOME/portside/config.toml: a rebound key runs its action (the old key no longer does), the
    theme is applied, and the help screen shows the new key."""
    _write_config(tmp_config_home, 'theme = "nord"\n[keys]\nhelp = "f2"\nstart = "S"\n')
    app = PortsideApp(host=NOWHERE)  # config=None: read from the XDG folder
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.theme == "nord"
        assert app.config.keys == {"help": "f2", "start": "S"}
        main = _main(app)
        main.container_list.focus()
        await pilot.press("question_mark")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)  # rebound away
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help on f2")
        text = app.screen.query_one("Markdown")._markdown  # type: ignore[attr-defined]
        assert "| `f2` | Help | help |" in text, text
        assert "| `S` | Start | start |" in text, [ln for ln in text.splitlines() if "Start" in ln]
        await pilot.press("escape")
        await pilot.press("S")  # start, on the rebound key: no container is selected, and it says so
        await wait_for(pilot, lambda: "No container selected" in _messages(app), what="start ran")


@pytest.mark.parametrize("text,needle", [
    ("theme = [", "not valid TOML"),
    ('[keys]\nstart = "ctrl+"\nnosuch = "z"\n', "'nosuch' is not a binding id"),
    ('theme = "no-such-theme"\n', "no-such-theme"),
])
async def test_a_bad_config_file_is_a_readable_message_and_the_app_starts(tmp_config_home: Path, text: str,
                                                                          needle: str) -> None:
    """A broken file, an unknown binding id or an unknown theme: the app starts with the defaults for what was
    wrong and says what is wrong in a notification naming the file."""
    path = _write_config(tmp_config_home, text)
    app = PortsideApp(host=NOWHERE)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: any(needle in m for m in _messages(app)), what=f"the error {needle!r}")
        assert isinstance(app.screen, MainScreen) and app.is_running
        notes = [n for n in app._notifications if needle in n.message]
        assert notes[0].title == "Config file" and (str(path) in notes[0].message or "theme" in notes[0].message)
        await pilot.press("question_mark")  # the default keys still work
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help on ?")


async def test_the_filter_box_takes_typed_keys_and_escape_leaves_it(tmp_config_home: Path) -> None:
    """/ opens the filter: s, r, x typed there go into it and run no action; Escape clears and hides it and
    gives the list the focus back, where s is Start again."""
    app = PortsideApp(host=NOWHERE, config=Config())
    async with app.run_test(size=(120, 40)) as pilot:
        main = _main(app)
        box = main.query_one("#filter", Input)
        await pilot.press("slash")
        assert box.display and app.focused is box
        await pilot.press("s", "r", "x", "d")
        await pilot.pause()
        assert box.value == "srxd"
        assert "No container selected" not in _messages(app)  # no verb ran
        assert main.container_list.filter_text == "srxd"
        await pilot.press("escape")
        assert not box.display and box.value == "" and app.focused is main.container_list
        await pilot.press("s")
        await wait_for(pilot, lambda: "No container selected" in _messages(app), what="s starts again")
        # Enter keeps the filter and goes back to the list too
        await pilot.press("slash", "a", "enter")
        assert box.display and box.value == "a" and app.focused is main.container_list


async def test_footer_and_help_list_every_action(tmp_config_home: Path) -> None:
    """Every binding with a description on the main screen (its widgets included) has an id the config file
    can rebind and a row in the help screen; the footer shows the main verbs with their keys."""
    app = PortsideApp(host=NOWHERE, config=Config())
    async with app.run_test(size=(200, 40)) as pilot:
        main = _main(app)
        main.container_list.focus()
        await pilot.pause()
        actions = []  # (key, binding) declared by portside's own classes (Textual's built-in ones aside)
        for node in [app, main, *main.query("*")]:
            ours = {(k.strip(), b.action) for cls in type(node).__mro__ if cls.__module__.startswith("app.")
                    for b in cls.__dict__.get("BINDINGS", []) if isinstance(b, Binding) for k in b.key.split(",")}
            for key, bindings in node._bindings.key_to_bindings.items():
                actions += [(key, b) for b in bindings if b.description and (key, b.action) in ours]
        assert len(actions) > 20
        missing_ids = sorted({b.description for _, b in actions if b.id not in DEFAULT_KEYS})
        assert not missing_ids, f"actions that no [keys] id can rebind: {missing_ids}"
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = app.screen.query_one("Markdown")._markdown  # type: ignore[attr-defined]
        for key, b in actions:
            assert f"| `{key}` | {b.description} |" in text, (key, b.description)
        await pilot.press("escape")
        footer = main.query_one(Footer)
        shown = {str(k.description) for k in footer.query("FooterKey")}  # type: ignore[attr-defined]
        for verb in ("Start", "Stop", "Restart", "Pause", "Kill", "Remove", "Filter", "New", "Run nginx", "Exec",
                     "Help", "Quit"):
            assert verb in shown, (verb, shown)


async def test_inspect_is_folded_and_search_finds_a_key(tmp_config_home: Path) -> None:
    """The Inspect tree starts with only the top level open; a search counts the hits, marks them and opens
    the branches that hold them."""
    doc: dict[str, Any] = {"Id": "abc", "Config": {"Env": ["A=1"], "Labels": {"x": "y"}},
                           "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}}
    app = PortsideApp(host=NOWHERE, config=Config())
    async with app.run_test(size=(120, 40)) as pilot:
        main = _main(app)
        await wait_for(pilot, lambda: main.tabs_built, what="the hidden tabs, built after the first frame")
        main.query_one("#tabs").active = "tab-inspect"  # type: ignore[attr-defined]
        tree_w = main.query_one(JsonTree)
        tree_w.load(doc, "web")
        await pilot.pause()
        tree: Tree[Any] = tree_w.json_tree
        top = {str(n.label.plain).split()[0].rstrip(":"): n for n in tree.root.children}
        assert set(top) == {"Id", "Config", "HostConfig"} and tree.root.is_expanded
        assert not top["Config"].is_expanded and not top["HostConfig"].is_expanded  # folded
        tree_w.query_one(Input).focus()
        await pilot.press(*"maximumretry")
        await wait_for(pilot, lambda: "1 match(es)" in str(tree_w.query_one(".json-count").render()),
                       what="one match")
        host = next(n for n in tree.root.children if str(n.label.plain).startswith("HostConfig"))
        policy = host.children[0]
        assert host.is_expanded and policy.is_expanded and not next(
            n for n in tree.root.children if str(n.label.plain).startswith("Config")).is_expanded
        hit = next(n for n in policy.children if "MaximumRetryCount" in n.label.plain)
        assert any(span.style and "reverse" in str(span.style) for span in hit.label.spans)


async def test_log_save_writes_the_lines_and_copy_puts_them_on_the_clipboard(tmp_config_home: Path,
                                                                             tmp_path: Path) -> None:
    """ctrl+s in the log writes every line (with its timestamp) to <name>.log; y copies the current search
    match's line, else the visible lines."""
    app = PortsideApp(host=NOWHERE, config=Config())
    async with app.run_test(size=(120, 40)) as pilot:
        main = _main(app)
        view = main.log_view
        view.save_dir = tmp_path
        view.container_name = "web"  # type: ignore[attr-defined]
        view.feed([f"2026-11-28T06:00:0{i}.000000000Z line {i}" for i in range(5)])
        await wait_for(pilot, lambda: len(view.lines) == 5, what="the lines")
        view.focus()
        await pilot.press("ctrl+s")
        saved = tmp_path / "web.log"
        await wait_for(pilot, saved.exists, what="the saved file")
        assert saved.read_text().splitlines() == [f"2026-11-28T06:00:0{i}.000000000Z line {i}" for i in range(5)]
        assert any("Saved 5 lines" in m for m in _messages(app))
        await pilot.press("y")
        assert app.clipboard == "\n".join(f"line {i}" for i in range(5))
        assert view.search("line 3") == 1
        await pilot.press("y")
        assert app.clipboard == "line 3"
