"""Go's path.Match, as engine/gomatch.py translates it."""

from __future__ import annotations

import pytest

from engine.gomatch import compile_pattern


@pytest.mark.parametrize("pattern,name,want", [
    ("*.go", "a.go", True), ("*.go", "dir/a.go", False), ("a?c", "abc", True), ("a?c", "a/c", False),
    ("[a-c]x", "bx", True), ("[^a-c]x", "bx", False), ("[^a-c]x", "dx", True), ("\\*", "*", True),
    ("\\*", "a", False), ("busybox:*", "busybox:latest", True), ("a.b", "axb", False), ("dir/*", "dir/x", True),
])
def test_matches_as_go_does(pattern: str, name: str, want: bool) -> None:
    rx = compile_pattern(pattern)
    assert rx is not None and (rx.match(name) is not None) is want


def test_an_unclosed_class_is_a_bad_pattern() -> None:
    assert compile_pattern("[abc") is None
