"""What every benchmark shares: timing, the peers installed on this machine, and a table with ratios.

Benchmarks print figures, never assert them: targets live in the issues and the notes, not in timed tests.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def timed(fn: Callable[[], object], runs: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of `runs` calls of fn, after `warmup` calls that are not counted."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def peer(name: str) -> str | None:
    """Path of an installed peer program (runc, crun, podman, dockerd, skopeo...), or None."""
    return shutil.which(name)


def run_quiet(cmd: list[str], timeout: float = 120) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)


@dataclass
class Table:
    """Rows of (who, median, unit); ratios are printed against the row named `baseline`."""

    title: str
    unit: str
    baseline: str | None = None
    lower_is_better: bool = True
    rows: list[tuple[str, float, str]] = field(default_factory=list)

    def add(self, who: str, samples: list[float], note: str = "") -> float:
        median = statistics.median(samples)
        self.rows.append((who, median, note))
        return median

    def add_value(self, who: str, value: float, note: str = "") -> None:
        self.rows.append((who, value, note))

    def render(self) -> str:
        lines = [f"== {self.title} ({self.unit}, {'lower' if self.lower_is_better else 'higher'} is better)"]
        base = next((v for w, v, _ in self.rows if w == self.baseline), None)
        for who, value, note in self.rows:
            ratio = f"{value / base:6.2f}x of {self.baseline}" if base else ""
            lines.append(f"  {who:<28} {value:12.3f}  {ratio:<24} {note}")
        return "\n".join(lines)

    def print(self) -> None:
        print(self.render(), flush=True)
