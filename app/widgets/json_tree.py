"""JSON shown as a folded tree, searchable: matching keys and values are expanded and highlighted."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Static, Tree
from textual.widgets.tree import TreeNode


def _leaf(value: Any) -> str:
    return json.dumps(value)


class JsonTree(Vertical):
    """A search box over a Tree; `load(data)` replaces the document."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data: Any = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search keys and values", classes="json-search")
        yield Static("", classes="json-count")
        tree: Tree[Any] = Tree("{}", classes="json-tree")
        tree.show_root = True
        yield tree

    @property
    def json_tree(self) -> Tree[Any]:
        return self.query_one(Tree)

    def load(self, data: Any, title: str = "") -> None:
        self.data = data
        self._build(self.query_one(Input).value)
        if title:
            self.json_tree.root.set_label(escape(title))

    def _build(self, needle: str) -> None:
        tree = self.json_tree
        tree.clear()
        needle = needle.lower()
        hits = self._add(tree.root, self.data, needle)
        tree.root.expand()
        count = self.query_one(".json-count", Static)
        count.update(f"{hits} match(es)" if needle else "")

    def _add(self, node: TreeNode[Any], value: Any, needle: str) -> int:
        hits = 0
        items: list[tuple[str, Any]]
        if isinstance(value, dict):
            items = [(str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"[{i}]", v) for i, v in enumerate(value)]
        else:
            return 0
        for key, child in items:
            if isinstance(child, dict | list):
                size = len(child)
                brackets = "{…}" if isinstance(child, dict) else "[…]"
                label = f"[b]{escape(key)}[/] {brackets} {size}"
                key_hit = bool(needle) and needle in key.lower()
                if key_hit:
                    label = f"[reverse]{escape(key)}[/] {brackets} {size}"
                sub = node.add(label, data=child)
                inner = self._add(sub, child, needle)
                hits += inner + int(key_hit)
                if inner:
                    sub.expand()
            else:
                text = _leaf(child)
                hit = bool(needle) and (needle in key.lower() or needle in text.lower())
                label = f"[b]{escape(key)}[/]: {escape(text)}"
                if hit:
                    label = f"[reverse]{escape(key)}: {escape(text)}[/]"
                node.add_leaf(label, data=child)
                hits += int(hit)
        return hits

    @on(Input.Changed)
    def _search(self, event: Input.Changed) -> None:
        event.stop()
        if self.data is not None:
            self._build(event.value)
