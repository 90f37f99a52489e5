"""Overlay mounts of snapshot chains, deeper than one page of mount options can list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.images.mount import PAGE, is_mountpoint, mount_overlay, unmount

pytestmark = pytest.mark.integration


def test_more_layers_than_one_mount_option_can_list(tmp_path: Path) -> None:
    base = tmp_path / ("long-directory-name-" * 4)
    lowers = []
    for i in range(80):
        d = base / f"{i:03d}-{'x' * 40}" / "fs"
        d.mkdir(parents=True)
        (d / f"file{i}").write_text(str(i))
        (d / "top").write_text(str(i))
        lowers.append(d)
    lowers.reverse()  # topmost first
    assert len(":".join(map(str, lowers))) > PAGE
    upper, work, target = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, target):
        d.mkdir()
    mount_overlay(target, lowers, upper, work)
    try:
        assert is_mountpoint(target)
        assert len([n for n in os.listdir(target) if n.startswith("file")]) == 80
        assert (target / "top").read_text() == "79"
        (target / "new").write_text("upper")
        assert (upper / "new").read_text() == "upper"
    finally:
        unmount(target)
    assert not is_mountpoint(target)
