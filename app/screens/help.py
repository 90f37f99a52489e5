"""The help screen: every key of the app and of the current screen, from the live bindings (so a keymap from
the config file shows as it really is), with the binding ids the config file uses."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

INTRO = """# portside keys

Containers are on the left; the tabs on the right follow the cursor. Actions apply to the **marked**
containers (space) or else to the one under the cursor. `ctrl+p` opens the command palette with every action.
Rebind keys in `~/.config/portside/config.toml` under `[keys]`, by the ids below.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Markdown(self._text())

    def _text(self) -> str:
        rows: list[str] = []
        seen: set[tuple[str, str]] = set()
        stack = list(self.app.screen_stack)
        below = stack[-2] if len(stack) > 1 else stack[-1]
        nodes = [self.app, below, *below.query("*")]
        keymap = self.app._keymap
        for node in nodes:
            bmap = node._bindings.copy()
            if keymap:
                bmap.apply_keymap(keymap)  # what the keys really are with the config file's [keys]
            for key, bindings in bmap.key_to_bindings.items():
                for b in bindings:
                    if not isinstance(b, Binding) or not b.description:
                        continue
                    marker = (key, b.description)
                    if marker in seen:
                        continue
                    seen.add(marker)
                    where = type(node).__name__
                    rows.append(f"| `{key}` | {b.description} | {b.id or ''} | {where} |")
        table = "| key | action | id | where |\n|---|---|---|---|\n" + "\n".join(rows)
        return INTRO + "\n" + table + "\n"
