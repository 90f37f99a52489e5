"""Unmounting what a test's daemon left below its directories."""

from __future__ import annotations

import subprocess
from pathlib import Path


def unmount_below(root: Path) -> None:
    """Lazily unmount every mount at or below `root`, deepest first. `umount -R root` alone does nothing when
    `root` itself is not a mount point (a daemon's exec-root, whose containers' rootfs overlays sit below it)."""
    prefix = str(root).rstrip("/")
    targets = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for target in sorted({t for t in targets if t == prefix or t.startswith(prefix + "/")}, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
