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
from pathlib import Path


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


def start_portside(where: Path, bridge: str, exec_root: Path | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    """A `portside daemon` on `where`/data (exec root `where`/x unless given), a bridge and cgroup parent of its
    own, ip forwarding untouched; returns (process, socket) once it answers."""
    import os
    import sys

    from bench.bench_docker_run import _wait_sock

    root = Path(__file__).resolve().parent.parent
    sock, log = where / "sock", where / "log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "daemon", "--data-root", str(where / "data"),
                                 "--exec-root", str(exec_root or where / "x"), "-H", f"unix://{sock}", "--bridge",
                                 bridge, "--ip-forward=false", "--cgroup-parent", f"portside-test-{bridge}"],
                                stdout=f, stderr=subprocess.STDOUT, cwd=root,
                                env=dict(os.environ, PYTHONPATH=str(root)))
    _wait_sock(sock, proc, log)
    return proc, sock


def destroy_portside(where: Path, bridge: str, exec_root: Path | None = None) -> None:
    """What a stopped `start_portside` daemon leaves for its containers: its bridge, nft table and cgroups."""
    import contextlib

    from engine.net import NetworkService
    from engine.parts import nft_table_for

    with contextlib.suppress(Exception):
        svc = NetworkService(where / "data", exec_root or where / "x", default_bridge=bridge,
                             nft_table=nft_table_for(bridge), enable_ip_forward=False)
        svc.start()
        svc.destroy()
    for cg in Path("/sys/fs/cgroup").glob(f"*/portside-test-{bridge}"):
        with contextlib.suppress(OSError):
            cg.rmdir()
